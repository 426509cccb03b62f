"""Console output for scripts: plain-text tables and a text progress bar.

Used by the demo (``python -m scalar_autograd demo``) and the scripts in ``examples/``;
no dependency beyond the standard library.

Example:
    >>> print(format_table(["solver", "ms"], [["compiled", "0.25"]], "lr"))
    solver      ms
    --------  ----
    compiled  0.25
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scalar_autograd.progress import ProgressBar

__all__ = ["format_table", "ProgressBar"]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                 align: str | None = None) -> str:
    """A plain-text table; cells are converted with ``str`` (format numbers first).

    Args:
        headers: the column titles.
        rows: the cells, one sequence per row.
        align: one letter per column, ``"l"`` (left) or ``"r"`` (right); all right by
            default.

    Example:
        >>> print(format_table(["name", "ms"], [["fast", "1.25"], ["slow", "12.50"]], "lr"))
        name     ms
        ----  -----
        fast   1.25
        slow  12.50
    """
    cells = [[str(c) for c in row] for row in rows]
    align = align or "r" * len(headers)
    if len(align) != len(headers) or set(align) - {"l", "r"}:
        raise ValueError(f"align must hold one 'l' or 'r' per column ({len(headers)}); "
                         f"got {align!r}")
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(texts: Sequence[str]) -> str:
        return "  ".join(t.ljust(w) if a == "l" else t.rjust(w)
                         for t, w, a in zip(texts, widths, align)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])
