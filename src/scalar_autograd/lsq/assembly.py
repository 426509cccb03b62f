"""Scatter per-row residuals and Jacobian blocks of compiled kernels into r and J.

A :class:`KernelBlock` is one compiled residual function evaluated over N rows in one
native call (``batch_jacobian``): row ``i`` reads the parameters ``x[param_index[i]]``
and the data ``data[i]`` and yields ``m_b`` residuals, written to the global rows
``rows[i]``. :class:`Assembler` owns the blocks of a problem and builds the global
residual vector and the Jacobian, dense or ``scipy.sparse`` CSR, whose sparsity
pattern (with repeated (row, column) entries summed) is computed once.

The usual dense layout needs no scatter at all: when a block's residuals are numbered
consecutively in row order (as :class:`~scalar_autograd.lsq.problem.LeastSquaresProblem`
numbers them) and all its rows name the same distinct columns (a model fitted to N data
points), its kernel output is a slab of J: ``J[start:stop, columns] = J_kernel`` with
``J_kernel`` the ``(N * m_b, k)`` reshape of the kernel's ``(N, m_b, k)`` output. A
single such block covering all of r with the columns ``0 .. n-1`` in order (the circle
fit of ``benchmarks/bench_lsq.py``) *is* J, returned as it stands.

Whether J is dense or CSR is one decision for every front end (:func:`sparse_for`,
:func:`choose_sparse`): the residual blocks of a
:class:`~scalar_autograd.lsq.problem.LeastSquaresProblem` and the residual groups of a
traced ``residual_fn`` (:mod:`scalar_autograd.lsq.compiled_oracle`) are both kernel
blocks assembled here.

Example:
    >>> import numpy as np
    >>> import scalar_autograd as sa
    >>> a, b = sa.Value(0.0), sa.Value(0.0)
    >>> t = sa.Value(0.0)
    >>> f = sa.compile([a * t - b], [a, b], inputs=[t])
    >>> block = KernelBlock(f, rows=np.array([[0], [1]]), param_index=np.array([[0, 1], [0, 1]]),
    ...                     data=np.array([[1.0], [2.0]]))
    >>> asm = Assembler([block], m=2, n=2, sparse=False)
    >>> r, J = asm.residuals_and_jacobian(np.array([3.0, 1.0]))
    >>> r.tolist(), J.tolist()
    ([2.0, 5.0], [[1.0, -1.0], [2.0, -1.0]])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SPARSE_MIN_PARAMS = 200
"""``linear_solver="auto"`` uses the sparse path from this many parameters on ..."""
SPARSE_MAX_DENSITY = 0.05
"""... when the Jacobian has at most this fraction of non-zero entries (see
:func:`choose_sparse`)."""
CSR_SOLVERS = ("sparse_cholesky", "sparse_lsmr", "schur")
"""The linear solvers that take a CSR Jacobian whatever its size."""


def choose_sparse(n: int, density: float) -> bool:
    """Whether ``linear_solver="auto"`` takes the sparse path.

    Measured with ``benchmarks/bench_lsq.py --only crossover`` (bundle-adjustment
    blocks, 10 parameters a row, one LM iteration, single-threaded BLAS): 74 params
    dense 0.38 ms / sparse 0.74 ms, 141 params 0.82 / 1.19, 298 params 3.5 / 1.6,
    642 params 24 / 2.9, 2470 params 1032 / 10. Dense wins below ~150 parameters (no
    CSR bookkeeping, one BLAS call), sparse from ~200 on, and the gap then grows as
    n^3 against roughly n; a dense Jacobian with more than 5% non-zeros stays dense.
    """
    return n >= SPARSE_MIN_PARAMS and density <= SPARSE_MAX_DENSITY


def sparse_for(linear_solver: str) -> bool | None:
    """The Jacobian kind a linear solver asks for: False (dense) for ``"dense"``, True
    (CSR) for the sparse solvers and ``"schur"``, None for ``"auto"`` (decided by
    :func:`choose_sparse` from the pattern, see :meth:`Assembler.of`)."""
    if linear_solver == "dense":
        return False
    if linear_solver in CSR_SOLVERS:
        return True
    return None


@dataclass
class KernelBlock:
    """One compiled residual function over N rows.

    Attributes:
        function: a CompiledFunction with ``k`` params and ``d`` inputs and ``m_b``
            outputs (``batch_values`` / ``batch_jacobian``).
        rows: ``(N, m_b)`` int array: the global residual index of each output.
        param_index: ``(N, k)`` int array into the flat parameter vector.
        data: ``(N, d)`` float array of the per-row inputs.
        shared_columns: ``(k,)`` the one column list every row of ``param_index``
            names, or None when the rows differ (set on construction).
    """

    function: Any
    rows: np.ndarray
    param_index: np.ndarray
    data: np.ndarray
    shared_columns: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        index = self.param_index
        # every row equal to the one before it (one flat compare, no broadcasting)
        if index.shape[0] and np.array_equal(index[1:], index[:-1]):
            self.shared_columns = index[0].copy()

    def parameters(self, x: np.ndarray) -> np.ndarray:
        """``x[param_index]``, the ``(N, k)`` parameter rows the kernel reads."""
        if self.shared_columns is None:
            return x[self.param_index]
        # one row repeated: about twice as fast as the gather
        return np.repeat(x[self.shared_columns][None, :], self.param_index.shape[0], axis=0)

    def values(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.function.batch_values(self.parameters(x), self.data))

    def values_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        V, J = self.function.batch_jacobian(self.parameters(x), self.data)
        return np.asarray(V), np.asarray(J)


def _first_row(rows: np.ndarray) -> int | None:
    """``s`` when ``rows`` numbers its residuals ``s, s+1, ...`` in row-major order,
    else None."""
    if rows.size == 0:
        return None
    start = int(rows.flat[0])
    if np.array_equal(rows.ravel(), np.arange(start, start + rows.size)):
        return start
    return None


@dataclass(frozen=True)
class _Slab:
    """Where a block's kernel output lands in a dense J: ``J[start:stop, columns]``."""

    start: int
    stop: int
    columns: np.ndarray


