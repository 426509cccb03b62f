"""No undocumented public name: every public object has a docstring and an API-reference entry.

The public surface (``scalar_autograd.__all__``, the public modules' names and their
classes' public methods and properties) is defined in ``docs/hooks/public_api.py``,
which the documentation build uses too (``docs/hooks/api_check.py`` fails
``mkdocs build`` on the rendered pages). This test checks the same without building
the site: docstrings by introspection, and the ``:::`` blocks of ``docs/api/*.md``
read the way mkdocstrings renders them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def public_api() -> ModuleType:
    spec = importlib.util.spec_from_file_location("public_api", ROOT / "docs/hooks/public_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_a_docstring(public_api: ModuleType) -> None:
    missing = public_api.missing_docstrings()
    assert not missing, "write a docstring for:\n  " + "\n  ".join(missing)


def test_the_allow_list_holds_only_undocumented_names(public_api: ModuleType) -> None:
    stale = public_api.stale_allowances()
    assert not stale, ("documented now (or gone): remove from MISSING_DOCSTRINGS_ALLOWED:\n  "
                       + "\n  ".join(stale))


def test_every_public_name_is_in_the_api_reference(public_api: ModuleType) -> None:
    anchors = public_api.static_anchors(ROOT / "docs/api")
    problems = public_api.undocumented(anchors)
    assert not problems, "add to docs/api/*.md:\n  " + "\n  ".join(problems)


def test_the_surface_covers_all_and_the_public_modules(public_api: ModuleType) -> None:
    import scalar_autograd as sa

    entries = public_api.entries()
    names = {path for entry in entries for path in entry.paths}
    for name in sa.__all__:
        if name != "__version__" and public_api._documentable(getattr(sa, name)):
            assert f"scalar_autograd.{name}" in names, name
    for module in ("nn", "geometry", "vec", "kinematics", "losses", "lsq", "optim",
                   "manifolds", "testing"):
        assert f"scalar_autograd.{module}" in public_api.public_modules(), module
    value = next(entry for entry in entries if entry.obj is sa.Value)
    assert {"backward", "zero_grad", "sin", "where"} <= set(value.members)


def test_the_static_reading_of_the_api_pages_sees_what_they_render(
        public_api: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text(
        "# x\n\n::: scalar_autograd.nn\n    options:\n      members:\n        - MLP\n\n"
        "::: scalar_autograd.Value\n\n::: scalar_autograd.lsq\n", encoding="utf-8")
    anchors = public_api.static_anchors(tmp_path)
    assert "scalar_autograd.nn.MLP" in anchors and "scalar_autograd.nn.MLP.parameters" in anchors
    assert "scalar_autograd.nn.Layer" not in anchors  # not in the members list
    assert "scalar_autograd.Value.backward" in anchors
    # a function named like a submodule of its package is not rendered by a module block
    assert "scalar_autograd.lsq.curve_fit" not in anchors
    assert "scalar_autograd.lsq.nonlinear_least_squares" in anchors
