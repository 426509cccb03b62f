"""Manifolds (``sa.QuaternionManifold`` and friends) and the solvers on them.

Every map is checked against an independent implementation: quaternion algebra written
here in numpy, ``scipy.spatial.transform.Rotation``, the Householder construction of
Ceres' sphere manifold written here in numpy, finite differences for the Jacobians, and
closed forms for the solutions (scipy's chordal rotation mean, the principal
eigenvector from ``numpy.linalg.eigh``, the Kabsch/Umeyama SVD, a linear least-squares
fit). The compiled maps are traced at ``x = e_0, delta = 0`` and checked everywhere
else.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import scalar_autograd as sa
from scalar_autograd.kinematics import rotation_error
from scalar_autograd.lsq import native_lm
from scalar_autograd.manifolds import (
    SERIES_THRESHOLD,
    TangentSpace,
    resolve_blocks,
    tangent_space,
)
from scalar_autograd.value import Value

RNG_SEED = 20240914
# angles straddling the series threshold, 0 and moderate ones
SMALL = [0.0, 1e-12, 1e-9, 1e-6, 0.999 * math.sqrt(SERIES_THRESHOLD),
         1.001 * math.sqrt(SERIES_THRESHOLD), 1e-2, 0.3, 1.2]


# ----------------------------------------------------------------------------- oracles
def hamilton(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a0, a1, a2, a3 = a
    b0, b1, b2, b3 = b
    return np.array([a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3,
                     a0 * b1 + a1 * b0 + a2 * b3 - a3 * b2,
                     a0 * b2 - a1 * b3 + a2 * b0 + a3 * b1,
                     a0 * b3 + a1 * b2 - a2 * b1 + a3 * b0])


def ceres_quaternion_plus(x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Ceres' QuaternionManifold::Plus (w first), in numpy."""
    norm = float(np.linalg.norm(delta))
    if norm == 0.0:
        return x.copy()
    dq = np.concatenate([[math.cos(norm)], math.sin(norm) / norm * delta])
    return hamilton(dq, x)


