"""Second derivatives: Hessians and Hessian-vector products of compiled functions.

Forward mode over the reverse-mode gradient program on the IR (``ir/autodiff.py``),
compiled into kernels of their own (``CompiledFunction.hessian``/``hvp``,
``sa.hessian``/``sa.hvp``). Checked against independent oracles: mpmath's ``diff`` at
50 digits (every op of the table, and composite functions written once for both
libraries), central differences of the compiled gradient, and the documented
conventions at kinks (hand-derived values); on every backend, at points other than the
one a function was traced at.
"""

from __future__ import annotations

import copy
import math
import pickle
import random
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

import mpmath
import numpy as np
import pytest
from mpmath import mp

import oracles
import scalar_autograd as sa
from scalar_autograd.ir import autodiff
from scalar_autograd.ir.program import Builder, Program
from scalar_autograd.ops import OPS, VARIADIC, Op
from scalar_autograd.runtime import compiled, disk_cache
from scalar_autograd.runtime.cache import KERNELS
from scalar_autograd.runtime.compiled import compile_program

N_POINTS = 4
RTOL, ATOL = 1e-9, 1e-12

TABLE_ISSUES: dict[str, str] = {}
"""Ops whose table row gives a wrong second derivative (strict xfail: a fix shows).
None now: pow_value's rule went through the constant-exponent pow, so d2/da db missed
b a^(b-1) log a; it is written through pow_value since."""


def _param(op: Op) -> Any:
    marks = [pytest.mark.xfail(reason=TABLE_ISSUES[op.name], strict=True)] \
        if op.name in TABLE_ISSUES else []
    return pytest.param(op, id=op.name, marks=marks)


OP_PARAMS = [_param(op) for op in OPS]


def n_args(op: Op) -> int:
    return 3 if op.arity == VARIADIC else op.arity


def sample_points(op: Op, n: int = N_POINTS) -> list[tuple[float, ...]]:
    """Points in the op's sampling domain (the table's), seeded by its name."""
    rng = random.Random(f"hessian-{op.name}")
    domain = op.domain * 3 if op.arity == VARIADIC else op.domain
    return [tuple(rng.uniform(lo, hi) for lo, hi in domain) for _ in range(n)]


def op_program(op: Op) -> Program:
    """``op`` applied to params ``0..k-1`` (every argument a param)."""
    k = n_args(op)
    b = Builder(k, 0)
    out = b.emit(op.name, tuple(b.input(i) for i in range(k)))
    return b.build([out], 1)


@cache
def mpmath_hessian(name: str, args: tuple[float, ...]) -> tuple[tuple[float, ...], ...]:
    """The oracle's Hessian by ``mpmath.diff`` at 50 digits; a row and column whose first
    partial is 0 by convention (``pow``'s exponent, ``where``'s condition, steps,
    comparisons: ``oracles.PARTIAL_CONVENTIONS``) is 0 by the same convention."""
    k = len(args)
    fn = oracles.ORACLES[name]
    rows = []
    with mp.workdps(oracles.DPS):
        point = [mpmath.mpf(a) for a in args]
        for i in range(k):
            row = []
            for j in range(k):
                if (name, i) in oracles.PARTIAL_CONVENTIONS or \
                        (name, j) in oracles.PARTIAL_CONVENTIONS:
                    row.append(0.0)
                    continue
                orders = [0] * k
                orders[i] += 1
                orders[j] += 1
                row.append(float(mpmath.diff(fn, point, tuple(orders))))
            rows.append(tuple(row))
    return tuple(rows)


def central_hessian(f: sa.CompiledFunction, x: np.ndarray, inputs: Any = None) -> np.ndarray:
    """Central differences of the compiled gradient, column by column."""
    n = x.size
    h = np.empty((n, n))
    for j in range(n):
        step = 1e-5 * max(1.0, abs(x[j]))
        up, down = x.copy(), x.copy()
        up[j] += step
        down[j] -= step
        h[:, j] = (f.value_and_grad(up, inputs)[1] - f.value_and_grad(down, inputs)[1]) \
            / (up[j] - down[j])
    return h


