"""Tests generated from the op table: eval and partials against mpmath, the algebra
discipline, special values, public spellings and the documented kink conventions."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest

import oracles
import scalar_autograd as sa
from scalar_autograd.ops import FLOATS, OPS, OPS_BY_NAME, VARIADIC, Algebra, Op

ULP = 2.0**-52
N_SAMPLES = 25
IDS = [op.name for op in OPS]


def n_args(op: Op) -> int:
    return 3 if op.arity == VARIADIC else op.arity


def domains(op: Op) -> tuple[tuple[float, float], ...]:
    return op.domain * 3 if op.arity == VARIADIC else op.domain


def sample_points(op: Op, n: int = N_SAMPLES) -> list[tuple[float, ...]]:
    rng = random.Random(f"points-{op.name}")
    return [tuple(rng.uniform(lo, hi) for lo, hi in domains(op)) for _ in range(n)]


def same_float(a: float, b: float) -> bool:
    """Bitwise-equal floats, treating every nan as equal and keeping the sign of zero."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


# --------------------------------------------------------------------------- the table


def test_every_op_has_an_oracle() -> None:
    missing = [op.name for op in OPS if op.name not in oracles.ORACLES]
    assert not missing, f"ops without an mpmath oracle in tests/oracles.py: {missing}"
    stale = sorted(set(oracles.ORACLES) - set(OPS_BY_NAME))
    assert not stale, f"oracles for ops that are not in the table: {stale}"


def test_table_rows_are_well_formed() -> None:
    assert len({op.name for op in OPS}) == len(OPS), "op names must be unique"
    for op in OPS:
        assert op.arity == VARIADIC or op.arity >= 1, op
        assert len(op.domain) == (1 if op.arity == VARIADIC else op.arity), op
        for lo, hi in op.domain:
            assert lo < hi, op
        assert op.doc and "\n" not in op.doc, op
        assert op.lower.kind in ("infix", "call", "expand"), op
        if op.lower.kind == "expand":
            assert callable(op.lower.expansion), op
        else:
            assert op.lower.symbol, op


