"""Every ```python block of the documentation pages runs, so the docs cannot rot.

The blocks of one page run in order in one namespace, as a reader would type them
into one session: a later block may use what an earlier one defined. A block preceded
by the line ``<!-- no-test -->`` (a fragment, or one that needs a cluster) is skipped.
Each page runs in a temporary working directory, and leaves the op table (custom
ops) and the disk-cache setting as it found them. The pages under ``docs/`` are the
hand-written ones; the pages the build generates (examples, benchmark results) show
scripts that ``tests/test_examples.py`` runs.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

import scalar_autograd as sa
from scalar_autograd import ops

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"
SKIP_MARKER = "<!-- no-test -->"

_FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")


def code_blocks(text: str) -> list[tuple[int, str, str, bool]]:
    """``(line number, language, code, skipped)`` of every fenced block in ``text``."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match.group("indent"), match.group("fence")
        info = match.group("info").strip()
        language = info.split()[0].lstrip(".{").rstrip("}") if info else ""
        previous = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()),
                        "")
        body = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence)
                                      and lines[j].strip().strip(fence[0]) == ""):
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            j += 1
        blocks.append((i + 1, language, "\n".join(body) + "\n", previous == SKIP_MARKER))
        i = j + 1
    return blocks


def pages() -> list[Path]:
    """The hand-written pages (the hooks' own files excluded)."""
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)


def _python_pages() -> list[Path]:
    return [p for p in pages() if any(lang in ("python", "py") and not skipped
                                      for _, lang, _, skipped in code_blocks(
                                          p.read_text(encoding="utf-8")))]


@pytest.mark.parametrize("page", _python_pages(),
                         ids=lambda p: str(p.relative_to(DOCS)))
def test_python_blocks_of_the_page_run(page: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    custom_ops, cache_dir = set(ops._CUSTOM), sa.get_cache_dir()
    try:
        for line, language, code, skipped in code_blocks(page.read_text(encoding="utf-8")):
            if language not in ("python", "py") or skipped:
                continue
            where = f"{page.relative_to(DOCS.parent)}:{line}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a page may show a warning on purpose
                try:
                    exec(compile(code, where, "exec"), namespace)  # noqa: S102
                except Exception as exc:  # name the block that failed
                    raise AssertionError(f"the ```python block at {where} raised "
                                         f"{type(exc).__name__}: {exc}") from exc
    finally:  # leave the process as found: the op table, the disk cache setting
        ops._forget_custom([name for name in ops._CUSTOM if name not in custom_ops])
        sa.set_cache_dir(cache_dir)


def test_skip_markers_sit_right_before_python_blocks() -> None:
    """A skip marker must sit right before a python block (not silently skip another)."""
    for page in pages():
        text = page.read_text(encoding="utf-8")
        markers = text.count(SKIP_MARKER)
        skipped = sum(1 for _, lang, _, s in code_blocks(text) if s and lang in ("python", "py"))
        assert markers == skipped, f"{page}: {SKIP_MARKER} must come right before a ```python block"


def test_getting_started_has_the_readme_set_up_commands() -> None:
    """The two commands are copied from the README's "Set-up" section: keep them equal."""
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## Set-up"):]
    section = section[:section.index("\n## ", 1)]
    (readme_commands,) = [code for _, lang, code, _ in code_blocks(section) if lang == "bash"]
    page = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    assert readme_commands in [code for _, lang, code, _ in code_blocks(page) if lang == "bash"]


def test_code_block_reader() -> None:
    text = "x\n<!-- no-test -->\n```python\na = 1\n```\n\n    ```py\n    b = 2\n    ```\n"
    assert code_blocks(text) == [(3, "python", "a = 1\n", True), (7, "py", "b = 2\n", False)]
