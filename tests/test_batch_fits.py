"""Batched fits: ``sa.batch_curve_fit``, ``sa.batch_least_squares`` and their fan-out.

The oracles are independent of the code under test: scipy's ``curve_fit`` and
``least_squares`` per problem, analytic Jacobians written here in numpy, and the
batch's own definition (every fit of a batch is the single :func:`sa.curve_fit` of its
row, and the results do not depend on how the batch is split or where it runs).
Interrupts are simulated (a ``KeyboardInterrupt`` raised at chosen points), progress
is read from the captured stderr.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import io
import multiprocessing
import re
import sys
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.lsq.status import Status

so = pytest.importorskip("scipy.optimize")
fanout = importlib.import_module("scalar_autograd.runtime.fanout")
batch_module = importlib.import_module("scalar_autograd.lsq.batch")

TIGHT = {"ftol": 1e-14, "xtol": 1e-14, "gtol": 1e-14}
FIELDS = ("x", "pcov", "cost", "status", "iterations", "nfev", "njev", "grad_norm")
NOT_RUN = list(Status).index(Status.NOT_RUN)


# ---------------------------------------------------------------------------- models
def spot(x, a, mu, s, c):
    """A 1-D Gaussian spot on a background: 4 params."""
    return a * sa.exp(-0.5 * ((x - mu) / s) ** 2) + c


def spot_np(x, a, mu, s, c):
    return a * np.exp(-0.5 * ((x - mu) / s) ** 2) + c


def spot_jac(x, a, mu, s, c):
    """The spot's Jacobian by hand, for scipy (its finite differences would cost the
    oracle ~1e-7 of accuracy)."""
    z = (x - mu) / s
    e = np.exp(-0.5 * z * z)
    return np.stack([e, a * e * z / s, a * e * z * z / s, np.ones_like(x)], axis=1)


def tilt(x, a, b, c):
    """Two x components."""
    return a * x[0] + b * sa.exp(-x[1]) + c


def tilt_np(x, a, b, c):
    return a * x[0] + b * np.exp(-x[1]) + c


def tilt_jac(x, a, b, c):
    return np.stack([x[0], np.exp(-x[1]), np.ones_like(x[0])], axis=1)


N_SPOTS, M = 300, 32
P0 = np.array([1.5, 0.0, 1.0, 0.0])


@pytest.fixture(scope="module")
def spots() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` (32,), ``Y`` (300, 32) of noisy spots, and the truth (300, 4)."""
    rng = np.random.default_rng(42)
    x = np.linspace(-3.0, 3.0, M)
    truth = np.stack([rng.uniform(1.0, 3.0, N_SPOTS), rng.uniform(-1.0, 1.0, N_SPOTS),
                      rng.uniform(0.5, 1.2, N_SPOTS), rng.uniform(-0.2, 0.2, N_SPOTS)], 1)
    Y = spot_np(x[None, :], *truth.T[:, :, None]) + 0.05 * rng.standard_normal((N_SPOTS, M))
    return x, Y, truth


@pytest.fixture(scope="module")
def serial(spots):
    x, Y, _ = spots
    return sa.batch_curve_fit(spot, x, Y, p0=P0, workers=1)


def assert_identical(a: sa.BatchFitResult, b: sa.BatchFitResult) -> None:
    """Every output of two batches equal bit for bit (nan where nan)."""
    for name in FIELDS:
        u, v = getattr(a, name), getattr(b, name)
        assert u.shape == v.shape and u.dtype == v.dtype, name
        assert u.tobytes() == v.tobytes(), f"{name} differs"


def assert_consistent(result: sa.BatchFitResult, full: sa.BatchFitResult,
                      start: np.ndarray) -> np.ndarray:
    """An interrupted batch: each problem is either exactly as in the full run or not
    run (status NOT_RUN, its start point, nan cost and pcov, zero counts). Returns the
    mask of problems run."""
    ran = result.status != NOT_RUN
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(result, name)[ran], getattr(full, name)[ran],
                                      err_msg=name)
    idle = ~ran
    np.testing.assert_array_equal(result.x[idle], np.broadcast_to(start, result.x.shape)[idle])
    assert np.isnan(result.cost[idle]).all() and np.isnan(result.pcov[idle]).all()
    assert np.isnan(result.grad_norm[idle]).all()
    assert (result.iterations[idle] == 0).all() and (result.nfev[idle] == 0).all()
    assert not result.success[idle].any()
    return ran


# ---------------------------------------------------------------------------- oracles
def test_every_fit_is_its_single_curve_fit(spots, serial) -> None:
    x, Y, _ = spots
    assert serial.success.all()
    for i in range(N_SPOTS):
        popt, pcov = sa.curve_fit(spot, x, Y[i], p0=P0)
        np.testing.assert_array_equal(serial.popt[i], popt)
        np.testing.assert_allclose(serial.pcov[i], pcov, rtol=1e-12, atol=0)


def test_fits_match_scipy(spots, serial) -> None:
    """scipy solved to rounding, with the exact Jacobian; the width's sign is not
    determined by the model (``s`` enters squared), so it is compared up to sign, with
    ``pcov`` flipped to match."""
    x, Y, _ = spots
    for i in range(N_SPOTS):
        popt_s, pcov_s = so.curve_fit(spot_np, x, Y[i], p0=P0, jac=spot_jac, **TIGHT)
        flip = np.array([1.0, 1.0, np.sign(serial.popt[i, 2] * popt_s[2]), 1.0])
        popt_s, pcov_s = popt_s * flip, pcov_s * np.outer(flip, flip)
        scale = np.maximum(1.0, np.abs(popt_s))
        assert np.all(np.abs(serial.popt[i] - popt_s) <= 1e-6 * scale), i
        assert np.max(np.abs(serial.pcov[i] - pcov_s)) <= 1e-5 * np.max(np.abs(pcov_s)), i
        cost_s = 0.5 * np.sum((spot_np(x, *popt_s) - Y[i]) ** 2)
        np.testing.assert_allclose(serial.cost[i], cost_s, rtol=1e-9)


