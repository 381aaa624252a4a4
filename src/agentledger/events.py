"""The event: one model call, tool call, retrieval, hand-off, command or error.

Everything agentledger records is an :class:`Event`. On the recording hot path events travel
as plain row tuples (building a 28-field frozen dataclass costs several microseconds);
:class:`Event` objects are made from rows only when someone reads them.

Token convention (see ``docs/tokens.md``): ``input_tokens`` counts every prompt token,
cached ones included; ``output_tokens`` counts every generated token, reasoning included;
``cache_read_tokens`` and ``cache_write_tokens`` are subsets of ``input_tokens`` and
``reasoning_tokens`` is a subset of ``output_tokens``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal

from .errors import InvalidEvent

__all__ = [
    "COST_SOURCES",
    "KINDS",
    "ROW_FIELDS",
    "STATUSES",
    "Event",
    "Kind",
]

Kind = Literal["llm", "tool", "retrieval", "handoff", "command", "error", "custom"]
KINDS: Final = frozenset({"llm", "tool", "retrieval", "handoff", "command", "error", "custom"})
STATUSES: Final = frozenset({"ok", "error"})
COST_SOURCES: Final = frozenset({"priced", "reported", "unpriced"})

# Column order of a row tuple; the store's ``events`` table uses the same names.
ROW_FIELDS: Final = (
    "event_id", "trace_id", "span_id", "parent_id", "started_at", "duration_ms",
    "kind", "name", "provider", "model",
    "bot_id", "user_id", "task_id", "tenant_id", "session_id", "tags",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd", "cost_source", "price_version",
    "status", "error_type", "error_message", "metadata",
)  # fmt: skip
ATTRIBUTION_FIELDS: Final = ("bot_id", "user_id", "task_id", "tenant_id", "session_id")
TOKEN_FIELDS: Final = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
)  # fmt: skip

# Limits: generous for real use, small enough that one bad record cannot hurt the store.
MAX_TOKENS: Final = 10**12
MAX_DURATION_MS: Final = 10.0**10  # ~115 days
MAX_COST_USD: Final = Decimal(10**7)
MAX_ID_LEN: Final = 256
MAX_NAME_LEN: Final = 512
MAX_ERROR_MESSAGE_LEN: Final = 8192
MAX_TAGS: Final = 64
MAX_TAG_VALUE_LEN: Final = 1024
MAX_METADATA_BYTES: Final = 64 * 1024

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded thing that happened, with who caused it and what it cost."""

    event_id: str
    trace_id: str
    span_id: str
    parent_id: str | None
    started_at: datetime
    duration_ms: float
    kind: str
    name: str
    provider: str | None = None
    model: str | None = None
    bot_id: str | None = None
    user_id: str | None = None
    task_id: str | None = None
    tenant_id: str | None = None
    session_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal | None = None
    cost_source: str = "unpriced"
    price_version: str | None = None
    status: str = "ok"
    error_type: str | None = None
    error_message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (cached tokens are already inside input)."""
        return self.input_tokens + self.output_tokens

    def to_row(self) -> Row:
        """The row tuple in :data:`ROW_FIELDS` order, with tags and metadata as JSON text."""
        values = [getattr(self, name) for name in ROW_FIELDS]
        values[15] = dump_json(self.tags, "tags") if self.tags else None
        values[27] = dump_json(self.metadata, "metadata") if self.metadata else None
        return tuple(values)

    @classmethod
    def from_row(cls, row: Row) -> Event:
        """Build an event from a row tuple (JSON text or dicts for tags and metadata)."""
        values = list(row)
        values[15] = _load_json(values[15])
        values[27] = _load_json(values[27])
        if isinstance(values[21], (int, float, str)) and not isinstance(values[21], bool):
            values[21] = Decimal(str(values[21]))
        started = values[4]
        if isinstance(started, datetime):
            if started.tzinfo is None:
                values[4] = started.replace(tzinfo=UTC)
        else:  # rows on the hot path carry epoch seconds
            values[4] = datetime.fromtimestamp(started, UTC)
        values[5] = float(values[5])
        return cls(*values)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ISO time, cost as a decimal string."""
        out = {name: getattr(self, name) for name in ROW_FIELDS}
        out["started_at"] = self.started_at.isoformat()
        out["cost_usd"] = None if self.cost_usd is None else str(self.cost_usd)
        return out


