"""The runtime: compile Value graphs and Python functions into callable native code."""

from scalar_autograd.runtime.compiled import (
    CompiledFunction,
    CompileStats,
    RowKernelStats,
    apply_compiled_gradients,
    compile,
    compile_gradient_function,
    compile_program,
    compile_sum,
)
from scalar_autograd.runtime.export import export_c
from scalar_autograd.runtime.grouping import ResidualGroup, group_residuals

__all__ = ["CompiledFunction", "compile", "compile_program", "compile_gradient_function",
           "apply_compiled_gradients", "compile_sum", "CompileStats", "RowKernelStats",
           "ResidualGroup", "group_residuals", "export_c"]
