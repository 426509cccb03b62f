"""A native virtual machine for very large programs: compiled once, fed a tape.

LLVM's code generation costs about 10 µs per instruction at O0 on this kind of
machine, so a 10^6-instruction program would take tens of seconds to compile. The
``"vm"`` backend instead encodes the program as a *tape* and runs it on one interpreter
loop written in LLVM IR and compiled once per process (CasADi's SX virtual machine does
the same). ``"llvm"`` and ``"auto"`` choose it for large programs
(:data:`~scalar_autograd.backends.registry.VM_THRESHOLD`). The VM's instruction set is
generated from the op table's lowerings, through the same
:func:`~scalar_autograd.native.emitter.instruction` emitter as native code.

**The tape** (format :data:`TAPE_FORMAT`) is an int32 array of rows
``opcode, dst, a, b, c`` over a file of float64 *registers*, a constant pool and the
registers of the outputs. Registers ``0 .. n_params-1`` hold the params, then the
runtime inputs, then the constant pool: the kernel copies them in before the first row,
so leaves cost no row at all. Every other register is written by exactly one row, in
row order (the tape is in SSA form), which is what makes the rewrites below safe.

**Superinstructions.** A row may do the work of two: ``mul_add`` (``a*b + c``),
``add_add`` (``(a + b) + c``) and ``sincos`` (``sin a`` into ``dst`` and ``cos a`` into
register ``b``). :func:`build_tape` fuses a ``mul`` or ``add`` whose result is read once,
by an ``add``, into that row (a chain of adds pairs up every other link), and turns
``add(x, neg y)`` into ``sub(x, y)``. Each is exact: both roundings of ``a*b + c`` happen
as before (no fused multiply-add, no fast-math), and ``x + (-y)`` is ``x - y`` in IEEE
arithmetic. A fused pair costs one dispatch instead of two.

The ``sin`` and ``cos`` of one register (a forward ``sin`` and its gradient's ``cos``)
are computed together, where the first of them was: in one ``sincos`` row, whose single
range reduction makes it about 15% cheaper than the two calls on independent terms;
but where the next row reads the first result (a chain of dependent rows, such as a
recurrence) it is that call's latency that counts, so the two stay separate calls, side
by side, and the second runs alongside the rest of the chain (about 8% faster on the
chain benchmark). ``sincos`` is glibc's, whose results are those of ``sin`` and ``cos``
bit for bit (checked when the VM is built, see :func:`exact_sincos`; elsewhere the row
calls ``sin`` and ``cos``).

**Gradients without IR.** ``build_tape(program, reverse=True)`` writes the tape of a
program's values and reverse-mode Jacobian straight from the forward program, with the
arithmetic of :func:`scalar_autograd.ir.autodiff.reverse` (same partial rules, same
contributions, accumulated in the same order, so the same bits), without building the
gradient program as IR: the rule of each op is run once per *shape* (op, number of
arguments, which arguments receive gradient) on a tiny program, and its rows are copied
for every node of that shape with numpy. The two graph walks it needs (which nodes
depend on a param, which get an adjoint) run in native code. For the 10^6-node chain
of ``benchmarks/bench_vm.py`` this takes about 1 s, where differentiating the program
into IR and writing its tape take about 6 s. (Values may differ only in the sign or
payload of a NaN, which no op can observe: ``copysign`` reads a NaN sign as positive.)

A tape is plain data, so a kernel saves as a
:class:`~scalar_autograd.backends.base.KernelArtifact` of three arrays and loads in
another process without the program (:meth:`VMBackend.load` checks every index of the
tape first, so even a damaged tape cannot make the VM read or write out of bounds).

Example:
    >>> import numpy as np, scalar_autograd as sa
    >>> from scalar_autograd.ir.trace import trace
    >>> x = sa.Value(0.0)
    >>> program, _ = trace([sa.sin(x) * 2.0], [x])
    >>> k = VMKernel(program)
    >>> val = np.zeros(1); k.run(np.array([0.5]), np.zeros(0), val, np.zeros(0),
    ...                          np.zeros(k.n_scratch))
    >>> bool(val[0] == 2.0 * np.sin(0.5))
    True
    >>> g = VMKernel.reverse(program)    # value and gradient, no gradient program built
    >>> der = np.zeros(1); g.run(np.array([0.5]), np.zeros(0), val, der,
    ...                          np.zeros(g.n_scratch))
    >>> bool(der[0] == np.cos(0.5) * 2.0)
    True
"""

from __future__ import annotations

import ctypes
import math
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, compress
from operator import itemgetter
from typing import Any

import numpy as np

from scalar_autograd.backends.base import DerivedProgram, KernelArtifact
from scalar_autograd.ir.passes import MAX_SUM_ARITY, copy_lowered, lowering_algebra
from scalar_autograd.ir.program import Builder, Program, Var
from scalar_autograd.native.abi import address, address_block, bound_call
from scalar_autograd.native.emitter import FunctionEmitter, batch_function, instruction, module
from scalar_autograd.native.engine import ObjectCache, native_engine
from scalar_autograd.ops import OPS, OPS_BY_NAME, Op, select_contribution

PRIMITIVES: tuple[str, ...] = tuple(
    op.name for op in OPS if op.lower.kind in ("infix", "call") and op.name != "sum"
)
"""The ops a row computes directly (sums become chains of ``add``)."""

SUPERINSTRUCTIONS: tuple[str, ...] = ("mul_add", "add_add", "sincos")
"""Rows doing the work of two (see the module docstring)."""

OPCODES: tuple[str, ...] = PRIMITIVES + SUPERINSTRUCTIONS
"""The VM's instruction set, by opcode."""

TAPE_FORMAT = 2
"""Version of the tape layout (leaves in registers, superinstructions); an artifact of
another version is not loaded."""

_OPCODE = {name: i for i, name in enumerate(OPCODES)}
_ROW = 5  # opcode, dst, a, b, c
_ADD, _SUB, _MUL, _NEG = (_OPCODE[n] for n in ("add", "sub", "mul", "neg"))
_SIN, _COS = _OPCODE["sin"], _OPCODE["cos"]
_MUL_ADD, _ADD_ADD, _SINCOS = (_OPCODE[n] for n in SUPERINSTRUCTIONS)
_N_OPERANDS = np.array([OPS_BY_NAME[n].arity for n in PRIMITIVES] + [3, 3, 1], dtype=np.int64)
"""Registers each opcode reads (``a``, then ``b``, then ``c``)."""

_DESC = ("code", "n_rows", "consts", "n_consts", "outs", "n_values", "n_outputs",
         "n_params", "n_inputs")
"""The int64 words of a tape's descriptor (:attr:`VMKernel.desc`), in order."""


# ----------------------------------------------------------------------------- sincos

def _sincos_matches_sin_and_cos() -> bool:
    """Whether this process's ``sincos`` returns exactly ``sin`` and ``cos``, bit for bit,
    on a spread of arguments (signed zeros, subnormals, multiples of pi/2, the range
    reduction's boundaries, huge values, infinities, NaN)."""
    try:
        libc = ctypes.CDLL(None)
        sincos, sin, cos = libc.sincos, libc.sin, libc.cos
    except (AttributeError, OSError, TypeError):
        return False
    double = ctypes.c_double
    sin.restype = cos.restype = double
    sin.argtypes = cos.argtypes = [double]
    sincos.restype = None
    sincos.argtypes = [double, ctypes.POINTER(double), ctypes.POINTER(double)]
    rng = np.random.default_rng(0)
    points = [0.0, 5e-324, 1e-310, 1e-20, 2.0**-27, 0.855469, 2.426265, 105414.35,
              281474976710656.0, 1e22, 1e300, math.inf, math.nan]
    points += [k * math.pi / 4 for k in range(-16, 17)]
    points += (rng.uniform(-8.0, 8.0, 400).tolist() + rng.uniform(-1e6, 1e6, 100).tolist()
               + (10.0 ** rng.uniform(-300, 300, 100)).tolist())
    s, c = double(), double()
    bits = struct.Struct("<d").pack
    for x in points:
        for v in (x, -x):
            sincos(v, ctypes.byref(s), ctypes.byref(c))
            for got, want in ((s.value, sin(v)), (c.value, cos(v))):
                if bits(got) != bits(want) and not (math.isnan(got) and math.isnan(want)):
                    return False
    return True


