"""``sa.curve_fit``: scipy's ``curve_fit``, model written with ``sa`` ops for one sample.

Every expected number comes from an independent oracle: ``scipy.optimize.curve_fit``
(or ``scipy.optimize.least_squares``) on the same model written in numpy, or a known
truth (the error types and messages the API documents, the number of times the model
is traced). Never from the code under test.
"""

from __future__ import annotations

import importlib
import re
import threading
import warnings

import numpy as np
import pytest

import scalar_autograd as sa

curve_fit_module = importlib.import_module("scalar_autograd.lsq.curve_fit")

so = pytest.importorskip("scipy.optimize")

TIGHT = {"ftol": 1e-14, "xtol": 1e-14, "gtol": 1e-14}
"""scipy's tolerances for an oracle solved to rounding (not the 1.5e-8 defaults)."""


# ---------------------------------------------------------------------------- models
def decay(x, a, b, c):
    return a * sa.exp(-b * x) + c


def decay_np(x, a, b, c):
    return a * np.exp(-b * x) + c


def gauss(x, a, mu, s):
    return a * sa.exp(-0.5 * ((x - mu) / s) ** 2)


def gauss_np(x, a, mu, s):
    return a * np.exp(-0.5 * ((x - mu) / s) ** 2)


def plane(x, a, b, c):
    """Two x components: ``x[0]``, ``x[1]``."""
    return a * x[0] + b * sa.sin(x[1]) + c * x[0] * x[1]


def plane_np(x, a, b, c):
    return a * x[0] + b * np.sin(x[1]) + c * x[0] * x[1]


@pytest.fixture(scope="module")
def decay_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20240515)
    t = np.linspace(0.0, 4.0, 200)
    return t, decay_np(t, 2.5, 1.3, 0.5) + 0.02 * rng.standard_normal(t.size)


@pytest.fixture(scope="module")
def gauss_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = np.linspace(-3.0, 3.0, 60)
    sigma = rng.uniform(0.02, 0.1, x.size)
    return x, gauss_np(x, 2.0, 0.3, 0.8) + sigma * rng.standard_normal(x.size), sigma


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """The largest entry of ``|a - b|`` relative to the largest of ``|b|``."""
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


# ---------------------------------------------------------------------------- scipy
def test_exponential_decay_matches_scipy(decay_data) -> None:
    t, y = decay_data
    popt, pcov = sa.curve_fit(decay, t, y, p0=[1.0, 1.0, 1.0])
    popt_s, pcov_s = so.curve_fit(decay_np, t, y, p0=[1.0, 1.0, 1.0])
    np.testing.assert_allclose(popt, popt_s, rtol=1e-7)
    np.testing.assert_allclose(pcov, pcov_s, rtol=1e-5)
    assert popt.shape == (3,) and pcov.shape == (3, 3)
    assert popt.dtype == np.float64 and pcov.dtype == np.float64
    np.testing.assert_array_equal(pcov, pcov.T)


def test_exponential_decay_to_rounding(decay_data) -> None:
    """With scipy solved to rounding the two agree far below the default tolerances."""
    t, y = decay_data
    popt, pcov = sa.curve_fit(decay, t, y, p0=[1.0, 1.0, 1.0])
    popt_s, pcov_s = so.curve_fit(decay_np, t, y, p0=[1.0, 1.0, 1.0], **TIGHT)
    np.testing.assert_allclose(popt, popt_s, rtol=1e-9)
    assert rel(pcov, pcov_s) < 1e-7


def test_gaussian_matches_scipy(gauss_data) -> None:
    x, y, _ = gauss_data
    popt, pcov = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0])
    popt_s, pcov_s = so.curve_fit(gauss_np, x, y, p0=[1.0, 0.0, 1.0], **TIGHT)
    np.testing.assert_allclose(popt, popt_s, rtol=1e-8)
    # some covariances are ~0 by symmetry: compare against the matrix's scale
    assert rel(pcov, pcov_s) < 1e-6


