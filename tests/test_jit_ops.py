"""Every op on every backend: compiled values and gradients at points other than the
traced one agree with eager mode and with central differences (the seed's test matrix)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scalar_autograd as sa
from jit_support import assert_same, central_difference
from scalar_autograd.ops import OPS, VARIADIC
from scalar_autograd.value import apply

SPECIALS = [0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 1e308, -2.5, 0.5]


def _n_args(op) -> int:
    return 3 if op.arity == VARIADIC else op.arity


def _domains(op) -> list[tuple[float, float]]:
    n = _n_args(op)
    return [op.domain[min(i, len(op.domain) - 1)] for i in range(n)]


def _build(op, values: list[float], requires_grad: bool = False):
    """The op applied to fresh leaves; for ``pow`` the exponent is a constant."""
    if op.name == "pow":
        x = sa.Value(values[0], requires_grad=requires_grad)
        return x.pow(values[1]), [x]
    leaves = [sa.Value(v, requires_grad=requires_grad) for v in values]
    return apply(op, *leaves), leaves


def _eager(op, values: list[float]) -> tuple[float, list[float]]:
    out, leaves = _build(op, values, requires_grad=True)
    if out.requires_grad:
        out.backward()
    return out.data, [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_op_compiled_matches_eager_and_finite_differences(op, backend):
    rng = np.random.default_rng(sum(map(ord, op.name)))
    domains = _domains(op)

    def sample() -> list[float]:
        return [float(rng.uniform(lo, hi)) for lo, hi in domains]

    traced = sample()
    out, params = _build(op, traced)
    pow_exponent = traced[1] if op.name == "pow" else None
    f = sa.compile(out, params, backend=backend)
    exact = backend in ("interpreter", "python")
    for _ in range(6):
        point = sample()
        if pow_exponent is not None:
            point[1] = pow_exponent  # the exponent was frozen at compile time
        x = point[: len(params)]
        value, grad = _eager(op, point)
        compiled_value = f(x)
        c_value, c_grad = f.value_and_grad(x)
        assert_same(compiled_value, value, rel=0 if exact else 1e-13, what=f"{op.name} value")
        assert_same(c_value, value, rel=0 if exact else 1e-13, what=f"{op.name} value+grad")
        assert_same(c_grad, grad, rel=1e-12, abs_tol=1e-15, what=f"{op.name} gradient")

        def scalar(xs: list[float], point=point) -> float:
            return _build(op, xs + point[len(xs):])[0].data

        # structurally zero partials (step functions, stop_gradient) are 0 by convention
        zeros = op.zero_partials
        numeric = [0.0 if zeros[min(i, len(zeros) - 1)] else central_difference(scalar, x, i)
                   for i in range(len(x))]
        assert_same(c_grad, numeric, rel=1e-6, abs_tol=1e-7, what=f"{op.name} vs numeric")


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_special_values_flow_as_in_eager_mode(op, backend):
    """nan and inf go through compiled code exactly as through eager mode."""
    n = _n_args(op)
    rng = np.random.default_rng(7)
    out, params = _build(op, [0.5] * n)
    f = sa.compile(out, params, backend=backend)
    exact = backend in ("interpreter", "python")
    for _ in range(25):
        point = [float(rng.choice(SPECIALS)) for _ in range(n)]
        if op.name == "pow":
            point[1] = 0.5
        value = _build(op, point)[0].data
        assert_same(f(point[: len(params)]), value, rel=0 if exact else 1e-13,
                    what=f"{op.name}{tuple(point)}")
