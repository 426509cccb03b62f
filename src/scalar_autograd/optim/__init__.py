"""Optimisers (SGD, Adam, AdamW, L-BFGS, L-BFGS-B) on float64 vectors and their ``Value`` API.

Three levels, each public:

* the ``Value`` level (also ``sa.minimize``, ``sa.lbfgs``, ``sa.SGD``, ``sa.Adam``,
  ``sa.AdamW``): a loss built from ``Value`` params, the params updated in place;
* the flat solvers :func:`lbfgs_minimize` and :func:`lbfgsb_minimize`, on an oracle
  ``fun_and_grad(x) -> (f, g)`` of float64 vectors;
* the functional optimiser steps, optax-style: a frozen config
  (:class:`SGDConfig`, :class:`AdamConfig`, :class:`AdamWConfig`), a state made by
  :func:`sgd_init` / :func:`adam_init`, and a step :func:`sgd_step` / :func:`adam_step`
  that updates a float64 vector and the state in place from a gradient. They are the
  update equations ``sa.SGD``/``sa.Adam`` and ``sa.minimize`` run (the same iterates,
  bit for bit, as ``torch.optim``'s single-tensor path to rounding), for a loop of your
  own around a compiled function:

Example:
    >>> import numpy as np
    >>> import scalar_autograd as sa
    >>> from scalar_autograd.optim import AdamConfig, adam_init, adam_step
    >>> w = [sa.Value(0.0), sa.Value(0.0)]
    >>> f = sa.compile((w[0] - 1.0) ** 2 + (w[1] + 2.0) ** 2, w)
    >>> x, grad = np.zeros(2), np.zeros(2)
    >>> config, state = AdamConfig(lr=0.05), adam_init(2)
    >>> for _ in range(1000):
    ...     loss, _ = f.value_and_grad(x, out=grad)
    ...     adam_step(x, grad, state, config)
    >>> np.round(x, 3).tolist(), state.step
    ([1.0, -2.0], 1000)
"""

from scalar_autograd.optim.batch import BatchMinimizeResult, batch_minimize
from scalar_autograd.optim.clip import clip_by_global_norm, clip_grad_norm, global_norm
from scalar_autograd.optim.equations import (
    AdamConfig,
    AdamState,
    AdamWConfig,
    SGDConfig,
    SGDState,
    adam_init,
    adam_step,
    sgd_init,
    sgd_step,
)
from scalar_autograd.optim.lbfgs import LBFGSConfig, lbfgs_minimize
from scalar_autograd.optim.lbfgsb import check_bounds, lbfgsb_minimize
from scalar_autograd.optim.line_search import LineSearchResult, MoreThuente, StrongWolfe
from scalar_autograd.optim.minimize import lbfgs, minimize
from scalar_autograd.optim.newton import (
    NewtonConfig,
    NewtonOracle,
    compiled_oracle,
    newton_minimize,
    newton_oracle,
)
from scalar_autograd.optim.optimizers import SGD, Adam, AdamW, Optimizer
from scalar_autograd.optim.result import OptimizeResult, Status

__all__ = [
    "SGD", "Adam", "AdamW", "Optimizer", "clip_grad_norm", "clip_by_global_norm",
    "global_norm", "SGDConfig", "SGDState", "sgd_init", "sgd_step", "AdamConfig",
    "AdamWConfig", "AdamState", "adam_init", "adam_step", "lbfgs", "lbfgs_minimize",
    "lbfgsb_minimize", "check_bounds", "LBFGSConfig", "StrongWolfe", "MoreThuente",
    "minimize", "batch_minimize", "BatchMinimizeResult", "LineSearchResult",
    "OptimizeResult", "Status", "NewtonConfig", "NewtonOracle", "compiled_oracle",
    "newton_minimize", "newton_oracle",
]
