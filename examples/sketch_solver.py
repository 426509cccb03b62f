"""2-D CAD sketch solver: geometric constraints as residuals, solved by least squares.

A sketch is points, lines and circles whose coordinates are parameters, and
constraints, each a few residuals that are zero when it holds: coincident, fix,
horizontal, vertical, distance, parallel, perpendicular, tangent (line-circle),
point-on-circle and equal-length. ``sa.nonlinear_least_squares`` drives all residuals
to zero from a rough hand-drawn start, the way a CAD program's solver snaps a sketch.

The sketch: a 6 x 3 rectangle drawn as four separate lines joined by coincident
corners; a circle tangent to its bottom, top and left sides; a horizontal line from
that circle's centre, as long as the rectangle's right side; and a second circle
centred at that line's end passing through the rectangle's top-right corner. That is
26 unknowns and 26 residuals. The script prints every constraint's residual after the
solve.

Run:
    python examples/sketch_solver.py [--plot DIR] [--quick]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _common import cli, format_table, plot_path, require_matplotlib

import scalar_autograd as sa
from scalar_autograd import Value, Vec2

# ----------------------------------------------------------------------------- entities


@dataclass
class Line:
    """A line segment from ``a`` to ``b`` (two free points)."""

    name: str
    a: Vec2
    b: Vec2

    def direction(self) -> Vec2:
        return self.b - self.a

    def length(self) -> Value:
        return self.direction().magnitude()


@dataclass
class Circle:
    """A circle: a free centre and a free radius."""

    name: str
    centre: Vec2
    radius: Value


@dataclass
class Constraint:
    """A named constraint: ``residuals()`` builds the residuals that vanish when it holds."""

    kind: str
    description: str
    residuals: Callable[[], list[Value]]


# ----------------------------------------------------------------------------- constraints
# Each returns residuals of the size of a length (or a sine/cosine for angles), so
# "satisfied to 1e-8" means the same thing for every kind.


def coincident(p: Vec2, q: Vec2, description: str) -> Constraint:
    """Two points in the same place: ``p - q = 0``."""
    return Constraint("coincident", description, lambda: list(p - q))


def fix(p: Vec2, x: float, y: float, description: str) -> Constraint:
    """A point pinned at ``(x, y)`` (removes the sketch's rigid motion)."""
    return Constraint("fix", description, lambda: list(p - Vec2.const(x, y)))


def horizontal(line: Line) -> Constraint:
    """``b.y - a.y = 0``."""
    return Constraint("horizontal", line.name, lambda: [line.b.y - line.a.y])


def vertical(line: Line) -> Constraint:
    """``b.x - a.x = 0``."""
    return Constraint("vertical", line.name, lambda: [line.b.x - line.a.x])


def distance(p: Vec2, q: Vec2, d: float, description: str) -> Constraint:
    """``|p - q| - d = 0``."""
    return Constraint("distance", f"{description} = {d:g}",
                      lambda: [p.distance(q) - d])


def parallel(l1: Line, l2: Line) -> Constraint:
    """The sine of the angle between the lines: ``cross(d1, d2) / (|d1| |d2|) = 0``."""
    return Constraint("parallel", f"{l1.name} || {l2.name}", lambda: [
        l1.direction().cross(l2.direction()) / (l1.length() * l2.length())])


def perpendicular(l1: Line, l2: Line) -> Constraint:
    """The cosine of the angle between the lines: ``dot(d1, d2) / (|d1| |d2|) = 0``."""
    return Constraint("perpendicular", f"{l1.name} _|_ {l2.name}", lambda: [
        l1.direction().dot(l2.direction()) / (l1.length() * l2.length())])


def tangent(circle: Circle, line: Line) -> Constraint:
    """The line touches the circle: distance from the centre to the line = radius."""
    return Constraint("tangent", f"{circle.name} touches {line.name}", lambda: [
        circle.centre.distance_to_line(line.a, line.b) - circle.radius])


def point_on_circle(p: Vec2, circle: Circle, description: str) -> Constraint:
    """``|p - centre| - radius = 0``."""
    return Constraint("point on circle", f"{description} on {circle.name}",
                      lambda: [p.distance(circle.centre) - circle.radius])


def equal_length(l1: Line, l2: Line) -> Constraint:
    """``|d1| - |d2| = 0``."""
    return Constraint("equal length", f"|{l1.name}| = |{l2.name}|",
                      lambda: [l1.length() - l2.length()])


# ----------------------------------------------------------------------------- the sketch


@dataclass
class Sketch:
    """The entities (whose coordinates are the parameters) and the constraints."""

    lines: list[Line]
    circles: list[Circle]
    constraints: list[Constraint]

    def parameters(self) -> list[Value]:
        params: list[Value] = []
        for line in self.lines:
            params += [*line.a, *line.b]
        for circle in self.circles:
            params += [*circle.centre, circle.radius]
        return params

    def residuals(self) -> list[Value]:
        return [r for c in self.constraints for r in c.residuals()]


def build_sketch() -> Sketch:
    """The example sketch, at a rough hand-drawn start."""

    def line(name: str, a: tuple[float, float], b: tuple[float, float]) -> Line:
        return Line(name, Vec2.param(*a, label=f"{name}.a"), Vec2.param(*b, label=f"{name}.b"))

    def circle(name: str, centre: tuple[float, float], radius: float) -> Circle:
        return Circle(name, Vec2.param(*centre, label=f"{name}.c"),
                      Value(radius, label=f"{name}.r", requires_grad=True))

    bottom = line("bottom", (0.2, -0.3), (5.5, 0.4))
    right = line("right", (5.8, 0.2), (6.3, 2.5))
    top = line("top", (5.7, 3.4), (0.4, 2.8))
    left = line("left", (-0.3, 3.1), (0.1, 0.3))
    spoke = line("spoke", (1.7, 1.3), (4.0, 1.9))
    c1 = circle("circle1", (1.2, 1.8), 1.0)
    c2 = circle("circle2", (4.2, 1.2), 1.5)
    constraints = [
        fix(bottom.a, 0.0, 0.0, "bottom.a at (0, 0)"),
        coincident(bottom.b, right.a, "bottom.b = right.a"),
        coincident(right.b, top.a, "right.b = top.a"),
        coincident(top.b, left.a, "top.b = left.a"),
        coincident(left.b, bottom.a, "left.b = bottom.a"),
        horizontal(bottom),
        vertical(right),
        parallel(top, bottom),
        perpendicular(left, top),
        distance(bottom.a, bottom.b, 6.0, "|bottom|"),
        distance(right.a, right.b, 3.0, "|right|"),
        tangent(c1, bottom),
        tangent(c1, top),
        tangent(c1, left),
        coincident(spoke.a, c1.centre, "spoke.a = circle1 centre"),
        horizontal(spoke),
        equal_length(spoke, right),
        coincident(c2.centre, spoke.b, "circle2 centre = spoke.b"),
        point_on_circle(top.a, c2, "top.a"),
    ]
    return Sketch([bottom, right, top, left, spoke], [c1, c2], constraints)


def run(quick: bool = False, plot_dir: str | None = None) -> dict[str, Any]:
    """Solve the sketch; return every constraint's residuals and the solved geometry.

    ``quick`` changes nothing: the sketch is already small.

    Returns:
        A dict with ``constraints`` (a list of ``(kind, description, residuals)``),
        ``max_residual``, ``kinds`` (the set of constraint kinds), ``n_params``,
        ``n_residuals``, ``status``, ``iterations``, ``geometry`` (name -> coordinates)
        and ``plot``.
    """
    sketch = build_sketch()
    params = sketch.parameters()
    start = _geometry(sketch)
    residuals_before = max(abs(r.data) for r in sketch.residuals())
    result = sa.nonlinear_least_squares(
        params, lambda _params: sketch.residuals(),
        cost_tolerance=1e-15, param_tolerance=1e-15, gradient_tolerance=1e-15,
    )

    report = [(c.kind, c.description, [r.data for r in c.residuals()])
              for c in sketch.constraints]
    max_residual = max(abs(r) for _, _, rs in report for r in rs)
    print(f"sketch: {len(sketch.lines)} lines, {len(sketch.circles)} circles, "
          f"{len(sketch.constraints)} constraints; {len(params)} unknowns, "
          f"{len(result.residuals)} residuals")
    print(f"largest residual {residuals_before:.2f} at the start; Levenberg-Marquardt: "
          f"{result.iterations} iterations ({result.message})\n")
    print(format_table(["constraint", "on", "largest |residual|"],
                       [[k, d, f"{max(abs(r) for r in rs):.1e}"] for k, d, rs in report], "llr"))
    print(f"\nevery constraint holds to {max_residual:.1e}")
    geometry = _geometry(sketch)
    for name, coords in geometry.items():
        print(f"  {name:8s} " + "  ".join(f"{v:9.5f}" for v in coords))

    png = None
    if plot_dir is not None:
        png = _plot(plot_path(plot_dir, "sketch_solver.png"), start, geometry)
        print(f"wrote {png}")
    return {"constraints": report, "max_residual": max_residual,
            "kinds": {k for k, _, _ in report}, "n_params": len(params),
            "n_residuals": len(result.residuals), "status": result.status,
            "iterations": result.iterations, "geometry": geometry, "plot": png}


def _geometry(sketch: Sketch) -> dict[str, tuple[float, ...]]:
    """Lines as ``(ax, ay, bx, by)``, circles as ``(cx, cy, r)``."""
    out: dict[str, tuple[float, ...]] = {}
    for line in sketch.lines:
        out[line.name] = (*line.a.data, *line.b.data)
    for circle in sketch.circles:
        out[circle.name] = (*circle.centre.data, circle.radius.data)
    return out


def _plot(path: str, start: dict[str, tuple[float, ...]],
          solved: dict[str, tuple[float, ...]]) -> str:
    import numpy as np

    Figure = require_matplotlib()
    fig = Figure(figsize=(11.0, 4.8), layout="constrained")
    t = np.linspace(0.0, 2.0 * np.pi, 300)
    for ax, geometry, title in zip(fig.subplots(1, 2), (start, solved),
                                   ("hand-drawn start", "solved")):
        for k, (name, g) in enumerate(geometry.items()):
            color = f"C{k}"
            if len(g) == 4:
                ax.plot([g[0], g[2]], [g[1], g[3]], "-o", color=color, ms=4, label=name)
            else:
                ax.plot(g[0] + g[2] * np.cos(t), g[1] + g[2] * np.sin(t), color=color,
                        label=name)
                ax.plot(g[0], g[1], "+", color=color)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.set_title(title)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    sys.exit(cli(run, __doc__))
