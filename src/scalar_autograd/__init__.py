"""scalar_autograd: scalar automatic differentiation with a JIT to native code.

Example:
    >>> import scalar_autograd as sa
    >>> x = sa.Value(2.0, requires_grad=True)
    >>> y = sa.sin(x) * x
    >>> y.backward()
    >>> print(f"{y.data:.6f} {x.grad:.6f}")
    1.818595 0.077004
"""

from scalar_autograd.expression import parse, to_expression, to_latex
from scalar_autograd.functional import *  # noqa: F403
from scalar_autograd.functional import __all__ as _functional_all
from scalar_autograd.geometry import *  # noqa: F403
from scalar_autograd.geometry import __all__ as _geometry_all
from scalar_autograd.graph import to_dot, topological_order
from scalar_autograd.losses import *  # noqa: F403
from scalar_autograd.losses import __all__ as _losses_all
from scalar_autograd.lsq import (
    BatchFitResult,
    CovarianceWarning,
    LeastSquaresProblem,
    LeastSquaresResult,
    LeastSquaresStatus,
    ResidualBlock,
    batch_curve_fit,
    batch_least_squares,
    curve_fit,
    nonlinear_least_squares,
)
from scalar_autograd.manifolds import (
    AngleAxisManifold,
    EigenQuaternionManifold,
    EuclideanManifold,
    Manifold,
    ProductManifold,
    QuaternionManifold,
    SphereManifold,
    SubsetManifold,
)
from scalar_autograd.matrix import Matrix3x3
from scalar_autograd.modes import detect_anomaly, is_grad_enabled, no_grad
from scalar_autograd.nn import MLP, Layer, Neuron
from scalar_autograd.optim import (
    SGD,
    Adam,
    AdamW,
    BatchMinimizeResult,
    OptimizeResult,
    Status,
    batch_minimize,
    clip_grad_norm,
    lbfgs,
    minimize,
)
from scalar_autograd.runtime import (
    CompiledFunction,
    apply_compiled_gradients,
    compile,
    compile_gradient_function,
    compile_sum,
    export_c,
)
from scalar_autograd.runtime.disk_cache import get_cache_dir, set_cache_dir
from scalar_autograd.runtime.jit import (
    SpecializationLimitError,
    Traced,
    grad,
    hessian,
    hvp,
    jacobian,
    jit,
    value_and_grad,
)
from scalar_autograd.testing import check_grads
from scalar_autograd.tracing import ConcretizationError, FrozenBranchWarning
from scalar_autograd.value import Value, ValueLike, as_value, zero_grad
from scalar_autograd.vec import Vec2, Vec3, Vec4

__version__ = "0.1.0"

__all__ = [
    "nonlinear_least_squares", "LeastSquaresResult", "LeastSquaresStatus", "ResidualBlock",
    "CovarianceWarning",
    "LeastSquaresProblem", "curve_fit", "batch_curve_fit", "batch_least_squares",
    "BatchFitResult",
    "Value", "ValueLike", "as_value", "zero_grad", "no_grad", "is_grad_enabled",
    "detect_anomaly", "to_dot", "topological_order", "__version__",
    "check_grads",
    "SGD", "Adam", "AdamW", "clip_grad_norm", "lbfgs", "minimize", "OptimizeResult",
    "Status", "batch_minimize", "BatchMinimizeResult",
    "Manifold", "QuaternionManifold", "EigenQuaternionManifold", "AngleAxisManifold",
    "SphereManifold", "SubsetManifold", "EuclideanManifold", "ProductManifold",
    "compile", "CompiledFunction", "compile_gradient_function", "compile_sum",
    "apply_compiled_gradients",
    "export_c",
    "set_cache_dir", "get_cache_dir",
    "jit", "grad", "value_and_grad", "jacobian", "hessian", "hvp", "Traced", "ConcretizationError",
    "FrozenBranchWarning", "SpecializationLimitError",
    "parse", "to_expression", "to_latex",
    "Vec2", "Vec3", "Vec4", "Matrix3x3", "Neuron", "Layer", "MLP", *_geometry_all, *_losses_all,
    *_functional_all,
]
