"""Module-level spelling of every op: ``sa.sin(x)``, ``sa.maximum(a, b)``, ``sa.sum(xs)``.

Each function accepts ``Value``s or real numbers and returns a ``Value``.

Example:
    >>> import scalar_autograd as sa
    >>> sa.maximum(1.0, sa.Value(2.0)).data
    2.0
    >>> sa.sum([1.0, 2.0, 3.0]).data, sa.mean([1.0, 2.0, 3.0]).data
    (6.0, 2.0)
"""

from __future__ import annotations

from collections.abc import Iterable

from scalar_autograd.ops import OPS_BY_NAME as _T
from scalar_autograd.value import Value, ValueLike, apply, as_value, clamp

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "pow_value", "mod", "fmod", "copysign",
    "reciprocal", "square", "cube", "sqrt", "abs", "sign", "floor", "ceil", "round",
    "trunc", "minimum", "maximum", "clamp", "relu", "tanh", "sigmoid", "softplus", "sin",
    "cos", "tan", "asin", "acos", "atan", "atan2", "exp", "log", "sinh", "cosh", "log1p",
    "expm1", "eq", "ne", "gt", "lt", "ge", "le", "where", "if_then_else", "sum", "mean",
    "stop_gradient",
]


def add(a: ValueLike, b: ValueLike) -> Value:
    """``a + b``."""
    return apply(_T["add"], a, b)


def sub(a: ValueLike, b: ValueLike) -> Value:
    """``a - b``."""
    return apply(_T["sub"], a, b)


def mul(a: ValueLike, b: ValueLike) -> Value:
    """``a * b``."""
    return apply(_T["mul"], a, b)


def div(a: ValueLike, b: ValueLike) -> Value:
    """``a / b`` with IEEE semantics: ``div(1, 0)`` is ``inf``."""
    return apply(_T["div"], a, b)


def neg(x: ValueLike) -> Value:
    """``-x``."""
    return apply(_T["neg"], x)


def pow(x: ValueLike, exponent: float) -> Value:  # noqa: A001
    """``x ** exponent`` for a constant exponent; use :func:`pow_value` for a ``Value``.

    Example:
        >>> pow(3.0, 2).data
        9.0
    """
    return as_value(x, "x").pow(exponent)


def pow_value(x: ValueLike, exponent: ValueLike) -> Value:
    """``x ** exponent``, differentiable in both arguments."""
    return apply(_T["pow_value"], x, exponent)


def mod(a: ValueLike, b: ValueLike) -> Value:
    """``a % b``, Python's floored modulo (result has the sign of ``b``)."""
    return apply(_T["mod"], a, b)


def fmod(a: ValueLike, b: ValueLike) -> Value:
    """C ``fmod``: remainder with the sign of ``a``."""
    return apply(_T["fmod"], a, b)


def copysign(a: ValueLike, b: ValueLike) -> Value:
    """``|a|`` with the sign of ``b``."""
    return apply(_T["copysign"], a, b)


def reciprocal(x: ValueLike) -> Value:
    """``1 / x``."""
    return apply(_T["reciprocal"], x)


def square(x: ValueLike) -> Value:
    """``x * x``."""
    return apply(_T["square"], x)


def cube(x: ValueLike) -> Value:
    """``x ** 3``."""
    return apply(_T["cube"], x)


def sqrt(x: ValueLike) -> Value:
    """Square root (nan below 0)."""
    return apply(_T["sqrt"], x)


def abs(x: ValueLike) -> Value:  # noqa: A001
    """``|x|``; the derivative at 0 is 0."""
    return apply(_T["abs"], x)


def sign(x: ValueLike) -> Value:
    """-1, 0 or 1 (keeps the sign of zero)."""
    return apply(_T["sign"], x)


def floor(x: ValueLike) -> Value:
    """Round down."""
    return apply(_T["floor"], x)


def ceil(x: ValueLike) -> Value:
    """Round up."""
    return apply(_T["ceil"], x)


def round(x: ValueLike) -> Value:  # noqa: A001
    """Round half away from zero: ``round(2.5) == 3``, ``round(-2.5) == -3``."""
    return apply(_T["round"], x)


def trunc(x: ValueLike) -> Value:
    """Round toward zero."""
    return apply(_T["trunc"], x)


def minimum(a: ValueLike, b: ValueLike) -> Value:
    """The smaller of ``a`` and ``b``; a tie splits the gradient 0.5/0.5."""
    return apply(_T["min"], a, b)


def maximum(a: ValueLike, b: ValueLike) -> Value:
    """The larger of ``a`` and ``b``; a tie splits the gradient 0.5/0.5."""
    return apply(_T["max"], a, b)


def relu(x: ValueLike) -> Value:
    """``max(x, 0)``; the derivative at 0 is 0."""
    return apply(_T["relu"], x)


def tanh(x: ValueLike) -> Value:
    """Hyperbolic tangent."""
    return apply(_T["tanh"], x)


