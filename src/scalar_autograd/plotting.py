"""Plotting for scripts: matplotlib is an optional dependency, imported on demand.

The demo and the scripts in ``examples/`` draw on a bare ``matplotlib.figure.Figure``
(no pyplot, no GUI backend) and save it with ``fig.savefig(path)``; without matplotlib
they stop before any work with a message saying how to install it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["require_matplotlib"]


def require_matplotlib() -> Any:
    """``matplotlib.figure.Figure``, or an ``ImportError`` saying how to install it.

    Plots are drawn on a bare ``Figure`` (no pyplot, no GUI backend) and saved with
    ``fig.savefig(path)``, so plotting works on headless machines and in threads.

    Raises:
        ImportError: when matplotlib is not installed (it is the optional ``plot``
            extra: ``pip install "scalar-autograd[plot]"``).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib, an optional dependency of scalar-autograd; "
            "install it with: pip install \"scalar-autograd[plot]\"  (or: pip install "
            "matplotlib)"
        ) from exc
    return Figure
