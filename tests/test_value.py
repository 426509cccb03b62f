"""Eager ``Value`` behaviour: micrograd's examples against independent oracles, deep graphs,
gradient accumulation, modes (no_grad, anomaly), DOT export and input validation."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

import mpmath
import pytest
from mpmath import mp

import scalar_autograd as sa
from scalar_autograd.ops import OPS_BY_NAME

# --------------------------------------------------------------------------- oracles


def mp_value_and_grad(
    fn: Callable[..., Any], point: Sequence[float]
) -> tuple[float, list[float]]:
    """``fn`` (written with mpmath) and its gradient by ``mpmath.diff``, at 50 digits."""
    with mp.workdps(50):
        x = [mpmath.mpf(p) for p in point]
        value = fn(*x)
        grad = []
        for i in range(len(x)):
            orders = tuple(1 if j == i else 0 for j in range(len(x)))
            grad.append(float(mpmath.diff(fn, tuple(x), orders)))
        return float(value), grad


def mp_relu(x: Any) -> Any:
    return x if x > 0 else mpmath.mpf(0)


def close(a: float, b: float, rtol: float = 1e-12) -> bool:
    return abs(a - b) <= rtol * max(1.0, abs(b))


# --------------------------------------------------------------------------- micrograd


def micrograd_readme_mp(a: Any, b: Any) -> Any:
    """micrograd's README expression, written out with mpmath (c += ... unrolled)."""
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + mp_relu(b + a)
    d = d + 3 * d + mp_relu(b - a)
    e = c - d
    f = e**2
    g = f / 2
    g = g + 10 / f
    return g


def test_micrograd_readme_example() -> None:
    a = sa.Value(-4.0, requires_grad=True)
    b = sa.Value(2.0, requires_grad=True)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    # the values micrograd's README publishes
    assert f"{g.data:.4f}" == "24.7041"
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"
    # and to full precision against mpmath
    value, (da, db) = mp_value_and_grad(micrograd_readme_mp, [-4.0, 2.0])
    assert close(g.data, value) and close(a.grad, da) and close(b.grad, db)


def test_micrograd_sanity_check() -> None:
    x = sa.Value(-4.0, requires_grad=True)
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    # by hand: z = 3x + 2 = -10, q = z x = 40, h = z^2 = 100, y = h + q + q x = -20;
    # dy/dx = 6z + (3x + z) + (3x + z) x + q = -60 - 22 + 88 + 40 = 46
    assert y.data == -20.0
    assert x.grad == 46.0

    def mp_fn(x: Any) -> Any:
        z = 2 * x + 2 + x
        q = mp_relu(z) + z * x
        h = mp_relu(z * z)
        return h + q + q * x

    value, (dx,) = mp_value_and_grad(mp_fn, [-4.0])
    assert close(y.data, value) and close(x.grad, dx)


def build_more_ops(a: Any, b: Any) -> Any:
    """micrograd's ``test_more_ops`` expression (works on sa.Value and torch tensors)."""
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    return g


def test_micrograd_more_ops() -> None:
    a = sa.Value(-4.0, requires_grad=True)
    b = sa.Value(2.0, requires_grad=True)
    g = build_more_ops(a, b)
    g.backward()
    value, (da, db) = mp_value_and_grad(micrograd_readme_mp, [-4.0, 2.0])
    tol = 1e-6  # micrograd's own tolerance against PyTorch
    assert abs(g.data - value) < tol
    assert abs(a.grad - da) < tol
    assert abs(b.grad - db) < tol


