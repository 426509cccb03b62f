"""Levenberg-Marquardt: examples, covariance, robust losses, Jacobian paths, blocks, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scalar_autograd as sa
from lsq_bundle import make_bundle
from scalar_autograd.lsq import CovarianceWarning, IterationInfo, Status
from scalar_autograd.lsq.compiled_oracle import CompiledOracle
from scalar_autograd.lsq.graph_oracle import GraphOracle

scipy_optimize = pytest.importorskip("scipy.optimize")

PATHS = ["graph", "compiled"]


def circle_points(n: int, seed: int = 0, noise: float = 0.05):
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    cx, cy, r = 1.5, -0.5, 3.0
    xs = cx + r * np.cos(angle) + rng.normal(scale=noise, size=n)
    ys = cy + r * np.sin(angle) + rng.normal(scale=noise, size=n)
    return xs, ys


# ---------------------------------------------------------------- examples
@pytest.mark.parametrize("path", PATHS)
def test_circle_fit_seed_example(path: str) -> None:
    xs, ys = circle_points(200)
    cx, cy, r = sa.Value(0.0, label="cx"), sa.Value(0.0, label="cy"), sa.Value(1.0, label="r")

    def residuals(p):
        cx, cy, r = p
        return [sa.sqrt((x - cx) ** 2 + (y - cy) ** 2) - r for x, y in zip(xs, ys)]

    res = sa.nonlinear_least_squares([cx, cy, r], residuals, jacobian=path)
    assert res.success, res.message
    # same optimum as scipy with an analytic Jacobian
    ref = scipy_optimize.least_squares(
        lambda p: np.hypot(xs - p[0], ys - p[1]) - p[2], [0.0, 0.0, 1.0],
        xtol=1e-14, ftol=1e-14, gtol=1e-14)
    np.testing.assert_allclose([cx.data, cy.data, r.data], ref.x, rtol=1e-8)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-8)
    assert res.cost == pytest.approx(ref.cost, rel=1e-10)
    assert res.njev <= res.nfev and res.iterations >= 1 and res.time >= 0


@pytest.mark.parametrize("path", PATHS)
def test_sketch_constraints_converge(path: str) -> None:
    """A 2-D sketch: a quadrilateral with fixed, length, parallel, perpendicular and
    equal-length constraints; the solver must satisfy them all (cost -> 0)."""
    coords = [0.1, -0.2, 3.3, 0.4, 3.1, 2.2, -0.3, 1.7]
    p = [sa.Value(c, label=f"q{i}") for i, c in enumerate(coords)]

    def constraints(v):
        ax, ay, bx, by, cx, cy, dx, dy = v
        ab = (bx - ax, by - ay)
        bc = (cx - bx, cy - by)
        dc = (cx - dx, cy - dy)
        ad = (dx - ax, dy - ay)
        return [
            ax - 0.0, ay - 0.0,                                   # A fixed at the origin
            sa.sqrt(ab[0] ** 2 + ab[1] ** 2) - 3.0,               # |AB| = 3
            ab[1],                                                # AB horizontal
            ab[0] * bc[0] + ab[1] * bc[1],                        # AB perpendicular to BC
            ab[0] * dc[1] - ab[1] * dc[0],                        # AB parallel to DC
            (bc[0] ** 2 + bc[1] ** 2) - (ad[0] ** 2 + ad[1] ** 2),  # |BC| = |AD|
            sa.sqrt(bc[0] ** 2 + bc[1] ** 2) - 2.0,               # |BC| = 2
        ]

    res = sa.nonlinear_least_squares(p, constraints, jacobian=path)
    assert res.success, res.message
    assert res.cost < 1e-20
    ax, ay, bx, by, cx, cy, dx, dy = (v.data for v in p)
    assert math.hypot(bx - ax, by - ay) == pytest.approx(3.0, abs=1e-9)
    assert math.hypot(cx - bx, cy - by) == pytest.approx(2.0, abs=1e-9)
    assert math.hypot(dx - ax, dy - ay) == pytest.approx(2.0, abs=1e-9)


# ---------------------------------------------------------------- covariance
def test_covariance_matches_curve_fit() -> None:
    rng = np.random.default_rng(3)
    t = np.linspace(0, 4, 40)
    y = 2.5 * np.exp(-1.3 * t) + 0.5 + rng.normal(scale=0.05, size=t.size)
    a, k, c = sa.Value(1.0), sa.Value(1.0), sa.Value(0.0)
    res = sa.nonlinear_least_squares(
        [a, k, c], lambda p: [p[0] * sa.exp(-p[1] * ti) + p[2] - yi for ti, yi in zip(t, y)])
    popt, pcov = scipy_optimize.curve_fit(
        lambda t, a, k, c: a * np.exp(-k * t) + c, t, y, p0=[1.0, 1.0, 0.0])
    np.testing.assert_allclose(res.x, popt, rtol=1e-6)
    np.testing.assert_allclose(res.covariance(), pcov, rtol=1e-5)
    np.testing.assert_allclose(res.standard_errors(), np.sqrt(np.diag(pcov)), rtol=1e-5)
    _, pcov_abs = scipy_optimize.curve_fit(
        lambda t, a, k, c: a * np.exp(-k * t) + c, t, y, p0=[1.0, 1.0, 0.0],
        absolute_sigma=True)
    np.testing.assert_allclose(res.covariance(absolute_sigma=True), pcov_abs, rtol=1e-5)


def test_covariance_rank_deficient_and_underdetermined() -> None:
    a, b = sa.Value(1.0), sa.Value(1.0)
    # a and b enter only through a + b: rank 1, neither is determined by the data
    # (tests/test_lsq_fixes.py checks the determined/undetermined split in detail)
    res = sa.nonlinear_least_squares([a, b], lambda p: [p[0] + p[1] - 3.0, p[0] + p[1] - 1.0,
                                                        p[0] + p[1] - 2.0])
    with pytest.warns(CovarianceWarning, match="could not be estimated"):
        cov = res.covariance()
    assert np.isposinf(cov).all()
    # as many residuals as parameters: no variance estimate (curve_fit gives inf)
    res = sa.nonlinear_least_squares([a], lambda p: [p[0] - 1.0])
    with pytest.warns(CovarianceWarning, match="more residuals than parameters"):
        assert np.isinf(res.covariance()).all()


# ---------------------------------------------------------------- robust losses
@pytest.mark.parametrize("loss", ["huber", "soft_l1", "cauchy", "arctan"])
@pytest.mark.parametrize("path", PATHS)
def test_robust_losses_match_scipy(loss: str, path: str) -> None:
    rng = np.random.default_rng(7)
    t = np.linspace(0, 3, 60)
    y = 1.0 + 2.0 * np.sin(1.3 * t) + rng.normal(scale=0.05, size=t.size)
    y[::7] += rng.normal(scale=3.0, size=y[::7].size)      # outliers
    p = [sa.Value(0.5), sa.Value(1.5), sa.Value(1.0)]
    res = sa.nonlinear_least_squares(
        p, lambda q: [q[0] + q[1] * sa.sin(q[2] * ti) - yi for ti, yi in zip(t, y)],
        loss=loss, loss_scale=0.2, jacobian=path, max_iterations=500)
    ref = scipy_optimize.least_squares(
        lambda q: q[0] + q[1] * np.sin(q[2] * t) - y, [0.5, 1.5, 1.0], loss=loss,
        f_scale=0.2, xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=5000)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6, atol=1e-9)
    assert res.cost == pytest.approx(ref.cost, rel=1e-9)
    # the fit ignores the outliers better than the linear loss
    lin = scipy_optimize.least_squares(lambda q: q[0] + q[1] * np.sin(q[2] * t) - y,
                                       [0.5, 1.5, 1.0])
    assert abs(res.x[1] - 2.0) < abs(lin.x[1] - 2.0)


# ---------------------------------------------------------------- Jacobian paths
def _random_problem(rng: np.random.Generator, n: int, m: int):
    unary = [sa.sin, sa.cos, sa.tanh, sa.exp, lambda v: sa.log(1.0 + v * v), sa.atan]

    def build(p):
        out = []
        for i in range(m):
            local = np.random.default_rng(1000 + i)     # same structure every call
            a, b = local.integers(0, n, size=2)
            f1, f2 = (unary[j] for j in local.integers(0, len(unary), size=2))
            c = float(local.normal())
            out.append(f1(p[a] * c + p[b]) * f2(p[b] - c) + p[a] * p[a] * 0.1 - c)
        return out

    return build


@pytest.mark.parametrize("seed", range(5))
def test_graph_and_compiled_jacobians_agree(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 6, 25
    build = _random_problem(rng, n, m)
    params = [sa.Value(float(v), requires_grad=True) for v in rng.normal(size=n)]
    graph = GraphOracle(params, build)
    compiled = CompiledOracle(params, build, "dense")   # traced at the current point
    for _ in range(3):                                  # ... and checked elsewhere
        x = rng.normal(size=n)
        rg, Jg = graph.residuals_and_jacobian(x)
        rc, Jc = compiled.residuals_and_jacobian(x)
        np.testing.assert_allclose(rc, rg, rtol=1e-12, atol=1e-300)
        scale = np.maximum(np.abs(Jg), 1e-300)
        assert np.max(np.abs(Jc - Jg) / np.maximum(scale, np.max(np.abs(Jg)) * 1e-12)) < 1e-12
        np.testing.assert_allclose(compiled.residuals(x), rg, rtol=1e-12)


# ---------------------------------------------------------------- residual blocks
@pytest.mark.parametrize("path", PATHS)
def test_block_exponential_fit(path: str) -> None:
    t = np.linspace(0.0, 1.0, 30)
    y = 3.0 * np.exp(-2.0 * t)
    problem = sa.LeastSquaresProblem([1.0, 1.0])
    problem.add_block(lambda p, d: p[0] * sa.exp(-p[1] * d[0]) - d[1],
                      param_index=np.tile([0, 1], (30, 1)), data=[t, y])
    res = problem.solve(jacobian=path)
    assert res.success
    np.testing.assert_allclose(res.x, [3.0, 2.0], rtol=1e-9)
    np.testing.assert_allclose(problem.x, res.x)


def test_block_graph_compiled_dense_sparse_agree() -> None:
    bundle = make_bundle(4, 30, 150, seed=2)
    problem = bundle.problem()
    rng = np.random.default_rng(0)
    x = bundle.x0 + rng.normal(scale=1e-3, size=bundle.x0.size)
    r_g, J_g = problem.assembler("graph", sparse=False).residuals_and_jacobian(x)
    r_c, J_c = problem.assembler("compiled", sparse=False).residuals_and_jacobian(x)
    r_s, J_s = problem.assembler("compiled", sparse=True).residuals_and_jacobian(x)
    np.testing.assert_allclose(r_c, r_g, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(r_c, bundle.numpy_residuals(x), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(J_c, J_g, rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(J_s.toarray(), J_c, rtol=0, atol=0)


@pytest.mark.parametrize("linear_solver", ["dense", "sparse_cholesky", "sparse_lsmr"])
def test_small_bundle_adjustment_solvers_agree(linear_solver: str) -> None:
    bundle = make_bundle(4, 40, 200, seed=5)
    ref = scipy_optimize.least_squares(bundle.numpy_residuals, bundle.x0,
                                       jac_sparsity=bundle.sparsity(), method="trf",
                                       x_scale="jac")
    res = bundle.problem().solve(linear_solver=linear_solver, max_iterations=200)
    assert res.success, res.message
    assert res.cost <= ref.cost * (1 + 1e-6)
    assert res.cost == pytest.approx(ref.cost, rel=1e-3)
    assert (hasattr(res.jacobian, "tocsr")) == (linear_solver != "dense")


@pytest.fixture(params=["native", "numpy"])
def schur_path(request, monkeypatch) -> str:
    """Run a Schur test with the native kernels and with the numpy fallback."""
    from scalar_autograd.lsq import schur_native

    if request.param == "numpy":
        monkeypatch.setattr(schur_native, "kernels_for", lambda k, s: None)
    return str(request.param)


def _check_schur_against_sparse_lu(schur, J, r: np.ndarray) -> None:
    """The elimination's diagonal and damped steps against scipy's sparse LU of the
    whole damped normal matrix (the generic path), at three dampings."""
    from scalar_autograd.lsq.linalg import solve_sparse

    g = np.asarray(J.T @ r)
    D = np.asarray(J.multiply(J).sum(axis=0)).ravel()
    np.testing.assert_allclose(schur.diagonal(J), D, rtol=1e-13)
    A = (J.T @ J).tocsr()
    for mu in (1e-6, 1e-2, 10.0):
        h = schur.solve(J, g, D, mu)
        ref = solve_sparse(A, g, D, mu, J, r, "sparse_cholesky")
        np.testing.assert_allclose(h, ref, rtol=1e-7, atol=1e-9 * np.max(np.abs(ref)))


def test_schur_elimination_matches_the_generic_sparse_step(schur_path: str) -> None:
    from scalar_autograd.lsq.schur import SchurComplement

    bundle = make_bundle(5, 120, 600, seed=3)
    r, J = bundle.problem().assembler(sparse=True).residuals_and_jacobian(bundle.x0)
    schur = SchurComplement.detect(J.indptr, J.indices, J.shape[1])
    assert schur is not None
    assert schur.size == 3 and schur.eliminated.size == 3 * 120
    assert (schur._kernels is not None) == (schur_path == "native")
    _check_schur_against_sparse_lu(schur, J, r)


def _irregular_block_jacobian(seed: int):
    """A CSR Jacobian with point blocks (3 columns) seen from one or two cameras (4
    columns each), the same camera-point pair observed twice, camera priors (rows with
    no point) and point priors (rows with no camera)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n_cams, n_pts = 6, 50
    n = 4 * n_cams + 3 * n_pts
    rows: list[list[int]] = []
    for p in range(n_pts):
        pt = [4 * n_cams + 3 * p + i for i in range(3)]
        for _ in range(int(rng.integers(2, 5))):
            cams = rng.choice(n_cams, size=int(rng.integers(1, 3)), replace=False)
            cols = sorted(pt + [4 * c + i for c in cams for i in range(4)])
            rows += [cols, cols]
        rows.append(pt)                               # point prior
    rows.append(rows[0])                              # a repeated observation row
    rows += [[4 * c + i for i in range(4)] for c in range(n_cams)]    # camera priors
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.concatenate(rows)
    return sp.csr_matrix((rng.normal(size=indices.size), indices, indptr),
                         shape=(len(rows), n))


