"""What a backend is: ``compile(Program) -> Kernel``, and the kernel calling convention.

A kernel evaluates a lowered :class:`~scalar_autograd.ir.program.Program` on float64 buffers:
``run(x, u, val, der, scratch)`` reads params ``x`` and inputs ``u`` and writes the
values into ``val`` and the derivatives into ``der``; ``scratch`` holds
``n_scratch`` doubles of working memory (only large native programs need it).
``run_batch`` does the same for every row of 2-D arrays.

Example:
    >>> from scalar_autograd.backends import get_backend
    >>> get_backend("interpreter").name
    'interpreter'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from scalar_autograd.ir.program import Program


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

    program: Program
    n_scratch: int
    backend: str

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


class Backend(Protocol):
    """Turns a lowered program into a :class:`Kernel`."""

    name: str

    def compile(self, program: Program) -> Kernel:
        """Compile ``program``."""
