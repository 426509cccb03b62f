"""Small data sets for examples, demos and tests: two moons, a noisy circle, NIST StRD.

The generators are deterministic (numpy's ``default_rng`` from a seed), so a script
that uses one prints the same numbers on every run. Each takes ``count`` (the number of
points, a positive int), ``noise`` (the standard deviation of the Gaussian noise added
to each coordinate, a finite float >= 0) and ``seed``; a ``count`` or ``noise`` of the
wrong type raises TypeError, a wrong value ValueError, naming the argument.

The NIST Statistical Reference Datasets for nonlinear regression ship with the package
(``scalar_autograd/data/nist_strd.json``, public-domain data of the U.S. National
Institute of Standards and Technology) with their certified parameters.

Example:
    >>> points, labels = two_moons(6)
    >>> points.shape, labels.tolist()
    ((6, 2), [0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    >>> noisy_circle(4, centre=(1.0, 2.0), radius=3.0, noise=0.0).shape
    (4, 2)
    >>> problem = nist_problem("misra1a")
    >>> problem.model, len(problem.x), problem.certified_params[0]
    ('b0*(1-exp(-b1*x))', 14, 238.94212918)
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from scalar_autograd.validation import check_nonnegative_float, check_positive_int

__all__ = ["two_moons", "noisy_circle", "NistProblem", "nist_problem", "nist_problem_names"]


def _checked(count: Any, noise: Any) -> tuple[int, float]:
    return check_positive_int(count, "count"), check_nonnegative_float(noise, "noise")


def two_moons(count: int, noise: float = 0.15, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles with Gaussian noise: a classic 2-D classification set.

    The upper moon (label 0) is the unit half circle above the origin, the lower one
    (label 1) the same shifted by ``(1, 0.5)`` and flipped; ``count // 2`` points are
    upper, the rest lower (``count``, ``noise``, ``seed``: see the module docstring).

    Returns:
        ``(points, labels)``: ``(count, 2)`` coordinates and ``(count,)`` labels 0.0/1.0.
    """
    count, noise = _checked(count, noise)
    rng = np.random.default_rng(seed)
    n0 = count // 2
    n1 = count - n0
    t0 = rng.uniform(0.0, math.pi, n0)
    t1 = rng.uniform(0.0, math.pi, n1)
    upper = np.column_stack([np.cos(t0), np.sin(t0)])
    lower = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])
    points = np.vstack([upper, lower]) + rng.normal(0.0, noise, (count, 2))
    labels = np.concatenate([np.zeros(n0), np.ones(n1)])
    return points, labels


def noisy_circle(count: int, centre: tuple[float, float] = (0.0, 0.0), radius: float = 1.0,
                 noise: float = 0.05, arc: tuple[float, float] = (0.0, 2.0 * math.pi),
                 seed: int = 0) -> np.ndarray:
    """Points on an arc of a circle, at uniformly random angles, plus Gaussian noise.

    ``centre`` ``(x, y)`` and ``radius`` give the circle, ``arc`` the interval of angles
    (radians) the points are drawn from (``count``, ``noise``, ``seed``: see the module
    docstring).

    Returns:
        A ``(count, 2)`` array.
    """
    count, noise = _checked(count, noise)
    rng = np.random.default_rng(seed)
    t = rng.uniform(arc[0], arc[1], count)
    points = np.column_stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)])
    return points + rng.normal(0.0, noise, points.shape)


@dataclass(frozen=True)
class NistProblem:
    """One NIST StRD nonlinear-regression problem.

    Attributes:
        name: NIST's name in lower case (``"misra1a"``).
        difficulty: ``"lower"``, ``"average"`` or ``"higher"``.
        model: the model as a Python expression in ``b0 .. bk`` and ``x``, with
            ``exp``; the residual is ``model - y``.
        starts: NIST's starting points (the first is the far one).
        certified_params: the certified parameter values.
        certified_rss: the certified residual sum of squares.
        x, y: the data, 1-D arrays of equal length.
    """

    name: str
    difficulty: str
    model: str
    starts: tuple[tuple[float, ...], ...]
    certified_params: tuple[float, ...]
    certified_rss: float
    x: np.ndarray
    y: np.ndarray


@functools.cache
def _nist_records() -> dict[str, dict[str, Any]]:
    text = resources.files("scalar_autograd").joinpath("data", "nist_strd.json").read_text()
    return {p["name"]: p for p in json.loads(text)["problems"]}


def nist_problem_names() -> list[str]:
    """The names of the packaged NIST problems."""
    return list(_nist_records())


def nist_problem(name: str) -> NistProblem:
    """A NIST StRD problem from the packaged file: data, starts and certified values.

    Raises:
        ValueError: there is no problem of that name (the message lists them).
    """
    record = _nist_records().get(name)
    if record is None:
        raise ValueError(f"no NIST problem named {name!r}; the problems are "
                         f"{', '.join(nist_problem_names())}")
    return NistProblem(
        name=record["name"], difficulty=record["difficulty"], model=record["model"],
        starts=tuple(tuple(float(v) for v in s) for s in record["starts"]),
        certified_params=tuple(float(v) for v in record["certified_params"]),
        certified_rss=float(record["certified_rss"]),
        x=np.array(record["x"], dtype=float), y=np.array(record["y"], dtype=float),
    )
