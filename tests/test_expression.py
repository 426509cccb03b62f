"""The formula front end: ``sa.parse``, ``sa.to_expression``, ``sa.to_latex``, derivatives.

Oracles: hand-computed values; Python's own float arithmetic on the same (test-written)
formula text; the op table's ``eval`` for every callable function; eager ``backward()``
for the derivative graphs; and the round trip ``parse(to_expression(v))``, bit for bit
at random points. Hostile input must give a ``ValueError`` (or ``TypeError`` for a
non-str), never a RecursionError, MemoryError or a hang.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable

import pytest

import scalar_autograd as sa
from scalar_autograd import expression
from scalar_autograd.expression import (
    CONSTANTS,
    FUNCTIONS,
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_OUTPUT,
    derivatives,
    variables_in,
)
from scalar_autograd.ops import OPS, OPS_BY_NAME, VARIADIC, _forget_custom
from scalar_autograd.value import apply


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def same(x: float, y: float) -> bool:
    """Equal as floats, or both nan (the sign of a nan is compared by ``bits``)."""
    return x == y or (x != x and y != y)


def identical(x: float, y: float) -> bool:
    """The same bits, or both nan: the sign of a nan computed from two nans is not
    defined by IEEE-754 and differs between CPython's code paths (``a * b`` in the
    interpreter's specialised bytecode vs ``operator.mul``), so it is not compared."""
    return bits(x) == bits(y) or (x != x and y != y)


def leaves(**values: float) -> dict[str, sa.Value]:
    return {name: sa.Value(v, label=name) for name, v in values.items()}


# ----------------------------------------------------------------------------- precedence

A, B, C = 2.0, 3.0, 5.0

HAND = [
    ("a - b - c", -6.0),
    ("a - (b - c)", 4.0),
    ("a / b / c", (2.0 / 3.0) / 5.0),
    ("a / (b / c)", 2.0 / 0.6),
    ("a + b * c", 17.0),
    ("(a + b) * c", 25.0),
    ("a * b ^ 2", 18.0),
    ("a * b ** 2", 18.0),
    ("2^3^2", 512.0),
    ("2**3**2", 512.0),
    ("(2^3)^2", 64.0),
    ("-2^2", -4.0),
    ("-a^2", -4.0),
    ("(-a)^2", 4.0),
    ("-a ** 2", -4.0),
    ("2^-1", 0.5),
    ("2 ** -2", 0.25),
    ("a^-b^2", 2.0 ** -9.0),
    ("-2^-3^2", -(2.0 ** -9.0)),
    ("-a * b", -6.0),
    ("a * -b", -6.0),
    ("a - -b", 5.0),
    ("--a", 2.0),
    ("+a", 2.0),
    ("-+-a", 2.0),
    ("a^b*c", 40.0),
    ("c - a^2 / 4", 4.0),
    ("a < b", 1.0),
    ("a + b > c", 0.0),
    ("a + b >= c", 1.0),
    ("(a < b) + (b < a) * 10", 1.0),
    ("a * b == b * a", 1.0),
    ("a != a", 0.0),
    ("a <= b - 1", 1.0),
    ("1.5e1 + .5 + 2. + 1E-1", 17.6),
    ("pi", math.pi),
    ("e^1", math.e),
    ("2 * pi * a", 4.0 * math.pi),
]


@pytest.mark.parametrize("text, expected", HAND)
def test_precedence_and_associativity_by_hand(text: str, expected: float) -> None:
    v = sa.parse(text, {"a": A, "b": B, "c": C})
    assert v.data == pytest.approx(expected, rel=1e-15, abs=0.0)


def _python_formula(rng: random.Random, depth: int) -> str:
    """A random formula in the common part of the two grammars (no chained comparisons;
    float literals, so Python computes in floats)."""
    if depth == 0 or rng.random() < 0.25:
        return rng.choice(["a", "b", "c", "2.0", "0.5", "3.0", "1e-3", "7.25"])
    kind = rng.randrange(7)
    left, right = _python_formula(rng, depth - 1), _python_formula(rng, depth - 1)
    if kind == 0:
        return f"({left})"
    if kind == 1:
        return f"-{left}"
    if kind == 2:
        return f"{left} ** {rng.choice(['2.0', '3.0', '-1.0', '0.5', 'b', '-a'])}"
    if kind == 3:
        return f"({left} {rng.choice(['<', '<=', '>', '>=', '==', '!='])} {right})"
    return f"{left} {rng.choice(['+', '-', '*', '/'])} {right}"


