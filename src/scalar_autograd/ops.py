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

:data:`OPS` is the built-in table. Users add rows with :func:`register_custom` (the
public spelling is ``sa.custom_op``): a *custom op* is written against the algebra like
the built-in rows, recorded once, and lowered as an expansion into built-in ops, so
every differentiator and backend handles it with no code of its own (see
:class:`CustomDefinition`). :data:`OPS_BY_NAME` indexes both.

Example:
    >>> from scalar_autograd.ops import OPS_BY_NAME, FLOATS
    >>> op = OPS_BY_NAME["tanh"]
    >>> out = op.eval(0.5)
    >>> op.partials(FLOATS, 0.5, out=out)[0] == 1.0 - out * out
    True
"""

from __future__ import annotations

import hashlib
import inspect
import keyword
import numbers
import operator
import re
import struct
import threading
from collections.abc import Callable, ItemsView, Iterator, KeysView, ValuesView
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
    label: str = ""
    """The name shown in DOT drawings and error messages (defaults to ``name``; a custom
    op's row shows the user's name, while ``name`` is its opcode)."""

    def __post_init__(self) -> None:
        if not self.function:
            object.__setattr__(self, "function", self.name)
        if self.method == "":
            object.__setattr__(self, "method", self.name)
        if not self.label:
            object.__setattr__(self, "label", self.name)

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

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """Custom ops an algebra was not built with (called only for missing attributes).

        A custom op's user name (``m.smoothmax``) resolves to its row for the number of
        arguments given; a custom row's opcode the algebra has no function for runs the
        row's expansion on this algebra (so every algebra knows every custom op).
        """
        if name.startswith("__"):
            raise AttributeError(name)
        row = _custom_row(name)
        if row is not None:
            expansion = row.lower.expansion
            assert expansion is not None  # custom rows are expansions

            def expanded(*args: Any) -> Any:
                return expansion(self, *args)

            return expanded
        definition = _CUSTOM.get(name)
        if definition is not None:
            def by_name(*args: Any) -> Any:
                return getattr(self, definition.row(len(args)).name)(*args)

            return by_name
        raise AttributeError(f"{self!r} has no op {name!r}")

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
    # as pow: 0 (not nan) for b = 0; pow_value, so d2/da db sees the exponent too
    d_a = m.where(m.eq(b, 0.0), 0.0, b * m.pow_value(a, b - 1.0))
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

class OpTable(dict[str, Op]):
    """The op table indexed by opcode: a ``dict`` that custom ops may grow at any time.

    Lookups are plain ``dict`` lookups. Iteration (``for name in table``, ``keys()``,
    ``values()``, ``items()``) walks a snapshot, so a thread registering a custom op
    never breaks another thread's walk. A missing opcode of a variadic custom op at a
    new number of arguments (from a program pickled in another process) is made on
    demand; any other missing opcode is a ``KeyError`` that says what to do.
    """

    def __missing__(self, name: str) -> Op:
        row = _on_demand(name) if isinstance(name, str) else None
        if row is None:
            raise KeyError(_missing_message(name))
        return row

    def snapshot(self) -> dict[str, Op]:
        """A plain ``dict`` copy, taken in one step (``list`` of a view runs no Python
        code, so no other thread can insert in the middle of it)."""
        return dict(list(dict.items(self)))

    def __iter__(self) -> Iterator[str]:
        return iter(list(dict.keys(self)))

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        return self.snapshot().keys()

    def values(self) -> ValuesView[Op]:  # type: ignore[override]
        return self.snapshot().values()

    def items(self) -> ItemsView[str, Op]:  # type: ignore[override]
        return self.snapshot().items()


OPS_BY_NAME: OpTable = OpTable({op.name: op for op in OPS})
"""The table indexed by op name (the IR opcode): the built-in rows and the rows of
registered custom ops (see :func:`register_custom`)."""

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


# --------------------------------------------------------------------------- custom ops
#
# A custom op is defined by two functions written against the algebra, like a built-in
# row: ``value(m, *args)`` and ``partials(m, *args, out)``. Both are *recorded* once per
# number of arguments, by running them on a recording algebra whose values refuse
# everything that is not an algebra op (Python branches, ``float()``, ``/``, ``**``,
# comparisons), into a small straight-line program. Every use replays the recording on
# the algebra at hand: on ``FLOATS`` it is the eager value (``eval``) and eager
# ``backward()``; on the IR it is the op's expansion (``lower``) and its derivative rule
# (``partials``), so the compiled code, the gradient programs and forward-over-reverse
# second derivatives all follow from the same record, and eager and compiled values
# come from the same sequence of ops.
#
# Each row's opcode is ``<name>.<n>.<digest>``: the digest (SHA-256) of the two
# recordings ties every program node, kernel-cache key and on-disk kernel to the exact
# definition it was built with. Changing a definition changes its opcodes, so nothing
# cached for the old one is ever reused for the new one, and a program pickled in a
# process with a different definition fails with a KeyError instead of running the
# wrong function.

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_RESERVED = frozenset({"name"})  # attributes every Algebra has
_PROBE_ARITIES = (1, 2, 3)       # where a variadic definition is recorded when registered
_DIGEST_CHARS = 16

_LOCK = threading.RLock()
"""Serialises registration and the recording of rows (re-entrant: recording a custom
op's functions may make rows of the custom ops they use)."""

_CUSTOM: dict[str, CustomDefinition] = {}
"""The registered custom ops by user name (the current definition of each name)."""


def _misuse(what: str, instead: str) -> TypeError:
    return TypeError(f"{what} on an algebra value cannot be recorded: a custom op's "
                     f"functions must compute with the algebra's ops only (use {instead})")


class _Traced:
    """A value of the recording algebra: an argument, or the result of a recorded op."""

    __slots__ = ("recorder", "ref")
    __hash__ = object.__hash__
    __array_ufunc__ = None  # numpy refuses it instead of trying methods

    def __init__(self, recorder: _Recorder, ref: int) -> None:
        self.recorder = recorder
        self.ref = ref

    def __repr__(self) -> str:
        return f"<recorded value %{self.ref}>"

    def __add__(self, other: Any) -> _Traced:
        return self.recorder.emit("add", (self, other))

    def __radd__(self, other: Any) -> _Traced:
        return self.recorder.emit("add", (other, self))

    def __sub__(self, other: Any) -> _Traced:
        return self.recorder.emit("sub", (self, other))

    def __rsub__(self, other: Any) -> _Traced:
        return self.recorder.emit("sub", (other, self))

    def __mul__(self, other: Any) -> _Traced:
        return self.recorder.emit("mul", (self, other))

    def __rmul__(self, other: Any) -> _Traced:
        return self.recorder.emit("mul", (other, self))

    def __neg__(self) -> _Traced:
        return self.recorder.emit("neg", (self,))

    def __pos__(self) -> _Traced:
        return self

    def __truediv__(self, other: Any) -> Any:
        raise _misuse("'/'", "m.div(a, b)")

    __rtruediv__ = __truediv__

    def __floordiv__(self, other: Any) -> Any:
        raise _misuse("'//'", "m.floor(m.div(a, b))")

    __rfloordiv__ = __floordiv__

    def __mod__(self, other: Any) -> Any:
        raise _misuse("'%'", "m.mod(a, b)")

    __rmod__ = __mod__

    def __pow__(self, other: Any) -> Any:
        raise _misuse("'**'", "m.pow(x, c) for a constant c, m.pow_value(x, y) otherwise")

    __rpow__ = __pow__

    def _compare(self, other: Any) -> Any:
        raise _misuse("a comparison", "m.lt, m.le, m.gt, m.ge, m.eq, m.ne, which give 1.0 "
                      "or 0.0, and m.where(c, a, b) to choose")

    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _compare  # type: ignore[assignment]

    def __bool__(self) -> bool:
        raise _misuse("a Python branch (if, and, or, not, min, max)", "m.where(c, a, b)")

    def _number(self) -> Any:
        raise _misuse("float(), int() or a math function", "the algebra's m.exp, m.log, ...")

    __float__ = __int__ = __index__ = __complex__ = _number

    def __abs__(self) -> Any:
        raise _misuse("abs()", "m.abs(x)")

    def _rounding(self, *args: Any) -> Any:
        raise _misuse("round(), math.floor, math.ceil or math.trunc",
                      "m.round, m.floor, m.ceil, m.trunc")

    __round__ = __trunc__ = __floor__ = __ceil__ = _rounding


class _Recorder:
    """Records the algebra calls of one function into nodes like a program's: inputs,
    constants (by bit pattern) and ops on earlier nodes, hash-consed."""

    def __init__(self, n_inputs: int) -> None:
        self.nodes: list[tuple[str, Any]] = [("input", i) for i in range(n_inputs)]
        self._index: dict[Any, int] = {}
        self.inputs = [_Traced(self, i) for i in range(n_inputs)]

    def ref(self, x: Any, what: str) -> int:
        """The node of ``x``: a recorded value of this recording or a real number."""
        if isinstance(x, _Traced):
            if x.recorder is not self:
                raise TypeError(f"{what} is a value recorded for another function (a value "
                                f"kept from an earlier call?)")
            return x.ref
        if isinstance(x, numbers.Real):
            try:
                value = float(x)
            except OverflowError:
                raise ValueError(f"{what} is too large for a float: {x!r:.60}") from None
            key = ("const", _pack(value))
            found = self._index.get(key)
            if found is None:
                found = self._index[key] = len(self.nodes)
                self.nodes.append(("const", value))
            return found
        raise TypeError(f"{what} is a {type(x).__name__} ({x!r:.60}); it must be one of "
                        f"the function's arguments, a result of the algebra's ops, or a real "
                        f"number")

    def emit(self, kind: str, args: tuple[Any, ...]) -> _Traced:
        refs = tuple([self.ref(a, f"argument {k + 1} of m.{kind}") for k, a in enumerate(args)])
        key = (kind, refs)
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self.nodes)
            self.nodes.append(key)
        return _Traced(self, found)

    def finish(self, outputs: list[int]) -> Recording:
        """The recording of ``outputs``, with the nodes no output needs dropped."""
        live = [False] * len(self.nodes)
        for o in outputs:
            live[o] = True
        for i in range(len(self.nodes) - 1, -1, -1):
            kind, payload = self.nodes[i]
            if kind == "input":
                live[i] = True
            elif live[i] and kind != "const":
                for a in payload:
                    live[a] = True
        renumber: dict[int, int] = {}
        kept: list[tuple[str, Any]] = []
        for i, (kind, payload) in enumerate(self.nodes):
            if live[i]:
                renumber[i] = len(kept)
                if kind not in ("input", "const"):
                    payload = tuple([renumber[a] for a in payload])
                kept.append((kind, payload))
        return Recording(tuple(kept), tuple([renumber[o] for o in outputs]))


