"""The tables, declared once for SQLite and PostgreSQL.

Two portable types carry the decisions that matter for exactness and speed:

* :class:`UTCDateTime` is ``TIMESTAMPTZ`` on PostgreSQL and integer microseconds since the
  epoch on SQLite (SQLite has no time type; integers sort and range-scan correctly and cost
  a fraction of ISO strings to write). Python sees aware UTC datetimes either way.
* :class:`Money` is ``NUMERIC`` on PostgreSQL and ``TEXT`` on SQLite: SQLite's NUMERIC
  affinity would silently turn ``'0.00725'`` into a binary float. Python sees ``Decimal``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "Money", "UTCDateTime", "events", "metadata", "rollup_marks", "rollup_members",
    "rollup_tables", "rollup_user_totals",
    "user_numbers",
]  # fmt: skip

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetime: TIMESTAMPTZ on PostgreSQL, int microseconds on SQLite."""

    impl = BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(BigInteger())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, (int, float)):
            value = datetime.fromtimestamp(value, UTC)
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC datetime is required")
        if dialect.name == "postgresql":
            return value
        return to_epoch_us(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return from_epoch_us(int(value))


class Money(TypeDecorator[Decimal]):
    """Exact USD: NUMERIC on PostgreSQL, decimal text on SQLite."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_us(value: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(value: int) -> datetime:
    """Inverse of :func:`to_epoch_us`."""
    from datetime import timedelta

    return _EPOCH + timedelta(microseconds=value)


JSONDoc = JSON().with_variant(JSONB(), "postgresql")
_ID = String(64)
_LABEL = String(256)

events = Table(
    "events",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("trace_id", _ID, nullable=False),
    Column("span_id", _ID, nullable=False),
    Column("parent_id", _ID),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(512), nullable=False),
    Column("provider", _LABEL),
    Column("model", _LABEL),
    Column("bot_id", _LABEL),
    Column("user_id", _LABEL),
    Column("task_id", _LABEL),
    Column("tenant_id", _LABEL),
    Column("session_id", _LABEL),
    Column("tags", JSONDoc),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("cost_usd", Money()),
    Column("cost_source", String(16), nullable=False),
    Column("price_version", String(64)),
    Column("status", String(8), nullable=False),
    Column("error_type", _LABEL),
    Column("error_message", Text),
    Column("metadata", JSONDoc),
    Index("ix_events_started_at", "started_at"),
    Index("ix_events_bot_time", "bot_id", "started_at"),
    Index("ix_events_user_time", "user_id", "started_at"),
    Index("ix_events_task_time", "task_id", "started_at"),
    Index("ix_events_tenant_time", "tenant_id", "started_at"),
    Index("ix_events_trace", "trace_id"),
)


def _rollup_table(name: str, dims: tuple[str, ...]) -> Table:
    from .rollups import COST, HIST_COLUMNS, MEASURES, NO_HISTOGRAM, table_name

    label = {"kind": String(16), "status": String(8), "name": String(512)}
    return Table(
        table_name(name),
        metadata,
        Column("grain", String(1), primary_key=True),
        Column("bucket", UTCDateTime(), primary_key=True),
        *(Column(d, label.get(d, _LABEL), primary_key=True) for d in dims),
        *(Column(m, BigInteger, nullable=False) for m in MEASURES[:COST]),
        Column("cost_nano", BigInteger, nullable=False),  # see rollups.MEASURES: exact
        Column("cost_frac", BigInteger, nullable=False),  # money as integers, plus a
        Column("cost_extra", Money()),  # decimal for costs needing > 21 decimal places
        Column("unpriced_calls", BigInteger, nullable=False),
        Column("duration_ms", Float, nullable=False),
        *(Column(h, BigInteger, nullable=False) for h in HIST_COLUMNS if name not in NO_HISTOGRAM),
        sqlite_with_rowid=False,  # clustered by its key: one B-tree, range scans contiguous
    )


def _rollups() -> dict[str, Table]:
    from .rollups import SPECS

    return {name: _rollup_table(name, dims) for name, dims in SPECS.items()}


#: Rollup name -> its table (see :mod:`agentledger.store.rollups`).
rollup_tables: dict[str, Table] = _rollups()


#: A small number per distinct user id, so sets of users fit in bitmaps.
user_numbers = Table(
    "user_numbers",
    metadata,
    Column("n", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("user_id", _LABEL, nullable=False, unique=True),
)

#: Which users were active per minute/hour/day and (kind, name): exact distinct-user counts
#: over any range are unions of these bitmaps (bit n = user number n, little-endian bytes).
rollup_members = Table(
    "rollup_members",
    metadata,
    Column("grain", String(1), primary_key=True),
    Column("bucket", UTCDateTime(), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("name", String(512), primary_key=True),
    Column("members", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)


def _user_totals() -> Table:
    from .rollups import MEASURES, NO_HISTOGRAM

    assert "users" in NO_HISTOGRAM
    counts = MEASURES[: MEASURES.index("cost_nano")]
    return Table(
        "rollup_user_totals",
        metadata,
        Column("user_id", _LABEL, primary_key=True),
        Column("kind", String(16), primary_key=True),
        Column("bucket", UTCDateTime(), primary_key=True),
        *(Column(m, BigInteger, nullable=False) for m in counts),
        Column("cost_nano", BigInteger, nullable=False),
        Column("cost_frac", BigInteger, nullable=False),
        Column("cost_extra", Money()),
        Column("unpriced_calls", BigInteger, nullable=False),
        Column("duration_ms", Float, nullable=False),
        sqlite_with_rowid=False,  # clustered by (user, kind, hour): one seek finds "as of"
    )


#: Per (user, kind), running totals of the ``users`` rollup through the end of each hour the
#: pair was active: the sums over any run of whole hours are two "as of" rows per pair
#: (``rollup_marks`` grain ``c``: right for the hours before it; built by compaction).
rollup_user_totals = _user_totals()

#: How far the coarse rollup rows are complete (see :class:`agentledger.store.rollups.Marks`):
#: one row per coarse grain, ``upto`` in µs since the epoch.
rollup_marks = Table(
    "rollup_marks",
    metadata,
    Column("grain", String(1), primary_key=True),
    Column("upto", BigInteger, nullable=False),
)
