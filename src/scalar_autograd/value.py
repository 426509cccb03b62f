"""``Value``: a scalar node of an expression graph, its operators, and eager ``backward()``.

A ``Value`` holds a float (``data``), the gradient accumulated by ``backward()``
(``grad``) and, for computed values, the op from the table and its arguments as an
ordered tuple (``x * x`` has two entries). There are no per-node closures: the
derivative of every op lives in its table row.

Example:
    >>> import scalar_autograd as sa
    >>> x = sa.Value(3.0, label="x", requires_grad=True)
    >>> y = x * x + sa.sin(x)
    >>> y.backward()
    >>> round(x.grad, 12)  # 2x + cos x
    5.0100075034
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, Union

from scalar_autograd import ops as _ops
from scalar_autograd import tracing as _tracing
from scalar_autograd.modes import DEFAULT as _DEFAULT
from scalar_autograd.modes import current as _mode
from scalar_autograd.ops import FLOATS, Op

ValueLike = Union["Value", float, int]
"""What every public operation accepts: a ``Value`` or a real number."""

_isfinite = math.isfinite
_new = object.__new__
_active_trace = _tracing.active_trace


def _check_number(data: Any, name: str) -> float:
    if type(data) is float:
        return data
    if isinstance(data, numbers.Real) and not isinstance(data, Value):
        return float(data)
    raise TypeError(
        f"{name} must be a real number (int or float); got {type(data).__name__} {data!r}"
    )


class Value:
    """A scalar in an expression graph.

    Args:
        data: the number (int, float or numpy real scalar).
        label: a name shown in errors, DOT drawings and generated-code comments.
        requires_grad: whether ``backward()`` accumulates a gradient into this leaf.
            Results of ops require grad when any argument does.

    Attributes:
        data: the float value.
        grad: d(output)/d(self) after ``backward()``; leaves accumulate across calls.
        label: the display name.
        requires_grad: see above.
        op: the table row that computed this value, ``None`` for a leaf.
        args: the arguments of ``op`` as an ordered tuple, ``()`` for a leaf.
        param_name: optional name used by the seed-compatible JIT API.

    Example:
        >>> a = Value(-4.0, requires_grad=True)
        >>> b = Value(2.0, requires_grad=True)
        >>> c = a * b + b ** 3
        >>> c.backward()
        >>> c.data, a.grad, b.grad
        (0.0, 2.0, 8.0)
    """

    __slots__ = ("data", "grad", "label", "requires_grad", "op", "args", "param_name",
                 "__weakref__")

    # Comparisons return Values, so identity is the hash (as torch.Tensor).
    __hash__ = object.__hash__

    def __init__(self, data: float, label: str = "", requires_grad: bool = False) -> None:
        self.data = _check_number(data, "data")
        if not isinstance(label, str):
            raise TypeError(f"label must be a str; got {type(label).__name__} {label!r}")
        self.grad = 0.0
        self.label = label
        self.requires_grad = bool(requires_grad)
        self.op: Op | None = None
        self.args: tuple[Value, ...] = ()
        self.param_name: str | None = None

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _node(data: float, op: Op, args: tuple[Value, ...]) -> Value:
        """A computed node (or a constant under ``no_grad``). Internal fast path."""
        v = _new(Value)
        v.data = data
        v.grad = 0.0
        v.label = ""
        v.param_name = None
        mode = _mode()
        if mode.grad_enabled:
            v.op = op
            v.args = args
            rg = False
            for a in args:
                if a.requires_grad:
                    rg = True
                    break
            v.requires_grad = rg
        else:
            trace = _active_trace()
            if trace is not None and any([trace.depends(a) for a in args]):
                raise _tracing.concretization_error(
                    f"{op.label} under no_grad()")  # its result would be a frozen constant
            v.op = None
            v.args = ()
            v.requires_grad = False
        if mode.anomaly and not _isfinite(data):
            _raise_anomaly(op, args, data)
        return v

    @property
    def is_leaf(self) -> bool:
        """True for values not computed by an op (params, inputs, constants)."""
        return self.op is None

    def __repr__(self) -> str:
        label = f", label={self.label!r}" if self.label else ""
        return f"Value(data={self.data!r}, grad={self.grad!r}{label})"

    def __float__(self) -> float:
        trace = _active_trace()
        if trace is not None and trace.depends(self):
            raise _tracing.concretization_error("float()")
        return self.data

    def __int__(self) -> int:
        trace = _active_trace()
        if trace is not None and trace.depends(self):
            raise _tracing.concretization_error("int()")
        return int(self.data)

    def __index__(self) -> int:
        trace = _active_trace()
        if trace is not None and trace.depends(self):
            raise _tracing.concretization_error("operator.index()")
        raise TypeError(f"a Value cannot be used as an index (it holds a float, "
                        f"{self.data!r}); use int(v)")

    def __bool__(self) -> bool:
        """Whether ``data`` is non-zero (nan is true).

        While a function is traced (``sa.jit``), the outcome is recorded as a guard that
        the compiled code checks on every call; outside a trace, the leaves the value
        depends on are marked so ``sa.compile`` can warn that a branch was frozen.
        """
        trace = _active_trace()
        if trace is not None:
            return trace.branch(self)
        _tracing.mark_branch(self)
        return self.data != 0.0

    def item(self) -> float:
        """The float value (as ``torch.Tensor.item``); refused on a traced value."""
        trace = _active_trace()
        if trace is not None and trace.depends(self):
            raise _tracing.concretization_error(".item()")
        return self.data

    def detach(self) -> Value:
        """A new leaf with the same data and no history; ``requires_grad`` is false."""
        return Value(self.data, self.label)

    def zero_grad(self) -> None:
        """Set this value's ``grad`` to 0."""
        self.grad = 0.0

    # ------------------------------------------------------------------ backward
    def backward(self, gradient: float = 1.0) -> None:
        """Accumulate d(self)/d(leaf) into every leaf that requires grad.

        Leaves accumulate across calls, as in PyTorch (call :func:`zero_grad` between
        steps); every computed node on the way gets this call's gradient in ``grad``.
        The walk is iterative, so graphs of any depth work.

        Args:
            gradient: the seed d(loss)/d(self), 1.0 by default.

        Example:
            >>> x = Value(2.0, requires_grad=True)
            >>> (x * x).backward()
            >>> (x * x).backward()
            >>> x.grad
            8.0
        """
        seed = _check_number(gradient, "gradient")
        if not self.requires_grad:
            raise RuntimeError(
                "backward() needs a value that depends on a leaf with requires_grad=True; "
                "create parameters as Value(x, requires_grad=True)"
            )
        order = _grad_order(self)  # computed nodes only
        for node in order:
            node.grad = 0.0
        self.grad += seed
        anomaly = _mode().anomaly
        floats = FLOATS
        for node in reversed(order):
            op: Op = node.op  # type: ignore[assignment]  # never None: no leaves in order
            g = node.grad
            args = node.args
            zeros = op.zero_partials
            selects = op.selects
            if len(args) == 2 and not selects:
                a, b = args
                pa, pb = op.partials(floats, a.data, b.data, out=node.data)
                if a.requires_grad and not zeros[0]:
                    a.grad += g * pa
                if b.requires_grad and not zeros[1]:
                    b.grad += g * pb
            elif selects:
                # Indicator partials select g: where p is 0 the contribution is 0, never
                # 0 * inf (ops.select_contribution). Skipping it equals adding +0.0: a
                # grad starts at +0.0 and sums of floats from there are never -0.0.
                partials = op.partials(floats, *[a.data for a in args], out=node.data)
                for arg, p, zero in zip(args, partials, zeros):
                    if p != 0.0 and not zero and arg.requires_grad:
                        arg.grad += g * p
            else:
                partials = op.partials(floats, *[a.data for a in args], out=node.data)
                variadic = op.arity == _ops.VARIADIC
                for k, (arg, p) in enumerate(zip(args, partials)):
                    if arg.requires_grad and not zeros[0 if variadic else k]:
                        arg.grad += g * p
            if anomaly:
                _check_backward_anomaly(op, args, g)

    # ------------------------------------------------------------------ operators
    def __add__(self, other: ValueLike) -> Value:
        o = other if isinstance(other, Value) else _const(other)
        if _mode() is not _DEFAULT:
            return Value._node(self.data + o.data, _ADD, (self, o))
        v = _new(Value)
        v.data = self.data + o.data
        v.grad = 0.0
        v.label = ""
        v.param_name = None
        v.op = _ADD
        v.args = (self, o)
        v.requires_grad = self.requires_grad or o.requires_grad
        return v

    def __radd__(self, other: ValueLike) -> Value:
        o = _const(other)
        return Value._node(o.data + self.data, _ADD, (o, self))

    def __sub__(self, other: ValueLike) -> Value:
        o = other if isinstance(other, Value) else _const(other)
        if _mode() is not _DEFAULT:
            return Value._node(self.data - o.data, _SUB, (self, o))
        v = _new(Value)
        v.data = self.data - o.data
        v.grad = 0.0
        v.label = ""
        v.param_name = None
        v.op = _SUB
        v.args = (self, o)
        v.requires_grad = self.requires_grad or o.requires_grad
        return v

    def __rsub__(self, other: ValueLike) -> Value:
        o = _const(other)
        return Value._node(o.data - self.data, _SUB, (o, self))

    def __mul__(self, other: ValueLike) -> Value:
        o = other if isinstance(other, Value) else _const(other)
        if _mode() is not _DEFAULT:
            return Value._node(self.data * o.data, _MUL, (self, o))
        v = _new(Value)
        v.data = self.data * o.data
        v.grad = 0.0
        v.label = ""
        v.param_name = None
        v.op = _MUL
        v.args = (self, o)
        v.requires_grad = self.requires_grad or o.requires_grad
        return v

    def __rmul__(self, other: ValueLike) -> Value:
        o = _const(other)
        return Value._node(o.data * self.data, _MUL, (o, self))

    def __truediv__(self, other: ValueLike) -> Value:
        return apply(_ops.OPS_BY_NAME["div"], self, other)

    def __rtruediv__(self, other: ValueLike) -> Value:
        return apply(_ops.OPS_BY_NAME["div"], other, self)

    def __pow__(self, other: ValueLike) -> Value:
        if isinstance(other, Value):
            return self.pow_value(other)
        return self.pow(other)

    def __rpow__(self, other: ValueLike) -> Value:
        return apply(_ops.OPS_BY_NAME["pow_value"], other, self)

    def __mod__(self, other: ValueLike) -> Value:
        return self.mod(other)

    def __rmod__(self, other: ValueLike) -> Value:
        return apply(_ops.OPS_BY_NAME["mod"], other, self)

    def __neg__(self) -> Value:
        return Value._node(-self.data, _NEG, (self,))

    def __pos__(self) -> Value:
        return self

    def __abs__(self) -> Value:
        return self.abs()

    def __eq__(self, other: object) -> Value:  # type: ignore[override]
        return self.eq(other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> Value:  # type: ignore[override]
        return self.ne(other)  # type: ignore[arg-type]

    def __gt__(self, other: ValueLike) -> Value:
        return self.gt(other)

    def __lt__(self, other: ValueLike) -> Value:
        return self.lt(other)

    def __ge__(self, other: ValueLike) -> Value:
        return self.ge(other)

    def __le__(self, other: ValueLike) -> Value:
        return self.le(other)

    # ------------------------------------------------------------------ op methods
    # One line each; the table row holds everything else.
    def add(self, other: ValueLike) -> Value:
        """``self + other``."""
        return self + other

    def sub(self, other: ValueLike) -> Value:
        """``self - other``."""
        return self - other

    def mul(self, other: ValueLike) -> Value:
        """``self * other``."""
        return self * other

    def div(self, other: ValueLike) -> Value:
        """``self / other`` with IEEE semantics (``1/0 = inf``)."""
        return apply(_ops.OPS_BY_NAME["div"], self, other)

    def neg(self) -> Value:
        """``-self``."""
        return -self

    def pow(self, exponent: float) -> Value:
        """``self ** exponent`` for a constant exponent (never computes ``log``)."""
        c = _check_number(exponent, "exponent")
        return apply(_ops.OPS_BY_NAME["pow"], self, _const(c))

    def pow_value(self, exponent: ValueLike) -> Value:
        """``self ** exponent`` differentiable in both (``d/dy = x**y * log x``)."""
        return apply(_ops.OPS_BY_NAME["pow_value"], self, exponent)

    def mod(self, other: ValueLike) -> Value:
        """``self % other``, Python's floored modulo."""
        return apply(_ops.OPS_BY_NAME["mod"], self, other)

    def fmod(self, other: ValueLike) -> Value:
        """C ``fmod``: remainder with the sign of ``self``."""
        return apply(_ops.OPS_BY_NAME["fmod"], self, other)

    def copysign(self, other: ValueLike) -> Value:
        """``|self|`` with the sign of ``other``."""
        return apply(_ops.OPS_BY_NAME["copysign"], self, other)

    def reciprocal(self) -> Value:
        """``1 / self``."""
        return apply(_ops.OPS_BY_NAME["reciprocal"], self)

    def square(self) -> Value:
        """``self * self``."""
        return apply(_ops.OPS_BY_NAME["square"], self)

    def cube(self) -> Value:
        """``self ** 3``."""
        return apply(_ops.OPS_BY_NAME["cube"], self)

    def sqrt(self) -> Value:
        """Square root (nan below 0)."""
        return apply(_ops.OPS_BY_NAME["sqrt"], self)

    def abs(self) -> Value:
        """Absolute value; ``abs'(0) = 0``."""
        return apply(_ops.OPS_BY_NAME["abs"], self)

    def sign(self) -> Value:
        """-1, 0 or 1."""
        return apply(_ops.OPS_BY_NAME["sign"], self)

    def floor(self) -> Value:
        """Round down."""
        return apply(_ops.OPS_BY_NAME["floor"], self)

    def ceil(self) -> Value:
        """Round up."""
        return apply(_ops.OPS_BY_NAME["ceil"], self)

    def round(self) -> Value:
        """Round half away from zero."""
        return apply(_ops.OPS_BY_NAME["round"], self)

    def trunc(self) -> Value:
        """Round toward zero."""
        return apply(_ops.OPS_BY_NAME["trunc"], self)

    def min(self, other: ValueLike) -> Value:
        """The smaller of ``self`` and ``other``."""
        return apply(_ops.OPS_BY_NAME["min"], self, other)

    def max(self, other: ValueLike) -> Value:
        """The larger of ``self`` and ``other``."""
        return apply(_ops.OPS_BY_NAME["max"], self, other)

    def clamp(self, lo: ValueLike, hi: ValueLike) -> Value:
        """``self`` limited to ``[lo, hi]``; raises ``ValueError`` if ``lo > hi``."""
        return clamp(self, lo, hi)

    def relu(self) -> Value:
        """``max(self, 0)``."""
        return apply(_ops.OPS_BY_NAME["relu"], self)

    def tanh(self) -> Value:
        """Hyperbolic tangent."""
        return apply(_ops.OPS_BY_NAME["tanh"], self)

    def sigmoid(self) -> Value:
        """Logistic sigmoid."""
        return apply(_ops.OPS_BY_NAME["sigmoid"], self)

    def softplus(self) -> Value:
        """``log(1 + e**self)``, stable."""
        return apply(_ops.OPS_BY_NAME["softplus"], self)

    def sin(self) -> Value:
        """Sine."""
        return apply(_ops.OPS_BY_NAME["sin"], self)

    def cos(self) -> Value:
        """Cosine."""
        return apply(_ops.OPS_BY_NAME["cos"], self)

    def tan(self) -> Value:
        """Tangent."""
        return apply(_ops.OPS_BY_NAME["tan"], self)

    def asin(self) -> Value:
        """Arcsine."""
        return apply(_ops.OPS_BY_NAME["asin"], self)

    def acos(self) -> Value:
        """Arccosine."""
        return apply(_ops.OPS_BY_NAME["acos"], self)

    def atan(self) -> Value:
        """Arctangent."""
        return apply(_ops.OPS_BY_NAME["atan"], self)

    def atan2(self, x: ValueLike) -> Value:
        """``atan2(self, x)``: the angle of the point ``(x, self)``."""
        return apply(_ops.OPS_BY_NAME["atan2"], self, x)

    def exp(self) -> Value:
        """``e ** self``."""
        return apply(_ops.OPS_BY_NAME["exp"], self)

    def log(self) -> Value:
        """Natural logarithm."""
        return apply(_ops.OPS_BY_NAME["log"], self)

    def sinh(self) -> Value:
        """Hyperbolic sine."""
        return apply(_ops.OPS_BY_NAME["sinh"], self)

    def cosh(self) -> Value:
        """Hyperbolic cosine."""
        return apply(_ops.OPS_BY_NAME["cosh"], self)

    def log1p(self) -> Value:
        """``log(1 + self)``."""
        return apply(_ops.OPS_BY_NAME["log1p"], self)

    def expm1(self) -> Value:
        """``e ** self - 1``."""
        return apply(_ops.OPS_BY_NAME["expm1"], self)

    def eq(self, other: ValueLike) -> Value:
        """1.0 where ``self == other`` else 0.0."""
        return apply(_ops.OPS_BY_NAME["eq"], self, other)

    def ne(self, other: ValueLike) -> Value:
        """1.0 where ``self != other`` else 0.0."""
        return apply(_ops.OPS_BY_NAME["ne"], self, other)

    def gt(self, other: ValueLike) -> Value:
        """1.0 where ``self > other`` else 0.0."""
        return apply(_ops.OPS_BY_NAME["gt"], self, other)

    def lt(self, other: ValueLike) -> Value:
        """1.0 where ``self < other`` else 0.0."""
        return apply(_ops.OPS_BY_NAME["lt"], self, other)

    def ge(self, other: ValueLike) -> Value:
        """1.0 where ``self >= other`` else 0.0."""
        return apply(_ops.OPS_BY_NAME["ge"], self, other)

    def le(self, other: ValueLike) -> Value:
        """1.0 where ``self <= other`` else 0.0."""
        return apply(_ops.OPS_BY_NAME["le"], self, other)

    def stop_gradient(self) -> Value:
        """``self``'s value in the graph with no gradient flowing back (stays compiled)."""
        return apply(_ops.OPS_BY_NAME["stop_gradient"], self)

    def where(self, condition: ValueLike, other: ValueLike) -> Value:
        """``self`` where ``condition`` is non-zero, else ``other`` (as torch)."""
        return apply(_ops.OPS_BY_NAME["where"], condition, self, other)


_ADD = _ops.OPS_BY_NAME["add"]
_SUB = _ops.OPS_BY_NAME["sub"]
_MUL = _ops.OPS_BY_NAME["mul"]
_NEG = _ops.OPS_BY_NAME["neg"]
_CLAMP = _ops.OPS_BY_NAME["clamp"]


def _const(x: Any) -> Value:
    v = object.__new__(Value)
    v.data = _check_number(x, "operand")
    v.grad = 0.0
    v.label = ""
    v.requires_grad = False
    v.op = None
    v.args = ()
    v.param_name = None
    return v


def as_value(x: ValueLike, name: str = "x") -> Value:
    """Return ``x`` if it is a ``Value``, else a constant leaf holding it.

    Raises:
        TypeError: naming ``name`` if ``x`` is neither a ``Value`` nor a real number.
    """
    if isinstance(x, Value):
        return x
    v = _const(_check_number(x, name))
    return v


def apply(op: Op, *args: ValueLike) -> Value:
    """Apply a table op to ``Value``s or numbers, recording the graph.

    Example:
        >>> from scalar_autograd.ops import OPS_BY_NAME
        >>> apply(OPS_BY_NAME["atan2"], 1.0, 1.0).data == 0.7853981633974483
        True
    """
    if op.arity != _ops.VARIADIC and len(args) != op.arity:
        raise TypeError(f"{op.label} takes {op.arity} arguments; got {len(args)}")
    if len(args) == 1:
        x = args[0]
        if not isinstance(x, Value):
            x = _const_arg(x, op)
        return Value._node(op.eval(x.data), op, (x,))
    if len(args) == 2:
        a, b = args
        if not isinstance(a, Value):
            a = _const_arg(a, op)
        if not isinstance(b, Value):
            b = _const_arg(b, op)
        return Value._node(op.eval(a.data, b.data), op, (a, b))
    vals = tuple(a if isinstance(a, Value) else _const_arg(a, op) for a in args)
    return Value._node(op.eval(*[v.data for v in vals]), op, vals)


def _const_arg(x: Any, op: Op) -> Value:
    return _const(_check_number(x, f"argument of {op.function}"))


def clamp(x: ValueLike, lo: ValueLike, hi: ValueLike) -> Value:
    """``x`` limited to ``[lo, hi]`` (bounds may be Values and receive gradients).

    Raises:
        ValueError: if ``lo > hi``.

    Example:
        >>> clamp(5.0, 0.0, 1.0).data
        1.0
    """
    lo_v, hi_v = as_value(lo, "lo"), as_value(hi, "hi")
    if lo_v.data > hi_v.data:
        raise ValueError(f"clamp needs lo <= hi; got lo={lo_v.data!r}, hi={hi_v.data!r}")
    return apply(_CLAMP, x, lo_v, hi_v)


def _grad_order(root: Value) -> list[Value]:
    """The computed nodes the gradient of ``root`` flows through, arguments first.

    A node is included when it is computed by an op, requires grad and is reached from
    ``root`` along a path of arguments whose partial is not structurally zero
    (``Op.zero_partials``): the walk does not descend through comparisons, ``floor``,
    ``sign``, ``stop_gradient`` or ``where``'s condition, so nodes behind them (reached
    by no other path) never send ``0 * inf`` into the leaves. A node also reached by a
    non-zero path is visited. Leaves are left out: ``backward()`` adds to their ``grad``
    from their consumers and never walks them.

    The walk is iterative. The set holds the nodes themselves: hashing by identity
    (``object.__hash__``, distinct for distinct live objects, so ``Value.__eq__`` is
    never consulted) is several times faster than building ``id()`` ints. A ``None`` on
    the stack marks "all arguments of the node below are done". Arguments are pushed
    last-first and marked when popped, so the order is exactly that of a recursive
    depth-first search (and gradients are accumulated in the same order as before).
    """
    order: list[Value] = []
    visited: set[Value] = set()
    stack: list[Value | None] = [root]
    push, pop, mark, emit = stack.append, stack.pop, visited.add, order.append
    special = _ops.ZERO_PARTIAL_OPS_AND_NONE  # one test for the two rare cases
    while stack:
        node = pop()
        if node is None:
            emit(pop())  # type: ignore[arg-type]
            continue
        if node in visited:  # pushed twice before it was expanded
            continue
        mark(node)
        op = node.op
        if op in special:
            if op is None:  # a leaf: marked (so pushed once), never emitted
                continue
            push(node)
            push(None)
            args = node.args  # skip the arguments whose partial is structurally zero
            zeros = op.zero_partials
            for k in range(len(args) - 1, -1, -1):
                child = args[k]
                if not zeros[k] and child.requires_grad and child not in visited:
                    push(child)
            continue
        push(node)
        push(None)
        for child in reversed(node.args):
            if child.requires_grad and child not in visited:
                push(child)
    return order


def _check_backward_anomaly(op: Op, args: tuple[Value, ...], upstream: float) -> None:
    if not _isfinite(upstream):
        return
    for arg in args:
        if arg.requires_grad and not _isfinite(arg.grad):
            raise FloatingPointError(
                f"backward of {op.label} produced {arg.grad} in the gradient of "
                f"{_describe(arg)} from a finite upstream gradient"
            )


def _describe(v: Value) -> str:
    return f"{v.label}={v.data!r}" if v.label else f"{v.data!r}"


def _raise_anomaly(op: Op, args: tuple[Value, ...], data: float) -> None:
    if all(_isfinite(a.data) for a in args):
        inputs = ", ".join(_describe(a) for a in args)
        raise FloatingPointError(f"{op.label} produced {data} from finite inputs ({inputs})")


def zero_grad(values: Iterable[Value]) -> None:
    """Set ``grad`` to 0 on every value in ``values``.

    Example:
        >>> p = [Value(1.0, requires_grad=True)]
        >>> (p[0] * 3).backward(); zero_grad(p); p[0].grad
        0.0
    """
    if isinstance(values, Value) or not isinstance(values, Iterable):
        raise TypeError(f"values must be an iterable of Values; got {type(values).__name__}")
    items = list(values)
    for i, v in enumerate(items):  # check all first: nothing is half-updated
        if not isinstance(v, Value):
            raise TypeError(f"values[{i}] must be a Value; got {type(v).__name__}")
    for v in items:
        v.grad = 0.0
