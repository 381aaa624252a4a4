"""Rollups: per-hour and per-day totals, kept by the writer in the events' own transaction.

A report over a year of history reads a few thousand rollup rows instead of millions of
events. Each rollup groups the events by a time bucket and a few dimensions and keeps what
the query module needs to answer exactly: counts, error counts, the five token sums, the
exact cost (as integers, see :data:`MEASURES`), unpriced calls, the duration sum and a latency
histogram over the OpenTelemetry GenAI duration boundaries (so percentiles are accurate to a
bucket and sums of buckets merge across processes and time; ``users`` keeps none).

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

Distinct users (``rollup_members``, kept by the store) are bitmaps of user numbers per
minute, hour and day and (kind, name), so they too read at most two partial minutes of events.

Idempotence: only events that were actually inserted are folded in (a replayed batch whose
ids are already stored changes nothing), in the same transaction as the insert.

Compaction: the writer keeps only the finest grain of the current hour and day (minutes for
``kinds`` and ``what``, hours for the others); the coarser rows of a bucket are computed once
it has closed, from its finer rows (:func:`compact_sql`), by the first write after it closed.
:class:`Marks` says how far the coarse rows are complete; below it, writers add late events
to every grain directly, and readers (:func:`refine`) read the finer grain above it. So a
batch of live events costs one upsert per group instead of three, and the finest rows are
always complete, which keeps every answer exact whatever the marks say.

Running user totals (``rollup_user_totals``, built by compaction from the ``users`` rows):
per (user, kind), everything before the end of each hour the pair was active, up to the
last compacted hour. Any run of whole hours is the difference of two such rows per pair
(:func:`plan_totals`), so a per-user report does not grow with the days it spans, nor
with the time of day its range starts or ends.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, NamedTuple

from .._aggregates import DURATION_BOUNDS_S, EXACT

__all__ = [
    "AHEAD_MAX_GROUPS",
    "COMPILED",
    "DERIVED",
    "DERIVED_FROM",
    "EXACT",
    "HIST_COLUMNS",
    "LAZY_USERS",
    "MEASURES",
    "SPECS",
    "Grouped",
    "Marks",
    "Segment",
    "UsersAhead",
    "capped",
    "choose",
    "compact_sql",
    "compiled",
    "derive_sql",
    "derived",
    "epoch_us",
    "flip",
    "fold",
    "group",
    "group_py",
    "money",
    "plan",
    "plan_totals",
    "refine",
    "split_cost",
    "store_ready",
    "stored",
    "user_totals_sql",
    "users_from_events_sql",
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
#: Databases whose writers leave the ``users`` hour rows of the open hours to compaction,
#: which builds each hour's rows from its events in one ``GROUP BY`` when it closes
#: (:func:`users_from_events_sql`); until then readers take those hours from the events
#: (by the user index, or the time index: at most the hours since the last compaction).
#: On PostgreSQL ``users`` has the most rows per batch of any rollup (a row per active user
#: and kind: 0.44 per event in batches of 5,000 of the benchmark's mix, about one per event
#: in the small batches of a writer flushing every second), each an ``ON CONFLICT`` update
#: costing ~8 µs of server CPU; the hour's ``GROUP BY`` costs ~1.4 µs per event, whatever
#: the batches; a writer that wrote every event of the hour writes them from memory instead
#: (:class:`UsersAhead`). SQLite's upserts are cheap: its writers keep every ``users`` row.
LAZY_USERS: Final = frozenset(("postgresql",))
#: Per database: rollups not stored there, because they are sums of the rows of a finer one
#: that readers take instead (``kinds`` of ``what``; ``bots`` and ``tenants`` of
#: ``attribution``: :func:`choose`). On PostgreSQL each rollup a writer maintains costs a
#: stage COPY and an ``ON CONFLICT`` merge per batch (~8 µs of server CPU per row) and its
#: compaction; these three were ~1.2 µs per event of the writer's time in the
#: ``rollup_write_cost`` benchmark, while a report reads their few rows from the finer
#: rollup about as fast (a day of ``what`` is a few hundred rows). SQLite keeps them all
#: (its upserts are cheap). Their tables stay, empty, on PostgreSQL (migration 0013).
#: Each derivable rollup's finer one (every key of the first is a key of the second).
DERIVED_FROM: Final = {"kinds": "what", "bots": "attribution", "tenants": "attribution"}
DERIVED: Final = {"postgresql": frozenset(DERIVED_FROM)}
#: Where those are derived: the stored rollups in the order :func:`choose` tries them
#: (``users``, lazily written and the largest, last).
_STORED_ORDER: Final = ("what", "attribution", "users")


def derived(dialect: str | None) -> frozenset[str]:
    """The rollups not stored on ``dialect`` (see :data:`DERIVED`)."""
    return DERIVED.get(dialect or "", frozenset())


def stored(spec: str, dialect: str | None) -> str:
    """The rollup whose rows answer ``spec`` on ``dialect``: itself, or the finer one it is
    derived from there."""
    return DERIVED_FROM[spec] if spec in derived(dialect) else spec


#: Rollups without a latency histogram: ``users`` has a row per active user and hour, the
#: most rows per event of any rollup, and percentiles per user are rare questions, so
#: they read the events (by the user index). Every other rollup keeps the histogram.
NO_HISTOGRAM: Final = frozenset(("users",))
_BOUNDS_MS: Final = tuple(b * 1000.0 for b in DURATION_BOUNDS_S)
HIST_COLUMNS: Final = tuple(f"h{i:02d}" for i in range(len(DURATION_BOUNDS_S) + 1))
#: Money in a rollup is ``cost_nano`` nano-dollars plus ``cost_frac`` units of 1e-21 USD
#: (``0 <= cost_frac < FRAC``), plus ``cost_extra``, a decimal holding only the rare costs
#: with more than 21 decimal places (NULL otherwise). Integers sum exactly and natively in
#: both databases: a report summing 100,000 rollup rows calls no Python per row on SQLite,
#: and the writer adds them without an exact-decimal function call per row. A row's
#: ``cost_nano`` stays below :data:`NANO_CAP` (~$4.6e9; beyond, its money is in
#: ``cost_extra``, see :func:`capped`), so no write overflows 64 bits.
MEASURES: Final = (
    "calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "cost_nano", "cost_frac", "cost_extra",
    "unpriced_calls", "duration_ms", *HIST_COLUMNS,
)  # fmt: skip
COST: Final = 7  # cost_nano, cost_frac, cost_extra
HIST: Final = 12
FRAC: Final = 10**12  # cost_frac units (1e-21 USD) per cost_nano unit (1e-9 USD)
_FRAC_DIGITS: Final = 21
_NANO_LIMIT: Final = 2**62  # nano-dollars that still sum without overflow (~$4.6e9)
#: A stored rollup row's ``cost_nano`` stays below this in magnitude (see :func:`capped`).
NANO_CAP: Final = _NANO_LIMIT
_ZERO: Final = Decimal(0)
#: Stored instead of NULL in key columns (a unique key cannot match NULLs); attribution and
#: labels are never empty strings (events validation refuses them).
NONE: Final = ""


class Marks(NamedTuple):
    """How far the coarse rollup rows are complete (epoch µs, exclusive, bucket-aligned).

    ``hour``: the ``h`` rows of the minutely rollups (and the hourly member bitmaps) hold
    every event before it; ``day``: the ``d`` rows of every rollup (and the daily bitmaps);
    ``totals``: the per-user running totals (``rollup_user_totals``) hold every event
    before it (an hour boundary; see :func:`plan_totals`). The finest rows
    (``m`` for minutely rollups, ``h`` for the others) are always complete.
    """

    hour: int
    day: int
    totals: int = 0

    @classmethod
    def due(cls, now_us: int) -> Marks:
        """The marks once every bucket closed at ``now_us`` is compacted."""
        hour = now_us - now_us % HOUR_US
        return cls(hour, now_us - now_us % DAY_US, hour)


def table_name(spec: str) -> str:
    return f"rollup_{spec}"


def measures(spec: str) -> tuple[str, ...]:
    """``spec``'s measure columns: :data:`MEASURES`, without the histogram for some."""
    return MEASURES[:HIST] if spec in NO_HISTOGRAM else MEASURES


