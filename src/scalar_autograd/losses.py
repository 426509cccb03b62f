"""Loss functions over sequences of ``Value``s: regression, robust and classification losses.

Every loss is built from table ops (``sa.sum``, ``sa.mean``, ``sa.where``, ``sa.abs``,
``softplus``, ...) with no Python branching on data, so it compiles with ``sa.compile``
and is right away from the traced point. The classification losses are stable for any
logit (``+-1000`` included): binary cross-entropy from logits uses ``softplus``, and the
categorical one a log-sum-exp shifted by the (in-graph) maximum.

Predictions and targets may be ``Value``s or numbers. Element-wise losses reduce with
``reduction="mean"`` (the default) or ``"sum"``.

Example:
    >>> import scalar_autograd as sa
    >>> sa.mse([1.0, 2.0], [0.0, 0.0]).data
    2.5
    >>> round(sa.binary_cross_entropy_with_logits([1000.0, -1000.0], [1.0, 1.0]).data, 9)
    500.0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from scalar_autograd import functional as F
from scalar_autograd.value import Value, ValueLike, as_value

__all__ = [
    "mse", "mae", "huber", "tukey", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "categorical_cross_entropy", "logsumexp",
]

Reduction = Literal["mean", "sum"]


def _as_values(items: Any, name: str) -> list[Value]:
    if isinstance(items, (Value, str, bytes)) or not isinstance(items, Iterable):
        hint = " (wrap a single Value in a list)" if isinstance(items, Value) else ""
        raise TypeError(
            f"{name} must be a sequence of Values or numbers; got {type(items).__name__}{hint}"
        )
    return [as_value(x, f"{name}[{i}]") for i, x in enumerate(items)]


def _pair(predictions: Any, targets: Any) -> tuple[list[Value], list[Value]]:
    p = _as_values(predictions, "predictions")
    t = _as_values(targets, "targets")
    if not p:
        raise ValueError("predictions must not be empty")
    if len(p) != len(t):
        raise ValueError(
            f"predictions and targets must have the same length; got {len(p)} and {len(t)}"
        )
    return p, t


def _reduce(terms: list[Value], reduction: Any) -> Value:
    if reduction == "mean":
        return F.mean(terms)
    if reduction == "sum":
        return F.sum(terms)
    raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive real number; got {type(value).__name__}")
    x = float(value)
    if not (x > 0.0 and math.isfinite(x)):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return x


def _elementwise(predictions: Any, targets: Any, reduction: Any,
                 term: Callable[[Value, Value], Value]) -> Value:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")
    p, t = _pair(predictions, targets)
    return _reduce([term(pi, ti) for pi, ti in zip(p, t)], reduction)


def mse(predictions: Sequence[ValueLike], targets: Sequence[ValueLike],
        reduction: Reduction = "mean") -> Value:
    """Mean squared error ``mean((p - t)^2)``.

    Raises:
        ValueError: if the sequences are empty or of different lengths.

    Example:
        >>> mse([1.0, 3.0], [1.0, 1.0]).data, mse([1.0, 3.0], [1.0, 1.0], "sum").data
        (2.0, 4.0)
    """
    def term(p: Value, t: Value) -> Value:
        d = p - t
        return d * d

    return _elementwise(predictions, targets, reduction, term)


def mae(predictions: Sequence[ValueLike], targets: Sequence[ValueLike],
        reduction: Reduction = "mean") -> Value:
    """Mean absolute error ``mean(|p - t|)`` (gradient 0 where ``p == t``).

    Example:
        >>> mae([1.0, -3.0], [0.0, 0.0]).data
        2.0
    """
    return _elementwise(predictions, targets, reduction, lambda p, t: F.abs(p - t))


def huber(predictions: Sequence[ValueLike], targets: Sequence[ValueLike],
          delta: float = 1.0, reduction: Reduction = "mean") -> Value:
    """Huber loss: ``r^2/2`` for ``|r| <= delta``, ``delta (|r| - delta/2)`` beyond.

    ``r = p - t``. Quadratic near 0, linear in the tails; continuous with a continuous
    derivative at ``|r| = delta``.

    Raises:
        ValueError: if ``delta`` is not positive and finite.

    Example:
        >>> huber([0.5, 3.0], [0.0, 0.0], delta=1.0, reduction="sum").data  # 0.125 + 2.5
        2.625
    """
    d = _positive(delta, "delta")

    def term(p: Value, t: Value) -> Value:
        r = p - t
        a = F.abs(r)
        return F.where(F.le(a, d), 0.5 * (r * r), d * (a - 0.5 * d))

    return _elementwise(predictions, targets, reduction, term)


def tukey(predictions: Sequence[ValueLike], targets: Sequence[ValueLike],
          c: float = 4.685, reduction: Reduction = "mean") -> Value:
    """Tukey's biweight: ``c^2/6 (1 - (1 - (r/c)^2)^3)`` for ``|r| <= c``, ``c^2/6`` beyond.

    ``r = p - t``. Outliers beyond ``c`` contribute a constant (zero gradient). The
    default ``c = 4.685`` gives 95% efficiency for unit-variance Gaussian residuals.

    Raises:
        ValueError: if ``c`` is not positive and finite.

    Example:
        >>> tukey([0.0, 10.0], [0.0, 0.0], c=3.0, reduction="sum").data  # 0 + 9/6
        1.5
    """
    cc = _positive(c, "c")
    cap = cc * cc / 6.0

    def term(p: Value, t: Value) -> Value:
        r = p - t
        u = r / cc
        w = 1.0 - u * u
        inside = F.le(F.abs(r), cc)
        return F.where(inside, cap * (1.0 - w * w * w), cap)

    return _elementwise(predictions, targets, reduction, term)


def _check_binary_targets(targets: list[Value]) -> None:
    for i, t in enumerate(targets):
        if t.op is None and not t.requires_grad and not (0.0 <= t.data <= 1.0):
            raise ValueError(f"targets[{i}] must be in [0, 1]; got {t.data!r}")


def binary_cross_entropy_with_logits(logits: Sequence[ValueLike],
                                     targets: Sequence[ValueLike],
                                     reduction: Reduction = "mean") -> Value:
    """Binary cross-entropy of ``sigmoid(z)`` against targets in ``[0, 1]``, from logits.

    Each term ``-t log s - (1 - t) log(1 - s)`` with ``s = sigmoid(z)`` is computed as
    ``t softplus(-z) + (1 - t) softplus(z)``: finite for any logit and accurate to the
    last digit even when tiny (``z = 40, t = 1`` gives ``4.2e-18``, where
    ``softplus(z) - t z`` would give 0). Its gradient is ``sigmoid(z) - t``.

    Raises:
        ValueError: on length mismatch or a constant target outside ``[0, 1]``.

    Example:
        >>> round(binary_cross_entropy_with_logits([0.0], [1.0]).data, 12)  # log 2
        0.69314718056
        >>> binary_cross_entropy_with_logits([1000.0], [1.0]).data
        0.0
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")
    z, t = _pair(logits, targets)
    _check_binary_targets(t)
    terms = [ti * F.softplus(-zi) + (1.0 - ti) * F.softplus(zi) for zi, ti in zip(z, t)]
    return _reduce(terms, reduction)


