"""Native (LLVM) kernels of the Schur-complement step, specialised per block shape.

:class:`~scalar_autograd.lsq.schur.SchurComplement` sorts the rows touching an
eliminated group into *F-blocks* (rows sharing one group and one tuple of ``k``
reduced columns; a bundle-adjustment observation's two rows). Three loops over those
blocks do all the per-row work of an LM step, with the shape ``(k, s)`` (reduced
columns per row, eliminated block size) compiled in as constants, so every small
product is straight-line code held in registers:

``parts``
    per block ``b`` of group ``j``: ``W_b = sum a_r e_r^T`` (k x s, stored),
    ``V_j += sum e_r e_r^T`` and ``U[c(b), c(b)] += sum a_r a_r^T`` (scattered).
``reduce``
    per group ``j`` with ``V_j^-1`` given: ``T_b = W_b V_j^-1``; ``rhs[c(b)] += T_b
    g_j``; ``S1[c(b), c(b)] += T_b W_b^T``; for each later block ``b'`` of the group
    ``S2[c(b), c(b')] += T_b W_b'^T``. The Schur complement is then
    ``U - (S1 + S2 + S2^T)``: only the camera pairs a point links are ever touched
    (``sum_j n_j^2 / 2`` small products), where a dense ``Z Z^T`` costs
    ``n_R^2 |E|``: 25 times the arithmetic on the bundle-adjustment benchmark.
``back``
    per group: ``h_j = -V_j^-1 (g_j + sum_b W_b^T h_R[c(b)])``.

Every array is C-contiguous; a padded reduced column (rows with fewer than ``k``
reduced entries) points at a ghost column ``n_R`` whose Jacobian entries are zero, so
the kernels never branch on it. No fast-math flags: the arithmetic is IEEE's, in a
fixed order. One engine per ``(k, s)`` and process, compiled on first use (tens of
milliseconds); blocks too large to unroll (``k * k > MAX_UNROLLED``) take the numpy
path.

Example:
    >>> import numpy as np
    >>> kernels = kernels_for(1, 1)
    >>> data = np.array([2.0, 3.0])           # one row: a = 2 (column 0), e = 3
    >>> W, V, U = np.zeros((1, 1, 1)), np.zeros((1, 1, 1)), np.zeros((2, 2))
    >>> one = np.array([1])
    >>> kernels.parts(1, data, np.array([[0, 1]]), one, one, np.array([0, 1]), np.array([0]),
    ...               np.array([[0]]), W, V, U)
    >>> W.ravel().tolist(), V.ravel().tolist(), float(U[0, 0])
    ([6.0], [9.0], 4.0)
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from scalar_autograd.native.abi import BLOCK_FN, address, address_block, check_buffer
from scalar_autograd.native.emitter import FunctionEmitter, module
from scalar_autograd.native.engine import native_engine

MAX_UNROLLED = 576
"""Largest ``k * k`` (reduced columns per row, squared) unrolled into straight-line
code (k = 24: compiled in about 1 s here; k = 32 took 3 s); larger blocks take the numpy
path."""

PREFETCH_DISTANCE = 8
"""Blocks ahead whose Jacobian rows ``parts`` asks the cache for."""

_ZERO = np.zeros(1)
"""What a padded position reads."""


def _block_header(e: FunctionEmitter, b: str, k: int, s: int, W: str, cols: str,
                  width: str) -> tuple[list[list[str]], list[str]]:
    """Load block ``b``'s ``W_b`` (k x s) and the row offsets ``c_i * width`` of its
    reduced columns."""
    w_base = e.index(f"{b}*{k * s}")
    w = [[e.load("double", W, e.index(w_base, i * s + t)) for t in range(s)]
         for i in range(k)]
    c_base = e.index(f"{b}*{k}")
    c = [e.load("i64", cols, e.index(c_base, i)) for i in range(k)]
    rows = [e.op("mul", "i64", ci, width) for ci in c]
    return w, [*c, *rows]


def _parts_ir(k: int, s: int) -> str:
    """args: nb, &data, &pos (runs x (k+s)), &mult, &stride (per run), &block_start
    (nb+1, runs), &block_group, &block_cols (nb x k), &W (nb x k x s), &V (G x s x s),
    &U (width^2), width, nnz, &zero.

    A run is ``mult`` rows naming the same columns, ``stride`` entries apart in
    ``data``; ``pos`` holds its first row's positions (``nnz``: padding, reads ``zero``)."""
    e = FunctionEmitter()
    nb, data, pos, mult, stride = (e.arg(0, "i64"), e.arg(1, "ptr"), e.arg(2, "ptr"),
                                   e.arg(3, "ptr"), e.arg(4, "ptr"))
    bstart, bgroup, bcols = e.arg(5, "ptr"), e.arg(6, "ptr"), e.arg(7, "ptr")
    W, V, U, width, nnz = (e.arg(8, "ptr"), e.arg(9, "ptr"), e.arg(10, "ptr"),
                           e.arg(11, "i64"), e.arg(12, "i64"))
    zero = e.arg(13, "ptr")
    b = e.loop("b", "0", nb, "entry")
    u0 = e.load("i64", bstart, b)
    u1 = e.load("i64", bstart, e.op("add", "i64", b, "1"))
    g = e.load("i64", bgroup, b)
    # the blocks' rows are scattered over J.data (sorted by group, not by row): fetch
    # the first and last entry of a block PREFETCH_DISTANCE blocks ahead
    ahead = e.op("add", "i64", b, str(PREFETCH_DISTANCE))
    clamped = e.fresh("c")
    last = e.op("sub", "i64", nb, "1")
    e.emit(f"{clamped} = call i64 @llvm.smin.i64(i64 {ahead}, i64 {last})")
    pu = e.load("i64", bstart, clamped)
    first_at = e.load("i64", pos, e.index(f"{pu}*{k + s}"))
    span = e.op("mul", "i64", e.op("sub", "i64", e.load("i64", mult, pu), "1"),
                e.load("i64", stride, pu))
    last_at = e.op("add", "i64", e.load("i64", pos, e.index(f"{pu}*{k + s}", k + s - 1)), span)
    for at in (first_at, last_at):
        e.emit(f"call void @llvm.prefetch.p0(ptr {e.gep('double', data, at)}, "
               "i32 0, i32 3, i32 1)")
    # accumulators over the block's rows: W (k x s), upper U (k x k), upper V (s x s)
    acc_names = ([("w", i, t) for i in range(k) for t in range(s)]
                 + [("u", i, j) for i in range(k) for j in range(i, k)]
                 + [("v", t, u) for t in range(s) for u in range(t, s)])
    # one loop over the block's rows: run u, row t of the run
    e.loop_header("r", "b.body", [("i64", "%u", u0, "%u.n"), ("i64", "%t", "0", "%t.n")]
                  + [("double", f"%{n}.{i}.{j}", "0.0", f"%{n}.{i}.{j}.n")
                     for n, i, j in acc_names], "%u", u1)
    row = e.index(f"%u*{k + s}")
    offset = e.op("mul", "i64", "%t", e.load("i64", stride, "%u"))
    vals = []
    for c in range(k + s):
        at = e.load("i64", pos, e.index(row, c))
        pad, moved, where = e.fresh("pad"), e.op("add", "i64", at, offset), e.fresh("at")
        e.emit(f"{pad} = icmp eq i64 {at}, {nnz}")
        e.emit(f"{where} = select i1 {pad}, ptr {zero}, ptr {e.gep('double', data, moved)}")
        value = e.fresh("x")
        e.emit(f"{value} = load double, ptr {where}")
        vals.append(value)
    a, ev = vals[:k], vals[k:]
    for name, i, j in acc_names:
        if name == "w":
            x, y = a[i], ev[j]
        elif name == "u":
            x, y = a[i], a[j]
        else:
            x, y = ev[i], ev[j]
        prod = e.op("fmul", "double", x, y)
        e.emit(f"%{name}.{i}.{j}.n = fadd double %{name}.{i}.{j}, {prod}")
    t1 = e.op("add", "i64", "%t", "1")
    wrap = e.fresh("wrap")
    e.emit(f"{wrap} = icmp sge i64 {t1}, {e.load('i64', mult, '%u')}")
    e.emit(f"%u.n = select i1 {wrap}, i64 {e.op('add', 'i64', '%u', '1')}, i64 %u")
    e.emit(f"%t.n = select i1 {wrap}, i64 0, i64 {t1}")
    e.emit("br label %r.head")
    e.label("r.exit")
    w_base = e.index(f"{b}*{k * s}")
    for i in range(k):
        for t in range(s):
            e.store(f"%w.{i}.{t}", W, e.index(w_base, i * s + t))
    v_base = e.index(f"{g}*{s * s}")
    for t in range(s):
        for u in range(s):
            lo, hi = min(t, u), max(t, u)
            e.add_to(V, e.index(v_base, t * s + u), f"%v.{lo}.{hi}")
    c_base = e.index(f"{b}*{k}")
    col = [e.load("i64", bcols, e.index(c_base, i)) for i in range(k)]
    rows = [e.op("mul", "i64", ci, width) for ci in col]
    for i in range(k):
        for j in range(k):
            lo, hi = min(i, j), max(i, j)
            e.add_to(U, e.index(rows[i], col[j]), f"%u.{lo}.{hi}")
    e.end_loop("b")
    return e.function("parts")


