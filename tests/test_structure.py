"""Repeated structure compiled once (issue #13): grouping, row kernels, and their oracles.

``ir/structure.py`` splits a large traced program into groups of isomorphic terms (one row
program per shape, run over index tables) and an outer program; ``runtime/structured.py``
evaluates that. Every test here checks a structured compiled function against an oracle
that does not run the code under test: numpy/``math`` re-implementations with
hand-written gradients or per-term central differences, eager ``Value`` evaluation and
``backward()`` at the new point, or scipy. A flat compilation of the same program is
only ever a consistency check on top. Compiled functions are always evaluated at points
other than the one they were traced at.
"""

from __future__ import annotations

import functools
import math
import operator
import pickle
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import scalar_autograd as sa
from scalar_autograd.backends import BACKENDS
from scalar_autograd.ir.structure import MIN_PROGRAM_SIZE, MIN_ROWS, find_structure
from scalar_autograd.ir.trace import trace
from scalar_autograd.runtime.compiled import CompiledFunction, _entry_for

# one spelling of each function for both worlds: the library's Values and Python floats
SA = SimpleNamespace(sin=sa.sin, cos=sa.cos, exp=sa.exp, tanh=sa.tanh, sqrt=sa.sqrt,
                     atan2=sa.atan2, abs=sa.abs, maximum=sa.maximum, relu=sa.relu,
                     where=sa.where)
MATH = SimpleNamespace(sin=math.sin, cos=math.cos, exp=math.exp, tanh=math.tanh,
                       sqrt=math.sqrt, atan2=math.atan2, abs=abs, maximum=max,
                       relu=lambda a: max(a, 0.0), where=lambda c, a, b: a if c else b)


# --------------------------------------------------------------------------- helpers


def _leaves(x: Sequence[float], requires_grad: bool = False) -> list[sa.Value]:
    return [sa.Value(float(v), requires_grad=requires_grad) for v in x]


def eager(build: Callable[[list[sa.Value]], sa.Value], x: Sequence[float]
          ) -> tuple[float, np.ndarray]:
    """Value and gradient by eager evaluation and ``backward()`` of a graph built anew
    at ``x``."""
    leaves = _leaves(x, requires_grad=True)
    out = build(leaves)
    out.backward()
    return out.data, np.array([leaf.grad for leaf in leaves])


def bits(v: float) -> bytes:
    return np.float64(v).tobytes()


def assert_bitwise(actual: float, expected: float, what: str = "") -> None:
    assert bits(actual) == bits(expected), f"{what}: {actual!r} != {expected!r}"


def assert_grad_close(actual: np.ndarray, expected: np.ndarray, rel: float,
                      what: str = "") -> None:
    """Each entry within ``rel`` of itself plus ``rel`` of the gradient's largest entry
    (the structured kernel adds the rows' contributions in another order)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, what
    scale = float(np.max(np.abs(expected), initial=0.0))
    err = np.abs(actual - expected)
    bad = np.flatnonzero(~(err <= rel * (np.abs(expected) + scale)))
    assert bad.size == 0, (f"{what}: (index, actual, expected) "
                           f"{[(int(i), actual[i], expected[i]) for i in bad[:5]]}")


def flat_twin(f: CompiledFunction, backend: str) -> CompiledFunction:
    """The same program compiled without row kernels (a consistency check only)."""
    return CompiledFunction(_entry_for(f.program, backend, structured=False), f.params)


def sum_node_terms(loss: sa.Value, params: Sequence[sa.Value],
                   inputs: Sequence[sa.Value] = ()) -> tuple[Any, dict[int, list[int]]]:
    """The structure ``sa.compile`` finds in ``loss`` (``find_structure`` on the same
    trace, default thresholds) and, for the n-ary sum at (or just below) the output, the
    positions in the sum of each of its argument nodes (identical terms are one node)."""
    program, _ = trace([loss], list(params), list(inputs))
    node = program.outputs[0]
    kind, args = program.nodes[node]
    if kind != "sum":
        node = next(a for a in args if program.nodes[a][0] == "sum")
        kind, args = program.nodes[node]
    position: dict[int, list[int]] = {}
    for k, a in enumerate(args):
        position.setdefault(a, []).append(k)
    return find_structure(program, n_diff=1), position


def grouped_rows(loss: sa.Value, params: Sequence[sa.Value],
                 inputs: Sequence[sa.Value] = ()) -> list[list[int]]:
    """Per group (program order), the positions in the loss's sum of its rows."""
    structure, position = sum_node_terms(loss, params, inputs)
    if structure is None:
        return []
    return [[k for r in g.roots for k in position[int(r)]] for g in structure.groups]


# --------------------------------------------------------------------------- a mesh


def grid_mesh(nx: int, ny: int) -> tuple[np.ndarray, list[tuple[int, int]],
                                          list[tuple[int, int, int, int]]]:
    """Vertices of an ``nx x ny`` grid (z = 0), its triangulation's edges, and a hinge
    ``(a, b, c, d)`` per interior edge ``(a, b)`` with opposite vertices ``c``, ``d``."""
    verts = np.array([(float(i), float(j), 0.0) for j in range(ny) for i in range(nx)])
    tris = []
    for j in range(ny - 1):
        for i in range(nx - 1):
            a, b, c, d = j * nx + i, j * nx + i + 1, (j + 1) * nx + i + 1, (j + 1) * nx + i
            tris += [(a, b, c), (a, c, d)]
    faces: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for t in tris:
        for k in range(3):
            faces.setdefault(tuple(sorted((t[k], t[(k + 1) % 3]))), []).append(t)
    edges = sorted(faces)
    hinges = []
    for e in edges:
        if len(faces[e]) == 2:
            c, d = (next(v for v in t if v not in e) for t in faces[e])
            hinges.append((e[0], e[1], c, d))
    return verts, edges, hinges


