"""Regression tests of five numerics fixes, each against an independent oracle.

1. Eager ``backward()`` does not walk into arguments whose partial is structurally zero
   (comparisons, step functions, ``stop_gradient``, ``where``'s condition), so they
   never send ``0 * inf = nan`` into the leaves.
2. ``where``, ``relu``, ``min``, ``max`` and ``clamp`` *select* the incoming gradient
   instead of multiplying it by a 0/1 indicator (eager, reverse and forward mode alike).
3. ``x ** c`` has derivative 0 (not nan) at ``x = 0`` for ``c = 0``.
4. Compiled ``clamp`` differentiates ``min(max(x, lo), hi)`` also when ``lo > hi``.
5. The llvm backend gives every SSA temporary a distinct name, so ``copysign`` and
   ``%`` survive chunk spills.

Oracles: hand-derived exact values, plain-Python central differences, the analytic
derivative of a polynomial and, where installed, PyTorch (``torch.func.jacrev`` for
reverse mode and eager ``backward()``, ``torch.func.jacfwd`` for forward mode). Every
compiled check runs on every backend (the ``backend`` fixture of ``conftest.py``: the
interpreter, python, llvm native code and the llvm tape VM), in reverse and forward
mode, at points other than the traced one.
"""

from __future__ import annotations

import math
import random
import re
import struct
from collections.abc import Callable, Sequence

import numpy as np
import pytest

import scalar_autograd as sa
from jit_support import central_difference, same_float
from scalar_autograd.backends import get_backend
from scalar_autograd.backends import llvm as llvm_backend
from scalar_autograd.backends import vm as vm_backend
from scalar_autograd.backends.registry import VM_THRESHOLD
from scalar_autograd.ir import autodiff
from scalar_autograd.ir.passes import lower
from scalar_autograd.ir.trace import trace
from scalar_autograd.ops import FLOATS, OPS, OPS_BY_NAME, VARIADIC, select_contribution
from scalar_autograd.value import apply

Build = Callable[[list[sa.Value]], sa.Value]
MODES = ("reverse", "forward")


def eager(build: Build, point: Sequence[float]) -> tuple[float, list[float]]:
    """Value and gradient from eager ``backward()`` on fresh leaves at ``point``."""
    leaves = [sa.Value(float(v), requires_grad=True) for v in point]
    out = build(leaves)
    out.backward()
    return out.data, [leaf.grad for leaf in leaves]


def compiled(build: Build, traced: Sequence[float], point: Sequence[float], backend: str,
             mode: str) -> tuple[float, list[float]]:
    """Value and gradient at ``point`` of ``build`` traced at ``traced``, by reverse or
    forward mode on the IR, run by ``backend``."""
    leaves = [sa.Value(float(v)) for v in traced]
    program, _ = trace([build(leaves)], leaves)
    kernel = get_backend(backend).compile(getattr(autodiff, mode)(program, lower=True))
    val, der = np.zeros(1), np.zeros(len(point))
    kernel.run(np.array(point, dtype=float), np.zeros(0), val, der,
               np.zeros(max(kernel.n_scratch, 1)))
    return float(val[0]), der.tolist()


def bits(x: float) -> bytes:
    """The bit pattern of ``x``; every nan maps to one pattern (payloads may differ)."""
    return b"nan" if math.isnan(x) else struct.pack("<d", x)


def same_bits(a: float, b: float) -> bool:
    """Bit for bit, but for the sign of a zero gradient: eager ``backward()`` adds every
    contribution to a gradient that starts at +0.0 (so -0.0 reads +0.0), compiled code
    does not (a difference of every op, not of these fixes)."""
    return bits(a) == bits(b) or a == b == 0.0


def close(a: float, b: float, rel: float = 1e-14) -> bool:
    return same_float(a, b, rel=rel, abs_tol=1e-300)


# --------------------------------------------------------------------------- 1. zero partials


def where_example(v: list[sa.Value]) -> sa.Value:
    x, y = v
    return sa.where(sa.sqrt(x * x + y * y) > 1, x + y, x - 2 * y)


