"""Pose-graph optimisation: poses on a quaternion manifold, held together by loop closures.

A robot drives twice around a loop (a circle with a slow climb and a wobbling
heading) and records its pose at ``N`` stations. Each pose is a unit quaternion
``[w, x, y, z]`` and a position, seven numbers with six degrees of freedom: a block on
``ProductManifold(QuaternionManifold(), EuclideanManifold(3))``. The measurements are
noisy relative poses: odometry between consecutive stations, and loop closures between
stations that revisit the same place (one lap apart) plus a few shortcuts across the
loop. Chaining the odometry alone (dead reckoning) drifts; least squares over all the
measurements pulls the trajectory back.

Each edge ``(i, j)`` with measured relative rotation ``q_ij`` and translation ``t_ij``
is a residual block of six entries (Ceres' pose-graph residual):
``R_i^T (p_j - p_i) - t_ij`` and ``Log(q_ij^-1 q_i^-1 q_j)`` (the rotation error by the
quaternion manifold's log map, ``sa.kinematics.rotation_error``). The first pose is
held fixed with ``SubsetManifold(7, range(7))`` (Ceres' ``SetParameterBlockConstant``):
it stays bit for bit where it starts, and fixes the gauge.

The same graph is also solved without noise: least squares must then recover the true
trajectory to rounding, which checks the whole construction.

Run:
    python examples/pose_graph.py [--plot DIR] [--quick]
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
from _common import cli, format_table, plot_path, require_matplotlib
from scipy.spatial.transform import Rotation

import scalar_autograd as sa
from scalar_autograd.kinematics import quaternion_product, rotate, rotation_error

ROTATION_NOISE = 0.01
"""Standard deviation of the measured relative rotations (rad, per axis)."""
TRANSLATION_NOISE = 0.03
"""Standard deviation of the measured relative translations (m, per axis)."""


def trajectory(count: int, laps: int = 2) -> tuple[np.ndarray, Rotation]:
    """The true stations: positions ``(count, 3)`` and orientations."""
    s = np.arange(count) / (count / laps)
    angle = 2.0 * math.pi * s
    positions = np.stack([5.0 * np.cos(angle), 5.0 * np.sin(angle), 0.3 * s], axis=1)
    heading = angle + math.pi / 2 + 0.15 * np.sin(3 * angle)
    tilt = 0.1 * np.sin(2 * angle)
    rotations = Rotation.from_euler("zyx", np.stack([heading, tilt, 0.5 * tilt], axis=1))
    return positions, rotations


def edges(count: int, laps: int = 2) -> list[tuple[int, int]]:
    """Odometry (each station to the next), loop closures (a lap apart) and shortcuts
    across the loop."""
    per_lap = count // laps
    out = [(i, i + 1) for i in range(count - 1)]
    out += [(i, i + per_lap) for i in range(0, count - per_lap, 2)]
    out += [(i, i + per_lap // 2) for i in range(0, count - per_lap // 2, per_lap // 3)]
    return out


def measure(positions: np.ndarray, rotations: Rotation, graph: list[tuple[int, int]],
            noise: bool, seed: int = 1) -> np.ndarray:
    """The measured relative poses, one row ``[q_ij (w first), t_ij]`` per edge."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, j in graph:
        relative = rotations[i].inv() * rotations[j]
        t = rotations[i].inv().apply(positions[j] - positions[i])
        if noise:
            relative = relative * Rotation.from_rotvec(ROTATION_NOISE * rng.standard_normal(3))
            t = t + TRANSLATION_NOISE * rng.standard_normal(3)
        rows.append(np.concatenate([relative.as_quat(scalar_first=True), t]))
    return np.array(rows)


def dead_reckoning(first: np.ndarray, graph: list[tuple[int, int]], measured: np.ndarray,
                   count: int) -> np.ndarray:
    """The poses ``(count, 7)`` chained from the first by the odometry edges alone."""
    poses = np.empty((count, 7))
    poses[0] = first
    for (i, j), row in zip(graph, measured):
        if j != i + 1:
            continue
        rotation = Rotation.from_quat(poses[i, :4], scalar_first=True)
        step = Rotation.from_quat(row[:4], scalar_first=True)
        poses[j, :4] = (rotation * step).as_quat(scalar_first=True)
        poses[j, 4:] = poses[i, 4:] + rotation.apply(row[4:])
    return poses


def edge_residual(p: list[sa.Value], d: list[sa.Value]) -> list[sa.Value]:
    """The six residuals of the edge from pose ``p[:7]`` to pose ``p[7:]``."""
    qi, ti, qj, tj = p[:4], p[4:7], p[7:11], p[11:14]
    q_ij, t_ij = d[:4], d[4:]
    conj_i = [qi[0], -qi[1], -qi[2], -qi[3]]
    local = rotate(conj_i, [b - a for a, b in zip(ti, tj)])
    translation = [a - b for a, b in zip(local, t_ij)]
    predicted = quaternion_product(conj_i, qj)
    return translation + rotation_error(predicted, q_ij)


