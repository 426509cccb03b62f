"""Trust-region Newton against scipy's trust-exact and trust-ncg (and L-BFGS for reference).

Run:  .venv/bin/python benchmarks/bench_newton.py [--quick]

1. Problems (Rosenbrock n = 2, the extended Rosenbrock function n = 10 and 100 from the
   alternating start (-1.2, 1, ...), a convex quadratic n = 20 with eigenvalues 1..100,
   a function whose Hessian is indefinite at the start with the gradient orthogonal to
   the negative curvature (the hard case) and the same start moved off the axis, the
   7-DOF planar IK loss to a reachable target): ``newton_minimize`` on the compiled
   function (its Hessian and HVP kernels: ``newton`` chooses the subproblem by n,
   ``newton-cg`` forces Steihaug-CG) against ``scipy.optimize.minimize`` with
   ``trust-exact`` (exact Hessian) and ``trust-ncg`` (exact Hessian-vector products),
   written by hand in numpy, all with ``gtol = 1e-8`` (ours on the infinity norm,
   scipy's on the 2-norm). For reference: our L-BFGS and scipy's L-BFGS-B on the same
   compiled gradient (``gtol = 1e-8``, ``ftol = 1e-15``). Prints the objective,
   iterations, evaluations and median time of a solve (kernels already compiled), the
   Hessian kernel's build time, and checks the issue's target: the minimum trust-exact
   reaches, in at most 1.5x its iterations.
2. 7-DOF IK, 200 targets along a circle, each solve warm-started from the last (the
   target a runtime input): ms per target and mean iterations for Newton, Newton-CG and
   L-BFGS (all ours, on one compiled function).

Timings are wall-clock, single thread (BLAS limited to one thread before numpy loads).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import scalar_autograd as sa  # noqa: E402
from scalar_autograd.kinematics import planar_ik_loss  # noqa: E402
from scalar_autograd.optim import LBFGSConfig, lbfgs_minimize  # noqa: E402
from scalar_autograd.optim.newton import (  # noqa: E402
    NewtonConfig,
    compiled_oracle,
    newton_minimize,
)

GTOL = 1e-8
LBFGS = LBFGSConfig(gradient_tolerance=GTOL, ftol=1e-15, max_iterations=15000)
LENGTHS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
TARGETS = 200


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------------------- problems
# (fun, grad, hess, hvp) in numpy by hand for scipy, and the same as a Value graph
def rosenbrock() -> tuple[Any, ...]:
    def fun(x: np.ndarray) -> float:
        a, b = x[:-1], x[1:]
        return float(np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2))

    def grad(x: np.ndarray) -> np.ndarray:
        a, b = x[:-1], x[1:]
        g = np.zeros_like(x)
        g[:-1] += -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
        g[1:] += 200.0 * (b - a * a)
        return g

    def hess(x: np.ndarray) -> np.ndarray:
        n = x.size
        h = np.zeros((n, n))
        a, b = x[:-1], x[1:]
        i = np.arange(n - 1)
        h[i, i] += 1200.0 * a * a - 400.0 * b + 2.0
        h[i + 1, i + 1] += 200.0
        h[i, i + 1] = h[i + 1, i] = -400.0 * a
        return h

    def hvp(x: np.ndarray, v: np.ndarray) -> np.ndarray:
        a, b = x[:-1], x[1:]
        hv = np.zeros_like(x)
        hv[:-1] += (1200.0 * a * a - 400.0 * b + 2.0) * v[:-1] - 400.0 * a * v[1:]
        hv[1:] += 200.0 * v[1:] - 400.0 * a * v[:-1]
        return hv

    def build(v: list[sa.Value]) -> sa.Value:
        return sa.sum([100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2
                       for a, b in zip(v[:-1], v[1:])])

    return fun, grad, hess, hvp, build


def quadratic(n: int = 20, seed: int = 4) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = q @ np.diag(np.logspace(0, 2, n)) @ q.T
    a = 0.5 * (a + a.T)
    b = rng.normal(size=n) * 5.0

    def build(v: list[sa.Value]) -> sa.Value:
        ax = [sa.sum([float(a[i, j]) * v[j] for j in range(n)]) for i in range(n)]
        return 0.5 * sa.sum([v[i] * ax[i] for i in range(n)]) - \
            sa.sum([float(b[i]) * v[i] for i in range(n)])

    return (lambda x: float(0.5 * x @ a @ x - b @ x), lambda x: a @ x - b, lambda x: a,
            lambda x, v: a @ v, build)


def saddle() -> tuple[Any, ...]:
    def hess(x: np.ndarray) -> np.ndarray:
        a, b = x
        return np.array([[3 * a * a - 1 + 0.2 * b * b, 0.4 * a * b],
                         [0.4 * a * b, 1 + 0.2 * a * a]])

    def build(v: list[sa.Value]) -> sa.Value:
        a, b = v
        return 0.25 * a**4 - 0.5 * a * a + 0.5 * b * b + 0.1 * a * a * b * b

    return (lambda x: float(0.25 * x[0]**4 - 0.5 * x[0]**2 + 0.5 * x[1]**2
                            + 0.1 * x[0]**2 * x[1]**2),
            lambda x: np.array([x[0]**3 - x[0] + 0.2 * x[0] * x[1]**2,
                                x[1] + 0.2 * x[0]**2 * x[1]]),
            hess, lambda x, v: hess(x) @ v, build)


def ik(target: tuple[float, float]) -> tuple[Any, ...]:
    lengths, t = np.array(LENGTHS), np.asarray(target)

    def parts(q: np.ndarray) -> tuple[np.ndarray, ...]:
        phi = np.cumsum(q)
        c, s = lengths * np.cos(phi), lengths * np.sin(phi)
        r = np.array([c.sum() - t[0], s.sum() - t[1]])
        tail_c, tail_s = np.cumsum(c[::-1])[::-1], np.cumsum(s[::-1])[::-1]
        return r, np.vstack([-tail_s, tail_c]), tail_c, tail_s

    def hess(q: np.ndarray) -> np.ndarray:
        r, jac, tail_c, tail_s = parts(q)
        k = np.maximum.outer(np.arange(q.size), np.arange(q.size))
        return 2.0 * (jac.T @ jac - r[0] * tail_c[k] - r[1] * tail_s[k])

    return (lambda q: float(parts(q)[0] @ parts(q)[0]),
            lambda q: 2.0 * parts(q)[1].T @ parts(q)[0], hess, lambda q, v: hess(q) @ v,
            lambda q: planar_ik_loss(q, target, LENGTHS))


def problems(quick: bool) -> list[tuple[str, tuple[Any, ...], np.ndarray]]:
    out = [
        ("Rosenbrock n=2", rosenbrock(), np.array([-1.2, 1.0])),
        ("ext. Rosenbrock n=10", rosenbrock(), np.tile([-1.2, 1.0], 5)),
        ("ext. Rosenbrock n=100", rosenbrock(), np.tile([-1.2, 1.0], 50)),
        ("convex quadratic n=20", quadratic(), np.zeros(20)),
        ("indefinite start, hard case", saddle(), np.array([0.0, 1.0])),
        ("indefinite start, off axis", saddle(), np.array([0.01, 1.0])),
        ("7-DOF IK", ik((1.5, 2.0)), np.full(7, 0.1)),
    ]
    return [p for p in out if not (quick and "n=100" in p[0])]


def bench_problems(quick: bool, repeats: int) -> list[dict[str, Any]]:
    import scipy.optimize

    print(f"\n[1] Newton vs scipy trust-exact / trust-ncg, gtol {GTOL:g} "
          f"(median ms of {repeats} solves, kernels compiled)")
    print(f"  {'problem':30s} {'solver':24s} {'f':>14s} {'nit':>5s} {'nfev':>5s} "
          f"{'ms':>8s}")
    rows = []
    for name, (fun, grad, hess, hvp, build), x0 in problems(quick):
        leaves = [sa.Value(0.3) for _ in x0]
        f = sa.compile(build(leaves), leaves)
        f.value_and_grad(x0)
        t0 = time.perf_counter()
        f.hessian(x0)
        build_hessian = time.perf_counter() - t0
        t0 = time.perf_counter()
        f.hvp(x0, x0)
        build_hvp = time.perf_counter() - t0
        oracle = compiled_oracle(f)

        def fg(x: np.ndarray, f: Any = f) -> tuple[float, np.ndarray]:
            value, g = f.value_and_grad(x)
            return value, g

        solvers: dict[str, Callable[[], Any]] = {
            "newton (auto)": lambda x0=x0, oracle=oracle: newton_minimize(
                oracle, x0, NewtonConfig(gradient_tolerance=GTOL)),
            "newton-cg": lambda x0=x0, oracle=oracle: newton_minimize(
                oracle, x0, NewtonConfig(subproblem="cg", gradient_tolerance=GTOL)),
            "scipy trust-exact": lambda x0=x0, fun=fun, grad=grad, hess=hess:
                scipy.optimize.minimize(fun, x0, jac=grad, hess=hess, method="trust-exact",
                                        options={"gtol": GTOL}),
            "scipy trust-ncg": lambda x0=x0, fun=fun, grad=grad, hvp=hvp:
                scipy.optimize.minimize(fun, x0, jac=grad, hessp=hvp, method="trust-ncg",
                                        options={"gtol": GTOL}),
            "ours L-BFGS (reference)": lambda x0=x0, fg=fg: lbfgs_minimize(fg, x0, LBFGS),
            "scipy L-BFGS-B (reference)": lambda x0=x0, fg=fg: scipy.optimize.minimize(
                fg, x0, jac=True, method="L-BFGS-B",
                options={"gtol": GTOL, "ftol": 1e-15, "maxiter": 15000}),
        }
        results: dict[str, tuple[float, int, int, float]] = {}
        for label, solve in solvers.items():
            r = solve()
            seconds = median_time(solve, repeats)
            nit = r.iterations if hasattr(r, "iterations") else r.nit
            results[label] = (float(r.fun), int(nit), int(r.nfev), seconds)
            print(f"  {name:30s} {label:24s} {r.fun:14.6e} {nit:5d} {r.nfev:5d} "
                  f"{seconds * 1e3:8.2f}")
        print(f"  {'':30s} Hessian kernel built in {build_hessian:.3f} s, HVP kernel in "
              f"{build_hvp:.3f} s ({f._entry.second_order_kernel('hessian').backend})")
        ours, theirs = results["newton (auto)"], results["scipy trust-exact"]
        ok = abs(ours[0] - theirs[0]) <= 1e-9 * max(1.0, abs(theirs[0])) and \
            ours[1] <= 1.5 * theirs[1]
        rows.append({"problem": name, "ok": ok, **{k: v for k, v in results.items()}})
    wins = sum(row["ok"] for row in rows)
    print(f"  target: the minimum trust-exact reaches in <= 1.5x its iterations: "
          f"{wins}/{len(rows)} problems")
    return rows


# ---------------------------------------------------------------------------- IK
def circle() -> list[tuple[float, float]]:
    angles = np.linspace(0.0, 2.0 * math.pi, TARGETS, endpoint=False)
    return [(1.2 + 1.6 * math.cos(a), 0.8 + 1.6 * math.sin(a)) for a in angles]


def bench_ik(repeats: int) -> dict[str, float]:
    q = [sa.Value(0.0) for _ in LENGTHS]
    tx, ty = sa.Value(0.0), sa.Value(0.0)
    f = sa.compile(planar_ik_loss(q, (tx, ty), LENGTHS), q, inputs=[tx, ty])
    print(f"\n[2] 7-DOF planar IK, {TARGETS} warm-started targets (ms per target, median "
          f"of {repeats}; gtol 1e-8, L-BFGS with ftol 0)")

    def newton(subproblem: str) -> Callable[[], tuple[int, float]]:
        config = NewtonConfig(subproblem=subproblem, gradient_tolerance=GTOL)

        def run() -> tuple[int, float]:
            x, iterations, worst = np.full(7, 0.1), 0, 0.0
            for target in circle():
                r = newton_minimize(compiled_oracle(f, target), x, config)
                x, iterations, worst = r.x, iterations + r.iterations, max(worst, r.fun)
            return iterations, worst

        return run

    def lbfgs() -> tuple[int, float]:
        config = LBFGSConfig(gradient_tolerance=GTOL, ftol=0.0)
        x, iterations, worst = np.full(7, 0.1), 0, 0.0
        for target in circle():
            r = lbfgs_minimize(lambda z, t=target: f.value_and_grad(z, t), x, config)
            x, iterations, worst = r.x, iterations + r.iterations, max(worst, r.fun)
        return iterations, worst

    rows = {}
    for label, run in (("newton (auto: exact)", newton("auto")),
                       ("newton-cg", newton("cg")), ("L-BFGS", lbfgs)):
        iterations, worst = run()
        seconds = median_time(run, repeats) / TARGETS
        rows[label] = seconds
        print(f"  {label:22s} {seconds * 1e3:8.3f} ms   mean iterations "
              f"{iterations / TARGETS:6.2f}   largest distance {math.sqrt(worst):.1e}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, no n = 100 problem")
    args = parser.parse_args(argv)
    quick = args.quick
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"scalar_autograd {sa.__version__}")
    bench_problems(quick, repeats=3 if quick else 11)
    bench_ik(repeats=3 if quick else 7)


if __name__ == "__main__":
    main()
