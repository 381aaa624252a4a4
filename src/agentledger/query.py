"""Questions to the store: totals, breakdowns, time series, percentiles — exact Decimal money.

One implementation serves the CLI, the seed clients (``get_task_usage`` ...) and, later,
the REST API, dashboard and alerts. It reads the ``events`` table through SQLAlchemy Core on
SQLite and PostgreSQL alike; money is summed exactly (``NUMERIC`` on PostgreSQL, an exact
decimal aggregate registered on every SQLite connection), never through floats.

::

    q = Query.open("sqlite:///usage.db")
    q.totals(bot_id="support-bot", since=days_ago(7)).cost_usd
    q.breakdown("model", since=days_ago(30))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import BigInteger, ColumnElement, Select, and_, case, func, select, type_coerce

from .errors import ConfigError
from .store.schema import events
from .store.sql import SQLStore

__all__ = ["BREAKDOWN_DIMENSIONS", "Group", "Query", "Summary", "days_ago"]

BREAKDOWN_DIMENSIONS: Final = (
    "bot_id", "user_id", "task_id", "tenant_id", "session_id",
    "model", "provider", "kind", "name", "status",
)  # fmt: skip
_FILTERS: Final = BREAKDOWN_DIMENSIONS
_ZERO: Final = Decimal(0)


def days_ago(days: float, *, now: datetime | None = None) -> datetime:
    """The aware UTC datetime ``days`` before now."""
    return (now or datetime.now(UTC)) - timedelta(days=days)


@dataclass(frozen=True, slots=True)
class Summary:
    """Aggregate figures over a set of events."""

    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = _ZERO
    unpriced_calls: int = 0
    duration_ms_total: float = 0.0
    unique_users: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def error_rate(self) -> float:
        """Errors over calls (0.0 with no calls)."""
        return self.errors / self.calls if self.calls else 0.0

    @property
    def avg_duration_ms(self) -> float:
        """Mean duration (0.0 with no calls)."""
        return self.duration_ms_total / self.calls if self.calls else 0.0


@dataclass(frozen=True, slots=True)
class Group:
    """One row of a breakdown: the dimension values and their summary."""

    key: tuple[Any, ...]
    summary: Summary = field(default_factory=Summary)


class Query:
    """Read-only questions over one store's events."""

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        self._dialect = store.dialect

    @classmethod
    def open(cls, url: str) -> Query:
        """Open the store at ``url`` (migrating it if needed) for querying."""
        return cls(SQLStore(url))

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()

    # --- building blocks ------------------------------------------------------------------
    def _where(
        self,
        since: datetime | None,
        until: datetime | None,
        tags: dict[str, str] | None,
        filters: dict[str, Any],
    ) -> list[ColumnElement[bool]]:
        unknown = set(filters) - set(_FILTERS)
        if unknown:
            raise ConfigError(f"unknown filter(s) {sorted(unknown)}; use {list(_FILTERS)}")
        clauses: list[ColumnElement[bool]] = []
        if since is not None:
            clauses.append(events.c.started_at >= _aware(since, "since"))
        if until is not None:
            clauses.append(events.c.started_at < _aware(until, "until"))
        for name, value in filters.items():
            if value is not None:
                clauses.append(events.c[name] == value)
        for key, value in (tags or {}).items():
            clauses.append(events.c.tags[key].as_string() == value)
        return clauses

    def _money_sum(self) -> Any:
        if self._dialect == "postgresql":
            return func.coalesce(func.sum(events.c.cost_usd), 0)
        return func.agentledger_dsum(events.c.cost_usd)  # exact; see store.sql

    def _summary_columns(self) -> list[Any]:
        c = events.c
        return [
            func.count().label("calls"),
            func.coalesce(func.sum(case((c.status == "error", 1), else_=0)), 0),
            func.coalesce(func.sum(c.input_tokens), 0),
            func.coalesce(func.sum(c.output_tokens), 0),
            func.coalesce(func.sum(c.cache_read_tokens), 0),
            func.coalesce(func.sum(c.cache_write_tokens), 0),
            func.coalesce(func.sum(c.reasoning_tokens), 0),
            self._money_sum(),
            func.coalesce(func.sum(case((c.cost_source == "unpriced", 1), else_=0)), 0),
            func.coalesce(func.sum(c.duration_ms), 0.0),
            func.count(func.distinct(c.user_id)),
        ]

    @staticmethod
    def _summary(values: Sequence[Any]) -> Summary:
        (calls, errors, inp, out, cr, cw, rs, cost, unpriced, duration, users) = values
        return Summary(
            int(calls), int(errors), int(inp), int(out), int(cr), int(cw), int(rs),
            Decimal(str(cost)) if cost is not None else _ZERO, int(unpriced),
            float(duration), int(users),
        )  # fmt: skip

    def _run(self, query: Select[Any]) -> list[Any]:
        with self.store.engine.connect() as conn:
            return list(conn.execute(query))

    # --- questions ------------------------------------------------------------------------
    def totals(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: dict[str, str] | None = None,
        **filters: Any,
    ) -> Summary:
        """Figures over every event matching the time range and filters."""
        query = select(*self._summary_columns()).where(
            and_(True, *self._where(since, until, tags, filters))
        )
        return self._summary(self._run(query)[0])

    def breakdown(
        self,
        by: str | Sequence[str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: dict[str, str] | None = None,
        order: str = "cost",
        limit: int | None = None,
        **filters: Any,
    ) -> list[Group]:
        """Figures per value of ``by`` (one dimension or several), largest first.

        ``order`` is ``"cost"``, ``"calls"``, ``"tokens"`` or ``"key"``.
        """
        dims = (by,) if isinstance(by, str) else tuple(by)
        bad = [d for d in dims if d not in BREAKDOWN_DIMENSIONS]
        if bad or not dims:
            raise ConfigError(f"cannot break down by {bad or dims}; use {BREAKDOWN_DIMENSIONS}")
        keys = [events.c[d] for d in dims]
        query = (
            select(*keys, *self._summary_columns())
            .where(and_(True, *self._where(since, until, tags, filters)))
            .group_by(*keys)
        )
        groups = [
            Group(tuple(row[: len(dims)]), self._summary(row[len(dims) :]))
            for row in self._run(query)
        ]
        return _ordered(groups, order)[:limit]

    def timeseries(
        self,
        bucket: str = "day",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: dict[str, str] | None = None,
        **filters: Any,
    ) -> list[Group]:
        """Figures per UTC ``"day"`` or ``"hour"``, oldest first; key is the bucket start."""
        if bucket not in ("day", "hour"):
            raise ConfigError(f"bucket must be 'day' or 'hour', got {bucket!r}")
        start: Any
        if self._dialect == "postgresql":
            start = func.date_trunc(bucket, func.timezone("UTC", events.c.started_at))
        else:  # integer microseconds since the epoch
            width = 86_400_000_000 if bucket == "day" else 3_600_000_000
            micros = type_coerce(events.c.started_at, BigInteger)  # plain integer arithmetic
            start = (micros // width) * width  # `/` would be true division
        start = start.label("bucket")
        query = (
            select(start, *self._summary_columns())
            .where(and_(True, *self._where(since, until, tags, filters)))
            .group_by(start)
            .order_by(start)
        )
        out = []
        for row in self._run(query):
            value = row[0]
            if isinstance(value, datetime):
                when = value.replace(tzinfo=UTC)
            else:
                when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))
            out.append(Group((when,), self._summary(row[1:])))
        return out

    def percentiles(
        self,
        quantiles: Sequence[float] = (50, 95, 99),
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: dict[str, str] | None = None,
        **filters: Any,
    ) -> dict[float, float]:
        """Duration percentiles in ms (nearest-rank), e.g. ``{50: 812.0, 95: 2400.0, ...}``."""
        for q in quantiles:
            if not 0 < q <= 100:
                raise ConfigError(f"quantiles are in (0, 100], got {q!r}")
        query = (
            select(events.c.duration_ms)
            .where(and_(True, *self._where(since, until, tags, filters)))
            .order_by(events.c.duration_ms)
        )
        values = [float(r[0]) for r in self._run(query)]
        return {q: _nearest_rank(values, q) for q in quantiles}


def _nearest_rank(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _ordered(groups: list[Group], order: str) -> list[Group]:
    keys = {
        "cost": lambda g: (-g.summary.cost_usd, -g.summary.calls, _sortable(g.key)),
        "calls": lambda g: (-g.summary.calls, _sortable(g.key)),
        "tokens": lambda g: (-g.summary.total_tokens, _sortable(g.key)),
        "key": lambda g: _sortable(g.key),
    }
    if order not in keys:
        raise ConfigError(f"order must be one of {sorted(keys)}, got {order!r}")
    return sorted(groups, key=keys[order])


def _sortable(key: tuple[Any, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((v is None, "" if v is None else str(v)) for v in key)


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ConfigError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)
