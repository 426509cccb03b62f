"""Tracing state: guards on Python branches, concretisation errors, frozen-branch marks.

While a Python function is traced (by :func:`scalar_autograd.jit` and the transforms
built on it), a :class:`Trace` is active in the thread. Every ``bool()`` of a ``Value``
that depends on the traced arguments (``if``, ``while``, ``and``/``or``/``not``,
conditional expressions, builtin ``min``/``max``/``sorted``) is recorded as a
:class:`Guard` with its outcome and the ``file:line`` that asked, so the compiled code
can check the same predicate on every call. ``float()``, ``int()``,
``operator.index()``, ``.item()``, ``math.*`` functions and numpy conversions of such a
value raise :class:`ConcretizationError` naming the line and what to use instead.

Outside a trace, a ``bool()`` of a computed value marks the leaves it depends on, so
``sa.compile`` can warn (:class:`FrozenBranchWarning`) that the graph it is given may
have been shaped by a Python branch on its params.

Example:
    >>> import scalar_autograd as sa
    >>> x = sa.Value(2.0)
    >>> with tracing([x]) as t:
    ...     y = x * 2 if x > 1 else -x
    >>> [g.taken for g in t.guards], y.data
    ([True], 4.0)
"""

from __future__ import annotations

import contextlib
import contextvars
import linecache
import os
import re
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalar_autograd.value import Value

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class ConcretizationError(TypeError):
    """A traced value was needed as a concrete number (as JAX's ConcretizationTypeError).

    Raised by ``float()``, ``int()``, ``operator.index()``, ``.item()``, ``math.*`` and
    numpy conversions of a ``Value`` that depends on the arguments of a function being
    traced: its number would be frozen into the compiled code.
    """


class FrozenBranchWarning(UserWarning):
    """``sa.compile`` got a graph built after a Python branch on its params or inputs."""


@dataclass(frozen=True)
class Guard:
    """One Python branch taken while tracing.

    Attributes:
        value: the value whose truth was asked (true when non-zero; nan is true).
        taken: the outcome at the trace point.
        site: ``file:line`` of the branch (the innermost frame outside this package,
            followed by the library frame when the branch is inside the library).
    """

    value: Value
    taken: bool
    site: str


