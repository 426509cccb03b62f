"""L-BFGS: limited-memory quasi-Newton minimisation on a flat oracle.

:func:`lbfgs_minimize` runs on ``fun_and_grad(x) -> (f, g)`` with float64 vectors
(Nocedal & Wright, Algorithm 7.5); the Value-level ``sa.lbfgs`` is in :mod:`.minimize`
and the bounded version, L-BFGS-B, in :mod:`.lbfgsb`:

* the search direction ``d = -H g`` comes from the two-loop recursion (Algorithm 7.4)
  over the last ``history_size`` curvature pairs ``s = x_{k+1} - x_k``,
  ``y = g_{k+1} - g_k``, with the initial matrix ``H0 = gamma I``,
  ``gamma = s.y / y.y`` of the newest pair (run natively by :class:`.native.TwoLoop`
  when llvmlite is available, else with numpy);
* a pair is stored only when ``s.y > eps * y.y`` (``eps`` the float64 machine epsilon),
  which keeps ``H`` positive definite;
* the step comes from a strong-Wolfe line search (:mod:`.line_search`), first trying
  ``1`` (and ``1 / ||g||_2``, a unit-length move, while the memory is empty, as
  L-BFGS-B); if it fails with a non-empty memory, the memory is dropped and the
  iteration retried along ``-g`` before giving up.

It stops when ``max |g_i| <= gradient_tolerance`` (the infinity norm, as scipy's
L-BFGS-B ``gtol``), or when the relative reduction
``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol`` (scipy's test), or at
``max_iterations`` / ``max_evaluations``. It never stops because ``f`` became small.

**On manifolds** (``manifold``, a :class:`~scalar_autograd.manifolds.TangentSpace`),
the same algorithm runs in tangent coordinates, as Ceres' line-search minimiser does
with manifolds: the gradient is the tangent gradient ``g = P(x)^T grad f(x)``
(``P`` the plus Jacobian at ``delta = 0``, Ceres' ``PlusJacobian``), the direction
``d = -H g`` is a tangent vector, the line search runs along the curve
``a -> plus(x, a d)`` (its Wolfe conditions on ``phi(a) = f(plus(x, a d))`` with the
exact slope ``phi'(a) = grad f . (d plus(x, a d)/d delta) d``, from the compiled
plus map's own derivative), and the curvature pairs are ``s = minus(x_{k+1}, x_k)``,
``y = g_{k+1} - g_k``. As in Ceres there is no vector transport: ``y`` subtracts
tangent gradients taken at two points. For the quaternion and rotation manifolds
(updates on the left, so every tangent space is identified with the same Lie algebra)
and for small steps this is the usual approximation. The gradient test is on the
tangent gradient.

Example:
    >>> import numpy as np
    >>> def rosenbrock(x):
    ...     a, b = x
    ...     f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    ...     g = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
    ...     return f, g
    >>> r = lbfgs_minimize(rosenbrock, np.array([-1.2, 1.0]))
    >>> r.success, np.allclose(r.x, [1.0, 1.0], atol=1e-5)
    (True, True)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalar_autograd.manifolds import TangentSpace
from scalar_autograd.optim.equations import FloatArray
from scalar_autograd.optim.line_search import FunAndGrad, StrongWolfe
from scalar_autograd.optim.native import TwoLoop, native_available
from scalar_autograd.optim.result import OptimizeResult, Status
from scalar_autograd.validation import (
    check_fields,
    check_nonnegative_float,
    check_open_unit_interval,
    check_positive_int,
    check_real_array,
)

Callback = Callable[[int, FloatArray, float], Any]
"""``callback(iteration, x, fun)``: called after every iteration with a copy of the
iterate and its objective; returning ``True`` stops the run (``Status.CALLBACK_STOP``)."""

_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class LBFGSConfig:
    """Validated L-BFGS (and L-BFGS-B) options; see ``sa.lbfgs`` for their meaning.

    The line-search constants serve both searches: the strong-Wolfe search of L-BFGS
    and the Moré–Thuente search of L-BFGS-B (where scipy's Fortran-derived code fixes
    ``c1 = 1e-3``, ``c2 = 0.9`` and 20 evaluations; pass those to reproduce it).
    """

    max_iterations: int = 100
    history_size: int = 10
    gradient_tolerance: float = 1e-6
    ftol: float = 2.220446049250313e-09
    """scipy's L-BFGS-B default ``ftol`` (``factr = 1e7`` times machine epsilon)."""
    max_evaluations: int = 15000
    c1: float = 1e-4
    c2: float = 0.9
    max_line_search: int = 25

    def __post_init__(self) -> None:
        check_fields(self, {
            "max_iterations": check_positive_int, "history_size": check_positive_int,
            "gradient_tolerance": check_nonnegative_float, "ftol": check_nonnegative_float,
            "max_evaluations": check_positive_int, "c1": check_open_unit_interval,
            "c2": check_open_unit_interval,
        })
        if not self.c1 < self.c2:
            raise ValueError(f"`c1` must be < `c2`; got c1={self.c1!r}, c2={self.c2!r}")
        check_fields(self, {"max_line_search": check_positive_int})


