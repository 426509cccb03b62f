"""The demo behind ``python -m scalar_autograd demo``: planar-arm IK, traditional vs compiled.

A planar arm of ``n`` unit links starts curled up (joint ``i`` at ``0.1 * (i + 1)`` rad)
and moves its end effector onto the target ``(2.0, 1.5)`` by 1000 steps of gradient
descent on the squared distance (:func:`scalar_autograd.kinematics.planar_ik_loss`,
learning rate 0.01). The same descent runs three ways:

* traditional: rebuild the graph and call ``backward()`` at every step (micrograd);
* the seed's API: compile once with ``sa.compile_gradient_function``, then
  ``sa.apply_compiled_gradients`` at every step, still updating ``Value.data``;
* compiled: one ``f.value_and_grad(x, out=grad)`` native call per step on float64
  vectors.

The table it prints (graph size, iterations, milliseconds, speedups) is the seed's
speedup table for 5, 20 and 50 variables, measured live on this machine. Timings are
the best of ``repeats`` runs (as ``timeit``: the least disturbed run on a busy machine)
and cover the descent loop only; the one-off compile time has its own column.

The demo only: the pieces it shares with the scripts in ``examples/`` live in modules
named for what they are (:mod:`scalar_autograd.console` for the table and the progress
bar, :mod:`scalar_autograd.plotting` for the matplotlib guard,
:mod:`scalar_autograd.kinematics` for the arm).

Example:
    >>> import io
    >>> rows = run_demo(sizes=(3,), iterations=20, repeats=1, out=io.StringIO(),
    ...                 progress=False)
    >>> rows[0].variables, rows[0].graph_nodes, rows[0].speedup > 0
    (3, 32, True)
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from scalar_autograd.console import ProgressBar, format_table
from scalar_autograd.kinematics import arm_points, planar_ik_loss
from scalar_autograd.plotting import require_matplotlib
from scalar_autograd.runtime import apply_compiled_gradients, compile, compile_gradient_function
from scalar_autograd.value import Value

__all__ = [
    "SIZES", "ITERATIONS", "TARGET", "LEARNING_RATE", "SpeedupRow", "start_angles",
    "measure_speedup", "run_demo", "speedup_table", "plot_arm_poses", "plot_timings",
]

SIZES = (5, 20, 50)
"""The numbers of joint angles (variables) in the seed's table."""
ITERATIONS = 1000
"""Gradient-descent steps per run, as in the seed's table."""
TARGET = (2.0, 1.5)
"""Where the end effector has to go."""
LEARNING_RATE = 0.01
"""Gradient-descent step size."""

_CHUNKS = 20  # progress updates per timed run (between chunks, outside the timed part)


# ----------------------------------------------------------------------------- measurement


def start_angles(n: int) -> list[float]:
    """The seed's starting pose: joint ``i`` at ``0.1 * (i + 1)`` radians."""
    return [0.1 * (i + 1) for i in range(n)]


@dataclass(frozen=True)
class SpeedupRow:
    """One line of the speedup table.

    Attributes:
        variables: the number of joint angles.
        graph_nodes: the number of nodes in the loss graph.
        iterations: gradient-descent steps per run.
        traditional_ms: rebuild the graph and ``backward()`` at every step.
        seed_api_ms: ``sa.apply_compiled_gradients`` at every step.
        compiled_ms: ``f.value_and_grad(x, out=grad)`` on float64 vectors.
        compile_ms: ``sa.compile`` and the first call (paid once).
        final_distance: end effector to target after the compiled run.
        max_angle_difference: largest difference between the traditional and the
            compiled final joint angles (eager vs native rounding).
        start: the starting joint angles; final: the compiled run's final angles.
    """

    variables: int
    graph_nodes: int
    iterations: int
    traditional_ms: float
    seed_api_ms: float
    compiled_ms: float
    compile_ms: float
    final_distance: float
    max_angle_difference: float
    start: tuple[float, ...]
    final: tuple[float, ...]

    @property
    def speedup(self) -> float:
        """Traditional time over compiled time."""
        return self.traditional_ms / self.compiled_ms

    @property
    def seed_api_speedup(self) -> float:
        """Traditional time over the seed API's time."""
        return self.traditional_ms / self.seed_api_ms


def _timed(run_steps: Callable[[int], None], iterations: int,
           on_chunk: Callable[[int], None]) -> float:
    """Seconds spent in ``run_steps`` over ``iterations`` steps, in chunks."""
    total = 0.0
    done = 0
    for c in range(_CHUNKS):
        steps = (iterations * (c + 1)) // _CHUNKS - done
        if steps == 0:
            continue
        t = time.perf_counter()
        run_steps(steps)
        total += time.perf_counter() - t
        done += steps
        on_chunk(steps)
    return total


