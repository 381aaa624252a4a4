"""Metadata built by agentledger itself (``DeferredMetadata``) is serialised by the writer.

The integrations hand their event metadata over as a dict; the ledger keeps it in the row and
turns it into JSON off the caller's thread. What is stored, what sinks see and what the live
totals count is the same as for the same metadata given as a plain dict.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest

from agentledger import Event, InvalidEvent, Ledger
from agentledger.events import DeferredMetadata, dump_json, encode_deferred
from agentledger.testing import capture_events, memory_ledger

META = {
    "endpoint": "chat.completions",
    "request_model": "gpt-4o",
    "stream": True,
    "ttft_ms": 12.345,
    "http_status": 429,
    "usage_estimated": True,
    "note": 'é"\n',
}


def deferred(values: dict[str, Any]) -> DeferredMetadata:
    out = DeferredMetadata()
    out.update(values)
    return out


def record(ledger: Ledger, metadata: Any) -> str | None:
    return ledger.record_llm("gpt-4o", 100, 50, provider="openai", metadata=metadata)


def test_deferred_metadata_is_stored_like_a_plain_dict() -> None:
    with memory_ledger() as ledger, capture_events(ledger) as captured:
        assert record(ledger, deferred(META)) is not None
        assert record(ledger, dict(META)) is not None
        assert ledger.flush()
        assert ledger.store is not None
        stored = ledger.store.events()
        assert [e.metadata for e in stored] == [META, META]
        assert [e.metadata for e in captured] == [META, META]
        a, b = stored
        assert (a.cost_usd, a.cost_source) == (b.cost_usd, b.cost_source)
        assert ledger.totals().calls == 2


def test_the_row_holds_the_json_the_writer_made(sqlite_url: str) -> None:
    batches: list[Sequence[Event]] = []
    with Ledger(sqlite_url, handle_signals=False) as ledger:
        ledger.add_sink(batches.append)
        record(ledger, deferred(META))
        assert ledger.flush()
        assert ledger.store is not None
        (event,) = ledger.store.events()
    assert event.metadata == META
    assert [e.metadata for batch in batches for e in batch] == [META]
    path = sqlite_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as db:
        (text,) = db.execute("SELECT metadata FROM events").fetchone()
    assert text == dump_json(META, "metadata")  # the same JSON text as on the caller's thread


def test_sync_durability_serialises_deferred_metadata_at_once(sqlite_url: str) -> None:
    with Ledger(sqlite_url, durability="sync", handle_signals=False) as ledger:
        record(ledger, deferred(META))
        assert ledger.store is not None
        (event,) = ledger.store.events()  # written before record_llm returned
        assert event.metadata == META


def test_empty_deferred_metadata_is_no_metadata() -> None:
    with memory_ledger() as ledger:
        record(ledger, DeferredMetadata())
        assert ledger.flush()
        assert ledger.store is not None
        (event,) = ledger.store.events()
        assert event.metadata == {}


def test_encode_deferred() -> None:
    assert encode_deferred(deferred(META)) == dump_json(META, "metadata")
    assert encode_deferred(DeferredMetadata()) is None
    # Never expected (the integrations only put JSON-safe values in), but never fatal:
    assert encode_deferred(deferred({"bad": math.nan})) is None


def test_plain_metadata_is_still_checked_on_the_callers_thread() -> None:
    with memory_ledger() as ledger:
        with pytest.raises(InvalidEvent, match="metadata"):
            record(ledger, {"bad": math.nan})
        assert ledger.stats().rejected == 1
    with memory_ledger(strict=False) as ledger:
        assert record(ledger, {"bad": object()}) is None
        assert record(ledger, ["not", "a", "dict"]) is None
        assert ledger.stats().rejected == 2
