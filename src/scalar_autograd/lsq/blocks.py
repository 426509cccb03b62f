"""``ResidualBlock``: one residual function written on scalars, applied to N data rows.

The function is called once on placeholder Values (``k`` parameter slots and ``d``
data arguments), compiled with the JIT (``params`` = the slots, ``inputs`` = the data
arguments) and evaluated for all rows in one native call; each row's slots are bound
to ``x[param_index[i]]`` and its data arguments to ``data[j][i]``. This is Ceres'
residual block, vectorised: 10^5 rows cost one Python call per evaluation.

The structure of the residuals must not depend on the values: ``fn`` is traced once,
at the first row, for every row and every ``x``. The trace runs under
:func:`scalar_autograd.tracing.tracing` of the slots and the data arguments, so a
Python branch on them (``if``, ``while``, ``and``/``or``, builtin ``min``/``max`` of a
``Value``) is seen: :meth:`ResidualBlock.compile` refuses it with a ``ValueError``
naming the block and the line (use ``sa.where``, ``sa.maximum``, ``sa.minimum``, which
stay in the compiled code; the ``jacobian="graph"`` path, which re-runs ``fn`` per row,
accepts it). ``float()``, ``int()`` and ``math.*`` of a slot or data argument raise
:class:`~scalar_autograd.ConcretizationError` naming the line, in both paths.

Example:
    >>> import numpy as np
    >>> import scalar_autograd as sa
    >>> t = np.linspace(0.0, 1.0, 50)
    >>> y = 3.0 * np.exp(-2.0 * t)
    >>> def decay(p, d):          # p: parameter slots, d: data arguments (Values)
    ...     amplitude, rate = p
    ...     t, y = d
    ...     return amplitude * sa.exp(-rate * t) - y
    >>> block = sa.ResidualBlock(decay, param_index=np.tile([0, 1], (50, 1)), data=[t, y])
    >>> block.n_rows, block.n_slots, block.n_outputs
    (50, 2, 1)
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scalar_autograd.validation import check_real_array
from scalar_autograd.value import Value

BlockFn = Callable[[list[Value], list[Value]], "Value | Sequence[Value]"]


class ResidualBlock:
    """A residual function of ``k`` parameters and ``d`` data values, over N rows.

    Args:
        fn: ``fn(p, d) -> Value or sequence of Value`` where ``p`` is a list of ``k``
            parameter Values and ``d`` a list of ``d`` data Values. It returns the
            ``m_b`` residuals of one row.
        param_index: ``(N, k)`` integer array (or ``(N,)`` for ``k = 1``): row ``i`` uses
            the flat parameters ``x[param_index[i, 0]], ..., x[param_index[i, k-1]]``.
        data: one 1-D array of length N per data argument (``None`` or ``[]`` for none).
        name: shown in error messages.

    Raises:
        TypeError: for a non-callable ``fn``, a non-integer ``param_index`` or data
            that is not a sequence of arrays of real numbers (complex numbers and
            strings are rejected, not converted).
        ValueError: for no rows, negative indices or data arrays whose length differs
            from the number of rows of ``param_index``.

    Example:
        >>> import numpy as np
        >>> import scalar_autograd as sa
        >>> block = sa.ResidualBlock(lambda p, d: p[0] - d[0], param_index=[0, 0, 0],
        ...                          data=[np.array([1.0, 2.0, 3.0])])
        >>> block.n_rows, block.n_slots
        (3, 1)
    """

    def __init__(
        self,
        fn: BlockFn,
        param_index: Any,
        data: Sequence[Any] | None = None,
        *,
        name: str = "",
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "block")
        self.param_index = _check_index(param_index, self.name)
        self.data = _check_data(data, self.param_index.shape[0], self.name)
        self._traced: tuple[list[Value], list[Value], list[Value]] | None = None
        self._branch_sites: list[str] = []

    @property
    def n_rows(self) -> int:
        """N, the number of rows."""
        return int(self.param_index.shape[0])

    @property
    def n_slots(self) -> int:
        """k, the parameters each row uses."""
        return int(self.param_index.shape[1])

    @property
    def n_data(self) -> int:
        """d, the data arguments each row reads."""
        return int(self.data.shape[1])

    @property
    def n_outputs(self) -> int:
        """m_b, the residuals each row yields."""
        return len(self.trace()[2])

    @property
    def n_residuals(self) -> int:
        """N * m_b."""
        return self.n_rows * self.n_outputs

    def trace(self) -> tuple[list[Value], list[Value], list[Value]]:
        """``(slots, data_args, outputs)``: ``fn`` called once on placeholders (cached).

        The placeholders hold row 0's values while tracing. Python branches on them are
        recorded (see the module docstring); ``float()`` of one raises
        :class:`~scalar_autograd.ConcretizationError`.
        """
        if self._traced is None:
            from scalar_autograd.tracing import tracing

            slots = [Value(0.0, label=f"{self.name}.p{j}", requires_grad=True)
                     for j in range(self.n_slots)]
            dargs = [Value(0.0, label=f"{self.name}.d{j}") for j in range(self.n_data)]
            with tracing(slots + dargs) as t:
                outs = self._call(slots, dargs, row=0, x=None)
            self._branch_sites = list(dict.fromkeys(g.site for g in t.guards))
            self._traced = (slots, dargs, outs)
        return self._traced

    def _call(self, slots: list[Value], dargs: list[Value], row: int,
              x: np.ndarray | None) -> list[Value]:
        if x is not None:
            for s, v in zip(slots, x):
                s.data = float(v)
        for dv, v in zip(dargs, self.data[row]):
            dv.data = float(v)
        out = self.fn(slots, dargs)
        outs = [out] if isinstance(out, Value) else out
        if isinstance(outs, (str, bytes)) or not isinstance(outs, (Sequence, list, tuple)):
            raise TypeError(f"residual block {self.name!r}: fn must return a Value or a "
                            f"sequence of Value; got {type(out).__name__}")
        outs = list(outs)
        if not outs:
            raise ValueError(f"residual block {self.name!r}: fn returned no residuals")
        for i, o in enumerate(outs):
            if not isinstance(o, Value):
                raise TypeError(f"residual block {self.name!r}: fn must return Values; "
                                f"output {i} is {type(o).__name__} {o!r}")
        return outs

    def constant_outputs(self) -> list[int]:
        """Indices of the outputs that depend on no parameter slot."""
        return [i for i, o in enumerate(self.trace()[2]) if not o.requires_grad]

    def compile(self, backend: str = "auto") -> Any:
        """The JIT-compiled function of (slots; data arguments) -> outputs.

        Raises:
            ValueError: ``fn`` branched on a slot or data argument while traced: one
                kernel for all rows would freeze the branch row 0 took.
        """
        from scalar_autograd.runtime import compile as jit_compile

        slots, dargs, outs = self.trace()
        if self._branch_sites:
            sites = ", ".join(self._branch_sites[:3]) + \
                (", ..." if len(self._branch_sites) > 3 else "")
            raise ValueError(
                f"residual block {self.name!r}: fn branches on a value that depends on "
                f"its parameter slots or data (a Python if/while/and/or or builtin "
                f"min/max of a Value) at {sites}; the block is traced once for all its "
                f"rows, so its compiled kernel would take row 0's branch for every row "
                f"and every x. Use sa.where(cond, a, b) (or sa.maximum, sa.minimum) "
                f"there, which stays a branch in the compiled code, or solve with "
                f'jacobian="graph"')
        return jit_compile(outs, slots, inputs=dargs, backend=backend)

    def graph_function(self) -> GraphBatchFunction:
        """An object with ``batch_values``/``batch_jacobian`` that re-runs ``fn`` per row
        and calls ``backward()`` per output (the ``jacobian="graph"`` path)."""
        return GraphBatchFunction(self)

    def __repr__(self) -> str:
        return (f"ResidualBlock({self.name!r}, rows={self.n_rows}, slots={self.n_slots}, "
                f"data={self.n_data})")


class GraphBatchFunction:
    """Per-row eager evaluation of a block, with the batch interface of the JIT."""

    def __init__(self, block: ResidualBlock) -> None:
        self.block = block
        self.n_outputs = block.n_outputs

    def batch_values(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        from scalar_autograd.modes import no_grad

        b = self.block
        slots, dargs, _ = b.trace()
        V = np.empty((X.shape[0], self.n_outputs))
        with no_grad():
            for i in range(X.shape[0]):
                V[i] = [o.data for o in b._call(slots, dargs, i, X[i])]
        return V

    def batch_jacobian(self, X: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = self.block
        slots, dargs, _ = b.trace()
        N, k = X.shape
        V = np.empty((N, self.n_outputs))
        J = np.zeros((N, self.n_outputs, k))
        for i in range(N):
            outs = b._call(slots, dargs, i, X[i])
            for j, o in enumerate(outs):
                V[i, j] = o.data
                if not o.requires_grad:
                    continue
                for s in slots:
                    s.grad = 0.0
                o.backward()
                J[i, j] = [s.grad for s in slots]
        return V, J


def _check_index(param_index: Any, name: str) -> np.ndarray:
    idx = np.asarray(param_index)
    if idx.dtype == object or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
        raise TypeError(f"residual block {name!r}: param_index must be an integer array; "
                        f"got dtype {idx.dtype}")
    if idx.ndim == 1:
        idx = idx[:, None]
    if idx.ndim != 2:
        raise ValueError(f"residual block {name!r}: param_index must have shape (N, k) or "
                         f"(N,); got shape {idx.shape}")
    if idx.shape[0] == 0:
        raise ValueError(f"residual block {name!r}: param_index has no rows; a block needs "
                         f"at least one")
    if idx.shape[1] == 0:
        raise ValueError(f"residual block {name!r}: param_index must name at least one "
                         f"parameter per row; got shape {idx.shape}")
    if idx.min() < 0:
        row = int(np.argwhere(idx < 0)[0][0])
        raise ValueError(f"residual block {name!r}: param_index must be >= 0; row {row} is "
                         f"{idx[row].tolist()}")
    return np.ascontiguousarray(idx, dtype=np.int64)


def _check_data(data: Any, n_rows: int, name: str) -> np.ndarray:
    if data is None:
        return np.zeros((n_rows, 0))
    if isinstance(data, np.ndarray) and data.ndim != 1:
        raise TypeError(f"residual block {name!r}: data must be a sequence of 1-D arrays, "
                        f"one per data argument; got a {data.ndim}-D array (pass "
                        f"list(a.T) to use its columns as arguments)")
    if isinstance(data, np.ndarray) or isinstance(data, (str, bytes)) \
            or not isinstance(data, Sequence):
        raise TypeError(f"residual block {name!r}: data must be a sequence of 1-D arrays, "
                        f"one per data argument; got {type(data).__name__}")
    columns = []
    for j, col in enumerate(data):
        if isinstance(col, numbers.Real):
            raise TypeError(f"residual block {name!r}: data[{j}] must be a 1-D array of "
                            f"length {n_rows}; got a number")
        a = check_real_array(col, f"residual block {name!r}: data[{j}]")
        if a.ndim != 1:
            raise ValueError(f"residual block {name!r}: data[{j}] must be 1-D; got shape "
                             f"{a.shape}")
        if a.shape[0] != n_rows:
            raise ValueError(f"residual block {name!r}: data[{j}] has {a.shape[0]} rows but "
                             f"param_index has {n_rows}; they must match")
        columns.append(a)
    if not columns:
        return np.zeros((n_rows, 0))
    return np.ascontiguousarray(np.stack(columns, axis=1))
