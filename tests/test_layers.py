"""The package's layers: every import points down the layer order, and none forms a cycle.

Every module of ``src/scalar_autograd`` is parsed with :mod:`ast` (nothing is imported),
and every import statement in it counts, at module level or inside a function: a lazy
import is still a dependency. Imports under ``if TYPE_CHECKING:`` count for the
direction of the layers but not for cycles (they never run). Layers, bottom up:

0. core: ``ops``, ``numerics``, ``value``, ``graph``, ``modes``, ``tracing``, and
   ``validation`` (argument checks shared by everything above)
1. ``ir``: programs, the builder, tracing to IR, autodiff, passes
2. ``native``: the LLVM-text emitter, engines, the ABI
3. ``backends``: interpreter, python, llvm, vm
4. ``runtime``: compile, cache, CompiledFunction, grouping, ``sa.jit``, compiled check modes
5. ``testing`` (``check_grads``: eager and compiled modes), ``optim``, ``lsq``,
   ``manifolds`` (parameter blocks on manifolds, used by ``optim`` and ``lsq``)
6. the domain modules (``vec``, ``geometry``, ``nn``, ``losses``, ``matrix``,
   ``kinematics``, ``functional``, ``datasets``, ``expression``), script helpers (``console``,
   ``plotting``, ``demo``), ``__main__`` and the package ``__init__`` (re-exports only)

A module may import its own layer (without cycles) and any layer below it. Packages'
``__init__`` modules belong to their package's layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scalar_autograd

PACKAGE = "scalar_autograd"
ROOT = Path(scalar_autograd.__file__).resolve().parent

LAYERS: dict[str, int] = {
    # 0 core
    "ops": 0, "numerics": 0, "value": 0, "graph": 0, "modes": 0, "tracing": 0,
    "validation": 0, "progress": 0,
    # 1 ir, 2 native, 3 backends, 4 runtime
    "ir": 1, "native": 2, "backends": 3, "runtime": 4,
    # 5 tools and solvers on the runtime
    "testing": 5, "optim": 5, "lsq": 5, "manifolds": 5,
    # 6 domain modules and the package front
    "vec": 6, "geometry": 6, "nn": 6, "losses": 6, "matrix": 6, "kinematics": 6,
    "functional": 6, "datasets": 6, "console": 6, "plotting": 6, "demo": 6, "expression": 6,
    "__main__": 6, "__init__": 6,
}
"""Layer of every top-level module or subpackage of ``scalar_autograd``."""

KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()
"""(importer, imported) pairs that break the rules today, each owned by someone else."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join([PACKAGE, *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in ``tree``, with whether it is under ``if TYPE_CHECKING:``."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, type_only = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, type_only))
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend((child, True) for child in node.body)
            stack.extend((child, type_only) for child in node.orelse)
            continue
        stack.extend((child, type_only) for child in ast.iter_child_nodes(node))
    return found


def import_graph(*, runtime_only: bool = False) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its body).

    With ``runtime_only``, imports under ``if TYPE_CHECKING:`` (annotations only, never
    executed) are left out.
    """
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for node, type_only in _imports(tree):
            if type_only and runtime_only:
                continue
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                base = _resolve(name, path.name == "__init__.py", node)
                # ``from pkg import mod`` imports pkg.mod when that is a module
                candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
                              else base for alias in node.names]
            for target in candidates:
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    # the longest prefix that is one of our modules
                    while target not in modules and "." in target:
                        target = target.rsplit(".", 1)[0]
                    if target in modules and target != name:
                        targets.add(target)
        graph[name] = targets
    return graph


def layer_of(module: str) -> int:
    """The layer of ``scalar_autograd.<top>...``; the package itself is the front."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYERS:
        raise KeyError(f"module {module} has no layer: add {top!r} to LAYERS")
    return LAYERS[top]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _short(module: str) -> str:
    return module.removeprefix(PACKAGE + ".")


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        layer_of(module)


def test_imports_point_down_the_layers() -> None:
    graph = import_graph()
    upward = sorted(
        (_short(a), _short(b)) for a, targets in graph.items() for b in targets
        if layer_of(b) > layer_of(a) and (_short(a), _short(b)) not in KNOWN_EXCEPTIONS
    )
    assert not upward, "imports that point up the layer order (importer -> imported):\n" + \
        "\n".join(f"  {a} (layer {layer_of(PACKAGE + '.' + a)}) -> {b} "
                  f"(layer {layer_of(PACKAGE + '.' + b)})" for a, b in upward)


def test_no_import_cycles() -> None:
    """Among the imports that run (an annotation-only import cannot deadlock or
    half-initialise a module, and ``if TYPE_CHECKING:`` is how a type names a module
    of its own layer that imports it)."""
    graph = import_graph(runtime_only=True)
    pruned = {a: {b for b in targets if (_short(a), _short(b)) not in KNOWN_EXCEPTIONS}
              for a, targets in graph.items()}
    cycles = _cycles(pruned)
    assert not cycles, "import cycles:\n" + "\n".join(
        "  " + ", ".join(_short(m) for m in c) for c in cycles)


def test_known_exceptions_still_exist() -> None:
    """An exception that no longer occurs must leave the list."""
    graph = import_graph()
    present = {(_short(a), _short(b)) for a, targets in graph.items() for b in targets}
    assert KNOWN_EXCEPTIONS <= present, sorted(KNOWN_EXCEPTIONS - present)


@pytest.mark.parametrize("source, expected", [
    ("from scalar_autograd.ir import program", "scalar_autograd.ir.program"),
    ("from . import program", "scalar_autograd.ir.program"),
    ("from ..backends import llvm", "scalar_autograd.backends.llvm"),
    ("def f():\n    import scalar_autograd.native.engine", "scalar_autograd.native.engine"),
    ("if TYPE_CHECKING:\n    from scalar_autograd.backends.llvm import x",
     "scalar_autograd.backends.llvm"),
])
def test_the_graph_sees_every_kind_of_import(source: str, expected: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", _fake_tree(tmp_path, source))
    assert expected in import_graph()["scalar_autograd.ir.probe"]


def test_type_checking_imports_do_not_count_for_cycles(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import program"
    monkeypatch.setattr(f"{__name__}.ROOT", _fake_tree(tmp_path, source))
    assert "scalar_autograd.ir.program" in import_graph()["scalar_autograd.ir.probe"]
    assert not import_graph(runtime_only=True)["scalar_autograd.ir.probe"]


def _fake_tree(tmp_path: Path, source: str) -> Path:
    root = tmp_path / PACKAGE
    for sub in ("ir", "backends", "native"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "ir" / "program.py").write_text("")
    (root / "backends" / "llvm.py").write_text("")
    (root / "native" / "engine.py").write_text("")
    (root / "ir" / "probe.py").write_text(source + "\n")
    return root