def test_two_component_x_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    X = rng.uniform(-1.0, 1.0, (2, 50))
    y = plane_np(X, 1.0, 2.0, 3.0) + 0.01 * rng.standard_normal(50)
    popt, pcov = sa.curve_fit(plane, X, y, p0=[0.0, 0.0, 0.0])
    popt_s, pcov_s = so.curve_fit(plane_np, X, y, p0=[0.0, 0.0, 0.0], **TIGHT)
    np.testing.assert_allclose(popt, popt_s, rtol=1e-9)
    assert rel(pcov, pcov_s) < 1e-8


def test_one_component_2d_x_is_a_list_of_one() -> None:
    """``xdata`` of shape ``(1, m)``: ``x`` is a list of one Value (scipy passes the
    2-D array, which the model indexes the same way)."""
    x = np.linspace(0.0, 1.0, 20)
    y = 3.0 * x + 1.0

    def line(x, a, b):
        assert isinstance(x, list) and len(x) == 1
        return a * x[0] + b

    popt, _ = sa.curve_fit(line, x[None, :], y, p0=[0.0, 0.0])
    np.testing.assert_allclose(popt, [3.0, 1.0], rtol=1e-12)


@pytest.mark.parametrize("absolute_sigma", [True, False])
def test_sigma_1d_matches_scipy(gauss_data, absolute_sigma: bool) -> None:
    x, y, sigma = gauss_data
    popt, pcov = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], sigma=sigma,
                              absolute_sigma=absolute_sigma)
    popt_s, pcov_s = so.curve_fit(gauss_np, x, y, p0=[1.0, 0.0, 1.0], sigma=sigma,
                                  absolute_sigma=absolute_sigma, **TIGHT)
    np.testing.assert_allclose(popt, popt_s, rtol=1e-8)
    assert rel(pcov, pcov_s) < 1e-6


def test_absolute_sigma_is_unscaled(gauss_data) -> None:
    """``absolute_sigma=False`` multiplies the absolute ``pcov`` by the reduced
    chi-square ``sum(r**2) / (m - n)`` (the definition, computed here in numpy)."""
    x, y, sigma = gauss_data
    popt, absolute = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], sigma=sigma,
                                  absolute_sigma=True)
    _, relative = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], sigma=sigma)
    chi2 = np.sum(((gauss_np(x, *popt) - y) / sigma) ** 2) / (x.size - 3)
    np.testing.assert_allclose(relative, absolute * chi2, rtol=1e-12)


@pytest.mark.parametrize("absolute_sigma", [True, False])
def test_sigma_2d_covariance_matches_scipy(gauss_data, absolute_sigma: bool) -> None:
    x, y, sigma = gauss_data
    rng = np.random.default_rng(11)
    A = 0.01 * rng.standard_normal((x.size, x.size))
    cov = A @ A.T + np.diag(sigma**2)
    popt, pcov = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], sigma=cov,
                              absolute_sigma=absolute_sigma)
    popt_s, pcov_s = so.curve_fit(gauss_np, x, y, p0=[1.0, 0.0, 1.0], sigma=cov,
                                  absolute_sigma=absolute_sigma, **TIGHT)
    np.testing.assert_allclose(popt, popt_s, rtol=1e-8)
    assert rel(pcov, pcov_s) < 1e-6


@pytest.mark.parametrize("absolute_sigma", [True, False])
def test_scalar_sigma_is_one_for_every_sample(gauss_data, absolute_sigma: bool) -> None:
    """scipy takes a scalar ``sigma`` (size 1) as the same error for every sample."""
    x, y, _ = gauss_data
    popt, pcov = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], sigma=0.05,
                              absolute_sigma=absolute_sigma)
    popt_s, pcov_s = so.curve_fit(gauss_np, x, y, p0=[1.0, 0.0, 1.0], sigma=0.05,
                                  absolute_sigma=absolute_sigma, **TIGHT)
    np.testing.assert_allclose(popt, popt_s, rtol=1e-8)
    assert rel(pcov, pcov_s) < 1e-6
    same = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], sigma=np.full(x.size, 0.05),
                        absolute_sigma=absolute_sigma)
    np.testing.assert_array_equal(popt, same[0])
    np.testing.assert_array_equal(pcov, same[1])


