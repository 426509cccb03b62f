"""Batched small fits: ``sa.curve_fit`` / ``sa.batch_curve_fit`` / ``sa.batch_minimize``
against scipy loops, optimistix (vmapped under ``jax.jit``) and Gpufit's published CPU
figures.

Run from the repository root::

    .venv/bin/python benchmarks/bench_batch.py            # N = 10^4 and 10^5 (~2 min)
    .venv/bin/python benchmarks/bench_batch.py --quick    # smoke run, N = 10^3
    .venv/bin/python benchmarks/bench_batch.py --huge     # also N = 10^6 (~5 min, 8 GB)
    .venv/bin/python benchmarks/bench_batch.py --only single gauss ik --jax-threads 1

Problems (seeded numpy generators below, usable on their own):

(a) exponential decay ``a exp(-b t) + c``: 3 parameters, 200 noisy points, one fit;
(b) 1-D Gaussian spots ``a exp(-(x - mu)^2 / (2 s^2)) + bg``: 4 parameters, 32 samples
    per fit, N fits with random true parameters and Gaussian read noise; each fit starts
    where a Gpufit user would start it: amplitude ``max - min``, centre ``argmax``,
    a fixed width, background ``min``;
(c) inverse kinematics of a planar 7-joint arm (``scalar_autograd.kinematics``):
    10^4 reachable targets (forward kinematics of random joint angles), squared
    end-effector distance minimised from a zero or a warm start.

Peers: scipy ``curve_fit`` (one fit, warm, median of many; and a Python loop over a
subset of the Gaussian batch, per-fit time extrapolated to N and marked so), lmfit
(one fit), optimistix ``LevenbergMarquardt`` / ``LBFGS`` vmapped under ``jax.jit`` in
float64 (compile time reported apart from run time), a loop of scipy ``minimize``
(L-BFGS-B) with a JAX or CasADi gradient for IK, and Gpufit's published Cpufit speed
(quoted, not measured). Our side (``sa.curve_fit``, ``sa.batch_curve_fit`` with
``workers=1`` and ``2``, ``sa.batch_minimize``) is skipped with "not available yet"
where those functions do not exist yet.

"Within noise" (Gaussian batch): a fit counts when its error ``d = fitted - true`` lies
in the 99.9 % joint confidence region its own covariance gives:
``d^T pcov^-1 d <= n F_0.999(n, m - n)`` (curve_fit's pcov, ``absolute_sigma=False``;
the width compared in absolute value, the model being even in ``s``). A fitter that
always finds the least-squares minimum scores about 99.9 %; wrong minima and failed
fits score lower. The stricter "every parameter within 3 standard errors" is printed
too: each parameter's error over its standard error is close to Student's t with
m - n = 28 degrees of freedom, beyond 3 with probability 0.56 %, so an exact fitter
scores about (1 - 0.0056)^4 = 97.8 % there. Every batch row also reports this
fraction on the first K fits that the scipy loop solved (like for like), and how many of
those are within 1e-6 (relative, every parameter) of scipy run to convergence
(``TIGHT``: tolerances 1e-15; scipy's defaults stop ~1e-7 short, see ``TIGHT``).

Threads: OPENBLAS/OMP default to 1 here (set before numpy loads, as bench_optim does;
these problems are far too small for threaded BLAS), the scipy loops run on one
thread, XLA uses its default intra-op pool (all cores) unless ``--jax-threads 1``;
the settings in force are printed first.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import scalar_autograd as sa  # noqa: E402
from scalar_autograd.kinematics import arm_points, planar_ik_loss  # noqa: E402

# ============================================================================ published
# Gpufit's CPU reference, Cpufit: the same Levenberg-Marquardt code as Gpufit, run on one
# CPU thread. Przybylski, Thiel, Keller-Findeisen, Stock & Bates, "Gpufit: An open-source
# toolkit for GPU-accelerated curve fitting", Scientific Reports 7, 15722 (2017),
# doi:10.1038/s41598-017-15313-9: the abstract reports "a speed increase of up to 42
# times" of Gpufit over Cpufit. The absolute Cpufit speeds below are the ones the Gpufit
# repository publishes for its bundled Gpufit_Cpufit_Performance_Comparison program
# (github.com/gpufit/Gpufit, examples/c++/gpu_vs_cpu_profiling/): model GAUSS_2D
# (5 parameters: amplitude, x0, y0, one width, background) on 5 x 5 = 25 points per fit,
# float32, LSE estimator, tolerance 1e-4, at most 10 iterations, SNR 10, starts within
# +-10 % of the truth. THAT IS NOT OUR PROBLEM (b) (1-D, 4 parameters, 32 points, float64,
# tolerance ~1e-8, data-derived starts), and the repository does not say which CPU (or
# GPU) produced either table (both date from the initial commit, 2017-08). Only the
# paper's abstract could be read here, so no absolute figure from the paper is quoted.
GPUFIT_CITATION = ("Przybylski et al., Gpufit, Sci. Rep. 7, 15722 (2017), "
                   "doi:10.1038/s41598-017-15313-9")
GPUFIT_PAPER_MAX_SPEEDUP = 42.0
"""The abstract's "up to 42 times" (Gpufit on a GPU vs Cpufit on one CPU thread)."""
CPUFIT_PUBLISHED: tuple[dict[str, Any], ...] = (
    {"fits_per_s": 60_957.0, "gpufit_fits_per_s": 3_038_590.0, "n_fits": 10**7,
     "source": "Gpufit repo, examples/c++/gpu_vs_cpu_profiling/"
               "Gpufit_Cpufit_Performance_Comparison_readme.txt (example output; "
               "CUDA runtime 8.0, driver 9.0; hardware not stated)"},
    {"fits_per_s": 96_322.0, "gpufit_fits_per_s": 2_673_797.0, "n_fits": 10**7,
     "source": "Gpufit docs, installation chapter, "
               "images/GPUFIT_CPUFIT_Performance_Comparison.png (example output; "
               "CUDA runtime 6.5, driver 7.5; hardware not stated)"},
)
CPUFIT_MODEL = "2-D Gaussian, 5 params, 5x5 = 25 points, float32, tol 1e-4, <= 10 it"

