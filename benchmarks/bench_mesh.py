"""Benchmark a mesh energy (a hanging cloth: springs, hinges, gravity) against JAX.

The energy is the one of ``examples/mesh_energy.py``, written the way a user writes it:
a Python sum of one ``sa`` term per edge (a spring), per interior edge (a hinge: the
bending angle between its two triangles, each hinge computing its own two normals) and
per vertex (gravity). The ``n x n`` cloth has its first and last rows pinned, so
``3 n (n - 2)`` unknowns: 20 x 20 is 722 triangles, 1,121 springs, 1,045 hinges and
1,080 unknowns. The same energy is written vectorised in JAX (float64, gathers on index
arrays), and both are checked to give the same value and gradient (relative 1e-10) at a
random perturbed point.

Tables:

1. **Compile and gradient** per size (``--sizes``, default 20 and 40; 80 on request):
   for ``scalar_autograd``, building the graph in Python (once), ``sa.compile`` through
   the first ``value_and_grad`` (median of fresh compiles, empty kernel cache, disk
   cache off), and the per-call ``value_and_grad`` (median of timeit batches); for JAX,
   ``jax.jit(jax.value_and_grad(energy))`` through its first call, and per call (on a
   device array, ``block_until_ready``). The per-term time is the gradient time over
   the number of terms (springs + hinges + free vertices). ``f.backend`` and, when the
   compiled function has it, ``f.stats()`` are reported.
2. **L-BFGS** from the same start (the example's guess): ``sa.lbfgs`` on the compiled
   function against ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` on the JAX
   value and gradient, both stopping on ``max |g_i| <= 1e-6`` alone (``ftol=0``) with
   10 curvature pairs. Iterations, evaluations, final energies (they must agree to
   1e-8 relative: they are the same minimum) and wall time (median of
   ``--lbfgs-repeats`` runs). Ours first runs one untimed iteration: the first solve
   on a compiled function binds it (its native call on fixed buffers), a one-time cost
   reported as ``warm-up s``.

Threads: OpenBLAS runs on one thread (``OPENBLAS_NUM_THREADS=1`` before numpy loads,
and set again through OpenBLAS's own call when numpy was loaded first, as in the suite):
threaded BLAS on vectors of a few thousand entries made scipy's L-BFGS-B 10-25x slower
on this 2-core machine. XLA keeps its default intra-op pool (all cores).

JAX and scipy are timed before ours at each size: our kernels may go on compiling
their final code on a background thread after their first calls, which would take a
core from a peer timed after them. The machine may be shared: every figure is a median
in this one process; compare ratios within a table. Run:

    python benchmarks/bench_mesh.py [--sizes 20,40,80] [--repeats 5] [--quick]
                                    [--json out.json]
"""

from __future__ import annotations

import os

# One BLAS thread (read when numpy loads). OMP_NUM_THREADS is left alone: it would also
# set PyTorch's threads in bench_mlp.py, which the suite runs in this same process.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import mesh_energy  # noqa: E402  (examples/mesh_energy.py: the mesh and our energy)

import scalar_autograd as sa  # noqa: E402
from scalar_autograd.runtime.cache import KERNELS  # noqa: E402

try:  # as a package module (python -m benchmarks) or as a script
    from benchmarks.bench_jit import per_call, print_table
    from benchmarks.bench_large import _timed_compile
except ImportError:  # pragma: no cover - script mode
    from bench_jit import per_call, print_table  # type: ignore[no-redef]
    from bench_large import _timed_compile  # type: ignore[no-redef]

GRADIENT_TOLERANCE = 1e-6
"""Both L-BFGS runs stop when ``max |g_i|`` is at most this (and on nothing else)."""
HISTORY = 10
"""Curvature pairs kept by both L-BFGS runs (scipy's ``maxcor`` default)."""
MAX_ITERATIONS = 50_000
AGREEMENT = 1e-10
"""Relative agreement of value and gradient, ours against JAX, at the check point."""
ENERGY_AGREEMENT = 1e-8
"""Relative agreement of the two L-BFGS runs' final energies."""


def n_terms(cloth: mesh_energy.Cloth) -> int:
    """Springs + hinges + gravity terms of free vertices (the pinned ones are constants)."""
    return len(cloth.edges) + len(cloth.hinges) + len(cloth.free)


def check_point(cloth: mesh_energy.Cloth, seed: int = 0) -> np.ndarray:
    """The start guess with every coordinate moved by N(0, 0.01^2): no symmetry left."""
    x0 = mesh_energy.start_guess(cloth)
    return x0 + 0.01 * np.random.default_rng(seed).standard_normal(x0.size)


