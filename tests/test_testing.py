"""agentledger.testing: memory_ledger and capture_events work as documented."""

from __future__ import annotations

import pytest

from agentledger import InvalidEvent, Ledger, get_ledger
from agentledger.testing import CapturedEvents, MemoryStore, capture_events, memory_ledger


def test_memory_ledger_is_a_ledger_over_a_fresh_memory_store():
    """memory_ledger() gives a Ledger over its own MemoryStore."""
    a, b = memory_ledger(), memory_ledger()
    assert isinstance(a, Ledger)
    assert isinstance(a.store, MemoryStore)
    assert a.store is not b.store
    a.record_llm("gpt-4o", 1, 1)
    assert a.flush()
    assert a.store.count() == 1
    assert b.store.count() == 0
    a.close()
    b.close()


def test_memory_ledger_is_strict_by_default():
    """memory_ledger() is strict unless told otherwise."""
    ledger = memory_ledger()
    assert ledger.strict is True
    with pytest.raises(InvalidEvent):
        ledger.record_llm("gpt-4o", -1, 1)
    ledger.close()


def test_memory_ledger_strict_false_is_fail_open():
    """memory_ledger(strict=False) rejects quietly."""
    ledger = memory_ledger(strict=False)
    assert ledger.record_llm("gpt-4o", -1, 1) is None
    assert ledger.stats().rejected == 1
    ledger.close()


def test_memory_ledger_passes_options():
    """Other options reach the Ledger."""
    ledger = memory_ledger(durability="sync")
    assert ledger.durability == "sync"
    ledger.record_tool("t")
    assert ledger.store.count() == 1  # written at once
    ledger.close()


def test_capture_events_collects_only_events_of_the_block():
    """capture_events sees what is recorded inside the block, not before or after."""
    ledger = memory_ledger()
    ledger.record_tool("before")
    with capture_events(ledger) as events:
        assert isinstance(events, CapturedEvents)
        ledger.record_llm("gpt-4o", 10, 5, bot_id="b")
        ledger.record_tool("inside")
        assert len(events) == 2  # reading drains the ledger first
        assert events[0].model == "gpt-4o"
    ledger.record_tool("after")
    assert [e.name for e in events] == ["gpt-4o", "inside"]
    assert [e.name for e in events[0:1]] == ["gpt-4o"]
    assert "inside" in repr(events)
    ledger.close()


def test_capture_events_gives_full_events():
    """Captured events are complete Event objects with cost and attribution."""
    ledger = memory_ledger()
    with capture_events(ledger) as events:
        ledger.record_llm("gpt-4o", 1000, 1000, provider="openai", bot_id="b")
    (e,) = events
    assert (e.bot_id, e.cost_source, e.input_tokens) == ("b", "priced", 1000)
    assert str(e.cost_usd) == "0.01250000"
    assert e.started_at.tzinfo is not None
    ledger.close()


def test_capture_events_removes_its_sink():
    """After the block the sink is removed, also after an exception."""
    ledger = memory_ledger()
    with pytest.raises(RuntimeError), capture_events(ledger):
        raise RuntimeError("x")
    assert ledger._sinks == []
    ledger.close()


def test_capture_events_defaults_to_the_default_ledger():
    """capture_events() without a ledger captures the default ledger."""
    with capture_events() as events:
        get_ledger().record_tool("t")
    assert [e.name for e in events] == ["t"]


def test_two_captures_nest():
    """Nested captures each see the events of their own block."""
    ledger = memory_ledger()
    with capture_events(ledger) as outer:
        ledger.record_tool("a")
        with capture_events(ledger) as inner:
            ledger.record_tool("b")
    assert [e.name for e in outer] == ["a", "b"]
    assert [e.name for e in inner] == ["b"]
    ledger.close()
