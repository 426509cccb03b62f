"""``sa.compile``: a Value graph becomes a ``CompiledFunction`` with fast value and gradient.

Pipeline: trace (CSE, constant folding) -> reverse or forward mode on the IR -> lower
expansions -> a backend kernel, cached by program structure (in memory, and on disk when
:func:`~scalar_autograd.runtime.disk_cache.set_cache_dir` or ``SA_CACHE_DIR`` names a
directory). The hot methods run one native call on preallocated float64 buffers. A
``CompiledFunction`` pickles as its program (see :meth:`CompiledFunction.__reduce__`),
so it can be sent to other processes and saved to files.

Example:
    >>> import scalar_autograd as sa
    >>> x = sa.Value(1.0, label="x")
    >>> y = sa.Value(2.0, label="y")
    >>> f = sa.compile(x * y + sa.sin(x), [x, y])
    >>> value, grad = f.value_and_grad([0.0, 3.0])
    >>> value, grad.tolist()
    (0.0, [4.0, 0.0])
    >>> f.hessian([0.0, 3.0]).tolist()      # forward-over-reverse; -sin(0) is -0.0
    [[-0.0, 1.0], [1.0, 0.0]]
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from scalar_autograd.backends.base import Kernel
from scalar_autograd.backends.registry import get_backend, portable_backend, resolve_backend
from scalar_autograd.backends.vm import VMBackend
from scalar_autograd.graph import gc_paused
from scalar_autograd.ir import autodiff
from scalar_autograd.ir.passes import lower
from scalar_autograd.ir.program import Builder, Program, encoded_digest, read_header
from scalar_autograd.ir.structure import (
    MIN_PROGRAM_SIZE,
    Reduction,
    Structure,
    TermGroup,
    find_structure,
)
from scalar_autograd.ir.trace import trace
from scalar_autograd.native.abi import check_buffer
from scalar_autograd.native.engine import host_identity
from scalar_autograd.runtime.cache import KERNELS
from scalar_autograd.runtime.disk_cache import active_cache, pack_artifact, unpack_artifact
from scalar_autograd.runtime.structured import StructuredKernel
from scalar_autograd.tracing import FrozenBranchWarning, branch_site
from scalar_autograd.value import Value

_F64 = np.dtype(np.float64)

SECOND_ORDER = ("hessian", "hvp")
"""The kernel kinds of second derivatives (:meth:`CompiledFunction.hessian`,
:meth:`CompiledFunction.hvp`), built on demand beside ``"value"`` and ``"deriv"``."""

SECOND_ORDER_VM_THRESHOLD = 2_000
"""A second-order kernel of a function on ``"llvm"`` runs on the tape VM when its lowered
program has more instructions than this.

A Hessian program is about ``n`` gradient sweeps long, and is called a few dozen times
(a Newton solve), so build time matters more than call time. Measured here for the
Hessian of a dense function of n params: n = 30, 3,502 instructions: LLVM (O2) builds in
0.46 s and runs in 2.5 us, the VM 0.03 s and 6.8 us; n = 50, 9,332: LLVM (O1) 1.4 s and
5.5 us, the VM 0.05 s and 16 us. Below 2,000 instructions LLVM builds in under 0.3 s."""

OUTER_VM_PARAMS = 1_000
"""The outer program of a structured function (:mod:`scalar_autograd.ir.structure`)
runs on the tape VM when it has more params than this (the function's, plus one per
term it reads one by one, when a sum of terms could not be folded natively).

Its gradient has one output per param: LLVM spends about 25 us of code generation per
output at O0 and seconds at O2 for a few thousand (and holds llvmlite's lock meanwhile,
so other functions wait), where the VM writes the gradient tape in milliseconds."""

_LOCAL_NAMES = {"value": "v", "deriv": "d", "hessian": "h", "hvp": "p"}
"""The attribute of a thread's buffers (``CompiledFunction._local``) per kernel kind."""


def _kind(deriv: bool | str) -> str:
    """The kernel kind ``deriv`` names: ``False`` is ``"value"``, ``True`` ``"deriv"``,
    a string is the kind itself (``"hessian"``, ``"hvp"``)."""
    if deriv is True:
        return "deriv"
    if deriv is False:
        return "value"
    if deriv not in _LOCAL_NAMES:
        raise ValueError(f"kernel kind must be one of {sorted(_LOCAL_NAMES)}; got {deriv!r}")
    return deriv


def _kernel_backend(backend: str, kind: str, program: Program) -> str:
    """The backend that compiles a kernel of ``kind``: the entry's, except that a large
    second-order program of an ``"llvm"`` entry goes to the VM."""
    if backend == "llvm" and kind in SECOND_ORDER \
            and program.n_instructions > SECOND_ORDER_VM_THRESHOLD:
        return "vm"
    return backend


def _as_value_list(x: Any, name: str, allow_single: bool) -> list[Value]:
    if isinstance(x, Value):
        if allow_single:
            return [x]
        raise TypeError(f"{name} must be a sequence of Values; got a single Value "
                        f"(wrap it in a list)")
    if isinstance(x, (str, bytes)) or not isinstance(x, Sequence | np.ndarray | tuple):
        try:
            x = list(x)
        except TypeError:
            raise TypeError(f"{name} must be a sequence of Values; got {type(x).__name__}") \
                from None
    items = list(x)
    for i, v in enumerate(items):
        if not isinstance(v, Value):
            raise TypeError(f"{name}[{i}] must be a Value; got {type(v).__name__} {v!r}")
    return items


def _check_leaves(values: list[Value], name: str) -> None:
    seen: set[int] = set()
    for i, v in enumerate(values):
        if v.op is not None:
            raise ValueError(f"{name}[{i}] must be a leaf Value (not computed by an op); "
                             f"got the result of {v.op.name}")
        if id(v) in seen:
            raise ValueError(f"{name}[{i}] appears twice in {name}; each must be distinct")
        seen.add(id(v))