def test_diagonal_covariance_is_the_1d_sigma(gauss_data) -> None:
    x, y, sigma = gauss_data
    p1, c1 = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], sigma=sigma)
    p2, c2 = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], sigma=np.diag(sigma**2))
    np.testing.assert_allclose(p2, p1, rtol=1e-10)
    np.testing.assert_allclose(c2, c1, rtol=1e-7)


def test_p0_none_counts_params_from_signature(decay_data) -> None:
    t, y = decay_data
    popt, pcov = sa.curve_fit(decay, t, y)
    popt_s, pcov_s = so.curve_fit(decay_np, t, y, **TIGHT)
    assert popt.shape == (3,)
    np.testing.assert_allclose(popt, popt_s, rtol=1e-9)
    np.testing.assert_array_equal(popt, sa.curve_fit(decay, t, y, p0=np.ones(3))[0])


def test_p0_none_with_star_params_needs_p0() -> None:
    with pytest.raises(ValueError, match="p0 is needed"):
        sa.curve_fit(lambda x, *p: p[0] * x, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least one parameter"):
        sa.curve_fit(lambda x: x, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])


def test_linear_model_matches_numpy_lstsq() -> None:
    """A model linear in its params: the least-squares solution of numpy's lstsq and
    the covariance ``s^2 (A^T A)^-1`` of the textbook."""
    rng = np.random.default_rng(5)
    x = np.linspace(-1.0, 1.0, 40)
    y = 0.5 - 2.0 * x + 3.0 * x**2 + 0.1 * rng.standard_normal(x.size)
    popt, pcov = sa.curve_fit(lambda x, a, b, c: a + b * x + c * x * x, x, y)
    A = np.stack([np.ones_like(x), x, x**2], axis=1)
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    s2 = np.sum((A @ coef - y) ** 2) / (x.size - 3)
    np.testing.assert_allclose(popt, coef, rtol=1e-9)
    assert rel(pcov, s2 * np.linalg.inv(A.T @ A)) < 1e-10


# ---------------------------------------------------------------------------- covariance
@pytest.mark.parametrize("m", [2, 3])
def test_too_few_points_gives_inf_pcov_and_warns(m: int) -> None:
    """``m <= n``: no residual variance to scale by, ``pcov`` is inf (scipy's rule; its
    ``method="lm"`` refuses ``m < n``, so scipy is the oracle for ``m == n``)."""
    x = np.array([0.1, 0.5, 0.9])[:m]
    y = np.array([1.0, 2.0, 2.5])[:m]
    with pytest.warns(sa.CovarianceWarning) as record:
        popt, pcov = sa.curve_fit(lambda x, a, b, c: a + b * x + c * x * x, x, y)
    assert record[0].filename == __file__           # points at the caller
    assert pcov.shape == (3, 3) and np.all(np.isinf(pcov))
    np.testing.assert_allclose(popt[0] + popt[1] * x + popt[2] * x**2, y, atol=1e-10)
    if m < 3:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", so.OptimizeWarning)
        _, pcov_s = so.curve_fit(lambda x, a, b, c: a + b * x + c * x * x, x, y)
    assert np.all(np.isinf(pcov_s))


