"""Trust-region Newton: exact Moré–Sorensen steps for small n, Steihaug–CG for large n.

:func:`newton_minimize` minimises a smooth function given as a :class:`NewtonOracle`
(``fun_and_grad(x) -> (f, g)`` with ``hessian(x) -> H`` and/or ``hvp(x, v) -> H v``)
on float64 vectors, by the trust-region method of Nocedal & Wright (Algorithm 4.1),
with scipy's constants (``trust-exact``/``trust-ncg``: initial radius 1, largest
radius 1000, ``eta = 0.15``; shrink by 4 when ``rho < 1/4``, double when ``rho > 3/4``
and the step reached the boundary). Each iteration solves the model problem

    min_p  g.p + p.H.p / 2   subject to  |p| <= radius

in one of two ways (``NewtonConfig.subproblem``):

* ``"exact"`` (Moré & Sorensen 1983, N&W Algorithm 4.3, scipy's ``trust-exact``): the
  step ``p = -(H + lambda I)^-1 g`` with ``lambda >= 0`` found by safeguarded Newton
  iterations on ``1/|p(lambda)| = 1/radius``, one Cholesky factorisation each, inside
  Gershgorin/Frobenius bounds; ``|p|`` within 10% of the radius is accepted
  (``k_easy``). The *hard case* (``g`` orthogonal to the eigenvectors of the smallest
  eigenvalue of an indefinite ``H``) is resolved by adding ``tau z`` along that
  eigenvector up to the boundary when it leaves the model within 20% of its optimum
  (``k_hard``). Where Moré–Sorensen estimate the smallest eigenpair (a LINPACK
  singular-vector estimate, or a singular leading submatrix when a factorisation
  fails), this computes it with one ``numpy.linalg.eigh`` per iterate, only when
  needed: exact, and for the ``n`` where this runs as cheap as one factorisation.
* ``"cg"`` (Steihaug 1983, N&W Algorithm 7.2, scipy's ``trust-ncg``): conjugate
  gradients on ``H p = -g`` with Hessian-vector products only, stopped at the
  boundary, along a direction of negative curvature, or at the residual
  ``min(0.5, sqrt|g|) |g|`` (superlinear convergence).

``"auto"`` takes the exact subproblem for ``n <= DENSE_MAX_N`` and CG above it.

It stops when ``max |g_i| <= gradient_tolerance`` (the infinity norm, as ``sa.lbfgs``;
scipy's trust-region methods test the 2-norm, which is never smaller, against ``gtol``),
at ``max_iterations`` (every iteration counts, accepted or not, as scipy's ``nit``), or
when rounding leaves no progress possible (:attr:`~.result.Status.NO_PROGRESS`). Two
departures from scipy, both only where scipy would fail: a trial point whose value,
gradient or Hessian is not finite is rejected (the radius shrinks), and a step whose
predicted and actual reductions are both at the rounding level of ``f`` is accepted.

Example:
    >>> import numpy as np
    >>> def fun_and_grad(x):
    ...     a, b = x
    ...     f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    ...     return f, np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
    >>> def hessian(x):
    ...     a, b = x
    ...     return np.array([[2 - 400 * (b - 3 * a * a), -400 * a], [-400 * a, 200.0]])
    >>> r = newton_minimize(NewtonOracle(fun_and_grad, hessian=hessian), [-1.2, 1.0])
    >>> r.status.name, np.round(r.x, 8).tolist()
    ('CONVERGED_GRADIENT', [1.0, 1.0])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalar_autograd.optim.equations import FloatArray
from scalar_autograd.optim.lbfgs import Callback
from scalar_autograd.optim.oracles import (
    TracedOracle,
    check_compiled,
    compiled_graph,
    input_values,
    is_compiled_function,
)
from scalar_autograd.optim.result import OptimizeResult, Status
from scalar_autograd.runtime.jit import MAX_SPECIALIZATIONS
from scalar_autograd.validation import (
    check_callback,
    check_choice,
    check_fields,
    check_nonnegative_float,
    check_optional,
    check_positive_float,
    check_positive_int,
    check_real_array,
    check_real_in,
)
from scalar_autograd.value import Value

DENSE_MAX_N = 100
"""``subproblem="auto"`` solves the exact (dense) subproblem up to this many params, and
runs Steihaug–CG on Hessian-vector products above it.