class _RecordingAlgebra(Algebra):
    """The algebra whose ops record into a :class:`_Recorder`: every op of the table,
    built-in and custom, by opcode; custom ops also by user name."""

    def __init__(self, recorder: _Recorder) -> None:
        self._recorder = recorder
        super().__init__("recording", {op.name: self._make(op) for op in OPS_BY_NAME.values()})

    def _make(self, op: Op) -> Callable[..., _Traced]:
        recorder = self._recorder

        def record(*args: Any) -> _Traced:
            if op.arity == VARIADIC:
                if not args:
                    raise TypeError(f"m.{op.label} needs at least one argument")
            elif len(args) != op.arity:
                raise TypeError(f"m.{op.label} takes {op.arity} argument(s); got {len(args)}")
            return recorder.emit(op.name, args)

        return record

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        row = _custom_row(name)
        if row is not None:
            return self._make(row)
        definition = _CUSTOM.get(name)
        if definition is not None:
            return lambda *args: self._make(definition.row(len(args)))(*args)
        raise AttributeError(f"the algebra has no op m.{name}")


@dataclass(frozen=True)
class Recording:
    """A recorded function: nodes ``("input", i)``, ``("const", value)`` or
    ``(opcode, (earlier node ids...))``, and the ids of its results."""

    nodes: tuple[tuple[str, Any], ...]
    outputs: tuple[int, ...]

    def replay(self, m: Any, inputs: tuple[Any, ...]) -> list[Any]:
        """The results, computed by running every recorded op on algebra ``m``.

        Constants come back as Python floats, so a structurally zero partial stays the
        literal ``0.0`` the differentiators skip.
        """
        values: list[Any] = []
        append = values.append
        for kind, payload in self.nodes:
            if kind == "input":
                append(inputs[payload])
            elif kind == "const":
                append(payload)
            else:
                append(getattr(m, kind)(*[values[a] for a in payload]))
        return [values[o] for o in self.outputs]

    def update(self, h: Any) -> None:
        """Feed the canonical text of the recording to hash ``h``."""
        for kind, payload in self.nodes:
            if kind == "const":
                h.update(b"c" + _pack(payload))
            elif kind == "input":
                h.update(f"i{payload};".encode())
            else:
                h.update(f"{kind}({','.join(map(str, payload))});".encode())
        h.update(f"->{','.join(map(str, self.outputs))};".encode())


