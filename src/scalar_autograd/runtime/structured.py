"""Kernels of programs with repeated structure: row kernels, index tables, an outer kernel.

:func:`~scalar_autograd.ir.structure.find_structure` splits a program into groups of
terms of one shape and an outer program. :class:`StructuredKernel` evaluates it with
the calling convention of every kernel (``run``, ``run_batch``, ``bind``):

1. each group's row kernel runs over its rows, on the params each row reads (gathered
   through ``param_index``), its runtime inputs (``input_index``) and its per-row
   constants: the term values ``t`` and, for the value-and-gradient kind, each row's
   local gradient ``D`` (rows x slots);
2. the reductions (sums of terms) are folded left to right, as the ``sum`` op does;
3. the outer kernel computes the outputs from ``x``, the terms it reads directly, the
   reductions and the inputs, and (for the gradient) the derivatives by all of them;
4. each term's adjoint ``dt`` is gathered (a reduction passes its own to each of its
   terms: the partials of a sum are exactly 1), and the gradient is ``d out / d x``
   plus each row's ``D`` scaled by its ``dt``, scatter-added into the slots' params.

The values are the flat program's bit for bit (each term and the outer combination run
the same operations in the same order); gradients differ from the flat program's only in
the order the contributions of the terms are added.

The kernels of the parts come from the kernel cache like any other (in memory and on
disk), so a shape compiled once is reused by every program that has it.

When the row kernels are native code (``"llvm"``), a bound call runs steps 1-2 and 4
as two calls of a driver compiled once per process (:func:`driver`: ``@rows_all``
gathers each row's params and inputs, calls the row kernel through its address and
folds the reductions; ``@scatter_all`` spreads the adjoints and scatter-adds), around
the outer kernel's own bound call: three native calls, whatever the number of rows and
groups. Otherwise numpy does steps 1, 2 and 4 around batched row calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalar_autograd.backends.base import DerivedProgram, Kernel
from scalar_autograd.ir.program import Program
from scalar_autograd.ir.structure import (
    CONST,
    INPUT,
    PARAM,
    TERM,
    Reduction,
    Structure,
    TermGroup,
)
from scalar_autograd.native.abi import BlockCall, address, address_block
from scalar_autograd.native.engine import NativeEngine
from scalar_autograd.native.structured import Code

ROW_WORDS = ("kernel", "n_rows", "n_slots", "param_index", "X", "n_in", "input_index",
             "U", "u_stride", "t", "D", "d_stride", "scratch", "uniform", "accumulate")
"""A group's words in the descriptor ``@rows_all`` reads (in this order). ``uniform``:
every row reads the same params (gathered once); ``accumulate``: 0, or the address of
``n_slots`` doubles that receive the sum of the rows' gradients (``D`` is then one row,
reused): for a group whose rows all feed one sum, so share one adjoint."""

SCATTER_WORDS = ("n_rows", "n_slots", "param_index", "D", "dt")
"""A group's words in the descriptor ``@scatter_all`` reads."""

REDUCTION_WORDS = ("count", "values", "adjoints")
"""A reduction's words: its element count, the address of each element's value (a
term, a param, an input, a constant) and where each element's adjoint is added (a
term's ``dt``, a param's gradient, a sink for inputs and constants)."""

_INT_WORDS = frozenset({"n_rows", "n_slots", "n_in", "u_stride", "d_stride", "count",
                        "uniform", "accumulate"})


def _words(c: Code, names: Sequence[str], desc: str, k: str) -> dict[str, str]:
    """Entry ``k`` of a descriptor of ``len(names)`` words per entry, by name."""
    block = c.gep("i64", desc, c.i("*", k, str(len(names))))
    return {name: c.arg(j, "i64" if name in _INT_WORDS else "ptr", block)
            for j, name in enumerate(names)}


def _pointer(c: Code, table: str, j: str) -> str:
    """Entry ``j`` of an int64 table of addresses, as a pointer."""
    p = c.fresh("ptr")
    c.emit(f"{p} = inttoptr i64 {c.load('i64', table, j)} to ptr")
    return p


