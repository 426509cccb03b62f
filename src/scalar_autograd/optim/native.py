"""Native (LLVM) optimiser updates, the native first-order loop and the L-BFGS two-loop.

The updates are not written here: :mod:`.equations` states each one once, against an
algebra. This module runs those same functions on the IR builder, which gives two IR
programs per optimiser and *form* (the branches a config takes):

* the step program: the per-step scalars from the hyperparameters and the steps taken
  (Adam's bias corrections, with ``pow`` called through libm with run-time arguments,
  as CPython's ``float ** float`` does);
* the element program: the new ``x`` and state of one parameter, which the shared
  element-wise emitter (:func:`~scalar_autograd.native.emitter.elementwise_kernel_ir`)
  turns into a loop over the arrays.

Every op is emitted without fast-math flags (no reassociation, no fused multiply-add),
so the iterates are bit-identical to the numpy path's. Per optimiser and form one small
module is compiled, on first use, and shared by every run in the process; the
hyperparameters are read at run time from the float64 *state array* ``h``, whose words
are named once, by :class:`StateLayout`.

Entry points of a compiled update (argument block: see :class:`StateLayout`):

* ``update(block)``: one step on the buffers whose addresses are in ``block``; one
  ctypes call with no per-element Python work.
* ``run(fn, steps, block)``: ``steps`` iterations of "call the compiled
  value-and-gradient function ``fn`` (a zero-argument native function bound to the
  same buffers), record the loss, stop on a non-finite loss or a small gradient,
  update". The whole loop runs without returning to Python.

:class:`TwoLoop` runs L-BFGS's two-loop recursion over the ring of curvature pairs in
one call (its dot products use four partial sums, so they may differ from numpy's in
the last bits; nothing compares them bitwise).

Without llvmlite everything falls back to the numpy code paths.

Example:
    >>> import numpy as np
    >>> from scalar_autograd.optim.equations import AdamConfig, adam_init, adam_step
    >>> if native_available():
    ...     x1 = np.array([1.0, -2.0]); x2 = x1.copy(); g = np.array([0.5, 3.0])
    ...     s1, s2 = adam_init(2), adam_init(2); cfg = AdamConfig(lr=0.1)
    ...     upd = UpdateKernel(x2, g, s2, cfg)
    ...     for _ in range(3):
    ...         adam_step(x1, g, s1, cfg); upd.update()
    ...     print(bool(np.array_equal(x1, x2)))
    ... else:
    ...     print(True)
    True
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalar_autograd.ir.passes import lower
from scalar_autograd.ir.program import Builder, Program, Var, ir_algebra
from scalar_autograd.native.abi import BLOCK_FN, address_block, check_buffer, keep_alive
from scalar_autograd.native.emitter import (
    FunctionEmitter,
    array,
    elementwise_kernel_ir,
    module,
    scalar,
)
from scalar_autograd.native.engine import NativeEngine, available, native_engine
from scalar_autograd.optim.equations import AdamConfig, FloatArray, SGDConfig, UpdateRule, rule_for

REASON_COMPLETED, REASON_NON_FINITE, REASON_GRADIENT = 0, 1, 2
"""Why ``run`` returned: it ran all steps, the loss was not finite, or the gradient's
infinity norm was at most the tolerance."""


def native_available() -> bool:
    """Whether native updates can be compiled (llvmlite present)."""
    return available()


# ---------------------------------------------------------------------------- layout
class StateLayout:
    """The words of an optimiser's native state array ``h`` and of its argument block.

    ``h`` holds, by name: the rule's per-step inputs (``steps_taken`` counts the steps,
    and the hyperparameters), the per-step scalars the step program writes for the
    element loop (those not among the inputs), then ``gradient_tolerance`` (< 0: no
    gradient test) and ``reason`` (set by ``run``, see :data:`REASON_COMPLETED`).

    The argument block is the element-wise kernel's (``n``, the arrays of
    ``rule.arrays``, ``h``) followed by the addresses of ``run``'s loss ``value`` and
    loss ``history`` (0: none).

    Example:
        >>> from scalar_autograd.optim.equations import SGD_RULE
        >>> layout = StateLayout(SGD_RULE)
        >>> layout.words[:6]
        ('steps_taken', 'lr', 'momentum', 'weight_decay', 'first_step', 'neg_lr')
        >>> layout["neg_lr"], layout.block_word("h")
        (5, 4)
    """

    def __init__(self, rule: UpdateRule) -> None:
        inputs = rule.inputs._fields
        written = tuple(f for f in rule.scalars._fields if f not in inputs)
        self.rule = rule
        self.words: tuple[str, ...] = (*inputs, *written, "gradient_tolerance", "reason")
        self._index = {name: i for i, name in enumerate(self.words)}
        self._block = {name: i for i, name in
                       enumerate(("n", *rule.arrays, "h", "value", "history"))}

    def __getitem__(self, word: str) -> int:
        """The index of ``word`` in ``h``."""
        return self._index[word]

    def block_word(self, name: str) -> int:
        """The index of ``name`` (``"n"``, an array, ``"h"``, ``"value"``, ``"history"``)
        in the argument block."""
        return self._block[name]

    def state_array(self, inputs: tuple[float, ...]) -> FloatArray:
        """A new ``h`` holding ``inputs`` (a ``rule.inputs`` tuple) and no tolerance."""
        h = np.zeros(len(self.words))
        for name, value in zip(self.rule.inputs._fields, inputs):
            h[self[name]] = value
        h[self["gradient_tolerance"]] = -1.0
        return h


# ---------------------------------------------------------------------------- programs
def step_program(rule: UpdateRule) -> Program:
    """The IR program of ``rule.step_scalars``: inputs ``rule.inputs``, outputs
    ``rule.scalars`` (an output that passes an input through is that input's node)."""
    n_inputs = len(rule.inputs._fields)
    b = Builder(n_params=0, n_inputs=n_inputs)
    inputs = rule.inputs(*[Var(b, b.input(k)) for k in range(n_inputs)])
    scalars = rule.step_scalars(ir_algebra(b), inputs)
    return b.build([b.lift(v) for v in scalars], len(scalars))


def element_program(rule: UpdateRule, form: Any) -> Program:
    """The IR program of ``rule.element`` for ``form``: inputs ``rule.arrays`` (one
    element each) then ``rule.scalars``; outputs ``rule.outputs``."""
    n_arrays, n_scalars = len(rule.arrays), len(rule.scalars._fields)
    b = Builder(n_params=0, n_inputs=n_arrays + n_scalars)
    arrays = [Var(b, b.input(k)) for k in range(n_arrays)]
    scalars = rule.scalars(*[Var(b, b.input(n_arrays + k)) for k in range(n_scalars)])
    new = rule.element(ir_algebra(b), form, *arrays, scalars)
    return b.build([b.lift(v) for v in new], len(new))


# ---------------------------------------------------------------------------- emission
def _update_function(layout: StateLayout, declarations: set[str]) -> str:
    """``void @update(ptr %args)``: the step program on ``h``, then the element loop."""
    rule = layout.rule
    program = lower(step_program(rule))
    e = FunctionEmitter()
    h = e.arg(layout.block_word("h"), "ptr")
    inputs = [e.load("double", h, str(layout[name])) for name in rule.inputs._fields]
    values = e.compute(program, inputs, "%s.")
    for name, value, node in zip(rule.scalars._fields, values, program.outputs):
        if name in rule.inputs._fields:  # passed through: already in h
            if program.nodes[node] != ("input", rule.inputs._fields.index(name)):
                raise ValueError(f"{rule.name}: scalar {name!r} shares an input's name "
                                 f"but is computed")
            continue
        e.store(value, h, str(layout[name]))
    e.emit("call void @elements(ptr %args)")
    taken = inputs[rule.inputs._fields.index("steps_taken")]
    e.store(e.op("fadd", "double", taken, "1.0"), h, str(layout["steps_taken"]))
    declarations |= e.declarations
    return e.function("update")


def _elements_function(layout: StateLayout, form: Any, declarations: set[str]) -> str:
    """``void @elements(ptr %args)``: the element program over the arrays."""
    rule = layout.rule
    operands = [array(k) for k in range(len(rule.arrays))]
    operands += [scalar(layout[name]) for name in rule.scalars._fields]
    outputs = [rule.arrays.index(name) for name in rule.outputs]
    return elementwise_kernel_ir("elements", element_program(rule, form), operands, outputs,
                                 len(rule.arrays), declarations)


_RUN = r"""
; max |g_i|, nan if any g_i is nan (as numpy's max(abs(g)))
define internal double @inf_norm(i64 %n, ptr %g) {{
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %exit, label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
  %mx = phi double [0.0, %entry], [%mx1, %loop]
  %nan = phi i1 [false, %entry], [%nan1, %loop]
  %p = getelementptr double, ptr %g, i64 %i
  %gi = load double, ptr %p
  %a = call double @llvm.fabs.f64(double %gi)
  %gt = fcmp ogt double %a, %mx
  %mx1 = select i1 %gt, double %a, double %mx
  %isnan = fcmp uno double %a, 0.0
  %nan1 = or i1 %nan, %isnan
  %i1 = add i64 %i, 1
  %more = icmp slt i64 %i1, %n
  br i1 %more, label %loop, label %done
done:
  %r = select i1 %nan1, double 0x7FF8000000000000, double %mx1
  ret double %r
exit:
  ret double 0.0
}}

define internal ptr @word(ptr %blk, i64 %i) alwaysinline {{
  %p = getelementptr i64, ptr %blk, i64 %i
  %v = load i64, ptr %p
  %q = inttoptr i64 %v to ptr
  ret ptr %q
}}

; steps x (call fn, record the loss, stop if it is not finite or the gradient small,
; update); returns the number of updates made, the reason in h[reason]
define i64 @run(ptr %fn, i64 %steps, ptr %blk) {{
entry:
  %n.p = getelementptr i64, ptr %blk, i64 0
  %n = load i64, ptr %n.p
  %g = call ptr @word(ptr %blk, i64 {g})
  %h = call ptr @word(ptr %blk, i64 {h})
  %value = call ptr @word(ptr %blk, i64 {value})
  %hist = call ptr @word(ptr %blk, i64 {history})
  %gtol.p = getelementptr double, ptr %h, i64 {gradient_tolerance}
  %gtol = load double, ptr %gtol.p
  %reason.p = getelementptr double, ptr %h, i64 {reason}
  %usegtol = fcmp oge double %gtol, 0.0
  %nohist = icmp eq ptr %hist, null
  br label %head
head:
  %k = phi i64 [0, %entry], [%k1, %update]
  %more = icmp slt i64 %k, %steps
  br i1 %more, label %body, label %completed
body:
  call void %fn()
  %f = load double, ptr %value
  br i1 %nohist, label %check, label %record
record:
  %hp = getelementptr double, ptr %hist, i64 %k
  store double %f, ptr %hp
  br label %check
check:
  %fa = call double @llvm.fabs.f64(double %f)
  %finite = fcmp olt double %fa, 0x7FF0000000000000
  br i1 %finite, label %gcheck, label %nonfinite
gcheck:
  br i1 %usegtol, label %gnorm, label %update
gnorm:
  %gn = call double @inf_norm(i64 %n, ptr %g)
  %conv = fcmp ole double %gn, %gtol
  br i1 %conv, label %converged, label %update
update:
  call void @update(ptr %blk)
  %k1 = add i64 %k, 1
  br label %head
completed:
  store double {completed}.0, ptr %reason.p
  ret i64 %steps
nonfinite:
  store double {non_finite}.0, ptr %reason.p
  ret i64 %k
converged:
  store double {gradient}.0, ptr %reason.p
  ret i64 %k
}}
"""


def _run_function(layout: StateLayout, declarations: set[str]) -> str:
    """``i64 @run(ptr %fn, i64 %steps, ptr %args)``: the native first-order loop."""
    declarations.add("declare double @llvm.fabs.f64(double)")
    return _RUN.format(
        g=layout.block_word("g"), h=layout.block_word("h"),
        value=layout.block_word("value"), history=layout.block_word("history"),
        gradient_tolerance=layout["gradient_tolerance"], reason=layout["reason"],
        completed=REASON_COMPLETED, non_finite=REASON_NON_FINITE, gradient=REASON_GRADIENT)


def update_source(rule: UpdateRule, form: Any) -> str:
    """The LLVM module text of ``rule``'s update for ``form`` (``update`` and ``run``)."""
    layout = StateLayout(rule)
    declarations: set[str] = set()
    functions = [_elements_function(layout, form, declarations),
                 _update_function(layout, declarations),
                 _run_function(layout, declarations)]
    return module(f"scalar_autograd.optim.native: {rule.name} update, {form}",
                  declarations, functions)


_RUN_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)


