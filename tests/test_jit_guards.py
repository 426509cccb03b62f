"""``sa.jit``, ``sa.grad``, ``sa.value_and_grad``, ``sa.jacobian``: Python branches on
traced values become guards compiled into the kernel, checked on every call.

Every compiled check runs on every backend (the ``backend`` fixture of conftest.py:
interpreter, python, llvm native code and the llvm tape VM), at points other than the
traced one and on both sides of every branch. The oracles are independent of the code
under test: the same Python function evaluated eagerly on plain floats with ``math``,
central differences of it evaluated with ``mpmath`` at 50 digits, PyTorch and JAX
where they are installed, and hand-written shapes.

The test functions take the number namespace as their first argument (``m``:
``sa``, ``math``, ``mpmath``, ``torch``, ``jax.numpy``), so one definition is both
the traced function and its oracle.
"""

from __future__ import annotations

import functools
import math
import operator
import os
import subprocess
import sys
import textwrap
import threading

import mpmath
import numpy as np
import pytest

import scalar_autograd as sa
from jit_support import assert_same
from scalar_autograd.tracing import active_trace

HERE = os.path.abspath(__file__)


def _line(marker: str) -> int:
    """The line of this file holding the comment ``# <marker>`` (exactly once)."""
    with open(HERE, encoding="utf-8") as fh:
        hits = [n for n, text in enumerate(fh, 1) if text.rstrip().endswith(f"# {marker}")]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def _site(marker: str) -> str:
    return f"{HERE}:{_line(marker)}"


def mp_grad(f, xs, dps: int = 50) -> np.ndarray:
    """The gradient of ``f`` (a function of a list of mpf) at ``xs``: central
    differences at ``dps`` digits with a step of 1e-15 (truncation error ~1e-30)."""
    with mpmath.workdps(dps):
        x = [mpmath.mpf(v) for v in xs]
        out = []
        for i in range(len(x)):
            h = mpmath.mpf(10) ** -15 * max(1, abs(x[i]))
            up, down = list(x), list(x)
            up[i] += h
            down[i] -= h
            out.append(float((f(up) - f(down)) / (2 * h)))
    return np.array(out)


def mp_jacobian(f, xs, dps: int = 50) -> np.ndarray:
    """The Jacobian (outputs x inputs) of a list-valued ``f`` by mpmath central differences."""
    with mpmath.workdps(dps):
        x = [mpmath.mpf(v) for v in xs]
        cols = []
        for i in range(len(x)):
            h = mpmath.mpf(10) ** -15 * max(1, abs(x[i]))
            up, down = list(x), list(x)
            up[i] += h
            down[i] -= h
            cols.append([float((a - b) / (2 * h)) for a, b in zip(f(up), f(down))])
    return np.array(cols).T


# --------------------------------------------------------------------------- functions
# Each takes the namespace first. The lines marked ``# NAME`` are looked up by name.


def absish(m, x):
    return x * 2 if x > 0 else -x  # ABSISH-BRANCH


def piecewise(m, x, y):
    """if/elif/else, and/or/not and a conditional expression: five branch patterns."""
    if x > 1 and y > 0:
        return m.sin(x) * y
    elif x < -1 or not (y < 2):
        return x * y + 1.0
    return m.exp(m.tanh(x)) if y > x else m.cos(x + y)


# points on every side of every branch of ``piecewise`` (none near a boundary)
PIECEWISE_POINTS = [(1.5, 0.5), (2.5, 3.0), (-1.5, 0.5), (-2.0, -3.0), (0.5, 2.5),
                    (0.3, 1.2), (-0.4, -0.2), (0.8, 0.1), (1.5, -0.5), (-0.5, 1.9),
                    (0.9, -1.0), (3.0, 2.5)]


def piecewise_pattern(x: float, y: float) -> tuple[bool, ...]:
    """The outcomes of the comparisons ``piecewise`` evaluates at (x, y), in order: the
    guards of its specialisation (``and``/``or`` evaluate their second operand only
    when the first does not decide)."""
    seen = [x > 1]
    if seen[-1]:
        seen.append(y > 0)
        if seen[-1]:
            return tuple(seen)
    seen.append(x < -1)
    if not seen[-1]:
        seen.append(y < 2)
        if seen[-1]:
            seen.append(y > x)
    return tuple(seen)


def newton_sqrt(m, a, trips=None):
    """sqrt(a) by Newton's iteration until the residual is small: one guard per step."""
    x = 0.5 * (a + 1.0)
    while abs(x * x - a) > 1e-13 * a:  # NEWTON-WHILE
        x = 0.5 * (x + a / x)
        if trips is not None:
            trips.append(1)
    return x


def staircase(m, x):
    """A data-dependent trip count: floor-ish steps, one pattern per integer part."""
    k = 0.0
    while x > 1.0:  # STAIRCASE-WHILE
        x = x - 1.0
        k = k + 1.0
    return x + k * k


def spread(m, v):
    """Builtin max, min and sorted on Values."""
    return max(v) - min(v) + sorted(v)[1] * 10.0 + m.sin(v[0])


def mixed(m, x, v, y, w):
    """Two floats and two arrays; the branch compares elements of both arrays."""
    s = x * v[0] + m.sin(v[1]) * y
    if v[2] > w[0]:
        s = s + w[1] * v[2] * x
    else:
        s = s - x * w[0] + y * y
    return s


def two_outputs(m, x, v):
    if x > v[0]:
        return [x * v[0], m.sin(v[1]) + x]
    return [v[0] - x * x, v[1] * v[0]]


def closure_user(m, x, y):
    """A nested function (closure over y) called twice, with a branch inside."""
    def inner(a):
        if a > y:  # INNER-IF
            return a - y
        return m.sin(a) * y
    return inner(x) + inner(x * x)


def _bind(fn, m=sa):
    return functools.partial(fn, m)


# --------------------------------------------------------------------------- the issue


