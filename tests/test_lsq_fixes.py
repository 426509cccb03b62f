"""Least-squares regressions: constant residuals, soft_l1 cancellation, covariance of
undetermined parameters, ``LeastSquaresProblem.residuals`` checks, option error types.

Every numerical check is against an independent oracle: scipy's ``least_squares`` and
``curve_fit``, mpmath, or values derived by hand.
"""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.lsq import CovarianceWarning, Status
from scalar_autograd.lsq.losses import LOSSES, evaluate_loss
from scalar_autograd.lsq.options import validate_jacobian_mode, validate_options

scipy_optimize = pytest.importorskip("scipy.optimize")

JACOBIANS = ["auto", "graph", "compiled"]


# ------------------------------------------------------------ 1. constant residuals
def _scipy_fit(fun, x0, **kwargs):
    """scipy's least_squares with tight tolerances: the oracle for x and cost."""
    return scipy_optimize.least_squares(fun, np.asarray(x0, dtype=float), xtol=1e-15,
                                        ftol=1e-15, gtol=1e-15, **kwargs)


@pytest.mark.parametrize("jacobian", JACOBIANS)
@pytest.mark.parametrize("constant", ["product", "plain"])
def test_a_residual_of_no_parameter_is_solved_and_counts_in_the_cost(
        jacobian: str, constant: str) -> None:
    def residuals(p):
        c = sa.Value(2.0) * 1.0 if constant == "product" else sa.Value(2.0)
        return [p[0] - 1.0, c, p[1] * p[0] - 3.0]

    p = [sa.Value(0.5), sa.Value(0.5)]
    res = sa.nonlinear_least_squares(p, residuals, jacobian=jacobian)
    ref = _scipy_fit(lambda x: [x[0] - 1.0, 2.0, x[1] * x[0] - 3.0], [0.5, 0.5])
    assert res.success
    np.testing.assert_allclose(res.x, ref.x, atol=1e-10)
    np.testing.assert_allclose(res.x, [1.0, 3.0], atol=1e-10)     # by hand
    # the constant 2 stays in the cost: 0.5 * 2**2
    assert res.cost == pytest.approx(ref.cost, abs=1e-12)
    assert res.cost == pytest.approx(2.0, abs=1e-12)
    assert res.residuals[1] == 2.0
    assert [v.data for v in p] == pytest.approx([1.0, 3.0], abs=1e-10)


@pytest.mark.parametrize("jacobian", JACOBIANS)
@pytest.mark.parametrize("linear_solver", ["dense", "sparse_cholesky", "sparse_lsmr"])
def test_constant_residuals_between_the_others_on_every_linear_solver(
        jacobian: str, linear_solver: str) -> None:
    # two structurally identical residuals apart (rows 0 and 3) and constants at 1 and 4:
    # the compiled path scatters rather than slicing
    def residuals(p):
        return [p[0] - 1.0, sa.Value(2.0), p[1] * p[0] - 3.0, p[0] - 1.5,
                sa.Value(3.0) * sa.Value(1.0)]

    def numpy_residuals(x):
        return [x[0] - 1.0, 2.0, x[1] * x[0] - 3.0, x[0] - 1.5, 3.0]

    res = sa.nonlinear_least_squares([sa.Value(0.5), sa.Value(0.5)], residuals,
                                     jacobian=jacobian, linear_solver=linear_solver)
    ref = _scipy_fit(numpy_residuals, [0.5, 0.5])
    assert res.success
    np.testing.assert_allclose(res.x, ref.x, atol=1e-8)
    # by hand: x0 = 1.25 (mean of 1 and 1.5), x1 = 3 / 1.25; cost 0.5 (2 * 0.25**2 + 4 + 9)
    np.testing.assert_allclose(res.x, [1.25, 2.4], atol=1e-8)
    assert res.cost == pytest.approx(ref.cost, abs=1e-12)
    assert res.cost == pytest.approx(0.5 * (2 * 0.25**2 + 4.0 + 9.0), abs=1e-12)


@pytest.mark.parametrize("jacobian", ["graph", "compiled"])
def test_only_constant_residuals(jacobian: str) -> None:
    p = sa.Value(0.5)
    res = sa.nonlinear_least_squares([p], lambda q: [sa.Value(2.0), sa.Value(1.0) * 3.0],
                                     jacobian=jacobian)
    assert res.status is Status.NO_PARAMS_AFFECT_RESIDUALS
    assert res.cost == pytest.approx(0.5 * (4.0 + 9.0))
    assert p.data == 0.5