# (point, exact gradient): the branch taken is linear, the condition has no derivative
WHERE_POINTS = [
    ((0.0, 0.0), (1.0, -2.0)),
    ((-0.0, 0.0), (1.0, -2.0)),
    ((0.3, -0.4), (1.0, -2.0)),
    ((2.0, 0.5), (1.0, 1.0)),
    ((-3.0, 4.0), (1.0, 1.0)),
]


def test_eager_backward_does_not_descend_through_a_comparison() -> None:
    for point, expected in WHERE_POINTS:
        _, grad = eager(where_example, point)
        assert grad == list(expected), (point, grad)  # exactly, no nan from sqrt'(0)


@pytest.mark.parametrize("mode", MODES)
def test_compiled_where_example_matches_the_exact_gradient(backend: str, mode: str) -> None:
    for point, expected in WHERE_POINTS:
        value, grad = compiled(where_example, (0.7, 0.9), point, backend, mode)
        assert grad == list(expected), (backend, mode, point, grad)
        assert value == eager(where_example, point)[0]
    # and through the public API (reverse mode, cached kernels)
    x, y = sa.Value(0.7), sa.Value(0.9)
    f = sa.compile(where_example([x, y]), [x, y], backend=backend)
    for point, expected in WHERE_POINTS:
        assert f.value_and_grad(list(point))[1].tolist() == list(expected), point


def _blocked_cases() -> list[tuple[str, Build, Callable[[float, float], tuple[float, float]]]]:
    """(name, f(x, y), exact gradient): y enters only through an op whose partial with
    respect to that argument is structurally zero, behind sqrt (sqrt'(0) = inf)."""
    cases: list[tuple[str, Build, Callable[[float, float], tuple[float, float]]]] = []
    for name in ("sign", "floor", "ceil", "round", "trunc", "stop_gradient"):
        op = OPS_BY_NAME[name]
        cases.append((name, lambda v, op=op: 3 * v[0] + apply(op, sa.sqrt(v[1])),
                      lambda x, y: (3.0, 0.0)))
    for name in ("eq", "ne", "gt", "lt", "ge", "le"):
        op = OPS_BY_NAME[name]
        cases.append((name, lambda v, op=op: 3 * v[0] + apply(op, sa.sqrt(v[1]), v[0]),
                      lambda x, y: (3.0, 0.0)))
    cases.append(("copysign", lambda v: 3 * v[0] + sa.copysign(v[0], sa.sqrt(v[1])),
                  lambda x, y: (3.0 + math.copysign(1.0, x), 0.0)))  # sqrt(y) >= +0
    cases.append(("where", lambda v: sa.where(sa.sqrt(v[1]), v[0], 2 * v[0]),
                  lambda x, y: (1.0 if y != 0.0 else 2.0, 0.0)))
    return cases


BLOCKED = _blocked_cases()
BLOCKED_POINTS = [(x, y) for x in (-1.5, 0.5, 2.0) for y in (0.0, 0.25, 4.0)]


@pytest.mark.parametrize("name,build,exact", BLOCKED, ids=[c[0] for c in BLOCKED])
def test_every_structurally_zero_partial_stops_the_eager_walk(name: str, build: Build,
                                                              exact: Callable) -> None:
    for point in BLOCKED_POINTS:
        _, grad = eager(build, point)
        assert grad == list(exact(*point)), (name, point, grad)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,build,exact", BLOCKED, ids=[c[0] for c in BLOCKED])
def test_every_structurally_zero_partial_compiled(name: str, build: Build, exact: Callable,
                                                  backend: str, mode: str) -> None:
    for point in BLOCKED_POINTS:
        _, grad = compiled(build, (0.8, 1.7), point, backend, mode)
        assert grad == list(exact(*point)), (name, backend, mode, point, grad)


