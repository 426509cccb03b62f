"""Up-front checks of arguments and options, shared by the optimisers and the solvers.

Every check is called as ``check_something(value, name)``, returns the value converted
(a float, an int, a float64 array, a list of ``Value``) and otherwise raises with a
message that names the argument, states the rule and echoes what was received:

* ``TypeError`` for the wrong kind of thing: a str for a rate, a float or a bool for a
  count, a complex number, a non-callable callback;
* ``ValueError`` for a wrong value of the right kind: 0 iterations, a nan, infinite or
  negative rate, an unknown name.

Options are named in backticks (`` `lr` ``). Arrays are named as the caller describes
them (``x0``, ``residual block 'fit': data[1]``), as compiled functions name theirs.
Defaults are not stated here: they live in the config dataclasses that call these
checks (``SGDConfig``, ``AdamConfig``, ``LBFGSConfig``, ``SolverOptions``).

Example:
    >>> check_positive_float(0.1, "lr")
    0.1
    >>> check_positive_float(0.0, "lr")
    Traceback (most recent call last):
    ...
    ValueError: `lr` must be a finite real number > 0; got 0.0
    >>> check_positive_int(2.5, "max_iterations")
    Traceback (most recent call last):
    ...
    TypeError: `max_iterations` must be a positive integer; got float 2.5
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

import numpy as np

from scalar_autograd.value import Value

REAL_KINDS = "fiub"
"""numpy dtype kinds of real numbers: float, signed and unsigned int, bool."""

Check = Callable[[Any, str], Any]
"""A check: ``check(value, name)`` returns the value converted, or raises."""


def _received(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.80}"


def _wrong_type(value: Any, name: str, rule: str) -> NoReturn:
    raise TypeError(f"`{name}` must be {rule}; got {_received(value)}")


def _wrong_value(value: Any, name: str, rule: str) -> NoReturn:
    raise ValueError(f"`{name}` must be {rule}; got {value!r:.80}")


# ------------------------------------------------------------------ scalars
def check_bool(value: Any, name: str) -> bool:
    """``value``, which must be a ``bool`` (not an int that looks like one)."""
    if not isinstance(value, bool):
        _wrong_type(value, name, "a bool")
    return value


def _integer(value: Any, name: str, rule: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; a ``bool`` or an integral float is not an
    integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _wrong_type(value, name, rule)
    if value < minimum:
        _wrong_value(value, name, rule)
    return int(value)


def check_positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1 (a count of iterations, a size)."""
    return _integer(value, name, "a positive integer", 1)


def check_nonnegative_int(value: Any, name: str) -> int:
    """``value`` as an int >= 0 (a count that may be zero, such as steps taken)."""
    return _integer(value, name, "an integer >= 0", 0)


