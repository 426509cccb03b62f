"""``sa.jit`` and the JAX-style transforms: trace Python functions, guard their branches.

A jitted function is traced on concrete values: each array argument reaches ``fn`` as
a list of ``Value`` leaves, each float as one leaf. Every ``bool()`` of a value that
depends on them (``if``, ``while``, ``and``/``or``/``not``, builtin ``min``/``max``) is
a *guard*: its predicate is compiled into the same native function as the outputs and
checked on every call. When a guard fails, the function is traced again at the new
point and the new *specialisation* is cached beside the old ones; a function may hold
``max_specializations`` of them per argument signature, after which
:class:`SpecializationLimitError` names the branch sites. A value that must stay a
branch belongs in ``sa.where``, which compiles to a select and never re-traces.

Example:
    >>> import scalar_autograd as sa
    >>> f = sa.jit(lambda x: x * 2 if x > 0 else -x)
    >>> f(1.0), f(-3.0)
    (2.0, 3.0)
    >>> f.n_specializations
    2
    >>> df = sa.grad(lambda v: v[0] * v[1] + sa.sin(v[0]))
    >>> df([0.0, 2.0]).tolist()
    [3.0, 0.0]
    >>> sa.hessian(lambda v: v[0] * v[0] * v[1])([1.0, 2.0]).tolist()
    [[4.0, 2.0], [2.0, 0.0]]
"""

from __future__ import annotations

import functools
import inspect
import numbers
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.graph import gc_paused
from scalar_autograd.ir.trace import trace as trace_program
from scalar_autograd.runtime.compiled import (
    _LOCAL_NAMES,
    CompiledFunction,
    _Buffers,
    _entry_for,
    _kind,
)
from scalar_autograd.tracing import Guard, active_trace, tracing
from scalar_autograd.value import Value

_F64 = np.dtype(np.float64)
_VALUES, _GRAD, _VALUE_AND_GRAD, _JACOBIAN = "jit", "grad", "value_and_grad", "jacobian"
_HESSIAN, _HVP = "hessian", "hvp"
_SCALAR_KINDS = (_GRAD, _VALUE_AND_GRAD, _HESSIAN, _HVP)
"""The transforms that need ``fn`` to return one scalar."""


def _kernel_kind(kind: str) -> bool | str:
    """The compiled kernel a transform runs (see ``CompiledFunction._buffers``)."""
    if kind == _VALUES:
        return False
    if kind in (_HESSIAN, _HVP):
        return kind
    return True


MAX_SPECIALIZATIONS = 8
"""Default number of branch patterns compiled per argument signature (every entry point
that traces a Python function with guards uses it)."""


class SpecializationLimitError(RuntimeError):
    """A jitted function took more branch patterns than ``max_specializations``."""


# --------------------------------------------------------------------------- arguments


def _dynamic_array(a: Any, where: str) -> np.ndarray | float:
    """A float (scalar argument) or a 1-D float64 array; TypeError/ValueError otherwise."""
    if type(a) is float:
        return a
    if isinstance(a, np.ndarray):
        if a.dtype.kind not in "fiu":
            raise TypeError(f"{where} must hold real numbers; got an array of dtype "
                            f"{a.dtype}")
        if a.ndim == 0:
            return float(a)
        if a.ndim != 1:
            raise ValueError(f"{where} must be a float or a 1-D array; got shape {a.shape}")
        return a if a.dtype == _F64 else a.astype(np.float64)
    if isinstance(a, numbers.Real) and not isinstance(a, Value):
        try:
            return float(a)
        except OverflowError:
            raise ValueError(f"{where} is too large for a float; got {a!r:.40}") from None
    if isinstance(a, (list, tuple)):
        for k, item in enumerate(a):
            if isinstance(item, Value):
                raise TypeError(f"{where}[{k}] is a Value: pass numbers to a jitted "
                                f"function (Values are traced for you)")
            if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Real):
                raise TypeError(f"{where}[{k}] must be a real number; got "
                                f"{type(item).__name__} {item!r:.40}")
        try:
            return np.array(a, dtype=np.float64)
        except OverflowError:
            raise ValueError(f"{where} holds a number too large for a float") from None
    if isinstance(a, Value):
        raise TypeError(f"{where} is a Value: pass numbers to a jitted function (call fn "
                        f"directly to build a graph eagerly)")
    raise TypeError(f"{where} must be a float or a 1-D array of floats; got "
                    f"{type(a).__name__} {a!r:.40}")


def _has_values(a: Any) -> bool:
    return isinstance(a, Value) or (isinstance(a, (list, tuple)) and
                                    any(isinstance(v, Value) for v in a))


