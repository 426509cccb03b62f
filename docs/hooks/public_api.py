"""The public surface the API reference must cover, and the checks that it does.

Used by the build (``docs/hooks/api_check.py`` fails ``mkdocs build`` when a public
name has no docstring or no entry in the rendered API reference) and by the test
suite (``tests/test_docs_api.py``, which checks the same without building the site).

The public surface is every name in ``scalar_autograd.__all__`` plus the public
names of the modules in :data:`PUBLIC_MODULES` (their ``__all__``, or, for a module
without one, the functions and classes it defines whose names do not start with an
underscore), and every public method and property of each public class (inherited
from the package's own base classes included).
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import inspect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "scalar_autograd"

PUBLIC_MODULES: tuple[str, ...] = (
    "scalar_autograd.functional",
    "scalar_autograd.nn",
    "scalar_autograd.geometry",
    "scalar_autograd.vec",
    "scalar_autograd.matrix",
    "scalar_autograd.kinematics",
    "scalar_autograd.losses",
    "scalar_autograd.lsq",
    "scalar_autograd.optim",
    "scalar_autograd.manifolds",
    "scalar_autograd.testing",
    "scalar_autograd.datasets",
    "scalar_autograd.expression",
)
"""Modules whose public names are part of the documented surface."""

OPTIONAL_PUBLIC_MODULES: tuple[str, ...] = ()
"""Public modules checked only when they import (for a module still being written)."""

MISSING_DOCSTRINGS_ALLOWED: frozenset[str] = frozenset()
"""TEMPORARY allow-list: public objects (dotted ``module.qualname``) that may lack a
docstring for now, because they live in files the documentation work could not edit
(runtime/, ir/, backends/, native/, expression.py, __main__.py, __init__.py).
Empty it by writing the docstrings; nothing else should ever be added here."""

_SKIP_ALL = frozenset({"__version__"})


@dataclass
class Entry:
    """One public object: the dotted paths it may be documented under, and its members."""

    name: str
    """How the public surface names it, e.g. ``scalar_autograd.MLP``."""
    obj: Any
    paths: set[str] = field(default_factory=set)
    """Anchors (dotted paths) any one of which documents it: its public names and
    ``module.qualname`` where it is defined (needed where a package's function shadows
    a submodule of the same name, as ``scalar_autograd.lsq.curve_fit``)."""
    members: tuple[str, ...] = ()
    """Public method and property names of a class (documented as ``path.member``)."""


def public_modules() -> list[str]:
    """:data:`PUBLIC_MODULES` plus the optional ones that import."""
    names = list(PUBLIC_MODULES)
    for name in OPTIONAL_PUBLIC_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        names.append(name)
    return names


def public_names(module: ModuleType) -> list[str]:
    """The module's ``__all__``, else the functions and classes it defines publicly."""
    declared = getattr(module, "__all__", None)
    if declared is not None:
        return [n for n in declared if n not in _SKIP_ALL]
    return [n for n, obj in vars(module).items()
            if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", None) == module.__name__]


def _documentable(obj: Any) -> bool:
    """Functions and classes: what carries a docstring of its own (not constants, aliases)."""
    return inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj) or (
        callable(obj) and hasattr(obj, "__doc__") and getattr(obj, "__module__", "")
        .startswith(PACKAGE) and not isinstance(obj, (int, float, str, tuple, frozenset)))