def test_a_node_also_reached_by_a_non_zero_path_is_still_visited() -> None:
    def f(v: list[sa.Value]) -> sa.Value:
        x, y = v
        r = sa.sqrt(x * x + y * y)
        return sa.where(r > 1, r, x) + sa.floor(r)  # r: through gt, floor and a branch

    for x, y in [(3.0, 4.2), (-6.0, 7.5), (0.1, 0.2), (-0.3, 0.5), (1.2, -2.5)]:
        _, grad = eager(f, (x, y))
        r = math.hypot(x, y)
        expected = (x / r, y / r) if r > 1 else (1.0, 0.0)
        assert close(grad[0], expected[0]) and close(grad[1], expected[1]), (x, y, grad)
        numeric = [central_difference(lambda p: _plain_f(*p), [x, y], i) for i in (0, 1)]
        assert np.allclose(grad, numeric, rtol=1e-6, atol=1e-7), (grad, numeric)


def _plain_f(x: float, y: float) -> float:
    r = math.hypot(x, y)
    return (r if r > 1 else x) + math.floor(r)


# --------------------------------------------------------------------------- 2. select


def test_select_contribution_on_floats() -> None:
    assert bits(select_contribution(FLOATS, math.inf, 0.0)) == bits(0.0)
    assert bits(select_contribution(FLOATS, math.nan, 0.0)) == bits(0.0)
    assert select_contribution(FLOATS, math.inf, 1.0) == math.inf
    assert select_contribution(FLOATS, -math.inf, 0.5) == -math.inf
    assert select_contribution(FLOATS, 3.0, 0.5) == 1.5
    assert math.isnan(select_contribution(FLOATS, math.nan, 1.0))


def test_selecting_ops_have_indicator_partials() -> None:
    """A property of the rows marked ``selects``: every partial is 0, 1/2 or 1."""
    rng = random.Random(11)
    selecting = [op for op in OPS if op.selects]
    assert {op.name for op in selecting} >= {"where", "relu", "min", "max", "clamp"}
    for op in selecting:
        for _ in range(200):
            args = [rng.choice([0.0, -0.0, 1.0, -1.0, rng.uniform(-3, 3), math.nan, math.inf])
                    for _ in range(op.arity)]
            for p in op.partials(FLOATS, *args, out=op.eval(*args)):
                assert p in (0.0, 0.5, 1.0), (op.name, args, p)


SELECTS: dict[str, Build] = {
    "relu": lambda v: sa.sqrt(sa.relu(v[0])),
    "max": lambda v: sa.sqrt(sa.maximum(v[0], 0.0)),
    "max_swapped": lambda v: sa.sqrt(sa.maximum(0.0, v[0])),
    "min": lambda v: sa.sqrt(-sa.minimum(-v[0], 0.0)),
    "clamp": lambda v: sa.sqrt(sa.clamp(v[0], 0.0, 1.0)),
    "where": lambda v: sa.sqrt(sa.where(v[0] > 0, v[0], 0.0)),
}
SELECT_POINTS = [-1.0, -3.5, -1e-300, 0.25, 0.64, 0.9]


def _sqrt_of_positive_part(x: float) -> float:
    """d/dx sqrt(max(x, 0)) by hand: 0.5/sqrt(x) for x > 0, and 0 for x < 0 (constant)."""
    return 0.5 / math.sqrt(x) if x > 0 else 0.0


@pytest.mark.parametrize("name", SELECTS)
def test_eager_select_blocks_an_infinite_gradient(name: str) -> None:
    for x in SELECT_POINTS:
        value, grad = eager(SELECTS[name], [x])
        assert close(grad[0], _sqrt_of_positive_part(x)), (name, x, grad)
        assert close(value, math.sqrt(max(x, 0.0)))
    assert eager(SELECTS[name], [-1.0])[1] == [0.0]  # sqrt'(0) = inf, selected away


@pytest.mark.parametrize("name", SELECTS)
def test_compiled_reverse_select_agrees_bit_for_bit_with_eager(name: str,
                                                               backend: str) -> None:
    for x in SELECT_POINTS:
        _, grad = compiled(SELECTS[name], [0.5], [x], backend, "reverse")
        _, eager_grad = eager(SELECTS[name], [x])
        assert same_bits(grad[0], eager_grad[0]), (name, backend, x, grad, eager_grad)
        assert close(grad[0], _sqrt_of_positive_part(x)), (name, backend, x, grad)


