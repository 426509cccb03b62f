"""Program-to-program passes: re-emission with expansions lowered and long sums split.

CSE, constant folding and IEEE-safe simplification happen in the
:class:`~scalar_autograd.ir.program.Builder` on every emission, so re-emitting a program
through a fresh builder also optimises it; dead code goes in ``Builder.build``.

Example:
    >>> import scalar_autograd as sa
    >>> from scalar_autograd.ir.trace import trace
    >>> x = sa.Value(0.5)
    >>> program, _ = trace([sa.sigmoid(x)], [x])
    >>> sorted({k for k, _ in lower(program).nodes} - {"input", "const"})
    ['abs', 'add', 'div', 'exp', 'ge', 'neg', 'where']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scalar_autograd.ir.program import Builder, Program, Var, copy_program, ir_algebra
from scalar_autograd.ops import OPS_BY_NAME, Algebra

MAX_SUM_ARITY = 64
"""When lowering, n-ary sums longer than this become a left fold of shorter sums."""


def split_sum(builder: Builder, ids: tuple[int, ...]) -> int:
    """Emit a long sum as chained sums of at most :data:`MAX_SUM_ARITY` terms.

    Each chunk continues the previous partial sum, so the left-to-right rounding (and
    every bit of the result) is unchanged, while native code and the VM see short
    instructions.
    """
    acc = builder.emit("sum", ids[:MAX_SUM_ARITY])
    for start in range(MAX_SUM_ARITY, len(ids), MAX_SUM_ARITY - 1):
        acc = builder.emit("sum", (acc, *ids[start:start + MAX_SUM_ARITY - 1]))
    return acc


def lowering_algebra(builder: Builder) -> Algebra:
    """The IR algebra that emits every expansion op as its expansion (recursively) and
    every sum longer than :data:`MAX_SUM_ARITY` as chained sums: lowering on emission,
    used by :func:`lower` and by differentiation with ``lower=True``.

    Custom ops are expansions too (their recorded value function), so they leave no
    node of their own in a lowered program: no backend ever sees one.
    """
    emitters: dict[str, Callable[..., Any]] = {}
    for op in OPS_BY_NAME.values():  # a snapshot: custom ops may be added meanwhile
        if op.lower.kind == "expand":
            assert op.lower.expansion is not None
            emitters[op.name] = op.lower.expansion

    def long_sum(m: Algebra, *args: Any) -> Var:
        ids = tuple([builder.lift(a) for a in args])
        if len(ids) > MAX_SUM_ARITY:
            return Var(builder, split_sum(builder, ids))
        return Var(builder, builder.emit("sum", ids))

    emitters["sum"] = long_sum
    return ir_algebra(builder, emitters=emitters)


def needs_lowering(kind: str, n_args: int) -> bool:
    """Whether a node of op ``kind`` with ``n_args`` arguments changes when lowered."""
    return OPS_BY_NAME[kind].lower.kind == "expand" or (kind == "sum" and n_args > MAX_SUM_ARITY)


def copy_lowered(builder: Builder, program: Program) -> tuple[list[int], Algebra]:
    """Emit ``program`` into ``builder`` with expansions lowered and long sums split;
    returns the new id of each node and the lowering algebra (for more emission)."""
    m = lowering_algebra(builder)
    return copy_program(builder, program, needs_lowering, m), m


def lower(program: Program) -> Program:
    """Rewrite every op whose lowering is an expansion into primitive ops.

    Long sums become chains of sums of at most :data:`MAX_SUM_ARITY` terms, each
    continuing the previous partial sum, so the left-to-right rounding is unchanged.
    """
    builder = Builder(program.n_params, program.n_inputs)
    ids, _ = copy_lowered(builder, program)
    return builder.build([ids[o] for o in program.outputs], program.n_values)