def test_truth_recovered(spots, serial) -> None:
    _, _, truth = spots
    popt = serial.popt.copy()
    popt[:, 2] = np.abs(popt[:, 2])
    # the noise is 0.05 on 32 samples: every parameter within 5 standard errors
    err = np.abs(popt - truth) / np.sqrt(np.diagonal(serial.pcov, axis1=1, axis2=2))
    assert np.all(err < 6.0)


# ---------------------------------------------------------------------------- argument forms
def test_shared_and_per_fit_xdata_agree(spots, serial) -> None:
    x, Y, _ = spots
    assert_identical(sa.batch_curve_fit(spot, np.tile(x, (N_SPOTS, 1)), Y, p0=P0,
                                        workers=1), serial)


def test_per_fit_xdata_rows_are_their_single_fits(spots) -> None:
    x, Y, _ = spots
    X = x[None, :] * np.linspace(0.9, 1.1, 40)[:, None] + np.linspace(-0.1, 0.1, 40)[:, None]
    res = sa.batch_curve_fit(spot, X, Y[:40], p0=P0)
    for i in range(40):
        popt, pcov = sa.curve_fit(spot, X[i], Y[i], p0=P0)
        np.testing.assert_array_equal(res.popt[i], popt)
        np.testing.assert_allclose(res.pcov[i], pcov, rtol=1e-12, atol=0)


def test_p0_shared_and_per_fit(spots, serial) -> None:
    x, Y, _ = spots
    assert_identical(sa.batch_curve_fit(spot, x, Y, p0=np.tile(P0, (N_SPOTS, 1)),
                                        workers=1), serial)
    rng = np.random.default_rng(1)
    starts = P0 + rng.uniform(-0.2, 0.2, (40, 4))
    res = sa.batch_curve_fit(spot, x, Y[:40], p0=starts)
    for i in range(40):
        np.testing.assert_array_equal(res.popt[i], sa.curve_fit(spot, x, Y[i], p0=starts[i])[0])


@pytest.mark.parametrize("absolute_sigma", [True, False])
def test_sigma_shared_and_per_fit(spots, absolute_sigma: bool) -> None:
    x, Y, _ = spots
    rng = np.random.default_rng(2)
    sigma = rng.uniform(0.03, 0.08, M)
    shared = sa.batch_curve_fit(spot, x, Y[:60], p0=P0, sigma=sigma,
                                absolute_sigma=absolute_sigma)
    tiled = sa.batch_curve_fit(spot, x, Y[:60], p0=P0, sigma=np.tile(sigma, (60, 1)),
                               absolute_sigma=absolute_sigma)
    assert_identical(shared, tiled)
    sigmas = rng.uniform(0.03, 0.08, (60, M))
    per_fit = sa.batch_curve_fit(spot, x, Y[:60], p0=P0, sigma=sigmas,
                                 absolute_sigma=absolute_sigma)
    for i in range(0, 60, 3):
        popt, pcov = sa.curve_fit(spot, x, Y[i], p0=P0, sigma=sigmas[i],
                                  absolute_sigma=absolute_sigma)
        np.testing.assert_array_equal(per_fit.popt[i], popt)
        np.testing.assert_allclose(per_fit.pcov[i], pcov, rtol=1e-12, atol=0)
        popt_s, pcov_s = so.curve_fit(spot_np, x, Y[i], p0=P0, sigma=sigmas[i],
                                      absolute_sigma=absolute_sigma, jac=spot_jac, **TIGHT)
        if np.sign(popt_s[2]) == np.sign(popt[2]):
            np.testing.assert_allclose(popt, popt_s, rtol=1e-6, atol=1e-6)
            assert np.max(np.abs(pcov - pcov_s)) <= 1e-5 * np.max(np.abs(pcov_s))


def test_scalar_sigma(spots) -> None:
    x, Y, _ = spots
    a = sa.batch_curve_fit(spot, x, Y[:20], p0=P0, sigma=0.05, absolute_sigma=True)
    b = sa.batch_curve_fit(spot, x, Y[:20], p0=P0, sigma=np.full(M, 0.05),
                           absolute_sigma=True)
    assert_identical(a, b)


def test_absolute_sigma_scaling(spots, serial) -> None:
    """``absolute_sigma=False`` is the absolute ``pcov`` times ``sum(r**2) / (m - n)``,
    computed here from the residuals in numpy."""
    x, Y, _ = spots
    absolute = sa.batch_curve_fit(spot, x, Y, p0=P0, absolute_sigma=True, workers=1)
    np.testing.assert_array_equal(absolute.popt, serial.popt)
    r = spot_np(x[None, :], *serial.popt.T[:, :, None]) - Y
    chi2 = np.sum(r**2, axis=1) / (M - 4)
    np.testing.assert_allclose(serial.pcov, absolute.pcov * chi2[:, None, None], rtol=1e-9)


