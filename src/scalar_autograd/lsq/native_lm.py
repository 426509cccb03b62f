"""The small dense Levenberg-Marquardt loop in native code: one call per solve, or per batch.

This is :func:`scalar_autograd.lsq.levenberg_marquardt.levenberg_marquardt` (read its
module docstring for the algorithm) for a dense problem with the linear loss, written
once more as generated native code (:class:`~scalar_autograd.native.structured.Code`):
the same Marquardt scaling (running maximum of ``diag(J^T J)``, floored at
``eps * max``), MINPACK's first trust radius and radius updates, the regula-falsi fit
of the damping to the radius, Nielsen's update, the evaporation check, the same four
stopping tests in the same order, and the same statuses. The step is a Cholesky
solve of ``(J^T J + mu D) h = -J^T f``; when the damped normal matrix is not positive
definite or the step is not finite, the minimum-norm least-squares solution of the
augmented system ``[J; sqrt(mu D)] h = [-f; 0]`` takes over, by a one-sided Jacobi SVD
with numpy ``lstsq``'s threshold (the numpy loop's fallback). Sums run
in index order without fast math, so the iterates agree with the numpy loop's to
rounding (``tests/test_native_lm.py`` checks NIST StRD and the solver's tests).

One difference in bookkeeping: a trial point's residuals and Jacobian are evaluated
together, in one pass over the rows (the numpy loop evaluates the residuals, then the
Jacobian when the step is accepted, which nearly every step is), so ``njev`` counts
one Jacobian per trial step here; ``nfev``, ``iterations``, the iterates and the
statuses are the numpy loop's.

One driver is compiled per process (``n`` and ``m`` are run-time values); it calls the
model's compiled deriv kernel's rows loop through its address,
``rows(R, x, U, values, derivs, scratch)`` (the llvm backend's ``@rows``: the kernel,
inlined, on ``R`` rows of data with one params vector ``x``), for a program whose
params are the problem's ``n`` parameters, whose inputs are one row of data and whose
``nv`` outputs are residuals (or model values) of that row.

A problem has ``rows`` such rows (``m = rows * nv`` residuals): a curve fit has one row
per sample, a general residual function one row per problem. Optionally each problem
has observations ``y`` and weights ``w`` (``m`` each): the residual is ``(v - y) * w``
and the Jacobian row is scaled by ``w`` (scipy ``curve_fit``'s ``transform * (f - y)``).

``lm_batch(block)`` solves problems ``0 .. N-1`` one after another (each from its own
start, with its own data, into its own outputs); callers split a batch over threads,
each with its own workspace (the call runs with the GIL released).

Example (an exponential decay fitted to 20 points, one problem):
    >>> import numpy as np, scalar_autograd as sa
    >>> t = np.linspace(0, 1, 20); y = 2.0 * np.exp(-1.5 * t)
    >>> a, b, x = sa.Value(1.0), sa.Value(1.0), sa.Value(0.0)
    >>> f = sa.compile(a * sa.exp(-b * x), [a, b], inputs=[x])
    >>> if native_available():
    ...     out = BatchOutput.empty(np.array([[1.0, 1.0]]), 20)
    ...     options = options_array(SolverOptions())
    ...     NativeSolver(f).run(out, 0, 1, 20, t.copy(), 0, y, None, options)
    ...     print(np.round(out.x, 8).tolist(), STATUSES[out.status[0]].name)
    ... else:
    ...     print([[2.0, 1.5]], "PARAM_TOLERANCE")
    [[2.0, 1.5]] PARAM_TOLERANCE
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalar_autograd.lsq.levenberg_marquardt import (
    EVAPORATION,
    MAX_DAMPING,
    MIN_DAMPING,
    MIN_GAIN_RATIO,
    RADIUS_FIT_SOLVES,
    RADIUS_FIT_TOLERANCE,
    RADIUS_SHRINK,
    RADIUS_SHRINK_UPHILL,
    TRUST_RADIUS_FACTOR,
)
from scalar_autograd.lsq.options import SolverOptions
from scalar_autograd.lsq.result import LeastSquaresResult
from scalar_autograd.lsq.status import Status
from scalar_autograd.native.abi import BLOCK_FN
from scalar_autograd.native.engine import available
from scalar_autograd.native.structured import Code

_EPS = float(np.finfo(float).eps)

STATUSES: tuple[Status, ...] = tuple(Status)
"""Status codes of the native driver: ``STATUSES[code]``."""
_CODE = {s: i for i, s in enumerate(STATUSES)}
NOT_RUN = _CODE[Status.NOT_RUN]
"""The status code of a problem no solve reached (an interrupted batch)."""

WORDS = ("count", "n", "rows", "nu", "nv", "rj", "X", "U", "u_stride", "Y", "y_stride",
         "W", "w_stride", "options", "cost", "status", "iterations", "nfev", "njev",
         "normal", "jacobian", "residuals", "grad_norm", "covariance", "work", "scratch")
"""The int64 words of ``lm_batch``'s argument block, in order (addresses or counts;
an optional output's address is 0 when it is not wanted)."""
WORD = {name: i for i, name in enumerate(WORDS)}
OPTIONS = ("cost_tolerance", "param_tolerance", "gradient_tolerance", "max_iterations",
           "initial_damping")
"""The float64 options array (``initial_damping`` nan: MINPACK's start)."""

JACOBI_SWEEPS = 60
"""Most sweeps of the one-sided Jacobi SVD (it converges quadratically; a few suffice)."""
MAX_NATIVE_PARAMS = 64
"""Largest ``n`` the native loop takes (the numpy loop takes larger problems): its
``O(n^3)`` factorisations and ``O(m n^2)`` normal equations run unblocked.

Measured on the 2-core development machine (one solve from zero, both loops on the
same compiled model; native / numpy loop): ``tanh(sum p_k cos(k x))`` with m = 4n:
n = 4: 0.02 / 0.73 ms, 16: 0.09 / 0.80 ms, 64: 3.3 / 9.3 ms, 128: 22 / 248 ms;
``tanh(sum p_k u_k)`` with per-row inputs: n = 32, m = 10^4: 23 / 480 ms; n = 64,
m = 10^4: 95 / 1456 ms; n = 32, m = 10^5: 384 / 1583 ms. The native loop led
everywhere measured; the limit is kept at 64, where the unblocked ``m n^2`` product
is still a small part of a solve, rather than at the last size measured."""


def native_available() -> bool:
    """Whether the native loop can be compiled (llvmlite present)."""
    return available()


def workspace_size(n: int, m: int) -> int:
    """Doubles of workspace one thread needs for problems of ``n`` params, ``m``
    residuals."""
    return 16 * n + 3 * n * n + 3 * m + 2 * m * n + (m + n) * (n + 2)


# ---------------------------------------------------------------------------- helpers
def _dot(c: Code, n: str, a: str, b: str, sa: str = "1", sb: str = "1") -> str:
    """``sum_k a[k*sa] * b[k*sb]`` in index order."""
    acc = c.var("double", "0.0")
    with c.for_("0", n) as k:
        ak = c.load("double", a, c.i("*", k, sa) if sa != "1" else k)
        bk = c.load("double", b, c.i("*", k, sb) if sb != "1" else k)
        c.set(acc, c.f("+", c.get(acc), c.f("*", ak, bk)))
    return c.get(acc)


def _copy(c: Code, n: str, src: str, dst: str) -> None:
    with c.for_("0", n) as k:
        c.store(c.load("double", src, k), dst, k)


