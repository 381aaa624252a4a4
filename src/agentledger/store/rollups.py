"""Rollups: per-hour and per-day totals, kept by the writer in the events' own transaction.

A report over a year of history reads a few thousand rollup rows instead of millions of
events. Each rollup groups the events by a time bucket and a few dimensions and keeps what
the query module needs to answer exactly: counts, error counts, the five token sums, the
exact Decimal cost, unpriced calls, the duration sum and a latency histogram over the
OpenTelemetry GenAI duration boundaries (so percentiles are accurate to a bucket and sums of
buckets merge across processes and time).

Which rollups exist is a trade: a dimension with many values (``user_id``) makes a rollup as
large as the events if it is combined with others, so each rollup is small on purpose:

========== ============================================ =========================================
rollup     key (besides grain and bucket)               answers
========== ============================================ =========================================
``kinds``  kind, status                                 totals, trends, percentiles, error rates
``what``   kind, status, provider, model, name          by model / command / tool, errors
``bots``   bot_id, kind                                 by bot, ``--bot`` totals
``tenants`` tenant_id, kind                             by tenant, ``--tenant`` totals
``users``  user_id, kind                                by user, ``--user`` totals
``attribution`` bot_id, tenant_id, kind, status         the Prometheus exporter, bot + tenant
========== ============================================ =========================================

Grains are ``m`` (minute; ``kinds`` and ``what`` only), ``h`` (hour) and ``d`` (UTC day). A
time range is answered from whole days, the whole hours and minutes at its edges and the
events of its partial minutes (see :func:`plan`), so results are exact for any range and the
events read stay a couple of minutes' worth however much history there is (other rollups'
edges: the partial hours). Queries that no rollup can answer (a ``task_id`` breakdown, tags,
two attribution dimensions at once) read the events table.

Idempotence: only events that were actually inserted are folded in (a replayed batch whose
ids are already stored changes nothing), in the same transaction as the insert.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from .._aggregates import DURATION_BOUNDS_S

__all__ = [
    "HIST_COLUMNS",
    "MEASURES",
    "SPECS",
    "Segment",
    "choose",
    "fold",
    "plan",
    "upsert_sql",
]

MINUTE_US: Final = 60_000_000
HOUR_US: Final = 3_600_000_000
DAY_US: Final = 86_400_000_000

#: Rollup name -> its key dimensions, smallest first (the planner takes the first that fits).
SPECS: Final[dict[str, tuple[str, ...]]] = {
    "kinds": ("kind", "status"),
    "bots": ("bot_id", "kind"),
    "tenants": ("tenant_id", "kind"),
    "users": ("user_id", "kind"),
    "what": ("kind", "status", "provider", "model", "name"),
    "attribution": ("bot_id", "tenant_id", "kind", "status"),
}
#: Rollups also kept per minute, so the partial hours at a range's edges are minute rows plus
#: at most two partial minutes of events, and reports stay flat however dense the events.
#: ``kinds`` and ``what`` (totals, trends, percentiles and the by-model/command/tool/error
#: reports): 0.15 and 0.7 minute rows per event at 1M events over 30 days (+18 % database
#: size). The attribution rollups would add 2.3 rows per event (+48 %), so their edges read
#: the events of the partial hours instead.
MINUTELY: Final = frozenset(("kinds", "what"))
_BOUNDS_MS: Final = tuple(b * 1000.0 for b in DURATION_BOUNDS_S)
HIST_COLUMNS: Final = tuple(f"h{i:02d}" for i in range(len(DURATION_BOUNDS_S) + 1))
#: Measure columns, in accumulator order.
MEASURES: Final = (
    "calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "cost_usd", "unpriced_calls", "duration_ms",
    *HIST_COLUMNS,
)  # fmt: skip
COST: Final = 7
HIST: Final = 10
_ZERO: Final = Decimal(0)
# Row-tuple positions (events.ROW_FIELDS) of every dimension a rollup may key on.
_POS: Final = {
    "kind": 6, "name": 7, "provider": 8, "model": 9, "bot_id": 10, "user_id": 11,
    "tenant_id": 13, "status": 24,
}  # fmt: skip
#: Stored instead of NULL in key columns (a unique key cannot match NULLs); attribution and
#: labels are never empty strings (events validation refuses them).
NONE: Final = ""


def table_name(spec: str) -> str:
    return f"rollup_{spec}"


def _new() -> list[Any]:
    return [0, 0, 0, 0, 0, 0, 0, _ZERO, 0, 0.0, *([0] * len(HIST_COLUMNS))]


def fold(rows: Iterable[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    """Rollup rows (one list per spec) for ``rows`` (store-ready: started_at in epoch µs).

    Each output row is ``(grain, bucket_us, *key, *measures)``. Every row updates one
    accumulator per rollup at its finest grain (minute, or hour for ``users``); coarser
    rows are those merged (a live writer's batch spans seconds to minutes, so the merges
    are small).
    """
    finest: list[dict[tuple[Any, ...], list[Any]]] = [{} for _ in SPECS]
    kinds, bots, tenants, users, what, attribution = finest  # SPECS order, as the keys below
    for row in rows:
        started = row[4]
        minute = started - started % MINUTE_US
        hour = started - started % HOUR_US
        kind, status = row[6], row[24]
        error = status == "error"
        inp, outp, cr, cw, rs = row[16], row[17], row[18], row[19], row[20]
        cost = row[21]
        if cost is not None and not isinstance(cost, Decimal):
            cost = Decimal(cost)
        unpriced = row[22] == "unpriced"
        duration = row[5]
        bucket = HIST + bisect_left(_BOUNDS_MS, duration)
        for table, key in (
            (kinds, (minute, kind, status)),
            (bots, (minute, row[10] or NONE, kind)),
            (tenants, (minute, row[13] or NONE, kind)),
            (users, (hour, row[11] or NONE, kind)),
            (what, (minute, kind, status, row[8] or NONE, row[9] or NONE, row[7])),
            (attribution, (minute, row[10] or NONE, row[13] or NONE, kind, status)),
        ):
            acc = table.get(key)
            if acc is None:
                acc = table[key] = _new()
            acc[0] += 1
            if error:
                acc[1] += 1
            acc[2] += inp
            acc[3] += outp
            if cr:
                acc[4] += cr
            if cw:
                acc[5] += cw
            if rs:
                acc[6] += rs
            if cost is not None:
                acc[COST] += cost
            if unpriced:
                acc[8] += 1
            acc[9] += duration
            acc[bucket] += 1

    out: dict[str, list[tuple[Any, ...]]] = {}
    for spec, table in zip(SPECS, finest, strict=True):
        rows_out: list[tuple[Any, ...]] = []
        if spec in MINUTELY:
            rows_out += [("m", *k, *acc) for k, acc in table.items()]
            table = _coarser(table, HOUR_US)
        rows_out += [("h", *k, *acc) for k, acc in table.items()]
        rows_out += [("d", *k, *acc) for k, acc in _coarser(table, DAY_US).items()]
        out[spec] = rows_out
    return out


def _coarser(
    table: dict[tuple[Any, ...], list[Any]], width: int
) -> dict[tuple[Any, ...], list[Any]]:
    """The accumulators merged into buckets ``width`` wide (keys start with the bucket)."""
    merged: dict[tuple[Any, ...], list[Any]] = {}
    for key, acc in table.items():
        wide = (key[0] - key[0] % width, *key[1:])
        target = merged.get(wide)
        if target is None:
            merged[wide] = list(acc)
        else:
            for i, value in enumerate(acc):
                target[i] += value
    return merged


def upsert_sql(spec: str) -> str:
    """SQLite: the parameterised upsert adding one rollup row to what is stored."""
    table = table_name(spec)
    keys = ("grain", "bucket", *SPECS[spec])
    columns = (*keys, *MEASURES)
    row = "(" + ", ".join(["?"] * len(columns)) + ")"
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {row} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {_additions(table, sqlite=True)}"
    )


def merge_sql(spec: str, stage: str) -> str:
    """PostgreSQL: add every row of the ``stage`` table (same columns) into the rollup.

    Rows go in key order, so concurrent writers lock rollup rows in the same order.
    """
    table = table_name(spec)
    keys = ("grain", "bucket", *SPECS[spec])
    columns = ", ".join((*keys, *MEASURES))
    return (
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} "
        f"ORDER BY {', '.join(keys)} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {_additions(table, sqlite=False)}"
    )


def _additions(table: str, *, sqlite: bool) -> str:
    """``m = table.m + excluded.m`` for every measure; money added exactly on SQLite."""
    return ", ".join(
        f"{m} = agentledger_dadd({table}.{m}, excluded.{m})"
        if sqlite and m == "cost_usd"
        else f"{m} = {table}.{m} + excluded.{m}"
        for m in MEASURES
    )


def decimal_add(a: Any, b: Any) -> str:
    """``agentledger_dadd``: exact sum of two decimal texts (SQLite)."""
    return str(Decimal(str(a or 0)) + Decimal(str(b or 0)))


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a time range: ``source`` is ``"events"``, ``"h"`` or ``"d"``; bounds in µs
    since the epoch, ``None`` for open."""

    source: str
    lo: int | None
    hi: int | None


