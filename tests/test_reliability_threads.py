"""Threads: one compiled function used from two threads at once gives the serial results,
on every backend and every hot method; native calls release the GIL.

Native kernels (the llvm backend's code and its tape VM) are called through ctypes
``CFUNCTYPE`` pointers, which release the GIL for the duration of the call. The test of
that is behavioural, not timed: while one thread is inside a long native batch call,
another thread rewrites the input rows; the batch's output then holds rows computed
before *and* after the write, which can only happen if the second thread ran Python
code while the first was still inside the call. (With the GIL held the write would land
before or after the whole call, never in the middle.) The python and interpreter
backends are pure Python: thread-safe, but they hold the GIL as Python code does.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.kinematics import planar_ik_loss
from scalar_autograd.runtime.cache import KERNELS


def _ik_function(backend: str) -> sa.CompiledFunction:
    angles = [sa.Value(0.0) for _ in range(8)]
    target = [sa.Value(1.0), sa.Value(2.0)]
    return sa.compile(planar_ik_loss(angles, (target[0], target[1])), angles, inputs=target,
                      backend=backend)


def _multi_output(backend: str) -> sa.CompiledFunction:
    a, b, c = sa.Value(0.0), sa.Value(0.0), sa.Value(0.0)
    return sa.compile([a * b + sa.sin(c), sa.exp(a) / (1 + b * b), sa.where(a > c, a, c)],
                      [a, b, c], backend=backend)


def _run_in_threads(work, n_threads: int = 2) -> list:
    """Run ``work(k)`` in ``n_threads`` threads released together; re-raise any error."""
    barrier = threading.Barrier(n_threads)
    results: list = [None] * n_threads
    errors: list[BaseException] = []

    def target(k: int) -> None:
        try:
            barrier.wait()
            results[k] = work(k)
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_two_threads_calling_one_function_give_the_serial_results(backend):
    f = _ik_function(backend)
    g = _multi_output(backend)
    rng = np.random.default_rng(7)
    points = rng.normal(size=(150, 8))
    targets = rng.normal(size=(150, 2))
    points3 = rng.normal(size=(150, 3))

    def work(_: int) -> tuple:
        vg = [f.value_and_grad(p, t) for p, t in zip(points, targets)]
        vals = [f(p, t) for p, t in zip(points, targets)]
        jac = [g.jacobian(p) for p in points3]
        outs = [g(p) for p in points3]
        batch = f.batch_jacobian(points, targets)
        return vg, vals, jac, outs, batch

    serial = work(0)
    for result in _run_in_threads(work):
        for (v, gr), (sv, sg) in zip(result[0], serial[0]):
            assert v == sv
            np.testing.assert_array_equal(gr, sg)
        assert result[1] == serial[1]
        for (v, j), (sv, sj) in zip(result[2], serial[2]):
            np.testing.assert_array_equal(v, sv)
            np.testing.assert_array_equal(j, sj)
        for o, so in zip(result[3], serial[3]):
            np.testing.assert_array_equal(o, so)
        np.testing.assert_array_equal(result[4][0], serial[4][0])
        np.testing.assert_array_equal(result[4][1], serial[4][1])


def test_each_thread_binds_its_own_buffers(backend):
    f = _multi_output(backend)
    rng = np.random.default_rng(8)
    points = rng.normal(size=(200, 3))
    expected = [f.jacobian(p) for p in points]

    def work(_: int) -> list:
        x, jac, val = np.zeros(3), np.zeros(9), np.zeros(3)
        step = f.bind(x, jac, value=val)
        out = []
        for p in points:
            x[:] = p
            step()
            out.append((val.copy(), jac.reshape(3, 3).copy()))
        return out

    for result in _run_in_threads(work):
        for (v, j), (ev, ej) in zip(result, expected):
            np.testing.assert_array_equal(v, ev)
            np.testing.assert_array_equal(j, ej)


def test_compiling_the_same_graph_from_two_threads_shares_one_kernel():
    KERNELS.clear()

    def work(k: int) -> tuple:
        x = sa.Value(1.0)
        f = sa.compile(sa.sin(x) * 1.2345 + x, [x])
        return f._entry, f.value_and_grad([0.3])

    (e1, r1), (e2, r2) = _run_in_threads(work)
    assert e1 is e2
    assert r1[0] == r2[0]
    np.testing.assert_array_equal(r1[1], r2[1])


@pytest.mark.parametrize("backend", ["llvm", "vm"])
def test_native_batch_calls_release_the_gil(backend):
    KERNELS.clear()
    x = sa.Value(0.0)
    y = x
    for _ in range(40):  # enough work per row that a batch call lasts a while
        y = sa.sin(y) * 0.5 + sa.cos(y)
    f = sa.compile(y + x, [x], backend=backend)  # + x: rows at 0 and 1 differ by ~1
    assert f.backend == backend
    before, after = f([0.0]), f([1.0])
    assert before != after
    rows = 200_000
    mixed = False
    for _attempt in range(5):  # the other thread may, rarely, not get a CPU in time
        X = np.zeros((rows, 1))
        started = threading.Event()
        values: list[np.ndarray] = []

        def call(X: np.ndarray = X, started: threading.Event = started,
                 values: list[np.ndarray] = values) -> None:
            started.set()
            values.append(f.batch_values(X))

        t = threading.Thread(target=call)
        t.start()
        started.wait()
        threading.Event().wait(0.02)  # let the call enter native code (sleeps, no GIL)
        X[:] = 1.0  # needs the GIL: runs mid-call only if the call released it
        t.join()
        v = values[0][:, 0]
        assert set(np.unique(v)) <= {before, after}
        if (v == before).any() and (v == after).any():
            mixed = True
            break
    KERNELS.clear()
    assert mixed, "the input write never landed during the native call: GIL held?"


def test_gc_paused_nests_restores_and_survives_threads_and_errors() -> None:
    import gc

    from scalar_autograd.graph import gc_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with gc_paused():
            with gc_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()            # the outer block still holds it
            raise RuntimeError("boom")
    assert gc.isenabled()                        # restored despite the error

    def worker() -> None:
        for _ in range(200):
            with gc_paused():
                pass

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gc.isenabled()
    gc.disable()                                 # a caller that had it off keeps it off
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_thread_makes_its_buffers_once_then_reuses_them(backend, monkeypatch):
    """Calls from a thread other than the creating one used to make (and, on llvm, compile
    a bound wrapper for) new buffers on every call; now each thread makes them once."""
    f = _ik_function(backend)
    kernel = f._entry.deriv_kernel()
    binds: list[int] = []
    original = type(kernel).bind

    def counting_bind(self, *args, **kwargs):
        binds.append(threading.get_ident())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(kernel), "bind", counting_bind)
    rng = np.random.default_rng(9)
    points, targets = rng.normal(size=(50, 8)), rng.normal(size=(50, 2))
    expected = [f.value_and_grad(p, t) for p, t in zip(points, targets)]

    def work(_: int) -> list:
        return [f.value_and_grad(p, t) for p, t in zip(points, targets)]

    for result in _run_in_threads(work, n_threads=3):
        for (v, g), (ev, eg) in zip(result, expected):
            assert v == ev
            np.testing.assert_array_equal(g, eg)
    assert len(binds) == 4                       # the main thread and each of the three
    assert len(set(binds)) == 4


def test_no_grad_in_one_thread_does_not_stop_recording_in_another():
    inside, proceed = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def holder() -> None:
        with sa.no_grad():
            inside.set()
            proceed.wait(10)
            seen["holder"] = (sa.Value(1.0, requires_grad=True) * 2).op

    t = threading.Thread(target=holder)
    t.start()
    inside.wait(10)
    x = sa.Value(3.0, requires_grad=True)
    y = x * x                                    # recorded here while the other thread
    assert sa.is_grad_enabled() and y.op is not None    # sits inside no_grad()
    y.backward()
    assert x.grad == 6.0
    proceed.set()
    t.join()
    assert seen["holder"] is None                # and no_grad held in its own thread