def _scaled_norm(c: Code, n: str, sd: str, v: str) -> str:
    """``|sd * v|``: ``sqrt(sum (sd_k v_k)^2)``."""
    acc = c.var("double", "0.0")
    with c.for_("0", n) as k:
        t = c.f("*", c.load("double", sd, k), c.load("double", v, k))
        c.set(acc, c.f("+", c.get(acc), c.f("*", t, t)))
    return c.sqrt(c.get(acc))


# ---------------------------------------------------------------------------- functions
_EVALUATE_PARAMS = ("ptr %fn, i64 %rows, i64 %nu, i64 %nv, i64 %nd, ptr %x, ptr %U, ptr %v, "
                    "ptr %D, ptr %y, ptr %w, ptr %scratch")


def _evaluate_fn() -> str:
    """``@evaluate(fn, rows, nu, nv, nd, x, U, v, D, y, w, scratch)``: the kernel's
    rows loop ``fn`` (the llvm backend's ``@rows``: the kernel inlined into a loop over
    the rows, one params vector) on every row, then ``v = (v - y) * w`` (``y``, ``w``
    optional) and each Jacobian row (``nd / nv`` entries) times its ``w``."""
    c = Code()
    c.call("%fn", [("i64", "%rows"), ("ptr", "%x"), ("ptr", "%U"), ("ptr", "%v"),
                   ("ptr", "%D"), ("ptr", "%scratch")])
    has_y, has_w = c.is_set("%y"), c.is_set("%w")
    with c.if_(c.logic("or", has_y, has_w)):
        m = c.i("*", "%rows", "%nv")
        n = c.var("i64", "0")
        with c.if_(c.icmp(">", "%nv", "0")):
            c.iset(n, c.i("/", "%nd", "%nv"))
        r = c.var()
        with c.for_("0", m) as k:
            c.set(r, c.load("double", "%v", k))
            with c.if_(has_y):
                c.set(r, c.f("-", c.get(r), c.load("double", "%y", k)))
            with c.if_(has_w):
                wk = c.load("double", "%w", k)
                c.set(r, c.f("*", c.get(r), wk))
                cols = c.iget(n)
                row = c.i("*", k, cols)
                with c.for_("0", cols) as j:
                    idx = c.i("+", row, j)
                    c.store(c.f("*", c.load("double", "%D", idx), wk), "%D", idx)
            c.store(c.get(r), "%v", k)
    return c.function("evaluate", internal=True, params=_EVALUATE_PARAMS)


def _normal_fn() -> str:
    """``@normal(m, n, J, r, A, g, diag)``: ``A = J^T J``, ``g = J^T r``, ``diag(A)``."""
    c = Code()
    n = "%n"
    with c.for_("0", c.i("*", n, n)) as k:
        c.store("0.0", "%A", k)
    with c.for_("0", n) as k:
        c.store("0.0", "%g", k)
    with c.for_("0", "%m") as k:
        rk = c.load("double", "%r", k)
        row = c.i("*", k, n)
        with c.for_("0", n) as a:
            ja = c.load("double", "%J", c.i("+", row, a))
            c.add_to("%g", a, c.f("*", ja, rk))
            base = c.i("*", a, n)
            with c.for_(a, n) as b:
                jb = c.load("double", "%J", c.i("+", row, b))
                c.add_to("%A", c.i("+", base, b), c.f("*", ja, jb))
    with c.for_("0", n) as a:
        with c.for_(c.i("+", a, "1"), n) as b:
            c.store(c.load("double", "%A", c.i("+", c.i("*", a, n), b)), "%A",
                    c.i("+", c.i("*", b, n), a))
        c.store(c.load("double", "%A", c.i("+", c.i("*", a, n), a)), "%diag", a)
    return c.function("normal", internal=True,
                      params="i64 %m, i64 %n, ptr %J, ptr %r, ptr %A, ptr %g, ptr %diag")


def _finite_fn() -> str:
    """``i1 @finite(m, n, J, diag)``: the numpy loop's ``_Model.finite``: every
    ``diag`` entry is finite, or else every entry of ``J`` is."""
    c = Code()
    c.returns("i1")
    ok = c.var("i64", "1")
    with c.for_("0", "%n") as k:
        with c.if_(c.not_(c.is_finite(c.load("double", "%diag", k)))):
            c.iset(ok, "0")
    with c.if_(c.icmp("==", c.iget(ok), "1")):
        c.ret("true")
    with c.for_("0", c.i("*", "%m", "%n")) as k:
        with c.if_(c.not_(c.is_finite(c.load("double", "%J", k)))):
            c.ret("false")
    return c.function("finite", internal=True, returns="i1", default="true",
                      params="i64 %m, i64 %n, ptr %J, ptr %diag")


def _factor(c: Code, n: str, A: str, L: str, diagonal: Callable[[str], str] | None,
            pivot: Callable[[str], str]) -> None:
    """Emit the Cholesky factorisation ``L L^T = A + diag(diagonal(j))`` (row-major
    ``n x n``, the lower triangle of ``L`` written); returns ``false`` from the function
    at the first pivot ``s`` for which ``pivot(s)`` is false (nan included)."""
    with c.for_("0", n) as j:
        jn = c.i("*", j, n)
        with c.for_(j, n) as i:
            inn = c.i("*", i, n)
            s = c.var("double", c.load("double", A, c.i("+", inn, j)))
            if diagonal is not None:
                with c.if_(c.icmp("==", i, j)):
                    c.set(s, c.f("+", c.get(s), diagonal(j)))
            with c.for_("0", j) as k:
                lik = c.load("double", L, c.i("+", inn, k))
                ljk = c.load("double", L, c.i("+", jn, k))
                c.set(s, c.f("-", c.get(s), c.f("*", lik, ljk)))
            with c.if_(c.icmp("==", i, j)):
                with c.if_(c.not_(pivot(c.get(s)))):
                    c.ret("false")
                c.store(c.sqrt(c.get(s)), L, c.i("+", jn, j))
            with c.else_():
                c.store(c.f("/", c.get(s), c.load("double", L, c.i("+", jn, j))), L,
                        c.i("+", inn, j))


def _substitute(c: Code, n: str, L: str, rhs: Callable[[str], str], out: str) -> None:
    """Emit ``out = (L L^T)^-1 b`` with ``b_i = rhs(i)``: ``L y = b`` (``y`` in ``out``),
    then ``L^T out = y``."""
    with c.for_("0", n) as i:
        inn = c.i("*", i, n)
        s = c.var("double", rhs(i))
        with c.for_("0", i) as k:
            t = c.f("*", c.load("double", L, c.i("+", inn, k)), c.load("double", out, k))
            c.set(s, c.f("-", c.get(s), t))
        c.store(c.f("/", c.get(s), c.load("double", L, c.i("+", inn, i))), out, i)
    with c.for_(c.i("-", n, "1"), "-1", step=-1) as i:
        s = c.var("double", c.load("double", out, i))
        with c.for_(c.i("+", i, "1"), n) as k:
            t = c.f("*", c.load("double", L, c.i("+", c.i("*", k, n), i)),
                    c.load("double", out, k))
            c.set(s, c.f("-", c.get(s), t))
        c.store(c.f("/", c.get(s), c.load("double", L, c.i("+", c.i("*", i, n), i))), out, i)


