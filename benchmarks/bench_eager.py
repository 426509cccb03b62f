"""Benchmark eager mode: graph build + backward per node against micrograd and PyTorch.

The workload is ``eager_vs_micrograd.py``'s: a small MLP written with ``+ * ** relu``
on scalars, built from scratch and backpropagated each time (what an eager training
step does). The same function builds it with ``scalar_autograd.Value``, micrograd's
``Value`` and PyTorch 0-d float64 tensors (``requires_grad=True``, one thread), so the
three graphs have the same nodes. The libraries are timed in alternation (each sample
loops for >= ~20 ms, garbage collection on, ``gc.collect()`` between samples) and the
median per node is reported with the ratio peer / scalar_autograd (> 1: we are faster).

Run:
    python benchmarks/bench_eager.py [--repeats 11] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

try:  # as a package module (python -m benchmarks) or as a script
    from benchmarks.bench_jit import print_table
    from benchmarks.eager_vs_micrograd import (
        SIZES,
        build_and_backward,
        count_nodes_micrograd,
        count_nodes_sa,
        make_weights,
        sa_leaf,
    )
except ImportError:  # pragma: no cover - script mode
    from bench_jit import print_table  # type: ignore[no-redef]
    from eager_vs_micrograd import (  # type: ignore[no-redef]
        SIZES,
        build_and_backward,
        count_nodes_micrograd,
        count_nodes_sa,
        make_weights,
        sa_leaf,
    )


def interleaved(fns: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Median seconds per call of each of ``fns``, sampled in alternation."""
    for fn in fns:
        fn()
    t0 = time.perf_counter()
    fns[0]()
    number = max(1, int(0.02 / max(time.perf_counter() - t0, 1e-6)))
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, samples):
            gc.collect()
            t = time.perf_counter()
            for _ in range(number):
                fn()
            times.append((time.perf_counter() - t) / number)
    return [statistics.median(t) for t in samples]


def _torch_leaf() -> Callable[[float], Any] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)

    def leaf(v: float) -> Any:
        return torch.tensor(v, dtype=torch.float64, requires_grad=True)

    return leaf


def eager_table(sizes: list[tuple[int, int, int]], repeats: int) -> list[dict[str, Any]]:
    try:
        from micrograd.engine import Value as MgValue
    except ImportError:
        MgValue = None  # noqa: N806
    torch_leaf = _torch_leaf()
    rows = []
    for n_in, width, layers in sizes:
        weights = make_weights(n_in, width, layers)
        inputs = [random.Random(1).uniform(-1, 1) for _ in range(n_in)]
        sa_root = build_and_backward(sa_leaf, weights, inputs)
        nodes = count_nodes_sa(sa_root)
        fns: list[Callable[[], Any]] = [
            lambda w=weights, i=inputs: build_and_backward(sa_leaf, w, i)]
        names = ["scalar_autograd"]
        counts = [nodes]
        for name, leaf in (("micrograd", MgValue), ("PyTorch eager", torch_leaf)):
            if leaf is None:
                continue
            root = build_and_backward(leaf, weights, inputs)
            value = float(root.data if name == "micrograd" else root.item())
            if abs(value - sa_root.data) > 1e-9 * max(1.0, abs(sa_root.data)):
                raise RuntimeError(f"{name} disagrees: {value} vs {sa_root.data}")
            fns.append(lambda w=weights, i=inputs, leaf=leaf: build_and_backward(leaf, w, i))
            names.append(name)
            counts.append(count_nodes_micrograd(root) if name == "micrograd" else nodes)
        medians = interleaved(fns, repeats)
        per_node = {name: 1e6 * t / c for name, t, c in zip(names, medians, counts)}
        row: dict[str, Any] = {"inputs x width x layers": f"{n_in} x {width} x {layers}",
                               "graph nodes": nodes}
        for name in ("scalar_autograd", "micrograd", "PyTorch eager"):
            row[f"{name} us/node"] = per_node.get(name)
        for name in ("micrograd", "PyTorch eager"):
            row[f"{name} / ours"] = (per_node[name] / per_node["scalar_autograd"]
                                     if name in per_node else None)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="the two smallest sizes")
    args = parser.parse_args(argv)
    sizes = SIZES[:2] if args.quick else SIZES
    print_table(f"Eager build + backward per node (median of {args.repeats} interleaved "
                f"samples)", eager_table(sizes, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