@pytest.mark.parametrize("mode", MODES)
def test_forward_mode_selects_the_tangent_of_the_branch_taken(backend: str,
                                                              mode: str) -> None:
    """where(x > 0, sqrt x, 0): for x < 0 the function is the constant 0 and the tangent
    of sqrt (nan there) is selected away; x > 0 gives 0.5/sqrt x. In reverse mode it is
    sqrt's own backward that turns the selected 0 into 0 * nan (PyTorch and JAX agree:
    see test_select_ops_against_torch)."""
    def f(v: list[sa.Value]) -> sa.Value:
        return sa.where(v[0] > 0, sa.sqrt(v[0]), 0.0)

    for x in [-1.0, -4.0, 0.25, 2.0]:
        _, grad = compiled(f, [0.5], [x], backend, mode)
        if mode == "forward" or x > 0:
            assert close(grad[0], _sqrt_of_positive_part(x)), (backend, mode, x, grad)


@pytest.mark.parametrize("mode", MODES)
def test_min_max_ties_split_the_gradient_compiled_and_eager(backend: str, mode: str) -> None:
    def f(v: list[sa.Value]) -> sa.Value:
        return sa.sqrt(sa.maximum(v[0], v[1])) + 3 * sa.minimum(v[0], v[1])

    # by hand: at a tie each argument takes half of each op's gradient
    cases = {(4.0, 4.0): (1.625, 1.625), (0.0, 0.0): (math.inf, math.inf),
             (1.0, 4.0): (3.0, 0.25), (4.0, 1.0): (0.25, 3.0)}
    for point, expected in cases.items():
        _, grad = compiled(f, (0.3, 0.7), point, backend, mode)
        _, eager_grad = eager(f, point)
        assert grad == list(expected) and eager_grad == list(expected), (point, grad,
                                                                          eager_grad)


def _torch_cases(torch: object) -> dict[str, tuple[Build, Callable, list[tuple[float, ...]]]]:
    t = torch

    def z(v: object) -> object:
        return t.zeros_like(v)  # type: ignore[attr-defined]

    one_d = [(x,) for x in (-1.0, -3.5, 0.0, 0.25, 0.64, 2.0)]
    # min(-0.0, 0.0) is a tie whose zero's sign differs (torch -0.0, ours +0.0), and it
    # decides the sign of sqrt'(-min(-x, 0)) = +-inf at x = 0: leave that point out
    return {
        name: (SELECTS[name], fn, one_d if name != "min" else one_d[:2] + one_d[3:])
        for name, fn in {
            "relu": lambda v: t.sqrt(t.relu(v[0])),
            "max": lambda v: t.sqrt(t.maximum(v[0], z(v[0]))),
            "max_swapped": lambda v: t.sqrt(t.maximum(z(v[0]), v[0])),
            "min": lambda v: t.sqrt(-t.minimum(-v[0], z(v[0]))),
            "clamp": lambda v: t.sqrt(t.clamp(v[0], 0.0, 1.0)),
            "where": lambda v: t.sqrt(t.where(v[0] > 0, v[0], z(v[0]))),
        }.items()
    } | {
        "where_sqrt_branch": (
            lambda v: sa.where(v[0] > 0, sa.sqrt(v[0]), 0.0),
            lambda v: t.where(v[0] > 0, t.sqrt(v[0]), z(v[0])), one_d),
        "ties": (
            lambda v: sa.sqrt(sa.maximum(v[0], v[1])) + 3 * sa.minimum(v[0], v[1]),
            lambda v: t.sqrt(t.maximum(v[0], v[1])) + 3 * t.minimum(v[0], v[1]),
            [(4.0, 4.0), (0.0, 0.0), (1.0, 4.0), (-1.0, -1.0), (2.5, -0.5)]),
        "relu_of_where": (
            lambda v: sa.relu(sa.where(v[0] < v[1], sa.log(v[0]), v[1])) * v[1],
            lambda v: t.relu(t.where(v[0] < v[1], t.log(v[0]), v[1])) * v[1],
            [(0.0, 1.0), (0.5, 1.0), (2.0, 1.0), (1.5, 2.0), (3.0, 0.5)]),
    }


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_select_ops_against_torch(backend: str) -> None:
    """Eager and compiled reverse mode against torch.func.jacrev, compiled forward mode
    against torch.func.jacfwd (PyTorch selects in both, like us)."""
    torch = pytest.importorskip("torch")
    from torch.func import jacfwd, jacrev

    for name, (build, torch_fn, points) in _torch_cases(torch).items():
        for point in points:
            x = torch.tensor(point, dtype=torch.float64)
            rev = jacrev(torch_fn)(x).tolist()
            fwd = jacfwd(torch_fn)(x).tolist()
            traced = [0.3 + 0.1 * i for i in range(len(point))]
            _, eager_grad = eager(build, point)
            _, c_rev = compiled(build, traced, point, backend, "reverse")
            _, c_fwd = compiled(build, traced, point, backend, "forward")
            for got, want, what in ((eager_grad, rev, "eager"), (c_rev, rev, "reverse"),
                                    (c_fwd, fwd, "forward")):
                assert all(close(g, w, 1e-13) for g, w in zip(got, want)), (
                    name, backend, what, point, got, want)


