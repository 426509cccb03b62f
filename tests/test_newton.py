"""Trust-region Newton (``optim/newton.py``) against scipy's trust-exact and trust-ncg.

Our side runs on compiled functions (their Hessian and HVP kernels); scipy's on exact
Hessians and Hessian-vector products written here by hand in numpy. Same problems, same
start, same ``gtol``: the same minima, in at most 1.5x scipy's iterations. Then the
subproblems on their own (against a brute-force minimum of the model), the statuses,
the oracles and the options.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.kinematics import planar_ik_loss
from scalar_autograd.optim.newton import (
    DENSE_MAX_N,
    NewtonConfig,
    NewtonOracle,
    _Exact,
    _steihaug,
    compiled_oracle,
    newton_minimize,
    newton_oracle,
    traced_oracle,
)
from scalar_autograd.optim.result import Status

scipy_optimize = pytest.importorskip("scipy.optimize")

GTOL = 1e-8
LENGTHS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)

# ----------------------------------------------------------------------------- problems
# numpy by hand (scipy's side) and the same function as a Value graph (ours)


def rosen(x: np.ndarray) -> float:
    a, b = x[:-1], x[1:]
    return float(np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2))


def rosen_grad(x: np.ndarray) -> np.ndarray:
    a, b = x[:-1], x[1:]
    g = np.zeros_like(x)
    g[:-1] += -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
    g[1:] += 200.0 * (b - a * a)
    return g


def rosen_hess(x: np.ndarray) -> np.ndarray:
    n = x.size
    h = np.zeros((n, n))
    a, b = x[:-1], x[1:]
    i = np.arange(n - 1)
    h[i, i] += 1200.0 * a * a - 400.0 * b + 2.0
    h[i + 1, i + 1] += 200.0
    h[i, i + 1] = h[i + 1, i] = -400.0 * a
    return h


def rosen_hvp(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    a, b = x[:-1], x[1:]
    hv = np.zeros_like(x)
    hv[:-1] += (1200.0 * a * a - 400.0 * b + 2.0) * v[:-1] - 400.0 * a * v[1:]
    hv[1:] += 200.0 * v[1:] - 400.0 * a * v[:-1]
    return hv


def rosen_sa(v: list[sa.Value]) -> sa.Value:
    return sa.sum([100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2 for a, b in zip(v[:-1], v[1:])])


def quadratic_problem(n: int = 20, seed: int = 4) -> tuple[Any, ...]:
    """``x.A.x / 2 - b.x`` with eigenvalues 1 .. 100."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = q @ np.diag(np.logspace(0, 2, n)) @ q.T
    a = 0.5 * (a + a.T)
    b = rng.normal(size=n) * 5.0

    def build(v: list[sa.Value]) -> sa.Value:
        ax = [sa.sum([float(a[i, j]) * v[j] for j in range(n)]) for i in range(n)]
        return 0.5 * sa.sum([v[i] * ax[i] for i in range(n)]) - \
            sa.sum([float(b[i]) * v[i] for i in range(n)])

    return (lambda x: float(0.5 * x @ a @ x - b @ x), lambda x: a @ x - b, lambda x: a,
            lambda x, v: a @ v, build)


def saddle(x: np.ndarray) -> float:
    """Indefinite at ``(0, 1)`` with ``g`` orthogonal to the negative curvature: the hard
    case. Minima at ``(+-1, 0)``, ``f = -1/4``; a saddle at the origin."""
    a, b = x
    return float(0.25 * a**4 - 0.5 * a * a + 0.5 * b * b + 0.1 * a * a * b * b)


def saddle_grad(x: np.ndarray) -> np.ndarray:
    a, b = x
    return np.array([a**3 - a + 0.2 * a * b * b, b + 0.2 * a * a * b])


def saddle_hess(x: np.ndarray) -> np.ndarray:
    a, b = x
    return np.array([[3 * a * a - 1 + 0.2 * b * b, 0.4 * a * b],
                     [0.4 * a * b, 1 + 0.2 * a * a]])


def saddle_sa(v: list[sa.Value]) -> sa.Value:
    a, b = v
    return 0.25 * a**4 - 0.5 * a * a + 0.5 * b * b + 0.1 * a * a * b * b