def test_precedence_matches_pythons_own_arithmetic() -> None:
    """Python evaluating the same test-written text on floats is an oracle for the
    grammar: same precedence, associativity and unary-minus rules (``-x**2``,
    ``2**-1``), bit for bit, since both round every operation as IEEE doubles."""
    rng = random.Random(20240516)
    checked = 0
    for _ in range(3000):
        text = _python_formula(rng, 4)
        env = {"a": 1.25, "b": -0.75, "c": 3.0}
        try:
            expected = eval(text, {"__builtins__": {}}, dict(env))  # noqa: S307 - test-written text
        except (ZeroDivisionError, OverflowError, TypeError):  # TypeError: complex < float
            continue
        if isinstance(expected, complex):
            continue
        for spelling in (text, text.replace("**", "^")):
            got = sa.parse(spelling, env).data
            # a comparison is a bool in Python, and -False is 0, not -0.0: with one, the
            # sign of a zero is not compared
            check = same if any(c in text for c in "<>=!") else identical
            assert check(got, float(expected)), (spelling, got, expected)
        checked += 1
    assert checked > 2000


# ----------------------------------------------------------------------------- functions


def _args_for(op, rng: random.Random) -> list[float]:
    n = 3 if op.arity == VARIADIC else op.arity
    return [rng.uniform(*op.domain[min(k, len(op.domain) - 1)]) for k in range(n)]


def test_every_op_with_a_public_spelling_is_callable() -> None:
    callable_ops = {f.op.name for f in FUNCTIONS.values()}
    assert {op.name for op in OPS} <= callable_ops
    for op in OPS:
        assert FUNCTIONS[op.function].op is op
        assert FUNCTIONS[op.name].op is op  # min and max too, besides minimum and maximum
    assert "custom_op" not in FUNCTIONS and "if_then_else" in FUNCTIONS


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_parses(name: str) -> None:
    function = FUNCTIONS[name]
    op = function.op
    rng = random.Random(name)
    values = _args_for(op, rng)
    if op.name == "pow":
        values[1] = 3.0
    names = [f"v{k}" for k in range(len(values))]
    variables = {n: sa.Value(v, label=n) for n, v in zip(names, values)}
    if op.name == "pow":
        args = [names[0], "3"]
    else:
        args = names
    v = sa.parse(f"{name}({', '.join(args)})", variables)
    assert v.op is op
    assert bits(v.data) == bits(op.eval(*values))
    # and the written form reads back to the same op
    again = sa.parse(sa.to_expression(v), variables)
    assert again.op.name in (op.name, "pow_value") and bits(again.data) == bits(v.data)


@pytest.mark.parametrize("name", sorted(n for n in FUNCTIONS if FUNCTIONS[n].op.arity != VARIADIC))
def test_wrong_number_of_arguments_is_an_error_at_the_name(name: str) -> None:
    arity = FUNCTIONS[name].op.arity
    args = ", ".join(["1"] * (arity + 1))
    with pytest.raises(ValueError, match=rf"column 3: {name} takes {arity} argument"):
        sa.parse(f"1+{name}({args})")


def test_variadic_functions_and_their_edges() -> None:
    x = leaves(x=2.0, y=3.0)
    assert sa.parse("sum(x, y, 1, x)", x).data == 8.0
    assert sa.parse("sum(x, y, 1, x)", x).op.name == "sum"
    assert sa.parse("mean(x, y)", x).data == 2.5
    assert sa.parse("sum()").data == 0.0
    with pytest.raises(ValueError, match="column 1: mean.*at least one"):
        sa.parse("mean()")


def test_pow_call_needs_a_number_exponent_and_power_spellings() -> None:
    v = leaves(x=2.0, y=3.0)
    assert sa.parse("pow(x, -2)", v).op.name == "pow"
    assert sa.parse("x^-2", v).op.name == "pow"        # a (negated) number: no log x
    assert sa.parse("x^y", v).op.name == "pow_value"
    assert sa.parse("x^(1+1)", v).op.name == "pow_value"
    assert sa.parse("pow_value(x, y)", v).data == 8.0
    with pytest.raises(ValueError, match="column 1: pow.*number c as its exponent"):
        sa.parse("pow(x, y)", v)


