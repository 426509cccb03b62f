"""The native batched L-BFGS driver (optim/native_lbfgs.py) against ``lbfgs_minimize``.

The reference is :func:`scalar_autograd.optim.lbfgs.lbfgs_minimize` (numpy, with its
strong-Wolfe line search) called with the compiled function's ``value_and_grad`` as
the oracle: the same kernel, an independent implementation of the loop. Two versions:

* as shipped: its dot products go through BLAS and the 4-lane native two-loop, so it
  agrees with the driver to rounding (checked with tolerances and, on these problems,
  equal iteration and evaluation counts);
* with its summation order pinned (``np.dot`` replaced by a left-to-right Python sum,
  the numpy two-loop instead of the native one): then it computes exactly what the
  driver computes, and every output must be equal bit for bit. This is what catches a
  wrong branch or operand order that rounding would otherwise hide.

The minima are also checked against scipy's ``minimize(method="L-BFGS-B")``.

Run this file as a script to time batched 7-DOF IK (10^4 targets, µs per target)::

    .venv/bin/python tests/test_native_lbfgs.py
"""

from __future__ import annotations

import ctypes
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.kinematics import planar_ik_loss
from scalar_autograd.optim.lbfgs import LBFGSConfig, lbfgs_minimize
from scalar_autograd.optim.native_lbfgs import (
    OPTIONS,
    STATUSES,
    MinimizeBatchOutput,
    NativeBatchLBFGS,
    driver_source,
    native_available,
    options_array,
    supports,
    workspace_size,
)
from scalar_autograd.optim.result import OptimizeResult, Status

pytestmark = pytest.mark.skipif(not native_available(), reason="needs llvmlite")

IK_LENGTHS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)     # as benchmarks/bench_batch.py (c)


# ---------------------------------------------------------------------------- problems
@dataclass
class Problem:
    """A compiled objective with per-problem data ``U`` and start points ``X0``."""

    name: str
    function: Any
    X0: np.ndarray
    U: np.ndarray
    config: LBFGSConfig = LBFGSConfig()


def rosenbrock(n: int, starts: list[list[float]], **options: Any) -> Problem:
    """Extended Rosenbrock ``sum b (x_2i+1 - x_2i^2)^2 + (a - x_2i)^2`` with data
    ``(a, b)``."""
    x = [sa.Value(0.0) for _ in range(n)]
    a, b = sa.Value(1.0), sa.Value(100.0)
    loss = sa.sum([b * (x[i + 1] - x[i] * x[i]) ** 2 + (a - x[i]) ** 2
                   for i in range(0, n, 2)])
    f = sa.compile(loss, x, inputs=[a, b])
    X0 = np.array([np.resize(s, n) for s in starts], dtype=float)
    U = np.tile([1.0, 100.0], (len(starts), 1))
    return Problem(f"rosenbrock{n}", f, X0, U, LBFGSConfig(**options))


def planar_ik(count: int, seed: int = 2, warm: float | None = None) -> Problem:
    """The 7-joint planar arm of ``kinematics.planar_ik_loss``; targets (data) from the
    forward kinematics of random angles; zero starts, or the angles plus noise."""
    q = [sa.Value(0.0) for _ in range(7)]
    tx, ty = sa.Value(0.0), sa.Value(0.0)
    f = sa.compile(planar_ik_loss(q, (tx, ty), IK_LENGTHS), q, inputs=[tx, ty])
    rng = np.random.default_rng(seed)
    angles = rng.uniform(-np.pi / 2, np.pi / 2, (count, 7))
    phi = np.cumsum(angles, axis=1)
    L = np.array(IK_LENGTHS)
    U = np.column_stack([(L * np.cos(phi)).sum(axis=1), (L * np.sin(phi)).sum(axis=1)])
    X0 = np.zeros_like(angles) if warm is None else angles + rng.normal(0, warm, angles.shape)
    return Problem("planar ik", f, X0, U)


