"""Every public recorder against bad input: fail-open by default, InvalidEvent when strict."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from agentledger import Event, InvalidEvent, Ledger
from agentledger.events import MAX_ERROR_MESSAGE_LEN
from agentledger.testing import capture_events, memory_ledger

HUGE = 10**12 + 1
GIANT = "x" * (1024 * 1024)  # 1 MB
NAIVE = datetime(2025, 1, 1, 12, 0, 0)
OVERSIZE = {"blob": "y" * (64 * 1024 + 1)}

Call = Callable[[Ledger], Any]


def llm(**kw: Any) -> Call:
    args = {"model": "gpt-4o", "input_tokens": 100, "output_tokens": 50, **kw}
    return lambda ledger: ledger.record_llm(**args)


def tool(**kw: Any) -> Call:
    args = {"name": "search", **kw}
    return lambda ledger: ledger.record_tool(**args)


def error(**kw: Any) -> Call:
    args = {"error_type": "Timeout", **kw}
    return lambda ledger: ledger.record_error(**args)


def good_event(**changes: Any) -> Event:
    base = Event(
        event_id="0190a8f0-0000-7000-8000-0000000000aa",
        trace_id="a" * 32,
        span_id="b" * 16,
        parent_id=None,
        started_at=datetime(2025, 1, 1, tzinfo=UTC),
        duration_ms=1.0,
        kind="llm",
        name="chat",
        model="gpt-4o",
        input_tokens=100,
        output_tokens=50,
    )
    return dataclasses.replace(base, **changes)


def event(**changes: Any) -> Call:
    return lambda ledger: ledger.record(good_event(**changes))


def span(usage: dict[str, Any] | None = None, fail: str | None = None, **attrs: Any) -> Call:
    def run(ledger: Ledger) -> None:
        with ledger.span("llm", "call", **attrs) as s:
            if usage:
                s.set_usage(**usage)
            if fail is not None:
                s.fail(fail)

    return run


TOKEN_VALUES = [
    pytest.param("5", id="numeric-str"),
    pytest.param(True, id="bool"),
    pytest.param(5.0, id="float"),
    pytest.param(-1, id="negative"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(HUGE, id="huge"),
    pytest.param(None, id="none"),
]
NUMBER_VALUES = [
    pytest.param("5", id="numeric-str"),
    pytest.param(True, id="bool"),
    pytest.param(-1.0, id="negative"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(1e13, id="huge"),
]
STR_VALUES = [
    pytest.param("", id="empty"),
    pytest.param(GIANT, id="giant-1MB"),
    pytest.param(5, id="int"),
]


def _expand(
    maker: Callable[..., Call], prefix: str, field: str, values: list[Any], key: str | None = None
) -> list[Any]:
    return [
        pytest.param(maker(**{key or field: v.values[0]}), field, id=f"{prefix}-{field}-{v.id}")
        for v in values
    ]


CASES: list[Any] = []
# record_llm
for f in ("input_tokens", "output_tokens"):
    CASES += _expand(llm, "llm", f, TOKEN_VALUES)
for f in ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
    CASES += _expand(llm, "llm", f, TOKEN_VALUES[:4] + TOKEN_VALUES[5:7])
CASES += _expand(llm, "llm", "duration_ms", NUMBER_VALUES)
CASES += _expand(llm, "llm", "cost_usd", NUMBER_VALUES)
for f in ("model", "provider", "bot_id", "user_id", "task_id", "tenant_id", "session_id"):
    CASES += _expand(llm, "llm", f, STR_VALUES)
CASES += [
    pytest.param(llm(name=GIANT), "name", id="llm-name-giant-1MB"),
    pytest.param(llm(name=5), "name", id="llm-name-int"),
    pytest.param(
        llm(input_tokens=100, cache_read_tokens=60, cache_write_tokens=41),
        "cache_read_tokens",
        id="llm-cache-read+write-exceed-input",
    ),
    pytest.param(
        llm(output_tokens=50, reasoning_tokens=51),
        "reasoning_tokens",
        id="llm-reasoning-exceeds-output",
    ),
    pytest.param(
        llm(cache_write_tokens=10, cache_write_1h_tokens=11),
        "cache_write_1h_tokens",
        id="llm-cache-write-1h-exceeds-cache-write",
    ),
    pytest.param(llm(cache_write_1h_tokens="1"), "cache_write_1h_tokens", id="llm-1h-str"),
    pytest.param(llm(status="failed"), "status", id="llm-status-unknown"),
    pytest.param(llm(status="error", error_type=""), "error_type", id="llm-error_type-empty"),
    pytest.param(llm(error_type=GIANT), "error_type", id="llm-error_type-giant"),
    pytest.param(llm(tags=object()), "tags", id="llm-tags-object"),
    pytest.param(llm(tags={"k": 1}), "tags", id="llm-tags-int-value"),
    pytest.param(llm(tags={"k": GIANT}), "tags", id="llm-tags-giant-value"),
    pytest.param(llm(metadata=object()), "metadata", id="llm-metadata-object"),
    pytest.param(llm(metadata={1, 2}), "metadata", id="llm-metadata-set"),
    pytest.param(llm(metadata={"o": object()}), "metadata", id="llm-metadata-holds-object"),
    pytest.param(llm(metadata={"s": {1, 2}}), "metadata", id="llm-metadata-holds-set"),
    pytest.param(llm(metadata={"n": math.nan}), "metadata", id="llm-metadata-holds-nan"),
    pytest.param(llm(metadata=OVERSIZE), "metadata", id="llm-metadata-oversize"),
    pytest.param(llm(started_at=NAIVE), "started_at", id="llm-started_at-naive"),
    pytest.param(llm(started_at="2025-01-01"), "started_at", id="llm-started_at-str"),
    pytest.param(llm(started_at=math.nan), "started_at", id="llm-started_at-nan"),
    pytest.param(llm(started_at=math.inf), "started_at", id="llm-started_at-inf"),
    pytest.param(llm(started_at=-5.0), "started_at", id="llm-started_at-negative"),
]
# record_tool
CASES += _expand(tool, "tool", "name", STR_VALUES)
CASES += _expand(tool, "tool", "duration_ms", NUMBER_VALUES)
CASES += _expand(tool, "tool", "cost_usd", NUMBER_VALUES)
CASES += _expand(tool, "tool", "bot_id", STR_VALUES)
CASES += [
    pytest.param(tool(kind="llm_call"), "kind", id="tool-kind-unknown"),
    pytest.param(tool(kind=""), "kind", id="tool-kind-empty"),
    pytest.param(tool(kind=["tool"]), "kind", id="tool-kind-list"),
    pytest.param(tool(status="failed"), "status", id="tool-status-unknown"),
    pytest.param(tool(error_type=""), "error_type", id="tool-error_type-empty"),
    pytest.param(tool(tags=object()), "tags", id="tool-tags-object"),
    pytest.param(tool(metadata={"o": object()}), "metadata", id="tool-metadata-object"),
    pytest.param(tool(metadata={"s": {1}}), "metadata", id="tool-metadata-set"),
    pytest.param(tool(metadata=OVERSIZE), "metadata", id="tool-metadata-oversize"),
    pytest.param(tool(started_at=NAIVE), "started_at", id="tool-started_at-naive"),
]
# record_error
CASES += _expand(error, "error", "error_type", STR_VALUES)
CASES += [
    pytest.param(error(name=GIANT), "name", id="error-name-giant"),
    pytest.param(error(model=""), "model", id="error-model-empty"),
    pytest.param(error(provider=GIANT), "provider", id="error-provider-giant"),
    pytest.param(error(bot_id=""), "bot_id", id="error-bot_id-empty"),
    pytest.param(error(tags={"": "x"}), "tags", id="error-tags-empty-key"),
    pytest.param(error(metadata={"o": object()}), "metadata", id="error-metadata-object"),
    pytest.param(error(metadata={"s": {1}}), "metadata", id="error-metadata-set"),
    pytest.param(error(metadata=OVERSIZE), "metadata", id="error-metadata-oversize"),
    pytest.param(error(started_at=NAIVE), "started_at", id="error-started_at-naive"),
]
# record(Event)
for f in ("input_tokens", "output_tokens"):
    CASES += _expand(event, "event", f, TOKEN_VALUES)
CASES += [
    pytest.param(event(event_id=""), "event_id", id="event-event_id-empty"),
    pytest.param(event(event_id=GIANT), "event_id", id="event-event_id-giant"),
    pytest.param(event(name=GIANT), "name", id="event-name-giant"),
    pytest.param(event(bot_id=""), "bot_id", id="event-bot_id-empty"),
    pytest.param(event(kind="llm_call"), "kind", id="event-kind-unknown"),
    pytest.param(event(status="failed"), "status", id="event-status-unknown"),
    pytest.param(event(duration_ms=math.nan), "duration_ms", id="event-duration-nan"),
    pytest.param(event(duration_ms=-1.0), "duration_ms", id="event-duration-negative"),
    pytest.param(
        event(cost_usd=Decimal("Infinity"), cost_source="reported"),
        "cost_usd",
        id="event-cost-inf",
    ),
    pytest.param(event(cost_source="guess"), "cost_source", id="event-cost_source-unknown"),
    pytest.param(
        event(cache_read_tokens=60, cache_write_tokens=41),
        "cache_read_tokens",
        id="event-cache-exceeds-input",
    ),
    pytest.param(event(reasoning_tokens=51), "reasoning_tokens", id="event-reasoning-exceeds"),
    pytest.param(event(metadata={"o": object()}), "metadata", id="event-metadata-object"),
    pytest.param(event(metadata={"s": {1}}), "metadata", id="event-metadata-set"),
    pytest.param(event(metadata=OVERSIZE), "metadata", id="event-metadata-oversize"),
    pytest.param(event(started_at=NAIVE), "started_at", id="event-started_at-naive"),
    pytest.param(lambda ledger: ledger.record("gpt-4o"), "event", id="event-not-an-event"),
]
# span (validated when it closes)
CASES += [
    pytest.param(span(usage={"input_tokens": "5"}), "input_tokens", id="span-usage-str"),
    pytest.param(span(usage={"input_tokens": True}), "input_tokens", id="span-usage-bool"),
    pytest.param(span(usage={"output_tokens": -1}), "output_tokens", id="span-usage-negative"),
    pytest.param(span(usage={"output_tokens": math.nan}), "output_tokens", id="span-usage-nan"),
    pytest.param(span(usage={"input_tokens": HUGE}), "input_tokens", id="span-usage-huge"),
    pytest.param(
        span(usage={"input_tokens": 5, "cache_read_tokens": 6}),
        "cache_read_tokens",
        id="span-usage-cache-exceeds-input",
    ),
    pytest.param(
        span(usage={"output_tokens": 5, "reasoning_tokens": 6}),
        "reasoning_tokens",
        id="span-usage-reasoning-exceeds-output",
    ),
    pytest.param(span(model=""), "model", id="span-model-empty"),
    pytest.param(span(model=GIANT), "model", id="span-model-giant"),
    pytest.param(span(cost_usd=math.nan), "cost_usd", id="span-cost-nan"),
    pytest.param(span(cost_usd="0.1"), "cost_usd", id="span-cost-str"),
    pytest.param(span(cost_usd=True), "cost_usd", id="span-cost-bool"),
    pytest.param(span(metadata={"o": object()}), "metadata", id="span-metadata-object"),
    pytest.param(span(metadata={"s": {1}}), "metadata", id="span-metadata-set"),
    pytest.param(span(metadata=OVERSIZE), "metadata", id="span-metadata-oversize"),
    pytest.param(span(started_at=NAIVE), "started_at", id="span-started_at-naive"),
    pytest.param(span(fail=""), "error_type", id="span-fail-empty-error-type"),
]


@pytest.fixture
def ledger() -> Ledger:
    led = memory_ledger(strict=False)
    yield led
    led.close()


@pytest.mark.parametrize(("call", "field"), CASES)
def test_bad_input_is_rejected_counted_and_logged(ledger, caplog, call, field):
    """Default ledger: returns None, rejected += 1, totals unchanged, a log line names field."""
    assert ledger.record_llm("gpt-4o", 100, 50, bot_id="b") is not None
    before = ledger.totals()
    stats = ledger.stats()
    with caplog.at_level(logging.WARNING, logger="agentledger"):
        assert call(ledger) is None
    after = ledger.stats()
    assert after.rejected == stats.rejected + 1
    assert after.recorded == stats.recorded
    assert ledger.totals() == before
    messages = [r.getMessage() for r in caplog.records if r.name == "agentledger"]
    assert any(f"{field}:" in m for m in messages), messages


@pytest.mark.parametrize(("call", "field"), CASES)
def test_bad_input_raises_invalid_event_when_strict(call, field):
    """strict=True: InvalidEvent (a ValueError) with .field naming the bad field."""
    ledger = memory_ledger(strict=True)
    with pytest.raises(InvalidEvent) as info:
        call(ledger)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert ledger.stats().rejected == 1
    assert ledger.stats().recorded == 0
    ledger.close()


@pytest.mark.parametrize(
    ("kind", "name", "attrs", "field"),
    [
        pytest.param("llm_call", "x", {}, "kind", id="kind-unknown"),
        pytest.param("tool", "", {}, "name", id="name-empty"),
        pytest.param("tool", GIANT, {}, "name", id="name-giant"),
        pytest.param("tool", "x", {"bot_id": ""}, "bot_id", id="bot_id-empty"),
        pytest.param("tool", "x", {"bot_id": GIANT}, "bot_id", id="bot_id-giant"),
        pytest.param("tool", "x", {"user_id": 5}, "user_id", id="user_id-int"),
        pytest.param("tool", "x", {"tags": object()}, "tags", id="tags-object"),
        pytest.param("tool", "x", {"tags": {"k": 1}}, "tags", id="tags-int-value"),
    ],
)
@pytest.mark.parametrize(
    "strict", [pytest.param(False, id="default"), pytest.param(True, id="strict")]
)
def test_span_with_bad_kind_name_or_attribution_raises_at_once(kind, name, attrs, field, strict):
    """span() validates kind, name and attribution when opened and raises InvalidEvent even
    on a fail-open ledger (like scope(): these are set by the app's own code). Not counted.
    """
    ledger = memory_ledger(strict=strict)
    with pytest.raises(InvalidEvent) as info:
        ledger.span(kind, name, **attrs)
    assert info.value.field == field
    assert ledger.stats().rejected == 0
    ledger.close()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(llm(), id="record_llm"),
        pytest.param(tool(), id="record_tool"),
        pytest.param(error(), id="record_error"),
        pytest.param(event(), id="record"),
    ],
)
def test_valid_input_is_recorded_and_returns_event_id(ledger, call):
    """The baseline valid call of each recorder returns an event id and is counted."""
    event_id = call(ledger)
    assert isinstance(event_id, str)
    assert ledger.stats().recorded == 1
    assert ledger.stats().rejected == 0
    assert ledger.flush()
    assert [e.event_id for e in ledger.store.events()] == [event_id]


def test_unknown_model_recorded_unpriced_and_warned_once_per_model(ledger, caplog):
    """Unknown model: tokens kept, cost None, 'unpriced'; one warning per model; all counted."""
    with caplog.at_level(logging.WARNING), capture_events(ledger) as events:
        for _ in range(3):
            assert ledger.record_llm("no-such-model-a", 1000, 200) is not None
        for _ in range(2):
            assert ledger.record_llm("no-such-model-b", 10, 20) is not None
    assert len(events) == 5
    for e in events:
        assert e.cost_usd is None
        assert e.cost_source == "unpriced"
    assert (events[0].input_tokens, events[0].output_tokens) == (1000, 200)
    assert ledger.stats().unpriced == 5
    assert ledger.stats().rejected == 0
    totals = ledger.totals()
    assert totals.unpriced_calls == 5
    assert totals.input_tokens == 3020
    assert totals.cost_usd == 0
    warnings = [r.getMessage() for r in caplog.records if "no price known" in r.getMessage()]
    assert len([w for w in warnings if "no-such-model-a" in w]) == 1
    assert len([w for w in warnings if "no-such-model-b" in w]) == 1


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        pytest.param(Decimal("0.123456789012345678"), Decimal("0.123456789012345678"), id="dec"),
        pytest.param(0.015, Decimal("0.015"), id="float-via-repr"),
        pytest.param(2, Decimal(2), id="int"),
        pytest.param(0, Decimal(0), id="zero"),
    ],
)
def test_reported_cost_is_kept_exactly(ledger, reported, expected):
    """A caller-reported cost is kept exactly with cost_source 'reported'."""
    with capture_events(ledger) as events:
        ledger.record_llm("gpt-4o", 1000, 100, cost_usd=reported)
        ledger.record_llm("no-such-model-z", 1000, 100, cost_usd=reported)
    for e in events:
        assert e.cost_usd == expected
        assert e.cost_source == "reported"
        assert e.price_version is None
    assert ledger.totals().cost_usd == 2 * expected
    assert ledger.stats().unpriced == 0


def test_priced_cost_is_exact_decimal(ledger):
    """A known model is priced from the book: gpt-4o 1000 in / 1000 out = $0.0125."""
    with capture_events(ledger) as events:
        ledger.record_llm("gpt-4o", 1000, 1000, provider="openai")
    assert events[0].cost_usd == Decimal("0.0125")
    assert events[0].cost_source == "priced"
    assert events[0].price_version == ledger.prices.version


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda led, m: led.record_llm("gpt-4o", 1, 1, error_message=m), id="llm"),
        pytest.param(lambda led, m: led.record_tool("t", error_message=m), id="tool"),
        pytest.param(lambda led, m: led.record_error("E", m), id="error"),
    ],
)
def test_long_error_message_is_clipped_not_rejected(ledger, call):
    """An error_message over 8192 chars is clipped and the event recorded."""
    with capture_events(ledger) as events:
        assert call(ledger, "e" * 100_000) is not None
    assert ledger.stats().rejected == 0
    message = events[0].error_message
    assert len(message) <= MAX_ERROR_MESSAGE_LEN
    assert message.startswith("e" * 8000)
    assert message.endswith("[truncated]")


def test_error_type_without_status_marks_error(ledger):
    """record_llm(error_type=...) implies status 'error'."""
    with capture_events(ledger) as events:
        ledger.record_llm("gpt-4o", 1, 1, error_type="RateLimit")
    assert events[0].status == "error"
    assert ledger.totals().errors == 1


def test_rejected_calls_never_reach_sinks_or_store(ledger):
    """Nothing rejected is ever written or passed to a sink."""
    with capture_events(ledger) as events:
        ledger.record_llm("gpt-4o", "5", 1)
        ledger.record_tool("")
    assert len(events) == 0
    assert ledger.flush()
    assert ledger.store.count() == 0