class Trace:
    """The record of one trace: which values depend on its leaves, and its guards."""

    def __init__(self, leaves: Iterable[Value]) -> None:
        self._depends: dict[Value, bool] = {leaf: True for leaf in leaves}
        self.guards: list[Guard] = []

    def depends(self, value: Value) -> bool:
        """Whether ``value`` is computed from a traced leaf (memoised, iterative)."""
        memo = self._depends
        found = memo.get(value)
        if found is not None:
            return found
        stack = [value]
        while stack:
            node = stack[-1]
            if node in memo:
                stack.pop()
                continue
            pending = [a for a in node.args if a not in memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            memo[node] = any([memo[a] for a in node.args])
        return memo[value]

    def branch(self, value: Value) -> bool:
        """``bool(value)`` while tracing: the outcome, recorded as a guard if it depends."""
        taken = value.data != 0.0
        if self.depends(value):
            self.guards.append(Guard(value, taken, call_site()))
        return taken


TRACE: contextvars.ContextVar[Trace | None] = contextvars.ContextVar(
    "scalar_autograd_trace", default=None)
"""The trace active in this thread, or ``None``."""

active_trace = TRACE.get
"""``active_trace()`` is this thread's :class:`Trace`, or ``None``."""


@contextlib.contextmanager
def tracing(leaves: Iterable[Value]) -> Iterator[Trace]:
    """Make a new :class:`Trace` of ``leaves`` active in this thread for the block."""
    trace = Trace(leaves)
    token = TRACE.set(trace)
    try:
        yield trace
    finally:
        TRACE.reset(token)


@contextlib.contextmanager
def not_tracing() -> Iterator[None]:
    """Suspend the active trace (for library code evaluating concrete numbers)."""
    token = TRACE.set(None)
    try:
        yield
    finally:
        TRACE.reset(token)


# --------------------------------------------------------------------------- sites


_MACHINERY = frozenset(os.path.join(_PACKAGE_DIR, name) for name in ("tracing.py", "value.py"))


def _user_frame() -> tuple[FrameType | None, FrameType | None]:
    """The innermost frame outside this package, and the innermost one outside the
    tracing machinery (``tracing.py``, ``value.py``): the code that asked."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename in _MACHINERY:
        frame = frame.f_back
    first = frame
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return frame, first


def _where(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def call_site() -> str:
    """``file:line`` of the user code running now (plus the library line, if any)."""
    user, first = _user_frame()
    if user is None:
        return _where(first) if first is not None else "<unknown>"
    if first is not None and first is not user:
        return f"{_where(user)} (in {_where(first)})"
    return _where(user)


def _source(frame: FrameType) -> str:
    """The source text of the expression being evaluated in ``frame``, if known."""
    code = frame.f_code
    try:
        positions = list(code.co_positions())[frame.f_lasti // 2]
    except (IndexError, AttributeError):
        positions = (frame.f_lineno, frame.f_lineno, None, None)
    start, end, col, end_col = positions
    if start is None:
        return ""
    lines = [linecache.getline(code.co_filename, n) for n in range(start, (end or start) + 1)]
    if not lines or not lines[0]:
        return ""
    if col is not None and end_col is not None:
        if len(lines) == 1:
            return lines[0][col:end_col].strip()
        lines[0], lines[-1] = lines[0][col:], lines[-1][:end_col]
    return " ".join(line.strip() for line in lines)


_MATH_CALL = re.compile(r"\bmath\.(\w+)\s*\(")
_NUMPY_CALL = re.compile(r"\b(?:np|numpy)\.(\w+)\s*\(")


def _suggestion(source: str, what: str) -> str:
    from scalar_autograd.ops import OPS  # core: the public function of every op

    public = {op.function for op in OPS}
    for pattern, module in ((_MATH_CALL, "math"), (_NUMPY_CALL, "numpy")):
        match = pattern.search(source)
        if match:
            name = match.group(1)
            alias = {"fabs": "abs", "pow": "pow_value", "fmin": "minimum",
                     "fmax": "maximum", "arctan2": "atan2", "arcsin": "asin",
                     "arccos": "acos", "arctan": "atan", "power": "pow_value",
                     "clip": "clamp"}.get(name, name)
            if alias in public:
                return f"use sa.{alias} instead of {module}.{name}: it stays in the graph"
            return (f"{module}.{name} needs a number; express it with sa functions "
                    f"(the op table lists them) so it stays in the graph")
    return ("use sa.where(cond, a, b) for a branch that stays a branch, or pass the "
            "argument as static (static_argnums) if it really is a constant")


def concretization_error(what: str) -> ConcretizationError:
    """The error for ``what`` (e.g. ``"float()"``) of a traced value, with site and advice."""
    user, first = _user_frame()
    frame = user or first
    if frame is None:
        return ConcretizationError(f"{what} of a traced value: it depends on the traced "
                                   f"arguments, so it has no fixed number")
    source = _source(frame)
    shown = f" in `{source}`" if source else ""
    return ConcretizationError(
        f"{what} of a traced value at {_where(frame)}{shown}: the value depends on the "
        f"arguments of the function being traced, so its number would be frozen into "
        f"the compiled code; {_suggestion(source, what)}"
    )


# --------------------------------------------------------------------------- eager marks

# Keyed by id(): a WeakKeyDictionary or WeakSet compares a key found in it with ``==``,
# which for a Value builds a comparison Value and asks its bool(), re-entering
# mark_branch under _marks_lock (a deadlock on the second branch on a leaf). Each
# entry's weak reference removes it when its Value dies (before the id can be reused).
class _Ref(weakref.ref):  # type: ignore[type-arg]
    __slots__ = ("key", "site")
    key: int
    site: str


def _drop_seen(ref: _Ref) -> None:
    _seen.pop(ref.key, None)


def _drop_mark(ref: _Ref) -> None:
    _marks.pop(ref.key, None)


_marks: dict[int, _Ref] = {}
_seen: dict[int, _Ref] = {}
_marks_lock = threading.Lock()


def mark_branch(value: Value) -> None:
    """Remember, on every leaf ``value`` depends on, that a Python branch asked for it.

    Called by ``Value.__bool__`` outside a trace. The walk visits each node of
    ``value``'s graph once and stops at the roots (and their arguments) of earlier
    branches (``_seen``), whose leaves are marked already: a loop branching on a
    growing graph (``while t < T: t = t + h``) walks only the new nodes, and the
    memo costs a few weak references per branch, not one per node.
    """
    seen = _seen
    visited: set[int] = set()
    stack = [value]
    leaves: list[Value] = []
    while stack:
        node = stack.pop()
        key = id(node)
        if key in visited:
            continue
        visited.add(key)
        if node.op is None:
            leaves.append(node)
        else:
            ref = seen.get(key)
            if ref is None or ref() is not node:
                stack.extend(node.args)
    with _marks_lock:
        site: str | None = None
        for leaf in leaves:
            key = id(leaf)
            if key not in _marks:
                if site is None:
                    site = call_site()
                ref = _Ref(leaf, _drop_mark)
                ref.key, ref.site = key, site
                _marks[key] = ref
        for node in (value, *value.args):
            key = id(node)
            if node.op is not None and key not in seen:
                ref = _Ref(node, _drop_seen)
                ref.key = key
                seen[key] = ref


def branch_site(leaf: Any) -> str | None:
    """Where a Python branch depended on ``leaf`` outside a trace, or ``None``."""
    ref = _marks.get(id(leaf))
    if ref is None or ref() is not leaf:
        return None
    return ref.site


def clear_branch_marks() -> None:
    """Forget every eager branch mark (for tests)."""
    with _marks_lock:
        _marks.clear()
        _seen.clear()
