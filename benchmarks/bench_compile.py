"""Benchmark compile latency: from an IK loss graph to its first gradient, by phase.

Issue 13's target: ``sa.compile(loss, angles)`` followed by the first
``f.value_and_grad(x)`` takes at most 5 ms for a planar IK loss with 5 joints and 20 ms
with 50, with no regression in per-call latency (``value_and_grad`` and ``bind()``).

Tables:

1. **Time to first gradient** for IK 5/20/50 joints: ``sa.compile`` + the first
   ``value_and_grad``, the median of ``--repeats`` fresh compiles (a fresh graph each
   time and an empty kernel cache, ``scalar_autograd.runtime.cache.KERNELS``), with the
   disk cache off, cold (an empty directory each time: compile and save) and warm (load
   the saved kernel), and in a fresh process (one-time set-up included). CasADi SX
   beside it: expression, ``gradient`` + ``Function`` construction + first call. The
   calling thread's CPU time beside the wall time: on a shared machine, the wall time
   also counts the waits for a core.
2. **Phases** of the same pipeline, run by hand with the functions ``sa.compile`` uses:
   trace, the cache key (the program's encoding), reverse mode with lowering, LLVM text
   generation, LLVM (parse, verify, passes, code generation: the engine's own timings
   when it records them), the bound zero-argument call, the first call. When the
   kernel compiles in tiers, also how long ``tier_up()`` takes to install the final
   code at once ("LLVM final code": its whole compile; the background worker does it
   once the process has been quiet for 50 ms).
3. **Per-call latency** once the final code runs: ``value_and_grad`` and the bound
   call of ``f.bind``, for the same losses (timeit batches, median).

Every figure is a median over repeats in this one process; the machine may be shared,
so repeat the run and compare medians. Run:

    python benchmarks/bench_compile.py [--repeats 15] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

import scalar_autograd as sa
from scalar_autograd.backends.llvm import LLVMBackend, generate
from scalar_autograd.ir import autodiff
from scalar_autograd.ir.trace import trace
from scalar_autograd.kinematics import planar_ik_loss
from scalar_autograd.runtime.cache import KERNELS

try:  # as a package module (python -m benchmarks) or as a script
    from benchmarks.bench_jit import TARGET, per_call, print_table
except ImportError:  # pragma: no cover - script mode
    from bench_jit import TARGET, per_call, print_table  # type: ignore[no-redef]

SIZES = (5, 20, 50)
"""Joints of the IK losses."""


def ik_graph(n: int) -> tuple[list[sa.Value], sa.Value]:
    """Fresh joint-angle leaves and the IK loss built on them."""
    angles = [sa.Value(0.0) for _ in range(n)]
    return angles, planar_ik_loss(angles, TARGET)


def start_point(n: int) -> np.ndarray:
    """The point of the first gradient (not the traced one)."""
    return np.linspace(0.1, 0.5, n)


def _settle(f: Any) -> None:
    """Wait until ``f``'s gradient kernel runs its final code (a no-op without tiers)."""
    kernel = f._entry.deriv_kernel()
    tier_up = getattr(kernel, "tier_up", None)
    if tier_up is not None:
        tier_up()


def _median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


# ----------------------------------------------------------------------------- 1. total

def first_gradient(n: int, repeats: int, disk: str) -> dict[str, float]:
    """Median ms of ``sa.compile`` and of the first ``value_and_grad``, over fresh graphs.

    ``disk``: ``"off"`` (no disk cache), ``"cold"`` (an empty cache directory each
    time: compile and save) or ``"warm"`` (a directory holding the kernel: load it).
    """
    x = start_point(n)
    compile_s: list[float] = []
    first_s: list[float] = []
    cpu_s: list[float] = []
    with tempfile.TemporaryDirectory() as warm_dir:
        if disk == "warm":  # fill it once
            sa.set_cache_dir(warm_dir)
            angles, loss = ik_graph(n)
            KERNELS.clear()
            sa.compile(loss, angles).value_and_grad(x)
        for r in range(repeats + 1):          # the first run warms up imports
            angles, loss = ik_graph(n)
            KERNELS.clear()
            gc.collect()
            with tempfile.TemporaryDirectory() as cold_dir:
                sa.set_cache_dir({"off": None, "cold": cold_dir, "warm": warm_dir}[disk])
                try:
                    c0 = time.thread_time()
                    t0 = time.perf_counter()
                    f = sa.compile(loss, angles)
                    t1 = time.perf_counter()
                    f.value_and_grad(x)
                    t2 = time.perf_counter()
                    c2 = time.thread_time()
                    _settle(f)   # no background work into the next sample
                finally:
                    sa.set_cache_dir(None)
            if r:
                compile_s.append(t1 - t0)
                first_s.append(t2 - t1)
                cpu_s.append(c2 - c0)
    total = [a + b for a, b in zip(compile_s, first_s, strict=True)]
    return {"compile ms": _median_ms(compile_s), "first value_and_grad ms": _median_ms(first_s),
            "to first gradient ms": _median_ms(total),
            "to first gradient, thread CPU ms": _median_ms(cpu_s)}


_COLD = """
import sys, time
import numpy as np
import scalar_autograd as sa
from scalar_autograd.kinematics import planar_ik_loss
sa.set_cache_dir(None)
n = int(sys.argv[1])
angles = [sa.Value(0.0) for _ in range(n)]
loss = planar_ik_loss(angles, (2.0, 1.5))
x = np.linspace(0.1, 0.5, n)
t = time.perf_counter()
sa.compile(loss, angles).value_and_grad(x)
print(time.perf_counter() - t)
"""


