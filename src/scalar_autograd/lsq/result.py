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

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalar_autograd.lsq.status import Status

_MAX_DENSE_COVARIANCE = 20_000
"""Largest parameter count for which ``covariance()`` builds the dense n-by-n matrix."""


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
            ``optimality``).
        iterations: trial steps taken (linear solves), accepted or not.
        nfev: residual evaluations (the initial one and every trial step).
        njev: Jacobian evaluations (the initial one and one per accepted step).
        status: why the solver stopped; ``status.value`` is the message.
        time: wall-clock seconds spent in the solver.
        jacobian: the Jacobian at ``x`` (a numpy array, or a ``scipy.sparse`` CSR matrix
            on the sparse path). With a robust loss it is scaled as scipy's ``jac`` so
            that ``J.T @ J`` is the Gauss-Newton Hessian of ``cost``.
        message: ``status.value``.
        success: ``status.success``: the solver converged by one of its tolerances.
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

    @property
    def message(self) -> str:
        """The status message (``status.value``)."""
        return self.status.value

    @property
    def success(self) -> bool:
        """Whether the solver stopped by converging."""
        return self.status.success

    def covariance(self, absolute_sigma: bool = False) -> np.ndarray:
        """Covariance of the fitted parameters, as ``scipy.optimize.curve_fit``'s ``pcov``.

        ``s**2 * pinv(J^T J)`` with ``s**2 = 2 * cost / (m - n)`` the residual variance.
        The pseudo-inverse comes from the SVD of ``J`` and drops singular values below
        ``eps * max(m, n) * s_max`` (as curve_fit), so a rank-deficient fit gives finite
        numbers in the identifiable directions. When ``m <= n`` the variance cannot be
        estimated and every entry is ``inf`` (as curve_fit).

        Args:
            absolute_sigma: if true, the residuals are taken as already divided by
                their known standard deviations and ``s**2`` is not applied
                (curve_fit's ``absolute_sigma=True``).

        Returns:
            An ``(n, n)`` array.

        Raises:
            ValueError: if the result has no Jacobian, or the sparse Jacobian has more
                than 20,000 columns (the dense covariance would not fit in memory).
        """
        J = self.jacobian
        if J is None:
            raise ValueError(
                "covariance() needs the Jacobian at the solution; this result has none"
            )
        m, n = J.shape
        if hasattr(J, "toarray"):
            if n > _MAX_DENSE_COVARIANCE:
                raise ValueError(
                    f"covariance() builds a dense n-by-n matrix; n must be at most "
                    f"{_MAX_DENSE_COVARIANCE} on the sparse path; got n={n}"
                )
            pcov = _pinv_normal_matrix((J.T @ J).toarray(), m)
        else:
            pcov = _pinv_from_svd(np.asarray(J, dtype=float))
        if absolute_sigma:
            return pcov
        if m > n:
            return pcov * (2.0 * self.cost / (m - n))
        return np.full((n, n), np.inf)

    def standard_errors(self, absolute_sigma: bool = False) -> np.ndarray:
        """Square roots of the covariance's diagonal: one standard error per parameter.

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
        return np.sqrt(np.diag(self.covariance(absolute_sigma)))


def _pinv_from_svd(J: np.ndarray) -> np.ndarray:
    _, s, vt = np.linalg.svd(J, full_matrices=False)
    if s.size == 0 or s[0] == 0.0:
        return np.zeros((J.shape[1], J.shape[1]))
    threshold = np.finfo(float).eps * max(J.shape) * s[0]
    keep = s > threshold
    s, vt = s[keep], vt[keep]
    return (vt.T / s**2) @ vt


def _pinv_normal_matrix(A: np.ndarray, m: int) -> np.ndarray:
    w, v = np.linalg.eigh(A)
    if w.size == 0 or w[-1] <= 0.0:
        return np.zeros_like(A)
    # eigenvalues of J^T J are squared singular values of J: same threshold as the SVD
    threshold = (np.finfo(float).eps * max(m, A.shape[0])) ** 2 * w[-1]
    keep = w > threshold
    w, v = w[keep], v[:, keep]
    return (v / w) @ v.T
