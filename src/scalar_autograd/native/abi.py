"""The native calling convention: buffer checks, address blocks, bound calls.

Native code in this package takes raw pointers to float64 (sometimes int64) buffers.
Three helpers make that safe and cheap from Python:

* :func:`check_buffer`: the one check that an array can be handed to native code
  (a numpy array of the right dtype, C-contiguous, writeable if written, right shape).
* :func:`address` and :func:`address_block`: a buffer's address, and an int64 array of
  words (addresses of arrays, plain integers) passed to an entry point of the form
  ``void f(ptr %block)``, so one call carries any number of buffers.
* :class:`BlockCall`: an entry point ``void f(ptr %block)`` with its address block
  built once (words may be changed in place between calls), keeping the arrays alive.
* :func:`bound_call` and :func:`keep_alive`: a zero-argument native function with its
  argument addresses baked in, which keeps the engines and buffers it points into
  alive for as long as it lives.

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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.native.engine import native_engine

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


def bound_call(function: int, args: Sequence[int], keep: Sequence[Any]) -> Callable[[], None]:
    """A zero-argument native function calling ``function(*args)`` (all pointers).

    The wrapper is a tiny module of its own engine, compiled at O0 (well under a
    millisecond); it is freed with the returned callable, which keeps its engine and
    ``keep`` (whatever ``function`` and ``args`` point into) alive.
    """
    ptrs = ", ".join(f"ptr inttoptr (i64 {int(a)} to ptr)" for a in args)
    engine = native_engine(
        f"define void @bound() nounwind {{\n"
        f"  call void inttoptr (i64 {int(function)} to ptr)({ptrs})\n  ret void\n}}\n", 0)
    fn = BOUND_FN(engine.address("bound"))
    return keep_alive(fn, engine, *keep)  # type: ignore[no-any-return]


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
