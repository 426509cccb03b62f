"""PNG plots of the benchmark suite's tables (matplotlib, optional).

``make_plots(results, out_dir, docs_dir)`` draws what the collected sections allow and
returns notes for RESULTS.md (including "skipped: matplotlib is not installed").

- ``latency_vs_size.png``: per-call value-and-gradient time against graph size for every
  system, from the IK latency table (small graphs) and the large-graph table; also
  copied to ``docs/`` for the README.
- ``compile_vs_size.png``: compile time (to the first gradient) against graph size.
- ``eager_per_node.png``: eager build + backward time per node.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

# system name in a table -> (series label, marker)
_LATENCY_IK = {
    "bind() us": "scalar_autograd bind()",
    "value_and_grad us": "scalar_autograd value_and_grad",
    "CasADi buffer us": "CasADi buffer() (SX VM)",
    "CasADi F(x) us": "CasADi F(x)",
    "JAX jit us": "JAX jit (vectorised / lax.scan)",
    "PyTorch eager us": "PyTorch eager",
    "HIPS autograd us": "HIPS autograd",
}
_LATENCY_LARGE = {
    "scalar_autograd": "scalar_autograd value_and_grad",
    "scalar_autograd eager": "scalar_autograd eager (build + backward)",
    "CasADi SX": "CasADi buffer() (SX VM)",
    "CasADi SX jit": "CasADi SX jit (gcc) buffer()",
    "JAX scan": "JAX jit (vectorised / lax.scan)",
    "JAX unrolled": "JAX jit unrolled",
    "PyTorch eager": "PyTorch eager",
    "HIPS autograd": "HIPS autograd",
}


def _rows(results: dict[str, Any], section: str) -> list[dict[str, Any]]:
    result = results.get(section) or {}
    rows: list[dict[str, Any]] = []
    for table in result.get("tables", []):
        rows += table.get("rows", [])
    return rows


def latency_series(results: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Series label -> sorted (graph nodes, seconds per call)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for row in _rows(results, "latency"):
        for key, label in _LATENCY_IK.items():
            if row.get(key) is not None:
                series.setdefault(label, []).append((row["graph nodes"], row[key] * 1e-6))
    for row in _rows(results, "large"):
        label = _LATENCY_LARGE.get(row.get("system", ""))
        if label and row.get("eval ms") is not None:
            series.setdefault(label, []).append((row["graph nodes"], row["eval ms"] * 1e-3))
    return {k: sorted(v) for k, v in series.items()}


def make_plots(results: dict[str, Any], out_dir: Path, docs_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["Plots skipped: matplotlib is not installed (pip install matplotlib, or "
                "the `bench` extra)."]
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = []
    series = latency_series(results)
    if series:
        fig, ax = plt.subplots(figsize=(10.5, 5.5))
        for label, points in series.items():
            xs, ys = zip(*points)
            style = "-" if label.startswith("scalar_autograd") else "--"
            ax.loglog(xs, ys, style, marker="o", label=label,
                      linewidth=2.4 if "scalar_autograd" in label else 1.4)
        if _rows(results, "latency") and _rows(results, "large"):
            ax.axvline(650, color="grey", linestyle=":", linewidth=1)
            ax.text(0.02, 0.02, "IK loss (peers vectorised)", transform=ax.transAxes,
                    fontsize=8, color="grey")
            ax.text(0.98, 0.02, "chained scalar graph (every system scalar)",
                    transform=ax.transAxes, fontsize=8, color="grey", ha="right")
        ax.set_xlabel("graph nodes (forward graph)")
        ax.set_ylabel("seconds per value-and-gradient call (median)")
        ax.set_title("Per-call latency vs graph size (IK 5/20/50 joints, then chained "
                     "graphs)\n2 shared cores, noisy: medians", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = out_dir / "latency_vs_size.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        if docs_dir.resolve() != out_dir.resolve():
            docs_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, docs_dir / "latency_vs_size.png")
            notes.append(f"Plots: {path.name} (also {docs_dir.name}/latency_vs_size.png)")
        else:
            notes.append(f"Plots: {path.name}")
    compile_rows = [r for r in _rows(results, "large") if r.get("compile s") is not None]
    if compile_rows:
        fig, ax = plt.subplots(figsize=(7.5, 5))
        by_system: dict[str, list[tuple[float, float]]] = {}
        for r in compile_rows:
            by_system.setdefault(r["system"], []).append((r["graph nodes"], r["compile s"]))
        for system, points in by_system.items():
            xs, ys = zip(*sorted(points))
            ax.loglog(xs, ys, marker="o", label=system)
        ax.set_xlabel("graph nodes")
        ax.set_ylabel("compile to first gradient, s (median)")
        ax.set_title("Compile time vs graph size", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "compile_vs_size.png", dpi=110)
        plt.close(fig)
        notes.append("compile_vs_size.png")
    eager = _rows(results, "eager")
    if eager:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        systems = [k[: -len(" us/node")] for k in eager[0] if k.endswith(" us/node")]
        width = 0.8 / max(1, len(systems))
        for j, system in enumerate(systems):
            ys = [r.get(f"{system} us/node") or 0.0 for r in eager]
            ax.bar([i + j * width for i in range(len(eager))], ys, width, label=system)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(eager))])
        ax.set_xticklabels([f"{r['graph nodes']} nodes" for r in eager])
        ax.set_ylabel("us per node (median)")
        ax.set_title("Eager build + backward per node", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "eager_per_node.png", dpi=110)
        plt.close(fig)
        notes.append("eager_per_node.png")
    if notes:
        return [", ".join(notes) + f" in {out_dir.name}/ (not committed; PNGs are ignored "
                                   f"except docs/*.png)."]
    return ["No plots: no section with plottable rows ran."]