def ik_problem(target: tuple[float, float]) -> tuple[Any, ...]:
    """The 7-DOF planar IK loss ``|p(q) - t|^2``: its Hessian by hand,
    ``2 (J^T J + sum_k r_k d2p_k/dq2)``, with ``dp/dq_j = sum_{i>=j} L_i (-sin, cos)``
    and ``d2p/dq_j dq_k = -sum_{i>=max(j,k)} L_i (cos, sin)``."""
    lengths = np.array(LENGTHS)
    t = np.asarray(target)

    def parts(q: np.ndarray) -> tuple[np.ndarray, ...]:
        phi = np.cumsum(q)
        c, s = lengths * np.cos(phi), lengths * np.sin(phi)
        r = np.array([c.sum() - t[0], s.sum() - t[1]])
        tail_c, tail_s = np.cumsum(c[::-1])[::-1], np.cumsum(s[::-1])[::-1]
        return r, np.vstack([-tail_s, tail_c]), tail_c, tail_s

    def fun(q: np.ndarray) -> float:
        r = parts(q)[0]
        return float(r @ r)

    def grad(q: np.ndarray) -> np.ndarray:
        r, jac, _, _ = parts(q)
        return 2.0 * jac.T @ r

    def hess(q: np.ndarray) -> np.ndarray:
        r, jac, tail_c, tail_s = parts(q)
        k = np.maximum.outer(np.arange(q.size), np.arange(q.size))
        return 2.0 * (jac.T @ jac - r[0] * tail_c[k] - r[1] * tail_s[k])

    def build(q: list[sa.Value]) -> sa.Value:
        return planar_ik_loss(q, target, LENGTHS)

    return fun, grad, hess, lambda q, v: hess(q) @ v, build


PROBLEMS: dict[str, tuple[Any, ...]] = {
    # name: (fun, grad, hess, hvp, build, x0, whether the minimiser is isolated)
    "rosenbrock-2": (rosen, rosen_grad, rosen_hess, rosen_hvp, rosen_sa,
                     np.array([-1.2, 1.0]), True),
    "rosenbrock-10": (rosen, rosen_grad, rosen_hess, rosen_hvp, rosen_sa,
                      np.tile([-1.2, 1.0], 5), True),
    "rosenbrock-100": (rosen, rosen_grad, rosen_hess, rosen_hvp, rosen_sa,
                       np.tile([-1.2, 1.0], 50), True),
    "quadratic-20": (*quadratic_problem(), np.zeros(20), True),
    "hard-case": (saddle, saddle_grad, saddle_hess, lambda x, v: saddle_hess(x) @ v,
                  saddle_sa, np.array([0.0, 1.0]), True),
    "indefinite-start": (saddle, saddle_grad, saddle_hess, lambda x, v: saddle_hess(x) @ v,
                         saddle_sa, np.array([0.01, 1.0]), True),
    # 7 joints for a 2-D target: a manifold of minimisers (compared by f = distance^2)
    "ik-7dof": (*ik_problem((1.5, 2.0)), np.full(7, 0.1), False),
}


@cache
def compiled(name: str) -> sa.CompiledFunction:
    """The problem's loss compiled once, traced at another point than x0."""
    build, x0 = PROBLEMS[name][4], PROBLEMS[name][5]
    leaves = [sa.Value(0.3 + 0.01 * i) for i in range(x0.size)]
    return sa.compile(build(leaves), leaves)


# ----------------------------------------------------------------------------- vs scipy


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_the_hand_written_oracles_agree_with_the_compiled_kernels(name: str) -> None:
    fun, grad, hess, hvp, _, x0, _ = PROBLEMS[name]
    f = compiled(name)
    rng = np.random.default_rng(0)
    for x in (x0, x0 + rng.normal(size=x0.size) * 0.3):
        value, g, h = f.value_grad_hessian(x)
        assert math.isclose(value, fun(x), rel_tol=1e-12, abs_tol=1e-12)
        assert np.allclose(g, grad(x), rtol=1e-12, atol=1e-10)
        assert np.allclose(h, hess(x), rtol=1e-12, atol=1e-9)
        v = rng.normal(size=x0.size)
        assert np.allclose(f.hvp(x, v), hvp(x, v), rtol=1e-11, atol=1e-8)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
