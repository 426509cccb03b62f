"""The first-order optimisation loop (SGD, Adam, AdamW) on a compiled function's buffers.

Iteration ``k`` evaluates the loss and gradient at ``x_k`` with one call of the compiled
function, then updates ``x`` in place; after the last step one more evaluation gives the
loss at the returned point. With native code available and no per-step Python hook
(``callback``), the whole loop runs in native code (:mod:`.native`); otherwise a Python
loop makes one native gradient call and one update call per step. Both give
bit-identical iterates, equal to stepping a :class:`~scalar_autograd.optim.SGD` /
:class:`~scalar_autograd.optim.Adam` by hand.

The loop stops early on a non-finite loss (``Status.NON_FINITE``, returning that
iterate), when ``max |g_i| <= gradient_tolerance`` if one is given, or when the
callback returns ``True``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from scalar_autograd.optim.equations import AdamConfig, FloatArray, SGDConfig, rule_for
from scalar_autograd.optim.lbfgs import Callback
from scalar_autograd.optim.native import (
    REASON_COMPLETED,
    REASON_GRADIENT,
    REASON_NON_FINITE,
    UpdateKernel,
    native_address,
    native_available,
)
from scalar_autograd.optim.oracles import BoundOracle
from scalar_autograd.optim.result import OptimizeResult, Status

_REASONS = {REASON_COMPLETED: Status.COMPLETED, REASON_NON_FINITE: Status.NON_FINITE,
            REASON_GRADIENT: Status.CONVERGED_GRADIENT}


def _inf_norm(g: FloatArray) -> float:
    return float(np.max(np.abs(g))) if g.size else 0.0


def run_first_order(
    oracle: BoundOracle,
    x0: FloatArray,
    config: SGDConfig | AdamConfig,
    max_iterations: int,
    *,
    gradient_tolerance: float | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    history: bool = False,
    use_native: bool = True,
    label: str = "",
) -> OptimizeResult:
    """Run ``max_iterations`` steps of SGD (``SGDConfig``) or Adam/AdamW (``AdamConfig``).

    Args:
        oracle: the compiled loss bound to its buffers; ``oracle.x`` is the iterate.
        x0: the starting point.
        config: the optimiser and its hyperparameters.
        max_iterations: the number of steps.
        gradient_tolerance: stop early when ``max |g_i|`` is at most this.
        callback: ``callback(k, x_k, f_k)`` for every iterate after the first; ``True``
            stops.
        progress: print the loss to stderr about ten times during the run.
        history: record the loss at every iterate.
        use_native: allow the native loop and update kernels (``False``: numpy).
        label: the method name used in progress lines.
    """
    n = x0.size
    x, g, value = oracle.x, oracle.grad, oracle.value
    x[:] = x0
    rule = rule_for(config)
    state = rule.init(n)
    step: Callable[[], None]
    kernel: UpdateKernel | None = None
    if use_native and native_available():
        kernel = UpdateKernel(x, g, state, config)
        step = kernel.update
    else:
        def step() -> None:
            rule.step(config, state, x, g)

    trace = np.empty(max_iterations + 1) if history else None
    every = max(1, math.ceil(max_iterations / 10))
    address = native_address(oracle.call) if kernel is not None else None
    status = Status.COMPLETED
    k = 0
    if address is not None and callback is None and kernel is not None:
        while k < max_iterations:
            chunk = min(every, max_iterations - k) if progress else max_iterations - k
            view = trace[k:] if trace is not None else None
            done, reason = kernel.run(address, chunk, value, view, gradient_tolerance)
            k += done
            if progress:
                _report(label, k, max_iterations, float(value[0]))
            if reason != REASON_COMPLETED:
                status = _REASONS[reason]
                break
    else:
        call = oracle.call
        gtol = gradient_tolerance
        while k < max_iterations:
            call()
            f = value.item(0)
            if trace is not None:
                trace[k] = f
            if not math.isfinite(f):
                status = Status.NON_FINITE
                break
            if k > 0 and callback is not None and callback(k, x.copy(), f) is True:
                status = Status.CALLBACK_STOP
                break
            if gtol is not None and _inf_norm(g) <= gtol:
                status = Status.CONVERGED_GRADIENT
                break
            step()
            k += 1
            if progress and (k % every == 0 or k == max_iterations):
                _report(label, k, max_iterations, f)
    nfev = k + 1
    if status is Status.COMPLETED:  # evaluate the returned point
        oracle.call()
        f = value.item(0)
        if trace is not None:
            trace[k] = f
        if not math.isfinite(f):
            status = Status.NON_FINITE
        elif callback is not None and k > 0 and callback(k, x.copy(), f) is True:
            status = Status.CALLBACK_STOP
    if kernel is not None:
        kernel.sync()
    return OptimizeResult(
        x=x, fun=value.item(0), grad_norm=_inf_norm(g), iterations=k, nfev=nfev,
        status=status, history=tuple(trace[:k + 1].tolist()) if trace is not None else None,
    )


def _report(label: str, k: int, total: int, f: Any) -> None:
    print(f"{label} iteration {k}/{total}: loss {f:.8g}", file=sys.stderr)