class _Layout:
    """Where each dynamic argument's numbers go: the params or the inputs vector."""

    __slots__ = ("sizes", "params", "inputs", "slots", "n_params", "n_inputs", "whole")

    def __init__(self, sizes: tuple[int | None, ...], diff: tuple[int, ...]) -> None:
        self.sizes = sizes  # per dynamic argument: None for a float, n for an array
        self.params = diff
        self.inputs = tuple(k for k in range(len(sizes)) if k not in diff)
        self.slots: dict[int, tuple[bool, int, int]] = {}  # arg -> (is_param, lo, hi)
        for target, order in ((True, self.params), (False, self.inputs)):
            lo = 0
            for k in order:
                n = sizes[k]
                hi = lo + (1 if n is None else n)
                self.slots[k] = (target, lo, hi)
                lo = hi
            if target:
                self.n_params = lo
            else:
                self.n_inputs = lo
        # the gradient is der[:whole] when the params are one array argument
        self.whole = sizes[diff[0]] if len(diff) == 1 and sizes[diff[0]] is not None \
            else None

    def load(self, values: Sequence[Any], x: np.ndarray, u: np.ndarray) -> None:
        slots = self.slots
        for k, a in enumerate(values):
            is_param, lo, hi = slots[k]
            buf = x if is_param else u
            if self.sizes[k] is None:
                buf[lo] = a
            else:
                buf[lo:hi] = a

    def split(self, x: np.ndarray, u: np.ndarray) -> list[Any]:
        """The dynamic arguments back from the two vectors (floats and arrays)."""
        out: list[Any] = []
        for k, n in enumerate(self.sizes):
            is_param, lo, hi = self.slots[k]
            buf = x if is_param else u
            out.append(float(buf[lo]) if n is None else np.array(buf[lo:hi]))
        return out


class _Fast:
    """The last call's signature, layout and specialisation (for the hot path)."""

    __slots__ = ("key", "sizes", "shape", "layout", "local", "buffer", "single", "guard",
                 "finish")

    def __init__(self, key: Any, sizes: tuple[tuple[int] | None, ...], spec: _Specialization,
                 layout: _Layout, deriv: bool | str, owner: Traced) -> None:
        self.key = key
        self.sizes = sizes
        self.shape = sizes[0] if sizes else None
        self.layout = layout
        self.local = spec.compiled._local       # this thread's buffers live here
        self.buffer = _LOCAL_NAMES[_kind(deriv)]
        # one array argument that is the whole params vector: load it with one copy
        self.single = len(sizes) == 1 and sizes[0] is not None and layout.params == (0,)
        self.guard = spec.n_out if spec.guarded else -1
        kind = owner.kind
        whole = layout.whole is not None and not owner._tuple_argnums
        if kind == _VALUE_AND_GRAD and whole:
            self.finish: Callable[[_Buffers], Any] = _value_and_whole_grad
        elif kind == _GRAD and whole:
            self.finish = _whole_grad
        elif kind == _VALUES and spec.scalar_out:
            self.finish = _scalar_value
        elif kind == _HESSIAN and whole:
            self.finish = functools.partial(_whole_hessian, n=layout.n_params)
        else:
            self.finish = functools.partial(owner._result, spec, layout=layout)


def _value_and_whole_grad(b: _Buffers) -> tuple[float, np.ndarray]:
    return b.val.item(0), b.der.copy()


def _whole_grad(b: _Buffers) -> np.ndarray:
    return b.der.copy()


def _scalar_value(b: _Buffers) -> float:
    return b.val.item(0)


def _whole_hessian(b: _Buffers, n: int) -> np.ndarray:
    return b.der[n:].reshape(n, n).copy()


# --------------------------------------------------------------------------- a specialisation


class _Specialization:
    """One traced branch pattern: its compiled function and the guards it checks."""

    def __init__(self, compiled: CompiledFunction, guards: list[Guard], n_out: int,
                 scalar_out: bool, key: Any) -> None:
        self.compiled = compiled
        self.guards = [(g.site, g.taken) for g in guards]
        self.guarded = bool(guards)
        self.n_out = n_out
        self.scalar_out = scalar_out
        self.key = key
        self.fast: dict[str, _Fast] = {}   # the hot-path forms, by buffer kind

    def buffers(self, deriv: bool | str) -> _Buffers:
        return self.compiled._buffers(deriv)

    def holds(self, b: _Buffers) -> bool:
        return not self.guarded or b.val.item(self.n_out) == 1.0


