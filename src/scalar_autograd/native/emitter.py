"""The one emitter of LLVM IR text: ops, batch loops, and element-wise kernels.

Every piece of LLVM text in the package is written through this module (the backends'
kernels, the tape VM, the optimiser updates, the Schur kernels). It knows a handful of
infix symbols and a libm/intrinsic name map, never individual ops: an op's lowering in
the op table says how it is emitted (see :func:`instruction`).

Pieces, from small to large:

* :func:`const`: a float64 constant, exactly (hex bit pattern, so ``-0.0``, ``inf``
  and ``nan`` survive).
* :func:`instruction`: the lines computing one op of the op table into an SSA name.
* :func:`batch_function`: ``@batch``, a loop calling ``@kernel`` on every row.
* :func:`bound_stubs`: zero-argument functions that call a function with pointer
  arguments, both read from a table (the bound calls of
  :mod:`scalar_autograd.native.abi`).
* :class:`FunctionEmitter`: one function's body with fresh SSA names: argument-block
  words, loads and stores, counted loops (:meth:`~FunctionEmitter.loop`), accumulator
  loops carrying values through phis (:meth:`~FunctionEmitter.loop_header`), dot
  products, and a lowered IR program's instructions (:meth:`~FunctionEmitter.compute`).
* :func:`elementwise_kernel_ir`: a whole function ``void @name(ptr %args)`` that runs
  an IR program once per element of some float64 arrays (an optimiser update: the
  arrays are ``x``, ``g`` and the state vectors; the scalars are hyperparameters).
* :func:`module`: declarations and functions joined into a module's text, for
  :func:`scalar_autograd.native.engine.native_engine`.

Generated code never contains a user string: SSA names are numbered, constants are
hex bit patterns, and function names are checked (:func:`check_symbol`).

Example:
    >>> lines = instruction("mul", "%y", ["%a", "%b"], set(), "%t.")
    >>> lines
    ['  %y = fmul double %a, %b']
    >>> const(1.0)
    '0x3FF0000000000000'
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from scalar_autograd.ir.passes import lower
from scalar_autograd.ir.program import Program
from scalar_autograd.ops import OPS_BY_NAME

_FCMP = {"==": "oeq", "!=": "une", ">": "ogt", "<": "olt", ">=": "oge", "<=": "ole"}
_BINARY = {"-": "fsub", "*": "fmul", "/": "fdiv"}
_INTRINSIC = {
    "sqrt": ("llvm.sqrt.f64", 1), "fabs": ("llvm.fabs.f64", 1),
    "floor": ("llvm.floor.f64", 1), "ceil": ("llvm.ceil.f64", 1),
    "round": ("llvm.round.f64", 1), "trunc": ("llvm.trunc.f64", 1),
}
_LIBM_ARITY = {"atan2": 2, "pow": 2}
_pack = struct.Struct("<d").pack
_unpack_q = struct.Struct("<Q").unpack
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")


def const(value: float) -> str:
    """``value`` as an LLVM ``double`` literal: its exact IEEE-754 bit pattern in hex."""
    return f"0x{_unpack_q(_pack(value))[0]:016X}"


def check_symbol(name: str) -> str:
    """``name`` if it is a plain LLVM global name (letters, digits, ``_`` and ``.``).

    Raises:
        ValueError: for anything else, so no caller-supplied string can inject IR.
    """
    if not isinstance(name, str) or not _SYMBOL.match(name):
        raise ValueError(f"a native function name must match {_SYMBOL.pattern!r}; "
                         f"got {name!r}")
    return name


def instruction(kind: str, name: str, args: list[str], declarations: set[str],
                temp: str) -> list[str]:
    """LLVM IR lines computing op ``kind`` of operands ``args`` into SSA value ``name``.

    ``declarations`` collects the libm/intrinsic declarations needed. The lines define
    ``name`` and, for intermediate results, only names that start with ``temp`` (``temp``
    followed by a digit for the partial sums of an n-ary sum, by a letter otherwise).
    The caller picks ``name`` and ``temp`` from name spaces of its own, so no other
    definition in the function can clash with them.

    No fast-math flags are emitted: LLVM may not reassociate or fuse, so the result is
    the IEEE-754 result of the op, in the order the op table states.
    """
    lowering = OPS_BY_NAME[kind].lower
    sym = lowering.symbol
    if lowering.kind == "infix":
        if sym == "+":
            lines = []
            acc = args[0]
            for j, b in enumerate(args[1:]):
                dst = name if j == len(args) - 2 else f"{temp}{j}"
                lines.append(f"  {dst} = fadd double {acc}, {b}")
                acc = dst
            return lines
        if sym in _BINARY:
            return [f"  {name} = {_BINARY[sym]} double {args[0]}, {args[1]}"]
        if sym == "neg":
            return [f"  {name} = fneg double {args[0]}"]
        if sym == "select":
            return [f"  {temp}c = fcmp une double {args[0]}, 0.0",
                    f"  {name} = select i1 {temp}c, double {args[1]}, double {args[2]}"]
        if sym in _FCMP:
            return [f"  {temp}c = fcmp {_FCMP[sym]} double {args[0]}, {args[1]}",
                    f"  {name} = uitofp i1 {temp}c to double"]
        raise ValueError(f"unknown infix symbol {sym!r} of op {kind}")
    if lowering.kind == "call":
        if sym == "fmod":
            return [f"  {name} = frem double {args[0]}, {args[1]}"]
        if sym == "copysign":   # a NaN sign source counts as positive (numerics.copysign)
            declarations.add("declare double @llvm.copysign.f64(double, double)")
            declarations.add("declare double @llvm.fabs.f64(double)")
            return [f"  {temp}n = fcmp uno double {args[1]}, 0.0",
                    f"  {temp}s = call double @llvm.copysign.f64(double {args[0]}, "
                    f"double {args[1]})",
                    f"  {temp}a = call double @llvm.fabs.f64(double {args[0]})",
                    f"  {name} = select i1 {temp}n, double {temp}a, double {temp}s"]
        if sym == "pow":  # numerics.pow: exponents 2 and -1 are a*a and 1/a
            declarations.add("declare double @pow(double, double)")
            a, b = args
            return [f"  {temp}p = call double @pow(double {a}, double {b})",
                    f"  {temp}q = fmul double {a}, {a}",
                    f"  {temp}r = fdiv double 1.0, {a}",
                    f"  {temp}t = fcmp oeq double {b}, 2.0",
                    f"  {temp}u = fcmp oeq double {b}, -1.0",
                    f"  {temp}v = select i1 {temp}u, double {temp}r, double {temp}p",
                    f"  {name} = select i1 {temp}t, double {temp}q, double {temp}v"]
        fn, arity = _INTRINSIC.get(sym, (sym, _LIBM_ARITY.get(sym, 1)))
        declarations.add(f"declare double @{fn}({', '.join(['double'] * arity)})")
        call_args = ", ".join(f"double {a}" for a in args)
        return [f"  {name} = call double @{fn}({call_args})"]
    raise ValueError(f"op {kind} must be lowered before code generation")


def batch_function(kernel_prefix: str, scratch: str, prologue: str,
                   strides: tuple[str, str, str, str], name: str = "batch") -> str:
    """LLVM IR of ``@batch``: ``@kernel`` on every row of ``X, U, V, D``.

    ``kernel_prefix`` is the leading argument list of ``@kernel`` before the four row
    pointers (``""`` or ``"ptr %desc, "``), ``scratch`` its last argument, ``prologue``
    lines computing the ``strides`` (values or SSA names for params, inputs, values and
    derivatives per row). ``name``: the function's name (``"rows"`` with a params
    stride of ``"0"`` is the llvm backend's one-params, many-rows loop).
    """
    sx, su, sv, sd = strides
    head = "ptr %desc, i64 %n" if kernel_prefix else "i64 %n"
    params = f"{head}, ptr %X, ptr %U, ptr %V, ptr %D, ptr {scratch}"
    return f"""define void @{check_symbol(name)}({params}) nounwind {{
entry:
{prologue}  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %ix = mul i64 %i, {sx}
  %iu = mul i64 %i, {su}
  %iv = mul i64 %i, {sv}
  %id = mul i64 %i, {sd}
  %px = getelementptr inbounds double, ptr %X, i64 %ix
  %pu = getelementptr inbounds double, ptr %U, i64 %iu
  %pv = getelementptr inbounds double, ptr %V, i64 %iv
  %pd = getelementptr inbounds double, ptr %D, i64 %id
  call void @kernel({kernel_prefix}ptr %px, ptr %pu, ptr %pv, ptr %pd, ptr {scratch})
  %next = add i64 %i, 1
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  ret void
}}"""


def bound_stubs(table: int, count: int, arity: int) -> str:
    """Module text of ``count`` zero-argument functions ``@stub0``, ``@stub1``, ...

    ``table`` is the address of an int64 array of ``count`` entries of ``arity + 1``
    words. Stub ``j`` reads entry ``j``: word 0 is the address of a function
    ``void f(ptr, ..., ptr)`` of ``arity`` pointers, words ``1..arity`` are its
    arguments; it calls ``f`` with them. Word 0 is read atomically on every call, so a
    thread may change it (to code computing the same thing) while others call. The
    table's address is the only number baked in.

    Example:
        >>> text = bound_stubs(4096, 2, 1)
        >>> text.count("define void @stub"), "call void %f(ptr %a1)" in text
        (2, True)
    """
    if count < 1 or arity < 0:
        raise ValueError(f"count must be >= 1 and arity >= 0; got {count}, {arity}")
    functions = []
    for j in range(count):
        lines = [f"define void @stub{j}() nounwind {{", "entry:",
                 f"  %e = getelementptr inbounds i64, ptr inttoptr (i64 {int(table)} to ptr), "
                 f"i64 {j * (arity + 1)}",
                 "  %f = load atomic ptr, ptr %e unordered, align 8"]
        for k in range(1, arity + 1):
            lines.append(f"  %p{k} = getelementptr inbounds i64, ptr %e, i64 {k}")
            lines.append(f"  %a{k} = load ptr, ptr %p{k}, align 8")
        args = ", ".join(f"ptr %a{k}" for k in range(1, arity + 1))
        lines += [f"  tail call void %f({args})", "  ret void", "}"]
        functions.append("\n".join(lines))
    return module("bound-call stubs", set(), functions) + "\n"


def module(comment: str, declarations: set[str], functions: Sequence[str]) -> str:
    """A module's text: a comment line, the sorted declarations, then the functions."""
    head = f"; {comment}\n" + "".join(f"{d}\n" for d in sorted(declarations))
    return head + "\n" + "\n".join(functions)