def test_issue_example_right_on_both_sides_of_the_branch(backend):
    f = sa.jit(_bind(absish), backend=backend)
    assert f(1.0) == 2.0         # traced here
    assert f(-3.0) == 3.0        # the other side: not 6.0 (the traced branch) but 3.0
    for x in np.linspace(-4.0, 4.0, 33).tolist() + [-1e-300, 1e-300, 1e300, -1e300,
                                                    math.inf, -math.inf, math.nan]:
        assert_same(f(x), absish(math, x), what=f"f({x})")  # nan > 0 is false: -nan
    assert f.n_specializations == 2
    # a fresh function traced on the other side first
    h = sa.jit(_bind(absish), backend=backend)
    assert h(-3.0) == 3.0 and h(1.0) == 2.0 and h(0.25) == 0.5 and h(-0.25) == 0.25
    df = sa.grad(_bind(absish), backend=backend)
    for x in (1.0, -3.0, 0.5, -0.5, 7.0):
        assert df(x) == (2.0 if x > 0 else -1.0)
        assert type(df(x)) is float
    xs = np.array([1.0, -3.0, 2.0, -0.5, 0.0])
    assert_same(f.batch(xs), [absish(math, x) for x in xs.tolist()], what="batch")


def test_piecewise_values_and_gradients_on_every_side(backend):
    f = sa.jit(_bind(piecewise), backend=backend)
    vg = sa.value_and_grad(_bind(piecewise), argnums=(0, 1), backend=backend)
    f(0.0, 0.0)
    vg(0.0, 0.0)  # traced at a point not in the list
    patterns = {piecewise_pattern(0.0, 0.0)}
    for x, y in PIECEWISE_POINTS:
        patterns.add(piecewise_pattern(x, y))
        expected = piecewise(math, x, y)
        assert_same(f(x, y), expected, rel=1e-15, what=f"f{(x, y)}")
        value, (gx, gy) = vg(x, y)
        assert type(gx) is float and type(gy) is float
        assert_same(value, expected, rel=1e-15, what=f"value{(x, y)}")
        numeric = mp_grad(lambda p: piecewise(mpmath, *p), [x, y])
        assert_same([gx, gy], numeric, rel=1e-10, abs_tol=1e-12, what=f"grad{(x, y)}")
    assert len(patterns) == 6  # every reachable pattern
    # one specialisation per pattern of guards, each traced once
    assert f.n_specializations == vg.n_specializations == len(patterns)


def test_piecewise_gradients_agree_with_torch(backend):
    torch = pytest.importorskip("torch")
    df = sa.grad(_bind(piecewise), argnums=(0, 1), backend=backend)
    for x, y in PIECEWISE_POINTS:
        tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ty = torch.tensor(y, dtype=torch.float64, requires_grad=True)
        piecewise(torch, tx, ty).backward()
        expected = [0.0 if t.grad is None else t.grad.item() for t in (tx, ty)]
        assert_same(df(x, y), expected, rel=1e-13, abs_tol=1e-300, what=f"torch{(x, y)}")


def test_guard_on_a_non_differentiated_argument(backend):
    def fn(x, y):
        return x * x if y > 0 else 3.0 * x

    df = sa.grad(fn, argnums=0, backend=backend)
    for x, y in ((1.0, 1.0), (2.0, -1.0), (-0.5, 2.0), (0.25, -4.0)):
        assert df(x, y) == (2 * x if y > 0 else 3.0)
    assert df.n_specializations == 2


def test_truthiness_of_a_value_is_a_guard_and_nan_is_true(backend):
    def fn(x, y):
        if x - y:            # non-zero (nan included) is true, as for floats
            return x * 2.0
        return y * 3.0

    f = sa.jit(fn, backend=backend)
    for x, y in ((1.0, 1.0), (2.0, 1.0), (-0.0, 0.0), (0.0, -0.0), (math.inf, math.inf),
                 (math.nan, 1.0), (1.0, math.nan), (-5.0, -5.0), (math.inf, 1.0)):
        assert_same(f(x, y), fn(x, y), what=f"f{(x, y)}")
    assert f.n_specializations == 2


def test_chained_comparisons(backend):
    def fn(m, x):
        if -0.5 < x < 0.5:
            return m.cos(x)
        return x * x if 1.0 <= x * x <= 4.0 else m.tanh(x)

    f = sa.jit(_bind(fn), backend=backend)
    df = sa.grad(_bind(fn), backend=backend)
    for x in (0.1, -0.4, 0.7, -0.7, 1.5, -1.5, 2.5, -3.0, 0.49, 1.99):
        assert_same(f(x), fn(math, x), rel=1e-15, what=f"f({x})")
        numeric = mp_grad(lambda p: fn(mpmath, p[0]), [x])
        assert_same(df(x), numeric, rel=1e-10, abs_tol=1e-12, what=f"df({x})")


# --------------------------------------------------------------------------- loops


def test_newton_while_loop_one_guard_per_iteration(backend):
    f = sa.jit(_bind(newton_sqrt), max_specializations=16, backend=backend)
    points = [2.0, 0.5, 1.5, 3.0, 10.0, 99.0, 1e3, 1e4, 0.75, 7.0]
    trip_counts = set()
    for a in points:
        trips: list[int] = []
        expected = newton_sqrt(math, a, trips)
        trip_counts.add(len(trips))
        assert_same(f(a), expected, rel=1e-15, what=f"sqrt({a})")
        assert abs(f(a) - math.sqrt(a)) <= 1e-12 * math.sqrt(a)
    assert len(trip_counts) >= 4  # the points take different numbers of iterations
    # one specialisation per trip count: each iteration is one guard
    assert f.n_specializations == len(trip_counts)
    df = sa.grad(_bind(newton_sqrt), max_specializations=16, backend=backend)
    for a in points:
        numeric = mp_grad(lambda p: newton_sqrt(mpmath, p[0]), [a])[0]
        assert_same(df(a), numeric, rel=1e-9, what=f"d sqrt({a})")
        assert abs(df(a) - 0.5 / math.sqrt(a)) <= 1e-5 / math.sqrt(a)


def test_while_loop_specialisations_are_reused_not_retraced(backend):
    f = sa.jit(_bind(staircase), backend=backend)
    for x in (0.5, 1.5, 2.5, 0.25, 1.75, 2.75, 0.0, 2.0):
        assert_same(f(x), staircase(math, x), rel=1e-15, what=f"staircase({x})")
    assert f.n_specializations == 3  # trip counts 0, 1, 2


