"""Matrix3x3: arithmetic vs numpy, eigenvalues vs numpy.linalg.eigvalsh, gradients v v^T."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scalar_autograd as sa
from _finite_differences import (
    assert_compiled_matches_eager,
    assert_grad_matches_fd,
    eager_value_and_grad,
)
from scalar_autograd import Matrix3x3, Vec3

RNG = np.random.default_rng(7)
METHODS = ("smallest_eigenvalue", "smallest_eigenvalue_analytic")


def _random_symmetric() -> np.ndarray:
    x = RNG.normal(size=(3, 3))
    return x + x.T


def _rotated(diagonal: list[float]) -> np.ndarray:
    q, _ = np.linalg.qr(RNG.normal(size=(3, 3)))
    return q @ np.diag(diagonal) @ q.T


def _upper(a: np.ndarray) -> list[float]:
    return [a[0, 0], a[0, 1], a[0, 2], a[1, 1], a[1, 2], a[2, 2]]


def _full_leaves(a: np.ndarray) -> tuple[list[list[sa.Value]], Matrix3x3]:
    leaves = [[sa.Value(float(a[i, j]), requires_grad=True) for j in range(3)]
              for i in range(3)]
    return leaves, Matrix3x3(leaves)


DEGENERATE = [
    np.diag([0.0, 1.0, 1.0]), np.diag([0.0, 0.0, 1.0]), np.diag([1.0, 2.0, 2.0]),
    2.0 * np.eye(3), np.zeros((3, 3)), np.diag([3.0, 1.0, 3.0]),
]


# ---------------------------------------------------------------- basics


def test_construction_and_arithmetic_against_numpy() -> None:
    a, b = RNG.normal(size=(3, 3)), RNG.normal(size=(3, 3))
    ma, mb = Matrix3x3(a.tolist()), Matrix3x3(b)  # lists or arrays
    np.testing.assert_array_equal(ma.data, a)
    np.testing.assert_allclose((ma + mb).data, a + b)
    np.testing.assert_allclose((ma - mb).data, a - b)
    np.testing.assert_allclose((ma * 2.0).data, 2 * a)
    np.testing.assert_allclose((2.0 * ma).data, 2 * a)
    np.testing.assert_allclose((-ma).data, -a)
    np.testing.assert_allclose((ma @ mb).data, a @ b, rtol=1e-14, atol=1e-14)
    v = RNG.normal(size=3)
    np.testing.assert_allclose((ma @ Vec3(*v)).data, a @ v, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(ma.transpose().data, a.T)
    assert ma.trace().data == pytest.approx(np.trace(a))
    assert ma.determinant().data == pytest.approx(np.linalg.det(a), rel=1e-12)
    assert ma.row(1).data == tuple(a[1]) and ma.column(2).data == tuple(a[:, 2])
    assert ma[1, 2].data == a[1, 2]
    np.testing.assert_array_equal(Matrix3x3.identity().data, np.eye(3))
    np.testing.assert_allclose(Matrix3x3.outer(Vec3(*v), Vec3(1, 2, 3)).data,
                               np.outer(v, [1, 2, 3]))
    s = Matrix3x3.symmetric(1, 2, 3, 4, 5, 6)
    assert s[0, 1] is s[1, 0] and s[1, 2] is s[2, 1]


def test_covariance_against_numpy() -> None:
    pts = RNG.normal(size=(10, 3))
    cov = Matrix3x3.covariance([Vec3(*p) for p in pts])
    np.testing.assert_allclose(cov.data, np.cov(pts.T, bias=True), rtol=1e-13, atol=1e-15)


def test_errors() -> None:
    with pytest.raises(TypeError, match="rows"):
        Matrix3x3([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(TypeError, match=r"rows\[1\]"):
        Matrix3x3([[1, 2, 3], [4, 5], [7, 8, 9]])
    with pytest.raises(TypeError, match=r"rows\[2\]\[0\]"):
        Matrix3x3([[1, 2, 3], [4, 5, 6], ["x", 8, 9]])
    with pytest.raises(TypeError, match="@"):
        Matrix3x3.identity() * Matrix3x3.identity()  # type: ignore[operator]
    with pytest.raises(ValueError, match="points"):
        Matrix3x3.covariance([])
    with pytest.raises(TypeError, match=r"points\[1\]"):
        Matrix3x3.covariance([Vec3(0, 0, 0), (1, 2, 3)])  # type: ignore[list-item]


# ---------------------------------------------------------------- eigenvalues


def test_eigenvalues_against_eigvalsh() -> None:
    for _ in range(200):
        a = _random_symmetric() * 10.0 ** RNG.uniform(-6, 6)
        expected = np.linalg.eigvalsh(a)
        scale = np.abs(expected).max()
        got = [e.data for e in Matrix3x3(a).eigenvalues()]
        np.testing.assert_allclose(got, expected, atol=1e-13 * scale, rtol=0)
        for method in METHODS:
            lam = getattr(Matrix3x3(a), method)().data
            assert abs(lam - expected[0]) <= 1e-13 * scale, (method, a)


@pytest.mark.parametrize("a", DEGENERATE + [_rotated([0.0, 1.0, 1.0]), _rotated([5.0, 5.0, 5.0]),
                                            _rotated([0.0, 0.0, 1.0]), _rotated([1e-9, 1, 1])])
def test_repeated_eigenvalues_are_finite_and_accurate(a: np.ndarray) -> None:
    expected = np.linalg.eigvalsh(a)
    scale = max(np.abs(expected).max(), 1e-300)
    # The trigonometric method loses half the digits when the two smallest eigenvalues
    # coincide (acos near 1); the Rayleigh-quotient version does not.
    simple = expected[1] - expected[0] > 1e-3 * scale
    tolerance = {"smallest_eigenvalue": 1e-13 if simple else 1e-8,
                 "smallest_eigenvalue_analytic": 1e-13 if simple else 1e-12}
    for method in METHODS:
        leaves, m = _full_leaves(a)
        lam = getattr(m, method)()
        lam.backward()
        grad = np.array([[v.grad for v in row] for row in leaves])
        assert abs(lam.data - expected[0]) <= tolerance[method] * scale, (method, lam.data)
        assert np.all(np.isfinite(grad)), (method, grad)
        # at any point the gradient is a convex combination of eigenvector projectors
        # of the smallest eigenvalue: symmetric, trace 1, positive semidefinite
        np.testing.assert_allclose(grad, grad.T, atol=1e-12)
        assert np.trace(grad) == pytest.approx(1.0, abs=1e-7)
        assert np.linalg.eigvalsh(grad).min() > -1e-7
        if simple:
            _, vectors = np.linalg.eigh(a)
            np.testing.assert_allclose(grad, np.outer(vectors[:, 0], vectors[:, 0]),
                                       atol=1e-10)


def test_tie_gradient_is_the_average_projector() -> None:
    # At a double smallest eigenvalue the trigonometric gradient is the average of the
    # tied projectors (acos' is infinite there; the clamp freezes phi). The argument of
    # acos rounds to just below 1, so the result is right to about sqrt(eps).
    leaves, m = _full_leaves(np.diag([0.0, 0.0, 1.0]))
    m.smallest_eigenvalue().backward()
    grad = np.array([[v.grad for v in row] for row in leaves])
    np.testing.assert_allclose(grad, np.diag([0.5, 0.5, 0.0]), atol=1e-7)
    leaves, m = _full_leaves(2.0 * np.eye(3))
    m.smallest_eigenvalue().backward()
    grad = np.array([[v.grad for v in row] for row in leaves])
    np.testing.assert_allclose(grad, np.eye(3) / 3.0, atol=1e-15)


def test_only_the_symmetric_part_is_read() -> None:
    a = RNG.normal(size=(3, 3))
    sym = 0.5 * (a + a.T)
    expected = np.linalg.eigvalsh(sym)
    for method in METHODS:
        leaves, m = _full_leaves(a)
        lam = getattr(m, method)()
        lam.backward()
        assert lam.data == pytest.approx(expected[0], abs=1e-13)
        v = np.linalg.eigh(sym)[1][:, 0]
        grad = np.array([[x.grad for x in row] for row in leaves])
        np.testing.assert_allclose(grad, np.outer(v, v), atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_gradient_is_the_eigenvector_rule(method: str) -> None:
    for _ in range(30):
        a = _random_symmetric()
        w, vectors = np.linalg.eigh(a)
        v = vectors[:, 0]
        # nine independent entries: d lambda / d A_ij = v_i v_j
        leaves, m = _full_leaves(a)
        getattr(m, method)().backward()
        grad = np.array([[x.grad for x in row] for row in leaves])
        np.testing.assert_allclose(grad, np.outer(v, v), atol=1e-10)
        # six shared entries (Matrix3x3.symmetric): off-diagonals accumulate 2 v_i v_j
        _, g6 = eager_value_and_grad(
            lambda p, method=method: getattr(Matrix3x3.symmetric(*p), method)(), _upper(a))
        vv = np.outer(v, v)
        expected = [vv[0, 0], 2 * vv[0, 1], 2 * vv[0, 2], vv[1, 1], 2 * vv[1, 2], vv[2, 2]]
        np.testing.assert_allclose(g6, expected, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_gradient_matches_finite_differences(method: str) -> None:
    for _ in range(5):
        assert_grad_matches_fd(lambda p: getattr(Matrix3x3.symmetric(*p), method)(),
                               _upper(_random_symmetric()))


def test_smallest_eigenvector() -> None:
    for a in [_random_symmetric() for _ in range(30)] + DEGENERATE[:3] + [
            _rotated([0.0, 0.0, 1.0]), _rotated([1.0, 1.0 + 1e-9, 3.0])]:
        v = np.array(Matrix3x3(a).smallest_eigenvector().data)
        lam = np.linalg.eigvalsh(a)[0]
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-14)
        assert np.linalg.norm(a @ v - lam * v) < 1e-8 * max(1.0, np.abs(a).max())


def test_plane_fit_through_covariance() -> None:
    # points on the plane z = 0.5 x - y: the smallest eigenvalue is 0, its vector the normal
    xy = RNG.normal(size=(12, 2))
    pts = [Vec3(x, y, 0.5 * x - y) for x, y in xy]
    cov = Matrix3x3.covariance(pts)
    assert abs(cov.smallest_eigenvalue_analytic().data) < 1e-14
    n = np.array(cov.smallest_eigenvector().data)
    expected = np.array([0.5, -1.0, -1.0]) / 1.5
    assert abs(abs(n @ expected) - 1.0) < 1e-12


# ---------------------------------------------------------------- compiled


@pytest.mark.parametrize("method", METHODS)
def test_eigenvalue_helpers_compile_and_agree_away_from_the_trace_point(method: str) -> None:
    def build(p: list[sa.Value]) -> sa.Value:
        return getattr(Matrix3x3.symmetric(*p), method)()

    generic = [_upper(_random_symmetric()) for _ in range(6)]
    assert_compiled_matches_eager(build, _upper(_random_symmetric()), generic,
                                  rtol=1e-9, atol=1e-11)
    # Repeated eigenvalues: ill-conditioned for the trigonometric gradient (sqrt(eps)),
    # so a different summation order may move it by ~1e-8; values stay finite and close.
    degenerate = [_upper(a) for a in DEGENERATE] + [_upper(_rotated([0.0, 1.0, 1.0]))]
    assert_compiled_matches_eager(build, _upper(_random_symmetric()), degenerate,
                                  rtol=1e-6, atol=1e-7)


def test_compiled_eigenvalue_matches_numpy() -> None:
    params = [sa.Value(0.0) for _ in range(6)]
    f = sa.compile(Matrix3x3.symmetric(*params).smallest_eigenvalue_analytic(), params)
    for _ in range(20):
        a = _random_symmetric()
        value, grad = f.value_and_grad(_upper(a))
        w, vectors = np.linalg.eigh(a)
        assert value == pytest.approx(w[0], abs=1e-12)
        vv = np.outer(vectors[:, 0], vectors[:, 0])
        np.testing.assert_allclose(grad, [vv[0, 0], 2 * vv[0, 1], 2 * vv[0, 2], vv[1, 1],
                                          2 * vv[1, 2], vv[2, 2]], atol=1e-10)
    assert math.isfinite(f(_upper(np.eye(3))))
