"""An in-memory LRU cache of compiled kernels keyed by program structure.

The key is the program's full structure, its canonical encoding
(:meth:`~scalar_autograd.ir.program.Program.key`, constants by bit pattern), and the
concrete backend name (``"auto"`` and ``"llvm"`` resolved by size, so native code and
the tape VM never share an entry; see :func:`scalar_autograd.backends.resolve_backend`).
Python's dict compares keys by equality after a hash match, so a hit is verified
structurally (the encodings compared byte for byte), never trusted by hash alone. The
opt-in on-disk cache below it (:mod:`scalar_autograd.runtime.disk_cache`) is keyed by
the encoding's SHA-256 instead.

Example:
    >>> cache = KernelCache(maxsize=2)
    >>> cache.get_or_create(("k",), lambda: "kernel")
    'kernel'
    >>> cache.get_or_create(("k",), lambda: "other")
    'kernel'
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class KernelCache:
    """A thread-safe LRU mapping from structural keys to compiled objects."""

    def __init__(self, maxsize: int = 256) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1; got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_create(self, key: Hashable, create: Callable[[], Any]) -> Any:
        """The cached object for ``key``, or ``create()`` stored under it."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
        value = create()  # outside the lock: compiling may take long
        with self._lock:
            self.misses += 1
            existing = self._data.get(key)
            if existing is not None:
                return existing
            self._data[key] = value
            if len(self._data) > self.maxsize:
                self._data.popitem(last=False)
            return value

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


KERNELS = KernelCache()
"""The process-wide cache used by :func:`scalar_autograd.compile`."""
