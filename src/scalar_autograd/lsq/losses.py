"""Robust losses rho(z) on z = (r / scale)**2, and the residual/Jacobian scaling they imply.

The conventions are scipy's ``least_squares``: the cost is ``0.5 * sum(rho_i)`` where
``rho_i = scale**2 * rho(z_i)`` with ``z_i = (r_i / scale)**2``, and the Gauss-Newton
model is built from residuals and Jacobian rows rescaled so that ``J_s^T f_s`` is the
exact gradient of the cost and ``J_s^T J_s`` keeps the curvature of ``rho`` (Triggs et
al., "Bundle adjustment: a modern synthesis", sec. 4.3, in scipy's simplified form).

| loss      | rho(z)                          | computed as                |
| --------- | ------------------------------- | -------------------------- |
| linear    | z                               | z                          |
| huber     | z if z <= 1 else 2*sqrt(z) - 1  | the same                   |
| soft_l1   | 2*(sqrt(1 + z) - 1)             | 2*z / (sqrt(1 + z) + 1)    |
| cauchy    | log(1 + z)                      | log1p(z)                   |
| arctan    | arctan(z)                       | arctan(z)                  |

Each rho is evaluated without cancellation for small ``z``: the textbook soft_l1
``2*(sqrt(1 + z) - 1)`` is exactly 0 once ``1 + z`` rounds to 1 (``z`` below ~1.1e-16,
residuals below ~1e-8 times ``loss_scale``) and loses digits a little above that; scipy's
own soft_l1 has this flaw. Huber and arctan are ``z`` to first order with no
subtraction. So the robust cost of small nonzero residuals is never rounded to zero
and the solver keeps reducing it.

Example:
    >>> import numpy as np
    >>> rho = evaluate_loss("huber", np.array([0.5, 3.0]), scale=1.0)
    >>> rho[0].tolist()  # 0.25 (quadratic zone), 2*3 - 1 = 5 (linear zone)
    [0.25, 5.0]
"""

from __future__ import annotations

import numpy as np

LOSSES = ("linear", "huber", "soft_l1", "cauchy", "arctan")
"""Names accepted by the ``loss`` option."""

_EPS = np.finfo(float).eps


def _rho(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rho(z), rho'(z), rho''(z))`` for the named loss."""
    if name == "linear":
        return z, np.ones_like(z), np.zeros_like(z)
    if name == "huber":
        mask = z <= 1.0
        sq = np.sqrt(np.where(mask, 1.0, z))
        rho0 = np.where(mask, z, 2.0 * sq - 1.0)
        rho1 = np.where(mask, 1.0, 1.0 / sq)
        rho2 = np.where(mask, 0.0, -0.5 / (sq * sq * sq))
        return rho0, rho1, rho2
    if name == "soft_l1":
        t = 1.0 + z
        st = np.sqrt(t)
        # 2*(st - 1) rationalised: no cancellation when z is below the float spacing of 1
        return 2.0 * z / (st + 1.0), 1.0 / st, -0.5 / (t * st)
    if name == "cauchy":
        t = 1.0 + z
        return np.log1p(z), 1.0 / t, -1.0 / (t * t)
    if name == "arctan":
        t = 1.0 + z * z
        return np.arctan(z), 1.0 / t, -2.0 * z / (t * t)
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {name!r}")


def evaluate_loss(
    name: str, residuals: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rho_i, d rho_i/dz, d2 rho_i/dz2)`` per residual, scaled as scipy.

    ``rho_i = scale**2 * rho(z_i)`` (so ``cost = 0.5 * sum(rho_i)``), the first
    derivative is unchanged, the second is divided by ``scale**2``.
    """
    z = (residuals / scale) ** 2
    rho0, rho1, rho2 = _rho(name, z)
    return rho0 * scale**2, rho1, rho2 / scale**2


def loss_cost(name: str, residuals: np.ndarray, scale: float) -> float:
    """``0.5 * sum(rho_i)``: the cost the solver minimises (nan if any residual is)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "linear":
            return 0.5 * float(np.einsum("i,i->", residuals, residuals))
        z = (residuals / scale) ** 2
        return 0.5 * scale**2 * float(np.sum(_rho(name, z)[0]))


def robust_scaling(
    name: str, residuals: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row factors ``(row_scale, f_scaled)`` turning ``(r, J)`` into the robust model.

    ``J_s = row_scale[:, None] * J`` and ``f_s = f_scaled`` with
    ``row_scale = sqrt(rho' + 2 rho'' r**2)`` (clipped below at machine epsilon) and
    ``f_s = rho' r / row_scale``, exactly as scipy's ``scale_for_robust_loss_function``.
    """
    _, rho1, rho2 = evaluate_loss(name, residuals, scale)
    row_scale = rho1 + 2.0 * rho2 * residuals**2
    row_scale = np.sqrt(np.maximum(row_scale, _EPS))
    return row_scale, residuals * (rho1 / row_scale)
