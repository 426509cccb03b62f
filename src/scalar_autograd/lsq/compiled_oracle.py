"""The ``jacobian="compiled"`` oracle: trace ``residual_fn`` once, evaluate compiled kernels.

``residual_fn`` is called once, at the initial parameters. When the JIT offers residual
grouping (``scalar_autograd.runtime.group_residuals``), structurally identical residuals
(same ops, same shape, differing only in their constants) form one group, compiled
once with its parameter slots as params and its lifted constants as per-row inputs,
and every group is evaluated in one native loop over its rows. Without grouping, the
whole residual vector is compiled as one function of all the params. Either way the
residuals' structure is frozen at the first call: a Python ``if`` on ``p.data`` inside
``residual_fn`` is not re-evaluated (use ``sa.where``, or ``jacobian="graph"``).

Example:
    >>> import numpy as np
    >>> import scalar_autograd as sa
    >>> a = sa.Value(1.0, requires_grad=True)
    >>> oracle = CompiledOracle([a], lambda p: [p[0] * 3.0 - 1.0, p[0] * p[0]], "auto")
    >>> r, J = oracle.residuals_and_jacobian(np.array([2.0]))
    >>> r.tolist(), J.tolist()
    ([5.0, 4.0], [[3.0], [4.0]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.graph import gc_paused
from scalar_autograd.lsq.assembly import Assembler, KernelBlock
from scalar_autograd.lsq.params import check_residuals
from scalar_autograd.lsq.problem import choose_sparse
from scalar_autograd.value import Value


def _group_residuals() -> Callable[..., Any] | None:
    try:
        from scalar_autograd.runtime import group_residuals
    except ImportError:
        return None
    return group_residuals  # type: ignore[no-any-return]


class CompiledOracle:
    """Residuals and Jacobian of a traced ``residual_fn`` through compiled kernels.

    Attributes:
        m, n: residuals and parameters.
        constant_rows: residuals that depend on no parameter.
        grouped: whether residual grouping was used (else one function for all).
        n_groups: the number of compiled kernels.
    """

    def __init__(self, params: list[Value], residual_fn: Callable[[list[Value]],
                 Sequence[Value]], linear_solver: str) -> None:
        from scalar_autograd.runtime import compile as jit_compile

        with gc_paused():          # many small graphs: see graph.gc_paused
            residuals = check_residuals(residual_fn(params))
            self.m = len(residuals)
            self.n = len(params)
            self.constant_rows = [i for i, r in enumerate(residuals) if not r.requires_grad]
            group = _group_residuals()
            blocks: list[KernelBlock] = []
            if group is not None:
                for g in group(residuals, params):
                    rows = np.asarray(g.rows, dtype=np.int64).reshape(-1, 1)
                    index = np.asarray(g.param_index, dtype=np.int64).reshape(rows.shape[0],
                                                                               -1)
                    data = np.asarray(g.data, dtype=float).reshape(rows.shape[0], -1)
                    blocks.append(KernelBlock(g.function, rows, index, data))
                self.grouped = True
            else:
                f = jit_compile(residuals, params)
                blocks.append(KernelBlock(
                    f, np.arange(self.m, dtype=np.int64)[None, :],
                    np.arange(self.n, dtype=np.int64)[None, :], np.zeros((1, 0)),
                ))
                self.grouped = False
            del residuals
        self.n_groups = len(blocks)
        if linear_solver == "dense":
            sparse = False
        elif linear_solver in ("sparse_cholesky", "sparse_lsmr"):
            sparse = True
        else:
            nnz = sum(b.rows.size * b.param_index.shape[1] for b in blocks)
            sparse = choose_sparse(self.n, nnz / max(1, self.m * self.n))
        self.assembler = Assembler(blocks, self.m, self.n, sparse)

    def residuals(self, x: np.ndarray) -> np.ndarray:
        """The residual vector at ``x``."""
        return self.assembler.residuals(np.asarray(x, dtype=float))

    def residuals_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        """Residuals and Jacobian (dense, or CSR when sparse pays) at ``x``."""
        return self.assembler.residuals_and_jacobian(np.asarray(x, dtype=float))
