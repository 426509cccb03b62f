"""Many independent minimisations of one shape: ``sa.batch_minimize`` (batched L-BFGS).

The objective is written for ONE problem with ``sa`` ops and traced once
(:func:`scalar_autograd.runtime.batch_model.trace_problem`); L-BFGS then runs in
native code (:mod:`scalar_autograd.optim.native_lbfgs`, the loop of
:func:`~scalar_autograd.optim.lbfgs.lbfgs_minimize` with the same iterates), chunk by
chunk, over ``workers`` threads with the GIL released or on any ``executor``
(:mod:`scalar_autograd.runtime.fanout`). Inverse kinematics for many targets, Monte
Carlo restarts, per-frame fits are the use. A problem whose objective is not finite
gets its own status; the others finish. Without llvmlite each problem runs through
``lbfgs_minimize`` on the compiled function instead, with the same outputs.

Example:
    >>> import numpy as np, scalar_autograd as sa
    >>> targets = np.array([[1.0, 1.0], [0.5, -1.5], [-1.2, 0.3]])
    >>> def reach(q, target):           # a 2-link arm of unit links reaching a point
    ...     x = sa.cos(q[0]) + sa.cos(q[0] + q[1])
    ...     y = sa.sin(q[0]) + sa.sin(q[0] + q[1])
    ...     return (x - target[0]) ** 2 + (y - target[1]) ** 2
    >>> res = sa.batch_minimize(reach, [0.3, 0.3], data=(targets,),
    ...                         gradient_tolerance=1e-12, ftol=0.0)
    >>> bool(res.success.all()), bool(np.all(res.fun < 1e-20))
    (True, True)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scalar_autograd.optim import native_lbfgs
from scalar_autograd.optim.lbfgs import LBFGSConfig, lbfgs_minimize
from scalar_autograd.optim.native_lbfgs import MinimizeBatchOutput, NativeBatchLBFGS
from scalar_autograd.optim.result import Status
from scalar_autograd.runtime.batch_model import (
    BatchStatuses,
    problem_data,
    remote_function,
    split_rows,
    stack_rows,
    trace_problem,
)
from scalar_autograd.runtime.compiled import CompiledFunction
from scalar_autograd.runtime.fanout import fan_out
from scalar_autograd.validation import check_choice
from scalar_autograd.value import Value

STATUSES: tuple[Status, ...] = tuple(Status)
"""Status codes of :class:`BatchMinimizeResult`: ``STATUSES[code]``."""
NOT_RUN = STATUSES.index(Status.NOT_RUN)


@dataclass(repr=False)
class BatchMinimizeResult(BatchStatuses):
    """The outcome of a batch of minimisations, one row per problem (numpy arrays); its
    ``success``, ``statuses()``, ``counts()`` come from
    :class:`~scalar_autograd.runtime.batch_model.BatchStatuses`.

    Attributes:
        x: ``(N, n)`` the final iterates.
        fun: ``(N,)`` the objective at ``x``.
        status: ``(N,)`` codes; ``STATUSES[code]`` is the :class:`~scalar_autograd.Status`
            (:meth:`statuses`).
        iterations, nfev: ``(N,)`` counts, as :class:`~scalar_autograd.OptimizeResult`'s.
        grad_norm: ``(N,)`` ``max |g_i|`` at ``x``.
        interrupted: a KeyboardInterrupt stopped the batch; the problems not run have
            status ``NOT_RUN`` and their start as ``x``.
    """

    x: np.ndarray
    fun: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    nfev: np.ndarray
    grad_norm: np.ndarray
    interrupted: bool = False
    STATUSES: tuple[Status, ...] = field(default=STATUSES, repr=False)



class _MinimizeJob:
    """A batch for :func:`~scalar_autograd.runtime.fanout.fan_out`."""

    def __init__(self, function: CompiledFunction, config: LBFGSConfig, x0: np.ndarray,
                 U: np.ndarray, u_stride: int, token: str) -> None:
        self.function, self.config, self.U, self.u_stride = function, config, U, u_stride
        self.token = token
        self.count = x0.shape[0]
        self.out = MinimizeBatchOutput.empty(x0)
        self.out.status[:] = NOT_RUN
        self.native = native_lbfgs.supports(config, function.n_params) \
            and function.backend == "llvm"
        self._solver: NativeBatchLBFGS | None = None

    def solve(self, start: int, stop: int) -> None:
        if self.native:
            if self._solver is None:
                self._solver = NativeBatchLBFGS(self.function, self.config)
            self._solver.run(self.out, start, stop, self.U, self.u_stride)
            return
        f, nu = self.function, self.function.n_inputs
        for i in range(start, stop):
            u = self.U[i * self.u_stride: i * self.u_stride + nu]

            def fun_and_grad(x: np.ndarray, u: np.ndarray = u) -> tuple[float, np.ndarray]:
                return f.value_and_grad(x, u)

            res = lbfgs_minimize(fun_and_grad, self.out.x[i].copy(), self.config)
            out = self.out
            out.x[i], out.fun[i], out.grad_norm[i] = res.x, res.fun, res.grad_norm
            out.iterations[i], out.nfev[i] = res.iterations, res.nfev
            out.status[i] = STATUSES.index(res.status)

    def task(self, start: int, stop: int) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        U = self.U if self.u_stride == 0 else \
            self.U[start * self.u_stride: stop * self.u_stride]
        return solve_chunk, (self.function.program, self.token, self.config,
                             self.out.x[start:stop].copy(), U, self.u_stride)

    def merge(self, start: int, stop: int, result: MinimizeBatchOutput) -> None:
        for name in ("x", "fun", "status", "iterations", "nfev", "grad_norm"):
            getattr(self.out, name)[start:stop] = getattr(result, name)


def solve_chunk(program: Any, token: str, config: LBFGSConfig, x0: np.ndarray,
                U: np.ndarray, u_stride: int) -> MinimizeBatchOutput:
    """One chunk solved in this process (an executor's task)."""
    job = _MinimizeJob(remote_function(program, token), config, x0, U, u_stride, token)
    job.solve(0, job.count)
    return job.out


def batch_minimize(
    fun: Callable[..., Any],
    x0: Any,
    *,
    data: Any = (),
    method: str = "lbfgs",
    workers: int | None = None,
    executor: Any = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
    **options: Any,
) -> BatchMinimizeResult:
    """Minimise ``N`` independent objectives of one shape by L-BFGS.

    ``fun(params, *data_rows)`` is written for ONE problem with ``sa`` ops: ``params``
    is a list of ``n`` Values and, for each array in ``data``, the problem's row (a
    Value for an ``(N,)`` array, a list of ``d`` Values for an ``(N, d)`` one). It
    returns the objective. It is traced once and compiled, and must not branch in
    Python on the values (use ``sa.where``): that raises a ValueError naming the line.

    Args:
        fun: ``(params, *rows) -> Value``.
        x0: ``(n,)`` for every problem, or ``(N, n)``.
        data: per-problem arrays, each ``(N,)`` or ``(N, d)``.
        method: ``"lbfgs"`` (the only batched method).
        workers: threads (None: every core). Ignored with ``executor``.
        executor: a ``concurrent.futures.Executor`` or a Dask ``Client.get_executor()``
            (the objective travels as its program).
        chunk_size: problems per chunk.
        progress: a progress bar on stderr (None: once the batch runs for 2 s).
        **options: the L-BFGS options of :func:`scalar_autograd.lbfgs`
            (``max_iterations``, ``history_size``, ``gradient_tolerance``, ``ftol``,
            ``max_evaluations``, ``c1``, ``c2``, ``max_line_search``).

    Returns:
        A :class:`BatchMinimizeResult`.

    Raises:
        TypeError, ValueError: bad arguments or options (named), an objective that
            branches on its values, or one that returns more than one output.
    """
    if not callable(fun):
        raise TypeError(f"fun must be callable; got {type(fun).__name__}")
    check_choice(method, "method", ("lbfgs",))
    config = LBFGSConfig(**options)
    try:
        start = np.asarray(x0, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"x0 must be an array of real numbers; got {type(x0).__name__}") \
            from None
    if start.ndim not in (1, 2) or start.shape[-1] == 0:
        raise ValueError(f"x0 must have shape (n,) or (N, n) with n >= 1; got {start.shape}")
    arrays, widths, count = problem_data(data, start.shape[0] if start.ndim == 2 else None)
    if start.ndim == 1:
        start = np.broadcast_to(start, (count, start.size))
    elif start.shape[0] != count:
        raise ValueError(f"x0 must have shape (n,) or (N, n) with N = {count} problems "
                         f"(the data's rows); got {start.shape}")
    n = start.shape[1]

    name = getattr(fun, "__name__", "fun")

    def build(params: list[Value], inputs: list[Value]) -> list[Any]:
        value = fun(params, *split_rows(inputs, arrays, widths))
        if isinstance(value, (list, tuple, np.ndarray)):
            raise ValueError(f"the objective {name!r} must return one Value (the "
                             f"objective); got a {type(value).__name__} of {len(value)}")
        return [value]

    function = trace_problem(build, n, sum(widths), f"the objective {name!r}")
    job = _MinimizeJob(function, config, np.ascontiguousarray(start, dtype=float),
                       stack_rows(arrays, count), sum(widths), uuid.uuid4().hex)
    interrupted = fan_out(job, workers=workers, executor=executor, chunk_size=chunk_size,
                          progress=progress, noun="problems")
    out = job.out
    return BatchMinimizeResult(x=out.x, fun=out.fun, status=out.status,
                               iterations=out.iterations, nfev=out.nfev,
                               grad_norm=out.grad_norm, interrupted=interrupted)
