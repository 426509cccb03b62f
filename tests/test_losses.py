"""Losses: hand values, numpy/scipy oracles, extreme logits, validation, FD, compiled."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit, logsumexp
from scipy.special import huber as scipy_huber

import scalar_autograd as sa
from _finite_differences import (
    assert_compiled_matches_eager,
    assert_grad_matches_fd,
    eager_value_and_grad,
)

RNG = np.random.default_rng(5)


def _tukey_oracle(r: np.ndarray, c: float) -> np.ndarray:
    inside = np.abs(r) <= c
    return np.where(inside, c**2 / 6 * (1 - (1 - (r / c) ** 2) ** 3), c**2 / 6)


# ---------------------------------------------------------------- values


def test_regression_losses_hand_values() -> None:
    assert sa.mse([1.0, 3.0], [1.0, 1.0]).data == 2.0
    assert sa.mse([1.0, 3.0], [1.0, 1.0], reduction="sum").data == 4.0
    assert sa.mae([1.0, -3.0], [0.0, 0.0]).data == 2.0
    assert sa.huber([0.5, 3.0], [0.0, 0.0], delta=1.0, reduction="sum").data == 0.125 + 2.5
    assert sa.tukey([0.0, 10.0], [0.0, 0.0], c=3.0, reduction="sum").data == 1.5
    # tukey at r = c/2: c^2/6 (1 - (3/4)^3)
    assert sa.tukey([1.0], [0.0], c=2.0).data == pytest.approx(4 / 6 * (1 - 0.75**3))


def test_regression_losses_against_numpy_and_scipy() -> None:
    p, t = RNG.normal(size=20) * 3, RNG.normal(size=20)
    r = p - t
    assert sa.mse(list(p), list(t)).data == pytest.approx(np.mean(r**2), rel=1e-14)
    assert sa.mae(p, t).data == pytest.approx(np.mean(np.abs(r)), rel=1e-14)  # arrays too
    for delta in (0.3, 1.0, 2.5):
        assert sa.huber(p, t, delta=delta).data == pytest.approx(
            np.mean(scipy_huber(delta, r)), rel=1e-14)
    for c in (1.0, 4.685):
        assert sa.tukey(p, t, c=c).data == pytest.approx(np.mean(_tukey_oracle(r, c)),
                                                         rel=1e-13)


def test_binary_cross_entropy_against_numpy() -> None:
    z = RNG.normal(size=15) * 4
    y = RNG.uniform(size=15)  # soft labels are fine
    expected = np.mean(np.logaddexp(0.0, z) - y * z)
    assert sa.binary_cross_entropy_with_logits(z, y).data == pytest.approx(expected, rel=1e-13)
    prob = expit(z)
    expected_p = np.mean(-(y * np.log(prob) + (1 - y) * np.log(1 - prob)))
    assert sa.binary_cross_entropy(prob, y).data == pytest.approx(expected_p, rel=1e-10)
    assert sa.binary_cross_entropy([0.5], [1.0]).data == pytest.approx(math.log(2.0))


def test_categorical_cross_entropy_against_scipy() -> None:
    for _ in range(10):
        z = RNG.normal(size=5) * 3
        k = int(RNG.integers(5))
        assert sa.categorical_cross_entropy(z, k).data == pytest.approx(logsumexp(z) - z[k],
                                                                        rel=1e-13)
        t = RNG.dirichlet(np.ones(5))
        soft = float(np.sum(t * (logsumexp(z) - z)))
        assert sa.categorical_cross_entropy(list(z), list(t)).data == pytest.approx(soft,
                                                                                    rel=1e-12)
        assert sa.logsumexp(z).data == pytest.approx(logsumexp(z), rel=1e-14)
    one_hot = [0.0, 1.0, 0.0]
    z3 = [0.2, -1.0, 3.0]
    assert sa.categorical_cross_entropy(z3, one_hot).data == pytest.approx(
        sa.categorical_cross_entropy(z3, 1).data, rel=1e-15)


# ---------------------------------------------------------------- extreme logits


@pytest.mark.parametrize("z, y, expected", [
    (1000.0, 1.0, 0.0), (-1000.0, 0.0, 0.0), (1000.0, 0.0, 1000.0), (-1000.0, 1.0, 1000.0),
    (0.0, 1.0, math.log(2.0)), (40.0, 1.0, math.log1p(math.exp(-40.0))),
])
def test_bce_with_logits_extremes(z: float, y: float, expected: float) -> None:
    value, grad = eager_value_and_grad(
        lambda v: sa.binary_cross_entropy_with_logits([v[0]], [y]), [z])
    assert value == pytest.approx(expected, rel=1e-15, abs=1e-300)
    assert grad[0] == pytest.approx(expit(z) - y, abs=1e-15)  # sigmoid(z) - y, finite


def test_categorical_cross_entropy_extremes() -> None:
    z = [1000.0, -1000.0, 0.0]
    for k, expected in ((0, 0.0), (1, 2000.0), (2, 1000.0)):
        value, grad = eager_value_and_grad(lambda v, k=k: sa.categorical_cross_entropy(v, k), z)
        assert value == pytest.approx(expected, abs=1e-12)
        softmax = np.exp(np.array(z) - logsumexp(z))
        assert np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad, softmax - np.eye(3)[k], atol=1e-15)
    assert sa.logsumexp([1000.0, 1000.0]).data == 1000.0 + math.log(2.0)
    assert sa.logsumexp([-1000.0, -1000.0]).data == -1000.0 + math.log(2.0)


def test_bce_from_probabilities_clamps() -> None:
    value, grad = eager_value_and_grad(lambda v: sa.binary_cross_entropy(v, [1.0, 0.0]),
                                       [0.0, 1.0])
    q = min(max(1.0, 1e-12), 1.0 - 1e-12)  # the clamped probability, rounded as computed
    assert value == pytest.approx(-(math.log(1e-12) + math.log(1.0 - q)) / 2, rel=1e-14)
    assert value > 27.0
    assert np.all(np.isfinite(grad))


# ---------------------------------------------------------------- validation


def test_argument_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="predictions and targets must have the same length"):
        sa.mse([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="predictions must not be empty"):
        sa.mae([], [])
    with pytest.raises(TypeError, match=r"predictions .*\(wrap a single Value"):
        sa.mse(sa.Value(1.0), [1.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"targets\[1\]"):
        sa.mse([1.0, 2.0], [1.0, "x"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="delta"):
        sa.huber([1.0], [0.0], delta=0.0)
    with pytest.raises(TypeError, match="delta"):
        sa.huber([1.0], [0.0], delta="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="c must be"):
        sa.tukey([1.0], [0.0], c=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        sa.mse([1.0], [0.0], reduction="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"targets\[0\] must be in \[0, 1\]"):
        sa.binary_cross_entropy_with_logits([1.0], [2.0])
    with pytest.raises(ValueError, match="eps"):
        sa.binary_cross_entropy([0.5], [1.0], eps=0.7)
    with pytest.raises(ValueError, match="class index"):
        sa.categorical_cross_entropy([1.0, 2.0], 2)
    with pytest.raises(TypeError, match="target"):
        sa.categorical_cross_entropy([1.0, 2.0], 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sum to 1"):
        sa.categorical_cross_entropy([1.0, 2.0], [0.5, 0.6])
    with pytest.raises(ValueError, match="one probability per class"):
        sa.categorical_cross_entropy([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="logits must not be empty"):
        sa.categorical_cross_entropy([], 0)
    with pytest.raises(ValueError, match="values must not be empty"):
        sa.logsumexp([])


# ---------------------------------------------------------------- gradients


TARGETS = [0.3, -1.2, 2.0, 0.0, 0.7]
LABELS = [1.0, 0.0, 1.0, 0.25, 0.0]

LOSSES = {
    "mse": lambda v: sa.mse(v, TARGETS),
    "mae": lambda v: sa.mae(v, TARGETS),
    "huber": lambda v: sa.huber(v, TARGETS, delta=0.8),
    "tukey": lambda v: sa.tukey(v, TARGETS, c=1.5),
    "bce_logits": lambda v: sa.binary_cross_entropy_with_logits(v, LABELS, reduction="sum"),
    "bce_prob": lambda v: sa.binary_cross_entropy([sa.sigmoid(x) for x in v], LABELS),
    "cce_index": lambda v: sa.categorical_cross_entropy(v, 2),
    "cce_soft": lambda v: sa.categorical_cross_entropy(v, [0.1, 0.2, 0.3, 0.4, 0.0]),
    "logsumexp": lambda v: sa.logsumexp(v),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_match_finite_differences(name: str) -> None:
    for _ in range(4):
        assert_grad_matches_fd(LOSSES[name], RNG.normal(size=5) * 2)


def test_gradient_also_flows_into_value_targets() -> None:
    p = [sa.Value(2.0, requires_grad=True)]
    t = [sa.Value(0.5, requires_grad=True)]
    sa.huber(p, t, delta=1.0).backward()
    assert (p[0].grad, t[0].grad) == (1.0, -1.0)


# ---------------------------------------------------------------- compiled


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_compile_and_agree_away_from_the_trace_point(name: str) -> None:
    # points spread widely so that huber/tukey/clamp branches change between points
    points = [RNG.normal(size=5) * 3 for _ in range(5)] + [np.array([1e3, -1e3, 0, 5, -5])]
    assert_compiled_matches_eager(LOSSES[name], RNG.normal(size=5), points)


def test_compiled_loss_with_runtime_targets() -> None:
    preds = [sa.Value(0.0, label=f"p{i}") for i in range(3)]
    targets = [sa.Value(0.0, label=f"t{i}") for i in range(3)]
    f = sa.compile(sa.binary_cross_entropy_with_logits(preds, targets), preds, inputs=targets)
    for _ in range(5):
        z, y = RNG.normal(size=3) * 5, RNG.integers(0, 2, size=3).astype(float)
        value, grad = f.value_and_grad(z, inputs=y)
        assert value == pytest.approx(np.mean(np.logaddexp(0, z) - y * z), rel=1e-13)
        np.testing.assert_allclose(grad, (expit(z) - y) / 3, rtol=1e-13, atol=1e-16)