def test_where_with_comparisons_and_clamp_checks() -> None:
    v = leaves(x=-2.0, y=1.0)
    w = sa.parse("where(x > y, x * x, -x)", v)
    assert w.data == 2.0 and w.op.name == "where" and w.args[0].op.name == "gt"
    assert sa.parse("if_then_else(x <= y, 1, 2)", v).data == 1.0
    assert sa.parse("clamp(x, -1, 1)", v).data == -1.0
    with pytest.raises(ValueError, match="column 3: clamp.*lo <= hi"):
        sa.parse("x+clamp(x, 1, -1)", v)


def test_custom_ops_are_callable_by_name() -> None:
    def _d(m, x, out):
        return (2.0 * x,)

    op = sa.custom_op(lambda m, x: x * x + 1.0, partials=_d, name="sqplus1")
    try:
        x = sa.Value(3.0, label="x")
        v = sa.parse("2 * sqplus1(x)", {"x": x})
        assert v.data == 20.0
        assert sa.to_expression(v) == "2.0 * sqplus1(x)"
        assert sa.parse(sa.to_expression(v), {"x": x}).data == 20.0
        assert "operatorname{sqplus1}" in sa.to_latex(v)
        with pytest.raises(ValueError, match="sqplus1 takes 1 argument"):
            sa.parse("sqplus1(x, x)", {"x": x})
        assert op(x).data == 10.0
    finally:
        _forget_custom(["sqplus1"])


# ----------------------------------------------------------------------------- variables


def test_variables_values_numbers_and_constants() -> None:
    x = sa.Value(2.0, label="x", requires_grad=True)
    v = sa.parse("x * x + k * k", {"x": x, "k": 3})
    assert v.data == 13.0
    product = v.args[1]
    assert product.args[0] is product.args[1]            # one leaf per number-valued name
    assert product.args[0].label == "k" and not product.args[0].requires_grad
    assert v.args[0].args[0] is x                        # a Value is used as is
    v.backward()
    assert x.grad == 4.0
    # a Value variable may be a whole subexpression
    assert sa.parse("2 * y", {"y": x * x}).data == 8.0
    # a variable of a constant's name wins; constants otherwise
    assert sa.parse("e", {"e": 1.0}).data == 1.0
    assert sa.parse("e + pi").data == math.e + math.pi
    assert math.isinf(sa.parse("inf").data) and math.isnan(sa.parse("nan").data)
    assert set(CONSTANTS) == {"pi", "e", "inf", "nan"}


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"column 5: unknown name 'z'; known names: x, y; "
                                         r"constants: pi, e, inf, nan"):
        sa.parse("x + z", {"y": 1.0, "x": 2.0})
    with pytest.raises(ValueError, match="no variables were given"):
        sa.parse("z")
    many = {f"v{k:02d}": 1.0 for k in range(30)}
    with pytest.raises(ValueError, match=r"v19, \.\.\. \(10 more\)"):
        sa.parse("z", many)
    with pytest.raises(ValueError, match="'x' is a variable: write '\\*' to multiply"):
        sa.parse("x(2)", {"x": 1.0})


@pytest.mark.parametrize("variables, word", [
    ("x=1", "variables must be a mapping"),
    ([("x", 1.0)], "variables must be a mapping"),
    ({1: 1.0}, "keys must be str"),
    ({"x": "1"}, r"variables\['x'\] must be a Value or a real number"),
    ({"x": None}, r"variables\['x'\]"),
    ({"x": True}, r"variables\['x'\]"),
    ({"x": 1j}, r"variables\['x'\]"),
])
def test_bad_variables_are_type_errors(variables: object, word: str) -> None:
    with pytest.raises(TypeError, match=word):
        sa.parse("x", variables)  # type: ignore[arg-type]


def test_variables_in_lists_looked_up_names_in_order() -> None:
    assert variables_in("a*exp(-b*t) + c + a") == ["a", "b", "t", "c"]
    assert variables_in("sin + sin(x) + pi") == ["sin", "x", "pi"]
    assert variables_in("") == []
    with pytest.raises(ValueError, match="column 3: unexpected character"):
        variables_in("a $ b")
    with pytest.raises(TypeError, match="text must be a str"):
        variables_in(b"a")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("text, expected", [
    ("0", 0.0), ("12", 12.0), ("1.", 1.0), (".25", 0.25), ("1.5e3", 1500.0), ("1E+2", 100.0),
    ("2.5e-3", 0.0025), ("0.1", 0.1), ("5e-324", 5e-324), ("1.7976931348623157e308",
                                                          1.7976931348623157e308),
    ("1e999999", math.inf), ("1" * 400, float("1" * 400)), ("-0.0", -0.0), ("-0", -0.0),
])
def test_numbers(text: str, expected: float) -> None:
    v = sa.parse(text)
    assert bits(v.data) == bits(expected)