class _Entry:
    """What the cache holds for one forward program: its kernels, built lazily.

    ``backend`` is the concrete backend (``"llvm"``, ``"vm"``, ``"python"`` or
    ``"interpreter"``, see :func:`~scalar_autograd.backends.registry.resolve_backend`)
    that compiles both kernels. The last ``n_aux`` value outputs are auxiliary (guard
    predicates of ``sa.jit``): computed with the values, never differentiated.

    With the disk cache on, a native kernel is first looked up there (by the program's
    digest, the backend, ``n_aux`` and the kind, ``"value"``, ``"deriv"``, ``"hessian"``
    or ``"hvp"``): a hit skips differentiation, lowering and code generation, and the
    kernel derives its program only if someone asks for it (``kernel.program``,
    ``kernel.source``). The second-order kernels exist only for one differentiated
    output; a large one of an ``"llvm"`` entry runs on the VM
    (:data:`SECOND_ORDER_VM_THRESHOLD`).
    """

    def __init__(self, program: Program | bytes, backend: str, n_aux: int = 0,
                 structured: bool = True) -> None:
        started = time.perf_counter()
        if isinstance(program, Program):
            self._program: Program | None = program
            self.encoded = program.key()
        else:  # an encoding (from a pickle): decoded only if a kernel must be built
            self._program = None
            self.encoded = program
        header = read_header(self.encoded)
        self.n_params, self.n_inputs = header.n_params, header.n_inputs
        self.n_values, self.n_derivs = header.n_values, header.n_derivs
        self.n_aux = n_aux
        self._lock = threading.Lock()            # builds kernels
        self._program_lock = threading.Lock()    # decodes the program (while building)
        self._part_backend = backend
        self.structure: Structure | None = None
        if structured and header.n_instructions >= MIN_PROGRAM_SIZE \
                and header.n_values - n_aux == 1 and header.n_derivs == 0:
            self.structure = find_structure(self.program, n_diff=1)
        size = header.n_instructions if self.structure is None else max(
            [g.program.n_instructions for g in self.structure.groups]
            + [self.structure.outer.n_instructions])
        self.backend = resolve_backend(backend, n_instructions=size)
        self.n_instructions = header.n_instructions
        self.build_seconds = time.perf_counter() - started
        self._value: Kernel | None = None
        self._deriv: Kernel | None = None
        self._second: dict[str, Kernel] = {}   # "hessian", "hvp": built on demand

    @property
    def program(self) -> Program:
        """The forward program (decoded from its encoding on first use)."""
        program = self._program
        if program is None:
            with self._program_lock:
                if self._program is None:
                    self._program = Program.from_bytes(self.encoded)
                program = self._program
        return program

    def sizes(self, deriv: bool | str) -> tuple[int, int]:
        """``(n_values, n_derivs)`` of the value-and-derivative or the value kernel (or of
        a second-order kernel: the gradient, then the Hessian or ``H v``)."""
        if deriv is True:
            return self.n_values, (self.n_values - self.n_aux) * self.n_params
        if deriv is False:
            return self.n_values, self.n_derivs
        kind = _kind(deriv)
        n = self.n_params
        if kind == "hessian":
            return self.n_values, n + n * n
        if kind == "hvp":
            return self.n_values, 2 * n
        return self.sizes(kind == "deriv")

    def input_size(self, deriv: bool | str) -> int:
        """Runtime inputs of a kernel: the HVP kernel reads the direction after them."""
        return self.n_inputs + (self.n_params if deriv == "hvp" else 0)

    def kernel(self, deriv: bool | str) -> Kernel:
        """The kernel of a kind (``False``/``True`` as for :meth:`sizes`)."""
        kind = _kind(deriv)
        if kind == "value":
            return self.value_kernel()
        if kind == "deriv":
            return self.deriv_kernel()
        return self.second_order_kernel(kind)

    def second_order_kernel(self, kind: str) -> Kernel:
        """The ``"hessian"`` or ``"hvp"`` kernel (see :func:`_derive`), built once."""
        kernel = self._second.get(kind)
        if kernel is None:
            if self.n_values - self.n_aux != 1:
                raise ValueError(f"{kind} needs a single output; this function has "
                                 f"{self.n_values - self.n_aux}")
            with self._lock:
                kernel = self._second.get(kind)
                if kernel is None:
                    kernel = self._build(kind)
                    self._second[kind] = kernel
        return kernel

    def value_kernel(self) -> Kernel:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build(False)
        return self._value

    def deriv_kernel(self) -> Kernel:
        if self._deriv is None:
            with self._lock:
                if self._deriv is None:
                    self._deriv = self._build(True)
        return self._deriv

    def _vm_reverse(self, kind: str) -> int | None:
        """The number of differentiated outputs when the VM writes this deriv kernel's
        gradient tape straight from the forward program (``VMBackend.compile_reverse``:
        the same values and gradients as the reverse-mode program, without building
        it); ``None`` when the kernel goes through :func:`_derive`."""
        n_diff = self.n_values - self.n_aux
        if kind == "deriv" and self.backend == "vm" and n_diff <= self.n_params:
            return n_diff
        return None

    def _build(self, deriv: bool | str) -> Kernel:
        started = time.perf_counter()
        try:
            return self._build_kind(_kind(deriv))
        finally:
            self.build_seconds += time.perf_counter() - started

    def _build_structured(self, structure: Structure, kind: str) -> Kernel:
        """The value or deriv kernel of a program with repeated terms: each group's row
        kernel and the outer program's, each an entry of the kernel cache of its own."""
        deriv = kind == "deriv"
        rows = [_entry_for(g.program, self._part_backend, structured=False).kernel(deriv)
                for g in structure.groups]
        outer_backend = self._part_backend
        if structure.outer.n_params > OUTER_VM_PARAMS \
                and resolve_backend(outer_backend) == "llvm":
            outer_backend = "vm"
        outer = _entry_for(structure.outer, outer_backend, self.n_aux,
                           structured=False).kernel(deriv)
        def flat() -> Program:  # the flat program: built only if someone asks for it
            return _derive(self.program, self.n_aux, kind)

        return StructuredKernel(structure, rows, outer, deriv, self.backend, flat)

    def _build_kind(self, kind: str) -> Kernel:
        if self.structure is not None and kind in ("value", "deriv"):
            return self._build_structured(self.structure, kind)
        cache = active_cache()
        portable = portable_backend(self.backend) if cache is not None else None
        reverse = self._vm_reverse(kind)
        if cache is None or portable is None:
            if reverse is not None:
                return VMBackend().compile_reverse(self.program, reverse)
            program = _derive(self.program, self.n_aux, kind)
            return get_backend(_kernel_backend(self.backend, kind, program)).compile(program)
        n_values, n_derivs = self.sizes(kind)
        expected = {"n_values": n_values, "n_derivs": n_derivs,
                    "n_params": self.n_params, "n_inputs": self.input_size(kind)}
        host = "\n".join(f"{name}={value}" for name, value in host_identity())
        key = (f"kernel\n{host}\nbackend={self.backend}\n{portable.settings()}\n"
               f"n_aux={self.n_aux}\nkind={kind}\n"
               f"program={encoded_digest(self.encoded)}")
        payload = cache.load(key)
        if payload is not None:
            # what a loaded kernel derives its program from, if ever asked (not the
            # entry itself: the kernel would keep its entry alive in a cycle)
            source = self._program if self._program is not None else self.encoded
            try:
                artifact = unpack_artifact(payload)
                # a large second-order kernel of an "llvm" entry was saved by the VM
                loader = portable if artifact.backend == portable.name else \
                    portable_backend("vm") if kind in SECOND_ORDER and \
                    artifact.backend == "vm" else None
                if loader is not None and \
                        all(artifact.sizes.get(k) == v for k, v in expected.items()):
                    return loader.load(artifact, partial(_derive, source, self.n_aux, kind),
                                       cache)
            except ValueError:
                pass  # not a kernel after all: compiled again below, and overwritten
        kernel: Kernel
        if reverse is not None:
            kernel, artifact = VMBackend().compile_portable_reverse(
                self.program, reverse, cache)
        else:
            program = _derive(self.program, self.n_aux, kind)
            chosen = portable_backend(_kernel_backend(self.backend, kind, program)) or portable
            kernel, artifact = chosen.compile_portable(program, cache)
        artifact = type(artifact)(artifact.backend, {**artifact.sizes, **expected},
                                  artifact.blobs)
        cache.save(key, pack_artifact(artifact))
        return kernel


