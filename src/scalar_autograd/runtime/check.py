"""Compiled differentiation modes for :func:`scalar_autograd.check_grads`.

Registers ``"fwd"`` (forward mode on the IR) and ``"jit"`` (reverse mode on the IR),
both compiled with the default backend. The function is traced at a point slightly
away from ``x`` and evaluated at ``x``, so a compiled result that is right only where
it was traced fails the check.

Example:
    >>> import scalar_autograd as sa
    >>> sa.check_grads(lambda v: sa.sin(v[0]) * v[1], [0.3, 2.0], modes=("rev", "fwd", "jit"))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from scalar_autograd.backends import get_backend
from scalar_autograd.ir import autodiff
from scalar_autograd.ir.trace import trace
from scalar_autograd.testing import register_mode
from scalar_autograd.value import Value


def _compiled(mode: Callable[..., Any]) -> Callable[..., list[float]]:
    def directional(f: Callable[[list[Value]], Any], x: list[float],
                    directions: list[list[float]]) -> list[float]:
        leaves = [Value(xi * (1.0 + 1e-3) + 1e-3) for xi in x]  # traced away from x
        y = f(leaves)
        if not isinstance(y, Value):
            return [0.0] * len(directions)
        program, _ = trace([y], leaves)
        kernel = get_backend("auto").compile(mode(program, lower=True))
        val, grad = np.zeros(1), np.zeros(len(x))
        kernel.run(np.array(x, dtype=float), np.zeros(0), val, grad,
                   np.zeros(max(kernel.n_scratch, 1)))
        return [float(np.dot(grad, v)) for v in directions]

    return directional


register_mode("fwd", _compiled(autodiff.forward))
register_mode("jit", _compiled(autodiff.reverse))