def _rows_all() -> str:
    """``void @rows_all(ptr %args)``; args ``n, x, xo, u, n_groups, row_desc, t, n_direct,
    direct, n_reductions, reduction_desc``: for every group (:data:`ROW_WORDS`) and row
    ``r``, the row's params into ``X``, its inputs into ``U[r]``, ``kernel(X, U[r],
    t + r, D[r], scratch)``; then the outer kernel's params ``xo``: ``x``, the direct
    terms, and each reduction (:data:`REDUCTION_WORDS`) folded left to right."""
    c = Code()
    n, x, xo, u = c.arg(0, "i64"), c.arg(1, "ptr"), c.arg(2, "ptr"), c.arg(3, "ptr")
    n_groups, row_desc, t = c.arg(4, "i64"), c.arg(5, "ptr"), c.arg(6, "ptr")
    n_direct, direct = c.arg(7, "i64"), c.arg(8, "ptr")
    n_reductions, reduction_desc = c.arg(9, "i64"), c.arg(10, "ptr")
    with c.for_("0", n_groups) as g:
        w = _words(c, ROW_WORDS, row_desc, g)
        summing = c.icmp("!=", w["accumulate"], "0")
        total = c.fresh("total")
        c.emit(f"{total} = inttoptr i64 {w['accumulate']} to ptr")
        with c.if_(summing):
            with c.for_("0", w["n_slots"]) as j:
                c.store(c.const(0.0), total, j)
        with c.for_("0", w["n_rows"]) as r:
            base = c.i("*", r, w["n_slots"])
            with c.if_(c.logic("or", c.icmp("==", w["uniform"], "0"),
                               c.icmp("==", r, "0"))):
                with c.for_("0", w["n_slots"]) as j:
                    p = c.load("i64", w["param_index"], c.i("+", base, j))
                    c.store(c.load("double", x, p), w["X"], j)
            row_u = c.gep("double", w["U"], c.i("*", r, w["u_stride"]))
            in_base = c.i("*", r, w["n_in"])
            with c.for_("0", w["n_in"]) as j:
                q = c.load("i64", w["input_index"], c.i("+", in_base, j))
                c.store(c.load("double", u, q), row_u, j)
            c.call(w["kernel"], [("ptr", w["X"]), ("ptr", row_u),
                                 ("ptr", c.gep("double", w["t"], r)),
                                 ("ptr", c.gep("double", w["D"], c.i("*", r, w["d_stride"]))),
                                 ("ptr", w["scratch"])])
            with c.if_(summing):
                with c.for_("0", w["n_slots"]) as j:
                    c.store(c.f("+", c.load("double", total, j),
                                c.load("double", w["D"], j)), total, j)
    with c.for_("0", n) as i:
        c.store(c.load("double", x, i), xo, i)
    with c.for_("0", n_direct) as k:
        c.store(c.load("double", t, c.load("i64", direct, k)), xo, c.i("+", n, k))
    with c.for_("0", n_reductions) as k:
        w = _words(c, REDUCTION_WORDS, reduction_desc, k)
        acc = c.var(init=c.load("double", _pointer(c, w["values"], "0"), "0"))
        with c.for_("1", w["count"]) as j:
            element = c.load("double", _pointer(c, w["values"], j), "0")
            c.set(acc, c.f("+", c.get(acc), element))
        c.store(c.get(acc), xo, c.i("+", c.i("+", n, n_direct), k))
    return c.function("rows_all")


