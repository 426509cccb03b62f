"""A native virtual machine for very large programs: compiled once, fed a tape.

LLVM's code generation costs about 10 µs per instruction at O0 on this kind of
machine, so a 10^6-instruction program would take tens of seconds to compile. The
``"vm"`` backend instead encodes the program as a *tape* (an int32 array of
``opcode, dst, a, b, c`` rows plus a constant pool) and runs it on one interpreter loop
written in LLVM IR and compiled once per process (CasADi's SX virtual machine does the
same). Building a tape is a linear pass; running it costs a few ns per instruction.
``"llvm"`` and ``"auto"`` choose it for large programs
(:data:`~scalar_autograd.backends.registry.VM_THRESHOLD`). The VM's instruction set is
generated from the op table's lowerings, through the same
:func:`~scalar_autograd.native.emitter.instruction` emitter as native code.

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
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

import numpy as np

from scalar_autograd.backends.base import KernelArtifact
from scalar_autograd.ir.program import Program
from scalar_autograd.native.abi import address, address_block, bound_call
from scalar_autograd.native.emitter import FunctionEmitter, batch_function, instruction, module
from scalar_autograd.native.engine import ObjectCache, native_engine
from scalar_autograd.ops import OPS

OPCODES: tuple[str, ...] = ("input_x", "input_u", "const") + tuple(
    op.name for op in OPS if op.lower.kind in ("infix", "call") and op.name != "sum"
)
"""The VM's instruction set: leaves, then every primitive op (sums become adds)."""
_OPCODE = {name: i for i, name in enumerate(OPCODES)}
_ARITY = {op.name: op.arity for op in OPS}
_ROW = 5  # opcode, dst, a, b, c


_DESC = ("code", "n_rows", "consts", "outs", "n_values", "n_outputs", "n_params",
         "n_inputs")
"""The int64 words of a tape's descriptor (:attr:`VMKernel.desc`), in order."""


def _run_function() -> tuple[str, set[str]]:
    """``@run``: the interpreter loop, one ``switch`` case per opcode; also the
    declarations it needs."""
    e = FunctionEmitter(inbounds=True)
    i = e.loop("i", "0", "%n", "entry")
    row = e.op("mul", "i64", i, str(_ROW))
    words = [e.load("i32", "%code", e.index(row, j)) for j in range(_ROW)]
    dst, a, b, c = (e.fresh(stem) for stem in ("dst", "a", "b", "c"))
    for name, word in zip((dst, a, b, c), words[1:], strict=True):
        e.emit(f"{name} = sext i32 {word} to i64")
    operands = [e.load("double", "%regs", r) for r in (a, b, c)]
    cases = " ".join(f"i32 {code}, label %case{code}" for code in range(len(OPCODES)))
    e.emit(f"switch i32 {words[0]}, label %store [ {cases} ]")
    leaves = {"input_x": "%x", "input_u": "%u", "const": "%consts"}
    incoming = []
    for code, name in enumerate(OPCODES):
        e.label(f"case{code}")
        result = f"%r{code}"  # an op defines %r{code} and temporaries %r{code}.t*
        if name in leaves:     # a leaf loads into a fresh name
            result = e.load("double", leaves[name], a)
        else:
            e.lines.extend(instruction(name, result, operands[: _ARITY[name]],
                                       e.declarations, f"{result}.t"))
        e.emit("br label %store")
        incoming.append(f"[ {result}, %case{code} ]")
    incoming.append("[ 0x7FF8000000000000, %i.body ]")  # unknown opcode: nan
    e.label("store")
    e.emit(f"%r = phi double {', '.join(incoming)}")
    e.store("%r", "%regs", dst)
    e.end_loop("i")
    return e.function("run", internal=True,
                      params="ptr %code, i64 %n, ptr %consts, ptr %x, ptr %u, "
                             "ptr %regs"), e.declarations


def _descriptor(e: FunctionEmitter) -> dict[str, str]:
    """Load every word of the descriptor ``%desc`` (integers, and pointers by name)."""
    fields = {name: e.arg(j, "i64", "%desc") for j, name in enumerate(_DESC)}
    fields["n_derivs"] = e.op("sub", "i64", fields["n_outputs"], fields["n_values"])
    return fields