def test_a_negated_number_is_one_constant() -> None:
    v = sa.parse("-2")
    assert v.is_leaf and v.data == -2.0
    assert sa.parse("-x", {"x": 2.0}).op.name == "neg"
    assert sa.parse("-2^2").op.name == "neg"               # -(2^2)
    assert sa.parse("(-2)^2").data == 4.0


# ----------------------------------------------------------------------------- errors

ERRORS = [
    # text, column, words of the message
    ("1 +", 4, "expected an operand after '+', got end of input"),
    ("", 1, "expected an operand, got end of input"),
    ("   ", 4, "expected an operand, got end of input"),
    ("x y", 3, "expected an operator after name 'x', got name 'y' (write '*' to multiply)"),
    ("2x", 2, "expected an operator after number '2', got name 'x'"),
    ("x.__class__", 2, "unexpected character '.'"),
    ("__import__('os')", 1, "unknown function '__import__'"),
    ("().__class__", 2, "expected an operand after '(', got ')'"),
    ("x +* y", 4, "expected an operand after '+', got '*'"),
    ("*x", 1, "expected an operand, got '*'"),
    ("x^", 3, "expected an operand after '^', got end of input"),
    ("(x", 3, "expected ')' to close '(' at column 1, got end of input"),
    ("sin(x", 6, "expected ')' to close 'sin(' at column 4"),
    ("sin(x,)", 7, "expected an operand after ',', got ')'"),
    ("sin()", 1, "sin takes 1 argument; got 0"),
    ("x)", 2, "unmatched ')'"),
    ("1, 2", 2, "',' outside the arguments of a function call"),
    ("foo(x)", 1, "unknown function 'foo'"),
    ("x < y < x", 7, "comparisons do not chain"),
    ("x = y", 3, "unexpected character '=' (U+003D) (use == to compare)"),
    ("1e", 2, "malformed number"),
    ("1e+", 2, "malformed number"),
    ("x $ y", 3, "unexpected character '$'"),
    ("x % y", 3, "unexpected character '%'"),
    ("x & y", 3, "unexpected character '&'"),
    ("x; y", 2, "unexpected character ';'"),
    ("'x'", 1, "unexpected character"),
    ("x\u202e", 2, "unexpected character U+202E"),
    ("x\x00", 2, "unexpected character U+0000"),
    ("\u0663", 1, "unexpected character '\u0663' (U+0663)"),     # an Arabic-Indic digit
    ("\uff58", 1, "unexpected character"),                        # fullwidth x
    ("x\u200by", 2, "unexpected character U+200B"),               # zero-width space
    ("caf\u00e9", 4, "unexpected character"),
    ("1.2.3", 4, "expected an operator after number '1.2', got number '.3'"),
    ("lambda: 1", 7, "unexpected character ':'"),
    ("[1]", 1, "unexpected character '['"),
]


@pytest.mark.parametrize("text, column, words", ERRORS)
def test_errors_name_the_column_and_what_was_expected(text: str, column: int,
                                                      words: str) -> None:
    with pytest.raises(ValueError) as info:
        sa.parse(text, {"x": 1.0, "y": 2.0})
    message = str(info.value)
    first, shown, caret = message.split("\n")
    assert first.startswith(f"parse error at column {column}: "), message
    assert words in first, message
    assert caret.index("^") - 2 == column - 1 - (3 if shown.startswith("  ...") else 0)
    assert len(message) < 2000


def test_the_caret_window_of_a_long_text() -> None:
    text = "x + " * 100 + "$" + " + x" * 100
    with pytest.raises(ValueError) as info:
        sa.parse(text, {"x": 1.0})
    _, shown, caret = str(info.value).split("\n")
    assert shown.startswith("  ...") and shown.endswith("...")
    assert shown[caret.index("^")] == "$"


