"""The Levenberg-Marquardt loop on flat float64 oracles ``residuals(x)`` and
``residuals_and_jacobian(x)``.

Per iteration, with ``J_s, f_s`` the (robust-loss scaled) Jacobian and residuals at the
current point ``x``, ``g = J_s^T f_s`` the gradient of the cost and ``A = J_s^T J_s``:

1. Marquardt scaling: ``D_j = max over iterations of (J^T J)_jj`` (the running maximum, as
   MINPACK's ``diag`` and Ceres), floored at ``eps * max(D)`` so unused parameters stay
   solvable. The running maximum keeps the damping from collapsing on a column that
   is momentarily small, which is what makes ill-conditioned problems such as NIST's
   Hahn1 converge. ``J`` here is the model's Jacobian before the robust-loss row
   weights, which can zero a row's curvature (Cauchy outliers) and would then leave
   the parameters only that row touches undamped.
2. Step: ``(A + mu diag(D)) h = -g`` (:mod:`scalar_autograd.lsq.linalg`).
3. Trial: residuals only at ``x + h`` (never the Jacobian). Gain ratio
   ``rho = (cost(x) - cost(x + h)) / (L(0) - L(h))`` with the model reduction
   ``L(0) - L(h) = -(g.h + 0.5 |J_s h|^2)``. A non-finite trial cost counts as a failure.
4. Nielsen's update: on success (``rho > 1e-4``; see also the evaporation check below)
   accept, re-evaluate residuals and Jacobian, ``mu *= max(1/3, 1 - (2 rho - 1)^3)``,
   ``nu = 2``; on failure ``mu *= nu``, ``nu *= 2``.

Two safeguards from MINPACK and from Transtrum & Sethna, used with Nielsen's ``mu``:

* Trust radius (MINPACK ``lmder``, Moré 1978): ``|sqrt(D) h| <= delta``. It starts at
  ``delta = 100 |sqrt(D) x0|`` (MINPACK's ``factor``) with ``mu`` at ``MIN_DAMPING``
  (MINPACK's ``par = 0``: the first step is Gauss-Newton's unless it is longer than the
  radius), unless ``initial_damping`` is given. A step longer than ``delta`` is
  recomputed with the smallest larger ``mu`` that fits (:func:`_fit_radius`) and that
  ``mu`` carries on. A rejected step shrinks ``delta`` to ``0.5 min(delta, 10 |sqrt(D) h|)``
  (``0.1`` when the cost went up); a step with ``rho >= 0.75`` raises it to at least
  ``2 |sqrt(D) h|``. The radius is only an upper bound: Nielsen's update still drives
  ``mu``. It makes the early, undamped steps MINPACK takes possible (NIST MGH10 from its
  first start needs one) while a failed long step costs a factor 2-10 of length, not
  a long run of doublings of ``mu``.
* Evaporation check: a step that lowers the cost is still rejected (as a failure) when,
  at the new point, one Jacobian column's squared norm has shrunk by more than
  ``EVAPORATION`` (machine epsilon) relative to the column that changed least, i.e. the
  step would make a parameter drop out of ``J^T J`` ("parameter evaporation",
  Transtrum & Sethna 2012; NIST BoxBOD from its first start sends ``b1`` up the plateau
  where ``exp(-b1 x) = 0``). The Jacobian there is the one an accepted step needs anyway,
  so the check costs nothing unless it fires.

Optionally (``geodesic_acceleration``), the step gets the second-order correction of
Transtrum & Sethna (2012): ``h = v + a/2`` with ``v`` the step above and ``a`` from the
second directional derivative of the residuals along ``v`` (one more residual-only
evaluation), rejected when ``|a|/|v| > 0.75`` in the scaled norm (GSL's ``avmax``).

Termination (scipy's meanings, checked after every trial step):

* ``cost_tolerance`` (ftol): an accepted step whose actual and predicted relative cost
  reductions are both ``<= cost_tolerance`` (MINPACK's test).
* ``param_tolerance`` (xtol): ``|sqrt(D) h| <= xtol * (xtol + |sqrt(D) x|)``, the step
  measured in the Marquardt-scaled norm (MINPACK's ``diag``) so parameters of very
  different magnitudes are treated alike.
* ``gradient_tolerance`` (gtol): ``max_j |g_j| / (|f_s| |J_s[:, j]|) <= gtol``, the
  largest cosine between the residual vector and a column of the Jacobian (MINPACK's
  and scipy ``method="lm"``'s meaning), checked at every accepted point.
* zero residual: every residual ``r_i`` is exactly 0 at an accepted point (tested on
  the residuals, not on the cost, which a robust loss or an underflowing square can
  round to 0 while the residuals are not).

The current point is always the best point found (only decreases are accepted), so
whatever the status, ``x`` is the best point.

**On manifolds** (``manifold``, a :class:`~scalar_autograd.manifolds.TangentSpace`: some
parameter blocks are unit quaternions, rotations, unit vectors, ...), the loop runs in
the tangent space at the current point, as Ceres' trust-region minimiser does: the
Jacobian is ``J @ P(x)`` with ``P`` the manifolds' plus Jacobian at ``delta = 0``
(Ceres' ``PlusJacobian``), the step ``h`` (``tangent_size`` numbers) solves the damped
normal equations of that Jacobian, and a trial point is ``plus(x, h)`` (the geodesic
acceleration probe ``plus(x, t v)``). The Marquardt scaling, the damping, the trust
radius and the gradient test all act on tangent quantities. ``param_tolerance``
compares the scaled tangent step ``|sqrt(D) h|`` with ``xtol * (xtol + |sqrt(D) x_ref|)``,
where ``x_ref`` gives each Euclidean parameter its value and each manifold block its
Euclidean norm spread over its tangent coordinates
(:meth:`~scalar_autograd.manifolds.Manifold.step_reference`; a unit quaternion counts
as 1), the scaled analogue of Ceres' ``|x - plus(x, h)| <= xtol * (|x| + xtol)``. The
result's ``jacobian`` and ``grad_norm`` are then the tangent ones.

Example:
    >>> import numpy as np
    >>> t = np.linspace(0, 1, 20); y = 2.0 * np.exp(-1.5 * t)
    >>> def rj(x):
    ...     e = np.exp(-x[1] * t)
    ...     return x[0] * e - y, np.stack([e, -x[0] * t * e], axis=1)
    >>> res = levenberg_marquardt(rj, lambda x: rj(x)[0], np.array([1.0, 1.0]))
    >>> res.success, np.round(res.x, 8).tolist()
    (True, [2.0, 1.5])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalar_autograd.lsq.linalg import solve_dense, solve_sparse
from scalar_autograd.lsq.losses import loss_cost, robust_scaling
from scalar_autograd.lsq.options import SolverOptions
from scalar_autograd.lsq.result import LeastSquaresResult
from scalar_autograd.lsq.schur import SchurComplement
from scalar_autograd.lsq.status import Status
from scalar_autograd.manifolds import TangentSpace
from scalar_autograd.validation import check_real_array

ResidualsFn = Callable[[np.ndarray], np.ndarray]
ResidualsAndJacobianFn = Callable[[np.ndarray], tuple[np.ndarray, Any]]

MIN_GAIN_RATIO = 1e-4
"""A trial step is accepted when its gain ratio exceeds this (and its cost is finite)."""
MAX_DAMPING = 1e32
"""Past this damping (relative to the Marquardt diagonal) the solver gives up."""
MIN_DAMPING = 1e-20
NARROW_COLUMNS = 8
"""Dense Jacobians with at most this many columns form their products in row chunks
(:func:`_normal_products`)."""
BLAS_CHUNK = 2**16
"""Entries (512 KiB of float64) in one row chunk of a narrow dense Jacobian."""
FVV_STEP = 0.1
"""Finite-difference step (along the unit of the velocity) for geodesic acceleration."""
MAX_ACCELERATION_RATIO = 0.75
"""Geodesic acceleration: reject the step when |a| / |v| exceeds this (GSL's ``avmax``)."""
_EPS = float(np.finfo(float).eps)
TRUST_RADIUS_FACTOR = 100.0
"""MINPACK's ``factor`` (Moré 1978): the first trust radius is ``factor * |sqrt(D) x0|``
(``factor`` itself when that is 0)."""
RADIUS_SHRINK = 0.5
"""MINPACK's radius reduction after a failed step whose cost did not increase ..."""
RADIUS_SHRINK_UPHILL = 0.1
"""... and after one whose cost increased or was not finite (MINPACK's lower clamp)."""
RADIUS_FIT_TOLERANCE = 0.1
"""A radius-limited step is accepted when its scaled length is within 10% below the
radius (MINPACK ``lmpar``'s tolerance)."""
RADIUS_FIT_SOLVES = 30
EVAPORATION = _EPS
"""A step is rejected when it shrinks one Jacobian column's squared norm, relative to
the column that shrank least (or grew most), below this: the column would vanish from
``J^T J`` in double precision (parameter "evaporation", Transtrum & Sethna 2012)."""


def _evaporates(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether a step from the point with squared column norms ``before`` to the one
    with ``after`` makes a column numerically vanish relative to the others.

    Each column is compared with itself (``after_j / before_j``), so the test does not
    depend on parameter units or on the overall size of the residuals (a step that
    scales every column alike, as a change of the model's magnitude does, passes).
    """
    used = before > 0
    if not np.any(used):
        return False
    change = after[used] / before[used]
    most = float(np.max(change))
    return most > 0 and float(np.min(change)) < EVAPORATION * most


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` by numpy's own loop (einsum), not BLAS. OpenBLAS threads ``ddot`` on
    long vectors; numpy and scipy each bundle an OpenBLAS with its own thread pool, and
    waking numpy's for these dots between scipy's LAPACK calls made the two pools
    contend for the 2 cores: the Schur step's 350 x 350 Cholesky took 23 ms instead of
    0.7 ms, and bundle adjustment 0.76 s instead of 0.5 s with default threads."""
    return float(np.einsum("i,i->", a, b))


def _norm(a: np.ndarray) -> float:
    """Euclidean norm by :func:`_dot` (as ``np.linalg.norm``'s sqrt(dot), no BLAS)."""
    return math.sqrt(_dot(a, a))


def _fit_radius(
    model: _Model, D: np.ndarray, mu: float, h: np.ndarray, delta: float, solver: str
) -> tuple[float, np.ndarray]:
    """The damping and step when the step ``h`` for ``mu`` is longer than the trust
    radius ``delta`` in the scaled norm ``|sqrt(D) h|``: the smallest ``mu' >= mu``
    whose step fits (within ``RADIUS_FIT_TOLERANCE`` below ``delta``), as MINPACK's
    ``lmpar`` (Moré 1978). ``|sqrt(D) h(mu)|`` decreases in ``mu`` and
    ``mu_max = |g / sqrt(D)| / delta`` always fits, so the root is bracketed; it is
    found by regula falsi on ``1 / |sqrt(D) h(mu)|`` (nearly linear in ``mu``, the
    idea behind Hebden's and Moré's iteration), with log-space bisection as safeguard.
    """
    sqrt_d = np.sqrt(D)
    norm = _norm(sqrt_d * h)
    if not math.isfinite(norm) or norm <= delta:
        return mu, h
    lo, psi_lo = mu, 1.0 / norm
    hi = max(_norm(model.g / sqrt_d) / delta, mu)
    h_hi = _damped_step(model, model.g, model.f, D, hi, solver)
    n_hi = _norm(sqrt_d * h_hi)
    if n_hi >= (1.0 - RADIUS_FIT_TOLERANCE) * delta or not n_hi > 0:
        return hi, h_hi
    psi_hi, target = 1.0 / n_hi, 1.0 / delta
    for _ in range(RADIUS_FIT_SOLVES):
        trial = lo + (target - psi_lo) * (hi - lo) / (psi_hi - psi_lo)
        if not (lo < trial < hi) or trial - lo < 1e-3 * (hi - lo) \
                or hi - trial < 1e-3 * (hi - lo):
            trial = math.sqrt(lo * hi) if lo > 0 else 0.5 * hi
        h_t = _damped_step(model, model.g, model.f, D, trial, solver)
        n_t = _norm(sqrt_d * h_t)
        if n_t > delta:
            lo, psi_lo = trial, 1.0 / n_t
        else:
            hi, psi_hi, h_hi = trial, 1.0 / n_t, h_t
            if n_t >= (1.0 - RADIUS_FIT_TOLERANCE) * delta:
                break
    return hi, h_hi


def _row_chunks(m: int, n: int) -> list[slice]:
    """Consecutive row ranges of an ``(m, n)`` matrix, each of at most ``BLAS_CHUNK``
    entries."""
    step = max(1, BLAS_CHUNK // max(n, 1))
    return [slice(start, start + step) for start in range(0, m, step)]


# Why row chunks (median / p90 of 200 calls on a 2-core machine, OpenBLAS 0.3.31).
# Single-threaded BLAS forms J^T J with J^T f 2.5-5x faster than the einsum loops used
# before (10^5 x 3: 0.6 / 0.7 ms against 1.6 / 1.7 ms; 10^6 x 8: 12 ms against 50 ms) and
# J h about 3x faster. But OpenBLAS hands a product of more than a few 10^5 entries to
# its threads, and when another process keeps a core busy the hand-off stalls: with one
# of the two cores busy, J^T J with J^T f of 3*10^5 x 5 took 5.3 / 8.0 ms and of 10^6 x 8
# 26 / 32 ms. Row chunks of at most BLAS_CHUNK entries stay on the calling thread:
# 2.8 / 2.9 and 11.5 / 12.2 ms there, and as fast as one single-threaded BLAS call
# (OPENBLAS_NUM_THREADS=1). The price: on idle cores one threaded call can be faster
# (J h of 10^6 x 8: 2.9 ms against 5.4 ms chunked).
def _normal_products(J: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(J^T J, J^T f)`` of a narrow dense ``J``, summed over row chunks.

    Overflow is left to the callers (the finiteness check, the Cholesky fallback), as
    with the einsum this replaced: no RuntimeWarning.
    """
    m, n = J.shape
    A = np.zeros((n, n))
    g = np.zeros(n)
    with np.errstate(over="ignore", invalid="ignore"):
        for rows in _row_chunks(m, n):
            chunk = J[rows]
            A += chunk.T @ chunk
            g += chunk.T @ f[rows]
    return A, g


def _squared_norm_of_product(J: np.ndarray, h: np.ndarray) -> float:
    """``|J h|^2`` of a narrow dense ``J``, over row chunks."""
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for rows in _row_chunks(*J.shape):
            Jh = J[rows] @ h
            total += float(Jh @ Jh)
    return total


@dataclass(frozen=True)
class IterationInfo:
    """What the ``callback`` receives after every trial step.

    Attributes:
        iteration: 1-based index of the trial step.
        x: the current (best) point, a copy.
        cost: the cost at ``x``.
        grad_norm: infinity norm of the gradient at ``x``.
        step_norm: Euclidean norm of the trial step.
        damping: the damping ``mu`` for the next step.
        gain_ratio: actual over predicted reduction of the trial step.
        accepted: whether the trial step was accepted.
    """

    iteration: int
    x: np.ndarray
    cost: float
    grad_norm: float
    step_norm: float
    damping: float
    gain_ratio: float
    accepted: bool


class _Model:
    """The Gauss-Newton model at one point: scaled J and f, gradient, normal matrix."""

    def __init__(self, r: np.ndarray, J: Any, opts: SolverOptions,
                 schur: SchurComplement | None = None) -> None:
        self.sparse = hasattr(J, "tocsr")
        self.raw_J = J
        self._finite: bool | None = None
        self.row_scale = None
        if opts.loss == "linear":
            Js, fs = J, r
        else:
            row_scale, fs = robust_scaling(opts.loss, r, opts.loss_scale)
            self.row_scale = row_scale
            if self.sparse:
                Js = J.tocsr(copy=True)
                Js.data *= np.repeat(row_scale, np.diff(Js.indptr))
            else:
                Js = J * row_scale[:, None]
        self.J = Js.tocsr() if self.sparse else Js
        self.irls_weight: np.ndarray | None = None
        if opts.loss != "linear":
            # rho'(z) per row: the IRLS weights, for the gradient-tolerance test
            self.irls_weight = fs * row_scale / np.where(r == 0.0, 1.0, r)
            self.irls_weight[r == 0.0] = 1.0
            self._raw_r = r
        self.f = fs
        # tall, narrow dense Jacobians: BLAS on row chunks (see _normal_products)
        self.narrow = not self.sparse and Js.shape[1] <= NARROW_COLUMNS
        self._A: Any = None
        if self.narrow:
            self._A, self.g = _normal_products(Js, fs)
        else:
            self.g = np.asarray(Js.T @ fs).ravel()
        self.schur = schur if self.sparse and schur is not None and schur.matches(self.J) \
            else None
        if self.schur is not None:
            # the elimination never needs the full J^T J, only its diagonal (from the
            # blocks U and V of J^T J it forms for the step anyway)
            self.diag = self.schur.diagonal(self.J)
        elif self.sparse:
            self.diag = np.asarray(self.normal_matrix().diagonal())
        else:
            if not self.narrow:
                self._A = Js.T @ Js
            self.diag = np.diag(self._A).copy()
        # Marquardt scaling comes from the model's own Jacobian, not the loss weights:
        # a robust loss can zero a row's curvature (Cauchy outliers) and leave the
        # damping of the parameters it alone touches with nothing to scale by.
        if self.row_scale is None:
            self.scaling_diag = self.diag
        elif self.sparse:
            self.scaling_diag = np.asarray(J.multiply(J).sum(axis=0)).ravel()
        else:
            self.scaling_diag = np.einsum("ij,ij->j", J, J)

    def normal_matrix(self) -> Any:
        """``J_s^T J_s`` (formed on first use when the Schur path skips it)."""
        if self._A is None:
            # an explicit CSR transpose makes the product CSR x CSR (no conversions)
            self._A = (self.J.T.tocsr() @ self.J).tocsr()
        return self._A

    def predicted_reduction(self, h: np.ndarray) -> float:
        if self.narrow:
            squared = _squared_norm_of_product(self.J, h)
        else:
            Jh = self.J @ h
            squared = _dot(Jh, Jh)
        return -(_dot(self.g, h) + 0.5 * squared)

    def gradient_cosine(self) -> float:
        """max_j |g_j| / (|f| |J[:, j]|) (MINPACK). With a robust loss both norms are
        taken with the IRLS weights rho'(z_i), so that g = (W J)^T (W r), W = sqrt(rho')."""
        if self.irls_weight is None:
            fnorm = _norm(self.f)
            col = np.sqrt(self.diag)
        else:
            w = self.irls_weight
            fnorm = math.sqrt(float(np.sum(w * self._raw_r**2)))
            raw = self.raw_J
            squared = raw.multiply(raw) if self.sparse else raw * raw
            col = np.sqrt(np.asarray(squared.T @ w).ravel())
        if fnorm == 0.0:
            return 0.0
        used = col > 0
        if not np.any(used):
            return 0.0
        return float(np.max(np.abs(self.g[used]) / (col[used] * fnorm)))

    def finite(self) -> bool:
        """Whether every entry of the (scaled) Jacobian is finite."""
        if self._finite is None:
            # dense: a nan or inf entry makes its column's (J^T J)_jj nan or inf, so a
            # finite diagonal clears J without another pass over it
            self._finite = (not self.sparse and bool(np.all(np.isfinite(self.diag)))) \
                or bool(np.all(np.isfinite(self.J.data if self.sparse else self.J)))
        return self._finite


def _damped_step(
    model: _Model, g: np.ndarray, f: np.ndarray, D: np.ndarray, mu: float, solver: str
) -> np.ndarray:
    """``-(A + mu D)^-1 g`` with the model's normal matrix (by Schur elimination when
    the model has one and the solver is the sparse Cholesky; a failed elimination falls
    back to the generic sparse factorisation)."""
    if model.schur is not None and solver == "sparse_cholesky":
        h = model.schur.solve(model.J, g, D, mu)
        if h is not None:
            return h
    if model.sparse:
        return solve_sparse(model.normal_matrix(), g, D, mu, model.J, f, solver)
    return solve_dense(model.normal_matrix(), g, D, mu, model.J, f)


def _acceleration(
    model: _Model, r: np.ndarray, r_probe: np.ndarray, v: np.ndarray, D: np.ndarray,
    mu: float, solver: str,
) -> np.ndarray | None:
    """Geodesic acceleration ``a`` for the velocity ``v`` (Transtrum & Sethna 2012).

    The second directional derivative of the residuals along ``v`` comes from one
    extra residual evaluation, ``f_vv = 2/t ((r(x + t v) - r(x))/t - J v)``; then
    ``(A + mu D) a = -J^T f_vv``. Returns None (reject the step) when ``f_vv`` is not
    finite or ``|a| / |v| > MAX_ACCELERATION_RATIO`` in the scaled norm.
    """
    fvv = (2.0 / FVV_STEP) * ((r_probe - r) / FVV_STEP - np.asarray(model.raw_J @ v))
    if model.row_scale is not None:
        fvv = fvv * model.row_scale
    if not np.all(np.isfinite(fvv)):
        return None
    a = _damped_step(model, np.asarray(model.J.T @ fvv).ravel(), fvv, D, mu, solver)
    sqrt_d = np.sqrt(D)
    v_norm = _norm(sqrt_d * v)
    if v_norm == 0.0 or _norm(sqrt_d * a) > MAX_ACCELERATION_RATIO * v_norm:
        return None
    return a


def _itself(x: np.ndarray) -> np.ndarray:
    return x


def _in_tangent_space(evaluate: ResidualsAndJacobianFn, space: TangentSpace
                      ) -> ResidualsAndJacobianFn:
    """``evaluate`` with its Jacobian taken to the tangent space at ``x``."""

    def residuals_and_jacobian(x: np.ndarray) -> tuple[np.ndarray, Any]:
        r, J = evaluate(x)
        return r, space.to_tangent(J, x)

    return residuals_and_jacobian


def levenberg_marquardt(
    residuals_and_jacobian: ResidualsAndJacobianFn,
    residuals: ResidualsFn,
    x0: np.ndarray,
    options: SolverOptions | None = None,
    *,
    log: Callable[[str], None] = print,
    schur: SchurComplement | None = None,
    manifold: TangentSpace | None = None,
) -> LeastSquaresResult:
    """Minimise ``0.5 * sum(rho(r(x)**2))`` from ``x0`` (see the module docstring).

    Args:
        residuals_and_jacobian: ``x -> (r, J)`` with ``r`` of shape ``(m,)`` and ``J``
            an ``(m, n)`` numpy array or ``scipy.sparse`` matrix.
        residuals: ``x -> r``; used for trial steps.
        x0: the starting point ``(n,)``.
        options: validated options (defaults if omitted).
        log: where verbose lines go.
        schur: a Schur-complement elimination for the sparse Jacobian's pattern
            (:mod:`scalar_autograd.lsq.schur`), used by the sparse Cholesky step
            (``linear_solver`` ``"auto"``, ``"schur"`` or ``"sparse_cholesky"`` on a
            sparse Jacobian) whenever the Jacobian has that pattern.
        manifold: the parameter blocks on manifolds (see the module docstring);
            ``residuals_and_jacobian`` still returns the Jacobian with respect to
            ``x``, and ``x0``'s blocks must be points of their manifolds.

    Returns:
        A :class:`LeastSquaresResult`; ``x`` is the best point found.

    Raises:
        TypeError: ``x0`` holds anything but real numbers.
        ValueError: ``x0`` is not 1-D.
    """
    opts = options if options is not None else SolverOptions()
    start = time.perf_counter()
    x = check_real_array(x0, "x0")
    if x.ndim != 1:
        raise ValueError(f"x0 must be a 1-D array of parameters; got shape {x.shape}")
    move: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.add
    size_of: Callable[[np.ndarray], np.ndarray] = _itself
    if manifold is not None:
        residuals_and_jacobian = _in_tangent_space(residuals_and_jacobian, manifold)
        move, size_of = manifold.plus, manifold.reference
    r, J = residuals_and_jacobian(x)
    r = np.asarray(r, dtype=float)
    nfev = njev = 1
    iterations = 0

    def finish(status: Status, model: _Model | None) -> LeastSquaresResult:
        if opts.verbose:
            log(f"stopped after {iterations} iterations: {status.value}")
        grad = model.g if model is not None else np.full(x.size, np.nan)
        return LeastSquaresResult(
            x=x.copy(), cost=cost, residuals=r.copy(),
            grad_norm=float(np.max(np.abs(grad))) if grad.size else 0.0,
            iterations=iterations, nfev=nfev, njev=njev, status=status,
            time=time.perf_counter() - start,
            jacobian=model.J if model is not None else J,
        )

    cost = loss_cost(opts.loss, r, opts.loss_scale) if r.size else 0.0
    if not np.all(np.isfinite(r)) or not math.isfinite(cost):
        return finish(Status.NONFINITE_INITIAL, None)
    model = _Model(r, J, opts, schur)
    if not model.finite():
        return finish(Status.NONFINITE_JACOBIAN, model)
    linear_solver = opts.linear_solver
    if linear_solver in ("auto", "schur"):     # "schur": the Cholesky step with `schur`
        linear_solver = "sparse_cholesky" if model.sparse else "dense"
    if model.sparse and linear_solver == "dense":
        linear_solver = "sparse_cholesky"

    scaling = model.scaling_diag.copy()
    # MINPACK's start: Gauss-Newton (no damping) within the radius factor * |sqrt(D) x0|
    mu = MIN_DAMPING if opts.initial_damping is None else opts.initial_damping
    top = float(np.max(scaling, initial=0.0))
    dx0 = _norm(np.sqrt(np.maximum(scaling, _EPS * top)) * size_of(x)) if top > 0 \
        else 0.0
    delta = TRUST_RADIUS_FACTOR * dx0 if dx0 > 0 else TRUST_RADIUS_FACTOR
    nu = 2.0
    if opts.verbose:
        log(f"{'iter':>5} {'cost':>14} {'reduction':>11} {'|grad|':>10} {'|step|':>10} "
            f"{'damping':>9} {'ratio':>8}")
        log(f"{0:>5} {cost:>14.8e} {'':>11} {np.max(np.abs(model.g), initial=0.0):>10.3e}")

    while True:
        # on the residuals themselves, not the cost: a robust cost, or the squares of
        # residuals below ~1e-154, can round to 0 while the residuals can still shrink
        if not np.any(r):
            return finish(Status.ZERO_RESIDUAL, model)
        if not np.any(scaling > 0):
            return finish(Status.NO_PARAMS_AFFECT_RESIDUALS, model)
        if model.gradient_cosine() <= opts.gradient_tolerance:
            return finish(Status.GRADIENT_TOLERANCE, model)
        if iterations >= opts.max_iterations:
            return finish(Status.MAX_ITERATIONS, model)

        D = np.maximum(scaling, _EPS * float(np.max(scaling)))
        h = _damped_step(model, model.g, model.f, D, mu, linear_solver)
        mu, h = _fit_radius(model, D, mu, h, delta, linear_solver)
        iterations += 1
        accel_ok = True
        if opts.geodesic_acceleration:
            r_probe = np.asarray(residuals(move(x, FVV_STEP * h)), dtype=float)
            nfev += 1
            a = _acceleration(model, r, r_probe, h, D, mu, linear_solver)
            if a is None:
                accel_ok = False
            else:
                h = h + 0.5 * a
        x_trial = move(x, h)
        r_trial = np.asarray(residuals(x_trial), dtype=float)
        nfev += 1
        cost_trial = loss_cost(opts.loss, r_trial, opts.loss_scale)
        if not math.isfinite(cost_trial):
            cost_trial = math.inf
        predicted = model.predicted_reduction(h)
        actual = cost - cost_trial
        ratio = actual / predicted if predicted > 0 else -math.inf
        sqrt_d = np.sqrt(D)
        scaled_step = _norm(sqrt_d * h)
        scaled_x = _norm(sqrt_d * size_of(x))
        accepted = (accel_ok and math.isfinite(cost_trial) and ratio > MIN_GAIN_RATIO
                    and actual > 0)
        cost_before = cost

        if accepted:
            r_new, J_new = residuals_and_jacobian(x_trial)
            njev += 1
            model_new = _Model(np.asarray(r_new, dtype=float), J_new, opts, schur)
            if model_new.finite() and _evaporates(model.scaling_diag,
                                                  model_new.scaling_diag):
                accepted = False
        if accepted:
            x = x_trial
            r, J = np.asarray(r_new, dtype=float), J_new
            cost = loss_cost(opts.loss, r, opts.loss_scale)
            model = model_new
            if not model.finite():
                return finish(Status.NONFINITE_JACOBIAN, model)
            if ratio >= 0.75:
                delta = max(delta, 2.0 * scaled_step)
            np.maximum(scaling, model.scaling_diag, out=scaling)
            mu = max(MIN_DAMPING, mu * max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3))
            nu = 2.0
        else:
            shrink = RADIUS_SHRINK if actual >= 0 else RADIUS_SHRINK_UPHILL
            delta = shrink * min(delta, 10.0 * scaled_step)
            mu *= nu
            nu *= 2.0

        if opts.verbose:
            mark = "" if accepted else " rejected"
            log(f"{iterations:>5} {cost:>14.8e} {actual:>11.3e} "
                f"{np.max(np.abs(model.g), initial=0.0):>10.3e} "
                f"{_norm(h):>10.3e} {mu:>9.2e} {ratio:>8.3g}{mark}")
        if opts.callback is not None:
            info = IterationInfo(
                iteration=iterations, x=x.copy(), cost=cost,
                grad_norm=float(np.max(np.abs(model.g), initial=0.0)),
                step_norm=_norm(h), damping=mu, gain_ratio=ratio,
                accepted=accepted,
            )
            if opts.callback(info):
                return finish(Status.CALLBACK_STOP, model)

        ftol_ok = (accepted and cost_before > 0
                   and abs(actual) <= opts.cost_tolerance * cost_before
                   and predicted <= opts.cost_tolerance * cost_before)
        xtol_ok = scaled_step <= opts.param_tolerance * (opts.param_tolerance + scaled_x)
        if ftol_ok and xtol_ok:
            return finish(Status.COST_AND_PARAM_TOLERANCE, model)
        if ftol_ok:
            return finish(Status.COST_TOLERANCE, model)
        if xtol_ok:
            return finish(Status.PARAM_TOLERANCE, model)
        if mu > MAX_DAMPING:
            return finish(Status.DAMPING_LIMIT, model)