def ceres_quaternion_minus(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = hamilton(y, x * np.array([1.0, -1.0, -1.0, -1.0]))
    u = float(np.linalg.norm(z[1:]))
    return np.zeros(3) if u == 0.0 else math.atan2(u, z[0]) / u * z[1:]


def ceres_quaternion_plus_jacobian(x: np.ndarray) -> np.ndarray:
    """Ceres' QuaternionManifold::PlusJacobian, transcribed."""
    return np.array([[-x[1], -x[2], -x[3]],
                     [x[0], x[3], -x[2]],
                     [-x[3], x[0], x[1]],
                     [x[2], -x[1], x[0]]])


def ceres_sphere_plus(x: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Ceres' SphereManifold::Plus (ComputeHouseholderVector + ComputeSphereManifoldPlus),
    transcribed to numpy."""
    n = x.size
    sigma = float(x[:-1] @ x[:-1])
    v = x.copy()
    v[-1] = 1.0
    pivot = x[-1]
    if sigma == 0.0:
        beta = 2.0 if pivot < 0.0 else 0.0
        v[:-1] = 0.0
    else:
        mu = math.sqrt(pivot * pivot + sigma)
        v_pivot = pivot - mu if pivot <= 0.0 else -sigma / (pivot + mu)
        beta = 2.0 * v_pivot * v_pivot / (sigma + v_pivot * v_pivot)
        v[:-1] = x[:-1] / v_pivot
    norm_delta = float(np.linalg.norm(delta))
    if norm_delta == 0.0:
        return x.copy()
    y = np.concatenate([math.sin(norm_delta) / norm_delta * delta, [math.cos(norm_delta)]])
    assert y.size == n
    return float(np.linalg.norm(x)) * (y - v * (beta * (v @ y)))


def finite_jacobian(f: Any, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = h
        cols.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.stack(cols, axis=1)


def random_unit_quaternion(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    return q / np.linalg.norm(q)


def random_direction(rng: np.random.Generator, n: int) -> np.ndarray:
    d = rng.standard_normal(n)
    return d / np.linalg.norm(d)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


# ----------------------------------------------------------------------------- quaternions
@pytest.mark.parametrize("angle", SMALL)
def test_quaternion_plus_matches_ceres_and_scipy(rng: np.random.Generator, angle: float) -> None:
    m = sa.QuaternionManifold()
    for _ in range(5):
        x = random_unit_quaternion(rng)
        delta = angle * random_direction(rng, 3)
        y = m.plus_array(x, delta)
        np.testing.assert_allclose(y, ceres_quaternion_plus(x, delta), rtol=0, atol=4e-16)
        # scipy: a rotation by the rotation vector 2 delta, applied after x
        expected = (Rotation.from_rotvec(2 * delta) *
                    Rotation.from_quat(x, scalar_first=True)).as_quat(scalar_first=True)
        assert min(np.abs(y - expected).max(), np.abs(y + expected).max()) < 1e-15
        assert abs(np.linalg.norm(y) - 1.0) <= 2.3e-16


@pytest.mark.parametrize("angle", SMALL)
def test_quaternion_minus_inverts_plus(rng: np.random.Generator, angle: float) -> None:
    m = sa.QuaternionManifold()
    for _ in range(5):
        x = random_unit_quaternion(rng)
        y = random_unit_quaternion(rng)
        delta = angle * random_direction(rng, 3)
        # y = plus(x, delta) holds its components to rounding (~1e-16 absolute)
        np.testing.assert_allclose(m.minus_array(m.plus_array(x, delta), x), delta,
                                   rtol=1e-13, atol=4e-16)
        np.testing.assert_allclose(m.minus_array(y, x), ceres_quaternion_minus(y, x),
                                   rtol=1e-13, atol=1e-16)


def test_quaternion_plus_zero_is_x_and_minus_x_x_is_zero(rng: np.random.Generator) -> None:
    m = sa.QuaternionManifold()
    for _ in range(20):
        x = random_unit_quaternion(rng)
        np.testing.assert_allclose(m.plus_array(x, np.zeros(3)), x, rtol=0, atol=3e-16)
        np.testing.assert_allclose(m.minus_array(x, x), 0.0, rtol=0, atol=1e-16)


def test_quaternion_stays_unit_after_many_steps(rng: np.random.Generator) -> None:
    m = sa.QuaternionManifold()
    space = TangentSpace(4, [(range(4), m)])
    x = random_unit_quaternion(rng)
    steps = 0.5 * rng.standard_normal((10_000, 3))
    for h in steps:
        x = space.plus(x, h)
    assert abs(np.linalg.norm(x) - 1.0) <= 4.5e-16


def ceres_eigen_quaternion_plus_jacobian(x: np.ndarray) -> np.ndarray:
    """Ceres' EigenQuaternionManifold::PlusJacobian (x stored [x, y, z, w]), transcribed."""
    return np.array([[x[3], x[2], -x[1]],
                     [-x[2], x[3], x[0]],
                     [x[1], -x[0], x[3]],
                     [-x[0], -x[1], -x[2]]])


@pytest.mark.parametrize("manifold, ceres", [
    (sa.QuaternionManifold(), ceres_quaternion_plus_jacobian),
    (sa.EigenQuaternionManifold(), ceres_eigen_quaternion_plus_jacobian)])
def test_quaternion_jacobians(rng: np.random.Generator, manifold: sa.Manifold,
                              ceres: Any) -> None:
    for _ in range(5):
        x = random_unit_quaternion(rng)
        P = manifold.plus_jacobian(x)
        np.testing.assert_allclose(P, ceres(x), rtol=0, atol=1e-15)
        np.testing.assert_allclose(
            P, finite_jacobian(lambda d, x=x: manifold.plus_array(x, d), np.zeros(3)),
            atol=1e-9)
        # away from 0: the derivative of the compiled map, against differences
        d = 0.7 * random_direction(rng, 3)
        np.testing.assert_allclose(
            manifold.plus_jacobian(x, d),
            finite_jacobian(lambda e, x=x: manifold.plus_array(x, e), d), atol=1e-9)
        M = manifold.minus_jacobian(x)
        np.testing.assert_allclose(
            M, finite_jacobian(lambda y, x=x: manifold.minus_array(y, x), x), atol=1e-9)
        np.testing.assert_allclose(M @ P, np.eye(3), atol=1e-15)   # Ceres' invariant


def test_eigen_quaternion_is_the_same_rotation_stored_x_first(rng: np.random.Generator) -> None:
    ceres, eigen = sa.QuaternionManifold(), sa.EigenQuaternionManifold()
    for _ in range(5):
        x = random_unit_quaternion(rng)
        delta = 0.4 * random_direction(rng, 3)
        y = ceres.plus_array(x, delta)
        np.testing.assert_allclose(eigen.plus_array(np.roll(x, -1), delta), np.roll(y, -1),
                                   atol=4e-16)
        np.testing.assert_allclose(eigen.minus_array(np.roll(y, -1), np.roll(x, -1)),
                                   ceres.minus_array(y, x), atol=1e-15)


def test_eager_maps_agree_with_the_compiled_ones(rng: np.random.Generator) -> None:
    """The Value-level maps (what a residual uses) and the compiled kernels, values and
    derivatives at delta = 0 (the series branch) and away from it."""
    for m in (sa.QuaternionManifold(), sa.AngleAxisManifold(), sa.SphereManifold(4)):
        for scale in (0.0, 1e-5, 0.6):
            x = random_unit_quaternion(rng)[: m.ambient_size]
            x = x / np.linalg.norm(x)
            delta = scale * random_direction(rng, m.tangent_size)
            leaves = [Value(float(d), requires_grad=True) for d in delta]
            out = m.plus(x.tolist(), leaves)
            np.testing.assert_allclose([v.data for v in out], m.plus_array(x, delta),
                                       rtol=2e-15, atol=1e-16)
            eager = []
            for v in out:
                for leaf in leaves:
                    leaf.grad = 0.0
                v.backward()
                eager.append([leaf.grad for leaf in leaves])
            np.testing.assert_allclose(eager, m.plus_jacobian(x, delta), rtol=0, atol=1e-14)


# ----------------------------------------------------------------------------- SO(3)
@pytest.mark.parametrize("angle", SMALL + [math.pi - 1e-6, math.pi - 1e-12])
def test_angle_axis_plus_and_minus_match_scipy(rng: np.random.Generator, angle: float) -> None:
    m = sa.AngleAxisManifold()
    for _ in range(5):
        r = 2.5 * rng.uniform() * random_direction(rng, 3)
        delta = angle * random_direction(rng, 3)
        expected = (Rotation.from_rotvec(delta) * Rotation.from_rotvec(r)).as_rotvec()
        got = m.plus_array(r, delta)
        # the same rotation (a rotation vector of angle ~pi has two spellings)
        assert (Rotation.from_rotvec(got) * Rotation.from_rotvec(expected).inv()
                ).magnitude() < 1e-12
        if np.linalg.norm(expected) < math.pi - 1e-6:
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
        # minus(s, r) = Log(Exp(s) Exp(r)^-1), the log map near 0 and near pi
        s = (Rotation.from_rotvec(delta) * Rotation.from_rotvec(r)).as_rotvec()
        log = m.minus_array(s, r)
        assert np.linalg.norm(log) <= math.pi + 1e-12
        assert (Rotation.from_rotvec(log) * Rotation.from_rotvec(delta).inv()).magnitude() \
            < 1e-10
        if angle < math.pi - 1e-3:
            np.testing.assert_allclose(log, delta, rtol=1e-10, atol=1e-15)


def test_angle_axis_log_near_pi_is_accurate() -> None:
    """The SO(3) log by atan2 keeps full accuracy where acos-based formulas lose it."""
    m = sa.AngleAxisManifold()
    axis = random_direction(np.random.default_rng(1), 3)
    for eps in (1e-3, 1e-6, 1e-9, 1e-12):
        angle = math.pi - eps
        got = m.minus_array(angle * axis, np.zeros(3))
        np.testing.assert_allclose(got, angle * axis, rtol=2e-15, atol=0)


def test_angle_axis_jacobian_is_the_inverse_left_jacobian(rng: np.random.Generator) -> None:
    m = sa.AngleAxisManifold()
    for _ in range(5):
        r = 2.0 * rng.uniform() * random_direction(rng, 3)
        P = m.plus_jacobian(r)
        np.testing.assert_allclose(
            P, finite_jacobian(lambda d, r=r: m.plus_array(r, d), np.zeros(3)), atol=1e-9)
        # closed form: J_l(r)^-1 = I - r^/2 + (1/t^2 - (1 + cos t) / (2 t sin t)) r^2
        t = np.linalg.norm(r)
        K = np.array([[0, -r[2], r[1]], [r[2], 0, -r[0]], [-r[1], r[0], 0]])
        expected = np.eye(3) - 0.5 * K + (1 / t**2 - (1 + math.cos(t)) / (2 * t * math.sin(t))) \
            * K @ K
        np.testing.assert_allclose(P, expected, atol=1e-13)
    assert np.allclose(m.plus_jacobian(np.zeros(3)), np.eye(3), rtol=0, atol=0)


# ----------------------------------------------------------------------------- sphere
@pytest.mark.parametrize("n", [2, 3, 5])
def test_sphere_plus_matches_ceres(rng: np.random.Generator, n: int) -> None:
    m = sa.SphereManifold(n, radius=None)      # Ceres': the sphere of the start's norm
    points = [random_direction(rng, n) * s for s in (1.0, 2.5)]
    e = np.zeros(n)
    e[-1] = 1.0
    points += [e, -e, 3.0 * e]
    for x in points:
        for angle in SMALL:
            delta = angle * random_direction(rng, n - 1)
            y = m.plus_array(x, delta)
            np.testing.assert_allclose(y, ceres_sphere_plus(x, delta), rtol=1e-15,
                                       atol=4e-16 * np.linalg.norm(x))
            assert abs(np.linalg.norm(y) - np.linalg.norm(x)) <= 4.5e-16 * np.linalg.norm(x)
            # the great-circle distance from x is |delta|
            u, w = x / np.linalg.norm(x), y / np.linalg.norm(x)
            along = float(u @ w)
            across = float(np.linalg.norm(w - along * u))
            assert abs(math.atan2(across, along) - angle) <= 1e-12
            np.testing.assert_allclose(m.minus_array(y, x), delta, rtol=1e-11, atol=1e-15)
        # the tangent basis: orthogonal to x, orthonormal (times |x|)
        P = m.plus_jacobian(x)
        np.testing.assert_allclose(P.T @ x, 0.0, atol=1e-15 * np.linalg.norm(x) ** 2)
        np.testing.assert_allclose(P.T @ P, float(x @ x) * np.eye(n - 1), atol=1e-14)
        np.testing.assert_allclose(
            P, finite_jacobian(lambda d, x=x: ceres_sphere_plus(x, d), np.zeros(n - 1)),
            atol=1e-8)


def test_sphere_stays_unit_after_many_steps(rng: np.random.Generator) -> None:
    space = TangentSpace(3, [([0, 1, 2], sa.SphereManifold(3))])
    x = random_direction(rng, 3)
    for h in 0.5 * rng.standard_normal((10_000, 2)):
        x = space.plus(x, h)
    assert abs(np.linalg.norm(x) - 1.0) <= 1e-13


# ----------------------------------------------------------------------------- subsets, products
def test_subset_manifold_keeps_constant_coordinates_bit_for_bit(rng: np.random.Generator) -> None:
    m = sa.SubsetManifold(5, [0, 3])
    assert (m.ambient_size, m.tangent_size) == (5, 3)
    x = rng.standard_normal(5) * 1e3
    delta = rng.standard_normal(3)
    y = m.plus_array(x, delta)
    assert y[0] == x[0] and y[3] == x[3]
    np.testing.assert_array_equal(y[[1, 2, 4]], x[[1, 2, 4]] + delta)
    np.testing.assert_array_equal(m.minus_array(y, x), y[[1, 2, 4]] - x[[1, 2, 4]])
    fixed = sa.SubsetManifold(2, [0, 1])
    assert fixed.tangent_size == 0
    np.testing.assert_array_equal(fixed.plus_array([1.0, 2.0], []), [1.0, 2.0])


def test_product_manifold_is_its_factors_side_by_side(rng: np.random.Generator) -> None:
    q, e = sa.QuaternionManifold(), sa.EuclideanManifold(3)
    pose = sa.ProductManifold(q, e)
    x = np.concatenate([random_unit_quaternion(rng), rng.standard_normal(3)])
    delta = rng.standard_normal(6) * 0.3
    y = pose.plus_array(x, delta)
    np.testing.assert_allclose(y[:4], q.plus_array(x[:4], delta[:3]), atol=1e-16)
    np.testing.assert_allclose(y[4:], x[4:] + delta[3:], atol=1e-16)
    np.testing.assert_allclose(pose.minus_array(y, x), delta, atol=1e-14)
    P = pose.plus_jacobian(x)
    np.testing.assert_allclose(P[:4, :3], q.plus_jacobian(x[:4]), atol=1e-16)
    np.testing.assert_array_equal(P[4:, 3:], np.eye(3))
    np.testing.assert_array_equal(P[:4, 3:], 0.0)
    assert pose == sa.ProductManifold(sa.QuaternionManifold(), sa.EuclideanManifold(3))
    assert pose != sa.ProductManifold(sa.EuclideanManifold(3), sa.QuaternionManifold())


def test_tangent_space_layout_and_jacobians(rng: np.random.Generator) -> None:
    """Blocks in any order among Euclidean parameters; the tangent Jacobian is
    J @ PlusJacobian, dense and sparse."""
    from scipy import sparse

    n = 12
    blocks = [([8, 9, 10, 11], sa.QuaternionManifold()), ([1, 3, 5], sa.SphereManifold(3)),
              ([2, 4, 6, 7], sa.QuaternionManifold())]
    space = TangentSpace(n, blocks)
    assert space.tangent_size == 12 - 3
    x = rng.standard_normal(n)
    for idx, _ in blocks:
        x[idx] = random_direction(rng, len(idx))
    P = np.zeros((n, space.tangent_size))
    P[space.euclidean, space.euclidean_tangent] = 1.0
    h = 0.2 * rng.standard_normal(space.tangent_size)
    y = space.plus(x, h)
    # tangent coordinates in x's order: 0, then the sphere at 1, the quaternion at 2, ...
    assert space.euclidean.tolist() == [0] and space.euclidean_tangent.tolist() == [0]
    for (idx, m), cols in zip(sorted(blocks, key=lambda b: min(b[0])),
                              ([1, 2], [3, 4, 5], [6, 7, 8])):
        P[np.ix_(idx, cols)] = m.plus_jacobian(x[idx])
        np.testing.assert_allclose(y[idx], m.plus_array(x[idx], h[cols]), atol=1e-16)
        np.testing.assert_allclose(space.minus(y, x)[cols], h[cols], atol=1e-14)
    J = rng.standard_normal((7, n))
    np.testing.assert_allclose(space.to_tangent(J, x), J @ P, atol=1e-14)
    np.testing.assert_allclose(space.to_tangent(sparse.csr_matrix(J), x).toarray(), J @ P,
                               atol=1e-14)
    g = rng.standard_normal(n)
    np.testing.assert_allclose(space.tangent_gradient(x, g), P.T @ g, atol=1e-14)


# ----------------------------------------------------------------------------- argument checks
def test_manifold_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="size"):
        sa.SphereManifold(2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        sa.SphereManifold(1)
    with pytest.raises(ValueError, match="constant_indices"):
        sa.SubsetManifold(3, [3])
    with pytest.raises(ValueError, match="distinct"):
        sa.SubsetManifold(3, [1, 1])
    with pytest.raises(TypeError, match="Manifold"):
        sa.ProductManifold(sa.QuaternionManifold(), "R3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="4 entries"):
        sa.QuaternionManifold().plus([1.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="delta"):
        sa.QuaternionManifold().plus_array([1.0, 0.0, 0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="two manifold blocks"):
        TangentSpace(8, [([0, 1, 2, 3], sa.QuaternionManifold()),
                         ([3, 4, 5, 6], sa.QuaternionManifold())])
    with pytest.raises(ValueError, match="ambient size 4"):
        tangent_space([(slice(0, 3), sa.QuaternionManifold())], 5)
    with pytest.raises(ValueError, match="radius"):
        sa.SphereManifold(3, radius=-1.0)
    with pytest.raises(ValueError, match="unit vector"):
        TangentSpace(3, [([0, 1, 2], sa.SphereManifold(3))]).check(np.array([2.0, 0, 0]))
    with pytest.raises(TypeError, match=r"manifolds\[0\]"):
        resolve_blocks([(slice(0, 4), "quaternion")], 5)
    with pytest.raises(ValueError, match="not one of the params"):
        resolve_blocks([([Value(1.0)] * 4, sa.QuaternionManifold())], 4,
                       params=[Value(1.0) for _ in range(4)])


def test_a_manifold_with_a_python_branch_is_refused() -> None:
    class Folded(sa.Manifold):
        ambient_size = tangent_size = 1

        def plus(self, x: Any, delta: Any) -> list[Value]:
            s = x[0] + delta[0]
            return [s if s > 0 else -s]                 # a Python branch: frozen

        def minus(self, y: Any, x: Any) -> list[Value]:
            return [sa.as_value(y[0]) - x[0]]

    with pytest.raises(ValueError, match="branch"):
        Folded().plus_array([1.0], [0.5])


# ----------------------------------------------------------------------------- solvers
def _matrix(p: list[Value]) -> list[list[Value]]:
    """The rotation matrix of a quaternion [w, x, y, z] (an oracle-free formula)."""
    w, x, y, z = p
    return [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]


def _noisy_rotations(count: int, noise: float, seed: int = 3) -> Rotation:
    rng = np.random.default_rng(seed)
    truth = Rotation.from_rotvec([0.9, -0.6, 1.7])
    return truth * Rotation.from_rotvec(noise * rng.standard_normal((count, 3)))


TIGHT = {"cost_tolerance": 0.0, "param_tolerance": 1e-15, "gradient_tolerance": 1e-14}
"""Least squares run to rounding (problems with residuals converge linearly: the cost
test would stop them early)."""
LM_FLOOR = 3e-8
"""How close Levenberg-Marquardt can get to the minimiser of a problem with a residual
cost ``F`` of a few units: it accepts a step only when the cost falls in floating point,
so it stops within ``~sqrt(eps F / curvature)`` (~5e-9 here) of it. L-BFGS, whose line
search also reads slopes, gets to ~1e-12."""


@pytest.mark.parametrize("kind", ["quaternion", "eigen", "angle_axis"])
@pytest.mark.parametrize("solver", ["lm", "lbfgs"])
def test_chordal_rotation_mean_matches_scipy(kind: str, solver: str) -> None:
    """The chordal L2 mean: argmin sum |R - R_i|_F^2 is scipy's Rotation.mean()."""
    rotations = _noisy_rotations(15, 0.4)
    mats = rotations.as_matrix()
    if kind == "angle_axis":
        manifold: sa.Manifold = sa.AngleAxisManifold()
        start = [0.1, 0.2, -0.1]

        def matrix(p: list[Value]) -> list[list[Value]]:
            from scalar_autograd.manifolds import _rotation_quaternion
            return _matrix(_rotation_quaternion(p))
    else:
        manifold = sa.QuaternionManifold() if kind == "quaternion" else \
            sa.EigenQuaternionManifold()
        start = [1.0, 0.0, 0.0, 0.0] if kind == "quaternion" else [0.0, 0.0, 0.0, 1.0]

        def matrix(p: list[Value]) -> list[list[Value]]:
            return _matrix(p if kind == "quaternion" else [p[3], p[0], p[1], p[2]])

    params = [Value(v) for v in start]

    def residuals(p: list[Value]) -> list[Value]:
        R = matrix(p)
        return [R[i][j] - M[i, j] for M in mats for i in range(3) for j in range(3)]

    if solver == "lm":
        result = sa.nonlinear_least_squares(params, residuals,
                                            manifolds=[(params, manifold)], **TIGHT)
    else:
        result = sa.minimize(lambda p: 0.5 * sa.sum([r * r for r in residuals(p)]), params,
                             method="lbfgs", manifolds=[(params, manifold)],
                             gradient_tolerance=1e-7, ftol=0.0)
    assert result.success, result
    x = np.array([p.data for p in params])
    if kind == "angle_axis":
        found = Rotation.from_rotvec(x)
    else:
        assert abs(np.linalg.norm(x) - 1.0) <= 4.5e-16
        found = Rotation.from_quat(x, scalar_first=(kind == "quaternion"))
    assert (found * rotations.mean().inv()).magnitude() < (LM_FLOOR if solver == "lm" else 1e-8)


@pytest.mark.parametrize("solver", ["lm", "lbfgs"])
def test_geodesic_rotation_mean_is_the_karcher_mean(solver: str) -> None:
    """The geodesic L2 mean (residuals: the rotation errors by the manifold's log map)
    against the Karcher fixed-point iteration done with scipy alone."""
    rotations = _noisy_rotations(12, 0.5, seed=7)
    quats = rotations.as_quat(scalar_first=True)
    mean = rotations[0]
    for _ in range(100):
        step = (mean.inv() * rotations).as_rotvec().mean(axis=0)
        mean = mean * Rotation.from_rotvec(step)
    q = [Value(v) for v in (1.0, 0.0, 0.0, 0.0)]

    def residuals(p: list[Value]) -> list[Value]:
        return [e for t in quats for e in rotation_error(p, t.tolist())]

    block = [(q, sa.QuaternionManifold())]
    if solver == "lm":
        result = sa.nonlinear_least_squares(q, residuals, manifolds=block, **TIGHT)
    else:
        result = sa.lbfgs(lambda p: sa.sum([r * r for r in residuals(p)]), q,
                          manifolds=block, gradient_tolerance=1e-9, ftol=0.0)
    assert result.success, result
    found = Rotation.from_quat([v.data for v in q], scalar_first=True)
    assert (found * mean.inv()).magnitude() < (LM_FLOOR if solver == "lm" else 1e-9)


@pytest.mark.parametrize("solver", ["lm", "lbfgs"])
def test_unit_vector_fit_is_the_principal_eigenvector(solver: str) -> None:
    rng = np.random.default_rng(11)
    n = 6
    B = rng.standard_normal((n, n))
    A = B @ B.T
    eigenvalues, eigenvectors = np.linalg.eigh(A)
    top = eigenvectors[:, -1]
    start = random_direction(rng, n)
    params = [Value(float(v)) for v in start]
    block = [(params, sa.SphereManifold(n))]
    if solver == "lm":
        # |L^T x|^2 = x^T (c I - A) x with c above the largest eigenvalue
        L = np.linalg.cholesky((eigenvalues[-1] * 1.5) * np.eye(n) - A)

        def residuals(p: list[Value]) -> list[Value]:
            return [sa.sum([float(L[i, k]) * p[i] for i in range(n)]) for k in range(n)]

        result = sa.nonlinear_least_squares(params, residuals, manifolds=block, **TIGHT)
    else:
        def loss(p: list[Value]) -> Value:
            return -sa.sum([float(A[i, k]) * p[i] * p[k] for i in range(n) for k in range(n)])

        result = sa.minimize(loss, params, method="lbfgs", manifolds=block,
                             gradient_tolerance=1e-10, ftol=0.0, max_iterations=500)
    assert result.success, result
    x = np.array([p.data for p in params])
    assert abs(np.linalg.norm(x) - 1.0) <= 1e-15
    assert min(np.abs(x - top).max(), np.abs(x + top).max()) < \
        (LM_FLOOR if solver == "lm" else 1e-8)


def _correspondences(seed: int = 5) -> tuple[np.ndarray, np.ndarray, Rotation, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = rng.uniform(-1.0, 1.0, (25, 3))
    rotation = Rotation.from_rotvec([0.7, -1.9, 0.4])
    translation = np.array([0.3, -1.2, 2.0])
    observed = rotation.apply(points) + translation + 0.01 * rng.standard_normal((25, 3))
    return points, observed, rotation, translation


def kabsch(points: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares rigid motion (Kabsch/Umeyama, by SVD)."""
    cp, co = points.mean(axis=0), observed.mean(axis=0)
    H = (points - cp).T @ (observed - co)
    U, _, Vt = np.linalg.svd(H)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    return R, co - R @ cp


def _pose_residuals(points: np.ndarray, observed: np.ndarray) -> Any:
    def residuals(p: list[Value]) -> list[Value]:
        R = _matrix(p[:4])
        return [sa.sum([R[i][k] * float(a[k]) for k in range(3)]) + p[4 + i] - float(b[i])
                for a, b in zip(points, observed) for i in range(3)]
    return residuals


@pytest.mark.parametrize("layout", ["quaternion", "product"])
@pytest.mark.parametrize("solver", ["lm", "lbfgs"])
def test_pose_from_correspondences_matches_kabsch(layout: str, solver: str) -> None:
    points, observed, _, _ = _correspondences()
    R, t = kabsch(points, observed)
    params = [Value(v) for v in (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)]
    block = [(params[:4], sa.QuaternionManifold())] if layout == "quaternion" else \
        [(params, sa.ProductManifold(sa.QuaternionManifold(), sa.EuclideanManifold(3)))]
    residuals = _pose_residuals(points, observed)
    if solver == "lm":
        result = sa.nonlinear_least_squares(params, residuals, manifolds=block, **TIGHT)
    else:
        result = sa.minimize(lambda p: sa.sum([r * r for r in residuals(p)]), params,
                             method="lbfgs", manifolds=block, gradient_tolerance=1e-11,
                             ftol=0.0, max_iterations=300)
    assert result.success, result
    x = np.array([p.data for p in params])
    found = Rotation.from_quat(x[:4], scalar_first=True)
    assert (found * Rotation.from_matrix(R).inv()).magnitude() < 1e-9
    np.testing.assert_allclose(x[4:], t, atol=1e-9)


def test_lm_tangent_jacobian_and_covariance_have_the_tangent_size() -> None:
    points, observed, _, _ = _correspondences()
    problem = sa.LeastSquaresProblem.from_residuals(
        [Value(v) for v in (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)],
        _pose_residuals(points, observed))
    problem.set_manifold(slice(0, 4), sa.QuaternionManifold())
    result = problem.solve(**TIGHT)
    assert result.jacobian.shape == (75, 6)
    cov = result.covariance()
    assert cov.shape == (6, 6) and np.all(np.isfinite(cov))
    # a start off the manifold is refused, naming the block
    with pytest.raises(ValueError, match=r"x0\[0:4\] must be a unit quaternion"):
        problem.solve(x0=[2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="bounds cannot be combined with manifolds"):
        problem.solve(bounds=(-10.0, 10.0))
    problem.set_manifold(slice(0, 4), None)
    assert problem.manifolds == []
    with pytest.raises(ValueError, match="no manifold"):
        problem.set_manifold(slice(0, 4), None)


def test_subset_held_constant_stays_bit_identical_and_the_rest_is_fitted() -> None:
    """A linear fit with two coefficients held: the others are numpy's lstsq of the
    remaining columns; the held ones are exactly their start."""
    rng = np.random.default_rng(2)
    A = rng.standard_normal((40, 5))
    b = rng.standard_normal(40)
    start = rng.standard_normal(5) * math.pi        # not round numbers
    held = [1, 3]
    free = [0, 2, 4]
    expected = np.linalg.lstsq(A[:, free], b - A[:, held] @ start[held], rcond=None)[0]
    problem = sa.LeastSquaresProblem(start)
    problem.add_block(lambda p, d: sa.sum([p[k] * d[k] for k in range(5)]) - d[5],
                      param_index=np.tile(np.arange(5), (40, 1)), data=[*A.T, b])
    problem.set_manifold(range(5), sa.SubsetManifold(5, held))
    result = problem.solve(**TIGHT)
    assert result.success
    assert result.x[1] == start[1] and result.x[3] == start[3]
    np.testing.assert_allclose(result.x[free], expected, rtol=1e-12, atol=1e-13)
    params = [Value(float(v)) for v in start]
    r = sa.lbfgs(lambda p: sa.sum([(sa.sum([p[k] * float(A[i, k]) for k in range(5)])
                                    - float(b[i])) ** 2 for i in range(40)]), params,
                 manifolds=[(params, sa.SubsetManifold(5, held))], gradient_tolerance=1e-11,
                 ftol=0.0)
    assert r.success
    assert params[1].data == start[1] and params[3].data == start[3]
    np.testing.assert_allclose([params[j].data for j in free], expected, atol=1e-9)


def test_manifold_problems_bypass_the_native_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small dense problem would go to the native LM driver, which has no manifolds:
    with manifolds the numpy loop runs (and the quaternion stays unit)."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("native_lm.plan must not be consulted with manifolds")

    monkeypatch.setattr(native_lm, "plan", refuse)
    q = [Value(v) for v in (1.0, 0.0, 0.0, 0.0)]
    target = Rotation.from_rotvec([0.2, 0.1, -0.3]).as_quat(scalar_first=True)
    result = sa.nonlinear_least_squares(q, lambda p: rotation_error(p, target.tolist()),
                                        manifolds=[(q, sa.QuaternionManifold())])
    assert result.success
    np.testing.assert_allclose([v.data for v in q], target, atol=1e-12)


def test_sparse_jacobian_and_geodesic_acceleration_on_manifolds() -> None:
    """Residual blocks over many quaternions (a sparse Jacobian), each pulled to its
    own target; and the geodesic-acceleration probe along plus."""
    rng = np.random.default_rng(4)
    count = 30
    targets = Rotation.from_rotvec(rng.standard_normal((count, 3))).as_quat(scalar_first=True)
    x0 = np.tile([1.0, 0.0, 0.0, 0.0], count)

    def error(p: list[Value], d: list[Value]) -> list[Value]:
        return rotation_error(p, d)

    for options in ({"linear_solver": "sparse_cholesky"}, {"geodesic_acceleration": True}):
        problem = sa.LeastSquaresProblem(x0)
        problem.add_block(error, param_index=np.arange(4 * count).reshape(count, 4),
                          data=list(targets.T))
        problem.set_manifolds([(slice(4 * k, 4 * k + 4), sa.QuaternionManifold())
                               for k in range(count)])
        result = problem.solve(**options, **TIGHT)
        assert result.success, result
        found = result.x.reshape(count, 4)
        signs = np.sign(np.sum(found * targets, axis=1))[:, None]
        np.testing.assert_allclose(found * signs, targets, atol=1e-12)


def test_solver_arguments_with_manifolds_are_checked() -> None:
    q = [Value(v) for v in (1.0, 0.0, 0.0, 0.0)]
    block = [(q, sa.QuaternionManifold())]

    def loss(p: list[Value]) -> Value:
        return sa.sum([c * c for c in rotation_error(p, [0.0, 1.0, 0.0, 0.0])])

    with pytest.raises(ValueError, match="method='lbfgs'"):
        sa.minimize(loss, q, method="adam", manifolds=block)
    with pytest.raises(ValueError, match="bounds"):
        sa.minimize(loss, q, method="lbfgs", manifolds=block, bounds=(-2.0, 2.0))
    q[0].data = 0.5
    with pytest.raises(ValueError, match="unit quaternion"):
        sa.lbfgs(loss, q, manifolds=block)
    with pytest.raises(TypeError, match="manifolds"):
        sa.nonlinear_least_squares(q, lambda p: p, manifolds=sa.QuaternionManifold())


def test_step_reference_counts_each_block_by_its_norm() -> None:
    """param_tolerance's size of x: Euclidean coordinates as they are, a manifold block
    its norm spread over its tangent coordinates, a subset its free coordinates."""
    space = TangentSpace(12, [(range(4), sa.QuaternionManifold()),
                              (range(4, 7), sa.SubsetManifold(3, [1])),
                              (range(7, 12), sa.ProductManifold(sa.SphereManifold(2),
                                                                sa.EuclideanManifold(3)))])
    x = np.arange(12.0) + 1.0
    reference = space.reference(x)
    assert reference.size == space.tangent_size == 3 + 2 + 1 + 3
    np.testing.assert_allclose(np.sum(reference[:3] ** 2), np.sum(x[:4] ** 2))
    np.testing.assert_array_equal(reference[3:5], x[[4, 6]])
    np.testing.assert_allclose(reference[5], np.linalg.norm(x[7:9]))
    np.testing.assert_array_equal(reference[6:], x[9:])


def test_graph_jacobian_and_sigma_on_manifolds() -> None:
    """The graph oracle (re-run and backward per residual) and weighted residuals take
    the same tangent-space path: the answer is the closed form's either way."""
    points, observed, _, _ = _correspondences()
    R, t = kabsch(points, observed)
    for kwargs in ({"jacobian": "graph"}, {"sigma": 0.01}):
        params = [Value(v) for v in (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)]
        result = sa.nonlinear_least_squares(params, _pose_residuals(points, observed),
                                            manifolds=[(params[:4], sa.QuaternionManifold())],
                                            **kwargs, **TIGHT)
        assert result.success, (kwargs, result)
        x = np.array([p.data for p in params])
        found = Rotation.from_quat(x[:4], scalar_first=True)
        assert (found * Rotation.from_matrix(R).inv()).magnitude() < 1e-9
        np.testing.assert_allclose(x[4:], t, atol=1e-9)
