"""MkDocs hook: one page per example script, run at build time, with its output and plots.

For every ``examples/*.py`` (not ``_common.py``) the build runs
``python examples/NAME.py --quick --plot DIR`` (two at a time, a few seconds in
total) and makes ``examples/NAME.md`` from the script's module docstring (title,
description, the ``Run:`` command), the text it printed, every PNG it wrote into
``DIR`` and its full source. ``examples/index.md`` lists them all, and the nav's
"Examples" section is filled with the pages (``on_config``), so a new example appears
without editing ``mkdocs.yml``. An example that fails fails the build: the pages
cannot show a script that no longer runs.

``SA_DOCS_EXAMPLES=full`` runs the examples at full size (about 30 s) instead of
``--quick``; ``SA_DOCS_EXAMPLES=skip`` does not run them at all (for a quick
``mkdocs serve``; the pages then say so).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markup import replace_roles  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
INDEX = "examples/index.md"
TIMEOUT_S = 600
MODES = ("quick", "full", "skip")


@dataclass
class Example:
    """One example script and what running it produced."""

    path: Path
    doc: str
    output: str = ""
    images: dict[str, bytes] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The module name, e.g. ``circle_fit``."""
        return self.path.stem

    @property
    def page(self) -> str:
        """The page's path in the site's sources."""
        return f"examples/{self.name}.md"

    @property
    def title(self) -> str:
        """The docstring's first line, without its final period."""
        return self.doc.splitlines()[0].strip().rstrip(".")

    @property
    def short_title(self) -> str:
        """The title up to its first colon: the nav label."""
        return self.title.split(":", 1)[0].strip()


def mode() -> str:
    """``SA_DOCS_EXAMPLES``: ``quick`` (the default), ``full`` or ``skip``."""
    value = os.environ.get("SA_DOCS_EXAMPLES", "quick").strip().lower() or "quick"
    if value not in MODES:
        raise PluginError(f"SA_DOCS_EXAMPLES must be one of {MODES}; got {value!r}")
    return value


def scripts() -> list[Example]:
    """Every example script, in name order, with its module docstring."""
    found = []
    for path in sorted(EXAMPLES.glob("*.py")):
        if path.name.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not doc:
            raise PluginError(f"{path.relative_to(ROOT)} needs a module docstring: its "
                              f"first line is the title of its page")
        found.append(Example(path, doc))
    return found


def _run(example: Example, how: str) -> None:
    """Run ``example`` (``--quick`` unless ``how == "full"``) and keep its output and PNGs."""
    with tempfile.TemporaryDirectory(prefix=f"sa-docs-{example.name}-") as plots:
        command = [sys.executable, str(example.path), "--plot", plots]
        if how == "quick":
            command.append("--quick")
        env = dict(os.environ, MPLBACKEND="Agg")
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PluginError(f"examples/{example.path.name} ran over {TIMEOUT_S} s") from exc
        if done.returncode != 0:
            raise PluginError(
                f"examples/{example.path.name} failed (exit status {done.returncode}):\n"
                f"{done.stderr[-3000:]}")
        example.output = done.stdout.rstrip()
        example.images = {p.name: p.read_bytes() for p in sorted(Path(plots).glob("*.png"))}


def run_all(examples: list[Example], how: str) -> None:
    """Run every example, two at a time (the build machine may be small)."""
    if how == "skip":
        return
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        for future in [pool.submit(_run, example, how) for example in examples]:
            future.result()


