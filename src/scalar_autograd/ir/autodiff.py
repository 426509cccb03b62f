"""Reverse, forward and second-order mode on a Program, from the op table's ``partials``.

The derivative of a program is another program: the rules run on the IR algebra, so
gradient code is more IR, hash-consed and folded like the rest. Contributions through
an argument whose partial is structurally zero (comparisons, ``floor``, ``where``'s
condition, ...) are left out, exactly as eager ``backward()`` does; through the
arguments of an op that ``selects`` (``where``'s branches, ``relu``, ``min``, ``max``,
``clamp``) the gradient is selected, ``where(p, g*p, 0.0)``, not multiplied by its 0/1
indicator ``p``, so an inf or nan gradient does not leak into the branch not taken.

Second derivatives (:func:`hessian`, :func:`hvp`) are forward mode over reverse mode:
the reverse-mode gradient program, built *before* lowering (so that every node is still
an op of the table, ``sign`` and ``floor`` included), is swept once more in forward
mode, with the tangent seeded by a unit vector per param (the dense Hessian) or by a
direction read from extra runtime inputs (a Hessian-vector product). No op needs a
second-order rule: the partials of the partials come from the same table. At a kink the
result is the derivative of the chosen branch's gradient, as the first-order
conventions choose it (0 for ``relu``, ``abs``, ``min``, ``max``, ``where`` between
linear pieces: ``sign``, ``floor`` and the comparisons have derivative 0). An argument
that gets no gradient by convention (``pow``'s exponent, ``where``'s condition,
``stop_gradient``) gets no second derivative through that op either.

Example:
    >>> import scalar_autograd as sa
    >>> from scalar_autograd.ir.trace import trace
    >>> x = sa.Value(3.0)
    >>> program, _ = trace([x * x], [x])
    >>> grad = reverse(program)
    >>> grad.n_values, grad.n_derivs
    (1, 1)
    >>> hessian(program).n_derivs    # the gradient (1), then the Hessian (1 x 1)
    2
"""

from __future__ import annotations

from typing import Any

from scalar_autograd.ir.passes import copy_lowered
from scalar_autograd.ir.program import Builder, Program, Var, copy_program, ir_algebra
from scalar_autograd.ops import OPS_BY_NAME, Algebra, select_contribution


def _copy_primal(program: Program, lower: bool, extra_inputs: int = 0
                 ) -> tuple[Builder, Algebra, list[int], list[bool]]:
    """Re-emit ``program`` in a new builder; also which nodes depend on a param.

    ``extra_inputs``: runtime input slots the new builder has beyond the program's
    (the direction of a Hessian-vector product).
    """
    builder = Builder(program.n_params, program.n_inputs + extra_inputs)
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


def _param_nodes(program: Program) -> dict[int, int]:
    """The node id of each param's input node, by param slot."""
    n_params = program.n_params
    return {payload: i for i, (kind, payload) in enumerate(program.nodes)
            if kind == "input" and payload < n_params}


def reverse(program: Program, lower: bool = False, n_diff: int | None = None) -> Program:
    """Values and Jacobian (row-major, one row per value output) by reverse mode.

    One backward sweep per value output; best when outputs are few. With ``lower``,
    the result is emitted with expansions already lowered (one pass instead of two).
    ``n_diff``: differentiate only the first ``n_diff`` value outputs (the rest, such
    as guard predicates, are computed but get no Jacobian rows); default all.
    """
    return _reverse(program, lower, n_diff, shield=False)


def _reverse(program: Program, lower: bool, n_diff: int | None, shield: bool) -> Program:
    """:func:`reverse`; with ``shield``, an argument whose partial is structurally zero
    (``pow``'s exponent, ``where``'s condition, ...) reaches the partial rules of its op
    through ``stop_gradient``, so that differentiating the gradient program again lets
    no derivative through it either (``d/dc (c * x**(c-1))`` would otherwise appear in
    a Hessian whose first derivative in ``c`` is 0 by convention). ``stop_gradient``
    lowers to nothing: the gradient's values are the same bits."""
    builder, m, ids, active = _copy_primal(program, lower)
    nodes = program.nodes
    n_params = program.n_params
    param_node = _param_nodes(program)
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
            zeros = op.zero_partials
            args = [ids[a] for a in payload]
            if shield and any(zeros):
                args = [builder.emit("stop_gradient", (a,))
                        if active[payload[k]] and zeros[k if k < len(zeros) else -1] else a
                        for k, a in enumerate(args)]
            partials = _partials(m, builder, kind, args, ids[i])
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
            node = param_node.get(p)
            g = adjoint.get(node) if node is not None else None
            derivs.append(builder.lift(g) if g is not None else builder.const(0.0))
    values = [ids[o] for o in program.outputs[: program.n_values]]
    return builder.build(values + derivs, program.n_values)


