"""Random Python programs with control flow through ``sa.jit`` / ``sa.grad`` /
``sa.value_and_grad`` / ``sa.jacobian``, in the spirit of JAX's ``check_grads``.

A program is data (a small AST): a few variables, arithmetic and bounded elementary
functions, ``if``/``else`` on comparisons of traced values, bounded data-dependent
``while`` loops (``while cond and k < cap``), builtin ``min``/``max``/``sorted``,
``and``/``or``/``not`` and conditional expressions. One interpreter, generic over the
number type, runs it three ways:

* on Python floats with ``math`` (the value oracle; no ``sa`` involved),
* on ``mpmath.mpf`` at 30 digits (the derivative oracle: central differences with a
  1e-10 step, truncation and rounding errors ~1e-20),
* on ``Value`` s inside ``sa.jit`` and the transforms (the code under test).

Every example is checked on every backend (interpreter, python, llvm native code and
the llvm tape VM) at a dozen points other than the traced one. Values are compared
where no comparison the program made is within 1e-9 (times the size of the numbers
involved) of its boundary, derivatives where none is within 1e-6 and the branch
pattern is the same at x +- h: differences across a kink are not derivatives. The
oracle also records the branch pattern of each point, which bounds the number of
specialisations, and which comparisons saw both outcomes: the runs must exercise
both sides of the branches, or they prove little.
"""

from __future__ import annotations

import math
import operator

import mpmath
import numpy as np
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import scalar_autograd as sa

BACKENDS = ("interpreter", "python", "llvm", "vm")
N_POINTS = 12          # points per example (the first is where the trace happens)
N_DERIV_POINTS = 6     # of which at most this many get the mpmath derivative check
VALUE_MARGIN = 1e-9    # relative distance from a branch boundary for value checks
DERIV_MARGIN = 1e-6    # absolute distance from a boundary or kink for derivative checks
MAX_SCALE = 1e8        # points whose intermediates exceed this are not checked
MP_DPS, MP_STEP = 30, 1e-10

_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --------------------------------------------------------------------------- the AST

UNARY = {
    "sin": lambda m, a: m.sin(a),
    "cos": lambda m, a: m.cos(a),
    "tanh": lambda m, a: m.tanh(a),
    "exp_tanh": lambda m, a: m.exp(m.tanh(a)),
    "exp_neg_sq": lambda m, a: m.exp(-(a * a)),
    "sqrt1": lambda m, a: m.sqrt(a * a + 1.0),
    "log1": lambda m, a: m.log(a * a + 1.0),
    "atan": lambda m, a: m.atan(a),
    "neg": lambda m, a: -a,
    "abs": lambda m, a: abs(a),
    "sq": lambda m, a: a * a,
}
BINARY = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": lambda a, b: a / (1.0 + b * b),
}
COMPARE = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}


