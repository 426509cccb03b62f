"""The ``jacobian="graph"`` oracle: re-run ``residual_fn`` and call ``backward()`` per residual.

This is the traditional path (the seed's ``nonlinearLeastSquares``): every evaluation
sets the params' ``data``, rebuilds the graph by calling ``residual_fn`` and, for the
Jacobian, runs one reverse sweep per residual. Trial steps run ``residual_fn`` under
:func:`scalar_autograd.no_grad`, so they build no graph. It works for any
``residual_fn``, including ones whose structure depends on the parameter values. Its
Jacobian is always dense (the structure may change from one point to the next), so
every linear solver solves it densely and no Schur elimination is found.

Example:
    >>> import numpy as np
    >>> import scalar_autograd as sa
    >>> a = sa.Value(1.0, requires_grad=True)
    >>> oracle = GraphOracle([a], lambda p: [p[0] * 3.0 - 1.0, p[0] * p[0]])
    >>> r, J = oracle.residuals_and_jacobian(np.array([2.0]))
    >>> r.tolist(), J.tolist()
    ([5.0, 4.0], [[3.0], [4.0]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from scalar_autograd.graph import gc_paused
from scalar_autograd.lsq.params import check_residuals
from scalar_autograd.modes import no_grad
from scalar_autograd.value import Value

ResidualFn = Callable[[list[Value]], Sequence[Value]]


class GraphOracle:
    """Residuals and Jacobian of ``residual_fn(params)`` by eager evaluation.

    Attributes:
        m: the number of residuals (fixed at the first evaluation).
        n: the number of params.
        sparse: False: the Jacobian is a dense array.
        constant_rows: indices of residuals that depended on no parameter at the last
            Jacobian evaluation.
        columns_used: None (which params the residuals read is not tracked).
    """

    sparse = False
    columns_used = None

    def __init__(self, params: list[Value], residual_fn: ResidualFn) -> None:
        self.params = params
        self.residual_fn = residual_fn
        self.n = len(params)
        self.m: int | None = None
        self.constant_rows: list[int] = []

    def schur_complement(self) -> None:
        """None: a dense Jacobian has no elimination (see the module docstring)."""
        return None

    def _evaluate(self, x: np.ndarray) -> list[Value]:
        for p, v in zip(self.params, x):
            p.data = float(v)
        res = check_residuals(self.residual_fn(self.params))
        if self.m is None:
            self.m = len(res)
        elif len(res) != self.m:
            raise ValueError(
                f"residual_fn must return the same number of residuals every call; "
                f"first {self.m}, now {len(res)}"
            )
        return res

    def residuals(self, x: np.ndarray) -> np.ndarray:
        """The residual vector at ``x`` (no graph is recorded)."""
        with no_grad(), gc_paused():
            res = self._evaluate(x)
            return np.array([r.data for r in res], dtype=float)

    def residuals_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The residuals and the dense Jacobian at ``x``, one ``backward()`` per row."""
        with gc_paused():               # many small graphs: see graph.gc_paused
            return self._residuals_and_jacobian(x)

    def _residuals_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        res = self._evaluate(x)
        params = self.params
        J = np.zeros((len(res), len(params)))
        constant: list[int] = []
        for i, r in enumerate(res):
            if not r.requires_grad:
                constant.append(i)
                continue
            for p in params:
                p.grad = 0.0
            r.backward()
            J[i] = [p.grad for p in params]
        for p in params:
            p.grad = 0.0
        self.constant_rows = constant
        return np.array([r.data for r in res], dtype=float), J
