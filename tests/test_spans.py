"""Nested spans: trace/parent ids, errors, usage/model/cost on spans, traced decorators."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import agentledger
from agentledger import InvalidEvent, current_span, scope
from agentledger.testing import capture_events, memory_ledger


@pytest.fixture
def ledger():
    led = memory_ledger()
    yield led
    led.close()


def by_name(events):
    return {e.name: e for e in events}


def test_nested_spans_share_trace_and_chain_parents(ledger):
    """Nested spans share one trace_id; each parent_id is the enclosing span's span_id."""
    with capture_events(ledger) as events:
        with ledger.span("custom", "root") as root:
            assert current_span() is root
            with ledger.span("tool", "mid") as mid:
                assert current_span() is mid
                with ledger.span("retrieval", "leaf") as leaf:
                    assert current_span() is leaf
                assert current_span() is mid
        assert current_span() is None
    ev = by_name(events)
    assert ev["root"].parent_id is None
    assert ev["mid"].parent_id == root.span_id == ev["root"].span_id
    assert ev["leaf"].parent_id == mid.span_id == ev["mid"].span_id
    assert ev["leaf"].span_id == leaf.span_id
    assert len({e.trace_id for e in events}) == 1
    assert ev["root"].trace_id == root.trace_id
    assert [e.kind for e in events] == ["retrieval", "tool", "custom"]  # children close first


def test_sibling_root_spans_get_different_traces(ledger):
    """Two top-level spans start two traces."""
    with capture_events(ledger) as events:
        with ledger.span("tool", "a"):
            pass
        with ledger.span("tool", "b"):
            pass
    assert events[0].trace_id != events[1].trace_id


def test_record_llm_inside_span_is_its_child(ledger):
    """record_* inside a span gets parent_id = span.span_id and the span's trace_id."""
    with capture_events(ledger) as events, ledger.span("custom", "turn") as span:
        ledger.record_llm("gpt-4o", 10, 5)
        ledger.record_tool("search")
        ledger.record_error("Oops")
    children = [e for e in events if e.name != "turn"]
    assert len(children) == 3
    for e in children:
        assert e.parent_id == span.span_id
        assert e.trace_id == span.trace_id
        assert e.span_id != span.span_id


def test_record_outside_span_has_no_parent(ledger):
    """Outside any span an event starts its own trace."""
    with capture_events(ledger) as events:
        ledger.record_tool("t")
    assert events[0].parent_id is None


def test_exception_marks_span_error_and_reraises_same_object(ledger):
    """An exception marks the span status 'error' with type and message, re-raised unchanged."""
    boom = KeyError("missing thing")
    with (
        capture_events(ledger) as events,
        pytest.raises(KeyError) as info,
        ledger.span("tool", "lookup"),
    ):
        raise boom
    assert info.value is boom
    (e,) = events
    assert e.status == "error"
    assert e.error_type == "KeyError"
    assert e.error_message == str(boom)
    assert ledger.totals().errors == 1


def test_exception_in_inner_span_marks_both(ledger):
    """An exception crossing two spans marks both as errors."""
    with (
        capture_events(ledger) as events,
        pytest.raises(ValueError, match="bad"),
        ledger.span("custom", "outer"),
        ledger.span("tool", "inner"),
    ):
        raise ValueError("bad")
    assert {e.name: e.status for e in events} == {"inner": "error", "outer": "error"}


def test_span_fail_marks_error_without_raising(ledger):
    """span.fail() marks it failed with the given type and message."""
    with capture_events(ledger) as events, ledger.span("tool", "t") as span:
        span.fail("Timeout", "took too long")
    assert (events[0].status, events[0].error_type, events[0].error_message) == (
        "error",
        "Timeout",
        "took too long",
    )


def test_span_set_usage_and_model_are_priced_from_book(ledger):
    """set_model + set_usage on an open span: tokens and priced cost land on the event."""
    with capture_events(ledger) as events, ledger.span("llm", "chat") as span:
        span.set_model("gpt-4o", provider="openai")
        span.set_usage(input_tokens=1000, output_tokens=1000)
        span.set_usage(cache_read_tokens=200)  # adds, keeps the others
    (e,) = events
    assert (e.model, e.provider) == ("gpt-4o", "openai")
    assert (e.input_tokens, e.output_tokens, e.cache_read_tokens) == (1000, 1000, 200)
    expected = ledger.prices.quote("openai", "gpt-4o", 1000, 1000, 200)[0]
    assert e.cost_usd == expected == Decimal("0.01225")
    assert e.cost_source == "priced"


def test_span_set_cost_is_reported(ledger):
    """set_cost on an open span records that exact cost as 'reported'."""
    with capture_events(ledger) as events, ledger.span("llm", "chat") as span:
        span.set_model("gpt-4o")
        span.set_usage(input_tokens=1000, output_tokens=1000)
        span.set_cost(Decimal("0.5"))
    assert events[0].cost_usd == Decimal("0.5")
    assert events[0].cost_source == "reported"