class FunctionEmitter:
    """The body of one LLVM function, written line by line with fresh SSA names.

    Fresh names are ``%<stem><number>`` (:meth:`fresh`); names the caller writes by hand
    should contain a ``.`` or differ in stem so they cannot clash. The function takes
    one argument, ``ptr %args``: an int64 *argument block* (see
    :func:`scalar_autograd.native.abi.address_block`) read with :meth:`arg`.
    The body starts in block ``entry``.

    Example:
        >>> e = FunctionEmitter()
        >>> n, x = e.arg(0, "i64"), e.arg(1, "ptr")
        >>> i = e.loop("i", "0", n, "entry")
        >>> e.store("0.0", x, i)
        >>> e.end_loop("i")
        >>> text = e.function("zero")     # void @zero(ptr %args): x[0:n] = 0
        >>> text.splitlines()[0]
        'define void @zero(ptr %args) nounwind {'
    """

    def __init__(self, *, inbounds: bool = False) -> None:
        """``inbounds``: address arithmetic (:meth:`gep`) promises to stay inside the
        object, which lets LLVM reason about it (every index must then be in bounds)."""
        self.lines: list[str] = []
        self.declarations: set[str] = set()
        self._n = 0
        self._gep = "getelementptr inbounds" if inbounds else "getelementptr"

    def fresh(self, stem: str) -> str:
        """A new SSA name ``%<stem><number>``."""
        self._n += 1
        return f"%{stem}{self._n}"

    def emit(self, line: str) -> None:
        """One instruction (indented)."""
        self.lines.append("  " + line)

    def label(self, name: str) -> None:
        """Start basic block ``name``."""
        self.lines.append(f"{name}:")

    def arg(self, index: int, kind: str, block: str = "%args") -> str:
        """Word ``index`` of the argument block (``block``), as an ``i64`` or a ``ptr``."""
        p, v = self.fresh("ap"), self.fresh("a")
        self.emit(f"{p} = {self._gep} i64, ptr {block}, i64 {index}")
        self.emit(f"{v} = load i64, ptr {p}")
        if kind == "i64":
            return v
        q = self.fresh("p")
        self.emit(f"{q} = inttoptr i64 {v} to ptr")
        return q

    def gep(self, kind: str, base: str, index: str) -> str:
        """The address of element ``index`` of type ``kind`` at ``base``."""
        p = self.fresh("g")
        self.emit(f"{p} = {self._gep} {kind}, ptr {base}, i64 {index}")
        return p

    def load(self, kind: str, base: str, index: str) -> str:
        """``base[index]`` (elements of type ``kind``)."""
        v = self.fresh("l")
        self.emit(f"{v} = load {kind}, ptr {self.gep(kind, base, index)}")
        return v

    def store(self, value: str, base: str, index: str) -> None:
        """``base[index] = value`` (a double)."""
        self.emit(f"store double {value}, ptr {self.gep('double', base, index)}")

    def op(self, opcode: str, kind: str, a: str, b: str) -> str:
        """``a <opcode> b`` of type ``kind`` (``fadd``, ``mul``, ...)."""
        v = self.fresh("t")
        self.emit(f"{v} = {opcode} {kind} {a}, {b}")
        return v

    def dot(self, pairs: list[tuple[str, str]], start: str | None = None) -> str:
        """``start + sum a * b`` left to right (``0.0`` when empty and no start)."""
        acc = start
        for a, b in pairs:
            prod = self.op("fmul", "double", a, b)
            acc = prod if acc is None else self.op("fadd", "double", acc, prod)
        return acc if acc is not None else "0.0"

    def add_to(self, base: str, index: str, value: str) -> None:
        """``base[index] += value``."""
        p = self.gep("double", base, index)
        old, new = self.fresh("o"), self.fresh("n")
        self.emit(f"{old} = load double, ptr {p}")
        self.emit(f"{new} = fadd double {old}, {value}")
        self.emit(f"store double {new}, ptr {p}")

    def compute(self, program: Program, operands: Sequence[str], prefix: str) -> list[str]:
        """Emit ``program``'s instructions; returns the SSA names of its outputs.

        ``operands[k]`` is the SSA name (or constant) of the program's input slot ``k``.
        The program must be lowered (:func:`scalar_autograd.ir.passes.lower`). Values
        are named ``<prefix>v<i>`` and temporaries ``<prefix>t<i>.*``, so ``prefix``
        (e.g. ``"%u."``) must start a name space of its own in this function.
        """
        names: list[str] = []
        for i, (kind, payload) in enumerate(program.nodes):
            if kind == "input":
                names.append(operands[payload])
            elif kind == "const":
                names.append(const(payload))
            else:
                name = f"{prefix}v{i}"
                self.lines.extend(instruction(kind, name, [names[a] for a in payload],
                                              self.declarations, f"{prefix}t{i}."))
                names.append(name)
        return [names[o] for o in program.outputs]

    def loop_header(self, name: str, preheader: str, phis: list[tuple[str, str, str, str]],
                    counter: str, stop: str) -> None:
        """Open a loop whose body is the single block ``name.body`` (looping back to
        ``name.head``): ``phis`` are ``(type, value, initial, next)``; it runs while
        ``counter < stop``. The body ends with ``br label %name.head``; after the loop
        (block ``name.exit``) each phi ``value`` holds its final value.

        This is the accumulator loop: a dot product is a ``double`` phi from ``0.0``
        whose ``next`` is ``fadd value, a*b``, in index order.
        """
        self.emit(f"br label %{name}.head")
        self.label(f"{name}.head")
        for kind, value, initial, following in phis:
            self.emit(f"{value} = phi {kind} [{initial}, %{preheader}], "
                      f"[{following}, %{name}.body]")
        done = self.fresh("done")
        self.emit(f"{done} = icmp sge i64 {counter}, {stop}")
        self.emit(f"br i1 {done}, label %{name}.exit, label %{name}.body")
        self.label(f"{name}.body")

    def loop(self, name: str, start: str, stop: str, preheader: str) -> str:
        """Open ``for i in range(start, stop)``; returns ``i`` (``%<name>``).

        ``preheader`` is the block the loop is entered from; the body starts in block
        ``<name>.body``. Close it with :meth:`end_loop`.
        """
        i = f"%{name}"
        self.emit(f"br label %{name}.head")
        self.label(f"{name}.head")
        self.emit(f"{i} = phi i64 [{start}, %{preheader}], [{i}.next, %{name}.latch]")
        done = self.fresh("done")
        self.emit(f"{done} = icmp sge i64 {i}, {stop}")
        self.emit(f"br i1 {done}, label %{name}.exit, label %{name}.body")
        self.label(f"{name}.body")
        return i

    def end_loop(self, name: str) -> None:
        """Close the loop :meth:`loop` opened; code continues in ``<name>.exit``."""
        self.emit(f"br label %{name}.latch")
        self.label(f"{name}.latch")
        self.emit(f"%{name}.next = add i64 %{name}, 1")
        self.emit(f"br label %{name}.head")
        self.label(f"{name}.exit")

    def index(self, *terms: str | int) -> str:
        """The ``i64`` sum of products given as ``"a*b"`` pairs or plain terms."""
        acc: str | None = None
        for term in terms:
            if isinstance(term, int):
                value = str(term)
            elif "*" in term:
                a, b = term.split("*")
                value = self.op("mul", "i64", a, b)
            else:
                value = term
            acc = value if acc is None else self.op("add", "i64", acc, value)
        return acc if acc is not None else "0"

    def function(self, name: str, *, params: str = "ptr %args",
                 internal: bool = False) -> str:
        """The text of ``define void @name(<params>)`` with this body and ``ret void``.

        ``params`` is the parameter list (by default the one argument block, ``ptr
        %args``). The declarations the body needs are in :attr:`declarations`; put them
        in the module (see :func:`module`).
        """
        linkage = "internal " if internal else ""
        return (f"define {linkage}void @{check_symbol(name)}({params}) nounwind {{\n"
                "entry:\n" + "\n".join(self.lines) + "\n  ret void\n}\n")