def _scatter_all() -> str:
    """``void @scatter_all(ptr %args)``; args ``n, od, der, n_groups, scatter_desc, dt,
    n_terms, n_direct, direct, n_reductions, reduction_desc``: ``der[:n] = od[:n]``; the
    terms' adjoints ``dt`` (zero, plus the outer kernel's derivative by each direct
    term, plus each reduction's to each of its terms); then for every group
    (:data:`SCATTER_WORDS`), row ``r`` and slot ``j``: ``der[param_index[r, j]] +=
    dt[r] * D[r, j]``, in that order."""
    c = Code()
    n, od, der = c.arg(0, "i64"), c.arg(1, "ptr"), c.arg(2, "ptr")
    n_groups, scatter_desc, dt = c.arg(3, "i64"), c.arg(4, "ptr"), c.arg(5, "ptr")
    n_terms, n_direct, direct = c.arg(6, "i64"), c.arg(7, "i64"), c.arg(8, "ptr")
    n_reductions, reduction_desc = c.arg(9, "i64"), c.arg(10, "ptr")
    with c.for_("0", n) as i:
        c.store(c.load("double", od, i), der, i)
    with c.for_("0", n_terms) as i:
        c.store(c.const(0.0), dt, i)
    with c.for_("0", n_direct) as k:
        q = c.load("i64", direct, k)
        c.store(c.f("+", c.load("double", dt, q), c.load("double", od, c.i("+", n, k))),
                dt, q)
    with c.for_("0", n_reductions) as k:
        w = _words(c, REDUCTION_WORDS, reduction_desc, k)
        adjoint = c.load("double", od, c.i("+", c.i("+", n, n_direct), k))
        with c.for_("0", w["count"]) as j:
            target = _pointer(c, w["adjoints"], j)
            c.store(c.f("+", c.load("double", target, "0"), adjoint), target, "0")
    with c.for_("0", n_groups) as g:
        w = _words(c, SCATTER_WORDS, scatter_desc, g)
        with c.for_("0", w["n_rows"]) as r:
            a = c.load("double", w["dt"], r)
            base = c.i("*", r, w["n_slots"])
            with c.for_("0", w["n_slots"]) as j:
                k = c.i("+", base, j)
                p = c.load("i64", w["param_index"], k)
                c.store(c.f("+", c.load("double", der, p),
                            c.f("*", a, c.load("double", w["D"], k))), der, p)
    return c.function("scatter_all")


def driver_source() -> str:
    """The LLVM text of the driver module (``@rows_all``, ``@scatter_all``)."""
    return "; scalar_autograd: structured kernels\n\n" + _rows_all() + "\n" + _scatter_all()


def driver() -> NativeEngine:
    """The compiled driver (once per process; from the disk cache when one is set)."""
    from scalar_autograd.runtime.disk_cache import process_engine

    return process_engine("structured", driver_source, 2)  # type: ignore[no-any-return]


class _Work:
    """One binding's (one thread's) working arrays."""

    def __init__(self, kernel: StructuredKernel) -> None:
        s = kernel.structure
        self.t = np.zeros(s.n_terms)
        self.dt = np.zeros(s.n_terms)
        self.xo = np.zeros(s.outer.n_params)
        self.U = [np.ascontiguousarray(np.hstack([np.zeros((g.n_rows, g.input_index.shape[1])),
                                                   g.data]))
                  for g in s.groups]
        self.X = [np.zeros(g.param_index.shape) for g in s.groups]
        self.V = [np.zeros((g.n_rows, 1)) for g in s.groups]
        self.D = [np.zeros((g.n_rows, k.n_derivs_per_row)) for g, k in
                  zip(s.groups, kernel.rows)]
        self.scratch = [np.zeros(max(k.kernel.n_scratch, 1)) for k in kernel.rows]
        self.outer_der = np.zeros(kernel.outer_derivs)
        self.outer_scratch = np.zeros(max(kernel.outer.n_scratch, 1))
        self.sink = np.zeros(1)   # where the adjoints of inputs and constants go
        self.totals: list[np.ndarray] = []   # summed gradients (see _summed_groups)


@dataclass(frozen=True)
class RowKernel:
    """A group's row kernel and its per-row derivative count."""

    kernel: Kernel
    n_derivs_per_row: int


