"""``minimize`` and ``lbfgs``: compile a loss once and run a whole optimisation on vectors.

The loss is a ``Value`` graph, a compiled function, or a Python function of the params
(traced with guards, as ``sa.value_and_grad`` does, so its branches are followed).
``method="lbfgs"`` takes ``bounds`` (L-BFGS-B, :mod:`.lbfgsb`). Solving again costs no
compilation: a ``Value`` graph passed again is not traced again (while its constant
leaves keep their values), and a function's trace finds the compiled code of the same
program (pass the data that changes between solves as ``inputs``).

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
import functools
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.manifolds import TangentSpace, tangent_space
from scalar_autograd.optim.equations import AdamConfig, AdamWConfig, SGDConfig
from scalar_autograd.optim.first_order import run_first_order
from scalar_autograd.optim.lbfgs import Callback, LBFGSConfig, lbfgs_minimize
from scalar_autograd.optim.lbfgsb import Box, check_bounds, lbfgsb_minimize
from scalar_autograd.optim.newton import NewtonConfig, newton_minimize, newton_oracle
from scalar_autograd.optim.oracles import (
    BoundOracle,
    TracedOracle,
    bound_oracle,
    check_compiled,
    compiled_graph,
    is_compiled_function,
    value_oracle,
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

METHODS = ("adam", "adamw", "sgd", "lbfgs", "newton", "newton-cg")
NEWTON_METHODS = ("newton", "newton-cg")


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
    "newton": _defaults(NewtonConfig, "max_iterations", "subproblem"),
    "newton-cg": _defaults(NewtonConfig, "max_iterations", "subproblem"),
}
FIRST_ORDER_ITERATIONS = 1000
"""The default number of steps of the first-order methods."""
_DEFAULT_ITERATIONS = {"sgd": FIRST_ORDER_ITERATIONS, "adam": FIRST_ORDER_ITERATIONS,
                       "adamw": FIRST_ORDER_ITERATIONS, "lbfgs": LBFGSConfig.max_iterations,
                       "newton": None, "newton-cg": None}  # Newton: None is 200 * n


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


@functools.lru_cache(maxsize=32, typed=True)
def _cached_lbfgs_config(*options: tuple[str, Any]) -> LBFGSConfig:
    return LBFGSConfig(**dict(options))


def lbfgs_config(**options: Any) -> LBFGSConfig:
    """``LBFGSConfig(**options)``, validated once per distinct set of options (a repeated
    solve skips the validation, a few µs; ``typed``: ``1`` and ``1.0`` are told apart)."""
    items = tuple(sorted(options.items()))
    try:
        hash(items)
    except TypeError:  # unhashable values: validate (and reject) them every time
        return LBFGSConfig(**options)
    return _cached_lbfgs_config(*items)


def _config(method: str, opts: dict[str, Any], max_iterations: int | None) -> Any:
    if method == "sgd":
        return SGDConfig(**_without(opts, "gradient_tolerance"))
    if method in ("adam", "adamw"):
        beta1, beta2 = check_pair(opts["betas"], "betas")
        config_class = AdamWConfig if method == "adamw" else AdamConfig
        return config_class(beta1=beta1, beta2=beta2,
                            **_without(opts, "betas", "gradient_tolerance"))
    if method in NEWTON_METHODS:
        return NewtonConfig(subproblem="cg" if method == "newton-cg" else "auto",
                            max_iterations=max_iterations, **opts)
    return lbfgs_config(max_iterations=max_iterations, **opts)  # gradient_tolerance: not None


def _without(opts: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if k not in names}


def input_leaves(inputs: Any, params: Sequence[Value], what: str,
                 error: type[Exception] = TypeError) -> list[Value]:
    """``inputs`` as a list of distinct leaf Values, none of them a param (for a Value
    or function loss); ``error`` is raised for an item that is not a Value."""
    leaves = list(inputs)
    param_ids = {id(p) for p in params}
    seen: set[int] = set()
    for i, v in enumerate(leaves):
        if not isinstance(v, Value):
            raise error(f"`inputs` of {what} must be leaf Values; inputs[{i}] is "
                        f"{type(v).__name__} {v!r:.40} (numbers are the inputs of a "
                        f"compiled loss)")
        if v.op is not None:
            raise ValueError(f"`inputs` must be leaf Values; inputs[{i}] is the result of "
                             f"{v.op.name}")
        if id(v) in param_ids:
            raise ValueError(f"inputs[{i}] is also a param; a leaf is either a param or an "
                             f"input")
        if id(v) in seen:
            raise ValueError(f"inputs[{i}] appears twice in `inputs`")
        seen.add(id(v))
    return leaves


def minimize(
    loss: Value | Callable[[list[Value]], Value] | Any,
    params: Sequence[Value],
    *,
    method: str = "adam",
    bounds: Any = None,
    manifolds: Any = None,
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
    params keep their old values. ``.grad`` is left alone. The params need not have
    been made with ``requires_grad=True``.

    A ``Value`` loss passed again (the same root object, params and inputs) is not
    traced again: its compiled function is reused while every leaf that is neither a
    param nor an input still holds the value it was compiled with, since those leaves
    are constants compiled into the code (change one and the graph is compiled anew).
    Make the data that changes between solves ``inputs`` (a target, a measurement):
    a new solve then costs a lookup, a check of the constants and the solve itself.

    A Python function ``loss(params) -> Value`` is traced and compiled here instead:
    it is called with a list of traced copies of the params (compute the loss from that
    list, not from ``params`` captured from outside), and its Python branches (``if``,
    ``while``, ``and``/``or``, builtin ``min``/``max`` of a ``Value``) become guards
    checked at every evaluation, with a re-trace where one changes, so a piecewise loss
    is minimised piece by piece as the iterates move. Each step then costs one guarded
    native call plus a little Python (the first-order loop steps in Python, not
    natively). Every call traces the function once at the start point, so it always
    sees the current values of whatever it reads; the compiled code is reused whenever
    the trace gives a program seen before. Leaf Values the function reads by closure
    and that change between solves (a target) belong in ``inputs``: they are traced as
    runtime inputs, so a new target gives the same program and no compilation, where a
    number that changes gives a new program, compiled anew, at every solve.

    With ``bounds`` (``method="lbfgs"`` only) the solver is L-BFGS-B
    (:func:`~scalar_autograd.optim.lbfgsb.lbfgsb_minimize`): every iterate, and every
    point where the loss is evaluated, lies in the box. A start outside the box is
    first projected onto it (clipped), as scipy does; ``result.active_mask`` tells
    which bounds hold at the solution.

    Args:
        loss: the scalar loss ``Value`` built from ``params`` (and ``inputs``), a
            compiled function of ``params`` from ``sa.compile``, or a function
            ``loss(params) -> Value`` (see above; the graph of a ``Value`` loss is one
            path through the code that built it, a function's is not).
        params: the leaf ``Value``s to optimise (``requires_grad=True``, no duplicates).
        method: ``"adam"``, ``"adamw"``, ``"sgd"``, ``"lbfgs"``, ``"newton"`` (a
            trust-region Newton method: Moré–Sorensen steps on the compiled Hessian up
            to 100 params, Steihaug–CG on Hessian-vector products above; see
            :mod:`~scalar_autograd.optim.newton`) or ``"newton-cg"`` (always CG).
        bounds: ``(lower, upper)`` for ``method="lbfgs"``: each a number, an array with
            one bound per param or ``None``; ``-inf``/``inf`` for no bound, equal
            bounds fix a param (scipy's conventions; a ``scipy.optimize.Bounds`` works
            too). See :func:`~scalar_autograd.optim.lbfgsb.check_bounds`.
        manifolds: for ``method="lbfgs"``: parameter blocks on manifolds,
            ``[(block, manifold), ...]``, a block a list of params (or a slice or list
            of indices into ``params``), a manifold a
            :class:`~scalar_autograd.manifolds.Manifold` (``sa.QuaternionManifold()``,
            ``sa.SphereManifold(n)``, ...). L-BFGS then runs in their tangent space
            and keeps every block on its manifold (see
            :mod:`~scalar_autograd.optim.lbfgs`); the params must start on them. Not
            with ``bounds``.
        inputs: for a ``Value`` loss, leaf ``Value``s compiled as runtime inputs, and
            for a function loss, leaf ``Value``s it reads by closure, traced as runtime
            inputs (their current ``.data`` is used in both cases); for a compiled
            loss, the input values (numbers), by default its input leaves' ``.data``.
        max_iterations: the number of steps (first-order methods, default 1000) or the
            most iterations (L-BFGS, default 100; Newton, default ``200 * n``); a
            positive int.
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
            * ``lbfgs``: ``history_size=10``, ``gradient_tolerance=1e-6``, ``ftol``
              (scipy's 2.2e-9), ``max_evaluations=15000``, ``c1=1e-4``, ``c2=0.9``,
              ``max_line_search=25`` (see :func:`lbfgs`, which also explains when
              to lower ``ftol`` and ``gradient_tolerance``);
            * ``newton``/``newton-cg``: ``gradient_tolerance=1e-6`` (on ``max |g_i|``),
              ``initial_trust_radius=1``, ``max_trust_radius=1000``, ``eta=0.15``,
              ``max_cg_iterations=None`` (2n) (see
              :class:`~scalar_autograd.optim.newton.NewtonConfig`). ``progress`` is
              not shown for them.

    Returns:
        An :class:`OptimizeResult`.

    Raises:
        TypeError: a loss that is neither a ``Value``, a compiled function nor a
            callable, an unknown option, or an option of the wrong type.
        ValueError: an unknown method, invalid params, an invalid option value,
            invalid ``bounds`` or ``bounds`` with another method than ``"lbfgs"``,
            ``manifolds`` with another method than ``"lbfgs"`` or with ``bounds``, a
            start off a manifold, or a function ``loss`` that reads the params it
            closes over.
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
        >>> r = sa.minimize(piecewise, [w], method="lbfgs", bounds=(-1.0, 1.5))
        >>> round(w.data, 6), r.active_mask.tolist()      # held at the upper bound
        (1.5, [1])

        A unit quaternion ``[w, x, y, z]`` turned towards a target orientation (a
        quarter turn about z), kept unit by its manifold:

        >>> import math
        >>> from scalar_autograd.kinematics import rotation_error
        >>> q = [sa.Value(v) for v in (1.0, 0.0, 0.0, 0.0)]
        >>> target = [math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]
        >>> r = sa.minimize(lambda p: sa.sum([e * e for e in rotation_error(p, target)]),
        ...                 q, method="lbfgs", manifolds=[(q, sa.QuaternionManifold())],
        ...                 gradient_tolerance=1e-10)
        >>> [round(v.data, 9) + 0.0 for v in q], round(math.hypot(*(v.data for v in q)), 15)
        ([0.707106781, 0.0, 0.0, 0.707106781], 1.0)
    """
    check_choice(method, "method", METHODS)
    plist = check_params(params, requires_grad=False)
    if bounds is not None and method != "lbfgs":
        raise ValueError(f"`bounds` needs method='lbfgs' (L-BFGS-B); got method={method!r}")
    box = check_bounds(bounds, len(plist))
    space = _manifold_space(manifolds, plist, method, box)
    opts = _options(method, options)
    iterations = _DEFAULT_ITERATIONS[method] if max_iterations is None else max_iterations
    if iterations is not None:
        iterations = check_positive_int(iterations, "max_iterations")
    config = _config(method, opts, iterations)
    check_callback(callback)
    check_bool(progress, "progress")
    check_bool(history, "history")
    max_specializations = check_positive_int(max_specializations, "max_specializations")
    if method in NEWTON_METHODS:
        leaves = inputs if is_compiled_function(loss) else \
            input_leaves(inputs, plist, "the loss", ValueError)
        second_order = newton_oracle(loss, plist, leaves, backend=backend,
                                     max_specializations=max_specializations)
        x0 = np.array([p.data for p in plist], dtype=np.float64)
        result = newton_minimize(second_order, x0, config, callback=callback,
                                 history=history)
        for p, xi in zip(plist, result.x.tolist()):
            p.data = xi
        return result
    assert iterations is not None     # only Newton's default depends on n

    function: Any
    if isinstance(loss, Value):
        leaves = input_leaves(inputs, plist, "a Value loss")
        function = compiled_graph(loss, plist, leaves, backend=backend)
        runtime_inputs = None
    elif is_compiled_function(loss):
        check_compiled(loss, plist)
        function = loss
        runtime_inputs = inputs
    elif callable(loss):
        leaves = input_leaves(inputs, plist, "a function loss", ValueError)
        traced = TracedOracle(loss, plist, inputs=leaves,
                              max_specializations=max_specializations, backend=backend)
        x0 = np.array([p.data for p in plist], dtype=np.float64)
        result = _run(method, traced, x0, config, iterations, opts, callback, progress,
                      history, box, space)
        for p, xi in zip(plist, result.x.tolist()):
            p.data = xi
        return result
    else:
        raise TypeError(f"`loss` must be a Value, a compiled function or a function of "
                        f"the params; got {type(loss).__name__} {loss!r:.60}")

    x0 = np.array([p.data for p in plist], dtype=np.float64)
    with bound_oracle(function, len(plist), runtime_inputs) as oracle:
        result = _run(method, oracle, x0, config, iterations, opts, callback, progress,
                      history, box, space)
    for p, xi in zip(plist, result.x.tolist()):
        p.data = xi
    return result


