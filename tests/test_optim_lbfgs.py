"""L-BFGS: convergence, agreement with scipy's L-BFGS-B, termination, non-finite values."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.optim import LBFGSConfig, StrongWolfe, lbfgs_minimize


def rosenbrock_values(p):
    return sa.sum([(1 - p[i]) ** 2 + 100 * (p[i + 1] - p[i] * p[i]) ** 2
                   for i in range(0, len(p), 2)])


def rosenbrock_flat(x):
    a, b = x[0::2], x[1::2]
    t, u = b - a * a, 1 - a
    g = np.empty_like(x)
    g[0::2] = -400 * a * t - 2 * u
    g[1::2] = 200 * t
    return float(np.sum(100 * t * t + u * u)), g


def _start(n):
    return np.tile([-1.2, 1.0], n // 2)


# ------------------------------------------------------------------ convergence
def test_rosenbrock_from_the_standard_start_on_every_path():
    flat = lbfgs_minimize(rosenbrock_flat, np.array([-1.2, 1.0]))
    params = [sa.Value(-1.2, requires_grad=True), sa.Value(1.0, requires_grad=True)]
    graph = sa.lbfgs(rosenbrock_values, params)
    params2 = [sa.Value(-1.2, requires_grad=True), sa.Value(1.0, requires_grad=True)]
    compiled = sa.lbfgs(sa.compile(rosenbrock_values(params2), params2), params2)
    for r in (flat, graph, compiled):
        assert r.success and r.status is sa.Status.CONVERGED_GRADIENT, r
        assert r.iterations < 60
        assert r.grad_norm <= 1e-6
        np.testing.assert_allclose(r.x, [1.0, 1.0], atol=1e-6)
        assert r.nfev >= r.iterations + 1
    assert [p.data for p in params] == graph.x.tolist()
    assert [p.data for p in params2] == compiled.x.tolist()
    # the same gradients (to rounding) give the same iteration count
    assert graph.iterations == compiled.iterations == flat.iterations


def test_iteration_counts_match_scipy_lbfgsb_on_extended_rosenbrock():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    n = 100
    params = [sa.Value(float(v), requires_grad=True) for v in _start(n)]
    f = sa.compile(rosenbrock_values(params), params)

    def fun_and_grad(x):
        value, grad = f.value_and_grad(x)
        return value, grad

    ours = sa.minimize(f, params, method="lbfgs", max_iterations=1000)
    theirs = scipy_optimize.minimize(
        fun_and_grad, _start(n), jac=True, method="L-BFGS-B",
        options={"maxcor": 10, "gtol": 1e-6, "ftol": LBFGSConfig.ftol, "maxiter": 1000})
    assert ours.success and theirs.success
    np.testing.assert_allclose(ours.x, np.ones(n), atol=1e-5)
    np.testing.assert_allclose(theirs.x, np.ones(n), atol=1e-4)
    assert abs(ours.iterations - theirs.nit) <= 0.5 * theirs.nit, (ours.iterations, theirs.nit)
    assert ours.nfev <= 1.5 * theirs.nfev


@pytest.mark.parametrize("seed", range(4))
def test_iteration_counts_match_scipy_from_random_starts(seed):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    x0 = np.random.default_rng(seed).uniform(-2.0, 2.0, size=20)
    ours = lbfgs_minimize(rosenbrock_flat, x0, LBFGSConfig(max_iterations=1000))
    theirs = scipy_optimize.minimize(rosenbrock_flat, x0, jac=True, method="L-BFGS-B",
                                     options={"gtol": 1e-6, "maxiter": 1000})
    assert ours.success and theirs.success
    assert ours.fun <= max(theirs.fun, 1e-10) * 10
    assert abs(ours.iterations - theirs.nit) <= 0.5 * theirs.nit, (ours.iterations, theirs.nit)


def test_curvature_pairs_and_scaling_make_a_quadratic_converge_fast():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    a = q @ np.diag(np.linspace(1.0, 100.0, 30)) @ q.T
    solution = rng.normal(size=30)

    def fg(x):  # minimum value 0, so f keeps its resolution near the solution
        r = x - solution
        ar = a @ r
        return 0.5 * float(r @ ar), ar

    r = lbfgs_minimize(fg, np.zeros(30), LBFGSConfig(history_size=30,
                                                     gradient_tolerance=1e-10, ftol=0.0))
    assert r.success, r
    np.testing.assert_allclose(r.x, solution, atol=1e-10)
    assert r.iterations <= 45  # close to conjugate gradients' 30 in exact arithmetic


# ------------------------------------------------------------------ termination
def test_stops_on_the_gradient_not_on_a_small_objective():
    # The objective is tiny from the start; only the gradient may stop the run.
    def fg(x):
        return 1e-8 * float(np.sum((x - 1.0) ** 2)), 2e-8 * (x - 1.0)

    r = lbfgs_minimize(fg, np.zeros(3), LBFGSConfig(gradient_tolerance=1e-16, ftol=0.0))
    assert r.status is sa.Status.CONVERGED_GRADIENT
    np.testing.assert_allclose(r.x, np.ones(3), atol=1e-8)

    # a large negative minimum is no reason to stop early either
    def fg2(x):
        return float(np.sum((x - 1.0) ** 2)) - 1e3, 2.0 * (x - 1.0)

    r2 = lbfgs_minimize(fg2, np.zeros(3), LBFGSConfig(gradient_tolerance=1e-9, ftol=0.0))
    assert r2.status is sa.Status.CONVERGED_GRADIENT
    np.testing.assert_allclose(r2.x, np.ones(3), atol=1e-9)


def test_ftol_uses_scipys_relative_reduction():
    r = lbfgs_minimize(rosenbrock_flat, _start(10),
                       LBFGSConfig(gradient_tolerance=0.0, ftol=1e-3))
    assert r.status is sa.Status.CONVERGED_FTOL and r.success
    h = lbfgs_minimize(rosenbrock_flat, _start(10),
                       LBFGSConfig(gradient_tolerance=0.0, ftol=1e-3), history=True).history
    assert h is not None and len(h) == r.iterations + 1
    f_prev, f_last = h[-2], h[-1]
    assert (f_prev - f_last) / max(abs(f_prev), abs(f_last), 1.0) <= 1e-3
    for a, b in zip(h[:-2], h[1:-1]):
        assert (a - b) / max(abs(a), abs(b), 1.0) > 1e-3


def test_max_iterations_and_max_evaluations():
    r = lbfgs_minimize(rosenbrock_flat, _start(4), LBFGSConfig(max_iterations=5))
    assert r.status is sa.Status.MAX_ITERATIONS and not r.success and r.iterations == 5
    r = lbfgs_minimize(rosenbrock_flat, _start(4), LBFGSConfig(max_evaluations=7))
    assert r.status is sa.Status.MAX_EVALUATIONS and not r.success
    assert r.message == sa.Status.MAX_EVALUATIONS.value


def test_max_iterations_still_writes_the_params_back():
    params = [sa.Value(-1.2, requires_grad=True), sa.Value(1.0, requires_grad=True)]
    r = sa.lbfgs(rosenbrock_values, params, max_iterations=3)
    assert r.status is sa.Status.MAX_ITERATIONS
    assert [p.data for p in params] == r.x.tolist()


def test_callback_sees_every_iterate_and_can_stop():
    seen = []

    def callback(k, x, f):
        seen.append((k, x, f))
        x[:] = 1e9  # a copy: must not disturb the run
        return k == 4

    r = lbfgs_minimize(rosenbrock_flat, _start(2), callback=callback, history=True)
    assert r.status is sa.Status.CALLBACK_STOP and r.iterations == 4
    assert [k for k, _, _ in seen] == [1, 2, 3, 4]
    assert [f for _, _, f in seen] == list(r.history[1:])
    assert r.fun == rosenbrock_flat(r.x)[0]


def test_already_converged_start_takes_no_iterations():
    r = lbfgs_minimize(rosenbrock_flat, np.ones(4))
    assert r.status is sa.Status.CONVERGED_GRADIENT and r.iterations == 0 and r.nfev == 1


def test_result_is_frozen_and_x_read_only():
    r = lbfgs_minimize(rosenbrock_flat, _start(2))
    with pytest.raises(AttributeError):
        r.fun = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        r.x[0] = 0.0
    assert "OptimizeResult(success=True" in repr(r)


# ------------------------------------------------------------------ non-finite values
def test_non_finite_objective_in_the_line_search_shrinks_the_step():
    """A pseudo-Huber loss with its minimum at 2, nan beyond x = 4. Far away the slope
    is nearly constant, so the line search extrapolates (10x per trial) into the nan
    region and must back off without corrupting its state."""
    nan_calls = []

    def fg(x):
        if np.any(x >= 4.0):
            nan_calls.append(x.copy())
            return math.nan, np.full_like(x, math.nan)
        r = x - 2.0
        root = np.sqrt(1.0 + r * r)
        return float(np.sum(root)), r / root

    r = lbfgs_minimize(fg, np.array([-1000.0]))
    assert nan_calls, "the test must exercise the non-finite branch"
    assert r.success and math.isfinite(r.fun)
    np.testing.assert_allclose(r.x, [2.0], atol=1e-6)


def test_infinite_objective_and_gradient_in_the_line_search():
    def fg(x):  # a log barrier at x = 0: inf and nan to the left
        if x[0] <= 0.0:
            return math.inf, np.array([-math.inf])
        return float(x[0] - 3.0 * math.log(x[0])), np.array([1.0 - 3.0 / x[0]])

    r = lbfgs_minimize(fg, np.array([0.01]))
    assert r.success
    np.testing.assert_allclose(r.x, [3.0], atol=1e-5)


def test_line_search_backs_off_from_a_nan_first_trial():
    def fg(x):
        if x[0] > 0.5:
            return math.nan, np.array([math.nan])
        return float((x[0] - 0.25) ** 2), np.array([2.0 * (x[0] - 0.25)])

    x = np.array([0.0])
    f, g = fg(x)
    r = StrongWolfe(1)(fg, x, f, g, -g, 2.0)  # the first trial point x = 1 is nan
    assert r.ok and r.f < f and 0.0 < r.step * 0.5 <= 0.5
    assert np.isfinite(r.x).all() and np.isfinite(r.g).all()


def test_non_finite_start_is_reported():
    r = lbfgs_minimize(lambda x: (math.nan, x.copy()), np.ones(2))
    assert r.status is sa.Status.NON_FINITE and not r.success and r.iterations == 0


def test_line_search_failure_is_reported():
    # a gradient that lies: it points uphill, so no step decreases f
    def fg(x):
        return float(x[0] ** 2), np.array([-2.0 * x[0]])

    r = lbfgs_minimize(fg, np.array([1.0]))
    assert r.status is sa.Status.LINE_SEARCH_FAILED and not r.success
    assert r.x.tolist() == [1.0]


def test_objective_raising_leaves_params_unchanged():
    params = [sa.Value(-1.2, requires_grad=True), sa.Value(1.0, requires_grad=True)]
    calls = []

    def objective(p):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")
        return rosenbrock_values(p)

    with pytest.raises(RuntimeError, match="boom"):
        sa.lbfgs(objective, params)
    assert [p.data for p in params] == [-1.2, 1.0]


def test_objective_must_return_a_value():
    params = [sa.Value(1.0, requires_grad=True)]
    with pytest.raises(TypeError, match="objective"):
        sa.lbfgs(lambda p: 3.0, params)
    assert params[0].data == 1.0


def test_native_two_loop_matches_the_numpy_two_loop():
    from scalar_autograd.optim.lbfgs import _Memory

    rng = np.random.default_rng(3)
    n, m = 37, 5
    g = rng.normal(size=n)
    d_native, d_numpy = np.empty(n), np.empty(n)
    native = _Memory(m, g, d_native)
    numpy = _Memory(m, g, d_numpy)
    numpy._native = None
    for k in range(12):  # wraps around the ring twice
        s = rng.normal(size=n)
        y = s + 0.3 * rng.normal(size=n)
        for memory in (native, numpy):
            s_slot, y_slot = memory.slot()
            s_slot[:] = s
            y_slot[:] = y
            memory.push(float(s @ y))
        native.direction()
        numpy.direction()
        np.testing.assert_allclose(d_native, d_numpy, rtol=1e-10, atol=1e-12)
        assert native.count == numpy.count == min(k + 1, m)
    native.reset()
    native.direction()
    assert np.array_equal(d_native, -g)