def _cholesky_fn() -> str:
    """``i1 @cholesky(n, A, D, mu, g, L, h)``: ``h = -(A + mu diag(D))^-1 g`` by
    Cholesky; false when the matrix is not positive definite or ``h`` not finite."""
    c = Code()
    c.returns("i1")
    n = "%n"
    _factor(c, n, "%A", "%L", lambda j: c.f("*", "%mu", c.load("double", "%D", j)),
            lambda s: c.cmp(">", s, "0.0"))
    _substitute(c, n, "%L", lambda i: c.f("-", "0.0", c.load("double", "%g", i)), "%h")
    with c.for_("0", n) as i:
        with c.if_(c.not_(c.is_finite(c.load("double", "%h", i)))):
            c.ret("false")
    return c.function("cholesky", internal=True, returns="i1", default="true",
                      params="i64 %n, ptr %A, ptr %D, double %mu, ptr %g, ptr %L, ptr %h")


def _svd_fn() -> str:
    """``@svd(m, n, J, f, D, mu, a, b, V, h)``: the minimum-norm ``h`` minimising
    ``|[J; sqrt(mu D)] h + [f; 0]|``, as ``numpy.linalg.lstsq(rcond=None)`` (LAPACK
    ``gelsd``) gives it: singular values at most ``eps * max(m + n, n) * s_max`` count
    as zero. The SVD is one-sided Jacobi (Hestenes): rotations of column pairs of the
    augmented matrix ``a`` (``(m+n) x n``) until every pair is orthogonal to working
    precision, accumulated in ``V`` (``n x n``); then ``h = sum_j (a_j . b / s_j^2) V_j``
    over the kept columns, with ``b = [-f; 0]`` (``m + n``)."""
    c = Code()
    m, n = "%m", "%n"
    rows = c.i("+", m, n)

    def at(i: str, j: str) -> str:
        return c.i("+", c.i("*", i, n), j)

    with c.for_("0", m) as i:
        with c.for_("0", n) as j:
            c.store(c.load("double", "%J", at(i, j)), "%a", at(i, j))
        c.store(c.f("-", "0.0", c.load("double", "%f", i)), "%b", i)
    with c.for_("0", n) as i:
        mi = c.i("+", m, i)
        with c.for_("0", n) as j:
            c.store("0.0", "%a", at(mi, j))
            c.store(c.select(c.icmp("==", i, j), c.const(1.0), "0.0"), "%V", at(i, j))
        c.store(c.sqrt(c.f("*", "%mu", c.load("double", "%D", i))), "%a", at(mi, i))
        c.store("0.0", "%b", mi)
    with c.for_("0", str(JACOBI_SWEEPS)):
        rotated = c.var("i64", "0")
        with c.for_("0", n) as p:
            with c.for_(c.i("+", p, "1"), n) as q:
                alpha, beta, gamma = c.var("double", "0.0"), c.var("double", "0.0"), \
                    c.var("double", "0.0")
                with c.for_("0", rows) as i:
                    ap, aq = c.load("double", "%a", at(i, p)), c.load("double", "%a", at(i, q))
                    c.set(alpha, c.f("+", c.get(alpha), c.f("*", ap, ap)))
                    c.set(beta, c.f("+", c.get(beta), c.f("*", aq, aq)))
                    c.set(gamma, c.f("+", c.get(gamma), c.f("*", ap, aq)))
                gm = c.get(gamma)
                limit = c.f("*", c.const(_EPS), c.sqrt(c.f("*", c.get(alpha), c.get(beta))))
                with c.if_(c.cmp(">", c.fabs(gm), limit)):
                    c.iset(rotated, "1")
                    zeta = c.f("/", c.f("-", c.get(beta), c.get(alpha)), c.f("*", c.const(2.0), gm))
                    root = c.f("+", c.fabs(zeta), c.sqrt(c.f("+", c.const(1.0),
                                                             c.f("*", zeta, zeta))))
                    sign = c.select(c.cmp("<", zeta, "0.0"), c.const(-1.0), c.const(1.0))
                    t = c.f("/", sign, root)
                    cs = c.f("/", c.const(1.0), c.sqrt(c.f("+", c.const(1.0), c.f("*", t, t))))
                    sn = c.f("*", cs, t)
                    for base, count in (("%a", rows), ("%V", n)):
                        with c.for_("0", count) as i:
                            xp, xq = c.load("double", base, at(i, p)), \
                                c.load("double", base, at(i, q))
                            c.store(c.f("-", c.f("*", cs, xp), c.f("*", sn, xq)), base, at(i, p))
                            c.store(c.f("+", c.f("*", sn, xp), c.f("*", cs, xq)), base, at(i, q))
        with c.if_(c.icmp("==", c.iget(rotated), "0")):
            c.break_()
    # singular values are the column norms; keep those above gelsd's threshold
    smax = c.var("double", "0.0")
    with c.for_("0", n) as j:
        s2 = _dot(c, rows, c.gep("double", "%a", j), c.gep("double", "%a", j), n, n)
        c.store(s2, "%h", j)                       # s_j^2, for now
        c.set(smax, c.max(c.get(smax), c.sqrt(s2)))
    size = c.to_double(rows)
    threshold = c.f("*", c.f("*", c.const(_EPS), size), c.get(smax))
    coef = c.array_var(MAX_NATIVE_PARAMS)
    with c.for_("0", n) as j:
        s2 = c.load("double", "%h", j)
        keep = c.cmp(">", c.sqrt(s2), threshold)
        ab = _dot(c, rows, c.gep("double", "%a", j), "%b", n, "1")
        c.store(c.select(keep, c.f("/", ab, s2), "0.0"), coef, j)
    with c.for_("0", n) as i:
        acc = c.var("double", "0.0")
        with c.for_("0", n) as j:
            c.set(acc, c.f("+", c.get(acc), c.f("*", c.load("double", coef, j),
                                                  c.load("double", "%V", at(i, j)))))
        c.store(c.get(acc), "%h", i)
    return c.function("svd", internal=True, params=(
        "i64 %m, i64 %n, ptr %J, ptr %f, ptr %D, double %mu, ptr %a, ptr %b, ptr %V, "
        "ptr %h"))


def _inverse_fn() -> str:
    """``i1 @inverse(m, n, A, L, out)``: ``out = A^-1`` for a symmetric ``A`` by
    Cholesky, made exactly symmetric (its upper triangle copied from the lower one);
    false (and ``out`` untouched) unless every pivot is above
    ``eps * max(m, n) * max_k A_kk``: nearly singular ``A`` are left to a
    pseudo-inverse (the caller's)."""
    c = Code()
    c.returns("i1")
    n = "%n"
    top = c.var("double", "0.0")
    with c.for_("0", n) as k:
        c.set(top, c.max(c.get(top), c.load("double", "%A", c.i("+", c.i("*", k, n), k))))
    size = c.to_double(c.select(c.icmp(">", "%m", n), "%m", n, "i64"))
    tol = c.f("*", c.f("*", c.const(_EPS), size), c.get(top))
    with c.if_(c.not_(c.is_finite(tol))):
        c.ret("false")
    _factor(c, n, "%A", "%L", None, lambda s: c.cmp(">", s, tol))
    # row e of the inverse (= column e: symmetric) solves L L^T x = e_e
    with c.for_("0", n) as e:
        _substitute(c, n, "%L", lambda i: c.select(c.icmp("==", i, e), c.const(1.0), "0.0"),
                    c.gep("double", "%out", c.i("*", e, n)))
    # exactly symmetric: the upper triangle is the lower one (they differ by rounding)
    with c.for_("0", n) as i:
        with c.for_(c.i("+", i, "1"), n) as j:
            c.store(c.load("double", "%out", c.i("+", c.i("*", j, n), i)), "%out",
                    c.i("+", c.i("*", i, n), j))
    return c.function("inverse", internal=True, returns="i1", default="true",
                      params="i64 %m, i64 %n, ptr %A, ptr %L, ptr %out")