def plan(
    lo: int | None, hi: int | None, *, finest: str = "d", minutes: bool = False
) -> list[Segment]:
    """Split ``[lo, hi)`` into whole days, whole hours, whole minutes and event ranges.

    ``finest="h"`` stops at hours (an hourly time series). With ``minutes`` (rollups kept
    per minute), the partial hours at the edges are minute rows and only the partial
    minutes are events. ``None`` bounds are open: an open start reads rollups from the
    first bucket; with no end, rollups hold everything stored (they are written with the
    events), so nothing is read from events at that end.
    """
    h_lo = None if lo is None else -(-lo // HOUR_US) * HOUR_US  # first whole hour
    h_hi = None if hi is None else hi // HOUR_US * HOUR_US
    if h_lo is not None and h_hi is not None and h_lo >= h_hi:
        return _edge(lo, hi, minutes)
    segments: list[Segment] = []
    if lo is not None and h_lo != lo:
        segments += _edge(lo, h_lo, minutes)
    if finest == "h":
        segments.append(Segment("h", h_lo, h_hi))
    else:
        d_lo = None if h_lo is None else -(-h_lo // DAY_US) * DAY_US
        d_hi = None if h_hi is None else h_hi // DAY_US * DAY_US
        if d_lo is not None and d_hi is not None and d_lo >= d_hi:
            segments.append(Segment("h", h_lo, h_hi))
        else:
            if h_lo is not None and d_lo != h_lo:
                segments.append(Segment("h", h_lo, d_lo))
            segments.append(Segment("d", d_lo, d_hi))
            if d_hi is not None and d_hi != h_hi:
                segments.append(Segment("h", d_hi, h_hi))
    if hi is not None and h_hi != hi:
        segments += _edge(h_hi, hi, minutes)
    return segments


def _edge(lo: int | None, hi: int | None, minutes: bool) -> list[Segment]:
    """Less than an hour (or an open range inside one): events, or minutes and events."""
    if not minutes or lo is None or hi is None:
        return [Segment("events", lo, hi)]
    m_lo = -(-lo // MINUTE_US) * MINUTE_US
    m_hi = hi // MINUTE_US * MINUTE_US
    if m_lo >= m_hi:
        return [Segment("events", lo, hi)]
    out = [Segment("events", lo, m_lo)] if m_lo != lo else []
    out.append(Segment("m", m_lo, m_hi))
    if m_hi != hi:
        out.append(Segment("events", m_hi, hi))
    return out


def choose(needed: Iterable[str]) -> str | None:
    """The first (smallest) rollup whose key has every ``needed`` dimension, else None."""
    wanted = set(needed)
    for spec, dims in SPECS.items():
        if wanted <= set(dims):
            return spec
    return None


def key_value(value: Any) -> Any:
    """A rollup key column's stored value back to what the events table would say."""
    return None if value == NONE else value


def pg_rows(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rollup rows with the bucket as an aware datetime, for PostgreSQL."""
    from .schema import from_epoch_us

    return [(r[0], from_epoch_us(r[1]), *r[2:]) for r in rows]
