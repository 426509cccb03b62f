"""L-BFGS-B (``bounds=``) against scipy, closed forms and dense linear algebra.

The solver (optim/lbfgsb.py) is checked four ways, none of them the code under test:

* end to end against scipy's ``minimize(method="L-BFGS-B")`` with the same exact
  gradients and options, on problems whose bounds bind: the objective at least as low
  as scipy's, no more evaluations, every iterate and every evaluated point in the box,
  the same active bounds;
* a bound-constrained quadratic whose solution comes from scipy's ``lsq_linear``
  (bounded-variable least squares, an active-set method);
* its pieces against dense formulas: the compact matrix ``theta I - W M W^T`` against
  the BFGS recursion run on a dense matrix, the generalized Cauchy point against the
  textbook piecewise search on that dense matrix, the subspace step against the
  reduced Newton system solved densely, the Moré–Thuente search against scipy's port
  of MINPACK-2's ``dcsrch``;
* the contract: validation messages, a start outside the box, all-infinite bounds
  (exactly the unbounded L-BFGS), fixed variables, non-finite values.

Also here: the argument order of ``sa.lbfgs`` and its deprecation, and the reuse of
compiled objectives across solves (``sa.minimize`` / ``sa.lbfgs`` on the same graph or
function, ``inputs=`` for functions).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.kinematics import planar_arm_end, planar_ik_loss
from scalar_autograd.optim import LBFGSConfig, MoreThuente, check_bounds, lbfgsb_minimize
from scalar_autograd.optim.lbfgsb import CompactMemory, cauchy_point, subspace_minimum

scipy_optimize = pytest.importorskip("scipy.optimize")

IK_LENGTHS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
IK_LOWER = np.array([-math.pi] + [-0.9] * 6)
IK_UPPER = np.array([math.pi] + [0.9] * 6)


# ---------------------------------------------------------------------------- problems
def rosenbrock(x):
    a, b = x[:-1], x[1:]
    f = float(np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2))
    g = np.zeros_like(x)
    g[:-1] += -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
    g[1:] += 200.0 * (b - a * a)
    return f, g


def _quadratic(seed=3, m=40, n=15):
    """``0.5 |A x - b|^2``, its oracle and its bounds."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, n))
    b = rng.normal(size=m) * 3.0

    def fg(x):
        r = A @ x - b
        return 0.5 * float(r @ r), A.T @ r

    return A, b, fg


def _ik_oracle():
    q = [sa.Value(0.0) for _ in IK_LENGTHS]
    tx, ty = sa.Value(0.0), sa.Value(0.0)
    f = sa.compile(planar_ik_loss(q, (tx, ty), IK_LENGTHS), q, inputs=[tx, ty])

    def oracle(target):
        def fg(x):
            value, grad = f.value_and_grad(x, target)
            return value, grad
        return fg

    return oracle


def _problems():
    A, b, quad = _quadratic()
    ik = _ik_oracle()
    n = 20
    return {
        # the minimiser (1, 1) is outside: the solution sits on the upper bound of x0
        "rosenbrock-2d": (rosenbrock, np.array([-1.2, 1.0]), (-2.0, [0.5, 2.0])),
        "rosenbrock-10d-box": (rosenbrock, np.full(10, -1.0), (-1.5, 0.7)),
        "quadratic-box": (quad, np.zeros(15), (-0.25, 0.3)),
        # curled targets the joint limits keep out of reach (limits bind)
        "ik-7dof-limits": (ik((0.3, 1.2)), np.full(7, 0.1), (IK_LOWER, IK_UPPER)),
        "ik-7dof-tight-limits": (ik((0.5, 1.5)), np.full(7, 0.1),
                                 ([-0.2, 0.0, 0.0, -0.5, -0.5, -0.5, -0.5],
                                  [0.2, 0.6, 0.6, 0.5, 0.5, 0.5, 0.5])),
        # half the variables bounded below only, half above only, some not at all
        "rosenbrock-mixed-infinite": (
            rosenbrock, np.linspace(-1.0, 1.0, n),
            (np.r_[np.full(8, -np.inf), np.full(12, 0.0)],
             np.r_[np.full(8, 0.8), np.full(6, np.inf), np.full(6, 1.5)])),
        "start-outside-the-box": (rosenbrock, np.array([3.0, -4.0, 0.5, 9.0]),
                                  ([-1.0, -1.0, -np.inf, 0.0], [0.6, 0.5, 1.0, 2.0])),
    }