@pytest.mark.parametrize("force_sparse_u", [False, True])
def test_schur_elimination_with_irregular_rows(monkeypatch, force_sparse_u: bool,
                                               schur_path: str) -> None:
    from scalar_autograd.lsq import schur as schur_module

    if force_sparse_u:
        monkeypatch.setattr(schur_module, "MAX_U_TUPLES", 0)
    J = _irregular_block_jacobian(11)
    r = np.random.default_rng(2).normal(size=J.shape[0])
    schur = schur_module.SchurComplement.detect(J.indptr, J.indices, J.shape[1])
    assert schur is not None and schur.size == 3
    _check_schur_against_sparse_lu(schur, J, r)


def test_dense_z_limit_binds_only_the_numpy_path(monkeypatch, schur_path: str) -> None:
    from scalar_autograd.lsq import schur as schur_module

    monkeypatch.setattr(schur_module, "MAX_DENSE_Z", 0)
    bundle = make_bundle(3, 20, 80, seed=1)
    _, J = bundle.problem().assembler(sparse=True).residuals_and_jacobian(bundle.x0)
    schur = schur_module.SchurComplement.detect(J.indptr, J.indices, J.shape[1])
    assert (schur is not None) == (schur_path == "native")


def test_native_schur_kernels_only_for_blocks_small_enough_to_unroll() -> None:
    from scalar_autograd.lsq.schur_native import MAX_UNROLLED, kernels_for

    k = int(MAX_UNROLLED ** 0.5)
    assert kernels_for(k + 1, 3) is None and kernels_for(0, 3) is None
    assert kernels_for(2, 3) is not None


