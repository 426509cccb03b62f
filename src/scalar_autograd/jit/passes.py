"""Program-to-program passes: re-emission with expansions lowered, and n-ary splitting.

CSE, constant folding and IEEE-safe simplification happen in the
:class:`~scalar_autograd.jit.ir.Builder` on every emission, so re-emitting a program
through a fresh builder also optimises it; dead code goes in ``Builder.build``.

Example:
    >>> import scalar_autograd as sa
    >>> from scalar_autograd.jit.trace import trace
    >>> x = sa.Value(0.5)
    >>> program, _ = trace([sa.sigmoid(x)], [x])
    >>> sorted({k for k, _ in lower(program).nodes} - {"input", "const"})
    ['abs', 'add', 'div', 'exp', 'ge', 'neg', 'where']
"""

from __future__ import annotations

from scalar_autograd.jit.ir import Builder, Program, Var, ir_algebra
from scalar_autograd.ops import OPS_BY_NAME

MAX_SUM_ARITY = 64
"""n-ary sums longer than this are split into a left fold of shorter sums (same bits)."""


def lower(program: Program) -> Program:
    """Rewrite every op whose lowering is an expansion into primitive ops.

    Long sums become chains of sums of at most :data:`MAX_SUM_ARITY` terms, each
    continuing the previous partial sum, so the left-to-right rounding is unchanged.
    """
    builder = Builder(program.n_params, program.n_inputs)
    m = ir_algebra(builder, expand=lambda name: True)
    new: list[int] = []
    for kind, payload in program.nodes:
        if kind == "input":
            new.append(builder.input(payload))
        elif kind == "const":
            new.append(builder.const(payload))
        else:
            args = [new[a] for a in payload]
            if kind == "sum" and len(args) > MAX_SUM_ARITY:
                acc = builder.emit("sum", tuple(args[:MAX_SUM_ARITY]))
                for start in range(MAX_SUM_ARITY, len(args), MAX_SUM_ARITY - 1):
                    chunk = args[start:start + MAX_SUM_ARITY - 1]
                    acc = builder.emit("sum", (acc, *chunk))
                new.append(acc)
            elif OPS_BY_NAME[kind].lower.kind == "expand":
                result = getattr(m, kind)(*[Var(builder, a) for a in args])
                new.append(builder.lift(result))
            else:
                new.append(builder.emit(kind, tuple(args)))
    return builder.build([new[o] for o in program.outputs], program.n_values)
