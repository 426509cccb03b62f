"""Neuron/Layer/MLP: structure, deterministic init, hand values, FD, training, compiled."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.nn import Layer, Module, Neuron


def _weights(model: Module) -> list[float]:
    return [p.data for p in model.parameters()]


def test_structure_and_parameter_order() -> None:
    model = sa.MLP(3, [4, 5, 2], seed=0)
    assert len(model.parameters()) == (3 + 1) * 4 + (4 + 1) * 5 + (5 + 1) * 2
    assert all(p.requires_grad and p.is_leaf for p in model.parameters())
    labels = [p.label for p in model.parameters()]
    assert len(set(labels)) == len(labels)
    assert labels[:5] == ["L0.n0.w0", "L0.n0.w1", "L0.n0.w2", "L0.n0.b", "L0.n1.w0"]
    assert [layer.neurons[0].nonlinearity for layer in model.layers] == ["relu", "relu",
                                                                         "linear"]
    assert repr(model) == "MLP(3, [4, 5, 2], nonlinearity='relu', output_nonlinearity='linear')"
    out = model([1.0, 2.0, 3.0])
    assert isinstance(out, list) and len(out) == 2
    single = sa.MLP(3, [4, 1], seed=0)([1.0, 2.0, 3.0])
    assert isinstance(single, sa.Value)
    assert len(sa.MLP(3, [4, 1], seed=0).forward([1.0, 2.0, 3.0])) == 1


def test_deterministic_initialisation() -> None:
    assert _weights(sa.MLP(2, [8, 1], seed=3)) == _weights(sa.MLP(2, [8, 1], seed=3))
    assert _weights(sa.MLP(2, [8, 1], seed=3)) != _weights(sa.MLP(2, [8, 1], seed=4))
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    assert _weights(Layer(3, 2, seed=rng_a)) == _weights(Layer(3, 2, seed=rng_b))
    # He-uniform bound for relu, LeCun-uniform for tanh; biases start at 0
    relu = Neuron(6, "relu", seed=0)
    tanh = Neuron(6, "tanh", seed=0)
    assert max(abs(w.data) for w in relu.w) <= math.sqrt(6 / 6)
    assert max(abs(w.data) for w in tanh.w) <= math.sqrt(3 / 6)
    assert relu.b.data == 0.0
    # the weights are numpy's uniform draws from the seeded Generator
    expected = np.random.default_rng(5).uniform(-1.0, 1.0, size=6)
    np.testing.assert_array_equal([w.data for w in Neuron(6, "relu", seed=5).w], expected)


def test_neuron_hand_values() -> None:
    n = Neuron(2, "linear", seed=0)
    n.w[0].data, n.w[1].data, n.b.data = 2.0, -1.0, 0.5
    assert n([3.0, 4.0]).data == 2.5
    n.nonlinearity = "relu"
    assert n([-3.0, 4.0]).data == 0.0
    n.nonlinearity = "tanh"
    assert n([3.0, 4.0]).data == math.tanh(2.5)
    n.nonlinearity = "sigmoid"
    assert n([3.0, 4.0]).data == pytest.approx(1 / (1 + math.exp(-2.5)))
    z = Neuron(5, "linear", seed=1)([1.0] * 5)
    assert z.op is not None and z.op.name == "sum" and len(z.args) == 6  # one n-ary node


def test_zero_grad() -> None:
    model = sa.MLP(2, [3, 1], nonlinearity="tanh", seed=0)
    out = model([0.5, -0.5])
    assert isinstance(out, sa.Value)
    out.backward()
    assert any(p.grad != 0.0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())


def test_errors() -> None:
    with pytest.raises(ValueError, match="nonlinearity"):
        Neuron(2, "gelu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output_nonlinearity"):
        sa.MLP(2, [2], output_nonlinearity="softmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_inputs"):
        Neuron(0)
    with pytest.raises(ValueError, match=r"layer_sizes\[1\]"):
        sa.MLP(2, [3, 0])
    with pytest.raises(ValueError, match="layer_sizes"):
        sa.MLP(2, [])
    with pytest.raises(TypeError, match="seed"):
        sa.MLP(2, [1], seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x must have 2 entries"):
        sa.MLP(2, [1])([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="x must be a sequence"):
        sa.MLP(2, [1])(sa.Value(1.0))  # type: ignore[arg-type]


def test_gradients_match_finite_differences() -> None:
    model = sa.MLP(2, [4, 3, 1], nonlinearity="tanh", seed=2)
    params = model.parameters()
    assert len(params) == 3 * 4 + 5 * 3 + 4 * 1
    theta0 = np.array([p.data for p in params])

    def loss_at(theta: np.ndarray) -> sa.Value:
        for p, v in zip(params, theta):
            p.data = float(v)
        return (model.forward([0.7, -1.3])[0] - 0.25) ** 2

    model.zero_grad()
    loss_at(theta0).backward()
    analytic = np.array([p.grad for p in params])
    h = 1e-6
    numeric = np.empty_like(theta0)
    with sa.no_grad():
        for i in range(len(theta0)):
            step = np.zeros_like(theta0)
            step[i] = h
            numeric[i] = (loss_at(theta0 + step).data - loss_at(theta0 - step).data) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_mlp_learns_xor_with_plain_gradient_descent() -> None:
    data = [([0.0, 0.0], -1.0), ([0.0, 1.0], 1.0), ([1.0, 0.0], 1.0), ([1.0, 1.0], -1.0)]
    model = sa.MLP(2, [8, 1], nonlinearity="tanh", output_nonlinearity="tanh", seed=0)
    for _ in range(300):
        outputs = [model(x) for x, _ in data]
        loss = sa.mse(outputs, [y for _, y in data])  # type: ignore[arg-type]
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= 0.2 * p.grad
    assert loss.data < 0.05
    assert all(np.sign(model(x).data) == y for x, y in data)  # type: ignore[union-attr]


def test_mlp_compiles_and_agrees_away_from_the_trace_point() -> None:
    model = sa.MLP(3, [6, 4, 2], nonlinearity="tanh", seed=7)
    xs = [sa.Value(0.0, label=f"x{i}") for i in range(3)]
    out = model.forward(xs)
    loss = sa.categorical_cross_entropy(out, 1)
    params = model.parameters()
    traced = np.array([p.data for p in params])
    rng = np.random.default_rng(0)
    for backend in ("python", "llvm"):
        f = sa.compile(loss, params, inputs=xs, backend=backend)
        for _ in range(4):
            theta = traced + rng.normal(size=len(params)) * 0.5
            x = rng.normal(size=3)
            value, grad = f.value_and_grad(theta, inputs=x)
            # eager at the same point, on the same model
            for p, v in zip(params, theta):
                p.data = float(v)
            eager = sa.categorical_cross_entropy(model.forward(list(x)), 1)
            model.zero_grad()
            eager.backward()
            assert value == pytest.approx(eager.data, rel=1e-12, abs=1e-14)
            np.testing.assert_allclose(grad, [p.grad for p in params], rtol=1e-10, atol=1e-13)
        for p, v in zip(params, traced):
            p.data = float(v)
