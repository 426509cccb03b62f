"""Geometry helpers: hand-computed values, numpy oracles, finite differences, compiled."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scalar_autograd as sa
from _finite_differences import assert_compiled_matches_eager, assert_grad_matches_fd
from scalar_autograd import Vec2, Vec3

RNG = np.random.default_rng(99)
RING = [Vec3(1, 0, 0), Vec3(0, 1, 0), Vec3(-1, 0, 0), Vec3(0, -1, 0)]


def _v(p: list[sa.Value], i: int) -> Vec3:
    return Vec3(p[3 * i], p[3 * i + 1], p[3 * i + 2])


def _torsion(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> float:
    """Independent oracle: the praxeolitic torsion formula (projections, not crosses)."""
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / np.linalg.norm(b1)
    v = b0 - np.dot(b0, b1) * b1
    w = b2 - np.dot(b2, b1) * b1
    return float(np.arctan2(np.dot(np.cross(b1, v), w), np.dot(v, w)))


def test_triangle_normal_and_area_hand_values() -> None:
    a, b, c = Vec3(0, 0, 0), Vec3(2, 0, 0), Vec3(0, 3, 0)
    assert sa.triangle_normal(a, b, c).data == (0.0, 0.0, 1.0)
    assert sa.triangle_normal(a, c, b).data == (0.0, 0.0, -1.0)
    assert sa.triangle_area(a, b, c).data == 3.0
    assert sa.triangle_area(Vec2(0, 0), Vec2(4, 0), Vec2(0, 3)).data == 6.0
    assert sa.triangle_area(Vec2(0, 0), Vec2(0, 3), Vec2(4, 0)).data == 6.0  # unsigned
    for _ in range(20):
        p = RNG.normal(size=(3, 3))
        n = np.cross(p[1] - p[0], p[2] - p[0])
        va = [Vec3(*x) for x in p]
        np.testing.assert_allclose(sa.triangle_normal(*va).data, n / np.linalg.norm(n),
                                   rtol=1e-13, atol=1e-14)
        assert sa.triangle_area(*va).data == pytest.approx(0.5 * np.linalg.norm(n), rel=1e-14)


def test_interior_angles_sum_to_pi() -> None:
    assert sa.interior_angle(Vec2(0, 0), Vec2(1, 0), Vec2(0, 5)).data == pytest.approx(
        math.pi / 2)
    for _ in range(20):
        p = [Vec3(*x) for x in RNG.normal(size=(3, 3))]
        total = (sa.interior_angle(p[0], p[1], p[2]) + sa.interior_angle(p[1], p[2], p[0])
                 + sa.interior_angle(p[2], p[0], p[1]))
        assert total.data == pytest.approx(math.pi, rel=1e-13)


def test_angle_defect_hand_values() -> None:
    origin = Vec3(0, 0, 0)
    assert abs(sa.angle_defect(origin, RING).data) < 1e-15  # flat
    # apex of a square pyramid of height 1: four 60-degree angles
    assert sa.angle_defect(Vec3(0, 0, 1), RING).data == pytest.approx(2 * math.pi / 3)
    # vertex of a regular tetrahedron: three 60-degree angles
    tet = [np.array(v, dtype=float) for v in ([1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1])]
    ring = [Vec3(*tet[1]), Vec3(*tet[2]), Vec3(*tet[3])]
    assert sa.angle_defect(Vec3(*tet[0]), ring).data == pytest.approx(math.pi)
    # boundary vertex on a straight edge of a flat mesh: pi - (90 + 90) = 0
    half = [Vec3(1, 0, 0), Vec3(0, 1, 0), Vec3(-1, 0, 0)]
    assert abs(sa.angle_defect(origin, half, closed=False).data) < 1e-15
    # the vertices of a closed polyhedron: defects sum to 4 pi (Descartes)
    total = sum(sa.angle_defect(Vec3(*tet[i]), [Vec3(*tet[j]) for j in range(4) if j != i]).data
                for i in range(4))
    assert total == pytest.approx(4 * math.pi)


def test_centroid_and_bounding_box_against_numpy() -> None:
    pts = RNG.normal(size=(9, 3))
    vs = [Vec3(*p) for p in pts]
    np.testing.assert_allclose(sa.centroid(vs).data, pts.mean(axis=0), rtol=1e-14)
    lo, hi = sa.bounding_box(vs)
    np.testing.assert_array_equal(lo.data, pts.min(axis=0))
    np.testing.assert_array_equal(hi.data, pts.max(axis=0))
    assert sa.centroid([Vec2(0, 0), Vec2(2, 0), Vec2(1, 3)]).data == (1.0, 1.0)
    lo2, hi2 = sa.bounding_box([Vec2(5, 5)])
    assert lo2.data == hi2.data == (5.0, 5.0)


def test_bounding_box_gradient_picks_the_extreme_point() -> None:
    pts = [Vec2.param(float(x), float(y)) for x, y in RNG.normal(size=(7, 2))]
    lo, hi = sa.bounding_box(pts)
    (hi.x - lo.y).backward()
    grads = np.array([p.grad for p in pts])
    xs, ys = np.array([p.data for p in pts]).T
    expected = np.zeros((7, 2))
    expected[np.argmax(xs), 0] = 1.0
    expected[np.argmin(ys), 1] = -1.0
    np.testing.assert_array_equal(grads, expected)
    # a tie shares the gradient; the total stays 1
    tied = [Vec2.param(1.0, 0.0), Vec2.param(1.0, 2.0), Vec2.param(0.0, 1.0)]
    sa.bounding_box(tied)[1].x.backward()
    assert sum(p.grad[0] for p in tied) == 1.0


def test_vertex_normal_is_area_weighted() -> None:
    assert sa.vertex_normal(Vec3(0, 0, 0), RING).data == (0.0, 0.0, 1.0)
    for _ in range(10):
        v = RNG.normal(size=3)
        ring = RNG.normal(size=(5, 3)) + np.array([0, 0, 0.0])
        spokes = ring - v
        weighted = sum(np.cross(spokes[i], spokes[(i + 1) % 5]) for i in range(5))
        got = sa.vertex_normal(Vec3(*v), [Vec3(*r) for r in ring]).data
        np.testing.assert_allclose(got, weighted / np.linalg.norm(weighted), rtol=1e-12,
                                   atol=1e-13)
    # open fan: only the triangles between consecutive neighbours
    half = [Vec3(1, 0, 0), Vec3(0, 1, 0), Vec3(-1, 0, 0)]
    assert sa.vertex_normal(Vec3(0, 0, 0), half, closed=False).data == (0.0, 0.0, 1.0)


def test_plane_projection_and_signed_distance() -> None:
    assert sa.signed_distance_to_plane(Vec3(1, 2, 3), Vec3(0, 0, 1), Vec3(0, 0, 2)).data == 2.0
    assert sa.signed_distance_to_plane(Vec3(1, 2, -3), Vec3(0, 0, 1), Vec3(0, 0, 2)).data == -4.0
    assert sa.project_to_plane(Vec3(1, 2, 3), Vec3(0, 0, 1), Vec3(0, 0, 2)).data == (1.0, 2.0,
                                                                                      1.0)
    for _ in range(20):
        p, o, n = RNG.normal(size=(3, 3))
        unit = n / np.linalg.norm(n)
        d = float(np.dot(p - o, unit))
        assert sa.signed_distance_to_plane(Vec3(*p), Vec3(*o), Vec3(*n)).data == pytest.approx(
            d, rel=1e-12, abs=1e-14)
        proj = sa.project_to_plane(Vec3(*p), Vec3(*o), Vec3(*n))
        np.testing.assert_allclose(proj.data, p - d * unit, rtol=1e-12, atol=1e-13)
        assert abs(sa.signed_distance_to_plane(proj, Vec3(*o), Vec3(*n)).data) < 1e-13


def test_dihedral_angle_sign_and_oracle() -> None:
    a, b, c = Vec3(1, 0, 0), Vec3(0, 0, 0), Vec3(0, 0, 1)
    for deg in (0, 30, 90, 150, -45, -120, 180):
        t = math.radians(deg)
        d = Vec3(math.cos(t), math.sin(t), 1.0)  # a's direction turned by t about b -> c
        got = sa.dihedral_angle(a, b, c, d).data
        assert got == pytest.approx(t if deg != 180 else math.pi, abs=1e-14)
    for _ in range(50):
        p = RNG.normal(size=(4, 3))
        got = sa.dihedral_angle(*(Vec3(*x) for x in p)).data
        assert got == pytest.approx(_torsion(*p), abs=1e-12)
        # pi - |dihedral| is the angle between the normals of (b, c, a) and (c, b, d)
        n1 = np.cross(p[2] - p[1], p[0] - p[1])
        n2 = np.cross(p[1] - p[2], p[3] - p[2])
        between = np.arccos(np.clip(n1 @ n2 / np.linalg.norm(n1) / np.linalg.norm(n2), -1, 1))
        assert math.pi - abs(got) == pytest.approx(between, abs=1e-10)


def test_type_and_value_errors() -> None:
    with pytest.raises(TypeError, match="a must be a Vec3"):
        sa.triangle_normal(Vec2(0, 0), Vec2(1, 0), Vec2(0, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="c must be a Vec3"):
        sa.triangle_area(Vec3(0, 0, 0), Vec3(1, 0, 0), Vec2(0, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="neighbors"):
        sa.angle_defect(Vec3(0, 0, 0), RING[:2])
    with pytest.raises(ValueError, match="points"):
        sa.centroid([])
    with pytest.raises(TypeError, match=r"points\[1\]"):
        sa.bounding_box([Vec2(0, 0), Vec3(0, 0, 0)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="closed"):
        sa.vertex_normal(Vec3(0, 0, 0), RING, closed="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("name, build, n", [
    ("area", lambda p: sa.triangle_area(_v(p, 0), _v(p, 1), _v(p, 2)), 9),
    ("area2", lambda p: sa.triangle_area(Vec2(p[0], p[1]), Vec2(p[2], p[3]), Vec2(p[4], p[5])),
     6),
    ("normal", lambda p: sa.triangle_normal(_v(p, 0), _v(p, 1), _v(p, 2)).dot(Vec3(1, -2, .5)),
     9),
    ("angle", lambda p: sa.interior_angle(_v(p, 0), _v(p, 1), _v(p, 2)), 9),
    ("defect", lambda p: sa.angle_defect(_v(p, 0) * 0.3, RING), 3),
    ("vertex_normal", lambda p: sa.vertex_normal(_v(p, 0) * 0.3, RING).dot(Vec3(.2, .1, 1)), 3),
    ("plane", lambda p: sa.signed_distance_to_plane(_v(p, 0), _v(p, 1), _v(p, 2)), 9),
    ("project", lambda p: sa.project_to_plane(_v(p, 0), _v(p, 1), _v(p, 2)).sqr_magnitude(), 9),
    ("dihedral", lambda p: sa.dihedral_angle(_v(p, 0), _v(p, 1), _v(p, 2), _v(p, 3)), 12),
    ("centroid", lambda p: sa.centroid([_v(p, 0), _v(p, 1)]).sqr_magnitude(), 6),
])
def test_gradients_match_finite_differences(name: str, build, n: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(4):
        assert_grad_matches_fd(build, RNG.normal(size=n))


def test_mesh_energy_compiles_and_agrees_away_from_the_trace_point() -> None:
    def energy(p: list[sa.Value]) -> sa.Value:
        apex = _v(p, 0)
        defect = sa.angle_defect(apex, RING)
        fold = sa.dihedral_angle(RING[0], RING[1], apex, _v(p, 1))
        lo, hi = sa.bounding_box([apex, _v(p, 1), *RING])
        return defect * defect + fold + sa.triangle_area(apex, RING[0], RING[1]) + hi.z - lo.x

    points = [RNG.normal(size=6) for _ in range(6)]
    assert_compiled_matches_eager(energy, RNG.normal(size=6), points)
