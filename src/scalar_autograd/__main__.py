"""Command line: ``python -m scalar_autograd demo`` runs the demo (the README's main job).

The same entry point is installed as the ``scalar-autograd`` console script.
``gradient`` writes the value-and-gradient code of a formula (:func:`gradient_code`).

Example:
    $ python -m scalar_autograd demo               # the speedup table, 5-10 s
    $ python -m scalar_autograd demo --plot out/   # and the pictures
    $ python -m scalar_autograd demo --quick       # 100 iterations, one run each
    $ python -m scalar_autograd gradient "a*exp(-b*t) + c" --wrt a,b,c
    $ python -m scalar_autograd gradient "a*exp(-b*t) + c" --wrt a,b,c --lang latex
"""

from __future__ import annotations

import argparse
import builtins
import inspect
import keyword
import re
import sys
from typing import Any


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


# ----------------------------------------------------------------------------- gradient

LANGUAGES = ("python", "c", "latex")
"""What ``gradient --lang`` writes."""

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*", re.ASCII)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_RESERVED = frozenset({"kernel"})
"""Names the generated Python uses itself (``kernel``; every other one starts with ``_``)."""


def _python_name(name: str, what: str, module_level: bool = False) -> str:
    """``name`` if it can be an argument name of the generated Python function, or with
    ``module_level``, the function's own name: then it must not replace a name of the
    module either (the helpers of :mod:`scalar_autograd.numerics`, ``math``, builtins)."""
    from scalar_autograd import numerics

    taken = _RESERVED
    if module_level:
        taken = taken | set(vars(numerics)) | set(dir(builtins)) | {"math", "annotations"}
    if not _IDENTIFIER.fullmatch(name) or keyword.iskeyword(name) or name in taken:
        where = ("a Python keyword, kernel, or a name the module uses (math, the helpers of "
                 "scalar_autograd.numerics, builtins)" if module_level
                 else "a Python keyword or kernel")
        raise ValueError(f"{what} {name!r:.40} cannot be a name in the generated Python: it "
                         f"must start with a letter and not be {where}; rename it")
    return name


def _wrt_names(wrt: str) -> list[str]:
    names = [n.strip() for n in wrt.split(",")]
    if not wrt.strip() or any(not n for n in names):
        raise ValueError(f"--wrt must be a comma-separated list of names; got {wrt!r:.60}")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"--wrt names {n!r:.40} twice")
        seen.add(n)
    return names


def gradient_code(text: str, wrt: list[str], lang: str = "python", name: str | None = None
                  ) -> str:
    """The code computing the value and gradient of the formula ``text``.

    Names in ``wrt`` are the differentiated params, in that order; every other name of
    the formula (but the constants ``pi``, ``e``, ``inf``, ``nan``) is a runtime input,
    in order of first use.

    * ``"python"``: a self-contained module (standard library only) defining
      ``name(params..., inputs...) -> (value, (d/dp0, d/dp1, ...))``: the python
      backend's generated kernel of the compiled formula, and the IEEE-754 total helpers
      it calls (:mod:`scalar_autograd.numerics`, copied verbatim), so its results are
      bit for bit the library's. Argument names are the formula's (checked to be
      identifiers); no other text of the user reaches the code.
    * ``"c"``: ``sa.compile(...).to_c(name)`` (C99, libm only), after a comment naming
      the params and inputs in order.
    * ``"latex"``: the formula and each partial derivative (as graphs:
      :func:`scalar_autograd.expression.derivatives`) in LaTeX, one per line.

    Args:
        text: the formula (:func:`scalar_autograd.parse`).
        wrt: the names to differentiate by; each must occur in the formula.
        lang: ``"python"``, ``"c"`` or ``"latex"``.
        name: the function's name (default ``f``, ``gradient`` for C).

    Raises:
        ValueError: a malformed formula, a ``wrt`` name not in it or given twice, a name
            that cannot be used in the generated code, or an unknown ``lang``.
        ImportError, NotImplementedError: ``"c"`` when the C generator is unavailable.

    Example:
        >>> code = gradient_code("a*exp(-b*t) + c", ["a", "b", "c"])
        >>> print(code.splitlines()[0])
        # f(a, b, c, t) -> (value, (df/da, df/db, df/dc)): generated by scalar_autograd
        >>> print(gradient_code("x^2 * y", ["x"], "latex"))
        f = x^{2} \\cdot y
        \\frac{\\partial f}{\\partial x} = y \\cdot \\left(2 \\cdot x\\right)
    """
    from scalar_autograd.expression import CONSTANTS, parse, variables_in
    from scalar_autograd.value import Value

    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}; got {lang!r:.40}")
    try:
        names = variables_in(text)
    except ValueError:
        # report the first error in parse order (``f('x')`` names the unknown function
        # before the quote), with every name-like word defined
        parse(text, {n: 1.0 for n in _WORD.findall(text)})
        raise  # (parse fails at the same place or before it)
    leaves = {n: Value(1.0, label=n, requires_grad=n in wrt) for n in names
              if n in wrt or n not in CONSTANTS}
    output = parse(text, leaves)
    missing = [w for w in wrt if w not in leaves]
    if missing:
        known = ", ".join(n for n in leaves) or "none"
        raise ValueError(f"--wrt name {missing[0]!r:.40} does not occur in the formula "
                         f"(its names: {known})")
    params = [leaves[w] for w in wrt]
    inputs = [leaf for n, leaf in leaves.items() if n not in wrt]
    if lang == "latex":
        return _latex_code(output, params, name or "f")
    if lang == "c":
        return _c_code(output, params, inputs, name or "gradient")
    return _python_code(output, params, inputs, name or "f")


