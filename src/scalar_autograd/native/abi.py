"""The native calling convention: buffer checks, address blocks, bound calls.

Native code in this package takes raw pointers to float64 (sometimes int64) buffers.
These helpers make that safe and cheap from Python:

* :func:`check_buffer`: the one check that an array can be handed to native code
  (a numpy array of the right dtype, C-contiguous, writeable if written, right shape).
* :func:`address` and :func:`address_block`: a buffer's address, and an int64 array of
  words (addresses of arrays, plain integers) passed to an entry point of the form
  ``void f(ptr %block)``, so one call carries any number of buffers.
* :class:`BlockCall`: an entry point ``void f(ptr %block)`` with its address block
  built once (words may be changed in place between calls), keeping the arrays alive.
* :func:`bound_call` and :func:`keep_alive`: a zero-argument native function calling
  another with fixed pointer arguments (a :class:`BoundCall`), which keeps the engines
  and buffers it points into alive for as long as it lives.

A bound call costs no compile: it takes a free *stub* from a process-wide pool, a
zero-argument function that reads its function and arguments from a table
(:func:`~scalar_autograd.native.emitter.bound_stubs`), and writes them there. Stubs
are compiled a page at a time (4, then 8, 16, ... up to 256 per number of arguments;
about 1.5 ms for the first page), once per process, and a stub returns to the pool when
its bound call is freed. A call through a stub costs what a call of a function compiled
with the addresses baked in costs (0.10 us for a 5-joint IK gradient, measured both
ways), without compiling such a function, a module of its own (about 2 ms), for every
thread and kernel.

Example:
    >>> import numpy as np
    >>> x = np.zeros(3)
    >>> check_buffer(x, "x", (3,)) is x
    True
    >>> block = address_block([3, x])
    >>> block.dtype.name, int(block[0]), int(block[1]) == address(x)
    ('int64', 3, True)
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.native.emitter import bound_stubs
from scalar_autograd.native.engine import NativeEngine, native_engine

_F64 = np.dtype(np.float64)

BLOCK_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
"""ctypes type of an entry point ``void f(ptr %block)``."""
BOUND_FN = ctypes.CFUNCTYPE(None)
"""ctypes type of a bound zero-argument call."""


def address(a: np.ndarray) -> int:
    """The address of ``a``'s first element (the caller keeps ``a`` alive)."""
    return int(a.ctypes.data)


def address_block(words: Sequence[np.ndarray | int]) -> np.ndarray:
    """An int64 array of ``words``: arrays become their addresses, integers stay.

    The block holds raw addresses, not references: whoever keeps the block must keep
    the arrays alive too (see :func:`keep_alive`).
    """
    return np.array([address(w) if isinstance(w, np.ndarray) else int(w) for w in words],
                    dtype=np.int64)