# --------------------------------------------------------------------------- eval vs mpmath


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_eval_matches_mpmath(op: Op) -> None:
    failures = []
    for args in sample_points(op):
        got = op.eval(*args)
        ref = float(oracles.evaluate(op.name, args))
        # a few ulp of the result; reductions may cancel, so allow ulps of the inputs too
        floor = 4 * ULP * math.fsum(abs(a) for a in args) if op.arity == VARIADIC else 0.0
        if not abs(got - ref) <= 4 * ULP * abs(ref) + floor:
            failures.append(f"{op.name}{args}: eval {got!r}, mpmath {ref!r}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- partials vs mpmath


def expected_partial(op: Op, args: tuple[float, ...], i: int) -> float:
    convention = oracles.PARTIAL_CONVENTIONS.get((op.name, i))
    if convention is not None:
        return convention
    return float(oracles.partial(op.name, args, i))


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_partials_match_mpmath_derivative(op: Op) -> None:
    failures = []
    for args in sample_points(op):
        got = op.partials(FLOATS, *args, out=op.eval(*args))
        assert len(got) == n_args(op), f"{op.name} returned {len(got)} partials"
        for i in range(n_args(op)):
            ref = expected_partial(op, args, i)
            # 1 - out*out style rules lose a few digits near saturation; 1e-11 is still tight
            if not abs(got[i] - ref) <= 1e-11 * abs(ref) + 1e-13:
                failures.append(f"d{op.name}/darg{i} at {args}: rule {got[i]!r}, mpmath {ref!r}")
    assert not failures, "\n".join(failures)


def test_pow_exponent_partial_is_zero_by_convention() -> None:
    op = OPS_BY_NAME["pow"]
    for x, c in [(2.0, 3.0), (0.5, -1.5), (3.0, 0.25)]:
        assert op.partials(FLOATS, x, c, out=op.eval(x, c))[1] == 0.0
    # ... while pow_value differentiates its exponent: d/dy x**y = x**y log x
    op = OPS_BY_NAME["pow_value"]
    assert math.isclose(op.partials(FLOATS, 2.0, 3.0, out=8.0)[1], 8.0 * math.log(2.0))


# --------------------------------------------------------------------------- algebra discipline


class ForbiddenOperation(Exception):
    pass


def _forbidden(name: str) -> Callable[..., Any]:
    def raise_(*_: Any) -> Any:
        raise ForbiddenOperation(
            f"rule used Python's {name} on an algebra value; write it through the algebra m"
        )

    return raise_


class StrictFloat(float):
    """A float of an algebra that only supports ``+ - *`` and unary minus.

    ``/`` and ``**`` (which raise or go complex on floats), ``//``, ``%``, Python
    comparisons, ``bool()`` and ``abs()`` all raise: an IR builder or ``Value`` algebra
    cannot give them a meaning either.
    """

    __slots__ = ()

    def __add__(self, o: Any) -> StrictFloat:
        return StrictFloat(float(self) + float(o))

    def __radd__(self, o: Any) -> StrictFloat:
        return StrictFloat(float(o) + float(self))

    def __sub__(self, o: Any) -> StrictFloat:
        return StrictFloat(float(self) - float(o))

    def __rsub__(self, o: Any) -> StrictFloat:
        return StrictFloat(float(o) - float(self))

    def __mul__(self, o: Any) -> StrictFloat:
        return StrictFloat(float(self) * float(o))

    def __rmul__(self, o: Any) -> StrictFloat:
        return StrictFloat(float(o) * float(self))

    def __neg__(self) -> StrictFloat:
        return StrictFloat(-float(self))

    def __pos__(self) -> StrictFloat:
        return self

    __truediv__ = __rtruediv__ = _forbidden("/")
    __floordiv__ = __rfloordiv__ = _forbidden("//")
    __mod__ = __rmod__ = __divmod__ = __rdivmod__ = _forbidden("%")
    __pow__ = __rpow__ = _forbidden("**")
    __lt__ = __le__ = __gt__ = __ge__ = _forbidden("comparison")
    __eq__ = __ne__ = _forbidden("==")  # type: ignore[assignment]
    __hash__ = float.__hash__
    __bool__ = _forbidden("bool()")
    __abs__ = _forbidden("abs()")


def _strict(fn: Callable[..., float]) -> Callable[..., StrictFloat]:
    def call(*args: Any) -> StrictFloat:
        return StrictFloat(fn(*[float.__float__(a) for a in args]))

    return call


STRICT = Algebra("strict floats", {op.name: _strict(op.eval) for op in OPS})


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_rules_only_use_the_algebra(op: Op) -> None:
    for args in sample_points(op, 5):
        strict_args = [StrictFloat(a) for a in args]
        out = StrictFloat(op.eval(*args))
        strict = op.partials(STRICT, *strict_args, out=out)
        plain = op.partials(FLOATS, *args, out=float(out))
        # the rule computes the same numbers whatever algebra runs it
        assert [float(p) for p in strict] == [float(p) for p in plain], op.name
        if op.lower.expansion is not None:
            value = op.lower.expansion(STRICT, *strict_args)
            assert same_float(float(value), op.eval(*args)), op.name


def test_strict_float_really_forbids() -> None:
    x = StrictFloat(2.0)
    for bad in (lambda: x / 2.0, lambda: 2.0 / x, lambda: x**2, lambda: 2.0**x,
                lambda: x > 0, lambda: bool(x), lambda: abs(x), lambda: x % 2.0):
        with pytest.raises(ForbiddenOperation):
            bad()
    assert isinstance(x * 2.0 + 1.0 - x, StrictFloat)


# --------------------------------------------------------------------------- special values

SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 1e308, -1e308, 5e-324, 1.0, -2.5]


def _grid(k: int) -> list[tuple[float, ...]]:
    if k == 1:
        return [(a,) for a in SPECIAL]
    return [(a, *rest) for a in SPECIAL for rest in _grid(k - 1)]


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_special_values_never_raise(op: Op) -> None:
    for args in _grid(n_args(op)):
        try:
            out = op.eval(*args)
            partials = op.partials(FLOATS, *args, out=out)
            if op.lower.expansion is not None:
                op.lower.expansion(FLOATS, *args)
        except Exception as exc:  # noqa: BLE001 - the point is that nothing raises
            pytest.fail(f"{op.name}{args} raised {type(exc).__name__}: {exc}")
        assert isinstance(out, float), f"{op.name}{args} returned {type(out).__name__}"
        assert len(partials) == len(args)
        for p in partials:
            assert isinstance(p, float), f"{op.name}{args} partial {p!r} is not a float"