def test_m_equals_n_with_absolute_sigma_is_finite_like_scipy() -> None:
    x = np.array([0.1, 0.5, 0.9])
    y = np.array([1.0, 2.0, 2.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, pcov = sa.curve_fit(lambda x, a, b, c: a + b * x + c * x * x, x, y,
                               absolute_sigma=True)
    _, pcov_s = so.curve_fit(lambda x, a, b, c: a + b * x + c * x * x, x, y,
                             absolute_sigma=True)
    np.testing.assert_allclose(pcov, pcov_s, rtol=1e-8)


def test_unidentifiable_params_get_scipys_pseudo_inverse() -> None:
    """``a * x + b * x``: ``J`` has two equal columns, ``J^T J`` is singular and
    ``pcov`` is scipy's SVD pseudo-inverse (the Cholesky inverse is refused): scipy's
    ``method="trf"`` rule (its ``"lm"`` inverts the singular R factor). scipy gets the
    exact Jacobian: finite differences would make the columns differ."""
    rng = np.random.default_rng(2)
    x = np.linspace(0.0, 1.0, 30)
    y = 2.0 * x + 0.05 * rng.standard_normal(x.size)
    popt, pcov = sa.curve_fit(lambda x, a, b: a * x + b * x, x, y, p0=[0.3, 0.7])
    assert np.isclose(popt.sum(), np.dot(x, y) / np.dot(x, x), rtol=1e-10)
    J = np.stack([x, x], axis=1)
    s2 = np.sum((popt.sum() * x - y) ** 2) / (x.size - 2)
    np.testing.assert_allclose(pcov, s2 * np.linalg.pinv(J.T @ J), rtol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", so.OptimizeWarning)
        _, pcov_s = so.curve_fit(lambda x, a, b: a * x + b * x, x, y, p0=[0.3, 0.7],
                                 jac=lambda x, a, b: np.stack([x, x], axis=1),
                                 method="trf")
    np.testing.assert_allclose(pcov, pcov_s, rtol=1e-6)


# ---------------------------------------------------------------------------- failures
def test_non_converging_fit_raises_runtime_error(gauss_data) -> None:
    x, y, _ = gauss_data
    with pytest.raises(RuntimeError, match="Optimal parameters not found.*maximum number "
                                           "of iterations"):
        sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], maxfev=2)
    with pytest.raises(RuntimeError, match="Optimal parameters not found"):
        so.curve_fit(gauss_np, x, y, p0=[1.0, 0.0, 1.0], maxfev=2)


def test_check_finite_raises_on_nan_and_inf(decay_data) -> None:
    t, y = decay_data
    y_nan = y.copy()
    y_nan[10] = np.nan
    with pytest.raises(ValueError, match="ydata must not hold nan or inf"):
        sa.curve_fit(decay, t, y_nan)
    t_inf = t.copy()
    t_inf[3] = np.inf
    with pytest.raises(ValueError, match="xdata must not hold nan or inf"):
        sa.curve_fit(decay, t_inf, y)
    with pytest.raises(ValueError):                 # scipy's rule too
        so.curve_fit(decay_np, t, y_nan)
    # without the check the residuals are nan at the start: the fit fails
    with pytest.raises(RuntimeError, match="not finite"):
        sa.curve_fit(decay, t, y_nan, check_finite=False)


def test_nan_p0_raises(decay_data) -> None:
    t, y = decay_data
    with pytest.raises(ValueError, match="p0 must be finite"):
        sa.curve_fit(decay, t, y, p0=[1.0, np.nan, 1.0])


# ---------------------------------------------------------------------------- bad arguments
X10 = np.linspace(0.0, 1.0, 10)
Y10 = 2.0 * np.exp(-X10)


@pytest.mark.parametrize("kwargs,error,pattern", [
    ({"ydata": Y10[:5]}, ValueError, r"ydata must have shape \(10,\).*got \(5,\)"),
    ({"ydata": np.stack([Y10, Y10], 1)}, ValueError, r"ydata must have shape \(10,\)"),
    ({"ydata": "abc"}, TypeError, r"ydata must be an array of real numbers.*str"),
    ({"xdata": "abc"}, TypeError, r"xdata must be an array of real numbers"),
    ({"xdata": np.ones((2, 2, 10))}, ValueError, r"xdata must have shape \(m,\) or \(k, m\)"),
    ({"f": 3}, TypeError, r"f must be callable.*int"),
    ({"f": 3, "p0": None}, TypeError, r"f must be callable.*int"),
    ({"p0": "ab"}, TypeError, r"p0 must be an array of real numbers"),
    ({"p0": []}, ValueError, r"p0 must hold at least one parameter"),
    ({"sigma": -np.ones(10)}, ValueError, r"sigma must hold positive finite numbers.*-1\.0"),
    ({"sigma": np.zeros(10)}, ValueError, r"sigma must hold positive finite numbers.*0\.0"),
    ({"sigma": np.full(10, np.inf)}, ValueError, r"sigma must hold positive finite"),
    ({"sigma": np.ones(4)}, ValueError, r"sigma must have shape \(10,\).*got \(4,\)"),
    ({"sigma": np.ones((2, 2, 2))}, ValueError, r"sigma must have shape"),
    ({"sigma": np.ones((10, 9))}, ValueError, r"sigma must have shape \(10,\) or \(10, 10\)"),
    ({"sigma": -np.eye(10)}, ValueError, r"sigma \(a covariance matrix\) must be positive "
                                         r"definite"),
    ({"sigma": np.full((10, 10), np.nan)}, ValueError, r"sigma \(a covariance matrix\) "
                                                       r"must hold finite numbers"),
    ({"sigma": -1.0}, ValueError, r"sigma must hold positive finite numbers"),
    ({"foo": 1}, TypeError, r"unknown option 'foo'.*max_iterations.*ftol"),
    ({"ftol": 1e-3, "cost_tolerance": 1e-3}, TypeError,
     r"option 'cost_tolerance' given twice: as 'ftol' and as 'cost_tolerance'"),
    ({"maxfev": 0}, ValueError, r"max_iterations"),
    ({"ftol": "tight"}, TypeError, r"cost_tolerance"),
    ({"loss": "l3"}, ValueError, r"loss"),
    ({"bounds": (0.0,)}, ValueError, r"bounds must be a pair \(lower, upper\).*got \(0\.0,\)"),
    ({"bounds": 5}, TypeError, r"bounds must be a pair.*got int 5"),
    ({"bounds": (1.0, 2.0, 3.0)}, ValueError, r"bounds must be a pair"),
    ({"bounds": ([0.0] * 3, [1.0] * 3)}, ValueError, r"bounds must be a pair.*length 2"),
    ({"bounds": (1.0, 0.0)}, ValueError, r"bounds: each lower bound must be below its upper"),
    ({"bounds": ([0.0, 2.0], [1.0, 2.0])}, ValueError, r"lower bound must be below"),
])
def test_bad_arguments_name_the_argument(kwargs, error, pattern) -> None:
    args = {"f": lambda x, a, b: a * sa.exp(-b * x), "xdata": X10, "ydata": Y10,
            "p0": [1.0, 1.0]}
    args.update(kwargs)
    f, xdata, ydata = args.pop("f"), args.pop("xdata"), args.pop("ydata")
    with pytest.raises(error, match=pattern):
        sa.curve_fit(f, xdata, ydata, **args)


@pytest.mark.parametrize("bounds", [(0.0, 10.0), (-np.inf, [np.inf, 5.0]),
                                    ([0.0, -np.inf], np.inf)])
def test_finite_bounds_that_do_not_bind_give_the_unbounded_fit(bounds) -> None:
    # bounded fits (scipy's trf) are tested against scipy in test_lsq_bounds.py
    popt, _ = sa.curve_fit(lambda x, a, b: a * sa.exp(-b * x), X10, Y10, p0=[1.0, 1.0],
                           bounds=bounds)
    np.testing.assert_allclose(popt, [2.0, 1.0], rtol=1e-8)


def test_infinite_bounds_spelled_out_are_unbounded() -> None:
    p1, c1 = sa.curve_fit(lambda x, a, b: a * sa.exp(-b * x), X10, Y10, p0=[1.0, 1.0])
    p2, c2 = sa.curve_fit(lambda x, a, b: a * sa.exp(-b * x), X10, Y10, p0=[1.0, 1.0],
                          bounds=(-np.inf, np.inf))
    p3, _ = sa.curve_fit(lambda x, a, b: a * sa.exp(-b * x), X10, Y10, p0=[1.0, 1.0],
                         bounds=([-np.inf, -np.inf], [np.inf, np.inf]))
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(p1, p3)
    np.testing.assert_allclose(p1, [2.0, 1.0], rtol=1e-10)


# ---------------------------------------------------------------------------- options
@pytest.mark.parametrize("alias,name,value", [
    ("ftol", "cost_tolerance", 1e-4), ("xtol", "param_tolerance", 1e-4),
    ("gtol", "gradient_tolerance", 1e-3), ("maxfev", "max_iterations", 4)])
def test_scipy_option_aliases(gauss_data, alias: str, name: str, value) -> None:
    """scipy's spelling gives exactly the result of the option it names."""
    x, y, _ = gauss_data

    def fit(**options):
        try:
            return sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], **options)
        except RuntimeError as e:
            return str(e)

    by_alias, by_name = fit(**{alias: value}), fit(**{name: value})
    default = fit()
    if isinstance(by_name, str):
        assert by_alias == by_name
    else:
        np.testing.assert_array_equal(by_alias[0], by_name[0])
        np.testing.assert_array_equal(by_alias[1], by_name[1])
        assert not np.array_equal(by_name[0], default[0])    # the option mattered


