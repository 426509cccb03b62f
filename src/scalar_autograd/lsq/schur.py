"""Schur-complement elimination of small independent parameter blocks (Ceres' approach).

In bundle adjustment each residual row touches one camera and one point; ``J^T J``
restricted to the points is then block diagonal (3x3 blocks) and the damped normal
equations

    [U  W ] [h_R]     [g_R]
    [W' V ] [h_E] = - [g_E]

can be solved by eliminating the points ``E``: with ``V^-1 = L L^T`` (3x3 blocks,
batched in numpy) and ``Z = W L``,

    S = U - Z Z^T,   S h_R = -g_R + Z (L^T g_E),   h_E = -L L^T (g_E + W^T h_R),

a small dense system in the remaining (camera) parameters ``R``, solved by Cholesky.
This replaces forming the full sparse ``J^T J`` (a generic CSR product) and a sparse LU
of it, which together were the whole cost of an LM iteration on the benchmark.

Detection works on the Jacobian's sparsity pattern alone, so it is automatic:

1. Columns that are touched by exactly the same rows form a *parameter block* (a
   point's X, Y, Z). Found by a hash of each column's row set, then verified exactly:
   every row touching a block touches all its columns.
2. Small blocks (at most :data:`MAX_ELIMINATED_BLOCK` columns, all of one size) are
   candidates; a greedy independent set of them in the block adjacency graph, lowest
   degree first (Ceres' ordering heuristic), is eliminated: no row touches two of
   them, so ``V`` is block diagonal.
3. Elimination is used only when it pays: the eliminated columns are at least half of
   all columns and the reduced system has at most :data:`MAX_REDUCED` columns (its
   dense Cholesky costs ``n_R^3 / 3``). Otherwise the generic sparse path is used.

Example:
    >>> import numpy as np, scipy.sparse as sp
    >>> rows = np.repeat(np.arange(6), 2)          # 3 "points" (cols 1..3), 1 "camera" (col 0)
    >>> cols = np.array([0, 1, 0, 1, 0, 2, 0, 2, 0, 3, 0, 3])
    >>> J = sp.csr_matrix((np.arange(1.0, 13.0), (rows, cols)), shape=(6, 4))
    >>> schur = SchurComplement.detect(J.indptr, J.indices, 4)
    >>> schur.eliminated.tolist(), schur.reduced.tolist()
    ([1, 2, 3], [0])
    >>> g, D = np.ones(4), np.ones(4)
    >>> h = schur.solve(J, g, D, 0.1)
    >>> A = (J.T @ J).toarray() + 0.1 * np.eye(4)
    >>> bool(np.allclose(h, -np.linalg.solve(A, g)))
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_ELIMINATED_BLOCK = 6
"""Largest parameter block eliminated (batched dense inverses of this size)."""
MAX_REDUCED = 3000
"""Largest reduced (dense) system: its Cholesky is ``n^3/3`` flops (9e9 at 3000)."""
MAX_DENSE_Z = 30_000_000
"""``Z = W L`` is formed dense, ``n_R x |E|`` (240 MB at this many entries); larger
problems take the generic sparse path."""


class SchurComplement:
    """The elimination of ``eliminated`` columns, for one fixed CSR pattern."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, n: int,
                 group_of_col: np.ndarray, n_groups: int, size: int) -> None:
        import scipy.sparse as sp

        self.n = n
        self._indptr = indptr
        self._indices = indices
        m = indptr.size - 1
        is_e = group_of_col >= 0
        self.eliminated = np.flatnonzero(is_e)
        self.reduced = np.flatnonzero(~is_e)
        # groups renumbered 0..n_groups-1, each group's columns in ascending order
        self.size = size
        self.n_groups = n_groups
        self.group_cols = np.empty((n_groups, size), dtype=np.int64)
        order = np.lexsort((self.eliminated, group_of_col[self.eliminated]))
        self.group_cols[:] = self.eliminated[order].reshape(n_groups, size)
        # position of each column inside E (ordered by group) and inside R
        e_pos = np.full(n, -1, dtype=np.int64)
        e_pos[self.group_cols.ravel()] = np.arange(n_groups * size)
        r_pos = np.full(n, -1, dtype=np.int64)
        r_pos[self.reduced] = np.arange(self.reduced.size)
        row_of = np.repeat(np.arange(m), np.diff(indptr))
        entry_e = is_e[indices]
        self._sel_e = np.flatnonzero(entry_e)
        self._sel_r = np.flatnonzero(~entry_e)
        # J_E (m x |E|) and J_R (m x n_R) patterns: same entry order as J's data
        counts_e = np.bincount(row_of[self._sel_e], minlength=m)
        counts_r = np.bincount(row_of[self._sel_r], minlength=m)
        self._JE_shape = (m, n_groups * size)
        self._JE_ptr = np.concatenate([[0], np.cumsum(counts_e)])
        self._JE_idx = e_pos[indices[self._sel_e]]
        self._JR_ptr = np.concatenate([[0], np.cumsum(counts_r)])
        self._JR_idx = r_pos[indices[self._sel_r]]
        # rows touching E: each holds one whole group, its columns in ascending order
        self._e_rows_group = group_of_col[indices[self._sel_e][::size]]
        by_group = np.argsort(self._e_rows_group, kind="stable")
        self._by_group = by_group
        starts = np.searchsorted(self._e_rows_group[by_group], np.arange(n_groups))
        self._group_starts = starts
        # every (R entry, E entry) pair within a row: Z = J_R^T (J_E L) is scattered
        # from these products straight into a dense (n_R, |E|) array (repeated
        # camera-point pairs are summed by bincount)
        r_row = row_of[self._sel_r]
        self._pair_r = np.repeat(np.arange(self._sel_r.size), counts_e[r_row])
        # for each R entry, the E entries of its row (contiguous in J_E's order)
        first_e = self._JE_ptr[r_row]
        offs = np.arange(self._pair_r.size) - np.repeat(
            np.cumsum(counts_e[r_row]) - counts_e[r_row], counts_e[r_row])
        self._pair_e = np.repeat(first_e, counts_e[r_row]) + offs
        self._pair_pos = (self._JR_idx[self._pair_r].astype(np.int64) * (n_groups * size)
                          + self._JE_idx[self._pair_e])
        self._z_size = self.reduced.size * n_groups * size
        self._sp = sp
        self._cache_key: Any = None
        self._cache: tuple[Any, ...] = ()

    @classmethod
    def detect(cls, indptr: np.ndarray, indices: np.ndarray, n: int
               ) -> SchurComplement | None:
        """The elimination for a CSR pattern, or None when it does not pay (module doc)."""
        import scipy.sparse as sp

        m = indptr.size - 1
        nnz = int(indptr[-1])
        if n < 2 or nnz == 0:
            return None
        row_of = np.repeat(np.arange(m, dtype=np.int64), np.diff(indptr))
        # 1. parameter blocks: columns with identical row sets (hash, then verified)
        rng = np.random.default_rng(12345)
        row_hash = rng.integers(1, 2**62, size=m, dtype=np.int64).astype(np.uint64)
        sig = np.zeros(n, dtype=np.uint64)
        np.add.at(sig, indices, row_hash[row_of])
        count = np.bincount(indices, minlength=n)
        if np.any(count == 0):
            return None
        keys = np.stack([sig, count.astype(np.uint64)], axis=1)
        _, block_of, block_size = np.unique(keys, axis=0, return_inverse=True,
                                            return_counts=True)
        block_of = block_of.ravel()
        n_blocks = block_size.size
        # verify: every (row, block) pair holds the block's whole size
        pair = row_of * n_blocks + block_of[indices]
        upair, pair_count = np.unique(pair, return_counts=True)
        if np.any(pair_count != block_size[upair % n_blocks]):
            return None
        # 2. candidates: small blocks of the most common small size
        small = block_size <= MAX_ELIMINATED_BLOCK
        if not np.any(small):
            return None
        sizes, freq = np.unique(block_size[small], return_counts=True)
        size = int(sizes[np.argmax(freq * sizes)])
        candidate = block_size == size
        # block adjacency graph (blocks sharing a row), greedy independent set
        inc = sp.csr_matrix((np.ones(upair.size), (upair // n_blocks, upair % n_blocks)),
                            shape=(m, n_blocks))
        adj = (inc.T @ inc).tocsr()
        degree = np.diff(adj.indptr)
        chosen = np.zeros(n_blocks, dtype=bool)
        blocked = ~candidate
        aptr, aidx = adj.indptr, adj.indices
        for b in np.argsort(degree, kind="stable")[: n_blocks]:
            if blocked[b]:
                continue
            chosen[b] = True
            blocked[aidx[aptr[b]:aptr[b + 1]]] = True
        n_eliminated = int(np.count_nonzero(chosen)) * size
        if (n_eliminated * 2 < n or n - n_eliminated > MAX_REDUCED or n_eliminated == n
                or (n - n_eliminated) * n_eliminated > MAX_DENSE_Z):
            return None
        group_id = np.full(n_blocks, -1, dtype=np.int64)
        group_id[chosen] = np.arange(int(np.count_nonzero(chosen)))
        return cls(indptr, indices, n, group_id[block_of], int(np.count_nonzero(chosen)),
                   size)

    def matches(self, J: Any) -> bool:
        """Whether ``J`` (CSR) has the pattern this elimination was built for."""
        if J.indptr is self._indptr and J.indices is self._indices:
            return True
        return (J.shape == (self._indptr.size - 1, self.n)
                and np.array_equal(J.indptr, self._indptr)
                and np.array_equal(J.indices, self._indices))

    def _parts(self, J: Any) -> tuple[Any, ...]:
        """J_R, J_E (CSR), U = J_R^T J_R (dense), V blocks (n_groups, s, s): these do not
        depend on the damping, so rejected steps reuse them."""
        key = id(J.data)
        if self._cache_key is not None and self._cache_key[0] == key \
                and self._cache_key[1] is J.data:
            return self._cache
        sp = self._sp
        data = J.data
        JR = sp.csr_matrix((data[self._sel_r], self._JR_idx, self._JR_ptr),
                           shape=(J.shape[0], self.reduced.size))
        JE = sp.csr_matrix((data[self._sel_e], self._JE_idx, self._JE_ptr),
                           shape=self._JE_shape)
        U = np.asarray((JR.T.tocsr() @ JR).toarray())
        rows_e = data[self._sel_e].reshape(-1, self.size)[self._by_group]
        outer = np.einsum("ri,rj->rij", rows_e, rows_e)
        V = np.zeros((self.n_groups, self.size, self.size))
        present = np.flatnonzero(np.diff(np.append(self._group_starts, outer.shape[0])))
        if outer.shape[0]:
            V[present] = np.add.reduceat(outer, self._group_starts[present], axis=0)
        self._cache_key = (key, J.data)
        self._cache = (JR, JE, U, V)
        return self._cache

    def solve(self, J: Any, g: np.ndarray, D: np.ndarray, mu: float) -> np.ndarray | None:
        """``-(J^T J + mu diag(D))^-1 g`` by elimination; None if a factorisation fails
        (the caller then takes the generic sparse path)."""
        JR, JE, U, V = self._parts(J)
        s, G = self.size, self.n_groups
        E, R = self.group_cols, self.reduced
        Vd = V + (mu * D[E])[:, :, None] * np.eye(s)[None]
        try:
            Vinv = np.linalg.inv(Vd)
            L = np.linalg.cholesky(0.5 * (Vinv + np.transpose(Vinv, (0, 2, 1))))
        except np.linalg.LinAlgError:
            return None
        # J_E L: each E row's s entries times its group's L
        rows_e = JE.data.reshape(-1, s)
        group = self._e_rows_group
        JEL = self._sp.csr_matrix((np.einsum("ri,rij->rj", rows_e, L[group]).ravel(),
                                   JE.indices, JE.indptr), shape=JE.shape)
        Z = np.bincount(self._pair_pos, weights=JR.data[self._pair_r] * JEL.data[self._pair_e],
                        minlength=self._z_size).reshape(R.size, G * s)
        S = U.copy()
        S.flat[:: S.shape[0] + 1] += mu * D[R]
        S -= Z @ Z.T
        gE = g[E]                                           # (G, s)
        LtgE = np.einsum("gji,gj->gi", L, gE).ravel()
        rhs = -g[R] + Z @ LtgE
        try:
            from scipy.linalg import cho_factor, cho_solve

            hR = cho_solve(cho_factor(S, lower=True, check_finite=False), rhs,
                           check_finite=False)
        except np.linalg.LinAlgError:
            return None
        WthR = np.asarray(JE.T @ (JR @ hR)).reshape(G, s)
        hE = -np.einsum("gij,gj->gi", Vinv, gE + WthR)
        h = np.empty(self.n)
        h[R] = hR
        h[E.ravel()] = hE.ravel()
        if not np.all(np.isfinite(h)):
            return None
        return h
