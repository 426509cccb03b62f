"""The damped Gauss-Newton step: solve (J^T J + mu D) h = -J^T f, dense or sparse.

Dense: Cholesky of the damped normal matrix; if it is not positive definite (or the
factor gives a non-finite step), a rank-revealing least-squares solve of the augmented
system ``[J; sqrt(mu D)] h = [-f; 0]`` (LAPACK ``gelsd``, an SVD) takes over.

Sparse (``scipy.sparse`` CSR Jacobian): the normal equations through a sparse Cholesky
(scikit-sparse's CHOLMOD when it is importable, otherwise SuperLU via
``scipy.sparse.linalg.splu`` with a symmetric ordering), or LSMR on the augmented
system in the variables ``y = sqrt(D) h``. Normal equations are the default: on the
bundle-adjustment benchmark (30,300 parameters) a SuperLU factorisation took a
fraction of the time LSMR needed to reach a step accurate enough for LM to keep its
quadratic convergence near the solution (``benchmarks/bench_lsq.py``).

Example:
    >>> import numpy as np
    >>> J = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    >>> f = np.array([1.0, 2.0, 3.0])
    >>> h = solve_dense(J.T @ J, J.T @ f, np.diag(J.T @ J), 0.0, J, f)
    >>> np.allclose(h, -np.linalg.lstsq(J, f, rcond=None)[0])
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

SPARSE_SOLVERS = ("sparse_cholesky", "sparse_lsmr")


def solve_dense(
    A: np.ndarray, g: np.ndarray, D: np.ndarray, mu: float, J: np.ndarray, f: np.ndarray
) -> np.ndarray:
    """The step ``h`` minimising ``||f + J h||^2 + mu * h^T diag(D) h``.

    Args:
        A: ``J^T J`` (n, n).
        g: ``J^T f`` (n,).
        D: the Marquardt scaling, positive (n,).
        mu: the damping, >= 0.
        J: the Jacobian (m, n), used only by the fallback.
        f: the residuals (m,), used only by the fallback.
    """
    M = A.copy()
    M.flat[:: M.shape[0] + 1] += mu * D
    try:
        L = np.linalg.cholesky(M)
        y = _forward_substitution(L, -g)
        h = _back_substitution(L, y)
        if np.all(np.isfinite(h)):
            return h
    except np.linalg.LinAlgError:
        pass
    return _augmented_lstsq(J, f, D, mu)


def _forward_substitution(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        from scipy.linalg import solve_triangular
    except ImportError:  # numpy-only install: an LU solve of a triangular matrix
        return np.linalg.solve(L, b)
    return solve_triangular(L, b, lower=True, check_finite=False)


def _back_substitution(L: np.ndarray, y: np.ndarray) -> np.ndarray:
    try:
        from scipy.linalg import solve_triangular
    except ImportError:
        return np.linalg.solve(L.T, y)
    return solve_triangular(L, y, lower=True, trans="T", check_finite=False)


def _augmented_lstsq(J: Any, f: np.ndarray, D: np.ndarray, mu: float) -> np.ndarray:
    if hasattr(J, "toarray"):
        J = J.toarray()
    n = J.shape[1]
    aug = np.vstack([J, np.diag(np.sqrt(mu * D))])
    rhs = np.concatenate([-f, np.zeros(n)])
    h, *_ = np.linalg.lstsq(aug, rhs, rcond=None)
    return np.asarray(h)


def import_scipy_sparse() -> Any:
    """``scipy.sparse``, or an ImportError naming the extra that provides it."""
    try:
        import scipy.sparse
        import scipy.sparse.linalg  # noqa: F401
    except ImportError as exc:  # pragma: no cover - scipy is a test dependency
        raise ImportError(
            "the sparse least-squares path needs scipy; install it with "
            "`pip install scalar-autograd[test]` or `pip install scipy`, or pass "
            "linear_solver=\"dense\""
        ) from exc
    return scipy.sparse


def have_cholmod() -> bool:
    """Whether scikit-sparse's CHOLMOD is importable."""
    try:
        import sksparse.cholmod  # noqa: F401
    except ImportError:
        return False
    return True


def solve_sparse(
    A: Any, g: np.ndarray, D: np.ndarray, mu: float, J: Any, f: np.ndarray, method: str
) -> np.ndarray:
    """The damped step for a ``scipy.sparse`` Jacobian.

    Args:
        A: ``J^T J`` as a sparse matrix (used by ``"sparse_cholesky"``).
        g, D, mu, J, f: as :func:`solve_dense`; ``J`` is sparse.
        method: ``"sparse_cholesky"`` (normal equations; CHOLMOD if available, else
            SuperLU) or ``"sparse_lsmr"`` (LSMR on the augmented system).
    """
    sp = import_scipy_sparse()
    if method == "sparse_cholesky":
        h = _sparse_cholesky_solve(_damped_csc(A, mu * D, sp), -g)
        if h is not None and np.all(np.isfinite(h)):
            return h
    return _lsmr_step(J, f, D, mu)


def _damped_csc(A: Any, diagonal: np.ndarray, sp: Any) -> Any:
    """``A + diag(diagonal)`` as CSC, for symmetric CSR ``A`` (whose CSR arrays are its
    CSC arrays), adding in place on the stored diagonal when every one is stored."""
    A = A.tocsr()
    n = A.shape[0]
    rows = np.repeat(np.arange(n), np.diff(A.indptr))
    on_diag = np.flatnonzero(A.indices == rows)
    if on_diag.size != n:
        return (A + sp.diags(diagonal)).tocsc()
    data = A.data.copy()
    data[on_diag] += diagonal[rows[on_diag]]
    # the index arrays are copied too: the factorisation may sort the new matrix's
    # indices in place, which on shared arrays would scramble A (a CSR product's
    # indices are not sorted) and corrupt every later solve with it
    return sp.csc_matrix((data, A.indices.copy(), A.indptr.copy()), shape=A.shape)


def _sparse_cholesky_solve(M: Any, b: np.ndarray) -> np.ndarray | None:
    import scipy.sparse.linalg as spla

    if have_cholmod():  # pragma: no cover - scikit-sparse is optional
        from sksparse.cholmod import CholmodNotPositiveDefiniteError, cholesky

        try:
            return np.asarray(cholesky(M)(b))
        except CholmodNotPositiveDefiniteError:
            return None
    try:
        lu = spla.splu(M, permc_spec="COLAMD", diag_pivot_thresh=0.0,
                       options={"SymmetricMode": True})
    except RuntimeError:  # exactly singular
        return None
    return np.asarray(lu.solve(b))


def _lsmr_step(J: Any, f: np.ndarray, D: np.ndarray, mu: float) -> np.ndarray:
    """Solve min ||J h + f||^2 + mu ||sqrt(D) h||^2 by LSMR in y = sqrt(D) h."""
    import scipy.sparse.linalg as spla

    sp = import_scipy_sparse()
    inv_sqrt_d = 1.0 / np.sqrt(D)
    Jy = sp.csr_matrix(J) @ sp.diags(inv_sqrt_d)
    y = spla.lsmr(Jy, -f, damp=np.sqrt(mu), atol=1e-12, btol=1e-12, maxiter=10 * Jy.shape[1])[0]
    return np.asarray(y * inv_sqrt_d)