@dataclass(frozen=True)
class _Compiled:
    """A compiled update: its state layout, engine, source and entry points."""

    layout: StateLayout
    source: str
    engine: NativeEngine
    update: Any
    run: Any


_compiled: dict[tuple[str, Any], _Compiled] = {}
_lock = threading.Lock()


def _compile(rule: UpdateRule, form: Any) -> _Compiled:
    """The compiled update of ``rule`` for ``form`` (compiled once per process)."""
    key = (rule.name, form)
    found = _compiled.get(key)
    if found is None:
        with _lock:
            found = _compiled.get(key)
            if found is None:
                source = update_source(rule, form)
                engine = native_engine(source, 2)
                found = _Compiled(StateLayout(rule), source, engine,
                                  BLOCK_FN(engine.address("update")),
                                  _RUN_FN(engine.address("run")))
                _compiled[key] = found
    return found


def native_address(fn: Any) -> int | None:
    """The address of ``fn`` if it is a native (ctypes) function declared with no
    arguments and no result, ``None`` for anything else (e.g. a Python closure)."""
    argtypes = getattr(fn, "argtypes", None)
    if (isinstance(fn, ctypes._CFuncPtr)  # type: ignore[attr-defined]
            and argtypes is not None and tuple(argtypes) == ()
            and getattr(fn, "restype", "?") is None):
        address = ctypes.cast(fn, ctypes.c_void_p).value
        return int(address) if address else None
    return None