class _Memory:
    """The ring of the last ``m`` curvature pairs and the two-loop recursion into ``d``."""

    def __init__(self, m: int, g: FloatArray, d: FloatArray) -> None:
        n = g.size
        self.m = m
        self.s = np.empty((m, n))
        self.y = np.empty((m, n))
        self.rho = np.empty(m)
        self.alpha = np.empty(m)
        self.count = 0
        self.head = 0  # the slot the next pair goes to
        self._g = g
        self._d = d
        self._work = np.empty(n)
        self._native = (TwoLoop(self.s, self.y, self.rho, self.alpha, g, d)
                        if native_available() else None)
        self.native = self._native is not None

    def reset(self) -> None:
        self.count = 0
        self.head = 0

    def slot(self) -> tuple[FloatArray, FloatArray]:
        """The buffers of the next pair (written tentatively, kept by :meth:`push`)."""
        return self.s[self.head], self.y[self.head]

    def push(self, sy: float) -> None:
        self.rho[self.head] = 1.0 / sy
        self.head = (self.head + 1) % self.m
        self.count = min(self.count + 1, self.m)

    def direction(self) -> None:
        """``d = -H g`` by the two-loop recursion (N&W Algorithm 7.4)."""
        newest = (self.head - 1) % self.m
        if self._native is not None:
            self._native.direction(self.count, newest)
            return
        g, d = self._g, self._d
        np.negative(g, out=d)
        if self.count == 0:
            return
        m, s, y, rho, alpha, work = self.m, self.s, self.y, self.rho, self.alpha, self._work
        order = [(newest - j) % m for j in range(self.count)]
        for i in order:
            a = rho[i] * float(np.dot(s[i], d))
            alpha[i] = a
            np.multiply(y[i], a, out=work)
            d -= work
        y_new = y[newest]
        d *= float(np.dot(s[newest], y_new)) / float(np.dot(y_new, y_new))
        for i in reversed(order):
            b = rho[i] * float(np.dot(y[i], d))
            np.multiply(s[i], alpha[i] - b, out=work)
            d += work


def _inf_norm(g: FloatArray) -> float:
    return float(np.abs(g).max()) if g.size else 0.0


class _Workspace:
    """The buffers of one run (gradient, direction, memory bound to native code, line
    search), pooled per thread: a solve of the same size reuses them, which saves the
    allocation and the native binding (~15 µs, a tenth of a small warm-started solve)."""

    def __init__(self, m: int, n: int) -> None:
        self.g = np.empty(n)
        self.d = np.empty(n)
        self.memory = _Memory(m, self.g, self.d)
        self.search = StrongWolfe(n)
        self.key: tuple[int, int, bool] = (m, n, self.memory.native)


_WORKSPACES = threading.local()
_WORKSPACE_SIZES = 8
"""Sizes ``(history_size, n)`` pooled per thread (the pool is emptied beyond it)."""


def _workspace_key(m: int, n: int) -> tuple[int, int, bool]:
    return m, n, native_available()  # whether the memory binds the native two-loop


def _take_workspace(m: int, n: int, config: LBFGSConfig) -> _Workspace:
    pool: dict[tuple[int, int, bool], list[_Workspace]] | None = getattr(
        _WORKSPACES, "pool", None)
    if pool is None:
        pool = _WORKSPACES.pool = {}
    key = _workspace_key(m, n)
    free = pool.get(key)
    workspace = free.pop() if free else _Workspace(m, n)
    workspace.key = key
    workspace.memory.reset()
    search = workspace.search
    search.c1, search.c2, search.max_evaluations = config.c1, config.c2, config.max_line_search
    return workspace