def test_two_component_x(spots) -> None:
    rng = np.random.default_rng(4)
    X = rng.uniform(0.0, 1.0, (2, 25))
    truth = rng.uniform(-1.0, 1.0, (30, 3))
    Y = tilt_np(X[None, :, :].transpose(1, 0, 2), *truth.T[:, :, None]) \
        + 0.01 * rng.standard_normal((30, 25))
    shared = sa.batch_curve_fit(tilt, X, Y, p0=[0.0, 0.0, 0.0])
    per_fit = sa.batch_curve_fit(tilt, np.tile(X, (30, 1, 1)), Y, p0=[0.0, 0.0, 0.0])
    assert_identical(shared, per_fit)
    for i in range(30):
        popt, pcov = sa.curve_fit(tilt, X, Y[i], p0=[0.0, 0.0, 0.0])
        np.testing.assert_array_equal(shared.popt[i], popt)
        popt_s, _ = so.curve_fit(tilt_np, X, Y[i], p0=[0.0, 0.0, 0.0], jac=tilt_jac,
                                 **TIGHT)
        np.testing.assert_allclose(popt, popt_s, rtol=1e-8, atol=1e-10)


def test_nan_row_gets_its_status_and_the_others_succeed(spots, serial) -> None:
    x, Y, _ = spots
    Yn = Y.copy()
    Yn[5, 3] = np.nan
    Yn[17, :] = np.inf
    starts = np.tile(P0, (N_SPOTS, 1))
    starts[40, 1] = np.nan                           # a non-finite start: the same status
    res = sa.batch_curve_fit(spot, x, Yn, p0=starts)
    bad = [5, 17, 40]
    assert [s.name for s in np.array(res.statuses(), dtype=object)[bad]] == \
        ["NONFINITE_INITIAL"] * 3
    assert not res.success[bad].any()
    ok = np.setdiff1d(np.arange(N_SPOTS), bad)
    assert res.success[ok].all()
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(res, name)[ok], getattr(serial, name)[ok])
    np.testing.assert_array_equal(res.x[bad], starts[bad])
    assert np.isnan(res.pcov[bad]).all()
    expected = Counter(serial.statuses()[i].name for i in ok)
    expected["NONFINITE_INITIAL"] = 3
    assert res.counts() == dict(expected)


# ---------------------------------------------------------------------------- splitting
@pytest.mark.parametrize("kwargs", [{"workers": 2}, {"chunk_size": 7},
                                    {"workers": 2, "chunk_size": 7},
                                    {"workers": 3, "chunk_size": 1},
                                    {"workers": 1, "chunk_size": 1000}, {}])
def test_splitting_does_not_change_results(spots, serial, kwargs) -> None:
    x, Y, _ = spots
    assert_identical(sa.batch_curve_fit(spot, x, Y, p0=P0, **kwargs), serial)


def test_thread_pool_as_executor(spots, serial) -> None:
    """An in-process executor goes the remote way (task, merge): same results."""
    x, Y, _ = spots
    with cf.ThreadPoolExecutor(2) as pool:
        res = sa.batch_curve_fit(spot, x, Y, p0=P0, executor=pool, chunk_size=13)
    assert_identical(res, serial)


def test_process_pool_spawn(spots, serial) -> None:
    x, Y, _ = spots
    Yn = Y.copy()
    Yn[7, 2] = np.nan
    expected = sa.batch_curve_fit(spot, x, Yn, p0=P0, workers=1)
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(2, mp_context=context) as pool:
        res = sa.batch_curve_fit(spot, x, Yn, p0=P0, executor=pool)
        # per-fit arrays are sliced per chunk: they travel too
        per_fit = sa.batch_curve_fit(spot, np.tile(x, (N_SPOTS, 1)), Yn,
                                     p0=np.tile(P0, (N_SPOTS, 1)),
                                     sigma=np.full((N_SPOTS, M), 0.05), executor=pool,
                                     chunk_size=11)
    assert_identical(res, expected)
    assert_identical(per_fit, sa.batch_curve_fit(spot, x, Yn, p0=P0, sigma=np.full(M, 0.05),
                                                 workers=1))
    assert res.statuses()[7] is Status.NONFINITE_INITIAL


def test_dask_local_cluster(spots, serial) -> None:
    distributed = pytest.importorskip("distributed")
    x, Y, _ = spots
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # dask's own deprecation chatter
        with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            res = sa.batch_curve_fit(spot, x, Y, p0=P0, executor=client.get_executor())
    assert_identical(res, serial)


# ---------------------------------------------------------------------------- the result
def test_batch_fit_result_fields(spots) -> None:
    x, Y, _ = spots
    Yn = Y[:50].copy()
    Yn[3, 0] = np.nan
    res = sa.batch_curve_fit(spot, x, Yn, p0=P0)
    assert isinstance(res, sa.BatchFitResult)
    assert len(res) == 50 and res.popt is res.x
    shapes = {"x": (50, 4), "pcov": (50, 4, 4), "cost": (50,), "status": (50,),
              "iterations": (50,), "nfev": (50,), "njev": (50,), "grad_norm": (50,)}
    for name, shape in shapes.items():
        assert getattr(res, name).shape == shape, name
    assert res.x.dtype == res.pcov.dtype == res.cost.dtype == np.float64
    assert res.status.dtype.kind == "i" and res.iterations.dtype.kind == "i"
    assert res.success.dtype == bool and res.success.shape == (50,)
    statuses = res.statuses()
    assert all(isinstance(s, Status) for s in statuses)
    assert res.success.tolist() == [s.success for s in statuses]
    assert res.counts() == dict(Counter(s.name for s in statuses))
    assert res.counts()["NONFINITE_INITIAL"] == 1
    assert res.interrupted is False
    assert (res.nfev[res.success] >= 1).all() and (res.iterations[res.success] >= 1).all()
    # the reported cost and gradient norm are those of the solution (numpy here)
    r = spot_np(x[None, :], *res.x.T[:, :, None]) - Yn
    ok = res.success
    np.testing.assert_allclose(res.cost[ok], 0.5 * np.sum(r[ok] ** 2, axis=1), rtol=1e-12)
    text = repr(res)
    assert text.startswith("BatchFitResult(problems=50, params=4, success=49")
    assert "NONFINITE_INITIAL" in text and "interrupted" not in text


