"""The JIT's intermediate representation: a linear SSA ``Program`` and its ``Builder``.

A program is a list of nodes in dependency order. Node ``i`` is one of

* ``("input", slot)``: the program's runtime argument number ``slot``; slots
  ``0 .. n_params-1`` are the differentiable params, the rest are the other inputs;
* ``("const", value)``: a float constant;
* ``(op_name, (arg ids...))``: an op of the table applied to earlier nodes.

``outputs`` lists node ids; the first ``n_values`` are the function's values, the rest
its derivatives (row-major Jacobian). The :class:`Builder` hash-conses every node
(common subexpressions are shared for free), folds constants through ``Op.eval`` and
applies only IEEE-safe simplifications (``x*1 -> x`` yes, ``x*0 -> 0`` no).

Example:
    >>> b = Builder(n_params=1, n_inputs=0)
    >>> x = b.input(0)
    >>> b.emit("mul", (x, b.const(1.0))) == x
    True
    >>> b.emit("add", (x, x)) == b.emit("add", (x, x))
    True
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scalar_autograd.ops import OPS_BY_NAME, VARIADIC, Algebra

_pack = struct.Struct("<d").pack

COMMUTATIVE = frozenset({"add", "mul", "eq", "ne"})
"""Ops whose two arguments may be swapped without changing any IEEE result."""


def const_key(value: float) -> bytes:
    """Hash key of a constant: its bit pattern (so ``-0.0`` and ``0.0`` differ)."""
    return _pack(value)


@dataclass(frozen=True)
class Program:
    """A straight-line program over doubles (see the module docstring).

    Attributes:
        nodes: ``(kind, payload)`` per node, in dependency order.
        outputs: node ids of the results: ``n_values`` values, then derivatives.
        n_params: number of differentiable input slots (they come first).
        n_inputs: number of other runtime input slots.
        n_values: how many of ``outputs`` are values (the rest are derivatives).
    """

    nodes: tuple[tuple[str, Any], ...]
    outputs: tuple[int, ...]
    n_params: int
    n_inputs: int
    n_values: int

    @property
    def n_derivs(self) -> int:
        """Number of derivative outputs."""
        return len(self.outputs) - self.n_values

    @property
    def n_instructions(self) -> int:
        """Number of op nodes (inputs and constants not counted)."""
        return sum(1 for kind, _ in self.nodes if kind not in ("input", "const"))

    def key(self) -> tuple[Any, ...]:
        """A structural key: equal keys mean identical programs (constants by bits)."""
        nodes = tuple(
            (kind, const_key(payload)) if kind == "const" else (kind, payload)
            for kind, payload in self.nodes
        )
        return (nodes, self.outputs, self.n_params, self.n_inputs, self.n_values)

    def __str__(self) -> str:
        lines = [f"program(params={self.n_params}, inputs={self.n_inputs})"]
        for i, (kind, payload) in enumerate(self.nodes):
            if kind == "input":
                lines.append(f"  %{i} = input {payload}")
            elif kind == "const":
                lines.append(f"  %{i} = const {payload!r}")
            else:
                args = ", ".join(f"%{a}" for a in payload)
                lines.append(f"  %{i} = {kind} {args}")
        outs = ", ".join(f"%{o}" for o in self.outputs)
        lines.append(f"  return {outs}  (first {self.n_values} are values)")
        return "\n".join(lines)


class Builder:
    """Emits nodes with hash-consing, constant folding and IEEE-safe simplification."""

    def __init__(self, n_params: int, n_inputs: int) -> None:
        self.n_params = n_params
        self.n_inputs = n_inputs
        self.nodes: list[tuple[str, Any]] = []
        self._index: dict[Any, int] = {}
        self.constants: dict[int, float] = {}

    @classmethod
    def from_program(cls, program: Program) -> Builder:
        """A builder already holding ``program``'s nodes (same ids), ready to extend."""
        b = cls(program.n_params, program.n_inputs)
        b.nodes = list(program.nodes)
        index = b._index
        for i, (kind, payload) in enumerate(b.nodes):
            if kind == "const":
                index[("const", _pack(payload))] = i
                b.constants[i] = payload
            else:
                index[(kind, payload)] = i
        return b

    # ------------------------------------------------------------------ leaves
    def input(self, slot: int) -> int:
        """The node reading runtime argument ``slot``."""
        return self._intern(("input", slot), ("input", slot))

    def const(self, value: float) -> int:
        """The node holding constant ``value``."""
        value = float(value)
        key = ("const", _pack(value))
        found = self._index.get(key)
        if found is not None:
            return found
        i = self._intern(key, ("const", value))
        self.constants[i] = value
        return i

    def lift(self, x: Any) -> int:
        """A node id for a ``Var``, a node id or a Python number."""
        if isinstance(x, Var):
            return x.id
        return self.const(x)

    def _intern(self, key: Any, node: tuple[str, Any]) -> int:
        found = self._index.get(key)
        if found is not None:
            return found
        i = len(self.nodes)
        self.nodes.append(node)
        self._index[key] = i
        return i

    # ------------------------------------------------------------------ ops
    def emit(self, name: str, args: tuple[int, ...]) -> int:
        """Emit op ``name`` on node ids ``args``; may return an existing node."""
        consts = self.constants
        for a in args:
            if a not in consts:
                break
        else:
            return self.const(OPS_BY_NAME[name].eval(*[consts[a] for a in args]))
        if name in _SIMPLIFIABLE:
            # arithmetic simplifies only with a constant operand: skip the call otherwise
            if name not in _NEED_CONSTANT or args[0] in consts or args[1] in consts:
                simplified = self._simplify(name, args)
                if simplified is not None:
                    return simplified
            if name in COMMUTATIVE and args[0] > args[1]:
                args = (args[1], args[0])
        key = (name, args)
        found = self._index.get(key)
        if found is not None:
            return found
        i = len(self.nodes)
        self.nodes.append(key)
        self._index[key] = i
        return i

    def _simplify(self, name: str, args: tuple[int, ...]) -> int | None:
        c = self.constants.get
        if name == "mul":
            a, b = args
            for x, k in ((a, b), (b, a)):
                if c(k) == 1.0:
                    return x
                if c(k) == -1.0:
                    return self.emit("neg", (x,))
        elif name == "add":
            a, b = args
            # x + (-0.0) == x for every x, but x + 0.0 turns -0.0 into 0.0: not safe.
            if b in self.constants and _pack(self.constants[b]) == _NEG_ZERO:
                return a
            if a in self.constants and _pack(self.constants[a]) == _NEG_ZERO:
                return b
        elif name == "sub":
            a, b = args
            if b in self.constants and _pack(self.constants[b]) == _POS_ZERO:
                return a
            if a in self.constants and _pack(self.constants[a]) == _NEG_ZERO:
                return self.emit("neg", (b,))
        elif name == "div":
            if c(args[1]) == 1.0:
                return args[0]
        elif name == "neg":
            kind, payload = self.nodes[args[0]]
            if kind == "neg":
                return int(payload[0])
        elif name == "where":
            cond, a, b = args
            if cond in self.constants:
                return a if self.constants[cond] != 0.0 else b
            if a == b:
                return a
        elif name == "sum" and len(args) == 1:
            return args[0]
        return None

    def build(self, outputs: Sequence[int], n_values: int) -> Program:
        """Freeze into a :class:`Program` (nodes not reaching an output are dropped)."""
        return dead_code_elimination(
            Program(tuple(self.nodes), tuple(outputs), self.n_params, self.n_inputs, n_values)
        )


