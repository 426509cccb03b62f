"""Griffe extension for the API reference: read the package's docstrings as they are written.

Loaded by mkdocstrings (``extensions:`` in ``mkdocs.yml``). Two rewrites of the raw
docstring text, before griffe parses it as a Google-style docstring:

* ``Example:`` (the singular, which the package's docstrings use) becomes
  ``Examples:``, the Google section griffe renders as doctest code blocks; griffe would
  otherwise render it as an admonition whose ``>>>`` lines are Markdown block quotes.
  ``Example (what it shows):`` becomes ``Examples:`` whose first line is the title.
* A paragraph ending in reStructuredText's ``::`` ends in ``:``; the indented block
  after it is a code block in Markdown too.
* Sphinx roles (``:func:`name```, ``:class:``, ``:meth:``, ...) become optional
  cross-references (:mod:`markup`): a link when the target is in the API reference,
  plain code otherwise (never a warning).

And one pruning: a public module (``public_api.PUBLIC_MODULES``) that declares
``__all__`` shows only those names on its page, as ``from module import *`` would
give them; the helpers it defines for the package's own use (say
``manifolds.resolve_blocks``) stay out of the reference. Submodules are kept.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import griffe

sys.path.insert(0, str(Path(__file__).resolve().parent))
import public_api  # noqa: E402
from markup import replace_roles  # noqa: E402

_LITERAL = re.compile(r"^(?P<text>[ \t]*\S.*?)::[ \t]*$", re.MULTILINE)
_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example(?: \((?P<title>.*)\))?:[ \t]*$", re.MULTILINE)


def _members(obj: griffe.Object) -> Any:
    """``obj``'s members, inherited ones included when its bases resolve."""
    try:
        return obj.all_members
    except Exception:  # an unresolvable base class: its own members only
        return obj.members


def _identifier(obj: griffe.Object, target: str) -> str:
    """The dotted path autorefs should look up for ``target`` named in ``obj``'s docstring."""
    if target.startswith("scalar_autograd"):
        return target
    module = obj if obj.is_module else obj.module
    head = target.split(".", 1)[0]
    if obj.is_class and head in _members(obj):  # a method named from its class
        return f"{obj.path}.{target}"
    parent = obj.parent
    if parent is not None and parent.is_class and head in _members(parent):
        return f"{parent.path}.{target}"
    return f"{module.path}.{target}"


def rewrite(text: str, obj: griffe.Object) -> str:
    """``text`` with ``Example:`` made ``Examples:`` and Sphinx roles made autorefs."""

    def example(match: re.Match[str]) -> str:
        indent, title = match.group("indent"), match.group("title")
        if title is None:
            return f"{indent}Examples:"
        return f"{indent}Examples:\n{indent}    {title[:1].upper()}{title[1:]}:\n"

    text = _EXAMPLE.sub(example, text)
    text = _LITERAL.sub(r"\g<text>:", text)
    return replace_roles(text, lambda target: _identifier(obj, target))


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


def prune_to_exports(pkg: griffe.Module) -> None:
    """Drop from each public module with ``__all__`` the members it does not export."""
    modules = [*public_api.PUBLIC_MODULES, *public_api.OPTIONAL_PUBLIC_MODULES]
    for path in modules:
        relative = path.removeprefix(f"{pkg.path}.")
        try:
            module = pkg[relative]
        except KeyError:
            continue  # an optional module that is not there
        if module.exports is None:
            continue
        exported = {str(name) for name in module.exports}
        for name, member in list(module.members.items()):
            if name in exported or name.startswith("_"):
                continue
            # an import (an alias: never resolved here) or a definition, not a submodule
            if member.is_alias or not member.is_module:
                del module.members[name]


class DocstringRewrites(griffe.Extension):
    """Apply :func:`rewrite` and :func:`prune_to_exports` to a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the docstrings of ``pkg`` and everything in it, before they are parsed."""
        if pkg.path != public_api.PACKAGE:
            return
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, obj)
        prune_to_exports(pkg)