# ---------------------------------------------------------------------------- kernels
class UpdateKernel:
    """Native SGD or Adam/AdamW steps (chosen by ``config``) on ``x`` and ``state``.

    The buffers are used in place: ``x`` and the state's vectors are updated, ``g`` is
    read. The step count lives in native memory while the kernel runs; :meth:`sync`
    copies it back into ``state.step``.

    Raises:
        TypeError: a buffer that is not a C-contiguous float64 array.
        ValueError: buffers of different shapes.
        ImportError: without llvmlite.
    """

    def __init__(self, x: FloatArray, g: FloatArray, state: Any,
                 config: SGDConfig | AdamConfig) -> None:
        rule = rule_for(config)
        arrays = [x, g, *[getattr(state, name) for name in rule.state_vectors]]
        check_buffer(x, "x")
        for name, a in zip(rule.arrays, arrays):
            check_buffer(a, name, x.shape, writeable=name != "g")
        compiled = _compile(rule, rule.form(config))
        self.rule = rule
        self.layout = compiled.layout
        self.source = compiled.source
        self.state = state
        self.h = self.layout.state_array(rule.inputs.of(config, state.step))
        self.block = address_block([x.size, *arrays, self.h, 0, 0])
        self._block_ptr = ctypes.c_void_p(int(self.block.ctypes.data))
        self._update = compiled.update
        self._run = compiled.run
        keep_alive(self, compiled, arrays)  # the block holds raw addresses

    @property
    def steps(self) -> int:
        """Steps taken so far."""
        return int(self.h[self.layout["steps_taken"]])

    def sync(self) -> None:
        """Copy the native step count back into the state object."""
        self.state.step = self.steps

    def update(self) -> None:
        """One step, in place."""
        self._update(self._block_ptr)

    def run(self, fn_address: int, steps: int, value: FloatArray,
            history: FloatArray | None = None,
            gradient_tolerance: float | None = None) -> tuple[int, int]:
        """Run up to ``steps`` iterations with the bound native function at ``fn_address``.

        The function must read this kernel's ``x`` and write the loss into ``value[0]``
        and the gradient into this kernel's ``g``. Returns ``(iterations done, reason)``;
        ``history`` (length >= steps) receives the loss at every evaluated iterate.
        """
        check_buffer(value, "value")
        if value.size < 1:
            raise ValueError("value must be a float64 array of length >= 1")
        if history is not None:
            check_buffer(history, "history")
            if history.size < steps:
                raise ValueError(f"history must have length >= {steps}; got {history.size}")
        layout = self.layout
        self.h[layout["gradient_tolerance"]] = (-1.0 if gradient_tolerance is None
                                                else gradient_tolerance)
        self.block[layout.block_word("value")] = value.ctypes.data
        self.block[layout.block_word("history")] = 0 if history is None else history.ctypes.data
        self._value = value  # keep alive while bound
        done = int(self._run(fn_address, steps, self._block_ptr))
        return done, int(self.h[layout["reason"]])


