"""L-BFGS-B: limited-memory quasi-Newton minimisation within bounds (Byrd, Lu, Nocedal & Zhu).

:func:`lbfgsb_minimize` minimises ``f(x)`` subject to ``lower <= x <= upper`` on a flat
oracle ``fun_and_grad(x) -> (f, g)``, as scipy's ``minimize(method="L-BFGS-B")`` does
(L-BFGS-B 3.0: Byrd, Lu, Nocedal & Zhu 1995; Zhu et al. 1997; Morales & Nocedal 2011).
Each iteration:

1. **Generalized Cauchy point.** The quadratic model
   ``m(x + s) = f + g.s + 0.5 s.B s`` is followed along the projected steepest-descent
   path ``P(x - t g)``, a piecewise line whose kinks (breakpoints) are where variables
   reach their bounds, to its first local minimiser ``x_c``. ``B`` is the compact
   limited-memory matrix ``B = theta I - W M W^T`` with ``W = [Y, theta S]`` (the last
   ``history_size`` pairs ``s = x_{k+1} - x_k``, ``y = g_{k+1} - g_k``) and ``M`` the
   inverse of ``[[-D, L^T], [L, theta S^T S]]`` (``D = diag(S^T Y)``, ``L`` its strictly
   lower part), ``theta = y.y / s.y`` of the newest pair (Byrd, Nocedal & Schnabel 1994).
   Variables at a bound at ``x_c`` form the active set; the others are free.
2. **Subspace minimisation** over the free variables (the direct primal method): the
   Newton step of the model restricted to them, ``d = -(Z^T B Z)^{-1} r`` with ``r`` the
   reduced gradient at ``x_c``, by the Sherman-Morrison-Woodbury formula on the small
   ``2m x 2m`` matrix ``K`` (solved by two Cholesky factorisations). The step is
   projected onto the box; if the projected point is not a descent direction from
   ``x``, it is instead cut back to the largest feasible fraction of ``d``
   (Morales & Nocedal's change).
3. **Line search** along ``x_bar - x`` (Moré–Thuente, :class:`.line_search.MoreThuente`,
   limited to the largest feasible step; the first iteration at most a unit step), so
   every trial point and every iterate is in the box: the objective is never evaluated
   outside it.
4. **Stopping**, as scipy: when the projected gradient's largest component
   ``max_i |P(x - g)_i - x_i|`` is at most ``gradient_tolerance`` (scipy's ``pgtol`` /
   ``gtol``), or when ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol``; else at
   ``max_iterations`` / ``max_evaluations``.
5. The pair ``(s, y)`` joins the memory when ``s.y > eps * (-g_k.s)``; a failed
   factorisation or line search empties the memory and the iteration starts over from
   the steepest-descent model, as in the Fortran code.

A start outside the box is projected onto it first (scipy clips ``x0`` the same way).
Bounds that are all infinite give exactly the unbounded :func:`.lbfgs.lbfgs_minimize`
(the same iterates), with an all-zero :attr:`~.result.OptimizeResult.active_mask`.

The matrices are formed directly with numpy from the stored pairs (``O(n m^2)`` per
iteration) rather than updated incrementally as the Fortran code does; for the small
problems this library serves the difference is below the Python overhead.

Example:
    >>> import numpy as np
    >>> def rosenbrock(x):
    ...     a, b = x
    ...     f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    ...     g = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
    ...     return f, g
    >>> r = lbfgsb_minimize(rosenbrock, np.array([-1.2, 1.0]), (-2.0, [0.5, 2.0]))
    >>> r.success, np.round(r.x, 6).tolist(), r.active_mask.tolist()
    (True, [0.5, 0.25], [1, 0])
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalar_autograd.optim.equations import FloatArray
from scalar_autograd.optim.lbfgs import Callback, LBFGSConfig, lbfgs_minimize
from scalar_autograd.optim.line_search import FunAndGrad, MoreThuente
from scalar_autograd.optim.result import OptimizeResult, Status
from scalar_autograd.validation import check_real_array

_EPS = float(np.finfo(np.float64).eps)
_BIG_STEP = 1e10
"""The line search's step limit when no bound limits it (L-BFGS-B's ``stpmx``)."""
XTOL = 0.1
"""The relative width of the interval of uncertainty at which the line search stops
(L-BFGS-B's value)."""


# ---------------------------------------------------------------------------- the box
@dataclass(frozen=True, eq=False)
class Box:
    """Validated bounds ``lower <= x <= upper`` for ``n`` variables (±inf: no bound).

    Made by :func:`check_bounds`; ``lower`` and ``upper`` are read-only float64 arrays,
    ``has_lower``/``has_upper`` tell which are finite.
    """

    lower: FloatArray
    upper: FloatArray
    has_lower: np.ndarray = dataclasses.field(init=False, repr=False)
    has_upper: np.ndarray = dataclasses.field(init=False, repr=False)
    fixed: np.ndarray = dataclasses.field(init=False, repr=False)
    """Where ``lower == upper``: the variable cannot move."""
    unbounded: bool = dataclasses.field(init=False, repr=False)
    """True when every bound is infinite (the problem is unconstrained)."""
    boxed: bool = dataclasses.field(init=False, repr=False)
    """True when every variable has both bounds finite."""

    def __post_init__(self) -> None:
        has_lower, has_upper = np.isfinite(self.lower), np.isfinite(self.upper)
        object.__setattr__(self, "has_lower", has_lower)
        object.__setattr__(self, "has_upper", has_upper)
        object.__setattr__(self, "fixed", self.lower == self.upper)
        object.__setattr__(self, "unbounded", not (has_lower.any() or has_upper.any()))
        object.__setattr__(self, "boxed", bool(has_lower.all() and has_upper.all()))

    def project(self, x: FloatArray) -> FloatArray:
        """``x`` clipped into the box (a new array)."""
        return np.minimum(np.maximum(x, self.lower), self.upper)

    def projected_gradient(self, x: FloatArray, g: FloatArray) -> FloatArray:
        """``x - P(x - g)``: the gradient with the components that would leave the box
        cut at the bound (scipy's ``projgr``, before its infinity norm)."""
        return np.where(g < 0.0, np.maximum(x - self.upper, g), np.minimum(x - self.lower, g))

    def projected_gradient_norm(self, x: FloatArray, g: FloatArray) -> float:
        """``max_i |x_i - P(x - g)_i|``, the stopping test's norm (0 for no variables)."""
        return float(np.abs(self.projected_gradient(x, g)).max()) if x.size else 0.0

    def active_mask(self, x: FloatArray, g: FloatArray) -> np.ndarray:
        """-1 where ``x_i`` is at its lower bound and the gradient pushes it outward
        (``g_i > 0``), 1 at the upper bound with ``g_i < 0``, else 0 (an int8 array)."""
        mask = np.zeros(x.size, dtype=np.int8)
        mask[(x <= self.lower) & (g > 0.0)] = -1
        mask[(x >= self.upper) & (g < 0.0)] = 1
        return mask

    def steps_to_bounds(self, x: FloatArray, d: FloatArray) -> FloatArray:
        """For each ``i``, the step ``t >= 0`` at which ``x_i + t d_i`` reaches the bound
        it moves towards (``inf`` when ``d_i = 0`` or that bound is infinite)."""
        target = np.where(d < 0.0, self.lower, self.upper)
        return np.divide(target - x, d, out=np.full(x.size, np.inf), where=d != 0.0)

    def max_step(self, x: FloatArray, d: FloatArray) -> float:
        """The largest ``a <= 1e10`` with ``x + a d`` in the box (L-BFGS-B's ``stpmx``)."""
        limit = float(self.steps_to_bounds(x, d).min(initial=np.inf))
        return max(0.0, min(_BIG_STEP, limit))


def _side(value: Any, n: int, which: str, default: float) -> FloatArray:
    name = f"`bounds[{0 if which == 'lower' else 1}]` ({which})"
    if value is None:
        return np.full(n, default)
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number or an array of numbers; got a bool "
                        f"{value!r}")
    if isinstance(value, numbers.Real):
        return np.full(n, float(value))
    a = check_real_array(value, name)
    if a.ndim == 0:
        return np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"{name} must be a number or hold one bound per param ({n}); "
                         f"got shape {a.shape}")
    return a


