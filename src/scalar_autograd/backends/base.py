"""What a backend is: ``compile(Program) -> Kernel``, and the kernel calling convention.

A kernel evaluates a lowered :class:`~scalar_autograd.ir.program.Program` on float64 buffers:
``run(x, u, val, der, scratch)`` reads params ``x`` and inputs ``u`` and writes the
values into ``val`` and the derivatives into ``der``; ``scratch`` holds
``n_scratch`` doubles of working memory (only large native programs need it).
``run_batch`` does the same for every row of 2-D arrays.

The native backends (``"llvm"`` and ``"vm"``) are also *portable*: a kernel can be
saved as a :class:`KernelArtifact` (sizes and raw bytes: object code, or the VM's tape
arrays; never Python objects) and loaded again in another process, without the program,
which is then derived again only if asked for (``kernel.program``, ``kernel.source``).

Example:
    >>> from scalar_autograd.backends import get_backend
    >>> get_backend("interpreter").name
    'interpreter'
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from scalar_autograd.ir.program import Program
from scalar_autograd.native.engine import ObjectCache


class BackendError(RuntimeError):
    """A backend failed to compile or load generated code; carries that code.

    Attributes:
        source: the generated source (Python or LLVM IR text).
    """

    def __init__(self, message: str, source: str) -> None:
        super().__init__(f"{message}\n--- generated source (first 2000 chars) ---\n"
                         f"{source[:2000]}")
        self.source = source


class Kernel(Protocol):
    """A compiled program (see the module docstring for the calling convention)."""

    n_scratch: int
    backend: str

    @property
    def program(self) -> Program:
        """The (lowered) program this kernel runs."""

    @property
    def source(self) -> str:
        """The generated code (or a listing of it), for reading and error messages."""

    def run(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
            scratch: np.ndarray) -> None:
        """Evaluate once."""

    def run_batch(self, X: np.ndarray, U: np.ndarray, V: np.ndarray, D: np.ndarray,
                  scratch: np.ndarray) -> None:
        """Evaluate every row: ``X (N, n_params)``, ``U (N, n_inputs)``,
        ``V (N, n_values)``, ``D (N, n_derivs)``."""

    def bind(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
             scratch: np.ndarray) -> Callable[[], None]:
        """A zero-argument callable evaluating on these buffers."""


class DerivedProgram:
    """A kernel's ``program``, derived by ``_derive()`` on first use, once, when the
    kernel was made without it (loaded from an artifact, a tape written straight from
    the forward program, a structured kernel): set ``_program`` (or ``None``),
    ``_derive`` and ``_lock``."""

    _program: Program | None
    _derive: Callable[[], Program] | None
    _lock: threading.Lock

    @property
    def program(self) -> Program:
        """The (lowered) program this kernel runs, derived on first use if need be."""
        if self._program is None:
            with self._lock:
                if self._program is None:
                    assert self._derive is not None
                    self._program = self._derive()
        return self._program


class Backend(Protocol):
    """Turns a lowered program into a :class:`Kernel`."""

    name: str

    def compile(self, program: Program) -> Kernel:
        """Compile ``program``."""


@dataclass(frozen=True)
class KernelArtifact:
    """A compiled kernel as plain data, to be stored and loaded in another process.

    Attributes:
        backend: the backend that made it (``"llvm"`` or ``"vm"``).
        sizes: named non-negative integers (``n_scratch``, buffer lengths, ...).
        blobs: named raw bytes (object code, little-endian array data).
    """

    backend: str
    sizes: Mapping[str, int]
    blobs: Mapping[str, bytes]


class PortableBackend(Protocol):
    """A backend whose kernels can be saved as :class:`KernelArtifact` and loaded."""

    name: str

    def settings(self) -> str:
        """What the compiled code depends on beyond the program, the host and the
        library's own code (a tuning knob read from the environment, say)."""

    def compile_portable(self, program: Program, cache: ObjectCache | None = None
                         ) -> tuple[Kernel, KernelArtifact]:
        """Compile ``program``; also the artifact that :meth:`load` turns back into it.

        ``cache`` stores object code shared by many kernels (the VM's interpreter)."""

    def load(self, artifact: KernelArtifact, program: Callable[[], Program],
             cache: ObjectCache | None = None) -> Kernel:
        """The kernel ``artifact`` holds; ``program()`` derives its program on demand.

        Raises:
            ValueError: the artifact is not one this backend made.
        """