def _give_back(workspace: _Workspace) -> None:
    pool: dict[tuple[int, int, bool], list[_Workspace]] = _WORKSPACES.pool
    key = workspace.key
    if key not in pool and len(pool) >= _WORKSPACE_SIZES:
        pool.clear()
    pool.setdefault(key, []).append(workspace)


def lbfgs_minimize(
    fun_and_grad: FunAndGrad,
    x0: FloatArray,
    config: LBFGSConfig | None = None,
    *,
    callback: Callback | None = None,
    history: bool = False,
    manifold: TangentSpace | None = None,
) -> OptimizeResult:
    """Minimise a smooth function given as a flat oracle, by L-BFGS.

    Args:
        fun_and_grad: ``x -> (f(x), grad f(x))`` on float64 vectors; the gradient may
            be a buffer the oracle reuses (it is copied).
        x0: the starting point (not modified).
        config: the options (defaults of :class:`LBFGSConfig` when omitted).
        callback: see :data:`Callback`.
        history: record the objective at every iterate in ``result.history``.
        manifold: parameter blocks on manifolds: run in their tangent space (see the
            module docstring); ``fun_and_grad`` still takes and differentiates ``x``
            itself, and ``x0``'s blocks must be points of their manifolds. The
            result's ``grad_norm`` is then the tangent gradient's.

    Returns:
        An :class:`OptimizeResult`; ``x`` is the last accepted iterate, which always has
        a finite objective unless the start point does not.

    Raises:
        TypeError: ``x0`` holds anything but real numbers (complex numbers, strings).
    """
    cfg = config if config is not None else LBFGSConfig()
    x = check_real_array(x0, "x0").reshape(-1)
    if manifold is not None:
        if manifold.n != x.size:
            raise ValueError(f"the manifolds are for {manifold.n} parameters; x0 has "
                             f"{x.size}")
        workspace = _take_workspace(cfg.history_size, manifold.tangent_size, cfg)
        try:
            return _run(fun_and_grad, x, cfg, workspace, callback, history,
                        _Chart(fun_and_grad, manifold))
        finally:
            _give_back(workspace)
    workspace = _take_workspace(cfg.history_size, x.size, cfg)
    try:
        return _run(fun_and_grad, x, cfg, workspace, callback, history, _Flat(fun_and_grad))
    finally:
        _give_back(workspace)


