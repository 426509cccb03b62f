"""Reverse and forward mode on a Program, from the op table's ``partials`` rules.

The derivative of a program is another program: the rules run on the IR algebra, so
gradient code is more IR, hash-consed and folded like the rest. Contributions through
an argument whose partial is structurally zero (comparisons, ``floor``, ``where``'s
condition, ...) are left out, exactly as eager ``backward()`` does; through the
arguments of an op that ``selects`` (``where``'s branches, ``relu``, ``min``, ``max``,
``clamp``) the gradient is selected, ``where(p, g*p, 0.0)``, not multiplied by its 0/1
indicator ``p``, so an inf or nan gradient does not leak into the branch not taken.

Example:
    >>> import scalar_autograd as sa
    >>> from scalar_autograd.ir.trace import trace
    >>> x = sa.Value(3.0)
    >>> program, _ = trace([x * x], [x])
    >>> grad = reverse(program)
    >>> grad.n_values, grad.n_derivs
    (1, 1)
"""

from __future__ import annotations

from typing import Any

from scalar_autograd.ir.passes import copy_lowered
from scalar_autograd.ir.program import Builder, Program, Var, copy_program, ir_algebra
from scalar_autograd.ops import OPS_BY_NAME, Algebra, select_contribution


def _copy_primal(program: Program, lower: bool) -> tuple[Builder, Algebra, list[int],
                                                          list[bool]]:
    """Re-emit ``program`` in a new builder; also which nodes depend on a param."""
    builder = Builder(program.n_params, program.n_inputs)
    if lower:
        ids, m = copy_lowered(builder, program)
    else:
        m = ir_algebra(builder)
        ids = copy_program(builder, program)
    n_params = program.n_params
    active: list[bool] = []
    for kind, payload in program.nodes:
        if kind == "input":
            active.append(payload < n_params)
        elif kind == "const":
            active.append(False)
        else:
            active.append(any([active[a] for a in payload]))
    return builder, m, ids, active


def _partials(m: Any, builder: Builder, kind: str, args: list[int], out: int) -> tuple[Any, ...]:
    op = OPS_BY_NAME[kind]
    return op.partials(m, *[Var(builder, a) for a in args], out=Var(builder, out))


def _n_diff(program: Program, n_diff: int | None) -> int:
    if n_diff is None:
        return program.n_values
    if not 0 <= n_diff <= program.n_values:
        raise ValueError(f"n_diff must be in [0, {program.n_values}]; got {n_diff}")
    return n_diff


def reverse(program: Program, lower: bool = False, n_diff: int | None = None) -> Program:
    """Values and Jacobian (row-major, one row per value output) by reverse mode.

    One backward sweep per value output; best when outputs are few. With ``lower``,
    the result is emitted with expansions already lowered (one pass instead of two).
    ``n_diff``: differentiate only the first ``n_diff`` value outputs (the rest, such
    as guard predicates, are computed but get no Jacobian rows); default all.
    """
    builder, m, ids, active = _copy_primal(program, lower)
    nodes = program.nodes
    n_params = program.n_params
    param_node = {payload: i for i, (kind, payload) in enumerate(nodes)
                  if kind == "input" and payload < n_params}
    derivs: list[int] = []
    for out in program.outputs[: _n_diff(program, n_diff)]:
        adjoint: dict[int, Any] = {}
        if active[out]:
            adjoint[out] = 1.0
        for i in range(out, -1, -1):
            g = adjoint.pop(i, None)
            if g is None:
                continue
            kind, payload = nodes[i]
            if kind in ("input", "const"):
                adjoint[i] = g  # keep the param's adjoint
                continue
            op = OPS_BY_NAME[kind]
            args = [ids[a] for a in payload]
            partials = _partials(m, builder, kind, args, ids[i])
            zeros = op.zero_partials
            selects = op.selects
            for k, a in enumerate(payload):
                if not active[a] or zeros[k if k < len(zeros) else -1]:
                    continue
                if selects:
                    contribution = select_contribution(m, g, partials[k])
                else:
                    contribution = g * partials[k]
                previous = adjoint.get(a)
                adjoint[a] = contribution if previous is None else previous + contribution
        for p in range(n_params):
            g = adjoint.get(param_node[p])
            derivs.append(builder.lift(g) if g is not None else builder.const(0.0))
    values = [ids[o] for o in program.outputs[: program.n_values]]
    return builder.build(values + derivs, program.n_values)


def forward(program: Program, lower: bool = False, n_diff: int | None = None) -> Program:
    """Values and Jacobian (row-major) by forward mode: one tangent sweep per param.

    Best when there are more outputs than params. ``lower`` and ``n_diff`` as for
    :func:`reverse`.
    """
    builder, m, ids, active = _copy_primal(program, lower)
    nodes = program.nodes
    n_params = program.n_params
    columns: list[list[int]] = []
    for p in range(n_params):
        tangent: list[Any] = [None] * len(nodes)
        for i, (kind, payload) in enumerate(nodes):
            if kind == "input":
                if payload == p:
                    tangent[i] = 1.0
                continue
            if kind == "const" or not active[i]:
                continue
            op = OPS_BY_NAME[kind]
            if not any(tangent[a] is not None for a in payload):
                continue
            partials = _partials(m, builder, kind, [ids[a] for a in payload], ids[i])
            zeros = op.zero_partials
            selects = op.selects
            total: Any = None
            for k, a in enumerate(payload):
                t = tangent[a]
                if t is None or zeros[k if k < len(zeros) else -1]:
                    continue
                term = select_contribution(m, t, partials[k]) if selects else partials[k] * t
                total = term if total is None else total + term
            tangent[i] = total
        columns.append([
            builder.lift(tangent[o]) if tangent[o] is not None else builder.const(0.0)
            for o in program.outputs[: _n_diff(program, n_diff)]
        ])
    derivs = [columns[p][r] for r in range(_n_diff(program, n_diff)) for p in range(n_params)]
    values = [ids[o] for o in program.outputs[: program.n_values]]
    return builder.build(values + derivs, program.n_values)