def test_long_program_inside_a_branch_runs_on_the_vm(backend):
    """Over 20,000 instructions in one branch (over VM_THRESHOLD: the llvm backend
    runs it on the tape VM), a few in the other (native code)."""
    consts = [1.0 + i / 4096 for i in range(12_000)]  # distinct: nothing folds; sums exact

    def long_sum(v):
        if v[0] > 0:
            s = v[0]
            for c in consts:
                s = s + v[1] * c
            return s
        return v[0] * v[1]

    f = sa.jit(long_sum, backend=backend)
    vg = sa.value_and_grad(long_sum, backend=backend)
    total = math.fsum(consts)
    for v0, v1 in ((1.0, 2.0), (-1.0, 2.0), (0.5, -3.0), (-2.5, 0.75), (3.0, 0.1)):
        v = np.array([v0, v1])
        s = v0
        for c in consts:
            s = s + v1 * c
        expected = s if v0 > 0 else v0 * v1
        assert_same(f(v), expected, rel=1e-15, what=f"f at {v}")
        value, g = vg(v)
        assert_same(value, expected, rel=1e-15, what=f"value at {v}")
        assert_same(g, [1.0, total] if v0 > 0 else [v1, v0], rel=1e-15, what=f"grad at {v}")
    assert f.n_specializations == vg.n_specializations == 2
    if backend in ("llvm", "vm"):
        point = np.array([1.0, 2.0])
        used = sorted([c.backend for c in f.specializations(point)]
                      + [c.backend for c in vg.specializations(point)])
        if backend == "vm":  # the tape VM whatever the size
            assert used == ["vm"] * 4
        else:
            # "llvm": the long branch is a sum of terms of one shape, so it compiles as
            # row kernels (ir/structure.py) and no program is past VM_THRESHOLD
            assert used == ["llvm"] * 4
            assert any(c.stats().row_kernels for c in f.specializations(point))


# --------------------------------------------------------------------------- and/or/not


@pytest.mark.parametrize("x, y", [(2.0, 1.0), (2.0, -1.0), (-2.0, 1.0), (-0.5, 3.0),
                                  (-0.5, -1.0), (0.5, 0.5), (-2.0, -2.0), (0.0, 5.0)])
def test_and_or_not_and_conditional_expressions(backend, x, y):
    def fn(m, x, y):
        a = x > 0 and y > 0          # a Value: whichever operand decided
        b = x < -1 or y > 2
        if a:
            r = x + y
        elif not b:
            r = x * y
        else:
            r = x - y if x > y else m.sin(y)
        return r + (1.0 if not (x > y) else 2.0)

    f = sa.jit(_bind(fn), backend=backend)
    f(0.3, 0.3)  # traced elsewhere
    assert_same(f(x, y), fn(math, x, y), rel=1e-15, what=f"f{(x, y)}")


def test_min_max_sorted_on_values(backend):
    f = sa.jit(_bind(spread), backend=backend)
    J = sa.jacobian(lambda v: sorted(v), backend=backend)
    df = sa.grad(_bind(spread), backend=backend)
    base = [0.3, -1.2, 2.5]
    for perm in ((0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0), (0, 2, 1), (1, 0, 2)):
        v = np.array([base[i] for i in perm])
        assert_same(f(v), spread(math, list(v)), rel=1e-15, what=f"spread{v}")
        assert_same(J(v).ravel(), np.eye(3)[np.argsort(v)].ravel(), what=f"d sorted at {v}")
        numeric = mp_grad(lambda p: spread(mpmath, p), v.tolist())
        assert_same(df(v), numeric, rel=1e-10, abs_tol=1e-12, what=f"grad spread{v}")
    assert J.n_specializations == 6


def test_builtin_min_max_with_plain_floats(backend):
    def fn(x):
        return min(x, 1.0) * 3.0 + max(-1.0, x * x - 2.0)

    vg = sa.value_and_grad(fn, backend=backend)
    for x in (-3.0, -0.5, 0.2, 1.5, 2.5):
        value, g = vg(x)
        assert_same(value, fn(x), rel=1e-15, what=f"fn({x})")
        assert g == (3.0 if x < 1.0 else 0.0) + (2 * x if x * x - 2.0 > -1.0 else 0.0)


# --------------------------------------------------------------------------- nesting


def test_nested_function_and_closure(backend):
    f = sa.jit(_bind(closure_user), backend=backend)
    df = sa.grad(_bind(closure_user), argnums=(0, 1), backend=backend)
    for x, y in ((0.5, 0.1), (0.5, 0.4), (0.5, 0.9), (1.5, 1.0), (-1.5, 0.5), (2.0, 5.0)):
        assert_same(f(x, y), closure_user(math, x, y), rel=1e-15, what=f"f{(x, y)}")
        numeric = mp_grad(lambda p: closure_user(mpmath, *p), [x, y])
        assert_same(df(x, y), numeric, rel=1e-10, abs_tol=1e-12, what=f"grad{(x, y)}")


def test_jit_inside_jit_is_inlined_with_its_guards(backend):
    inner = sa.jit(_bind(absish), backend=backend)
    outer = sa.jit(lambda x: inner(x) + x * x, backend=backend)
    assert inner(1.0) == 2.0  # inner compiled and called on its own first
    for x in (1.0, -3.0, 0.5, -0.5):
        assert outer(x) == absish(math, x) + x * x
    assert outer.n_specializations == 2
    df = sa.grad(lambda x: inner(x) * x, backend=backend)
    assert df(2.0) == 8.0 and df(-2.0) == 4.0


def test_a_derivative_transform_inside_a_trace_is_refused(backend):
    inner = sa.grad(lambda x: x * x, backend=backend)
    with pytest.raises(TypeError, match="sa.grad was called with Values"):
        sa.jit(lambda x: inner(x) + 1.0, backend=backend)(1.0)


# --------------------------------------------------------------------------- static


def poly(m, x, mode, n):
    s = x
    for _ in range(n):
        s = s * x if mode == "mul" else s + m.sin(x)
    return s if s > 0.5 else -s


def test_static_argnums_string_mode_and_int_size(backend):
    f = sa.jit(_bind(poly), static_argnums=(1, 2), backend=backend)
    df = sa.grad(_bind(poly), static_argnums=(1, 2), backend=backend)
    for mode in ("mul", "add"):
        for n in (1, 2, 3):
            for x in (1.5, 0.2, -0.7, -2.0, 0.9):
                assert_same(f(x, mode, n), poly(math, x, mode, n), rel=1e-15,
                            what=f"poly({x}, {mode}, {n})")
                numeric = mp_grad(lambda p, mode=mode, n=n: poly(mpmath, p[0], mode, n), [x])
                assert_same(df(x, mode, n), numeric, rel=1e-10, abs_tol=1e-12,
                            what=f"d poly({x}, {mode}, {n})")
            # each (mode, n) is its own signature with its own specialisations
            assert 1 <= len(f.specializations(0.0, mode, n)) <= 2
    assert f(2.0, mode="mul", n=2) == 8.0  # statics by keyword
    assert f.specializations(0.0, "neither", 1) == []
    with pytest.raises(TypeError, match="static argument 1 must be hashable"):
        f(1.0, ["mul"], 2)
    with pytest.raises(TypeError, match="static argument 2 must be hashable"):
        f(1.0, "mul", {"n": 2})