def _manifold_space(manifolds: Any, params: list[Value], method: str, box: Box | None
                    ) -> TangentSpace | None:
    """The tangent space of ``manifolds`` (None without), checked against the method,
    the bounds and the params' current values."""
    if manifolds is None:
        return None
    if method != "lbfgs":
        raise ValueError(f"`manifolds` needs method='lbfgs'; got method={method!r}")
    space = tangent_space(manifolds, len(params), params)
    if space is None:
        return None
    if box is not None:
        raise ValueError("`bounds` cannot be combined with `manifolds` (L-BFGS-B works on "
                         "the params themselves, not in a tangent space); drop one of them")
    space.check(np.array([p.data for p in params], dtype=np.float64), "params")
    return space


def _run(method: str, oracle: BoundOracle, x0: np.ndarray, config: Any, iterations: int,
         opts: dict[str, Any], callback: Callback | None, progress: bool,
         history: bool, box: Box | None = None, space: TangentSpace | None = None
         ) -> OptimizeResult:
    """Run the method's loop on an oracle with BoundOracle's buffers."""
    if method == "lbfgs":
        cb = callback
        if progress:
            cb = _progress_callback(callback, iterations)
        if box is not None:
            return lbfgsb_minimize(oracle, x0, box, config, callback=cb, history=history)
        return lbfgs_minimize(oracle, x0, config, callback=cb, history=history,
                              manifold=space)
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


