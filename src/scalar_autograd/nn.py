"""A small neural-network layer in micrograd's spirit: ``Neuron``, ``Layer``, ``MLP``.

Parameters are ``Value`` leaves with ``requires_grad=True``, listed in a fixed order by
``parameters()``, so a model works with eager ``backward()``, the optimisers (which take
a list of parameters) and ``sa.compile`` (pass ``model.parameters()`` as the params and
the input ``Value``s as inputs). Initialisation is deterministic: every weight comes
from one ``numpy.random.Generator`` seeded by ``seed``.

Each neuron's pre-activation ``w . x + b`` is one n-ary ``sum`` node.

Example:
    >>> import scalar_autograd as sa
    >>> model = sa.MLP(2, [8, 1], seed=0)
    >>> len(model.parameters())  # (2 + 1) * 8 + (8 + 1) * 1
    33
    >>> loss = (model([1.0, -2.0]) - 1.0) ** 2
    >>> loss.backward()
    >>> any(p.grad != 0.0 for p in model.parameters())
    True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from scalar_autograd import functional as F
from scalar_autograd.value import Value, ValueLike, as_value

__all__ = ["Module", "Neuron", "Layer", "MLP"]

Nonlinearity = Literal["relu", "tanh", "sigmoid", "linear"]
_NONLINEARITIES = ("relu", "tanh", "sigmoid", "linear")
Seed = int | np.random.Generator


def _generator(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"seed must be an int or a numpy.random.Generator; got {type(seed).__name__}"
        )
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    return np.random.default_rng(int(seed))


def _check_nonlinearity(nonlinearity: Any, name: str = "nonlinearity") -> str:
    if nonlinearity not in _NONLINEARITIES:
        raise ValueError(f"{name} must be one of {', '.join(_NONLINEARITIES)}; "
                         f"got {nonlinearity!r}")
    return str(nonlinearity)


def _check_count(n: Any, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) < 1:
        raise ValueError(f"{name} must be a positive integer; got {n!r}")
    return int(n)


def _inputs(x: Any, n: int) -> list[Value]:
    if isinstance(x, (Value, str, bytes)) or not isinstance(x, Iterable):
        raise TypeError(f"x must be a sequence of {n} Values or numbers; "
                        f"got {type(x).__name__}")
    values = [as_value(xi, f"x[{i}]") for i, xi in enumerate(x)]
    if len(values) != n:
        raise ValueError(f"x must have {n} entries (the number of inputs); got {len(values)}")
    return values


class Module:
    """Base class: ``parameters()`` and ``zero_grad()``."""

    def parameters(self) -> list[Value]:
        """The trainable leaves, in a fixed order."""
        return []

    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to 0."""
        for p in self.parameters():
            p.grad = 0.0


class Neuron(Module):
    """One neuron: ``act(w . x + b)``.

    Weights are drawn uniformly from ``[-k, k]`` with ``k = sqrt(6 / n_inputs)`` for
    ``relu`` (He) and ``k = sqrt(3 / n_inputs)`` otherwise (LeCun, unit variance for unit
    inputs); the bias starts at 0.

    Args:
        n_inputs: the number of inputs.
        nonlinearity: ``"relu"``, ``"tanh"``, ``"sigmoid"`` or ``"linear"``.
        seed: an int, or a ``numpy.random.Generator`` to draw from (shared by a layer).
        label: prefix of the parameters' labels (``"{label}.w0"``, ``"{label}.b"``).

    Raises:
        ValueError: for a non-positive ``n_inputs`` or an unknown nonlinearity.

    Example:
        >>> n = Neuron(3, nonlinearity="tanh", seed=1)
        >>> len(n.parameters()), -1.0 < n([1.0, 2.0, 3.0]).data < 1.0
        (4, True)
    """

    def __init__(self, n_inputs: int, nonlinearity: Nonlinearity = "relu",
                 seed: Seed = 0, label: str = "neuron") -> None:
        n = _check_count(n_inputs, "n_inputs")
        self.nonlinearity = _check_nonlinearity(nonlinearity)
        rng = _generator(seed)
        bound = math.sqrt((6.0 if self.nonlinearity == "relu" else 3.0) / n)
        self.w = [Value(float(x), label=f"{label}.w{i}", requires_grad=True)
                  for i, x in enumerate(rng.uniform(-bound, bound, size=n))]
        self.b = Value(0.0, label=f"{label}.b", requires_grad=True)

    @property
    def n_inputs(self) -> int:
        """The number of inputs."""
        return len(self.w)

    def __call__(self, x: Sequence[ValueLike]) -> Value:
        """The neuron's output for the inputs ``x`` (length ``n_inputs``)."""
        xs = _inputs(x, len(self.w))
        z = F.sum([wi * xi for wi, xi in zip(self.w, xs)] + [self.b])
        if self.nonlinearity == "relu":
            return F.relu(z)
        if self.nonlinearity == "tanh":
            return F.tanh(z)
        if self.nonlinearity == "sigmoid":
            return F.sigmoid(z)
        return z

    def parameters(self) -> list[Value]:
        """The weights, then the bias."""
        return [*self.w, self.b]

    def __repr__(self) -> str:
        return f"Neuron({self.n_inputs}, nonlinearity={self.nonlinearity!r})"