def sigmoid(x: ValueLike) -> Value:
    """Logistic sigmoid ``1 / (1 + e**-x)``, computed without overflow."""
    return apply(_T["sigmoid"], x)


def softplus(x: ValueLike) -> Value:
    """``log(1 + e**x)``, stable for large ``|x|``."""
    return apply(_T["softplus"], x)


def sin(x: ValueLike) -> Value:
    """Sine."""
    return apply(_T["sin"], x)


def cos(x: ValueLike) -> Value:
    """Cosine."""
    return apply(_T["cos"], x)


def tan(x: ValueLike) -> Value:
    """Tangent."""
    return apply(_T["tan"], x)


def asin(x: ValueLike) -> Value:
    """Arcsine (nan outside [-1, 1])."""
    return apply(_T["asin"], x)


def acos(x: ValueLike) -> Value:
    """Arccosine (nan outside [-1, 1])."""
    return apply(_T["acos"], x)


def atan(x: ValueLike) -> Value:
    """Arctangent."""
    return apply(_T["atan"], x)


def atan2(y: ValueLike, x: ValueLike) -> Value:
    """The angle of the point ``(x, y)``, arguments in C's order."""
    return apply(_T["atan2"], y, x)


def exp(x: ValueLike) -> Value:
    """``e ** x``."""
    return apply(_T["exp"], x)


def log(x: ValueLike) -> Value:
    """Natural logarithm (``log(0) = -inf``)."""
    return apply(_T["log"], x)


def sinh(x: ValueLike) -> Value:
    """Hyperbolic sine."""
    return apply(_T["sinh"], x)


def cosh(x: ValueLike) -> Value:
    """Hyperbolic cosine."""
    return apply(_T["cosh"], x)


def log1p(x: ValueLike) -> Value:
    """``log(1 + x)``, accurate near 0."""
    return apply(_T["log1p"], x)


def expm1(x: ValueLike) -> Value:
    """``e ** x - 1``, accurate near 0."""
    return apply(_T["expm1"], x)


def eq(a: ValueLike, b: ValueLike) -> Value:
    """1.0 if ``a == b`` else 0.0; zero gradient."""
    return apply(_T["eq"], a, b)


def ne(a: ValueLike, b: ValueLike) -> Value:
    """1.0 if ``a != b`` else 0.0; zero gradient."""
    return apply(_T["ne"], a, b)


def gt(a: ValueLike, b: ValueLike) -> Value:
    """1.0 if ``a > b`` else 0.0; zero gradient."""
    return apply(_T["gt"], a, b)


def lt(a: ValueLike, b: ValueLike) -> Value:
    """1.0 if ``a < b`` else 0.0; zero gradient."""
    return apply(_T["lt"], a, b)


def ge(a: ValueLike, b: ValueLike) -> Value:
    """1.0 if ``a >= b`` else 0.0; zero gradient."""
    return apply(_T["ge"], a, b)


def le(a: ValueLike, b: ValueLike) -> Value:
    """1.0 if ``a <= b`` else 0.0; zero gradient."""
    return apply(_T["le"], a, b)


def where(condition: ValueLike, a: ValueLike, b: ValueLike) -> Value:
    """``a`` where ``condition`` is non-zero, else ``b``; the gradient follows the choice.

    Unlike a Python ``if``, this stays a branch when compiled.

    Example:
        >>> x = Value(-2.0, requires_grad=True)
        >>> y = where(x > 0, x * x, -x)
        >>> y.backward(); y.data, x.grad
        (2.0, -1.0)
    """
    return apply(_T["where"], condition, a, b)


def stop_gradient(x: ValueLike) -> Value:
    """``x`` unchanged, but no gradient flows back through it (JAX's ``stop_gradient``).

    Unlike :meth:`Value.detach` it stays a node of the graph, so compiled code keeps
    reading the live value.

    Example:
        >>> x = Value(3.0, requires_grad=True)
        >>> y = x * stop_gradient(x)
        >>> y.backward(); y.data, x.grad
        (9.0, 3.0)
    """
    return apply(_T["stop_gradient"], x)


if_then_else = where
"""The seed's name for :func:`where`."""


def _sequence(values: Iterable[ValueLike], name: str) -> tuple[ValueLike, ...]:
    if isinstance(values, (Value, str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} takes an iterable of Values or numbers; "
                        f"got {type(values).__name__}")
    return tuple(values)


def sum(values: Iterable[ValueLike]) -> Value:  # noqa: A001
    """The sum of ``values`` as one n-ary node (not a deep chain); ``sum([])`` is 0.

    Example:
        >>> sum([Value(1.0), 2.0, 3]).data
        6.0
    """
    items = _sequence(values, "sum")
    if not items:
        return Value(0.0)
    return apply(_T["sum"], *items)


def mean(values: Iterable[ValueLike]) -> Value:
    """The mean of ``values`` as one n-ary node.

    Raises:
        ValueError: if ``values`` is empty.
    """
    items = _sequence(values, "mean")
    if not items:
        raise ValueError("mean needs at least one value; got an empty values sequence")
    return apply(_T["mean"], *items)
