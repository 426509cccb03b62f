"""The update equations of SGD, Adam and AdamW, each written once against an algebra.

Each optimiser is a frozen, validated *config* (its hyperparameters), a small mutable
*state* (step count and moment vectors) and one :class:`UpdateRule`: two functions
written against an algebra ``m``, as the op table's rules are (``+ - *`` and unary
``-`` directly, everything else through ``m``):

* ``step_scalars(m, inputs)``: the numbers of one step, computed once per step from the
  hyperparameters and the steps taken (Adam's bias corrections ``1 - beta**t``, with
  ``pow`` as CPython's ``float ** float`` calls it);
* ``element(m, form, x, g, *state, scalars)``: the new ``x`` and state of one
  parameter. ``form`` holds the branches a config selects (weight decay or not,
  momentum or not, ...), fixed for a run.

The same two functions run everywhere: on floats and numpy arrays here
(:func:`sgd_step`, :func:`adam_step`: ``FLOATS`` for the scalars, whole-array numpy
ufuncs for the elements, :mod:`.array_algebra`), and on the IR builder in
:mod:`.native`, whose programs the shared native emitter turns into a loop over the
arrays. Both perform the same IEEE-754 operations in the same order, without fused
multiply-adds, so their iterates are bit-identical. The order follows ``torch.optim``
(single-tensor path) one for one, so a trajectory matches PyTorch's to rounding;
PyTorch's vectorised CPU kernels may fuse a multiply-add (FMA), the only difference.

The public, functional API (exported by :mod:`scalar_autograd.optim`, optax-style) is
the configs (:class:`SGDConfig`, :class:`AdamConfig`, :class:`AdamWConfig`), the
states (:class:`SGDState`, :class:`AdamState`) with :func:`sgd_init`/:func:`adam_init`,
and the steps :func:`sgd_step`/:func:`adam_step`: the updates ``sa.SGD``, ``sa.Adam``,
``sa.AdamW`` and ``sa.minimize`` apply, for a loop of one's own on float64 vectors.
The rules, forms, inputs and scalars are internal (the native code's building blocks).

Example:
    >>> import numpy as np
    >>> config = AdamConfig(lr=0.1)
    >>> x = np.array([1.0, -2.0])
    >>> state = adam_init(2)
    >>> for _ in range(200):
    ...     adam_step(x, 2.0 * x, state, config)   # gradient of |x|^2
    >>> bool(np.all(np.abs(x) < 1e-2)), state.step
    (True, 200)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from scalar_autograd.ops import FLOATS
from scalar_autograd.optim.array_algebra import ARRAYS
from scalar_autograd.validation import (
    check_bool,
    check_fields,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_unit_interval,
)

FloatArray = NDArray[np.float64]


# ---------------------------------------------------------------------------- SGD
@dataclass(frozen=True)
class SGDConfig:
    """Hyperparameters of SGD with (heavy-ball or Nesterov) momentum, as ``torch.optim.SGD``.

    The update, with ``d = g + weight_decay * x``::

        b = d                      (first step)      b = momentum * b + d   (later)
        d = d + momentum * b       (nesterov)        d = b                  (otherwise)
        x = x - lr * d

    Raises:
        TypeError: an option of the wrong type.
        ValueError: ``lr`` <= 0, ``momentum`` or ``weight_decay`` < 0, or
            ``nesterov`` without momentum.
    """

    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self, {"lr": check_positive_float, "momentum": check_nonnegative_float,
                            "nesterov": check_bool, "weight_decay": check_nonnegative_float})
        if self.nesterov and self.momentum <= 0.0:
            raise ValueError(
                f"`nesterov` requires `momentum` > 0; got momentum={self.momentum!r}"
            )


@dataclass
class SGDState:
    """Mutable SGD state: steps taken and the momentum buffer (valid once ``step > 0``)."""

    momentum_buffer: FloatArray
    step: int = 0


def sgd_init(n: int) -> SGDState:
    """A fresh SGD state for ``n`` parameters (no steps taken, a zero momentum buffer).

    Raises:
        TypeError, ValueError: ``n`` is not an integer >= 0.

    Example:
        >>> sgd_init(3)
        SGDState(momentum_buffer=array([0., 0., 0.]), step=0)
    """
    return SGDState(momentum_buffer=np.zeros(check_nonnegative_int(n, "n")))


@dataclass(frozen=True)
class SGDForm:
    """The branches of the SGD update a config takes."""

    weight_decay: bool
    momentum: bool
    nesterov: bool

    @classmethod
    def of(cls, config: SGDConfig) -> SGDForm:
        return cls(weight_decay=config.weight_decay != 0.0, momentum=config.momentum != 0.0,
                   nesterov=config.nesterov)


class SGDInputs(NamedTuple):
    """What one SGD step reads: the steps taken before it and the hyperparameters."""

    steps_taken: Any
    lr: Any
    momentum: Any
    weight_decay: Any

    @classmethod
    def of(cls, config: SGDConfig, steps_taken: int) -> SGDInputs:
        return cls(float(steps_taken), config.lr, config.momentum, config.weight_decay)


class SGDScalars(NamedTuple):
    """The numbers every element of one SGD step uses."""

    first_step: Any     # 1.0 on the first step (the buffer starts as the gradient), else 0.0
    neg_lr: Any
    momentum: Any
    weight_decay: Any


def sgd_scalars(m: Any, p: SGDInputs) -> SGDScalars:
    """The scalars of one SGD step."""
    return SGDScalars(first_step=m.eq(p.steps_taken, 0.0), neg_lr=-p.lr,
                      momentum=p.momentum, weight_decay=p.weight_decay)


def sgd_element(m: Any, form: SGDForm, x: Any, g: Any, momentum_buffer: Any,
                s: SGDScalars) -> tuple[Any, Any]:
    """One SGD update of one parameter: the new ``(x, momentum_buffer)``."""
    d = g + x * s.weight_decay if form.weight_decay else g  # grad.add(param, alpha=wd)
    if form.momentum:
        # buf = clone(grad) on the first step, later buf.mul_(momentum).add_(grad)
        momentum_buffer = m.where(s.first_step, d, momentum_buffer * s.momentum + d)
        # nesterov: grad.add(buf, alpha=momentum); otherwise the buffer is the step
        d = d + momentum_buffer * s.momentum if form.nesterov else momentum_buffer
    return x + d * s.neg_lr, momentum_buffer  # param.add_(grad, alpha=-lr)


# ---------------------------------------------------------------------------- Adam
@dataclass(frozen=True)
class AdamConfig:
    """Hyperparameters of Adam (``decoupled=False``) and AdamW (``decoupled=True``).

    The update at step ``t``, as ``torch.optim.Adam``/``AdamW``::

        x = x * (1 - lr * weight_decay)                 (AdamW: decoupled decay)
        g = g + weight_decay * x                        (Adam: L2 added to the gradient)
        m = lerp(m, g, 1 - beta1)
        v = beta2 * v + (1 - beta2) * g * g
        x = x - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Raises:
        TypeError: an option of the wrong type.
        ValueError: ``lr`` or ``eps`` <= 0, a beta outside [0, 1), ``weight_decay`` < 0.
    """

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled: bool = False

    def __post_init__(self) -> None:
        check_fields(self, {"lr": check_positive_float, "beta1": check_unit_interval,
                            "beta2": check_unit_interval, "eps": check_positive_float,
                            "weight_decay": check_nonnegative_float, "decoupled": check_bool},
                     names={"beta1": "betas[0]", "beta2": "betas[1]"})


@dataclass(frozen=True)
class AdamWConfig(AdamConfig):
    """AdamW's defaults: :class:`AdamConfig` with decoupled weight decay 1e-2 (PyTorch's)."""

    weight_decay: float = 1e-2
    decoupled: bool = True


@dataclass
class AdamState:
    """Mutable Adam state: steps taken and the first and second moment estimates."""

    exp_avg: FloatArray
    exp_avg_sq: FloatArray
    step: int = 0


def adam_init(n: int) -> AdamState:
    """A fresh Adam/AdamW state for ``n`` parameters (no steps, zero moment estimates).

    Raises:
        TypeError, ValueError: ``n`` is not an integer >= 0.

    Example:
        >>> adam_init(2).exp_avg_sq.tolist()
        [0.0, 0.0]
    """
    n = check_nonnegative_int(n, "n")
    return AdamState(exp_avg=np.zeros(n), exp_avg_sq=np.zeros(n))


@dataclass(frozen=True)
class AdamForm:
    """The branches of the Adam update a config takes."""

    l2_penalty: bool        # Adam's weight decay: added to the gradient
    decoupled_decay: bool   # AdamW's: the parameters shrink
    lerp_from_start: bool   # torch's lerp(start, end, w): from start when |w| < 0.5

    @classmethod
    def of(cls, config: AdamConfig) -> AdamForm:
        decay = config.weight_decay != 0.0
        return cls(l2_penalty=decay and not config.decoupled,
                   decoupled_decay=decay and config.decoupled,
                   lerp_from_start=abs(1.0 - config.beta1) < 0.5)


class AdamInputs(NamedTuple):
    """What one Adam step reads: the steps taken before it and the hyperparameters.

    ``half`` is 0.5, the exponent of ``bias_correction2 ** 0.5``: an input rather than a
    constant, so native code keeps the libm ``pow`` call CPython makes (LLVM would
    otherwise be free to turn ``pow(x, 0.5)`` into ``sqrt``, which may round
    differently).
    """

    steps_taken: Any
    lr: Any
    beta1: Any
    beta2: Any
    eps: Any
    weight_decay: Any
    half: Any

    @classmethod
    def of(cls, config: AdamConfig, steps_taken: int) -> AdamInputs:
        return cls(float(steps_taken), config.lr, config.beta1, config.beta2, config.eps,
                   config.weight_decay, 0.5)


class AdamScalars(NamedTuple):
    """The numbers every element of one Adam step uses."""

    neg_step_size: Any
    bias_correction2_sqrt: Any
    decay: Any
    weight: Any
    one_minus_weight: Any
    beta2: Any
    one_minus_beta2: Any
    eps: Any
    weight_decay: Any


def adam_scalars(m: Any, p: AdamInputs) -> AdamScalars:
    """The scalars of one Adam step (step ``t = steps_taken + 1``), as torch computes them."""
    t = p.steps_taken + 1.0
    bias_correction1 = 1.0 - m.pow(p.beta1, t)
    bias_correction2 = 1.0 - m.pow(p.beta2, t)
    weight = 1.0 - p.beta1
    return AdamScalars(
        neg_step_size=-m.div(p.lr, bias_correction1),
        bias_correction2_sqrt=m.pow(bias_correction2, p.half),
        decay=1.0 - p.lr * p.weight_decay,
        weight=weight,
        one_minus_weight=1.0 - weight,
        beta2=p.beta2,
        one_minus_beta2=1.0 - p.beta2,
        eps=p.eps,
        weight_decay=p.weight_decay,
    )


def adam_element(m: Any, form: AdamForm, x: Any, g: Any, exp_avg: Any, exp_avg_sq: Any,
                 s: AdamScalars) -> tuple[Any, Any, Any]:
    """One Adam/AdamW update of one parameter: the new ``(x, exp_avg, exp_avg_sq)``."""
    if form.decoupled_decay:
        x = x * s.decay                      # param.mul_(1 - lr * weight_decay)
    if form.l2_penalty:
        g = g + x * s.weight_decay           # grad.add(param, alpha=weight_decay)
    diff = g - exp_avg                       # exp_avg.lerp_(grad, 1 - beta1)
    if form.lerp_from_start:
        exp_avg = exp_avg + diff * s.weight
    else:
        exp_avg = g - diff * s.one_minus_weight
    # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    exp_avg_sq = exp_avg_sq * s.beta2 + g * s.one_minus_beta2 * g
    # denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    denom = m.div(m.sqrt(exp_avg_sq), s.bias_correction2_sqrt) + s.eps
    # param.addcdiv_(exp_avg, denom, value=-step_size)
    return x + m.div(exp_avg * s.neg_step_size, denom), exp_avg, exp_avg_sq


# ---------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class UpdateRule:
    """One optimiser's update: what it reads and writes, and its two functions.

    Attributes:
        name: ``"sgd"`` or ``"adam"`` (also the native entry points' prefix).
        arrays: the element function's array arguments, in order: ``x``, ``g``, then
            the state vectors (the names of the state's fields).
        outputs: the arrays the element function returns new values of, in order.
        inputs: the per-step inputs (a NamedTuple class with ``of(config, steps)``).
        scalars: the NamedTuple class the scalar function returns.
        step_scalars: ``(m, inputs) -> scalars``.
        element: ``(m, form, *arrays, scalars) -> new values of outputs``.
        form: ``config -> form``, the branches a config takes.
        init: ``n -> state``, a fresh state for ``n`` parameters.
    """

    name: str
    arrays: tuple[str, ...]
    outputs: tuple[str, ...]
    inputs: Any
    scalars: Any
    step_scalars: Callable[..., Any]
    element: Callable[..., tuple[Any, ...]]
    form: Callable[[Any], Any]
    init: Callable[[int], Any]

    @property
    def state_vectors(self) -> tuple[str, ...]:
        """The names of the state's vectors (the arrays after ``x`` and ``g``)."""
        return self.arrays[2:]

    def step(self, config: Any, state: Any, x: FloatArray, grad: FloatArray) -> None:
        """One step with numpy, in place: the scalars on floats, then the elements on
        whole arrays, :data:`NUMPY_BLOCK` elements at a time (each op makes a
        temporary array; blocks keep them small and in cache)."""
        scalars = self.step_scalars(FLOATS, self.inputs.of(config, state.step))
        form = self.form(config)
        arrays = [x, grad, *[getattr(state, name) for name in self.state_vectors]]
        targets = [self.arrays.index(name) for name in self.outputs]
        n = x.size
        for start in range(0, n, NUMPY_BLOCK):
            block = arrays if n <= NUMPY_BLOCK else [a[start:start + NUMPY_BLOCK]
                                                     for a in arrays]
            new = self.element(ARRAYS, form, *block, scalars)
            for k, value in zip(targets, new):
                if value is not block[k]:
                    block[k][...] = value
        state.step += 1


NUMPY_BLOCK = 8192
"""Elements per block of a numpy step: 64 KB temporaries. Measured here for Adam: 10^5
parameters 1.4 ms in one block, 0.59 ms in blocks of 8192; 10^6 parameters 13 ms, 6 ms."""


SGD_RULE = UpdateRule("sgd", ("x", "g", "momentum_buffer"), ("x", "momentum_buffer"),
                      SGDInputs, SGDScalars, sgd_scalars, sgd_element, SGDForm.of, sgd_init)
ADAM_RULE = UpdateRule("adam", ("x", "g", "exp_avg", "exp_avg_sq"),
                       ("x", "exp_avg", "exp_avg_sq"), AdamInputs, AdamScalars, adam_scalars,
                       adam_element, AdamForm.of, adam_init)


def rule_for(config: SGDConfig | AdamConfig) -> UpdateRule:
    """The update rule a config belongs to."""
    return ADAM_RULE if isinstance(config, AdamConfig) else SGD_RULE


# ---------------------------------------------------------------------------- numpy steps
def _check_step(x: Any, grad: Any, state: Any, state_type: type, config: Any,
                config_type: type, rule: UpdateRule) -> None:
    """The arguments of a public step: ``x`` a writable 1-D float64 array, ``grad`` and
    the state's vectors of its shape (an update in place cannot convert or broadcast)."""
    if not isinstance(config, config_type):
        raise TypeError(f"`config` must be of type {config_type.__name__}; got "
                        f"{type(config).__name__}")
    if not isinstance(state, state_type):
        raise TypeError(f"`state` must be of type {state_type.__name__} (from "
                        f"{rule.name}_init); got {type(state).__name__}")
    if not (isinstance(x, np.ndarray) and x.dtype == np.float64 and x.ndim == 1
            and x.flags.writeable):
        raise TypeError(f"`x` must be a writable 1-D float64 numpy array (it is updated in "
                        f"place); got {type(x).__name__} "
                        f"{getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}".rstrip())
    for name, a in (("grad", grad), *((f"state.{v}", getattr(state, v))
                                      for v in rule.state_vectors)):
        if not isinstance(a, np.ndarray) or a.shape != x.shape:
            raise ValueError(f"`{name}` must be an array of x's shape {x.shape}; got "
                             f"{getattr(a, 'shape', type(a).__name__)}")


def sgd_step(x: FloatArray, grad: FloatArray, state: SGDState, config: SGDConfig,
             scratch: Sequence[FloatArray] | None = None) -> None:
    """One SGD step: update ``x`` and ``state`` in place (the update of :class:`SGDConfig`).

    Args:
        x: the parameters, a writable float64 array of shape ``(n,)``; updated in place.
        grad: the gradient at ``x``, shape ``(n,)``; not modified.
        state: from :func:`sgd_init`; updated in place.
        config: the hyperparameters.
        scratch: ignored (earlier versions took a work array; still accepted).

    Raises:
        TypeError: ``x`` is not a writable 1-D float64 array, or ``state``/``config``
            of the wrong kind.
        ValueError: ``grad`` or the state has another shape than ``x``.

    Example:
        >>> import numpy as np
        >>> x = np.array([1.0]); state = sgd_init(1)
        >>> sgd_step(x, np.array([2.0]), state, SGDConfig(lr=0.25))
        >>> x
        array([0.5])
    """
    _check_step(x, grad, state, SGDState, config, SGDConfig, SGD_RULE)
    SGD_RULE.step(config, state, x, grad)


def adam_step(x: FloatArray, grad: FloatArray, state: AdamState, config: AdamConfig,
              scratch: Sequence[FloatArray] | None = None) -> None:
    """One Adam or AdamW step: update ``x`` and ``state`` in place (see :class:`AdamConfig`).

    Args:
        x: the parameters, a writable float64 array of shape ``(n,)``; updated in place.
        grad: the gradient at ``x``, shape ``(n,)``; not modified.
        state: from :func:`adam_init`; updated in place.
        config: the hyperparameters (``config.decoupled`` selects AdamW; an
            :class:`AdamWConfig` has it set).
        scratch: ignored (earlier versions took a work array; still accepted).

    Raises:
        TypeError: ``x`` is not a writable 1-D float64 array, or ``state``/``config``
            of the wrong kind.
        ValueError: ``grad`` or the state has another shape than ``x``.

    Example:
        >>> import numpy as np
        >>> x = np.array([1.0]); state = adam_init(1)
        >>> adam_step(x, np.array([5.0]), state, AdamConfig(lr=0.1))
        >>> round(float(x[0]), 6)   # the first Adam step moves by about lr
        0.9
    """
    _check_step(x, grad, state, AdamState, config, AdamConfig, ADAM_RULE)
    ADAM_RULE.step(config, state, x, grad)
