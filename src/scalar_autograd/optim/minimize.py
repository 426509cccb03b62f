"""``minimize``: compile a loss once and run a whole optimisation on float64 vectors.

The loss is a ``Value`` graph, a compiled function, or a Python function of the params
(traced and guarded by ``sa.value_and_grad``, so its branches are followed).

Example:
    >>> import scalar_autograd as sa
    >>> from scalar_autograd.kinematics import planar_ik_loss
    >>> angles = [sa.Value(0.1, requires_grad=True) for _ in range(5)]
    >>> loss = planar_ik_loss(angles, (2.0, 1.5))
    >>> r = sa.minimize(loss, angles, method="lbfgs")
    >>> r.success, r.fun < 1e-10
    (True, True)
    >>> abs(planar_ik_loss(angles, (2.0, 1.5)).data) < 1e-10   # written back
    True
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.optim.equations import AdamConfig, AdamWConfig, SGDConfig
from scalar_autograd.optim.first_order import run_first_order
from scalar_autograd.optim.lbfgs import Callback, LBFGSConfig, lbfgs_minimize
from scalar_autograd.optim.oracles import (
    BoundOracle,
    TracedOracle,
    bound_oracle,
    check_compiled,
    is_compiled_function,
)
from scalar_autograd.optim.result import OptimizeResult
from scalar_autograd.runtime.jit import MAX_SPECIALIZATIONS
from scalar_autograd.validation import (
    check_bool,
    check_callback,
    check_choice,
    check_nonnegative_float,
    check_pair,
    check_params,
    check_positive_int,
)
from scalar_autograd.value import Value

METHODS = ("adam", "adamw", "sgd", "lbfgs")


def _defaults(config: Any, *leave_out: str) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(config) if f.name not in leave_out}


def _adam_options(config: type[AdamConfig]) -> dict[str, Any]:
    return {"lr": config.lr, "betas": (config.beta1, config.beta2), "eps": config.eps,
            "weight_decay": config.weight_decay, "gradient_tolerance": None}


# Each method's options with their defaults, read from the config dataclasses (which
# state them); ``gradient_tolerance=None`` runs the first-order methods to the end.
_OPTIONS: dict[str, dict[str, Any]] = {
    "sgd": {**_defaults(SGDConfig), "gradient_tolerance": None},
    "adam": _adam_options(AdamConfig),
    "adamw": _adam_options(AdamWConfig),
    "lbfgs": _defaults(LBFGSConfig, "max_iterations"),
}
FIRST_ORDER_ITERATIONS = 1000
"""The default number of steps of the first-order methods."""
_DEFAULT_ITERATIONS = {"sgd": FIRST_ORDER_ITERATIONS, "adam": FIRST_ORDER_ITERATIONS,
                       "adamw": FIRST_ORDER_ITERATIONS, "lbfgs": LBFGSConfig.max_iterations}


def _options(method: str, given: dict[str, Any]) -> dict[str, Any]:
    defaults = _OPTIONS[method]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(
            f"minimize(method={method!r}) got unknown option(s) {', '.join(unknown)}; "
            f"its options are {', '.join(sorted(defaults))}"
        )
    merged = dict(defaults)
    merged.update(given)
    gtol = merged["gradient_tolerance"]
    if gtol is not None:
        merged["gradient_tolerance"] = check_nonnegative_float(gtol, "gradient_tolerance")
    return merged


def _config(method: str, opts: dict[str, Any], max_iterations: int) -> Any:
    if method == "sgd":
        return SGDConfig(**_without(opts, "gradient_tolerance"))
    if method in ("adam", "adamw"):
        beta1, beta2 = check_pair(opts["betas"], "betas")
        config_class = AdamWConfig if method == "adamw" else AdamConfig
        return config_class(beta1=beta1, beta2=beta2,
                            **_without(opts, "betas", "gradient_tolerance"))
    return LBFGSConfig(max_iterations=max_iterations, **opts)  # gradient_tolerance: not None


def _without(opts: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if k not in names}


def minimize(
    loss: Value | Callable[[list[Value]], Value] | Any,
    params: Sequence[Value],
    *,
    method: str = "adam",
    inputs: Sequence[Any] = (),
    max_iterations: int | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    history: bool = False,
    backend: str = "auto",
    max_specializations: int = MAX_SPECIALIZATIONS,
    **options: Any,
) -> OptimizeResult:
    """Minimise a scalar loss over ``params``: compile once, then loop on float64 vectors.

    The loss graph is compiled once (``sa.compile``); every step is one call of the
    compiled value-and-gradient kernel on fixed buffers and one vectorised update, with
    no Python work per parameter (for SGD/Adam/AdamW the whole loop runs natively unless
    a ``callback`` needs Python at every step). The first-order methods give exactly the
    iterates of the hand-written ``zero_grad()`` / gradient / ``step()`` loop with
    :class:`SGD`, :class:`Adam` or :class:`AdamW`.

    At the end the final point is written into the params' ``.data`` (whatever the
    status; ``result.status`` tells why the run stopped). If anything raises, the
    params keep their old values. ``.grad`` is left alone.

    A Python function ``loss(params) -> Value`` is traced and compiled by
    ``sa.value_and_grad`` instead: it is called with a list of traced copies of the
    params (compute the loss from that list, not from ``params`` captured from
    outside), and its Python branches (``if``, ``while``, ``and``/``or``, builtin
    ``min``/``max`` of a ``Value``) become guards checked at every evaluation, with a
    re-trace where one changes, so a piecewise loss is minimised piece by piece as the
    iterates move. Each step then costs one guarded native call plus a little Python
    (the first-order loop steps in Python, not natively).

    Args:
        loss: the scalar loss ``Value`` built from ``params`` (and ``inputs``), a
            compiled function of ``params`` from ``sa.compile``, or a function
            ``loss(params) -> Value`` (see above; the graph of a ``Value`` loss is one
            path through the code that built it, a function's is not).
        params: the leaf ``Value``s to optimise (``requires_grad=True``, no duplicates).
        method: ``"adam"``, ``"adamw"``, ``"sgd"`` or ``"lbfgs"``.
        inputs: for a ``Value`` loss, leaf ``Value``s compiled as runtime inputs (their
            current ``.data`` is used); for a compiled loss, the input values (numbers),
            by default its input leaves' ``.data``.
        max_iterations: the number of steps (first-order methods, default 1000) or the
            most iterations (L-BFGS, default 100); a positive int.
        callback: ``callback(iteration, x, fun)`` with every new iterate (a copy);
            returning ``True`` stops the run (``Status.CALLBACK_STOP``).
        progress: print the loss to stderr as the run goes.
        history: record the loss at every iterate in ``result.history``.
        backend: the JIT backend (see ``sa.compile``).
        max_specializations: for a function ``loss``: the branch patterns traced and
            compiled before ``sa.SpecializationLimitError`` (see ``sa.jit``).
        **options: the method's options, validated up front:

            * ``sgd``: ``lr=0.01``, ``momentum=0``, ``nesterov=False``,
              ``weight_decay=0``, ``gradient_tolerance=None``;
            * ``adam``/``adamw``: ``lr=1e-3``, ``betas=(0.9, 0.999)``, ``eps=1e-8``,
              ``weight_decay`` (0 for Adam's L2, 1e-2 for AdamW's decoupled decay),
              ``gradient_tolerance=None`` (stop early when ``max |g_i|`` is at most it);
            * ``lbfgs``: ``history_size=10``, ``gradient_tolerance=1e-6``, ``ftol``,
              ``max_evaluations=15000``, ``c1=1e-4``, ``c2=0.9``,
              ``max_line_search=25`` (see :func:`lbfgs`).

    Returns:
        An :class:`OptimizeResult`.

    Raises:
        TypeError: a loss that is neither a ``Value``, a compiled function nor a
            callable, an unknown option, or an option of the wrong type.
        ValueError: an unknown method, invalid params, an invalid option value, or a
            function ``loss`` that reads the params it closes over.
        ConcretizationError: a function ``loss`` needs the number of a traced value
            (``float()``, ``math.exp``); the message names the line.
        SpecializationLimitError: a function ``loss`` took more than
            ``max_specializations`` branch patterns.

    Example:
        >>> import scalar_autograd as sa
        >>> w = sa.Value(5.0, requires_grad=True)
        >>> r = sa.minimize((w - 2.0) ** 2, [w], method="adam", lr=0.1, max_iterations=500)
        >>> r.status.name, round(w.data, 4)
        ('COMPLETED', 2.0)
        >>> def piecewise(p):     # linear, then quadratic: a branch followed, not frozen
        ...     x = p[0]
        ...     return (x - 2.0) ** 2 if x > 0 else 4.0 - 4.0 * x
        >>> w.data = -3.0
        >>> r = sa.minimize(piecewise, [w], method="lbfgs")
        >>> r.success, round(w.data, 6)
        (True, 2.0)
    """
    check_choice(method, "method", METHODS)
    plist = check_params(params)
    opts = _options(method, options)
    iterations = _DEFAULT_ITERATIONS[method] if max_iterations is None else max_iterations
    iterations = check_positive_int(iterations, "max_iterations")
    config = _config(method, opts, iterations)
    check_callback(callback)
    check_bool(progress, "progress")
    check_bool(history, "history")
    max_specializations = check_positive_int(max_specializations, "max_specializations")

    function: Any
    if isinstance(loss, Value):
        from scalar_autograd.runtime import compile as jit_compile

        input_leaves = list(inputs)
        for i, v in enumerate(input_leaves):
            if not isinstance(v, Value):
                raise TypeError(f"`inputs` of a Value loss must be leaf Values; inputs[{i}] "
                                f"is {type(v).__name__}")
        function = jit_compile(loss, plist, input_leaves, backend=backend)
        runtime_inputs = None
    elif is_compiled_function(loss):
        check_compiled(loss, plist)
        function = loss
        runtime_inputs = inputs
    elif callable(loss):
        if len(inputs):
            raise ValueError("`inputs` is only used with a Value or compiled loss; a "
                             "function loss takes the params only (close over the data)")
        traced = TracedOracle(loss, plist, max_specializations=max_specializations,
                              backend=backend)
        x0 = np.array([p.data for p in plist], dtype=np.float64)
        result = _run(method, traced, x0, config, iterations, opts, callback, progress,
                      history)
        for p, xi in zip(plist, result.x.tolist()):
            p.data = xi
        return result
    else:
        raise TypeError(f"`loss` must be a Value, a compiled function or a function of "
                        f"the params; got {type(loss).__name__} {loss!r:.60}")

    x0 = np.array([p.data for p in plist], dtype=np.float64)
    with bound_oracle(function, len(plist), runtime_inputs) as oracle:
        result = _run(method, oracle, x0, config, iterations, opts, callback, progress,
                      history)
    for p, xi in zip(plist, result.x.tolist()):
        p.data = xi
    return result


def _run(method: str, oracle: BoundOracle, x0: np.ndarray, config: Any, iterations: int,
         opts: dict[str, Any], callback: Callback | None, progress: bool,
         history: bool) -> OptimizeResult:
    """Run the method's loop on an oracle with BoundOracle's buffers."""
    if method == "lbfgs":
        cb = callback
        if progress:
            cb = _progress_callback(callback, iterations)
        return lbfgs_minimize(oracle, x0, config, callback=cb, history=history)
    return run_first_order(
        oracle, x0, config, iterations,
        gradient_tolerance=opts["gradient_tolerance"], callback=callback,
        progress=progress, history=history, label=method,
    )


def _progress_callback(callback: Callback | None, total: int) -> Callback:
    def report(iteration: int, x: Any, fun: float) -> Any:
        print(f"lbfgs iteration {iteration}/{total}: loss {fun:.8g}", file=sys.stderr)
        return callback(iteration, x, fun) if callback is not None else None

    return report
