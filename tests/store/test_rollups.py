"""Rollup maintenance: migrations fill them from existing events; the planner splits ranges."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import func, select, text

from agentledger import Ledger
from agentledger.query import Query
from agentledger.store import rollups
from agentledger.store.rollups import DAY_US, HOUR_US, Segment, plan
from agentledger.store.schema import (
    from_epoch_us,
    rollup_tables,
    rollup_user_totals,
    to_epoch_us,
)
from agentledger.store.sql import (
    _MIGRATIONS,
    HEAD_REVISION,
    SQLStore,
    _build_user_totals,
    rebuild_rollups_on,
)


def _alembic(store: SQLStore, revision: str, *, down: bool) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def test_upgrading_a_database_with_events_fills_the_rollups(db_url: str) -> None:
    """A database from before rollups (revision 0002) answers from rollups once upgraded."""
    now = datetime.now(UTC)
    with Ledger(db_url, handle_signals=False, strict=True) as ledger:
        for i in range(40):
            ledger.record_llm("gpt-4o", 100 + i, 10, bot_id=f"b{i % 3}", user_id=f"u{i % 4}",
                              started_at=now - timedelta(hours=5 * i))  # fmt: skip
    store = SQLStore(db_url)
    expected = Query(store, use_rollups=False).totals(distinct_users=True)
    _alembic(store, "0002_seed_views", down=True)
    with store.engine.connect() as conn:
        assert not conn.execute(
            text("SELECT 1 FROM alembic_version WHERE version_num = '0003_rollups'")
        ).first()
    store.close()
    store = SQLStore(db_url)  # migrates to head, rebuilding the rollups from the events
    assert store.revision() == HEAD_REVISION
    with store.engine.connect() as conn:
        kinds = rollups.stored("kinds", store.dialect)  # what's, on PostgreSQL
        assert conn.execute(select(rollup_tables[kinds])).first() is not None
    assert Query(store).totals(distinct_users=True) == expected
    assert Query(store).totals(distinct_users=True).calls == 40
    marks = store.marks()
    assert marks.totals == marks.day > 0  # 0009 built the running user totals
    by_user = Query(store).breakdown("user_id", since=now - timedelta(days=7))
    assert by_user == Query(store, use_rollups=False).breakdown(
        "user_id", since=now - timedelta(days=7)
    )
    store.close()


def test_plan_splits_a_range_into_days_hours_and_event_edges() -> None:
    day0 = 20_000 * DAY_US
    lo = day0 - 2 * HOUR_US - 5  # 5 µs before 22:00 the day before
    hi = day0 + 3 * DAY_US + 4 * HOUR_US + 7
    assert plan(lo, hi) == [
        Segment("events", lo, day0 - 2 * HOUR_US),
        Segment("h", day0 - 2 * HOUR_US, day0),
        Segment("d", day0, day0 + 3 * DAY_US),
        Segment("h", day0 + 3 * DAY_US, day0 + 3 * DAY_US + 4 * HOUR_US),
        Segment("events", day0 + 3 * DAY_US + 4 * HOUR_US, hi),
    ]
    # Within one hour: only events. Open ends: rollups to the edge, nothing past it.
    assert plan(day0 + 5, day0 + 10) == [Segment("events", day0 + 5, day0 + 10)]
    assert plan(None, None) == [Segment("d", None, None)]
    assert plan(day0, None) == [Segment("d", day0, None)]
    assert plan(None, day0 + 7) == [Segment("d", None, day0), Segment("events", day0, day0 + 7)]
    assert plan(day0, day0 + 5 * HOUR_US, finest="h") == [Segment("h", day0, day0 + 5 * HOUR_US)]


def test_plan_with_minutes_reads_only_partial_minutes_of_events() -> None:
    day0 = 20_000 * DAY_US
    m = rollups.MINUTE_US
    lo = day0 + 10 * HOUR_US + 7 * m + 5  # 10:07 and 5 µs
    hi = day0 + 12 * HOUR_US + 3 * m + 9  # 12:03 and 9 µs
    assert plan(lo, hi, minutes=True) == [
        Segment("events", lo, day0 + 10 * HOUR_US + 8 * m),
        Segment("m", day0 + 10 * HOUR_US + 8 * m, day0 + 11 * HOUR_US),
        Segment("h", day0 + 11 * HOUR_US, day0 + 12 * HOUR_US),
        Segment("m", day0 + 12 * HOUR_US, day0 + 12 * HOUR_US + 3 * m),
        Segment("events", day0 + 12 * HOUR_US + 3 * m, hi),
    ]
    # Inside one minute: events only; inside one hour: minutes between two event edges.
    assert plan(lo, lo + 10, minutes=True) == [Segment("events", lo, lo + 10)]
    inside = plan(lo, lo + 5 * m, minutes=True)
    assert [s.source for s in inside] == ["events", "m", "events"]
    assert plan(lo, None, minutes=True)[0] == Segment("events", lo, lo - 5 + m)


def _event_row(started_us: int, cost: str | None, user: str = "u") -> tuple[object, ...]:
    row: list[object] = [None] * 28
    row[0], row[1], row[2] = str(uuid.uuid4()), "t" * 32, "s" * 16
    row[4], row[5], row[6], row[7], row[11] = started_us / 1e6, 5.0, "llm", "x", user
    row[10], row[13] = "bot", "tenant"
    row[16:25] = [10, 2, 0, 0, 0, cost, "priced", None, "ok"]
    return tuple(row)


def test_fold_keeps_minutes_for_kinds_and_what_only_and_aligns_every_bucket(
    db_url: str,
) -> None:
    """Minute rows for kinds and what only; every row's bucket starts its grain."""
    store = SQLStore(db_url)
    started = 20_000 * DAY_US + 3 * HOUR_US + 61_000_000  # 03:01:01
    assert store.write([_event_row(started, "0.5"), _event_row(started + 60_000_000, "0.25")])
    width = {"m": rollups.MINUTE_US, "h": HOUR_US, "d": DAY_US}
    with store.engine.connect() as conn:
        for spec, table in rollup_tables.items():
            rows = conn.execute(select(table.c.grain, table.c.bucket, table.c.calls)).all()
            if spec in rollups.derived(store.dialect):  # read from a finer rollup instead
                assert not rows, spec
                continue
            assert sorted({r.grain for r in rows}) == sorted(rollups.grains(spec)), spec
            for r in rows:
                assert to_epoch_us(r.bucket) % width[r.grain] == 0, (spec, r)
            for grain in ("h", "d"):  # both events in one hour and one day
                assert [r.calls for r in rows if r.grain == grain] == [2], (spec, grain)
    store.close()


