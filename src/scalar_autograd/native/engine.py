"""Native engines: llvmlite set-up, the opt level by size, LLVM text -> machine code.

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

Compiled code can also arrive in two tiers (:func:`quick_engine`): the module is parsed,
verified and optimised by the same pass list as :func:`native_engine` at its level, then
compiled at once by the cheap code generator (LLVM's ``-O0``: fast instruction
selection and register allocation, a few times faster on small kernels), while the
text waits in a :class:`PendingCode` to be compiled as :func:`native_engine` would. The
optimised IR is the same for both tiers and no fast-math flag is ever set, so both
compute the same results bit for bit; only the machine code differs.
:func:`upgrade_in_background` runs that second compile on a worker thread of its own
(see :class:`Upgrade`).

Where the time of a small compile goes (a 50-joint IK gradient, about 400 IR
instructions, thread CPU time measured here): parsing 0.7 ms, the pass list 2.5 ms,
LLVM's ``-O2`` code generator about 17 ms, its ``-O0`` one about 3.5 ms; asking for the
host CPU's name and features 0.3 ms, kept for the process. Each compile builds a target
machine of its own (0.2 ms, and its subtarget on first use) and hands it to its engine:
one machine kept for the process and shared by the pass lists left the heap so
fragmented that a thousand compiles kept 100 MB more resident.

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

import atexit
import hashlib
import os
import threading
import time
import weakref
from collections.abc import Callable
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
_cpu: tuple[str, str] | None = None


def _host_cpu(llvm: Any) -> tuple[str, str]:
    """The host CPU's name and feature string, asked once per process (about 0.3 ms)."""
    global _cpu
    if _cpu is None:
        _cpu = (str(llvm.get_host_cpu_name()), str(llvm.get_host_cpu_features().flatten()))
    return _cpu


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

        cpu, features = _host_cpu(llvm)
        _host = (("llvmlite", str(llvmlite.__version__)),
                 ("llvm", ".".join(map(str, llvm.llvm_version_info))),
                 ("triple", str(llvm.get_process_triple())),
                 ("cpu", cpu), ("features", features))
    return _host


