"""Portable compiled functions: pickling, process pools, and the on-disk kernel cache.

A ``CompiledFunction`` pickles as its program (never machine code) and gives, after a
round trip, bit-for-bit the original's values and gradients on every backend, also in
``spawn``ed worker processes. With a cache directory, native kernels are stored as
verified files that a second process loads without differentiating or generating code;
damaged or mismatched files are rebuilt, never executed, and an unwritable directory
warns once.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.backends import vm as vm_backend
from scalar_autograd.backends.base import KernelArtifact
from scalar_autograd.ir import program as program_module
from scalar_autograd.ir.program import Builder, Program, read_header
from scalar_autograd.ir.trace import trace
from scalar_autograd.native import engine
from scalar_autograd.runtime import compiled, disk_cache
from scalar_autograd.runtime.cache import KERNELS
from scalar_autograd.runtime.disk_cache import (
    DiskCache,
    DiskCacheWarning,
    pack_artifact,
    unpack_artifact,
)

NATIVE = ["llvm", "vm"]
POINTS = [[0.3, -0.2, 1.5], [-1.0, 2.0, 0.25], [2.5, 0.5, -3.0], [0.0, -0.0, 1e-300]]
TARGETS = [[0.5], [-3.0], [10.0], [0.0]]


@pytest.fixture(autouse=True)
def _no_disk_cache_unless_asked(monkeypatch):
    """Every test starts with the disk cache off and leaves the setting as it found it."""
    monkeypatch.delenv(disk_cache.ENV_VAR, raising=False)
    saved = disk_cache._configured
    disk_cache._configured = disk_cache._UNSET
    yield
    disk_cache._configured = saved


@pytest.fixture
def cache_dir(tmp_path):
    """A fresh cache directory in use, with empty in-memory caches around the test."""
    directory = tmp_path / "kernels"
    vm_backend.machine()  # the VM's own code stays out (tested through native_engine)
    sa.set_cache_dir(directory)
    KERNELS.clear()
    yield directory
    KERNELS.clear()


def _function(backend: str) -> sa.CompiledFunction:
    """Three params, one input, one output with a bit of everything (and labels)."""
    a, b, c = sa.Value(0.1, label="a"), sa.Value(0.2, label="b"), sa.Value(0.3, label="c")
    t = sa.Value(0.5, label="target")
    hidden = sa.exp(a) * sa.sin(b * c)
    hidden.label = "secret intermediate label"
    loss = sa.where(a > b, hidden, sa.sqrt(b * b + 1.0)) + (c - t) ** 2 + sa.tanh(a * t) / 3.0
    return sa.compile(loss, [a, b, c], inputs=[t], backend=backend)


def _multi(backend: str) -> sa.CompiledFunction:
    a, b, c = sa.Value(0.0), sa.Value(0.0), sa.Value(0.0)
    return sa.compile([a * b + sa.sin(c), sa.exp(a) / (1 + b * b), sa.where(a > c, a, c)],
                      [a, b, c], backend=backend)


def _bits(*arrays) -> bytes:
    return b"".join(np.ascontiguousarray(np.atleast_1d(a), dtype=np.float64).tobytes()
                    for a in arrays)


def _results(f: sa.CompiledFunction) -> bytes:
    """Every hot method of ``f`` at every test point, as raw bytes."""
    out = []
    for x, t in zip(POINTS, TARGETS):
        v, g = f.value_and_grad(x, t)
        out.append(_bits(f(x, t), v, g, *f.jacobian(x, t)))
    out.append(_bits(*f.batch_jacobian(POINTS, TARGETS), f.batch_values(POINTS, TARGETS)))
    return b"".join(out)


# ----------------------------------------------------------------------------- pickling

def test_a_round_trip_gives_the_same_bits_on_every_backend(backend):
    f = _function(backend)
    expected = _results(f)
    g = pickle.loads(pickle.dumps(f))
    assert isinstance(g, sa.CompiledFunction)
    assert (g.backend, g.n_params, g.n_inputs, g.n_outputs) == (f.backend, 3, 1, 1)
    assert _results(g) == expected
    KERNELS.clear()  # and when the kernels must be built again from the pickled program
    h = pickle.loads(pickle.dumps(f))
    assert h._entry is not f._entry
    assert _results(h) == expected
    assert h.program.key() == f.program.key()


def test_a_round_trip_of_a_multi_output_function_and_its_bound_call(backend):
    f = _multi(backend)
    g = pickle.loads(pickle.dumps(f))
    for x in POINTS:
        assert _bits(*g.jacobian(x)) == _bits(*f.jacobian(x))
        assert _bits(g(x)) == _bits(f(x))
    x, grad, value = np.array(POINTS[0]), np.zeros(9), np.zeros(3)
    g.bind(x, grad, value=value)()
    assert _bits(value, grad.reshape(3, 3)) == _bits(*f.jacobian(POINTS[0]))


def test_unpickling_makes_fresh_leaves_and_leaves_the_graph_behind():
    f = _function("llvm")
    data = pickle.dumps(f)
    assert b"secret intermediate label" not in data
    g = pickle.loads(data)
    for original, copy in zip(f.params + f.inputs, g.params + g.inputs):
        assert copy is not original
        assert (copy.data, copy.label, copy.op) == (original.data, original.label, None)
    # inputs=None reads the (fresh) input leaves, as on the original
    assert _bits(*g.value_and_grad(POINTS[1])) == _bits(*f.value_and_grad(POINTS[1]))
    g.inputs[0].data = 2.0
    assert _bits(*g.value_and_grad(POINTS[1])) == _bits(*f.value_and_grad(POINTS[1], [2.0]))


def test_buffers_locks_and_native_objects_are_not_pickled():
    f = _function("llvm")
    threads = [threading.Thread(target=f.value_and_grad, args=(POINTS[0], TARGETS[0]))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    f.value_and_grad(POINTS[0], TARGETS[0])
    data = pickle.dumps(f)  # a thread-local, a lock or a ctypes object would raise here
    assert len(data) < 2000
    assert b"_Buffers" not in data and b"ctypes" not in data and b"threading" not in data


def test_compile_program_functions_pickle_and_auto_is_resolved_again():
    b = Builder(n_params=2, n_inputs=0)
    x, y = b.input(0), b.input(1)
    program = b.build([b.emit("add", (b.emit("mul", (x, y)), b.emit("sin", (x,))))], 1)
    f = compiled.compile_program(program)
    g = pickle.loads(pickle.dumps(f))
    assert g._requested_backend == "auto" and g.backend == f.backend
    assert g.params == () and g.n_params == 2
    assert _bits(*g.value_and_grad([0.5, 2.0])) == _bits(*f.value_and_grad([0.5, 2.0]))


def test_the_auxiliary_outputs_of_a_guarded_specialisation_survive_a_round_trip():
    a = sa.Value(0.0)
    program, _ = trace([a * a, a > 0.0], [a])
    f = sa.CompiledFunction(compiled._entry_for(program, "llvm", n_aux=1), [a])
    g = pickle.loads(pickle.dumps(f))
    assert g._entry.n_aux == 1 and g.n_outputs == 1
    assert g.value_and_grad([3.0])[1].tolist() == [6.0]


def test_a_pickle_is_about_ten_bytes_a_node():
    x = [sa.Value(float(i)) for i in range(10)]
    acc = x[0]
    for i in range(3000):
        acc = acc * 0.999 + sa.sin(x[i % 10] * x[(7 * i + 3) % 10] + acc)
    f = sa.compile(acc, x, backend="vm")
    n_nodes = len(f.program.nodes)
    assert len(pickle.dumps(f)) < 16 * n_nodes


def test_process_pool_workers_started_by_spawn_give_the_same_bits():
    f, m = _function("llvm"), _multi("vm")
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        grads = [pool.submit(f.value_and_grad, x, t) for x, t in zip(POINTS, TARGETS)]
        jacobians = [pool.submit(m.jacobian, x) for x in POINTS]
        values = list(pool.map(m, POINTS))
        for future, x, t in zip(grads, POINTS, TARGETS):
            assert _bits(*future.result()) == _bits(*f.value_and_grad(x, t))
        for future, value, x in zip(jacobians, values, POINTS):
            assert _bits(*future.result()) == _bits(*m.jacobian(x))
            assert _bits(value) == _bits(m(x))


def test_a_multiprocessing_pool_started_by_spawn_gives_the_same_bits():
    f = _function("vm")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result = pool.apply(f.value_and_grad, (POINTS[2], TARGETS[2]))
    assert _bits(*result) == _bits(*f.value_and_grad(POINTS[2], TARGETS[2]))


# ----------------------------------------------------------------------------- programs

def _assorted_program() -> Program:
    b = Builder(n_params=2, n_inputs=1)
    x, y, u = b.input(0), b.input(1), b.input(2)
    nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]
    outs = [b.emit("add", (x, b.const(-0.0001))), b.emit("mul", (y, b.const(nan))),
            b.emit("sum", (x, y, u, b.const(0.0), b.const(-0.0))), b.emit("where", (x, y, u)),
            b.const(-0.0), b.const(float("inf")), b.emit("atan2", (u, x))]
    return b.build(outs, 5)


def test_the_encoding_is_canonical_and_round_trips_every_bit():
    p = _assorted_program()
    q = Program.from_bytes(p.to_bytes())
    assert q.key() == p.key() and str(q) == str(p)
    assert program_module._encode(q) == p.to_bytes()  # decoding kept every constant's bits
    assert q.digest() == p.digest() == hashlib.sha256(p.to_bytes()).hexdigest()
    assert q.n_instructions == p.n_instructions
    assert pickle.loads(pickle.dumps(p)).key() == p.key()
    header = read_header(p.to_bytes())
    assert (header.n_nodes, header.n_params, header.n_inputs, header.n_values,
            header.n_outputs) == (len(p.nodes), 2, 1, 5, len(p.outputs))
    empty = Builder(0, 0).build([], 0)
    assert Program.from_bytes(empty.to_bytes()) == empty


def test_a_bad_encoding_is_refused():
    data = _assorted_program().to_bytes()
    with pytest.raises(TypeError, match="data must be bytes; got int"):
        Program.from_bytes(123)  # type: ignore[arg-type]
    for broken in (b"", data[:-1], data + b"\0", b"XXXX" + data[4:]):
        with pytest.raises(ValueError, match="not a scalar_autograd program encoding"):
            Program.from_bytes(broken)
    forward_reference = Program((("input", 0), ("sin", (2,)), ("cos", (0,))), (1,), 1, 0, 1)
    with pytest.raises(ValueError, match="refers to a later or missing node"):
        Program.from_bytes(forward_reference.to_bytes())


# ----------------------------------------------------------------------------- settings

def test_set_cache_dir_checks_its_argument():
    with pytest.raises(TypeError, match="path must be a str, an os.PathLike or None; got int"):
        sa.set_cache_dir(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got bytes"):
        sa.set_cache_dir(b"/tmp/x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path must name a directory"):
        sa.set_cache_dir("")


def test_set_cache_dir_wins_over_the_environment(monkeypatch, tmp_path):
    assert sa.get_cache_dir() is None
    monkeypatch.setenv("SA_CACHE_DIR", str(tmp_path / "from-env"))
    assert sa.get_cache_dir() == tmp_path / "from-env"
    sa.set_cache_dir(tmp_path / "set")
    assert sa.get_cache_dir() == tmp_path / "set"
    sa.set_cache_dir(None)
    assert sa.get_cache_dir() is None and disk_cache.active_cache() is None
    monkeypatch.chdir(tmp_path)
    sa.set_cache_dir("relative")
    assert sa.get_cache_dir() == tmp_path / "relative"


# ----------------------------------------------------------------------------- disk cache

def _forbid_building(monkeypatch) -> None:
    """Make differentiation, lowering, IR generation and tape building raise."""
    def boom(*args, **kwargs):
        raise AssertionError("a kernel was built although the disk cache holds it")

    for module, name in ((compiled.autodiff, "reverse"), (compiled.autodiff, "forward"),
                         (compiled, "lower"), (sys.modules["scalar_autograd.backends.llvm"],
                                               "generate"), (vm_backend, "build_tape")):
        monkeypatch.setattr(module, name, boom)


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.sak"))


def _intact(path: Path) -> bool:
    """Whether a cache file's header, key, name and payload digest all check."""
    data = path.read_bytes()
    size = disk_cache._HEADER.size
    if len(data) < size:
        return False
    key = data[size:size + disk_cache._HEADER.unpack_from(data)[2]]
    return hashlib.sha256(key).hexdigest() == path.stem and \
        disk_cache._verified_payload(data, key) is not None