def single_thread_blas() -> list[str]:
    """Put every loaded OpenBLAS (numpy's, scipy's) on one thread; return their names.

    ``OPENBLAS_NUM_THREADS`` only counts before the library loads; under the suite
    numpy is loaded first, so this calls OpenBLAS's ``*_set_num_threads`` (Linux: the
    libraries are found in ``/proc/self/maps``; elsewhere nothing is done).
    """
    import scipy.optimize  # noqa: F401 - load scipy's OpenBLAS too

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    done = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
                     "scipy_openblas_set_num_threads64_"):
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(1)
                done.append(Path(path).name)
                break
    return done


def compile_stats(f: Any) -> Any:
    """``f.stats()`` when the compiled function has it (a newer compiler), else None."""
    stats = getattr(f, "stats", None)
    return stats() if callable(stats) else stats


def stats_columns(stats: Any, shown: int = 4) -> dict[str, Any]:
    """``f.stats()`` as table columns: a dataclass or dict field by field, a sequence of
    records (the row kernels) as its length and its first ``shown`` records, compactly."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        stats = dataclasses.asdict(stats)
    if not isinstance(stats, dict):
        return {"f.stats()": str(stats)}
    columns: dict[str, Any] = {}
    for key, value in stats.items():
        if isinstance(value, (list, tuple)):
            items = [" ".join(f"{k}={v}" for k, v in item.items()) if isinstance(item, dict)
                     else str(item) for item in value]
            more = ", ..." if len(items) > shown else ""
            columns[key] = f"{len(items)}" + (f": {', '.join(items[:shown])}{more}"
                                              if items else "")
        else:
            columns[key] = value
    return columns


# ----------------------------------------------------------------------------- JAX

def jax_energy(cloth: mesh_energy.Cloth) -> Callable[[Any], Any]:
    """The example's energy, vectorised in JAX: a function of the unknowns ``x``."""
    import jax.numpy as jnp

    free = jnp.asarray(cloth.free)
    held = jnp.asarray(cloth.pinned_positions)
    edges = np.asarray(cloth.edges)
    ei, ej = jnp.asarray(edges[:, 0]), jnp.asarray(edges[:, 1])
    rest = jnp.asarray(cloth.rest_lengths)
    hinges = np.asarray(cloth.hinges)
    hi, hj, hk, hl = (jnp.asarray(hinges[:, c]) for c in range(4))
    weight = cloth.mass * mesh_energy.G

    def energy(x: Any) -> Any:
        p = held.at[free].set(x.reshape(-1, 3))
        length = jnp.sqrt(jnp.sum((p[ei] - p[ej]) ** 2, axis=1))
        springs = mesh_energy.K_STRETCH * (length - rest) ** 2
        pi, pj, pk, pl = p[hi], p[hj], p[hk], p[hl]
        e = pj - pi
        n1 = jnp.cross(e, pk - pi)
        n2 = jnp.cross(pi - pj, pl - pj)
        sine = jnp.sum(jnp.cross(n1, n2) * e, axis=1) / jnp.sqrt(jnp.sum(e * e, axis=1))
        theta = jnp.arctan2(sine, jnp.sum(n1 * n2, axis=1))
        bends = mesh_energy.K_BEND * theta**2
        return jnp.sum(springs) + jnp.sum(bends) + weight * jnp.sum(p[:, 2])

    return energy


def jax_value_and_grad(cloth: mesh_energy.Cloth) -> Callable[[Any], Any]:
    """A fresh ``jax.jit(jax.value_and_grad(energy))`` (not yet compiled)."""
    import jax

    return jax.jit(jax.value_and_grad(jax_energy(cloth)))


def check_agreement(f: Any, vg: Callable[[Any], Any], x: np.ndarray) -> float:
    """Raise unless ours and JAX agree to ``AGREEMENT``; return the worst relative gap."""
    value, grad = f.value_and_grad(x)
    jv, jg = vg(x)
    jv, jg = float(jv), np.asarray(jg)
    gap_v = abs(value - jv) / abs(jv)
    gap_g = float(np.max(np.abs(grad - jg))) / float(np.max(np.abs(jg)))
    if not (gap_v <= AGREEMENT and gap_g <= AGREEMENT):
        raise RuntimeError(f"ours and JAX disagree: value {value!r} vs {jv!r}, gradient "
                           f"max relative gap {gap_g:.1e}")
    return max(gap_v, gap_g)


# ----------------------------------------------------------------------------- table 1

