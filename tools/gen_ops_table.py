"""Regenerate the README's operations table from the op table (``scalar_autograd.ops.OPS``).

Rewrites the block between ``<!-- ops-table:start -->`` and ``<!-- ops-table:end -->``
in README.md; everything outside the markers is left alone. ``--check`` only reports
whether the block is up to date (exit status 1 if not), as the test suite does.

Usage:
    python tools/gen_ops_table.py            # rewrite README.md in place
    python tools/gen_ops_table.py --check    # exit 1 if README.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scalar_autograd.ops import OPS, VARIADIC, Op

START = "<!-- ops-table:start -->"
END = "<!-- ops-table:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"

OPERATORS = {
    "add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b", "neg": "-x",
    "pow": "x ** c", "pow_value": "x ** y", "mod": "a % b", "abs": "abs(x)",
    "eq": "a == b", "ne": "a != b", "gt": "a > b", "lt": "a < b", "ge": "a >= b",
    "le": "a <= b",
}
"""Python operator spellings of the ops that have one."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _spelling(op: Op) -> str:
    if op.arity == VARIADIC:
        parts = [f"`sa.{op.function}(values)`"]
    else:
        parts = [f"`sa.{op.function}`", f"`Value.{op.method}`"]
    if op.name in OPERATORS:
        parts.append(f"`{OPERATORS[op.name]}`")
    if op.name == "where":
        parts.append("`sa.if_then_else`")
    return ", ".join(parts)


def render() -> str:
    """The markdown table, one row per op, in table order."""
    lines = [
        "| op | spelling | formula, derivative and convention at kinks |",
        "| --- | --- | --- |",
    ]
    for op in OPS:
        lines.append(f"| `{op.name}` | {_cell(_spelling(op))} | {_cell(op.doc)} |")
    return "\n".join(lines) + "\n"


def rewrite(text: str) -> str:
    """``text`` with the block between the markers replaced by :func:`render`."""
    start = text.find(START)
    end = text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README must contain {START} followed by {END}")
    return text[: start + len(START)] + "\n" + render() + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, do not write")
    parser.add_argument("--readme", type=Path, default=README, help="file to rewrite")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new = rewrite(text)
    if args.check:
        if new != text:
            print(f"{args.readme}: operations table is stale; run python tools/gen_ops_table.py")
            return 1
        return 0
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
        print(f"rewrote the operations table in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