def _raw_member(cls: type, name: str) -> tuple[type, Any] | None:
    """``(defining class, attribute)`` for ``name`` along the MRO, or None."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass, vars(klass)[name]
    return None


def _function_of(attribute: Any) -> Any:
    """The function behind a method, static/class method or property (None otherwise)."""
    if isinstance(attribute, (staticmethod, classmethod)):
        return attribute.__func__
    if isinstance(attribute, property):
        return attribute.fget
    if inspect.isfunction(attribute):
        return attribute
    return None


def class_members(cls: type) -> tuple[str, ...]:
    """Public methods and properties of ``cls`` defined in the package (own or inherited)."""
    if issubclass(cls, enum.Enum):
        return ()
    names = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        found = _raw_member(cls, name)
        if found is None:
            continue
        klass, attribute = found
        if not klass.__module__.startswith(PACKAGE):
            continue
        if _function_of(attribute) is not None:
            names.append(name)
    return tuple(sorted(names))


def entries() -> list[Entry]:
    """Every public object once, with all the dotted paths that may document it."""
    package = importlib.import_module(PACKAGE)
    modules = [importlib.import_module(m) for m in public_modules()]
    by_id: dict[int, Entry] = {}
    order: list[Entry] = []

    def add(path: str, obj: Any) -> None:
        if not _documentable(obj):
            return
        entry = by_id.get(id(obj))
        if entry is None:
            entry = Entry(path, obj, members=class_members(obj) if inspect.isclass(obj) else ())
            entry.paths.add(_canonical(obj))  # where it is defined
            by_id[id(obj)] = entry
            order.append(entry)
        entry.paths.add(path)

    for name in package.__all__:
        if name not in _SKIP_ALL:
            add(f"{PACKAGE}.{name}", getattr(package, name))
    for module in modules:
        for name in public_names(module):
            add(f"{module.__name__}.{name}", getattr(module, name))
    return order


def _canonical(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _members_of(entry: Entry) -> Iterator[tuple[str, Any]]:
    """``(canonical dotted name, function)`` of each public member of a class entry."""
    for name in entry.members:
        found = _raw_member(entry.obj, name)
        if found is not None:
            yield f"{_canonical(found[0])}.{name}", _function_of(found[1])


def _all_missing() -> set[str]:
    missing = set()
    for entry in entries():
        if not (getattr(entry.obj, "__doc__", None) or "").strip():
            missing.add(_canonical(entry.obj))
        missing.update(name for name, function in _members_of(entry)
                       if not (function.__doc__ or "").strip())
    return missing


def missing_docstrings() -> list[str]:
    """Public objects and members without a docstring of their own (minus the allow-list).

    A method that overrides a documented one still needs its own docstring: the API
    reference shows each method's own text. Names are ``module.qualname``.
    """
    return sorted(_all_missing() - MISSING_DOCSTRINGS_ALLOWED)


def stale_allowances() -> list[str]:
    """Allow-list entries that have a docstring now (or no longer exist): remove them."""
    return sorted(MISSING_DOCSTRINGS_ALLOWED - _all_missing())


def undocumented(anchors: Iterable[str]) -> list[str]:
    """Public objects and members with no anchor among ``anchors`` (dotted paths)."""
    present = set(anchors)
    problems = []
    for entry in entries():
        found = sorted(p for p in entry.paths if p in present)
        if not found:
            problems.append(f"{entry.name} (documented under none of {sorted(entry.paths)})")
            continue
        if not entry.members:
            continue
        best = min(found, key=lambda p: sum(f"{p}.{m}" not in present for m in entry.members))
        problems.extend(f"{best}.{m}" for m in entry.members if f"{best}.{m}" not in present)
    return problems


# ------------------------------------------------------------- static view of the API pages

_DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$")
_MEMBERS_OPTION = re.compile(r"^\s+members:\s*(.*)$")


def directives(api_dir: Path) -> Iterator[tuple[str, list[str] | None]]:
    """``(identifier, members or None)`` of every ``::: identifier`` block under ``api_dir``.

    ``members`` is the block's ``members:`` option when it lists names (an inline
    ``[a, b]`` list or the following ``- name`` lines), else None (all public members).
    """
    for page in sorted(api_dir.rglob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            match = _DIRECTIVE.match(line)
            if not match:
                continue
            members: list[str] | None = None
            for option in lines[i + 1:]:
                if not option.startswith(" ") or not option.strip():
                    break
                m = _MEMBERS_OPTION.match(option)
                if m is None:
                    continue
                inline = m.group(1).strip()
                if inline.startswith("["):
                    members = [n.strip() for n in inline.strip("[]").split(",") if n.strip()]
                else:
                    members = []
                    for item in lines[lines.index(option, i) + 1:]:
                        stripped = item.strip()
                        if not stripped.startswith("- "):
                            break
                        members.append(stripped[2:].strip())
            yield match.group(1), members


def _resolve(identifier: str) -> Any:
    parts = identifier.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(identifier)


def _is_submodule(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):
        return False


def static_anchors(api_dir: Path) -> set[str]:
    """The anchors mkdocstrings renders for the ``:::`` blocks under ``api_dir``.

    Mirrors the handler options in ``mkdocs.yml``: a module block renders its public
    names (``__all__``), a class block its public methods and properties (inherited
    ones included), each under the block's identifier.
    """
    anchors: set[str] = set()
    for identifier, members in directives(api_dir):
        obj = _resolve(identifier)
        anchors.add(identifier)
        if inspect.ismodule(obj):
            names = members if members is not None else public_names(obj)
            for name in names:
                if _is_submodule(f"{identifier}.{name}"):
                    continue  # shadowed by a submodule: mkdocstrings does not render it
                anchors.add(f"{identifier}.{name}")
                child = getattr(obj, name)
                if inspect.isclass(child):
                    anchors.update(f"{identifier}.{name}.{m}" for m in class_members(child))
        elif inspect.isclass(obj):
            names = members if members is not None else list(class_members(obj))
            anchors.update(f"{identifier}.{m}" for m in names)
    return anchors