def test_row_runs_collapse_exactly_the_repeated_rows() -> None:
    from scalar_autograd.lsq.schur import _RowRuns

    rng = np.random.default_rng(4)
    rows: list[list[int]] = []
    for _ in range(60):
        kind = rng.integers(0, 4)
        if kind == 0 and rows:
            rows.append(list(rows[-1]))                           # a repeat
        elif kind == 1 and rows:                                  # same length, differs
            rows.append(sorted(rng.choice(20, size=len(rows[-1]), replace=False).tolist()))
        elif kind == 2:
            rows.append([])                                       # empty rows never merge
        else:
            rows.append(sorted(rng.choice(20, size=int(rng.integers(1, 5)),
                                          replace=False).tolist()))
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.array([c for r in rows for c in r], dtype=np.int32)
    _check_runs(rows, _RowRuns.of(indptr, indices))
    # rows all of one length (the reshaped fast path)
    rows = [sorted(rng.choice(9, size=3, replace=False).tolist()) for _ in range(40)]
    rows = [r for r in rows for _ in range(int(rng.integers(1, 4)))]
    indptr = np.arange(0, 3 * len(rows) + 1, 3)
    _check_runs(rows, _RowRuns.of(indptr, np.array([c for r in rows for c in r])))


def _check_runs(rows: list[list[int]], runs) -> None:
    expanded = []
    for i, (first, count) in enumerate(zip(runs.first, runs.count)):
        kept = runs.indices[runs.indptr[i]:runs.indptr[i + 1]].tolist()
        assert kept == rows[first]
        expanded += [kept] * int(count)
    assert expanded == rows
    # maximal runs: no kept row repeats the previous row of the full pattern
    assert all(not rows[f] or f == 0 or rows[f] != rows[f - 1] for f in runs.first)


