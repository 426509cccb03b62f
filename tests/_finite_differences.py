"""Test helpers for the vector/geometry/loss/nn tests: finite differences and compiled-vs-eager.

``build`` functions take a list of ``Value``s and return a scalar ``Value``; they are
called on fresh leaves for every evaluation, so they never see stale graphs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import scalar_autograd as sa

Build = Callable[[list[sa.Value]], sa.Value]


def eager_value_and_grad(build: Build, x: Sequence[float]) -> tuple[float, np.ndarray]:
    """Value and gradient of ``build`` at ``x`` from eager ``backward()``."""
    leaves = [sa.Value(float(xi), requires_grad=True) for xi in x]
    out = build(leaves)
    out.backward()
    return out.data, np.array([leaf.grad for leaf in leaves])


def central_differences(build: Build, x: Sequence[float], h: float = 1e-6) -> np.ndarray:
    """The gradient by central differences, one coordinate at a time."""
    x = np.asarray(x, dtype=float)
    grad = np.empty_like(x)
    with sa.no_grad():
        for i in range(len(x)):
            up, down = x.copy(), x.copy()
            up[i] += h
            down[i] -= h
            f_up = build([sa.Value(float(v)) for v in up]).data
            f_down = build([sa.Value(float(v)) for v in down]).data
            grad[i] = (f_up - f_down) / (2.0 * h)
    return grad


def assert_grad_matches_fd(build: Build, x: Sequence[float], rtol: float = 1e-6,
                           atol: float = 1e-7, h: float = 1e-6) -> np.ndarray:
    """Assert the eager gradient equals central differences; return the gradient."""
    _, analytic = eager_value_and_grad(build, x)
    numeric = central_differences(build, x, h)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol,
                               err_msg=f"analytic {analytic} vs numeric {numeric} at x={x}")
    return analytic


def assert_compiled_matches_eager(build: Build, trace_at: Sequence[float],
                                  points: Sequence[Sequence[float]],
                                  backends: Sequence[str] = ("python", "llvm"),
                                  rtol: float = 1e-10, atol: float = 1e-12) -> None:
    """Compile ``build`` traced at ``trace_at`` and compare with eager at ``points``.

    The points are other than the traced one: a compiled function that is right only
    where it was traced is wrong.
    """
    params = [sa.Value(float(v), requires_grad=True) for v in trace_at]
    out = build(params)
    for backend in backends:
        f = sa.compile(out, params, backend=backend)
        for x in points:
            value, grad = f.value_and_grad(np.asarray(x, dtype=float))
            e_value, e_grad = eager_value_and_grad(build, x)
            np.testing.assert_allclose(value, e_value, rtol=rtol, atol=atol,
                                       err_msg=f"{backend} value at {x}")
            np.testing.assert_allclose(grad, e_grad, rtol=rtol, atol=atol,
                                       err_msg=f"{backend} gradient at {x}")