def _spatial_end(q: list[Any]) -> list[Any]:
    """End effector of a 7-joint spatial arm: joints alternate about the local z and y
    axes, each followed by a link along the local x axis."""
    R: list[list[Any]] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    p: list[Any] = [0.0, 0.0, 0.0]
    for i, (qi, length) in enumerate(zip(q, IK_LENGTHS)):
        c, s = sa.cos(qi), sa.sin(qi)
        if i % 2 == 0:      # about z: columns x, y mix
            cols = [[R[k][0] * c + R[k][1] * s, R[k][1] * c - R[k][0] * s, R[k][2]]
                    for k in range(3)]
        else:               # about y: columns x, z mix
            cols = [[R[k][0] * c - R[k][2] * s, R[k][1], R[k][0] * s + R[k][2] * c]
                    for k in range(3)]
        R = cols
        p = [p[k] + length * R[k][0] for k in range(3)]
    return p


def spatial_ik(count: int, seed: int = 5, warm: float = 0.2) -> Problem:
    """IK of :func:`_spatial_end` to reachable 3-D targets, from nearby angles."""
    q = [sa.Value(0.0) for _ in range(7)]
    t = [sa.Value(0.0) for _ in range(3)]
    end = _spatial_end(q)
    f = sa.compile(sa.sum([(e - ti) ** 2 for e, ti in zip(end, t)]), q, inputs=t)
    fk = sa.compile(_spatial_end(q), q)
    rng = np.random.default_rng(seed)
    angles = rng.uniform(-1.2, 1.2, (count, 7))
    U = np.array([fk(a) for a in angles])
    return Problem("spatial ik", f, angles + rng.normal(0, warm, angles.shape), U)


def spd_matrix(n: int = 6, seed: int = 3) -> np.ndarray:
    """A fixed symmetric positive definite matrix, eigenvalues 1 .. 100."""
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return Q @ np.diag(np.geomspace(1.0, 100.0, n)) @ Q.T


def quadratic(count: int, n: int = 6, seed: int = 3) -> Problem:
    """``0.5 x^T A x - b^T x`` with ``A = spd_matrix(n)`` and data ``b``."""
    A = spd_matrix(n)
    rng = np.random.default_rng(seed)
    x = [sa.Value(0.0) for _ in range(n)]
    b = [sa.Value(0.0) for _ in range(n)]
    loss = sa.sum([0.5 * float(A[i, j]) * x[i] * x[j] for i in range(n) for j in range(n)])
    loss = loss - sa.sum([bi * xi for bi, xi in zip(b, x)])
    f = sa.compile(loss, x, inputs=b)
    return Problem("quadratic", f, rng.normal(size=(count, n)), rng.normal(size=(count, n)))


def log_barrier() -> Problem:
    """``(x0 - 3)^2 + 4 (x1 + 1)^2 - log(c - x0 - x1)``: steps past the barrier give
    nan, which the line search treats as "too far"."""
    x0, x1, c = sa.Value(0.0), sa.Value(0.0), sa.Value(1.0)
    f = sa.compile((x0 - 3) ** 2 + 4 * (x1 + 1) ** 2 - sa.log(c - x0 - x1), [x0, x1],
                   inputs=[c])
    starts = [[-3.0, 2.0], [0.0, 0.0], [-3.0, 2.0], [-5.0, 4.0], [0.5, -0.5]]
    return Problem("log barrier", f, np.array(starts), np.array([[1.0], [1.0], [2.0],
                                                                 [1.5], [1.0]]))


