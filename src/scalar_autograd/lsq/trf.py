"""Bounded least squares: scipy's Trust Region Reflective method (``trf``), on flat oracles.

This is the algorithm of ``scipy.optimize.least_squares(method="trf")`` for problems
with bounds ``lower <= x <= upper`` (scipy's ``trf_bounds``, read from
``scipy/optimize/_lsq/trf.py`` and ``common.py``), ported step for step so that its
iterates, its ``nfev`` and its ``active_mask`` are scipy's (to rounding), with the
defaults scipy's ``trf`` uses (``x_scale=1``, ``tr_options={}``). It is the method of
Branch, Coleman & Li (1999, "STIR"), which scipy implements as follows:

* **Coleman-Li scaling.** With ``g = J^T f`` the gradient of the cost,
  ``v_i = upper_i - x_i`` where ``g_i < 0`` and the upper bound is finite,
  ``v_i = x_i - lower_i`` where ``g_i > 0`` and the lower bound is finite, and
  ``v_i = 1`` otherwise; ``dv_i`` is the derivative of ``v_i`` (-1, 1 or 0). The
  first-order conditions are ``v * g = 0``; the optimality measure (``grad_norm``) is
  ``|v * g|_inf``.
* **The step** solves the trust-region problem in the "hat" variables ``x = d * x_h``
  with ``d = sqrt(v)``: minimise ``0.5 |J_h p_h + f|^2 + 0.5 p_h^T C p_h`` subject to
  ``|p_h| <= Delta``, with ``J_h = J diag(d)`` and ``C = diag(g * dv)``. Dense
  Jacobians (``tr_solver="exact"``): one SVD of the augmented ``[J_h; sqrt(C)]`` per
  iteration and Moré's iteration on the Levenberg-Marquardt parameter ``alpha``
  (MINPACK's ``lmpar`` on singular values, scipy's ``solve_lsq_trust_region``).
  Sparse (CSR) Jacobians (``tr_solver="lsmr"``): a regularised Gauss-Newton direction
  by LSMR on ``[J_h; sqrt(C + reg I)]``, then the exact trust-region solution in the
  2-D subspace spanned by it and the gradient (the roots of a quartic).
* **Reflection.** When the trust-region step leaves the box, three candidates are
  compared on the quadratic model: the step cut at the first bound it crosses (then
  pulled back by ``theta = max(0.995, 1 - |v g|_inf)`` to stay strictly inside), the
  step reflected off that bound (its length chosen by minimising the model along the
  reflected ray within the box and the trust region), and the Cauchy step along
  ``-d * g_h`` cut at the bounds. The best one is taken; iterates stay strictly
  feasible (``x`` is nudged off a bound by one ulp if rounding lands it there).
* **Radius.** ``Delta_0 = |x0 / sqrt(v)|`` (1 if 0); a step with gain ratio
  ``< 0.25`` sets ``Delta = 0.25 |p_h|``, one ``> 0.75`` that reached the radius
  doubles it. A trial with non-finite residuals shrinks the radius to a quarter of the
  step and retries.
* **Stopping** (scipy's tests, with the tolerances of
  :class:`~scalar_autograd.lsq.options.SolverOptions` in their scipy meaning):
  ``gradient_tolerance``: ``|v * g|_inf < gtol`` (absolute, on the scaled gradient);
  ``cost_tolerance``: ``dF < ftol * F`` on a step whose gain ratio is above 0.25;
  ``param_tolerance``: ``|dx| < xtol * (xtol + |x|)`` (Euclidean norms, unscaled);
  ``max_iterations``: at most that many trial steps (scipy's ``max_nfev`` is
  ``max_iterations + 1``, the first evaluation included).
* **Robust losses** rescale ``J`` and ``f`` as scipy's
  ``scale_for_robust_loss_function`` (:func:`~scalar_autograd.lsq.losses.robust_scaling`).
* **The start** must lie within the bounds (a point on a bound is allowed): as scipy,
  it is then moved strictly inside, by ``1e-10 * max(1, |bound|)`` off any bound it is
  on or nearer than that (scipy's ``make_strictly_feasible``); a start outside raises
  in the callers (:func:`~scalar_autograd.lsq.options.check_feasible`), as scipy's
  ``least_squares`` raises ("Initial guess is outside of provided bounds").
* **Active bounds** at the solution: ``active_mask[i]`` is -1 (lower), 1 (upper) or 0,
  by scipy's ``find_active_constraints`` with ``rtol = param_tolerance``: within
  ``xtol * max(1, |bound|)`` of the bound, and nearer to it than to the other.

What differs from scipy: the outcome is a :class:`~scalar_autograd.LeastSquaresResult`
with this package's statuses (``ZERO_RESIDUAL`` when every residual is exactly 0 where
scipy reports ``gtol``; ``NO_PARAMS_AFFECT_RESIDUALS`` for an all-zero Jacobian;
``NONFINITE_INITIAL`` and ``NONFINITE_JACOBIAN`` where scipy raises or fails), and
``iterations`` counts trial steps (``nfev - 1``). Unbounded problems never come here:
they take the Levenberg-Marquardt loop (:mod:`scalar_autograd.lsq.levenberg_marquardt`),
whose Marquardt scaling suits badly scaled problems better than ``x_scale=1``.

Example (a decay rate held non-negative while the data pull it below zero):
    >>> import numpy as np
    >>> t = np.linspace(0.0, 1.0, 20); y = 2.0 * np.exp(0.3 * t)
    >>> def rj(x):
    ...     e = np.exp(-x[1] * t)
    ...     return x[0] * e - y, np.stack([e, -x[0] * t * e], axis=1)
    >>> res = trust_region_reflective(rj, lambda x: rj(x)[0], np.array([1.0, 1.0]),
    ...                               np.array([-np.inf, 0.0]), np.array([np.inf, np.inf]))
    >>> res.success, res.active_mask.tolist(), round(float(res.x[1]), 12)
    (True, [0, -1], 0.0)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from scalar_autograd.lsq.levenberg_marquardt import IterationInfo
from scalar_autograd.lsq.losses import loss_cost, robust_scaling
from scalar_autograd.lsq.options import SolverOptions
from scalar_autograd.lsq.result import LeastSquaresResult
from scalar_autograd.lsq.status import Status
from scalar_autograd.validation import check_real_array

ResidualsFn = Callable[[np.ndarray], np.ndarray]
ResidualsAndJacobianFn = Callable[[np.ndarray], tuple[np.ndarray, Any]]

_EPS = float(np.finfo(float).eps)
FEASIBILITY_STEP = 1e-10
"""How far (relative to ``max(1, |bound|)``) a start on a bound is moved inside
(scipy's ``make_strictly_feasible`` for ``least_squares(method="trf")``)."""
MIN_THETA = 0.995
"""The least fraction of the way to a bound a cut step goes (scipy's ``theta``)."""
TR_ALPHA_RTOL = 0.01
"""Moré's iteration stops when the step length is within 1% of the radius."""
TR_ALPHA_ITERATIONS = 10


# ---------------------------------------------------------------------------- bounds
def in_bounds(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> bool:
    """Whether ``lower <= x <= upper`` everywhere."""
    return bool(np.all((x >= lower) & (x <= upper)))


def step_size_to_bound(x: np.ndarray, s: np.ndarray, lower: np.ndarray,
                       upper: np.ndarray) -> tuple[float, np.ndarray]:
    """The least ``t >= 0`` putting ``x + t s`` on a bound, and which bounds it hits
    (-1 lower, 1 upper, 0 none) per component."""
    nonzero = np.nonzero(s)
    s_nonzero = s[nonzero]
    steps = np.full_like(x, np.inf)
    with np.errstate(over="ignore"):
        steps[nonzero] = np.maximum((lower - x)[nonzero] / s_nonzero,
                                    (upper - x)[nonzero] / s_nonzero)
    least = float(np.min(steps))
    return least, np.equal(steps, least) * np.sign(s).astype(int)


def find_active_constraints(x: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                            rtol: float = 1e-10) -> np.ndarray:
    """Per component: -1 when the lower bound is active, 1 the upper, else 0.

    A bound is active when ``x`` is within ``rtol * max(1, |bound|)`` of it and not
    nearer to the other bound (``rtol = 0``: on or beyond it).
    """
    active = np.zeros(x.shape, dtype=int)
    if rtol == 0:
        active[x <= lower] = -1
        active[x >= upper] = 1
        return active
    lower_dist = x - lower
    upper_dist = upper - x
    lower_threshold = rtol * np.maximum(1, np.abs(lower))
    upper_threshold = rtol * np.maximum(1, np.abs(upper))
    with np.errstate(invalid="ignore"):
        lower_active = np.isfinite(lower) & (lower_dist <= np.minimum(upper_dist,
                                                                      lower_threshold))
        active[lower_active] = -1
        upper_active = np.isfinite(upper) & (upper_dist <= np.minimum(lower_dist,
                                                                      upper_threshold))
    active[upper_active] = 1
    return active


def make_strictly_feasible(x: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                           rstep: float = FEASIBILITY_STEP) -> np.ndarray:
    """``x`` moved into the interior: at least ``rstep * max(1, |bound|)`` from each
    bound (``rstep = 0``: one ulp), or to the middle of a box too narrow for that."""
    x_new = x.copy()
    active = find_active_constraints(x, lower, upper, rstep)
    lower_mask = np.equal(active, -1)
    upper_mask = np.equal(active, 1)
    if rstep == 0:
        x_new[lower_mask] = np.nextafter(lower[lower_mask], upper[lower_mask])
        x_new[upper_mask] = np.nextafter(upper[upper_mask], lower[upper_mask])
    else:
        x_new[lower_mask] = lower[lower_mask] + rstep * np.maximum(1, np.abs(lower[lower_mask]))
        x_new[upper_mask] = upper[upper_mask] - rstep * np.maximum(1, np.abs(upper[upper_mask]))
    tight = (x_new < lower) | (x_new > upper)
    x_new[tight] = 0.5 * (lower[tight] + upper[tight])
    return x_new


def coleman_li_scaling(x: np.ndarray, g: np.ndarray, lower: np.ndarray,
                       upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(v, dv)``: the Coleman-Li scaling vector and its derivative (module docstring)."""
    v = np.ones_like(x)
    dv = np.zeros_like(x)
    mask = (g < 0) & np.isfinite(upper)
    v[mask] = upper[mask] - x[mask]
    dv[mask] = -1
    mask = (g > 0) & np.isfinite(lower)
    v[mask] = x[mask] - lower[mask]
    dv[mask] = 1
    return v, dv


# ---------------------------------------------------------------------------- models
def _matvec(J: Any, s: np.ndarray) -> np.ndarray:
    return np.asarray(J.dot(s))


def evaluate_quadratic(J: Any, g: np.ndarray, s: np.ndarray,
                       diag: np.ndarray | None = None) -> float:
    """``0.5 s^T (J^T J + diag(diag)) s + g^T s``."""
    Js = _matvec(J, s)
    q = float(np.dot(Js, Js))
    if diag is not None:
        q += float(np.dot(s * diag, s))
    return 0.5 * q + float(np.dot(s, g))


def build_quadratic_1d(J: Any, g: np.ndarray, s: np.ndarray, diag: np.ndarray | None = None,
                       s0: np.ndarray | None = None) -> tuple[float, float, float]:
    """``(a, b, c)`` of ``t -> a t^2 + b t + c``, the quadratic model
    ``0.5 p^T (J^T J + diag) p + g^T p`` along ``p = s0 + t s`` (``c = 0`` without
    ``s0``)."""
    v = _matvec(J, s)
    a = float(np.dot(v, v))
    if diag is not None:
        a += float(np.dot(s * diag, s))
    a *= 0.5
    b = float(np.dot(g, s))
    c = 0.0
    if s0 is not None:
        u = _matvec(J, s0)
        b += float(np.dot(u, v))
        c = 0.5 * float(np.dot(u, u)) + float(np.dot(g, s0))
        if diag is not None:
            b += float(np.dot(s0 * diag, s))
            c += 0.5 * float(np.dot(s0 * diag, s0))
    return a, b, c


def minimize_quadratic_1d(a: float, b: float, lo: float, hi: float,
                          c: float = 0.0) -> tuple[float, float]:
    """The minimiser of ``a t^2 + b t + c`` over ``[lo, hi]`` (finite) and its value."""
    t = [lo, hi]
    if a != 0:
        extremum = -0.5 * b / a
        if lo < extremum < hi:
            t.append(extremum)
    ts = np.asarray(t)
    y = ts * (a * ts + b) + c
    i = int(np.argmin(y))
    return float(ts[i]), float(y[i])


def intersect_trust_region(x: np.ndarray, s: np.ndarray, delta: float
                           ) -> tuple[float, float]:
    """The roots ``t_neg <= t_pos`` of ``|x + t s| = delta`` (``x`` inside, ``s != 0``)."""
    a = float(np.dot(s, s))
    if a == 0:
        raise ValueError("`s` is zero.")
    b = float(np.dot(x, s))
    c = float(np.dot(x, x)) - delta**2
    if c > 0:
        raise ValueError("`x` is not within the trust region.")
    d = math.sqrt(b * b - a * c)
    q = -(b + math.copysign(d, b))
    t1, t2 = q / a, c / q
    return (t1, t2) if t1 < t2 else (t2, t1)


def update_radius(delta: float, actual: float, predicted: float, step_norm: float,
                  bound_hit: bool) -> tuple[float, float]:
    """The next radius and the gain ratio (scipy's ``update_tr_radius``)."""
    if predicted > 0:
        ratio = actual / predicted
    elif predicted == actual == 0:
        ratio = 1.0
    else:
        ratio = 0.0
    if ratio < 0.25:
        delta = 0.25 * step_norm
    elif ratio > 0.75 and bound_hit:
        delta *= 2.0
    return delta, ratio


# ---------------------------------------------------------------------------- subproblems
def solve_lsq_trust_region(n: int, m: int, uf: np.ndarray, s: np.ndarray, V: np.ndarray,
                           delta: float, initial_alpha: float | None = None
                           ) -> tuple[np.ndarray, float]:
    """Minimise ``|J p + f|`` subject to ``|p| <= delta`` from the SVD ``J = U S V^T``
    (``uf = U^T f``): the Gauss-Newton step when it fits, else ``(J^T J + alpha I) p =
    -J^T f`` with ``alpha`` found by Moré's iteration until ``|p|`` is within 1% of
    ``delta`` (at most 10 iterations), then scaled onto the sphere. Returns ``p`` and
    ``alpha``."""
    suf = s * uf

    def phi_and_derivative(alpha: float) -> tuple[float, float]:
        denom = s**2 + alpha
        p_norm = float(np.linalg.norm(suf / denom))
        return p_norm - delta, -float(np.sum(suf**2 / denom**3)) / p_norm

    full_rank = m >= n and bool(s[-1] > _EPS * m * s[0])
    if full_rank:
        p = -V.dot(uf / s)
        if np.linalg.norm(p) <= delta:
            return p, 0.0
    alpha_upper = float(np.linalg.norm(suf)) / delta
    if full_rank:
        phi, phi_prime = phi_and_derivative(0.0)
        alpha_lower = -phi / phi_prime
    else:
        alpha_lower = 0.0
    if initial_alpha is None or (not full_rank and initial_alpha == 0):
        alpha = max(0.001 * alpha_upper, (alpha_lower * alpha_upper) ** 0.5)
    else:
        alpha = initial_alpha
    for _ in range(TR_ALPHA_ITERATIONS):
        if alpha < alpha_lower or alpha > alpha_upper:
            alpha = max(0.001 * alpha_upper, (alpha_lower * alpha_upper) ** 0.5)
        phi, phi_prime = phi_and_derivative(alpha)
        if phi < 0:
            alpha_upper = alpha
        ratio = phi / phi_prime
        alpha_lower = max(alpha_lower, alpha - ratio)
        alpha -= (phi + delta) * ratio / delta
        if abs(phi) < TR_ALPHA_RTOL * delta:
            break
    p = -V.dot(suf / (s**2 + alpha))
    p *= delta / np.linalg.norm(p)      # exactly on the sphere
    return p, alpha


def solve_trust_region_2d(B: np.ndarray, g: np.ndarray, delta: float) -> np.ndarray:
    """The minimiser of ``0.5 p^T B p + g^T p`` over ``|p| <= delta`` in two dimensions:
    the Newton step when ``B`` is positive definite and the step fits, else the best
    point of the boundary, from the real roots of a quartic in ``t = tan(angle / 2)``."""
    try:
        L = np.linalg.cholesky(B)
        p = -np.linalg.solve(L.T, np.linalg.solve(L, g))
        if np.dot(p, p) <= delta**2:
            return np.asarray(p)
    except np.linalg.LinAlgError:
        pass
    a, b, c = B[0, 0] * delta**2, B[0, 1] * delta**2, B[1, 1] * delta**2
    d, f = g[0] * delta, g[1] * delta
    coeffs = np.array([-b + d, 2 * (a - c + f), 6 * b, 2 * (-a + c + f), -b - d])
    t = np.roots(coeffs)
    t = np.real(t[np.isreal(t)])
    ps = delta * np.vstack((2 * t / (1 + t**2), (1 - t**2) / (1 + t**2)))
    value = 0.5 * np.sum(ps * B.dot(ps), axis=0) + np.dot(g, ps)
    return np.asarray(ps[:, int(np.argmin(value))])


def select_step(x: np.ndarray, J_h: Any, diag_h: np.ndarray, g_h: np.ndarray, p: np.ndarray,
                p_h: np.ndarray, d: np.ndarray, delta: float, lower: np.ndarray,
                upper: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The best of the cut, reflected and Cauchy steps (module docstring): ``(step,
    step_h, predicted reduction)``."""
    if in_bounds(x + p, lower, upper):
        return p, p_h, -evaluate_quadratic(J_h, g_h, p_h, diag=diag_h)
    p_stride, hits = step_size_to_bound(x, p, lower, upper)

    # the reflected direction, and the step cut at the first bound
    r_h = np.copy(p_h)
    r_h[hits.astype(bool)] *= -1
    r = d * r_h
    p = p * p_stride
    p_h = p_h * p_stride
    x_on_bound = x + p

    # the reflected ray leaves the box or the trust region first
    _, to_tr = intersect_trust_region(p_h, r_h, delta)
    to_bound, _ = step_size_to_bound(x_on_bound, r, lower, upper)
    r_stride = min(to_bound, to_tr)
    if r_stride > 0:
        r_stride_l = (1 - theta) * p_stride / r_stride
        r_stride_u = theta * to_bound if r_stride == to_bound else to_tr
    else:
        r_stride_l, r_stride_u = 0.0, -1.0
    if r_stride_l <= r_stride_u:
        a, b, c = build_quadratic_1d(J_h, g_h, r_h, s0=p_h, diag=diag_h)
        r_stride, r_value = minimize_quadratic_1d(a, b, r_stride_l, r_stride_u, c=c)
        r_h = r_h * r_stride + p_h
        r = r_h * d
    else:
        r_value = math.inf

    # the cut step, pulled back inside
    p = p * theta
    p_h = p_h * theta
    p_value = evaluate_quadratic(J_h, g_h, p_h, diag=diag_h)

    # the Cauchy step, cut at the bounds and the trust region
    ag_h = -g_h
    ag = d * ag_h
    to_tr = delta / float(np.linalg.norm(ag_h))
    to_bound, _ = step_size_to_bound(x, ag, lower, upper)
    ag_stride = theta * to_bound if to_bound < to_tr else to_tr
    a, b, _ = build_quadratic_1d(J_h, g_h, ag_h, diag=diag_h)
    ag_stride, ag_value = minimize_quadratic_1d(a, b, 0.0, ag_stride)
    ag_h = ag_h * ag_stride
    ag = ag * ag_stride

    if p_value < r_value and p_value < ag_value:
        return p, p_h, -p_value
    if r_value < p_value and r_value < ag_value:
        return r, r_h, -r_value
    return ag, ag_h, -ag_value


def _svd(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``U, s, V^T`` (thin), by scipy's LAPACK when importable (as scipy's ``trf``)."""
    try:
        from scipy.linalg import svd
    except ImportError:  # pragma: no cover - numpy-only install
        U, s, VT = np.linalg.svd(A, full_matrices=False)
        return U, s, VT
    U, s, VT = svd(A, full_matrices=False, check_finite=False)
    return U, s, VT


def _qr(A: np.ndarray) -> np.ndarray:
    try:
        from scipy.linalg import qr
    except ImportError:  # pragma: no cover - numpy-only install
        return np.asarray(np.linalg.qr(A)[0])
    return np.asarray(qr(A, mode="economic")[0])


class _LsmrStep:
    """The ``tr_solver="lsmr"`` subproblem of one iteration: the 2-D subspace of the
    gradient and a regularised Gauss-Newton direction (scipy's defaults: LSMR's own
    tolerances, ``regularize=True``)."""

    def __init__(self, J: Any, d: np.ndarray, g_h: np.ndarray, diag_h: np.ndarray,
                 f: np.ndarray, delta: float) -> None:
        from scipy.sparse.linalg import LinearOperator, aslinearoperator, lsmr

        A = aslinearoperator(J)
        m, n = A.shape
        J_h = LinearOperator(
            (m, n), matvec=lambda x: A.matvec(np.ravel(x) * d),
            matmat=lambda X: A.matmat(X * d[:, np.newaxis]),
            rmatvec=lambda x: d * A.rmatvec(x), dtype=float)
        a, b, _ = build_quadratic_1d(J_h, g_h, -g_h, diag=diag_h)
        to_tr = delta / float(np.linalg.norm(g_h))
        ag_value = minimize_quadratic_1d(a, b, 0.0, to_tr)[1]
        diag = (diag_h - ag_value / delta**2) ** 0.5
        regularized = LinearOperator(
            (m + n, n), matvec=lambda x: np.hstack((J_h.matvec(x), diag * x)),
            rmatvec=lambda x: J_h.rmatvec(x[:m]) + diag * x[m:], dtype=float)
        gn_h = lsmr(regularized, np.concatenate([f, np.zeros(n)]))[0]
        S = _qr(np.vstack((g_h, gn_h)).T)
        JS = J_h.dot(S)
        self.J_h = J_h
        self.S = S
        self.B_S = np.dot(JS.T, JS) + np.dot(S.T * diag_h, S)
        self.g_S = S.T.dot(g_h)

    def step(self, delta: float) -> np.ndarray:
        return np.asarray(self.S.dot(solve_trust_region_2d(self.B_S, self.g_S, delta)))


# ---------------------------------------------------------------------------- the loop
_TERMINATION = {1: Status.GRADIENT_TOLERANCE, 2: Status.COST_TOLERANCE,
                3: Status.PARAM_TOLERANCE, 4: Status.COST_AND_PARAM_TOLERANCE}


def _check_termination(dF: float, F: float, dx_norm: float, x_norm: float, ratio: float,
                       ftol: float, xtol: float) -> int | None:
    ftol_ok = dF < ftol * F and ratio > 0.25
    xtol_ok = dx_norm < xtol * (xtol + x_norm)
    if ftol_ok and xtol_ok:
        return 4
    if ftol_ok:
        return 2
    if xtol_ok:
        return 3
    return None


def _is_sparse(J: Any) -> bool:
    return hasattr(J, "tocsr")


def _finite(J: Any) -> bool:
    return bool(np.all(np.isfinite(J.data if _is_sparse(J) else J)))


def _any_nonzero(J: Any) -> bool:
    return bool(np.any(J.data if _is_sparse(J) else J))


class _Point:
    """The residuals and Jacobian at one point, scaled for the robust loss."""

    def __init__(self, r: np.ndarray, J: Any, opts: SolverOptions) -> None:
        self.r = r                       # the model's residuals (scipy's ``fun``)
        self.raw_J = J
        if opts.loss == "linear":
            self.f, self.J = r, J
        else:
            row_scale, self.f = robust_scaling(opts.loss, r, opts.loss_scale)
            if _is_sparse(J):
                Js = J.tocsr(copy=True)
                Js.data *= np.repeat(row_scale, np.diff(Js.indptr))
                self.J = Js
            else:
                self.J = J * row_scale[:, None]
        self.g = np.asarray(self.J.T.dot(self.f)).ravel()


def trust_region_reflective(
    residuals_and_jacobian: ResidualsAndJacobianFn,
    residuals: ResidualsFn,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    options: SolverOptions | None = None,
    *,
    log: Callable[[str], None] = print,
) -> LeastSquaresResult:
    """Minimise ``0.5 * sum(rho(r(x)**2))`` subject to ``lower <= x <= upper`` (see the
    module docstring: scipy's ``trf``).

    Args:
        residuals_and_jacobian: ``x -> (r, J)``, ``J`` a numpy array (solved by SVD,
            scipy's ``tr_solver="exact"``) or a ``scipy.sparse`` matrix (LSMR and a 2-D
            subspace, ``tr_solver="lsmr"``; also for a dense J when
            ``options.linear_solver`` is ``"sparse_lsmr"``).
        residuals: ``x -> r``; used for trial steps.
        x0: the start, within the bounds (checked by the callers; a start on a bound
            is moved strictly inside).
        lower, upper: ``(n,)`` bounds, ``lower < upper``, ``-inf``/``inf`` allowed.
        options: validated options (defaults if omitted). ``initial_damping`` and
            ``geodesic_acceleration`` belong to Levenberg-Marquardt and are not used.
        log: where verbose lines go.

    Returns:
        A :class:`LeastSquaresResult` with ``active_mask``; ``x`` is the best point
        found and is strictly feasible.
    """
    opts = options if options is not None else SolverOptions()
    start_time = time.perf_counter()
    x = check_real_array(x0, "x0")
    if x.ndim != 1:
        raise ValueError(f"x0 must be a 1-D array of parameters; got shape {x.shape}")
    lb = np.asarray(lower, dtype=float)
    ub = np.asarray(upper, dtype=float)
    x = make_strictly_feasible(x, lb, ub)
    ftol, xtol, gtol = opts.cost_tolerance, opts.param_tolerance, opts.gradient_tolerance
    max_nfev = opts.max_iterations + 1

    r, J = residuals_and_jacobian(x)
    r = np.asarray(r, dtype=float)
    nfev = njev = 1
    n = x.size
    g_norm = math.nan

    def finish(status: Status, point: _Point | None, cost: float) -> LeastSquaresResult:
        if opts.verbose:
            log(f"stopped after {nfev - 1} trial steps: {status.value}")
        return LeastSquaresResult(
            x=x.copy(), cost=cost, residuals=(point.r if point is not None else r).copy(),
            grad_norm=g_norm, iterations=nfev - 1, nfev=nfev, njev=njev, status=status,
            time=time.perf_counter() - start_time,
            jacobian=point.J if point is not None else J,
            active_mask=find_active_constraints(x, lb, ub, rtol=xtol))

    cost = loss_cost(opts.loss, r, opts.loss_scale) if r.size else 0.0
    if not np.all(np.isfinite(r)) or not math.isfinite(cost):
        return finish(Status.NONFINITE_INITIAL, None, cost)
    point = _Point(r, J, opts)
    if not _finite(point.J):
        return finish(Status.NONFINITE_JACOBIAN, point, cost)
    m = r.size
    lsmr = _is_sparse(J) or opts.linear_solver == "sparse_lsmr"
    if lsmr and not _is_sparse(J):
        from scipy.sparse import csr_matrix

        J = csr_matrix(J)
        point = _Point(r, J, opts)

    v, dv = coleman_li_scaling(x, point.g, lb, ub)
    delta = float(np.linalg.norm(x / v**0.5))
    if delta == 0:
        delta = 1.0
    alpha = 0.0                          # the Levenberg-Marquardt parameter
    status: Status | None = None
    J_augmented = None if lsmr else np.empty((m + n, n))
    f_augmented = np.zeros(m + n)
    if opts.verbose:
        log(f"{'trial':>5} {'cost':>14} {'reduction':>11} {'optimality':>10} "
            f"{'|step|':>10} {'alpha':>9} {'ratio':>8}")

    while True:
        g = point.g
        v, dv = coleman_li_scaling(x, g, lb, ub)
        g_norm = float(np.max(np.abs(g * v), initial=0.0))
        # scipy's order: the gradient test overrides a cost or step test just met
        if not np.any(point.r):
            status = Status.ZERO_RESIDUAL
        elif g_norm < gtol or g_norm == 0:
            status = Status.GRADIENT_TOLERANCE if _any_nonzero(point.J) \
                else Status.NO_PARAMS_AFFECT_RESIDUALS
        if opts.verbose and nfev == 1:
            log(f"{0:>5} {cost:>14.8e} {'':>11} {g_norm:>10.3e}")
        if status is None and nfev >= max_nfev:
            status = Status.MAX_ITERATIONS
        if status is not None:
            return finish(status, point, cost)

        d = v**0.5                       # x_scale = 1
        diag_h = g * dv                  # C = diag(g) Jv, non-negative
        g_h = d * g
        subspace: _LsmrStep | None = None
        if J_augmented is not None:
            J_augmented[:m] = point.J * d
            J_h: Any = J_augmented[:m]
            J_augmented[m:] = np.diag(diag_h**0.5)
            f_augmented[:m] = point.f
            U, s, VT = _svd(J_augmented)
            V = VT.T
            uf = U.T.dot(f_augmented)
        else:
            subspace = _LsmrStep(point.J, d, g_h, diag_h, point.f, delta)
            J_h = subspace.J_h
        theta = max(MIN_THETA, 1 - g_norm)

        actual = -1.0
        stop = False
        while actual <= 0 and nfev < max_nfev:
            if subspace is None:
                p_h, alpha = solve_lsq_trust_region(n, m, uf, s, V, delta,
                                                    initial_alpha=alpha)
            else:
                p_h = subspace.step(delta)
            step, step_h, predicted = select_step(x, J_h, diag_h, g_h, d * p_h, p_h, d,
                                                  delta, lb, ub, theta)
            x_new = make_strictly_feasible(x + step, lb, ub, rstep=0)
            r_new = np.asarray(residuals(x_new), dtype=float)
            nfev += 1
            step_h_norm = float(np.linalg.norm(step_h))
            if not np.all(np.isfinite(r_new)):
                delta = 0.25 * step_h_norm
                stop = _report(opts, log, nfev - 1, x, cost, math.nan, g_norm, step,
                               alpha, math.nan, False)
                if stop:
                    break
                continue
            cost_new = loss_cost(opts.loss, r_new, opts.loss_scale)
            actual = cost - cost_new
            delta_new, ratio = update_radius(delta, actual, predicted, step_h_norm,
                                             step_h_norm > 0.95 * delta)
            code = _check_termination(actual, cost, float(np.linalg.norm(step)),
                                      float(np.linalg.norm(x)), ratio, ftol, xtol)
            if code is not None:
                status = _TERMINATION[code]
            accepted = actual > 0
            stop = _report(opts, log, nfev - 1, x_new if accepted else x,
                           cost_new if accepted else cost, actual, g_norm, step, alpha,
                           ratio, accepted)
            if code is not None or stop:
                break
            alpha *= delta / delta_new
            delta = delta_new

        if actual > 0:
            x = x_new
            r, J = residuals_and_jacobian(x)
            njev += 1
            if lsmr and not _is_sparse(J):
                from scipy.sparse import csr_matrix

                J = csr_matrix(J)
            # the residuals the trial's cost was measured on (the same numbers)
            point = _Point(r_new, J, opts)
            cost = cost_new
            if not _finite(point.J):
                return finish(Status.NONFINITE_JACOBIAN, point, cost)
        if stop:
            return finish(Status.CALLBACK_STOP, point, cost)


def _report(opts: SolverOptions, log: Callable[[str], None], trial: int, x: np.ndarray,
            cost: float, actual: float, optimality: float, step: np.ndarray, alpha: float,
            ratio: float, accepted: bool) -> bool:
    """The verbose line and the callback of one trial step; whether to stop."""
    step_norm = float(np.linalg.norm(step))
    if opts.verbose:
        mark = "" if accepted else " rejected"
        log(f"{trial:>5} {cost:>14.8e} {actual:>11.3e} {optimality:>10.3e} "
            f"{step_norm:>10.3e} {alpha:>9.2e} {ratio:>8.3g}{mark}")
    if opts.callback is None:
        return False
    info = IterationInfo(iteration=trial, x=x.copy(), cost=cost, grad_norm=optimality,
                         step_norm=step_norm, damping=alpha, gain_ratio=ratio,
                         accepted=accepted)
    return bool(opts.callback(info))
