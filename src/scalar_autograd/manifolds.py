"""Manifolds for parameter blocks: unit quaternions, rotations, unit vectors, constant subsets.

A parameter block that lives on a manifold (a rotation stored as a unit quaternion, a
direction stored as a unit vector) cannot take the additive step ``x + h`` of a
Euclidean solver: the step would leave the manifold, and the block has more
coordinates than degrees of freedom. Ceres' ``Manifold`` (and SymForce's and GTSAM's
Lie groups) solve this with two maps, here as in Ceres:

* ``plus(x, delta)``: the point reached from ``x`` by the tangent vector ``delta``
  (``tangent_size`` numbers), back on the manifold;
* ``minus(y, x)``: the tangent vector ``delta`` with ``plus(x, delta) = y`` (the
  inverse of ``plus`` near ``delta = 0``).

Both are written once with the op table's operations (``Value`` arithmetic and
``where``, never a Python branch on a traced value), so the same code builds a residual
(``minus`` as a rotation error) and is compiled by :func:`scalar_autograd.compile` for
the solvers, whose Jacobians (Ceres' ``PlusJacobian``, ``d plus(x, delta) / d delta``
at ``delta = 0``) come from automatic differentiation, not from hand-written formulas.

The manifolds, with Ceres' conventions:

* :class:`QuaternionManifold`: a unit quaternion stored **w first**, ``[w, x, y, z]``
  (Ceres' ``QuaternionManifold``). ``plus(x, delta) = normalize(exp(delta) * x)`` with
  the Hamilton product and ``exp(delta) = [cos|delta|, sin|delta| delta / |delta|]``:
  the update multiplies on the left (in the world frame) and ``delta`` is *half* the
  rotation vector of the update (Ceres' convention: a tangent step ``delta`` rotates by
  the angle ``2 |delta|``). ``minus(y, x) = atan2(|v|, w) v / |v|`` with
  ``[w, v] = y * conj(x)``: the inverse of ``plus`` for ``|delta| < pi``, measured on
  the sphere S^3 (``q`` and ``-q`` are the same rotation but ``pi`` apart there; see
  :func:`scalar_autograd.kinematics.rotation_error` for the rotation's own error).
* :class:`EigenQuaternionManifold`: the same, stored **x first**, ``[x, y, z, w]``
  (Eigen's and scipy's order; Ceres' ``EigenQuaternionManifold``).
* :class:`AngleAxisManifold`: a rotation stored as its rotation vector (angle times
  axis, Ceres' "angle-axis"), updated by the SO(3) exponential and logarithm:
  ``plus(r, delta) = Log(Exp(delta) Exp(r))`` (left, as the quaternions) and
  ``minus(s, r) = Log(Exp(s) Exp(r)^-1)``. Here ``delta`` is the full rotation vector
  of the update. ``Log`` returns the principal rotation vector (angle in ``[0, pi]``),
  so ``plus(r, 0)`` is ``r`` for ``|r| <= pi`` and its equivalent within that range
  otherwise.
* :class:`SphereManifold`: a unit vector, S^{n-1} in R^n (or a vector on a sphere of
  another radius; ``radius=None`` is Ceres' ``SphereManifold``, which keeps the
  start's norm): ``plus`` moves ``|delta|`` radians along the great circle in the
  direction ``H(x) [delta; 0]``, ``H(x)`` the Householder reflection taking ``x / |x|``
  to the last basis vector (Ceres' construction), so its tangent basis is
  orthonormal.
* :class:`SubsetManifold`: the coordinates in ``constant_indices`` held constant (bit
  for bit), the others Euclidean (Ceres' ``SubsetManifold``).
* :class:`EuclideanManifold` (``x + delta``) and :class:`ProductManifold` (several
  manifolds side by side in one block, Ceres' ``ProductManifold``).

Numerics: every map has a small-angle branch written with ``where`` (a Taylor series
below :data:`SERIES_THRESHOLD` in the squared angle), so values *and* derivatives are
right at ``delta = 0`` and compiled code is right at every point; the logarithms use
``atan2`` (well conditioned near 0 and near ``pi``, where ``acos`` is not), with the
quaternion sign folded so the SO(3) log takes the short way; and the quaternion and
sphere updates normalise, so a block stays on its manifold to rounding after any
number of steps.

To solve on manifolds, give them per parameter block: ``manifolds=[(block, manifold),
...]`` to :func:`scalar_autograd.nonlinear_least_squares`, :func:`scalar_autograd.minimize`
(``method="lbfgs"``) and :func:`scalar_autograd.lbfgs`, or
:meth:`scalar_autograd.LeastSquaresProblem.set_manifold` (Ceres' ``SetManifold``). A
block is the list of its params (``Value`` objects), a ``slice``/``range`` or a list of
indices into the parameter vector. :class:`TangentSpace` is how the solvers see them.

Example:
    >>> import numpy as np
    >>> import scalar_autograd as sa
    >>> m = sa.QuaternionManifold()
    >>> x = np.array([1.0, 0.0, 0.0, 0.0])              # the identity rotation
    >>> y = m.plus_array(x, [0.0, 0.0, np.pi / 4])     # rotate by pi/2 about z
    >>> np.round(y, 12).tolist()
    [0.707106781187, 0.0, 0.0, 0.707106781187]
    >>> np.round(m.minus_array(y, x), 12).tolist()
    [0.0, 0.0, 0.785398163397]
    >>> m.plus_jacobian(x).tolist()                     # Ceres' PlusJacobian at x
    [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]

    The same maps on Values, for a residual:
    >>> q = [sa.Value(v) for v in y]
    >>> [round(d.data, 12) for d in m.minus(q, [1.0, 0.0, 0.0, 0.0])]
    [0.0, 0.0, 0.785398163397]
"""

from __future__ import annotations

import math
import numbers
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from scalar_autograd.ops import OPS_BY_NAME
from scalar_autograd.value import Value, ValueLike, apply, as_value

__all__ = [
    "Manifold", "EuclideanManifold", "SubsetManifold", "QuaternionManifold",
    "EigenQuaternionManifold", "AngleAxisManifold", "SphereManifold", "ProductManifold",
    "TangentSpace", "SERIES_THRESHOLD", "UNIT_TOLERANCE",
]

SERIES_THRESHOLD = 1e-6
"""Below this squared angle (or squared ratio, for the logarithms) the maps use their
Taylor series; the first term left out is then below 1e-18 relative, while the closed
forms above it lose no more than ~1e-10 relative in the second-order part of their
derivatives (a term itself ~1e-6 of the whole)."""

UNIT_TOLERANCE = 1e-6
"""A quaternion block must start with ``| |q| - 1 | <= UNIT_TOLERANCE`` (a sphere block
within this of its radius, relative)."""

_WHERE = OPS_BY_NAME["where"]

ValueSeq = Sequence[ValueLike]


