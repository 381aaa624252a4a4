"""README.md starts with the two commands, and CI runs exactly the test one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.*?)\n```", text, re.DOTALL)


def test_readme_gives_install_and_demo_first() -> None:
    """The first command installs and runs the demo on the embedded default."""
    first = _commands()[0]
    assert "pip install -e ." in first
    assert "agentledger demo" in first


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """.ci/run extracts the README's second command verbatim and runs it."""
    second = _commands()[1]
    assert "pytest" in second
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    pattern = re.search(r"grep -m1 -E '(.*?)' README.md", ci)
    assert pattern is not None
    readme_lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    matches = [line for line in readme_lines if re.match(pattern.group(1), line)]
    assert matches == [second]