def test_micrograd_more_ops_against_torch() -> None:
    torch = pytest.importorskip("torch")
    a = torch.tensor([-4.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    g = build_more_ops(a, b)
    g.backward()
    av = sa.Value(-4.0, requires_grad=True)
    bv = sa.Value(2.0, requires_grad=True)
    gv = build_more_ops(av, bv)
    gv.backward()
    assert abs(gv.data - g.item()) < 1e-12
    assert abs(av.grad - a.grad.item()) < 1e-9
    assert abs(bv.grad - b.grad.item()) < 1e-9


# --------------------------------------------------------------------------- whole expressions

EXPRESSIONS: list[tuple[str, Callable[..., Any], Callable[..., Any], list[float]]] = [
    # (name, scalar_autograd version, mpmath version, point)
    ("poly", lambda x, y: x * x * y + 3 * y - x / y,
     lambda x, y: x * x * y + 3 * y - x / y, [1.3, -0.7]),
    ("trig", lambda x, y: sa.sin(x) * sa.cos(y) + sa.tan(x * y) - sa.atan2(y, x),
     lambda x, y: mpmath.sin(x) * mpmath.cos(y) + mpmath.tan(x * y) - mpmath.atan2(y, x),
     [0.4, 0.9]),
    ("exp-log", lambda x, y: sa.log(sa.exp(x) + y * y) * sa.sqrt(x + 2) - sa.log1p(x * y),
     lambda x, y: mpmath.log(mpmath.exp(x) + y * y) * mpmath.sqrt(x + 2)
     - mpmath.log(1 + x * y), [0.5, 1.5]),
    ("activations", lambda x, y: sa.tanh(x) * sa.sigmoid(y) + sa.softplus(x - y) + sa.relu(x),
     lambda x, y: mpmath.tanh(x) / (1 + mpmath.exp(-y)) + mpmath.log(1 + mpmath.exp(x - y))
     + mp_relu(x), [0.8, -0.3]),
    ("powers", lambda x, y: x**y + (x**2.5) / y + sa.reciprocal(y) + sa.cube(y) - sa.square(x),
     lambda x, y: mpmath.power(x, y) + mpmath.power(x, 2.5) / y + 1 / y + y**3 - x**2,
     [1.7, 0.6]),
    ("hyperbolic", lambda x, y: sa.sinh(x) * sa.cosh(y) + sa.expm1(x * y) + sa.asin(x / 3)
     + sa.acos(y / 2),
     lambda x, y: mpmath.sinh(x) * mpmath.cosh(y) + mpmath.exp(x * y) - 1
     + mpmath.asin(x / 3) + mpmath.acos(y / 2), [0.6, -0.9]),
    ("piecewise", lambda x, y: sa.maximum(x, y) * sa.minimum(x, -y) + abs(x - 2 * y)
     + sa.clamp(x * 3, -1.0, 1.0) + x % y,
     lambda x, y: max(x, y) * min(x, -y) + abs(x - 2 * y) + min(max(x * 3, -1), 1)
     + (x - y * mpmath.floor(x / y)), [0.7, 0.25]),
    ("where", lambda x, y: sa.where(x > y, x * y, x - y) + sa.where(x < 0, sa.exp(x), y),
     lambda x, y: (x * y if x > y else x - y) + (mpmath.exp(x) if x < 0 else y), [1.2, 0.4]),
    ("reductions", lambda x, y: sa.sum([x, y * y, sa.sin(x), 2.0]) * sa.mean([x, x, y]),
     lambda x, y: (x + y * y + mpmath.sin(x) + 2) * (x + x + y) / 3, [0.3, -1.1]),
    ("shared", lambda x, y: (lambda s: s * s + s * x + sa.exp(s) / (1 + s * s))(x * y + x),
     lambda x, y: (lambda s: s * s + s * x + mpmath.exp(s) / (1 + s * s))(x * y + x),
     [0.9, 0.2]),
]


@pytest.mark.parametrize(("name", "fn", "mp_fn", "point"), EXPRESSIONS,
                         ids=[e[0] for e in EXPRESSIONS])
def test_whole_expressions_against_mpmath(
    name: str, fn: Callable[..., Any], mp_fn: Callable[..., Any], point: list[float]
) -> None:
    xs = [sa.Value(p, requires_grad=True) for p in point]
    y = fn(*xs)
    y.backward()
    value, grad = mp_value_and_grad(mp_fn, point)
    assert close(y.data, value, 1e-13), (y.data, value)
    for x, g in zip(xs, grad, strict=True):
        assert close(x.grad, g, 1e-11), (name, x.grad, g)


@pytest.mark.parametrize(("name", "fn", "mp_fn", "point"), EXPRESSIONS,
                         ids=[e[0] for e in EXPRESSIONS])
def test_whole_expressions_check_grads(
    name: str, fn: Callable[..., Any], mp_fn: Callable[..., Any], point: list[float]
) -> None:
    for seed in range(3):
        sa.check_grads(lambda v: fn(*v), point, seed=seed, n_directions=3)


def random_dag(seed: int, n_inputs: int = 4, n_nodes: int = 40) -> Callable[[list[Any]], Any]:
    """A random expression DAG with heavy sharing (every node may be reused)."""
    rng = random.Random(seed)
    recipe = []
    for k in range(n_nodes):
        size = n_inputs + k
        recipe.append((rng.randrange(6), rng.randrange(size), rng.randrange(size)))

    def f(v: list[Any]) -> Any:
        pool = list(v)
        for kind, i, j in recipe:
            a, b = pool[i], pool[j]
            pool.append([a + b, a - b, a * b * 0.5, sa.sin(a) * b, sa.tanh(a + b),
                         sa.sqrt(a * a + 1.0) - b][kind])
        return sa.sum(pool[-5:]) + pool[-1] * pool[-2]

    return f


@pytest.mark.parametrize("seed", range(8))
def test_random_shared_dags_check_grads(seed: int) -> None:
    point = [random.Random(seed).uniform(-1, 1) for _ in range(4)]
    sa.check_grads(random_dag(seed), point, seed=seed, rtol=1e-5)


# --------------------------------------------------------------------------- deep and wide graphs


def test_million_long_chain_forward_and_backward() -> None:
    n = 10**6
    x = sa.Value(0.5, label="x", requires_grad=True)
    y = x
    for _ in range(n):
        y = y + x  # each step reuses the leaf: dy/dx = n + 1
    y.backward()
    assert y.data == 0.5 * (n + 1)
    assert x.grad == float(n + 1)


def test_long_mixed_chain() -> None:
    n = 2 * 10**5
    x = sa.Value(1.0, requires_grad=True)
    y = x
    for _ in range(n // 2):
        y = y * 1.0000001
        y = y - 1e-7
    y.backward()
    expected_grad = 1.0000001 ** (n // 2)
    assert math.isclose(x.grad, expected_grad, rel_tol=1e-9)


def test_million_term_sum() -> None:
    n = 10**6
    xs = [sa.Value(float(i % 7), requires_grad=True) for i in range(n)]
    s = sa.sum(xs)
    assert s.op is OPS_BY_NAME["sum"] and len(s.args) == n  # one node, not a chain
    s.backward()
    assert s.data == float(sum(i % 7 for i in range(n)))
    assert all(x.grad == 1.0 for x in xs)
    m = sa.mean(xs)
    for x in xs[:3]:
        x.grad = 0.0
    m.backward()
    assert math.isclose(xs[0].grad, 1.0 / n, rel_tol=1e-15)


# --------------------------------------------------------------------------- accumulation


def test_x_times_x_counts_both_arguments() -> None:
    x = sa.Value(3.0, requires_grad=True)
    y = x * x
    assert y.args == (x, x)
    y.backward()
    assert x.grad == 6.0


def test_shared_subexpressions_and_reused_leaves() -> None:
    a = sa.Value(2.0, requires_grad=True)
    b = sa.Value(-3.0, requires_grad=True)
    s = a * b  # shared: used three times
    y = s + s * s + sa.sin(s) * a
    y.backward()
    # dy/da = b + 2 s b + cos(s) b a + sin(s); dy/db = a + 2 s a + cos(s) a a
    sv = -6.0
    assert close(a.grad, -3.0 + 2 * sv * -3.0 + math.cos(sv) * -3.0 * 2.0 + math.sin(sv))
    assert close(b.grad, 2.0 + 2 * sv * 2.0 + math.cos(sv) * 4.0)


def test_diamond_graph_visits_shared_node_once() -> None:
    x = sa.Value(1.5, requires_grad=True)
    y = x
    for _ in range(60):  # 2^60 paths: must be linear, not exponential
        y = y * 0.5 + y * 0.5
    y.backward()
    assert y.data == 1.5
    assert x.grad == 1.0


def test_gradients_accumulate_across_backward_calls_like_pytorch() -> None:
    x = sa.Value(2.0, requires_grad=True)
    w = sa.Value(-1.0, requires_grad=True)
    y = x * x * w
    y.backward()
    assert (x.grad, w.grad) == (-4.0, 4.0)
    y.backward()
    assert (x.grad, w.grad) == (-8.0, 8.0)  # leaves accumulate
    z = x + w
    z.backward()
    assert (x.grad, w.grad) == (-7.0, 9.0)
    sa.zero_grad([x, w])
    assert (x.grad, w.grad) == (0.0, 0.0)
    y.backward(gradient=0.5)
    assert (x.grad, w.grad) == (-2.0, 2.0)
    x.zero_grad()
    assert x.grad == 0.0


def test_backward_needs_a_graph_that_requires_grad() -> None:
    with pytest.raises(RuntimeError, match="requires_grad"):
        (sa.Value(1.0) * 2).backward()


def test_constants_and_frozen_leaves_get_no_gradient() -> None:
    x = sa.Value(2.0, requires_grad=True)
    c = sa.Value(5.0)
    y = x * c
    y.backward()
    assert x.grad == 5.0 and c.grad == 0.0
    assert y.requires_grad and not c.requires_grad


# --------------------------------------------------------------------------- modes


def test_no_grad_records_nothing() -> None:
    x = sa.Value(2.0, requires_grad=True)
    assert sa.is_grad_enabled()
    with sa.no_grad():
        assert not sa.is_grad_enabled()
        y = x * 3 + sa.sin(x)
        z = sa.sum([x, y])
    assert sa.is_grad_enabled()
    for v in (y, z):
        assert v.op is None and v.args == () and not v.requires_grad
    assert y.data == 6.0 + math.sin(2.0)
    w = x * y  # y is a constant now
    w.backward()
    assert x.grad == y.data


def test_no_grad_restores_on_error() -> None:
    with pytest.raises(ZeroDivisionError), sa.no_grad():
        raise ZeroDivisionError
    assert sa.is_grad_enabled()


def test_detach_cuts_the_graph() -> None:
    x = sa.Value(3.0, label="x", requires_grad=True)
    y = x * x
    d = y.detach()
    assert d.data == 9.0 and d.op is None and d.args == () and not d.requires_grad
    z = x * d
    z.backward()
    assert x.grad == 9.0  # not 3 x^2 = 27


def test_detect_anomaly_names_the_op_and_input_labels() -> None:
    x = sa.Value(0.0, label="radius", requires_grad=True)
    with pytest.raises(FloatingPointError, match=r"log.*radius"), sa.detect_anomaly():
        sa.log(x)
    y = sa.Value(-1.0, label="under_root")
    with pytest.raises(FloatingPointError, match=r"sqrt.*under_root"), sa.detect_anomaly():
        sa.sqrt(y) + 1
    big = sa.Value(1e308, label="big")
    with pytest.raises(FloatingPointError, match=r"mul.*big"), sa.detect_anomaly():
        big * big
    # inputs that are already non-finite are not the first anomaly
    with sa.detect_anomaly():
        z = sa.Value(math.inf, label="inf") + 1
    assert z.data == math.inf


def test_detect_anomaly_checks_backward() -> None:
    x = sa.Value(0.0, label="x", requires_grad=True)
    y = sa.sqrt(x)  # finite forward value (0), infinite derivative
    with pytest.raises(FloatingPointError, match="sqrt"), sa.detect_anomaly():
        y.backward()


def test_no_anomaly_checks_outside_the_context() -> None:
    x = sa.Value(0.0, label="x", requires_grad=True)
    with sa.detect_anomaly():
        pass
    y = sa.log(x)
    assert y.data == -math.inf
    y.backward()
    assert x.grad == math.inf
    assert (sa.Value(1.0) / 0.0).data == math.inf


# --------------------------------------------------------------------------- DOT


RECORD = re.compile(r'^  n\d+ \[shape=record, label="((?:[^"\\\n]|\\.)*)"\];$')


def _record_fields(label: str) -> list[str]:
    """Split a record label into fields, honouring backslash escapes; check its braces."""
    assert label.startswith("{ ") and label.endswith(" }"), label
    inner = label[2:-2]
    fields, current, i = [], "", 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\":
            current += inner[i:i + 2]
            i += 2
            continue
        assert ch not in '{}<>"', f"unescaped {ch!r} in record label {label!r}"
        if ch == "|":
            fields.append(current)
            current = ""
        else:
            current += ch
        i += 1
    fields.append(current)
    return fields


def test_to_dot_shows_labels_data_and_grads() -> None:
    a = sa.Value(2.0, label="a", requires_grad=True)
    b = sa.Value(-3.0, label="b", requires_grad=True)
    c = a * b
    c.label = "c"
    c.backward()
    dot = sa.to_dot(c)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    for text in ("a", "b", "c", "data 2.0", "data -3.0", "data -6.0", "grad -3.0",
                 "grad 2.0", "grad 1.0", '"mul"'):
        assert text in dot, text
    records = [RECORD.match(line) for line in dot.splitlines() if "shape=record" in line]
    assert len(records) == 3 and all(records)


def test_to_dot_escapes_hostile_labels() -> None:
    hostile = 'say "hi" {x} | <port> \\ end\nnext line'
    x = sa.Value(1.0, label=hostile, requires_grad=True)
    y = sa.exp(x)
    y.label = '"; } digraph evil { a -> b'
    dot = sa.to_dot(y)
    lines = dot.splitlines()
    assert lines[0] == "digraph scalar_autograd {" and lines[-1] == "}"
    assert not any(line.startswith("digraph") for line in lines[1:])  # no injected graph
    record_lines = [line for line in lines if "shape=record" in line]
    assert len(record_lines) == 2
    for line in record_lines:
        m = RECORD.match(line)
        assert m, f"not a well-formed DOT record line: {line!r}"
        fields = _record_fields(m.group(1))
        assert len(fields) == 3, fields  # label | data | grad: no injected fields
    assert "\\n" in dot and "\nnext line" not in dot
    # every other line is a node or an edge statement
    for line in lines[2:-1]:
        assert re.match(r'^  (n\d+(_op)? (\[.*\]|-> n\d+(_op)?);)$', line), line


def test_to_dot_of_several_outputs_and_bad_rankdir() -> None:
    x = sa.Value(1.0, label="x")
    dot = sa.to_dot([x + 1, x * 2])
    assert dot.count("shape=record") == 5  # x, 1, 2 and the two results
    with pytest.raises(ValueError, match="rankdir"):
        sa.to_dot(x, rankdir="sideways")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", ["a", None, [1.0], 1 + 2j, object()])
def test_value_rejects_non_numbers_naming_data(bad: Any) -> None:
    with pytest.raises(TypeError, match="data"):
        sa.Value(bad)


def test_value_rejects_a_non_string_label() -> None:
    with pytest.raises(TypeError, match="label"):
        sa.Value(1.0, label=3)  # type: ignore[arg-type]


def test_value_accepts_ints_and_numpy_scalars() -> None:
    np = pytest.importorskip("numpy")
    assert sa.Value(3).data == 3.0 and type(sa.Value(3).data) is float
    assert sa.Value(np.float64(2.5)).data == 2.5
    assert sa.Value(np.int32(2)).data == 2.0


def test_clamp_with_lo_above_hi_names_the_bounds() -> None:
    with pytest.raises(ValueError, match=r"lo.*hi"):
        sa.clamp(0.5, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"lo.*hi"):
        sa.Value(0.5).clamp(1.0, 0.0)
    with pytest.raises(TypeError, match="lo"):
        sa.clamp(0.5, "zero", 1.0)  # type: ignore[arg-type]


def test_sum_of_nothing_is_zero_and_mean_of_nothing_raises() -> None:
    s = sa.sum([])
    assert isinstance(s, sa.Value) and s.data == 0.0
    with pytest.raises(ValueError, match="values"):
        sa.mean([])
    with pytest.raises(TypeError, match="iterable"):
        sa.sum(sa.Value(1.0))  # type: ignore[arg-type]
    assert sa.sum(x for x in [1.0, 2.0]).data == 3.0  # any iterable


@pytest.mark.parametrize("operator", [
    lambda v: v + "a", lambda v: "a" + v, lambda v: v * None, lambda v: None * v,
    lambda v: v - [1], lambda v: v / "2", lambda v: "2" / v, lambda v: v ** "x",
    lambda v: v % {}, lambda v: v < "a", lambda v: sa.sin("x"), lambda v: sa.maximum(v, "1"),
])
def test_operators_with_non_numbers_raise_type_error(operator: Callable[[Any], Any]) -> None:
    with pytest.raises(TypeError):
        operator(sa.Value(1.0))


def test_wrong_number_of_arguments() -> None:
    from scalar_autograd.value import apply

    with pytest.raises(TypeError, match="atan2 takes 2"):
        apply(OPS_BY_NAME["atan2"], 1.0)


# --------------------------------------------------------------------------- comparisons, where


def test_comparisons_return_zero_one_values_with_zero_gradient() -> None:
    a = sa.Value(1.0, requires_grad=True)
    b = sa.Value(2.0, requires_grad=True)
    results = {
        "==": (a == b, 0.0), "!=": (a != b, 1.0), ">": (a > b, 0.0), "<": (a < b, 1.0),
        ">=": (a >= b, 0.0), "<=": (a <= b, 1.0), "ge-tie": (a >= 1.0, 1.0),
        "eq-tie": (sa.eq(a, 1.0), 1.0),
    }
    for name, (value, expected) in results.items():
        assert isinstance(value, sa.Value), name
        assert value.data == expected, name
    total = sa.sum([v for v, _ in results.values()]) * a + b
    total.backward()
    assert a.grad == sum(e for _, e in results.values())  # only the * a path
    assert b.grad == 1.0


def test_where_sends_the_gradient_to_the_selected_branch() -> None:
    x = sa.Value(-2.0, requires_grad=True)
    y = sa.Value(5.0, requires_grad=True)
    out = sa.where(x > 0, x * y, y * y)
    out.backward()
    assert out.data == 25.0
    assert x.grad == 0.0 and y.grad == 10.0
    x.grad = y.grad = 0.0
    out = sa.if_then_else(x < 0, x * y, y * y)
    out.backward()
    assert out.data == -10.0
    assert x.grad == 5.0 and y.grad == -2.0


def test_kinks_through_backward() -> None:
    x = sa.Value(0.0, requires_grad=True)
    (abs(x) + x.relu() + x.sign() + x.floor() + x.round()).backward()
    assert x.grad == 0.0
    a = sa.Value(1.0, requires_grad=True)
    b = sa.Value(1.0, requires_grad=True)
    (sa.maximum(a, b) + sa.minimum(a, b)).backward()
    assert (a.grad, b.grad) == (1.0, 1.0)  # 0.5 + 0.5 each
    a.grad = b.grad = 0.0
    (a % sa.Value(-0.3) + 0.0).backward()
    assert a.grad == 1.0
    p = sa.Value(7.0, requires_grad=True)
    q = sa.Value(-2.0, requires_grad=True)
    (p % q).backward()
    assert (p.grad, q.grad) == (1.0, -math.floor(7.0 / -2.0))  # d/db = -floor(a/b) = 4
    lo = sa.Value(0.0, requires_grad=True)
    hi = sa.Value(1.0, requires_grad=True)
    for v, grads in [(0.0, (1.0, 0.0, 0.0)), (1.0, (1.0, 0.0, 0.0)), (-1.0, (0.0, 1.0, 0.0)),
                     (2.0, (0.0, 0.0, 1.0))]:
        t = sa.Value(v, requires_grad=True)
        lo.grad = hi.grad = 0.0
        t.clamp(lo, hi).backward()
        assert (t.grad, lo.grad, hi.grad) == grads, v
