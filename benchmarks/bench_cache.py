"""Benchmark the on-disk kernel cache: a second process's time to its first gradient.

Run:  python benchmarks/bench_cache.py [--repeats 5] [--sizes 1000 100000] [--quick]

For each graph size (the chained graph of ``bench_jit.chained_graph``: five ops a step
over 100 params; 10^5 nodes run on the tape VM, smaller ones as native code):

1. A first process builds the graph, ``sa.compile``s it, takes one gradient (which,
   with ``SA_CACHE_DIR`` set, stores the kernels and the VM's own object code) and
   pickles the ``CompiledFunction`` to a file. Its time from ``sa.compile`` to the
   first gradient is reported, with and without the cache (what writing costs).
2. Fresh interpreters (``--repeats`` of them, one after the other) import the library,
   then time ``pickle.load`` of that file and the first ``value_and_grad``: with the
   disk cache (``SA_CACHE_DIR`` pointing at the first process's directory) and without
   (differentiation, tape or LLVM code generation, and compilation all over again).
   Each result is checked bit for bit against the first process's.

Reported: medians over the fresh processes, in milliseconds; ``import`` is the time to
import ``scalar_autograd`` and numpy in each of them (not part of the total). The target
is a total of at most 100 ms for 10^5 nodes with the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

try:  # as a package module (python -m benchmarks) or as a script
    from benchmarks.bench_jit import print_table
except ImportError:  # pragma: no cover - script mode
    from bench_jit import print_table  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent

_WRITER = textwrap.dedent("""
    import hashlib, json, pickle, sys, time
    sys.path.insert(0, sys.argv[3])
    import numpy as np
    import scalar_autograd as sa
    from benchmarks.bench_jit import chained_graph
    loss, xs = chained_graph(int(sys.argv[2]))
    x = np.array([v.data for v in xs])
    t = time.perf_counter()
    f = sa.compile(loss, xs)
    value, grad = f.value_and_grad(x)
    elapsed = time.perf_counter() - t
    with open(sys.argv[1], "wb") as fh:
        pickle.dump(f, fh)
    print(json.dumps({"seconds": elapsed, "backend": f.backend,
                      "result": hashlib.sha256(np.append(grad, value).tobytes()).hexdigest()}))
""")

_READER = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import hashlib, json, pickle, sys
    import numpy as np
    import scalar_autograd as sa
    t1 = time.perf_counter()
    with open(sys.argv[1], "rb") as fh:
        f = pickle.load(fh)
    t2 = time.perf_counter()
    value, grad = f.value_and_grad(np.array([v.data for v in f.params]))
    t3 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "load": t2 - t1, "grad": t3 - t2, "total": t3 - t1,
                      "result": hashlib.sha256(np.append(grad, value).tobytes()).hexdigest()}))
""")


def _run(script: str, args: list[str], cache: Path | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "SA_CACHE_DIR"}
    if cache is not None:
        env["SA_CACHE_DIR"] = str(cache)
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def cache_table(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    """One row per graph size and cache setting (see the module docstring)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="sa-bench-cache-") as tmp:
        for n in sizes:
            for cached in (True, False):
                cache = Path(tmp) / f"kernels-{n}" if cached else None
                pickled = Path(tmp) / f"f-{n}.pkl"
                first = _run(_WRITER, [str(pickled), str(n), str(ROOT)], cache)
                runs = [_run(_READER, [str(pickled)], cache) for _ in range(repeats)]
                for r in runs:
                    if r["result"] != first["result"]:
                        raise RuntimeError(f"a second process computed another gradient "
                                           f"({n} nodes, cache {cached})")

                def median(field: str, runs: list[dict[str, Any]] = runs) -> float:
                    return 1e3 * statistics.median(r[field] for r in runs)

                rows.append({
                    "graph nodes": n, "backend": first["backend"],
                    "disk cache": "on" if cached else "off",
                    "1st process compile+grad ms": 1e3 * first["seconds"],
                    "pickle.load ms": median("load"),
                    "first value_and_grad ms": median("grad"),
                    "total ms": median("total"),
                    "import ms": median("import"),
                    "pickle KB": pickled.stat().st_size / 1024,
                })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per row")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="graph sizes in nodes (default 1000 10000 100000)")
    parser.add_argument("--quick", action="store_true", help="sizes 1000 and 100000, "
                                                             "3 repeats")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([1000, 100_000] if args.quick else [1000, 10_000, 100_000])
    repeats = 3 if args.quick else args.repeats
    print_table(f"Second process: pickle.load to first gradient (median of {repeats} "
                f"fresh processes; target <= 100 ms at 10^5 nodes with the cache)",
                cache_table(sizes, repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