@pytest.mark.parametrize("subproblem, method", [("exact", "trust-exact"),
                                                ("cg", "trust-ncg")])
def test_same_minima_as_scipy_in_at_most_one_and_a_half_times_its_iterations(
        name: str, subproblem: str, method: str) -> None:
    fun, grad, hess, hvp, _, x0, isolated = PROBLEMS[name]
    ours = newton_minimize(compiled_oracle(compiled(name)), x0,
                           NewtonConfig(subproblem=subproblem, gradient_tolerance=GTOL))
    derivative = {"hess": hess} if method == "trust-exact" else {"hessp": hvp}
    theirs = scipy_optimize.minimize(fun, x0, jac=grad, method=method,
                                     options={"gtol": GTOL}, **derivative)
    assert ours.status is Status.CONVERGED_GRADIENT, ours
    assert ours.iterations <= 1.5 * theirs.nit, (ours.iterations, theirs.nit)
    assert abs(ours.fun - theirs.fun) <= 1e-9 * max(1.0, abs(theirs.fun)), \
        (ours.fun, theirs.fun)
    if isolated:
        assert np.allclose(ours.x, theirs.x, rtol=0, atol=1e-6), (ours.x, theirs.x)
    if name == "hard-case" and subproblem == "cg":
        # Steihaug-CG never leaves the Krylov space of g, orthogonal to the negative
        # curvature: scipy's trust-ncg and ours stop at the saddle point (0, 0) alike
        assert np.array_equal(ours.x, [0.0, 0.0])
    elif name != "ik-7dof":
        assert abs(ours.fun - fun(theirs.x)) <= 1e-12 * max(1.0, abs(theirs.fun))


def test_the_hard_case_reaches_a_minimum_not_the_saddle() -> None:
    r = newton_minimize(compiled_oracle(compiled("hard-case")), [0.0, 1.0],
                        NewtonConfig(subproblem="exact"))
    assert r.success and np.allclose(np.abs(r.x), [1.0, 0.0], atol=1e-6)
    assert r.fun == pytest.approx(-0.25, abs=1e-12)


# ----------------------------------------------------------------------------- subproblems


def _model(g: np.ndarray, h: np.ndarray, p: np.ndarray) -> float:
    return float(g @ p + 0.5 * p @ h @ p)


def _brute_force_minimum(g: np.ndarray, h: np.ndarray, radius: float) -> float:
    """The model's minimum over the ball: on a dense sample of the sphere and, when
    ``H`` is positive definite, at the Newton step if it lies inside."""
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(200_000, g.size))
    points = radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    best = float(np.min(points @ g + 0.5 * np.einsum("ij,jk,ik->i", points, h, points)))
    if np.all(np.linalg.eigvalsh(h) > 0):
        newton = np.linalg.solve(h, -g)
        if np.linalg.norm(newton) <= radius:
            best = min(best, _model(g, h, newton))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_the_exact_step_is_near_the_model_minimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3, 3))
    h = a + a.T + (seed - 2) * np.eye(3)      # definite and indefinite ones
    g = rng.normal(size=3)
    for radius in (0.1, 1.0, 10.0):
        p, on_boundary = _Exact(g, h).solve(radius)
        best = _brute_force_minimum(g, h, radius)
        assert np.linalg.norm(p) <= 1.1 * radius + 1e-12     # k_easy
        assert _model(g, h, p) <= 0.7 * best, (_model(g, h, p), best)


def test_the_hard_case_step_goes_along_the_negative_curvature_to_the_boundary() -> None:
    g, h = np.array([0.0, 1.0]), np.diag([-1.0, 1.0])
    p, on_boundary = _Exact(g, h).solve(1.0)
    assert on_boundary and np.linalg.norm(p) == pytest.approx(1.0)
    # within Moré-Sorensen's k_hard = 0.2 of the exact minimum -0.75, at p = (+-0.87, -0.5)
    assert -0.75 <= _model(g, h, p) <= 0.8 * -0.75
    assert abs(p[0]) > 0.8


def test_a_stationary_point_of_an_indefinite_model_steps_to_the_boundary() -> None:
    p, on_boundary = _Exact(np.zeros(2), np.diag([2.0, -3.0])).solve(0.5)
    assert on_boundary and np.allclose(np.abs(p), [0.0, 0.5])


