"""Command line: ``python -m scalar_autograd demo`` runs the demo (the README's main job).

Example:
    $ python -m scalar_autograd demo
"""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    import scalar_autograd as sa

    print("scalar_autograd demo: minimise (x - 3)^2 + sin(y)^2 by gradient descent")
    x = sa.Value(0.0, label="x", requires_grad=True)
    y = sa.Value(1.0, label="y", requires_grad=True)
    for step in range(200):
        loss = (x - 3) ** 2 + sa.sin(y) ** 2
        sa.zero_grad([x, y])
        loss.backward()
        for p in (x, y):
            p.data -= 0.1 * p.grad
        if step % 50 == 0:
            print(f"  step {step:3d}  loss {loss.data:.6e}")
    print(f"  x = {x.data:.6f}, y = {y.data:.6f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scalar-autograd`` console script."""
    parser = argparse.ArgumentParser(prog="scalar-autograd", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="run the demo")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
