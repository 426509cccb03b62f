"""Manifolds against Ceres (through ``pyceres``): the same solutions, time per solve.

Run from the repository root::

    .venv/bin/python benchmarks/bench_manifolds.py            # everything
    .venv/bin/python benchmarks/bench_manifolds.py --quick    # fewer targets and repeats
    .venv/bin/python benchmarks/bench_manifolds.py --only ik  # or pose, graph

Sections, each solved by this package (Levenberg-Marquardt on the manifolds), by Ceres
(``pyceres``, its ``QuaternionManifold``, ``DENSE_QR``/``SPARSE_NORMAL_CHOLESKY``) and,
where a 3-parameter rotation vector does the job, by ``scipy.optimize.least_squares``:

* ``ik``: the 7-DOF arm of ``examples/pose_ik.py`` to pose targets (position and a
  quaternion orientation; the rotation residual is the quaternion manifold's log map),
  with a small posture term ``0.05 (q - q_start)`` so that the redundant arm has one
  solution to agree on. Every target starts both solvers from the same joint angles
  (the previous target's). Ceres and scipy get the residual and an analytic Jacobian
  written here in numpy (geometric Jacobian; inverse left Jacobian of SO(3) for the
  rotation error), this package its own compiled residual (traced once, the target a
  runtime input) and automatic derivatives.
* ``pose``: a rigid pose (unit quaternion + translation) from 200 noisy point
  correspondences: a residual block here with ``QuaternionManifold`` on the quaternion,
  one Ceres cost function (analytic Jacobian, ``QuaternionManifold``), scipy on a
  rotation vector; all against the closed form (Kabsch/Umeyama, SVD).
* ``graph``: the pose graph of ``examples/pose_graph.py`` (60 poses, 79 edges): here
  residual blocks on ``ProductManifold(QuaternionManifold(), EuclideanManifold(3))``;
  Ceres one cost function per edge (numeric central differences in numpy, vectorised:
  what ``NumericDiffCostFunction`` would do) with ``QuaternionManifold`` on every
  orientation; the first pose constant in both.

The columns: the largest difference of the solutions (joint angles; rotation angle in
radians and translation in metres), the final costs, and the median wall time of one
solve (ours after the first, which traces and compiles; Ceres' includes its calls back
into Python for every residual evaluation, which dominate on problems this small, so
its column measures pyceres more than the Ceres C++ core). Tolerances: 1e-15 (cost,
parameters, gradient) for every solver.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import scalar_autograd as sa  # noqa: E402
from scalar_autograd.console import format_table  # noqa: E402
from scalar_autograd.kinematics import chain_pose, rotation_error  # noqa: E402

try:
    import pyceres
except ImportError:     # the comparison then runs against scipy alone
    pyceres = None

TOL = 1e-15
SA_OPTS = {"cost_tolerance": TOL, "param_tolerance": TOL, "gradient_tolerance": TOL}
SCIPY_OPTS = {"method": "trf", "ftol": TOL, "xtol": TOL, "gtol": TOL}
POSTURE = 0.1


def median_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times), out


def ceres_options(sparse: bool = False) -> Any:
    options = pyceres.SolverOptions()
    options.function_tolerance = TOL
    options.gradient_tolerance = TOL
    options.parameter_tolerance = TOL
    options.max_num_iterations = 200
    options.linear_solver_type = (pyceres.LinearSolverType.SPARSE_NORMAL_CHOLESKY if sparse
                                  else pyceres.LinearSolverType.DENSE_QR)
    options.minimizer_progress_to_stdout = False
    return options


def skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def left_jacobian_inverse(e: np.ndarray) -> np.ndarray:
    """``J_l(e)^-1`` of SO(3): ``d Log(Exp(w) X) / d w`` at ``w = 0``, ``e = Log(X)``."""
    t = float(np.linalg.norm(e))
    K = skew(e)
    if t < 1e-6:
        return np.eye(3) - 0.5 * K + K @ K / 12.0
    return np.eye(3) - 0.5 * K + (1 / t**2 - (1 + math.cos(t)) / (2 * t * math.sin(t))) * K @ K


def left_jacobian(r: np.ndarray) -> np.ndarray:
    """``J_l(r)`` of SO(3): ``Exp(r + d) = Exp(J_l d) Exp(r)`` to first order."""
    t = float(np.linalg.norm(r))
    K = skew(r)
    if t < 1e-6:
        return np.eye(3) + 0.5 * K + K @ K / 6.0
    return np.eye(3) + (1 - math.cos(t)) / t**2 * K + (t - math.sin(t)) / t**3 * K @ K


def rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    K = skew(axis)
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


# ----------------------------------------------------------------------------- pose IK
def ik_numpy(theta: np.ndarray, target_p: np.ndarray, target_R: np.ndarray,
             rest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 13 IK residuals and their analytic Jacobian, in numpy alone."""
    from pose_ik import AXES, OFFSETS, TOOL

    R = np.eye(3)
    p = np.zeros(3)
    origins, axes = [], []
    for axis, offset, angle in zip(AXES, OFFSETS, theta):
        p = p + R @ offset
        origins.append(p)
        axes.append(R @ axis)
        R = R @ rodrigues(axis, angle)
    tool = p + R @ TOOL
    e = Rotation.from_matrix(R @ target_R.T).as_rotvec()
    r = np.concatenate([tool - target_p, e, POSTURE * (theta - rest)])
    J = np.zeros((13, 7))
    Jinv = left_jacobian_inverse(e)
    for i, (o, w) in enumerate(zip(origins, axes)):
        J[:3, i] = np.cross(w, tool - o)
        J[3:6, i] = Jinv @ w
    J[6:, :] = POSTURE * np.eye(7)
    return r, J


