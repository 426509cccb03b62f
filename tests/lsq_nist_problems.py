"""NIST StRD nonlinear-regression problems (tests/data/nist_strd.json) as residual functions.

Shared by the lsq tests and ``benchmarks/nist_table.py``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import Any

import numpy as np

import scalar_autograd as sa

DATA = Path(__file__).with_name("data") / "nist_strd.json"


@dataclass(frozen=True)
class NistProblem:
    name: str
    model: str
    starts: list[list[float]]
    certified_params: list[float]
    certified_rss: float
    x: np.ndarray
    y: np.ndarray
    code: CodeType

    def residual_fn(self) -> Any:
        """``params -> [model(x_i) - y_i]`` on Values."""
        code = self.code
        xs, ys = self.x.tolist(), self.y.tolist()

        def residuals(b: list[sa.Value]) -> list[sa.Value]:
            env: dict[str, Any] = {"exp": sa.exp}
            env.update({f"b{i}": bi for i, bi in enumerate(b)})
            out = []
            for x, y in zip(xs, ys):
                env["x"] = x
                out.append(eval(code, env) - y)
            return out

        return residuals

    def numpy_residuals(self, b: np.ndarray) -> np.ndarray:
        env: dict[str, Any] = {"exp": np.exp, "x": self.x}
        env.update({f"b{i}": bi for i, bi in enumerate(b)})
        with np.errstate(all="ignore"):
            return np.asarray(eval(self.code, env) - self.y, dtype=float)

    def rss_noise_floor(self) -> float:
        """Absolute rounding error of the RSS when each residual is computed in double.

        Each residual ``model(x_i) - y_i`` carries an absolute error of a few ulps of
        ``|y_i|``; the RSS then carries ``2 * sqrt(rss) * |error vector|``. For a
        near-zero RSS (Lanczos1: 1.4e-25) this bound, not the certified digits, is
        what double precision can reach.
        """
        err = 4 * np.finfo(float).eps * np.linalg.norm(self.y)
        return 2.0 * math.sqrt(self.certified_rss) * err + err * err


def load() -> list[NistProblem]:
    data = json.loads(DATA.read_text())
    return [
        NistProblem(
            name=p["name"], model=p["model"], starts=p["starts"],
            certified_params=p["certified_params"], certified_rss=p["certified_rss"],
            x=np.array(p["x"], dtype=float), y=np.array(p["y"], dtype=float),
            code=compile(p["model"], p["name"], "eval"),
        )
        for p in data["problems"]
    ]


def lre(value: float, certified: float) -> float:
    """Log relative error: the number of correct significant digits (15 when exact)."""
    if value == certified:
        return 15.0
    if not math.isfinite(value):
        return 0.0
    return max(0.0, -math.log10(abs(value - certified) / abs(certified)))


def runs() -> list[tuple[NistProblem, int]]:
    """All (problem, start index) pairs: 14 problems x 2 starts."""
    return [(p, i) for p in load() for i in range(len(p.starts))]


# Options per run where the defaults do not reach the certified values, with the reason.
# Empty: all 28 runs converge with the default options (MINPACK's initial trust radius
# solves MGH10 from its first start; rejecting steps that make a Jacobian column vanish
# solves BoxBOD from its first start; see scalar_autograd/lsq/levenberg_marquardt.py).
SPECIAL_OPTIONS: dict[tuple[str, int], dict[str, Any]] = {}
