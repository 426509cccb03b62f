"""Gradient checking for users and tests: ``check_grads`` compares AD with finite differences.

In the spirit of ``jax.test_util.check_grads``: the directional derivative of ``f`` that
automatic differentiation gives, ``grad f(x) . v``, is compared with a central finite
difference of ``f`` along ``v`` for several random unit directions ``v``. A failure
raises ``AssertionError`` with the analytic and numeric values side by side.

Differentiation modes are looked up by name in :data:`MODES`: ``"rev"`` (eager
``Value.backward()``), ``"fwd"`` (forward mode on the IR, compiled) and ``"jit"``
(reverse mode on the IR, compiled). This module sits above the runtime in the layers,
so it lists the compiled modes of :mod:`scalar_autograd.runtime.check` directly;
:func:`register_mode` adds others.

Example:
    >>> import scalar_autograd as sa
    >>> def f(x):
    ...     return sa.sin(x[0]) * x[1] + x[1] ** 2
    >>> sa.check_grads(f, [0.3, -1.2])   # passes silently
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from scalar_autograd.modes import no_grad
from scalar_autograd.runtime.check import compiled_forward, compiled_reverse
from scalar_autograd.value import Value

__all__ = ["check_grads", "register_mode", "MODES", "Function", "DirectionalDerivative"]

_ULP = 2.0**-52

Function = Callable[[list[Value]], Any]
"""What ``check_grads`` differentiates: a list of ``Value``s in, a scalar ``Value`` out."""

DirectionalDerivative = Callable[[Function, list[float], list[list[float]]], list[float]]
"""A differentiation mode: ``(f, x, directions) -> [grad f(x) . v for v in directions]``."""


def _reverse_mode(f: Function, x: list[float], directions: list[list[float]]) -> list[float]:
    """Eager reverse mode: one ``backward()`` gives the gradient, then dot products."""
    leaves = [Value(xi, label=f"x[{i}]", requires_grad=True) for i, xi in enumerate(x)]
    y = f(leaves)
    if isinstance(y, Value) and y.requires_grad:
        y.backward()
        grad = [leaf.grad for leaf in leaves]
    else:  # f does not depend on x at all (or returned a plain number)
        _scalar(y)
        grad = [0.0] * len(x)
    return [math.fsum(g * vi for g, vi in zip(grad, v, strict=True)) for v in directions]


MODES: dict[str, DirectionalDerivative] = {
    "rev": _reverse_mode, "fwd": compiled_forward, "jit": compiled_reverse,
}
"""Differentiation modes ``check_grads`` can check, by name."""


def register_mode(name: str, directional: DirectionalDerivative) -> None:
    """Make ``check_grads(..., modes=(name,))`` available for a mode of your own.

    Args:
        name: the mode's name.
        directional: ``(f, x, directions) -> [grad f(x) . v for v in directions]``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str; got {name!r}")
    if not callable(directional):
        raise TypeError(f"directional must be callable; got {type(directional).__name__}")
    MODES[name] = directional


def _scalar(y: Any) -> float:
    if isinstance(y, Value):
        return y.data
    if isinstance(y, (int, float)) and not isinstance(y, bool):
        return float(y)
    raise TypeError(f"f must return a Value or a real number; got {type(y).__name__} {y!r}")


def _evaluate(f: Function, x: Sequence[float]) -> float:
    with no_grad():
        return _scalar(f([Value(xi) for xi in x]))


def _numeric_directional(
    f: Function, x: list[float], v: list[float], eps: float
) -> tuple[float, float]:
    """Fourth-order central difference ``(f(-2h) - 8f(-h) + 8f(h) - f(2h)) / 12h``.

    Returns the estimate and a bound on its rounding error, ``18 ulp(max |f|) / 12h``.
    """

    def at(t: float) -> float:
        return _evaluate(f, [xi + t * vi for xi, vi in zip(x, v, strict=True)])

    fm2, fm1, fp1, fp2 = at(-2 * eps), at(-eps), at(eps), at(2 * eps)
    estimate = (fm2 - 8 * fm1 + 8 * fp1 - fp2) / (12 * eps)
    biggest = max(abs(fm2), abs(fm1), abs(fp1), abs(fp2))
    return estimate, 18 * _ULP * biggest / (12 * eps)


def _random_directions(n: int, count: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    directions = []
    for _ in range(count):
        v = [rng.gauss(0.0, 1.0) for _ in range(n)]
        norm = math.sqrt(math.fsum(vi * vi for vi in v)) or 1.0
        directions.append([vi / norm for vi in v])
    return directions


def _as_floats(x: Any) -> list[float]:
    if isinstance(x, (Value, int, float)) or not isinstance(x, Sequence):
        raise TypeError(f"x must be a sequence of numbers or Values; got {type(x).__name__}")
    out = []
    for i, xi in enumerate(x):
        value = xi.data if isinstance(xi, Value) else xi
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"x[{i}] must be a real number or a Value; got {xi!r}")
        out.append(float(value))
    return out


