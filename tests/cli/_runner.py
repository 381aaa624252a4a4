"""Run the CLI in-process with a fixed 120-column, colourless console (shared by CLI tests)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from unittest import mock

from rich.console import Console

from agentledger.cli import main


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_cli(*args: str, tty: bool = False) -> Result:
    """``agentledger ARGS`` through ``main``, capturing what every command module prints."""
    from agentledger.cli import _app, _db, _live, _report

    out, err = (_Terminal() if tty else io.StringIO()), io.StringIO()
    fixed = Console(file=out, width=120, no_color=True, force_terminal=False)
    errors = Console(file=err, width=120, no_color=True, soft_wrap=True)
    patches = [mock.patch("sys.stdout", out), mock.patch("sys.stderr", err)]
    for module in (_app, _db, _live, _report):
        if hasattr(module, "console"):
            patches.append(mock.patch.object(module, "console", fixed))
        if hasattr(module, "err"):
            patches.append(mock.patch.object(module, "err", errors))
    for patch in patches:
        patch.start()
    try:
        code = main(list(args))
    finally:
        for patch in reversed(patches):
            patch.stop()
    return Result(code, out.getvalue(), err.getvalue())