def _step_fn() -> str:
    """``@step(m, n, A, g, D, mu, J, f, L, qa, qb, qv, h)``: the damped step, by
    Cholesky or else by the SVD of the augmented system."""
    c = Code()
    ok = c.call("@cholesky", [("i64", "%n"), ("ptr", "%A"), ("ptr", "%D"),
                              ("double", "%mu"), ("ptr", "%g"), ("ptr", "%L"),
                              ("ptr", "%h")], returns="i1")
    assert ok is not None
    with c.if_(c.not_(ok)):
        # the Cholesky factor's buffer L serves as the SVD's V
        c.call("@svd", [("i64", "%m"), ("i64", "%n"), ("ptr", "%J"), ("ptr", "%f"),
                        ("ptr", "%D"), ("double", "%mu"), ("ptr", "%qa"), ("ptr", "%qb"),
                        ("ptr", "%L"), ("ptr", "%h")])
    return c.function("step", internal=True, params=(
        "i64 %m, i64 %n, ptr %A, ptr %g, ptr %D, double %mu, ptr %J, ptr %f, ptr %L, "
        "ptr %qa, ptr %qb, ptr %qv, ptr %h"))


def _nan_extreme(c: Code, n: str, value: Any, greater: bool, start: str | None = None,
                 use: Any = None) -> tuple[str, str]:
    """numpy's ``max``/``min`` (nan if any entry is nan) of ``value(k)`` over the
    ``k < n`` where ``use(k)`` holds; returns (extreme, whether any was used)."""
    best = c.var("double", start if start is not None else "0.0")
    seen = c.var("i64", "1" if start is not None else "0")
    nan = c.var("i64", "0")
    with c.for_("0", n) as k:
        def body() -> None:
            v = value(k)
            with c.if_(c.is_nan(v)):
                c.iset(nan, "1")
            first = c.icmp("==", c.iget(seen), "0")
            better = c.cmp(">" if greater else "<", v, c.get(best))
            c.set(best, c.select(c.logic("or", first, better), v, c.get(best)))
            c.iset(seen, "1")
        if use is None:
            body()
        else:
            with c.if_(use(k)):
                body()
    result = c.select(c.icmp("==", c.iget(nan), "1"), c.const(float("nan")), c.get(best))
    return result, c.icmp("==", c.iget(seen), "1")


# ---------------------------------------------------------------------------- the driver
class _Ptrs:
    """Pointer variables of the model (swapped when a step is accepted)."""

    def __init__(self, c: Code, pairs: dict[str, tuple[str, str]]) -> None:
        self.c = c
        self.slots = {name: (c.var("ptr", a), c.var("ptr", b)) for name, (a, b) in pairs.items()}

    def now(self, name: str) -> str:
        return self.c.get(self.slots[name][0], "ptr")

    def new(self, name: str) -> str:
        return self.c.get(self.slots[name][1], "ptr")

    def swap(self) -> None:
        c = self.c
        for a, b in self.slots.values():
            pa, pb = c.get(a, "ptr"), c.get(b, "ptr")
            c.set(a, pb, "ptr")
            c.set(b, pa, "ptr")