def hard_cases() -> Problem:
    """The other statuses, one family per data row (weights ``w``, offset ``p``): kinks
    (``|x0 - 1| + |x1 + 2|``, many zoom steps), an objective unbounded below
    (``floor(3 x0) + x0 / 2 + x1^2``: MAX_ITERATIONS), a bowl lifted to 1e17 whose
    decrease is below the rounding of ``f`` (LINE_SEARCH_FAILED), nan data (NON_FINITE)."""
    x0, x1 = sa.Value(0.0), sa.Value(0.0)
    w1, w2, w3, p = (sa.Value(0.0) for _ in range(4))
    loss = (w1 * (sa.abs(x0 - 1) + sa.abs(x1 + 2))
            + w2 * (sa.floor(x0 * 3) + x0 * 0.5 + x1 * x1)
            + w3 * (x0 * x0 + x1 * x1) + p)
    f = sa.compile(loss, [x0, x1], inputs=[w1, w2, w3, p])
    rows = [([1.0, 1.0], [1, 0, 0, 0]), ([0.3, 0.1], [1, 0, 0, 0]),
            ([0.3, 0.1], [0, 1, 0, 0]), ([0.3, 0.1], [0, 0, 1, 1e17]),
            ([1.0, 1.0], [0, 0, 1, 1e17]), ([1.0, 2.0], [0, 0, 1, math.nan])]
    return Problem("hard cases", f, np.array([r[0] for r in rows]),
                   np.array([r[1] for r in rows], dtype=float))


def wild(count: int, seed: int, **options: Any) -> Problem:
    """Random 2-D objectives with what makes a line search branch: quadratics (maybe
    indefinite), a nan disk (``sqrt`` of a negative inside it), a wall (``sqrt(w - x0)``,
    nan beyond; with weight ``1e-300`` invisible until it turns nan), a kink and a
    slope ``-x0 / 2``. Every branch of ``line_search.py`` and ``lbfgs_minimize`` (but
    the callback) runs on the families of :data:`PROBLEMS` (checked with a line tracer
    while writing these tests)."""
    x0, x1 = sa.Value(0.0), sa.Value(0.0)
    u = [sa.Value(0.0) for _ in range(12)]
    loss = (u[0] * (x0 - u[1]) ** 2 + u[2] * (x1 - u[3]) ** 2 + u[4] * x0 * x1
            + u[5] * sa.sqrt((x0 - u[6]) ** 2 + (x1 - u[7]) ** 2 - u[8] ** 2)
            + u[9] * sa.sqrt(u[10] - x0)
            + u[11] * sa.abs(x1 - x0) - 0.5 * x0)
    f = sa.compile(loss, [x0, x1], inputs=u)
    rng = np.random.default_rng(seed)

    def sometimes(values: np.ndarray) -> np.ndarray:
        return values * rng.integers(0, 2, count)

    U = np.column_stack([
        sometimes(rng.uniform(0, 2, count)), rng.normal(0, 3, count),
        rng.uniform(0, 2, count), rng.normal(0, 3, count),
        sometimes(rng.normal(0, 0.5, count)), sometimes(rng.uniform(0, 2, count)),
        rng.normal(0, 2, count), rng.normal(0, 2, count), rng.uniform(0, 1.5, count),
        rng.choice([0.0, 1e-300, 0.5], count), rng.uniform(0.5, 5, count),
        sometimes(rng.uniform(0, 1, count))])
    return Problem("wild", f, rng.normal(0, 1, (count, 2)) - 1.0, U, LBFGSConfig(**options))


# ---------------------------------------------------------------------------- running
def native(problem: Problem, config: LBFGSConfig | None = None) -> MinimizeBatchOutput:
    """All problems in one native call."""
    out = MinimizeBatchOutput.empty(problem.X0)
    U = np.ascontiguousarray(problem.U)
    NativeBatchLBFGS(problem.function, config or problem.config).run(
        out, 0, len(problem.X0), U, U.shape[1])
    return out


