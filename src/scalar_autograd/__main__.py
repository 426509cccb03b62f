"""Command line: ``python -m scalar_autograd demo`` runs the demo (the README's main job).

The same entry point is installed as the ``scalar-autograd`` console script.

Example:
    $ python -m scalar_autograd demo               # the speedup table, 5-10 s
    $ python -m scalar_autograd demo --plot out/   # and the pictures
    $ python -m scalar_autograd demo --quick       # 100 iterations, one run each
"""

from __future__ import annotations

import argparse
import sys


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def _demo(args: argparse.Namespace) -> int:
    from scalar_autograd import demo

    iterations = args.iterations or (100 if args.quick else demo.ITERATIONS)
    repeats = args.repeats or (1 if args.quick else 3)
    try:
        demo.run_demo(iterations=iterations, repeats=repeats, plot_dir=args.plot,
                      progress=not args.no_progress)
    except ImportError as exc:
        print(f"scalar-autograd demo: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m scalar_autograd`` and the ``scalar-autograd`` script.

    Args:
        argv: the arguments (``sys.argv[1:]`` when ``None``), e.g. ``["demo", "--quick"]``.

    Returns:
        The exit status: 0 on success, 2 when ``--plot`` is asked for without matplotlib.
    """
    parser = argparse.ArgumentParser(
        prog="scalar-autograd",
        description="scalar-autograd: scalar autodiff with a JIT to native code.")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser(
        "demo", help="planar-arm IK, traditional vs compiled: the live speedup table",
        description="A planar arm reaches a target by gradient descent, traditional "
                    "(graph + backward() per step) and compiled; prints the speedup "
                    "table for 5, 20 and 50 variables.")
    demo.add_argument("--plot", metavar="DIR", default=None,
                      help="write demo_arm_poses.png and demo_timings.png into DIR "
                           "(needs matplotlib)")
    demo.add_argument("--quick", action="store_true",
                      help="100 iterations and one run per loop (a smoke test)")
    demo.add_argument("--iterations", type=_positive_int, default=None,
                      help="gradient steps per run (default 1000)")
    demo.add_argument("--repeats", type=_positive_int, default=None,
                      help="runs per loop, the best is reported (default 3)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
