"""Stateful SGD, Adam and AdamW for ``Value`` parameters: the PyTorch-style loop.

Each optimiser is a thin wrapper around the vector equations in
:mod:`scalar_autograd.optim.equations`: ``step()`` gathers ``.data`` and ``.grad`` of the
parameters into float64 vectors, applies one update and writes ``.data`` back. The
gradient may come from ``backward()`` or from compiled gradients; the update is the same.

Example:
    >>> import scalar_autograd as sa
    >>> x = sa.Value(3.0, requires_grad=True)
    >>> opt = sa.SGD([x], 0.1)
    >>> for _ in range(100):
    ...     opt.zero_grad()
    ...     loss = (x - 1.0) * (x - 1.0)
    ...     loss.backward()
    ...     opt.step()
    >>> round(x.data, 6)
    1.0
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from scalar_autograd.optim.equations import (
    AdamConfig,
    AdamState,
    FloatArray,
    SGDConfig,
    SGDState,
    adam_init,
    adam_step,
    sgd_init,
    sgd_step,
)
from scalar_autograd.optim.validation import check_betas, check_params
from scalar_autograd.value import Value

_STATE_DICT_KEYS = {"optimizer", "num_params", "hyperparameters", "state"}


class Optimizer:
    """Common part of the ``Value`` optimisers: parameters, flat buffers, the loop API.

    Subclasses provide the config, the state and one vector update.
    """

    _config: Any

    def __init__(self, params: Iterable[Value]) -> None:
        self.params: list[Value] = check_params(params)
        n = len(self.params)
        self._x: FloatArray = np.empty(n)
        self._g: FloatArray = np.empty(n)
        self._scratch: FloatArray = np.empty((2, n))

    # ------------------------------------------------------------------ loop API
    @property
    def lr(self) -> float:
        """The learning rate; may be changed between steps (validated: must be > 0)."""
        return float(self._config.lr)

    @lr.setter
    def lr(self, value: float) -> None:
        self._config = dataclasses.replace(self._config, lr=value)

    def zero_grad(self) -> None:
        """Set ``grad`` of every parameter to 0."""
        for p in self.params:
            p.grad = 0.0

    def step(self) -> None:
        """Apply one update from the parameters' current ``.grad``."""
        params = self.params
        x = self._x
        g = self._g
        x[:] = [p.data for p in params]
        g[:] = [p.grad for p in params]
        self._update(x, g)
        for p, xi in zip(params, x.tolist()):
            p.data = xi

    def _update(self, x: FloatArray, g: FloatArray) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """A plain-data snapshot (lists and floats, JSON-serialisable) of the optimiser.

        Keys: ``optimizer`` (class name), ``num_params``, ``hyperparameters`` and
        ``state`` (step count and per-parameter buffers, in parameter order).
        """
        return {
            "optimizer": type(self).__name__,
            "num_params": len(self.params),
            "hyperparameters": self._hyperparameters(),
            "state": self._state_items(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a snapshot from :meth:`state_dict` (hyperparameters included).

        Everything is validated before anything is changed.

        Raises:
            TypeError: if ``state_dict`` or one of its entries has the wrong type.
            ValueError: if it belongs to another optimiser class, another number of
                parameters, or holds invalid hyperparameters or buffers.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"`state_dict` must be a mapping; got {type(state_dict).__name__}"
            )
        keys = set(state_dict)
        if keys != _STATE_DICT_KEYS:
            raise ValueError(
                f"`state_dict` must have exactly the keys {sorted(_STATE_DICT_KEYS)}; "
                f"got {sorted(map(str, keys))}"
            )
        name = type(self).__name__
        if state_dict["optimizer"] != name:
            raise ValueError(
                f"`state_dict` belongs to optimizer {state_dict['optimizer']!r}, not {name!r}"
            )
        n = len(self.params)
        if state_dict["num_params"] != n:
            raise ValueError(
                f"`state_dict` is for {state_dict['num_params']!r} parameters; "
                f"this optimizer has {n}"
            )
        hyper = state_dict["hyperparameters"]
        if not isinstance(hyper, Mapping):
            raise TypeError(
                f"`state_dict['hyperparameters']` must be a mapping; got {type(hyper).__name__}"
            )
        config = self._config_from(hyper)
        state = state_dict["state"]
        if not isinstance(state, Mapping):
            raise TypeError(f"`state_dict['state']` must be a mapping; got {type(state).__name__}")
        new_state = self._state_from(state)
        self._config = config
        self._set_state(new_state)

    def _hyperparameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def _config_from(self, hyper: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def _state_items(self) -> dict[str, Any]:
        raise NotImplementedError

    def _state_from(self, state: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def _set_state(self, state: Any) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyperparameters().items())
        return f"{type(self).__name__}({len(self.params)} params, {hyper})"


def _check_keys(mapping: Mapping[str, Any], expected: set[str], what: str) -> None:
    if set(mapping) != expected:
        raise ValueError(
            f"`{what}` must have exactly the keys {sorted(expected)}; "
            f"got {sorted(map(str, mapping))}"
        )


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"`state_dict['state']['step']` must be an int >= 0; got {step!r}")
    return int(step)


def _check_vector(values: Any, n: int, name: str) -> FloatArray:
    path = f"state_dict['state']['{name}']"
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"`{path}` must be a sequence of {n} floats; got {type(values).__name__}")
    items = list(values)
    if len(items) != n:
        raise ValueError(f"`{path}` must hold {n} floats; got {len(items)}")
    for i, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"`{path}[{i}]` must be a finite real number; got {v!r}")
    return np.array(items, dtype=np.float64)