def _reduce_ir(k: int, s: int) -> str:
    """args: n_runs, &run_start (n_runs+1, block index), &block_group, &block_cols,
    &W, &Vinv (G x s x s), &gE (G x s), &S1, &S2 (width^2), &rhs (width), width."""
    e = FunctionEmitter()
    n_runs, rstart, bgroup, bcols, W, Vinv = (e.arg(0, "i64"), e.arg(1, "ptr"), e.arg(2, "ptr"),
                                             e.arg(3, "ptr"), e.arg(4, "ptr"), e.arg(5, "ptr"))
    gE, S1, S2, rhs, width = (e.arg(6, "ptr"), e.arg(7, "ptr"), e.arg(8, "ptr"),
                              e.arg(9, "ptr"), e.arg(10, "i64"))
    q = e.loop("q", "0", n_runs, "entry")
    b0 = e.load("i64", rstart, q)
    b1 = e.load("i64", rstart, e.op("add", "i64", q, "1"))
    g = e.load("i64", bgroup, b0)
    vb = e.index(f"{g}*{s * s}")
    vinv = [[e.load("double", Vinv, e.index(vb, t * s + u)) for u in range(s)] for t in range(s)]
    gb = e.index(f"{g}*{s}")
    gj = [e.load("double", gE, e.index(gb, t)) for t in range(s)]
    ba = e.loop("ba", b0, b1, "q.body")
    w, cr = _block_header(e, ba, k, s, W, bcols, width)
    c, rows = cr[:k], cr[k:]
    T = [[e.dot([(w[i][v], vinv[v][t]) for v in range(s)]) for t in range(s)] for i in range(k)]
    for i in range(k):
        e.add_to(rhs, c[i], e.dot([(T[i][t], gj[t]) for t in range(s)]))
    for i in range(k):
        for j in range(k):
            e.add_to(S1, e.index(rows[i], c[j]), e.dot([(T[i][t], w[j][t]) for t in range(s)]))
    first = e.op("add", "i64", ba, "1")
    bb = e.loop("bb", first, b1, "ba.body")
    w2, cr2 = _block_header(e, bb, k, s, W, bcols, width)
    c2 = cr2[:k]
    for i in range(k):
        for j in range(k):
            e.add_to(S2, e.index(rows[i], c2[j]), e.dot([(T[i][t], w2[j][t]) for t in range(s)]))
    e.end_loop("bb")
    e.end_loop("ba")
    e.end_loop("q")
    return e.function("reduce")


