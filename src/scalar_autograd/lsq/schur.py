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

The per-row work runs in native kernels compiled for the block shape
(:mod:`scalar_autograd.lsq.schur_native`): ``Z Z^T`` is never formed densely, only the
products of the reduced-column pairs that one eliminated group links are summed (25
times less arithmetic than the dense ``n_R^2 |E|`` on the bundle-adjustment benchmark).
A numpy path (dense ``Z``, BLAS ``syrk``) remains for blocks too wide to unroll.

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
MAX_U_TUPLES = 1000
"""``U`` is summed by one BLAS product per distinct R-column tuple of the E rows (a
camera in bundle adjustment) up to this many tuples, by a sparse product beyond."""
MAX_DENSE_Z = 30_000_000
"""The numpy path forms ``Z = W L`` dense, ``n_R x |E|`` (240 MB at this many entries);
larger problems without native kernels take the generic sparse path."""


class SchurComplement:
    """The elimination of ``eliminated`` columns, for one fixed CSR pattern.

    Layout (built once from the pattern). The rows touching an eliminated group ("E
    rows") each hold one group's ``s`` entries and at most ``k`` entries in R; their
    Jacobian entries are gathered into dense per-row blocks

        a_r = J[r, R-columns of r]   (k,   padded with zeros at a ghost column n_R)
        e_r = J[r, group of r]       (s,)

    sorted once by (group, R-column tuple). Rows with the same group and R columns (a
    bundle-adjustment observation's two rows) form an *F-block* ``b``. Then, with
    ``j(b)`` the block's group and ``c(b)`` its R columns,

        V_j = sum_{r in j} e_r e_r^T                  (s x s, by np.add.reduceat)
        W_b = sum_{r in b} a_r e_r^T                  (k x s, by np.add.reduceat)
        U   = sum_r a_r a_r^T scattered at c x c      (+ J_R^T J_R of the other rows)

    which is all of ``J^T J`` the elimination needs, computed from the rows' own blocks
    (never a generic sparse product) and cached across rejected steps.
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, n: int,
                 group_of_col: np.ndarray, n_groups: int, size: int,
                 use_native: bool = True, rows: _RowRuns | None = None) -> None:
        self.n = n
        self._indptr = indptr
        self._indices = indices
        runs = rows if rows is not None else _RowRuns.of(indptr, indices)
        m = runs.indptr.size - 1
        is_e = group_of_col >= 0
        self.eliminated = np.flatnonzero(is_e)
        self.reduced = np.flatnonzero(~is_e)
        self.size = size
        self.n_groups = n_groups
        # groups renumbered 0..n_groups-1, each group's columns in ascending order
        self.group_cols = np.empty((n_groups, size), dtype=np.int64)
        order = np.lexsort((self.eliminated, group_of_col[self.eliminated]))
        self.group_cols[:] = self.eliminated[order].reshape(n_groups, size)
        offset_in_group = np.full(n, -1, dtype=np.int64)
        offset_in_group[self.group_cols.ravel()] = np.tile(np.arange(size), n_groups)
        r_pos = np.full(n, -1, dtype=np.int64)
        r_pos[self.reduced] = np.arange(self.reduced.size)
        self._build_rows(runs, m, group_of_col, offset_in_group, r_pos)
        self._build_blocks()
        from scalar_autograd.lsq.schur_native import kernels_for

        self._kernels = kernels_for(self.k, size) if use_native else None
        self._numpy_ready = False
        self._cache_key: Any = None
        self._cache: tuple[Any, ...] = ()

    def _build_rows(self, runs: _RowRuns, m: int, group_of_col: np.ndarray,
                    offset_in_group: np.ndarray, r_pos: np.ndarray) -> None:
        """Positions into ``J.data`` of every E row's ``e_r`` and padded ``a_r``, for
        the first row of each run of identical rows (``runs``); the run's other rows
        follow at ``stride`` entries each."""
        indptr, indices = runs.indptr, runs.indices
        nnz = int(self._indptr[-1])
        n_r, s = self.reduced.size, self.size
        row_of = np.repeat(np.arange(m), np.diff(indptr))
        # an entry of the collapsed pattern -> its position in J.data (first row of run)
        full = np.arange(indices.size) + np.repeat(self._indptr[runs.first] - indptr[:-1],
                                                   np.diff(indptr))
        entry_e = group_of_col[indices] >= 0
        e_count = np.bincount(row_of[entry_e], minlength=m)
        e_rows = np.flatnonzero(e_count)
        slot = np.full(m, -1, dtype=np.int64)
        slot[e_rows] = np.arange(e_rows.size)
        sel_e = np.flatnonzero(entry_e)
        e_pos = np.empty((e_rows.size, s), dtype=np.int64)
        e_pos.reshape(-1)[slot[row_of[sel_e]] * s + offset_in_group[indices[sel_e]]] = \
            full[sel_e]
        row_group = group_of_col[self._indices[e_pos[:, 0]]]
        # R entries of E rows, padded to k per row (position nnz reads an appended 0)
        sel_r = np.flatnonzero(~entry_e & (slot[row_of] >= 0))
        r_slot = slot[row_of[sel_r]]
        r_count = np.bincount(r_slot, minlength=e_rows.size)
        k = int(r_count.max()) if e_rows.size else 0
        first = np.cumsum(r_count) - r_count                # each row's first R entry
        flat = r_slot * k + (np.arange(sel_r.size) - first[r_slot])
        a_pos = np.full((e_rows.size, k), nnz, dtype=np.int64)
        a_col = np.full((e_rows.size, k), n_r, dtype=np.int64)
        a_pos.reshape(-1)[flat] = full[sel_r]
        a_col.reshape(-1)[flat] = r_pos[indices[sel_r]]
        # sorted once by (group, R columns): F-blocks are runs of this order
        order = np.argsort((row_group << 32) | ((_tuple_hash(a_col) >> 32) & 0xFFFFFFFF))
        self.k = k
        ae = np.empty((e_rows.size, k + s), dtype=np.int64)          # (rows, k + s)
        ae[:, :k] = a_pos[order]
        ae[:, k:] = e_pos[order]
        self._ae_pos = ae
        self._a_col, self._row_group = a_col[order], row_group[order]
        sorted_rows = e_rows[order]
        self._mult = np.ascontiguousarray(runs.count[sorted_rows], dtype=np.int64)
        self._stride = np.ascontiguousarray(np.diff(indptr)[sorted_rows], dtype=np.int64)
        # J_R's pattern over the rows touching no eliminated column, for their part of U
        self._nnz = nnz
        self._jr_other = None
        if e_rows.size < m:
            full_rows = self._indptr.size - 1
            full_row_of = np.repeat(np.arange(full_rows), np.diff(self._indptr))
            full_e = group_of_col[self._indices] >= 0
            has_e = np.bincount(full_row_of[full_e], minlength=full_rows) > 0
            self._jr_other = _sub_pattern(np.flatnonzero(~full_e & ~has_e[full_row_of]),
                                          full_row_of, self._indices, r_pos, full_rows)

    def _build_blocks(self) -> None:
        """F-block and group boundaries in the sorted E rows, and where each block's
        ``(k, s)`` entries of ``Z`` go in the dense ``(n_R + 1, G s)`` array."""
        n_rows = self._row_group.size
        change = np.ones(n_rows, dtype=bool)
        if n_rows:
            change[1:] = (np.any(self._a_col[1:] != self._a_col[:-1], axis=1)
                          | (self._row_group[1:] != self._row_group[:-1]))
        self._block_start = np.flatnonzero(change)
        self._block_group = self._row_group[self._block_start]
        self._block_cols = self._a_col[self._block_start]             # (nb, k)
        self._group_start = np.flatnonzero(np.diff(self._row_group, prepend=-1) != 0)
        self._present = self._row_group[self._group_start]            # groups with rows
        # blocks are sorted by group: a group's blocks are a run too
        self._group_block_start = np.flatnonzero(np.diff(self._block_group, prepend=-1) != 0)
        self._block_bounds = np.append(self._block_start, n_rows)
        self._run_bounds = np.append(self._group_block_start, self._block_start.size)
        self._block_cols_c = np.ascontiguousarray(self._block_cols, dtype=np.int64)
        self._block_group_c = np.ascontiguousarray(self._block_group, dtype=np.int64)

    def _build_numpy_layout(self) -> None:
        """Gather positions and indicator matrices of the numpy path (built on first
        use: the native kernels need none of them)."""
        if self._numpy_ready:
            return
        # the runs of identical rows, expanded to single rows (all arrays below are
        # per row; the padding position nnz stays put)
        mult = self._mult
        run_of = np.repeat(np.arange(mult.size), mult)
        within_run = np.arange(run_of.size) - np.repeat(np.cumsum(mult) - mult, mult)
        ae_pos = self._ae_pos[run_of]
        ae_pos = np.where(ae_pos == self._nnz, self._nnz,
                          ae_pos + (within_run * self._stride[run_of])[:, None])
        a_col, row_group = self._a_col[run_of], self._row_group[run_of]
        first_row = np.cumsum(mult) - mult
        block_start = first_row[self._block_start]
        n_rows = row_group.size
        # Z is stored transposed, Z^T: (G s) x (n_R + 1), one row per eliminated column,
        # so that writing the blocks (sorted by group) streams through memory
        s, width = self.size, self.reduced.size + 1
        z_pos = ((self._block_group[:, None, None] * s + np.arange(s)[:, None]) * width
                 + self._block_cols[:, None, :]).ravel()               # (nb, s, k)
        # Z's dense buffer is allocated once; only these positions are ever written,
        # so it never needs zeroing again. Two blocks of one group sharing an R column
        # write one position twice: then summed (bincount) over the distinct positions.
        # (Repeats in the ghost row n_R are harmless: its values are all zero.)
        real = self._block_cols < self.reduced.size
        pair = (np.broadcast_to(self._block_group[:, None], real.shape)[real]
                * (self.reduced.size + 1) + self._block_cols[real])
        self._z_shared = bool(np.any(np.bincount(pair) > 1)) if pair.size else False
        self._z_pos = z_pos
        if self._z_shared:
            self._z_pos, self._z_inverse = np.unique(z_pos, return_inverse=True)
        self._z_buffer: np.ndarray | None = None
        # a block's rows in pairs (an odd one out paired with a zero row): the products
        # [a; e] e^T of a pair are one small matmul, summed per block by an indicator
        count = np.diff(np.append(block_start, n_rows))
        pairs = (count + 1) // 2
        pair_first = np.cumsum(pairs) - pairs                 # each block's first pair
        within = np.arange(n_rows) - np.repeat(block_start, count)
        pair_rows = np.full((int(pairs.sum()), 2), n_rows, dtype=np.int64)
        pair_rows[np.repeat(pair_first, count) + within // 2, within % 2] = np.arange(n_rows)
        zero_row = np.full((1, ae_pos.shape[1]), self._nnz)     # reads the 0
        self._pair_pos = np.concatenate([ae_pos, zero_row])[pair_rows]
        self._pair_to_block = _indicator(pair_first, pair_rows.shape[0])
        self._block_to_group = _indicator(self._group_block_start, self._block_start.size)
        # U's E-row part: rows with the same R columns summed by one BLAS product each
        # (one tuple per camera in bundle adjustment), then scattered
        self._u_order = np.argsort(_tuple_hash(a_col), kind="stable")
        tuples = a_col[self._u_order]
        change = np.ones(n_rows, dtype=bool)
        if n_rows:
            change[1:] = np.any(tuples[1:] != tuples[:-1], axis=1)
        self._u_start = np.flatnonzero(change)
        self._u_cols = tuples[self._u_start]
        self._u_pos = ae_pos[self._u_order, : self.k]
        self._numpy_ready = True

    @classmethod
    def detect(cls, indptr: np.ndarray, indices: np.ndarray, n: int
               ) -> SchurComplement | None:
        """The elimination for a CSR pattern, or None when it does not pay (module doc)."""
        m = indptr.size - 1
        nnz = int(indptr[-1])
        if n < 2 or nnz == 0:
            return None
        # rows repeating the previous row's columns (a residual block's several
        # outputs) change nothing below: the pattern is collapsed to one row per run
        runs = _RowRuns.of(indptr, indices)
        full_indptr, full_indices = indptr, indices
        indptr, indices, m = runs.indptr, runs.indices, runs.indptr.size - 1
        row_of = np.repeat(np.arange(m, dtype=np.int64), np.diff(indptr))
        block_of, block_size = _parameter_blocks(indptr, indices, n, row_of)
        if block_of is None:
            return None
        # 2. candidates: small blocks of the most common small size
        small = block_size <= MAX_ELIMINATED_BLOCK
        if not np.any(small):
            return None
        sizes, freq = np.unique(block_size[small], return_counts=True)
        size = int(sizes[np.argmax(freq * sizes)])
        candidate = block_size == size
        chosen = _independent_blocks(candidate, block_of, block_size, indices, row_of, m)
        n_eliminated = int(np.count_nonzero(chosen)) * size
        if n_eliminated * 2 < n or n - n_eliminated > MAX_REDUCED or n_eliminated == n:
            return None
        group_id = np.full(block_size.size, -1, dtype=np.int64)
        group_id[chosen] = np.arange(int(np.count_nonzero(chosen)))
        schur = cls(full_indptr, full_indices, n, group_id[block_of],
                    int(np.count_nonzero(chosen)), size, rows=runs)
        if schur._kernels is None and (n - n_eliminated) * n_eliminated > MAX_DENSE_Z:
            return None           # the numpy path's dense Z would not fit
        return schur

    def matches(self, J: Any) -> bool:
        """Whether ``J`` (CSR) has the pattern this elimination was built for."""
        if J.shape != (self._indptr.size - 1, self.n):
            return False
        return _same_array(J.indptr, self._indptr) and _same_array(J.indices, self._indices)

    def _parts(self, J: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``U`` (dense n_R x n_R), ``V`` (G, s, s) and the F-blocks ``W`` (nb, k, s) of
        ``J^T J`` (class docstring). They do not depend on the damping, so rejected
        steps reuse them."""
        if self._cache_key is not None and self._cache_key is J.data:
            return self._cache
        if self._kernels is not None:
            self._cache_key, self._cache = J.data, self._native_parts(J.data)
            return self._cache
        data = np.append(J.data, 0.0)             # index nnz: the padding's zero
        self._build_numpy_layout()
        X = data[self._pair_pos]                  # (pairs, 2, k + s): rows [a_r, e_r]
        k, s = self.k, self.size
        # per F-block: sum_r [a_r; e_r] e_r^T = [W_b; the block's part of V_j]
        per_pair = np.matmul(X.transpose(0, 2, 1), X[:, :, k:])
        per_block = (self._pair_to_block @ per_pair.reshape(X.shape[0], (k + s) * s)
                     ).reshape(-1, k + s, s)
        W = per_block[:, :k]
        V = np.zeros((self.n_groups, s, s))
        V[self._present] = (self._block_to_group @ per_block[:, k:].reshape(-1, s * s)
                            ).reshape(-1, s, s)
        self._cache_key, self._cache = J.data, (self._u_matrix(data), V, W)
        return self._cache

    def _native_parts(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self._kernels is not None
        n_r, k, s = self.reduced.size, self.k, self.size
        W = np.empty((self._block_start.size, k, s))
        V = np.zeros((self.n_groups, s, s))
        U = np.zeros((n_r + 1, n_r + 1))
        data = np.ascontiguousarray(data, dtype=np.float64)    # padding: position nnz
        self._kernels.parts(self._block_start.size, data, self._ae_pos, self._mult,
                            self._stride, self._block_bounds, self._block_group_c,
                            self._block_cols_c, W, V, U)
        U = U[:n_r, :n_r]
        if self._jr_other is not None:
            U = U + _gram(data, self._jr_other, n_r)
        return np.ascontiguousarray(U), V, W

    def diagonal(self, J: Any) -> np.ndarray:
        """The diagonal of ``J^T J`` (column sums of squares), read off ``U`` and ``V``
        (which the step needs anyway, and which are cached for ``J``)."""
        U, V, _ = self._parts(J)
        d = np.empty(self.n)
        d[self.reduced] = np.diagonal(U)
        d[self.group_cols.ravel()] = np.diagonal(V, axis1=1, axis2=2).ravel()
        return d

    def _u_matrix(self, data: np.ndarray) -> np.ndarray:
        """``U = J_R^T J_R``: per distinct R-column tuple ``c``, ``A_c^T A_c`` over its
        E rows (scattered at ``c x c``), plus a sparse product over the rows without E;
        all by a sparse product when there are more than ``MAX_U_TUPLES`` tuples."""
        n_r = self.reduced.size
        if self._u_cols.shape[0] > MAX_U_TUPLES:        # no such structure: generic
            return _gram(data, self._jr_pattern(), n_r)
        U = np.zeros((n_r + 1, n_r + 1))
        au = data[self._u_pos]                    # the E rows' a_r, by R-column tuple
        bounds = np.append(self._u_start, au.shape[0])
        for t, cols in enumerate(self._u_cols):
            block = au[bounds[t]:bounds[t + 1]]
            U[np.ix_(cols, cols)] += block.T @ block
        U = U[:n_r, :n_r]
        if self._jr_other is not None:
            U = U + _gram(data, self._jr_other, n_r)
        return np.ascontiguousarray(U)

    def _jr_pattern(self) -> tuple[np.ndarray, ...] | None:
        """J_R's pattern over all rows (for the generic ``U``)."""
        m = self._indptr.size - 1
        row_of = np.repeat(np.arange(m), np.diff(self._indptr))
        r_pos = np.full(self.n, -1, dtype=np.int64)
        r_pos[self.reduced] = np.arange(self.reduced.size)
        return _sub_pattern(np.flatnonzero(r_pos[self._indices] >= 0), row_of,
                            self._indices, r_pos, m)

    def _z_matrix(self, W: np.ndarray, L: np.ndarray) -> np.ndarray:
        """``Z^T = (W L)^T`` dense, ``G s x (n_R + 1)`` (the ghost column n_R holds
        zeros): block b's ``(W_b L_j(b))^T`` written at its group's rows and its R
        columns."""
        s = self.size
        # (L_j^T W_b^T): batched small products, numpy's matmul loop beats einsum here
        ZB = np.matmul(L[self._block_group].transpose(0, 2, 1), W.transpose(0, 2, 1)).ravel()
        if self._z_buffer is None:
            self._z_buffer = np.zeros(self.n_groups * s * (self.reduced.size + 1))
        if self._z_shared:
            ZB = np.bincount(self._z_inverse, weights=ZB, minlength=self._z_pos.size)
        self._z_buffer[self._z_pos] = ZB
        return self._z_buffer.reshape(self.n_groups * s, -1)

    def solve(self, J: Any, g: np.ndarray, D: np.ndarray, mu: float) -> np.ndarray | None:
        """``-(J^T J + mu diag(D))^-1 g`` by elimination; None if a factorisation fails
        (the caller then takes the generic sparse path).

        With ``V_j <- V_j + mu D_j``, ``V_j^-1 = L_j L_j^T``, ``Z = W L``:

            S   = U + mu D_R - Z Z^T      (native: only the linked pairs; numpy: syrk)
            rhs = -g_R + sum_b W_b V_j^-1 g_j              (scattered at c(b))
            h_R = S^-1 rhs                                  (dense Cholesky)
            h_j = -V_j^-1 (g_j + sum_{b in j} W_b^T h_R[c(b)])

        The Cholesky factors ``L_j`` are always formed: they also check that every
        damped ``V_j`` is positive definite (else None).
        """
        U, V, W = self._parts(J)
        s, E, R = self.size, self.group_cols, self.reduced
        Vd = V + (mu * D[E])[:, :, None] * np.eye(s)[None]
        try:
            Vinv = np.linalg.inv(Vd)
            L = np.linalg.cholesky(0.5 * (Vinv + np.transpose(Vinv, (0, 2, 1))))
        except np.linalg.LinAlgError:
            return None
        S = U.copy()
        S.flat[:: S.shape[0] + 1] += mu * D[R]
        if self._kernels is not None:
            return self._native_solve(S, W, Vinv, g)
        self._build_numpy_layout()
        Zt = self._z_matrix(W, L)
        S -= (Zt.T @ Zt)[: R.size, : R.size]        # numpy calls BLAS syrk for A^T A
        gE = g[E]                                                  # (G, s)
        VgE = np.einsum("gij,gj->gi", Vinv, gE)
        WVg = np.matmul(W, VgE[self._block_group][:, :, None]).ravel()
        rhs = -g[R] + np.bincount(self._block_cols.ravel(), weights=WVg,
                                  minlength=R.size + 1)[: R.size]
        hR = _solve_reduced(S, rhs)
        if hR is None:
            return None
        hR_ext = np.append(hR, 0.0)
        WthR = np.matmul(hR_ext[self._block_cols][:, None, :], W)[:, 0, :]
        sums = np.zeros((self.n_groups, s))
        if WthR.shape[0]:
            sums[self._block_group[self._group_block_start]] = np.add.reduceat(
                WthR, self._group_block_start, axis=0)
        return self._step(hR, -np.einsum("gij,gj->gi", Vinv, gE + sums))

    def _step(self, hR: np.ndarray, hE: np.ndarray) -> np.ndarray | None:
        """The full step from its reduced and eliminated parts; None if not finite."""
        h = np.empty(self.n)
        h[self.reduced] = hR
        h[self.group_cols.ravel()] = hE.ravel()
        return h if bool(np.all(np.isfinite(h))) else None


    def _native_solve(self, S: np.ndarray, W: np.ndarray, Vinv: np.ndarray, g: np.ndarray
                      ) -> np.ndarray | None:
        """:meth:`solve` from ``S = U + mu D_R`` on by the native kernels: only the
        reduced-column pairs a group links are touched (lsq/schur_native.py)."""
        assert self._kernels is not None
        E, R = self.group_cols, self.reduced
        width = R.size + 1
        gE = np.ascontiguousarray(g[E])
        Vinv = np.ascontiguousarray(Vinv)
        S1, S2 = np.zeros((width, width)), np.zeros((width, width))
        rhs = np.zeros(width)
        self._kernels.reduce(self._run_bounds, self._block_group_c, self._block_cols_c, W,
                             Vinv, gE, S1, S2, rhs)
        # S1 is symmetric up to rounding (T_b W_b^T = W_b V^-1 W_b^T): made exactly so
        S -= (S2 + S2.T + 0.5 * (S1 + S1.T))[: R.size, : R.size]
        hR = _solve_reduced(S, rhs[: R.size] - g[R])
        if hR is None:
            return None
        hE = np.empty((self.n_groups, self.size))
        if self._present.size < self.n_groups:
            hE[:] = -np.einsum("gij,gj->gi", Vinv, gE)
        self._kernels.back(self._run_bounds, self._block_group_c, self._block_cols_c, W, Vinv,
                           gE, np.append(hR, 0.0), hE)
        return self._step(hR, hE)


class _RowRuns:
    """A CSR pattern with each run of consecutive rows that name the same columns
    (in the same order) kept once: ``indptr``/``indices`` of the kept rows, ``first``
    (the run's first row in the full pattern) and ``count`` (its rows)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, first: np.ndarray,
                 count: np.ndarray) -> None:
        self.indptr, self.indices, self.first, self.count = indptr, indices, first, count

    @classmethod
    def of(cls, indptr: np.ndarray, indices: np.ndarray) -> _RowRuns:
        m = indptr.size - 1
        length = np.diff(indptr)
        same_length = np.zeros(m, dtype=bool)
        same_length[1:] = (length[1:] == length[:-1]) & (length[1:] > 0)
        if m > 1 and length[0] > 0 and bool(np.all(same_length[1:])):
            # every row of one length: compare the rows of an (m, L) view
            table = indices.reshape(m, int(length[0]))
            repeat = np.zeros(m, dtype=bool)
            repeat[1:] = np.all(table[1:] == table[:-1], axis=1)
        else:
            # entry p of row r (same length as row r - 1) against the entry one row up
            start = int(indptr[1]) if m > 1 else int(indptr[-1])
            row_of = np.repeat(np.arange(m), length)[start:]
            p = np.arange(start, indices.size)
            up = p - length[row_of]
            differs = ~same_length[row_of] | (indices[p] != indices[np.maximum(up, 0)])
            repeat = same_length & (np.bincount(row_of[differs], minlength=m) == 0)
        keep = ~repeat
        if keep.all():
            return cls(indptr, indices, np.arange(m), np.ones(m, dtype=np.int64))
        first = np.flatnonzero(keep)
        count = np.diff(np.append(first, m))
        kept_length = length[first]
        entry_kept = np.repeat(keep, length)
        return cls(np.concatenate([[0], np.cumsum(kept_length)]), indices[entry_kept], first,
                   count)


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal contents; O(1) when ``a`` is ``b`` or a view of the same memory (scipy wraps
    the assembler's index arrays in views), else compared element by element."""
    if a.dtype == b.dtype and a.shape == b.shape and a.strides == b.strides and (
            a.__array_interface__["data"][0] == b.__array_interface__["data"][0]):
        return True
    return bool(np.array_equal(a, b))


def _solve_reduced(S: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """``S^-1 rhs`` by dense Cholesky. When ``S`` is not numerically positive definite
    (an undamped step on bundle adjustment, whose 7-dimensional gauge freedom makes
    ``J^T J`` singular) the minimum-norm least-squares solution instead, as the dense
    path's ``lstsq`` fallback: a few ms for the reduced camera system, where the
    generic sparse factorisation of the singular full system took ~0.5 s. None only
    for a non-finite ``S``."""
    import scipy.linalg as sla

    try:
        return np.asarray(sla.cho_solve(sla.cho_factor(S, lower=True, check_finite=False),
                                        rhs, check_finite=False))
    except np.linalg.LinAlgError:
        if not np.all(np.isfinite(S)):
            return None
        # singular (an undamped step on a problem with a gauge freedom): the
        # minimum-norm least-squares solution, as the dense path's lstsq fallback
        # (LAPACK's gelsy, a complete orthogonal factorisation: the same minimum-norm
        # solution as the SVD's gelsd, measured 4.7 ms against 11.8 ms at n = 350)
        return np.asarray(sla.lstsq(S, rhs, lapack_driver="gelsy", check_finite=False)[0])


def _sub_pattern(sel: np.ndarray, row_of: np.ndarray, indices: np.ndarray,
                 r_pos: np.ndarray, m: int) -> tuple[np.ndarray, ...] | None:
    """The CSR pattern (entry positions in ``J.data``, R columns, indptr) of the entries
    ``sel`` of J, all in R; None if there are none."""
    if sel.size == 0:
        return None
    counts = np.bincount(row_of[sel], minlength=m)
    return sel, r_pos[indices[sel]], np.concatenate([[0], np.cumsum(counts)])


def _gram(data: np.ndarray, pattern: tuple[np.ndarray, ...] | None, n_r: int) -> np.ndarray:
    """``J_R^T J_R`` (dense) over a :func:`_sub_pattern` of ``J``."""
    import scipy.sparse as sp

    if pattern is None:
        return np.zeros((n_r, n_r))
    sel, cols, ptr = pattern
    JR = sp.csr_matrix((data[sel], cols, ptr), shape=(ptr.size - 1, n_r))
    return np.asarray((JR.T.tocsr() @ JR).toarray())


def _indicator(starts: np.ndarray, n: int) -> Any:
    """The CSR matrix summing runs of ``n`` rows (run i starts at ``starts[i]``):
    ``(P @ X)[i] = X[starts[i]:starts[i + 1]].sum(0)``."""
    import scipy.sparse as sp

    return sp.csr_matrix((np.ones(n), np.arange(n), np.append(starts, n)),
                         shape=(starts.size, n))


def _tuple_hash(cols: np.ndarray) -> np.ndarray:
    """An int64 hash of each row of ``cols`` (equal rows, equal hashes). Only used to
    sort equal rows next to each other: runs are then cut where the rows differ, so a
    collision costs an extra run, never a wrong sum."""
    mult = np.random.default_rng(54321).integers(1, 2**62, size=cols.shape[1])
    with np.errstate(over="ignore"):
        return cols @ mult


def _parameter_blocks(indptr: np.ndarray, indices: np.ndarray, n: int, row_of: np.ndarray
                      ) -> tuple[np.ndarray | None, np.ndarray]:
    """Columns with identical row sets: ``(block_of_column, block_size)``, or
    ``(None, _)`` when a column is empty.

    A random float per row, summed per column (``bincount``: columns with the same rows
    add the same numbers in the same order, so the sums are bitwise equal), groups the
    columns; the grouping is then verified exactly on the CSC pattern (every column's
    row list equals its block's first column's), so a hash collision only costs the
    elimination (None), never a wrong answer.
    """
    import scipy.sparse as sp

    m = indptr.size - 1
    count = np.bincount(indices, minlength=n)
    if np.any(count == 0):
        return None, count
    row_hash = np.random.default_rng(12345).random(m)
    sig = np.bincount(indices, weights=row_hash[row_of], minlength=n)
    order = np.lexsort((count, sig))
    new = np.ones(n, dtype=bool)
    new[1:] = (sig[order][1:] != sig[order][:-1]) | (count[order][1:] != count[order][:-1])
    block_sorted = np.cumsum(new) - 1
    block_of = np.empty(n, dtype=np.int64)
    block_of[order] = block_sorted
    first = order[new]                       # the first column of every block
    block_size = np.bincount(block_of)
    # exact check: column c's sorted rows == those of its block's first column
    csc = sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(m, n)).tocsc()
    csc.sort_indices()
    col_of = np.repeat(np.arange(n), count)
    offset = np.arange(indices.size) - np.repeat(csc.indptr[:-1], count)
    ref = csc.indptr[first[block_of[col_of]]] + offset
    if not np.array_equal(csc.indices, csc.indices[ref]):
        return None, block_size
    return block_of, block_size


def _independent_blocks(candidate: np.ndarray, block_of: np.ndarray,
                        block_size: np.ndarray, indices: np.ndarray, row_of: np.ndarray,
                        m: int) -> np.ndarray:
    """A set of candidate blocks no row touches two of (so ``V`` is block diagonal).

    When no row touches two candidates (bundle adjustment: one point per row) that is
    all of them; otherwise a greedy independent set in the block adjacency graph,
    lowest degree first (Ceres' ordering heuristic).
    """
    import scipy.sparse as sp

    size = int(block_size[candidate][0])
    on_candidate = candidate[block_of[indices]]
    per_row = np.bincount(row_of[on_candidate], minlength=m)
    if np.all(per_row <= size):
        return candidate.copy()
    n_blocks = block_size.size
    upair = np.unique(row_of * n_blocks + block_of[indices])
    inc = sp.csr_matrix((np.ones(upair.size), (upair // n_blocks, upair % n_blocks)),
                        shape=(m, n_blocks))
    adj = (inc.T @ inc).tocsr()
    degree = np.diff(adj.indptr)
    chosen = np.zeros(n_blocks, dtype=bool)
    blocked = ~candidate
    aptr, aidx = adj.indptr, adj.indices
    for b in np.argsort(degree, kind="stable"):
        if blocked[b]:
            continue
        chosen[b] = True
        blocked[aidx[aptr[b]:aptr[b + 1]]] = True
    return chosen