class _Sweeper:
    """Forward-mode tangent sweeps over one program re-emitted in ``builder``.

    Each sweep visits only the nodes that depend on a seeded node (found through the
    consumer lists, in program order), so a sweep seeded at one param of a sparse
    program costs the size of that param's cone, not of the program. A node's partials
    are emitted once and reused by every later sweep (the builder would hash-cons them
    to the same nodes anyway: this only saves the Python work).
    """

    def __init__(self, program: Program, builder: Builder, m: Algebra, ids: list[int],
                 active: list[bool]) -> None:
        self.nodes = program.nodes
        self.builder = builder
        self.m = m
        self.ids = ids
        self.active = active
        consumers: list[list[int]] = [[] for _ in self.nodes]
        for i, (kind, payload) in enumerate(self.nodes):
            if kind != "input" and kind != "const" and active[i]:
                for a in set(payload):
                    consumers[a].append(i)
        self.consumers = consumers
        self._rules: dict[int, tuple[Any, ...]] = {}

    def _cone(self, seeds: dict[int, Any]) -> list[int]:
        """The active op nodes reachable from ``seeds``, in program order."""
        consumers = self.consumers
        seen: set[int] = set()
        stack = list(seeds)
        while stack:
            i = stack.pop()
            for c in consumers[i]:
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return sorted(seen)

    def sweep(self, seeds: dict[int, Any]) -> dict[int, Any]:
        """Tangents (node id -> IR value, or absent for a zero tangent) of every node,
        with ``seeds`` (input node id -> tangent: a float or a ``Var``)."""
        nodes, ids, m, builder, rules = self.nodes, self.ids, self.m, self.builder, self._rules
        tangent: dict[int, Any] = dict(seeds)
        get = tangent.get
        for i in self._cone(seeds):
            kind, payload = nodes[i]
            if not any(get(a) is not None for a in payload):
                continue
            op = OPS_BY_NAME[kind]
            partials = rules.get(i)
            if partials is None:
                partials = _partials(m, builder, kind, [ids[a] for a in payload], ids[i])
                rules[i] = partials
            zeros = op.zero_partials
            selects = op.selects
            total: Any = None
            for k, a in enumerate(payload):
                t = get(a)
                if t is None or zeros[k if k < len(zeros) else -1]:
                    continue
                term = select_contribution(m, t, partials[k]) if selects else partials[k] * t
                total = term if total is None else total + term
            if total is not None:
                tangent[i] = total
        return tangent


def forward(program: Program, lower: bool = False, n_diff: int | None = None) -> Program:
    """Values and Jacobian (row-major) by forward mode: one tangent sweep per param.

    Best when there are more outputs than params. ``lower`` and ``n_diff`` as for
    :func:`reverse`.
    """
    builder, m, ids, active = _copy_primal(program, lower)
    sweeper = _Sweeper(program, builder, m, ids, active)
    param_node = _param_nodes(program)
    n_rows = _n_diff(program, n_diff)
    targets = program.outputs[:n_rows]
    columns: list[list[int]] = []
    for p in range(program.n_params):
        node = param_node.get(p)
        tangent = sweeper.sweep({node: 1.0}) if node is not None else {}
        columns.append([builder.lift(tangent[o]) if o in tangent else builder.const(0.0)
                        for o in targets])
    derivs = [columns[p][r] for r in range(n_rows) for p in range(program.n_params)]
    values = [ids[o] for o in program.outputs[: program.n_values]]
    return builder.build(values + derivs, program.n_values)


def _gradient_program(program: Program, n_aux: int, what: str) -> Program:
    """The unlowered reverse-mode gradient of the one differentiated output."""
    if n_aux < 0 or program.n_values - n_aux != 1:
        raise ValueError(f"{what} needs exactly one differentiated value output; the "
                         f"program has {program.n_values} value output(s) of which "
                         f"{n_aux} auxiliary")
    # Not lowered: the tangent sweep must see the table's ops (sign, floor, sum, ...)
    # with their own partials, not their expansions (sign's expansion passes x through
    # at 0, whose derivative would be 1 instead of the table's 0).
    return _reverse(program, lower=False, n_diff=1, shield=True)