def test_span_set_metadata(ledger):
    """span.set(key, value) ends up in the event's metadata."""
    with capture_events(ledger) as events, ledger.span("tool", "t", metadata={"a": 1}) as span:
        span.set("b", [1, 2])
    assert events[0].metadata == {"a": 1, "b": [1, 2]}


def test_span_attributes_and_scope(ledger):
    """A span's attribution attrs apply to it and its children; otherwise the scope's."""
    with capture_events(ledger) as events, scope(bot_id="scoped", user_id="u"):
        with ledger.span("custom", "s", bot_id="span-bot"):
            ledger.record_tool("child")
        with ledger.span("custom", "plain"):
            pass
    ev = by_name(events)
    assert (ev["s"].bot_id, ev["s"].user_id) == ("span-bot", "u")
    assert ev["child"].bot_id == "span-bot"
    assert ev["plain"].bot_id == "scoped"


def test_span_duration_is_non_negative(ledger):
    """A span records a finite, non-negative duration."""
    with capture_events(ledger) as events, ledger.span("tool", "t"):
        pass
    assert events[0].duration_ms >= 0.0


def test_invalid_usage_on_span_is_rejected_on_strict_ledger(ledger):
    """Strict ledger: an invalid usage set on a span raises InvalidEvent when it closes."""
    with pytest.raises(InvalidEvent) as info, ledger.span("llm", "x") as span:
        span.set_usage(input_tokens=-1)
    assert info.value.field == "input_tokens"


def test_async_with_span(ledger):
    """Spans work with async with, and children inside the coroutine find their parent."""

    async def main() -> str:
        async with ledger.span("custom", "async-root") as span:
            await asyncio.sleep(0)
            ledger.record_tool("child")
            return span.span_id

    with capture_events(ledger) as events:
        root_id = asyncio.run(main())
    assert by_name(events)["child"].parent_id == root_id


def test_concurrent_tasks_keep_their_own_span(ledger):
    """Concurrent asyncio tasks each see their own open span as parent."""

    async def worker(i: int) -> str:
        with ledger.span("custom", f"w{i}") as span:
            for _ in range(3):
                await asyncio.sleep(0)
                ledger.record_tool(f"c{i}")
            return span.span_id

    async def main() -> list[str]:
        return await asyncio.gather(*(worker(i) for i in range(20)))

    with capture_events(ledger) as events:
        ids = asyncio.run(main())
    ev = [e for e in events if e.name.startswith("c")]
    assert len(ev) == 60
    for e in ev:
        assert e.parent_id == ids[int(e.name[1:])]


# --- traced decorators ---------------------------------------------------------------------


def test_ledger_traced_sync(ledger):
    """Ledger.traced on a sync function: one span per call, named after the function."""

    @ledger.traced("tool")
    def search(q: str) -> str:
        ledger.record_llm("gpt-4o", 1, 1)
        return q.upper()

    with capture_events(ledger) as events:
        assert search("x") == "X"
    spans = [e for e in events if e.kind == "tool"]
    assert [s.name for s in spans] == [search.__qualname__]
    child = next(e for e in events if e.kind == "llm")
    assert child.parent_id == spans[0].span_id
    assert search.__name__ == "search"  # functools.wraps


def test_ledger_traced_async_with_name(ledger):
    """Ledger.traced on an async function with an explicit name."""

    @ledger.traced("retrieval", name="fetch-docs", bot_id="tb")
    async def fetch() -> int:
        await asyncio.sleep(0)
        return 7

    with capture_events(ledger) as events:
        assert asyncio.run(fetch()) == 7
    assert (events[0].name, events[0].kind, events[0].bot_id) == ("fetch-docs", "retrieval", "tb")


def test_ledger_traced_records_error_and_reraises(ledger):
    """A traced function that raises records an error span and re-raises the same exception."""
    err = RuntimeError("nope")

    @ledger.traced()
    def bad() -> None:
        raise err

    with capture_events(ledger) as events, pytest.raises(RuntimeError) as info:
        bad()
    assert info.value is err
    assert (events[0].kind, events[0].status, events[0].error_type) == (
        "custom",
        "error",
        "RuntimeError",
    )


def test_module_traced_sync_uses_default_ledger():
    """agentledger.traced on a sync function records on the default ledger."""

    @agentledger.traced("tool", name="mod-sync")
    def work(a: int, b: int) -> int:
        return a + b

    with capture_events() as events:
        assert work(2, 3) == 5
    assert [(e.name, e.kind) for e in events] == [("mod-sync", "tool")]


def test_module_traced_async_uses_default_ledger():
    """agentledger.traced on an async function records on the default ledger."""

    @agentledger.traced("retrieval")
    async def work() -> str:
        await asyncio.sleep(0)
        return "ok"

    with capture_events() as events:
        assert asyncio.run(work()) == "ok"
    assert events[0].kind == "retrieval"
    assert events[0].name.endswith("work")


def test_module_traced_looks_up_default_ledger_at_call_time(sqlite_url):
    """Decorating before configure() still records on the ledger configured later."""

    @agentledger.traced("tool", name="late")
    def work() -> None:
        return None

    ledger = agentledger.configure(sqlite_url, handle_signals=False)
    with capture_events(ledger) as events:
        work()
    assert [e.name for e in events] == ["late"]
