"""The native backend: a lowered Program becomes textual LLVM IR, compiled by llvmlite.

The IR text is written directly (f-strings; it can be printed and diffed). Large
programs are split into functions of at most :data:`CHUNK` instructions, called in
order by the kernel; only values live across chunks go through memory (the caller's
scratch buffer). The optimisation level is chosen by size, because LLVM's code
generation is superlinear in function size. libm functions are called by their C
names, so results match Python's ``math`` (and the Python backend) to the ulp in
practice; generated code contains only numbered values and numeric constants.

Calls go through ctypes with the GIL released. :meth:`LLVMKernel.bind` returns a
zero-argument native call of the kernel on fixed buffers
(:func:`~scalar_autograd.native.abi.bound_call`: a stub from a pool, nothing compiled).

A kernel compiles in two tiers (:data:`TIERED`): the IR is optimised by the pass list of
its size's level, and compiled at once by LLVM's cheap ``-O0`` code generator (a few
milliseconds for a few hundred instructions); once the process has been quiet for a
moment (no compile for 50 ms), a background thread compiles the same optimised IR with
the full code generator, and the kernel swaps the new code in, for
:meth:`~LLVMKernel.run`, :meth:`~LLVMKernel.run_batch` and every bound call, without
ever blocking a call (see :class:`~scalar_autograd.native.engine.Upgrade`). Both tiers
compute the same results bit for bit (same IR, no fast-math flags); the first runs a
few percent slower (8% on a 50-joint IK gradient). The quick code is the kernel alone:
the batch loops (:meth:`~LLVMKernel.run_batch`, and the ``rows`` loop of the native
solver drivers, :meth:`LLVMKernel.address`) run the final code, which they install
first if need be, as :meth:`LLVMKernel.tier_up` does.

:meth:`LLVMBackend.compile_portable` compiles through object code (the same passes and
code generator) and returns it as a
:class:`~scalar_autograd.backends.base.KernelArtifact`, which :meth:`LLVMBackend.load`
links again in another process on the same host, without generating or compiling IR.

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
import os
import threading
import weakref
from collections.abc import Callable

import numpy as np

from scalar_autograd.backends.base import BackendError, DerivedProgram, KernelArtifact
from scalar_autograd.ir.program import Program
from scalar_autograd.native.abi import BoundCall, address, bound_call
from scalar_autograd.native.emitter import batch_function, const, instruction
from scalar_autograd.native.engine import (
    NativeEngine,
    ObjectCache,
    Upgrade,
    compile_object,
    load_object,
    native_engine,
    opt_level,
    quick_engine,
    upgrade_in_background,
)

CHUNK = int(os.environ.get("SA_CHUNK", 2000))
"""Most instructions in one generated function."""

TIERED = os.environ.get("SA_TIERED", "1") != "0"
"""Whether kernels compile in two tiers (see the module docstring); ``SA_TIERED=0`` in
the environment compiles the final code before the first call instead. Kernels compiled
for the disk cache (:meth:`LLVMBackend.compile_portable`) always are final code."""


def generate(program: Program) -> tuple[str, int]:
    """LLVM IR text for ``kernel``, ``batch`` and ``rows``; also the scratch size in
    doubles."""
    _, text, n_scratch = generate_tiers(program)
    return text, n_scratch


def generate_tiers(program: Program) -> tuple[str, str, int]:
    """The text of the kernel alone (``kernel`` and its chunks: the quick tier), the
    whole module's (:func:`generate`), and the scratch size in doubles."""
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
            return const(payload)
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
        # one chunk is the kernel itself (a function less to optimise and compile, a
        # call less to run); several are called in order by the kernel below
        head = "define void @kernel" if n_chunks == 1 else \
            f"define internal void @chunk{c}"
        out.append(f"{head}(ptr noalias %x, ptr noalias %u, "
                   f"ptr noalias %val, ptr noalias %der, ptr noalias %s) "
                   f"{'noinline ' if n_chunks > 1 else ''}nounwind {{")
        out.append("entry:")
        out.extend(body)
        out.append("  ret void")
        out.append("}")

    nx, nu, nd = n_params, program.n_inputs, len(program.outputs) - nv
    if n_chunks > 1:
        calls = "\n".join(
            f"  call void @chunk{c}(ptr %x, ptr %u, ptr %val, ptr %der, ptr %s)"
            for c in range(n_chunks)
        )
        out.append(f"""define void @kernel(ptr %x, ptr %u, ptr %val, ptr %der, ptr %s) nounwind {{
entry:
{calls}
  ret void
}}""")
    loops = [batch_function("", "%s", "", (str(nx), str(nu), str(nv), str(nd))),
             # one params vector for every row (a curve fit's samples): the solver
             # drivers' evaluation loop
             batch_function("", "%s", "", ("0", str(nu), str(nv), str(nd)), name="rows")]
    head = "; generated by scalar_autograd\n" + "\n".join(sorted(declarations)) + "\n\n"
    kernel = head + "\n".join(out) + "\n"
    return kernel, head + "\n".join(out + loops) + "\n", len(scratch_slot)