AdamKernel = SGDKernel = UpdateKernel
"""Earlier names of :class:`UpdateKernel` (the config chooses the optimiser)."""


# ---------------------------------------------------------------------------- L-BFGS
_LBFGS_IR = r"""
; generated by scalar_autograd.optim.native: L-BFGS two-loop recursion
define internal ptr @word(ptr %blk, i64 %i) alwaysinline {
  %p = getelementptr i64, ptr %blk, i64 %i
  %v = load i64, ptr %p
  %q = inttoptr i64 %v to ptr
  ret ptr %q
}

; a . b, with four partial sums in one vector register, then the tail
define internal double @dot(i64 %n, ptr noalias %a, ptr noalias %b) {
entry:
  %nv = and i64 %n, -4
  %hasv = icmp sgt i64 %nv, 0
  br i1 %hasv, label %vloop, label %vdone
vloop:
  %i = phi i64 [0, %entry], [%i4, %vloop]
  %acc = phi <4 x double> [zeroinitializer, %entry], [%acc1, %vloop]
  %pa = getelementptr double, ptr %a, i64 %i
  %pb = getelementptr double, ptr %b, i64 %i
  %va = load <4 x double>, ptr %pa, align 8
  %vb = load <4 x double>, ptr %pb, align 8
  %pr = fmul <4 x double> %va, %vb
  %acc1 = fadd <4 x double> %acc, %pr
  %i4 = add i64 %i, 4
  %more = icmp slt i64 %i4, %nv
  br i1 %more, label %vloop, label %vdone
vdone:
  %accf = phi <4 x double> [zeroinitializer, %entry], [%acc1, %vloop]
  %e0 = extractelement <4 x double> %accf, i32 0
  %e1 = extractelement <4 x double> %accf, i32 1
  %e2 = extractelement <4 x double> %accf, i32 2
  %e3 = extractelement <4 x double> %accf, i32 3
  %s01 = fadd double %e0, %e1
  %s23 = fadd double %e2, %e3
  %s = fadd double %s01, %s23
  %hastail = icmp slt i64 %nv, %n
  br i1 %hastail, label %tloop, label %exit
tloop:
  %j = phi i64 [%nv, %vdone], [%j1, %tloop]
  %t = phi double [%s, %vdone], [%t1, %tloop]
  %qa = getelementptr double, ptr %a, i64 %j
  %qb = getelementptr double, ptr %b, i64 %j
  %xa = load double, ptr %qa
  %xb = load double, ptr %qb
  %xp = fmul double %xa, %xb
  %t1 = fadd double %t, %xp
  %j1 = add i64 %j, 1
  %tm = icmp slt i64 %j1, %n
  br i1 %tm, label %tloop, label %exit
exit:
  %r = phi double [%s, %vdone], [%t1, %tloop]
  ret double %r
}

; y += a * x
define internal void @axpy(i64 %n, double %a, ptr noalias %x, ptr noalias %y) {
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %exit, label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
  %px = getelementptr double, ptr %x, i64 %i
  %py = getelementptr double, ptr %y, i64 %i
  %xi = load double, ptr %px
  %yi = load double, ptr %py
  %ax = fmul double %xi, %a
  %r = fadd double %yi, %ax
  store double %r, ptr %py
  %i1 = add i64 %i, 1
  %more = icmp slt i64 %i1, %n
  br i1 %more, label %loop, label %exit
exit:
  ret void
}

; y = a * x
define internal void @scale(i64 %n, double %a, ptr noalias %x, ptr noalias %y) {
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %exit, label %loop
loop:
  %i = phi i64 [0, %entry], [%i1, %loop]
  %px = getelementptr double, ptr %x, i64 %i
  %py = getelementptr double, ptr %y, i64 %i
  %xi = load double, ptr %px
  %r = fmul double %xi, %a
  store double %r, ptr %py
  %i1 = add i64 %i, 1
  %more = icmp slt i64 %i1, %n
  br i1 %more, label %loop, label %exit
exit:
  ret void
}

; d = -H g by the two-loop recursion (Nocedal & Wright, Algorithm 7.4).
; block: [n, m, count, newest, &S (m x n), &Y (m x n), &rho (m), &alpha (m), &g, &d]
define void @lbfgs_direction(ptr %blk) {
entry:
  %n.p = getelementptr i64, ptr %blk, i64 0
  %n = load i64, ptr %n.p
  %m.p = getelementptr i64, ptr %blk, i64 1
  %m = load i64, ptr %m.p
  %count.p = getelementptr i64, ptr %blk, i64 2
  %count = load i64, ptr %count.p
  %newest.p = getelementptr i64, ptr %blk, i64 3
  %newest = load i64, ptr %newest.p
  %S = call ptr @word(ptr %blk, i64 4)
  %Y = call ptr @word(ptr %blk, i64 5)
  %rho = call ptr @word(ptr %blk, i64 6)
  %alpha = call ptr @word(ptr %blk, i64 7)
  %g = call ptr @word(ptr %blk, i64 8)
  %d = call ptr @word(ptr %blk, i64 9)
  call void @scale(i64 %n, double -1.0, ptr %g, ptr %d)
  %none = icmp sle i64 %count, 0
  br i1 %none, label %done, label %first
first:
  %j = phi i64 [0, %entry], [%j1, %first]
  %t = add i64 %newest, %m
  %t2 = sub i64 %t, %j
  %idx = srem i64 %t2, %m
  %off = mul i64 %idx, %n
  %si = getelementptr double, ptr %S, i64 %off
  %yi = getelementptr double, ptr %Y, i64 %off
  %pr = getelementptr double, ptr %rho, i64 %idx
  %r = load double, ptr %pr
  %sd = call double @dot(i64 %n, ptr %si, ptr %d)
  %a = fmul double %r, %sd
  %pa = getelementptr double, ptr %alpha, i64 %idx
  store double %a, ptr %pa
  %na = fneg double %a
  call void @axpy(i64 %n, double %na, ptr %yi, ptr %d)
  %j1 = add i64 %j, 1
  %c1 = icmp slt i64 %j1, %count
  br i1 %c1, label %first, label %middle
middle:
  %noff = mul i64 %newest, %n
  %sn = getelementptr double, ptr %S, i64 %noff
  %yn = getelementptr double, ptr %Y, i64 %noff
  %sy = call double @dot(i64 %n, ptr %sn, ptr %yn)
  %yy = call double @dot(i64 %n, ptr %yn, ptr %yn)
  %gamma = fdiv double %sy, %yy
  call void @scale(i64 %n, double %gamma, ptr %d, ptr %d)
  br label %second
second:
  %k = phi i64 [%count, %middle], [%k1, %second]
  %k1 = sub i64 %k, 1
  %u = add i64 %newest, %m
  %u2 = sub i64 %u, %k1
  %jdx = srem i64 %u2, %m
  %joff = mul i64 %jdx, %n
  %sj = getelementptr double, ptr %S, i64 %joff
  %yj = getelementptr double, ptr %Y, i64 %joff
  %prj = getelementptr double, ptr %rho, i64 %jdx
  %rj = load double, ptr %prj
  %yd = call double @dot(i64 %n, ptr %yj, ptr %d)
  %b = fmul double %rj, %yd
  %paj = getelementptr double, ptr %alpha, i64 %jdx
  %aj = load double, ptr %paj
  %coef = fsub double %aj, %b
  call void @axpy(i64 %n, double %coef, ptr %sj, ptr %d)
  %c2 = icmp sgt i64 %k1, 0
  br i1 %c2, label %second, label %done
done:
  ret void
}
"""