class Run:
    """One evaluation of a program with the number namespace ``m``.

    With ``record`` (the oracles: floats or mpf), every comparison the program makes,
    builtin min/max/sorted included, is logged with its outcome and its distance from
    the boundary; ``abs`` logs its distance from the kink; ``scale`` is the largest
    magnitude of any intermediate. With Values (``record`` false) the comparisons are
    Values whose bool() Python asks: the guards under test.
    """

    def __init__(self, m, record: bool) -> None:
        self.m = m
        self.record = record
        self.pattern: list = []       # (node id, outcome) in evaluation order
        self.margin = math.inf        # nearest boundary of a comparison (absolute)
        self.kink = math.inf          # nearest boundary or kink, abs included
        self.scale = 1.0

    def _log(self, node, outcome, distance) -> None:
        self.pattern.append((id(node), outcome))
        d = float(abs(distance))
        d = 0.0 if d != d else d       # a comparison with nan: never a safe point
        self.margin = min(self.margin, d)
        self.kink = min(self.kink, d)

    def expr(self, e, env):
        kind = e[0]
        if kind == "var":
            v = env[e[1]]
        elif kind == "const":
            v = e[1]
        elif kind == "un":
            a = self.expr(e[2], env)
            if self.record and e[1] == "abs":
                self.kink = min(self.kink, float(abs(a)))
            v = UNARY[e[1]](self.m, a)
        elif kind == "bin":
            v = BINARY[e[1]](self.expr(e[2], env), self.expr(e[3], env))
        elif kind in ("min", "max"):
            a, b = self.expr(e[1], env), self.expr(e[2], env)
            v = min(a, b) if kind == "min" else max(a, b)  # one bool() of b < a / b > a
            if self.record:
                self._log(e, b < a if kind == "min" else b > a, a - b)
        elif kind == "mid":
            items = [self.expr(t, env) for t in e[1:]]
            v = sorted(items)[1]
            if self.record:
                order = tuple(sorted(range(3), key=lambda i: items[i]))
                self._log(e, order, min(abs(items[i] - items[j])
                                        for i, j in ((0, 1), (0, 2), (1, 2))))
        elif kind == "ifexp":
            v = self.expr(e[2], env) if self.cond(e[1], env) else self.expr(e[3], env)
        else:
            raise AssertionError(e)
        if self.record:
            size = float(abs(v))
            self.scale = math.inf if size != size else max(self.scale, size)
        return v

    def cond(self, c, env):
        kind = c[0]
        if kind == "cmp":
            a, b = self.expr(c[2], env), self.expr(c[3], env)
            r = COMPARE[c[1]](a, b)
            if self.record:
                self._log(c, r, a - b)
            return r
        if kind == "and":
            return self.cond(c[1], env) and self.cond(c[2], env)
        if kind == "or":
            return self.cond(c[1], env) or self.cond(c[2], env)
        if kind == "not":
            return not self.cond(c[1], env)
        raise AssertionError(c)

    def block(self, stmts, env) -> None:
        for s in stmts:
            if s[0] == "assign":
                env[s[1]] = self.expr(s[2], env)
            elif s[0] == "if":
                self.block(s[2] if self.cond(s[1], env) else s[3], env)
            elif s[0] == "while":
                k = 0
                while self.cond(s[1], env) and k < s[3]:
                    self.block(s[2], env)
                    k += 1
            else:
                raise AssertionError(s)

    def program(self, prog, inputs):
        n_inputs, local_init, body, outputs = prog
        env = list(inputs) + list(local_init)
        self.block(body, env)
        return [self.expr(o, env) for o in outputs]


# --------------------------------------------------------------------------- generation

_CONST = st.one_of(st.sampled_from([0.0, 0.5, -0.5, 1.0, -1.0, 1.5, 2.0]),
                   st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False))


@st.composite
def exprs(draw, n_slots: int, depth: int):
    if depth <= 0:
        if draw(st.integers(0, 3)):
            return ("var", draw(st.integers(0, n_slots - 1)))
        return ("const", draw(_CONST))
    kind = draw(st.sampled_from(["var", "var", "const", "un", "un", "un", "bin", "bin",
                                 "bin", "min", "max", "mid", "ifexp"]))
    sub = exprs(n_slots, depth - 1)
    if kind == "var":
        return ("var", draw(st.integers(0, n_slots - 1)))
    if kind == "const":
        return ("const", draw(_CONST))
    if kind == "un":
        return ("un", draw(st.sampled_from(sorted(UNARY))), draw(sub))
    if kind == "bin":
        return ("bin", draw(st.sampled_from(sorted(BINARY))), draw(sub), draw(sub))
    if kind in ("min", "max"):
        return (kind, draw(sub), draw(sub))
    if kind == "mid":
        return ("mid", draw(sub), draw(sub), draw(sub))
    return ("ifexp", draw(conds(n_slots, 0)), draw(sub), draw(sub))


@st.composite
def conds(draw, n_slots: int, depth: int):
    kind = draw(st.sampled_from(["cmp"] * 4 + (["and", "or", "not"] if depth > 0 else [])))
    if kind == "cmp":
        lhs = draw(exprs(n_slots, 1))
        rhs = draw(st.one_of(st.tuples(st.just("const"), _CONST), exprs(n_slots, 1)))
        return ("cmp", draw(st.sampled_from(sorted(COMPARE))), lhs, rhs)
    if kind == "not":
        return ("not", draw(conds(n_slots, depth - 1)))
    return (kind, draw(conds(n_slots, depth - 1)), draw(conds(n_slots, depth - 1)))


