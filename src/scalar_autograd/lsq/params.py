"""Checking the ``params`` and the residuals a user hands to the least-squares solver.

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
from collections.abc import Iterable, Sequence
from typing import Any

from scalar_autograd.value import Value


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


def describe_constant_rows(rows: Sequence[int], limit: int = 10) -> str:
    """A verbose-output line naming the residuals that depend on no parameter."""
    shown = ", ".join(str(i) for i in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return (f"note: {len(rows)} residual(s) depend on no parameter ({shown}{more}); they are "
            f"constants: they add to the cost but cannot be reduced")
