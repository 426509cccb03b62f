"""7-DOF arm: inverse kinematics to full pose targets (position and orientation).

A spatial arm of seven revolute joints laid out like a KUKA LBR iiwa 14 (joint axes z,
y, z, -y, z, y, z; 0.36 m to the shoulder, 0.42 m to the elbow, 0.40 m to the wrist,
0.126 m flange plus a 0.10 m tool) has to put its tool on a sequence of poses: a
position and an orientation given as a unit quaternion ``[w, x, y, z]``. The residual
has six entries: the position error (metres) and the rotation error (the rotation
vector of ``q * q_target^-1``, radians), the latter by the quaternion manifold's log
map (``sa.kinematics.rotation_error``, which is ``2 * QuaternionManifold().minus`` on
the target's side of the sphere of quaternions). Seven joints for six constraints: the
arm is redundant, and each solve, warm-started from the previous pose, stays near it.

The residual function is traced once, with the target as runtime inputs
(``inputs=...``): the 20 targets of the path cost one trace and compilation. Each
target is solved twice, by Levenberg-Marquardt (``sa.nonlinear_least_squares``) and by
L-BFGS on the squared residual (``sa.minimize`` of the loss graph, built once with the
target as its inputs); the reached pose is checked with a forward kinematics written
independently with ``scipy.spatial.transform.Rotation``.

Run:
    python examples/pose_ik.py [--plot DIR] [--quick]
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np
from _common import cli, format_table, plot_path, require_matplotlib
from scipy.spatial.transform import Rotation

import scalar_autograd as sa
from scalar_autograd.kinematics import chain_points, chain_pose, rotation_error

AXES = np.array([[0, 0, 1], [0, 1, 0], [0, 0, 1], [0, -1, 0], [0, 0, 1], [0, 1, 0],
                 [0, 0, 1]], dtype=float)
"""Joint axes in the zero configuration (the arm straight up)."""
OFFSETS = np.array([[0, 0, 0], [0, 0, 0.36], [0, 0, 0], [0, 0, 0.42], [0, 0, 0],
                    [0, 0, 0.40], [0, 0, 0]], dtype=float)
"""Each joint's position relative to the previous one (metres)."""
TOOL = np.array([0.0, 0.0, 0.226])
"""The tool point relative to the last joint: the 0.126 m flange and a 0.10 m tool."""
HOME = np.array([0.0, 0.6, 0.0, -1.2, 0.0, 0.9, 0.0])
"""The start: shoulder and elbow bent, the tool pointing forward and down."""
TOLERANCES = {"cost_tolerance": 1e-14, "param_tolerance": 1e-14, "gradient_tolerance": 1e-14}


def forward_kinematics(q: np.ndarray) -> tuple[np.ndarray, Rotation]:
    """The tool pose by scipy's rotations alone (an oracle independent of the package)."""
    rotation = Rotation.identity()
    position = np.zeros(3)
    for axis, offset, angle in zip(AXES, OFFSETS, q):
        position = position + rotation.apply(offset)
        rotation = rotation * Rotation.from_rotvec(angle * axis)
    return position + rotation.apply(TOOL), rotation


