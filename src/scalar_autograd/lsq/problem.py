"""``LeastSquaresProblem``: a flat parameter vector and residual blocks, solved by LM.

Example (bundle adjustment: cameras with an angle-axis rotation, a translation and a
focal length; 3-D points; one reprojection residual pair per observation)::

    import numpy as np
    import scalar_autograd as sa

    def reprojection(p, d):
        rx, ry, rz, tx, ty, tz, f, X, Y, Z = p      # 7 camera + 3 point parameters
        u, v = d                                    # the observed pixel
        theta = sa.sqrt(rx * rx + ry * ry + rz * rz + 1e-30)
        kx, ky, kz = rx / theta, ry / theta, rz / theta
        c, s = sa.cos(theta), sa.sin(theta)
        dot = (kx * X + ky * Y + kz * Z) * (1 - c)
        # Rodrigues: R P = P c + (k x P) s + k (k . P)(1 - c)
        px = X * c + (ky * Z - kz * Y) * s + kx * dot + tx
        py = Y * c + (kz * X - kx * Z) * s + ky * dot + ty
        pz = Z * c + (kx * Y - ky * X) * s + kz * dot + tz
        return [f * px / pz - u, f * py / pz - v]

    # x = [7 parameters per camera..., 3 per point...]
    cam_cols = camera_of_obs[:, None] * 7 + np.arange(7)
    pt_cols = 7 * n_cameras + point_of_obs[:, None] * 3 + np.arange(3)
    problem = sa.LeastSquaresProblem(x0)
    problem.add_block(reprojection, param_index=np.hstack([cam_cols, pt_cols]),
                      data=[u_observed, v_observed])
    result = problem.solve()        # compiled kernel, sparse normal equations
    print(result.cost, result.message)

``benchmarks/bench_lsq.py`` runs exactly this on 50 cameras, 10^4 points and 10^5
observations.

Doctest:
    >>> import numpy as np
    >>> import scalar_autograd as sa
    >>> t = np.linspace(0.0, 1.0, 30)
    >>> y = 3.0 * np.exp(-2.0 * t)
    >>> problem = sa.LeastSquaresProblem([1.0, 1.0])
    >>> _ = problem.add_block(lambda p, d: p[0] * sa.exp(-p[1] * d[0]) - d[1],
    ...                       param_index=np.tile([0, 1], (30, 1)), data=[t, y])
    >>> result = problem.solve()
    >>> result.success, np.round(result.x, 9).tolist()
    (True, [3.0, 2.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scalar_autograd.lsq.assembly import Assembler, KernelBlock
from scalar_autograd.lsq.blocks import BlockFn, ResidualBlock
from scalar_autograd.lsq.levenberg_marquardt import levenberg_marquardt
from scalar_autograd.lsq.options import validate_jacobian_mode, validate_options
from scalar_autograd.lsq.params import as_real_array, describe_constant_rows
from scalar_autograd.lsq.result import LeastSquaresResult

SPARSE_MIN_PARAMS = 200
"""``linear_solver="auto"`` uses the sparse path from this many parameters on ..."""
SPARSE_MAX_DENSITY = 0.05
"""... when the Jacobian has at most this fraction of non-zero entries (see
``choose_sparse``)."""


def choose_sparse(n: int, density: float) -> bool:
    """Whether ``linear_solver="auto"`` takes the sparse path.

    Measured with ``benchmarks/bench_lsq.py --only crossover`` (bundle-adjustment
    blocks, 10 parameters a row, one LM iteration, single-threaded BLAS): 74 params
    dense 0.38 ms / sparse 0.74 ms, 141 params 0.82 / 1.19, 298 params 3.5 / 1.6,
    642 params 24 / 2.9, 2470 params 1032 / 10. Dense wins below ~150 parameters (no
    CSR bookkeeping, one BLAS call), sparse from ~200 on, and the gap then grows as
    n^3 against roughly n; a dense Jacobian with more than 5% non-zeros stays dense.
    """
    return n >= SPARSE_MIN_PARAMS and density <= SPARSE_MAX_DENSITY


class LeastSquaresProblem:
    """A flat parameter vector ``x`` and the residual blocks that read it.

    Args:
        x0: the initial parameters, a 1-D array-like of finite floats.
        blocks: residual blocks to start with (more with :meth:`add_block`).

    Attributes:
        x: the current parameters; :meth:`solve` leaves the best point found here.

    Raises:
        TypeError: ``x0`` is a string, or holds anything but real numbers (complex
            numbers, strings, None; see :func:`~scalar_autograd.lsq.params.as_real_array`).
        ValueError: ``x0`` is not a non-empty 1-D array, or not finite.
    """

    def __init__(self, x0: Any, blocks: Sequence[ResidualBlock] = ()) -> None:
        x = as_real_array(x0, "x0")
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"x0 must be a non-empty 1-D array of parameters; got shape "
                             f"{x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("x0 must be finite; got nan or inf at index "
                             f"{int(np.argwhere(~np.isfinite(x))[0][0])}")
        self.x = x
        self.blocks: list[ResidualBlock] = []
        for b in blocks:
            self.add(b)

    @property
    def n_params(self) -> int:
        """n, the length of ``x``."""
        return int(self.x.size)

    @property
    def n_residuals(self) -> int:
        """m, the residuals of all blocks."""
        return sum(b.n_residuals for b in self.blocks)

    def add(self, block: ResidualBlock) -> ResidualBlock:
        """Add a block; its indices must be < ``n_params``."""
        if not isinstance(block, ResidualBlock):
            raise TypeError(f"block must be a ResidualBlock; got {type(block).__name__}")
        top = int(block.param_index.max())
        if top >= self.n_params:
            row = int(np.argwhere(block.param_index >= self.n_params)[0][0])
            raise ValueError(
                f"residual block {block.name!r}: param_index must be < n_params "
                f"({self.n_params}); row {row} is {block.param_index[row].tolist()}"
            )
        self.blocks.append(block)
        return block

    def add_block(self, fn: BlockFn, param_index: Any, data: Sequence[Any] | None = None,
                  *, name: str = "") -> ResidualBlock:
        """Create a :class:`ResidualBlock` and add it (see its arguments)."""
        return self.add(ResidualBlock(fn, param_index, data, name=name))

    def _kernel_blocks(self, jacobian: str) -> list[KernelBlock]:
        if not self.blocks:
            raise ValueError("the problem has no residual blocks; add one with add_block()")
        out = []
        offset = 0
        for b in self.blocks:
            mb = b.n_outputs
            function = b.compile() if jacobian == "compiled" else b.graph_function()
            rows = offset + np.arange(b.n_rows * mb, dtype=np.int64).reshape(b.n_rows, mb)
            out.append(KernelBlock(function, rows, b.param_index, b.data))
            offset += b.n_rows * mb
        return out

    def assembler(self, jacobian: str = "auto", sparse: bool | None = None) -> Assembler:
        """The residual/Jacobian evaluator over all blocks (compiled or graph)."""
        mode = _resolve_mode(validate_jacobian_mode(jacobian))
        blocks = self._kernel_blocks(mode)
        m, n = self.n_residuals, self.n_params
        if sparse is None:
            nnz = sum(b.rows.size * b.param_index.shape[1] for b in blocks)
            sparse = choose_sparse(n, nnz / max(1, m * n))
        return Assembler(blocks, m, n, sparse)

    def residuals(self, x: Any = None) -> np.ndarray:
        """The residual vector at ``x`` (default: ``self.x``).

        Raises:
            TypeError: ``x`` holds anything but real numbers.
            ValueError: ``x`` is not a 1-D array of ``n_params`` numbers.
        """
        if x is None:
            xv = self.x
        else:
            xv = as_real_array(x, "x")
            if xv.shape != (self.n_params,):
                raise ValueError(f"x must be a 1-D array of n_params = {self.n_params} "
                                 f"parameters; got shape {xv.shape}")
        return self.assembler(sparse=False).residuals(xv)

    def solve(
        self,
        *,
        jacobian: str = "auto",
        linear_solver: str = "auto",
        **options: Any,
    ) -> LeastSquaresResult:
        """Minimise the cost from ``self.x`` by Levenberg-Marquardt; update ``self.x``.

        Args:
            jacobian: ``"compiled"`` (each block compiled once, all rows in one native
                call; a block whose ``fn`` branches in Python on its slots or data is
                refused with a ``ValueError`` naming the block and line, see
                :class:`ResidualBlock`), ``"graph"`` (``fn`` re-run and ``backward()``
                per row and output; slow, for checking) or ``"auto"`` (compiled when
                the JIT is available).
            linear_solver: ``"auto"`` (sparse when :func:`choose_sparse` says so, with
                a Schur-complement elimination when the pattern has one, see
                :mod:`scalar_autograd.lsq.schur`),
                ``"dense"``, ``"sparse_cholesky"`` or ``"sparse_lsmr"``.
            **options: the options of :func:`scalar_autograd.nonlinear_least_squares`
                (``max_iterations``, tolerances, ``loss``, ``verbose``, ...).

        Returns:
            A :class:`LeastSquaresResult`.
        """
        opts = validate_options(linear_solver=linear_solver, **options)
        sparse: bool | None
        if linear_solver == "dense":
            sparse = False
        elif linear_solver in ("sparse_cholesky", "sparse_lsmr"):
            sparse = True
        else:
            sparse = None
        asm = self.assembler(jacobian, sparse)
        if opts.verbose:
            constant = np.flatnonzero(~asm.rows_with_params).tolist()
            for b in self.blocks:
                constant_outputs = b.constant_outputs()
                if constant_outputs:
                    print(f"note: block {b.name!r} outputs {constant_outputs} depend on no "
                          f"parameter")
            if constant:
                print(describe_constant_rows(constant))
            unused = int(np.count_nonzero(~asm.columns_used))
            if unused:
                print(f"note: {unused} parameter(s) are used by no residual; they stay put")
            print(f"{asm.m} residuals, {asm.n} parameters, "
                  f"{'sparse' if asm.sparse else 'dense'} Jacobian")
        # "auto" on a sparse problem eliminates small independent parameter blocks
        # (bundle adjustment's points) by a Schur complement when the pattern has them
        # and it pays (lsq/schur.py); "sparse_cholesky" keeps the generic factorisation.
        schur = asm.schur_complement() if linear_solver == "auto" else None
        if opts.verbose and schur is not None:
            print(f"Schur complement: eliminating {schur.eliminated.size} parameters in "
                  f"blocks of {schur.size}, reduced dense system of {schur.reduced.size}")
        result = levenberg_marquardt(asm.residuals_and_jacobian, asm.residuals, self.x, opts,
                                     schur=schur)
        self.x = result.x.copy()
        return result


def _resolve_mode(mode: str) -> str:
    if mode == "graph":
        return mode
    from scalar_autograd.lsq.solve import jit_compile_available

    if jit_compile_available():
        return "compiled"
    if mode == "compiled":
        raise RuntimeError('jacobian="compiled" needs the JIT (scalar_autograd.runtime.compile), '
                           'which is not available; use jacobian="graph"')
    return "graph"
