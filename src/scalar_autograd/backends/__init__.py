"""Backends: ``compile(Program) -> Kernel`` (interpreter, python, llvm, vm)."""

from scalar_autograd.backends.base import (
    Backend,
    BackendError,
    Kernel,
    KernelArtifact,
    PortableBackend,
)
from scalar_autograd.backends.interpreter import InterpreterBackend
from scalar_autograd.backends.llvm import LLVMBackend
from scalar_autograd.backends.python import PythonBackend
from scalar_autograd.backends.registry import (
    BACKENDS,
    get_backend,
    llvm_available,
    portable_backend,
    resolve_backend,
)
from scalar_autograd.backends.vm import VMBackend

__all__ = ["Backend", "BackendError", "Kernel", "KernelArtifact", "PortableBackend",
           "BACKENDS", "get_backend", "resolve_backend", "portable_backend",
           "llvm_available", "InterpreterBackend", "PythonBackend", "LLVMBackend",
           "VMBackend"]