def test_static_argument_left_to_its_default(backend):
    def scaled(x, n=2):
        return x * n

    f = sa.jit(scaled, static_argnums=1, backend=backend)
    assert f(x=3.0) == 6.0      # defaults applied when a keyword is present
    assert f(3.0) == 6.0        # ValueError: "argument 1 is named ... passed 1 argument(s)"


# --------------------------------------------------------------------------- many args


def test_multiple_array_and_float_args_with_argnums_tuples(backend):
    grad = sa.grad(_bind(mixed), argnums=(1, 0, 3), backend=backend)
    vg = sa.value_and_grad(_bind(mixed), argnums=2, backend=backend)
    jac = sa.jacobian(_bind(two_outputs), argnums=(0, 1), backend=backend)
    rng = np.random.default_rng(3)
    for k in range(8):
        x, y = rng.uniform(-2, 2, 2).tolist()
        v, w = rng.uniform(-2, 2, 3), rng.uniform(-2, 2, 2)
        v[2] = w[0] + (0.5 if k % 2 else -0.5)  # both sides of the branch
        flat = [x, *v.tolist(), y, *w.tolist()]

        def oracle(p):
            return mixed(mpmath, p[0], p[1:4], p[4], p[5:7])

        numeric = mp_grad(oracle, flat)
        gv, gx, gw = grad(x, v, y, w)
        assert gv.shape == (3,) and type(gx) is float and gw.shape == (2,)
        assert_same(gv, numeric[1:4], rel=1e-10, abs_tol=1e-12, what="d/dv")
        assert_same(gx, numeric[0], rel=1e-10, abs_tol=1e-12, what="d/dx")
        assert_same(gw, numeric[5:7], rel=1e-10, abs_tol=1e-12, what="d/dw")
        value, gy = vg(x, v, y, w)
        assert type(gy) is float
        assert_same(value, mixed(math, x, list(v), y, list(w)), rel=1e-15, what="value")
        assert_same(gy, numeric[4], rel=1e-10, abs_tol=1e-12, what="d/dy")
        v2 = v[:2].copy()  # v2[0] on both sides of x
        v2[0] = x + (0.75 if k % 2 else -0.75)
        jx, jv = jac(x, v2)
        assert jx.shape == (2,) and jv.shape == (2, 2)
        numeric_j = mp_jacobian(lambda p: two_outputs(mpmath, p[0], p[1:]), [x, *v2])
        assert_same(jx, numeric_j[:, 0], rel=1e-10, abs_tol=1e-12, what="dJ/dx")
        assert_same(jv.ravel(), numeric_j[:, 1:].ravel(), rel=1e-10, abs_tol=1e-12,
                    what="dJ/dv")


# the shapes of JAX's conventions: (name, fn, args, kind, argnums, expected shapes)
_SHAPE_CASES = [
    ("grad f(float)", lambda m, x: x * x if x > 0 else m.sin(x), (1.5,), "grad", 0, ()),
    ("jacobian f(float)", lambda m, x: x * x if x > 0 else m.sin(x), (-1.5,), "jacobian", 0,
     ()),
    ("grad f(array)", lambda m, v: v[0] * v[1] if v[0] > v[1] else m.exp(v[1]),
     (np.array([2.0, 1.0, 0.5]),), "grad", 0, (3,)),
    ("jacobian f(array) scalar", lambda m, v: v[0] * v[2] if v[0] > 0 else v[1],
     (np.array([2.0, 1.0, 0.5]),), "jacobian", 0, (3,)),
    ("jacobian f(array) vector", lambda m, v: [v[0] * v[1], m.sin(v[2])] if v[0] > 0 else
     [v[1], v[2]], (np.array([-2.0, 1.0, 0.5]),), "jacobian", 0, (2, 3)),
    ("jacobian f(float) vector", lambda m, x: [x * x, m.sin(x), x] if x < 1 else [x, x, x],
     (0.5,), "jacobian", 0, (3,)),
    ("grad argnums (0, 1)", lambda m, x, v: x * v[0] if x > v[1] else x + v[1],
     (1.5, np.array([2.0, 1.0])), "grad", (0, 1), ((), (2,))),
    ("grad argnums (1,)", lambda m, x, v: x * v[0] if x > v[1] else x + v[1],
     (0.5, np.array([2.0, 1.0])), "grad", (1,), ((2,),)),
    ("grad argnums 1", lambda m, x, v: x * v[0] if x > v[1] else x + v[1],
     (1.5, np.array([2.0, 1.0])), "grad", 1, (2,)),
    ("value_and_grad (0, 1)", lambda m, x, v: x * v[0] if x > v[1] else x + v[1],
     (0.5, np.array([2.0, 1.0])), "value_and_grad", (0, 1), ((), ((), (2,)))),
    ("value_and_grad f(array)", lambda m, v: v[0] * v[1] + m.tanh(v[0]),
     (np.array([2.0, 1.0]),), "value_and_grad", 0, ((), (2,))),
    ("jacobian argnums (0, 1) vector", lambda m, x, v: [x * v[0], v[1] - x] if x > 0 else
     [v[0], x], (0.5, np.array([2.0, 1.0])), "jacobian", (0, 1), ((2,), (2, 2))),
    ("jacobian argnums (0, 1) scalar", lambda m, x, v: x * v[0] if x > 0 else v[1],
     (-0.5, np.array([2.0, 1.0])), "jacobian", (0, 1), ((), (2,))),
]
_TRANSFORMS = {"grad": sa.grad, "jacobian": sa.jacobian, "value_and_grad": sa.value_and_grad}


def _shape_tree(r):
    if isinstance(r, tuple):
        return tuple(_shape_tree(t) for t in r)
    return np.shape(r)


def _leaves(r):
    if isinstance(r, tuple):
        return [leaf for t in r for leaf in _leaves(t)]
    return [r]