@pytest.mark.parametrize("jacobian", JACOBIANS)
@pytest.mark.parametrize("linear_solver", ["dense", "sparse_cholesky", "auto"])
def test_problem_blocks_with_constant_outputs(jacobian: str, linear_solver: str) -> None:
    problem = sa.LeastSquaresProblem([0.5, 0.5])
    problem.add_block(lambda p, d: [p[0] - d[0], sa.Value(2.0) * 1.0],
                      param_index=[[0], [0]], data=[[1.0, 1.5]])
    problem.add_block(lambda p, d: sa.Value(3.0), param_index=[[1]])     # all constant
    problem.add_block(lambda p, d: p[0] * p[1] - 3.0, param_index=[[0, 1]])
    res = problem.solve(jacobian=jacobian, linear_solver=linear_solver)

    def numpy_residuals(x):
        return [x[0] - 1.0, 2.0, x[0] - 1.5, 2.0, 3.0, x[0] * x[1] - 3.0]

    ref = _scipy_fit(numpy_residuals, [0.5, 0.5])
    assert res.success
    np.testing.assert_allclose(res.x, ref.x, atol=1e-8)
    np.testing.assert_allclose(res.x, [1.25, 2.4], atol=1e-8)
    assert res.cost == pytest.approx(ref.cost, abs=1e-12)
    np.testing.assert_allclose(problem.residuals(), numpy_residuals(res.x), atol=1e-12)


# ------------------------------------------------------------ 2. robust losses
def _mp_rho(name: str, z: float) -> float:
    """rho(z) in 50-digit arithmetic (the textbook formulas, cancellation and all)."""
    mpmath.mp.dps = 50
    zm = mpmath.mpf(z)
    if name == "linear":
        return float(zm)
    if name == "huber":
        return float(zm if zm <= 1 else 2 * mpmath.sqrt(zm) - 1)
    if name == "soft_l1":
        return float(2 * (mpmath.sqrt(1 + zm) - 1))
    if name == "cauchy":
        return float(mpmath.log(1 + zm))
    return float(mpmath.atan(zm))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("r", [1e-12, 1e-9, 3e-8, 1e-4, 0.5, 1.0, 7.0, 1e5])
def test_rho_is_accurate_for_small_and_large_residuals(loss: str, r: float) -> None:
    z = r * r
    rho = float(evaluate_loss(loss, np.array([r]), scale=1.0)[0][0])
    assert rho == pytest.approx(_mp_rho(loss, z), rel=4e-16, abs=0.0)
    assert rho > 0.0


def test_soft_l1_cost_of_tiny_residuals_is_not_zero() -> None:
    # 2 * (sqrt(1 + 1e-18) - 1) is exactly 0 in double precision; the cost is 0.5 * z
    r = np.array([1e-9, -2e-9])
    rho = evaluate_loss("soft_l1", r, scale=1.0)[0]
    np.testing.assert_allclose(rho, [1e-18, 4e-18], rtol=1e-15)


def _soft_l1_for_scipy(z: np.ndarray) -> np.ndarray:
    """scipy's soft_l1 as a callable loss, rho written without cancellation."""
    t = 1.0 + z
    return np.stack([2.0 * z / (np.sqrt(t) + 1.0), t**-0.5, -0.5 * t**-1.5])


def _decay_with_tiny_noise():
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 2.0, 25)
    y = 2.0 * np.exp(-1.5 * t) + 1e-9 * rng.standard_normal(t.size)
    return t, y