def test_empty_batch() -> None:
    res = sa.batch_curve_fit(spot, np.linspace(0, 1, M), np.zeros((0, M)), p0=P0)
    assert len(res) == 0 and res.x.shape == (0, 4) and res.pcov.shape == (0, 4, 4)
    assert res.counts() == {} and not res.interrupted
    res = sa.batch_least_squares(lambda p, t: [p[0] - t], [0.0], data=(np.zeros(0),))
    assert res.x.shape == (0, 1)


def test_too_few_samples_warns_and_gives_inf(spots) -> None:
    x, Y, _ = spots
    with pytest.warns(sa.CovarianceWarning) as record:
        res = sa.batch_curve_fit(spot, x[:4], Y[:5, :4], p0=P0)
    assert record[0].filename == __file__
    assert np.isinf(res.pcov).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sa.batch_curve_fit(spot, x[:4], Y[:5, :4], p0=P0, absolute_sigma=True)


def test_robust_loss_rows_are_their_single_fits(spots) -> None:
    """A robust loss runs the numpy loop for every fit: each row is still its single
    ``curve_fit``, and matches scipy's ``least_squares`` on its residuals."""
    x, Y, _ = spots
    Yo = Y[:12].copy()
    Yo[:, ::9] += 2.0
    res = sa.batch_curve_fit(spot, x, Yo, p0=P0, loss="soft_l1", workers=2, chunk_size=5,
                             **TIGHT)
    for i in range(12):
        popt, pcov = sa.curve_fit(spot, x, Yo[i], p0=P0, loss="soft_l1", **TIGHT)
        np.testing.assert_array_equal(res.popt[i], popt)
        np.testing.assert_allclose(res.pcov[i], pcov, rtol=1e-12, atol=0)
        lsq = so.least_squares(lambda p, i=i: spot_np(x, *p) - Yo[i], P0, loss="soft_l1",
                               method="trf", **TIGHT)
        if np.sign(lsq.x[2]) == np.sign(popt[2]):
            np.testing.assert_allclose(popt, lsq.x, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("kwargs,error,pattern", [
    ({"p0": np.ones((4, 4))}, ValueError, r"p0 must have shape \(4,\) or \(6, 4\); got \(4, 4\)"),
    ({"p0": np.ones((1, 1, 4))}, ValueError, r"p0 must have shape \(n,\) or \(N, n\)"),
    ({"p0": []}, ValueError, r"p0 must have shape .*n >= 1"),
    ({"p0": "abcd"}, TypeError, r"p0 must be an array of real numbers"),
    ({"ydata": np.ones(M)}, ValueError, r"ydata must have shape \(N, m\)"),
    ({"ydata": "y"}, TypeError, r"ydata must be an array of real numbers"),
    ({"xdata": np.ones(5)}, ValueError, r"xdata must have m = 32 samples"),
    ({"xdata": np.ones((2, 3, 4, 5))}, ValueError, r"xdata must have shape"),
    ({"xdata": np.ones((5, M))}, TypeError, r"read as k = 5 components.*\(6, 32\)"),
    ({"sigma": np.ones(3)}, ValueError, r"sigma must have shape \(32,\) or \(6, 32\)"),
    ({"sigma": np.ones((5, M))}, ValueError, r"sigma must have shape \(32,\) or \(6, 32\)"),
    ({"sigma": -np.ones((6, M))}, ValueError, r"sigma must hold positive finite numbers"),
    ({"sigma": np.full((6, M), np.inf)}, ValueError, r"sigma must hold positive finite"),
    ({"sigma": np.zeros(M)}, ValueError, r"sigma must hold positive finite numbers"),
    ({"f": None}, TypeError, r"f must be callable"),
    ({"bounds": (0.5, 1.0)}, ValueError, r"p0 is infeasible: p0\[0, 0\] = 1\.5 \(problem 0\) "
                                         r"is outside its bounds \[0\.5, 1\.0\]"),
    ({"bounds": (1.0, 0.0)}, ValueError, r"lower bound must be below"),
    ({"workers": 0}, ValueError, r"`workers` must be a positive integer; got 0"),
    ({"workers": 1.5}, TypeError, r"`workers` must be a positive integer"),
    ({"workers": "2"}, TypeError, r"`workers`"),
    ({"executor": object()}, TypeError, r"executor must be a concurrent.futures.Executor.*"
                                        r"object"),
    ({"executor": 4}, TypeError, r"executor must be"),
    ({"chunk_size": 0}, ValueError, r"`chunk_size` must be a positive integer; got 0"),
    ({"chunk_size": 2.0}, TypeError, r"`chunk_size`"),
    ({"progress": 1}, TypeError, r"`progress` must be a bool; got int 1"),
    ({"progress": "yes"}, TypeError, r"`progress`"),
    ({"check_finite": True}, TypeError, r"unknown option 'check_finite'"),
    ({"max_iterations": -1}, ValueError, r"max_iterations"),
    ({"gtol": 1e-3, "gradient_tolerance": 1e-3}, TypeError, r"given twice"),
])
def test_batch_curve_fit_bad_arguments(kwargs, error, pattern) -> None:
    args: dict[str, Any] = {"f": spot, "xdata": np.linspace(-1, 1, M),
                            "ydata": np.ones((6, M)), "p0": P0}
    args.update(kwargs)
    f, xdata, ydata = args.pop("f"), args.pop("xdata"), args.pop("ydata")
    with pytest.raises(error, match=pattern):
        sa.batch_curve_fit(f, xdata, ydata, **args)


# ---------------------------------------------------------------------------- least squares
def circle(p, pts):
    """Residuals of a circle (cx, cy, r) through K points (x0, y0, x1, y1, ...)."""
    return [sa.sqrt((pts[2 * i] - p[0]) ** 2 + (pts[2 * i + 1] - p[1]) ** 2) - p[2]
            for i in range(len(pts) // 2)]


@pytest.fixture(scope="module")
def circles() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n, k = 60, 12
    c, r = rng.uniform(-2.0, 2.0, (n, 2)), rng.uniform(0.5, 2.0, n)
    th = rng.uniform(0.0, 2.0 * np.pi, (n, k))
    pts = np.stack([c[:, :1] + r[:, None] * np.cos(th), c[:, 1:] + r[:, None] * np.sin(th)],
                   axis=-1) + 0.01 * rng.standard_normal((n, k, 2))
    P = pts.reshape(n, -1)
    x0 = np.stack([P[:, 0::2].mean(1), P[:, 1::2].mean(1), np.ones(n)], axis=1)
    return P, x0


def circle_jacobian(p: np.ndarray, pts: np.ndarray) -> np.ndarray:
    dx, dy = pts[0::2] - p[0], pts[1::2] - p[1]
    d = np.hypot(dx, dy)
    return np.stack([-dx / d, -dy / d, -np.ones_like(d)], axis=1)


def test_circle_fits_match_scipy_least_squares(circles) -> None:
    P, x0 = circles
    res = sa.batch_least_squares(circle, x0, data=(P,))
    assert res.success.all()
    for i in range(len(P)):
        lsq = so.least_squares(lambda p, i=i: np.hypot(P[i, 0::2] - p[0], P[i, 1::2] - p[1])
                               - p[2], x0[i], method="lm", **TIGHT)
        np.testing.assert_allclose(res.x[i], lsq.x, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(res.cost[i], lsq.cost, rtol=1e-8)
        # pcov is (J^T J)^-1 (no variance scaling), J written out here
        J = circle_jacobian(res.x[i], P[i])
        np.testing.assert_allclose(res.pcov[i], np.linalg.inv(J.T @ J), rtol=1e-9)


def test_least_squares_splitting_and_executor(circles) -> None:
    P, x0 = circles
    serial = sa.batch_least_squares(circle, x0, data=(P,), workers=1)
    assert_identical(sa.batch_least_squares(circle, x0, data=(P,), workers=2, chunk_size=7),
                     serial)
    with cf.ThreadPoolExecutor(2) as pool:
        assert_identical(sa.batch_least_squares(circle, x0, data=(P,), executor=pool,
                                                chunk_size=9), serial)


L1, L2 = 1.0, 0.7


def two_link(q, target):
    """Forward kinematics of a planar 2-link arm minus a target."""
    return [L1 * sa.cos(q[0]) + L2 * sa.cos(q[0] + q[1]) - target[0],
            L1 * sa.sin(q[0]) + L2 * sa.sin(q[0] + q[1]) - target[1]]


def test_two_link_ik_matches_scipy() -> None:
    rng = np.random.default_rng(8)
    n = 80
    reach, angle = rng.uniform(0.4, 1.6, n), rng.uniform(0.0, np.pi / 2, n)
    targets = np.stack([reach * np.cos(angle), reach * np.sin(angle)], axis=1)
    res = sa.batch_least_squares(two_link, [0.3, 0.5], data=(targets,))
    assert res.success.all() and np.all(res.cost < 1e-20)
    for i in range(n):
        def f(q: np.ndarray, t: np.ndarray = targets[i]) -> np.ndarray:
            return np.array([L1 * np.cos(q[0]) + L2 * np.cos(q[0] + q[1]) - t[0],
                             L1 * np.sin(q[0]) + L2 * np.sin(q[0] + q[1]) - t[1]])

        lsq = so.least_squares(f, [0.3, 0.5], method="lm", **TIGHT)
        np.testing.assert_allclose(res.x[i], lsq.x, atol=1e-9)
        np.testing.assert_allclose(f(res.x[i]), 0.0, atol=1e-10)


def test_least_squares_data_forms() -> None:
    """``(N,)`` data is a Value, ``(N, d)`` a list; a single Value residual is fine;
    no data needs ``x0`` of ``(N, n)``."""
    rng = np.random.default_rng(9)
    a, b = rng.uniform(1.0, 2.0, 10), rng.uniform(-1.0, 1.0, (10, 2))

    def residuals(p, weight, target):
        assert not isinstance(weight, list) and len(target) == 2
        return [weight * (p[0] - target[0]), weight * (p[1] - target[1])]

    res = sa.batch_least_squares(residuals, [0.0, 0.0], data=(a, b))
    np.testing.assert_allclose(res.x, b, atol=1e-12)
    one = sa.batch_least_squares(lambda p, t: p[0] * p[0] - t, [1.0], data=(a,))
    np.testing.assert_allclose(one.x[:, 0], np.sqrt(a), rtol=1e-10)
    starts = rng.uniform(1.0, 2.0, (4, 2))
    nodata = sa.batch_least_squares(lambda p: [p[0] - 3.0, p[1] + 1.0], starts)
    np.testing.assert_allclose(nodata.x, np.tile([3.0, -1.0], (4, 1)), atol=1e-12)


def test_least_squares_robust_loss_matches_scipy(circles) -> None:
    P, x0 = circles
    Po = P[:10].copy()
    Po[:, 0] += 1.5                                      # one outlier per circle
    res = sa.batch_least_squares(circle, x0[:10], data=(Po,), loss="cauchy",
                                 loss_scale=0.1, cost_tolerance=1e-14,
                                 param_tolerance=1e-14, gradient_tolerance=1e-14)
    for i in range(10):
        lsq = so.least_squares(lambda p, i=i: np.hypot(Po[i, 0::2] - p[0],
                                                       Po[i, 1::2] - p[1]) - p[2],
                               x0[i], loss="cauchy", f_scale=0.1, method="trf", **TIGHT)
        np.testing.assert_allclose(res.x[i], lsq.x, rtol=1e-7, atol=1e-8)


def test_least_squares_branch_raises() -> None:
    def branchy(p, t):
        if p[0] > t:
            return [p[0] - t]
        return [t - p[0]]

    with pytest.raises(ValueError, match=r"test_batch_fits.py:\d+.*sa\.where"):
        sa.batch_least_squares(branchy, [0.0], data=(np.arange(3.0),))


@pytest.mark.parametrize("call,error,pattern", [
    (lambda: sa.batch_least_squares(circle, [0, 0, 1], data=(np.ones((4, 8)), np.ones(3))),
     ValueError, r"every data array must have one row per problem; got row counts \[3, 4\]"),
    (lambda: sa.batch_least_squares(circle, np.zeros((3, 3)), data=(np.ones((4, 8)),)),
     ValueError, r"x0 must have shape \(n,\) or \(N, n\) with N = 4 problems; got \(3, 3\)"),
    (lambda: sa.batch_least_squares(circle, [0, 0, 1], data=np.ones((4, 8))),
     TypeError, r"data must be a tuple of per-problem arrays.*data=\(a,\)"),
    (lambda: sa.batch_least_squares(circle, [0, 0, 1], data=(np.ones((4, 2, 4)),)),
     ValueError, r"data\[0\] must have shape \(N,\) or \(N, d\)"),
    (lambda: sa.batch_least_squares(circle, [0, 0, 1], data=("abc",)),
     TypeError, r"data\[0\] must be an array of real numbers"),
    (lambda: sa.batch_least_squares(circle, [], data=(np.ones((4, 8)),)),
     ValueError, r"x0 must hold at least one parameter"),
    (lambda: sa.batch_least_squares(None, [0.0], data=(np.ones(4),)),
     TypeError, r"residual_fn must be callable"),
    (lambda: sa.batch_least_squares(circle, [0, 0, 1], data=(np.ones((4, 8)),), ftol=1.0),
     TypeError, r"unknown option 'ftol'"),
    (lambda: sa.batch_least_squares(circle, [0, 0, 1], data=(np.ones((4, 8)),), workers=-1),
     ValueError, r"`workers`"),
    (lambda: sa.batch_least_squares(circle, [0, 0, 1], data=(np.ones((4, 8)),),
                                    executor="pool"),
     TypeError, r"executor must be.*str"),
    (lambda: sa.batch_least_squares(circle, [0, 0, 1], data=(np.ones((4, 8)),),
                                    chunk_size=-3),
     ValueError, r"`chunk_size`"),
    (lambda: sa.batch_least_squares(circle, [0, 0, 1], data=(np.ones((4, 8)),),
                                    progress=0),
     TypeError, r"`progress`"),
    (lambda: sa.batch_least_squares(lambda p, t: [], [0.0], data=(np.ones(4),)),
     ValueError, r"returned no residuals"),
])
def test_batch_least_squares_bad_arguments(call, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        call()


# ---------------------------------------------------------------------------- fan_out
def squares(start: int, stop: int) -> np.ndarray:
    return np.arange(start, stop, dtype=float) ** 2


def fail(start: int, stop: int) -> np.ndarray:
    raise RuntimeError(f"chunk {start} failed")


class FakeJob:
    """``count`` problems; problem ``i``'s answer is ``i**2``; ``-1``: not run."""

    def __init__(self, count: int, interrupt_on: int | None = None,
                 fail_chunk: int | None = None) -> None:
        self.count = count
        self.out = np.full(count, -1.0)
        self.calls: list[tuple[int, int]] = []
        self.interrupt_on, self.fail_chunk = interrupt_on, fail_chunk

    def solve(self, start: int, stop: int) -> None:
        self.calls.append((start, stop))
        if len(self.calls) == self.interrupt_on:
            raise KeyboardInterrupt
        if start == self.fail_chunk:
            raise ValueError(f"chunk {start} failed")
        self.out[start:stop] = squares(start, stop)

    def task(self, start: int, stop: int) -> tuple[Any, tuple[int, int]]:
        return (fail if start == self.fail_chunk else squares), (start, stop)

    def merge(self, start: int, stop: int, result: np.ndarray) -> None:
        self.out[start:stop] = result


def test_fan_out_interrupt_on_the_calling_thread() -> None:
    job = FakeJob(20, interrupt_on=3)
    assert fanout.fan_out(job, workers=1, chunk_size=4, progress=False) is True
    assert job.calls == [(0, 4), (4, 8), (8, 12)]    # nothing after the interrupt
    np.testing.assert_array_equal(job.out[:8], squares(0, 8))
    assert (job.out[8:] == -1).all()


def test_fan_out_without_interrupt() -> None:
    for kwargs in ({"workers": 1}, {"workers": 3}, {"workers": 2, "chunk_size": 1}):
        job = FakeJob(23)
        assert fanout.fan_out(job, progress=False, **kwargs) is False
        np.testing.assert_array_equal(job.out, squares(0, 23))
    with cf.ThreadPoolExecutor(2) as pool:
        job = FakeJob(23)
        assert fanout.fan_out(job, executor=pool, chunk_size=5, progress=False) is False
    np.testing.assert_array_equal(job.out, squares(0, 23))
    assert fanout.fan_out(FakeJob(0), progress=False) is False


def interrupting_wait(monkeypatch, before=None):
    """Patch fanout's ``cf.wait`` to raise KeyboardInterrupt on its first call (after
    ``before(futures)``), then behave."""
    original = cf.wait
    calls = []

    def wait(fs, timeout=None, return_when=cf.ALL_COMPLETED):
        calls.append(1)
        if len(calls) == 1:
            if before is not None:
                before(fs)
            raise KeyboardInterrupt
        return original(fs, timeout=timeout, return_when=return_when)

    monkeypatch.setattr(fanout.cf, "wait", wait)
    return calls


def test_fan_out_interrupt_collects_finished_remote_chunks(monkeypatch) -> None:
    """Chunks that finished before the interrupt are merged; a chunk that failed (a
    worker hit by the same Ctrl-C) stays not run."""
    original = cf.wait
    interrupting_wait(monkeypatch, before=lambda fs: original(fs))
    job = FakeJob(20, fail_chunk=8)
    with cf.ThreadPoolExecutor(2) as pool:
        assert fanout.fan_out(job, executor=pool, chunk_size=4, progress=False) is True
    expected = squares(0, 20)
    expected[8:12] = -1
    np.testing.assert_array_equal(job.out, expected)


def test_fan_out_chunk_error_propagates() -> None:
    with pytest.raises(ValueError, match="chunk 8 failed"):
        fanout.fan_out(FakeJob(20, fail_chunk=8), workers=2, chunk_size=4, progress=False)
    with pytest.raises(ValueError, match="chunk 8 failed"):
        fanout.fan_out(FakeJob(20, fail_chunk=8), workers=1, chunk_size=4, progress=False)
    with cf.ThreadPoolExecutor(2) as pool, pytest.raises(RuntimeError, match="chunk 8"):
        fanout.fan_out(FakeJob(20, fail_chunk=8), executor=pool, chunk_size=4,
                       progress=False)


def test_interrupt_on_the_calling_thread_keeps_finished_chunks(spots, serial,
                                                              monkeypatch) -> None:
    x, Y, _ = spots
    original = batch_module.BatchJob.solve
    calls = []

    def solve(self, start, stop):
        calls.append((start, stop))
        if len(calls) == 3:
            raise KeyboardInterrupt
        original(self, start, stop)

    monkeypatch.setattr(batch_module.BatchJob, "solve", solve)
    res = sa.batch_curve_fit(spot, x, Y, p0=P0, workers=1, chunk_size=10)
    assert res.interrupted is True
    ran = assert_consistent(res, serial, P0)
    assert ran.tolist() == [True] * 20 + [False] * (N_SPOTS - 20)
    assert res.counts()["NOT_RUN"] == N_SPOTS - 20
    assert res.statuses()[25] is Status.NOT_RUN
    assert "interrupted" in repr(res)


def test_interrupt_right_after_a_native_chunk(spots, serial, monkeypatch) -> None:
    """Ctrl-C arriving as a native call returns: that chunk is stored whole."""
    x, Y, _ = spots
    original = batch_module.BatchJob.solve
    calls = []

    def solve(self, start, stop):
        original(self, start, stop)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(batch_module.BatchJob, "solve", solve)
    res = sa.batch_curve_fit(spot, x, Y, p0=P0, workers=1, chunk_size=10)
    assert res.interrupted
    assert assert_consistent(res, serial, P0).sum() == 20


def test_interrupt_with_threads(spots, serial, monkeypatch) -> None:
    """The calling thread's wait is interrupted while worker threads are mid-chunk:
    the running chunks finish, the queued ones are cancelled."""
    import threading

    x, Y, _ = spots
    started, gate = threading.Event(), threading.Event()
    original = batch_module.BatchJob.solve

    def solve(self, start, stop):
        started.set()
        gate.wait(30)
        original(self, start, stop)

    def release(futures: Any) -> None:      # Ctrl-C once a chunk is running
        started.wait(30)
        gate.set()

    monkeypatch.setattr(batch_module.BatchJob, "solve", solve)
    interrupting_wait(monkeypatch, before=release)
    res = sa.batch_curve_fit(spot, x, Y, p0=P0, workers=2, chunk_size=3)
    assert res.interrupted
    ran = assert_consistent(res, serial, P0)
    assert 0 < ran.sum() < N_SPOTS
    # whole chunks: a chunk is run entirely or not at all
    assert all(len(set(ran[s:s + 3].tolist())) == 1 for s in range(0, N_SPOTS, 3))


def test_interrupt_during_a_merge_redoes_it(spots, serial, monkeypatch) -> None:
    """Ctrl-C in the middle of storing a remote chunk (x written, the status not yet):
    the merge is redone, nothing is left half stored."""
    x, Y, _ = spots
    original = batch_module.BatchJob.merge
    calls = []

    def merge(self, start, stop, result):
        calls.append(1)
        if len(calls) == 2:
            self.out.x[start:stop] = result.x        # half of the merge
            raise KeyboardInterrupt
        original(self, start, stop, result)

    monkeypatch.setattr(batch_module.BatchJob, "merge", merge)
    with cf.ThreadPoolExecutor(2) as pool:
        res = sa.batch_curve_fit(spot, x, Y, p0=P0, executor=pool, chunk_size=10)
    assert res.interrupted
    assert_consistent(res, serial, P0)
    assert len(calls) >= 3                            # the interrupted merge, redone


def test_interrupt_inside_a_numpy_chunk(spots, monkeypatch) -> None:
    """The numpy loop (a robust loss) solves problem by problem: an interrupt stops it
    between problems, and one hit while its results were being stored is left not
    run."""
    x, Y, _ = spots
    Y = Y[:30]
    full = sa.batch_curve_fit(spot, x, Y, p0=P0, loss="soft_l1", workers=1)
    original = batch_module.levenberg_marquardt
    calls = []

    class Exploding:
        def __float__(self) -> float:
            raise KeyboardInterrupt

    class Result:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            if name == "grad_norm":
                return Exploding()                    # stored after x and the cost
            return getattr(self._inner, name)

    def lm(*args, **kwargs):
        calls.append(1)
        result = original(*args, **kwargs)
        return Result(result) if len(calls) == 14 else result

    monkeypatch.setattr(batch_module, "levenberg_marquardt", lm)
    res = sa.batch_curve_fit(spot, x, Y, p0=P0, loss="soft_l1", workers=1, chunk_size=10)
    assert res.interrupted
    ran = assert_consistent(res, full, P0)
    assert ran.tolist() == [True] * 13 + [False] * 17


# ---------------------------------------------------------------------------- progress
LINE = re.compile(r"^\[\s*(\d+)%\] ([\d,]+) of ([\d,]+) (fits|problems)$")


def progress_lines(text: str) -> list[tuple[int, int]]:
    lines = text.splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    return [(int(m.group(1)), int(m.group(2))) for m in parsed if m]


def test_progress_plain_lines_every_ten_percent(spots, capsys) -> None:
    x, Y, _ = spots
    sa.batch_curve_fit(spot, x, Y[:50], p0=P0, workers=1, chunk_size=1, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = progress_lines(captured.err)
    assert lines == [(10 * d, 5 * d) for d in range(11)]
    assert captured.err.splitlines()[-1] == "[100%] 50 of 50 fits"


@pytest.mark.parametrize("kwargs", [{"workers": 1, "chunk_size": 7},
                                    {"workers": 2, "chunk_size": 3}])
def test_progress_at_most_one_line_per_decile(spots, capsys, kwargs) -> None:
    x, Y, _ = spots
    sa.batch_curve_fit(spot, x, Y[:50], p0=P0, progress=True, **kwargs)
    lines = progress_lines(capsys.readouterr().err)
    deciles = [done * 10 // 50 for _, done in lines]
    assert deciles == sorted(set(deciles)) and len(lines) <= 11
    assert lines[0] == (0, 0) and lines[-1] == (100, 50)


def test_progress_of_least_squares_counts_problems(circles, capsys) -> None:
    P, x0 = circles
    sa.batch_least_squares(circle, x0, data=(P,), workers=1, chunk_size=6, progress=True)
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "[100%] 60 of 60 problems"


def test_no_progress_when_false_or_quick(spots, capsys) -> None:
    x, Y, _ = spots
    sa.batch_curve_fit(spot, x, Y[:50], p0=P0, progress=False, chunk_size=1)
    sa.batch_curve_fit(spot, x, Y[:50], p0=P0, chunk_size=1)     # None: under 2 s
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_none_shows_after_a_while(spots, capsys, monkeypatch) -> None:
    x, Y, _ = spots
    monkeypatch.setattr(fanout, "PROGRESS_AFTER", 0.0)
    sa.batch_curve_fit(spot, x, Y[:50], p0=P0, workers=1, chunk_size=10)
    lines = progress_lines(capsys.readouterr().err)
    assert lines[-1] == (100, 50)


def test_progress_on_a_terminal_redraws_and_erases(spots, monkeypatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    x, Y, _ = spots
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("TERM", "xterm")
    sa.batch_curve_fit(spot, x, Y[:50], p0=P0, workers=1, chunk_size=5, progress=True)
    text = terminal.getvalue()
    assert "\n" not in text and text.count("\r[") == 11    # the first draw and 10 chunks
    assert "50 of 50 fits" in text
    assert re.search(r"\r *\r$", text)                      # erased at the end


def test_progress_on_interrupt_stops_where_it_was(capsys) -> None:
    job = FakeJob(20, interrupt_on=3)
    assert fanout.fan_out(job, workers=1, chunk_size=4, progress=True, noun="things")
    lines = progress_lines(capsys.readouterr().err.replace("things", "fits"))
    assert lines[-1] == (40, 8)
