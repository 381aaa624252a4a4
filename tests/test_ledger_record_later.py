"""Records whose row the writer builds (``Ledger._record_later``, used by the integrations).

The caller's thread only appends to the buffer; validation, attribution (from the context the
call was made in), ids and pricing happen on the writer's side. What is stored and counted
must be what ``record_llm`` would have stored and counted for the same values, and a record
that fails to build is rejected and counted without blocking ``flush()`` or raising.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import pytest

import agentledger
from agentledger import InvalidEvent, Ledger
from agentledger.testing import capture_events, memory_ledger

STARTED = 1_790_000_000.5


def later_args(model: str = "gpt-4o", input_tokens: Any = 1200, **over: Any) -> tuple[Any, ...]:
    """``Ledger._row``'s arguments as the integrations pass them (see Call._record)."""
    fields: dict[str, Any] = {
        "kind": "llm", "name": model, "provider": "openai", "model": model,
        "input_tokens": input_tokens, "output_tokens": 300, "cache_read": 1000,
        "cache_write": 0, "reasoning": 0, "cache_write_1h": 0, "duration_ms": 840.0,
        "cost_usd": None, "status": "ok", "error_type": None, "error_message": None,
        "bot_id": None, "user_id": None, "task_id": None, "tenant_id": None,
        "session_id": None, "tags": None, "metadata": {"endpoint": "chat.completions"},
        "started_at": STARTED, "span": None,
    }  # fmt: skip
    fields.update(over)
    return tuple(fields.values())


def in_scope(**attribution: str) -> contextvars.Context:
    """The context a call made inside ``scope(**attribution)`` would capture."""
    with agentledger.scope(**attribution):
        return contextvars.copy_context()


def test_a_later_record_is_stored_like_record_llm() -> None:
    with memory_ledger() as ledger, capture_events(ledger) as captured:
        with agentledger.scope(bot_id="bot-a", user_id="u-1", tenant_id="acme"):
            ledger.record_llm(
                "gpt-4o", 1200, 300, provider="openai", cache_read_tokens=1000,
                duration_ms=840.0, metadata={"endpoint": "chat.completions"},
                started_at=STARTED,
            )  # fmt: skip
        ledger._record_later(in_scope(bot_id="bot-a", user_id="u-1", tenant_id="acme"),
                             later_args())  # fmt: skip
        assert ledger.flush()
        now, later = captured
    same = ("kind", "name", "provider", "model", "bot_id", "user_id", "tenant_id",
            "input_tokens", "output_tokens", "cache_read_tokens", "cost_usd", "cost_source",
            "status", "duration_ms", "started_at", "metadata")  # fmt: skip
    assert {f: getattr(later, f) for f in same} == {f: getattr(now, f) for f in same}
    assert later.event_id != now.event_id
    assert ledger.totals(bot_id="bot-a").calls == 2


def test_attribution_is_the_calls_context_not_the_writers() -> None:
    """Built on the writer thread, a record still carries the scope it was made in."""
    with memory_ledger() as ledger:
        contexts = [in_scope(bot_id=f"bot-{i}", user_id=f"u-{i}") for i in range(8)]

        def record(i: int) -> None:
            with agentledger.scope(bot_id="someone-else"):  # the recording thread's own scope
                for _ in range(50):
                    ledger._record_later(contexts[i], later_args())

        threads = [threading.Thread(target=record, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ledger.flush()
        assert ledger.store is not None
        by_bot: dict[str | None, int] = {}
        for event in ledger.store.events():
            assert event.user_id == f"u-{event.bot_id.removeprefix('bot-')}"  # type: ignore[union-attr]
            by_bot[event.bot_id] = by_bot.get(event.bot_id, 0) + 1
    assert by_bot == {f"bot-{i}": 50 for i in range(8)}


def test_a_query_sees_a_later_record_at_once() -> None:
    with memory_ledger(flush_interval_s=3600) as ledger:
        ledger._record_later(in_scope(bot_id="bot-q"), later_args())
        totals = ledger.totals(bot_id="bot-q")
        assert (totals.calls, totals.input_tokens) == (1, 1200)
        assert totals.cost_usd > 0


@pytest.mark.parametrize(
    "strict", [pytest.param(True, id="strict"), pytest.param(False, id="lenient")]
)
def test_a_record_that_fails_to_build_is_rejected_and_does_not_block_flush(strict: bool) -> None:
    with memory_ledger(strict=strict) as ledger:
        ctx = in_scope(bot_id="bot-r")
        ledger._record_later(ctx, later_args())
        ledger._record_later(ctx, later_args(input_tokens=-5))  # never raises here
        ledger._record_later(ctx, later_args(model="x" * 10_000))
        assert ledger.flush(timeout=5)  # False if it waited for the two that failed
        stats = ledger.stats()
        assert (stats.recorded, stats.rejected, stats.written, stats.pending) == (1, 2, 1, 0)
        assert ledger.totals().calls == 1


def test_with_sync_durability_the_row_is_built_and_written_at_once() -> None:
    """As record_* do: written before the call returns; strict raises a bad record."""
    with memory_ledger(durability="sync", strict=False) as ledger:
        ledger._record_later(in_scope(user_id="u-s"), later_args())
        assert ledger.store is not None
        assert [e.user_id for e in ledger.store.events()] == ["u-s"]
        ledger._record_later(in_scope(), later_args(input_tokens="many"))
        assert ledger.stats().rejected == 1
    with memory_ledger(durability="sync") as ledger, pytest.raises(InvalidEvent, match="input"):
        ledger._record_later(in_scope(), later_args(input_tokens="many"))


def test_after_close_a_later_record_is_dropped_and_counted() -> None:
    ledger = memory_ledger(strict=False)
    ledger.close()
    ledger._record_later(in_scope(), later_args())
    assert ledger.stats().dropped == 1
    assert ledger.stats().recorded == 0


def test_a_full_queue_drops_a_later_record() -> None:
    ledger = Ledger(
        store=agentledger.testing.MemoryStore(), max_queue=1, flush_interval_s=3600,
        handle_signals=False,
    )  # fmt: skip
    try:
        ctx = in_scope()
        ledger._record_later(ctx, later_args())
        ledger._record_later(ctx, later_args())
        assert ledger._dropped == 1
    finally:
        ledger.close()