@pytest.mark.parametrize("backend", NATIVE)
def test_a_disk_hit_skips_differentiation_and_code_generation(backend, cache_dir,
                                                               monkeypatch):
    expected = _results(_function(backend))
    files = _files(cache_dir)
    assert len(files) >= 2 and all(_intact(p) for p in files)
    KERNELS.clear()
    with monkeypatch.context() as patch:
        _forbid_building(patch)
        f = _function(backend)
        assert _results(f) == expected
    # the loaded kernels derive their program (and source) only when asked
    assert f.n_instructions > 0 and f.source
    assert _files(cache_dir) == files


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "key", "version",
                                    "magic"])
def test_a_damaged_file_is_rebuilt_never_executed(backend, damage, cache_dir):
    expected = _results(_function(backend))
    files = _files(cache_dir)
    for path in files:
        data = bytearray(path.read_bytes())
        if damage == "flip":          # in the payload: object code or tape
            data[len(data) - 40] ^= 0xFF
        elif damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "empty":
            data = bytearray()
        elif damage == "key":         # the key in the header, payload digest still right
            start = disk_cache._HEADER.size
            data[start + 40] ^= 0x01
        elif damage == "version":
            data[8:12] = struct.pack("<I", disk_cache.FORMAT + 1)
        else:
            data[:8] = b"NOTCACHE"
        path.write_bytes(bytes(data))
    KERNELS.clear()
    assert _results(_function(backend)) == expected
    assert _files(cache_dir) == files and all(_intact(p) for p in files)