# ------------------------------------------------------------------------------ markdown
def _fence(text: str, info: str) -> str:
    """``text`` in a fenced block whose fence is longer than any backtick run inside."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def split_docstring(doc: str) -> tuple[str, str, str]:
    """``(description, run command, note after it)`` of an example's docstring.

    The description is everything between the title line and ``Run:``; the command is
    the indented block under ``Run:``; a paragraph after it (a note on options) is kept.
    """
    lines = doc.splitlines()[1:]
    for i, line in enumerate(lines):
        if line.strip() == "Run:":
            command, j = [], i + 1
            while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                command.append(lines[j])
                j += 1
            indent = min(len(c) - len(c.lstrip()) for c in command if c.strip())
            return ("\n".join(lines[:i]).strip(),
                    "\n".join(c[indent:] for c in command).strip(),
                    "\n".join(lines[j:]).strip())
    return "\n".join(lines).strip(), "", ""


def example_page(example: Example, how: str) -> str:
    """The markdown page of one example."""
    description, command, note = split_docstring(example.doc)
    source = example.path.read_text(encoding="utf-8").rstrip()
    rel = f"examples/{example.path.name}"
    parts = [f"# {example.title}", "", replace_roles(description), ""]
    parts += ["## Run it", "",
              "From a checkout of the repository (pip does not install the examples):", "",
              _fence(command or f"python {rel} [--plot DIR] [--quick]", "bash"), ""]
    if note:
        parts += [replace_roles(note), ""]
    parts += ["`--quick` runs a smaller problem; `--plot DIR` writes the picture(s) into "
              "`DIR` (needs matplotlib: `pip install \"scalar-autograd[plot]\"`).", ""]
    parts += ["## Output", ""]
    if how == "skip":
        parts += ["!!! note", "    This build did not run the examples "
                  "(`SA_DOCS_EXAMPLES=skip`).", ""]
    else:
        flag = " --quick" if how == "quick" else ""
        parts += [f"Printed by `python {rel}{flag} --plot DIR` when this site was built "
                  "(timings are that machine's):", "", _fence(example.output, "text"), ""]
        for image in example.images:
            parts += [f"![{example.short_title}: {image}]({image})", ""]
    parts += ["## Source", "", _fence(source, f'python title="{rel}"'), ""]
    return "\n".join(parts)


def index_page(examples: list[Example]) -> str:
    """The examples' overview page: one row per script."""
    rows = "\n".join(
        f"| [{e.short_title}]({e.name}.md) | `python examples/{e.path.name}` | "
        f"{e.title.split(':', 1)[-1].strip() if ':' in e.title else e.title} |"
        for e in examples)
    return f"""# Examples

The scripts in `examples/` run from a checkout of the repository (pip does not install
them). Each prints what it did, takes `--quick` (a smaller problem) and `--plot DIR`
(its picture as a PNG, with matplotlib), and has a `run(quick=False, plot_dir=None)`
function that `tests/test_examples.py` calls and checks. Every page below shows the
script's description, the output of a run made when this site was built, its
picture(s) and its source.

| example | command | what it does |
| --- | --- | --- |
{rows}

The installed package also has a demo, `python -m scalar_autograd demo` (also the
`scalar-autograd` command): a planar arm of 5, 20 and 50 links driven to a target by
gradient descent, traditionally and compiled, with the speedup table measured live
(`--plot DIR` draws the poses and timings).
"""


# ----------------------------------------------------------------------------- the hooks
def on_config(config: Any, **kwargs: Any) -> Any:
    """Fill the nav's Examples section with one page per example script."""
    pages: list[Any] = [INDEX] + [{e.short_title: e.page} for e in scripts()]

    def expand(items: list[Any]) -> bool:
        for i, item in enumerate(items):
            if isinstance(item, dict):
                for title, value in item.items():
                    if value == INDEX:
                        items[i] = {title: pages}
                        return True
                    if isinstance(value, list) and expand(value):
                        return True
        return False

    if config.get("nav") and not expand(config["nav"]):
        raise PluginError(f"mkdocs.yml's nav must have an entry '{INDEX}' (the Examples "
                          f"section, filled by docs/hooks/examples.py)")
    return config


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    """Run the examples and add their pages and pictures to the site."""
    how = mode()
    examples = scripts()
    run_all(examples, how)
    files.append(File.generated(config, INDEX, content=index_page(examples)))
    for example in examples:
        files.append(File.generated(config, example.page, content=example_page(example, how)))
        for name, data in example.images.items():
            files.append(File.generated(config, f"examples/{name}", content=data))
    return files
