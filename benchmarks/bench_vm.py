"""Benchmark the tape VM on large graphs with no repetition: compile and evaluation.

The graph is ``bench_large``'s chain, ``acc = acc * 0.999 + sin(x[i] * x[j] + acc)``
(five nodes per step over 100 params: as deep as it is long), at 10^4 and 10^5 nodes
(10^6 with ``--huge``). Each size is measured in this one process:

- ``vm (sa.compile)``: ``sa.compile(loss, xs, backend="vm")`` and the first
  ``value_and_grad``: trace, autodiff's gradient program (IR), its tape, the first call.
  This is what the runtime does today.
- ``vm (reverse tape)``: the same trace, then the tape written straight from the forward
  program (``VMBackend.compile_reverse``: no gradient program), and the first call. Its
  results are the first path's, bit for bit (checked here); the runtime takes this path
  once ``runtime/compiled.py`` routes the ``"vm"`` gradient kernel through it.
- ``JAX lax.scan``: ``jax.jit(jax.value_and_grad)`` of the loop written with
  ``lax.scan``, compiled and called on the same parameters.
- ``previous VM``: the figures of the VM before tape format 2 (one opcode per IR
  instruction, leaves as rows, the tape built by a Python loop), measured on this
  machine with this script's code (see :data:`PREVIOUS`).

**compile** is the time from the built ``Value`` graph to the first value and gradient
(the median of ``--repeats`` runs, a single run above 5 s); **eval** the median wall time
of one value-and-gradient call, ours and JAX's measured in alternating batches so that
both see the same load on a shared machine; **cpu** the process CPU time per call
(JAX's worker threads included). ``x JAX`` is JAX's eval time over ours (above 1:
faster than JAX). A last table splits the reverse-tape compile into its steps.

Run:
    python benchmarks/bench_vm.py [--repeats 5] [--huge] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import scalar_autograd as sa
from scalar_autograd.backends.vm import VMBackend, VMKernel

try:  # as a package module (python -m benchmarks) or as a script
    from benchmarks.bench_jit import chained_graph, per_call, print_table
except ImportError:  # pragma: no cover - script mode
    from bench_jit import chained_graph, per_call, print_table  # type: ignore[no-redef]

N_PARAMS = 100
SLOW = 5.0
"""A compile slower than this (seconds) is measured once."""

PREVIOUS: dict[int, tuple[float, float]] = {
    10**4: (0.067, 0.067),
    10**5: (0.69, 0.70),
    10**6: (8.2, 7.6),
}
"""The VM before tape format 2: nodes -> (compile s, eval ms). This script's
``vm (sa.compile)`` measurement (medians of 5 runs, 3 at 10^6; the mean of two such
medians) on the project's 2-core machine while it was quiet, with the previous
``backends/vm.py`` put in front of everything else as it is now."""


def _median_compile(build: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``build()`` (once if the first run is slow) and its last result."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        gc.collect()
        t = time.perf_counter()
        result = build()
        times.append(time.perf_counter() - t)
        if times[0] > SLOW:
            break
    return statistics.median(times), result


class ReverseTapeFunction:
    """Value and gradient through a reverse-tape kernel, called as the runtime calls its
    kernels (copy ``x`` into a bound buffer, one native call, copy the results out)."""

    def __init__(self, kernel: VMKernel) -> None:
        self.kernel = kernel
        self.x = np.zeros(kernel.n_params)
        self.val, self.der = np.zeros(kernel.n_values), np.zeros(kernel.n_derivs)
        self.scratch = np.zeros(kernel.n_scratch)
        self.call = kernel.bind(self.x, np.zeros(0), self.val, self.der, self.scratch)

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.x[:] = x
        self.call()
        return float(self.val[0]), self.der.copy()


def compile_runtime(loss: Any, xs: list[Any], x0: np.ndarray) -> Any:
    """``sa.compile`` on the VM and its first value and gradient (an empty kernel cache)."""
    sa.runtime.cache.KERNELS.clear()
    f = sa.compile(loss, xs, backend="vm")
    f.value_and_grad(x0)
    return f


def compile_reverse(loss: Any, xs: list[Any], x0: np.ndarray,
                    steps: dict[str, list[float]] | None = None) -> ReverseTapeFunction:
    """The same trace, the reverse tape, and the first value and gradient."""
    sa.runtime.cache.KERNELS.clear()
    t0 = time.perf_counter()
    f = sa.compile(loss, xs, backend="vm")       # trace and structural key, nothing built
    t1 = time.perf_counter()
    kernel = VMBackend().compile_reverse(f._entry.program, n_diff=1)
    t2 = time.perf_counter()
    g = ReverseTapeFunction(kernel)
    g.value_and_grad(x0)
    t3 = time.perf_counter()
    if steps is not None:
        for name, seconds in (("trace + key", t1 - t0), ("reverse tape", t2 - t1),
                              ("first call", t3 - t2)):
            steps.setdefault(name, []).append(seconds)
    return g


def jax_scan(n: int) -> Callable[[Any], Any] | None:
    """``lax.scan`` of the chain as a function of the params, or None without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    steps = np.arange(n // 5)
    a_idx, b_idx = jnp.asarray(steps % N_PARAMS), jnp.asarray((7 * steps + 3) % N_PARAMS)

    def loss(x: Any) -> Any:
        def step(acc: Any, ab: Any) -> tuple[Any, None]:
            i, j = ab
            return acc * 0.999 + jnp.sin(x[i] * x[j] + acc), None

        return jax.lax.scan(step, x[0], (a_idx, b_idx))[0]

    return loss


def cpu_per_call(fn: Callable[[], Any], calls: int) -> float:
    """Process CPU seconds per call (every thread of the process)."""
    fn()
    t = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - t) / calls