def binary_cross_entropy(probabilities: Sequence[ValueLike], targets: Sequence[ValueLike],
                         eps: float = 1e-12, reduction: Reduction = "mean") -> Value:
    """Binary cross-entropy ``-t log p - (1 - t) log(1 - p)`` from probabilities.

    ``p`` is clamped to ``[eps, 1 - eps]`` so that ``p = 0`` or ``1`` gives a large
    finite loss instead of ``inf`` (and the gradient is 0 outside that interval, as
    ``clamp``'s). Prefer :func:`binary_cross_entropy_with_logits` when you have logits.

    Raises:
        ValueError: on length mismatch, a constant target outside ``[0, 1]`` or ``eps``
            outside ``(0, 0.5)``.

    Example:
        >>> round(binary_cross_entropy([0.5, 0.5], [0.0, 1.0]).data, 12)
        0.69314718056
        >>> round(binary_cross_entropy([0.0], [1.0]).data, 6)  # -log(1e-12)
        27.631021
    """
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number; got {type(eps).__name__}")
    if not 0.0 < float(eps) < 0.5:
        raise ValueError(f"eps must be in (0, 0.5); got {eps!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")
    p, t = _pair(probabilities, targets)
    _check_binary_targets(t)
    lo, hi = float(eps), 1.0 - float(eps)
    terms = []
    for pi, ti in zip(p, t):
        q = F.clamp(pi, lo, hi)
        terms.append(-(ti * F.log(q) + (1.0 - ti) * F.log(1.0 - q)))
    return _reduce(terms, reduction)


