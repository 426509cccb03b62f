"""Line searches for the quasi-Newton methods: strong Wolfe (N&W 3.5, 3.6) and Moré–Thuente.

:class:`StrongWolfe` serves the unbounded L-BFGS; :class:`MoreThuente` (MINPACK-2's
``dcsrch``/``dcstep``, the search inside L-BFGS-B) serves the bounded one, where every
trial point must stay in the box: it never tries a step beyond ``max_step``. Both look
along a descent direction ``d`` from ``x`` for a step ``a`` with

* sufficient decrease: ``f(x + a d) <= f(x) + c1 * a * g(x).d``, and
* the strong curvature condition: ``|g(x + a d).d| <= c2 * |g(x).d|``.

**Strong Wolfe.** A first phase grows the step (cubic extrapolation, at most 10x per
trial) until it brackets such a point; a second phase (``zoom``) shrinks the bracket
with the cubic interpolating both end values and slopes (falling back to the quadratic
through ``f_lo``, ``f_lo'`` and ``f_hi``, then to bisection), each trial kept at least
10% of the bracket away from its ends. A trial whose objective or gradient is not
finite counts as "too far": the step is shrunk and the state of the search is left
untouched.

**Moré–Thuente** (Moré & Thuente 1994, MINPACK-2's ``dcsrch`` as scipy's L-BFGS-B runs
it): an interval of uncertainty with ends ``stx`` (the best step so far) and ``sty`` is
updated by ``dcstep``'s four cases (cubic, quadratic and secant steps, safeguarded), on
the modified function ``psi(a) = f(a) - f(0) - c1 a f'(0)`` until a step with
``psi <= 0`` and ``f' >= 0`` appears, then on ``f`` itself; before the minimiser is
bracketed a trial extrapolates to ``[1.1, 4]`` times the last step, never beyond
``max_step``. Where it departs from ``dcsrch``, each time to save an evaluation or
avoid a wrong point: a non-finite trial shrinks the step halfway back to the best step
and caps later trials below it; when the search cannot progress (the interval is
below ``xtol`` of its size, or rounding) it returns the best point it holds instead of
evaluating it again; it never returns a point without sufficient decrease.

Example:
    >>> import numpy as np
    >>> def fg(x):
    ...     return float(x @ x), 2.0 * x
    >>> x = np.array([3.0, -4.0]); f, g = fg(x)
    >>> search = StrongWolfe(2)
    >>> r = search(fg, x, f, g, -g, 1.0)
    >>> r.ok, bool(r.f < f)
    (True, True)
    >>> r = MoreThuente(2)(fg, x, f, g, -g, 1.0, max_step=1.0)
    >>> r.ok, r.wolfe, round(r.step, 4), r.nfev   # the minimiser is at 0.5
    (True, True, 0.4995, 2)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scalar_autograd.numerics import div, sqrt
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


# ---------------------------------------------------------------------------- Moré–Thuente
def dcstep(
    stx: float, fx: float, dx: float, sty: float, fy: float, dy: float,
    stp: float, fp: float, dp: float, brackt: bool, stpmin: float, stpmax: float,
) -> tuple[float, float, float, float, float, float, float, bool]:
    """One safeguarded step of Moré–Thuente (MINPACK-2's ``dcstep``).

    ``stx`` is the best step so far (``fx``, derivative ``dx``), ``sty`` the other end
    of the interval of uncertainty, ``stp`` the step just evaluated. Returns the updated
    ``(stx, fx, dx, sty, fy, dy)``, the next trial step and whether the minimiser is now
    bracketed. Division and square roots follow IEEE (no exception on a zero divisor).
    """
    sgnd = dp * div(dx, abs(dx))
    if fp > fx:
        # 1. a higher value: the minimum is bracketed; the cubic step if it is closer to
        #    stx than the quadratic one, else their average
        theta = 3.0 * div(fx - fp, stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * sqrt(max(0.0, div(theta, s) ** 2 - div(dx, s) * div(dp, s)))
        if stp < stx:
            gamma = -gamma
        p = (gamma - dx) + theta
        q = ((gamma - dx) + gamma) + dp
        stpc = stx + div(p, q) * (stp - stx)
        stpq = stx + (div(dx, div(fx - fp, stp - stx) + dx) / 2.0) * (stp - stx)
        stpf = stpc if abs(stpc - stx) < abs(stpq - stx) else stpc + (stpq - stpc) / 2.0
        brackt = True
    elif sgnd < 0.0:
        # 2. a lower value, derivatives of opposite sign: bracketed; the cubic step if it
        #    is farther from stp than the secant step, else the secant step
        theta = 3.0 * div(fx - fp, stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * sqrt(max(0.0, div(theta, s) ** 2 - div(dx, s) * div(dp, s)))
        if stp > stx:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = ((gamma - dp) + gamma) + dx
        stpc = stp + div(p, q) * (stx - stp)
        stpq = stp + div(dp, dp - dx) * (stx - stp)
        stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
        brackt = True
    elif abs(dp) < abs(dx):
        # 3. a lower value, same sign, the derivative's magnitude decreases: the cubic
        #    step only if the cubic tends to infinity in the step's direction or its
        #    minimum lies beyond stp, else the secant step
        theta = 3.0 * div(fx - fp, stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * sqrt(max(0.0, div(theta, s) ** 2 - div(dx, s) * div(dp, s)))
        if stp > stx:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = (gamma + (dx - dp)) + gamma
        r = div(p, q)
        if r < 0.0 and gamma != 0.0:
            stpc = stp + r * (stx - stp)
        elif stp > stx:
            stpc = stpmax
        else:
            stpc = stpmin
        stpq = stp + div(dp, dp - dx) * (stx - stp)
        if brackt:
            stpf = stpc if abs(stpc - stp) < abs(stpq - stp) else stpq
            if stp > stx:
                stpf = min(stp + 0.66 * (sty - stp), stpf)
            else:
                stpf = max(stp + 0.66 * (sty - stp), stpf)
        else:
            stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
            stpf = max(stpmin, min(stpmax, stpf))
    else:
        # 4. a lower value, same sign, the derivative does not decrease: the cubic step
        #    through (sty, stp) when bracketed, else stpmin or stpmax
        if brackt:
            theta = 3.0 * div(fp - fy, sty - stp) + dy + dp
            s = max(abs(theta), abs(dy), abs(dp))
            gamma = s * sqrt(max(0.0, div(theta, s) ** 2 - div(dy, s) * div(dp, s)))
            if stp > sty:
                gamma = -gamma
            p = (gamma - dp) + theta
            q = ((gamma - dp) + gamma) + dy
            stpf = stp + div(p, q) * (sty - stp)
        elif stp > stx:
            stpf = stpmax
        else:
            stpf = stpmin
    # the interval that contains a minimiser
    if fp > fx:
        sty, fy, dy = stp, fp, dp
    else:
        if sgnd < 0.0:
            sty, fy, dy = stx, fx, dx
        stx, fx, dx = stp, fp, dp
    return stx, fx, dx, sty, fy, dy, stpf, brackt


class MoreThuente:
    """Moré–Thuente's line search (``dcsrch``) with preallocated buffers for ``n`` variables.

    Args:
        n: the number of variables.
        c1: sufficient-decrease constant, in (0, 1) (``dcsrch``'s ``ftol``).
        c2: curvature constant, in (c1, 1) (``gtol``).
        xtol: the search stops when the interval of uncertainty is below ``xtol`` times
            its larger end (it then returns its best point).
        max_evaluations: the most objective evaluations one search may use.
    """

    XTRAPL = 1.1
    XTRAPU = 4.0

    def __init__(self, n: int, c1: float = 1e-3, c2: float = 0.9, xtol: float = 0.1,
                 max_evaluations: int = 20) -> None:
        self.c1 = c1
        self.c2 = c2
        self.xtol = xtol
        self.max_evaluations = max_evaluations
        self._trial = np.empty(n)
        self._g_new = np.empty(n)
        self._x_best = np.empty(n)
        self._g_best = np.empty(n)

    def _point(self, x: FloatArray, d: FloatArray, a: float, lower: FloatArray | None,
               upper: FloatArray | None, unit_point: FloatArray | None) -> FloatArray:
        trial = self._trial
        if a == 1.0 and unit_point is not None:
            np.copyto(trial, unit_point)
            return trial
        np.multiply(d, a, out=trial)
        trial += x
        if lower is not None:
            np.maximum(trial, lower, out=trial)
        if upper is not None:
            np.minimum(trial, upper, out=trial)
        return trial

    def __call__(
        self,
        fun_and_grad: FunAndGrad,
        x: FloatArray,
        f0: float,
        g0: FloatArray,
        d: FloatArray,
        step: float,
        max_step: float = math.inf,
        *,
        lower: FloatArray | None = None,
        upper: FloatArray | None = None,
        unit_point: FloatArray | None = None,
    ) -> LineSearchResult:
        """Search along ``d`` from ``x`` (``f0 = f(x)``, ``g0 = g(x)``, ``g0.d < 0``)
        for a step in ``(0, max_step]``, first trying ``min(step, max_step)``.

        The point at step ``a`` is ``x + a d`` clipped to ``[lower, upper]`` (each
        optional), or ``unit_point`` itself for ``a = 1`` when given (L-BFGS-B passes
        the exact subspace minimiser there, so bound variables sit exactly on their
        bounds). The slope at a trial is ``g.d``.
        """
        c1, c2, xtol = self.c1, self.c2, self.xtol
        ginit = float(np.dot(g0, d))
        np.copyto(self._x_best, x)
        np.copyto(self._g_best, g0)
        if not ginit < 0.0 or not max_step > 0.0:
            return LineSearchResult(False, False, 0.0, f0, self._x_best, self._g_best, 0)
        stpmin, stpmax = 0.0, float(max_step)
        stp = min(float(step), stpmax)
        brackt = False
        stage = 1
        gtest = c1 * ginit
        width = stpmax - stpmin
        width1 = width / 0.5
        stx, fx, gx = 0.0, f0, ginit
        sty, fy, gy = 0.0, f0, ginit
        stmin, stmax = 0.0, stp + self.XTRAPU * stp
        nfev = 0
        while nfev < self.max_evaluations:
            trial = self._point(x, d, stp, lower, upper, unit_point)
            f_out, g = fun_and_grad(trial)
            f = float(f_out)
            slope = float(np.dot(g, d))
            nfev += 1
            if not (math.isfinite(f) and math.isfinite(slope)):
                # too far: halfway back to the best step, and never this far again
                stp = stx + 0.5 * (stp - stx)
                stpmax = stp
                if stp <= stx * (1.0 + _EPS) or stp <= 0.0:
                    break
                continue
            ftest = f0 + stp * gtest
            if stage == 1 and f <= ftest and slope >= 0.0:
                stage = 2
            if f <= ftest and abs(slope) <= -c2 * ginit:
                return LineSearchResult(True, True, stp, f, trial, self._copy_g(g), nfev)
            stuck = (brackt and (stp <= stmin or stp >= stmax)) \
                or (brackt and stmax - stmin <= xtol * stmax) \
                or (stp == stpmax and f <= ftest and slope <= gtest) \
                or (stp == stpmin and (f > ftest or slope >= gtest))
            if stuck:  # dcsrch's warnings: no better step to be had
                if f <= ftest and stp > 0.0:
                    return LineSearchResult(True, False, stp, f, trial, self._copy_g(g), nfev)
                break
            if stage == 1 and fx >= f > ftest:
                # psi(a) = f(a) - a * gtest on the first stage, while f decreased but not
                # sufficiently: the step comes from the modified function
                improves = not f - stp * gtest > fx - stx * gtest
                stx, fxm, gxm, sty, fym, gym, stp_next, brackt = dcstep(
                    stx, fx - stx * gtest, gx - gtest, sty, fy - sty * gtest, gy - gtest,
                    stp, f - stp * gtest, slope - gtest, brackt, stmin, stmax)
                fx, fy = fxm + stx * gtest, fym + sty * gtest
                gx, gy = gxm + gtest, gym + gtest
            else:
                improves = not f > fx
                stx, fx, gx, sty, fy, gy, stp_next, brackt = dcstep(
                    stx, fx, gx, sty, fy, gy, stp, f, slope, brackt, stmin, stmax)
            if improves:  # the trial is the new best step
                np.copyto(self._x_best, trial)
                np.copyto(self._g_best, g)
            stp = stp_next
            if brackt:  # bisect when the interval did not shrink enough
                if abs(sty - stx) >= 0.66 * width1:
                    stp = stx + 0.5 * (sty - stx)
                width1 = width
                width = abs(sty - stx)
                stmin, stmax = min(stx, sty), max(stx, sty)
            else:
                stmin = stp + self.XTRAPL * (stp - stx)
                stmax = stp + self.XTRAPU * (stp - stx)
            stp = min(max(stp, stpmin), stpmax)
            if brackt and (stp <= stmin or stp >= stmax or stmax - stmin <= xtol * stmax):
                break  # no further progress: dcsrch would evaluate stx again
        return self._best(stx, fx, f0, gtest, nfev)

    def _copy_g(self, g: FloatArray) -> FloatArray:
        np.copyto(self._g_new, g)
        return self._g_new

    def _best(self, stx: float, fx: float, f0: float, gtest: float,
              nfev: int) -> LineSearchResult:
        """The best step held, if it is a step with sufficient decrease."""
        ok = stx > 0.0 and fx <= f0 + stx * gtest
        return LineSearchResult(ok, False, stx, fx, self._x_best, self._g_best, nfev)
