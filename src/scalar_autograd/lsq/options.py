"""Solver options: their defaults, their meaning, and their validation, in one dataclass.

:class:`SolverOptions` states every default once and checks every field when it is
made, with the shared checks of :mod:`scalar_autograd.validation`: a bad option raises
before any work is done, naming the option, the rule and what was received, a
TypeError for the wrong kind of thing and a ValueError for a wrong value.

Example:
    >>> opts = validate_options(max_iterations=50)
    >>> opts.max_iterations, opts.loss
    (50, 'linear')
    >>> validate_options(max_iterations=0)
    Traceback (most recent call last):
    ...
    ValueError: `max_iterations` must be a positive integer; got 0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from scalar_autograd.lsq.losses import LOSSES
from scalar_autograd.validation import (
    check_bool,
    check_callback,
    check_choice,
    check_fields,
    check_nonnegative_float,
    check_optional,
    check_positive_float,
    check_positive_int,
)

JACOBIAN_MODES = ("auto", "compiled", "graph")
LINEAR_SOLVERS = ("auto", "dense", "sparse_cholesky", "sparse_lsmr", "schur")


@dataclass(frozen=True)
class SolverOptions:
    """Validated options of the Levenberg-Marquardt solver (see
    :func:`scalar_autograd.nonlinear_least_squares` for their meaning)."""

    max_iterations: int = 100
    cost_tolerance: float = 1e-10
    param_tolerance: float = 1e-10
    gradient_tolerance: float = 1e-10
    initial_damping: float | None = None
    loss: str = "linear"
    loss_scale: float = 1.0
    verbose: bool = False
    callback: Callable[..., Any] | None = None
    linear_solver: str = "auto"
    geodesic_acceleration: bool = False

    def __post_init__(self) -> None:
        check_fields(self, {
            "max_iterations": check_positive_int,
            "cost_tolerance": check_nonnegative_float,
            "param_tolerance": check_nonnegative_float,
            "gradient_tolerance": check_nonnegative_float,
            "initial_damping": check_optional(check_positive_float),
            "loss": partial(check_choice, choices=LOSSES),
            "loss_scale": check_positive_float,
            "verbose": check_bool,
            "callback": check_callback,
            "linear_solver": partial(check_choice, choices=LINEAR_SOLVERS),
            "geodesic_acceleration": check_bool,
        })


def validate_options(**options: Any) -> SolverOptions:
    """The options as a validated :class:`SolverOptions` (its defaults for the rest).

    Raises:
        TypeError: for an unknown option or an option of the wrong type (a str for a
            tolerance, a float or a bool for ``max_iterations``, a non-callable
            ``callback``, a non-bool ``verbose``).
        ValueError: for a value outside an option's rule (0 iterations, a negative or
            nan tolerance, an unknown loss name).
    """
    return SolverOptions(**options)


def validate_jacobian_mode(jacobian: Any) -> str:
    """Check the ``jacobian`` option ("auto", "compiled" or "graph")."""
    return check_choice(jacobian, "jacobian", JACOBIAN_MODES)