def test_enough_maxfev_converges(gauss_data) -> None:
    """Enough ``maxfev`` converges; too little raises scipy's error."""
    x, y, _ = gauss_data
    popt, _ = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], maxfev=200)
    popt_s, _ = so.curve_fit(gauss_np, x, y, p0=[1.0, 0.0, 1.0], **TIGHT)
    np.testing.assert_allclose(popt, popt_s, rtol=1e-8)


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
def test_robust_loss_matches_scipy_least_squares(decay_data, loss: str) -> None:
    """A robust loss runs the numpy loop; scipy's ``least_squares`` minimises the same
    robust cost of the same residuals (and its ``curve_fit(method="trf")`` gives the
    same ``pcov``). Both are solved to rounding (a flat robust cost makes the default
    tolerances stop a few 1e-7 apart)."""
    t, y = decay_data
    y = y.copy()
    y[::17] += 3.0                                   # outliers
    popt, pcov = sa.curve_fit(decay, t, y, p0=[1.0, 1.0, 1.0], loss=loss, **TIGHT)
    lsq = so.least_squares(lambda p: decay_np(t, *p) - y, [1.0, 1.0, 1.0], loss=loss,
                           method="trf", **TIGHT)
    np.testing.assert_allclose(popt, lsq.x, rtol=1e-7)
    popt_s, pcov_s = so.curve_fit(decay_np, t, y, p0=[1.0, 1.0, 1.0], loss=loss,
                                  method="trf", **TIGHT)
    np.testing.assert_allclose(pcov, pcov_s, rtol=1e-6)
    plain, _ = sa.curve_fit(decay, t, y, p0=[1.0, 1.0, 1.0])
    assert np.max(np.abs(plain - popt)) > 1e-3       # the loss made a difference


