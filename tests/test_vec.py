"""Vec2/Vec3/Vec4: hand values, numpy/scipy oracles, finite differences, degenerate angles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import scalar_autograd as sa
from _finite_differences import (
    assert_compiled_matches_eager,
    assert_grad_matches_fd,
    eager_value_and_grad,
)
from scalar_autograd import Vec2, Vec3, Vec4

RNG = np.random.default_rng(1234)


# ---------------------------------------------------------------- construction


def test_param_const_zero_and_container_protocol() -> None:
    p = Vec3.param(1.0, 2.0, 3.0, label="p")
    assert [c.label for c in p] == ["p.x", "p.y", "p.z"]
    assert all(c.requires_grad and c.is_leaf for c in p)
    assert p.params() == list(p.components)
    x, y, z = p
    assert (x.data, y.data, z.data) == (1.0, 2.0, 3.0)
    assert len(p) == 3 and p[2] is z and p.z is z
    assert p.data == (1.0, 2.0, 3.0)
    c = Vec3.const(4, 5, 6)
    assert c.params() == [] and not any(v.requires_grad for v in c)
    assert Vec2.zero().data == (0.0, 0.0)
    assert Vec4.zero().data == (0.0, 0.0, 0.0, 0.0)
    assert repr(Vec2(1, 2)) == "Vec2(x=1.0, y=2.0)"
    # computed vectors are not params; mixed vectors list only their leaves
    mixed = Vec2(sa.Value(1.0, requires_grad=True), sa.Value(2.0, requires_grad=True) * 2)
    assert len(mixed.params()) == 1
    q = Vec4.param(1, 0, 0, 0, label="q")
    assert (q.w.label, q.x.label) == ("q.w", "q.x")
    assert q.vector.data == (0.0, 0.0, 0.0)


def test_grad_property_after_backward() -> None:
    p = Vec2.param(3.0, 4.0)
    p.magnitude().backward()
    assert p.grad == pytest.approx((0.6, 0.8))


def test_type_errors_name_the_problem() -> None:
    with pytest.raises(TypeError, match="Vec2"):
        Vec2(1, 2) + Vec3(1, 2, 3)  # type: ignore[operator]
    with pytest.raises(TypeError, match="dot\\(\\) or cross\\(\\)"):
        Vec2(1, 2) * Vec2(1, 2)  # type: ignore[operator]
    with pytest.raises(TypeError, match="scalar"):
        Vec2(1, 2) * "a"  # type: ignore[operator]
    with pytest.raises(TypeError, match="y"):
        Vec2(1, "b")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="param takes numbers"):
        Vec2.param(sa.Value(1.0), 2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="label"):
        Vec2.param(1.0, 2.0, label=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Vec3"):
        Vec4.identity().rotate(Vec2(1, 0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="axis"):
        Vec4.from_axis_angle(Vec2(1, 0), 1.0)  # type: ignore[arg-type]


# ---------------------------------------------------------------- arithmetic & products


def test_arithmetic_hand_values() -> None:
    a, b = Vec3(1, 2, 3), Vec3(4, -5, 6)
    assert (a + b).data == (5.0, -3.0, 9.0)
    assert (a - b).data == (-3.0, 7.0, -3.0)
    assert (a * 2).data == (2.0, 4.0, 6.0)
    assert (2 * a).data == (2.0, 4.0, 6.0)
    assert (a / 2).data == (0.5, 1.0, 1.5)
    assert (-a).data == (-1.0, -2.0, -3.0)
    assert (+a) is a
    assert (a * sa.Value(3.0)).data == (3.0, 6.0, 9.0)
    assert a.dot(b).data == 4 - 10 + 18
    assert Vec2(3, 4).sqr_magnitude().data == 25.0
    assert Vec2(3, 4).magnitude().data == 5.0
    assert Vec2(3, 4).normalized().data == (0.6, 0.8)
    assert Vec2(1, 1).distance(Vec2(4, 5)).data == 5.0
    assert Vec2(1, 1).sqr_distance(Vec2(4, 5)).data == 25.0
    assert Vec2(0, 0).lerp(Vec2(2, 4), 0.25).data == (0.5, 1.0)
    assert Vec2(1, 2).perpendicular().data == (-2.0, 1.0)
    assert Vec2(1, 0).cross(Vec2(0, 1)).data == 1.0


def test_dot_is_one_sum_node() -> None:
    d = Vec3(1, 2, 3).dot(Vec3(4, 5, 6))
    assert d.op is not None and d.op.name == "sum" and len(d.args) == 3


def test_products_against_numpy() -> None:
    for _ in range(50):
        a, b = RNG.normal(size=3), RNG.normal(size=3)
        va, vb = Vec3(*a), Vec3(*b)
        np.testing.assert_allclose(va.cross(vb).data, np.cross(a, b), rtol=1e-14, atol=1e-15)
        assert va.dot(vb).data == pytest.approx(float(np.dot(a, b)), rel=1e-14, abs=1e-15)
        assert va.magnitude().data == pytest.approx(float(np.linalg.norm(a)), rel=1e-15)
        np.testing.assert_allclose(va.normalized().data, a / np.linalg.norm(a), rtol=1e-14)
        a2, b2 = a[:2], b[:2]
        z = np.cross(np.append(a2, 0.0), np.append(b2, 0.0))[2]
        assert Vec2(*a2).cross(Vec2(*b2)).data == pytest.approx(float(z), rel=1e-14, abs=1e-15)


def test_project_reject_decompose_and_are_orthogonal() -> None:
    for _ in range(20):
        a, n = RNG.normal(size=3), RNG.normal(size=3)
        va, vn = Vec3(*a), Vec3(*n)
        proj, rej = va.project(vn), va.reject(vn)
        np.testing.assert_allclose(proj.data, np.dot(a, n) / np.dot(n, n) * n, rtol=1e-13)
        np.testing.assert_allclose((proj + rej).data, a, rtol=1e-13, atol=1e-14)
        assert abs(rej.dot(vn).data) < 1e-13


def test_distance_to_line() -> None:
    assert Vec2(1, -2).distance_to_line(Vec2(0, 0), Vec2(3, 0)).data == 2.0
    assert Vec2(1, -2).signed_distance_to_line(Vec2(0, 0), Vec2(3, 0)).data == -2.0
    assert Vec3(0, 3, 4).distance_to_line(Vec3(0, 0, 0), Vec3(2, 0, 0)).data == 5.0
    for _ in range(20):
        p, a, b = RNG.normal(size=(3, 3))
        expected = np.linalg.norm(np.cross(b - a, p - a)) / np.linalg.norm(b - a)
        got = Vec3(*p).distance_to_line(Vec3(*a), Vec3(*b)).data
        assert got == pytest.approx(float(expected), rel=1e-13)
    # 2-D point on the line: value 0 and a finite (zero) gradient
    p = Vec2.param(1.5, 0.0)
    d = p.distance_to_line(Vec2(0, 0), Vec2(3, 0))
    d.backward()
    assert d.data == 0.0 and p.grad == (0.0, 0.0)


# ---------------------------------------------------------------- angles


def test_angle_between_hand_values_and_numpy() -> None:
    assert Vec2(1, 0).angle_between(Vec2(0, 2)).data == pytest.approx(math.pi / 2)
    assert Vec2(1, 0).angle_between(Vec2(1, 1)).data == pytest.approx(math.pi / 4)
    assert Vec3(1, 0, 0).angle_between(Vec3(-3, 0, 0)).data == math.pi
    for _ in range(50):
        a, b = RNG.normal(size=3), RNG.normal(size=3)
        c = np.clip(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1)
        got = Vec3(*a).angle_between(Vec3(*b)).data
        assert got == pytest.approx(float(np.arccos(c)), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_angle_between_parallel_and_antiparallel_is_never_nan(sign: float) -> None:
    expected = 0.0 if sign > 0 else math.pi
    for trial in range(300):
        a = RNG.normal(size=3) * 10.0 ** RNG.uniform(-3, 3)
        k = sign * 10.0 ** RNG.uniform(-3, 3)
        b = a * k  # parallel up to rounding: the cosine may round past +-1
        if trial < 3:
            a, b = np.array([1.0, 2.0, 3.0]), sign * np.array([2.0, 4.0, 6.0]) * (trial + 1)

        def angle(v: list[sa.Value], b: np.ndarray = b) -> sa.Value:
            return Vec3(v[0], v[1], v[2]).angle_between(Vec3(*b))

        value, grad = eager_value_and_grad(angle, a)
        assert math.isfinite(value) and abs(value - expected) < 1e-7
        assert np.all(np.isfinite(grad)), (a, b, grad)


def test_angle_between_exactly_parallel_has_zero_gradient() -> None:
    a, b = Vec3.param(1.0, 2.0, 3.0), Vec3.param(2.0, 4.0, 6.0)
    angle = a.angle_between(b)
    angle.backward()
    assert angle.data == 0.0
    assert a.grad == (0.0, 0.0, 0.0) and b.grad == (0.0, 0.0, 0.0)


def test_angle_between_zero_vector_is_nan() -> None:
    assert math.isnan(Vec2(0, 0).angle_between(Vec2(1, 0)).data)


# ---------------------------------------------------------------- gradients


def _vec3(v: list[sa.Value], i: int) -> Vec3:
    return Vec3(v[i], v[i + 1], v[i + 2])


@pytest.mark.parametrize("name, build", [
    ("dot", lambda v: _vec3(v, 0).dot(_vec3(v, 3))),
    ("cross", lambda v: _vec3(v, 0).cross(_vec3(v, 3)).dot(Vec3(0.3, -1.1, 0.7))),
    ("magnitude", lambda v: _vec3(v, 0).magnitude()),
    ("normalized", lambda v: _vec3(v, 0).normalized().dot(Vec3(1.0, 2.0, -0.5))),
    ("distance", lambda v: _vec3(v, 0).distance(_vec3(v, 3))),
    ("angle", lambda v: _vec3(v, 0).angle_between(_vec3(v, 3))),
    ("lerp", lambda v: _vec3(v, 0).lerp(_vec3(v, 3), v[0] * 0.3).sqr_magnitude()),
    ("project", lambda v: _vec3(v, 0).project(_vec3(v, 3)).dot(Vec3(1.0, -2.0, 0.5))),
    ("reject", lambda v: _vec3(v, 0).reject(_vec3(v, 3)).sqr_magnitude()),
    ("line3", lambda v: _vec3(v, 0).distance_to_line(_vec3(v, 3), Vec3(0.5, 0.2, -1.0))),
    ("line2", lambda v: Vec2(v[0], v[1]).distance_to_line(Vec2(v[2], v[3]), Vec2(v[4], v[5]))),
    ("cross2", lambda v: Vec2(v[0], v[1]).cross(Vec2(v[2], v[3])) * v[4] + v[5]),
])
def test_gradients_match_finite_differences(name: str, build) -> None:  # type: ignore[no-untyped-def]
    for _ in range(5):
        assert_grad_matches_fd(build, RNG.normal(size=6))


# ---------------------------------------------------------------- quaternions


def _rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    k = axis / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def test_hamilton_product_basis() -> None:
    one, i, j, k = (Vec4.const(*row) for row in np.eye(4))
    assert i.quat_mul(j).data == k.data
    assert j.quat_mul(k).data == i.data
    assert k.quat_mul(i).data == j.data
    assert j.quat_mul(i).data == (-k).data
    assert i.quat_mul(i).data == (-one).data
    assert i.quat_mul(j).quat_mul(k).data == (-one).data  # ijk = -1


def test_quaternion_algebra_against_numpy() -> None:
    for _ in range(20):
        a, b = RNG.normal(size=4), RNG.normal(size=4)
        qa, qb = Vec4(*a), Vec4(*b)
        prod = np.array(qa.quat_mul(qb).data)
        # independent oracle: the 4x4 left-multiplication matrix of a
        w, x, y, z = a
        left = np.array([[w, -x, -y, -z], [x, w, -z, y], [y, z, w, -x], [z, -y, x, w]])
        np.testing.assert_allclose(prod, left @ b, rtol=1e-13, atol=1e-14)
        assert np.linalg.norm(prod) == pytest.approx(np.linalg.norm(a) * np.linalg.norm(b))
        np.testing.assert_allclose(qa.quat_mul(qa.inverse()).data, [1, 0, 0, 0], atol=1e-14)
        assert qa.conjugate().data == (a[0], -a[1], -a[2], -a[3])


def test_rotation_matches_rotation_matrix_and_scipy() -> None:
    for _ in range(30):
        axis, v = RNG.normal(size=3), RNG.normal(size=3)
        angle = float(RNG.uniform(-2 * math.pi, 2 * math.pi))
        q = Vec4.from_axis_angle(Vec3(*axis), angle)
        assert q.magnitude().data == pytest.approx(1.0, rel=1e-15)
        got = np.array(q.rotate(Vec3(*v)).data)
        np.testing.assert_allclose(got, _rodrigues(axis, angle) @ v, rtol=1e-12, atol=1e-13)
        rotvec = axis / np.linalg.norm(axis) * angle
        np.testing.assert_allclose(got, Rotation.from_rotvec(rotvec).apply(v),
                                   rtol=1e-12, atol=1e-13)
        w, x, y, z = q.data  # scipy's quaternions are scalar-last
        np.testing.assert_allclose(Rotation.from_quat([x, y, z, w]).apply(v), got,
                                   rtol=1e-12, atol=1e-13)


def test_rotation_composition_and_inverse() -> None:
    q1 = Vec4.from_axis_angle(Vec3(1, 2, 3), 0.7)
    q2 = Vec4.from_axis_angle(Vec3(-1, 0, 2), -1.3)
    v = Vec3(0.3, -0.4, 2.0)
    np.testing.assert_allclose(q1.quat_mul(q2).rotate(v).data, q1.rotate(q2.rotate(v)).data,
                               rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(q1.conjugate().rotate(q1.rotate(v)).data, v.data, rtol=1e-13)
    assert Vec4.identity().rotate(v).data == v.data
    np.testing.assert_allclose(Vec4(2, 0, 0, 0).normalized().data, (1, 0, 0, 0))


def test_rotation_gradients_match_finite_differences() -> None:
    target = Vec3(0.2, 0.9, -0.4)

    def loss(v: list[sa.Value]) -> sa.Value:
        q = Vec4(v[0], v[1], v[2], v[3]).normalized()
        return q.rotate(Vec3(v[4], v[5], 1.0)).sqr_distance(target)

    def axis_angle(v: list[sa.Value]) -> sa.Value:
        q = Vec4.from_axis_angle(Vec3(v[0], v[1], v[2]), v[3])
        return q.rotate(Vec3(1.0, v[4], v[5])).dot(target)

    for _ in range(5):
        assert_grad_matches_fd(loss, RNG.normal(size=6))
        assert_grad_matches_fd(axis_angle, RNG.normal(size=6))


# ---------------------------------------------------------------- compiled


def test_vector_expressions_compile_and_agree_away_from_the_trace_point() -> None:
    def energy(v: list[sa.Value]) -> sa.Value:
        a, b = _vec3(v, 0), _vec3(v, 3)
        q = Vec4.from_axis_angle(a, v[6])
        return (a.angle_between(b) + q.rotate(b).distance(Vec3(1.0, 0.0, 0.0))
                + Vec2(v[0], v[1]).distance_to_line(Vec2(v[2], v[3]), Vec2(v[4], v[5])))

    points = list(RNG.normal(size=(5, 7)))
    # parallel vectors at some points: the clamped branch must also work compiled
    parallel = np.array([1.0, 2.0, 3.0, -2.0, -4.0, -6.0, 0.4])
    assert_compiled_matches_eager(energy, RNG.normal(size=7), [*points, parallel])
