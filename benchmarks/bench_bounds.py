"""Bounded least squares against scipy's ``least_squares(method="trf")``, and re-solving
inverse kinematics without re-tracing.

Run from the repository root::

    .venv/bin/python benchmarks/bench_bounds.py              # everything
    .venv/bin/python benchmarks/bench_bounds.py --only ik    # or nist, hand, sparse
    .venv/bin/python benchmarks/bench_bounds.py --quick      # fewer repeats and targets

Sections:

* ``nist``: the NIST StRD problems from both starts, with one bound placed half way
  from the start to the certified value of the parameter that moves most (it binds):
  the cost relative to scipy's, ``nfev`` side by side, the active bounds, and the
  median wall time of a whole solve (ours: ``sa.nonlinear_least_squares`` on the
  Values model, tracing included; scipy: numpy residuals and a hand-written Jacobian).
* ``hand``: Rosenbrock in residual form with boxes, exponential fits with positivity
  and two-sided bounds (``tests/lsq_bounded_problems.py``).
* ``sparse``: Broyden's tridiagonal function in a box, as residual blocks with a CSR
  Jacobian (LSMR steps) against scipy's ``tr_solver="lsmr"``.
* ``ik``: a planar 7-joint arm (``scalar_autograd.kinematics``) following 200 targets
  on a path, each solve warm-started from the last: ``nonlinear_least_squares``
  without ``inputs`` (traced every call), with ``inputs=[tx, ty]`` (traced once), a
  residual block re-solved with ``solve(data=...)``, the same with joint limits
  (bounded: trust region reflective), and scipy's ``least_squares`` with a numpy
  forward-kinematics Jacobian. Median milliseconds per target (the first call, which
  traces and compiles, is reported apart).

Tolerances are 1e-10 for both solvers (this package's defaults).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import scalar_autograd as sa  # noqa: E402
from scalar_autograd.kinematics import arm_points, planar_arm_end  # noqa: E402

TOL = 1e-10
OPTS = {"cost_tolerance": TOL, "param_tolerance": TOL, "gradient_tolerance": TOL}
SCIPY_OPTS = {"method": "trf", "ftol": TOL, "xtol": TOL, "gtol": TOL}


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


class Table:
    """A fixed-width table printed row by row."""

    def __init__(self, title: str, columns: list[tuple[str, int]]) -> None:
        self.columns = columns
        print(f"\n== {title} ==")
        print("  ".join(f"{name:>{width}}" for name, width in columns))

    def row(self, *cells: Any) -> None:
        print("  ".join(f"{str(c):>{w}}" for c, (_, w) in zip(cells, self.columns)))


def _rel(ours: float, ref: float) -> str:
    return f"{(ours - ref) / ref:+.1e}" if ref else f"{ours - ref:+.1e}"


COMPARE = [("problem", 34), ("cost rel. scipy", 15), ("nfev ours", 9), ("nfev scipy", 10),
           ("active same", 11), ("ms ours", 9), ("ms scipy", 9)]


# ---------------------------------------------------------------- NIST and hand problems
def _scipy_trf(fun: Any, x0: np.ndarray, jac: Any, lower: np.ndarray, upper: np.ndarray,
               **kwargs: Any) -> Any:
    from scipy.optimize import least_squares

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return least_squares(fun, x0, jac, bounds=(lower, upper), **SCIPY_OPTS, **kwargs)


def _ours(fn: Any, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
          **kwargs: Any) -> sa.LeastSquaresResult:
    return sa.nonlinear_least_squares([sa.Value(v) for v in x0], fn, bounds=(lower, upper),
                                      **OPTS, **kwargs)


def _compare(table: Table, name: str, ours_solve: Callable[[], Any],
             scipy_solve: Callable[[], Any], repeats: int) -> tuple[bool, bool]:
    """One row; returns (cost above scipy's, more nfev than scipy)."""
    ours_solve()                                           # compile once, untimed
    scipy_solve()                                          # imports, caches: untimed
    t_ours, ours = median_time(ours_solve, repeats)
    t_ref, ref = median_time(scipy_solve, repeats)
    table.row(name, _rel(ours.cost, ref.cost), ours.nfev, ref.nfev,
              bool(np.array_equal(ours.active_mask, ref.active_mask)),
              f"{t_ours * 1e3:.2f}", f"{t_ref * 1e3:.2f}")
    return bool(ours.cost > ref.cost * (1 + 1e-10)), bool(ours.nfev > ref.nfev)


def bench_nist(repeats: int) -> None:
    from lsq_bounded_problems import binding_bounds, nist_model
    from lsq_nist_problems import load

    table = Table("NIST StRD with a binding bound (trf, tolerances 1e-10)", COMPARE)
    worse, more = [], []
    for problem in load():
        fun, jac = nist_model(problem)
        fn = problem.residual_fn()
        for start in range(len(problem.starts)):
            x0 = np.array(problem.starts[start], dtype=float)
            lower, upper, _ = binding_bounds(problem, start)
            name = f"{problem.name} start {start + 1}"
            higher, slower = _compare(
                table, name, partial(_ours, fn, x0, lower, upper, max_iterations=1000),
                partial(_scipy_trf, fun, x0, jac, lower, upper, max_nfev=1001), repeats)
            if higher:
                worse.append(name)
            if slower:
                more.append(name)
    print(f"cost above scipy's (1e-10 rel.): {worse or 'none'}; more nfev: {more or 'none'}")


def bench_hand(repeats: int) -> None:
    from lsq_bounded_problems import HAND_CASES, box

    table = Table("hand-written bounded problems (trf, tolerances 1e-10)", COMPARE)
    for name, (fun, jac, fn, x0, lo, hi) in HAND_CASES.items():
        start = np.array(x0, dtype=float)
        lower, upper = box(lo, hi, start.size)
        _compare(table, name, partial(_ours, fn, start, lower, upper),
                 partial(_scipy_trf, fun, start, jac, lower, upper), repeats)


def _solve_problem(problem: sa.LeastSquaresProblem, x0: np.ndarray, lower: np.ndarray,
                   upper: np.ndarray) -> sa.LeastSquaresResult:
    return problem.solve(x0=x0, bounds=(lower, upper), **OPTS)


def bench_sparse(sizes: list[int], repeats: int) -> None:
    from lsq_bounded_problems import broyden, broyden_problem

    table = Table("Broyden tridiagonal in a box, sparse Jacobian (LSMR steps)", COMPARE)
    for n in sizes:
        fun, jac = broyden(n)
        x0 = np.full(n, -0.9)
        lower, upper = np.full(n, -1.2), np.full(n, -0.7)
        problem = broyden_problem(n, x0)
        _compare(table, f"n = {n}", partial(_solve_problem, problem, x0, lower, upper),
                 partial(_scipy_trf, fun, x0, jac, lower, upper, tr_solver="lsmr"), repeats)


# ---------------------------------------------------------------- inverse kinematics
JOINTS = 7


def ik_targets(count: int) -> np.ndarray:
    """A closed path within reach of the 7-joint arm (links of length 1)."""
    s = np.linspace(0.0, 2.0 * np.pi, count, endpoint=False)
    return np.stack([3.5 + 2.0 * np.cos(s), 1.0 + 2.5 * np.sin(s)], axis=1)


def fk_numpy(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """End effector and its Jacobian of the planar arm, in numpy (scipy's peer)."""
    phi = np.cumsum(q)
    c, s = np.cos(phi), np.sin(phi)
    end = np.array([c.sum(), s.sum()])
    # d end / d q_j sums the links from j on
    J = np.stack([-np.cumsum(s[::-1])[::-1], np.cumsum(c[::-1])[::-1]])
    return end, J


def _run_targets(solve: Callable[[np.ndarray], np.ndarray], targets: np.ndarray
                 ) -> tuple[float, float, float, float]:
    """(first call ms, median ms, 90th percentile ms, largest miss) over the targets."""
    times, misses = [], []
    for target in targets:
        t = time.perf_counter()
        q = solve(target)
        times.append(time.perf_counter() - t)
        misses.append(float(np.hypot(*(arm_points(q)[-1] - target))))
    rest = np.array(times[1:]) * 1e3
    return times[0] * 1e3, float(np.median(rest)), float(np.percentile(rest, 90)), max(misses)


def bench_ik(count: int) -> None:
    from scipy.optimize import least_squares

    targets = ik_targets(count)
    table = Table(f"7-joint planar IK, {count} warm-started targets (ms per target)",
                  [("solver", 58), ("first", 8), ("median", 8), ("p90", 8),
                   ("max miss", 9)])
    limits = (-2.0, 2.0)

    def arm() -> tuple[list[sa.Value], sa.Value, sa.Value, Callable[..., Any]]:
        q = [sa.Value(0.3) for _ in range(JOINTS)]
        tx, ty = sa.Value(0.0), sa.Value(0.0)

        def reach(p: list[sa.Value]) -> list[sa.Value]:
            x, y = planar_arm_end(p)
            return [x - tx, y - ty]

        return q, tx, ty, reach

    q, tx, ty, reach = arm()

    def traced_every_call(target: np.ndarray) -> np.ndarray:
        tx.data, ty.data = target
        return sa.nonlinear_least_squares(q, reach).x

    table.row("nonlinear_least_squares, no inputs (traced every call)",
              *_fmt(_run_targets(traced_every_call, targets)))

    q, tx, ty, reach = arm()

    def with_inputs(target: np.ndarray) -> np.ndarray:
        tx.data, ty.data = target
        return sa.nonlinear_least_squares(q, reach, inputs=[tx, ty]).x

    table.row("nonlinear_least_squares(inputs=[tx, ty])",
              *_fmt(_run_targets(with_inputs, targets)))

    def block(p: list[sa.Value], d: list[sa.Value]) -> list[sa.Value]:
        x, y = planar_arm_end(p)
        return [x - d[0], y - d[1]]

    problem = sa.LeastSquaresProblem(np.full(JOINTS, 0.3))
    problem.add_block(block, param_index=[list(range(JOINTS))], data=[[0.0], [0.0]])

    def block_data(target: np.ndarray) -> np.ndarray:
        return problem.solve(data=[[[target[0]], [target[1]]]]).x

    table.row("LeastSquaresProblem block, solve(data=...)",
              *_fmt(_run_targets(block_data, targets)))

    q, tx, ty, reach = arm()

    def bounded(target: np.ndarray) -> np.ndarray:
        tx.data, ty.data = target
        return sa.nonlinear_least_squares(q, reach, inputs=[tx, ty], bounds=limits).x

    table.row(f"nonlinear_least_squares(inputs=..., bounds={limits}) (trf)",
              *_fmt(_run_targets(bounded, targets)))

    state = {"q": np.full(JOINTS, 0.3)}

    def scipy_solve(target: np.ndarray, **kwargs: Any) -> np.ndarray:
        def fun(v: np.ndarray) -> np.ndarray:
            return fk_numpy(v)[0] - target

        def jac(v: np.ndarray) -> np.ndarray:
            return fk_numpy(v)[1]

        x0 = np.clip(state["q"], -1.999, 1.999) if "bounds" in kwargs else state["q"]
        state["q"] = least_squares(fun, x0, jac, ftol=TOL, xtol=TOL, gtol=TOL,
                                   **kwargs).x
        return state["q"]

    table.row("scipy least_squares(method='trf'), numpy FK Jacobian",
              *_fmt(_run_targets(lambda t: scipy_solve(t, method="trf"), targets)))
    state["q"] = np.full(JOINTS, 0.3)
    table.row(f"scipy least_squares(method='trf', bounds={limits})",
              *_fmt(_run_targets(lambda t: scipy_solve(t, method="trf", bounds=limits),
                                 targets)))


def _fmt(stats: tuple[float, float, float, float]) -> list[str]:
    first, median, p90, miss = stats
    return [f"{first:.2f}", f"{median:.3f}", f"{p90:.3f}", f"{miss:.1e}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=["nist", "hand", "sparse", "ik"],
                        help="some sections only")
    parser.add_argument("--quick", action="store_true",
                        help="1 repeat, 50 IK targets, the small sparse problem only")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    only = set(args.only or ["nist", "hand", "sparse", "ik"])
    import scipy

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, scipy "
          f"{scipy.__version__}; medians over {repeats} run(s)")
    if "nist" in only:
        bench_nist(repeats)
    if "hand" in only:
        bench_hand(repeats)
    if "sparse" in only:
        bench_sparse([300] if args.quick else [300, 3000], repeats)
    if "ik" in only:
        bench_ik(50 if args.quick else 200)
    return 0


if __name__ == "__main__":
    sys.exit(main())