def test_robust_loss_scale_is_scipys_f_scale(decay_data) -> None:
    t, y = decay_data
    y = y.copy()
    y[::13] -= 0.4
    popt, _ = sa.curve_fit(decay, t, y, p0=[1.0, 1.0, 1.0], loss="soft_l1",
                           loss_scale=0.05, **TIGHT)
    lsq = so.least_squares(lambda p: decay_np(t, *p) - y, [1.0, 1.0, 1.0], loss="soft_l1",
                           f_scale=0.05, method="trf", **TIGHT)
    np.testing.assert_allclose(popt, lsq.x, rtol=1e-7)


def test_numpy_loop_agrees_with_native_loop(gauss_data) -> None:
    """A callback (which the native loop does not take) runs the numpy loop; the two
    give the same fit to rounding."""
    x, y, sigma = gauss_data
    calls = []
    native = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], sigma=sigma)
    numpy = sa.curve_fit(gauss, x, y, p0=[1.0, 0.0, 1.0], sigma=sigma,
                         callback=lambda *a: calls.append(1))
    assert calls
    np.testing.assert_allclose(numpy[0], native[0], rtol=1e-10)
    np.testing.assert_allclose(numpy[1], native[1], rtol=1e-8)


# ---------------------------------------------------------------------------- tracing
def branchy(x, a, b):
    if a > 0:                                        # the line the error names
        return a * x + b
    return b


