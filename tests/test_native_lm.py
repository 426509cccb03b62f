"""The native small dense Levenberg-Marquardt loop against the numpy loop and NIST StRD.

The oracle for "the same algorithm" is the numpy loop
(:func:`scalar_autograd.lsq.levenberg_marquardt.levenberg_marquardt`) fed by numpy
residuals and Jacobians written out by hand (or by the same compiled model when only
the loop differs); the oracle for the answers is NIST's certified values.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.lsq import native_lm
from scalar_autograd.lsq.batch import BatchJob
from scalar_autograd.lsq.curve_fit import model_for
from scalar_autograd.lsq.levenberg_marquardt import levenberg_marquardt
from scalar_autograd.lsq.native_lm import STATUSES, BatchOutput, NativeSolver
from scalar_autograd.lsq.options import SolverOptions
from scalar_autograd.lsq.status import Status

sys.path.insert(0, str(Path(__file__).parent))
from lsq_nist_problems import load, lre  # noqa: E402

pytestmark = pytest.mark.skipif(not native_lm.native_available(), reason="needs llvmlite")

OPTS = SolverOptions(max_iterations=1000)


def _nist_model(problem):  # type: ignore[no-untyped-def]
    code = problem.code

    def f(x, *b):  # type: ignore[no-untyped-def]
        env = {"exp": sa.exp, "x": x}
        env.update({f"b{i}": bi for i, bi in enumerate(b)})
        return eval(code, env)

    return f


NIST = load()
NIST_RUNS = [(p, s) for p in NIST for s in range(len(p.starts))]


def _solve(problem, start: int, native: bool):  # type: ignore[no-untyped-def]
    model = model_for(_nist_model(problem), 0, len(problem.certified_params)) \
        .with_rows(problem.x.size)
    job = BatchJob(model, np.array([problem.starts[start]], float),
                   np.ascontiguousarray(problem.x, dtype=float), 0, problem.y, None, OPTS)
    job.native = native
    job.solve(0, 1)
    return job.out


@pytest.mark.parametrize("problem,start", NIST_RUNS,
                         ids=[f"{p.name}-{s}" for p, s in NIST_RUNS])
def test_nist_native_equals_numpy_loop(problem, start) -> None:  # type: ignore[no-untyped-def]
    native = _solve(problem, start, True)
    numpy_loop = _solve(problem, start, False)
    assert STATUSES[native.status[0]] is STATUSES[numpy_loop.status[0]]
    # the same iterates to rounding; long runs through flat valleys (MGH09, MGH10 from
    # their first start) amplify rounding into a few more or fewer steps
    rel = np.max(np.abs(native.x[0] - numpy_loop.x[0]) / np.abs(numpy_loop.x[0]))
    assert rel < 1e-5
    its, ref = int(native.iterations[0]), int(numpy_loop.iterations[0])
    assert abs(its - ref) <= max(2, ref // 10)
    assert native.nfev[0] == native.iterations[0] + 1
    assert native.cost[0] == pytest.approx(numpy_loop.cost[0], rel=1e-9)
    # and the certified answer (the digits the numpy loop reaches in test_lsq_nist)
    digits = min(lre(v, c) for v, c in zip(native.x[0], problem.certified_params))
    assert digits >= 4.5
    rss = 2.0 * native.cost[0]
    assert lre(rss, problem.certified_rss) >= 5.0 or \
        abs(rss - problem.certified_rss) <= problem.rss_noise_floor()


def _decay_solver() -> tuple[NativeSolver, np.ndarray, np.ndarray]:
    a, b, c, x = sa.Value(1.0), sa.Value(1.0), sa.Value(1.0), sa.Value(0.0)
    f = sa.compile(a * sa.exp(-b * x) + c, [a, b, c], inputs=[x])
    t = np.linspace(0.0, 4.0, 60)
    rng = np.random.default_rng(3)
    y = 2.5 * np.exp(-1.3 * t) + 0.5 + 0.01 * rng.standard_normal(t.size)
    return NativeSolver(f), t, y


def _decay_numpy(t: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):  # type: ignore[no-untyped-def]
    def rj(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = np.exp(-p[1] * t)
        r, J = p[0] * e + p[2] - y, np.stack([e, -p[0] * t * e, np.ones_like(t)], axis=1)
        if w is not None:
            r, J = r * w, J * w[:, None]
        return r, J
    return rj


def test_outputs_match_hand_written_numpy() -> None:
    solver, t, y = _decay_solver()
    w = 1.0 / np.linspace(0.5, 2.0, t.size)
    out = BatchOutput.empty(np.array([[1.0, 1.0, 1.0]]), t.size, normal=True, jacobian=True,
                            residuals=True, covariance=True)
    solver.run(out, 0, 1, t.size, t.copy(), 0, y, w, native_lm.options_array(OPTS))
    rj = _decay_numpy(t, y, w)
    ref = levenberg_marquardt(rj, lambda p: rj(p)[0], np.ones(3), OPTS)
    assert STATUSES[out.status[0]] is ref.status
    np.testing.assert_allclose(out.x[0], ref.x, rtol=1e-12)
    r, J = rj(ref.x)
    np.testing.assert_allclose(out.residuals[0], r, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.jacobian[0], J, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.normal[0], J.T @ J, rtol=1e-9)
    np.testing.assert_allclose(out.covariance[0], np.linalg.inv(J.T @ J), rtol=1e-7)
    assert out.grad_norm[0] == pytest.approx(np.max(np.abs(J.T @ r)), rel=1e-6, abs=1e-12)
    assert (out.iterations[0], out.nfev[0]) == (ref.iterations, ref.nfev)


def test_batch_rows_equal_single_solves_and_chunks() -> None:
    solver, t, y = _decay_solver()
    rng = np.random.default_rng(7)
    Y = y + 0.05 * rng.standard_normal((40, t.size))
    X0 = 1.0 + 0.3 * rng.standard_normal((40, 3))
    options = native_lm.options_array(OPTS)
    whole = BatchOutput.empty(X0, t.size)
    solver.run(whole, 0, 40, t.size, t.copy(), 0, Y, None, options)
    split = BatchOutput.empty(X0, t.size)
    for start, stop in ((0, 13), (13, 14), (14, 40)):
        solver.run(split, start, stop, t.size, t.copy(), 0, Y, None, options)
    np.testing.assert_array_equal(whole.x, split.x)
    np.testing.assert_array_equal(whole.status, split.status)
    for i in (0, 17, 39):
        one = BatchOutput.empty(X0[i:i + 1], t.size)
        solver.run(one, 0, 1, t.size, t.copy(), 0, Y[i], None, options)
        np.testing.assert_array_equal(one.x[0], whole.x[i])


def _status(solver: NativeSolver, x0: list[float], t: np.ndarray, y: np.ndarray,
            opts: SolverOptions = OPTS) -> BatchOutput:
    out = BatchOutput.empty(np.array([x0]), t.size)
    solver.run(out, 0, 1, t.size, t.copy(), 0, y, None, native_lm.options_array(opts))
    return out


def test_statuses_of_edge_cases() -> None:
    solver, t, y = _decay_solver()
    bad = y.copy()
    bad[5] = np.nan
    out = _status(solver, [1.0, 1.0, 1.0], t, bad)
    assert STATUSES[out.status[0]] is Status.NONFINITE_INITIAL
    np.testing.assert_array_equal(out.x[0], [1.0, 1.0, 1.0])
    assert np.isnan(out.grad_norm[0])
    out = _status(solver, [1.0, 1.0, 1.0], t, y, SolverOptions(max_iterations=2))
    assert STATUSES[out.status[0]] is Status.MAX_ITERATIONS
    assert out.iterations[0] == 2
    out = _status(solver, [0.0, 1.0, 0.5], t, np.full(t.size, 0.5))   # r = 0 exactly
    assert STATUSES[out.status[0]] is Status.ZERO_RESIDUAL
    # exp overflow in the Jacobian at the start: b = -800 makes exp(800 t) inf
    out = _status(solver, [0.0, -800.0, 0.0], t, y)
    assert STATUSES[out.status[0]] in (Status.NONFINITE_INITIAL, Status.NONFINITE_JACOBIAN)


def test_no_param_affects_residuals() -> None:
    a, x = sa.Value(1.0), sa.Value(0.0)
    f = sa.compile(0.0 * a + x, [a], inputs=[x])
    t = np.linspace(0, 1, 5)
    out = BatchOutput.empty(np.array([[3.0]]), 5)
    NativeSolver(f).run(out, 0, 1, 5, t.copy(), 0, np.ones(5), None,
                        native_lm.options_array(OPTS))
    assert STATUSES[out.status[0]] is Status.NO_PARAMS_AFFECT_RESIDUALS


def test_qr_fallback_on_rank_deficient_jacobian() -> None:
    """Two params entering only as a sum: J^T J is singular, so at mu = 1e-20 the
    Cholesky of the damped matrix fails or gives a non-finite step and the QR of the
    augmented system takes over; the numpy loop (SVD fallback) reaches the same fit."""
    a, b, x = sa.Value(1.0), sa.Value(1.0), sa.Value(0.0)
    f = sa.compile((a + b) * x, [a, b], inputs=[x])
    t = np.linspace(0.0, 1.0, 8)
    y = 3.0 * t
    out = BatchOutput.empty(np.array([[0.2, 0.1]]), t.size)
    NativeSolver(f).run(out, 0, 1, t.size, t.copy(), 0, y, None,
                        native_lm.options_array(OPTS))

    def rj(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (p[0] + p[1]) * t - y, np.stack([t, t], axis=1)

    ref = levenberg_marquardt(rj, lambda p: rj(p)[0], np.array([0.2, 0.1]), OPTS)
    assert STATUSES[out.status[0]].success and ref.success
    assert out.x[0].sum() == pytest.approx(3.0, rel=1e-9)
    np.testing.assert_allclose(out.x[0], ref.x, rtol=1e-6)


def test_driver_source_has_no_fast_math_and_compiles_once() -> None:
    text = native_lm.driver_source()
    for flag in ("fast", "nnan", "ninf", "reassoc", "contract", "afn", "arcp"):
        assert f" {flag} " not in text
    assert native_lm.driver() is native_lm.driver()


def test_supports_predicate() -> None:
    assert native_lm.supports(SolverOptions(), 3)
    assert not native_lm.supports(SolverOptions(loss="soft_l1"), 3)
    assert not native_lm.supports(SolverOptions(geodesic_acceleration=True), 3)
    assert not native_lm.supports(SolverOptions(verbose=True), 3)
    assert not native_lm.supports(SolverOptions(), native_lm.MAX_NATIVE_PARAMS + 1)
