"""The numpy algebra: an optimiser update run on whole float64 arrays at once.

The update equations (:mod:`.equations`) are written against an algebra ``m``, as the
op table's rules are: ``+ - *`` and unary ``-`` directly, everything else through
``m`` (``m.div``, ``m.sqrt``, ``m.where``). :data:`ARRAYS` runs them on numpy arrays:
each op is one numpy ufunc over every element, an IEEE-754 operation per element, so the
arrays hold exactly the bits the same equations give one element at a time in native
code (no fused multiply-add on either side).

Only the ops the updates use are here; ``pow`` is left out on purpose (numpy may
vectorise it with its own approximation, while the native code calls libm), so per-step
scalars such as ``beta1 ** t`` are computed on floats (``FLOATS``).

Example:
    >>> import numpy as np
    >>> ARRAYS.div(np.array([1.0, 0.0]), 2.0).tolist()
    [0.5, 0.0]
    >>> ARRAYS.where(1.0, np.array([1.0]), np.array([2.0])).tolist()
    [1.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scalar_autograd.ops import Algebra


def _where(condition: Any, a: Any, b: Any) -> Any:
    """``a`` where ``condition != 0`` else ``b`` (the op table's ``where``); a scalar
    condition (a per-step flag) picks one whole argument."""
    if np.ndim(condition) == 0:
        return a if condition != 0.0 else b
    return np.where(np.not_equal(condition, 0.0), a, b)


ARRAYS = Algebra("numpy", {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "neg": np.negative,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "where": _where,
})
"""The algebra whose ``m.div(a, b)`` divides numpy arrays element-wise (see above)."""
