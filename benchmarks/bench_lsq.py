"""Least-squares benchmarks: circle fit (graph vs compiled vs scipy), bundle adjustment
(residual blocks + sparse normal equations vs scipy's finite-difference trf), and the
dense/sparse crossover behind ``linear_solver="auto"``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_lsq.py                 # everything
    .venv/bin/python benchmarks/bench_lsq.py --only circle   # or bundle, crossover,
                                                             # bundle-large (minutes)
    .venv/bin/python benchmarks/bench_lsq.py --quick         # smaller sizes, 1 repeat

Prints medians over ``--repeats`` runs and the ratios the issue asks for.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import scalar_autograd as sa  # noqa: E402
from scalar_autograd.lsq.compiled_oracle import CompiledOracle  # noqa: E402
from scalar_autograd.lsq.graph_oracle import GraphOracle  # noqa: E402
from scalar_autograd.lsq.levenberg_marquardt import levenberg_marquardt  # noqa: E402
from scalar_autograd.lsq.options import SolverOptions  # noqa: E402


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


# ---------------------------------------------------------------- circle fit
def circle_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    xs = 1.5 + 3.0 * np.cos(angle) + rng.normal(scale=0.1, size=n)
    ys = -0.5 + 3.0 * np.sin(angle) + rng.normal(scale=0.1, size=n)
    return xs, ys


def bench_circle(n: int, repeats: int, graph_repeats: int) -> None:
    from scipy.optimize import least_squares

    xs, ys = circle_data(n)
    x0 = np.array([0.0, 0.0, 1.0])
    print(f"\n== circle fit, {n} noisy points, start {x0.tolist()} ==")
    xl, yl = xs.tolist(), ys.tolist()

    def residual_fn(p: list[sa.Value]) -> list[sa.Value]:
        cx, cy, r = p
        return [sa.sqrt((x - cx) ** 2 + (y - cy) ** 2) - r for x, y in zip(xl, yl)]

    params = [sa.Value(v, requires_grad=True) for v in x0]

    # per iteration: one Jacobian (accepted point) + one residual evaluation (trial)
    graph = GraphOracle(params, residual_fn)
    t_graph, _ = median_time(lambda: (graph.residuals_and_jacobian(x0), graph.residuals(x0)),
                             graph_repeats)
    t_setup, compiled = median_time(lambda: CompiledOracle(params, residual_fn, "auto"), 1)
    t_comp, _ = median_time(lambda: (compiled.residuals_and_jacobian(x0),
                                     compiled.residuals(x0)), max(repeats, 5))
    print(f"per iteration (J + trial r): graph {t_graph * 1e3:9.1f} ms   compiled "
          f"{t_comp * 1e3:7.2f} ms   ratio {t_graph / t_comp:7.0f}x   "
          f"(compiled setup: trace+group+compile {t_setup:.2f} s, "
          f"{compiled.n_groups} group(s))")

    def ours_residual_fn() -> sa.LeastSquaresResult:
        p = [sa.Value(v) for v in x0]
        return sa.nonlinear_least_squares(p, residual_fn, jacobian="compiled")

    def ours_block() -> sa.LeastSquaresResult:
        problem = sa.LeastSquaresProblem(x0)
        problem.add_block(lambda p, d: sa.sqrt((d[0] - p[0]) ** 2 + (d[1] - p[1]) ** 2) - p[2],
                          param_index=np.tile(np.arange(3), (n, 1)), data=[xs, ys])
        return problem.solve()

    def fun(p: np.ndarray) -> np.ndarray:
        return np.hypot(xs - p[0], ys - p[1]) - p[2]

    def jac(p: np.ndarray) -> np.ndarray:
        d = np.hypot(xs - p[0], ys - p[1])
        return np.stack([-(xs - p[0]) / d, -(ys - p[1]) / d, -np.ones_like(d)], axis=1)

    t_rf, res_rf = median_time(ours_residual_fn, repeats)
    t_blk, res_blk = median_time(ours_block, repeats)
    t_lm, ref_lm = median_time(lambda: least_squares(fun, x0, jac=jac, method="lm"), repeats)
    t_trf, ref_trf = median_time(lambda: least_squares(fun, x0, jac=jac, method="trf"), repeats)
    print(f"end to end: residual_fn compiled {t_rf:7.3f} s ({res_rf.iterations} it, "
          f"LM loop {res_rf.time:.3f} s, {res_rf.time / res_rf.iterations * 1e3:.2f} ms/it)")
    print(f"            ResidualBlock        {t_blk:7.3f} s ({res_blk.iterations} it, "
          f"LM loop {res_blk.time:.3f} s)")
    print(f"            scipy lm  + numpy J  {t_lm:7.3f} s ({ref_lm.nfev} nfev)   "
          f"block/scipy-lm speed-up {t_lm / t_blk:5.2f}x   residual_fn/scipy-lm "
          f"{t_lm / t_rf:5.2f}x")
    print(f"            scipy trf + numpy J  {t_trf:7.3f} s ({ref_trf.nfev} nfev)   "
          f"block/scipy-trf speed-up {t_trf / t_blk:5.2f}x")
    print(f"costs: residual_fn {res_rf.cost:.10g}  block {res_blk.cost:.10g}  "
          f"scipy lm {ref_lm.cost:.10g}  trf {ref_trf.cost:.10g}")


# ---------------------------------------------------------------- bundle adjustment
def bench_bundle(n_cameras: int, n_points: int, n_obs: int, repeats: int,
                 scipy_repeats: int) -> None:
    from scipy.optimize import least_squares

    from lsq_bundle import make_bundle

    b = make_bundle(n_cameras, n_points, n_obs, seed=0)
    print(f"\n== bundle adjustment: {n_cameras} cameras, {n_points} points, {n_obs} "
          f"observations; n = {b.x0.size}, m = {2 * n_obs} ==")
    runs: list[sa.LeastSquaresResult] = []

    def ours() -> sa.LeastSquaresResult:
        result = b.problem().solve()
        runs.append(result)
        return result

    t_cold, res = median_time(ours, 1)           # includes compiling the kernel
    t_warm, res = median_time(ours, repeats)     # kernel cached in-process
    S = b.sparsity()
    t_sp, ref = median_time(lambda: least_squares(b.numpy_residuals, b.x0, jac_sparsity=S,
                                                  method="trf", x_scale="jac"),
                            scipy_repeats)
    rel = abs(res.cost - ref.cost) / ref.cost
    kind = "sparse" if hasattr(res.jacobian, "tocsr") else "dense"
    print(f"ours (ResidualBlock, compiled, {kind}): first run {t_cold:.2f} s (incl. JIT "
          f"compile), median {t_warm:.2f} s, {res.iterations} it, LM loop {res.time:.2f} s, "
          f"cost {res.cost:.10g}, {res.status.name}")
    print(f"scipy least_squares(trf, jac_sparsity, x_scale='jac', 2-point FD): median "
          f"{t_sp:.2f} s, nfev {ref.nfev}, njev {ref.njev}, cost {ref.cost:.10g}")
    print(f"speed-up: {t_sp / t_cold:.1f}x (first run), {t_sp / t_warm:.1f}x (median); "
          f"final cost relative difference {rel:.2e} (ours lower: {res.cost <= ref.cost})")


def bench_bundle_large(n_cameras: int, n_points: int, n_obs: int) -> None:
    """A bundle adjustment too large for a dense ``Z`` (n_R |E| = 1e8): the native Schur
    complement against our own generic sparse Cholesky path (scipy's finite-difference
    trf is left out: minutes at this size). One run each, first run incl. compile."""
    from lsq_bundle import make_bundle

    b = make_bundle(n_cameras, n_points, n_obs, seed=0)
    print(f"\n== large bundle adjustment: {n_cameras} cameras, {n_points} points, {n_obs} "
          f"observations; n = {b.x0.size}, m = {2 * n_obs} ==")
    t_schur, res = median_time(lambda: b.problem().solve(), 1)
    t_generic, ref = median_time(lambda: b.problem().solve(linear_solver="sparse_cholesky"), 1)
    print(f"Schur complement (auto): {t_schur:.2f} s, {res.iterations} it, cost "
          f"{res.cost:.10g}; generic sparse Cholesky: {t_generic:.2f} s, {ref.iterations} it, "
          f"cost {ref.cost:.10g}; ratio {t_generic / t_schur:.0f}x")


# ---------------------------------------------------------------- crossover
def bench_crossover(repeats: int) -> None:
    from lsq_bundle import make_bundle

    print("\n== dense vs sparse normal equations, per LM iteration (block problems) ==")
    print(f"{'n params':>9} {'m':>7} {'density':>8} {'dense ms':>9} {'sparse ms':>10} "
          f"{'dense/sparse':>12}")
    for n_cameras, n_points in [(2, 20), (3, 40), (4, 90), (6, 200), (8, 400), (10, 800)]:
        n_obs = 5 * n_points
        b = make_bundle(n_cameras, n_points, n_obs, seed=1)
        problem = b.problem()
        times = {}
        for sparse in (False, True):
            asm = problem.assembler(sparse=sparse)
            opts = SolverOptions(max_iterations=5, cost_tolerance=0.0, param_tolerance=0.0,
                                 gradient_tolerance=0.0)

            def run(asm: Any = asm, opts: SolverOptions = opts, x0: Any = b.x0) -> Any:
                return levenberg_marquardt(asm.residuals_and_jacobian, asm.residuals, x0,
                                           opts)

            run()
            t, res = median_time(run, repeats)
            times[sparse] = t / max(1, res.iterations)
        n, m = b.x0.size, 2 * n_obs
        print(f"{n:>9} {m:>7} {10 / n:>8.3f} {times[False] * 1e3:>9.2f} "
              f"{times[True] * 1e3:>10.2f} {times[False] / times[True]:>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["circle", "bundle", "crossover", "bundle-large"],
                        help="one section; bundle-large (minutes) runs only when named")
    parser.add_argument("--quick", action="store_true", help="smaller problems, 1 repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}; medians over "
          f"{repeats} run(s)")
    if args.only in (None, "circle"):
        bench_circle(10_000 if args.quick else 100_000, repeats,
                     graph_repeats=1 if args.quick else 3)
    if args.only in (None, "bundle"):
        if args.quick:
            bench_bundle(10, 1_000, 10_000, 1, 1)
        else:
            bench_bundle(50, 10_000, 100_000, repeats, scipy_repeats=3)
    if args.only in (None, "crossover"):
        bench_crossover(repeats)
    if args.only == "bundle-large":
        bench_bundle_large(100, 50_000, 300_000)


if __name__ == "__main__":
    main()
