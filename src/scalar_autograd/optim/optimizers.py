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
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

import numpy as np

from scalar_autograd.optim.equations import (
    AdamConfig,
    AdamWConfig,
    FloatArray,
    SGDConfig,
    UpdateRule,
    rule_for,
)
from scalar_autograd.validation import (
    check_nonnegative_int,
    check_pair,
    check_params,
    check_real_array,
)
from scalar_autograd.value import Value

_STATE_DICT_KEYS = {"optimizer", "num_params", "hyperparameters", "state"}

ConfigT = TypeVar("ConfigT", SGDConfig, AdamConfig)


class Optimizer(Generic[ConfigT]):
    """Common part of the ``Value`` optimisers: parameters, flat buffers, the loop API.

    The update itself is the config's rule (:mod:`.equations`); subclasses turn their
    arguments into a config and name their hyperparameters in ``state_dict``.
    """

    def __init__(self, params: Iterable[Value], config: ConfigT) -> None:
        self.params: list[Value] = check_params(params)
        n = len(self.params)
        self._config: ConfigT = config
        self._rule: UpdateRule = rule_for(config)
        self._state: Any = self._rule.init(n)
        self._x: FloatArray = np.empty(n)
        self._g: FloatArray = np.empty(n)

    @property
    def config(self) -> ConfigT:
        """The validated hyperparameters."""
        return self._config

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
        self._rule.step(self._config, self._state, x, g)
        for p, xi in zip(params, x.tolist()):
            p.data = xi

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
        self._state = new_state

    def _hyperparameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def _config_from(self, hyper: Mapping[str, Any]) -> ConfigT:
        raise NotImplementedError

    def _state_items(self) -> dict[str, Any]:
        vectors = {name: getattr(self._state, name).tolist()
                   for name in self._rule.state_vectors}
        return {"step": self._state.step, **vectors}

    def _state_from(self, state: Mapping[str, Any]) -> Any:
        names: tuple[str, ...] = self._rule.state_vectors
        _check_keys(state, {"step", *names}, "state_dict['state']")
        n = len(self.params)
        new = self._rule.init(n)
        new.step = check_nonnegative_int(state["step"], "state_dict['state']['step']")
        for name in names:
            setattr(new, name, _check_vector(state[name], n, name))
        return new

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyperparameters().items())
        return f"{type(self).__name__}({len(self.params)} params, {hyper})"


def _check_keys(mapping: Mapping[str, Any], expected: set[str], what: str) -> None:
    if set(mapping) != expected:
        raise ValueError(
            f"`{what}` must have exactly the keys {sorted(expected)}; "
            f"got {sorted(map(str, mapping))}"
        )


def _check_vector(values: Any, n: int, name: str) -> FloatArray:
    path = f"state_dict['state']['{name}']"
    a = check_real_array(values, f"`{path}`")
    if a.shape != (n,):
        raise ValueError(f"`{path}` must hold {n} floats; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{path}` must hold finite numbers; got {values!r:.80}")
    return a


class SGD(Optimizer[SGDConfig]):
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

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = SGDConfig.lr,
        momentum: float = SGDConfig.momentum,
        nesterov: bool = SGDConfig.nesterov,
        weight_decay: float = SGDConfig.weight_decay,
    ) -> None:
        super().__init__(params, SGDConfig(lr=lr, momentum=momentum, nesterov=nesterov,
                                           weight_decay=weight_decay))

    def _hyperparameters(self) -> dict[str, Any]:
        c = self._config
        return {"lr": c.lr, "momentum": c.momentum, "nesterov": c.nesterov,
                "weight_decay": c.weight_decay}

    def _config_from(self, hyper: Mapping[str, Any]) -> SGDConfig:
        _check_keys(hyper, {"lr", "momentum", "nesterov", "weight_decay"},
                    "state_dict['hyperparameters']")
        return SGDConfig(**hyper)


class Adam(Optimizer[AdamConfig]):
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

    _config_class: type[AdamConfig] = AdamConfig

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = AdamConfig.lr,
        betas: tuple[float, float] = (AdamConfig.beta1, AdamConfig.beta2),
        eps: float = AdamConfig.eps,
        weight_decay: float = AdamConfig.weight_decay,
    ) -> None:
        super().__init__(params, self._make_config(lr=lr, betas=betas, eps=eps,
                                                   weight_decay=weight_decay))

    def _hyperparameters(self) -> dict[str, Any]:
        c = self._config
        return {"lr": c.lr, "betas": [c.beta1, c.beta2], "eps": c.eps,
                "weight_decay": c.weight_decay}

    def _make_config(self, *, lr: Any, betas: Any, eps: Any, weight_decay: Any) -> AdamConfig:
        beta1, beta2 = check_pair(betas, "betas")
        return self._config_class(lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                  weight_decay=weight_decay)

    def _config_from(self, hyper: Mapping[str, Any]) -> AdamConfig:
        _check_keys(hyper, {"lr", "betas", "eps", "weight_decay"},
                    "state_dict['hyperparameters']")
        return self._make_config(lr=hyper["lr"], betas=hyper["betas"], eps=hyper["eps"],
                                 weight_decay=hyper["weight_decay"])

    def _state_from(self, state: Mapping[str, Any]) -> Any:
        new = super()._state_from(state)
        if np.any(new.exp_avg_sq < 0.0):
            raise ValueError("`state_dict['state']['exp_avg_sq']` must be >= 0 everywhere")
        return new


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

    _config_class = AdamWConfig

    def __init__(
        self,
        params: Iterable[Value],
        lr: float = AdamWConfig.lr,
        betas: tuple[float, float] = (AdamWConfig.beta1, AdamWConfig.beta2),
        eps: float = AdamWConfig.eps,
        weight_decay: float = AdamWConfig.weight_decay,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
