"""Backends by name, and the choice ``"auto"`` and ``"llvm"`` make by program size.

Names a user can pass (``sa.compile(..., backend=...)``, ``sa.jit``):

==============  ==========================================================
``"llvm"``      native code (LLVM); programs too large to compile quickly
                run on the tape VM instead (see :data:`VM_THRESHOLD`)
``"vm"``        always the tape VM (native code compiled once per process)
``"python"``    generated Python source, ``exec``'d
``"interpreter"`` the reference interpreter
``"auto"``      ``"llvm"`` when llvmlite imports, else ``"python"``
==============  ==========================================================

:func:`resolve_backend` turns a requested name into the concrete one that runs a given
program; the runtime keys its kernel cache by that concrete name and reports it as
``CompiledFunction.backend``.

Example:
    >>> from scalar_autograd.ir.program import Builder
    >>> b = Builder(n_params=1, n_inputs=0)
    >>> small = b.build([b.emit("sin", (b.input(0),))], 1)
    >>> resolve_backend("llvm", small), resolve_backend("vm", small)
    ('llvm', 'vm')
"""

from __future__ import annotations

from scalar_autograd.backends.base import Backend, PortableBackend
from scalar_autograd.backends.interpreter import InterpreterBackend
from scalar_autograd.backends.llvm import LLVMBackend
from scalar_autograd.backends.python import PythonBackend
from scalar_autograd.backends.vm import VMBackend
from scalar_autograd.ir.program import Program
from scalar_autograd.native.engine import available as llvm_available

BACKENDS = ("llvm", "vm", "python", "interpreter")
"""The concrete backends (``"auto"`` is a choice among them)."""

VM_THRESHOLD = 9_000
"""``"llvm"`` and ``"auto"`` run a program with more instructions than this on the VM.

Counted on the traced (forward) program, before differentiation, so the choice is made
once per compiled function and both its kernels run on the same backend. Its gradient
program is about 2 to 2.5 times as long (about 20,000 instructions at the threshold),
where LLVM's code generation at O0 starts to cost more than 0.2 s, while building a
tape costs a linear pass.
"""

_NEEDS_LLVM = ("llvm", "vm")


def resolve_backend(name: str, program: Program | None = None, *,
                    n_instructions: int | None = None) -> str:
    """The concrete backend (one of :data:`BACKENDS`) that ``name`` means for ``program``.

    ``"auto"`` is ``"llvm"`` when llvmlite imports, else ``"python"``; ``"llvm"`` becomes
    ``"vm"`` for a program over :data:`VM_THRESHOLD` instructions (without a program,
    it stays ``"llvm"``). ``n_instructions`` may stand for the program (its size known
    without decoding it).

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: an unknown name.
        ImportError: ``"llvm"`` or ``"vm"`` without llvmlite, saying how to install it.
    """
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str; got {type(name).__name__}")
    if name == "auto":
        name = "llvm" if llvm_available() else "python"
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of 'auto', 'llvm', 'vm', 'python', "
                         f"'interpreter'; got {name!r}")
    if name in _NEEDS_LLVM and not llvm_available():
        raise ImportError(f"backend={name!r} needs llvmlite: pip install llvmlite "
                          f"(or pass backend='python')")
    if n_instructions is None and program is not None:
        n_instructions = program.n_instructions
    if name == "llvm" and n_instructions is not None and n_instructions > VM_THRESHOLD:
        return "vm"
    return name


def get_backend(name: str, program: Program | None = None) -> Backend:
    """The backend ``name`` means (for ``program``; see :func:`resolve_backend`).

    Raises:
        ValueError: for an unknown name.
        ImportError: for ``"llvm"`` or ``"vm"`` without llvmlite, saying how to install it.
    """
    name = resolve_backend(name, program)
    if name == "llvm":
        return LLVMBackend()
    if name == "vm":
        return VMBackend()
    if name == "python":
        return PythonBackend()
    return InterpreterBackend()


def portable_backend(name: str) -> PortableBackend | None:
    """The concrete backend ``name`` if its kernels save as artifacts (``"llvm"`` and
    ``"vm"``: native code and tapes), else ``None`` (``"python"``, ``"interpreter"``).

    Example:
        >>> portable_backend("vm").name, portable_backend("python")
        ('vm', None)
    """
    if name == "llvm":
        return LLVMBackend()
    if name == "vm":
        return VMBackend()
    return None
