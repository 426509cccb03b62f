"""``nonlinear_least_squares``: Levenberg-Marquardt on a Python ``residual_fn`` of Values.

A thin wrapper: ``LeastSquaresProblem.from_residuals(params, residual_fn).solve(...)``
(:mod:`scalar_autograd.lsq.problem`), so a ``residual_fn`` takes every option and
linear solver a problem of residual blocks does, ``linear_solver="schur"`` included.

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

from scalar_autograd.lsq.problem import LeastSquaresProblem
from scalar_autograd.lsq.result import LeastSquaresResult
from scalar_autograd.runtime.jit import MAX_SPECIALIZATIONS
from scalar_autograd.value import Value


def nonlinear_least_squares(
    params: Sequence[Value],
    residual_fn: Callable[[list[Value]], Sequence[Value]],
    *,
    jacobian: str = "auto",
    max_specializations: int = MAX_SPECIALIZATIONS,
    **options: Any,
) -> LeastSquaresResult:
    """Minimise ``0.5 * sum(rho(r_i**2))`` over ``params`` by Levenberg-Marquardt.

    ``residual_fn(params)`` returns the residuals as a sequence of ``Value``. Afterwards
    every param's ``data`` holds the solution (the best point found, whatever the
    status). The same as
    ``LeastSquaresProblem.from_residuals(params, residual_fn, max_specializations=...)
    .solve(jacobian=..., **options)``.

    Args:
        params: the leaf Values to fit (distinct, finite).
        residual_fn: ``params -> [r_0, ..., r_{m-1}]``.
        jacobian: ``"compiled"`` (trace ``residual_fn``, group structurally identical
            residuals, compile each group; Python branches on the params are guarded
            and followed), ``"graph"`` (re-run ``residual_fn`` and ``backward()`` per
            residual at every accepted point) or ``"auto"`` (compiled); see
            :meth:`scalar_autograd.lsq.problem.LeastSquaresProblem.solve`.
        max_specializations: ``jacobian="compiled"``: the branch patterns of
            ``residual_fn`` traced and compiled before ``sa.SpecializationLimitError``
            (which names the branch sites); a positive int. Unused by ``"graph"``.
        **options: the solver options of
            :meth:`~scalar_autograd.lsq.problem.LeastSquaresProblem.solve`:
            ``max_iterations``, ``cost_tolerance``, ``param_tolerance``,
            ``gradient_tolerance``, ``initial_damping``, ``loss``, ``loss_scale``,
            ``linear_solver`` (``"auto"``, ``"dense"``, ``"sparse_cholesky"``,
            ``"sparse_lsmr"`` or ``"schur"``), ``geodesic_acceleration``, ``verbose``,
            ``callback``.

    Returns:
        A :class:`LeastSquaresResult`.

    Raises:
        TypeError: for params or residuals that are not Values, and for an unknown
            option or one of the wrong type.
        ValueError: for empty params or residuals and for bad option values (the
            message names the option, its rule and the value received).
        SpecializationLimitError: for ``jacobian="compiled"`` when ``residual_fn``
            took more than ``max_specializations`` branch patterns.
        ConcretizationError: for ``jacobian="compiled"`` when ``residual_fn`` needs
            the number of a value that depends on the params (``float()``,
            ``math.exp``); the message names the line.
    """
    problem = LeastSquaresProblem.from_residuals(params, residual_fn,
                                                 max_specializations=max_specializations)
    return problem.solve(jacobian=jacobian, **options)
