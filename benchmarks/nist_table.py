"""NIST StRD nonlinear regression: log relative errors (LRE) of our LM beside scipy's.

For each of the 14 problems and both published starts (28 runs) prints the smallest
LRE over the parameters and the LRE of the residual sum of squares, for
``sa.nonlinear_least_squares`` (graph and compiled Jacobians, default options except
``max_iterations=3000`` and the per-run options in ``tests/lsq_nist_problems.py``) and
for ``scipy.optimize.least_squares(method="lm")`` with its default tolerances and with
tight ones (1e-15), from the same starts. LRE = -log10(|value - certified| / |certified|)
is the number of correct significant digits (0 when the run is off).

Run from the repository root::

    .venv/bin/python benchmarks/nist_table.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import scalar_autograd as sa  # noqa: E402
from lsq_nist_problems import SPECIAL_OPTIONS, NistProblem, load, lre  # noqa: E402


def ours(problem: NistProblem, start: int, jacobian: str) -> tuple[float, float]:
    params = [sa.Value(v) for v in problem.starts[start]]
    options = {"max_iterations": 3000, **SPECIAL_OPTIONS.get((problem.name, start), {})}
    res = sa.nonlinear_least_squares(params, problem.residual_fn(), jacobian=jacobian,
                                     **options)
    return _scores(problem, res.x, 2 * res.cost)


def scipy_lm(problem: NistProblem, start: int, tight: bool) -> tuple[float, float]:
    from scipy.optimize import least_squares

    tol = {"xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15} if tight else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = least_squares(problem.numpy_residuals, np.array(problem.starts[start]),
                                method="lm", max_nfev=10000, **tol)
        except Exception:  # noqa: BLE001 - a failed reference run scores 0
            return 0.0, 0.0
    return _scores(problem, res.x, 2 * res.cost)


def _scores(problem: NistProblem, x: np.ndarray, rss: float) -> tuple[float, float]:
    params = min(lre(float(a), c) for a, c in zip(x, problem.certified_params))
    return params, lre(rss, problem.certified_rss)


def passed(problem: NistProblem, params: float, rss: float) -> bool:
    """>= 4 digits in every parameter and >= 6 in the RSS (Lanczos1: the RSS of 1.4e-25
    sits below double precision's resolution; see tests/lsq_nist_problems.py)."""
    rss_ok = rss >= 6 or (problem.certified_rss < 1e-20 and rss >= 1.5)
    return params >= 4 and rss_ok


def main() -> None:
    columns = [("graph", lambda p, s: ours(p, s, "graph")),
               ("compiled", lambda p, s: ours(p, s, "compiled"))]
    columns.append(("scipy lm", lambda p, s: scipy_lm(p, s, tight=False)))
    columns.append(("scipy lm tight", lambda p, s: scipy_lm(p, s, tight=True)))
    header = f"{'problem':<10}{'start':>5}  " + "  ".join(
        f"{name + ' x/rss':>20}" for name, _ in columns)
    print("min LRE over the parameters / LRE of the residual sum of squares "
          "(* = below 4 / 6 digits)")
    print(header)
    print("-" * len(header))
    totals = {name: 0 for name, _ in columns}
    for problem in load():
        for start in range(len(problem.starts)):
            cells = []
            for name, run in columns:
                xs, rs = run(problem, start)
                ok = passed(problem, xs, rs)
                totals[name] += ok
                cells.append(f"{xs:8.1f} / {rs:5.1f}{' ' if ok else '*':>3}")
            print(f"{problem.name:<10}{start + 1:>5}  " + "  ".join(f"{c:>20}" for c in cells))
    print("-" * len(header))
    print("runs reaching >= 4 digits in every parameter and >= 6 in the RSS: "
          + ", ".join(f"{name} {totals[name]}/28" for name, _ in columns))


if __name__ == "__main__":
    main()
