"""Differentiable mesh and point geometry on ``Vec2``/``Vec3``: normals, areas, angles, planes.

Every function builds its result from table ops (``sa.sum``, ``sa.minimum``, ``atan2``,
...) without Python branching on data, so energies written with them compile with
``sa.compile`` and are correct away from the traced point.

Conventions: triangles are counter-clockwise (right-handed) ``a -> b -> c``; a vertex's
one-ring ``neighbors`` is ordered the same way around it. Degenerate input (a zero-area
triangle, a zero plane normal) gives ``nan``, as ``Vec3.normalized`` does.

Example:
    >>> import scalar_autograd as sa
    >>> a, b, c = sa.Vec3(0, 0, 0), sa.Vec3(1, 0, 0), sa.Vec3(0, 1, 0)
    >>> sa.triangle_area(a, b, c).data, sa.triangle_normal(a, b, c).data
    (0.5, (0.0, 0.0, 1.0))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

from scalar_autograd import functional as F
from scalar_autograd.value import Value
from scalar_autograd.vec import Vec2, Vec3, _Vec

__all__ = [
    "triangle_normal", "triangle_area", "interior_angle", "angle_defect", "centroid",
    "vertex_normal", "project_to_plane", "signed_distance_to_plane", "dihedral_angle",
    "bounding_box",
]

V = TypeVar("V", Vec2, Vec3)
AnyVec = TypeVar("AnyVec", bound=_Vec)


def _require(value: Any, name: str, kinds: tuple[type, ...]) -> None:
    if not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{name} must be a {expected}; got {type(value).__name__}")


def _same_kind(first: Any, others: dict[str, Any]) -> None:
    for name, v in others.items():
        if type(v) is not type(first):
            raise TypeError(f"{name} must be a {type(first).__name__} like the first "
                            f"point; got {type(v).__name__}")


def _points(points: Sequence[AnyVec], name: str, minimum: int = 1) -> list[AnyVec]:
    if isinstance(points, (_Vec, str, bytes)) or not isinstance(points, Sequence):
        raise TypeError(f"{name} must be a sequence of vectors; got {type(points).__name__}")
    pts = list(points)
    if len(pts) < minimum:
        raise ValueError(f"{name} must hold at least {minimum} point(s); got {len(pts)}")
    _require(pts[0], f"{name}[0]", (_Vec,))
    for i, p in enumerate(pts[1:], start=1):
        if type(p) is not type(pts[0]):
            raise TypeError(f"{name}[{i}] must be a {type(pts[0]).__name__} like {name}[0]; "
                            f"got {type(p).__name__}")
    return pts


def triangle_normal(a: Vec3, b: Vec3, c: Vec3) -> Vec3:
    """The unit normal ``(b - a) x (c - a) / |...|`` of the triangle ``a, b, c``.

    Example:
        >>> triangle_normal(Vec3(0, 0, 0), Vec3(0, 1, 0), Vec3(1, 0, 0)).data
        (0.0, 0.0, -1.0)
    """
    _require(a, "a", (Vec3,))
    _same_kind(a, {"b": b, "c": c})
    return (b - a).cross(c - a).normalized()


def triangle_area(a: V, b: V, c: V) -> Value:
    """The (unsigned) area of the triangle ``a, b, c`` in 2-D or 3-D.

    2-D: ``|cross(b - a, c - a)| / 2`` (gradient 0, not ``nan``, when degenerate).
    3-D: ``|(b - a) x (c - a)| / 2`` (gradient ``nan`` for a degenerate triangle).

    Example:
        >>> triangle_area(Vec2(0, 0), Vec2(4, 0), Vec2(0, 3)).data
        6.0
    """
    _require(a, "a", (Vec2, Vec3))
    _same_kind(a, {"b": b, "c": c})
    if isinstance(a, Vec2):
        return F.abs((b - a).cross(c - a)) * 0.5  # type: ignore[arg-type]
    return (b - a).cross(c - a).magnitude() * 0.5  # type: ignore[union-attr]


def interior_angle(a: V, b: V, c: V) -> Value:
    """The interior angle at vertex ``a`` of the triangle ``a, b, c``, in ``[0, pi]``.

    The angle between ``b - a`` and ``c - a`` (see ``Vec3.angle_between``: never ``nan``
    from rounding at 0 or pi).

    Example:
        >>> round(interior_angle(Vec2(0, 0), Vec2(1, 0), Vec2(1, 1)).data, 12)
        0.785398163397
    """
    _require(a, "a", (Vec2, Vec3))
    _same_kind(a, {"b": b, "c": c})
    return (b - a).angle_between(c - a)  # type: ignore[arg-type]


def angle_defect(vertex: Vec3, neighbors: Sequence[Vec3], closed: bool = True) -> Value:
    """The angle defect at ``vertex``: ``2 pi`` minus the angles of its incident triangles.

    The triangles are ``(vertex, neighbors[i], neighbors[i + 1])``. For an interior vertex
    (``closed=True``) the fan wraps around and the defect is ``2 pi - sum``, the discrete
    Gaussian curvature (0 on a flat mesh). For a boundary vertex (``closed=False``) the fan
    is open and the defect is ``pi - sum`` (0 on a straight boundary of a flat mesh).

    Raises:
        ValueError: if there are fewer than 3 neighbours (closed) or 2 (open).

    Example:
        >>> ring = [Vec3(1, 0, 0), Vec3(0, 1, 0), Vec3(-1, 0, 0), Vec3(0, -1, 0)]
        >>> abs(angle_defect(Vec3(0, 0, 0), ring).data) < 1e-15
        True
        >>> round(angle_defect(Vec3(0, 0, 1), ring).data, 12)  # pyramid apex: 2 pi - 4 * 60 deg
        2.094395102393
    """
    _require(vertex, "vertex", (Vec3,))
    if not isinstance(closed, bool):
        raise TypeError(f"closed must be a bool; got {type(closed).__name__}")
    ring = _points(neighbors, "neighbors", 3 if closed else 2)
    _same_kind(vertex, {"neighbors[0]": ring[0]})
    count = len(ring) if closed else len(ring) - 1
    angles = [interior_angle(vertex, ring[i], ring[(i + 1) % len(ring)])
              for i in range(count)]
    full = 2.0 * math.pi if closed else math.pi
    return full - F.sum(angles)


def centroid(points: Sequence[AnyVec]) -> AnyVec:
    """The mean of the points (each component one n-ary ``mean`` node).

    Raises:
        ValueError: if ``points`` is empty.

    Example:
        >>> centroid([Vec2(0, 0), Vec2(2, 0), Vec2(1, 3)]).data
        (1.0, 1.0)
    """
    pts = _points(points, "points")
    dims = len(pts[0])
    return pts[0]._make(tuple(F.mean([p[k] for p in pts]) for k in range(dims)))


def vertex_normal(vertex: Vec3, neighbors: Sequence[Vec3], closed: bool = True) -> Vec3:
    """The area-weighted unit normal at ``vertex`` from its ordered one-ring.

    The sum of the incident triangles' cross products ``(n_i - v) x (n_{i+1} - v)`` (each
    twice its triangle's area times its unit normal), normalised. ``closed`` as in
    :func:`angle_defect`.

    Example:
        >>> ring = [Vec3(1, 0, 0), Vec3(0, 1, 0), Vec3(-1, 0, 0), Vec3(0, -1, 0)]
        >>> vertex_normal(Vec3(0, 0, 0), ring).data
        (0.0, 0.0, 1.0)
    """
    _require(vertex, "vertex", (Vec3,))
    if not isinstance(closed, bool):
        raise TypeError(f"closed must be a bool; got {type(closed).__name__}")
    ring = _points(neighbors, "neighbors", 3 if closed else 2)
    _same_kind(vertex, {"neighbors[0]": ring[0]})
    count = len(ring) if closed else len(ring) - 1
    spokes = [p - vertex for p in ring]
    crosses = [spokes[i].cross(spokes[(i + 1) % len(ring)]) for i in range(count)]
    total = Vec3(*(F.sum([c[k] for c in crosses]) for k in range(3)))
    return total.normalized()


def signed_distance_to_plane(point: Vec3, plane_point: Vec3, plane_normal: Vec3) -> Value:
    """``(point - plane_point) . n / |n|``: positive on the side ``plane_normal`` points to.

    ``plane_normal`` need not be unit length.

    Example:
        >>> signed_distance_to_plane(Vec3(1, 2, 3), Vec3(0, 0, 1), Vec3(0, 0, 2)).data
        2.0
    """
    _require(point, "point", (Vec3,))
    _same_kind(point, {"plane_point": plane_point, "plane_normal": plane_normal})
    return (point - plane_point).dot(plane_normal) / plane_normal.magnitude()


def project_to_plane(point: Vec3, plane_point: Vec3, plane_normal: Vec3) -> Vec3:
    """The orthogonal projection of ``point`` onto the plane (no square root needed).

    ``point - n ((point - plane_point) . n) / (n . n)``; ``plane_normal`` need not be unit.

    Example:
        >>> project_to_plane(Vec3(1, 2, 3), Vec3(0, 0, 1), Vec3(0, 0, 2)).data
        (1.0, 2.0, 1.0)
    """
    _require(point, "point", (Vec3,))
    _same_kind(point, {"plane_point": plane_point, "plane_normal": plane_normal})
    return point - (point - plane_point).project(plane_normal)


def dihedral_angle(a: Vec3, b: Vec3, c: Vec3, d: Vec3) -> Value:
    """The signed dihedral (torsion) angle of ``a - b - c - d`` about the axis ``b -> c``.

    The angle in ``(-pi, pi]`` from the half-plane ``(b, c, a)`` to the half-plane
    ``(b, c, d)``, positive for a right-handed (counter-clockwise looking down ``b -> c``)
    turn, as the IUPAC torsion angle. Computed with ``atan2`` (accurate at 0 and pi, no
    clamping needed): with ``b1 = b - a``, ``b2 = c - b``, ``b3 = d - c``,
    ``atan2(|b2| b1 . (b2 x b3), (b1 x b2) . (b2 x b3))``. For the two triangles
    ``(b, c, a)`` and ``(c, b, d)`` sharing edge ``b c``, ``pi - |angle|`` is the angle
    between their normals.

    Example:
        >>> a, b, c = Vec3(1, 0, 0), Vec3(0, 0, 0), Vec3(0, 0, 1)
        >>> round(dihedral_angle(a, b, c, Vec3(0, 1, 1)).data, 12)
        1.570796326795
    """
    _require(a, "a", (Vec3,))
    _same_kind(a, {"b": b, "c": c, "d": d})
    b1, b2, b3 = b - a, c - b, d - c
    n2 = b2.cross(b3)
    y = b2.magnitude() * b1.dot(n2)
    x = b1.cross(b2).dot(n2)
    return F.atan2(y, x)


def _tree_reduce(values: list[Value], pick: Any) -> Value:
    """Reduce pairwise in a balanced tree (depth log2 n instead of n)."""
    level = values
    while len(level) > 1:
        nxt = [pick(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def bounding_box(points: Sequence[AnyVec]) -> tuple[AnyVec, AnyVec]:
    """The axis-aligned bounding box ``(lower corner, upper corner)`` of the points.

    Built from ``sa.minimum``/``sa.maximum`` in a balanced tree; at ties the gradient is
    shared as those ops share it (0.5/0.5 per pair).

    Raises:
        ValueError: if ``points`` is empty.

    Example:
        >>> lo, hi = bounding_box([Vec2(0, 3), Vec2(2, -1), Vec2(1, 1)])
        >>> lo.data, hi.data
        ((0.0, -1.0), (2.0, 3.0))
    """
    pts = _points(points, "points")
    dims = len(pts[0])
    columns = [[p[k] for p in pts] for k in range(dims)]
    lower = tuple(_tree_reduce(col, F.minimum) for col in columns)
    upper = tuple(_tree_reduce(col, F.maximum) for col in columns)
    return pts[0]._make(lower), pts[0]._make(upper)