def split_cost(cost: Any) -> tuple[int, int, Any]:
    """``cost`` (Decimal, decimal text or None) as ``(cost_nano, cost_frac, cost_extra)``."""
    if cost is None or cost == "0":  # unpriced, and the many calls that cost nothing (tools)
        return 0, 0, None
    if type(cost) is str and "E" not in cost and "e" not in cost:  # SQLite's decimal text
        whole, _, fraction = cost.partition(".")
        if len(fraction) <= _FRAC_DIGITS:
            nano, frac = divmod(int(whole + fraction.ljust(_FRAC_DIGITS, "0")), FRAC)
            if -_NANO_LIMIT < nano < _NANO_LIMIT:
                return nano, frac, None
        return 0, 0, cost
    value = cost if isinstance(cost, Decimal) else Decimal(str(cost))
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -_FRAC_DIGITS:
        nano, frac = divmod(int(value.scaleb(_FRAC_DIGITS, EXACT)), FRAC)
        if -_NANO_LIMIT < nano < _NANO_LIMIT:
            return nano, frac, None
    return 0, 0, cost


def capped(measures: tuple[Any, ...]) -> tuple[Any, ...]:
    """``measures`` as a stored rollup row may hold them: a ``cost_nano`` of
    :data:`NANO_CAP` or more (in magnitude) moves, with its ``cost_frac``, into
    ``cost_extra``, so every stored ``cost_nano`` stays below it and two of them (a row and
    what a writer adds to it, in SQL) sum without overflowing 64 bits. Above about $4.6e9
    in one bucket (a cost in the wrong unit, say), money is summed as decimals instead."""
    nano = measures[COST]
    if -NANO_CAP < nano < NANO_CAP:
        return measures
    extra = _add_extra(measures[COST + 2], _nano_money(nano, measures[COST + 1]))
    return (*measures[:COST], 0, 0, extra, *measures[COST + 3 :])


def _nano_money(nano: int, frac: int) -> Decimal:
    """``cost_nano`` and ``cost_frac`` as one exact Decimal."""
    return Decimal(nano * FRAC + frac).scaleb(-_FRAC_DIGITS, EXACT)