def test_a_verified_file_that_holds_no_kernel_is_rebuilt(cache_dir, monkeypatch):
    saved: dict[str, bytes] = {}
    original = DiskCache.save

    def recording_save(self, key, payload):
        saved[key] = payload
        original(self, key, payload)

    monkeypatch.setattr(DiskCache, "save", recording_save)
    expected = _results(_function("vm"))
    cache = disk_cache.active_cache()
    kernels = [k for k in saved if k.startswith("kernel")]
    assert len(kernels) == 2
    for damage in ("not an artifact", "registers out of range", "another size"):
        for key in kernels:
            artifact = unpack_artifact(saved[key])
            if damage == "not an artifact":
                payload = b"not an artifact"
            elif damage == "registers out of range":
                code = np.frombuffer(artifact.blobs["code"], dtype="<i4").copy()
                code[1::5] = 10**6  # every destination register far past the end
                payload = pack_artifact(KernelArtifact(
                    "vm", artifact.sizes, {**artifact.blobs, "code": code.tobytes()}))
            else:
                payload = pack_artifact(KernelArtifact(
                    "vm", {**artifact.sizes, "n_values": 7}, artifact.blobs))
            original(cache, key, payload)
        KERNELS.clear()
        assert _results(_function("vm")) == expected, damage
        assert all(_intact(p) for p in _files(cache_dir))