def test_steihaug_stops_at_the_boundary_and_on_negative_curvature() -> None:
    h = np.diag([2.0, 1.0])
    p, on_boundary, model = _steihaug(np.array([4.0, 0.0]), lambda v: h @ v, 1.0, 10)
    assert on_boundary and np.allclose(p, [-1.0, 0.0]) and model == pytest.approx(-3.0)
    p, on_boundary, model = _steihaug(np.array([0.5, 0.0]), lambda v: h @ v, 1.0, 10)
    assert not on_boundary and np.allclose(p, [-0.25, 0.0])
    h = np.diag([-1.0, 1.0])
    p, on_boundary, model = _steihaug(np.array([1.0, 0.0]), lambda v: h @ v, 2.0, 10)
    assert on_boundary and np.allclose(p, [-2.0, 0.0])
    assert model == pytest.approx(_model(np.array([1.0, 0.0]), h, p))


# ----------------------------------------------------------------------------- oracles


def _counting(fun: Callable[..., Any], calls: dict[str, int], key: str) -> Callable[..., Any]:
    def counted(*args: Any) -> Any:
        calls[key] = calls.get(key, 0) + 1
        return fun(*args)

    return counted


@pytest.mark.parametrize("n, uses", [(10, "hessian"), (DENSE_MAX_N, "hessian"),
                                     (DENSE_MAX_N + 1, "hvp")])
def test_auto_takes_the_exact_subproblem_up_to_dense_max_n(n: int, uses: str) -> None:
    fun, grad, hess, hvp, _ = quadratic_problem(n, seed=1)
    calls: dict[str, int] = {}
    oracle = NewtonOracle(lambda x: (fun(x), grad(x)), _counting(hess, calls, "hessian"),
                          _counting(hvp, calls, "hvp"))
    r = newton_minimize(oracle, np.zeros(n), NewtonConfig(gradient_tolerance=1e-8))
    assert r.success and set(calls) == {uses}


def test_one_kind_of_second_derivative_serves_both_subproblems() -> None:
    x0 = np.tile([-1.2, 1.0], 5)

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        return rosen(x), rosen_grad(x)

    config = NewtonConfig(subproblem="exact", gradient_tolerance=GTOL)
    with_h = newton_minimize(NewtonOracle(fg, hessian=rosen_hess), x0, config)
    from_hvp = newton_minimize(NewtonOracle(fg, hvp=rosen_hvp), x0, config)
    assert np.array_equal(with_h.x, from_hvp.x) and with_h.iterations == from_hvp.iterations
    config = NewtonConfig(subproblem="cg", gradient_tolerance=GTOL)
    with_hvp = newton_minimize(NewtonOracle(fg, hvp=rosen_hvp), x0, config)
    from_h = newton_minimize(NewtonOracle(fg, hessian=rosen_hess), x0, config)
    assert np.allclose(with_hvp.x, from_h.x, atol=1e-8) and from_h.success


def test_compiled_oracle_reads_runtime_inputs() -> None:
    q = [sa.Value(0.0) for _ in LENGTHS]
    tx, ty = sa.Value(0.0), sa.Value(0.0)
    f = sa.compile(planar_ik_loss(q, (tx, ty), LENGTHS), q, inputs=[tx, ty])
    x = np.full(7, 0.1)
    for target in ((1.5, 2.0), (-2.0, 1.0), (0.5, -3.0)):
        r = newton_minimize(compiled_oracle(f, target), x)
        assert r.success and r.fun < 1e-12
        x = r.x  # warm start
    tx.data, ty.data = 1.0, 1.0  # inputs=None: the input leaves' data
    assert newton_minimize(compiled_oracle(f), x).fun < 1e-12


def test_newton_oracle_serves_every_kind_of_loss() -> None:
    w = [sa.Value(-1.2), sa.Value(1.0)]
    graph = rosen_sa(w)
    compiled_fn = sa.compile(graph, w)
    for loss in (graph, compiled_fn, rosen_sa):
        r = newton_minimize(newton_oracle(loss, w), [-1.2, 1.0])
        assert r.success and np.allclose(r.x, [1.0, 1.0]), loss
    t = sa.Value(3.0)
    r = newton_minimize(newton_oracle(lambda p: (p[0] - t) ** 2, w[:1], [t]), [0.0])
    assert r.x[0] == pytest.approx(3.0, rel=1e-15)
    with pytest.raises(TypeError, match="loss"):
        newton_oracle(3.0, w)
    with pytest.raises(ValueError, match="params"):
        newton_oracle(compiled_fn, w[:1])