@dataclass
class Mesh:
    verts: np.ndarray
    edges: list[tuple[int, int]]
    hinges: list[tuple[int, int, int, int]]
    rest: np.ndarray          # per edge: a per-row constant of the spring terms
    mass: np.ndarray          # per vertex
    k_spring: float = 0.5     # the same in every row: stays a compile-time constant
    k_bend: float = 0.1
    eps: float = 1e-3
    gravity: float = 9.81

    @property
    def n(self) -> int:
        return 3 * len(self.verts)

    def terms(self, p: Sequence[sa.Value]) -> tuple[list[sa.Value], list[sa.Value],
                                                    list[sa.Value]]:
        """Springs (one per edge), bending (one per hinge), gravity (one per vertex)."""
        P = [p[3 * i:3 * i + 3] for i in range(len(self.verts))]
        springs = []
        for (a, b), rest in zip(self.edges, self.rest.tolist()):
            dx, dy, dz = P[a][0] - P[b][0], P[a][1] - P[b][1], P[a][2] - P[b][2]
            springs.append(self.k_spring * (sa.sqrt(dx * dx + dy * dy + dz * dz) - rest) ** 2)
        bends = []
        for a, b, c, d in self.hinges:
            s = [P[c][k] + P[d][k] - P[a][k] - P[b][k] for k in range(3)]
            bends.append(self.k_bend * sa.sqrt(s[0] * s[0] + s[1] * s[1] + s[2] * s[2]
                                               + self.eps))
        weights = (self.mass * self.gravity).tolist()
        gravity = [w * P[i][2] for i, w in enumerate(weights)]
        return springs, bends, gravity

    def energy(self, p: Sequence[sa.Value]) -> sa.Value:
        springs, bends, gravity = self.terms(p)
        return sa.sum(springs + bends + gravity)

    # the oracle: numpy, gradient by hand
    def energy_np(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        P = x.reshape(-1, 3)
        g = np.zeros_like(P)
        e = np.array(self.edges)
        d = P[e[:, 0]] - P[e[:, 1]]
        length = np.sqrt(np.sum(d * d, axis=1))
        stretch = length - self.rest
        value = self.k_spring * np.sum(stretch ** 2)
        gs = (2.0 * self.k_spring * stretch / length)[:, None] * d
        np.add.at(g, e[:, 0], gs)
        np.add.at(g, e[:, 1], -gs)
        h = np.array(self.hinges)
        s = P[h[:, 2]] + P[h[:, 3]] - P[h[:, 0]] - P[h[:, 1]]
        r = np.sqrt(np.sum(s * s, axis=1) + self.eps)
        value += self.k_bend * np.sum(r)
        gb = (self.k_bend / r)[:, None] * s
        for col, sign in ((0, -1.0), (1, -1.0), (2, 1.0), (3, 1.0)):
            np.add.at(g, h[:, col], sign * gb)
        value += self.gravity * np.sum(self.mass * P[:, 2])
        g[:, 2] += self.gravity * self.mass
        return float(value), g.ravel()


def make_mesh(nx: int = 10, ny: int = 10, seed: int = 0) -> Mesh:
    verts, edges, hinges = grid_mesh(nx, ny)
    rng = np.random.default_rng(seed)
    rest = np.array([np.linalg.norm(verts[a] - verts[b]) for a, b in edges])
    rest *= rng.uniform(0.9, 1.1, size=len(edges))
    return Mesh(verts, edges, hinges, rest, rng.uniform(0.5, 1.5, size=len(verts)))


def mesh_points(mesh: Mesh, rng: np.random.Generator, k: int) -> list[np.ndarray]:
    base = mesh.verts.ravel()
    return [base + rng.normal(scale=0.3, size=base.shape) for _ in range(k)]


# --------------------------------------------------------------------------- 1. detection


def test_mesh_energy_is_grouped_into_springs_and_hinges(backend: str) -> None:
    mesh = make_mesh()
    rng = np.random.default_rng(1)
    traced_at = mesh_points(mesh, rng, 1)[0]
    p = _leaves(traced_at)
    loss = mesh.energy(p)
    n_e, n_h, n_v = len(mesh.edges), len(mesh.hinges), len(mesh.verts)

    # the groups and their rows, found on the same trace sa.compile makes
    structure, _ = sum_node_terms(loss, p)
    assert structure is not None
    springs, bends, *rest = structure.groups
    assert [springs.n_rows, bends.n_rows] == [n_e, n_h]
    # rows in the order of the terms: row r of the springs reads the coordinates of
    # edge r, row r of the hinges those of hinge r
    for r, (a, b) in enumerate(mesh.edges):
        assert sorted(springs.param_index[r].tolist()) == \
            sorted([3 * a + k for k in range(3)] + [3 * b + k for k in range(3)])
    for r, hinge in enumerate(mesh.hinges):
        assert sorted(bends.param_index[r].tolist()) == \
            sorted(3 * v + k for v in hinge for k in range(3))
    # the rest lengths differ per edge: lifted to per-row data; k_spring, k_bend and
    # eps are the same in every row: compiled in
    assert springs.data.shape == (n_e, 1)
    assert np.array_equal(springs.data[:, 0], mesh.rest)
    assert bends.data.shape == (n_h, 0)
    assert springs.input_index.shape == (n_e, 0)
    # the gravity terms, one instruction each (weight * z): a group of their own (the
    # weights as per-row data) or, with a larger MIN_TERM_SIZE, left to the outer program
    expected = [(n_e, 12, 6), (n_h, 17, 12)]
    if rest:
        (gravity,) = rest
        assert gravity.param_index.tolist() == [[3 * i + 2] for i in range(n_v)]
        assert np.array_equal(gravity.data[:, 0], mesh.mass * mesh.gravity)
        expected.append((n_v, 1, 1))
    assert structure.n_terms == sum(rows for rows, _, _ in expected)

    f = sa.compile(loss, p, backend=backend)
    s = f.stats()
    assert s.backend == f.backend == backend
    # instructions per term counted by hand: spring 3 sub, 3 mul, 2 add, sqrt, sub,
    # pow, mul; bend 3 x (add, sub, sub), 3 mul, 3 add, sqrt, mul
    assert [(r.rows, r.instructions, r.slots) for r in s.row_kernels] == expected
    assert s.kernel_count == len(expected) + 1
    # kernel evaluations per call (every row, and the outer kernel) per distinct kernel
    assert s.reuse_factor == pytest.approx((structure.n_terms + 1) / (len(expected) + 1))
    assert s.instructions == 12 * n_e + 17 * n_h + n_v + 1
    assert s.outer_instructions == structure.outer.n_instructions
    assert f"row_kernels={len(expected)}" in repr(f)

    # right at points other than the traced one, against the hand-written gradient
    for x in mesh_points(mesh, rng, 3):
        expected_value, expected_grad = mesh.energy_np(x)
        value, grad = f.value_and_grad(x)
        assert value == pytest.approx(expected_value, rel=1e-12)
        assert f(x) == value
        assert_grad_close(grad, expected_grad, 1e-11, "mesh gradient")


def test_the_hand_written_mesh_gradient_is_right() -> None:
    # the oracle of the test above, checked once against central differences
    mesh = make_mesh(4, 4)
    x = mesh_points(mesh, np.random.default_rng(2), 1)[0]
    _, grad = mesh.energy_np(x)
    h = 1e-6
    fd = np.array([(mesh.energy_np(x + h * e)[0] - mesh.energy_np(x - h * e)[0]) / (2 * h)
                   for e in np.eye(len(x))])
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-7)


def test_small_programs_stay_flat(backend: str) -> None:
    # 60 springs (about 700 instructions): below MIN_PROGRAM_SIZE, compiled flat
    mesh = make_mesh(5, 4)
    p = _leaves(mesh.verts.ravel())
    loss = mesh.energy(p)
    f = sa.compile(loss, p, backend=backend)
    s = f.stats()
    assert s.instructions < MIN_PROGRAM_SIZE
    assert s.row_kernels == () and s.kernel_count == 1 and s.reuse_factor == 1.0
    assert s.outer_instructions == s.instructions
    assert "row_kernels" not in repr(f)
    x = mesh_points(mesh, np.random.default_rng(3), 1)[0]
    value, grad = f.value_and_grad(x)
    expected_value, expected_grad = mesh.energy_np(x)
    assert value == pytest.approx(expected_value, rel=1e-12)
    assert_grad_close(grad, expected_grad, 1e-11)


