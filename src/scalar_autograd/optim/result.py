"""``OptimizeResult`` and ``Status``: what every optimiser and solver returns.

The status is an enum whose value is the human-readable message (scipy's termination
table, typed); ``success`` and ``message`` follow from it.

Example:
    >>> import numpy as np
    >>> r = OptimizeResult(x=np.array([1.0]), fun=0.0, grad_norm=0.0, iterations=3,
    ...                    nfev=4, status=Status.CONVERGED_GRADIENT)
    >>> r.success, r.message
    (True, 'converged: the gradient norm is at most gradient_tolerance')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from scalar_autograd.optim.equations import FloatArray


class Status(Enum):
    """Why an optimiser stopped; the value is the message.

    ====================  =======  =====================================================
    member                success  when
    ====================  =======  =====================================================
    CONVERGED_GRADIENT    yes      ``max |g_i| <= gradient_tolerance`` (with bounds:
                                   of the projected gradient)
    CONVERGED_FTOL        yes      ``(f_k - f_k+1) / max(|f_k|, |f_k+1|, 1) <= ftol``
    COMPLETED             yes      a first-order method ran all ``max_iterations`` steps
    MAX_ITERATIONS        no       L-BFGS reached ``max_iterations`` unconverged
    MAX_EVALUATIONS       no       L-BFGS reached ``max_evaluations`` unconverged
    LINE_SEARCH_FAILED    no       no step decreased the objective, even along ``-g``
    NON_FINITE            no       the objective (or, at the start, the gradient) is
                                   nan or inf at the current iterate
    CALLBACK_STOP         no       the callback returned ``True``
    NOT_RUN               no       a batch was interrupted before this problem ran
    NO_PROGRESS           no       trust-region Newton: the model predicts no decrease,
                                   or the step no longer changes ``x`` (rounding)
    ====================  =======  =====================================================
    """

    CONVERGED_GRADIENT = "converged: the gradient norm is at most gradient_tolerance"
    CONVERGED_FTOL = (
        "converged: the relative reduction of the objective is at most ftol"
    )
    COMPLETED = "completed: ran the requested number of iterations"
    MAX_ITERATIONS = "stopped: reached max_iterations before convergence"
    MAX_EVALUATIONS = "stopped: reached max_evaluations before convergence"
    LINE_SEARCH_FAILED = (
        "failed: the line search found no step satisfying the strong Wolfe conditions"
    )
    NON_FINITE = "failed: the objective or its gradient is not finite"
    CALLBACK_STOP = "stopped: the callback asked to stop"
    NOT_RUN = "not run: the batch was interrupted before this problem was solved"
    NO_PROGRESS = (
        "stopped: no trust-region step decreases the objective at this precision "
        "(gradient_tolerance may be below rounding)"
    )

    @property
    def success(self) -> bool:
        """True for the statuses that count as a successful run."""
        return self in _SUCCESS


_SUCCESS = frozenset({Status.CONVERGED_GRADIENT, Status.CONVERGED_FTOL, Status.COMPLETED})


@dataclass(frozen=True)
class OptimizeResult:
    """The outcome of an optimisation run.

    Attributes:
        x: the final parameter vector (a read-only float64 copy).
        fun: the objective at ``x``.
        grad_norm: the infinity norm ``max |g_i|`` of the gradient at ``x``.
        iterations: the number of iterations (optimiser steps) taken.
        nfev: the number of objective-and-gradient evaluations.
        status: why the run stopped.
        message: ``status.value``.
        success: ``status.success``.
        history: with ``history=True``, the objective at every iterate
            ``x_0, x_1, ..., x_iterations`` (so ``history[-1] == fun``); else ``None``.
        active_mask: for a run with ``bounds``, which bound holds each variable at
            ``x``: ``-1`` at its lower bound with the gradient pushing it further down
            (``g_i > 0``), ``1`` at its upper bound with ``g_i < 0``, ``0`` otherwise
            (a read-only int8 array, as ``scipy.optimize.least_squares``' field);
            ``None`` for a run without bounds. With bounds, ``grad_norm`` is the
            infinity norm of the projected gradient ``x - P(x - g)``.
    """

    x: FloatArray
    fun: float
    grad_norm: float
    iterations: int
    nfev: int
    status: Status
    history: tuple[float, ...] | None = None
    active_mask: np.ndarray | None = None
    message: str = field(init=False)
    success: bool = field(init=False)

    def __post_init__(self) -> None:
        x = np.array(self.x, dtype=np.float64, copy=True)
        x.setflags(write=False)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "fun", float(self.fun))
        object.__setattr__(self, "grad_norm", float(self.grad_norm))
        if self.history is not None:
            object.__setattr__(self, "history", tuple(float(h) for h in self.history))
        if self.active_mask is not None:
            mask = np.array(self.active_mask, dtype=np.int8, copy=True)
            mask.setflags(write=False)
            object.__setattr__(self, "active_mask", mask)
        object.__setattr__(self, "message", self.status.value)
        object.__setattr__(self, "success", self.status.success)

    def __repr__(self) -> str:
        bounds = ("" if self.active_mask is None else
                  f", active_mask={np.array2string(self.active_mask, threshold=8)}")
        return (
            f"OptimizeResult(success={self.success}, status={self.status.name}, "
            f"fun={self.fun!r}, grad_norm={self.grad_norm!r}, iterations={self.iterations}, "
            f"nfev={self.nfev}, x={np.array2string(self.x, threshold=8)}{bounds})"
        )