@pytest.mark.parametrize(
    "cost",
    ["0", "0.5", "0.00000725", "1E-7", "123456.000000000000000000001", "-0.25",
     "0.0000000000000000000001", "98765432109876.123456789", "5E+3"],
)  # fmt: skip
def test_split_cost_and_money_round_trip_exactly(cost: str) -> None:
    value = Decimal(cost)
    for text_or_decimal in (cost, value):
        nano, frac, extra = rollups.split_cost(text_or_decimal)
        assert 0 <= frac < rollups.FRAC
        assert rollups.money(nano, frac, extra) == value
    assert str(rollups.money(*rollups.split_cost(cost))) == str(rollups.tidy(value))
    assert "E" not in str(rollups.tidy(Decimal("5E+3")))


def test_rollup_money_is_exact_for_costs_beyond_21_decimal_places(db_url: str) -> None:
    """Costs the integer columns cannot hold go to cost_extra; sums stay exact."""
    costs = ["0.1", "0.2", "0.0000000000000000000000033", "7.000000000000000000000001",
             "999999999.999999999999999999", "0.000000000001"]  # fmt: skip
    store = SQLStore(db_url)
    base = 20_000 * DAY_US + 5 * HOUR_US
    rows = [_event_row(base + i * 7_000_000, c, user=f"u{i % 2}") for i, c in enumerate(costs)]
    assert store.write(rows[:3]) == 3
    assert store.write(rows[3:]) == 3  # a second batch merges into the same rollup rows
    expected = Decimal(0)
    for c in costs:  # at a precision that does not round (the default context would)
        expected = rollups.EXACT.add(expected, Decimal(c))
    q, events_only = Query(store), Query(store, use_rollups=False)
    since = from_epoch_us(20_000 * DAY_US)
    assert q.totals().cost_usd == expected == events_only.totals().cost_usd
    assert q.totals(since=since).cost_usd == expected
    by_user = {g.key: g.summary.cost_usd for g in q.breakdown("user_id", since=since)}
    assert by_user == {g.key: g.summary.cost_usd for g in events_only.breakdown("user_id")}
    assert rollups.EXACT.add(*by_user.values()) == expected
    store.close()


_ODD_COSTS = (
    "0", "0E-9", "0E+2", "0.5", "12", "0.0061520", "1.5E-7", "-0.25", "1234567890.25",
    "123456789.123456789012345678901", "0.0000000000000000000000033", "7.000000000000000000000001",
    "999999999.999999999999999999999", "0.000000000001", "5E+3",
)  # fmt: skip


def test_edge_events_with_odd_costs_sum_exactly(db_url: str) -> None:
    """Events read at a range's partial hours (added or subtracted) sum their costs
    exactly, whatever their text: exponents, signs, more than 21 places, large values."""
    store = SQLStore(db_url)
    base = 20_000 * DAY_US + 5 * HOUR_US
    rows = [
        _event_row(base + 7_000_000 + i * 200_000_000, c, user=f"u{i % 3}")
        for i, c in enumerate(_ODD_COSTS)
    ]
    assert store.write(rows) == len(rows)
    q, events_only = Query(store), Query(store, use_rollups=False)
    last = base + 7_000_000 + (len(rows) - 1) * 200_000_000
    ranges = [
        (base + 1, base + HOUR_US - 1), (base + 500_000_000, last), (base + 1, last - 1),
        (base - HOUR_US, base + 1_500_000_000), (base + 1_000_000_000, base + 2 * DAY_US),
    ]  # fmt: skip
    for lo, hi in ranges:
        window = {"since": from_epoch_us(lo), "until": from_epoch_us(hi)}
        assert q.totals(**window) == events_only.totals(**window), (lo, hi)
        ours = {g.key: g.summary for g in q.breakdown("user_id", **window)}
        assert ours == {g.key: g.summary for g in events_only.breakdown("user_id", **window)}
    store.close()


def test_choose_takes_the_smallest_rollup_that_holds_every_dimension() -> None:
    assert rollups.choose(()) == "kinds"
    assert rollups.choose(("bot_id",)) == "bots"
    assert rollups.choose(("bot_id", "status")) == "attribution"
    assert rollups.choose(("model", "kind")) == "what"
    assert rollups.choose(("user_id", "model")) is None
    assert rollups.choose(("task_id",)) is None
    # PostgreSQL stores no kinds, bots or tenants rows: they are read from the finer ones.
    assert rollups.choose((), dialect="postgresql") == "what"
    assert rollups.choose(("kind",), dialect="postgresql") == "what"
    assert rollups.choose(("bot_id",), dialect="postgresql") == "attribution"
    assert rollups.choose(("tenant_id", "kind"), dialect="postgresql") == "attribution"
    assert rollups.choose(("user_id",), dialect="postgresql") == "users"
    assert rollups.choose(("user_id",), histogram=True, dialect="postgresql") is None
    assert rollups.choose(("bot_id",), dialect="sqlite") == "bots"


def test_rollup_keys_with_tabs_backslashes_and_newlines_round_trip(db_url: str) -> None:
    """Keys go through PostgreSQL's COPY text format escaped: odd names stay themselves."""
    names = ["C:\\tools\\run", "tab\there", "two\nlines", "cr\rx", "\\N", "plain"]
    with Ledger(db_url, handle_signals=False, strict=True) as ledger:
        for i, name in enumerate(names):
            ledger.record_tool(name, bot_id=f"bot\t{i % 2}", user_id="u\\1", duration_ms=3.0)
    store = SQLStore(db_url)
    q, events_only = Query(store), Query(store, use_rollups=False)
    for by in ("name", "bot_id", "user_id"):
        ours = {g.key: g.summary.calls for g in q.breakdown(by, since=from_epoch_us(0))}
        assert ours == {g.key: g.summary.calls for g in events_only.breakdown(by)}, by
    assert {g.key[0] for g in q.breakdown("name", since=from_epoch_us(0))} == set(names)
    store.close()


def test_money_of_integer_parts_is_the_tidy_decimal() -> None:
    """The fast path (no cost_extra) equals the exact Decimal, trailing zeros stripped."""
    for nano, frac in [(0, 0), (15_000_000, 0), (1, 1), (-3, 5), (10**12, 0), (7, 10**11),
                       (123_456_789_000, 999_999_999_999), (-2_000_000_000, 0)]:  # fmt: skip
        exact = Decimal(nano).scaleb(-9, rollups.EXACT) + Decimal(frac).scaleb(-21, rollups.EXACT)
        got = rollups.money(nano, frac, None)
        assert got == exact
        assert str(got) == str(rollups.tidy(exact))