@pytest.mark.parametrize("jacobian", JACOBIANS)
@pytest.mark.parametrize("loss", LOSSES)
def test_a_fit_starting_at_residuals_of_1e_9_moves_to_its_optimum(
        jacobian: str, loss: str) -> None:
    t, y = _decay_with_tiny_noise()
    x0 = np.array([2.0, 1.5])                   # the noiseless truth: |r| ~ 1e-9 there
    a, k = sa.Value(x0[0]), sa.Value(x0[1])
    res = sa.nonlinear_least_squares(
        [a, k], lambda p: [p[0] * sa.exp(-p[1] * ti) - yi for ti, yi in zip(t, y)],
        loss=loss, jacobian=jacobian)

    def fun(x):
        return x[0] * np.exp(-x[1] * t) - y

    def jac(x):
        e = np.exp(-x[1] * t)
        return np.stack([e, -x[0] * t * e], axis=1)

    ref = _scipy_fit(fun, x0, jac=jac, x_scale="jac",
                     loss=_soft_l1_for_scipy if loss == "soft_l1" else loss)
    assert res.status is not Status.ZERO_RESIDUAL and res.success
    assert res.cost > 0.0
    assert np.max(np.abs(ref.x - x0)) > 1e-10          # the optimum is elsewhere ...
    np.testing.assert_allclose(res.x, ref.x, rtol=0.0, atol=1e-14)   # ... and found
    assert res.cost == pytest.approx(ref.cost, rel=1e-6)
    # residuals this small see every loss as linear: curve_fit agrees too
    popt, _ = scipy_optimize.curve_fit(lambda t, a, k: a * np.exp(-k * t), t, y, p0=x0,
                                       xtol=1e-15, ftol=1e-15, gtol=1e-15)
    np.testing.assert_allclose(res.x, popt, rtol=0.0, atol=1e-14)


def test_soft_l1_is_scipys_soft_l1_away_from_cancellation() -> None:
    # residuals of order 1 (no cancellation in scipy's own form): the same optimum
    rng = np.random.default_rng(5)
    t = np.linspace(0.0, 3.0, 40)
    y = 2.0 * np.exp(-0.7 * t) + rng.normal(scale=0.3, size=t.size)
    y[::7] += 3.0                                                  # outliers
    res = sa.nonlinear_least_squares(
        [sa.Value(1.0), sa.Value(1.0)],
        lambda p: [p[0] * sa.exp(-p[1] * ti) - yi for ti, yi in zip(t, y)],
        loss="soft_l1", loss_scale=0.5)
    ref = _scipy_fit(lambda x: x[0] * np.exp(-x[1] * t) - y, [1.0, 1.0], loss="soft_l1",
                     f_scale=0.5)
    assert res.success
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-7)
    assert res.cost == pytest.approx(ref.cost, rel=1e-10)


@pytest.mark.parametrize("loss", LOSSES)
def test_exactly_zero_residuals_still_stop_as_zero_residual(loss: str) -> None:
    t = np.linspace(0.0, 1.0, 5)
    res = sa.nonlinear_least_squares(
        [sa.Value(3.0), sa.Value(1.0)],
        lambda p: [p[0] + p[1] * ti - (3.0 + ti) for ti in t], loss=loss)
    assert res.status is Status.ZERO_RESIDUAL and res.cost == 0.0
    assert res.x.tolist() == [3.0, 1.0]


# ------------------------------------------------------------ 3. covariance
def _noisy_decay(seed: int = 3):
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 4.0, 40)
    return t, 2.5 * np.exp(-1.3 * t) + 0.5 + rng.normal(scale=0.05, size=t.size)


def test_covariance_of_a_parameter_no_residual_uses_is_inf() -> None:
    t, y = _noisy_decay()
    m = t.size
    a, k, c, unused = sa.Value(1.0), sa.Value(1.0), sa.Value(0.0), sa.Value(7.0)
    res = sa.nonlinear_least_squares(
        [a, k, unused, c],
        lambda p: [p[0] * sa.exp(-p[1] * ti) + p[3] - yi for ti, yi in zip(t, y)])
    with pytest.warns(CovarianceWarning, match=r"for 1 of 4 parameters \(2\)"):
        cov = res.covariance()
    with pytest.warns(CovarianceWarning):
        errors = res.standard_errors()
    assert np.isposinf(cov[2, :]).all() and np.isposinf(cov[:, 2]).all()
    assert errors[2] == np.inf                     # never 0: the data say nothing of it
    # the three determined parameters: curve_fit on the model without the unused one,
    # rescaled from its m - 3 degrees of freedom to our m - 4
    popt, pcov = scipy_optimize.curve_fit(lambda t, a, k, c: a * np.exp(-k * t) + c, t, y,
                                          p0=[1.0, 1.0, 0.0])
    determined = [0, 1, 3]
    np.testing.assert_allclose(res.x[determined], popt, rtol=1e-6)
    np.testing.assert_allclose(cov[np.ix_(determined, determined)],
                               pcov * (m - 3) / (m - 4), rtol=1e-5)
    np.testing.assert_allclose(errors[determined], np.sqrt(np.diag(pcov) * (m - 3) / (m - 4)),
                               rtol=1e-5)


