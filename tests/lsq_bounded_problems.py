"""Bounded least-squares problems with numpy residuals and hand-written Jacobians.

Shared by ``tests/test_lsq_bounds.py`` (the oracle is scipy's ``least_squares`` with
these Jacobians) and ``benchmarks/bench_bounds.py``. Every problem has a numpy form
(residuals, Jacobian) written independently of the package, and a form on Values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import scalar_autograd as sa
from lsq_nist_problems import NistProblem


def box(lower: Any, upper: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.broadcast_to(np.asarray(lower, float), (n,)).copy(),
            np.broadcast_to(np.asarray(upper, float), (n,)).copy())


# ------------------------------------------------------------------ hand-written problems
def rosenbrock(x: np.ndarray) -> np.ndarray:
    return np.array([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def rosenbrock_jac(x: np.ndarray) -> np.ndarray:
    return np.array([[-20.0 * x[0], 10.0], [-1.0, 0.0]])


def rosenbrock_sa(p: list[sa.Value]) -> list[sa.Value]:
    return [10.0 * (p[1] - p[0] ** 2), 1.0 - p[0]]


T = np.linspace(0.0, 3.0, 25)
Y_DECAY = 2.0 * np.exp(-1.5 * T) + 0.3 + 0.01 * np.sin(7 * T)
Y_GROWTH = 2.0 * np.exp(0.4 * T) + 0.05 * np.sin(7 * T)   # a decay model wants k < 0


def decay(x: np.ndarray) -> np.ndarray:
    """``a exp(-k t) + c`` against ``Y_DECAY``."""
    return x[0] * np.exp(-x[1] * T) + x[2] - Y_DECAY


def decay_jac(x: np.ndarray) -> np.ndarray:
    e = np.exp(-x[1] * T)
    return np.stack([e, -x[0] * T * e, np.ones_like(T)], axis=1)


def decay_sa(p: list[sa.Value]) -> list[sa.Value]:
    return [p[0] * sa.exp(-p[1] * t) + p[2] - y for t, y in zip(T.tolist(), Y_DECAY.tolist())]


def rate(x: np.ndarray) -> np.ndarray:
    """``a exp(-k t)`` against ``Y_GROWTH``: with ``k >= 0`` the rate sits on its bound."""
    return x[0] * np.exp(-x[1] * T) - Y_GROWTH


def rate_jac(x: np.ndarray) -> np.ndarray:
    e = np.exp(-x[1] * T)
    return np.stack([e, -x[0] * T * e], axis=1)


def rate_sa(p: list[sa.Value]) -> list[sa.Value]:
    return [p[0] * sa.exp(-p[1] * t) - y for t, y in zip(T.tolist(), Y_GROWTH.tolist())]


HAND_CASES = {
    # name: (numpy residuals, jacobian, Values residuals, x0, lower, upper)
    "rosenbrock x1 >= 1.5": (rosenbrock, rosenbrock_jac, rosenbrock_sa, [-2.0, 2.0],
                             [-np.inf, 1.5], np.inf),
    "rosenbrock box, upper corner": (rosenbrock, rosenbrock_jac, rosenbrock_sa, [-1.2, 0.5],
                                     -2.0, [0.5, 0.8]),
    "rosenbrock box, interior optimum": (rosenbrock, rosenbrock_jac, rosenbrock_sa,
                                         [-1.2, 1.0], -2.0, 2.0),
    "rosenbrock mixed inf": (rosenbrock, rosenbrock_jac, rosenbrock_sa, [0.0, 0.0],
                             [-np.inf, -np.inf], [0.7, np.inf]),
    "rosenbrock start on a bound": (rosenbrock, rosenbrock_jac, rosenbrock_sa, [0.5, 0.0],
                                    [-1.0, 0.0], [0.5, 2.0]),
    "rate k >= 0": (rate, rate_jac, rate_sa, [1.0, 1.0], [-np.inf, 0.0], np.inf),
    "rate all positive": (rate, rate_jac, rate_sa, [1.0, 1.0], 0.0, np.inf),
    "decay k <= 1": (decay, decay_jac, decay_sa, [1.0, 0.5, 0.0], -np.inf,
                     [np.inf, 1.0, np.inf]),
    "decay c >= 0.5, all positive": (decay, decay_jac, decay_sa, [1.0, 1.0, 1.0],
                                     [0.0, 0.0, 0.5], np.inf),
    "decay two-sided": (decay, decay_jac, decay_sa, [1.0, 0.5, 0.5], [0.5, 0.2, -1.0],
                        [1.5, 3.0, 1.0]),
    "decay not binding": (decay, decay_jac, decay_sa, [1.0, 1.0, 0.0], [-5.0, 0.0, -5.0],
                          [5.0, 5.0, 5.0]),
}


def nist_partials(name: str, b: np.ndarray, x: np.ndarray) -> list[Any]:
    """The partial derivatives of a NIST model with respect to ``b0, b1, ...``, by hand."""
    if name == "chwirut2":
        e, d = np.exp(-b[0] * x), b[1] + b[2] * x
        return [-x * e / d, -e / d**2, -x * e / d**2]
    if name in ("misra1a", "BoxBOD"):
        e = np.exp(-b[1] * x)
        return [1 - e, b[0] * x * e]
    if name in ("hahn1", "thurber"):
        num = b[0] + b[1] * x + b[2] * x**2 + b[3] * x**3
        den = 1 + b[4] * x + b[5] * x**2 + b[6] * x**3
        return [x**k / den for k in range(4)] + [-num * x**k / den**2 for k in (1, 2, 3)]
    if name == "misra1d":
        d = 1 + b[1] * x
        return [b[1] * x / d, b[0] * x / d**2]
    if name == "lanczos1":
        out = []
        for i in range(3):
            e = np.exp(-b[2 * i + 1] * x)
            out += [e, -b[2 * i] * x * e]
        return out
    if name == "rat42":
        u = np.exp(b[1] - b[2] * x)
        return [1 / (1 + u), -b[0] * u / (1 + u) ** 2, b[0] * x * u / (1 + u) ** 2]
    if name == "MGH10":
        e = np.exp(b[1] / (x + b[2]))
        return [e, b[0] * e / (x + b[2]), -b[0] * b[1] * e / (x + b[2]) ** 2]
    if name == "MGH17":
        e3, e4 = np.exp(-b[3] * x), np.exp(-b[4] * x)
        return [np.ones_like(x), e3, e4, -b[1] * x * e3, -b[2] * x * e4]
    if name == "MGH09":
        num, den = x**2 + x * b[1], x**2 + x * b[2] + b[3]
        return [num / den, b[0] * x / den, -b[0] * num * x / den**2, -b[0] * num / den**2]
    if name == "Bennett5":
        s = b[1] + x
        power = s ** (-1 / b[2])
        return [power, -b[0] / b[2] * power / s, b[0] * power * np.log(s) / b[2] ** 2]
    if name == "rat43":
        u = np.exp(b[1] - b[2] * x)
        w = 1 + u
        power = w ** (-1 / b[3])
        return [power, -b[0] / b[3] * power * u / w, b[0] / b[3] * power * x * u / w,
                b[0] * power * np.log(w) / b[3] ** 2]
    if name == "eckerle4":
        z = (x - b[2]) / b[1]
        e = np.exp(-0.5 * z**2)
        return [e / b[1], b[0] * e * (z**2 - 1) / b[1] ** 2, b[0] * e * z / b[1] ** 2]
    raise KeyError(name)


def nist_model(p: NistProblem) -> tuple[Any, Any]:
    """numpy residuals and the hand-written Jacobian of a NIST problem."""

    def jac(v: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            columns = nist_partials(p.name, np.asarray(v, dtype=float), p.x)
        return np.stack([np.broadcast_to(c, p.x.shape) for c in columns], axis=1)

    return p.numpy_residuals, jac


def binding_bounds(p: NistProblem, start: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A bound half way from the start to the certified value, on the parameter that
    moves most (relative to its value): it binds at the bounded solution."""
    x0 = np.array(p.starts[start], dtype=float)
    certified = np.array(p.certified_params)
    k = int(np.argmax(np.abs(certified - x0) / np.abs(certified)))
    lower, upper = np.full(x0.size, -np.inf), np.full(x0.size, np.inf)
    middle = x0[k] + 0.5 * (certified[k] - x0[k])
    if certified[k] > x0[k]:
        upper[k] = middle
    else:
        lower[k] = middle
    return lower, upper, k


