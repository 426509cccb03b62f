"""Synthetic bundle-adjustment problems (pinhole cameras, angle-axis rotations).

Shared by the lsq tests and ``benchmarks/bench_lsq.py``. Camera parameters:
``rx, ry, rz`` (angle-axis), ``tx, ty, tz``, ``f``; points: ``X, Y, Z``. Residuals:
projected minus observed pixel, two per observation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import scalar_autograd as sa

CAMERA_PARAMS = 7


def reprojection(p: list[sa.Value], d: list[sa.Value]) -> list[sa.Value]:
    """Reprojection residuals of one observation (10 parameter slots, 2 data)."""
    rx, ry, rz, tx, ty, tz, f, X, Y, Z = p
    u, v = d
    theta = sa.sqrt(rx * rx + ry * ry + rz * rz + 1e-30)
    kx, ky, kz = rx / theta, ry / theta, rz / theta
    c, s = sa.cos(theta), sa.sin(theta)
    dot = (kx * X + ky * Y + kz * Z) * (1.0 - c)
    px = X * c + (ky * Z - kz * Y) * s + kx * dot + tx
    py = Y * c + (kz * X - kx * Z) * s + ky * dot + ty
    pz = Z * c + (kx * Y - ky * X) * s + kz * dot + tz
    return [f * px / pz - u, f * py / pz - v]


def rotate_numpy(r: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Rodrigues rotation of points ``P (N, 3)`` by angle-axis vectors ``r (N, 3)``."""
    theta = np.sqrt(np.sum(r * r, axis=1) + 1e-30)[:, None]
    k = r / theta
    c, s = np.cos(theta), np.sin(theta)
    dot = np.sum(k * P, axis=1, keepdims=True) * (1.0 - c)
    return P * c + np.cross(k, P) * s + k * dot


def project_numpy(x: np.ndarray, n_cameras: int, cam: np.ndarray, pt: np.ndarray
                  ) -> np.ndarray:
    cams = x[: n_cameras * CAMERA_PARAMS].reshape(n_cameras, CAMERA_PARAMS)[cam]
    pts = x[n_cameras * CAMERA_PARAMS:].reshape(-1, 3)[pt]
    P = rotate_numpy(cams[:, :3], pts) + cams[:, 3:6]
    return cams[:, 6:7] * P[:, :2] / P[:, 2:3]


@dataclass
class Bundle:
    n_cameras: int
    n_points: int
    camera_of_obs: np.ndarray
    point_of_obs: np.ndarray
    observed: np.ndarray        # (n_obs, 2)
    x_true: np.ndarray
    x0: np.ndarray

    @property
    def param_index(self) -> np.ndarray:
        cam_cols = self.camera_of_obs[:, None] * CAMERA_PARAMS + np.arange(CAMERA_PARAMS)
        pt_cols = (self.n_cameras * CAMERA_PARAMS + self.point_of_obs[:, None] * 3
                   + np.arange(3))
        return np.hstack([cam_cols, pt_cols])

    def numpy_residuals(self, x: np.ndarray) -> np.ndarray:
        return (project_numpy(x, self.n_cameras, self.camera_of_obs, self.point_of_obs)
                - self.observed).ravel()

    def problem(self) -> sa.LeastSquaresProblem:
        problem = sa.LeastSquaresProblem(self.x0)
        problem.add_block(reprojection, self.param_index,
                          data=[self.observed[:, 0], self.observed[:, 1]], name="reprojection")
        return problem

    def sparsity(self):  # -> scipy.sparse matrix
        import scipy.sparse as sp

        n_obs = self.camera_of_obs.size
        idx = self.param_index
        rows = np.repeat(np.arange(2 * n_obs), idx.shape[1])
        cols = np.repeat(idx, 2, axis=0).ravel()
        return sp.csr_matrix((np.ones(rows.size), (rows, cols)),
                             shape=(2 * n_obs, self.x0.size))


def make_bundle(n_cameras: int, n_points: int, n_obs: int, seed: int = 0,
                pixel_noise: float = 0.5, perturbation: float = 0.02) -> Bundle:
    """Cameras on a ring looking at a point cloud; every observation in front of its camera.

    The start ``x0`` perturbs the true cameras and points (rotation by ``perturbation``
    radians, translations and points by ``10 * perturbation`` units, focal lengths by
    ``perturbation`` relative).
    """
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n_points, 3)) * np.array([2.0, 2.0, 1.0])
    cams = np.zeros((n_cameras, CAMERA_PARAMS))
    for i in range(n_cameras):
        yaw = 2 * np.pi * i / n_cameras
        cams[i, :3] = [0.0, yaw, 0.0] + rng.normal(scale=0.05, size=3)
        # camera centre on a circle of radius 12, looking at the origin
        cams[i, 3:6] = [0.0, 0.0, 12.0] + rng.normal(scale=0.3, size=3)
        cams[i, 6] = 800.0 + rng.normal(scale=20.0)
    obs_points = np.arange(n_obs) % n_points
    rng.shuffle(obs_points)
    obs_cams = rng.integers(0, n_cameras, size=n_obs)
    x_true = np.concatenate([cams.ravel(), points.ravel()])
    clean = project_numpy(x_true, n_cameras, obs_cams, obs_points)
    observed = clean + rng.normal(scale=pixel_noise, size=clean.shape)
    x0 = x_true.copy()
    c0 = x0[: n_cameras * CAMERA_PARAMS].reshape(n_cameras, CAMERA_PARAMS)
    c0[:, :3] += rng.normal(scale=perturbation, size=(n_cameras, 3))
    c0[:, 3:6] += rng.normal(scale=10 * perturbation, size=(n_cameras, 3))
    c0[:, 6] *= 1.0 + rng.normal(scale=perturbation, size=n_cameras)
    x0[n_cameras * CAMERA_PARAMS:] += rng.normal(scale=10 * perturbation, size=3 * n_points)
    return Bundle(n_cameras, n_points, obs_cams, obs_points, observed, x_true, x0)
