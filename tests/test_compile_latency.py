"""Compile latency mechanisms: bound calls from a stub pool, and kernels in two tiers.

- ``native.abi.bound_call`` compiles nothing per call: stubs come from pages compiled
  once per process, return to the pool when their call is freed, and can be retargeted.
- ``backends.llvm`` kernels start on quick (``-O0``) code and move to the final code of
  their level (``tier_up``, or the background worker): both tiers give the same results
  bit for bit (NaN signs and payloads aside), at points other than the traced one,
  through ``run``, ``run_batch`` and bound calls, also while other threads call; the
  final code is what the solver drivers get (``address``, ``_engine``).
- ``native.engine``'s upgrade worker: quiet periods, dropped kernels, failures, fork.

No timing assertions: what is fast is measured by ``benchmarks/bench_compile.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scalar_autograd as sa
from jit_support import assert_same
from scalar_autograd.backends import llvm as llvm_backend
from scalar_autograd.backends.interpreter import InterpreterBackend
from scalar_autograd.backends.llvm import LLVMBackend, LLVMKernel, generate
from scalar_autograd.ir import autodiff
from scalar_autograd.ir.passes import lower
from scalar_autograd.ir.trace import trace
from scalar_autograd.kinematics import planar_ik_loss
from scalar_autograd.native import abi, engine
from scalar_autograd.native.emitter import FunctionEmitter, bound_stubs, module
from scalar_autograd.ops import OPS, VARIADIC
from scalar_autograd.value import apply

pytestmark = pytest.mark.skipif(not engine.available(), reason="needs llvmlite")

_FLOATS = st.one_of(
    st.floats(-4.0, 4.0, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1.0, math.inf, -math.inf, math.nan, 1e300]),
)


@contextlib.contextmanager
def upgrades_held_back() -> Iterator[None]:
    """The worker starts no upgrade meanwhile (it waits for a quiet moment that does not
    come), so kernels made here run their quick code until ``tier_up``."""
    quiet = engine.QUIET
    engine.QUIET = 1e9
    try:
        yield
    finally:
        engine.QUIET = quiet


def ik_program(n: int) -> tuple[object, object]:
    """The traced IK loss of ``n`` joints and its lowered value-and-gradient program."""
    angles = [sa.Value(0.0) for _ in range(n)]
    program, _ = trace([planar_ik_loss(angles, (2.0, 1.5))], angles)
    return program, autodiff.reverse(program, lower=True, n_diff=1)


def buffers(kernel: LLVMKernel, x: np.ndarray, n_values: int, n_derivs: int
            ) -> tuple[np.ndarray, ...]:
    return (x, np.zeros(0), np.zeros(n_values), np.zeros(n_derivs),
            np.zeros(max(kernel.n_scratch, 1)))


# ----------------------------------------------------------------------------- stubs

def _setter(value: float) -> int:
    """Address of a compiled ``void f(ptr %out)`` storing ``value`` (engine kept)."""
    e = FunctionEmitter()
    e.store(f"{value:.1f}", "%out", "0")
    compiled = engine.native_engine(
        module("set", set(), [e.function("set", params="ptr %out")]), 0)
    _KEEP.append(compiled)
    return compiled.address("set")


_KEEP: list[engine.NativeEngine] = []


def test_a_bound_call_is_a_zero_argument_ctypes_function_from_the_pool() -> None:
    out = np.zeros(1)
    call = abi.bound_call(_setter(3.0), [abi.address(out)], (out,))
    assert isinstance(call, abi.BoundCall)
    assert isinstance(call, ctypes._CFuncPtr)  # type: ignore[attr-defined]
    call()
    assert out[0] == 3.0


def test_bound_calls_compile_pages_not_calls_and_give_their_stubs_back() -> None:
    function = _setter(1.0)
    targets = [np.zeros(1) for _ in range(100)]
    arity = 3                                   # a pool of its own in this test
    pool = abi._pool(arity)
    pages_before = len(pool.pages)
    calls = [abi.bound_call(function, [abi.address(t), 0, 0], (t,)) for t in targets]
    # 4 + 8 + 16 + 32 + 64 stubs: at most five pages for a hundred calls
    assert len(pool.pages) - pages_before <= 5
    free = len(pool.free)
    for call in calls:
        call()
    assert all(t[0] == 1.0 for t in targets)
    del calls, call
    gc.collect()
    assert len(pool.free) == free + 100
    pages = len(pool.pages)
    again = [abi.bound_call(function, [abi.address(t), 0, 0], (t,)) for t in targets]
    assert len(pool.pages) == pages            # reused, nothing compiled
    del again


@pytest.mark.parametrize("arity", [0, 1, 5, 7])
def test_stubs_pass_every_argument_in_order(arity: int) -> None:
    e = FunctionEmitter()
    params = ", ".join(f"ptr %p{k}" for k in range(arity))
    for k in range(arity):      # argument k stores k + 1 into its own buffer
        e.store(f"{k + 1}.0", f"%p{k}", "0")
    text = module("args", set(), [e.function("args", params=params)])
    compiled = engine.native_engine(text, 0)
    outs = [np.zeros(1) for _ in range(arity)]
    call = abi.bound_call(compiled.address("args"), [abi.address(o) for o in outs],
                          (compiled, *outs))
    call()
    assert [o[0] for o in outs] == [k + 1.0 for k in range(arity)]


def test_a_retargeted_bound_call_runs_the_new_function() -> None:
    out = np.zeros(1)
    call = abi.bound_call(_setter(1.0), [abi.address(out)], (out,))
    call()
    assert out[0] == 1.0
    two = _setter(2.0)
    call.retarget(two)
    assert call.function == two
    call()
    assert out[0] == 2.0


def test_bound_stub_text_bakes_in_only_the_table_address() -> None:
    text = bound_stubs(123456, 3, 2)
    assert text.count("define void @stub") == 3
    assert "inttoptr (i64 123456 to ptr)" in text
    assert "load atomic ptr" in text
    with pytest.raises(ValueError, match="count must be >= 1"):
        bound_stubs(123456, 0, 2)


def test_threads_binding_at_once_get_distinct_stubs() -> None:
    function = _setter(5.0)
    results: list[bool] = []

    def work() -> None:
        outs = [np.zeros(1) for _ in range(20)]
        calls = [abi.bound_call(function, [abi.address(o)], (o,)) for o in outs]
        for call in calls:
            call()
        results.append(all(o[0] == 5.0 for o in outs)
                       and len({c.function for c in calls}) == 1
                       and len({abi.address(c._entry) for c in calls}) == 20)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 6


# ----------------------------------------------------------------------------- tiers

def test_a_tiered_kernel_runs_quick_code_then_the_final_code_with_equal_results() -> None:
    program, lowered = ik_program(20)
    x = np.linspace(-0.7, 0.9, 20)             # not the traced point (zeros)
    with upgrades_held_back():
        kernel = LLVMKernel(lowered, tiered=True)
        assert kernel.level == 2 and kernel.code_level == 0
        assert {"parse", "verify", "passes", "codegen"} <= set(kernel.timings)
        bufs = buffers(kernel, x.copy(), 1, 20)
        call = kernel.bind(*bufs)
        call()
        quick = (bufs[2].copy(), bufs[3].copy())
        kernel.run(*bufs)
        assert np.array_equal(bufs[3], quick[1])
        kernel.tier_up()
        assert kernel.code_level == kernel.level
        assert "final code" in kernel.timings and "codegen" in kernel.timings
        assert call.function == kernel._kernel_address    # the bound call followed
        bufs[2][:] = bufs[3][:] = 0.0
        call()
        assert bufs[2][0] == quick[0][0] and np.array_equal(bufs[3], quick[1])
    reference = InterpreterBackend().compile(lowered)
    val, der = np.zeros(1), np.zeros(20)
    reference.run(x.copy(), np.zeros(0), val, der, np.zeros(1))
    assert_same(quick[0], val, rel=1e-12, what="value")
    assert_same(quick[1], der, rel=1e-12, abs_tol=1e-300, what="gradient")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_pass_list_gives_the_same_ir_whatever_the_machines_code_level(data) -> None:
    """The quick tier runs the pass list with its ``-O0`` target machine: the optimised IR
    must be the one the final tier's machine would give (the tiers' IR is one)."""
    n_params = data.draw(st.integers(1, 3))
    params = [sa.Value(1.0) for _ in range(n_params)]
    nodes = list(params)
    for _ in range(data.draw(st.integers(1, 12))):
        op = data.draw(st.sampled_from(OPS))
        n = data.draw(st.integers(1, 4)) if op.arity == VARIADIC else op.arity
        nodes.append(apply(op, *[nodes[data.draw(st.integers(0, 100)) % len(nodes)]
                                 for _ in range(n)]))
    program, _ = trace([nodes[-1]], params)
    text, _ = generate(autodiff.reverse(program, lower=True, n_diff=1))
    llvm = engine._ensure_llvm()
    for level in (1, 2):
        optimised = []
        for machine_level in (0, level):
            module = llvm.parse_assembly(text)
            engine._optimise(llvm, module, engine._target_machine(llvm, machine_level), level)
            optimised.append(str(module))
        assert optimised[0] == optimised[1]


def test_untiered_portable_and_level_zero_kernels_have_one_tier(monkeypatch) -> None:
    _, lowered = ik_program(5)
    final = LLVMKernel(lowered, tiered=False)
    assert final.code_level == final.level == 2 and final._upgrade is None
    portable, _ = LLVMBackend().compile_portable(lowered)
    assert portable.code_level == portable.level and portable._upgrade is None
    monkeypatch.setattr(llvm_backend, "opt_level", lambda n: 0)
    huge = LLVMKernel(lowered, tiered=True)      # as if over 10,000 instructions
    assert huge.code_level == huge.level == 0 and huge._upgrade is None


def test_a_failed_final_compile_raises_and_leaves_the_quick_code_serving(monkeypatch) -> None:
    _, lowered = ik_program(5)
    x = np.linspace(0.5, -0.5, 5)
    with upgrades_held_back():
        kernel = LLVMKernel(lowered, tiered=True)
        bufs = buffers(kernel, x.copy(), 1, 5)
        call = kernel.bind(*bufs)
        call()
        quick = bufs[3].copy()

        def broken(self: engine.PendingCode) -> engine.NativeEngine:
            raise RuntimeError("LLVM said no")

        monkeypatch.setattr(engine.PendingCode, "compile", broken)
        with pytest.raises(llvm_backend.BackendError, match="final code: LLVM said no") \
                as info:
            kernel.tier_up()
        assert "define void @kernel" in info.value.source
        with pytest.raises(llvm_backend.BackendError):
            kernel.run_batch(x.reshape(1, -1).copy(), np.zeros((1, 0)), np.zeros((1, 1)),
                             np.zeros((1, 5)), np.zeros(1))
        assert kernel.code_level == 0
        bufs[3][:] = 0.0
        call()
        assert np.array_equal(bufs[3], quick)


def test_quick_engine_at_level_zero_takes_no_other_final_source() -> None:
    text = "define double @two() {\n  ret double 2.0\n}\n"
    with pytest.raises(ValueError, match="final_source must be source"):
        engine.quick_engine(text, 0, text + "\n")


def test_the_solver_drivers_addresses_are_of_the_final_code() -> None:
    _, lowered = ik_program(5)
    with upgrades_held_back():
        kernel = LLVMKernel(lowered, tiered=True)
        assert kernel.code_level == 0
        rows = kernel.address("rows")           # installs the final code first
        assert kernel.code_level == kernel.level
        assert rows == kernel._engine.address("rows")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_programs_give_the_same_bits_on_both_tiers(data) -> None:
    n_params = data.draw(st.integers(1, 3))
    ops = [op for op in OPS if op.name != "pow"]
    params = [sa.Value(data.draw(st.floats(-2, 2))) for _ in range(n_params)]
    nodes = list(params)
    for _ in range(data.draw(st.integers(1, 10))):
        op = data.draw(st.sampled_from(ops))
        n = data.draw(st.integers(1, 4)) if op.arity == VARIADIC else op.arity
        args = [nodes[data.draw(st.integers(0, 100)) % len(nodes)] if data.draw(st.booleans())
                else data.draw(st.floats(-3, 3, allow_nan=False)) for _ in range(n)]
        nodes.append(apply(op, *args))
    exponent = data.draw(st.sampled_from([2.0, 3.0, 0.5, -1.0]))
    out = nodes[-1] + nodes[-2].pow(exponent) if len(nodes) > 1 else nodes[-1]
    program, _ = trace([out], params)
    points = np.array([[data.draw(_FLOATS) for _ in range(n_params)] for _ in range(4)])
    for lowered in (lower(program), autodiff.reverse(program, lower=True, n_diff=1)):
        n_derivs = len(lowered.outputs) - 1
        with upgrades_held_back():
            kernel = LLVMKernel(lowered, tiered=True)
            assert kernel.code_level == 0
            quick = _evaluate(kernel, points, n_derivs)
            assert kernel.code_level == 0
            batch = _batch(kernel, points, n_derivs)      # installs the final code
            assert kernel.code_level == kernel.level
            final = _evaluate(kernel, points, n_derivs)
        for a, b in zip(quick + batch, final + final[:2], strict=True):
            assert all(_same_bits(p, q) for p, q in zip(a.ravel().tolist(),
                                                        b.ravel().tolist())), (a, b)
        reference = InterpreterBackend().compile(lowered)
        for row, x in enumerate(points):
            val, der = np.zeros(1), np.zeros(n_derivs)
            reference.run(x.copy(), np.zeros(0), val, der, np.zeros(1))
            assert_same(final[0][row], val, rel=1e-12, what="value")
            assert_same(final[1][row], der, rel=1e-12, abs_tol=1e-300, what="derivatives")


def _same_bits(a: float, b: float) -> bool:
    """The same float64, signed zeros apart; any two NaNs match (IEEE leaves the sign
    and payload of a NaN result open, and code generators differ there)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _evaluate(kernel: LLVMKernel, points: np.ndarray, n_derivs: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Values and derivatives at every point, one by one through a bound call and
    through ``run`` (the code running now: these do not change the tier)."""
    V, D = np.zeros((len(points), 1)), np.zeros((len(points), n_derivs))
    RV, RD = np.zeros_like(V), np.zeros_like(D)
    x = np.zeros(points.shape[1])
    bufs = (x, np.zeros(0), np.zeros(1), np.zeros(n_derivs), np.zeros(max(kernel.n_scratch, 1)))
    call = kernel.bind(*bufs)
    for row, point in enumerate(points):
        x[:] = point
        call()
        V[row], D[row] = bufs[2], bufs[3]
        bufs[2][:] = bufs[3][:] = 0.0
        kernel.run(*bufs)
        RV[row], RD[row] = bufs[2], bufs[3]
    return V, D, RV, RD


def _batch(kernel: LLVMKernel, points: np.ndarray, n_derivs: int
           ) -> tuple[np.ndarray, np.ndarray]:
    V, D = np.zeros((len(points), 1)), np.zeros((len(points), n_derivs))
    kernel.run_batch(np.ascontiguousarray(points), np.zeros((len(points), 0)), V, D,
                     np.zeros(max(kernel.n_scratch, 1)))
    return V, D


def test_calls_from_threads_stay_exact_while_the_code_is_swapped() -> None:
    _, lowered = ik_program(30)
    x = np.linspace(0.2, -0.4, 30)
    expected = LLVMKernel(lowered, tiered=False)
    ref = buffers(expected, x.copy(), 1, 30)
    expected.run(*ref)
    with upgrades_held_back():
        kernel = LLVMKernel(lowered, tiered=True)
    start = threading.Barrier(5)
    wrong: list[int] = []

    def work() -> None:
        bufs = buffers(kernel, x.copy(), 1, 30)
        call = kernel.bind(*bufs)
        start.wait()
        for _ in range(3000):
            bufs[2][0] = 0.0
            call()
            kernel.run(*bufs)
            if bufs[2][0] != ref[2][0] or not np.array_equal(bufs[3], ref[3]):
                wrong.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    start.wait()
    kernel.tier_up()          # swaps the code under the calling threads
    for t in threads:
        t.join()
    assert not wrong
    assert kernel.code_level == kernel.level


def test_the_worker_upgrades_kernels_by_itself_once_the_process_is_quiet(monkeypatch) -> None:
    monkeypatch.setattr(engine, "QUIET", 0.0)
    _, lowered = ik_program(8)
    kernel = LLVMKernel(lowered, tiered=True)
    done = threading.Event()
    upgrade = kernel._upgrade
    assert upgrade is not None
    for _ in range(6000):                  # up to a minute on a busy machine
        if upgrade.finished:
            break
        done.wait(0.01)
    assert upgrade.finished and upgrade.error is None
    assert kernel.code_level == kernel.level


def test_a_dropped_kernel_is_freed_with_its_pending_upgrade() -> None:
    _, lowered = ik_program(6)
    with upgrades_held_back():
        kernel = LLVMKernel(lowered, tiered=True)
        watched = weakref.ref(kernel)
        upgrade = weakref.ref(kernel._upgrade)
        del kernel
        gc.collect()
        assert watched() is None          # the upgrade machinery holds kernels weakly
        wake = threading.Event()
        for _ in range(1000):             # the worker may be looking at the queue
            if upgrade() is None:
                break
            wake.wait(0.01)
            gc.collect()
        assert upgrade() is None          # and the queue holds upgrades weakly


def test_a_failed_upgrade_keeps_the_quick_code_and_records_the_error() -> None:
    class Broken(engine.PendingCode):
        def compile(self) -> engine.NativeEngine:
            raise RuntimeError("LLVM said no")

    installed: list[engine.NativeEngine] = []
    upgrade = engine.Upgrade(Broken(None, 2), lambda: installed.append)
    upgrade.finish()
    assert upgrade.finished and isinstance(upgrade.error, RuntimeError)
    assert not installed


def test_pending_code_compiles_once_and_level_zero_has_none() -> None:
    text = "define double @two() {\n  ret double 2.0\n}\n"
    quick, pending = engine.quick_engine(text, 2)
    assert pending is not None and quick.timings["codegen"] >= 0.0
    final = pending.compile()
    two = ctypes.CFUNCTYPE(ctypes.c_double)
    assert two(quick.address("two"))() == two(final.address("two"))() == 2.0
    with pytest.raises(ValueError, match="compiled already"):
        pending.compile()
    assert engine.quick_engine(text, 0)[1] is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_compiles_and_upgrades_while_the_parent_has_upgrades_queued() -> None:
    _, lowered = ik_program(10)
    x = np.linspace(0.3, -0.1, 10)
    with upgrades_held_back():
        kernel = LLVMKernel(lowered, tiered=True)     # queued in the parent
        ref = buffers(kernel, x.copy(), 1, 10)
        kernel.run(*ref)
        pid = os.fork()
        if pid == 0:        # the child: the queued upgrade, and a new kernel, work
            code = 1
            try:
                kernel.tier_up()
                other = LLVMKernel(ik_program(4)[1], tiered=True)
                other.tier_up()
                bufs = buffers(kernel, x.copy(), 1, 10)
                kernel.bind(*bufs)()
                ok = kernel.code_level == kernel.level and other.code_level == other.level
                code = 0 if ok and np.array_equal(bufs[3], ref[3]) else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        kernel.tier_up()
        assert kernel.code_level == kernel.level


def test_sa_tiered_0_in_the_environment_turns_tiers_off() -> None:
    code = "import scalar_autograd.backends.llvm as m; print(m.TIERED)"
    env = {**os.environ, "SA_TIERED": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- codegen

def test_one_chunk_is_the_kernel_and_several_are_called_in_order(monkeypatch) -> None:
    program, lowered = ik_program(12)
    text, _ = generate(lowered)
    assert "@chunk" not in text and text.count("define void @kernel(") == 1
    x = np.linspace(-1.0, 1.0, 12)
    one = LLVMKernel(lowered, tiered=False)
    a = buffers(one, x.copy(), 1, 12)
    one.run(*a)
    monkeypatch.setattr(llvm_backend, "CHUNK", 40)
    text, n_scratch = generate(lowered)
    assert "define internal void @chunk1(" in text and n_scratch > 0
    several = LLVMKernel(lowered, tiered=True)
    b = buffers(several, x.copy(), 1, 12)
    several.run(*b)
    several.tier_up()
    c = buffers(several, x.copy(), 1, 12)
    several.run(*c)
    assert a[2][0] == b[2][0] == c[2][0]
    assert np.array_equal(a[3], b[3]) and np.array_equal(a[3], c[3])