def measure_speedup(n: int, iterations: int = ITERATIONS, repeats: int = 3,
                    progress: ProgressBar | None = None,
                    statistic: Callable[[list[float]], float] = min) -> SpeedupRow:
    """Time the three gradient-descent loops for an arm of ``n`` joints.

    Args:
        n: the number of joint angles (variables), >= 1.
        iterations: steps per run, >= 1.
        repeats: runs of each loop.
        progress: advanced by one unit per step of every run.
        statistic: reduces the runs' times to the reported one: ``min`` (the best, the
            demo's default) or ``statistics.median`` (the benchmarks').

    Returns:
        A :class:`SpeedupRow`.
    """
    start = start_angles(n)

    def advance(label: str) -> Callable[[int], None]:
        return lambda steps: progress.advance(steps, label) if progress else None

    # traditional: a new graph and backward() at every step
    trad_final: list[float] = []

    def traditional_run() -> Callable[[int], None]:
        angles = [Value(a, requires_grad=True) for a in start]

        def steps(k: int) -> None:
            for _ in range(k):
                for a in angles:
                    a.grad = 0.0
                planar_ik_loss(angles, TARGET).backward()
                for a in angles:
                    a.data -= LEARNING_RATE * a.grad
            trad_final[:] = [a.data for a in angles]

        return steps

    # the compiled function: one graph, compiled once
    angles = [Value(a, requires_grad=True) for a in start]
    loss = planar_ik_loss(angles, TARGET)
    t = time.perf_counter()
    f = compile(loss, angles)
    f.value_and_grad(np.array(start))
    compile_ms = 1e3 * (time.perf_counter() - t)
    seed_fn = compile_gradient_function(loss, angles)  # same program: a cache hit
    apply_compiled_gradients(seed_fn, angles)  # warm up the seed API's call path

    def seed_api_run() -> Callable[[int], None]:
        for a, s in zip(angles, start):
            a.data = s

        def steps(k: int) -> None:
            for _ in range(k):
                apply_compiled_gradients(seed_fn, angles)
                for a in angles:
                    a.data -= LEARNING_RATE * a.grad

        return steps

    x = np.empty(n)
    grad = np.empty(n)

    def compiled_run() -> Callable[[int], None]:
        x[:] = start

        def steps(k: int) -> None:
            for _ in range(k):
                f.value_and_grad(x, out=grad)
                x[:] -= LEARNING_RATE * grad

        return steps

    def best_ms(make: Callable[[], Callable[[int], None]], label: str) -> float:
        times = [_timed(make(), iterations, advance(f"n={n}: {label}"))
                 for _ in range(repeats)]
        return 1e3 * statistic(times)

    traditional_ms = best_ms(traditional_run, "traditional (graph + backward)")
    seed_api_ms = best_ms(seed_api_run, "seed API (apply_compiled_gradients)")
    compiled_ms = best_ms(compiled_run, "compiled (value_and_grad)")
    final_loss = float(f(x))
    return SpeedupRow(
        variables=n, graph_nodes=len(_nodes(loss)), iterations=iterations,
        traditional_ms=traditional_ms, seed_api_ms=seed_api_ms, compiled_ms=compiled_ms,
        compile_ms=compile_ms, final_distance=math.sqrt(max(final_loss, 0.0)),
        max_angle_difference=float(np.max(np.abs(np.array(trad_final) - x))),
        start=tuple(start), final=tuple(x.tolist()),
    )


def _nodes(v: Value) -> list[Value]:
    from scalar_autograd.graph import topological_order

    return topological_order(v)


def speedup_table(rows: Sequence[SpeedupRow]) -> str:
    """The seed's speedup table for ``rows`` as text."""
    headers = ["variables", "graph nodes", "iterations", "traditional ms", "seed API ms",
               "compiled ms", "speedup", "seed API speedup", "compile ms"]
    body = [[r.variables, r.graph_nodes, r.iterations, f"{r.traditional_ms:.1f}",
             f"{r.seed_api_ms:.1f}", f"{r.compiled_ms:.2f}", _ratio(r.speedup),
             _ratio(r.seed_api_speedup), f"{r.compile_ms:.1f}"] for r in rows]
    return format_table(headers, body)


def _ratio(x: float) -> str:
    """``"97x"``, ``"14.2x"`` or ``"0.53x"``: at least two significant digits."""
    if x >= 100:
        return f"{x:.0f}x"
    return f"{x:.3g}x" if x >= 1 else f"{x:.2g}x"


# ----------------------------------------------------------------------------- plots


