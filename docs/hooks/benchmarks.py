"""MkDocs hook: the benchmark results page, taken from ``benchmarks/RESULTS.md`` at build time.

``python -m benchmarks`` writes ``benchmarks/RESULTS.md`` and the PNG plots in
``benchmarks/plots/`` (the plots are not committed). The site's page
``benchmarks/results.md`` is that file, its links adjusted for its new place
(a link into ``docs/`` points at the page or picture there; a link to any other file of
the repository becomes plain code, since the site does not hold it), followed by every
plot found in ``benchmarks/plots/``. Nothing is copied by hand, so the page shows the
last run's results; without ``RESULTS.md`` the page says how to make it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "RESULTS.md"
PLOTS = BENCHMARKS / "plots"
PAGE = "benchmarks/results.md"
DOCS = ROOT / "docs"

_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")


def _relink(markdown: str, plots: set[str]) -> str:
    """Links of RESULTS.md (relative to ``benchmarks/``) made right for ``PAGE``."""

    def link(match: re.Match[str]) -> str:
        target = match.group("target")
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)  # an external link or an anchor
        path, _, anchor = target.partition("#")
        resolved = (BENCHMARKS / path).resolve()
        if resolved.is_relative_to(DOCS) and resolved.exists():
            new = os.path.relpath(resolved, DOCS / "benchmarks").replace(os.sep, "/")
            return f"{match.group('bang')}[{match.group('text')}]({new}" + \
                (f"#{anchor})" if anchor else ")")
        if resolved.parent == PLOTS.resolve() and resolved.name in plots:
            return f"{match.group('bang')}[{match.group('text')}](plots/{resolved.name})"
        return f"`{match.group('text') or path}`"  # not part of the site

    return _LINK.sub(link, markdown)


def results_page(plots: list[str]) -> str:
    """The markdown of the results page."""
    if not RESULTS.exists():
        return ("# Benchmark results\n\n`benchmarks/RESULTS.md` was not there when this site "
                "was built: run `python -m benchmarks` (see the README's Benchmarks section) "
                "to write it.\n")
    text = _relink(RESULTS.read_text(encoding="utf-8"), set(plots))
    intro = ("!!! info \"Where this page comes from\"\n"
             "    This is `benchmarks/RESULTS.md` as written by the last "
             "`python -m benchmarks` run, included when the site was built. "
             "Re-run the suite to refresh it.\n\n")
    heading, _, rest = text.partition("\n")
    if not heading.startswith("# "):
        heading, rest = "# Benchmark results", text
    page = f"{heading}\n\n{intro}{rest.lstrip()}"
    if plots:
        page += "\n\n## Plots\n\nFrom `benchmarks/plots/`, written by the same run:\n\n"
        page += "\n\n".join(f"![{name}](plots/{name})" for name in plots) + "\n"
    return page


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    """Add the results page and the plots to the site."""
    plots = sorted(p.name for p in PLOTS.glob("*.png")) if PLOTS.is_dir() else []
    files.append(File.generated(config, PAGE, content=results_page(plots)))
    for name in plots:
        files.append(File.generated(config, f"benchmarks/plots/{name}",
                                    content=(PLOTS / name).read_bytes()))
    return files
