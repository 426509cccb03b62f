"""Structured native code: variables, ``if``/``else``, loops and early exits over LLVM text.

The numerical drivers that run whole solves in native code (the small dense
Levenberg-Marquardt loop of :mod:`scalar_autograd.lsq.native_lm`, the batched L-BFGS)
have data-dependent control flow: tests, loops until convergence, early returns.
:class:`Code` writes them as structured code on top of
:class:`~scalar_autograd.native.emitter.FunctionEmitter`:

* variables are stack slots (``alloca`` in the entry block, :meth:`Code.var`), read with
  :meth:`Code.get` and written with :meth:`Code.set`; LLVM's ``mem2reg``/SROA turn them
  into registers, so no phi node is written by hand;
* ``with code.if_(cond):`` ... ``with code.else_():`` ...; ``with code.for_(a, b) as i:``;
  ``with code.while_(lambda: cond):``; :meth:`Code.break_` and :meth:`Code.ret` leave a
  loop or the function from anywhere;
* scalar arithmetic (:meth:`Code.f`) and comparisons (:meth:`Code.cmp`) are emitted
  without fast-math flags, so every operation is the IEEE-754 one, in the order written.

Every block is terminated: after a ``br`` or ``ret`` a fresh (unreachable) block is
opened, so structured code can never produce an ill-formed function. Names are
numbered, constants are hex bit patterns (:func:`~scalar_autograd.native.emitter.const`)
and function names are checked, so no caller string reaches the IR.

Example (``void @clip(ptr %args)``: ``x[i] = min(x[i], 1)`` for ``i < n``):
    >>> from scalar_autograd.native.engine import available, native_engine
    >>> c = Code()
    >>> n, x = c.arg(0, "i64"), c.arg(1, "ptr")
    >>> with c.for_("0", n) as i:
    ...     xi = c.load("double", x, i)
    ...     with c.if_(c.cmp(">", xi, c.const(1.0))):
    ...         c.store(c.const(1.0), x, i)
    >>> text = c.function("clip")
    >>> if available():
    ...     import ctypes, numpy as np
    ...     from scalar_autograd.native.abi import BlockCall
    ...     engine = native_engine(text, 2)
    ...     v = np.array([0.5, 3.0, -2.0])
    ...     BlockCall(engine.address("clip"), [3, v], owner=engine)()
    ...     print(v.tolist())
    ... else:
    ...     print([0.5, 1.0, -2.0])
    [0.5, 1.0, -2.0]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from scalar_autograd.native.emitter import FunctionEmitter, check_symbol, const

_FCMP = {"==": "oeq", "!=": "une", ">": "ogt", "<": "olt", ">=": "oge", "<=": "ole"}
_ICMP = {"==": "eq", "!=": "ne", ">": "sgt", "<": "slt", ">=": "sge", "<=": "sle"}
_FOP = {"+": "fadd", "-": "fsub", "*": "fmul", "/": "fdiv"}
_IOP = {"+": "add", "-": "sub", "*": "mul", "/": "sdiv"}


@dataclass
class _If:
    otherwise: str
    end: str
    tail: int       # index in ``lines`` of the else block's ``br`` to the end


class Code(FunctionEmitter):
    """One function's body as structured code (see the module docstring).

    Values are SSA names (strings) of type ``double``, ``i64`` or ``i1``; variables are
    the addresses of stack slots, made by :meth:`var`.
    """

    def __init__(self, *, inbounds: bool = False) -> None:
        super().__init__(inbounds=inbounds)
        self._allocas: list[str] = []
        self._loops: list[tuple[str, str]] = []      # (continue target, exit) labels
        self._last_if: _If | None = None
        self._returns = "void"

    # ------------------------------------------------------------------ blocks
    def _open(self, stem: str) -> str:
        """A fresh block label (without ``%``)."""
        return self.fresh(stem)[1:]

    def _jump(self, target: str) -> None:
        """``br`` to ``target``, then open an unreachable block for any code after it."""
        self.emit(f"br label %{target}")
        self.label(self._open("dead"))

    def const(self, value: float) -> str:
        """A double constant (exact bit pattern)."""
        return const(float(value))

    # ------------------------------------------------------------------ variables
    def var(self, kind: str = "double", init: str | None = None) -> str:
        """A new variable (a stack slot in the entry block), optionally set to ``init``."""
        slot = self.fresh("var")
        self._allocas.append(f"  {slot} = alloca {kind}")
        if init is not None:
            self.set(slot, init, kind)
        return slot

    def array_var(self, count: int, kind: str = "double") -> str:
        """A stack array of ``count`` elements (a fixed, small size)."""
        slot = self.fresh("arr")
        self._allocas.append(f"  {slot} = alloca {kind}, i64 {int(count)}")
        return slot

    def get(self, slot: str, kind: str = "double") -> str:
        """The value of a variable."""
        v = self.fresh("r")
        self.emit(f"{v} = load {kind}, ptr {slot}")
        return v

    def set(self, slot: str, value: str, kind: str = "double") -> None:
        """Set a variable."""
        self.emit(f"store {kind} {value}, ptr {slot}")

    def iset(self, slot: str, value: str) -> None:
        """Set an ``i64`` variable."""
        self.set(slot, value, "i64")

    def iget(self, slot: str) -> str:
        """The value of an ``i64`` variable."""
        return self.get(slot, "i64")

    # ------------------------------------------------------------------ arithmetic
    def f(self, op: str, a: str, b: str) -> str:
        """``a op b`` on doubles, ``op`` one of ``+ - * /`` (IEEE-754, no fast math)."""
        return self.op(_FOP[op], "double", a, b)

    def i(self, op: str, a: str, b: str) -> str:
        """``a op b`` on ``i64``, ``op`` one of ``+ - * /`` (``/`` truncates)."""
        return self.op(_IOP[op], "i64", a, b)

    def cmp(self, op: str, a: str, b: str) -> str:
        """An ordered comparison of doubles (false when either is nan; ``!=`` is
        unordered: true when either is nan, as in C)."""
        v = self.fresh("c")
        self.emit(f"{v} = fcmp {_FCMP[op]} double {a}, {b}")
        return v

    def icmp(self, op: str, a: str, b: str) -> str:
        """A signed comparison of ``i64`` values."""
        v = self.fresh("c")
        self.emit(f"{v} = icmp {_ICMP[op]} i64 {a}, {b}")
        return v

    def is_set(self, pointer: str) -> str:
        """``pointer`` is not null."""
        v = self.fresh("c")
        self.emit(f"{v} = icmp ne ptr {pointer}, null")
        return v

    def is_nan(self, a: str) -> str:
        """``a`` is nan."""
        v = self.fresh("c")
        self.emit(f"{v} = fcmp uno double {a}, 0.0")
        return v

    def is_finite(self, a: str) -> str:
        """``a`` is neither nan nor infinite."""
        return self.cmp("<", self.fabs(a), self.const(float("inf")))

    def logic(self, op: str, a: str, b: str) -> str:
        """``a and b`` / ``a or b`` on ``i1`` (both evaluated)."""
        v = self.fresh("c")
        self.emit(f"{v} = {dict(a='and', o='or')[op[0]]} i1 {a}, {b}")
        return v

    def not_(self, a: str) -> str:
        """Logical not of an ``i1``."""
        v = self.fresh("c")
        self.emit(f"{v} = xor i1 {a}, true")
        return v

    def select(self, cond: str, a: str, b: str, kind: str = "double") -> str:
        """``a if cond else b``."""
        v = self.fresh("s")
        self.emit(f"{v} = select i1 {cond}, {kind} {a}, {kind} {b}")
        return v

    def _intrinsic(self, name: str, *args: str) -> str:
        params = ", ".join("double" for _ in args)
        self.declarations.add(f"declare double @llvm.{name}.f64({params})")
        v = self.fresh("m")
        self.emit(f"{v} = call double @llvm.{name}.f64("
                  + ", ".join(f"double {a}" for a in args) + ")")
        return v

    def sqrt(self, a: str) -> str:
        """``sqrt(a)`` (correctly rounded)."""
        return self._intrinsic("sqrt", a)

    def fabs(self, a: str) -> str:
        """``|a|``."""
        return self._intrinsic("fabs", a)

    def copysign(self, a: str, b: str) -> str:
        """``|a|`` with the sign bit of ``b`` (C's and Python's ``copysign``)."""
        return self._intrinsic("copysign", a, b)

    def neg(self, a: str) -> str:
        """``-a`` (flips the sign bit, as numpy's ``negative``: ``-0.0`` for ``0.0``)."""
        v = self.fresh("t")
        self.emit(f"{v} = fneg double {a}")
        return v

    def max(self, a: str, b: str) -> str:
        """Python's ``max(a, b)``: ``b if b > a else a`` (nan in ``b`` is ignored)."""
        return self.select(self.cmp(">", b, a), b, a)

    def min(self, a: str, b: str) -> str:
        """Python's ``min(a, b)``: ``b if b < a else a``."""
        return self.select(self.cmp("<", b, a), b, a)

    def to_int(self, a: str) -> str:
        """A double as an ``i64`` (truncated towards zero; the value must fit)."""
        v = self.fresh("fi")
        self.emit(f"{v} = fptosi double {a} to i64")
        return v

    def to_double(self, a: str) -> str:
        """An ``i64`` as a double."""
        v = self.fresh("d")
        self.emit(f"{v} = sitofp i64 {a} to double")
        return v

    # ------------------------------------------------------------------ control flow
    @contextmanager
    def if_(self, cond: str) -> Iterator[None]:
        """``if cond:`` (an ``i1``); may be followed at once by :meth:`else_`."""
        then, otherwise, end = self._open("then"), self._open("else"), self._open("endif")
        self.emit(f"br i1 {cond}, label %{then}, label %{otherwise}")
        self.label(then)
        yield
        self.emit(f"br label %{end}")
        self.label(otherwise)
        tail = len(self.lines)
        self.emit(f"br label %{end}")
        self.label(end)
        self._last_if = _If(otherwise, end, tail)

    @contextmanager
    def else_(self) -> Iterator[None]:
        """``else:`` of the :meth:`if_` just closed (nothing may be emitted between)."""
        last = self._last_if
        if last is None or len(self.lines) != last.tail + 2:
            raise RuntimeError("else_ must follow its if_ immediately")
        self._last_if = None
        del self.lines[last.tail:]
        yield
        self.emit(f"br label %{last.end}")
        self.label(last.end)

    @contextmanager
    def for_(self, start: str, stop: str, step: int = 1) -> Iterator[str]:
        """``for i in range(start, stop, step)`` over ``i64``; yields ``i`` (``step``
        may be negative: then the loop runs while ``i > stop``)."""
        counter = self.var("i64", start)
        head, body, latch, end = (self._open(s) for s in ("for", "body", "next", "endfor"))
        self.emit(f"br label %{head}")
        self.label(head)
        i = self.iget(counter)
        more = self.icmp("<" if step > 0 else ">", i, stop)
        self.emit(f"br i1 {more}, label %{body}, label %{end}")
        self.label(body)
        self._loops.append((latch, end))
        yield i
        self._loops.pop()
        self.emit(f"br label %{latch}")
        self.label(latch)
        self.iset(counter, self.i("+", self.iget(counter), str(step)))
        self.emit(f"br label %{head}")
        self.label(end)

    @contextmanager
    def while_(self, condition: Callable[[], str] | None = None) -> Iterator[None]:
        """``while condition():`` (the condition's code is emitted in the loop head and
        re-evaluated every time); ``None`` loops until :meth:`break_` or :meth:`ret`."""
        head, body, end = self._open("while"), self._open("body"), self._open("endwhile")
        self.emit(f"br label %{head}")
        self.label(head)
        if condition is None:
            self.emit(f"br label %{body}")
        else:
            self.emit(f"br i1 {condition()}, label %{body}, label %{end}")
        self.label(body)
        self._loops.append((head, end))
        yield
        self._loops.pop()
        self.emit(f"br label %{head}")
        self.label(end)

    def break_(self) -> None:
        """Leave the innermost loop."""
        self._jump(self._loops[-1][1])

    def continue_(self) -> None:
        """Go to the next iteration of the innermost loop."""
        self._jump(self._loops[-1][0])

    def ret(self, value: str | None = None) -> None:
        """Return from the function (with ``value`` when it returns one)."""
        self.emit("ret void" if value is None else f"ret {self._returns} {value}")
        self.label(self._open("dead"))

    def call(self, function: str, args: list[tuple[str, str]], returns: str = "void"
             ) -> str | None:
        """Call ``function`` (``@name``, or an SSA ``ptr`` to a function) with ``(type,
        value)`` arguments; returns the result's SSA name unless it is ``void``."""
        params = ", ".join(f"{t} {v}" for t, v in args)
        if returns == "void":
            self.emit(f"call void {function}({params})")
            return None
        v = self.fresh("call")
        self.emit(f"{v} = call {returns} {function}({params})")
        return v

    # ------------------------------------------------------------------ functions
    def function(self, name: str, *, params: str = "ptr %args", internal: bool = False,
                 returns: str = "void", default: str | None = None) -> str:
        """The function's text (see :meth:`FunctionEmitter.function`); ``returns`` its
        return type, ``default`` the value returned when control falls off the end."""
        linkage = "internal " if internal else ""
        end = "ret void" if returns == "void" else f"ret {returns} {default}"
        body = "\n".join(self._allocas + self.lines)
        return (f"define {linkage}{returns} @{check_symbol(name)}({params}) nounwind {{\n"
                f"entry:\n{body}\n  {end}\n}}\n")

    def returns(self, kind: str) -> None:
        """Declare the return type used by :meth:`ret` (``void`` by default)."""
        self._returns = kind