def logsumexp(values: Sequence[ValueLike]) -> Value:
    """``log(sum(exp(x_i)))`` computed stably as ``m + log(sum(exp(x_i - m)))``.

    ``m`` is the maximum, computed in the graph (``sa.maximum``), so the shift is right
    wherever a compiled version is evaluated. The gradient is ``softmax(x)`` (the
    shift's contributions cancel).

    Raises:
        ValueError: if ``values`` is empty.

    Example:
        >>> logsumexp([1000.0, 1000.0]).data == 1000.0 + math.log(2.0)
        True
    """
    x = _as_values(values, "values")
    if not x:
        raise ValueError("values must not be empty")
    m = x[0]
    for xi in x[1:]:
        m = F.maximum(m, xi)
    # shift by m only where it is finite (scipy, PyTorch): logsumexp([inf, 0]) = inf and
    # logsumexp([-inf, -inf]) = -inf, not inf - inf = nan
    shift = F.where(F.eq(m - m, 0.0), m, 0.0)
    return shift + F.log(F.sum([F.exp(xi - shift) for xi in x]))


def categorical_cross_entropy(logits: Sequence[ValueLike],
                              target: int | Sequence[ValueLike]) -> Value:
    """Cross-entropy of ``softmax(logits)`` for one sample, stable for any logits.

    ``logsumexp(z) - z[k]`` for a class index ``k``, or ``sum_i t_i (logsumexp(z) - z_i)``
    for a target distribution ``t`` (one-hot or soft labels). Average over a batch with
    ``sa.mean([categorical_cross_entropy(z, k) for z, k in ...])``.

    Args:
        logits: the unnormalised scores, one per class.
        target: the class index, or one probability per class.

    Raises:
        ValueError: if ``target`` is out of range, or a distribution of the wrong length,
            with a negative entry or not summing to 1 (within 1e-6).
        TypeError: if ``target`` is neither an int nor a sequence.

    Example:
        >>> round(categorical_cross_entropy([0.0, 0.0], 1).data, 12)  # log 2
        0.69314718056
        >>> categorical_cross_entropy([1000.0, -1000.0], 0).data
        0.0
    """
    z = _as_values(logits, "logits")
    if not z:
        raise ValueError("logits must not be empty")
    lse = logsumexp(z)
    if isinstance(target, bool):
        raise TypeError("target must be a class index (int) or a sequence of probabilities; "
                        "got bool")
    if isinstance(target, numbers.Integral):
        k = int(target)
        if not 0 <= k < len(z):
            raise ValueError(f"target must be a class index in [0, {len(z)}); got {k}")
        return lse - z[k]
    if isinstance(target, numbers.Real):
        raise TypeError(f"target must be an int class index or a sequence of probabilities; "
                        f"got {type(target).__name__} {target!r}")
    t = _as_values(target, "target")
    if len(t) != len(z):
        raise ValueError(f"target must have one probability per class ({len(z)}); "
                         f"got {len(t)}")
    if all(ti.op is None and not ti.requires_grad for ti in t):
        if any(ti.data < 0.0 for ti in t):
            raise ValueError(f"target probabilities must be >= 0; got {[ti.data for ti in t]}")
        total = math.fsum(ti.data for ti in t)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"target probabilities must sum to 1; got sum {total!r}")
    return F.sum([ti * (lse - zi) for ti, zi in zip(t, z)])