def _kernel_function() -> str:
    """``@kernel``: run the tape, then copy the output registers to ``val`` and ``der``."""
    e = FunctionEmitter(inbounds=True)
    f = _descriptor(e)
    code, consts, outs = (e.fresh(stem) for stem in ("code", "consts", "outs"))
    for name, word in ((code, "code"), (consts, "consts"), (outs, "outs")):
        e.emit(f"{name} = inttoptr i64 {f[word]} to ptr")
    e.emit(f"call void @run(ptr {code}, i64 {f['n_rows']}, ptr {consts}, ptr %x, ptr %u, "
           f"ptr %regs)")
    k = e.loop("k", "0", f["n_outputs"], "entry")
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


def _vm_source() -> str:
    run, declarations = _run_function()
    return module("scalar_autograd tape VM", declarations,
                  [run, _kernel_function(), _batch_function()])


class _Machine:
    """The VM's native code: compiled once per process (or loaded from ``cache``)."""

    def __init__(self, cache: ObjectCache | None = None) -> None:
        self.source = _vm_source()
        self._engine = native_engine(self.source, 2, cache)
        self.kernel_address = self._engine.address("kernel")
        vp = ctypes.c_void_p
        self.kernel = ctypes.CFUNCTYPE(None, vp, vp, vp, vp, vp, vp)(self.kernel_address)
        self.batch = ctypes.CFUNCTYPE(None, vp, ctypes.c_int64, vp, vp, vp, vp, vp)(
            self._engine.address("batch"))


_machine: _Machine | None = None
_machine_lock = threading.Lock()


def machine(cache: ObjectCache | None = None) -> _Machine:
    """The process's VM, compiled on first use (its object code through ``cache``)."""
    global _machine
    with _machine_lock:
        if _machine is None:
            _machine = _Machine(cache)
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


_I32 = np.dtype("<i4")
_F64 = np.dtype("<f8")


class VMKernel:
    """A program run by the tape VM (see the module docstring).

    Args:
        program: the lowered program to encode as a tape.
        cache: object code storage for the VM itself (compiled once per process).
    """

    backend = "vm"
    mode = "vm"

    def __init__(self, program: Program, cache: ObjectCache | None = None) -> None:
        code, consts, outs, n_regs = build_tape(program)
        self._program: Program | None = program
        self._derive: Callable[[], Program] | None = None
        self._setup(code, consts, outs, n_regs, program.n_values, len(program.outputs),
                    program.n_params, program.n_inputs, cache)

    def _setup(self, code: np.ndarray, consts: np.ndarray, outs: np.ndarray, n_regs: int,
               n_values: int, n_outputs: int, n_params: int, n_inputs: int,
               cache: ObjectCache | None) -> None:
        self._machine = machine(cache)
        self._lock = threading.Lock()
        self.code, self.consts, self.outs, self.n_scratch = code, consts, outs, n_regs
        self.n_values, self.n_derivs = n_values, n_outputs - n_values
        self.n_params, self.n_inputs = n_params, n_inputs
        self.desc = address_block([  # the words of _DESC, in order
            code, code.shape[0], consts, outs, n_values, n_outputs, n_params, n_inputs,
        ])

    @classmethod
    def from_artifact(cls, artifact: KernelArtifact, program: Callable[[], Program],
                      cache: ObjectCache | None = None) -> VMKernel:
        """The kernel :meth:`artifact` saved; ``program()`` gives its program on demand.

        Raises:
            ValueError: the artifact is not a VM tape, or an index in it is out of range.
        """
        if artifact.backend != "vm":
            raise ValueError(f"artifact must come from the vm backend; got "
                             f"{artifact.backend!r}")
        try:
            sizes, blobs = artifact.sizes, artifact.blobs
            n_regs, n_values = sizes["n_regs"], sizes["n_values"]
            n_outputs = n_values + sizes["n_derivs"]
            n_params, n_inputs = sizes["n_params"], sizes["n_inputs"]
            code = np.frombuffer(blobs["code"], dtype=_I32).reshape(-1, _ROW)
            consts = np.frombuffer(blobs["consts"], dtype=_F64)
            outs = np.frombuffer(blobs["outs"], dtype=_I32)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"artifact is not a complete VM tape ({exc})") from None
        _check_tape(code, consts, outs, n_regs, n_values, n_outputs, n_params, n_inputs)
        kernel = cls.__new__(cls)
        kernel._program = None
        kernel._derive = program
        kernel._setup(code, consts, outs, n_regs, n_values, n_outputs, n_params, n_inputs,
                      cache)
        return kernel

    def artifact(self) -> KernelArtifact:
        """The tape as plain data (three little-endian arrays and their sizes)."""
        return KernelArtifact("vm", {
            "n_regs": self.n_scratch, "n_values": self.n_values, "n_derivs": self.n_derivs,
            "n_params": self.n_params, "n_inputs": self.n_inputs,
        }, {"code": self.code.astype(_I32).tobytes(),
            "consts": self.consts.astype(_F64).tobytes(),
            "outs": self.outs.astype(_I32).tobytes()})

    @property
    def program(self) -> Program:
        """The lowered program (derived again, once, for a kernel loaded from an artifact)."""
        if self._program is None:
            with self._lock:
                if self._program is None:
                    assert self._derive is not None
                    self._program = self._derive()
        return self._program

    @property
    def source(self) -> str:
        """A listing of the tape (the VM's own IR is ``machine().source``)."""
        names = OPCODES
        head = [f"; tape VM program: {self.code.shape[0]} rows, {self.n_scratch} registers"]
        body = [f"r{d} = {names[o]} {a} {b} {c}" for o, d, a, b, c in self.code[:5000].tolist()]
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


