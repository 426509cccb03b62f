"""A native virtual machine for very large programs: compiled once, fed a tape.

LLVM's code generation costs about 10 µs per instruction at O0 on this kind of
machine, so a 10^6-instruction program would take tens of seconds to compile. Above a
size threshold the llvm backend instead encodes the program as a *tape* (an int32 array
of ``opcode, dst, a, b, c`` rows plus a constant pool) and runs it on one interpreter
loop written in LLVM IR and compiled once per process (CasADi's SX virtual machine does
the same). Building a tape is a linear pass; running it costs a few ns per instruction.
The VM's instruction set is generated from the op table's lowerings, through the same
:func:`~scalar_autograd.backends.llvm.instruction` emitter as native code.

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
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

import numpy as np

from scalar_autograd.backends.llvm import _addr, batch_function, instruction, native_engine
from scalar_autograd.ir.program import Program
from scalar_autograd.ops import OPS

OPCODES: tuple[str, ...] = ("input_x", "input_u", "const") + tuple(
    op.name for op in OPS if op.lower.kind in ("infix", "call") and op.name != "sum"
)
"""The VM's instruction set: leaves, then every primitive op (sums become adds)."""
_OPCODE = {name: i for i, name in enumerate(OPCODES)}
_ARITY = {op.name: op.arity for op in OPS}
_ROW = 5  # opcode, dst, a, b, c


def _vm_source() -> str:
    declarations: set[str] = set()
    cases: list[str] = []
    blocks: list[str] = []
    incoming: list[str] = []
    operands = ["%va", "%vb", "%vc"]
    for code, name in enumerate(OPCODES):
        label = f"case{code}"
        cases.append(f"i32 {code}, label %{label}")
        result = f"%r{code}"  # defines %r{code}, %r{code}.p (leaves), %r{code}.t* (ops)
        if name in ("input_x", "input_u", "const"):
            base = {"input_x": "%x", "input_u": "%u", "const": "%consts"}[name]
            lines = [f"  {result}.p = getelementptr inbounds double, ptr {base}, i64 %a",
                     f"  {result} = load double, ptr {result}.p"]
        else:
            lines = instruction(name, result, operands[: _ARITY[name]], declarations,
                                f"{result}.t")
        blocks.append(f"{label}:\n" + "\n".join(lines) + "\n  br label %store")
        incoming.append(f"[ {result}, %{label} ]")
    incoming.append("[ 0x7FF8000000000000, %body ]")
    fields = "\n".join(
        f"  %f{j}.p = getelementptr inbounds i64, ptr %desc, i64 {j}\n"
        f"  %f{j} = load i64, ptr %f{j}.p" for j in range(8))
    return f"""; scalar_autograd tape VM
{chr(10).join(sorted(declarations))}

define internal void @run(ptr %code, i64 %n, ptr %consts, ptr %x, ptr %u, ptr %regs) {{
entry:
  br label %head
head:
  %i = phi i64 [ 0, %entry ], [ %next, %store ]
  %more = icmp slt i64 %i, %n
  br i1 %more, label %body, label %exit
body:
  %row = mul i64 %i, {_ROW}
  %p0 = getelementptr inbounds i32, ptr %code, i64 %row
  %op = load i32, ptr %p0
  %p1 = getelementptr inbounds i32, ptr %p0, i64 1
  %dst32 = load i32, ptr %p1
  %dst = sext i32 %dst32 to i64
  %p2 = getelementptr inbounds i32, ptr %p0, i64 2
  %a32 = load i32, ptr %p2
  %a = sext i32 %a32 to i64
  %p3 = getelementptr inbounds i32, ptr %p0, i64 3
  %b32 = load i32, ptr %p3
  %b = sext i32 %b32 to i64
  %p4 = getelementptr inbounds i32, ptr %p0, i64 4
  %c32 = load i32, ptr %p4
  %c = sext i32 %c32 to i64
  %pa = getelementptr inbounds double, ptr %regs, i64 %a
  %va = load double, ptr %pa
  %pb = getelementptr inbounds double, ptr %regs, i64 %b
  %vb = load double, ptr %pb
  %pc = getelementptr inbounds double, ptr %regs, i64 %c
  %vc = load double, ptr %pc
  switch i32 %op, label %store [ {" ".join(cases)} ]
{chr(10).join(blocks)}
store:
  %r = phi double {", ".join(incoming)}
  %pd = getelementptr inbounds double, ptr %regs, i64 %dst
  store double %r, ptr %pd
  %next = add i64 %i, 1
  br label %head
exit:
  ret void
}}

; desc: code, n_rows, consts, outs, n_values, n_outputs, n_params, n_inputs
define void @kernel(ptr %desc, ptr %x, ptr %u, ptr %val, ptr %der, ptr %regs) {{
entry:
{fields}
  %code = inttoptr i64 %f0 to ptr
  %consts = inttoptr i64 %f2 to ptr
  %outs = inttoptr i64 %f3 to ptr
  call void @run(ptr %code, i64 %f1, ptr %consts, ptr %x, ptr %u, ptr %regs)
  br label %ohead
ohead:
  %k = phi i64 [ 0, %entry ], [ %knext, %ostore ]
  %omore = icmp slt i64 %k, %f5
  br i1 %omore, label %obody, label %oexit
obody:
  %po = getelementptr inbounds i32, ptr %outs, i64 %k
  %o32 = load i32, ptr %po
  %o = sext i32 %o32 to i64
  %pr = getelementptr inbounds double, ptr %regs, i64 %o
  %ov = load double, ptr %pr
  %isval = icmp slt i64 %k, %f4
  %kd = sub i64 %k, %f4
  %pv = getelementptr inbounds double, ptr %val, i64 %k
  %pdd = getelementptr inbounds double, ptr %der, i64 %kd
  %dest = select i1 %isval, ptr %pv, ptr %pdd
  br label %ostore
ostore:
  store double %ov, ptr %dest
  %knext = add i64 %k, 1
  br label %ohead
oexit:
  ret void
}}

{batch_function("ptr %desc, ", "%regs", fields + chr(10) + "  %nd = sub i64 %f5, %f4" + chr(10),
                ("%f6", "%f7", "%f4", "%nd"))}
"""