HOSTILE: list[tuple[str, Callable[[], str], str]] = [
    ("10^5 nested parentheses", lambda: "(" * 10**5 + "x" + ")" * 10**5,
     f"column {MAX_DEPTH + 1}: parentheses and calls nest deeper than {MAX_DEPTH} levels"),
    ("10^5 open parentheses", lambda: "(" * 10**5, "nest deeper than"),
    ("10^5 nested calls", lambda: "sin(" * 10**5 + "x" + ")" * 10**5, "nest deeper than"),
    ("attribute access", lambda: "x.__class__", "unexpected character '.'"),
    ("dunder import", lambda: "__import__('os')", "unknown function '__import__'"),
    ("dunder name", lambda: "__builtins__", "unknown name '__builtins__'"),
    ("tuple attribute", lambda: "().__class__", "expected an operand after '('"),
    ("lambda", lambda: "lambda: 0", "unexpected character ':'"),
    ("trailing operator", lambda: "x +", "expected an operand after '+'"),
    ("trailing operators", lambda: "x * / ", "expected an operand after '*'"),
    ("empty", lambda: "", "expected an operand, got end of input"),
    ("missing operator", lambda: "x y", "expected an operator"),
    ("too long", lambda: "x" * (MAX_LENGTH + 1), "at most 1,000,000 characters"),
    ("too long flat", lambda: "x+" * (MAX_LENGTH // 2) + "x", "at most 1,000,000 characters"),
    ("long garbage", lambda: "\x00" * 10**5, "U+0000"),
    ("many unary then nothing", lambda: "-" * 10**5, "expected an operand after '-'"),
    ("format string", lambda: "{0}.__class__", "unexpected character '{'"),
    ("backslash", lambda: "x\\\ny", "unexpected character '\\'"),
    ("bidi override", lambda: "x\u202e + 1", "U+202E"),
    ("surrogate", lambda: "x\ud800", "U+D800"),
    ("huge exponent", lambda: "1e99999999999999999999 * nope", "unknown name 'nope'"),
]


@pytest.mark.parametrize("text_of, words", [(t, w) for _, t, w in HOSTILE],
                         ids=[name for name, _, _ in HOSTILE])
def test_hostile_input_is_a_clear_value_error(text_of: Callable[[], str], words: str) -> None:
    with pytest.raises(ValueError) as info:
        sa.parse(text_of(), {"x": 1.0})
    assert words in str(info.value)
    assert len(str(info.value)) < 2000


def test_deep_but_legal_input_parses() -> None:
    x = {"x": 2.0}
    assert sa.parse("(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH, x).data == 2.0
    assert sa.parse("sin(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH, x).op.name == "sin"
    with pytest.raises(ValueError, match="nest deeper"):
        sa.parse("(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), x)
    # long chains are not nesting: iterative all the way (parse and write)
    v = sa.parse("-" * 10**5 + "x", x)
    assert v.data == 2.0 and len(sa.to_expression(v)) == 10**5 + 1
    v = sa.parse("1^" * 10**5 + "x", x)
    assert v.data == 1.0 and sa.to_expression(v).startswith("1.0^1.0^")
    assert sa.parse("x" + "-x" * 10**5, x).data == 2.0 - 2.0 * 10**5
    assert sa.parse("1e999999").data == math.inf


@pytest.mark.parametrize("bad", [None, 1.5, b"x+1", ["x"], sa.Value(1.0)])
def test_non_str_text_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="text must be a str"):
        sa.parse(bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- writing


def test_to_expression_minimal_parentheses() -> None:
    a, b, c = sa.Value(1.0, label="a"), sa.Value(2.0, label="b"), sa.Value(3.0, label="c")
    cases = [
        (a - (b - c), "a - (b - c)"),
        ((a - b) - c, "a - b - c"),
        (a + (b + c), "a + (b + c)"),     # floating-point addition is not associative
        ((a + b) + c, "a + b + c"),
        (a - (b + c), "a - (b + c)"),
        (a * (b / c), "a * (b / c)"),
        ((a * b) / c, "a * b / c"),
        (a / (b * c), "a / (b * c)"),
        ((a + b) * c, "(a + b) * c"),
        (a + b * c, "a + b * c"),
        ((-a) ** 2, "(-a)^2.0"),
        (-(a ** 2), "-a^2.0"),
        (a ** (b ** c), "a^b^c"),
        ((a ** b) ** c, "(a^b)^c"),
        (a ** -b, "a^-b"),
        (a ** (-b) * c, "a^-b * c"),
        (sa.neg(-a), "--a"),
        (-(a + b), "-(a + b)"),
        (-(a * b), "-(a * b)"),
        ((-a) * b, "-a * b"),
        (a * -b, "a * -b"),
        (a - -b, "a - -b"),
        (sa.gt(a + b, c) * 2, "(a + b > c) * 2.0"),
        (sa.eq(sa.lt(a, b), sa.lt(b, c)), "(a < b) == (b < c)"),
        (sa.where(sa.ge(a, b), a, b), "where(a >= b, a, b)"),
        (sa.maximum(a, b) + sa.minimum(a, b), "max(a, b) + min(a, b)"),
        (sa.sum([a, b, c]), "sum(a, b, c)"),
        (sa.atan2(a, b), "atan2(a, b)"),
        (sa.clamp(a, 0.0, 1.0), "clamp(a, 0.0, 1.0)"),
        (a * sa.Value(-2.0), "a * -2.0"),
        (sa.Value(-2.0) ** a, "(-2.0)^a"),
        (a ** sa.Value(-2.0), "a^-2.0"),
        (sa.Value(1e-300) * a, "1e-300 * a"),
    ]
    for value, text in cases:
        assert sa.to_expression(value) == text
        again = sa.parse(text, {"a": a, "b": b, "c": c})
        assert bits(again.data) == bits(value.data), text
        assert sa.to_expression(again) == text


@pytest.mark.parametrize("x", [0.0, -0.0, 1.5, -1.5, 0.1, 1e-310, 5e-324, -5e-324, 1e308,
                               math.pi, math.inf, -math.inf, math.nan, -math.nan,
                               2.0 ** 53 + 2, 123456789.123456789])
def test_constants_round_trip_bit_for_bit(x: float) -> None:
    y = sa.Value(1.0, label="y")
    for value in (sa.Value(x), sa.Value(x) * y, y ** sa.Value(x), sa.Value(x) ** y):
        text = sa.to_expression(value)
        assert bits(sa.parse(text, {"y": y}).data) == bits(value.data), text
    assert bits(sa.parse(sa.to_expression(sa.Value(x))).data) == bits(x)


def test_leaf_names_labels_and_params() -> None:
    p = sa.Value(1.0, requires_grad=True)
    q = sa.Value(2.0, requires_grad=True)
    named = sa.Value(3.0, label="x0")
    assert sa.to_expression(p * q + named) == "x1 * x2 + x0"  # labels claim their names
    assert sa.to_expression(p * q) == "x0 * x1"
    first, second = sa.Value(1.0, label="w"), sa.Value(2.0, label="w")
    assert sa.to_expression(first + second) == "w + w_2"
    odd = sa.Value(1.0, label="w[0] \u03b8 \n")
    assert sa.to_expression(odd * 2) == "w_0_____ * 2.0"
    assert sa.to_expression(sa.Value(1.0, label="0abc")) == "v_0abc"
    assert sa.to_expression(sa.Value(1.0, label="inf") + math.inf) == "inf_2 + inf"
    assert sa.to_expression(p * first, names={p: "rate"}) == "rate * w"
    assert sa.to_expression(p * q, names={q: "x0"}) == "x1 * x0"


def test_names_argument_checks() -> None:
    p = sa.Value(1.0, requires_grad=True)
    with pytest.raises(TypeError, match="names must be a mapping"):
        sa.to_expression(p, names=[(p, "a")])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keys must be Values"):
        sa.to_expression(p, names={"a": "b"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="values must be str"):
        sa.to_expression(p, names={p: 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="names parse\\(\\) reads"):
        sa.to_expression(p, names={p: "a b"})
    with pytest.raises(ValueError, match="leaf Values only"):
        sa.to_expression(p, names={p * 2: "a"})
    q = sa.Value(1.0)
    with pytest.raises(ValueError, match="distinct"):
        sa.to_expression(p + q, names={p: "a", q: "a"})
    with pytest.raises(TypeError, match="value must be a Value"):
        sa.to_expression(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="value must be a Value"):
        sa.to_latex("x")  # type: ignore[arg-type]


def _random_graph(rng: random.Random, xs: list[sa.Value], n_nodes: int) -> sa.Value:
    """A random graph over every op of the table, with awkward constants."""
    consts = [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, math.inf, -math.inf, math.nan,
              -math.nan, math.pi, 3.0, -1.0, 0.5]
    pool: list[sa.Value] = list(xs)
    ops = list(OPS)
    for _ in range(n_nodes):
        op = rng.choice(ops)
        n = rng.randint(1, 4) if op.arity == VARIADIC else op.arity
        args = []
        for _ in range(n):
            if rng.random() < 0.2:
                args.append(sa.Value(rng.choice(consts)))
            else:
                args.append(rng.choice(pool[-6:] + pool[:3]))
        if op.name == "pow":
            args[1] = sa.Value(rng.choice([2.0, 3.0, -1.0, 0.5, -0.0, math.nan]))
        if op.name == "clamp":  # sa.clamp (so parse) refuses lo > hi
            args[1:] = [sa.Value(-1.5), sa.Value(rng.choice([1.5, math.inf]))]
        pool.append(apply(op, *args))
    return pool[-1] - sa.sum(pool[-8:-1]) * pool[-2]  # most of the pool, in one graph


def test_round_trip_at_random_points() -> None:
    """``parse(to_expression(v))`` has the value of ``v``, bit for bit, wherever the leaves
    are; and writing is a fixed point after one round (negated numbers fold)."""
    for seed in range(150):
        for point in range(3):
            rng = random.Random(f"{seed}/{point}")
            data = [rng.uniform(-3, 3) for _ in range(3)]
            xs = [sa.Value(data[0], label="x"), sa.Value(data[1], label="y"),
                  sa.Value(data[2], requires_grad=True)]
            root = _random_graph(random.Random(seed), xs, 25)
            variables = {"x": xs[0], "y": xs[1], "x0": xs[2]}
            text = sa.to_expression(root)
            again = sa.parse(text, variables)
            assert identical(again.data, root.data), (text, again.data, root.data)
            second = sa.to_expression(again)
            assert sa.to_expression(sa.parse(second, variables)) == second
            sa.to_latex(root)


def test_deep_chains_do_not_recurse() -> None:
    x = sa.Value(0.5, label="x")
    v = x
    for k in range(10**5):
        v = (v + 1.0) if k % 2 else (v * x)
    text = sa.to_expression(v)
    assert text.startswith("(") and text.endswith(" + 1.0")
    with pytest.raises(ValueError, match="nest deeper"):  # the text nests 5*10^4 deep
        sa.parse(text, {"x": x})
    latex = sa.to_latex(v)
    assert latex.endswith(" + 1")
    right = x
    for _ in range(10**5):
        right = 1.0 - right
    assert sa.to_expression(right).count("(") == 10**5 - 1
    left = x
    for _ in range(10**5):
        left = left - 1.0
    text = sa.to_expression(left)
    assert bits(sa.parse(text, {"x": x}).data) == bits(left.data)
    d = derivatives(left, [x])[0]
    assert d.data == 1.0 and sa.to_expression(d) == "1.0"


def test_shared_subexpressions_are_refused_past_max_output() -> None:
    x = sa.Value(1.0, label="x")
    v = x
    for _ in range(64):
        v = v * v
    with pytest.raises(ValueError, match="MAX_OUTPUT"):
        sa.to_expression(v)
    with pytest.raises(ValueError, match="MAX_OUTPUT"):
        sa.to_latex(v)
    w = x
    for _ in range(10):
        w = w * w
    assert len(sa.to_expression(w)) < MAX_OUTPUT


# ----------------------------------------------------------------------------- LaTeX


@pytest.mark.parametrize("text, latex", [
    ("a / b", r"\frac{a}{b}"),
    ("sqrt(a) / (b + 1)", r"\frac{\sqrt{a}}{b + 1}"),
    ("a^2", "a^{2}"),
    ("(a + b)^2", r"\left(a + b\right)^{2}"),
    ("(a / b)^c", r"\left(\frac{a}{b}\right)^{c}"),
    ("a^b^c", "a^{b^{c}}"),
    ("-a^2", "-a^{2}"),
    ("(-a)^2", r"\left(-a\right)^{2}"),
    ("sin(a) * cos(b)", r"\sin\left(a\right) \cdot \cos\left(b\right)"),
    ("exp(-a * b)", r"e^{-a \cdot b}"),
    ("atan2(a, b)", r"\operatorname{atan2}\left(a, b\right)"),
    ("abs(a) + floor(b) + ceil(c)",
     r"\left|a\right| + \left\lfloor b \right\rfloor + \left\lceil c \right\rceil"),
    ("log(a) + asin(b)", r"\log\left(a\right) + \arcsin\left(b\right)"),
    ("min(a, b) * max(a, c)", r"\min\left(a, b\right) \cdot \max\left(a, c\right)"),
    ("a - (b - c)", r"a - \left(b - c\right)"),
    ("a * -b", r"a \cdot \left(-b\right)"),
    ("--a", r"-\left(-a\right)"),
    ("sum(a, b, c)", "a + b + c"),
    ("a >= b", r"a \geq b"),
    ("a != b", r"a \neq b"),
    ("a == b", "a = b"),
    ("reciprocal(a) + square(b) + cube(c)", r"\frac{1}{a} + b^{2} + c^{3}"),
    ("sigmoid(a) + relu(b)", r"\sigma\left(a\right) + \operatorname{relu}\left(b\right)"),
    ("2.5e-10 * a", r"2.5 \cdot 10^{-10} \cdot a"),
    ("3 * a + inf + nan", r"3 \cdot a + \infty + \mathrm{NaN}"),
    ("-inf", r"-\infty"),
    ("1e300^a", r"\left(1 \cdot 10^{300}\right)^{a}"),
    ("0.5 * a", r"0.5 \cdot a"),
])
def test_to_latex(text: str, latex: str) -> None:
    variables = {"a": 1.0, "b": 2.0, "c": 3.0}
    assert sa.to_latex(sa.parse(text, variables)) == latex


def test_latex_names_and_escaping() -> None:
    p = sa.Value(1.0, requires_grad=True)
    assert sa.to_latex(p * 2) == r"x_{0} \cdot 2"
    assert sa.to_latex(sa.Value(1.0, label="rate") + sa.Value(1.0, label="x_12")) == \
        r"\mathit{rate} + x_{12}"
    evil = sa.Value(1.0, label="}\\end{document}$x^2_#&%~\n")
    latex = sa.to_latex(evil * 2)
    assert latex == (r"\text{\}\textbackslash{}end\{document\}\$x\textasciicircum{}2\_\#\&"
                     r"\%\textasciitilde{}?} \cdot 2")
    assert sa.to_latex(evil, names={evil: "e1"}) == "e_{1}"


# ----------------------------------------------------------------------------- derivatives


def test_derivatives_match_backward_on_random_graphs() -> None:
    for seed in range(60):
        rng = random.Random(seed)
        xs = [sa.Value(rng.uniform(0.2, 2.0), label=n, requires_grad=True) for n in "xyz"]
        root = _random_graph(random.Random(seed + 1000), xs, 15)
        if not root.requires_grad:
            continue
        root.backward()
        for leaf, d in zip(xs, derivatives(root, xs)):
            assert same(d.data, leaf.grad), (seed, leaf.label, sa.to_expression(d))
            assert not any(n.is_leaf and n.label and n not in xs
                           for n in sa.topological_order(d) if n.label)


def test_derivatives_are_graphs_of_the_same_leaves() -> None:
    v = leaves(a=2.0, b=0.5, t=3.0)
    a, b, t = v["a"], v["b"], v["t"]
    f = sa.parse("a*exp(-b*t) + c", {**v, "c": 4.0})
    da, db = derivatives(f, [a, b])
    assert sa.to_expression(da) == "exp(-b * t)"
    assert da.data == math.exp(-1.5)
    assert any(n is t for n in sa.topological_order(db))
    assert db.data == pytest.approx(-3.0 * 2.0 * math.exp(-1.5), rel=1e-15)
    assert sa.to_latex(derivatives(f, [v["t"]])[0]).count("e^{") == 1
    # a param the output does not depend on: 0
    assert derivatives(a * 2.0, [a, b])[1].data == 0.0
    # readable rewrites that keep every bit
    x = sa.Value(1.5, label="x", requires_grad=True)
    assert sa.to_expression(derivatives(x ** 2, [x])[0]) == "2.0 * x"
    assert sa.to_expression(derivatives(sa.relu(x) * x, [x])[0]) == \
        "relu(x) + where(x > 0.0, x, 0.0)"          # not where(x > 0.0, x * (x > 0.0), 0.0)


def test_derivatives_argument_checks() -> None:
    x = sa.Value(1.0)
    with pytest.raises(TypeError, match="output must be a Value"):
        derivatives(1.0, [x])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="params must be a sequence"):
        derivatives(x, x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leaf"):
        derivatives(x, [x * 2])
    with pytest.raises(ValueError, match="twice"):
        derivatives(x, [x, x])


def test_module_constants_are_consistent() -> None:
    # 10^5 nested parentheses fit the length limit, so the depth limit is what refuses them
    assert 2 * 10**5 + 1 < MAX_LENGTH
    assert MAX_DEPTH >= 100
    assert expression.__all__ and all(hasattr(expression, n) for n in expression.__all__)
    assert {"parse", "to_expression", "to_latex"} <= set(sa.__all__)
    assert all(op.name in OPS_BY_NAME for op in OPS)
