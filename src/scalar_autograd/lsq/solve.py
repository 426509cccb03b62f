"""``nonlinear_least_squares``: least squares on a Python ``residual_fn`` of Values.

A thin wrapper: ``LeastSquaresProblem.from_residuals(params, residual_fn,
inputs=...).solve(...)`` (:mod:`scalar_autograd.lsq.problem`), so a ``residual_fn``
takes every option and linear solver a problem of residual blocks does,
``linear_solver="schur"``, ``bounds`` and ``sigma`` included.

**Re-solving without re-tracing.** Given ``inputs`` (the leaf Values ``residual_fn``
reads by closure and whose ``.data`` you change between calls: a target, a
measurement), the problem is kept in a small cache keyed by ``residual_fn``, the
params and the inputs (the objects themselves, held by the cache, so their ids stay
theirs), ``max_specializations`` and the ``jacobian`` mode: a later call with the same
ones starts from the params' current ``.data`` and reads the inputs' current ``.data``
into the compiled kernels without tracing ``residual_fn`` again. Every other number
``residual_fn`` reads is then frozen at the first call (as ``sa.jit`` freezes a
closure): declare it an input if it changes. Without ``inputs`` nothing is cached and
every call traces ``residual_fn`` anew (its kernels come from the kernel cache), so a
``residual_fn`` whose closure changes between calls is always solved as it stands.

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

Inverse kinematics of a planar 3-joint arm to a moving target, traced once:
    >>> import numpy as np
    >>> from scalar_autograd.kinematics import planar_arm_end
    >>> q = [sa.Value(0.3) for _ in range(3)]
    >>> tx, ty = sa.Value(0.0), sa.Value(0.0)
    >>> def reach(p):
    ...     x, y = planar_arm_end(p)
    ...     return [x - tx, y - ty]
    >>> for target in [(1.5, 1.0), (1.0, 1.5), (0.5, 2.0)]:
    ...     tx.data, ty.data = target
    ...     res = sa.nonlinear_least_squares(q, reach, inputs=[tx, ty])
    ...     print(res.success, round(float(np.hypot(*res.residuals)), 9))
    True 0.0
    True 0.0
    True 0.0
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.lsq.options import validate_jacobian_mode
from scalar_autograd.lsq.problem import LeastSquaresProblem, check_inputs
from scalar_autograd.lsq.result import LeastSquaresResult
from scalar_autograd.runtime.jit import MAX_SPECIALIZATIONS
from scalar_autograd.validation import check_params, check_positive_int
from scalar_autograd.value import Value

MAX_CACHED_PROBLEMS = 32
"""Problems kept for re-solving with new ``inputs`` (least recently used dropped)."""

_PROBLEMS: OrderedDict[tuple[Any, ...], LeastSquaresProblem] = OrderedDict()
_PROBLEMS_LOCK = threading.Lock()


def _cached_problem(params: list[Value], residual_fn: Callable[..., Any],
                    inputs: list[Value], max_specializations: int, mode: str
                    ) -> LeastSquaresProblem:
    """The kept problem of these objects (made on the first call), starting at the
    params' current ``.data``."""
    key = (residual_fn, tuple(map(id, params)), tuple(map(id, inputs)),
           max_specializations, "graph" if mode == "graph" else "compiled")
    with _PROBLEMS_LOCK:
        problem = _PROBLEMS.get(key)
        if problem is not None:
            _PROBLEMS.move_to_end(key)
    if problem is None:
        problem = LeastSquaresProblem.from_residuals(
            params, residual_fn, inputs=inputs, max_specializations=max_specializations)
        with _PROBLEMS_LOCK:
            _PROBLEMS[key] = problem        # the problem holds params and inputs alive
            if len(_PROBLEMS) > MAX_CACHED_PROBLEMS:
                _PROBLEMS.popitem(last=False)
    else:
        problem.x = np.array([p.data for p in params], dtype=float)
    return problem


def clear_cache() -> None:
    """Forget the problems kept for re-solving (their compiled kernels stay in the
    kernel cache)."""
    with _PROBLEMS_LOCK:
        _PROBLEMS.clear()


