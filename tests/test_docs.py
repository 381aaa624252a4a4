"""Every ```python block in README.md and docs/*.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _examples() -> list[object]:
    cases = []
    for path in DOCS:
        for n, match in enumerate(BLOCK.finditer(path.read_text(encoding="utf-8")), start=1):
            cases.append(pytest.param(match.group(1), id=f"{path.name}-{n}"))
    return cases


@pytest.mark.parametrize("source", _examples())
def test_doc_example_runs(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example runs without error in a fresh directory."""
    monkeypatch.chdir(tmp_path)
    exec(compile(source, "<doc example>", "exec"), {"__name__": "__doc_example__"})


def test_docs_have_examples() -> None:
    """The guide and the conventions pages do carry runnable examples."""
    names = {param.id.rsplit("-", 1)[0] for param in _examples()}  # type: ignore[attr-defined]
    assert {"README.md", "guide.md", "tokens.md", "seed-000.md"} <= names
