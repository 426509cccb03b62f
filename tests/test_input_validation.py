"""Numbers handed to compiled functions, least squares and optimisers must be real, and
``apply_compiled_gradients`` must get the compiled function's params in order.

A complex array used to lose its imaginary part with a ComplexWarning and strings were
parsed by numpy; both are now a TypeError naming the argument. The values accepted
(floats, ints, bools, numpy real scalars, ``Fraction``) are checked against gradients
derived by hand.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.lsq import levenberg_marquardt
from scalar_autograd.optim import lbfgs_minimize
from scalar_autograd.validation import check_real_array

NOT_REAL = [
    pytest.param(np.array([1.0 + 2.0j, 0.5]), "complex", id="complex array"),
    pytest.param(np.array([1.0, 0.5], dtype=complex), "complex", id="complex, zero imag"),
    pytest.param([1.0 + 2.0j, 0.5], "complex", id="complex list"),
    pytest.param([np.complex128(1.0), 0.5], "complex", id="numpy complex scalar"),
    pytest.param(["1", "2"], "str", id="str list"),
    pytest.param(np.array(["1", "2"]), "str", id="str array"),
    pytest.param([1.0, "2"], "str", id="mixed str"),
    pytest.param([b"1", b"2"], "bytes", id="bytes list"),
    pytest.param([None, 1.0], "NoneType", id="None"),
    pytest.param(np.array([1.0, None], dtype=object), "NoneType", id="object None"),
    pytest.param([sa.Value(1.0), 2.0], "Value", id="Value entries"),
    pytest.param(np.array([1, 2], dtype="m8[s]"), "timedelta", id="timedelta"),
]


def _function():
    """f(x, y) = x * y + sin(x): gradient (y + cos(x), x), by hand."""
    x, y = sa.Value(0.0, label="x"), sa.Value(0.0, label="y")
    return sa.compile(x * y + sa.sin(x), [x, y])


def _by_hand(x: float, y: float) -> tuple[float, list[float]]:
    return x * y + math.sin(x), [y + math.cos(x), x]


# ------------------------------------------------------------ CompiledFunction
@pytest.mark.parametrize(("x", "kind"), NOT_REAL)
@pytest.mark.parametrize("method", ["value_and_grad", "__call__", "jacobian"])
def test_compiled_function_rejects_non_real_x(x, kind: str, method: str) -> None:
    f = _function()
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # a ComplexWarning would fail here
        with pytest.raises(TypeError, match=rf"^x must hold 2 real numbers.*{kind}"):
            getattr(f, method)(x)


@pytest.mark.parametrize("x", ["ab", b"ab"])
def test_compiled_function_rejects_a_string_as_x(x) -> None:
    with pytest.raises(TypeError, match=r"^x must be a sequence or array of 2 real numbers"):
        _function().value_and_grad(x)


@pytest.mark.parametrize("x", [
    pytest.param([0.5, 2.0], id="list"),
    pytest.param((0.5, 2.0), id="tuple"),
    pytest.param(np.array([0.5, 2.0]), id="float64"),
    pytest.param(np.array([0.5, 2.0], dtype=np.float32), id="float32"),
    pytest.param(np.array([0.5, 2.0], dtype=">f8"), id="big-endian"),
    pytest.param([np.float32(0.5), np.int64(2)], id="numpy scalars"),
    pytest.param([Fraction(1, 2), 2], id="Fraction"),
    pytest.param(np.array([Fraction(1, 2), 2], dtype=object), id="object of reals"),
])
def test_compiled_function_accepts_real_numbers(x) -> None:
    value, grad = _function().value_and_grad(x)
    expected_value, expected_grad = _by_hand(0.5, 2.0)
    assert value == pytest.approx(expected_value, rel=1e-15)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-15)


@pytest.mark.parametrize("x", [[1, 2], np.array([1, 2]), [True, 2], np.array([True, False])])
def test_ints_and_bools_are_real_numbers(x) -> None:
    # as Value(True) is accepted (bool is a numbers.Real), so are bool entries
    xs = [float(v) for v in x]
    value, grad = _function().value_and_grad(x)
    expected_value, expected_grad = _by_hand(*xs)
    assert value == pytest.approx(expected_value, rel=1e-15)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-15)


def test_runtime_inputs_must_be_real() -> None:
    p, t = sa.Value(0.0), sa.Value(0.0)
    f = sa.compile((p - t) ** 2, [p], inputs=[t])
    assert f.value_and_grad([3.0], inputs=[1])[1].tolist() == [4.0]       # 2 (3 - 1)
    with pytest.raises(TypeError, match="^inputs must hold 1 real numbers.*str"):
        f.value_and_grad([3.0], inputs=["1"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="^inputs must hold 1 real numbers.*complex"):
            f.value_and_grad([3.0], inputs=np.array([1j]))


def test_batch_arrays_must_be_real() -> None:
    p, t = sa.Value(0.0), sa.Value(0.0)
    f = sa.compile(p * t, [p], inputs=[t])
    V, J = f.batch_jacobian(np.array([[2.0], [3.0]]), [[5], [7]])
    assert V.ravel().tolist() == [10.0, 21.0] and J.ravel().tolist() == [5.0, 7.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="^X must be a 2-D array of real numbers.*complex"):
            f.batch_values(np.array([[2.0 + 1j]]), [[1.0]])
        with pytest.raises(TypeError, match="^U must be a 2-D array of real numbers.*str"):
            f.batch_jacobian([[2.0]], [["1"]])
        with pytest.raises(TypeError, match="^X must be a 2-D array of real numbers"):
            f.batch_values("12", [[1.0]])


# ------------------------------------------------------------ least squares
@pytest.mark.parametrize(("x0", "kind"), NOT_REAL)
def test_problem_x0_must_be_real(x0, kind: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match=rf"^x0 must hold real numbers.*{kind}"):
            sa.LeastSquaresProblem(x0)


@pytest.mark.parametrize(("column", "kind"), NOT_REAL)
def test_block_data_must_be_real(column, kind: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match=rf"residual block 'fit': data\[1\] must hold "
                                            rf"real numbers.*{kind}"):
            sa.ResidualBlock(lambda p, d: p[0] * d[0] - d[1], param_index=[0, 0],
                             data=[[1.0, 2.0], column], name="fit")


def test_problem_with_int_and_bool_numbers_fits_by_hand() -> None:
    # y = a t, data t = (1, 2), y = (2, 4) given as ints and x0 as a bool: a = 2
    problem = sa.LeastSquaresProblem([True])
    problem.add_block(lambda p, d: p[0] * d[0] - d[1], param_index=[0, 0],
                      data=[np.array([1, 2]), [2, 4]])
    res = problem.solve()
    assert res.success and res.x.tolist() == pytest.approx([2.0], abs=1e-12)


@pytest.mark.parametrize(("x0", "kind"), NOT_REAL)
def test_levenberg_marquardt_x0_must_be_real(x0, kind: str) -> None:
    def rj(x):
        return x - 1.0, np.eye(x.size)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match=rf"^x0 must hold real numbers.*{kind}"):
            levenberg_marquardt(rj, lambda x: rj(x)[0], x0)


# ------------------------------------------------------------ optimisers
def _quadratic(x):
    """f = sum((x - (1, -2))**2), minimum at (1, -2), by hand."""
    d = x - np.array([1.0, -2.0])
    return float(d @ d), 2.0 * d


@pytest.mark.parametrize(("x0", "kind"), NOT_REAL)
def test_lbfgs_minimize_x0_must_be_real(x0, kind: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match=rf"^x0 must hold real numbers.*{kind}"):
            lbfgs_minimize(_quadratic, x0)


@pytest.mark.parametrize("x0", [[0, 0], (True, False), np.array([0, 0], dtype=np.int8)])
def test_lbfgs_minimize_accepts_ints_and_bools(x0) -> None:
    res = lbfgs_minimize(_quadratic, x0)
    assert res.success
    np.testing.assert_allclose(res.x, [1.0, -2.0], atol=1e-6)


def test_check_real_array_names_the_argument_and_converts() -> None:
    assert check_real_array([1, 2.5, True, Fraction(1, 4)], "x0").tolist() == [
        1.0, 2.5, 1.0, 0.25]
    with pytest.raises(TypeError, match="^x0 must be an array-like of real numbers"):
        check_real_array("1.0", "x0")
    with pytest.raises(ValueError, match="^x0 must hold numbers within the float range"):
        check_real_array([10**400], "x0")


# ------------------------------------------------------------ apply_compiled_gradients
def _gradient_function():
    x, y = sa.Value(3.0, label="x"), sa.Value(4.0, label="y")
    return x, y, sa.compile_gradient_function(x * y * y, [x, y])


def test_apply_compiled_gradients_in_order_sets_the_gradients() -> None:
    x, y, fn = _gradient_function()
    # d(x y^2)/dx = y^2 = 16, d/dy = 2 x y = 24
    assert sa.apply_compiled_gradients(fn, [x, y]) == [16.0, 24.0]
    assert (x.grad, y.grad) == (16.0, 24.0)


def test_apply_compiled_gradients_rejects_permuted_params() -> None:
    x, y, fn = _gradient_function()
    with pytest.raises(ValueError, match=r"params\[0\] is .*'y'.*not its param 0 .*'x'.*"
                                         r"it is the compiled function's param 1"):
        sa.apply_compiled_gradients(fn, [y, x])
    assert (x.grad, y.grad) == (0.0, 0.0)                # nothing was written


def test_apply_compiled_gradients_rejects_other_values() -> None:
    x, y, fn = _gradient_function()
    other = sa.Value(4.0, label="y")                      # equal data, another Value
    with pytest.raises(ValueError, match=r"params\[1\] is .*not its param 1"):
        sa.apply_compiled_gradients(fn, [x, other])
    with pytest.raises(ValueError, match=r"2 params in its order; got 1, which differ "
                                         r"from position 1 on"):
        sa.apply_compiled_gradients(fn, [x])
    with pytest.raises(ValueError, match=r"got 3, which differ from position 2 on"):
        sa.apply_compiled_gradients(fn, [x, y, other])


def test_apply_compiled_gradients_trusts_a_plain_callable() -> None:
    a, b = sa.Value(2.0), sa.Value(5.0)
    # any order the callable defines: here the gradient of a * b, swapped by hand
    assert sa.apply_compiled_gradients(lambda u, v: [v, u], [a, b]) == [5.0, 2.0]
    assert (a.grad, b.grad) == (5.0, 2.0)
    with pytest.raises(ValueError, match="returned 1 gradients for 2 params"):
        sa.apply_compiled_gradients(lambda u, v: [u], [a, b])
