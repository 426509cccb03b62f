"""Benchmark a full-batch MLP loss (two moons, 2-16-16-1 tanh) against PyTorch and JAX.

The problem of ``examples/two_moons_mlp.py`` at full size: 1,000 two-moons points
(``sa.datasets.two_moons``, noise 0.15, standardised), an ``sa.MLP(2, [16, 16, 1])``
with tanh hidden units (337 parameters) and the mean binary cross-entropy from logits
over the whole set. One *epoch* is one value and gradient of that loss.

Systems, all at the same weights (the ``sa.MLP``'s, copied), checked to give the same
loss and gradient as PyTorch (relative 1e-10):

- ``scalar_autograd, whole set``: the example's graph, one logit per point from
  ``model.forward`` and ``sa.binary_cross_entropy_with_logits`` over the list;
  ``sa.compile`` once.
- ``scalar_autograd, per sample``: ``sa.sum`` over the points of a per-sample term (the
  model on one point, its cross-entropy), divided by the count: a sum of 1,000 terms of
  one shape.
- ``scalar_autograd, sa.compile_sum``: the loss of ONE sample, its point and label as
  runtime inputs, traced once and summed over the rows of the data table
  (``sa.compile_sum(..., reduce="mean")``): no graph over the whole set is built.
- PyTorch: ``nn.Sequential`` of ``Linear``/``Tanh`` in float64, forward, loss,
  ``backward()`` per epoch (gradients zeroed first), on one thread
  (``torch.set_num_threads(1)``) and on PyTorch's default thread count.
- JAX: ``jax.jit(jax.value_and_grad(loss))`` of the flat parameter vector, float64.

Columns: building the graph in Python (ours), compile (ours: ``sa.compile`` through the
first ``value_and_grad``, median of fresh compiles with an empty kernel cache, disk
cache off; JAX: jit through the first call), the epoch (median of timeit batches) and
ratios to the whole-set graph. ``f.backend`` and, when the compiled function has it,
``f.stats()`` are reported.

The peers are timed first: our kernels may go on compiling their final code on a
background thread after their first calls, which would take a core from a peer timed
after them. The machine may be shared: every figure is a median in this one process;
compare ratios within the table. Run:

    python benchmarks/bench_mlp.py [--samples 1000] [--repeats 7] [--quick]
                                   [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import scalar_autograd as sa
from scalar_autograd.datasets import two_moons
from scalar_autograd.runtime.cache import KERNELS

try:  # as a package module (python -m benchmarks) or as a script
    from benchmarks.bench_jit import per_call
    from benchmarks.bench_large import _timed_compile
    from benchmarks.bench_mesh import compile_stats, report, stats_columns
except ImportError:  # pragma: no cover - script mode
    from bench_jit import per_call  # type: ignore[no-redef]
    from bench_large import _timed_compile  # type: ignore[no-redef]
    from bench_mesh import compile_stats, report, stats_columns  # type: ignore[no-redef]

SAMPLES = 1000
HIDDEN = (16, 16)
NOISE = 0.15
AGREEMENT = 1e-10
"""Relative agreement of loss and gradient with PyTorch's."""


