"""Batched L-BFGS in native code: one call solves many small independent problems.

This is :func:`scalar_autograd.optim.lbfgs.lbfgs_minimize` (read its module docstring
and :mod:`scalar_autograd.optim.line_search` for the algorithm) written once more as
generated native code (:class:`~scalar_autograd.native.structured.Code`): the two-loop
recursion over a ring of curvature pairs with ``H0 = gamma I``, the pair test
``s.y > eps * y.y``, the restart along ``-g`` when ``g.d`` is not negative, the first
step ``1`` (``1 / ||g||_2`` while the memory is empty), the strong-Wolfe line search
with cubic extrapolation, the zoom with cubic, quadratic and bisection trials and the
"too far" rule for non-finite trials, the memory reset and retry along ``-g`` when the
search fails, and the same stopping tests in the same order with the same statuses
(:class:`~scalar_autograd.optim.result.Status`). Sums run in index order and nothing is
fused or reassociated, so the iterates agree with the numpy loop's to rounding (its dot
products go through BLAS or the 4-lane two-loop of :mod:`.native`, whose summation
order differs in the last bits), and bit for bit when its sums are made to run in index
order too (``tests/test_native_lbfgs.py`` checks both). That includes one quirk kept on
purpose: a curvature pair is written into the ring's next slot before it is tested, as
``_Memory.slot`` does, so a rejected pair overwrites the oldest one when the ring is full.

One driver is compiled per process (``n``, the history size and every option are
run-time values); it calls the model's compiled kernel through its address:

* ``fg(x, u, value, grad, scratch)``: the deriv kernel of a program whose params are
  the problem's ``n`` parameters, whose inputs are the problem's data ``u`` and whose
  single output is the objective (``value[0]``; ``grad`` receives its gradient).

``lbfgs_batch(block)`` solves problems ``0 .. count-1`` one after another, each from
its own start (a row of ``X``, overwritten by the solution) with its own data (``U``
rows ``u_stride`` doubles apart; 0: shared); callers split a batch over threads, each
with its own workspace (the call runs with the GIL released). The generated functions,
each mirroring one piece of the Python code:

* ``@dot``: ``np.dot``, in index order;
* ``@inf_norm``: ``lbfgs._inf_norm``;
* ``@two_loop``: ``lbfgs._Memory.direction``;
* ``@cubic_minimizer``, ``@quadratic_minimizer``: ``line_search``'s functions;
* ``@line_search``: ``StrongWolfe.__call__`` (with ``_evaluate`` and ``_give_up``);
* ``@zoom``: ``StrongWolfe._zoom``;
* ``@solve``: the body of ``lbfgs_minimize`` for one problem;
* ``@lbfgs_batch``: the loop over problems.

The two-loop is emitted here rather than taken from :class:`.native.TwoLoop`: that one
is hand-written LLVM text whose dot products use four partial sums, while this driver
sums in index order, as numpy's reference loop states the equations; the arithmetic
is the same few lines (``d -= a y``, ``d *= gamma``, ``d += (alpha - b) s``).

Example (``(x_0 - t_0)^2 + 3 (x_1 - t_1)^2`` for three targets ``t``, one call):
    >>> import numpy as np, scalar_autograd as sa
    >>> from scalar_autograd.optim.lbfgs import LBFGSConfig, lbfgs_minimize
    >>> x0, x1, t0, t1 = (sa.Value(0.0) for _ in range(4))
    >>> f = sa.compile((x0 - t0) ** 2 + 3 * (x1 - t1) ** 2, [x0, x1], inputs=[t0, t1])
    >>> U = np.array([[1.0, 2.0], [-3.0, 0.5], [0.0, 0.0]])
    >>> out = MinimizeBatchOutput.empty(np.zeros((3, 2)))
    >>> if supports(LBFGSConfig(), 2):
    ...     NativeBatchLBFGS(f, LBFGSConfig()).run(out, 0, 3, U, 2)
    ... else:
    ...     for i in range(3):
    ...         r = lbfgs_minimize(lambda x: f.value_and_grad(x, U[i]), out.x[i])
    ...         out.x[i], out.status[i] = r.x, STATUSES.index(r.status)
    >>> np.round(out.x, 6).tolist()
    [[1.0, 2.0], [-3.0, 0.5], [0.0, 0.0]]
    >>> [STATUSES[code].name for code in out.status]
    ['CONVERGED_GRADIENT', 'CONVERGED_GRADIENT', 'CONVERGED_GRADIENT']
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalar_autograd.native.abi import BLOCK_FN
from scalar_autograd.native.engine import NativeEngine, available
from scalar_autograd.native.structured import Code
from scalar_autograd.optim.lbfgs import LBFGSConfig
from scalar_autograd.optim.result import OptimizeResult, Status

_EPS = float(np.finfo(np.float64).eps)
_INF = float("inf")
_NAN = float("nan")

STATUSES: tuple[Status, ...] = tuple(Status)
"""Status codes of the native driver: ``STATUSES[code]`` (-1: not run)."""
_CODE = {s: i for i, s in enumerate(STATUSES)}

WORDS = ("count", "n", "fg", "X", "U", "u_stride", "options", "fun", "status",
         "iterations", "nfev", "grad_norm", "work", "scratch")
"""The int64 words of ``lbfgs_batch``'s argument block, in order (counts, strides in
doubles, addresses)."""

OPTIONS = ("history_size", "gradient_tolerance", "ftol", "max_iterations",
           "max_evaluations", "c1", "c2", "max_line_search")
"""The float64 options array, in order: :class:`LBFGSConfig`'s fields (integers as
doubles)."""

_MAX_COUNT = 2.0 ** 62
"""Integer options are clipped to this before they become doubles (then ``i64``)."""


def native_available() -> bool:
    """Whether the native driver can be compiled (llvmlite present)."""
    return available()


def workspace_size(n: int, history_size: int) -> int:
    """Doubles of workspace one thread needs for ``n`` params and ``history_size`` pairs:
    the objective, seven vectors (``x, g, d``, the trial point and its gradient, the
    search's best point and its gradient), the rings ``S``, ``Y`` and ``rho``, ``alpha``."""
    return 1 + 7 * n + 2 * history_size * n + 2 * history_size


# ---------------------------------------------------------------------------- parameters
_Params = Sequence[tuple[str, str]]
"""An LLVM function's parameters as ``(type, name)``; the IR name is ``%p.<name>`` (the
dot keeps them apart from the emitter's fresh names)."""


def _signature(params: _Params) -> str:
    return ", ".join(f"{kind} %p.{name}" for kind, name in params)


def _names(params: _Params) -> dict[str, str]:
    return {name: f"%p.{name}" for _, name in params}


def _call(c: Code, function: str, params: _Params, values: dict[str, str],
          returns: str = "void") -> str:
    """Call ``function`` with ``values[name]`` for each of its ``params``."""
    result = c.call(function, [(kind, values[name]) for kind, name in params], returns)
    return "" if result is None else result


_SEARCH_CONTEXT: _Params = (
    ("ptr", "fn"), ("i64", "n"), ("ptr", "u"), ("ptr", "scratch"), ("ptr", "value"),
    ("ptr", "x"), ("ptr", "d"), ("ptr", "trial"), ("ptr", "g_trial"), ("ptr", "x_lo"),
    ("ptr", "g_lo"), ("double", "c1"), ("double", "c2"), ("i64", "max_evaluations"))
"""What both phases of the line search use: the kernel and the problem's data, the
start ``x`` and direction ``d``, the trial point and its gradient, the best point so far
(``x_lo``, ``g_lo``; the accepted point when the search returns), the constants."""

_LINE_SEARCH: _Params = (*_SEARCH_CONTEXT, ("double", "f0"), ("ptr", "g0"),
                        ("double", "step"), ("ptr", "f_out"), ("ptr", "nfev_out"))
_ZOOM: _Params = (*_SEARCH_CONTEXT, ("double", "f0"), ("double", "slope0"),
                 ("double", "a_lo"), ("double", "f_lo"), ("double", "s_lo"),
                 ("double", "a_hi"), ("double", "f_hi"), ("double", "s_hi"),
                 ("i64", "nfev"), ("ptr", "f_out"), ("ptr", "nfev_out"))
_CUBIC: _Params = (("double", "a1"), ("double", "f1"), ("double", "d1"), ("double", "a2"),
                  ("double", "f2"), ("double", "d2"), ("double", "lo"), ("double", "hi"))
_QUADRATIC: _Params = (("double", "a1"), ("double", "f1"), ("double", "d1"),
                      ("double", "a2"), ("double", "f2"))
_TWO_LOOP: _Params = (("i64", "n"), ("i64", "m"), ("i64", "count"), ("i64", "newest"),
                     ("ptr", "S"), ("ptr", "Y"), ("ptr", "rho"), ("ptr", "alpha"),
                     ("ptr", "g"), ("ptr", "d"))
_SOLVE: _Params = (("ptr", "fn"), ("i64", "n"), ("ptr", "u"), ("ptr", "x_io"),
                  ("ptr", "options"), ("ptr", "work"), ("ptr", "scratch"), ("ptr", "fun"),
                  ("ptr", "status"), ("ptr", "iterations"), ("ptr", "nfev"),
                  ("ptr", "grad_norm"))


# ---------------------------------------------------------------------------- small pieces
def _dot(c: Code, n: str, a: str, b: str) -> str:
    """``np.dot(a, b)`` through ``@dot``."""
    return _call(c, "@dot", (("i64", "n"), ("ptr", "a"), ("ptr", "b")),
                 {"n": n, "a": a, "b": b}, "double")


def _copy(c: Code, n: str, src: str, dst: str) -> None:
    """``np.copyto(dst, src)``."""
    with c.for_("0", n) as k:
        c.store(c.load("double", src, k), dst, k)


def _store_int(c: Code, value: str, base: str, index: str = "0") -> None:
    c.emit(f"store i64 {value}, ptr {c.gep('i64', base, index)}")


def _dot_fn() -> str:
    """``double @dot(n, a, b)``: ``sum a[k] * b[k]`` for ``k = 0 .. n-1``, in order."""
    c = Code()
    c.returns("double")
    acc = c.var("double", "0.0")
    with c.for_("0", "%p.n") as k:
        product = c.f("*", c.load("double", "%p.a", k), c.load("double", "%p.b", k))
        c.set(acc, c.f("+", c.get(acc), product))
    c.ret(c.get(acc))
    return c.function("dot", internal=True, returns="double", default="0.0",
                      params=_signature((("i64", "n"), ("ptr", "a"), ("ptr", "b"))))


def _inf_norm_fn() -> str:
    """``double @inf_norm(n, g)``: ``lbfgs._inf_norm``, numpy's ``max(abs(g))`` (nan if
    any entry is nan; 0 when ``n`` is 0)."""
    c = Code()
    c.returns("double")
    best, nan = c.var("double", "0.0"), c.var("i64", "0")
    with c.for_("0", "%p.n") as k:
        v = c.fabs(c.load("double", "%p.g", k))
        with c.if_(c.is_nan(v)):
            c.iset(nan, "1")
        c.set(best, c.max(c.get(best), v))
    c.ret(c.select(c.icmp("==", c.iget(nan), "1"), c.const(_NAN), c.get(best)))
    return c.function("inf_norm", internal=True, returns="double", default="0.0",
                      params=_signature((("i64", "n"), ("ptr", "g"))))


def _two_loop_fn() -> str:
    """``void @two_loop(n, m, count, newest, S, Y, rho, alpha, g, d)``: ``d = -H g`` by
    the two-loop recursion over the ``count`` newest pairs of the ring (row ``newest``
    the newest), ``H0 = gamma I``: ``lbfgs._Memory.direction``, line by line."""
    c = Code()
    p = _names(_TWO_LOOP)
    n, m, count, newest = p["n"], p["m"], p["count"], p["newest"]
    with c.for_("0", n) as k:                                   # np.negative(g, out=d)
        c.store(c.neg(c.load("double", p["g"], k)), p["d"], k)
    with c.if_(c.icmp("==", count, "0")):
        c.ret()

    def row(j: str) -> tuple[str, str, str]:
        """The slot of the ``j``-th newest pair, ``(newest - j) % m``, and its rows."""
        i = c.op("srem", "i64", c.i("+", c.i("-", newest, j), m), m)
        offset = c.i("*", i, n)
        return i, c.gep("double", p["S"], offset), c.gep("double", p["Y"], offset)

    with c.for_("0", count) as j:                               # newest to oldest
        i, s, y = row(j)
        a = c.f("*", c.load("double", p["rho"], i), _dot(c, n, s, p["d"]))
        c.store(a, p["alpha"], i)
        with c.for_("0", n) as k:                               # d -= y * a
            c.store(c.f("-", c.load("double", p["d"], k),
                        c.f("*", c.load("double", y, k), a)), p["d"], k)
    _, s_new, y_new = row("0")
    gamma = c.f("/", _dot(c, n, s_new, y_new), _dot(c, n, y_new, y_new))
    with c.for_("0", n) as k:                                   # d *= gamma
        c.store(c.f("*", c.load("double", p["d"], k), gamma), p["d"], k)
    with c.for_(c.i("-", count, "1"), "-1", step=-1) as j:      # oldest to newest
        i, s, y = row(j)
        b = c.f("*", c.load("double", p["rho"], i), _dot(c, n, y, p["d"]))
        coefficient = c.f("-", c.load("double", p["alpha"], i), b)
        with c.for_("0", n) as k:                               # d += s * (alpha - b)
            c.store(c.f("+", c.load("double", p["d"], k),
                        c.f("*", c.load("double", s, k), coefficient)), p["d"], k)
    return c.function("two_loop", internal=True, params=_signature(_TWO_LOOP))


def _cubic_fn() -> str:
    """``double @cubic_minimizer(a1, f1, d1, a2, f2, d2, lo, hi)``:
    ``line_search.cubic_minimizer`` (N&W eq. 3.59), nan when there is no minimiser."""
    c = Code()
    c.returns("double")
    p = _names(_CUBIC)
    a1, f1, d1, a2, f2, d2 = (p[k] for k in ("a1", "f1", "d1", "a2", "f2", "d2"))
    nan = c.const(_NAN)
    t1 = c.f("-", c.f("+", d1, d2),
             c.f("/", c.f("*", c.const(3.0), c.f("-", f1, f2)), c.f("-", a1, a2)))
    disc = c.f("-", c.f("*", t1, t1), c.f("*", d1, d2))
    with c.if_(c.not_(c.cmp(">=", disc, "0.0"))):
        c.ret(nan)
    t2 = c.copysign(c.sqrt(disc), c.f("-", a2, a1))
    denominator = c.f("+", c.f("-", d2, d1), c.f("*", c.const(2.0), t2))
    with c.if_(c.cmp("==", denominator, "0.0")):
        c.ret(nan)
    a = c.f("-", a2, c.f("/", c.f("*", c.f("-", a2, a1), c.f("-", c.f("+", d2, t2), t1)),
                         denominator))
    with c.if_(c.not_(c.is_finite(a))):
        c.ret(nan)
    c.ret(c.min(c.max(a, p["lo"]), p["hi"]))
    return c.function("cubic_minimizer", internal=True, returns="double", default=nan,
                      params=_signature(_CUBIC))


def _quadratic_fn() -> str:
    """``double @quadratic_minimizer(a1, f1, d1, a2, f2)``:
    ``line_search.quadratic_minimizer`` (N&W eq. 3.57), nan when it opens downward."""
    c = Code()
    c.returns("double")
    p = _names(_QUADRATIC)
    a1, f1, d1 = p["a1"], p["f1"], p["d1"]
    nan = c.const(_NAN)
    h = c.f("-", p["a2"], a1)
    curvature = c.f("-", c.f("-", p["f2"], f1), c.f("*", d1, h))
    with c.if_(c.not_(c.cmp(">", curvature, "0.0"))):
        c.ret(nan)
    a = c.f("-", a1, c.f("/", c.f("*", c.f("*", d1, h), h),
                         c.f("*", c.const(2.0), curvature)))
    c.ret(c.select(c.is_finite(a), a, nan))
    return c.function("quadratic_minimizer", internal=True, returns="double", default=nan,
                      params=_signature(_QUADRATIC))


# ---------------------------------------------------------------------------- line search
def _evaluate(c: Code, p: dict[str, str], a: str) -> tuple[str, str, str]:
    """``StrongWolfe._evaluate``: ``trial = d * a + x``, the kernel at ``trial`` (its
    gradient into ``g_trial``); returns ``f``, the slope ``g.d`` and whether both are
    finite."""
    with c.for_("0", p["n"]) as k:
        step = c.f("*", c.load("double", p["d"], k), a)
        c.store(c.f("+", step, c.load("double", p["x"], k)), p["trial"], k)
    c.call(p["fn"], [("ptr", p["trial"]), ("ptr", p["u"]), ("ptr", p["value"]),
                     ("ptr", p["g_trial"]), ("ptr", p["scratch"])])
    f = c.load("double", p["value"], "0")
    slope = _dot(c, p["n"], p["g_trial"], p["d"])
    return f, slope, c.logic("and", c.is_finite(f), c.is_finite(slope))


def _keep_lo(c: Code, p: dict[str, str]) -> None:
    """``StrongWolfe._keep_lo``: the trial point becomes the best point."""
    _copy(c, p["n"], p["trial"], p["x_lo"])
    _copy(c, p["n"], p["g_trial"], p["g_lo"])


def _succeed(c: Code, p: dict[str, str], f: str, nfev: str) -> None:
    """Return a step satisfying both strong-Wolfe conditions (the trial point)."""
    _keep_lo(c, p)
    c.store(f, p["f_out"], "0")
    _store_int(c, nfev, p["nfev_out"])
    c.ret("true")


def _give_up(c: Code, p: dict[str, str], a_lo: str, f_lo: str, nfev: str) -> None:
    """``StrongWolfe._give_up``: return the best point, ``ok`` if it decreased ``f``."""
    c.store(f_lo, p["f_out"], "0")
    _store_int(c, nfev, p["nfev_out"])
    c.ret(c.logic("and", c.cmp(">", a_lo, "0.0"), c.cmp("<", f_lo, p["f0"])))


def _sufficient_decrease_fails(c: Code, p: dict[str, str], a: str, f: str,
                               slope0: str) -> str:
    """``f > f0 + c1 * a * slope0``."""
    return c.cmp(">", f, c.f("+", p["f0"], c.f("*", c.f("*", p["c1"], a), slope0)))


def _curvature_holds(c: Code, p: dict[str, str], s: str, slope0: str) -> str:
    """``abs(s) <= -c2 * slope0``."""
    return c.cmp("<=", c.fabs(s), c.f("*", c.neg(p["c2"]), slope0))


def _line_search_fn() -> str:
    """``i1 @line_search(context, f0, g0, step, f_out, nfev_out)``:
    ``StrongWolfe.__call__``: grow the step (cubic extrapolation within
    ``[a + 0.01 (a - a_prev), 10 a]``, kept below half way to the smallest non-finite
    step) until a strong-Wolfe point is found or bracketed, then :func:`_zoom_fn`. The
    accepted point is left in ``x_lo``, ``g_lo``; returns ``ok``."""
    c = Code()
    c.returns("i1")
    p = _names(_LINE_SEARCH)
    n = p["n"]
    slope0 = _dot(c, n, p["g0"], p["d"])
    nfev = c.var("i64", "0")
    # the last finite trial (the start point at first)
    a_prev, f_prev = c.var("double", "0.0"), c.var("double", p["f0"])
    s_prev = c.var("double", slope0)
    _copy(c, n, p["x"], p["x_lo"])
    _copy(c, n, p["g0"], p["g_lo"])
    a_bad = c.var("double", c.const(_INF))   # the smallest step known to be non-finite
    a = c.var("double", p["step"])
    bracketed = c.var("i64", "0")
    bracket = [c.var() for _ in range(6)]    # a_lo, f_lo, s_lo, a_hi, f_hi, s_hi

    def set_bracket(*values: str) -> None:
        for slot, value in zip(bracket, values):
            c.set(slot, value)
        c.iset(bracketed, "1")
        c.break_()

    with c.while_(lambda: c.icmp("<", c.iget(nfev), p["max_evaluations"])):
        av = c.get(a)
        f, s, finite = _evaluate(c, p, av)
        c.iset(nfev, c.i("+", c.iget(nfev), "1"))
        with c.if_(c.not_(finite)):                  # too far: shrink, keep the state
            c.set(a_bad, av)
            ap = c.get(a_prev)
            shorter = c.f("+", ap, c.f("*", c.const(0.5), c.f("-", av, ap)))
            c.set(a, shorter)
            stuck = c.logic("or", c.cmp("<=", shorter, c.f("*", ap, c.const(1.0 + _EPS))),
                            c.cmp("<=", shorter, "0.0"))
            with c.if_(stuck):
                c.break_()
            c.continue_()
        ap, fp, sp = c.get(a_prev), c.get(f_prev), c.get(s_prev)
        too_far = c.logic("or", _sufficient_decrease_fails(c, p, av, f, slope0),
                          c.logic("and", c.cmp(">", ap, "0.0"), c.cmp(">=", f, fp)))
        with c.if_(too_far):
            set_bracket(ap, fp, sp, av, f, s)
        with c.if_(_curvature_holds(c, p, s, slope0)):
            _succeed(c, p, f, c.iget(nfev))
        with c.if_(c.cmp(">=", s, "0.0")):
            _keep_lo(c, p)
            set_bracket(av, f, s, ap, fp, sp)
        # extrapolate: a larger step, by cubic interpolation within [1.01 a, 10 a]
        lo = c.var("double", c.f("+", av, c.f("*", c.const(0.01), c.f("-", av, ap))))
        hi = c.var("double", c.f("*", c.const(10.0), av))
        with c.if_(c.cmp("<", c.get(a_bad), c.const(_INF))):
            c.set(hi, c.min(c.get(hi), c.f("+", av, c.f("*", c.const(0.5),
                                                         c.f("-", c.get(a_bad), av)))))
            c.set(lo, c.min(c.get(lo), c.get(hi)))
        a_next = _call(c, "@cubic_minimizer", _CUBIC, dict(
            a1=ap, f1=fp, d1=sp, a2=av, f2=f, d2=s, lo=c.get(lo), hi=c.get(hi)), "double")
        a_next = c.select(c.is_nan(a_next), c.get(hi), a_next)
        _keep_lo(c, p)
        c.set(a_prev, av)
        c.set(f_prev, f)
        c.set(s_prev, s)
        c.set(a, a_next)
    with c.if_(c.icmp("==", c.iget(bracketed), "1")):
        values = dict(p, slope0=slope0, nfev=c.iget(nfev))
        values.update(zip(("a_lo", "f_lo", "s_lo", "a_hi", "f_hi", "s_hi"),
                          (c.get(v) for v in bracket)))
        c.ret(_call(c, "@zoom", _ZOOM, values, "i1"))
    _give_up(c, p, c.get(a_prev), c.get(f_prev), c.iget(nfev))
    return c.function("line_search", internal=True, returns="i1", default="false",
                      params=_signature(_LINE_SEARCH))


def _zoom_fn() -> str:
    """``i1 @zoom(context, f0, slope0, a_lo, f_lo, s_lo, a_hi, f_hi, s_hi, nfev, f_out,
    nfev_out)``: ``StrongWolfe._zoom`` (N&W Algorithm 3.6): trials by the cubic through
    both ends, else the quadratic through ``f_lo``, ``f_lo'``, ``f_hi``, else bisection,
    each at least 10% of the bracket from its ends."""
    c = Code()
    c.returns("i1")
    p = _names(_ZOOM)
    slope0 = p["slope0"]
    a_lo, f_lo, s_lo = (c.var("double", p[k]) for k in ("a_lo", "f_lo", "s_lo"))
    a_hi, f_hi, s_hi = (c.var("double", p[k]) for k in ("a_hi", "f_hi", "s_hi"))
    nfev = c.var("i64", p["nfev"])
    nan = c.const(_NAN)

    def set_hi(a: str, f: str, s: str) -> None:
        c.set(a_hi, a)
        c.set(f_hi, f)
        c.set(s_hi, s)

    with c.while_(lambda: c.icmp("<", c.iget(nfev), p["max_evaluations"])):
        alo, flo, slo = c.get(a_lo), c.get(f_lo), c.get(s_lo)
        ahi, fhi, shi = c.get(a_hi), c.get(f_hi), c.get(s_hi)
        left, right = c.min(alo, ahi), c.max(alo, ahi)
        width = c.f("-", right, left)
        with c.if_(c.cmp("<=", width, c.f("*", c.const(_EPS), right))):
            c.break_()
        margin = c.f("*", c.const(0.1), width)
        low, high = c.f("+", left, margin), c.f("-", right, margin)
        a = c.var("double", nan)
        with c.if_(c.logic("and", c.is_finite(fhi), c.is_finite(shi))):
            c.set(a, _call(c, "@cubic_minimizer", _CUBIC, dict(
                a1=alo, f1=flo, d1=slo, a2=ahi, f2=fhi, d2=shi, lo=low, hi=high), "double"))
        with c.if_(c.logic("and", c.is_nan(c.get(a)), c.is_finite(fhi))):
            q = _call(c, "@quadratic_minimizer", _QUADRATIC,
                      dict(a1=alo, f1=flo, d1=slo, a2=ahi, f2=fhi), "double")
            inside = c.logic("and", c.cmp("<=", low, q), c.cmp("<=", q, high))
            c.set(a, c.select(inside, q, nan))
        with c.if_(c.is_nan(c.get(a))):
            c.set(a, c.f("*", c.const(0.5), c.f("+", alo, ahi)))
        av = c.get(a)
        f, s, finite = _evaluate(c, p, av)
        c.iset(nfev, c.i("+", c.iget(nfev), "1"))
        with c.if_(c.not_(finite)):
            set_hi(av, nan, nan)
            c.continue_()
        with c.if_(c.logic("or", _sufficient_decrease_fails(c, p, av, f, slope0),
                           c.cmp(">=", f, flo))):
            set_hi(av, f, s)
            c.continue_()
        with c.if_(_curvature_holds(c, p, s, slope0)):
            _succeed(c, p, f, c.iget(nfev))
        with c.if_(c.cmp(">=", c.f("*", s, c.f("-", ahi, alo)), "0.0")):
            set_hi(alo, flo, slo)
        _keep_lo(c, p)
        c.set(a_lo, av)
        c.set(f_lo, f)
        c.set(s_lo, s)
    _give_up(c, p, c.get(a_lo), c.get(f_lo), c.iget(nfev))
    return c.function("zoom", internal=True, returns="i1", default="false",
                      params=_signature(_ZOOM))


# ---------------------------------------------------------------------------- the solver
def _solve_fn() -> str:
    """``void @solve(fn, n, u, x_io, options, work, scratch, fun, status, iterations,
    nfev, grad_norm)``: ``lbfgs_minimize`` for one problem, from ``x_io`` (overwritten
    by the last accepted iterate) with data ``u``; the outputs are single entries."""
    c = Code()
    p = _names(_SOLVE)
    n, fn = p["n"], p["fn"]
    option = {name: c.load("double", p["options"], str(k)) for k, name in enumerate(OPTIONS)}
    m = c.to_int(option["history_size"])
    gtol, ftol = option["gradient_tolerance"], option["ftol"]
    max_iterations = c.to_int(option["max_iterations"])
    max_evaluations = c.to_int(option["max_evaluations"])
    max_line_search = c.to_int(option["max_line_search"])
    # the workspace (see workspace_size)
    offset = c.var("i64", "0")

    def take(size: str) -> str:
        at = c.gep("double", p["work"], c.iget(offset))
        c.iset(offset, c.i("+", c.iget(offset), size))
        return at

    value = take("1")
    x, g, d, trial, g_trial, x_lo, g_lo = (take(n) for _ in range(7))
    mn = c.i("*", m, n)
    S, Y, rho, alpha = take(mn), take(mn), take(m), take(m)

    def stop(s: Status) -> None:
        c.iset(status, str(_CODE[s]))
        c.break_()

    # the start point
    _copy(c, n, p["x_io"], x)
    c.call(fn, [("ptr", x), ("ptr", p["u"]), ("ptr", value), ("ptr", g),
                ("ptr", p["scratch"])])
    f = c.var("double", c.load("double", value, "0"))
    nfev = c.var("i64", "1")
    iteration = c.var("i64", "0")
    status = c.var("i64", "-1")
    finite = c.var("i64", c.select(c.is_finite(c.get(f)), "1", "0", "i64"))
    with c.for_("0", n) as k:
        with c.if_(c.not_(c.is_finite(c.load("double", g, k)))):
            c.iset(finite, "0")
    inf_norm = (("i64", "n"), ("ptr", "g"))
    with c.if_(c.icmp("==", c.iget(finite), "0")):
        c.iset(status, str(_CODE[Status.NON_FINITE]))
    with c.else_():
        with c.if_(c.cmp("<=", _call(c, "@inf_norm", inf_norm, {"n": n, "g": g}, "double"),
                         gtol)):
            c.iset(status, str(_CODE[Status.CONVERGED_GRADIENT]))
    # the memory: ``count`` pairs, the next one goes to slot ``head``
    count, head = c.var("i64", "0"), c.var("i64", "0")
    f_new, ls_nfev = c.var(), c.var("i64", "0")
    with c.while_(lambda: c.icmp("<", c.iget(status), "0")):
        with c.if_(c.icmp(">=", c.iget(iteration), max_iterations)):
            stop(Status.MAX_ITERATIONS)
        with c.if_(c.icmp(">=", c.iget(nfev), max_evaluations)):
            stop(Status.MAX_EVALUATIONS)
        newest = c.op("srem", "i64", c.i("-", c.i("+", c.iget(head), m), "1"), m)
        _call(c, "@two_loop", _TWO_LOOP, dict(n=n, m=m, count=c.iget(count), newest=newest,
                                              S=S, Y=Y, rho=rho, alpha=alpha, g=g, d=d))
        slope = c.var("double", _dot(c, n, g, d))
        with c.if_(c.not_(c.cmp("<", c.get(slope), "0.0"))):  # H lost definiteness: restart
            c.iset(count, "0")
            c.iset(head, "0")
            with c.for_("0", n) as k:
                c.store(c.neg(c.load("double", g, k)), d, k)
            c.set(slope, _dot(c, n, g, d))
        first = c.f("/", c.const(1.0), c.sqrt(c.neg(c.get(slope))))
        step = c.select(c.icmp("!=", c.iget(count), "0"), c.const(1.0), first)
        ok = _call(c, "@line_search", _LINE_SEARCH, dict(
            fn=fn, n=n, u=p["u"], scratch=p["scratch"], value=value, x=x, d=d, trial=trial,
            g_trial=g_trial, x_lo=x_lo, g_lo=g_lo, c1=option["c1"], c2=option["c2"],
            max_evaluations=max_line_search, f0=c.get(f), g0=g,
            step=step, f_out=f_new, nfev_out=ls_nfev), "i1")
        c.iset(nfev, c.i("+", c.iget(nfev), c.iget(ls_nfev)))
        with c.if_(c.not_(ok)):
            with c.if_(c.icmp("!=", c.iget(count), "0")):   # retry along -g
                c.iset(count, "0")
                c.iset(head, "0")
                c.continue_()
            stop(Status.LINE_SEARCH_FAILED)
        # the new pair, written into the head slot and kept if s.y > eps y.y (as
        # _Memory.slot/push: a rejected pair stays in the slot until overwritten)
        offset_head = c.i("*", c.iget(head), n)
        s_new, y_new = c.gep("double", S, offset_head), c.gep("double", Y, offset_head)
        with c.for_("0", n) as k:
            c.store(c.f("-", c.load("double", x_lo, k), c.load("double", x, k)), s_new, k)
            c.store(c.f("-", c.load("double", g_lo, k), c.load("double", g, k)), y_new, k)
        sy = _dot(c, n, s_new, y_new)
        with c.if_(c.cmp(">", sy, c.f("*", c.const(_EPS), _dot(c, n, y_new, y_new)))):
            c.store(c.f("/", c.const(1.0), sy), rho, c.iget(head))
            c.iset(head, c.op("srem", "i64", c.i("+", c.iget(head), "1"), m))
            more = c.i("+", c.iget(count), "1")
            c.iset(count, c.select(c.icmp("<", m, more), m, more, "i64"))
        f_old = c.get(f)
        _copy(c, n, x_lo, x)
        _copy(c, n, g_lo, g)
        f_now = c.get(f_new)
        c.set(f, f_now)
        c.iset(iteration, c.i("+", c.iget(iteration), "1"))
        with c.if_(c.cmp("<=", _call(c, "@inf_norm", inf_norm, {"n": n, "g": g}, "double"),
                         gtol)):
            stop(Status.CONVERGED_GRADIENT)
        scale = c.max(c.max(c.fabs(f_old), c.fabs(f_now)), c.const(1.0))
        with c.if_(c.cmp("<=", c.f("-", f_old, f_now), c.f("*", ftol, scale))):
            stop(Status.CONVERGED_FTOL)
    # outputs
    _copy(c, n, x, p["x_io"])
    c.store(c.get(f), p["fun"], "0")
    _store_int(c, c.iget(status), p["status"])
    _store_int(c, c.iget(iteration), p["iterations"])
    _store_int(c, c.iget(nfev), p["nfev"])
    c.store(_call(c, "@inf_norm", inf_norm, {"n": n, "g": g}, "double"), p["grad_norm"], "0")
    return c.function("solve", internal=True, params=_signature(_SOLVE))


def _batch_fn() -> str:
    """``void @lbfgs_batch(ptr %args)``: :func:`_solve_fn` for problems ``0 .. count-1``
    (argument block: :data:`WORDS`)."""
    c = Code()
    w = {name: c.arg(i, "ptr" if name not in ("count", "n", "u_stride") else "i64")
         for i, name in enumerate(WORDS)}
    n = w["n"]
    with c.for_("0", w["count"]) as k:
        _call(c, "@solve", _SOLVE, dict(
            fn=w["fg"], n=n, u=c.gep("double", w["U"], c.i("*", k, w["u_stride"])),
            x_io=c.gep("double", w["X"], c.i("*", k, n)), options=w["options"],
            work=w["work"], scratch=w["scratch"], fun=c.gep("double", w["fun"], k),
            status=c.gep("i64", w["status"], k), iterations=c.gep("i64", w["iterations"], k),
            nfev=c.gep("i64", w["nfev"], k), grad_norm=c.gep("double", w["grad_norm"], k)))
    return c.function("lbfgs_batch")


def driver_source() -> str:
    """The LLVM text of the driver module (``@lbfgs_batch`` and its internal functions)."""
    declarations = {"declare double @llvm.sqrt.f64(double)",
                    "declare double @llvm.fabs.f64(double)",
                    "declare double @llvm.copysign.f64(double, double)"}
    functions = [_dot_fn(), _inf_norm_fn(), _two_loop_fn(), _cubic_fn(), _quadratic_fn(),
                 _zoom_fn(), _line_search_fn(), _solve_fn(), _batch_fn()]
    return ("; scalar_autograd: native batched L-BFGS\n"
            + "".join(f"{d}\n" for d in sorted(declarations)) + "\n" + "\n".join(functions))


def driver() -> NativeEngine:
    """The compiled driver engine (compiled once per process; from the disk cache when
    one is set)."""
    from scalar_autograd.runtime.disk_cache import process_engine

    return process_engine("native_lbfgs", driver_source, 2)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- Python side
def options_array(config: LBFGSConfig) -> np.ndarray:
    """The float64 options array of the driver (see :data:`OPTIONS`)."""
    values = []
    for name in OPTIONS:
        value = getattr(config, name)
        values.append(min(float(value), _MAX_COUNT) if isinstance(value, int) else float(value))
    return np.array(values)


def supports(config: LBFGSConfig, n: int, *, callback: Any = None,
             history: bool = False) -> bool:
    """Whether the native driver runs a solve with these options and ``n`` params:
    every :class:`LBFGSConfig` runs natively; a per-iteration ``callback`` or a
    recorded ``history`` (options of :func:`~.lbfgs.lbfgs_minimize`) need the Python
    loop, and llvmlite must be present."""
    return (isinstance(config, LBFGSConfig) and callback is None and not history
            and n >= 0 and native_available())


@dataclass
class MinimizeBatchOutput:
    """What :meth:`NativeBatchLBFGS.run` fills: one row per problem.

    Attributes:
        x: ``(N, n)`` start points in, solutions (last accepted iterates) out.
        fun: ``(N,)`` the objective at ``x``.
        status: ``(N,)`` int64 codes into :data:`STATUSES` (-1: not run).
        iterations, nfev: ``(N,)`` int64 counts, as ``lbfgs_minimize``'s.
        grad_norm: ``(N,)`` ``max |g_i|`` at ``x``.
    """

    x: np.ndarray
    fun: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    nfev: np.ndarray
    grad_norm: np.ndarray

    @classmethod
    def empty(cls, x0: np.ndarray) -> MinimizeBatchOutput:
        """Outputs for the problems of ``x0`` ``(N, n)`` (copied: the solutions
        overwrite it), every status -1 (not run)."""
        x = np.array(x0, dtype=np.float64, order="C", copy=True)
        if x.ndim != 2:
            raise ValueError(f"x0 must have shape (N, n); got shape {x.shape}")
        count = x.shape[0]
        return cls(x=x, fun=np.full(count, np.nan), status=np.full(count, -1, dtype=np.int64),
                   iterations=np.zeros(count, dtype=np.int64),
                   nfev=np.zeros(count, dtype=np.int64), grad_norm=np.full(count, np.nan))

    def result(self, i: int) -> OptimizeResult:
        """Problem ``i``'s outcome as an :class:`OptimizeResult`.

        Raises:
            ValueError: problem ``i`` has not been run.
        """
        code = int(self.status[i])
        if code < 0:
            raise ValueError(f"problem {i} has not been run (status -1)")
        return OptimizeResult(x=self.x[i], fun=float(self.fun[i]),
                              grad_norm=float(self.grad_norm[i]),
                              iterations=int(self.iterations[i]), nfev=int(self.nfev[i]),
                              status=STATUSES[code])


class NativeBatchLBFGS:
    """The driver bound to one model and one :class:`LBFGSConfig`: a compiled function
    of ``n`` params and ``nu`` data inputs with one output, the objective.

    Each thread that calls :meth:`run` gets its own workspace and kernel scratch.

    Args:
        function: a compiled function (``sa.compile``) on the llvm backend, unguarded.
        config: the L-BFGS options.
        engine: the compiled driver to use (by default :func:`driver`, compiled once
            per process; for experiments with other pass lists).

    Raises:
        TypeError: ``config`` is not an :class:`LBFGSConfig`.
        ValueError: a model with more than one output, with guards, or not on the
            llvm backend.
    """

    def __init__(self, function: Any, config: LBFGSConfig, *,
                 engine: NativeEngine | None = None) -> None:
        if not isinstance(config, LBFGSConfig):
            raise TypeError(f"config must be an LBFGSConfig; got {type(config).__name__}")
        entry = function._entry
        if entry.n_aux:
            raise ValueError("the native L-BFGS driver takes models without guards")
        if function.n_outputs != 1:
            raise ValueError(f"the native L-BFGS driver needs a model with one output (the "
                             f"objective); this one has {function.n_outputs}")
        self.kernel = entry.deriv_kernel()
        if self.kernel.backend != "llvm":
            raise ValueError(f"the native L-BFGS driver needs the llvm backend's kernels; "
                             f"this model runs on {self.kernel.backend!r}")
        self.function = function
        self.config = config
        self.n, self.nu = function.n_params, function.n_inputs
        self.options = options_array(config)
        self.engine = engine if engine is not None else driver()
        self._batch = BLOCK_FN(self.engine.address("lbfgs_batch"))
        self._fg = self.kernel._engine.address("kernel")
        self._work_size = workspace_size(self.n, config.history_size)
        self._scratch = max(self.kernel.n_scratch, 1)
        self._local = threading.local()

    def _workspace(self) -> tuple[np.ndarray, np.ndarray]:
        local = self._local
        work = getattr(local, "work", None)
        if work is None:
            work = local.work = np.zeros(self._work_size)
            local.scratch = np.zeros(self._scratch)
        return work, local.scratch

    def run(self, out: MinimizeBatchOutput, start: int, stop: int, U: np.ndarray,
            u_stride: int) -> None:
        """Solve problems ``start .. stop-1`` in one native call (GIL released).

        ``U`` (float64, C-contiguous) holds problem ``k``'s ``nu`` inputs from entry
        ``k * u_stride`` (``u_stride`` 0: every problem shares the first ``nu``).

        Raises:
            ValueError: outputs of the wrong shape, a range outside them, or a ``U``
                too short for the range.
        """
        count, n = out.x.shape[0], self.n
        if out.x.shape != (count, n) or out.x.dtype != np.float64 or not out.x.flags.c_contiguous:
            raise ValueError(f"out.x must be a C-contiguous float64 array of shape "
                             f"(N, {n}); got {out.x.dtype} {out.x.shape}")
        for name in ("fun", "status", "iterations", "nfev", "grad_norm"):
            a = getattr(out, name)
            kind = np.float64 if name in ("fun", "grad_norm") else np.int64
            if a.shape != (count,) or a.dtype != kind or not a.flags.c_contiguous:
                raise ValueError(f"out.{name} must be a C-contiguous {np.dtype(kind)} array "
                                 f"of shape ({count},); got {a.dtype} {a.shape}")
        if not 0 <= start <= stop <= count:
            raise ValueError(f"the range must satisfy 0 <= start <= stop <= {count}; got "
                             f"start={start}, stop={stop}")
        if stop == start:
            return
        if u_stride < 0:
            raise ValueError(f"u_stride must be >= 0; got {u_stride}")
        if U.dtype != np.float64 or not U.flags.c_contiguous:
            raise ValueError(f"U must be a C-contiguous float64 array; got {U.dtype}")
        needed = (stop - 1) * u_stride + self.nu
        if U.size < needed:
            raise ValueError(f"U must hold at least {needed} values for problems "
                             f"{start}..{stop - 1}; got {U.size}")
        work, scratch = self._workspace()
        f8 = 8

        def at(a: np.ndarray, per: int) -> int:
            return int(a.ctypes.data) + start * per * f8

        words = {
            "count": stop - start, "n": n, "fg": self._fg, "X": at(out.x, n),
            "U": at(U, u_stride), "u_stride": u_stride,
            "options": int(self.options.ctypes.data), "fun": at(out.fun, 1),
            "status": at(out.status, 1), "iterations": at(out.iterations, 1),
            "nfev": at(out.nfev, 1), "grad_norm": at(out.grad_norm, 1),
            "work": int(work.ctypes.data), "scratch": int(scratch.ctypes.data),
        }
        block = np.array([words[name] for name in WORDS], dtype=np.int64)
        self._batch(int(block.ctypes.data))