@st.composite
def statements(draw, n_slots: int, depth: int, control: bool = False):
    """A statement; ``control``: an if or a while."""
    kinds = ["if", "while"] if control else ["assign", "assign", "assign"] + \
        (["if", "while"] if depth > 0 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "assign":
        return ("assign", draw(st.integers(0, n_slots - 1)), draw(exprs(n_slots, 2)))
    block = st.lists(statements(n_slots, depth - 1), min_size=1, max_size=2)
    if kind == "if":
        return ("if", draw(conds(n_slots, 1)), draw(block),
                draw(st.lists(statements(n_slots, depth - 1), max_size=2)))
    return ("while", draw(conds(n_slots, 1)), draw(block), draw(st.integers(1, 4)))


@st.composite
def programs(draw, n_outputs: int = 1):
    """(n_inputs, initial locals, body, outputs): at least one if or while."""
    n_inputs = draw(st.integers(1, 3))
    local_init = draw(st.lists(_CONST, min_size=1, max_size=2))
    n_slots = n_inputs + len(local_init)
    body = draw(st.lists(statements(n_slots, 1), max_size=3))
    body.insert(draw(st.integers(0, len(body))), draw(statements(n_slots, 1, control=True)))
    outputs = [draw(exprs(n_slots, 2)) for _ in range(n_outputs)]
    return n_inputs, tuple(local_init), tuple(body), tuple(outputs)


def source(prog) -> str:
    """The program as Python source (shown by hypothesis for a failing example)."""
    n_inputs, local_init, body, outputs = prog

    def e(x) -> str:
        kind = x[0]
        if kind == "var":
            return f"v{x[1]}"
        if kind == "const":
            return repr(x[1])
        if kind == "un":
            return f"{x[1]}({e(x[2])})"
        if kind == "bin":
            return f"({e(x[2])} {x[1]} {e(x[3])})"
        if kind in ("min", "max"):
            return f"{kind}({e(x[1])}, {e(x[2])})"
        if kind == "mid":
            return f"sorted([{', '.join(e(t) for t in x[1:])}])[1]"
        return f"({e(x[2])} if {c(x[1])} else {e(x[3])})"

    def c(x) -> str:
        if x[0] == "cmp":
            return f"{e(x[2])} {x[1]} {e(x[3])}"
        if x[0] == "not":
            return f"not ({c(x[1])})"
        return f"({c(x[1])} {x[0]} {c(x[2])})"

    def block(stmts, indent: str) -> list[str]:
        lines = []
        for st_ in stmts:
            if st_[0] == "assign":
                lines.append(f"{indent}v{st_[1]} = {e(st_[2])}")
            elif st_[0] == "if":
                lines += [f"{indent}if {c(st_[1])}:", *block(st_[2], indent + "    ")]
                if st_[3]:
                    lines += [f"{indent}else:", *block(st_[3], indent + "    ")]
            else:
                lines += [f"{indent}k = 0", f"{indent}while {c(st_[1])} and k < {st_[3]}:",
                          *block(st_[2], indent + "    "), f"{indent}    k += 1"]
        return lines

    head = [f"def f({', '.join(f'v{i}' for i in range(n_inputs))}):"]
    head += [f"    v{n_inputs + i} = {c0!r}" for i, c0 in enumerate(local_init)]
    tail = [f"    return {', '.join(e(o) for o in outputs)}"]
    return "\n".join(head + block(body, "    ") + tail)


def _traced(prog, convention: str, scalar: bool):
    """The program as a Python function of floats (``floats``) or of one array."""
    def out(results):
        return results[0] if scalar else results

    if convention == "floats":
        def fn(*xs):
            return out(Run(sa, False).program(prog, xs))
    else:
        def fn(v):
            return out(Run(sa, False).program(prog, v))
    return fn


# --------------------------------------------------------------------------- oracles


class Point:
    """The float oracle at one point: outputs, branch pattern, margins, scale."""

    def __init__(self, prog, x: list[float]) -> None:
        self.x = x
        run = Run(math, True)
        try:
            self.outputs = [float(v) for v in run.program(prog, x)]
        except (ValueError, OverflowError, ZeroDivisionError):  # e.g. math.sin(inf)
            self.outputs = None
        self.pattern = tuple(run.pattern)
        self.scale = max([run.scale] + [abs(v) for v in self.outputs or []])
        self.valid = self.outputs is not None and all(map(math.isfinite, self.outputs)) \
            and self.scale < MAX_SCALE
        self.value_safe = self.valid and run.margin > VALUE_MARGIN * self.scale
        self.deriv_safe = self.valid and run.kink > DERIV_MARGIN

    def mp_jacobian(self, prog) -> np.ndarray | None:
        """d outputs / d inputs by central differences at MP_DPS digits, or None when
        the branch pattern changes within the step."""
        with mpmath.workdps(MP_DPS):
            x = [mpmath.mpf(v) for v in self.x]
            base = Run(mpmath, True)
            base.program(prog, x)
            if tuple(base.pattern) != self.pattern:
                return None
            cols = []
            for i in range(len(x)):
                h = mpmath.mpf(MP_STEP) * max(1, abs(x[i]))
                sides = []
                for sign in (1, -1):
                    xi = list(x)
                    xi[i] += sign * h
                    run = Run(mpmath, True)
                    sides.append(run.program(prog, xi))
                    if tuple(run.pattern) != self.pattern:
                        return None
                cols.append([float((a - b) / (2 * h)) for a, b in zip(*sides)])
        return np.array(cols).T   # (outputs, inputs)


def _close(actual, expected, rel: float, abs_tol: float, what: str) -> None:
    a = np.atleast_1d(np.asarray(actual, dtype=float)).ravel()
    e = np.atleast_1d(np.asarray(expected, dtype=float)).ravel()
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    bad = np.abs(a - e) > np.maximum(rel * np.abs(e), abs_tol)
    assert not bad.any(), f"{what}: actual {a.tolist()} expected {e.tolist()}"


def _deriv_tol(p: Point, expected: np.ndarray) -> float:
    """The absolute tolerance of a derivative: 1e-10 of the numbers involved."""
    return 1e-10 * max(p.scale, float(np.max(np.abs(expected), initial=1.0)))


def _points(prog, seed: int) -> list[Point]:
    rng = np.random.default_rng(seed)
    n = prog[0]
    xs = rng.uniform(-2.2, 2.2, (N_POINTS, n))
    xs[1::4] = np.round(xs[1::4] * 4) / 4   # some quarter-integers: ties with constants
    return [Point(prog, row.tolist()) for row in xs]


def _on_backend(backend: str, check) -> None:
    """Run ``check(name)`` with ``name`` a backend (``"vm"``: the tape VM at any size)."""
    check(backend)


def _args(convention: str, x: list[float]):
    return tuple(x) if convention == "floats" else (np.array(x),)


def _batch_args(convention: str, X: np.ndarray):
    return tuple(X.T.copy()) if convention == "floats" else (X,)


def _grad_array(g) -> np.ndarray:
    return np.array(g, dtype=float).ravel()


def _both_sides(points: list[Point]) -> tuple[int, int]:
    """(comparison sites seen, sites that saw more than one outcome) over the points."""
    outcomes: dict[int, set] = {}
    for p in points:
        for node, outcome in p.pattern:
            outcomes.setdefault(node, set()).add(outcome)
    return len(outcomes), sum(len(v) > 1 for v in outcomes.values())


# --------------------------------------------------------------------------- the tests


def test_random_scalar_programs_values_and_gradients_on_every_backend():
    stats = {"examples": 0, "multi_pattern": 0, "sites": 0, "both_sides": 0,
             "value_checks": 0, "deriv_checks": 0}

    @settings(max_examples=300, **_SETTINGS)
    @given(prog=programs(), seed=st.integers(0, 2**32 - 1),
           convention=st.sampled_from(["floats", "array"]))
    def run(prog, seed, convention):
        note(source(prog))
        points = [p for p in _points(prog, seed) if p.valid]
        if not points:
            return
        n = prog[0]
        argnums = tuple(range(n)) if convention == "floats" else 0
        fn = _traced(prog, convention, scalar=True)
        derivs = []
        for p in points:
            if len(derivs) < N_DERIV_POINTS and p.deriv_safe:
                jac = p.mp_jacobian(prog)
                if jac is not None:
                    derivs.append((p, jac[0]))
        patterns = {p.pattern for p in points}
        safe_patterns = {p.pattern for p in points if p.value_safe}

        def check(backend: str) -> None:
            f = sa.jit(fn, max_specializations=64, backend=backend)
            vg = sa.value_and_grad(fn, argnums=argnums, max_specializations=64,
                                   backend=backend)
            g = sa.grad(fn, argnums=argnums, max_specializations=64, backend=backend)
            for p in points:  # the first point is where the first trace happens
                args = _args(convention, p.x)
                value = f(*args)
                v2, grad = vg(*args)
                assert type(value) is float and type(v2) is float
                if convention == "floats":
                    assert isinstance(grad, tuple) and len(grad) == n
                    assert all(type(t) is float for t in grad)
                else:
                    assert grad.shape == (n,)
                if p.value_safe:
                    tol = 1e-12 * p.scale
                    _close(value, p.outputs[0], 1e-12, tol, f"{backend} f{p.x}")
                    _close(v2, p.outputs[0], 1e-12, tol, f"{backend} vg{p.x}")
                    stats["value_checks"] += 1
            for p, expected in derivs:
                args = _args(convention, p.x)
                tol = _deriv_tol(p, expected)
                for t, what in ((vg(*args)[1], "value_and_grad"), (g(*args), "grad")):
                    _close(_grad_array(t), expected, 1e-10, tol,
                           f"{backend} {what} at {p.x}")
                stats["deriv_checks"] += 1
            # one specialisation per branch pattern met (a pattern met only within
            # rounding of a boundary may be served by a neighbour's)
            assert len(safe_patterns) <= f.n_specializations <= len(patterns), \
                (f.n_specializations, len(safe_patterns), len(patterns))
            # every row of a batch by a specialisation whose guards hold for it
            X = np.array([p.x for p in points])
            batch = f.batch(*_batch_args(convention, X))
            values, grads = vg.batch(*_batch_args(convention, X))
            grads = np.stack(grads, axis=1) if convention == "floats" else grads
            assert batch.shape == values.shape == (len(points),) and grads.shape == X.shape
            for i, p in enumerate(points):
                if p.value_safe:
                    tol = 1e-12 * p.scale
                    _close(batch[i], p.outputs[0], 1e-12, tol, f"{backend} batch row {i}")
                    _close(values[i], p.outputs[0], 1e-12, tol, f"{backend} vg.batch {i}")
            for p, expected in derivs:
                i = points.index(p)
                tol = _deriv_tol(p, expected)
                _close(grads[i], expected, 1e-10, tol, f"{backend} grad batch row {i}")

        for backend in BACKENDS:
            _on_backend(backend, check)
        stats["examples"] += 1
        stats["multi_pattern"] += len(patterns) > 1
        sites, both = _both_sides(points)
        stats["sites"] += sites
        stats["both_sides"] += both

    run()
    # the runs exercised branches: most examples met several branch patterns, and
    # a good share of the comparison sites saw both outcomes
    assert stats["examples"] >= 280, stats
    assert stats["multi_pattern"] >= 0.5 * stats["examples"], stats
    assert stats["both_sides"] >= 0.3 * stats["sites"], stats
    assert stats["deriv_checks"] >= 2 * stats["examples"], stats


def test_random_vector_programs_jacobians_on_every_backend():
    stats = {"examples": 0, "multi_pattern": 0, "deriv_checks": 0}

    @settings(max_examples=120, **_SETTINGS)
    @given(prog=st.integers(2, 3).flatmap(lambda m: programs(n_outputs=m)),
           seed=st.integers(0, 2**32 - 1), convention=st.sampled_from(["floats", "array"]))
    def run(prog, seed, convention):
        note(source(prog))
        points = [p for p in _points(prog, seed) if p.valid]
        if not points:
            return
        n, m = prog[0], len(prog[3])
        argnums = tuple(range(n)) if convention == "floats" else 0
        fn = _traced(prog, convention, scalar=False)
        derivs = []
        for p in points:
            if len(derivs) < N_DERIV_POINTS and p.deriv_safe:
                jac = p.mp_jacobian(prog)
                if jac is not None:
                    derivs.append((p, jac))

        def as_matrix(J) -> np.ndarray:
            """(m, n) from JAX's convention: a tuple of (m,) columns for float args."""
            if convention == "floats":
                assert isinstance(J, tuple) and len(J) == n
                assert all(np.shape(c) == (m,) for c in J)
                return np.stack(J, axis=-1)
            assert J.shape == (m, n)
            return J

        def check(backend: str) -> None:
            f = sa.jit(fn, max_specializations=64, backend=backend)
            J = sa.jacobian(fn, argnums=argnums, max_specializations=64, backend=backend)
            for p in points:
                args = _args(convention, p.x)
                values = f(*args)
                jac = as_matrix(J(*args))
                assert values.shape == (m,) and jac.shape == (m, n)
                if p.value_safe:
                    _close(values, p.outputs, 1e-12, 1e-12 * p.scale, f"{backend} f{p.x}")
            for p, expected in derivs:
                tol = _deriv_tol(p, expected)
                _close(as_matrix(J(*_args(convention, p.x))), expected, 1e-10, tol,
                       f"{backend} jacobian at {p.x}")
            X = np.array([p.x for p in points])
            batch = J.batch(*_batch_args(convention, X))
            batch = np.stack(batch, axis=-1) if convention == "floats" else batch
            assert batch.shape == (len(points), m, n)
            for p, expected in derivs:
                i = points.index(p)
                tol = _deriv_tol(p, expected)
                _close(batch[i], expected, 1e-10, tol, f"{backend} jacobian batch row {i}")

        for backend in BACKENDS:
            _on_backend(backend, check)
        stats["examples"] += 1
        stats["multi_pattern"] += len({p.pattern for p in points}) > 1
        stats["deriv_checks"] += len(derivs)

    run()
    assert stats["examples"] >= 110, stats
    assert stats["multi_pattern"] >= 0.5 * stats["examples"], stats
    assert stats["deriv_checks"] >= 2 * stats["examples"], stats