def data(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The example's data: standardised two-moons points and their 0/1 labels."""
    points, labels = two_moons(count, noise=NOISE, seed=0)
    return (points - points.mean(axis=0)) / points.std(axis=0), labels


def make_model() -> sa.MLP:
    return sa.MLP(2, [*HIDDEN, 1], nonlinearity="tanh", seed=1)


def layer_shapes() -> list[tuple[int, int]]:
    """``(n_inputs, n_outputs)`` of each layer, in the order of ``sa.MLP.parameters``."""
    dims = [2, *HIDDEN, 1]
    return list(zip(dims[:-1], dims[1:]))


def unflatten(theta: Any) -> list[tuple[Any, Any]]:
    """``(W, b)`` per layer from ``sa.MLP``'s parameter order (per neuron: weights, bias).

    Works on numpy and JAX arrays: ``W`` is ``(n_outputs, n_inputs)``.
    """
    layers = []
    k = 0
    for n_in, n_out in layer_shapes():
        block = theta[k:k + n_out * (n_in + 1)].reshape(n_out, n_in + 1)
        layers.append((block[:, :n_in], block[:, n_in]))
        k += n_out * (n_in + 1)
    return layers


def _gap(value: float, grad: np.ndarray, ref_value: float, ref_grad: np.ndarray) -> float:
    """The larger relative gap of the value and of the gradient (to its largest entry)."""
    return max(abs(value - ref_value) / abs(ref_value),
               float(np.max(np.abs(grad - ref_grad))) / float(np.max(np.abs(ref_grad))))


# ----------------------------------------------------------------------------- ours

def whole_set_loss(model: sa.MLP, x: np.ndarray, y: np.ndarray) -> sa.Value:
    """As ``examples/two_moons_mlp.py``: every logit, then the cross-entropy of the list."""
    logits = [model.forward([float(a), float(b)])[0] for a, b in x]
    return sa.binary_cross_entropy_with_logits(logits, y.tolist())


def per_sample_loss(model: sa.MLP, x: np.ndarray, y: np.ndarray) -> sa.Value:
    """A sum over the points of one term each: the model on the point, its loss."""
    def sample(point: np.ndarray, label: float) -> sa.Value:
        logit = model([float(point[0]), float(point[1])])
        return sa.binary_cross_entropy_with_logits([logit], [label])

    return sa.sum([sample(p, float(t)) for p, t in zip(x, y)]) / len(y)


def compile_sum_row(model: sa.MLP, x: np.ndarray, y: np.ndarray, params: list[sa.Value],
                    theta: np.ndarray, repeats: int, compile_repeats: int
                    ) -> tuple[dict[str, Any], Any]:
    """``sa.compile_sum`` of the per-sample loss (build = building that one sample)."""
    t = time.perf_counter()
    point = [sa.Value(0.0), sa.Value(0.0)]
    label = sa.Value(0.0)
    term = sa.binary_cross_entropy_with_logits(model.forward(point), [label])
    build_s = time.perf_counter() - t
    table = np.column_stack([x, y])

    def compile_ours() -> Any:
        KERNELS.clear()
        f = sa.compile_sum(term, params, [*point, label], table, reduce="mean")
        f.value_and_grad(theta)
        return f

    compile_s, f = _timed_compile(compile_ours, compile_repeats)
    getattr(f, "tier_up", lambda: None)()   # per call: the final code
    epoch_s = per_call(lambda: f.value_and_grad(theta), repeats, min_time=0.02)
    return {"system": "scalar_autograd, sa.compile_sum", "threads": 1, "build s": build_s,
            "compile s": compile_s, "epoch ms": 1e3 * epoch_s, "note": f.backend}, f


def ours_row(name: str, build_loss: Callable[[], sa.Value], params: list[sa.Value],
             theta: np.ndarray, repeats: int, compile_repeats: int
             ) -> tuple[dict[str, Any], Any]:
    t = time.perf_counter()
    loss = build_loss()
    build_s = time.perf_counter() - t

    def compile_ours() -> Any:
        KERNELS.clear()
        f = sa.compile(loss, params)
        f.value_and_grad(theta)
        return f

    compile_s, f = _timed_compile(compile_ours, compile_repeats)
    getattr(f, "tier_up", lambda: None)()   # per call: the final code
    epoch_s = per_call(lambda: f.value_and_grad(theta), repeats, min_time=0.02)
    # f.n_instructions only without stats: a structured function builds its flat
    # program for it
    row = {"system": name, "threads": 1, "build s": build_s, "compile s": compile_s,
           "epoch ms": 1e3 * epoch_s,
           "note": f.backend if compile_stats(f) is not None
           else f"{f.backend}, {f.n_instructions} instructions"}
    return row, f


# ----------------------------------------------------------------------------- peers

def torch_rows(x: np.ndarray, y: np.ndarray, theta: np.ndarray, repeats: int
               ) -> tuple[list[dict[str, Any]], tuple[float, np.ndarray] | None]:
    """PyTorch's rows (one thread, default threads) and its loss and gradient."""
    try:
        import torch
    except ImportError:
        return [{"system": "PyTorch",
                 "note": "PyTorch not installed (pip install torch)"}], None
    default_threads = torch.get_num_threads()
    modules: list[Any] = []
    shapes = layer_shapes()
    for i, (w, b) in enumerate(unflatten(theta)):
        linear = torch.nn.Linear(*shapes[i], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            linear.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
        modules.append(linear)
        if i < len(shapes) - 1:
            modules.append(torch.nn.Tanh())
    net = torch.nn.Sequential(*modules)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def epoch() -> Any:
        net.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xt)[:, 0], yt)
        loss.backward()
        return loss

    loss = float(epoch().detach())
    grad = np.concatenate([np.concatenate([m.weight.grad.numpy(), m.bias.grad.numpy()[:, None]],
                                          axis=1).ravel()
                           for m in net if isinstance(m, torch.nn.Linear)])
    rows = []
    for threads in dict.fromkeys([1, default_threads]):
        torch.set_num_threads(threads)
        epoch_s = per_call(epoch, repeats, min_time=0.02)
        rows.append({"system": "PyTorch", "threads": threads, "epoch ms": 1e3 * epoch_s,
                     "note": ("float64, forward + backward"
                              + ("" if threads == 1 else " (PyTorch's default threads)")
                              + "; the reference of the checks")})
    torch.set_num_threads(default_threads)
    return rows, (loss, grad)