def close(got: np.ndarray, ref: np.ndarray, rtol: float = RTOL, atol: float = ATOL) -> bool:
    return bool(np.all(np.abs(got - ref) <= rtol * np.abs(ref) + atol))


# ------------------------------------------------------------------------ every op, mpmath


@pytest.mark.parametrize("op", OP_PARAMS)
def test_hessian_of_each_op_matches_mpmath(op: Op) -> None:
    f = compile_program(op_program(op), backend="python")
    failures = []
    for args in sample_points(op):
        got = f.hessian(list(args))
        ref = np.array(mpmath_hessian(op.name, args))
        if not close(got, ref):
            failures.append(f"{op.name}{args}: hessian\n{got}\nmpmath\n{ref}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("op", OP_PARAMS)
def test_hessian_of_each_op_matches_differences_of_the_gradient(op: Op) -> None:
    # an argument with no gradient by convention (pow's exponent, ...) has a zero row
    # and column, while the gradient's difference in it need not be 0: compare the rest
    keep = [i for i in range(n_args(op)) if (op.name, i) not in oracles.PARTIAL_CONVENTIONS]
    f = compile_program(op_program(op), backend="python")
    for args in sample_points(op):
        x = np.array(args)
        got = f.hessian(x)[np.ix_(keep, keep)]
        numeric = central_hessian(f, x)[np.ix_(keep, keep)]
        assert close(got, numeric, rtol=1e-6, atol=1e-6), \
            f"{op.name}{args}: hessian\n{got}\ndifferences of the gradient\n{numeric}"
        assert not f.hessian(x)[[i for i in range(n_args(op)) if i not in keep]].any()


def _all_ops_program() -> tuple[Program, list[tuple[Op, int, int]]]:
    """Every op on its own params, summed: the Hessian is block diagonal, one block per
    op (the sum's second derivative is 0, its partials exactly 1)."""
    blocks = []
    start = 0
    for op in OPS:
        blocks.append((op, start, start + n_args(op)))
        start += n_args(op)
    b = Builder(start, 0)
    terms = [b.emit(op.name, tuple(b.input(i) for i in range(lo, hi))) for op, lo, hi in blocks]
    return b.build([b.emit("sum", tuple(terms))], 1), blocks


def test_every_op_on_every_backend(backend: str) -> None:
    program, blocks = _all_ops_program()
    f = compile_program(program, backend=backend)
    n = f.n_params
    diagonal = np.zeros((n, n), dtype=bool)
    for _, lo, hi in blocks:
        diagonal[lo:hi, lo:hi] = True
    rng = np.random.default_rng(7)
    for k in range(N_POINTS):
        x = np.concatenate([sample_points(op)[k] for op, _, _ in blocks])
        h = f.hessian(x)
        bad = [op.name for op, lo, hi in blocks
               if not close(h[lo:hi, lo:hi], np.array(
                   mpmath_hessian(op.name, tuple(x[lo:hi].tolist()))))]
        assert set(bad) <= set(TABLE_ISSUES), \
            f"{backend}: the Hessian of {bad} differs from mpmath at point {k}"
        assert not h[~diagonal].any(), f"{backend}: an entry between two ops is not 0"
        assert np.array_equal(h, h.T), "the Hessian must be exactly symmetric"
        v = rng.normal(size=n)
        hv = f.hvp(x, v)
        for op, lo, hi in blocks:
            if op.name not in TABLE_ISSUES:  # (there H v is the unsymmetrised product)
                assert close(hv[lo:hi], h[lo:hi] @ v, rtol=1e-12, atol=1e-12), op.name


def ik(lib: Any, q: list[Any]) -> Any:
    """A 4-joint planar IK loss to the target (1.2, 0.7)."""
    phi, px, py = 0.0, 0.0, 0.0
    for qi, length in zip(q, (1.0, 0.8, 0.6, 0.4)):
        phi = phi + qi
        px = px + length * lib.cos(phi)
        py = py + length * lib.sin(phi)
    return (px - 1.2) ** 2 + (py - 0.7) ** 2


def smooth_mix(lib: Any, x: list[Any]) -> Any:
    return (lib.sin(x[0] * x[1]) + lib.tanh(x[2]) * lib.exp(0.5 * x[3])
            + lib.log(1.0 + x[0] * x[0] + x[2] * x[2]) + lib.sqrt(x[1] * x[1] + 2.0)
            + lib.atan2(x[1], x[3] + 3.0) + x[0] * x[1] * x[2] / (1.0 + x[3] * x[3]))


def rosenbrock(lib: Any, x: list[Any]) -> Any:
    return sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2 for a, b in zip(x[:-1], x[1:]))