def _where(condition: ValueLike, a: ValueLike, b: ValueLike) -> Value:
    return apply(_WHERE, condition, a, b)


def _values(x: Any, size: int, name: str, owner: str) -> list[Value]:
    """``x`` as a list of ``size`` Values (numbers become constants)."""
    if isinstance(x, (Value, str, bytes)) or not isinstance(x, (Sequence, np.ndarray)):
        raise TypeError(f"`{name}` of {owner} must be a sequence of {size} Values or "
                        f"numbers; got {type(x).__name__} {x!r:.60}")
    items = list(x)
    if len(items) != size:
        raise ValueError(f"`{name}` of {owner} must hold {size} entries; got {len(items)}")
    return [as_value(v, f"{name}[{i}]") for i, v in enumerate(items)]


def _dot(a: Sequence[Value], b: Sequence[Value]) -> Value:
    total = a[0] * b[0]
    for u, v in zip(a[1:], b[1:]):
        total = total + u * v
    return total


def _cos_sinc(t2: Value) -> tuple[Value, Value]:
    """``(cos t, sin t / t)`` for ``t = sqrt(t2) >= 0``, value and derivative right at
    ``t2 = 0`` (the series below :data:`SERIES_THRESHOLD`, where the closed form's
    derivative would divide 0 by 0)."""
    small = t2 < SERIES_THRESHOLD
    t = _where(small, 1.0, t2).sqrt()          # never sqrt(0): its derivative is inf
    cos_series = 1.0 - t2 * 0.5 + t2 * t2 * (1.0 / 24.0)
    sinc_series = 1.0 - t2 * (1.0 / 6.0) + t2 * t2 * (1.0 / 120.0)
    return _where(small, cos_series, t.cos()), _where(small, sinc_series, t.sin() / t)


def _atan_ratio(u2: Value, w: Value) -> Value:
    """``atan2(u, w) / u`` for ``u = sqrt(u2) >= 0``: ``(1 - s2/3 + s2^2/5) / w`` with
    ``s2 = u2 / w^2`` when that is below :data:`SERIES_THRESHOLD` and ``w > 0`` (the
    logarithm near the identity), the closed form otherwise (well conditioned up to
    and past ``pi / 2``). At ``u = 0``, ``w <= 0`` (the antipode, where the direction
    is undefined) it is finite, so the tangent vector ``ratio * v`` is 0, as Ceres'."""
    series = (u2 < w * w * SERIES_THRESHOLD) * (w > 0.0)
    w_safe = _where(series, w, 1.0)
    s2 = u2 / (w_safe * w_safe)
    series_value = (1.0 - s2 * (1.0 / 3.0) + s2 * s2 * 0.2) / w_safe
    u = _where(series + (u2 <= 0.0), 1.0, u2).sqrt()
    return _where(series, series_value, u.atan2(w) / u)


def _hamilton(a: Sequence[Value], b: Sequence[Value]) -> list[Value]:
    """The Hamilton product ``a * b`` of quaternions stored ``[w, x, y, z]``."""
    a0, a1, a2, a3 = a
    b0, b1, b2, b3 = b
    return [a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3,
            a0 * b1 + a1 * b0 + a2 * b3 - a3 * b2,
            a0 * b2 - a1 * b3 + a2 * b0 + a3 * b1,
            a0 * b3 + a1 * b2 - a2 * b1 + a3 * b0]


def _normalized(q: Sequence[Value]) -> list[Value]:
    norm = _dot(q, q).sqrt()
    return [c / norm for c in q]


def _quaternion_exp(delta: Sequence[Value]) -> list[Value]:
    """``[cos|d|, sin|d| d / |d|]`` (Ceres' ``delta_q``; a rotation by ``2 |d|``)."""
    cos, sinc = _cos_sinc(_dot(delta, delta))
    return [cos, *(sinc * d for d in delta)]


def _quaternion_log(q: Sequence[Value]) -> list[Value]:
    """``atan2(|v|, w) v / |v|`` of ``q = [w, v]``: Ceres' quaternion ``Minus`` of
    ``q`` and the identity, half the rotation vector of ``q`` (its length
    ``atan2(|v|, w)`` is in ``[0, pi]``, above ``pi / 2`` when ``w < 0``)."""
    w, v = q[0], q[1:]
    ratio = _atan_ratio(_dot(v, v), w)
    return [ratio * c for c in v]


def _rotation_quaternion(r: Sequence[Value]) -> list[Value]:
    """The unit quaternion ``[cos(t/2), sin(t/2) r / t]`` of a rotation vector ``r``."""
    half = [c * 0.5 for c in r]
    return _quaternion_exp(half)


def _rotation_vector(q: Sequence[Value]) -> list[Value]:
    """The principal rotation vector (angle in ``[0, pi]``) of a quaternion: its sign
    folded onto ``w >= 0`` (the short way round), then twice the quaternion log."""
    sign = _where(q[0] < 0.0, -1.0, 1.0)
    folded = [c * sign for c in q]
    return [2.0 * c for c in _quaternion_log(folded)]