C99_CASES = [
    ("div", (1.0, 0.0), math.inf),
    ("div", (-1.0, 0.0), -math.inf),
    ("div", (1.0, -0.0), -math.inf),
    ("div", (0.0, 0.0), math.nan),
    ("log", (0.0,), -math.inf),
    ("log", (-1.0,), math.nan),
    ("log1p", (-1.0,), -math.inf),
    ("sqrt", (-1.0,), math.nan),
    ("sqrt", (-0.0,), -0.0),
    ("exp", (1000.0,), math.inf),
    ("exp", (-1000.0,), 0.0),
    ("expm1", (1000.0,), math.inf),
    ("sinh", (1000.0,), math.inf),
    ("sinh", (-1000.0,), -math.inf),
    ("cosh", (-1000.0,), math.inf),
    ("pow", (-8.0, 1.0 / 3.0), math.nan),
    ("pow", (0.0, -1.0), math.inf),
    ("pow", (-0.0, -1.0), -math.inf),
    ("pow", (0.0, -2.0), math.inf),
    ("pow", (10.0, 400.0), math.inf),
    ("pow", (-10.0, 401.0), -math.inf),
    ("pow", (math.nan, 0.0), 1.0),
    ("pow_value", (-8.0, 1.0 / 3.0), math.nan),
    ("pow_value", (0.0, -1.0), math.inf),
    ("round", (2.5,), 3.0),
    ("round", (-2.5,), -3.0),
    ("round", (0.5,), 1.0),
    ("round", (0.49999999999999994,), 0.0),
    ("round", (-0.4,), -0.0),
    ("round", (4503599627370497.0,), 4503599627370497.0),
    ("floor", (-0.5,), -1.0),
    ("ceil", (-0.5,), -0.0),
    ("trunc", (-2.7,), -2.0),
    ("sin", (math.inf,), math.nan),
    ("asin", (1.5,), math.nan),
    ("acos", (-1.5,), math.nan),
    ("tanh", (1000.0,), 1.0),
    ("sigmoid", (1000.0,), 1.0),
    ("sigmoid", (-1000.0,), 0.0),
    ("softplus", (1000.0,), 1000.0),
    ("softplus", (-1000.0,), 0.0),
    ("reciprocal", (0.0,), math.inf),
    ("reciprocal", (-0.0,), -math.inf),
    ("mod", (1.0, 0.0), math.nan),
    ("fmod", (1.0, 0.0), math.nan),
    ("fmod", (math.inf, 2.0), math.nan),
    ("min", (1.0, math.nan), math.nan),
    ("min", (math.nan, 1.0), math.nan),
    ("max", (1.0, math.nan), math.nan),
    ("max", (math.nan, 1.0), math.nan),
    ("relu", (math.nan,), math.nan),
    ("relu", (-0.0,), 0.0),
    ("sign", (-0.0,), -0.0),
    ("sign", (math.nan,), math.nan),
    ("sign", (-3.0,), -1.0),
    ("where", (math.nan, 1.0, 2.0), 1.0),
    ("where", (-0.0, 1.0, 2.0), 2.0),
    ("ne", (math.nan, math.nan), 1.0),
    ("eq", (math.nan, math.nan), 0.0),
    ("eq", (0.0, -0.0), 1.0),
]


@pytest.mark.parametrize(("name", "args", "expected"), C99_CASES,
                         ids=[f"{n}{a}" for n, a, _ in C99_CASES])
def test_c99_results(name: str, args: tuple[float, ...], expected: float) -> None:
    got = OPS_BY_NAME[name].eval(*args)
    assert same_float(got, expected), f"{name}{args} = {got!r}, C99 says {expected!r}"


MOD_A = [5.5, -5.5, 3.0, -3.0, 0.0, -0.0, 7.25, -7.25, 1e-300, -1e-300, 1e300, math.inf,
         math.nan, 0.1, -0.1]
MOD_B = [2.0, -2.0, 0.5, -0.5, 3.0, -3.0, 1e-300, -1e-300, math.inf, -math.inf, math.nan, 0.1]


