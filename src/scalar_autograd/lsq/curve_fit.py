"""``sa.curve_fit`` and ``sa.batch_curve_fit``: scipy's ``curve_fit``, compiled, one fit or many.

The model ``f(x, *params)`` is written with ``sa`` ops for ONE sample: ``x`` is a Value
(or, for ``xdata`` of shape ``(k, m)``, a list of ``k`` Values) and each param a Value.
It is traced once and compiled, and cached per (function, number of x components,
number of params). Residuals are scipy's: ``(f(x_i, p) - y_i) / sigma_i``. The fit is
the small dense Levenberg-Marquardt loop of :mod:`scalar_autograd.lsq.native_lm`, run
in native code, one call per fit (or per chunk of a batch); options it does not take
(a robust ``loss``, ``callback``, ``verbose``, a 2-D ``sigma``) run the numpy loop of
:func:`scalar_autograd.lsq.levenberg_marquardt.levenberg_marquardt`, which gives the
same results to rounding.

``pcov`` follows scipy's rules: the pseudo-inverse of ``J^T J`` from the SVD of the
weighted Jacobian ``J`` at the solution (singular values below
``eps * max(m, n) * s_max`` dropped: scipy's rule for its ``trf`` method, which its
default ``lm`` only approximates for a singular ``J``), multiplied by
``2 * cost / (m - n)`` unless ``absolute_sigma``; with ``m <= n`` (and not
``absolute_sigma``) it is inf, with a :class:`~scalar_autograd.CovarianceWarning`
(scipy's ``OptimizeWarning``). The native loop forms ``(J^T J)^-1`` by a Cholesky
factorisation, for one fit as for a batch, and the SVD route is taken only for nearly
singular ``J^T J``; either way ``pcov`` is made exactly symmetric.

Bounds (``bounds=(lower, upper)`` with a finite bound) take scipy's route: its
``curve_fit`` then calls ``least_squares(method="trf")``, and so the fit here is the
Trust Region Reflective method of :mod:`scalar_autograd.lsq.trf` (in numpy, on the
compiled model), ``p0`` must lie within the bounds (``None``: scipy's feasible start,
the middle of a finite box, one inside a one-sided bound, 1 elsewhere), and ``pcov``
is always the SVD rule above (scipy's for ``trf``). Bounds all infinite are no bounds.

Example:
    >>> import numpy as np, scalar_autograd as sa
    >>> t = np.linspace(0, 4, 50)
    >>> y = 2.5 * np.exp(-1.3 * t) + 0.5
    >>> popt, pcov = sa.curve_fit(lambda x, a, b, c: a * sa.exp(-b * x) + c, t, y,
    ...                           p0=[1.0, 1.0, 1.0])
    >>> np.round(popt, 8).tolist()
    [2.5, 1.3, 0.5]
"""

from __future__ import annotations

import inspect
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from scalar_autograd.lsq import native_lm
from scalar_autograd.lsq.batch import (
    BatchFitResult,
    BatchJob,
    Model,
    _option_array,
    _pinv_normal,
    _symmetric,
    batch_bounds,
    solver_options,
    trace_model,
)
from scalar_autograd.lsq.levenberg_marquardt import levenberg_marquardt
from scalar_autograd.lsq.native_lm import STATUSES, BatchOutput
from scalar_autograd.lsq.options import (
    Bounds,
    SolverOptions,
    check_bounded_options,
    check_feasible,
    validate_bounds,
)
from scalar_autograd.lsq.result import CovarianceWarning
from scalar_autograd.lsq.trf import trust_region_reflective
from scalar_autograd.runtime.fanout import fan_out
from scalar_autograd.value import Value

SCIPY_OPTION_NAMES = {"ftol": "cost_tolerance", "xtol": "param_tolerance",
                      "gtol": "gradient_tolerance", "maxfev": "max_iterations"}
"""scipy ``leastsq`` keyword arguments accepted as aliases of the solver options
(``maxfev`` bounds the trial steps, which is ``nfev - 1``)."""

