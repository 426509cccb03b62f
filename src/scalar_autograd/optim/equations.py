"""The update equations of SGD, Adam and AdamW on flat float64 vectors (optax-style).

Each optimiser is a frozen, validated *config* (its hyperparameters), a small mutable
*state* (step count and moment vectors) and one ``*_step`` function that updates the
parameter vector and the state in place, using a caller-owned scratch array, so a loop
of steps allocates nothing and has no per-parameter Python work.

The floating-point operations follow ``torch.optim`` (single-tensor path) one for one,
in the same order, so a trajectory matches PyTorch's to rounding; PyTorch's vectorised
CPU kernels may fuse a multiply-add (FMA), which is the only source of difference.

Example:
    >>> import numpy as np
    >>> config = AdamConfig(lr=0.1)
    >>> x = np.array([1.0, -2.0])
    >>> state = adam_init(2)
    >>> scratch = np.empty((2, 2))
    >>> for _ in range(200):
    ...     adam_step(x, 2.0 * x, state, config, scratch)   # gradient of |x|^2
    >>> bool(np.all(np.abs(x) < 1e-2)), state.step
    (True, 200)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from scalar_autograd.optim.validation import (
    check_bool,
    check_nonnegative_float,
    check_positive_float,
    check_unit_interval,
)

FloatArray = NDArray[np.float64]


# ---------------------------------------------------------------------------- SGD
@dataclass(frozen=True)
class SGDConfig:
    """Hyperparameters of SGD with (heavy-ball or Nesterov) momentum, as ``torch.optim.SGD``.

    The update, with ``d = g + weight_decay * x``::

        b = d                      (first step)      b = momentum * b + d   (later)
        d = d + momentum * b       (nesterov)        d = b                  (otherwise)
        x = x - lr * d

    Raises:
        ValueError: ``lr`` <= 0, ``momentum`` or ``weight_decay`` < 0, or
            ``nesterov`` without momentum.
    """

    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", check_positive_float(self.lr, "lr"))
        object.__setattr__(self, "momentum", check_nonnegative_float(self.momentum, "momentum"))
        object.__setattr__(self, "nesterov", check_bool(self.nesterov, "nesterov"))
        object.__setattr__(
            self, "weight_decay", check_nonnegative_float(self.weight_decay, "weight_decay")
        )
        if self.nesterov and self.momentum <= 0.0:
            raise ValueError(
                f"`nesterov` requires `momentum` > 0; got momentum={self.momentum!r}"
            )


@dataclass
class SGDState:
    """Mutable SGD state: steps taken and the momentum buffer (valid once ``step > 0``)."""

    momentum_buffer: FloatArray
    step: int = 0


def sgd_init(n: int) -> SGDState:
    """A fresh SGD state for ``n`` parameters."""
    return SGDState(momentum_buffer=np.zeros(n))


def sgd_step(
    x: FloatArray, grad: FloatArray, state: SGDState, config: SGDConfig, scratch: FloatArray
) -> None:
    """One SGD step: update ``x`` and ``state`` in place.

    Args:
        x: the parameters, float64, shape ``(n,)``; updated in place.
        grad: the gradient at ``x``, shape ``(n,)``; not modified.
        state: from :func:`sgd_init`; updated in place.
        config: the hyperparameters.
        scratch: a float64 work array of shape ``(2, n)``.

    Example:
        >>> import numpy as np
        >>> x = np.array([1.0]); state = sgd_init(1)
        >>> sgd_step(x, np.array([2.0]), state, SGDConfig(lr=0.25), np.empty((2, 1)))
        >>> x
        array([0.5])
    """
    d = grad
    if config.weight_decay != 0.0:
        d = scratch[0]
        np.multiply(x, config.weight_decay, out=d)  # torch: grad.add(param, alpha=wd)
        np.add(grad, d, out=d)
    momentum = config.momentum
    if momentum != 0.0:
        buf = state.momentum_buffer
        if state.step == 0:
            buf[...] = d  # torch: buf = clone(grad)
        else:
            buf *= momentum  # torch: buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            buf += d
        if config.nesterov:
            t = scratch[1]
            np.multiply(buf, momentum, out=t)  # torch: grad.add(buf, alpha=momentum)
            np.add(d, t, out=scratch[0])
            d = scratch[0]
        else:
            d = buf
    t = scratch[1]
    np.multiply(d, -config.lr, out=t)  # torch: param.add_(grad, alpha=-lr)
    x += t
    state.step += 1


# ---------------------------------------------------------------------------- Adam
@dataclass(frozen=True)
class AdamConfig:
    """Hyperparameters of Adam (``decoupled=False``) and AdamW (``decoupled=True``).

    The update at step ``t``, as ``torch.optim.Adam``/``AdamW``::

        x = x * (1 - lr * weight_decay)                 (AdamW: decoupled decay)
        g = g + weight_decay * x                        (Adam: L2 added to the gradient)
        m = lerp(m, g, 1 - beta1)
        v = beta2 * v + (1 - beta2) * g * g
        x = x - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Raises:
        ValueError: ``lr`` or ``eps`` <= 0, a beta outside [0, 1), ``weight_decay`` < 0.
    """

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", check_positive_float(self.lr, "lr"))
        object.__setattr__(self, "beta1", check_unit_interval(self.beta1, "betas[0]"))
        object.__setattr__(self, "beta2", check_unit_interval(self.beta2, "betas[1]"))
        object.__setattr__(self, "eps", check_positive_float(self.eps, "eps"))
        object.__setattr__(
            self, "weight_decay", check_nonnegative_float(self.weight_decay, "weight_decay")
        )
        object.__setattr__(self, "decoupled", check_bool(self.decoupled, "decoupled"))


@dataclass
class AdamState:
    """Mutable Adam state: steps taken and the first and second moment estimates."""

    exp_avg: FloatArray
    exp_avg_sq: FloatArray
    step: int = 0


def adam_init(n: int) -> AdamState:
    """A fresh Adam/AdamW state for ``n`` parameters."""
    return AdamState(exp_avg=np.zeros(n), exp_avg_sq=np.zeros(n))


def adam_scalars(step: int, config: AdamConfig) -> tuple[float, float]:
    """``(step_size, sqrt(bias_correction2))`` of step ``step`` (1-based), as torch."""
    t = float(step)
    bias_correction1 = 1.0 - config.beta1**t
    bias_correction2 = 1.0 - config.beta2**t
    return config.lr / bias_correction1, bias_correction2**0.5


def adam_step(
    x: FloatArray, grad: FloatArray, state: AdamState, config: AdamConfig, scratch: FloatArray
) -> None:
    """One Adam or AdamW step: update ``x`` and ``state`` in place.

    Args:
        x: the parameters, float64, shape ``(n,)``; updated in place.
        grad: the gradient at ``x``, shape ``(n,)``; not modified.
        state: from :func:`adam_init`; updated in place.
        config: the hyperparameters (``config.decoupled`` selects AdamW).
        scratch: a float64 work array of shape ``(2, n)``.

    Example:
        >>> import numpy as np
        >>> x = np.array([1.0]); state = adam_init(1)
        >>> adam_step(x, np.array([5.0]), state, AdamConfig(lr=0.1), np.empty((2, 1)))
        >>> round(float(x[0]), 6)   # the first Adam step moves by about lr
        0.9
    """
    state.step += 1
    m = state.exp_avg
    v = state.exp_avg_sq
    s0 = scratch[0]
    s1 = scratch[1]
    d = grad
    wd = config.weight_decay
    if wd != 0.0:
        if config.decoupled:
            x *= 1.0 - config.lr * wd  # torch: param.mul_(1 - lr * weight_decay)
        else:
            np.multiply(x, wd, out=s0)  # torch: grad.add(param, alpha=weight_decay)
            np.add(grad, s0, out=s0)
            d = s0
    # torch: exp_avg.lerp_(grad, 1 - beta1)
    weight = 1.0 - config.beta1
    np.subtract(d, m, out=s1)
    if abs(weight) < 0.5:
        s1 *= weight
        m += s1
    else:
        s1 *= 1.0 - weight
        np.subtract(d, s1, out=m)
    # torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    v *= config.beta2
    np.multiply(d, 1.0 - config.beta2, out=s1)
    s1 *= d
    v += s1
    step_size, bias_correction2_sqrt = adam_scalars(state.step, config)
    # torch: denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    np.sqrt(v, out=s1)
    s1 /= bias_correction2_sqrt
    s1 += config.eps
    # torch: param.addcdiv_(exp_avg, denom, value=-step_size)
    np.multiply(m, -step_size, out=s0)
    s0 /= s1
    x += s0