def _real(value: Any, name: str, rule: str) -> float:
    """``value`` as a float, raising TypeError (naming ``rule``) unless it is a real
    number; a ``bool`` is not one here, and an int beyond the float range is a
    ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _wrong_type(value, name, rule)
    try:
        return float(value)
    except OverflowError:
        _wrong_value(value, name, rule)


def check_real_in(value: Any, name: str, rule: str, accept: Callable[[float], bool]) -> float:
    """``value`` as a float for which ``accept`` is true; ``rule`` says so in words.

    The building block of the checks below, for a rule of one's own (a nan never
    passes, since every comparison with nan is false).

    Example:
        >>> check_real_in(2.0, "norm_type", "a real number > 0 (inf for the max-norm)",
        ...               lambda v: v > 0.0)
        2.0
    """
    number = _real(value, name, rule)
    if not accept(number):
        _wrong_value(value, name, rule)
    return number


def check_positive_float(value: Any, name: str) -> float:
    """``value`` as a float, finite and > 0 (a rate, a scale)."""
    return check_real_in(value, name, "a finite real number > 0",
                         lambda v: 0.0 < v < math.inf)


def check_nonnegative_float(value: Any, name: str) -> float:
    """``value`` as a float, finite and >= 0 (a tolerance, a decay)."""
    return check_real_in(value, name, "a finite real number >= 0",
                         lambda v: 0.0 <= v < math.inf)


def check_unit_interval(value: Any, name: str) -> float:
    """``value`` as a float in ``[0, 1)`` (a decay rate such as Adam's betas)."""
    return check_real_in(value, name, "a real number in [0, 1)", lambda v: 0.0 <= v < 1.0)


def check_open_unit_interval(value: Any, name: str) -> float:
    """``value`` as a float in ``(0, 1)`` (the line-search constants)."""
    return check_real_in(value, name, "a real number in (0, 1)", lambda v: 0.0 < v < 1.0)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value``, which must be one of the strings ``choices``."""
    rule = f"one of {', '.join(map(repr, choices))}"
    if not isinstance(value, str):
        _wrong_type(value, name, rule)
    if value not in choices:
        _wrong_value(value, name, rule)
    return value


def check_callback(value: Any, name: str = "callback") -> Callable[..., Any] | None:
    """``value``, which must be callable or None."""
    if value is not None and not callable(value):
        _wrong_type(value, name, "callable or None")
    return value  # type: ignore[no-any-return]


def check_pair(value: Any, name: str) -> tuple[Any, Any]:
    """``value`` as a tuple of two items (each still to be checked)."""
    rule = "a pair of real numbers"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        _wrong_type(value, name, rule)
    items = tuple(value)
    if len(items) != 2:
        raise ValueError(f"`{name}` must be {rule}; got {len(items)} values {items!r:.80}")
    return items[0], items[1]


def check_optional(check: Check) -> Check:
    """The check that lets None through and applies ``check`` to anything else."""
    def optional(value: Any, name: str) -> Any:
        return None if value is None else check(value, name)

    return optional


def check_fields(config: Any, checks: Mapping[str, Check], *,
                 names: Mapping[str, str] | None = None) -> None:
    """Validate the fields of a frozen dataclass in place, in the order of ``checks``.

    Each field ``f`` becomes ``checks[f](value, name)``, ``name`` being ``f`` or
    ``names[f]`` where the user knows the field by another name (``betas[0]``). A
    config calls this from ``__post_init__``, so an invalid config never exists.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Config:
        ...     rate: float = 1.0
        ...     def __post_init__(self):
        ...         check_fields(self, {"rate": check_positive_float})
        >>> Config(2).rate
        2.0
        >>> Config(-1.0)
        Traceback (most recent call last):
        ...
        ValueError: `rate` must be a finite real number > 0; got -1.0
    """
    for field, check in checks.items():
        name = names.get(field, field) if names else field
        object.__setattr__(config, field, check(getattr(config, field), name))


# ------------------------------------------------------------------ arrays
def check_real_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a new float64 array whose entries are all real numbers.

    Real numbers are floats, ints and bools (numpy's kinds ``f``, ``i``, ``u``, ``b``, or
    objects that are ``numbers.Real``; a bool is a real number here as it is for
    ``Value(True)``). The shape is not checked.

    Raises:
        TypeError: naming ``name``, for a str or bytes, for entries that are complex
            numbers, strings, bytes, None or other objects (numpy would drop an
            imaginary part with a ComplexWarning, or parse a string), and for ragged
            nesting.
        ValueError: for an int too large for a float.

    Example:
        >>> check_real_array([1, 2.5, True], "x0").tolist()
        [1.0, 2.5, 1.0]
        >>> check_real_array(["1", "2"], "x0")
        Traceback (most recent call last):
        ...
        TypeError: x0 must hold real numbers (int, float or bool); got str '1' (dtype <U1)
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array-like of real numbers; got "
                        f"{_received(value)}")
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as exc:      # ragged nesting, failing __array__
        raise TypeError(f"{name} must be an array-like of real numbers; got "
                        f"{type(value).__name__} ({exc})") from None
    kind = a.dtype.kind
    if kind not in REAL_KINDS:
        # an object array may hold real numbers (Fraction, numpy scalars, big ints)
        wrong = [v for v in a.flat if not isinstance(v, numbers.Real)] if kind == "O" \
            else [v.item() if isinstance(v, np.generic) else v for v in a.flat[:1]]
        if kind != "O" or wrong:
            shown = f"{type(wrong[0]).__name__} {wrong[0]!r:.40}" if wrong else "no entries"
            raise TypeError(f"{name} must hold real numbers (int, float or bool); got "
                            f"{shown} (dtype {a.dtype})")
    try:
        return np.array(a, dtype=np.float64)
    except OverflowError:
        raise ValueError(f"{name} must hold numbers within the float range; got "
                         f"{value!r:.80}") from None


# ------------------------------------------------------------------ parameters
def check_params(params: Any, name: str = "params", *, requires_grad: bool = True,
                 finite: bool = False) -> list[Value]:
    """``params`` as a non-empty list of distinct leaf ``Value``s.

    Args:
        params: the candidate parameters.
        name: the argument's name, for messages.
        requires_grad: each must have been created with ``requires_grad=True`` (the
            optimisers; the least-squares solver switches it on by itself).
        finite: each must hold a finite value (the least-squares solver's start).

    Raises:
        TypeError: if ``params`` is not an iterable of ``Value`` objects.
        ValueError: if it is empty, holds a computed (non-leaf) value, the same value
            twice, or a value breaking ``requires_grad`` or ``finite``.

    Example:
        >>> a = Value(1.0, requires_grad=True)
        >>> check_params([a]) == [a]
        True
        >>> check_params([a, a])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `params` must not contain the same Value twice; params[1] appears twice...
    """
    if isinstance(params, (Value, str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(f"`{name}` must be an iterable of Value objects; got "
                        f"{type(params).__name__}")
    items = list(params)
    if not items:
        raise ValueError(f"`{name}` must hold at least one Value; got an empty sequence")
    # fast path: one pass over the list without building messages
    if len(set(map(id, items))) == len(items) and all(
        type(p) is Value and p.op is None and (p.requires_grad or not requires_grad)
        and (not finite or math.isfinite(p.data)) for p in items
    ):
        return items
    seen: dict[int, int] = {}
    for i, p in enumerate(items):
        if not isinstance(p, Value):
            raise TypeError(f"`{name}` must contain only Value objects; {name}[{i}] is "
                            f"{_received(p)}")
        if p.op is not None:
            raise ValueError(f"`{name}` must contain leaf Values (created with Value(...)); "
                             f"{name}[{i}] is the result of {p.op.name}")
        if requires_grad and not p.requires_grad:
            raise ValueError(f"`{name}` must contain Values created with "
                             f"requires_grad=True; {name}[{i}] ({p!r}) does not require grad")
        if finite and not math.isfinite(p.data):
            raise ValueError(f"`{name}` must start at finite values; {name}[{i}] is "
                             f"{p.data!r}")
        if id(p) in seen:
            raise ValueError(f"`{name}` must not contain the same Value twice; {name}[{i}] "
                             f"appears twice (as {name}[{seen[id(p)]}])")
        seen[id(p)] = i
    return items