def check_bounds(bounds: Any, n: int) -> Box | None:
    """Validate ``bounds`` for ``n`` variables: ``None``, ``(lower, upper)`` or a
    ``scipy.optimize.Bounds``.

    Each of ``lower`` and ``upper`` is a number (the same bound for every variable),
    an array of ``n`` numbers, or ``None`` (no bound on that side); ``-inf``/``inf``
    mean no bound. A variable with ``lower == upper`` is fixed. This is the
    ``(lb, ub)`` form of scipy's ``least_squares`` and ``Bounds``; the per-variable
    list of ``(min, max)`` pairs of ``scipy.optimize.minimize`` is not accepted (for
    two variables it reads the same as ``(lower, upper)``): convert it with
    ``lower, upper = zip(*pairs)``.

    Returns:
        A :class:`Box`, or ``None`` for ``bounds=None``.

    Raises:
        TypeError: ``bounds`` is not a pair, or a side holds something else than real
            numbers.
        ValueError: a side has the wrong length, holds nan, a lower bound of ``+inf``
            or an upper bound of ``-inf``, or a lower bound above its upper bound (the
            message names the first such variable).

    Example:
        >>> box = check_bounds((0.0, [1.0, np.inf]), 2)
        >>> box.lower.tolist(), box.upper.tolist()
        ([0.0, 0.0], [1.0, inf])
        >>> check_bounds(([0.0, 2.0], 1.0), 2)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `bounds`: lower[1] = 2.0 > upper[1] = 1.0; each lower bound must be <= ...
    """
    if bounds is None:
        return None
    if isinstance(bounds, Box) and bounds.lower.shape == (n,):
        return bounds
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):  # scipy.optimize.Bounds
        pair: Any = (bounds.lb, bounds.ub)
    else:
        pair = bounds
    if isinstance(pair, (str, bytes, np.ndarray)) or not isinstance(pair, (tuple, list)):
        raise TypeError(f"`bounds` must be a pair (lower, upper) of numbers or arrays, or "
                        f"scipy.optimize.Bounds; got {type(bounds).__name__} {bounds!r:.80}")
    if len(pair) != 2:
        raise ValueError(f"`bounds` must be a pair (lower, upper); got {len(pair)} items "
                         f"{bounds!r:.80}")
    lower = _side(pair[0], n, "lower", -math.inf)
    upper = _side(pair[1], n, "upper", math.inf)
    for name, side in (("lower", lower), ("upper", upper)):
        if np.isnan(side).any():
            i = int(np.flatnonzero(np.isnan(side))[0])
            raise ValueError(f"`bounds`: {name}[{i}] is nan; use -inf or inf for no bound")
    if (lower == math.inf).any():
        i = int(np.flatnonzero(lower == math.inf)[0])
        raise ValueError(f"`bounds`: lower[{i}] is inf, which no value satisfies; use -inf "
                         f"for no lower bound")
    if (upper == -math.inf).any():
        i = int(np.flatnonzero(upper == -math.inf)[0])
        raise ValueError(f"`bounds`: upper[{i}] is -inf, which no value satisfies; use inf "
                         f"for no upper bound")
    crossed = np.flatnonzero(lower > upper)
    if crossed.size:
        i = int(crossed[0])
        lo, hi = float(lower[i]), float(upper[i])
        raise ValueError(f"`bounds`: lower[{i}] = {lo!r} > upper[{i}] = {hi!r}; each lower "
                         f"bound must be <= its upper bound")
    lower.setflags(write=False)
    upper.setflags(write=False)
    return Box(lower, upper)


