"""Trace a ``Value`` graph into a :class:`~scalar_autograd.ir.program.Program`.

Params and runtime inputs become program inputs; every other leaf becomes a constant
frozen at trace time (or, with ``lift_constants``, an extra input whose value is
returned, so structurally identical graphs share one program). The walk is iterative.

Example:
    >>> import scalar_autograd as sa
    >>> x = sa.Value(2.0, requires_grad=True)
    >>> program, _ = trace([x * x + 1.0], [x])
    >>> program.n_instructions
    2
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from scalar_autograd.graph import topological_order
from scalar_autograd.ir.program import Builder, Program
from scalar_autograd.value import Value


def trace(
    outputs: Sequence[Value],
    params: Sequence[Value],
    inputs: Sequence[Value] = (),
    *,
    lift_constants: bool = False,
    keep_constants: Collection[int] = (),
) -> tuple[Program, list[float]]:
    """Build the program computing ``outputs`` from ``params`` and ``inputs``.

    Args:
        outputs: the values to compute.
        params: differentiable leaves, program input slots ``0..len(params)-1``.
        inputs: non-differentiable runtime leaves, the following slots.
        lift_constants: make every other leaf an extra input (after ``inputs``) instead
            of a constant.
        keep_constants: ``id()`` of leaves that stay constants even when
            ``lift_constants`` is set.

    Returns:
        The program and the values of the lifted constants (empty unless
        ``lift_constants``), in slot order.
    """
    slot_of: dict[int, int] = {}
    for i, p in enumerate(params):
        slot_of[id(p)] = i
    for j, u in enumerate(inputs):
        slot_of[id(u)] = len(params) + j
    order = topological_order(list(outputs))
    lifted: list[float] = []
    if lift_constants:
        for node in order:
            if node.op is None and id(node) not in slot_of and id(node) not in keep_constants:
                slot_of[id(node)] = len(params) + len(inputs) + len(lifted)
                lifted.append(node.data)
    builder = Builder(len(params), len(inputs) + len(lifted))
    for slot in range(len(params) + len(inputs) + len(lifted)):
        builder.input(slot)  # every slot exists, even if unused
    ids: dict[int, int] = {}
    emit = builder.emit
    for node in order:
        op = node.op
        if op is None:
            leaf_slot = slot_of.get(id(node))
            ids[id(node)] = (builder.input(leaf_slot) if leaf_slot is not None
                             else builder.const(node.data))
        else:
            ids[id(node)] = emit(op.name, tuple([ids[id(a)] for a in node.args]))
    return builder.build([ids[id(o)] for o in outputs], n_values=len(outputs)), lifted
