"""Flat oracles ``x -> (f, g)`` from the kinds of objectives: Value graphs, compiled, traced.

Solvers work on float64 vectors; these adapters are where ``Value`` parameters meet
them. :func:`value_oracle` rebuilds the graph and runs ``backward()`` at every call (the
eager path); :class:`BoundOracle` runs a compiled function's bound native call on fixed
float64 buffers; :class:`TracedOracle` calls ``sa.value_and_grad`` of a Python
objective, whose branches are guarded and re-traced where they change.

Example:
    >>> import numpy as np
    >>> import scalar_autograd as sa
    >>> p = [sa.Value(0.0, requires_grad=True)]
    >>> fg = value_oracle(p, lambda ps: (ps[0] - 3.0) * (ps[0] - 3.0))
    >>> fg(np.array([1.0]))
    (4.0, array([-4.]))
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from scalar_autograd.optim.equations import FloatArray
from scalar_autograd.optim.line_search import FunAndGrad
from scalar_autograd.runtime.jit import MAX_SPECIALIZATIONS
from scalar_autograd.value import Value


def is_compiled_function(obj: Any) -> bool:
    """True for a compiled function from ``sa.compile`` (anything with ``value_and_grad``)."""
    return not isinstance(obj, Value) and callable(getattr(obj, "value_and_grad", None))


def value_oracle(
    params: Sequence[Value], objective: Callable[[list[Value]], Value]
) -> FunAndGrad:
    """An oracle that writes ``x`` into ``params[i].data``, calls ``objective(params)``
    and back-propagates. It leaves the parameters at the last evaluated point.

    Raises (when called):
        TypeError: if ``objective`` does not return a ``Value``.
    """
    plist = list(params)
    n = len(plist)

    def fun_and_grad(x: FloatArray) -> tuple[float, FloatArray]:
        for p, xi in zip(plist, x.tolist()):
            p.data = xi
            p.grad = 0.0
        out = objective(plist)
        if not isinstance(out, Value):
            raise TypeError(
                f"`objective` must return a Value built from the params; "
                f"got {type(out).__name__} {out!r}"
            )
        if out.requires_grad:
            out.backward()
        return out.data, np.fromiter((p.grad for p in plist), dtype=np.float64, count=n)

    return fun_and_grad


def check_compiled(function: Any, params: Sequence[Value]) -> None:
    """Check that a compiled function is a scalar function of exactly ``params``.

    Raises:
        ValueError: if it has another number of params, other param leaves, or more
            than one output.
    """
    n = len(params)
    n_params = getattr(function, "n_params", n)
    if n_params != n:
        raise ValueError(
            f"the compiled objective takes {n_params} params; `params` holds {n}"
        )
    compiled_params = tuple(getattr(function, "params", ()) or ())
    if compiled_params and any(a is not b for a, b in zip(compiled_params, params)):
        raise ValueError(
            "`params` must be the compiled objective's params, in the same order"
        )
    n_outputs = getattr(function, "n_outputs", 1)
    if n_outputs != 1:
        raise ValueError(
            f"the compiled objective must have one output (a scalar loss); it has {n_outputs}"
        )


def input_values(function: Any, inputs: Any) -> FloatArray:
    """The runtime input vector of a compiled function: ``inputs`` (numbers), or the
    current ``.data`` of its input leaves when ``inputs`` is ``None`` or empty."""
    n_inputs = int(getattr(function, "n_inputs", 0))
    if inputs is None or (not isinstance(inputs, np.ndarray) and len(inputs) == 0):
        leaves = getattr(function, "inputs", ())
        return np.array([v.data for v in leaves] if leaves else np.zeros(n_inputs),
                        dtype=np.float64)
    items = [v.data if isinstance(v, Value) else v for v in inputs]
    try:
        u = np.array(items, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"`inputs` must be a sequence of numbers; got {inputs!r:.80}") from None
    if u.size != n_inputs:
        raise ValueError(f"`inputs` must hold {n_inputs} values; got {u.size}")
    return u


class BoundOracle:
    """A flat oracle over a compiled function's zero-argument bound call.

    ``x``, ``grad``, ``value`` and ``inputs`` are the buffers bound to ``call``; calling
    the oracle copies its argument into ``x`` (unless it *is* ``x``), runs the native
    code and returns ``(value, grad)``, where ``grad`` is overwritten by the next call.
    """

    def __init__(self, function: Any, n: int, inputs: Any = None) -> None:
        self.x: FloatArray = np.zeros(n)
        self.grad: FloatArray = np.zeros(n)
        self.value: FloatArray = np.zeros(1)
        self.inputs: FloatArray = input_values(function, inputs)
        bound_inputs = self.inputs if self.inputs.size else None
        self.call = function.bind(self.x, self.grad, inputs=bound_inputs, value=self.value)

    def __call__(self, x: FloatArray) -> tuple[float, FloatArray]:
        if x is not self.x:
            self.x[:] = x
        self.call()
        return float(self.value[0]), self.grad


class TracedOracle(BoundOracle):
    """A flat oracle over ``sa.value_and_grad`` of ``objective(params) -> Value``.

    ``objective`` is traced on fresh leaf Values (one per param, holding ``x``) and
    compiled with its Python branches as guards (:class:`scalar_autograd.Traced`): at
    every ``x`` the guards are checked in the same native call, and a changed branch
    is traced again, so the oracle follows ``if``/``while``/``min``/``max`` on the
    params. It has :class:`BoundOracle`'s buffers; ``call`` is a Python callable (the
    first-order loop then steps in Python, one native call per step).

    Raises (when called):
        ValueError: ``objective`` computed the loss from the ``params`` it closes over
            instead of from its argument (their values would be frozen constants).
        TypeError: ``objective`` returned something other than a scalar Value or float.
        scalar_autograd.ConcretizationError: ``float()``/``math.*`` of a traced value.
        scalar_autograd.SpecializationLimitError: more than ``max_specializations``
            branch patterns.
    """

    def __init__(self, objective: Callable[[list[Value]], Value], params: Sequence[Value],
                 *, max_specializations: int = MAX_SPECIALIZATIONS, backend: str = "auto") -> None:
        from scalar_autograd.runtime.jit import value_and_grad

        n = len(params)
        self.x = np.zeros(n)
        self.grad = np.zeros(n)
        self.value = np.zeros(1)
        self.inputs = np.zeros(0)
        outer = {id(p) for p in params}
        name = getattr(objective, "__name__", "objective")

        def traced(leaves: list[Value]) -> Any:
            out = objective(leaves)
            if isinstance(out, Value) and _reaches(out, outer):
                raise ValueError(
                    f"`{name}` must compute the loss from the list it is given: it was "
                    f"called with traced copies of the params, and its result reaches "
                    f"the params themselves (captured from outside), whose values would "
                    f"be frozen into the compiled code")
            return out

        traced.__name__ = name
        traced.__qualname__ = getattr(objective, "__qualname__", name)
        self.function = value_and_grad(traced, max_specializations=max_specializations,
                                       backend=backend)

        def call() -> None:
            f, g = self.function(self.x)
            self.value[0] = f
            self.grad[:] = g

        self.call = call

    def __call__(self, x: FloatArray) -> tuple[float, FloatArray]:
        if x is not self.x:
            self.x[:] = x
        self.call()
        return float(self.value[0]), self.grad


def _reaches(out: Value, targets: set[int]) -> bool:
    """Whether the graph of ``out`` contains a Value whose id is in ``targets``."""
    seen: set[int] = set()
    stack = [out]
    while stack:
        node = stack.pop()
        if id(node) in targets:
            return True
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(node.args)
    return False


# Binding a compiled function (fixing its buffer addresses) has a cost of its own, so
# bound oracles are pooled per thread. The pool is keyed on the compiled function's
# program object (the JIT hands the same program to every compile of a structurally
# identical graph) and backend, so solving a freshly compiled copy of the same loss
# binds nothing new; an entry goes away with its program.
_POOL: weakref.WeakKeyDictionary[Any, dict[tuple[Any, int], list[BoundOracle]]] = (
    weakref.WeakKeyDictionary()
)
_POOL_LOCK = threading.Lock()


@contextlib.contextmanager
def bound_oracle(function: Any, n: int, inputs: Any = None) -> Iterator[BoundOracle]:
    """A :class:`BoundOracle` of ``function`` for the duration of a ``with`` block.

    Oracles are reused across calls on the same compiled program in the same thread
    (a nested use in that thread gets a fresh one), so repeated solves bind once.
    """
    free: list[BoundOracle] | None
    oracle: BoundOracle | None = None
    owner = getattr(function, "program", None)
    if owner is None:
        owner = function
    key = (getattr(function, "backend", None), threading.get_ident())
    with _POOL_LOCK:
        try:
            free = _POOL.setdefault(owner, {}).setdefault(key, [])
        except TypeError:  # not weak-referenceable: no pooling
            free = None
        if free:
            oracle = free.pop()
    if oracle is None or oracle.x.size != n or oracle.inputs.size != _n_inputs(function):
        oracle = BoundOracle(function, n, inputs)
    else:
        oracle.inputs[:] = input_values(function, inputs)
    try:
        yield oracle
    finally:
        if free is not None:
            with _POOL_LOCK:
                free.append(oracle)


def _n_inputs(function: Any) -> int:
    return int(getattr(function, "n_inputs", 0))
