"""The ``jacobian="compiled"`` oracle: trace ``residual_fn``, guard its branches, evaluate kernels.

``residual_fn(params)`` is called under :func:`scalar_autograd.tracing.tracing` of the
params. Structurally identical residuals (same ops, same shape, differing only in their
constants) form one group (:func:`scalar_autograd.runtime.group_residuals`), compiled
once with its parameter slots as params and its lifted constants as per-row inputs;
each group is a :class:`~scalar_autograd.lsq.assembly.KernelBlock`, evaluated in one
native loop over its rows and assembled into r and J exactly as the residual blocks of
a :class:`~scalar_autograd.lsq.problem.LeastSquaresProblem` are.

Python branches on the params (``if``, ``while``, ``and``/``or``, builtin
``min``/``max`` of a ``Value`` that depends on them) are recorded as guards, as
:func:`scalar_autograd.jit` does. The indicator of all of them (1.0 where every branch
goes the traced way) is compiled as one more function of the params and evaluated
before the compiled residuals are used at any ``x``. When it fails, ``residual_fn`` is
traced again at ``x`` and the new *specialisation* (its kernels, its Jacobian layout and
its own guard check) is kept beside the others; every evaluation uses a specialisation
whose guards hold at ``x``, the most recently used tried first. More than
``max_specializations`` patterns raise :class:`~scalar_autograd.SpecializationLimitError`
naming the branch sites. A ``residual_fn`` without branches costs nothing extra: no
guard function is compiled or called. ``float()``, ``int()`` and ``math.*`` of a value
that depends on the params raise :class:`~scalar_autograd.ConcretizationError`
naming the line. A branch on ``p.data`` (a plain float) cannot be seen and stays frozen:
branch on the ``Value``, or use ``sa.where``.

Every specialisation has the same number of residuals and the same Jacobian kind:
dense or sparse is decided at the first trace (``linear_solver``, or the density of its
Jacobian, :func:`~scalar_autograd.lsq.assembly.sparse_for`) and kept, because the
Levenberg-Marquardt loop picks its linear solver from the first Jacobian it sees. The
sparsity pattern and constant rows belong to each specialisation; the loop rebuilds its
model from every Jacobian and caches no pattern of its own (a Schur elimination, which
it does cache, is detected on the first specialisation's pattern and checks every
Jacobian it is given; another pattern takes the generic sparse factorisation).

Example:
    >>> import numpy as np
    >>> import scalar_autograd as sa
    >>> a = sa.Value(1.0, requires_grad=True)
    >>> oracle = CompiledOracle([a], lambda p: [p[0] * 3.0 - 1.0, p[0] * p[0]], "auto")
    >>> r, J = oracle.residuals_and_jacobian(np.array([2.0]))
    >>> r.tolist(), J.tolist()
    ([5.0, 4.0], [[3.0], [4.0]])
    >>> hinge = CompiledOracle([a], lambda p: [p[0] * max(p[0] - 1.0, 0.0)], "auto")
    >>> [hinge.residuals_and_jacobian(np.array([v]))[1].tolist() for v in (3.0, 0.0)]
    [[[5.0]], [[0.0]]]
    >>> hinge.n_specializations
    2
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.graph import gc_paused
from scalar_autograd.lsq.assembly import Assembler, KernelBlock, sparse_for
from scalar_autograd.lsq.params import check_residuals
from scalar_autograd.runtime import group_residuals
from scalar_autograd.runtime.jit import MAX_SPECIALIZATIONS
from scalar_autograd.tracing import Guard, tracing
from scalar_autograd.value import Value

ResidualFn = Callable[[list[Value]], Sequence[Value]]



class GuardCheck:
    """The guards of one trace compiled as one native function of the params.

    Calling it with ``x`` tells whether every recorded branch goes the traced way at
    ``x`` (one copy of ``x`` and one native call of the indicator's value kernel).
    """

    def __init__(self, guards: list[Guard], params: list[Value]) -> None:
        from scalar_autograd.ir.trace import trace as trace_program
        from scalar_autograd.runtime.compiled import CompiledFunction, _entry_for
        from scalar_autograd.runtime.jit import guard_indicator

        indicator = guard_indicator(guards)
        if indicator is None:
            raise ValueError("GuardCheck needs at least one guard")
        with gc_paused():
            program, _ = trace_program([indicator], params)
        # the indicator is an auxiliary output: evaluated, never differentiated
        self.function = CompiledFunction(_entry_for(program, "auto", n_aux=1), params)
        self.pattern = [(g.site, g.taken) for g in guards]

    def __call__(self, x: np.ndarray) -> bool:
        b = self.function._buffers(False)  # this thread's buffers, bound once
        b.x[:] = x
        b.call()
        return b.val.item(0) == 1.0


class _Specialization:
    """One traced branch pattern: its assembled kernels and the check of its guards."""

    def __init__(self, assembler: Assembler, constant_rows: list[int],
                 check: GuardCheck | None) -> None:
        self.assembler = assembler
        self.constant_rows = constant_rows
        self.n_groups = len(assembler.blocks)
        self.check = check
        # (site, taken) of every guard: a re-trace that finds this same pattern (the
        # compiled check and the eager trace disagreeing by rounding) reuses this one
        self.pattern: list[tuple[str, bool]] = [] if check is None else check.pattern


class CompiledOracle:
    """Residuals and Jacobian of a traced ``residual_fn`` through compiled kernels.

    Args:
        params: the leaf Values (``requires_grad=True``); their ``.data`` is the point
            of the first trace and is restored after every later one.
        residual_fn: ``params -> [r_0, ..., r_{m-1}]``.
        linear_solver: ``"auto"`` (dense or sparse by the first trace's Jacobian),
            ``"dense"`` (dense), ``"sparse_cholesky"``, ``"sparse_lsmr"`` or
            ``"schur"`` (sparse).
        max_specializations: branch patterns compiled before
            :class:`~scalar_autograd.SpecializationLimitError`.

    Attributes:
        m, n: residuals and parameters.
        sparse: whether the Jacobian is CSR (fixed at the first trace).
        n_specializations: branch patterns compiled so far.
        constant_rows: residuals that depend on no parameter (in the specialisation
            used last).
        columns_used: ``(n,)`` bool, the params some residual reads (in the
            specialisation used last).
        n_groups: the number of compiled kernels (of the specialisation used last).
    """

    def __init__(self, params: list[Value], residual_fn: ResidualFn, linear_solver: str,
                 *, max_specializations: int = MAX_SPECIALIZATIONS) -> None:
        self.params = params
        self.residual_fn = residual_fn
        self.n = len(params)
        self.max_specializations = max_specializations
        residuals, guards = self._trace()
        self.m = len(residuals)
        # None: by the first specialisation's density, then kept for every other
        self._sparse = sparse_for(linear_solver)
        first = self._build(residuals, guards)
        self._specs = [first]
        # no branches: one specialisation, valid everywhere; no guard is ever evaluated
        self._unguarded: Assembler | None = first.assembler if first.check is None else None
        self._current = first

    # ------------------------------------------------------------------ tracing
    def _trace(self) -> tuple[list[Value], list[Guard]]:
        """``residual_fn(params)`` at the params' current ``.data``, under a trace."""
        from scalar_autograd.runtime.jit import _distinct

        with gc_paused(), tracing(self.params) as t:
            # inside the trace: a generator's body runs while it is consumed
            residuals = check_residuals(self.residual_fn(self.params))
        return residuals, _distinct(t.guards)  # one guard per distinct value asked about

    def _build(self, residuals: list[Value], guards: list[Guard]) -> _Specialization:
        params = self.params
        with gc_paused():          # many small graphs: see graph.gc_paused
            constant_rows = [i for i, r in enumerate(residuals) if not r.requires_grad]
            blocks: list[KernelBlock] = []
            for g in group_residuals(residuals, params):
                rows = np.asarray(g.rows, dtype=np.int64).reshape(-1, 1)
                index = np.asarray(g.param_index, dtype=np.int64).reshape(rows.shape[0], -1)
                data = np.asarray(g.data, dtype=float).reshape(rows.shape[0], -1)
                blocks.append(KernelBlock(g.function, rows, index, data))
            check = GuardCheck(guards, params) if guards else None
        assembler = Assembler.of(blocks, self.m, self.n, self._sparse)
        self._sparse = assembler.sparse
        return _Specialization(assembler, constant_rows, check)

    def _retrace(self, x: np.ndarray) -> _Specialization:
        """Trace ``residual_fn`` at ``x`` (the params' ``.data`` is restored after)."""
        from scalar_autograd.runtime.jit import specialization_limit_error

        saved = [p.data for p in self.params]
        try:
            for p, v in zip(self.params, x.tolist()):
                p.data = v
            residuals, guards = self._trace()
        finally:
            for p, v in zip(self.params, saved):
                p.data = v
        if len(residuals) != self.m:
            raise ValueError(
                f"residual_fn must return the same number of residuals every call; "
                f"first {self.m}, now {len(residuals)} (at x = {x.tolist()!r:.200})"
            )
        pattern = [(g.site, g.taken) for g in guards]
        for spec in self._specs:
            if spec.pattern == pattern and spec.check is not None and guards:
                # the same branches: the compiled check and the eager trace disagree
                # by rounding at x; keep one specialisation per pattern
                return spec
        if len(self._specs) >= self.max_specializations:
            name = getattr(self.residual_fn, "__name__", "residual_fn")
            raise specialization_limit_error(
                name, self.max_specializations,
                [s.pattern for s in self._specs] + [pattern],
                ' in a least-squares residual_fn (jacobian="compiled")',
                'use jacobian="graph" (which re-runs residual_fn at every point), or '
                'raise max_specializations')
        spec = self._build(residuals, guards)
        self._specs.insert(0, spec)
        return spec

    def _select(self, x: np.ndarray) -> Assembler:
        """The assembler of a specialisation whose guards hold at ``x`` (traced anew if
        none does); the one found moves to the front."""
        specs = self._specs
        for i, spec in enumerate(specs):
            if spec.check is None or spec.check(x):
                if i:
                    specs.insert(0, specs.pop(i))
                self._current = spec
                return spec.assembler
        spec = self._retrace(x)
        if specs[0] is not spec:
            specs.remove(spec)
            specs.insert(0, spec)
        self._current = spec
        return spec.assembler

    # ------------------------------------------------------------------ introspection
    @property
    def n_specializations(self) -> int:
        """Branch patterns traced and compiled so far."""
        return len(self._specs)

    @property
    def constant_rows(self) -> list[int]:
        """Residuals that depend on no parameter, in the specialisation used last."""
        return self._current.constant_rows

    @property
    def sparse(self) -> bool:
        """Whether the Jacobian is CSR (the same in every specialisation)."""
        return self._current.assembler.sparse

    @property
    def columns_used(self) -> np.ndarray:
        """``(n,)`` bool: the params some residual reads, in the specialisation used
        last."""
        return self._current.assembler.columns_used

    @property
    def n_groups(self) -> int:
        """Compiled residual kernels of the specialisation used last."""
        return self._current.n_groups

    @property
    def assembler(self) -> Assembler:
        """The assembler of the specialisation used last."""
        return self._current.assembler

    def schur_complement(self) -> Any:
        """The Schur elimination of the sparse pattern of the specialisation used last
        (see :meth:`~scalar_autograd.lsq.assembly.Assembler.schur_complement`), or None."""
        return self._current.assembler.schur_complement()

    # ------------------------------------------------------------------ evaluation
    def residuals(self, x: np.ndarray) -> np.ndarray:
        """The residual vector at ``x``."""
        x = np.asarray(x, dtype=float)
        unguarded = self._unguarded
        if unguarded is not None:
            return unguarded.residuals(x)
        return self._select(x).residuals(x)

    def residuals_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        """Residuals and Jacobian (dense, or CSR when sparse pays) at ``x``."""
        x = np.asarray(x, dtype=float)
        unguarded = self._unguarded
        if unguarded is not None:
            return unguarded.residuals_and_jacobian(x)
        return self._select(x).residuals_and_jacobian(x)