def bench_ik(count: int, repeats: int) -> None:
    from pose_ik import AXES, HOME, OFFSETS, TOOL, forward_kinematics

    rng = np.random.default_rng(0)
    configs = [HOME]
    for _ in range(count):          # a random walk in joint space: each target near the last
        configs.append(configs[-1] + 0.25 * rng.standard_normal(7))
    targets = []
    for q in configs[1:]:
        position, rotation = forward_kinematics(q)
        targets.append((position, rotation.as_quat(scalar_first=True), rotation.as_matrix()))

    # the analytic Jacobian given to Ceres and scipy, against central differences
    r0, J0 = ik_numpy(configs[0] + 0.1, targets[0][0], targets[0][2], configs[0])
    fd = np.stack([(ik_numpy(configs[0] + 0.1 + h, targets[0][0], targets[0][2],
                             configs[0])[0] -
                    ik_numpy(configs[0] + 0.1 - h, targets[0][0], targets[0][2],
                             configs[0])[0]) / 2e-7 for h in 1e-7 * np.eye(7)], axis=1)
    assert np.max(np.abs(J0 - fd)) < 1e-6, "the numpy IK Jacobian is wrong"

    joints = [sa.Value(0.0) for _ in range(7)]
    goal = [sa.Value(0.0) for _ in range(7)]
    rest = [sa.Value(0.0) for _ in range(7)]

    def residuals(q: list[sa.Value]) -> list[sa.Value]:
        position, orientation = chain_pose(q, AXES, OFFSETS, TOOL)
        return ([p - g for p, g in zip(position, goal[:3])] +
                rotation_error(orientation, goal[3:]) +
                [POSTURE * (a - b) for a, b in zip(q, rest)])

    def ours(start: np.ndarray, target: Any) -> tuple[np.ndarray, float]:
        for leaf, v in zip(goal + rest, [*target[0], *target[1], *start]):
            leaf.data = float(v)
        for j, v in zip(joints, start):
            j.data = float(v)
        result = sa.nonlinear_least_squares(joints, residuals, inputs=goal + rest, **SA_OPTS)
        return result.x.copy(), result.cost

    def scipy(start: np.ndarray, target: Any) -> tuple[np.ndarray, float]:
        result = least_squares(lambda t: ik_numpy(t, target[0], target[2], start)[0], start,
                               jac=lambda t: ik_numpy(t, target[0], target[2], start)[1],
                               **SCIPY_OPTS)
        return result.x, float(result.cost)

    def ceres(start: np.ndarray, target: Any) -> tuple[np.ndarray, float]:
        theta = start.copy()
        problem = pyceres.Problem()
        problem.add_residual_block(_IKCost(target[0], target[2], start.copy()), None, [theta])
        summary = pyceres.SolverSummary()
        pyceres.solve(ceres_options(), problem, summary)
        return theta, float(summary.final_cost)

    t = time.perf_counter()
    ours(configs[0], targets[0])
    first = 1e3 * (time.perf_counter() - t)
    solvers = {"scalar_autograd LM": ours, "scipy least_squares (trf)": scipy}
    if pyceres is not None:
        solvers["Ceres (pyceres)"] = ceres
    solutions: dict[str, list[np.ndarray]] = {name: [] for name in solvers}
    costs: dict[str, list[float]] = {name: [] for name in solvers}
    times: dict[str, list[float]] = {name: [] for name in solvers}
    gradients: dict[str, list[float]] = {name: [] for name in solvers}
    for start, target in zip(configs[:-1], targets):
        for name, solve in solvers.items():
            ms, (x, cost) = median_ms(lambda s=solve, a=start, b=target: s(a, b),
                                      repeats)
            solutions[name].append(x)
            costs[name].append(cost)
            times[name].append(ms)
            r, J = ik_numpy(x, target[0], target[2], start)
            gradients[name].append(float(np.max(np.abs(J.T @ r))))
    reference = "Ceres (pyceres)" if pyceres is not None else "scipy least_squares (trf)"
    rows = []
    for name in solvers:
        diff = max(float(np.max(np.abs(a - b))) for a, b in
                   zip(solutions[name], solutions[reference]))
        cost_rel = max(abs(a - b) / max(b, 1e-300) for a, b in zip(costs[name], costs[reference]))
        rows.append([name, f"{diff:.1e}", f"{cost_rel:.1e}", f"{max(gradients[name]):.1e}",
                     f"{statistics.median(times[name]):.3f}"])
    print(f"\n## ik: 7-DOF arm, {count} pose targets (position + quaternion), posture "
          f"weight {POSTURE}; differences against {reference}")
    print(format_table(["solver", "max |q - q_ref| (rad)", "max rel. cost diff",
                        "max |J^T r| (numpy)", "median ms / solve"], rows))
    print(f"(first solve of ours, tracing and compiling: {first:.0f} ms)")