Why 100. Up to there the exact step's fewer iterations win: on the extended Rosenbrock
function with n = 100, trust-exact takes 204 iterations (scipy: 206) where Steihaug–CG
takes 460 (scipy's trust-ncg: 461), and the subproblem's factorisations (``n^3 / 3``
flops each, a few per iteration) cost about as much as the CG iterations' products.
Above it the dense path's costs grow fastest: ``n^2`` numbers per iterate, ``n^3``
factorisations, and a Hessian program of up to ``n`` gradient sweeps. Measured here (2
shared cores; build times vary with load): sparse couplings stay small (Rosenbrock
n = 100: 4,158 instructions, 2.3 times its gradient program, built in 0.05 s); a
function where every param meets every other through one sum grows as ``n^2``
(n = 100: 36k instructions, built in 0.3-0.7 s; n = 200: 142k, 1-2 s); one written term
by term as a dense quadratic form grows as ``n^3`` (n = 50: 264k instructions, 2-5 s;
n = 100: 2.1M, 30-40 s, where its HVP kernel builds in under 2 s). For such densely
coupled graphs with n in the tens, pass ``subproblem="cg"`` (``method="newton-cg"``)."""

SUBPROBLEMS = ("auto", "exact", "cg")
"""The values of ``NewtonConfig.subproblem``."""

_K_EASY = 0.1     # accept |p| within 10% of the radius (Moré–Sorensen's sigma_1)
_K_HARD = 0.2     # accept the hard-case step within 20% of the model's optimum
_UPDATE = 0.01    # safeguard: lambda at least 1% into [lambda_lb, lambda_ub]
_MAX_LAMBDA_STEPS = 100
_EPS = float(np.finfo(np.float64).eps)
_ROUNDING = 10.0 * _EPS
"""A predicted and an actual reduction both below this times ``|f|`` are
rounding noise: the step is accepted as the model predicts (Conn, Gould & Toint,
*Trust-Region Methods*, 17.4.2), so the gradient can go on shrinking after ``f`` stops
changing in its last bits. Without it the ratio of two noises decides."""


def _check_eta(value: Any, name: str) -> float:
    return check_real_in(value, name, "a real number in [0, 0.25)", lambda v: 0 <= v < 0.25)


@dataclass(frozen=True)
class NewtonConfig:
    """Validated options of :func:`newton_minimize` (scipy's trust-region defaults).

    Attributes:
        subproblem: ``"auto"`` (``"exact"`` up to :data:`DENSE_MAX_N` params, else
            ``"cg"``), ``"exact"`` (Moré–Sorensen on the dense Hessian) or ``"cg"``
            (Steihaug–CG on Hessian-vector products).
        max_iterations: the most iterations, accepted or rejected; ``None`` is scipy's
            ``200 * n``.
        gradient_tolerance: stop when ``max |g_i| <= gradient_tolerance`` (>= 0).
        initial_trust_radius: the first radius (> 0).
        max_trust_radius: the largest radius (>= ``initial_trust_radius``).
        eta: accept a step when the actual reduction is more than ``eta`` times the
            predicted one, in ``[0, 0.25)``.
        max_cg_iterations: the most CG iterations per step; ``None`` is ``2 n``.

    Example:
        >>> NewtonConfig(subproblem="cg").max_trust_radius
        1000.0
        >>> NewtonConfig(eta=0.5)
        Traceback (most recent call last):
        ...
        ValueError: `eta` must be a real number in [0, 0.25); got 0.5
    """

    subproblem: str = "auto"
    max_iterations: int | None = None
    gradient_tolerance: float = 1e-6
    initial_trust_radius: float = 1.0
    max_trust_radius: float = 1000.0
    eta: float = 0.15
    max_cg_iterations: int | None = None

    def __post_init__(self) -> None:
        check_fields(self, {
            "subproblem": lambda v, name: check_choice(v, name, SUBPROBLEMS),
            "max_iterations": check_optional(check_positive_int),
            "gradient_tolerance": check_nonnegative_float,
            "initial_trust_radius": check_positive_float,
            "max_trust_radius": check_positive_float,
            "eta": _check_eta,
            "max_cg_iterations": check_optional(check_positive_int),
        })
        if self.initial_trust_radius > self.max_trust_radius:
            raise ValueError(f"`initial_trust_radius` must be at most `max_trust_radius`; "
                             f"got {self.initial_trust_radius!r} > {self.max_trust_radius!r}")

    def uses_exact(self, n: int) -> bool:
        """Whether a problem of ``n`` params gets the exact (dense) subproblem."""
        if self.subproblem == "auto":
            return n <= DENSE_MAX_N
        return self.subproblem == "exact"


FunAndGrad = Callable[[FloatArray], tuple[float, FloatArray]]
Hessian = Callable[[FloatArray], FloatArray]
HVP = Callable[[FloatArray, FloatArray], FloatArray]


@dataclass(frozen=True)
class NewtonOracle:
    """What :func:`newton_minimize` calls: the value and gradient, and the Hessian or
    Hessian-vector products (or both), on float64 vectors.

    The returned arrays may be buffers the oracle reuses: the solver copies what it
    keeps. With only ``hvp``, the exact subproblem builds ``H`` from ``n`` products
    (symmetrised); with only ``hessian``, CG multiplies by ``H`` (one per iterate).

    Attributes:
        fun_and_grad: ``x -> (f(x), grad f(x))``.
        hessian: ``x -> H(x)``, an ``(n, n)`` array, or ``None``.
        hvp: ``(x, v) -> H(x) v``, or ``None``.

    Raises:
        TypeError: a member that is not callable, or neither ``hessian`` nor ``hvp``.
    """

    fun_and_grad: FunAndGrad
    hessian: Hessian | None = None
    hvp: HVP | None = None

    def __post_init__(self) -> None:
        if not callable(self.fun_and_grad):
            raise TypeError(f"`fun_and_grad` must be callable; got "
                            f"{type(self.fun_and_grad).__name__}")
        check_callback(self.hessian, "hessian")
        check_callback(self.hvp, "hvp")
        if self.hessian is None and self.hvp is None:
            raise TypeError("a NewtonOracle needs `hessian` or `hvp` (or both); got neither")


# ---------------------------------------------------------------------------- oracles
def compiled_oracle(function: Any, inputs: Any = None) -> NewtonOracle:
    """The oracle of a compiled scalar function (``sa.compile``): its value-and-gradient,
    Hessian and Hessian-vector-product kernels, on buffers reused between calls.

    Args:
        function: a :class:`~scalar_autograd.CompiledFunction` with one output.
        inputs: its runtime input values (numbers); ``None``: its input leaves' ``.data``.

    Raises:
        ValueError: the function has more than one output, or ``inputs`` a wrong length.

    Example:
        >>> import scalar_autograd as sa
        >>> a, b = sa.Value(0.0), sa.Value(0.0)
        >>> f = sa.compile((1 - a) ** 2 + 100 * (b - a * a) ** 2, [a, b])
        >>> r = newton_minimize(compiled_oracle(f), [-1.2, 1.0])
        >>> r.success, r.iterations, bool(abs(r.x - 1).max() < 1e-8)  # scipy trust-exact: 25
        (True, 25, True)
    """
    if not is_compiled_function(function) or not hasattr(function, "hessian"):
        raise TypeError(f"`function` must be a compiled function (sa.compile); got "
                        f"{type(function).__name__}")
    n_outputs = getattr(function, "n_outputs", 1)
    if n_outputs != 1:
        raise ValueError(f"the compiled objective must have one output (a scalar loss); "
                         f"it has {n_outputs}")
    n = function.n_params
    u = input_values(function, inputs) if function.n_inputs else None
    g = np.empty(n)
    hv = np.empty(n)
    h = _LazyMatrix(n)

    def fun_and_grad(x: FloatArray) -> tuple[float, FloatArray]:
        f, _ = function.value_and_grad(x, u, out=g)
        return f, g

    def hessian(x: FloatArray) -> FloatArray:
        return function.hessian(x, u, out=h.get())  # type: ignore[no-any-return]

    def hvp(x: FloatArray, v: FloatArray) -> FloatArray:
        return function.hvp(x, v, u, out=hv)  # type: ignore[no-any-return]

    return NewtonOracle(fun_and_grad, hessian, hvp)


class _LazyMatrix:
    """An ``(n, n)`` buffer allocated on first use (a CG solve never needs one)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.buffer: FloatArray | None = None

    def get(self) -> FloatArray:
        if self.buffer is None:
            self.buffer = np.empty((self.n, self.n))
        return self.buffer


class _TracedSecondOrder(TracedOracle):
    """A :class:`~.oracles.TracedOracle` whose Hessian kernels serve the point last
    evaluated: those of the specialisation (branch pattern) that evaluated it,
    :attr:`~.oracles.TracedOracle.current`."""

    def at(self, x: FloatArray) -> Any:
        """The compiled function whose guards hold at ``x`` (evaluating there if ``x``
        is not the last point)."""
        if self.current is None or not np.array_equal(x, self.x):
            self(x)
        return self.current


def traced_oracle(objective: Callable[[list[Value]], Value], params: Sequence[Value],
                  inputs: Sequence[Value] = (), *,
                  max_specializations: int = MAX_SPECIALIZATIONS,
                  backend: str = "auto") -> NewtonOracle:
    """The oracle of a Python objective ``objective(params) -> Value``, traced with
    guards as ``sa.minimize`` traces one (see :class:`~.oracles.TracedOracle`): the
    Hessian at a point comes from the specialisation whose branches hold there.

    Example:
        >>> import scalar_autograd as sa
        >>> w = [sa.Value(0.0)]
        >>> oracle = traced_oracle(lambda p: (p[0] - 2) ** 2 if p[0] > 0 else -p[0], w)
        >>> r = newton_minimize(oracle, [1.0])
        >>> r.success, r.x.tolist()
        (True, [2.0])
    """
    traced = _TracedSecondOrder(objective, params, inputs=inputs,
                                max_specializations=max_specializations, backend=backend)
    n = len(params)
    h = _LazyMatrix(n)
    hv = np.empty(n)

    def hessian(x: FloatArray) -> FloatArray:
        return traced.at(x).hessian(x, traced.inputs, out=h.get())  # type: ignore[no-any-return]

    def hvp(x: FloatArray, v: FloatArray) -> FloatArray:
        return traced.at(x).hvp(x, v, traced.inputs, out=hv)  # type: ignore[no-any-return]

    return NewtonOracle(traced, hessian, hvp)


def newton_oracle(loss: Any, params: Sequence[Value], inputs: Any = (), *,
                  backend: str = "auto",
                  max_specializations: int = MAX_SPECIALIZATIONS) -> NewtonOracle:
    """The oracle of any loss ``sa.minimize`` takes, for ``method="newton"``.

    Args:
        loss: a ``Value`` graph of ``params`` (compiled once, reused as ``sa.minimize``
            reuses it), a compiled function of ``params``, or a function
            ``loss(params) -> Value`` (traced with guards).
        params: the leaf Values, in order.
        inputs: leaf Values compiled (or traced) as runtime inputs, or for a compiled
            ``loss`` its input values (numbers; empty: its input leaves' ``.data``).
        backend: the JIT backend of a ``Value`` or function loss.
        max_specializations: branch patterns of a function loss.

    Raises:
        TypeError: a loss of another kind.
        ValueError: a compiled loss of other params or with several outputs.
    """
    if isinstance(loss, Value):
        return compiled_oracle(compiled_graph(loss, list(params), list(inputs),
                                              backend=backend))
    if is_compiled_function(loss):
        check_compiled(loss, list(params))
        return compiled_oracle(loss, inputs)
    if callable(loss):
        return traced_oracle(loss, params, list(inputs),
                             max_specializations=max_specializations, backend=backend)
    raise TypeError(f"`loss` must be a Value, a compiled function or a function of the "
                    f"params; got {type(loss).__name__} {loss!r:.60}")


# ---------------------------------------------------------------------------- subproblems
def _boundary_steps(z: FloatArray, d: FloatArray, radius: float) -> tuple[float, float]:
    """The roots ``ta <= tb`` of ``|z + t d| = radius`` (``|z| <= radius``, ``d != 0``)."""
    a = float(d @ d)
    b = 2.0 * float(z @ d)
    c = float(z @ z) - radius * radius
    root = math.sqrt(max(b * b - 4.0 * a * c, 0.0))
    aux = b + math.copysign(root, b)  # no cancellation
    if aux == 0.0:
        return 0.0, 0.0
    ta, tb = -aux / (2.0 * a), -2.0 * c / aux
    return (ta, tb) if ta <= tb else (tb, ta)


def _cholesky(a: FloatArray) -> FloatArray | None:
    """The lower Cholesky factor of ``a``, or ``None`` when ``a`` is not positive definite."""
    try:
        factor = np.asarray(np.linalg.cholesky(a), dtype=np.float64)
    except np.linalg.LinAlgError:
        return None
    return factor if bool(np.isfinite(factor).all()) else None


def _solve_lower(lower: FloatArray, b: FloatArray, transposed: bool = False) -> FloatArray:
    """``L^-1 b`` (or ``L^-T b``): LAPACK's triangular solve ``dtrtrs`` when scipy imports
    (``n^2`` flops, about 1 us at n = 7 and 9 us at n = 100), else numpy's LU solve of
    the triangular factor (``n^3 / 3`` flops; numpy has no triangular solve). The factor
    comes from a successful Cholesky factorisation, so its diagonal is positive."""
    trtrs = _triangular_solver()
    if trtrs is None:  # pragma: no cover - numpy-only install
        matrix = lower.T if transposed else lower
        return np.asarray(np.linalg.solve(matrix, b), dtype=np.float64)
    x, info = trtrs(lower, b, lower=1, trans=1 if transposed else 0)
    if info != 0:  # pragma: no cover - a zero pivot, impossible after a Cholesky success
        raise np.linalg.LinAlgError(f"dtrtrs failed (info={info})")
    return np.asarray(x, dtype=np.float64)


@functools.cache
def _triangular_solver() -> Callable[..., Any] | None:
    """``scipy.linalg.lapack.dtrtrs``, or ``None`` without scipy (looked up once)."""
    try:
        from scipy.linalg.lapack import dtrtrs
    except ImportError:  # pragma: no cover - numpy-only install
        return None
    return dtrtrs  # type: ignore[no-any-return]


class _Exact:
    """The trust-region subproblem of one iterate with the dense Hessian (Moré–Sorensen).

    Made once per iterate and reused after a rejected step (a smaller radius), whose
    solve starts from the lower bound of ``lambda`` the previous one found, as scipy's.
    """

    def __init__(self, g: FloatArray, h: FloatArray) -> None:
        self.g = g
        self.h = h
        self.g_norm = float(np.linalg.norm(g))
        diag = np.diag(h)
        rows = np.abs(h).sum(axis=1)
        off = rows - np.abs(diag)
        self.diag_min = float(diag.min())
        self.gershgorin_lb = float((diag - off).min())
        self.gershgorin_ub = float((diag + off).max())
        self.norm = min(float(np.linalg.norm(h)), float(rows.max()))  # Frobenius, inf
        self._eigen: tuple[float, FloatArray] | None = None
        self.previous_radius = math.inf
        self.previous_lb = 0.0

    def smallest(self) -> tuple[float, FloatArray]:
        """The smallest eigenvalue of ``H`` and a unit eigenvector (computed once)."""
        if self._eigen is None:
            w, v = np.linalg.eigh(self.h)
            self._eigen = (float(w[0]), v[:, 0].copy())
        return self._eigen

    def solve(self, radius: float) -> tuple[FloatArray, bool]:
        """The step and whether it lies on the boundary (within ``k_easy``)."""
        h, g, n = self.h, self.g, self.g.size
        eye = np.eye(n)
        lam_lb = max(0.0, -self.diag_min, self.g_norm / radius
                     - min(self.gershgorin_ub, self.norm))
        lam_ub = max(0.0, self.g_norm / radius + min(-self.gershgorin_lb, self.norm))
        if radius < self.previous_radius:
            lam_lb = max(lam_lb, self.previous_lb)
        self.previous_radius = radius
        lam = 0.0 if lam_lb == 0.0 else _between(lam_lb, lam_ub)
        p: FloatArray | None = None
        for _ in range(_MAX_LAMBDA_STEPS):
            factor = _cholesky(h + lam * eye)
            if factor is None:  # H + lam I indefinite: lam is below -lambda_min(H)
                w_min, _ = self.smallest()
                lam_lb = max(lam_lb, lam, -w_min)
                lam_ub = max(lam_ub, lam_lb * (1.0 + 4.0 * _EPS) + _EPS)
                lam = _between(lam_lb, lam_ub)
                continue
            if self.g_norm == 0.0:  # a stationary point: p = 0, or the hard case
                w_min, z = self.smallest()
                self.previous_lb = lam_lb
                return (radius * z, True) if w_min < 0.0 else (np.zeros(n), False)
            p = -_solve_lower(factor, _solve_lower(factor, g), transposed=True)
            p_norm = float(np.linalg.norm(p))
            if lam == 0.0 and p_norm <= radius:  # the Newton step, inside
                self.previous_lb = lam_lb
                return p, False
            w = _solve_lower(factor, p)
            w_norm = float(np.linalg.norm(w))
            lam_new = lam + (p_norm / w_norm) ** 2 * (p_norm - radius) / radius
            if p_norm < radius:  # lam > 0 and inside: lam too large, or the hard case
                w_min, z = self.smallest()
                s_min2 = max(w_min + lam, 0.0)   # z.(H + lam I).z
                ta, tb = _boundary_steps(p, z, radius)
                tau = ta if abs(ta) <= abs(tb) else tb  # scipy: min((ta, tb), key=abs)
                quadratic = float(p @ (h @ p)) + lam * p_norm * p_norm
                if tau * tau * s_min2 <= _K_HARD * (quadratic + lam * radius * radius):
                    self.previous_lb = lam_lb
                    return p + tau * z, True
                lam_ub = lam
                lam_lb = max(lam_lb, -w_min)
                lam = lam_new if lam_new > lam_lb else _between(lam_lb, lam_ub)
            else:
                if p_norm - radius <= _K_EASY * radius:
                    self.previous_lb = lam_lb
                    return p, True
                lam_lb = lam
                lam = lam_new
        # lambda did not settle (rounding): the last step, brought inside the region
        self.previous_lb = lam_lb
        if p is None:
            w_min, z = self.smallest()
            return radius * z if w_min < 0.0 else -radius * g / max(self.g_norm, _EPS), True
        p_norm = float(np.linalg.norm(p))
        return (p * (radius / p_norm), True) if p_norm > radius else (p, False)


def _between(lo: float, hi: float) -> float:
    """Moré–Sorensen's safeguarded choice in ``[lo, hi]``."""
    return max(math.sqrt(lo * hi), lo + _UPDATE * (hi - lo))


def _steihaug(g: FloatArray, hvp: Callable[[FloatArray], FloatArray], radius: float,
              max_iterations: int) -> tuple[FloatArray, bool, float]:
    """Steihaug–CG: the step, whether it is on the boundary, and the model's change
    ``g.p + p.H.p / 2`` (kept along the iterations: no extra product)."""
    n = g.size
    z = np.zeros(n)
    r = g.copy()
    d = -r
    rr = float(r @ r)
    g_norm = math.sqrt(rr)
    tolerance = min(0.5, math.sqrt(g_norm)) * g_norm
    model = 0.0
    if g_norm <= tolerance or g_norm == 0.0:
        return z, False, 0.0
    for _ in range(max_iterations):
        bd = np.array(hvp(d), dtype=np.float64)
        dbd = float(d @ bd)
        rd = float(r @ d)
        if not dbd > 0.0:  # negative (or no) curvature: to the boundary along d
            ta, tb = _boundary_steps(z, d, radius)
            ma = model + ta * rd + 0.5 * ta * ta * dbd
            mb = model + tb * rd + 0.5 * tb * tb * dbd
            tau, m = (ta, ma) if ma < mb else (tb, mb)
            return z + tau * d, True, m
        alpha = rr / dbd
        z_next = z + alpha * d
        if float(np.linalg.norm(z_next)) >= radius:
            _, tb = _boundary_steps(z, d, radius)
            return z + tb * d, True, model + tb * rd + 0.5 * tb * tb * dbd
        model += alpha * rd + 0.5 * alpha * alpha * dbd
        r = r + alpha * bd
        rr_next = float(r @ r)
        z = z_next
        if math.sqrt(rr_next) < tolerance:
            return z, False, model
        d = -r + (rr_next / rr) * d
        rr = rr_next
    return z, False, model


# ---------------------------------------------------------------------------- the solver
def _inf_norm(g: FloatArray) -> float:
    return float(np.abs(g).max()) if g.size else 0.0


def _finite(a: FloatArray) -> bool:
    return bool(np.isfinite(a).all())


class _Problem:
    """The oracle as the loop needs it: copies of ``g`` and ``H`` it may keep, ``H``
    from products when there is no Hessian, products from ``H`` when there is no
    ``hvp``; counts the value-and-gradient evaluations."""

    def __init__(self, oracle: NewtonOracle, n: int) -> None:
        self.oracle = oracle
        self.n = n
        self.nfev = 0
        self._h_at: FloatArray | None = None
        self._h: FloatArray | None = None

    def fun_and_grad(self, x: FloatArray) -> tuple[float, FloatArray]:
        f, g = self.oracle.fun_and_grad(x)
        self.nfev += 1
        g = np.array(g, dtype=np.float64).reshape(-1)
        if g.shape != (self.n,):
            raise ValueError(f"`fun_and_grad` must return a gradient of shape ({self.n},); "
                             f"got shape {g.shape}")
        return float(f), g

    def hessian(self, x: FloatArray) -> FloatArray:
        if self.oracle.hessian is not None:
            h = np.array(self.oracle.hessian(x), dtype=np.float64)
            if h.shape != (self.n, self.n):
                raise ValueError(f"`hessian` must return an array of shape "
                                 f"({self.n}, {self.n}); got shape {h.shape}")
            return h
        assert self.oracle.hvp is not None
        columns = [self.hvp(x, e) for e in np.eye(self.n)]
        h = np.array(columns).T
        return 0.5 * h + 0.5 * h.T

    def hvp(self, x: FloatArray, v: FloatArray) -> FloatArray:
        if self.oracle.hvp is not None:
            hv = np.array(self.oracle.hvp(x, v), dtype=np.float64).reshape(-1)
            if hv.shape != (self.n,):
                raise ValueError(f"`hvp` must return a vector of shape ({self.n},); got "
                                 f"shape {hv.shape}")
            return hv
        if self._h_at is None or not np.array_equal(self._h_at, x):
            self._h = self.hessian(x)
            self._h_at = x.copy()
        assert self._h is not None
        return self._h @ v


def newton_minimize(
    oracle: NewtonOracle,
    x0: Any,
    config: NewtonConfig | None = None,
    *,
    callback: Callback | None = None,
    history: bool = False,
) -> OptimizeResult:
    """Minimise a smooth function by trust-region Newton (see the module docstring).

    Args:
        oracle: a :class:`NewtonOracle` (:func:`compiled_oracle` makes one from
            ``sa.compile``'s function, :func:`newton_oracle` from any loss).
        x0: the starting point, ``n`` real numbers (not modified).
        config: the options (defaults of :class:`NewtonConfig` when omitted).
        callback: ``callback(iteration, x, fun)`` after every iteration (accepted or
            not) with a copy of the iterate; returning ``True`` stops the run
            (``Status.CALLBACK_STOP``).
        history: record the objective at every iterate in ``result.history``.

    Returns:
        An :class:`~.result.OptimizeResult`: ``iterations`` counts every trust-region
        iteration (as scipy's ``nit``), ``nfev`` the value-and-gradient evaluations.
        ``status`` is ``CONVERGED_GRADIENT``, ``MAX_ITERATIONS``, ``NON_FINITE`` (the
        objective, gradient or Hessian at ``x0`` is not finite; a non-finite trial point
        is rejected and the radius shrunk), ``NO_PROGRESS`` (the model predicts no
        decrease, or the step no longer changes ``x``: ``gradient_tolerance`` is below
        what rounding allows) or ``CALLBACK_STOP``.

    Raises:
        TypeError: ``oracle`` is not a :class:`NewtonOracle`, or ``x0`` holds anything
            but real numbers.
        ValueError: the oracle returns arrays of the wrong shape.

    Example:
        >>> import numpy as np
        >>> A = np.array([[4.0, 1.0], [1.0, 3.0]]); b = np.array([1.0, 2.0])
        >>> oracle = NewtonOracle(lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b),
        ...                       hvp=lambda x, v: A @ v)
        >>> r = newton_minimize(oracle, np.zeros(2), NewtonConfig(subproblem="cg"))
        >>> r.success, np.allclose(r.x, np.linalg.solve(A, b))
        (True, True)
    """
    if not isinstance(oracle, NewtonOracle):
        raise TypeError(f"`oracle` must be a NewtonOracle; got {type(oracle).__name__} "
                        f"{oracle!r:.60}")
    cfg = config if config is not None else NewtonConfig()
    if not isinstance(cfg, NewtonConfig):
        raise TypeError(f"`config` must be a NewtonConfig or None; got {type(cfg).__name__}")
    check_callback(callback)
    x = check_real_array(x0, "x0").reshape(-1)
    n = x.size
    exact = cfg.uses_exact(n)
    max_iterations = cfg.max_iterations if cfg.max_iterations is not None else 200 * max(n, 1)
    max_cg = cfg.max_cg_iterations if cfg.max_cg_iterations is not None else max(2 * n, 1)
    problem = _Problem(oracle, n)
    f, g = problem.fun_and_grad(x)
    trace: list[float] | None = [f] if history else None

    def result(status: Status, iterations: int) -> OptimizeResult:
        return OptimizeResult(x=x, fun=f, grad_norm=_inf_norm(g), iterations=iterations,
                              nfev=problem.nfev, status=status,
                              history=tuple(trace) if trace is not None else None)

    if not (math.isfinite(f) and _finite(g)):
        return result(Status.NON_FINITE, 0)
    subproblem: _Exact | None = None
    if exact and _inf_norm(g) > cfg.gradient_tolerance:
        h = problem.hessian(x)
        if not _finite(h):
            return result(Status.NON_FINITE, 0)
        subproblem = _Exact(g, h)
    radius = cfg.initial_trust_radius
    iteration = 0
    while True:
        if _inf_norm(g) <= cfg.gradient_tolerance:
            return result(Status.CONVERGED_GRADIENT, iteration)
        if iteration >= max_iterations:
            return result(Status.MAX_ITERATIONS, iteration)
        if subproblem is not None:
            p, on_boundary = subproblem.solve(radius)
            predicted = -(float(g @ p) + 0.5 * float(p @ (subproblem.h @ p)))
        else:
            p, on_boundary, model = _steihaug(g, functools.partial(problem.hvp, x.copy()),
                                              radius, max_cg)
            predicted = -model
        x_new = x + p
        if not predicted > 0.0 or np.array_equal(x_new, x):
            return result(Status.NO_PROGRESS, iteration)
        f_new, g_new = problem.fun_and_grad(x_new)
        if not (math.isfinite(f_new) and _finite(g_new)):
            rho = -math.inf
        elif predicted <= _ROUNDING * abs(f) and abs(f - f_new) <= _ROUNDING * abs(f):
            rho = 1.0  # both reductions are rounding noise: trust the model (CGT 17.4.2)
        else:
            rho = (f - f_new) / predicted
        if rho < 0.25:
            radius *= 0.25
        elif rho > 0.75 and on_boundary:
            radius = min(2.0 * radius, cfg.max_trust_radius)
        if rho > cfg.eta and exact:
            h_new = problem.hessian(x_new)
            if _finite(h_new):
                subproblem = _Exact(g_new, h_new)
            else:  # a point where the Hessian is not finite is no iterate
                rho = -math.inf
                radius = min(radius, 0.25 * float(np.linalg.norm(p)))
        if rho > cfg.eta:
            x, f, g = x_new, f_new, g_new
        iteration += 1
        if trace is not None:
            trace.append(f)
        if callback is not None and callback(iteration, x.copy(), f) is True:
            return result(Status.CALLBACK_STOP, iteration)