def reference(problem: Problem, i: int, config: LBFGSConfig | None = None,
              count: list[int] | None = None) -> OptimizeResult:
    """``lbfgs_minimize`` on problem ``i`` with ``value_and_grad`` as the oracle;
    ``count[0]`` counts non-finite evaluations."""
    f, u = problem.function, problem.U[i]

    def oracle(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = f.value_and_grad(x, u)
        if count is not None and not (math.isfinite(value) and np.all(np.isfinite(grad))):
            count[0] += 1
        return value, grad

    return lbfgs_minimize(oracle, problem.X0[i], config or problem.config)


class _InOrder:
    """numpy, except ``dot``: a left-to-right sum (as the driver's ``@dot``)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def dot(a: np.ndarray, b: np.ndarray) -> float:
        total = 0.0
        for ai, bi in zip(a.tolist(), b.tolist()):
            total += ai * bi
        return total


@pytest.fixture
def pinned_sums(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``lbfgs_minimize`` with its summation order pinned (see the module docstring)."""
    lbfgs_module = sys.modules["scalar_autograd.optim.lbfgs"]
    search_module = sys.modules["scalar_autograd.optim.line_search"]
    monkeypatch.setattr(lbfgs_module, "np", _InOrder())
    monkeypatch.setattr(search_module, "np", _InOrder())
    monkeypatch.setattr(lbfgs_module, "native_available", lambda: False)
    yield


def row(out: MinimizeBatchOutput, i: int) -> tuple[Any, ...]:
    """Problem ``i``'s outputs, comparable with ``==`` bit for bit (nan-safe)."""
    return (out.x[i].tobytes(), out.fun[i].tobytes(), int(out.status[i]),
            int(out.iterations[i]), int(out.nfev[i]), out.grad_norm[i].tobytes())


def as_row(r: OptimizeResult) -> tuple[Any, ...]:
    return (np.asarray(r.x, dtype=float).tobytes(), np.float64(r.fun).tobytes(),
            STATUSES.index(r.status), r.iterations, r.nfev, np.float64(r.grad_norm).tobytes())


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "rosenbrock2": lambda: rosenbrock(2, [[-1.2, 1.0], [2.0, 2.0], [-1.0, -1.0], [0.0, 0.0],
                                          [1.5, -0.5], [-2.0, 3.0], [1.0, 1.0]]),
    "rosenbrock10": lambda: rosenbrock(10, [[-1.2, 1.0], [0.5, -0.3], [2.0, 0.1]]),
    "rosenbrock10 short memory": lambda: rosenbrock(10, [[-1.2, 1.0], [1.1, 0.4]],
                                                    history_size=3),
    "rosenbrock other constants": lambda: rosenbrock(
        2, [[-1.2, 1.0], [2.0, 2.0]], c1=1e-3, c2=0.5, max_line_search=6, ftol=0.0,
        gradient_tolerance=1e-9),
    "rosenbrock max iterations": lambda: rosenbrock(2, [[-1.2, 1.0], [3.0, -2.0]],
                                                    max_iterations=5),
    "rosenbrock max evaluations": lambda: rosenbrock(2, [[-1.2, 1.0]], max_evaluations=9),
    "planar ik zero": lambda: planar_ik(40),
    "planar ik warm": lambda: planar_ik(40, warm=0.3),
    "spatial ik": lambda: spatial_ik(20),
    "quadratic": lambda: quadratic(10),
    "log barrier": log_barrier,
    "hard cases": hard_cases,
    "wild": lambda: wild(300, 0),
    "wild short memory and search": lambda: wild(300, 1, history_size=2, max_line_search=3),
    "wild long search": lambda: wild(300, 2, c2=0.1, max_line_search=60),
    "wild tight constants": lambda: wild(300, 3, history_size=2, c1=0.3, c2=0.35),
}


# ---------------------------------------------------------------------------- equality
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_bit_for_bit_with_the_reference_when_sums_run_in_order(name: str,
                                                               pinned_sums: None) -> None:
    problem = PROBLEMS[name]()
    out = native(problem)
    for i in range(len(problem.X0)):
        assert row(out, i) == as_row(reference(problem, i)), (name, i, out.result(i),
                                                             reference(problem, i))