def test_the_threshold_is_the_program_size() -> None:
    # the same springs just below and just above MIN_PROGRAM_SIZE instructions
    def chain(n: int) -> tuple[sa.Value, list[sa.Value]]:
        xs = _leaves(np.linspace(0.0, 1.0, n))
        return sa.sum([(xs[i] - xs[i + 1]) ** 2 for i in range(n - 1)]), xs

    below, xs = chain(MIN_PROGRAM_SIZE // 2)       # 2 instructions per term, + the sum
    assert trace([below], xs)[0].n_instructions < MIN_PROGRAM_SIZE
    assert sa.compile(below, xs).stats().row_kernels == ()
    above, xs = chain(MIN_PROGRAM_SIZE // 2 + 1)
    assert trace([above], xs)[0].n_instructions >= MIN_PROGRAM_SIZE
    assert [r.rows for r in sa.compile(above, xs).stats().row_kernels] == \
        [MIN_PROGRAM_SIZE // 2]


# terms whose own top ops are spine ops (a product of differences, a multiple of a sum,
# a negation): many nodes of one shape, so each is a whole term, not split at its top
WHOLE_TERMS: dict[str, tuple[Callable[[sa.Value, sa.Value, sa.Value], sa.Value], int]] = {
    "d * d": (lambda a, b, c: (a - b) * (a - b), 2),
    "k * (d * d + 1)": (lambda a, b, c: 0.5 * ((a - b) * (a - b) + 1.0), 4),
    "k * -(t ** 2)": (lambda a, b, c: -(sa.sin(a - b) ** 2) * 2.0, 5),
    "k * (sum of squares)": (lambda a, b, c: 0.1 * ((a + b - c) * (a + b - c)
                                                     + (a - c) * (a - c)), 7),
}


@pytest.mark.parametrize("name", list(WHOLE_TERMS))
def test_terms_made_of_spine_ops_stay_whole(name: str) -> None:
    term, size = WHOLE_TERMS[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    n, k = 400, -(-2100 // size)
    triples: dict[tuple[int, int], int] = {}       # distinct (i, j): distinct terms
    while len(triples) < k:
        i, j, m = (int(v) for v in rng.choice(n, size=3, replace=False))
        triples.setdefault((i, j), m)

    def build(xs: list[sa.Value]) -> sa.Value:
        return sa.sum([term(xs[i], xs[j], xs[m]) for (i, j), m in triples.items()])

    xs = _leaves(rng.normal(size=n))
    f = sa.compile(build(xs), xs)
    # (a term that reads a subexpression another built with commuted arguments, a + b
    # for b + a, has another key: a few rows may form groups of their own)
    rows = f.stats().row_kernels
    assert {r.instructions for r in rows} == {size}
    assert sum(r.rows for r in rows) == k and max(r.rows for r in rows) >= 0.9 * k
    x = rng.normal(size=n)
    value, grad = f.value_and_grad(x)
    e_value, e_grad = eager(build, x)
    assert_bitwise(value, e_value, name)
    assert_grad_close(grad, e_grad, 1e-12, name)


# --------------------------------------------------------------------------- rows of terms

Term = Callable[..., object]
"""``term(m, *args, c)``: one term, written once for ``m = SA`` (Values) and ``MATH``."""


@dataclass(frozen=True)
class Row:
    fn: Term
    idx: tuple[int, ...]     # the params it reads, in the order of its arguments
    c: float                 # its constant


def row_terms(rows: Sequence[Row], xs: Sequence[sa.Value]) -> list[sa.Value]:
    return [r.fn(SA, *[xs[k] for k in r.idx], r.c) for r in rows]  # type: ignore[misc]


def rows_builder(rows: Sequence[Row], scale: float | None = None
                 ) -> Callable[[list[sa.Value]], sa.Value]:
    def build(xs: list[sa.Value]) -> sa.Value:
        total = sa.sum(row_terms(rows, xs))
        return total if scale is None else scale * total
    return build


def rows_oracle(rows: Sequence[Row], x: np.ndarray, scale: float | None = None,
                h: float = 1e-6) -> tuple[float, np.ndarray]:
    """The loss of ``rows_builder`` in Python floats and ``math``, summed in the same
    order; the gradient by a central difference of each term in each param it reads."""
    value = 0.0
    grad = np.zeros(len(x))
    xl = x.tolist()
    for r in rows:
        value += r.fn(MATH, *[xl[k] for k in r.idx], r.c)  # type: ignore[operator]
        for k in set(r.idx):
            step = h * max(1.0, abs(xl[k]))
            up = [xl[j] + step if j == k else xl[j] for j in r.idx]
            down = [xl[j] - step if j == k else xl[j] for j in r.idx]
            grad[k] += (r.fn(MATH, *up, r.c) - r.fn(MATH, *down, r.c)) / (2 * step)
    if scale is not None:
        value, grad = scale * value, scale * grad
    return value, grad


@dataclass(frozen=True)
class Family:
    """Regular rows and near-isomorphic odd rows, and whether they may share a group."""

    name: str
    regular: Term
    odd: Term
    same_group: bool
    regular_c: Callable[[np.random.Generator], float]
    odd_c: Callable[[np.random.Generator], float]
    odd_leaves: str = "pair"       # "pair": (x_i, x_j), i != j; "twice": (x_i, x_i)
    scale: float | None = None


def _uniform(rng: np.random.Generator) -> float:
    return float(rng.uniform(-2.0, 2.0))


FAMILIES = [
    # (a) one constant differs: the same shape; the constant becomes per-row data
    Family("constant", lambda m, a, b, c: c * m.sin(a - b) ** 2,
           lambda m, a, b, c: c * m.sin(a - b) ** 2, True,
           lambda rng: 0.5, lambda rng: 0.75),
    # (a) ... by its sign only: 0.0 and -0.0 are different constants (atan2 tells them
    # apart: pi and -pi), never compiled in as one
    Family("signed zero", lambda m, a, b, c: m.atan2(c, a * b - 5.0),
           lambda m, a, b, c: m.atan2(c, a * b - 5.0), True,
           lambda rng: 0.0, lambda rng: -0.0, scale=0.5),
    # (b) one op differs
    Family("op", lambda m, a, b, c: m.sin(a * b + c) ** 2,
           lambda m, a, b, c: m.cos(a * b + c) ** 2, False, _uniform, _uniform),
    # (c) a pow exponent differs: exponents are structure
    Family("exponent", lambda m, a, b, c: (m.tanh(a) - b * c) ** 2,
           lambda m, a, b, c: (m.tanh(a) - b * c) ** 3, False, _uniform, _uniform),
    # (d) the leaf pattern differs: one param in both places of the odd rows
    Family("leaves", lambda m, a, b, c: m.sin(a * c - b) ** 2,
           lambda m, a, b, c: m.sin(a * c - b) ** 2, False, _uniform, _uniform,
           odd_leaves="twice", scale=2.5),
    # (e) commuted arguments of a commutative op: one shape, the same values
    Family("commuted add", lambda m, a, b, c: m.tanh(c + m.sin(a) * b),
           lambda m, a, b, c: m.tanh(m.sin(a) * b + c), True, _uniform, _uniform),
    Family("commuted mul", lambda m, a, b, c: m.exp(c * (m.cos(a) * m.sin(b))),
           lambda m, a, b, c: m.exp((m.sin(b) * m.cos(a)) * c), True, _uniform, _uniform),
    # (e) ... of a non-commutative op: two shapes, each right
    Family("commuted sub", lambda m, a, b, c: m.tanh(c - m.sin(a) * b),
           lambda m, a, b, c: m.tanh(m.sin(a) * b - c), False, _uniform, _uniform),
]


def family_rows(family: Family, n_regular: int, n_odd: int, n_params: int,
                rng: np.random.Generator) -> tuple[list[Row], list[int]]:
    """``n_regular`` regular rows with ``n_odd`` odd ones at random positions."""
    n = n_regular + n_odd
    odd_at = sorted(rng.choice(n, size=n_odd, replace=False).tolist())
    odd = set(odd_at)
    rows = []
    for k in range(n):
        i, j = (int(v) for v in rng.choice(n_params, size=2, replace=False))
        if k in odd:
            idx = (i, i) if family.odd_leaves == "twice" else (i, j)
            rows.append(Row(family.odd, idx, family.odd_c(rng)))
        else:
            rows.append(Row(family.regular, (i, j), family.regular_c(rng)))
    return rows, odd_at


@dataclass
class Case:
    """A loss traced at ``xs``, with points elsewhere and what the oracles say there."""

    build: Callable[[list[sa.Value]], sa.Value]
    xs: list[sa.Value]
    loss: sa.Value
    points: list[np.ndarray]
    oracle: list[tuple[float, np.ndarray]]
    eager: list[tuple[float, np.ndarray]]


def make_case(build: Callable[[list[sa.Value]], sa.Value], traced_at: np.ndarray,
              points: list[np.ndarray],
              oracle: Callable[[np.ndarray], tuple[float, np.ndarray]]) -> Case:
    xs = _leaves(traced_at)
    return Case(build, xs, build(xs), points, [oracle(x) for x in points],
                [eager(build, x) for x in points])


def check_case(f: CompiledFunction, case: Case, what: str, oracle_rtol: float = 1e-7
               ) -> None:
    """At each point: value and gradient against the independent oracle; the value bit
    for bit and the gradient to 1e-12 against eager evaluation at that point."""
    for x, (o_value, o_grad), (e_value, e_grad) in zip(case.points, case.oracle, case.eager):
        value, grad = f.value_and_grad(x)
        assert value == pytest.approx(o_value, rel=1e-13, abs=1e-13), what
        assert_grad_close(grad, o_grad, oracle_rtol, f"{what}: vs the oracle")
        assert_bitwise(value, e_value, f"{what}: value_and_grad vs eager")
        assert_bitwise(f(x), e_value, f"{what}: f(x) vs eager")
        assert_grad_close(grad, e_grad, 1e-12, f"{what}: vs eager backward()")


# --------------------------------------------------------------------------- 2., 3.

N_REGULAR, N_FAMILY_PARAMS = 700, 150


@functools.cache
def family_case(name: str, n_odd: int) -> tuple[Case, list[Row], list[int]]:
    family = next(fam for fam in FAMILIES if fam.name == name)
    rng = np.random.default_rng(zlib.crc32(f"{name} {n_odd}".encode()))
    rows, odd_at = family_rows(family, N_REGULAR, n_odd, N_FAMILY_PARAMS, rng)
    points = [rng.uniform(-1.5, 1.5, N_FAMILY_PARAMS) for _ in range(3)]
    case = make_case(rows_builder(rows, family.scale), points[0], points[1:],
                     lambda x: rows_oracle(rows, x, family.scale))
    return case, rows, odd_at


ODD_COUNTS = pytest.mark.parametrize("n_odd", [3, 12], ids=["few odd", "a group of odd"])
EVERY_FAMILY = pytest.mark.parametrize("family", FAMILIES, ids=[fam.name for fam in FAMILIES])


@ODD_COUNTS
@EVERY_FAMILY
def test_near_isomorphic_terms_are_grouped_by_shape(family: Family, n_odd: int) -> None:
    case, rows, odd_at = family_case(family.name, n_odd)
    groups = [set(g) for g in grouped_rows(case.loss, case.xs)]
    everything = set(range(len(rows)))
    odd = set(odd_at)
    if family.same_group:
        assert groups == [everything]
        # the one constant column holds each row's constant, bit for bit
        structure, position = sum_node_terms(case.loss, case.xs)
        (g,) = structure.groups
        assert g.data.shape == (g.n_rows, 1)
        assert [bits(c) for c in g.data[:, 0]] == \
            [bits(rows[position[int(r)][0]].c) for r in g.roots]
    else:
        # the odd rows: never with the regular ones; a group of their own when there
        # are enough of them, else a group of their own or left to the outer program
        assert everything - odd in groups
        assert all(g == everything - odd or g <= odd for g in groups)
        assert (odd in groups) if n_odd >= MIN_ROWS else (odd in groups or len(groups) == 1)


@ODD_COUNTS
@EVERY_FAMILY
def test_near_isomorphic_terms_are_right_on_every_backend(family: Family, n_odd: int,
                                                           backend: str) -> None:
    case, _, _ = family_case(family.name, n_odd)
    f = sa.compile(case.loss, case.xs, backend=backend)
    assert f.stats().row_kernels
    check_case(f, case, f"{family.name}, {n_odd} odd rows, {backend}")


def test_mesh_values_bitwise_and_gradients_with_eager(backend: str) -> None:
    mesh = make_mesh()
    rng = np.random.default_rng(4)
    traced_at, *points = mesh_points(mesh, rng, 3)
    case = make_case(mesh.energy, traced_at, points, mesh.energy_np)
    f = sa.compile(case.loss, case.xs, backend=backend)
    assert len(f.stats().row_kernels) >= 2
    check_case(f, case, f"mesh, {backend}", oracle_rtol=1e-11)
    # the flat compilation agrees too (a consistency check, after the oracles)
    flat = flat_twin(f, backend)
    assert flat.stats().row_kernels == ()
    for x in points:
        value, grad = f.value_and_grad(x)
        flat_value, flat_grad = flat.value_and_grad(x)
        assert_bitwise(value, flat_value, "structured vs flat")
        assert_grad_close(grad, flat_grad, 1e-12, "structured vs flat")


def _sum_of(ts: list[Any]) -> Any:
    """``sa.sum`` of Values; of floats, the same left-to-right fold."""
    return sa.sum(ts) if isinstance(ts[0], sa.Value) else functools.reduce(operator.add, ts)


def _mean_of(ts: list[Any]) -> Any:
    return sa.mean(ts) if isinstance(ts[0], sa.Value) else _sum_of(ts) / len(ts)


# how the terms are combined: sums of terms the structured kernel folds before the outer
# program (an n-ary sum, a mean, Python's sum() with its 0, a chain of +) and others
COMBINATIONS: dict[str, Callable[[list[Any]], Any]] = {
    "sa.sum": _sum_of,
    "builtin sum": sum,
    "chain of +": lambda ts: functools.reduce(operator.add, ts),
    "sa.mean": _mean_of,
    "scaled and subtracted": lambda ts: 0.5 * _sum_of(ts[:300]) - _sum_of(ts[300:]) / 3.0,
    "nested sums": lambda ts: _sum_of([_sum_of(ts[i:i + 40]) for i in range(0, len(ts), 40)]),
    "sum with a tail": lambda ts: _sum_of(ts[:-1] + [ts[-1] * ts[0]]) * ts[1],
}


def _relu_term(m: Any, a: Any, b: Any, c: float) -> Any:
    # -0.0 where a < b: a sum of such terms shows how a fold starts (Python's sum()
    # starts from 0 and gives 0.0; a chain or the sum op start from the first term)
    return m.tanh(-(m.relu(a - b) ** 2) * c)


@functools.cache
def combination_case(name: str) -> tuple[Case, list[Row]]:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    n = 120
    rows = []
    for _ in range(600):
        i, j = sorted(int(v) for v in rng.choice(n, size=2, replace=False))
        rows.append(Row(_relu_term, (i, j), float(rng.choice([0.5, 2.0, 3.0]))))
    combine = COMBINATIONS[name]

    def build(xs: list[sa.Value]) -> sa.Value:
        return combine(row_terms(rows, xs))  # type: ignore[no-any-return]

    def oracle(x: np.ndarray) -> tuple[float, np.ndarray]:
        # the same combination of the terms in floats; the gradient by central
        # differences of that, term by term (each term reads two params)
        def value_at(values: list[float]) -> float:
            return float(combine(values))
        xl = x.tolist()
        terms = [r.fn(MATH, *[xl[k] for k in r.idx], r.c) for r in rows]  # type: ignore[misc]
        value = value_at(terms)
        grad = np.zeros(n)
        h = 1e-6
        for k, r in enumerate(rows):
            for p in r.idx:
                up, down = list(xl), list(xl)
                up[p] += h
                down[p] -= h
                # d value / d t_k by a difference in t_k, times d t_k / d x_p
                dt = (r.fn(MATH, *[up[q] for q in r.idx], r.c)  # type: ignore[misc]
                      - r.fn(MATH, *[down[q] for q in r.idx], r.c)) / (2 * h)  # type: ignore[misc]
                if dt:   # the combinations are at most quadratic in each term
                    up_t, down_t = list(terms), list(terms)
                    up_t[k] += 1e-3
                    down_t[k] -= 1e-3
                    grad[p] += dt * (value_at(up_t) - value_at(down_t)) / 2e-3
        return value, grad

    increasing = np.linspace(-1.0, 1.0, n)     # every a < b: every term is -0.0
    points = [increasing, increasing[::-1].copy(), rng.permutation(increasing)]
    return make_case(build, rng.permutation(increasing), points, oracle), rows


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_combinations_of_terms_bitwise_with_eager(name: str, backend: str) -> None:
    case, _ = combination_case(name)
    f = sa.compile(case.loss, case.xs, backend=backend)
    # (nested sums: see test_batch_sums_group_like_one_sum)
    assert f.stats().row_kernels or name == "nested sums", name
    check_case(f, case, f"{name}, {backend}", oracle_rtol=1e-6)
    # where every term is -0.0: Python's sum() gives 0.0, the others -0.0 (times 0.5
    # and 1/3: -0.0 - -0.0 = 0.0 for the difference of two sums)
    value = f(case.points[0])
    assert value == 0.0
    if name in ("sa.sum", "chain of +", "sa.mean", "nested sums"):
        assert math.copysign(1.0, value) == -1.0


def test_batch_sums_group_like_one_sum() -> None:
    rng = np.random.default_rng(6)
    xs = _leaves(rng.normal(size=100))
    terms = []
    for k in range(800):
        i, j = (int(v) for v in rng.integers(0, 100, size=2))
        j = i if k % 50 == 7 else j          # now and then one param twice: another shape
        terms.append(sa.sin(xs[i] * xs[j] + float(rng.normal())) ** 2)
    one_sum = sa.sum(terms)
    batch_sums = sa.sum([sa.sum(terms[b:b + 40]) for b in range(0, 800, 40)])
    expected = sa.compile(one_sum, xs).stats().row_kernels
    assert sum(r.rows for r in expected) == 800 and len(expected) == 2
    assert sa.compile(batch_sums, xs).stats().row_kernels == expected


# sums of terms with other things among them: params, runtime inputs, constants (each
# folded with the terms, in order) and a few terms of rare shapes
MIXED_SUMS: dict[str, Callable[[list[Any], list[Any], list[Any]], Any]] = {
    "params, inputs and constants": lambda ts, xs, us: _sum_of(
        ts[:300] + [xs[0], us[0], 2.5, xs[0] * 1.0] + ts[300:] + [us[1] * 2.0, -0.0]),
    "builtin sum with a param and an input": lambda ts, xs, us: sum(
        ts[:200] + [xs[3]] + ts[200:] + [us[2]]),
    "mean with a param and an input": lambda ts, xs, us: _mean_of(ts + [us[0], xs[1]]),
    "rare shapes among the terms": lambda ts, xs, us: _sum_of(
        ts[:350] + [_ops_for(xs).exp(xs[5] * us[3]), _ops_for(xs).cos(xs[2])] + ts[350:]),
    "-0.0 around the terms": lambda ts, xs, us: _sum_of([-0.0] + ts + [-0.0]),
}


def _ops_for(values: list[Any]) -> SimpleNamespace:
    """``SA`` for Values, ``MATH`` for floats."""
    return SA if isinstance(values[0], sa.Value) else MATH


@functools.cache
def mixed_sum_case(name: str) -> tuple[Case, int]:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    n, n_u = 60, 4
    pairs = [tuple(int(v) for v in rng.choice(n, size=2, replace=False)) for _ in range(700)]
    cs = rng.uniform(0.5, 1.5, 700).tolist()
    u = rng.uniform(-1.0, 1.0, n_u).tolist()
    combine = MIXED_SUMS[name]

    def loss(m: Any, xs: list[Any], us: list[Any]) -> Any:
        ts = [m.sin(xs[i] * xs[j] + c) ** 2 for (i, j), c in zip(pairs, cs)]
        return combine(ts, xs, us)

    def build(xs: list[sa.Value]) -> sa.Value:      # the inputs as the last leaves
        return loss(SA, xs[:n], xs[n:])  # type: ignore[no-any-return]

    def oracle(x: np.ndarray) -> tuple[float, np.ndarray]:
        xl = x.tolist()
        value = float(loss(MATH, xl[:n], xl[n:]))
        grad = np.zeros(n + n_u)
        for k in range(n):
            h = 1e-6
            up, down = list(xl), list(xl)
            up[k] += h
            down[k] -= h
            grad[k] = (loss(MATH, up[:n], up[n:]) - loss(MATH, down[:n], down[n:])) / (2 * h)
        return value, grad

    points = [np.concatenate([rng.uniform(-1.0, 1.0, n), u]) for _ in range(3)]
    return make_case(build, points[0], points[1:], oracle), n


@pytest.mark.parametrize("name", list(MIXED_SUMS))
def test_sums_of_terms_params_inputs_and_constants(name: str, backend: str) -> None:
    case, n = mixed_sum_case(name)
    # the last leaves are runtime inputs of the compiled function (the oracles see them
    # as params: their gradient entries are not compared)
    f = sa.compile(case.loss, case.xs[:n], inputs=case.xs[n:], backend=backend)
    assert f.stats().row_kernels
    for x, (o_value, o_grad), (e_value, e_grad) in zip(case.points, case.oracle, case.eager):
        value, grad = f.value_and_grad(x[:n], inputs=x[n:])
        assert value == pytest.approx(o_value, rel=1e-13, abs=1e-13), name
        assert_grad_close(grad, o_grad[:n], 1e-7, f"{name}: vs the oracle")
        assert_bitwise(value, e_value, f"{name}: vs eager")
        assert_bitwise(f(x[:n], inputs=x[n:]), e_value, f"{name}: f(x) vs eager")
        assert_grad_close(grad, e_grad[:n], 1e-12, f"{name}: vs eager backward()")


# --------------------------------------------------------------------------- 5. branches

BRANCHES: dict[str, Term] = {
    # sqrt'(0) is inf: where selects it away from the branch not taken (gradient 0)
    "where into sqrt": lambda m, a, b, c: m.sqrt(m.where(a > b, a - b, 0.0)) * c,
    "relu into sqrt": lambda m, a, b, c: m.sqrt(m.relu(a - b) * c),
    # a branch of params on each side
    "where of two branches": lambda m, a, b, c: m.where(a < b, a * b, m.sin(a + c)) ** 2,
    "max": lambda m, a, b, c: m.maximum(a, b * c) ** 2,
    # the "double where" (vec.py): the untaken sqrt is fed a safe number
    "double where": lambda m, a, b, c: m.where(a > b, m.sqrt(m.where(a > b, a - b, 1.0)),
                                               0.0) * c,
}


@functools.cache
def branch_case(name: str) -> Case:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    n = 150
    rows = []
    for _ in range(700):
        i, j = sorted(int(v) for v in rng.choice(n, size=2, replace=False))
        rows.append(Row(BRANCHES[name], (i, j), float(rng.uniform(0.5, 1.5))))
    # well separated coordinates: central differences stay off the kinks
    grid = np.linspace(1.0, 2.5, n)
    increasing, decreasing = grid, grid[::-1].copy()   # rows (i < j): every a < b, a > b
    points = [increasing, decreasing, rng.permutation(grid)]
    return make_case(rows_builder(rows), rng.permutation(grid), points,
                     lambda x: rows_oracle(rows, x))


@pytest.mark.parametrize("name", list(BRANCHES))
def test_both_sides_of_branches(name: str, backend: str) -> None:
    case = branch_case(name)
    f = sa.compile(case.loss, case.xs, backend=backend)
    assert f.stats().row_kernels
    check_case(f, case, f"{name}, {backend}", oracle_rtol=1e-6)
    if name in ("where into sqrt", "relu into sqrt", "double where"):
        # every row on the side of 0: value 0 and a gradient of exact zeros, no nan
        value, grad = f.value_and_grad(case.points[0])
        assert value == 0.0
        assert np.array_equal(grad, np.zeros_like(grad)), grad[~(grad == 0.0)][:5]


def test_max_at_ties_splits_the_gradient(backend: str) -> None:
    # max(a, b)**2 with a == b in some rows: half the gradient to each (the documented
    # tie rule), written out by hand
    rng = np.random.default_rng(5)
    n = 100
    rows = [Row(lambda m, a, b, c: m.maximum(a, b) ** 2 * c,
                tuple(int(v) for v in rng.choice(n, size=2, replace=False)),
                float(rng.uniform(0.5, 1.5))) for _ in range(700)]
    build = rows_builder(rows)
    xs = _leaves(rng.normal(size=n))
    f = sa.compile(build(xs), xs, backend=backend)
    assert f.stats().row_kernels
    x = np.round(rng.uniform(-2, 2, n), 0)          # many equal coordinates: ties
    expected = np.zeros(n)
    for r in rows:
        i, j = r.idx
        if x[i] > x[j]:
            expected[i] += 2 * x[i] * r.c
        elif x[i] < x[j]:
            expected[j] += 2 * x[j] * r.c
        else:
            expected[i] += x[i] * r.c
            expected[j] += x[j] * r.c
    value, grad = f.value_and_grad(x)
    assert value == pytest.approx(sum(max(x[r.idx[0]], x[r.idx[1]]) ** 2 * r.c for r in rows),
                                  rel=1e-13)
    assert_grad_close(grad, expected, 1e-13, "ties")
    e_value, e_grad = eager(build, x)
    assert_bitwise(value, e_value)
    assert_grad_close(grad, e_grad, 1e-12)


def test_the_where_trap_is_the_same_eager_and_compiled(backend: str) -> None:
    # whatever the convention, the structured kernel agrees with eager backward()
    build = rows_builder([Row(lambda m, a, b, c: m.where(a > 0.0, m.sqrt(a), 0.0) * c,
                              (i, i), 1.5) for i in range(1000)])
    xs = _leaves(np.linspace(1.0, 2.0, 1000))
    f = sa.compile(build(xs), xs, backend=backend)
    assert f.stats().row_kernels
    x = np.linspace(-1.0, 1.0, 1000)
    value, grad = f.value_and_grad(x)
    e_value, e_grad = eager(build, x)
    assert_bitwise(value, e_value)
    assert np.array_equal(np.isnan(grad), np.isnan(e_grad))
    finite = ~np.isnan(e_grad)
    assert_grad_close(grad[finite], e_grad[finite], 1e-12)


# --------------------------------------------------------------------------- 4. random


_UNARY = ("sin", "exp", "tanh", "abs", "neg")
_BINARY = ("add", "mul", "sub", "max")
_SWAP = {"sin": "cos", "cos": "sin", "exp": "tanh", "tanh": "exp", "abs": "neg",
         "neg": "abs", "add": "sub", "sub": "add", "mul": "max", "max": "mul"}


def _templates(n_slots: int) -> st.SearchStrategy[Any]:
    """A term template: ``("p", slot)``, ``("c", k)`` (a per-row constant), ``("k",
    value)``, ``(unary, t)``, ``(binary, t, t)``, ``("pow", t, exponent)``,
    ``("where", ">" or "<", t, t, t, t)``."""
    param = st.tuples(st.just("p"), st.integers(0, n_slots - 1))
    leaves = st.one_of(param, param, param, st.tuples(st.just("c"), st.integers(0, 1)),
                       st.tuples(st.just("k"), st.sampled_from([0.5, -1.25, 2.0])))

    def extend(t: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.tuples(st.sampled_from(_UNARY), t),
            st.tuples(st.sampled_from(_BINARY), t, t),
            st.tuples(st.just("pow"), t, st.sampled_from([2.0, 3.0])),
            st.tuples(st.just("where"), st.sampled_from([">", "<"]), t, t, t, t))

    return st.recursive(leaves, extend, max_leaves=6)


def _evaluate(t: Any, m: Any, p: Sequence[Any], c: Sequence[float]) -> Any:
    kind = t[0]
    if kind == "p":
        return p[t[1]]
    if kind == "c":
        return c[t[1]]
    if kind == "k":
        return t[1]
    args = [_evaluate(a, m, p, c) for a in t[1:] if isinstance(a, tuple)]
    if kind in ("sin", "cos", "exp", "tanh", "abs"):
        return getattr(m, kind)(args[0])
    if kind == "neg":
        return -args[0]
    if kind == "add":
        return args[0] + args[1]
    if kind == "sub":
        return args[0] - args[1]
    if kind == "mul":
        return args[0] * args[1]
    if kind == "max":
        return m.maximum(args[0], args[1])
    if kind == "pow":
        return args[0] ** t[2]
    a, b, u, v = args
    return m.where(a > b if t[1] == ">" else a < b, u, v)


def _ops_of(t: Any) -> list[tuple[int, ...]]:
    """Paths to the op nodes of a template."""
    if t[0] in ("p", "c", "k"):
        return []
    paths: list[tuple[int, ...]] = [()]
    for k, a in enumerate(t):
        if isinstance(a, tuple):
            paths += [(k, *q) for q in _ops_of(a)]
    return paths


def _mutate(t: Any, path: tuple[int, ...]) -> Any:
    """The template with the op at ``path`` changed: another op, the other pow exponent,
    the other comparison."""
    if path:
        k = path[0]
        return (*t[:k], _mutate(t[k], path[1:]), *t[k + 1:])
    kind = t[0]
    if kind == "pow":
        return ("pow", t[1], 5.0 - t[2])
    if kind == "where":
        return ("where", "<" if t[1] == ">" else ">", *t[2:])
    return (_SWAP[kind], *t[1:])


def _has(t: Any, leaf: str) -> bool:
    return t[0] == leaf or any(isinstance(a, tuple) and _has(a, leaf) for a in t[1:])


def _live_ops(t: Any) -> int:
    """Ops of a template that read a param (the others fold to constants)."""
    if t[0] in ("p", "c", "k") or not _has(t, "p"):
        return 0
    return 1 + sum(_live_ops(a) for a in t[1:] if isinstance(a, tuple))


@st.composite
def structured_programs(draw: st.DrawFn) -> dict[str, Any]:
    n_slots = draw(st.integers(1, 3))
    template = draw(_templates(n_slots))
    if not _has(template, "p"):
        template = ("mul", ("p", 0), template)
    if not _has(template, "c"):      # per-row constants keep the rows distinct
        template = ("add", template, ("c", 0))
    while _live_ops(template) < 4:   # fewer, larger terms (see _instantiate)
        template = ("mul", template, ("sin", ("p", n_slots - 1)))
    if template[0] in ("add", "sub", "neg", "mul") and draw(st.integers(0, 3)):
        # mostly a root the spine does not descend through (else the terms are its parts)
        template = draw(st.sampled_from([("tanh", template), ("pow", template, 2.0)]))
    paths = _ops_of(template)
    variant = _mutate(template, draw(st.sampled_from(paths))) if paths else template
    return {
        "n_slots": n_slots, "template": template, "variant": variant,
        "n_variants": draw(st.sampled_from([0, 3, 10])),
        "scale": draw(st.sampled_from([None, 0.5])),
        "tail": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _instantiate(spec: dict[str, Any]) -> tuple[Callable[[list[sa.Value]], sa.Value], int]:
    """The loss of ``spec`` (a function of the params) and its number of params: enough
    rows for about 2,100 instructions (measured on 200 rows: constants fold and equal
    rows are one node), at most 2,000.

    (Few params and rows keep the outer program's gradient kernel small: it has a
    derivative per param and per term the outer program reads one by one, and LLVM
    takes seconds over a few thousand of them.)"""
    rng = np.random.default_rng(spec["seed"])
    n_params, most = 100, 2000
    # random params (collisions: the same param twice in a row, another leaf pattern)
    # and per-row constants, a few of them special (1.0 and +-0.0 simplify: other shapes)
    index = rng.integers(0, n_params, size=(most, spec["n_slots"])).tolist()
    consts = np.where(rng.uniform(size=(most, 2)) < 0.1,
                      rng.choice([1.0, 0.0, -0.0, 0.5], size=(most, 2)),
                      rng.uniform(-2.0, 2.0, size=(most, 2))).tolist()

    def loss(n_rows: int, variant_at: set[int]) -> Callable[[list[sa.Value]], sa.Value]:
        templates = [spec["variant"] if r in variant_at else spec["template"]
                     for r in range(n_rows)]

        def build(xs: list[sa.Value]) -> sa.Value:
            terms = [_evaluate(t, SA, [xs[k] for k in idx], c)
                     for t, idx, c in zip(templates, index, consts)]
            total = sa.sum(terms)
            if spec["scale"] is not None:
                total = spec["scale"] * total
            if spec["tail"]:
                total = total + sa.sin(xs[0] * xs[1]) * sa.exp(xs[2]) - xs[3] ** 2
            return total  # type: ignore[no-any-return]

        return build

    xs = _leaves(rng.uniform(-1.0, 1.0, n_params))
    n_rows = 200
    for _ in range(3):
        size = trace([loss(n_rows, set())(xs)], xs)[0].n_instructions
        if size >= 2100 or n_rows == most:
            break
        n_rows = min(int(n_rows * 2300 / max(size, 1)) + 1, most)
    variant_at = set(rng.choice(n_rows, size=spec["n_variants"], replace=False).tolist())
    return loss(n_rows, variant_at), n_params


def _same_or_both_nan(actual: np.ndarray, expected: np.ndarray, rel: float, what: str
                      ) -> None:
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(actual), nan), what
    inf = np.isinf(expected)
    assert np.array_equal(actual[inf], expected[inf]), what
    finite = ~(nan | inf)
    assert_grad_close(actual[finite], expected[finite], rel, what)


def _check_random_program(spec: dict[str, Any], point_seed: int) -> None:
    """Compile on every backend (one example: the eager oracle, the costly part, is
    shared); values bit for bit and gradients to 1e-12 against eager at two points."""
    build, n_params = _instantiate(spec)
    rng = np.random.default_rng(point_seed)
    xs = _leaves(rng.uniform(-1.0, 1.0, n_params))
    loss = build(xs)
    points = [rng.uniform(-1.0, 1.0, n_params) for _ in range(2)]
    compiled = {name: sa.compile(loss, xs, backend=name) for name in BACKENDS}
    # (a flat program is the business of test_jit_random.py; its kernels are not built)
    assume(compiled[BACKENDS[0]].stats().row_kernels)
    event(f"row kernels: {min(len(compiled[BACKENDS[0]].stats().row_kernels), 3)}")
    for x in points:
        e_value, e_grad = eager(build, x)
        for name, f in compiled.items():
            value, grad = f.value_and_grad(x)
            what = f"{name}: {f.stats()}"
            if math.isnan(e_value):
                assert math.isnan(value) and math.isnan(f(x)), what
            else:
                assert_bitwise(value, e_value, f"value_and_grad, {what}")
                assert_bitwise(f(x), e_value, f"f(x), {what}")
            _same_or_both_nan(grad, e_grad, 1e-12, f"gradient, {what}")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=structured_programs(), point_seed=st.integers(0, 2**32 - 1))
def test_random_repeated_structure_agrees_with_eager(spec: dict[str, Any],
                                                     point_seed: int) -> None:
    _check_random_program(spec, point_seed)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=structured_programs(), point_seed=st.integers(0, 2**32 - 1))
def test_random_repeated_structure_agrees_with_eager_at_length(spec: dict[str, Any],
                                                               point_seed: int) -> None:
    _check_random_program(spec, point_seed)


# --------------------------------------------------------------------------- 6. jit, minimize


@dataclass
class TanhPairs:
    """``sum_k tanh(x_i x_j + c_k)^2`` over random pairs, in numpy with its gradient."""

    pairs: np.ndarray      # (K, 2)
    c: np.ndarray          # (K,)
    n: int

    @classmethod
    def make(cls, seed: int, n: int = 200, k: int = 600) -> TanhPairs:
        rng = np.random.default_rng(seed)
        pairs = np.array([rng.choice(n, size=2, replace=False) for _ in range(k)])
        return cls(pairs, rng.uniform(-0.5, 0.5, k), n)

    def terms(self, v: Sequence[sa.Value]) -> list[sa.Value]:
        return [sa.tanh(v[i] * v[j] + c) ** 2
                for (i, j), c in zip(self.pairs.tolist(), self.c.tolist())]

    def terms_np(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Term values and their derivatives by x_i and x_j."""
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        th = np.tanh(x[i] * x[j] + self.c)
        d = 2.0 * th * (1.0 - th * th)
        return th * th, d * x[j], d * x[i]

    def scatter(self, grad: np.ndarray, weight: np.ndarray | float, di: np.ndarray,
                dj: np.ndarray) -> None:
        np.add.at(grad, self.pairs[:, 0], weight * di)
        np.add.at(grad, self.pairs[:, 1], weight * dj)


def test_jit_guard_on_a_term_retraces_and_stays_right(backend: str) -> None:
    model = TanhPairs.make(7)
    i0, j0 = model.pairs[0]

    def loss(v: list[sa.Value]) -> sa.Value:
        terms = model.terms(v)
        if terms[0] > 0.5:                    # a Python branch on one term: a guard
            extra = 3.0 * terms[1]
        else:
            extra = sa.sin(v[0]) * v[1]
        return sa.sum(terms) + extra

    def oracle(x: np.ndarray) -> tuple[float, np.ndarray, bool]:
        t, di, dj = model.terms_np(x)
        grad = np.zeros(model.n)
        model.scatter(grad, 1.0, di, dj)
        if t[0] > 0.5:
            value = float(np.sum(t) + 3.0 * t[1])
            grad[model.pairs[1, 0]] += 3.0 * di[1]
            grad[model.pairs[1, 1]] += 3.0 * dj[1]
        else:
            value = float(np.sum(t) + np.sin(x[0]) * x[1])
            grad[0] += np.cos(x[0]) * x[1]
            grad[1] += np.sin(x[0])
        return value, grad, bool(t[0] > 0.5)

    vg = sa.value_and_grad(loss, backend=backend)
    rng = np.random.default_rng(8)

    def point(big: bool) -> np.ndarray:
        x = rng.uniform(-1.0, 1.0, model.n)
        x[i0] = x[j0] = 1.2 if big else 0.1      # tanh(u)^2 > 0.5 or < 0.5
        return x

    sides = [True, False, True, False, True]
    for k, big in enumerate(sides):
        x = point(big)
        value, grad = vg(x)
        expected_value, expected_grad, side = oracle(x)
        assert side == big
        assert value == pytest.approx(expected_value, rel=1e-13), (k, big)
        assert_grad_close(grad, expected_grad, 1e-12, f"call {k}, big={big}")
        assert vg.n_specializations == min(k + 1, 2)   # one trace per side, then reuse
        (f, *_) = vg.specializations(x)
        assert [r.rows for r in f.stats().row_kernels] == [600], f.stats()


@dataclass
class Chain:
    """``sum_i w_i (sqrt((x_i - x_{i+1})^2 + 1) - 1)^2 + sum_i a_i/2 (x_i - t_i)^2``:
    strictly convex, so one minimum; numpy value and gradient by hand."""

    w: np.ndarray
    a: np.ndarray
    t: np.ndarray

    @classmethod
    def make(cls, seed: int, n: int = 400) -> Chain:
        rng = np.random.default_rng(seed)
        return cls(rng.uniform(0.5, 2.0, n - 1), rng.uniform(0.5, 1.5, n),
                   np.cumsum(rng.normal(size=n)))

    def loss(self, xs: Sequence[sa.Value]) -> sa.Value:
        n = len(xs)
        chain = [(sa.sqrt((xs[i] - xs[i + 1]) ** 2 + 1.0) - 1.0) ** 2 * w
                 for i, w in zip(range(n - 1), self.w.tolist())]
        anchors = [0.5 * a * (xs[i] - t) ** 2
                   for i, (a, t) in enumerate(zip(self.a.tolist(), self.t.tolist()))]
        return sa.sum(chain + anchors)

    def loss_np(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        d = x[:-1] - x[1:]
        s = np.sqrt(d * d + 1.0)
        value = np.sum(self.w * (s - 1.0) ** 2) + np.sum(0.5 * self.a * (x - self.t) ** 2)
        g = 2.0 * self.w * (s - 1.0) * d / s
        grad = self.a * (x - self.t)
        grad[:-1] += g
        grad[1:] -= g
        return float(value), grad


def test_lbfgs_on_a_structured_loss_matches_scipy(backend: str) -> None:
    optimize = pytest.importorskip("scipy.optimize")
    problem = Chain.make(9)
    n = len(problem.a)
    xs = _leaves(np.zeros(n), requires_grad=True)
    f = sa.compile(problem.loss(xs), xs, backend=backend)
    assert [(r.rows, r.instructions) for r in f.stats().row_kernels] == [(n - 1, 7), (n, 3)]
    result = sa.minimize(f, xs, method="lbfgs", gradient_tolerance=1e-10, ftol=1e-15,
                         max_iterations=1000)
    reference = optimize.minimize(problem.loss_np, np.zeros(n), jac=True, method="L-BFGS-B",
                                  options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 1000})
    assert reference.success
    # both stop on the relative decrease of f, with |g| about 1e-7 (the minimum is
    # 0.5-strongly convex: x within about 2|g| of it)
    assert np.max(np.abs(problem.loss_np(result.x)[1])) < 1e-6
    assert np.max(np.abs(reference.jac)) < 1e-6
    np.testing.assert_allclose(result.x, reference.x, atol=4e-6)
    assert result.fun == pytest.approx(reference.fun, rel=1e-12)
    assert [v.data for v in xs] == result.x.tolist()


# --------------------------------------------------------------------------- 7. inputs


def test_runtime_inputs_inside_terms(backend: str) -> None:
    rng = np.random.default_rng(10)
    n_data, n = 400, 50
    # a curve every row reads in full (the same params in every row) and a per-row
    # residual of one param, each with its data point as runtime inputs; and terms of
    # inputs only (no params: nothing to scatter)
    a, b, c = _leaves([1.0, 0.5, 0.0])
    xs = _leaves(rng.normal(size=n))
    t = _leaves(np.linspace(0.0, 4.0, n_data))
    y = _leaves(rng.normal(size=n_data))
    owner = rng.integers(0, n, size=n_data)
    curve = [(a * sa.exp(-b * tk) + c - yk) ** 2 for tk, yk in zip(t, y)]
    local = [sa.log(1.0 + (xs[k] - yk) ** 2) * sa.cos(tk)
             for k, tk, yk in zip(owner.tolist(), t, y)]
    data_only = [sa.sin(tk * yk) ** 2 for tk, yk in zip(t, y)]
    loss = sa.sum(curve + local + data_only)
    params = [a, b, c, *xs]
    f = sa.compile(loss, params, inputs=[*t, *y], backend=backend)
    assert sorted((r.rows, r.slots) for r in f.stats().row_kernels) == \
        [(n_data, 0), (n_data, 1), (n_data, 3)]
    structure, position = sum_node_terms(loss, params, [*t, *y])
    for g in structure.groups:
        # each row reads its own data point: t_k (input k) and y_k (input n_data + k)
        k = np.array([position[int(r)][0] % n_data for r in g.roots])
        assert np.array_equal(np.sort(g.input_index, axis=1),
                              np.stack([k, n_data + k], axis=1))
        if g.param_index.shape[1] == 3:          # the curve: a, b, c in every row
            assert g.uniform_params
            assert sorted(g.param_index[0].tolist()) == [0, 1, 2]
        if g.param_index.shape[1] == 1:
            assert np.array_equal(g.param_index[:, 0], 3 + owner[k])

    def oracle(p: np.ndarray, tv: np.ndarray, yv: np.ndarray) -> tuple[float, np.ndarray]:
        pa, pb, pc, x = p[0], p[1], p[2], p[3:]
        e = np.exp(-pb * tv)
        r = pa * e + pc - yv
        d = x[owner] - yv
        value = np.sum(r * r) + np.sum(np.log(1.0 + d * d) * np.cos(tv)) \
            + np.sum(np.sin(tv * yv) ** 2)
        grad = np.zeros(3 + n)
        grad[0] = np.sum(2 * r * e)
        grad[1] = np.sum(2 * r * pa * e * -tv)
        grad[2] = np.sum(2 * r)
        np.add.at(grad, 3 + owner, 2 * d / (1.0 + d * d) * np.cos(tv))
        return float(value), grad

    for _ in range(3):
        p = np.concatenate([[rng.uniform(0.5, 2), rng.uniform(0.1, 1), rng.normal()],
                            rng.normal(size=n)])
        tv, yv = rng.uniform(0.0, 4.0, n_data), rng.normal(size=n_data)
        value, grad = f.value_and_grad(p, inputs=np.concatenate([tv, yv]))
        expected_value, expected_grad = oracle(p, tv, yv)
        assert value == pytest.approx(expected_value, rel=1e-12)
        assert_grad_close(grad, expected_grad, 1e-11, "inputs")
        assert f(p, inputs=np.concatenate([tv, yv])) == value
    # inputs=None: the input leaves' current data
    p = np.concatenate([[1.5, 0.3, 0.2], rng.normal(size=n)])
    value, grad = f.value_and_grad(p)
    expected_value, expected_grad = oracle(p, np.array([v.data for v in t]),
                                           np.array([v.data for v in y]))
    assert value == pytest.approx(expected_value, rel=1e-12)
    assert_grad_close(grad, expected_grad, 1e-11, "inputs=None")


# --------------------------------------------------------------------------- 8. pickle, threads


def test_pickle_round_trip_keeps_the_structure_and_the_results(backend: str) -> None:
    mesh = make_mesh()
    rng = np.random.default_rng(11)
    traced_at, *points = mesh_points(mesh, rng, 3)
    p = _leaves(traced_at)
    f = sa.compile(mesh.energy(p), p, backend=backend)
    f.value_and_grad(points[0])            # kernels built (and bound) before pickling
    g = pickle.loads(pickle.dumps(f))
    assert g.backend == f.backend and g.stats().row_kernels == f.stats().row_kernels
    assert [leaf.data for leaf in g.params] == traced_at.tolist()
    for x in points:
        value, grad = f.value_and_grad(x)
        value2, grad2 = g.value_and_grad(x)
        assert_bitwise(value2, value)
        assert np.array_equal(grad2, grad)
        assert_bitwise(g(x), value)
        expected_value, expected_grad = mesh.energy_np(x)
        assert value2 == pytest.approx(expected_value, rel=1e-12)
        assert_grad_close(grad2, expected_grad, 1e-11)


def test_threads_give_the_serial_results(backend: str) -> None:
    mesh = make_mesh()
    rng = np.random.default_rng(12)
    traced_at, *points = mesh_points(mesh, rng, 9)
    p = _leaves(traced_at)
    f = sa.compile(mesh.energy(p), p, backend=backend)
    assert f.stats().row_kernels
    serial = [f.value_and_grad(x) for x in points]
    values = [f(x) for x in points]
    start = threading.Barrier(4)
    results: dict[int, list[tuple[float, np.ndarray, float]]] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            start.wait()
            mine = points[2 * k:2 * k + 2]
            out = []
            for _ in range(5):
                for x in mine:
                    value, grad = f.value_and_grad(x)
                    out.append((value, grad.copy(), f(x)))
            results[k] = out
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for k in range(4):
        for m, (value, grad, forward) in enumerate(results[k]):
            q = 2 * k + m % 2
            assert_bitwise(value, serial[q][0], f"thread {k}")
            assert np.array_equal(grad, serial[q][1]), f"thread {k}"
            assert_bitwise(forward, values[q], f"thread {k}")
    # and the serial results are right
    for x, (value, grad) in zip(points, serial):
        expected_value, expected_grad = mesh.energy_np(x)
        assert value == pytest.approx(expected_value, rel=1e-12)
        assert_grad_close(grad, expected_grad, 1e-11)


def test_functions_sharing_row_kernels_keep_their_own_tables(backend: str) -> None:
    # two meshes of other sizes and rest lengths: the same row programs (the kernel
    # cache gives both the same row kernels), other index tables and per-row data
    meshes = [make_mesh(10, 10, seed=1), make_mesh(12, 9, seed=2)]
    rng = np.random.default_rng(16)
    functions = []
    for mesh in meshes:
        p = _leaves(mesh.verts.ravel())
        functions.append(sa.compile(mesh.energy(p), p, backend=backend))
    assert functions[0].stats().row_kernels[:2] != functions[1].stats().row_kernels[:2]
    for _ in range(3):            # interleaved calls
        for mesh, f in zip(meshes, functions):
            x = mesh_points(mesh, rng, 1)[0]
            value, grad = f.value_and_grad(x)
            expected_value, expected_grad = mesh.energy_np(x)
            assert value == pytest.approx(expected_value, rel=1e-12)
            assert_grad_close(grad, expected_grad, 1e-11)


def test_bound_and_batched_calls(backend: str) -> None:
    mesh = make_mesh()
    rng = np.random.default_rng(14)
    traced_at, *points = mesh_points(mesh, rng, 4)
    p = _leaves(traced_at)
    f = sa.compile(mesh.energy(p), p, backend=backend)
    assert f.stats().row_kernels
    expected = [mesh.energy_np(x) for x in points]
    # bind: fixed buffers, updated in place
    x, grad, value = points[0].copy(), np.zeros(mesh.n), np.zeros(1)
    step = f.bind(x, grad, value=value)
    for point, (e_value, e_grad) in zip(points, expected):
        x[:] = point
        step()
        assert value[0] == pytest.approx(e_value, rel=1e-12)
        assert_grad_close(grad, e_grad, 1e-11, "bind")
    # batches: one row per point
    X = np.array(points)
    values = f.batch_values(X)
    batch_values, J = f.batch_jacobian(X)
    for k, (e_value, e_grad) in enumerate(expected):
        assert float(values.ravel()[k]) == pytest.approx(e_value, rel=1e-12)
        assert_bitwise(float(values.ravel()[k]), f(points[k]))
        assert_bitwise(float(batch_values.ravel()[k]), f(points[k]))
        assert_grad_close(J.reshape(len(points), -1)[k], e_grad, 1e-11, "batch_jacobian")
    _, jac = f.jacobian(points[1])
    assert_grad_close(jac.ravel(), expected[1][1], 1e-11, "jacobian")


@pytest.fixture
def disk_cache_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh disk cache in use, empty in-memory caches around the test (as in
    test_hessian.py)."""
    from scalar_autograd.runtime import disk_cache
    from scalar_autograd.runtime.cache import KERNELS

    monkeypatch.delenv(disk_cache.ENV_VAR, raising=False)
    saved = disk_cache._configured
    sa.set_cache_dir(tmp_path / "kernels")
    KERNELS.clear()
    yield tmp_path / "kernels"
    KERNELS.clear()
    disk_cache._configured = saved


def test_structured_kernels_load_from_the_disk_cache(backend: str, disk_cache_dir: Any
                                                     ) -> None:
    from scalar_autograd.runtime.cache import KERNELS

    mesh = make_mesh()
    rng = np.random.default_rng(15)
    traced_at, *points = mesh_points(mesh, rng, 3)

    def run() -> tuple[Any, list[tuple[float, np.ndarray]], list[float]]:
        p = _leaves(traced_at)
        f = sa.compile(mesh.energy(p), p, backend=backend)
        return f.stats(), [f.value_and_grad(x) for x in points], [f(x) for x in points]

    stats, results, values = run()
    assert stats.row_kernels
    KERNELS.clear()                  # the second compile finds only the disk cache
    stats2, results2, values2 = run()
    assert stats2.row_kernels == stats.row_kernels
    for (value, grad), (value2, grad2), x in zip(results, results2, points):
        assert_bitwise(value2, value)
        assert np.array_equal(grad2, grad)
        e_value, e_grad = mesh.energy_np(x)
        assert value2 == pytest.approx(e_value, rel=1e-12)
        assert_grad_close(grad2, e_grad, 1e-11)
    assert [bits(v) for v in values2] == [bits(v) for v in values]


# --------------------------------------------------------------------------- 9. hessian


def test_hessian_of_a_structured_function(backend: str) -> None:
    rng = np.random.default_rng(13)
    n = 22
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    cw = rng.uniform(0.5, 1.5, size=(len(pairs), 2)).tolist()

    def build(xs: list[sa.Value]) -> sa.Value:
        return sa.sum([sa.sin(xs[i] * c - xs[j]) ** 2 * w for (i, j), (c, w) in zip(pairs, cw)])

    xs = _leaves(rng.normal(size=n))
    f = sa.compile(build(xs), xs, backend=backend)
    assert [r.rows for r in f.stats().row_kernels] == [len(pairs)]
    x = rng.normal(size=n)
    H = f.hessian(x)
    assert np.array_equal(H, H.T)
    # central differences of the (structured) gradient
    h = 1e-5
    fd = np.array([(f.value_and_grad(x + h * e)[1] - f.value_and_grad(x - h * e)[1]) / (2 * h)
                   for e in np.eye(n)])
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-6 * np.max(np.abs(fd)))
    # and by hand: s = sin(u), u = c x_i - x_j, term w s^2: d2/du2 = 2 w cos(2u)
    expected = np.zeros((n, n))
    for (i, j), (c, w) in zip(pairs, cw):
        k = 2.0 * w * np.cos(2.0 * (x[i] * c - x[j]))
        expected[i, i] += k * c * c
        expected[j, j] += k
        expected[i, j] -= k * c
        expected[j, i] -= k * c
    np.testing.assert_allclose(H, expected, rtol=1e-12, atol=1e-12 * np.max(np.abs(expected)))
    v = rng.normal(size=n)
    np.testing.assert_allclose(f.hvp(x, v), expected @ v, rtol=1e-11,
                               atol=1e-11 * np.max(np.abs(expected @ v)))
    value, grad, hess = f.value_grad_hessian(x)
    assert_bitwise(value, f(x))
    assert_grad_close(grad, f.value_and_grad(x)[1], 1e-12)
    assert np.array_equal(hess, H)
