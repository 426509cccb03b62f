"""Checking the ``params``, the residuals and the numbers a user hands to the solver.

Example:
    >>> import scalar_autograd as sa
    >>> a = sa.Value(1.0, label="a")
    >>> check_params([a]) == [a]
    True
    >>> check_residuals([a * 2, 3.0])
    Traceback (most recent call last):
    ...
    TypeError: residual_fn must return a sequence of Value; residual 1 is float 3.0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.value import Value

REAL_KINDS = "fiub"
"""numpy dtype kinds of real numbers: float, signed and unsigned int, bool."""


def check_params(params: Any) -> list[Value]:
    """The params as a list of distinct, finite ``Value`` leaves.

    Raises:
        TypeError: if ``params`` is not an iterable of ``Value``.
        ValueError: if it is empty, holds a computed (non-leaf) value, the same value
            twice, or a non-finite value.
    """
    if isinstance(params, Value) or not isinstance(params, Iterable):
        raise TypeError(
            f"params must be a sequence of Value; got {type(params).__name__}"
        )
    out = list(params)
    if not out:
        raise ValueError("params must hold at least one Value; got an empty sequence")
    seen: set[int] = set()
    for i, p in enumerate(out):
        if not isinstance(p, Value):
            raise TypeError(f"params must be a sequence of Value; params[{i}] is "
                            f"{type(p).__name__} {p!r}")
        if p.op is not None:
            raise ValueError(f"params must be leaf Values (not results of ops); params[{i}] "
                             f"was computed by {p.op.name}")
        if id(p) in seen:
            raise ValueError(f"params must be distinct Values; params[{i}] appears twice")
        if not math.isfinite(p.data):
            raise ValueError(f"params must start at finite values; params[{i}] is {p.data!r}")
        seen.add(id(p))
    return out


def check_residuals(residuals: Any) -> list[Value]:
    """The residuals as a non-empty list of ``Value``.

    Raises:
        TypeError: if ``residuals`` is not a sequence, or an entry is not a ``Value``.
        ValueError: if it is empty.
    """
    if isinstance(residuals, Value):
        residuals = [residuals]
    if not isinstance(residuals, Sequence) and not isinstance(residuals, Iterable):
        raise TypeError(f"residual_fn must return a sequence of Value; got "
                        f"{type(residuals).__name__}")
    out = list(residuals)
    if not out:
        raise ValueError("residual_fn returned no residuals; it must return at least one Value")
    for i, r in enumerate(out):
        if not isinstance(r, Value):
            raise TypeError(f"residual_fn must return a sequence of Value; residual {i} is "
                            f"{type(r).__name__} {r!r}")
    return out


def as_real_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a new float64 array, every entry a real number.

    Real numbers are floats, ints and bools (numpy's kinds ``f``, ``i``, ``u``, ``b``, or
    objects that are ``numbers.Real``; a bool is a real number here as it is for
    ``Value(True)``). The shape is not checked.

    Raises:
        TypeError: naming ``name``, for a str or bytes, for entries that are complex
            numbers, strings, bytes, None or other objects (numpy would drop an
            imaginary part with a ComplexWarning, or parse a string), and for ragged
            nesting.
        ValueError: for an int too large for a float.

    Example:
        >>> as_real_array([1, 2.5, True], "x0").tolist()
        [1.0, 2.5, 1.0]
        >>> as_real_array(["1", "2"], "x0")
        Traceback (most recent call last):
        ...
        TypeError: x0 must hold real numbers (int, float or bool); got str '1' (dtype <U1)
    """
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be an array-like of real numbers; got "
                        f"{type(x).__name__} {x!r:.80}")
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as exc:      # ragged nesting, failing __array__
        raise TypeError(f"{name} must be an array-like of real numbers; got "
                        f"{type(x).__name__} ({exc})") from None
    kind = a.dtype.kind
    if kind not in REAL_KINDS:
        # an object array may hold real numbers (Fraction, numpy scalars, big ints)
        wrong = [v for v in a.flat if not isinstance(v, numbers.Real)] if kind == "O" \
            else [v.item() if isinstance(v, np.generic) else v for v in a.flat[:1]]
        if kind != "O" or wrong:
            shown = f"{type(wrong[0]).__name__} {wrong[0]!r:.40}" if wrong else "no entries"
            raise TypeError(f"{name} must hold real numbers (int, float or bool); got "
                            f"{shown} (dtype {a.dtype})")
    try:
        return np.array(a, dtype=np.float64)
    except OverflowError:
        raise ValueError(f"{name} must hold numbers within the float range; got "
                         f"{x!r:.80}") from None


def describe_constant_rows(rows: Sequence[int], limit: int = 10) -> str:
    """A verbose-output line naming the residuals that depend on no parameter."""
    shown = ", ".join(str(i) for i in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return (f"note: {len(rows)} residual(s) depend on no parameter ({shown}{more}); they are "
            f"constants: they add to the cost but cannot be reduced")