def _row(n: int, cloth: mesh_energy.Cloth, system: str, build_s: float | None,
         compile_s: float | None, grad_s: float | None, note: str = "") -> dict[str, Any]:
    terms = n_terms(cloth)
    return {"mesh": f"{n}x{n}", "unknowns": 3 * len(cloth.free), "terms": terms,
            "system": system, "build s": build_s, "compile s": compile_s,
            "grad ms": None if grad_s is None else 1e3 * grad_s,
            "ns/term": None if grad_s is None else 1e9 * grad_s / terms, "note": note}


def jax_row(n: int, cloth: mesh_energy.Cloth, x0: np.ndarray, repeats: int
            ) -> tuple[dict[str, Any], Any]:
    """JAX's row of table 1 and its compiled value and gradient (None without JAX)."""
    try:
        import jax
    except ImportError:
        return _row(n, cloth, "JAX", None, None, None,
                    "JAX not installed (pip install jax)"), None
    jax.config.update("jax_enable_x64", True)

    def compile_jax() -> Any:
        vg = jax_value_and_grad(cloth)
        jax.block_until_ready(vg(x0))
        return vg

    compile_s, vg = _timed_compile(compile_jax, min(repeats, 3))
    xj = jax.numpy.asarray(x0)
    grad_s = per_call(lambda: jax.block_until_ready(vg(xj)), repeats, min_time=0.02)
    return _row(n, cloth, "JAX", None, compile_s, grad_s,
                "jit(value_and_grad), vectorised"), vg


