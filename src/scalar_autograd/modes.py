"""Global switches of the eager engine: gradient recording and anomaly detection.

Example:
    >>> import scalar_autograd as sa
    >>> x = sa.Value(2.0, requires_grad=True)
    >>> with sa.no_grad():
    ...     y = x * 3
    >>> y.requires_grad, y.op is None
    (False, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class _State:
    __slots__ = ("grad_enabled", "anomaly")

    def __init__(self) -> None:
        self.grad_enabled = True
        self.anomaly = False


STATE = _State()
"""The process-wide switches read by every eager op."""


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Build no graph inside the block: results are constants with no history.

    Example:
        >>> import scalar_autograd as sa
        >>> a = sa.Value(1.0, requires_grad=True)
        >>> with sa.no_grad():
        ...     b = a + 1
        >>> b.args
        ()
    """
    previous = STATE.grad_enabled
    STATE.grad_enabled = False
    try:
        yield
    finally:
        STATE.grad_enabled = previous


def is_grad_enabled() -> bool:
    """Whether eager ops currently record the graph."""
    return STATE.grad_enabled


@contextlib.contextmanager
def detect_anomaly() -> Iterator[None]:
    """Raise ``FloatingPointError`` at the first op turning finite inputs into nan/inf.

    The error names the op and the labels of its inputs. Also checks ``backward()``.

    Example:
        >>> import scalar_autograd as sa
        >>> x = sa.Value(0.0, label="x")
        >>> with sa.detect_anomaly():
        ...     sa.log(x)
        Traceback (most recent call last):
        ...
        FloatingPointError: log produced -inf from finite inputs (x=0.0)
    """
    previous = STATE.anomaly
    STATE.anomaly = True
    try:
        yield
    finally:
        STATE.anomaly = previous
