"""The examples in ``examples/`` and the demo (``python -m scalar_autograd demo``) run and
reach their results: small sizes (``quick=True``), PNGs checked when matplotlib is there.

No timing is asserted anywhere: the machines that run the tests are shared.
"""

from __future__ import annotations

import doctest
import importlib
import io
import math
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import scalar_autograd.__main__ as cli_main
import scalar_autograd.demo as demo
from scalar_autograd import console, datasets

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

try:
    import matplotlib  # noqa: F401

    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False


def _example(name: str) -> ModuleType:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


def _plot_dir(tmp_path: Path) -> str | None:
    return str(tmp_path / "plots") if HAVE_MATPLOTLIB else None


def _check_png(result: dict, tmp_path: Path, filename: str) -> None:
    if HAVE_MATPLOTLIB:
        png = tmp_path / "plots" / filename
        assert result["plot"] == str(png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert result["plot"] is None


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import matplotlib`` fail, as on a machine without the ``plot`` extra."""
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)


# ----------------------------------------------------------------------------- examples


def test_robot_arm_reaches_every_waypoint(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    result = _example("robot_arm_ik").run(quick=True, plot_dir=_plot_dir(tmp_path))
    assert len(result["targets"]) == 4
    assert all(d < 1e-6 for d in result["distances"]), result["distances"]
    # the traditional and compiled L-BFGS runs take the same path to the same angles
    assert result["max_angle_difference"] < 1e-9
    assert all(t > 0 for t in result["traditional_ms"] + result["compiled_ms"])
    out = capsys.readouterr().out
    assert "traditional ms" in out and "compiled ms" in out
    _check_png(result, tmp_path, "robot_arm_ik.png")


def test_circle_fit_recovers_the_circle_within_its_standard_errors(
        tmp_path: Path) -> None:
    example = _example("circle_fit")
    result = example.run(quick=True, plot_dir=_plot_dir(tmp_path))
    assert result["status"].success
    errors = result["standard_errors"]
    assert all(0.0 < e < 0.05 for e in errors), errors
    for fit, true, error in zip(result["fit"], result["true"], errors):
        assert abs(fit - true) <= 3.0 * error, (result["fit"], errors)
    # the residual standard deviation estimates the noise that made the points
    assert 0.5 * example.NOISE < result["noise_estimate"] < 1.5 * example.NOISE
    _check_png(result, tmp_path, "circle_fit.png")


def test_sketch_solver_satisfies_every_constraint(tmp_path: Path) -> None:
    result = _example("sketch_solver").run(quick=True, plot_dir=_plot_dir(tmp_path))
    required = {"coincident", "horizontal", "vertical", "distance", "parallel",
                "perpendicular", "tangent", "point on circle", "equal length"}
    assert required <= result["kinds"]
    for kind, description, residuals in result["constraints"]:
        assert all(abs(r) <= 1e-8 for r in residuals), (kind, description, residuals)
    assert result["max_residual"] <= 1e-8
    assert result["n_params"] == result["n_residuals"] == 26
    geometry = result["geometry"]
    assert geometry["circle1"] == pytest.approx((1.5, 1.5, 1.5), abs=1e-8)
    assert geometry["circle2"][2] == pytest.approx(math.sqrt(4.5), abs=1e-8)
    _check_png(result, tmp_path, "sketch_solver.png")


def test_two_moons_mlp_fits_the_training_set(tmp_path: Path) -> None:
    result = _example("two_moons_mlp").run(quick=True, plot_dir=_plot_dir(tmp_path))
    assert result["accuracy"] >= 0.95
    assert result["loss"] < 0.5 * result["initial_loss"]
    _check_png(result, tmp_path, "two_moons_mlp.png")


def test_two_moons_data_are_balanced_and_reproducible() -> None:
    x1, y1 = datasets.two_moons(51)
    x2, y2 = datasets.two_moons(51)
    assert x1.shape == (51, 2) and (x1 == x2).all() and (y1 == y2).all()
    assert int(y1.sum()) == 26
    with pytest.raises(ValueError, match="`count` must be a positive integer; got 0"):
        datasets.two_moons(0)
    with pytest.raises(TypeError, match="`noise` must be .* >= 0; got str"):
        datasets.two_moons(5, noise="0.1")


def test_noisy_circle_lies_on_its_arc() -> None:
    points = datasets.noisy_circle(200, centre=(1.0, -0.5), radius=2.0, noise=0.0,
                                   arc=(0.0, math.pi / 2), seed=3)
    np.testing.assert_allclose(np.hypot(points[:, 0] - 1.0, points[:, 1] + 0.5), 2.0)
    assert (points[:, 0] >= 1.0 - 1e-12).all() and (points[:, 1] >= -0.5 - 1e-12).all()
    with pytest.raises(ValueError, match="`noise` must be .* >= 0; got -1.0"):
        datasets.noisy_circle(3, noise=-1.0)


def test_nist_misra1a_matches_the_certified_values(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    result = _example("nist_curve_fit").run(quick=True, plot_dir=_plot_dir(tmp_path))
    (fit,) = result["fits"]
    assert fit["name"] == "misra1a" and fit["status"].success
    assert min(fit["digits"]) >= 4, fit
    assert fit["rss_digits"] >= 6, fit
    # the trace shows every iteration, and the cost never goes up on an accepted step
    costs = fit["costs"]
    assert len(costs) == fit["iterations"] + 1
    assert all(b <= a for a, b in zip(costs, costs[1:]))
    assert "rejected" in capsys.readouterr().out  # LM's damping at work
    _check_png(result, tmp_path, "nist_curve_fit.png")


def test_nist_thurber_matches_the_certified_values(
        capsys: pytest.CaptureFixture[str]) -> None:
    fit = _example("nist_curve_fit").fit("thurber")
    assert min(fit["digits"]) >= 4, fit
    assert fit["rss_digits"] >= 6, fit


def test_nist_data_ship_with_the_package() -> None:
    problem = datasets.nist_problem("misra1a")
    assert len(problem.x) == len(problem.y) == 14
    assert problem.starts[0] == (500.0, 1e-4) and len(problem.certified_params) == 2
    assert {"misra1a", "thurber"} <= set(datasets.nist_problem_names())
    with pytest.raises(ValueError, match="no NIST problem named 'nope'"):
        datasets.nist_problem("nope")


def test_example_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    example = _example("sketch_solver")
    common = _example("_common")
    assert common.cli(example.run, example.__doc__, ["--quick"]) == 0
    assert "every constraint holds" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        common.cli(example.run, example.__doc__, ["--help"])
    assert "2-D CAD sketch solver" in capsys.readouterr().out


def test_example_plot_without_matplotlib_says_how_to_install(
        no_matplotlib: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = _example("sketch_solver")
    common = _example("_common")
    assert common.cli(example.run, example.__doc__, ["--plot", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # stopped before doing any work
    assert "pip install \"scalar-autograd[plot]\"" in captured.err


# ----------------------------------------------------------------------------- the demo


def _table_rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("variables"))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_demo_prints_the_speedup_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["demo", "--quick"]) == 0
    captured = capsys.readouterr()
    header = next(line for line in captured.out.splitlines() if "variables" in line)
    for column in ("graph nodes", "iterations", "traditional ms", "compiled ms", "speedup"):
        assert column in header
    rows = _table_rows(captured.out)
    assert [int(r[0]) for r in rows] == [5, 20, 50]
    for row in rows:
        nodes, iterations = int(row[1]), int(row[2])
        traditional, seed_api, compiled = map(float, row[3:6])
        speedup, seed_speedup = float(row[6].rstrip("x")), float(row[7].rstrip("x"))
        assert nodes > 0 and iterations == 100
        assert traditional > 0 and seed_api > 0 and compiled > 0
        assert speedup > 0 and seed_speedup > 0
    assert "agree to" in captured.out
    # not a terminal: the progress shows as plain lines on stderr, no carriage returns
    assert "n=50: compiled" in captured.err and "\r" not in captured.err


def test_demo_rows_reach_the_target() -> None:
    rows = demo.run_demo(sizes=(5, 20), iterations=1000, repeats=1, out=io.StringIO(),
                         progress=False)
    for row in rows:
        assert row.final_distance < 1e-6
        assert row.max_angle_difference < 1e-9
        assert row.graph_nodes == 8 * row.variables + 8
        assert row.speedup > 0 and row.seed_api_speedup > 0


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib is not installed")
def test_demo_writes_its_pictures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plots = tmp_path / "demo"
    assert cli_main.main(["demo", "--iterations", "10", "--repeats", "1", "--no-progress",
                          "--plot", str(plots)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    for name in ("demo_arm_poses.png", "demo_timings.png"):
        assert (plots / name).read_bytes()[:4] == b"\x89PNG"
        assert f"wrote {plots / name}" in captured.out


def test_demo_plot_without_matplotlib(no_matplotlib: None, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["demo", "--quick", "--plot", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "pip install \"scalar-autograd[plot]\"" in captured.err
    assert "variables" not in captured.out  # failed before measuring anything


def test_demo_command_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main.main(["demo", "--iterations", "0"])
    assert "expected a positive integer; got '0'" in capsys.readouterr().err
    assert cli_main.main([]) == 0
    assert "demo" in capsys.readouterr().out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_in_place_on_a_terminal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    stream = _Terminal()
    bar = console.ProgressBar(10, stream=stream, width=10)
    bar.advance(5, "half")
    bar.advance(5)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") >= 3 and "\n" not in text
    assert "[#####-----]  50%" in text and "[##########] 100%" in text
    assert text.endswith("\r")  # erased at the end


def test_progress_bar_disabled_prints_nothing() -> None:
    stream = _Terminal()
    bar = console.ProgressBar(3, stream=stream, enabled=False)
    bar.advance(3, "x")
    bar.close()
    assert stream.getvalue() == ""
    with pytest.raises(ValueError, match="total must be positive"):
        console.ProgressBar(0)


def test_format_table_rejects_a_bad_alignment() -> None:
    with pytest.raises(ValueError, match="one 'l' or 'r' per column"):
        console.format_table(["a", "b"], [[1, 2]], "l")


def test_demo_module_doctests() -> None:
    failures, tests = doctest.testmod(demo)
    assert tests > 0 and failures == 0


def test_table_parser_sees_every_column() -> None:
    rows = [demo.SpeedupRow(5, 48, 10, 2.0, 1.0, 0.5, 3.0, 0.0, 0.0, (0.0,), (0.0,))]
    text = demo.speedup_table(rows)
    assert re.search(r"5\s+48\s+10\s+2\.0\s+1\.0\s+0\.50\s+4x\s+2x\s+3\.0", text), text
    assert [demo._ratio(x) for x in (250.4, 14.23, 4.0, 0.5349)] == ["250x", "14.2x", "4x",
                                                                       "0.53x"]


def test_batch_fits_recovers_the_spots(tmp_path: Path) -> None:
    result = _example("batch_fits").run(quick=True, plot_dir=_plot_dir(tmp_path),
                                        progress=False)
    assert result["done"] == result["fits"] == 2_000
    assert result["success"] == 1.0
    # every parameter within 3 standard errors: (0.9973)^4 = 98.9% of fits expected
    assert result["within_3_sigma"] > 0.97
    assert not result["interrupted"]
    _check_png(result, tmp_path, "batch_fits.png")


def test_pose_ik_reaches_every_pose_target(tmp_path: Path) -> None:
    example = _example("pose_ik")
    result = example.run(quick=True, plot_dir=_plot_dir(tmp_path))
    assert len(result["targets"]) == 6
    for solver, tolerance in (("lm", 1e-12), ("lbfgs", 1e-9)):
        record = result[solver]
        # measured by the example's scipy forward kinematics, not the package's
        assert max(record["position_errors"]) < tolerance, (solver, record)
        assert max(record["orientation_errors"]) < tolerance, (solver, record)
    # the package's chain agrees with the scipy oracle at a pose of the path
    q = result["lm"]["poses"][2]
    position, orientation = example.chain_pose(q.tolist(), example.AXES, example.OFFSETS,
                                               example.TOOL)
    expected_position, expected_rotation = example.forward_kinematics(q)
    np.testing.assert_allclose([v.data for v in position], expected_position, atol=1e-14)
    found = example.Rotation.from_quat([v.data for v in orientation], scalar_first=True)
    assert (found * expected_rotation.inv()).magnitude() < 1e-14
    _check_png(result, tmp_path, "pose_ik.png")


def test_pose_graph_recovers_the_trajectory(tmp_path: Path) -> None:
    result = _example("pose_graph").run(quick=True, plot_dir=_plot_dir(tmp_path))
    assert result["result"].success and result["exact_result"].success
    # without noise the truth is recovered from a wrong start, to rounding
    assert result["exact"][0] < 1e-12 and result["exact"][1] < 1e-12, result["exact"]
    # with noise, least squares undoes most of the dead-reckoning drift
    assert result["solved"][0] < 0.5 * result["drift"][0]
    assert result["solved"][1] < 0.6 * result["drift"][1]
    assert result["first_pose_fixed"]
    assert result["max_unit_error"] < 1e-15
    _check_png(result, tmp_path, "pose_graph.png")
