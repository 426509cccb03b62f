"""Re-solving without re-tracing: ``inputs=``, kept kernels, ``solve(x0, data)``; and the
least-squares API mends (``sigma``/``absolute_sigma``, the abridged ``repr``).

Oracles: numpy forward kinematics (``kinematics.arm_points``), scipy's ``least_squares``
and ``curve_fit`` on numpy residuals, and counts of how often ``residual_fn`` and the
block compiler run (a re-solve must not trace).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.kinematics import arm_points, planar_arm_end
from scalar_autograd.lsq import problem as problem_module
from scalar_autograd.lsq import solve as solve_module
from scalar_autograd.lsq.blocks import ResidualBlock
from scalar_autograd.lsq.compiled_oracle import CompiledOracle

scipy_optimize = pytest.importorskip("scipy.optimize")


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    solve_module.clear_cache()
    yield
    solve_module.clear_cache()


def _arm(n_joints: int = 7) -> tuple[list[sa.Value], sa.Value, sa.Value, Any, list[int]]:
    q = [sa.Value(0.2) for _ in range(n_joints)]
    tx, ty = sa.Value(0.0), sa.Value(0.0)
    calls = [0]

    def reach(p: list[sa.Value]) -> list[sa.Value]:
        calls[0] += 1
        x, y = planar_arm_end(p)
        return [x - tx, y - ty]

    return q, tx, ty, reach, calls


def _targets(count: int) -> np.ndarray:
    s = np.linspace(0.0, 2.0 * np.pi, count)
    return np.stack([3.0 + 2.0 * np.cos(s), 1.5 * np.sin(s)], axis=1)


# ------------------------------------------------------------------ nonlinear_least_squares
def test_ik_with_inputs_traces_once_and_reaches_every_target() -> None:
    q, tx, ty, reach, calls = _arm()
    for target in _targets(40):
        tx.data, ty.data = target
        res = sa.nonlinear_least_squares(q, reach, inputs=[tx, ty])
        assert res.success
        # the oracle: numpy forward kinematics at the solution
        end = arm_points([v.data for v in q])[-1]
        np.testing.assert_allclose(end, target, atol=1e-9)
    assert calls[0] == 1                       # traced once, for 40 solves


def test_ik_with_inputs_runs_the_native_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_numpy_loop(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the numpy loop ran")

    q, tx, ty, reach, _ = _arm()
    tx.data, ty.data = 2.0, 1.0
    sa.nonlinear_least_squares(q, reach, inputs=[tx, ty])
    monkeypatch.setattr(problem_module, "levenberg_marquardt", no_numpy_loop)
    tx.data, ty.data = 1.0, 2.5
    res = sa.nonlinear_least_squares(q, reach, inputs=[tx, ty])
    np.testing.assert_allclose(arm_points(res.x)[-1], [1.0, 2.5], atol=1e-9)


def test_without_inputs_every_call_traces_and_sees_its_closure() -> None:
    q, tx, ty, reach, calls = _arm(3)
    for target in _targets(3):
        tx.data, ty.data = target * 0.5
        sa.nonlinear_least_squares(q, reach)
        np.testing.assert_allclose(arm_points([v.data for v in q])[-1], target * 0.5,
                                   atol=1e-9)
    assert calls[0] == 3


def test_a_different_function_params_or_inputs_is_another_problem() -> None:
    q, tx, ty, reach, calls = _arm(3)
    tx.data, ty.data = 1.0, 1.0
    sa.nonlinear_least_squares(q, reach, inputs=[tx, ty])
    sa.nonlinear_least_squares(q, reach, inputs=[tx, ty])
    assert calls[0] == 1
    sa.nonlinear_least_squares(q, reach, inputs=[ty, tx])     # other order
    assert calls[0] == 2
    q2 = [sa.Value(0.1) for _ in range(3)]
    sa.nonlinear_least_squares(q2, reach, inputs=[tx, ty])    # other params
    assert calls[0] == 3
    sa.nonlinear_least_squares(q, reach, inputs=[tx, ty], jacobian="graph")
    np.testing.assert_allclose(arm_points([v.data for v in q])[-1], [1.0, 1.0], atol=1e-9)


def _fit_data(rate: float, n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2.0, n)
    return t, 1.5 * np.exp(-rate * t) + 0.1 * np.cos(3.0 * t)


def test_data_as_inputs_in_grouped_kernels_matches_scipy() -> None:
    """Thirty residuals of one structure: one grouped kernel whose data columns are the
    inputs; each re-solve reads the new data."""
    t, _ = _fit_data(1.0)
    ys = [sa.Value(0.0) for _ in t]
    a, k = sa.Value(1.0), sa.Value(1.0)
    calls = [0]

    def residuals(p: list[sa.Value]) -> list[sa.Value]:
        calls[0] += 1
        return [p[0] * sa.exp(-p[1] * ti) - yi for ti, yi in zip(t.tolist(), ys)]

    for rate in (0.5, 1.0, 2.0, 3.0):
        _, y = _fit_data(rate)
        for v, yi in zip(ys, y):
            v.data = float(yi)
        res = sa.nonlinear_least_squares([a, k], residuals, inputs=ys)
        ref = scipy_optimize.least_squares(lambda p, y=y: p[0] * np.exp(-p[1] * t) - y,
                                           [1.0, 1.0], method="lm", xtol=1e-12, ftol=1e-12)
        np.testing.assert_allclose(res.x, ref.x, rtol=1e-7)
        assert res.cost == pytest.approx(ref.cost, rel=1e-9)
    assert calls[0] == 1


@pytest.mark.parametrize("op", ["pow_value", "pow"])
def test_an_input_as_an_exponent(op: str) -> None:
    """``t ** power`` with ``power`` an input runs on the first trace, for the public
    ``pow_value`` and for the constant-exponent op ``pow`` alike (only reachable through
    ``apply``): an input is a runtime input of the row kernels, never compiled in, so a
    new value needs no new trace."""
    from scalar_autograd.ops import OPS_BY_NAME
    from scalar_autograd.value import apply

    t = np.linspace(0.5, 2.0, 12)
    power = sa.Value(2.0)
    calls = [0]

    def residuals(p: list[sa.Value]) -> list[sa.Value]:
        calls[0] += 1
        return [p[0] * apply(OPS_BY_NAME[op], sa.Value(ti), power) - yi
                for ti, yi in zip(t.tolist(), (3.0 * t**1.5).tolist())]

    a = sa.Value(1.0)
    first = sa.nonlinear_least_squares([a], residuals, inputs=[power])
    expected = np.sum(3.0 * t**1.5 * t**2) / np.sum(t**4)       # linear least squares
    assert first.x[0] == pytest.approx(expected, rel=1e-10)
    power.data = 1.5
    second = sa.nonlinear_least_squares([a], residuals, inputs=[power])
    assert second.x[0] == pytest.approx(3.0, rel=1e-10)
    assert calls[0] == 1
    a.data = 1.0
    sa.nonlinear_least_squares([a], residuals, inputs=[power])
    assert calls[0] == 1


def test_branches_on_inputs_are_guarded() -> None:
    target = sa.Value(1.0)
    calls = [0]

    def residuals(p: list[sa.Value]) -> list[sa.Value]:
        calls[0] += 1
        # a different model on each side of 0: the branch depends on the input only
        return [p[0] - target] if target > 0 else [p[0] * p[0] * p[0] - target]

    x = sa.Value(0.5)
    assert sa.nonlinear_least_squares([x], residuals, inputs=[target]).x[0] == \
        pytest.approx(1.0)
    target.data = -8.0
    assert sa.nonlinear_least_squares([x], residuals, inputs=[target]).x[0] == \
        pytest.approx(-2.0, rel=1e-9)
    target.data = 3.0
    assert sa.nonlinear_least_squares([x], residuals, inputs=[target]).x[0] == \
        pytest.approx(3.0)
    assert calls[0] == 2                       # one trace per branch taken


def test_guards_on_params_and_inputs_together() -> None:
    """A branch on ``p > target``: its guard reads the param and the input, so the
    compiled residuals are right at every point for every target."""
    target = sa.Value(1.0)

    def hinge(p: list[sa.Value]) -> list[sa.Value]:
        d = p[0] - target
        return [d if p[0] > target else 3.0 * d * d, p[0] * p[1] - target]

    def expected(x: np.ndarray, u: float) -> tuple[np.ndarray, np.ndarray]:
        d = x[0] - u
        if x[0] > u:
            return np.array([d, x[0] * x[1] - u]), np.array([[1.0, 0.0], [x[1], x[0]]])
        return np.array([3 * d * d, x[0] * x[1] - u]), np.array([[6 * d, 0.0], [x[1], x[0]]])

    params = [sa.Value(2.0, requires_grad=True), sa.Value(1.0, requires_grad=True)]
    oracle = CompiledOracle(params, hinge, "auto", inputs=[target])
    for u in (1.0, 3.0, -1.0, 2.5):
        target.data = u
        oracle.refresh_inputs()
        for x in ([2.0, 1.0], [0.0, 2.0], [2.7, -1.0], [-3.0, 0.5]):
            r, J = oracle.residuals_and_jacobian(np.array(x))
            r_ref, J_ref = expected(np.array(x), u)
            np.testing.assert_allclose(r, r_ref, rtol=1e-14)
            np.testing.assert_allclose(J, J_ref, rtol=1e-14)
    assert oracle.n_specializations == 2


def test_a_concrete_number_of_an_input_is_refused() -> None:
    import math

    target = sa.Value(1.0)
    with pytest.raises(sa.ConcretizationError):
        sa.nonlinear_least_squares([sa.Value(0.0)],
                                   lambda p: [p[0] - math.exp(target)], inputs=[target])


@pytest.mark.parametrize(("inputs", "error", "pattern"), [
    (sa.Value(1.0), TypeError, r"`inputs` must be a sequence of Value objects; got Value"),
    ([1.0], TypeError, r"`inputs` must contain only Value objects; inputs\[0\] is float"),
    ([sa.Value(1.0) * 2.0], ValueError, r"`inputs` must contain leaf Values"),
])
def test_bad_inputs_raise(inputs: Any, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        sa.nonlinear_least_squares([sa.Value(0.0)], lambda p: [p[0] - 1.0], inputs=inputs)


def test_an_input_that_is_a_param_or_repeated_raises() -> None:
    a, u = sa.Value(0.0), sa.Value(1.0)
    with pytest.raises(ValueError, match=r"`inputs` must not contain a param: inputs\[1\] "
                                         r"is params\[0\]"):
        sa.nonlinear_least_squares([a], lambda p: [p[0] - u], inputs=[u, a])
    with pytest.raises(ValueError, match=r"`inputs` must not contain the same Value twice"):
        sa.nonlinear_least_squares([a], lambda p: [p[0] - u], inputs=[u, u])


# ------------------------------------------------------------------ LeastSquaresProblem
def test_from_residuals_solve_reuses_the_trace() -> None:
    target = sa.Value(2.0)
    calls = [0]

    def residuals(p: list[sa.Value]) -> list[sa.Value]:
        calls[0] += 1
        return [p[0] * p[0] - target, p[1] - 2.0 * p[0]]

    problem = sa.LeastSquaresProblem.from_residuals([sa.Value(1.0), sa.Value(0.0)],
                                                    residuals, inputs=[target])
    for value in (2.0, 9.0, 16.0):
        target.data = value
        res = problem.solve(x0=[1.0, 0.0])
        np.testing.assert_allclose(res.x, [np.sqrt(value), 2 * np.sqrt(value)], rtol=1e-10)
    assert calls[0] == 1
    assert problem.inputs == [target]
    with pytest.raises(ValueError, match=r"data= is for problems of residual blocks"):
        problem.solve(data=[[np.ones(2)]])


def _decay_problem(t: np.ndarray, y: np.ndarray) -> sa.LeastSquaresProblem:
    problem = sa.LeastSquaresProblem([1.0, 1.0])
    problem.add_block(lambda p, d: p[0] * sa.exp(-p[1] * d[0]) - d[1],
                      param_index=np.tile([0, 1], (t.size, 1)), data=[t, y], name="decay")
    return problem


def _scipy_decay(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    ref = scipy_optimize.least_squares(lambda p: p[0] * np.exp(-p[1] * t) - y, [1.0, 1.0],
                                       method="lm", xtol=1e-12, ftol=1e-12)
    return np.asarray(ref.x)


def test_blocks_compile_once_and_resolve_with_new_data(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    compiled = [0]
    original = ResidualBlock.compile

    def counting(self: ResidualBlock, *args: Any, **kwargs: Any) -> Any:
        compiled[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ResidualBlock, "compile", counting)
    t, y = _fit_data(1.0)
    problem = _decay_problem(t, y)
    problem.solve()
    for rate, data in ((0.5, "list"), (2.0, "name"), (3.0, "index"), (1.5, "block")):
        _, y = _fit_data(rate)
        new = {"list": [[t, y]], "name": {"decay": [t, y]}, "index": {0: [t, y]},
               "block": {problem.blocks[0]: [t, y]}}[data]
        res = problem.solve(x0=[1.0, 1.0], data=new)
        np.testing.assert_allclose(res.x, _scipy_decay(t, y), rtol=1e-7)
        np.testing.assert_array_equal(problem.blocks[0].data[:, 1], y)
    assert compiled[0] == 1
    # the graph path reads the new data too
    res = problem.solve(x0=[1.0, 1.0], jacobian="graph")
    np.testing.assert_allclose(res.x, _scipy_decay(t, y), rtol=1e-7)
    # adding a block compiles again, with it
    problem.add_block(lambda p, d: 10.0 * (p[0] - 1.0), param_index=[[1]], name="prior")
    res = problem.solve(x0=[1.0, 1.0])
    assert compiled[0] == 3 and res.residuals.size == t.size + 1


def test_x0_starts_the_solve_and_self_x_keeps_the_solution() -> None:
    t, y = _fit_data(1.0)
    problem = _decay_problem(t, y)
    res = problem.solve(x0=[2.0, 0.5], max_iterations=1)
    assert res.iterations == 1 and not np.array_equal(res.x, [2.0, 0.5])
    np.testing.assert_array_equal(problem.x, res.x)
    with pytest.raises(ValueError, match=r"x0 must be a 1-D array of n_params = 2"):
        problem.solve(x0=[1.0])
    with pytest.raises(ValueError, match=r"x0 must be finite; got nan at index 1"):
        problem.solve(x0=[1.0, np.nan])


@pytest.mark.parametrize(("data", "error", "pattern"), [
    ([[np.ones(30)]], ValueError, r"data for block 'decay' must hold 2 arrays of 30 rows"),
    ([[np.ones(29), np.ones(29)]], ValueError, r"data\[0\] has 29 rows but param_index has 30"),
    ([], ValueError, r"data must have one entry per block \(1; None keeps"),
    ({"nope": [np.ones(30), np.ones(30)]}, ValueError, r"data names block 'nope', which is "
                                                       r"not in this problem"),
    ({3: [np.ones(30), np.ones(30)]}, ValueError, r"block index 3; the problem has 1"),
    ({1.5: [np.ones(30), np.ones(30)]}, TypeError, r"data's keys must be block indices"),
    (np.ones((30, 2)), TypeError, r"data must be a list with one entry per block"),
    ([["a" * 30, np.ones(30)]], TypeError, r"block 'decay': data\[0\] must be an array-like "
                                           r"of real numbers; got str"),
])
def test_bad_data_raises_and_leaves_the_data(data: Any, error: type, pattern: str) -> None:
    t, y = _fit_data(1.0)
    problem = _decay_problem(t, y)
    with pytest.raises(error, match=pattern):
        problem.solve(data=data)
    np.testing.assert_array_equal(problem.blocks[0].data[:, 1], y)


def test_a_problem_of_one_row_runs_natively_after_new_data(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """A 7-joint IK block: one kernel whose rows read all params in order, so the
    native loop takes every re-solve (the numpy loop would raise here)."""
    def fk(p: list[sa.Value], d: list[sa.Value]) -> list[sa.Value]:
        x, y = planar_arm_end(p)
        return [x - d[0], y - d[1]]

    problem = sa.LeastSquaresProblem(np.full(7, 0.2))
    problem.add_block(fk, param_index=[list(range(7))], data=[[3.0], [1.0]])
    problem.solve()
    monkeypatch.setattr(problem_module, "levenberg_marquardt",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("numpy loop")))
    for target in _targets(5):
        res = problem.solve(data=[[[target[0]], [target[1]]]])
        np.testing.assert_allclose(arm_points(res.x)[-1], target, atol=1e-9)


def test_single_kernel_for_small_problems_and_groups_for_many_copies() -> None:
    q = [sa.Value(0.2, requires_grad=True) for _ in range(7)]
    ik = CompiledOracle(q, lambda p: list(planar_arm_end(p)), "auto")
    assert ik.n_groups == 1                    # x and y of the chain in one kernel
    t, y = _fit_data(1.0, 64)
    ab = [sa.Value(1.0, requires_grad=True), sa.Value(1.0, requires_grad=True)]
    fit = CompiledOracle(ab, lambda p: [p[1] * sa.exp(-p[0] * ti) - yi
                                        for ti, yi in zip(t.tolist(), y.tolist())]
                         + [p[0] - 1.0], "auto")
    assert fit.n_groups == 2                   # 64 copies stay one grouped kernel
    x = np.array([0.7, 1.3])
    r, J = fit.residuals_and_jacobian(x)
    e = np.exp(-x[0] * t)
    np.testing.assert_allclose(r[:-1], x[1] * e - y, rtol=1e-14)
    np.testing.assert_allclose(J[:-1], np.stack([-x[1] * t * e, e], axis=1), rtol=1e-14)


# ------------------------------------------------------------------ sigma, absolute_sigma
X_FIT = np.linspace(0.0, 4.0, 40)
Y_FIT = 2.5 * np.exp(-1.3 * X_FIT) + 0.5 + 0.02 * np.cos(5.0 * X_FIT)
SIGMA = 0.05 + 0.01 * X_FIT


def _fit_residuals(p: list[sa.Value]) -> list[sa.Value]:
    return [p[0] * sa.exp(-p[1] * x) + p[2] - y for x, y in zip(X_FIT.tolist(), Y_FIT.tolist())]


def _exp_np(x: Any, a: Any, k: Any, c: Any) -> Any:
    return a * np.exp(-k * x) + c


@pytest.mark.parametrize("absolute", [False, True])
@pytest.mark.parametrize("sigma", [SIGMA, 0.3, np.diag(SIGMA**2)])
def test_sigma_gives_curve_fits_pcov(sigma: Any, absolute: bool) -> None:
    p_ref, c_ref = scipy_optimize.curve_fit(_exp_np, X_FIT, Y_FIT, p0=[1.0, 1.0, 1.0],
                                            sigma=sigma, absolute_sigma=absolute,
                                            xtol=1e-12, ftol=1e-12, gtol=1e-12)
    res = sa.nonlinear_least_squares([sa.Value(1.0), sa.Value(1.0), sa.Value(1.0)],
                                     _fit_residuals, sigma=sigma, absolute_sigma=absolute)
    np.testing.assert_allclose(res.x, p_ref, rtol=1e-7)
    np.testing.assert_allclose(res.covariance(), c_ref, rtol=1e-5)
    assert res.absolute_sigma is absolute
    # the weighted residuals
    weights = 1 / np.sqrt(np.diag(sigma)) if np.ndim(sigma) == 2 else 1 / np.asarray(sigma)
    np.testing.assert_allclose(res.residuals, (_exp_np(X_FIT, *res.x) - Y_FIT) * weights,
                               rtol=1e-9, atol=1e-12)
    # the other rule on request
    other = scipy_optimize.curve_fit(_exp_np, X_FIT, Y_FIT, p0=[1.0, 1.0, 1.0], sigma=sigma,
                                     absolute_sigma=not absolute, xtol=1e-12, ftol=1e-12)[1]
    np.testing.assert_allclose(res.covariance(absolute_sigma=not absolute), other, rtol=1e-5)


def test_sigma_on_a_problem_of_blocks_and_the_native_loop() -> None:
    problem = sa.LeastSquaresProblem([1.0, 1.0, 1.0])
    problem.add_block(lambda p, d: p[0] * sa.exp(-p[1] * d[0]) + p[2] - d[1],
                      param_index=np.tile([0, 1, 2], (X_FIT.size, 1)), data=[X_FIT, Y_FIT])
    res = problem.solve(sigma=SIGMA)
    p_ref, c_ref = scipy_optimize.curve_fit(_exp_np, X_FIT, Y_FIT, p0=[1.0, 1.0, 1.0],
                                            sigma=SIGMA, xtol=1e-12, ftol=1e-12)
    np.testing.assert_allclose(res.x, p_ref, rtol=1e-7)
    np.testing.assert_allclose(res.covariance(), c_ref, rtol=1e-5)


@pytest.mark.parametrize(("sigma", "error", "pattern"), [
    (np.ones(3), ValueError, r"`sigma` must be a scalar, \(40,\) .* or \(40, 40\).*got shape "
                             r"\(3,\)"),
    (-1.0, ValueError, r"`sigma` must hold positive finite standard deviations; sigma\[0\] "
                       r"is -1\.0"),
    (np.r_[np.ones(39), np.inf], ValueError, r"sigma\[39\] is inf"),
    (-np.eye(40), ValueError, r"`sigma` \(a covariance matrix\) must be positive definite"),
    ("big", TypeError, r"`sigma` must be an array-like of real numbers"),
])
def test_bad_sigma_raises(sigma: Any, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        sa.nonlinear_least_squares([sa.Value(1.0), sa.Value(1.0), sa.Value(1.0)],
                                   _fit_residuals, sigma=sigma)
    with pytest.raises(TypeError, match=r"`absolute_sigma` must be a bool"):
        sa.nonlinear_least_squares([sa.Value(1.0), sa.Value(1.0), sa.Value(1.0)],
                                   _fit_residuals, absolute_sigma=1)


# ------------------------------------------------------------------ repr
def test_repr_is_abridged() -> None:
    m = 10_000
    xs = np.linspace(0.0, 1.0, m)
    problem = sa.LeastSquaresProblem(np.ones(12))
    problem.add_block(lambda p, d: sum((p[j] - d[0] * j for j in range(12)), sa.Value(0.0)),
                      param_index=np.tile(np.arange(12), (m, 1)), data=[xs])
    res = problem.solve(max_iterations=2)
    text = repr(res)
    assert len(text) < 500, text
    assert text.startswith("LeastSquaresResult(success=") and f"m={m}" in text
    assert "..." in text and "jacobian" not in text and "residuals=" not in text
    bounded = sa.nonlinear_least_squares([sa.Value(0.5)], lambda p: [p[0] - 2.0],
                                         bounds=(0.0, 1.0))
    assert "active_bounds=[0:upper]" in repr(bounded)
