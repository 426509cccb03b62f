"""The benchmark suite: runs every comparison, writes ``benchmarks/RESULTS.md`` and plots.

``python -m benchmarks`` runs the sections below, each in a fresh Python process (one
process per comparison: every system of a comparison is timed in that same process,
and one peer's threads or memory cannot disturb another comparison), collects their
tables as JSON and writes ``benchmarks/RESULTS.md`` plus PNG plots in
``benchmarks/plots/`` (the latency plot also to ``docs/latency_vs_size.png``, the
figure the README shows). Plots need matplotlib (``pip install matplotlib`` or the
``bench``/``plot`` extras); without it they are skipped with a note.

Sections (``--sections`` picks some):

- ``seed``: the seed's table (``bench_jit.seed_table``).
- ``latency``: per-call value and gradient, IK 5/20/50 joints, against JAX, CasADi,
  PyTorch, HIPS autograd (``bench_jit.latency_table``).
- ``large``: compile and evaluation time per node, 10^3..10^5 nodes (10^6 with
  ``--huge``), against CasADi (SX, SX jit) and JAX (``bench_large.large_table``).
- ``memory``: eager graph bytes per node, backward and compile time per node
  (``bench_large.memory_row``).
- ``eager``: eager build + backward per node against micrograd and PyTorch
  (``bench_eager.eager_table``).
- ``lsq``, ``optim``, ``jit``: the least-squares, optimiser and guarded-tracing scripts
  (``bench_lsq.py``, ``nist_table.py``, ``bench_optim.py``, ``bench_guards.py``), their
  ``main`` imported and their printed tables quoted; a placeholder line names the
  script when absent.
- ``structure``: energies that are sums of many terms of one shape, against JAX,
  PyTorch and scipy (``bench_mesh.py``: a cloth mesh's springs and hinges;
  ``bench_mlp.py``: a full-batch MLP loss), quoted the same way.

Every peer is optional: a missing one leaves ``n/a`` in its column and a note.

Run:
    python -m benchmarks                  # the default suite (~10 min on 2 cores)
    python -m benchmarks --quick          # smaller sizes, fewer repeats (~2 min)
    python -m benchmarks --huge           # also 10^6-node graphs
    python -m benchmarks --sections latency large
    python -m benchmarks --from-json benchmarks/out/results.json   # re-render only

The raw tables of the last default run are kept in ``benchmarks/out/results.json``
(ignored by git; with ``--out X.md``: ``X.json``, and the plots stay in ``--plots``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
SECTIONS = ("seed", "latency", "large", "memory", "eager", "lsq", "optim", "jit", "batch",
            "cache", "structure")
PEERS = {  # import name -> (display name, install hint)
    "jax": ("JAX", "pip install jax"),
    "casadi": ("CasADi", "pip install casadi"),
    "torch": ("PyTorch", "pip install torch --index-url https://download.pytorch.org/whl/cpu"),
    "autograd": ("HIPS autograd", "pip install autograd"),
    "micrograd": ("micrograd", "pip install micrograd==0.1.0"),
    "scipy": ("SciPy", "pip install scipy"),
    "matplotlib": ("matplotlib (plots)", "pip install matplotlib"),
}
EXTERNAL = {"lsq": ("bench_lsq", "nist_table", "bench_bounds", "bench_manifolds"),
            "optim": ("bench_optim", "bench_optim_bounds", "bench_newton"),
            "jit": ("bench_guards",), "batch": ("bench_batch",),
            "cache": ("bench_cache",), "structure": ("bench_mesh", "bench_mlp")}
"""The other developers' scripts each section calls into, when present."""


# ----------------------------------------------------------------------------- child side

