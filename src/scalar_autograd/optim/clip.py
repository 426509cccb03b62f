"""Gradient clipping by global norm, as ``torch.nn.utils.clip_grad_norm_``.

Example:
    >>> import scalar_autograd as sa
    >>> a = sa.Value(0.0, requires_grad=True); b = sa.Value(0.0, requires_grad=True)
    >>> a.grad, b.grad = 3.0, 4.0
    >>> sa.clip_grad_norm([a, b], 1.0)
    5.0
    >>> round(a.grad, 6), round(b.grad, 6)
    (0.6, 0.8)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from scalar_autograd.optim.equations import FloatArray
from scalar_autograd.validation import check_bool, check_nonnegative_float, check_real_in
from scalar_autograd.value import Value


def _check_norm_type(norm_type: float) -> float:
    return check_real_in(norm_type, "norm_type", "a real number > 0 (inf for the max-norm)",
                         lambda v: v > 0.0)


def global_norm(grad: FloatArray, norm_type: float = 2.0) -> float:
    """The ``norm_type``-norm of a flat gradient vector (``inf`` for the max-norm)."""
    if grad.size == 0:
        return 0.0
    if norm_type == math.inf:
        return float(np.max(np.abs(grad)))
    if norm_type == 2.0:
        return math.sqrt(float(np.dot(grad, grad)))
    return float(np.sum(np.abs(grad) ** norm_type) ** (1.0 / norm_type))


def clip_by_global_norm(grad: FloatArray, max_norm: float, norm_type: float = 2.0) -> float:
    """Scale ``grad`` in place so its norm is at most ``max_norm``; return the norm before.

    As PyTorch, the factor is ``min(max_norm / (norm + 1e-6), 1)`` and is always applied.
    """
    total = global_norm(grad, norm_type)
    grad *= _clip_factor(total, max_norm)
    return total


def _clip_factor(total: float, max_norm: float) -> float:
    return min(max_norm / (total + 1e-6), 1.0)


def clip_grad_norm(
    params: Iterable[Value],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Rescale the ``.grad`` of ``params`` so their joint norm is at most ``max_norm``.

    Semantics of ``torch.nn.utils.clip_grad_norm_``: the total norm is taken over all
    gradients as one vector; every gradient is multiplied by
    ``min(max_norm / (total_norm + 1e-6), 1)``.

    Args:
        params: the ``Value``s whose ``grad`` to clip.
        max_norm: the largest allowed norm, >= 0.
        norm_type: the order of the norm, > 0; ``math.inf`` for the max-norm.
        error_if_nonfinite: raise if the total norm is nan or inf (else the gradients
            become nan, as in PyTorch).

    Returns:
        The total norm of the gradients before clipping.

    Raises:
        TypeError: if ``params`` holds something other than ``Value`` objects.
        ValueError: for a negative ``max_norm`` or non-positive ``norm_type``.
        RuntimeError: if ``error_if_nonfinite`` and the norm is not finite.
    """
    max_norm = check_nonnegative_float(max_norm, "max_norm")
    norm_type = _check_norm_type(norm_type)
    check_bool(error_if_nonfinite, "error_if_nonfinite")
    if isinstance(params, Value):
        params = [params]
    items = list(params)
    for i, p in enumerate(items):
        if not isinstance(p, Value):
            raise TypeError(
                f"`params` must contain only Value objects; params[{i}] is {type(p).__name__}"
            )
    grad = np.array([p.grad for p in items], dtype=np.float64)
    total = global_norm(grad, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is {total}; "
            "pass error_if_nonfinite=False to clip anyway"
        )
    grad *= _clip_factor(total, max_norm)
    for p, gi in zip(items, grad.tolist()):
        p.grad = gi
    return total