def _scipy_bounds(bounds, n):
    box = check_bounds(bounds, n)
    return scipy_optimize.Bounds(box.lower, box.upper)


def _scipy_active_mask(x, g, bounds):
    """scipy's notion: a variable at a bound that the gradient pushes it beyond."""
    mask = np.zeros(x.size, dtype=np.int8)
    mask[(x <= bounds.lb) & (g > 0.0)] = -1
    mask[(x >= bounds.ub) & (g < 0.0)] = 1
    return mask


class Recorder:
    """An oracle that records every point it is evaluated at."""

    def __init__(self, fg):
        self.fg = fg
        self.points = []

    def __call__(self, x):
        self.points.append(np.array(x, copy=True))
        return self.fg(x)


# ---------------------------------------------------------------------------- against scipy
@pytest.mark.parametrize("name", list(_problems()))
def test_reaches_scipy_lbfgsb_objective_feasibly_in_no_more_evaluations(name):
    fg, x0, bounds = _problems()[name]
    n = x0.size
    scipy_bounds = _scipy_bounds(bounds, n)
    theirs = scipy_optimize.minimize(
        fg, x0, jac=True, method="L-BFGS-B", bounds=scipy_bounds,
        options={"maxcor": 10, "gtol": 1e-6, "ftol": LBFGSConfig.ftol, "maxiter": 15000,
                 "maxls": 20})
    recorder = Recorder(fg)
    iterates = []
    ours = lbfgsb_minimize(recorder, x0, bounds,
                           LBFGSConfig(max_iterations=15000, max_line_search=20),
                           callback=lambda k, x, f: iterates.append(x))
    assert ours.success, ours
    assert theirs.success, theirs.message
    # at least as low as scipy's
    assert ours.fun <= theirs.fun + max(1e-10 * abs(theirs.fun), 1e-12), \
        (ours.fun, theirs.fun)
    # in no more evaluations
    assert ours.nfev <= theirs.nfev, (ours.nfev, theirs.nfev)
    assert ours.nfev == len(recorder.points)
    # feasible: every iterate and every point the objective saw
    lo, hi = scipy_bounds.lb, scipy_bounds.ub
    for point in iterates + recorder.points + [ours.x]:
        assert np.all(point >= lo) and np.all(point <= hi)
    # the same active bounds
    np.testing.assert_array_equal(ours.active_mask,
                                  _scipy_active_mask(theirs.x, theirs.jac, scipy_bounds))
    assert ours.active_mask.any()  # every problem here has a bound that binds
    # the stopping test reported
    pg = np.where(ours.x - np.clip(ours.x - fg(ours.x)[1], lo, hi) != 0.0,
                  ours.x - np.clip(ours.x - fg(ours.x)[1], lo, hi), 0.0)
    assert ours.grad_norm == pytest.approx(float(np.max(np.abs(pg))), rel=1e-12, abs=0.0)


def test_bound_constrained_quadratic_reaches_the_active_set_solution():
    A, b, fg = _quadratic()
    lower, upper = -0.25, 0.3
    exact = scipy_optimize.lsq_linear(A, b, bounds=(lower, upper), method="bvls",
                                      tol=1e-15)
    assert exact.success
    res = lbfgsb_minimize(fg, np.zeros(15), (lower, upper),
                          LBFGSConfig(ftol=0.0, gradient_tolerance=1e-9,
                                      max_iterations=1000))
    assert res.success   # ftol=0: on the gradient, or when f stops decreasing at all
    assert res.grad_norm < 1e-7
    np.testing.assert_allclose(res.x, exact.x, atol=1e-9)
    assert res.fun == pytest.approx(exact.cost, rel=1e-12)
    # the bounds that hold are those the active-set method found: its x at a bound and
    # the gradient 0.5 |Ax - b|^2 there pointing out of the box
    grad = A.T @ (A @ exact.x - b)
    expected = np.where((exact.x <= lower) & (grad > 0), -1,
                        np.where((exact.x >= upper) & (grad < 0), 1, 0))
    np.testing.assert_array_equal(res.active_mask, expected)
    assert 0 < np.count_nonzero(res.active_mask) < 15


