"""``sa.compile``: a Value graph becomes a ``CompiledFunction`` with fast value and gradient.

Pipeline: trace (CSE, constant folding) -> reverse or forward mode on the IR -> lower
expansions -> a backend kernel, cached by program structure. The hot methods run one
native call on preallocated float64 buffers.

Example:
    >>> import scalar_autograd as sa
    >>> x = sa.Value(1.0, label="x")
    >>> y = sa.Value(2.0, label="y")
    >>> f = sa.compile(x * y + sa.sin(x), [x, y])
    >>> value, grad = f.value_and_grad([0.0, 3.0])
    >>> value, grad.tolist()
    (0.0, [4.0, 0.0])
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.backends import get_backend
from scalar_autograd.backends.base import Kernel
from scalar_autograd.graph import gc_paused
from scalar_autograd.ir import autodiff
from scalar_autograd.ir.passes import lower
from scalar_autograd.ir.program import Program
from scalar_autograd.ir.trace import trace
from scalar_autograd.runtime.cache import KERNELS
from scalar_autograd.value import Value

_F64 = np.dtype(np.float64)


def _as_value_list(x: Any, name: str, allow_single: bool) -> list[Value]:
    if isinstance(x, Value):
        if allow_single:
            return [x]
        raise TypeError(f"{name} must be a sequence of Values; got a single Value "
                        f"(wrap it in a list)")
    if isinstance(x, (str, bytes)) or not isinstance(x, Sequence | np.ndarray | tuple):
        try:
            x = list(x)
        except TypeError:
            raise TypeError(f"{name} must be a sequence of Values; got {type(x).__name__}") \
                from None
    items = list(x)
    for i, v in enumerate(items):
        if not isinstance(v, Value):
            raise TypeError(f"{name}[{i}] must be a Value; got {type(v).__name__} {v!r}")
    return items


def _check_leaves(values: list[Value], name: str) -> None:
    seen: set[int] = set()
    for i, v in enumerate(values):
        if v.op is not None:
            raise ValueError(f"{name}[{i}] must be a leaf Value (not computed by an op); "
                             f"got the result of {v.op.name}")
        if id(v) in seen:
            raise ValueError(f"{name}[{i}] appears twice in {name}; each must be distinct")
        seen.add(id(v))


class _Entry:
    """What the cache holds for one forward program: its kernels, built lazily."""

    def __init__(self, program: Program, backend: str) -> None:
        self.program = program
        self.backend = backend
        self._lock = threading.Lock()
        self._value: Kernel | None = None
        self._deriv: Kernel | None = None

    def value_kernel(self) -> Kernel:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = get_backend(self.backend).compile(lower(self.program))
        return self._value

    def deriv_kernel(self) -> Kernel:
        if self._deriv is None:
            with self._lock:
                if self._deriv is None:
                    p = self.program
                    mode = autodiff.reverse if p.n_values <= p.n_params else autodiff.forward
                    self._deriv = get_backend(self.backend).compile(mode(p, lower=True))
        return self._deriv


class _Buffers:
    """Preallocated float64 buffers with a zero-argument native call bound to them."""

    __slots__ = ("x", "u", "val", "der", "scratch", "call")

    def __init__(self, kernel: Kernel, n_params: int, n_inputs: int) -> None:
        program = kernel.program
        self.x = np.zeros(n_params)
        self.u = np.zeros(n_inputs)
        self.val = np.zeros(program.n_values)
        self.der = np.zeros(program.n_derivs)
        self.scratch = np.zeros(max(kernel.n_scratch, 1))
        self.call = kernel.bind(self.x, self.u, self.val, self.der, self.scratch)


class CompiledFunction:
    """A compiled graph: values, gradients and Jacobians at any parameter vector.

    Create it with :func:`compile`. ``x`` is the params' values in order and
    ``inputs`` the runtime inputs' values (``None``: the input leaves' current
    ``.data``); both accept sequences or float64 arrays. Calls from several threads
    are safe; the native code runs with the GIL released.

    Attributes:
        params: the param leaves, in order.
        inputs: the runtime input leaves, in order.
        n_params, n_inputs, n_outputs: sizes.
        backend: ``"llvm"``, ``"python"`` or ``"interpreter"``.
        program: the traced forward program (IR).
    """

    def __init__(self, entry: _Entry, params: Sequence[Value] = (),
                 inputs: Sequence[Value] = ()) -> None:
        self._entry = entry
        self.program = entry.program
        self.backend = entry.backend
        self.params = tuple(params)
        self.inputs = tuple(inputs)
        self.n_params = entry.program.n_params
        self.n_inputs = entry.program.n_inputs
        self.n_outputs = entry.program.n_values
        self._owner = threading.get_ident()
        self._vbuf: _Buffers | None = None
        self._dbuf: _Buffers | None = None

    # ------------------------------------------------------------------ introspection
    @property
    def source(self) -> str:
        """Generated source (Python or LLVM IR) of the value-and-derivative kernel."""
        return self._entry.deriv_kernel().source

    @property
    def n_instructions(self) -> int:
        """Instructions in the lowered value-and-derivative program."""
        return self._entry.deriv_kernel().program.n_instructions

    def __repr__(self) -> str:
        return (f"CompiledFunction(n_params={self.n_params}, n_inputs={self.n_inputs}, "
                f"n_outputs={self.n_outputs}, backend={self.backend!r})")

    # ------------------------------------------------------------------ buffers
    def _buffers(self, deriv: bool) -> _Buffers:
        """This thread's buffers: cached for the creating thread, fresh for others."""
        if threading.get_ident() == self._owner:
            if deriv:
                if self._dbuf is None:
                    self._dbuf = _Buffers(self._entry.deriv_kernel(), self.n_params,
                                          self.n_inputs)
                return self._dbuf
            if self._vbuf is None:
                self._vbuf = _Buffers(self._entry.value_kernel(), self.n_params,
                                      self.n_inputs)
            return self._vbuf
        kernel = self._entry.deriv_kernel() if deriv else self._entry.value_kernel()
        return _Buffers(kernel, self.n_params, self.n_inputs)

    def _load(self, b: _Buffers, x: Any, inputs: Any) -> None:
        _fill(b.x, x, "x")
        if self.n_inputs:
            if inputs is None:
                b.u[:] = [v.data for v in self.inputs] if self.inputs else 0.0
            else:
                _fill(b.u, inputs, "inputs")
        elif inputs is not None and len(inputs) != 0:
            raise ValueError(f"inputs must be empty: this function has no inputs; "
                             f"got length {len(inputs)}")

    # ------------------------------------------------------------------ hot paths
    def __call__(self, x: Any, inputs: Any = None, *, out: np.ndarray | None = None
                 ) -> float | np.ndarray:
        """The output value (a float) or values (a 1-D array) at ``x``.

        Example:
            >>> import scalar_autograd as sa
            >>> a = sa.Value(0.0)
            >>> sa.compile(a * a, [a])([3.0])
            9.0
        """
        b = self._buffers(False)
        self._load(b, x, inputs)
        b.call()
        if self.n_outputs == 1 and out is None:
            return b.val.item(0)
        if out is None:
            return b.val.copy()
        _check_out(out, (self.n_outputs,), "out")
        out[:] = b.val
        return out

    def value_and_grad(self, x: Any, inputs: Any = None, *, out: np.ndarray | None = None
                       ) -> tuple[float, np.ndarray]:
        """The scalar output and its gradient with respect to the params.

        Args:
            x: the params' values.
            inputs: the runtime inputs' values (``None``: the input leaves' ``.data``).
            out: optional float64 array of length ``n_params`` receiving the gradient.

        Raises:
            ValueError: if the function has more than one output.

        Example:
            >>> import scalar_autograd as sa
            >>> a = sa.Value(0.0)
            >>> f = sa.compile(a * a, [a])
            >>> v, g = f.value_and_grad([3.0]); v, g.tolist()
            (9.0, [6.0])
        """
        if self.n_outputs != 1:
            raise ValueError(f"value_and_grad needs a single output; this function has "
                             f"{self.n_outputs} (use jacobian)")
        b = self._buffers(True)
        self._load(b, x, inputs)
        b.call()
        if out is None:
            return b.val.item(0), b.der.copy()
        _check_out(out, (self.n_params,), "out")
        out[:] = b.der
        return b.val.item(0), out

    def jacobian(self, x: Any, inputs: Any = None, *,
                 out: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Values ``(m,)`` and Jacobian ``(m, n)`` with respect to the params.

        Args:
            out: optional ``(values, J)`` float64 arrays to fill.
        """
        b = self._buffers(True)
        self._load(b, x, inputs)
        b.call()
        shape = (self.n_outputs, self.n_params)
        if out is None:
            return b.val.copy(), b.der.reshape(shape).copy()
        values, jac = out
        _check_out(values, (self.n_outputs,), "out[0]")
        _check_out(jac, shape, "out[1]")
        values[:] = b.val
        jac[...] = b.der.reshape(shape)
        return values, jac

    def bind(self, x: np.ndarray, grad: np.ndarray, inputs: np.ndarray | None = None,
             value: np.ndarray | None = None) -> Callable[[], None]:
        """A zero-argument callable evaluating into fixed buffers (CasADi's ``buffer()``).

        Each call reads ``x`` (and ``inputs``) and writes the values into ``value`` and
        the gradient (for several outputs: the row-major Jacobian) into ``grad``. The
        arrays' addresses are fixed once, so update them in place (``x[:] = ...``).

        Args:
            x: float64 C-contiguous array of length ``n_params``.
            grad: float64 C-contiguous array of length ``n_outputs * n_params``.
            inputs: float64 array of length ``n_inputs`` (required when there are any).
            value: float64 array of length ``n_outputs`` (optional).

        Example:
            >>> import numpy as np, scalar_autograd as sa
            >>> a = sa.Value(0.0)
            >>> f = sa.compile(a * a, [a])
            >>> x, g, v = np.array([3.0]), np.zeros(1), np.zeros(1)
            >>> step = f.bind(x, g, value=v)
            >>> step(); float(v[0]), float(g[0])
            (9.0, 6.0)
        """
        kernel = self._entry.deriv_kernel()
        _check_out(x, (self.n_params,), "x")
        _check_out(grad, (self.n_outputs * self.n_params,), "grad")
        if inputs is None:
            if self.n_inputs:
                raise ValueError(f"inputs must be a float64 array of length {self.n_inputs}"
                                 f" for bind; got None")
            inputs = np.zeros(0)
        _check_out(inputs, (self.n_inputs,), "inputs")
        if value is None:
            value = np.zeros(self.n_outputs)
        _check_out(value, (self.n_outputs,), "value")
        scratch = np.zeros(max(kernel.n_scratch, 1))
        return kernel.bind(x, inputs, value, grad, scratch)

    # ------------------------------------------------------------------ batches
    def _batch_args(self, X: Any, U: Any) -> tuple[np.ndarray, np.ndarray]:
        X = _matrix(X, self.n_params, "X")
        n = X.shape[0]
        if U is None:
            if self.n_inputs:
                raise ValueError(f"U must be an array of shape (N, {self.n_inputs}); got None")
            U = np.zeros((n, 0))
        U = _matrix(U, self.n_inputs, "U")
        if U.shape[0] != n:
            raise ValueError(f"U must have as many rows as X ({n}); got {U.shape[0]}")
        return X, U

    def batch_values(self, X: Any, U: Any = None) -> np.ndarray:
        """Values for every row: ``X (N, n_params)``, ``U (N, n_inputs)`` -> ``(N, m)``.

        The loop over rows runs inside the native code.
        """
        X, U = self._batch_args(X, U)
        kernel = self._entry.value_kernel()
        V = np.empty((X.shape[0], self.n_outputs))
        D = np.empty((X.shape[0], 0))
        kernel.run_batch(X, U, V, D, np.zeros(max(kernel.n_scratch, 1)))
        return V

    def batch_jacobian(self, X: Any, U: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Values ``(N, m)`` and Jacobians ``(N, m, n)`` for every row of ``X`` and ``U``."""
        X, U = self._batch_args(X, U)
        kernel = self._entry.deriv_kernel()
        n = X.shape[0]
        V = np.empty((n, self.n_outputs))
        D = np.empty((n, self.n_outputs * self.n_params))
        kernel.run_batch(X, U, V, D, np.zeros(max(kernel.n_scratch, 1)))
        return V, D.reshape(n, self.n_outputs, self.n_params)


def _fill(buf: np.ndarray, x: Any, name: str) -> None:
    n = buf.shape[0]
    try:
        length = len(x)
    except TypeError:
        raise TypeError(f"{name} must be a sequence or array of {n} numbers; "
                        f"got {type(x).__name__}") from None
    if length != n:
        raise ValueError(f"{name} must have length {n}; got length {length}")
    try:
        buf[:] = x
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must hold {n} real numbers; got {x!r:.80} ({exc})") from None


def _check_out(a: Any, shape: tuple[int, ...], name: str) -> None:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy float64 array; got {type(a).__name__}")
    if a.dtype != _F64 or not a.flags.c_contiguous or not a.flags.writeable:
        raise TypeError(f"{name} must be a writeable C-contiguous float64 array; "
                        f"got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {a.shape}")


def _matrix(a: Any, cols: int, name: str) -> np.ndarray:
    try:
        m = np.ascontiguousarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 2-D array of numbers; got {type(a).__name__}") \
            from None
    if m.ndim != 2 or m.shape[1] != cols:
        raise ValueError(f"{name} must have shape (N, {cols}); got {m.shape}")
    return m


def _entry_for(program: Program, backend: str) -> _Entry:
    name = get_backend(backend).name  # validates the name; resolves "auto"
    return KERNELS.get_or_create((name, program.key()), lambda: _Entry(program, name))  # type: ignore[no-any-return]


def compile(  # noqa: A001 - the public name the API asks for
    outputs: Value | Sequence[Value],
    params: Sequence[Value],
    inputs: Sequence[Value] = (),
    *,
    backend: str = "auto",
) -> CompiledFunction:
    """Compile a graph into a :class:`CompiledFunction` of ``params`` (and ``inputs``).

    Every leaf that is neither a param nor an input is a constant frozen at compile
    time: change it and compile again. Python control flow on ``.data`` is frozen too;
    use ``sa.where`` for a branch that stays a branch. Compiling a structurally
    identical graph again reuses the cached kernels.

    Args:
        outputs: a ``Value`` or a sequence of ``Value``s.
        params: the differentiable arguments: distinct leaf ``Value``s, in order.
        inputs: non-differentiable runtime arguments (data, targets): distinct leaf
            ``Value``s, none of them a param.
        backend: ``"llvm"`` (native), ``"python"`` (generated Python), ``"interpreter"``
            (reference), or ``"auto"`` (llvm when llvmlite imports, else python).

    Raises:
        TypeError: for anything but Values where Values are needed.
        ValueError: for non-leaf, duplicated or overlapping params/inputs, no outputs or
            an unknown backend.
        ImportError: for ``backend="llvm"`` without llvmlite.

    Example:
        >>> import scalar_autograd as sa
        >>> p = sa.Value(1.0, label="p")
        >>> t = sa.Value(0.0, label="target")
        >>> f = sa.compile((p - t) ** 2, [p], inputs=[t])
        >>> f.value_and_grad([3.0], inputs=[1.0])[1].tolist()
        [4.0]
    """
    out_list = _as_value_list(outputs, "outputs", allow_single=True)
    if not out_list:
        raise ValueError("outputs must hold at least one Value; got an empty sequence")
    param_list = _as_value_list(params, "params", allow_single=False)
    input_list = _as_value_list(inputs, "inputs", allow_single=False)
    _check_leaves(param_list, "params")
    _check_leaves(input_list, "inputs")
    param_ids = {id(p) for p in param_list}
    for j, v in enumerate(input_list):
        if id(v) in param_ids:
            raise ValueError(f"inputs[{j}] is also a param; a leaf is either a param or an "
                             f"input")
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str; got {type(backend).__name__}")
    get_backend(backend)  # fail fast on a bad name before tracing
    with gc_paused():             # a walk over possibly millions of Values
        program, _ = trace(out_list, param_list, input_list)
        return CompiledFunction(_entry_for(program, backend), param_list, input_list)


def compile_program(program: Program, backend: str = "auto") -> CompiledFunction:
    """A :class:`CompiledFunction` straight from a program (no Value graph)."""
    return CompiledFunction(_entry_for(program, backend))


def compile_gradient_function(
    output: Value, params: Sequence[Value], *, backend: str = "auto"
) -> Callable[..., list[float]]:
    """The seed's API: ``fn(*param_values) -> list`` of gradients in ``params`` order.

    Example:
        >>> import scalar_autograd as sa
        >>> x, y = sa.Value(1.0), sa.Value(2.0)
        >>> fn = sa.compile_gradient_function(x * y, [x, y])
        >>> fn(3.0, 4.0)
        [4.0, 3.0]
    """
    if not isinstance(output, Value):
        raise TypeError(f"output must be a Value; got {type(output).__name__}")
    f = compile(output, params, backend=backend)

    def gradient(*values: float) -> list[float]:
        return f.value_and_grad(values)[1].tolist()  # type: ignore[no-any-return]

    gradient.compiled = f  # type: ignore[attr-defined]
    return gradient


def apply_compiled_gradients(fn: Callable[..., list[float]], params: Sequence[Value]
                             ) -> list[float]:
    """Call ``fn`` at the params' current ``.data``, set each ``.grad``, return them.

    Example:
        >>> import scalar_autograd as sa
        >>> x = sa.Value(3.0)
        >>> fn = sa.compile_gradient_function(x * x, [x])
        >>> sa.apply_compiled_gradients(fn, [x]), x.grad
        ([6.0], 6.0)
    """
    param_list = _as_value_list(params, "params", allow_single=False)
    grads = fn(*[p.data for p in param_list])
    if len(grads) != len(param_list):
        raise ValueError(f"fn returned {len(grads)} gradients for {len(param_list)} params")
    for p, g in zip(param_list, grads):
        p.grad = g
    return list(grads)