def path_targets(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Poses reached by joint configurations along a smooth path from ``HOME``: each a
    position and a quaternion ``[w, x, y, z]``."""
    s = np.linspace(0.0, 1.0, count + 1)[1:]
    targets = []
    for t in s:
        q = HOME + np.array([0.9 * math.sin(2 * math.pi * t), 0.3 * math.sin(math.pi * t),
                             0.4 * t, 0.5 * math.sin(math.pi * t), -0.6 * t,
                             0.4 * math.sin(2 * math.pi * t), 1.2 * t])
        position, rotation = forward_kinematics(q)
        targets.append((position, rotation.as_quat(scalar_first=True)))
    return targets


def pose_errors(q: np.ndarray, target: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """Position error (m) and orientation error (rad) of joint angles ``q``, by scipy."""
    position, rotation = forward_kinematics(q)
    goal = Rotation.from_quat(target[1], scalar_first=True)
    return float(np.linalg.norm(position - target[0])), float((rotation * goal.inv()).magnitude())


def run(quick: bool = False, plot_dir: str | None = None) -> dict[str, Any]:
    """Reach every target pose by least squares and by L-BFGS.

    Returns:
        A dict with ``targets``, per solver (``"lm"``, ``"lbfgs"``) the
        ``position_errors`` (m), ``orientation_errors`` (rad), ``iterations``,
        ``ms`` (per target, after the first) and ``poses`` (joint angles), the
        ``first_ms`` of each (trace and compile included) and ``plot``.
    """
    count = 6 if quick else 20
    targets = path_targets(count)
    joints = [sa.Value(float(a), label=f"q{i}") for i, a in enumerate(HOME)]
    goal = [sa.Value(0.0, label=f"p{i}") for i in range(3)] + \
        [sa.Value(1.0 if i == 0 else 0.0, label=f"quat{i}") for i in range(4)]

    def residuals(q: list[sa.Value]) -> list[sa.Value]:
        position, orientation = chain_pose(q, AXES, OFFSETS, TOOL)
        return [p - g for p, g in zip(position, goal[:3])] + \
            rotation_error(orientation, goal[3:])

    def loss(q: list[sa.Value]) -> sa.Value:
        return sa.sum([r * r for r in residuals(q)])

    # L-BFGS takes the loss as one Value graph, built once: compiled at the first
    # solve, then reused with the goal's new values
    loss_graph = loss(joints)
    solvers = {
        "lm": lambda: sa.nonlinear_least_squares(joints, residuals, inputs=goal,
                                                 **TOLERANCES),
        "lbfgs": lambda: sa.minimize(loss_graph, joints, method="lbfgs", inputs=goal,
                                     gradient_tolerance=1e-12, ftol=0.0,
                                     max_iterations=2000),
    }
    out: dict[str, Any] = {"targets": targets}
    print(f"7-DOF arm, {count} pose targets along a path (position + quaternion)")
    rows = []
    for name, solve in solvers.items():
        for j, a in zip(joints, HOME):
            j.data = float(a)
        record: dict[str, list[Any]] = {"position_errors": [], "orientation_errors": [],
                                        "iterations": [], "ms": [], "poses": []}
        for k, (position, quaternion) in enumerate(targets):
            for leaf, v in zip(goal, [*position, *quaternion]):
                leaf.data = float(v)
            t = time.perf_counter()
            result = solve()
            elapsed = 1e3 * (time.perf_counter() - t)
            q = np.array([j.data for j in joints])
            dp, dr = pose_errors(q, (position, quaternion))
            if k == 0:
                out[f"{name}_first_ms"] = elapsed
            else:
                record["ms"].append(elapsed)
            record["position_errors"].append(dp)
            record["orientation_errors"].append(dr)
            record["iterations"].append(result.iterations)
            record["poses"].append(q)
        out[name] = record
        label = "least squares (LM)" if name == "lm" else "L-BFGS"
        rows.append([label, f"{max(record['position_errors']):.1e}",
                     f"{max(record['orientation_errors']):.1e}",
                     f"{np.median(record['iterations']):.0f}",
                     f"{np.median(record['ms']):.2f}", f"{out[f'{name}_first_ms']:.0f}"])
    print(format_table(["solver", "max position error (m)", "max rotation error (rad)",
                        "median iterations", "median ms / target", "first ms"], rows))
    print("(errors measured by an independent forward kinematics in scipy; the first "
          "solve traces and compiles)")
    png = None
    if plot_dir is not None:
        png = _plot(plot_path(plot_dir, "pose_ik.png"), out["lm"]["poses"], targets)
        print(f"wrote {png}")
    out["plot"] = png
    return out


def _plot(path: str, poses: list[np.ndarray], targets: list[Any]) -> str:
    Figure = require_matplotlib()
    fig = Figure(figsize=(6.5, 6.0), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    for k, q in enumerate(poses[:: max(1, len(poses) // 6)]):
        pts = chain_points(q.tolist(), AXES, OFFSETS, TOOL)
        ax.plot(pts[:, 0], pts[:, 1], pts[:, 2], "-o", ms=3, lw=1.8, color=f"C{k % 10}")
    for position, quaternion in targets:
        rotation = Rotation.from_quat(quaternion, scalar_first=True)
        tip = position + 0.08 * rotation.apply([0.0, 0.0, 1.0])
        ax.plot(*zip(position, tip), color="k", lw=1.2)
        ax.scatter(*position, color="k", s=8)
    ax.set_aspect("equal")
    ax.set_title("7-DOF arm at pose targets (least squares on a quaternion error)")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    sys.exit(cli(run, __doc__))
