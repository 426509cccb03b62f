"""Benchmark the JIT: the seed's speedup table, per-call latency against peers, and
compile time for large graphs.

1. The seed's table: a planar IK loss with 5/20/50 joint angles, 1000 gradient-descent
   iterations, "traditional" (rebuild the graph and ``backward()`` every iteration)
   against compiled code (the seed's ``apply_compiled_gradients`` loop, and a loop on
   float64 vectors with ``value_and_grad``).
2. Per-call latency of value and gradient for the same losses: ``f.value_and_grad(x)``,
   the bound zero-argument call ``f.bind(...)``, JAX ``jit(value_and_grad)``, CasADi
   ``Function`` and CasADi's pre-bound ``buffer()`` path, PyTorch eager (vectorised,
   float64, one thread) and HIPS autograd, when installed (skipped with a note when
   not). micrograd has no ``sin``/``cos``, so it cannot express this loss.
3. Compile time (trace, differentiate, lower, generate, native compile, first call)
   and evaluation time per node for chained graphs of 10^3 to 10^5 nodes (10^6 with
   ``--huge``).

Every figure is the median over ``--repeats`` runs in this one process; ratios are
computed from medians. Run:

    python benchmarks/bench_jit.py [--repeats 7] [--huge] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

import scalar_autograd as sa
from scalar_autograd.demo import measure_speedup
from scalar_autograd.kinematics import planar_ik_loss

TARGET = (2.0, 1.5)


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def per_call(fn: Callable[[], Any], repeats: int, min_time: float = 0.05) -> float:
    """Median seconds per call of ``fn`` (timeit batches of >= ``min_time`` s)."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(number, int(number * min_time / 0.2) or 1)
    return statistics.median(t / number for t in timer.repeat(repeat=repeats, number=number))


# ----------------------------------------------------------------------------- 1. seed table

def seed_table(sizes: list[int], iterations: int, repeats: int) -> list[dict[str, Any]]:
    """The demo's measurement (``scalar_autograd.demo.measure_speedup``), with medians."""
    rows = []
    for n in sizes:
        r = measure_speedup(n, iterations, repeats, statistic=statistics.median)
        rows.append({"variables": n, "graph nodes": r.graph_nodes, "iterations": iterations,
                     "traditional ms": r.traditional_ms,
                     "compiled (seed API) ms": r.seed_api_ms,
                     "compiled (vector) ms": r.compiled_ms,
                     "speedup seed API": r.seed_api_speedup, "speedup vector": r.speedup})
    return rows


# ----------------------------------------------------------------------------- 2. latency

def _jax_latency(n: int, x0: np.ndarray, repeats: int) -> float | None:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def loss(theta: Any) -> Any:
        phi = jnp.cumsum(theta)
        return (jnp.sum(jnp.cos(phi)) - TARGET[0]) ** 2 + (jnp.sum(jnp.sin(phi)) - TARGET[1]) ** 2

    vg = jax.jit(jax.value_and_grad(loss))
    x = jnp.asarray(x0)
    jax.block_until_ready(vg(x))
    return per_call(lambda: jax.block_until_ready(vg(x)), repeats)


def _casadi_latency(n: int, x0: np.ndarray, repeats: int) -> tuple[float, float] | None:
    try:
        import casadi as ca
    except ImportError:
        return None
    theta = ca.SX.sym("theta", n)
    phi = ca.cumsum(theta)
    loss = (ca.sum1(ca.cos(phi)) - TARGET[0]) ** 2 + (ca.sum1(ca.sin(phi)) - TARGET[1]) ** 2
    F = ca.Function("F", [theta], [loss, ca.gradient(loss, theta)])
    t_call = per_call(lambda: F(x0), repeats)
    buf, f_eval = F.buffer()
    arg, r0, r1 = x0.copy(), np.zeros(1), np.zeros(n)
    buf.set_arg(0, memoryview(arg))
    buf.set_res(0, memoryview(r0))
    buf.set_res(1, memoryview(r1))
    f_eval()
    return t_call, per_call(f_eval, repeats)


def _torch_latency(n: int, x0: np.ndarray, repeats: int) -> float | None:
    """PyTorch eager: build the (vectorised) loss and backpropagate on every call."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)

    def value_and_grad() -> tuple[float, np.ndarray]:
        phi = torch.cumsum(x, 0)
        loss = (torch.cos(phi).sum() - TARGET[0]) ** 2 + (torch.sin(phi).sum() - TARGET[1]) ** 2
        (grad,) = torch.autograd.grad(loss, x)
        return loss.item(), grad.numpy()

    _check_peer("PyTorch", value_and_grad()[0], x0)
    return per_call(value_and_grad, repeats)


def _autograd_latency(n: int, x0: np.ndarray, repeats: int) -> float | None:
    """HIPS autograd ``value_and_grad`` of the numpy-written loss."""
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError:
        return None

    def loss(theta: Any) -> Any:
        phi = anp.cumsum(theta)
        return (anp.sum(anp.cos(phi)) - TARGET[0]) ** 2 + (anp.sum(anp.sin(phi)) - TARGET[1]) ** 2

    vg = autograd.value_and_grad(loss)
    _check_peer("HIPS autograd", float(vg(x0)[0]), x0)
    return per_call(lambda: vg(x0), repeats)


def _check_peer(name: str, value: float, x0: np.ndarray) -> None:
    """Raise if a peer's loss disagrees with ours at ``x0`` (same function, same point)."""
    phi = np.cumsum(x0)
    expected = (np.cos(phi).sum() - TARGET[0]) ** 2 + (np.sin(phi).sum() - TARGET[1]) ** 2
    if abs(value - expected) > 1e-9 * max(1.0, abs(expected)):
        raise RuntimeError(f"{name} computes another loss: {value} vs {expected}")


