"""Circle fit: centre and radius from noisy points on an arc, with standard errors.

Points are drawn on three quarters of a circle (centre (1.0, -0.5), radius 2.0) with
Gaussian noise of standard deviation 0.05 in x and y (fixed seed,
:func:`scalar_autograd.datasets.noisy_circle`). Each point gives the
geometric residual ``|p - c| - r``; ``sa.nonlinear_least_squares`` (Levenberg-Marquardt
on compiled Jacobians) fits ``c`` and ``r`` from a rough start, and
``LeastSquaresResult.standard_errors()`` gives each parameter's uncertainty, as
``scipy.optimize.curve_fit`` would. The script prints the fit, the standard errors and
how many of them separate each estimate from the true value.

Run:
    python examples/circle_fit.py [--plot DIR] [--quick]
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
from _common import cli, format_table, plot_path, require_matplotlib

import scalar_autograd as sa
from scalar_autograd.datasets import noisy_circle

TRUE_CIRCLE = (1.0, -0.5, 2.0)
"""The generating circle: centre x, centre y, radius."""
NOISE = 0.05
"""Standard deviation of the noise added to each coordinate."""
SEED = 7


def noisy_arc(count: int, seed: int = SEED) -> np.ndarray:
    """``count`` points on three quarters of the true circle plus noise: ``(count, 2)``."""
    cx, cy, r = TRUE_CIRCLE
    return noisy_circle(count, centre=(cx, cy), radius=r, noise=NOISE,
                        arc=(-0.25 * math.pi, 1.25 * math.pi), seed=seed)


def run(quick: bool = False, plot_dir: str | None = None) -> dict[str, Any]:
    """Fit the circle; return the truth, the fit, its standard errors and z-scores.

    Returns:
        A dict with ``true``, ``fit`` and ``standard_errors`` (each ``[cx, cy, r]``),
        ``z_scores`` (``(fit - true) / standard_error``), ``noise_estimate`` (the
        residual standard deviation), ``status``, ``iterations`` and ``plot``.
    """
    points = noisy_arc(30 if quick else 100)

    # a rough start: the centroid (biased towards the arc) and the mean distance to it
    centroid = points.mean(axis=0)
    radius0 = float(np.mean(np.linalg.norm(points - centroid, axis=1)))
    centre = sa.Vec2.param(float(centroid[0]), float(centroid[1]), label="c")
    radius = sa.Value(radius0, label="r", requires_grad=True)
    params = [centre.x, centre.y, radius]

    def residuals(_params: list[sa.Value]) -> list[sa.Value]:
        return [(sa.Vec2.const(float(x), float(y)) - centre).magnitude() - radius
                for x, y in points]

    result = sa.nonlinear_least_squares(params, residuals)
    fit = result.x.tolist()
    errors = result.standard_errors().tolist()
    z_scores = [(f - t) / e for f, t, e in zip(fit, TRUE_CIRCLE, errors)]
    noise_estimate = math.sqrt(2.0 * result.cost / (len(points) - len(params)))

    print(f"{len(points)} noisy points (sigma {NOISE}) on an arc of the circle "
          f"c = ({TRUE_CIRCLE[0]}, {TRUE_CIRCLE[1]}), r = {TRUE_CIRCLE[2]}")
    print(f"start: c = ({centroid[0]:.3f}, {centroid[1]:.3f}), r = {radius0:.3f}")
    print(f"Levenberg-Marquardt: {result.iterations} iterations, {result.message}\n")
    names = ["centre x", "centre y", "radius"]
    print(format_table(
        ["parameter", "true", "fit", "std error", "(fit - true) / std error"],
        [[n, f"{t:.4f}", f"{f:.4f}", f"{e:.4f}", f"{z:+.2f}"]
         for n, t, f, e, z in zip(names, TRUE_CIRCLE, fit, errors, z_scores)], "lrrrr"))
    print(f"\nresidual standard deviation {noise_estimate:.4f} "
          f"(the noise per coordinate was {NOISE})")

    png = None
    if plot_dir is not None:
        png = _plot(plot_path(plot_dir, "circle_fit.png"), points, fit, errors)
        print(f"wrote {png}")
    return {"true": list(TRUE_CIRCLE), "fit": fit, "standard_errors": errors,
            "z_scores": z_scores, "noise_estimate": noise_estimate,
            "status": result.status, "iterations": result.iterations, "plot": png}


def _plot(path: str, points: np.ndarray, fit: list[float], errors: list[float]) -> str:
    Figure = require_matplotlib()
    fig = Figure(figsize=(6.0, 6.0), layout="constrained")
    ax = fig.subplots()
    t = np.linspace(0.0, 2.0 * math.pi, 400)
    for (cx, cy, r), style, label in (
        (TRUE_CIRCLE, dict(color="0.4", ls="--"), "true circle"),
        (fit, dict(color="C0"), "fit"),
    ):
        ax.plot(cx + r * np.cos(t), cy + r * np.sin(t), **style, label=label)
    ax.plot(points[:, 0], points[:, 1], ".", color="C1", label="noisy points")
    ax.errorbar(fit[0], fit[1], xerr=errors[0], yerr=errors[1], fmt="+", color="C0",
                capsize=4, label="fitted centre (1 std error)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="center", bbox_to_anchor=(0.5, 0.3), fontsize=8)
    ax.set_title(f"circle fit: r = {fit[2]:.4f} +- {errors[2]:.4f}")
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    sys.exit(cli(run, __doc__))