def _python_mod(a: float, b: float) -> float:
    try:
        return a % b
    except ZeroDivisionError:
        return math.nan


def _python_fmod(a: float, b: float) -> float:
    try:
        return math.fmod(a, b)
    except ValueError:
        return math.nan


def test_mod_is_pythons_floored_modulo_for_every_sign_combination() -> None:
    for a in MOD_A:
        for b in MOD_B + [0.0, -0.0]:
            got = OPS_BY_NAME["mod"].eval(a, b)
            assert same_float(got, _python_mod(a, b)), (a, b, got, _python_mod(a, b))
            got = OPS_BY_NAME["fmod"].eval(a, b)
            assert same_float(got, _python_fmod(a, b)), (a, b, got, _python_fmod(a, b))


# --------------------------------------------------------------------------- public spelling


def _call_method(op: Op, args: tuple[float, ...]) -> sa.Value:
    values = [sa.Value(a) for a in args]
    if op.name == "where":  # torch's Tensor.where(condition, other): self is the branch
        c, a, b = values
        return a.where(c, b)
    if op.name == "pow":  # the exponent is a plain number
        return values[0].pow(args[1])
    return getattr(values[0], op.method)(*values[1:])


def _call_function(op: Op, args: tuple[float, ...]) -> sa.Value:
    fn = getattr(sa, op.function)
    if op.arity == VARIADIC:
        return fn(list(args))
    if op.name == "pow":  # the exponent is a plain number
        return fn(sa.Value(args[0]), args[1])
    return fn(*args)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_every_op_has_a_public_spelling(op: Op) -> None:
    assert hasattr(sa, op.function), f"sa.{op.function} (op {op.name}) is missing"
    assert op.function in sa.__all__, f"sa.{op.function} is not in sa.__all__"
    if op.arity == VARIADIC:
        assert op.method is None
    else:
        assert op.method is not None, f"op {op.name} has no Value method"
        assert callable(getattr(sa.Value, op.method, None)), f"Value.{op.method} is missing"
    for args in sample_points(op, 3) + [tuple(SPECIAL[i % len(SPECIAL)]
                                              for i in range(n_args(op)))]:
        expected = op.eval(*args)
        result = _call_function(op, args)
        assert isinstance(result, sa.Value)
        assert same_float(result.data, expected), (op.name, args, result.data, expected)
        if op.method is not None and not (op.name == "clamp" and args[1] > args[2]):
            assert same_float(_call_method(op, args).data, expected), (op.name, args)


OPERATORS: list[tuple[str, Callable[..., Any]]] = [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("mod", lambda a, b: a % b), ("neg", lambda a: -a),
    ("abs", lambda a: abs(a)), ("eq", lambda a, b: a == b), ("ne", lambda a, b: a != b),
    ("gt", lambda a, b: a > b), ("lt", lambda a, b: a < b), ("ge", lambda a, b: a >= b),
    ("le", lambda a, b: a <= b), ("pow_value", lambda a, b: a**b),
]


@pytest.mark.parametrize(("name", "operator"), OPERATORS, ids=[n for n, _ in OPERATORS])
def test_python_operators_record_the_table_op(name: str, operator: Callable[..., Any]) -> None:
    op = OPS_BY_NAME[name]
    for args in sample_points(op, 3):
        values = [sa.Value(a, requires_grad=True) for a in args]
        result = operator(*values)
        assert result.op is op
        assert result.args == tuple(values) or len(values) == 1
        assert same_float(result.data, op.eval(*args))
        if len(args) == 2:
            # reflected forms with a plain number on the left (``1 > x`` runs ``x < 1``)
            reflected = operator(args[0], values[1])
            assert isinstance(reflected, sa.Value)
            assert same_float(reflected.data, op.eval(*args))
            # a plain number on the right (``x ** 2.0`` is the constant-exponent ``pow``)
            mixed = operator(values[0], args[1])
            assert isinstance(mixed, sa.Value)
            assert same_float(mixed.data, op.eval(*args))


def test_constant_power_uses_pow_not_log() -> None:
    x = sa.Value(-2.0, requires_grad=True)
    y = x**2
    assert y.op is OPS_BY_NAME["pow"] and y.data == 4.0
    y.backward()
    assert x.grad == -4.0  # log(-2) never computed: pow_value would give nan here


