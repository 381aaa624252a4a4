"""MemoryStore: idempotent like the SQL stores, and fails on demand for tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agentledger import Event, StoreError, StoreUnavailable
from agentledger.store import MemoryStore, Store, open_store

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def make_row(i: int = 0) -> tuple[object, ...]:
    return Event(
        event_id=str(uuid.uuid4()),
        trace_id="t",
        span_id="s",
        parent_id=None,
        started_at=T0 + timedelta(seconds=i),
        duration_ms=1.0,
        kind="llm",
        name="m",
        cost_usd=Decimal("0.001"),
        cost_source="reported",
    ).to_row()


def test_memory_store_is_a_store() -> None:
    """MemoryStore satisfies the Store protocol and open_store('memory://') returns one."""
    assert isinstance(MemoryStore(), Store)
    assert isinstance(open_store("memory://"), MemoryStore)


def test_write_returns_new_rows_and_replay_inserts_nothing() -> None:
    """Writing a batch inserts each row once; replaying it returns 0 and changes nothing."""
    store = MemoryStore()
    rows = [make_row(i) for i in range(5)]
    assert store.write(rows) == 5
    before = store.events()
    assert store.write(rows) == 0
    assert store.count() == 5
    assert store.events() == before


def test_mixed_batch_inserts_only_new() -> None:
    """A batch mixing stored and new ids inserts only the new ones."""
    store = MemoryStore()
    old = [make_row(i) for i in range(3)]
    store.write(old)
    new = [make_row(10 + i) for i in range(4)]
    assert store.write(old + new) == 4
    assert store.count() == 7


def test_duplicate_id_keeps_first_row() -> None:
    """A second row with a known event id does not overwrite the first."""
    store = MemoryStore()
    first = make_row()
    clash = (first[0], *first[1:7], "other-name", *first[8:])
    store.write([first])
    store.write([clash])
    (event,) = store.events()
    assert event.name == "m"


def test_events_are_oldest_first_and_limited() -> None:
    """events() orders by started_at and honours limit."""
    store = MemoryStore()
    rows = [make_row(i) for i in range(4)]
    store.write(list(reversed(rows)))
    assert [e.event_id for e in store.events()] == [r[0] for r in rows]
    assert [e.event_id for e in store.events(limit=2)] == [r[0] for r in rows[:2]]


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(StoreUnavailable("down"), id="unavailable"),
        pytest.param(StoreError("refused"), id="store-error"),
        pytest.param(RuntimeError("boom"), id="arbitrary"),
    ],
)
def test_fail_with_makes_write_raise_and_store_nothing(error: BaseException) -> None:
    """While fail_with is set, write() raises it and neither stores rows nor counts a write."""
    store = MemoryStore()
    store.fail_with = error
    with pytest.raises(type(error)):
        store.write([make_row()])
    assert store.count() == 0
    assert store.writes == 0


def test_clearing_fail_with_recovers() -> None:
    """After fail_with is cleared, the same batch writes normally."""
    store = MemoryStore()
    rows = [make_row(i) for i in range(3)]
    store.fail_with = StoreUnavailable("down")
    with pytest.raises(StoreUnavailable):
        store.write(rows)
    store.fail_with = None
    assert store.write(rows) == 3
    assert store.writes == 1
