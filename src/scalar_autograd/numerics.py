"""IEEE-754 total scalar functions: C99 results where Python's ``math`` would raise.

Python's ``math`` module raises ``ValueError``/``OverflowError`` where C99 returns a
number (``log(0) = -inf``, ``sqrt(-1) = nan``, ``exp(1000) = inf``) and Python's ``/``
raises on division by zero. Every function here takes and returns ``float`` and never
raises for float input; they are the ``eval`` of the op table.

Example:
    >>> from scalar_autograd import numerics as nx
    >>> nx.div(1.0, 0.0), nx.log(0.0), nx.sqrt(-1.0), nx.exp(1000.0)
    (inf, -inf, nan, inf)
"""

from __future__ import annotations

import math

INF = math.inf
NAN = math.nan

_copysign = math.copysign
_fabs = math.fabs
_isinf = math.isinf
_isnan = math.isnan


def div(a: float, b: float) -> float:
    """IEEE division: ``1/0 = inf``, ``-1/0 = -inf``, ``0/0 = nan``, ``1/-0 = -inf``."""
    if b == 0.0:
        if a == 0.0 or a != a:
            return NAN
        return _copysign(INF, a) * _copysign(1.0, b)
    return a / b


def _is_odd_integer(y: float) -> bool:
    return math.isfinite(y) and y == math.floor(y) and math.fmod(y, 2.0) != 0.0


def pow(a: float, b: float) -> float:  # noqa: A001 - mirrors C's pow
    """C99 ``pow``: negative base with non-integer exponent is nan, ``0**-1 = inf``;
    except that ``pow(a, 2) = a * a`` and ``pow(a, -1) = 1 / a``, correctly rounded, as
    JAX (``integer_pow``) and PyTorch compute them and as LLVM and GCC rewrite a ``pow``
    call with those constant exponents (libm's ``pow`` is off by one ulp on about
    0.1% of inputs there); every backend applies the same rule.

    Example:
        >>> pow(3.0, 2.0), pow(-0.0, -1.0), pow(-8.0, 1 / 3)
        (9.0, -inf, nan)
    """
    if b == 2.0:
        return a * a
    if b == -1.0:
        return 1.0 / a if a != 0.0 else _copysign(INF, a)
    try:
        return math.pow(a, b)
    except ValueError:
        if a == 0.0:  # zero to a negative power
            if _is_odd_integer(b):
                return _copysign(INF, a)
            return INF
        return NAN  # negative base, non-integer exponent
    except OverflowError:
        if a < 0.0 and _is_odd_integer(b):
            return -INF
        return INF


def exp(x: float) -> float:
    """``e**x``; overflows to ``inf``."""
    try:
        return math.exp(x)
    except OverflowError:
        return INF


def expm1(x: float) -> float:
    """``e**x - 1`` accurate near 0; overflows to ``inf``."""
    try:
        return math.expm1(x)
    except OverflowError:
        return INF


def log(x: float) -> float:
    """Natural log: ``log(0) = -inf``, ``log(x<0) = nan``."""
    if x > 0.0:
        return math.log(x)
    if x == 0.0:
        return -INF
    return NAN  # negative or nan


def log1p(x: float) -> float:
    """``log(1 + x)`` accurate near 0: ``log1p(-1) = -inf``, ``log1p(x<-1) = nan``."""
    if x > -1.0:
        return math.log1p(x)
    if x == -1.0:
        return -INF
    return NAN


def sqrt(x: float) -> float:
    """Square root: ``sqrt(-0.0) = -0.0``, ``sqrt(x<0) = nan``."""
    if x >= 0.0:
        return math.sqrt(x)
    return NAN


def _periodic(fn):  # type: ignore[no-untyped-def]
    def total(x: float) -> float:
        if _isinf(x):
            return NAN
        return fn(x)

    total.__name__ = fn.__name__
    total.__doc__ = f"``{fn.__name__}``; nan at +-inf."
    return total


sin = _periodic(math.sin)
cos = _periodic(math.cos)
tan = _periodic(math.tan)


def asin(x: float) -> float:
    """Arcsine; nan outside [-1, 1]."""
    if -1.0 <= x <= 1.0:
        return math.asin(x)
    return NAN


def acos(x: float) -> float:
    """Arccosine; nan outside [-1, 1]."""
    if -1.0 <= x <= 1.0:
        return math.acos(x)
    return NAN


atan = math.atan  # total already
atan2 = math.atan2  # total already
tanh = math.tanh  # total already


def sinh(x: float) -> float:
    """Hyperbolic sine; overflows to +-inf."""
    try:
        return math.sinh(x)
    except OverflowError:
        return _copysign(INF, x)


def cosh(x: float) -> float:
    """Hyperbolic cosine; overflows to inf."""
    try:
        return math.cosh(x)
    except OverflowError:
        return INF


def fmod(a: float, b: float) -> float:
    """C ``fmod`` (sign of ``a``): nan when ``b == 0`` or ``a`` is infinite."""
    if b == 0.0 or _isinf(a) or a != a or b != b:
        return NAN
    return math.fmod(a, b)


def floor(x: float) -> float:
    """Floor as a float; +-inf and nan pass through."""
    if x != x or _isinf(x):
        return x
    return _copysign(float(math.floor(x)), x)


def ceil(x: float) -> float:
    """Ceiling as a float; +-inf and nan pass through; ``ceil(-0.5) = -0.0``."""
    if x != x or _isinf(x):
        return x
    return _copysign(float(math.ceil(x)), x)


def trunc(x: float) -> float:
    """Round toward zero as a float; keeps the sign of zero."""
    if x != x or _isinf(x):
        return x
    return _copysign(float(math.trunc(x)), x)


def round(x: float) -> float:  # noqa: A001 - mirrors C's round
    """Round half away from zero (C ``round``), unlike Python's banker's ``round``."""
    if x != x or _isinf(x):
        return x
    t = float(math.trunc(x))
    if abs(x - t) >= 0.5:  # x - t is exact in binary floating point
        t += _copysign(1.0, x)
    return _copysign(t, x)


def copysign(a: float, b: float) -> float:
    """``|a|`` with the sign of ``b``; ``|a|`` when ``b`` is a NaN.

    IEEE 754 leaves the sign of a NaN made by an invalid operation unspecified: CPython's
    ``nan`` is positive, x86's default NaN (``log(-1)``, ``0/0`` in hardware) negative.
    C's ``copysign`` would hand that accident on to a result; here a NaN sign counts as
    positive, on every backend, so eager and compiled code agree.

    Example:
        >>> copysign(2.0, -0.0), copysign(-2.0, float("nan")), copysign(2.0, -float("nan"))
        (-2.0, 2.0, 2.0)
    """
    if b != b:
        return _fabs(a)
    return _copysign(a, b)


fabs = math.fabs  # total already