COMPOSITES: dict[str, tuple[Callable[[Any, list[Any]], Any], int]] = {
    "ik": (ik, 4), "smooth_mix": (smooth_mix, 4), "rosenbrock": (rosenbrock, 5),
}


def mpmath_composite_hessian(fn: Callable[[Any, list[Any]], Any], x: np.ndarray
                             ) -> np.ndarray:
    n = x.size
    with mp.workdps(oracles.DPS):
        point = [mpmath.mpf(float(v)) for v in x]
        h = np.empty((n, n))
        for i in range(n):
            for j in range(i, n):
                orders = [0] * n
                orders[i] += 1
                orders[j] += 1
                h[i, j] = h[j, i] = float(mpmath.diff(lambda *a: fn(mpmath, list(a)), point,
                                                      tuple(orders)))
    return h


def compiled_composite(name: str, backend: str) -> sa.CompiledFunction:
    fn, n = COMPOSITES[name]
    leaves = [sa.Value(0.25 * (i + 1)) for i in range(n)]  # traced here, used elsewhere
    return sa.compile(fn(sa, leaves), leaves, backend=backend)


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composite_hessians_match_mpmath_away_from_the_traced_point(name: str,
                                                                    backend: str) -> None:
    f = compiled_composite(name, backend)
    rng = np.random.default_rng(11)
    for _ in range(3):
        x = rng.uniform(-1.5, 1.5, size=f.n_params)
        ref = mpmath_composite_hessian(COMPOSITES[name][0], x)
        got = f.hessian(x)
        assert close(got, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max()), \
            f"{name} on {backend} at {x}:\n{got}\nmpmath\n{ref}"
        assert close(got, central_hessian(f, x), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_hvp_equals_the_hessian_times_v(name: str, backend: str) -> None:
    f = compiled_composite(name, backend)
    rng = np.random.default_rng(5)
    for _ in range(5):
        x = rng.uniform(-2.0, 2.0, size=f.n_params)
        v = rng.normal(size=f.n_params)
        h = f.hessian(x)
        hv = f.hvp(x, v)
        scale = np.abs(h).sum(axis=1) * np.abs(v).max() + 1e-300
        assert np.all(np.abs(hv - h @ v) <= 1e-13 * scale), (hv, h @ v)


def test_one_call_gives_the_value_gradient_and_an_exactly_symmetric_hessian(backend: str
                                                                            ) -> None:
    f = compiled_composite("smooth_mix", backend)
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.normal(size=4)
        value, grad = f.value_and_grad(x)
        v2, g2, h = f.value_grad_hessian(x)
        assert v2 == value and np.array_equal(g2, grad)  # the same bits
        assert np.array_equal(h, h.T)
        assert np.array_equal(h, f.hessian(x))


def test_runtime_inputs_are_read_by_the_second_order_kernels(backend: str) -> None:
    a, b = sa.Value(0.0), sa.Value(0.0)
    t = sa.Value(0.5)
    f = sa.compile(t * a * a * b + sa.exp(t * b), [a, b], inputs=[t], backend=backend)
    for tv in (0.5, -2.0, 3.0):
        x = np.array([1.5, -0.5])
        expected = np.array([[2 * tv * x[1], 2 * tv * x[0]],
                             [2 * tv * x[0], tv * tv * math.exp(tv * x[1])]])
        assert close(f.hessian(x, [tv]), expected, rtol=1e-14, atol=1e-15)
        assert close(f.hvp(x, [1.0, 2.0], [tv]), expected @ [1.0, 2.0], 1e-14, 1e-15)
    t.data = 3.0  # inputs=None reads the input leaves' data
    assert f.hessian([1.0, 0.0])[1, 1] == 9.0


# ------------------------------------------------------------------ conventions at kinks


def _hessian_at(build: Callable[[list[sa.Value]], sa.Value], x: list[float],
                backend: str) -> np.ndarray:
    leaves = [sa.Value(7.0) for _ in x]  # traced away from the kink
    return sa.compile(build(leaves), leaves, backend=backend).hessian(x)


KINKS = [
    # (name, function, point, hand-derived Hessian by the first-derivative conventions)
    ("relu at 0", lambda v: sa.relu(v[0]), [0.0], [[0.0]]),
    ("abs at 0", lambda v: sa.abs(v[0]), [0.0], [[0.0]]),
    # abs'(0) = 0 carries over: d/dx (2 |x| sign(x)) = 2 sign(x)^2 = 0 at 0 (as JAX)
    ("abs(x)**2 at 0", lambda v: sa.abs(v[0]) ** 2, [0.0], [[0.0]]),
    ("relu(x)**2 at 0: the flat branch", lambda v: sa.relu(v[0]) ** 2, [0.0], [[0.0]]),
    ("max at a tie", lambda v: sa.maximum(v[0], v[1]), [1.0, 1.0], [[0.0, 0.0], [0.0, 0.0]]),
    ("min at a tie", lambda v: sa.minimum(v[0], v[1]), [1.0, 1.0], [[0.0, 0.0], [0.0, 0.0]]),
    # the tie splits the gradient 0.5/0.5: the Hessian of max(a, b)^2 is 2 p p^T
    ("max(a, b)**2 at a tie", lambda v: sa.maximum(v[0], v[1]) ** 2, [1.0, 1.0],
     [[0.5, 0.5], [0.5, 0.5]]),
    ("where at its switch, linear branches",
     lambda v: sa.where(v[0] > 0.0, 2.0 * v[0], -v[0]), [0.0], [[0.0]]),
    ("where picks x*x at its switch", lambda v: sa.where(v[0] >= 0.0, v[0] * v[0], -v[0]),
     [0.0], [[2.0]]),
    ("where picks the linear branch", lambda v: sa.where(v[0] > 0.0, v[0] * v[0], -v[0]),
     [0.0], [[0.0]]),
    ("clamp at its bound", lambda v: sa.clamp(v[0], -1.0, 1.0) ** 2, [1.0], [[2.0]]),
    ("sign is flat", lambda v: sa.sign(v[0]) * v[0], [0.0], [[0.0]]),
    ("floor is flat", lambda v: sa.floor(v[0]) * v[0] * v[0], [2.0], [[4.0]]),
    # mod: d/db = -floor(a/b), whose derivative is 0
    ("mod in b", lambda v: v[0] % v[1], [5.0, 2.0], [[0.0, 0.0], [0.0, 0.0]]),
    # the branch not taken has an infinite Hessian (sqrt at 0): selected away, not nan
    ("sqrt(relu(x)) off its branch", lambda v: sa.sqrt(sa.relu(v[0])), [-1.0], [[0.0]]),
    ("stop_gradient", lambda v: sa.stop_gradient(v[0] * v[0]) * v[0], [3.0], [[0.0]]),
]


@pytest.mark.parametrize("name, build, x, expected", KINKS, ids=[k[0] for k in KINKS])
def test_conventions_at_kinks(name: str, build: Callable[[list[sa.Value]], sa.Value],
                              x: list[float], expected: list[list[float]],
                              backend: str) -> None:
    got = _hessian_at(build, x, backend)
    assert np.array_equal(got, np.array(expected)), f"{name}: {got.tolist()}"


def test_the_gradient_program_is_differentiated_before_lowering() -> None:
    # sign's expansion passes x through at 0 (to keep -0.0 and nan): differentiating
    # the lowered gradient of abs would give abs''(0) = 1, not the table's 0
    x = sa.Value(0.0)
    program = sa.compile(sa.abs(x), [x]).program
    lowered = autodiff.reverse(program, lower=True)
    both = Program(lowered.nodes, lowered.outputs, 1, 0, n_values=2)  # f and g as values
    _, jacobian = compile_program(both, backend="interpreter").jacobian([0.0])
    assert jacobian[1, 0] == 1.0  # the trap
    assert sa.compile(sa.abs(x), [x]).hessian([0.0])[0, 0] == 0.0


def test_ieee_values_propagate(backend: str) -> None:
    x = sa.Value(1.0)
    f = sa.compile(sa.log(x), [x], backend=backend)
    assert f.hessian([0.0])[0, 0] == -math.inf  # -1/x^2
    assert math.isnan(f.hessian([math.nan])[0, 0])
    assert f.hessian([math.inf])[0, 0] == -0.0
    assert sa.compile(sa.sqrt(x), [x], backend=backend).hessian([0.0])[0, 0] == -math.inf


# ------------------------------------------------------------------ the transforms


def test_sa_hessian_of_an_array_argument(backend: str) -> None:
    hess = sa.hessian(lambda v: v[0] ** 3 * v[1] + sa.sin(v[1]), backend=backend)
    for x in ([1.0, 2.0], [-0.5, 0.25]):
        a, b = x
        expected = [[6 * a * b, 3 * a * a], [3 * a * a, -math.sin(b)]]
        assert close(hess(np.array(x)), np.array(expected), 1e-15, 1e-15)
    assert hess.n_specializations == 1


def test_sa_hessian_floats_tuples_statics_and_batches() -> None:
    h = sa.hessian(lambda x, y, k: k * x * x * y, argnums=(0, 1), static_argnums=2)
    assert h(3.0, 2.0, 1.0) == ((4.0, 6.0), (6.0, 0.0))
    assert h(3.0, 2.0, 2.0) == ((8.0, 12.0), (12.0, 0.0))
    assert sa.hessian(lambda x: x ** 4)(2.0) == 48.0
    mixed = sa.hessian(lambda x, v: x * x * v[0] * v[1], argnums=(0, 1))
    blocks = mixed(2.0, np.array([3.0, 5.0]))
    assert blocks[0][0] == 30.0
    assert blocks[0][1].tolist() == [20.0, 12.0] and blocks[1][0].tolist() == [20.0, 12.0]
    assert blocks[1][1].tolist() == [[0.0, 4.0], [4.0, 0.0]]
    batch = sa.hessian(lambda v: v[0] * v[0] * v[1]).batch(np.array([[1.0, 2.0],
                                                                      [3.0, 4.0]]))
    assert batch.tolist() == [[[4.0, 2.0], [2.0, 0.0]], [[8.0, 6.0], [6.0, 0.0]]]
    tuple_batch = mixed.batch(np.array([2.0, 1.0]), np.array([[3.0, 5.0], [1.0, 1.0]]))
    assert tuple_batch[0][0].tolist() == [30.0, 2.0]


def test_sa_hessian_follows_branches_with_guards(backend: str) -> None:
    def f(v):
        return v[0] ** 3 if v[0] > 0 else v[0] * v[0] * v[1]

    h = sa.hessian(f, backend=backend)
    assert h(np.array([2.0, 5.0])).tolist() == [[12.0, 0.0], [0.0, 0.0]]
    assert h(np.array([-1.0, 5.0])).tolist() == [[10.0, -2.0], [-2.0, 0.0]]
    assert h(np.array([1.0, 5.0])).tolist() == [[6.0, 0.0], [0.0, 0.0]]
    assert h.n_specializations == 2


def test_sa_hvp(backend: str) -> None:
    f = sa.hvp(lambda v, c: c * v[0] ** 3 * v[1], backend=backend)
    x, v = np.array([1.0, 2.0]), np.array([1.0, -1.0])
    h = 3.0 * np.array([[6 * x[0] * x[1], 3 * x[0] ** 2], [3 * x[0] ** 2, 0.0]])
    assert close(f(x, 3.0, v), h @ v, 1e-15, 1e-15)
    assert close(f(x * 2, 3.0, v), 3.0 * np.array([[48.0, 12.0], [12.0, 0.0]]) @ v,
                 1e-15, 1e-15)
    assert close(f(x, v, c=3.0), h @ v, 1e-15, 1e-15)  # keywords bind before v
    g = sa.hvp(lambda x, y: x * x * y, argnums=1)
    assert g(3.0, 2.0, 1.0) == 0.0
    assert sa.hvp(lambda x, y: x * x * y)(3.0, 2.0, 1.0) == 4.0
    rows = f.batch(np.array([[1.0, 2.0], [2.0, 4.0]]), np.array([3.0, 3.0]),
                   np.array([[1.0, -1.0], [1.0, -1.0]]))
    assert close(rows[0], h @ v, 1e-15, 1e-15)


def test_sa_hvp_takes_defaults_and_keywords_before_the_direction() -> None:
    f = sa.hvp(lambda x, scale=1.0: scale * x ** 3)
    assert f(2.0, 1.0) == 12.0
    assert f(2.0, 3.0) == 36.0
    assert f(2.0, 1.0, scale=2.0) == 24.0


def test_transform_errors_name_the_argument() -> None:
    with pytest.raises(TypeError, match="one scalar"):
        sa.hessian(lambda v: [v[0], v[1]])(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="argnums of sa.hvp"):
        sa.hvp(lambda x, y: x * y, argnums=(0, 1))
    with pytest.raises(ValueError, match="v .*length 2; got an array of length 3"):
        sa.hvp(lambda v: v[0] * v[1])(np.array([1.0, 2.0]), np.zeros(3))
    with pytest.raises(ValueError, match="v .*a float; got an array"):
        sa.hvp(lambda x: x * x)(1.0, np.zeros(2))
    with pytest.raises(TypeError, match="direction v"):
        sa.hvp(lambda x: x * x)()
    with pytest.raises(TypeError, match="v .*must be a float or a 1-D array"):
        sa.hvp(lambda x: x * x)(1.0, "v")


def test_compiled_function_errors_name_the_argument() -> None:
    a, b = sa.Value(0.0), sa.Value(0.0)
    two = sa.compile([a * b, a + b], [a, b])
    with pytest.raises(ValueError, match="single output"):
        two.hessian([1.0, 2.0])
    with pytest.raises(ValueError, match="single output"):
        two.hvp([1.0, 2.0], [1.0, 0.0])
    f = sa.compile(a * a * b, [a, b])
    with pytest.raises(ValueError, match="v must have length 2; got length 3"):
        f.hvp([1.0, 2.0], [1.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="v must"):
        f.hvp([1.0, 2.0], ["a", "b"])
    with pytest.raises(ValueError, match="x must have length 2"):
        f.hessian([1.0])
    with pytest.raises(ValueError, match="out"):
        f.hessian([1.0, 2.0], out=np.zeros(4))
    with pytest.raises(ValueError, match="inputs must be empty"):
        f.hessian([1.0, 2.0], [1.0])
    out = np.zeros((2, 2))
    assert f.hessian([1.0, 2.0], out=out) is out and out.tolist() == [[4.0, 2.0], [2.0, 0.0]]
    hv = np.zeros(2)
    assert f.hvp([1.0, 2.0], [1.0, 0.0], out=hv) is hv and hv.tolist() == [4.0, 2.0]


def test_guarded_specialisations_have_second_order_kernels() -> None:
    # a sa.jit specialisation carries its guard indicator as an auxiliary output
    vg = sa.value_and_grad(lambda v: v[0] ** 3 if v[0] > 0 else -v[0])
    vg(np.array([2.0]))
    (spec,) = vg.specializations(np.array([2.0]))
    assert spec._entry.n_aux == 1
    assert spec.hessian([3.0]).tolist() == [[18.0]]
    assert spec.hvp([3.0], [2.0]).tolist() == [36.0]


# ------------------------------------------------------------------ kernels and caches


def test_the_kernels_are_built_once_and_cached_in_the_entry() -> None:
    x = sa.Value(0.0)
    f = sa.compile(sa.sin(x) * x, [x])
    f.hessian([1.0])
    f.hvp([1.0], [1.0])
    entry = f._entry
    kernels = dict(entry._second)
    assert set(kernels) == {"hessian", "hvp"}
    x2 = sa.Value(5.0)  # the same program compiled again shares the entry
    g = sa.compile(sa.sin(x2) * x2, [x2])
    assert g._entry is entry
    g.hessian([2.0])
    assert entry._second == kernels


def test_a_large_second_order_program_of_an_llvm_function_runs_on_the_vm(monkeypatch
                                                                          ) -> None:
    pytest.importorskip("llvmlite")
    monkeypatch.setattr(compiled, "SECOND_ORDER_VM_THRESHOLD", 0)
    KERNELS.clear()
    leaves = [sa.Value(0.1) for _ in range(4)]
    f = sa.compile(smooth_mix(sa, leaves), leaves, backend="llvm")
    x = np.array([0.3, -0.2, 0.9, 1.1])
    h, hv = f.hessian(x), f.hvp(x, x)
    assert f.backend == "llvm"
    assert f._entry.second_order_kernel("hessian").backend == "vm"
    assert f._entry.deriv_kernel().backend == "llvm"
    KERNELS.clear()
    monkeypatch.setattr(compiled, "SECOND_ORDER_VM_THRESHOLD", 10**9)
    f = sa.compile(smooth_mix(sa, leaves), leaves, backend="llvm")
    assert f._entry.second_order_kernel("hessian").backend == "llvm"
    assert close(f.hessian(x), h, 1e-14, 1e-14) and close(f.hvp(x, x), hv, 1e-14, 1e-14)
    KERNELS.clear()


def test_threads_get_their_own_buffers(backend: str) -> None:
    f = compiled_composite("ik", backend)
    points = np.random.default_rng(1).normal(size=(8, 4))
    expected = [f.hessian(p) for p in points]
    barrier = threading.Barrier(4)
    failures: list[str] = []

    def work(k: int) -> None:
        barrier.wait()
        for _ in range(50):
            for p, h in zip(points, expected):
                if not np.array_equal(f.hessian(p), h):
                    failures.append(f"thread {k}")
                    return

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_a_pickled_function_has_the_same_second_derivatives() -> None:
    f = compiled_composite("smooth_mix", "auto")
    x = np.array([0.1, -0.7, 0.4, 0.2])
    h = f.hessian(x)
    for g in (copy.deepcopy(f), pickle.loads(pickle.dumps(f))):
        assert np.array_equal(g.hessian(x), h)
        assert np.array_equal(g.hvp(x, x), f.hvp(x, x))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh disk cache in use, empty in-memory caches around the test."""
    monkeypatch.delenv(disk_cache.ENV_VAR, raising=False)
    saved = disk_cache._configured
    sa.set_cache_dir(tmp_path / "kernels")
    KERNELS.clear()
    yield tmp_path / "kernels"
    KERNELS.clear()
    disk_cache._configured = saved


@pytest.mark.parametrize("backend", ["llvm", "vm"])
@pytest.mark.parametrize("threshold", [10**9, 0], ids=["native", "vm-for-second-order"])
def test_second_order_kernels_load_from_the_disk_cache(backend: str, threshold: int,
                                                       cache_dir, monkeypatch) -> None:
    pytest.importorskip("llvmlite")
    monkeypatch.setattr(compiled, "SECOND_ORDER_VM_THRESHOLD", threshold)
    x = np.array([0.3, -0.2, 0.9, 1.1])
    v = np.array([1.0, 2.0, -1.0, 0.5])
    f = compiled_composite("smooth_mix", backend)
    expected = (f.value_grad_hessian(x), f.hvp(x, v))
    files = sorted(cache_dir.glob("*.sak"))
    assert len(files) >= 2
    KERNELS.clear()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a second-order kernel was built although the disk cache "
                             "holds it")

    with monkeypatch.context() as patch:
        for name in ("hessian", "hvp", "reverse", "forward"):
            patch.setattr(compiled.autodiff, name, boom)
        g = compiled_composite("smooth_mix", backend)
        (value, grad, h), hv = g.value_grad_hessian(x), g.hvp(x, v)
    assert value == expected[0][0] and np.array_equal(grad, expected[0][1])
    assert np.array_equal(h, expected[0][2]) and np.array_equal(hv, expected[1])
    assert sorted(cache_dir.glob("*.sak")) == files
    # a loaded kernel derives its program only when asked
    assert g._entry.second_order_kernel("hessian").program.n_derivs == 4 + 16