class StructuredKernel(DerivedProgram):
    """The value (``deriv=False``) or value-and-gradient kernel of a structured program.

    Attributes:
        structure: the split program.
        rows: per group, its row kernel.
        outer: the outer program's kernel.
        backend: the backend of the parts.
        n_scratch: 0 (the kernel keeps its own per-binding working arrays).
    """

    n_scratch = 0

    def __init__(self, structure: Structure, rows: Sequence[Kernel], outer: Kernel,
                 deriv: bool, backend: str, flat: Callable[[], Program]) -> None:
        self.structure = structure
        self.rows = [RowKernel(k, g.program.n_params if deriv else 0)
                     for k, g in zip(rows, structure.groups)]
        self.outer = outer
        self.deriv = deriv
        self.backend = backend
        self._derive: Callable[[], Program] | None = flat   # the flat program, if asked
        self._program: Program | None = None
        self._lock = threading.Lock()
        # one differentiated output (find_structure is only asked for those)
        self.outer_derivs = structure.outer.n_params if deriv else structure.outer.n_derivs
        self.n_params = structure.n_params
        self._direct = np.ascontiguousarray(structure.direct, dtype=np.int64)
        self._constants = [np.ascontiguousarray(r.constants, dtype=np.float64)
                           for r in structure.reductions]
        # per reduction and kind of element: where the elements stand, and their indices
        self._elements = [{kind: (np.flatnonzero(r.source == kind), r.of(kind))
                           for kind in (TERM, PARAM, INPUT, CONST)}
                          for r in structure.reductions]

    @property
    def source(self) -> str:
        """A listing of the parts' generated code."""
        parts = [f"; structured: {len(self.rows)} row kernels and an outer kernel"]
        for j, (k, g) in enumerate(zip(self.rows, self.structure.groups)):
            parts.append(f"; --- row kernel {j}: {g.n_rows} rows\n{k.kernel.source}")
        parts.append(f"; --- outer kernel\n{self.outer.source}")
        return "\n".join(parts)

    def tier_up(self) -> None:
        """Install the final code of every part that compiles in tiers."""
        for part in (*[rk.kernel for rk in self.rows], self.outer):
            tier_up = getattr(part, "tier_up", None)
            if tier_up is not None:
                tier_up()

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, w: _Work, x: np.ndarray, u: np.ndarray, val: np.ndarray,
                  der: np.ndarray) -> None:
        """Steps 1-4 of the module docstring with numpy (any backend)."""
        s = self.structure
        n = self.n_params
        t = w.t
        for j, (g, rk) in enumerate(zip(s.groups, self.rows)):
            X, U, V, D = w.X[j], w.U[j], w.V[j], w.D[j]
            np.take(x, g.param_index, out=X)
            if g.input_index.shape[1]:
                np.take(u, g.input_index, out=U[:, :g.input_index.shape[1]])
            rk.kernel.run_batch(X, U, V, D, w.scratch[j])
            off = s.term_offset[j]
            t[off:off + g.n_rows] = V[:, 0]
        xo = w.xo
        xo[:n] = x
        d = self._direct.shape[0]
        xo[n:n + d] = t[self._direct]
        for k, (r, elements) in enumerate(zip(s.reductions, self._elements)):
            values = np.empty(r.source.shape[0])
            for kind, source in ((TERM, t), (PARAM, x), (INPUT, u), (CONST, r.constants)):
                where, index = elements[kind]
                values[where] = source[index]
            xo[n + d + k] = np.add.accumulate(values)[-1]   # left to right
        od = w.outer_der if self.deriv else der
        self.outer.run(xo, u, val, od, w.outer_scratch)
        if not self.deriv:
            return
        der[:] = od[:n]
        dt = w.dt
        dt[:] = 0.0
        np.add.at(dt, self._direct, od[n:n + d])
        for k, elements in enumerate(self._elements):
            np.add.at(dt, elements[TERM][1], od[n + d + k])
            np.add.at(der, elements[PARAM][1], od[n + d + k])
        for j, g in enumerate(s.groups):
            off = s.term_offset[j]
            _scatter(der, g, w.D[j], dt[off:off + g.n_rows])

    def run(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
            scratch: np.ndarray) -> None:
        """Evaluate once (working arrays made for this call)."""
        self._evaluate(_Work(self), x, u, val, der)

    def run_batch(self, X: np.ndarray, U: np.ndarray, V: np.ndarray, D: np.ndarray,
                  scratch: np.ndarray) -> None:
        """Every row of ``X``/``U`` in turn."""
        w = _Work(self)
        for r in range(X.shape[0]):
            self._evaluate(w, X[r], U[r], V[r], D[r])

    def bind(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
             scratch: np.ndarray) -> Callable[[], None]:
        """A zero-argument callable evaluating on these buffers (with its own working
        arrays: one binding per thread, as for every kernel): three native calls when
        the row kernels are native code, else numpy around batched row calls."""
        w = _Work(self)
        if all(hasattr(rk.kernel, "address") for rk in self.rows):
            return self._bind_native(w, x, u, val, der)
        evaluate = self._evaluate

        def call() -> None:
            evaluate(w, x, u, val, der)

        return call

    def _bind_native(self, w: _Work, x: np.ndarray, u: np.ndarray, val: np.ndarray,
                     der: np.ndarray) -> Callable[[], None]:
        s = self.structure
        n = self.n_params
        _check_tables(s, n, u.shape[0])
        engine = driver()
        row_words: list[np.ndarray | int] = []
        scatter_words: list[np.ndarray | int] = []
        index = [np.ascontiguousarray(g.param_index, dtype=np.int64) for g in s.groups]
        inputs = [np.ascontiguousarray(g.input_index, dtype=np.int64) for g in s.groups]
        upgrading = []  # (word, kernel): kernels still on their quick code
        summed = _summed_groups(s) if self.deriv else [False] * len(s.groups)
        for j, (g, rk) in enumerate(zip(s.groups, self.rows)):
            off = s.term_offset[j]
            kernel: Any = rk.kernel
            if getattr(kernel, "code_level", 0) != getattr(kernel, "level", 0):
                upgrading.append((len(row_words), kernel))
            total = np.zeros(g.param_index.shape[1]) if summed[j] else None
            if total is not None:
                w.D[j] = np.zeros((1, rk.n_derivs_per_row))   # one row, reused
                w.totals.append(total)
            row_words += [kernel.current_address, g.n_rows,
                          g.param_index.shape[1], index[j], w.X[j], g.input_index.shape[1],
                          inputs[j], w.U[j], w.U[j].shape[1], w.t[off:],
                          w.D[j], 0 if total is not None else rk.n_derivs_per_row,
                          w.scratch[j], int(g.uniform_params),
                          0 if total is None else address(total)]
            scatter_words += [1, g.param_index.shape[1], index[j], total, w.dt[off:]] \
                if total is not None else \
                [g.n_rows, g.param_index.shape[1], index[j], w.D[j], w.dt[off:]]
        reduction_words: list[np.ndarray | int] = []
        tables = []
        for r, constants in zip(s.reductions, self._constants):
            values, adjoints = _element_addresses(r, w, x, u, der, constants)
            tables += [values, adjoints]
            reduction_words += [r.source.shape[0], values, adjoints]
        row_desc = address_block(row_words)
        scatter_desc = address_block(scatter_words)
        reduction_desc = address_block(reduction_words or [0])
        keep = (engine, self, index, inputs, w, row_desc, scatter_desc, reduction_desc,
                tables, x, u, der)
        d = self._direct.shape[0]
        rows = BlockCall(engine.address("rows_all"),
                         [n, x, w.xo, u, len(s.groups), row_desc, w.t, d, self._direct,
                          len(s.reductions), reduction_desc], owner=keep)

        def follow() -> None:
            """Point the descriptor at each row kernel's code of the moment: the quick
            code until the final code is installed (never waiting for it)."""
            for word, kernel in list(upgrading):
                row_desc[word] = kernel.current_address
                if kernel.code_level == kernel.level:
                    upgrading.remove((word, kernel))

        od = w.outer_der if self.deriv else der
        outer = self.outer.bind(w.xo, u, val, od, w.outer_scratch)
        if not self.deriv:
            def call_value() -> None:
                if upgrading:
                    follow()
                rows()
                outer()

            return call_value
        scatter = BlockCall(engine.address("scatter_all"),
                            [n, w.outer_der, der, len(s.groups), scatter_desc, w.dt,
                             w.dt.shape[0], d, self._direct, len(s.reductions),
                             reduction_desc], owner=keep)

        def call() -> None:
            if upgrading:
                follow()
            rows()
            outer()
            scatter()

        return call