def test_a_start_outside_the_box_is_projected_onto_it_as_scipy_does():
    bounds = ([-1.0, 0.0], [0.5, 2.0])
    recorder = Recorder(rosenbrock)
    res = lbfgsb_minimize(recorder, np.array([3.0, -4.0]), bounds)
    np.testing.assert_array_equal(recorder.points[0], [0.5, 0.0])  # clipped
    projected = lbfgsb_minimize(rosenbrock, np.array([0.5, 0.0]), bounds)
    np.testing.assert_array_equal(res.x, projected.x)
    assert res.nfev == projected.nfev
    theirs = scipy_optimize.minimize(rosenbrock, np.array([3.0, -4.0]), jac=True,
                                     method="L-BFGS-B", bounds=_scipy_bounds(bounds, 2),
                                     options={"gtol": 1e-6})
    np.testing.assert_allclose(res.x, theirs.x, atol=1e-6)


def test_every_evaluation_is_in_the_box_even_where_the_objective_is_undefined_outside():
    # log barrier-like: nan for x <= 0, and the minimiser of the unconstrained problem
    # far outside the box; the search must never step out
    def fg(x):
        if np.any(x < 0.0):
            return math.nan, np.full_like(x, math.nan)
        f = float(np.sum(np.sqrt(x) * 0.0 + (x + 3.0) ** 2))
        return f, 2.0 * (x + 3.0)

    recorder = Recorder(fg)
    res = lbfgsb_minimize(recorder, np.array([2.0, 5.0, 0.1]), (0.0, 10.0))
    assert res.success
    np.testing.assert_array_equal(res.x, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(res.active_mask, [-1, -1, -1])
    assert all(np.all(p >= 0.0) for p in recorder.points)


def test_non_finite_trial_points_shrink_the_step():
    # finite only for x < 1.5: the first steps overshoot into the nan region
    def fg(x):
        if x[0] >= 1.5:
            return math.nan, np.array([math.nan])
        return float((x[0] - 1.0) ** 2), 2.0 * (x - 1.0)

    res = lbfgsb_minimize(fg, np.array([-10.0]), (-20.0, None))
    assert res.success
    assert res.x[0] == pytest.approx(1.0, abs=1e-6)


def test_fixed_variables_never_move():
    recorder = Recorder(rosenbrock)
    res = lbfgsb_minimize(recorder, np.array([0.3, 0.0, 0.0]),
                          ([0.3, -2.0, -2.0], [0.3, 2.0, 2.0]))
    assert res.success
    assert all(p[0] == 0.3 for p in recorder.points)
    theirs = scipy_optimize.minimize(rosenbrock, np.array([0.3, 0.0, 0.0]), jac=True,
                                     method="L-BFGS-B",
                                     bounds=[(0.3, 0.3), (-2, 2), (-2, 2)],
                                     options={"gtol": 1e-6})
    assert res.fun <= theirs.fun + 1e-12


def test_all_infinite_bounds_give_exactly_the_unbounded_lbfgs():
    x0 = np.array([-1.2, 1.0, -1.2, 1.0])
    unbounded = sa.optim.lbfgs_minimize(rosenbrock, x0)
    infinite = lbfgsb_minimize(rosenbrock, x0, (-np.inf, None))
    np.testing.assert_array_equal(infinite.x, unbounded.x)
    assert infinite.nfev == unbounded.nfev and infinite.iterations == unbounded.iterations
    np.testing.assert_array_equal(infinite.active_mask, np.zeros(4))
    assert unbounded.active_mask is None


def test_a_callback_stops_and_the_result_reports_status_and_history():
    res = lbfgsb_minimize(rosenbrock, np.array([-1.2, 1.0]), (-2.0, 0.5),
                          callback=lambda k, x, f: k >= 3, history=True)
    assert res.status is sa.Status.CALLBACK_STOP and res.iterations == 3
    assert len(res.history) == 4 and res.history[-1] == res.fun
    assert list(res.history) == sorted(res.history, reverse=True)
    assert "active_mask=" in repr(res)


def test_max_iterations_and_max_evaluations():
    res = lbfgsb_minimize(rosenbrock, np.array([-1.2, 1.0]), (-2.0, 0.5),
                          LBFGSConfig(max_iterations=2))
    assert res.status is sa.Status.MAX_ITERATIONS and res.iterations == 2
    res = lbfgsb_minimize(rosenbrock, np.array([-1.2, 1.0]), (-2.0, 2.0),
                          LBFGSConfig(max_evaluations=5))
    assert res.status is sa.Status.MAX_EVALUATIONS and res.nfev >= 5


def test_a_non_finite_start_is_reported():
    res = lbfgsb_minimize(lambda x: (math.nan, x), np.zeros(2), (0.0, 1.0))
    assert res.status is sa.Status.NON_FINITE


# ---------------------------------------------------------------------------- the pieces
def _memory_from_pairs(n, pairs, m=10):
    memory = CompactMemory(m, n)
    for s, y in pairs:
        assert memory.push(s, y, float(s @ y))
    return memory


def _dense_b(memory):
    """B by the BFGS recursion on a dense matrix from theta I (the compact form's B0)."""
    k = memory.col
    B = memory.theta * np.eye(memory.S.shape[1])
    for s, y in zip(memory.S[:k], memory.Y[:k]):
        Bs = B @ s
        B = B - np.outer(Bs, Bs) / (s @ Bs) + np.outer(y, y) / (y @ s)
    return B


def _random_pairs(rng, n, count):
    # pairs of a convex quadratic: y = H s with H positive definite
    Q = rng.normal(size=(n, n))
    H = Q @ Q.T + n * np.eye(n)
    return [(s, H @ s) for s in rng.normal(size=(count, n))]


@pytest.mark.parametrize("count", [1, 3, 10, 14])
def test_the_compact_form_is_the_bfgs_matrix(count):
    rng = np.random.default_rng(count)
    n = 12
    memory = _memory_from_pairs(n, _random_pairs(rng, n, count))
    k = memory.col
    assert k == min(count, 10)
    W = memory.Wt[: 2 * k].T
    compact = memory.theta * np.eye(n) - W @ memory.M @ W.T
    np.testing.assert_allclose(compact, _dense_b(memory), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(memory.M @ memory.N, np.eye(2 * k), atol=1e-10)


def _dense_cauchy(x, g, lower, upper, B):
    """The first local minimiser of g.s + 0.5 s.B s along P(x - t g), segment by segment."""
    t_break = np.where(g < 0, (x - upper) / g, np.where(g > 0, (x - lower) / g, np.inf))
    t_break = np.where(np.isnan(t_break), np.inf, np.maximum(t_break, 0.0))
    kinks = np.unique(np.r_[0.0, t_break[np.isfinite(t_break)], np.inf])
    for t0, t1 in zip(kinks[:-1], kinks[1:]):
        x0 = np.clip(x - t0 * g, lower, upper)
        d = np.where(t_break > t0, -g, 0.0)
        s0 = x0 - x
        slope = g @ d + s0 @ B @ d
        curvature = d @ B @ d
        if slope >= 0:
            return x0
        if curvature > 0 and -slope / curvature < t1 - t0:
            return x0 + (-slope / curvature) * d
    return np.clip(x - kinks[-2] * g, lower, upper)


@pytest.mark.parametrize("seed", range(6))
def test_the_cauchy_point_is_the_first_minimiser_along_the_projected_path(seed):
    rng = np.random.default_rng(seed)
    n = 9
    memory = _memory_from_pairs(n, _random_pairs(rng, n, seed))  # seed 0: B = I
    lower = rng.uniform(-1.0, -0.1, n)
    upper = rng.uniform(0.1, 1.0, n)
    lower[0], upper[1] = -np.inf, np.inf
    x = rng.uniform(lower.clip(-1), upper.clip(max=1))
    x[2] = lower[2]                           # at a bound, the gradient pushing outward
    g = rng.normal(size=n) * 3.0
    g[2] = abs(g[2])
    box = check_bounds((lower, upper), n)
    xc, c, free = cauchy_point(x, g, box, memory)
    expected = _dense_cauchy(x, g, lower, upper, _dense_b(memory))
    np.testing.assert_allclose(xc, expected, rtol=1e-9, atol=1e-12)
    k = memory.col
    np.testing.assert_allclose(c, memory.Wt[: 2 * k] @ (xc - x), atol=1e-10)
    assert not free[2]
    at_bound = (xc == lower) | (xc == upper)
    np.testing.assert_array_equal(free, ~at_bound)


@pytest.mark.parametrize("seed", range(4))
def test_the_subspace_step_solves_the_reduced_newton_system(seed):
    rng = np.random.default_rng(10 + seed)
    n = 10
    memory = _memory_from_pairs(n, _random_pairs(rng, n, 4 + seed))
    B = _dense_b(memory)
    box = check_bounds((-10.0, 10.0), n)   # wide: the Newton point stays inside
    x = rng.normal(size=n)
    g = rng.normal(size=n)
    xc = x.copy()
    xc[:3] = [-10.0, 10.0, -10.0]          # three variables held at the Cauchy point
    free = np.ones(n, dtype=bool)
    free[:3] = False
    c = memory.Wt[: 2 * memory.col] @ (xc - x)
    z = subspace_minimum(x, g, xc, c, free, box, memory)
    # minimise g.(z - x) + 0.5 (z - x).B (z - x) over the free variables, z_A = xc_A
    F = np.flatnonzero(free)
    r = g[F] + B[F] @ (xc - x)
    expected = xc.copy()
    expected[F] -= np.linalg.solve(B[np.ix_(F, F)], r)
    np.testing.assert_allclose(z, expected, rtol=1e-9, atol=1e-9)


def test_the_subspace_step_is_projected_or_cut_back_into_the_box():
    rng = np.random.default_rng(7)
    n = 6
    memory = _memory_from_pairs(n, _random_pairs(rng, n, 3))
    box = check_bounds((-0.1, 0.1), n)
    x = np.zeros(n)
    clipped = 0
    for _ in range(40):
        g = rng.normal(size=n) * 2.0   # steps that cross the bounds now and then
        xc, c, free = cauchy_point(x, g, box, memory)
        if not free.any():
            continue
        z = subspace_minimum(x, g, xc, c, free, box, memory)
        assert np.all(z >= -0.1) and np.all(z <= 0.1)
        assert float((z - x) @ g) <= 0.0   # still a descent direction from x
        clipped += bool(np.any(np.abs(z[free]) == 0.1))
    assert clipped  # the Newton step left the box, and was brought back, several times


def test_a_projected_newton_point_that_climbs_is_cut_back_along_the_step():
    # Morales & Nocedal's change: when the projection of the subspace Newton point is
    # not a descent direction from x, the point is xc + alpha du with the largest
    # alpha <= 1 keeping the free variables in the box. Such cases are rare; search
    # random strongly coupled models for a few.
    cases = 0
    for seed in range(3000):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 5))
        Q = rng.normal(size=(n, n))
        H = Q @ Q.T + 0.01 * np.eye(n)
        memory = CompactMemory(10, n)
        pairs = [(s, H @ s) for s in rng.normal(size=(n, n))]
        if not all(memory.push(s, y, float(s @ y)) for s, y in pairs):
            continue
        lower, upper = -rng.uniform(0.001, 1.0, n), rng.uniform(0.001, 1.0, n)
        x, g = np.zeros(n), rng.normal(size=n)
        box = check_bounds((lower, upper), n)
        xc, c, free = cauchy_point(x, g, box, memory)
        if not free.any():
            continue
        F = np.flatnonzero(free)
        B = _dense_b(memory)
        du = -np.linalg.solve(B[np.ix_(F, F)], g[F] + B[F] @ (xc - x))
        projected = xc.copy()
        projected[F] = np.clip(xc[F] + du, lower[F], upper[F])
        if not (np.any(projected[F] != xc[F] + du) and (projected - x) @ g > 0):
            continue
        reach = np.where(du > 0, (upper[F] - xc[F]) / du, (lower[F] - xc[F]) / du)
        alpha = min(1.0, float(np.min(reach)))
        expected = xc.copy()
        expected[F] += alpha * du
        z = subspace_minimum(x, g, xc, c, free, box, memory)
        np.testing.assert_allclose(z, expected, rtol=1e-9, atol=1e-12)
        j = F[int(np.argmin(reach))]
        assert z[j] in (lower[j], upper[j])          # the limiting variable exactly on it
        assert np.all(z >= lower) and np.all(z <= upper)
        cases += 1
    assert cases >= 3


