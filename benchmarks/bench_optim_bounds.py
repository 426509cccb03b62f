"""Bounded L-BFGS (L-BFGS-B) against scipy, and 7-DOF IK re-solved for 200 targets.

Run:  .venv/bin/python benchmarks/bench_optim_bounds.py [--quick]

1. Bounded problems (Rosenbrock in a box that binds, n = 2, 10 and 100; a
   bound-constrained quadratic; 7-DOF planar IK with joint limits that bind; mixed
   infinite bounds; a start outside the box): ``sa.optim.lbfgsb_minimize`` against
   ``scipy.optimize.minimize(method="L-BFGS-B")``, both on the same exact oracle
   (numpy, or the compiled IK function), same memory (10), gtol (1e-6, projected
   gradient), ftol and line-search limit (20). Prints the objectives, evaluations,
   iterations and times (medians).
2. 7-DOF planar IK (links 1.0 .. 0.4), 200 targets along a circle, each solve
   warm-started from the last, without and with joint limits (the base joint free in
   [-pi, pi], the others in [-0.9, 0.9], which bind for part of the circle):
   ``sa.lbfgs`` on a compiled loss (the target a runtime input), ``sa.minimize`` on
   the ``Value`` loss passed again with new input data, ``sa.minimize`` on a Python
   function reading the target by closure (``inputs=``), against CasADi (SX function
   of the same loss and its gradient) + scipy L-BFGS-B, and scipy L-BFGS-B on our
   compiled function. Prints ms per target (median over repeats of the 200-target
   sequence), mean evaluations, the largest final distance to the target, and the
   issue's targets: L-BFGS within 1.5x of 0.5 ms per target, >= 5x faster than
   CasADi + scipy L-BFGS-B. CasADi is optional (``n/a`` without it).

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

import numpy as np  # noqa: E402

import scalar_autograd as sa  # noqa: E402
from scalar_autograd.kinematics import planar_ik_loss  # noqa: E402
from scalar_autograd.optim import LBFGSConfig, check_bounds, lbfgsb_minimize  # noqa: E402

LENGTHS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
LIMITS = (np.array([-math.pi] + [-0.9] * 6), np.array([math.pi] + [0.9] * 6))
TARGETS = 200


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------------------- problems
def rosenbrock(x):
    a, b = x[:-1], x[1:]
    f = float(np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2))
    g = np.zeros_like(x)
    g[:-1] += -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
    g[1:] += 200.0 * (b - a * a)
    return f, g


def quadratic(seed=3, m=40, n=15):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, n))
    b = rng.normal(size=m) * 3.0

    def fg(x):
        r = A @ x - b
        return 0.5 * float(r @ r), A.T @ r

    return fg


def ik_function():
    """The 7-DOF IK loss compiled once, the target a runtime input."""
    q = [sa.Value(0.0, label=f"q{i}") for i in range(len(LENGTHS))]
    tx, ty = sa.Value(0.0, label="tx"), sa.Value(0.0, label="ty")
    f = sa.compile(planar_ik_loss(q, (tx, ty), LENGTHS), q, inputs=[tx, ty])
    return f, q, (tx, ty)


def problems():
    f, _, _ = ik_function()

    def ik(target):
        return lambda x: f.value_and_grad(x, target)

    n = 20
    return [
        ("Rosenbrock n=2, box binds", rosenbrock, np.array([-1.2, 1.0]), (-2.0, [0.5, 2.0])),
        ("Rosenbrock n=10, box [-1.5, 0.7]", rosenbrock, np.full(10, -1.0), (-1.5, 0.7)),
        ("Rosenbrock n=100, box [-1.5, 0.7]", rosenbrock, np.full(100, -1.0), (-1.5, 0.7)),
        ("quadratic n=15, box [-0.25, 0.3]", quadratic(), np.zeros(15), (-0.25, 0.3)),
        ("7-DOF IK, joint limits bind", ik((0.3, 1.2)), np.full(7, 0.1), LIMITS),
        ("Rosenbrock n=20, mixed infinite bounds", rosenbrock, np.linspace(-1.0, 1.0, n),
         (np.r_[np.full(8, -np.inf), np.full(12, 0.0)],
          np.r_[np.full(8, 0.8), np.full(6, np.inf), np.full(6, 1.5)])),
        ("Rosenbrock n=4, start outside the box", rosenbrock, np.array([3.0, -4.0, 0.5, 9.0]),
         ([-1.0, -1.0, -np.inf, 0.0], [0.6, 0.5, 1.0, 2.0])),
    ]


def bench_problems(repeats):
    import scipy.optimize

    config = LBFGSConfig(max_iterations=15000, max_line_search=20)
    options = {"maxcor": 10, "gtol": 1e-6, "ftol": LBFGSConfig.ftol, "maxiter": 15000,
               "maxls": 20}
    print("\n[1] bounded problems: sa.optim.lbfgsb_minimize vs scipy L-BFGS-B (same oracle)")
    print(f"  {'problem':40s} {'f ours':>14s} {'f scipy':>14s} {'nfev':>9s} {'nit':>9s} "
          f"{'ms ours':>8s} {'ms scipy':>8s}")
    rows = []
    for name, fg, x0, bounds in problems():
        box = check_bounds(bounds, x0.size)
        scipy_bounds = scipy.optimize.Bounds(box.lower, box.upper)

        def ours(fg=fg, x0=x0, bounds=bounds):
            return lbfgsb_minimize(fg, x0, bounds, config)

        def theirs(fg=fg, x0=x0, scipy_bounds=scipy_bounds):
            return scipy.optimize.minimize(fg, x0, jac=True, method="L-BFGS-B",
                                           bounds=scipy_bounds, options=options)

        r, s = ours(), theirs()
        t_ours, t_theirs = median_time(ours, repeats), median_time(theirs, repeats)
        lower = r.fun <= s.fun + max(1e-10 * abs(s.fun), 1e-12)
        print(f"  {name:40s} {r.fun:14.8g} {s.fun:14.8g} {r.nfev:4d}/{s.nfev:<4d} "
              f"{r.iterations:4d}/{s.nit:<4d} {t_ours * 1e3:8.2f} {t_theirs * 1e3:8.2f}"
              f"{'' if lower and r.nfev <= s.nfev else '  <- loses'}")
        rows.append((name, r, s, t_ours, t_theirs))
    wins = sum(r.fun <= s.fun + max(1e-10 * abs(s.fun), 1e-12) and r.nfev <= s.nfev
               for _, r, s, _, _ in rows)
    print(f"  objective <= scipy's (1e-10 relative) in no more evaluations: "
          f"{wins}/{len(rows)} problems")
    return rows


# ---------------------------------------------------------------------------- IK
def targets():
    angles = np.linspace(0.0, 2.0 * math.pi, TARGETS, endpoint=False)
    return [(1.2 + 1.6 * math.cos(a), 0.8 + 1.6 * math.sin(a)) for a in angles]


def largest_distance(solutions):
    """The largest distance from the end effector to its target (numpy kinematics)."""
    worst = 0.0
    for angles, target in zip(solutions, targets()):
        phi = np.cumsum(angles)
        end = (float(np.dot(LENGTHS, np.cos(phi))), float(np.dot(LENGTHS, np.sin(phi))))
        worst = max(worst, math.hypot(end[0] - target[0], end[1] - target[1]))
    return worst


def ours_ik(kind, bounds):
    """A function running the 200 solves one way; returns (nfev, solutions)."""
    f, q, (tx, ty) = ik_function()
    loss = planar_ik_loss(q, (tx, ty), LENGTHS)

    def function(p):
        return planar_ik_loss(p, (tx, ty), LENGTHS)

    def run():
        for p in q:
            p.data = 0.1
        nfev, solutions = 0, []
        for target in targets():
            if kind == "sa.lbfgs(compiled f, inputs=target)":
                r = sa.lbfgs(f, q, inputs=target, bounds=bounds)
            else:
                tx.data, ty.data = target
                if kind == "sa.minimize(Value loss, inputs=[tx, ty])":
                    r = sa.minimize(loss, q, inputs=[tx, ty], method="lbfgs", bounds=bounds)
                else:
                    r = sa.minimize(function, q, inputs=[tx, ty], method="lbfgs",
                                    bounds=bounds)
            nfev += r.nfev
            solutions.append(r.x)
        return nfev, solutions

    return run


def scipy_ik(evaluate, bounds):
    import scipy.optimize

    scipy_bounds = None if bounds is None else scipy.optimize.Bounds(*bounds)

    def run():
        x = np.full(len(LENGTHS), 0.1)
        nfev, solutions = 0, []
        for target in targets():
            t = np.array(target)
            r = scipy.optimize.minimize(evaluate, x, args=(t,), jac=True, method="L-BFGS-B",
                                        bounds=scipy_bounds, options={"gtol": 1e-6})
            x = r.x
            nfev += r.nfev
            solutions.append(x)
        return nfev, solutions

    return run


def casadi_evaluate():
    try:
        import casadi
    except ImportError:
        return None
    q = casadi.SX.sym("q", len(LENGTHS))
    t = casadi.SX.sym("t", 2)
    phi, x, y = 0, 0, 0
    for i, length in enumerate(LENGTHS):
        phi = phi + q[i]
        x = x + length * casadi.cos(phi)
        y = y + length * casadi.sin(phi)
    loss = (x - t[0]) ** 2 + (y - t[1]) ** 2
    F = casadi.Function("F", [q, t], [loss, casadi.gradient(loss, q)])

    def evaluate(z, target):
        value, grad = F(z, target)
        return float(value), np.asarray(grad).ravel()

    return evaluate


def bench_ik(repeats):
    f, _, _ = ik_function()

    def ours_evaluate(z, target):
        return f.value_and_grad(z, target)

    casadi = casadi_evaluate()
    results = {}
    for label, bounds in (("no limits", None), ("joint limits", LIMITS)):
        print(f"\n[2] 7-DOF planar IK, {TARGETS} warm-started targets, {label} "
              f"(ms per target, median of {repeats})")
        runs = [(kind, ours_ik(kind, bounds)) for kind in (
            "sa.lbfgs(compiled f, inputs=target)",
            "sa.minimize(Value loss, inputs=[tx, ty])",
            "sa.minimize(function, inputs=[tx, ty])")]
        runs.append(("scipy L-BFGS-B on our compiled f", scipy_ik(ours_evaluate, bounds)))
        if casadi is not None:
            runs.append(("CasADi + scipy L-BFGS-B", scipy_ik(casadi, bounds)))
        rows = {}
        for kind, run in runs:
            nfev, solutions = run()        # warm up (compiles, caches), and the results
            t = median_time(run, repeats) / TARGETS
            rows[kind] = t
            print(f"  {kind:42s} {t * 1e3:8.3f} ms   mean nfev {nfev / TARGETS:5.2f}   "
                  f"largest distance {largest_distance(solutions):.1e}")
        if casadi is None:
            print("  CasADi + scipy L-BFGS-B                     n/a (pip install casadi)")
        best = rows["sa.lbfgs(compiled f, inputs=target)"]
        value = rows["sa.minimize(Value loss, inputs=[tx, ty])"]
        print(f"  target: L-BFGS within 1.5x of 0.5 ms per target (<= 0.75 ms): "
              f"compiled {best * 1e3:.3f} ms, Value loss {value * 1e3:.3f} ms")
        if casadi is not None:
            theirs = rows["CasADi + scipy L-BFGS-B"]
            print(f"  target: >= 5x faster than CasADi + scipy L-BFGS-B: compiled "
                  f"{theirs / best:.1f}x, Value loss {theirs / value:.1f}x")
        results[label] = rows
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    q = args.quick
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"scalar_autograd {sa.__version__}")
    bench_problems(repeats=3 if q else 11)
    bench_ik(repeats=3 if q else 7)


if __name__ == "__main__":
    main()
