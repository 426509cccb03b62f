"""Many independent least-squares problems of one shape: ``sa.batch_least_squares``.

The model is traced once, for one problem, and compiled; the small dense
Levenberg-Marquardt loop of :mod:`scalar_autograd.lsq.native_lm` then solves the
problems in native loops with the GIL released, chunk by chunk, over ``workers``
threads or on any ``executor`` (:mod:`scalar_autograd.runtime.fanout`). A problem
whose data holds nan, or whose solve fails, gets its own status; the others finish.
When the options need the numpy loop (a robust loss, a callback, geodesic
acceleration, more than :data:`~scalar_autograd.lsq.native_lm.MAX_NATIVE_PARAMS`
params), every problem runs through it instead, one after another, with the same
statuses and the same outputs. With ``bounds``, every problem is solved by the bounded
method (scipy's Trust Region Reflective, :mod:`scalar_autograd.lsq.trf`) in numpy, one
after another on each worker; the result's ``active_mask`` tells which bounds hold.

Example:
    >>> import numpy as np, scalar_autograd as sa
    >>> targets = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    >>> def residuals(p, target):            # one problem: a point nearest a target
    ...     return [p[0] - target[0], 2.0 * (p[1] - target[1])]
    >>> res = sa.batch_least_squares(residuals, np.zeros(2), data=(targets,))
    >>> np.allclose(res.x, targets), bool(res.success.all())
    (True, True)
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from scalar_autograd.lsq import native_lm
from scalar_autograd.lsq.levenberg_marquardt import levenberg_marquardt
from scalar_autograd.lsq.native_lm import NOT_RUN, STATUSES, BatchOutput, NativeSolver
from scalar_autograd.lsq.options import (
    Bounds,
    SolverOptions,
    check_bounded_options,
    validate_bounds,
    validate_options,
)
from scalar_autograd.lsq.result import CovarianceWarning
from scalar_autograd.lsq.status import Status
from scalar_autograd.lsq.trf import trust_region_reflective
from scalar_autograd.runtime.batch_model import (
    MAX_REMOTE_MODELS,
    BatchStatuses,
    per_problem_array,
    problem_data,
    remote_function,
    split_rows,
    stack_rows,
    trace_problem,
)
from scalar_autograd.runtime.compiled import CompiledFunction
from scalar_autograd.runtime.fanout import fan_out
from scalar_autograd.value import Value


# ---------------------------------------------------------------------------- result
@dataclass(repr=False)
class BatchFitResult(BatchStatuses):
    """The outcome of a batch of fits, one row per problem (all numpy arrays); its
    ``success``, ``statuses()``, ``counts()`` come from
    :class:`~scalar_autograd.runtime.batch_model.BatchStatuses`.

    Attributes:
        x: ``(N, n)`` solutions (the best point found, whatever the status); also
            :attr:`popt`.
        pcov: ``(N, n, n)`` covariance of each solution (scipy ``curve_fit``'s rules,
            see :func:`scalar_autograd.curve_fit`); nan for a problem that was not
            solved or whose residuals were not finite.
        cost: ``(N,)`` ``0.5 * sum(r**2)`` at ``x``.
        status: ``(N,)`` integer codes; ``STATUSES[code]`` is the
            :class:`~scalar_autograd.LeastSquaresStatus` (:meth:`statuses`).
        iterations, nfev, njev: ``(N,)`` counts per problem, as
            :class:`~scalar_autograd.LeastSquaresResult`'s.
        grad_norm: ``(N,)`` infinity norm of the cost's gradient at ``x``.
        interrupted: a KeyboardInterrupt stopped the batch; the problems not run have
            status ``NOT_RUN`` and their start point as ``x``.
        active_mask: ``(N, n)`` int: -1 where a solution is at its lower bound, 1 at its
            upper bound, 0 elsewhere (all 0 without bounds), as
            :attr:`~scalar_autograd.LeastSquaresResult.active_mask`.
    """

    x: np.ndarray
    pcov: np.ndarray
    cost: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    nfev: np.ndarray
    njev: np.ndarray
    grad_norm: np.ndarray
    interrupted: bool = False
    STATUSES: tuple[Status, ...] = field(default=STATUSES, repr=False)
    active_mask: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.active_mask is None:
            self.active_mask = np.zeros(self.x.shape, dtype=int)

    @property
    def popt(self) -> np.ndarray:
        """The solutions (:attr:`x`), scipy's name."""
        return self.x


