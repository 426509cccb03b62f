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

A program has one canonical byte encoding (:meth:`Program.to_bytes`, about 10 bytes
per node): it is the program's structural key, its SHA-256 is its :meth:`Program.digest`
(the name of its kernels in the on-disk cache), and it is what a pickled program holds.

Example:
    >>> b = Builder(n_params=1, n_inputs=0)
    >>> x = b.input(0)
    >>> b.emit("mul", (x, b.const(1.0))) == x
    True
    >>> b.emit("add", (x, x)) == b.emit("add", (x, x))
    True
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain, compress
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

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

    @cached_property
    def n_instructions(self) -> int:
        """Number of op nodes (inputs and constants not counted)."""
        return sum(1 for kind, _ in self.nodes if kind not in ("input", "const"))

    @cached_property
    def _encoded(self) -> bytes:
        return _encode(self)

    def key(self) -> bytes:
        """A structural key: equal keys mean identical programs (constants by bits).

        It is the canonical encoding :meth:`to_bytes`, computed once per program (a
        few vectorised passes: about 20 ms for 10^5 nodes, 20 us for 30); Python caches
        the hash of bytes, and a dict hit compares them byte for byte, so an in-memory
        cache keyed by it is verified structurally, never trusted by hash alone.
        """
        return self._encoded

    def to_bytes(self) -> bytes:
        """The canonical byte encoding (see :meth:`from_bytes`); the same as :meth:`key`.

        Example:
            >>> b = Builder(n_params=1, n_inputs=0)
            >>> p = b.build([b.emit("mul", (b.input(0), b.const(-0.0)))], 1)
            >>> q = Program.from_bytes(p.to_bytes())
            >>> q == p and q.key() == p.key()
            True
        """
        return self._encoded

    @classmethod
    def from_bytes(cls, data: bytes) -> Program:
        """The program :meth:`to_bytes` encoded (its key and digest come for free).

        Raises:
            TypeError: ``data`` is not bytes-like.
            ValueError: ``data`` is not a complete, consistent encoding of a program.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes; got {type(data).__name__}")
        return _decode(bytes(data))  # bytes(b) is b itself

    def digest(self) -> str:
        """SHA-256 (hex) of :meth:`to_bytes`: a short name for the program's structure.

        Example:
            >>> b = Builder(n_params=1, n_inputs=0)
            >>> p = b.build([b.emit("sin", (b.input(0),))], 1)
            >>> len(p.digest()), p.digest() == Program.from_bytes(p.to_bytes()).digest()
            (64, True)
        """
        return self._digest

    @cached_property
    def _digest(self) -> str:
        return encoded_digest(self._encoded)

    def __reduce__(self) -> tuple[Any, ...]:
        # A pickle holds the canonical encoding, not 10^5 nested tuples: about 10 bytes
        # a node, and unpickling is a few vectorised passes (see _decode).
        return (_program_from_bytes, (self._encoded,))

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


# ----------------------------------------------------------------------------- encoding
#
# Layout (little-endian), format 1:
#   header   "SAIR", u32 format, then u64: n_nodes, n_outputs, n_params, n_inputs,
#            n_values, names_len, n_inputs_nodes, n_consts, n_ops, n_args
#   names    the node kinds in order of first appearance, "\0"-separated (utf-8)
#   kinds    u8 (u16 past 255 names) per node: its kind's index in names
#   slots    u32 per input node        consts  f64 per const node (bit patterns)
#   arity    u32 per op node           args    u32 per argument of every op node
#   outputs  u32 per output
# Every field is determined by the program, so equal programs encode to equal bytes.

_MAGIC = b"SAIR"
_FORMAT = 1
_HEADER = struct.Struct("<4sI10Q")
_U32 = np.dtype("<u4")
_F64 = np.dtype("<f8")


def _encode(program: Program) -> bytes:
    """The canonical encoding of ``program`` (see the layout above)."""
    nodes = program.nodes
    n = len(nodes)
    kinds = list(map(itemgetter(0), nodes))  # (zip(*nodes) is 20x slower)
    payloads = list(map(itemgetter(1), nodes))
    names = list(dict.fromkeys(kinds))
    index = {name: i for i, name in enumerate(names)}
    code_type = np.uint8 if len(names) <= 256 else np.dtype("<u2")
    codes = np.fromiter(map(index.__getitem__, kinds), dtype=code_type, count=n)
    absent = len(names)
    is_input = codes == index.get("input", absent)
    is_const = codes == index.get("const", absent)
    is_op = ~(is_input | is_const)
    try:
        slots = np.fromiter(compress(payloads, is_input.tolist()), dtype=np.int64)
        consts = np.fromiter(compress(payloads, is_const.tolist()), dtype=np.float64)
        ops = list(compress(payloads, is_op.tolist()))
        arity = np.fromiter(map(len, ops), dtype=np.int64, count=len(ops))
        args = np.fromiter(chain.from_iterable(ops), dtype=np.int64, count=int(arity.sum()))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"program nodes must be ('input', slot), ('const', float) or "
                        f"(op, (arg ids...)); could not encode them ({exc})") from None
    outputs = np.array(program.outputs, dtype=np.int64)
    words = [np.asarray(a, dtype=np.int64) for a in (slots, arity, args, outputs)]
    for a in words:
        if a.size and (a.min() < 0 or a.max() > 0xFFFFFFFF):
            raise ValueError("program ids and slots must be in [0, 2**32)")
    if any("\0" in name for name in names):
        raise ValueError(f"node kinds must not contain NUL characters; got {names!r:.200}")
    name_bytes = "\0".join(names).encode()
    header = _HEADER.pack(_MAGIC, _FORMAT, n, len(program.outputs), program.n_params,
                          program.n_inputs, program.n_values, len(name_bytes),
                          slots.size, consts.size, len(ops), args.size)
    return b"".join([header, name_bytes, codes.tobytes(), slots.astype(_U32).tobytes(),
                     consts.astype(_F64).tobytes(), arity.astype(_U32).tobytes(),
                     args.astype(_U32).tobytes(), outputs.astype(_U32).tobytes()])


class ProgramHeader(NamedTuple):
    """The sizes an encoded program announces (:func:`read_header`), read in O(1)."""

    n_nodes: int
    n_outputs: int
    n_params: int
    n_inputs: int
    n_values: int
    n_instructions: int

    @property
    def n_derivs(self) -> int:
        """Number of derivative outputs."""
        return self.n_outputs - self.n_values


def _bad(why: str) -> ValueError:
    return ValueError(f"data is not a scalar_autograd program encoding: {why}")


def _layout(data: bytes) -> tuple[tuple[int, ...], list[str], list[tuple[Any, int, int]]]:
    """The header fields, the kind names and ``(dtype, count, offset)`` per section;
    checks the magic, the format and the total length."""
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes; got {type(data).__name__}")
    if len(data) < _HEADER.size:
        raise _bad(f"{len(data)} bytes is shorter than the header")
    magic, version, *fields = _HEADER.unpack_from(data)
    if magic != _MAGIC or version != _FORMAT:
        raise _bad(f"magic {magic!r} format {version} (expected {_MAGIC!r} {_FORMAT})")
    n, n_out, _, _, _, names_len, n_in, n_const, n_ops, n_args = fields
    pos = _HEADER.size
    try:
        names = [sys.intern(s) for s in data[pos:pos + names_len].decode().split("\0")] \
            if names_len else []
    except UnicodeDecodeError:
        raise _bad("its kind names are not text") from None
    pos += names_len
    code_type = np.dtype(np.uint8) if len(names) <= 256 else np.dtype("<u2")
    sections = []
    for t, k in ((code_type, n), (_U32, n_in), (_F64, n_const), (_U32, n_ops),
                 (_U32, n_args), (_U32, n_out)):
        sections.append((t, k, pos))
        pos += t.itemsize * k
    if len(data) != pos:
        raise _bad(f"{len(data)} bytes where the header announces {pos}")
    return tuple(fields), names, sections


def read_header(data: bytes) -> ProgramHeader:
    """The sizes of the program ``data`` encodes, without decoding it.

    Raises:
        TypeError: ``data`` is not bytes.
        ValueError: ``data`` is not a complete program encoding (magic, format, length).

    Example:
        >>> b = Builder(n_params=2, n_inputs=0)
        >>> p = b.build([b.emit("mul", (b.input(0), b.input(1)))], 1)
        >>> h = read_header(p.to_bytes())
        >>> h.n_nodes, h.n_params, h.n_values, h.n_derivs, h.n_instructions
        (3, 2, 1, 0, 1)
    """
    fields, _, _ = _layout(data)
    n, n_out, n_params, n_inputs, n_values, _, _, _, n_ops, _ = fields
    return ProgramHeader(n, n_out, n_params, n_inputs, n_values, n_ops)


def encoded_digest(data: bytes) -> str:
    """SHA-256 (hex) of an encoding: what :meth:`Program.digest` returns for it."""
    return hashlib.sha256(data).hexdigest()


def _decode(data: bytes) -> Program:
    """The program ``data`` encodes, checked for consistency (every argument refers to
    an earlier node, every output to a node); its encoding and digest are cached."""
    fields, names, sections = _layout(data)
    n, n_out, n_params, n_inputs, n_values, _, n_in, n_const, n_ops, n_args = fields
    arrays = [np.frombuffer(data, dtype=t, count=k, offset=pos) for t, k, pos in sections]
    codes, slots, consts, arity, args, outputs = arrays
    absent = len(names)
    kind_of = {name: i for i, name in enumerate(names)}
    is_input = codes == kind_of.get("input", absent)
    is_const = codes == kind_of.get("const", absent)
    op_nodes = np.flatnonzero(~(is_input | is_const))
    if (n and int(codes.max()) >= len(names)) or int(is_input.sum()) != n_in \
            or int(is_const.sum()) != n_const or op_nodes.size != n_ops \
            or int(arity.sum(dtype=np.int64)) != n_args:
        raise _bad("its sections disagree with its header")
    owner = np.repeat(op_nodes, arity.astype(np.int64))
    if (args >= owner).any() or (outputs >= n).any():
        raise _bad("an argument or output refers to a later or missing node")

    payloads = np.empty(n, dtype=object)
    payloads[is_input] = slots.tolist()
    payloads[is_const] = consts.tolist()
    starts = np.concatenate(([0], np.cumsum(arity, dtype=np.int64)[:-1])) if n_ops \
        else np.zeros(0, np.int64)
    # one vectorised gather per distinct arity (np.unique would import numpy.ma: 14 ms)
    for a in np.flatnonzero(np.bincount(arity)).tolist() if n_ops else []:
        group = np.flatnonzero(arity == a)
        columns = args[starts[group, None] + np.arange(a)].T.tolist() if a else []
        tuples = zip(*columns) if a else (() for _ in range(group.size))
        payloads[op_nodes[group]] = np.fromiter(tuples, dtype=object, count=group.size)
    kinds = np.array(names, dtype=object)[codes].tolist() if n else []
    program = Program(tuple(zip(kinds, payloads.tolist())), tuple(outputs.tolist()),
                      n_params, n_inputs, n_values)
    cached = program.__dict__  # a frozen dataclass: fill the caches directly
    cached["_encoded"] = data
    cached["n_instructions"] = n_ops
    return program


def _program_from_bytes(data: bytes) -> Program:
    """Unpickling hook of :class:`Program` (kept stable: pickles name it)."""
    return _decode(data)


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
        key = (name, args)
        if name in COMMUTATIVE and args[0] > args[1]:
            # found whatever order it was first emitted in; kept in that order, so a
            # term keeps its user's order of arguments when a subexpression it reads
            # was created earlier (by another term): see ir/structure.py
            key = (name, (args[1], args[0]))
        found = self._index.get(key)
        if found is not None:
            return found
        i = len(self.nodes)
        self.nodes.append((name, args))
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
