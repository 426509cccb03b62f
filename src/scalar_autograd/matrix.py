"""``Matrix3x3`` of ``Value``s, with the eigenvalues of symmetric 3x3 matrices through the graph.

The eigenvalue helpers use the closed-form trigonometric method (Smith 1961): with
``q = trace/3``, ``p = sqrt(|A - qI|_F^2 / 6)`` and ``B = (A - qI)/p``, the eigenvalues
are ``q + 2p cos(phi + 2 pi k / 3)`` where ``phi = acos(det(B)/2)/3``. Everything is made
of table ops with no Python branching on data, so a traced expression compiles and stays
correct at every point:

* ``A = qI`` (``p = 0``) is handled with ``where`` (all eigenvalues are ``q``), feeding the
  unused branch safe numbers so no ``nan`` leaks into the gradient.
* Repeated eigenvalues put ``det(B)/2`` at +-1, where ``acos`` has an infinite
  derivative and rounding can step outside its domain; the argument is clamped (the same
  "double where" as ``Vec3.angle_between``) and ``phi`` gets gradient 0 there. This is
  exact where the smallest eigenvalue is simple (``det(B)/2`` is at its extremum, so its
  own derivative is 0), and at a tie gives the average of the tied eigenvectors'
  projectors, the matrix version of ``minimum``'s 0.5/0.5 tie rule.

Only the symmetric part ``(A + A^T)/2`` is read, so ``d lambda / d A_ij = v_i v_j`` for
every entry (an off-diagonal ``Value`` shared by ``A_ij`` and ``A_ji``, as built by
:meth:`Matrix3x3.symmetric`, accumulates ``2 v_i v_j``).

Accuracy is absolute, relative to the largest eigenvalue magnitude ``s``: about 1e-15 s
for well-separated eigenvalues. When the two smallest (nearly) coincide, ``det(B)/2`` is
near 1 where ``acos`` amplifies rounding, and the trigonometric value and gradient are
right to about 1e-8 s; :meth:`Matrix3x3.smallest_eigenvalue_analytic` (a Rayleigh
quotient) stays at about 1e-15 s at exact ties, and within the gap for a gap below ~1e-8 s.

Example:
    >>> import scalar_autograd as sa
    >>> m = sa.Matrix3x3.symmetric(2.0, 1.0, 0.0, 2.0, 0.0, 5.0)
    >>> [round(e.data, 12) for e in m.eigenvalues()]
    [1.0, 3.0, 5.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from scalar_autograd import functional as F
from scalar_autograd.value import Value, ValueLike, as_value
from scalar_autograd.vec import Vec3, _acos_unit

__all__ = ["Matrix3x3"]

_TWO_THIRDS_PI = 2.0 * math.pi / 3.0


def _as_list(items: Any, name: str) -> list[Any]:
    if isinstance(items, (str, bytes, Value)) or not isinstance(items, Iterable):
        raise TypeError(f"{name} must be a sequence; got {type(items).__name__}")
    return list(items)


def _rayleigh(a: tuple[Value, ...], v: Vec3) -> Value:
    """``v^T A v`` for the symmetric ``A`` given by its upper triangle ``a``."""
    a00, a01, a02, a11, a12, a22 = a
    v0, v1, v2 = v
    return F.sum([
        v0 * v0 * a00, v1 * v1 * a11, v2 * v2 * a22,
        2.0 * (v0 * v1) * a01, 2.0 * (v0 * v2) * a02, 2.0 * (v1 * v2) * a12,
    ])


def _constant_unit(v: Vec3) -> Vec3:
    """``v`` with no gradient flowing back into its computation (``stop_gradient``)."""
    return Vec3(*(F.stop_gradient(c) for c in v))


def _select(condition: Value, a: Vec3, b: Vec3) -> Vec3:
    """Componentwise ``where(condition, a, b)``."""
    return Vec3(*(F.where(condition, ai, bi) for ai, bi in zip(a, b)))


class Matrix3x3:
    """A 3x3 matrix of ``Value``s (row-major).

    Args:
        rows: three rows of three ``Value``s or numbers (numbers become constants).

    Raises:
        TypeError: if ``rows`` is not three rows of three scalars.

    Example:
        >>> m = Matrix3x3([[1, 2, 0], [0, 1, 0], [0, 0, 2]])
        >>> m.determinant().data, (m @ Vec3(1, 1, 1)).data
        (2.0, (3.0, 1.0, 2.0))
    """

    __slots__ = ("_rows",)

    _rows: tuple[tuple[Value, Value, Value], ...]

    def __init__(self, rows: Sequence[Sequence[ValueLike]]) -> None:
        row_list = _as_list(rows, "rows")
        if len(row_list) != 3:
            raise TypeError(f"rows must be 3 rows of 3 scalars; got {len(row_list)} rows")
        built = []
        for i, row in enumerate(row_list):
            entries = _as_list(row, f"rows[{i}]")
            if len(entries) != 3:
                raise TypeError(f"rows[{i}] must hold 3 scalars; got {len(entries)}")
            a, b, c = (as_value(x, f"rows[{i}][{j}]") for j, x in enumerate(entries))
            built.append((a, b, c))
        self._rows = tuple(built)

    @classmethod
    def _make(cls, rows: Sequence[Sequence[Value]]) -> Matrix3x3:
        m = object.__new__(cls)
        m._rows = tuple((r[0], r[1], r[2]) for r in rows)
        return m

    # ------------------------------------------------------------------ constructors
    @classmethod
    def symmetric(cls, xx: ValueLike, xy: ValueLike, xz: ValueLike, yy: ValueLike,
                  yz: ValueLike, zz: ValueLike) -> Matrix3x3:
        """The symmetric matrix with the given upper triangle (mirrored entries share a node).

        Example:
            >>> Matrix3x3.symmetric(1, 2, 3, 4, 5, 6).data.tolist()
            [[1.0, 2.0, 3.0], [2.0, 4.0, 5.0], [3.0, 5.0, 6.0]]
        """
        a, b, c, d, e, f = (as_value(v, n) for v, n in zip(
            (xx, xy, xz, yy, yz, zz), ("xx", "xy", "xz", "yy", "yz", "zz")))
        return cls._make(((a, b, c), (b, d, e), (c, e, f)))

    @classmethod
    def identity(cls) -> Matrix3x3:
        """The constant identity matrix.

        Example:
            >>> Matrix3x3.identity().trace().data
            3.0
        """
        return cls([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])

    @classmethod
    def outer(cls, a: Vec3, b: Vec3) -> Matrix3x3:
        """The outer product ``a b^T``.

        Example:
            >>> Matrix3x3.outer(Vec3(1, 2, 3), Vec3(1, 0, 0)).data[:, 0].tolist()
            [1.0, 2.0, 3.0]
        """
        if not isinstance(a, Vec3) or not isinstance(b, Vec3):
            raise TypeError(f"outer takes two Vec3; got {type(a).__name__}, "
                            f"{type(b).__name__}")
        return cls._make(tuple(tuple(ai * bj for bj in b) for ai in a))

    @classmethod
    def covariance(cls, points: Sequence[Vec3]) -> Matrix3x3:
        """The covariance ``mean((p - c)(p - c)^T)`` of points about their centroid ``c``.

        Symmetric by construction (6 distinct entries, each one ``mean`` node). Its
        smallest eigenvalue measures how far the points are from a common plane.

        Raises:
            ValueError: if ``points`` is empty.
            TypeError: if an element is not a ``Vec3``.

        Example:
            >>> pts = [Vec3(0, 0, 0), Vec3(2, 0, 0), Vec3(0, 2, 0), Vec3(2, 2, 0)]
            >>> Matrix3x3.covariance(pts).data.tolist()
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
        """
        pts = list(points)
        if not pts:
            raise ValueError("points must contain at least one Vec3; got an empty sequence")
        for i, p in enumerate(pts):
            if not isinstance(p, Vec3):
                raise TypeError(f"points[{i}] must be a Vec3; got {type(p).__name__}")
        centre = [F.mean([p[k] for p in pts]) for k in range(3)]
        d = [[p[k] - centre[k] for k in range(3)] for p in pts]

        def entry(i: int, j: int) -> Value:
            return F.mean([di[i] * di[j] for di in d])

        return cls.symmetric(entry(0, 0), entry(0, 1), entry(0, 2), entry(1, 1),
                             entry(1, 2), entry(2, 2))

    # ------------------------------------------------------------------ container
    def __getitem__(self, index: tuple[int, int]) -> Value:
        i, j = index
        return self._rows[i][j]

    def __iter__(self) -> Iterator[tuple[Value, Value, Value]]:
        return iter(self._rows)

    def row(self, i: int) -> Vec3:
        """Row ``i`` as a ``Vec3``."""
        return Vec3(*self._rows[i])

    def column(self, j: int) -> Vec3:
        """Column ``j`` as a ``Vec3``."""
        return Vec3(*(r[j] for r in self._rows))

    @property
    def data(self) -> np.ndarray:
        """The values as a new 3x3 float64 array."""
        return np.array([[v.data for v in r] for r in self._rows], dtype=np.float64)

    @property
    def grad(self) -> np.ndarray:
        """The entries' gradients (after ``backward()``) as a new 3x3 float64 array."""
        return np.array([[v.grad for v in r] for r in self._rows], dtype=np.float64)

    def __repr__(self) -> str:
        return f"Matrix3x3({self.data.tolist()!r})"

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: Matrix3x3) -> Matrix3x3:
        o = self._check_matrix(other, "+")
        return self._make([[a + b for a, b in zip(r, s)] for r, s in zip(self, o)])

    def __sub__(self, other: Matrix3x3) -> Matrix3x3:
        o = self._check_matrix(other, "-")
        return self._make([[a - b for a, b in zip(r, s)] for r, s in zip(self, o)])

    def __mul__(self, scalar: ValueLike) -> Matrix3x3:
        if isinstance(scalar, (Matrix3x3, Vec3)):
            raise TypeError("use @ for matrix products; * takes a scalar")
        s = as_value(scalar, "scalar")
        return self._make([[a * s for a in r] for r in self])

    __rmul__ = __mul__

    def __neg__(self) -> Matrix3x3:
        return self._make([[-a for a in r] for r in self])

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, Vec3):
            return Vec3(*(F.sum([a * b for a, b in zip(r, other)]) for r in self))
        o = self._check_matrix(other, "@")
        cols = [[r[j] for r in o] for j in range(3)]
        return self._make([[F.sum([a * b for a, b in zip(r, c)]) for c in cols]
                           for r in self])

    @staticmethod
    def _check_matrix(other: Any, what: str) -> Matrix3x3:
        if not isinstance(other, Matrix3x3):
            raise TypeError(f"{what} needs a Matrix3x3; got {type(other).__name__}")
        return other

    def transpose(self) -> Matrix3x3:
        """The transpose (the same nodes, rearranged)."""
        return self._make([[r[j] for r in self] for j in range(3)])

    def trace(self) -> Value:
        """The sum of the diagonal."""
        return F.sum([self._rows[i][i] for i in range(3)])

    def determinant(self) -> Value:
        """The determinant by cofactor expansion along the first row."""
        (a, b, c), (d, e, f), (g, h, i) = self._rows
        return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)

    # ------------------------------------------------------------------ eigenvalues
    def _symmetric_entries(self) -> tuple[Value, Value, Value, Value, Value, Value]:
        """``(a00, a01, a02, a11, a12, a22)`` of the symmetric part ``(A + A^T)/2``."""
        r = self._rows

        def off(i: int, j: int) -> Value:
            if r[i][j] is r[j][i]:
                return r[i][j]
            return (r[i][j] + r[j][i]) * 0.5

        return r[0][0], off(0, 1), off(0, 2), r[1][1], off(1, 2), r[2][2]

    def _trigonometric(self) -> tuple[Value, Value, Value, tuple[Value, ...], Value, Value]:
        """``(q, p, nonzero, B entries, beta_min, beta_max)`` of the closed form."""
        a00, a01, a02, a11, a12, a22 = self._symmetric_entries()
        q = F.sum([a00, a11, a22]) / 3.0
        # d2 = -(d0 + d1) (= a22 - q in exact arithmetic) keeps D = A - qI traceless to
        # rounding of d itself, not of q: the formula assumes trace 0, and near a multiple
        # of the identity the rounding of q is as large as D.
        d0, d1 = a00 - q, a11 - q
        d2 = -(d0 + d1)
        p2 = F.sum([d0 * d0, d1 * d1, d2 * d2, 2.0 * F.sum([a01 * a01, a02 * a02, a12 * a12])])
        nonzero = F.gt(p2, 0.0)
        # p = 1 when A = qI, so that B = 0 and no 0/0 reaches even the unused branch.
        p = F.sqrt(F.where(nonzero, p2, 6.0) / 6.0)
        b00, b01, b02, b11, b12, b22 = (x / p for x in (d0, a01, a02, d1, a12, d2))
        det_b = (b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02)
                 + b02 * (b01 * b12 - b11 * b02))
        phi = _acos_unit(det_b * 0.5) / 3.0
        beta_max = 2.0 * F.cos(phi)
        beta_min = 2.0 * F.cos(phi + _TWO_THIRDS_PI)
        return q, p, nonzero, (b00, b01, b02, b11, b12, b22), beta_min, beta_max

    def eigenvalues(self) -> tuple[Value, Value, Value]:
        """The three eigenvalues of the symmetric part, ascending, through the graph.

        Example:
            >>> m = Matrix3x3.symmetric(1, 0, 0, 1, 0, 1)
            >>> [e.data for e in m.eigenvalues()]
            [1.0, 1.0, 1.0]
        """
        q, p, nonzero, _, beta_min, beta_max = self._trigonometric()
        smallest = F.where(nonzero, q + p * beta_min, q)
        largest = F.where(nonzero, q + p * beta_max, q)
        middle = 3.0 * q - smallest - largest
        return smallest, middle, largest

    def smallest_eigenvalue(self) -> Value:
        """The smallest eigenvalue of the symmetric part, by the trigonometric method.

        The gradient flows through the closed form; it equals ``v v^T`` (``v`` the unit
        eigenvector) where the eigenvalue is simple, and the average over the eigenspace at
        ties (see the module docstring). Compiles: only table ops, no data branching.

        Example:
            >>> m = Matrix3x3.symmetric(2.0, 1.0, 0.0, 2.0, 0.0, 5.0)
            >>> lam = m.smallest_eigenvalue()
            >>> round(lam.data, 12)
            1.0
        """
        q, p, nonzero, _, beta_min, _ = self._trigonometric()
        return F.where(nonzero, q + p * beta_min, q)

    def smallest_eigenvector(self) -> Vec3:
        """A unit eigenvector for the smallest eigenvalue, through the graph (sign arbitrary).

        With ``beta`` the smallest eigenvalue of the scaled ``B = (A - qI)/p`` (entries of
        order 1 whatever the scale of ``A``), ``M = B - beta I`` is singular, and two
        candidates are formed with table ops only:

        * the largest of the cross products of ``M``'s rows, normalised: accurate when the
          smallest eigenvalue is well separated;
        * a unit vector perpendicular to ``M``'s largest row: exact when the smallest
          eigenvalue is double (the cross products then vanish or are rounding noise).

        The candidate with the smaller Rayleigh quotient ``v^T A v`` is returned (the
        Rayleigh quotient of a unit vector is never below the smallest eigenvalue, so the
        smaller one is the better eigenvector). For ``A = qI`` every vector is an
        eigenvector. The choice is a ``where``, so this compiles.

        Example:
            >>> v = Matrix3x3.symmetric(2.0, 1.0, 0.0, 2.0, 0.0, 5.0).smallest_eigenvector()
            >>> [round(abs(c), 12) for c in v.data]
            [0.707106781187, 0.707106781187, 0.0]
        """
        return self._smallest_eigenpair()[1]

    def _smallest_eigenpair(self) -> tuple[Value, Vec3]:
        """``(v^T A v, v)`` for the better of the two eigenvector candidates."""
        _, _, _, b, beta, _ = self._trigonometric()
        b00, b01, b02, b11, b12, b22 = b
        rows = (Vec3(b00 - beta, b01, b02), Vec3(b01, b11 - beta, b12),
                Vec3(b02, b12, b22 - beta))

        # Perpendicular to the largest row r: r x e_k for the axis e_k along which r is
        # smallest (r x e_k cannot vanish: r != 0 because B has Frobenius norm sqrt 6).
        r, _ = self._largest(rows)
        ax, ay, az = (F.abs(c) for c in r)
        rx, ry, rz = r
        zero = Value(0.0)
        cross_x = Vec3(zero, rz, -ry)  # r x e_x
        cross_y = Vec3(-rz, zero, rx)  # r x e_y
        cross_z = Vec3(ry, -rx, zero)  # r x e_z
        use_x = F.mul(F.le(ax, ay), F.le(ax, az))
        perpendicular = _select(use_x, cross_x, _select(F.le(ay, az), cross_y, cross_z))
        v_perpendicular = perpendicular.normalized()

        crosses = (rows[1].cross(rows[2]), rows[0].cross(rows[2]), rows[0].cross(rows[1]))
        u, u_norm = self._largest(crosses)
        # An exactly zero cross product is replaced before normalising (no 0/0 anywhere).
        v_cross = _select(F.gt(u_norm, 0.0), u, perpendicular).normalized()

        entries = self._symmetric_entries()
        r_cross = _rayleigh(entries, _constant_unit(v_cross))
        r_perpendicular = _rayleigh(entries, _constant_unit(v_perpendicular))
        use_cross = F.le(r_cross, r_perpendicular)
        return (F.where(use_cross, r_cross, r_perpendicular),
                _select(use_cross, v_cross, v_perpendicular))

    @staticmethod
    def _largest(vectors: tuple[Vec3, Vec3, Vec3]) -> tuple[Vec3, Value]:
        """The vector of largest squared norm (the first at ties) and that norm."""
        norms = [v.sqr_magnitude() for v in vectors]
        first = F.ge(norms[0], norms[1])
        best = _select(first, vectors[0], vectors[1])
        best_norm = F.where(first, norms[0], norms[1])
        last = F.ge(best_norm, norms[2])
        return _select(last, best, vectors[2]), F.where(last, best_norm, norms[2])

    def smallest_eigenvalue_analytic(self) -> Value:
        """The smallest eigenvalue with the eigenvector-rule gradient ``d lambda/dA_ij = v_i v_j``.

        Built as ``lambda = v^T A v`` with ``v`` the in-graph unit eigenvector of
        :meth:`smallest_eigenvector` held constant with ``stop_gradient``, so the gradient
        is exactly ``v_i v_j`` (Hellmann-Feynman: for a unit eigenvector ``d(v^T A v) = v^T dA v``
        because ``2 lambda v^T dv = lambda d|v|^2 = 0``). Letting the gradient flow through
        ``v`` as well would be right in exact arithmetic, but near repeated eigenvalues
        ``dv/dA`` is huge and times the rounding-level residual ``A v - lambda v`` it
        would give gradients of order 1 in error. The value is the Rayleigh quotient,
        accurate to rounding even at repeated eigenvalues (where the trigonometric
        :meth:`smallest_eigenvalue` loses about half the digits).

        Why not ``lambda0 + sum v_i v_j (A_ij - A_ij.data)`` with ``lambda0`` and ``v`` from
        ``numpy.linalg.eigh``: that node is right eagerly, but the numbers would become
        constants when traced by ``sa.compile``, so the compiled function would return
        the linearisation at the traced matrix everywhere else. Here ``v`` is computed in
        the graph, so the compiled function is right at every point.

        Example:
            >>> a = Value(2.0, requires_grad=True)
            >>> m = Matrix3x3.symmetric(a, 1.0, 0.0, 2.0, 0.0, 5.0)
            >>> lam = m.smallest_eigenvalue_analytic()
            >>> lam.backward()
            >>> round(lam.data, 12), round(a.grad, 12)  # v = (1, -1, 0)/sqrt 2: v0^2
            (1.0, 0.5)
        """
        return self._smallest_eigenpair()[0]
