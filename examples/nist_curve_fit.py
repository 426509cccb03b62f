"""NIST StRD curve fits: Levenberg-Marquardt iteration by iteration, against certified values.

The NIST Statistical Reference Datasets for nonlinear regression come with certified
parameter values, computed to 11 digits in 128-bit arithmetic. This example fits two
of them from NIST's first (far) starting point:

* Misra1a (lower difficulty): ``y = b0 (1 - exp(-b1 x))``, 14 points, 2 parameters;
* Thurber (higher difficulty): a cubic over a cubic rational function, 37 points,
  7 parameters.

``sa.nonlinear_least_squares`` calls ``callback`` after every trial step; the script
prints that trace (cost, gradient, step, damping, gain ratio, accepted or rejected)
and then the number of digits each fitted parameter shares with the certified value
(the log relative error, LRE). The data ship with the package
(:func:`scalar_autograd.datasets.nist_problem`, public-domain NIST data).

Run:
    python examples/nist_curve_fit.py [--plot DIR] [--quick]
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import cli, format_table, plot_path, require_matplotlib

import scalar_autograd as sa
from scalar_autograd.datasets import nist_problem
from scalar_autograd.lsq import IterationInfo

Model = Callable[[list[Any], Any], Any]

MODELS: dict[str, Model] = {
    "misra1a": lambda b, x: b[0] * (1.0 - sa.exp(-b[1] * x)),
    "thurber": lambda b, x: (b[0] + b[1] * x + b[2] * x**2 + b[3] * x**3)
    / (1.0 + b[4] * x + b[5] * x**2 + b[6] * x**3),
}
"""The models, written once for ``Value`` parameters and float ``x``."""


def log_relative_error(value: float, certified: float) -> float:
    """The number of significant digits ``value`` shares with ``certified`` (15 if equal)."""
    if value == certified:
        return 15.0
    return max(0.0, -math.log10(abs(value - certified) / abs(certified)))


def fit(name: str) -> dict[str, Any]:
    """Fit problem ``name`` from NIST's first start; print the trace and the comparison."""
    problem = nist_problem(name)
    model = MODELS[name]
    xs = problem.x.tolist()
    ys = problem.y.tolist()
    start = list(problem.starts[0])
    certified = list(problem.certified_params)
    params = [sa.Value(float(v), label=f"b{i}") for i, v in enumerate(start)]

    def residuals(b: list[sa.Value]) -> list[sa.Value]:
        return [model(b, x) - y for x, y in zip(xs, ys)]

    with sa.no_grad():
        start_cost = 0.5 * sum(r.data**2 for r in residuals(params))
    trace: list[IterationInfo] = []
    result = sa.nonlinear_least_squares(params, residuals, max_iterations=1000,
                                        callback=trace.append)

    print(f"== {name} ({problem.difficulty} difficulty): y = {problem.model}")
    print(f"{len(xs)} points, {len(params)} parameters, start {start}\n")
    rows = [[0, f"{start_cost:.10e}", "", "", "", "", "start"]]
    rows += [[i.iteration, f"{i.cost:.10e}", f"{i.grad_norm:.2e}", f"{i.step_norm:.2e}",
              f"{i.damping:.1e}", f"{i.gain_ratio:.3f}",
              "accepted" if i.accepted else "rejected"] for i in trace]
    print(format_table(["iteration", "cost", "max |gradient|", "|step|", "damping",
                        "gain ratio", "step"], rows, "rrrrrrl"))
    print(f"\n{result.message}")
    digits = [log_relative_error(float(v), c) for v, c in zip(result.x, certified)]
    rss = 2.0 * result.cost
    rss_digits = log_relative_error(rss, problem.certified_rss)
    rows = [[f"b{i}", f"{v:.10e}", f"{c:.10e}", f"{d:.1f}"]
            for i, (v, c, d) in enumerate(zip(result.x, certified, digits))]
    rows.append(["RSS", f"{rss:.10e}", f"{problem.certified_rss:.10e}", f"{rss_digits:.1f}"])
    print(format_table(["", "fitted", "certified", "digits (LRE)"], rows, "lrrr"))
    print(f"every parameter matches the certified value to {min(digits):.1f} significant "
          "digits\n")
    return {"name": name, "x": result.x.tolist(), "certified": certified,
            "digits": digits, "rss": rss, "certified_rss": problem.certified_rss,
            "rss_digits": rss_digits, "iterations": result.iterations,
            "costs": [start_cost] + [i.cost for i in trace], "status": result.status,
            "data": (np.array(xs), np.array(ys)), "model": model}


def run(quick: bool = False, plot_dir: str | None = None) -> dict[str, Any]:
    """Fit Misra1a and Thurber (``quick``: Misra1a only).

    Returns:
        A dict with ``fits``: one dict per problem with ``name``, ``x``, ``certified``,
        ``digits`` (LRE per parameter), ``rss``, ``certified_rss``, ``rss_digits``,
        ``iterations``, ``costs`` (at the start, then after every trial step) and
        ``status``;
        and ``plot``.
    """
    names = ["misra1a"] if quick else ["misra1a", "thurber"]
    fits = [fit(name) for name in names]
    png = None
    if plot_dir is not None:
        png = _plot(plot_path(plot_dir, "nist_curve_fit.png"), fits)
        print(f"wrote {png}")
    public = [{k: v for k, v in f.items() if k not in ("data", "model")} for f in fits]
    return {"fits": public, "plot": png}


def _plot(path: str, fits: list[dict[str, Any]]) -> str:
    Figure = require_matplotlib()
    fig = Figure(figsize=(10.0, 3.8 * len(fits)), layout="constrained")
    axes = fig.subplots(len(fits), 2, squeeze=False)
    for (ax_fit, ax_cost), f in zip(axes, fits):
        xs, ys = f["data"]
        grid = np.linspace(xs.min(), xs.max(), 300)
        with sa.no_grad():
            curve = [f["model"]([sa.Value(v) for v in f["x"]], x).data for x in grid]
        ax_fit.plot(xs, ys, "o", ms=4, color="C1", label="NIST data")
        ax_fit.plot(grid, curve, color="C0", label="fit")
        ax_fit.set_title(f"{f['name']}: fitted model")
        ax_fit.legend()
        ax_fit.grid(alpha=0.3)
        ax_cost.semilogy(range(len(f["costs"])), f["costs"], "-o", ms=3)
        ax_cost.axhline(f["certified_rss"] / 2.0, color="0.5", ls="--",
                        label="certified RSS / 2")
        ax_cost.set_xlabel("Levenberg-Marquardt trial step")
        ax_cost.set_ylabel("cost = RSS / 2")
        ax_cost.set_title(f"{f['name']}: convergence")
        ax_cost.legend()
        ax_cost.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    sys.exit(cli(run, __doc__))