def _batch_fn() -> str:
    """``@lm_batch(ptr %args)``: the loop of the numpy solver for every problem."""
    c = Code()
    w = {name: c.arg(i, "i64") for i, name in enumerate(WORDS)}
    ptr = {}
    for name in ("X", "U", "Y", "W", "options", "cost", "status", "iterations", "nfev", "njev",
                 "normal", "jacobian", "residuals", "grad_norm", "covariance", "work", "scratch"):
        q = c.fresh("p")
        c.emit(f"{q} = inttoptr i64 {w[name]} to ptr")
        ptr[name] = q
    rj_fn = c.fresh("fn")
    c.emit(f"{rj_fn} = inttoptr i64 {w['rj']} to ptr")
    n, rows, nu, nv = w["n"], w["rows"], w["nu"], w["nv"]
    m = c.i("*", rows, nv)
    nd = c.i("*", nv, n)
    nn, mn = c.i("*", n, n), c.i("*", m, n)
    opt = [c.load("double", ptr["options"], str(k)) for k in range(len(OPTIONS))]
    ftol, xtol, gtol, max_iter, initial_mu = opt
    max_iterations = c.fresh("mi")
    c.emit(f"{max_iterations} = fptosi double {max_iter} to i64")
    # workspace
    offset = c.var("i64", "0")

    def take(size: str) -> str:
        p = c.gep("double", ptr["work"], c.iget(offset))
        c.iset(offset, c.i("+", c.iget(offset), size))
        return p

    x, xt, h, ht, hhi, sd, D, scaling = (take(n) for _ in range(8))
    g1, g2, d1, d2 = (take(n) for _ in range(4))
    A1, A2, L = take(nn), take(nn), take(nn)
    r1, r2 = take(m), take(m)
    J1, J2 = take(mn), take(mn)
    mplus = c.i("+", m, n)
    qa, qb, qv = take(c.i("*", mplus, n)), take(mplus), take(mplus)
    scratch_rj = ptr["scratch"]
    model = _Ptrs(c, {"r": (r1, r2), "J": (J1, J2), "A": (A1, A2), "g": (g1, g2),
                      "diag": (d1, d2)})

    def evaluate(fn: str, at: str, u: str, v: str, jac: str, y: str, wt: str,
                 deriv: bool) -> None:
        c.call("@evaluate", [("ptr", fn), ("i64", rows), ("i64", nu), ("i64", nv),
                             ("i64", nd if deriv else "0"), ("ptr", at), ("ptr", u),
                             ("ptr", v), ("ptr", jac), ("ptr", y), ("ptr", wt),
                             ("ptr", scratch_rj)])

    def normal(J: str, r: str, A: str, g: str, diag: str) -> None:
        c.call("@normal", [("i64", m), ("i64", n), ("ptr", J), ("ptr", r), ("ptr", A),
                           ("ptr", g), ("ptr", diag)])

    def finite(J: str, diag: str) -> str:
        v = c.call("@finite", [("i64", m), ("i64", n), ("ptr", J), ("ptr", diag)], "i1")
        assert v is not None
        return v

    def step(mu: str, out: str) -> None:
        c.call("@step", [("i64", m), ("i64", n), ("ptr", model.now("A")),
                         ("ptr", model.now("g")), ("ptr", D), ("double", mu),
                         ("ptr", model.now("J")), ("ptr", model.now("r")), ("ptr", L),
                         ("ptr", qa), ("ptr", qb), ("ptr", qv), ("ptr", out)])

    def half_squares(r: str) -> str:
        return c.f("*", c.const(0.5), _dot(c, m, r, r))

    def optional(base: str, stride_word: str, p: str) -> str:
        """``base + p * stride`` or null when ``base`` is null."""
        at = c.gep("double", base, c.i("*", p, w[stride_word]))
        return c.select(c.is_set(base), at, "null", "ptr")

    status = c.var("i64")
    with c.for_("0", w["count"]) as p:
        xp = c.gep("double", ptr["X"], c.i("*", p, n))
        up = c.gep("double", ptr["U"], c.i("*", p, w["u_stride"]))
        yp = optional(ptr["Y"], "y_stride", p)
        wp = optional(ptr["W"], "w_stride", p)
        # a fresh model: the pointer pairs start where they were laid out
        for name, (a, b) in {"r": (r1, r2), "J": (J1, J2), "A": (A1, A2), "g": (g1, g2),
                             "diag": (d1, d2)}.items():
            c.set(model.slots[name][0], a, "ptr")
            c.set(model.slots[name][1], b, "ptr")
        _copy(c, n, xp, x)
        c.iset(status, "-1")
        iterations, nfev, njev = c.var("i64", "0"), c.var("i64", "1"), c.var("i64", "1")
        have_model = c.var("i64", "0")
        evaluate(rj_fn, x, up, model.now("r"), model.now("J"), yp, wp, True)
        cost = c.var("double", half_squares(model.now("r")))
        all_finite = c.var("i64", "1")
        with c.for_("0", m) as k:
            with c.if_(c.not_(c.is_finite(c.load("double", model.now("r"), k)))):
                c.iset(all_finite, "0")
        bad = c.logic("or", c.icmp("==", c.iget(all_finite), "0"),
                      c.not_(c.is_finite(c.get(cost))))
        with c.if_(bad):
            c.iset(status, str(_CODE[Status.NONFINITE_INITIAL]))
        with c.else_():
            normal(model.now("J"), model.now("r"), model.now("A"), model.now("g"),
                   model.now("diag"))
            c.iset(have_model, "1")
            with c.if_(c.not_(finite(model.now("J"), model.now("diag")))):
                c.iset(status, str(_CODE[Status.NONFINITE_JACOBIAN]))
        mu, growth, delta = c.var(), c.var(), c.var()
        with c.if_(c.icmp("<", c.iget(status), "0")):
            _copy(c, n, model.now("diag"), scaling)
            c.set(mu, c.select(c.is_nan(initial_mu), c.const(MIN_DAMPING), initial_mu))
            top, _ = _nan_extreme(c, n, lambda k: c.load("double", scaling, k), True, "0.0")
            dx0 = c.var("double", "0.0")
            with c.if_(c.cmp(">", top, "0.0")):
                floor = c.f("*", c.const(_EPS), top)
                acc = c.var("double", "0.0")
                with c.for_("0", n) as k:
                    s = c.sqrt(c.max(c.load("double", scaling, k), floor))
                    t = c.f("*", s, c.load("double", x, k))
                    c.set(acc, c.f("+", c.get(acc), c.f("*", t, t)))
                c.set(dx0, c.sqrt(c.get(acc)))
            c.set(delta, c.select(c.cmp(">", c.get(dx0), "0.0"),
                                  c.f("*", c.const(TRUST_RADIUS_FACTOR), c.get(dx0)),
                                  c.const(TRUST_RADIUS_FACTOR)))
            c.set(growth, c.const(2.0))
        with c.while_(lambda: c.icmp("<", c.iget(status), "0")):
            _iteration(c, locals_=dict(
                m=m, n=n, model=model, status=status, scaling=scaling, gtol=gtol,
                iterations=iterations, max_iterations=max_iterations, D=D, sd=sd, mu=mu,
                delta=delta, step=step, h=h, ht=ht, hhi=hhi, x=x, xt=xt,
                evaluate=evaluate, rj_fn=rj_fn, up=up, yp=yp, wp=wp,
                nfev=nfev, njev=njev, half_squares=half_squares, cost=cost, normal=normal,
                finite=finite, nu=growth, ftol=ftol, xtol=xtol))
        # outputs
        _copy(c, n, x, xp)
        c.store(c.get(cost), ptr["cost"], p)
        for name, var in (("status", status), ("iterations", iterations), ("nfev", nfev),
                          ("njev", njev)):
            c.emit(f"store i64 {c.iget(var)}, ptr {c.gep('i64', ptr[name], p)}")
        with c.if_(c.is_set(ptr["grad_norm"])):
            gmax, _ = _nan_extreme(c, n, lambda k: c.fabs(c.load("double", model.now("g"), k)),
                                   True, "0.0")
            value = c.select(c.icmp("==", c.iget(have_model), "1"), gmax,
                             c.const(float("nan")))
            c.store(value, ptr["grad_norm"], p)
        with c.if_(c.logic("and", c.is_set(ptr["normal"]),
                           c.icmp("==", c.iget(have_model), "1"))):
            _copy(c, nn, model.now("A"), c.gep("double", ptr["normal"], c.i("*", p, nn)))
        with c.if_(c.logic("and", c.is_set(ptr["covariance"]),
                           c.icmp("==", c.iget(have_model), "1"))):
            target = c.gep("double", ptr["covariance"], c.i("*", p, nn))
            c.call("@inverse", [("i64", m), ("i64", n), ("ptr", model.now("A")),
                                ("ptr", L), ("ptr", target)], "i1")
        with c.if_(c.is_set(ptr["jacobian"])):
            _copy(c, mn, model.now("J"), c.gep("double", ptr["jacobian"], c.i("*", p, mn)))
        with c.if_(c.is_set(ptr["residuals"])):
            _copy(c, m, model.now("r"), c.gep("double", ptr["residuals"], c.i("*", p, m)))
    return c.function("lm_batch")