# ============================================================================ data
EXP_TRUE = (2.5, 1.3, 0.5)
EXP_NOISE = 0.05
EXP_START = (1.0, 1.0, 0.0)

GAUSS_POINTS = 32
GAUSS_NOISE = 2.0            # standard deviation of the read noise, every point
GAUSS_START_WIDTH = 2.5      # the fixed width a Gpufit user would start from

IK_LENGTHS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)   # 7 links, reach 4.9
IK_TOL = 1e-6                # a solve succeeds when |end effector - target| <= this
IK_SCIPY_OPTIONS = {"gtol": 1e-12, "ftol": 1e-15, "maxiter": 1000}   # L-BFGS-B, memory 10
IK_OURS_OPTIONS = {"gradient_tolerance": 1e-12, "ftol": 1e-15, "max_iterations": 1000}
"""The same stopping rules for scipy's L-BFGS-B and ``sa.batch_minimize`` (tighter than
either's defaults, so that every solve reaches IK_TOL)."""


@dataclass
class ExpData:
    t: np.ndarray
    y: np.ndarray
    p_true: np.ndarray
    p0: np.ndarray


def exp_decay_data(m: int = 200, seed: int = 0) -> ExpData:
    """``a exp(-b t) + c`` at ``m`` points in [0, 5], Gaussian noise of sd 0.05."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 5.0, m)
    p = np.array(EXP_TRUE)
    y = exp_decay_np(t, *p) + rng.normal(0.0, EXP_NOISE, m)
    return ExpData(t, y, p, np.array(EXP_START))


@dataclass
class Spots:
    x: np.ndarray          # (m,) sample positions (pixel centres 0 .. m-1)
    y: np.ndarray          # (N, m) noisy data
    p_true: np.ndarray     # (N, 4) a, mu, s, bg
    p0: np.ndarray         # (N, 4) per-fit starts estimated from the data
    noise: float

    @property
    def n(self) -> int:
        return self.y.shape[0]

    def head(self, n: int) -> Spots:
        return Spots(self.x, self.y[:n], self.p_true[:n], self.p0[:n], self.noise)


def gauss_start(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gpufit-style starts from the data alone: ``(max - min, x[argmax], 2.5, min)``."""
    y = np.atleast_2d(y)
    lo, hi = y.min(axis=1), y.max(axis=1)
    return np.column_stack([hi - lo, x[y.argmax(axis=1)], np.full(len(y), GAUSS_START_WIDTH),
                            lo])


CHUNK = 10_000
"""Generators draw whole chunks of this many rows, each from its own seeded stream, and
cut the last one short, so the first ``k`` rows of a batch of any size ``N >= k`` are
the same data (``gauss_spots(10**6).head(10**4)`` is ``gauss_spots(10**4)``)."""