_exact_sincos: bool | None = None


def exact_sincos() -> bool:
    """Whether the VM's ``sincos`` row calls the C library's ``sincos`` (checked once a
    process: it must agree with ``sin`` and ``cos`` bit for bit, as glibc's does); if not,
    the row calls ``sin`` and ``cos`` (same results, no shared range reduction)."""
    global _exact_sincos
    if _exact_sincos is None:
        _exact_sincos = _sincos_matches_sin_and_cos()
    return _exact_sincos


# ----------------------------------------------------------------------------- the VM's code

def _run_function(use_sincos: bool) -> tuple[str, set[str]]:
    """``@run``: the interpreter loop, one ``switch`` case per opcode; also the
    declarations it needs."""
    e = FunctionEmitter(inbounds=True)
    if use_sincos:  # sincos writes its two results through pointers: two stack slots
        e.emit("%sc.sin = alloca double")
        e.emit("%sc.cos = alloca double")
    i = e.loop("i", "0", "%n", "entry")
    row = e.op("mul", "i64", i, str(_ROW))
    words = [e.load("i32", "%code", e.index(row, j)) for j in range(_ROW)]
    dst, a, b, c = (e.fresh(stem) for stem in ("dst", "a", "b", "c"))
    for name, word in zip((dst, a, b, c), words[1:], strict=True):
        e.emit(f"{name} = sext i32 {word} to i64")
    va, vb, vc = (e.load("double", "%regs", r) for r in (a, b, c))
    cases = " ".join(f"i32 {code}, label %case{code}" for code in range(len(OPCODES)))
    e.emit(f"switch i32 {words[0]}, label %store [ {cases} ]")
    incoming = []
    for code, name in enumerate(OPCODES):
        e.label(f"case{code}")
        result = f"%r{code}"  # each case defines %r{code} and temporaries %r{code}.*
        if name == "mul_add":
            e.emit(f"{result}.p = fmul double {va}, {vb}")
            e.emit(f"{result} = fadd double {result}.p, {vc}")
        elif name == "add_add":
            e.emit(f"{result}.s = fadd double {va}, {vb}")
            e.emit(f"{result} = fadd double {result}.s, {vc}")
        elif name == "sincos":
            if use_sincos:
                e.declarations.add("declare void @sincos(double, ptr, ptr)")
                e.emit(f"call void @sincos(double {va}, ptr %sc.sin, ptr %sc.cos)")
                e.emit(f"{result} = load double, ptr %sc.sin")
                e.emit(f"{result}.cos = load double, ptr %sc.cos")
            else:
                e.lines.extend(instruction("sin", result, [va], e.declarations,
                                           f"{result}.t"))
                e.lines.extend(instruction("cos", f"{result}.cos", [va], e.declarations,
                                           f"{result}.u"))
            e.store(f"{result}.cos", "%regs", b)
        else:
            e.lines.extend(instruction(name, result, [va, vb, vc][:OPS_BY_NAME[name].arity],
                                       e.declarations, f"{result}.t"))
        e.emit("br label %store")
        incoming.append(f"[ {result}, %case{code} ]")
    incoming.append("[ 0x7FF8000000000000, %i.body ]")  # unknown opcode: nan
    e.label("store")
    e.emit(f"%r = phi double {', '.join(incoming)}")
    e.store("%r", "%regs", dst)
    e.end_loop("i")
    return e.function("run", internal=True,
                      params="ptr %code, i64 %n, ptr %regs"), e.declarations


def _descriptor(e: FunctionEmitter) -> dict[str, str]:
    """Load every word of the descriptor ``%desc`` (integers, and pointers by name)."""
    fields = {name: e.arg(j, "i64", "%desc") for j, name in enumerate(_DESC)}
    fields["n_derivs"] = e.op("sub", "i64", fields["n_outputs"], fields["n_values"])
    return fields


def _copy(e: FunctionEmitter, name: str, source: str, dest: str, count: str,
          preheader: str) -> None:
    """``dest[0:count] = source[0:count]`` (doubles), as loop ``name``."""
    j = e.loop(name, "0", count, preheader)
    e.store(e.load("double", source, j), dest, j)
    e.end_loop(name)


def _kernel_function() -> str:
    """``@kernel``: copy the leaves into their registers, run the tape, then copy the
    output registers to ``val`` and ``der``."""
    e = FunctionEmitter(inbounds=True)
    f = _descriptor(e)
    code, consts, outs = (e.fresh(stem) for stem in ("code", "consts", "outs"))
    for name, word in ((code, "code"), (consts, "consts"), (outs, "outs")):
        e.emit(f"{name} = inttoptr i64 {f[word]} to ptr")
    inputs = e.gep("double", "%regs", f["n_params"])
    pool = e.gep("double", inputs, f["n_inputs"])
    _copy(e, "cx", "%x", "%regs", f["n_params"], "entry")
    _copy(e, "cu", "%u", inputs, f["n_inputs"], "cx.exit")
    _copy(e, "cc", consts, pool, f["n_consts"], "cu.exit")
    e.emit(f"call void @run(ptr {code}, i64 {f['n_rows']}, ptr %regs)")
    k = e.loop("k", "0", f["n_outputs"], "cc.exit")
    register = e.fresh("o")
    e.emit(f"{register} = sext i32 {e.load('i32', outs, k)} to i64")
    value = e.load("double", "%regs", register)
    is_value, dest = e.fresh("isval"), e.fresh("dest")
    e.emit(f"{is_value} = icmp slt i64 {k}, {f['n_values']}")
    to_val = e.gep("double", "%val", k)
    to_der = e.gep("double", "%der", e.op("sub", "i64", k, f["n_values"]))
    e.emit(f"{dest} = select i1 {is_value}, ptr {to_val}, ptr {to_der}")
    e.emit(f"store double {value}, ptr {dest}")
    e.end_loop("k")
    return e.function("kernel", params="ptr %desc, ptr %x, ptr %u, ptr %val, ptr %der, "
                                       "ptr %regs")


def _batch_function() -> str:
    """``@batch``: ``@kernel`` per row, the row strides read from the descriptor."""
    e = FunctionEmitter(inbounds=True)
    f = _descriptor(e)
    prologue = "".join(line + "\n" for line in e.lines)
    return batch_function("ptr %desc, ", "%regs", prologue,
                          (f["n_params"], f["n_inputs"], f["n_values"], f["n_derivs"]))


