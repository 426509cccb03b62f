"""``LeastSquaresResult``: the frozen outcome of a least-squares solve, with covariance.

Example:
    >>> import numpy as np
    >>> from scalar_autograd.lsq.result import LeastSquaresResult
    >>> from scalar_autograd.lsq.status import Status
    >>> J = np.array([[1.0], [1.0], [1.0]])
    >>> res = LeastSquaresResult(x=np.array([2.0]), cost=1.0,
    ...     residuals=np.array([1.0, -1.0, 0.0]), grad_norm=0.0, iterations=1, nfev=2,
    ...     njev=1, status=Status.GRADIENT_TOLERANCE, time=0.0, jacobian=J)
    >>> res.success, round(float(res.covariance()[0, 0]), 12)  # s^2 = 1, (J^T J)^-1 = 1/3
    (True, 0.333333333333)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalar_autograd.lsq.status import Status

_MAX_DENSE_COVARIANCE = 20_000
"""Largest parameter count for which ``covariance()`` builds the dense n-by-n matrix."""
_UNDETERMINED = float(np.finfo(float).eps)
"""A parameter is undetermined when the squared norm of its unit vector's projection on
the numerical null space of J exceeds this (a component above ``sqrt(eps)``, ~1.5e-8;
rounding leaves components of order ``eps`` on determined parameters)."""


class CovarianceWarning(RuntimeWarning):
    """Some or all entries of a least-squares covariance are ``inf``: the data do not
    determine those parameters, or there are too few residuals to estimate the
    variance (scipy's ``OptimizeWarning`` "Covariance of the parameters could not be
    estimated"). A ``RuntimeWarning``, so filters on that category see it too."""


@dataclass(frozen=True)
class LeastSquaresResult:
    """What :func:`scalar_autograd.nonlinear_least_squares` returns.

    Attributes:
        x: the solution (the best point found if the solver gave up), shape ``(n,)``.
        cost: ``0.5 * sum(rho(r_i**2))`` at ``x``; for the default linear loss this is
            ``0.5 * sum(r_i**2)`` (scipy's convention: the residual sum of squares is
            ``2 * cost``).
        residuals: the residual vector at ``x``, shape ``(m,)``.
        grad_norm: infinity norm of the gradient of ``cost`` at ``x`` (scipy's
            ``optimality``); with bounds, of the gradient scaled by the distances to the
            bounds it points at (``|v * g|_inf``, scipy ``trf``'s optimality, 0 at a
            bounded minimum).
        iterations: trial steps taken (linear solves), accepted or not.
        nfev: residual evaluations (the initial one and every trial step).
        njev: Jacobian evaluations (the initial one and one per accepted step).
        status: why the solver stopped; ``status.value`` is the message.
        time: wall-clock seconds spent in the solver.
        jacobian: the Jacobian at ``x`` (a numpy array, or a ``scipy.sparse`` CSR matrix
            on the sparse path). With a robust loss it is scaled as scipy's ``jac`` so
            that ``J.T @ J`` is the Gauss-Newton Hessian of ``cost``.
        active_mask: ``(n,)`` int, scipy's: -1 where ``x`` is at its lower bound, 1 at
            its upper bound, 0 where it is free (all 0 for an unbounded solve). A bound
            is active within ``param_tolerance * max(1, |bound|)`` of it
            (:func:`~scalar_autograd.lsq.trf.find_active_constraints`).
        absolute_sigma: the ``absolute_sigma`` of the solve: the default of
            :meth:`covariance` and :meth:`standard_errors`.
        message: ``status.value``.
        success: ``status.success``: the solver converged by one of its tolerances.

    With ``sigma`` given to the solve, ``cost``, ``residuals`` and ``jacobian`` are
    those of the weighted residuals ``r_i / sigma_i`` (scipy ``curve_fit``'s transform),
    so :meth:`covariance` is curve_fit's ``pcov``.

    ``repr()`` is abridged (status, cost, counts, ``x`` shortened past 8 entries and the
    active bounds); the residuals and the Jacobian are attributes, never printed.
    """

    x: np.ndarray
    cost: float
    residuals: np.ndarray
    grad_norm: float
    iterations: int
    nfev: int
    njev: int
    status: Status
    time: float
    jacobian: Any = field(default=None, repr=False, compare=False)
    active_mask: Any = field(default=None, compare=False)
    absolute_sigma: bool = False

    def __post_init__(self) -> None:
        if self.active_mask is None:
            object.__setattr__(self, "active_mask", np.zeros(np.shape(self.x), dtype=int))

    def __repr__(self) -> str:
        active = np.flatnonzero(self.active_mask)
        bounds = ""
        if active.size:
            shown = ", ".join(f"{j}:{'lower' if self.active_mask[j] < 0 else 'upper'}"
                              for j in active[:8].tolist())
            more = ", ..." if active.size > 8 else ""
            bounds = f", active_bounds=[{shown}{more}]"
        return (f"LeastSquaresResult(success={self.success}, status={self.status.name}, "
                f"cost={self.cost!r}, grad_norm={self.grad_norm!r}, "
                f"iterations={self.iterations}, nfev={self.nfev}, njev={self.njev}, "
                f"m={np.size(self.residuals)}, "
                f"x={np.array2string(np.asarray(self.x), threshold=8)}{bounds})")

    @property
    def message(self) -> str:
        """The status message (``status.value``)."""
        return self.status.value

    @property
    def success(self) -> bool:
        """Whether the solver stopped by converging."""
        return self.status.success

    def covariance(self, absolute_sigma: bool | None = None) -> np.ndarray:
        """Covariance of the fitted parameters, as ``scipy.optimize.curve_fit``'s ``pcov``.

        ``s**2 * pinv(J^T J)`` with ``s**2 = 2 * cost / (m - n)`` the residual variance.
        The pseudo-inverse comes from the SVD of ``J`` and drops singular values below
        ``eps * max(m, n) * s_max``, as curve_fit does (on the sparse path, from the
        eigenvalues of ``J^T J``, dropping those below ``eps * max(m, n) * w_max``: the
        normal matrix cannot resolve singular values below ``sqrt(eps * max(m, n))``
        times the largest).

        Parameters the data do not determine get ``inf``, not the pseudo-inverse's 0
        (which would claim they are known exactly): parameter ``j`` is *undetermined*
        when its unit vector has a component larger than ``sqrt(eps)`` in the numerical
        null space of ``J`` (a column of zeros, or ``p0`` when only ``p0 + p1`` enters
        the residuals). Its row and column of the covariance are ``inf``; the block of
        the determined parameters keeps the pseudo-inverse's values, which are then the
        exact limit of ``(J^T J + eps I)^-1`` as ``eps -> 0``. When ``m <= n`` (and
        ``absolute_sigma`` is false) the variance cannot be estimated and every entry is
        ``inf``, as curve_fit; so it is for a Jacobian that is not finite. Each of these
        cases warns with :class:`CovarianceWarning` (curve_fit warns only when the
        whole matrix is ``inf``, and returns 0 for an undetermined parameter).

        With ``sigma`` given to the solve, ``J`` is the Jacobian of the weighted
        residuals ``r_i / sigma_i`` and ``s**2`` their variance: curve_fit's ``pcov``
        for the same ``sigma`` and ``absolute_sigma``. With bounds, the same formula at
        the bounded solution (curve_fit's rule for its ``trf`` method too).

        Args:
            absolute_sigma: if true, the residuals are taken as already divided by
                their known standard deviations and ``s**2`` is not applied
                (curve_fit's ``absolute_sigma=True``); None (the default): the
                ``absolute_sigma`` the solve was given (false unless set).

        Returns:
            An ``(n, n)`` array.

        Raises:
            ValueError: if the result has no Jacobian, or the sparse Jacobian has more
                than 20,000 columns (the dense covariance would not fit in memory).

        Warns:
            CovarianceWarning: when some or all entries are ``inf`` (see above).

        Example:
            >>> import warnings
            >>> import numpy as np
            >>> from scalar_autograd.lsq.status import Status
            >>> J = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # p1 is used by nothing
            >>> res = LeastSquaresResult(x=np.array([2.0, 5.0]), cost=1.0,
            ...     residuals=np.array([1.0, -1.0, 0.0]), grad_norm=0.0, iterations=1,
            ...     nfev=2, njev=1, status=Status.GRADIENT_TOLERANCE, time=0.0, jacobian=J)
            >>> with warnings.catch_warnings():
            ...     warnings.simplefilter("ignore", CovarianceWarning)
            ...     res.standard_errors().round(6).tolist()
            [0.816497, inf]
        """
        return self._covariance(absolute_sigma, stacklevel=3)

    def _covariance(self, absolute_sigma: bool | None, stacklevel: int) -> np.ndarray:
        if absolute_sigma is None:
            absolute_sigma = self.absolute_sigma
        J = self.jacobian
        if J is None:
            raise ValueError(
                "covariance() needs the Jacobian at the solution; this result has none"
            )
        m, n = J.shape
        sparse = hasattr(J, "toarray")
        if sparse and n > _MAX_DENSE_COVARIANCE:
            raise ValueError(
                f"covariance() builds a dense n-by-n matrix; n must be at most "
                f"{_MAX_DENSE_COVARIANCE} on the sparse path; got n={n}"
            )
        if not np.all(np.isfinite(J.data if sparse else J)):
            warnings.warn("Covariance of the parameters could not be estimated: the "
                          "Jacobian at the solution is not finite; every entry is inf",
                          CovarianceWarning, stacklevel=stacklevel)
            return np.full((n, n), np.inf)
        if sparse:
            pcov, null = _pinv_normal_matrix((J.T @ J).toarray(), m)
        else:
            pcov, null = _pinv_from_svd(np.asarray(J, dtype=float))
        if not absolute_sigma:
            if m <= n:
                warnings.warn(
                    f"Covariance of the parameters could not be estimated: the residual "
                    f"variance needs more residuals than parameters; got m={m} residuals "
                    f"and n={n} parameters; every entry is inf (pass absolute_sigma=True "
                    f"if the residuals are already scaled by their standard deviations)",
                    CovarianceWarning, stacklevel=stacklevel)
                return np.full((n, n), np.inf)
            pcov = pcov * (2.0 * self.cost / (m - n))
        undetermined = np.flatnonzero(np.einsum("ki,ki->i", null, null) > _UNDETERMINED)
        if undetermined.size:
            pcov[undetermined, :] = np.inf
            pcov[:, undetermined] = np.inf
            shown = ", ".join(str(j) for j in undetermined[:10])
            more = f" and {undetermined.size - 10} more" if undetermined.size > 10 else ""
            warnings.warn(
                f"Covariance of the parameters could not be estimated for "
                f"{undetermined.size} of {n} parameters ({shown}{more}): the Jacobian has "
                f"rank {n - null.shape[0]} and the data do not determine them; their rows "
                f"and columns of the covariance are inf",
                CovarianceWarning, stacklevel=stacklevel)
        return pcov

    def standard_errors(self, absolute_sigma: bool | None = None) -> np.ndarray:
        """Square roots of the covariance's diagonal: one standard error per parameter
        (``absolute_sigma`` as :meth:`covariance`).

        Example:
            >>> import numpy as np
            >>> from scalar_autograd.lsq.status import Status
            >>> res = LeastSquaresResult(x=np.array([2.0]), cost=1.0,
            ...     residuals=np.array([1.0, -1.0, 0.0]), grad_norm=0.0, iterations=1,
            ...     nfev=2, njev=1, status=Status.GRADIENT_TOLERANCE, time=0.0,
            ...     jacobian=np.ones((3, 1)))
            >>> res.standard_errors().round(6)
            array([0.57735])
        """
        return np.sqrt(np.diag(self._covariance(absolute_sigma, stacklevel=3)))


def _pinv_from_svd(J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pinv(J^T J), N)``: the pseudo-inverse by the SVD of ``J`` (curve_fit's
    threshold) and the rows of ``N``, an orthonormal basis of ``J``'s numerical null
    space."""
    m, n = J.shape
    # full V only when J is wide: its last n - m rows span part of the null space
    _, s, vt = np.linalg.svd(J, full_matrices=m < n)
    if s.size == 0 or s[0] == 0.0:
        return np.zeros((n, n)), np.eye(n)
    threshold = np.finfo(float).eps * max(m, n) * s[0]
    rank = int(np.count_nonzero(s > threshold))
    s_kept, v_kept = s[:rank], vt[:rank]
    return (v_kept.T / s_kept**2) @ v_kept, vt[rank:]


def _pinv_normal_matrix(A: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``(pinv(A), N)`` for ``A = J^T J`` of an ``(m, n)`` ``J``, by the eigenvectors of
    ``A``; ``N``'s rows span the numerical null space. Eigenvalues of ``A`` carry
    absolute errors of about ``eps * max(m, n) * w_max`` (from forming and from
    ``eigh``), so those below that are taken as zero."""
    n = A.shape[0]
    w, v = np.linalg.eigh(A)
    if w.size == 0 or w[-1] <= 0.0:
        return np.zeros_like(A), np.eye(n)
    threshold = np.finfo(float).eps * max(m, n) * w[-1]
    keep = w > threshold
    w_kept, v_kept = w[keep], v[:, keep]
    return (v_kept / w_kept) @ v_kept.T, v[:, ~keep].T