def _iteration(c: Code, locals_: dict[str, Any]) -> None:
    """One pass of the numpy loop's ``while True`` body (sets ``status`` to stop)."""
    v = locals_
    m, n, model, status = v["m"], v["n"], v["model"], v["status"]
    scaling, D, sd, mu, delta, nu = (v[k] for k in ("scaling", "D", "sd", "mu", "delta", "nu"))
    h, ht, hhi, x, xt = (v[k] for k in ("h", "ht", "hhi", "x", "xt"))
    cost = v["cost"]

    def stop(s: Status) -> None:
        c.iset(status, str(_CODE[s]))
        c.break_()

    r = model.now("r")
    nonzero = c.var("i64", "0")
    with c.for_("0", m) as k:
        with c.if_(c.cmp("!=", c.load("double", r, k), "0.0")):
            c.iset(nonzero, "1")
    with c.if_(c.icmp("==", c.iget(nonzero), "0")):
        stop(Status.ZERO_RESIDUAL)
    positive = c.var("i64", "0")
    with c.for_("0", n) as k:
        with c.if_(c.cmp(">", c.load("double", scaling, k), "0.0")):
            c.iset(positive, "1")
    with c.if_(c.icmp("==", c.iget(positive), "0")):
        stop(Status.NO_PARAMS_AFFECT_RESIDUALS)
    # the gradient cosine (MINPACK): max_j |g_j| / (|f| sqrt(diag_j)) over diag_j > 0
    fnorm = c.sqrt(_dot(c, m, r, r))
    g, diag = model.now("g"), model.now("diag")
    cosine = c.var("double", "0.0")
    with c.if_(c.cmp("!=", fnorm, "0.0")):
        best, seen = _nan_extreme(
            c, n, lambda k: c.f("/", c.fabs(c.load("double", g, k)),
                                c.f("*", c.sqrt(c.load("double", diag, k)), fnorm)),
            True, use=lambda k: c.cmp(">", c.sqrt(c.load("double", diag, k)), "0.0"))
        c.set(cosine, c.select(seen, best, "0.0"))
    with c.if_(c.cmp("<=", c.get(cosine), v["gtol"])):
        stop(Status.GRADIENT_TOLERANCE)
    with c.if_(c.icmp(">=", c.iget(v["iterations"]), v["max_iterations"])):
        stop(Status.MAX_ITERATIONS)
    # D = max(scaling, eps * max(scaling)), sd = sqrt(D)
    smax, _ = _nan_extreme(c, n, lambda k: c.load("double", scaling, k), True)
    floor = c.f("*", c.const(_EPS), smax)
    with c.for_("0", n) as k:
        sk = c.load("double", scaling, k)
        dk = c.select(c.logic("or", c.is_nan(sk), c.is_nan(floor)), c.const(float("nan")),
                      c.max(sk, floor))
        c.store(dk, D, k)
        c.store(c.sqrt(dk), sd, k)
    v["step"](c.get(mu), h)
    _fit_radius(c, n, model, sd, mu, h, ht, hhi, c.get(delta), v["step"])
    c.iset(v["iterations"], c.i("+", c.iget(v["iterations"]), "1"))
    with c.for_("0", n) as k:
        c.store(c.f("+", c.load("double", x, k), c.load("double", h, k)), xt, k)
    # the trial point's residuals and Jacobian in one pass (the numpy loop evaluates
    # the residuals, then the Jacobian once the step is accepted: nearly every step)
    v["evaluate"](v["rj_fn"], xt, v["up"], model.new("r"), model.new("J"), v["yp"], v["wp"],
                  True)
    c.iset(v["nfev"], c.i("+", c.iget(v["nfev"]), "1"))
    c.iset(v["njev"], c.i("+", c.iget(v["njev"]), "1"))
    cost_trial = c.var("double", v["half_squares"](model.new("r")))
    with c.if_(c.not_(c.is_finite(c.get(cost_trial)))):
        c.set(cost_trial, c.const(float("inf")))
    # predicted = -(g.h + 0.5 |J h|^2)
    J = model.now("J")
    jh2 = c.var("double", "0.0")
    with c.for_("0", m) as k:
        row = c.gep("double", J, c.i("*", k, n))
        t = _dot(c, n, row, h)
        c.set(jh2, c.f("+", c.get(jh2), c.f("*", t, t)))
    predicted = c.f("-", "0.0", c.f("+", _dot(c, n, g, h), c.f("*", c.const(0.5),
                                                              c.get(jh2))))
    actual = c.f("-", c.get(cost), c.get(cost_trial))
    ratio = c.select(c.cmp(">", predicted, "0.0"), c.f("/", actual, predicted),
                     c.const(float("-inf")))
    scaled_step = _scaled_norm(c, n, sd, h)
    scaled_x = _scaled_norm(c, n, sd, x)
    accepted = c.var("i64", "0")
    ok = c.logic("and", c.is_finite(c.get(cost_trial)),
                 c.logic("and", c.cmp(">", ratio, c.const(MIN_GAIN_RATIO)),
                         c.cmp(">", actual, "0.0")))
    with c.if_(ok):
        c.iset(accepted, "1")
    cost_before = c.get(cost)
    with c.if_(c.icmp("==", c.iget(accepted), "1")):
        v["normal"](model.new("J"), model.new("r"), model.new("A"), model.new("g"),
                    model.new("diag"))
        with c.if_(v["finite"](model.new("J"), model.new("diag"))):
            with c.if_(_evaporates(c, n, model.now("diag"), model.new("diag"))):
                c.iset(accepted, "0")
    with c.if_(c.icmp("==", c.iget(accepted), "1")):
        _copy(c, n, xt, x)
        model.swap()
        c.set(cost, v["half_squares"](model.now("r")))
        with c.if_(c.not_(v["finite"](model.now("J"), model.now("diag")))):
            stop(Status.NONFINITE_JACOBIAN)
        with c.if_(c.cmp(">=", ratio, c.const(0.75))):
            c.set(delta, c.max(c.get(delta), c.f("*", c.const(2.0), scaled_step)))
        new_diag = model.now("diag")
        with c.for_("0", n) as k:
            a, b = c.load("double", scaling, k), c.load("double", new_diag, k)
            c.store(c.select(c.logic("or", c.is_nan(a), c.is_nan(b)), c.const(float("nan")),
                             c.max(a, b)), scaling, k)
        t = c.f("-", c.f("*", c.const(2.0), ratio), c.const(1.0))
        factor = c.max(c.const(1.0 / 3.0), c.f("-", c.const(1.0),
                                               c.f("*", c.f("*", t, t), t)))
        c.set(mu, c.max(c.const(MIN_DAMPING), c.f("*", c.get(mu), factor)))
        c.set(nu, c.const(2.0))
    with c.else_():
        shrink = c.select(c.cmp(">=", actual, "0.0"), c.const(RADIUS_SHRINK),
                          c.const(RADIUS_SHRINK_UPHILL))
        c.set(delta, c.f("*", shrink, c.min(c.get(delta),
                                            c.f("*", c.const(10.0), scaled_step))))
        c.set(mu, c.f("*", c.get(mu), c.get(nu)))
        c.set(nu, c.f("*", c.get(nu), c.const(2.0)))
    ftol = v["ftol"]
    limit = c.f("*", ftol, cost_before)
    ftol_ok = c.logic("and", c.icmp("==", c.iget(accepted), "1"),
                      c.logic("and", c.cmp(">", cost_before, "0.0"),
                              c.logic("and", c.cmp("<=", c.fabs(actual), limit),
                                      c.cmp("<=", predicted, limit))))
    xtol = v["xtol"]
    xtol_ok = c.cmp("<=", scaled_step, c.f("*", xtol, c.f("+", xtol, scaled_x)))
    with c.if_(c.logic("and", ftol_ok, xtol_ok)):
        stop(Status.COST_AND_PARAM_TOLERANCE)
    with c.if_(ftol_ok):
        stop(Status.COST_TOLERANCE)
    with c.if_(xtol_ok):
        stop(Status.PARAM_TOLERANCE)
    with c.if_(c.cmp(">", c.get(mu), c.const(MAX_DAMPING))):
        stop(Status.DAMPING_LIMIT)


def _evaporates(c: Code, n: str, before: str, after: str) -> str:
    """The numpy loop's ``_evaporates(before, after)`` as an ``i1``."""
    def change(k: str) -> str:
        return c.f("/", c.load("double", after, k), c.load("double", before, k))

    def used(k: str) -> str:
        return c.cmp(">", c.load("double", before, k), "0.0")

    most, seen = _nan_extreme(c, n, change, True, use=used)
    least, _ = _nan_extreme(c, n, change, False, use=used)
    return c.logic("and", seen, c.logic("and", c.cmp(">", most, "0.0"),
                                        c.cmp("<", least, c.f("*", c.const(EVAPORATION),
                                                              most))))