def _dense_slabs(blocks: list[KernelBlock], first_rows: list[int | None],
                 m: int) -> list[_Slab] | None:
    """One :class:`_Slab` per block when every block has consecutive rows and shared,
    distinct columns and no two blocks share a row (no entry is then summed); else
    None."""
    slabs = []
    for b, start in zip(blocks, first_rows):
        columns = b.shared_columns
        if start is None or columns is None or np.unique(columns).size != columns.size:
            return None
        slabs.append(_Slab(start, start + b.rows.size, columns))
    by_start = sorted(slabs, key=lambda slab: slab.start)
    for before, after in zip(by_start, by_start[1:]):
        if after.start < before.stop:
            return None
    if by_start and (by_start[0].start < 0 or by_start[-1].stop > m):
        return None
    return slabs


class Assembler:
    """Global residuals and Jacobian from kernel blocks (dense or CSR).

    Attributes:
        m, n: residuals and parameters.
        sparse: whether the Jacobian is CSR.
        columns_used: ``(n,)`` bool, the parameters some block reads.
        rows_with_params: ``(m,)`` bool, the residuals of blocks that read a parameter.
    """

    @classmethod
    def of(cls, blocks: list[KernelBlock], m: int, n: int, sparse: bool | None
           ) -> Assembler:
        """The assembler of ``blocks``; ``sparse=None`` chooses the Jacobian kind by
        :func:`choose_sparse` from the number of parameters and the pattern's density."""
        if sparse is None:
            nnz = sum(b.rows.size * b.param_index.shape[1] for b in blocks)
            sparse = choose_sparse(n, nnz / max(1, m * n))
        return cls(blocks, m, n, sparse)

    def __init__(self, blocks: list[KernelBlock], m: int, n: int, sparse: bool) -> None:
        self.blocks = blocks
        self.m = m
        self.n = n
        self.sparse = sparse
        # blocks whose residuals are consecutive rows: r[start:stop] = V, no scatter
        self._first_rows = [_first_row(b.rows) for b in blocks]
        self._positions: np.ndarray | None = None
        self._positions_identity = False
        self.columns_used = np.zeros(n, dtype=bool)
        self.rows_with_params = np.zeros(m, dtype=bool)
        self._slabs = None if sparse else _dense_slabs(blocks, self._first_rows, m)
        self._identity = False
        if self._slabs is not None:
            for slab in self._slabs:
                self.columns_used[slab.columns] = True
                # a kernel of no parameter (constant residuals) reads no column
                self.rows_with_params[slab.start:slab.stop] = slab.columns.size > 0
            # one block that is all of J, columns in order: the kernel output is J
            self._identity = len(self._slabs) == 1 and self._slabs[0].start == 0 \
                and self._slabs[0].stop == m and np.array_equal(self._slabs[0].columns,
                                                                np.arange(n))
            return
        if sparse and self._direct_csr_pattern():
            for b in blocks:
                self.columns_used[b.param_index.ravel()] = True
                self.rows_with_params[b.rows.ravel()] = b.param_index.shape[1] > 0
            return
        # raw entries, block after block: global row and column of every J entry
        raw_rows, raw_cols = [], []
        for b in blocks:
            N, mb = b.rows.shape
            k = b.param_index.shape[1]
            raw_rows.append(np.broadcast_to(b.rows[:, :, None], (N, mb, k)).ravel())
            raw_cols.append(np.broadcast_to(b.param_index[:, None, :], (N, mb, k)).ravel())
        rows = np.concatenate(raw_rows) if raw_rows else np.zeros(0, dtype=np.int64)
        cols = np.concatenate(raw_cols) if raw_cols else np.zeros(0, dtype=np.int64)

        def raw_keys() -> np.ndarray:      # row-major flat index of every raw entry
            return rows.astype(np.int64) * n + cols.astype(np.int64)

        if sparse:                          # rows repeated or a column twice in a row
            unique, self._inverse = np.unique(raw_keys(), return_inverse=True)
            self._indices = (unique % n).astype(np.int32 if n < 2**31 else np.int64)
            counts = np.bincount(unique // n, minlength=m)
            self._indptr = np.concatenate([[0], np.cumsum(counts)])
            self._nnz = unique.size
        else:
            self._keys = keys = raw_keys()
            # no (row, column) repeated: a plain scatter instead of a summing bincount
            ordered = np.sort(keys)
            self._unique_keys = not bool(np.any(ordered[1:] == ordered[:-1]))
        self.columns_used[cols] = True
        self.rows_with_params[rows] = True

    def _direct_csr_pattern(self) -> bool:
        """CSR pattern without a global sort, when every residual row is produced once
        and no row names a column twice (the usual case): each raw entry then has its
        own slot, found by sorting the k columns of each row. Returns False otherwise."""
        m, n = self.m, self.n
        row_length = np.zeros(m, dtype=np.int64)
        seen = np.zeros(m, dtype=np.int64)
        for b in self.blocks:
            seen += np.bincount(b.rows.ravel(), minlength=m)
            row_length[b.rows.ravel()] = b.param_index.shape[1]
        if np.any(seen != 1):
            return False
        indptr = np.concatenate([[0], np.cumsum(row_length)])
        # one index dtype for both arrays, so scipy wraps them without converting
        index_type = np.int32 if max(n, int(indptr[-1])) < 2**31 else np.int64
        indptr = indptr.astype(index_type)
        indices = np.empty(int(indptr[-1]), dtype=index_type)
        positions = []
        filled = 0          # blocks so far all in CSR order: their entries fill [0, filled)
        for b, start in zip(self.blocks, self._first_rows):
            N, mb = b.rows.shape
            k = b.param_index.shape[1]
            cols = np.broadcast_to(b.param_index[:, None, :], (N, mb, k))
            pi = b.param_index
            if k < 2 or bool(np.all(pi[:, 1:] > pi[:, :-1])):
                if start is not None and filled >= 0 and int(indptr[start]) == filled:
                    # consecutive rows, sorted columns: the output is a slice of data
                    indices[filled:filled + cols.size] = cols.reshape(-1)
                    positions.append((filled, filled + cols.size))
                    filled += cols.size
                    continue
                rank = np.arange(k)[None, :]         # each row's columns already sorted
            else:
                order = np.argsort(pi, axis=1, kind="stable")
                sorted_cols = np.take_along_axis(pi, order, axis=1)
                if np.any(sorted_cols[:, 1:] == sorted_cols[:, :-1]):
                    return False
                rank = np.empty_like(order)
                np.put_along_axis(rank, order, np.arange(k)[None, :], axis=1)
                rank = np.repeat(rank, mb, axis=0)
            filled = -1
            pos = indptr[b.rows.ravel()][:, None] + rank
            indices[pos.ravel()] = cols.reshape(N * mb, k).ravel()
            positions.append(pos.ravel())
        # rows in order with their columns already sorted (one block, as bundle
        # adjustment's): the kernels' output is CSR's data array as it stands
        self._positions_identity = filled == int(indptr[-1])
        if not self._positions_identity:
            self._positions = np.concatenate(
                [np.arange(*p) if isinstance(p, tuple) else p for p in positions]
                or [np.zeros(0, np.int64)])
        self._indices = indices
        self._indptr = indptr
        self._nnz = int(indptr[-1])
        return True

    @property
    def constant_rows(self) -> list[int]:
        """Residuals that depend on no parameter."""
        return np.flatnonzero(~self.rows_with_params).tolist()  # type: ignore[no-any-return]

    def schur_complement(self) -> Any:
        """A :class:`~scalar_autograd.lsq.schur.SchurComplement` for the sparse pattern,
        or None (dense Jacobian, or no structure worth eliminating)."""
        if not self.sparse:
            return None
        from scalar_autograd.lsq.schur import SchurComplement

        return SchurComplement.detect(self._indptr, self._indices, self.n)

    def _place(self, r: np.ndarray, b: KernelBlock, start: int | None,
               V: np.ndarray) -> None:
        if start is None:
            r[b.rows.ravel()] = V.ravel()
        else:
            r[start:start + V.size] = V.ravel()

    def residuals(self, x: np.ndarray) -> np.ndarray:
        if self._identity:
            return np.asarray(self.blocks[0].values(x), dtype=float).ravel()
        r = np.empty(self.m)
        for b, start in zip(self.blocks, self._first_rows):
            self._place(r, b, start, b.values(x))
        return r

    def residuals_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        if self._slabs is not None:
            return self._slab_residuals_and_jacobian(x, self._slabs)
        r = np.empty(self.m)
        parts = []
        for b, start in zip(self.blocks, self._first_rows):
            V, J = b.values_and_jacobian(x)
            self._place(r, b, start, V)
            parts.append(J.ravel())
        values = parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts
                                                     else np.zeros(0))
        if self.sparse:
            import scipy.sparse as sp

            if self._positions_identity:
                data = values
            elif self._positions is not None:
                data = np.empty(self._nnz)
                data[self._positions] = values
            else:
                data = np.bincount(self._inverse, weights=values, minlength=self._nnz)
            J = sp.csr_matrix((data, self._indices, self._indptr), shape=(self.m, self.n))
            return r, J
        flat: np.ndarray
        if self._unique_keys:
            flat = np.zeros(self.m * self.n)
            flat[self._keys] = values
        else:
            flat = np.bincount(self._keys, weights=values, minlength=self.m * self.n)
        return r, flat.reshape(self.m, self.n)

    def _slab_residuals_and_jacobian(self, x: np.ndarray, slabs: list[_Slab]
                                     ) -> tuple[np.ndarray, np.ndarray]:
        """r and dense J when every block is a slab (see the module docstring)."""
        if self._identity:
            V, J = self.blocks[0].values_and_jacobian(x)
            return (np.asarray(V, dtype=float).ravel(),
                    np.asarray(J, dtype=float).reshape(self.m, self.n))
        r = np.empty(self.m)
        jac = np.zeros((self.m, self.n))
        for b, slab in zip(self.blocks, slabs):
            V, J = b.values_and_jacobian(x)
            r[slab.start:slab.stop] = V.ravel()
            # rows given explicitly: a residual that depends on no parameter has a
            # kernel of 0 params, whose (N, m_b, 0) output cannot infer them from -1
            jac[slab.start:slab.stop, slab.columns] = J.reshape(slab.stop - slab.start,
                                                                slab.columns.size)
        return r, jac