def _rollup_calls(store: SQLStore, spec: str, grain: str) -> int:
    """Calls in ``spec``'s rows of ``grain``: those of the rollup it is read from where the
    schema (at head) derives it (kinds, bots and tenants on PostgreSQL)."""
    if store.revision() == HEAD_REVISION:
        spec = rollups.stored(spec, store.dialect)
    table = rollup_tables[spec]
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(table.c.calls), 0)).where(table.c.grain == grain)
            ).scalar()
        )


def test_marks_migration_up_starts_at_now_and_down_compacts_everything(db_url: str) -> None:
    """0008 on a database with events puts the marks at the current hour and day; going back
    to 0007 (which reads every coarse row as complete) first builds the missing ones."""
    store = SQLStore(db_url)
    early = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    store.clock = lambda: early.timestamp()
    with Ledger(store=store, handle_signals=False, strict=True) as ledger:
        for i in range(30):  # from before the clock to two days after it
            ledger.record_llm("gpt-4o", 100, 10, user_id=f"u{i % 4}",
                              started_at=early + timedelta(hours=2 * i - 5))  # fmt: skip
    store = SQLStore(db_url)
    assert store.marks() == rollups.Marks.due(to_epoch_us(early))
    assert _rollup_calls(store, "users", "d") < 30  # later days wait for compaction
    assert _rollup_calls(store, "kinds", "h") < 30
    expected = Query(store, use_rollups=False).totals(distinct_users=True)
    _alembic(store, "0007_rollup_integer_money", down=True)
    for spec in rollups.SPECS:
        assert _rollup_calls(store, spec, "d") == 30, spec
    assert _rollup_calls(store, "what", "h") == 30
    store.close()
    store = SQLStore(db_url)  # back to head
    now_us = to_epoch_us(datetime.now(UTC))
    marks = store.marks()
    assert marks.day == now_us - now_us % DAY_US or marks.day == now_us - now_us % DAY_US - DAY_US
    assert Query(store).totals(distinct_users=True) == expected
    store.close()


def _user_totals(store: SQLStore) -> list[tuple[str, str, int, int, Decimal]]:
    t = rollup_user_totals.c
    query = select(t.user_id, t.kind, t.bucket, t.calls, t.cost_nano, t.cost_frac, t.cost_extra)
    with store.engine.connect() as conn:
        return [
            (r.user_id, r.kind, to_epoch_us(r.bucket), r.calls,
             rollups.money(r.cost_nano, r.cost_frac, r.cost_extra))
            for r in conn.execute(query.order_by(t.user_id, t.kind, t.bucket))
        ]  # fmt: skip


def _assert_totals_as_of(store: SQLStore, width: int, mark: int) -> None:
    """Each totals row holds its pair's events before the end of its bucket (or the mark)."""
    raw = Query(store, use_rollups=False)
    rows = _user_totals(store)
    assert rows
    for user, kind, bucket, calls, cost in rows:
        assert bucket % width == 0
        until = from_epoch_us(min(bucket + width, mark))
        expected = raw.totals(user_id=user, kind=kind, until=until)
        assert (calls, cost) == (expected.calls, expected.cost_usd), (user, kind, bucket)


def _compacted_store(
    db_url: str, start: datetime, now: datetime, *, calls: int, every: timedelta
) -> SQLStore:
    """A store whose clock says ``now``, with ``calls`` LLM calls of three users from
    ``start`` on, ``every`` apart, compacted up to ``now``."""
    store = SQLStore(db_url)
    store.clock = lambda: now.timestamp()
    with Ledger(store=store, handle_signals=False, strict=True) as ledger:
        for i in range(calls):
            ledger.record_llm("gpt-4o", 100 + i, 10, user_id=f"u{i % 3}",
                              started_at=start + i * every)  # fmt: skip
    store.compact(now=now.timestamp())
    return store


def test_hourly_totals_migration_down_keeps_each_day_and_up_rebuilds_the_hours(
    db_url: str,
) -> None:
    """0010 keeps a totals row per (user, kind) and active hour; back at 0009 one per day
    (its last hour's, at the day's start); up again, the hours are rebuilt."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    now = start + timedelta(days=6, hours=5, minutes=20)
    store = _compacted_store(db_url, start, now, calls=64, every=timedelta(minutes=139))
    mark = store.marks().totals
    assert mark == to_epoch_us(now) - to_epoch_us(now) % HOUR_US
    hourly = _user_totals(store)
    assert len(hourly) == len({(u, k, b) for u, k, b, *_ in hourly}) > 3 * 6
    _assert_totals_as_of(store, HOUR_US, mark)
    _alembic(store, "0009_rollup_user_totals", down=True)
    assert len(_user_totals(store)) == len({(u, b - b % DAY_US) for u, _, b, *_ in hourly})
    _assert_totals_as_of(store, DAY_US, mark)
    store.close()
    store = SQLStore(db_url)  # back to head
    store.clock = lambda: now.timestamp()
    assert _user_totals(store) == hourly
    q, raw = Query(store), Query(store, use_rollups=False)
    window = {"since": start + timedelta(days=1, hours=13, minutes=10), "until": now}
    assert q.breakdown(("user_id", "kind"), **window) == raw.breakdown(
        ("user_id", "kind"), **window
    )
    store.close()


def test_user_totals_built_in_small_chunks_equal_one_build(db_url: str) -> None:
    """The totals build streams the hour rows in chunks (a running total per pair carries
    across them): any chunk size gives the same rows."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    now = start + timedelta(days=3, hours=2)
    store = _compacted_store(db_url, start, now, calls=40, every=timedelta(minutes=97))
    whole = _user_totals(store)
    assert len(whole) > 10

    def rebuild(raw: object) -> None:
        cur = raw.cursor()  # type: ignore[attr-defined]
        cur.execute("DELETE FROM rollup_user_totals")
        _build_user_totals(cur, store.dialect, 0, store.marks().totals, chunk_rows=3)
        cur.close()

    store._transaction(rebuild)
    assert _user_totals(store) == whole
    store.close()


