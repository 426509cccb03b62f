"""Shared pieces of the JIT tests: backends to run, sampling, comparisons."""

from __future__ import annotations

import math

import numpy as np


def same_float(a: float, b: float, rel: float = 0.0, abs_tol: float = 0.0) -> bool:
    """Equal, both nan, the same infinity, or finite and within tolerance."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return a == b or abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_tol)


def assert_same(actual: np.ndarray | float, expected: np.ndarray | float, rel: float = 0.0,
                abs_tol: float = 0.0, what: str = "") -> None:
    a = np.atleast_1d(np.asarray(actual, dtype=float))
    e = np.atleast_1d(np.asarray(expected, dtype=float))
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    bad = [(i, x, y) for i, (x, y) in enumerate(zip(a.tolist(), e.tolist()))
           if not same_float(x, y, rel, abs_tol)]
    assert not bad, f"{what}: (index, actual, expected) {bad[:5]}"


def central_difference(f, x: list[float], i: int, h: float = 1e-6) -> float:
    """d f / d x_i by a central difference with a step relative to |x_i|."""
    step = h * max(1.0, abs(x[i]))
    xp, xm = list(x), list(x)
    xp[i] += step
    xm[i] -= step
    return (f(xp) - f(xm)) / (xp[i] - xm[i])
