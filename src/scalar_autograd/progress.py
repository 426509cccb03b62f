"""A text progress bar on stderr: redrawn in place on a terminal, plain lines elsewhere.

A core utility with no dependency beyond the standard library, so every layer can show
progress (the batched solvers' fan-out in :mod:`scalar_autograd.runtime.fanout`, the
demo, the examples); :mod:`scalar_autograd.console` re-exports it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """A text progress bar on a stream (stderr by default), no dependency needed.

    On a terminal the bar redraws itself in place (``\\r``) and is erased by
    :meth:`close`. Elsewhere (a pipe, a log file, a test) it prints one plain line each
    time the label changes, so logs stay readable. ``enabled=False`` prints nothing.

    Args:
        total: the number of units of work (> 0).
        stream: where to draw; ``sys.stderr`` when ``None``.
        enabled: draw at all.
        width: the bar's width in characters.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> bar = ProgressBar(4, stream=out)
        >>> bar.advance(2, "first half")
        >>> bar.advance(2, "second half")
        >>> bar.close()
        >>> print(out.getvalue(), end="")
        [ 50%] first half
        [100%] second half
    """

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True,
                 width: int = 30) -> None:
        if total <= 0:
            raise ValueError(f"total must be positive; got {total!r}")
        self.total = total
        self.done = 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.width = width
        self.columns = min(100, shutil.get_terminal_size((100, 24)).columns - 1)
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
        self._label = ""
        self._start = time.perf_counter()

    def advance(self, units: int, label: str | None = None) -> None:
        """Record ``units`` more units of work done, under ``label`` if given."""
        self.done = min(self.total, self.done + units)
        changed = label is not None and label != self._label
        if label is not None:
            self._label = label
        if not self.enabled:
            return
        fraction = self.done / self.total
        if self.tty:
            filled = int(round(fraction * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            elapsed = time.perf_counter() - self._start
            text = f"\r[{bar}] {100 * fraction:3.0f}%  {elapsed:5.1f} s  {self._label}"
            self.stream.write(text.ljust(self.columns)[:self.columns])
            self.stream.flush()
        elif changed:
            self.stream.write(f"[{100 * fraction:3.0f}%] {self._label}\n")
            self.stream.flush()

    def close(self) -> None:
        """Erase the bar (on a terminal); call once at the end."""
        if self.enabled and self.tty:
            self.stream.write("\r" + " " * self.columns + "\r")
            self.stream.flush()