# ---------------------------------------------------------------------------- the memory
@functools.lru_cache(maxsize=8)
def _strictly_lower(m: int) -> np.ndarray:
    """1.0 below the diagonal of an ``m x m`` matrix, 0.0 elsewhere (read-only)."""
    mask = np.tril(np.ones((m, m)), -1)
    mask.setflags(write=False)
    return mask


class CompactMemory:
    """The last ``m`` pairs ``(s, y)`` and the compact form ``B = theta I - W M W^T``.

    ``S`` and ``Y`` hold the pairs as rows, oldest first (``col`` of them); ``SS`` and
    ``SY`` their inner products ``S S^T`` and ``S Y^T`` (``SY[i, j] = s_i.y_j``);
    ``Wt[:2 col]`` is ``W^T = [Y; theta S]``; ``N`` is ``M^{-1} = [[-D, L^T],
    [L, theta S^T S]]`` (``D`` the diagonal of ``SY``, ``L`` its strictly lower part)
    and ``M`` its inverse, both ``2 col x 2 col``.
    """

    def __init__(self, m: int, n: int) -> None:
        self.m = m
        self.S = np.empty((m, n))
        self.Y = np.empty((m, n))
        self.SS = np.empty((m, m))
        self.SY = np.empty((m, m))
        self.Wt = np.empty((2 * m, n))
        self._strictly_lower = _strictly_lower(m)
        self.col = 0
        self.theta = 1.0
        self.N: np.ndarray = np.empty((0, 0))
        self.M: np.ndarray = np.empty((0, 0))

    def reset(self) -> None:
        """Forget every pair: ``B = I`` (L-BFGS-B's memory refresh)."""
        self.col = 0
        self.theta = 1.0
        self.N = np.empty((0, 0))
        self.M = np.empty((0, 0))

    def push(self, s: FloatArray, y: FloatArray, sy: float) -> bool:
        """Add a pair (dropping the oldest when full) and form ``M``; when the middle
        matrix is singular the memory is reset and False returned."""
        m, col = self.m, self.col
        S, Y, SS, SY = self.S, self.Y, self.SS, self.SY
        if col == m:  # drop the oldest pair
            S[:-1] = S[1:]
            Y[:-1] = Y[1:]
            SS[:-1, :-1] = SS[1:, 1:]
            SY[:-1, :-1] = SY[1:, 1:]
            col -= 1
        S[col] = s
        Y[col] = y
        k = col + 1
        ss_new = S[:k] @ s
        SS[col, :k] = ss_new
        SS[:k, col] = ss_new
        SY[col, :k] = Y[:k] @ s       # s_new . y_j
        SY[:col, col] = S[:col] @ y   # s_i . y_new
        SY[col, col] = sy
        self.col = k
        theta = float(y @ y) / sy
        self.theta = theta
        self.Wt[:k] = Y[:k]
        np.multiply(S[:k], theta, out=self.Wt[k:2 * k])
        lower = SY[:k, :k] * self._strictly_lower[:k, :k]
        N = np.empty((2 * k, 2 * k))
        N[:k, :k] = 0.0
        N[:k, :k].flat[:: k + 1] = -SY[:k, :k].diagonal()
        N[:k, k:] = lower.T
        N[k:, :k] = lower
        N[k:, k:] = theta * SS[:k, :k]
        try:
            M = np.linalg.inv(N)
        except np.linalg.LinAlgError:
            M = np.full_like(N, np.nan)
        if not np.isfinite(M).all():
            self.reset()
            return False
        self.N = N
        self.M = M
        return True