class Traced:
    """A traced and compiled Python function (made by ``sa.jit``, ``sa.grad``, ...).

    Call it like the function, with floats and 1-D float arrays (and the static
    arguments). ``batch(*args)`` evaluates many points at once: each dynamic argument
    gets a leading batch axis, and rows that take different branches are each
    evaluated by their own specialisation.

    Attributes:
        fn: the Python function.
        static_argnums: positions of the arguments hashed into the cache key.
        max_specializations: branch patterns allowed per argument signature.
        n_specializations: specialisations compiled so far (all signatures).
    """

    fn: Callable[..., Any]
    kind: str
    backend: str
    max_specializations: int
    _lock: threading.Lock

    def __init__(self, fn: Callable[..., Any], kind: str, argnums: int | Sequence[int],
                 static_argnums: int | Sequence[int], max_specializations: int,
                 backend: str) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__} {fn!r:.40}")
        self.fn = fn
        self.kind = kind
        self._tuple_argnums = not isinstance(argnums, numbers.Integral)
        self.argnums = _int_tuple(argnums, "argnums")
        self.static_argnums = _int_tuple(static_argnums, "static_argnums")
        for k in self.argnums:
            if k in self.static_argnums:
                raise ValueError(f"argnums and static_argnums share argument {k}: a "
                                 f"differentiated argument cannot be static")
        if kind != _VALUES and not self.argnums:
            raise ValueError("argnums must name at least one argument; got ()")
        if kind == _HVP and self._tuple_argnums:
            raise TypeError(f"argnums of sa.hvp must be one int (the argument v is a "
                            f"direction for); got {argnums!r}")
        if isinstance(max_specializations, bool) or not isinstance(
                max_specializations, numbers.Integral) or max_specializations < 1:
            raise ValueError(f"max_specializations must be a positive integer; got "
                             f"{max_specializations!r}")
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str; got {type(backend).__name__}")
        from scalar_autograd.backends import get_backend

        get_backend(backend)  # fail fast on a bad name
        _check_positions(fn, self.argnums if kind != _VALUES else (), self.static_argnums)
        self.max_specializations = int(max_specializations)
        self.backend = backend
        self._cache: dict[Any, list[_Specialization]] = {}
        self._layouts: dict[Any, _Layout] = {}
        self._lock = threading.Lock()
        self._signature: inspect.Signature | None = None
        self._fast: _Fast | None = None
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ introspection
    @property
    def n_specializations(self) -> int:
        """How many specialisations have been compiled (over every signature)."""
        return sum(len(v) for v in self._cache.values())

    def specializations(self, *args: Any) -> list[CompiledFunction]:
        """The compiled functions cached for these arguments' signature (may be [])."""
        key, _ = self._key(args)
        return [s.compiled for s in self._cache.get(key, [])]

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", "fn")
        return (f"<sa.{self.kind} of {name}: {self.n_specializations} specialisation(s), "
                f"backend={self.backend!r}>")

    # ------------------------------------------------------------------ arguments
    def _positional(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The arguments by position, keywords moved into place (as fn's signature).

        Parameters left to their defaults are not passed (fn applies them itself), as
        with ``jax.jit``; a default is filled in only for a gap before a keyword.
        """
        if not kwargs:
            return args
        if self.kind == _HVP:  # the direction v is the last positional argument
            if not args:
                raise TypeError("an sa.hvp function takes fn's arguments, then the "
                                "direction v (positional); got keywords only")
            return self._bind(args[:-1], kwargs) + args[-1:]
        return self._bind(args, kwargs)

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        if self._signature is None:
            try:
                self._signature = inspect.signature(self.fn)
            except (TypeError, ValueError):  # a builtin without a signature
                raise TypeError(f"sa.{self.kind} of this callable takes positional "
                                f"arguments only; got {sorted(kwargs)}") from None
        bound = self._signature.bind(*args, **kwargs)
        out: list[Any] = []
        gap: list[Any] = []
        for name, param in self._signature.parameters.items():
            if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                if name in bound.arguments and param.kind == param.VAR_POSITIONAL:
                    out += gap + list(bound.arguments[name])
                    gap = []
                continue
            if name in bound.arguments:
                out += gap + [bound.arguments[name]]
                gap = []
            else:
                gap.append(param.default)
        extra = [k for k, p in self._signature.parameters.items()
                 if p.kind == p.KEYWORD_ONLY and k in bound.arguments]
        if extra:
            raise TypeError(f"keyword-only arguments are not supported by sa.{self.kind}; "
                            f"got {extra}")
        return tuple(out)

    def _key(self, args: tuple[Any, ...]) -> tuple[Any, list[Any]]:
        """The cache key (statics, shapes) and the dynamic arguments, validated.

        For ``sa.hvp`` the last argument is the direction ``v``: a dynamic argument
        that is never passed to ``fn`` (the kernel reads it after the inputs).
        """
        if self.kind == _HVP:
            if not args:
                raise TypeError("an sa.hvp function takes fn's arguments, then the "
                                "direction v; got no arguments")
            key, dynamic = self._fn_key(args[:-1])
            n, statics, sizes = key
            v = _dynamic_array(args[-1], "v (the direction, the last argument)")
            size = None if isinstance(v, float) else v.shape[0]
            static = {k for k, _ in statics}
            position = [k for k in range(n) if k not in static].index(self.argnums[0] % n)
            expected = sizes[position]
            if size != expected:
                shape = "a float" if expected is None else f"an array of length {expected}"
                got = "a float" if size is None else f"an array of length {size}"
                raise ValueError(f"v (the direction, the last argument) must have the shape "
                                 f"of argument {self.argnums[0]}: {shape}; got {got}")
            # n stays fn's: the layout makes v the last runtime input, _trace skips it
            return (n, statics, (*sizes, size)), [*dynamic, v]
        return self._fn_key(args)

    def _fn_key(self, args: tuple[Any, ...]) -> tuple[Any, list[Any]]:
        n = len(args)
        if self.kind != _VALUES:
            for k in self.argnums:
                if k >= n or k < -n:
                    raise ValueError(f"argument {k} is named in argnums but the call "
                                     f"passed {n} argument(s)")
        statics = []
        dynamic = []
        # a static argument the call leaves to its default is fn's own business
        static = {k % n for k in self.static_argnums if -n <= k < n}
        for k, a in enumerate(args):
            if k in static:
                try:
                    hash(a)
                except TypeError:
                    raise TypeError(f"static argument {k} must be hashable (it is part of "
                                    f"the cache key); got {type(a).__name__}") from None
                statics.append((k, a))
            else:
                dynamic.append(_dynamic_array(a, f"argument {k}"))
        sizes = tuple(None if isinstance(a, float) else a.shape[0] for a in dynamic)
        return (n, tuple(statics), sizes), dynamic

    def _layout(self, key: Any) -> _Layout:
        layout = self._layouts.get(key)
        if layout is None:
            n, statics, sizes = key
            static = {k for k, _ in statics}
            dyn_index = {k: j for j, k in enumerate(kk for kk in range(n) if kk not in static)}
            diff = tuple(dyn_index[k % n] for k in self.argnums) if self.kind != _VALUES \
                else tuple(range(len(sizes)))
            if len(set(diff)) != len(diff):
                raise ValueError(f"argnums must be distinct; got {self.argnums}")
            layout = _Layout(sizes, diff)
            self._layouts[key] = layout
        return layout

    # ------------------------------------------------------------------ tracing
    def _trace(self, key: Any, layout: _Layout, args: tuple[Any, ...],
               dynamic: list[Any]) -> _Specialization:
        n, statics, sizes = key
        static = dict(statics)
        leaves: list[list[Value]] = []
        call_args: list[Any] = []
        j = 0
        for k in range(n):
            if k in static:
                call_args.append(args[k])
                continue
            a = dynamic[j]
            if sizes[j] is None:
                v = Value(a, requires_grad=True)
                leaves.append([v])
                call_args.append(v)
            else:
                vs = [Value(float(t), requires_grad=True) for t in a]
                leaves.append(vs)
                call_args.append(vs)
            j += 1
        flat = [v for group in leaves for v in group]
        with gc_paused(), tracing(flat) as t:
            result = self.fn(*call_args)
            outputs, scalar_out = _outputs(result, self.kind)
        guards = _distinct(t.guards)
        ok = guard_indicator(guards)
        aux: list[Value] = [] if ok is None else [ok]
        params = [v for k in layout.params for v in leaves[k]]
        # (sa.hvp's direction, the last dynamic argument, has no leaves: not fn's)
        inputs = [v for k in layout.inputs if k < len(leaves) for v in leaves[k]]
        with gc_paused():
            program, _ = trace_program(outputs + aux, params, inputs)
        entry = _entry_for(program, self.backend, n_aux=len(aux))
        compiled = CompiledFunction(entry, params, inputs)
        return _Specialization(compiled, guards, len(outputs), scalar_out,
                               (program.key(), len(aux)))

    def _limit_error(self, specs: list[_Specialization]) -> SpecializationLimitError:
        return specialization_limit_error(
            getattr(self.fn, "__name__", "fn"), self.max_specializations,
            [s.guards for s in specs], " for one argument signature")

    def _specialize(self, key: Any, layout: _Layout, args: tuple[Any, ...],
                    dynamic: list[Any]) -> _Specialization:
        with self._lock:
            specs = self._cache.setdefault(key, [])
        # Trace before looking at the limit: another thread may have cached this very
        # pattern since our guard checks, and the trace tells (same program key).
        spec = self._trace(key, layout, args, dynamic)
        with self._lock:
            for existing in specs:
                if existing.key == spec.key:  # the guards disagreed by rounding only
                    return existing
            if len(specs) >= self.max_specializations:
                raise self._limit_error(specs)
            specs.append(spec)
        return spec

    # ------------------------------------------------------------------ calls
    def _run(self, args: tuple[Any, ...], deriv: bool | str
             ) -> tuple[_Specialization, _Buffers, _Layout]:
        key, dynamic = self._key(args)
        layout = self._layout(key)
        specs = self._cache.get(key)
        if specs:
            for i, spec in enumerate(list(specs)):  # a snapshot: others may reorder it
                b = spec.buffers(deriv)
                layout.load(dynamic, b.x, b.u)
                b.call()
                if spec.holds(b):
                    if i:  # the most recent hit goes first
                        with self._lock:
                            if spec in specs:
                                specs.remove(spec)
                                specs.insert(0, spec)
                    self._remember(key, layout, spec, deriv)
                    return spec, b, layout
        spec = self._specialize(key, layout, args, dynamic)
        b = spec.buffers(deriv)
        layout.load(dynamic, b.x, b.u)
        b.call()
        self._remember(key, layout, spec, deriv)
        return spec, b, layout

    def _remember(self, key: Any, layout: _Layout, spec: _Specialization,
                  deriv: bool | str) -> None:
        """Make this signature and specialisation the hot path's (no statics only)."""
        n, statics, sizes = key
        if statics:
            self._fast = None
            return
        name = _LOCAL_NAMES[_kind(deriv)]
        fast = spec.fast.get(name)
        if fast is None:
            fast = _Fast(key, tuple(None if s is None else (s,) for s in sizes), spec, layout,
                         deriv, self)
            spec.fast[name] = fast
        self._fast = fast

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The hot path: the same signature as the last call, floats and float64 arrays
        # only; one native call on this thread's buffers, then one guard check.
        fast = self._fast
        if fast is not None and not kwargs:
            if fast.single:
                if len(args) == 1:
                    a = args[0]
                    if type(a) is np.ndarray and a.dtype is _F64 and a.shape == fast.shape:
                        b = getattr(fast.local, fast.buffer, None)
                        if b is not None:
                            b.x[:] = a
                            b.call()
                            if fast.guard < 0 or b.val.item(fast.guard) == 1.0:
                                return fast.finish(b)
                            return self._switch(fast, args)
            elif len(args) == len(fast.sizes):
                for a, size in zip(args, fast.sizes):
                    if size is None:
                        if type(a) is not float:
                            break
                    elif type(a) is not np.ndarray or a.dtype is not _F64 or a.shape != size:
                        break
                else:
                    b = getattr(fast.local, fast.buffer, None)
                    if b is not None:
                        fast.layout.load(args, b.x, b.u)
                        b.call()
                        if fast.guard < 0 or b.val.item(fast.guard) == 1.0:
                            return fast.finish(b)
                        return self._switch(fast, args)
        return self._call(self._positional(args, kwargs))

    def _switch(self, failed: _Fast, args: tuple[Any, ...]) -> Any:
        """The last specialisation's guards failed: try the others of its signature."""
        for spec in list(self._cache.get(failed.key, ())):
            fast = spec.fast.get(failed.buffer)
            if fast is None or fast is failed:
                continue
            b = getattr(fast.local, fast.buffer, None)
            if b is None:
                break
            fast.layout.load(list(args), b.x, b.u)
            b.call()
            if fast.guard < 0 or b.val.item(fast.guard) == 1.0:
                self._fast = fast
                return fast.finish(b)
        return self._call(args)

    def _result(self, spec: _Specialization, b: _Buffers, *, layout: _Layout) -> Any:
        if self.kind == _VALUES:
            if spec.scalar_out:
                return b.val.item(0)
            return b.val[: spec.n_out].copy()
        return self._derivative_result(spec, b.val, b.der, layout)

    def _call(self, args: tuple[Any, ...]) -> Any:
        if active_trace() is not None and any(_has_values(a) for a in args):
            if self.kind == _VALUES:
                return self.fn(*args)  # inside another trace: inline
            raise _nested_error(self.kind)
        spec, b, layout = self._run(args, _kernel_kind(self.kind))
        return self._result(spec, b, layout=layout)

    def _derivative_result(self, spec: _Specialization, val: np.ndarray, der: np.ndarray,
                           layout: _Layout) -> Any:
        if self.kind == _HESSIAN:
            return self._hessian_result(der, layout)
        if self.kind == _HVP:  # der holds the gradient, then H v: as a gradient's parts
            return self._grad_parts(der[layout.n_params:], layout)
        if layout.whole is not None and self.kind != _JACOBIAN:  # one array, all params
            grads: Any = der[: layout.whole].copy()
            if self.kind == _VALUE_AND_GRAD:
                return val.item(0), (grads,) if self._tuple_argnums else grads
            return (grads,) if self._tuple_argnums else grads
        n_params = layout.n_params
        m = spec.n_out
        parts = []
        for k in layout.params:
            _, lo, hi = layout.slots[k]
            if self.kind == _JACOBIAN:
                block = der[: m * n_params].reshape(m, n_params)[:, lo:hi]
                if layout.sizes[k] is None:
                    block = block[:, 0]
                part: Any = block.copy()
                if spec.scalar_out:
                    part = part[0] if part.ndim == 2 else part.item(0)
            else:
                part = der.item(lo) if layout.sizes[k] is None else der[lo:hi].copy()
            parts.append(part)
        grads = tuple(parts) if self._tuple_argnums else parts[0]
        if self.kind == _VALUE_AND_GRAD:
            return val.item(0), grads
        return grads

    def _grad_parts(self, der: np.ndarray, layout: _Layout) -> Any:
        """A vector over the params split by argument (a float for a float argument)."""
        parts = []
        for k in layout.params:
            _, lo, hi = layout.slots[k]
            parts.append(der.item(lo) if layout.sizes[k] is None else der[lo:hi].copy())
        return tuple(parts) if self._tuple_argnums else parts[0]

    def _hessian_result(self, der: np.ndarray, layout: _Layout) -> Any:
        """The Hessian after the gradient in ``der``: ``(n, n)`` for one array argument,
        a float for a float, and for a tuple ``argnums`` the blocks ``H[a][b]`` as a
        tuple of tuples (JAX's layout)."""
        n = layout.n_params
        matrix = der[n: n + n * n].reshape(n, n)
        blocks = []
        for ka in layout.params:
            _, lo_a, hi_a = layout.slots[ka]
            row = []
            for kb in layout.params:
                _, lo_b, hi_b = layout.slots[kb]
                block: Any = matrix[lo_a:hi_a, lo_b:hi_b].copy()
                if layout.sizes[ka] is None and layout.sizes[kb] is None:
                    block = block.item(0)
                elif layout.sizes[ka] is None:
                    block = block[0]
                elif layout.sizes[kb] is None:
                    block = block[:, 0]
                row.append(block)
            blocks.append(tuple(row))
        return tuple(blocks) if self._tuple_argnums else blocks[0][0]

    # ------------------------------------------------------------------ batches
    def batch(self, *args: Any) -> Any:
        """Evaluate at many points: each dynamic argument has a leading batch axis.

        A float argument becomes an array of shape ``(N,)``, an array argument one of
        shape ``(N, n)``; static arguments are passed as usual. The result has the
        same leading axis. Rows that take different branches are each evaluated by a
        specialisation whose guards hold for them (traced on first need).

        Example:
            >>> import numpy as np, scalar_autograd as sa
            >>> f = sa.jit(lambda x: x * 2 if x > 0 else -x)
            >>> f.batch(np.array([1.0, -3.0, 2.0])).tolist()
            [2.0, 3.0, 4.0]
        """
        if not args:
            raise TypeError("batch needs at least one argument with a batch axis")
        static = set()
        n_args = len(args)
        n_fn = n_args - 1 if self.kind == _HVP else n_args  # sa.hvp: v comes last
        for k in self.static_argnums:
            if -n_fn <= k < n_fn:
                static.add(k % n_fn)
        rows_of: list[np.ndarray] = []
        n_rows = None
        for k, a in enumerate(args):
            if k in static:
                continue
            try:
                arr = np.asarray(a)
            except (TypeError, ValueError):
                raise TypeError(f"argument {k} of batch must be an array; got "
                                f"{type(a).__name__}") from None
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"argument {k} of batch must hold real numbers; got dtype "
                                f"{arr.dtype}")
            if arr.ndim not in (1, 2):
                raise ValueError(f"argument {k} of batch must have shape (N,) or (N, n); "
                                 f"got {arr.shape}")
            if n_rows is None:
                n_rows = arr.shape[0]
            elif arr.shape[0] != n_rows:
                raise ValueError(f"argument {k} of batch has {arr.shape[0]} rows; the "
                                 f"first batched argument has {n_rows}")
            rows_of.append(np.asarray(arr, dtype=np.float64))
        if n_rows is None:
            raise TypeError("batch needs at least one dynamic (non-static) argument")
        if n_rows == 0:  # the shapes come from one row at zeros, then none is kept
            one = [a if k in static else np.zeros((1, *np.shape(a)[1:]))
                   for k, a in enumerate(args)]
            result = self.batch(*one)
            if isinstance(result, tuple):
                return tuple(r[:0] if not isinstance(r, tuple) else tuple(t[:0] for t in r)
                             for r in result)
            return result[:0]
        # a representative call (row 0, or zeros) fixes the signature and the layout
        sample = list(args)
        j = 0
        for k in range(n_args):
            if k in static:
                continue
            r = rows_of[j]
            sample[k] = (r[0] if n_rows else np.zeros(r.shape[1:])) if r.ndim == 2 else \
                (float(r[0]) if n_rows else 0.0)
            j += 1
        key, _ = self._key(tuple(sample))
        layout = self._layout(key)
        X = np.zeros((n_rows, layout.n_params))
        U = np.zeros((n_rows, layout.n_inputs))
        for j, r in enumerate(rows_of):
            is_param, lo, hi = layout.slots[j]
            (X if is_param else U)[:, lo:hi] = r.reshape(n_rows, hi - lo)
        deriv = _kernel_kind(self.kind)
        pending: np.ndarray = np.arange(n_rows)
        results: dict[int, tuple[_Specialization, np.ndarray, np.ndarray]] = {}
        tried: set[int] = set()
        while pending.size:
            specs = list(self._cache.get(key, []))
            fresh = [s for s in specs if id(s) not in tried]
            if not fresh:
                i = int(pending[0])
                dyn = layout.split(X[i], U[i])
                call = list(sample)
                j = 0
                for k in range(n_args):
                    if k not in static:
                        call[k] = dyn[j]
                        j += 1
                spec = self._specialize(key, layout, tuple(call), dyn)
                if id(spec) in tried:  # rounding disagreement at this row: take it
                    V, D = self._batch_run(spec, X[[i]], U[[i]], deriv)
                    results[i] = (spec, V[0], D[0])
                    pending = pending[1:]
                    continue
                fresh = [spec]
            for spec in fresh:
                tried.add(id(spec))
                if not pending.size:
                    break
                V, D = self._batch_run(spec, X[pending], U[pending], deriv)
                ok = np.ones(pending.size, dtype=bool) if not spec.guarded else \
                    V[:, spec.n_out] == 1.0
                for row in np.flatnonzero(ok).tolist():
                    results[int(pending[row])] = (spec, V[row], D[row])
                pending = pending[~ok]
        return self._stack([results[i] for i in range(n_rows)], layout, n_rows)

    def _batch_run(self, spec: _Specialization, X: np.ndarray, U: np.ndarray,
                   deriv: bool | str) -> tuple[np.ndarray, np.ndarray]:
        return spec.compiled._batch_raw(X, U, deriv)

    def _stack(self, rows: list[tuple[_Specialization, np.ndarray, np.ndarray]],
               layout: _Layout, n_rows: int) -> Any:
        if self.kind == _VALUES:
            if not rows:
                return np.zeros((0,))
            spec = rows[0][0]
            V = np.array([v[: s.n_out] for s, v, _ in rows])
            return V[:, 0] if spec.scalar_out else V
        per_row = [self._derivative_result(s, v, d, layout) for s, v, d in rows]
        if self.kind == _HESSIAN and self._tuple_argnums:
            return tuple(tuple(np.array([p[a][b] for p in per_row])
                               for b in range(len(layout.params)))
                         for a in range(len(layout.params)))
        if self.kind == _VALUE_AND_GRAD:
            values = np.array([p[0] for p in per_row])
            grads = [p[1] for p in per_row]
            return values, _stack_parts(grads, self._tuple_argnums)
        return _stack_parts(per_row, self._tuple_argnums)


def _stack_parts(parts: list[Any], is_tuple: bool) -> Any:
    if is_tuple:
        if not parts:
            return ()
        return tuple(np.array([p[i] for p in parts]) for i in range(len(parts[0])))
    return np.array(parts)


def _check_positions(fn: Callable[..., Any], argnums: tuple[int, ...],
                     static_argnums: tuple[int, ...]) -> None:
    """argnums and static_argnums must name positional parameters of fn (as JAX)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature: checked at call time
        return
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return
    n = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    for name, nums in (("argnums", argnums), ("static_argnums", static_argnums)):
        for k in nums:
            if not -n <= k < n:
                raise ValueError(f"{name} names argument {k}, but fn takes {n} positional "
                                 f"argument(s)")


def _int_tuple(x: int | Sequence[int], name: str) -> tuple[int, ...]:
    if isinstance(x, bool):
        raise TypeError(f"{name} must be an int or a tuple of ints; got {x!r}")
    if isinstance(x, numbers.Integral):
        return (int(x),)
    if not isinstance(x, (tuple, list)):
        raise TypeError(f"{name} must be an int or a tuple of ints; got "
                        f"{type(x).__name__} {x!r:.40}")
    for k in x:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"{name} must hold ints; got {k!r}")
    return tuple(int(k) for k in x)


def _outputs(result: Any, kind: str) -> tuple[list[Value], bool]:
    """The function's result as a list of Values, and whether it was a scalar."""
    if isinstance(result, Value):
        return [result], True
    if isinstance(result, numbers.Real) and not isinstance(result, bool):
        return [Value(float(result))], True
    if isinstance(result, (list, tuple, np.ndarray)):
        items = list(result)
        if not items:
            raise ValueError("fn returned an empty sequence; it must return a Value, a "
                             "float, or a non-empty sequence of them")
        out = []
        for i, r in enumerate(items):
            if isinstance(r, Value):
                out.append(r)
            elif isinstance(r, numbers.Real) and not isinstance(r, bool):
                out.append(Value(float(r)))
            else:
                raise TypeError(f"fn returned {type(r).__name__} {r!r:.40} at position "
                                f"{i}; it must return Values or floats")
        if kind in _SCALAR_KINDS:
            raise TypeError(f"sa.{kind} needs fn to return one scalar; it returned a "
                            f"sequence of {len(out)} (use sa.jacobian)")
        return out, False
    raise TypeError(f"fn must return a Value, a float or a sequence of them; got "
                    f"{type(result).__name__} {result!r:.40}")


def _distinct(guards: list[Guard]) -> list[Guard]:
    seen: set[int] = set()
    out = []
    for g in guards:
        if id(g.value) not in seen:
            seen.add(id(g.value))
            out.append(g)
    return out


def _indicator(g: Guard) -> Value:
    """1.0 where the guard's predicate has the traced outcome, else 0.0 (nan is true)."""
    return g.value.ne(0.0) if g.taken else g.value.eq(0.0)


def guard_indicator(guards: Sequence[Guard]) -> Value | None:
    """The product of the guards' indicators: a Value that is 1.0 exactly where every
    guard has its traced outcome, else 0.0; ``None`` when there are no guards.

    Shared by :class:`Traced` and the guarded least-squares oracle
    (``lsq/compiled_oracle.py``).
    """
    ok: Value | None = None
    for g in guards:
        ok = _indicator(g) if ok is None else ok * _indicator(g)
    return ok


def specialization_limit_error(
    name: str, limit: int, patterns: Sequence[Sequence[tuple[str, bool]]],
    scope: str = "", remedy: str = "or raise max_specializations",
) -> SpecializationLimitError:
    """The :class:`SpecializationLimitError` for ``name`` after ``limit`` branch patterns.

    ``patterns`` holds each specialisation's ``(site, taken)`` guards; the message names
    the sites whose outcome changed between them (all sites when none did).
    """
    outcomes: dict[str, set[bool]] = {}
    for pattern in patterns:
        for site, taken in pattern:
            outcomes.setdefault(site, set()).add(taken)
    changing = [site for site, seen in outcomes.items() if len(seen) > 1] or \
        list(outcomes)
    sites = "\n  ".join(changing[:10]) + ("\n  ..." if len(changing) > 10 else "")
    return SpecializationLimitError(
        f"{name} took more than max_specializations={limit} branch patterns{scope}; "
        f"each pattern is traced and compiled anew. The branches that changed are "
        f"at:\n  {sites}\nUse sa.where(cond, a, b) there (a select that stays in one "
        f"compiled function), {remedy}")


def _nested_error(kind: str) -> TypeError:
    return TypeError(f"sa.{kind} was called with Values inside a function being traced; "
                     f"derivatives of traced values inside a trace are not supported "
                     f"(sa.jit inside sa.jit is: it is inlined). Call the transform "
                     f"outside, or compute the derivative with sa.jacobian of the whole "
                     f"function")


# --------------------------------------------------------------------------- public API


def jit(fn: Callable[..., Any] | None = None, *, static_argnums: int | Sequence[int] = (),
        max_specializations: int = MAX_SPECIALIZATIONS, backend: str = "auto") -> Any:
    """Trace ``fn`` on concrete values and compile it, once per branch pattern.

    ``fn`` takes floats (each reaches it as a ``Value``) and 1-D float arrays (each
    reaches it as a list of ``Value``s) and returns a ``Value``, a float, or a sequence
    of them; the jitted function returns a float or a 1-D array. Python branches on
    traced values are guarded: see the module docstring. ``float()``, ``int()``,
    ``math.*`` and numpy conversions of a traced value raise
    :class:`~scalar_autograd.ConcretizationError`.

    Args:
        fn: the function (or use ``@sa.jit(...)`` as a decorator with options).
        static_argnums: positions of arguments passed through unchanged and hashed into
            the cache key (sizes, flags, strings).
        max_specializations: branch patterns compiled per argument signature before
            :class:`SpecializationLimitError`.
        backend: ``"auto"``, ``"llvm"``, ``"python"`` or ``"interpreter"``.

    Example:
        >>> import numpy as np, scalar_autograd as sa
        >>> @sa.jit
        ... def norm(v):
        ...     return sa.sqrt(sum(t * t for t in v))
        >>> norm(np.array([3.0, 4.0]))
        5.0
    """
    if fn is None:
        return lambda f: jit(f, static_argnums=static_argnums,
                             max_specializations=max_specializations, backend=backend)
    return Traced(fn, _VALUES, (), static_argnums, max_specializations, backend)


def grad(fn: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
         static_argnums: int | Sequence[int] = (), max_specializations: int = MAX_SPECIALIZATIONS,
         backend: str = "auto") -> Traced:
    """The gradient of a scalar function with respect to argument(s) ``argnums``.

    Compiled and guarded as :func:`jit`. The gradient has the argument's shape (a float
    for a float argument); a tuple ``argnums`` gives a tuple of gradients.

    Example:
        >>> import scalar_autograd as sa
        >>> df = sa.grad(lambda x, y: x * x * y, argnums=(0, 1))
        >>> df(3.0, 2.0)
        (12.0, 9.0)
    """
    return Traced(fn, _GRAD, argnums, static_argnums, max_specializations, backend)


def value_and_grad(fn: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
                   static_argnums: int | Sequence[int] = (),
                   max_specializations: int = MAX_SPECIALIZATIONS,
                   backend: str = "auto") -> Traced:
    """``(value, gradient)`` of a scalar function; see :func:`grad`.

    Example:
        >>> import numpy as np, scalar_autograd as sa
        >>> f = sa.value_and_grad(lambda v: v[0] ** 2 + v[1])
        >>> value, g = f(np.array([3.0, 1.0]))
        >>> value, g.tolist()
        (10.0, [6.0, 1.0])
    """
    return Traced(fn, _VALUE_AND_GRAD, argnums, static_argnums, max_specializations,
                  backend)


def jacobian(fn: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
             static_argnums: int | Sequence[int] = (),
             max_specializations: int = MAX_SPECIALIZATIONS,
             backend: str = "auto") -> Traced:
    """The Jacobian: shape ``out + in`` as JAX's (``(m, n)`` for arrays, ``(n,)`` for a
    scalar function of an array, a float for floats). Forward or reverse mode is
    chosen by shape.

    Example:
        >>> import numpy as np, scalar_autograd as sa
        >>> J = sa.jacobian(lambda v: [v[0] * v[1], v[0] + v[1]])
        >>> J(np.array([2.0, 3.0])).tolist()
        [[3.0, 2.0], [1.0, 1.0]]
    """
    return Traced(fn, _JACOBIAN, argnums, static_argnums, max_specializations, backend)


def hessian(fn: Callable[..., Any], argnums: int | Sequence[int] = 0, *,
            static_argnums: int | Sequence[int] = (),
            max_specializations: int = MAX_SPECIALIZATIONS,
            backend: str = "auto") -> Traced:
    """The Hessian of a scalar function with respect to argument(s) ``argnums``.

    Compiled and guarded as :func:`jit`; the second derivatives come from forward mode
    over the reverse-mode gradient program on the IR, from the op table's own rules
    (see :meth:`CompiledFunction.hessian <scalar_autograd.CompiledFunction.hessian>`,
    which also says how kinks and symmetry are treated). The result is ``(n, n)`` for
    an array argument of length ``n`` and a float for a float argument; a tuple
    ``argnums`` gives the blocks ``H[a][b]`` as a tuple of tuples, as ``jax.hessian``.

    Example:
        >>> import numpy as np, scalar_autograd as sa
        >>> H = sa.hessian(lambda v: v[0] ** 3 + v[0] * v[1])
        >>> H(np.array([1.0, 2.0])).tolist()
        [[6.0, 1.0], [1.0, 0.0]]
        >>> sa.hessian(lambda x, y: x * x * y, argnums=(0, 1))(3.0, 2.0)
        ((4.0, 6.0), (6.0, 0.0))
    """
    return Traced(fn, _HESSIAN, argnums, static_argnums, max_specializations, backend)


def hvp(fn: Callable[..., Any], argnums: int = 0, *,
        static_argnums: int | Sequence[int] = (),
        max_specializations: int = MAX_SPECIALIZATIONS,
        backend: str = "auto") -> Traced:
    """The Hessian-vector product ``H v`` of a scalar function, without forming ``H``.

    The result is called with ``fn``'s arguments and then the direction ``v``, which
    has the shape of argument ``argnums`` (one int): ``sa.hvp(f)(x, v)``,
    ``sa.hvp(f, argnums=1)(data, x, v)``. It returns ``H v`` in that shape. One call
    costs a small multiple of a gradient whatever the size (one forward sweep, seeded
    by ``v``, over the reverse-mode gradient program), which is what Newton-CG needs.
    Compiled and guarded as :func:`jit`.

    Example:
        >>> import numpy as np, scalar_autograd as sa
        >>> f = sa.hvp(lambda v: v[0] ** 3 + v[0] * v[1])
        >>> f(np.array([1.0, 2.0]), np.array([1.0, 0.0])).tolist()
        [6.0, 1.0]
    """
    return Traced(fn, _HVP, argnums, static_argnums, max_specializations, backend)
