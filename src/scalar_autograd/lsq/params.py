"""Checking the residuals a ``residual_fn`` returns, and describing constant ones.

(The params and the numbers a user hands to the solver are checked by
:mod:`scalar_autograd.validation`, shared with the optimisers.)

Example:
    >>> import scalar_autograd as sa
    >>> a = sa.Value(1.0, label="a")
    >>> check_residuals([a * 2, 3.0])
    Traceback (most recent call last):
    ...
    TypeError: residual_fn must return a sequence of Value; residual 1 is float 3.0
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from scalar_autograd.value import Value


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
