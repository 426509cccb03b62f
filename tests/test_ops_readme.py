"""The README's operations table is generated from the op table and must be up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from scalar_autograd.ops import OPS

ROOT = Path(__file__).resolve().parent.parent


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_ops_table", ROOT / "tools/gen_ops_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_operations_table_is_up_to_date() -> None:
    gen = _generator()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert gen.START in text and gen.END in text
    assert gen.rewrite(text) == text, "README is stale: run python tools/gen_ops_table.py"


def test_readme_table_has_a_row_per_op_and_states_the_conventions() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Operations and conventions"):]
    for op in OPS:
        assert f"| `{op.name}` |" in section, op.name
    for phrase in ("abs'(0) = 0", "relu'(0) = 0", "0.5/0.5", "derivative 0",
                   "floored modulo", "-floor(a/b)", "half away from zero"):
        assert phrase in section, phrase


def test_generator_rewrites_only_the_marked_block(tmp_path: Path) -> None:
    gen = _generator()
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{gen.START}\nold table\n{gen.END}\nafter\n", encoding="utf-8")
    assert gen.main(["--check", "--readme", str(readme)]) == 1
    assert gen.main(["--readme", str(readme)]) == 0
    new = readme.read_text(encoding="utf-8")
    assert new.startswith(f"before\n{gen.START}\n| op |") and new.endswith(f"{gen.END}\nafter\n")
    assert "old table" not in new
    assert gen.main(["--check", "--readme", str(readme)]) == 0