_NEG_ZERO = _pack(-0.0)
_POS_ZERO = _pack(0.0)
_SIMPLIFIABLE = frozenset({"mul", "add", "sub", "div", "neg", "where", "sum", "eq", "ne"})
_NEED_CONSTANT = frozenset({"mul", "add", "sub", "div"})


def dead_code_elimination(program: Program) -> Program:
    """Drop op nodes no output depends on, renumbering the rest (order kept).

    Inputs are always kept, so every slot still exists, and so are constants: an unused
    constant costs no instruction in any backend, while dropping one would renumber
    (and copy) every node after it.
    """
    nodes = program.nodes
    live = [False] * len(nodes)
    for o in program.outputs:
        live[o] = True
    for i in range(len(nodes) - 1, -1, -1):
        kind, payload = nodes[i]
        if kind == "input" or kind == "const":
            live[i] = True
        elif live[i]:
            for a in payload:
                live[a] = True
    if all(live):
        return program
    remap = [-1] * len(nodes)
    kept: list[tuple[str, Any]] = []
    renumbered = False  # false until the first dropped node: ids before it are unchanged
    for i, node in enumerate(nodes):
        if not live[i]:
            renumbered = True
            continue
        remap[i] = len(kept)
        kind, payload = node
        if renumbered and kind != "input" and kind != "const":
            node = (kind, tuple(map(remap.__getitem__, payload)))
        kept.append(node)
    return Program(
        tuple(kept),
        tuple(remap[o] for o in program.outputs),
        program.n_params,
        program.n_inputs,
        program.n_values,
    )


