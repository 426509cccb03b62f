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

from scalar_autograd.ir.program import Builder, Program, copy_program, ir_algebra


def lower(program: Program) -> Program:
    """Rewrite every op whose lowering is an expansion into primitive ops.

    Long sums become chains of sums of at most
    :data:`~scalar_autograd.ir.program.MAX_SUM_ARITY` terms, each continuing the previous
    partial sum, so the left-to-right rounding is unchanged.
    """
    builder = Builder(program.n_params, program.n_inputs)
    ids = copy_program(builder, program, ir_algebra(builder, expand=lambda name: True))
    return builder.build([ids[o] for o in program.outputs], program.n_values)