@pytest.mark.parametrize("name, phi, dphi", [
    ("quadratic", lambda a: (a - 0.5) ** 2, lambda a: 2 * (a - 0.5)),
    ("quartic", lambda a: (a - 3) ** 4 - a, lambda a: 4 * (a - 3) ** 3 - 1),
    ("more-thuente-1", lambda a: -a / (a * a + 2), lambda a: (a * a - 2) / (a * a + 2) ** 2),
    ("sine", lambda a: -math.sin(a) + 0.01 * a * a, lambda a: -math.cos(a) + 0.02 * a),
])
@pytest.mark.parametrize("start, max_step", [(1e-3, 1e10), (0.1, 2.0), (1.0, 1e10),
                                             (10.0, 1e10), (1000.0, 1e10)])
def test_more_thuente_takes_the_steps_of_minpack_dcsrch(name, phi, dphi, start, max_step):
    dcsrch = pytest.importorskip("scipy.optimize._dcsrch")
    calls = []

    def counted(a):
        calls.append(a)
        return phi(a)

    search = dcsrch.DCSRCH(counted, dphi, 1e-3, 0.9, 0.1, 0.0, max_step)
    step, *_ = search(start, phi0=phi(0.0), derphi0=dphi(0.0), maxiter=20)

    def fg(x):
        return phi(x[0]), np.array([dphi(x[0])])

    ours = MoreThuente(1, 1e-3, 0.9, 0.1, 20)(fg, np.zeros(1), phi(0.0),
                                             np.array([dphi(0.0)]), np.ones(1), start,
                                             max_step)
    assert ours.ok and ours.wolfe
    assert ours.step == pytest.approx(step, rel=1e-12)
    assert ours.nfev == len(calls)


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("bounds, error, match", [
    ("ab", TypeError, "`bounds` must be a pair"),
    (3.0, TypeError, "`bounds` must be a pair"),
    ((0.0, 1.0, 2.0), ValueError, "pair .lower, upper.; got 3 items"),
    (([0.0, 1.0, 2.0], 1.0), ValueError, r"bounds\[0\]` \(lower\) must be a number or hold "
                                         r"one bound per param \(2\); got shape \(3,\)"),
    ((0.0, ["a", "b"]), TypeError, r"bounds\[1\]` \(upper\) must hold real numbers"),
    ((True, 1.0), TypeError, "bool"),
    ((math.nan, 1.0), ValueError, r"lower\[0\] is nan"),
    ((math.inf, math.inf), ValueError, r"lower\[0\] is inf"),
    ((-math.inf, -math.inf), ValueError, r"upper\[0\] is -inf"),
    (([0.0, 2.0], 1.0), ValueError, r"lower\[1\] = 2.0 > upper\[1\] = 1.0"),
])
def test_bad_bounds_are_named(bounds, error, match):
    params = [sa.Value(0.5), sa.Value(0.5)]
    with pytest.raises(error, match=match):
        sa.lbfgs(lambda p: p[0] * p[0] + p[1] * p[1], params, bounds=bounds)
    with pytest.raises(error, match=match):
        sa.minimize(params[0] * params[0], params, method="lbfgs", bounds=bounds)
    assert [p.data for p in params] == [0.5, 0.5]


