"""The reference backend: evaluates a Program node by node with the table's ``eval``.

It takes programs before or after lowering, so it is the oracle the other backends are
tested against.

Example:
    >>> import numpy as np, scalar_autograd as sa
    >>> from scalar_autograd.ir.trace import trace
    >>> x = sa.Value(0.0)
    >>> program, _ = trace([x * 2.0 + 1.0], [x])
    >>> k = InterpreterBackend().compile(program)
    >>> val = np.zeros(1); k.run(np.array([3.0]), np.zeros(0), val, np.zeros(0), np.zeros(0))
    >>> float(val[0])
    7.0
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scalar_autograd.ir.program import Program
from scalar_autograd.ops import OPS_BY_NAME


class InterpreterKernel:
    """A program evaluated by walking its nodes."""

    backend = "interpreter"
    n_scratch = 0

    def __init__(self, program: Program) -> None:
        self.program = program
        self.source = str(program)
        self._steps = [
            (kind, payload if kind in ("input", "const") else OPS_BY_NAME[kind].eval)
            for kind, payload in program.nodes
        ]

    def _evaluate(self, x: list[float], u: list[float]) -> list[float]:
        n_params = self.program.n_params
        values: list[float] = []
        append = values.append
        for (kind, payload), (_, fn) in zip(self.program.nodes, self._steps):
            if kind == "input":
                append(x[payload] if payload < n_params else u[payload - n_params])
            elif kind == "const":
                append(payload)
            else:
                append(fn(*[values[a] for a in payload]))  # type: ignore[operator]
        return values

    def run(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
            scratch: np.ndarray) -> None:
        values = self._evaluate(x.tolist(), u.tolist())
        outs = self.program.outputs
        nv = self.program.n_values
        for k in range(nv):
            val[k] = values[outs[k]]
        for k in range(len(outs) - nv):
            der[k] = values[outs[nv + k]]

    def run_batch(self, X: np.ndarray, U: np.ndarray, V: np.ndarray, D: np.ndarray,
                  scratch: np.ndarray) -> None:
        for i in range(X.shape[0]):
            self.run(X[i], U[i], V[i], D[i], scratch)

    def bind(self, x: np.ndarray, u: np.ndarray, val: np.ndarray, der: np.ndarray,
             scratch: np.ndarray) -> Callable[[], None]:
        def bound() -> None:
            self.run(x, u, val, der, scratch)

        return bound


class InterpreterBackend:
    """Backend name ``"interpreter"``."""

    name = "interpreter"

    def compile(self, program: Program) -> InterpreterKernel:
        """Wrap ``program`` for evaluation (nothing to compile)."""
        return InterpreterKernel(program)