def _chunks(n: int, seed: int) -> list[tuple[int, np.random.Generator]]:
    return [(min(CHUNK, n - lo), np.random.default_rng([seed, lo // CHUNK]))
            for lo in range(0, n, CHUNK)]


def gauss_spots(n: int, m: int = GAUSS_POINTS, noise: float = GAUSS_NOISE,
                seed: int = 1) -> Spots:
    """``n`` 1-D Gaussian spots on ``m`` pixels: amplitude U(20, 100), centre U(10, m - 11)
    (kept off the edges), width U(1.5, 4), background U(5, 15), read noise N(0, noise^2)
    (peak SNR 10 to 50)."""
    x = np.arange(m, dtype=float)
    ps, ys = [], []
    for k, rng in _chunks(n, seed):
        c = CHUNK
        p = np.column_stack([rng.uniform(20.0, 100.0, c), rng.uniform(10.0, m - 11.0, c),
                             rng.uniform(1.5, 4.0, c), rng.uniform(5.0, 15.0, c)])
        y = gauss_np(x[None, :], *(p[:, j:j + 1] for j in range(4)))
        ps.append(p[:k])
        ys.append((y + rng.normal(0.0, noise, y.shape))[:k])
    p, y = np.concatenate(ps), np.concatenate(ys)
    return Spots(x, y, p, gauss_start(y, x), noise)


@dataclass
class IKData:
    lengths: np.ndarray
    q_true: np.ndarray     # (N, 7) the angles the targets were made from
    targets: np.ndarray    # (N, 2)
    q_warm: np.ndarray     # (N, 7) q_true + N(0, 0.3^2) per joint
    q_zero: np.ndarray     # (N, 7) zeros (the straight arm)

    @property
    def n(self) -> int:
        return len(self.targets)

    def start(self, kind: str) -> np.ndarray:
        return self.q_warm if kind == "warm" else self.q_zero


def planar_fk(q: np.ndarray, lengths: Sequence[float] = IK_LENGTHS) -> np.ndarray:
    """End effectors ``(N, 2)`` of a planar arm at angles ``q`` ``(N, n)`` (relative, as
    ``scalar_autograd.kinematics``)."""
    phi = np.cumsum(np.atleast_2d(q), axis=1)
    L = np.asarray(lengths)
    return np.column_stack([(L * np.cos(phi)).sum(axis=1), (L * np.sin(phi)).sum(axis=1)])


def ik_targets(n: int = 10_000, seed: int = 2, warm_sd: float = 0.3) -> IKData:
    """``n`` reachable targets of the 7-joint planar arm: forward kinematics of angles
    U(-pi/2, pi/2) per joint."""
    L = np.array(IK_LENGTHS)
    qs, warm = [], []
    for k, rng in _chunks(n, seed):
        q = rng.uniform(-np.pi / 2, np.pi / 2, (CHUNK, len(L)))
        qs.append(q[:k])
        warm.append((q + rng.normal(0.0, warm_sd, q.shape))[:k])
    q = np.concatenate(qs)
    targets = planar_fk(q, L)
    assert np.allclose(arm_points(q[0], L)[-1], targets[0])   # mirrors the library's FK
    return IKData(L, q, targets, np.concatenate(warm), np.zeros_like(q))


# ============================================================================ models
def exp_decay_np(t: Any, a: Any, b: Any, c: Any) -> Any:
    return a * np.exp(-b * t) + c


def exp_decay_jac(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    e = np.exp(-b * t)
    return np.column_stack([e, -a * t * e, np.ones_like(t)])


def gauss_np(x: Any, a: Any, mu: Any, s: Any, bg: Any) -> Any:
    return a * np.exp(-0.5 * ((x - mu) / s) ** 2) + bg


def gauss_jac(x: np.ndarray, a: float, mu: float, s: float, bg: float) -> np.ndarray:
    u = (x - mu) / s
    e = np.exp(-0.5 * u * u)
    return np.column_stack([e, a * e * u / s, a * e * u * u / s, np.ones_like(x)])


def exp_decay_sa(t: Any, a: Any, b: Any, c: Any) -> Any:
    """The model as a user of ``sa.curve_fit`` writes it: one sample, ``sa`` ops."""
    return a * sa.exp(-b * t) + c


def gauss_sa(x: Any, a: Any, mu: Any, s: Any, bg: Any) -> Any:
    return a * sa.exp(-0.5 * ((x - mu) / s) ** 2) + bg


def ik_loss_sa(q: Sequence[Any], target: Sequence[Any]) -> Any:
    return planar_ik_loss(q, (target[0], target[1]), IK_LENGTHS)


# ============================================================================ helpers
def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls, as ``timeit`` measures: one collection
    before the loop and the cyclic collector off during it. (A ``gc.collect()`` before
    every call walks every object of the process, JAX's included, and leaves the CPU
    caches cold: it made a warm 40 us fit measure 170 us, and scipy's 130 us 330 us.)"""
    times, out = [], None
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(max(repeats, 1)):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
    finally:
        if enabled:
            gc.enable()
    return statistics.median(times), out


NOISE_LEVEL = 0.999
"""The confidence level of the "within noise" test."""


def within_noise(popt: np.ndarray, pcov: np.ndarray, p_true: np.ndarray) -> np.ndarray:
    """Per fit: the error ``d = fitted - true`` is within the noise its own covariance
    predicts: ``d^T pcov^-1 d <= n F_{0.999}(n, m - n)`` (width by absolute value).

    With Gaussian noise and ``pcov`` scaled by the residual variance (curve_fit's
    ``absolute_sigma=False``), ``d^T pcov^-1 d / n`` follows Fisher's F(n, m - n) at the
    least-squares minimum (Hotelling's joint confidence region), so a fitter that finds
    the minimum passes 99.9 % of fits; a wrong minimum or a failed fit fails.
    """
    from scipy.stats import f as fisher

    popt = np.array(popt, dtype=float, copy=True)
    popt[:, 2] = np.abs(popt[:, 2])
    n = popt.shape[1]
    limit = n * fisher.ppf(NOISE_LEVEL, n, GAUSS_POINTS - n)
    d = popt - p_true
    ok = np.all(np.isfinite(d), axis=1) & np.all(np.isfinite(pcov), axis=(1, 2))
    out = np.zeros(popt.shape[0], dtype=bool)
    if ok.any():
        with np.errstate(invalid="ignore", over="ignore"):
            solved = np.linalg.solve(pcov[ok], d[ok][..., None])[..., 0]
        out[ok] = np.einsum("ij,ij->i", d[ok], solved) <= limit
    return out


def within_3_sigma(popt: np.ndarray, pcov: np.ndarray, p_true: np.ndarray) -> np.ndarray:
    """Per fit: every ``|fitted - true| <= 3 sqrt(pcov_ii)`` (width by absolute value);
    about 97.8 % for an exact fitter (see the module docstring)."""
    popt = np.array(popt, dtype=float, copy=True)
    popt[:, 2] = np.abs(popt[:, 2])
    se = np.sqrt(np.abs(np.diagonal(pcov, axis1=1, axis2=2)))
    with np.errstate(invalid="ignore"):
        ok = np.all(np.abs(popt - p_true) <= 3.0 * se, axis=1)
    return ok & np.all(np.isfinite(popt), axis=1) & np.all(np.isfinite(se), axis=1)


def rel_diff(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def vs_scipy(popt: np.ndarray, pcov: np.ndarray, spots: Spots,
             ref: dict[str, Any] | None) -> str:
    """On the first K fits of the scipy loop: this fitter's within-noise fraction (like
    for like with scipy's) and its agreement with scipy converged (``TIGHT``): the share
    of fits whose every parameter is within 1e-6 (relative) of it."""
    if not ref:
        return ""
    k = len(ref["popt"])
    if popt.shape[0] < k:
        return ""
    within = within_noise(popt[:k], pcov[:k], spots.p_true[:k])
    both = ref["ok"] & np.all(np.isfinite(popt[:k]), axis=1)
    d = (np.abs(popt[:k] - ref["popt"]) /
         np.maximum(np.abs(ref["popt"]), 1e-12)).max(axis=1)[both]
    return (f"; first {k}: within noise {within.mean():.2%} (scipy converged {ref['within']:.2%}), "
            f"{np.mean(d <= 1e-6):.2%} within 1e-6 of scipy converged (median rel "
            f"{np.median(d):.1e})")


@dataclass
class Row:
    problem: str
    system: str
    n: int                  # fits (or solves) the time is for
    seconds: float          # median wall time for all n (or extrapolated)
    accuracy: str = ""
    note: str = ""
    baseline: bool = False  # the row the problem's ratios are taken against

    @property
    def per_fit(self) -> float:
        return self.seconds / self.n


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.system:<46} N={row.n:<8} {_fmt_s(row.seconds):>9}  "
              f"{_fmt_s(row.per_fit):>9}/fit  {row.accuracy}  {row.note}", flush=True)
        return row

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


def _fmt_s(s: float) -> str:
    if not np.isfinite(s):
        return "n/a"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def not_available(report: Report, what: str) -> None:
    report.say(f"  OURS {what}: not available yet")


def thread_settings(jax_threads: int | None) -> str:
    env = ", ".join(f"{k}={os.environ.get(k, 'unset')}" for k in
                    ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                     "OPENBLAS_CORETYPE", "XLA_FLAGS"))
    xla = ("1 intra-op thread (--jax-threads 1)" if jax_threads == 1 else
           f"XLA default intra-op pool ({os.cpu_count()} cores)")
    return (f"threads: {os.cpu_count()} cores; {env}; scipy/lmfit loops: one thread; "
            f"jax: {xla}; ours: workers as stated")


# ============================================================================ OUR SIDE
# Calls into the APIs being written now. Each is guarded by hasattr so the script runs
# (printing "not available yet") before they land. If the landed signature differs from
# the one assumed here, the failure is printed, not raised: adjust the call.

def ours_single(report: Report, data: ExpData, ref: dict[str, Any], repeats: int) -> None:
    """OURS: ``sa.curve_fit`` on problem (a): first call (compiles), warm median, and the
    accuracy gates popt <= 1e-7 and pcov <= 1e-5 (relative to the largest entry) against
    scipy converged (``TIGHT``); the distance to scipy's defaults is printed too."""
    if not hasattr(sa, "curve_fit"):
        return not_available(report, "sa.curve_fit")
    try:
        def run() -> Any:
            return sa.curve_fit(exp_decay_sa, data.t, data.y, data.p0)

        t_first, _ = median_time(run, 1)
        t, (popt, pcov) = median_time(run, repeats)
    except Exception as exc:  # noqa: BLE001 - reported: the API may differ from the guess
        return report.say(f"  OURS sa.curve_fit failed: {type(exc).__name__}: {exc}")
    dp, dc = rel_diff(popt, ref["popt"]), rel_diff(pcov, ref["pcov"])
    verdict = "PASS" if dp <= 1e-7 and dc <= 1e-5 else "FAIL"
    report.add(Row("exp decay (1 fit)", "OURS sa.curve_fit", 1, t,
                   f"vs converged: popt rel {dp:.1e} (<=1e-7), pcov rel {dc:.1e} (<=1e-5): "
                   f"{verdict}; vs scipy default: popt {rel_diff(popt, ref['popt_default']):.1e}"
                   f", pcov {rel_diff(pcov, ref['pcov_default']):.1e}",
                   f"first call {_fmt_s(t_first)} (incl. compile)"))


def ours_batch_gauss(report: Report, spots: Spots, workers: int, repeats: int,
                     scipy_ref: dict[str, Any] | None) -> None:
    """OURS: ``sa.batch_curve_fit`` on problem (b) with ``workers`` threads."""
    if not hasattr(sa, "batch_curve_fit"):
        return not_available(report, f"sa.batch_curve_fit(workers={workers})")
    try:
        def run() -> Any:
            return sa.batch_curve_fit(gauss_sa, spots.x, spots.y, spots.p0, workers=workers,
                                      progress=False)

        t_first, _ = median_time(run, 1)
        t, res = median_time(run, repeats)
        popt, pcov = np.asarray(res.popt), np.asarray(res.pcov)
        success = np.asarray(res.success, dtype=bool)
        iters = np.asarray(res.iterations)
    except Exception as exc:  # noqa: BLE001
        return report.say(f"  OURS sa.batch_curve_fit(workers={workers}) failed: "
                          f"{type(exc).__name__}: {exc}")
    within = within_noise(popt, pcov, spots.p_true)
    sigma3 = within_3_sigma(popt, pcov, spots.p_true)
    acc = (f"within noise {within.mean():.2%} (3 sigma each {sigma3.mean():.2%}), "
           f"success {success.mean():.2%}, "
           f"iterations mean {iters.mean():.1f}{vs_scipy(popt, pcov, spots, scipy_ref)}")
    report.add(Row(f"gauss N={spots.n}", f"OURS sa.batch_curve_fit workers={workers}",
                   spots.n, t, acc, f"first call {_fmt_s(t_first)} (incl. compile)"))


def ours_batch_ik(report: Report, ik: IKData, start: str, workers: int,
                  repeats: int) -> None:
    """OURS: ``sa.batch_minimize`` (batched L-BFGS) on problem (c): ``loss(q, target)``
    on one problem's Values, ``x0`` ``(N, 7)``, ``data=(targets,)`` ``(N, 2)``, the
    stopping rules of ``IK_OURS_OPTIONS``."""
    if not hasattr(sa, "batch_minimize"):
        return not_available(report, f"sa.batch_minimize(workers={workers}, {start} start)")
    q0 = ik.start(start)
    try:
        def run() -> Any:
            return sa.batch_minimize(ik_loss_sa, q0, data=(ik.targets,), workers=workers,
                                     progress=False, **IK_OURS_OPTIONS)

        t_first, _ = median_time(run, 1)
        t, res = median_time(run, repeats)
        q = np.asarray(res.x)
        extra = (f", success {np.mean(res.success):.2%}, iterations mean "
                 f"{np.mean(res.iterations):.1f} max {np.max(res.iterations)}")
    except Exception as exc:  # noqa: BLE001
        return report.say(f"  OURS sa.batch_minimize(workers={workers}) failed: "
                          f"{type(exc).__name__}: {exc}")
    err = np.linalg.norm(planar_fk(q, ik.lengths) - ik.targets, axis=1)
    report.add(Row(f"IK {start} N={ik.n}", f"OURS sa.batch_minimize workers={workers}",
                   ik.n, t, f"reached (<= {IK_TOL:g}) {np.mean(err <= IK_TOL):.2%}{extra}",
                   f"first call {_fmt_s(t_first)} (incl. compile)"))


# ============================================================================ peers
TIGHT = {"xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15, "maxfev": 10_000}
"""scipy run to the minimum (MINPACK stops at rounding): the accuracy reference. With its
defaults (xtol = ftol = 1.49e-8) curve_fit stops a little short of the minimum: on
problem (a) its popt is 6.5e-8 and its pcov 1.6e-5 (relative) away from the converged
values, which alone would fail the 1e-7 / 1e-5 gates. Both are printed."""


def scipy_single(report: Report, data: ExpData, repeats: int) -> dict[str, Any]:
    """scipy ``curve_fit`` (lm) on problem (a): default (finite differences), exact
    Jacobian, and exact Jacobian converged (``TIGHT``, the accuracy reference)."""
    from scipy.optimize import curve_fit

    def jac(t: np.ndarray, *p: float) -> np.ndarray:
        return exp_decay_jac(t, *p)

    t_fd, (p_fd, c_fd) = median_time(
        lambda: curve_fit(exp_decay_np, data.t, data.y, p0=data.p0), repeats)
    t_j, (p_j, c_j) = median_time(
        lambda: curve_fit(exp_decay_np, data.t, data.y, p0=data.p0, jac=jac), repeats)
    t_c, (p_c, c_c) = median_time(
        lambda: curve_fit(exp_decay_np, data.t, data.y, p0=data.p0, jac=jac, **TIGHT), repeats)
    report.add(Row("exp decay (1 fit)", "scipy curve_fit (lm, FD Jacobian, default)", 1, t_fd,
                   f"vs converged: popt rel {rel_diff(p_fd, p_c):.1e}, pcov rel "
                   f"{rel_diff(c_fd, c_c):.1e}", baseline=True))
    report.add(Row("exp decay (1 fit)", "scipy curve_fit (lm, exact Jacobian)", 1, t_j,
                   f"vs converged: popt rel {rel_diff(p_j, p_c):.1e}, pcov rel "
                   f"{rel_diff(c_j, c_c):.1e}"))
    report.add(Row("exp decay (1 fit)", "scipy curve_fit (exact J, tol 1e-15: reference)", 1,
                   t_c, f"popt {np.array2string(p_c, precision=8)}"))
    return {"popt": p_c, "pcov": c_c, "popt_default": p_fd, "pcov_default": c_fd}


def lmfit_single(report: Report, data: ExpData, ref: dict[str, Any], repeats: int) -> None:
    try:
        import lmfit
    except ImportError:
        return report.say("  lmfit not installed (pip install lmfit): skipped")
    model = lmfit.Model(exp_decay_np, independent_vars=["t"])
    params = model.make_params(a=data.p0[0], b=data.p0[1], c=data.p0[2])
    t, res = median_time(lambda: model.fit(data.y, params, t=data.t), repeats)
    p = np.array([res.params[k].value for k in "abc"])
    report.add(Row("exp decay (1 fit)", "lmfit Model.fit (leastsq, FD)", 1, t,
                   f"vs converged: popt rel {rel_diff(p, ref['popt']):.1e}"))


def scipy_loop_gauss(report: Report, spots: Spots, subset: int, repeats: int,
                     n_extrapolate: Sequence[int]) -> dict[str, Any]:
    """A Python loop of scipy ``curve_fit`` over the first ``subset`` fits of problem (b);
    per-fit median (over ``repeats`` passes) extrapolated to each N, marked so."""
    from scipy.optimize import OptimizeWarning, curve_fit

    sub = spots.head(subset)

    def exact(x: np.ndarray, *p: float) -> np.ndarray:
        return gauss_jac(x, *p)

    def fit_all(jac: Any, options: dict[str, Any], popt: np.ndarray, pcov: np.ndarray) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            for i in range(sub.n):
                try:
                    popt[i], pcov[i] = curve_fit(gauss_np, sub.x, sub.y[i], p0=sub.p0[i],
                                                 jac=jac, **options)
                except RuntimeError:            # maxfev reached: a failed fit
                    popt[i], pcov[i] = np.nan, np.nan

    # the reference: every fit of the subset converged (untimed)
    ref_popt, ref_pcov = np.full((sub.n, 4), np.nan), np.full((sub.n, 4, 4), np.nan)
    fit_all(exact, TIGHT, ref_popt, ref_pcov)
    ok = np.all(np.isfinite(ref_popt), axis=1)
    ref = {"popt": ref_popt, "pcov": ref_pcov, "ok": ok,
           "within": within_noise(ref_popt, ref_pcov, sub.p_true).mean()}
    for label, jac in (("FD Jacobian, default", None), ("exact Jacobian", exact)):
        popt, pcov = np.full((sub.n, 4), np.nan), np.full((sub.n, 4, 4), np.nan)
        t, _ = median_time(lambda jac=jac, popt=popt, pcov=pcov: fit_all(jac, {}, popt, pcov),
                           repeats)
        acc = (f"converged {np.all(np.isfinite(popt), axis=1).mean():.2%}"
               f"{vs_scipy(popt, pcov, sub, ref)}")
        report.add(Row(f"gauss loop {sub.n}", f"scipy curve_fit loop ({label})", sub.n, t,
                       acc, "measured", baseline=jac is None))
        for n in n_extrapolate:
            report.add(Row(f"gauss N={n}", f"scipy curve_fit loop ({label})", n,
                           t / sub.n * n, acc, f"EXTRAPOLATED from {sub.n} fits",
                           baseline=jac is None))
    return ref


def set_jax_threads(jax_threads: int | None) -> None:
    """``--jax-threads 1``: XLA's CPU backend on one intra-op thread (before jax loads)."""
    if jax_threads != 1:
        return
    if "jax" in sys.modules:
        print("warning: jax already imported; --jax-threads 1 has no effect", file=sys.stderr)
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    if flags not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


def _jax(jax_threads: int | None) -> Any:
    set_jax_threads(jax_threads)
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def optimistix_gauss(report: Report, spots: Spots, repeats: int, jax_threads: int | None,
                     scipy_ref: dict[str, Any] | None = None) -> None:
    """``optimistix.LevenbergMarquardt`` (rtol = atol = 1e-8, max 256 steps) vmapped under
    ``jax.jit`` over problem (b), float64, with curve_fit's pcov ``s^2 (J^T J)^-1`` from
    ``jax.jacfwd`` at the solution; compile (lower + compile for this N) timed apart."""
    try:
        import optimistix as optx
    except ImportError:
        return report.say("  optimistix not installed (pip install optimistix): skipped")
    jax = _jax(jax_threads)
    jnp = jax.numpy
    m, n = spots.x.size, 4
    x = jnp.asarray(spots.x)
    solver = optx.LevenbergMarquardt(rtol=1e-8, atol=1e-8)

    def residuals(p: Any, y: Any) -> Any:
        return p[0] * jnp.exp(-0.5 * ((x - p[1]) / p[2]) ** 2) + p[3] - y

    def one(p0: Any, y: Any) -> Any:
        sol = optx.least_squares(residuals, solver, p0, args=y, max_steps=256, throw=False)
        r = residuals(sol.value, y)
        J = jax.jacfwd(residuals)(sol.value, y)
        pcov = jnp.linalg.inv(J.T @ J) * (r @ r / (m - n))
        return sol.value, pcov, sol.result == optx.RESULTS.successful, sol.stats["num_steps"]

    P0, Y = jnp.asarray(spots.p0), jnp.asarray(spots.y)
    t_compile, compiled = median_time(lambda: jax.jit(jax.vmap(one)).lower(P0, Y).compile(), 1)
    t, out = median_time(lambda: jax.block_until_ready(compiled(P0, Y)), repeats)
    popt, pcov, ok, steps = (np.asarray(v) for v in out)
    within = within_noise(popt, pcov, spots.p_true)
    sigma3 = within_3_sigma(popt, pcov, spots.p_true)
    acc = (f"within noise {within.mean():.2%} (3 sigma each {sigma3.mean():.2%}), "
           f"success {ok.mean():.2%}, steps mean "
           f"{steps.mean():.1f} max {steps.max()}{vs_scipy(popt, pcov, spots, scipy_ref)}")
    report.add(Row(f"gauss N={spots.n}", "optimistix LM, vmap+jit (run)", spots.n, t, acc,
                   f"compile {_fmt_s(t_compile)} apart"))
    report.add(Row(f"gauss N={spots.n}", "optimistix LM, vmap+jit (compile + 1 run)", spots.n,
                   t + t_compile, "", "lower+compile for this N, then one run"))


def scipy_ik_loop(report: Report, ik: IKData, start: str, subset: int, grad: str,
                  repeats: int, jax_threads: int | None) -> None:
    """A loop of scipy ``minimize(method="L-BFGS-B")`` over the first ``subset`` targets,
    value and gradient from a jitted JAX function or a CasADi SX Function;
    ``IK_SCIPY_OPTIONS``; per solve extrapolated to N."""
    from scipy.optimize import minimize

    L = ik.lengths
    if grad == "jax":
        jax = _jax(jax_threads)
        jnp = jax.numpy
        Lj = jnp.asarray(L)

        def loss(q: Any, target: Any) -> Any:
            phi = jnp.cumsum(q)
            d = jnp.stack([Lj @ jnp.cos(phi), Lj @ jnp.sin(phi)]) - target
            return d @ d

        vg = jax.jit(jax.value_and_grad(loss))

        def fun(q: np.ndarray, target: Any) -> tuple[float, np.ndarray]:
            v, g = vg(q, target)
            return float(v), np.asarray(g)

        args = [jnp.asarray(t) for t in ik.targets[:subset]]
        fun(ik.q_zero[0], args[0])                       # compile once, outside the timing
    else:
        try:
            import casadi as ca
        except ImportError:
            return report.say("  casadi not installed (pip install casadi): skipped")
        q, tgt = ca.SX.sym("q", len(L)), ca.SX.sym("t", 2)
        phi = ca.cumsum(q)
        d = ca.vertcat(ca.dot(ca.DM(L), ca.cos(phi)), ca.dot(ca.DM(L), ca.sin(phi))) - tgt
        f = ca.Function("f", [q, tgt], [ca.dot(d, d), ca.gradient(ca.dot(d, d), q)])

        def fun(q: np.ndarray, target: Any) -> tuple[float, np.ndarray]:
            v, g = f(q, target)
            return float(v), np.asarray(g).ravel()

        args = list(ik.targets[:subset])
    q0 = ik.start(start)[:subset]
    qs = np.empty_like(q0)

    def loop() -> None:
        for i in range(subset):
            qs[i] = minimize(fun, q0[i], args=(args[i],), jac=True, method="L-BFGS-B",
                             options=IK_SCIPY_OPTIONS).x

    t, _ = median_time(loop, repeats)
    err = np.linalg.norm(planar_fk(qs, L) - ik.targets[:subset], axis=1)
    acc = f"reached (<= {IK_TOL:g}) {np.mean(err <= IK_TOL):.2%} (first {subset})"
    name = f"scipy L-BFGS-B loop, {'JAX' if grad == 'jax' else 'CasADi'} grad"
    report.add(Row(f"IK {start} loop {subset}", name, subset, t, acc, "measured",
                   baseline=grad == "jax"))
    report.add(Row(f"IK {start} N={ik.n}", name, ik.n, t / subset * ik.n, acc,
                   f"EXTRAPOLATED from {subset}", baseline=grad == "jax"))


def optimistix_ik(report: Report, ik: IKData, start: str, repeats: int,
                  jax_threads: int | None) -> None:
    """``optimistix.LBFGS`` (rtol = 1e-10, atol = 1e-14, max 1000 steps) vmapped under
    ``jax.jit`` over all targets; compile timed apart."""
    try:
        import optimistix as optx
    except ImportError:
        return report.say("  optimistix not installed: skipped")
    jax = _jax(jax_threads)
    jnp = jax.numpy
    Lj = jnp.asarray(ik.lengths)

    def loss(q: Any, target: Any) -> Any:
        phi = jnp.cumsum(q)
        d = jnp.stack([Lj @ jnp.cos(phi), Lj @ jnp.sin(phi)]) - target
        return d @ d

    solver = optx.LBFGS(rtol=1e-10, atol=1e-14)

    def one(q0: Any, target: Any) -> Any:
        sol = optx.minimise(loss, solver, q0, args=target, max_steps=1000, throw=False)
        return sol.value, sol.stats["num_steps"]

    Q0, T = jnp.asarray(ik.start(start)), jnp.asarray(ik.targets)
    t_compile, compiled = median_time(lambda: jax.jit(jax.vmap(one)).lower(Q0, T).compile(), 1)
    t, (q, steps) = median_time(lambda: jax.block_until_ready(compiled(Q0, T)), repeats)
    err = np.linalg.norm(planar_fk(np.asarray(q), ik.lengths) - ik.targets, axis=1)
    steps = np.asarray(steps)
    report.add(Row(f"IK {start} N={ik.n}", "optimistix LBFGS, vmap+jit (run)", ik.n, t,
                   f"reached (<= {IK_TOL:g}) {np.mean(err <= IK_TOL):.2%}, steps mean "
                   f"{steps.mean():.1f} max {steps.max()}",
                   f"compile {_fmt_s(t_compile)} apart"))


def published_rows(report: Report) -> None:
    for rec in CPUFIT_PUBLISHED:
        report.add(Row("published (Cpufit)", "Cpufit, 1 CPU thread (PUBLISHED, not run)",
                       rec["n_fits"], rec["n_fits"] / rec["fits_per_s"], CPUFIT_MODEL,
                       f"Gpufit same table {rec['gpufit_fits_per_s']:,.0f} fits/s; "
                       f"{rec['source']}"))
    report.say(f"  paper: {GPUFIT_CITATION}: Gpufit up to {GPUFIT_PAPER_MAX_SPEEDUP:.0f}x "
               f"Cpufit (abstract). The Cpufit figures are for a DIFFERENT model "
               f"({CPUFIT_MODEL}) and unstated hardware: context, not a like-for-like peer.")


# ============================================================================ table
def print_table(report: Report) -> None:
    """Every row with per-fit time, fits/s and the ratio to its problem's baseline row
    (scipy's default curve_fit, the scipy loop with FD Jacobian, or the L-BFGS-B loop with
    a JAX gradient); a ratio > 1 is faster than that baseline."""
    base: dict[str, float] = {}
    for r in report.rows:
        if r.baseline:
            base.setdefault(r.problem, r.per_fit)
    print("\n== summary: medians; ratio = baseline per fit / this per fit "
          "(baseline: scipy default of the same problem) ==")
    head = (f"{'problem':<22} {'system':<46} {'N':>8} {'total':>10} {'per fit':>10} "
            f"{'fits/s':>11} {'ratio':>8}  accuracy / note")
    print(head)
    print("-" * len(head))
    for r in report.rows:
        b = base.get(r.problem)
        ratio = f"{b / r.per_fit:7.1f}x" if b else "      -"
        rate = r.n / r.seconds if r.seconds > 0 else float("inf")
        print(f"{r.problem:<22} {r.system:<46} {r.n:>8} {_fmt_s(r.seconds):>10} "
              f"{_fmt_s(r.per_fit):>10} {rate:>11,.0f} {ratio:>8}  "
              f"{'; '.join(s for s in (r.accuracy, r.note) if s)}")


# ============================================================================ main
SECTIONS = ("single", "gauss", "ik", "published")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: N = 10^3, small scipy subsets, 1 repeat")
    parser.add_argument("--huge", action="store_true", help="also N = 10^6 Gaussian fits")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of batch runs")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="some sections only")
    parser.add_argument("--jax-threads", type=int, default=None,
                        help="1: XLA on one intra-op thread (set before jax loads)")
    args = parser.parse_args(argv)
    quick = args.quick
    repeats = 1 if quick else args.repeats
    sections = args.only or SECTIONS
    sizes = [10**3] if quick else [10**4, 10**5] + ([10**6] if args.huge else [])
    report = Report()
    set_jax_threads(args.jax_threads)

    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"scalar_autograd {sa.__version__}, {platform.machine()}")
    print(thread_settings(args.jax_threads))
    available = [f for f in ("curve_fit", "batch_curve_fit", "batch_minimize")
                 if hasattr(sa, f)]
    print(f"our APIs present: {', '.join(available) or 'none yet'}")

    if "single" in sections:
        data = exp_decay_data()
        reps = 20 if quick else 300
        print(f"\n== (a) exp decay a*exp(-b t)+c, m = {data.t.size}, 1 fit, warm, median of "
              f"{reps} ==")
        ref = scipy_single(report, data, reps)
        lmfit_single(report, data, ref, max(reps // 5, 5))
        ours_single(report, data, ref, reps)

    if "gauss" in sections:
        spots_all = gauss_spots(max(sizes))
        subset = 200 if quick else 2000
        print(f"\n== (b) 1-D Gaussian spots, 4 params, {GAUSS_POINTS} points, noise sd "
              f"{GAUSS_NOISE}, Gpufit-style starts; N = {sizes} ==")
        ref = scipy_loop_gauss(report, spots_all, min(subset, max(sizes)),
                               1 if quick else 3, sizes)
        for n in sizes:
            spots = spots_all.head(n)
            optimistix_gauss(report, spots, 1 if n >= 10**6 else repeats, args.jax_threads,
                             ref)
            for workers in (1, 2):
                ours_batch_gauss(report, spots, workers, 1 if n >= 10**6 else repeats, ref)

    if "ik" in sections:
        ik = ik_targets(10**3 if quick else 10**4)
        subset = 100 if quick else 500
        print(f"\n== (c) IK, planar 7-joint arm (links {IK_LENGTHS}), {ik.n} reachable "
              f"targets, success = end effector within {IK_TOL:g} ==")
        for start in ("warm", "zero"):
            scipy_ik_loop(report, ik, start, subset, "jax", 1, args.jax_threads)
            scipy_ik_loop(report, ik, start, subset, "casadi", 1, args.jax_threads)
            optimistix_ik(report, ik, start, repeats, args.jax_threads)
            for workers in (1, 2):
                ours_batch_ik(report, ik, start, workers, repeats)

    if "published" in sections:
        print("\n== published: Gpufit paper / repository (quoted, not measured) ==")
        published_rows(report)

    print_table(report)
    print("\n" + thread_settings(args.jax_threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