@dataclass(frozen=True)
class Operand:
    """Where an element-wise kernel's program input comes from.

    ``kind`` is ``"array"`` (element ``i`` of array ``index``) or ``"scalar"`` (entry
    ``index`` of the scalars array, the same for every element).
    """

    kind: str
    index: int

    def __post_init__(self) -> None:
        if self.kind not in ("array", "scalar"):
            raise ValueError(f"kind must be 'array' or 'scalar'; got {self.kind!r}")
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"index must be an integer >= 0; got {self.index!r}")


def array(index: int) -> Operand:
    """Element ``i`` of array ``index`` of an element-wise kernel."""
    return Operand("array", index)


def scalar(index: int) -> Operand:
    """Entry ``index`` of an element-wise kernel's scalars array."""
    return Operand("scalar", index)


def elementwise_kernel_ir(name: str, program: Program, inputs: Sequence[Operand],
                          outputs: Sequence[int], n_arrays: int,
                          declarations: set[str]) -> str:
    """``void @name(ptr %args)``: run ``program`` once per element of some arrays.

    This is how an update written as an IR program (an optimiser step, an axpy) becomes
    native code: the arithmetic is the program's, emitted op by op through
    :func:`instruction` in the program's order and without fast-math flags, so the
    result of every element is what the op table (and numpy doing the same operations
    in the same order) gives, bit for bit.

    The argument block (int64 words, :func:`scalar_autograd.native.abi.address_block`):

    ====================  ===================================================
    word 0                ``n``, the number of elements
    words 1 .. n_arrays   addresses of the float64 arrays (``n`` entries each)
    word n_arrays + 1     address of the float64 scalars array
    ====================  ===================================================

    For each element ``i`` in ``0 .. n-1``: program input slot ``k`` reads
    ``inputs[k]`` (:func:`array` ``(j)``: ``arrays[j][i]``; :func:`scalar` ``(j)``:
    ``scalars[j]``, read once before the loop), then program output ``k`` is stored
    into ``arrays[outputs[k]][i]``. Every load of an element happens before its stores,
    so an output array may be an input array (an in-place update), element by element.

    Args:
        name: the function's name (letters, digits, ``_``, ``.``).
        program: the per-element arithmetic; lowered on the way (expansions into
            primitive ops), its params and inputs taken together as the slots.
        inputs: one :class:`Operand` per input slot of ``program``.
        outputs: for each output of ``program``, the array it is stored into.
        n_arrays: how many arrays the block holds.
        declarations: collects the libm/intrinsic declarations the module needs.

    Raises:
        TypeError: an entry of ``inputs`` that is not an :class:`Operand`.
        ValueError: inputs or outputs that do not match ``program`` or ``n_arrays``,
            or a ``name`` that is not a plain symbol.

    Example (``x -= lr * g``, in place):
        >>> from scalar_autograd.ir.program import Builder
        >>> b = Builder(n_params=0, n_inputs=3)      # slots: x, g, lr
        >>> x, g, lr = b.input(0), b.input(1), b.input(2)
        >>> step = b.build([b.emit("sub", (x, b.emit("mul", (lr, g))))], 1)
        >>> decls: set[str] = set()
        >>> text = elementwise_kernel_ir("sgd", step, [array(0), array(1), scalar(0)],
        ...                              [0], 2, decls)
        >>> text.splitlines()[0]
        'define void @sgd(ptr %args) nounwind {'
    """
    check_symbol(name)
    n_slots = program.n_params + program.n_inputs
    if len(inputs) != n_slots:
        raise ValueError(f"inputs must give one operand per program input ({n_slots}); "
                         f"got {len(inputs)}")
    if len(outputs) != len(program.outputs):
        raise ValueError(f"outputs must name one array per program output "
                         f"({len(program.outputs)}); got {len(outputs)}")
    for k, operand in enumerate(inputs):
        if not isinstance(operand, Operand):
            raise TypeError(f"inputs[{k}] must be array(j) or scalar(j); got {operand!r}")
        if operand.kind == "array" and operand.index >= n_arrays:
            raise ValueError(f"inputs[{k}] reads array {operand.index}; there are "
                             f"{n_arrays}")
    for k, j in enumerate(outputs):
        if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < n_arrays:
            raise ValueError(f"outputs[{k}] must be an array index in 0..{n_arrays - 1}; "
                             f"got {j!r}")
    e = FunctionEmitter()
    n = e.arg(0, "i64")
    arrays = [e.arg(1 + j, "ptr") for j in range(n_arrays)]
    scalars = e.arg(1 + n_arrays, "ptr")
    loaded = {op.index: e.load("double", scalars, str(op.index))
              for op in inputs if op.kind == "scalar"}
    i = e.loop("i", "0", n, "entry")
    operands = [e.load("double", arrays[op.index], i) if op.kind == "array"
                else loaded[op.index] for op in inputs]
    results = e.compute(lower(program), operands, "%u.")
    for value, j in zip(results, outputs, strict=True):
        e.store(value, arrays[j], i)
    e.end_loop("i")
    declarations |= e.declarations
    return e.function(name)
