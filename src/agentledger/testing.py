"""Test doubles for users' own tests: no database needed.

::

    from agentledger.testing import capture_events, memory_ledger

    def test_my_bot_records_its_call():
        with memory_ledger() as ledger, capture_events(ledger) as events:
            my_bot.answer("hi", ledger=ledger)
        assert events[0].model == "gpt-4o"
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, overload

from .events import Event
from .ledger import Ledger
from .store.memory import MemoryStore

__all__ = ["CapturedEvents", "MemoryStore", "capture_events", "memory_ledger"]


def memory_ledger(**options: Any) -> Ledger:
    """A ledger over a fresh :class:`MemoryStore` (``strict=True`` unless told otherwise)."""
    options.setdefault("strict", True)
    options.setdefault("handle_signals", False)
    return Ledger(store=MemoryStore(), **options)


class CapturedEvents(Sequence[Event]):
    """The events a ledger recorded while captured; reading drains the ledger first."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._events: list[Event] = []

    def _sink(self, batch: Sequence[Event]) -> None:
        self._events.extend(batch)

    def _sync(self) -> list[Event]:
        self._ledger._ingest()
        return self._events

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        return self._sync()[index]

    def __len__(self) -> int:
        return len(self._sync())

    def __repr__(self) -> str:
        return f"CapturedEvents({self._sync()!r})"


@contextmanager
def capture_events(ledger: Ledger | None = None) -> Iterator[CapturedEvents]:
    """Collect every event ``ledger`` (default: the default ledger) records in the block."""
    if ledger is None:
        from ._default import get_ledger

        ledger = get_ledger()
    captured = CapturedEvents(ledger)
    ledger._ingest()  # what was recorded before the block is not ours
    ledger.add_sink(captured._sink)
    try:
        yield captured
    finally:
        ledger._ingest()
        ledger.remove_sink(captured._sink)
