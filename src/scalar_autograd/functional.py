"""Module-level spelling of every op: ``sa.sin(x)``, ``sa.maximum(a, b)``, ``sa.sum(xs)``.

Each function accepts ``Value``s or real numbers and returns a ``Value``.
:func:`custom_op` adds an op of your own, with its derivative rule, to the table.

Example:
    >>> import scalar_autograd as sa
    >>> sa.maximum(1.0, sa.Value(2.0)).data
    2.0
    >>> sa.sum([1.0, 2.0, 3.0]).data, sa.mean([1.0, 2.0, 3.0]).data
    (6.0, 2.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, overload

from scalar_autograd.ops import OPS_BY_NAME as _T
from scalar_autograd.ops import VARIADIC, CustomDefinition, Op, register_custom
from scalar_autograd.value import Value, ValueLike, apply, as_value, clamp

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "pow_value", "mod", "fmod", "copysign",
    "reciprocal", "square", "cube", "sqrt", "abs", "sign", "floor", "ceil", "round",
    "trunc", "minimum", "maximum", "clamp", "relu", "tanh", "sigmoid", "softplus", "sin",
    "cos", "tan", "asin", "acos", "atan", "atan2", "exp", "log", "sinh", "cosh", "log1p",
    "expm1", "eq", "ne", "gt", "lt", "ge", "le", "where", "if_then_else", "sum", "mean",
    "stop_gradient", "custom_op",
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


# --------------------------------------------------------------------------- custom ops


class CustomOp:
    """An op of your own, made by :func:`custom_op`: call it like its value function,
    without the algebra (``smoothmax(a, b, k)`` for ``value(m, a, b, k)``).

    Attributes:
        name: the op's name (shown by ``sa.to_dot``).
        arity: the number of arguments, or ``None`` for a variadic op.
        doc: its documentation line.
        definition: the registered definition (:class:`~scalar_autograd.ops.CustomDefinition`).
    """

    __slots__ = ("definition",)

    def __init__(self, definition: CustomDefinition) -> None:
        if not isinstance(definition, CustomDefinition):
            raise TypeError(f"definition must be a CustomDefinition (use sa.custom_op); got "
                            f"{type(definition).__name__}")
        self.definition = definition

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def arity(self) -> int | None:
        arity = self.definition.arity
        return None if arity == VARIADIC else arity

    @property
    def doc(self) -> str:
        return self.definition.doc

    def row(self, n_args: int) -> Op:
        """The op-table row applied to ``n_args`` arguments."""
        return self.definition.row(n_args)

    def __call__(self, *args: ValueLike) -> Value:
        """Apply the op to ``Value``s or real numbers, recording the graph."""
        return apply(self.definition.row(len(args)), *args)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CustomOp) and other.definition is self.definition

    def __hash__(self) -> int:
        return hash(id(self.definition))

    def __repr__(self) -> str:
        arity = "variadic" if self.arity is None else str(self.arity)
        return f"CustomOp({self.name!r}, arity={arity})"


@overload
def custom_op(value: Callable[..., Any], /, *, partials: Callable[..., Any],
              name: str | None = None, doc: str | None = None,
              replace: bool = False) -> CustomOp: ...


@overload
def custom_op(value: None = None, /, *, partials: Callable[..., Any],
              name: str | None = None, doc: str | None = None,
              replace: bool = False) -> Callable[[Callable[..., Any]], CustomOp]: ...


def custom_op(value: Callable[..., Any] | None = None, /, *, partials: Callable[..., Any],
              name: str | None = None, doc: str | None = None, replace: bool = False
              ) -> CustomOp | Callable[[Callable[..., Any]], CustomOp]:
    """Add an op to the op table: its value and its derivative, written against the algebra.

    Both functions are written like the table's own rows: with the algebra ``m``'s ops
    (``m.exp``, ``m.log1p``, ``m.div``, ``m.where``, ``m.max``, ...) and ``+ - *`` and
    unary ``-``, never ``/``, ``**``, ``math``, ``float()`` or a Python ``if`` on an
    argument (``m.where`` chooses). They are recorded once (per number of arguments), so
    they must be pure. Then the op

    * evaluates eagerly on floats with IEEE semantics (the float algebra: ``1/0`` is
      inf, nothing raises) and differentiates with ``backward()`` by ``partials``;
    * compiles on every backend as its expansion into built-in ops (no user string ever
      reaches generated code), differentiated in reverse or forward mode by ``partials``
      run on the IR, so second derivatives (forward over reverse) come from the same
      rule;
    * shows in ``sa.to_dot`` under ``name``.

    Args:
        value: ``value(m, a, b, ...)`` returning the result, or ``value(m, *args)`` for a
            variadic op (each number of arguments gets its own recorded row). Omit it to
            use ``custom_op`` as a decorator.
        partials: ``partials(m, a, b, ..., out)`` returning one partial derivative per
            argument (a tuple); ``out`` is the op's result. A literal ``0.0`` marks an
            argument that receives no gradient (as ``floor``'s).
        name: an identifier starting with a letter (letters, digits, ``_``; at most 64),
            not a built-in op; default ``value.__name__``.
        doc: one line of documentation; default the first paragraph of ``value``'s
            docstring.
        replace: give the name a different definition. Without it, registering a name
            again returns the op already registered if the definition is identical
            (same arity, doc and recorded functions: re-running a notebook cell or
            reloading a module is harmless) and raises ``ValueError`` otherwise. Values
            and compiled functions built with the old definition keep it.

    Returns:
        The op (or, without ``value``, a decorator making it).

    Raises:
        TypeError: ``value`` or ``partials`` is not a function of the right signature,
            or leaves the algebra, or returns something that is not an algebra value.
        ValueError: a bad ``name``, a name taken by another definition, or ``partials``
            returning the wrong number of derivatives.

    The table is a definition, not a mode: registering is thread-safe and the op is
    visible to every thread at once. A process that unpickles a compiled function using
    a custom op must register the same definition first (at import of the module that
    defines it); a different definition is refused there with a ``KeyError``.

    Example:
        >>> import scalar_autograd as sa
        >>> def _d_softsign(m, x, out):
        ...     return (m.div(1.0, (1.0 + m.abs(x)) * (1.0 + m.abs(x))),)
        >>> @sa.custom_op(partials=_d_softsign)
        ... def softsign(m, x):
        ...     "x / (1 + |x|)"
        ...     return m.div(x, 1.0 + m.abs(x))
        >>> x = sa.Value(1.0, requires_grad=True)
        >>> y = softsign(x)
        >>> y.backward(); y.data, x.grad
        (0.5, 0.25)
        >>> f = sa.compile(y, [x])
        >>> f.value_and_grad([3.0])[1].tolist()
        [0.0625]
        >>> "softsign" in sa.to_dot(y), "softsign" in f.source
        (True, False)
    """
    def make(fn: Callable[..., Any]) -> CustomOp:
        if not callable(fn):
            raise TypeError(f"value must be a function value(m, *args); got "
                            f"{type(fn).__name__} {fn!r:.60}")
        op_name = name
        if op_name is None:
            op_name = getattr(fn, "__name__", None)
            if not isinstance(op_name, str) or not op_name.isidentifier():
                raise ValueError(f"name is needed: the value function has no usable "
                                 f"__name__ ({op_name!r}); pass name=...")
        return CustomOp(register_custom(op_name, fn, partials, doc=doc, replace=replace))

    if value is None:
        return make
    return make(value)