class _Machine:
    """The VM's native code: compiled once per process."""

    def __init__(self) -> None:
        self.source = _vm_source()
        self._engine = native_engine(self.source, 2)
        self.kernel_address = self._engine.address("kernel")
        vp = ctypes.c_void_p
        self.kernel = ctypes.CFUNCTYPE(None, vp, vp, vp, vp, vp, vp)(self.kernel_address)
        self.batch = ctypes.CFUNCTYPE(None, vp, ctypes.c_int64, vp, vp, vp, vp, vp)(
            self._engine.address("batch"))


_machine: _Machine | None = None
_machine_lock = threading.Lock()


def machine() -> _Machine:
    """The process's VM, compiled on first use."""
    global _machine
    with _machine_lock:
        if _machine is None:
            _machine = _Machine()
    return _machine


def build_tape(program: Program) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Encode a lowered program: (code rows, constant pool, output registers, n_regs).

    Register ``i`` holds node ``i``; sums longer than two terms use extra registers
    for their partial sums (left to right, as everywhere else).
    """
    nodes = program.nodes
    n_params = program.n_params
    rows: list[tuple[int, int, int, int, int]] = []
    consts: list[float] = []
    extra = len(nodes)
    add = _OPCODE["add"]
    for i, (kind, payload) in enumerate(nodes):
        if kind == "input":
            if payload < n_params:
                rows.append((0, i, payload, 0, 0))
            else:
                rows.append((1, i, payload - n_params, 0, 0))
        elif kind == "const":
            rows.append((2, i, len(consts), 0, 0))
            consts.append(payload)
        elif kind == "sum":
            acc = payload[0]
            for j, b in enumerate(payload[1:]):
                dst = i if j == len(payload) - 2 else extra
                if dst != i:
                    extra += 1
                rows.append((add, dst, acc, b, 0))
                acc = dst
        else:
            args = (*payload, 0, 0)
            rows.append((_OPCODE[kind], i, args[0], args[1], args[2]))
    code = np.array(rows, dtype=np.int32).reshape(-1, _ROW)
    return (code, np.array(consts or [0.0]), np.array(program.outputs, dtype=np.int32),
            max(extra, 1))


class VMKernel:
    """A program run by the tape VM (see the module docstring)."""

    backend = "llvm"
    mode = "vm"

    def __init__(self, program: Program) -> None:
        self.program = program
        self._machine = machine()
        self.code, self.consts, self.outs, self.n_scratch = build_tape(program)
        self.desc = np.array([
            _addr(self.code), self.code.shape[0], _addr(self.consts), _addr(self.outs),
            program.n_values, len(program.outputs), program.n_params, program.n_inputs,
        ], dtype=np.int64)

    @property
    def source(self) -> str:
        """A listing of the tape (the VM's own IR is ``machine().source``)."""
        names = OPCODES
        head = [f"; tape VM program: {self.code.shape[0]} rows, {self.n_scratch} registers"]
        body = [f"r{d} = {names[o]} {a} {b} {c}" for o, d, a, b, c in self.code[:5000].tolist()]
        return "\n".join(head + body) + "\n"

    def run(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
            scratch: np.ndarray) -> None:
        self._machine.kernel(_addr(self.desc), _addr(x), _addr(u), _addr(val), _addr(der),
                             _addr(scratch))

    def run_batch(self, X: np.ndarray, U: np.ndarray, V: np.ndarray, D: np.ndarray,
                  scratch: np.ndarray) -> None:
        self._machine.batch(_addr(self.desc), X.shape[0], _addr(X), _addr(U), _addr(V),
                            _addr(D), _addr(scratch))

    def bind(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
             scratch: np.ndarray) -> Callable[[], None]:
        """A zero-argument call on these buffers (a small closure over the ctypes call)."""
        kernel = self._machine.kernel
        args = tuple(_addr(a) for a in (self.desc, x, u, val, der, scratch))
        keep = (self, x, u, val, der, scratch)

        def bound() -> None:
            kernel(*args)

        bound.keep_alive = keep  # type: ignore[attr-defined]
        return bound