_MODELS: OrderedDict[tuple[Any, ...], Model] = OrderedDict()
_MODELS_LOCK = threading.Lock()
MAX_CACHED_MODELS = 128


def _n_params(f: Callable[..., Any], p0: Any) -> int:
    """``len(p0)``, or (scipy's rule) the number of ``f``'s arguments after ``x``."""
    if p0 is not None:
        return int(np.size(p0))
    try:
        signature = inspect.signature(f)
    except (TypeError, ValueError):
        raise ValueError("p0 is needed: the number of parameters cannot be read from f's "
                         "signature") from None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p for p in signature.parameters.values() if p.kind in kinds]
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        raise ValueError("p0 is needed: f takes *params, so the number of parameters "
                         "cannot be read from its signature")
    if len(names) < 2:
        raise ValueError(f"f must take x and at least one parameter, f(x, p1, ...); its "
                         f"signature is {signature}")
    return len(names) - 1


def _check_callable(f: Any) -> None:
    if not callable(f):
        raise TypeError(f"f must be callable: f(x, *params) -> Value; got "
                        f"{type(f).__name__}")


def _real_array(a: Any, name: str) -> np.ndarray:
    """``a`` as a float64 array, or a TypeError naming it."""
    try:
        return np.asarray(a, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of real numbers; got "
                        f"{type(a).__name__} {a!r:.60}") from None


def model_for(f: Callable[..., Any], k: int, n: int) -> Model:
    """The compiled one-sample model of ``f`` with ``k`` x components and ``n``
    params (traced on first use, then cached)."""
    _check_callable(f)
    key = (f, k, n)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            _MODELS.move_to_end(key)
            return model

    def build(params: list[Value], inputs: list[Value]) -> list[Any]:
        x = inputs[0] if k == 0 else list(inputs)
        return [f(x, *params)]

    name = getattr(f, "__name__", "f")
    model = trace_model(build, n, max(k, 1), 0, f"the model {name!r}")
    with _MODELS_LOCK:
        _MODELS[key] = model
        if len(_MODELS) > MAX_CACHED_MODELS:
            _MODELS.popitem(last=False)
    return model


_DEFAULT_OPTIONS = SolverOptions()


def _options(options: dict[str, Any]) -> SolverOptions:
    if not options:
        return _DEFAULT_OPTIONS
    return solver_options(options, SCIPY_OPTION_NAMES)


_UNBOUNDED = (-math.inf, math.inf)


def _check_bounds(bounds: Any, n: int) -> Bounds | None:
    """``bounds`` by scipy's rules (:func:`~scalar_autograd.lsq.options.validate_bounds`);
    None when there are none."""
    if bounds is _UNBOUNDED:
        return None
    return validate_bounds(bounds, n)


