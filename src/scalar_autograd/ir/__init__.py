"""The intermediate representation: programs, the builder, autodiff and passes on IR.

A ``Value`` graph is traced (:func:`trace`) into a linear SSA :class:`Program`;
reverse and forward mode (:mod:`~scalar_autograd.ir.autodiff`) and lowering
(:mod:`~scalar_autograd.ir.passes`) are program-to-program transformations.
"""

from scalar_autograd.ir.program import Builder, Program
from scalar_autograd.ir.trace import trace

__all__ = ["Builder", "Program", "trace"]