def test_object_code_of_native_engine_text_is_cached_and_checked(tmp_path):
    cache = DiskCache(tmp_path)
    source = "define double @three() {\n  ret double 3.0\n}\n"
    import ctypes

    def three(e: engine.NativeEngine) -> float:
        return ctypes.CFUNCTYPE(ctypes.c_double)(e.address("three"))()

    assert three(engine.native_engine(source, 2, cache)) == 3.0
    (path,) = _files(tmp_path)
    good = path.read_bytes()
    assert cache.load(engine.object_key(source, 2)) is not None
    for damaged in (good[: len(good) - 7], good[:-100] + bytes(100), b""):
        path.write_bytes(damaged)  # LLVM would crash on such object code: never loaded
        assert three(engine.native_engine(source, 2, cache)) == 3.0
        assert _intact(path)
    with pytest.raises(ValueError, match="must be object code"):
        engine.load_object(b"garbage")


def test_an_unwritable_directory_warns_once_and_everything_works(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a directory")
    sa.set_cache_dir(blocker / "kernels")
    KERNELS.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for backend in ("llvm", "vm", "llvm"):
            f = _function(backend)
            KERNELS.clear()
            g = _multi(backend)
            assert _bits(*f.value_and_grad(POINTS[0], TARGETS[0])) == \
                _bits(*_reference(backend).value_and_grad(POINTS[0], TARGETS[0]))
            assert g.jacobian(POINTS[1])[1].shape == (3, 3)
    ours = [w for w in caught if issubclass(w.category, DiskCacheWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    assert "cannot write" in str(ours[0].message) and str(blocker) in str(ours[0].message)
    assert not blocker.is_dir()


def _reference(backend: str) -> sa.CompiledFunction:
    saved = disk_cache._configured
    disk_cache._configured = None
    try:
        KERNELS.clear()
        return _function(backend)
    finally:
        disk_cache._configured = saved
        KERNELS.clear()


@pytest.mark.parametrize("backend", NATIVE)
def test_threads_building_and_loading_the_same_kernels_at_once(backend, cache_dir):
    program = _function(backend).program
    KERNELS.clear()
    expected = _results(_reference(backend))

    def work(_: int) -> bytes:
        # a separate entry per thread: every thread goes to the disk itself
        f = sa.CompiledFunction(compiled._Entry(program, backend), inputs=[sa.Value(0.5)])
        return _results(f)

    for _ in range(2):  # first every thread misses and writes, then every thread loads
        for path in _files(cache_dir):
            path.unlink()
        assert _run_in_threads(work, 6) == [expected] * 6
        assert all(_intact(p) for p in _files(cache_dir))
        assert _run_in_threads(work, 6) == [expected] * 6
    assert not list(cache_dir.glob("*.tmp"))


def _run_in_threads(work, n: int) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def target(k: int) -> None:
        try:
            barrier.wait()
            results[k] = work(k)
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


_CHILD = textwrap.dedent("""
    import pickle, sys
    import numpy as np
    import scalar_autograd.backends.llvm as llvm_backend
    import scalar_autograd.backends.vm as vm_backend
    from scalar_autograd.runtime import compiled

    def boom(*args, **kwargs):
        raise AssertionError("a kernel was built although the disk cache holds it")

    if sys.argv[2] == "must-hit":
        compiled.autodiff.reverse = compiled.autodiff.forward = compiled.lower = boom
        llvm_backend.generate = vm_backend.build_tape = boom
    with open(sys.argv[1], "rb") as fh:
        f = pickle.load(fh)
    out = []
    for x, t in zip({points!r}, {targets!r}):
        v, g = f.value_and_grad(x, t)
        out.append(np.concatenate([[v], g, f.jacobian(x, t)[1].ravel()]))
    print(np.concatenate(out).tobytes().hex())
""").format(points=POINTS, targets=TARGETS)


@pytest.mark.parametrize("backend", NATIVE)
def test_processes_share_the_disk_cache(backend, tmp_path):
    f = _function(backend)
    expected = np.concatenate([np.concatenate([[v], g, f.jacobian(x, t)[1].ravel()])
                               for x, t in zip(POINTS, TARGETS)
                               for v, g in [f.value_and_grad(x, t)]]).tobytes().hex()
    pickled = tmp_path / "f.pkl"
    pickled.write_bytes(pickle.dumps(f))
    env = {**os.environ, "SA_CACHE_DIR": str(tmp_path / "kernels")}

    def child(mode: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", _CHILD, str(pickled), mode], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    writers = [child("may-build") for _ in range(2)]  # both miss and write the same keys
    results = [p.communicate(timeout=120) for p in writers]
    reader = child("must-hit").communicate(timeout=120)
    for out, err in [*results, reader]:
        assert out.strip() == expected, err
    files = _files(tmp_path / "kernels")
    assert files and all(_intact(p) for p in files)
    assert not list((tmp_path / "kernels").glob("*.tmp"))