@pytest.mark.parametrize("case", _SHAPE_CASES, ids=[c[0] for c in _SHAPE_CASES])
def test_result_shapes_follow_jax_conventions(backend, case):
    name, fn, args, kind, argnums, shapes = case
    t = _TRANSFORMS[kind](_bind(fn), argnums=argnums, backend=backend)
    t(*[a + 1.0 for a in args])  # traced elsewhere first
    result = t(*args)
    assert _shape_tree(result) == shapes
    for leaf in _leaves(result):  # a float argument gives a float, not a 0-d array
        assert type(leaf) is float if np.shape(leaf) == () else isinstance(leaf, np.ndarray)


@pytest.mark.parametrize("case", _SHAPE_CASES, ids=[c[0] for c in _SHAPE_CASES])
def test_results_agree_with_jax(backend, case):
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    name, fn, args, kind, argnums, shapes = case

    def jax_fn(*a):
        out = fn(jnp, *a)
        return jnp.stack(out) if isinstance(out, list) else out

    with jax.enable_x64(True):
        jax_args = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        jax_t = {"grad": jax.grad, "jacobian": jax.jacobian,
                 "value_and_grad": jax.value_and_grad}[kind]
        expected = jax_t(jax_fn, argnums=argnums)(*jax_args)
        expected = jax.tree_util.tree_map(np.asarray, expected)
    t = _TRANSFORMS[kind](_bind(fn), argnums=argnums, backend=backend)
    result = t(*args)
    assert _shape_tree(result) == _shape_tree(expected)
    for a, e in zip(_leaves(result), jax.tree_util.tree_leaves(expected)):
        assert_same(np.ravel(a), np.ravel(e), rel=1e-14, abs_tol=1e-300, what=name)


# --------------------------------------------------------------------------- limit


def test_specialisation_limit_names_the_branch_and_suggests_where(backend):
    f = sa.jit(_bind(staircase), backend=backend)
    points = [0.5 + k for k in range(8)]  # trip counts 0..7: eight patterns
    for x in points:
        assert_same(f(x), staircase(math, x), rel=1e-15, what=f"staircase({x})")
    assert f.n_specializations == 8 == f.max_specializations
    with pytest.raises(sa.SpecializationLimitError) as info:
        f(8.5)                   # a ninth pattern
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert _site("STAIRCASE-WHILE") in message
    assert "sa.where" in message and "max_specializations=8" in message
    for x in points:  # the cached specialisations still answer
        assert_same(f(x + 0.25), staircase(math, x + 0.25), rel=1e-15, what="after")
    assert f.n_specializations == 8


def test_specialisation_limit_is_configurable(backend):
    small = sa.grad(_bind(staircase), max_specializations=3, backend=backend)
    for x in (0.5, 1.5, 2.5):
        assert small(x) == 1.0
    with pytest.raises(sa.SpecializationLimitError, match="max_specializations=3"):
        small(3.5)
    large = sa.jit(_bind(staircase), max_specializations=12, backend=backend)
    for k in range(12):
        assert_same(large(0.5 + k), staircase(math, 0.5 + k), rel=1e-15, what=f"{k}")
    assert large.n_specializations == 12
    with pytest.raises(sa.SpecializationLimitError):
        large(12.5)


def test_limit_error_names_a_branch_inside_a_nested_function(backend):
    f = sa.jit(lambda x: sum(closure_user(sa, x, c) for c in (0.1, 0.2, 0.3, 0.4)),
               max_specializations=2, backend=backend)
    with pytest.raises(sa.SpecializationLimitError) as info:
        for x in (0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65):
            f(x)
    assert _site("INNER-IF") in str(info.value)


def test_where_compiles_once_and_never_retraces(backend):
    def fn(m, x):
        return m.where(x > 0, x * 2, -x) + m.where(x * x < 2, m.sin(x), 1.0)

    f = sa.jit(_bind(fn), backend=backend)
    df = sa.grad(_bind(fn), backend=backend)

    def oracle(x):
        return (x * 2 if x > 0 else -x) + (math.sin(x) if x * x < 2 else 1.0)

    for x in np.linspace(-3.0, 3.0, 41).tolist():
        assert_same(f(x), oracle(x), rel=1e-15, what=f"where({x})")
        expected = (2.0 if x > 0 else -1.0) + (math.cos(x) if x * x < 2 else 0.0)
        assert_same(df(x), expected, rel=1e-15, what=f"d where({x})")
    assert f.n_specializations == 1 and df.n_specializations == 1


# --------------------------------------------------------------------------- batches


def test_batch_rows_taking_different_branches(backend):
    xs = np.array([p[0] for p in PIECEWISE_POINTS])
    ys = np.array([p[1] for p in PIECEWISE_POINTS])
    f = sa.jit(_bind(piecewise), backend=backend)
    values = f.batch(xs, ys)
    assert values.shape == (len(xs),)
    for i, (x, y) in enumerate(PIECEWISE_POINTS):
        assert_same(values[i], piecewise(math, x, y), rel=1e-15, what=f"row {i}")
    g = sa.grad(_bind(piecewise), argnums=(0, 1), backend=backend)
    gx, gy = g.batch(xs, ys)
    assert gx.shape == gy.shape == (len(xs),)
    for i, (x, y) in enumerate(PIECEWISE_POINTS):
        numeric = mp_grad(lambda p: piecewise(mpmath, *p), [x, y])
        assert_same([gx[i], gy[i]], numeric, rel=1e-10, abs_tol=1e-12, what=f"grad row {i}")
    # a second batch reuses the specialisations: no new trace
    n = f.n_specializations
    f.batch(xs[::-1].copy(), ys[::-1].copy())
    assert f.n_specializations == n


def test_batch_of_arrays_value_and_grad_and_jacobian(backend):
    rng = np.random.default_rng(8)
    V = rng.uniform(-2, 2, (12, 3))
    vg = sa.value_and_grad(_bind(spread), backend=backend)
    values, grads = vg.batch(V)
    assert values.shape == (12,) and grads.shape == (12, 3)
    for i, v in enumerate(V):
        assert_same(values[i], spread(math, list(v)), rel=1e-15, what=f"row {i}")
        assert_same(grads[i], mp_grad(lambda p: spread(mpmath, p), v.tolist()), rel=1e-10,
                    abs_tol=1e-12, what=f"grad row {i}")
    X = rng.uniform(-2, 2, 12)
    J = sa.jacobian(_bind(two_outputs), argnums=(0, 1), backend=backend)
    jx, jv = J.batch(X, V[:, :2])
    assert jx.shape == (12, 2) and jv.shape == (12, 2, 2)
    for i in range(12):
        numeric = mp_jacobian(lambda p: two_outputs(mpmath, p[0], p[1:]), [X[i], *V[i, :2]])
        assert_same(jx[i], numeric[:, 0], rel=1e-10, abs_tol=1e-12, what=f"dx row {i}")
        assert_same(jv[i].ravel(), numeric[:, 1:].ravel(), rel=1e-10, abs_tol=1e-12,
                    what=f"dv row {i}")


