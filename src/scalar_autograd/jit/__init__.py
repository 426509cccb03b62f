"""The JIT: trace a Value graph to IR, differentiate on the IR, compile to native code."""

from scalar_autograd.jit import check as _check  # noqa: F401  (registers check_grads modes)
from scalar_autograd.jit.compiled import (
    CompiledFunction,
    apply_compiled_gradients,
    compile,
    compile_gradient_function,
    compile_program,
)
from scalar_autograd.jit.grouping import ResidualGroup, group_residuals
from scalar_autograd.jit.ir import Builder, Program
from scalar_autograd.jit.trace import trace

__all__ = ["CompiledFunction", "compile", "compile_program", "compile_gradient_function",
           "apply_compiled_gradients", "Builder", "Program", "trace", "ResidualGroup",
           "group_residuals"]
