"""Guarded tracing in the solvers: Python branches in ``residual_fn``, residual blocks and
``minimize`` objectives are followed (or refused), never silently frozen.

Every expected number comes from an independent oracle: scipy.optimize.least_squares
on the same residuals written in numpy, numpy's own cost and Jacobian, or the analytic
minimum.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import least_squares

import scalar_autograd as sa
from scalar_autograd.lsq import compiled_oracle
from scalar_autograd.lsq.compiled_oracle import CompiledOracle

_SOURCE = Path(__file__).read_text().splitlines()


def _site(marker: str) -> str:
    """``test_guarded_solvers.py:LINE`` of the line carrying ``marker``."""
    lines = [i for i, text in enumerate(_SOURCE, 1)
             if text.rstrip().endswith(f"# {marker}")]
    assert len(lines) == 1, marker
    return f"{Path(__file__).name}:{lines[0]}"


def _values(x0: list[float]) -> list[sa.Value]:
    return [sa.Value(v, requires_grad=True) for v in x0]


# --------------------------------------------------------------------------- the hinge

# y = 6 max(t - 2, 0) plus a small deterministic wiggle, so the optimum has a cost > 0;
# no t equals 2 (no residual sits on its kink at the optimum)
T = np.linspace(0.1, 5.1, 21)
Y = 6.0 * np.maximum(T - 2.0, 0.0) + 0.05 * np.sin(7.0 * T)


def hinge_residuals(p: list[sa.Value]) -> list[sa.Value]:
    c, a = p
    return [a * max(t - c, 0.0) - y for t, y in zip(T, Y)]  # HINGE-MAX


def hinge_numpy(x: np.ndarray) -> np.ndarray:
    c, a = x
    return a * np.maximum(T - c, 0.0) - Y


def _scipy(fun, x0):
    return least_squares(fun, np.asarray(x0, dtype=float), method="lm", xtol=1e-15,
                         ftol=1e-15, gtol=1e-15)


@pytest.mark.parametrize("x0", [[1.0, 1.0], [0.5, 3.0], [3.0, 2.0]])
def test_hinge_compiled_reaches_the_minimum_and_reports_the_true_cost(x0):
    reference = _scipy(hinge_numpy, x0)
    params = _values(x0)
    res = sa.nonlinear_least_squares(params, hinge_residuals, jacobian="compiled")
    assert res.success
    np.testing.assert_allclose(res.x, [2.0, 6.0], atol=2e-2)
    np.testing.assert_allclose(res.x, reference.x, rtol=1e-7, atol=1e-9)
    # the reported cost and residuals are numpy's at the reported point
    true_r = hinge_numpy(res.x)
    np.testing.assert_allclose(res.residuals, true_r, rtol=1e-12, atol=1e-14)
    assert res.cost == pytest.approx(0.5 * float(true_r @ true_r), rel=1e-12)
    assert res.cost == pytest.approx(reference.cost, rel=1e-7)
    assert [p.data for p in params] == res.x.tolist()


@pytest.mark.parametrize("x0", [[1.0, 1.0], [0.5, 3.0]])
def test_hinge_compiled_and_graph_agree(x0):
    compiled = sa.nonlinear_least_squares(_values(x0), hinge_residuals, jacobian="compiled")
    graph = sa.nonlinear_least_squares(_values(x0), hinge_residuals, jacobian="graph")
    np.testing.assert_allclose(compiled.x, graph.x, rtol=1e-8, atol=1e-10)
    assert compiled.cost == pytest.approx(graph.cost, rel=1e-8)
    np.testing.assert_allclose(compiled.x, _scipy(hinge_numpy, x0).x, rtol=1e-7)


def test_hinge_oracle_matches_numpy_at_points_on_either_side_of_the_kinks():
    params = _values([1.0, 1.0])
    oracle = CompiledOracle(params, hinge_residuals, "auto")
    points = [[1.0, 1.0], [3.3, 2.0], [1.0, 1.0], [-1.0, 0.5], [4.9, -2.0], [3.3, 2.0]]
    for x in map(np.array, points):
        r, J = oracle.residuals_and_jacobian(x)
        c, a = x
        active = T > c
        expected_J = np.stack([np.where(active, -a, 0.0),
                               np.maximum(T - c, 0.0)], axis=1)
        np.testing.assert_allclose(r, hinge_numpy(x), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(J, expected_J, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(oracle.residuals(x), hinge_numpy(x), rtol=1e-14,
                                   atol=1e-14)
    assert oracle.n_specializations == 4   # four distinct sets of active rows
    assert [p.data for p in params] == [1.0, 1.0]   # re-traces restore the params


# --------------------------------------------------------------------------- branch flips


T2 = np.linspace(0.0, 2.0, 15)
Y2 = 2.0 * np.exp(-1.5 * T2) + 0.01 * np.cos(5.0 * T2)


def _decay_numpy(x: np.ndarray) -> np.ndarray:
    a, b = x
    # exp(-b t) for b > 0, its tangent at b = 0 otherwise (continuous with its slope)
    model = np.exp(-b * T2) if b > 0 else 1.0 - b * T2
    return a * model - Y2


@pytest.mark.parametrize("linear_solver", ["auto", "dense", "sparse_cholesky"])
def test_a_branch_that_flips_during_the_solve_is_followed(linear_solver):
    taken: set[str] = set()

    def decay(p):
        a, b = p
        if b > 0:
            taken.add("exp")
            return [a * sa.exp(-b * t) - y for t, y in zip(T2, Y2)]
        taken.add("linear")
        return [a * (1.0 - b * t) - y for t, y in zip(T2, Y2)]

    x0 = [1.0, -0.5]                     # starts in the linear piece
    reference = _scipy(_decay_numpy, x0)
    assert reference.x[1] > 0            # ... and the optimum is in the exp piece
    res = sa.nonlinear_least_squares(_values(x0), decay, jacobian="compiled",
                                     linear_solver=linear_solver)
    assert taken == {"exp", "linear"}    # traced on both sides of the branch
    assert res.success
    np.testing.assert_allclose(res.x, reference.x, rtol=1e-7)
    true_r = _decay_numpy(res.x)
    assert res.cost == pytest.approx(0.5 * float(true_r @ true_r), rel=1e-12)
    graph = sa.nonlinear_least_squares(_values(x0), decay, jacobian="graph",
                                       linear_solver=linear_solver)
    np.testing.assert_allclose(res.x, graph.x, rtol=1e-8)


def _switching(p):
    x0, x1, x2 = p
    if x2 > 0:
        return [x0 * x0 - 1.0, x1 - 2.0, x2 - 3.0, x0 * x1]
    return [x0 - 1.0, x0 * x1 - 2.0, x2 * x2 - 3.0, x2 * x0]


def _switching_numpy(x):
    x0, x1, x2 = x
    if x2 > 0:
        r = [x0 * x0 - 1.0, x1 - 2.0, x2 - 3.0, x0 * x1]
        J = [[2 * x0, 0, 0], [0, 1, 0], [0, 0, 1], [x1, x0, 0]]
    else:
        r = [x0 - 1.0, x0 * x1 - 2.0, x2 * x2 - 3.0, x2 * x0]
        J = [[1, 0, 0], [x1, x0, 0], [0, 0, 2 * x2], [x2, 0, x0]]
    return np.array(r, dtype=float), np.array(J, dtype=float)


@pytest.mark.parametrize("linear_solver", ["dense", "sparse_cholesky"])
def test_each_specialisation_has_its_own_jacobian_pattern(linear_solver):
    oracle = CompiledOracle(_values([1.0, 1.0, 1.0]), _switching, linear_solver)
    kinds = set()
    for x in ([1.0, 1.0, 1.0], [1.0, 2.0, -1.0], [2.0, 0.5, 1.5], [0.5, 3.0, -2.0],
              [1.0, 1.0, 1.0]):
        r, J = oracle.residuals_and_jacobian(np.array(x))
        kinds.add(type(J))
        dense = J.toarray() if hasattr(J, "toarray") else J
        expected_r, expected_J = _switching_numpy(x)
        np.testing.assert_allclose(r, expected_r, rtol=1e-15)
        np.testing.assert_allclose(dense, expected_J, rtol=1e-15)
        np.testing.assert_allclose(oracle.residuals(np.array(x)), expected_r, rtol=1e-15)
    assert len(kinds) == 1               # one Jacobian kind for the whole solve
    assert oracle.n_specializations == 2


def test_constant_rows_belong_to_each_specialisation():
    def fn(p):
        x = p[0]
        return [x - 1.0, x * 2.0 if x > 0 else sa.Value(3.0)]

    oracle = CompiledOracle(_values([1.0]), fn, "auto")
    for x, rows, r, J in ((1.5, [], [0.5, 3.0], [[1.0], [2.0]]),
                          (-2.0, [1], [-3.0, 3.0], [[1.0], [0.0]]),
                          (0.25, [], [-0.75, 0.5], [[1.0], [2.0]])):
        got_r, got_J = oracle.residuals_and_jacobian(np.array([x]))
        assert oracle.constant_rows == rows
        np.testing.assert_array_equal(got_r, r)
        np.testing.assert_array_equal(got_J, J)


# --------------------------------------------------------------------------- limits, errors


def _stepped(p):
    x = p[0]
    level = 0.0
    for k in range(4):
        if x > float(k):  # STEPPED-IF
            level += 1.0
    return [x * (level + 1.0) - 1.0]


def test_the_specialisation_limit_names_the_branch_site():
    oracle = CompiledOracle(_values([0.5]), _stepped, "auto", max_specializations=2)
    oracle.residuals(np.array([1.5]))
    np.testing.assert_allclose(oracle.residuals(np.array([0.25])), [0.25 * 2 - 1.0])
    with pytest.raises(sa.SpecializationLimitError) as info:
        oracle.residuals(np.array([2.5]))
    message = str(info.value)
    assert _site("STEPPED-IF") in message
    assert "max_specializations=2" in message and "sa.where" in message


def test_the_solver_raises_the_limit_error_and_restores_the_params():
    params = _values([1.0, 1.0])
    with pytest.raises(sa.SpecializationLimitError, match=_site("HINGE-MAX")):
        sa.nonlinear_least_squares(params, hinge_residuals, jacobian="compiled",
                                   max_specializations=1)
    assert [p.data for p in params] == [1.0, 1.0]


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "8"])
def test_max_specializations_is_validated(bad):
    error = ValueError if isinstance(bad, int) and not isinstance(bad, bool) else TypeError
    with pytest.raises(error, match="max_specializations"):
        sa.nonlinear_least_squares(_values([1.0, 1.0]), hinge_residuals,
                                   max_specializations=bad)


def test_math_exp_in_residual_fn_raises_a_concretization_error_naming_the_line():
    def with_math(p):
        return [math.exp(p[0]) - 2.0, p[1] - 1.0]  # MATH-EXP

    params = _values([0.3, 0.0])
    with pytest.raises(sa.ConcretizationError) as info:
        sa.nonlinear_least_squares(params, with_math, jacobian="compiled")
    assert type(info.value) is sa.ConcretizationError
    assert _site("MATH-EXP") in str(info.value)
    assert "sa.exp" in str(info.value)
    assert [p.data for p in params] == [0.3, 0.0]


def test_a_residual_fn_without_branches_matches_scipy_and_compiles_no_guard(monkeypatch):
    t = np.linspace(0.0, 3.0, 40)
    y = 3.0 * np.exp(-0.7 * t) + 0.5 + 0.02 * np.sin(11.0 * t)

    def model(p):
        a, b, c = p
        return [a * sa.exp(-b * ti) + c - yi for ti, yi in zip(t, y)]

    def model_numpy(x):
        return x[0] * np.exp(-x[1] * t) + x[2] - y

    class NoGuards:
        def __init__(self, *args, **kwargs):
            raise AssertionError("a residual_fn without branches compiled a guard")

    monkeypatch.setattr(compiled_oracle, "GuardCheck", NoGuards)
    x0 = [1.0, 1.0, 0.0]
    reference = _scipy(model_numpy, x0)
    res = sa.nonlinear_least_squares(_values(x0), model, jacobian="compiled")
    assert res.success
    np.testing.assert_allclose(res.x, reference.x, rtol=1e-8)
    assert res.cost == pytest.approx(reference.cost, rel=1e-9)
    oracle = CompiledOracle(_values(x0), model, "auto")
    oracle.residuals_and_jacobian(np.array([2.0, 0.5, 0.1]))
    assert oracle.n_specializations == 1


# --------------------------------------------------------------------------- residual blocks


def _block_data():
    t = np.linspace(0.1, 5.1, 21)
    return t, 6.0 * np.maximum(t - 2.0, 0.0) + 0.05 * np.sin(7.0 * t)


def test_a_block_that_branches_is_refused_with_the_block_and_site():
    t, y = _block_data()

    def hinge(p, d):
        c, a = p
        return a * max(d[0] - c, 0.0) - d[1]  # BLOCK-MAX

    problem = sa.LeastSquaresProblem([1.0, 1.0])
    problem.add_block(hinge, param_index=np.tile([0, 1], (t.size, 1)), data=[t, y],
                      name="hinge_block")
    with pytest.raises(ValueError) as info:
        problem.solve(jacobian="compiled")
    message = str(info.value)
    assert "'hinge_block'" in message and _site("BLOCK-MAX") in message
    assert "sa.where" in message
    np.testing.assert_array_equal(problem.x, [1.0, 1.0])
    # the graph path re-runs fn per row, so it follows the branch
    graph = problem.solve(jacobian="graph")
    reference = _scipy(hinge_numpy, [1.0, 1.0])
    np.testing.assert_allclose(graph.x, reference.x, rtol=1e-7)


def test_a_block_written_with_where_compiles_and_matches_scipy():
    t, y = _block_data()

    def hinge(p, d):
        c, a = p
        u = d[0] - c
        return a * sa.where(u > 0.0, u, 0.0) - d[1]

    problem = sa.LeastSquaresProblem([1.0, 1.0])
    problem.add_block(hinge, param_index=np.tile([0, 1], (t.size, 1)), data=[t, y])
    res = problem.solve(jacobian="compiled")
    reference = _scipy(hinge_numpy, [1.0, 1.0])
    np.testing.assert_allclose(res.x, reference.x, rtol=1e-7)
    assert res.cost == pytest.approx(reference.cost, rel=1e-7)


def test_a_block_that_concretises_raises_naming_the_line():
    def with_float(p, d):
        return p[0] * float(d[0]) - 1.0  # BLOCK-FLOAT

    problem = sa.LeastSquaresProblem([1.0])
    problem.add_block(with_float, param_index=[0, 0], data=[np.array([1.0, 2.0])])
    with pytest.raises(sa.ConcretizationError, match=_site("BLOCK-FLOAT")):
        problem.solve(jacobian="compiled")


# --------------------------------------------------------------------------- minimize


def _piecewise(p):
    """(x - 3)^2 + (y + 1)^2 for x > 1; for x <= 1 the tangent plane of the first term
    at x = 1 (value 4, slope -4) plus the same quadratic in y. Minimum 0 at (3, -1)."""
    x, y = p
    if x > 1.0:  # PIECEWISE-IF
        return (x - 3.0) ** 2 + (y + 1.0) ** 2
    return 4.0 - 4.0 * (x - 1.0) + (y + 1.0) ** 2


@pytest.mark.parametrize("method, options, tol", [
    ("lbfgs", {}, 1e-7),
    ("adam", {"lr": 0.05, "max_iterations": 3000}, 1e-3),
    ("sgd", {"lr": 0.1, "max_iterations": 500}, 1e-6),
])
def test_minimize_a_function_with_an_if_reaches_the_analytic_minimum(method, options, tol):
    params = [sa.Value(-2.0, requires_grad=True), sa.Value(2.0, requires_grad=True)]
    res = sa.minimize(_piecewise, params, method=method, **options)
    np.testing.assert_allclose(res.x, [3.0, -1.0], atol=tol)
    assert res.fun == pytest.approx((res.x[0] - 3.0) ** 2 + (res.x[1] + 1.0) ** 2,
                                    abs=1e-15)
    assert [p.data for p in params] == res.x.tolist()


def test_minimize_a_function_follows_both_branches():
    taken = []

    def f(p):
        x = p[0]
        if x > 0.0:
            taken.append("right")
            return (x - 2.0) ** 2
        taken.append("left")
        return 4.0 - 4.0 * x

    w = sa.Value(-3.0, requires_grad=True)
    res = sa.minimize(f, [w], method="lbfgs")
    assert res.success and w.data == pytest.approx(2.0, abs=1e-8)
    assert set(taken) == {"left", "right"}


def test_minimize_a_function_errors():
    w = sa.Value(1.0, requires_grad=True)
    with pytest.raises(ValueError, match="captured from outside"):
        sa.minimize(lambda p: (w - 2.0) ** 2, [w], method="lbfgs")
    with pytest.raises(ValueError, match="inputs"):
        sa.minimize(lambda p: p[0] ** 2, [w], inputs=[1.0])
    with pytest.raises(sa.ConcretizationError, match="math.exp"):
        sa.minimize(lambda p: math.exp(p[0]), [w], method="lbfgs")
    with pytest.raises(sa.SpecializationLimitError, match=_site("PIECEWISE-IF")):
        sa.minimize(_piecewise, [sa.Value(-2.0, requires_grad=True),
                                 sa.Value(2.0, requires_grad=True)],
                    method="lbfgs", max_specializations=1)
    with pytest.raises(ValueError, match="max_specializations"):
        sa.minimize(_piecewise, [w, sa.Value(0.0, requires_grad=True)],
                    max_specializations=0)
    assert w.data == 1.0