def _back_ir(k: int, s: int) -> str:
    """args: n_runs, &run_start, &block_group, &block_cols, &W, &Vinv, &gE, &hR (width),
    &hE (G x s)."""
    e = FunctionEmitter()
    n_runs, rstart, bgroup, bcols, W, Vinv = (e.arg(0, "i64"), e.arg(1, "ptr"), e.arg(2, "ptr"),
                                             e.arg(3, "ptr"), e.arg(4, "ptr"), e.arg(5, "ptr"))
    gE, hR, hE = e.arg(6, "ptr"), e.arg(7, "ptr"), e.arg(8, "ptr")
    q = e.loop("q", "0", n_runs, "entry")
    b0 = e.load("i64", rstart, q)
    b1 = e.load("i64", rstart, e.op("add", "i64", q, "1"))
    g = e.load("i64", bgroup, b0)
    gb = e.index(f"{g}*{s}")
    gj = [e.load("double", gE, e.index(gb, t)) for t in range(s)]
    # acc_t = g_j[t] + sum over the group's blocks of (W_b^T h_R[c(b)])_t
    e.loop_header("bb", "q.body", [("i64", "%bb", b0, "%bb.next")]
                  + [("double", f"%acc.{t}", gj[t], f"%acc.{t}.n") for t in range(s)],
                  "%bb", b1)
    c_base = e.index(f"%bb*{k}")
    h = [e.load("double", hR, e.load("i64", bcols, e.index(c_base, i))) for i in range(k)]
    w_base = e.index(f"%bb*{k * s}")
    for t in range(s):
        terms = [(e.load("double", W, e.index(w_base, i * s + t)), h[i]) for i in range(k)]
        e.emit(f"%acc.{t}.n = fadd double %acc.{t}, {e.dot(terms)}")
    e.emit("%bb.next = add i64 %bb, 1")
    e.emit("br label %bb.head")
    e.label("bb.exit")
    vb = e.index(f"{g}*{s * s}")
    for t in range(s):
        row = [(e.load("double", Vinv, e.index(vb, t * s + u)), f"%acc.{u}") for u in range(s)]
        e.store(e.op("fsub", "double", "-0.0", e.dot(row)), hE, e.index(gb, t))
    e.end_loop("q")
    return e.function("back")