# ---------------------------------------------------------------------------- Cauchy point
def cauchy_point(x: FloatArray, g: FloatArray, box: Box,
                 memory: CompactMemory) -> tuple[FloatArray, FloatArray, np.ndarray]:
    """The generalized Cauchy point: the first local minimiser of the quadratic model
    along the projected steepest-descent path ``P(x - t g)`` (L-BFGS-B's ``cauchy``).

    Returns ``(xc, c, free)``: the point, ``c = W^T (xc - x)`` and the mask of the
    variables not at a bound at ``xc`` (those the subspace step may move).
    """
    lower, upper = box.lower, box.upper
    theta, k = memory.theta, memory.col
    # held: fixed variables, and those at a bound that -g pushes against (or with g = 0)
    at_lower = x <= lower
    held = (at_lower & (g >= 0.0)) | (~at_lower & (x >= upper) & (g <= 0.0)) | box.fixed
    free = ~held
    d = np.where(held, 0.0, -g)          # the path's direction, zero where held
    t = box.steps_to_bounds(x, d)        # each variable's breakpoint
    xc = x.copy()
    moving = d != 0.0
    if not moving.any():
        return xc, np.zeros(2 * k), free
    # every moving variable reaches a bound: the path ends at the last breakpoint
    bounded = bool(np.isfinite(t[moving]).all())
    Wt = memory.Wt[: 2 * k]
    M = memory.M
    p = Wt @ d                           # W^T d
    c = np.zeros(2 * k)                  # W^T (xc - x), built up segment by segment
    f1 = -float(d @ d)                   # the model's slope at the segment's start
    f2 = -theta * f1                     # its curvature along the segment, d^T B d
    if k:
        f2 -= float(p @ (M @ p))
    f2_start = f2
    dt_min = -f1 / f2                    # the model's minimiser along the segment
    t_sum = 0.0
    t_prev = 0.0
    breaks = np.isfinite(t).nonzero()[0]
    order = breaks[np.argsort(t[breaks], kind="stable")].tolist()
    for j, i in enumerate(order):
        t_i = float(t[i])
        dt = t_i - t_prev
        if dt_min < dt:  # the minimiser lies within this segment
            break
        # on to the breakpoint: variable i reaches its bound and stops there
        t_sum += dt
        d_i = float(d[i])
        d[i] = 0.0
        bound = float(upper[i] if d_i > 0.0 else lower[i])
        z_i = bound - float(x[i])
        xc[i] = bound
        free[i] = False
        # the slope and curvature of the next segment
        f1 += dt * f2 + d_i * d_i - theta * d_i * z_i
        f2 -= theta * d_i * d_i
        if k:
            c += dt * p
            w_i = Wt[:, i]
            v = M @ w_i
            f1 += d_i * float(c @ v)
            f2 += 2.0 * d_i * float(p @ v) - d_i * d_i * float(w_i @ v)
            p -= d_i * w_i
        f2 = max(_EPS * f2_start, f2)
        t_prev = t_i
        if j + 1 == len(order) and bounded:  # every moving variable is at a bound
            dt_min = 0.0
            break
        dt_min = -f1 / f2
    dt_min = max(dt_min, 0.0)
    t_sum += dt_min
    xc += t_sum * d                      # the variables still moving
    if k:
        c += dt_min * p
    return xc, c, free