_KERNEL_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_void_p)
_BATCH_T = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


class LLVMKernel(DerivedProgram):
    """Native code for one program, owned by its MCJIT engines.

    Args:
        program: the lowered program.
        portable: compile through object code and keep it (:attr:`object_code`), for
            :meth:`LLVMBackend.compile_portable`; the code is final at once.
        tiered: compile in two tiers (see the module docstring); by default
            :data:`TIERED`. Programs whose level is 0 (10,000 instructions and more)
            have one tier only.

    Attributes:
        level: the code generation level of the final code (see
            :func:`~scalar_autograd.native.engine.opt_level`).
        code_level: the level of the code that runs now (0 until the final code is in).
        n_scratch: doubles of scratch memory a call needs.
        object_code: the object code of a portable kernel, else ``None``.
    """

    backend = "llvm"
    mode = "native"
    _upgrade: Upgrade | None

    def __init__(self, program: Program, portable: bool = False,
                 tiered: bool | None = None) -> None:
        self._program: Program | None = program
        self._derive: Callable[[], Program] | None = None
        self._lock = threading.Lock()
        self._init_calls()
        quick_source, source, self.n_scratch = generate_tiers(program)
        self._source: str | None = source
        self.object_code: bytes | None = None
        self.level = level = opt_level(program.n_instructions)
        tiered = TIERED if tiered is None else tiered
        try:
            if portable:
                self.object_code = compile_object(source, level)
                self._attach(load_object(self.object_code), level)
            elif tiered and level > 0:
                # the quick code is the kernel alone: the batch loops come with the
                # final code (a batch is many calls; it waits for that code)
                engine, pending = quick_engine(quick_source, level, source)
                self._attach(engine, 0, loops=False)
                assert pending is not None
                self._upgrade = upgrade_in_background(pending,
                                                      weakref.WeakMethod(self._install))
            else:
                self._attach(native_engine(source, level), level)
        except RuntimeError as exc:
            raise BackendError(f"llvm backend could not compile the kernel: {exc}",
                               source) from exc

    def _init_calls(self) -> None:
        self._swap_lock = threading.Lock()     # swaps code; registers bound calls
        self._bound: weakref.WeakSet[BoundCall] = weakref.WeakSet()
        self._engines: list[NativeEngine] = []  # every engine this kernel ran: kept
        self._upgrade = None

    def _attach(self, engine: NativeEngine, code_level: int, loops: bool = True) -> None:
        """Run ``engine``'s code from now on (the caller holds ``_swap_lock`` when other
        threads may be calling); ``loops``: it has the batch loops."""
        self._engines.append(engine)   # calls in progress may still run older code
        self._kernel_address = engine.address("kernel")
        self._kernel = _KERNEL_T(self._kernel_address)
        self._batch = _BATCH_T(engine.address("batch")) if loops else None
        self.code_level = code_level
        self.timings = engine.timings

    def _install(self, engine: NativeEngine) -> None:
        """The final code, from the upgrade: swap it in for every way of calling."""
        with self._swap_lock:
            timings = {**self.timings, **engine.timings}
            self._attach(engine, self.level)
            self.timings = timings
            for call in list(self._bound):
                call.retarget(self._kernel_address)

    def tier_up(self) -> None:
        """Install the final code now, if it is not running yet: compile it in this
        thread, or wait for the background compile in progress. A no-op for a kernel
        with one tier.

        Raises:
            BackendError: LLVM failed on the final code (the quick code, which computes
                the same, keeps serving calls and bound calls).
        """
        upgrade = self._upgrade
        if upgrade is not None:
            upgrade.finish()
            if upgrade.error is not None:
                raise BackendError(f"llvm backend could not compile the kernel's final "
                                   f"code: {upgrade.error}", self.source) from upgrade.error

    @property
    def _engine(self) -> NativeEngine:
        """The engine of the final code (installed first if need be); what the native
        solver drivers read the addresses of ``kernel`` and ``rows`` from."""
        self.tier_up()
        return self._engines[-1]

    @property
    def current_address(self) -> int:
        """The address of ``kernel`` in the code running now (the quick code until the
        final code is installed; the quick code stays valid while this kernel lives)."""
        return self._kernel_address

    def address(self, name: str) -> int:
        """The address of the final code's function ``name`` (``"kernel"``, ``"batch"``
        or ``"rows"``), valid while this kernel lives; installs the final code first."""
        return self._engine.address(name)

    @classmethod
    def from_artifact(cls, artifact: KernelArtifact, program: Callable[[], Program]
                      ) -> LLVMKernel:
        """The kernel :meth:`artifact` saved; ``program()`` gives its program (and so its
        source) on demand.

        Raises:
            ValueError: the artifact holds no llvm object code.
        """
        if artifact.backend != "llvm" or "object" not in artifact.blobs \
                or "n_scratch" not in artifact.sizes:
            raise ValueError(f"artifact must hold llvm object code; got one of the "
                             f"{artifact.backend!r} backend with {sorted(artifact.blobs)}")
        kernel = cls.__new__(cls)
        kernel._program = None
        kernel._derive = program
        kernel._lock = threading.Lock()
        kernel._init_calls()
        kernel._source = None
        kernel.n_scratch = int(artifact.sizes["n_scratch"])
        kernel.object_code = bytes(artifact.blobs["object"])
        kernel.level = int(artifact.sizes.get("level", -1))   # -1: not recorded
        kernel._attach(load_object(kernel.object_code), kernel.level)   # final code
        return kernel

    def artifact(self) -> KernelArtifact:
        """The object code, scratch size and level (only for a kernel compiled
        ``portable``)."""
        if self.object_code is None:
            raise ValueError("artifact needs a kernel compiled with portable=True")
        return KernelArtifact("llvm", {"n_scratch": self.n_scratch, "level": self.level},
                              {"object": self.object_code})

    @property
    def source(self) -> str:
        """The LLVM IR text (generated again, once, for a kernel loaded from an artifact)."""
        if self._source is None:
            self._source = generate(self.program)[0]
        return self._source

    def run(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
            scratch: np.ndarray) -> None:
        self._kernel(address(x), address(u), address(val), address(der), address(scratch))

    def run_batch(self, X: np.ndarray, U: np.ndarray, V: np.ndarray, D: np.ndarray,
                  scratch: np.ndarray) -> None:
        """Every row, in one native loop of the final code (installed first if need be:
        see :meth:`tier_up`)."""
        batch = self._batch
        if batch is None:
            self.tier_up()
            batch = self._batch
            assert batch is not None
        batch(X.shape[0], address(X), address(U), address(V), address(D), address(scratch))

    def bind(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
             scratch: np.ndarray) -> Callable[[], None]:
        """A zero-argument native call of the kernel on these buffers
        (:func:`~scalar_autograd.native.abi.bound_call`); it keeps the buffers and this
        kernel alive, and follows the kernel to its final code."""
        buffers = (x, u, val, der, scratch)
        with self._swap_lock:
            call = bound_call(self._kernel_address, [address(a) for a in buffers],
                              (self, *buffers))
            self._bound.add(call)
        return call


class LLVMBackend:
    """Backend name ``"llvm"``: native code (the registry sends huge programs to the VM)."""

    name = "llvm"

    def compile(self, program: Program) -> LLVMKernel:
        """Native code for ``program`` (in two tiers when :data:`TIERED`)."""
        return LLVMKernel(program)

    def settings(self) -> str:
        """The chunk size (``SA_CHUNK``): it shapes the generated code."""
        return f"chunk={CHUNK}"

    def compile_portable(self, program: Program, cache: ObjectCache | None = None
                         ) -> tuple[LLVMKernel, KernelArtifact]:
        """Native code for ``program`` and its object code as an artifact.

        ``cache`` is not needed: the artifact is the kernel's whole object code."""
        kernel = LLVMKernel(program, portable=True)
        return kernel, kernel.artifact()

    def load(self, artifact: KernelArtifact, program: Callable[[], Program],
             cache: ObjectCache | None = None) -> LLVMKernel:
        """The kernel ``artifact`` holds (object code from :meth:`compile_portable`)."""
        return LLVMKernel.from_artifact(artifact, program)