def check_buffer(a: Any, name: str, shape: tuple[int, ...] | None = None, *,
                 dtypes: tuple[Any, ...] = (_F64,), writeable: bool = True) -> np.ndarray:
    """``a`` if native code may use it as a buffer; else raise, naming ``name``.

    Args:
        a: the candidate buffer.
        name: the argument's name, for the message.
        shape: the required shape, or None for any.
        dtypes: the accepted dtypes (float64 by default).
        writeable: whether native code writes into it.

    Raises:
        TypeError: not a numpy array, another dtype, not C-contiguous, or read-only
            when ``writeable``.
        ValueError: the wrong shape.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy float64 array; got {type(a).__name__}")
    if (a.dtype not in dtypes or not a.flags.c_contiguous
            or (writeable and not a.flags.writeable)):
        kinds = "/".join(np.dtype(d).name for d in dtypes)
        raise TypeError(f"{name} must be a {'writeable ' if writeable else ''}C-contiguous "
                        f"{kinds} array; got dtype {a.dtype} (C-contiguous: "
                        f"{a.flags.c_contiguous}, writeable: {a.flags.writeable})")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {a.shape}")
    return a


def keep_alive(fn: Any, *objects: Any) -> Any:
    """Attach ``objects`` (engines, kernels, buffers) to ``fn``; returns ``fn``.

    A bound call holds raw addresses; this is what stops those addresses from dangling.
    """
    fn.keep_alive = objects
    return fn


class BoundCall(ctypes._CFuncPtr):  # type: ignore[name-defined,misc]
    """A zero-argument native call of a function with fixed pointer arguments.

    Made by :func:`bound_call`; call it with no arguments (one ctypes call, GIL
    released). It runs a stub of the process's pool, which reads the function and the
    arguments from the stub's table entry; :meth:`retarget` changes the function (to
    code computing the same thing), safely while other threads call. The entry returns
    to the pool when this object is freed.
    """

    _flags_ = BOUND_FN._flags_
    _restype_ = None
    _argtypes_ = ()
    __hash__ = object.__hash__     # by identity (ctypes objects are unhashable), for sets

    _entry: np.ndarray        # this call's table entry (a view): function, arguments
    _release: Callable[[], None]
    keep_alive: tuple[Any, ...]

    @property
    def function(self) -> int:
        """The address of the function called."""
        return int(self._entry[0])

    def retarget(self, function: int) -> None:
        """Call ``function`` from now on (same arguments); the caller keeps its code
        alive, and the code it replaces alive for calls in progress."""
        self._entry[0] = function     # one aligned 8-byte store; stubs load it atomically

    def __del__(self) -> None:
        try:
            self._release()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown: nothing to return to
            pass


class _StubPool:
    """Stubs for functions of one number of pointer arguments, compiled by pages."""

    def __init__(self, arity: int) -> None:
        self.arity = arity
        self.free: list[tuple[np.ndarray, int]] = []   # (entry view, stub address)
        self.pages: list[tuple[NativeEngine, np.ndarray]] = []   # kept for the process
        self.lock = threading.Lock()

    def _grow(self) -> None:
        count = 4 << min(len(self.pages), 6)
        table = np.zeros((count, self.arity + 1), dtype=np.int64)
        engine = native_engine(bound_stubs(address(table), count, self.arity), 0)
        self.pages.append((engine, table))
        self.free.extend((table[j], engine.address(f"stub{j}"))
                         for j in reversed(range(count)))

    def take(self) -> tuple[np.ndarray, int]:
        with self.lock:
            if not self.free:
                self._grow()
            return self.free.pop()

    def give_back(self, entry: np.ndarray, stub: int) -> None:
        entry[:] = 0
        with self.lock:
            self.free.append((entry, stub))


_pools: dict[int, _StubPool] = {}
_pools_lock = threading.Lock()


def _pool(arity: int) -> _StubPool:
    pool = _pools.get(arity)
    if pool is None:
        with _pools_lock:
            pool = _pools.setdefault(arity, _StubPool(arity))
    return pool


def bound_call(function: int, args: Sequence[int], keep: Sequence[Any]) -> BoundCall:
    """A zero-argument native call of ``function(*args)`` (all pointers): a
    :class:`BoundCall`.

    No code is compiled (see the module docstring: a stub from the pool). The call
    keeps ``keep`` (whatever ``function`` and ``args`` point into) alive, and is freed
    like any Python object.

    Example:
        >>> from scalar_autograd.native.emitter import FunctionEmitter
        >>> e = FunctionEmitter()
        >>> x = e.arg(0, "ptr")
        >>> e.store("3.0", x, "0")
        >>> engine = native_engine(e.function("set3"), 0)
        >>> out = np.zeros(1)
        >>> block = address_block([out])
        >>> call = bound_call(engine.address("set3"), [address(block)], (engine, block, out))
        >>> call(); out.tolist()
        [3.0]
    """
    pool = _pool(len(args))
    entry, stub = pool.take()
    try:
        entry[1:] = [int(a) for a in args]
        entry[0] = int(function)
        call = BoundCall(stub)
    except BaseException:
        pool.give_back(entry, stub)
        raise
    call._entry = entry

    def release(pool: _StubPool = pool, entry: np.ndarray = entry, stub: int = stub) -> None:
        pool.give_back(entry, stub)

    call._release = release
    return keep_alive(call, *keep)  # type: ignore[no-any-return]


class BlockCall:
    """``f(block)`` for an entry point ``void f(ptr %block)``, its block built once.

    Each call costs one ctypes call with one pointer argument. ``block`` is the int64
    array passed; plain-integer words (counts, indices) may be changed in place
    between calls (``call.block[2] = count``). The arrays among ``words`` and
    ``owner`` (an engine or an object holding it) are kept alive by this object.

    Example:
        >>> from scalar_autograd.native.emitter import FunctionEmitter
        >>> e = FunctionEmitter()
        >>> n, x = e.arg(0, "i64"), e.arg(1, "ptr")
        >>> i = e.loop("i", "0", n, "entry")
        >>> e.store("2.0", x, i)
        >>> e.end_loop("i")
        >>> engine = native_engine(e.function("fill"), 0)
        >>> x = np.zeros(3)
        >>> fill = BlockCall(engine.address("fill"), [x.size, x], owner=engine)
        >>> fill(); x.tolist()
        [2.0, 2.0, 2.0]
    """

    __slots__ = ("block", "_fn", "_ptr", "_keep")

    def __init__(self, function: int, words: Sequence[np.ndarray | int],
                 owner: Any = None) -> None:
        self.block = address_block(words)
        self._fn = BLOCK_FN(function)
        self._ptr = ctypes.c_void_p(address(self.block))
        self._keep = (owner, tuple(w for w in words if isinstance(w, np.ndarray)))

    def __call__(self) -> None:
        self._fn(self._ptr)