def hessian(program: Program, lower: bool = False, n_aux: int = 0) -> Program:
    """Value, gradient and Hessian of a program's first value output, forward-over-reverse.

    The program must have one differentiated value output, followed by ``n_aux``
    auxiliary ones (computed, never differentiated). The result has the same values;
    its derivative outputs are the gradient (``n`` entries, ``n = program.n_params``)
    then the Hessian, row-major (``n * n``). Column ``j`` comes from one forward sweep
    of the gradient program seeded with the unit vector ``e_j``; the Hessian returned
    is exactly symmetric: where the two sweeps give entries ``(i, j)`` and ``(j, i)`` as
    different nodes, both become ``0.5 * H_ij + 0.5 * H_ji`` (the same node), so a
    rounding asymmetry never reaches a factorisation and a nan in either one shows in
    both. Structurally equal entries (the common case) are used as they are.

    Raises:
        ValueError: the program does not have exactly one differentiated output.

    Example:
        >>> import scalar_autograd as sa
        >>> from scalar_autograd.ir.trace import trace
        >>> x, y = sa.Value(1.0), sa.Value(2.0)
        >>> program, _ = trace([x * x * y], [x, y])
        >>> h = hessian(program)
        >>> h.n_values, h.n_derivs     # f; g (2); H (4)
        (1, 6)
    """
    grad = _gradient_program(program, n_aux, "hessian")
    builder, m, ids, active = _copy_primal(grad, lower)
    sweeper = _Sweeper(grad, builder, m, ids, active)
    param_node = _param_nodes(grad)
    n = grad.n_params
    targets = grad.outputs[grad.n_values:]  # the gradient's nodes
    zero = builder.const(0.0)
    columns: list[list[int]] = []  # columns[j][i] = d g_i / d x_j
    for j in range(n):
        node = param_node.get(j)
        tangent = sweeper.sweep({node: 1.0}) if node is not None else {}
        columns.append([builder.lift(tangent[t]) if t in tangent else zero
                        for t in targets])
    entries = [[zero] * n for _ in range(n)]
    for i in range(n):
        entries[i][i] = columns[i][i]
        for j in range(i + 1, n):
            a, b = columns[j][i], columns[i][j]
            if a != b:
                a = builder.emit("add", (builder.emit("mul", (builder.const(0.5), a)),
                                         builder.emit("mul", (builder.const(0.5), b))))
            entries[i][j] = entries[j][i] = a
    values = [ids[o] for o in grad.outputs[: grad.n_values]]
    gradient = [ids[t] for t in targets]
    flat = [e for row in entries for e in row]
    return builder.build(values + gradient + flat, grad.n_values)


def hvp(program: Program, lower: bool = False, n_aux: int = 0) -> Program:
    """Value, gradient and Hessian-vector product ``H v``, forward-over-reverse.

    As :func:`hessian`, with one forward sweep of the gradient program whose tangent is
    seeded by the direction ``v``: the result takes ``n = program.n_params`` more runtime
    inputs, ``v``, after the program's own (input slots ``n + n_inputs + k``), and its
    derivative outputs are the gradient (``n``) then ``H v`` (``n``). It costs a small
    multiple of the gradient, whatever ``n``. ``H v`` is the directional derivative of
    the gradient, not a product with the symmetrised matrix of :func:`hessian`: the two
    agree to rounding.

    Raises:
        ValueError: the program does not have exactly one differentiated output.

    Example:
        >>> import scalar_autograd as sa
        >>> from scalar_autograd.ir.trace import trace
        >>> x, y = sa.Value(1.0), sa.Value(2.0)
        >>> program, _ = trace([x * x * y], [x, y])
        >>> p = hvp(program)
        >>> p.n_inputs, p.n_derivs     # v (2); g (2) and H v (2)
        (2, 4)
    """
    grad = _gradient_program(program, n_aux, "hvp")
    n = grad.n_params
    builder, m, ids, active = _copy_primal(grad, lower, extra_inputs=n)
    sweeper = _Sweeper(grad, builder, m, ids, active)
    first = n + grad.n_inputs
    seeds = {node: Var(builder, builder.input(first + p))
             for p, node in _param_nodes(grad).items()}
    for p in range(n):  # every direction slot exists, even if unused
        builder.input(first + p)
    tangent = sweeper.sweep(seeds)
    targets = grad.outputs[grad.n_values:]
    values = [ids[o] for o in grad.outputs[: grad.n_values]]
    gradient = [ids[t] for t in targets]
    product = [builder.lift(tangent[t]) if t in tangent else builder.const(0.0)
               for t in targets]
    return builder.build(values + gradient + product, grad.n_values)