def test_a_traced_oracle_takes_the_hessian_of_the_branch_that_holds() -> None:
    def loss(p: list[sa.Value]) -> sa.Value:
        x = p[0]
        return (x - 2.0) ** 4 + x * x if x > 1.0 else 3.0 * (x - 0.5) ** 2 + 1.25

    oracle = traced_oracle(loss, [sa.Value(0.0)])
    assert oracle.hessian is not None
    assert oracle.hessian(np.array([0.0])).tolist() == [[6.0]]
    assert oracle.hessian(np.array([3.0])).tolist() == [[14.0]]   # 12 (x-2)^2 + 2
    r = newton_minimize(oracle, [0.0])      # the quadratic branch's minimum
    assert r.success and r.x[0] == pytest.approx(0.5, rel=1e-15)
    r = newton_minimize(oracle, [3.0])      # the quartic's: 4 (x-2)^3 + 2x = 0, x > 1
    x = r.x[0]
    assert r.success and x > 1.0 and abs(4 * (x - 2) ** 3 + 2 * x) < 1e-6


# ----------------------------------------------------------------------------- statuses


def test_a_non_finite_start_is_reported() -> None:
    nan_f = NewtonOracle(lambda x: (math.nan, np.ones(1)), hessian=lambda x: np.eye(1))
    assert newton_minimize(nan_f, [1.0]).status is Status.NON_FINITE
    nan_h = NewtonOracle(lambda x: (1.0, np.ones(1)), hessian=lambda x: np.full((1, 1), np.inf))
    assert newton_minimize(nan_h, [1.0]).status is Status.NON_FINITE


def test_non_finite_trial_points_are_rejected_and_the_region_shrinks() -> None:
    # sqrt(1 + x^2) is defined only for x > -1 here; a long first step lands beyond
    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        if x[0] <= -1.0:
            return math.nan, np.full(1, math.nan)
        s = math.sqrt(1.0 + x[0] ** 2)
        return s, np.array([x[0] / s])

    def hess(x: np.ndarray) -> np.ndarray:
        return np.array([[(1.0 + x[0] ** 2) ** -1.5]])

    seen: list[float] = []
    r = newton_minimize(NewtonOracle(fg, hessian=hess), [2.0],
                        NewtonConfig(initial_trust_radius=100.0, max_trust_radius=100.0),
                        callback=lambda k, x, f: seen.append(f))
    assert r.success and abs(r.x[0]) < 1e-6
    assert all(math.isfinite(f) for f in seen)
    assert seen[0] == math.sqrt(5.0)  # the first trial was rejected: x unchanged


def test_max_iterations_and_callback_stop() -> None:
    oracle = compiled_oracle(compiled("rosenbrock-2"))
    r = newton_minimize(oracle, [-1.2, 1.0], NewtonConfig(max_iterations=3), history=True)
    assert r.status is Status.MAX_ITERATIONS and r.iterations == 3
    assert r.history is not None and len(r.history) == 4 and r.history[-1] == r.fun
    r = newton_minimize(oracle, [-1.2, 1.0], callback=lambda k, x, f: k == 2)
    assert r.status is Status.CALLBACK_STOP and r.iterations == 2


def test_no_progress_when_the_tolerance_is_below_rounding() -> None:
    x = sa.Value(0.0)
    f = sa.compile(sa.exp(x) - 2.0 * x, [x])   # minimum at log 2
    r = newton_minimize(compiled_oracle(f), [3.0], NewtonConfig(gradient_tolerance=0.0))
    # steps whose reductions are rounding noise are still taken: x ends within an ulp
    assert r.status in (Status.NO_PROGRESS, Status.CONVERGED_GRADIENT)
    assert abs(r.x[0] - math.log(2.0)) <= 2 * math.ulp(math.log(2.0))
    assert not Status.NO_PROGRESS.success


