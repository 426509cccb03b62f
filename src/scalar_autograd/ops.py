"""The op table: every operation defined exactly once (value, derivative, lowering, docs).

Each :class:`Op` row holds everything the library knows about one operation:

* ``eval``: float -> float with IEEE-754 double semantics; total (never raises).
* ``partials(m, *args, out)``: the partial derivatives of the result with respect to
  each argument, written against an *algebra* ``m``. The same rule serves floats (eager
  ``backward()``), the JIT's IR builder (gradient code is more IR) and ``Value`` (higher
  order derivatives). Rules use ``+ - *`` and unary ``-`` directly and everything else
  through ``m`` (``m.div``, ``m.sqrt``, ...).
* ``lower``: how a code generator emits it: an infix symbol, a libm call by name, or an
  expansion into other ops (written against an algebra too, so ``eval`` of an expanded
  op *is* its expansion run on floats and the two can never disagree).
* ``selects``: the partials are 0/1 indicators and the backward selects the incoming
  gradient instead of multiplying it (``where``, ``relu``, ``min``, ``max``, ``clamp``);
  see :func:`select_contribution`.
* ``domain``: per-argument sampling intervals for generated tests.
* ``doc``: the formula, the derivative and the convention at kinks, for the docs table.

Example:
    >>> from scalar_autograd.ops import OPS_BY_NAME, FLOATS
    >>> op = OPS_BY_NAME["tanh"]
    >>> out = op.eval(0.5)
    >>> op.partials(FLOATS, 0.5, out=out)[0] == 1.0 - out * out
    True
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from scalar_autograd import numerics as nx

VARIADIC = -1
"""Arity of n-ary ops (``sum``, ``mean``)."""

LowerKind = Literal["infix", "call", "expand"]


@dataclass(frozen=True)
class Lowering:
    """How a backend emits an op.

    ``infix``: one of the few symbols every backend knows (``+ - * / neg``, the six
    comparisons ``== != > < >= <=`` and ``select``); ``+`` with more than two arguments
    is a left fold. ``call``: a libm function by its C name (``sin``, ``pow``, ...).
    ``expand``: a function ``(m, *args) -> result`` rewriting the op into other ops.
    """

    kind: LowerKind
    symbol: str = ""
    expansion: Callable[..., Any] | None = None


def _infix(symbol: str) -> Lowering:
    return Lowering("infix", symbol=symbol)


def _call(name: str) -> Lowering:
    return Lowering("call", symbol=name)


def _expand(fn: Callable[..., Any]) -> Lowering:
    return Lowering("expand", expansion=fn)


@dataclass(frozen=True, eq=False)
class Op:
    """One row of the op table. See the module docstring for the meaning of each field."""

    name: str
    arity: int
    eval: Callable[..., float]
    partials: Callable[..., tuple[Any, ...]]
    lower: Lowering
    domain: tuple[tuple[float, float], ...]
    doc: str
    function: str = ""
    """Name of the public module-level function (defaults to ``name``)."""
    method: str | None = ""
    """Name of the ``Value`` method (defaults to ``name``; ``None`` for n-ary ops)."""
    category: str = "arithmetic"
    selects: bool = False
    """The partials are 0/1 indicators (0.5 at a tie) and the backward *selects* the
    incoming gradient: the contribution through an argument whose partial is 0 is exactly
    0, even if the incoming gradient is inf or nan (``where``'s branches, ``relu``,
    ``min``, ``max``, ``clamp``). So ``sqrt(relu(x))`` has derivative 0 at ``x = -1``, as
    in PyTorch and JAX, not ``0 * inf = nan``. Every differentiator honours it the same
    way: :func:`select_contribution`."""
    zero_partials: tuple[bool, ...] = ()
    """Per argument: is the partial the literal 0.0 whatever the inputs? (Filled in
    below by probing the rule; such arguments receive no gradient contribution, and eager
    ``backward()`` does not even walk into them.)"""

    def __post_init__(self) -> None:
        if not self.function:
            object.__setattr__(self, "function", self.name)
        if self.method == "":
            object.__setattr__(self, "method", self.name)

    def __repr__(self) -> str:
        return f"Op({self.name!r})"


class Algebra:
    """A namespace with one attribute per op name: what ``m.sin(x)`` means.

    ``FLOATS`` computes numbers; the JIT's IR builder and ``Value`` provide others.
    """

    def __init__(self, name: str, functions: dict[str, Callable[..., Any]]) -> None:
        self.name = name
        for key, fn in functions.items():
            setattr(self, key, fn)

    def __repr__(self) -> str:
        return f"<Algebra {self.name}>"


def select_contribution(m: Any, g: Any, p: Any) -> Any:
    """The contribution ``g * p`` through an argument of a ``selects`` op, in algebra ``m``.

    ``p`` is an indicator partial (0, 1, or 0.5 at a tie): where it is 0 the
    contribution is exactly 0, even for an inf or nan incoming gradient ``g``; elsewhere
    it is ``g * p``. In the IR this is ``where(p, g*p, 0.0)``, which the builder folds
    when ``p`` is a constant; on floats it is ``g * p if p != 0 else 0.0`` (eager
    ``backward()`` inlines that). Both give the same bits.

    Example:
        >>> select_contribution(FLOATS, float("inf"), 0.0), select_contribution(FLOATS, 3.0, 0.5)
        (0.0, 1.5)
    """
    return m.where(p, g * p, 0.0)


NAN = nx.NAN

# --------------------------------------------------------------------------- expansions
# Written against an algebra; ``eval`` of these ops is the expansion run on floats.


def _x_mod(m: Any, a: Any, b: Any) -> Any:
    # CPython's float_rem: r = fmod(a, b); fix the sign to follow b; a zero keeps b's sign.
    r = m.fmod(a, b)
    fixed = m.where(m.ne(m.lt(r, 0.0), m.lt(b, 0.0)), r + b, r)
    return m.where(m.ne(r, 0.0), fixed, m.copysign(0.0, b))


def _x_sign(m: Any, x: Any) -> Any:
    return m.where(m.gt(x, 0.0), 1.0, m.where(m.lt(x, 0.0), -1.0, x))


def _x_min(m: Any, a: Any, b: Any) -> Any:
    return m.where(m.lt(a, b), a, m.where(m.le(b, a), b, NAN))


def _x_max(m: Any, a: Any, b: Any) -> Any:
    return m.where(m.gt(a, b), a, m.where(m.ge(b, a), b, NAN))


def _x_clamp(m: Any, x: Any, lo: Any, hi: Any) -> Any:
    return m.min(m.max(x, lo), hi)  # a nan anywhere gives nan (as torch.clamp)


def _x_relu(m: Any, x: Any) -> Any:
    return m.where(m.le(x, 0.0), 0.0, x)


def _x_sigmoid(m: Any, x: Any) -> Any:
    e = m.exp(-m.abs(x))  # in (0, 1]: never overflows
    return m.where(m.ge(x, 0.0), m.div(1.0, 1.0 + e), m.div(e, 1.0 + e))


def _x_softplus(m: Any, x: Any) -> Any:
    return m.where(m.gt(x, 0.0), x, 0.0) + m.log1p(m.exp(-m.abs(x)))


def _x_reciprocal(m: Any, x: Any) -> Any:
    return m.div(1.0, x)


def _x_square(m: Any, x: Any) -> Any:
    return x * x


def _x_cube(m: Any, x: Any) -> Any:
    return x * x * x


def _x_stop_gradient(m: Any, x: Any) -> Any:
    return x


def _x_mean(m: Any, *args: Any) -> Any:
    return m.div(m.sum(*args), float(len(args)))


def _from_expansion(fn: Callable[..., Any]) -> Callable[..., float]:
    def evaluate(*args: float) -> float:
        return fn(FLOATS, *args)  # type: ignore[no-any-return]

    evaluate.__name__ = fn.__name__.replace("_x_", "")
    return evaluate


# --------------------------------------------------------------------------- float evals


def _sum(*args: float) -> float:
    total = args[0]
    for a in args[1:]:
        total = total + a
    return total


def _cmp(fn: Callable[[float, float], bool]) -> Callable[[float, float], float]:
    def compare(a: float, b: float) -> float:
        return 1.0 if fn(a, b) else 0.0

    compare.__name__ = fn.__name__
    return compare


def _where(c: float, a: float, b: float) -> float:
    return a if c != 0.0 else b


def _zero(n: int) -> Callable[..., tuple[float, ...]]:
    zeros = (0.0,) * n

    def partials(m: Any, *args: Any, out: Any) -> tuple[float, ...]:
        return zeros

    return partials


# --------------------------------------------------------------------------- derivative rules


def _d_min(m: Any, a: Any, b: Any, out: Any) -> tuple[Any, Any]:
    tie = m.mul(m.eq(a, b), 0.5)
    return m.lt(a, b) + tie, m.lt(b, a) + tie


def _d_max(m: Any, a: Any, b: Any, out: Any) -> tuple[Any, Any]:
    tie = m.mul(m.eq(a, b), 0.5)
    return m.gt(a, b) + tie, m.gt(b, a) + tie


def _d_clamp(m: Any, x: Any, lo: Any, hi: Any, out: Any) -> tuple[Any, Any, Any]:
    # The partials of the compiled expansion min(max(x, lo), hi), bounds inclusive for x:
    # with lo > hi the result is hi whatever x and lo are.
    return (m.mul(m.ge(x, lo), m.le(x, hi)),
            m.mul(m.lt(x, lo), m.le(lo, hi)),
            m.gt(m.max(x, lo), hi))


def _d_pow(m: Any, x: Any, c: Any, out: Any) -> tuple[Any, Any]:
    # c * x^(c-1) is 0 * inf = nan at x = 0, c = 0; x^0 is constant, so its derivative is 0
    # (PyTorch's convention). c is usually a constant, and the IR folds the select away.
    return m.where(m.eq(c, 0.0), 0.0, c * m.pow(x, c - 1.0)), 0.0


def _d_atan2(m: Any, y: Any, x: Any, out: Any) -> tuple[Any, Any]:
    r2 = x * x + y * y
    return m.div(x, r2), -m.div(y, r2)


def _d_pow_value(m: Any, a: Any, b: Any, out: Any) -> tuple[Any, Any]:
    log_a = m.where(m.eq(a, 0.0), 0.0, m.log(a))  # JAX's convention: d/db at a = 0 is 0
    d_a = m.where(m.eq(b, 0.0), 0.0, b * m.pow(a, b - 1.0))  # as pow: 0 (not nan) for b = 0
    return d_a, out * log_a


def _d_sum(m: Any, *args: Any, out: Any) -> tuple[Any, ...]:
    return (1.0,) * len(args)


def _d_mean(m: Any, *args: Any, out: Any) -> tuple[Any, ...]:
    return (1.0 / len(args),) * len(args)


_R = (-3.0, 3.0)  # the default sampling interval
_POS = (0.1, 4.0)

# --------------------------------------------------------------------------- the table

OPS: tuple[Op, ...] = (
    # arithmetic
    Op("add", 2, operator.add, lambda m, a, b, out: (1.0, 1.0), _infix("+"), (_R, _R),
       "a + b; d/da = 1, d/db = 1"),
    Op("sub", 2, operator.sub, lambda m, a, b, out: (1.0, -1.0), _infix("-"), (_R, _R),
       "a - b; d/da = 1, d/db = -1"),
    Op("mul", 2, operator.mul, lambda m, a, b, out: (b, a), _infix("*"), (_R, _R),
       "a * b; d/da = b, d/db = a"),
    Op("div", 2, nx.div, lambda m, a, b, out: (m.div(1.0, b), -m.div(out, b)),
       _infix("/"), (_R, (0.5, 3.0)),
       "a / b (IEEE: 1/0 = inf, 0/0 = nan); d/da = 1/b, d/db = -a/b^2"),
    Op("neg", 1, operator.neg, lambda m, x, out: (-1.0,), _infix("neg"), (_R,),
       "-x; d/dx = -1"),
    Op("pow", 2, nx.pow, _d_pow, _call("pow"), (_POS, _R),
       "x ** c, c a constant (never computes log x); d/dx = c*x^(c-1), 0 for c = 0 (also "
       "at x = 0); C99 pow at x <= 0"),
    Op("pow_value", 2, nx.pow, _d_pow_value, _call("pow"), (_POS, _R),
       "x ** y, y a Value; d/dx = y*x^(y-1) (0 for y = 0), d/dy = x^y*log x (taken as 0 at "
       "x = 0, as JAX)"),
    Op("mod", 2, _from_expansion(_x_mod), lambda m, a, b, out: (1.0, -m.floor(m.div(a, b))),
       _expand(_x_mod), ((-5.0, 5.0), (0.5, 3.0)),
       "a % b, Python's floored modulo (sign of b; nan for b = 0); d/da = 1, "
       "d/db = -floor(a/b)"),
    Op("reciprocal", 1, _from_expansion(_x_reciprocal), lambda m, x, out: (-(out * out),),
       _expand(_x_reciprocal), ((0.2, 4.0),), "1 / x; d/dx = -1/x^2"),
    Op("square", 1, _from_expansion(_x_square), lambda m, x, out: (2.0 * x,),
       _expand(_x_square), (_R,), "x * x; d/dx = 2x"),
    Op("cube", 1, _from_expansion(_x_cube), lambda m, x, out: (3.0 * (x * x),),
       _expand(_x_cube), (_R,), "x * x * x; d/dx = 3x^2"),
    Op("sqrt", 1, nx.sqrt, lambda m, x, out: (m.div(0.5, out),), _call("sqrt"),
       (_POS,), "sqrt x (nan for x < 0); d/dx = 0.5/sqrt x (inf at 0)"),
    Op("abs", 1, nx.fabs, lambda m, x, out: (m.sign(x),), _call("fabs"), (_R,),
       "|x|; d/dx = sign x, abs'(0) = 0 (PyTorch, JAX)"),
    Op("sign", 1, _from_expansion(_x_sign), _zero(1), _expand(_x_sign), (_R,),
       "-1, 0 or 1 (keeps the sign of zero, nan stays nan); derivative 0"),
    Op("floor", 1, nx.floor, _zero(1), _call("floor"), (_R,),
       "largest integer <= x; derivative 0 (also at integers)"),
    Op("ceil", 1, nx.ceil, _zero(1), _call("ceil"), (_R,),
       "smallest integer >= x; derivative 0 (also at integers)"),
    Op("round", 1, nx.round, _zero(1), _call("round"), (_R,),
       "nearest integer, half away from zero (C round, not Python's); derivative 0"),
    Op("trunc", 1, nx.trunc, _zero(1), _call("trunc"), (_R,),
       "integer part, toward zero; derivative 0"),
    Op("min", 2, _from_expansion(_x_min), _d_min, _expand(_x_min), (_R, _R),
       "smaller of a, b (nan if either is nan); d/da = 1 if a < b, 0.5 each at a tie; "
       "selects the gradient", function="minimum", selects=True),
    Op("max", 2, _from_expansion(_x_max), _d_max, _expand(_x_max), (_R, _R),
       "larger of a, b (nan if either is nan); d/da = 1 if a > b, 0.5 each at a tie; "
       "selects the gradient", function="maximum", selects=True),
    Op("clamp", 3, _from_expansion(_x_clamp), _d_clamp, _expand(_x_clamp),
       (_R, (-4.0, -3.5), (3.5, 4.0)),
       "min(max(x, lo), hi) (nan if any is nan; hi when lo > hi); d/dx = 1 for "
       "lo <= x <= hi (bounds inclusive, as PyTorch), d/dlo = 1 for x < lo <= hi, "
       "d/dhi = 1 for max(x, lo) > hi; selects the gradient", selects=True),
    # activations
    Op("relu", 1, _from_expansion(_x_relu), lambda m, x, out: (m.gt(x, 0.0),),
       _expand(_x_relu), (_R,),
       "max(x, 0) (nan stays nan); d/dx = 1 for x > 0, relu'(0) = 0; selects the gradient",
       category="activation", selects=True),
    Op("tanh", 1, nx.tanh, lambda m, x, out: (1.0 - out * out,), _call("tanh"), (_R,),
       "tanh x; d/dx = 1 - tanh^2 x", category="activation"),
    Op("sigmoid", 1, _from_expansion(_x_sigmoid), lambda m, x, out: (out * (1.0 - out),),
       _expand(_x_sigmoid), ((-6.0, 6.0),),
       "1 / (1 + e^-x), never overflows; d/dx = s(1 - s)", category="activation"),
    Op("softplus", 1, _from_expansion(_x_softplus), lambda m, x, out: (m.sigmoid(x),),
       _expand(_x_softplus), ((-6.0, 6.0),),
       "log(1 + e^x) as max(x, 0) + log1p(e^-|x|), stable for large |x|; d/dx = sigmoid x",
       category="activation"),
    # trigonometry
    Op("sin", 1, nx.sin, lambda m, x, out: (m.cos(x),), _call("sin"), (_R,),
       "sin x (nan at +-inf); d/dx = cos x", category="trigonometric"),
    Op("cos", 1, nx.cos, lambda m, x, out: (-m.sin(x),), _call("cos"), (_R,),
       "cos x (nan at +-inf); d/dx = -sin x", category="trigonometric"),
    Op("tan", 1, nx.tan, lambda m, x, out: (1.0 + out * out,), _call("tan"),
       ((-1.4, 1.4),), "tan x; d/dx = 1 + tan^2 x", category="trigonometric"),
    Op("asin", 1, nx.asin, lambda m, x, out: (m.div(1.0, m.sqrt(1.0 - x * x)),),
       _call("asin"), ((-0.95, 0.95),), "arcsin x (nan outside [-1, 1]); d/dx = 1/sqrt(1-x^2)",
       category="trigonometric"),
    Op("acos", 1, nx.acos, lambda m, x, out: (-m.div(1.0, m.sqrt(1.0 - x * x)),),
       _call("acos"), ((-0.95, 0.95),),
       "arccos x (nan outside [-1, 1]); d/dx = -1/sqrt(1-x^2)", category="trigonometric"),
    Op("atan", 1, nx.atan, lambda m, x, out: (m.div(1.0, 1.0 + x * x),), _call("atan"),
       (_R,), "arctan x; d/dx = 1/(1+x^2)", category="trigonometric"),
    Op("atan2", 2, nx.atan2, _d_atan2, _call("atan2"), (_R, (0.2, 3.0)),
       "angle of (x, y), args (y, x) as C; d/dy = x/(x^2+y^2), d/dx = -y/(x^2+y^2)",
       category="trigonometric"),
    # exponentials
    Op("exp", 1, nx.exp, lambda m, x, out: (out,), _call("exp"), (_R,),
       "e^x (inf on overflow); d/dx = e^x", category="exponential"),
    Op("log", 1, nx.log, lambda m, x, out: (m.div(1.0, x),), _call("log"), (_POS,),
       "natural log (log 0 = -inf, nan for x < 0); d/dx = 1/x", category="exponential"),
    Op("sinh", 1, nx.sinh, lambda m, x, out: (m.cosh(x),), _call("sinh"), (_R,),
       "sinh x; d/dx = cosh x", category="exponential"),
    Op("cosh", 1, nx.cosh, lambda m, x, out: (m.sinh(x),), _call("cosh"), (_R,),
       "cosh x; d/dx = sinh x", category="exponential"),
    Op("log1p", 1, nx.log1p, lambda m, x, out: (m.div(1.0, 1.0 + x),), _call("log1p"),
       ((-0.9, 3.0),), "log(1 + x), accurate near 0; d/dx = 1/(1+x)", category="exponential"),
    Op("expm1", 1, nx.expm1, lambda m, x, out: (out + 1.0,), _call("expm1"), (_R,),
       "e^x - 1, accurate near 0; d/dx = e^x", category="exponential"),
    # comparisons and selection
    Op("eq", 2, _cmp(operator.eq), _zero(2), _infix("=="), (_R, _R),
       "1.0 if a == b else 0.0; derivative 0", category="comparison"),
    Op("ne", 2, _cmp(operator.ne), _zero(2), _infix("!="), (_R, _R),
       "1.0 if a != b else 0.0 (nan != nan); derivative 0", category="comparison"),
    Op("gt", 2, _cmp(operator.gt), _zero(2), _infix(">"), (_R, _R),
       "1.0 if a > b else 0.0; derivative 0", category="comparison"),
    Op("lt", 2, _cmp(operator.lt), _zero(2), _infix("<"), (_R, _R),
       "1.0 if a < b else 0.0; derivative 0", category="comparison"),
    Op("ge", 2, _cmp(operator.ge), _zero(2), _infix(">="), (_R, _R),
       "1.0 if a >= b else 0.0; derivative 0", category="comparison"),
    Op("le", 2, _cmp(operator.le), _zero(2), _infix("<="), (_R, _R),
       "1.0 if a <= b else 0.0; derivative 0", category="comparison"),
    Op("where", 3, _where, lambda m, c, a, b, out: (0.0, m.ne(c, 0.0), m.eq(c, 0.0)),
       _infix("select"), ((-1.0, 1.0), _R, _R),
       "a if cond != 0 else b (nan counts as true); the gradient is selected into the "
       "taken branch (the other gets exactly 0, even from an inf or nan gradient)",
       category="comparison", selects=True),
    # reductions
    Op("sum", VARIADIC, _sum, _d_sum, _infix("+"), (_R,),
       "a0 + a1 + ... left to right, one node; sum of nothing is 0; d/dai = 1",
       method=None, category="reduction"),
    Op("mean", VARIADIC, _from_expansion(_x_mean), _d_mean, _expand(_x_mean), (_R,),
       "sum / n, one node (n >= 1); d/dai = 1/n", method=None, category="reduction"),
    Op("stop_gradient", 1, _from_expansion(_x_stop_gradient), _zero(1),
       _expand(_x_stop_gradient), (_R,),
       "x itself; no gradient flows through it (JAX's stop_gradient, torch's detach)"),
    # C functions the expansions need; public too
    Op("fmod", 2, nx.fmod, lambda m, a, b, out: (1.0, -m.trunc(m.div(a, b))), _call("fmod"),
       ((-5.0, 5.0), (0.5, 3.0)), "C fmod (sign of a); d/da = 1, d/db = -trunc(a/b)"),
    Op("copysign", 2, nx.copysign,
       lambda m, a, b, out: (m.copysign(1.0, a) * m.copysign(1.0, b), 0.0),
       _call("copysign"), (_R, _R),
       "|a| with the sign of b (a nan b counts as positive); d/da = sign(a)*sign(b), "
       "d/db = 0"),
)

OPS_BY_NAME: dict[str, Op] = {op.name: op for op in OPS}
"""The table indexed by op name (the IR opcode)."""

FLOATS = Algebra("floats", {op.name: op.eval for op in OPS})
"""The float algebra: ``FLOATS.sin(0.5)`` computes a number."""


def op(name: str) -> Op:
    """Return the table row called ``name``.

    Raises:
        KeyError: if there is no such op.
    """
    return OPS_BY_NAME[name]


# --------------------------------------------------------------------------- structural zeros


class _Symbol:
    """An opaque operand: arithmetic on it yields another symbol."""

    def _any(self, *args: Any) -> _Symbol:
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __neg__ = _any


def _structural_zeros(op: Op) -> tuple[bool, ...]:
    """Which partials are the literal 0.0 whatever the arguments (probed symbolically)."""
    symbolic = Algebra("symbols", {name: (lambda *a: _Symbol()) for name in OPS_BY_NAME})
    n = 3 if op.arity == VARIADIC else op.arity
    partials = op.partials(symbolic, *[_Symbol() for _ in range(n)], out=_Symbol())
    return tuple(isinstance(p, float) and p == 0.0 for p in partials)


for _op in OPS:
    object.__setattr__(_op, "zero_partials", _structural_zeros(_op))
del _op

ZERO_PARTIAL_OPS: frozenset[Op] = frozenset(op for op in OPS if any(op.zero_partials))
"""The ops with at least one structurally zero partial (comparisons, step functions,
``stop_gradient``, ``where``, ``pow``, ``copysign``, ...): eager ``backward()`` does not
walk into those arguments."""

ZERO_PARTIAL_OPS_AND_NONE: frozenset[Op | None] = frozenset({*ZERO_PARTIAL_OPS, None})
""":data:`ZERO_PARTIAL_OPS` and ``None`` (a leaf's op), so that eager ``backward()``'s
walk needs one set lookup per node for its two rare cases."""