def test_python_branch_on_a_value_raises_naming_the_line() -> None:
    line = next(i for i, text in enumerate(open(__file__).read().splitlines(), 1)
                if "the line the error names" in text and "if a > 0" in text)
    with pytest.raises(ValueError) as info:
        sa.curve_fit(branchy, X10, Y10, p0=[1.0, 1.0])
    message = str(info.value)
    assert f"test_curve_fit.py:{line}" in message
    assert "sa.where" in message and "'branchy'" in message


def test_branch_with_where_fits() -> None:
    """The same branch with ``sa.where`` stays a branch in the compiled code."""
    x = np.linspace(-1.0, 1.0, 41)
    y = np.where(x > 0.2, 2.0 * (x - 0.2), 0.0) + 1.0
    popt, _ = sa.curve_fit(lambda x, k, c: sa.where(x > 0.2, k * (x - 0.2), 0.0) + c,
                           x, y, p0=[1.0, 0.0])
    np.testing.assert_allclose(popt, [2.0, 1.0], rtol=1e-10)


def test_model_returning_a_non_number_raises() -> None:
    with pytest.raises(TypeError, match="must return Values or real numbers.*str"):
        sa.curve_fit(lambda x, a: "text", X10, Y10, p0=[1.0])


def test_model_is_traced_once_and_cached() -> None:
    calls = []

    def counted(x, a, b):
        calls.append(1)
        return a * sa.exp(-b * x)

    p1, _ = sa.curve_fit(counted, X10, Y10, p0=[1.0, 1.0])
    p2, _ = sa.curve_fit(counted, X10, Y10, p0=[1.5, 0.5])
    x20 = np.linspace(0.0, 2.0, 20)
    p3, _ = sa.curve_fit(counted, x20, 3.0 * np.exp(-0.5 * x20), p0=[1.0, 1.0])
    assert len(calls) == 1                          # one trace for three fits
    np.testing.assert_allclose(p1, [2.0, 1.0], rtol=1e-10)
    np.testing.assert_allclose(p2, [2.0, 1.0], rtol=1e-10)
    np.testing.assert_allclose(p3, [3.0, 0.5], rtol=1e-10)
    # another number of x components is another model: a second trace
    sa.curve_fit(lambda x, a, b: counted(x[0], a, b), X10[None, :], Y10, p0=[1.0, 1.0])
    assert len(calls) == 2


def test_model_cache_is_bounded() -> None:
    limit = curve_fit_module.MAX_CACHED_MODELS
    for i in range(limit + 5):
        curve_fit_module.model_for(lambda x, a, i=i: a * x + i, 0, 1)
    assert len(curve_fit_module._MODELS) <= limit


# ---------------------------------------------------------------------------- threads
def test_concurrent_fits_from_threads(gauss_data) -> None:
    """One cached model fitted from several threads at once: each thread's fits equal
    the serial ones bit for bit."""
    x, y, _ = gauss_data
    starts = [[1.0 + 0.1 * i, 0.05 * i, 1.0] for i in range(8)]
    serial = [sa.curve_fit(gauss, x, y, p0=p) for p in starts]
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            results[t] = [sa.curve_fit(gauss, x, y, p0=p) for p in starts]
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for t in range(4):
        for (p, c), (ps, cs) in zip(results[t], serial):
            np.testing.assert_array_equal(p, ps)
            np.testing.assert_array_equal(c, cs)


def test_runtime_error_names_the_status() -> None:
    """The message carries the solver's status text (scipy's ``mesg``)."""
    with pytest.raises(RuntimeError) as info:
        sa.curve_fit(lambda x, a, b: a * sa.exp(-b * x), X10, Y10, p0=[1.0, 1.0],
                     max_iterations=1)
    assert re.search(r"`max_iterations`", str(info.value))