# --------------------------------------------------------------------------- 3. pow


COEFFS = [1.5, -2.0, 0.5, 3.0, -1.0, 0.25]


def polynomial(v: list[sa.Value]) -> sa.Value:
    return sa.sum([c * v[0] ** k for k, c in enumerate(COEFFS)])  # x ** 0 included


def polynomial_derivative(x: float) -> float:
    """The analytic derivative sum(k c_k x^(k-1)), by Horner's rule on plain floats."""
    total = 0.0
    for k in range(len(COEFFS) - 1, 0, -1):
        total = total * x + k * COEFFS[k]
    return total


POLY_POINTS = [0.0, -0.0, 1.3, -0.7, 2.0, 1e-3]


def test_polynomial_derivative_is_finite_at_zero_eager() -> None:
    for x in POLY_POINTS:
        _, grad = eager(polynomial, [x])
        assert close(grad[0], polynomial_derivative(x), 1e-13), (x, grad)
    assert eager(polynomial, [0.0])[1] == [-2.0]  # exactly c_1
    assert OPS_BY_NAME["pow"].partials(FLOATS, 0.0, 0.0, out=1.0) == (0.0, 0.0)


@pytest.mark.parametrize("mode", MODES)
def test_polynomial_derivative_compiled(backend: str, mode: str) -> None:
    for x in POLY_POINTS:
        value, grad = compiled(polynomial, [0.7], [x], backend, mode)
        assert close(grad[0], polynomial_derivative(x), 1e-13), (backend, mode, x, grad)
        expected = sum(c * x**k for k, c in enumerate(COEFFS))
        assert close(value, expected, 1e-13)
    assert compiled(polynomial, [0.7], [0.0], backend, mode)[1] == [-2.0]


@pytest.mark.parametrize("mode", MODES)
def test_value_exponent_power_at_zero_zero(backend: str, mode: str) -> None:
    """x ** y with y a Value: d/dx = y x^(y-1), 0 for y = 0; d/dy = x^y log x, 0 at x = 0
    (PyTorch's conventions, checked against torch in the next test)."""
    def f(v: list[sa.Value]) -> sa.Value:
        return v[0] ** v[1]

    cases = {(0.0, 0.0): (0.0, 0.0), (0.0, 2.0): (0.0, 0.0), (2.0, 0.0): (0.0, math.log(2.0)),
             (1.5, 2.0): (3.0, 2.25 * math.log(1.5)), (-2.0, 0.0): (0.0, math.nan)}
    for point, expected in cases.items():
        _, eager_grad = eager(f, point)
        _, grad = compiled(f, (0.5, 1.5), point, backend, mode)
        for got in (eager_grad, grad):
            assert all(close(g, e) for g, e in zip(got, expected)), (point, got, expected)