def _check_tables(s: Structure, n: int, n_inputs: int) -> None:
    """Every index the native driver follows is in range (it does not check them: a
    wrong table would write outside its buffers)."""
    def inside(a: np.ndarray, size: int, what: str) -> None:
        if a.size and (int(a.min()) < 0 or int(a.max()) >= size):
            raise ValueError(f"structured kernel: {what} out of range [0, {size})")

    for g in s.groups:
        inside(g.param_index, n, "param_index")
        inside(g.input_index, n_inputs, "input_index")
    inside(s.direct, s.n_terms, "direct terms")
    for r in s.reductions:
        for kind, size in ((TERM, s.n_terms), (PARAM, n), (INPUT, n_inputs),
                           (CONST, r.constants.shape[0])):
            inside(r.of(kind), size, "reduction elements")


def _summed_groups(s: Structure) -> list[bool]:
    """Per group: its rows all read the same params and each is one element of the same
    reduction, read nowhere else; so every row's adjoint is that reduction's, and the
    rows' gradients can be summed as they are computed (a network's loss over samples)
    instead of kept row by row for the scatter."""
    uses = np.zeros(s.n_terms, dtype=np.int64)
    owner = np.full(s.n_terms, -1, dtype=np.int64)
    for k, r in enumerate(s.reductions):
        terms = r.of(TERM)
        np.add.at(uses, terms, 1)
        owner[terms] = k
    np.add.at(uses, s.direct, 2)
    summed = []
    for j, g in enumerate(s.groups):
        rows = slice(s.term_offset[j], s.term_offset[j] + g.n_rows)
        summed.append(bool(g.uniform_params and g.n_rows > 1 and (uses[rows] == 1).all()
                           and (owner[rows] == owner[rows.start]).all()))
    return summed