def _derive(program: Program | bytes, n_aux: int, deriv: bool | str) -> Program:
    """The program a kernel runs: the forward program (or its encoding) lowered, or its
    value-and-derivative program (reverse mode for few outputs, else forward mode), or
    its value, gradient and Hessian (``"hessian"``) or Hessian-vector product (``"hvp"``)
    program, forward-over-reverse (:func:`~scalar_autograd.ir.autodiff.hessian`)."""
    kind = _kind(deriv)
    if not isinstance(program, Program):
        program = Program.from_bytes(program)
    if kind == "value":
        return lower(program)
    if kind == "hessian":
        return autodiff.hessian(program, lower=True, n_aux=n_aux)
    if kind == "hvp":
        return autodiff.hvp(program, lower=True, n_aux=n_aux)
    n_diff = program.n_values - n_aux
    mode = autodiff.reverse if n_diff <= program.n_params else autodiff.forward
    return mode(program, lower=True, n_diff=n_diff)


class _Buffers:
    """Preallocated float64 buffers with a zero-argument native call bound to them."""

    __slots__ = ("x", "u", "val", "der", "scratch", "call")

    def __init__(self, kernel: Kernel, n_params: int, n_inputs: int, n_values: int,
                 n_derivs: int) -> None:
        self.x = np.zeros(n_params)
        self.u = np.zeros(n_inputs)
        self.val = np.zeros(n_values)
        self.der = np.zeros(n_derivs)
        self.scratch = np.zeros(max(kernel.n_scratch, 1))
        self.call = kernel.bind(self.x, self.u, self.val, self.der, self.scratch)


class _DirectionBuffers(_Buffers):
    """The HVP kernel's buffers: ``u`` holds the runtime inputs, then the direction
    ``v``; ``inputs`` and ``v`` are views of those two parts."""

    __slots__ = ("inputs", "v")

    def __init__(self, kernel: Kernel, n_params: int, n_inputs: int, n_values: int,
                 n_derivs: int) -> None:
        super().__init__(kernel, n_params, n_inputs + n_params, n_values, n_derivs)
        self.inputs = self.u[:n_inputs]
        self.v = self.u[n_inputs:]


@dataclass(frozen=True)
class RowKernelStats:
    """One distinct row kernel of a compiled function (see :meth:`CompiledFunction.stats`).

    Attributes:
        rows: the terms it evaluates per call.
        instructions: the forward instructions of one term.
        slots: the params one row reads.
    """

    rows: int
    instructions: int
    slots: int


@dataclass(frozen=True)
class CompileStats:
    """What :meth:`CompiledFunction.stats` reports.

    Attributes:
        backend: the backend that runs the function's kernels.
        instructions: forward instructions of the traced program (all terms).
        row_kernels: the distinct row kernels, each with its rows: the repeated terms
            compiled once per shape (empty for a flat program).
        outer_instructions: forward instructions of what is left: the program that
            combines the terms (or the whole program when it is flat).
        kernel_count: distinct kernels: the row kernels and the outer (or flat) one.
        reuse_factor: kernel evaluations per call over ``kernel_count`` (1.0 for a flat
            program); the TypeScript original's ``kernelReuseFactor``.
        compile_seconds: tracing plus building the kernels built so far (a kernel is
            built on its first use; an entry found in the cache adds nothing).
    """

    backend: str
    instructions: int
    row_kernels: tuple[RowKernelStats, ...]
    outer_instructions: int
    kernel_count: int
    reuse_factor: float
    compile_seconds: float