class SchurKernels:
    """The three compiled loops for one ``(k, s)`` (module docstring)."""

    def __init__(self, k: int, s: int) -> None:
        self.k, self.s = k, s
        self.source = module("generated by scalar_autograd.lsq.schur_native",
                             {"declare void @llvm.prefetch.p0(ptr, i32, i32, i32)",
                              "declare i64 @llvm.smin.i64(i64, i64)"},
                             [_parts_ir(k, s), _reduce_ir(k, s), _back_ir(k, s)])
        self._engine = native_engine(self.source, 2)
        self._parts = BLOCK_FN(self._engine.address("parts"))
        self._reduce = BLOCK_FN(self._engine.address("reduce"))
        self._back = BLOCK_FN(self._engine.address("back"))

    @staticmethod
    def _call(fn: Any, words: list[Any]) -> None:
        """Call ``fn`` with an argument block of ints and array addresses (the caller
        holds the arrays for the call's duration)."""
        block = address_block(words)
        fn(address(block))

    def parts(self, nb: int, data: np.ndarray, pos: np.ndarray, mult: np.ndarray,
              stride: np.ndarray, block_start: np.ndarray, block_group: np.ndarray,
              block_cols: np.ndarray, W: np.ndarray, V: np.ndarray, U: np.ndarray) -> None:
        """``W`` written, ``V`` and ``U`` (square, ghost column included) added to.
        Positions ``data.size`` in ``pos`` are padding and read zero."""
        _check(data, pos, mult, stride, block_start, block_group, block_cols, W, V, U)
        self._call(self._parts, [nb, data, pos, mult, stride, block_start, block_group,
                                 block_cols, W, V, U, U.shape[0], data.size, _ZERO])

    def reduce(self, run_start: np.ndarray, block_group: np.ndarray, block_cols: np.ndarray,
               W: np.ndarray, Vinv: np.ndarray, gE: np.ndarray, S1: np.ndarray,
               S2: np.ndarray, rhs: np.ndarray) -> None:
        """``S1``, ``S2`` and ``rhs`` added to (module docstring)."""
        _check(run_start, block_group, block_cols, W, Vinv, gE, S1, S2, rhs)
        self._call(self._reduce, [run_start.size - 1, run_start, block_group, block_cols, W,
                                  Vinv, gE, S1, S2, rhs, S1.shape[0]])

    def back(self, run_start: np.ndarray, block_group: np.ndarray, block_cols: np.ndarray,
             W: np.ndarray, Vinv: np.ndarray, gE: np.ndarray, hR: np.ndarray,
             hE: np.ndarray) -> None:
        """``hE`` written for every group with blocks."""
        _check(run_start, block_group, block_cols, W, Vinv, gE, hR, hE)
        self._call(self._back, [run_start.size - 1, run_start, block_group, block_cols, W,
                                Vinv, gE, hR, hE])


_KINDS = (np.dtype(np.float64), np.dtype(np.int64))


def _check(*arrays: np.ndarray) -> None:
    for k, a in enumerate(arrays):
        check_buffer(a, f"Schur kernel array {k}", dtypes=_KINDS, writeable=False)


_kernels: dict[tuple[int, int], SchurKernels | None] = {}
_lock = threading.Lock()


def kernels_for(k: int, s: int) -> SchurKernels | None:
    """The compiled kernels for ``(k, s)``, or None (no llvmlite, or too large to unroll)."""
    if k * k > MAX_UNROLLED or k < 1 or s < 1:
        return None
    key = (k, s)
    with _lock:
        if key not in _kernels:
            try:
                _kernels[key] = SchurKernels(k, s)
            except ImportError:
                _kernels[key] = None
        return _kernels[key]
