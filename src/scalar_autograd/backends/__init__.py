"""Backends: ``compile(Program) -> Kernel`` (interpreter, python, llvm)."""

from scalar_autograd.backends.base import Backend, BackendError, Kernel
from scalar_autograd.backends.interpreter import InterpreterBackend
from scalar_autograd.backends.llvm import LLVMBackend
from scalar_autograd.backends.llvm import available as llvm_available
from scalar_autograd.backends.python import PythonBackend

BACKENDS = ("llvm", "python", "interpreter")


def get_backend(name: str) -> Backend:
    """The backend called ``name``; ``"auto"`` is llvm when llvmlite imports, else python.

    Raises:
        ValueError: for an unknown name.
        ImportError: for ``"llvm"`` without llvmlite, saying how to install it.
    """
    if name == "auto":
        name = "llvm" if llvm_available() else "python"
    if name == "llvm":
        if not llvm_available():
            raise ImportError("backend='llvm' needs llvmlite: pip install llvmlite "
                              "(or pass backend='python')")
        return LLVMBackend()
    if name == "python":
        return PythonBackend()
    if name == "interpreter":
        return InterpreterBackend()
    raise ValueError(f"backend must be one of 'auto', 'llvm', 'python', 'interpreter'; "
                     f"got {name!r}")


__all__ = ["Backend", "BackendError", "Kernel", "BACKENDS", "get_backend", "llvm_available",
           "InterpreterBackend", "PythonBackend", "LLVMBackend"]
