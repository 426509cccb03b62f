"""Why a least-squares solve stopped: a typed version of scipy's termination table.

Each member's value is the human-readable message, so ``result.status.value`` and
``result.message`` always agree.

Example:
    >>> from scalar_autograd.lsq.status import Status
    >>> Status.GRADIENT_TOLERANCE.success
    True
    >>> Status.MAX_ITERATIONS.success
    False
"""

from __future__ import annotations

from enum import Enum


class Status(Enum):
    """Termination reason of :func:`scalar_autograd.nonlinear_least_squares`.

    The value is the message. :attr:`success` tells whether the reason is convergence.
    """

    GRADIENT_TOLERANCE = (
        "`gradient_tolerance` termination condition is satisfied: the residual vector "
        "is (almost) orthogonal to every column of the Jacobian"
    )
    COST_TOLERANCE = (
        "`cost_tolerance` termination condition is satisfied: the actual and the "
        "predicted relative reduction of the cost are both below it"
    )
    PARAM_TOLERANCE = (
        "`param_tolerance` termination condition is satisfied: the scaled step is "
        "below it relative to the scaled parameters"
    )
    COST_AND_PARAM_TOLERANCE = (
        "both `cost_tolerance` and `param_tolerance` termination conditions are satisfied"
    )
    ZERO_RESIDUAL = "the residuals are exactly zero"
    NO_PARAMS_AFFECT_RESIDUALS = (
        "no residual depends on any parameter: there is nothing to optimise"
    )
    MAX_ITERATIONS = "the maximum number of iterations (`max_iterations`) was reached"
    DAMPING_LIMIT = (
        "the damping grew past its limit without any step reducing the cost: no further "
        "progress is possible from the best point found (the tolerances may be too tight "
        "for the floating-point accuracy of the residuals)"
    )
    NONFINITE_INITIAL = "the residuals are not finite (nan or inf) at the initial parameters"
    NONFINITE_JACOBIAN = (
        "the Jacobian is not finite (nan or inf) at the best point found; stopped there"
    )
    CALLBACK_STOP = "the callback asked to stop"
    NOT_RUN = "not run: the batch was interrupted before this problem was solved"

    @property
    def success(self) -> bool:
        """True when the solve stopped because it converged (or had nothing to do)."""
        return self in _SUCCESS


_SUCCESS = frozenset({
    Status.GRADIENT_TOLERANCE,
    Status.COST_TOLERANCE,
    Status.PARAM_TOLERANCE,
    Status.COST_AND_PARAM_TOLERANCE,
    Status.ZERO_RESIDUAL,
    Status.NO_PARAMS_AFFECT_RESIDUALS,
})
