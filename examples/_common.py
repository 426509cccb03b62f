"""Shared by the example scripts: the command line (``--plot DIR``, ``--quick``) and plot paths.

Every example defines ``run(quick=False, plot_dir=None) -> dict`` and ends with::

    if __name__ == "__main__":
        sys.exit(cli(run, __doc__))

The table formatter and the matplotlib guard come from the package
(:mod:`scalar_autograd.console`, :mod:`scalar_autograd.plotting`), which the installed
demo uses too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from scalar_autograd.console import format_table
from scalar_autograd.plotting import require_matplotlib

__all__ = ["cli", "plot_path", "format_table", "require_matplotlib"]


def cli(run: Callable[..., dict[str, Any]], doc: str | None,
        argv: list[str] | None = None) -> int:
    """Parse ``--plot DIR`` and ``--quick``, then call ``run``; returns the exit status.

    ``--plot`` without matplotlib stops before any work with a message saying how to
    install it (exit status 2).
    """
    lines = (doc or "").strip().splitlines()
    parser = argparse.ArgumentParser(
        description=lines[0] if lines else None,
        epilog="\n".join(lines[1:]).strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--plot", metavar="DIR", default=None,
                        help="write the example's PNG picture(s) into DIR (needs matplotlib)")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller problem that runs in a second or two")
    args = parser.parse_args(argv)
    if args.plot is not None:
        try:
            require_matplotlib()
        except ImportError as exc:
            print(f"{parser.prog}: {exc}", file=sys.stderr)
            return 2
    run(quick=args.quick, plot_dir=args.plot)
    return 0


def plot_path(plot_dir: str, filename: str) -> str:
    """``plot_dir/filename``, creating ``plot_dir`` if needed."""
    os.makedirs(plot_dir, exist_ok=True)
    return os.path.join(plot_dir, filename)