def _fit_radius(c: Code, n: str, model: _Ptrs, sd: str, mu: str, h: str, ht: str, hhi: str,
                delta: str, step: Any) -> None:
    """The numpy loop's ``_fit_radius``: updates ``mu`` and ``h`` in place."""
    norm = _scaled_norm(c, n, sd, h)
    with c.if_(c.logic("and", c.is_finite(norm), c.cmp(">", norm, delta))):
        lo, psi_lo = c.var("double", c.get(mu)), c.var("double", c.f("/", c.const(1.0), norm))
        g = model.now("g")
        acc = c.var("double", "0.0")
        with c.for_("0", n) as k:
            t = c.f("/", c.load("double", g, k), c.load("double", sd, k))
            c.set(acc, c.f("+", c.get(acc), c.f("*", t, t)))
        hi = c.var("double", c.max(c.f("/", c.sqrt(c.get(acc)), delta), c.get(mu)))
        step(c.get(hi), hhi)
        n_hi = _scaled_norm(c, n, sd, hhi)
        near = c.cmp(">=", n_hi, c.f("*", c.const(1.0 - RADIUS_FIT_TOLERANCE), delta))
        with c.if_(c.logic("and", c.not_(near), c.cmp(">", n_hi, "0.0"))):
            psi_hi = c.var("double", c.f("/", c.const(1.0), n_hi))
            target = c.f("/", c.const(1.0), delta)
            with c.for_("0", str(RADIUS_FIT_SOLVES)):
                lo_, hi_ = c.get(lo), c.get(hi)
                width = c.f("-", hi_, lo_)
                trial = c.var("double", c.f("+", lo_, c.f("/", c.f(
                    "*", c.f("-", target, c.get(psi_lo)), width),
                    c.f("-", c.get(psi_hi), c.get(psi_lo)))))
                tv = c.get(trial)
                inside = c.logic("and", c.cmp("<", lo_, tv), c.cmp("<", tv, hi_))
                tiny = c.f("*", c.const(1e-3), width)
                bad = c.logic("or", c.not_(inside), c.logic(
                    "or", c.cmp("<", c.f("-", tv, lo_), tiny),
                    c.cmp("<", c.f("-", hi_, tv), tiny)))
                with c.if_(bad):
                    c.set(trial, c.select(c.cmp(">", lo_, "0.0"),
                                          c.sqrt(c.f("*", lo_, hi_)),
                                          c.f("*", c.const(0.5), hi_)))
                tv = c.get(trial)
                step(tv, ht)
                n_t = _scaled_norm(c, n, sd, ht)
                with c.if_(c.cmp(">", n_t, delta)):
                    c.set(lo, tv)
                    c.set(psi_lo, c.f("/", c.const(1.0), n_t))
                with c.else_():
                    c.set(hi, tv)
                    c.set(psi_hi, c.f("/", c.const(1.0), n_t))
                    _copy(c, n, ht, hhi)
                    with c.if_(c.cmp(">=", n_t, c.f(
                            "*", c.const(1.0 - RADIUS_FIT_TOLERANCE), delta))):
                        c.break_()
        c.set(mu, c.get(hi))
        _copy(c, n, hhi, h)


def driver_source() -> str:
    """The LLVM text of the driver module (``@lm_batch`` and its internal functions)."""
    functions = [_evaluate_fn(), _normal_fn(), _finite_fn(), _cholesky_fn(), _svd_fn(),
                 _inverse_fn(), _step_fn(), _batch_fn()]
    declarations = {"declare double @llvm.sqrt.f64(double)",
                    "declare double @llvm.fabs.f64(double)"}
    return ("; scalar_autograd: native Levenberg-Marquardt\n"
            + "".join(f"{d}\n" for d in sorted(declarations)) + "\n" + "\n".join(functions))


def driver() -> Any:
    """The compiled driver engine (compiled once per process; from the disk cache when
    one is set)."""
    from scalar_autograd.runtime.disk_cache import process_engine

    return process_engine("native_lm", driver_source, 2)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- Python side
def options_array(opts: SolverOptions) -> np.ndarray:
    """The float64 options array of the driver (see :data:`OPTIONS`)."""
    damping = math.nan if opts.initial_damping is None else float(opts.initial_damping)
    return np.array([opts.cost_tolerance, opts.param_tolerance, opts.gradient_tolerance,
                     float(opts.max_iterations), damping])


def supports(opts: SolverOptions, n: int) -> bool:
    """Whether the native loop runs a solve with these options and ``n`` params: the
    linear loss, no callback, no verbose log, no geodesic acceleration, a dense step,
    at most :data:`MAX_NATIVE_PARAMS` params, and llvmlite present."""
    return (opts.loss == "linear" and opts.callback is None and not opts.verbose
            and not opts.geodesic_acceleration
            and opts.linear_solver in ("auto", "dense") and 0 < n <= MAX_NATIVE_PARAMS
            and native_available())


@dataclass
class BatchOutput:
    """What :func:`solve_batch` fills: one row per problem.

    Attributes:
        x: ``(N, n)`` solutions (the best points found).
        cost: ``(N,)`` ``0.5 * sum(r**2)`` at ``x``.
        status: ``(N,)`` int64 codes into :data:`STATUSES` (:data:`NOT_RUN` until
            solved).
        iterations, nfev, njev: ``(N,)`` int64 counts, as the numpy loop's.
        grad_norm: ``(N,)`` infinity norm of ``J^T r`` at ``x``.
        normal: ``(N, n, n)`` ``J^T J`` at ``x`` (None unless asked for).
        jacobian: ``(N, m, n)`` the Jacobian at ``x`` (None unless asked for).
        residuals: ``(N, m)`` the residuals at ``x`` (None unless asked for).
        covariance: ``(N, n, n)`` ``(J^T J)^-1`` at ``x`` where its Cholesky factor is
            well conditioned, nan elsewhere (None unless asked for).
    """

    x: np.ndarray
    cost: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    nfev: np.ndarray
    njev: np.ndarray
    grad_norm: np.ndarray
    normal: np.ndarray | None = None
    jacobian: np.ndarray | None = None
    residuals: np.ndarray | None = None
    covariance: np.ndarray | None = None

    @classmethod
    def empty(cls, x0: np.ndarray, m: int, normal: bool = False, jacobian: bool = False,
              residuals: bool = False, covariance: bool = False) -> BatchOutput:
        """Outputs for the problems of ``x0`` (copied: the solutions overwrite it),
        every status -1 (not run)."""
        count, n = x0.shape
        return cls(
            x=np.array(x0, dtype=float, order="C"), cost=np.full(count, np.nan),
            status=np.full(count, NOT_RUN, dtype=np.int64),
            iterations=np.zeros(count, dtype=np.int64), nfev=np.zeros(count, dtype=np.int64),
            njev=np.zeros(count, dtype=np.int64), grad_norm=np.full(count, np.nan),
            normal=np.full((count, n, n), np.nan) if normal else None,
            jacobian=np.full((count, m, n), np.nan) if jacobian else None,
            residuals=np.full((count, m), np.nan) if residuals else None,
            covariance=np.full((count, n, n), np.nan) if covariance else None)