# ---------------------------------------------------------------------------- model
class _Shared:
    """What every :class:`Model` of one traced function shares: its native loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.solver: NativeSolver | None = None
        self.by_rows: dict[int, Model] = {}


@dataclass(frozen=True)
class Model:
    """One traced problem compiled: ``function`` maps ``n`` params and one row of
    ``nu`` data inputs to ``nv`` outputs; a problem has ``rows`` rows.

    It travels to other processes as its program (:meth:`spec`), never as machine
    code, and is rebuilt there once per process.
    """

    function: CompiledFunction
    rows: int
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    shared: _Shared = field(default_factory=_Shared, repr=False, compare=False)

    @property
    def n(self) -> int:
        return self.function.n_params

    @property
    def m(self) -> int:
        return self.rows * self.function.n_outputs

    def with_rows(self, rows: int) -> Model:
        """The same model for problems of ``rows`` rows (sharing its native loop;
        made once per ``rows``)."""
        if rows == self.rows:
            return self
        cache = self.shared.by_rows
        model = cache.get(rows)
        if model is None:
            if len(cache) >= 16:
                cache.pop(next(iter(cache)))
            model = cache[rows] = replace(self, rows=rows)
        return model

    def solver(self) -> NativeSolver:
        """The native loop bound to this model's function (compiled on first use)."""
        shared = self.shared
        if shared.solver is None:
            with shared.lock:
                if shared.solver is None:
                    shared.solver = NativeSolver(self.function)
        return shared.solver

    def spec(self) -> tuple[Any, int, str]:
        """What a remote worker needs: the program, the rows, a token for its cache."""
        return (self.function.program, self.rows, self.token)


_REMOTE: OrderedDict[str, Model] = OrderedDict()
_REMOTE_LOCK = threading.Lock()


def _remote_model(spec: tuple[Any, int, str]) -> Model:
    """The model of ``spec`` in this process (its function compiled once per process
    by :func:`~scalar_autograd.runtime.batch_model.remote_function`, its native loop
    kept with it)."""
    program, rows, token = spec
    function = remote_function(program, token)
    with _REMOTE_LOCK:
        model = _REMOTE.get(token)
        if model is None or model.function is not function:
            model = _REMOTE[token] = Model(function, rows, token)
            if len(_REMOTE) > MAX_REMOTE_MODELS:
                _REMOTE.popitem(last=False)
    return model.with_rows(rows)


def trace_model(build: Callable[[list[Value], list[Value]], Sequence[Any]], n: int,
                n_inputs: int, rows: int, what: str) -> Model:
    """Trace ``build(params, inputs) -> outputs`` once and compile it
    (:func:`~scalar_autograd.runtime.batch_model.trace_problem`), as a :class:`Model`
    of ``rows`` rows per problem."""
    return Model(trace_problem(build, n, n_inputs, what, "residuals"), rows)


# ---------------------------------------------------------------------------- options
OPTION_NAMES = tuple(f.name for f in fields(SolverOptions))
"""The solver options the batched solvers take (those of :class:`SolverOptions`)."""


def solver_options(options: Mapping[str, Any],
                   aliases: Mapping[str, str] | None = None) -> SolverOptions:
    """``options`` (keyword arguments of a public function) validated, with
    ``aliases`` (other spellings, e.g. scipy's ``ftol``) renamed to their option.

    Raises:
        TypeError: an unknown option (named, with the known ones), an option given
            twice under two spellings, or an option of the wrong type.
        ValueError: an option's value breaks its rule.
    """
    aliases = aliases or {}
    renamed: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in options.items():
        target = aliases.get(key, key)
        if target not in OPTION_NAMES:
            known = ", ".join(OPTION_NAMES + tuple(aliases))
            raise TypeError(f"unknown option {key!r}; the options are: {known}")
        if target in renamed:
            raise TypeError(f"option {target!r} given twice: as {spelled[target]!r} and "
                            f"as {key!r}")
        renamed[target], spelled[target] = value, key
    return validate_options(**renamed)


# ---------------------------------------------------------------------------- the job
_OPTION_ARRAYS: dict[SolverOptions, np.ndarray] = {}