class Layer(Module):
    """A fully connected layer of ``n_outputs`` neurons sharing the inputs.

    Args:
        n_inputs: the number of inputs.
        n_outputs: the number of neurons.
        nonlinearity: the neurons' activation (see :class:`Neuron`).
        seed: an int or a ``numpy.random.Generator``; neurons draw from it in order.
        label: prefix of the parameters' labels.

    Example:
        >>> layer = Layer(2, 3, seed=0)
        >>> len(layer.forward([1.0, 2.0])), len(layer.parameters())
        (3, 9)
    """

    def __init__(self, n_inputs: int, n_outputs: int, nonlinearity: Nonlinearity = "relu",
                 seed: Seed = 0, label: str = "layer") -> None:
        n_in = _check_count(n_inputs, "n_inputs")
        n_out = _check_count(n_outputs, "n_outputs")
        rng = _generator(seed)
        self.neurons = [Neuron(n_in, nonlinearity, rng, label=f"{label}.n{j}")
                        for j in range(n_out)]

    def forward(self, x: Sequence[ValueLike]) -> list[Value]:
        """The outputs as a list (always a list, even for one neuron)."""
        xs = _inputs(x, self.neurons[0].n_inputs)  # convert once, share between neurons
        return [n(xs) for n in self.neurons]

    def __call__(self, x: Sequence[ValueLike]) -> Value | list[Value]:
        """As micrograd: a single ``Value`` for a one-neuron layer, else a list."""
        out = self.forward(x)
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        """Every neuron's parameters, neuron by neuron."""
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        n = self.neurons[0]
        return f"Layer({n.n_inputs}, {len(self.neurons)}, nonlinearity={n.nonlinearity!r})"


class MLP(Module):
    """A multilayer perceptron: hidden layers with ``nonlinearity``, then an output layer.

    Args:
        n_inputs: the number of inputs.
        layer_sizes: the width of each layer, the last being the number of outputs.
        nonlinearity: the hidden layers' activation.
        output_nonlinearity: the last layer's activation; ``"linear"`` (the default, as
            micrograd) gives logits/regression outputs.
        seed: an int or a ``numpy.random.Generator``; the same seed gives the same model.

    Raises:
        ValueError: for empty or non-positive sizes or an unknown nonlinearity.

    Example:
        >>> model = MLP(3, [4, 4, 1], nonlinearity="tanh", seed=42)
        >>> model
        MLP(3, [4, 4, 1], nonlinearity='tanh', output_nonlinearity='linear')
        >>> out = model([1.0, 0.5, -1.0])  # one output: a Value
        >>> MLP(3, [4, 4, 1], nonlinearity="tanh", seed=42)([1.0, 0.5, -1.0]).data == out.data
        True
    """

    def __init__(self, n_inputs: int, layer_sizes: Sequence[int],
                 nonlinearity: Nonlinearity = "relu",
                 output_nonlinearity: Nonlinearity = "linear", seed: Seed = 0) -> None:
        n_in = _check_count(n_inputs, "n_inputs")
        if isinstance(layer_sizes, (str, bytes)) or not isinstance(layer_sizes, Iterable):
            raise TypeError(f"layer_sizes must be a sequence of positive integers; "
                            f"got {type(layer_sizes).__name__}")
        sizes = [_check_count(s, f"layer_sizes[{i}]") for i, s in enumerate(layer_sizes)]
        if not sizes:
            raise ValueError("layer_sizes must name at least one layer; got []")
        hidden = _check_nonlinearity(nonlinearity)
        last = _check_nonlinearity(output_nonlinearity, "output_nonlinearity")
        rng = _generator(seed)
        self.nonlinearity = hidden
        self.output_nonlinearity = last
        dims = [n_in, *sizes]
        self.layers = [
            Layer(dims[i], dims[i + 1],
                  last if i == len(sizes) - 1 else hidden,  # type: ignore[arg-type]
                  rng, label=f"L{i}")
            for i in range(len(sizes))
        ]

    def forward(self, x: Sequence[ValueLike]) -> list[Value]:
        """The outputs as a list (always a list, even for one output)."""
        out: Sequence[ValueLike] = x
        for layer in self.layers:
            out = layer.forward(out)
        return list(out)  # type: ignore[arg-type]

    def __call__(self, x: Sequence[ValueLike]) -> Value | list[Value]:
        """As micrograd: a single ``Value`` when there is one output, else a list."""
        out = self.forward(x)
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        """Every layer's parameters, layer by layer."""
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        first = self.layers[0].neurons[0]
        sizes = [len(layer.neurons) for layer in self.layers]
        return (f"MLP({first.n_inputs}, {sizes}, nonlinearity={self.nonlinearity!r}, "
                f"output_nonlinearity={self.output_nonlinearity!r})")
