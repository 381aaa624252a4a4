"""The ``agentledger`` command line: ``agentledger --help`` explains every command."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``agentledger`` script; returns the exit code."""
    from ._app import run

    return run(sys.argv[1:] if argv is None else argv)