PEER_NOTES = {
    "jax": "JAX not installed (pip install jax)",
    "casadi": "CasADi not installed (pip install casadi)",
    "torch": "PyTorch not installed (pip install torch; CPU wheel: "
             "--index-url https://download.pytorch.org/whl/cpu)",
    "autograd": "HIPS autograd not installed (pip install autograd)",
    "micrograd": "micrograd has no sin/cos: it cannot express the IK loss",
}
"""Why a peer's column says n/a."""


def latency_table(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    return [_latency_row(n, repeats) for n in sizes]


def _latency_row(n: int, repeats: int) -> dict[str, Any]:
    angles = [sa.Value(0.0) for _ in range(n)]
    loss = planar_ik_loss(angles, TARGET)
    f = sa.compile(loss, angles)
    x = np.linspace(0.1, 0.5, n)
    grad, value = np.zeros(n), np.zeros(1)
    bound = f.bind(x, grad, value=value)
    row: dict[str, Any] = {
        "joints": n,
        "graph nodes": len(sa.topological_order(loss)),
        "value_and_grad us": 1e6 * per_call(lambda: f.value_and_grad(x), repeats),
        "bind() us": 1e6 * per_call(bound, repeats),
    }
    jax_t = _jax_latency(n, x, repeats)
    row["JAX jit us"] = None if jax_t is None else 1e6 * jax_t
    cas = _casadi_latency(n, x, repeats)
    row["CasADi F(x) us"] = None if cas is None else 1e6 * cas[0]
    row["CasADi buffer us"] = None if cas is None else 1e6 * cas[1]
    torch_t = _torch_latency(n, x, repeats)
    row["PyTorch eager us"] = None if torch_t is None else 1e6 * torch_t
    ag_t = _autograd_latency(n, x, repeats)
    row["HIPS autograd us"] = None if ag_t is None else 1e6 * ag_t
    row["micrograd us"] = None  # no sin/cos in micrograd 0.1.0
    vg = row["value_and_grad us"] / 1e6
    if cas is not None:
        row["buffer / bind"] = cas[1] / (row["bind() us"] / 1e6)
        row["CasADi F / value_and_grad"] = cas[0] / vg
    if jax_t is not None:
        row["JAX / value_and_grad"] = jax_t / vg
    if torch_t is not None:
        row["PyTorch / value_and_grad"] = torch_t / vg
    if ag_t is not None:
        row["autograd / value_and_grad"] = ag_t / vg
    return row


# ----------------------------------------------------------------------------- 3. big graphs

def chained_graph(n_nodes: int, n_params: int = 100, seed: int = 0) -> tuple[Any, list[Any]]:
    """A chain of ``n_nodes`` nodes (5 per step) mixing 100 params: deep and shared."""
    rng = np.random.default_rng(seed)
    xs = [sa.Value(float(v)) for v in rng.uniform(-1, 1, n_params)]
    acc = xs[0]
    for i in range(n_nodes // 5):
        acc = acc * 0.999 + sa.sin(xs[i % n_params] * xs[(7 * i + 3) % n_params] + acc)
    return acc, xs


def compile_table(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    return [_compile_row(n, repeats) for n in sizes]


def _compile_row(n: int, repeats: int) -> dict[str, Any]:
    loss, xs = chained_graph(n)
    x = np.array([v.data for v in xs])
    times = []
    for _ in range(max(1, min(repeats, 3) if n >= 10**5 else repeats)):
        sa.runtime.cache.KERNELS.clear()
        t = time.perf_counter()
        f = sa.compile(loss, xs)
        f.value_and_grad(x)
        times.append(time.perf_counter() - t)
    t_compile = statistics.median(times)
    kernel = f._entry.deriv_kernel()
    t_eval = per_call(lambda: f.value_and_grad(x), repeats, min_time=0.02)
    return {"graph nodes": n, "instructions (value+grad)": f.n_instructions,
            "code": getattr(kernel, "mode", "native"),
            "compile s": t_compile, "compile us/node": 1e6 * t_compile / n,
            "eval ms": 1e3 * t_eval, "eval ns/node": 1e9 * t_eval / n}


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n## {title}\n")
    if not rows:
        return
    keys = list(rows[0])
    for r in rows:
        keys += [k for k in r if k not in keys]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k)
            cells.append("n/a" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v))
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--huge", action="store_true", help="include a 10^6-node graph")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and iterations")
    args = parser.parse_args(argv)
    iterations = 200 if args.quick else 1000
    print_table(f"Seed table: IK loss, {iterations} iterations (median of {args.repeats})",
                seed_table([5, 20, 50], iterations, args.repeats))
    print_table("Per-call latency, value and gradient (median)",
                latency_table([5, 20, 50], args.repeats))
    sizes = [10**3, 10**4] if args.quick else [10**3, 10**4, 10**5]
    if args.huge:
        sizes.append(10**6)
    print_table("Large graphs: compile (to first gradient) and evaluation",
                compile_table(sizes, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
