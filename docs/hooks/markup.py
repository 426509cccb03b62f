"""Docstring markup shared by the hooks: Sphinx roles to optional cross-references.

The package's docstrings name other objects with Sphinx roles (``:func:`name```,
``:class:`~pkg.Name```, ``:meth:`title <target>```). On the site each becomes an
*optional* autorefs cross-reference: a link when the target is documented in the API
reference, plain code otherwise, never a broken-link warning.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

ROLE = re.compile(
    r":(?:func|class|mod|meth|attr|data|exc|obj|const):"
    r"`(?:(?P<title>[^`<]*?)\s*<(?P<explicit>~?[\w.]+)>"
    r"|(?P<tilde>~)?(?P<target>[\w.]+)(?:\(\))?)`")
"""A Sphinx cross-reference role, in its three spellings."""


def autoref(identifier: str, shown: str) -> str:
    """An optional autorefs reference to ``identifier`` showing ``shown`` as code."""
    return (f'<autoref identifier="{html.escape(identifier)}" optional>'
            f"<code>{html.escape(shown)}</code></autoref>")


def replace_roles(text: str, resolve: Callable[[str], str] = lambda target: target) -> str:
    """``text`` with every Sphinx role made an optional cross-reference.

    Args:
        text: docstring text.
        resolve: maps a role's target (as written) to the dotted identifier to look up.
    """

    def role(match: re.Match[str]) -> str:
        if match.group("explicit"):
            target, shown = match.group("explicit").lstrip("~"), match.group("title")
        else:
            target = match.group("target")
            shown = target.rsplit(".", 1)[-1] if match.group("tilde") else target
        return autoref(resolve(target), shown)

    return ROLE.sub(role, text)
