"""Assembly fast paths (lsq/assembly.py, dense and CSR) and the narrow-J products of the LM model.

Every layout is checked against a reference that scatters row by row in plain Python:
the identity layout (the kernel output is J), slabs (consecutive rows, one shared column
list per block) and the layouts that must fall back to the general scatter (shuffled
rows, a permuted or repeated column, rows that differ, blocks sharing rows).
"""

from __future__ import annotations

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.lsq.assembly import Assembler, KernelBlock
from scalar_autograd.lsq.levenberg_marquardt import (
    BLAS_CHUNK,
    _Model,
    _normal_products,
    _squared_norm_of_product,
)
from scalar_autograd.lsq.options import SolverOptions

PATHS = ["graph", "compiled"]


class TwoOutputs:
    """A batch function in numpy: params (a, b, c), data t; outputs
    ``[a t + b t^2 + c, a b - c t]``."""

    n_outputs = 2

    def batch_values(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        a, b, c = X.T
        t = U[:, 0]
        return np.stack([a * t + b * t**2 + c, a * b - c * t], axis=1)

    def batch_jacobian(self, X: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b, c = X.T
        t = U[:, 0]
        one = np.ones_like(t)
        J = np.stack([np.stack([t, t**2, one], axis=1),
                      np.stack([b, a, -t], axis=1)], axis=1)
        return self.batch_values(X, U), J


def reference(blocks: list[KernelBlock], m: int, n: int,
              x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """r and J scattered row by row (repeated (row, column) entries summed)."""
    r = np.full(m, np.nan)
    J = np.zeros((m, n))
    for b in blocks:
        X = np.array([[x[c] for c in row] for row in b.param_index])
        V, D = b.function.batch_jacobian(X, b.data)
        for i in range(b.rows.shape[0]):
            for j in range(b.rows.shape[1]):
                r[b.rows[i, j]] = V[i, j]
                for s, c in enumerate(b.param_index[i]):
                    J[b.rows[i, j], c] += D[i, j, s]
    return r, J


def block(rows: np.ndarray, param_index: np.ndarray, seed: int = 0) -> KernelBlock:
    t = np.random.default_rng(seed).uniform(-1.0, 1.0, (rows.shape[0], 1))
    return KernelBlock(TwoOutputs(), rows.astype(np.int64), param_index.astype(np.int64), t)


def check(asm: Assembler, blocks: list[KernelBlock], x: np.ndarray) -> None:
    r_ref, J_ref = reference(blocks, asm.m, asm.n, x)
    r, J = asm.residuals_and_jacobian(x)
    np.testing.assert_array_equal(r, r_ref)
    np.testing.assert_array_equal(J, J_ref)
    np.testing.assert_array_equal(asm.residuals(x), r_ref)


X = np.array([0.7, -1.3, 2.1, 0.4, -0.6])


def test_identity_layout_returns_the_kernel_output_as_j() -> None:
    N = 7
    b = block(np.arange(2 * N).reshape(N, 2), np.tile([0, 1, 2], (N, 1)))
    asm = Assembler([b], m=2 * N, n=3, sparse=False)
    assert asm._identity and asm._slabs is not None
    check(asm, [b], X[:3])
    assert asm.columns_used.all() and asm.rows_with_params.all()


def test_permuted_columns_and_unused_parameters_take_the_slab_path() -> None:
    N = 5
    b = block(np.arange(2 * N).reshape(N, 2), np.tile([4, 0, 2], (N, 1)))
    asm = Assembler([b], m=2 * N, n=5, sparse=False)
    assert asm._slabs is not None and not asm._identity
    check(asm, [b], X)
    assert asm.columns_used.tolist() == [True, False, True, False, True]


def test_several_blocks_as_slabs() -> None:
    b1 = block(np.arange(8).reshape(4, 2), np.tile([0, 1, 2], (4, 1)), seed=1)
    b2 = block(8 + np.arange(6).reshape(3, 2), np.tile([3, 4, 0], (3, 1)), seed=2)
    asm = Assembler([b2, b1], m=14, n=5, sparse=False)      # listed out of row order
    assert asm._slabs is not None and not asm._identity
    check(asm, [b2, b1], X)


@pytest.mark.parametrize("layout", ["shuffled rows", "rows differ", "repeated column",
                                    "blocks share rows"])
def test_layouts_that_must_not_take_the_fast_path(layout: str) -> None:
    N = 6
    rows = np.arange(2 * N).reshape(N, 2)
    index = np.tile([0, 1, 2], (N, 1))
    if layout == "shuffled rows":
        blocks = [block(np.random.default_rng(3).permutation(2 * N).reshape(N, 2), index)]
    elif layout == "rows differ":
        index[N // 2:] = [3, 1, 4]
        blocks = [block(rows, index)]
    elif layout == "repeated column":        # both slots read x[1]: the entries add up
        blocks = [block(rows, np.tile([1, 1, 2], (N, 1)))]
    else:
        blocks = [block(rows, index, seed=4), block(rows[:2], index[:2] + 2, seed=5)]
    asm = Assembler(blocks, m=2 * N, n=5, sparse=False)
    assert asm._slabs is None
    check(asm, blocks, X)


@pytest.mark.parametrize("path", PATHS)
def test_problem_with_one_block_matches_the_analytic_circle_jacobian(path: str) -> None:
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=40), rng.normal(size=40)
    problem = sa.LeastSquaresProblem([0.1, -0.2, 1.0])
    problem.add_block(lambda p, d: sa.sqrt((d[0] - p[0]) ** 2 + (d[1] - p[1]) ** 2) - p[2],
                      param_index=np.tile([0, 1, 2], (40, 1)), data=[xs, ys])
    asm = problem.assembler(path, sparse=False)
    assert asm._identity
    x = np.array([0.3, 0.5, 2.0])
    d = np.hypot(xs - x[0], ys - x[1])
    r, J = asm.residuals_and_jacobian(x)
    np.testing.assert_allclose(r, d - x[2], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(J, np.stack([(x[0] - xs) / d, (x[1] - ys) / d,
                                            -np.ones_like(d)], axis=1), rtol=1e-14)
    np.testing.assert_allclose(asm.residuals(x), d - x[2], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("path", PATHS)
def test_problem_with_a_permuted_block_matches_the_identity_one(path: str) -> None:
    rng = np.random.default_rng(1)
    t = rng.uniform(0.0, 2.0, 30)

    def decay(p, d):
        return p[0] * sa.exp(-p[1] * d[0]) - p[2]

    plain = sa.LeastSquaresProblem([0.0, 0.0, 0.0])
    plain.add_block(decay, param_index=np.tile([0, 1, 2], (30, 1)), data=[t])
    swapped = sa.LeastSquaresProblem([0.0, 0.0, 0.0])      # x = (rate, offset, amplitude)
    swapped.add_block(decay, param_index=np.tile([2, 0, 1], (30, 1)), data=[t])
    a_plain = plain.assembler(path, sparse=False)
    a_swapped = swapped.assembler(path, sparse=False)
    assert a_plain._identity and a_swapped._slabs is not None and not a_swapped._identity
    r1, J1 = a_plain.residuals_and_jacobian(np.array([1.5, 0.8, 0.2]))
    r2, J2 = a_swapped.residuals_and_jacobian(np.array([0.8, 0.2, 1.5]))
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(J1[:, [1, 2, 0]], J2)


# ---------------------------------------------------------------- narrow-J products
@pytest.mark.parametrize("m", [1, 7, BLAS_CHUNK // 3, BLAS_CHUNK // 3 + 1,
                               3 * (BLAS_CHUNK // 3) + 5])
def test_chunked_normal_products_match_numpy(m: int) -> None:
    rng = np.random.default_rng(m)
    J = rng.normal(size=(m, 3))
    f = rng.normal(size=m)
    h = rng.normal(size=3)
    A, g = _normal_products(J, f)
    np.testing.assert_allclose(A, np.einsum("ij,ik->jk", J, J), rtol=1e-12)
    np.testing.assert_allclose(g, np.einsum("ij,i->j", J, f), rtol=1e-12, atol=1e-12)
    assert np.array_equal(A, A.T)
    assert _squared_norm_of_product(J, h) == pytest.approx(float(np.sum((J @ h) ** 2)),
                                                           rel=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_model_finite_sees_a_nonfinite_entry_anywhere(bad: float) -> None:
    m = BLAS_CHUNK                            # several row chunks
    J = np.ones((m, 2))
    r = np.ones(m)
    assert _Model(r, J, SolverOptions()).finite()
    J[m - 3, 1] = bad
    assert not _Model(r, J, SolverOptions()).finite()


def test_model_finite_accepts_entries_whose_squares_overflow() -> None:
    J = np.array([[1e200, 1.0], [1.0, 2.0]])
    model = _Model(np.ones(2), J, SolverOptions())
    assert not np.isfinite(model.diag).all()
    assert model.finite()


@pytest.mark.parametrize("layout", ["one block in order", "two blocks in order",
                                    "blocks listed out of order", "unsorted columns",
                                    "shuffled rows", "repeated column", "blocks share rows"])
def test_sparse_layouts_match_the_row_by_row_reference(layout: str) -> None:
    N = 6
    rows = np.arange(2 * N).reshape(N, 2)
    index = np.tile([0, 2, 3], (N, 1))
    rng = np.random.default_rng(8)
    if layout == "one block in order":
        blocks = [block(rows, index)]
    elif layout == "two blocks in order":
        blocks = [block(rows[:2], index[:2], seed=1), block(rows[2:], index[2:] + 1, seed=2)]
    elif layout == "blocks listed out of order":
        blocks = [block(rows[2:], index[2:] + 1, seed=2), block(rows[:2], index[:2], seed=1)]
    elif layout == "unsorted columns":
        blocks = [block(rows, np.tile([3, 0, 1], (N, 1)))]
    elif layout == "shuffled rows":
        blocks = [block(rng.permutation(2 * N).reshape(N, 2), index)]
    elif layout == "repeated column":
        blocks = [block(rows, np.tile([1, 1, 2], (N, 1)))]
    else:
        blocks = [block(rows, index, seed=4), block(rows[:2], index[:2] + 1, seed=5)]
    asm = Assembler(blocks, m=2 * N, n=5, sparse=True)
    assert asm._positions_identity == (layout in ("one block in order",
                                                  "two blocks in order"))
    r_ref, J_ref = reference(blocks, asm.m, asm.n, X)
    r, J = asm.residuals_and_jacobian(X)
    np.testing.assert_array_equal(r, r_ref)
    np.testing.assert_array_equal(J.toarray(), J_ref)
    assert J.indptr.dtype == J.indices.dtype
    used = np.zeros(5, dtype=bool)
    used[np.concatenate([b.param_index.ravel() for b in blocks])] = True
    np.testing.assert_array_equal(asm.columns_used, used)