# --------------------------------------------------------------------------- kink conventions


def partials_at(name: str, *args: float) -> tuple[float, ...]:
    op = OPS_BY_NAME[name]
    return tuple(op.partials(FLOATS, *args, out=op.eval(*args)))


def test_abs_and_relu_have_zero_derivative_at_zero() -> None:
    assert partials_at("abs", 0.0) == (0.0,)
    assert partials_at("abs", -0.0) == (0.0,)
    assert partials_at("abs", -2.0) == (-1.0,) and partials_at("abs", 2.0) == (1.0,)
    assert partials_at("relu", 0.0) == (0.0,)
    assert partials_at("relu", -0.0) == (0.0,)
    assert partials_at("relu", 1e-300) == (1.0,)


def test_min_max_ties_split_the_gradient() -> None:
    for name in ("min", "max"):
        assert partials_at(name, 1.5, 1.5) == (0.5, 0.5)
        assert partials_at(name, 0.0, -0.0) == (0.5, 0.5)
    assert partials_at("min", 1.0, 2.0) == (1.0, 0.0)
    assert partials_at("min", 2.0, 1.0) == (0.0, 1.0)
    assert partials_at("max", 1.0, 2.0) == (0.0, 1.0)
    assert partials_at("max", 2.0, 1.0) == (1.0, 0.0)


@pytest.mark.parametrize("name", ["sign", "floor", "ceil", "round", "trunc"])
def test_step_functions_have_zero_derivative_everywhere(name: str) -> None:
    for x in [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 0.3, math.inf, math.nan]:
        assert partials_at(name, x) == (0.0,), (name, x)


def test_comparisons_have_zero_derivative() -> None:
    for name in ("eq", "ne", "gt", "lt", "ge", "le"):
        for a, b in [(1.0, 1.0), (1.0, 2.0), (2.0, 1.0)]:
            assert partials_at(name, a, b) == (0.0, 0.0), name


def test_mod_partials_follow_floored_division() -> None:
    for a, b in [(7.0, 2.0), (-7.0, 2.0), (7.0, -2.0), (-7.0, -2.0), (5.5, 0.5), (1.0, 3.0)]:
        assert partials_at("mod", a, b) == (1.0, -math.floor(a / b)), (a, b)
    # fmod truncates instead
    assert partials_at("fmod", -7.0, 2.0) == (1.0, 3.0)


def test_clamp_bounds_are_inclusive() -> None:
    assert partials_at("clamp", 0.0, 0.0, 1.0) == (1.0, 0.0, 0.0)  # x at lo
    assert partials_at("clamp", 1.0, 0.0, 1.0) == (1.0, 0.0, 0.0)  # x at hi
    assert partials_at("clamp", 0.5, 0.0, 1.0) == (1.0, 0.0, 0.0)
    assert partials_at("clamp", -1.0, 0.0, 1.0) == (0.0, 1.0, 0.0)
    assert partials_at("clamp", 2.0, 0.0, 1.0) == (0.0, 0.0, 1.0)
    assert OPS_BY_NAME["clamp"].eval(0.0, 0.0, 1.0) == 0.0


def test_where_partials_follow_the_selected_branch() -> None:
    assert partials_at("where", 1.0, 3.0, 4.0) == (0.0, 1.0, 0.0)
    assert partials_at("where", 0.0, 3.0, 4.0) == (0.0, 0.0, 1.0)
    assert partials_at("where", -0.0, 3.0, 4.0) == (0.0, 0.0, 1.0)
    assert partials_at("where", math.nan, 3.0, 4.0) == (0.0, 1.0, 0.0)


def test_conventions_are_written_in_the_docs() -> None:
    doc = {op.name: op.doc for op in OPS}
    assert "abs'(0) = 0" in doc["abs"]
    assert "relu'(0) = 0" in doc["relu"]
    assert "0.5 each at a tie" in doc["min"] and "0.5 each at a tie" in doc["max"]
    for name in ("sign", "floor", "ceil", "round", "trunc"):
        assert "derivative 0" in doc[name], name
    assert "floored" in doc["mod"] and "-floor(a/b)" in doc["mod"]
    assert "half away from zero" in doc["round"]
    assert "inclusive" in doc["clamp"]
