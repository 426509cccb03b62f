"""Formulas as text: ``parse`` builds a Value graph, ``to_expression``/``to_latex`` write one.

:func:`parse` reads a formula such as ``"a*exp(-b*t) + c"`` with a hand-written
tokenizer and an iterative operator-precedence (shunting-yard) parser: user text is
never given to Python's own parser or evaluator, nesting is limited to
:data:`MAX_DEPTH` levels and the text to :data:`MAX_LENGTH` characters, and every
mistake is a ``ValueError`` naming the column. :func:`to_expression` writes a graph
back as infix text with the fewest parentheses that keep its structure, and
:func:`to_latex` as LaTeX; both walk the graph iteratively, so a 10^5-deep chain is
fine. :func:`derivatives` gives the partial derivatives of a graph as graphs (the IR's
reverse mode, converted back to Values), for showing them.

The grammar, loosest binding first::

    comparison  ==  !=  <  <=  >  >=      (at most one per level: no chains)
    additive    +  -                      (left-associative)
    product     *  /                      (left-associative)
    unary       -x  +x
    power       x^y  x**y                 (right-associative; binds tighter than a
                                           unary minus on its left: -x^2 is -(x^2);
                                           the exponent may be unary: 2^-1)
    atom        number, name, name(args...), (expression)

Numbers are ASCII decimals: ``2``, ``2.``, ``.5``, ``1.5e-3``; one too large for a
float is ``inf`` (``1e999999``, rounded as IEEE-754 and Python's ``float`` do). Names are
ASCII identifiers (``[A-Za-z_][A-Za-z0-9_]*``); spaces, tabs and newlines separate
tokens, and any other character (a non-ASCII letter or digit, ``.`` not in a number,
``%``, quotes, brackets) is an error. The names ``pi``, ``e``, ``inf`` and ``nan`` are
constants unless ``variables`` defines them.
A function is any op of the table by its public name (:data:`FUNCTIONS`: ``sin``,
``atan2``, ``minimum`` or ``min``, ``clamp``, ``where``, ``sum``, ...) or a registered
custom op (``sa.custom_op``) by its name.

Example:
    >>> import scalar_autograd as sa
    >>> x = sa.Value(2.0, label="x")
    >>> y = sa.parse("-x^2 + 3*sin(x)", {"x": x})
    >>> y.data == -(2.0 ** 2) + 3 * math.sin(2.0)
    True
    >>> print(sa.to_expression(y))
    -x^2.0 + 3.0 * sin(x)
    >>> print(sa.to_latex(y))
    -x^{2} + 3 \\cdot \\sin\\left(x\\right)
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from scalar_autograd import functional
from scalar_autograd import ops as _ops
from scalar_autograd.graph import gc_paused, post_order, topological_order
from scalar_autograd.ir.autodiff import reverse
from scalar_autograd.ir.trace import trace
from scalar_autograd.ops import OPS_BY_NAME, VARIADIC, Op
from scalar_autograd.value import Value, apply

__all__ = ["parse", "to_expression", "to_latex", "derivatives", "variables_in", "latex_name",
           "FUNCTIONS", "CONSTANTS", "MAX_LENGTH", "MAX_DEPTH", "MAX_OUTPUT"]

MAX_LENGTH = 1_000_000
"""Longest formula :func:`parse` reads, in characters. It is well above the 200,001
characters of 10^5 nested parentheses, so such input is refused by the depth limit,
which names the column where the nesting got too deep."""

MAX_DEPTH = 200
"""Deepest nesting of parentheses and function calls :func:`parse` accepts."""

MAX_OUTPUT = 10_000_000
"""Longest text :func:`to_expression` and :func:`to_latex` write, in characters. A
shared subexpression is written out at every use, so a small graph with much sharing
can stand for an enormous formula; that is refused before any text is built."""

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan}
"""Names :func:`parse` knows without ``variables`` (a variable of the same name wins)."""

_CMP, _ADD, _MUL, _UNARY, _POW, _ATOM = 1, 2, 3, 4, 5, 6
"""Binding strength, loosest first (the grammar in the module docstring)."""

_BINARY: dict[str, tuple[str, int, bool]] = {
    # token: (op name, precedence, right-associative)
    "+": ("add", _ADD, False), "-": ("sub", _ADD, False),
    "*": ("mul", _MUL, False), "/": ("div", _MUL, False),
    "^": ("pow", _POW, True), "**": ("pow", _POW, True),
    "==": ("eq", _CMP, False), "!=": ("ne", _CMP, False),
    "<": ("lt", _CMP, False), "<=": ("le", _CMP, False),
    ">": ("gt", _CMP, False), ">=": ("ge", _CMP, False),
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_OPERATORS_2 = frozenset({"**", "==", "!=", "<=", ">="})
_OPERATORS_1 = frozenset("+-*/^<>")
_SPACE = frozenset(" \t\r\n")


# ----------------------------------------------------------------------------- functions


@dataclass(frozen=True)
class _Function:
    """A callable name: the op-table row it applies and the public function that does."""

    name: str
    op: Op
    call: Callable[..., Value]


def _builtin_functions() -> dict[str, _Function]:
    """Every public op function of :mod:`scalar_autograd.functional` (its ``__all__``),
    under its public name, and under the op's own name where that differs (``min``,
    ``max``). Derived from the table: a new op with a public spelling is callable."""
    row_of: dict[int, Op] = {}
    for op in _ops.OPS:
        fn = getattr(functional, op.function, None)
        if fn is not None:
            row_of[id(fn)] = op
    table: dict[str, _Function] = {}
    for name in functional.__all__:
        fn = getattr(functional, name)
        row = row_of.get(id(fn))
        if row is not None:  # custom_op makes ops; it is not one
            table[name] = _Function(name, row, fn)
    for op in _ops.OPS:
        if op.name not in table and op.function in table:
            table[op.name] = _Function(op.name, op, table[op.function].call)
    return table


FUNCTIONS: dict[str, _Function] = _builtin_functions()
"""The built-in functions :func:`parse` calls, by name (registered custom ops are
looked up when called)."""


def _arity_text(arity: int) -> str:
    if arity == VARIADIC:
        return "any number of arguments"
    return f"{arity} argument" + ("" if arity == 1 else "s")


# ----------------------------------------------------------------------------- tokens

_NUM, _IDENT, _OP, _OPEN, _CLOSE, _COMMA, _END = "number", "name", "op", "(", ")", ",", "end"


class _Token(NamedTuple):
    kind: str
    text: str
    pos: int  # 0-based index in the text


def _short(text: str) -> str:
    """``text`` quoted, shortened to about 30 characters."""
    return repr(text if len(text) <= 30 else text[:26] + "...")


def _describe(token: _Token) -> str:
    if token.kind == _END:
        return "end of input"
    if token.kind in (_NUM, _IDENT):
        return f"{token.kind} {_short(token.text)}"
    return f"'{token.text}'"


def _excerpt(text: str, pos: int) -> str:
    """The text around ``pos`` (at most about 70 characters) and a caret under it."""
    start = max(0, pos - 40)
    end = min(len(text), max(pos, start) + 30)
    prefix = "..." if start > 0 else ""
    suffix = "..." if end < len(text) else ""
    shown = "".join(ch if ch.isprintable() else " " if ch in _SPACE else "?"
                    for ch in text[start:end])
    return f"  {prefix}{shown}{suffix}\n  {' ' * (len(prefix) + pos - start)}^"


def _error(text: str, pos: int, message: str) -> ValueError:
    return ValueError(f"parse error at column {pos + 1}: {message}\n{_excerpt(text, pos)}")


def _character(ch: str) -> str:
    code = f"U+{ord(ch):04X}"
    return f"'{ch}' ({code})" if ch.isprintable() and not ch.isspace() else code


def _tokens(text: str) -> Iterator[_Token]:
    """The tokens of ``text``, made one at a time (an error stops at its position)."""
    n = len(text)
    i = 0
    while True:
        while i < n and text[i] in _SPACE:
            i += 1
        if i == n:
            yield _Token(_END, "", n)
            return
        ch = text[i]
        if ch.isascii() and (ch.isdigit() or ch == "."):
            match = _NUMBER.match(text, i)
            if match is None:
                raise _error(text, i, f"unexpected character {_character(ch)}")
            end = match.end()
            if end < n and text[end] in "eE" and "e" not in match.group().lower():
                # the pattern takes a complete exponent: this one has no digits
                raise _error(text, end, f"malformed number: the exponent after "
                                        f"{match.group()[:20]!r} needs digits, as in 1e-3")
            yield _Token(_NUM, match.group(), i)
            i = end
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            match = _NAME.match(text, i)
            assert match is not None  # the first character matches
            yield _Token(_IDENT, match.group(), i)
            i = match.end()
        elif ch in "(),":
            yield _Token(ch, ch, i)
            i += 1
        elif text[i:i + 2] in _OPERATORS_2:
            yield _Token(_OP, text[i:i + 2], i)
            i += 2
        elif ch in _OPERATORS_1:
            yield _Token(_OP, ch, i)
            i += 1
        else:
            hint = " (use == to compare)" if ch == "=" else ""
            raise _error(text, i, f"unexpected character {_character(ch)}{hint}")


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__} {text!r:.60}")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"text must be at most {MAX_LENGTH:,} characters long; got "
                         f"{len(text):,}")
    return text


def variables_in(text: str) -> list[str]:
    """The names :func:`parse` would look up in ``variables``, in order of first use.

    Every name not directly followed by ``(`` counts, the constants ``pi``, ``e``,
    ``inf`` and ``nan`` included (a variable of that name would replace them).

    Raises:
        TypeError: ``text`` is not a str.
        ValueError: ``text`` is too long or has a character no token starts with.

    Example:
        >>> variables_in("a*exp(-b*t) + c + a")
        ['a', 'b', 't', 'c']
    """
    _check_text(text)
    found: dict[str, None] = {}
    previous: _Token | None = None
    for token in _tokens(text):
        if previous is not None and previous.kind == _IDENT and token.kind != _OPEN:
            found.setdefault(previous.text)
        previous = token
    return list(found)


# ----------------------------------------------------------------------------- parser


class _Operand:
    """A parsed operand: its Value, and whether it is a number written in the text
    (a literal, possibly negated: ``x^-2`` keeps a constant exponent)."""

    __slots__ = ("value", "literal")

    def __init__(self, value: Value, literal: bool) -> None:
        self.value = value
        self.literal = literal


class _Frame:
    """An entry of the operator stack: a binary or unary operator, ``(`` or a call."""

    __slots__ = ("kind", "symbol", "prec", "pos", "function", "count")

    def __init__(self, kind: str, symbol: str, prec: int, pos: int,
                 function: Any = None) -> None:
        self.kind = kind          # "binary", "unary", "paren" or "call"
        self.symbol = symbol      # the operator, or the function's name
        self.prec = prec
        self.pos = pos
        self.function = function  # a _Function or a custom definition, for calls
        self.count = 0            # arguments completed so far, for calls


class _Variables:
    """The ``variables`` mapping, checked, with one leaf per number-valued name."""

    def __init__(self, variables: Mapping[str, Value | float] | None) -> None:
        if variables is None:
            variables = {}
        elif not isinstance(variables, Mapping):
            raise TypeError(f"variables must be a mapping of names to Values or numbers; "
                            f"got {type(variables).__name__} {variables!r:.60}")
        self.given: dict[str, Value | float] = {}
        for key, value in variables.items():
            if not isinstance(key, str):
                raise TypeError(f"variables' keys must be str names; got "
                                f"{type(key).__name__} {key!r:.60}")
            if not isinstance(value, Value) and (
                    not isinstance(value, numbers.Real) or isinstance(value, bool)):
                raise TypeError(f"variables[{key!r:.40}] must be a Value or a real number; "
                                f"got {type(value).__name__} {value!r:.60}")
            self.given[key] = value
        self.leaves: dict[str, Value] = {}

    def get(self, name: str) -> _Operand | None:
        if name in self.given:
            value = self.given[name]
            if isinstance(value, Value):
                return _Operand(value, False)
            leaf = self.leaves.get(name)
            if leaf is None:
                leaf = self.leaves[name] = Value(float(value), label=name)
            return _Operand(leaf, False)
        if name in CONSTANTS:
            return _Operand(Value(CONSTANTS[name]), True)
        return None

    def known(self) -> str:
        names = sorted(self.given)
        shown = ", ".join(names[:20]) + (f", ... ({len(names) - 20} more)"
                                         if len(names) > 20 else "")
        return (f"known names: {shown}; " if names else "no variables were given; ") + \
            f"constants: {', '.join(CONSTANTS)}"


def parse(text: str, variables: Mapping[str, Value | float] | None = None) -> Value:
    """Build the Value graph of a formula (the grammar is in the module docstring).

    Args:
        text: the formula, at most :data:`MAX_LENGTH` characters, nested at most
            :data:`MAX_DEPTH` deep.
        variables: the Value (used as is, every time the name occurs) or number (one
            constant leaf labelled with the name) of each name in the formula.

    Returns:
        The formula's value, a graph of table ops: ``x^c`` with a number ``c`` is
        ``pow`` (never computes ``log x``), any other power ``pow_value``; a minus sign
        before a number makes a negative constant.

    Raises:
        TypeError: ``text`` is not a str, or ``variables`` is not a mapping of str to
            Values and real numbers.
        ValueError: the formula is malformed, too long or too deep, names an unknown
            variable or function, or calls one with the wrong number of arguments; the
            message gives the column (from 1) and what was expected, with the text and
            a caret under the place.

    Example:
        >>> parse("2^-1 + 2^3^2").data        # 0.5 + 2^9
        512.5
        >>> a = Value(3.0, label="a")
        >>> parse("max(a, 4) * -a", {"a": a}).data
        -12.0
        >>> parse("1 +")
        Traceback (most recent call last):
        ...
        ValueError: parse error at column 4: expected an operand after '+', got end of input
          1 +
             ^
    """
    _check_text(text)
    with gc_paused():  # a long formula makes many Values: see graph.gc_paused
        return _Parser(text, _Variables(variables)).run()


class _Stream:
    """The tokens of a text with one token of look-ahead."""

    def __init__(self, text: str) -> None:
        self._tokens = _tokens(text)
        self._ahead: _Token | None = None

    def next(self) -> _Token:
        token = self._ahead if self._ahead is not None else next(self._tokens)
        self._ahead = None
        return token

    def peek(self) -> _Token:
        if self._ahead is None:
            self._ahead = next(self._tokens)
        return self._ahead


class _Parser:
    """Shunting-yard over the token stream: an operand stack and an operator stack,
    no recursion; every ``(`` and call counts towards :data:`MAX_DEPTH`."""

    def __init__(self, text: str, names: _Variables) -> None:
        self.text = text
        self.names = names
        self.stream = _Stream(text)
        self.operands: list[_Operand] = []
        self.frames: list[_Frame] = []
        self.depth = 0

    def error(self, token: _Token | int, message: str) -> ValueError:
        pos = token if isinstance(token, int) else token.pos
        return _error(self.text, pos, message)

    def open(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(token, f"parentheses and calls nest deeper than {MAX_DEPTH} "
                                    f"levels")

    def run(self) -> Value:
        previous: _Token | None = None
        expect_operand = True
        while True:
            token = self.stream.next()
            if expect_operand:
                expect_operand = self.operand(token, previous)
            elif self.operator(token, previous):
                assert len(self.operands) == 1
                return self.operands[0].value
            else:
                expect_operand = token.kind in (_OP, _COMMA)
            previous = token

    def operand(self, token: _Token, previous: _Token | None) -> bool:
        """Handle ``token`` where an operand is expected; whether one still is."""
        kind = token.kind
        if kind == _NUM:
            self.operands.append(_Operand(Value(float(token.text)), True))
            return False
        if kind == _IDENT:
            if self.stream.peek().kind == _OPEN:
                self.open(self.stream.next())
                self.frames.append(_Frame("call", token.text, 0, token.pos,
                                          function=_function(self.text, token, self.names)))
                if self.stream.peek().kind == _CLOSE:  # no arguments
                    self.stream.next()
                    self.depth -= 1
                    _finish_call(self.text, self.frames.pop(), self.operands, 0)
                    return False
                return True
            operand = self.names.get(token.text)
            if operand is None:
                raise self.error(token, f"unknown name {_short(token.text)}; "
                                        f"{self.names.known()}")
            self.operands.append(operand)
            return False
        if kind == _OPEN:
            self.open(token)
            self.frames.append(_Frame("paren", "(", 0, token.pos))
            return True
        if kind == _OP and token.text in ("-", "+"):
            self.frames.append(_Frame("unary", token.text, _UNARY, token.pos))
            return True
        after = f" after {_describe(previous)}" if previous is not None else ""
        raise self.error(token, f"expected an operand{after}, got {_describe(token)}")

    def operator(self, token: _Token, previous: _Token | None) -> bool:
        """Handle ``token`` after an operand; whether the text is complete."""
        kind, frames = token.kind, self.frames
        if kind == _OP:
            _, prec, right = _BINARY[token.text]
            _reduce(frames, self.operands, prec, right)
            if prec == _CMP and frames and frames[-1].kind == "binary" \
                    and frames[-1].prec == _CMP:
                raise self.error(token, f"comparisons do not chain: put parentheses around "
                                        f"the '{frames[-1].symbol}' comparison at column "
                                        f"{frames[-1].pos + 1}")
            frames.append(_Frame("binary", token.text, prec, token.pos))
            return False
        if kind == _CLOSE:
            _reduce(frames, self.operands, 0, False)
            if not frames:
                raise self.error(token, "unmatched ')'")
            frame = frames.pop()
            self.depth -= 1
            if frame.kind == "call":
                _finish_call(self.text, frame, self.operands, frame.count + 1)
            return False
        if kind == _COMMA:
            _reduce(frames, self.operands, 0, False)
            if not frames or frames[-1].kind != "call":
                raise self.error(token, "',' outside the arguments of a function call")
            frames[-1].count += 1
            return False
        if kind == _END:
            _reduce(frames, self.operands, 0, False)
            if frames:
                frame = frames[-1]
                if frame.kind == "call":
                    what, opened = f"'{frame.symbol}('", frame.pos + len(frame.symbol)
                else:
                    what, opened = "'('", frame.pos
                raise self.error(token, f"expected ')' to close {what} at column "
                                        f"{opened + 1}, got end of input")
            return True
        described = _describe(previous) if previous is not None else "the operand"
        raise self.error(token, f"expected an operator after {described}, got "
                                f"{_describe(token)} (write '*' to multiply)")


def _function(text: str, token: _Token, names: _Variables) -> Any:
    """The built-in function or custom op definition called ``token.text``."""
    found = FUNCTIONS.get(token.text)
    if found is not None:
        return found
    try:
        return _ops.custom_definition(token.text)
    except KeyError:
        pass
    hint = ""
    if token.text in names.given or token.text in CONSTANTS:
        hint = f" ({_short(token.text)} is a variable: write '*' to multiply)"
    raise _error(text, token.pos, f"unknown function {_short(token.text)}{hint}; functions: "
                                  f"{', '.join(sorted(FUNCTIONS))}, and registered custom ops")


def _reduce(frames: list[_Frame], operands: list[_Operand], prec: int, right: bool) -> None:
    """Apply the stacked operators that bind tighter than an incoming binary operator of
    ``prec`` (``0``: all of them, down to the innermost ``(`` or call)."""
    while frames:
        top = frames[-1]
        if top.kind not in ("binary", "unary"):
            return
        if top.prec < prec or (top.prec == prec and (right or prec == _CMP)):
            return
        frames.pop()
        if top.kind == "unary":
            operand = operands.pop()
            if top.symbol == "+":
                operands.append(operand)
            elif operand.literal:
                operands.append(_Operand(Value(-operand.value.data), True))
            else:
                operands.append(_Operand(-operand.value, False))
            continue
        b = operands.pop()
        a = operands.pop()
        name = _BINARY[top.symbol][0]
        if name == "pow":
            result = (functional.pow(a.value, b.value.data) if b.literal
                      else functional.pow_value(a.value, b.value))
        else:
            result = getattr(functional, name)(a.value, b.value)
        operands.append(_Operand(result, False))


def _finish_call(text: str, frame: _Frame, operands: list[_Operand], count: int) -> None:
    """Apply the called function to its ``count`` arguments (the top of ``operands``)."""
    args = operands[len(operands) - count:] if count else []
    del operands[len(operands) - count:]
    function = frame.function
    if isinstance(function, _Function):
        arity, name, op_name = function.op.arity, function.name, function.op.name
    else:
        arity, name, op_name = function.arity, function.name, ""
    if arity != VARIADIC and count != arity:
        raise _error(text, frame.pos, f"{name} takes {_arity_text(arity)}; got {count}")
    values = [a.value for a in args]
    try:
        if not isinstance(function, _Function):
            result = functional.CustomOp(function)(*values)
        elif arity == VARIADIC:
            result = function.call(values)
        elif op_name == "pow":
            if not args[1].literal:
                raise ValueError(f"{name}(x, c) needs a number c as its exponent; for any "
                                 f"other exponent write x^y or pow_value(x, y)")
            result = function.call(values[0], values[1].data)
        else:
            result = function.call(*values)
    except (TypeError, ValueError) as exc:
        raise _error(text, frame.pos, f"{name}(...): {exc}") from None
    operands.append(_Operand(result, False))


# ----------------------------------------------------------------------------- writing

_INFIX: dict[str, tuple[str, int, bool]] = {
    # op name: (symbol, precedence, right-associative)
    "add": ("+", _ADD, False), "sub": ("-", _ADD, False),
    "mul": ("*", _MUL, False), "div": ("/", _MUL, False),
    "pow": ("^", _POW, True), "pow_value": ("^", _POW, True),
    "eq": ("==", _CMP, False), "ne": ("!=", _CMP, False),
    "lt": ("<", _CMP, False), "le": ("<=", _CMP, False),
    "gt": (">", _CMP, False), "ge": (">=", _CMP, False),
}

_Part = str | tuple[int, bool]
"""A piece of written text: a string, or (record index of an argument, parenthesised)."""


class _Record(NamedTuple):
    prec: int
    parts: list[_Part]
    size: int          # characters of the whole text of this node
    simple: bool       # a name or a plain number: a LaTeX power base needing no brackets


def _needs_parens(child: int, prec: int, right: bool, side: str) -> bool:
    """Whether an argument of binding ``child`` needs parentheses as the ``side``
    operand of an infix operator of ``prec`` (associativity ``right``)."""
    if child != prec:
        if prec == _POW and side == "right" and child == _UNARY:
            return False  # 2^-x: the exponent may be a unary minus
        return child < prec
    if prec == _CMP:
        return True
    return right if side == "left" else not right


class _Namer:
    """Names for the leaves: given, then labels (made into names), then ``x0, x1...``."""

    def __init__(self, names: Mapping[Value, str] | None, raw_labels: bool = False) -> None:
        self.raw_labels = raw_labels  # labels as they are (LaTeX escapes them)
        self.taken: set[str] = {"inf", "nan"}  # numbers; a leaf of that name is renamed
        self.by_id: dict[int, str] = {}
        self.counter = 0
        if names is None:
            return
        if not isinstance(names, Mapping):
            raise TypeError(f"names must be a mapping of leaf Values to names; got "
                            f"{type(names).__name__} {names!r:.60}")
        for leaf, name in names.items():
            if not isinstance(leaf, Value):
                raise TypeError(f"names' keys must be Values; got {type(leaf).__name__}")
            if not isinstance(name, str):
                raise TypeError(f"names' values must be str; got {type(name).__name__} "
                                f"{name!r:.60}")
            if not leaf.is_leaf:
                raise ValueError(f"names may name leaf Values only; got a result of "
                                 f"{leaf.op.label if leaf.op else ''} for {name!r:.40}")
            if not _NAME.fullmatch(name):
                raise ValueError(f"names must be names parse() reads (ASCII letters, digits "
                                 f"and '_', not starting with a digit); got {name!r:.60}")
            if name in self.taken:
                raise ValueError(f"names must be distinct and not 'inf' or 'nan'; got "
                                 f"{name!r} twice or reserved")
            self.taken.add(name)
            self.by_id[id(leaf)] = name

    def _claim(self, base: str) -> str:
        name, k = base, 2
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def name(self, leaf: Value) -> str | None:
        """The leaf's name, or ``None`` for a constant (written as its number)."""
        found = self.by_id.get(id(leaf))
        if found is not None:
            return found
        if leaf.label:
            base = leaf.label if self.raw_labels or _NAME.fullmatch(leaf.label) else \
                re.sub(r"[^A-Za-z0-9_]", "_", leaf.label, flags=re.ASCII)[:64]
            if not self.raw_labels and (not base or base[0].isdigit()):
                base = "v_" + base
            found = self._claim(base)
        elif leaf.requires_grad:
            while f"x{self.counter}" in self.taken:
                self.counter += 1
            found = self._claim(f"x{self.counter}")
        else:
            return None
        self.by_id[id(leaf)] = found
        return found


def _number(x: float) -> tuple[str, int]:
    """``x`` as text :func:`parse` reads back to the same bits, and its binding."""
    if x != x:
        return ("-nan", _UNARY) if math.copysign(1.0, x) < 0 else ("nan", _ATOM)
    if math.isinf(x):
        return ("inf", _ATOM) if x > 0 else ("-inf", _UNARY)
    text = repr(x)
    return text, _UNARY if text.startswith("-") else _ATOM


class _Writer:
    """Turns a graph into records (iteratively, each node once) and then into text."""

    parens = ("(", ")")
    raw_labels = False

    def __init__(self, names: Mapping[Value, str] | None) -> None:
        self.namer = _Namer(names, self.raw_labels)
        self.records: list[_Record] = []
        self.extra = len(self.parens[0]) + len(self.parens[1])

    def record(self, prec: int, parts: list[_Part], simple: bool = False) -> _Record:
        size = 0
        records = self.records
        for part in parts:
            if isinstance(part, str):
                size += len(part)
            else:
                size += records[part[0]].size + (self.extra if part[1] else 0)
        return _Record(prec, parts, size, simple)

    def write(self, value: Any) -> str:
        if not isinstance(value, Value):
            raise TypeError(f"value must be a Value; got {type(value).__name__} {value!r:.60}")
        with gc_paused():  # many small objects: the cyclic collector would rescan them
            return self._write(value)

    def _write(self, value: Value) -> str:
        index: dict[int, int] = {}
        order = post_order([value])
        for node in order:  # labels first, so that x0, x1, ... go round them
            if node.op is None and node.label:
                self.namer.name(node)
        for node in order:
            args = [index[id(a)] for a in node.args]
            if node.op is None:
                rec = self.leaf(node)
            else:
                rec = self.node(node.op, args)
            index[id(node)] = len(self.records)
            self.records.append(rec)
        root = self.records[index[id(value)]]
        if root.size > MAX_OUTPUT:
            raise ValueError(f"the formula would be {root.size:,} characters long, more than "
                             f"MAX_OUTPUT = {MAX_OUTPUT:,} (shared subexpressions are written "
                             f"out at every use)")
        return self.emit(index[id(value)])

    def emit(self, root: int) -> str:
        out: list[str] = []
        open_, close = self.parens
        stack: list[_Part] = [(root, False)]
        while stack:
            part = stack.pop()
            if isinstance(part, str):
                out.append(part)
                continue
            i, wrap = part
            if wrap:
                stack.append(close)
            stack.extend(reversed(self.records[i].parts))
            if wrap:
                stack.append(open_)
        return "".join(out)

    def arg(self, i: int, prec: int, right: bool, side: str) -> _Part:
        return (i, _needs_parens(self.records[i].prec, prec, right, side))

    def leaf(self, leaf: Value) -> _Record:
        name = self.namer.name(leaf)
        if name is not None:
            return self.record(_ATOM, [name], simple=True)
        text, prec = _number(leaf.data)
        return self.record(prec, [text], simple=prec == _ATOM)

    def call(self, name: str, args: list[int]) -> list[_Part]:
        parts: list[_Part] = [name + "("]
        for k, a in enumerate(args):
            if k:
                parts.append(", ")
            parts.append((a, False))
        parts.append(")")
        return parts

    def node(self, op: Op, args: list[int]) -> _Record:
        if op.name in _INFIX:
            symbol, prec, right = _INFIX[op.name]
            middle = symbol if prec == _POW else f" {symbol} "
            return self.record(prec, [self.arg(args[0], prec, right, "left"), middle,
                                      self.arg(args[1], prec, right, "right")])
        if op.name == "neg":
            return self.record(_UNARY, ["-", self.arg(args[0], _UNARY, True, "right")])
        return self.record(_ATOM, self.call(op.label if op.category == "custom" else op.name,
                                            args))


def to_expression(value: Value, names: Mapping[Value, str] | None = None) -> str:
    """Write a graph as infix text that :func:`parse` reads back.

    Parentheses are written only where the structure needs them, associativity
    included: ``(a - b) - c`` is ``a - b - c``, ``a - (b - c)`` keeps its parentheses
    (as ``a + (b + c)``: floating-point addition is not associative), ``(-x)^2`` and
    ``-x^2`` differ, and ``^`` groups to the right. Other ops are calls by their table
    name (``sin(x)``, ``min(a, b)``, ``where(c, a, b)``, ``sum(a, b, c)``).

    Leaves are written by ``names``, else by their label (a label that is not a name
    has every other character replaced by ``_``; two leaves with one label become
    ``x`` and ``x_2``), else a leaf that requires grad as ``x0``, ``x1``, ... and any
    other leaf as its number, with ``repr``: ``parse`` gives the same bits back (the
    sign of a nan too, not its payload). The walk is iterative; a formula longer than
    :data:`MAX_OUTPUT` characters is refused.

    Args:
        value: the graph's output.
        names: optional names of leaf Values (names ``parse`` reads).

    Raises:
        TypeError: ``value`` is not a Value, or ``names`` is not a mapping of Values to
            str.
        ValueError: a name ``parse`` cannot read, a name given twice, a computed Value
            in ``names``, or a formula longer than :data:`MAX_OUTPUT`.

    Example:
        >>> a, b, c = Value(1.0, label="a"), Value(2.0, label="b"), Value(3.0, label="c")
        >>> to_expression(a - (b - c)), to_expression((a - b) - c)
        ('a - (b - c)', 'a - b - c')
        >>> to_expression((-a) ** 2), to_expression(-(a ** 2)), to_expression(a ** (b ** c))
        ('(-a)^2.0', '-a^2.0', 'a^b^c')
        >>> to_expression(functional.atan2(a, 0.5) * Value(4.0, requires_grad=True))
        'atan2(a, 0.5) * x0'
    """
    return _Writer(names).write(value)


# ----------------------------------------------------------------------------- LaTeX

_LATEX_CALL = {
    "sin": r"\sin", "cos": r"\cos", "tan": r"\tan", "asin": r"\arcsin", "acos": r"\arccos",
    "atan": r"\arctan", "sinh": r"\sinh", "cosh": r"\cosh", "tanh": r"\tanh",
    "log": r"\log", "min": r"\min", "max": r"\max", "sigmoid": r"\sigma",
}
_LATEX_CMP = {"eq": "=", "ne": r"\neq", "lt": "<", "le": r"\leq", "gt": ">", "ge": r"\geq"}
_LATEX_TEXT_ESCAPES = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
    "^": r"\textasciicircum{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}",
}


def _latex_text(text: str) -> str:
    """``text`` for LaTeX's ``\\text{...}``: specials escaped, control characters ``?``."""
    return "".join(_LATEX_TEXT_ESCAPES.get(ch, ch if ch.isprintable() else "?")
                   for ch in text)


def latex_name(name: str) -> str:
    r"""A name in math mode: ``x``, ``x_{12}`` for ``x12`` or ``x_12``, ``\mathit{rate}``,
    anything else ``\text{...}`` with LaTeX's special characters escaped.

    Example:
        >>> print(latex_name("x"), latex_name("x12"), latex_name("rate"), latex_name("a&b"))
        x x_{12} \mathit{rate} \text{a\&b}
    """
    if re.fullmatch(r"[A-Za-z]", name):
        return name
    match = re.fullmatch(r"([A-Za-z])_?([0-9]+)", name)
    if match:
        return f"{match.group(1)}_{{{match.group(2)}}}"
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name):
        return rf"\mathit{{{name}}}"
    return rf"\text{{{_latex_text(name)}}}"


def _latex_number(x: float) -> tuple[str, int, bool]:
    """``x`` in LaTeX: its text, binding, and whether it is a simple power base."""
    if x != x:
        return r"\mathrm{NaN}", _ATOM, True
    if math.isinf(x):
        return (r"\infty", _ATOM, True) if x > 0 else (r"-\infty", _UNARY, False)
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    magnitude = abs(x)
    if magnitude == int(magnitude) and magnitude < 1e15:
        text = str(int(magnitude))
    else:
        text = repr(magnitude)
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = rf"{mantissa} \cdot 10^{{{int(exponent)}}}"
        return sign + text, _UNARY if sign else _MUL, False
    return sign + text, _UNARY if sign else _ATOM, not sign


class _LatexWriter(_Writer):
    parens = (r"\left(", r"\right)")
    raw_labels = True

    def leaf(self, leaf: Value) -> _Record:
        name = self.namer.name(leaf)
        if name is not None:
            return self.record(_ATOM, [latex_name(name)], simple=True)
        text, prec, simple = _latex_number(leaf.data)
        return self.record(prec, [text], simple=simple)

    def call(self, name: str, args: list[int]) -> list[_Part]:
        parts: list[_Part] = [name + r"\left("]
        for k, a in enumerate(args):
            if k:
                parts.append(", ")
            parts.append((a, False))
        parts.append(r"\right)")
        return parts

    def arg(self, i: int, prec: int, right: bool, side: str) -> _Part:
        if side == "right" and self.records[i].prec == _UNARY:
            return (i, True)  # x \cdot \left(-y\right), -\left(-x\right)
        return super().arg(i, prec, right, side)

    def base(self, i: int) -> _Part:
        return (i, not self.records[i].simple)

    def node(self, op: Op, args: list[int]) -> _Record:
        name = op.name
        if name in ("add", "sub", "mul"):
            symbol, prec, right = _INFIX[name]
            middle = r" \cdot " if name == "mul" else f" {symbol} "
            return self.record(prec, [self.arg(args[0], prec, right, "left"), middle,
                                      self.arg(args[1], prec, right, "right")])
        if name in _LATEX_CMP:
            return self.record(_CMP, [self.arg(args[0], _CMP, False, "left"),
                                      f" {_LATEX_CMP[name]} ",
                                      self.arg(args[1], _CMP, False, "right")])
        if name == "sum":
            parts: list[_Part] = []
            for k, a in enumerate(args):
                if k:
                    parts.append(" + ")
                parts.append(self.arg(a, _ADD, False, "right" if k else "left"))
            return self.record(_ADD, parts)
        if name == "neg":
            return self.record(_UNARY, ["-", self.arg(args[0], _UNARY, True, "right")])
        if name == "div":
            return self.record(_ATOM, [r"\frac{", (args[0], False), "}{", (args[1], False),
                                       "}"])
        if name == "reciprocal":
            return self.record(_ATOM, [r"\frac{1}{", (args[0], False), "}"])
        if name in ("pow", "pow_value"):
            return self.record(_POW, [self.base(args[0]), "^{", (args[1], False), "}"])
        if name in ("square", "cube"):
            power = "2" if name == "square" else "3"
            return self.record(_POW, [self.base(args[0]), f"^{{{power}}}"])
        if name == "exp":
            return self.record(_POW, ["e^{", (args[0], False), "}"])
        if name == "sqrt":
            return self.record(_ATOM, [r"\sqrt{", (args[0], False), "}"])
        if name == "abs":
            return self.record(_ATOM, [r"\left|", (args[0], False), r"\right|"])
        if name in ("floor", "ceil"):
            left, right_ = (r"\lfloor", r"\rfloor") if name == "floor" else (r"\lceil",
                                                                          r"\rceil")
            return self.record(_ATOM, [rf"\left{left} ", (args[0], False), rf" \right{right_}"])
        if name in _LATEX_CALL:
            return self.record(_ATOM, self.call(_LATEX_CALL[name], args))
        label = op.label if op.category == "custom" else name
        return self.record(_ATOM, self.call(rf"\operatorname{{{_latex_text(label)}}}", args))


def to_latex(value: Value, names: Mapping[Value, str] | None = None) -> str:
    r"""Write a graph as LaTeX math (for display; :func:`to_expression` is for reading
    back).

    ``\frac{a}{b}``, ``\sqrt{x}``, ``x^{2}``, ``e^{x}``, ``\sin\left(x\right)``,
    ``a \cdot b``, ``\left|x\right|``, ``\operatorname{atan2}\left(y, x\right)`` and
    the like; parentheses as :func:`to_expression` places them, and around any power
    base that is not a name or a plain number. Leaves are named as by
    :func:`to_expression`: one letter as is, ``x12`` as ``x_{12}``, other names in
    ``\mathit``, and labels with other characters in ``\text{...}`` with LaTeX's
    special characters escaped. Iterative, limited to :data:`MAX_OUTPUT` characters.

    Args:
        value: the graph's output.
        names: optional names of leaf Values (as for :func:`to_expression`).

    Raises:
        TypeError, ValueError: as :func:`to_expression`.

    Example:
        >>> x, y = Value(1.0, label="x"), Value(2.0, label="y")
        >>> print(to_latex(functional.sqrt(x) / (y + 1) - functional.atan2(y, x) * x ** 2))
        \frac{\sqrt{x}}{y + 1} - \operatorname{atan2}\left(y, x\right) \cdot x^{2}
        >>> print(to_latex(Value(1.0, label="a_b{c}") * functional.exp(-x)))
        \text{a\_b\{c\}} \cdot e^{-x}
    """
    return _LatexWriter(names).write(value)


# ----------------------------------------------------------------------------- derivatives


def derivatives(output: Value, params: Sequence[Value]) -> list[Value]:
    """The partial derivatives of ``output`` with respect to ``params``, as Value graphs.

    They are the IR's reverse mode (:func:`scalar_autograd.ir.autodiff.reverse`, the
    op table's ``partials`` rules with the builder's constant folding and IEEE-safe
    simplification: ``x*1`` is ``x``, ``x*0`` stays) converted back to Values, with a
    few more rewrites that keep every bit (``a + -b`` is ``a - b``, ``x^1`` is ``x``:
    see ``_display_node``). Every
    leaf of ``output`` that has a label or requires grad stays a leaf of the
    derivatives (the very same Value); other leaves are constants. Meant for showing
    derivatives (:func:`to_latex`); to compute gradients, use ``backward()`` or
    ``sa.compile``.

    Args:
        output: the function.
        params: distinct leaf Values to differentiate by.

    Raises:
        TypeError: ``output`` is not a Value or ``params`` not a sequence of Values.
        ValueError: a param that is not a leaf, or one given twice.

    Example:
        >>> a, t = Value(2.0, label="a", requires_grad=True), Value(0.5, label="t")
        >>> [to_expression(d) for d in derivatives(a * functional.exp(-a * t), [a])]
        ['exp(-a * t) - a * exp(-a * t) * t']
    """
    if not isinstance(output, Value):
        raise TypeError(f"output must be a Value; got {type(output).__name__} {output!r:.60}")
    if isinstance(params, Value) or not isinstance(params, Sequence):
        raise TypeError(f"params must be a sequence of leaf Values; got "
                        f"{type(params).__name__}")
    seen: set[int] = set()
    for i, p in enumerate(params):
        if not isinstance(p, Value):
            raise TypeError(f"params[{i}] must be a Value; got {type(p).__name__}")
        if not p.is_leaf:
            raise ValueError(f"params[{i}] must be a leaf Value; got the result of "
                             f"{p.op.label if p.op else ''}")
        if id(p) in seen:
            raise ValueError(f"params[{i}] appears twice in params")
        seen.add(id(p))
    params = list(params)
    inputs = [n for n in topological_order(output)
              if n.is_leaf and id(n) not in seen and (n.label or n.requires_grad)]
    program, _ = trace([output], params, inputs)
    gradient = reverse(program)
    slots = params + inputs
    values: list[Value] = []
    for kind, payload in gradient.nodes:
        if kind == "input":
            values.append(slots[payload])
        elif kind == "const":
            values.append(Value(payload))
        else:
            values.append(_display_node(kind, [values[a] for a in payload]))
    return [values[o] for o in gradient.outputs[gradient.n_values:]]


_COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})