def nonlinear_least_squares(
    params: Sequence[Value],
    residual_fn: Callable[[list[Value]], Sequence[Value]],
    *,
    inputs: Sequence[Value] | None = None,
    jacobian: str = "auto",
    max_specializations: int = MAX_SPECIALIZATIONS,
    bounds: Any = None,
    sigma: Any = None,
    absolute_sigma: bool = False,
    manifolds: Any = None,
    **options: Any,
) -> LeastSquaresResult:
    """Minimise ``0.5 * sum(rho(r_i**2))`` over ``params`` (within ``bounds`` if given).

    ``residual_fn(params)`` returns the residuals as a sequence of ``Value``. Afterwards
    every param's ``data`` holds the solution (the best point found, whatever the
    status). Unbounded problems are solved by Levenberg-Marquardt, bounded ones by
    scipy's Trust Region Reflective method (:mod:`scalar_autograd.lsq.trf`). The same as
    ``LeastSquaresProblem.from_residuals(params, residual_fn, inputs=...,
    max_specializations=...).solve(jacobian=..., bounds=..., sigma=...,
    absolute_sigma=..., **options)``, except that with ``inputs`` the problem (its
    trace and compiled kernels) is kept for the next call with the same
    ``residual_fn``, params and inputs (see the module docstring).

    Args:
        params: the leaf Values to fit (distinct, finite).
        residual_fn: ``params -> [r_0, ..., r_{m-1}]``.
        inputs: leaf Values ``residual_fn`` reads by closure whose ``.data`` changes
            between calls: traced as runtime inputs, so a later call with the same
            ``residual_fn``, params and inputs re-solves with their new ``.data``
            without tracing again; every other number ``residual_fn`` reads is then
            frozen at the first call. None (the default): trace at every call.
        jacobian: ``"compiled"`` (trace ``residual_fn``, group structurally identical
            residuals, compile each group; Python branches on the params are guarded
            and followed), ``"graph"`` (re-run ``residual_fn`` and ``backward()`` per
            residual at every accepted point) or ``"auto"`` (compiled); see
            :meth:`scalar_autograd.lsq.problem.LeastSquaresProblem.solve`.
        max_specializations: ``jacobian="compiled"``: the branch patterns of
            ``residual_fn`` traced and compiled before ``sa.SpecializationLimitError``
            (which names the branch sites); a positive int. Unused by ``"graph"``.
        bounds: ``(lower, upper)``, scalars or one per param, ``-inf``/``inf`` for
            none (scipy ``least_squares``'s conventions); the params must start within
            them. The result's ``active_mask`` tells which bounds hold at the solution.
        sigma: standard deviations of the residuals (a scalar or ``(m,)``) or their
            ``(m, m)`` covariance: the solver minimises ``r_i / sigma_i``.
        absolute_sigma: ``sigma`` is absolute: ``result.covariance()`` is not scaled by
            the residual variance (scipy ``curve_fit``'s rule).
        manifolds: parameter blocks on manifolds, ``[(block, manifold), ...]``: a block
            is a list of params (or a slice or list of indices into ``params``), a
            manifold a :class:`~scalar_autograd.manifolds.Manifold`
            (``sa.QuaternionManifold()``, ``sa.AngleAxisManifold()``,
            ``sa.SphereManifold(n)``, ``sa.SubsetManifold(n, constant)``, ...). The
            solver then steps in their tangent space and keeps each block on its
            manifold (see :meth:`~scalar_autograd.LeastSquaresProblem.set_manifold`);
            not with ``bounds``.
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
        TypeError: for params, inputs or residuals that are not Values, and for an
            unknown option or one of the wrong type.
        ValueError: for empty params or residuals, bad option values (the message
            names the option, its rule and the value received), bad bounds, params
            starting outside the bounds ("x0 is infeasible"), or a bad ``sigma``.
        SpecializationLimitError: for ``jacobian="compiled"`` when ``residual_fn``
            took more than ``max_specializations`` branch patterns.
        ConcretizationError: for ``jacobian="compiled"`` when ``residual_fn`` needs
            the number of a value that depends on the params or inputs (``float()``,
            ``math.exp``); the message names the line.

    Example (a rate constant held non-negative):
        >>> import numpy as np, scalar_autograd as sa
        >>> t = np.linspace(0.0, 2.0, 20)
        >>> y = 1.5 * np.exp(0.2 * t)                  # the data want a negative rate
        >>> a, k = sa.Value(1.0), sa.Value(1.0)
        >>> res = sa.nonlinear_least_squares(
        ...     [a, k], lambda p: [p[0] * sa.exp(-p[1] * ti) - yi for ti, yi in zip(t, y)],
        ...     bounds=(0.0, np.inf))
        >>> res.active_mask.tolist(), round(k.data, 12)
        ([0, -1], 0.0)

    Example (a rotation, as a unit quaternion, aligning two sets of directions):
        >>> from scipy.spatial.transform import Rotation
        >>> a = np.eye(3)
        >>> b = Rotation.from_rotvec([0.3, -0.2, 0.5]).apply(a)
        >>> q = [sa.Value(v) for v in (1.0, 0.0, 0.0, 0.0)]     # w, x, y, z
        >>> def misfit(p):
        ...     w, x, y, z = p
        ...     R = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        ...          [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        ...          [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
        ...     return [sum(R[i][k] * ai[k] for k in range(3)) - bi[i]
        ...             for ai, bi in zip(a, b) for i in range(3)]
        >>> res = sa.nonlinear_least_squares(q, misfit,
        ...                                  manifolds=[(q, sa.QuaternionManifold())])
        >>> found = Rotation.from_quat([v.data for v in q], scalar_first=True)
        >>> res.success, round(float(np.linalg.norm(found.as_rotvec() - [0.3, -0.2, 0.5])), 9)
        (True, 0.0)
    """
    if inputs is None:
        problem = LeastSquaresProblem.from_residuals(params, residual_fn,
                                                     max_specializations=max_specializations)
    else:
        plist = check_params(params, requires_grad=False, finite=True)
        if not callable(residual_fn):
            raise TypeError(f"residual_fn must be callable; got {type(residual_fn).__name__}")
        ulist = check_inputs(inputs, plist)
        limit = check_positive_int(max_specializations, "max_specializations")
        problem = _cached_problem(plist, residual_fn, ulist, limit,
                                  validate_jacobian_mode(jacobian))
    problem.set_manifolds(manifolds)
    return problem.solve(jacobian=jacobian, bounds=bounds, sigma=sigma,
                         absolute_sigma=absolute_sigma, **options)
