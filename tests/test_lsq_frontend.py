"""One least-squares front end: ``nonlinear_least_squares`` is ``LeastSquaresProblem``.

``nonlinear_least_squares(params, residual_fn, ...)`` is
``LeastSquaresProblem.from_residuals(params, residual_fn).solve(...)``, so a
``residual_fn`` takes every linear solver a problem of residual blocks does, the Schur
elimination included. Every expected number comes from an independent oracle:
scipy.optimize.least_squares on the same residuals written in numpy.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import least_squares

import scalar_autograd as sa
from lsq_bundle import CAMERA_PARAMS, Bundle, make_bundle, reprojection
from scalar_autograd.lsq import schur as schur_module
from scalar_autograd.lsq.options import LINEAR_SOLVERS

LSQ = Path(sa.__file__).parent / "lsq"


def bundle_residual_fn(b: Bundle):
    """The bundle adjustment of ``b`` written as a plain ``residual_fn`` of all the
    params (cameras first, then points), two residuals per observation."""
    n_cam = b.n_cameras * CAMERA_PARAMS
    observations = list(zip(b.camera_of_obs.tolist(), b.point_of_obs.tolist(),
                            b.observed.tolist()))

    def residuals(p: list[sa.Value]) -> list[sa.Value]:
        out: list[sa.Value] = []
        for cam, point, (u, v) in observations:
            slots = p[CAMERA_PARAMS * cam: CAMERA_PARAMS * (cam + 1)] + \
                p[n_cam + 3 * point: n_cam + 3 * point + 3]
            out += reprojection(slots, [u, v])
        return out

    return residuals


def _scipy_bundle(b: Bundle):
    return least_squares(b.numpy_residuals, b.x0, jac_sparsity=b.sparsity(), method="trf",
                         x_scale="jac")


class _CountingSolves:
    """Counts the Schur eliminations' damped solves (the elimination is really used)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        solve = schur_module.SchurComplement.solve

        def counting(schur, *args, **kwargs):
            self.calls += 1
            return solve(schur, *args, **kwargs)

        monkeypatch.setattr(schur_module.SchurComplement, "solve", counting)


