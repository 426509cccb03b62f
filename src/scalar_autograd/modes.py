"""Per-thread switches of the eager engine: gradient recording and anomaly detection.

The switches live in a :class:`contextvars.ContextVar`, so they are per thread (a new
thread starts with the defaults) and per asyncio task: a ``no_grad()`` in one thread
never stops graph recording in another. The state is one immutable :class:`Mode`, so
the eager hot path reads a single context variable and compares it with
:data:`DEFAULT` by identity.

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
import contextvars
from collections.abc import Iterator


class Mode:
    """The switches in force: ``grad_enabled`` and ``anomaly`` (immutable)."""

    __slots__ = ("grad_enabled", "anomaly")
    grad_enabled: bool
    anomaly: bool

    def __init__(self, grad_enabled: bool, anomaly: bool) -> None:
        object.__setattr__(self, "grad_enabled", grad_enabled)
        object.__setattr__(self, "anomaly", anomaly)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Mode is immutable")

    def replace(self, *, grad_enabled: bool | None = None, anomaly: bool | None = None
                ) -> Mode:
        """A copy with the given switches changed (the defaults are shared)."""
        g = self.grad_enabled if grad_enabled is None else grad_enabled
        a = self.anomaly if anomaly is None else anomaly
        return _MODES[(g, a)]

    def __repr__(self) -> str:
        return f"Mode(grad_enabled={self.grad_enabled}, anomaly={self.anomaly})"


_MODES = {(g, a): Mode(g, a) for g in (True, False) for a in (True, False)}
DEFAULT = _MODES[(True, False)]
"""Recording on, anomaly detection off: the mode of every new thread."""

MODE: contextvars.ContextVar[Mode] = contextvars.ContextVar("scalar_autograd_mode",
                                                            default=DEFAULT)
"""The current thread's (and task's) :class:`Mode`."""

current = MODE.get
"""``current()`` is the :class:`Mode` in force in this thread."""


@contextlib.contextmanager
def _switch(**change: bool) -> Iterator[None]:
    token = MODE.set(MODE.get().replace(**change))
    try:
        yield
    finally:
        MODE.reset(token)


def no_grad() -> contextlib.AbstractContextManager[None]:
    """Build no graph inside the block (this thread only): results are constants.

    Example:
        >>> import scalar_autograd as sa
        >>> a = sa.Value(1.0, requires_grad=True)
        >>> with sa.no_grad():
        ...     b = a + 1
        >>> b.args
        ()
    """
    return _switch(grad_enabled=False)


def is_grad_enabled() -> bool:
    """Whether eager ops record the graph in this thread."""
    return MODE.get().grad_enabled


def detect_anomaly() -> contextlib.AbstractContextManager[None]:
    """Raise ``FloatingPointError`` at the first op turning finite inputs into nan/inf.

    The error names the op and the labels of its inputs. Also checks ``backward()``.
    Like every mode, it applies to this thread only.

    Example:
        >>> import scalar_autograd as sa
        >>> x = sa.Value(0.0, label="x")
        >>> with sa.detect_anomaly():
        ...     sa.log(x)
        Traceback (most recent call last):
        ...
        FloatingPointError: log produced -inf from finite inputs (x=0.0)
    """
    return _switch(anomaly=True)