_lbfgs: tuple[NativeEngine, Any] | None = None


def _lbfgs_direction() -> Any:
    """The compiled two-loop entry point (compiled once per process)."""
    global _lbfgs
    if _lbfgs is None:
        with _lock:
            if _lbfgs is None:
                engine = native_engine(_LBFGS_IR, 2)
                _lbfgs = (engine, BLOCK_FN(engine.address("lbfgs_direction")))
    return _lbfgs[1]


class TwoLoop:
    """The native L-BFGS two-loop recursion over fixed buffers.

    ``S`` and ``Y`` are ``(m, n)`` rings of curvature pairs, ``rho[i] = 1 / s_i.y_i``;
    :meth:`direction` writes ``d = -H g`` using the ``count`` pairs ending at row
    ``newest`` (``H0 = gamma I``, ``gamma = s.y / y.y`` of the newest pair).
    """

    def __init__(self, S: FloatArray, Y: FloatArray, rho: FloatArray, alpha: FloatArray,
                 g: FloatArray, d: FloatArray) -> None:
        m, n = S.shape
        for name, a, shape in (("S", S, (m, n)), ("Y", Y, (m, n)), ("rho", rho, (m,)),
                               ("alpha", alpha, (m,)), ("g", g, (n,)), ("d", d, (n,))):
            check_buffer(a, name, shape)
        self._fn = _lbfgs_direction()
        arrays = (S, Y, rho, alpha, g, d)
        self.block = address_block([n, m, 0, 0, *arrays])
        self._block_ptr = ctypes.c_void_p(int(self.block.ctypes.data))
        keep_alive(self, arrays)  # the block holds raw addresses

    def direction(self, count: int, newest: int) -> None:
        """``d = -H g`` from the ``count`` newest pairs (row ``newest`` the newest)."""
        block = self.block
        block[2] = count
        block[3] = newest
        self._fn(self._block_ptr)
