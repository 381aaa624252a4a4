"""What a ledger stored, read back after a flush (shared by the integration tests)."""

from __future__ import annotations

from agentledger import Event, Ledger


def events(ledger: Ledger) -> list[Event]:
    assert ledger.flush()
    assert ledger.store is not None
    return ledger.store.events()


def only_event(ledger: Ledger) -> Event:
    evs = events(ledger)
    assert len(evs) == 1, evs
    return evs[0]
