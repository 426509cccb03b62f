"""Solver options, bounds and ``sigma``: their defaults, their meaning, their validation.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

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
    check_real_array,
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


# ---------------------------------------------------------------------------- bounds
Bounds = tuple[np.ndarray, np.ndarray]
"""Validated bounds: ``(lower, upper)``, two read-only float64 arrays of length n."""


def _bound_side(value: Any, n: int, which: str, name: str) -> np.ndarray:
    side = check_real_array(value, f"{name} ({which})")
    if side.ndim == 0:
        side = np.full(n, float(side))
    elif side.shape != (n,):
        raise ValueError(f"{name} must be a pair (lower, upper) of scalars or arrays of "
                         f"length {n}, one per parameter (scipy's rule); {which} has shape "
                         f"{side.shape}")
    if np.any(np.isnan(side)):
        j = int(np.flatnonzero(np.isnan(side))[0])
        raise ValueError(f"{name} must not hold nan (use -inf or inf for no bound); "
                         f"{which}[{j}] is nan")
    side.flags.writeable = False
    return side


def validate_bounds(bounds: Any, n: int, name: str = "bounds") -> Bounds | None:
    """``bounds`` checked by scipy ``least_squares``'s rules, as ``(lower, upper)``.

    ``bounds`` is ``(lower, upper)``, each a scalar (the same bound for every
    parameter) or an array of ``n``; ``-inf``/``inf`` mean no bound. A
    ``scipy.optimize.Bounds`` (anything with ``lb`` and ``ub``) is accepted too.
    Every lower bound must be strictly below its upper bound.

    Args:
        bounds: the bounds, or None (no bounds).
        n: the number of parameters.
        name: the argument's name, for messages.

    Returns:
        ``(lower, upper)`` (read-only float64 arrays of ``n``), or None when there are
        no finite bounds at all (None, or every bound infinite): the problem is
        unbounded and the Levenberg-Marquardt loop solves it.

    Raises:
        TypeError: ``bounds`` is not a pair, or holds anything but real numbers.
        ValueError: a side of the wrong shape, a nan, or a lower bound not strictly
            below its upper bound (the message names the first such parameter).

    Example:
        >>> lower, upper = validate_bounds((0.0, [1.0, np.inf]), 2)
        >>> lower.tolist(), upper.tolist()
        ([0.0, 0.0], [1.0, inf])
        >>> validate_bounds((-np.inf, np.inf), 2) is None
        True
        >>> validate_bounds(([0.0, 2.0], 1.0), 2)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: bounds: each lower bound must be ...; parameter 1 has lower 2.0 >= upper 1.0
    """
    if bounds is None:
        return None
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        pair: Any = (bounds.lb, bounds.ub)
    else:
        pair = bounds
    rule = (f"{name} must be a pair (lower, upper) of scalars or arrays of length {n} "
            f"(or a scipy.optimize.Bounds)")
    if isinstance(pair, np.ndarray) and pair.ndim >= 1 and pair.shape[0] == 2:
        pair = list(pair)                   # a (2, n) array: its two rows
    if isinstance(pair, (str, bytes, np.ndarray)) or not isinstance(pair, Sequence):
        what = f"an array of shape {pair.shape}" if isinstance(pair, np.ndarray) \
            else f"{type(pair).__name__} {pair!r:.60}"
        raise TypeError(f"{rule}; got {what}")
    if len(pair) != 2:
        raise ValueError(f"{rule}; got {tuple(pair)!r:.80} ({len(pair)} items)")
    lower = _bound_side(pair[0], n, "lower", name)
    upper = _bound_side(pair[1], n, "upper", name)
    bad = np.flatnonzero(~(lower < upper))
    if bad.size:
        j = int(bad[0])
        raise ValueError(f"{name}: each lower bound must be below its upper bound "
                         f"(strictly: scipy's rule); parameter {j} has lower "
                         f"{float(lower[j])!r} >= upper {float(upper[j])!r}")
    if np.all(np.isneginf(lower)) and np.all(np.isposinf(upper)):
        return None
    return lower, upper


def check_feasible(x0: np.ndarray, bounds: Bounds, name: str = "x0") -> None:
    """Raise unless ``lower <= x0 <= upper`` (a start on a bound is allowed).

    scipy's ``least_squares`` raises for an infeasible start ("Initial guess is outside
    of provided bounds"), and so does every bounded solve here: no silent clipping.

    Raises:
        ValueError: naming the first parameter outside its bounds.
    """
    lower, upper = bounds
    outside = np.flatnonzero(~((x0 >= lower) & (x0 <= upper)))
    if outside.size:
        j = int(outside[0])
        more = f" (and {outside.size - 1} more)" if outside.size > 1 else ""
        raise ValueError(f"{name} is infeasible: {name}[{j}] = {float(x0[j])!r} is outside "
                         f"its bounds [{float(lower[j])!r}, {float(upper[j])!r}]{more}; "
                         f"start inside the bounds (scipy's least_squares raises too)")


BOUNDED_LINEAR_SOLVERS = ("auto", "dense", "sparse_lsmr")
"""The linear solvers of the bounded method: SVD for a dense Jacobian, LSMR for a
sparse one (scipy's ``tr_solver="exact"`` and ``"lsmr"``)."""


def check_bounded_options(opts: SolverOptions) -> None:
    """Raise for options the bounded method (scipy's ``trf``) does not have.

    Raises:
        ValueError: ``initial_damping`` or ``geodesic_acceleration`` (Levenberg-
            Marquardt's), or a ``linear_solver`` other than ``"auto"``, ``"dense"`` or
            ``"sparse_lsmr"`` (the bounded steps are solved by SVD or by LSMR).
    """
    if opts.initial_damping is not None:
        raise ValueError(f"`initial_damping` belongs to the Levenberg-Marquardt loop; a "
                         f"bounded solve (trust region reflective) starts its own damping "
                         f"at 0; got {opts.initial_damping!r} with bounds")
    if opts.geodesic_acceleration:
        raise ValueError("`geodesic_acceleration` belongs to the Levenberg-Marquardt loop; "
                         "it is not available with bounds; got True with bounds")
    if opts.linear_solver not in BOUNDED_LINEAR_SOLVERS:
        raise ValueError(f"`linear_solver` must be one of {', '.join(BOUNDED_LINEAR_SOLVERS)} "
                         f"with bounds (the bounded steps are solved by SVD, or by LSMR on "
                         f"a sparse Jacobian, as scipy's trf); got {opts.linear_solver!r}")


# ---------------------------------------------------------------------------- sigma
@dataclass(frozen=True)
class Weights:
    """Validated ``sigma``: residual ``i`` becomes ``r_i / sigma_i`` (1-D), or the
    residual vector ``L^-1 r`` with ``sigma = L L^T`` (a 2-D covariance matrix), as
    scipy ``curve_fit``."""

    inverse: np.ndarray | None = None       # 1 / sigma, (m,)
    cholesky: np.ndarray | None = None      # L, (m, m)

    def apply(self, r: np.ndarray, J: Any = None) -> tuple[np.ndarray, Any]:
        """The weighted residuals and Jacobian."""
        if self.inverse is not None:
            w = self.inverse
            if J is None:
                return r * w, None
            if hasattr(J, "tocsr"):
                Jw = J.tocsr(copy=True)
                Jw.data *= np.repeat(w, np.diff(Jw.indptr))
                return r * w, Jw
            return r * w, J * w[:, None]
        from scipy.linalg import solve_triangular

        L = self.cholesky
        rw = solve_triangular(L, r, lower=True)
        if J is None:
            return rw, None
        dense = J.toarray() if hasattr(J, "toarray") else np.asarray(J)
        return rw, solve_triangular(L, dense, lower=True)


def validate_sigma(sigma: Any, m: int, name: str = "sigma") -> Weights | None:
    """``sigma`` (None, a positive scalar, ``(m,)`` standard deviations or an ``(m, m)``
    covariance matrix) as :class:`Weights`, by scipy ``curve_fit``'s rules.

    Raises:
        TypeError: ``sigma`` holds anything but real numbers.
        ValueError: a wrong shape (the message gives ``m``), a standard deviation that
            is not positive and finite, or a covariance matrix that is not positive
            definite.

    Example:
        >>> validate_sigma([1.0, 2.0], 2).inverse.tolist()
        [1.0, 0.5]
    """
    if sigma is None:
        return None
    s = check_real_array(sigma, f"`{name}`")
    if s.ndim == 0:
        s = np.full(m, float(s))
    if s.ndim == 1:
        if s.shape != (m,):
            raise ValueError(f"`{name}` must be a scalar, ({m},) (one standard deviation "
                             f"per residual) or ({m}, {m}) (their covariance); got shape "
                             f"{s.shape}")
        bad = np.flatnonzero(~((s > 0) & np.isfinite(s)))
        if bad.size:
            raise ValueError(f"`{name}` must hold positive finite standard deviations; "
                             f"{name}[{int(bad[0])}] is {float(s[bad[0]])!r}")
        return Weights(inverse=1.0 / s)
    if s.shape != (m, m):
        raise ValueError(f"`{name}` must be a scalar, ({m},) (one standard deviation per "
                         f"residual) or ({m}, {m}) (their covariance); got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"`{name}` (a covariance matrix) must hold finite numbers")
    try:
        L = np.linalg.cholesky(s)
    except np.linalg.LinAlgError:
        raise ValueError(f"`{name}` (a covariance matrix) must be positive definite") \
            from None
    return Weights(cholesky=L)