def test_powers_at_zero_against_torch() -> None:
    torch = pytest.importorskip("torch")
    for point in [(0.0, 0.0), (0.0, 2.0), (2.0, 0.0), (0.0, 1.0), (1.5, 2.0)]:
        tx, ty = (torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in point)
        (tx**ty + tx**0.0).backward()
        _, grad = eager(lambda v: v[0] ** v[1] + v[0] ** 0.0, point)
        assert all(close(g, w) for g, w in zip(grad, (tx.grad.item(), ty.grad.item()))), (
            point, grad)


# --------------------------------------------------------------------------- 4. clamp


def clamp3(v: list[sa.Value]) -> sa.Value:
    return sa.clamp(v[0], v[1], v[2])


def _plain_clamp(p: Sequence[float]) -> float:
    x, lo, hi = p
    return min(max(x, lo), hi)


# (x, lo, hi) -> exact gradient of min(max(x, lo), hi), bounds inclusive for x
CLAMP_CASES = {
    (0.5, 1.0, 0.0): (0.0, 0.0, 1.0),   # lo > hi: the result is hi
    (2.0, 1.0, 0.0): (0.0, 0.0, 1.0),
    (-1.0, 1.0, 0.0): (0.0, 0.0, 1.0),
    (0.3, 2.0, -1.0): (0.0, 0.0, 1.0),
    (0.5, 0.0, 1.0): (1.0, 0.0, 0.0),
    (-1.0, 0.0, 1.0): (0.0, 1.0, 0.0),
    (2.0, 0.0, 1.0): (0.0, 0.0, 1.0),
    (-0.5, -2.0, 3.0): (1.0, 0.0, 0.0),
    (0.0, 0.0, 1.0): (1.0, 0.0, 0.0),   # kinks: inclusive bounds
    (1.0, 0.0, 1.0): (1.0, 0.0, 0.0),
    (0.5, 0.5, 0.5): (1.0, 0.0, 0.0),   # lo == hi
    (0.2, 0.5, 0.5): (0.0, 1.0, 0.0),
    (0.7, 0.5, 0.5): (0.0, 0.0, 1.0),
}
KINKS = {(0.0, 0.0, 1.0), (1.0, 0.0, 1.0), (0.5, 0.5, 0.5), (0.2, 0.5, 0.5),
         (0.7, 0.5, 0.5)}


def test_clamp_partials_follow_the_expansion_on_floats() -> None:
    op = OPS_BY_NAME["clamp"]
    for point, expected in CLAMP_CASES.items():
        assert op.partials(FLOATS, *point, out=op.eval(*point)) == expected, point
        assert op.eval(*point) == _plain_clamp(point)
        if point not in KINKS:
            numeric = [central_difference(_plain_clamp, list(point), i) for i in range(3)]
            assert np.allclose(numeric, expected, atol=1e-9), (point, numeric)


@pytest.mark.parametrize("mode", MODES)
def test_compiled_clamp_with_lo_above_hi(backend: str, mode: str) -> None:
    for point, expected in CLAMP_CASES.items():
        value, grad = compiled(clamp3, (0.5, 0.0, 1.0), point, backend, mode)  # lo <= hi
        assert value == _plain_clamp(point), (point, value)
        assert grad == list(expected), (backend, mode, point, grad)
        if point not in KINKS:  # independent of the table: central differences
            numeric = [central_difference(_plain_clamp, list(point), i) for i in range(3)]
            assert np.allclose(grad, numeric, atol=1e-9), (point, grad, numeric)
        if point[1] <= point[2]:  # eager clamp refuses lo > hi when it builds the graph
            assert eager(clamp3, point) == (value, grad), point


def test_clamp_against_torch() -> None:
    torch = pytest.importorskip("torch")
    for point in CLAMP_CASES:
        if point[1] == point[2]:
            continue  # torch gives no gradient at all below lo == hi; we give d/dlo = 1
        t = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in point]
        torch.clamp(t[0], t[1], t[2]).backward()
        leaves = [sa.Value(0.5), sa.Value(0.0), sa.Value(1.0)]
        f = sa.compile(clamp3(leaves), leaves, backend="python")
        assert f.value_and_grad(list(point))[1].tolist() == [v.grad.item() for v in t], point