@pytest.mark.parametrize("absolute_sigma", [False, True])
@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_covariance_when_only_a_sum_of_parameters_is_determined(
        absolute_sigma: bool, path: str) -> None:
    t, y = _noisy_decay(seed=8)
    m = t.size
    # p0 and p1 enter only through p0 + p1: J has rank 3 of 4
    problem = sa.LeastSquaresProblem([1.0, 0.5, 1.0, 0.0])
    problem.add_block(lambda p, d: (p[0] + p[1]) * sa.exp(-p[2] * d[0]) + p[3] - d[1],
                      param_index=np.tile([0, 1, 2, 3], (m, 1)), data=[t, y])
    res = problem.solve(jacobian="graph",
                        linear_solver="sparse_cholesky" if path == "sparse" else "dense")
    assert hasattr(res.jacobian, "tocsr") == (path == "sparse")
    with pytest.warns(CovarianceWarning, match=r"2 of 4 parameters \(0, 1\).*rank 3"):
        cov = res.covariance(absolute_sigma=absolute_sigma)
    assert np.isposinf(cov[[0, 1], :]).all() and np.isposinf(cov[:, [0, 1]]).all()
    # the oracle: curve_fit on the identifiable parametrisation q = p0 + p1
    popt, pcov = scipy_optimize.curve_fit(lambda t, q, k, c: q * np.exp(-k * t) + c, t, y,
                                          p0=[1.5, 1.0, 0.0], absolute_sigma=absolute_sigma)
    assert res.x[0] + res.x[1] == pytest.approx(popt[0], rel=1e-6)
    np.testing.assert_allclose(res.x[2:], popt[1:], rtol=1e-6)
    dof_ratio = 1.0 if absolute_sigma else (m - 3) / (m - 4)
    np.testing.assert_allclose(cov[2:, 2:], pcov[1:, 1:] * dof_ratio, rtol=1e-5)