def cold_first_gradient(n: int, runs: int) -> float:
    """Median ms to the first gradient in fresh processes (after the imports): the
    one-time set-up (LLVM, the host CPU queries, the first page of bound-call stubs)
    included."""
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _COLD, str(n)], capture_output=True,
                             text=True, check=True)
        times.append(float(out.stdout.split()[-1]))
    return _median_ms(times)


def casadi_first_gradient(n: int, repeats: int) -> dict[str, float] | None:
    """CasADi SX: median ms of the expression, and of gradient + Function + first call."""
    try:
        import casadi as ca
    except ImportError:
        return None
    x = start_point(n)
    build_s: list[float] = []
    function_s: list[float] = []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        theta = ca.SX.sym("theta", n)
        phi = ca.cumsum(theta)
        loss = (ca.sum1(ca.cos(phi)) - TARGET[0]) ** 2 + (ca.sum1(ca.sin(phi)) - TARGET[1]) ** 2
        t1 = time.perf_counter()
        F = ca.Function("F", [theta], [loss, ca.gradient(loss, theta)])
        value = float(F(x)[0])
        t2 = time.perf_counter()
        if r:
            build_s.append(t1 - t0)
            function_s.append(t2 - t1)
    phi_np = np.cumsum(x)
    expected = (np.cos(phi_np).sum() - TARGET[0]) ** 2 + (np.sin(phi_np).sum() - TARGET[1]) ** 2
    if abs(value - expected) > 1e-9 * max(1.0, abs(expected)):
        raise RuntimeError(f"CasADi computes another loss: {value} vs {expected}")
    total = [a + b for a, b in zip(build_s, function_s, strict=True)]
    return {"CasADi SX expression ms": _median_ms(build_s),
            "CasADi gradient+Function+call ms": _median_ms(function_s),
            "CasADi total ms": _median_ms(total)}


def first_gradient_table(sizes: tuple[int, ...], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        row: dict[str, Any] = {"joints": n}
        off = first_gradient(n, repeats, "off")
        row.update(off)
        row["disk cold ms"] = first_gradient(n, repeats, "cold")["to first gradient ms"]
        row["disk warm ms"] = first_gradient(n, repeats, "warm")["to first gradient ms"]
        row["fresh process ms"] = cold_first_gradient(n, max(3, repeats // 3))
        cas = casadi_first_gradient(n, repeats)
        if cas is not None:
            row.update(cas)
            row["CasADi / ours"] = cas["CasADi total ms"] / off["to first gradient ms"]
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- 2. phases

def phases(n: int, repeats: int) -> dict[str, Any]:
    """Median ms of each phase of the pipeline, run by hand on fresh graphs."""
    x = start_point(n)
    samples: dict[str, list[float]] = {}
    n_instructions = 0
    clock = time.perf_counter
    for r in range(repeats + 1):
        angles, loss = ik_graph(n)
        gc.collect()
        t0 = clock()
        program, _ = trace([loss], angles)
        t1 = clock()
        program.key()
        t2 = clock()
        lowered = autodiff.reverse(program, lower=True, n_diff=1)
        t3 = clock()
        generate(lowered)
        t4 = clock()
        kernel = LLVMBackend().compile(lowered)
        t5 = clock()
        call = kernel.bind(x.copy(), np.zeros(0), np.zeros(1), np.zeros(n),
                           np.zeros(max(kernel.n_scratch, 1)))
        t6 = clock()
        call()
        t7 = clock()
        tier_up = getattr(kernel, "tier_up", None)
        if tier_up is not None:
            tier_up()
        t8 = clock()
        if not r:
            continue
        n_instructions = lowered.n_instructions
        timings = dict(getattr(kernel, "timings", None) or {})
        times = {"trace": t1 - t0, "cache key": t2 - t1, "reverse mode + lower": t3 - t2,
                 "LLVM text": t4 - t3,
                 **{f"LLVM {phase}": seconds for phase, seconds in timings.items()},
                 "native compile (text + LLVM)": t5 - t4, "bind": t6 - t5,
                 "first call": t7 - t6, "sum": t7 - t0}
        if tier_up is not None:
            times["tier_up() done after"] = t8 - t4
        for name, seconds in times.items():
            samples.setdefault(name, []).append(seconds)
        del call, kernel
    row: dict[str, Any] = {"joints": n, "instructions": n_instructions}
    row.update({f"{name} ms": _median_ms(values) for name, values in samples.items()})
    return row


# ----------------------------------------------------------------------------- 3. per call

def latency(n: int, repeats: int) -> dict[str, Any]:
    """Per-call ``value_and_grad`` and bound-call latency (us), final code."""
    angles, loss = ik_graph(n)
    KERNELS.clear()
    f = sa.compile(loss, angles)
    x = start_point(n)
    f.value_and_grad(x)
    _settle(f)
    grad, value = np.zeros(n), np.zeros(1)
    bound = f.bind(x, grad, value=value)
    bound()
    v, g = f.value_and_grad(x)
    if v != value[0] or not np.array_equal(g, grad):
        raise RuntimeError("bind() and value_and_grad disagree")
    return {"joints": n,
            "value_and_grad us": 1e6 * per_call(lambda: f.value_and_grad(x), repeats),
            "bind() us": 1e6 * per_call(bound, repeats)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    repeats = min(args.repeats, 5) if args.quick else args.repeats
    sa.set_cache_dir(None)
    print_table(f"Time to first gradient, IK loss (median of {repeats} fresh compiles)",
                first_gradient_table(SIZES, repeats))
    print_table(f"Phases, by hand, disk cache off (median of {repeats})",
                [phases(n, repeats) for n in SIZES])
    print_table(f"Per-call latency, final code (median of {repeats} timeit batches)",
                [latency(n, repeats) for n in SIZES])
    return 0


if __name__ == "__main__":
    sys.exit(main())
