"""Resources: compiling and dropping 1000 functions leaves memory flat; no descriptor leaks.

Each function has a distinct constant, so every compile misses the kernel cache
(``scalar_autograd.jit.cache.KERNELS``, an LRU of 256 entries) and entries churn. After a
warm-up that fills the cache, 1000 more functions are compiled, called and dropped:

- every compiled kernel (and so its MCJIT engine) is freed once it leaves the cache;
- the Python heap (tracemalloc) stays flat;
- the number of open file descriptors (``/proc/self/fd``) is unchanged;
- the process's resident memory (``/proc/self/statm``) grows by less than a generous
  bound. (llvmlite 0.50's default -O2 module pipeline keeps ~58 KB of native memory per
  run, which is why the llvm backend runs an explicit short pass list instead; see
  ``backends/llvm.py``.)
"""

from __future__ import annotations

import gc
import os
import tracemalloc
import weakref

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.jit.cache import KERNELS

N_FUNCTIONS = 1000
WARM_UP = 300  # > the cache's 256 entries
RSS_BOUND = 20e6  # bytes for 1000 functions: 20 KB each; a leaked engine costs far more
HEAP_BOUND = 2e6  # bytes of Python heap for 1000 functions

needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                reason="needs Linux /proc")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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
    gc.collect()
    fds0, rss0 = open_fds(), rss()
    tracemalloc.start()
    heap0 = tracemalloc.get_traced_memory()[0]
    kernels: list[weakref.ref] = []
    churn(WARM_UP, N_FUNCTIONS, backend, kernels)
    KERNELS.clear()
    gc.collect()
    heap1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    fds1, rss1 = open_fds(), rss()
    alive = sum(ref() is not None for ref in kernels)
    print(f"\n{backend}: {N_FUNCTIONS} functions, RSS {(rss1 - rss0) / 1e6:+.1f} MB, "
          f"Python heap {(heap1 - heap0) / 1e6:+.2f} MB, fds {fds0} -> {fds1}, "
          f"kernels alive {alive}")
    assert alive == 0, f"{alive} dropped kernels (and their engines) are still alive"
    assert heap1 - heap0 < HEAP_BOUND
    assert fds1 == fds0
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
    fds0, rss0 = open_fds(), rss()
    for _ in range(2000):
        f.bind(np.zeros(1), np.zeros(1))()
        f.batch_jacobian(X)
        f.value_and_grad([0.25])
    gc.collect()
    assert open_fds() == fds0
    assert rss() - rss0 < RSS_BOUND