def plot_arm_poses(path: str, poses: Sequence[tuple[str, Sequence[float], Sequence[float]]],
                   targets: Sequence[tuple[float, float]], title: str,
                   lengths: Sequence[float] | None = None) -> str:
    """Draw arm poses side by side and save a PNG.

    Args:
        path: the PNG file to write.
        poses: one ``(title, start_angles, final_angles)`` per panel; the start pose is
            drawn faint, the final pose solid.
        targets: one target per panel (a cross).
        title: the figure's title.
        lengths: the link lengths (all 1 when omitted).

    Returns:
        ``path``.

    Raises:
        ImportError: without matplotlib.
    """
    Figure = require_matplotlib()
    fig = Figure(figsize=(4.2 * len(poses), 4.4), layout="constrained")
    axes = fig.subplots(1, len(poses), squeeze=False)[0]
    for ax, (name, q0, q1), target in zip(axes, poses, targets):
        for q, style in ((q0, dict(color="0.7", lw=1.5)), (q1, dict(color="C0", lw=2.0))):
            pts = arm_points(q, lengths)
            ax.plot(pts[:, 0], pts[:, 1], "-o", ms=2.5, **style)
        ax.plot(*target, "x", color="C3", ms=10, mew=2.5)
        ax.plot(0, 0, "s", color="k", ms=6)
        ax.set_aspect("equal")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path


def plot_timings(path: str, rows: Sequence[SpeedupRow]) -> str:
    """Bar chart of the three loops' times per size (log scale); saves a PNG."""
    Figure = require_matplotlib()
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    xs = np.arange(len(rows))
    series = [("traditional", [r.traditional_ms for r in rows], "C3"),
              ("seed API", [r.seed_api_ms for r in rows], "C1"),
              ("compiled", [r.compiled_ms for r in rows], "C0")]
    for k, (name, ms, color) in enumerate(series):
        bars = ax.bar(xs + (k - 1) * 0.27, ms, width=0.27, label=name, color=color)
        ax.bar_label(bars, labels=[f"{m:.3g}" for m in ms], fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{r.variables} variables\n{r.graph_nodes} nodes" for r in rows])
    ax.set_ylabel(f"ms for {rows[0].iterations} gradient steps (log scale)")
    ax.set_title("planar-arm IK: traditional vs compiled")
    ax.legend(loc="upper left")
    fig.savefig(path, dpi=110)
    return path


# ----------------------------------------------------------------------------- the demo


def run_demo(sizes: Sequence[int] = SIZES, iterations: int = ITERATIONS, repeats: int = 3,
             plot_dir: str | None = None, out: TextIO | None = None,
             progress: bool = True, progress_stream: TextIO | None = None
             ) -> list[SpeedupRow]:
    """Run the demo: measure every size, print the table, optionally draw the plots.

    Args:
        sizes: the arm sizes (numbers of variables).
        iterations: gradient-descent steps per run.
        repeats: runs per loop (the best is reported).
        plot_dir: a directory to write ``demo_arm_poses.png`` and ``demo_timings.png``
            into (created if missing); needs matplotlib.
        out: where the report goes (stdout when ``None``).
        progress: show a progress bar.
        progress_stream: where the bar goes (stderr when ``None``).

    Returns:
        The table's rows.

    Raises:
        ImportError: ``plot_dir`` given without matplotlib (checked before any work).
    """
    out = sys.stdout if out is None else out
    if plot_dir is not None:
        require_matplotlib()
    print("scalar-autograd demo: a planar arm of n unit links moves its end effector to "
          f"{TARGET}", file=out)
    print(f"by {iterations} gradient-descent steps (lr {LEARNING_RATE}) on the squared "
          "distance,", file=out)
    print("traditional (new graph + backward() every step) vs compiled once to native "
          "code.", file=out)
    print(f"Times: best of {repeats} run(s) of each descent loop.\n", file=out, flush=True)

    bar = ProgressBar(len(sizes) * 3 * repeats * iterations, stream=progress_stream,
                      enabled=progress)
    rows = []
    try:
        for n in sizes:
            rows.append(measure_speedup(n, iterations, repeats, bar))
    finally:
        bar.close()

    print(speedup_table(rows), file=out)
    print("\nspeedup = traditional ms / compiled ms; the seed reported 5x/13x/32x with its "
          "API.", file=out)
    for r in rows:
        print(f"n={r.variables:>2}: end effector {r.final_distance:.1e} from the target; "
              f"traditional and compiled angles agree to {r.max_angle_difference:.1e}",
              file=out)
    if plot_dir is not None:
        os.makedirs(plot_dir, exist_ok=True)
        poses = [(f"{r.variables} joints", r.start, r.final) for r in rows]
        written = [
            plot_arm_poses(os.path.join(plot_dir, "demo_arm_poses.png"), poses,
                           [TARGET] * len(rows),
                           f"start (grey) and after {iterations} compiled steps (blue)"),
            plot_timings(os.path.join(plot_dir, "demo_timings.png"), rows),
        ]
        for path in written:
            print(f"wrote {path}", file=out)
    return rows
