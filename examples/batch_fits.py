"""A million Gaussian spot fits: ``sa.batch_curve_fit`` on every core, or on a Dask cluster.

The use case behind Gpufit: single-molecule localisation microscopy fits one small
model to each of millions of spots. Here each spot is a 1-D Gaussian on a background,
``a * exp(-(x - mu)^2 / (2 s^2)) + b`` (4 parameters), sampled at 32 pixels with
Gaussian read noise of known standard deviation :data:`NOISE` (fixed seed). The start
of each fit is estimated from its own data,
as a Gpufit user does: amplitude from max - min, centre at the brightest pixel, width
2 pixels, background the minimum.

The model is written once, for one sample, with ``sa`` ops; it is traced and compiled
once, and the small dense Levenberg-Marquardt loop runs in native code with the GIL
released, on ``--workers`` threads (default: every core). Given ``--scheduler
ADDRESS`` (a running ``dask-scheduler``), the chunks go to that Dask cluster instead
through ``Client.get_executor()``; the model travels as its program and each worker
compiles it once. A progress bar shows on stderr (plain lines when it is not a
terminal); Ctrl-C returns the fits done so far.

The script prints the fits per second and how many fits lie within three standard
errors (from ``pcov``) of the truth in every parameter.

Run:
    python examples/batch_fits.py [--n 1000000] [--workers K] [--scheduler ADDRESS]
                                  [--plot DIR] [--quick]
(``--scheduler`` needs ``pip install "scalar-autograd[distributed]"``.)
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from _common import format_table, plot_path, require_matplotlib

import scalar_autograd as sa

PIXELS = 32
"""Samples per spot."""
NOISE = 10.0
"""Standard deviation of the noise in every pixel (counts)."""
N_DEFAULT = 1_000_000


def gaussian(x: Any, a: Any, mu: Any, s: Any, b: Any) -> Any:
    """The model for ONE sample: a Gaussian spot of amplitude ``a``, centre ``mu``,
    width ``s`` on a background ``b``."""
    return a * sa.exp(-0.5 * ((x - mu) / s) ** 2) + b


def spots(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, Y, truth)``: pixel positions, ``n`` noisy spots and their parameters."""
    rng = np.random.default_rng(seed)
    x = np.arange(PIXELS, dtype=float)
    truth = np.stack([rng.uniform(500.0, 2000.0, n), rng.uniform(12.0, 20.0, n),
                      rng.uniform(2.0, 4.0, n), rng.uniform(5.0, 20.0, n)], axis=1)
    clean = truth[:, :1] * np.exp(-0.5 * ((x - truth[:, 1:2]) / truth[:, 2:3]) ** 2) \
        + truth[:, 3:]
    Y = clean + NOISE * rng.standard_normal(clean.shape)
    return x, Y, truth


def starts(Y: np.ndarray) -> np.ndarray:
    """Each fit's start, estimated from its own data."""
    low = Y.min(axis=1)
    return np.stack([Y.max(axis=1) - low, Y.argmax(axis=1).astype(float),
                     np.full(Y.shape[0], 2.0), low], axis=1)


def run(quick: bool = False, plot_dir: str | None = None, n: int | None = None,
        workers: int | None = None, scheduler: str | None = None,
        progress: bool | None = None) -> dict[str, Any]:
    """Fit ``n`` spots (10^6; 2,000 with ``quick``); returns the figures printed."""
    n = n if n is not None else (2_000 if quick else N_DEFAULT)
    x, Y, truth = spots(n)
    p0 = starts(Y)
    sigma = np.full(PIXELS, NOISE)
    executor, client = None, None
    if scheduler is not None:
        try:
            from distributed import Client
        except ImportError:
            print("--scheduler needs dask.distributed: pip install "
                  "\"scalar-autograd[distributed]\"", file=sys.stderr)
            raise
        client = Client(scheduler)
        executor = client.get_executor()
    start = time.perf_counter()
    try:
        result = sa.batch_curve_fit(gaussian, x, Y, p0, sigma=sigma, absolute_sigma=True,
                                    workers=workers, executor=executor, progress=progress)
    finally:
        if client is not None:
            client.close()
    seconds = time.perf_counter() - start
    done = result.status != sa.BatchFitResult.STATUSES.index(sa.LeastSquaresStatus.NOT_RUN)
    errors = np.sqrt(np.abs(np.diagonal(result.pcov, axis1=1, axis2=2)))
    within = np.all(np.abs(result.popt - truth) <= 3.0 * errors, axis=1) & result.success
    figures = {
        "fits": n, "done": int(done.sum()), "seconds": seconds,
        "fits_per_second": float(done.sum()) / seconds,
        "success": float(result.success[done].mean()) if done.any() else 0.0,
        "within_3_sigma": float(within[done].mean()) if done.any() else 0.0,
        "median_iterations": float(np.median(result.iterations[done])) if done.any() else 0.0,
        "statuses": result.counts(), "interrupted": result.interrupted, "plot": None,
    }
    print(format_table(
        ["fits", "where", "seconds", "fits/s", "converged", "within 3 sigma", "iterations"],
        [[f"{figures['done']:,}", scheduler or f"{workers or 'all'} threads",
          f"{seconds:.2f}", f"{figures['fits_per_second']:,.0f}",
          f"{100 * figures['success']:.2f}%", f"{100 * figures['within_3_sigma']:.2f}%",
          f"{figures['median_iterations']:.0f}"]], "rlrrrrr"))
    if result.interrupted:
        print(f"interrupted: {n - figures['done']:,} fits not run")
    if plot_dir is not None:
        Figure = require_matplotlib()
        fig = Figure(figsize=(6.0, 4.0), layout="constrained")
        ax = fig.subplots()
        for i in range(3):
            ax.plot(x, Y[i], "o", ms=3, label=f"spot {i}")
            fine = np.linspace(0, PIXELS - 1, 200)
            a, mu, s, b = result.popt[i]
            ax.plot(fine, a * np.exp(-0.5 * ((fine - mu) / s) ** 2) + b, "-")
        ax.set_xlabel("pixel")
        ax.set_ylabel("counts")
        ax.set_title(f"{figures['done']:,} fits, {figures['fits_per_second']:,.0f} fits/s")
        ax.legend()
        path = plot_path(plot_dir, "batch_fits.png")
        fig.savefig(path, dpi=100)
        figures["plot"] = path
    return figures


def main(argv: list[str] | None = None) -> int:
    lines = (__doc__ or "").strip().splitlines()
    parser = argparse.ArgumentParser(description=lines[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(lines[1:]))
    parser.add_argument("--n", type=int, default=None, help="number of spots (10^6)")
    parser.add_argument("--workers", type=int, default=None, help="threads (every core)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="a Dask scheduler's address, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--plot", metavar="DIR", default=None,
                        help="write batch_fits.png into DIR (needs matplotlib)")
    parser.add_argument("--quick", action="store_true", help="2,000 spots")
    args = parser.parse_args(argv)
    if args.plot is not None:
        try:
            require_matplotlib()
        except ImportError as exc:
            print(f"{parser.prog}: {exc}", file=sys.stderr)
            return 2
    run(quick=args.quick, plot_dir=args.plot, n=args.n, workers=args.workers,
        scheduler=args.scheduler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