def size_rows(n: int, repeats: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Table 1's rows for one size, and what table 2 needs (the compiled functions)."""
    cloth = mesh_energy.make_cloth(n)
    x0 = mesh_energy.start_guess(cloth)
    # JAX first: our kernels may go on compiling their final code on a background
    # thread after their first calls, which would take a core from a peer timed after
    theirs, vg = jax_row(n, cloth, x0, repeats)

    t = time.perf_counter()
    energy, params = mesh_energy.cloth_graph(cloth, x0)
    build_s = time.perf_counter() - t

    def compile_ours() -> Any:
        KERNELS.clear()
        f = sa.compile(energy, params)
        f.value_and_grad(x0)
        return f

    compile_s, f = _timed_compile(compile_ours, min(repeats, 3))
    getattr(f, "tier_up", lambda: None)()   # per call: the final code
    grad_s = per_call(lambda: f.value_and_grad(x0), repeats, min_time=0.02)
    stats = compile_stats(f)
    # f.n_instructions only without stats: a structured function builds its flat
    # program for it (20 s at 40x40 on the day this was written)
    ours = _row(n, cloth, "scalar_autograd", build_s, compile_s, grad_s,
                f.backend if stats is not None
                else f"{f.backend}, {f.n_instructions} instructions")
    if vg is not None:
        theirs["note"] += f"; agrees to {check_agreement(f, vg, check_point(cloth)):.0e}"
    rows = [ours, theirs]
    for r in rows:
        r["compile / ours"] = (None if r["compile s"] is None
                               else r["compile s"] / ours["compile s"])
        r["grad / ours"] = None if r["grad ms"] is None else r["grad ms"] / ours["grad ms"]
    context = {"n": n, "cloth": cloth, "x0": x0, "f": f, "params": params,
               "stats": stats, "vg": vg}
    return rows, context


# ----------------------------------------------------------------------------- table 2

def lbfgs_rows(context: dict[str, Any], repeats: int) -> list[dict[str, Any]]:
    """scipy L-BFGS-B on JAX (first, as in table 1), then ``sa.lbfgs`` on ours."""
    n, cloth, x0, f, params, vg = (context[k] for k in ("n", "cloth", "x0", "f", "params",
                                                         "vg"))
    theirs = None
    if vg is not None:
        from scipy.optimize import minimize

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = vg(x)
            return float(value), np.asarray(grad)

        def scipy_run() -> Any:
            return minimize(fun, x0, jac=True, method="L-BFGS-B",
                            options={"maxiter": MAX_ITERATIONS, "maxfun": 2 * MAX_ITERATIONS,
                                     "maxcor": HISTORY, "ftol": 0.0,
                                     "gtol": GRADIENT_TOLERANCE})

        scipy_times, theirs = _timed_runs(scipy_run, repeats)

    def ours(max_iterations: int = MAX_ITERATIONS) -> sa.OptimizeResult:
        for p, v in zip(params, x0):
            p.data = float(v)
        return sa.lbfgs(f, params, max_iterations=max_iterations, history_size=HISTORY,
                        gradient_tolerance=GRADIENT_TOLERANCE, ftol=0.0)

    warm_up, _ = _timed_runs(lambda: ours(max_iterations=1), 1)
    times, result = _timed_runs(ours, repeats)
    rows = [{"mesh": f"{n}x{n}", "system": "scalar_autograd sa.lbfgs",
             "iterations": result.iterations, "evaluations": result.nfev,
             "final energy": f"{result.fun:.12f}", "energy rel. diff": 0.0,
             "time s": statistics.median(times),
             "ms/iteration": 1e3 * statistics.median(times) / result.iterations,
             "status": result.status.name, "warm-up s": warm_up[0]}]
    if theirs is not None:
        gap = abs(theirs.fun - result.fun) / abs(result.fun)
        if gap > ENERGY_AGREEMENT:
            raise RuntimeError(f"{n}x{n}: L-BFGS minima differ: ours {result.fun!r}, scipy "
                               f"{theirs.fun!r} (relative {gap:.1e})")
        rows.append({"mesh": f"{n}x{n}", "system": "scipy L-BFGS-B + JAX grad",
                     "iterations": theirs.nit, "evaluations": theirs.nfev,
                     "final energy": f"{theirs.fun:.12f}", "energy rel. diff": gap,
                     "time s": statistics.median(scipy_times),
                     "ms/iteration": 1e3 * statistics.median(scipy_times) / theirs.nit,
                     "status": "CONVERGED" if theirs.success else str(theirs.message)})
    for r in rows:
        r["time / ours"] = r["time s"] / rows[0]["time s"]
    return rows


def _timed_runs(run: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    times = []
    result = None
    for _ in range(max(1, repeats)):
        gc.collect()
        t = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t)
    return times, result


# ----------------------------------------------------------------------------- main

def mesh_tables(sizes: list[int], repeats: int, lbfgs_repeats: int
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """Every table as ``{"title", "rows"}``, and notes."""
    compile_rows: list[dict[str, Any]] = []
    solve_rows: list[dict[str, Any]] = []
    stats_rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for n in sizes:
        rows, context = size_rows(n, repeats)
        compile_rows += rows
        solve_rows += lbfgs_rows(context, lbfgs_repeats)
        if context["stats"] is not None:
            stats_rows.append({"mesh": f"{n}x{n}", **stats_columns(context["stats"])})
        print(f"  mesh energy: {n}x{n} done", file=sys.stderr, flush=True)
        del context
        KERNELS.clear()
    if not stats_rows:
        notes.append("f.stats() is not available in this version of scalar_autograd.")
    if not any(r["system"] == "JAX" and r["grad ms"] is not None for r in compile_rows):
        notes.append("JAX not installed (pip install jax): no JAX or scipy columns.")
    tables = [
        {"title": f"Mesh energy: compile (to first gradient) and value+gradient per call, "
                  f"median of {repeats}", "rows": compile_rows},
        {"title": f"Mesh energy: L-BFGS to max |g| <= {GRADIENT_TOLERANCE:g} from the same "
                  f"start, median of {lbfgs_repeats} runs", "rows": solve_rows},
    ]
    if stats_rows:
        tables.append({"title": "Mesh energy: f.stats() of the compiled function",
                       "rows": stats_rows})
    return tables, notes


def report(tables: list[dict[str, Any]], notes: list[str], json_path: Path | None) -> None:
    """Print the tables and notes as markdown, and write them as JSON to ``json_path``."""
    for table in tables:
        print_table(table["title"], table["rows"])
    for note in notes:
        print(f"\n- {note}")
    if json_path is not None:
        json_path.write_text(json.dumps({"tables": tables, "notes": notes}, indent=1,
                                        default=str))
        print(f"\nwrote {json_path}", file=sys.stderr)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 20,40,80; got {text!r}"
                                         ) from None
    if not sizes or min(sizes) < 3:
        raise argparse.ArgumentTypeError(f"every size must be an integer >= 3; got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=None,
                        help="mesh sizes n (n x n vertices), comma-separated "
                             "(default 20,40; 20 with --quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats per median (default 7, 3 with --quick)")
    parser.add_argument("--lbfgs-repeats", type=int, default=None,
                        help="L-BFGS runs per median (default 3, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="20x20 only, fewer repeats")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the tables as JSON to PATH")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([20] if args.quick else [20, 40])
    repeats = args.repeats or (3 if args.quick else 7)
    lbfgs_repeats = args.lbfgs_repeats or (1 if args.quick else 3)
    sa.set_cache_dir(None)
    blas = single_thread_blas()
    tables, notes = mesh_tables(sizes, repeats, lbfgs_repeats)
    notes.append("OpenBLAS on one thread (" + (", ".join(blas) or "not found") + "); XLA: "
                 "default intra-op pool; " + f"{os.cpu_count()} cores.")
    report(tables, notes, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