def _is(v: Value, name: str) -> bool:
    return v.op is not None and v.op.name == name


def _display_node(kind: str, args: list[Value]) -> Value:
    """Op ``kind`` on ``args``, rewritten for reading where the rewrite gives the same
    bits for every input (IEEE-754 defines ``a - b`` as ``a + (-b)``; ``pow(x, 1)`` is
    ``x`` in C99; a comparison is exactly 0 or 1, so ``g * c`` is ``g`` where ``c`` is
    not 0): ``x^1`` is ``x``, ``a + -b`` is ``a - b``, ``a - -b`` is ``a + b``,
    ``-a * -b`` is ``a * b``, and the selected gradient ``where(c, g * c, 0)`` of a
    comparison ``c`` is ``where(c, g, 0)``."""
    if kind == "pow" and args[1].is_leaf and args[1].data == 1.0:
        return args[0]
    if kind == "add" and _is(args[1], "neg"):
        return args[0] - args[1].args[0]
    if kind == "add" and _is(args[0], "neg"):
        return args[1] - args[0].args[0]
    if kind == "sub" and _is(args[1], "neg"):
        return args[0] + args[1].args[0]
    if kind == "mul" and _is(args[0], "neg") and _is(args[1], "neg"):
        return args[0].args[0] * args[1].args[0]
    if kind == "where" and args[0].op is not None and args[0].op.name in _COMPARISONS \
            and _is(args[1], "mul") and any(a is args[0] for a in args[1].args):
        c, product = args[0], args[1]
        g = product.args[1] if product.args[0] is c else product.args[0]
        return apply(OPS_BY_NAME["where"], c, g, args[2])
    return apply(OPS_BY_NAME[kind], *args)