def test_rollups_rebuilt_in_small_chunks_equal_the_written_ones(db_url: str) -> None:
    """A rebuild folds the events a chunk at a time into the same rollup rows (on
    PostgreSQL each chunk goes through the stage tables the earlier chunks used)."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    now = start + timedelta(days=3, hours=2)
    store = _compacted_store(db_url, start, now, calls=40, every=timedelta(minutes=97))
    store.compact(now=(now + timedelta(days=2)).timestamp())  # every bucket closed
    written = {spec: _rollup_calls(store, spec, grain) for spec in rollups.SPECS
               for grain in rollups.grains(spec)}  # fmt: skip
    expected = Query(store, use_rollups=False).totals(distinct_users=True)
    store._transaction(lambda raw: rebuild_rollups_on(raw, store.dialect, chunk=7))
    rebuilt = {spec: _rollup_calls(store, spec, grain) for spec in rollups.SPECS
               for grain in rollups.grains(spec)}  # fmt: skip
    assert rebuilt == written
    assert set(written.values()) == {40}
    assert Query(store).totals(distinct_users=True) == expected
    store.close()


def test_refine_reads_the_finer_grain_from_the_marks_on() -> None:
    day0 = 20_000 * DAY_US
    marks = rollups.Marks(hour=day0 + DAY_US + 5 * HOUR_US, day=day0 + DAY_US)
    segments = plan(day0 - 3 * HOUR_US, day0 + DAY_US + 7 * HOUR_US + 90_000_000, minutes=True)
    assert rollups.refine(segments, marks, minutely=True) == [
        Segment("h", day0 - 3 * HOUR_US, day0),
        Segment("d", day0, day0 + DAY_US),
        Segment("h", day0 + DAY_US, day0 + DAY_US + 5 * HOUR_US),
        Segment("m", day0 + DAY_US + 5 * HOUR_US, day0 + DAY_US + 7 * HOUR_US + 60_000_000),
        Segment("events", day0 + DAY_US + 7 * HOUR_US + 60_000_000,
                day0 + DAY_US + 7 * HOUR_US + 90_000_000),
    ]  # fmt: skip
    assert rollups.refine(segments, marks, minutely=False)[2] == Segment(
        "h", day0 + DAY_US, day0 + DAY_US + 7 * HOUR_US
    )
    assert rollups.refine([Segment("d", None, None)], marks, minutely=True) == [
        Segment("d", None, day0 + DAY_US),
        Segment("h", day0 + DAY_US, day0 + DAY_US + 5 * HOUR_US),
        Segment("m", day0 + DAY_US + 5 * HOUR_US, None),
    ]
    assert rollups.refine(segments, None, minutely=True) == segments


def test_fold_under_marks_leaves_coarse_rows_of_open_buckets_to_compaction() -> None:
    day0 = 20_000 * DAY_US
    marks = rollups.Marks(hour=day0 + 5 * HOUR_US, day=day0)
    rows = [
        (*r[:4], at, *r[5:])  # fold takes started_at in epoch µs
        for at in (day0 + 4 * HOUR_US, day0 + 6 * HOUR_US)
        for r in [_event_row(at, "0.5")]
    ]
    folded = rollups.fold(rows, marks)
    grains = {spec: sorted((r[0], r[1]) for r in out) for spec, out in folded.items()}
    assert grains["what"] == [("h", day0 + 4 * HOUR_US), ("m", day0 + 4 * HOUR_US),
                              ("m", day0 + 6 * HOUR_US)]  # fmt: skip
    assert grains["users"] == [("h", day0 + 4 * HOUR_US), ("h", day0 + 6 * HOUR_US)]
    assert all(grain != "d" for pairs in grains.values() for grain, _ in pairs)
    everything = rollups.fold(rows)
    assert [r[4] for r in everything["users"] if r[0] == "d"] == [2]  # calls, after 2 keys


def test_a_failed_compaction_loses_nothing_and_is_retried(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import agentledger.store.sql as sql

    store = SQLStore(db_url)
    base = datetime(2026, 5, 4, 8, 15, tzinfo=UTC)
    clock = [base]
    store.clock = lambda: clock[0].timestamp()
    rows = [_event_row(to_epoch_us(base + timedelta(minutes=20 * i)), "0.1") for i in range(12)]
    assert store.write(rows[:1]) == 1  # the first write moves the marks to the clock

    def broken(*_args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sql, "compact_on", broken)
    clock[0] = base + timedelta(hours=5)
    with caplog.at_level("WARNING", logger="agentledger"):
        assert store.write(rows[1:]) == 11
    assert "rollup compaction failed" in caplog.text
    assert store.marks() == rollups.Marks.due(to_epoch_us(base))  # not moved
    assert Query(store).totals().calls == 12
    assert Query(store).totals().cost_usd == Decimal("1.2")
    monkeypatch.undo()
    assert store.compact() == rollups.Marks.due(to_epoch_us(clock[0]))
    assert _rollup_calls(store, "kinds", "h") == 12
    assert Query(store).totals().calls == 12
    store.close()


def test_deleted_mark_rows_come_back_with_the_next_compaction(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mark rows deleted by hand (a TRUNCATE of every table) read as "nothing compacted":
    the next write compacts once and writes them back, instead of compacting everything
    since 1970 on every write."""
    import agentledger.store.sql as sql

    store = SQLStore(db_url)
    base = datetime(2026, 5, 4, 8, 15, tzinfo=UTC)
    store.clock = lambda: (base + timedelta(hours=3)).timestamp()
    # 08:15 to 10:55, then two in the clock's own hour (after the marks: no compaction due)
    rows = [_event_row(to_epoch_us(base + timedelta(minutes=20 * i)), "0.1") for i in range(9)]
    rows += [_event_row(to_epoch_us(base + timedelta(hours=3, minutes=m)), "0.1") for m in (1, 2)]
    assert store.write(rows[:3]) == 3
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM rollup_marks"))
    assert store.marks() == rollups.Marks(0, 0, 0)
    compactions: list[int] = []
    compact_on = sql.compact_on

    def counted(*args: object, **kwargs: object) -> rollups.Marks:
        compactions.append(1)
        return compact_on(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sql, "compact_on", counted)
    assert store.write(rows[3:9]) == 6
    assert store.write(rows[9:10]) == 1
    assert store.write(rows[10:]) == 1
    assert len(compactions) == 1
    due = rollups.Marks.due(to_epoch_us(base + timedelta(hours=3)))
    assert store.marks() == due
    assert Query(store).totals().calls == 11
    assert Query(store).totals().cost_usd == Decimal("1.1")
    assert _rollup_calls(store, "kinds", "h") == 9  # the clock's hour is not closed
    store.close()


