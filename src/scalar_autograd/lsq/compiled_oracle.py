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

**Small problems, one kernel.** When the residuals do not form one group that the
native Levenberg-Marquardt loop can run (one kernel whose rows read every param in
order, :func:`~scalar_autograd.lsq.native_lm.plan`), the problem is dense with at most
:data:`~scalar_autograd.lsq.native_lm.MAX_NATIVE_PARAMS` params, and tracing every
residual into ONE program costs no more than about twice the groups' programs (the
residuals share subexpressions, as the x, y and z of a forward-kinematics chain do,
instead of being many copies of one expression), all residuals are traced into one
program instead: one kernel of one row, which the native loop runs whole. Its
constants are lifted to inputs (``pow`` exponents excepted), so a re-trace with other
numbers finds the compiled kernel in the cache.

**Runtime inputs.** ``inputs`` are leaf Values that ``residual_fn`` reads (by closure)
whose ``.data`` may change between solves (a target, a measurement). They are traced as
inputs of the kernels, never frozen as constants (an exponent of ``**`` included): in
a grouped kernel they are the first columns of the per-row data (where each row reads
them is the group's ``input_index``), in the single kernel its first inputs, and
branches on them are guarded like branches on the params (the guard function takes
them too). :meth:`CompiledOracle.refresh_inputs` reads their ``.data`` into every
specialisation, so a new solve needs no trace. Every other number ``residual_fn`` reads
is frozen at the trace: declare it an input if it changes.

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

from scalar_autograd.graph import gc_paused, post_order
from scalar_autograd.lsq.assembly import Assembler, KernelBlock, sparse_for
from scalar_autograd.lsq.native_lm import MAX_NATIVE_PARAMS
from scalar_autograd.lsq.params import check_residuals
from scalar_autograd.runtime import group_residuals
from scalar_autograd.runtime.grouping import ResidualGroup
from scalar_autograd.runtime.jit import MAX_SPECIALIZATIONS
from scalar_autograd.tracing import Guard, tracing
from scalar_autograd.value import Value

ResidualFn = Callable[[list[Value]], Sequence[Value]]

SINGLE_KERNEL_GROWTH = 2.0
"""Trace all residuals into one kernel when its program is at most this many times the
size of the groups' programs (plus :data:`SINGLE_KERNEL_SLACK` nodes) ..."""
SINGLE_KERNEL_SLACK = 64
"""... (see the module docstring, "Small problems, one kernel"). Measured: 64 copies of
a 27-op model traced into one program took 115 ms to compile against 2 ms for its one
group, so many copies of one expression stay grouped."""



class GuardCheck:
    """The guards of one trace compiled as one native function of the params.

    Calling it with ``x`` tells whether every recorded branch goes the traced way at
    ``x`` (one copy of ``x`` and one native call of the indicator's value kernel).
    """

    def __init__(self, guards: list[Guard], params: list[Value],
                 inputs: Sequence[Value] = ()) -> None:
        from scalar_autograd.ir.trace import trace as trace_program
        from scalar_autograd.runtime.compiled import CompiledFunction, _entry_for
        from scalar_autograd.runtime.jit import guard_indicator

        indicator = guard_indicator(guards)
        if indicator is None:
            raise ValueError("GuardCheck needs at least one guard")
        with gc_paused():
            program, _ = trace_program([indicator], params, inputs)
        # the indicator is an auxiliary output: evaluated, never differentiated
        self.function = CompiledFunction(_entry_for(program, "auto", n_aux=1), params,
                                         inputs)
        self.pattern = [(g.site, g.taken) for g in guards]
        self.u = np.array([v.data for v in inputs], dtype=float)

    def refresh(self, u: np.ndarray) -> None:
        """Take ``u`` as the inputs' values from now on."""
        self.u[:] = u

    def __call__(self, x: np.ndarray) -> bool:
        b = self.function._buffers(False)  # this thread's buffers, bound once
        b.x[:] = x
        if self.u.size:
            b.u[:] = self.u
        b.call()
        return b.val.item(0) == 1.0


class _InputSlots:
    """Where the runtime inputs sit in one kernel block's per-row data: flat positions
    of ``block.data`` and, for each, the index of the input whose value goes there."""

    def __init__(self, block: KernelBlock, positions: np.ndarray, which: np.ndarray) -> None:
        self.block = block
        self.positions = positions
        self.which = which

    def refresh(self, u: np.ndarray) -> None:
        self.block.data.reshape(-1)[self.positions] = u[self.which]


class _Specialization:
    """One traced branch pattern: its assembled kernels and the check of its guards."""

    def __init__(self, assembler: Assembler, constant_rows: list[int],
                 check: GuardCheck | None, slots: list[_InputSlots]) -> None:
        self.assembler = assembler
        self.constant_rows = constant_rows
        self.n_groups = len(assembler.blocks)
        self.check = check
        self.slots = slots
        # (site, taken) of every guard: a re-trace that finds this same pattern (the
        # compiled check and the eager trace disagreeing by rounding) reuses this one
        self.pattern: list[tuple[str, bool]] = [] if check is None else check.pattern

    def refresh(self, u: np.ndarray) -> None:
        """Write the inputs' values ``u`` into the kernels' data and the guard check."""
        for slot in self.slots:
            slot.refresh(u)
        if self.check is not None:
            self.check.refresh(u)


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
        inputs: leaf Values read by ``residual_fn`` whose ``.data`` may change: traced
            as runtime inputs (see the module docstring); call
            :meth:`refresh_inputs` after changing them.

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
                 *, max_specializations: int = MAX_SPECIALIZATIONS,
                 inputs: Sequence[Value] = ()) -> None:
        self.params = params
        self.inputs = list(inputs)
        self.residual_fn = residual_fn
        self.n = len(params)
        self.max_specializations = max_specializations
        # None: by the first specialisation's density, then kept for every other
        self._sparse = sparse_for(linear_solver)
        self._u = np.array([v.data for v in self.inputs], dtype=float)
        residuals, guards = self._trace()
        self.m = len(residuals)
        self._start(residuals, guards)

    def _start(self, residuals: list[Value], guards: list[Guard]) -> None:
        first = self._build(residuals, guards)
        self._specs = [first]
        # no branches: one specialisation, valid everywhere; no guard is ever evaluated
        self._unguarded: Assembler | None = first.assembler if first.check is None else None
        self._current = first

    # ------------------------------------------------------------------ inputs
    def refresh_inputs(self) -> None:
        """Read the inputs' ``.data`` into every compiled specialisation (no trace: the
        inputs are never compiled in as constants)."""
        if not self.inputs:
            return
        u = np.array([v.data for v in self.inputs], dtype=float)
        if np.array_equal(u, self._u, equal_nan=True):
            return
        self._u = u
        for spec in self._specs:
            spec.refresh(u)

    # ------------------------------------------------------------------ tracing
    def _trace(self) -> tuple[list[Value], list[Guard]]:
        """``residual_fn(params)`` at the params' current ``.data``, under a trace of
        the params and the inputs."""
        from scalar_autograd.runtime.jit import _distinct

        with gc_paused(), tracing(self.params + self.inputs) as t:
            # inside the trace: a generator's body runs while it is consumed
            residuals = check_residuals(self.residual_fn(self.params))
        return residuals, _distinct(t.guards)  # one guard per distinct value asked about

    def _build(self, residuals: list[Value], guards: list[Guard]) -> _Specialization:
        params = self.params
        with gc_paused():          # many small graphs: see graph.gc_paused
            constant_rows = [i for i, r in enumerate(residuals) if not r.requires_grad]
            groups = group_residuals(residuals, params, self.inputs)
            single = self._single_kernel(residuals, groups)
            if single is not None:
                blocks, slots = single
            else:
                blocks, slots = self._grouped(residuals, groups)
            check = GuardCheck(guards, params, self.inputs) if guards else None
        assembler = Assembler.of(blocks, self.m, self.n, self._sparse)
        self._sparse = assembler.sparse
        return _Specialization(assembler, constant_rows, check, slots)

    def _grouped(self, residuals: list[Value], groups: list[ResidualGroup]
                 ) -> tuple[list[KernelBlock], list[_InputSlots]]:
        """One kernel block per group of structurally identical residuals, and where
        the runtime inputs sit in their data (the first columns: ``input_index``)."""
        blocks: list[KernelBlock] = []
        slots: list[_InputSlots] = []
        for g in groups:
            rows = np.asarray(g.rows, dtype=np.int64).reshape(-1, 1)
            data = np.array(g.row_inputs(self._u), dtype=float).reshape(rows.shape[0], -1)
            block = KernelBlock(g.function, rows, g.param_index, data)
            blocks.append(block)
            width, reads = data.shape[1], g.input_index.shape[1]
            if reads:
                positions = (np.arange(rows.shape[0])[:, None] * width
                             + np.arange(reads)[None, :]).reshape(-1)
                slots.append(_InputSlots(block, positions, g.input_index.reshape(-1)))
        return blocks, slots

    def _single_kernel(self, residuals: list[Value], groups: list[ResidualGroup]
                       ) -> tuple[list[KernelBlock], list[_InputSlots]] | None:
        """Every residual in one kernel of one row (module docstring), or None when
        the groups already suit the native loop, the problem is sparse or large, or
        one program would cost much more than the groups'."""
        from scalar_autograd.ir.trace import trace
        from scalar_autograd.runtime.compiled import compile_program

        m, n = self.m, self.n
        if self._sparse or n > MAX_NATIVE_PARAMS or _native_ready(groups, m, n):
            return None
        grouped = sum(g.function.program.n_instructions for g in groups)
        order = post_order(residuals)
        ops = sum(1 for node in order if node.op is not None)
        if ops > SINGLE_KERNEL_GROWTH * grouped + SINGLE_KERNEL_SLACK:
            return None
        fixed = {id(p) for p in self.params} | {id(v) for v in self.inputs}
        # pow exponents stay constants (x ** 2.0 becomes x * x), as in the groups
        exponents = {id(node.args[1]) for node in order
                     if node.op is not None and node.op.name == "pow"
                     and node.args[1].op is None and id(node.args[1]) not in fixed}
        program, lifted = trace(residuals, self.params, self.inputs, lift_constants=True,
                                keep_constants=exponents)
        data = np.array([[v.data for v in self.inputs] + list(lifted)], dtype=float)
        block = KernelBlock(compile_program(program), np.arange(m, dtype=np.int64)[None, :],
                            np.arange(n, dtype=np.int64)[None, :], data)
        k = len(self.inputs)
        slots = [_InputSlots(block, np.arange(k), np.arange(k))] if k else []
        return [block], slots

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


def _native_ready(groups: list[ResidualGroup], m: int, n: int) -> bool:
    """Whether the groups are one kernel the native loop runs as it stands: every
    residual in order, every row reading all ``n`` params in order (see
    :func:`~scalar_autograd.lsq.native_lm.plan`)."""
    if len(groups) != 1:
        return False
    g = groups[0]
    index = np.asarray(g.param_index)
    return (index.shape == (m, n) and np.array_equal(np.asarray(g.rows), np.arange(m))
            and bool(np.all(index == np.arange(n))))