class _Flat:
    """Steps in R^n: the line search moves ``x`` itself, ``s = x_new - x``."""

    def __init__(self, fun_and_grad: FunAndGrad) -> None:
        self.fun_and_grad = fun_and_grad

    def gradient(self, x: FloatArray, g: Any) -> Any:
        """The gradient the iteration works with (here: as given)."""
        return g

    def search(self, search: StrongWolfe, x: FloatArray, f: float, g: FloatArray,
               d: FloatArray, step: float) -> Any:
        return search(self.fun_and_grad, x, f, g, d, step)

    def accept(self, ls: Any, x: FloatArray, s: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The new point and gradient of the search's result; ``s`` gets the step."""
        np.subtract(ls.x, x, out=s)
        return ls.x, ls.g


def _run(fun_and_grad: FunAndGrad, x: FloatArray, cfg: LBFGSConfig, workspace: _Workspace,
         callback: Callback | None, history: bool, geometry: _Flat | _Chart
         ) -> OptimizeResult:
    """The iterations of :func:`lbfgs_minimize` on a workspace's buffers; ``geometry``
    says how a step moves ``x`` (:class:`_Flat`, or through a manifold :class:`_Chart`,
    where ``g``, ``d`` and the curvature pairs live in the tangent space)."""
    f, g_out = fun_and_grad(x)
    f = float(f)
    if np.shape(g_out) != x.shape:
        raise ValueError(f"`fun_and_grad` must return a gradient of shape {x.shape}; got "
                         f"shape {np.shape(g_out)}")
    g = workspace.g
    np.copyto(g, geometry.gradient(x, g_out))
    nfev = 1
    trace: list[float] | None = [f] if history else None

    def result(status: Status, iterations: int) -> OptimizeResult:
        return OptimizeResult(x=x, fun=f, grad_norm=_inf_norm(g), iterations=iterations,
                              nfev=nfev, status=status,
                              history=tuple(trace) if trace is not None else None)

    if not (math.isfinite(f) and bool(np.isfinite(g).all())):
        return result(Status.NON_FINITE, 0)
    if _inf_norm(g) <= cfg.gradient_tolerance:
        return result(Status.CONVERGED_GRADIENT, 0)

    d = workspace.d
    memory = workspace.memory
    search = workspace.search
    iteration = 0
    while True:
        if iteration >= cfg.max_iterations:
            return result(Status.MAX_ITERATIONS, iteration)
        if nfev >= cfg.max_evaluations:
            return result(Status.MAX_EVALUATIONS, iteration)
        memory.direction()
        slope = float(np.dot(g, d))
        if not slope < 0.0:  # H lost positive definiteness numerically: restart
            memory.reset()
            np.negative(g, out=d)
            slope = float(np.dot(g, d))
        step = 1.0 if memory.count else 1.0 / math.sqrt(-slope)
        ls = geometry.search(search, x, f, g, d, step)
        nfev += ls.nfev
        if not ls.ok:
            if memory.count:
                memory.reset()  # retry along the steepest-descent direction
                continue
            return result(Status.LINE_SEARCH_FAILED, iteration)
        s_new, y_new = memory.slot()
        x_new, g_new = geometry.accept(ls, x, s_new)
        np.subtract(g_new, g, out=y_new)
        sy = float(np.dot(s_new, y_new))
        if sy > _EPS * float(np.dot(y_new, y_new)):
            memory.push(sy)
        f_old = f
        np.copyto(x, x_new)
        np.copyto(g, g_new)
        f = ls.f
        iteration += 1
        if trace is not None:
            trace.append(f)
        if callback is not None and callback(iteration, x.copy(), f) is True:
            return result(Status.CALLBACK_STOP, iteration)
        if _inf_norm(g) <= cfg.gradient_tolerance:
            return result(Status.CONVERGED_GRADIENT, iteration)
        if f_old - f <= cfg.ftol * max(abs(f_old), abs(f), 1.0):
            return result(Status.CONVERGED_FTOL, iteration)


class _Chart:
    """The objective seen from a base point ``x`` through ``delta -> plus(x, delta)``:
    ``phi(delta) = f(plus(x, delta))`` and its gradient
    ``(d plus(x, delta) / d delta)^T grad f``, for the line search. Remembers the
    ambient point and gradient of each evaluation of the current search."""

    def __init__(self, fun_and_grad: FunAndGrad, space: TangentSpace) -> None:
        self.fun_and_grad = fun_and_grad
        self.space = space
        self.base = np.empty(space.n)
        self.origin = np.zeros(space.tangent_size)
        self.seen: list[tuple[FloatArray, FloatArray, FloatArray]] = []

    def start(self, x: FloatArray) -> None:
        np.copyto(self.base, x)
        self.seen.clear()

    def __call__(self, delta: FloatArray) -> tuple[float, FloatArray]:
        point, jacobians = self.space.plus_jacobians(self.base, delta)
        f, g = self.fun_and_grad(point)
        g = np.array(g, dtype=float)
        self.seen.append((delta.copy(), point, g))
        return f, self.space.pull_gradient(g, jacobians)

    def point(self, delta: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The ambient point and gradient of the evaluation at ``delta``."""
        for d, point, g in reversed(self.seen):
            if np.array_equal(d, delta):
                return point, g
        point = self.space.plus(self.base, delta)     # (the search returns a trial)
        return point, np.array(self.fun_and_grad(point)[1], dtype=float)

    def gradient(self, x: FloatArray, g: Any) -> FloatArray:
        """The tangent gradient at ``x`` of the ambient gradient ``g``."""
        return self.space.tangent_gradient(x, np.asarray(g, dtype=float))

    def search(self, search: StrongWolfe, x: FloatArray, f: float, g: FloatArray,
               d: FloatArray, step: float) -> Any:
        """The line search along ``plus(x, alpha d)``: in the chart at ``x``, from 0."""
        self.start(x)
        return search(self, self.origin, f, g, d, step)

    def accept(self, ls: Any, x: FloatArray, s: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The new point and tangent gradient; ``s = minus(x_new, x)``."""
        x_new, g_ambient = self.point(ls.x)
        np.copyto(s, self.space.minus(x_new, x))
        return x_new, self.space.tangent_gradient(x_new, g_ambient)