def solve(start: np.ndarray, graph: list[tuple[int, int]], measured: np.ndarray,
          **options: Any) -> sa.LeastSquaresResult:
    """Least squares over every edge, the first pose held fixed."""
    count = start.shape[0]
    index = np.arange(7 * count).reshape(count, 7)
    problem = sa.LeastSquaresProblem(start.reshape(-1))
    pairs = np.array(graph)
    problem.add_block(edge_residual, param_index=np.hstack([index[pairs[:, 0]],
                                                            index[pairs[:, 1]]]),
                      data=list(measured.T), name="edge")
    pose = sa.ProductManifold(sa.QuaternionManifold(), sa.EuclideanManifold(3))
    problem.set_manifolds([(index[0], sa.SubsetManifold(7, range(7)))] +   # the gauge
                          [(index[k], pose) for k in range(1, count)])
    return problem.solve(**options)


def _errors(poses: np.ndarray, positions: np.ndarray, rotations: Rotation
            ) -> tuple[float, float]:
    """RMS position error (m) and RMS rotation error (rad) against the truth."""
    found = Rotation.from_quat(poses[:, :4], scalar_first=True)
    dp = np.linalg.norm(poses[:, 4:] - positions, axis=1)
    dr = (found * rotations.inv()).magnitude()
    return float(np.sqrt(np.mean(dp**2))), float(np.sqrt(np.mean(dr**2)))


def run(quick: bool = False, plot_dir: str | None = None) -> dict[str, Any]:
    """Solve the noisy graph (and the noise-free one) from dead reckoning.

    Returns:
        A dict with ``count``, ``edges``, ``result`` (the noisy solve), RMS errors
        ``drift`` (dead reckoning) and ``solved`` (least squares), each ``(position m,
        rotation rad)``, ``exact`` (the noise-free solve's largest deviation from the
        truth: position, rotation), ``first_pose_fixed`` (bit for bit), ``max_unit_error``
        (of the solved quaternions' norms) and ``plot``.
    """
    count = 24 if quick else 60
    positions, rotations = trajectory(count)
    graph = edges(count)
    truth = np.hstack([rotations.as_quat(scalar_first=True), positions])
    print(f"pose graph: {count} poses (7 numbers, 6 degrees of freedom each), "
          f"{len(graph)} edges ({count - 1} odometry, {len(graph) - count + 1} loop "
          f"closures and shortcuts)")

    exact_measurements = measure(positions, rotations, graph, noise=False)
    start = dead_reckoning(truth[0], graph, exact_measurements, count)
    start[1:, 4:] += 0.5                  # a wrong start, far from the truth
    start[1:, :4] = (Rotation.from_quat(start[1:, :4], scalar_first=True) *
                     Rotation.from_rotvec([0.2, -0.1, 0.3])).as_quat(scalar_first=True)
    exact = solve(start, graph, exact_measurements, cost_tolerance=1e-15,
                  param_tolerance=1e-15, gradient_tolerance=1e-15)
    solved_exact = exact.x.reshape(count, 7)
    exact_error = (float(np.max(np.abs(solved_exact[:, 4:] - positions))),
                   float(np.max((Rotation.from_quat(solved_exact[:, :4], scalar_first=True)
                                 * rotations.inv()).magnitude())))

    measured = measure(positions, rotations, graph, noise=True)
    start = dead_reckoning(truth[0], graph, measured, count)
    result = solve(start, graph, measured)
    poses = result.x.reshape(count, 7)
    drift, solved = _errors(start, positions, rotations), _errors(poses, positions, rotations)
    rows = [["dead reckoning", f"{drift[0]:.3f}", f"{drift[1]:.4f}", ""],
            ["least squares", f"{solved[0]:.3f}", f"{solved[1]:.4f}",
             f"{result.iterations} iterations ({result.status.name})"]]
    print(format_table(["trajectory", "RMS position error (m)", "RMS rotation error (rad)",
                        ""], rows))
    unit = float(np.max(np.abs(np.linalg.norm(poses[:, :4], axis=1) - 1.0)))
    fixed = bool(np.array_equal(poses[0], start[0]))
    print(f"noise-free graph from a wrong start: largest error {exact_error[0]:.1e} m, "
          f"{exact_error[1]:.1e} rad ({exact.iterations} iterations)")
    print(f"quaternions unit within {unit:.1e}; first pose held bit for bit: {fixed}")
    png = None
    if plot_dir is not None:
        png = _plot(plot_path(plot_dir, "pose_graph.png"), positions, start, poses, graph)
        print(f"wrote {png}")
    return {"count": count, "edges": graph, "result": result, "drift": drift,
            "solved": solved, "exact": exact_error, "exact_result": exact,
            "first_pose_fixed": fixed, "max_unit_error": unit, "plot": png}


def _plot(path: str, truth: np.ndarray, start: np.ndarray, poses: np.ndarray,
          graph: list[tuple[int, int]]) -> str:
    Figure = require_matplotlib()
    fig = Figure(figsize=(6.5, 6.0), layout="constrained")
    ax = fig.subplots()
    for i, j in graph:
        if j != i + 1:
            ax.plot(poses[[i, j], 4], poses[[i, j], 5], color="0.8", lw=0.8, zorder=0)
    ax.plot(truth[:, 0], truth[:, 1], "-", color="k", lw=1.0, label="truth")
    ax.plot(start[:, 4], start[:, 5], "--", color="C3", lw=1.2, label="dead reckoning")
    ax.plot(poses[:, 4], poses[:, 5], "-o", color="C0", ms=3, lw=1.2, label="least squares")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    ax.set_title("Pose graph (x-y view; grey: loop closures and shortcuts)")
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    sys.exit(cli(run, __doc__))
