"""Custom ops (``sa.custom_op``): a user's row of the op table, checked like the built-ins.

Two ops serve throughout: a smooth maximum ``smoothmax(a, b, k) = log(e^(ka) + e^(kb))/k``
and a variadic log-sum-exp, both written stably against the algebra with hand-written
partials. Their values and derivatives are checked against mpmath at 50 digits (also
where the naive formula overflows) and against finite differences; compiled code
against eager evaluation on every backend at points other than the traced one; second
derivatives by forward over reverse on the IR (and ``f.hessian`` once it exists) against
mpmath and against finite differences of the compiled gradient. Then the registry:
names, collisions, re-registration, bad functions, threads, pickles in another process,
and that no user string reaches generated code.

Every op registered here is named ``t_...`` and removed from the table when the module
is done, so the table-driven tests that follow see the built-in table only.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mpmath import mp

import scalar_autograd as sa
from jit_support import assert_same
from scalar_autograd import ops
from scalar_autograd.backends import vm as vm_backend
from scalar_autograd.backends.registry import get_backend
from scalar_autograd.functional import CustomOp
from scalar_autograd.ir.autodiff import forward, reverse
from scalar_autograd.ir.passes import lower
from scalar_autograd.ir.program import Program
from scalar_autograd.ir.trace import trace

SRC = Path(__file__).resolve().parent.parent / "src"

# ----------------------------------------------------------------------------- the two ops


def smoothmax_value(m: Any, a: Any, b: Any, k: Any) -> Any:
    """log(e^(k a) + e^(k b)) / k, stable for any k a, k b."""
    u, v = k * a, k * b
    return m.div(m.max(u, v) + m.log1p(m.exp(-m.abs(u - v))), k)


def smoothmax_partials(m: Any, a: Any, b: Any, k: Any, out: Any) -> tuple[Any, Any, Any]:
    wa = m.sigmoid(k * (a - b))  # e^(ka) / (e^(ka) + e^(kb)), never overflows
    wb = m.sigmoid(k * (b - a))
    # d/dk = (a wa + b wb - out) / k, rewritten without the cancellation: with
    # g = |ka - kb|, it is -(g sigmoid(-g) + log1p(e^-g)) / k^2
    gap = m.abs(k * (a - b))
    return wa, wb, -m.div(gap * m.sigmoid(-gap) + m.log1p(m.exp(-gap)), k * k)


def lse_value(m: Any, *xs: Any) -> Any:
    """log(sum(e^x_i)), shifted by the maximum when it is finite."""
    top = xs[0]
    for x in xs[1:]:
        top = m.max(top, x)
    shift = m.where(m.eq(top - top, 0.0), top, 0.0)
    return shift + m.log(m.sum(*[m.exp(x - shift) for x in xs]))


def lse_partials(m: Any, *xs: Any, out: Any) -> tuple[Any, ...]:
    return tuple(m.exp(x - out) for x in xs)  # softmax, from the result: never overflows


def mp_smoothmax(a: Any, b: Any, k: Any) -> Any:
    return mp.log(mp.exp(k * a) + mp.exp(k * b)) / k


def mp_lse(*xs: Any) -> Any:
    return mp.log(mp.fsum(mp.exp(x) for x in xs))


@pytest.fixture(scope="module", autouse=True)
def _leave_the_table_as_found() -> Iterator[None]:
    before = set(dict.keys(ops.OPS_BY_NAME))
    yield
    ops._forget_custom([name for name in list(ops._CUSTOM) if name.startswith("t_")])
    assert set(dict.keys(ops.OPS_BY_NAME)) == before


@pytest.fixture(scope="module")
def smoothmax() -> CustomOp:
    return sa.custom_op(smoothmax_value, partials=smoothmax_partials, name="t_smoothmax")


@pytest.fixture(scope="module")
def lse() -> CustomOp:
    return sa.custom_op(lse_value, partials=lse_partials, name="t_lse")


def leaves(x: list[float]) -> list[sa.Value]:
    return [sa.Value(float(v), requires_grad=True) for v in x]


def eager(op: CustomOp, x: list[float]) -> tuple[float, np.ndarray]:
    p = leaves(x)
    y = op(*p)
    y.backward()
    return y.data, np.array([v.grad for v in p])


def mp_gradient(f: Callable[..., Any], x: list[float]) -> list[Any]:
    with mp.workdps(50):
        point = [mp.mpf(v) for v in x]
        return [mp.diff(f, point, tuple(int(i == j) for j in range(len(x))))
                for i in range(len(x))]


def mp_hessian(f: Callable[..., Any], x: list[float]) -> np.ndarray:
    n = len(x)
    h = np.empty((n, n))
    with mp.workdps(50):
        point = [mp.mpf(v) for v in x]
        for i in range(n):
            for j in range(n):
                order = [0] * n
                order[i] += 1
                order[j] += 1
                h[i, j] = float(mp.diff(f, point, tuple(order)))
    return h


SMOOTHMAX_POINTS = [
    [0.3, -0.2, 2.0],
    [1.0, 2.0, 3.0],
    [1000.0, 999.0, 1.0],      # e^1000 overflows: the naive formula gives inf
    [-1000.0, -1001.0, 1.0],   # e^-1000 underflows: the naive formula gives -inf
    [30.0, 29.9, 50.0],        # k a = 1500
    [2.0, 2.0, 0.5],           # a tie
]
LSE_POINTS = [
    [0.5],
    [0.1, -0.3],
    [1000.0, 1000.0, 999.0],
    [-1000.0, -1000.5, -1001.0, -999.0],
    [700.0, -700.0, 0.0, 1.0, 2.0],
    [0.25, -1.5, 3.0, 0.0, -2.0, 1.0, 0.5],
]


# ----------------------------------------------------------------------------- values


def test_naive_formulas_overflow_where_the_ops_do_not() -> None:
    with np.errstate(over="ignore", divide="ignore"):
        assert np.log(np.exp(1000.0) + np.exp(999.0)) == np.inf
        assert np.log(np.exp(-1000.0) + np.exp(-1001.0)) == -np.inf


@pytest.mark.parametrize("x", SMOOTHMAX_POINTS, ids=str)
def test_smoothmax_value_matches_mpmath(smoothmax: CustomOp, x: list[float]) -> None:
    with mp.workdps(50):
        expected = float(mp_smoothmax(*[mp.mpf(v) for v in x]))
    assert math.isclose(smoothmax(*x).data, expected, rel_tol=4e-16, abs_tol=1e-300)


@pytest.mark.parametrize("x", LSE_POINTS, ids=str)
def test_lse_value_matches_mpmath(lse: CustomOp, x: list[float]) -> None:
    with mp.workdps(50):
        expected = float(mp_lse(*[mp.mpf(v) for v in x]))
    assert math.isclose(lse(*x).data, expected, rel_tol=1e-15, abs_tol=1e-300)


def test_eval_is_ieee_total_and_matches_every_backend(smoothmax: CustomOp, lse: CustomOp,
                                                      backend: str) -> None:
    # special values never raise, and compiled code gives the same bits (or nan)
    specials = [[math.inf, 0.0, 1.0], [0.0, 1.0, 0.0], [math.nan, 1.0, 1.0],
                [-math.inf, -math.inf, 1.0], [1e308, -1e308, 10.0]]
    p = leaves([0.1, 0.2, 0.3])
    f = sa.compile(smoothmax(*p), p, backend=backend)
    for x in specials:
        assert_same(f(x), smoothmax(*x).data, what=f"smoothmax{x}")
    assert smoothmax(0.0, 1.0, 0.0).data == math.inf  # log(2) / 0
    assert lse(math.inf, 0.0).data == math.inf
    assert lse(-math.inf, -math.inf).data == -math.inf


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("x", SMOOTHMAX_POINTS, ids=str)
def test_smoothmax_gradient_matches_mpmath(smoothmax: CustomOp, x: list[float]) -> None:
    _, grad = eager(smoothmax, x)
    expected = [float(g) for g in mp_gradient(mp_smoothmax, x)]
    np.testing.assert_allclose(grad, expected, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("x", LSE_POINTS, ids=str)
def test_lse_gradient_matches_mpmath(lse: CustomOp, x: list[float]) -> None:
    _, grad = eager(lse, x)
    expected = [float(g) for g in mp_gradient(mp_lse, x)]
    # exp(x_i - out): the rounding of out (|out| eps) is the relative error
    scale = max(1.0, *[abs(v) for v in x])
    np.testing.assert_allclose(grad, expected, rtol=4e-16 * scale, atol=1e-300)


@pytest.mark.parametrize("which", ["smoothmax", "lse"])
def test_gradient_matches_finite_differences(smoothmax: CustomOp, lse: CustomOp,
                                             which: str) -> None:
    op, x = (smoothmax, [0.4, -0.7, 1.5]) if which == "smoothmax" else \
        (lse, [0.4, -0.7, 1.5, 0.0])
    _, grad = eager(op, x)
    numeric = []
    for i in range(len(x)):
        up, down = list(x), list(x)
        up[i] += 1e-6
        down[i] -= 1e-6
        numeric.append((op(*up).data - op(*down).data) / 2e-6)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


def test_compiled_matches_eager_away_from_the_traced_point(smoothmax: CustomOp,
                                                           lse: CustomOp,
                                                           backend: str) -> None:
    for op, points in ((smoothmax, SMOOTHMAX_POINTS), (lse, LSE_POINTS[2:3])):
        n = len(points[0])
        p = leaves([0.05 * (i + 1) for i in range(n)])
        f = sa.compile(op(*p), p, backend=backend)
        assert f.backend == backend
        for x in points:
            value, grad = f.value_and_grad(x)
            e_value, e_grad = eager(op, x)
            assert_same(value, e_value, rel=1e-15, what=f"{backend} {op.name} value at {x}")
            assert_same(grad, e_grad, rel=1e-15, abs_tol=1e-300,
                        what=f"{backend} {op.name} gradient at {x}")


def test_lse_at_every_arity_compiles(lse: CustomOp, backend: str) -> None:
    for x in LSE_POINTS:
        p = leaves([0.0] * len(x))
        f = sa.compile(lse(*p) * 2.0, p, backend=backend)
        value, grad = f.value_and_grad(x)
        e_value, e_grad = eager(lse, x)
        assert_same(value, 2.0 * e_value, rel=1e-15)
        assert_same(grad, 2.0 * e_grad, rel=1e-15, abs_tol=1e-300)


def test_jit_transform_and_forward_mode(smoothmax: CustomOp) -> None:
    g = sa.grad(lambda x: smoothmax(x[0], x[1], 4.0) * x[0], backend="python")
    x = [0.3, -0.1]
    _, e = eager(smoothmax, [0.3, -0.1, 4.0])
    expected = [e[0] * 0.3 + smoothmax(0.3, -0.1, 4.0).data, e[1] * 0.3]
    np.testing.assert_allclose(np.asarray(g(np.array(x))), expected, rtol=1e-14)
    # many outputs: forward mode on the IR, from the same partials
    p = leaves([0.3, -0.1, 4.0])
    outs = [smoothmax(p[0], p[1], p[2] * (j + 1.0)) for j in range(5)]
    values, jac = sa.compile(outs, p, backend="python").jacobian([0.3, -0.1, 4.0])
    for j in range(5):
        _, row = eager(smoothmax, [0.3, -0.1, 4.0 * (j + 1.0)])
        np.testing.assert_allclose(jac[j], row * [1.0, 1.0, j + 1.0], rtol=1e-14)


def test_zero_partial_receives_nothing_even_from_inf(backend: str) -> None:
    # d/ds is a literal 0.0: like floor's, the argument gets no contribution, so the
    # infinite partial of log at 0 behind it gives 0, not 0 * inf = nan
    scaled = sa.custom_op(lambda m, x, s: x * m.floor(s), name="t_scaled",
                          partials=lambda m, x, s, out: (m.floor(s), 0.0))
    assert scaled.row(2).zero_partials == (False, True)
    x, t = leaves([2.0, 0.0])
    y = scaled(x, sa.log(t))
    y.backward()
    assert (x.grad, t.grad) == (-math.inf, 0.0)
    _, grad = sa.compile(y, [x, t], backend=backend).value_and_grad([2.0, 0.0])
    assert grad.tolist() == [-math.inf, 0.0]


# ----------------------------------------------------------------------------- Hessians


def _hessian_program(y: sa.Value, params: list[sa.Value], lower_first: bool) -> Program:
    """Forward over reverse on the IR: the gradient program's gradient outputs become
    values, and forward mode differentiates them."""
    program, _ = trace([y], params)
    gradient = reverse(program, lower=lower_first)
    as_values = Program(gradient.nodes, gradient.outputs[1:], gradient.n_params,
                        gradient.n_inputs, len(gradient.outputs) - 1)
    return forward(as_values, lower=True)


def _compiled_hessian(program: Program, backend: str, x: list[float]) -> np.ndarray:
    kernel = get_backend(backend).compile(program)
    n = len(x)
    val, der = np.zeros(n), np.zeros(n * n)
    kernel.run(np.array(x), np.zeros(0), val, der, np.zeros(max(kernel.n_scratch, 1)))
    return der.reshape(n, n)


def _fd_hessian(f: sa.CompiledFunction, x: list[float], h: float = 1e-5) -> np.ndarray:
    n = len(x)
    out = np.empty((n, n))
    for j in range(n):
        up, down = np.array(x), np.array(x)
        up[j] += h
        down[j] -= h
        out[:, j] = (f.value_and_grad(up)[1] - f.value_and_grad(down)[1]) / (2 * h)
    return out


@pytest.mark.parametrize("which", ["smoothmax", "lse"])
def test_hessian_forward_over_reverse(smoothmax: CustomOp, lse: CustomOp, which: str,
                                      backend: str) -> None:
    op, mp_f, trace_at, x = (
        (smoothmax, mp_smoothmax, [0.1, 0.2, 0.3], [0.4, -0.7, 1.5])
        if which == "smoothmax" else
        (lse, mp_lse, [0.0, 0.1, 0.2, 0.3], [0.4, -0.7, 1.5, 0.0]))
    p = leaves(trace_at)
    y = op(*p)
    expected = mp_hessian(mp_f, x)
    f = sa.compile(y, p, backend=backend)
    np.testing.assert_allclose(_fd_hessian(f, x), expected, rtol=1e-6, atol=1e-8)
    for lower_first in (False, True):  # custom nodes differentiated twice, or expanded
        got = _compiled_hessian(_hessian_program(y, p, lower_first), backend, x)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    if hasattr(f, "hessian"):  # the compiled Hessian, once it has landed
        np.testing.assert_allclose(np.asarray(f.hessian(x)), expected, rtol=1e-12,
                                   atol=1e-14)
    if hasattr(f, "hvp"):
        v = np.linspace(-1.0, 2.0, len(x))
        np.testing.assert_allclose(np.asarray(f.hvp(x, v)), expected @ v, rtol=1e-12,
                                   atol=1e-14)


def test_hessian_at_large_arguments(lse: CustomOp) -> None:
    x = [1000.0, 999.0, 1001.0]
    p = leaves([0.0, 0.0, 0.0])
    got = _compiled_hessian(_hessian_program(lse(*p), p, False), "python", x)
    np.testing.assert_allclose(got, mp_hessian(mp_lse, x), rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------- drawing


def test_to_dot_shows_the_name(smoothmax: CustomOp, lse: CustomOp) -> None:
    a, b = leaves([1.0, 2.0])
    dot = sa.to_dot(lse(smoothmax(a, b, 3.0), b))
    assert 'label="t_smoothmax", shape=ellipse' in dot
    assert 'label="t_lse", shape=ellipse' in dot
    assert ops.OPS_BY_NAME[smoothmax.row(3).name] is smoothmax.row(3)
    assert smoothmax.row(3).name.startswith("t_smoothmax.3.")  # the opcode


def test_the_readme_table_and_the_vm_keep_the_builtin_ops_only(smoothmax: CustomOp) -> None:
    assert all(op.category != "custom" for op in ops.OPS)
    assert not any(code.startswith("t_") for code in vm_backend.OPCODES)
    assert smoothmax.row(3).name not in vm_backend.OPCODES


# ----------------------------------------------------------------------------- the registry


def test_identical_registration_returns_the_op_and_a_different_one_is_refused(
        smoothmax: CustomOp) -> None:
    again = sa.custom_op(smoothmax_value, partials=smoothmax_partials, name="t_smoothmax")
    assert again == smoothmax and again.definition is smoothmax.definition
    # the same text as a fresh function (a re-run notebook cell) is the same definition
    fresh = sa.custom_op(lambda m, a, b, k: smoothmax_value(m, a, b, k), name="t_smoothmax",
                         partials=smoothmax_partials,
                         doc=smoothmax.doc)
    assert fresh == smoothmax
    with pytest.raises(ValueError, match="t_smoothmax.*different definition.*replace"):
        sa.custom_op(lambda m, a, b, k: smoothmax_value(m, a, b, 2.0 * k),
                     partials=smoothmax_partials, name="t_smoothmax", doc=smoothmax.doc)
    with pytest.raises(ValueError, match="different definition"):
        sa.custom_op(smoothmax_value, partials=smoothmax_partials, name="t_smoothmax",
                     doc="another doc")


def test_replace_keeps_the_old_definition_for_old_values(backend: str) -> None:
    name = f"t_scale_{backend}"
    old = sa.custom_op(lambda m, x: 2.0 * x, partials=lambda m, x, out: (2.0,),
                       name=name, doc="scale")
    x = leaves([1.5])
    y_old = old(x[0])
    f_old = sa.compile(y_old, x, backend=backend)
    new = sa.custom_op(lambda m, x: 3.0 * x, partials=lambda m, x, out: (3.0,),
                       name=name, doc="scale", replace=True)
    assert new != old and ops.custom_definition(name) is new.definition
    y_new = new(x[0])
    assert (y_old.data, y_new.data) == (3.0, 4.5)
    f_new = sa.compile(y_new, x, backend=backend)
    assert f_old.value_and_grad([2.0])[1].tolist() == [2.0]
    assert f_new.value_and_grad([2.0])[1].tolist() == [3.0]
    assert sa.compile(old(x[0]), x, backend=backend)([2.0]) == 4.0
    # the opcodes differ, so do the programs' digests: the in-memory and on-disk kernel
    # caches can never hand one definition's kernel to the other
    assert old.row(1).name != new.row(1).name
    assert f_old.program.digest() != f_new.program.digest()


BAD_NAMES = ["", "1abc", "a-b", "a b", "a.b", "é", "_private", "lambda", "name", "x" * 65,
             "sin", "max", "minimum", "where", "sum",
             'x); __import__("os").system("echo PWNED")  # ',
             "PWNED}\ndefine void @kernel() {\n  ret void\n}\n", "v0 PWNED", "a\x00b",
             "t_ok\n", "x[0]"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        sa.custom_op(lambda m, x: x, partials=lambda m, x, out: (1.0,), name=name)
    assert name not in ops._CUSTOM


@pytest.mark.parametrize("name", [None, 3, b"t_x"], ids=repr)
def test_non_str_names(name: Any) -> None:
    if name is None:  # falls back to the function's name, which a lambda lacks
        with pytest.raises(ValueError, match="name"):
            sa.custom_op(lambda m, x: x, partials=lambda m, x, out: (1.0,), name=name)
    else:
        with pytest.raises(TypeError, match="name must be a str"):
            sa.custom_op(lambda m, x: x, partials=lambda m, x, out: (1.0,), name=name)


def _value_with_division(m: Any, x: Any) -> Any:
    return x / 2.0


def _value_with_branch(m: Any, x: Any) -> Any:
    return x if m.gt(x, 0.0) else -x


def _value_with_math(m: Any, x: Any) -> Any:
    return math.exp(x)


def _value_with_compare(m: Any, x: Any) -> Any:
    return m.where(x < 0.0, -x, x)


def _value_with_power(m: Any, x: Any) -> Any:
    return x ** 2


def _value_with_abs(m: Any, x: Any) -> Any:
    return abs(x)


CAPTURED = sa.Value(2.0)


def _value_with_a_captured_value(m: Any, x: Any) -> Any:
    return m.mul(x, CAPTURED)


def _value_returning_a_pair(m: Any, x: Any) -> Any:
    return x, x


def _value_with_unknown_op(m: Any, x: Any) -> Any:
    return m.erf(x)


@pytest.mark.parametrize(("value", "words"), [
    (_value_with_division, "m.div"),
    (_value_with_branch, "m.where"),
    (_value_with_math, "float()"),
    (_value_with_compare, "m.lt"),
    (_value_with_power, "m.pow"),
    (_value_with_abs, "m.abs"),
    (_value_with_a_captured_value, "Value"),
    (_value_returning_a_pair, "one algebra value"),
    (_value_with_unknown_op, "m.erf"),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_value_functions_that_leave_the_algebra(value: Any, words: str) -> None:
    with pytest.raises(TypeError) as info:
        sa.custom_op(value, partials=lambda m, x, out: (1.0,), name="t_bad")
    assert words in str(info.value) and "t_bad" in str(info.value)
    assert "t_bad" not in ops._CUSTOM


@pytest.mark.parametrize(("partials", "error", "words"), [
    (lambda m, a, b, out: (1.0,), ValueError, "must return 2 partial"),
    (lambda m, a, b, out: (1.0, 1.0, 1.0), ValueError, "got 3"),
    (lambda m, a, out: (1.0, 1.0), TypeError, "must take (m, <the 2 argument(s)>, out)"),
    (lambda m, a, b: (1.0, 1.0), TypeError, "out"),
    (lambda m, a, b, out: 1.0, TypeError, "tuple of 2"),
    (lambda m, a, b, out: (b, "a"), TypeError, "partials[1]"),
    (lambda m, a, b, out: (None, a), TypeError, "partials[0]"),
    (lambda m, a, b, out: (sa.Value(1.0), a), TypeError, "Value"),
    (lambda m, a, b, out: (np.ones(2), a), TypeError, "ndarray"),
    (lambda m, a, b, out: (m.div(1.0, b), a / b), TypeError, "m.div"),
], ids=["too few", "too many", "missing argument", "no out", "not a tuple", "str", "None",
        "Value", "array", "division"])
def test_bad_partials(partials: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as info:
        sa.custom_op(lambda m, a, b: a * b, partials=partials, name="t_bad")
    assert words in str(info.value) and "t_bad" in str(info.value)
    assert "t_bad" not in ops._CUSTOM


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"value": "not a function"}, TypeError, "value must be a function"),
    ({"value": lambda m, x=1.0: x}, TypeError, "x=1.0"),
    ({"value": lambda m: 1.0}, TypeError, "at least one argument"),
    ({"value": lambda m, *xs, **kw: xs[0]}, TypeError, "nothing else"),
    ({"value": lambda m, a, *xs: a}, TypeError, "value(m, *args)"),
    ({"partials": None}, TypeError, "partials must be a function"),
    ({"doc": 3}, TypeError, "doc must be a str"),
    ({"replace": 1}, TypeError, "replace must be a bool"),
])
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], words: str) -> None:
    args: dict[str, Any] = {"value": lambda m, x: x, "partials": lambda m, x, out: (1.0,),
                            "name": "t_bad", **kwargs}
    value = args.pop("value")
    with pytest.raises(error) as info:
        sa.custom_op(value, **args)
    assert words in str(info.value)


def test_calls_with_the_wrong_number_of_arguments(smoothmax: CustomOp, lse: CustomOp) -> None:
    with pytest.raises(TypeError, match="t_smoothmax takes 3 argument"):
        smoothmax(1.0, 2.0)
    with pytest.raises(TypeError, match="t_lse needs at least one argument"):
        lse()
    with pytest.raises(TypeError, match="operand|argument of t_smoothmax"):
        smoothmax(1.0, 2.0, "3")


def test_a_custom_op_may_use_another_by_name(smoothmax: CustomOp, backend: str) -> None:
    softabs = sa.custom_op(lambda m, x: m.t_smoothmax(x, -x, 10.0), name="t_softabs",
                           partials=lambda m, x, out: (m.tanh(10.0 * x),))
    x = leaves([0.3])
    y = softabs(x[0])
    assert y.data == smoothmax(0.3, -0.3, 10.0).data
    y.backward()
    f = sa.compile(y, x, backend=backend)
    value, grad = f.value_and_grad([-0.2])
    assert value == smoothmax(-0.2, 0.2, 10.0).data
    assert grad.tolist() == [math.tanh(-2.0)]
    assert ops.FLOATS.t_softabs(0.3) == y.data  # every algebra knows it by name


# ----------------------------------------------------------------------------- generated code


def test_no_user_string_reaches_generated_code(smoothmax: CustomOp, backend: str) -> None:
    marked = sa.custom_op(lambda m, x: m.exp(x) * x, name="t_PWNED_marker",
                          partials=lambda m, x, out: (out + m.exp(x),),
                          doc='"); __import__("os").system("echo PWNED") #\n}\ndefine')
    x = leaves([0.5])
    y = marked(x[0]) + smoothmax(x[0], 1.0, 2.0)
    f = sa.compile(y, x, backend=backend)
    f.value_and_grad([0.25])
    for text in (f.source, f._entry.value_kernel().source):
        assert "PWNED" not in text and "t_smoothmax" not in text
    for kind, _ in lower(f.program).nodes:
        assert kind in ("input", "const") or ops.OPS_BY_NAME[kind].category != "custom"
    assert "PWNED_marker" in sa.to_dot(y) and "system" not in sa.to_dot(y)


# ----------------------------------------------------------------------------- threads


def test_registration_from_threads(backend: str) -> None:
    errors: list[BaseException] = []
    made: list[CustomOp] = []
    start = threading.Barrier(8)

    def register(i: int) -> None:
        try:
            start.wait()
            # all register the same definition: one wins, the others get it
            made.append(sa.custom_op(lse_value, partials=lse_partials, name="t_lse_threads"))
            # and a definition of their own, while the others compile and lower
            own = sa.custom_op(lambda m, x: x * float(i + 1), name=f"t_thread{i}",
                               partials=lambda m, x, out: (float(i + 1),))
            p = leaves([1.0])
            f = sa.compile(own(p[0]) + made[-1](p[0], 2.0), p, backend=backend)
            value, grad = f.value_and_grad([0.5])
            assert value == pytest.approx(0.5 * (i + 1) + math.log(math.exp(0.5) + math.exp(2)))
            for _ in range(20):
                lower(trace([own(p[0])], p)[0])
                ops.OpTable.keys(ops.OPS_BY_NAME)
                list(ops.OPS_BY_NAME)
        except BaseException as exc:  # noqa: BLE001 - collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(op == made[0] for op in made)
    # visible to a thread that registered nothing
    assert ops.custom_definition("t_thread3").row(1).eval(2.0) == 8.0


# ----------------------------------------------------------------------------- other processes


DEFINITIONS = '''
import scalar_autograd as sa

def lse_value(m, *xs):
    top = xs[0]
    for x in xs[1:]:
        top = m.max(top, x)
    return top + m.log(m.sum(*[m.exp(x - top) for x in xs]))

def lse_partials(m, *xs, out):
    return tuple(m.exp(x - out) for x in xs)

def register(scale=1.0):
    if scale == 1.0:
        return sa.custom_op(lse_value, partials=lse_partials, name="t_lse_pickled")
    return sa.custom_op(lambda m, *xs: scale * lse_value(m, *xs), name="t_lse_pickled",
                        partials=lse_partials, replace=True)
'''


def test_pickled_functions_need_the_same_definition_in_the_other_process(
        tmp_path: Path) -> None:
    (tmp_path / "t_definitions.py").write_text(DEFINITIONS)
    sys.path.insert(0, str(tmp_path))
    try:
        import t_definitions  # type: ignore[import-not-found]
        op = t_definitions.register()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("t_definitions", None)
    p = leaves([0.0] * 5)  # 5 arguments: a row the other process makes on demand
    f = sa.compile(op(*p), p, backend="python")
    x = [0.5, -1.0, 2.0, 0.0, 1.0]
    expected = f.value_and_grad(x)
    (tmp_path / "f.pickle").write_bytes(pickle.dumps(f))
    script = textwrap.dedent(f"""
        import pickle, sys
        sys.path[:0] = [{str(SRC)!r}, {str(tmp_path)!r}]
        import t_definitions
        data = open({str(tmp_path / "f.pickle")!r}, "rb").read()
        x = {x!r}
        try:
            pickle.loads(data).value_and_grad(x)
        except KeyError as exc:
            print("unregistered:", exc)
        t_definitions.register(scale=2.0)
        try:
            pickle.loads(data).value_and_grad(x)
        except KeyError as exc:
            print("different:", exc)
        t_definitions.register(scale=2.0)
        from scalar_autograd import ops
        ops._forget_custom(["t_lse_pickled"])
        t_definitions.register()
        value, grad = pickle.loads(data).value_and_grad(x)
        print("same:", repr(value), grad.tolist())
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "not registered in this process" in lines[0] and "t_lse_pickled" in lines[0]
    assert "different definition" in lines[1]
    assert lines[2] == f"same: {expected[0]!r} {expected[1].tolist()}"
