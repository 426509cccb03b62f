"""One problem of a batch, traced once: the model every batched solver compiles.

A batched solver (:func:`scalar_autograd.batch_least_squares`,
:func:`scalar_autograd.batch_curve_fit`, :func:`scalar_autograd.batch_minimize`) takes
a Python function written for ONE problem and runs it on millions. This module turns
that function into a :class:`~scalar_autograd.runtime.compiled.CompiledFunction` of
the problem's ``n`` params and its data inputs (:func:`trace_problem`), splits the
per-problem data arrays into input rows (:func:`problem_data`), and rebuilds the
compiled function from its program in another process, once per process
(:func:`remote_function`): the model travels as its program, never as machine code.

A Python branch on a traced value cannot follow each problem's values in one compiled
function; it is refused with a ValueError naming the line (:func:`guard_error`).

Example:
    >>> import numpy as np
    >>> f = trace_problem(lambda p, u: [p[0] * u[0] - 1.0], 1, 1, "residual_fn")
    >>> f.n_params, f.n_inputs, f([3.0], [2.0])
    (1, 1, 5.0)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.graph import gc_paused
from scalar_autograd.native.engine import available
from scalar_autograd.runtime.compiled import CompiledFunction, compile_program
from scalar_autograd.tracing import Guard, tracing
from scalar_autograd.value import Value

MAX_REMOTE_MODELS = 64
"""Models a worker process keeps compiled (least recently used dropped first)."""


def guard_error(guards: Sequence[Guard], what: str) -> ValueError:
    """The error for a batched model that branched on a traced value."""
    sites = ", ".join(sorted({g.site for g in guards}))
    return ValueError(
        f"{what} branched on a Value that depends on its parameters or data (at {sites}): "
        f"a batched model is compiled once and runs the same code for every problem, "
        f"so a Python branch cannot follow each problem's values. Write the branch with "
        f"sa.where(cond, a, b) (or sa.maximum/sa.minimum/sa.abs), which stays a branch "
        f"in the compiled code")


def trace_problem(build: Callable[[list[Value], list[Value]], Sequence[Any]], n: int,
                  n_inputs: int, what: str, noun: str = "outputs") -> CompiledFunction:
    """Trace ``build(params, inputs) -> outputs`` once and compile it (native code
    when llvmlite is present). ``what`` names the user's function and ``noun`` its
    outputs in error messages.

    Raises:
        ValueError: ``build`` branched on a traced value (:func:`guard_error`), or
            returned no outputs.
        TypeError: an output that is neither a Value nor a real number.
    """
    from scalar_autograd.runtime.compiled import compile as compile_graph

    params = [Value(1.0, label=f"p{i}") for i in range(n)]
    inputs = [Value(0.0, label=f"u{i}") for i in range(n_inputs)]
    with gc_paused(), tracing(params + inputs) as t:
        outputs = list(build(params, inputs))
    if t.guards:
        raise guard_error(t.guards, what)
    if not outputs:
        raise ValueError(f"{what} returned no {noun}")
    values = []
    for i, v in enumerate(outputs):
        if isinstance(v, Value):
            values.append(v)
        elif isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
            values.append(Value(float(v)))
        else:
            raise TypeError(f"{what} must return Values or real numbers; output {i} is "
                            f"{type(v).__name__} {v!r:.60}")
    with gc_paused():
        return compile_graph(values, params, inputs,
                             backend="llvm" if available() else "auto")


def problem_data(data: Any, count: int | None) -> tuple[list[np.ndarray], list[int], int]:
    """The per-problem arrays of ``data`` (each ``(N,)`` or ``(N, d)``), their widths
    and ``N`` (``count`` when ``data`` is empty).

    Raises:
        TypeError: ``data`` is not a tuple or list of arrays of real numbers.
        ValueError: an array of another rank, or arrays with different row counts.
    """
    if isinstance(data, np.ndarray) or not isinstance(data, (tuple, list)):
        raise TypeError(f"data must be a tuple of per-problem arrays; got "
                        f"{type(data).__name__} (wrap one array as data=(a,))")
    arrays = [per_problem_array(a, f"data[{j}]") for j, a in enumerate(data)]
    counts = sorted({a.shape[0] for a in arrays})
    if len(counts) > 1:
        raise ValueError(f"every data array must have one row per problem; got row "
                         f"counts {counts}")
    widths = [1 if a.ndim == 1 else a.shape[1] for a in arrays]
    return arrays, widths, counts[0] if counts else (count if count is not None else 1)


def split_rows(inputs: list[Value], arrays: list[np.ndarray], widths: list[int]
               ) -> list[Any]:
    """One problem's input Values grouped as its function takes them: a Value for an
    ``(N,)`` array, a list of ``d`` Values for an ``(N, d)`` one."""
    rows, k = [], 0
    for a, d in zip(arrays, widths):
        rows.append(inputs[k] if a.ndim == 1 else inputs[k:k + d])
        k += d
    return rows


def stack_rows(arrays: list[np.ndarray], count: int) -> np.ndarray:
    """The data as one C-contiguous ``(N * nu,)`` array, problem after problem."""
    if not arrays:
        return np.zeros(0)
    columns = [a.reshape(count, 1 if a.ndim == 1 else a.shape[1]) for a in arrays]
    return np.ascontiguousarray(np.concatenate(columns, axis=1)).reshape(-1)


class BatchStatuses:
    """The status methods every batched result shares (a mixin).

    The result has ``x`` ``(N, n)``, ``status`` (codes into :attr:`STATUSES`) and
    ``interrupted``; the subclass sets ``STATUSES``, its status enum as a tuple, whose
    members have a ``success`` property.
    """

    STATUSES: tuple[Any, ...]
    x: np.ndarray
    status: np.ndarray
    interrupted: bool

    @property
    def success(self) -> np.ndarray:
        """``(N,)`` bool: the problem converged."""
        codes = [i for i, s in enumerate(self.STATUSES) if s.success]
        return np.isin(self.status, np.array(codes, dtype=np.int64))

    def statuses(self) -> list[Any]:
        """Every problem's status, as the enum."""
        return [self.STATUSES[c] for c in self.status.tolist()]

    def counts(self) -> dict[str, int]:
        """How many problems ended with each status (by the status's name)."""
        codes, numbers = np.unique(self.status, return_counts=True)
        return {self.STATUSES[c].name: int(k)
                for c, k in zip(codes.tolist(), numbers.tolist())}

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(problems={len(self)}, params={self.x.shape[1]}, "
                f"success={int(np.count_nonzero(self.success))}, statuses={self.counts()}"
                f"{', interrupted' if self.interrupted else ''})")


def per_problem_array(a: Any, name: str) -> np.ndarray:
    """``a`` as a float64 array of shape ``(N,)`` or ``(N, d)`` (one row per problem),
    or a TypeError/ValueError naming ``name``."""
    try:
        arr = np.asarray(a, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of real numbers; got "
                        f"{type(a).__name__}") from None
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (N,) or (N, d): one row per problem; "
                         f"got shape {arr.shape}")
    return arr


_REMOTE: OrderedDict[str, CompiledFunction] = OrderedDict()
_REMOTE_LOCK = threading.Lock()


def remote_function(program: Any, token: str) -> CompiledFunction:
    """The compiled function of ``program`` in this process, made once per ``token``
    (a worker receives the same program with every chunk of a batch)."""
    with _REMOTE_LOCK:
        function = _REMOTE.get(token)
        if function is not None:
            _REMOTE.move_to_end(token)
            return function
    function = compile_program(program, "llvm" if available() else "auto")
    with _REMOTE_LOCK:
        _REMOTE[token] = function
        if len(_REMOTE) > MAX_REMOTE_MODELS:
            _REMOTE.popitem(last=False)
    return function
