"""``LeastSquaresProblem``: the least-squares front end: parameters, residuals, one solve.

The residuals come either from residual blocks over a flat parameter vector
(:meth:`LeastSquaresProblem.add_block`, Ceres' residual blocks) or from a Python
``residual_fn`` of ``Value`` params (:meth:`LeastSquaresProblem.from_residuals`, which
:func:`~scalar_autograd.nonlinear_least_squares` wraps). Both are solved by the same
:meth:`LeastSquaresProblem.solve`: the options are validated once, one evaluator of r
and J is built (compiled kernels assembled by :mod:`~scalar_autograd.lsq.assembly`, or
the graph path), the Jacobian is dense or sparse by the one rule of
:func:`~scalar_autograd.lsq.assembly.sparse_for`, a Schur elimination is looked for on
a sparse pattern (``linear_solver="auto"`` or ``"schur"``), and
:func:`~scalar_autograd.lsq.levenberg_marquardt.levenberg_marquardt` runs.

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

The same fit from a ``residual_fn``, with the Schur elimination asked for (here there
is nothing to eliminate, so the generic sparse Cholesky solves the steps):
    >>> a, k = sa.Value(1.0), sa.Value(1.0)
    >>> problem = sa.LeastSquaresProblem.from_residuals(
    ...     [a, k], lambda p: [p[0] * sa.exp(-p[1] * ti) - yi for ti, yi in zip(t, y)])
    >>> result = problem.solve(linear_solver="schur")
    >>> result.success, round(a.data, 9), round(k.data, 9)
    (True, 3.0, 2.0)
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from scalar_autograd.lsq import native_lm
from scalar_autograd.lsq.assembly import Assembler, KernelBlock, sparse_for
from scalar_autograd.lsq.blocks import BlockFn, ResidualBlock, _check_data
from scalar_autograd.lsq.compiled_oracle import CompiledOracle, ResidualFn
from scalar_autograd.lsq.graph_oracle import GraphOracle
from scalar_autograd.lsq.levenberg_marquardt import levenberg_marquardt
from scalar_autograd.lsq.options import (
    Bounds,
    SolverOptions,
    Weights,
    check_bounded_options,
    check_feasible,
    validate_bounds,
    validate_jacobian_mode,
    validate_options,
    validate_sigma,
)
from scalar_autograd.lsq.params import describe_constant_rows
from scalar_autograd.lsq.result import LeastSquaresResult
from scalar_autograd.lsq.trf import trust_region_reflective
from scalar_autograd.manifolds import Manifold, TangentSpace, block_indices, resolve_blocks
from scalar_autograd.runtime.jit import MAX_SPECIALIZATIONS
from scalar_autograd.validation import (
    check_bool,
    check_params,
    check_positive_int,
    check_real_array,
)
from scalar_autograd.value import Value

RJ = Callable[[np.ndarray], tuple[np.ndarray, Any]]


class Evaluator(Protocol):
    """What :meth:`LeastSquaresProblem.solve` runs Levenberg-Marquardt on: an
    :class:`~scalar_autograd.lsq.assembly.Assembler` (residual blocks), a
    :class:`~scalar_autograd.lsq.compiled_oracle.CompiledOracle` or a
    :class:`~scalar_autograd.lsq.graph_oracle.GraphOracle` (a ``residual_fn``)."""

    @property
    def sparse(self) -> bool:
        """Whether the Jacobian is CSR."""

    @property
    def constant_rows(self) -> list[int]:
        """Residuals that depend on no parameter (after the first Jacobian)."""

    @property
    def columns_used(self) -> np.ndarray | None:
        """``(n,)`` bool: the parameters some residual reads; None when not known."""

    def residuals(self, x: np.ndarray) -> np.ndarray:
        """The residual vector at ``x``."""

    def residuals_and_jacobian(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        """The residuals and the Jacobian (dense or CSR) at ``x``."""

    def schur_complement(self) -> Any:
        """A :class:`~scalar_autograd.lsq.schur.SchurComplement` for the sparse
        pattern, or None."""


class LeastSquaresProblem:
    """A flat parameter vector ``x`` and the residuals that read it.

    Build one from residual blocks (``LeastSquaresProblem(x0)`` then :meth:`add_block`)
    or from a ``residual_fn`` of Values (:meth:`from_residuals`); solve it with
    :meth:`solve`.

    Args:
        x0: the initial parameters, a 1-D array-like of finite floats.
        blocks: residual blocks to start with (more with :meth:`add_block`).

    Attributes:
        x: the current parameters; :meth:`solve` leaves the best point found here.
        blocks: the residual blocks (empty for a problem made by :meth:`from_residuals`).
        params: the ``Value`` params of a problem made by :meth:`from_residuals` (their
            ``data`` follows ``x`` after every solve), else None.

    Raises:
        TypeError: ``x0`` is a string, or holds anything but real numbers (complex
            numbers, strings, None; see :func:`~scalar_autograd.validation.check_real_array`).
        ValueError: ``x0`` is not a non-empty 1-D array, or not finite.
    """

    def __init__(self, x0: Any, blocks: Sequence[ResidualBlock] = ()) -> None:
        x = check_real_array(x0, "x0")
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"x0 must be a non-empty 1-D array of parameters; got shape "
                             f"{x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("x0 must be finite; got nan or inf at index "
                             f"{int(np.argwhere(~np.isfinite(x))[0][0])}")
        self.x = x
        self.blocks: list[ResidualBlock] = []
        self._function: _ResidualFunction | None = None
        self._manifolds: list[tuple[np.ndarray, Manifold]] = []
        self._space: TangentSpace | None = None
        # compiled (or graph) evaluators of the blocks, by (mode, Jacobian kind);
        # add() empties it
        self._evaluators: dict[tuple[str, bool | None], Evaluator] = {}
        for b in blocks:
            self.add(b)

    @classmethod
    def from_residuals(
        cls,
        params: Sequence[Value],
        residual_fn: Callable[[list[Value]], Sequence[Value]],
        *,
        inputs: Sequence[Value] | None = None,
        max_specializations: int = MAX_SPECIALIZATIONS,
    ) -> LeastSquaresProblem:
        """The problem of a Python ``residual_fn`` of the ``params``.

        ``residual_fn(params)`` returns the residuals as a sequence of ``Value``; ``x``
        starts at the params' ``data``. Nothing is traced or compiled here: that happens
        in the first :meth:`solve`, after its options are checked; later solves reuse
        that trace and its compiled kernels (``jacobian="compiled"``), so every number
        ``residual_fn`` reads other than the params is frozen at the first solve unless
        it is one of the ``inputs``. After every solve the params' ``data`` holds ``x``,
        the best point found (whatever the status); a solve that raises leaves them
        where it started.

        Args:
            params: the leaf Values to fit (distinct, finite).
            residual_fn: ``params -> [r_0, ..., r_{m-1}]``.
            inputs: leaf Values ``residual_fn`` reads by closure whose ``.data`` you
                change between solves (a target, a measurement): they are traced as
                runtime inputs of the compiled kernels, and every solve reads their
                current ``.data`` without tracing again. Branches on them are guarded
                like branches on the params.
            max_specializations: ``jacobian="compiled"``: the branch patterns of
                ``residual_fn`` traced and compiled before
                ``sa.SpecializationLimitError`` (which names the branch sites); a
                positive int. Unused by ``"graph"``.

        Raises:
            TypeError: for params or inputs that are not Values, a ``residual_fn``
                that is not callable, or a ``max_specializations`` that is not an int.
            ValueError: for empty, repeated, computed or non-finite params, repeated
                or computed inputs, an input that is also a param, or a
                ``max_specializations`` below 1.

        Example:
            >>> import scalar_autograd as sa
            >>> a = sa.Value(3.0)
            >>> problem = LeastSquaresProblem.from_residuals([a], lambda p: [p[0] - 1.0])
            >>> problem.solve().success, a.data, problem.x.tolist()
            (True, 1.0, [1.0])

            A target read as an input: the second solve runs on the first trace.

            >>> target = sa.Value(2.0)
            >>> problem = LeastSquaresProblem.from_residuals(
            ...     [a], lambda p: [p[0] * p[0] - target], inputs=[target])
            >>> round(float(problem.solve().x[0]), 12)
            1.414213562373
            >>> target.data = 9.0
            >>> round(float(problem.solve().x[0]), 12)
            3.0
        """
        plist = check_params(params, requires_grad=False, finite=True)
        if not callable(residual_fn):
            raise TypeError(f"residual_fn must be callable; got {type(residual_fn).__name__}")
        ulist = check_inputs(inputs, plist)
        limit = check_positive_int(max_specializations, "max_specializations")
        problem = cls([p.data for p in plist])
        problem._function = _ResidualFunction(plist, residual_fn, limit, ulist)
        return problem

    @property
    def inputs(self) -> list[Value]:
        """The runtime inputs of a problem made by :meth:`from_residuals` (else [])."""
        return [] if self._function is None else list(self._function.inputs)

    @property
    def params(self) -> list[Value] | None:
        """The params of a problem made by :meth:`from_residuals`, else None."""
        return None if self._function is None else self._function.params

    @property
    def n_params(self) -> int:
        """n, the length of ``x``."""
        return int(self.x.size)

    @property
    def n_residuals(self) -> int:
        """m, the residuals of all blocks (or of ``residual_fn`` at ``x``)."""
        if self._function is not None:
            return int(self.residuals().size)
        return sum(b.n_residuals for b in self.blocks)

    def add(self, block: ResidualBlock) -> ResidualBlock:
        """Add a block; its indices must be < ``n_params``.

        Raises:
            ValueError: the problem was made by :meth:`from_residuals`: its residuals
                are ``residual_fn``'s.
        """
        if not isinstance(block, ResidualBlock):
            raise TypeError(f"block must be a ResidualBlock; got {type(block).__name__}")
        if self._function is not None:
            raise ValueError("a problem made by from_residuals() has residual_fn's "
                             "residuals only; return the block's residuals from "
                             "residual_fn, or build the problem from blocks alone")
        top = int(block.param_index.max())
        if top >= self.n_params:
            row = int(np.argwhere(block.param_index >= self.n_params)[0][0])
            raise ValueError(
                f"residual block {block.name!r}: param_index must be < n_params "
                f"({self.n_params}); row {row} is {block.param_index[row].tolist()}"
            )
        self.blocks.append(block)
        self._evaluators.clear()        # the blocks changed: compile again
        return block

    def add_block(self, fn: BlockFn, param_index: Any, data: Sequence[Any] | None = None,
                  *, name: str = "") -> ResidualBlock:
        """Create a :class:`ResidualBlock` and add it (see its arguments)."""
        return self.add(ResidualBlock(fn, param_index, data, name=name))

    def set_manifold(self, block: Any, manifold: Manifold | None) -> None:
        """Put the parameter block ``block`` on ``manifold`` (Ceres' ``SetManifold``).

        The solver then moves the block by ``manifold.plus`` and works in its tangent
        space (see :mod:`scalar_autograd.manifolds` and
        :mod:`scalar_autograd.lsq.levenberg_marquardt`). Setting a block again replaces
        its manifold; ``manifold=None`` takes it off (its parameters are Euclidean
        again); for many blocks, :meth:`set_manifolds` sets them all at once (each
        call here checks the whole layout again). The start of every solve must be a
        point of each manifold (a unit quaternion, a unit vector on a sphere).
        Manifolds cannot be combined with ``bounds`` (a ``ValueError`` at
        :meth:`solve`).

        Args:
            block: the block's parameters: a ``slice`` or ``range`` of ``x``, a
                sequence of int indices, or (for a problem made by
                :meth:`from_residuals`) a sequence of its params (``Value`` objects);
                as many as ``manifold.ambient_size``, none in another manifold's block.
            manifold: a :class:`~scalar_autograd.manifolds.Manifold`
                (``sa.QuaternionManifold()``, ``sa.SphereManifold(3)``, ...), or None.

        Raises:
            TypeError: a block or manifold of the wrong kind.
            ValueError: indices out of range or repeated, a block of another size than
                the manifold's ambient size, a parameter already in another block, or
                (for None) a block that has no manifold.

        Example (a unit vector fitted to directions: the mean direction):
            >>> import numpy as np
            >>> import scalar_autograd as sa
            >>> dirs = np.array([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0], [1.0, 0.0, 0.2]])
            >>> problem = sa.LeastSquaresProblem([1.0, 0.0, 0.0])
            >>> _ = problem.add_block(lambda p, d: [p[i] - d[i] for i in range(3)],
            ...                       param_index=np.tile([0, 1, 2], (3, 1)), data=list(dirs.T))
            >>> problem.set_manifold(slice(0, 3), sa.SphereManifold(3))
            >>> x = problem.solve().x
            >>> mean = dirs.mean(axis=0)
            >>> bool(np.allclose(x, mean / np.linalg.norm(mean), atol=1e-12))
            True
            >>> round(float(np.linalg.norm(x)), 15)
            1.0
        """
        params = self._function.params if self._function is not None else None
        indices = block_indices(block, self.n_params, params, "set_manifold")
        kept = [(idx, m) for idx, m in self._manifolds
                if not np.array_equal(np.sort(idx), np.sort(indices))]
        if manifold is None:
            if len(kept) == len(self._manifolds):
                raise ValueError(f"set_manifold(block, None): block {indices.tolist()!r:.80} "
                                 f"has no manifold to take off")
            self._set_manifolds(kept)
            return
        if not isinstance(manifold, Manifold):
            raise TypeError(f"manifold must be a Manifold (sa.QuaternionManifold(), ...) or "
                            f"None; got {type(manifold).__name__} {manifold!r:.40}")
        self._set_manifolds([*kept, (indices, manifold)])

    def set_manifolds(self, manifolds: Any) -> None:
        """Replace every manifold by ``manifolds``: ``[(block, manifold), ...]`` (each
        pair as :meth:`set_manifold`'s arguments), or None / ``[]`` for none.

        Example:
            >>> import scalar_autograd as sa
            >>> problem = sa.LeastSquaresProblem([1.0, 0.0, 0.0, 0.0, 5.0])
            >>> problem.set_manifolds([(slice(0, 4), sa.QuaternionManifold())])
            >>> [(idx.tolist(), m) for idx, m in problem.manifolds]
            [([0, 1, 2, 3], QuaternionManifold())]
        """
        if manifolds is None:
            self._set_manifolds([])
            return
        params = self._function.params if self._function is not None else None
        self._set_manifolds(resolve_blocks(manifolds, self.n_params, params))

    def _set_manifolds(self, blocks: list[tuple[np.ndarray, Manifold]]) -> None:
        space = TangentSpace(self.n_params, blocks) if blocks else None   # checks overlap
        self._manifolds = blocks
        self._space = space

    @property
    def manifolds(self) -> list[tuple[np.ndarray, Manifold]]:
        """The ``(indices, manifold)`` of every block on a manifold."""
        return [(idx.copy(), m) for idx, m in self._manifolds]

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

    def _evaluator(self, mode: str, linear_solver: str) -> Evaluator:
        """The evaluator :meth:`solve` uses for a validated ``jacobian`` mode and linear
        solver: built (compiled, or a ``residual_fn`` traced at the params' current
        ``data``) on first use and kept until the blocks change."""
        if self._function is not None:
            return self._function.evaluator(mode, linear_solver)
        key = ("graph" if mode == "graph" else "compiled", sparse_for(linear_solver))
        evaluator = self._evaluators.get(key)
        if evaluator is None:
            evaluator = self._evaluators[key] = self._new_evaluator(mode, linear_solver)
        return evaluator

    def _new_evaluator(self, mode: str, linear_solver: str) -> Evaluator:
        """A new evaluator (nothing cached)."""
        if self._function is not None:
            return self._function.new_evaluator(mode, linear_solver)
        blocks = self._kernel_blocks("graph" if mode == "graph" else "compiled")
        return Assembler.of(blocks, self.n_residuals, self.n_params, sparse_for(linear_solver))

    def assembler(self, jacobian: str = "auto", sparse: bool | None = None) -> Evaluator:
        """The residual/Jacobian evaluator (compiled or graph) the solver would use.

        Args:
            jacobian: ``"auto"``, ``"compiled"`` or ``"graph"`` (see :meth:`solve`).
            sparse: a CSR (True) or dense (False) Jacobian; None chooses by size and
                density (:func:`~scalar_autograd.lsq.assembly.choose_sparse`).

        Returns:
            An :class:`~scalar_autograd.lsq.assembly.Assembler` for residual blocks; a
            :class:`~scalar_autograd.lsq.compiled_oracle.CompiledOracle` or
            :class:`~scalar_autograd.lsq.graph_oracle.GraphOracle` (always dense) for a
            ``residual_fn``, traced at the params' current ``data``.
        """
        mode = validate_jacobian_mode(jacobian)
        linear_solver = "auto" if sparse is None else \
            ("sparse_cholesky" if sparse else "dense")
        return self._new_evaluator(mode, linear_solver)

    def residuals(self, x: Any = None) -> np.ndarray:
        """The residual vector at ``x`` (default: ``self.x``).

        Raises:
            TypeError: ``x`` holds anything but real numbers.
            ValueError: ``x`` is not a 1-D array of ``n_params`` numbers.
        """
        if x is None:
            xv = self.x
        else:
            xv = check_real_array(x, "x")
            if xv.shape != (self.n_params,):
                raise ValueError(f"x must be a 1-D array of n_params = {self.n_params} "
                                 f"parameters; got shape {xv.shape}")
        if self._function is not None:
            return self._function.residuals(xv)
        return self.assembler(sparse=False).residuals(xv)

    def solve(self, x0: Any = None, data: Any = None, *, jacobian: str = "auto",
              bounds: Any = None, sigma: Any = None, absolute_sigma: bool = False,
              **options: Any) -> LeastSquaresResult:
        """Minimise ``0.5 * sum(rho(r_i**2))`` from ``x0`` (default ``self.x``), within
        ``bounds`` if given.

        Without bounds the solver is Levenberg-Marquardt (the native loop of
        :mod:`~scalar_autograd.lsq.native_lm` when the problem is small and dense and
        the options allow, else :mod:`~scalar_autograd.lsq.levenberg_marquardt`); with
        finite bounds it is scipy's Trust Region Reflective method
        (:mod:`~scalar_autograd.lsq.trf`). Every argument is checked before any work
        (tracing, compiling) is done. Afterwards ``self.x`` (and, for
        :meth:`from_residuals`, every param's ``data``) holds the solution: the best
        point found, whatever the status.

        With blocks on manifolds (:meth:`set_manifold`), the numpy Levenberg-Marquardt
        loop runs in their tangent space (never the native driver or the Schur
        elimination): the result's ``jacobian`` (so :meth:`~LeastSquaresResult.covariance`)
        and ``grad_norm`` are the tangent ones, and ``x`` stays on the manifolds.

        The kernels are compiled (a ``residual_fn`` traced) at the first solve and kept:
        a later solve, from another ``x0``, with new block ``data`` or with the inputs of
        :meth:`from_residuals` changed, runs on them without tracing again. Adding a
        block compiles anew at the next solve.

        Args:
            x0: the start, ``(n_params,)`` finite numbers; None: ``self.x`` (the last
                solution, or the start the problem was made with).
            data: new data for the residual blocks, kept for later solves (each
                block's ``data`` is replaced, as if it had been added with it): a list
                with one entry per block (None keeps a block's data), or a mapping from
                a block (its index, its name or the block itself) to its data. Each
                entry is a sequence of 1-D arrays like :meth:`add_block`'s ``data``,
                with the block's number of data arguments and rows. Only for problems
                of residual blocks (a :meth:`from_residuals` problem reads new numbers
                through its ``inputs``).
            bounds: ``(lower, upper)``: each a scalar or ``(n_params,)`` array;
                ``-inf``/``inf`` for no bound; or a ``scipy.optimize.Bounds``. scipy's
                rules: every lower bound strictly below its upper bound, and ``x0``
                within them (on a bound is allowed; it is moved strictly inside); a
                start outside raises, as scipy's ``least_squares`` does. None or all
                infinite: unbounded. The result's ``active_mask`` tells which bounds
                hold at the solution.
            sigma: the residuals' standard deviations (a positive scalar or
                ``(m,)``) or their ``(m, m)`` covariance matrix: the solver minimises
                the weighted residuals ``r_i / sigma_i`` (``L^-1 r`` for
                ``sigma = L L^T``), as scipy's ``curve_fit``; the result's cost,
                residuals and Jacobian are the weighted ones.
            absolute_sigma: whether ``sigma`` is absolute: the result's
                :meth:`~LeastSquaresResult.covariance` is then ``pinv(J^T J)`` without
                the residual-variance factor (curve_fit's ``absolute_sigma``); it is
                the result's default for ``covariance()`` and ``standard_errors()``.
            jacobian: ``"compiled"``: compiled kernels, all rows of a kernel in one
                native call. A residual block is compiled once for all its rows, so a
                block whose ``fn`` branches in Python on its slots or data is refused
                with a ``ValueError`` naming the block and line (see
                :class:`ResidualBlock`). A ``residual_fn`` is traced, its structurally
                identical residuals grouped and each group compiled; Python branches on
                the params (``if``, ``while``, ``and``/``or``, builtin ``min``/``max``
                of a ``Value``) are guarded as in ``sa.jit``: their outcomes are checked
                by one compiled function at every point, and ``residual_fn`` is traced
                again where one changes (see ``max_specializations`` of
                :meth:`from_residuals`; ``sa.where`` keeps a branch inside one compiled
                function). ``float()``, ``int()`` and ``math.*`` of a value depending
                on the params raise ``sa.ConcretizationError``; a branch on ``p.data``
                (a plain float) cannot be seen and stays frozen. ``"graph"``: re-run
                ``fn`` (per row and output) or ``residual_fn`` and ``backward()`` per
                residual at every accepted point (slow; works for any function; the
                Jacobian of a ``residual_fn`` is then dense). ``"auto"``: compiled.
            **options: the solver options, each checked up front (TypeError for the
                wrong kind of thing, ValueError for a wrong value, naming the option):

                * ``max_iterations`` (100): most trial steps (linear solves), accepted
                  or not.
                * ``cost_tolerance`` (1e-10): stop when an accepted step's actual and
                  predicted relative cost reductions are both at most this (scipy's
                  ``ftol``).
                * ``param_tolerance`` (1e-10): stop when the step is at most
                  ``xtol * (xtol + |x|)`` in the norm scaled by the Jacobian's column
                  norms (scipy's ``xtol``, MINPACK's scaled form).
                * ``gradient_tolerance`` (1e-10): stop when the largest cosine between
                  the residual vector and a Jacobian column is at most this (scipy's
                  ``gtol`` for ``method="lm"``).
                * ``initial_damping`` (None): the first ``mu``, relative to the
                  Marquardt diagonal. None starts as MINPACK does: an undamped
                  Gauss-Newton step, limited to the initial trust radius
                  ``100 * |sqrt(D) x0|`` (Moré 1978).
                * ``loss`` (``"linear"``): ``"linear"``, ``"huber"``, ``"soft_l1"``,
                  ``"cauchy"`` or ``"arctan"`` (scipy's robust losses, applied to
                  ``z = (r / loss_scale)**2``); ``loss_scale`` (1.0): the soft margin
                  between inlier and outlier residuals.
                * ``linear_solver`` (``"auto"``): ``"dense"`` (Cholesky of the dense
                  normal equations), ``"sparse_cholesky"`` or ``"sparse_lsmr"`` (a CSR
                  Jacobian, see :mod:`scalar_autograd.lsq.linalg`), ``"schur"`` (a CSR
                  Jacobian whose small independent parameter blocks, bundle
                  adjustment's points, are eliminated by a Schur complement, see
                  :mod:`scalar_autograd.lsq.schur`; the generic sparse Cholesky where
                  the pattern has none worth eliminating) or ``"auto"`` (sparse when
                  :func:`~scalar_autograd.lsq.assembly.choose_sparse` says so, then as
                  ``"schur"``; dense otherwise).
                * ``geodesic_acceleration`` (False): add the second-order geodesic
                  correction of Transtrum and Sethna (2012) to every step, at the price
                  of one more residual evaluation per trial step; it can help when
                  parameters "evaporate" along a flat valley (see
                  :mod:`scalar_autograd.lsq.levenberg_marquardt`).
                * ``verbose`` (False): print the problem's structure, one line per
                  iteration and the reason for stopping.
                * ``callback`` (None): called after every trial step with an
                  :class:`~scalar_autograd.lsq.levenberg_marquardt.IterationInfo`;
                  returning ``True`` stops the solver (status ``CALLBACK_STOP``).

                With ``bounds``, the tolerances take scipy ``trf``'s meanings (see
                :mod:`~scalar_autograd.lsq.trf`), ``linear_solver`` must be
                ``"auto"``, ``"dense"`` (SVD) or ``"sparse_lsmr"`` (LSMR, also what
                ``"auto"`` takes for a sparse Jacobian), and ``initial_damping`` and
                ``geodesic_acceleration`` are refused.

        Returns:
            A :class:`LeastSquaresResult`.

        Raises:
            TypeError: for an unknown option or one of the wrong type, residuals that
                are not Values, and ``bounds``, ``sigma``, ``x0`` or ``data`` of the
                wrong kind.
            ValueError: for a bad option value, no residuals, a block that branches
                (``jacobian="compiled"``), bad bounds (wrong shape, nan, a lower bound
                not below its upper bound), an ``x0`` outside the bounds ("x0 is
                infeasible"), an option the bounded method does not take, a ``sigma``
                of the wrong shape or not positive, ``data`` of the wrong shape,
                ``bounds`` on a problem with manifolds, or an ``x0`` whose block is
                not a point of its manifold (a quaternion that is not unit).
            SpecializationLimitError: a ``residual_fn`` took more than
                ``max_specializations`` branch patterns (``jacobian="compiled"``).
            ConcretizationError: ``residual_fn`` or a block needs the number of a
                value that depends on the params (``float()``, ``math.exp``); the
                message names the line.

        Example (bounds, and a re-solve with new data on the same compiled block):
            >>> import numpy as np
            >>> import scalar_autograd as sa
            >>> t = np.linspace(0.0, 1.0, 30)
            >>> problem = sa.LeastSquaresProblem([1.0, 1.0])
            >>> _ = problem.add_block(lambda p, d: p[0] * sa.exp(-p[1] * d[0]) - d[1],
            ...                       param_index=np.tile([0, 1], (30, 1)),
            ...                       data=[t, 3.0 * np.exp(0.5 * t)])
            >>> res = problem.solve(bounds=([-np.inf, 0.0], np.inf))   # a rate >= 0
            >>> res.active_mask.tolist(), round(float(res.x[1]), 9)
            ([0, -1], 0.0)
            >>> res = problem.solve(x0=[1.0, 1.0], data=[[t, 3.0 * np.exp(-2.0 * t)]])
            >>> res.success, np.round(res.x, 9).tolist()
            (True, [3.0, 2.0])
        """
        opts = validate_options(**options)
        mode = validate_jacobian_mode(jacobian)
        absolute = check_bool(absolute_sigma, "absolute_sigma")
        start = self._check_start(x0)
        limits = validate_bounds(bounds, self.n_params)
        if limits is not None and self._space is not None:
            raise ValueError("bounds cannot be combined with manifolds (the bounded method "
                             "works on x itself, not in a tangent space); drop the bounds "
                             "or the manifolds (set_manifolds(None))")
        if limits is not None:
            check_bounded_options(opts)
            check_feasible(start, limits, "x0")
        if self._space is not None:
            self._space.check(start, "x0")
        new_data = self._check_new_data(data) if data is not None else None
        if new_data:
            self._replace_data(new_data)
        with self._solving(start):
            evaluator = self._evaluator(mode, opts.linear_solver)
            weights = None if sigma is None else \
                validate_sigma(sigma, self._residual_count(evaluator, start))
            result = self._run(evaluator, start, opts, limits, weights)
        if absolute:
            result = dataclasses.replace(result, absolute_sigma=True)
        self.x = result.x.copy()
        if self._function is not None:
            self._function.move_to(self.x)
        return result

    def _run(self, evaluator: Evaluator, start: np.ndarray, opts: SolverOptions,
             limits: Bounds | None, weights: Weights | None) -> LeastSquaresResult:
        """The solver on ``evaluator`` (weighted by ``weights``) from ``start``."""
        residuals_and_jacobian: RJ = evaluator.residuals_and_jacobian
        residuals: Callable[[np.ndarray], np.ndarray] = evaluator.residuals
        if weights is not None:
            residuals_and_jacobian, residuals = _weighted(evaluator, weights)
        if limits is not None:
            if opts.verbose:
                residuals_and_jacobian = self._noting(evaluator, residuals_and_jacobian,
                                                      None, opts.linear_solver)
            return trust_region_reflective(residuals_and_jacobian, residuals, start,
                                           limits[0], limits[1], opts)
        if self._space is not None:
            # on manifolds: the numpy loop in the tangent space (the native driver and
            # the Schur elimination know x's own columns only)
            if opts.verbose:
                residuals_and_jacobian = self._noting(evaluator, residuals_and_jacobian,
                                                      None, opts.linear_solver)
            return levenberg_marquardt(residuals_and_jacobian, residuals, start, opts,
                                       manifold=self._space)
        # "auto" on a sparse Jacobian and "schur" eliminate small independent parameter
        # blocks (bundle adjustment's points) by a Schur complement when the pattern
        # has them and it pays (lsq/schur.py); "sparse_cholesky" keeps the generic
        # factorisation
        schur = evaluator.schur_complement() \
            if opts.linear_solver in ("auto", "schur") else None
        if opts.verbose:
            residuals_and_jacobian = self._noting(evaluator, residuals_and_jacobian, schur,
                                                  opts.linear_solver)
        native = native_lm.plan(evaluator, self.n_params) \
            if native_lm.supports(opts, self.n_params) \
            and (weights is None or weights.inverse is not None) else None
        if native is not None:          # small and dense: the whole loop in native code
            function, rows, U = native
            return _solve_native(function, rows, U, start, opts,
                                 None if weights is None else weights.inverse)
        return levenberg_marquardt(residuals_and_jacobian, residuals, start, opts,
                                   schur=schur)

    def _check_start(self, x0: Any) -> np.ndarray:
        """``x0`` checked (``self.x`` when None)."""
        if x0 is None:
            return self.x
        x = check_real_array(x0, "x0")
        if x.shape != (self.n_params,):
            raise ValueError(f"x0 must be a 1-D array of n_params = {self.n_params} "
                             f"parameters; got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            bad = int(np.flatnonzero(~np.isfinite(x))[0])
            raise ValueError(f"x0 must be finite; got {float(x[bad])!r} at index {bad}")
        return x

    def _residual_count(self, evaluator: Evaluator, x: np.ndarray) -> int:
        m = getattr(evaluator, "m", None)
        if m is None:               # the graph oracle before its first evaluation
            m = int(np.asarray(evaluator.residuals(x)).size)
        return int(m)

    def _check_new_data(self, data: Any) -> dict[int, np.ndarray]:
        """``solve``'s ``data`` checked: ``{block index: (N, d) array}``."""
        if self._function is not None:
            raise ValueError("data= is for problems of residual blocks; a problem made by "
                             "from_residuals() reads new numbers through its inputs "
                             "(from_residuals(..., inputs=[...])): set their .data")
        blocks = self.blocks
        if isinstance(data, Mapping):
            items = [(self._block_index(key), value) for key, value in data.items()]
        elif isinstance(data, (str, bytes, np.ndarray)) or not isinstance(data, Sequence):
            raise TypeError(f"data must be a list with one entry per block, or a mapping "
                            f"from a block (index, name or the block) to its data; got "
                            f"{type(data).__name__}")
        else:
            if len(data) != len(blocks):
                raise ValueError(f"data must have one entry per block ({len(blocks)}; None "
                                 f"keeps a block's data); got {len(data)}")
            items = [(i, value) for i, value in enumerate(data) if value is not None]
        checked: dict[int, np.ndarray] = {}
        for i, value in items:
            block = blocks[i]
            new = _check_data(value, block.n_rows, block.name)
            if new.shape != block.data.shape:
                raise ValueError(f"data for block {block.name!r} must hold {block.n_data} "
                                 f"arrays of {block.n_rows} rows, as the block was added "
                                 f"with; got {new.shape[1]} arrays")
            checked[i] = new
        return checked

    def _block_index(self, key: Any) -> int:
        blocks = self.blocks
        if isinstance(key, ResidualBlock):
            for i, b in enumerate(blocks):
                if b is key:
                    return i
            raise ValueError(f"data names block {key.name!r}, which is not in this problem")
        if isinstance(key, str):
            found = [i for i, b in enumerate(blocks) if b.name == key]
            if len(found) != 1:
                why = "is not in this problem" if not found else "names several blocks"
                raise ValueError(f"data names block {key!r}, which {why} (the blocks are "
                                 f"{[b.name for b in blocks]!r:.200}); use its index")
            return found[0]
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not 0 <= int(key) < len(blocks):
                raise ValueError(f"data names block index {int(key)}; the problem has "
                                 f"{len(blocks)} blocks")
            return int(key)
        raise TypeError(f"data's keys must be block indices, names or blocks; got "
                        f"{type(key).__name__} {key!r:.40}")

    def _replace_data(self, new_data: dict[int, np.ndarray]) -> None:
        """Give the blocks (and the kernels already built for them) their new data."""
        for i, array in new_data.items():
            self.blocks[i].data = array
        for evaluator in self._evaluators.values():
            kernel_blocks = getattr(evaluator, "blocks", [])
            for i, array in new_data.items():
                kernel_blocks[i].data = array

    def _solving(self, x: np.ndarray) -> contextlib.AbstractContextManager[None]:
        if self._function is None:
            return contextlib.nullcontext()
        return self._function.bound(x)

    def _noting(self, evaluator: Evaluator, evaluate: RJ, schur: Any, linear_solver: str
                ) -> RJ:
        """``evaluate`` (the evaluator's residuals and Jacobian) printing, after its
        first call, what the problem is made of (once the evaluator knows its constant
        rows)."""
        told = False

        def residuals_and_jacobian(x: np.ndarray) -> tuple[np.ndarray, Any]:
            nonlocal told
            r, J = evaluate(x)
            if not told:
                told = True
                for line in self._structure(evaluator, J.shape, schur, linear_solver):
                    print(line)
            return r, J

        return residuals_and_jacobian

    def _structure(self, evaluator: Evaluator, shape: tuple[int, int], schur: Any,
                   linear_solver: str) -> list[str]:
        """The verbose lines describing the residuals, the Jacobian and its solver."""
        lines = []
        for b in self.blocks:
            constant_outputs = b.constant_outputs()
            if constant_outputs:
                lines.append(f"note: block {b.name!r} outputs {constant_outputs} depend on "
                             f"no parameter")
        if evaluator.constant_rows:
            lines.append(describe_constant_rows(evaluator.constant_rows))
        used = evaluator.columns_used
        unused = 0 if used is None else int(np.count_nonzero(~used))
        if unused:
            lines.append(f"note: {unused} parameter(s) are used by no residual; they stay "
                         f"put")
        m, n = shape
        lines.append(f"{m} residuals, {n} parameters, "
                     f"{'sparse' if evaluator.sparse else 'dense'} Jacobian")
        if self._space is not None:
            lines.append(f"manifolds: {self._space!r}; steps in its tangent space")
        if schur is not None:
            lines.append(f"Schur complement: eliminating {schur.eliminated.size} parameters "
                         f"in blocks of {schur.size}, reduced dense system of "
                         f"{schur.reduced.size}")
        elif linear_solver == "schur":
            lines.append("note: no parameter blocks worth a Schur elimination in the "
                         "Jacobian's pattern; the generic sparse Cholesky solves the steps"
                         if evaluator.sparse else
                         "note: the Jacobian is dense (jacobian=\"graph\" of a "
                         "residual_fn); the steps are solved densely")
        return lines


class _ResidualFunction:
    """The residuals of a Python ``residual_fn`` of Value params (see
    :meth:`LeastSquaresProblem.from_residuals`), with its oracles kept between solves."""

    def __init__(self, params: list[Value], fn: ResidualFn, max_specializations: int,
                 inputs: Sequence[Value] = ()) -> None:
        self.params = params
        self.fn = fn
        self.max_specializations = max_specializations
        self.inputs = list(inputs)
        self._oracles: dict[tuple[str, bool | None], Evaluator] = {}

    def evaluator(self, mode: str, linear_solver: str) -> Evaluator:
        """The oracle of ``mode`` for this kind of Jacobian: traced at the params'
        ``data`` on first use, then kept (with the inputs' current values read in)."""
        key = ("graph" if mode == "graph" else "compiled", sparse_for(linear_solver))
        oracle = self._oracles.get(key)
        if oracle is None:
            oracle = self._oracles[key] = self.new_evaluator(mode, linear_solver)
        elif isinstance(oracle, CompiledOracle):
            oracle.refresh_inputs()
        return oracle

    def new_evaluator(self, mode: str, linear_solver: str) -> Evaluator:
        """A new oracle of ``mode``; the compiled one traces at the params' ``data``."""
        if mode == "graph":
            return GraphOracle(self.params, self.fn)
        return CompiledOracle(self.params, self.fn, linear_solver,
                              max_specializations=self.max_specializations,
                              inputs=self.inputs)

    def residuals(self, x: np.ndarray) -> np.ndarray:
        """``residual_fn`` at ``x``, evaluated eagerly (the params' ``data`` is kept)."""
        saved = [p.data for p in self.params]
        try:
            return GraphOracle(self.params, self.fn).residuals(x)
        finally:
            self.move_to(saved)

    def move_to(self, x: Any) -> None:
        """Set the params' ``data`` to ``x``."""
        for p, v in zip(self.params, x):
            p.data = float(v)

    @contextlib.contextmanager
    def bound(self, x: np.ndarray) -> Iterator[None]:
        """While solving from ``x``: the params start at ``x`` and require grad; their
        ``requires_grad`` is restored after, and their ``data`` to ``x`` on an error."""
        saved = [p.requires_grad for p in self.params]
        self.move_to(x)
        for p in self.params:
            p.requires_grad = True
        try:
            yield
        except BaseException:
            self.move_to(x)
            raise
        finally:
            for p, requires_grad in zip(self.params, saved):
                p.requires_grad = requires_grad


def check_inputs(inputs: Any, params: Sequence[Value]) -> list[Value]:
    """``inputs`` (None or a sequence of distinct leaf Values, none of them a param)."""
    if inputs is None:
        return []
    if isinstance(inputs, (Value, str, bytes)) or not isinstance(inputs, Iterable):
        raise TypeError(f"`inputs` must be a sequence of Value objects; got "
                        f"{type(inputs).__name__}")
    items = list(inputs)
    if not items:
        return []
    ulist = check_params(items, "inputs", requires_grad=False)
    param_ids = {id(p): j for j, p in enumerate(params)}
    for i, u in enumerate(ulist):
        if id(u) in param_ids:
            raise ValueError(f"`inputs` must not contain a param: inputs[{i}] is "
                             f"params[{param_ids[id(u)]}]")
    return ulist


def _weighted(evaluator: Evaluator, weights: Weights
              ) -> tuple[RJ, Callable[[np.ndarray], np.ndarray]]:
    """``evaluator``'s residuals and Jacobian weighted by ``sigma`` (scipy curve_fit's
    transform)."""

    def residuals_and_jacobian(x: np.ndarray) -> tuple[np.ndarray, Any]:
        r, J = evaluator.residuals_and_jacobian(x)
        return weights.apply(np.asarray(r, dtype=float), J)

    def residuals(x: np.ndarray) -> np.ndarray:
        return weights.apply(np.asarray(evaluator.residuals(x), dtype=float))[0]

    return residuals_and_jacobian, residuals


def _solve_native(function: Any, rows: int, U: np.ndarray, x0: np.ndarray,
                  opts: SolverOptions, w: np.ndarray | None) -> LeastSquaresResult:
    """One problem of :func:`~scalar_autograd.lsq.native_lm.plan` solved by the native
    loop (residuals weighted by ``w``, ``1 / sigma``), as the numpy loop's result."""
    from scalar_autograd.lsq.batch import _option_array

    start = time.perf_counter()
    solver = native_lm.solver_for(function)
    m = rows * solver.nv
    out = native_lm.BatchOutput.empty(np.asarray(x0, dtype=float).reshape(1, -1), m,
                                      jacobian=True, residuals=True)
    solver.run(out, 0, 1, rows, U.reshape(-1), 0, None, w, _option_array(opts))
    assert out.residuals is not None and out.jacobian is not None
    return LeastSquaresResult(
        x=out.x[0], cost=float(out.cost[0]), residuals=out.residuals[0],
        grad_norm=float(out.grad_norm[0]), iterations=int(out.iterations[0]),
        nfev=int(out.nfev[0]), njev=int(out.njev[0]),
        status=native_lm.STATUSES[int(out.status[0])],
        time=time.perf_counter() - start, jacobian=out.jacobian[0])
