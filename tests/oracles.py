"""Independent mpmath oracles, one per op name of the op table.

Each oracle takes ``mpmath.mpf`` arguments and returns the exact (high-precision) result
of the mathematical function the op stands for, written from its textbook definition and
never from ``scalar_autograd`` code, so that a wrong table row cannot agree with itself.
``PARTIAL_CONVENTIONS`` lists the partial derivatives that are defined by convention
rather than by calculus (they are checked against the convention, not ``mpmath.diff``).

Adding an op to the table without an entry here makes ``test_every_op_has_an_oracle`` fail.
"""

from __future__ import annotations

from collections.abc import Callable

import mpmath
from mpmath import mp

DPS = 50
"""Decimal digits used for every oracle evaluation."""


def _trunc(x: mpmath.mpf) -> mpmath.mpf:
    return mpmath.sign(x) * mpmath.floor(mpmath.fabs(x))


def _round_half_away(x: mpmath.mpf) -> mpmath.mpf:
    return mpmath.sign(x) * mpmath.floor(mpmath.fabs(x) + mpmath.mpf(1) / 2)


def _ind(flag: bool) -> mpmath.mpf:
    return mpmath.mpf(1) if flag else mpmath.mpf(0)


ORACLES: dict[str, Callable[..., mpmath.mpf]] = {
    # arithmetic
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "neg": lambda x: -x,
    "pow": lambda x, c: mpmath.power(x, c),
    "pow_value": lambda x, y: mpmath.exp(y * mpmath.log(x)),
    "mod": lambda a, b: a - b * mpmath.floor(a / b),
    "reciprocal": lambda x: 1 / x,
    "square": lambda x: mpmath.power(x, 2),
    "cube": lambda x: mpmath.power(x, 3),
    "sqrt": mpmath.sqrt,
    "abs": mpmath.fabs,
    "sign": mpmath.sign,
    "floor": mpmath.floor,
    "ceil": mpmath.ceil,
    "round": _round_half_away,
    "trunc": _trunc,
    "min": lambda a, b: a if a <= b else b,
    "max": lambda a, b: a if a >= b else b,
    "clamp": lambda x, lo, hi: lo if x < lo else (hi if x > hi else x),
    # activations
    "relu": lambda x: x if x > 0 else mpmath.mpf(0),
    "tanh": mpmath.tanh,
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "softplus": lambda x: mpmath.log(1 + mpmath.exp(x)),
    # trigonometry
    "sin": mpmath.sin,
    "cos": mpmath.cos,
    "tan": mpmath.tan,
    "asin": mpmath.asin,
    "acos": mpmath.acos,
    "atan": mpmath.atan,
    "atan2": mpmath.atan2,
    # exponentials
    "exp": mpmath.exp,
    "log": mpmath.log,
    "sinh": mpmath.sinh,
    "cosh": mpmath.cosh,
    "log1p": lambda x: mpmath.log(1 + x),
    "expm1": lambda x: mpmath.exp(x) - 1,
    # comparisons and selection
    "eq": lambda a, b: _ind(a == b),
    "ne": lambda a, b: _ind(a != b),
    "gt": lambda a, b: _ind(a > b),
    "lt": lambda a, b: _ind(a < b),
    "ge": lambda a, b: _ind(a >= b),
    "le": lambda a, b: _ind(a <= b),
    "where": lambda c, a, b: a if c != 0 else b,
    # reductions
    "sum": lambda *xs: mpmath.fsum(xs),
    "mean": lambda *xs: mpmath.fsum(xs) / len(xs),
    # C functions
    "stop_gradient": lambda x: x,
    "fmod": lambda a, b: a - b * _trunc(a / b),
    "copysign": lambda a, b: mpmath.fabs(a) * (-1 if b < 0 else 1),
}

PARTIAL_CONVENTIONS: dict[tuple[str, int], float] = {
    # ``pow``'s second argument is a constant exponent: no gradient flows to it.
    ("pow", 1): 0.0,
    # ``where``'s condition only selects: no gradient flows to it.
    ("where", 0): 0.0,
    # ``stop_gradient`` is the identity whose derivative is 0 by definition.
    ("stop_gradient", 0): 0.0,
    # step functions and comparisons: derivative 0 everywhere, also at the jumps
    **{(name, 0): 0.0 for name in ("sign", "floor", "ceil", "round", "trunc")},
    **{(name, i): 0.0 for name in ("eq", "ne", "gt", "lt", "ge", "le") for i in (0, 1)},
}
"""``(op name, argument index) -> partial`` fixed by convention, not by calculus.

Elsewhere the documented kink conventions (``abs'(0) = 0``, ties of ``min``/``max``,
``clamp`` bounds, ``mod``'s ``d/db``) are tested at the kinks themselves; at sampled
points away from kinks they must agree with ``mpmath.diff``.
"""


def evaluate(name: str, args: tuple[float, ...]) -> mpmath.mpf:
    """The oracle of ``name`` at the exact values of the float ``args``."""
    with mp.workdps(DPS):
        return ORACLES[name](*[mpmath.mpf(a) for a in args])


def partial(name: str, args: tuple[float, ...], i: int) -> mpmath.mpf:
    """d(oracle)/d(args[i]) at ``args`` by ``mpmath.diff`` (high-precision differences)."""
    with mp.workdps(DPS):
        point = [mpmath.mpf(a) for a in args]
        fn = ORACLES[name]

        def along(t: mpmath.mpf) -> mpmath.mpf:
            shifted = list(point)
            shifted[i] = t
            return fn(*shifted)

        return mpmath.diff(along, point[i])