def _load_json(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    loaded = json.loads(value)
    return loaded if isinstance(loaded, dict) else {"value": loaded}


# One encoder for every event: json.dumps with options builds a new one per call (~0.6 µs).
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class DeferredMetadata(dict[str, Any]):
    """Metadata that agentledger builds itself (the integrations): str keys, JSON-safe values
    (str of at most ~10,000 characters, int, finite float, bool, None) and few of them.

    It cannot fail to serialise, so the ledger keeps the dict in the row and the writer
    thread turns it into JSON (``encode_deferred``), off the caller's path. Anything else a
    caller passes as metadata is validated and serialised on the spot.
    """

    __slots__ = ()


def encode_deferred(value: DeferredMetadata) -> str | None:
    """The JSON of :class:`DeferredMetadata` (None if empty, or, never expected, invalid)."""
    if not value:
        return None
    try:
        return dump_json(dict(value), "metadata")
    except InvalidEvent:
        return None


def dump_json(value: Any, field_name: str) -> str:
    """Serialise tags or metadata compactly, rejecting what JSON cannot hold."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(field_name, f"not JSON-serialisable ({exc})") from None
    if len(text) > MAX_METADATA_BYTES:
        raise InvalidEvent(field_name, f"{len(text)} bytes of JSON, limit {MAX_METADATA_BYTES}")
    return text


# --- validation -------------------------------------------------------------------------
# Small, explicit checks; each raises InvalidEvent naming the field. They run on the caller's
# thread, so they are written for speed (type() is, not isinstance chains) where they are hot.


def check_tokens(name: str, value: Any) -> int:
    """A token count: a real int (not bool, not a numeric string), 0 <= n <= MAX_TOKENS."""
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidEvent(name, f"must be an int, got {type(value).__name__} {value!r:.40}")
        value = int(value)
    if value < 0:
        raise InvalidEvent(name, f"must be >= 0, got {value}")
    if value > MAX_TOKENS:
        raise InvalidEvent(name, f"must be <= {MAX_TOKENS}, got {value}")
    return int(value)


def check_duration_ms(value: Any, name: str = "duration_ms") -> float:
    """A duration in milliseconds: finite, >= 0, not absurd."""
    if type(value) is not float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidEvent(name, f"must be a number, got {type(value).__name__} {value!r:.40}")
        value = float(value)
    if not (0.0 <= value <= MAX_DURATION_MS):  # also false for NaN
        raise InvalidEvent(name, f"must be finite, >= 0 and <= {MAX_DURATION_MS:g}, got {value!r}")
    return float(value)


def check_cost(value: Any, name: str = "cost_usd") -> Decimal:
    """A cost in USD: Decimal, int or finite float (converted exactly via its repr)."""
    if type(value) is Decimal:
        dec = value
    elif isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidEvent(name, f"must be a Decimal or number, got {type(value).__name__}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(name, f"must be finite, got {value!r}")
        dec = Decimal(repr(value))  # 0.015 -> Decimal('0.015'), not the binary expansion
    else:
        dec = Decimal(value)
    if not dec.is_finite():
        raise InvalidEvent(name, f"must be finite, got {value!r}")
    if dec < 0:
        raise InvalidEvent(name, f"must be >= 0, got {value!r}")
    if dec > MAX_COST_USD:
        raise InvalidEvent(name, f"must be <= {MAX_COST_USD}, got {value!r}")
    return dec


def check_str(name: str, value: Any, limit: int = MAX_ID_LEN, *, optional: bool = True) -> Any:
    """A non-empty string of at most ``limit`` characters (or None where optional)."""
    if value is None:
        if optional:
            return None
        raise InvalidEvent(name, "is required")
    if type(value) is not str:
        raise InvalidEvent(name, f"must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidEvent(name, "must not be empty")
    if len(value) > limit:
        raise InvalidEvent(name, f"is {len(value)} characters, limit {limit}")
    return value


def check_tags(value: Any) -> dict[str, str]:
    """Tags: a small dict of short strings to strings."""
    if not isinstance(value, dict):
        raise InvalidEvent("tags", f"must be a dict[str, str], got {type(value).__name__}")
    if len(value) > MAX_TAGS:
        raise InvalidEvent("tags", f"has {len(value)} entries, limit {MAX_TAGS}")
    for key, item in value.items():
        if type(key) is not str or not key or len(key) > 128:
            raise InvalidEvent("tags", f"key {key!r:.40} must be a non-empty str of <= 128 chars")
        if type(item) is not str or len(item) > MAX_TAG_VALUE_LEN:
            raise InvalidEvent("tags", f"value of {key!r} must be a str of <= 1024 chars")
    return value


def check_usage_subsets(
    input_tokens: int, output_tokens: int, cache_read: int, cache_write: int, reasoning: int
) -> None:
    """Cached tokens are part of input, reasoning tokens part of output."""
    if cache_read + cache_write > input_tokens:
        raise InvalidEvent(
            "cache_read_tokens",
            f"cache reads ({cache_read}) + writes ({cache_write}) exceed input_tokens "
            f"({input_tokens}); input_tokens must include cached tokens (docs/tokens.md)",
        )
    if reasoning > output_tokens:
        raise InvalidEvent(
            "reasoning_tokens",
            f"{reasoning} exceeds output_tokens ({output_tokens}); output_tokens must "
            "include reasoning tokens (docs/tokens.md)",
        )


def check_started_at(value: Any) -> datetime:
    """A timezone-aware datetime, normalised to UTC."""
    if not isinstance(value, datetime):
        raise InvalidEvent("started_at", f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEvent("started_at", "must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def clip_error_message(value: Any) -> str | None:
    """Error messages are diagnostics: coerce to str and clip rather than reject."""
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    if len(text) > MAX_ERROR_MESSAGE_LEN:
        return text[: MAX_ERROR_MESSAGE_LEN - 14] + "…[truncated]"
    return text


def validate_event(event: Event) -> Row:
    """Check every field of ``event``; return its row or raise InvalidEvent on the first bad one."""
    if not isinstance(event, Event):
        raise InvalidEvent("event", f"must be an agentledger.Event, got {type(event).__name__}")
    check_str("event_id", event.event_id, 64, optional=False)
    check_str("trace_id", event.trace_id, 64, optional=False)
    check_str("span_id", event.span_id, 64, optional=False)
    check_str("parent_id", event.parent_id, 64)
    started = check_started_at(event.started_at)
    duration = check_duration_ms(event.duration_ms)
    if event.kind not in KINDS:
        raise InvalidEvent("kind", f"must be one of {sorted(KINDS)}, got {event.kind!r:.40}")
    check_str("name", event.name, MAX_NAME_LEN, optional=False)
    for name in ("provider", "model", *ATTRIBUTION_FIELDS):
        check_str(name, getattr(event, name))
    check_tags(event.tags)
    tokens = [check_tokens(name, getattr(event, name)) for name in TOKEN_FIELDS]
    check_usage_subsets(*tokens)
    cost = None if event.cost_usd is None else check_cost(event.cost_usd)
    if event.cost_source not in COST_SOURCES:
        raise InvalidEvent("cost_source", f"must be one of {sorted(COST_SOURCES)}")
    if cost is None and event.cost_source != "unpriced":
        raise InvalidEvent("cost_usd", f"is None but cost_source is {event.cost_source!r}")
    check_str("price_version", event.price_version, 64)
    if event.status not in STATUSES:
        raise InvalidEvent("status", f"must be 'ok' or 'error', got {event.status!r:.40}")
    check_str("error_type", event.error_type)
    if not isinstance(event.metadata, dict):
        raise InvalidEvent("metadata", f"must be a dict, got {type(event.metadata).__name__}")
    return (
        event.event_id, event.trace_id, event.span_id, event.parent_id,
        started.timestamp(), duration,
        event.kind, event.name, event.provider, event.model,
        event.bot_id, event.user_id, event.task_id, event.tenant_id, event.session_id,
        dump_json(event.tags, "tags") if event.tags else None,
        *tokens, cost, event.cost_source, event.price_version, event.status,
        event.error_type, clip_error_message(event.error_message),
        dump_json(event.metadata, "metadata") if event.metadata else None,
    )  # fmt: skip
