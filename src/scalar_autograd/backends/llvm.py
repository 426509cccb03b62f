"""The native backend: a lowered Program becomes textual LLVM IR, compiled by llvmlite.

The IR text is written directly (f-strings; it can be printed and diffed). Large
programs are split into functions of at most :data:`CHUNK` instructions, called in
order by the kernel; only values live across chunks go through memory (the caller's
scratch buffer). The optimisation level is chosen by size, because LLVM's code
generation is superlinear in function size. libm functions are called by their C
names, so results match Python's ``math`` (and the Python backend) to the ulp in
practice; generated code contains only numbered values and numeric constants.

Calls go through ctypes with the GIL released. :meth:`LLVMKernel.bind` compiles a tiny
wrapper with the buffer addresses baked in, so a call takes no arguments at all.

Example:
    >>> import numpy as np, scalar_autograd as sa
    >>> from scalar_autograd.ir.trace import trace
    >>> x = sa.Value(0.0)
    >>> program, _ = trace([x * x + 1.0], [x])
    >>> k = LLVMBackend().compile(program)
    >>> val = np.zeros(1); k.run(np.array([3.0]), np.zeros(0), val, np.zeros(0), np.zeros(0))
    >>> float(val[0])
    10.0
"""

from __future__ import annotations

import ctypes
import struct
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from scalar_autograd.backends.base import BackendError
from scalar_autograd.ir.program import Program
from scalar_autograd.ops import OPS_BY_NAME

try:  # llvmlite is a core dependency, but say clearly what to do if it is missing
    import llvmlite.binding as _llvm
except ImportError:  # pragma: no cover - exercised only without llvmlite
    _llvm = None

CHUNK = int(__import__("os").environ.get("SA_CHUNK", 2000))
"""Most instructions in one generated function."""

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

_init_lock = threading.Lock()
_initialised = False


def available() -> bool:
    """Whether llvmlite imports."""
    return _llvm is not None


def _ensure_llvm() -> Any:
    global _initialised
    if _llvm is None:
        raise ImportError(
            "the llvm backend needs llvmlite: pip install llvmlite "
            "(or use backend='python')"
        )
    with _init_lock:
        if not _initialised:
            _llvm.initialize_native_target()
            _llvm.initialize_native_asmprinter()
            _initialised = True
    return _llvm


def _const(value: float) -> str:
    return f"0x{_unpack_q(_pack(value))[0]:016X}"


def opt_level(n_instructions: int) -> int:
    """O2 below 4,000 instructions, O1 below 10,000, O0 above.

    Measured here for an 18k-instruction program: O0 code generation 0.3 s, O1 passes
    plus code generation 1.0 s, O2 1.4 s.
    """
    if n_instructions < 4_000:
        return 2
    if n_instructions < 10_000:
        return 1
    return 0