class NativeSolver:
    """The driver bound to one model: a compiled function of ``n`` params, ``nu``
    data inputs per row and ``nv`` outputs per row.

    Each thread that calls :meth:`run` gets its own workspace and kernel scratch.
    """

    def __init__(self, function: Any) -> None:
        entry = function._entry
        self.rj_kernel = kernel = entry.deriv_kernel()
        if kernel.backend != "llvm":
            raise ValueError(f"the native least-squares loop needs the llvm backend's "
                             f"kernel; this model runs on {kernel.backend!r}")
        if entry.n_aux:
            raise ValueError("the native least-squares loop takes models without guards")
        self.function = function
        self.n, self.nu, self.nv = function.n_params, function.n_inputs, function.n_outputs
        self.engine = driver()
        self._lm = BLOCK_FN(self.engine.address("lm_batch"))
        self._rj = kernel._engine.address("rows")
        self._scratch = max(kernel.n_scratch, 1)
        self._local = threading.local()

    def _workspace(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        local = self._local
        work = getattr(local, "work", None)
        size = workspace_size(self.n, m)
        if work is None or work.size < size:
            work = local.work = np.zeros(size)
            local.scratch = np.zeros(self._scratch)
        return work, local.scratch

    def run(self, out: BatchOutput, start: int, stop: int, rows: int, U: np.ndarray,
            u_stride: int, Y: np.ndarray | None, W: np.ndarray | None,
            options: np.ndarray) -> None:
        """Solve problems ``start .. stop-1`` of ``rows`` rows each in one native call
        (GIL released).

        ``U`` holds each problem's data at ``u_stride`` doubles from the previous one's
        (0: shared), ``Y`` and ``W`` are ``(N, m)`` or ``(m,)`` (shared) or None. The
        output arrays of ``out`` must have room for ``m = rows * nv`` residuals.
        """
        if stop <= start:
            return
        n, m = self.n, rows * self.nv
        work, scratch = self._workspace(m)
        block = np.zeros(len(WORDS), dtype=np.int64)
        f8 = 8

        def put(name: str, a: np.ndarray | None, per: int) -> None:
            """The address of problem ``start``'s row of ``a`` (0 for None; a 1-D
            ``Y``/``W`` is shared: stride 0)."""
            if a is not None:
                block[WORD[name]] = a.ctypes.data + start * per * f8

        block[:6] = (stop - start, n, rows, self.nu, self.nv, self._rj)
        put("X", out.x, n)
        block[WORD["U"]] = U.ctypes.data + start * u_stride * f8
        block[WORD["u_stride"]] = u_stride
        for name, a in (("Y", Y), ("W", W)):
            if a is not None:
                shared = a.ndim == 1
                put(name, a, 0 if shared else m)
                block[WORD[name] + 1] = 0 if shared else m
        block[WORD["options"]] = options.ctypes.data
        for name in ("cost", "status", "iterations", "nfev", "njev", "grad_norm"):
            put(name, getattr(out, name), 1)
        put("normal", out.normal, n * n)
        put("jacobian", out.jacobian, m * n)
        put("residuals", out.residuals, m)
        put("covariance", out.covariance, n * n)
        block[WORD["work"]] = work.ctypes.data
        block[WORD["scratch"]] = scratch.ctypes.data
        self._lm(int(block.ctypes.data))


class SingleSolve:
    """One problem at a time through :class:`NativeSolver`, with every buffer bound
    once: this thread's inputs (``x0``, the rows' data ``U``, ``y``, ``w``) are copied
    into its own arrays, whose addresses sit in a prepared argument block, so a solve
    costs a few copies and one ctypes call (``sa.curve_fit``'s path).

    ``out`` is overwritten by every :meth:`solve`: copy what you keep.
    """

    def __init__(self, solver: NativeSolver, rows: int) -> None:
        n, nu, m = solver.n, solver.nu, rows * solver.nv
        self.m = m
        self.U = np.zeros(rows * nu)
        self.y = np.zeros(m)
        self.w = np.zeros(m)
        self.out = BatchOutput.empty(np.zeros((1, n)), m, covariance=True)
        work, scratch = solver._workspace(m)
        self._keep = (work, scratch)
        self.block = np.zeros(len(WORDS), dtype=np.int64)
        out = self.out
        words = {"count": 1, "n": n, "rows": rows, "nu": nu, "nv": solver.nv,
                 "rj": solver._rj, "X": out.x, "U": self.U, "Y": self.y, "W": 0,
                 "cost": out.cost, "status": out.status, "iterations": out.iterations,
                 "nfev": out.nfev, "njev": out.njev, "grad_norm": out.grad_norm,
                 "covariance": out.covariance, "work": work, "scratch": scratch}
        for name, value in words.items():
            self.block[WORD[name]] = value.ctypes.data if isinstance(value, np.ndarray) \
                else value
        self._w_address = self.w.ctypes.data
        self._call = solver._lm
        self._pointer = self.block.ctypes.data

    def solve(self, x0: np.ndarray, U: np.ndarray, y: np.ndarray, w: np.ndarray | None,
              options: np.ndarray, options_address: int) -> BatchOutput:
        """Solve from ``x0`` (``(n,)``) with data ``U`` (``rows * nu``), observations
        ``y`` and weights ``w`` (``m`` each, ``w`` optional); ``options`` is the
        options array at ``options_address``."""
        out, block = self.out, self.block
        out.x[0] = x0
        self.U[:] = U
        self.y[:] = y
        if w is None:
            block[_W_WORD] = 0
        else:
            self.w[:] = w
            block[_W_WORD] = self._w_address
        block[_OPTIONS_WORD] = options_address
        assert out.covariance is not None
        out.covariance.fill(np.nan)
        self._keep_options = options          # alive for the call
        self._call(self._pointer)
        return out


_W_WORD, _OPTIONS_WORD = WORD["W"], WORD["options"]


def single_solve(solver: NativeSolver, rows: int) -> SingleSolve:
    """This thread's :class:`SingleSolve` of ``solver`` for problems of ``rows`` rows."""
    local = solver._local
    cache = getattr(local, "single", None)
    if cache is None:
        cache = local.single = {}
    single = cache.get(rows)
    if single is None:
        if len(cache) >= 8:
            cache.pop(next(iter(cache)))
        single = cache[rows] = SingleSolve(solver, rows)
    return single


_SOLVERS: weakref.WeakKeyDictionary[Any, NativeSolver] = weakref.WeakKeyDictionary()
_SOLVERS_LOCK = threading.Lock()


def solver_for(function: Any) -> NativeSolver:
    """The :class:`NativeSolver` of a compiled function (made once, kept while the
    function lives)."""
    solver = _SOLVERS.get(function)
    if solver is None:
        with _SOLVERS_LOCK:
            solver = _SOLVERS.get(function)
            if solver is None:
                solver = _SOLVERS[function] = NativeSolver(function)
    return solver


def plan(evaluator: Any, n: int) -> tuple[Any, int, np.ndarray] | None:
    """``(function, rows, U)`` when a problem's compiled residuals can run in the native
    loop, else None.

    That is when one compiled kernel (no guards) computes every residual, in order, row
    by row, and every row reads all ``n`` parameters in order: a curve fit written as a
    ``residual_fn``, NIST's problems, most small calibration problems. ``evaluator`` is
    an :class:`~scalar_autograd.lsq.assembly.Assembler`, or a compiled oracle whose one
    specialisation has no guards.
    """
    assembler = evaluator if hasattr(evaluator, "blocks") \
        else getattr(evaluator, "_unguarded", None)
    if assembler is None or assembler.sparse or len(assembler.blocks) != 1:
        return None
    block = assembler.blocks[0]
    function = block.function
    columns = block.shared_columns
    if (getattr(function, "backend", None) != "llvm" or function._entry.n_aux
            or columns is None or not np.array_equal(columns, np.arange(n))
            or function.n_params != n
            or not np.array_equal(block.rows.ravel(), np.arange(block.rows.size))
            or block.rows.size != assembler.m):
        return None
    return function, int(block.rows.shape[0]), np.ascontiguousarray(block.data, dtype=float)


def solve_one(function: Any, rows: int, U: np.ndarray, x0: np.ndarray,
              opts: SolverOptions) -> LeastSquaresResult:
    """One problem (see :func:`plan`) solved by the native loop, as the numpy loop's
    :class:`~scalar_autograd.LeastSquaresResult`."""
    start = time.perf_counter()
    solver = solver_for(function)
    m = rows * solver.nv
    out = BatchOutput.empty(np.asarray(x0, dtype=float).reshape(1, -1), m, jacobian=True,
                            residuals=True)
    solver.run(out, 0, 1, rows, U.reshape(-1), 0, None, None, options_array(opts))
    status = STATUSES[int(out.status[0])]
    assert out.residuals is not None and out.jacobian is not None
    return LeastSquaresResult(
        x=out.x[0], cost=float(out.cost[0]), residuals=out.residuals[0],
        grad_norm=float(out.grad_norm[0]), iterations=int(out.iterations[0]),
        nfev=int(out.nfev[0]), njev=int(out.njev[0]), status=status,
        time=time.perf_counter() - start, jacobian=out.jacobian[0])