def check_grads(
    f: Function,
    x: Sequence[float | Value],
    *,
    order: int = 1,
    modes: Sequence[str] = ("rev",),
    eps: float = 1e-3,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    n_directions: int = 4,
    seed: int = 0,
) -> None:
    """Check the derivatives of ``f`` at ``x`` against finite differences.

    For each of ``n_directions`` random unit directions ``v``, the directional
    derivative ``grad f(x) . v`` computed by each mode in ``modes`` must satisfy
    ``|analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|) + rounding``,
    where ``numeric`` is a fourth-order central difference with step ``eps`` and
    ``rounding`` bounds its floating-point error (``18 ulp(max |f|) / 12 eps``), so a
    large ``f`` with a small slope is not judged more strictly than arithmetic allows.

    Args:
        f: takes a list of ``Value``s (one per entry of ``x``) and returns a scalar
            ``Value``. It is also called on non-differentiable ``Value``s under
            ``no_grad()`` for the finite differences, so it must not require floats.
        x: the point, as numbers or ``Value``s (their ``data`` is used).
        order: derivative order to check; only 1 until higher-order derivatives exist.
        modes: names of differentiation modes in :data:`MODES` (``"rev"`` built in).
        eps: finite-difference step along a unit direction.
        rtol: relative tolerance.
        atol: absolute tolerance.
        n_directions: how many random directions to try.
        seed: seed of the random directions (the check is deterministic).

    Raises:
        AssertionError: when a mode disagrees with the finite differences; the message
            lists analytic and numeric values side by side.
        TypeError: ``f`` returns something other than a number/``Value``, or ``x`` is
            not a sequence of numbers.
        ValueError: an option is out of range, a mode is unknown, or ``f(x)`` is not
            finite.

    Example:
        >>> import scalar_autograd as sa
        >>> sa.check_grads(lambda v: sa.exp(v[0]) / v[1], [0.5, 2.0])
        >>> try:
        ...     sa.check_grads(lambda v: sa.floor(v[0] * 10) + v[0], [0.1], eps=0.01)
        ... except AssertionError:
        ...     print("finite differences see the jump that AD ignores")
        finite differences see the jump that AD ignores
    """
    if not callable(f):
        raise TypeError(f"f must be callable; got {type(f).__name__}")
    point = _as_floats(x)
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be a positive integer; got {order!r}")
    if order != 1:
        raise ValueError(
            f"order must be 1: higher-order derivatives are not available yet; got {order}"
        )
    if isinstance(modes, str):
        raise TypeError(f"modes must be a sequence of mode names, e.g. ('rev',); got {modes!r}")
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of {sorted(MODES)}; got {modes!r}")
    for name, tol in (("eps", eps), ("rtol", rtol), ("atol", atol)):
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
            raise ValueError(f"{name} must be a finite number >= 0; got {tol!r}")
    if eps == 0:
        raise ValueError("eps must be positive; got 0")
    if isinstance(n_directions, bool) or not isinstance(n_directions, int) or n_directions < 1:
        raise ValueError(f"n_directions must be a positive integer; got {n_directions!r}")

    y0 = _evaluate(f, point)
    if not math.isfinite(y0):
        raise ValueError(f"f(x) must be finite to check gradients; got {y0} at x={point}")
    if not point:
        return
    directions = _random_directions(len(point), n_directions, seed)
    numeric = [_numeric_directional(f, point, v, eps) for v in directions]

    rows = []
    failed = False
    for mode in modes:
        analytic = MODES[mode](f, point, directions)
        for k, (a, (n, rounding)) in enumerate(zip(analytic, numeric, strict=True)):
            ok = abs(a - n) <= atol + rtol * max(abs(a), abs(n)) + rounding
            failed = failed or not ok
            rows.append(f"  {mode:>4}  {k:>3}  {a:>24.16e}  {n:>24.16e}  {abs(a - n):>10.3e}"
                        f"  {'ok' if ok else 'MISMATCH'}")
    if failed:
        header = f"  {'mode':>4}  {'dir':>3}  {'analytic':>24}  {'numeric':>24}  {'|diff|':>10}"
        raise AssertionError(
            f"gradient check failed at x={point} (f(x)={y0!r}, eps={eps}, rtol={rtol}, "
            f"atol={atol}); directional derivatives along random unit directions:\n"
            + header + "\n" + "\n".join(rows)
        )

