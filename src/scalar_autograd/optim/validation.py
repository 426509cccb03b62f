"""Up-front checks of optimiser options and parameter lists, each error naming its argument.

Every public optimiser and solver calls these before doing any work, so a bad option
fails at once with a message of the form "`lr` must be > 0; got -1.0", never halfway
through a run. The wrong kind of thing (a str for a rate, a float for a count, a
complex number) raises TypeError, a wrong value (0 iterations, a nan or negative rate)
ValueError, as ``scalar_autograd.lsq.options`` does for the least-squares options.

Example:
    >>> check_positive_float(0.1, "lr")
    0.1
    >>> check_positive_float(0.0, "lr")
    Traceback (most recent call last):
    ...
    ValueError: `lr` must be > 0; got 0.0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from scalar_autograd.value import Value


def check_real(x: Any, name: str) -> float:
    """``x`` as a float; it must be a real number (not bool) and not nan."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"`{name}` must be a real number; got {type(x).__name__} {x!r}")
    try:
        value = float(x)
    except OverflowError:           # an int beyond the float range
        raise ValueError(f"`{name}` must be a real number within the float range; got "
                         f"{x!r}") from None
    if math.isnan(value):
        raise ValueError(f"`{name}` must not be nan; got {value!r}")
    return value


def check_positive_float(x: Any, name: str) -> float:
    """``x`` as a float, which must be finite and > 0."""
    value = check_real(x, name)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be > 0; got {value!r}")
    return value


def check_nonnegative_float(x: Any, name: str) -> float:
    """``x`` as a float, which must be finite and >= 0."""
    value = check_real(x, name)
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be >= 0; got {value!r}")
    return value


def check_unit_interval(x: Any, name: str) -> float:
    """``x`` as a float in ``[0, 1)`` (momentum coefficients such as Adam's betas)."""
    value = check_real(x, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1); got {value!r}")
    return value


def check_open_unit_interval(x: Any, name: str) -> float:
    """``x`` as a float in ``(0, 1)`` (line-search constants)."""
    value = check_real(x, name)
    if not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1); got {value!r}")
    return value


def check_betas(betas: Any) -> tuple[float, float]:
    """``betas`` as a pair of floats, each in ``[0, 1)``."""
    if isinstance(betas, (str, bytes)) or not isinstance(betas, Iterable):
        raise TypeError(f"`betas` must be a pair of floats; got {type(betas).__name__} {betas!r}")
    items = tuple(betas)
    if len(items) != 2:
        raise ValueError(f"`betas` must be a pair of floats; got {len(items)} values {items!r}")
    return check_unit_interval(items[0], "betas[0]"), check_unit_interval(items[1], "betas[1]")


def check_real_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a new float64 array whose entries are all real numbers.

    Real numbers are floats, ints and bools (numpy's kinds ``f``, ``i``, ``u``, ``b``, or
    objects that are ``numbers.Real``, as ``Value(True)`` accepts); complex numbers,
    strings, bytes, None and other objects raise TypeError naming ``name`` (numpy would
    drop an imaginary part with a ComplexWarning, or parse a string). The shape is not
    checked. (The same rule as ``scalar_autograd.lsq.params.as_real_array``.)

    Example:
        >>> check_real_array([1, 2.5], "x0").tolist()
        [1.0, 2.5]
        >>> check_real_array(["1"], "x")
        Traceback (most recent call last):
        ...
        TypeError: `x` must hold real numbers (int, float or bool); got str '1' (dtype <U1)
    """
    if isinstance(x, (str, bytes)):
        raise TypeError(f"`{name}` must be an array-like of real numbers; got "
                        f"{type(x).__name__} {x!r:.80}")
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as exc:      # ragged nesting, failing __array__
        raise TypeError(f"`{name}` must be an array-like of real numbers; got "
                        f"{type(x).__name__} ({exc})") from None
    kind = a.dtype.kind
    if kind not in "fiub":
        # an object array may hold real numbers (Fraction, numpy scalars, big ints)
        wrong = [v for v in a.flat if not isinstance(v, numbers.Real)] if kind == "O" \
            else [v.item() if isinstance(v, np.generic) else v for v in a.flat[:1]]
        if kind != "O" or wrong:
            shown = f"{type(wrong[0]).__name__} {wrong[0]!r:.40}" if wrong else "no entries"
            raise TypeError(f"`{name}` must hold real numbers (int, float or bool); got "
                            f"{shown} (dtype {a.dtype})")
    try:
        return np.array(a, dtype=np.float64)
    except OverflowError:
        raise ValueError(f"`{name}` must hold numbers within the float range; got "
                         f"{x!r:.80}") from None


def check_positive_int(x: Any, name: str) -> int:
    """``x`` as an int, which must be >= 1 (``bool`` is rejected)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"`{name}` must be a positive integer; got {type(x).__name__} {x!r}")
    value = int(x)
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}")
    return value


def check_bool(x: Any, name: str) -> bool:
    """``x``, which must be a ``bool``."""
    if not isinstance(x, bool):
        raise TypeError(f"`{name}` must be a bool; got {type(x).__name__} {x!r}")
    return x


def check_params(params: Any, name: str = "params") -> list[Value]:
    """``params`` as a list of distinct leaf ``Value``s that require grad.

    Raises:
        TypeError: if ``params`` is not an iterable of ``Value`` objects.
        ValueError: if it is empty, holds a value twice, holds a computed (non-leaf)
            value, or holds a value created without ``requires_grad=True``.
    """
    if isinstance(params, (Value, str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(
            f"`{name}` must be an iterable of Value objects; got {type(params).__name__}"
        )
    items = list(params)
    if not items:
        raise ValueError(f"`{name}` must hold at least one Value; got an empty sequence")
    # fast path: one pass over the list without building messages
    if len(set(map(id, items))) == len(items) and all(
        type(p) is Value and p.op is None and p.requires_grad for p in items
    ):
        return items
    seen: dict[int, int] = {}
    for i, p in enumerate(items):
        if not isinstance(p, Value):
            raise TypeError(
                f"`{name}` must contain only Value objects; {name}[{i}] is "
                f"{type(p).__name__} {p!r}"
            )
        if p.op is not None:
            raise ValueError(
                f"`{name}` must contain leaf Values (created with Value(...)); {name}[{i}] "
                f"is the result of {p.op.name}"
            )
        if not p.requires_grad:
            raise ValueError(
                f"`{name}` must contain Values created with requires_grad=True; "
                f"{name}[{i}] ({p!r}) does not require grad"
            )
        if id(p) in seen:
            raise ValueError(
                f"`{name}` must not contain the same Value twice; {name}[{seen[id(p)]}] "
                f"and {name}[{i}] are the same object"
            )
        seen[id(p)] = i
    return items
