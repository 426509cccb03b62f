"""Solver options: defaults, their documented meaning, and up-front validation.

Every bad option raises naming the option, the rule and what was received, before any
work is done: TypeError for the wrong kind of thing, ValueError for a wrong value (the
same split as :mod:`scalar_autograd.optim.validation`).

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

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scalar_autograd.lsq.losses import LOSSES

JACOBIAN_MODES = ("auto", "compiled", "graph")
LINEAR_SOLVERS = ("auto", "dense", "sparse_cholesky", "sparse_lsmr")

DEFAULT_COST_TOLERANCE = 1e-10
DEFAULT_PARAM_TOLERANCE = 1e-10
DEFAULT_GRADIENT_TOLERANCE = 1e-10


@dataclass(frozen=True)
class SolverOptions:
    """Validated options of the Levenberg-Marquardt solver (see
    :func:`scalar_autograd.nonlinear_least_squares` for their meaning)."""

    max_iterations: int = 100
    cost_tolerance: float = DEFAULT_COST_TOLERANCE
    param_tolerance: float = DEFAULT_PARAM_TOLERANCE
    gradient_tolerance: float = DEFAULT_GRADIENT_TOLERANCE
    initial_damping: float | None = None
    loss: str = "linear"
    loss_scale: float = 1.0
    verbose: bool = False
    callback: Callable[..., Any] | None = None
    linear_solver: str = "auto"
    geodesic_acceleration: bool = False


def _type_name(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be a positive integer; got {_type_name(value)}")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}")
    return int(value)


def _real(name: str, value: Any, rule: str) -> float:
    """``value`` as a float; TypeError unless it is a real number (bool is not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be {rule}; got {_type_name(value)}")
    try:
        return float(value)
    except OverflowError:           # an int beyond the float range
        raise ValueError(f"`{name}` must be {rule}; got {value!r}") from None


def _nonnegative_float(name: str, value: Any) -> float:
    rule = "a finite real number >= 0"
    number = _real(name, value, rule)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"`{name}` must be {rule}; got {value!r}")
    return number


def _positive_float(name: str, value: Any) -> float:
    rule = "a finite real number > 0"
    number = _real(name, value, rule)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"`{name}` must be {rule}; got {value!r}")
    return number


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    rule = f"one of {', '.join(map(repr, choices))}"
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be {rule}; got {_type_name(value)}")
    if value not in choices:
        raise ValueError(f"`{name}` must be {rule}; got {value!r}")
    return value


def validate_options(
    *,
    max_iterations: Any = 100,
    cost_tolerance: Any = DEFAULT_COST_TOLERANCE,
    param_tolerance: Any = DEFAULT_PARAM_TOLERANCE,
    gradient_tolerance: Any = DEFAULT_GRADIENT_TOLERANCE,
    initial_damping: Any = None,
    loss: Any = "linear",
    loss_scale: Any = 1.0,
    verbose: Any = False,
    callback: Any = None,
    linear_solver: Any = "auto",
    geodesic_acceleration: Any = False,
) -> SolverOptions:
    """Check every option and return them as a :class:`SolverOptions`.

    As :mod:`scalar_autograd.optim.validation`: the wrong kind of thing (a str for a
    tolerance, a float or a bool for ``max_iterations``, a non-callable ``callback``, a
    non-bool ``verbose``) raises TypeError, a value outside the option's rule (0
    iterations, a negative or nan tolerance, an unknown loss name) ValueError; both
    name the option, state its rule and echo what was received.

    Raises:
        TypeError: for an option of the wrong type.
        ValueError: for a value outside an option's rule.
    """
    if not isinstance(verbose, bool):
        raise TypeError(f"`verbose` must be a bool; got {type(verbose).__name__} {verbose!r}")
    if not isinstance(geodesic_acceleration, bool):
        raise TypeError(f"`geodesic_acceleration` must be a bool; got "
                        f"{type(geodesic_acceleration).__name__} {geodesic_acceleration!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable or None; got {type(callback).__name__}")
    return SolverOptions(
        max_iterations=_positive_int("max_iterations", max_iterations),
        cost_tolerance=_nonnegative_float("cost_tolerance", cost_tolerance),
        param_tolerance=_nonnegative_float("param_tolerance", param_tolerance),
        gradient_tolerance=_nonnegative_float("gradient_tolerance", gradient_tolerance),
        initial_damping=None if initial_damping is None
        else _positive_float("initial_damping", initial_damping),
        loss=_choice("loss", loss, LOSSES),
        loss_scale=_positive_float("loss_scale", loss_scale),
        verbose=verbose,
        callback=callback,
        linear_solver=_choice("linear_solver", linear_solver, LINEAR_SOLVERS),
        geodesic_acceleration=geodesic_acceleration,
    )


def validate_jacobian_mode(jacobian: Any) -> str:
    """Check the ``jacobian`` option ("auto", "compiled" or "graph")."""
    return _choice("jacobian", jacobian, JACOBIAN_MODES)
