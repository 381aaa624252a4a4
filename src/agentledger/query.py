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

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Numeric,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.exc import OperationalError

from ._aggregates import DURATION_BOUNDS_S
from .errors import ConfigError
from .store import rollups
from .store.schema import events, from_epoch_us, rollup_tables, to_epoch_us
from .store.sql import SQLStore, sum_overflowed

__all__ = ["BREAKDOWN_DIMENSIONS", "Group", "Query", "Summary", "days_ago"]

BREAKDOWN_DIMENSIONS: Final = (
    "bot_id", "user_id", "task_id", "tenant_id", "session_id",
    "model", "provider", "kind", "name", "status",
)  # fmt: skip
_FILTERS: Final = BREAKDOWN_DIMENSIONS
_ZERO: Final = Decimal(0)
#: Summary field -> the rollup measure columns (rollups.MEASURES positions) that make it.
_FIELDS: Final[dict[str, tuple[int, ...]]] = {
    "calls": (0,), "errors": (1,), "input_tokens": (2,), "output_tokens": (3,),
    "cache_read_tokens": (4,), "cache_write_tokens": (5,), "reasoning_tokens": (6,),
    "cost_usd": (7, 8, 9), "unpriced_calls": (10,), "duration_ms_total": (11,),
}  # fmt: skip
_ALL: Final = frozenset(range(rollups.HIST))
#: Summary's fields in rollups.MEASURES positions (money: the exact decimal's position).
_SUMMARY_POSITIONS: Final = (0, 1, 2, 3, 4, 5, 6, rollups.COST + 2, 10, 11)


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
    #: Distinct users; None unless asked for (``distinct_users=True``), which reads events.
    unique_users: int | None = None

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

    def __init__(self, store: SQLStore, *, use_rollups: bool = True) -> None:
        self.store = store
        self._dialect = store.dialect
        #: Answer from rollups where they can (False: always read the events table).
        self.use_rollups = use_rollups

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

    def _event_sums(self) -> list[Any]:
        """Sums over events for each :data:`rollups.MEASURES` position before the histogram;
        money is the exact decimal sum in the ``cost_extra`` position (the others 0)."""
        c = events.c
        return [
            func.count().label("calls"),
            func.coalesce(func.sum(case((c.status == "error", 1), else_=0)), 0),
            func.coalesce(func.sum(c.input_tokens), 0),
            func.coalesce(func.sum(c.output_tokens), 0),
            func.coalesce(func.sum(c.cache_read_tokens), 0),
            func.coalesce(func.sum(c.cache_write_tokens), 0),
            func.coalesce(func.sum(c.reasoning_tokens), 0),
            literal(0, BigInteger),
            literal(0, BigInteger),
            self._money(c.cost_usd),
            func.coalesce(func.sum(case((c.cost_source == "unpriced", 1), else_=0)), 0),
            func.coalesce(func.sum(c.duration_ms), 0.0),
        ]

    def _summary_columns(
        self, distinct_users: bool = False, wanted: frozenset[int] = _ALL
    ) -> list[Any]:
        """The Summary's sums over events (and distinct users, when asked: it costs); sums
        not ``wanted`` (rollups.MEASURES positions) are constant zeros."""
        sums = self._event_sums()
        # Summary order: the money column stands for the three rollup money measures.
        columns = [sums[i] if i in wanted else _nothing(i) for i in _SUMMARY_POSITIONS]
        if distinct_users:
            columns.append(func.count(func.distinct(events.c.user_id)))
        return columns

    @staticmethod
    def _summary(values: Sequence[Any], distinct_users: bool = True) -> Summary:
        (calls, errors, inp, out, cr, cw, rs, cost, unpriced, duration) = values[:10]
        return Summary(
            int(calls), int(errors), int(inp), int(out), int(cr), int(cw), int(rs),
            rollups.tidy(Decimal(str(cost))) if cost is not None else _ZERO, int(unpriced),
            float(duration), int(values[10]) if distinct_users else None,
        )  # fmt: skip

    def _run(self, query: Select[Any]) -> list[Any]:
        with self.store.engine.connect() as conn:
            return list(conn.execute(query).all())

    # --- rollups --------------------------------------------------------------------------
    def _spec(
        self,
        dims: Sequence[str],
        tags: dict[str, str] | None,
        filters: dict[str, Any],
        distinct_users: bool,
        histogram: bool = False,
    ) -> str | None:
        """The rollup that can answer, or None (then the events table does).

        Distinct users come from the member bitmaps, kept per (kind, name) only.
        """
        if tags or not self.use_rollups:
            return None
        used = {*dims, *(k for k, v in filters.items() if v is not None)}
        if distinct_users and not used <= {"kind", "name"}:
            return None
        unknown = set(filters) - set(_FILTERS)
        if unknown:
            raise ConfigError(f"unknown filter(s) {sorted(unknown)}; use {list(_FILTERS)}")
        return rollups.choose(used, histogram=histogram, dialect=self._dialect)

    def _distinct_users(
        self,
        dims: Sequence[str],
        since: datetime | None,
        until: datetime | None,
        filters: dict[str, Any],
        marks: rollups.Marks | None = None,
    ) -> dict[tuple[Any, ...], int]:
        """Exact distinct users per ``dims`` (a subset of kind, name): unions of bitmaps."""
        from .store.schema import rollup_members, user_numbers

        lo = None if since is None else to_epoch_us(_aware(since, "since"))
        hi = None if until is None else to_epoch_us(_aware(until, "until"))
        if lo is not None and hi is not None and lo >= hi:
            return {}
        bits: dict[tuple[Any, ...], int] = {}
        marks = self.store.marks() if marks is None else marks
        for segment in rollups.refine(rollups.plan(lo, hi, minutes=True), marks, True):
            if segment.source == "events":
                e, u = events.c, user_numbers.c
                clauses = self._where(
                    None if segment.lo is None else from_epoch_us(segment.lo),
                    None if segment.hi is None else from_epoch_us(segment.hi),
                    None,
                    filters,
                )
                query = (
                    select(*[e[d] for d in dims], u.n)
                    .select_from(events.join(user_numbers, u.user_id == e.user_id))
                    .where(and_(True, *clauses))
                    .distinct()
                )
                for row in self._run(query):
                    key = tuple(row[:-1])
                    bits[key] = bits.get(key, 0) | (1 << int(row[-1]))
                continue
            c = rollup_members.c
            where = rollup_where(c, segment, filters)
            for row in self._run(select(*[c[d] for d in dims], c.members).where(and_(*where))):
                key = tuple(row[:-1])
                bits[key] = bits.get(key, 0) | int.from_bytes(bytes(row[-1]), "little")
        return {key: value.bit_count() for key, value in bits.items()}

    def _from_rollups(self, *args: Any, **kwargs: Any) -> dict[tuple[Any, ...], list[Any]]:
        """:meth:`_from_rollups_once`; on SQLite, whose ``sum()`` stops at 2**63, again with
        ``cost_nano`` summed in Python if it overflowed (more than about $9.2e9 in one
        answer: the one case that calls Python per rollup row)."""
        try:
            return self._from_rollups_once(*args, **kwargs)
        except OperationalError as exc:
            if not sum_overflowed(exc, self._dialect):
                raise
        return self._from_rollups_once(*args, **kwargs, exact_nano=True)

    @staticmethod
    def _sum(column: Any, measure: str, exact_nano: bool) -> Any:
        if exact_nano and measure == "cost_nano":
            return func.agentledger_isum(column)
        return func.sum(column)

    def _from_rollups_once(
        self,
        spec: str,
        dims: Sequence[str],
        since: datetime | None,
        until: datetime | None,
        filters: dict[str, Any],
        *,
        series: str | None = None,
        histogram: bool = False,
        wanted: frozenset[int] = _ALL,
        marks: rollups.Marks | None = None,
        exact_nano: bool = False,
    ) -> dict[tuple[Any, ...], list[Any]]:
        """Measures (rollups.MEASURES order) per ``(bucket?, *dims)``, exact for any range.

        Whole days and hours come from the rollup, the partial hours at the edges from the
        events (see :func:`agentledger.store.rollups.plan`), and buckets not compacted yet
        from the finer rows (:func:`agentledger.store.rollups.refine`); per-user questions
        read runs of whole hours from the running user totals (``plan_totals``).
        """
        lo = None if since is None else to_epoch_us(_aware(since, "since"))
        hi = None if until is None else to_epoch_us(_aware(until, "until"))
        if lo is not None and hi is not None and lo >= hi:
            return {}
        finest = "h" if series == "hour" else "d"
        minutely = spec in rollups.MINUTELY
        marks = self.store.marks() if marks is None else marks
        segments = None
        lazy = spec == "users" and self._dialect in rollups.LAZY_USERS
        if spec == "users" and series is None:
            segments = rollups.plan_totals(lo, hi, marks, lazy=lazy)
        if segments is None:
            plan = rollups.plan(lo, hi, finest=finest, minutes=minutely)
            segments = rollups.refine(plan, marks, minutely, lazy=lazy)
        if not minutely:
            segments = self._cheaper_edges(spec, segments, marks.hour if lazy else None)
        # Only the measures asked for travel through the pieces and the sums (the rest
        # are zeros in the answer): the users report sums 4 columns per row, not 12.
        cols = sorted(wanted)
        if histogram:
            cols += range(rollups.HIST, rollups.HIST + len(rollups.HIST_COLUMNS))
        parts: list[Select[Any]] = []
        for segment in segments:
            if segment.source == "events":
                parts.append(self._events_part(dims, segment, filters, series, histogram, cols))
            elif segment.source == "c":
                parts += self._totals_parts(dims, segment, filters, cols)
            else:
                parts.append(
                    self._rollup_part(spec, dims, segment, filters, series, cols, exact_nano)
                )
        # One statement: the database sums the pieces (rollup rows and edge events), so
        # only one row per answer key comes back to Python, however long the range.
        union = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()
        n = len(dims) + (series is not None)
        keys = [union.c[f"k{i}"] for i in range(n)]
        extra = rollups.COST + 2
        sums = [
            self._money(union.c[f"m{i}"])
            if i == extra
            else self._sum(union.c[f"m{i}"], rollups.MEASURES[i], exact_nano)
            for i in cols
        ]
        query = select(*keys, *sums).group_by(*keys) if keys else select(*sums)
        read = rollups.reader(cols, n, histogram)
        out: dict[tuple[Any, ...], list[Any]] = {}
        for row in self._run(query):
            key = tuple(row[:n])
            if series is not None:
                key = (_bucket_to_us(key[0]), *key[1:])
            if not keys and not row[n]:
                continue  # no rows at all: the aggregate row of an empty set
            out[key] = read(row)
        return out

    def _cheaper_edges(
        self, spec: str, segments: list[rollups.Segment], built_below: int | None = None
    ) -> list[rollups.Segment]:
        """Each partial hour of events read from whichever side costs less: its own events,
        or the hour's rows of ``spec`` less the events of the rest of the hour (see
        :func:`rollups.flip`). Counting is an index range scan of one hour; a report ending
        now then reads no events. The hour's rows count as much as events (each costs about
        the same to read and sum): half an hour of dense events flipped to the other half
        plus thousands of per-user hour rows read more, not less (session 19: the ``users``
        report's 30-minute edge at 10M events, 12.6 ms its own way against 18.2 flipped).
        ``built_below``: hour rows are built only for the hours before it (lazy rollups);
        the others have no row to flip to."""
        out: list[rollups.Segment] = []
        for segment in segments:
            hour = rollups.inside_one_hour(segment)
            if hour is None or (built_below is not None and hour >= built_below):
                out.append(segment)
                continue
            assert segment.lo is not None
            assert segment.hi is not None
            at = events.c.started_at
            inside = and_(at >= from_epoch_us(segment.lo), at < from_epoch_us(segment.hi))
            whole, part = self._run(
                select(func.count(), func.coalesce(func.sum(case((inside, 1), else_=0)), 0)).where(
                    at >= from_epoch_us(hour), at < from_epoch_us(hour + rollups.HOUR_US)
                )
            )[0]
            rest = whole - part  # the hour's rows are counted only when they could matter
            cheaper = rest < part and rest + self._hour_rows(spec, hour) < part
            out += rollups.flip(segment) if cheaper else [segment]
        return out

    def _hour_rows(self, spec: str, hour: int) -> int:
        """How many rows ``spec`` holds for the hour starting at ``hour`` (µs): an index
        range count (the rollups are keyed by grain and bucket first)."""
        c = rollup_tables[spec].c
        query = select(func.count()).where(c.grain == "h", c.bucket == from_epoch_us(hour))
        return int(self._run(query)[0][0])

    def _money(self, column: Any) -> Any:
        return money_sum(column, self._dialect)

    def _signed(self, column: Any, sign: int, money: bool = False) -> Any:
        """``column``, negated for a subtracted segment (exactly, for a decimal)."""
        if sign > 0:
            return column
        if money and self._dialect != "postgresql":
            return func.agentledger_dneg(column)
        return -column

    def _totals_parts(
        self,
        dims: Sequence[str],
        segment: rollups.Segment,
        filters: dict[str, Any],
        cols: Sequence[int],
    ) -> list[Select[Any]]:
        """A ``c`` segment: per (user, kind), the running totals as of its end, less those
        as of its start (one row per pair); two seeks per pair and bound, however many days
        it spans."""
        from .store.schema import rollup_user_totals, user_numbers

        kinds_table = rollup_tables[rollups.stored("kinds", self._dialect)]
        user, kind = filters.get("user_id"), filters.get("kind")
        users = (
            select(literal(user).label("user_id"))
            if user is not None
            else union_all(
                select(user_numbers.c.user_id.label("user_id")),
                select(literal(rollups.NONE).label("user_id")),
            )
        ).subquery("u")
        # Every kind with totals: those of the day rows, and of the hours of the last
        # (partial) day of totals, whose kinds may not have a day row yet. Read first and
        # given as constants: a handful of rows the planner puts in the outer loop (as a
        # subquery, its row estimate could send SQLite to scan the totals by user instead
        # of seeking each pair: 2x slower).
        assert segment.hi is not None  # plan_totals ends a c segment at a totals bound
        if kind is not None:
            known = [kind]
        else:
            today = from_epoch_us(segment.hi - segment.hi % rollups.DAY_US)
            c = kinds_table.c
            found = self._run(
                select(c.kind)
                .where(or_(c.grain == "d", and_(c.grain == "h", c.bucket >= today)))
                .distinct()
            )
            known = sorted(row[0] for row in found) or [rollups.NONE]  # none: matches nothing
        kinds = union_all(*(select(literal(k).label("kind")) for k in known)).subquery("k")
        keys = {"user_id": users.c.user_id, "kind": kinds.c.kind}

        def as_of(bound: int, name: str) -> tuple[Any, Any]:
            """The totals table under ``name`` and its join: each pair's last row before
            ``bound``. PostgreSQL: a LATERAL subquery (one backward index seek; with the
            SQLite form below its planner hashed the whole table); SQLite, which has no
            LATERAL: one seek for the bucket, one for the row."""
            if self._dialect == "postgresql":
                t = rollup_user_totals.alias(f"{name}t")
                row = (
                    select(t)
                    .where(
                        t.c.user_id == users.c.user_id,
                        t.c.kind == kinds.c.kind,
                        t.c.bucket < from_epoch_us(bound),
                    )
                    .order_by(t.c.bucket.desc())
                    .limit(1)
                    .lateral(name)
                )
                return row, true()
            x, t = rollup_user_totals.alias(f"{name}x"), rollup_user_totals.alias(name)
            last = (
                select(func.max(x.c.bucket))
                .where(
                    x.c.user_id == users.c.user_id,
                    x.c.kind == kinds.c.kind,
                    x.c.bucket < from_epoch_us(bound),
                )
                .scalar_subquery()
            )
            on = and_(t.c.user_id == users.c.user_id, t.c.kind == kinds.c.kind, t.c.bucket == last)
            return t, on

        end, end_on = as_of(segment.hi, "e")
        joined = users.join(kinds, true()).join(end, end_on)
        start = None
        if segment.lo is not None:
            start, start_on = as_of(segment.lo, "s")
            joined = joined.outerjoin(start, start_on)
        columns = []
        for i in cols:
            m = rollups.MEASURES[i]
            column = end.c[m]
            if start is not None and m == "cost_extra":
                less = (
                    func.agentledger_dadd(column, func.agentledger_dneg(start.c[m]))
                    if self._dialect != "postgresql"
                    else func.coalesce(column, 0) - start.c[m]
                )
                column = case((start.c[m].is_(None), column), else_=less)
            elif start is not None:
                column = column - func.coalesce(start.c[m], 0)
            columns.append(column)
        return [
            select(
                *(func.nullif(keys[d], rollups.NONE).label(f"k{i}") for i, d in enumerate(dims)),
                *(col.label(f"m{i}") for i, col in zip(cols, columns, strict=True)),
            ).select_from(joined)
        ]

    def _series_expr(self, column: Any, series: str) -> Any:
        """``column`` (a UTC time) floored to its day or hour, the same way for both sources."""
        if self._dialect == "postgresql":
            return func.date_trunc(series, func.timezone("UTC", column))
        width = 86_400_000_000 if series == "day" else 3_600_000_000
        micros = type_coerce(column, BigInteger)  # plain integer arithmetic
        return (micros // width) * width  # `/` would be true division

    def _rollup_part(
        self,
        spec: str,
        dims: Sequence[str],
        segment: rollups.Segment,
        filters: dict[str, Any],
        series: str | None,
        cols: Sequence[int],
        exact_nano: bool = False,
    ) -> Select[Any]:
        c = rollup_tables[spec].c
        keys: list[Any] = [] if series is None else [self._series_expr(c.bucket, series)]
        keys += [func.nullif(c[d], rollups.NONE) for d in dims]  # '' is NULL in events
        columns = []
        for i in cols:
            m = rollups.MEASURES[i]
            total = self._money(c[m]) if m == "cost_extra" else self._sum(c[m], m, exact_nano)
            columns.append(self._signed(total, segment.sign, m == "cost_extra").label(f"m{i}"))
        labelled = [k.label(f"k{i}") for i, k in enumerate(keys)]
        query = select(*labelled, *columns).where(and_(*rollup_where(c, segment, filters)))
        return query.group_by(*keys) if keys else query

    def _events_part(
        self,
        dims: Sequence[str],
        segment: rollups.Segment,
        filters: dict[str, Any],
        series: str | None,
        histogram: bool,
        cols: Sequence[int],
    ) -> Select[Any]:
        since = None if segment.lo is None else from_epoch_us(segment.lo)
        until = None if segment.hi is None else from_epoch_us(segment.hi)
        c = events.c
        keys: list[Any] = [] if series is None else [self._series_expr(c.started_at, series)]
        keys += [c[d] for d in dims]
        # Money as an exact decimal sum (a Python aggregate step per event on SQLite: SQL
        # string functions splitting it into integers measured slower).
        sums = self._event_sums()
        if histogram:
            # Bucket i holds durations in (bound[i-1], bound[i]], as the live aggregates.
            bounds = [b * 1000.0 for b in DURATION_BOUNDS_S]
            lows: list[float | None] = [None, *bounds]
            highs: list[float | None] = [*bounds, None]
            for low, high in zip(lows, highs, strict=True):
                test = and_(
                    True,
                    *([c.duration_ms > low] if low is not None else []),
                    *([c.duration_ms <= high] if high is not None else []),
                )
                sums.append(func.coalesce(func.sum(case((test, 1), else_=0)), 0))
        extra = rollups.COST + 2
        columns = [self._signed(sums[i], segment.sign, i == extra).label(f"m{i}") for i in cols]
        labelled = [k.label(f"k{i}") for i, k in enumerate(keys)]
        query = select(*labelled, *columns).where(
            and_(True, *self._where(since, until, None, filters))
        )
        return query.group_by(*keys) if keys else query

    # --- questions ------------------------------------------------------------------------
    def totals(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: dict[str, str] | None = None,
        distinct_users: bool = False,
        measures: Iterable[str] | None = None,
        **filters: Any,
    ) -> Summary:
        """Figures over every event matching the time range and filters.

        ``distinct_users=True`` also counts distinct users (read from the events table).
        ``measures`` (Summary field names, e.g. ``("calls", "cost_usd")``) limits the sums
        to those (the other fields are 0; ``calls`` is always summed): a report that shows
        two figures need not pay for ten.
        """
        wanted = _wanted(measures)
        spec = self._spec((), tags, filters, distinct_users)
        if spec is not None:
            marks = self.store.marks()  # one read for both parts of the answer
            found = self._from_rollups(spec, (), since, until, filters, wanted=wanted, marks=marks)
            summary = _summary_of(found.get(()))
            if distinct_users:
                users = self._distinct_users((), since, until, filters, marks).get((), 0)
                summary = dataclasses.replace(summary, unique_users=users)
            return summary
        columns = self._summary_columns(distinct_users, wanted)
        query = select(*columns).where(and_(True, *self._where(since, until, tags, filters)))
        return self._summary(self._run(query)[0], distinct_users)

    def breakdown(
        self,
        by: str | Sequence[str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: dict[str, str] | None = None,
        order: str | None = "cost",
        limit: int | None = None,
        distinct_users: bool = False,
        measures: Iterable[str] | None = None,
        **filters: Any,
    ) -> list[Group]:
        """Figures per value of ``by`` (one dimension or several), largest first.

        ``order`` is ``"cost"``, ``"calls"``, ``"tokens"``, ``"key"`` or None (as found).
        ``measures`` (Summary field names, e.g. ``("calls", "cost_usd")``) limits the sums
        to those (the other fields are 0; ``calls`` is always summed): a report that shows
        two figures need not pay for ten.
        """
        wanted = _wanted(measures)
        dims = (by,) if isinstance(by, str) else tuple(by)
        bad = [d for d in dims if d not in BREAKDOWN_DIMENSIONS]
        if bad or not dims:
            raise ConfigError(f"cannot break down by {bad or dims}; use {BREAKDOWN_DIMENSIONS}")
        spec = self._spec(dims, tags, filters, distinct_users)
        if spec is not None:
            marks = self.store.marks()  # one read for both parts of the answer
            found = self._from_rollups(
                spec, dims, since, until, filters, wanted=wanted, marks=marks
            )
            users = (
                self._distinct_users(dims, since, until, filters, marks) if distinct_users else {}
            )
            groups = [
                Group(key, _summary_of(m, users.get(key, 0) if distinct_users else None))
                for key, m in found.items()
                if m[0]
            ]
            return _ordered(groups, order)[:limit]
        keys = [events.c[d] for d in dims]
        columns = self._summary_columns(distinct_users, wanted)
        query = (
            select(*keys, *columns)
            .where(and_(True, *self._where(since, until, tags, filters)))
            .group_by(*keys)
        )
        groups = [
            Group(tuple(row[: len(dims)]), self._summary(row[len(dims) :], distinct_users))
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
        distinct_users: bool = False,
        measures: Iterable[str] | None = None,
        **filters: Any,
    ) -> list[Group]:
        """Figures per UTC ``"day"`` or ``"hour"``, oldest first; key is the bucket start.

        ``measures`` (Summary field names, e.g. ``("calls", "cost_usd")``) limits the sums
        to those (the other fields are 0; ``calls`` is always summed): a report that shows
        two figures need not pay for ten.
        """
        if bucket not in ("day", "hour"):
            raise ConfigError(f"bucket must be 'day' or 'hour', got {bucket!r}")
        wanted = _wanted(measures)
        spec = None if distinct_users else self._spec((), tags, filters, False)
        if spec is not None:
            found = self._from_rollups(
                spec, (), since, until, filters, series=bucket, wanted=wanted
            )
            return [
                Group((from_epoch_us(key[0]),), _summary_of(found[key]))
                for key in sorted(found)
                if found[key][0]
            ]
        start = self._series_expr(events.c.started_at, bucket).label("bucket")
        columns = self._summary_columns(distinct_users, wanted)
        query = (
            select(start, *columns)
            .where(and_(True, *self._where(since, until, tags, filters)))
            .group_by(start)
            .order_by(start)
        )
        return [
            Group((from_epoch_us(_bucket_to_us(row[0])),), self._summary(row[1:], distinct_users))
            for row in self._run(query)
        ]

    def percentiles(
        self,
        quantiles: Sequence[float] = (50, 95, 99),
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: dict[str, str] | None = None,
        exact: bool = False,
        **filters: Any,
    ) -> dict[float, float]:
        """Duration percentiles in ms, e.g. ``{50: 812.0, 95: 2400.0, ...}``.

        From the rollups' latency histograms (OpenTelemetry GenAI duration buckets),
        interpolated within the bucket that holds the rank, so the answer is in the same
        bucket as the exact value; ``exact=True`` (or a filter the rollups cannot answer)
        reads every duration from the events table instead (nearest rank).
        """
        for q in quantiles:
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q <= 100:
                raise ConfigError(f"quantiles are in (0, 100], got {q!r}")
        spec = None if exact else self._spec((), tags, filters, False, histogram=True)
        if spec is not None:
            only_calls = frozenset((0,))  # and the histogram
            found = self._from_rollups(
                spec, (), since, until, filters, histogram=True, wanted=only_calls
            )
            measures = found.get(())
            hist = [0] * len(rollups.HIST_COLUMNS) if measures is None else measures[10:]
            return {q: _from_histogram(hist, q) for q in quantiles}
        query = (
            select(events.c.duration_ms)
            .where(and_(True, *self._where(since, until, tags, filters)))
            .order_by(events.c.duration_ms)
        )
        values = [float(r[0]) for r in self._run(query)]
        return {q: _nearest_rank(values, q) for q in quantiles}


def _wanted(measures: Iterable[str] | None) -> frozenset[int]:
    """The rollup measure positions behind ``measures`` (Summary field names; None: all)."""
    if measures is None:
        return _ALL
    names = [measures] if isinstance(measures, str) else list(measures)
    unknown = sorted(set(names) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown measure(s) {unknown}; use {list(_FIELDS)}")
    return frozenset(i for name in ("calls", *names) for i in _FIELDS[name])


def _nothing(position: int) -> Any:
    """A measure not asked for: zero (NULL for the decimal money part, typed for unions)."""
    if position == rollups.COST + 2:
        return cast(null(), Numeric)
    return literal(0, BigInteger)


def money_sum(column: Any, dialect: str) -> Any:
    """The exact sum of a money column (NULL when there are no values, or only zeros).

    SQLite: the decimal texts go to a Python aggregate step, one call per value; the many
    calls that cost nothing (``'0'``: tools, commands) are left out in SQL."""
    if dialect == "postgresql":
        return func.sum(column)
    return func.agentledger_dsum(column).filter(column.is_not(None), column != "0")


def rollup_where(
    c: Any, segment: rollups.Segment, filters: dict[str, Any]
) -> list[ColumnElement[bool]]:
    """A rollup table's rows of one grain, inside the segment, matching the filters."""
    clauses: list[ColumnElement[bool]] = [c.grain == segment.source]
    if segment.lo is not None:
        clauses.append(c.bucket >= from_epoch_us(segment.lo))
    if segment.hi is not None:
        clauses.append(c.bucket < from_epoch_us(segment.hi))
    for name, value in filters.items():
        if value is not None:
            clauses.append(c[name] == value)
    return clauses


def _summary_of(measures: list[Any] | None, unique_users: int | None = None) -> Summary:
    if measures is None:
        return Summary(unique_users=unique_users)
    summary = Summary(*measures[:10])
    return (
        summary if unique_users is None else dataclasses.replace(summary, unique_users=unique_users)
    )


def _bucket_to_us(value: Any) -> int:
    if isinstance(value, datetime):
        return to_epoch_us(value.replace(tzinfo=UTC) if value.tzinfo is None else value)
    return int(value)


def _from_histogram(hist: Sequence[int], q: float) -> float:
    """The ``q`` percentile in ms, linearly interpolated inside the bucket holding its rank."""
    total = sum(hist)
    if not total:
        return 0.0
    rank = max(1, math.ceil(q / 100 * total))
    bounds = [0.0, *(b * 1000.0 for b in DURATION_BOUNDS_S)]
    seen = 0
    for i, count in enumerate(hist):
        if count and seen + count >= rank:
            if i >= len(DURATION_BOUNDS_S):  # the +Inf bucket: its lower bound
                return bounds[-1]
            low, high = bounds[i], bounds[i + 1]
            return low + (high - low) * (rank - seen) / count
        seen += count
    return bounds[-1]


def _nearest_rank(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _ordered(groups: list[Group], order: str | None) -> list[Group]:
    if order is None:  # the caller sorts (or does not care)
        return groups
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
