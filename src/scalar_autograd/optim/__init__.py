"""Optimisers (SGD, Adam, AdamW, L-BFGS) on float64 vectors and their ``Value`` wrappers."""

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
from scalar_autograd.optim.lbfgs import LBFGSConfig, lbfgs, lbfgs_minimize
from scalar_autograd.optim.line_search import LineSearchResult, StrongWolfe
from scalar_autograd.optim.minimize import minimize
from scalar_autograd.optim.optimizers import SGD, Adam, AdamW, Optimizer
from scalar_autograd.optim.result import OptimizeResult, Status

__all__ = [
    "SGD", "Adam", "AdamW", "Optimizer", "clip_grad_norm", "clip_by_global_norm",
    "global_norm", "SGDConfig", "SGDState", "sgd_init", "sgd_step", "AdamConfig",
    "AdamWConfig", "AdamState", "adam_init", "adam_step", "lbfgs", "lbfgs_minimize", "LBFGSConfig",
    "StrongWolfe", "minimize", "batch_minimize", "BatchMinimizeResult", "LineSearchResult",
    "OptimizeResult", "Status",
]