def test_batch_with_static_arguments(backend):
    f = sa.jit(_bind(poly), static_argnums=(1, 2), backend=backend)
    xs = np.array([1.5, 0.2, -0.7, -2.0, 0.9, 0.6])
    for mode, n in (("mul", 2), ("add", 1)):
        assert_same(f.batch(xs, mode, n), [poly(math, x, mode, n) for x in xs.tolist()],
                    rel=1e-15, what=f"batch {mode} {n}")


def test_batch_of_zero_rows(backend):
    f = sa.jit(_bind(absish), backend=backend)
    assert f(1.0) == 2.0
    assert f.batch(np.zeros(0)).shape == (0,)


# --------------------------------------------------------------------------- concretization

_CONCRETE = [  # (fn, what the message says, the suggestion), each lambda on its own line
    (lambda x: float(x), "float()", "sa.where"),
    (lambda x: int(x), "int()", "sa.where"),
    (lambda x: operator.index(x), "operator.index()", "sa.where"),
    (lambda x: x.item(), ".item()", "sa.where"),
    (lambda x: math.exp(x), "float()", "sa.exp"),
    (lambda x: math.sin(x) + x, "float()", "sa.sin"),
    (lambda x: np.float64(x), "float()", "numpy.float64"),
    (lambda x: np.array([x], dtype=float)[0], "float()", "numpy.array"),
    (lambda x: x * list(range(x))[0], "operator.index()", "sa.where"),
]


@pytest.mark.parametrize("transform", ["jit", "grad", "jacobian"])
@pytest.mark.parametrize("case", _CONCRETE, ids=[c[1] + str(i) for i, c in enumerate(_CONCRETE)])
def test_concretization_errors_name_the_line_and_the_remedy(backend, transform, case):
    fn, what, advice = case
    t = getattr(sa, transform)(fn, backend=backend)
    with pytest.raises(sa.ConcretizationError) as info:
        t(1.5)
    assert isinstance(info.value, TypeError)
    message = str(info.value)
    assert f"{HERE}:{fn.__code__.co_firstlineno}" in message
    assert what in message and advice in message
    assert t.n_specializations == 0
    assert active_trace() is None  # the failed trace left no trace behind


def test_a_failed_trace_caches_nothing(backend):
    def fn(x):
        if x < 0:
            return x * float(x)  # only this branch concretises
        return x * 3.0

    f = sa.jit(fn, backend=backend)
    assert f(1.0) == 3.0
    with pytest.raises(sa.ConcretizationError):
        f(-1.0)
    assert f(2.0) == 6.0 and f.n_specializations == 1
    with pytest.raises(sa.ConcretizationError):
        f(-2.0)  # not cached as a specialisation: traced and refused again


def test_concretization_of_an_array_element_and_of_a_constant(backend):
    with pytest.raises(sa.ConcretizationError, match="float()"):
        sa.jit(lambda v: v[0] * float(v[1]), backend=backend)(np.array([1.0, 2.0]))
    # a Value that does not depend on the arguments is a plain number
    f = sa.jit(lambda x: x * float(sa.Value(2.0) * 3.0) + int(sa.Value(1.5)),
               backend=backend)
    assert f(2.0) == 13.0 and f(-1.0) == -5.0
    # outside a trace float() is the data
    assert float(sa.Value(2.5)) == 2.5 and sa.Value(2.5).item() == 2.5


def test_no_grad_inside_a_traced_function_raises(backend):
    def fn(x):
        with sa.no_grad():
            return x * 2.0  # NO-GRAD-MUL

    for t in (sa.jit(fn, backend=backend), sa.grad(fn, backend=backend)):
        with pytest.raises(sa.ConcretizationError) as info:
            t(1.0)
        assert "no_grad" in str(info.value) and _site("NO-GRAD-MUL") in str(info.value)

    def constants_only(x):  # no_grad on values that do not depend on x is fine
        with sa.no_grad():
            c = sa.Value(2.0) * 3.0
        return x * c

    assert sa.grad(constants_only, backend=backend)(5.0) == 6.0


def test_function_returning_a_constant(backend):
    f = sa.jit(lambda x: 3.0, backend=backend)
    assert f(1.0) == 3.0 and f(-7.5) == 3.0 and type(f(2.0)) is float
    assert f.batch(np.array([1.0, 2.0])).tolist() == [3.0, 3.0]
    assert f.n_specializations == 1
    g = sa.grad(lambda x: 3.0, backend=backend)
    assert g(1.0) == 0.0 and type(g(1.0)) is float
    ga = sa.grad(lambda v: 3.0, backend=backend)
    assert ga(np.array([1.0, 2.0])).tolist() == [0.0, 0.0]
    J = sa.jacobian(lambda v: [1.0, 2.0], backend=backend)
    assert J(np.array([1.0, 2.0, 3.0])).tolist() == [[0.0] * 3, [0.0] * 3]
    assert sa.jit(lambda: 4.0, backend=backend)() == 4.0
    assert sa.jit(lambda v: [1.0, 2.5], backend=backend)(np.ones(2)).tolist() == [1.0, 2.5]


def test_identity_and_unused_arguments(backend):
    assert sa.grad(lambda x: x, backend=backend)(2.0) == 1.0
    assert sa.jacobian(lambda v: v, backend=backend)(np.array([1.0, 2.0])).tolist() == \
        [[1.0, 0.0], [0.0, 1.0]]
    assert sa.grad(lambda x, y: x * x, argnums=1, backend=backend)(1.0, 2.0) == 0.0
    assert sa.grad(lambda x, y: y, argnums=0, backend=backend)(1.0, 2.0) == 0.0


# --------------------------------------------------------------------------- frozen branches