def test_a_minimum_at_the_start_takes_no_iteration() -> None:
    r = newton_minimize(compiled_oracle(compiled("rosenbrock-2")), [1.0, 1.0])
    assert r.status is Status.CONVERGED_GRADIENT and r.iterations == 0 and r.nfev == 1


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("field, value, error", [
    ("subproblem", "dense", ValueError), ("subproblem", 1, TypeError),
    ("max_iterations", 0, ValueError), ("max_iterations", 2.5, TypeError),
    ("gradient_tolerance", -1.0, ValueError), ("gradient_tolerance", math.nan, ValueError),
    ("initial_trust_radius", 0.0, ValueError), ("max_trust_radius", math.inf, ValueError),
    ("eta", 0.25, ValueError), ("eta", "0.1", TypeError),
    ("max_cg_iterations", 0, ValueError),
])
def test_config_errors_name_the_option(field: str, value: Any, error: type) -> None:
    with pytest.raises(error, match=f"`{field}`"):
        NewtonConfig(**{field: value})


def test_argument_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="initial_trust_radius"):
        NewtonConfig(initial_trust_radius=10.0, max_trust_radius=1.0)
    with pytest.raises(TypeError, match="hessian. or .hvp"):
        NewtonOracle(lambda x: (0.0, x))
    with pytest.raises(TypeError, match="fun_and_grad"):
        NewtonOracle(3, hessian=lambda x: x)
    with pytest.raises(TypeError, match="hvp"):
        NewtonOracle(lambda x: (0.0, x), hvp=3)
    good = NewtonOracle(lambda x: (0.0, x), hessian=lambda x: np.eye(x.size))
    with pytest.raises(TypeError, match="oracle"):
        newton_minimize(lambda x: (0.0, x), [1.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x0"):
        newton_minimize(good, ["a"])
    with pytest.raises(TypeError, match="config"):
        newton_minimize(good, [1.0], {"gradient_tolerance": 1.0})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callback"):
        newton_minimize(good, [1.0], callback=3)  # type: ignore[arg-type]
    wrong = NewtonOracle(lambda x: (0.0, np.ones(3)), hessian=lambda x: np.eye(2))
    with pytest.raises(ValueError, match="gradient of shape"):
        newton_minimize(wrong, [1.0, 2.0])
    wrong = NewtonOracle(lambda x: (1.0, np.ones(2)), hessian=lambda x: np.eye(3))
    with pytest.raises(ValueError, match="hessian"):
        newton_minimize(wrong, [1.0, 2.0])
    with pytest.raises(ValueError, match="one output"):
        a = sa.Value(0.0)
        compiled_oracle(sa.compile([a, a * a], [a]))
    with pytest.raises(TypeError, match="function"):
        compiled_oracle(lambda x: x)


def test_minimize_takes_newton_and_newton_cg() -> None:
    """``sa.minimize(method="newton" | "newton-cg")`` against scipy's trust-exact and
    trust-ncg with the Hessian written out by hand."""
    scipy_optimize = pytest.importorskip("scipy.optimize")

    def f_np(x: np.ndarray) -> float:
        return float((1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2)

    def g_np(x: np.ndarray) -> np.ndarray:
        return np.array([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2),
                         200 * (x[1] - x[0] ** 2)])

    def h_np(x: np.ndarray) -> np.ndarray:
        return np.array([[2 - 400 * x[1] + 1200 * x[0] ** 2, -400 * x[0]],
                         [-400 * x[0], 200.0]])

    for method, peer in (("newton", "trust-exact"), ("newton-cg", "trust-ncg")):
        a, b = sa.Value(-1.2), sa.Value(1.0)
        result = sa.minimize(lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2,
                             [a, b], method=method, gradient_tolerance=1e-8)
        ref = scipy_optimize.minimize(f_np, [-1.2, 1.0], jac=g_np, hess=h_np, method=peer,
                                      options={"gtol": 1e-8})
        assert result.success, result.status
        np.testing.assert_allclose([a.data, b.data], ref.x, atol=1e-6)
        assert result.iterations <= 1.5 * ref.nit
    with pytest.raises(TypeError, match="unknown option"):
        sa.minimize(lambda p: p[0] ** 2, [sa.Value(1.0)], method="newton", lr=0.1)
    with pytest.raises(ValueError, match="bounds"):
        sa.minimize(lambda p: p[0] ** 2, [sa.Value(1.0)], method="newton", bounds=(0, 1))