def instruction(kind: str, name: str, args: list[str], declarations: set[str],
                temp: str) -> list[str]:
    """LLVM IR lines computing op ``kind`` of operands ``args`` into SSA value ``name``.

    ``declarations`` collects the libm/intrinsic declarations needed. The lines define
    ``name`` and, for intermediate results, only names that start with ``temp`` (``temp``
    followed by a digit for the partial sums of an n-ary sum, by a letter otherwise).
    The caller picks ``name`` and ``temp`` from name spaces of its own, so no other
    definition in the function can clash with them.
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
        fn, arity = _INTRINSIC.get(sym, (sym, _LIBM_ARITY.get(sym, 1)))
        declarations.add(f"declare double @{fn}({', '.join(['double'] * arity)})")
        call_args = ", ".join(f"double {a}" for a in args)
        return [f"  {name} = call double @{fn}({call_args})"]
    raise ValueError(f"op {kind} must be lowered before code generation")


def batch_function(kernel_prefix: str, scratch: str, prologue: str,
                   strides: tuple[str, str, str, str]) -> str:
    """LLVM IR of ``@batch``: ``@kernel`` on every row of ``X, U, V, D``.

    ``kernel_prefix`` is the leading argument list of ``@kernel`` before the four row
    pointers (``""`` or ``"ptr %desc, "``), ``scratch`` its last argument, ``prologue``
    lines computing the ``strides`` (values or SSA names for params, inputs, values and
    derivatives per row).
    """
    sx, su, sv, sd = strides
    head = "ptr %desc, i64 %n" if kernel_prefix else "i64 %n"
    return f"""define void @batch({head}, ptr %X, ptr %U, ptr %V, ptr %D, ptr {scratch}) nounwind {{
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


def generate(program: Program) -> tuple[str, int]:
    """LLVM IR text for ``kernel`` and ``batch``; also the scratch size in doubles."""
    nodes = program.nodes
    n_params, nv = program.n_params, program.n_values
    # chunk assignment: op nodes in order, CHUNK per function
    chunk_of = [-1] * len(nodes)
    members: list[list[int]] = [[]]
    for i, (kind, _) in enumerate(nodes):
        if kind in ("input", "const"):
            continue
        if len(members[-1]) == CHUNK:
            members.append([])
        chunk_of[i] = len(members) - 1
        members[-1].append(i)
    n_chunks = len(members)
    # values used in a later chunk go through scratch
    scratch_slot: dict[int, int] = {}
    for i, (kind, payload) in enumerate(nodes):
        if kind in ("input", "const"):
            continue
        for a in payload:
            if chunk_of[a] >= 0 and chunk_of[a] != chunk_of[i] and a not in scratch_slot:
                scratch_slot[a] = len(scratch_slot)
    # outputs are stored by the chunk that defines them (inputs/consts: by chunk 0)
    stores: list[list[tuple[int, str, int]]] = [[] for _ in range(n_chunks)]
    for k, o in enumerate(program.outputs):
        target, index = ("val", k) if k < nv else ("der", k - nv)
        stores[max(chunk_of[o], 0)].append((o, target, index))

    declarations: set[str] = set()
    out: list[str] = []
    # SSA names of a chunk, one prefix per role so no two can clash (an op may use its
    # temp prefix for several intermediates, see instruction()):
    #   %v{i}  value of node i          %t{i}.*  temporaries of node i's instruction
    #   %l{a}  node a loaded here       %lp{a}   address it is loaded from
    #   %sp{i} scratch slot of node i   %o{j}    address of output j
    # (%x %u %val %der %s are the function's parameters.)

    def operand(a: int, local: dict[int, str]) -> str:
        kind, payload = nodes[a]
        if kind == "const":
            return _const(payload)
        return local[a]

    for c in range(n_chunks):
        body: list[str] = []
        local: dict[int, str] = {}

        def load(a: int, body: list[str] = body, local: dict[int, str] = local) -> None:
            if a in local or nodes[a][0] == "const":
                return
            kind, payload = nodes[a]
            name = f"%l{a}"
            if kind == "input":
                base, idx = ("%x", payload) if payload < n_params else ("%u", payload - n_params)
            else:
                base, idx = "%s", scratch_slot[a]
            body.append(f"  %lp{a} = getelementptr inbounds double, ptr {base}, i64 {idx}")
            body.append(f"  {name} = load double, ptr %lp{a}")
            local[a] = name

        for i in members[c]:
            kind, payload = nodes[i]
            for a in payload:
                load(a)
            args = [operand(a, local) for a in payload]
            name = f"%v{i}"
            body.extend(instruction(kind, name, args, declarations, f"%t{i}."))
            local[i] = name
            if i in scratch_slot:
                body.append(f"  %sp{i} = getelementptr inbounds double, ptr %s, "
                            f"i64 {scratch_slot[i]}")
                body.append(f"  store double {name}, ptr %sp{i}")
        for j, (o, target, index) in enumerate(stores[c]):
            load(o)
            body.append(f"  %o{j} = getelementptr inbounds double, ptr %{target}, i64 {index}")
            body.append(f"  store double {operand(o, local)}, ptr %o{j}")
        out.append(f"define internal void @chunk{c}(ptr noalias %x, ptr noalias %u, "
                   f"ptr noalias %val, ptr noalias %der, ptr noalias %s) "
                   f"{'noinline ' if n_chunks > 1 else ''}nounwind {{")
        out.append("entry:")
        out.extend(body)
        out.append("  ret void")
        out.append("}")

    calls = "\n".join(
        f"  call void @chunk{c}(ptr %x, ptr %u, ptr %val, ptr %der, ptr %s)"
        for c in range(n_chunks)
    )
    nx, nu, nd = n_params, program.n_inputs, len(program.outputs) - nv
    out.append(f"""define void @kernel(ptr %x, ptr %u, ptr %val, ptr %der, ptr %s) nounwind {{
entry:
{calls}
  ret void
}}""")
    out.append(batch_function("", "%s", "", (str(nx), str(nu), str(nv), str(nd))))
    text = "; generated by scalar_autograd\n" + "\n".join(sorted(declarations)) + "\n\n"
    return text + "\n".join(out) + "\n", len(scratch_slot)


class NativeEngine:
    """An MCJIT execution engine holding compiled LLVM IR (and its target machine)."""

    def __init__(self, engine: Any, target_machine: Any) -> None:
        self.engine = engine
        self.target_machine = target_machine

    def address(self, name: str) -> int:
        """The address of the compiled function ``name``."""
        return int(self.engine.get_function_address(name))


def _optimise(llvm: Any, module: Any, target_machine: Any, level: int) -> None:
    """Run a short pass list over ``module``.

    Our IR arrives hash-consed, folded and free of dead code, so LLVM's full -O2 module
    pipeline buys little, and in llvmlite it leaks about 58 KB of native memory per
    run (measured here: +58 MB for 1,000 compiles). This explicit list leaks about a
    tenth of that and keeps what matters: instcombine folds the comparison -> double ->
    select chains, simplifycfg and DCE tidy up; the code generator (at ``level``) does
    instruction selection and register allocation.
    """
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    builder = llvm.create_pass_builder(target_machine, pto)
    manager = llvm.create_new_module_pass_manager()
    manager.add_instruction_combine_pass()
    manager.add_simplify_cfg_pass()
    if level > 1:
        manager.add_new_gvn_pass()
        manager.add_instruction_combine_pass()
    manager.add_dead_code_elimination_pass()
    manager.run(module, builder)


def native_engine(source: str, level: int) -> NativeEngine:
    """Parse, verify, optimise (``level`` 0-3) and compile LLVM IR text for this CPU.

    Raises:
        RuntimeError: from LLVM when the text does not parse or verify.
    """
    llvm = _ensure_llvm()
    module = llvm.parse_assembly(source)
    module.verify()
    target_machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
        opt=level)
    if level > 0:
        _optimise(llvm, module, target_machine, level)
    engine = llvm.create_mcjit_compiler(module, target_machine)
    engine.finalize_object()
    return NativeEngine(engine, target_machine)


_KERNEL_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_void_p)
_BATCH_T = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_BOUND_T = ctypes.CFUNCTYPE(None)