if pyceres is not None:
    class _IKCost(pyceres.CostFunction):
        def __init__(self, target_p: np.ndarray, target_R: np.ndarray,
                     rest: np.ndarray) -> None:
            super().__init__()
            self.set_num_residuals(13)
            self.set_parameter_block_sizes([7])
            self.target_p, self.target_R, self.rest = target_p, target_R, rest

        def Evaluate(self, parameters: Any, residuals: Any, jacobians: Any) -> bool:  # noqa: N802
            r, J = ik_numpy(np.asarray(parameters[0]), self.target_p, self.target_R,
                            self.rest)
            residuals[:] = r
            if jacobians is not None and jacobians[0] is not None:
                jacobians[0][:] = J.ravel()
            return True


# ----------------------------------------------------------------------------- pose from points
def quaternion_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rotate_jacobian(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``d (q p q*) / d q`` for every point ``p`` ``(N, 3)``: ``(N, 3, 4)``, of the
    formula ``p + 2 w (u x p) + 2 u x (u x p)``."""
    w, u = q[0], q[1:]
    out = np.empty((p.shape[0], 3, 4))
    out[:, :, 0] = 2 * np.cross(u, p)
    up = p @ u
    for k in range(3):
        e = np.zeros(3)
        e[k] = 1.0
        # d/du_k: 2 w (e_k x p) + 2 (e_k (u.p) + u p_k - 2 p u_k)
        out[:, :, 1 + k] = 2 * w * np.cross(e, p) + 2 * (np.outer(up, e) + np.outer(p[:, k], u)
                                                          - 2 * p * u[k])
    return out


def bench_pose(repeats: int) -> None:
    rng = np.random.default_rng(5)
    n = 200
    points = rng.uniform(-1.0, 1.0, (n, 3))
    truth = Rotation.from_rotvec([0.7, -1.9, 0.4])
    observed = truth.apply(points) + [0.3, -1.2, 2.0] + 0.01 * rng.standard_normal((n, 3))
    cp, co = points.mean(axis=0), observed.mean(axis=0)
    U, _, Vt = np.linalg.svd((points - cp).T @ (observed - co))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R_ref = Vt.T @ D @ U.T
    t_ref = co - R_ref @ cp
    x0 = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])

    def block(p: list[sa.Value], d: list[sa.Value]) -> list[sa.Value]:
        from scalar_autograd.kinematics import rotate
        moved = rotate(p[:4], d[:3])
        return [m + t - o for m, t, o in zip(moved, p[4:], d[3:])]

    problem = sa.LeastSquaresProblem(x0)
    problem.add_block(block, param_index=np.tile(np.arange(7), (n, 1)),
                      data=[*points.T, *observed.T])
    problem.set_manifold(slice(0, 4), sa.QuaternionManifold())
    t = time.perf_counter()
    problem.solve(x0=x0, **SA_OPTS)
    first = 1e3 * (time.perf_counter() - t)

    def ours() -> tuple[np.ndarray, np.ndarray, float]:
        result = problem.solve(x0=x0, **SA_OPTS)
        return quaternion_matrix(result.x[:4]), result.x[4:], result.cost

    def scipy() -> tuple[np.ndarray, np.ndarray, float]:
        def fun(z: np.ndarray) -> np.ndarray:
            return (Rotation.from_rotvec(z[:3]).apply(points) + z[3:] - observed).ravel()

        def jac(z: np.ndarray) -> np.ndarray:
            moved = Rotation.from_rotvec(z[:3]).apply(points)
            J = np.zeros((n, 3, 6))
            Jl = left_jacobian(z[:3])
            for i in range(n):
                J[i, :, :3] = -skew(moved[i]) @ Jl
            J[:, :, 3:] = np.eye(3)
            return J.reshape(3 * n, 6)

        result = least_squares(fun, np.zeros(6), jac=jac, **SCIPY_OPTS)
        return Rotation.from_rotvec(result.x[:3]).as_matrix(), result.x[3:], float(result.cost)

    def ceres() -> tuple[np.ndarray, np.ndarray, float]:
        q, tr = x0[:4].copy(), x0[4:].copy()
        prob = pyceres.Problem()
        prob.add_residual_block(_PoseCost(points, observed), None, [q, tr])
        prob.set_manifold(q, pyceres.QuaternionManifold())
        summary = pyceres.SolverSummary()
        pyceres.solve(ceres_options(), prob, summary)
        return quaternion_matrix(q), tr, float(summary.final_cost)

    solvers = {"scalar_autograd LM (QuaternionManifold)": ours,
               "scipy least_squares (rotation vector)": scipy}
    if pyceres is not None:
        solvers["Ceres (QuaternionManifold)"] = ceres
    rows = []
    for name, solve in solvers.items():
        ms, (R, tr, cost) = median_ms(solve, repeats)
        angle = (Rotation.from_matrix(R) * Rotation.from_matrix(R_ref).inv()).magnitude()
        rows.append([name, f"{angle:.1e}", f"{np.max(np.abs(tr - t_ref)):.1e}",
                     f"{cost:.12g}", f"{ms:.2f}"])
    print(f"\n## pose: unit quaternion + translation from {n} point correspondences; "
          f"differences against the closed form (Kabsch/Umeyama, SVD)")
    print(format_table(["solver", "rotation diff (rad)", "translation diff", "cost",
                        "median ms / solve"], rows))
    print(f"(first solve of ours, tracing and compiling: {first:.0f} ms)")


if pyceres is not None:
    class _PoseCost(pyceres.CostFunction):
        def __init__(self, points: np.ndarray, observed: np.ndarray) -> None:
            super().__init__()
            self.points, self.observed = points, observed
            self.set_num_residuals(3 * points.shape[0])
            self.set_parameter_block_sizes([4, 3])

        def Evaluate(self, parameters: Any, residuals: Any, jacobians: Any) -> bool:  # noqa: N802
            q, t = np.asarray(parameters[0]), np.asarray(parameters[1])
            residuals[:] = (self.points @ quaternion_matrix(q).T + t - self.observed).ravel()
            if jacobians is not None:
                if jacobians[0] is not None:
                    jacobians[0][:] = rotate_jacobian(q, self.points).ravel()
                if jacobians[1] is not None:
                    jacobians[1][:] = np.tile(np.eye(3), (self.points.shape[0], 1)).ravel()
            return True


# ----------------------------------------------------------------------------- pose graph
def _edge_residuals(params: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """The example's edge residual for a batch of parameter rows ``(B, 14)``, numpy."""
    qi, ti, qj, tj = params[:, :4], params[:, 4:7], params[:, 7:11], params[:, 11:14]
    conj_i = qi * np.array([1.0, -1.0, -1.0, -1.0])

    def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a0, a1, a2, a3 = a.T
        b0, b1, b2, b3 = b.T
        return np.stack([a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3,
                         a0 * b1 + a1 * b0 + a2 * b3 - a3 * b2,
                         a0 * b2 - a1 * b3 + a2 * b0 + a3 * b1,
                         a0 * b3 + a1 * b2 - a2 * b1 + a3 * b0], axis=1)

    def rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
        u, w = q[:, 1:], q[:, :1]
        c = np.cross(u, v)
        return v + 2 * (w * c + np.cross(u, c))

    translation = rotate(conj_i, tj - ti) - measured[4:]
    z = product(product(conj_i, qj), measured[:4] * np.array([1.0, -1.0, -1.0, -1.0]))
    z = z * np.where(z[:, :1] < 0, -1.0, 1.0)
    u = np.linalg.norm(z[:, 1:], axis=1, keepdims=True)
    ratio = np.where(u > 1e-12, 2 * np.arctan2(u, z[:, :1]) / np.where(u > 1e-12, u, 1.0),
                     2 / z[:, :1])
    return np.hstack([translation, ratio * z[:, 1:]])


if pyceres is not None:
    class _EdgeCost(pyceres.CostFunction):
        STEP = 1e-7

        def __init__(self, measured: np.ndarray) -> None:
            super().__init__()
            self.measured = measured
            self.set_num_residuals(6)
            self.set_parameter_block_sizes([4, 3, 4, 3])
            self.probe = np.vstack([np.zeros(14), self.STEP * np.eye(14),
                                    -self.STEP * np.eye(14)])

        def Evaluate(self, parameters: Any, residuals: Any, jacobians: Any) -> bool:  # noqa: N802
            x = np.concatenate([np.asarray(p) for p in parameters])
            if jacobians is None:
                residuals[:] = _edge_residuals(x[None, :], self.measured)[0]
                return True
            values = _edge_residuals(x + self.probe, self.measured)
            residuals[:] = values[0]
            J = (values[1:15] - values[15:]).T / (2 * self.STEP)      # (6, 14)
            for k, (a, b) in enumerate(((0, 4), (4, 7), (7, 11), (11, 14))):
                if jacobians[k] is not None:
                    jacobians[k][:] = J[:, a:b].ravel()
            return True


def bench_graph(repeats: int) -> None:
    import pose_graph as example

    count = 60
    positions, rotations = example.trajectory(count)
    graph = example.edges(count)
    truth = np.hstack([rotations.as_quat(scalar_first=True), positions])
    measured = example.measure(positions, rotations, graph, noise=True)
    start = example.dead_reckoning(truth[0], graph, measured, count)
    # the numpy residual agrees with the example's compiled one at the start
    index = np.arange(7 * count).reshape(count, 7)
    pairs = np.array(graph)
    rows14 = np.hstack([start.reshape(-1)[index[pairs[:, 0]]],
                        start.reshape(-1)[index[pairs[:, 1]]]])
    ours_r = sa.LeastSquaresProblem(start.reshape(-1))
    ours_r.add_block(example.edge_residual, param_index=np.hstack([index[pairs[:, 0]],
                                                                  index[pairs[:, 1]]]),
                     data=list(measured.T))
    numpy_r = np.concatenate([_edge_residuals(rows14[k:k + 1], measured[k])[0]
                              for k in range(len(graph))])
    assert np.max(np.abs(ours_r.residuals() - numpy_r)) < 1e-12, "the numpy edge differs"

    t = time.perf_counter()
    example.solve(start, graph, measured, **SA_OPTS)
    first = 1e3 * (time.perf_counter() - t)

    def ours() -> tuple[np.ndarray, float]:
        result = example.solve(start, graph, measured, **SA_OPTS)
        return result.x.reshape(count, 7), result.cost

    def ceres() -> tuple[np.ndarray, float]:
        poses = start.copy()
        blocks = [(poses[k, :4].copy(), poses[k, 4:].copy()) for k in range(count)]
        problem = pyceres.Problem()
        for (i, j), row in zip(graph, measured):
            problem.add_residual_block(_EdgeCost(row), None,
                                       [blocks[i][0], blocks[i][1], blocks[j][0],
                                        blocks[j][1]])
        for q, _ in blocks:
            problem.set_manifold(q, pyceres.QuaternionManifold())
        problem.set_parameter_block_constant(blocks[0][0])
        problem.set_parameter_block_constant(blocks[0][1])
        summary = pyceres.SolverSummary()
        pyceres.solve(ceres_options(sparse=True), problem, summary)
        return np.array([np.concatenate(b) for b in blocks]), float(summary.final_cost)

    ms_ours, (x_ours, cost_ours) = median_ms(ours, repeats)
    rows = [["scalar_autograd LM (ProductManifold)", "", "", f"{cost_ours:.12g}",
             f"{ms_ours:.1f}"]]
    if pyceres is not None:
        ms_ceres, (x_ceres, cost_ceres) = median_ms(ceres, repeats)
        angle = (Rotation.from_quat(x_ours[:, :4], scalar_first=True) *
                 Rotation.from_quat(x_ceres[:, :4], scalar_first=True).inv()).magnitude()
        rows[0][1:3] = [f"{np.max(angle):.1e}",
                        f"{np.max(np.abs(x_ours[:, 4:] - x_ceres[:, 4:])):.1e}"]
        rows.append(["Ceres (QuaternionManifold, numeric diff.)", "", "",
                     f"{cost_ceres:.12g}", f"{ms_ceres:.1f}"])
    print(f"\n## graph: pose graph of {count} poses, {len(graph)} edges (the first pose "
          f"constant); differences against Ceres")
    print(format_table(["solver", "max rotation diff (rad)", "max position diff (m)",
                        "cost", "median ms / solve"], rows))
    print(f"(first solve of ours, tracing and compiling: {first:.0f} ms; Ceres "
          f"differentiates numerically in Python: 29 residual rows per edge and Jacobian)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=["ik", "pose", "graph"],
                        help="some sections only")
    parser.add_argument("--quick", action="store_true", help="20 IK targets, 1 repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    only = set(args.only or ["ik", "pose", "graph"])
    import scipy

    peer = (f"Ceres {pyceres.__ceres_version__} through pyceres {pyceres.__version__}"
            if pyceres is not None else
            "pyceres is not installed (pip install pyceres): Ceres columns left out, "
            "scipy only")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, scipy "
          f"{scipy.__version__}; {peer}; medians over {repeats} run(s)")
    if "ik" in only:
        bench_ik(20 if args.quick else 100, repeats)
    if "pose" in only:
        bench_pose(repeats)
    if "graph" in only:
        bench_graph(repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
