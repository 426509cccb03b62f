"""Group structurally identical residuals so each group is compiled once and run batched.

Residuals returned by a user's ``residual_fn`` are usually thousands of copies of one
expression with different data: ``(x_i - cx)^2 + (y_i - cy)^2 - r^2``. Each residual
is traced with its params renumbered by first use (its *slots*) and every other leaf
lifted to a per-row input; residuals whose programs are equal (compared structurally,
by the dict holding them, never by hash alone) form a group, compiled once and
evaluated for all its rows in one native loop.

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
from typing import Any

import numpy as np

from scalar_autograd.graph import post_order, topological_order
from scalar_autograd.ir.program import Program
from scalar_autograd.ir.trace import trace
from scalar_autograd.runtime.compiled import CompiledFunction, compile_program
from scalar_autograd.value import Value


@dataclass(frozen=True)
class ResidualGroup:
    """Residuals sharing one compiled program.

    Attributes:
        function: compiled program; params = the group's slots, inputs = lifted data.
        rows: indices of these residuals in the original list, shape ``(N,)``.
        param_index: ``(N, slots)`` indices into the global params for each row.
        data: ``(N, k)`` per-row values of the lifted constants.
    """

    function: CompiledFunction
    rows: np.ndarray
    param_index: np.ndarray
    data: np.ndarray

    def values(self, x: np.ndarray) -> np.ndarray:
        """The group's residual values at global params ``x``, shape ``(N,)``."""
        return self.function.batch_values(x[self.param_index], self.data)[:, 0]

    def jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values ``(N,)`` and per-row Jacobian blocks ``(N, slots)`` at ``x``."""
        values, jac = self.function.batch_jacobian(x[self.param_index], self.data)
        return values[:, 0], jac[:, 0, :]


def _signature(r: Value, index_of: dict[int, int]
               ) -> tuple[tuple[Any, ...], list[Value], list[int], list[float]]:
    """One walk over a residual: its structural key, params (first use), their global
    indices and the values of its other leaves, in the order :func:`trace` lifts them.

    Two residuals with equal keys trace to identical programs: the key spells out every
    op and argument wiring and which leaf is which param slot, and with every other leaf
    lifted to an input the builder has no constant to fold, so its hash-consing and
    simplifications depend on structure alone.
    """
    position: dict[int, int] = {}
    key: list[Any] = []
    used: list[Value] = []
    used_index: list[int] = []
    constants: list[float] = []
    for node in post_order([r]):
        position[id(node)] = len(key)
        if node.op is not None:
            key.append((node.op.name, tuple([position[id(a)] for a in node.args])))
            continue
        global_index = index_of.get(id(node))
        if global_index is None:
            key.append(None)  # a lifted leaf
            constants.append(node.data)
        else:
            key.append(len(used))  # a param slot
            used.append(node)
            used_index.append(global_index)
    return tuple(key), used, used_index, constants


def group_residuals(residuals: Sequence[Value], params: Sequence[Value],
                    *, backend: str = "auto") -> list[ResidualGroup]:
    """Group ``residuals`` (Values) by structure over ``params`` (see the module doc).

    Each residual is walked once; only the first residual of each group is traced.

    Raises:
        TypeError: if a residual is not a ``Value``.
        ValueError: if ``residuals`` is empty.
    """
    if len(residuals) == 0:
        raise ValueError("residuals must hold at least one Value; got an empty sequence")
    index_of = {id(p): i for i, p in enumerate(params)}
    buckets: dict[Any, tuple[Value, list[Value], list[int], list[list[int]],
                             list[list[float]]]] = {}
    for row, r in enumerate(residuals):
        if not isinstance(r, Value):
            raise TypeError(f"residuals[{row}] must be a Value; got {type(r).__name__}")
        key, used, used_index, constants = _signature(r, index_of)
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = (r, used, [], [], [])
        bucket[2].append(row)
        bucket[3].append(used_index)
        bucket[4].append(constants)
    groups = []
    for first, first_params, rows, slots, row_constants in buckets.values():
        data = np.array(row_constants, dtype=np.float64).reshape(len(rows), -1)
        program, keep = _trace_group(first, first_params, data, index_of)
        groups.append(ResidualGroup(
            function=compile_program(program, backend),
            rows=np.array(rows, dtype=np.int64),
            param_index=np.array(slots, dtype=np.int64).reshape(len(rows), program.n_params),
            data=np.ascontiguousarray(data[:, ~keep]),
        ))
    return groups


def _trace_group(first: Value, used: list[Value], data: np.ndarray, index_of: dict[int, int]
                 ) -> tuple[Program, np.ndarray]:
    """The group's program, traced from its first residual with every non-param leaf
    lifted to a per-row input, except the exponents of ``pow`` that are the same in
    every row (bit for bit): those stay constants, so the code generator sees
    ``x ** 2.0`` (LLVM turns it into ``x * x``) instead of a libm ``pow`` call with a
    run-time exponent. Returns the program and the mask of the columns of ``data``
    kept as constants."""
    order = topological_order(first)
    leaves = [node for node in order if node.op is None and id(node) not in index_of]
    exponents = {id(node.args[1]) for node in order
                 if node.op is not None and node.op.name == "pow"}
    bits = data.view(np.int64)
    uniform = np.all(bits == bits[:1], axis=0) if data.shape[0] else np.ones(0, dtype=bool)
    keep = np.array([bool(uniform[j]) and id(node) in exponents
                     for j, node in enumerate(leaves)], dtype=bool).reshape(-1)
    program, lifted = trace([first], used, lift_constants=True,
                            keep_constants={id(leaves[j]) for j in np.flatnonzero(keep)})
    assert np.array_equal(np.array(lifted, dtype=np.float64).view(np.int64),
                          data[0, ~keep].view(np.int64)), "trace lifts leaves in walk order"
    return program, keep