def test_bounds_need_lbfgs():
    w = sa.Value(1.0)
    with pytest.raises(ValueError, match="`bounds` needs method='lbfgs'"):
        sa.minimize(w * w, [w], method="adam", bounds=(0.0, 1.0))


def test_bounds_forms_scalars_none_and_scipy_bounds():
    box = check_bounds((None, [1.0, 2.0]), 2)
    assert box.lower.tolist() == [-math.inf, -math.inf] and box.upper.tolist() == [1.0, 2.0]
    box = check_bounds(scipy_optimize.Bounds([0.0, -1.0], [1.0, np.inf]), 2)
    assert box.lower.tolist() == [0.0, -1.0] and box.upper.tolist() == [1.0, math.inf]
    box = check_bounds((np.float32(0.5), np.array(3)), 3)
    assert box.lower.tolist() == [0.5] * 3 and box.upper.tolist() == [3.0] * 3
    with pytest.raises(ValueError):
        box.lower[0] = 1.0  # read-only
    assert check_bounds(None, 2) is None


# ---------------------------------------------------------------------------- Value API
def _ik_params(value=0.1):
    return [sa.Value(value, label=f"q{i}") for i in range(7)]


@pytest.mark.parametrize("kind", ["function", "value", "compiled", "traced"])
def test_every_objective_kind_solves_the_bounded_ik_like_scipy(kind):
    target = (0.3, 1.2)
    q = _ik_params()
    tx, ty = sa.Value(target[0]), sa.Value(target[1])
    bounds = (IK_LOWER, IK_UPPER)
    iterates = []

    def callback(k, x, f):
        iterates.append(x)

    if kind == "function":
        res = sa.lbfgs(lambda p: planar_ik_loss(p, target, IK_LENGTHS), q, bounds=bounds,
                       callback=callback)
    elif kind == "value":
        res = sa.lbfgs(planar_ik_loss(q, (tx, ty), IK_LENGTHS), q, inputs=[tx, ty],
                       bounds=bounds, callback=callback)
    elif kind == "compiled":
        f = sa.compile(planar_ik_loss(q, (tx, ty), IK_LENGTHS), q, inputs=[tx, ty])
        res = sa.lbfgs(f, q, inputs=list(target), bounds=bounds, callback=callback)
    else:
        res = sa.minimize(lambda p: planar_ik_loss(p, (tx, ty), IK_LENGTHS), q,
                          inputs=[tx, ty], method="lbfgs", bounds=bounds, callback=callback)
    fg = _ik_oracle()(target)
    theirs = scipy_optimize.minimize(fg, np.full(7, 0.1), jac=True, method="L-BFGS-B",
                                     bounds=scipy_optimize.Bounds(IK_LOWER, IK_UPPER),
                                     options={"gtol": 1e-6})
    assert res.success
    assert res.fun <= theirs.fun + 1e-10 * abs(theirs.fun)
    assert [p.data for p in q] == res.x.tolist()
    assert all(np.all(x >= IK_LOWER) and np.all(x <= IK_UPPER) for x in iterates)
    assert np.count_nonzero(res.active_mask) >= 1