@pytest.mark.parametrize("name", [name for name in PROBLEMS if not name.startswith("wild")])
def test_agrees_with_lbfgs_minimize_to_rounding(name: str) -> None:
    """(Not on the wild families: at a wall or a kink a last-bit difference can send
    the search down another branch.)"""
    problem = PROBLEMS[name]()
    out = native(problem)
    for i in range(len(problem.X0)):
        ours, theirs = out.result(i), reference(problem, i)
        assert ours.status is theirs.status, (i, ours, theirs)
        assert (ours.iterations, ours.nfev) == (theirs.iterations, theirs.nfev), (i, ours,
                                                                                 theirs)
        if ours.status is Status.MAX_ITERATIONS and name == "hard cases":
            continue    # an unbounded objective: x grows like 1e40, compare relatively
        np.testing.assert_allclose(ours.x, theirs.x, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(ours.fun, theirs.fun, rtol=1e-7, atol=1e-12)


def test_the_test_problems_reach_every_status_and_non_finite_trials() -> None:
    seen = set()
    for make in PROBLEMS.values():
        out = native(make())
        seen |= {STATUSES[s] for s in out.status}
    assert seen == set(Status) - {Status.COMPLETED, Status.CALLBACK_STOP, Status.NOT_RUN,
                                  Status.NO_PROGRESS}
    problem = log_barrier()
    bad = [0]
    for i in range(len(problem.X0)):
        reference(problem, i, count=bad)
    assert bad[0] >= 1   # the search did step into nan


def _exported(text: str, name: str) -> str:
    return text.replace(f"define internal double @{name}(", f"define double @{name}(")


def test_interpolation_pieces_equal_line_search_bit_for_bit() -> None:
    """``@cubic_minimizer`` and ``@quadratic_minimizer`` on their own, against
    ``line_search``'s, on random, degenerate and non-finite arguments."""
    from scalar_autograd.native.engine import native_engine
    from scalar_autograd.optim import native_lbfgs
    from scalar_autograd.optim.line_search import cubic_minimizer, quadratic_minimizer

    source = "\n".join(sorted({"declare double @llvm.sqrt.f64(double)",
                              "declare double @llvm.fabs.f64(double)",
                              "declare double @llvm.copysign.f64(double, double)"}))
    source += "\n" + _exported(native_lbfgs._cubic_fn(), "cubic_minimizer")
    source += _exported(native_lbfgs._quadratic_fn(), "quadratic_minimizer")
    engine = native_engine(source, 2)
    D = ctypes.c_double
    cubic = ctypes.CFUNCTYPE(D, *[D] * 8)(engine.address("cubic_minimizer"))
    quad = ctypes.CFUNCTYPE(D, *[D] * 5)(engine.address("quadratic_minimizer"))
    rng = np.random.default_rng(7)
    special = [0.0, -0.0, 1.0, -1.0, 1e-300, 1e300, math.inf, -math.inf, math.nan]
    cases = [rng.normal(size=8) * rng.choice([1e-8, 1.0, 1e8], 8) for _ in range(20000)]
    cases += [rng.choice(special, 8) for _ in range(5000)]
    for args in cases:
        a = [float(v) for v in args]
        a[6], a[7] = min(a[6], a[7]), max(a[6], a[7])
        if a[0] == a[3]:    # Python divides by zero; the searches never pass a1 == a2
            continue
        assert np.float64(cubic(*a)).tobytes() == np.float64(cubic_minimizer(*a)).tobytes(), a
        assert (np.float64(quad(*a[:5])).tobytes()
                == np.float64(quadratic_minimizer(*a[:5])).tobytes()), a


# ---------------------------------------------------------------------------- scipy
def test_minima_match_scipy_lbfgsb() -> None:
    scipy_optimize = pytest.importorskip("scipy.optimize")
    # (not the log barrier: scipy's line search takes the nan past it as a value)
    for problem in (PROBLEMS["rosenbrock2"](), PROBLEMS["rosenbrock10"](), quadratic(10)):
        out = native(problem)
        for i in range(len(problem.X0)):
            theirs = scipy_optimize.minimize(
                problem.function.value_and_grad, problem.X0[i], args=(problem.U[i],),
                jac=True, method="L-BFGS-B", options={"gtol": 1e-8, "ftol": 1e-15})
            assert out.status[i] in (STATUSES.index(Status.CONVERGED_GRADIENT),
                                     STATUSES.index(Status.CONVERGED_FTOL))
            np.testing.assert_allclose(out.x[i], theirs.x, atol=2e-4, err_msg=problem.name)
            assert abs(out.fun[i] - theirs.fun) <= 1e-8 * max(1.0, abs(theirs.fun))
    q = quadratic(10)
    out = native(q)
    exact = np.linalg.solve(spd_matrix(), q.U.T).T
    np.testing.assert_allclose(out.x, exact, atol=1e-5)


def test_ik_targets_are_reached() -> None:
    for problem in (planar_ik(40), planar_ik(40, warm=0.3), spatial_ik(20)):
        out = native(problem)
        assert np.all(out.fun < 1e-10), problem.name


# ---------------------------------------------------------------------------- batches
def test_one_call_equals_single_calls_bit_for_bit() -> None:
    problem = planar_ik(500)
    out = native(problem)
    solver = NativeBatchLBFGS(problem.function, problem.config)
    U = np.ascontiguousarray(problem.U)
    for i in range(500):
        single = MinimizeBatchOutput.empty(problem.X0[i:i + 1])
        solver.run(single, 0, 1, np.ascontiguousarray(U[i]), 0)
        assert row(single, 0) == row(out, i), i
    assert np.all(out.status >= 0)


def test_two_threads_over_halves_equal_one_call() -> None:
    problem = planar_ik(400, warm=0.3)
    whole = native(problem)
    halves = MinimizeBatchOutput.empty(problem.X0)
    solver = NativeBatchLBFGS(problem.function, problem.config)
    U = np.ascontiguousarray(problem.U)
    threads = [threading.Thread(target=solver.run, args=(halves, a, b, U, 2))
               for a, b in ((0, 200), (200, 400))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [row(halves, i) for i in range(400)] == [row(whole, i) for i in range(400)]


def test_nan_data_stops_only_its_own_problem() -> None:
    problem = planar_ik(30)
    clean = native(problem)
    problem.U[7, 1] = math.nan
    out = native(problem)
    assert STATUSES[out.status[7]] is Status.NON_FINITE
    assert (out.iterations[7], out.nfev[7]) == (0, 1)
    assert np.array_equal(out.x[7], problem.X0[7])
    others = [i for i in range(30) if i != 7]
    assert [row(out, i) for i in others] == [row(clean, i) for i in others]


def test_shared_data_and_a_sub_range() -> None:
    problem = planar_ik(6)
    problem.U[:] = problem.U[0]
    tiled = native(problem)
    out = MinimizeBatchOutput.empty(problem.X0)
    NativeBatchLBFGS(problem.function, problem.config).run(
        out, 2, 5, np.ascontiguousarray(problem.U[0]), 0)
    assert out.status.tolist() == [-1, -1, *tiled.status[2:5].tolist(), -1]
    assert np.array_equal(out.x[[0, 1, 5]], problem.X0[[0, 1, 5]])
    assert [row(out, i) for i in (2, 3, 4)] == [row(tiled, i) for i in (2, 3, 4)]


# ---------------------------------------------------------------------------- API
def test_options_come_from_the_config() -> None:
    config = LBFGSConfig(history_size=4, gradient_tolerance=1e-3, ftol=1e-5,
                         max_iterations=7, max_evaluations=10**30, c1=0.01, c2=0.5,
                         max_line_search=3)
    values = options_array(config)
    assert values.dtype == np.float64 and len(values) == len(OPTIONS)
    assert values.tolist() == [4.0, 1e-3, 1e-5, 7.0, 2.0 ** 62, 0.01, 0.5, 3.0]
    assert workspace_size(7, 4) == 1 + 7 * 7 + 2 * 4 * 7 + 8


def test_supports_and_rejections() -> None:
    assert supports(LBFGSConfig(), 7)
    assert not supports(LBFGSConfig(), 7, callback=print)
    assert not supports(LBFGSConfig(), 7, history=True)
    x, y = sa.Value(0.0), sa.Value(0.0)
    with pytest.raises(TypeError, match="LBFGSConfig"):
        NativeBatchLBFGS(sa.compile(x * x, [x]), object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one output"):
        NativeBatchLBFGS(sa.compile([x * x, x + y], [x, y]), LBFGSConfig())
    with pytest.raises(ValueError, match="llvm backend"):
        NativeBatchLBFGS(sa.compile(x * x, [x], backend="python"), LBFGSConfig())
    solver = NativeBatchLBFGS(sa.compile(x * x + y, [x], inputs=[y]), LBFGSConfig())
    out = MinimizeBatchOutput.empty(np.ones((3, 1)))
    with pytest.raises(ValueError, match="at least 3 values"):
        solver.run(out, 0, 3, np.zeros(2), 1)
    with pytest.raises(ValueError, match="start <= stop"):
        solver.run(out, 2, 4, np.zeros(4), 1)
    with pytest.raises(ValueError, match="out.x"):
        solver.run(MinimizeBatchOutput.empty(np.ones((3, 2))), 0, 3, np.zeros(3), 1)
    solver.run(out, 0, 3, np.zeros(3), 1)
    assert out.x.ravel().tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="not been run"):
        MinimizeBatchOutput.empty(np.ones((1, 1))).result(0)


def test_driver_source_has_no_fast_math() -> None:
    source = driver_source()
    for flag in ("fast", "contract", "reassoc", "afn", "arcp", "nnan", "ninf", "nsz"):
        assert f" {flag} " not in source


# ---------------------------------------------------------------------------- timing
def _engine_with_sroa(source: str) -> Any:
    """An experiment: ``native.engine``'s pass list with SROA first (stack variables to
    registers), for the timing below; the library's engine does not run it (yet)."""
    from scalar_autograd.native import engine as native

    llvm = native._ensure_llvm()
    module = llvm.parse_assembly(source)
    module.verify()
    target = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=2)
    builder = llvm.create_pass_builder(target, llvm.create_pipeline_tuning_options(
        speed_level=2))
    manager = llvm.create_new_module_pass_manager()
    manager.add_sroa_pass()
    manager.add_instruction_combine_pass()
    manager.add_simplify_cfg_pass()
    manager.add_new_gvn_pass()
    manager.add_instruction_combine_pass()
    manager.add_dead_code_elimination_pass()
    manager.run(module, builder)
    engine = llvm.create_mcjit_compiler(module, target)
    engine.finalize_object()
    return native.NativeEngine(engine, target)


def measure(count: int = 10_000, repeats: int = 7) -> None:
    """Print µs per target of batched 7-DOF planar IK (one thread, median of runs), with
    the driver as the library compiles it and with SROA added (same results, checked)."""
    sroa = _engine_with_sroa(driver_source())
    for label, problem in (("zero start", planar_ik(count)),
                           ("warm start (+N(0, 0.3^2))", planar_ik(count, warm=0.3))):
        U = np.ascontiguousarray(problem.U)
        results = []
        for engine_label, engine in (("library passes", None), ("with SROA", sroa)):
            solver = NativeBatchLBFGS(problem.function, problem.config, engine=engine)
            times = []
            for _ in range(repeats):
                out = MinimizeBatchOutput.empty(problem.X0)
                start = time.perf_counter()
                solver.run(out, 0, count, U, 2)
                times.append(time.perf_counter() - start)
            results.append(out)
            us = statistics.median(times) / count * 1e6
            print(f"7-DOF planar IK, {label}, {engine_label}: {us:.2f} µs/target (median "
                  f"of {repeats}, N={count}); mean nfev {out.nfev.mean():.1f}, max fun "
                  f"{out.fun.max():.1e}")
        same = all(row(results[0], i) == row(results[1], i) for i in range(count))
        print(f"  results with and without SROA identical bit for bit: {same}")


if __name__ == "__main__":
    measure()