def test_schur_not_used_without_block_structure() -> None:
    import scipy.sparse as sp

    from scalar_autograd.lsq.schur import SchurComplement

    J = sp.random(300, 250, density=0.05, format="csr", random_state=1)
    assert SchurComplement.detect(J.indptr, J.indices, J.shape[1]) is None


@pytest.mark.parametrize("loss", ["linear", "huber"])
def test_bundle_auto_schur_and_generic_paths_agree(schur_path: str, loss: str) -> None:
    bundle = make_bundle(4, 300, 1500, seed=7)
    if loss != "linear":
        bundle.observed[::50] += 40.0                  # outliers for the robust loss
    options = {"max_iterations": 200, "loss": loss, "loss_scale": 2.0}
    res_auto = bundle.problem().solve(**options)
    res_generic = bundle.problem().solve(linear_solver="sparse_cholesky", **options)
    assert res_auto.success and res_generic.success
    assert res_auto.cost == pytest.approx(res_generic.cost, rel=1e-9)


def test_duplicate_columns_in_a_row_are_summed() -> None:
    # the same parameter in two slots of one row: d/dx (x * x) = 2x
    problem = sa.LeastSquaresProblem([3.0])
    problem.add_block(lambda p, d: p[0] * p[1] - d[0], param_index=[[0, 0], [0, 0]],
                      data=[np.array([4.0, 4.0])])
    for sparse in (False, True):
        _, J = problem.assembler(sparse=sparse).residuals_and_jacobian(np.array([3.0]))
        J = J.toarray() if sparse else J
        np.testing.assert_allclose(J, [[6.0], [6.0]])
    assert problem.solve().x[0] == pytest.approx(2.0)


