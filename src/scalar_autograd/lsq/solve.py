"""``nonlinear_least_squares``: Levenberg-Marquardt on a Python ``residual_fn`` of Values.

Example:
    >>> import scalar_autograd as sa
    >>> pts = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0), (0.7071, 0.7071)]
    >>> cx, cy, r = (sa.Value(0.3, label="cx"), sa.Value(-0.2, label="cy"),
    ...              sa.Value(2.0, label="r"))
    >>> def residuals(p):
    ...     cx, cy, r = p
    ...     return [sa.sqrt((x - cx) ** 2 + (y - cy) ** 2) - r for x, y in pts]
    >>> res = sa.nonlinear_least_squares([cx, cy, r], residuals, jacobian="graph")
    >>> res.success, round(r.data, 3)
    (True, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.lsq.graph_oracle import GraphOracle
from scalar_autograd.lsq.levenberg_marquardt import IterationInfo, levenberg_marquardt
from scalar_autograd.lsq.options import (
    DEFAULT_COST_TOLERANCE,
    DEFAULT_GRADIENT_TOLERANCE,
    DEFAULT_PARAM_TOLERANCE,
    _positive_int,
    validate_jacobian_mode,
    validate_options,
)
from scalar_autograd.lsq.params import check_params, describe_constant_rows
from scalar_autograd.lsq.result import LeastSquaresResult
from scalar_autograd.value import Value


def jit_compile_available() -> bool:
    """Whether the JIT (``scalar_autograd.runtime.compile``) can be imported."""
    try:
        from scalar_autograd.runtime import compile as _compile  # noqa: F401
    except ImportError:
        return False
    return True


def jit_available() -> bool:
    """Whether the compiled ``residual_fn`` path can run (the JIT's ``compile``)."""
    return jit_compile_available()


def nonlinear_least_squares(
    params: Sequence[Value],
    residual_fn: Callable[[list[Value]], Sequence[Value]],
    *,
    max_iterations: int = 100,
    cost_tolerance: float = DEFAULT_COST_TOLERANCE,
    param_tolerance: float = DEFAULT_PARAM_TOLERANCE,
    gradient_tolerance: float = DEFAULT_GRADIENT_TOLERANCE,
    initial_damping: float | None = None,
    jacobian: str = "auto",
    loss: str = "linear",
    loss_scale: float = 1.0,
    verbose: bool = False,
    callback: Callable[[IterationInfo], bool | None] | None = None,
    linear_solver: str = "auto",
    geodesic_acceleration: bool = False,
    max_specializations: int = 8,
) -> LeastSquaresResult:
    """Minimise ``0.5 * sum(rho(r_i**2))`` over ``params`` by Levenberg-Marquardt.

    ``residual_fn(params)`` returns the residuals as a sequence of ``Value``. Afterwards
    every param's ``data`` holds the solution (the best point found, whatever the
    status).

    Args:
        params: the leaf Values to fit (distinct, finite).
        residual_fn: ``params -> [r_0, ..., r_{m-1}]``.
        max_iterations: most trial steps (linear solves), accepted or not.
        cost_tolerance: stop when an accepted step's actual and predicted relative cost
            reductions are both at most this (scipy's ``ftol``).
        param_tolerance: stop when the step is at most ``xtol * (xtol + |x|)`` in the
            norm scaled by the Jacobian's column norms (scipy's ``xtol``, MINPACK's
            scaled form).
        gradient_tolerance: stop when the largest cosine between the residual vector
            and a Jacobian column is at most this (scipy's ``gtol`` for ``method="lm"``).
        initial_damping: the first ``mu``, relative to the Marquardt diagonal. The
            default (None) starts as MINPACK does: an undamped Gauss-Newton step,
            limited to the initial trust radius ``100 * |sqrt(D) x0|`` (Moré 1978).
        jacobian: ``"graph"``: rebuild the graph and call ``backward()`` once per
            residual at every accepted point (works for any ``residual_fn``).
            ``"compiled"``: trace ``residual_fn`` once, group structurally identical
            residuals and compile each group's Jacobian with the JIT. Python branches
            on the params (``if``, ``while``, ``and``/``or``, builtin ``min``/``max``
            of a ``Value``) are guarded as in ``sa.jit``: their outcomes are checked
            by one compiled function at every point, and ``residual_fn`` is traced
            again where one changes (see ``max_specializations``; ``sa.where`` keeps a
            branch inside one compiled function). ``float()``, ``int()`` and
            ``math.*`` of a value depending on the params raise
            ``sa.ConcretizationError``; a branch on ``p.data`` (a plain float) cannot
            be seen and stays frozen. ``"auto"``: compiled when the JIT is available.
        loss: ``"linear"``, ``"huber"``, ``"soft_l1"``, ``"cauchy"`` or ``"arctan"``
            (scipy's robust losses, applied to ``z = (r / loss_scale)**2``).
        loss_scale: the soft margin between inlier and outlier residuals.
        verbose: print one line per iteration and the reason for stopping.
        callback: called after every trial step with an :class:`IterationInfo`;
            returning ``True`` stops the solver (status ``CALLBACK_STOP``).
        linear_solver: ``"auto"``, ``"dense"``, ``"sparse_cholesky"`` or
            ``"sparse_lsmr"`` (see :mod:`scalar_autograd.lsq.linalg`).
        geodesic_acceleration: add the second-order geodesic correction of Transtrum
            and Sethna (2012) to every step, at the price of one more residual
            evaluation per trial step. It can help when parameters "evaporate" along
            a flat valley (the default solver also rejects steps that make a Jacobian
            column vanish; see :mod:`scalar_autograd.lsq.levenberg_marquardt`).
        max_specializations: ``jacobian="compiled"``: the branch patterns of
            ``residual_fn`` traced and compiled before ``sa.SpecializationLimitError``
            (which names the branch sites); a positive int. Unused by ``"graph"``.

    Returns:
        A :class:`LeastSquaresResult`.

    Raises:
        TypeError: for params or residuals that are not Values.
        ValueError: for empty params or residuals and for bad option values (the
            message names the option, its rule and the value received).
        RuntimeError: for ``jacobian="compiled"`` when the JIT is not available.
        SpecializationLimitError: for ``jacobian="compiled"`` when ``residual_fn``
            took more than ``max_specializations`` branch patterns.
        ConcretizationError: for ``jacobian="compiled"`` when ``residual_fn`` needs
            the number of a value that depends on the params (``float()``,
            ``math.exp``); the message names the line.
    """
    opts = validate_options(
        max_iterations=max_iterations, cost_tolerance=cost_tolerance,
        param_tolerance=param_tolerance, gradient_tolerance=gradient_tolerance,
        initial_damping=initial_damping, loss=loss, loss_scale=loss_scale, verbose=verbose,
        callback=callback, linear_solver=linear_solver,
        geodesic_acceleration=geodesic_acceleration,
    )
    mode = validate_jacobian_mode(jacobian)
    max_specializations = _positive_int("max_specializations", max_specializations)
    if not callable(residual_fn):
        raise TypeError(f"residual_fn must be callable; got {type(residual_fn).__name__}")
    plist = check_params(params)
    if mode == "compiled" and not jit_available():
        raise RuntimeError(
            'jacobian="compiled" needs the JIT (scalar_autograd.runtime.compile and '
            'group_residuals), which is not available; use jacobian="graph"'
        )
    if mode == "auto":
        mode = "compiled" if jit_available() else "graph"
    x0 = np.array([p.data for p in plist], dtype=float)
    saved_requires_grad = [p.requires_grad for p in plist]
    for p in plist:
        p.requires_grad = True
    oracle: Any
    try:
        if mode == "compiled":
            from scalar_autograd.lsq.compiled_oracle import CompiledOracle

            oracle = CompiledOracle(plist, residual_fn, opts.linear_solver,
                                    max_specializations=max_specializations)
        else:
            oracle = GraphOracle(plist, residual_fn)
        result = levenberg_marquardt(
            _noting_constants(oracle, opts.verbose), oracle.residuals, x0, opts
        )
    except BaseException:
        for p, v in zip(plist, x0):
            p.data = float(v)
        raise
    finally:
        for p, rg in zip(plist, saved_requires_grad):
            p.requires_grad = rg
    for p, v in zip(plist, result.x):
        p.data = float(v)
    return result


def _noting_constants(oracle: Any, verbose: bool) -> Callable[[np.ndarray], Any]:
    """Wrap ``residuals_and_jacobian`` to print, once, which residuals are constants."""
    state = {"told": False}

    def residuals_and_jacobian(x: np.ndarray) -> Any:
        out = oracle.residuals_and_jacobian(x)
        if verbose and not state["told"]:
            state["told"] = True
            if oracle.constant_rows:
                print(describe_constant_rows(oracle.constant_rows))
        return out

    return residuals_and_jacobian
