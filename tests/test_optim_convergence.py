"""Every optimiser converges on a quadratic and on Rosenbrock (optax's parametrised test)."""

from __future__ import annotations

import numpy as np
import pytest

import scalar_autograd as sa

CENTRE = np.array([1.5, -0.5, 2.0, 0.25, -1.0])
CURVATURE = np.array([1.0, 2.0, 4.0, 6.0, 10.0])


def quadratic(p):
    return sa.sum([c * (x - t) ** 2 for x, c, t in zip(p, CURVATURE, CENTRE)])


def rosenbrock(p):
    a, b = p
    return (1 - a) ** 2 + 100 * (b - a * a) ** 2


PROBLEMS = {
    "quadratic": (quadratic, np.zeros(5), CENTRE),
    "rosenbrock": (rosenbrock, np.array([-1.2, 1.0]), np.array([1.0, 1.0])),
}

# method, options per problem, iterations per problem, tolerance on x
OPTIMISERS = [
    pytest.param("sgd", {"quadratic": {"lr": 0.04}, "rosenbrock": {"lr": 1e-3}},
                 {"quadratic": 500, "rosenbrock": 20000}, 1e-3, id="sgd"),
    pytest.param("sgd", {"quadratic": {"lr": 0.02, "momentum": 0.9},
                         "rosenbrock": {"lr": 5e-4, "momentum": 0.9}},
                 {"quadratic": 500, "rosenbrock": 5000}, 1e-3, id="sgd-momentum"),
    pytest.param("sgd", {"quadratic": {"lr": 0.02, "momentum": 0.9, "nesterov": True},
                         "rosenbrock": {"lr": 5e-4, "momentum": 0.9, "nesterov": True}},
                 {"quadratic": 500, "rosenbrock": 5000}, 1e-3, id="sgd-nesterov"),
    pytest.param("adam", {"quadratic": {"lr": 0.05}, "rosenbrock": {"lr": 0.02}},
                 {"quadratic": 3000, "rosenbrock": 5000}, 1e-3, id="adam"),
    pytest.param("adamw", {"quadratic": {"lr": 0.05, "weight_decay": 1e-5},
                           "rosenbrock": {"lr": 0.02, "weight_decay": 1e-5}},
                 {"quadratic": 3000, "rosenbrock": 5000}, 1e-3, id="adamw"),
    pytest.param("lbfgs", {"quadratic": {}, "rosenbrock": {}},
                 {"quadratic": 100, "rosenbrock": 100}, 1e-5, id="lbfgs"),
]


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("method, options, iterations, tol", OPTIMISERS)
def test_optimiser_converges(method, options, iterations, tol, problem):
    loss_fn, start, solution = PROBLEMS[problem]
    params = [sa.Value(float(v), requires_grad=True) for v in start]
    result = sa.minimize(loss_fn(params), params, method=method,
                         max_iterations=iterations[problem], **options[problem])
    assert result.success, result
    np.testing.assert_allclose(result.x, solution, atol=tol)
    np.testing.assert_allclose([p.data for p in params], result.x, rtol=0, atol=0)
    assert result.fun == pytest.approx(float(loss_fn(params).data), abs=1e-15)


@pytest.mark.parametrize("cls, options", [
    (sa.SGD, {"lr": 0.04}),
    (sa.SGD, {"lr": 0.02, "momentum": 0.9, "nesterov": True}),
    (sa.Adam, {"lr": 0.05}),
    (sa.AdamW, {"lr": 0.05, "weight_decay": 1e-5}),
])
def test_value_api_converges_on_the_quadratic(cls, options):
    params = [sa.Value(0.0, requires_grad=True) for _ in CENTRE]
    opt = cls(params, **options)
    for _ in range(1500):
        opt.zero_grad()
        quadratic(params).backward()
        opt.step()
    np.testing.assert_allclose([p.data for p in params], CENTRE, atol=1e-3)


def test_lbfgs_converges_through_the_value_api():
    params = [sa.Value(float(v), requires_grad=True) for v in np.zeros(5)]
    result = sa.lbfgs(quadratic, params)
    assert result.status is sa.Status.CONVERGED_GRADIENT
    np.testing.assert_allclose([p.data for p in params], CENTRE, atol=1e-6)
    # .grad holds the gradient at the returned point
    assert max(abs(p.grad) for p in params) == pytest.approx(result.grad_norm, abs=1e-15)