# ------------------------------------------------------------- bundle adjustment, schur
def test_bundle_adjustment_residual_fn_with_schur_matches_blocks_and_scipy(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    b = make_bundle(4, 40, 200, seed=5)          # 28 camera + 120 point parameters
    reference = _scipy_bundle(b)
    counter = _CountingSolves(monkeypatch)

    params = [sa.Value(float(v)) for v in b.x0]
    res_fn = sa.nonlinear_least_squares(params, bundle_residual_fn(b), linear_solver="schur",
                                        max_iterations=200, verbose=True)
    out = capsys.readouterr().out
    assert "Schur complement: eliminating 120 parameters in blocks of 3" in out
    assert counter.calls > 0
    fn_calls, counter.calls = counter.calls, 0

    res_blocks = b.problem().solve(linear_solver="schur", max_iterations=200)
    assert counter.calls > 0

    assert res_fn.success and res_blocks.success, (res_fn.message, res_blocks.message)
    assert sp.issparse(res_fn.jacobian) and sp.issparse(res_blocks.jacobian)
    assert res_fn.cost == pytest.approx(res_blocks.cost, rel=1e-9)
    assert res_fn.cost <= reference.cost * (1 + 1e-6)
    assert res_fn.cost == pytest.approx(reference.cost, rel=1e-3)
    # the reported cost is numpy's at the reported point, and the params hold it
    r = b.numpy_residuals(res_fn.x)
    assert res_fn.cost == pytest.approx(0.5 * float(r @ r), rel=1e-10)
    assert [p.data for p in params] == res_fn.x.tolist()
    assert fn_calls >= res_fn.iterations


def test_residual_fn_auto_eliminates_like_blocks_when_sparse(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """"auto" means the same for both: sparse from 200 params on, then the elimination."""
    b = make_bundle(4, 80, 300, seed=9)         # 28 + 240 parameters: sparse by "auto"
    counter = _CountingSolves(monkeypatch)
    res_fn = sa.nonlinear_least_squares([sa.Value(float(v)) for v in b.x0],
                                        bundle_residual_fn(b), max_iterations=200)
    assert counter.calls > 0 and sp.issparse(res_fn.jacobian)
    res_blocks = b.problem().solve(max_iterations=200)
    assert res_fn.cost == pytest.approx(res_blocks.cost, rel=1e-9)
    assert res_fn.cost == pytest.approx(_scipy_bundle(b).cost, rel=1e-3)


# ------------------------------------------------------------- every linear solver
T = np.linspace(0.1, 5.1, 21)
Y = 6.0 * np.maximum(T - 2.0, 0.0) + 0.05 * np.sin(7.0 * T)


def _hinge(p):
    c, a = p
    return [a * max(t - c, 0.0) - y for t, y in zip(T, Y)]     # a guarded branch


def _hinge_numpy(x):
    return x[1] * np.maximum(T - x[0], 0.0) - Y


def _decay(p):
    a, k, c = p
    return [a * sa.exp(-k * t) + c - y for t, y in zip(T, 3.0 * np.exp(-0.7 * T) + 0.5
                                                    + 0.02 * np.cos(3.0 * T))]


def _decay_numpy(x):
    return x[0] * np.exp(-x[1] * T) + x[2] - (3.0 * np.exp(-0.7 * T) + 0.5
                                              + 0.02 * np.cos(3.0 * T))


PROBLEMS = {
    "hinge": (_hinge, _hinge_numpy, [1.0, 1.0]),
    "decay": (_decay, _decay_numpy, [1.0, 1.0, 0.0]),
}


@pytest.mark.parametrize("jacobian", ["compiled", "graph"])
@pytest.mark.parametrize("linear_solver", LINEAR_SOLVERS)
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_from_residuals_with_every_linear_solver_agrees_with_scipy(
        name: str, linear_solver: str, jacobian: str) -> None:
    fn, numpy_fn, x0 = PROBLEMS[name]
    reference = least_squares(numpy_fn, np.array(x0), method="lm", xtol=1e-15, ftol=1e-15,
                              gtol=1e-15)
    params = [sa.Value(v) for v in x0]
    problem = sa.LeastSquaresProblem.from_residuals(params, fn)
    res = problem.solve(jacobian=jacobian, linear_solver=linear_solver)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, reference.x, rtol=1e-6, atol=1e-9)
    assert res.cost == pytest.approx(reference.cost, rel=1e-8)
    np.testing.assert_array_equal(problem.x, res.x)
    assert [p.data for p in params] == res.x.tolist()
    # the graph path's Jacobian is always dense; the compiled one follows the solver
    csr = jacobian == "compiled" and linear_solver in ("sparse_cholesky", "sparse_lsmr",
                                                       "schur")
    assert sp.issparse(res.jacobian) == csr


@pytest.mark.parametrize("linear_solver", LINEAR_SOLVERS)
def test_small_bundle_from_residuals_with_every_linear_solver_agrees_with_scipy(
        linear_solver: str) -> None:
    b = make_bundle(3, 15, 60, seed=4)
    reference = _scipy_bundle(b)
    problem = sa.LeastSquaresProblem.from_residuals([sa.Value(float(v)) for v in b.x0],
                                                    bundle_residual_fn(b))
    res = problem.solve(linear_solver=linear_solver, max_iterations=200)
    assert res.success, res.message
    assert res.cost <= reference.cost * (1 + 1e-6)
    assert res.cost == pytest.approx(reference.cost, rel=1e-3)


def test_the_wrapper_and_the_problem_take_the_same_steps() -> None:
    fn, _, x0 = PROBLEMS["decay"]
    options = {"loss": "soft_l1", "loss_scale": 0.1, "linear_solver": "sparse_cholesky"}
    via_wrapper = sa.nonlinear_least_squares([sa.Value(v) for v in x0], fn, **options)
    via_problem = sa.LeastSquaresProblem.from_residuals(
        [sa.Value(v) for v in x0], fn).solve(**options)
    assert via_wrapper.x.tolist() == via_problem.x.tolist()
    assert (via_wrapper.cost, via_wrapper.iterations, via_wrapper.status) == \
        (via_problem.cost, via_problem.iterations, via_problem.status)


# ------------------------------------------------------------- the problem object
def test_from_residuals_problem_attributes_and_residuals() -> None:
    a, b = sa.Value(2.0), sa.Value(-1.0)
    problem = sa.LeastSquaresProblem.from_residuals([a, b], lambda p: [p[0] - 1.0,
                                                                       p[0] * p[1], p[1]])
    assert problem.params == [a, b] and problem.n_params == 2 and problem.n_residuals == 3
    np.testing.assert_array_equal(problem.residuals([3.0, 2.0]), [2.0, 6.0, 2.0])
    assert (a.data, b.data) == (2.0, -1.0)          # evaluating elsewhere moves nothing
    np.testing.assert_array_equal(problem.residuals(), [1.0, -2.0, -1.0])
    with pytest.raises(ValueError, match="from_residuals"):
        problem.add_block(lambda p, d: p[0], param_index=[0])
    assert sa.LeastSquaresProblem([0.0]).params is None
    problem.x = np.array([5.0, 5.0])                # a solve starts from x
    res = problem.solve(jacobian="graph")
    assert res.success and (a.data, b.data) == pytest.approx((1.0, 0.0), abs=1e-8)


def test_options_are_checked_before_residual_fn_is_traced() -> None:
    calls = []

    def fn(p):
        calls.append(1)
        return [p[0] - 1.0]

    problem = sa.LeastSquaresProblem.from_residuals([sa.Value(0.0)], fn)
    for bad, error in [({"max_iterations": 0}, ValueError), ({"linear_solver": "qr"},
                                                             ValueError),
                       ({"jacobian": "numeric"}, ValueError), ({"verbose": 1}, TypeError),
                       ({"no_such_option": 1}, TypeError)]:
        with pytest.raises(error):
            problem.solve(**bad)
    assert calls == []
    with pytest.raises(TypeError, match="residual_fn must be callable"):
        sa.LeastSquaresProblem.from_residuals([sa.Value(0.0)], 3)
    with pytest.raises(ValueError, match="max_specializations"):
        sa.LeastSquaresProblem.from_residuals([sa.Value(0.0)], fn, max_specializations=0)


def test_from_residuals_follows_branches_and_keeps_its_limit() -> None:
    params = [sa.Value(1.0), sa.Value(1.0)]
    problem = sa.LeastSquaresProblem.from_residuals(params, _hinge, max_specializations=1)
    with pytest.raises(sa.SpecializationLimitError, match="max_specializations=1"):
        problem.solve(linear_solver="schur")
    assert [p.data for p in params] == [1.0, 1.0] and problem.x.tolist() == [1.0, 1.0]
    assert all(not p.requires_grad for p in params)


def test_schur_without_blocks_to_eliminate_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    fn, numpy_fn, x0 = PROBLEMS["decay"]
    res = sa.nonlinear_least_squares([sa.Value(v) for v in x0], fn, linear_solver="schur",
                                     verbose=True)
    assert res.success and "no parameter blocks worth a Schur elimination" in \
        capsys.readouterr().out
    res = sa.nonlinear_least_squares([sa.Value(v) for v in x0], fn, linear_solver="schur",
                                     jacobian="graph", verbose=True)
    assert res.success and "the steps are solved densely" in capsys.readouterr().out
    assert math.isfinite(res.cost)


# ------------------------------------------------------------- no import cycle
def _lsq_imports() -> dict[str, set[str]]:
    """Module -> the ``scalar_autograd.lsq`` modules it imports (anywhere in it)."""
    graph: dict[str, set[str]] = {}
    for path in LSQ.glob("*.py"):
        name = path.stem
        targets = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module
                if module == "scalar_autograd.lsq":
                    targets.update(alias.name for alias in node.names)
                elif module.startswith("scalar_autograd.lsq."):
                    targets.add(module.split(".")[2])
    for name in graph:
        graph[name] &= set(graph) - {name, "__init__"}
    return graph


def test_the_lsq_modules_import_each_other_without_a_cycle() -> None:
    graph = _lsq_imports()
    assert "solve" not in graph["problem"] and "problem" not in graph["compiled_oracle"]
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:      # depth-first, 1 = on the stack
        state[name] = 1
        for target in sorted(graph[name]):
            assert state.get(target) != 1, f"import cycle: {' -> '.join(path + [target])}"
            if target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    from scalar_autograd.lsq import solve

    assert not hasattr(solve, "jit_available")
