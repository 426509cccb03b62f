"""MkDocs hook: fail the build when a public name is undocumented.

Two checks over the public surface defined in :mod:`public_api`
(``scalar_autograd.__all__``, the public modules' names, their classes' public
methods and properties):

* each has a docstring of its own (names in ``public_api.MISSING_DOCSTRINGS_ALLOWED``
  excepted, temporarily);
* each appears in the API reference as rendered: the anchors (``id="scalar_autograd..."``)
  mkdocstrings wrote into the pages under ``api/`` are collected while the pages are
  built and compared at the end.

Either failure stops ``mkdocs build`` with the list of names to document.

It also writes the index of ``scalar_autograd.__all__`` into ``api/index.md`` (at
the marker ``<!-- public-api-index -->``): every top-level name, what it is, its
docstring's first line and a link to where it is documented.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import public_api  # noqa: E402
from markup import replace_roles  # noqa: E402

INDEX_PAGE = "api/index.md"
INDEX_MARKER = "<!-- public-api-index -->"
API_DIR = Path(__file__).resolve().parents[1] / "api"

_ANCHOR = re.compile(r'\bid="(scalar_autograd(?:\.\w+)*)"')
_anchors: set[str] = set()


def on_pre_build(config: Any, **kwargs: Any) -> None:
    """Start with no anchors (``mkdocs serve`` rebuilds in one process); check docstrings."""
    _anchors.clear()
    missing = public_api.missing_docstrings()
    if missing:
        raise PluginError("public names without a docstring (write one; see "
                          "docs/hooks/public_api.py):\n  " + "\n  ".join(missing))
    stale = public_api.stale_allowances()
    if stale:
        raise PluginError("remove from MISSING_DOCSTRINGS_ALLOWED in docs/hooks/public_api.py "
                          "(documented now, or gone):\n  " + "\n  ".join(stale))


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        if issubclass(obj, Warning):
            return "warning"
        if issubclass(obj, BaseException):
            return "exception"
        return "class"
    if inspect.isfunction(obj) or callable(obj):
        return "function"
    return "type alias" if hasattr(obj, "__origin__") or hasattr(obj, "__args__") else "constant"


def index_table() -> str:
    """The markdown table of ``scalar_autograd.__all__``, linked to the API reference."""
    package = importlib.import_module(public_api.PACKAGE)
    anchors = public_api.static_anchors(API_DIR)
    by_id = {id(e.obj): e for e in public_api.entries()}
    rows = ["| name | kind | summary |", "| --- | --- | --- |"]
    for name in sorted(package.__all__, key=lambda n: (n.lstrip("_").lower(), n)):
        obj = getattr(package, name)
        entry = by_id.get(id(obj))
        paths = sorted(p for p in (entry.paths if entry else {f"scalar_autograd.{name}"})
                       if p in anchors)
        label = f"`sa.{name}`"
        link = f"[{label}][{paths[0]}]" if paths else label
        if name == "__version__":
            summary, kind = f"the package version, `{obj}`", "constant"
        else:
            doc = inspect.getdoc(obj) if entry is not None else None
            summary = (doc or "").strip().split("\n\n")[0].replace("\n", " ")
            summary = replace_roles(summary).replace("|", "\\|")
            kind = _kind(obj)
        rows.append(f"| {link} | {kind} | {summary} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Write the index of ``scalar_autograd.__all__`` into the API reference's first page."""
    if page.file.src_uri != INDEX_PAGE:
        return markdown
    if INDEX_MARKER not in markdown:
        raise PluginError(f"docs/{INDEX_PAGE} must contain {INDEX_MARKER}")
    return markdown.replace(INDEX_MARKER, index_table())


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """Collect the anchors of the API reference pages."""
    if page.file.src_uri.startswith("api/"):
        _anchors.update(_ANCHOR.findall(html))
    return html


def on_post_build(config: Any, **kwargs: Any) -> None:
    """Every public object and member must have been rendered somewhere under ``api/``."""
    problems = public_api.undocumented(_anchors)
    if problems:
        raise PluginError("public names missing from the API reference (add a ':::' block "
                          "under docs/api/):\n  " + "\n  ".join(problems))