def test_clamp_doc_states_the_expansion() -> None:
    doc = OPS_BY_NAME["clamp"].doc
    assert "min(max(x, lo), hi)" in doc and "lo > hi" in doc and "inclusive" in doc


# --------------------------------------------------------------------------- 5. llvm names


_DEFINITION = re.compile(r"^\s*(%[-\w.$]+)\s*=", re.MULTILINE)


def _defined_names_per_function(source: str) -> list[list[str]]:
    functions = re.split(r"^define ", source, flags=re.MULTILINE)[1:]
    return [_DEFINITION.findall(body.split("\n}", 1)[0]) for body in functions]


def _assert_each_name_defined_once(source: str) -> None:
    for names in _defined_names_per_function(source):
        repeated = sorted({n for n in names if names.count(n) > 1})
        assert not repeated, f"defined more than once: {repeated[:10]}"


def _random_steps(seed: int) -> list[tuple[str, list[int], float]]:
    """Every op of the table once, plus extra copysign, %, where and comparisons."""
    rng = random.Random(seed)
    names = [op.name for op in OPS] + ["copysign", "mod", "where", "gt", "le", "ne"] * 2
    rng.shuffle(names)
    steps = []
    for name in names:
        op = OPS_BY_NAME[name]
        n = rng.randint(1, 4) if op.arity == VARIADIC else op.arity
        steps.append((name, [rng.randrange(8) for _ in range(n)],
                      rng.choice([0.0, 1.0, 2.0, 3.0, -1.0, 0.5])))
    return steps


def _random_program(steps: list[tuple[str, list[int], float]]) -> Build:
    """A DAG of the steps; operands are squashed (2 tanh) and kept in each op's domain,
    so values and gradients are finite, and every node reaches the output."""
    def build(leaves: list[sa.Value]) -> sa.Value:
        nodes: list[sa.Value] = list(leaves)

        def pick(k: int) -> sa.Value:
            return 2.0 * sa.tanh(nodes[-1 - k % len(nodes)])

        def positive(a: sa.Value) -> sa.Value:
            return sa.abs(a) + 0.1

        def away_from_zero(a: sa.Value) -> sa.Value:
            return a + sa.copysign(0.5, a)

        for name, picks, constant in steps:
            op = OPS_BY_NAME[name]
            args = [pick(k) for k in picks]
            if name == "pow":
                base = args[0] if constant in (0.0, 1.0, 2.0, 3.0) else positive(args[0])
                node = base ** constant
            elif name in ("sqrt", "log", "log1p"):
                node = apply(op, positive(args[0]))
            elif name in ("asin", "acos"):
                node = apply(op, 0.45 * args[0])
            elif name == "pow_value":
                node = positive(args[0]) ** args[1]
            elif name in ("div", "mod", "fmod"):
                node = apply(op, args[0], away_from_zero(args[1]))  # a Value divisor
            elif name == "reciprocal":
                node = sa.reciprocal(away_from_zero(args[0]))
            elif name == "tan":
                node = sa.tan(0.7 * args[0])
            elif name == "clamp":
                node = sa.clamp(args[0], args[1], args[1] + sa.abs(args[2]))
            else:
                node = apply(op, *args)
            nodes.append(node)
        return sa.sum(nodes[len(leaves):])

    return build