def _row(n: int, system: str, compile_s: float | None, eval_s: float | None,
         cpu_s: float | None, note: str) -> dict[str, Any]:
    return {"nodes": n, "system": system, "compile s": compile_s,
            "eval ms": None if eval_s is None else 1e3 * eval_s,
            "cpu ms": None if cpu_s is None else 1e3 * cpu_s, "x JAX": None, "note": note}


def size_rows(n: int, repeats: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The rows of one size, and the reverse tape's compile steps (medians)."""
    loss, xs = chained_graph(n, N_PARAMS)
    x0 = np.array([v.data for v in xs])
    few = min(repeats, 3)
    t_runtime, f = _median_compile(lambda: compile_runtime(loss, xs, x0), few)
    steps: dict[str, list[float]] = {}
    t_reverse, g = _median_compile(lambda: compile_reverse(loss, xs, x0, steps), few)
    value, grad = f.value_and_grad(x0)
    value_r, grad_r = g.value_and_grad(x0)
    if value != value_r or not np.array_equal(grad, grad_r):
        raise RuntimeError("the reverse tape computes other values than autodiff's tape")
    deriv = f._entry.deriv_kernel()
    systems: list[tuple[str, Callable[[], Any], float | None, str]] = [
        ("vm (sa.compile)", lambda: f.value_and_grad(x0), t_runtime,
         f"{deriv.n_rows} rows"),
        ("vm (reverse tape)", lambda: g.value_and_grad(x0), t_reverse,
         f"{g.kernel.n_rows} rows"),
    ]
    scan = jax_scan(n)
    if scan is not None:
        import jax

        xj = jax.numpy.asarray(x0)

        def build() -> Any:
            vg = jax.jit(jax.value_and_grad(scan))
            jax.block_until_ready(vg(xj))
            return vg

        t_jax, vg = _median_compile(build, few)
        if abs(float(vg(xj)[0]) - value) > 1e-9 * max(1.0, abs(value)):
            raise RuntimeError("JAX computes another value")
        systems.append(("JAX lax.scan", lambda: jax.block_until_ready(vg(xj)), t_jax,
                        "jit(value_and_grad)"))
    times: dict[str, list[float]] = {name: [] for name, *_ in systems}
    for _ in range(max(1, repeats)):      # alternate, so all see the same machine load
        for name, call, *_ in systems:
            times[name].append(per_call(call, 1, min_time=0.05))
    calls = max(3, int(0.3 / max(statistics.median(times[systems[0][0]]), 1e-6)))
    rows = [_row(n, name, t, statistics.median(times[name]), cpu_per_call(call, calls), note)
            for name, call, t, note in systems]
    if scan is None:
        rows.append(_row(n, "JAX lax.scan", None, None, None, "JAX not installed"))
    previous = PREVIOUS.get(n)
    if previous is not None:
        rows.append(_row(n, "previous VM", previous[0], previous[1] / 1e3, None,
                         "measured before tape format 2 (PREVIOUS)"))
    jax_eval = next((r["eval ms"] for r in rows if r["system"] == "JAX lax.scan"), None)
    for r in rows:
        if jax_eval is not None and r["eval ms"]:
            r["x JAX"] = jax_eval / r["eval ms"]
    return rows, {name: statistics.median(v) for name, v in steps.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--huge", action="store_true", help="include 10^6 nodes")
    parser.add_argument("--quick", action="store_true", help="10^4 nodes only, 3 repeats")
    args = parser.parse_args(argv)
    sizes = [10**4] if args.quick else [10**4, 10**5]
    if args.huge:
        sizes.append(10**6)
    repeats = min(args.repeats, 3) if args.quick else args.repeats
    rows: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    for n in sizes:
        size, split = size_rows(n, repeats)
        rows += size
        steps.append({"nodes": n, **{f"{k} s": v for k, v in split.items()}})
        print(f"  vm benchmark: {n} nodes done", file=sys.stderr, flush=True)
    print_table("Tape VM, chained graph: compile (graph -> first gradient) and value+gradient "
                "(median)", rows)
    print_table("Reverse-tape compile, step by step (median)", steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
