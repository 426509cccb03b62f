"""Serial-chain kinematics: planar arms (the IK loss of demos and benchmarks) and spatial ones.

A planar arm has joint angles ``theta_i`` and link lengths ``L_i``; joint ``i`` points
along the cumulative angle ``phi_i = theta_0 + ... + theta_i``, and the end effector is
``(sum L_i cos phi_i, sum L_i sin phi_i)``. :func:`planar_arm_end` and
:func:`planar_ik_loss` build it on ``Value`` angles (to differentiate or compile);
:func:`arm_points` computes every joint's position in numpy (to draw the arm).

A spatial arm of revolute joints (:func:`chain_pose`) is described in its zero
configuration, where every joint frame is parallel to the base frame: joint ``i``
sits at ``offsets[i]`` from joint ``i - 1`` (from the base for ``i = 0``) and turns
about ``axes[i]``; the tool sits at ``tool`` from the last joint. Orientations are unit
quaternions stored ``[w, x, y, z]`` (w first, as ``sa.QuaternionManifold``) and
composed with the Hamilton product (:func:`quaternion_product`, :func:`rotate`);
:func:`rotation_error` is the rotation vector between two orientations, the rotation
part of a pose residual, by the quaternion manifold's ``minus`` (its log map).

Example:
    >>> import scalar_autograd as sa
    >>> angles = [sa.Value(0.0, requires_grad=True) for _ in range(3)]
    >>> x, y = planar_arm_end(angles)
    >>> x.data, y.data
    (3.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scalar_autograd.functional import cos, sin, where
from scalar_autograd.functional import sum as vsum
from scalar_autograd.manifolds import QuaternionManifold
from scalar_autograd.value import Value, ValueLike, as_value

__all__ = [
    "planar_arm_end", "planar_ik_loss", "arm_points", "quaternion_product", "rotate",
    "axis_angle_quaternion", "chain_pose", "chain_points", "rotation_error", "Quaternion",
]


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


# ---------------------------------------------------------------------------- spatial arms
Quaternion = list[Value]
"""A quaternion ``[w, x, y, z]`` of Values."""

_QUATERNION = QuaternionManifold()


def _three(v: Sequence[ValueLike], name: str) -> list[Value]:
    items = list(v)
    if len(items) != 3:
        raise ValueError(f"{name} must have 3 entries; got {len(items)}")
    return [as_value(c, name) for c in items]


def _four(q: Sequence[ValueLike], name: str) -> list[Value]:
    items = list(q)
    if len(items) != 4:
        raise ValueError(f"{name} must be a quaternion [w, x, y, z] of 4 entries; got "
                         f"{len(items)}")
    return [as_value(c, name) for c in items]


def quaternion_product(a: Sequence[ValueLike], b: Sequence[ValueLike]) -> Quaternion:
    """The Hamilton product ``a * b`` of quaternions stored ``[w, x, y, z]`` (the
    rotation ``b`` first, then ``a``).

    Example:
        >>> [v.data for v in quaternion_product([0, 1, 0, 0], [0, 0, 1, 0])]   # i j = k
        [0.0, 0.0, 0.0, 1.0]
    """
    a0, a1, a2, a3 = _four(a, "a")
    b0, b1, b2, b3 = _four(b, "b")
    return [a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3,
            a0 * b1 + a1 * b0 + a2 * b3 - a3 * b2,
            a0 * b2 - a1 * b3 + a2 * b0 + a3 * b1,
            a0 * b3 + a1 * b2 - a2 * b1 + a3 * b0]


def rotate(q: Sequence[ValueLike], v: Sequence[ValueLike]) -> list[Value]:
    """The vector ``v`` rotated by the unit quaternion ``q`` (``q v q*``), as
    ``v + 2 w (u x v) + 2 u x (u x v)`` with ``q = [w, u]``.

    Example:
        >>> import math
        >>> q = [math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]   # z, 90 deg
        >>> [round(c.data, 12) for c in rotate(q, [1.0, 0.0, 0.0])]
        [0.0, 1.0, 0.0]
    """
    w, x, y, z = _four(q, "q")
    vx, vy, vz = _three(v, "v")
    cx, cy, cz = y * vz - z * vy, z * vx - x * vz, x * vy - y * vx     # u x v
    dx, dy, dz = y * cz - z * cy, z * cx - x * cz, x * cy - y * cx     # u x (u x v)
    return [vx + 2.0 * (w * cx + dx), vy + 2.0 * (w * cy + dy), vz + 2.0 * (w * cz + dz)]


def axis_angle_quaternion(axis: Sequence[float], angle: ValueLike) -> Quaternion:
    """The unit quaternion of a rotation by ``angle`` about the unit vector ``axis``.

    Example:
        >>> [round(c.data, 12) for c in axis_angle_quaternion([0, 0, 1], 3.141592653589793)]
        [0.0, 0.0, 0.0, 1.0]
    """
    a = np.asarray(axis, dtype=float)
    if a.shape != (3,) or not abs(float(np.linalg.norm(a)) - 1.0) <= 1e-12:
        raise ValueError(f"axis must be a unit vector of 3 numbers; got {list(axis)!r:.60}")
    half = as_value(angle, "angle") * 0.5
    s = sin(half)
    return [cos(half), s * float(a[0]), s * float(a[1]), s * float(a[2])]


def _geometry(angles: Sequence[Any], axes: Any, offsets: Any, tool: Any
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(angles)
    if n == 0:
        raise ValueError("angles must hold at least one joint angle; got an empty sequence")
    ax = np.asarray(axes, dtype=float)
    off = np.asarray(offsets, dtype=float)
    tl = np.asarray(tool, dtype=float)
    if ax.shape != (n, 3):
        raise ValueError(f"axes must be {n} unit vectors of 3 numbers (one per joint); got "
                         f"shape {ax.shape}")
    if not np.allclose(np.linalg.norm(ax, axis=1), 1.0, rtol=0.0, atol=1e-12):
        raise ValueError("axes must be unit vectors")
    if off.shape != (n, 3):
        raise ValueError(f"offsets must be {n} vectors of 3 numbers (one per joint); got "
                         f"shape {off.shape}")
    if tl.shape != (3,):
        raise ValueError(f"tool must be a vector of 3 numbers; got shape {tl.shape}")
    return ax, off, tl


def chain_pose(angles: Sequence[ValueLike], axes: Any, offsets: Any,
               tool: Any = (0.0, 0.0, 0.0)) -> tuple[list[Value], Quaternion]:
    """The tool's position and orientation (a unit quaternion ``[w, x, y, z]``) for a
    spatial chain of revolute joints (see the module docstring).

    Args:
        angles: joint angles (radians), one per joint; Values or numbers.
        axes: ``(n, 3)``: joint ``i`` turns about ``axes[i]`` (a unit vector, in the
            frame of the link before it, which in the zero configuration is the base's).
        offsets: ``(n, 3)``: where joint ``i`` sits relative to joint ``i - 1`` (the
            base for ``i = 0``), in the frame of link ``i - 1``.
        tool: the tool point relative to the last joint, in the last link's frame.

    Returns:
        ``(position, quaternion)``: 3 and 4 Values.

    Raises:
        ValueError: no angles, or ``axes``/``offsets``/``tool`` of the wrong shape.

    Example (a 2-joint arm: a yaw, then a pitch, links of 1 along z then x):
        >>> import math
        >>> p, q = chain_pose([math.pi / 2, 0.0], axes=[[0, 0, 1], [0, 1, 0]],
        ...                   offsets=[[0, 0, 1], [0, 0, 0]], tool=[1, 0, 0])
        >>> [round(c.data, 12) + 0.0 for c in p]
        [0.0, 1.0, 1.0]
    """
    ax, off, tl = _geometry(angles, axes, offsets, tool)
    position: list[Value] = [as_value(0.0), as_value(0.0), as_value(0.0)]
    orientation: Quaternion = [as_value(1.0), as_value(0.0), as_value(0.0), as_value(0.0)]
    for i, angle in enumerate(angles):
        step = rotate(orientation, off[i].tolist())
        position = [a + b for a, b in zip(position, step)]
        orientation = quaternion_product(orientation, axis_angle_quaternion(ax[i], angle))
    step = rotate(orientation, tl.tolist())
    return [a + b for a, b in zip(position, step)], orientation


def chain_points(angles: Sequence[float], axes: Any, offsets: Any,
                 tool: Any = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Every joint's position and the tool's, base first: ``(n + 2, 3)`` (to draw the
    arm; the chain of :func:`chain_pose`)."""
    ax, off, tl = _geometry(angles, axes, offsets, tool)
    points = [np.zeros(3)]
    orientation: Quaternion = [as_value(1.0), as_value(0.0), as_value(0.0), as_value(0.0)]
    for i, angle in enumerate(angles):
        step = np.array([c.data for c in rotate(orientation, off[i].tolist())])
        points.append(points[-1] + step)
        orientation = quaternion_product(orientation, axis_angle_quaternion(ax[i], angle))
    points.append(points[-1] + np.array([c.data for c in rotate(orientation, tl.tolist())]))
    return np.array(points)


def rotation_error(q: Sequence[ValueLike], q_target: Sequence[ValueLike]) -> list[Value]:
    """The rotation vector (angle in ``[0, pi]`` times axis, world frame) that turns
    ``q_target`` into ``q``: ``Log(q * q_target^-1)``, for quaternions ``[w, x, y, z]``.

    It is ``2 * QuaternionManifold().minus(s q, q_target)``: the manifold's log map
    (whose tangent vector is half the rotation vector, Ceres' convention), with
    ``s = sign(q . q_target)`` choosing of ``q`` and ``-q`` (the same rotation) the one
    on ``q_target``'s side of the sphere S^3, so the error takes the short way round
    and is continuous in ``q``. Written with ``where``, so it compiles as one function
    at every point.

    Example:
        >>> import math
        >>> q = [math.cos(0.25), 0.0, 0.0, math.sin(0.25)]         # 0.5 rad about z
        >>> [round(c.data, 12) + 0.0 for c in rotation_error(q, [1.0, 0.0, 0.0, 0.0])]
        [0.0, 0.0, 0.5]
        >>> [round(c.data, 12) + 0.0 for c in rotation_error([-c for c in q], [1, 0, 0, 0])]
        [0.0, 0.0, 0.5]
    """
    qs = _four(q, "q")
    ts = _four(q_target, "q_target")
    dot = qs[0] * ts[0] + qs[1] * ts[1] + qs[2] * ts[2] + qs[3] * ts[3]
    sign = where(dot < 0.0, -1.0, 1.0)
    half = _QUATERNION.minus([c * sign for c in qs], ts)
    return [2.0 * c for c in half]
