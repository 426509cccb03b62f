"""Huge graphs: 10^5 nodes (default run) and 10^6 nodes (slow) build, differentiate
eagerly, compile and run, with nothing recursive (checked under a low recursion limit).

Each run prints one line with the memory of the eager graph per node (tracemalloc), the
eager ``backward()`` time per node and the compile time per node (``pytest -s`` shows
it; the benchmark suite's ``memory`` section reports the same figures in RESULTS.md).
No timing is asserted.
"""

from __future__ import annotations

import contextlib
import gc
import math
import sys
import time
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.runtime.cache import KERNELS

N_PARAMS = 100


def chain(xs: list[sa.Value], n_nodes: int) -> sa.Value:
    """``acc = acc * 0.999 + sin(x_i * x_j + acc)``: as deep as it is long, params shared."""
    acc = xs[0]
    for i in range(n_nodes // 5):
        acc = acc * 0.999 + sa.sin(xs[i % N_PARAMS] * xs[(7 * i + 3) % N_PARAMS] + acc)
    return acc


def reference(x: np.ndarray, n_nodes: int) -> tuple[float, np.ndarray]:
    """Value and gradient of :func:`chain` by a hand-written forward/adjoint loop."""
    steps = n_nodes // 5
    a_idx = [i % N_PARAMS for i in range(steps)]
    b_idx = [(7 * i + 3) % N_PARAMS for i in range(steps)]
    accs = [float(x[0])]
    for i in range(steps):
        acc = accs[-1]
        accs.append(acc * 0.999 + math.sin(x[a_idx[i]] * x[b_idx[i]] + acc))
    grad = np.zeros(N_PARAMS)
    bar = 1.0
    for i in reversed(range(steps)):
        acc = accs[i]
        c = math.cos(x[a_idx[i]] * x[b_idx[i]] + acc)
        grad[a_idx[i]] += bar * c * x[b_idx[i]]
        grad[b_idx[i]] += bar * c * x[a_idx[i]]
        bar = bar * (0.999 + c)
    grad[0] += bar
    return accs[-1], grad


@contextlib.contextmanager
def shallow_stack(headroom: int = 150) -> Iterator[None]:
    """Lower the recursion limit to the current depth plus ``headroom`` frames."""
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + headroom)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def run_huge(n_nodes: int) -> dict[str, float]:
    rng = np.random.default_rng(3)
    x0 = rng.uniform(-1, 1, N_PARAMS)
    x1 = rng.uniform(-1, 1, N_PARAMS)  # a point other than the traced one
    gc.collect()
    tracemalloc.start()
    try:
        with shallow_stack():
            xs = [sa.Value(float(v), requires_grad=True) for v in x0]
            base = tracemalloc.get_traced_memory()[0]
            out = chain(xs, n_nodes)
            graph_bytes = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    with shallow_stack():
        nodes = len(sa.topological_order(out))
        t = time.perf_counter()
        out.backward()
        t_backward = time.perf_counter() - t
        eager_grad = np.array([v.grad for v in xs])
        KERNELS.clear()
        t = time.perf_counter()
        f = sa.compile(out, xs)
        value0, grad0 = f.value_and_grad(x0)
        t_compile = time.perf_counter() - t
        value1, grad1 = f.value_and_grad(x1)
        text = repr(f) + sa.to_dot(out)[:100]  # the DOT walk is iterative too
    assert text
    ref0, ref_grad0 = reference(x0, n_nodes)
    ref1, ref_grad1 = reference(x1, n_nodes)
    assert out.data == pytest.approx(ref0, rel=1e-12)
    np.testing.assert_allclose(eager_grad, ref_grad0, rtol=1e-9, atol=1e-9)
    assert value0 == pytest.approx(ref0, rel=1e-12)
    np.testing.assert_allclose(grad0, ref_grad0, rtol=1e-9, atol=1e-9)
    assert value1 == pytest.approx(ref1, rel=1e-12)
    np.testing.assert_allclose(grad1, ref_grad1, rtol=1e-9, atol=1e-9)
    mode = f.backend
    stats = {"nodes": nodes, "bytes/node": graph_bytes / nodes,
             "backward ns/node": 1e9 * t_backward / nodes,
             "compile us/node": 1e6 * t_compile / nodes}
    print(f"\nhuge graph: {nodes} nodes, {stats['bytes/node']:.0f} bytes/node (tracemalloc), "
          f"backward {stats['backward ns/node']:.0f} ns/node, compile to first gradient "
          f"{t_compile:.2f} s = {stats['compile us/node']:.2f} us/node ({mode})")
    KERNELS.clear()
    return stats


def test_hundred_thousand_node_graph_builds_differentiates_compiles_and_runs():
    stats = run_huge(10**5)
    assert stats["nodes"] > 10**5
    assert stats["bytes/node"] < 1000  # a Value with __slots__ and an args tuple: ~150 B


@pytest.mark.slow
def test_million_node_graph_builds_differentiates_compiles_and_runs():
    stats = run_huge(10**6)
    assert stats["nodes"] > 10**6
    assert stats["bytes/node"] < 1000


def test_deep_graph_walks_are_iterative_under_a_tiny_recursion_limit():
    """Every graph walk on a 3x10^4-node chain runs with ~150 frames of stack to spare."""
    x = sa.Value(0.5, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = sa.tanh(y) * 1.0001 + 0.001
    with shallow_stack():
        y.backward()
        order = sa.topological_order(y)
        dot = sa.to_dot(y)
        for backend in ("interpreter", "python", "llvm"):
            f = sa.compile(y, [x], backend=backend)
            value, grad = f.value_and_grad([0.5])
            assert value == pytest.approx(y.data, rel=1e-12)
            assert grad[0] == pytest.approx(x.grad, rel=1e-9)
    assert len(order) > 30_000 and dot.startswith("digraph")
