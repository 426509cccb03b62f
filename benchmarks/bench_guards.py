"""Benchmarks of guarded tracing (``sa.jit`` / ``sa.value_and_grad``) and thread latency.

Run:  python benchmarks/bench_guards.py [--quick]

1. Per call: ``sa.value_and_grad(loss)`` of a planar IK loss with one Python ``if`` on
   a traced value (one guard, checked on every call) against the plain
   ``f.value_and_grad`` of the same loss compiled by ``sa.compile`` (no guard) and its
   ``bind()`` form; 5, 20 and 50 joints. Target: guarded <= 1.3x plain.
2. Threads: ``f.value_and_grad`` called from the thread that compiled it and from
   another thread (after that thread's first call, which makes its buffers). Target:
   the other thread within 1.5x.
3. The cost of a guard miss: the first call (trace + compile), a call that takes the
   other branch for the first time (re-trace + compile of the new specialisation),
   and steady calls alternating between the two cached specialisations (one failed
   guard check, then the other specialisation).

Medians over repeats (the machine is shared and noisy); ratios are ours / ours.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import timeit

import numpy as np

import scalar_autograd as sa
from scalar_autograd.kinematics import planar_ik_loss
from scalar_autograd.runtime.cache import KERNELS

TARGET = (2.0, 1.5)


def guarded_loss(q):
    """The IK loss plus a penalty that only applies past a joint limit (one guard)."""
    loss = planar_ik_loss(q, TARGET)
    if q[0] > 3.0:
        loss = loss + (q[0] - 3.0) ** 2
    return loss


def per_call(fn, number, repeats):
    """Median microseconds per call over ``repeats`` timeit batches."""
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeats)) / number * 1e6


def guard_table(joints, repeats, number):
    rows = []
    for n in joints:
        q = [sa.Value(0.0) for _ in range(n)]
        f = sa.compile(planar_ik_loss(q, TARGET), q)
        g = sa.value_and_grad(guarded_loss)
        x = np.full(n, 0.1)
        grad, value = np.zeros(n), np.zeros(1)
        xb = x.copy()
        bound = f.bind(xb, grad, value=value)
        g(x)
        f.value_and_grad(x)
        plain = per_call(lambda: f.value_and_grad(x), number, repeats)   # noqa: B023
        guarded = per_call(lambda: g(x), number, repeats)                # noqa: B023
        bind = per_call(bound, number, repeats)
        rows.append((n, plain, guarded, guarded / plain, bind))
    return rows


def thread_table(joints, repeats, number):
    rows = []
    for n in joints:
        q = [sa.Value(0.0) for _ in range(n)]
        f = sa.compile(planar_ik_loss(q, TARGET), q)
        x = np.full(n, 0.1)
        f.value_and_grad(x)
        here = per_call(lambda: f.value_and_grad(x), number, repeats)    # noqa: B023
        result: dict[str, float] = {}

        def other(f=f, x=x, result=result):
            f.value_and_grad(x)                      # this thread's buffers are made here
            result["t"] = per_call(lambda: f.value_and_grad(x), number, repeats)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        rows.append((n, here, result["t"], result["t"] / here))
    return rows


def miss_table(repeats, number):
    """Trace + compile, re-trace on a miss, and alternating cached specialisations."""
    first, miss = [], []
    for _ in range(repeats):
        KERNELS.clear()
        g = sa.value_and_grad(guarded_loss)
        inside, outside = np.full(5, 0.1), np.array([3.5, 0.1, 0.1, 0.1, 0.1])
        t0 = time.perf_counter()
        g(inside)
        first.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        g(outside)
        miss.append(time.perf_counter() - t0)
    g(inside)
    same = per_call(lambda: g(inside), number, repeats)
    points = [inside, outside]
    state = [0]

    def alternate():
        state[0] ^= 1
        return g(points[state[0]])

    alternating = per_call(alternate, number, repeats)
    return [("first call: trace + compile", statistics.median(first) * 1e3, "ms"),
            ("guard miss: re-trace + compile", statistics.median(miss) * 1e3, "ms"),
            ("hit, same branch as last call", same, "us"),
            ("hits alternating between 2 specialisations", alternating, "us")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    repeats, number = (5, 2000) if args.quick else (9, 20000)
    joints = [5, 20, 50]

    print(f"1. IK value and gradient per call, one guard (median of {repeats} x {number})")
    print("joints  f.value_and_grad us  sa.value_and_grad (guarded) us  ratio  bind() us")
    for n, plain, guarded, ratio, bind in guard_table(joints, repeats, number):
        print(f"{n:>6}  {plain:>19.3f}  {guarded:>30.3f}  {ratio:>5.2f}x  {bind:>9.3f}")

    print(f"\n2. f.value_and_grad per call from the compiling thread and another thread "
          f"(median of {repeats} x {number})")
    print("joints  creating thread us  other thread us  ratio")
    for n, here, there, ratio in thread_table(joints, repeats, number):
        print(f"{n:>6}  {here:>18.3f}  {there:>15.3f}  {ratio:>5.2f}x")

    print(f"\n3. Guard misses, 5-joint IK loss with one guard (median of {repeats})")
    for label, t, unit in miss_table(repeats, number // 4):
        print(f"{label:<45} {t:>9.3f} {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