def _get(hyper: Mapping[str, Any], key: str) -> Any:
    if key not in hyper:
        raise ValueError(f"`state_dict['hyperparameters']` is missing {key!r}")
    return hyper[key]


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    Args:
        params: the leaf ``Value``s to optimise (``requires_grad=True``, no duplicates).
        lr: learning rate, > 0.
        momentum: heavy-ball coefficient, >= 0 (no dampening).
        nesterov: use Nesterov momentum (needs ``momentum`` > 0).
        weight_decay: L2 penalty added to the gradient, >= 0.

    Raises:
        TypeError, ValueError: for an invalid parameter list or option (named).

    Example:
        >>> import scalar_autograd as sa
        >>> w = sa.Value(1.0, requires_grad=True)
        >>> opt = sa.SGD([w], 0.1, momentum=0.9)
        >>> (w * w).backward(); opt.step()
        >>> w.data
        0.8
    """

    _config: SGDConfig

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        config = SGDConfig(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params)
        self._config = config
        self._state: SGDState = sgd_init(len(self.params))

    @property
    def config(self) -> SGDConfig:
        """The validated hyperparameters."""
        return self._config

    def _update(self, x: FloatArray, g: FloatArray) -> None:
        sgd_step(x, g, self._state, self._config, self._scratch)

    def _hyperparameters(self) -> dict[str, Any]:
        c = self._config
        return {"lr": c.lr, "momentum": c.momentum, "nesterov": c.nesterov,
                "weight_decay": c.weight_decay}

    def _config_from(self, hyper: Mapping[str, Any]) -> SGDConfig:
        _check_keys(hyper, {"lr", "momentum", "nesterov", "weight_decay"},
                    "state_dict['hyperparameters']")
        return SGDConfig(lr=_get(hyper, "lr"), momentum=_get(hyper, "momentum"),
                         nesterov=_get(hyper, "nesterov"),
                         weight_decay=_get(hyper, "weight_decay"))

    def _state_items(self) -> dict[str, Any]:
        return {"step": self._state.step,
                "momentum_buffer": self._state.momentum_buffer.tolist()}

    def _state_from(self, state: Mapping[str, Any]) -> SGDState:
        _check_keys(state, {"step", "momentum_buffer"}, "state_dict['state']")
        step = _check_step(state["step"])
        buf = _check_vector(state["momentum_buffer"], len(self.params), "momentum_buffer")
        return SGDState(momentum_buffer=buf, step=step)

    def _set_state(self, state: SGDState) -> None:
        self._state = state


class Adam(Optimizer):
    """Adam (Kingma & Ba) with L2 weight decay added to the gradient, as ``torch.optim.Adam``.

    Args:
        params: the leaf ``Value``s to optimise (``requires_grad=True``, no duplicates).
        lr: learning rate, > 0.
        betas: decay rates of the first and second moment estimates, each in [0, 1).
        eps: added to the denominator, > 0.
        weight_decay: L2 penalty added to the gradient, >= 0.

    Raises:
        TypeError, ValueError: for an invalid parameter list or option (named).

    Example:
        >>> import scalar_autograd as sa
        >>> w = sa.Value(1.0, requires_grad=True)
        >>> opt = sa.Adam([w], lr=0.1)
        >>> (w * w).backward(); opt.step()
        >>> round(w.data, 6)     # the first Adam step moves by about lr
        0.9
    """

    _config: AdamConfig
    _decoupled = False

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        beta1, beta2 = check_betas(betas)
        config = AdamConfig(lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                            weight_decay=weight_decay, decoupled=self._decoupled)
        super().__init__(params)
        self._config = config
        self._state: AdamState = adam_init(len(self.params))

    @property
    def config(self) -> AdamConfig:
        """The validated hyperparameters."""
        return self._config

    def _update(self, x: FloatArray, g: FloatArray) -> None:
        adam_step(x, g, self._state, self._config, self._scratch)

    def _hyperparameters(self) -> dict[str, Any]:
        c = self._config
        return {"lr": c.lr, "betas": [c.beta1, c.beta2], "eps": c.eps,
                "weight_decay": c.weight_decay}

    def _config_from(self, hyper: Mapping[str, Any]) -> AdamConfig:
        _check_keys(hyper, {"lr", "betas", "eps", "weight_decay"},
                    "state_dict['hyperparameters']")
        beta1, beta2 = check_betas(hyper["betas"])
        return AdamConfig(lr=hyper["lr"], beta1=beta1, beta2=beta2, eps=hyper["eps"],
                          weight_decay=hyper["weight_decay"], decoupled=self._decoupled)

    def _state_items(self) -> dict[str, Any]:
        s = self._state
        return {"step": s.step, "exp_avg": s.exp_avg.tolist(),
                "exp_avg_sq": s.exp_avg_sq.tolist()}

    def _state_from(self, state: Mapping[str, Any]) -> AdamState:
        _check_keys(state, {"step", "exp_avg", "exp_avg_sq"}, "state_dict['state']")
        n = len(self.params)
        step = _check_step(state["step"])
        m = _check_vector(state["exp_avg"], n, "exp_avg")
        v = _check_vector(state["exp_avg_sq"], n, "exp_avg_sq")
        if np.any(v < 0.0):
            raise ValueError("`state_dict['state']['exp_avg_sq']` must be >= 0 everywhere")
        return AdamState(exp_avg=m, exp_avg_sq=v, step=step)

    def _set_state(self, state: AdamState) -> None:
        self._state = state


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    Each step first shrinks the parameters, ``x *= 1 - lr * weight_decay``, then takes
    an Adam step on the undecayed gradient.

    Args:
        params: the leaf ``Value``s to optimise (``requires_grad=True``, no duplicates).
        lr: learning rate, > 0.
        betas: decay rates of the moment estimates, each in [0, 1).
        eps: added to the denominator, > 0.
        weight_decay: decoupled decay rate, >= 0 (default 1e-2 as PyTorch).

    Example:
        >>> import scalar_autograd as sa
        >>> w = sa.Value(1.0, requires_grad=True)
        >>> opt = sa.AdamW([w], lr=0.1, weight_decay=0.5)
        >>> w.grad = 0.0; opt.step()    # zero gradient: only the decay acts
        >>> w.data
        0.95
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
