"""Compiled differentiation modes for :func:`scalar_autograd.check_grads`.

``"fwd"`` (forward mode on the IR) and ``"jit"`` (reverse mode on the IR), both
compiled with the default backend. The function is traced at a point slightly away
from ``x`` and evaluated at ``x``, so a compiled result that is right only where it was
traced fails the check. :mod:`scalar_autograd.testing` sits above the runtime and lists
these two in its table of modes directly: nothing registers itself on import.

Example:
    >>> import scalar_autograd as sa
    >>> sa.check_grads(lambda v: sa.sin(v[0]) * v[1], [0.3, 2.0], modes=("rev", "fwd", "jit"))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from scalar_autograd.backends.registry import get_backend
from scalar_autograd.ir import autodiff
from scalar_autograd.ir.program import Program
from scalar_autograd.ir.trace import trace
from scalar_autograd.value import Value

Directional = Callable[[Callable[[list[Value]], Any], list[float], list[list[float]]],
                       list[float]]
"""``(f, x, directions) -> [grad f(x) . v for v in directions]``."""


def _compiled(mode: Callable[..., Program]) -> Directional:
    def directional(f: Callable[[list[Value]], Any], x: list[float],
                    directions: list[list[float]]) -> list[float]:
        leaves = [Value(xi * (1.0 + 1e-3) + 1e-3) for xi in x]  # traced away from x
        y = f(leaves)
        if not isinstance(y, Value):
            return [0.0] * len(directions)
        program, _ = trace([y], leaves)
        derivative = mode(program, lower=True)
        kernel = get_backend("auto", derivative).compile(derivative)
        val, grad = np.zeros(1), np.zeros(len(x))
        kernel.run(np.array(x, dtype=float), np.zeros(0), val, grad,
                   np.zeros(max(kernel.n_scratch, 1)))
        return [float(np.dot(grad, v)) for v in directions]

    return directional


compiled_forward: Directional = _compiled(autodiff.forward)
"""Mode ``"fwd"``: forward mode on the IR, compiled."""

compiled_reverse: Directional = _compiled(autodiff.reverse)
"""Mode ``"jit"``: reverse mode on the IR, compiled."""