# ---------------------------------------------------------------- robustness
def test_nan_trial_steps_are_rejected_and_params_stay_finite() -> None:
    # sqrt(p) is nan for p < 0; from p = 4 the Gauss-Newton step lands at p = -3.6
    seen: list[IterationInfo] = []
    p = sa.Value(4.0)
    res = sa.nonlinear_least_squares(
        [p], lambda q: [sa.sqrt(q[0]) - 0.1, 1e-3 * q[0]], initial_damping=1e-9,
        callback=seen.append)
    assert not seen[0].accepted and seen[0].x[0] == 4.0
    assert seen[1].damping > seen[0].damping
    assert all(math.isfinite(info.x[0]) and info.x[0] > 0 for info in seen)
    assert res.success and math.isfinite(p.data)
    assert p.data == pytest.approx(0.01, rel=1e-3)


def test_gives_up_with_best_point_and_status() -> None:
    p = [sa.Value(-1.2), sa.Value(1.0)]       # Rosenbrock
    costs = []
    res = sa.nonlinear_least_squares(
        p, lambda q: [10.0 * (q[1] - q[0] * q[0]), 1.0 - q[0]], max_iterations=3,
        callback=lambda info: costs.append(info.cost))
    assert res.status is Status.MAX_ITERATIONS and not res.success
    assert res.message == Status.MAX_ITERATIONS.value
    assert [v.data for v in p] == res.x.tolist()
    assert res.cost == min(costs) and res.cost < 12.1