class ObjectCache(Protocol):
    """Storage for object code: ``load`` returns what ``save`` stored under ``key``
    (or ``None``); it must return only bytes it has verified to be complete."""

    def load(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""

    def save(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (failures are the cache's business)."""


class NativeEngine:
    """An MCJIT execution engine holding compiled LLVM IR (and its target machine).

    Attributes:
        engine: the llvmlite execution engine (it owns the code).
        target_machine: the target machine it was compiled with.
        timings: seconds spent per phase of the compile (``"parse"``, ``"verify"``,
            ``"passes"``, ``"codegen"``; ``"final code"`` for all of the second tier of
            :func:`quick_engine`; ``"load"`` for object code), for benchmarks and
            statistics.
    """

    def __init__(self, engine: Any, target_machine: Any,
                 timings: dict[str, float] | None = None) -> None:
        self.engine = engine
        self.target_machine = target_machine
        self.timings: dict[str, float] = {} if timings is None else timings

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

    The list is part of what a program computes, not only of how fast: instcombine
    simplifies some libm calls exactly as C allows (``pow(x, 2.0)`` becomes ``x * x``,
    which is correctly rounded where glibc's ``pow`` may differ in the last bit), so
    the two tiers of :func:`quick_engine` both run it.
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
    """A new target machine for this CPU at code generation level ``level`` (an engine
    takes ownership of the one it is given)."""
    cpu, features = _host_cpu(llvm)
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=cpu, features=features, opt=level)


def _parsed(llvm: Any, source: str, level: int, target_machine: Any,
            timings: dict[str, float], foreground: bool = True) -> Any:
    """``source`` parsed, verified and optimised at ``level`` (``timings`` records each).

    The pass list asks ``target_machine`` about the target (cost models); what it
    answers does not depend on the machine's own code generation level (checked by
    tests/test_compile_latency.py), so the quick tier's ``-O0`` machine serves, and the
    subtarget it builds once serves the code generator too. (``foreground``: a compile
    the upgrade worker should keep out of the way of.)
    """
    if foreground:
        _note_compile()
    start = time.perf_counter()
    module = llvm.parse_assembly(source)
    parsed = time.perf_counter()
    module.verify()
    verified = time.perf_counter()
    timings["parse"] = parsed - start
    timings["verify"] = verified - parsed
    if level > 0:
        _optimise(llvm, module, target_machine, level)
        timings["passes"] = time.perf_counter() - verified
    return module


def _engine_of(llvm: Any, module: Any, target_machine: Any, timings: dict[str, float],
               foreground: bool = True) -> NativeEngine:
    """``module`` compiled by an MCJIT engine of its own, which takes ``target_machine``
    (``foreground``: a compile the upgrade worker should keep out of the way of)."""
    start = time.perf_counter()
    engine = llvm.create_mcjit_compiler(module, target_machine)
    engine.finalize_object()
    timings["codegen"] = time.perf_counter() - start
    if foreground:
        _note_compile()
    return NativeEngine(engine, target_machine, timings)


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
    target_machine = _target_machine(llvm, level)
    module = _parsed(llvm, source, level, target_machine, {})
    data = bytes(target_machine.emit_object(module))
    _note_compile()
    return data


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
    start = time.perf_counter()
    target_machine = _target_machine(llvm, 0)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target_machine)
    engine.add_object_file(llvm.ObjectFileRef.from_data(bytes(data)))
    engine.finalize_object()
    return NativeEngine(engine, target_machine, {"load": time.perf_counter() - start})


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
    timings: dict[str, float] = {}
    target_machine = _target_machine(llvm, level)
    module = _parsed(llvm, source, level, target_machine, timings)
    return _engine_of(llvm, module, target_machine, timings)


class PendingCode:
    """LLVM IR text waiting for the full code generator (see :func:`quick_engine`).

    :meth:`compile` may run on any thread, once.
    """

    def __init__(self, source: str, level: int) -> None:
        self._source: str | None = source
        self.level = level

    def compile(self) -> NativeEngine:
        """The text parsed, verified, optimised and compiled at :attr:`level`: what
        :func:`native_engine` makes of it.

        Raises:
            ValueError: when called a second time.
            RuntimeError: from LLVM.
        """
        source, self._source = self._source, None
        if source is None:
            raise ValueError("this pending code was compiled already")
        llvm = _ensure_llvm()
        start = time.perf_counter()
        target_machine = _target_machine(llvm, self.level)
        module = _parsed(llvm, source, self.level, target_machine, {}, foreground=False)
        engine = _engine_of(llvm, module, target_machine, {}, foreground=False)
        engine.timings = {"final code": time.perf_counter() - start}
        return engine


def quick_engine(source: str, level: int, final_source: str | None = None
                 ) -> tuple[NativeEngine, PendingCode | None]:
    """Machine code for ``source`` now, cheaply; the final code's text for later.

    The text is parsed, verified and run through the pass list of ``level`` exactly as
    :func:`native_engine` does, then compiled by LLVM's ``-O0`` code generator (fast
    instruction selection and register allocation: about 4x cheaper than ``-O2`` on a
    few hundred instructions, for code that runs a few percent slower). The returned
    :class:`PendingCode` compiles ``final_source`` (by default ``source``) as
    :func:`native_engine` does at ``level``. ``final_source`` may add functions the
    quick code goes without (the batch loops that call a kernel); the functions both
    hold must be the same text. Both tiers then compute the same results: the pass list
    works function by function and gives the same IR whatever the target machine's code
    generation level (tests/test_compile_latency.py checks both), and no fast-math flag
    is ever set. At ``level`` 0 the quick code is already the final code, and no
    pending code is returned (so ``final_source`` must then be ``source``).

    Raises:
        ImportError: without llvmlite.
        RuntimeError: from LLVM when the text does not parse or verify.
        ValueError: ``final_source`` differs from ``source`` at ``level`` 0.
    """
    if level == 0 and final_source is not None and final_source != source:
        raise ValueError("at level 0 the quick code is the final code: final_source must "
                         "be source (or None)")
    llvm = _ensure_llvm()
    timings: dict[str, float] = {}
    quick = _target_machine(llvm, 0)
    module = _parsed(llvm, source, level, quick, timings)
    engine = _engine_of(llvm, module, quick, timings)
    if level == 0:
        return engine, None
    return engine, PendingCode(source if final_source is None else final_source, level)


# ----------------------------------------------------------------------------- upgrades

QUIET = 0.05
"""Seconds without a compile in this process before the worker starts an upgrade.

A process that never pauses compiling keeps its kernels on their quick code (correct,
a few percent slower), rather than slowing every compile down: a kernel that matters
gets its pause, or ``tier_up()``."""

_last_compile = 0.0


def _note_compile() -> None:
    """Record that a compile ran in the foreground now (see :data:`QUIET`)."""
    global _last_compile
    _last_compile = time.monotonic()


class Upgrade:
    """The final code of a quick engine, compiled on the upgrade worker thread.

    Made by :func:`upgrade_in_background`. The worker (one daemon thread per process)
    waits for a quiet moment, :data:`QUIET` seconds without a compile in the process,
    then compiles the most recent upgrade first: a kernel's first calls, and a burst of
    compiles, run without it, and a kernel dropped meanwhile is never upgraded. It
    compiles the :class:`PendingCode` and hands the engine to ``install``, unless the
    owner has died meanwhile; :meth:`finish` does the same at once in the calling
    thread, or waits for the worker when it is at it.

    Nothing here blocks a call of compiled code. llvmlite runs one call into LLVM at a
    time (one process-wide lock: its modules share one LLVM context), so a compile, or
    the freeing of an engine, in another thread waits while the worker generates code
    (about 20 ms for a 50-joint IK gradient): that is why it waits for quiet moments.
    (Generating code outside that lock, in a private context, crashed: LLVM's MCJIT
    engines share state.) At ``fork`` the worker is between upgrades (the fork waits
    for the one in progress); in the child, upgrades still queued run on a new worker
    started by the next upgrade, or by :meth:`finish`.

    Attributes:
        finished: the upgrade ran (installed, failed, or found its owner gone).
        error: the exception a failed upgrade raised (the quick code stays: it computes
            the same results), else ``None``.
    """

    def __init__(self, pending: PendingCode,
                 install: Callable[[], Callable[[NativeEngine], None] | None]) -> None:
        self._pending: PendingCode | None = pending
        self._install = install
        self.finished = False
        self.error: Exception | None = None

    def _run(self) -> None:
        """Compile and install (the caller holds the upgrade lock)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            if self._install() is None:
                return               # the owner died: drop the code
            engine = pending.compile()
            install = self._install()   # not held while compiling: owners may die
            if install is not None:
                install(engine)
        except Exception as exc:  # noqa: BLE001 - the quick code stays, and is correct
            self.error = exc
        finally:
            self.finished = True

    def finish(self) -> None:
        """Install the final code now: compile it in this thread if the worker has not
        started it, else wait for the worker. Returns at once when :attr:`finished`."""
        if not self.finished:
            with _upgrading:
                self._run()


_upgrading = threading.Lock()
"""Held while an upgrade compiles; taken by :meth:`Upgrade.finish` and before a fork."""
_queue: list[weakref.ref[Upgrade]] = []   # weak: a dropped kernel's upgrade vanishes
_queue_changed = threading.Condition()
_worker: threading.Thread | None = None
_closing = False


def upgrade_in_background(pending: PendingCode,
                          install: Callable[[], Callable[[NativeEngine], None] | None]
                          ) -> Upgrade:
    """Compile ``pending`` on the upgrade worker thread, then pass the engine to the
    callable ``install()`` returns (``install`` is a :class:`weakref.WeakMethod`, or
    anything returning ``None`` once its owner is gone); see :class:`Upgrade`.

    The caller keeps the returned :class:`Upgrade`: the queue holds it weakly, so an
    upgrade nobody holds is dropped with its code.

    Example:
        >>> if available():
        ...     text = "define double @two() {\\n  ret double 2.0\\n}\\n"
        ...     quick, pending = quick_engine(text, 2)
        ...     engines = []
        ...     upgrade = upgrade_in_background(pending, lambda: engines.append)
        ...     upgrade.finish()
        ...     import ctypes
        ...     print(ctypes.CFUNCTYPE(ctypes.c_double)(engines[0].address("two"))())
        ... else:
        ...     print(2.0)
        2.0
    """
    global _worker
    upgrade = Upgrade(pending, install)
    with _queue_changed:
        if not _closing:
            _queue[:] = [ref for ref in _queue if ref() is not None]
            _queue.append(weakref.ref(upgrade))
            if _worker is None or not _worker.is_alive():
                _worker = threading.Thread(target=_work, name="scalar_autograd-upgrade",
                                           daemon=True)
                _worker.start()
            _queue_changed.notify()
    return upgrade


def pending_upgrades() -> int:
    """How many upgrades wait for the worker (not counting one it is compiling)."""
    with _queue_changed:
        return len(_live_upgrades())


def _live_upgrades() -> list[Upgrade]:
    """The queued upgrades whose kernels live and that have not run, oldest first."""
    live = []
    for ref in _queue:
        upgrade = ref()
        if upgrade is not None and not upgrade.finished:
            live.append(upgrade)
    return live


def _next_upgrade() -> Upgrade | None:
    """The most recent live upgrade once the process is quiet; ``None`` at exit.
    Called with ``_queue_changed`` held."""
    while True:
        if _closing:
            return None
        live = _live_upgrades()     # (no name may keep one alive while waiting)
        if not live:
            _queue.clear()
            _queue_changed.wait()
            continue
        wait = _last_compile + QUIET - time.monotonic()
        if wait > 0:
            del live
            _queue_changed.wait(wait)
            continue
        upgrade = live[-1]
        _queue[:] = [weakref.ref(u) for u in live[:-1]]
        return upgrade


def _work() -> None:
    """The worker: upgrades, most recent first, until the interpreter exits."""
    while True:
        with _queue_changed:
            upgrade = _next_upgrade()
        if upgrade is None:
            return
        if not upgrade.finished:
            with _upgrading:
                upgrade._run()
        del upgrade


def _llvm_lock() -> Any:
    """llvmlite's own lock around calls into LLVM, when this llvmlite has one."""
    if _llvm is None:
        return None
    lock = getattr(getattr(_llvm.ffi, "lib", None), "_lock", None)
    return getattr(lock, "_lock", None)


def _before_fork() -> None:
    # the child must not inherit a lock held by a thread that does not exist there:
    # wait for the upgrade in progress, and for any thread inside LLVM
    _upgrading.acquire()
    lock = _llvm_lock()
    if lock is not None:
        lock.acquire()


def _after_fork_in_parent() -> None:
    lock = _llvm_lock()
    if lock is not None:
        lock.release()
    _upgrading.release()


def _after_fork_in_child() -> None:
    global _upgrading, _queue_changed, _worker
    lock = _llvm_lock()
    if lock is not None:
        lock.release()
    _upgrading = threading.Lock()
    _queue_changed = threading.Condition()
    _worker = None     # the parent's worker does not exist here; the next upgrade starts one


def _shutdown() -> None:
    """At exit: drop queued upgrades and let the one in progress finish (LLVM's static
    destructors must not run under a compiling thread)."""
    global _closing
    with _queue_changed:
        _closing = True
        _queue.clear()
        _queue_changed.notify_all()
    with _upgrading:
        pass


atexit.register(_shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