def _addr(a: np.ndarray) -> int:
    return int(a.ctypes.data)


class LLVMKernel:
    """Native code for one program, owned by its own MCJIT engine."""

    backend = "llvm"
    mode = "native"

    def __init__(self, program: Program) -> None:
        self.program = program
        self.source, self.n_scratch = generate(program)
        try:
            self._engine = native_engine(self.source, opt_level(program.n_instructions))
        except RuntimeError as exc:
            raise BackendError(f"llvm backend could not compile the kernel: {exc}",
                               self.source) from exc
        self._kernel = _KERNEL_T(self._engine.address("kernel"))
        self._batch = _BATCH_T(self._engine.address("batch"))

    def run(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
            scratch: np.ndarray) -> None:
        self._kernel(_addr(x), _addr(u), _addr(val), _addr(der), _addr(scratch))

    def run_batch(self, X: np.ndarray, U: np.ndarray, V: np.ndarray, D: np.ndarray,
                  scratch: np.ndarray) -> None:
        self._batch(X.shape[0], _addr(X), _addr(U), _addr(V), _addr(D), _addr(scratch))

    def bind(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
             scratch: np.ndarray) -> Callable[[], None]:
        """A zero-argument native function with these buffers' addresses baked in.

        The wrapper is a tiny module of its own engine (compiled at O0, well under a
        millisecond), so it is freed with the returned callable, which keeps the buffers
        and this kernel alive.
        """
        ptrs = ", ".join(f"ptr inttoptr (i64 {_addr(a)} to ptr)"
                         for a in (x, u, val, der, scratch))
        kernel = self._engine.address("kernel")
        engine = native_engine(
            f"define void @bound() nounwind {{\n"
            f"  call void inttoptr (i64 {kernel} to ptr)({ptrs})\n  ret void\n}}\n", 0)
        fn = _BOUND_T(engine.address("bound"))
        fn.keep_alive = (engine, self, x, u, val, der, scratch)  # type: ignore[attr-defined]
        return fn  # type: ignore[no-any-return]


VM_THRESHOLD = 20_000
"""Programs with more instructions run on the tape VM instead of native code."""


class LLVMBackend:
    """Backend name ``"llvm"``: native code, or the native tape VM for huge programs."""

    name = "llvm"

    def compile(self, program: Program) -> Any:
        """Native code for ``program``; above :data:`VM_THRESHOLD` instructions, a tape."""
        if program.n_instructions > VM_THRESHOLD:
            from scalar_autograd.backends.vm import VMKernel

            return VMKernel(program)
        return LLVMKernel(program)