def _check_tape(code: np.ndarray, consts: np.ndarray, outs: np.ndarray, n_regs: int,
                n_values: int, n_outputs: int, n_params: int, n_inputs: int) -> None:
    """Raise ValueError unless every index of the tape is in range (the VM checks none).

    Every row loads registers ``a``, ``b``, ``c`` and stores ``dst``; a leaf row reads
    slot ``a`` of ``x``, ``u`` or the constant pool instead. The sizes themselves are
    the caller's to check against the buffers it allocates (the runtime compares them
    with the program's before loading).
    """
    def bad(why: str) -> ValueError:
        return ValueError(f"artifact holds an invalid VM tape: {why}")

    if min(n_regs, n_values, n_outputs, n_params, n_inputs) < 0 or n_values > n_outputs:
        raise bad("negative or inconsistent sizes")
    if outs.shape != (n_outputs,) or consts.size == 0:
        raise bad(f"{outs.size} output registers for {n_outputs} outputs")
    if code.size == 0:
        if n_outputs:
            raise bad("an empty tape with outputs")
        return
    op, dst, a, b, c = code.T
    if op.min() < 0 or op.max() >= len(OPCODES):
        raise bad("an unknown opcode")
    if min(dst.min(), a.min(), b.min(), c.min(), outs.min(initial=0)) < 0 \
            or max(dst.max(), a.max(), b.max(), c.max(), outs.max(initial=0)) >= n_regs:
        raise bad("a register out of range")
    for leaf, bound in ((0, n_params), (1, n_inputs), (2, consts.size)):
        rows = a[op == leaf]
        if rows.size and rows.max() >= bound:
            raise bad(f"a {OPCODES[leaf]} slot out of range")


class VMBackend:
    """Backend name ``"vm"``: every program runs on the tape VM."""

    name = "vm"

    def compile(self, program: Program) -> VMKernel:
        """A tape for ``program`` (the VM itself is compiled once per process)."""
        return VMKernel(program)

    def settings(self) -> str:
        """Nothing: a tape depends on the program and the op table only."""
        return ""

    def compile_portable(self, program: Program, cache: ObjectCache | None = None
                         ) -> tuple[VMKernel, KernelArtifact]:
        """A tape for ``program`` and its artifact (the VM's code through ``cache``)."""
        kernel = VMKernel(program, cache)
        return kernel, kernel.artifact()

    def load(self, artifact: KernelArtifact, program: Callable[[], Program],
             cache: ObjectCache | None = None) -> VMKernel:
        """The tape ``artifact`` holds, checked (see :meth:`VMKernel.from_artifact`)."""
        return VMKernel.from_artifact(artifact, program, cache)
