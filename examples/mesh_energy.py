"""Hanging cloth: a triangle mesh draped between two rods, at rest by L-BFGS on its energy.

A square cloth of ``n x n`` vertices (side 1 at rest, two triangles per grid cell) hangs
from two rods: its first and last rows of vertices are pinned, the rods brought closer
together (``SPAN``, 70% of the cloth's length) so that it sags under gravity between
them, and the second rod tilted (one end raised by ``ROD_TILT``) so that the drape is
not the same in every cross-section. The free vertices' coordinates are the unknowns
(``3 n (n - 2)``: 1,080 for the default 20 x 20 mesh). The energy is written the way a
user writes it, one Python term per mesh element, added up with ``sa.sum``:

- a **spring** on every edge: ``K_STRETCH (|p_i - p_j| - rest_ij)^2``;
- a **bending** term on every interior edge (a *hinge*, shared by two triangles):
  ``K_BEND theta^2``, where ``theta`` is the signed angle between the two triangles'
  normals (0 where the cloth is flat, its rest shape), from ``atan2``;
- **gravity** on every vertex: ``m G z``, the cloth's mass (1) shared equally.

The stiffnesses are per element and the mass per vertex is ``1 / n^2``, so the same cloth
comes out whatever the resolution. The graph is compiled once (``sa.compile``) and
minimised with ``sa.lbfgs`` from a rough guess (a sine-shaped sag of the uniformly
compressed sheet). The script prints the mesh, the compile and solve times, the energy
before and after and how low the cloth hangs; ``--plot`` draws the cloth at rest as a
3-D surface.

Run:
    python examples/mesh_energy.py [--plot DIR] [--quick]
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from _common import cli, plot_path, require_matplotlib

import scalar_autograd as sa

SIZE = 1.0
"""The side of the square cloth at rest."""
SPAN = 0.7
"""The distance between the two rods, as a fraction of ``SIZE``."""
ROD_TILT = 0.3
"""How much higher the second rod's far end (``x = SIZE``) is held than its near end."""
K_STRETCH = 100.0
"""Spring stiffness, per edge."""
K_BEND = 0.002
"""Bending stiffness, per hinge."""
G = 9.81
"""Gravity, along ``-z``."""
INITIAL_SAG = 0.25
"""Depth of the starting guess's sine-shaped sag."""
GRADIENT_TOLERANCE = 1e-6
"""L-BFGS stops on ``max |g_i|`` alone (``ftol=0``); about 1e-7 is the floor where the
energy's rounding stops the line search."""


@dataclass(frozen=True)
class Cloth:
    """The mesh of an ``n x n`` cloth: topology, rest lengths and the pinned vertices.

    Vertex ``i n + j`` is row ``i`` (along ``y``), column ``j`` (along ``x``). Triangles
    are counter-clockwise seen from ``+z``. ``hinges[h] = (i, j, k, l)``: the edge
    ``i -> j`` with ``(i, j, k)`` and ``(j, i, l)`` its two triangles.
    """

    n: int
    rest: np.ndarray
    """``(n^2, 3)``: the flat cloth at rest, side ``SIZE``."""
    pinned: np.ndarray
    """``(n^2,)`` bool: the vertices on the rods (first and last row)."""
    pinned_positions: np.ndarray
    """``(n^2, 3)``: where the pinned vertices are held (other rows unused)."""
    triangles: list[tuple[int, int, int]]
    edges: list[tuple[int, int]]
    rest_lengths: list[float]
    hinges: list[tuple[int, int, int, int]]

    @property
    def free(self) -> np.ndarray:
        """The indices of the free vertices, in the order of the unknowns."""
        return np.flatnonzero(~self.pinned)

    @property
    def mass(self) -> float:
        """The mass of one vertex."""
        return 1.0 / self.n**2

    def positions(self, x: np.ndarray) -> np.ndarray:
        """All vertex positions ``(n^2, 3)`` from the unknowns ``x`` (free ``x, y, z``)."""
        points = self.pinned_positions.copy()
        points[self.free] = np.asarray(x, dtype=np.float64).reshape(-1, 3)
        return points