# ---------------------------------------------------------------------------- subspace step
def subspace_minimum(x: FloatArray, g: FloatArray, xc: FloatArray, c: FloatArray,
                     free: np.ndarray, box: Box, memory: CompactMemory) -> FloatArray | None:
    """The point of the direct primal method: from the Cauchy point ``xc``, the
    model's Newton step in the free variables, projected onto the box (or cut back to
    the box when the projection is not a descent direction from ``x``); L-BFGS-B 3.0's
    ``cmprlb`` + ``subsm``. ``None`` when the reduced system is singular.
    """
    F = free.nonzero()[0]
    k, theta = memory.col, memory.theta
    Wf = memory.Wt[: 2 * k, F]           # W^T restricted to the free variables
    # r = -Z^T (g + B (xc - x)), with B (xc - x) = theta (xc - x) - W M c
    r = -theta * (xc[F] - x[F]) - g[F] + Wf.T @ (memory.M @ c)
    # (Z^T B Z)^{-1} = I / theta + W_Z K^{-1} W_Z^T / theta^2 (Sherman-Morrison-Woodbury),
    # K = M^{-1} - W_Z^T W_Z / theta = [[-D - Y'ZZ'Y/theta, L_a' - R_z'], [L_a - R_z,
    # theta S'AA'S]] in the Fortran code's terms
    K = memory.N - (Wf @ Wf.T) / theta
    try:
        v = np.linalg.solve(K, Wf @ r)
    except np.linalg.LinAlgError:
        return None
    du = (r + (Wf.T @ v) / theta) / theta
    if not np.isfinite(du).all():
        return None
    lo, hi = box.lower[F], box.upper[F]
    start = xc[F]
    projected = np.minimum(np.maximum(start + du, lo), hi)
    z = xc.copy()
    z[F] = projected
    if not ((projected == lo) | (projected == hi)).any():
        return z
    if float((z - x) @ g) <= 0.0:
        return z  # the projected Newton point is a descent direction: take it
    # else back along du from xc to the box's boundary (the limiting variable exactly on it)
    step = np.zeros_like(xc)
    step[F] = du
    limits = np.maximum(box.steps_to_bounds(xc, step)[F], 0.0)
    j = int(np.argmin(limits))
    alpha = min(1.0, float(limits[j]))
    z[F] = start + alpha * du
    if alpha < 1.0:
        z[F[j]] = hi[j] if du[j] > 0.0 else lo[j]
    return z


# ---------------------------------------------------------------------------- the solver
def lbfgsb_minimize(
    fun_and_grad: FunAndGrad,
    x0: FloatArray,
    bounds: Any,
    config: LBFGSConfig | None = None,
    *,
    callback: Callback | None = None,
    history: bool = False,
) -> OptimizeResult:
    """Minimise a smooth function within bounds, given as a flat oracle, by L-BFGS-B.

    Args:
        fun_and_grad: ``x -> (f(x), grad f(x))`` on float64 vectors; called only at
            points inside the box.
        x0: the starting point (not modified); projected onto the box first.
        bounds: ``(lower, upper)``, ``scipy.optimize.Bounds`` or ``None`` (see
            :func:`check_bounds`); ``None`` or all-infinite bounds run the unbounded
            :func:`.lbfgs.lbfgs_minimize`.
        config: the options (:class:`.lbfgs.LBFGSConfig`): ``gradient_tolerance``
            bounds the projected gradient, ``c1``/``c2``/``max_line_search`` go to the
            Moré–Thuente line search.
        callback: ``callback(iteration, x, fun)`` after every iteration; ``True`` stops.
        history: record the objective at every iterate in ``result.history``.

    Returns:
        An :class:`~.result.OptimizeResult` whose ``grad_norm`` is the projected
        gradient's infinity norm and whose ``active_mask`` marks the variables held at
        a bound (``None`` only for ``bounds=None``).

    Raises:
        TypeError, ValueError: invalid ``x0`` or ``bounds`` (see :func:`check_bounds`).
    """
    cfg = config if config is not None else LBFGSConfig()
    x = check_real_array(x0, "x0").reshape(-1)
    n = x.size
    box = check_bounds(bounds, n)
    if box is None:
        return lbfgs_minimize(fun_and_grad, x, cfg, callback=callback, history=history)
    if box.unbounded:
        result = lbfgs_minimize(fun_and_grad, x, cfg, callback=callback, history=history)
        return dataclasses.replace(result, active_mask=np.zeros(n, dtype=np.int8))
    return _Solver(fun_and_grad, box, cfg, callback, history).run(box.project(x))