def test_nonfinite_start_and_jacobian() -> None:
    p = sa.Value(-1.0)
    res = sa.nonlinear_least_squares([p], lambda q: [sa.sqrt(q[0])])
    assert res.status is Status.NONFINITE_INITIAL and p.data == -1.0


def test_zero_residual_and_callback_stop() -> None:
    p = sa.Value(2.0)
    res = sa.nonlinear_least_squares([p], lambda q: [q[0] - 2.0])
    assert res.status is Status.ZERO_RESIDUAL and res.success
    res = sa.nonlinear_least_squares([p], lambda q: [q[0] * q[0] - 9.0],
                                     callback=lambda info: True)
    assert res.status is Status.CALLBACK_STOP and res.iterations == 1


def test_constant_residuals_are_allowed_and_reported(capsys: pytest.CaptureFixture) -> None:
    p = sa.Value(0.0)
    res = sa.nonlinear_least_squares([p], lambda q: [q[0] - 1.0, sa.Value(2.0) * 1.0],
                                     verbose=True, jacobian="graph")
    assert res.success and p.data == pytest.approx(1.0)
    assert res.cost == pytest.approx(2.0)
    out = capsys.readouterr().out
    assert "depend on no parameter" in out and "(1)" in out
    assert "stopped after" in out


def test_params_keep_their_requires_grad() -> None:
    p = sa.Value(0.0)
    sa.nonlinear_least_squares([p], lambda q: [q[0] - 1.0])
    assert p.requires_grad is False


# ---------------------------------------------------------------- bad input
def test_empty_and_non_value_residuals() -> None:
    p = sa.Value(1.0)
    with pytest.raises(ValueError, match="no residuals"):
        sa.nonlinear_least_squares([p], lambda q: [])
    with pytest.raises(TypeError, match="residual 1 is float"):
        sa.nonlinear_least_squares([p], lambda q: [q[0] * 2, 3.0])
    with pytest.raises(ValueError, match="at least one Value"):
        sa.nonlinear_least_squares([], lambda q: [])
    with pytest.raises(TypeError, match="params"):
        sa.nonlinear_least_squares([1.0], lambda q: [])
    with pytest.raises(ValueError, match="appears twice"):
        sa.nonlinear_least_squares([p, p], lambda q: [q[0]])
    with pytest.raises(ValueError, match="leaf"):
        sa.nonlinear_least_squares([p * 2], lambda q: [q[0]])
    assert p.data == 1.0


@pytest.mark.parametrize(("option", "value", "rule"), [
    ("max_iterations", 0, "positive integer"),
    ("cost_tolerance", -1.0, ">= 0"),
    ("param_tolerance", math.nan, ">= 0"),
    ("initial_damping", 0.0, "> 0"),
    ("loss", "l2", "one of"),
    ("loss_scale", -2.0, "> 0"),
    ("jacobian", "numeric", "one of"),
    ("linear_solver", "qr", "one of"),
])
def test_bad_option_values_are_named(option: str, value: object, rule: str) -> None:
    p = sa.Value(1.0)
    with pytest.raises(ValueError) as info:
        sa.nonlinear_least_squares([p], lambda q: [q[0]], **{option: value})
    text = str(info.value)
    assert f"`{option}`" in text and rule in text and repr(value) in text


def test_bad_option_types() -> None:
    p = sa.Value(1.0)
    # the wrong kind of thing is a TypeError, as in optim/validation.py (these two
    # were asserted as ValueError before the two validators were made consistent)
    with pytest.raises(TypeError, match="`max_iterations` must be a positive integer"):
        sa.nonlinear_least_squares([p], lambda q: [q[0]], max_iterations=2.5)
    with pytest.raises(TypeError, match="`gradient_tolerance` must be .*>= 0; got str"):
        sa.nonlinear_least_squares([p], lambda q: [q[0]], gradient_tolerance="1e-8")
    with pytest.raises(TypeError, match="callback"):
        sa.nonlinear_least_squares([p], lambda q: [q[0]], callback=3)
    with pytest.raises(TypeError, match="verbose"):
        sa.nonlinear_least_squares([p], lambda q: [q[0]], verbose="yes")