def make_cloth(n: int) -> Cloth:
    """The ``n x n`` cloth: ``2 (n-1)^2`` triangles, every edge and every hinge."""
    h = SIZE / (n - 1)
    rows, cols = np.divmod(np.arange(n * n), n)
    rest = np.column_stack([cols * h, rows * h, np.zeros(n * n)])
    pinned = (rows == 0) | (rows == n - 1)
    held = rest.copy()
    held[:, 1] *= SPAN  # the rods: the first row stays at y = 0, the last moves in
    held[rows == n - 1, 2] = ROD_TILT * held[rows == n - 1, 0] / SIZE  # and tilts up

    triangles = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            triangles += [(a, b, d), (a, d, c)]
    # every directed edge i -> j of a triangle, with the triangle's third vertex
    sides: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for t in triangles:
        for i, j, k in ((t[0], t[1], t[2]), (t[1], t[2], t[0]), (t[2], t[0], t[1])):
            sides.setdefault((min(i, j), max(i, j)), []).append((i, j, k))
    edges = sorted(sides)
    rest_lengths = [float(np.linalg.norm(rest[i] - rest[j])) for i, j in edges]
    hinges = []
    for key in edges:
        if len(sides[key]) == 2:  # an interior edge: (i, j, k) and (j, i, l)
            (i, j, k), (_, _, l) = sides[key]
            hinges.append((i, j, k, l))
    return Cloth(n, rest, pinned, held, triangles, edges, rest_lengths, hinges)


def start_guess(cloth: Cloth) -> np.ndarray:
    """The unknowns of the starting guess: the cloth compressed to the rods' span, its
    height going linearly from one rod to the other, minus a sine-shaped sag (without
    it the compressed sheet would start on a saddle point)."""
    points = cloth.pinned_positions.copy()
    v = points[:, 1] / (SPAN * SIZE)
    far_rod = ROD_TILT * points[:, 0] / SIZE
    points[:, 2] = v * far_rod - INITIAL_SAG * np.sin(math.pi * v)
    return points[cloth.free].ravel()


# ----------------------------------------------------------------------------- the energy

def spring(p: sa.Vec3, q: sa.Vec3, rest: float) -> sa.Value:
    """The spring on one edge: ``K_STRETCH (|p - q| - rest)^2``."""
    return K_STRETCH * (p.distance(q) - rest) ** 2


def bend(pi: sa.Vec3, pj: sa.Vec3, pk: sa.Vec3, pl: sa.Vec3) -> sa.Value:
    """The bending of one hinge: ``K_BEND theta^2``, with ``theta`` the signed angle
    between the normals of the triangles ``(i, j, k)`` and ``(j, i, l)``.

    ``theta = atan2((n1 x n2) . e / |e|, n1 . n2)`` with ``e = p_j - p_i``: the normals
    need no normalising (both arguments scale with ``|n1| |n2|``) and ``theta`` is 0 for
    a flat hinge, smooth through it. (``sa.dihedral_angle`` is the torsion angle, pi for
    a flat hinge: its branch cut would sit on the rest shape.)
    """
    e = pj - pi
    n1 = e.cross(pk - pi)
    n2 = (pi - pj).cross(pl - pj)
    theta = sa.atan2(n1.cross(n2).dot(e) / e.magnitude(), n1.dot(n2))
    return K_BEND * theta**2


def cloth_energy(points: list[sa.Vec3], cloth: Cloth) -> sa.Value:
    """The total energy: springs on the edges, bending on the hinges, gravity.

    Every hinge computes its own two normals: a triangle's normal is built again by
    each of its (up to three) hinges rather than shared between them, as a term written
    on its own does (and as the vectorised JAX energy of ``benchmarks/bench_mesh.py``).
    """
    springs = [spring(points[i], points[j], rest)
               for (i, j), rest in zip(cloth.edges, cloth.rest_lengths)]
    bends = [bend(points[i], points[j], points[k], points[l])
             for i, j, k, l in cloth.hinges]
    gravity = [cloth.mass * G * p.z for p in points]
    return sa.sum(springs) + sa.sum(bends) + sa.sum(gravity)