class CompiledFunction:
    """A compiled graph: values, gradients and Jacobians at any parameter vector.

    Create it with :func:`compile`. ``x`` is the params' values in order and
    ``inputs`` the runtime inputs' values (``None``: the input leaves' current
    ``.data``); both accept sequences or float64 arrays. Calls from several threads
    are safe and equally fast: each thread gets its own buffers (and bound native
    call) on its first call; the native code runs with the GIL released.

    It pickles (for ``multiprocessing``, ``concurrent.futures`` or a file) as its
    program, never as machine code: see :meth:`__reduce__`.

    Attributes:
        params: the param leaves, in order.
        inputs: the runtime input leaves, in order.
        n_params, n_inputs, n_outputs: sizes.
        backend: the backend that runs it: ``"llvm"`` (native code), ``"vm"`` (the
            native tape VM), ``"python"`` or ``"interpreter"``.
        program: the traced forward program (IR); after unpickling it is decoded on
            first use.
    """

    def __init__(self, entry: _Entry, params: Sequence[Value] = (),
                 inputs: Sequence[Value] = (), *, requested_backend: str | None = None
                 ) -> None:
        self._entry = entry
        self._requested_backend = entry.backend if requested_backend is None \
            else requested_backend
        self.backend = entry.backend
        self.params = tuple(params)
        self.inputs = tuple(inputs)
        self.n_params = entry.n_params
        self.n_inputs = entry.n_inputs
        self.n_outputs = entry.n_values - entry.n_aux
        self._local = threading.local()
        self._trace_seconds = 0.0

    @property
    def program(self) -> Program:
        """The traced forward program (IR)."""
        return self._entry.program

    # ------------------------------------------------------------------ introspection
    @property
    def source(self) -> str:
        """Generated source (Python or LLVM IR) of the value-and-derivative kernel."""
        return self._entry.deriv_kernel().source

    @property
    def n_instructions(self) -> int:
        """Instructions in the lowered value-and-derivative program (for a program with
        repeated terms, in its parts: each row kernel once and the outer kernel)."""
        kernel = self._entry.deriv_kernel()
        if isinstance(kernel, StructuredKernel):
            return sum(k.kernel.program.n_instructions for k in kernel.rows) \
                + kernel.outer.program.n_instructions
        return kernel.program.n_instructions

    def tier_up(self) -> None:
        """Wait until every kernel built so far runs its final code.

        A native kernel serves its first calls with quickly compiled code while its
        optimised code compiles on a background thread, then switches by itself (see
        :mod:`scalar_autograd.backends.llvm`); this waits for that switch (or compiles
        the final code now). For timing steady-state calls; never needed for results,
        which are the same on both tiers.
        """
        entry = self._entry
        for kernel in (entry._value, entry._deriv, *entry._second.values()):
            if kernel is not None and hasattr(kernel, "tier_up"):
                kernel.tier_up()

    def to_c(self, name: str) -> str:
        """A self-contained C99 source of this function (see
        :func:`scalar_autograd.backends.c_source.generate_c`): ``double NAME(const double
        *x)``, ``NAME_value_and_grad`` and ``NAME_jacobian``, libm only, no allocation.

        Args:
            name: the C identifier prefix: a letter, then letters, digits or single
                underscores; not a C keyword or a libm name (see ``check_c_name``).
        """
        from scalar_autograd.backends.c_source import generate_c

        return generate_c(self.program, name)

    def stats(self) -> CompileStats:
        """How this function was compiled: its distinct kernels and the rows each runs,
        the reuse factor, instructions, backend and compile time (see
        :class:`CompileStats`). Cheap: it builds nothing.

        Example:
            >>> import scalar_autograd as sa
            >>> xs = [sa.Value(float(i)) for i in range(1000)]
            >>> springs = [(sa.sqrt((xs[i] - xs[i + 1]) ** 2 + 1.0) - 1.0) ** 2
            ...            for i in range(999)]
            >>> f = sa.compile(sa.sum(springs), xs)
            >>> s = f.stats()
            >>> s.row_kernels, s.kernel_count, round(s.reuse_factor, 1)
            ((RowKernelStats(rows=999, instructions=6, slots=2),), 2, 500.0)
        """
        entry = self._entry
        structure = entry.structure
        rows = () if structure is None else tuple(
            RowKernelStats(g.n_rows, g.cone_size, g.program.n_params)
            for g in structure.groups)
        terms = sum(r.rows for r in rows)
        return CompileStats(
            backend=self.backend,
            instructions=entry.n_instructions,
            row_kernels=rows,
            outer_instructions=entry.program.n_instructions if structure is None
            else structure.outer.n_instructions,
            kernel_count=len(rows) + 1,
            reuse_factor=(terms + 1) / (len(rows) + 1),
            compile_seconds=self._trace_seconds + entry.build_seconds,
        )

    def __repr__(self) -> str:
        s = self.stats()
        structure = f", row_kernels={len(s.row_kernels)}, reuse_factor={s.reuse_factor:.1f}" \
            if s.row_kernels else ""
        return (f"CompiledFunction(n_params={self.n_params}, n_inputs={self.n_inputs}, "
                f"n_outputs={self.n_outputs}, backend={self.backend!r}, "
                f"instructions={s.instructions}{structure})")

    # ------------------------------------------------------------------ pickling
    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the forward program, never as machine code.

        The pickle holds the traced program (its compact canonical encoding, about 10
        bytes a node), the backend as requested (``"auto"`` is resolved again where it
        is unpickled), the number of auxiliary outputs, and for each param and input
        leaf its ``data``, ``label``, ``requires_grad`` and ``param_name``. Unpickling
        makes *fresh* leaf Values from those, so the pickle never drags the graph that
        built the function along, and the copy's leaves are not the original's (they
        serve ``inputs=None`` and ``apply_compiled_gradients`` as before). It then looks
        the program up in the kernel cache (in memory, then on disk when the disk cache
        is on); kernels are built, or loaded, on the first call, as after ``compile``.
        Buffers, locks and native objects are never pickled.

        Example (``copy.deepcopy`` goes through the same reduction as a pickle):
            >>> import copy, scalar_autograd as sa
            >>> x = sa.Value(2.0, label="x")
            >>> f = sa.compile(x * x, [x])
            >>> g = copy.deepcopy(f)
            >>> g.value_and_grad([3.0])[1].tolist(), g.params[0].label, g.params[0] is x
            ([6.0], 'x', False)
        """
        return (_unpickle, (self._entry.encoded, self._requested_backend, self._entry.n_aux,
                            _leaf_states(self.params), _leaf_states(self.inputs)))

    # ------------------------------------------------------------------ buffers
    def _buffers(self, deriv: bool | str) -> _Buffers:
        """This thread's buffers (made on the thread's first call, then reused) for the
        value (``False``), value-and-derivative (``True``), ``"hessian"`` or ``"hvp"``
        kernel."""
        local = self._local
        name = _LOCAL_NAMES[deriv] if type(deriv) is str else "d" if deriv else "v"
        b: _Buffers | None = getattr(local, name, None)
        if b is None:
            entry = self._entry
            kernel = entry.kernel(deriv)
            kind = _DirectionBuffers if deriv == "hvp" else _Buffers
            b = kind(kernel, self.n_params, self.n_inputs, *entry.sizes(deriv))
            setattr(local, name, b)
        return b

    def _load(self, b: _Buffers, x: Any, inputs: Any) -> None:
        _fill(b.x, x, "x")
        if self.n_inputs:
            if inputs is None:
                b.u[:] = [v.data for v in self.inputs] if self.inputs else 0.0
            else:
                _fill(b.u, inputs, "inputs")
        elif inputs is not None and len(inputs) != 0:
            raise ValueError(f"inputs must be empty: this function has no inputs; "
                             f"got length {len(inputs)}")

    # ------------------------------------------------------------------ hot paths
    def __call__(self, x: Any, inputs: Any = None, *, out: np.ndarray | None = None
                 ) -> float | np.ndarray:
        """The output value (a float) or values (a 1-D array) at ``x``.

        Example:
            >>> import scalar_autograd as sa
            >>> a = sa.Value(0.0)
            >>> sa.compile(a * a, [a])([3.0])
            9.0
        """
        b = self._buffers(False)
        self._load(b, x, inputs)
        b.call()
        if self.n_outputs == 1 and out is None:
            return b.val.item(0)
        if out is None:
            return b.val.copy()
        check_buffer(out, "out", (self.n_outputs,))
        out[:] = b.val
        return out

    def value_and_grad(self, x: Any, inputs: Any = None, *, out: np.ndarray | None = None
                       ) -> tuple[float, np.ndarray]:
        """The scalar output and its gradient with respect to the params.

        Args:
            x: the params' values.
            inputs: the runtime inputs' values (``None``: the input leaves' ``.data``).
            out: optional float64 array of length ``n_params`` receiving the gradient.

        Raises:
            ValueError: if the function has more than one output.

        Example:
            >>> import scalar_autograd as sa
            >>> a = sa.Value(0.0)
            >>> f = sa.compile(a * a, [a])
            >>> v, g = f.value_and_grad([3.0]); v, g.tolist()
            (9.0, [6.0])
        """
        if self.n_outputs != 1:
            raise ValueError(f"value_and_grad needs a single output; this function has "
                             f"{self.n_outputs} (use jacobian)")
        b = self._buffers(True)
        self._load(b, x, inputs)
        b.call()
        if out is None:
            return b.val.item(0), b.der.copy()
        check_buffer(out, "out", (self.n_params,))
        out[:] = b.der
        return b.val.item(0), out

    def jacobian(self, x: Any, inputs: Any = None, *,
                 out: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Values ``(m,)`` and Jacobian ``(m, n)`` with respect to the params.

        Args:
            out: optional ``(values, J)`` float64 arrays to fill.
        """
        b = self._buffers(True)
        self._load(b, x, inputs)
        b.call()
        shape = (self.n_outputs, self.n_params)
        if out is None:
            return b.val.copy(), b.der.reshape(shape).copy()
        values, jac = out
        check_buffer(values, "out[0]", (self.n_outputs,))
        check_buffer(jac, "out[1]", shape)
        values[:] = b.val
        jac[...] = b.der.reshape(shape)
        return values, jac

    # ------------------------------------------------------------------ second order
    def _second_order(self, kind: str, x: Any, inputs: Any) -> _Buffers:
        """This thread's ``kind`` buffers loaded with ``x`` and ``inputs`` (not run)."""
        if self.n_outputs != 1:
            raise ValueError(f"{kind} needs a single output; this function has "
                             f"{self.n_outputs} (differentiate each output on its own)")
        b = self._buffers(kind)
        _fill(b.x, x, "x")
        u = b.inputs if isinstance(b, _DirectionBuffers) else b.u
        if self.n_inputs:
            if inputs is None:
                u[:] = [v.data for v in self.inputs] if self.inputs else 0.0
            else:
                _fill(u, inputs, "inputs")
        elif inputs is not None and len(inputs) != 0:
            raise ValueError(f"inputs must be empty: this function has no inputs; "
                             f"got length {len(inputs)}")
        return b

    def hessian(self, x: Any, inputs: Any = None, *, out: np.ndarray | None = None
                ) -> np.ndarray:
        """The Hessian ``(n, n)`` of the scalar output with respect to the params.

        Computed by forward mode over the reverse-mode gradient program, from the op
        table's own derivative rules (no second-order rules), compiled once into a
        kernel of its own (cached like the others, on disk too) that returns the value,
        the gradient and the Hessian in one native call. The matrix is exactly
        symmetric: where the two sweeps computing ``H[i, j]`` and ``H[j, i]`` differ by
        rounding, both hold their mean (see :func:`scalar_autograd.ir.autodiff.hessian`).
        At a kink the conventions of the first derivative carry over: the Hessian is
        the derivative of the chosen branch's gradient (0 across ``relu``, ``abs``,
        ``min``, ``max`` and ``where`` between linear pieces). Its cost is about ``n``
        gradient sweeps, fewer when params interact sparsely; for large ``n`` use
        :meth:`hvp`.

        Args:
            x: the params' values.
            inputs: the runtime inputs' values (``None``: the input leaves' ``.data``).
            out: optional float64 C-contiguous array ``(n, n)`` to fill.

        Raises:
            ValueError: the function has more than one output, or a wrong length.
            TypeError: ``x`` or ``inputs`` holds anything but real numbers.

        Example:
            >>> import scalar_autograd as sa
            >>> a, b = sa.Value(0.0), sa.Value(0.0)
            >>> f = sa.compile(a * a * b + sa.sin(b), [a, b])
            >>> f.hessian([1.0, 0.0]).tolist()
            [[0.0, 2.0], [2.0, -0.0]]
        """
        b = self._second_order("hessian", x, inputs)
        b.call()
        n = self.n_params
        matrix = b.der[n:].reshape(n, n)
        if out is None:
            return matrix.copy()
        check_buffer(out, "out", (n, n))
        out[...] = matrix
        return out

    def value_grad_hessian(self, x: Any, inputs: Any = None
                           ) -> tuple[float, np.ndarray, np.ndarray]:
        """The scalar output, its gradient and its Hessian, from one native call.

        See :meth:`hessian`; the gradient is the one :meth:`value_and_grad` returns.

        Example:
            >>> import scalar_autograd as sa
            >>> a = sa.Value(0.0)
            >>> f, g, h = sa.compile(a * a * a, [a]).value_grad_hessian([2.0])
            >>> f, g.tolist(), h.tolist()
            (8.0, [12.0], [[12.0]])
        """
        b = self._second_order("hessian", x, inputs)
        b.call()
        n = self.n_params
        return b.val.item(0), b.der[:n].copy(), b.der[n:].reshape(n, n).copy()

    def hvp(self, x: Any, v: Any, inputs: Any = None, *, out: np.ndarray | None = None
            ) -> np.ndarray:
        """The Hessian-vector product ``H(x) v`` of the scalar output, without ``H``.

        One forward sweep over the reverse-mode gradient program, seeded by ``v``
        (forward-over-reverse on the IR), compiled once into a kernel that takes ``v``
        as extra runtime inputs: a call costs a small multiple of a gradient, whatever
        the number of params. It is the directional derivative of the gradient, equal
        to ``hessian(x) @ v`` up to rounding.

        Args:
            x: the params' values.
            v: the direction, ``n_params`` real numbers.
            inputs: the runtime inputs' values (``None``: the input leaves' ``.data``).
            out: optional float64 array of length ``n_params`` receiving ``H v``.

        Raises:
            ValueError: the function has more than one output, or a wrong length.
            TypeError: ``x``, ``v`` or ``inputs`` holds anything but real numbers.

        Example:
            >>> import scalar_autograd as sa
            >>> a, b = sa.Value(0.0), sa.Value(0.0)
            >>> f = sa.compile(a * a * b, [a, b])
            >>> f.hvp([1.0, 3.0], [1.0, 0.0]).tolist()    # H = [[6, 2], [2, 0]]
            [6.0, 2.0]
        """
        b = self._second_order("hvp", x, inputs)
        assert isinstance(b, _DirectionBuffers)
        _fill(b.v, v, "v")
        b.call()
        n = self.n_params
        if out is None:
            return b.der[n:].copy()
        check_buffer(out, "out", (n,))
        out[:] = b.der[n:]
        return out

    def bind(self, x: np.ndarray, grad: np.ndarray, inputs: np.ndarray | None = None,
             value: np.ndarray | None = None) -> Callable[[], None]:
        """A zero-argument callable evaluating into fixed buffers (CasADi's ``buffer()``).

        Each call reads ``x`` (and ``inputs``) and writes the values into ``value`` and
        the gradient (for several outputs: the row-major Jacobian) into ``grad``. The
        arrays' addresses are fixed once, so update them in place (``x[:] = ...``).

        Args:
            x: float64 C-contiguous array of length ``n_params``.
            grad: float64 C-contiguous array of length ``n_outputs * n_params``.
            inputs: float64 array of length ``n_inputs`` (required when there are any).
            value: float64 array of length ``n_outputs`` (optional).

        Example:
            >>> import numpy as np, scalar_autograd as sa
            >>> a = sa.Value(0.0)
            >>> f = sa.compile(a * a, [a])
            >>> x, g, v = np.array([3.0]), np.zeros(1), np.zeros(1)
            >>> step = f.bind(x, g, value=v)
            >>> step(); float(v[0]), float(g[0])
            (9.0, 6.0)
        """
        if self._entry.n_aux:
            raise ValueError("bind is not available for a guarded specialisation of "
                             "sa.jit (its guards must be checked on every call)")
        kernel = self._entry.deriv_kernel()
        check_buffer(x, "x", (self.n_params,))
        check_buffer(grad, "grad", (self.n_outputs * self.n_params,))
        if inputs is None:
            if self.n_inputs:
                raise ValueError(f"inputs must be a float64 array of length {self.n_inputs}"
                                 f" for bind; got None")
            inputs = np.zeros(0)
        check_buffer(inputs, "inputs", (self.n_inputs,))
        if value is None:
            value = np.zeros(self.n_outputs)
        check_buffer(value, "value", (self.n_outputs,))
        scratch = np.zeros(max(kernel.n_scratch, 1))
        return kernel.bind(x, inputs, value, grad, scratch)

    # ------------------------------------------------------------------ batches
    def _batch_args(self, X: Any, U: Any, n_inputs: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        X = _matrix(X, self.n_params, "X")
        n = X.shape[0]
        n_inputs = self.n_inputs if n_inputs is None else n_inputs
        if U is None:
            if n_inputs:
                raise ValueError(f"U must be an array of shape (N, {n_inputs}); got None")
            U = np.zeros((n, 0))
        U = _matrix(U, n_inputs, "U")
        if U.shape[0] != n:
            raise ValueError(f"U must have as many rows as X ({n}); got {U.shape[0]}")
        return X, U

    def batch_values(self, X: Any, U: Any = None) -> np.ndarray:
        """Values for every row: ``X (N, n_params)``, ``U (N, n_inputs)`` -> ``(N, m)``.

        The loop over rows runs inside the native code.
        """
        V, _ = self._batch_raw(X, U, deriv=False)
        return V[:, : self.n_outputs] if self._entry.n_aux else V

    def _batch_raw(self, X: Any, U: Any, deriv: bool | str) -> tuple[np.ndarray, np.ndarray]:
        """Every value output (auxiliary ones included) and the derivatives, per row
        (for the ``"hvp"`` kernel, ``U`` holds the inputs then the direction)."""
        if type(deriv) is str:
            X, U = self._batch_args(X, U, self._entry.input_size(deriv))
            kernel = self._entry.kernel(deriv)
        else:
            X, U = self._batch_args(X, U)
            kernel = self._entry.deriv_kernel() if deriv else self._entry.value_kernel()
        n_values, n_derivs = self._entry.sizes(deriv)
        V = np.empty((X.shape[0], n_values))
        D = np.empty((X.shape[0], n_derivs))
        kernel.run_batch(X, U, V, D, np.zeros(max(kernel.n_scratch, 1)))
        return V, D

    def batch_jacobian(self, X: Any, U: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Values ``(N, m)`` and Jacobians ``(N, m, n)`` for every row of ``X`` and ``U``."""
        V, D = self._batch_raw(X, U, deriv=True)
        if self._entry.n_aux:
            V = V[:, : self.n_outputs]
        return V, D.reshape(V.shape[0], self.n_outputs, self.n_params)


_LeafState = tuple[float, str, bool, str | None]


def _leaf_states(leaves: Sequence[Value]) -> tuple[_LeafState, ...]:
    return tuple((v.data, v.label, v.requires_grad, v.param_name) for v in leaves)


def _fresh_leaves(states: Sequence[_LeafState]) -> list[Value]:
    leaves = []
    for data, label, requires_grad, param_name in states:
        v = Value(data, label, requires_grad)
        v.param_name = param_name
        leaves.append(v)
    return leaves


def _unpickle(program: bytes, backend: str, n_aux: int, params: Sequence[_LeafState],
              inputs: Sequence[_LeafState]) -> CompiledFunction:
    """Rebuild a pickled :class:`CompiledFunction` (see its ``__reduce__``).

    ``program`` is the forward program's encoding: it is decoded only if a kernel has to
    be built (not on a hit in the kernel cache, in memory or on disk).
    """
    return CompiledFunction(_entry_for(program, backend, n_aux), _fresh_leaves(params),
                            _fresh_leaves(inputs), requested_backend=backend)


def _fill(buf: np.ndarray, x: Any, name: str) -> None:
    """Copy ``x``, ``n`` real numbers, into the float64 buffer ``buf`` of length ``n``.

    Real numbers are floats, ints and bools (numpy's kinds ``f``, ``i``, ``u``, ``b``,
    or objects that are ``numbers.Real``, as ``Value(True)`` accepts). Complex numbers,
    strings, bytes, None and other objects raise TypeError naming ``name``: numpy would
    drop an imaginary part (with a ComplexWarning) or parse a string. A float64 array,
    the hot path of ``value_and_grad``, costs one identity test of its dtype (so does
    any array-like whose ``dtype`` is float64); a list or tuple of Python floats, ints
    and bools one pass over the entries' types.
    """
    n = buf.shape[0]
    if getattr(x, "dtype", None) is not _F64:     # float64 arrays skip every check
        # a list or tuple of Python floats, ints and bools: numpy converts it exactly
        plain_numbers = type(x) is list or type(x) is tuple
        if plain_numbers:
            for v in x:
                t = type(v)
                if t is not float and t is not int and t is not bool:
                    plain_numbers = False
                    break
        if not plain_numbers:
            if isinstance(x, (str, bytes)):
                raise TypeError(f"{name} must be a sequence or array of {n} real numbers; "
                                f"got {type(x).__name__} {x!r:.80}")
            if not isinstance(x, np.ndarray):
                try:
                    len(x)
                except TypeError:
                    raise TypeError(f"{name} must be a sequence or array of {n} numbers; "
                                    f"got {type(x).__name__}") from None
                try:
                    x = np.asarray(x)
                except (TypeError, ValueError) as exc:       # ragged nesting
                    raise TypeError(f"{name} must hold {n} real numbers; got {x!r:.80} "
                                    f"({exc})") from None
            kind = x.dtype.kind
            if kind not in "fiub":
                import numbers

                # an object array may hold real numbers (Fraction, numpy scalars)
                wrong = [v for v in x.flat if not isinstance(v, numbers.Real)] \
                    if kind == "O" else list(x.flat[:1])
                if kind != "O" or wrong:
                    shown = f"{type(wrong[0]).__name__} {wrong[0]!r:.40}" if wrong \
                        else "no entries"
                    raise TypeError(f"{name} must hold {n} real numbers (int, float or "
                                    f"bool); got {shown} (dtype {x.dtype})")
    try:
        length = len(x)
    except TypeError:
        raise TypeError(f"{name} must be a sequence or array of {n} numbers; "
                        f"got {type(x).__name__}") from None
    if length != n:
        raise ValueError(f"{name} must have length {n}; got length {length}")
    try:
        buf[:] = x
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must hold {n} real numbers; got {x!r:.80} ({exc})") from None


def _matrix(a: Any, cols: int, name: str) -> np.ndarray:
    """``a`` as a C-contiguous float64 ``(N, cols)`` array (no copy when it is one).

    The entries must be real numbers, as for :func:`_fill`: complex numbers, strings,
    bytes and other objects raise TypeError naming ``name``.
    """
    if isinstance(a, (str, bytes)):
        raise TypeError(f"{name} must be a 2-D array of real numbers; got "
                        f"{type(a).__name__} {a!r:.80}")
    try:
        m = np.asarray(a)
    except (TypeError, ValueError):      # ragged nesting
        raise TypeError(f"{name} must be a 2-D array of numbers; got {type(a).__name__}") \
            from None
    kind = m.dtype.kind
    if kind not in "fiub":
        import numbers

        # an object array may hold real numbers (Fraction, numpy scalars)
        wrong = [v for v in m.flat if not isinstance(v, numbers.Real)] \
            if kind == "O" else list(m.flat[:1])
        if kind != "O" or wrong:
            shown = f"{type(wrong[0]).__name__} {wrong[0]!r:.40}" if wrong else "no entries"
            raise TypeError(f"{name} must be a 2-D array of real numbers (int, float or "
                            f"bool); got {shown} (dtype {m.dtype})")
    try:
        m = np.ascontiguousarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 2-D array of numbers; got {type(a).__name__}") \
            from None
    if m.ndim != 2 or m.shape[1] != cols:
        raise ValueError(f"{name} must have shape (N, {cols}); got {m.shape}")
    return m


def _entry_for(program: Program | bytes, backend: str, n_aux: int = 0, *,
               structured: bool = True) -> _Entry:
    """The cached entry of ``program`` (or of its encoding) on the backend ``backend``
    means for it.

    The cache key holds the concrete backend name (``"auto"`` and ``"llvm"`` resolved by
    the program's size), so a program compiled to native code and the same program on
    the VM are two entries, and the program's canonical encoding (its structural key).

    Raises:
        TypeError: ``program`` is neither a Program nor bytes.
        ValueError: bytes that do not encode a program.
    """
    if isinstance(program, Program):
        key, n_instructions = program.key(), program.n_instructions
    elif isinstance(program, bytes):
        key, n_instructions = program, read_header(program).n_instructions
    else:
        raise TypeError(f"program must be a Program or its encoding (bytes); got "
                        f"{type(program).__name__}")
    if n_instructions < MIN_PROGRAM_SIZE:
        structured = False  # the same entry either way: skip the search
    # a flat entry is keyed by the backend its size resolves to; a structured one
    # resolves it from the sizes of its parts
    name = resolve_backend(backend, n_instructions=None if structured else n_instructions)
    return KERNELS.get_or_create(  # type: ignore[no-any-return]
        (name, key, n_aux, structured), lambda: _Entry(program, name, n_aux, structured))


def _params_and_inputs(params: Any, inputs: Any) -> tuple[list[Value], list[Value]]:
    """``params`` and ``inputs`` as lists of distinct leaves, none of them in both."""
    param_list = _as_value_list(params, "params", allow_single=False)
    input_list = _as_value_list(inputs, "inputs", allow_single=False)
    _check_leaves(param_list, "params")
    _check_leaves(input_list, "inputs")
    param_ids = {id(p) for p in param_list}
    for j, v in enumerate(input_list):
        if id(v) in param_ids:
            raise ValueError(f"inputs[{j}] is also a param; a leaf is either a param or an "
                             f"input")
    return param_list, input_list


def _check_frozen_branches(leaves: list[Value], name: str, strict: bool) -> None:
    """Warn (or raise) when a Python branch depended on one of ``leaves``."""
    for i, leaf in enumerate(leaves):
        site = branch_site(leaf)
        if site is None:
            continue
        message = (f"a Python branch (bool() of a Value depending on {name}[{i}]) ran at "
                   f"{site} before sa.compile: its outcome is frozen into the compiled "
                   f"code. Use sa.where(cond, a, b) so the branch stays a branch, or "
                   f"sa.jit(fn), which records branches as guards and re-traces when "
                   f"they change")
        if strict:
            raise ValueError(message)
        warnings.warn(message, FrozenBranchWarning, stacklevel=3)
        return


def compile(  # noqa: A001 - the public name the API asks for
    outputs: Value | Sequence[Value],
    params: Sequence[Value],
    inputs: Sequence[Value] = (),
    *,
    backend: str = "auto",
    strict: bool = False,
) -> CompiledFunction:
    """Compile a graph into a :class:`CompiledFunction` of ``params`` (and ``inputs``).

    Every leaf that is neither a param nor an input is a constant frozen at compile
    time: change it and compile again. A graph is one path through the Python code
    that built it: when a ``bool()`` of a Value depending on the params or inputs ran
    (an ``if``, builtin ``min``/``max``), that branch is frozen, and ``compile`` warns
    with :class:`~scalar_autograd.FrozenBranchWarning` naming the line (``strict=True``
    raises instead). Use ``sa.where`` for a branch that stays a branch, or
    :func:`scalar_autograd.jit`, which re-traces when a branch changes. Compiling a
    structurally identical graph again reuses the cached kernels.

    Args:
        outputs: a ``Value`` or a sequence of ``Value``s.
        params: the differentiable arguments: distinct leaf ``Value``s, in order.
        inputs: non-differentiable runtime arguments (data, targets): distinct leaf
            ``Value``s, none of them a param.
        backend: ``"llvm"`` (native code; the tape VM for programs over
            :data:`~scalar_autograd.backends.registry.VM_THRESHOLD` instructions),
            ``"vm"`` (always the tape VM), ``"python"`` (generated Python),
            ``"interpreter"`` (reference), or ``"auto"`` (``"llvm"`` when llvmlite
            imports, else ``"python"``). ``f.backend`` names the one that runs.
        strict: raise ``ValueError`` instead of warning about a frozen branch.

    Raises:
        TypeError: for anything but Values where Values are needed.
        ValueError: for non-leaf, duplicated or overlapping params/inputs, no outputs,
            an unknown backend, or (with ``strict``) a frozen branch.
        ImportError: for ``backend="llvm"`` without llvmlite.

    Example:
        >>> import scalar_autograd as sa
        >>> p = sa.Value(1.0, label="p")
        >>> t = sa.Value(0.0, label="target")
        >>> f = sa.compile((p - t) ** 2, [p], inputs=[t])
        >>> f.value_and_grad([3.0], inputs=[1.0])[1].tolist()
        [4.0]
    """
    out_list = _as_value_list(outputs, "outputs", allow_single=True)
    if not out_list:
        raise ValueError("outputs must hold at least one Value; got an empty sequence")
    param_list, input_list = _params_and_inputs(params, inputs)
    resolve_backend(backend)  # fail fast on a bad name before tracing
    _check_frozen_branches(param_list, "params", strict)
    _check_frozen_branches(input_list, "inputs", strict)
    started = time.perf_counter()
    with gc_paused():             # a walk over possibly millions of Values
        program, _ = trace(out_list, param_list, input_list)
        traced = time.perf_counter()
        f = CompiledFunction(_entry_for(program, backend), param_list, input_list,
                             requested_backend=backend)
        f._trace_seconds = traced - started
        return f


class _RowsEntry(_Entry):
    """The entry of :func:`compile_sum`: a structure made directly (one group, every
    row the per-sample program), its flat program built only if asked for (second
    derivatives, pickling, ``f.program``)."""

    def __init__(self, structure: Structure, backend: str, flat: Callable[[], Program],
                 n_instructions: int) -> None:
        started = time.perf_counter()
        self.n_params, self.n_inputs = structure.n_params, 0
        self.n_values, self.n_derivs, self.n_aux = 1, 0, 0
        self._lock = threading.Lock()
        self._program_lock = threading.Lock()
        self._part_backend = backend
        self.structure = structure
        self._value = self._deriv = None
        self._second = {}
        self._program = None
        self._flat = flat
        self.backend = resolve_backend(backend, n_instructions=max(
            structure.groups[0].program.n_instructions, structure.outer.n_instructions))
        self.n_instructions = n_instructions
        self.build_seconds = time.perf_counter() - started

    @property
    def program(self) -> Program:
        """The flat program (every row spelled out; built on first use)."""
        with self._program_lock:
            if self._program is None:
                self._program = self._flat()
            return self._program

    @property
    def encoded(self) -> bytes:  # type: ignore[override]
        """The flat program's encoding (built on first use)."""
        return self.program.key()


def _flat_rows(row: Program, data: np.ndarray, mean: bool) -> Program:
    """The program :func:`compile_sum` stands for: ``row`` once per row of ``data`` (its
    inputs as constants), summed left to right (and divided by the count)."""
    n = row.n_params
    b = Builder(n, 0)
    params = [b.input(j) for j in range(n)]
    terms = []
    for values in data.tolist():
        slots = params + [b.const(v) for v in values]
        ids: list[int] = []
        for kind, payload in row.nodes:
            if kind == "input":
                ids.append(slots[payload])
            elif kind == "const":
                ids.append(b.const(payload))
            else:
                ids.append(b.emit(kind, tuple([ids[a] for a in payload])))
        terms.append(ids[row.outputs[0]])
    total = b.emit("sum", tuple(terms))
    if mean:
        total = b.emit("div", (total, b.const(float(len(terms)))))
    return b.build([total], n_values=1)


def compile_sum(term: Value, params: Sequence[Value], inputs: Sequence[Value], data: Any,
                *, reduce: str = "mean", backend: str = "auto") -> CompiledFunction:
    """The sum (or mean) over the rows of ``data`` of a per-sample ``term``, compiled
    once: a :class:`CompiledFunction` of ``params``.

    ``term`` is built for ONE sample from ``params`` and the leaves ``inputs`` (that
    sample's data: features, target); row ``r`` of ``data`` holds the inputs' values of
    sample ``r``. The result is what the whole-data-set graph ``sa.mean([term of sample
    r for r ...])`` computes, bit for bit, without building that graph: the per-sample
    program is traced once (hundreds of instructions, not hundreds of thousands), run
    as the row kernel of every sample in one native loop, and the terms are added left
    to right as ``sa.sum`` adds them (see :mod:`scalar_autograd.ir.structure`).

    Args:
        term: the per-sample scalar loss.
        params: the differentiable leaves (shared by every sample).
        inputs: the per-sample leaves, in the order of ``data``'s columns.
        data: ``(N, len(inputs))`` values, ``N >= 1``.
        reduce: ``"mean"`` or ``"sum"``.
        backend: as for :func:`compile`.

    Raises:
        TypeError: for anything but Values where Values are needed, or non-numeric data.
        ValueError: bad leaves, a ``data`` of the wrong shape or empty, or an unknown
            ``reduce``.

    Example:
        >>> import numpy as np, scalar_autograd as sa
        >>> w, b = sa.Value(0.5), sa.Value(0.0)
        >>> x, y = sa.Value(0.0), sa.Value(0.0)             # one sample
        >>> f = sa.compile_sum((w * x + b - y) ** 2, [w, b], [x, y],
        ...                    np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]]))
        >>> value, grad = f.value_and_grad([2.0, 0.0])   # the exact fit y = 2x
        >>> value, grad.tolist()
        (0.0, [0.0, 0.0])
    """
    if not isinstance(term, Value):
        raise TypeError(f"term must be a Value; got {type(term).__name__}")
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum'; got {reduce!r}")
    param_list, input_list = _params_and_inputs(params, inputs)
    table = _matrix(data, len(input_list), "data")
    if table.shape[0] == 0:
        raise ValueError("data must have at least one row; got 0")
    resolve_backend(backend)
    started = time.perf_counter()
    with gc_paused():
        row, _ = trace([term], param_list, input_list)
    n, count = len(param_list), table.shape[0]
    group = TermGroup(program=row, roots=np.arange(count, dtype=np.int64),
                      param_index=np.tile(np.arange(n, dtype=np.int64), (count, 1)),
                      input_index=np.zeros((count, 0), dtype=np.int64),
                      data=np.ascontiguousarray(table), cone_size=row.n_instructions)
    b = Builder(n + 1, 0)
    for slot in range(n + 1):
        b.input(slot)
    total = b.input(n)
    if reduce == "mean":
        total = b.emit("div", (total, b.const(float(count))))
    structure = Structure(b.build([total], n_values=1), (group,), (0,),
                          np.zeros(0, dtype=np.int64),
                          (Reduction(np.zeros(count, dtype=np.int64),
                                     np.arange(count, dtype=np.int64), np.zeros(0)),), n)
    entry = _RowsEntry(structure, backend, partial(_flat_rows, row, table, reduce == "mean"),
                       row.n_instructions * count)
    f = CompiledFunction(entry, param_list, requested_backend=backend)
    f._trace_seconds = time.perf_counter() - started
    return f


def compile_program(program: Program, backend: str = "auto") -> CompiledFunction:
    """A :class:`CompiledFunction` straight from a program (no Value graph)."""
    return CompiledFunction(_entry_for(program, backend), requested_backend=backend)


def compile_gradient_function(
    output: Value, params: Sequence[Value], *, backend: str = "auto"
) -> Callable[..., list[float]]:
    """The seed's API: ``fn(*param_values) -> list`` of gradients in ``params`` order.

    Example:
        >>> import scalar_autograd as sa
        >>> x, y = sa.Value(1.0), sa.Value(2.0)
        >>> fn = sa.compile_gradient_function(x * y, [x, y])
        >>> fn(3.0, 4.0)
        [4.0, 3.0]
    """
    if not isinstance(output, Value):
        raise TypeError(f"output must be a Value; got {type(output).__name__}")
    f = compile(output, params, backend=backend)

    def gradient(*values: float) -> list[float]:
        return f.value_and_grad(values)[1].tolist()  # type: ignore[no-any-return]

    gradient.compiled = f  # type: ignore[attr-defined]
    return gradient


def apply_compiled_gradients(fn: Callable[..., list[float]], params: Sequence[Value]
                             ) -> list[float]:
    """Call ``fn`` at the params' current ``.data``, set each ``.grad``, return them.

    When ``fn`` comes from :func:`compile_gradient_function` (it carries the compiled
    function as ``fn.compiled``), ``params`` must be that function's params, the same
    Values in the same order: the gradients come back in that order, so any other list
    would receive them permuted. A plain callable is trusted as it is.

    Raises:
        ValueError: ``params`` are not ``fn.compiled.params`` (naming the first position
            that differs), or ``fn`` returned a different number of gradients.

    Example:
        >>> import scalar_autograd as sa
        >>> x = sa.Value(3.0)
        >>> fn = sa.compile_gradient_function(x * x, [x])
        >>> sa.apply_compiled_gradients(fn, [x]), x.grad
        ([6.0], 6.0)
    """
    param_list = _as_value_list(params, "params", allow_single=False)
    expected = getattr(getattr(fn, "compiled", None), "params", None)
    if expected:
        for i, (given, wanted) in enumerate(zip(param_list, expected)):
            if given is not wanted:
                where = next((f"; it is the compiled function's param {j}"
                              for j, q in enumerate(expected) if q is given), "")
                raise ValueError(f"params must be the compiled function's params in its "
                                 f"order; params[{i}] is {given!r}, not its param {i} "
                                 f"{wanted!r}{where}")
        if len(param_list) != len(expected):
            first = min(len(param_list), len(expected))
            raise ValueError(f"params must be the compiled function's {len(expected)} "
                             f"params in its order; got {len(param_list)}, which differ "
                             f"from position {first} on")
    grads = fn(*[p.data for p in param_list])
    if len(grads) != len(param_list):
        raise ValueError(f"fn returned {len(grads)} gradients for {len(param_list)} params")
    for p, g in zip(param_list, grads):
        p.grad = g
    return list(grads)
