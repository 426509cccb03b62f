"""Flat oracles ``x -> (f, g)`` from the kinds of objectives: Value graphs, compiled, traced.

Solvers work on float64 vectors; these adapters are where ``Value`` parameters meet
them. :func:`value_oracle` rebuilds the graph and runs ``backward()`` at every call (the
eager path); :class:`BoundOracle` runs a compiled function's bound native call on fixed
float64 buffers; :class:`TracedOracle` traces a Python objective with guards on its
branches (re-traced where they change), as ``sa.value_and_grad`` does, with runtime
inputs read by closure. Compiling is cached at two levels: :func:`compiled_graph`
remembers the compiled function of a ``Value`` loss graph passed again (while its
constant leaves are unchanged), and :func:`compiled_program` the compiled function,
with its bound buffers, of every program a traced objective gives.

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
import numbers
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from scalar_autograd.graph import gc_paused, topological_order
from scalar_autograd.optim.equations import FloatArray
from scalar_autograd.optim.line_search import FunAndGrad
from scalar_autograd.runtime.jit import MAX_SPECIALIZATIONS
from scalar_autograd.tracing import tracing
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
    """A flat oracle over a Python objective ``objective(params) -> Value``, traced here.

    ``objective`` is called with fresh leaf Values (one per param, holding ``x``) under
    :func:`scalar_autograd.tracing.tracing`, as ``sa.value_and_grad`` traces a
    function: its Python branches on those leaves and on ``inputs`` become guards,
    compiled into the same native function as the loss and its gradient and checked at
    every evaluation; a changed branch is traced again at that point. The leaf Values
    in ``inputs`` (data the objective reads by closure, such as a target) are traced as
    runtime inputs, read once when the oracle is made: new data gives the same program.

    The oracle is made afresh for every solve, and the first evaluation traces the
    objective at the start point, so it always sees the current state of whatever it
    reads. What is reused across solves is everything after the trace: a traced
    program equal to one seen before (same structure, same constants bit for bit) gets
    the same compiled function and the same bound buffers (:func:`compiled_program`),
    so re-solving with new ``inputs`` costs one trace and no compilation.

    It has :class:`BoundOracle`'s buffers; ``call`` is a Python callable (the
    first-order loop then steps in Python, one native call per step).

    Raises (when called):
        ValueError: ``objective`` computed the loss from the ``params`` it closes over
            instead of from its argument (their values would be frozen constants).
        TypeError: ``objective`` returned something other than a scalar Value or float.
        scalar_autograd.ConcretizationError: ``float()``/``math.*`` of a traced value.
        scalar_autograd.SpecializationLimitError: more than ``max_specializations``
            branch patterns in one solve.
    """

    def __init__(self, objective: Callable[[list[Value]], Value], params: Sequence[Value],
                 *, inputs: Sequence[Value] = (), max_specializations: int = MAX_SPECIALIZATIONS,
                 backend: str = "auto") -> None:
        n = len(params)
        self.x = np.zeros(n)
        self.grad = np.zeros(n)
        self.value = np.zeros(1)
        self.input_leaves = list(inputs)
        self.inputs = np.array([u.data for u in self.input_leaves], dtype=np.float64)
        self.objective = objective
        self.name = getattr(objective, "__name__", "objective")
        self.max_specializations = max_specializations
        self.backend = backend
        self._outer = {id(p) for p in params}
        self._specs: list[_TracedSpecialization] = []   # this solve's, most recent first
        self.current: Any = None
        """The compiled function of the specialisation that evaluated the last point."""
        self.call = self._evaluate

    @property
    def n_specializations(self) -> int:
        """The branch patterns traced in this solve."""
        return len(self._specs)

    def _evaluate(self) -> None:
        """Evaluate at ``self.x`` with a specialisation whose guards hold there (traced
        anew if none does); it becomes ``current``."""
        specs = self._specs
        for i, spec in enumerate(specs):
            if spec.run(self.x, self.inputs):
                if i:
                    specs.insert(0, specs.pop(i))
                spec.read(self.value, self.grad)
                self.current = spec.compiled
                return
        spec = self._specialize()
        spec.run(self.x, self.inputs)  # traced at x: used at x (its guards hold up to rounding)
        spec.read(self.value, self.grad)
        self.current = spec.compiled

    def _specialize(self) -> _TracedSpecialization:
        """Trace the objective at ``x`` and add its specialisation (or find it again)."""
        from scalar_autograd.ir.trace import trace as trace_program
        from scalar_autograd.runtime.jit import (
            _distinct,
            guard_indicator,
            specialization_limit_error,
        )

        leaves = [Value(float(v), requires_grad=True) for v in self.x.tolist()]
        with gc_paused(), tracing(leaves + self.input_leaves) as t:
            out = self.objective(leaves)
            if isinstance(out, numbers.Real) and not isinstance(out, (bool, Value)):
                out = Value(float(out))
            if not isinstance(out, Value):
                raise TypeError(f"`{self.name}` must return a Value (a scalar loss) or a "
                                f"float; got {type(out).__name__} {out!r:.60}")
        if _reaches(out, self._outer):
            raise ValueError(
                f"`{self.name}` must compute the loss from the list it is given: it was "
                f"called with traced copies of the params, and its result reaches the "
                f"params themselves (captured from outside), whose values would be "
                f"frozen into the compiled code")
        guards = _distinct(t.guards)
        pattern = [(g.site, g.taken) for g in guards]
        ok = guard_indicator(guards)
        outputs = [out] if ok is None else [out, ok]
        with gc_paused():
            program, _ = trace_program(outputs, leaves, self.input_leaves)
        compiled = compiled_program(program, self.backend, n_aux=len(outputs) - 1,
                                    params=leaves, inputs=self.input_leaves)
        for spec in self._specs:
            if spec.compiled is compiled:  # the guards disagreed by rounding only
                return spec
        if len(self._specs) >= self.max_specializations:
            raise specialization_limit_error(
                self.name, self.max_specializations,
                [s.pattern for s in self._specs] + [pattern],
                remedy="or raise minimize's max_specializations")
        spec = _TracedSpecialization(compiled, pattern, guarded=ok is not None)
        self._specs.insert(0, spec)
        return spec

    def __call__(self, x: FloatArray) -> tuple[float, FloatArray]:
        if x is not self.x:
            self.x[:] = x
        self.call()
        return float(self.value[0]), self.grad


class _TracedSpecialization:
    """One branch pattern of a :class:`TracedOracle`: a compiled function (value,
    gradient and, when guarded, the guards' indicator as one more output)."""

    __slots__ = ("compiled", "pattern", "guarded", "n")

    def __init__(self, compiled: Any, pattern: list[tuple[str, bool]], guarded: bool) -> None:
        self.compiled = compiled
        self.pattern = pattern
        self.guarded = guarded
        self.n = compiled.n_params

    def run(self, x: FloatArray, u: FloatArray) -> bool:
        """Evaluate at ``x`` (inputs ``u``) in this thread's buffers; whether the
        guards hold there (the buffers are loaded on every call: a nested solve in a
        callback may have used them)."""
        b = self.compiled._buffers(True)
        b.x[:] = x
        if u.size:
            b.u[:] = u
        b.call()
        return not self.guarded or b.val.item(1) == 1.0

    def read(self, value: FloatArray, grad: FloatArray) -> None:
        b = self.compiled._buffers(True)
        value[0] = b.val.item(0)
        grad[:] = b.der[: self.n]


# Compiled functions by program, so that a function objective traced again (every solve
# traces it at its start point) finds the compiled function, and the buffers bound to
# it in each thread, of the last solve that traced the same program. Keyed by the kernel
# cache's entry (one per program structure and backend), held here with its function.
_PROGRAMS: OrderedDict[int, Any] = OrderedDict()
_PROGRAMS_SIZE = 64
_PROGRAMS_LOCK = threading.Lock()


def compiled_program(program: Any, backend: str, *, n_aux: int, params: Sequence[Value],
                     inputs: Sequence[Value]) -> Any:
    """The compiled function of a traced ``program`` (with ``n_aux`` auxiliary outputs),
    the same object for the same program while it is among the last 64 used."""
    from scalar_autograd.runtime.compiled import CompiledFunction, _entry_for

    entry = _entry_for(program, backend, n_aux=n_aux)
    key = id(entry)
    with _PROGRAMS_LOCK:
        compiled = _PROGRAMS.get(key)
        if compiled is not None and compiled._entry is entry:
            _PROGRAMS.move_to_end(key)
            return compiled
    compiled = CompiledFunction(entry, params, inputs, requested_backend=backend)
    with _PROGRAMS_LOCK:
        _PROGRAMS[key] = compiled
        _PROGRAMS.move_to_end(key)
        while len(_PROGRAMS) > _PROGRAMS_SIZE:
            _PROGRAMS.popitem(last=False)
    return compiled


# ---------------------------------------------------------------------------- Value graphs
class _GraphEntry:
    """A compiled loss graph and what it was compiled from: the root (weakly), the
    leaves frozen into it as constants and their values then (bit patterns)."""

    __slots__ = ("root", "function", "constants", "bits")

    def __init__(self, root: weakref.ref[Value], function: Any, constants: list[Value]) -> None:
        self.root = root
        self.function = function
        self.constants = constants
        self.bits = _bits(constants)

    def holds(self, loss: Value) -> bool:
        """Whether the entry still compiles ``loss``: the same root object, and every
        constant leaf still holds the value it was compiled with."""
        return self.root() is loss and np.array_equal(_bits(self.constants), self.bits)


def _bits(leaves: list[Value]) -> np.ndarray:
    return np.array([v.data for v in leaves], dtype=np.float64).view(np.int64)


_GRAPHS: OrderedDict[tuple[Any, ...], _GraphEntry] = OrderedDict()
_GRAPHS_SIZE = 32
_GRAPHS_LOCK = threading.Lock()


def compiled_graph(loss: Value, params: Sequence[Value], inputs: Sequence[Value] = (), *,
                   backend: str = "auto") -> Any:
    """``sa.compile(loss, params, inputs)``, reused when the same graph comes again.

    The last 32 graphs are remembered by the identity of their root ``Value``, params
    and inputs and by the backend. A graph never changes shape once built, but its
    leaves' ``.data`` can: params and inputs are read at every call, and every other
    leaf is a constant compiled in, so the compiled function is reused only while each
    constant leaf still holds the value it was compiled with (compared bit for bit);
    otherwise the graph is compiled again (a new value gives a new program; the kernel
    cache still serves any program seen before). An entry goes when its root is freed.

    Example:
        >>> import scalar_autograd as sa
        >>> w = sa.Value(1.0); c = sa.Value(3.0)
        >>> loss = (w - c) ** 2
        >>> compiled_graph(loss, [w]) is compiled_graph(loss, [w])
        True
        >>> c.data = 4.0                         # a constant changed: compiled again
        >>> compiled_graph(loss, [w]).value_and_grad([0.0])[0]
        16.0
    """
    from scalar_autograd.runtime import compile as jit_compile

    key = (id(loss), tuple(map(id, params)), tuple(map(id, inputs)), backend)
    with _GRAPHS_LOCK:
        entry = _GRAPHS.get(key)
    if entry is not None and entry.holds(loss):
        with _GRAPHS_LOCK:
            if key in _GRAPHS:
                _GRAPHS.move_to_end(key)
        return entry.function
    function = jit_compile(loss, list(params), list(inputs), backend=backend)
    runtime = {id(v) for v in params} | {id(v) for v in inputs}
    with gc_paused():
        constants = [v for v in topological_order(loss)
                     if v.op is None and id(v) not in runtime]

    def forget(_: Any, key: tuple[Any, ...] = key) -> None:
        with _GRAPHS_LOCK:
            current = _GRAPHS.get(key)
            if current is not None and current.root() is None:
                del _GRAPHS[key]

    entry = _GraphEntry(weakref.ref(loss, forget), function, constants)
    with _GRAPHS_LOCK:
        _GRAPHS[key] = entry
        _GRAPHS.move_to_end(key)
        while len(_GRAPHS) > _GRAPHS_SIZE:
            _GRAPHS.popitem(last=False)
    return function


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