def cloth_graph(cloth: Cloth, x: np.ndarray) -> tuple[sa.Value, list[sa.Value]]:
    """The energy graph at the unknowns ``x`` and its params (the free coordinates)."""
    where = cloth.positions(x)
    free = set(cloth.free.tolist())
    points = [sa.Vec3.param(*where[v], label=f"p{v}") if v in free
              else sa.Vec3.const(*where[v]) for v in range(cloth.n**2)]
    params = [c for v in cloth.free for c in points[v].components]
    return cloth_energy(points, cloth), params


# ----------------------------------------------------------------------------- the example

def run(quick: bool = False, plot_dir: str | None = None) -> dict[str, Any]:
    """Bring the cloth to rest; return the mesh, the energies and the final shape.

    Returns:
        A dict with ``cloth`` (the :class:`Cloth`), ``x0`` and ``x`` (the unknowns at
        the start and at rest), ``start_energy``, ``energy``, ``grad_norm``
        (``max |g_i|`` at rest), ``iterations``, ``nfev``, ``status``, ``compile_s``
        (``sa.compile`` and the first gradient), ``solve_s``, ``backend``, ``sag``
        (depth of the lowest point below the lower rod, ``z = 0``) and ``plot``.
    """
    n = 10 if quick else 20
    cloth = make_cloth(n)
    x0 = start_guess(cloth)
    t = time.perf_counter()
    energy, params = cloth_graph(cloth, x0)
    build_s = time.perf_counter() - t
    print(f"{n} x {n} cloth: {len(cloth.triangles)} triangles, {len(cloth.edges)} springs, "
          f"{len(cloth.hinges)} hinges, {len(params)} unknowns "
          f"({int(cloth.pinned.sum())} vertices pinned)")

    t = time.perf_counter()
    f = sa.compile(energy, params)
    start_energy, _ = f.value_and_grad(x0)
    compile_s = time.perf_counter() - t
    print(f"energy graph built in {build_s:.2f} s, compiled ({f.backend}, "
          f"{f.n_instructions} instructions) to the first gradient in {compile_s:.2f} s")

    t = time.perf_counter()
    result = sa.lbfgs(f, params, max_iterations=20_000,
                      gradient_tolerance=GRADIENT_TOLERANCE, ftol=0.0)
    solve_s = time.perf_counter() - t
    sag = -float(cloth.positions(result.x)[:, 2].min())
    print(f"L-BFGS: {result.iterations} iterations, {result.nfev} evaluations in "
          f"{solve_s:.2f} s ({result.status.name})")
    print(f"energy {start_energy:.10f} -> {result.fun:.10f}, max |gradient| "
          f"{result.grad_norm:.1e}; its lowest point hangs {sag:.4f} below the lower rod")

    png = None
    if plot_dir is not None:
        png = _plot(plot_path(plot_dir, "mesh_energy.png"), cloth, result.x)
        print(f"wrote {png}")
    return {"cloth": cloth, "x0": x0, "x": result.x, "start_energy": start_energy,
            "energy": result.fun, "grad_norm": result.grad_norm,
            "iterations": result.iterations, "nfev": result.nfev, "status": result.status,
            "compile_s": compile_s, "solve_s": solve_s, "backend": f.backend, "sag": sag,
            "plot": png}


def _plot(path: str, cloth: Cloth, x: np.ndarray) -> str:
    Figure = require_matplotlib()
    points = cloth.positions(x)
    fig = Figure(figsize=(7.0, 5.5), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    ax.plot_trisurf(points[:, 0], points[:, 1], points[:, 2], triangles=cloth.triangles,
                    cmap="viridis", edgecolor="0.3", linewidth=0.2, alpha=0.9)
    for row in (0, cloth.n - 1):  # the rods
        rod = points[row * cloth.n:(row + 1) * cloth.n]
        ax.plot(rod[:, 0], rod[:, 1], rod[:, 2], color="k", linewidth=3)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.set_box_aspect((np.ptp(points[:, 0]), np.ptp(points[:, 1]), np.ptp(points[:, 2])))
    ax.set_title(f"{cloth.n} x {cloth.n} cloth at rest between two rods (L-BFGS)")
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    sys.exit(cli(run, __doc__))