def _latex_code(output: Any, params: list[Any], name: str) -> str:
    from scalar_autograd.expression import derivatives, latex_name, to_latex

    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"--name must be an identifier; got {name!r:.40}")
    f = latex_name(name)
    lines = [f"{f} = {to_latex(output)}"]
    for p, d in zip(params, derivatives(output, params)):
        lines.append(rf"\frac{{\partial {f}}}{{\partial {latex_name(p.label)}}} = "
                     f"{to_latex(d)}")
    return "\n".join(lines)


def _c_code(output: Any, params: list[Any], inputs: list[Any], name: str) -> str:
    from scalar_autograd.runtime import compile as compile_graph

    source = compile_graph(output, params, inputs).to_c(name)
    order = ", ".join(p.label for p in params)
    rest = ", ".join(u.label for u in inputs) or "none"
    return (f"/* {name}: params (differentiated), in order: {order}; runtime inputs, in "
            f"order: {rest} */\n{source}")


def _python_code(output: Any, params: list[Any], inputs: list[Any], name: str) -> str:
    from scalar_autograd import numerics
    from scalar_autograd.expression import to_expression
    from scalar_autograd.ops import OPS_BY_NAME
    from scalar_autograd.runtime import compile as compile_graph

    helpers = inspect.getsource(numerics)
    imports = [line for line in helpers.splitlines() if line.startswith(("import ", "from "))]
    if imports != ["from __future__ import annotations", "import math"]:
        raise RuntimeError(f"scalar_autograd.numerics imports {imports}; the generated "
                           f"Python expects it to need only the standard library's math")
    _python_name(name, "the function name", module_level=True)
    for leaf in (*params, *inputs):
        _python_name(leaf.label, "the variable name")
    # the python backend's value-and-gradient kernel: def kernel(x, u, val, der)
    kernel = compile_graph(output, params, inputs, backend="python").source
    bindings = {"_nan": "NAN", "_inf": "INF", "_div": "div"}
    for op in OPS_BY_NAME.values():
        if op.lower.kind == "call":
            bindings["_" + op.lower.symbol] = op.lower.symbol
    used = sorted(b for b in bindings if re.search(rf"\b{b}\b", kernel))
    param_names = [p.label for p in params]
    input_names = [u.label for u in inputs]
    arguments = ", ".join(param_names + input_names)
    partials = ", ".join(f"d{name}/d{p}" for p in param_names)
    n = len(params)
    derivs = ", ".join(f"_der[{k}]" for k in range(n)) + ("," if n == 1 else "")
    lines = [
        f"# {name}({arguments}) -> (value, ({partials})): generated by scalar_autograd",
        f"#   {name} = {to_expression(output)}",
        f"# Params (differentiated), in order: {', '.join(param_names)}. Runtime inputs: "
        f"{', '.join(input_names) or 'none'}.",
        "# Self-contained: the IEEE-754 helpers below are scalar_autograd.numerics, verbatim.",
        helpers.rstrip("\n"),
        "",
        "",
        "# The python backend's kernel, given the helpers it calls by their names there.",
        f"def _make_kernel({', '.join(used)}):",
        *("    " + line if line else "" for line in kernel.rstrip("\n").splitlines()),
        "    return kernel",
        "",
        "",
        f"kernel = _make_kernel({', '.join(bindings[b] for b in used)})",
        "",
        "",
        f"def {name}({arguments}):",
        f'    """Value and gradient ({partials}) at the given point."""',
        "    _val = [0.0]",
        f"    _der = [0.0] * {n}",
        f"    kernel([{', '.join(param_names)}], [{', '.join(input_names)}], _val, _der)",
        f"    return _val[0], ({derivs})",
    ]
    return "\n".join(lines) + "\n"


def _gradient(args: argparse.Namespace) -> int:
    try:
        print(gradient_code(args.formula, _wrt_names(args.wrt), args.lang, args.name))
    except (ValueError, TypeError, ImportError, NotImplementedError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"scalar-autograd gradient: {first}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m scalar_autograd`` and the ``scalar-autograd`` script.

    Args:
        argv: the arguments (``sys.argv[1:]`` when ``None``), e.g. ``["demo", "--quick"]``.

    Returns:
        The exit status: 0 on success, 2 when ``--plot`` is asked for without matplotlib
        or ``gradient`` cannot write its code (the reason is one line on stderr).
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
    gradient = sub.add_parser(
        "gradient", help="code for the value and gradient of a formula",
        description="Parse a formula (sa.parse) and print code computing its value and "
                    "its gradient with respect to the --wrt names; the formula's other "
                    "names are runtime inputs. Errors go to stderr, exit status 2.")
    gradient.add_argument("formula", help='the formula, e.g. "a*exp(-b*t) + c"')
    gradient.add_argument("--wrt", required=True, metavar="NAMES",
                          help="comma-separated names to differentiate by, e.g. a,b,c")
    gradient.add_argument("--lang", choices=LANGUAGES, default="python",
                          help="python (a self-contained function, the default), c (C99 "
                               "source) or latex (the formula and its partial derivatives)")
    gradient.add_argument("--name", default=None,
                          help="the function's name (default f; gradient for C)")
    gradient.set_defaults(func=_gradient)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