def _option_array(options: SolverOptions) -> np.ndarray:
    """The driver's options array of ``options`` (made once per distinct options;
    read only)."""
    try:
        array = _OPTION_ARRAYS.get(options)
    except TypeError:           # an unhashable callback: no caching
        return native_lm.options_array(options)
    if array is None:
        array = native_lm.options_array(options)
        array.flags.writeable = False
        if len(_OPTION_ARRAYS) < 256:
            _OPTION_ARRAYS[options] = array
    return array


class BatchJob:
    """A batch of problems of one :class:`Model` for :func:`~scalar_autograd.runtime.
    fanout.fan_out`: start points ``x0`` ``(N, n)``; each problem's inputs ``U`` (rows
    of ``nu``) at ``u_stride`` doubles apart (0: shared); optional observations ``Y``
    and weights ``W`` (``(N, m)``, or ``(m,)`` shared)."""

    def __init__(self, model: Model, x0: np.ndarray, U: np.ndarray, u_stride: int,
                 Y: np.ndarray | None, W: np.ndarray | None, options: SolverOptions,
                 covariance: bool = True, bounds: Bounds | None = None,
                 absolute_sigma: bool | None = None) -> None:
        """``absolute_sigma`` True or False: each chunk's ``pcov`` is finished where
        the chunk is solved (pseudo-inverses where the Cholesky inverse was refused,
        scipy's variance scaling unless absolute), in parallel; None leaves the raw
        ``(J^T J)^-1`` for the caller (one fit)."""
        self.model, self.U, self.u_stride, self.Y, self.W = model, U, u_stride, Y, W
        self.absolute_sigma = absolute_sigma
        self._inf_covariance = False
        self.options = options
        self.bounds = bounds
        self.count = x0.shape[0]
        self.native = bounds is None and native_lm.supports(options, model.n) \
            and model.function.backend == "llvm"
        self.option_array = _option_array(options)
        self.covariance = covariance
        self.out = BatchOutput.empty(x0, model.m, covariance=covariance)
        self._starts = self.out.x.copy() if absolute_sigma is not None else self.out.x
        self.active = np.zeros((self.count, model.n), dtype=int)

    # ------------------------------------------------------------------ here
    def solve(self, start: int, stop: int) -> None:
        """Solve problems ``start .. stop-1`` on this thread.

        A KeyboardInterrupt (on the calling thread, between problems of the numpy
        loop or after the native call) leaves every problem either solved and finished
        or not run: the problems stored so far, a prefix of the chunk, are finished
        before it propagates.
        """
        try:
            if self.native:
                self.model.solver().run(self.out, start, stop, self.model.rows, self.U,
                                        self.u_stride, self.Y, self.W, self.option_array)
            else:
                for i in range(start, stop):
                    self._solve_numpy(i)
        except KeyboardInterrupt:
            stored = int(np.count_nonzero(self.out.status[start:stop] != NOT_RUN))
            self._finish(start, start + stored)
            raise
        self._finish(start, stop)

    def _finish(self, start: int, stop: int) -> None:
        """:meth:`_finish_covariance` of the problems ``start .. stop-1`` when this job
        finishes chunks; interrupted, it marks them not run (whole or not at all)."""
        if self.absolute_sigma is None or not self.covariance or stop <= start:
            return
        try:
            self._finish_covariance(start, stop)
        except KeyboardInterrupt:
            x0 = self._starts[start:stop]
            for i in range(start, stop):
                self._unstore(i, x0[i - start])
            raise

    def _finish_covariance(self, start: int, stop: int) -> None:
        """``pcov`` of problems ``start .. stop-1`` by scipy's rules: a pseudo-inverse
        where the native Cholesky inverse was refused (nearly singular ``J^T J``), then
        ``2 cost / (m - n)`` times it unless ``absolute_sigma`` (inf when ``m <= n``)."""
        out = self.out
        assert out.covariance is not None
        n, m = self.model.n, self.model.m
        pcov = out.covariance[start:stop]
        status = out.status[start:stop]
        solved = (status != NOT_RUN) & \
            (status != STATUSES.index(Status.NONFINITE_INITIAL))
        redo = np.flatnonzero(solved & np.isnan(pcov).any(axis=(1, 2)))
        if redo.size:
            self._pseudo_inverses(redo + start, out.covariance)
        if not self.absolute_sigma:
            if m > n:
                pcov *= (2.0 * out.cost[start:stop] / (m - n))[:, None, None]
            else:
                pcov[solved] = np.inf
        if solved.any() and np.isinf(pcov[solved]).any():
            self._inf_covariance = True

    def _rows(self, a: np.ndarray | None, i: int) -> np.ndarray | None:
        if a is None:
            return None
        return a if a.ndim == 1 else a[i]

    def _solve_numpy(self, i: int) -> None:
        """Problem ``i`` by the numpy loop (options the native loop does not take)."""
        model, out = self.model, self.out
        f, rows, nu = model.function, model.rows, model.function.n_inputs
        u = self.U[i * self.u_stride: i * self.u_stride + rows * nu].reshape(rows, nu)
        y, w = self._rows(self.Y, i), self._rows(self.W, i)

        def rj(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            V, J = f.batch_jacobian(np.broadcast_to(x, (rows, x.size)), u)
            r, J = V.reshape(-1), J.reshape(-1, x.size)
            if y is not None:
                r = r - y
            if w is not None:
                r, J = r * w, J * w[:, None]
            return r, J

        x0 = out.x[i].copy()
        if self.bounds is None:
            result = levenberg_marquardt(rj, lambda x: rj(x)[0], x0.copy(), self.options)
        else:
            result = trust_region_reflective(rj, lambda x: rj(x)[0], x0.copy(),
                                             self.bounds[0], self.bounds[1], self.options)
        covariance = None
        if self.covariance and out.covariance is not None \
                and result.status is not Status.NONFINITE_INITIAL:
            covariance = _symmetric(_pinv_normal(np.asarray(result.jacobian)))
        try:
            out.x[i] = result.x
            out.cost[i] = result.cost
            out.iterations[i], out.nfev[i], out.njev[i] = (result.iterations, result.nfev,
                                                           result.njev)
            out.grad_norm[i] = result.grad_norm
            if covariance is not None and out.covariance is not None:
                out.covariance[i] = covariance
            self.active[i] = result.active_mask
            out.status[i] = STATUSES.index(result.status)
        except KeyboardInterrupt:       # stopped while storing: leave the problem not run
            self._unstore(i, x0)
            raise

    def _unstore(self, i: int, x0: np.ndarray) -> None:
        """Mark problem ``i`` not run again, with its start point."""
        out = self.out
        out.status[i] = NOT_RUN
        out.x[i] = x0
        out.cost[i] = out.grad_norm[i] = np.nan
        out.iterations[i] = out.nfev[i] = out.njev[i] = 0
        self.active[i] = 0
        if out.covariance is not None:
            out.covariance[i] = np.nan

    # ------------------------------------------------------------------ elsewhere
    def task(self, start: int, stop: int) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """``(solve_chunk, args)`` for an executor: the model as its program."""
        U = self.U if self.u_stride == 0 else \
            self.U[start * self.u_stride: stop * self.u_stride]
        Y = self.Y if self.Y is None or self.Y.ndim == 1 else self.Y[start:stop]
        W = self.W if self.W is None or self.W.ndim == 1 else self.W[start:stop]
        return solve_chunk, (self.model.spec(), self.out.x[start:stop].copy(), U,
                             self.u_stride, Y, W, self.options, self.covariance, self.bounds,
                             self.absolute_sigma)

    def merge(self, start: int, stop: int, result: BatchOutput) -> None:
        """Store a chunk solved elsewhere (with its active bounds when it is a
        :class:`ChunkOutput`)."""
        active = getattr(result, "active_mask", None)
        if active is not None:
            self.active[start:stop] = active
        out = self.out
        for name in ("x", "cost", "status", "iterations", "nfev", "njev", "grad_norm",
                     "covariance"):
            target = getattr(out, name)
            if target is not None:
                target[start:stop] = getattr(result, name)
        if self.absolute_sigma is not None and result.covariance is not None \
                and np.isinf(result.covariance).any():
            self._inf_covariance = True

    # ------------------------------------------------------------------ result
    def result(self, interrupted: bool) -> BatchFitResult:
        """The :class:`BatchFitResult` (its ``pcov`` finished chunk by chunk, see
        :meth:`_finish_covariance`)."""
        out = self.out
        n = self.model.n
        pcov = out.covariance if out.covariance is not None \
            else np.full((self.count, n, n), np.nan)
        if self._inf_covariance:
            import warnings

            warnings.warn("the covariance of some fits could not be estimated (inf "
                          "entries): too few residuals, or parameters the data do not "
                          "determine", CovarianceWarning, stacklevel=3)
        return BatchFitResult(x=out.x, pcov=pcov, cost=out.cost, status=out.status,
                              iterations=out.iterations, nfev=out.nfev, njev=out.njev,
                              grad_norm=out.grad_norm, interrupted=interrupted,
                              active_mask=self.active)

    def _pseudo_inverses(self, rows: np.ndarray, pcov: np.ndarray) -> None:
        """``pinv(J^T J)`` from the Jacobian recomputed at each of ``rows``' solution
        (scipy's SVD rule), for the problems whose Cholesky inverse was refused."""
        f, k, nu = self.model.function, self.model.rows, self.model.function.n_inputs
        for i in rows.tolist():
            u = self.U[i * self.u_stride: i * self.u_stride + k * nu].reshape(k, nu)
            x = self.out.x[i]
            _, J = f.batch_jacobian(np.broadcast_to(x, (k, x.size)), u)
            J = J.reshape(-1, x.size)
            w = self._rows(self.W, i)
            if w is not None:
                J = J * w[:, None]
            pcov[i] = _symmetric(_pinv_normal(J))


def _symmetric(pcov: np.ndarray) -> np.ndarray:
    """``(pcov + pcov^T) / 2`` over the last two axes: a covariance exactly symmetric
    (the inverses above are symmetric only to rounding)."""
    return 0.5 * (pcov + np.swapaxes(pcov, -1, -2))


def _pinv_normal(J: np.ndarray) -> np.ndarray:
    """``pinv(J^T J)`` by the SVD of ``J``, singular values below
    ``eps * max(J.shape) * s_max`` dropped (scipy ``curve_fit``'s rule); inf when
    ``J`` is not finite."""
    if not np.all(np.isfinite(J)):
        return np.full((J.shape[1], J.shape[1]), np.inf)
    _, s, VT = np.linalg.svd(J, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return np.full((J.shape[1], J.shape[1]), np.inf)
    threshold = np.finfo(float).eps * max(J.shape) * s[0]
    keep = s > threshold
    s, VT = s[keep], VT[keep]
    return np.asarray((VT.T / s**2) @ VT)


@dataclass
class ChunkOutput(BatchOutput):
    """A chunk's :class:`~scalar_autograd.lsq.native_lm.BatchOutput` with the active
    bounds of its problems (``(N, n)``; None without bounds)."""

    active_mask: np.ndarray | None = None


def solve_chunk(spec: tuple[Any, int, str], x0: np.ndarray, U: np.ndarray, u_stride: int,
                Y: np.ndarray | None, W: np.ndarray | None, options: SolverOptions,
                covariance: bool, bounds: Bounds | None = None,
                absolute_sigma: bool | None = None) -> ChunkOutput:
    """Solve one chunk in this process (an executor's task): the model is rebuilt
    from its program once per process, then the chunk is solved on one thread."""
    job = BatchJob(_remote_model(spec), x0, U, u_stride, Y, W, options, covariance,
                   bounds, absolute_sigma)
    job.solve(0, job.count)
    return ChunkOutput(**vars(job.out),
                       active_mask=None if bounds is None else job.active)


def batch_bounds(bounds: Any, start: np.ndarray, options: SolverOptions,
                 name: str = "x0") -> Bounds | None:
    """``bounds`` shared by every problem, checked (scipy's rules, the bounded
    method's options) with every problem's start ``start`` (``(N, n)``) within them."""
    limits = validate_bounds(bounds, start.shape[1])
    if limits is None:
        return None
    check_bounded_options(options)
    lower, upper = limits
    inside = (start >= lower) & (start <= upper)
    if not np.all(inside):
        i, j = (int(k) for k in np.argwhere(~inside)[0])
        problems = int(np.count_nonzero(~np.all(inside, axis=1)))
        raise ValueError(f"{name} is infeasible: {name}[{i}, {j}] = {float(start[i, j])!r} "
                         f"(problem {i}) is outside its bounds [{float(lower[j])!r}, "
                         f"{float(upper[j])!r}] ({problems} problem(s) start outside); "
                         f"start inside the bounds (scipy's least_squares raises too)")
    return limits


# ---------------------------------------------------------------------------- public API
def batch_least_squares(
    residual_fn: Callable[..., Sequence[Any]],
    x0: Any,
    *,
    data: Sequence[Any] = (),
    workers: int | None = None,
    executor: Any = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
    bounds: Any = None,
    **options: Any,
) -> BatchFitResult:
    """Solve ``N`` independent least-squares problems of one shape.

    ``residual_fn(params, *data_rows)`` is written for ONE problem with ``sa`` ops:
    ``params`` is a list of ``n`` Values, and for each array in ``data`` the problem's
    row: a Value for an ``(N,)`` array, a list of ``d`` Values for an ``(N, d)`` one. It
    returns the problem's residuals. It is traced once and compiled; it must not
    branch in Python on the values (use ``sa.where``), which raises a ValueError.

    Args:
        residual_fn: ``(params, *rows) -> [r_0, ..., r_{m-1}]``.
        x0: the start: ``(n,)`` for every problem, or ``(N, n)``.
        data: per-problem arrays, each ``(N,)`` or ``(N, d)``.
        workers: threads (None: every core). Ignored with ``executor``.
        executor: a ``concurrent.futures.Executor`` (a process pool, or a Dask
            ``Client.get_executor()``) the chunks are sent to; the model travels as
            its program.
        chunk_size: problems per chunk (the unit of progress, interruption and of
            work sent to an executor).
        progress: show a progress bar on stderr (None: once the batch runs for 2 s).
        bounds: ``(lower, upper)`` shared by every problem (scalars or ``(n,)``
            arrays, ``-inf``/``inf`` for none; scipy ``least_squares``'s rules): each
            problem is then solved by the bounded method (scipy's ``trf``, in numpy),
            every start must lie within them, and the result's ``active_mask`` tells
            which bounds hold.
        **options: the solver options of :func:`scalar_autograd.nonlinear_least_squares`
            (``max_iterations``, ``cost_tolerance``, ``param_tolerance``,
            ``gradient_tolerance``, ``initial_damping``, ``loss``, ...).

    Returns:
        A :class:`BatchFitResult`; ``pcov`` is ``(J^T J)^-1`` at each solution (no
        variance scaling; :func:`scalar_autograd.batch_curve_fit` scales it).

    Raises:
        TypeError, ValueError: bad arguments (named), a ``residual_fn`` that branches
            on its values, or a different number of problems in ``x0`` and ``data``.

    Example:
        >>> import numpy as np, scalar_autograd as sa
        >>> def circle(p, pts):           # a circle through 4 points: (cx, cy, r)
        ...     return [sa.sqrt((pts[2*i] - p[0])**2 + (pts[2*i+1] - p[1])**2) - p[2]
        ...             for i in range(4)]
        >>> pts = np.array([[1, 0, 0, 1, -1, 0, 0, -1], [3, 1, 2, 2, 1, 1, 2, 0]], float)
        >>> res = sa.batch_least_squares(circle, [0.1, 0.2, 1.5], data=(pts,))
        >>> np.round(res.x, 6).tolist() == [[0.0, 0.0, 1.0], [2.0, 1.0, 1.0]]
        True
    """
    if not callable(residual_fn):
        raise TypeError(f"residual_fn must be callable; got {type(residual_fn).__name__}")
    opts = solver_options(options)
    start = per_problem_array(x0, "x0")
    arrays, widths, count = problem_data(data, start.shape[0] if start.ndim == 2 else None)
    if start.ndim == 1:
        start = np.broadcast_to(start, (count, start.size))
    elif start.shape[0] != count:
        raise ValueError(f"x0 must have shape (n,) or (N, n) with N = {count} problems; "
                         f"got {start.shape}")
    n = start.shape[1]
    if n == 0:
        raise ValueError("x0 must hold at least one parameter")
    limits = batch_bounds(bounds, start, opts)

    def build(params: list[Value], inputs: list[Value]) -> Sequence[Any]:
        out = residual_fn(params, *split_rows(inputs, arrays, widths))
        if isinstance(out, Value):
            return [out]
        return list(out)

    name = getattr(residual_fn, "__name__", "residual_fn")
    model = trace_model(build, n, sum(widths), 1, f"residual_fn {name!r}")
    U = stack_rows(arrays, count)
    job = BatchJob(model, np.ascontiguousarray(start, dtype=float), U,
                   sum(widths), None, None, opts, bounds=limits, absolute_sigma=True)
    interrupted = fan_out(job, workers=workers, executor=executor, chunk_size=chunk_size,
                          progress=progress, noun="problems")
    return job.result(interrupted)