def money(nano: Any, frac: Any, extra: Any) -> Decimal:
    """The exact Decimal of summed ``cost_nano``, ``cost_frac`` and ``cost_extra`` values."""
    scaled = int(nano or 0) * FRAC + int(frac or 0)
    if extra is None:  # the common case, built from the digits (a report makes thousands)
        if not scaled:
            return _ZERO
        digits = str(abs(scaled))
        kept = digits.rstrip("0")
        exponent = len(digits) - len(kept) - _FRAC_DIGITS
        if exponent >= 0:
            return Decimal(scaled // 10**_FRAC_DIGITS)
        return Decimal(f"{'-' if scaled < 0 else ''}{kept}E{exponent}")
    value = Decimal(scaled).scaleb(-_FRAC_DIGITS, EXACT)
    return tidy(EXACT.add(value, Decimal(str(extra))))


def tidy(value: Decimal) -> Decimal:
    """``value`` without trailing zeros, never in exponent notation (``100``, not ``1E+2``)."""
    if not value:
        return _ZERO
    value = value.normalize(EXACT)
    exponent = value.as_tuple().exponent
    return value.quantize(Decimal(1), context=EXACT) if int(exponent) > 0 else value


def reader(
    cols: Sequence[int], n: int = 0, histogram: bool = False
) -> Callable[[Sequence[Any]], list[Any]]:
    """A reader of summed rows (``n`` keys, then the sums of the :data:`MEASURES` positions
    ``cols``, in that order) into the query's figures: calls, errors, five token sums, cost
    (Decimal), unpriced calls, duration sum, then the histogram counts if ``histogram``;
    zeros for the measures not in ``cols``. Only the columns there are are touched."""
    money_at = n + cols.index(COST) if COST in cols else None
    duration = COST + 4
    duration_at = n + cols.index(duration) if duration in cols else None
    # MEASURES position -> figure position: the three money columns make one figure.
    counts = [
        (j, i if i < COST else i - 2)
        for j, i in enumerate(cols, n)
        if i < COST or i == COST + 3 or i >= HIST
    ]
    template: list[Any] = [0] * COST + [_ZERO, 0, 0.0]
    template += [0] * (len(HIST_COLUMNS) if histogram else 0)

    def read(row: Sequence[Any]) -> list[Any]:
        out = template.copy()
        for j, i in counts:
            out[i] = int(row[j] or 0)
        if money_at is not None:
            out[COST] = money(row[money_at], row[money_at + 1], row[money_at + 2])
        if duration_at is not None:
            out[COST + 2] = float(row[duration_at] or 0.0)
        return out

    return read


_READ_ALL: Final = reader(range(len(MEASURES)), histogram=True)
_READ_NO_HIST: Final = reader(range(HIST))


def measures_of(values: Sequence[Any]) -> list[Any]:
    """Summed rollup measures (all of :data:`MEASURES`, histogram optional) as figures
    (see :func:`reader`)."""
    return (_READ_ALL if len(values) > HIST else _READ_NO_HIST)(values)


# --- writing ------------------------------------------------------------------------------
_NEW_HIST: Final = (0,) * len(HIST_COLUMNS)
_ONE_HOT: Final = tuple(
    tuple(1 if i == b else 0 for i in range(len(HIST_COLUMNS))) for b in range(len(HIST_COLUMNS))
)


def grains(spec: str) -> tuple[str, ...]:
    """The grains kept for ``spec``, finest first."""
    return ("m", "h", "d") if spec in MINUTELY else ("h", "d")


def compiled(name: str) -> Callable[..., Any] | None:
    """``name`` of the compiled :mod:`agentledger.store._fold`, unless it was not built (a
    pure-Python install) or ``AGENTLEDGER_PURE_PYTHON`` is set (to 1, say): then None, and
    callers run their Python definition."""
    if os.environ.get("AGENTLEDGER_PURE_PYTHON"):
        return None
    try:
        from . import _fold
    except ImportError:
        return None
    return getattr(_fold, name, None)


_group_c: Final = compiled("group")
_merge_users_c: Final = compiled("merge_users")
#: Whether rollups are grouped by the compiled :mod:`agentledger.store._fold`.
COMPILED: Final = _group_c is not None


def epoch_us(value: Any) -> int:
    """A row's started_at (float seconds since the epoch, or an aware datetime) in µs."""
    if isinstance(value, datetime):
        from .schema import to_epoch_us  # (schema builds its tables from this module)

        return to_epoch_us(value)
    return round(float(value) * 1_000_000)


def store_ready(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` (as the store's ``write`` takes it) with started_at in epoch µs."""
    return (*row[:4], epoch_us(row[4]), *row[5:])


class Grouped(NamedTuple):
    """A batch grouped at the finest grains (see :func:`group`): each ``what``,
    ``attribution`` and ``users`` key -> its rollup measures (:data:`MEASURES` order;
    ``users`` without the histogram), and ``members``: ``("m", minute, kind, name)`` ->
    the set of its user ids (for the member bitmaps)."""

    what: dict[tuple[Any, ...], tuple[Any, ...]]
    attribution: dict[tuple[Any, ...], tuple[Any, ...]]
    users: dict[tuple[Any, ...], tuple[Any, ...]]
    members: dict[tuple[Any, ...], set[str]]


def group(
    rows: Iterable[tuple[Any, ...]], *, raw: bool = False, users_before: int | None = None
) -> Grouped:
    """``rows`` (store-ready: started_at in epoch µs; with ``raw``, as the store's ``write``
    takes them: float seconds or datetimes, see :func:`epoch_us`) grouped at the finest
    grains: by the compiled :mod:`agentledger.store._fold` where it is built and can sum
    them exactly in C integers (almost every batch), else by :func:`group_py`, the
    definition.

    ``users_before`` (epoch µs): only the ``users`` groups of the hours before it are
    needed (:func:`fold` with ``lazy_users`` and marks); the compiled grouping then leaves
    out the others (a third of its work for a live batch), :func:`group_py` keeps them."""
    batch = rows if type(rows) is list else list(rows)
    if _group_c is not None:
        grouped = _group_c(batch, _BOUNDS_MS, raw, users_before)
        if grouped is not None:
            return Grouped(*grouped)
    return group_py([store_ready(r) for r in batch] if raw else batch)


def group_py(rows: Iterable[tuple[Any, ...]]) -> Grouped:
    """:func:`group` in Python: ``what`` per minute, ``attribution`` and ``users`` per
    hour; per event, three dictionary appends (``users``: added in place, most of its
    groups are one event), then the sums per group."""
    what: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    attribution: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    users: dict[tuple[Any, ...], list[Any]] = {}
    members: dict[tuple[Any, ...], set[str]] = {}
    bounds = _BOUNDS_MS
    for row in rows:
        started = row[4]
        minute = started - started % MINUTE_US
        hour = started - started % HOUR_US
        kind, status = row[6], row[24]
        duration = row[5]
        nano, frac, extra = split_cost(row[21])
        measures = (
            1 if status == "error" else 0, row[16], row[17], row[18], row[19], row[20], nano,
            frac, extra, 1 if row[22] == "unpriced" else 0, duration,
            bisect_left(bounds, duration),
        )  # fmt: skip
        key: tuple[Any, ...] = (minute, kind, status, row[8] or NONE, row[9] or NONE, row[7])
        same = what.get(key)
        if same is None:
            what[key] = [measures]
        else:
            same.append(measures)
        key = (hour, row[10] or NONE, row[13] or NONE, kind, status)
        same = attribution.get(key)
        if same is None:
            attribution[key] = [measures]
        else:
            same.append(measures)
        user = row[11]
        key = (hour, user or NONE, kind)
        acc = users.get(key)
        if acc is None:
            users[key] = [1, *measures[: HIST - 1]]
        else:
            acc[0] += 1
            acc[1] += measures[0]
            acc[2] += measures[1]
            acc[3] += measures[2]
            acc[4] += measures[3]
            acc[5] += measures[4]
            acc[6] += measures[5]
            acc[7] += nano
            acc[8] += frac
            if extra is not None:
                acc[9] = _add_extra(acc[9], extra)
            acc[10] += measures[9]
            acc[11] += duration
        if user is not None:
            key = ("m", minute, kind, row[7])
            seen = members.get(key)
            if seen is None:
                members[key] = {user}
            else:
                seen.add(user)
    users_h: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for k, acc in users.items():
        if acc[8] >= FRAC:
            carry, acc[8] = divmod(acc[8], FRAC)
            acc[7] += carry
        users_h[k] = tuple(acc)
    return Grouped(
        {k: _summed(g) for k, g in what.items()},
        {k: _summed(g) for k, g in attribution.items()},
        users_h,
        members,
    )


def fold(
    rows: Iterable[tuple[Any, ...]] | Grouped,
    marks: Marks | None = None,
    *,
    lazy_users: bool = False,
    skip: frozenset[str] = frozenset(),
) -> dict[str, list[tuple[Any, ...]]]:
    """Rollup rows (one list per spec, but those in ``skip``: see :data:`DERIVED`) for
    ``rows`` (store-ready: started_at in epoch µs, or already :func:`group`-ed).

    Each output row is ``(grain, bucket_us, *key, *measures)`` (:data:`MEASURES` order).
    With ``marks``, coarse rows only for buckets below them (the rest is left to
    compaction); without, every grain. With ``lazy_users`` (see :data:`LAZY_USERS`) and
    ``marks``, ``users`` hour rows too only for the hours below ``marks.hour`` (late
    events): compaction builds the others from the events when their hour closes.
    Events are grouped three ways only, at their finest grain (:func:`group`): ``what``
    per minute, ``attribution`` and ``users`` per hour; every other rollup and grain is
    merged from those groups (``kinds`` from ``what``; ``bots`` and ``tenants`` from
    ``attribution``).
    """
    what_m, attribution_h, users_h, _ = rows if isinstance(rows, Grouped) else group(rows)
    hour_mark, day_mark = (None, None) if marks is None else (marks.hour, marks.day)
    what_h = _merged(what_m, lambda k: (k[0] - k[0] % HOUR_US, *k[1:]), hour_mark)
    what_d = _merged(what_h, _to_day, day_mark)
    attribution_d = _merged(attribution_h, _to_day, day_mark)
    if lazy_users and hour_mark is not None:
        users_h = {k: m for k, m in users_h.items() if k[0] < hour_mark}
    out: dict[str, list[tuple[Any, ...]]] = {}
    for spec, by_grain in (
        ("kinds", [("m", _merged(what_m, _kinds)), ("h", _merged(what_h, _kinds)),
                   ("d", _merged(what_d, _kinds))]),
        ("bots", [("h", _merged(attribution_h, _bots)), ("d", _merged(attribution_d, _bots))]),
        ("tenants", [("h", _merged(attribution_h, _tenants)),
                     ("d", _merged(attribution_d, _tenants))]),
        ("users", [("h", users_h), ("d", _merged(users_h, _to_day, day_mark))]),
        ("what", [("m", what_m), ("h", what_h), ("d", what_d)]),
        ("attribution", [("h", attribution_h), ("d", attribution_d)]),
    ):  # fmt: skip
        if spec in skip:
            continue
        out[spec] = [
            (grain, *k, *(m if -NANO_CAP < m[COST] < NANO_CAP else capped(m)))
            for grain, table in by_grain
            for k, m in table.items()
        ]
    return out


def _to_day(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return (key[0] - key[0] % DAY_US, *key[1:])


def _kinds(key: tuple[Any, ...]) -> tuple[Any, ...]:  # what (bucket, kind, status, ...)
    return key[:3]


def _bots(key: tuple[Any, ...]) -> tuple[Any, ...]:  # attribution (bucket, bot, tenant, kind, .)
    return (key[0], key[1], key[3])


def _tenants(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return (key[0], key[2], key[3])


def _summed(group: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """One group's per-event measures (see :func:`fold`) as a rollup row's measures."""
    if len(group) == 1:  # most groups of the users rollup
        (error, inp, outp, cr, cw, rs, nano, frac, extra, unpriced, duration, b) = group[0]
        return (1, error, inp, outp, cr, cw, rs, nano, frac, extra, unpriced, duration,
                *_ONE_HOT[b])  # fmt: skip
    (errors, inp, outp, cr, cw, rs, nano, frac, extras, unpriced, duration, buckets) = zip(
        *group, strict=True
    )
    carry, frac_total = divmod(sum(frac), FRAC)
    extra = None
    for value in extras:
        extra = _add_extra(extra, value)
    hist = list(_NEW_HIST)
    for b in buckets:
        hist[b] += 1
    return (
        len(group), sum(errors), sum(inp), sum(outp), sum(cr), sum(cw), sum(rs),
        sum(nano) + carry, frac_total, extra, sum(unpriced), sum(duration), *hist,
    )  # fmt: skip


def _merged(
    table: dict[tuple[Any, ...], tuple[Any, ...]], key_of: Any, below: int | None = None
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """``table``'s rows added up under ``key_of(key)`` (a coarser bucket or fewer keys);
    with ``below``, only the rows whose bucket is before it."""
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for key, measures in table.items():
        if below is not None and key[0] >= below:
            continue
        wide = key_of(key)
        group = groups.get(wide)
        if group is None:
            groups[wide] = [measures]
        else:
            group.append(measures)
    return {k: g[0] if len(g) == 1 else _total(g) for k, g in groups.items()}


def _total(rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Rows of measures added up, a column at a time (see :func:`add`)."""
    columns = list(zip(*rows, strict=True))
    out = [sum(c) for c in columns[: COST + 2]]
    carry, out[COST + 1] = divmod(out[COST + 1], FRAC)
    out[COST] += carry
    extra = None
    for value in columns[COST + 2]:
        if value is not None:
            extra = _add_extra(extra, value)
    out.append(extra)
    out += map(sum, columns[COST + 3 :])
    return tuple(out)


def add(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
    """Two rows of measures added (money carried from cost_frac into cost_nano)."""
    out = [i + j for i, j in zip(a[: COST + 2], b[: COST + 2], strict=True)]
    carry, out[COST + 1] = divmod(out[COST + 1], FRAC)
    out[COST] += carry
    out.append(_add_extra(a[COST + 2], b[COST + 2]))
    out += [i + j for i, j in zip(a[COST + 3 :], b[COST + 3 :], strict=True)]
    return capped(tuple(out))


def _add_extra(a: Any, b: Any) -> Any:
    """Two ``cost_extra`` values (decimal, decimal text or None) added exactly."""
    if b is None:
        return a
    if a is None:
        return b
    return EXACT.add(Decimal(str(a)), Decimal(str(b)))


def upsert_sql(spec: str) -> str:
    """SQLite: the parameterised upsert adding one rollup row to what is stored."""
    table = table_name(spec)
    keys = ("grain", "bucket", *SPECS[spec])
    columns = (*keys, *measures(spec))
    row = "(" + ", ".join(["?"] * len(columns)) + ")"
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {row} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {_additions(spec, sqlite=True)}"
    )


def merge_sql(spec: str, stage: str) -> str:
    """PostgreSQL: add every row of the ``stage`` table (same columns) into the rollup.

    Rows go in key order, so concurrent writers lock rollup rows in the same order.
    """
    table = table_name(spec)
    keys = ("grain", "bucket", *SPECS[spec])
    columns = ", ".join((*keys, *measures(spec)))
    return (
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} "
        f"ORDER BY {', '.join(keys)} "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {_additions(spec, sqlite=False)}"
    )


def _additions(spec: str, *, sqlite: bool) -> str:
    """``m = table.m + excluded.m`` for every measure; money carried and added exactly,
    and kept :func:`capped` (both ``cost_nano`` values are below :data:`NANO_CAP`, so
    their sum fits in 64 bits; a sum at the cap or above goes into ``cost_extra``)."""
    table = table_name(spec)
    nano, frac, extra = (f"{table}.{m}" for m in MEASURES[COST : COST + 3])
    frac_sum = f"{frac} + excluded.cost_frac"
    # Integer division on both databases: both cost_frac values lie in [0, FRAC), so it is
    # the floor, and the sum stays in 64 bits (each cost_nano is below NANO_CAP = 2**62).
    # PostgreSQL's div() takes numerics: the whole money expression then ran in numeric,
    # ~1.7 µs of an updated row's ~9.4 µs merge.
    carry = f"({frac_sum}) / {FRAC}"
    extras = f"agentledger_dadd({extra}, excluded.cost_extra)" if sqlite else (
        f"{extra} + excluded.cost_extra")  # fmt: skip
    added = (f"CASE WHEN excluded.cost_extra IS NULL THEN {extra} "
             f"WHEN {extra} IS NULL THEN excluded.cost_extra ELSE {extras} END")  # fmt: skip
    money = _capped_sql(f"{nano} + excluded.cost_nano + {carry}", f"({frac_sum}) % {FRAC}",
                        added, sqlite=sqlite)  # fmt: skip
    special = dict(zip(MEASURES[COST : COST + 3], money, strict=True))
    return ", ".join(
        f"{m} = {special.get(m, f'{table}.{m} + excluded.{m}')}" for m in measures(spec)
    )


def _capped_sql(nano: str, frac: str, extra: str, *, sqlite: bool) -> tuple[str, str, str]:
    """SQL for a row's ``cost_nano``, ``cost_frac`` and ``cost_extra`` from the expressions
    of their sums, :func:`capped`: a ``nano`` of :data:`NANO_CAP` or more (in magnitude)
    moves, with ``frac``, into ``extra`` (NULL: none)."""
    fits = f"abs({nano}) < {NANO_CAP}"
    if sqlite:
        moved = f"agentledger_dadd({extra}, agentledger_money({nano}, {frac}))"
    else:
        moved = f"coalesce({extra}, 0) + ({nano})::numeric * 1e-9 + ({frac})::numeric * 1e-21"
    return (
        f"CASE WHEN {fits} THEN {nano} ELSE 0 END",
        f"CASE WHEN {fits} THEN {frac} ELSE 0 END",
        f"CASE WHEN {fits} THEN {extra} ELSE {moved} END",
    )


def compact_sql(spec: str, dialect: str) -> str:
    """Recompute a rollup's coarse rows from its finer ones, for buckets in a range.

    Parameters (named): ``fine`` and ``coarse`` grains, ``width`` (the coarse bucket: µs on
    SQLite, an interval text on PostgreSQL), ``lo`` and ``hi`` (the range of the fine rows'
    buckets, coarse-aligned). A coarse row is replaced, not added to: its finer
    rows always hold every event, so the result is right even if a coarse row was already
    there (written before the marks moved, or by a rebuild).
    """
    table = table_name(spec)
    keys = SPECS[spec]
    sqlite = dialect == "sqlite"
    columns = ("grain", "bucket", *keys, *measures(spec))
    # Kept capped (see capped()): a coarse cost_nano at NANO_CAP or above goes, with its
    # cost_frac, into cost_extra. (On SQLite, sum() of the fine rows' cost_nano fails past
    # 2**63, about $9.2e9 in one coarse bucket: compact_on then sums those in Python.)
    if sqlite:
        bucket = "bucket - bucket % :width"
        money = _capped_sql(
            f"sum(cost_nano) + sum(cost_frac) / {FRAC}", f"sum(cost_frac) % {FRAC}",
            "agentledger_dsum(cost_extra) FILTER (WHERE cost_extra IS NOT NULL)", sqlite=True,
        )  # fmt: skip
    else:
        bucket = "date_bin(:width, bucket, TIMESTAMPTZ '1970-01-01 00:00:00+00')"
        money = None
    sums = _measure_sums(spec, money)
    group = ", ".join(str(i) for i in range(2, 3 + len(keys)))
    replace = ", ".join(f"{m} = excluded.{m}" for m in measures(spec))
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"SELECT :coarse, {bucket}, {', '.join(keys)}, {', '.join(sums)} FROM {table} "
        "WHERE grain = :fine AND bucket >= :lo AND bucket < :hi "
        f"GROUP BY {group} ORDER BY {group} "
        f"ON CONFLICT (grain, bucket, {', '.join(keys)}) DO UPDATE SET {replace}"
    )
    if sqlite:
        return sql
    for name in ("coarse", "width", "fine", "lo", "hi"):  # psycopg's named placeholders
        sql = sql.replace(f":{name}", f"%({name})s")
    return sql.replace("date_bin(%(width)s", "date_bin(%(width)s::interval")


#: :class:`UsersAhead` keeps at most this many ``users`` groups (~0.35 KB each); past it, it
#: starts again empty, and compaction builds the hours it then holds only in part from
#: their events, as without it.
AHEAD_MAX_GROUPS: Final = 200_000


class UsersAhead:
    """PostgreSQL (:data:`LAZY_USERS`): the ``users`` hour groups of the open hours, summed
    in this process from its committed batches, so that compaction writes a closed hour's
    ``users`` rows from memory instead of grouping its events again
    (:func:`users_from_events_sql`: ~1.3 µs of server time per event, the largest part of
    compaction).

    The writer groups its batches' users (:func:`group`, in C, while the server inserts the
    events, so it costs the writer no wall time); it hands each committed batch here
    (:meth:`add`) and the next batch's write sums the groups (:meth:`merge`), in the same
    window. Only what committed is added, so a rolled-back batch is never here. An hour is
    written from memory only if its events summed here are as many as its ``attribution``
    rows count (complete in every transaction): then this process saw every event of the
    hour, and these are exactly its rows. Otherwise (another process wrote to it too, this
    one started in the middle of it, the events were deleted or the groups were dropped past
    :data:`AHEAD_MAX_GROUPS`) compaction groups its events, as before. Not thread-safe: the
    store calls it under its write lock.
    """

    def __init__(self, max_groups: int = AHEAD_MAX_GROUPS) -> None:
        self.max_groups = max_groups
        #: hour (epoch µs) -> (hour, user_id, kind) -> the measures (MEASURES[:HIST]) summed
        self.hours: dict[int, dict[tuple[Any, ...], list[Any]]] = {}
        self.size = 0  #: groups in :attr:`hours`
        #: Committed batches not summed yet: (their users groups, the hour mark they were
        #: written under: groups of earlier hours were written to the database directly).
        self.pending: list[tuple[dict[tuple[Any, ...], tuple[Any, ...]], int]] = []
        self.from_memory = 0  #: hours compaction wrote from here
        self.from_events = 0  #: hours with events compaction grouped from the events

    def add(self, groups: dict[tuple[Any, ...], tuple[Any, ...]], hour_mark: int) -> None:
        """A committed batch's ``users`` groups (:attr:`Grouped.users`, every hour), written
        while the hour mark was ``hour_mark``. The hours held before it are forgotten:
        another process compacted them (a store that never compacts keeps no more than
        the open hours)."""
        for hour in [h for h in self.hours if h < hour_mark]:
            self.size -= len(self.hours.pop(hour))
        if groups:
            self.pending.append((groups, hour_mark))

    def merge(self) -> None:
        """Sum the pending batches' groups of the hours at or after their mark (by the
        compiled :mod:`agentledger.store._fold` where it is built: ~3x faster)."""
        pending, self.pending = self.pending, []
        hours = self.hours
        for groups, mark in pending:
            if _merge_users_c is not None:
                self.size += _merge_users_c(hours, groups, mark, _add_extra)
            else:
                self._merge_py(groups, mark)
            if self.size > self.max_groups:  # begin again: the hours held now fall back
                self.hours.clear()
                self.size = 0

    def _merge_py(self, groups: dict[tuple[Any, ...], tuple[Any, ...]], mark: int) -> None:
        """One batch of :meth:`merge` in Python (the definition)."""
        hours = self.hours
        last, table = -1, None
        for key, m in groups.items():
            hour = key[0]
            if hour < mark:
                continue
            if hour != last:
                last = hour
                table = hours.get(hour)
                if table is None:
                    table = hours[hour] = {}
            assert table is not None
            acc = table.get(key)
            if acc is None:
                table[key] = list(m)
                self.size += 1
                continue
            acc[0] += m[0]
            acc[1] += m[1]
            acc[2] += m[2]
            acc[3] += m[3]
            acc[4] += m[4]
            acc[5] += m[5]
            acc[6] += m[6]
            acc[7] += m[7]
            acc[8] += m[8]
            if acc[8] >= FRAC:  # each below FRAC: one carry at most
                acc[8] -= FRAC
                acc[7] += 1
            if m[9] is not None:
                acc[9] = _add_extra(acc[9], m[9])
            acc[10] += m[10]
            acc[11] += m[11]

    def take(self, lo: int, hi: int) -> dict[int, tuple[int, list[tuple[Any, ...]]]]:
        """The hours in ``[lo, hi)`` held here, each as (its events, its ``users`` hour
        rows as :func:`fold` makes them); they and every earlier hour are forgotten."""
        self.merge()
        out = {}
        for hour in sorted(h for h in self.hours if h < hi):
            table = self.hours.pop(hour)
            self.size -= len(table)
            if hour >= lo:
                rows = [("h", *k, *(m if -NANO_CAP < m[COST] < NANO_CAP else capped(tuple(m))))
                        for k, m in table.items()]  # fmt: skip
                out[hour] = (sum([m[0] for m in table.values()]), rows)
        return out

    def forget(self) -> None:
        """Drop every group (after a fork: the parent's batches are not this process's)."""
        self.hours.clear()
        self.pending.clear()
        self.size = 0


def users_from_events_sql() -> str:
    """PostgreSQL: the ``users`` hour rows of every hour in ``[%(lo)s, %(hi)s)``
    (timestamptz bounds, hour-aligned) computed from the events, replacing any row there.

    The same figures the writer's fold gives (:func:`group`): costs with at most 21 decimal
    places summed exactly and split into ``cost_nano`` and ``cost_frac``, the others
    summed into ``cost_extra`` (an event's cost is at most ``MAX_COST_USD``, far below
    :data:`NANO_CAP`); then :func:`capped`. Run hash-grouped (see
    :func:`agentledger.store.sql._users_from_events`)."""
    keys = ("grain", "bucket", *SPECS["users"])
    columns = (*keys, *measures("users"))
    normal = f"scale(cost_usd) <= {_FRAC_DIGITS}"
    # numeric until capped: an hour's sum may pass 64 bits (1,000 events of MAX_COST_USD)
    nano = "floor(coalesce(s, 0) * 1e9)"
    frac = "(coalesce(s, 0) * 1e21 - floor(coalesce(s, 0) * 1e9) * 1e12)::bigint"
    money = _capped_sql(nano, frac, "x", sqlite=False)
    replace = ", ".join(f"{m} = excluded.{m}" for m in measures("users"))
    return (
        f"INSERT INTO rollup_users ({', '.join(columns)}) "
        f"SELECT 'h', hour, user_id, kind, calls, errors, i, o, cr, cw, r, "
        f"{', '.join(money)}, unpriced, d FROM ("
        "SELECT date_bin('1 hour', started_at, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS hour, "
        f"coalesce(user_id, '{NONE}') AS user_id, kind, count(*) AS calls, "
        "count(*) FILTER (WHERE status = 'error') AS errors, sum(input_tokens) AS i, "
        "sum(output_tokens) AS o, sum(cache_read_tokens) AS cr, "
        "sum(cache_write_tokens) AS cw, sum(reasoning_tokens) AS r, "
        f"sum(cost_usd) FILTER (WHERE {normal}) AS s, "
        f"sum(cost_usd) FILTER (WHERE NOT ({normal})) AS x, "
        "count(*) FILTER (WHERE cost_source = 'unpriced') AS unpriced, sum(duration_ms) AS d "
        "FROM events WHERE started_at >= %(lo)s AND started_at < %(hi)s GROUP BY 1, 2, 3"
        ") AS hours "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {replace}"
    )


def user_totals_sql(*, one_hour: bool = False) -> str:
    """PostgreSQL: the running user totals (``rollup_user_totals``) of every (user, kind)
    hour row of ``users`` in ``[%(lo)s, %(hi)s)`` (timestamptz, hour-aligned): the pair's
    last totals row before ``lo`` plus its hour rows up to each hour, replacing any row
    there. What :func:`agentledger.store.sql._build_user_totals` computes in Python, on the
    server in one statement (no rows to the client and back: ~1 µs per event less for the
    writer's compaction in the ``rollup_write_cost`` benchmark).

    The pair's previous totals row is the first row of its window, so every running sum
    adds in the same order as Python's (``duration_ms`` is a float: the same rounding);
    money is carried (``cost_frac`` into ``cost_nano``, floor-wise as ``divmod``) and
    :func:`capped` once per row from the prefix sums, which may split a total above
    :data:`NANO_CAP` between ``cost_nano`` and ``cost_extra`` otherwise than Python's
    step-by-step capping: the same money (:func:`money`), the form is not compared.

    ``one_hour`` (``hi`` is ``lo`` plus an hour: every compaction of a live writer): each
    hour row plus its pair's previous totals row, joined, with no sort and no window (the
    same sums in the same order; 36 -> 28 ms for an hour of 3,000 pairs here)."""
    totals = MEASURES[:HIST]
    columns = ", ".join(totals)
    pairs = ("SELECT DISTINCT user_id, kind FROM rollup_users "
             "WHERE grain = 'h' AND bucket >= %(lo)s AND bucket < %(hi)s")  # fmt: skip
    sums = ", ".join(
        f"sum({m}) OVER w AS {m}" for m in totals
    )  # sum(bigint) is numeric: no overflow before the capping below
    nano = f"(cost_nano + floor(cost_frac / {FRAC}))"
    frac = f"(cost_frac - floor(cost_frac / {FRAC}) * {FRAC})"
    money = _capped_sql(nano, frac, "cost_extra", sqlite=False)
    values = ", ".join(
        {"cost_nano": money[0], "cost_frac": money[1], "cost_extra": money[2]}.get(m, m)
        for m in totals
    )
    replace = ", ".join(f"{m} = excluded.{m}" for m in totals)
    previous = (
        f"SELECT bucket, {columns} FROM rollup_user_totals t WHERE t.user_id = {{0}}.user_id "
        "AND t.kind = {0}.kind AND t.bucket < %(lo)s ORDER BY t.bucket DESC LIMIT 1"
    )
    if one_hour:
        added = ", ".join(f"{_plus(m)} AS {m}" for m in totals)
        return (
            f"INSERT INTO rollup_user_totals (user_id, kind, bucket, {columns}) "
            f"SELECT user_id, kind, bucket, {values} FROM ("
            f"SELECT u.user_id, u.kind, u.bucket, {added} FROM rollup_users u "
            f"LEFT JOIN LATERAL ({previous.format('u')}) b ON true "
            "WHERE u.grain = 'h' AND u.bucket >= %(lo)s AND u.bucket < %(hi)s) AS run "
            f"ON CONFLICT (user_id, kind, bucket) DO UPDATE SET {replace}"
        )
    return (
        f"WITH pairs AS ({pairs}), src AS ("
        f"SELECT p.user_id, p.kind, b.bucket, true AS base, {', '.join(f'b.{m}' for m in totals)} "
        f"FROM pairs p CROSS JOIN LATERAL ({previous.format('p')}) b "
        f"UNION ALL SELECT user_id, kind, bucket, false, {columns} FROM rollup_users "
        "WHERE grain = 'h' AND bucket >= %(lo)s AND bucket < %(hi)s), "
        f"run AS (SELECT user_id, kind, bucket, base, {sums} FROM src "
        "WINDOW w AS (PARTITION BY user_id, kind ORDER BY bucket ROWS UNBOUNDED PRECEDING)) "
        f"INSERT INTO rollup_user_totals (user_id, kind, bucket, {columns}) "
        f"SELECT user_id, kind, bucket, {values} FROM run WHERE NOT base "
        "ORDER BY user_id, kind, bucket "
        f"ON CONFLICT (user_id, kind, bucket) DO UPDATE SET {replace}"
    )


def _plus(m: str) -> str:
    """SQL of measure ``m`` of the previous totals row ``b`` (if any) plus the hour row
    ``u``, as the window of :func:`user_totals_sql` sums them (integers as numeric,
    ``duration_ms`` as a float from the previous total on, ``cost_extra`` NULL if both are)."""
    if m == "cost_extra":
        return ("CASE WHEN b.cost_extra IS NULL THEN u.cost_extra WHEN u.cost_extra IS NULL "
                "THEN b.cost_extra ELSE b.cost_extra + u.cost_extra END")  # fmt: skip
    if m == "duration_ms":
        return "coalesce(b.duration_ms, 0) + u.duration_ms"
    return f"coalesce(b.{m}, 0)::numeric + u.{m}"


def _measure_sums(spec: str, money: tuple[str, str, str] | None = None) -> list[str]:
    """SQL summing each of ``spec``'s measures over grouped rows: ``money`` (the three cost
    columns' expressions; default PostgreSQL's, carried and :func:`capped`), ``sum()`` of
    the others."""
    if money is None:
        money = _capped_sql(
            f"sum(cost_nano) + div(sum(cost_frac), {FRAC})", f"mod(sum(cost_frac), {FRAC})",
            "sum(cost_extra)", sqlite=False,
        )  # fmt: skip
    return [
        money[MEASURES.index(m) - COST] if m in MEASURES[COST : COST + 3] else f"sum({m})"
        for m in measures(spec)
    ]


def derive_sql(spec: str) -> str:
    """PostgreSQL: fill the derived rollup ``spec`` (:data:`DERIVED`; empty) from the rows of
    every grain of the rollup it is derived from, as a writer maintaining it would have
    (money carried and :func:`capped`, as :func:`compact_sql` sums it). For a schema going
    back to before migration 0013."""
    source = DERIVED_FROM[spec]
    keys = ", ".join(SPECS[spec])
    sums = _measure_sums(spec)
    return (
        f"INSERT INTO {table_name(spec)} (grain, bucket, {keys}, {', '.join(measures(spec))}) "
        f"SELECT grain, bucket, {keys}, {', '.join(sums)} FROM {table_name(source)} "
        f"GROUP BY grain, bucket, {keys}"
    )


def decimal_neg(a: Any) -> str | None:
    """``agentledger_dneg``: a decimal text negated exactly (SQLite; NULL stays NULL)."""
    return None if a is None else str(EXACT.minus(Decimal(str(a))))


def decimal_money(nano: Any, frac: Any) -> str:
    """``agentledger_money``: ``cost_nano`` and ``cost_frac`` as exact decimal text (SQLite)."""
    return str(_nano_money(int(nano or 0), int(frac or 0)))


def decimal_add(a: Any, b: Any) -> str:
    """``agentledger_dadd``: exact sum of two decimal texts (SQLite)."""
    return str(_add_extra(Decimal(str(a or 0)), b))


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a time range: ``source`` is ``"events"``, ``"m"``, ``"h"``, ``"d"`` or
    ``"c"`` (running user totals); bounds in µs since the epoch, ``None`` for open."""

    source: str
    lo: int | None
    hi: int | None
    sign: int = 1  # -1: subtracted (a running-totals range taken wider than asked)


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


def refine(
    segments: Iterable[Segment], marks: Marks | None, minutely: bool, *, lazy: bool = False
) -> list[Segment]:
    """``segments`` with every coarse piece at or after ``marks`` read at a finer grain.

    Days from ``marks.day`` on become hours; for a ``minutely`` rollup, hours from
    ``marks.hour`` on become minutes (its finest grain), and for a ``lazy`` one (hour rows
    built when their hour is compacted, see :data:`LAZY_USERS`), events. ``None`` marks:
    every grain is complete (a store written without compaction).
    """
    if marks is None:
        return list(segments)
    pieces: list[Segment] = []
    for segment in segments:
        for piece in _split(segment, marks.day, "h") if segment.source == "d" else [segment]:
            if minutely and piece.source == "h":
                pieces += _split(piece, marks.hour, "m")
            elif lazy and piece.source == "h":
                pieces += _split(piece, marks.hour, "events")
            else:
                pieces.append(piece)
    out: list[Segment] = []
    for piece in pieces:  # neighbours of one grain read as one range
        if out and out[-1].source == piece.source != "events" and out[-1].hi == piece.lo:
            out[-1] = Segment(piece.source, out[-1].lo, piece.hi)
        else:
            out.append(piece)
    return out


#: Below this many days, summing the ``users`` hour and day rows is cheaper than two "as
#: of" lookups per (user, kind) in the running totals. Measured (users report, CPU): at 1M
#: events the totals win from about a day (37.6 against 41.3 ms), at 10M from about 12
#: hours (a day: 49 against 86 ms; 6 hours: 47 against 45).
TOTALS_MIN_DAYS: Final = 1


def plan_totals(
    lo: int | None, hi: int | None, marks: Marks, *, lazy: bool = False
) -> list[Segment] | None:
    """Plan a ``users`` question (no time series) around the running user totals, or None
    when they would not help (a short range, or totals not built yet).

    Totals answer "everything before ``b``" for every hour boundary ``b`` up to
    ``marks.totals`` (the last compacted hour), so one ``c`` segment (the totals as of its
    end, less those as of its start) covers the whole hours of the range. A partial hour at
    an edge is either added (its events) or, when the rest of its hour is shorter, covered
    by the ``c`` segment and subtracted (``sign=-1``); after the mark come hour rows and
    events. A report costs two seeks per pair and bound and at most two half hours of
    events, at any time of day (with ``lazy`` hour rows, see :func:`refine`, also the
    events of the hours not compacted yet).
    """
    mark = marks.totals

    def bounds_around(t: int) -> tuple[int, int | None]:
        """The valid bounds just at or below ``t`` and just above it (None: none)."""
        if t >= mark:
            return mark, None
        below = t - t % HOUR_US
        return below, below + HOUR_US  # at most the mark: it is an hour boundary above t

    edge: list[Segment] = []
    start: int | None = None
    if lo is not None:
        below, above = bounds_around(lo)
        if lo == below or (above is not None and lo - below <= above - lo):
            start = below
            edge = _less(plan(below, lo)) if lo > below else []
        elif above is not None:
            start = above
            edge = plan(lo, above)
        else:
            return None
    if hi is None:
        end, tail = mark, refine(plan(mark, None), marks, minutely=False, lazy=lazy)
    else:
        below, above = bounds_around(hi)
        if hi == below or above is None or hi - below <= above - hi:
            end = below
            tail = refine(plan(below, hi), marks, False, lazy=lazy) if hi > below else []
        else:
            end = above
            tail = _less(plan(hi, above))
    if end - (0 if start is None else start) < TOTALS_MIN_DAYS * DAY_US:
        return None
    return [*edge, Segment("c", start, end), *tail]


def _less(segments: list[Segment]) -> list[Segment]:
    """``segments`` subtracted instead of added."""
    return [Segment(s.source, s.lo, s.hi, -s.sign) for s in segments]


def inside_one_hour(segment: Segment) -> int | None:
    """The hour (start, µs) that holds all of an events ``segment`` but is not all of it,
    else None."""
    lo, hi = segment.lo, segment.hi
    if segment.source != "events" or lo is None or hi is None or lo >= hi:
        return None
    hour = lo - lo % HOUR_US
    return hour if hi <= hour + HOUR_US and (lo, hi) != (hour, hour + HOUR_US) else None


def flip(segment: Segment) -> list[Segment]:
    """An events ``segment`` inside one hour as that hour's rollup row less the events of
    the rest of the hour: the same sums, cheaper when the rest holds fewer events (a range
    ending now: none). For rollups whose hour rows are their finest (always complete)."""
    hour = inside_one_hour(segment)
    assert hour is not None
    assert segment.lo is not None
    assert segment.hi is not None
    out = [Segment("h", hour, hour + HOUR_US, segment.sign)]
    if segment.lo > hour:
        out.append(Segment("events", hour, segment.lo, -segment.sign))
    if segment.hi < hour + HOUR_US:
        out.append(Segment("events", segment.hi, hour + HOUR_US, -segment.sign))
    return out


def _split(segment: Segment, mark: int, finer: str) -> list[Segment]:
    """``segment`` as its own grain before ``mark`` and as ``finer`` from it on."""
    lo, hi = segment.lo, segment.hi
    if hi is not None and hi <= mark:
        return [segment]
    if lo is not None and lo >= mark:
        return [Segment(finer, lo, hi)]
    return [Segment(segment.source, lo, mark), Segment(finer, mark, hi)]


def choose(
    needed: Iterable[str], *, histogram: bool = False, dialect: str | None = None
) -> str | None:
    """The first (smallest) rollup stored on ``dialect`` (None: every one) whose key has
    every ``needed`` dimension (and a latency histogram, if asked), else None."""
    wanted = set(needed)
    for spec in _STORED_ORDER if derived(dialect) else SPECS:
        if wanted <= set(SPECS[spec]) and not (histogram and spec in NO_HISTOGRAM):
            return spec
    return None


def key_value(value: Any) -> Any:
    """A rollup key column's stored value back to what the events table would say."""
    return None if value == NONE else value