class _Solver:
    """One L-BFGS-B run: the state shared by its iterations."""

    def __init__(self, fun_and_grad: FunAndGrad, box: Box, config: LBFGSConfig,
                 callback: Callback | None, history: bool) -> None:
        self.fun_and_grad = fun_and_grad
        self.box = box
        self.config = config
        self.callback = callback
        self.trace: list[float] | None = [] if history else None

    def run(self, x: FloatArray) -> OptimizeResult:
        cfg, box = self.config, self.box
        n = x.size
        f_out, g_out = self.fun_and_grad(x)
        f = float(f_out)
        g = np.array(g_out, dtype=np.float64, copy=True)
        nfev = 1
        trace = self.trace
        if trace is not None:
            trace.append(f)

        def result(status: Status, iterations: int) -> OptimizeResult:
            return OptimizeResult(
                x=x, fun=f, grad_norm=box.projected_gradient_norm(x, g),
                iterations=iterations, nfev=nfev, status=status,
                history=tuple(trace) if trace is not None else None,
                active_mask=box.active_mask(x, g))

        if not (math.isfinite(f) and bool(np.isfinite(g).all())):
            return result(Status.NON_FINITE, 0)
        if box.projected_gradient_norm(x, g) <= cfg.gradient_tolerance:
            return result(Status.CONVERGED_GRADIENT, 0)
        memory = CompactMemory(cfg.history_size, n)
        search = MoreThuente(n, cfg.c1, cfg.c2, XTOL, cfg.max_line_search)
        iteration = 0
        while True:
            if iteration >= cfg.max_iterations:
                return result(Status.MAX_ITERATIONS, iteration)
            if nfev >= cfg.max_evaluations:
                return result(Status.MAX_EVALUATIONS, iteration)
            xc, c, free = cauchy_point(x, g, box, memory)
            z = xc
            if memory.col and free.any():
                subspace = subspace_minimum(x, g, xc, c, free, box, memory)
                if subspace is None:  # K is not factorable: start again from B = I
                    memory.reset()
                    continue
                z = subspace
            d = z - x
            if iteration == 0:
                max_step = 1.0
                step = 1.0 if box.boxed else min(1.0 / float(np.linalg.norm(d)), max_step)
            else:
                max_step = box.max_step(x, d)
                step = 1.0
            ls = search(self.fun_and_grad, x, f, g, d, step, max_step,
                        lower=box.lower, upper=box.upper, unit_point=z)
            nfev += ls.nfev
            if not ls.ok:
                if memory.col:  # retry from the steepest-descent model
                    memory.reset()
                    continue
                return result(Status.LINE_SEARCH_FAILED, iteration)
            s = ls.x - x
            y = ls.g - g
            sy = float(s @ y)
            descent = -float(g @ s)
            f_old = f
            np.copyto(x, ls.x)
            np.copyto(g, ls.g)
            f = ls.f
            iteration += 1
            if trace is not None:
                trace.append(f)
            if self.callback is not None and self.callback(iteration, x.copy(), f) is True:
                return result(Status.CALLBACK_STOP, iteration)
            if box.projected_gradient_norm(x, g) <= cfg.gradient_tolerance:
                return result(Status.CONVERGED_GRADIENT, iteration)
            if f_old - f <= cfg.ftol * max(abs(f_old), abs(f), 1.0):
                return result(Status.CONVERGED_FTOL, iteration)
            if sy > _EPS * descent:
                memory.push(s, y, sy)

