"""MkDocs hook: the operations-and-conventions page, generated as the README's is.

``docs/conventions.md`` holds two markers, replaced at build time:

* ``<!-- readme-section: Operations and conventions -->``: the prose of that README
  section (the conventions at kinks), up to the README's own table;
* ``<!-- ops-table -->``: the table rendered by ``tools/gen_ops_table.py`` from the
  op table (``scalar_autograd.ops.OPS``), the generator that writes the README's table
  (``tests/test_ops_readme.py`` keeps that one fresh). Nothing is copied by hand, so
  the page cannot drift from the op table.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
PAGE = "conventions.md"
TABLE_MARKER = "<!-- ops-table -->"
SECTION_MARKER = "<!-- readme-section: Operations and conventions -->"
SECTION_HEADING = "## Operations and conventions"


def generator() -> ModuleType:
    """``tools/gen_ops_table.py``, loaded as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("gen_ops_table", ROOT / "tools/gen_ops_table.py")
    if spec is None or spec.loader is None:
        raise PluginError("cannot load tools/gen_ops_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_prose(gen: ModuleType) -> str:
    """The README's "Operations and conventions" section, from its heading to its table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.find(SECTION_HEADING)
    end = text.find(gen.START, start)
    if start < 0 or end < 0:
        raise PluginError(f"README.md must contain {SECTION_HEADING!r} followed by "
                          f"{gen.START}: docs/hooks/ops_table.py takes the conventions from it")
    return text[start + len(SECTION_HEADING):end].strip() + "\n"


def render_page(markdown: str) -> str:
    """``markdown`` with both markers replaced (an error if either is missing)."""
    gen = generator()
    for marker in (SECTION_MARKER, TABLE_MARKER):
        if marker not in markdown:
            raise PluginError(f"docs/{PAGE} must contain {marker}")
    markdown = markdown.replace(SECTION_MARKER, readme_prose(gen))
    return markdown.replace(TABLE_MARKER, gen.render())


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Fill in the conventions page; every other page passes through."""
    if page.file.src_uri != PAGE:
        return markdown
    return render_page(markdown)