def run_section(name: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run one section in this process; returns ``{"tables": [...], "notes": [...]}``."""
    from benchmarks import bench_jit

    quick, repeats = opts["quick"], opts["repeats"]
    tables: list[dict[str, Any]] = []
    notes: list[str] = []
    if name == "seed":
        iterations = 200 if quick else 1000
        tables.append({"title": f"Seed table: IK loss, {iterations} gradient-descent "
                                f"iterations, median of {repeats} runs",
                       "rows": bench_jit.seed_table([5, 20, 50], iterations, repeats)})
    elif name == "latency":
        tables.append({"title": f"Per-call value and gradient latency, IK loss "
                                f"(median of {repeats} timeit batches)",
                       "rows": bench_jit.latency_table([5, 20, 50], repeats)})
        notes += [bench_jit.PEER_NOTES[p] for p in ("jax", "casadi", "torch", "autograd")
                  if not _installed(p)]
        notes.append(bench_jit.PEER_NOTES["micrograd"])
    elif name == "large":
        from benchmarks import bench_large

        sizes = _sizes(opts)
        tables.append({"title": f"Large graphs: compile (to first gradient) and value+gradient "
                                f"evaluation, median of {repeats}",
                       "rows": bench_large.large_table(
                           sizes, repeats, jit_max=opts["jit_max"],
                           jax_unrolled_max=opts["jax_unrolled_max"],
                           eager_max=opts["eager_max"])})
    elif name == "memory":
        from benchmarks import bench_large

        sizes = [10**4] if quick else [10**5] + ([10**6] if opts["huge"] else [])
        tables.append({"title": "Huge graphs: eager graph memory (tracemalloc), one eager "
                                "backward, compile to first gradient (single runs)",
                       "rows": [bench_large.memory_row(n) for n in sizes]})
    elif name == "eager":
        from benchmarks import bench_eager
        from benchmarks.eager_vs_micrograd import SIZES

        sizes = SIZES[:2] if quick else SIZES
        tables.append({"title": f"Eager build + backward per node, median of {repeats} "
                                f"interleaved samples",
                       "rows": bench_eager.eager_table(sizes, repeats)})
        notes += [f"{PEERS[p][0]} not installed ({PEERS[p][1]})"
                  for p in ("micrograd", "torch") if not _installed(p)]
    elif name in EXTERNAL:
        for script in EXTERNAL[name]:
            tables.append(_external(script, quick))
    else:
        raise ValueError(f"section must be one of {', '.join(SECTIONS)}; got {name!r}")
    return {"tables": tables, "notes": notes}


def _sizes(opts: dict[str, Any]) -> list[int]:
    sizes = [10**3, 10**4] if opts["quick"] else [10**3, 10**4, 10**5]
    return sizes + ([10**6] if opts["huge"] else [])


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        return False


def _external(script: str, quick: bool) -> dict[str, Any]:
    """Import ``benchmarks/<script>.py`` and call its ``main``; quote what it prints."""
    title = f"`benchmarks/{script}.py`"
    if not (BENCH / f"{script}.py").exists():
        return {"title": title, "text": f"NOT RUN: benchmarks/{script}.py is not in this tree "
                                        f"yet; run `python benchmarks/{script}.py` once it lands."}
    module = importlib.import_module(f"benchmarks.{script}")
    argv = ["--quick"] if quick else []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            status = _call_main(module, script, argv)
        except SystemExit as exc:  # an argparse error, e.g. no --quick option
            status = exc.code
            if argv:
                out.seek(0)
                out.truncate()
                argv = []
                status = _call_main(module, script, argv)
        except Exception as exc:  # noqa: BLE001 - their failure is reported, not ours
            status = f"{type(exc).__name__}: {exc}"
    return {"title": f"{title} (its `main`, argv {argv}, output quoted)",
            "text": out.getvalue().strip() + ("" if not status else f"\n(exit status {status})")}


def _call_main(module: Any, script: str, argv: list[str]) -> Any:
    """``module.main(argv)``, or ``main()`` with ``sys.argv`` set when it takes none."""
    if inspect.signature(module.main).parameters:
        return module.main(argv)
    saved = sys.argv
    sys.argv = [f"benchmarks/{script}.py", *argv]
    try:
        return module.main()
    finally:
        sys.argv = saved


def child_main(argv: list[str]) -> int:
    """``python -m benchmarks.suite --child SECTION OPTS_JSON OUT_JSON``."""
    name, opts, out = argv[0], json.loads(argv[1]), argv[2]
    result = run_section(name, opts)
    Path(out).write_text(json.dumps(result, default=_jsonable))
    return 0


def _jsonable(x: Any) -> Any:
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


# ----------------------------------------------------------------------------- parent side

def machine_note() -> list[str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for module, (display, hint) in PEERS.items():
        if _installed(module):
            try:
                from importlib.metadata import version
                versions.append(f"{display} {version(module)}")
            except Exception:  # noqa: BLE001 - any metadata problem: just the name
                versions.append(display)
        else:
            versions.append(f"{display}: not installed ({hint})")
    import llvmlite
    import numpy

    return [
        f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"llvmlite {llvmlite.__version__}.",
        "The machine is **shared with other developers running tests: 2 cores, noisy**. "
        "Every figure is a median over repeated runs in one process per comparison; "
        "compare ratios within a table rather than absolute times across tables, and "
        "expect run-to-run variation of tens of percent.",
        "Peers: " + "; ".join(versions) + ".",
    ]


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def table_markdown(table: dict[str, Any]) -> str:
    lines = [f"### {table['title']}", ""]
    if "text" in table:
        text = table["text"]
        lines += [text if text.startswith("NOT RUN") else f"```\n{text}\n```", ""]
        return "\n".join(lines)
    rows = table["rows"]
    if not rows:
        return "\n".join(lines + ["(no rows)", ""])
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    lines.append("| " + " | ".join(keys) + " |")
    lines.append("|" + "---|" * len(keys))
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")
    return "\n".join(lines + [""])


SECTION_TITLES = {
    "seed": "1. The seed's table: traditional vs compiled",
    "latency": "2. Per-call value_and_grad latency (small graphs)",
    "large": "3. Large graphs: compile and evaluation time per node",
    "memory": "3b. Huge graphs: memory and time per node",
    "eager": "4. Eager build + backward per node",
    "lsq": "5. Least squares",
    "optim": "6. Optimisers",
    "jit": "7. sa.jit guards and thread latency",
    "structure": "8. Sums of many terms of one shape: mesh energy, full-batch MLP",
    "batch": "9. Batched fits and minimisations",
    "cache": "10. The disk cache: a second process to its first gradient",
}


def write_results(path: Path, results: dict[str, dict[str, Any]], command: str,
                  plot_notes: list[str], elapsed: float) -> None:
    out = ["# Benchmark results", "",
           f"Written by `{command}` in {elapsed / 60:.1f} min on "
           f"{time.strftime('%Y-%m-%d')}. Times are medians; ratios are peer / "
           f"scalar_autograd (> 1 means scalar_autograd is faster) unless a column says "
           f"otherwise. `n/a`: not measured (see the note column or the notes).", ""]
    out += [f"- {line}" for line in machine_note()]
    out += [""]
    out += [f"![per-call latency vs graph size]({os.path.relpath(ROOT / 'docs', path.parent)}"
            f"/latency_vs_size.png)", ""] if any("latency_vs_size" in n for n in plot_notes) else []
    out += [f"- {n}" for n in plot_notes] + ([""] if plot_notes else [])
    for name, result in results.items():
        out += [f"## {SECTION_TITLES[name]}", ""]
        if "error" in result:
            out += [f"FAILED: {result['error']}", ""]
            continue
        for table in result["tables"]:
            out.append(table_markdown(table))
        out += [f"- {n}" for n in result.get("notes", [])] + ([""] if result.get("notes") else [])
    path.write_text("\n".join(out).rstrip() + "\n")


def run_child(name: str, opts: dict[str, Any], timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, "-m", "benchmarks.suite", "--child", name, json.dumps(opts),
               str(out)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout,
                                  capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s (raise --timeout)"}
        sys.stderr.write(proc.stderr[-2000:] if proc.returncode else "")
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            return {"error": f"exit status {proc.returncode}: " + " / ".join(tail)}
        return json.loads(out.read_text())  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--huge", action="store_true", help="include 10^6-node graphs")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats per median (default 7, 3 with --quick)")
    parser.add_argument("--jit-max", type=int, default=10**4,
                        help="largest graph for CasADi's C-compiled jit (default 10^4)")
    parser.add_argument("--jax-unrolled-max", type=int, default=10**3,
                        help="largest graph for JAX unrolled (default 10^3; 0: none)")
    parser.add_argument("--eager-max", type=int, default=10**4,
                        help="largest large graph for eager systems (default 10^4)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per section")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--plots", type=Path, default=BENCH / "plots")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-render RESULTS.md and plots from a saved results.json")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be a positive integer; got {args.repeats}")
    opts = {"quick": args.quick, "huge": args.huge,
            "repeats": args.repeats or (3 if args.quick else 7), "jit_max": args.jit_max,
            "jax_unrolled_max": args.jax_unrolled_max, "eager_max": args.eager_max}
    start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        results, argv, start = saved["results"], saved["argv"], start - saved["elapsed"]
        args.sections = []
    for name in args.sections:
        t = time.perf_counter()
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        results[name] = run_child(name, opts, args.timeout)
        status = results[name].get("error", "ok")
        print(f"[benchmarks] {name}: {status} ({time.perf_counter() - t:.0f} s)",
              file=sys.stderr, flush=True)
    default_out = args.out.resolve() == (BENCH / "RESULTS.md").resolve()
    plot_notes: list[str] = []
    if not args.no_plots:
        from benchmarks import plots

        # only the default run refreshes the README's figure in docs/
        plot_notes = plots.make_plots(results, args.plots,
                                      ROOT / "docs" if default_out else args.plots)
    if args.from_json is None:
        saved = BENCH / "out" / "results.json" if default_out else args.out.with_suffix(".json")
        saved.parent.mkdir(exist_ok=True)
        saved.write_text(json.dumps(
            {"results": results, "argv": argv, "elapsed": time.perf_counter() - start}))
    command = "python -m benchmarks " + " ".join(argv)
    write_results(args.out, results, command.strip(), plot_notes, time.perf_counter() - start)
    print(f"[benchmarks] wrote {args.out}", file=sys.stderr)
    for result in results.values():
        for table in result.get("tables", []):
            print(table_markdown(table))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