def _feasible_start(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """scipy ``curve_fit``'s start for ``p0=None`` with bounds: the middle of a finite
    box, one inside a one-sided bound, 1 where unbounded."""
    p0 = np.ones_like(lower)
    low, high = np.isfinite(lower), np.isfinite(upper)
    both = low & high
    p0[both] = 0.5 * (lower[both] + upper[both])
    p0[low & ~high] = lower[low & ~high] + 1
    p0[~low & high] = upper[~low & high] - 1
    return p0


def _xdata(xdata: Any, m: int | None, name: str = "xdata") -> tuple[np.ndarray, int]:
    """``xdata`` as ``(m, k)`` rows of samples and ``k`` (0: a 1-D xdata, one Value)."""
    x = _real_array(xdata, name)
    if x.ndim == 1:
        return np.ascontiguousarray(x.reshape(-1, 1)), 0
    if x.ndim == 2:
        return np.ascontiguousarray(x.T), x.shape[0]
    raise ValueError(f"{name} must have shape (m,) or (k, m); got {x.shape}")


def _weights(sigma: Any, shape: tuple[int, ...], name: str = "sigma") -> np.ndarray | None:
    """``1 / sigma`` for standard deviations of the given shape (positive, finite)."""
    if sigma is None:
        return None
    s = _real_array(sigma, name)
    if s.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, one per sample; got {s.shape}")
    bad = ~((s > 0) & np.isfinite(s))
    if np.any(bad):
        raise ValueError(f"{name} must hold positive finite numbers; got "
                         f"{s[bad][:3].tolist()}")
    return np.ascontiguousarray(1.0 / s)


def curve_fit(
    f: Callable[..., Any],
    xdata: Any,
    ydata: Any,
    p0: Any = None,
    sigma: Any = None,
    absolute_sigma: bool = False,
    check_finite: bool = True,
    bounds: tuple[Any, Any] = _UNBOUNDED,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``f(x, *params)`` to ``(xdata, ydata)`` by least squares; scipy's signature.

    Args:
        f: the model for ONE sample, written with ``sa`` ops: ``f(x, *params)``; ``x``
            is a Value (a list of ``k`` Values for ``xdata`` of shape ``(k, m)``).
        xdata: ``(m,)`` or ``(k, m)`` sample positions.
        ydata: ``(m,)`` observations.
        p0: the start (default: all ones, as scipy; the count from ``f``'s signature).
        sigma: ``(m,)`` standard deviations of ``ydata`` (residuals are divided by
            them), a scalar (one for every sample), or ``(m, m)``: their covariance
            matrix.
        absolute_sigma: ``sigma`` is absolute (``pcov`` is not rescaled by the
            residual variance).
        check_finite: raise on nan or inf in ``xdata``/``ydata`` (scipy's default).
        bounds: ``(lower, upper)``, scalars or arrays of ``n``, ``-inf``/``inf`` for
            none (scipy's): with a finite bound the fit is scipy's ``trf`` method (see
            the module docstring); ``p0`` must lie within them.
        **options: solver options (``max_iterations``, ``cost_tolerance``,
            ``param_tolerance``, ``gradient_tolerance``, ``loss``, ...) or scipy's
            ``ftol``, ``xtol``, ``gtol``, ``maxfev``.

    Returns:
        ``(popt, pcov)``: the parameters and their covariance.

    Raises:
        RuntimeError: the fit did not converge (scipy's "Optimal parameters not
            found"), naming the status.
        ValueError, TypeError: bad arguments (named), non-finite data with
            ``check_finite``, a model that branches in Python on its values, bad
            bounds or a ``p0`` outside them ("p0 is infeasible").

    Example (a decay rate bounded below by 0.5 while the data want 0.3):
        >>> import numpy as np, scalar_autograd as sa
        >>> t = np.linspace(0, 4, 40)
        >>> popt, pcov = sa.curve_fit(lambda x, a, k: a * sa.exp(-k * x), t,
        ...                           2.0 * np.exp(-0.3 * t), p0=[1.0, 1.0],
        ...                           bounds=([0.0, 0.5], [10.0, 5.0]))
        >>> round(float(popt[1]), 9)
        0.5
    """
    popt, pcov, _ = _fit_one(f, xdata, ydata, p0, sigma, absolute_sigma, check_finite,
                             bounds, options)
    return popt, pcov


def _fit_one(f: Callable[..., Any], xdata: Any, ydata: Any, p0: Any, sigma: Any,
             absolute_sigma: bool, check_finite: bool, bounds: Any,
             options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, BatchOutput]:
    _check_callable(f)
    n = _n_params(f, p0)
    if n == 0:
        raise ValueError("p0 must hold at least one parameter; got an empty p0")
    limits = _check_bounds(bounds, n)
    if p0 is not None:
        start = _real_array(p0, "p0").reshape(-1)
    else:
        start = np.ones(n) if limits is None else _feasible_start(*limits)
    opts = _options(options)
    if limits is not None:
        check_bounded_options(opts)
    X, k = _xdata(xdata, None)
    m = X.shape[0]
    y = _real_array(ydata, "ydata")
    if y.shape != (m,):
        raise ValueError(f"ydata must have shape ({m},) like xdata's samples; got {y.shape}")
    if check_finite and not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        which = "xdata" if not np.all(np.isfinite(X)) else "ydata"
        raise ValueError(f"{which} must not hold nan or inf (pass check_finite=False to "
                         f"fit anyway)")
    if not np.all(np.isfinite(start)):
        raise ValueError(f"p0 must be finite; got {start.tolist()}")
    if limits is not None:
        check_feasible(start, limits, "p0")
    model = model_for(f, k, n).with_rows(m)
    sigma_arr = None if sigma is None else _real_array(sigma, "sigma")
    if sigma_arr is not None and sigma_arr.size == 1:      # scipy: one sigma for all
        sigma_arr = np.full(m, sigma_arr.item())
    W = None
    if sigma_arr is not None and sigma_arr.ndim == 2:
        out = _fit_covariance_sigma(model, X, y, sigma_arr, start, opts, limits)
    else:
        W = _weights(sigma_arr, (m,))
        if limits is not None:
            out = _fit_bounded(model, X, y, W, start, opts, limits)
        elif native_lm.supports(opts, n) and model.function.backend == "llvm":
            # one problem: this thread's bound buffers, one native call
            values = _option_array(opts)
            out = native_lm.single_solve(model.solver(), m).solve(
                start, X.reshape(-1), y, W, values, values.ctypes.data)
        else:
            job = BatchJob(model, start.reshape(1, n), X.reshape(-1), 0, y, W, opts)
            job.solve(0, 1)
            out = job.out
    status = STATUSES[int(out.status[0])]
    if not status.success:
        raise RuntimeError(f"Optimal parameters not found: {status.value}")
    popt = out.x[0].copy()
    if out.covariance is not None and np.isfinite(out.covariance[0]).all():
        # (J^T J)^-1 by a well-conditioned Cholesky (exactly symmetric)
        pcov = out.covariance[0].copy()
        warn = False
    else:                                  # nearly singular: scipy's SVD rule
        J = out.jacobian[0] if out.jacobian is not None \
            else _weighted_jacobian(model, X, popt, W)
        pcov = _symmetric(_pinv_normal(J))
        warn = not np.isfinite(pcov).all()
    if warn:
        pcov = np.full((n, n), np.inf)
    elif not absolute_sigma:
        if m > n:
            pcov = pcov * (2.0 * float(out.cost[0]) / (m - n))
        else:
            pcov = np.full((n, n), np.inf)
            warn = True
    if warn:
        warnings.warn("Covariance of the parameters could not be estimated",
                      CovarianceWarning, stacklevel=3)
    return popt, pcov, out


def _weighted_jacobian(model: Model, X: np.ndarray, p: np.ndarray,
                       W: np.ndarray | None) -> np.ndarray:
    """The Jacobian of the residuals weighted by ``W`` (``1 / sigma``) at ``p`` (for
    ``pcov``; the same product as the batch's, so the two agree bit for bit)."""
    _, J = model.function.batch_jacobian(np.broadcast_to(p, (X.shape[0], p.size)), X)
    J = J.reshape(X.shape[0], p.size)
    return J if W is None else J * W[:, None]


def _fit_bounded(model: Model, X: np.ndarray, y: np.ndarray, W: np.ndarray | None,
                 start: np.ndarray, opts: SolverOptions, limits: Bounds) -> BatchOutput:
    """A bounded fit: residuals ``(f - y) / sigma``, scipy's ``trf`` method."""
    m = X.shape[0]

    def rj(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        V, J = model.function.batch_jacobian(np.broadcast_to(p, (m, p.size)), X)
        r, Jm = V.reshape(-1) - y, J.reshape(m, -1)
        if W is not None:
            r, Jm = r * W, Jm * W[:, None]
        return r, Jm

    return _output(trust_region_reflective(rj, lambda p: rj(p)[0], start, limits[0],
                                           limits[1], opts), start, m)


def _output(result: Any, start: np.ndarray, m: int) -> BatchOutput:
    """A :class:`~scalar_autograd.LeastSquaresResult` as a one-row
    :class:`~scalar_autograd.lsq.native_lm.BatchOutput` (with its Jacobian)."""
    out = BatchOutput.empty(start.reshape(1, -1), m)
    out.x[0], out.cost[0] = result.x, result.cost
    out.status[0] = STATUSES.index(result.status)
    out.jacobian = np.asarray(result.jacobian).reshape(1, m, -1)
    return out


def _fit_covariance_sigma(model: Model, X: np.ndarray, y: np.ndarray, sigma: np.ndarray,
                          start: np.ndarray, opts: SolverOptions,
                          limits: Bounds | None = None) -> BatchOutput:
    """A fit with a covariance matrix ``sigma``: residuals ``L^-1 (f - y)`` with
    ``sigma = L L^T`` (scipy's transform), by the numpy loop (``trf`` with bounds)."""
    m = X.shape[0]
    if sigma.shape != (m, m):
        raise ValueError(f"sigma must have shape ({m},) or ({m}, {m}); got {sigma.shape}")
    if not np.all(np.isfinite(sigma)):
        raise ValueError("sigma (a covariance matrix) must hold finite numbers")
    try:
        L = np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        raise ValueError("sigma (a covariance matrix) must be positive definite") from None
    from scipy.linalg import solve_triangular

    def rj(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        V, J = model.function.batch_jacobian(np.broadcast_to(p, (m, p.size)), X)
        return (solve_triangular(L, V.reshape(-1) - y, lower=True),
                solve_triangular(L, J.reshape(m, -1), lower=True))

    if limits is None:
        result = levenberg_marquardt(rj, lambda p: rj(p)[0], start, opts)
    else:
        result = trust_region_reflective(rj, lambda p: rj(p)[0], start, limits[0],
                                         limits[1], opts)
    return _output(result, start, m)


def batch_curve_fit(
    f: Callable[..., Any],
    xdata: Any,
    ydata: Any,
    p0: Any,
    sigma: Any = None,
    absolute_sigma: bool = False,
    bounds: tuple[Any, Any] = _UNBOUNDED,
    *,
    workers: int | None = None,
    executor: Any = None,
    chunk_size: int | None = None,
    progress: bool | None = None,
    **options: Any,
) -> BatchFitResult:
    """``N`` independent fits of one model: :func:`curve_fit` over the rows of ``ydata``.

    Args:
        f: the model for ONE sample (as :func:`curve_fit`).
        xdata: ``(m,)`` shared by every fit, or ``(N, m)`` per fit; for ``k`` x
            components ``(k, m)`` shared (``k != N``) or ``(N, k, m)`` per fit.
        ydata: ``(N, m)`` observations, one fit per row. A row with nan or inf gets
            the status ``NONFINITE_INITIAL``; the other fits go on.
        p0: ``(n,)`` for every fit or ``(N, n)``.
        sigma: ``(m,)`` shared or ``(N, m)`` per fit standard deviations (or a
            scalar for every sample of every fit).
        absolute_sigma: as :func:`curve_fit`.
        bounds: ``(lower, upper)`` shared by every fit (as :func:`curve_fit`'s): each
            fit is then scipy's ``trf`` method, in numpy, and every row of ``p0`` must
            lie within them; the result's ``active_mask`` tells which bounds hold.
        workers: threads (None: every core); ignored with ``executor``.
        executor: a ``concurrent.futures.Executor`` or a Dask ``Client.get_executor()``
            to fan the chunks out to (the model travels as its program).
        chunk_size: fits per chunk.
        progress: a progress bar on stderr (None: once the batch runs for 2 s).
        **options: as :func:`curve_fit`.

    Returns:
        A :class:`~scalar_autograd.BatchFitResult` (``popt``, ``pcov``, ``cost``,
        ``status``, ``success``, ``iterations``, ``nfev``, ...). A KeyboardInterrupt
        returns the fits done so far (``interrupted`` is true; the others have status
        ``NOT_RUN``).

    Example:
        >>> import numpy as np, scalar_autograd as sa
        >>> x = np.linspace(-3, 3, 32)
        >>> truth = np.array([[2.0, 0.5, 1.0], [1.0, -1.0, 0.7]])
        >>> Y = truth[:, :1] * np.exp(-0.5 * ((x - truth[:, 1:2]) / truth[:, 2:]) ** 2)
        >>> gauss = lambda x, a, mu, s: a * sa.exp(-0.5 * ((x - mu) / s) ** 2)
        >>> res = sa.batch_curve_fit(gauss, x, Y, p0=[1.0, 0.0, 1.0])
        >>> np.allclose(res.popt, truth), res.success.tolist()
        (True, [True, True])
    """
    _check_callable(f)
    n_p0 = _real_array(p0, "p0")
    if n_p0.ndim not in (1, 2) or n_p0.shape[-1] == 0:
        raise ValueError(f"p0 must have shape (n,) or (N, n) with n >= 1 params; got "
                         f"{n_p0.shape}")
    n = n_p0.shape[-1]
    opts = _options(options)
    Y = _real_array(ydata, "ydata")
    if Y.ndim != 2:
        raise ValueError(f"ydata must have shape (N, m): one fit per row; got {Y.shape}")
    count, m = Y.shape
    x = _real_array(xdata, "xdata")
    if (x.ndim == 2 and x.shape == (count, m)) or (x.ndim == 3 and x.shape[0] == count
                                                    and x.shape[2] == m):
        # per fit: (N, m), or (N, k, m) for k components
        k = 0 if x.ndim == 2 else x.shape[1]
        rows = x.reshape(count, m, 1) if x.ndim == 2 else np.swapaxes(x, 1, 2)
        U, u_stride = np.ascontiguousarray(rows).reshape(-1), m * max(k, 1)
    elif x.ndim in (1, 2):
        X, k = _xdata(x, m)
        if X.shape[0] != m:
            raise ValueError(f"xdata must have m = {m} samples (ydata's columns) as its "
                             f"last axis; got shape {x.shape}")
        U, u_stride = X.reshape(-1), 0
    else:
        raise ValueError(f"xdata must have shape (m,) or (k, m) (shared), or (N, m) or "
                         f"(N, k, m) (per fit); got {x.shape}")
    start = np.broadcast_to(n_p0, (count, n)) if n_p0.ndim == 1 else n_p0
    if start.shape != (count, n):
        raise ValueError(f"p0 must have shape ({n},) or ({count}, {n}); got {n_p0.shape}")
    limits = None if bounds is _UNBOUNDED else batch_bounds(bounds, start, opts, "p0")
    W = None
    if sigma is not None:
        s = _real_array(sigma, "sigma")
        if s.size == 1:
            s = np.full(m, s.item())
        if s.shape not in ((m,), (count, m)):
            raise ValueError(f"sigma must have shape ({m},) or ({count}, {m}); got {s.shape}")
        W = _weights(s, s.shape)
    try:
        model = model_for(f, k, n).with_rows(m)
    except (TypeError, ValueError) as e:
        if u_stride == 0 and k > 0:     # perhaps meant per fit, with the wrong N
            e.add_note(f"xdata of shape {x.shape} was read as k = {k} components of x "
                       f"shared by every fit; one row of xdata per fit needs shape "
                       f"({count}, {m})")
        raise
    job = BatchJob(model, np.ascontiguousarray(start, dtype=float), np.ascontiguousarray(U),
                   u_stride, np.ascontiguousarray(Y), W, opts, bounds=limits,
                   absolute_sigma=bool(absolute_sigma))
    interrupted = fan_out(job, workers=workers, executor=executor, chunk_size=chunk_size,
                          progress=progress, noun="fits")
    return job.result(interrupted)