# ---------------------------------------------------------------------------- sa.lbfgs
def _is_param_list(obj: Any) -> bool:
    """Whether ``obj`` looks like a list of params rather than an objective."""
    return (not callable(obj) and not isinstance(obj, (Value, str, bytes))
            and isinstance(obj, Iterable))


def lbfgs(
    objective: Value | Callable[[list[Value]], Value] | Any,
    params: Sequence[Value],
    *,
    bounds: Any = None,
    manifolds: Any = None,
    max_iterations: int = LBFGSConfig.max_iterations,
    history_size: int = LBFGSConfig.history_size,
    gradient_tolerance: float = LBFGSConfig.gradient_tolerance,
    ftol: float = LBFGSConfig.ftol,
    max_evaluations: int = LBFGSConfig.max_evaluations,
    c1: float = LBFGSConfig.c1,
    c2: float = LBFGSConfig.c2,
    max_line_search: int = LBFGSConfig.max_line_search,
    inputs: Any = None,
    callback: Callback | None = None,
    history: bool = False,
    backend: str = "auto",
) -> OptimizeResult:
    """Minimise ``objective`` over ``params`` by L-BFGS (L-BFGS-B with ``bounds``).

    The arguments come in scipy's order, objective first, as in :func:`minimize`.
    ``sa.lbfgs(params, objective)``, the order of earlier versions, still works (told
    apart by the arguments' types) and gives a ``DeprecationWarning``.

    Without ``bounds``, L-BFGS with a strong-Wolfe line search
    (:func:`~scalar_autograd.optim.lbfgs.lbfgs_minimize`). With ``bounds``, L-BFGS-B
    (:func:`~scalar_autograd.optim.lbfgsb.lbfgsb_minimize`, scipy's algorithm): the
    objective is only ever evaluated inside the box, a start outside it is projected
    onto it (as scipy does), ``gradient_tolerance`` bounds the projected gradient and
    ``result.active_mask`` marks the params held at a bound.

    Stopping: when ``max |g_i| <= gradient_tolerance`` (``g`` projected with bounds), or
    when an iteration lowers the objective by a relative ``ftol`` or less, or at
    ``max_iterations``/``max_evaluations``. The defaults are scipy's; a problem whose
    minimum is exactly 0 (inverse kinematics to a reachable target, a fit through
    exact data) often stops on ``ftol`` while the objective is still far above
    rounding: ``ftol=0`` lets it run until the gradient test holds, and a smaller
    ``gradient_tolerance`` gets closer still.

    Args:
        objective: a function ``objective(params) -> Value`` (the graph is rebuilt and
            back-propagated at every evaluation: any Python works, and ``.grad`` is
            left at the final gradient), a ``Value`` loss built from ``params``
            (compiled once, and reused when the same graph comes again, as in
            :func:`minimize`), or a compiled function from ``sa.compile(loss, params)``
            (called on float64 vectors).
        params: the leaf ``Value``s to optimise (distinct; ``requires_grad`` is not
            needed).
        bounds: ``(lower, upper)``: each a number, one bound per param or ``None``;
            ``-inf``/``inf`` for no bound, equal bounds fix a param (scipy's
            conventions, see :func:`~scalar_autograd.optim.lbfgsb.check_bounds`).
        manifolds: parameter blocks on manifolds, ``[(block, manifold), ...]`` (see
            :func:`minimize`): L-BFGS in their tangent space; not with ``bounds``.
        max_iterations: the most iterations, >= 1.
        history_size: the number of curvature pairs kept, >= 1.
        gradient_tolerance: stop when ``max |g_i| <= gradient_tolerance``, >= 0.
        ftol: stop when ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol``, >= 0.
        max_evaluations: the most objective evaluations, >= 1.
        c1: sufficient-decrease constant of the line search, in (0, 1).
        c2: curvature constant of the line search, in (c1, 1).
        max_line_search: the most evaluations per line search, >= 1.
        inputs: for a compiled ``objective``, its runtime input values (numbers; by
            default the current ``.data`` of its input leaves); for a ``Value``
            objective, leaf ``Value``s compiled as runtime inputs.
        callback: ``callback(iteration, x, fun)``; returning ``True`` stops.
        history: record the objective at every iterate in ``result.history``.
        backend: the JIT backend for a ``Value`` objective (see ``sa.compile``).

    Returns:
        An :class:`OptimizeResult`. The parameters' ``.data`` is set to ``result.x``
        (also when the run stops without converging). With a function objective their
        ``.grad`` holds the gradient at ``result.x``; the other kinds leave ``.grad``
        alone. If the objective raises, the parameters keep their old values.

    Raises:
        TypeError, ValueError: for invalid parameters, options or bounds, named in the
            message.

    Example:
        >>> import scalar_autograd as sa
        >>> a = sa.Value(-1.2); b = sa.Value(1.0)
        >>> def rosenbrock(p):
        ...     x, y = p
        ...     return (1 - x) ** 2 + 100 * (y - x * x) ** 2
        >>> r = sa.lbfgs(rosenbrock, [a, b])
        >>> r.success, round(a.data, 4), round(b.data, 4)
        (True, 1.0, 1.0)
        >>> r = sa.lbfgs(rosenbrock, [a, b], bounds=(None, [0.5, 2.0]))
        >>> round(a.data, 6), round(b.data, 6), r.active_mask.tolist()
        (0.5, 0.25, [1, 0])
    """
    if _is_param_list(objective) and not _is_param_list(params):
        warnings.warn("sa.lbfgs(params, objective) is deprecated: write "
                      "sa.lbfgs(objective, params), the order of sa.minimize and "
                      "scipy.optimize.minimize", DeprecationWarning, stacklevel=2)
        objective, params = params, objective
    plist = check_params(params, requires_grad=False)
    config = lbfgs_config(max_iterations=max_iterations, history_size=history_size,
                          gradient_tolerance=gradient_tolerance, ftol=ftol,
                          max_evaluations=max_evaluations, c1=c1, c2=c2,
                          max_line_search=max_line_search)
    check_callback(callback)
    check_bool(history, "history")
    box = check_bounds(bounds, len(plist))
    space = _manifold_space(manifolds, plist, "lbfgs", box)
    x0 = np.array([p.data for p in plist], dtype=np.float64)

    def solve(oracle: Any) -> OptimizeResult:
        if box is not None:
            return lbfgsb_minimize(oracle, x0, box, config, callback=callback,
                                   history=history)
        return lbfgs_minimize(oracle, x0, config, callback=callback, history=history,
                              manifold=space)

    if isinstance(objective, Value):
        leaves = input_leaves(() if inputs is None else inputs, plist, "a Value objective")
        function = compiled_graph(objective, plist, leaves, backend=backend)
        with bound_oracle(function, len(plist)) as oracle:
            res = solve(oracle)
    elif is_compiled_function(objective):
        check_compiled(objective, plist)
        with bound_oracle(objective, len(plist), inputs) as oracle:
            res = solve(oracle)
    elif callable(objective):
        if inputs is not None:
            raise ValueError("`inputs` is only used with a compiled objective (numbers) or "
                             "a Value objective (leaf Values); got a function objective: "
                             "let it read the data")
        res = _solve_eagerly(plist, objective, x0, solve)
    else:
        raise TypeError(
            "`objective` must be a function of the params returning a Value, a Value "
            f"loss or a compiled function; got {type(objective).__name__} {objective!r:.60}"
        )
    for p, xi in zip(plist, res.x.tolist()):
        p.data = xi
    return res


def _solve_eagerly(params: list[Value], objective: Callable[[list[Value]], Value],
                   x0: np.ndarray, solve: Callable[[Any], OptimizeResult]) -> OptimizeResult:
    """Run ``solve`` on the eager oracle (graph rebuilt and back-propagated at every
    evaluation), with ``requires_grad`` switched on for the run; ``.grad`` is left at
    the gradient of the returned point, ``.data`` restored if anything raises."""
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad = True
    fg = value_oracle(params, objective)
    try:
        res = solve(fg)
        fg(res.x)
    except BaseException:
        for p, xi in zip(params, x0.tolist()):
            p.data = xi
        raise
    finally:
        for p, requires_grad in zip(params, saved):
            p.requires_grad = requires_grad
    return res
