"""Scatter per-row residuals and Jacobian blocks of compiled kernels into r and J.

A :class:`KernelBlock` is one compiled residual function evaluated over N rows in one
native call (``batch_jacobian``): row ``i`` reads the parameters ``x[param_index[i]]``
and the data ``data[i]`` and yields ``m_b`` residuals, written to the global rows
``rows[i]``. :class:`Assembler` owns the blocks of a problem and builds the global
residual vector and the Jacobian, dense or ``scipy.sparse`` CSR, whose sparsity
pattern (with repeated (row, column) entries summed) is computed once.

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

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class KernelBlock:
    """One compiled residual function over N rows.

    Attributes:
        function: a CompiledFunction with ``k`` params and ``d`` inputs and ``m_b``
            outputs (``batch_values`` / ``batch_jacobian``).
        rows: ``(N, m_b)`` int array: the global residual index of each output.
        param_index: ``(N, k)`` int array into the flat parameter vector.
        data: ``(N, d)`` float array of the per-row inputs.
    """

    function: Any
    rows: np.ndarray
    param_index: np.ndarray
    data: np.ndarray

    def values(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.function.batch_values(x[self.param_index], self.data))

    def values_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        V, J = self.function.batch_jacobian(x[self.param_index], self.data)
        return np.asarray(V), np.asarray(J)


class Assembler:
    """Global residuals and Jacobian from kernel blocks (dense or CSR)."""

    def __init__(self, blocks: list[KernelBlock], m: int, n: int, sparse: bool) -> None:
        self.blocks = blocks
        self.m = m
        self.n = n
        self.sparse = sparse
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

        self._positions: np.ndarray | None = None
        self._positions_identity = False
        if sparse:
            if not self._direct_csr_pattern():
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
        self.columns_used = np.zeros(n, dtype=bool)
        self.columns_used[cols] = True
        self.rows_with_params = np.zeros(m, dtype=bool)
        self.rows_with_params[rows] = True

    def _direct_csr_pattern(self) -> bool:
        """CSR pattern without a global sort, when every residual row is produced once
        and no row names a column twice (the usual case): each raw entry then has its
        own slot, found by sorting the k columns of each row. Returns False otherwise."""
        m, n = self.m, self.n
        row_length = np.zeros(m, dtype=np.int64)
        seen = np.zeros(m, dtype=np.int64)
        for b in self.blocks:
            np.add.at(seen, b.rows.ravel(), 1)
            row_length[b.rows.ravel()] = b.param_index.shape[1]
        if np.any(seen != 1):
            return False
        indptr = np.concatenate([[0], np.cumsum(row_length)])
        indices = np.empty(int(indptr[-1]), dtype=np.int32 if n < 2**31 else np.int64)
        positions = []
        for b in self.blocks:
            N, mb = b.rows.shape
            k = b.param_index.shape[1]
            cols = np.broadcast_to(b.param_index[:, None, :], (N, mb, k)).reshape(N * mb, k)
            pi = b.param_index
            if k < 2 or bool(np.all(pi[:, 1:] > pi[:, :-1])):
                rank = np.arange(k)[None, :]         # each row's columns already sorted
            else:
                order = np.argsort(pi, axis=1, kind="stable")
                sorted_cols = np.take_along_axis(pi, order, axis=1)
                if np.any(sorted_cols[:, 1:] == sorted_cols[:, :-1]):
                    return False
                rank = np.empty_like(order)
                np.put_along_axis(rank, order, np.arange(k)[None, :], axis=1)
                rank = np.repeat(rank, mb, axis=0)
            pos = indptr[b.rows.ravel()][:, None] + rank
            indices[pos.ravel()] = cols.ravel()
            positions.append(pos.ravel())
        self._positions = np.concatenate(positions) if positions else np.zeros(0, np.int64)
        # rows in order with their columns already sorted (one block, as bundle
        # adjustment's): the kernels' output is CSR's data array as it stands
        self._positions_identity = bool(np.array_equal(self._positions,
                                                       np.arange(self._positions.size)))
        self._indices = indices
        self._indptr = indptr
        self._nnz = int(indptr[-1])
        return True

    def schur_complement(self) -> Any:
        """A :class:`~scalar_autograd.lsq.schur.SchurComplement` for the sparse pattern,
        or None (dense Jacobian, or no structure worth eliminating)."""
        if not self.sparse:
            return None
        from scalar_autograd.lsq.schur import SchurComplement

        return SchurComplement.detect(self._indptr, self._indices, self.n)

    def residuals(self, x: np.ndarray) -> np.ndarray:
        r = np.empty(self.m)
        for b in self.blocks:
            r[b.rows.ravel()] = b.values(x).ravel()
        return r

    def residuals_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        r = np.empty(self.m)
        parts = []
        for b in self.blocks:
            V, J = b.values_and_jacobian(x)
            r[b.rows.ravel()] = V.ravel()
            parts.append(J.ravel())
        values = np.concatenate(parts) if parts else np.zeros(0)
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