def test_covariance_of_a_full_rank_fit_does_not_warn() -> None:
    t, y = _noisy_decay()
    res = sa.nonlinear_least_squares(
        [sa.Value(1.0), sa.Value(1.0), sa.Value(0.0)],
        lambda p: [p[0] * sa.exp(-p[1] * ti) + p[2] - yi for ti, yi in zip(t, y)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov = res.covariance()
    _, pcov = scipy_optimize.curve_fit(lambda t, a, k, c: a * np.exp(-k * t) + c, t, y,
                                       p0=[1.0, 1.0, 0.0])
    np.testing.assert_allclose(cov, pcov, rtol=1e-5)


def test_covariance_with_too_few_residuals_is_inf_and_warns_as_curve_fit() -> None:
    res = sa.nonlinear_least_squares([sa.Value(0.0), sa.Value(0.0)],
                                     lambda p: [p[0] - 1.0, p[1] + 2.0])
    with pytest.warns(CovarianceWarning, match="m=2 residuals and n=2 parameters"):
        cov = res.covariance()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # curve_fit's OptimizeWarning, the same case
        _, pcov = scipy_optimize.curve_fit(lambda x, a, b: np.where(x == 0, a, b),
                                           np.array([0.0, 1.0]), np.array([1.0, -2.0]))
    assert np.isinf(pcov).all() and np.isinf(cov).all()
    # with known standard deviations the variance is not estimated: finite, (J^T J)^-1
    np.testing.assert_allclose(res.covariance(absolute_sigma=True), np.eye(2), atol=1e-12)


def test_covariance_warning_is_a_runtime_warning() -> None:
    assert issubclass(CovarianceWarning, RuntimeWarning)


# ------------------------------------------------------------ 4. residuals(x) checks
def _line_problem() -> sa.LeastSquaresProblem:
    t = np.array([0.0, 1.0, 2.0])
    y = np.array([1.0, 3.0, 4.0])
    problem = sa.LeastSquaresProblem([0.0, 0.0])
    problem.add_block(lambda p, d: p[0] + p[1] * d[0] - d[1],
                      param_index=np.tile([0, 1], (3, 1)), data=[t, y])
    return problem


@pytest.mark.parametrize("x", [[0.5, 2.0], (0.5, 2.0), np.array([0.5, 2.0]),
                               np.array([1, 4]) / 2, [np.float32(0.5), 2]])
def test_problem_residuals_at_an_x(x) -> None:
    problem = _line_problem()
    x_np = np.asarray(x, dtype=float)
    expected = x_np[0] + x_np[1] * np.array([0.0, 1.0, 2.0]) - np.array([1.0, 3.0, 4.0])
    np.testing.assert_allclose(problem.residuals(x), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(problem.residuals(), [-1.0, -3.0, -4.0])   # self.x = 0


@pytest.mark.parametrize(("x", "message"), [
    ([1.0], r"x must be a 1-D array of n_params = 2 parameters; got shape \(1,\)"),
    ([1.0, 2.0, 3.0], r"got shape \(3,\)"),
    ([[1.0, 2.0]], r"got shape \(1, 2\)"),
    (1.0, r"got shape \(\)"),
])
def test_problem_residuals_rejects_a_wrong_length(x, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _line_problem().residuals(x)


@pytest.mark.parametrize(("x", "shown"), [
    (["1", "2"], "str '1'"),
    ([1 + 2j, 0.0], "complex"),
    (np.array([1.0, 2.0], dtype=complex), "complex"),
    ([None, 1.0], "NoneType None"),
    ("12", "str '12'"),
    ([sa.Value(1.0), 2.0], "Value"),
])
def test_problem_residuals_rejects_non_numbers(x, shown: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no ComplexWarning on the way
        with pytest.raises(TypeError, match=r"^x must .*real numbers.*" + shown):
            _line_problem().residuals(x)


# ------------------------------------------------------------ 5. option error types
WRONG_TYPES = [
    ("max_iterations", "10"), ("max_iterations", 2.5), ("max_iterations", True),
    ("max_iterations", None), ("cost_tolerance", "1e-8"), ("param_tolerance", None),
    ("gradient_tolerance", [1e-8]), ("gradient_tolerance", True), ("initial_damping", "1"),
    ("loss", 3), ("loss", None), ("loss_scale", "1"), ("linear_solver", 0),
    ("verbose", 1), ("geodesic_acceleration", "yes"), ("callback", 3),
]
WRONG_VALUES = [
    ("max_iterations", 0), ("max_iterations", -3), ("cost_tolerance", -1.0),
    ("param_tolerance", float("nan")), ("gradient_tolerance", float("inf")),
    ("initial_damping", 0.0), ("loss", "l2"), ("loss_scale", -1.0),
    ("linear_solver", "qr"), ("cost_tolerance", 10**400),
]


@pytest.mark.parametrize(("option", "value"), WRONG_TYPES)
def test_lsq_option_of_the_wrong_type_is_a_type_error(option: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"`{option}`") as info:
        sa.nonlinear_least_squares([sa.Value(1.0)], lambda q: [q[0]], **{option: value})
    assert type(value).__name__ in str(info.value)
    with pytest.raises(TypeError, match=f"`{option}`"):
        _line_problem().solve(**{option: value})


@pytest.mark.parametrize(("option", "value"), WRONG_VALUES)
def test_lsq_option_of_a_wrong_value_is_a_value_error(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"`{option}`"):
        validate_options(**{option: value})
    with pytest.raises(ValueError, match=f"`{option}`"):
        _line_problem().solve(**{option: value})


def test_jacobian_mode_errors() -> None:
    with pytest.raises(TypeError, match="`jacobian` must be one of .*; got NoneType None"):
        validate_jacobian_mode(None)
    with pytest.raises(ValueError, match="`jacobian` must be one of .*; got 'numeric'"):
        validate_jacobian_mode("numeric")


def _sa_param() -> sa.Value:
    return sa.Value(1.0, requires_grad=True)


# the same wrong input given to an lsq option and to an optim option: the same type
@pytest.mark.parametrize(("value", "error"), [
    ("10", TypeError), (2.5, TypeError), (True, TypeError), (0, ValueError),
])
def test_iteration_counts_fail_alike_in_lsq_and_optim(value: object, error: type) -> None:
    with pytest.raises(error, match="`max_iterations` must be a positive integer"):
        validate_options(max_iterations=value)
    with pytest.raises(error, match="`max_iterations` must be a positive integer"):
        sa.lbfgs(lambda p: p[0] * p[0], [_sa_param()], max_iterations=value)


@pytest.mark.parametrize(("value", "error"), [
    ("0.1", TypeError), (True, TypeError), (float("nan"), ValueError), (-1.0, ValueError),
    (10**400, ValueError),
])
def test_real_options_fail_alike_in_lsq_and_optim(value: object, error: type) -> None:
    with pytest.raises(error, match="`loss_scale`"):
        validate_options(loss_scale=value)
    with pytest.raises(error, match="`lr`"):
        sa.SGD([_sa_param()], lr=value)