def jax_row(x: np.ndarray, y: np.ndarray, theta: np.ndarray, repeats: int,
            compile_repeats: int) -> tuple[dict[str, Any], tuple[float, np.ndarray] | None]:
    """JAX's row and its loss and gradient."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {"system": "JAX", "note": "JAX not installed (pip install jax)"}, None
    jax.config.update("jax_enable_x64", True)
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def loss(flat: Any) -> Any:
        h = xj
        layers = unflatten(flat)
        for i, (w, b) in enumerate(layers):
            h = h @ w.T + b
            if i < len(layers) - 1:
                h = jnp.tanh(h)
        z = h[:, 0]
        return jnp.mean(yj * jax.nn.softplus(-z) + (1.0 - yj) * jax.nn.softplus(z))

    theta_j = jnp.asarray(theta)

    def compile_jax() -> Any:
        vg = jax.jit(jax.value_and_grad(lambda flat: loss(flat)))  # a fresh function
        jax.block_until_ready(vg(theta_j))
        return vg

    compile_s, vg = _timed_compile(compile_jax, compile_repeats)
    value, grad = vg(theta_j)
    epoch_s = per_call(lambda: jax.block_until_ready(vg(theta_j)), repeats, min_time=0.02)
    return ({"system": "JAX", "threads": "XLA default", "compile s": compile_s,
             "epoch ms": 1e3 * epoch_s, "note": "jit(value_and_grad), float64"},
            (float(value), np.asarray(grad)))


# ----------------------------------------------------------------------------- main

def mlp_tables(samples: int, repeats: int, compile_repeats: int
               ) -> tuple[list[dict[str, Any]], list[str]]:
    """Every table as ``{"title", "rows"}``, and notes."""
    x, y = data(samples)
    model = make_model()
    params = model.parameters()
    theta = np.array([p.data for p in params])
    # the peers first: our kernels may go on compiling their final code on a
    # background thread for a while, which would take a core from a peer timed after
    torch_table, torch_result = torch_rows(x, y, theta, repeats)
    jax_table, jax_result = jax_row(x, y, theta, repeats, compile_repeats)
    whole, f_whole = ours_row("scalar_autograd, whole set",
                              lambda: whole_set_loss(model, x, y), params, theta, repeats,
                              compile_repeats)
    per_sample, f_sample = ours_row("scalar_autograd, per sample",
                                    lambda: per_sample_loss(model, x, y), params, theta,
                                    repeats, compile_repeats)
    summed, f_summed = compile_sum_row(model, x, y, params, theta, repeats, compile_repeats)
    rows = [whole, per_sample, summed, *torch_table, jax_table]
    # every result against PyTorch's (or, without PyTorch, against the whole-set graph)
    reference = torch_result or f_whole.value_and_grad(theta)
    results = [(whole, f_whole.value_and_grad(theta)),
               (per_sample, f_sample.value_and_grad(theta)),
               (summed, f_summed.value_and_grad(theta)), (jax_table, jax_result)]
    for checked, result in results:
        if result is None:
            continue
        gap = _gap(result[0], result[1], reference[0], reference[1])
        if gap > AGREEMENT:
            raise RuntimeError(f"{checked['system']} disagrees with the reference (PyTorch "
                               f"when installed): relative gap {gap:.1e}")
        checked["note"] += f"; agrees to {gap:.0e}"
    for r in rows:
        r["compile / ours"] = (None if r.get("compile s") is None
                               else r["compile s"] / whole["compile s"])
        r["epoch / ours"] = (None if r.get("epoch ms") is None
                             else r["epoch ms"] / whole["epoch ms"])
        r["us/sample"] = None if r.get("epoch ms") is None else 1e3 * r["epoch ms"] / samples
    tables = [{"title": f"Two moons MLP 2-{'-'.join(map(str, HIDDEN))}-1 (tanh, "
                        f"{len(params)} parameters), {samples} samples full batch: compile "
                        f"and one epoch (value + gradient), median of {repeats}",
               "rows": rows}]
    stats_rows = []
    for name, f in (("whole set", f_whole), ("per sample", f_sample),
                    ("sa.compile_sum", f_summed)):
        stats = compile_stats(f)
        if stats is not None:
            stats_rows.append({"graph": name, **stats_columns(stats)})
    notes = []
    if stats_rows:
        tables.append({"title": "Two moons MLP: f.stats() of the compiled functions",
                       "rows": stats_rows})
    else:
        notes.append("f.stats() is not available in this version of scalar_autograd.")
    KERNELS.clear()
    return tables, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=SAMPLES,
                        help=f"points in the full batch (default {SAMPLES})")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats per median (default 7, 3 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, one compile per system")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the tables as JSON to PATH")
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error(f"--samples must be an integer >= 2; got {args.samples}")
    repeats = args.repeats or (3 if args.quick else 7)
    sa.set_cache_dir(None)
    tables, notes = mlp_tables(args.samples, repeats, 1 if args.quick else 3)
    report(tables, notes, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
