"""Planar robot arm: inverse kinematics through a list of waypoints, compiled once.

An arm of revolute joints (link lengths 1.0, 0.9, 0.8, ...) has to put its end effector
on each waypoint in turn. The squared distance to the target is built once as a graph
(``planar_ik_loss``) and compiled with the target as a runtime input, so one compiled
function serves every waypoint. Each waypoint is an L-BFGS solve (``sa.lbfgs`` on the
compiled function), starting from the pose that reached the previous waypoint, the way
an arm moves along a path.

The same solves also run the traditional way: ``sa.lbfgs`` with a Python objective
that rebuilds the graph and calls ``backward()`` at every evaluation. Both take the
same iterations to the same angles; the script prints both times.

Run:
    python examples/robot_arm_ik.py [--plot DIR] [--quick]
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np
from _common import cli, format_table, plot_path, require_matplotlib

import scalar_autograd as sa
from scalar_autograd.kinematics import arm_points, planar_arm_end, planar_ik_loss

GRADIENT_TOLERANCE = 1e-13
"""L-BFGS stops on the gradient alone (``ftol=0``), far below the 1e-6 reach tolerance."""


def waypoints(count: int) -> list[tuple[float, float]]:
    """``count`` targets on a circle of radius 1.2 around (2.0, 1.0)."""
    angles = np.linspace(0.0, 2.0 * math.pi, count, endpoint=False)
    return [(2.0 + 1.2 * math.cos(t), 1.0 + 1.2 * math.sin(t)) for t in angles]


def _best_ms(solve: Any, angles: list[sa.Value], start: list[float],
               repeats: int) -> tuple[float, sa.OptimizeResult]:
    """Best time of ``solve()`` from ``start`` over ``repeats`` runs, and its result."""
    times = []
    for _ in range(repeats):
        for a, s in zip(angles, start):
            a.data = s
        t = time.perf_counter()
        result = solve()
        times.append(time.perf_counter() - t)
    return 1e3 * min(times), result


def run(quick: bool = False, plot_dir: str | None = None) -> dict[str, Any]:
    """Reach every waypoint; return the distances, iterations and timings.

    Returns:
        A dict with ``targets``, ``distances`` (end effector to target after each
        solve), ``iterations``, ``traditional_ms``, ``compiled_ms``, ``compile_ms``,
        ``max_angle_difference`` (traditional vs compiled final angles), ``poses``
        (joint angles per waypoint) and ``plot`` (the PNG path or ``None``).
    """
    n_joints, n_targets, repeats = (5, 4, 3) if quick else (8, 8, 5)
    lengths = [1.0 - 0.1 * i for i in range(n_joints)]
    targets = waypoints(n_targets)

    # build the loss once: the joint angles are the parameters, the target an input
    angles = [sa.Value(0.3, label=f"q{i}", requires_grad=True) for i in range(n_joints)]
    target = (sa.Value(0.0, label="target.x"), sa.Value(0.0, label="target.y"))
    loss = planar_ik_loss(angles, target, lengths)
    t = time.perf_counter()
    f = sa.compile(loss, angles, inputs=list(target))
    f.value_and_grad([a.data for a in angles], [0.0, 0.0])
    compile_ms = 1e3 * (time.perf_counter() - t)
    print(f"{n_joints}-joint arm (links {', '.join(f'{L:.1f}' for L in lengths)}), "
          f"{n_targets} waypoints")
    print(f"loss graph: {len(sa.topological_order(loss))} nodes, compiled to "
          f"{f.n_instructions} instructions ({f.backend}) in {compile_ms:.1f} ms\n")

    rows, poses, distances, iterations = [], [], [], []
    trad_ms, comp_ms, max_diff = [], [], 0.0
    for tx, ty in targets:
        start = [a.data for a in angles]

        def traditional(tx: float = tx, ty: float = ty) -> sa.OptimizeResult:
            return sa.lbfgs(lambda q: planar_ik_loss(q, (tx, ty), lengths), angles,
                            gradient_tolerance=GRADIENT_TOLERANCE, ftol=0.0)

        def compiled(tx: float = tx, ty: float = ty) -> sa.OptimizeResult:
            return sa.lbfgs(f, angles, inputs=[tx, ty],
                            gradient_tolerance=GRADIENT_TOLERANCE, ftol=0.0)

        t_trad, r_trad = _best_ms(traditional, angles, start, repeats)
        t_comp, r_comp = _best_ms(compiled, angles, start, repeats)
        max_diff = max(max_diff, float(np.max(np.abs(r_trad.x - r_comp.x))))
        ex, ey = planar_arm_end(angles, lengths)  # angles now hold the compiled solution
        distance = math.hypot(ex.data - tx, ey.data - ty)
        poses.append([a.data for a in angles])
        distances.append(distance)
        iterations.append(r_comp.iterations)
        trad_ms.append(t_trad)
        comp_ms.append(t_comp)
        rows.append([f"({tx:+.3f}, {ty:+.3f})", r_comp.iterations, r_comp.nfev,
                     f"{distance:.1e}", f"{t_trad:.2f}", f"{t_comp:.3f}",
                     f"{t_trad / t_comp:.0f}x"])

    print(format_table(["target", "iterations", "evaluations", "distance",
                        "traditional ms", "compiled ms", "speedup"], rows))
    print(f"\nall {n_targets} waypoints reached: largest distance {max(distances):.1e}; "
          f"traditional and compiled angles differ by at most {max_diff:.1e}")
    print(f"total: traditional {sum(trad_ms):.1f} ms, compiled {sum(comp_ms):.2f} ms "
          f"(+ {compile_ms:.1f} ms compile once), best of {repeats} runs")
    print("(L-BFGS's own bookkeeping in Python dominates the compiled time; "
          "`python -m scalar_autograd demo` times the gradient loop alone)")

    png = None
    if plot_dir is not None:
        png = _plot(plot_path(plot_dir, "robot_arm_ik.png"), poses, targets, lengths)
        print(f"wrote {png}")
    return {"targets": targets, "distances": distances, "iterations": iterations,
            "traditional_ms": trad_ms, "compiled_ms": comp_ms, "compile_ms": compile_ms,
            "max_angle_difference": max_diff, "poses": poses, "plot": png}


def _plot(path: str, poses: list[list[float]], targets: list[tuple[float, float]],
          lengths: list[float]) -> str:
    Figure = require_matplotlib()
    fig = Figure(figsize=(6.5, 6.0), layout="constrained")
    ax = fig.subplots()
    path_xy = np.array(targets + targets[:1])
    ax.plot(path_xy[:, 0], path_xy[:, 1], ":", color="0.5", label="waypoint path")
    for k, (q, target) in enumerate(zip(poses, targets)):
        pts = arm_points(q, lengths)
        color = f"C{k % 10}"
        ax.plot(pts[:, 0], pts[:, 1], "-o", color=color, ms=3, lw=1.8, alpha=0.85)
        ax.plot(*target, "x", color=color, ms=10, mew=2.5)
    ax.plot(0, 0, "s", color="k", ms=8, label="base")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(f"{len(lengths)}-joint arm at each waypoint (IK by compiled L-BFGS)")
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    sys.exit(cli(run, __doc__))