def test_lbfgs_takes_scipys_argument_order_and_warns_on_the_old_one():
    def loss(p):
        return (p[0] - 2.0) ** 2

    w = sa.Value(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = sa.lbfgs(loss, [w])
    w.data = 0.0
    with pytest.warns(DeprecationWarning, match=r"write sa.lbfgs\(objective, params\)"):
        old = sa.lbfgs([w], loss)
    np.testing.assert_array_equal(new.x, old.x)
    w.data = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keywords = sa.lbfgs(params=[w], objective=loss)   # by name: either order is fine
    np.testing.assert_array_equal(keywords.x, new.x)


# ---------------------------------------------------------------------------- reuse
def _count_traces(monkeypatch):
    """Count the graphs traced to IR (every compile of a Value graph and every trace
    of a function objective goes through ir.trace.trace)."""
    import sys

    ir_trace = sys.modules["scalar_autograd.ir.trace"]  # the module (ir re-exports trace)
    calls = []
    original = ir_trace.trace

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(ir_trace, "trace", counting)
    import scalar_autograd.runtime.compiled as compiled_module

    monkeypatch.setattr(compiled_module, "trace", counting)
    return calls


def test_a_value_loss_passed_again_is_not_traced_again(monkeypatch):
    q = _ik_params()
    tx, ty = sa.Value(2.0), sa.Value(1.5)
    loss = planar_ik_loss(q, (tx, ty), IK_LENGTHS)
    traces = _count_traces(monkeypatch)
    for target in [(2.0, 1.5), (1.0, 2.0), (-1.0, 2.5)]:
        tx.data, ty.data = target
        res = sa.minimize(loss, q, inputs=[tx, ty], method="lbfgs", ftol=0.0)
        x, y = planar_arm_end(q, IK_LENGTHS)
        assert res.success and math.hypot(x.data - target[0], y.data - target[1]) < 1e-6
        sa.lbfgs(loss, q, inputs=[tx, ty])    # sa.lbfgs shares the cache
    assert len(traces) == 1


def test_a_changed_constant_leaf_compiles_the_graph_again(monkeypatch):
    w = sa.Value(0.0)
    c = sa.Value(3.0)                          # not an input: a constant
    loss = (w - c) ** 2
    traces = _count_traces(monkeypatch)
    assert sa.minimize(loss, [w], method="lbfgs").x[0] == pytest.approx(3.0)
    assert sa.minimize(loss, [w], method="lbfgs").x[0] == pytest.approx(3.0)
    assert len(traces) == 1
    c.data = -1.0
    assert sa.minimize(loss, [w], method="lbfgs").x[0] == pytest.approx(-1.0)
    assert len(traces) == 2


def test_a_function_objective_with_inputs_compiles_once(monkeypatch):
    from scalar_autograd.runtime.cache import KERNELS

    q = _ik_params()
    tx, ty = sa.Value(0.0), sa.Value(0.0)

    def ik(p):
        return planar_ik_loss(p, (tx, ty), IK_LENGTHS)

    tx.data, ty.data = 2.0, 1.5
    sa.minimize(ik, q, inputs=[tx, ty], method="lbfgs")  # compiles (or finds) the kernel
    misses = KERNELS.misses
    for target in [(1.0, 2.0), (-1.0, 2.5), (0.5, -3.0)]:
        tx.data, ty.data = target
        res = sa.minimize(ik, q, inputs=[tx, ty], method="lbfgs", ftol=0.0)
        x, y = planar_arm_end(q, IK_LENGTHS)
        assert res.success and math.hypot(x.data - target[0], y.data - target[1]) < 1e-6
    assert KERNELS.misses == misses                     # no new program


def test_a_function_objective_always_sees_the_current_data():
    # read by closure as plain numbers (not inputs): each solve must see the new value
    target = [3.0]

    def loss(p):
        return (p[0] - target[0]) ** 2

    w = sa.Value(0.0)
    for value in (3.0, -2.0, 7.5):
        target[0] = value
        assert sa.minimize(loss, [w], method="lbfgs").x[0] == pytest.approx(value)


def test_a_function_objective_branching_on_an_input_is_guarded():
    w = sa.Value(0.0)
    flip = sa.Value(1.0)

    def loss(p):
        if flip > 0.0:                   # a branch on an input: a guard
            return (p[0] - 1.0) ** 2
        return (p[0] + 1.0) ** 2

    assert sa.minimize(loss, [w], inputs=[flip], method="lbfgs").x[0] == pytest.approx(1.0)
    flip.data = -1.0
    assert sa.minimize(loss, [w], inputs=[flip], method="lbfgs").x[0] == pytest.approx(-1.0)


def test_function_inputs_are_validated():
    w = sa.Value(0.0)
    with pytest.raises(ValueError, match=r"inputs\[0\] is also a param"):
        sa.minimize(lambda p: p[0] * p[0], [w], inputs=[w])
    with pytest.raises(ValueError, match="leaf Values"):
        sa.minimize(lambda p: p[0] * p[0], [w], inputs=[w * 2.0])


def test_the_graph_cache_lets_go_of_a_freed_graph():
    import gc

    from scalar_autograd.optim.oracles import _GRAPHS

    w = sa.Value(1.0)
    loss = (w - 2.0) ** 2
    sa.minimize(loss, [w], method="lbfgs")
    key = next(k for k, e in _GRAPHS.items() if e.root() is loss)
    del loss
    gc.collect()
    assert key not in _GRAPHS
