"""``sa.compile_sum``: a per-sample term summed over the rows of a data table.

Oracles: the same sum built eagerly as one graph over the whole table (its value is
the contract, bit for bit, and its ``backward()``), and central finite differences; at
points other than the one the term was traced at, on every backend.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import scalar_autograd as sa

ROWS = 300


def _model(params: list[sa.Value], x: sa.Value, y: sa.Value) -> sa.Value:
    """A small per-sample loss with a branch and a libm call: where the branch goes
    depends on the row's data and the params."""
    a, b, c = params
    z = a * sa.exp(-b * x) + c * sa.sin(x)
    return sa.where(z > y, (z - y) ** 2, 0.5 * sa.abs(z - y))


def _data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 2.0, ROWS)
    return np.column_stack([x, 1.5 * np.exp(-0.7 * x) + 0.3 * rng.standard_normal(ROWS)])


def _eager(theta: np.ndarray, data: np.ndarray, reduce: str
           ) -> tuple[float, np.ndarray]:
    """The whole-table graph at ``theta``, built and differentiated eagerly."""
    params = [sa.Value(float(v), requires_grad=True) for v in theta]
    terms = [_model(params, sa.Value(x), sa.Value(y)) for x, y in data.tolist()]
    loss = sa.sum(terms) if reduce == "sum" else sa.sum(terms) / float(len(terms))
    loss.backward()
    return loss.data, np.array([p.grad for p in params])


def _compiled(data: np.ndarray, reduce: str, backend: str) -> sa.CompiledFunction:
    params = [sa.Value(1.0), sa.Value(0.5), sa.Value(0.0)]     # the traced point
    x, y = sa.Value(0.0), sa.Value(0.0)
    return sa.compile_sum(_model(params, x, y), params, [x, y], data, reduce=reduce,
                          backend=backend)


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_value_is_the_whole_table_graph_and_gradient_its_backward(backend: str,
                                                                  reduce: str) -> None:
    data = _data()
    f = _compiled(data, reduce, backend)
    assert f.stats().row_kernels[0].rows == ROWS
    rng = np.random.default_rng(1)
    for theta in rng.uniform(-2.0, 2.0, (4, 3)):      # never the traced point
        value, grad = f.value_and_grad(theta)
        expected, expected_grad = _eager(theta, data, reduce)
        assert value == expected                      # bit for bit: the same fold
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-14)
        assert f(theta) == expected


def test_gradient_against_finite_differences(backend: str) -> None:
    data = _data(2)
    f = _compiled(data, "mean", backend)
    theta = np.array([0.8, 0.9, -0.4])
    _, grad = f.value_and_grad(theta)
    h = 1e-6
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        fd = (f(theta + e) - f(theta - e)) / (2 * h)
        assert grad[j] == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_flat_program_serves_hessian_and_pickle() -> None:
    data = _data(3)[:40]
    f = _compiled(data, "mean", "llvm")
    theta = np.array([1.2, 0.3, 0.7])
    hessian = f.hessian(theta)
    h = 1e-5
    for j in range(3):                                # columns: differences of gradients
        e = np.zeros(3)
        e[j] = h
        column = (f.value_and_grad(theta + e)[1] - f.value_and_grad(theta - e)[1]) / (2 * h)
        np.testing.assert_allclose(hessian[:, j], column, rtol=1e-5, atol=1e-6)
    copy = pickle.loads(pickle.dumps(f))
    assert copy.value_and_grad(theta)[0] == f.value_and_grad(theta)[0]
    np.testing.assert_allclose(copy.value_and_grad(theta)[1], f.value_and_grad(theta)[1],
                               rtol=1e-13)


def test_bad_data_is_refused_naming_the_argument() -> None:
    params = [sa.Value(1.0)]
    x = sa.Value(0.0)
    term = params[0] * x
    with pytest.raises(ValueError, match="data"):
        sa.compile_sum(term, params, [x], np.zeros((0, 1)))
    with pytest.raises(ValueError, match="data"):
        sa.compile_sum(term, params, [x], np.zeros((3, 2)))
    with pytest.raises(TypeError, match="data"):
        sa.compile_sum(term, params, [x], [["a"]])
    with pytest.raises(ValueError, match="reduce"):
        sa.compile_sum(term, params, [x], np.zeros((3, 1)), reduce="max")
    with pytest.raises(TypeError, match="term"):
        sa.compile_sum(1.0, params, [x], np.zeros((3, 1)))  # type: ignore[arg-type]
    assert math.isfinite(sa.compile_sum(term, params, [x], np.ones((3, 1)))([2.0]))


def test_tier_up_installs_final_code_with_the_same_results() -> None:
    data = _data(4)
    f = _compiled(data, "mean", "llvm")
    theta = np.array([0.6, 1.1, 0.2])
    before = f.value_and_grad(theta)      # maybe still the quickly compiled code
    f.tier_up()
    kernel = f._entry.deriv_kernel()
    assert all(rk.kernel.code_level == rk.kernel.level for rk in kernel.rows)
    after = f.value_and_grad(theta)
    assert after[0] == before[0] == _eager(theta, data, "mean")[0]
    np.testing.assert_array_equal(after[1], before[1])