@pytest.mark.parametrize("seed", range(4))
def test_random_programs_with_tiny_chunks_match_eager(seed: int, backend: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 7 instructions: chunk boundaries (and spills) fall everywhere, after
    every kind of instruction; compiled values and gradients equal eager mode's at
    points other than the traced one."""
    monkeypatch.setattr(llvm_backend, "CHUNK", 7)
    rng = random.Random(1000 + seed)
    build = _random_program(_random_steps(seed))
    traced = [rng.uniform(-2, 2) for _ in range(3)]
    finite = 0
    for _ in range(3):
        point = [rng.uniform(-2, 2) for _ in range(3)]
        value, grad = eager(build, point)
        finite += all(math.isfinite(g) for g in [value, *grad])
        for mode in MODES:
            c_value, c_grad = compiled(build, traced, point, backend, mode)
            assert close(c_value, value, 1e-12), (seed, mode, c_value, value)
            assert all(same_float(c, e, rel=1e-9, abs_tol=1e-12)
                       for c, e in zip(c_grad, grad)), (seed, mode, point, c_grad, grad)
    assert finite == 3  # the comparison is not between two nans


def test_generated_llvm_defines_every_name_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llvm_backend, "CHUNK", 7)
    build = _random_program(_random_steps(0))
    leaves = [sa.Value(0.1), sa.Value(0.2), sa.Value(0.3)]
    program, _ = trace([build(leaves)], leaves)
    for p in (lower(program), autodiff.reverse(program, lower=True),
              autodiff.forward(program, lower=True)):
        source, _ = llvm_backend.generate(p)
        assert len(_defined_names_per_function(source)) > 10  # many chunks
        _assert_each_name_defined_once(source)
    _assert_each_name_defined_once(vm_backend.machine().source)


def large_program(v: list[sa.Value]) -> sa.Value:
    """~2,500 lowered instructions; every copysign and % result is summed at the end, so
    those computed in the first chunk are spilled to scratch."""
    x, y = v
    terms = []
    acc = x
    for i in range(170):
        a = sa.copysign(acc, y - 0.013 * i)
        b = (x + 0.01 * i) % (y + 1.5)
        terms += [a, b]
        acc = sa.sin(a) + b * 0.5
    return sa.sum(terms)


def test_large_program_with_copysign_and_mod(backend: str) -> None:
    leaves = [sa.Value(0.4), sa.Value(1.1)]
    program, _ = trace([large_program(leaves)], leaves)
    n = lower(program).n_instructions
    # native code in two chunks on the llvm backend
    assert llvm_backend.CHUNK < n and program.n_instructions <= VM_THRESHOLD, n
    f = sa.compile(large_program(leaves), leaves, backend=backend)
    for point in [(0.3, 0.9), (-0.8, 1.3), (1.7, 0.2), (0.05, 2.4)]:
        value, grad = eager(large_program, point)
        assert all(math.isfinite(g) for g in grad)
        assert close(f(list(point)), value, 1e-12)
        c_value, c_grad = f.value_and_grad(list(point))
        assert close(c_value, value, 1e-12)
        assert all(same_float(c, e, rel=1e-9, abs_tol=1e-12) for c, e in zip(c_grad, grad)), (
            point, c_grad.tolist(), grad)


@pytest.mark.parametrize("exponent", [2.0, -1.0])
def test_pow_with_exponents_two_and_minus_one_is_the_same_on_every_backend(
        backend: str, exponent: float) -> None:
    """``x**2`` is ``x*x`` and ``x**-1`` is ``1/x`` (correctly rounded, as JAX and PyTorch
    compute them, and as LLVM rewrites a constant-exponent ``pow`` call): eager, every
    backend, constant and run-time exponents agree bit for bit, on inputs where libm's
    ``pow`` is off by an ulp."""
    rng = np.random.default_rng(7)
    xs = np.concatenate([rng.uniform(-10, 10, 4000), 10 ** rng.uniform(-300, 300, 4000),
                         [0.0, -0.0, np.inf, -np.inf, np.nan]])
    with np.errstate(all="ignore"):
        oracle = xs * xs if exponent == 2.0 else 1.0 / xs
    x, e = sa.Value(1.0), sa.Value(exponent)
    constant = sa.compile(x ** exponent, [x], backend=backend)
    runtime = sa.compile(sa.pow_value(x, e), [x], [e], backend=backend)
    eager = np.array([(sa.Value(v) ** exponent).data for v in xs.tolist()])
    for got in (eager, constant.batch_values(xs[:, None])[:, 0],
                runtime.batch_values(xs[:, None], np.full((xs.size, 1), exponent))[:, 0]):
        same = (got == oracle) | (np.isnan(got) & np.isnan(oracle))
        assert same.all(), xs[~same][:5]
