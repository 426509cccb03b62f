"""Benchmarks of the optimisers: compiled ``minimize`` vs the eager loop, L-BFGS vs scipy.

Run:  .venv/bin/python benchmarks/bench_optim.py [--quick]

1. ``sa.minimize(method="adam")``, 1000 steps on a 50-joint planar IK loss, against the
   traditional loop (rebuild the graph, ``backward()``, ``Adam.step()``, 1000 times).
   ``minimize`` is timed end to end (build the loss graph, trace, kernel-cache lookup,
   loop, write-back; warm caches, as in a program that solves the same kind of problem
   many times), cold (a graph never compiled before: LLVM compilation included), and
   with a precompiled function; the loop alone is timed too.
2. L-BFGS on the extended Rosenbrock function, n = 1000, from (-1.2, 1, -1.2, 1, ...):
   ``sa.minimize(f, params, method="lbfgs")`` vs ``scipy.optimize.minimize(
   method="L-BFGS-B")`` fed by the same compiled function (``f.value_and_grad``), same
   memory (10), gtol (1e-6, infinity norm) and ftol.

Prints medians over repeats and the ratios. Timings are wall-clock, single thread:
BLAS is limited to one thread (set before numpy loads) so scipy's L-BFGS-B is not
slowed by OpenBLAS threading on small vectors.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import scalar_autograd as sa  # noqa: E402
from scalar_autograd.kinematics import planar_ik_loss  # noqa: E402
from scalar_autograd.optim import LBFGSConfig  # noqa: E402
from scalar_autograd.optim.first_order import run_first_order  # noqa: E402
from scalar_autograd.optim.oracles import BoundOracle  # noqa: E402

TARGET = (20.0, 15.0)


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def angles(n):
    return [sa.Value(0.01 * (i % 7), requires_grad=True) for i in range(n)]


def bench_adam(joints, steps, repeats_eager, repeats_fast):
    lr = 0.01

    def eager():
        params = angles(joints)
        opt = sa.Adam(params, lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            planar_ik_loss(params, TARGET).backward()
            opt.step()
        return [p.data for p in params]

    def end_to_end():
        params = angles(joints)
        r = sa.minimize(planar_ik_loss(params, TARGET), params, method="adam", lr=lr,
                        max_iterations=steps)
        return r

    params = angles(joints)
    compiled = sa.compile(planar_ik_loss(params, TARGET), params)

    def precompiled():
        for p, v in zip(params, angles(joints)):
            p.data = v.data
        return sa.minimize(compiled, params, method="adam", lr=lr, max_iterations=steps)

    oracle = BoundOracle(compiled, joints)
    x0 = np.array([v.data for v in angles(joints)])
    config = sa.optim.AdamConfig(lr=lr)

    def loop_only():
        return run_first_order(oracle, x0, config, steps)

    # correctness first: the same iterates
    reference = np.array(eager())
    result = end_to_end()
    assert np.allclose(result.x, reference, rtol=1e-12, atol=1e-12), \
        np.max(np.abs(result.x - reference))
    end_to_end()  # warm the kernel cache

    t_eager, _ = median_time(eager, repeats_eager)
    t_e2e, all_e2e = median_time(end_to_end, repeats_fast)
    t_pre, _ = median_time(precompiled, repeats_fast)
    t_loop, _ = median_time(loop_only, repeats_fast)
    t_trace, _ = median_time(lambda: sa.compile(planar_ik_loss(params, TARGET), params),
                             repeats_fast)
    t_bind, _ = median_time(lambda: BoundOracle(compiled, joints), repeats_fast)

    cold = []
    for k in range(3):  # new link lengths: new constants, a program never compiled
        lengths = [1.0 + 1e-9 * (k + 1) + 1e-12 * i for i in range(joints)]
        params = angles(joints)
        t0 = time.perf_counter()
        sa.minimize(planar_ik_loss(params, TARGET, lengths), params, method="adam", lr=lr,
                    max_iterations=steps)
        cold.append(time.perf_counter() - t0)
    t_cold = statistics.median(cold)

    print(f"\n[1] Adam, {steps} steps, {joints}-joint planar IK (loss {result.fun:.3g})")
    print(f"  eager rebuild + backward + Adam.step : {t_eager * 1e3:9.2f} ms "
          f"({t_eager / steps * 1e6:.1f} us/step), median of {repeats_eager}")
    print(f"  sa.minimize end to end (warm cache)  : {t_e2e * 1e3:9.3f} ms   "
          f"ratio {t_eager / t_e2e:7.1f}x  (fastest run {min(all_e2e) * 1e3:.3f} ms)")
    print(f"  sa.minimize end to end, cold         : {t_cold * 1e3:9.3f} ms   "
          f"ratio {t_eager / t_cold:7.1f}x  (includes LLVM compilation)")
    print(f"  sa.minimize, precompiled function    : {t_pre * 1e3:9.3f} ms   "
          f"ratio {t_eager / t_pre:7.1f}x")
    print(f"  the loop alone (native)              : {t_loop * 1e3:9.3f} ms   "
          f"ratio {t_eager / t_loop:7.1f}x  ({t_loop / steps * 1e9:.0f} ns/step)")
    print(f"  once per call: build + trace + cache lookup {t_trace * 1e3:.3f} ms; "
          f"once per program and thread: bind {t_bind * 1e3:.3f} ms (pooled)")
    return t_eager, t_e2e


def rosenbrock(p):
    return sa.sum([(1 - p[i]) ** 2 + 100 * (p[i + 1] - p[i] * p[i]) ** 2
                   for i in range(0, len(p), 2)])


def bench_lbfgs(n, repeats):
    import scipy.optimize

    start = np.tile([-1.2, 1.0], n // 2)
    params = [sa.Value(float(v), requires_grad=True) for v in start]
    t0 = time.perf_counter()
    f = sa.compile(rosenbrock(params), params)
    f.value_and_grad(start)
    t_compile = time.perf_counter() - t0
    ftol = LBFGSConfig.ftol

    def ours():
        for p, v in zip(params, start):
            p.data = float(v)
        return sa.minimize(f, params, method="lbfgs", max_iterations=1000,
                           gradient_tolerance=1e-6, ftol=ftol)

    def theirs():
        return scipy.optimize.minimize(f.value_and_grad, start, jac=True, method="L-BFGS-B",
                                       options={"maxcor": 10, "gtol": 1e-6, "ftol": ftol,
                                                "maxiter": 1000})

    r, s = ours(), theirs()
    assert r.success and s.success, (r, s.message)
    t_ours, _ = median_time(ours, repeats)
    t_theirs, _ = median_time(theirs, repeats)
    print(f"\n[2] L-BFGS, extended Rosenbrock n = {n} (compile once: {t_compile:.2f} s)")
    print(f"  sa.minimize(method='lbfgs')          : {t_ours * 1e3:9.2f} ms  "
          f"{r.iterations} iterations, {r.nfev} evaluations, f = {r.fun:.2e}")
    print(f"  scipy L-BFGS-B, same compiled f      : {t_theirs * 1e3:9.2f} ms  "
          f"{s.nit} iterations, {s.nfev} evaluations, f = {s.fun:.2e}")
    print(f"  time ratio ours / scipy              : {t_ours / t_theirs:9.2f}  "
          f"(target <= 1.5)")
    return t_ours, t_theirs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    q = args.quick
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"scalar_autograd {sa.__version__}")
    bench_adam(50, 1000, repeats_eager=3 if q else 7, repeats_fast=11 if q else 51)
    bench_lbfgs(1000, repeats=5 if q else 21)


if __name__ == "__main__":
    main()
