"""Native engines: llvmlite set-up, the opt level by size, and LLVM text -> machine code.

Every piece of native code in the package (kernels, the tape VM, the optimiser and
Schur kernels, the zero-argument bound wrappers) is compiled here, by
:func:`native_engine`. llvmlite is a core dependency, but :func:`available` says
whether it imports, and :func:`native_engine` raises an :class:`ImportError` that says
what to install when it does not.

Compiled code can outlive the process as *object code*: :func:`compile_object` runs the
same passes and code generator and returns the relocatable object file's bytes, and
:func:`load_object` links such bytes into a fresh engine (what MCJIT does in memory
anyway). ``native_engine(source, level, cache=...)`` uses that through any
:class:`ObjectCache` (the runtime's on-disk cache is one), keyed by the text, the level
and :func:`host_identity`, so the text is compiled once per machine, not per process.

Example:
    >>> if available():
    ...     engine = native_engine("define double @two() {\\n  ret double 2.0\\n}\\n", 0)
    ...     import ctypes
    ...     print(ctypes.CFUNCTYPE(ctypes.c_double)(engine.address("two"))())
    ... else:
    ...     print(2.0)
    2.0
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any, Protocol

try:  # llvmlite is a core dependency, but say clearly what to do if it is missing
    import llvmlite.binding as _llvm
except ImportError:  # pragma: no cover - exercised only without llvmlite
    _llvm = None

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


_host: tuple[tuple[str, str], ...] | None = None


def host_identity() -> tuple[tuple[str, str], ...]:
    """What native code compiled here depends on, as ``(name, value)`` pairs.

    The llvmlite and LLVM versions, the target triple, the host CPU's name and its
    feature string: object code is reused only where all of them are equal.

    Raises:
        ImportError: without llvmlite.
    """
    global _host
    if _host is None:
        llvm = _ensure_llvm()
        import llvmlite

        _host = (("llvmlite", str(llvmlite.__version__)),
                 ("llvm", ".".join(map(str, llvm.llvm_version_info))),
                 ("triple", str(llvm.get_process_triple())),
                 ("cpu", str(llvm.get_host_cpu_name())),
                 ("features", str(llvm.get_host_cpu_features().flatten())))
    return _host


class ObjectCache(Protocol):
    """Storage for object code: ``load`` returns what ``save`` stored under ``key``
    (or ``None``); it must return only bytes it has verified to be complete."""

    def load(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""

    def save(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (failures are the cache's business)."""


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
    tenth of that and keeps what matters: SROA promotes stack variables (the solver
    drivers' ``alloca`` slots) to registers, instcombine folds the comparison -> double ->
    select chains, simplifycfg and DCE tidy up; the code generator (at ``level``) does
    instruction selection and register allocation.
    """
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    builder = llvm.create_pass_builder(target_machine, pto)
    manager = llvm.create_new_module_pass_manager()
    # stack variables of the structured solver drivers (native/structured.py) into
    # registers; kernels have none, so it costs them nothing
    manager.add_sroa_pass()
    manager.add_instruction_combine_pass()
    manager.add_simplify_cfg_pass()
    if level > 1:
        manager.add_new_gvn_pass()
        manager.add_instruction_combine_pass()
    manager.add_dead_code_elimination_pass()
    manager.run(module, builder)


def _target_machine(llvm: Any, level: int) -> Any:
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
        opt=level)


def _parsed(llvm: Any, source: str, level: int) -> tuple[Any, Any]:
    """``source`` parsed, verified and optimised at ``level``; also the target machine."""
    module = llvm.parse_assembly(source)
    module.verify()
    target_machine = _target_machine(llvm, level)
    if level > 0:
        _optimise(llvm, module, target_machine, level)
    return module, target_machine


def compile_object(source: str, level: int) -> bytes:
    """Object code for LLVM IR text, optimised at ``level`` for this CPU.

    The same passes and code generator as :func:`native_engine`; the bytes are a
    relocatable object file for :func:`load_object` (in this or a later process on an
    identical :func:`host_identity`).

    Raises:
        ImportError: without llvmlite.
        RuntimeError: from LLVM when the text does not parse or verify.
    """
    llvm = _ensure_llvm()
    module, target_machine = _parsed(llvm, source, level)
    return bytes(target_machine.emit_object(module))


_OBJECT_MAGICS = (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\x64\x86",
                  b"\x64\xaa", b"\x4c\x01")
"""Leading bytes of ELF, Mach-O (64/32-bit) and COFF (x86-64, arm64, x86) objects."""


def load_object(data: bytes) -> NativeEngine:
    """An engine holding the object code ``data`` (from :func:`compile_object`).

    ``data`` must be exactly what :func:`compile_object` returned: LLVM does not check
    object files and crashes the process on a damaged one. Only the leading magic number
    is checked here; a cache must verify the bytes (the runtime's disk cache checks a
    SHA-256 of them) before handing them over.

    Raises:
        ImportError: without llvmlite.
        ValueError: ``data`` does not start like an object file.
    """
    if not bytes(data[:4]).startswith(_OBJECT_MAGICS):
        raise ValueError(f"data must be object code from compile_object; got "
                         f"{len(data)} bytes starting {bytes(data[:4])!r}")
    llvm = _ensure_llvm()
    target_machine = _target_machine(llvm, 0)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target_machine)
    engine.add_object_file(llvm.ObjectFileRef.from_data(bytes(data)))
    engine.finalize_object()
    return NativeEngine(engine, target_machine)


def object_key(source: str, level: int) -> str:
    """The :class:`ObjectCache` key of ``source`` compiled at ``level`` on this host."""
    host = "\n".join(f"{name}={value}" for name, value in host_identity())
    text = hashlib.sha256(source.encode()).hexdigest()
    return f"object code\n{host}\nlevel={level}\nsource={text}"


def native_engine(source: str, level: int, cache: ObjectCache | None = None
                  ) -> NativeEngine:
    """Parse, verify, optimise (``level`` 0-3) and compile LLVM IR text for this CPU.

    With ``cache``, the object code is looked up there first (by :func:`object_key`) and
    stored there after compiling; bytes that fail to load are compiled again.

    Raises:
        ImportError: without llvmlite, saying how to install it.
        RuntimeError: from LLVM when the text does not parse or verify.
    """
    llvm = _ensure_llvm()
    if cache is not None:
        key = object_key(source, level)
        data = cache.load(key)
        if data is not None:
            try:
                return load_object(data)
            except ValueError:
                pass  # not object code: compile it again (and overwrite it)
        data = compile_object(source, level)
        cache.save(key, data)
        return load_object(data)
    module, target_machine = _parsed(llvm, source, level)
    engine = llvm.create_mcjit_compiler(module, target_machine)
    engine.finalize_object()
    return NativeEngine(engine, target_machine)
