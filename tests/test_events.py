"""Event rows round-trip; validate_event names the first bad field."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from agentledger import Event, InvalidEvent
from agentledger.events import (
    MAX_ERROR_MESSAGE_LEN,
    ROW_FIELDS,
    clip_error_message,
    validate_event,
)

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def make_event(**changes: object) -> Event:
    base = Event(
        event_id="0190a8f0-0000-7000-8000-000000000001",
        trace_id="a" * 32,
        span_id="b" * 16,
        parent_id="c" * 16,
        started_at=T0,
        duration_ms=12.5,
        kind="llm",
        name="chat",
        provider="openai",
        model="gpt-4o",
        bot_id="bot",
        user_id="user",
        task_id="task",
        tenant_id="tenant",
        session_id="session",
        tags={"env": "test", "ü": "ñ"},
        input_tokens=1000,
        output_tokens=500,
        cache_read_tokens=100,
        cache_write_tokens=50,
        reasoning_tokens=200,
        cost_usd=Decimal("0.0123456789"),
        cost_source="priced",
        price_version="genai-prices 0.2.3",
        status="error",
        error_type="Timeout",
        error_message="took too long",
        metadata={"nested": {"list": [1, 2.5, None, True]}, "s": "x"},
    )
    return dataclasses.replace(base, **changes)


def test_to_row_from_row_round_trip():
    """Event.from_row(event.to_row()) == event, every field."""
    event = make_event()
    row = event.to_row()
    assert len(row) == len(ROW_FIELDS)
    assert Event.from_row(row) == event


def test_to_row_serialises_tags_and_metadata_as_json_text():
    """to_row gives tags and metadata as compact JSON text."""
    row = make_event().to_row()
    assert row[ROW_FIELDS.index("tags")] == '{"env":"test","ü":"ñ"}'
    assert isinstance(row[ROW_FIELDS.index("metadata")], str)


def test_round_trip_of_minimal_event():
    """An event with defaults round-trips; empty tags/metadata are stored as None."""
    event = Event("e", "t", "s", None, T0, 0.0, "tool", "search")
    row = event.to_row()
    assert row[ROW_FIELDS.index("tags")] is None
    assert row[ROW_FIELDS.index("metadata")] is None
    assert Event.from_row(row) == event


@pytest.mark.parametrize(
    ("cost", "expected"),
    [
        pytest.param("0.015", Decimal("0.015"), id="str"),
        pytest.param(0.015, Decimal("0.015"), id="float"),
        pytest.param(3, Decimal(3), id="int"),
        pytest.param(None, None, id="none"),
    ],
)
def test_from_row_converts_cost_to_decimal(cost, expected):
    """from_row accepts cost as str/float/int from a database and makes it Decimal."""
    row = list(make_event().to_row())
    row[ROW_FIELDS.index("cost_usd")] = cost
    assert Event.from_row(tuple(row)).cost_usd == expected


def test_from_row_makes_naive_datetime_utc():
    """A naive started_at from a database is taken as UTC."""
    row = list(make_event().to_row())
    row[4] = T0.replace(tzinfo=None)
    assert Event.from_row(tuple(row)).started_at == T0


def test_from_row_converts_epoch_float_started_at_to_utc_datetime():
    """Hot-path rows carry started_at as epoch seconds; from_row gives a UTC datetime."""
    row = list(make_event().to_row())
    row[4] = T0.timestamp()
    started = Event.from_row(tuple(row)).started_at
    assert isinstance(started, datetime)
    assert started.utcoffset() == timedelta(0)
    assert abs(started - T0) < timedelta(microseconds=2)


def test_from_row_accepts_dicts_for_tags_and_metadata():
    """from_row accepts already-decoded dicts for tags and metadata."""
    row = list(make_event().to_row())
    row[15] = {"a": "b"}
    row[27] = {"k": 1}
    back = Event.from_row(tuple(row))
    assert back.tags == {"a": "b"}
    assert back.metadata == {"k": 1}


def test_total_tokens_is_input_plus_output():
    """total_tokens = input + output (cached are inside input)."""
    assert make_event().total_tokens == 1500


def test_as_dict_is_json_ready():
    """as_dict gives ISO time and cost as a string."""
    d = make_event().as_dict()
    assert d["started_at"] == T0.isoformat()
    assert d["cost_usd"] == "0.0123456789"
    assert list(d) == list(ROW_FIELDS)


def test_validate_event_accepts_a_good_event_and_normalises_time_to_utc():
    """validate_event returns the row; started_at in another zone becomes UTC."""
    plus2 = timezone(timedelta(hours=2))
    started = validate_event(make_event(started_at=T0.astimezone(plus2)))[4]
    if isinstance(started, float):  # the row may carry epoch seconds, as hot-path rows do
        started = datetime.fromtimestamp(started, UTC)
    assert started.utcoffset() == timedelta(0)
    assert abs(started - T0) < timedelta(microseconds=2)


BIG = 10**12 + 1
BAD_FIELDS = [
    pytest.param({"event_id": ""}, "event_id", id="event_id-empty"),
    pytest.param({"event_id": None}, "event_id", id="event_id-none"),
    pytest.param({"event_id": "x" * 65}, "event_id", id="event_id-long"),
    pytest.param({"trace_id": 5}, "trace_id", id="trace_id-int"),
    pytest.param({"span_id": ""}, "span_id", id="span_id-empty"),
    pytest.param({"parent_id": "p" * 65}, "parent_id", id="parent_id-long"),
    pytest.param({"started_at": T0.replace(tzinfo=None)}, "started_at", id="started_at-naive"),
    pytest.param({"started_at": 1.5}, "started_at", id="started_at-float"),
    pytest.param({"started_at": "2025-01-01"}, "started_at", id="started_at-str"),
    pytest.param({"duration_ms": -1.0}, "duration_ms", id="duration-negative"),
    pytest.param({"duration_ms": math.nan}, "duration_ms", id="duration-nan"),
    pytest.param({"duration_ms": math.inf}, "duration_ms", id="duration-inf"),
    pytest.param({"duration_ms": "5"}, "duration_ms", id="duration-str"),
    pytest.param({"duration_ms": True}, "duration_ms", id="duration-bool"),
    pytest.param({"duration_ms": 1e11}, "duration_ms", id="duration-huge"),
    pytest.param({"kind": "llm_call"}, "kind", id="kind-unknown"),
    pytest.param({"name": ""}, "name", id="name-empty"),
    pytest.param({"name": "n" * 513}, "name", id="name-long"),
    pytest.param({"provider": ""}, "provider", id="provider-empty"),
    pytest.param({"model": 4}, "model", id="model-int"),
    pytest.param({"bot_id": "b" * 257}, "bot_id", id="bot_id-long"),
    pytest.param({"user_id": ""}, "user_id", id="user_id-empty"),
    pytest.param({"task_id": 1}, "task_id", id="task_id-int"),
    pytest.param({"tenant_id": ""}, "tenant_id", id="tenant_id-empty"),
    pytest.param({"session_id": b"s"}, "session_id", id="session_id-bytes"),
    pytest.param({"tags": ["a"]}, "tags", id="tags-list"),
    pytest.param({"tags": {"a": 1}}, "tags", id="tags-int-value"),
    pytest.param({"tags": {"": "x"}}, "tags", id="tags-empty-key"),
    pytest.param({"tags": {str(i): "v" for i in range(65)}}, "tags", id="tags-too-many"),
    pytest.param({"input_tokens": -1}, "input_tokens", id="input-negative"),
    pytest.param({"input_tokens": "5"}, "input_tokens", id="input-str"),
    pytest.param({"input_tokens": 5.0}, "input_tokens", id="input-float"),
    pytest.param({"output_tokens": True}, "output_tokens", id="output-bool"),
    pytest.param({"output_tokens": BIG}, "output_tokens", id="output-huge"),
    pytest.param({"cache_read_tokens": -1}, "cache_read_tokens", id="cache-read-negative"),
    pytest.param({"cache_write_tokens": None}, "cache_write_tokens", id="cache-write-none"),
    pytest.param({"reasoning_tokens": math.nan}, "reasoning_tokens", id="reasoning-nan"),
    pytest.param({"cache_read_tokens": 960}, "cache_read_tokens", id="cache-exceeds-input"),
    pytest.param({"reasoning_tokens": 501}, "reasoning_tokens", id="reasoning-exceeds-output"),
    pytest.param({"cost_usd": Decimal(-1)}, "cost_usd", id="cost-negative"),
    pytest.param({"cost_usd": Decimal("NaN")}, "cost_usd", id="cost-nan"),
    pytest.param({"cost_usd": math.inf}, "cost_usd", id="cost-inf"),
    pytest.param({"cost_usd": "0.1"}, "cost_usd", id="cost-str"),
    pytest.param({"cost_usd": Decimal(10**8)}, "cost_usd", id="cost-huge"),
    pytest.param({"cost_source": "guess"}, "cost_source", id="cost_source-unknown"),
    pytest.param({"cost_usd": None}, "cost_usd", id="cost-none-but-priced"),
    pytest.param({"price_version": ""}, "price_version", id="price_version-empty"),
    pytest.param({"status": "failed"}, "status", id="status-unknown"),
    pytest.param({"error_type": ""}, "error_type", id="error_type-empty"),
    pytest.param({"metadata": [1]}, "metadata", id="metadata-list"),
    pytest.param({"metadata": {"o": object()}}, "metadata", id="metadata-object"),
    pytest.param({"metadata": {"s": {1, 2}}}, "metadata", id="metadata-set"),
    pytest.param({"metadata": {"n": math.nan}}, "metadata", id="metadata-nan"),
    pytest.param({"metadata": {"big": "x" * (64 * 1024)}}, "metadata", id="metadata-oversize"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_FIELDS)
def test_validate_event_rejects_bad_field_naming_it(changes, field):
    """validate_event raises InvalidEvent whose .field names the bad field."""
    with pytest.raises(InvalidEvent) as info:
        validate_event(make_event(**changes))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")
    assert isinstance(info.value, ValueError)


def test_validate_event_rejects_non_event():
    """validate_event of something that is not an Event names 'event'."""
    with pytest.raises(InvalidEvent) as info:
        validate_event({"event_id": "x"})  # type: ignore[arg-type]
    assert info.value.field == "event"


def test_validate_event_clips_long_error_message():
    """A long error_message is clipped to the limit, not rejected."""
    row = validate_event(make_event(error_message="m" * 20_000))
    message = row[ROW_FIELDS.index("error_message")]
    assert MAX_ERROR_MESSAGE_LEN - 14 <= len(message) <= MAX_ERROR_MESSAGE_LEN
    assert message.endswith("…[truncated]")
    assert message.startswith("m" * (MAX_ERROR_MESSAGE_LEN - 14))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("short", "short", id="short"),
        pytest.param(ValueError("boom"), "boom", id="exception-coerced"),
        pytest.param("x" * MAX_ERROR_MESSAGE_LEN, "x" * MAX_ERROR_MESSAGE_LEN, id="at-limit"),
    ],
)
def test_clip_error_message(value, expected):
    """clip_error_message coerces to str and leaves short messages alone."""
    assert clip_error_message(value) == expected
