"""``sa.check_grads``: passes on correct gradients, fails loudly on wrong ones, validates."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

import scalar_autograd as sa
from scalar_autograd import testing
from scalar_autograd.ops import OPS, VARIADIC


def test_passes_on_correct_gradients() -> None:
    sa.check_grads(lambda v: sa.sin(v[0]) * v[1] + v[1] ** 2, [0.3, -1.2])
    sa.check_grads(lambda v: sa.exp(v[0]) / v[1], [sa.Value(0.5), 2.0])
    sa.check_grads(lambda v: sa.sum(v) * sa.mean(v), [1.0, 2.0, -0.5, 4.0], n_directions=8)


def test_large_values_with_small_slopes_do_not_fail_spuriously() -> None:
    sa.check_grads(lambda v: 1e6 + 1e-3 * v[0], [2.0])
    sa.check_grads(lambda v: sa.exp(v[0]), [20.0])


def test_constant_functions_have_zero_gradient() -> None:
    sa.check_grads(lambda v: 3.0, [1.0, 2.0])
    sa.check_grads(lambda v: sa.Value(1.0) * 2.0, [1.0])
    sa.check_grads(lambda v: sa.floor(v[0]), [0.5])


def test_every_smooth_op_passes_through_check_grads() -> None:
    rng = random.Random(1)
    for op in OPS:
        if op.name in {"eq", "ne", "gt", "lt", "ge", "le", "sign", "floor", "ceil", "round",
                       "trunc", "stop_gradient"}:
            continue  # derivative 0 by definition: finite differences see otherwise
        domains = op.domain * 3 if op.arity == VARIADIC else op.domain
        # stay inside the sampling interval so the finite differences do too
        point = [lo + (hi - lo) * (0.25 + 0.5 * rng.random()) for lo, hi in domains]
        if op.name == "pow":
            c = point[1]
            sa.check_grads(lambda v, c=c: v[0].pow(c), point[:1])
        else:
            fn = getattr(sa, op.function)
            variadic = op.arity == VARIADIC
            sa.check_grads(lambda v, fn=fn, variadic=variadic: fn(v) if variadic else fn(*v),
                           point)


def test_wrong_gradient_fails_with_analytic_and_numeric_side_by_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def twice_too_big(f: Any, x: list[float], directions: list[list[float]]) -> list[float]:
        right = testing.MODES["rev"](f, x, directions)
        return [2.0 * d for d in right]

    monkeypatch.setitem(testing.MODES, "broken", twice_too_big)
    with pytest.raises(AssertionError) as info:
        sa.check_grads(lambda v: v[0] * v[1], [1.5, 2.0], modes=("rev", "broken"))
    message = str(info.value)
    assert "analytic" in message and "numeric" in message
    assert "MISMATCH" in message and "broken" in message
    rev_lines = [line for line in message.splitlines() if line.strip().startswith("rev")]
    assert rev_lines and all(line.rstrip().endswith("ok") for line in rev_lines)


def test_register_mode_adds_a_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "MODES", dict(testing.MODES))
    testing.register_mode("rev-again", testing.MODES["rev"])
    sa.check_grads(lambda v: sa.tanh(v[0]), [0.4], modes=("rev", "rev-again"))
    with pytest.raises(TypeError, match="directional"):
        testing.register_mode("bad", 42)  # type: ignore[arg-type]


def test_detects_a_kink_that_reverse_mode_ignores() -> None:
    with pytest.raises(AssertionError, match="MISMATCH"):
        sa.check_grads(lambda v: sa.floor(v[0] * 10) + v[0], [0.1], eps=0.01)


def test_a_mistaken_derivative_is_caught() -> None:
    # a hand-written "gradient" through a detached branch is wrong and must be caught
    with pytest.raises(AssertionError):
        sa.check_grads(lambda v: v[0] * v[0].detach(), [1.7])


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"order": 2}, ValueError, "order"),
    ({"order": 0}, ValueError, "order"),
    ({"modes": ("no-such-mode",)}, ValueError, "modes"),
    ({"modes": ()}, ValueError, "modes"),
    ({"modes": "rev"}, TypeError, "modes"),
    ({"eps": 0.0}, ValueError, "eps"),
    ({"eps": -1.0}, ValueError, "eps"),
    ({"rtol": math.nan}, ValueError, "rtol"),
    ({"atol": -1.0}, ValueError, "atol"),
    ({"n_directions": 0}, ValueError, "n_directions"),
])
def test_options_are_validated(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        sa.check_grads(lambda v: v[0] * 2, [1.0], **kwargs)


def test_bad_inputs() -> None:
    with pytest.raises(TypeError, match="x"):
        sa.check_grads(lambda v: v[0], 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"x\[1\]"):
        sa.check_grads(lambda v: v[0], [1.0, "a"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="f must return"):
        sa.check_grads(lambda v: "nope", [1.0])
    with pytest.raises(ValueError, match="finite"):
        sa.check_grads(lambda v: sa.log(v[0]), [0.0])
    with pytest.raises(TypeError, match="callable"):
        sa.check_grads(3, [1.0])  # type: ignore[arg-type]