class Var:
    """A node of a :class:`Builder` usable with ``+ - *`` and unary ``-`` (for op rules)."""

    __slots__ = ("builder", "id")

    def __init__(self, builder: Builder, node_id: int) -> None:
        self.builder = builder
        self.id = node_id

    def _bin(self, name: str, a: Any, b: Any) -> Var:
        bld = self.builder
        return Var(bld, bld.emit(name, (bld.lift(a), bld.lift(b))))

    def __add__(self, other: Any) -> Var:
        return self._bin("add", self, other)

    def __radd__(self, other: Any) -> Var:
        return self._bin("add", other, self)

    def __sub__(self, other: Any) -> Var:
        return self._bin("sub", self, other)

    def __rsub__(self, other: Any) -> Var:
        return self._bin("sub", other, self)

    def __mul__(self, other: Any) -> Var:
        return self._bin("mul", self, other)

    def __rmul__(self, other: Any) -> Var:
        return self._bin("mul", other, self)

    def __neg__(self) -> Var:
        return Var(self.builder, self.builder.emit("neg", (self.id,)))

    def __truediv__(self, other: Any) -> Var:
        raise TypeError("op rules must use m.div(a, b), not '/'")

    def __pow__(self, other: Any) -> Var:
        raise TypeError("op rules must use m.pow(a, b), not '**'")

    def __repr__(self) -> str:
        return f"Var(%{self.id})"


def ir_algebra(builder: Builder, *, emitters: dict[str, Callable[..., Any]] | None = None
               ) -> Algebra:
    """The algebra whose ``m.sin(v)`` emits (or reuses) an IR node of ``builder``.

    Args:
        builder: where nodes go.
        emitters: per op name, a replacement ``(algebra, *args) -> result`` used instead
            of emitting the op itself (the lowering pass gives the expansions here).
    """
    algebra = Algebra("ir", {})

    def make(name: str) -> Callable[..., Any]:
        op = OPS_BY_NAME[name]
        if emitters is not None and name in emitters:
            replacement = emitters[name]

            def replaced(*args: Any) -> Any:
                return replacement(algebra, *args)

            return replaced

        def emit(*args: Any) -> Var:
            if op.arity != VARIADIC and len(args) != op.arity:
                raise TypeError(f"{name} takes {op.arity} arguments; got {len(args)}")
            return Var(builder, builder.emit(name, tuple([builder.lift(a) for a in args])))

        return emit

    for name in OPS_BY_NAME:
        setattr(algebra, name, make(name))
    return algebra


def copy_program(builder: Builder, program: Program,
                 through: Callable[[str, int], bool] | None = None,
                 m: Algebra | None = None) -> list[int]:
    """Emit every node of ``program`` into ``builder``; returns the new id of each node.

    Nodes for which ``through(kind, n_args)`` is true are emitted through the algebra
    ``m`` (the lowering pass uses this to expand ops on the way); the rest directly.
    """
    ids: list[int] = []
    append = ids.append
    emit = builder.emit
    for kind, payload in program.nodes:
        if kind == "input":
            append(builder.input(payload))
        elif kind == "const":
            append(builder.const(payload))
        elif through is not None and m is not None and through(kind, len(payload)):
            result = getattr(m, kind)(*[Var(builder, ids[a]) for a in payload])
            append(builder.lift(result))
        else:
            append(emit(kind, tuple([ids[a] for a in payload])))
    return ids