_pack = struct.Struct("<d").pack


def _describe(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _arity_of(value: Callable[..., Any], name: str) -> int:
    """The number of arguments of ``value(m, a, b, ...)``, or VARIADIC for
    ``value(m, *args)``."""
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        raise TypeError(f"value of custom op {name!r} must be a Python function "
                        f"value(m, a, b, ...); got {value!r:.80} (no signature)") from None
    positional = 0
    variadic = False
    for p in signature.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            positional += 1
        elif p.kind is p.VAR_POSITIONAL:
            variadic = True
        else:
            raise TypeError(f"value of custom op {name!r} must take the algebra and the "
                            f"op's arguments, value(m, a, b, ...) or value(m, *args), and "
                            f"nothing else; got parameter {p} in {_describe(value)}{signature}")
    if positional < 1:
        raise TypeError(f"value of custom op {name!r} must take the algebra m first; got "
                        f"{_describe(value)}{signature}")
    if variadic and positional != 1:
        raise TypeError(f"value of variadic custom op {name!r} must be value(m, *args); got "
                        f"{_describe(value)}{signature}")
    if not variadic and positional == 1:
        raise TypeError(f"value of custom op {name!r} must take at least one argument after "
                        f"m; got {_describe(value)}{signature}")
    return VARIADIC if variadic else positional - 1


def _call_recorded(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                   what: str) -> Any:
    try:
        return fn(*args, **kwargs)
    except (RecursionError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported
        raise TypeError(f"{what} could not be recorded: {type(exc).__name__}: {exc}") \
            from exc


class CustomDefinition:
    """A registered custom op: its functions, and its table rows by number of arguments.

    Made by :func:`register_custom`; ``sa.custom_op`` wraps it in a callable. A
    fixed-arity op has one row; a variadic one (``value(m, *args)``) gets a row for each
    number of arguments it is used with, recorded from the same functions on first use.

    Attributes:
        name: the user's name (shown in DOT drawings and errors).
        arity: the number of arguments, or :data:`VARIADIC`.
        value: the value function ``value(m, *args)``.
        partials: the derivative rule ``partials(m, *args, out)``.
        doc: the documentation line of its rows.
    """

    def __init__(self, name: str, value: Callable[..., Any], partials: Callable[..., Any],
                 doc: str) -> None:
        self.name = name
        self.arity = _arity_of(value, name)
        self.value = value
        self.partials = partials
        self.doc = doc
        self._recordings: dict[int, tuple[Recording, Recording, str]] = {}
        self._rows: dict[int, Op] = {}

    def __repr__(self) -> str:
        arity = "variadic" if self.arity == VARIADIC else str(self.arity)
        return f"CustomDefinition({self.name!r}, arity={arity})"

    def _check_count(self, n: int) -> None:
        if self.arity == VARIADIC:
            if n < 1:
                raise TypeError(f"{self.name} needs at least one argument; got none")
        elif n != self.arity:
            raise TypeError(f"{self.name} takes {self.arity} argument(s); got {n}")

    def recording(self, n: int) -> tuple[Recording, Recording, str]:
        """The value and partials recordings at ``n`` arguments, and their digest."""
        found = self._recordings.get(n)
        if found is not None:
            return found
        with _LOCK:
            found = self._recordings.get(n)
            if found is None:
                found = self._recordings[n] = self._record(n)
        return found

    def _record(self, n: int) -> tuple[Recording, Recording, str]:
        label = f"custom op {self.name!r}"
        rec = _Recorder(n)
        result = _call_recorded(self.value, (_RecordingAlgebra(rec), *rec.inputs), {},
                                f"the value function of {label} ({_describe(self.value)}) "
                                f"with {n} argument(s)")
        if isinstance(result, (tuple, list)):
            raise TypeError(f"the value function of {label} must return one algebra value; "
                            f"got a {type(result).__name__} of {len(result)}")
        value = rec.finish([rec.ref(result, f"the result of the value function of {label}")])
        rec = _Recorder(n + 1)
        try:
            inspect.signature(self.partials).bind(None, *rec.inputs[:n], out=None)
        except TypeError:
            raise TypeError(f"partials of {label} must take (m, <the {n} argument(s)>, out) "
                            f"with out by keyword, as partials(m, *args, out=out); got "
                            f"{_describe(self.partials)}{inspect.signature(self.partials)}") \
                from None
        except ValueError:  # no signature: found out by calling it
            pass
        got = _call_recorded(self.partials, (_RecordingAlgebra(rec), *rec.inputs[:n]),
                             {"out": rec.inputs[n]},
                             f"the partials function of {label} "
                             f"({_describe(self.partials)}) with {n} argument(s)")
        if not isinstance(got, (tuple, list)):
            raise TypeError(f"partials of {label} must return a tuple of {n} partial "
                            f"derivative(s), one per argument; got a {type(got).__name__} "
                            f"({got!r:.60})")
        if len(got) != n:
            raise ValueError(f"partials of {label} must return {n} partial derivative(s), "
                             f"one per argument; got {len(got)}")
        refs = [rec.ref(p, f"partials[{k}] of {label} (the derivative by argument {k + 1})")
                for k, p in enumerate(got)]
        partials = rec.finish(refs)
        h = hashlib.sha256(f"scalar_autograd custom op 1\0{self.name}\0{n}\0".encode())
        value.update(h)
        partials.update(h)
        return value, partials, h.hexdigest()[:_DIGEST_CHARS]

    def opcode(self, n: int) -> str:
        """The opcode of the row for ``n`` arguments (records it if needed)."""
        self._check_count(n)
        return f"{self.name}.{n}.{self.recording(n)[2]}"

    def row(self, n: int) -> Op:
        """The table row for ``n`` arguments, made (and added to the table) on first use.

        Raises:
            TypeError: ``n`` is not a number of arguments the op takes, or its functions
                cannot be recorded at ``n`` arguments.
        """
        found = self._rows.get(n)
        if found is not None:
            return found
        self._check_count(n)
        with _LOCK:
            found = self._rows.get(n)
            if found is None:
                found = self._make_row(n)
                _add_row(found)
                self._rows[n] = found
        return found

    def _make_row(self, n: int) -> Op:
        value, partials, digest = self.recording(n)
        name = f"{self.name}.{n}.{digest}"
        replay_value, replay_partials = value.replay, partials.replay
        label = self.name

        def expansion(m: Any, *args: Any) -> Any:
            if len(args) != n:
                raise TypeError(f"{label} takes {n} argument(s) here; got {len(args)}")
            return replay_value(m, args)[0]

        def evaluate(*args: float) -> float:
            return expansion(FLOATS, *args)  # type: ignore[no-any-return]

        def rule(m: Any, *args: Any, out: Any) -> tuple[Any, ...]:
            if len(args) != n:
                raise TypeError(f"partials of {label} take {n} argument(s) here; got "
                                f"{len(args)}")
            return tuple(replay_partials(m, (*args, out)))

        zeros = tuple(partials.nodes[o][0] == "const" and partials.nodes[o][1] == 0.0
                      for o in partials.outputs)
        return Op(name, n, evaluate, rule, _expand(expansion), ((-3.0, 3.0),) * n, self.doc,
                  function=self.name, method=None, category="custom", zero_partials=zeros,
                  label=self.name)

    def same_as(self, other: CustomDefinition) -> bool:
        """Whether ``other`` defines the same op: same arity, doc and recordings (at the
        probe arities, and at every arity this one has rows for)."""
        if self.arity != other.arity or self.doc != other.doc:
            return False
        counts = set(_PROBE_ARITIES) | set(self._rows) if self.arity == VARIADIC \
            else {self.arity}
        return all(self.recording(n)[2] == other.recording(n)[2] for n in sorted(counts))


def _add_row(row: Op) -> None:
    """Put a custom row in the table, the float algebra and the structural-zero sets."""
    global ZERO_PARTIAL_OPS, ZERO_PARTIAL_OPS_AND_NONE
    OPS_BY_NAME[row.name] = row
    setattr(FLOATS, row.name, row.eval)
    if any(row.zero_partials):
        ZERO_PARTIAL_OPS = ZERO_PARTIAL_OPS | {row}
        ZERO_PARTIAL_OPS_AND_NONE = ZERO_PARTIAL_OPS_AND_NONE | {row}


def _custom_row(opcode: str) -> Op | None:
    """The custom row with opcode ``opcode`` (made on demand for a variadic op), else None."""
    row = dict.get(OPS_BY_NAME, opcode)
    if row is None:
        try:
            row = OPS_BY_NAME[opcode]
        except KeyError:
            return None
    return row if row.category == "custom" else None


def _missing_message(opcode: str) -> str:
    """Why ``opcode`` is not in the table; a variadic custom row is made on demand
    (:meth:`OpTable.__missing__` returns it through :func:`_on_demand`)."""
    parts = opcode.split(".") if isinstance(opcode, str) else []
    if len(parts) != 3 or not _NAME.match(parts[0]) or not parts[1].isdigit():
        return f"no op {opcode!r} in the op table"
    name = parts[0]
    definition = _CUSTOM.get(name)
    if definition is None:
        return (f"no op {opcode!r} in the op table: it is a row of the custom op {name!r}, "
                f"which is not registered in this process; register it (sa.custom_op) "
                f"before running a program that uses it, e.g. at import of the module "
                f"that defines it")
    return (f"no op {opcode!r} in the op table: the custom op {name!r} registered in this "
            f"process has a different definition from the one this program was built with")


def _on_demand(opcode: str) -> Op | None:
    """The row ``opcode`` of a registered variadic custom op at a new number of
    arguments (a program made in another process), if its definition is the same."""
    parts = opcode.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    definition = _CUSTOM.get(parts[0])
    n = int(parts[1])
    if definition is None or definition.arity != VARIADIC or not 1 <= n <= 1_000_000:
        return None
    if definition.opcode(n) != opcode:
        return None
    return definition.row(n)


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__} {name!r:.60}")
    if not _NAME.match(name) or keyword.iskeyword(name) or name in _RESERVED:
        raise ValueError(f"name must be an identifier of ASCII letters, digits and '_', "
                         f"starting with a letter, at most 64 characters, not a Python "
                         f"keyword or 'name'; got {name!r:.80}")
    builtin = {op.name for op in OPS} | {op.function for op in OPS}
    if name in builtin:
        raise ValueError(f"name {name!r} is a built-in op; choose another name for the "
                         f"custom op")
    return name


def register_custom(name: str, value: Callable[..., Any], partials: Callable[..., Any], *,
                    doc: str | None = None, replace: bool = False) -> CustomDefinition:
    """Register a custom op (``sa.custom_op`` is the public spelling).

    Args:
        name: the op's name: an ASCII identifier starting with a letter, not a built-in
            op's name.
        value: ``value(m, a, b, ...)`` or ``value(m, *args)`` computing the result with
            the algebra ``m``'s ops (``m.exp``, ``m.div``, ``m.where``, ...) and ``+ - *``.
        partials: ``partials(m, a, b, ..., out)``: one partial derivative per argument,
            written the same way (``out`` is the op's result).
        doc: the documentation line of the op (default: ``value``'s docstring).
        replace: allow a different definition under a name already registered.

    Returns:
        The definition. Registering an identical definition again (same arity, doc and
        recorded functions) returns the one already registered.

    Raises:
        TypeError: a function of the wrong kind, or one that cannot be recorded (it
            leaves the algebra, returns a non-algebra value, has the wrong signature).
        ValueError: a bad name, the name of another definition (without ``replace``), or
            partials of the wrong length.
    """
    name = _check_name(name)
    if not callable(value):
        raise TypeError(f"value must be a function value(m, *args); got "
                        f"{type(value).__name__} {value!r:.60}")
    if not callable(partials):
        raise TypeError(f"partials must be a function partials(m, *args, out); got "
                        f"{type(partials).__name__} {partials!r:.60}")
    if doc is None:
        doc = (inspect.getdoc(value) or "").split("\n\n")[0].replace("\n", " ")
        doc = doc or f"custom op {name}"
    if not isinstance(doc, str):
        raise TypeError(f"doc must be a str; got {type(doc).__name__} {doc!r:.60}")
    if not isinstance(replace, bool):
        raise TypeError(f"replace must be a bool; got {type(replace).__name__} {replace!r}")
    definition = CustomDefinition(name, value, partials, doc)
    with _LOCK:
        counts = _PROBE_ARITIES if definition.arity == VARIADIC else (definition.arity,)
        for n in counts:
            definition.recording(n)  # records (and checks) the functions
        existing = _CUSTOM.get(name)
        if existing is not None:
            if existing.same_as(definition):
                return existing
            if not replace:
                raise ValueError(
                    f"name {name!r} is already a custom op with a different definition "
                    f"(arity, doc or functions); choose another name, or pass replace=True "
                    f"(values built with the old definition keep it)")
        if definition.arity != VARIADIC:
            definition.row(definition.arity)
        _CUSTOM[name] = definition
    return definition


def custom_definition(name: str) -> CustomDefinition:
    """The current definition registered under ``name``.

    Raises:
        KeyError: no custom op has that name.
    """
    found = _CUSTOM.get(name)
    if found is None:
        raise KeyError(f"no custom op named {name!r}")
    return found


def _forget_custom(names: list[str]) -> None:
    """Remove custom ops and their rows (for tests that must leave the table as found;
    values built with them stop compiling)."""
    global ZERO_PARTIAL_OPS, ZERO_PARTIAL_OPS_AND_NONE
    with _LOCK:
        for name in names:
            definition = _CUSTOM.pop(name, None)
            prefix = f"{name}."
            for opcode, row in OPS_BY_NAME.items():
                if row.category == "custom" and opcode.startswith(prefix):
                    del OPS_BY_NAME[opcode]
                    if opcode in FLOATS.__dict__:
                        delattr(FLOATS, opcode)
            if definition is not None:
                definition._rows.clear()
        live = set(dict.values(OPS_BY_NAME))
        ZERO_PARTIAL_OPS = frozenset(op for op in ZERO_PARTIAL_OPS if op in live)
        ZERO_PARTIAL_OPS_AND_NONE = frozenset({*ZERO_PARTIAL_OPS, None})
