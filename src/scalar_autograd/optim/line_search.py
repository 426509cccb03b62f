"""Strong-Wolfe line search with cubic/quadratic interpolation (Nocedal & Wright 3.5, 3.6).

Along a descent direction ``d`` from ``x`` the search looks for a step ``a`` with

* sufficient decrease: ``f(x + a d) <= f(x) + c1 * a * g(x).d``, and
* the strong curvature condition: ``|g(x + a d).d| <= c2 * |g(x).d|``.

A first phase grows the step (cubic extrapolation, at most 10x per trial) until it
brackets such a point; a second phase (``zoom``) shrinks the bracket with the cubic
interpolating both end values and slopes (falling back to the quadratic through
``f_lo``, ``f_lo'`` and ``f_hi``, then to bisection), each trial kept at least 10% of the
bracket away from its ends. A trial whose objective or gradient is not finite
counts as "too far": the step is shrunk and the state of the search is left untouched.

Example:
    >>> import numpy as np
    >>> def fg(x):
    ...     return float(x @ x), 2.0 * x
    >>> x = np.array([3.0, -4.0]); f, g = fg(x)
    >>> search = StrongWolfe(2)
    >>> r = search(fg, x, f, g, -g, 1.0)
    >>> r.ok, bool(r.f < f)
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scalar_autograd.optim.equations import FloatArray

FunAndGrad = Callable[[FloatArray], tuple[float, FloatArray]]
"""A flat oracle: ``x -> (f(x), grad f(x))``. The returned gradient may be a buffer the
oracle reuses on its next call; callers copy what they keep."""

_EPS = float(np.finfo(np.float64).eps)


@dataclass
class LineSearchResult:
    """The outcome of one line search.

    ``x``, ``g`` are buffers of the :class:`StrongWolfe` object (valid until its next
    call). ``ok`` is false when no step decreased the objective; ``wolfe`` tells whether
    the accepted step also satisfies the strong curvature condition.
    """

    ok: bool
    wolfe: bool
    step: float
    f: float
    x: FloatArray
    g: FloatArray
    nfev: int


def cubic_minimizer(
    a1: float, f1: float, d1: float, a2: float, f2: float, d2: float, lo: float, hi: float
) -> float:
    """Minimiser of the cubic through ``(a1, f1, f1')`` and ``(a2, f2, f2')``, clipped to
    ``[lo, hi]`` (N&W eq. 3.59); ``nan`` when the cubic has no minimiser."""
    t1 = d1 + d2 - 3.0 * (f1 - f2) / (a1 - a2)
    disc = t1 * t1 - d1 * d2
    if not disc >= 0.0:
        return math.nan
    t2 = math.copysign(math.sqrt(disc), a2 - a1)
    denominator = d2 - d1 + 2.0 * t2
    if denominator == 0.0:
        return math.nan
    a = a2 - (a2 - a1) * (d2 + t2 - t1) / denominator
    if not math.isfinite(a):
        return math.nan
    return min(max(a, lo), hi)


def quadratic_minimizer(a1: float, f1: float, d1: float, a2: float, f2: float) -> float:
    """Minimiser of the quadratic through ``(a1, f1, f1')`` and ``(a2, f2)`` (N&W 3.57);
    ``nan`` when it opens downward."""
    h = a2 - a1
    curvature = f2 - f1 - d1 * h
    if not curvature > 0.0:
        return math.nan
    a = a1 - d1 * h * h / (2.0 * curvature)
    return a if math.isfinite(a) else math.nan


class StrongWolfe:
    """A reusable strong-Wolfe line search with preallocated buffers for ``n`` variables.

    Args:
        n: the number of variables.
        c1: sufficient-decrease constant, in (0, 1).
        c2: curvature constant, in (c1, 1).
        max_evaluations: the most objective evaluations one search may use.
    """

    def __init__(
        self, n: int, c1: float = 1e-4, c2: float = 0.9, max_evaluations: int = 25
    ) -> None:
        self.c1 = c1
        self.c2 = c2
        self.max_evaluations = max_evaluations
        self._trial = np.empty(n)
        self._x_lo = np.empty(n)
        self._g_lo = np.empty(n)
        self._g_new = np.empty(n)

    def _evaluate(
        self, fun_and_grad: FunAndGrad, x: FloatArray, d: FloatArray, a: float
    ) -> tuple[float, FloatArray, float, bool]:
        trial = self._trial
        np.multiply(d, a, out=trial)
        trial += x
        f, g = fun_and_grad(trial)
        f = float(f)
        slope = float(np.dot(g, d))
        finite = math.isfinite(f) and math.isfinite(slope)
        return f, g, slope, finite

    def _keep_lo(self, g: FloatArray) -> None:
        np.copyto(self._x_lo, self._trial)
        np.copyto(self._g_lo, g)

    def __call__(
        self,
        fun_and_grad: FunAndGrad,
        x: FloatArray,
        f0: float,
        g0: FloatArray,
        d: FloatArray,
        step: float,
    ) -> LineSearchResult:
        """Search along ``d`` from ``x`` (with ``f0 = f(x)``, ``g0 = g(x)``), first trying
        ``step``. ``d`` must be a descent direction (``g0.d < 0``)."""
        c1, c2 = self.c1, self.c2
        slope0 = float(np.dot(g0, d))
        nfev = 0
        # the last finite trial (the start point at first)
        a_prev, f_prev, s_prev = 0.0, f0, slope0
        np.copyto(self._x_lo, x)
        np.copyto(self._g_lo, g0)
        a_bad = math.inf  # the smallest step known to give a non-finite value
        a = step
        bracket: tuple[float, float, float, float, float, float] | None = None
        while nfev < self.max_evaluations:
            f, g, s, finite = self._evaluate(fun_and_grad, x, d, a)
            nfev += 1
            if not finite:
                a_bad = a
                a = a_prev + 0.5 * (a - a_prev)
                if a <= a_prev * (1.0 + _EPS) or a <= 0.0:
                    break
                continue
            if f > f0 + c1 * a * slope0 or (a_prev > 0.0 and f >= f_prev):
                bracket = (a_prev, f_prev, s_prev, a, f, s)
                break
            if abs(s) <= -c2 * slope0:
                return LineSearchResult(True, True, a, f, self._trial, self._copy_g(g), nfev)
            if s >= 0.0:
                self._keep_lo(g)
                bracket = (a, f, s, a_prev, f_prev, s_prev)
                break
            # extrapolate: a larger step, by cubic interpolation within [1.01 a, 10 a]
            lo = a + 0.01 * (a - a_prev)
            hi = 10.0 * a
            if a_bad < math.inf:
                hi = min(hi, a + 0.5 * (a_bad - a))
                lo = min(lo, hi)
            a_next = cubic_minimizer(a_prev, f_prev, s_prev, a, f, s, lo, hi)
            if math.isnan(a_next):
                a_next = hi
            self._keep_lo(g)
            a_prev, f_prev, s_prev = a, f, s
            a = a_next
        if bracket is not None:
            return self._zoom(fun_and_grad, x, d, f0, slope0, bracket, nfev)
        return self._give_up(a_prev, f_prev, f0, nfev)

    def _copy_g(self, g: FloatArray) -> FloatArray:
        np.copyto(self._g_new, g)
        return self._g_new

    def _give_up(self, a_lo: float, f_lo: float, f0: float, nfev: int) -> LineSearchResult:
        # The best point found, if it decreased f (it satisfies sufficient decrease).
        ok = a_lo > 0.0 and f_lo < f0
        return LineSearchResult(ok, False, a_lo, f_lo, self._x_lo, self._g_lo, nfev)

    def _zoom(
        self,
        fun_and_grad: FunAndGrad,
        x: FloatArray,
        d: FloatArray,
        f0: float,
        slope0: float,
        bracket: tuple[float, float, float, float, float, float],
        nfev: int,
    ) -> LineSearchResult:
        """N&W Algorithm 3.6. ``lo`` satisfies sufficient decrease and has the lowest f
        so far; the minimiser sought lies between ``lo`` and ``hi``."""
        c1, c2 = self.c1, self.c2
        a_lo, f_lo, s_lo, a_hi, f_hi, s_hi = bracket
        while nfev < self.max_evaluations:
            left, right = min(a_lo, a_hi), max(a_lo, a_hi)
            width = right - left
            if width <= _EPS * right:
                break
            margin = 0.1 * width
            a = math.nan
            if math.isfinite(f_hi) and math.isfinite(s_hi):
                a = cubic_minimizer(a_lo, f_lo, s_lo, a_hi, f_hi, s_hi,
                                    left + margin, right - margin)
            if math.isnan(a) and math.isfinite(f_hi):
                a = quadratic_minimizer(a_lo, f_lo, s_lo, a_hi, f_hi)
                if not left + margin <= a <= right - margin:
                    a = math.nan
            if math.isnan(a):
                a = 0.5 * (a_lo + a_hi)
            f, g, s, finite = self._evaluate(fun_and_grad, x, d, a)
            nfev += 1
            if not finite:
                a_hi, f_hi, s_hi = a, math.nan, math.nan
                continue
            if f > f0 + c1 * a * slope0 or f >= f_lo:
                a_hi, f_hi, s_hi = a, f, s
                continue
            if abs(s) <= -c2 * slope0:
                return LineSearchResult(True, True, a, f, self._trial, self._copy_g(g), nfev)
            if s * (a_hi - a_lo) >= 0.0:
                a_hi, f_hi, s_hi = a_lo, f_lo, s_lo
            self._keep_lo(g)
            a_lo, f_lo, s_lo = a, f, s
        return self._give_up(a_lo, f_lo, f0, nfev)