def _run_isolated(tmp_path, body: str, watchdog: float = 5.0) -> dict:
    """Run ``body`` in a fresh interpreter (a hang there cannot hang this process);
    it must print a JSON dict on its last line. A hang past ``watchdog`` seconds fails."""
    script = tmp_path / "frozen_script.py"
    script.write_text("import faulthandler, json, sys, warnings\n"
                      f"faulthandler.dump_traceback_later({watchdog}, exit=True)\n"
                      "import scalar_autograd as sa\n" + textwrap.dedent(body))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path))
    if done.returncode != 0:
        pytest.fail(f"the script failed or hung (rc={done.returncode}):\n"
                    f"{done.stderr[-3000:]}")
    import json

    return json.loads(done.stdout.strip().splitlines()[-1])


_FROZEN_SCRIPT = """
    def build():
        x = sa.Value(1.0)
        if x > 0:  # FROZEN-PARAM
            y = x * 2
        else:
            y = -x
        return x, y

    x, y = build()
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = sa.compile(y, [x])
    out["warnings"] = [(w.category.__name__, str(w.message)) for w in caught]
    out["frozen_value_at_minus_3"] = f([-3.0])
    try:
        sa.compile(y, [x], strict=True)
        out["strict"] = None
    except ValueError as e:
        out["strict"] = str(e)
    t, p = sa.Value(0.5), sa.Value(2.0)
    z = p * t if t < 1 else p  # FROZEN-INPUT: a branch on an input
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sa.compile(z, [p], inputs=[t])
    out["input_warnings"] = [(w.category.__name__, str(w.message)) for w in caught]
    print(json.dumps(out))
"""


def test_compile_warns_about_a_branch_frozen_into_the_graph(tmp_path):
    out = _run_isolated(tmp_path, _FROZEN_SCRIPT)
    script = tmp_path / "frozen_script.py"
    lines = script.read_text().splitlines()
    param_site, input_site = (
        f"{script}:{1 + next(i for i, t in enumerate(lines) if t.endswith(marker))}"
        for marker in ("# FROZEN-PARAM", "# FROZEN-INPUT: a branch on an input"))
    assert [w[0] for w in out["warnings"]] == ["FrozenBranchWarning"]
    message = out["warnings"][0][1]
    assert param_site in message and "params[0]" in message and "sa.where" in message
    assert out["frozen_value_at_minus_3"] == -6.0  # the frozen branch: why it warns
    assert out["strict"] is not None and param_site in out["strict"]
    assert [w[0] for w in out["input_warnings"]] == ["FrozenBranchWarning"]
    assert input_site in out["input_warnings"][0][1]
    assert "inputs[0]" in out["input_warnings"][0][1]


def test_two_eager_branches_on_one_leaf_do_not_hang(tmp_path):
    # a regression test: the marks once lived in a WeakKeyDictionary whose lookups
    # compare Values with ==, whose bool() re-entered mark_branch under its lock
    out = _run_isolated(tmp_path, """
        x = sa.Value(1.0)
        first = bool(x > 0)
        second = bool(x > 0)  # the second branch on the leaf x
        print(json.dumps({"first": first, "second": second}))
    """)
    assert out == {"first": True, "second": True}


def test_branches_on_a_growing_graph_mark_every_new_leaf(tmp_path):
    # mark_branch stops at the roots of earlier branches (their leaves are marked):
    # a leaf that enters the graph later must still be marked when a branch reaches it
    out = _run_isolated(tmp_path, """
        leaves = [sa.Value(float(k)) for k in range(50)]
        t = sa.Value(0.0)
        for leaf in leaves:
            if t < 1e9:          # a branch on the growing sum, every iteration
                t = t + leaf * 0.5
        late = sa.Value(3.0)     # never branched on
        out = {}
        for name, params in (("last", [leaves[-1]]), ("second_last", [leaves[-2]]),
                             ("first", [leaves[0]]), ("late", [late])):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sa.compile(t + late, params)
            out[name] = [w.category.__name__ for w in caught]
        print(json.dumps(out))
    """)
    # leaves[-1] only enters the sum after the last branch, so nothing asked about it
    # leaves[-2] entered after the previous branches' roots: found past the memo
    assert out == {"last": [], "second_last": ["FrozenBranchWarning"],
                   "first": ["FrozenBranchWarning"], "late": []}


