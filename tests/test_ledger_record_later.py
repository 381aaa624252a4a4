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


# --- the inbox: records appended without the lock (Ledger._take_inbox) -------------------------
def test_with_a_writer_running_a_later_record_waits_in_the_inbox_and_is_counted_at_once() -> None:
    with memory_ledger(flush_interval_s=3600) as ledger:
        ledger._record_later(in_scope(), later_args())  # starts the writer (which then sleeps)
        assert ledger.flush()
        ledger._record_later(in_scope(bot_id="bot-i"), later_args())
        assert len(ledger._inbox) == 1  # appended without the lock
        assert ledger.pending == 1  # counted as soon as anyone looks
        assert len(ledger._inbox) == 0
        stats = ledger.stats()
        assert (stats.recorded, stats.pending) == (2, 1)
        assert ledger.flush()
        assert ledger.totals(bot_id="bot-i").calls == 1
        assert ledger.stats().written == 2


def test_many_threads_recording_later_while_the_writer_writes_lose_and_repeat_nothing() -> None:
    """Appends race with the writer taking the inbox (and with flushes): every record is
    counted once and written once."""
    threads_n, each = 8, 400
    with memory_ledger(flush_interval_s=0.001, batch_size=50) as ledger:
        ledger._record_later(in_scope(bot_id="first"), later_args())
        contexts = [in_scope(bot_id=f"bot-{i}") for i in range(threads_n)]

        def record(i: int) -> None:
            for n in range(each):
                ledger._record_later(contexts[i], later_args())
                if n % 100 == 0:
                    ledger.flush()

        threads = [threading.Thread(target=record, args=(i,)) for i in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ledger.flush()
        stats = ledger.stats()
        assert (stats.recorded, stats.written, stats.pending) == (1 + threads_n * each,) * 2 + (0,)
        assert stats.dropped == 0
        assert ledger.store is not None
        by_bot: dict[str | None, int] = {}
        for event in ledger.store.events():
            by_bot[event.bot_id] = by_bot.get(event.bot_id, 0) + 1
    assert by_bot == {"first": 1, **{f"bot-{i}": each for i in range(threads_n)}}


def test_the_inbox_keeps_the_queue_bound() -> None:
    """With max_queue=5 and nothing written, 5 records are kept and the rest dropped,
    counted, whether they waited in the inbox or took the lock."""
    ledger = Ledger(
        store=agentledger.testing.MemoryStore(), max_queue=5, flush_interval_s=3600,
        handle_signals=False,
    )  # fmt: skip
    try:
        for _ in range(11):
            ledger._record_later(in_scope(), later_args())
        assert 0 < len(ledger._inbox) <= 4  # the first started the writer; the room was 4
        stats = ledger.stats()
        assert (stats.recorded, stats.dropped) == (5, 6)
        ledger.record_llm("gpt-4o", 1, 1)  # record_* counts the inbox in the bound too
        assert ledger.stats().dropped == 7
    finally:
        ledger.close()


def test_close_writes_what_waits_in_the_inbox() -> None:
    store = agentledger.testing.MemoryStore()
    ledger = Ledger(store=store, flush_interval_s=3600, handle_signals=False)
    ledger._record_later(in_scope(), later_args())
    assert ledger.flush()
    for _ in range(3):
        ledger._record_later(in_scope(bot_id="late"), later_args())
    assert len(ledger._inbox) == 3
    assert ledger.close()
    assert sum(1 for e in store.events() if e.bot_id == "late") == 3


def test_sync_durability_never_uses_the_inbox() -> None:
    with memory_ledger(durability="sync") as ledger:
        for _ in range(3):
            ledger._record_later(in_scope(), later_args())
            assert len(ledger._inbox) == 0
        assert ledger.stats().written == 3


def test_a_record_that_comes_while_the_ledger_closes_is_written() -> None:
    """A record appended to the inbox by another thread after the writer's last take (as
    the writer stops; simulated here) is written before the store closes, not left
    uncounted."""
    store = agentledger.testing.MemoryStore()
    ledger = Ledger(store=store, flush_interval_s=3600, handle_signals=False)
    ledger._record_later(in_scope(), later_args())
    writer = ledger._writer
    assert writer is not None
    join = writer.join

    def join_then_a_late_record(timeout: float | None = None) -> None:
        join(timeout)
        assert not writer.is_alive()
        ledger._inbox.append((in_scope(bot_id="racing"), later_args()))

    writer.join = join_then_a_late_record  # type: ignore[method-assign]
    assert ledger.close()
    assert [e.bot_id for e in store.events()] == [None, "racing"]
    assert ledger.stats().recorded == 2
