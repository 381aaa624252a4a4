"""Test helpers for sinks."""

from __future__ import annotations

from agentledger import Ledger


def drain(ledger: Ledger) -> None:
    """Flush, then wait until the sinks have seen every event.

    Without a store, ``flush()`` returns once rows are *counted*, which can be just before
    the writer thread hands them to the sinks; ``totals()`` takes the ingest lock, so it
    returns only after that hand-off has finished.
    """
    assert ledger.flush()
    ledger.totals()
