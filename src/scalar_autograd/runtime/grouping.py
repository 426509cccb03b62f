"""Group structurally identical residuals so each group is compiled once and run batched.

Residuals returned by a user's ``residual_fn`` are usually thousands of copies of one
expression with different data: ``(x_i - cx)^2 + (y_i - cy)^2 - r^2``. This is the same
mechanism as the repeated terms of ``sa.compile``
(:mod:`scalar_autograd.ir.structure`), applied to the outputs: the residuals are traced
into one program, and :func:`~scalar_autograd.ir.structure.group_outputs` groups the
ones that are the same expression up to their leaves, each group compiled once as a
row kernel with index tables (which params and runtime inputs each row reads, its own
constants) and evaluated for all its rows in one native loop.

Example:
    >>> import scalar_autograd as sa
    >>> cx, r = sa.Value(0.0), sa.Value(1.0)
    >>> residuals = [(cx - xi) ** 2 - r * r for xi in (1.0, 2.0, 3.0)]
    >>> [g.rows.tolist() for g in group_residuals(residuals, [cx, r])]
    [[0, 1, 2]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scalar_autograd.ir.structure import group_outputs
from scalar_autograd.ir.trace import trace
from scalar_autograd.runtime.compiled import CompiledFunction, compile_program
from scalar_autograd.value import Value


@dataclass(frozen=True)
class ResidualGroup:
    """Residuals sharing one compiled program.

    Attributes:
        function: compiled program; params = the group's slots, inputs = the runtime
            inputs each row reads (``input_index``), then its per-row constants.
        rows: indices of these residuals in the original list, shape ``(N,)``.
        param_index: ``(N, slots)`` indices into the global params for each row.
        input_index: ``(N, s)`` indices into the global runtime inputs for each row.
        data: ``(N, k)`` per-row values of the constants that differ between rows.
    """

    function: CompiledFunction
    rows: np.ndarray
    param_index: np.ndarray
    input_index: np.ndarray
    data: np.ndarray

    def row_inputs(self, u: np.ndarray | None = None) -> np.ndarray:
        """The function's inputs per row ``(N, s + k)``: the runtime inputs ``u`` each
        row reads, then its constants."""
        if not self.input_index.shape[1]:
            return self.data
        if u is None:
            raise ValueError("u (the runtime inputs) is needed: this group reads inputs")
        return np.ascontiguousarray(np.hstack([np.asarray(u, dtype=float)[self.input_index],
                                               self.data]))

    def values(self, x: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """The group's residual values at global params ``x``, shape ``(N,)``."""
        return self.function.batch_values(x[self.param_index], self.row_inputs(u))[:, 0]

    def jacobian(self, x: np.ndarray, u: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Values ``(N,)`` and per-row Jacobian blocks ``(N, slots)`` at ``x``."""
        values, jac = self.function.batch_jacobian(x[self.param_index], self.row_inputs(u))
        return values[:, 0], jac[:, 0, :]


def group_residuals(residuals: Sequence[Value], params: Sequence[Value],
                    inputs: Sequence[Value] = (), *, backend: str = "auto"
                    ) -> list[ResidualGroup]:
    """Group ``residuals`` (Values) by structure over ``params`` and the runtime
    ``inputs`` (see the module doc); every other leaf is a constant.

    Raises:
        TypeError: if a residual is not a ``Value``.
        ValueError: if ``residuals`` is empty.
    """
    if len(residuals) == 0:
        raise ValueError("residuals must hold at least one Value; got an empty sequence")
    for row, r in enumerate(residuals):
        if not isinstance(r, Value):
            raise TypeError(f"residuals[{row}] must be a Value; got {type(r).__name__}")
    program, _ = trace(list(residuals), params, inputs)
    return [ResidualGroup(function=compile_program(g.program, backend), rows=g.roots,
                          param_index=g.param_index, input_index=g.input_index,
                          data=g.data)
            for g in group_outputs(program)]