def _element_addresses(r: Reduction, w: _Work, x: np.ndarray, u: np.ndarray,
                       der: np.ndarray, constants: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The address of each element of ``r`` (its value) and of where its adjoint goes
    (a term's ``dt``, a param's gradient; inputs and constants: a sink)."""
    item = 8
    base = {TERM: (w.t, w.dt), PARAM: (x, der), INPUT: (u, w.sink),
            CONST: (constants, w.sink)}
    values = np.zeros(r.source.shape[0], dtype=np.int64)
    adjoints = np.zeros(r.source.shape[0], dtype=np.int64)
    for kind, (value, adjoint) in base.items():
        chosen = r.source == kind
        if chosen.any():
            values[chosen] = address(value) + item * r.index[chosen]
            adjoints[chosen] = address(adjoint) + (
                0 if adjoint is w.sink else item * r.index[chosen])
    return values, adjoints


def _scatter(der: np.ndarray, g: TermGroup, D: np.ndarray, dt: np.ndarray) -> None:
    """``der[param_index[r, j]] += dt[r] * D[r, j]`` for every row and slot."""
    if not D.shape[1]:
        return
    if g.uniform_params:
        der[g.param_index[0]] += D.T @ dt
    else:
        der += np.bincount(g.param_index.ravel(), weights=(D * dt[:, None]).ravel(),
                           minlength=der.shape[0])