def test_block_bad_input() -> None:
    def fn(p, d):
        return p[0] - d[0]

    with pytest.raises(ValueError, match=r"data\[0\] has 2 rows but param_index has 3"):
        sa.ResidualBlock(fn, param_index=[0, 1, 2], data=[np.zeros(2)])
    with pytest.raises(ValueError, match="must be >= 0; row 1"):
        sa.ResidualBlock(fn, param_index=[0, -1], data=[np.zeros(2)])
    with pytest.raises(TypeError, match="integer array"):
        sa.ResidualBlock(fn, param_index=[0.5, 1.0], data=[np.zeros(2)])
    with pytest.raises(TypeError, match="sequence of 1-D arrays"):
        sa.ResidualBlock(fn, param_index=[0, 1], data=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="no rows"):
        sa.ResidualBlock(fn, param_index=np.zeros((0, 1), dtype=int))
    block = sa.ResidualBlock(fn, param_index=[0, 5], data=[np.zeros(2)])
    with pytest.raises(ValueError, match=r"must be < n_params \(3\); row 1 is \[5\]"):
        sa.LeastSquaresProblem([0.0, 0.0, 0.0], [block])
    with pytest.raises(ValueError, match="no residual blocks"):
        sa.LeastSquaresProblem([0.0]).solve()
    bad = sa.LeastSquaresProblem([0.0])
    bad.add_block(lambda p, d: 3.0, param_index=[0])
    with pytest.raises(TypeError, match="must return a Value"):
        bad.solve()
    with pytest.raises(ValueError, match="x0 must be finite"):
        sa.LeastSquaresProblem([0.0, math.inf])


@pytest.mark.parametrize("loss", ["linear", "soft_l1", "huber"])
def test_sparse_and_dense_paths_agree_with_robust_loss(loss: str) -> None:
    # a smoothing chain: 200 parameters, each residual touches two of them; linear
    # residuals and a convex loss, so one minimum for every solver to reach
    rng = np.random.default_rng(11)
    n = 200
    target = np.cumsum(rng.normal(size=n))
    target[::37] += 8.0                                   # outliers
    idx = np.arange(n)
    # LSMR's inexact steps crawl on Huber's zero-curvature outlier rows: left out there
    solvers = ["dense", "sparse_cholesky"] + (["sparse_lsmr"] if loss != "huber" else [])
    results = []
    for solver in solvers:
        problem = sa.LeastSquaresProblem(np.zeros(n))
        problem.add_block(lambda p, d: p[0] - d[0], param_index=idx, data=[target])
        problem.add_block(lambda p, d: 3.0 * (p[1] - p[0]),
                          param_index=np.stack([idx[:-1], idx[1:]], axis=1))
        res = problem.solve(linear_solver=solver, loss=loss, loss_scale=0.5,
                            max_iterations=500, cost_tolerance=1e-15, param_tolerance=1e-15,
                            gradient_tolerance=1e-12)
        assert res.success, (solver, res.message)
        assert hasattr(res.jacobian, "tocsr") == (solver != "dense")
        results.append(res)
    for res in results[1:]:
        np.testing.assert_allclose(res.x, results[0].x, rtol=1e-6, atol=1e-7)
        assert res.cost == pytest.approx(results[0].cost, rel=1e-9)


def test_compiled_residual_fn_takes_the_sparse_path_for_many_params() -> None:
    n = 300
    rng = np.random.default_rng(4)
    target = rng.normal(size=n)
    params = [sa.Value(0.0) for _ in range(n)]

    def residuals(p):
        return [pi - t for pi, t in zip(p, target)] + [
            2.0 * (p[i + 1] - p[i]) for i in range(n - 1)]

    res = sa.nonlinear_least_squares(params, residuals, jacobian="compiled")
    assert res.success and hasattr(res.jacobian, "tocsr")
    ref = sa.nonlinear_least_squares([sa.Value(0.0) for _ in range(n)], residuals,
                                     jacobian="graph")
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([p.data for p in params], res.x)
    cov = res.covariance()
    assert cov.shape == (n, n) and np.all(np.isfinite(np.diag(cov)))
