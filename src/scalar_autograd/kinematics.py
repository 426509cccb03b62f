"""Planar serial-chain kinematics: the inverse-kinematics loss used by demos and benchmarks.

A planar arm has joint angles ``theta_i`` and link lengths ``L_i``; joint ``i`` points
along the cumulative angle ``phi_i = theta_0 + ... + theta_i``, and the end effector is
``(sum L_i cos phi_i, sum L_i sin phi_i)``. :func:`planar_arm_end` and
:func:`planar_ik_loss` build it on ``Value`` angles (to differentiate or compile);
:func:`arm_points` computes every joint's position in numpy (to draw the arm).

Example:
    >>> import scalar_autograd as sa
    >>> angles = [sa.Value(0.0, requires_grad=True) for _ in range(3)]
    >>> x, y = planar_arm_end(angles)
    >>> x.data, y.data
    (3.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scalar_autograd.functional import cos, sin
from scalar_autograd.functional import sum as vsum
from scalar_autograd.value import Value, ValueLike


def planar_arm_end(
    angles: Sequence[Value], lengths: Sequence[float] | None = None
) -> tuple[Value, Value]:
    """End-effector position ``(x, y)`` of a planar arm.

    Args:
        angles: joint angles (relative, radians), one per link.
        lengths: link lengths; all 1.0 when omitted.

    Raises:
        ValueError: if ``angles`` is empty or ``lengths`` has another length.
    """
    n = len(angles)
    if n == 0:
        raise ValueError("angles must hold at least one joint angle; got an empty sequence")
    if lengths is None:
        lengths = [1.0] * n
    if len(lengths) != n:
        raise ValueError(f"lengths must have one entry per angle ({n}); got {len(lengths)}")
    phi: Value = angles[0]
    xs, ys = [], []
    for i in range(n):
        if i > 0:
            phi = phi + angles[i]
        xs.append(lengths[i] * cos(phi))
        ys.append(lengths[i] * sin(phi))
    return vsum(xs), vsum(ys)


def planar_ik_loss(
    angles: Sequence[Value],
    target: tuple[ValueLike, ValueLike],
    lengths: Sequence[float] | None = None,
) -> Value:
    """Squared distance from the arm's end effector to ``target``.

    ``target`` entries may be ``Value`` leaves, so a compiled loss can take the target
    as a runtime input.

    Example:
        >>> import scalar_autograd as sa
        >>> angles = [sa.Value(0.0, requires_grad=True) for _ in range(2)]
        >>> planar_ik_loss(angles, (1.0, 1.0)).data
        2.0
    """
    x, y = planar_arm_end(angles, lengths)
    dx = x - target[0]
    dy = y - target[1]
    return dx * dx + dy * dy


def arm_points(angles: Sequence[float], lengths: Sequence[float] | None = None) -> np.ndarray:
    """The joint positions of a planar arm, base first: shape ``(n + 1, 2)``.

    Joint angles are relative, as in :func:`planar_arm_end`.

    Example:
        >>> import math
        >>> arm_points([0.0, math.pi / 2]).round(12).tolist()
        [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
    """
    q = np.asarray(angles, dtype=float)
    links = np.ones(len(q)) if lengths is None else np.asarray(lengths, dtype=float)
    phi = np.cumsum(q)
    steps = np.column_stack([links * np.cos(phi), links * np.sin(phi)])
    return np.vstack([np.zeros(2), np.cumsum(steps, axis=0)])