def test_no_frozen_branch_warning_for_a_graph_built_with_where(backend):
    import warnings

    x = sa.Value(1.0)
    y = sa.where(x > 0, x * 2, -x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        f = sa.compile(y, [x], backend=backend)
        g = sa.compile(y, [x], backend=backend, strict=True)
    assert f([-3.0]) == 3.0 and f([2.0]) == 4.0 and g([-1.0]) == 1.0


# --------------------------------------------------------------------------- threads


def test_no_grad_held_open_in_one_thread_does_not_stop_recording_in_another(backend):
    entered, release = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def holder():
        with sa.no_grad():
            a = sa.Value(1.0, requires_grad=True)
            seen["holder_enabled"] = sa.is_grad_enabled()
            seen["holder_records"] = (a * 2).op is not None
            entered.set()
            release.wait(30)
            b = a * 3  # still off here after the other thread worked
            seen["holder_records_later"] = b.op is not None

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert entered.wait(30)
        assert sa.is_grad_enabled()
        x = sa.Value(2.0, requires_grad=True)
        y = x * 3 + x * x
        assert y.op is not None and y.requires_grad
        y.backward()
        assert x.grad == 7.0
        # tracing needs recording: a jitted function traces here while the other
        # thread is inside no_grad
        df = sa.grad(_bind(absish), backend=backend)
        assert df(2.0) == 2.0 and df(-2.0) == -1.0
    finally:
        release.set()
        t.join(30)
    assert seen == {"holder_enabled": False, "holder_records": False,
                    "holder_records_later": False}
    # and the other way round: this thread inside no_grad, a worker records
    result: dict[str, object] = {}

    def worker():
        v = sa.Value(1.0, requires_grad=True)
        result["records"] = (v * 2).op is not None
        result["enabled"] = sa.is_grad_enabled()

    with sa.no_grad():
        w = threading.Thread(target=worker)
        w.start()
        w.join(30)
        assert not sa.is_grad_enabled()
    assert result == {"records": True, "enabled": True}


def test_detect_anomaly_held_open_in_one_thread_does_not_reach_another():
    entered, release = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def holder():
        with sa.detect_anomaly():
            entered.set()
            release.wait(30)
            try:
                sa.log(sa.Value(0.0, label="zero"))
                seen["raised"] = False
            except FloatingPointError as e:
                seen["raised"] = "zero" in str(e)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert entered.wait(30)
        assert sa.log(sa.Value(0.0)).data == -math.inf  # no anomaly check here
    finally:
        release.set()
        t.join(30)
    assert seen == {"raised": True}
    # this thread in detect_anomaly, a worker not
    result: dict[str, float] = {}
    with sa.detect_anomaly():
        w = threading.Thread(
            target=lambda: result.setdefault("log0", sa.log(sa.Value(0.0)).data))
        w.start()
        w.join(30)
        with pytest.raises(FloatingPointError):
            sa.log(sa.Value(0.0))
    assert result == {"log0": -math.inf}


def test_jitted_function_called_from_other_threads(backend):
    vg = sa.value_and_grad(_bind(piecewise), argnums=(0, 1), backend=backend)
    expected = []
    for x, y in PIECEWISE_POINTS:
        value, grads = vg(x, y)
        assert_same(value, piecewise(math, x, y), rel=1e-15, what="main thread")
        expected.append((value, grads))
    results: dict[int, list] = {}

    def work(k: int) -> None:
        order = PIECEWISE_POINTS if k % 2 else PIECEWISE_POINTS[::-1]
        results[k] = [vg(x, y) for _ in range(20) for x, y in order]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for k in range(3):
        order = expected if k % 2 else expected[::-1]
        assert results[k] == order * 20  # the same compiled code in every thread
        for (value, _), (x, y) in zip(results[k], PIECEWISE_POINTS if k % 2 else
                                      PIECEWISE_POINTS[::-1]):
            assert_same(value, piecewise(math, x, y), rel=1e-15, what=f"thread {k}")


def test_concurrent_reordering_never_raises_the_limit_at_a_cached_pattern():
    # Deterministic replay of an interleaving seen with real threads (4 threads calling
    # a function with a static argument at its limit, sys.setswitchinterval(1e-6),
    # llvm: SpecializationLimitError in 3 of them): while one call is checking the
    # first cached specialisation, another call (made here from inside that check, as
    # another thread runs while the kernel has released the GIL) hits the third one and
    # moves it to the front, so the first call never looks at it.
    def stairs(x, offset):  # with a static argument every call takes the full lookup
        return staircase(sa, x) + offset

    f = sa.jit(stairs, static_argnums=1, max_specializations=4, backend="python")
    for x in (0.5, 1.5, 2.5, 3.5):  # four patterns: the cache is full
        f(x, 0.0)
    (specs,) = f._cache.values()
    first = specs[0]
    fired = []

    def holds(b, _orig=first.holds):
        ok = _orig(b)
        if not fired:
            fired.append(1)
            assert f(2.25, 0.0) == staircase(math, 2.25)  # the "other thread"
        return ok

    first.holds = holds
    assert f(2.75, 0.0) == staircase(math, 2.75)
    assert fired


# --------------------------------------------------------------------------- bad arguments


def _two_args(x, v):
    return x * v[0] + v[1]


@pytest.mark.parametrize("args, error, pattern", [
    (("a", np.ones(2)), TypeError, r"argument 0 must be a float .* got str"),
    ((1j, np.ones(2)), TypeError, r"argument 0 must be a float .* got complex"),
    ((1.0, np.ones((2, 2))), ValueError, r"argument 1 must be a float or a 1-D array"),
    ((1.0, [1.0, "a"]), TypeError, r"argument 1\[1\] must be a real number; got str"),
    ((1.0, [1.0, True]), TypeError, r"argument 1\[1\] must be a real number; got bool"),
    ((1.0, np.array(["a", "b"])), TypeError, r"argument 1 must hold real numbers"),
    ((1.0, np.array([1 + 1j, 2])), TypeError, r"argument 1 must hold real numbers"),
    ((sa.Value(1.0), np.ones(2)), TypeError, r"argument 0 is a Value"),
    ((1.0, [sa.Value(1.0), 2.0]), TypeError, r"argument 1\[0\] is a Value"),
    ((1.0,), TypeError, r"missing 1 required positional argument: 'v'"),
    ((1.0, np.ones(2), 3.0), TypeError, r"takes 2 positional arguments"),
    ((None, np.ones(2)), TypeError, r"argument 0 must be a float .* got NoneType"),
])
def test_bad_arguments_name_the_argument(backend, args, error, pattern):
    for t in (sa.jit(_two_args, backend=backend), sa.grad(_two_args, backend=backend),
              sa.jacobian(_two_args, backend=backend)):
        with pytest.raises(error, match=pattern):
            t(*args)
        assert t.n_specializations == 0


def test_bad_argnums_and_options(backend):
    with pytest.raises(ValueError, match="argnums names argument 2"):
        sa.grad(_two_args, argnums=2, backend=backend)(1.0, np.ones(2))
    with pytest.raises(ValueError, match="argnums names argument 3"):
        sa.grad(_two_args, argnums=(0, 3), backend=backend)(1.0, np.ones(2))
    with pytest.raises(ValueError, match="argnums must be distinct"):
        sa.grad(_two_args, argnums=(0, 0), backend=backend)(1.0, np.ones(2))
    with pytest.raises(ValueError, match="static_argnums names argument 4"):
        sa.jit(_two_args, static_argnums=4, backend=backend)(1.0, np.ones(2))
    with pytest.raises(ValueError, match="share argument 0"):
        sa.grad(_two_args, argnums=0, static_argnums=0, backend=backend)
    with pytest.raises(ValueError, match="argnums must name at least one"):
        sa.grad(_two_args, argnums=(), backend=backend)
    with pytest.raises(TypeError, match="argnums must be an int"):
        sa.grad(_two_args, argnums=True, backend=backend)
    with pytest.raises(TypeError, match="argnums must hold ints"):
        sa.grad(_two_args, argnums=(0, 1.0), backend=backend)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_specializations must be a positive"):
            sa.jit(_two_args, max_specializations=bad, backend=backend)
    with pytest.raises(TypeError, match="fn must be callable"):
        sa.jit(3.0)
    with pytest.raises(ValueError):
        sa.jit(_two_args, backend="no-such-backend")
    with pytest.raises(TypeError, match="use sa.jacobian"):
        sa.grad(lambda v: [v[0], v[1]], backend=backend)(np.ones(2))
    with pytest.raises(TypeError, match="must return"):
        sa.jit(lambda x: "x", backend=backend)(1.0)
    assert sa.grad(_two_args, argnums=-1, backend=backend)(1.5, np.ones(2)).tolist() == \
        [1.5, 1.0]
