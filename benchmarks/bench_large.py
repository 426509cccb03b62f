"""Benchmark large graphs: compile time and evaluation time per node against peers.

Every system differentiates the *same* chained scalar graph (:func:`chain`, the graph
of ``bench_jit.chained_graph``): ``acc = acc * 0.999 + sin(x[i] * x[j] + acc)``, five
ops per step over 100 parameters, so it is as deep as it is long and every parameter
is shared by many steps. Sizes are the nominal node counts (5 per step) 10^3 to 10^5
(10^6 with ``--huge``). For each system and size:

- **compile**: everything from a built graph (or Python function) to the first
  value-and-gradient result: differentiation, code generation, native compilation and
  the first call. Median over ``--repeats`` runs (a single run when one takes > 5 s).
- **eval**: the median per-call time of value and gradient afterwards.

Systems (each skipped with a note when not installed or over its size budget):

- ``scalar_autograd``: ``sa.compile`` + ``value_and_grad`` (native code below
  ``backends.registry.VM_THRESHOLD`` instructions, the native tape VM above).
- ``scalar_autograd vm reverse tape``: the same trace on the tape VM, with the tape of
  the gradient written straight from the forward program
  (``VMBackend.compile_reverse``, see ``bench_vm.py``), instead of building the gradient
  program first; the same results bit for bit.
- ``scalar_autograd eager``: build the Value graph and ``backward()`` on every call.
- CasADi ``SX`` ``Function`` of value and ``gradient`` (its SX virtual machine), and the
  same with ``jit=True`` (generated C compiled by the system's C compiler, ``-O1``);
  C compilation grows quickly with size, so by default only up to ``--jit-max`` nodes.
- JAX ``jit(value_and_grad)`` of the loop written with ``lax.scan`` (what a JAX user
  writes for a recurrence), and of the loop unrolled into scalar ops (up to
  ``--jax-unrolled-max`` nodes: XLA's compile time of unrolled scalar graphs explodes,
  ~100 s already at 10^3 nodes on this machine).
- PyTorch eager and HIPS autograd (build and backpropagate on every call, like eager
  mode; up to ``--eager-max`` nodes).

A last table reports the memory of the eager Value graph per node (tracemalloc) and
the time of one eager ``backward()`` per node.

Run:
    python benchmarks/bench_large.py [--repeats 5] [--huge] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import scalar_autograd as sa

try:  # as a package module (python -m benchmarks) or as a script
    from benchmarks.bench_jit import chained_graph, per_call, print_table
    from benchmarks.bench_vm import compile_reverse
except ImportError:  # pragma: no cover - script mode
    from bench_jit import chained_graph, per_call, print_table  # type: ignore[no-redef]
    from bench_vm import compile_reverse  # type: ignore[no-redef]

N_PARAMS = 100
SLOW_COMPILE = 5.0
"""A compile slower than this (seconds) is measured once, not ``repeats`` times."""


def chain(xs: Sequence[Any], n_nodes: int, sin: Callable[[Any], Any]) -> Any:
    """The benchmark graph on any scalar type: ``n_nodes // 5`` steps of 5 ops."""
    p = len(xs)
    acc = xs[0]
    for i in range(n_nodes // 5):
        acc = acc * 0.999 + sin(xs[i % p] * xs[(7 * i + 3) % p] + acc)
    return acc


def start_point(seed: int = 0) -> np.ndarray:
    """The parameter values ``bench_jit.chained_graph`` uses."""
    return np.random.default_rng(seed).uniform(-1, 1, N_PARAMS)


def _timed_compile(build: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``build()`` (once if the first run is slow) and its last result."""
    times = []
    result = None
    for _ in range(max(1, repeats)):
        gc.collect()
        t = time.perf_counter()
        result = build()
        times.append(time.perf_counter() - t)
        if times[0] > SLOW_COMPILE:
            break
    return statistics.median(times), result


def _row(system: str, n: int, compile_s: float | None, eval_s: float | None,
         note: str = "") -> dict[str, Any]:
    return {"graph nodes": n, "system": system,
            "compile s": compile_s,
            "compile us/node": None if compile_s is None else 1e6 * compile_s / n,
            "eval ms": None if eval_s is None else 1e3 * eval_s,
            "eval ns/node": None if eval_s is None else 1e9 * eval_s / n,
            "note": note}


def _check(system: str, value: float, reference: float) -> None:
    if not abs(value - reference) <= 1e-9 * max(1.0, abs(reference)):
        raise RuntimeError(f"{system} computes another value: {value} vs {reference}")


# ----------------------------------------------------------------------------- systems

def sa_compiled(n: int, x0: np.ndarray, repeats: int) -> tuple[dict[str, Any], float]:
    loss, xs = chained_graph(n)

    def build() -> Any:
        sa.runtime.cache.KERNELS.clear()
        f = sa.compile(loss, xs)
        f.value_and_grad(x0)
        return f

    t_compile, f = _timed_compile(build, min(repeats, 3))
    kernel = f._entry.deriv_kernel()
    value = f.value_and_grad(x0)[0]
    t_eval = per_call(lambda: f.value_and_grad(x0), repeats, min_time=0.02)
    sa.runtime.cache.KERNELS.clear()
    return _row("scalar_autograd", n, t_compile, t_eval,
                f"{getattr(kernel, 'mode', 'native')}, {f.n_instructions} instructions"), value


def sa_reverse_tape(n: int, x0: np.ndarray, repeats: int, reference: float) -> dict[str, Any]:
    loss, xs = chained_graph(n)
    t_compile, g = _timed_compile(lambda: compile_reverse(loss, xs, x0), min(repeats, 3))
    _check("scalar_autograd vm reverse tape", g.value_and_grad(x0)[0], reference)
    t_eval = per_call(lambda: g.value_and_grad(x0), repeats, min_time=0.02)
    sa.runtime.cache.KERNELS.clear()
    return _row("scalar_autograd vm reverse tape", n, t_compile, t_eval,
                f"vm, {g.kernel.n_rows} tape rows")


def sa_eager(n: int, x0: np.ndarray, repeats: int, reference: float) -> dict[str, Any]:
    def value_and_grad() -> float:
        xs = [sa.Value(float(v), requires_grad=True) for v in x0]
        out = chain(xs, n, sa.sin)
        out.backward()
        return out.data

    _check("scalar_autograd eager", value_and_grad(), reference)
    return _row("scalar_autograd eager", n, None, _eager_time(value_and_grad, repeats),
                "build + backward per call")


def _eager_time(fn: Callable[[], Any], repeats: int) -> float:
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    if once > 0.5:  # big graphs: a few single calls
        return statistics.median([_once(fn) for _ in range(max(1, min(repeats, 3)))])
    return per_call(fn, repeats, min_time=0.02)


def _once(fn: Callable[[], Any]) -> float:
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def casadi_rows(n: int, x0: np.ndarray, repeats: int, reference: float,
                jit_max: int) -> list[dict[str, Any]]:
    try:
        import casadi as ca
    except ImportError:
        return [_row("CasADi SX", n, None, None, "CasADi not installed (pip install casadi)")]
    x = ca.SX.sym("x", N_PARAMS)
    loss = chain([x[i] for i in range(N_PARAMS)], n, ca.sin)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    variants: list[tuple[str, dict[str, Any]]] = [("CasADi SX", {})]
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        skipped.append(_row("CasADi SX jit", n, None, None, "no C compiler on PATH"))
    elif n > jit_max:
        skipped.append(_row("CasADi SX jit", n, None, None,
                            f"skipped: over --jit-max {jit_max} (C compile time)"))
    else:
        variants.append(("CasADi SX jit", {
            "jit": True, "compiler": "shell",
            "jit_options": {"compiler": compiler, "flags": ["-O1"], "verbose": False}}))
    for name, opts in variants:
        def build(opts: dict[str, Any] = opts) -> Any:
            F = ca.Function("F", [x], [loss, ca.gradient(loss, x)], opts)
            F(x0)
            return F

        t_compile, F = _timed_compile(build, repeats)
        _check(name, float(F(x0)[0]), reference)
        buf, f_eval = F.buffer()
        arg, r0, r1 = x0.copy(), np.zeros(1), np.zeros(N_PARAMS)
        buf.set_arg(0, memoryview(arg))
        buf.set_res(0, memoryview(r0))
        buf.set_res(1, memoryview(r1))
        t_eval = per_call(f_eval, repeats, min_time=0.02)
        rows.append(_row(name, n, t_compile, t_eval,
                         "buffer() call" + (", gcc -O1" if opts else ", SX virtual machine")))
    return rows + skipped


def jax_rows(n: int, x0: np.ndarray, repeats: int, reference: float,
             unrolled_max: int) -> list[dict[str, Any]]:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return [_row("JAX", n, None, None, "JAX not installed (pip install jax)")]
    jax.config.update("jax_enable_x64", True)
    steps = np.arange(n // 5)
    a_idx = jnp.asarray(steps % N_PARAMS)
    b_idx = jnp.asarray((7 * steps + 3) % N_PARAMS)

    def scan_loss(x: Any) -> Any:
        def step(acc: Any, ab: Any) -> tuple[Any, None]:
            i, j = ab
            return acc * 0.999 + jnp.sin(x[i] * x[j] + acc), None

        acc, _ = jax.lax.scan(step, x[0], (a_idx, b_idx))
        return acc

    def unrolled_loss(x: Any) -> Any:
        return chain([x[i] for i in range(N_PARAMS)], n, jnp.sin)

    xj = jnp.asarray(x0)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    variants = [("JAX scan", scan_loss, "jit(value_and_grad), lax.scan")]
    if n <= unrolled_max:
        variants.append(("JAX unrolled", unrolled_loss, "jit(value_and_grad), unrolled"))
    else:
        skipped.append(_row("JAX unrolled", n, None, None,
                         f"skipped: over --jax-unrolled-max {unrolled_max} (XLA compile time)"))
    for name, fn, note in variants:
        def build(fn: Callable[[Any], Any] = fn) -> Any:
            vg = jax.jit(jax.value_and_grad(fn))
            jax.block_until_ready(vg(xj))
            return vg

        t_compile, vg = _timed_compile(build, min(repeats, 3))
        _check(name, float(vg(xj)[0]), reference)
        t_eval = per_call(lambda vg=vg: jax.block_until_ready(vg(xj)), repeats, min_time=0.02)
        rows.append(_row(name, n, t_compile, t_eval, note))
    return rows + skipped


def torch_row(n: int, x0: np.ndarray, repeats: int, reference: float) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return _row("PyTorch eager", n, None, None, "PyTorch not installed")
    torch.set_num_threads(1)

    def value_and_grad() -> float:
        x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        out = chain(x.unbind(0), n, torch.sin)
        torch.autograd.grad(out, x)
        return float(out.item())

    _check("PyTorch eager", value_and_grad(), reference)
    return _row("PyTorch eager", n, None, _eager_time(value_and_grad, repeats),
                "0-d float64 tensors, build + backward per call")


def autograd_row(n: int, x0: np.ndarray, repeats: int, reference: float) -> dict[str, Any]:
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError:
        return _row("HIPS autograd", n, None, None,
                    "HIPS autograd not installed (pip install autograd)")

    vg = autograd.value_and_grad(lambda x: chain([x[i] for i in range(N_PARAMS)], n, anp.sin))
    _check("HIPS autograd", float(vg(x0)[0]), reference)
    return _row("HIPS autograd", n, None, _eager_time(lambda: vg(x0), repeats),
                "trace + backward per call")


def large_table(sizes: list[int], repeats: int, *, jit_max: int = 10**4,
                jax_unrolled_max: int = 10**3, eager_max: int = 10**4
                ) -> list[dict[str, Any]]:
    """One row per (size, system), all measured in this process."""
    rows: list[dict[str, Any]] = []
    x0 = start_point()
    for n in sizes:
        sa_row, reference = sa_compiled(n, x0, repeats)
        group = [sa_row, sa_reverse_tape(n, x0, repeats, reference)]
        if n <= eager_max:
            group.append(sa_eager(n, x0, repeats, reference))
        group += casadi_rows(n, x0, repeats, reference, jit_max)
        group += jax_rows(n, x0, repeats, reference, jax_unrolled_max)
        if n <= eager_max:
            group.append(torch_row(n, x0, repeats, reference))
            group.append(autograd_row(n, x0, repeats, reference))
        else:
            for name in ("scalar_autograd eager", "PyTorch eager", "HIPS autograd"):
                group.append(_row(name, n, None, None, f"skipped: over --eager-max {eager_max}"))
        base_c, base_e = sa_row["compile s"], sa_row["eval ms"]
        for r in group:
            r["compile / ours"] = (None if r["compile s"] is None or not base_c
                                   else r["compile s"] / base_c)
            r["eval / ours"] = None if r["eval ms"] is None else r["eval ms"] / base_e
        rows += group
        print(f"  large graphs: {n} nodes done", file=sys.stderr, flush=True)
    return rows


# ----------------------------------------------------------------------------- memory

def memory_row(n: int) -> dict[str, Any]:
    """Bytes per node of the eager graph (tracemalloc), backward and compile per node."""
    x0 = start_point()
    gc.collect()
    tracemalloc.start()
    xs = [sa.Value(float(v), requires_grad=True) for v in x0]
    before = tracemalloc.get_traced_memory()[0]
    out = chain(xs, n, sa.sin)
    graph_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    nodes = len(sa.topological_order(out))
    t = time.perf_counter()
    out.backward()
    t_backward = time.perf_counter() - t
    sa.runtime.cache.KERNELS.clear()
    t = time.perf_counter()
    f = sa.compile(out, xs)
    value, _ = f.value_and_grad(x0)
    t_compile = time.perf_counter() - t
    _check("compiled vs eager", value, out.data)
    kernel = f._entry.deriv_kernel()
    sa.runtime.cache.KERNELS.clear()
    return {"nominal nodes": n, "graph nodes": nodes,
            "graph bytes/node": graph_bytes / nodes,
            "backward s": t_backward, "backward ns/node": 1e9 * t_backward / nodes,
            "compile s": t_compile, "compile us/node": 1e6 * t_compile / nodes,
            "code": getattr(kernel, "mode", "native")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--huge", action="store_true", help="include 10^6 nodes")
    parser.add_argument("--quick", action="store_true", help="10^3 and 10^4 nodes only")
    parser.add_argument("--jit-max", type=int, default=10**4)
    parser.add_argument("--jax-unrolled-max", type=int, default=10**3)
    parser.add_argument("--eager-max", type=int, default=10**4)
    args = parser.parse_args(argv)
    sizes = [10**3, 10**4] if args.quick else [10**3, 10**4, 10**5]
    if args.huge:
        sizes.append(10**6)
    print_table("Large graphs: compile and value+gradient evaluation (median)",
                large_table(sizes, args.repeats, jit_max=args.jit_max,
                            jax_unrolled_max=args.jax_unrolled_max, eager_max=args.eager_max))
    print_table("Eager graph memory and backward, compile per node",
                [memory_row(n) for n in sizes])
    return 0


if __name__ == "__main__":
    sys.exit(main())