def test_postgres_compaction_waits_for_a_writer_holding_the_marks(pg_url: str) -> None:
    """A writer's transaction holds the marks FOR SHARE: a compaction waits until it ends,
    so it never sums a bucket while events are being added to its finest rows only."""
    import threading

    import psycopg

    store = SQLStore(pg_url)
    store.compact(now=datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    writer = psycopg.connect(url)
    writer.execute("SELECT grain, upto FROM rollup_marks FOR SHARE")
    done = threading.Event()

    def compact() -> None:
        store.compact(now=datetime(2026, 1, 2, 3, tzinfo=UTC).timestamp())
        done.set()

    thread = threading.Thread(target=compact)
    thread.start()
    assert not done.wait(0.5)  # blocked behind the writer
    writer.commit()
    thread.join(30)
    assert done.is_set()
    assert store.marks() == rollups.Marks.due(to_epoch_us(datetime(2026, 1, 2, 3, tzinfo=UTC)))
    writer.close()
    store.close()


def test_plan_totals_reads_whole_hours_as_two_running_totals() -> None:
    day0 = 20_000 * DAY_US
    mark = day0 + 10 * DAY_US + 7 * HOUR_US  # totals hold everything before 07:00 of day 10
    marks = rollups.Marks(hour=mark, day=day0 + 10 * DAY_US, totals=mark)
    # A start at 03:30: the totals from 03:00, less the half hour's events; an end after
    # the mark: the totals to the mark, then hour rows and events.
    lo, hi = day0 + 3 * HOUR_US + 1_800_000_000, day0 + 10 * DAY_US + 9 * HOUR_US + 60
    assert rollups.plan_totals(lo, hi, marks) == [
        Segment("events", day0 + 3 * HOUR_US, lo, -1),
        Segment("c", day0 + 3 * HOUR_US, mark),
        Segment("h", mark, day0 + 10 * DAY_US + 9 * HOUR_US),
        Segment("events", day0 + 10 * DAY_US + 9 * HOUR_US, hi),
    ]
    # A start late in its hour: the rest of that hour is added, at any time of day.
    late = day0 + 20 * HOUR_US + 2_400_000_000  # 20:40
    assert rollups.plan_totals(late, hi, marks)[:2] == [
        Segment("events", late, day0 + 21 * HOUR_US),
        Segment("c", day0 + 21 * HOUR_US, mark),
    ]
    # An end late in its hour: the totals to the next hour, less the last 20 minutes; an
    # end on an hour boundary before the mark: the totals to it, nothing else.
    end = day0 + 8 * DAY_US + 12 * HOUR_US + 2_400_000_000
    assert rollups.plan_totals(day0, end, marks) == [
        Segment("c", day0, day0 + 8 * DAY_US + 13 * HOUR_US),
        Segment("events", end, day0 + 8 * DAY_US + 13 * HOUR_US, -1),
    ]
    end = day0 + 10 * DAY_US + 6 * HOUR_US
    assert rollups.plan_totals(day0, end, marks) == [Segment("c", day0, end)]
    # Totals behind the day rows: day rows after them; too short a run, or none: no totals.
    behind = marks._replace(totals=day0 + 6 * DAY_US)
    assert rollups.plan_totals(day0, None, behind) == [
        Segment("c", day0, day0 + 6 * DAY_US),
        Segment("d", day0 + 6 * DAY_US, day0 + 10 * DAY_US),
        Segment("h", day0 + 10 * DAY_US, None),
    ]
    assert rollups.plan_totals(day0 + 5 * DAY_US + 12 * HOUR_US, None, behind) is None
    assert rollups.plan_totals(mark - 20 * HOUR_US, None, marks) is None
    assert rollups.plan_totals(mark + HOUR_US, None, marks) is None
    assert rollups.plan_totals(None, None, marks._replace(totals=0)) is None


def test_flip_reads_a_partial_hour_as_the_hour_less_the_rest() -> None:
    hour = 20_000 * DAY_US + 5 * HOUR_US
    inside = Segment("events", hour + 600_000_000, hour + 2_400_000_000, -1)
    assert rollups.flip(inside) == [
        Segment("h", hour, hour + HOUR_US, -1),
        Segment("events", hour, hour + 600_000_000, 1),
        Segment("events", hour + 2_400_000_000, hour + HOUR_US, 1),
    ]
    assert rollups.flip(Segment("events", hour, hour + 60)) == [
        Segment("h", hour, hour + HOUR_US),
        Segment("events", hour + 60, hour + HOUR_US, -1),
    ]
    assert rollups.inside_one_hour(Segment("events", hour, hour + HOUR_US)) is None  # whole
    assert rollups.inside_one_hour(Segment("events", hour + 60, hour + HOUR_US + 60)) is None
    assert rollups.inside_one_hour(Segment("h", hour, hour + 60)) is None


@pytest.mark.postgres
def test_bitmap_or_in_sql_equals_python_or(pg_url: str) -> None:
    """agentledger_bitmap_or (migration 0011), which writers use to add users to a stored
    member bitmap, against Python's OR of the same bitmaps, lengths 0 to 200 bytes."""
    import random

    import psycopg

    from agentledger.store.sql import _bitmap

    SQLStore(pg_url).close()  # the schema, with the function
    rng = random.Random(11)
    pairs = [(rng.getrandbits(rng.randrange(0, 1600)), rng.getrandbits(rng.randrange(0, 1600)))
             for _ in range(300)] + [(0, 0), (0, 1), (1 << 999, 1), (255, 256)]  # fmt: skip
    with psycopg.connect(pg_url) as conn:
        got = conn.execute(
            "SELECT agentledger_bitmap_or(a, b) FROM unnest(%s::bytea[], %s::bytea[]) AS u(a, b)",
            [[_bitmap(a) for a, _ in pairs], [_bitmap(b) for _, b in pairs]],
        ).fetchall()
    assert [bytes(r[0]) for r in got] == [_bitmap(a | b) for a, b in pairs]


def test_stage_tables_of_a_rolled_back_first_write_are_made_again(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection's stage tables are created once, in its first write; when that write
    rolls back, they are gone with it, and the next write on the connection makes them
    again instead of failing on a missing table (nothing is lost: the batch is retried)."""
    from agentledger.errors import StoreError
    from agentledger.store import sql

    real = rollups.merge_sql
    calls = []

    def merge_sql(spec: str, stage: str) -> str:
        calls.append(spec)
        return "SELECT agentledger_no_such_function()" if len(calls) == 1 else real(spec, stage)

    monkeypatch.setattr(rollups, "merge_sql", merge_sql)
    store = SQLStore(pg_url)
    before = set(sql._STAGED)  # other tests' connections

    def staged() -> set[object]:
        return set(sql._STAGED) - before

    try:
        start = to_epoch_us(datetime.now(UTC)) - HOUR_US
        batch = [_event_row(start + i * 1_000_000, "0.5", user=f"u{i % 4}") for i in range(30)]
        with pytest.raises(StoreError, match="agentledger_no_such_function"):
            store.write(batch)
        assert calls[0] == "what"  # it failed after creating the stage tables
        assert not staged()
        assert store.write(batch) == 30
        (conn,) = staged()
        more = [_event_row(start + i * 1_000_000, "0.25") for i in range(30, 35)]
        assert store.write(more) == 5
        assert staged() == {conn}
        # Only the rollups staged are made (every commit empties each one made): never
        # those derived on PostgreSQL.
        assert {"what", "attribution"} <= sql._STAGED[conn]
        assert not sql._STAGED[conn] & rollups.derived("postgresql")
        assert Query(store).totals().calls == Query(store, use_rollups=False).totals().calls == 35
    finally:
        store.close()


def test_postgresql_rollup_tables_leave_room_for_updates_in_place(pg_url: str) -> None:
    """Migration 0012: the six rollups a writer updates have fillfactor 60 (their rows'
    new versions fit in the same page); the downgrade resets it."""

    def fillfactors(store: SQLStore) -> dict[str, list[str] | None]:
        with store.engine.connect() as conn:
            return dict(conn.execute(text(
                "SELECT relname, reloptions FROM pg_class WHERE relkind = 'r' "
                "AND relname LIKE 'rollup_%' ORDER BY relname"
            )).all())  # fmt: skip

    store = SQLStore(pg_url)
    try:
        found = fillfactors(store)
        updated = {rollups.table_name(spec) for spec in rollups.SPECS}
        assert {t for t, options in found.items() if options == ["fillfactor=60"]} == updated
        assert all(found[t] is None for t in found.keys() - updated)  # members, totals, marks
        _alembic(store, "0011_bitmap_or", down=True)
        assert all(options is None for options in fillfactors(store).values())
        _alembic(store, HEAD_REVISION, down=False)
        assert fillfactors(store) == found
    finally:
        store.close()


def _users_rows(store: SQLStore, grain: str = "h") -> dict[tuple[object, ...], tuple[object, ...]]:
    """``rollup_users`` rows of ``grain``: (bucket µs, user, kind) -> their measures."""
    table = rollup_tables["users"]
    with store.engine.connect() as conn:
        rows = conn.execute(select(table).where(table.c.grain == grain)).all()
    return {
        (to_epoch_us(r.bucket), r.user_id, r.kind): tuple(
            round(v, 6) if isinstance(v, float) else v for v in r[4:]
        )
        for r in rows
    }


def test_users_hour_rows_of_open_hours_come_from_compaction_on_postgresql(db_url: str) -> None:
    """PostgreSQL writers leave the ``users`` rows of the hours not compacted yet to the
    compaction that closes them (late events still go in at once); the rows it builds
    from the events equal the writer's fold, money of every kind included. SQLite writers
    keep them all. Answers by user are exact either way."""
    hour0 = to_epoch_us(datetime(2026, 3, 2, 10, tzinfo=UTC))
    store = SQLStore(db_url)
    now = [hour0 + HOUR_US + 20 * 60_000_000]  # 11:20: the 10:00 hour is closed
    store.clock = lambda: now[0] / 1e6
    store.compact()
    odd = [("0.1", "u1"), ("0.000000000000000000000001", "u1"), (None, "u2"),
           ("0.25", None), ("123.456", "u2"), ("0", "u3")]  # fmt: skip
    late = [_event_row(hour0 + 60_000_000 * i, cost, user) for i, (cost, user) in enumerate(odd)]
    live = [_event_row(hour0 + HOUR_US + 60_000_000 * i, cost, user)
            for i, (cost, user) in enumerate(odd)]  # fmt: skip
    fresh = [_event_row(hour0 + HOUR_US + 60_000_000 * i, "0.5", f"u{i}") for i in range(3)]
    errors = [(*r[:24], "error", "E", "boom", None) for r in fresh[:2]]
    unpriced = [(*r[:21], None, "unpriced", *r[23:]) for r in fresh[2:]]
    assert store.write(late + live + errors + unpriced) == 15
    lazy = store.dialect in rollups.LAZY_USERS
    assert (store.dialect == "postgresql") == lazy
    hours = {key[0] for key in _users_rows(store)}
    assert hours == ({hour0} if lazy else {hour0, hour0 + HOUR_US})
    raw, query = Query(store, use_rollups=False), Query(store)
    for since in (None, from_epoch_us(hour0 + 30 * 60_000_000)):
        for user in ("u1", "u2", None):
            assert query.totals(user_id=user, since=since) == raw.totals(user_id=user, since=since)
        assert query.breakdown(("user_id", "kind"), since=since) == raw.breakdown(
            ("user_id", "kind"), since=since
        )
    now[0] += HOUR_US  # 12:20: the 11:00 hour closes
    store.compact()
    built = _users_rows(store)
    assert {key[0] for key in built} == {hour0, hour0 + HOUR_US}
    store.rebuild_rollups()  # the writer's fold of every event
    assert _users_rows(store) == built
    assert query.breakdown("user_id") == raw.breakdown("user_id")
    store.close()


def test_refine_reads_lazy_hour_rows_from_events_after_the_hour_mark() -> None:
    day0 = 20_000 * DAY_US
    marks = rollups.Marks(hour=day0 + DAY_US + 5 * HOUR_US, day=day0 + DAY_US)
    segments = plan(day0 - 3 * HOUR_US, day0 + DAY_US + 7 * HOUR_US)
    assert rollups.refine(segments, marks, minutely=False, lazy=True) == [
        Segment("h", day0 - 3 * HOUR_US, day0),
        Segment("d", day0, day0 + DAY_US),
        Segment("h", day0 + DAY_US, day0 + DAY_US + 5 * HOUR_US),
        Segment("events", day0 + DAY_US + 5 * HOUR_US, day0 + DAY_US + 7 * HOUR_US),
    ]
    assert rollups.refine([Segment("d", None, None)], marks, False, lazy=True) == [
        Segment("d", None, day0 + DAY_US),
        Segment("h", day0 + DAY_US, day0 + DAY_US + 5 * HOUR_US),
        Segment("events", day0 + DAY_US + 5 * HOUR_US, None),
    ]
    tail = rollups.plan_totals(day0 - 2 * DAY_US, None, marks._replace(totals=marks.hour),
                               lazy=True)  # fmt: skip
    assert tail is not None
    after = [s for s in tail if s.source != "c"]
    assert {s.source for s in after} == {"events"}
    assert (after[0].lo, after[-1].hi) == (marks.hour, None)
    assert all(a.hi == b.lo for a, b in itertools.pairwise(after))


def test_prune_on_postgresql_keeps_the_events_of_hours_not_compacted(pg_url: str) -> None:
    """Their ``users`` rows are built from them when their hour closes."""
    hour0 = to_epoch_us(datetime(2026, 3, 2, 10, tzinfo=UTC))
    store = SQLStore(pg_url)
    store.clock = lambda: (hour0 + HOUR_US + 60_000_000) / 1e6  # 11:01
    rows = [_event_row(hour0 + HOUR_US * i // 2, "0.5", f"u{i}") for i in range(3)]
    assert store.write(rows) == 3  # 10:00, 10:30, 11:00
    assert store.prune(datetime(2026, 3, 3, tzinfo=UTC)) == 2  # the 11:00 event stays
    assert store.count() == 1
    store.clock = lambda: (hour0 + 2 * HOUR_US + 60_000_000) / 1e6
    store.compact()
    assert sorted(k[1] for k in _users_rows(store)) == ["u0", "u1", "u2"]
    assert Query(store).totals(user_id="u2").calls == 1
    store.close()


def test_user_totals_are_the_running_sums_of_the_hour_rows(db_url: str) -> None:
    """Each totals row is its pair's hour rows summed up to its hour, exactly: money with
    carries, decimals beyond 21 places and sums past the cap (built on the server on
    PostgreSQL, in Python on SQLite), built in two steps (the second starts from the
    first's last row per pair), hour by hour (as live compaction does) or in one."""
    store = SQLStore(db_url)
    users = rollup_tables["users"]
    hour0 = 20_000 * DAY_US + 5 * HOUR_US
    near_cap = rollups.NANO_CAP - 7
    measures = [  # (user, kind, hour, cost_nano, cost_frac, cost_extra, duration_ms)
        ("u1", "llm", 0, 5, rollups.FRAC - 1, None, 0.1),
        ("u1", "llm", 1, 7, 3, Decimal("1E-24"), 0.2),
        ("u1", "llm", 3, -2, rollups.FRAC - 5, None, 0.30000000000000004),
        ("u1", "tool", 1, 0, 0, None, 1e300),
        ("u1", "tool", 2, 0, 0, None, 1.0),
        ("u2", "llm", 0, near_cap, 9, None, 2.5),
        ("u2", "llm", 2, near_cap, rollups.FRAC - 1, Decimal("-3.5"), 2.5),
        ("u2", "llm", 3, 1, 1, None, 2.5),
        ("", "llm", 2, 11, 0, None, 0.0),
    ]
    rows = []
    for n, (user, kind, hour, nano, frac, extra, duration) in enumerate(measures):
        counts = dict.fromkeys(rollups.MEASURES[: rollups.COST], n + 1)
        rows.append({
            "grain": "h", "bucket": from_epoch_us(hour0 + hour * HOUR_US), "user_id": user,
            "kind": kind, **counts, "cost_nano": nano, "cost_frac": frac, "cost_extra": extra,
            "unpriced_calls": n, "duration_ms": duration,
        })  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(users.insert(), rows)

    def build(*bounds: int) -> None:
        def run(raw: object) -> None:
            cur = raw.cursor()  # type: ignore[attr-defined]
            cur.execute("DELETE FROM rollup_user_totals")
            for lo, hi in itertools.pairwise(bounds):
                _build_user_totals(cur, store.dialect, lo, hi)
            cur.close()

        store._transaction(run)

    expected = []
    running: dict[tuple[str, str], list[object]] = {}
    for user, kind, hour, nano, frac, extra, duration in sorted(measures):
        n = measures.index((user, kind, hour, nano, frac, extra, duration))
        before = running.get((user, kind))
        count = (before[0] if before else 0) + n + 1  # type: ignore[operator]
        cost = rollups.EXACT.add(
            before[1] if before else Decimal(0),  # type: ignore[arg-type]
            rollups.money(nano, frac, extra),
        )
        took = (before[2] + duration) if before else duration  # type: ignore[operator]
        running[(user, kind)] = [count, cost, took]
        expected.append((user, kind, hour0 + hour * HOUR_US, count, cost, took))
    t = rollup_user_totals.c
    hourly = tuple(hour0 + h * HOUR_US for h in range(5))  # PostgreSQL: one_hour's join
    for bounds in ((hour0, hour0 + 4 * HOUR_US), (hour0, hour0 + 2 * HOUR_US, hour0 + 4 * HOUR_US),
                   hourly):  # fmt: skip
        build(*bounds)
        with store.engine.connect() as conn:
            got = [
                (r.user_id, r.kind, to_epoch_us(r.bucket), r.calls,
                 rollups.money(r.cost_nano, r.cost_frac, r.cost_extra), r.duration_ms)
                for r in conn.execute(select(t).order_by(t.user_id, t.kind, t.bucket))
            ]  # fmt: skip
            stored = conn.execute(select(func.max(func.abs(t.cost_nano)))).scalar()
        assert got == expected, bounds
        assert stored < rollups.NANO_CAP  # a total past the cap is kept in cost_extra
    store.close()


def test_member_bitmaps_are_right_whether_users_have_numbers_or_not(db_url: str) -> None:
    """A batch whose users all have numbers makes its bitmaps while its events are sent
    (on PostgreSQL); one with a new user gives it a number first. Distinct users over
    every range equal the events' either way, across minutes, hours and days."""
    from agentledger.store.sql import _COPY_MIN_ROWS

    store = SQLStore(db_url)
    hour0 = 20_000 * DAY_US + 23 * HOUR_US
    now = [hour0 / 1e6]
    store.clock = lambda: now[0]
    n = _COPY_MIN_ROWS + 10

    def batch(start_us: int, users: list[str]) -> list[tuple[object, ...]]:
        return [_event_row(start_us + 1_000_000 * i, "0.5", users[i % len(users)])
                for i in range(n)]  # fmt: skip

    known = [f"u{i}" for i in range(7)]
    assert store.write(batch(hour0, known)) == n  # every user new
    assert store.write(batch(hour0 + 20 * 60_000_000, known[:4])) == n  # every user known
    assert store.write(batch(hour0 + 50 * 60_000_000, [*known[2:5], "new"])) == n  # one new
    assert store.write(batch(hour0 + 70 * 60_000_000, known[5:])) == n  # the next day
    raw, query = Query(store, use_rollups=False), Query(store)
    ranges = [(None, None), (hour0 + 20 * 60_000_000, hour0 + 51 * 60_000_000),
              (hour0 + HOUR_US, None), (None, hour0 + 30 * 60_000_000)]  # fmt: skip
    for step in range(2):
        for lo, hi in ranges:
            window = {"since": lo and from_epoch_us(lo), "until": hi and from_epoch_us(hi)}
            want = raw.totals(distinct_users=True, **window)
            assert query.totals(distinct_users=True, **window) == want, (step, lo, hi)
        now[0] = (hour0 + 2 * DAY_US) / 1e6
        store.compact()
    assert query.totals(distinct_users=True).unique_users == len(known) + 1
    store.close()


def _normalized(spec: str, row: tuple[Any, ...], bucket_us: int) -> tuple[Any, ...]:
    """A rollup row (stored, or from :func:`rollups.fold`) with its money as one Decimal."""
    at = 2 + len(rollups.SPECS[spec]) + rollups.COST
    nano, frac, extra = row[at : at + 3]
    rest = tuple(round(v, 6) if isinstance(v, float) else v for v in row[at + 3 :])
    return (row[0], bucket_us, *row[2:at], rollups.money(nano, frac, extra), *rest)


def test_postgresql_reads_kinds_bots_and_tenants_from_finer_rollups(pg_url: str) -> None:
    """PostgreSQL writers leave kinds, bots and tenants (sums of what and attribution) out;
    answers by them equal the events'. Going back to 0012 fills the three tables with what
    a writer maintaining them would have stored; back at head they are empty again."""
    store = SQLStore(pg_url)
    hour0 = 20_000 * DAY_US + 22 * HOUR_US
    now = [hour0 / 1e6 + 1800]
    store.clock = lambda: now[0]
    rows = []
    for i in range(60):
        row = list(_event_row(hour0 + 97_000_000 * i, ("0.5", "1e-23", None)[i % 3], f"u{i % 4}"))
        row[6] = ("llm", "tool", "command")[i % 3]
        row[10], row[13] = f"bot{i % 5}", (f"t{i % 2}" if i % 7 else None)
        row[24] = "error" if i % 11 == 0 else "ok"
        rows.append(tuple(row))
    assert store.write(rows) == 60
    for spec in sorted(rollups.derived("postgresql")):
        assert _rollup_rows(store, spec) == [], spec  # not written
    raw, query = Query(store, use_rollups=False), Query(store)
    for since in (None, from_epoch_us(hour0 + 20 * 60_000_000)):
        for by in ("kind", "bot_id", "tenant_id", ("bot_id", "kind"), ("tenant_id", "kind"),
                   ("kind", "status")):  # fmt: skip
            assert query.breakdown(by, since=since) == raw.breakdown(by, since=since), by
        assert query.totals(since=since) == raw.totals(since=since)
        # Every call took 5 ms: from the histogram (what's, here), within its 0-10 ms bucket.
        assert raw.percentiles(kind="tool", since=since) == {50: 5.0, 95: 5.0, 99: 5.0}
        for value in query.percentiles(kind="tool", since=since).values():
            assert 0.0 < value <= 10.0
    now[0] = hour0 / 1e6 + 3 * 86_400
    store.compact()  # every bucket closed: the finer rollups hold every grain
    _alembic(store, "0012_rollup_fillfactor", down=True)
    folded = rollups.fold(rollups.group(rows, raw=True))
    for spec in sorted(rollups.derived("postgresql")):
        stored = sorted(_normalized(spec, r, to_epoch_us(r[1])) for r in _rollup_rows(store, spec))
        assert stored == sorted(_normalized(spec, r, r[1]) for r in folded[spec]), spec
    store.close()
    store = SQLStore(pg_url)  # back to head
    for spec in sorted(rollups.derived("postgresql")):
        assert _rollup_rows(store, spec) == [], spec
    store.close()


def _rollup_rows(store: SQLStore, spec: str) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(rollup_tables[spec]))]


def test_merged_rollup_money_past_the_cap_stays_exact(db_url: str) -> None:
    """Batches adding to the same rollup rows until their cost_nano passes NANO_CAP (about
    $4.6e9 in one bucket): the merge moves the sum into cost_extra without overflowing 64
    bits, and every answer stays exact."""
    store = SQLStore(db_url)
    minute0 = 20_000 * DAY_US + 5 * HOUR_US
    cost = "9999999.123456789012345678901"  # 21 decimals: integer money, not cost_extra
    for b in range(3):  # ~$2e9 per batch: past the cap at the third
        batch = [_event_row(minute0 + b * 1_000_000 + i * 1_000, cost, f"u{i % 3}")
                 for i in range(200)]  # fmt: skip
        assert store.write(batch) == 200
    raw, query = Query(store, use_rollups=False), Query(store)
    expected = raw.totals()
    assert expected.cost_usd == rollups.EXACT.multiply(Decimal(cost), 600)
    assert query.totals() == expected
    assert query.breakdown(("bot_id", "kind")) == raw.breakdown(("bot_id", "kind"))
    assert query.breakdown("user_id") == raw.breakdown("user_id")
    with store.engine.connect() as conn:
        for spec, table in rollup_tables.items():
            top = conn.execute(select(func.max(func.abs(table.c.cost_nano)))).scalar()
            assert top is None or top < rollups.NANO_CAP, spec
    store.close()


def test_late_events_move_the_totals_mark_back_and_the_totals_are_rebuilt(db_url: str) -> None:
    """A batch with events of hours whose running user totals are built (only some of its
    events late, and the late ones of users with no other events in the batch) moves the
    totals mark back to the earliest such hour; the next compaction rebuilds the totals
    from there, and per-user answers equal the events'."""
    clock = datetime(2026, 6, 10, 9, 30, tzinfo=UTC)
    store = SQLStore(db_url)
    store.clock = lambda: clock.timestamp()
    with Ledger(store=store, handle_signals=False, strict=True) as ledger:
        for hour in range(1, 9):
            ledger.record_llm("gpt-4o", 100, 10, user_id=f"u{hour % 3}",
                              started_at=clock.replace(hour=hour))  # fmt: skip
    assert store.compact().totals == to_epoch_us(clock.replace(minute=0))
    with Ledger(store=store, handle_signals=False, strict=True) as ledger:
        ledger.record_llm("gpt-4o", 7, 1, user_id="late", started_at=clock.replace(hour=3))
        ledger.record_llm("gpt-4o", 5, 1, user_id="u1", started_at=clock.replace(hour=6))
        ledger.record_llm("gpt-4o", 3, 1, user_id="now", started_at=clock.replace(minute=5))
    marks = store.marks()
    assert marks.totals == to_epoch_us(clock.replace(hour=3, minute=0))
    assert store.compact().totals == to_epoch_us(clock.replace(minute=0))
    since = clock.replace(hour=0, minute=0)
    for until in (clock.replace(minute=0), clock):
        ours = Query(store).breakdown(("user_id", "kind"), since=since, until=until)
        raw = Query(store, use_rollups=False).breakdown(("user_id", "kind"), since=since,
                                                        until=until)  # fmt: skip
        assert sorted(ours, key=repr) == sorted(raw, key=repr)
        assert {g.key[0] for g in ours} >= {"late", "u1"}
    store.close()