# ---------------------------------------------------------------------------- base class
class Manifold(ABC):
    """A manifold for one parameter block: ``plus`` and ``minus`` on ``Value``s.

    Subclass it with ``ambient_size``, ``tangent_size``, :meth:`plus` and
    :meth:`minus` written with ``Value`` operations (``sa.where`` for a branch: the
    maps are compiled once for every point, so a Python ``if`` on a value is refused
    with a ``ValueError``); the compiled forms (:meth:`plus_array`,
    :meth:`plus_jacobian`, ...) and the solvers' tangent-space Jacobians follow. Two
    manifolds are equal when they are of the same class with the same
    :meth:`key`, and share their compiled code.

    Attributes:
        ambient_size: the number of coordinates of a point (Ceres' ``AmbientSize``).
        tangent_size: the number of degrees of freedom (Ceres' ``TangentSize``).
    """

    ambient_size: int
    tangent_size: int

    @abstractmethod
    def plus(self, x: ValueSeq, delta: ValueSeq) -> list[Value]:
        """The point reached from ``x`` by the tangent vector ``delta``."""

    @abstractmethod
    def minus(self, y: ValueSeq, x: ValueSeq) -> list[Value]:
        """The tangent vector ``delta`` with ``plus(x, delta) = y``."""

    # ------------------------------------------------------------------ identity
    def key(self) -> tuple[Any, ...]:
        """What identifies this manifold's maps (the class, then its parameters)."""
        return (type(self).__qualname__, self.ambient_size, self.tangent_size)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, Manifold) \
            and other.key() == self.key()

    def __hash__(self) -> int:
        return hash((type(self), self.key()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ------------------------------------------------------------------ points
    def check_point(self, x: np.ndarray, name: str) -> None:
        """Raise ``ValueError`` (naming ``name``) unless ``x`` (a float64 array of
        ``ambient_size``) is a valid point; the base class asks for finite numbers."""
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} must be finite for {self!r}; got {x.tolist()!r:.80}")

    def step_reference(self, x: np.ndarray) -> np.ndarray:
        """The size of ``x`` in tangent coordinates (``tangent_size`` numbers) against
        which the solvers measure a relative step (``param_tolerance``): by default the
        block's Euclidean norm spread evenly over its tangent coordinates, so the block
        counts as ``|x|`` in ``|x_ref|``, as Ceres measures ``|x|`` in the ambient
        space."""
        k = self.tangent_size
        return np.full(k, float(np.linalg.norm(x)) / math.sqrt(k) if k else 0.0)

    def _step_references(self, X: np.ndarray) -> np.ndarray:
        """:meth:`step_reference` of every row of ``X`` ``(N, ambient_size)``:
        ``(N, tangent_size)``, vectorised for the default rule and for subsets."""
        k = self.tangent_size
        if type(self).step_reference is Manifold.step_reference:
            norms = np.linalg.norm(X, axis=1) / math.sqrt(k)
            return np.repeat(norms[:, None], k, axis=1)
        if isinstance(self, SubsetManifold):
            return X[:, list(self.free)]
        return np.array([self.step_reference(row) for row in X]).reshape(len(X), k)

    # ------------------------------------------------------------------ compiled
    def _kernels(self) -> _Kernels:
        return _kernels_of(self)

    def plus_array(self, x: Any, delta: Any) -> np.ndarray:
        """``plus(x, delta)`` on numbers, by the compiled map (float64 array).

        Raises:
            TypeError, ValueError: ``x`` or ``delta`` of the wrong kind or size.
        """
        xa = _vector(x, self.ambient_size, "x", self)
        da = _vector(delta, self.tangent_size, "delta", self)
        if self.tangent_size == 0:
            return xa
        return self._kernels().plus.batch_values(da[None, :], xa[None, :])[0]

    def minus_array(self, y: Any, x: Any) -> np.ndarray:
        """``minus(y, x)`` on numbers, by the compiled map (float64 array)."""
        ya = _vector(y, self.ambient_size, "y", self)
        xa = _vector(x, self.ambient_size, "x", self)
        if self.tangent_size == 0:
            return np.zeros(0)
        return self._kernels().minus.batch_values(ya[None, :], xa[None, :])[0]

    def plus_jacobian(self, x: Any, delta: Any = None) -> np.ndarray:
        """``d plus(x, delta) / d delta``, ``(ambient_size, tangent_size)``, at
        ``delta`` (default 0: Ceres' ``PlusJacobian``), by automatic differentiation
        of the compiled map."""
        xa = _vector(x, self.ambient_size, "x", self)
        da = np.zeros(self.tangent_size) if delta is None else \
            _vector(delta, self.tangent_size, "delta", self)
        if self.tangent_size == 0:
            return np.zeros((self.ambient_size, 0))
        return self._kernels().plus.batch_jacobian(da[None, :], xa[None, :])[1][0]

    def minus_jacobian(self, x: Any) -> np.ndarray:
        """``d minus(y, x) / d y`` at ``y = x``, ``(tangent_size, ambient_size)``
        (Ceres' ``MinusJacobian``), by automatic differentiation."""
        xa = _vector(x, self.ambient_size, "x", self)
        if self.tangent_size == 0:
            return np.zeros((0, self.ambient_size))
        return self._kernels().minus.batch_jacobian(xa[None, :], xa[None, :])[1][0]


def _vector(x: Any, size: int, name: str, owner: Manifold) -> np.ndarray:
    from scalar_autograd.validation import check_real_array

    a = check_real_array(x, name)
    if a.shape != (size,):
        raise ValueError(f"`{name}` of {owner!r} must be a 1-D array of {size} numbers; "
                         f"got shape {a.shape}")
    return a


class _Kernels:
    """The compiled maps of one manifold: ``plus`` (params ``delta``, inputs ``x``)
    and ``minus`` (params ``y``, inputs ``x``)."""

    def __init__(self, manifold: Manifold) -> None:
        from scalar_autograd.runtime.compiled import compile as jit_compile

        na, k = manifold.ambient_size, manifold.tangent_size
        name = type(manifold).__name__
        delta = [Value(0.0, label=f"delta{i}") for i in range(k)]
        x = [Value(1.0 if i == 0 else 0.0, label=f"x{i}") for i in range(na)]
        y = [Value(1.0 if i == 0 else 0.0, label=f"y{i}") for i in range(na)]
        self.plus = jit_compile(_outputs(manifold.plus(x, delta), na, f"{name}.plus"),
                                delta, x, strict=True)
        self.minus = jit_compile(_outputs(manifold.minus(y, x), k, f"{name}.minus"),
                                 y, x, strict=True)


def _outputs(out: Any, size: int, what: str) -> list[Value]:
    items = list(out) if isinstance(out, Sequence) else None
    if items is None or len(items) != size or not all(isinstance(v, Value) for v in items):
        raise TypeError(f"{what} must return a list of {size} Values; got "
                        f"{type(out).__name__} {out!r:.60}")
    return items


_KERNELS: dict[tuple[Any, ...], _Kernels] = {}
_KERNELS_LOCK = threading.Lock()


def _kernels_of(manifold: Manifold) -> _Kernels:
    key = (type(manifold), manifold.key())
    with _KERNELS_LOCK:
        kernels = _KERNELS.get(key)
    if kernels is None:
        kernels = _Kernels(manifold)
        with _KERNELS_LOCK:
            kernels = _KERNELS.setdefault(key, kernels)
    return kernels


def _size(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer >= {minimum}; got "
                        f"{type(value).__name__} {value!r:.40}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------- manifolds
class EuclideanManifold(Manifold):
    """``R^n`` itself: ``plus(x, delta) = x + delta`` (Ceres' ``EuclideanManifold``).

    Args:
        size: n, at least 1.

    Example:
        >>> EuclideanManifold(2).plus_array([1.0, 2.0], [0.5, 0.5]).tolist()
        [1.5, 2.5]
    """

    def __init__(self, size: int) -> None:
        self.ambient_size = self.tangent_size = _size(size, "size", 1)

    def __repr__(self) -> str:
        return f"EuclideanManifold({self.ambient_size})"

    def plus(self, x: ValueSeq, delta: ValueSeq) -> list[Value]:
        """``x + delta``, coordinate by coordinate."""
        xs = _values(x, self.ambient_size, "x", repr(self))
        ds = _values(delta, self.tangent_size, "delta", repr(self))
        return [a + d for a, d in zip(xs, ds)]

    def minus(self, y: ValueSeq, x: ValueSeq) -> list[Value]:
        """``y - x``, coordinate by coordinate."""
        ys = _values(y, self.ambient_size, "y", repr(self))
        xs = _values(x, self.ambient_size, "x", repr(self))
        return [a - b for a, b in zip(ys, xs)]

    def step_reference(self, x: np.ndarray) -> np.ndarray:
        """``x`` itself: each coordinate is its own reference, as off a manifold."""
        return np.asarray(x, dtype=float).copy()


class SubsetManifold(Manifold):
    """``R^n`` with the coordinates ``constant_indices`` held constant (Ceres'
    ``SubsetManifold``): ``plus`` returns those coordinates of ``x`` untouched (bit
    for bit) and adds ``delta`` to the others, in order.

    Args:
        size: n, at least 1.
        constant_indices: the constant coordinates, distinct ints in ``[0, n)`` (all of
            them is allowed: the block is then fixed).

    Example:
        >>> m = SubsetManifold(3, [1])
        >>> m.tangent_size, m.plus_array([1.0, 2.0, 3.0], [10.0, 20.0]).tolist()
        (2, [11.0, 2.0, 23.0])
    """

    def __init__(self, size: int, constant_indices: Sequence[int]) -> None:
        n = _size(size, "size", 1)
        if isinstance(constant_indices, (str, bytes)) or \
                not isinstance(constant_indices, (Sequence, np.ndarray, range)):
            raise TypeError(f"`constant_indices` must be a sequence of ints; got "
                            f"{type(constant_indices).__name__} {constant_indices!r:.60}")
        constant: list[int] = []
        for i, c in enumerate(constant_indices):
            if isinstance(c, bool) or not isinstance(c, numbers.Integral):
                raise TypeError(f"`constant_indices` must hold ints; constant_indices[{i}] "
                                f"is {type(c).__name__} {c!r:.40}")
            if not 0 <= int(c) < n:
                raise ValueError(f"`constant_indices` must lie in [0, size={n}); "
                                 f"constant_indices[{i}] is {int(c)}")
            if int(c) in constant:
                raise ValueError(f"`constant_indices` must be distinct; {int(c)} appears "
                                 f"twice")
            constant.append(int(c))
        self.constant = tuple(sorted(constant))
        self.free = tuple(j for j in range(n) if j not in self.constant)
        self.ambient_size = n
        self.tangent_size = len(self.free)

    def key(self) -> tuple[Any, ...]:
        """The base key plus the constant indices."""
        return (*super().key(), self.constant)

    def __repr__(self) -> str:
        return f"SubsetManifold({self.ambient_size}, {list(self.constant)})"

    def plus(self, x: ValueSeq, delta: ValueSeq) -> list[Value]:
        """``x`` with ``delta`` added to the free coordinates in order; the constant ones
        are returned untouched."""
        xs = _values(x, self.ambient_size, "x", repr(self))
        ds = _values(delta, self.tangent_size, "delta", repr(self))
        out = list(xs)
        for j, d in zip(self.free, ds):
            out[j] = xs[j] + d
        return out

    def minus(self, y: ValueSeq, x: ValueSeq) -> list[Value]:
        """``y - x`` on the free coordinates (``tangent_size`` entries)."""
        ys = _values(y, self.ambient_size, "y", repr(self))
        xs = _values(x, self.ambient_size, "x", repr(self))
        return [ys[j] - xs[j] for j in self.free]

    def step_reference(self, x: np.ndarray) -> np.ndarray:
        """The free coordinates of ``x``: each is its own reference."""
        return np.asarray(x, dtype=float)[list(self.free)]


class QuaternionManifold(Manifold):
    """Unit quaternions stored ``[w, x, y, z]`` (w first): Ceres' ``QuaternionManifold``.

    ``plus(x, delta) = normalize(exp(delta) * x)``, ``exp(delta) = [cos|delta|,
    sin|delta| delta / |delta|]``: a left (world-frame) update by the angle
    ``2 |delta|`` about ``delta``; ``minus(y, x) = atan2(|v|, w) v / |v|`` of
    ``[w, v] = y * conj(x)``, its inverse for ``|delta| < pi``. Both as in Ceres
    (whose ``PlusJacobian`` at ``x`` is ``[[-x1, -x2, -x3], [x0, x3, -x2],
    [-x3, x0, x1], [x2, -x1, x0]]``); the normalisation (not in Ceres) keeps ``|x| = 1``
    to rounding however many steps are taken. A block must start at a unit quaternion
    (within :data:`UNIT_TOLERANCE`).

    Example:
        >>> import numpy as np
        >>> m = QuaternionManifold()
        >>> y = m.plus_array([1.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.0])
        >>> np.round(y, 12).tolist(), round(float(np.linalg.norm(y)), 15)
        ([0.995004165278, 0.099833416647, 0.0, 0.0], 1.0)
    """

    _order = (0, 1, 2, 3)
    """Where ``w, x, y, z`` are stored."""

    def __init__(self) -> None:
        self.ambient_size = 4
        self.tangent_size = 3

    def _hamilton_order(self, q: list[Value]) -> list[Value]:
        return [q[i] for i in self._order]

    def _stored_order(self, q: list[Value]) -> list[Value]:
        out: list[Value] = [q[0]] * 4
        for k, i in enumerate(self._order):
            out[i] = q[k]
        return out

    def plus(self, x: ValueSeq, delta: ValueSeq) -> list[Value]:
        """``normalize(exp(delta) * x)``: the left update by the 3-vector ``delta``."""
        xs = self._hamilton_order(_values(x, 4, "x", repr(self)))
        ds = _values(delta, 3, "delta", repr(self))
        return self._stored_order(_normalized(_hamilton(_quaternion_exp(ds), xs)))

    def minus(self, y: ValueSeq, x: ValueSeq) -> list[Value]:
        """``log(y * conj(x))``: the ``delta`` with ``plus(x, delta) = y`` (for
        ``|delta| < pi``)."""
        ys = self._hamilton_order(_values(y, 4, "y", repr(self)))
        xs = self._hamilton_order(_values(x, 4, "x", repr(self)))
        conj = [xs[0], -xs[1], -xs[2], -xs[3]]
        return _quaternion_log(_hamilton(ys, conj))

    def check_point(self, x: np.ndarray, name: str) -> None:
        """Raise ``ValueError`` (naming ``name``) unless ``x`` is finite and of norm 1
        within :data:`UNIT_TOLERANCE`."""
        super().check_point(x, name)
        norm = float(np.linalg.norm(x))
        if not abs(norm - 1.0) <= UNIT_TOLERANCE:
            raise ValueError(f"{name} must be a unit quaternion for {self!r} (norm 1 within "
                             f"{UNIT_TOLERANCE:g}); got norm {norm!r}: divide it by its norm")


class EigenQuaternionManifold(QuaternionManifold):
    """Unit quaternions stored ``[x, y, z, w]`` (w last, Eigen's and scipy's order):
    Ceres' ``EigenQuaternionManifold``; otherwise :class:`QuaternionManifold`.

    Example:
        >>> import numpy as np
        >>> y = EigenQuaternionManifold().plus_array([0.0, 0.0, 0.0, 1.0], [0.1, 0.0, 0.0])
        >>> np.round(y, 12).tolist()
        [0.099833416647, 0.0, 0.0, 0.995004165278]
    """

    _order = (3, 0, 1, 2)


class AngleAxisManifold(Manifold):
    """A rotation stored as its rotation vector ``r`` (angle ``|r|`` about ``r/|r|``),
    updated by the SO(3) exponential and logarithm.

    ``plus(r, delta) = Log(Exp(delta) Exp(r))`` (left, world-frame update by the full
    rotation vector ``delta``), ``minus(s, r) = Log(Exp(s) Exp(r)^-1)``, both through
    unit quaternions: ``Exp`` with its small-angle series, ``Log`` by ``atan2`` with
    the quaternion's sign folded onto ``w >= 0`` (so the result is the principal
    rotation vector, angle in ``[0, pi]``, accurate near 0 and near ``pi``). ``plus``
    at ``delta = 0`` returns ``r`` itself for ``|r| <= pi`` (to rounding) and the
    equivalent principal vector for larger angles. Ceres has no such manifold (its
    ``AngleAxis`` blocks are Euclidean); this is SymForce's and Sophus' tangent update
    of SO(3) on the left.

    Example:
        >>> import numpy as np
        >>> m = AngleAxisManifold()
        >>> r = m.plus_array([0.0, 0.0, 3.0], [0.0, 0.0, 0.5])   # 3.5 rad: past pi
        >>> (np.round(r, 12) + 0.0).tolist(), round(float(r[2]) + 2 * np.pi, 12)
        ([0.0, 0.0, -2.78318530718], 3.5)
    """

    def __init__(self) -> None:
        self.ambient_size = 3
        self.tangent_size = 3

    def plus(self, x: ValueSeq, delta: ValueSeq) -> list[Value]:
        """``Log(Exp(delta) Exp(x))``: ``x`` turned on the left by the rotation vector
        ``delta``, as a principal rotation vector (angle in ``[0, pi]``)."""
        xs = _values(x, 3, "x", repr(self))
        ds = _values(delta, 3, "delta", repr(self))
        q = _hamilton(_rotation_quaternion(ds), _rotation_quaternion(xs))
        return _rotation_vector(q)

    def minus(self, y: ValueSeq, x: ValueSeq) -> list[Value]:
        """``Log(Exp(y) Exp(x)^-1)``: the principal rotation vector taking ``x`` to ``y``."""
        ys = _values(y, 3, "y", repr(self))
        xs = _values(x, 3, "x", repr(self))
        qx = _rotation_quaternion(xs)
        conj = [qx[0], -qx[1], -qx[2], -qx[3]]
        return _rotation_vector(_hamilton(_rotation_quaternion(ys), conj))


class SphereManifold(Manifold):
    """Vectors of R^n on a sphere: unit vectors by default (S^{n-1}); Ceres'
    ``SphereManifold`` with ``radius=None``.

    ``plus(x, delta) = r (cos|delta| u + sin|delta| H(u) [delta; 0] / |delta|)`` with
    ``u = x / |x|`` and ``H(u)`` the Householder reflection taking ``u`` to the last
    basis vector ``e_n`` (so ``H [delta; 0]`` is a tangent vector at ``u`` of the same
    length): the point ``|delta|`` radians along the great circle, on the sphere of
    radius ``r``. ``minus(y, x)`` is its inverse, ``atan2(|z|, z_n) z / |z|`` of the
    first ``n - 1`` entries ``z`` of ``H(u) y / |x|``. The Householder vector has the two
    cases of Ceres' (and of Golub & Van Loan's) ``house``, chosen with ``where`` on the
    sign of ``x_n``; the plus Jacobian at ``x`` is ``|x|`` times an orthonormal basis of
    the tangent space.

    Args:
        size: n, at least 2.
        radius: the sphere's radius ``r`` (1.0: unit vectors); every step lands on it
            (normalised), so a block stays on it to rounding however many steps are
            taken, and must start on it (within :data:`UNIT_TOLERANCE` relative). None:
            the sphere of the start's own norm ``|x|`` (Ceres' convention; the norm then
            drifts by rounding, ~1e-16 relative per step).

    Example:
        >>> import numpy as np
        >>> m = SphereManifold(3)
        >>> y = m.plus_array([0.0, 0.0, 1.0], [np.pi / 2, 0.0])
        >>> np.round(y, 12).tolist()
        [1.0, 0.0, 0.0]
        >>> SphereManifold(3, radius=None).plus_array([0.0, 0.0, 2.0], [0.1, 0.0]).round(6)
        array([0.199667, 0.      , 1.990008])
    """

    def __init__(self, size: int, radius: float | None = 1.0) -> None:
        self.ambient_size = _size(size, "size", 2)
        self.tangent_size = self.ambient_size - 1
        if radius is not None:
            if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or \
                    not (math.isfinite(float(radius)) and float(radius) > 0.0):
                raise (TypeError if isinstance(radius, bool) or
                       not isinstance(radius, numbers.Real) else ValueError)(
                    f"`radius` must be a finite number > 0 or None; got "
                    f"{type(radius).__name__} {radius!r:.40}")
            radius = float(radius)
        self.radius = radius

    def key(self) -> tuple[Any, ...]:
        """The base key plus the radius."""
        return (*super().key(), self.radius)

    def __repr__(self) -> str:
        extra = "" if self.radius == 1.0 else f", radius={self.radius!r}"
        return f"SphereManifold({self.ambient_size}{extra})"

    def _householder(self, x: list[Value]) -> tuple[list[Value], Value, Value]:
        """``(v, beta, |x|)`` with ``(I - beta v v^T) x = |x| e_n`` (``v_n = 1``)."""
        head, pivot = x[:-1], x[-1]
        sigma = _dot(head, head)
        norm = (sigma + pivot * pivot).sqrt()
        # x along +-e_n (to rounding): H = I, or the flip of the last coordinate
        aligned = sigma <= pivot * pivot * 1e-32
        v_pivot = _where(pivot <= 0.0, pivot - norm, -sigma / _where(aligned, 1.0, pivot + norm))
        v_safe = _where(aligned, 1.0, v_pivot)
        v = [_where(aligned, 0.0, c / v_safe) for c in head] + [as_value(1.0)]
        beta_general = 2.0 * v_safe * v_safe / _where(aligned, 1.0, sigma + v_safe * v_safe)
        beta = _where(aligned, _where(pivot < 0.0, 2.0, 0.0), beta_general)
        return v, beta, norm

    @staticmethod
    def _reflect(v: list[Value], beta: Value, y: list[Value]) -> list[Value]:
        """``(I - beta v v^T) y``."""
        scale = beta * _dot(v, y)
        return [a - c * scale for a, c in zip(y, v)]

    def plus(self, x: ValueSeq, delta: ValueSeq) -> list[Value]:
        """The point ``|delta|`` radians from ``x`` along the great circle in the direction
        ``H(u) [delta; 0]``, on the sphere of ``radius`` (of ``|x|`` for ``radius=None``)."""
        xs = _values(x, self.ambient_size, "x", repr(self))
        ds = _values(delta, self.tangent_size, "delta", repr(self))
        v, beta, norm = self._householder(xs)
        cos, sinc = _cos_sinc(_dot(ds, ds))
        # H is symmetric and orthogonal and H e_n = u: the point is H [sinc delta; cos]
        y = self._reflect(v, beta, [sinc * d for d in ds] + [cos])
        scale = (norm if self.radius is None else self.radius) / _dot(y, y).sqrt()
        return [c * scale for c in y]

    def minus(self, y: ValueSeq, x: ValueSeq) -> list[Value]:
        """The inverse of :meth:`plus`: ``atan2(|z|, z_n) z / |z|`` of ``H(u) y / |x|``, whose
        first ``n - 1`` entries are ``z``."""
        ys = _values(y, self.ambient_size, "y", repr(self))
        xs = _values(x, self.ambient_size, "x", repr(self))
        v, beta, norm = self._householder(xs)
        hy = [c / norm for c in self._reflect(v, beta, ys)]
        head, last = hy[:-1], hy[-1]
        ratio = _atan_ratio(_dot(head, head), last)
        return [ratio * c for c in head]

    def check_point(self, x: np.ndarray, name: str) -> None:
        """Raise ``ValueError`` (naming ``name``) unless ``x`` is finite and on the sphere:
        of norm ``radius`` within :data:`UNIT_TOLERANCE` relative, or non-zero for
        ``radius=None``."""
        super().check_point(x, name)
        norm = float(np.linalg.norm(x))
        if self.radius is None:
            if not norm > 0.0:
                raise ValueError(f"{name} must be a non-zero vector for {self!r} (it stays "
                                 f"on the sphere of its norm); got {x.tolist()!r:.80}")
        elif not abs(norm - self.radius) <= UNIT_TOLERANCE * self.radius:
            what = "a unit vector" if self.radius == 1.0 else \
                f"a vector of norm {self.radius!r}"
            raise ValueError(f"{name} must be {what} for {self!r} (within "
                             f"{UNIT_TOLERANCE:g} relative); got norm {norm!r}: scale it, "
                             f"or use SphereManifold({self.ambient_size}, radius=None) to "
                             f"keep its norm")


class ProductManifold(Manifold):
    """Several manifolds side by side in one block (Ceres' ``ProductManifold``): the
    block's coordinates are the factors' in order, and so are its tangent coordinates.

    Args:
        *manifolds: the factors, at least one (a pose: ``ProductManifold(
            QuaternionManifold(), EuclideanManifold(3))``, 7 numbers, 6 degrees of
            freedom).

    Example:
        >>> pose = ProductManifold(QuaternionManifold(), EuclideanManifold(3))
        >>> pose.ambient_size, pose.tangent_size
        (7, 6)
    """

    def __init__(self, *manifolds: Manifold) -> None:
        if not manifolds:
            raise ValueError("ProductManifold needs at least one manifold; got none")
        for i, m in enumerate(manifolds):
            if not isinstance(m, Manifold):
                raise TypeError(f"ProductManifold's factors must be Manifold objects; "
                                f"factor {i} is {type(m).__name__} {m!r:.40}")
        self.factors = tuple(manifolds)
        self.ambient_size = sum(m.ambient_size for m in manifolds)
        self.tangent_size = sum(m.tangent_size for m in manifolds)

    def key(self) -> tuple[Any, ...]:
        """The base key plus each factor's class and key."""
        return (*super().key(), tuple((type(m), m.key()) for m in self.factors))

    def __repr__(self) -> str:
        return f"ProductManifold({', '.join(map(repr, self.factors))})"

    def _split(self, values: list[Value], tangent: bool) -> list[list[Value]]:
        parts, start = [], 0
        for m in self.factors:
            size = m.tangent_size if tangent else m.ambient_size
            parts.append(values[start:start + size])
            start += size
        return parts

    def plus(self, x: ValueSeq, delta: ValueSeq) -> list[Value]:
        """Each factor's ``plus`` on its slices of ``x`` and ``delta``, concatenated."""
        xs = _values(x, self.ambient_size, "x", repr(self))
        ds = _values(delta, self.tangent_size, "delta", repr(self))
        out: list[Value] = []
        for m, xi, di in zip(self.factors, self._split(xs, False), self._split(ds, True)):
            out.extend(m.plus(xi, di))
        return out

    def minus(self, y: ValueSeq, x: ValueSeq) -> list[Value]:
        """Each factor's ``minus`` on its slices of ``y`` and ``x``, concatenated."""
        ys = _values(y, self.ambient_size, "y", repr(self))
        xs = _values(x, self.ambient_size, "x", repr(self))
        out: list[Value] = []
        for m, yi, xi in zip(self.factors, self._split(ys, False), self._split(xs, False)):
            out.extend(m.minus(yi, xi))
        return out

    def _ambient_parts(self, x: np.ndarray) -> list[np.ndarray]:
        bounds = np.cumsum([0] + [m.ambient_size for m in self.factors])
        return [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def check_point(self, x: np.ndarray, name: str) -> None:
        """Each factor's ``check_point`` on its slice of ``x`` (named ``name[a:b]``)."""
        start = 0
        for m, part in zip(self.factors, self._ambient_parts(x)):
            m.check_point(part, f"{name}[{start}:{start + m.ambient_size}]")
            start += m.ambient_size

    def step_reference(self, x: np.ndarray) -> np.ndarray:
        """Each factor's ``step_reference`` on its slice of ``x``, concatenated."""
        parts = [m.step_reference(p) for m, p in zip(self.factors, self._ambient_parts(x))]
        return np.concatenate(parts) if parts else np.zeros(0)


# ---------------------------------------------------------------------------- the solvers' view
class _Group:
    """The blocks of one manifold (equal manifolds share one batched kernel call):
    ``amb`` ``(blocks, ambient_size)`` and ``tan`` ``(blocks, tangent_size)`` indices."""

    amb: np.ndarray
    tan: np.ndarray
    zeros: np.ndarray

    def __init__(self, manifold: Manifold) -> None:
        self.manifold = manifold


class TangentSpace:
    """A parameter vector of ``n`` numbers some of whose blocks lie on manifolds, as the
    solvers see it: steps, Jacobians and gradients in the tangent space.

    The coordinates in no block (and those of :class:`EuclideanManifold` blocks) are
    Euclidean. The tangent vector lists the tangent coordinates in the order of ``x``:
    each Euclidean coordinate where it stands, each block's ``tangent_size``
    coordinates in place of its first ambient coordinate (so with no manifolds the
    tangent space is ``x``'s own). Equal manifolds are evaluated together, one native
    call per kind for all their blocks.

    Args:
        n: the length of the parameter vector.
        blocks: ``(indices, manifold)`` pairs, the indices distinct ints in ``[0, n)``,
            ``manifold.ambient_size`` of them, no index in two blocks.

    Raises:
        TypeError: a manifold that is not a :class:`Manifold`.
        ValueError: indices out of range, repeated, in two blocks, or not as many as
            the manifold's ``ambient_size``.

    Example:
        >>> import numpy as np
        >>> space = TangentSpace(5, [([1, 2, 3, 4], QuaternionManifold())])
        >>> space.tangent_size
        4
        >>> x = np.array([7.0, 1.0, 0.0, 0.0, 0.0])
        >>> np.round(space.plus(x, np.array([1.0, 0.0, 0.0, 0.1])), 6).tolist()
        [8.0, 0.995004, 0.0, 0.0, 0.099833]
    """

    def __init__(self, n: int, blocks: Sequence[tuple[Any, Manifold]]) -> None:
        self.n = n
        checked: list[tuple[np.ndarray, Manifold]] = []
        for b, (indices, manifold) in enumerate(blocks):
            if not isinstance(manifold, Manifold):
                raise TypeError(f"a manifold must be a Manifold (sa.QuaternionManifold(), "
                                f"...); block {b} has {type(manifold).__name__} "
                                f"{manifold!r:.40}")
            idx = np.asarray(indices, dtype=np.intp).reshape(-1)
            if idx.size != manifold.ambient_size:
                raise ValueError(f"block {b} has {idx.size} parameters but {manifold!r} has "
                                 f"ambient size {manifold.ambient_size}")
            checked.append((idx, manifold))
        self.blocks = checked
        sizes = np.array([idx.size for idx, _ in checked], dtype=np.intp)
        every = np.concatenate([idx for idx, _ in checked]) if checked else \
            np.zeros(0, dtype=np.intp)
        block_of = np.repeat(np.arange(len(checked)), sizes)
        outside = (every < 0) | (every >= n)
        if np.any(outside):
            b = int(block_of[np.argmax(outside)])
            raise ValueError(f"block {b}'s indices must lie in [0, {n}); got "
                             f"{checked[b][0].tolist()!r:.80}")
        counts = np.bincount(every, minlength=n)
        if np.any(counts > 1):
            j = int(np.argmax(counts > 1))
            owners = np.unique(block_of[every == j]).tolist()
            if len(owners) == 1:
                raise ValueError(f"block {owners[0]}'s indices must be distinct; got "
                                 f"{checked[owners[0]][0].tolist()!r:.80}")
            raise ValueError(f"parameter {j} is in two manifold blocks (blocks {owners[0]} "
                             f"and {owners[1]}); a parameter has one manifold")
        # each coordinate's share of the tangent vector: 1 for a Euclidean one, a
        # block's tangent size at its first coordinate, 0 at its others; the tangent
        # coordinates then follow x's order (their offsets: the running sum)
        euclidean_mask = counts == 0
        width = euclidean_mask.astype(np.intp)
        firsts = np.full(len(checked), -1, dtype=np.intp)
        keys: dict[int, tuple[Any, ...]] = {}
        members: dict[tuple[Any, ...], list[int]] = {}
        for b, (idx, manifold) in enumerate(checked):
            if isinstance(manifold, EuclideanManifold):
                euclidean_mask[idx] = True
                width[idx] = 1
                continue
            if not idx.size:
                continue
            key = keys.get(id(manifold))
            if key is None:
                key = keys[id(manifold)] = (type(manifold), manifold.key())
            firsts[b] = int(idx.min())
            width[firsts[b]] = manifold.tangent_size
            members.setdefault(key, []).append(b)
        offsets = np.cumsum(width) - width
        self.euclidean = np.flatnonzero(euclidean_mask)
        self.euclidean_tangent = offsets[self.euclidean]
        self.groups = []
        for group_blocks in members.values():
            manifold = checked[group_blocks[0]][1]
            group = _Group(manifold)
            group.amb = np.array([checked[b][0] for b in group_blocks],
                                 dtype=np.intp).reshape(len(group_blocks), -1)
            group.tan = (offsets[firsts[group_blocks]][:, None]
                         + np.arange(manifold.tangent_size, dtype=np.intp))
            group.zeros = np.zeros(group.tan.shape)
            self.groups.append(group)
        self._active = [g for g in self.groups if g.manifold.tangent_size]
        self.tangent_size = int(width.sum())
        self._compiled: list[_Kernels] | None = None

    def _kernels(self) -> list[_Kernels]:
        """The compiled maps of the groups with a tangent space (compiled on first use)."""
        if self._compiled is None:
            self._compiled = [g.manifold._kernels() for g in self._active]
        return self._compiled

    def __repr__(self) -> str:
        kinds = ", ".join(f"{len(g.amb)} x {g.manifold!r}" for g in self.groups)
        return f"TangentSpace(n={self.n}, tangent_size={self.tangent_size}, blocks=[{kinds}])"

    # ------------------------------------------------------------------ points
    def check(self, x: np.ndarray, name: str = "x0") -> None:
        """Raise ``ValueError`` unless every block of ``x`` is a point of its manifold
        (a unit quaternion, a non-zero vector on a sphere, finite numbers)."""
        for idx, manifold in self.blocks:
            manifold.check_point(x[idx], _block_name(name, idx))

    def plus(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        """``x`` moved by the tangent step ``h`` (a new array)."""
        out = x.copy()
        out[self.euclidean] += h[self.euclidean_tangent]
        for g, kernels in zip(self._active, self._kernels()):
            out[g.amb] = kernels.plus.batch_values(h[g.tan], x[g.amb])
        return out

    def minus(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The tangent vector from ``x`` to ``y``."""
        out = np.empty(self.tangent_size)
        out[self.euclidean_tangent] = y[self.euclidean] - x[self.euclidean]
        for g, kernels in zip(self._active, self._kernels()):
            out[g.tan] = kernels.minus.batch_values(y[g.amb], x[g.amb])
        return out

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The size of ``x`` in tangent coordinates, for relative step tests (see
        :meth:`Manifold.step_reference`; Euclidean coordinates are themselves)."""
        out = np.empty(self.tangent_size)
        out[self.euclidean_tangent] = x[self.euclidean]
        for g in self._active:
            out[g.tan] = g.manifold._step_references(x[g.amb])
        return out

    # ------------------------------------------------------------------ Jacobians
    def plus_jacobians(self, x: np.ndarray, h: np.ndarray | None = None
                       ) -> tuple[np.ndarray, list[np.ndarray]]:
        """``plus(x, h)`` and, per group, ``d plus / d h`` of every block,
        ``(blocks, ambient, tangent)``, at ``h`` (default 0, Ceres' PlusJacobian)."""
        out = x.copy()
        if h is not None:
            out[self.euclidean] += h[self.euclidean_tangent]
        jacobians = []
        for g, kernels in zip(self._active, self._kernels()):
            X = g.zeros if h is None else h[g.tan]
            values, jac = kernels.plus.batch_jacobian(X, x[g.amb])
            if h is not None:
                out[g.amb] = values
            jacobians.append(jac)
        return out, jacobians

    def pull_gradient(self, g: np.ndarray, jacobians: list[np.ndarray]) -> np.ndarray:
        """``P^T g``: an ambient gradient in the tangent space, ``P`` the plus Jacobians
        from :meth:`plus_jacobians`."""
        out = np.zeros(self.tangent_size)
        out[self.euclidean_tangent] = g[self.euclidean]
        for grp, jac in zip(self._active, jacobians):
            out[grp.tan] = np.einsum("ba,bak->bk", g[grp.amb], jac)
        return out

    def tangent_gradient(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """``PlusJacobian(x)^T g``."""
        return self.pull_gradient(g, self.plus_jacobians(x)[1])

    def to_tangent(self, J: Any, x: np.ndarray) -> Any:
        """``J @ PlusJacobian(x)``: a Jacobian with respect to ``x`` (dense
        ``(m, n)`` or ``scipy.sparse``) as one with respect to the tangent step at
        ``x``, ``(m, tangent_size)``, dense or CSR as ``J``."""
        jacobians = self.plus_jacobians(x)[1]
        if hasattr(J, "tocsr"):
            return (J.tocsr() @ self.plus_matrix(jacobians)).tocsr()
        J = np.asarray(J, dtype=float)
        out = np.zeros((J.shape[0], self.tangent_size))
        out[:, self.euclidean_tangent] = J[:, self.euclidean]
        for g, jac in zip(self._active, jacobians):
            out[:, g.tan] = np.einsum("iba,bak->ibk", J[:, g.amb], jac)
        return out

    def plus_matrix(self, jacobians: list[np.ndarray]) -> Any:
        """The plus Jacobian of the whole vector, ``(n, tangent_size)`` CSR."""
        from scipy import sparse

        rows = [self.euclidean]
        cols = [self.euclidean_tangent]
        data = [np.ones(self.euclidean.size)]
        for g, jac in zip(self._active, jacobians):
            rows.append(np.repeat(g.amb, g.manifold.tangent_size, axis=1).reshape(-1))
            cols.append(np.repeat(g.tan[:, None, :], g.manifold.ambient_size,
                                  axis=1).reshape(-1))
            data.append(jac.reshape(-1))
        return sparse.csr_matrix((np.concatenate(data),
                                  (np.concatenate(rows), np.concatenate(cols))),
                                 shape=(self.n, self.tangent_size))


def _block_name(name: str, idx: np.ndarray) -> str:
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        return f"{name}[{int(idx[0])}:{int(idx[0]) + idx.size}]"
    return f"{name}[{idx.tolist()}]"


def resolve_blocks(manifolds: Any, n: int, params: Sequence[Value] | None = None,
                   name: str = "manifolds") -> list[tuple[np.ndarray, Manifold]]:
    """``manifolds`` (``[(block, manifold), ...]``) as ``(indices, manifold)`` pairs.

    A block is a list of params (``Value`` objects among ``params``), a ``slice``, a
    ``range``, or a sequence of int indices into the parameter vector of length ``n``.
    A single ``(block, manifold)`` pair is accepted too.

    Raises:
        TypeError: ``manifolds`` is not a sequence of pairs, a manifold that is not a
            :class:`Manifold`, or a block of the wrong kind.
        ValueError: a Value that is not one of the params, indices out of range.

    Example:
        >>> resolve_blocks([(slice(1, 5), QuaternionManifold())], 6)[0][0].tolist()
        [1, 2, 3, 4]
    """
    if isinstance(manifolds, (str, bytes, Manifold)) or \
            not isinstance(manifolds, (Sequence, np.ndarray)):
        raise TypeError(f"`{name}` must be a list of (block, manifold) pairs; got "
                        f"{type(manifolds).__name__} {manifolds!r:.60}")
    items = list(manifolds)
    if len(items) == 2 and isinstance(items[1], Manifold) and not (
            isinstance(items[0], Sequence) and len(items[0]) == 2
            and isinstance(items[0][1], Manifold)):
        items = [tuple(items)]            # one (block, manifold) pair
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"`{name}[{i}]` must be a (block, manifold) pair; got "
                            f"{type(item).__name__} {item!r:.60}")
        block, manifold = item
        if not isinstance(manifold, Manifold):
            raise TypeError(f"`{name}[{i}]`'s manifold must be a Manifold "
                            f"(sa.QuaternionManifold(), ...); got {type(manifold).__name__} "
                            f"{manifold!r:.40}")
        out.append((block_indices(block, n, params, f"{name}[{i}]"), manifold))
    return out


def block_indices(block: Any, n: int, params: Sequence[Value] | None = None,
                  name: str = "block") -> np.ndarray:
    """The indices of a parameter block (see :func:`resolve_blocks`)."""
    if isinstance(block, slice):
        return np.arange(*block.indices(n), dtype=np.intp)
    if isinstance(block, Value):
        block = [block]
    if isinstance(block, (str, bytes)) or not isinstance(block, (Sequence, np.ndarray, range)):
        raise TypeError(f"`{name}`'s block must be a list of params, a slice or a list of "
                        f"indices; got {type(block).__name__} {block!r:.60}")
    items = list(block)
    if items and all(isinstance(v, Value) for v in items):
        if params is None:
            raise TypeError(f"`{name}`'s block holds Values, but this problem has no Value "
                            f"params; give indices into x")
        where = {id(p): j for j, p in enumerate(params)}
        idx = []
        for k, v in enumerate(items):
            if id(v) not in where:
                raise ValueError(f"`{name}`'s block[{k}] ({v!r:.40}) is not one of the "
                                 f"params")
            idx.append(where[id(v)])
        return np.array(idx, dtype=np.intp)
    for k, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"`{name}`'s block must hold params (Values) or int indices; "
                            f"block[{k}] is {type(v).__name__} {v!r:.40}")
        if not 0 <= int(v) < n:
            raise ValueError(f"`{name}`'s block indices must lie in [0, {n}); block[{k}] is "
                             f"{int(v)}")
    return np.array([int(v) for v in items], dtype=np.intp)


def tangent_space(manifolds: Any, n: int, params: Sequence[Value] | None = None,
                  name: str = "manifolds") -> TangentSpace | None:
    """The :class:`TangentSpace` of a ``manifolds`` argument (None for None or
    empty)."""
    if manifolds is None:
        return None
    blocks = resolve_blocks(manifolds, n, params, name)
    return TangentSpace(n, blocks) if blocks else None