_GRAPH_FUNCTIONS = """\
define void @active(i64 %n, ptr %off, ptr %args, ptr %flag) nounwind {
entry:
  br label %node
node:
  %i = phi i64 [ 0, %entry ], [ %i.next, %node.done ]
  %more = icmp slt i64 %i, %n
  br i1 %more, label %node.body, label %exit
node.body:
  %ps = getelementptr inbounds i64, ptr %off, i64 %i
  %s = load i64, ptr %ps
  %i.next = add i64 %i, 1
  %pt = getelementptr inbounds i64, ptr %off, i64 %i.next
  %t = load i64, ptr %pt
  br label %edge
edge:
  %e = phi i64 [ %s, %node.body ], [ %e.next, %edge.body ]
  %acc = phi i8 [ 0, %node.body ], [ %acc.next, %edge.body ]
  %in = icmp slt i64 %e, %t
  br i1 %in, label %edge.body, label %node.done
edge.body:
  %pa = getelementptr inbounds i64, ptr %args, i64 %e
  %a = load i64, ptr %pa
  %pf = getelementptr inbounds i8, ptr %flag, i64 %a
  %f = load i8, ptr %pf
  %acc.next = or i8 %acc, %f
  %e.next = add i64 %e, 1
  br label %edge
node.done:
  %pi = getelementptr inbounds i8, ptr %flag, i64 %i
  %old = load i8, ptr %pi
  %new = or i8 %old, %acc
  store i8 %new, ptr %pi
  br label %node
exit:
  ret void
}

define void @reach(i64 %top, ptr %off, ptr %args, ptr %ok, ptr %reached) nounwind {
entry:
  br label %node
node:
  %k = phi i64 [ 0, %entry ], [ %k.next, %node.next ]
  %more = icmp sle i64 %k, %top
  br i1 %more, label %node.body, label %exit
node.body:
  %i = sub i64 %top, %k
  %k.next = add i64 %k, 1
  %pr = getelementptr inbounds i8, ptr %reached, i64 %i
  %r = load i8, ptr %pr
  %live = icmp ne i8 %r, 0
  br i1 %live, label %visit, label %node.next
visit:
  %ps = getelementptr inbounds i64, ptr %off, i64 %i
  %s = load i64, ptr %ps
  %i1 = add i64 %i, 1
  %pt = getelementptr inbounds i64, ptr %off, i64 %i1
  %t = load i64, ptr %pt
  br label %edge
edge:
  %e = phi i64 [ %s, %visit ], [ %e.next, %edge.next ]
  %in = icmp slt i64 %e, %t
  br i1 %in, label %edge.body, label %node.next
edge.body:
  %e.next = add i64 %e, 1
  %po = getelementptr inbounds i8, ptr %ok, i64 %e
  %use = load i8, ptr %po
  %used = icmp ne i8 %use, 0
  br i1 %used, label %mark, label %edge.next
mark:
  %pa = getelementptr inbounds i64, ptr %args, i64 %e
  %a = load i64, ptr %pa
  %pm = getelementptr inbounds i8, ptr %reached, i64 %a
  store i8 1, ptr %pm
  br label %edge.next
edge.next:
  br label %edge
node.next:
  br label %node
exit:
  ret void
}
"""
"""Two graph walks over a program in CSR form (``off``: n+1 offsets into ``args``):
``@active`` ORs each node's flag with its arguments' flags, in node order (which nodes
depend on a param); ``@reach`` marks, from node ``top`` down, the arguments of every
marked node through the edges flagged in ``ok`` (which nodes get an adjoint)."""


def _vm_source(use_sincos: bool) -> str:
    run, declarations = _run_function(use_sincos)
    return module("scalar_autograd tape VM", declarations,
                  [run, _kernel_function(), _batch_function(), _GRAPH_FUNCTIONS])


class _Machine:
    """The VM's native code: compiled once per process (or loaded from ``cache``)."""

    def __init__(self, cache: ObjectCache | None = None) -> None:
        self.use_sincos = exact_sincos()
        self.source = _vm_source(self.use_sincos)
        self._engine = native_engine(self.source, 2, cache)
        self.kernel_address = self._engine.address("kernel")
        vp, i64 = ctypes.c_void_p, ctypes.c_int64
        self.kernel = ctypes.CFUNCTYPE(None, vp, vp, vp, vp, vp, vp)(self.kernel_address)
        self.batch = ctypes.CFUNCTYPE(None, vp, i64, vp, vp, vp, vp, vp)(
            self._engine.address("batch"))
        self.active = ctypes.CFUNCTYPE(None, i64, vp, vp, vp)(self._engine.address("active"))
        self.reach = ctypes.CFUNCTYPE(None, i64, vp, vp, vp, vp)(self._engine.address("reach"))


_machine: _Machine | None = None
_machine_lock = threading.Lock()


def machine(cache: ObjectCache | None = None) -> _Machine:
    """The process's VM, compiled on first use (its object code through ``cache``)."""
    global _machine
    with _machine_lock:
        if _machine is None:
            _machine = _Machine(cache)
    return _machine


# ----------------------------------------------------------------------------- tapes

@dataclass(frozen=True)
class Tape:
    """A program as the VM runs it (see the module docstring).

    Attributes:
        code: ``(n_rows, 5)`` int32 rows ``opcode, dst, a, b, c``.
        consts: the constant pool (registers ``n_params + n_inputs`` on).
        outs: the register of each output: values, then derivatives.
        n_regs: registers (doubles of scratch) the tape uses.
        n_params: params (registers ``0 .. n_params-1``).
        n_inputs: runtime inputs (the next registers).
        n_values: how many of ``outs`` are values.
    """

    code: np.ndarray
    consts: np.ndarray
    outs: np.ndarray
    n_regs: int
    n_params: int
    n_inputs: int
    n_values: int

    @property
    def n_leaves(self) -> int:
        """Registers filled before the first row: params, inputs, constants."""
        return self.n_params + self.n_inputs + self.consts.size


@dataclass
class _Nodes:
    """A program's nodes as arrays (what :meth:`Program.to_bytes` encodes, unpacked).

    ``kind[i]`` indexes ``names``; input, const and op nodes are listed in node order
    in ``slots``, ``values`` and ``ops`` (the op nodes' ids), with each op node's
    arguments at ``args[start[j] : start[j] + arity[j]]``.
    """

    names: list[str]
    kind: np.ndarray
    is_input: np.ndarray
    is_const: np.ndarray
    slots: np.ndarray
    values: np.ndarray
    ops: np.ndarray
    arity: np.ndarray
    start: np.ndarray
    args: np.ndarray

    @property
    def n(self) -> int:
        return int(self.kind.size)


def _nodes(program: Program) -> _Nodes:
    """The arrays of ``program``'s nodes (a few vectorised passes over the tuples)."""
    nodes = program.nodes
    n = len(nodes)
    kinds = list(map(itemgetter(0), nodes))
    payloads = list(map(itemgetter(1), nodes))
    names = list(dict.fromkeys(kinds))
    index = {name: i for i, name in enumerate(names)}
    kind = np.fromiter(map(index.__getitem__, kinds), dtype=np.int64, count=n)
    absent = len(names)
    is_input = kind == index.get("input", absent)
    is_const = kind == index.get("const", absent)
    is_op = ~(is_input | is_const)
    try:
        slots = np.array([payloads[i] for i in np.flatnonzero(is_input).tolist()],
                         dtype=np.int64)
        values = np.array([payloads[i] for i in np.flatnonzero(is_const).tolist()],
                          dtype=np.float64)
        ops = list(compress(payloads, is_op.tolist()))
        arity = np.fromiter(map(len, ops), dtype=np.int64, count=len(ops))
        args = np.fromiter(chain.from_iterable(ops), dtype=np.int64, count=int(arity.sum()))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"program nodes must be ('input', slot), ('const', float) or "
                        f"(op, (arg ids...)); could not read them ({exc})") from None
    start = np.cumsum(arity) - arity
    ops_ids = np.flatnonzero(is_op)
    outputs = np.array(program.outputs, dtype=np.int64)
    if (args.size and (args.min() < 0 or (args >= np.repeat(ops_ids, arity)).any())) or \
            (outputs.size and (outputs.min() < 0 or outputs.max() >= n)):
        raise ValueError("program has an argument or output that refers to a later or "
                         "missing node")
    return _Nodes(names, kind, is_input, is_const, slots, values, ops_ids, arity, start, args)


def _opcodes(nd: _Nodes) -> np.ndarray:
    """The opcode of each op node (``-1`` for a sum); raises for an op the VM cannot run
    or a wrong number of arguments."""
    table = np.full(len(nd.names), -2, dtype=np.int64)
    for i, name in enumerate(nd.names):
        if name in _OPCODE and name in PRIMITIVES:
            table[i] = _OPCODE[name]
        elif name == "sum":
            table[i] = -1
    codes = table[nd.kind[nd.ops]]
    if (codes == -2).any():
        bad = nd.names[int(nd.kind[nd.ops[np.flatnonzero(codes == -2)[0]]])]
        raise ValueError(f"the vm backend runs lowered programs; op {bad!r} must be "
                         f"lowered first (ir.passes.lower)")
    fixed = codes >= 0
    if (nd.arity[fixed] != _N_OPERANDS[codes[fixed]]).any() or \
            (nd.arity[~fixed] < 1).any():
        raise ValueError("program has an op node with the wrong number of arguments")
    return codes