def broyden(n: int) -> tuple[Any, Any]:
    def fun(x: np.ndarray) -> np.ndarray:
        r = (3 - x) * x + 1
        r[1:] -= x[:-1]
        r[:-1] -= 2 * x[1:]
        return r

    def jac(x: np.ndarray) -> Any:
        import scipy.sparse as sp

        return sp.diags([3 - 2 * x, -2 * np.ones(n - 1), -np.ones(n - 1)], [0, 1, -1],
                        format="csr")

    return fun, jac


def broyden_problem(n: int, x0: np.ndarray) -> sa.LeastSquaresProblem:
    """Broyden's tridiagonal function as residual blocks (interior, first, last)."""
    problem = sa.LeastSquaresProblem(x0)
    middle = np.stack([np.arange(n - 2), np.arange(1, n - 1), np.arange(2, n)], axis=1)
    problem.add_block(lambda p, d: (3 - p[1]) * p[1] + 1 - p[0] - 2 * p[2], middle,
                      name="middle")
    problem.add_block(lambda p, d: (3 - p[0]) * p[0] + 1 - 2 * p[1], [[0, 1]], name="first")
    problem.add_block(lambda p, d: (3 - p[1]) * p[1] + 1 - p[0], [[n - 2, n - 1]],
                      name="last")
    return problem


def reordered(problem_x: np.ndarray, n: int) -> np.ndarray:
    """The blocks' residual order (middle rows, first, last) -> scipy's (0 .. n-1)."""
    return np.concatenate([[n - 2], np.arange(n - 2), [n - 1]])
