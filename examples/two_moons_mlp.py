"""Two moons: a small MLP classifier trained with a compiled per-sample loss and Adam.

The two-moons data set (two interleaving half circles with Gaussian noise,
:func:`scalar_autograd.datasets.two_moons`) is drawn from a fixed seed and
standardised. An ``sa.MLP(2, [16, 16, 1])`` with tanh hidden units gives one logit per
point; the loss is the mean binary cross-entropy from logits over the training set.

The loss is written for ONE sample, its point and label as runtime inputs, and
``sa.compile_sum`` compiles it once and sums it over the rows of the data table: the
per-sample program (a few hundred instructions) is the row kernel of every sample,
run in one native loop, and the result is what the whole-data-set graph would give,
bit for bit, without building that graph (hundreds of thousands of nodes, seconds to
build and compile). ``sa.minimize(compiled_loss, params, method="adam")`` runs every
Adam step on it.

Predictions use a second compiled function, the model's logit with the point as a
runtime input, evaluated for many points in one native loop (``batch_values``): the
training accuracy and, with ``--plot``, the decision boundary on a grid.

Run:
    python examples/two_moons_mlp.py [--plot DIR] [--quick]
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from _common import cli, plot_path, require_matplotlib

import scalar_autograd as sa
from scalar_autograd.datasets import two_moons

SEED = 0
NOISE = 0.15


def run(quick: bool = False, plot_dir: str | None = None) -> dict[str, Any]:
    """Train the classifier; return its training accuracy and loss.

    Returns:
        A dict with ``accuracy`` (training set), ``loss`` (final mean cross-entropy),
        ``initial_loss``, ``n_points``, ``n_params``, ``graph_nodes``, ``steps``,
        ``status`` and ``plot``.
    """
    count, hidden, steps = (100, [8, 8], 300) if quick else (1000, [16, 16], 500)
    points, labels = two_moons(count, noise=NOISE, seed=SEED)
    mean, std = points.mean(axis=0), points.std(axis=0)
    features = (points - mean) / std

    model = sa.MLP(2, [*hidden, 1], nonlinearity="tanh", seed=1)
    params = model.parameters()
    # the loss of ONE sample: its point and label are runtime inputs
    sample = [sa.Value(0.0, label="x0"), sa.Value(0.0, label="x1")]
    label = sa.Value(0.0, label="label")
    term = sa.binary_cross_entropy_with_logits(model.forward(sample), [label])
    nodes = len(sa.topological_order(term))
    print(f"{count} two-moons points (noise {NOISE}), MLP 2-{'-'.join(map(str, hidden))}-1 "
          f"(tanh), {len(params)} parameters; the per-sample loss has {nodes} nodes")

    t = time.perf_counter()
    compiled_loss = sa.compile_sum(term, params, [*sample, label],
                                   np.column_stack([features, labels]), reduce="mean")
    initial_loss, _ = compiled_loss.value_and_grad([p.data for p in params])
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    result = sa.minimize(compiled_loss, params, method="adam", lr=0.01,
                         max_iterations=steps, history=True)
    train_s = time.perf_counter() - t
    history = result.history or ()
    for step in range(0, steps + 1, steps // 5):
        print(f"  step {step:4d}  loss {history[step]:.5f}")
    print(f"compiled ({compiled_loss.stats().row_kernels[0].rows} rows of one "
          f"{compiled_loss.stats().row_kernels[0].instructions}-instruction kernel, "
          f"{compiled_loss.backend}) in {compile_s:.2f} s to the first gradient; "
          f"{steps} Adam steps in {train_s:.2f} s ({result.status.name})")

    # the model's logit as a compiled function of the params, the point a runtime input
    point = [sa.Value(0.0, label="x0"), sa.Value(0.0, label="x1")]
    logit = sa.compile(model.forward(point), params, inputs=point)

    def predict(xy: np.ndarray) -> np.ndarray:
        """Logits for the standardised points ``xy (N, 2)``, one native loop."""
        theta = np.broadcast_to(result.x, (len(xy), len(params)))
        return logit.batch_values(theta, xy)[:, 0]

    accuracy = float(np.mean((predict(features) > 0.0) == (labels == 1.0)))
    print(f"training accuracy {100 * accuracy:.1f}%, final loss {result.fun:.5f} "
          f"(from {initial_loss:.5f})")

    png = None
    if plot_dir is not None:
        png = _plot(plot_path(plot_dir, "two_moons_mlp.png"), points, labels,
                    lambda xy: predict((xy - mean) / std), accuracy)
        print(f"wrote {png}")
    return {"accuracy": accuracy, "loss": result.fun, "initial_loss": initial_loss,
            "n_points": count, "n_params": len(params), "graph_nodes": nodes,
            "steps": steps, "status": result.status, "plot": png}


def _plot(path: str, points: np.ndarray, labels: np.ndarray, predict: Any,
          accuracy: float) -> str:
    Figure = require_matplotlib()
    lo = points.min(axis=0) - 0.5
    hi = points.max(axis=0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    z = predict(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape)
    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = fig.subplots()
    ax.contourf(gx, gy, 1.0 / (1.0 + np.exp(-z)), levels=20, cmap="RdBu_r", alpha=0.6)
    ax.contour(gx, gy, z, levels=[0.0], colors="k", linewidths=1.5)
    for label, color in ((0.0, "C0"), (1.0, "C3")):
        sel = labels == label
        ax.scatter(points[sel, 0], points[sel, 1], s=14, color=color, edgecolor="k",
                   linewidth=0.4, label=f"class {int(label)}")
    ax.set_title(f"two moons: MLP decision boundary, training accuracy "
                 f"{100 * accuracy:.1f}%")
    ax.legend(loc="lower left")
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    sys.exit(cli(run, __doc__))
