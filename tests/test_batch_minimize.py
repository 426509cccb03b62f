"""``sa.batch_minimize``: batched L-BFGS against scipy and the one-problem loop.

Oracles: scipy ``minimize(method="L-BFGS-B")`` on hand-written numpy objectives and
gradients (the minima), and :func:`scalar_autograd.optim.lbfgs.lbfgs_minimize` on
numpy gradients written out by hand (the same algorithm, problem by problem).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.optim.lbfgs import LBFGSConfig, lbfgs_minimize
from scalar_autograd.optim.result import Status

LINKS = np.array([0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2])


def ik(q, target):  # type: ignore[no-untyped-def]
    """7-link planar arm: squared distance of the tip to the target."""
    angle, x, y = 0.0, 0.0, 0.0
    for i, length in enumerate(LINKS):
        angle = angle + q[i]
        x = x + length * sa.cos(angle)
        y = y + length * sa.sin(angle)
    return (x - target[0]) ** 2 + (y - target[1]) ** 2


def ik_numpy(q: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    angles = np.cumsum(q)
    x, y = np.sum(LINKS * np.cos(angles)), np.sum(LINKS * np.sin(angles))
    dx, dy = x - target[0], y - target[1]
    # d tip / d q_i sums over the links from i on
    dxq = -np.cumsum((LINKS * np.sin(angles))[::-1])[::-1]
    dyq = np.cumsum((LINKS * np.cos(angles))[::-1])[::-1]
    return dx * dx + dy * dy, 2 * dx * dxq + 2 * dy * dyq


def _targets(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = rng.uniform(-1.0, 1.0, (count, LINKS.size))
    angles = np.cumsum(q, axis=1)
    return np.stack([np.sum(LINKS * np.cos(angles), axis=1),
                     np.sum(LINKS * np.sin(angles), axis=1)], axis=1)


def test_ik_batch_matches_the_one_problem_loop_and_scipy() -> None:
    scipy_optimize = pytest.importorskip("scipy.optimize")
    targets = _targets(60)
    options = dict(gradient_tolerance=1e-9, ftol=0.0, max_iterations=500)
    res = sa.batch_minimize(ik, np.full(7, 0.1), data=(targets,), **options)
    assert res.x.shape == (60, 7) and res.fun.shape == (60,)
    assert res.success.all(), res.counts()
    config = LBFGSConfig(**options)
    for i in range(0, 60, 7):
        ref = lbfgs_minimize(lambda q, t=targets[i]: ik_numpy(q, t), np.full(7, 0.1), config)
        assert res.statuses()[i] is ref.status
        assert abs(int(res.iterations[i]) - ref.iterations) <= 2
        np.testing.assert_allclose(res.fun[i], ref.fun, atol=1e-14)
        sp = scipy_optimize.minimize(lambda q, t=targets[i]: ik_numpy(q, t), np.full(7, 0.1),
                                     jac=True, method="L-BFGS-B",
                                     options=dict(gtol=1e-10, ftol=0.0, maxiter=2000))
        assert res.fun[i] <= sp.fun + 1e-12
        # the tip reaches the target (the joint angles are not unique: 7 > 2)
        assert res.fun[i] < 1e-14


def test_threads_chunks_and_processes_give_identical_results() -> None:
    targets = _targets(50, seed=1)
    kwargs = dict(data=(targets,), gradient_tolerance=1e-9)
    one = sa.batch_minimize(ik, np.zeros(7), workers=1, **kwargs)
    two = sa.batch_minimize(ik, np.zeros(7), workers=2, chunk_size=7, **kwargs)
    for name in ("x", "fun", "status", "iterations", "nfev", "grad_norm"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        far = sa.batch_minimize(ik, np.zeros(7), executor=pool, chunk_size=20, **kwargs)
    for name in ("x", "fun", "status", "iterations", "nfev", "grad_norm"):
        np.testing.assert_array_equal(getattr(one, name), getattr(far, name))


def test_per_problem_starts_and_a_nan_problem() -> None:
    targets = _targets(5, seed=2)
    targets[3, 0] = np.nan
    starts = np.linspace(0.0, 0.5, 35).reshape(5, 7)
    res = sa.batch_minimize(ik, starts, data=(targets,))
    statuses = res.statuses()
    assert statuses[3] is Status.NON_FINITE
    assert all(s.success for i, s in enumerate(statuses) if i != 3)
    np.testing.assert_array_equal(res.x[3], starts[3])
    assert "NON_FINITE" in repr(res)


def test_no_data_and_shared_start() -> None:
    def rosenbrock(p):  # type: ignore[no-untyped-def]
        return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2

    res = sa.batch_minimize(rosenbrock, [[-1.2, 1.0], [2.0, 2.0]], gradient_tolerance=1e-8)
    np.testing.assert_allclose(res.x, 1.0, atol=1e-5)


def test_errors_name_what_was_wrong() -> None:
    targets = _targets(3)
    with pytest.raises(TypeError, match="fun must be callable"):
        sa.batch_minimize(3, np.zeros(7), data=(targets,))
    with pytest.raises(ValueError, match="method"):
        sa.batch_minimize(ik, np.zeros(7), data=(targets,), method="newton")
    with pytest.raises(ValueError, match="x0 must have shape"):
        sa.batch_minimize(ik, np.zeros((2, 7)), data=(targets,))
    with pytest.raises(TypeError, match="data must be a tuple"):
        sa.batch_minimize(ik, np.zeros(7), data=targets)
    with pytest.raises(ValueError, match="one row per problem"):
        sa.batch_minimize(ik, np.zeros(7), data=(targets, np.zeros(4)))
    with pytest.raises(TypeError, match="unexpected keyword|max_iter"):
        sa.batch_minimize(ik, np.zeros(7), data=(targets,), max_iter=3)
    with pytest.raises(ValueError, match="workers"):
        sa.batch_minimize(ik, np.zeros(7), data=(targets,), workers=0)

    def branchy(q, target):  # type: ignore[no-untyped-def]
        if q[0] > 0:
            return q[0] ** 2
        return q[0] ** 2 + target[0]

    with pytest.raises(ValueError, match="sa.where"):
        sa.batch_minimize(branchy, np.zeros(7), data=(targets,))
    with pytest.raises(ValueError, match="must return one Value"):
        sa.batch_minimize(lambda q: [q[0], q[1]], np.zeros((1, 2)))