def _forward_rows(nd: _Nodes, n_slots: int, const_reg: np.ndarray, first: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Rows computing every op node of a lowered program, and each node's register.

    Rows are returned as columns, ``(5, n_rows)`` (opcode, dst, a, b, c). Inputs live in
    the register of their slot, constants in ``const_reg`` (one per const node, in
    order); row ``r`` writes register ``first + r``. A sum of ``k`` terms is ``k - 1``
    adds left to right (a sum of one term is its term).
    """
    codes = _opcodes(nd)
    if (nd.slots >= n_slots).any() or (nd.slots < 0).any():
        raise ValueError("program has an input node outside its slots")
    is_sum = codes == -1
    n_rows = np.where(is_sum, nd.arity - 1, 1)
    row_start = np.cumsum(n_rows) - n_rows
    reg = np.full(nd.n, -1, dtype=np.int64)
    reg[nd.is_input] = nd.slots
    reg[nd.is_const] = const_reg
    reg[nd.ops] = first + row_start + n_rows - 1
    for one in np.flatnonzero(n_rows == 0).tolist():  # sum of one term: the term itself
        reg[nd.ops[one]] = reg[nd.args[nd.start[one]]]
    arg_reg = reg[nd.args]
    total = int(n_rows.sum())
    rows = np.zeros((_ROW, total), dtype=np.int64)
    rows[1] = np.arange(first, first + total)
    if not is_sum.any():  # one row per node
        rows[0] = codes
        for k in range(3):
            has = nd.arity > k
            rows[2 + k, has] = arg_reg[nd.start[has] + k]
        return rows, reg
    owner = np.repeat(np.arange(nd.ops.size), n_rows)
    plain = ~is_sum[owner]
    j = owner[plain]
    rows[0, plain] = codes[j]
    for k in range(3):
        has = plain.copy()
        has[plain] = nd.arity[j] > k
        rows[2 + k, has] = arg_reg[nd.start[owner[has]] + k]
    summed = np.flatnonzero(~plain)
    j = owner[summed]
    step = summed - row_start[j]  # term step + 1 joins the partial sum of step
    rows[0, summed] = _ADD
    rows[2, summed] = np.where(step == 0, arg_reg[nd.start[j]], first + summed - 1)
    rows[3, summed] = arg_reg[nd.start[j] + step + 1]
    return rows, reg


def _rewrite(rows: np.ndarray, at: np.ndarray, opcode: int, a: Any, b: Any, c: Any) -> None:
    """Give rows ``at`` (columns of ``rows``) a new opcode and operands (same ``dst``)."""
    rows[0, at] = opcode
    rows[2, at] = a
    rows[3, at] = b
    rows[4, at] = c


def _fuse(rows: np.ndarray, outs: np.ndarray, n_regs: int) -> np.ndarray:
    """Apply the superinstruction rewrites (module docstring) to an SSA tape's rows
    (columns, as :func:`_forward_rows` returns them; rewritten in place), and return
    the rows that remain.

    A producer row is absorbed only when its register is read exactly once (outputs
    count as reads), so no value is lost; a row that absorbs another is never absorbed
    itself: every rewrite below takes plain ``mul``, ``neg`` or ``add`` producers.
    """
    n = rows.shape[1]
    if n == 0:
        return rows
    op, dst = rows[0], rows[1]            # views: op follows the rewrites (in place)
    k_read = _N_OPERANDS[op]
    uses = np.bincount(np.concatenate([rows[2 + k, k_read > k] for k in range(3)] + [outs]),
                       minlength=n_regs)
    producer = np.full(n_regs, -1, dtype=np.int64)
    producer[dst] = np.arange(n)
    alive = np.ones(n, dtype=bool)
    adds = np.flatnonzero(op == _ADD)     # the candidate consumers, and their operands
    operand = [rows[2, adds], rows[3, adds]]
    source = [producer[q] for q in operand]
    once = [(p >= 0) & (uses[q] == 1) for p, q in zip(source, operand, strict=True)]
    free = np.ones(adds.size, dtype=bool)

    def absorbable(k: int, kind: int) -> np.ndarray:
        """Consumers (still plain adds) whose operand ``k`` is a once-read ``kind`` row."""
        sel = free & once[k]
        p = source[k][sel]
        sel[sel] = (op[p] == kind) & alive[p]
        return sel

    for k in (1, 0):                      # a*b + c (operand b first)
        sel = absorbable(k, _MUL)
        r, p = adds[sel], source[k][sel]
        _rewrite(rows, r, _MUL_ADD, rows[2, p], rows[3, p], operand[1 - k][sel])
        alive[p] = False
        free[sel] = False
    for k in (1, 0):                      # x + (-y) = x - y
        sel = absorbable(k, _NEG)
        r, p = adds[sel], source[k][sel]
        _rewrite(rows, r, _SUB, operand[1 - k][sel], rows[2, p], 0)
        alive[p] = False
        free[sel] = False
    # (a + b) + c: a chain of adds pairs up along the chain, every other link
    first_choice = absorbable(0, _ADD)
    second = absorbable(1, _ADD) & ~first_choice
    consumer = np.concatenate([adds[first_choice], adds[second]])
    taken = np.concatenate([source[0][first_choice], source[1][second]])
    other = np.concatenate([operand[1][first_choice], operand[0][second]])
    if consumer.size:
        link_of = np.full(n, -1, dtype=np.int64)
        link_of[consumer] = np.arange(consumer.size)
        pred = link_of[taken]             # the link whose consumer is this link's producer
        depth = (pred >= 0).astype(np.int64)
        while (pred >= 0).any():          # list ranking by pointer doubling
            m = np.flatnonzero(pred >= 0)
            depth[m] += depth[pred[m]]
            pred[m] = pred[pred[m]]
        chosen = depth % 2 == 0
        r, p = consumer[chosen], taken[chosen]
        _rewrite(rows, r, _ADD_ADD, rows[2, p], rows[3, p], other[chosen])
        alive[p] = False
    # sin and cos of one register: computed together, where the first of the two was
    order = None
    trig = [np.flatnonzero(alive & (op == kind)) for kind in (_SIN, _COS)]
    if trig[0].size and trig[1].size:
        firsts = []
        for found in trig:
            argument, at = np.unique(rows[2, found], return_index=True)
            firsts.append((argument, found[at]))
        both, at_sin, at_cos = np.intersect1d(firsts[0][0], firsts[1][0],
                                              assume_unique=True, return_indices=True)
        s, c = firsts[0][1][at_sin], firsts[1][1][at_cos]
        lo, hi = np.minimum(s, c), np.maximum(s, c)
        # On a chain of dependent rows (the next row reads the result), the latency of
        # the first call is what counts: the other moves next to it and runs alongside.
        # Elsewhere one sincos call costs less than the two.
        live = np.flatnonzero(alive)
        after = live[np.minimum(np.searchsorted(live, lo) + 1, live.size - 1)]
        reads = _N_OPERANDS[op[after]]
        chained = (after > lo) & ((rows[2, after] == dst[lo]) & (reads > 0)
                                  | (rows[3, after] == dst[lo]) & (reads > 1)
                                  | (rows[4, after] == dst[lo]) & (reads > 2))
        pair = ~chained
        sin_dst, cos_dst = dst[s[pair]], dst[c[pair]]
        rows[1, lo[pair]] = sin_dst
        _rewrite(rows, lo[pair], _SINCOS, both[pair], cos_dst, 0)
        alive[hi[pair]] = False
        if chained.any():  # the later of the two moves to just after the earlier
            order = 2 * np.arange(n)
            order[hi[chained]] = 2 * lo[chained] + 1
    if order is None:
        return rows[:, alive]
    slot = np.full(2 * n, -1, dtype=np.int64)       # the keys are distinct: bucket them
    slot[order[alive]] = np.flatnonzero(alive)
    return rows[:, slot[slot >= 0]]


def _compact(rows: np.ndarray, outs: np.ndarray, n_leaves: int) -> tuple[np.ndarray,
                                                                        np.ndarray, int]:
    """Renumber the registers rows write (``dst``, and ``b`` of ``sincos``) densely, in
    row order after the leaves; unread operand fields become 0. Returns the rows as
    ``(n_rows, 5)`` int32, the output registers and the register count."""
    op = rows[0]
    is_sincos = op == _SINCOS
    first_def = n_leaves + np.cumsum(1 + is_sincos) - (1 + is_sincos)  # in row order
    n_defined = int(rows.shape[1] + is_sincos.sum())
    size = max(int(rows[1:].max(initial=-1)) + 1, int(outs.max(initial=-1)) + 1, n_leaves)
    new = np.full(size, -1, dtype=np.int64)
    new[:n_leaves] = np.arange(n_leaves)
    new[rows[1]] = first_def
    new[rows[3, is_sincos]] = first_def[is_sincos] + 1
    k_read = _N_OPERANDS[op]
    code = np.zeros((rows.shape[1], _ROW), dtype=np.int32)
    code[:, 0] = op
    code[:, 1] = new[rows[1]]
    for k in range(3):
        read = k_read > k
        code[read, 2 + k] = new[rows[2 + k, read]]
    code[is_sincos, 3] = new[rows[3, is_sincos]]
    mapped = new[outs]
    if (code[:, 1:] < 0).any() or (mapped < 0).any():
        raise AssertionError("tape reads a register no row writes")  # a bug, never input
    return code, mapped, max(n_leaves + n_defined, 1)


def _finish(rows: np.ndarray, consts: np.ndarray, outs: np.ndarray, n_params: int,
            n_inputs: int, n_values: int) -> Tape:
    """Fuse, renumber and pack rows (SSA columns, row ``r`` writing register
    ``n_leaves + r``)."""
    n_leaves = n_params + n_inputs + consts.size
    if n_leaves + rows.shape[1] >= 2**31:
        raise ValueError(f"program too large for the vm backend ({rows.shape[1]} rows)")
    rows = _fuse(rows, outs, n_leaves + rows.shape[1])
    code, outs, n_regs = _compact(rows, outs, n_leaves)
    return Tape(code, np.ascontiguousarray(consts, dtype=np.float64), outs.astype(np.int32),
                n_regs, n_params, n_inputs, n_values)


def build_tape(program: Program, reverse: bool = False, n_diff: int | None = None) -> Tape:
    """The tape of ``program`` (lowered), or with ``reverse``, of its values and
    reverse-mode Jacobian.

    Args:
        program: the program. Without ``reverse`` it must be lowered
            (:func:`scalar_autograd.ir.passes.lower`); with ``reverse`` it may hold any
            op of the table (expansions are lowered on the way).
        reverse: write the outputs of
            ``scalar_autograd.ir.autodiff.reverse(program, lower=True, n_diff=n_diff)``
            (values, then one Jacobian row per differentiated value), computed with the
            same arithmetic in the same order, without building that program.
        n_diff: with ``reverse``, differentiate only the first ``n_diff`` values
            (default: all).

    Raises:
        ValueError: an op the VM cannot run (not lowered), a malformed program, or
            ``n_diff`` out of range.
    """
    if reverse:
        return _reverse_tape(program, n_diff)
    nd = _nodes(program)
    n_slots = program.n_params + program.n_inputs
    const_reg = n_slots + np.arange(nd.values.size)
    first = n_slots + nd.values.size
    rows, reg = _forward_rows(nd, n_slots, const_reg, first)
    outs = reg[np.array(program.outputs, dtype=np.int64)]
    return _finish(rows, nd.values, outs, program.n_params, program.n_inputs,
                   program.n_values)


# ----------------------------------------------------------------------------- reverse mode

_ARG, _OUT, _G, _CONST, _TEMP = range(5)
"""Kinds of a template operand: argument k of the node, its value, its adjoint, a
template constant, an earlier template row."""


@dataclass(frozen=True)
class _Template:
    """The rows of one node's backward step, for one shape (op, arity, receivers).

    ``rows[j] = (opcode, (kind, index) for a, b, c)``: operands by kind (``_ARG`` ...).
    ``contributions[m]`` is the operand that is the gradient contribution to argument
    ``positions[m]`` (in argument order).
    """

    rows: tuple[tuple[int, tuple[tuple[int, int], ...]], ...]
    consts: tuple[float, ...]
    positions: tuple[int, ...]
    contributions: tuple[tuple[int, int], ...]


_templates: dict[tuple[Any, ...], _Template] = {}
_templates_lock = threading.Lock()


def _template(op: Op, arity: int, receivers: tuple[int, ...]) -> _Template:
    """The backward step of a node of ``op`` whose arguments ``receivers`` get a
    contribution: the loop body of :func:`scalar_autograd.ir.autodiff.reverse` run on a
    program whose inputs are the arguments, the node's value and its adjoint."""
    key = (op, arity, receivers)
    found = _templates.get(key)
    if found is not None:
        return found
    b = Builder(arity + 2, 0)
    m = lowering_algebra(b)
    args = [Var(b, b.input(k)) for k in range(arity)]
    out, g = Var(b, b.input(arity)), Var(b, b.input(arity + 1))
    partials = op.partials(m, *args, out=out)
    outputs = []
    for k in receivers:
        term = select_contribution(m, g, partials[k]) if op.selects else g * partials[k]
        outputs.append(b.lift(term))
    micro = b.build(outputs, len(outputs))
    operand: list[tuple[int, int]] = []
    consts: list[float] = []
    rows: list[tuple[int, tuple[tuple[int, int], ...]]] = []
    for kind, payload in micro.nodes:
        if kind == "input":
            operand.append((_ARG, payload) if payload < arity else
                           (_OUT, 0) if payload == arity else (_G, 0))
        elif kind == "const":
            operand.append((_CONST, len(consts)))
            consts.append(payload)
        elif kind == "sum":  # left to right, as everywhere
            acc = operand[payload[0]]
            for term in payload[1:]:
                rows.append((_ADD, (acc, operand[term])))
                acc = (_TEMP, len(rows) - 1)
            operand.append(acc)
        elif kind in PRIMITIVES:
            rows.append((_OPCODE[kind], tuple(operand[a] for a in payload)))
            operand.append((_TEMP, len(rows) - 1))
        else:  # pragma: no cover - lowering_algebra emits primitives only
            raise ValueError(f"backward step of {op.name} holds unlowered op {kind!r}")
    template = _Template(tuple(rows), tuple(consts), receivers,
                         tuple(operand[o] for o in micro.outputs))
    with _templates_lock:
        _templates[key] = template
    return template


def _needs_lowering(nd: _Nodes) -> bool:
    """Whether lowering would change the program (an expansion, or a long sum)."""
    for i, name in enumerate(nd.names):
        if name in ("input", "const"):
            continue
        if name == "sum":
            sums = nd.kind[nd.ops] == i
            if sums.any() and int(nd.arity[sums].max()) > MAX_SUM_ARITY:
                return True
        elif OPS_BY_NAME[name].lower.kind == "expand":
            return True
    return False


def _csr(nd: _Nodes) -> np.ndarray:
    """Offsets (n + 1) of every node's arguments in ``nd.args`` (leaves: none)."""
    counts = np.zeros(nd.n, dtype=np.int64)
    counts[nd.ops] = nd.arity
    return np.concatenate(([0], np.cumsum(counts)))


def _lowered(program: Program, nd: _Nodes) -> tuple[_Nodes, np.ndarray]:
    """The forward program lowered (as arrays), and the node ``ids[i]`` of it that node
    ``i`` of ``program`` became (the program itself when nothing needs lowering)."""
    if not _needs_lowering(nd):
        return nd, np.arange(nd.n)
    builder = Builder(program.n_params, program.n_inputs)
    ids, _ = copy_lowered(builder, program)
    lowered = Program(tuple(builder.nodes), (), program.n_params, program.n_inputs, 0)
    return _nodes(lowered), np.array(ids, dtype=np.int64)


def _sweeps(program: Program, nd: _Nodes, n_diff: int
            ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Which nodes depend on a param (int8 per node); which argument edges carry a
    contribution (int8 per edge: an active argument, not a structurally zero partial);
    and per differentiated output, which nodes get an adjoint (int8 per node). The two
    walks run in native code (``@active``, ``@reach``)."""
    vm = machine()
    off = _csr(nd)
    args = np.ascontiguousarray(nd.args)
    active = np.zeros(nd.n, dtype=np.int8)
    active[np.flatnonzero(nd.is_input)[nd.slots < program.n_params]] = 1
    vm.active(nd.n, address(off), address(args), address(active))
    position = np.arange(args.size) - np.repeat(nd.start, nd.arity)
    edge_kind = np.repeat(nd.kind[nd.ops], nd.arity)
    structural_zero = np.zeros(args.size, dtype=bool)
    for i, name in enumerate(nd.names):
        zeros = OPS_BY_NAME[name].zero_partials if name not in ("input", "const") else ()
        if any(zeros):
            e = np.flatnonzero(edge_kind == i)
            structural_zero[e] = np.array(zeros)[np.minimum(position[e], len(zeros) - 1)]
    ok = ((active[args] != 0) & ~structural_zero).astype(np.int8)
    reached_by_sweep = []
    for o in program.outputs[:n_diff]:
        reached = np.zeros(nd.n, dtype=np.int8)
        if active[o]:
            reached[o] = 1
            vm.reach(o, address(off), address(args), address(ok), address(reached))
        reached_by_sweep.append(reached)
    return active, ok, reached_by_sweep


def _shapes(nd: _Nodes, ok: np.ndarray, inst_node: np.ndarray, op_index: np.ndarray
            ) -> tuple[list[_Template], np.ndarray]:
    """The templates of the instances' shapes, and each instance's template index."""
    j = op_index[inst_node]
    arity, start = nd.arity[j], nd.start[j]
    small = arity <= 3                   # shapes as integers: kind, arity, receivers
    mask = np.zeros(inst_node.size, dtype=np.int64)
    for k in range(3):
        has = small & (arity > k)
        mask[has] |= ok[start[has] + k].astype(np.int64) << k
    shape_key = np.where(small, nd.kind[inst_node] * 64 + arity * 8 + mask, -1)
    templates: list[_Template] = []
    template_id = np.zeros(inst_node.size, dtype=np.int64)
    keys, first, inverse = np.unique(shape_key, return_index=True, return_inverse=True)
    for key, at in zip(keys.tolist(), first.tolist(), strict=True):
        if key >= 0:
            ar, bits = int(arity[at]), int(mask[at])
            op = OPS_BY_NAME[nd.names[int(nd.kind[inst_node[at]])]]
            templates.append(_template(op, ar, tuple(k for k in range(ar) if bits >> k & 1)))
    skipped = int(bool(keys.size) and keys[0] < 0)  # the -1 of long argument lists
    template_id[shape_key >= 0] = inverse[shape_key >= 0] - skipped
    seen: dict[tuple[Any, ...], int] = {}
    for at in np.flatnonzero(shape_key < 0).tolist():  # long argument lists: by node
        ar, s = int(arity[at]), int(start[at])
        receivers = tuple(np.flatnonzero(ok[s:s + ar]).tolist())
        name = nd.names[int(nd.kind[inst_node[at]])]
        tid = seen.get((name, ar, receivers))
        if tid is None:
            tid = seen[(name, ar, receivers)] = len(templates)
            templates.append(_template(OPS_BY_NAME[name], ar, receivers))
        template_id[at] = tid
    return templates, template_id


def _reverse_tape(program: Program, n_diff: int | None) -> Tape:
    """:func:`build_tape` with ``reverse`` (see the module docstring)."""
    n_values = program.n_values
    if n_diff is None:
        n_diff = n_values
    if not 0 <= n_diff <= n_values:
        raise ValueError(f"n_diff must be in [0, {n_values}]; got {n_diff}")
    nd = _nodes(program)
    n, n_params, n_inputs = nd.n, program.n_params, program.n_inputs
    n_slots = n_params + n_inputs
    lowered, ids = _lowered(program, nd)
    args = nd.args
    active, ok, reached_by_sweep = _sweeps(program, nd, n_diff)
    outputs = program.outputs
    # the instances: per sweep, the op nodes with an adjoint, from the top down
    is_op = ~(nd.is_input | nd.is_const)
    sweeps = [np.flatnonzero((reached != 0) & is_op)[::-1] for reached in reached_by_sweep]
    inst_node = np.concatenate(sweeps) if sweeps else np.zeros(0, np.int64)
    inst_sweep = np.repeat(np.arange(len(sweeps)), [s.size for s in sweeps])
    n_inst = inst_node.size
    op_index = np.full(n, -1, dtype=np.int64)
    op_index[nd.ops] = np.arange(nd.ops.size)
    inst_start = nd.start[op_index[inst_node]]
    templates, template_id = _shapes(nd, ok, inst_node, op_index)

    # the constant pool: the program's, the templates', the seed 1.0 and 0.0
    pool: dict[bytes, int] = {}
    pack = struct.Struct("<d").pack
    const_values: list[float] = []

    def pooled(value: float) -> int:
        key = pack(value)
        found = pool.get(key)
        if found is None:
            found = pool[key] = len(const_values)
            const_values.append(value)
        return found

    lowered_consts = [pooled(v) for v in lowered.values.tolist()]
    template_consts = [np.array([pooled(v) for v in t.consts] or [0], dtype=np.int64)
                       for t in templates]
    seed, zero = pooled(1.0), pooled(0.0)
    consts = np.array(const_values, dtype=np.float64)
    n_leaves = n_slots + consts.size
    const_base = n_slots
    fwd_rows, fwd_reg = _forward_rows(lowered, n_slots,
                                      const_base + np.array(lowered_consts, dtype=np.int64),
                                      n_leaves)
    n_fwd = fwd_rows.shape[1]
    node_reg = fwd_reg[ids]              # the register of each program node's value

    # contributions, in the order reverse() makes them: instance, then argument
    t_rows = np.array([len(t.rows) for t in templates], dtype=np.int64)
    t_count = np.array([len(t.positions) for t in templates], dtype=np.int64)
    c_count = t_count[template_id] if n_inst else np.zeros(0, np.int64)
    c_inst = np.repeat(np.arange(n_inst), c_count)
    c_index = np.arange(c_inst.size) - np.repeat(np.cumsum(c_count) - c_count, c_count)
    c_tid = template_id[c_inst]
    t_first = np.cumsum(t_count) - t_count            # each template's first entry
    positions = np.array([k for t in templates for k in t.positions], dtype=np.int64)
    refs = np.array([ref for t in templates for ref in t.contributions],
                    dtype=np.int64).reshape(-1, 2)
    entry = t_first[c_tid] + c_index
    c_pos, c_ref_kind, c_ref_index = positions[entry], refs[entry, 0], refs[entry, 1]
    c_target = args[inst_start[c_inst] + c_pos]
    c_sweep = inst_sweep[c_inst]
    # accumulation groups: (sweep, target), in contribution order
    order = np.argsort(c_sweep * n + c_target, kind="stable")
    group_key = c_sweep[order] * n + c_target[order]
    is_first = np.ones(order.size, dtype=bool)
    is_first[1:] = group_key[1:] != group_key[:-1]
    is_last = np.ones(order.size, dtype=bool)
    is_last[:-1] = is_first[1:]
    c_first = np.empty(order.size, dtype=bool)
    c_first[order] = is_first
    c_prev = np.full(order.size, -1, dtype=np.int64)   # the previous contribution to it
    c_prev[order[1:][~is_first[1:]]] = order[:-1][~is_first[1:]]
    # rows: each instance's template rows, then one add per non-first contribution
    accum = ~c_first
    n_accum = np.bincount(c_inst[accum], minlength=n_inst)
    inst_rows = (t_rows[template_id] if n_inst else np.zeros(0, np.int64)) + n_accum
    inst_row0 = n_fwd + np.cumsum(inst_rows) - inst_rows   # first row of each instance
    total = n_fwd + int(inst_rows.sum())
    accum_ids = np.flatnonzero(accum)                       # in contribution order
    rank = np.arange(accum_ids.size) - np.repeat(
        np.cumsum(n_accum) - n_accum, n_accum)[: accum_ids.size]
    c_row = np.full(c_inst.size, -1, dtype=np.int64)
    c_row[accum_ids] = inst_row0[c_inst[accum_ids]] + t_rows[c_tid[accum_ids]] + rank

    # the adjoint of each instance: the last accumulation into its node, possibly the
    # adjoint of a consumer passed through unchanged (an add's contribution is g)
    inst_key = inst_sweep * n + inst_node
    lookup = np.argsort(inst_key, kind="stable")
    last = order[is_last]
    last_key = c_sweep[last] * n + c_target[last]
    g_reg = np.full(n_inst, -1, dtype=np.int64)
    g_alias = np.full(n_inst, -1, dtype=np.int64)

    def value_reg(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Register of contributions ``c`` (-1 for an adjoint passed through), and
        the instance whose adjoint it is (-1 otherwise)."""
        kind, index, inst = c_ref_kind[c], c_ref_index[c], c_inst[c]
        reg = np.full(c.size, -1, dtype=np.int64)
        alias = np.full(c.size, -1, dtype=np.int64)
        m = kind == _TEMP
        reg[m] = n_leaves + inst_row0[inst[m]] + index[m]
        m = kind == _ARG
        reg[m] = node_reg[args[inst_start[inst[m]] + index[m]]]
        m = kind == _OUT
        reg[m] = node_reg[inst_node[inst[m]]]
        m = kind == _CONST
        for tid in np.unique(c_tid[c[m]]).tolist():
            sel = np.flatnonzero(m & (c_tid[c] == tid))
            reg[sel] = const_base + template_consts[tid][index[sel]]
        m = kind == _G
        alias[m] = inst[m]
        return reg, alias

    def acc_reg(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Register holding the adjoint sum after contributions ``c``."""
        reg, alias = value_reg(c)
        summed = ~c_first[c]
        reg[summed] = n_leaves + c_row[c[summed]]
        alias[summed] = -1
        return reg, alias

    where_inst = np.searchsorted(inst_key[lookup], last_key)
    where_inst = np.minimum(where_inst, max(n_inst - 1, 0))
    has_inst = (n_inst > 0) & (inst_key[lookup][where_inst] == last_key) \
        if n_inst else np.zeros(last.size, dtype=bool)
    target_inst = lookup[where_inst[has_inst]]
    reg, alias = acc_reg(last[has_inst])
    g_reg[target_inst], g_alias[target_inst] = reg, alias
    tops = np.flatnonzero(inst_node == np.array(outputs, dtype=np.int64)[inst_sweep]) \
        if n_inst else np.zeros(0, np.int64)
    g_reg[tops], g_alias[tops] = const_base + seed, -1
    pending = g_reg < 0
    while pending.any():                         # pointer doubling along pass-throughs
        target = g_alias[pending]
        if (target < 0).any():  # pragma: no cover - every reached node has an adjoint
            raise AssertionError("reverse tape: a node without an adjoint")
        g_reg[pending] = g_reg[target]
        g_alias[pending] = g_alias[target]
        pending = g_reg < 0

    # write the backward rows
    rows = np.zeros((_ROW, total), dtype=np.int64)
    rows[:, :n_fwd] = fwd_rows
    rows[1, n_fwd:] = np.arange(n_leaves + n_fwd, n_leaves + total)

    def operand_regs(inst: np.ndarray, tid: int, ref: tuple[int, int]) -> np.ndarray:
        kind, index = ref
        if kind == _ARG:
            return node_reg[args[inst_start[inst] + index]]
        if kind == _OUT:
            return node_reg[inst_node[inst]]
        if kind == _G:
            return g_reg[inst]
        if kind == _CONST:
            return np.full(inst.size, const_base + template_consts[tid][index])
        return n_leaves + inst_row0[inst] + index

    by_template = np.argsort(template_id, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(template_id,
                                                         minlength=len(templates)))))
    for tid, t in enumerate(templates):
        inst = by_template[bounds[tid]:bounds[tid + 1]]   # its instances, in order
        if inst.size == 0 or not t.rows:
            continue
        for r, (opcode, operands) in enumerate(t.rows):
            at = inst_row0[inst] + r
            rows[0, at] = opcode
            for k, ref in enumerate(operands):
                rows[2 + k, at] = operand_regs(inst, tid, ref)
    if accum_ids.size:
        at = c_row[accum_ids]
        rows[0, at] = _ADD
        previous, prev_alias = acc_reg(c_prev[accum_ids])
        previous[prev_alias >= 0] = g_reg[prev_alias[prev_alias >= 0]]
        value, value_alias = value_reg(accum_ids)
        value[value_alias >= 0] = g_reg[value_alias[value_alias >= 0]]
        rows[2, at], rows[3, at] = previous, value

    # outputs: the values, then per differentiated output the adjoint of each param
    outs_list = [node_reg[np.array(outputs[:n_values], dtype=np.int64)]]
    param_node = np.full(n_params, -1, dtype=np.int64)
    inputs = np.flatnonzero(nd.is_input)
    is_param = nd.slots < n_params
    param_node[nd.slots[is_param]] = inputs[is_param]
    for s, o in enumerate(outputs[:n_diff]):
        derivs = np.full(n_params, const_base + zero, dtype=np.int64)
        has_node = param_node >= 0
        reached = np.zeros(n_params, dtype=bool)
        reached[has_node] = reached_by_sweep[s][param_node[has_node]] != 0
        keys = s * n + param_node[reached]
        ends = np.searchsorted(last_key, keys) if last.size else np.zeros(0, np.int64)
        hit = np.zeros(keys.size, dtype=bool)
        if last.size:
            ends = np.minimum(ends, last.size - 1)
            hit = last_key[ends] == keys
        reg, alias = acc_reg(last[ends[hit]]) if hit.any() else (np.zeros(0, np.int64),) * 2
        reg[alias >= 0] = g_reg[alias[alias >= 0]]
        slots = np.flatnonzero(reached)
        derivs[slots[hit]] = reg
        if active[o] and nd.is_input[o] and o in param_node:  # the output is a param
            derivs[int(np.flatnonzero(param_node == o)[0])] = const_base + seed
        outs_list.append(derivs)
    outs = np.concatenate(outs_list)
    return _finish(rows, consts, outs, n_params, n_inputs, n_values)


# ----------------------------------------------------------------------------- kernels

_I32 = np.dtype("<i4")
_F64 = np.dtype("<f8")


class VMKernel(DerivedProgram):
    """A program run by the tape VM (see the module docstring).

    Args:
        program: the lowered program to encode as a tape.
        cache: object code storage for the VM itself (compiled once per process).
    """

    backend = "vm"
    mode = "vm"

    def __init__(self, program: Program, cache: ObjectCache | None = None) -> None:
        self._program: Program | None = program
        self._derive: Callable[[], Program] | None = None
        machine(cache)
        self._setup(build_tape(program), cache)

    @classmethod
    def reverse(cls, program: Program, n_diff: int | None = None,
                cache: ObjectCache | None = None) -> VMKernel:
        """The kernel of ``program``'s values and reverse-mode Jacobian (of its first
        ``n_diff`` values; default all), from a tape written straight from ``program``
        (see :func:`build_tape`). Its :attr:`program` is the gradient program, derived
        only if asked for."""
        from scalar_autograd.ir import autodiff

        machine(cache)
        kernel = cls.__new__(cls)
        kernel._program = None
        kernel._derive = lambda: autodiff.reverse(program, lower=True, n_diff=n_diff)
        kernel._setup(build_tape(program, reverse=True, n_diff=n_diff), cache)
        return kernel

    def _setup(self, tape: Tape, cache: ObjectCache | None) -> None:
        self._machine = machine(cache)
        self._lock = threading.Lock()
        self.tape = tape
        self.code, self.consts, self.outs = tape.code, tape.consts, tape.outs
        self.n_scratch = tape.n_regs
        self.n_values = tape.n_values
        self.n_derivs = tape.outs.size - tape.n_values
        self.n_params, self.n_inputs = tape.n_params, tape.n_inputs
        self.desc = address_block([  # the words of _DESC, in order
            self.code, self.code.shape[0], self.consts, self.consts.size, self.outs,
            self.n_values, self.outs.size, self.n_params, self.n_inputs,
        ])

    @property
    def n_rows(self) -> int:
        """Rows of the tape (instructions the VM dispatches per call)."""
        return int(self.code.shape[0])

    @classmethod
    def from_artifact(cls, artifact: KernelArtifact, program: Callable[[], Program],
                      cache: ObjectCache | None = None) -> VMKernel:
        """The kernel :meth:`artifact` saved; ``program()`` gives its program on demand.

        Raises:
            ValueError: the artifact is not a VM tape of this format, or an index in it
                is out of range.
        """
        if artifact.backend != "vm":
            raise ValueError(f"artifact must come from the vm backend; got "
                             f"{artifact.backend!r}")
        try:
            sizes, blobs = artifact.sizes, artifact.blobs
            if sizes["tape_format"] != TAPE_FORMAT:
                raise ValueError(f"tape format {sizes['tape_format']}, not {TAPE_FORMAT}")
            n_regs, n_values = sizes["n_regs"], sizes["n_values"]
            n_params, n_inputs = sizes["n_params"], sizes["n_inputs"]
            code = np.frombuffer(blobs["code"], dtype=_I32).reshape(-1, _ROW)
            consts = np.frombuffer(blobs["consts"], dtype=_F64)
            outs = np.frombuffer(blobs["outs"], dtype=_I32)
            n_outputs = n_values + sizes["n_derivs"]
        except (KeyError, ValueError) as exc:
            raise ValueError(f"artifact is not a complete VM tape ({exc})") from None
        tape = Tape(code, consts, outs, n_regs, n_params, n_inputs, n_values)
        _check_tape(tape, n_outputs)
        kernel = cls.__new__(cls)
        kernel._program = None
        kernel._derive = program
        kernel._setup(tape, cache)
        return kernel

    def artifact(self) -> KernelArtifact:
        """The tape as plain data (three little-endian arrays and their sizes)."""
        return KernelArtifact("vm", {
            "tape_format": TAPE_FORMAT, "n_regs": self.n_scratch,
            "n_values": self.n_values, "n_derivs": self.n_derivs,
            "n_params": self.n_params, "n_inputs": self.n_inputs,
        }, {"code": self.code.astype(_I32).tobytes(),
            "consts": self.consts.astype(_F64).tobytes(),
            "outs": self.outs.astype(_I32).tobytes()})

    @property
    def source(self) -> str:
        """A listing of the tape (the VM's own IR is ``machine().source``)."""
        names = OPCODES
        head = [f"; tape VM program: {self.code.shape[0]} rows, {self.n_scratch} registers "
                f"(params, inputs and {self.consts.size} constants first)"]
        body = [f"r{d} = {names[o] if 0 <= o < len(names) else '?'} {a} {b} {c}"
                for o, d, a, b, c in self.code[:5000].tolist()]
        return "\n".join(head + body) + "\n"

    def run(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
            scratch: np.ndarray) -> None:
        self._machine.kernel(address(self.desc), address(x), address(u), address(val),
                             address(der), address(scratch))

    def run_batch(self, X: np.ndarray, U: np.ndarray, V: np.ndarray, D: np.ndarray,
                  scratch: np.ndarray) -> None:
        self._machine.batch(address(self.desc), X.shape[0], address(X), address(U),
                            address(V), address(D), address(scratch))

    def bind(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
             scratch: np.ndarray) -> Callable[[], None]:
        """A zero-argument native function calling the VM on this tape and these buffers
        (:func:`~scalar_autograd.native.abi.bound_call`); it keeps them alive."""
        buffers = (self.desc, x, u, val, der, scratch)
        return bound_call(self._machine.kernel_address, [address(a) for a in buffers],
                          (self, *buffers))


def _check_tape(tape: Tape, n_outputs: int) -> None:
    """Raise ValueError unless every index of the tape is in range (the VM checks none).

    Every row loads registers ``a``, ``b``, ``c`` and stores ``dst`` (and ``b``, for
    ``sincos``); the kernel first writes the params, inputs and constants into the first
    registers. The sizes themselves are the caller's to check against the buffers it
    allocates (the runtime compares them with the program's before loading).
    """
    def bad(why: str) -> ValueError:
        return ValueError(f"artifact holds an invalid VM tape: {why}")

    code, outs = tape.code, tape.outs
    if min(tape.n_regs, tape.n_values, n_outputs, tape.n_params, tape.n_inputs) < 0 \
            or tape.n_values > n_outputs:
        raise bad("negative or inconsistent sizes")
    if outs.shape != (n_outputs,):
        raise bad(f"{outs.size} output registers for {n_outputs} outputs")
    if tape.n_leaves > tape.n_regs or (code.size or n_outputs) and tape.n_regs < 1:
        raise bad(f"{tape.n_regs} registers for {tape.n_leaves} leaves")
    if min(outs.min(initial=0), code.min(initial=0)) < 0 or \
            max(outs.max(initial=0), code[:, 1:].max(initial=0)) >= tape.n_regs:
        raise bad("a register out of range")
    if code.size and code[:, 0].max() >= len(OPCODES):
        raise bad("an unknown opcode")


class VMBackend:
    """Backend name ``"vm"``: every program runs on the tape VM."""

    name = "vm"

    def compile(self, program: Program) -> VMKernel:
        """A tape for ``program`` (the VM itself is compiled once per process)."""
        return VMKernel(program)

    def compile_reverse(self, program: Program, n_diff: int | None = None) -> VMKernel:
        """The values and reverse-mode Jacobian of the (forward) ``program``, as
        ``compile(autodiff.reverse(program, lower=True, n_diff=n_diff))`` computes them,
        without building the gradient program (see :meth:`VMKernel.reverse`)."""
        return VMKernel.reverse(program, n_diff)

    def settings(self) -> str:
        """Nothing: a tape depends on the program and the op table only."""
        return ""

    def compile_portable(self, program: Program, cache: ObjectCache | None = None
                         ) -> tuple[VMKernel, KernelArtifact]:
        """A tape for ``program`` and its artifact (the VM's code through ``cache``)."""
        kernel = VMKernel(program, cache)
        return kernel, kernel.artifact()

    def compile_portable_reverse(self, program: Program, n_diff: int | None = None,
                                 cache: ObjectCache | None = None
                                 ) -> tuple[VMKernel, KernelArtifact]:
        """:meth:`compile_reverse`, and the kernel's artifact."""
        kernel = VMKernel.reverse(program, n_diff, cache)
        return kernel, kernel.artifact()

    def load(self, artifact: KernelArtifact, program: Callable[[], Program],
             cache: ObjectCache | None = None) -> VMKernel:
        """The tape ``artifact`` holds, checked (see :meth:`VMKernel.from_artifact`)."""
        return VMKernel.from_artifact(artifact, program, cache)

