"""Resources: compiling and dropping 1000 functions leaves memory flat; no descriptor leaks.

Each function has a distinct constant, so every compile misses the kernel cache
(``scalar_autograd.runtime.cache.KERNELS``, an LRU of 256 entries) and entries churn. After a
warm-up that fills the cache, 1000 more functions are compiled, called and dropped:

- every compiled kernel (and so its MCJIT engine) is freed once it leaves the cache;
- the Python heap (tracemalloc) stays flat;
- the number of open file descriptors (``/proc/self/fd``) is unchanged;
- native memory stays flat: the bytes in use in the C heap (glibc's ``mallinfo2``, where
  LLVM allocates) and the resident set size (``/proc/self/statm``) both grow by less
  than a generous bound. (The resident set alone can hide a native leak when the leaked
  blocks reuse freed pages, as it did in a full test run. llvmlite 0.50's default -O2
  module pipeline keeps ~58 KB of native memory per run, which is why the llvm backend
  runs an explicit short pass list instead; see ``native/engine.py``.)
"""

from __future__ import annotations

import ctypes
import gc
import os
import tracemalloc
import weakref

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.runtime.cache import KERNELS

N_FUNCTIONS = 1000
WARM_UP = 300  # > the cache's 256 entries
RSS_BOUND = 20e6  # bytes for 1000 functions: 20 KB each; a leaked engine costs far more
HEAP_BOUND = 2e6  # bytes of Python heap for 1000 functions

needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                reason="needs Linux /proc")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo2() -> ctypes._CFuncPtr | None:
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return None
    fn.restype = _MallInfo2
    return fn


_MALLINFO2 = _mallinfo2()


def native_in_use() -> int:
    """Bytes in use in the C heap (glibc), else the resident set size."""
    if _MALLINFO2 is None:
        return rss()
    info = _MALLINFO2()
    return int(info.uordblks + info.hblkhd)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def churn(start: int, count: int, backend: str, kernels: list | None = None) -> None:
    """Compile, call and drop ``count`` functions with distinct constants."""
    x_buf, g_buf = np.zeros(1), np.zeros(1)
    for k in range(start, start + count):
        x = sa.Value(1.0)
        c = 1.0 + k * 1e-7
        f = sa.compile(sa.sin(x) * c + x * x, [x], backend=backend)
        value, grad = f.value_and_grad([0.5])
        assert grad[0] == pytest.approx(np.cos(0.5) * c + 1.0, rel=1e-12)
        step = f.bind(x_buf, g_buf)
        step()
        if kernels is not None:
            kernels.append(weakref.ref(f._entry.deriv_kernel()))


@needs_proc
@pytest.mark.parametrize("backend", ["python", "llvm"])
def test_compiling_and_dropping_a_thousand_functions_leaves_memory_flat(backend):
    churn(0, WARM_UP, backend)
    KERNELS.clear()  # both measurements with an empty cache
    gc.collect()
    fds0, rss0, native0 = open_fds(), rss(), native_in_use()
    tracemalloc.start()
    heap0 = tracemalloc.get_traced_memory()[0]
    kernels: list[weakref.ref] = []
    churn(WARM_UP, N_FUNCTIONS, backend, kernels)
    KERNELS.clear()
    gc.collect()
    heap1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    fds1, rss1, native1 = open_fds(), rss(), native_in_use()
    alive = sum(ref() is not None for ref in kernels)
    print(f"\n{backend}: {N_FUNCTIONS} functions, C heap {(native1 - native0) / 1e6:+.1f} MB, "
          f"RSS {(rss1 - rss0) / 1e6:+.1f} MB, Python heap {(heap1 - heap0) / 1e6:+.2f} MB, "
          f"fds {fds0} -> {fds1}, kernels alive {alive}")
    assert alive == 0, f"{alive} dropped kernels (and their engines) are still alive"
    assert heap1 - heap0 < HEAP_BOUND
    assert fds1 == fds0
    assert native1 - native0 < RSS_BOUND
    assert rss1 - rss0 < RSS_BOUND


@needs_proc
def test_bound_calls_and_batches_do_not_leak_descriptors_or_memory():
    x = sa.Value(1.0)
    f = sa.compile(sa.exp(x) * 2.0, [x], backend="llvm")
    X = np.linspace(0, 1, 1000).reshape(-1, 1)
    for _ in range(200):  # warm-up
        f.bind(np.zeros(1), np.zeros(1))()
        f.batch_jacobian(X)
    gc.collect()
    fds0, rss0, native0 = open_fds(), rss(), native_in_use()
    for _ in range(2000):
        f.bind(np.zeros(1), np.zeros(1))()
        f.batch_jacobian(X)
        f.value_and_grad([0.25])
    gc.collect()
    assert open_fds() == fds0
    assert max(rss() - rss0, native_in_use() - native0) < RSS_BOUND
