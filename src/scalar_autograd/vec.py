"""Small fixed-size vectors of ``Value``s: ``Vec2``, ``Vec3`` and ``Vec4`` (quaternions).

Every component is a :class:`~scalar_autograd.Value`, so every operation records the
graph and differentiates (eagerly with ``backward()`` or through ``sa.compile``). Only
table ops are used and nothing branches in Python on data, so a traced vector expression
is correct at every point, not only the one it was traced at.

Numbers given to a constructor become constant leaves; ``Vec3.param(...)`` makes
trainable leaves (``requires_grad=True``) and ``params()`` lists them.

Conventions at the singular points:

* ``magnitude`` of the zero vector is 0 with a ``nan`` gradient (``sqrt`` at 0); use
  ``sqr_magnitude``/``sqr_distance`` for objectives that reach 0.
* ``normalized`` of the zero vector is ``nan``.
* ``angle_between`` never produces ``nan`` from rounding: a cosine at or past +-1 gives
  exactly 0 or pi, with gradient 0 there (the angle has a kink at parallel vectors, as
  ``abs`` at 0; 0 is its subgradient). A zero vector gives ``nan``.

Example:
    >>> import scalar_autograd as sa
    >>> p = sa.Vec3.param(1.0, 2.0, 2.0, label="p")
    >>> d = p.magnitude()
    >>> d.backward()
    >>> d.data, p.grad
    (3.0, (0.3333333333333333, 0.6666666666666666, 0.6666666666666666))
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar, Self

from scalar_autograd import functional as F
from scalar_autograd.value import Value, ValueLike, as_value

__all__ = ["Vec2", "Vec3", "Vec4"]

_HALF_PI = 0.5 * math.pi


def _acos_unit(c: ValueLike) -> Value:
    """``acos`` of a cosine that rounding may push past +-1, with finite gradients.

    Inside (-1, 1) this is ``acos(c)``. At or past +-1 it is exactly 0 (c >= 1) or pi
    (c <= -1) with gradient 0, so neither the value (``acos(1.0000000000000002)`` is nan)
    nor the gradient (``acos'(1)`` is infinite) can become nan. The ``acos`` branch is fed
    0 when it is not selected (the "double where"), so its unused derivative stays finite.
    ``nan`` stays ``nan``.
    """
    inside = F.lt(F.abs(c), 1.0)
    safe = F.where(inside, c, 0.0)
    edge = (1.0 - F.sign(c)) * _HALF_PI  # 0 for c >= 1, pi for c <= -1, nan for nan
    return F.where(inside, F.acos(safe), edge)


def _check_scalar(value: Any, name: str) -> Value:
    if isinstance(value, _Vec):
        raise TypeError(
            f"{name} must be a scalar (Value or real number); got {type(value).__name__}: "
            "use dot() or cross() for products of vectors"
        )
    return as_value(value, name)


class _Vec:
    """Behaviour shared by ``Vec2``, ``Vec3`` and ``Vec4``: components in ``_c``."""

    __slots__ = ("_c",)
    _names: ClassVar[tuple[str, ...]] = ()

    _c: tuple[Value, ...]

    # ------------------------------------------------------------------ construction
    @classmethod
    def _make(cls, components: tuple[Value, ...]) -> Self:
        v = object.__new__(cls)
        v._c = components
        return v

    @classmethod
    def _from_any(cls, components: tuple[ValueLike, ...]) -> Self:
        if len(components) != len(cls._names):
            raise TypeError(
                f"{cls.__name__} takes {len(cls._names)} components; got {len(components)}"
            )
        return cls._make(tuple(
            _check_scalar(c, name) for c, name in zip(components, cls._names)
        ))

    @classmethod
    def _param(cls, components: tuple[float, ...], label: str) -> Self:
        if not isinstance(label, str):
            raise TypeError(f"label must be a str; got {type(label).__name__} {label!r}")
        values = []
        for c, name in zip(components, cls._names):
            if isinstance(c, Value):
                raise TypeError(
                    f"{cls.__name__}.param takes numbers; got a Value for {name} "
                    f"(use {cls.__name__}(...) to build a vector from existing Values)"
                )
            full = f"{label}.{name}" if label else name
            values.append(Value(as_value(c, name).data, label=full, requires_grad=True))
        return cls._make(tuple(values))

    @classmethod
    def _const(cls, components: tuple[float, ...]) -> Self:
        values = []
        for c, name in zip(components, cls._names):
            if isinstance(c, Value):
                raise TypeError(f"{cls.__name__}.const takes numbers; got a Value for {name}")
            values.append(Value(as_value(c, name).data))
        return cls._make(tuple(values))

    @classmethod
    def zero(cls) -> Self:
        """The constant zero vector.

        Example:
            >>> Vec2.zero().data
            (0.0, 0.0)
        """
        return cls._make(tuple(Value(0.0) for _ in cls._names))

    # ------------------------------------------------------------------ container
    def __iter__(self) -> Iterator[Value]:
        return iter(self._c)

    def __len__(self) -> int:
        return len(self._c)

    def __getitem__(self, index: int) -> Value:
        return self._c[index]

    @property
    def components(self) -> tuple[Value, ...]:
        """The components as a tuple of ``Value``s."""
        return self._c

    @property
    def data(self) -> tuple[float, ...]:
        """The components' values as a tuple of floats."""
        return tuple(c.data for c in self._c)

    @property
    def grad(self) -> tuple[float, ...]:
        """The components' gradients (after ``backward()``) as a tuple of floats."""
        return tuple(c.grad for c in self._c)

    def params(self) -> list[Value]:
        """The components that are trainable leaves (``requires_grad`` and no op).

        Example:
            >>> Vec2.param(1.0, 2.0).params()[0].requires_grad
            True
            >>> Vec2.const(1.0, 2.0).params()
            []
        """
        return [c for c in self._c if c.requires_grad and c.op is None]

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={c.data!r}" for n, c in zip(self._names, self._c))
        return f"{type(self).__name__}({inner})"

    # ------------------------------------------------------------------ arithmetic
    def _same(self, other: Any, what: str) -> Self:
        if type(other) is not type(self):
            raise TypeError(
                f"{what} needs two {type(self).__name__}s; got {type(other).__name__}"
            )
        return other  # type: ignore[no-any-return]

    def __add__(self, other: Self) -> Self:
        o = self._same(other, "+")
        return self._make(tuple(a + b for a, b in zip(self._c, o._c)))

    def __sub__(self, other: Self) -> Self:
        o = self._same(other, "-")
        return self._make(tuple(a - b for a, b in zip(self._c, o._c)))

    def __mul__(self, scalar: ValueLike) -> Self:
        s = _check_scalar(scalar, "scalar")
        return self._make(tuple(a * s for a in self._c))

    def __rmul__(self, scalar: ValueLike) -> Self:
        s = _check_scalar(scalar, "scalar")
        return self._make(tuple(s * a for a in self._c))

    def __truediv__(self, scalar: ValueLike) -> Self:
        s = _check_scalar(scalar, "scalar")
        return self._make(tuple(a / s for a in self._c))

    def __neg__(self) -> Self:
        return self._make(tuple(-a for a in self._c))

    def __pos__(self) -> Self:
        return self

    # ------------------------------------------------------------------ metric
    def dot(self, other: Self) -> Value:
        """The dot product, as one n-ary ``sum`` node.

        Example:
            >>> Vec3(1, 2, 3).dot(Vec3(4, 5, 6)).data
            32.0
        """
        o = self._same(other, "dot")
        return F.sum([a * b for a, b in zip(self._c, o._c)])

    def sqr_magnitude(self) -> Value:
        """The squared length ``self . self`` (smooth everywhere).

        Example:
            >>> Vec2(3, 4).sqr_magnitude().data
            25.0
        """
        return F.sum([a * a for a in self._c])

    def magnitude(self) -> Value:
        """The Euclidean length (gradient ``nan`` at the zero vector).

        Example:
            >>> Vec2(3, 4).magnitude().data
            5.0
        """
        return F.sqrt(self.sqr_magnitude())

    def normalized(self) -> Self:
        """The unit vector in the same direction (``nan`` for the zero vector).

        Example:
            >>> Vec2(3, 4).normalized().data
            (0.6, 0.8)
        """
        length = self.magnitude()
        return self._make(tuple(a / length for a in self._c))

    def sqr_distance(self, other: Self) -> Value:
        """The squared distance between two points (smooth everywhere).

        Example:
            >>> Vec2(1, 1).sqr_distance(Vec2(4, 5)).data
            25.0
        """
        return (self - self._same(other, "sqr_distance")).sqr_magnitude()

    def distance(self, other: Self) -> Value:
        """The distance between two points (gradient ``nan`` where they coincide).

        Example:
            >>> Vec2(1, 1).distance(Vec2(4, 5)).data
            5.0
        """
        return (self - self._same(other, "distance")).magnitude()

    def lerp(self, other: Self, t: ValueLike) -> Self:
        """Linear interpolation ``self + (other - self) * t`` (``t`` is not clamped).

        Example:
            >>> Vec2(0, 0).lerp(Vec2(2, 4), 0.25).data
            (0.5, 1.0)
        """
        return self + (self._same(other, "lerp") - self) * _check_scalar(t, "t")

    def project(self, onto: Self) -> Self:
        """The component of ``self`` along ``onto`` (``onto`` need not be unit length).

        Example:
            >>> Vec2(2, 3).project(Vec2(2, 0)).data
            (2.0, 0.0)
        """
        o = self._same(onto, "project")
        return o * (self.dot(o) / o.sqr_magnitude())

    def reject(self, onto: Self) -> Self:
        """The component of ``self`` perpendicular to ``onto``: ``self - project(onto)``.

        Example:
            >>> Vec2(2, 3).reject(Vec2(2, 0)).data
            (0.0, 3.0)
        """
        return self - self.project(onto)

    def angle_between(self, other: Self) -> Value:
        """The unsigned angle between two vectors, in ``[0, pi]``.

        Computed as ``acos`` of the cosine ``a.b / sqrt(|a|^2 |b|^2)``, clamped: a cosine
        that rounding puts at or past +-1 gives exactly 0 or pi with gradient 0 (the
        angle has a kink at parallel vectors; 0 is its subgradient), so neither the value
        nor the gradient is ever ``nan`` for non-zero vectors. A zero vector gives ``nan``.

        Example:
            >>> round(Vec2(1, 0).angle_between(Vec2(0, 2)).data, 12)
            1.570796326795
            >>> Vec3(1, 2, 3).angle_between(Vec3(2, 4, 6)).data
            0.0
        """
        o = self._same(other, "angle_between")
        cosine = self.dot(o) / F.sqrt(self.sqr_magnitude() * o.sqr_magnitude())
        return _acos_unit(cosine)


class Vec2(_Vec):
    """A 2-vector of ``Value``s.

    Args:
        x: the x component (a ``Value``, or a number that becomes a constant).
        y: the y component.

    Example:
        >>> v = Vec2(3.0, 4.0)
        >>> x, y = v
        >>> x.data, v.magnitude().data, v.perpendicular().data
        (3.0, 5.0, (-4.0, 3.0))
    """

    __slots__ = ()
    _names = ("x", "y")

    def __init__(self, x: ValueLike, y: ValueLike) -> None:
        self._c = (_check_scalar(x, "x"), _check_scalar(y, "y"))

    @classmethod
    def param(cls, x: float, y: float, label: str = "") -> Vec2:
        """A trainable vector: two leaves with ``requires_grad=True``, labelled ``label.x``.

        Example:
            >>> p = Vec2.param(1.0, 2.0, label="p")
            >>> [c.label for c in p]
            ['p.x', 'p.y']
        """
        return cls._param((x, y), label)

    @classmethod
    def const(cls, x: float, y: float) -> Vec2:
        """A constant vector (leaves without gradient).

        Example:
            >>> Vec2.const(1, 2).data
            (1.0, 2.0)
        """
        return cls._const((x, y))

    @property
    def x(self) -> Value:
        """The first component."""
        return self._c[0]

    @property
    def y(self) -> Value:
        """The second component."""
        return self._c[1]

    def cross(self, other: Vec2) -> Value:
        """The scalar 2-D cross product ``x1*y2 - y1*x2`` (z of the 3-D cross product).

        Example:
            >>> Vec2(1, 0).cross(Vec2(0, 1)).data
            1.0
        """
        o = self._same(other, "cross")
        return self._c[0] * o._c[1] - self._c[1] * o._c[0]

    def perpendicular(self) -> Vec2:
        """The vector rotated by +90 degrees: ``(-y, x)``.

        Example:
            >>> Vec2(1, 2).perpendicular().data
            (-2.0, 1.0)
        """
        return Vec2._make((-self._c[1], self._c[0]))

    def signed_distance_to_line(self, a: Vec2, b: Vec2) -> Value:
        """Signed distance from this point to the line through ``a`` and ``b``.

        Positive on the left of the direction ``a -> b``. ``nan`` if ``a == b``.

        Example:
            >>> Vec2(0, 2).signed_distance_to_line(Vec2(0, 0), Vec2(3, 0)).data
            2.0
        """
        direction = self._same(b, "b") - self._same(a, "a")
        return direction.cross(self - a) / direction.magnitude()

    def distance_to_line(self, a: Vec2, b: Vec2) -> Value:
        """Distance from this point to the (infinite) line through ``a`` and ``b``.

        ``|cross(b - a, p - a)| / |b - a|``; its gradient on the line is 0 (``abs'(0)``),
        never ``nan``. ``nan`` if ``a == b``.

        Example:
            >>> Vec2(1, -2).distance_to_line(Vec2(0, 0), Vec2(3, 0)).data
            2.0
        """
        return F.abs(self.signed_distance_to_line(a, b))


class Vec3(_Vec):
    """A 3-vector of ``Value``s.

    Args:
        x: the x component (a ``Value``, or a number that becomes a constant).
        y: the y component.
        z: the z component.

    Example:
        >>> a, b = Vec3(1, 0, 0), Vec3(0, 1, 0)
        >>> a.cross(b).data
        (0.0, 0.0, 1.0)
        >>> x, y, z = a + b * 2
        >>> (x.data, y.data, z.data)
        (1.0, 2.0, 0.0)
    """

    __slots__ = ()
    _names = ("x", "y", "z")

    def __init__(self, x: ValueLike, y: ValueLike, z: ValueLike) -> None:
        self._c = (_check_scalar(x, "x"), _check_scalar(y, "y"), _check_scalar(z, "z"))

    @classmethod
    def param(cls, x: float, y: float, z: float, label: str = "") -> Vec3:
        """A trainable vector: three leaves with ``requires_grad=True``.

        Example:
            >>> p = Vec3.param(1.0, 2.0, 3.0, label="p")
            >>> [c.label for c in p], p.params()[2].requires_grad
            (['p.x', 'p.y', 'p.z'], True)
        """
        return cls._param((x, y, z), label)

    @classmethod
    def const(cls, x: float, y: float, z: float) -> Vec3:
        """A constant vector (leaves without gradient).

        Example:
            >>> Vec3.const(1, 2, 3).data
            (1.0, 2.0, 3.0)
        """
        return cls._const((x, y, z))

    @property
    def x(self) -> Value:
        """The first component."""
        return self._c[0]

    @property
    def y(self) -> Value:
        """The second component."""
        return self._c[1]

    @property
    def z(self) -> Value:
        """The third component."""
        return self._c[2]

    def cross(self, other: Vec3) -> Vec3:
        """The cross product ``self x other`` (right-handed).

        Example:
            >>> Vec3(0, 1, 0).cross(Vec3(0, 0, 1)).data
            (1.0, 0.0, 0.0)
        """
        o = self._same(other, "cross")
        ax, ay, az = self._c
        bx, by, bz = o._c
        return Vec3._make((ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx))

    def distance_to_line(self, a: Vec3, b: Vec3) -> Value:
        """Distance from this point to the (infinite) line through ``a`` and ``b``.

        ``|cross(b - a, p - a)| / |b - a|``. On the line the value is 0 and the gradient
        ``nan`` (``sqrt`` at 0); minimise ``cross(b - a, p - a).sqr_magnitude()`` instead
        if the point must reach the line. ``nan`` if ``a == b``.

        Example:
            >>> Vec3(0, 3, 4).distance_to_line(Vec3(0, 0, 0), Vec3(2, 0, 0)).data
            5.0
        """
        direction = self._same(b, "b") - self._same(a, "a")
        return direction.cross(self - a).magnitude() / direction.magnitude()


class Vec4(_Vec):
    """A 4-vector of ``Value``s, also used as a quaternion ``w + x i + y j + z k``.

    The component order is ``(w, x, y, z)``: the scalar part first.

    Args:
        w: the w component (a ``Value``, or a number that becomes a constant).
        x: the x component.
        y: the y component.
        z: the z component.

    Example:
        >>> import math
        >>> q = Vec4.from_axis_angle(Vec3(0, 0, 1), math.pi / 2)
        >>> [round(c, 12) for c in q.rotate(Vec3(1, 0, 0)).data]
        [0.0, 1.0, 0.0]
    """

    __slots__ = ()
    _names = ("w", "x", "y", "z")

    def __init__(self, w: ValueLike, x: ValueLike, y: ValueLike, z: ValueLike) -> None:
        self._c = (_check_scalar(w, "w"), _check_scalar(x, "x"), _check_scalar(y, "y"),
                   _check_scalar(z, "z"))

    @classmethod
    def param(cls, w: float, x: float, y: float, z: float, label: str = "") -> Vec4:
        """A trainable vector: four leaves with ``requires_grad=True``.

        Example:
            >>> [c.label for c in Vec4.param(1, 0, 0, 0, label="q")]
            ['q.w', 'q.x', 'q.y', 'q.z']
        """
        return cls._param((w, x, y, z), label)

    @classmethod
    def const(cls, w: float, x: float, y: float, z: float) -> Vec4:
        """A constant vector (leaves without gradient).

        Example:
            >>> Vec4.const(1, 0, 0, 0).data
            (1.0, 0.0, 0.0, 0.0)
        """
        return cls._const((w, x, y, z))

    @classmethod
    def identity(cls) -> Vec4:
        """The identity rotation ``(1, 0, 0, 0)`` as constants.

        Example:
            >>> Vec4.identity().data
            (1.0, 0.0, 0.0, 0.0)
        """
        return cls._const((1.0, 0.0, 0.0, 0.0))

    @classmethod
    def from_axis_angle(cls, axis: Vec3, angle: ValueLike) -> Vec4:
        """The unit quaternion rotating by ``angle`` (radians) about ``axis``.

        ``axis`` need not be unit length (it is normalised; a zero axis gives ``nan``).
        The rotation is right-handed: counter-clockwise looking down ``axis``.

        Example:
            >>> [round(c, 12) for c in Vec4.from_axis_angle(Vec3(0, 0, 2), math.pi).data]
            [0.0, 0.0, 0.0, 1.0]
        """
        if not isinstance(axis, Vec3):
            raise TypeError(f"axis must be a Vec3; got {type(axis).__name__}")
        half = _check_scalar(angle, "angle") * 0.5
        s = F.sin(half)
        u = axis.normalized()
        return cls._make((F.cos(half), u._c[0] * s, u._c[1] * s, u._c[2] * s))

    @property
    def w(self) -> Value:
        """The scalar (real) part."""
        return self._c[0]

    @property
    def x(self) -> Value:
        """The ``i`` component."""
        return self._c[1]

    @property
    def y(self) -> Value:
        """The ``j`` component."""
        return self._c[2]

    @property
    def z(self) -> Value:
        """The ``k`` component."""
        return self._c[3]

    @property
    def vector(self) -> Vec3:
        """The vector (imaginary) part ``(x, y, z)`` as a ``Vec3``."""
        return Vec3._make(self._c[1:])

    def quat_mul(self, other: Vec4) -> Vec4:
        """The Hamilton product ``self * other`` (apply ``other`` first, then ``self``).

        Example:
            >>> i, j = Vec4(0, 1, 0, 0), Vec4(0, 0, 1, 0)
            >>> i.quat_mul(j).data  # i j = k
            (0.0, 0.0, 0.0, 1.0)
        """
        o = self._same(other, "quat_mul")
        w1, x1, y1, z1 = self._c
        w2, x2, y2, z2 = o._c
        return Vec4._make((
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ))

    def conjugate(self) -> Vec4:
        """``(w, -x, -y, -z)``; the inverse rotation of a unit quaternion.

        Example:
            >>> Vec4(1, 2, 3, 4).conjugate().data
            (1.0, -2.0, -3.0, -4.0)
        """
        w, x, y, z = self._c
        return Vec4._make((w, -x, -y, -z))

    def inverse(self) -> Vec4:
        """The multiplicative inverse ``conjugate / |q|^2`` (``nan`` for zero).

        Example:
            >>> Vec4(0, 2, 0, 0).inverse().data
            (0.0, -0.5, -0.0, -0.0)
        """
        return self.conjugate() / self.sqr_magnitude()

    def rotate(self, v: Vec3) -> Vec3:
        """Rotate ``v`` by this quaternion, which must be unit length: ``q v q*``.

        Uses ``t = 2 (u x v)``, ``v' = v + w t + u x t`` with ``u`` the vector part (no
        normalisation inside, so a non-unit quaternion also scales; call
        ``normalized()`` first when the quaternion is a free parameter).

        Example:
            >>> q = Vec4.from_axis_angle(Vec3(1, 0, 0), math.pi / 2)
            >>> [round(c, 12) for c in q.rotate(Vec3(0, 1, 0)).data]
            [0.0, 0.0, 1.0]
        """
        if not isinstance(v, Vec3):
            raise TypeError(f"v must be a Vec3; got {type(v).__name__}")
        u = self.vector
        t = u.cross(v) * 2.0
        return v + t * self._c[0] + u.cross(t)
