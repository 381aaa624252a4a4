"""The query module against an independent computation over the same generated events."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from agentledger import Ledger
from agentledger.errors import ConfigError
from agentledger.events import Event
from agentledger.query import Query
from agentledger.store import rollups
from agentledger.store.schema import rollup_tables, to_epoch_us
from agentledger.store.sql import SQLStore

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _generate(ledger: Ledger, n: int = 300, seed: int = 3) -> None:
    rng = random.Random(seed)
    for i in range(n):
        started = NOW - timedelta(minutes=rng.randrange(0, 5 * 24 * 60))
        if i % 50 == 0:  # exactly on a day boundary
            started = started.replace(hour=0, minute=0, second=0, microsecond=0)
        kind = rng.choice(("llm", "llm", "tool", "command"))
        common = {
            "bot_id": f"bot-{rng.randrange(3)}", "user_id": f"user-{rng.randrange(5)}",
            "tenant_id": rng.choice(("acme", "globex")), "started_at": started,
            "duration_ms": float(rng.randrange(1, 5000)),
            "status": "error" if rng.random() < 0.1 else "ok",
            "tags": {"env": rng.choice(("prod", "dev"))},
        }  # fmt: skip
        if kind == "llm":
            model = rng.choice(("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet-latest", "unknown-x"))
            inp = rng.randrange(0, 20_000)
            ledger.record_llm(
                model, inp, rng.randrange(0, 2000),
                cache_read_tokens=rng.randrange(0, inp + 1), **common,
            )  # fmt: skip
        else:
            ledger.record_tool(f"{kind}-{rng.randrange(4)}", kind=kind, **common)


@pytest.fixture
def loaded(db_url: str) -> tuple[Query, list[Event]]:
    ledger = Ledger(db_url, handle_signals=False, strict=True)
    _generate(ledger)
    assert ledger.flush()
    assert ledger.store is not None
    events = ledger.store.events()
    return Query(ledger.store), events


def _expected(events: list[Event], users: bool = False) -> dict[str, object]:
    out = {
        "calls": len(events),
        "errors": sum(e.status == "error" for e in events),
        "input_tokens": sum(e.input_tokens for e in events),
        "output_tokens": sum(e.output_tokens for e in events),
        "cache_read_tokens": sum(e.cache_read_tokens for e in events),
        "cost_usd": sum((e.cost_usd for e in events if e.cost_usd is not None), Decimal(0)),
        "unpriced_calls": sum(e.cost_source == "unpriced" for e in events),
    }
    if users:
        out["unique_users"] = len({e.user_id for e in events if e.user_id})
    return out


def _actual(summary: object, users: bool = False) -> dict[str, object]:
    return {key: getattr(summary, key) for key in _expected([], users)}


def test_totals_match_an_independent_sum(loaded: tuple[Query, list[Event]]) -> None:
    """Every total equals the sum over the stored events, money to the last digit."""
    query, events = loaded
    assert _actual(query.totals()) == _expected(events)
    assert query.totals().duration_ms_total == pytest.approx(sum(e.duration_ms for e in events))
    assert query.totals().unique_users is None  # not asked for
    assert _actual(query.totals(distinct_users=True), True) == _expected(events, True)


def test_filters_time_range_and_tags(loaded: tuple[Query, list[Event]]) -> None:
    """since is inclusive, until exclusive; attribute and tag filters combine."""
    query, events = loaded
    since, until = NOW - timedelta(days=2), NOW - timedelta(days=1)
    chosen = [
        e for e in events
        if since <= e.started_at < until and e.bot_id == "bot-1" and e.tags["env"] == "prod"
    ]  # fmt: skip
    got = query.totals(since=since, until=until, bot_id="bot-1", tags={"env": "prod"})
    assert _actual(got) == _expected(chosen)


@pytest.mark.parametrize("by", ["bot_id", "model", "kind", ("user_id", "kind")])
def test_breakdown_matches_grouping(loaded: tuple[Query, list[Event]], by: object) -> None:
    """Each group's figures equal those of the events with that key."""
    query, events = loaded
    dims = (by,) if isinstance(by, str) else by
    groups: dict[tuple[object, ...], list[Event]] = defaultdict(list)
    for e in events:
        groups[tuple(getattr(e, d) for d in dims)].append(e)
    result = query.breakdown(by)  # type: ignore[arg-type]
    assert {g.key: _actual(g.summary) for g in result} == {
        k: _expected(v) for k, v in groups.items()
    }
    costs = [g.summary.cost_usd for g in result]
    assert costs == sorted(costs, reverse=True)


def test_daily_timeseries_buckets_by_utc_day(loaded: tuple[Query, list[Event]]) -> None:
    """Events land in the UTC day they started in, including exactly at midnight."""
    query, events = loaded
    days: dict[datetime, list[Event]] = defaultdict(list)
    for e in events:
        days[e.started_at.replace(hour=0, minute=0, second=0, microsecond=0)].append(e)
    result = query.timeseries("day")
    assert [g.key[0] for g in result] == sorted(days)
    assert {g.key[0]: _actual(g.summary) for g in result} == {
        d: _expected(v) for d, v in days.items()
    }


def test_hourly_timeseries_counts(loaded: tuple[Query, list[Event]]) -> None:
    """Hour buckets partition the events."""
    query, events = loaded
    result = query.timeseries("hour")
    assert sum(g.summary.calls for g in result) == len(events)


def test_exact_percentiles_are_nearest_rank(loaded: tuple[Query, list[Event]]) -> None:
    """p50/p95/p99 of duration equal the nearest-rank values of the stored durations."""
    query, events = loaded
    durations = sorted(e.duration_ms for e in events if e.kind == "llm")
    got = query.percentiles((50, 95, 99), kind="llm", exact=True)
    for q in (50, 95, 99):
        assert got[q] == durations[math.ceil(q / 100 * len(durations)) - 1]


@pytest.mark.parametrize("q", [1, 10, 25, 50, 75, 90, 95, 99, 100])
def test_rollup_percentiles_are_in_the_bucket_of_the_exact_value(
    loaded: tuple[Query, list[Event]], q: int
) -> None:
    """Histogram percentiles land in the same duration bucket as the exact nearest rank."""
    from bisect import bisect_left

    from agentledger._aggregates import DURATION_BOUNDS_S

    query, events = loaded
    bounds = [b * 1000 for b in DURATION_BOUNDS_S]
    since = NOW - timedelta(days=3, minutes=17)
    for kind in ("llm", "tool", None):
        chosen = sorted(
            e.duration_ms for e in events if kind in (None, e.kind) and e.started_at >= since
        )
        exact = chosen[math.ceil(q / 100 * len(chosen)) - 1]
        approx = query.percentiles((q,), kind=kind, since=since)[q]
        assert bisect_left(bounds, approx) == bisect_left(bounds, exact), (kind, approx, exact)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda q: q.totals(colour="red"), id="unknown-filter"),
        pytest.param(lambda q: q.breakdown("colour"), id="unknown-dimension"),
        pytest.param(lambda q: q.timeseries("week"), id="bad-bucket"),
        pytest.param(lambda q: q.percentiles((0,)), id="bad-quantile"),
        pytest.param(lambda q: q.totals(since=datetime(2026, 1, 1)), id="naive-since"),
        pytest.param(lambda q: q.breakdown("model", order="colour"), id="bad-order"),
    ],
)
def test_bad_questions_raise_config_error(sqlite_url: str, call: object) -> None:
    """A malformed question raises ConfigError naming what is wrong."""
    query = Query.open(sqlite_url)
    with pytest.raises(ConfigError):
        call(query)  # type: ignore[operator]
    query.close()


def test_empty_store_gives_zeroes(sqlite_url: str) -> None:
    """No events: zero figures, no errors."""
    query = Query.open(sqlite_url)
    assert query.totals().calls == 0
    assert query.totals().cost_usd == Decimal(0)
    assert query.breakdown("bot_id") == []
    assert query.percentiles() == {50: 0.0, 95: 0.0, 99: 0.0}
    query.close()


def _random_ranges(rng: random.Random, n: int) -> list[tuple[datetime | None, datetime | None]]:
    """Ranges with odd edges: mid-hour, on the hour, on midnight, open, empty, reversed."""
    out: list[tuple[datetime | None, datetime | None]] = [(None, None)]
    for _ in range(n):
        a = NOW - timedelta(minutes=rng.randrange(0, 6 * 24 * 60), seconds=rng.randrange(60))
        b = a + timedelta(minutes=rng.randrange(0, 4 * 24 * 60))
        if rng.random() < 0.2:
            a = a.replace(minute=0, second=0, microsecond=0)
        if rng.random() < 0.2:
            b = b.replace(hour=0, minute=0, second=0, microsecond=0)
        out.append(rng.choice([(a, b), (None, b), (a, None), (b, a)]))
    return out


def test_rollups_answer_exactly_what_the_events_say(loaded: tuple[Query, list[Event]]) -> None:
    """For random ranges and filters, rollup answers equal the events table's answers."""
    query, _ = loaded
    _assert_rollups_agree(query, random.Random(11), 25)


def _assert_rollups_agree(query: Query, rng: random.Random, ranges: int) -> None:
    """Sixteen questions over ``ranges`` random ranges: rollups say what the events say."""
    raw = Query(query.store, use_rollups=False)
    questions = [
        ("totals", {}), ("totals", {"kind": "llm"}), ("totals", {"bot_id": "bot-1"}),
        ("totals", {"user_id": "user-2", "kind": "command"}), ("breakdown", {"by": "model"}),
        ("breakdown", {"by": "name", "kind": "tool"}), ("breakdown", {"by": ("kind", "name"),
        "status": "error"}), ("breakdown", {"by": ("user_id", "kind")}),
        ("breakdown", {"by": "tenant_id", "kind": "llm"}), ("breakdown", {"by": "bot_id"}),
        ("timeseries", {"bucket": "day", "kind": "command"}), ("timeseries", {"bucket": "hour"}),
        ("totals", {"distinct_users": True}), ("totals", {"kind": "llm", "distinct_users": True}),
        ("breakdown", {"by": "name", "kind": "command", "distinct_users": True}),
        ("breakdown", {"by": ("kind", "name"), "distinct_users": True}),
    ]  # fmt: skip
    for since, until in _random_ranges(rng, ranges):
        for method, kwargs in questions:
            ours = getattr(query, method)(since=since, until=until, **kwargs)
            theirs = getattr(raw, method)(since=since, until=until, **kwargs)
            if method == "totals":
                ours, theirs = [("", ours)], [("", theirs)]
            else:
                ours = [(g.key, g.summary) for g in ours]
                theirs = [(g.key, g.summary) for g in theirs]
                if method == "breakdown":
                    ours, theirs = sorted(ours, key=repr), sorted(theirs, key=repr)
            assert [k for k, _ in ours] == [k for k, _ in theirs], (method, kwargs, since, until)
            for (_, a), (_, b) in zip(ours, theirs, strict=True):
                assert _actual(a) == _actual(b), (method, kwargs, since, until)
                assert a.unique_users == b.unique_users, (method, kwargs, since, until)
                assert a.duration_ms_total == pytest.approx(b.duration_ms_total)


def test_rollups_equal_a_rebuild_after_replays_and_concurrent_writers(db_url: str) -> None:
    """Four writers at once, then every batch replayed: rollups equal a full recomputation."""
    import threading

    ledgers = [Ledger(db_url, handle_signals=False, strict=True) for _ in range(4)]
    threads = [
        threading.Thread(target=_generate, args=(led, 150, seed))
        for seed, led in enumerate(ledgers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for led in ledgers:
        assert led.flush()
    store = ledgers[0].store
    assert store is not None
    stored = store.events()
    assert len(stored) == 600
    # Replay: the same rows again, through the store, in batches of every size path.
    rows = [e.to_row() for e in stored]
    assert store.write(rows[:10]) == 0
    assert store.write(rows) == 0
    before = _rollup_rows(store)
    assert store.rebuild_rollups() == 600
    assert _rollup_rows(store) == before
    query = Query(store)
    assert _actual(query.totals()) == _expected(stored)
    for led in ledgers:
        led.close()


def _store_at(db_url: str, now: datetime) -> SQLStore:
    """A store whose clock says ``now`` (which decides what compaction may build)."""
    store = SQLStore(db_url)
    store.clock = lambda: now.timestamp()
    return store


def test_answers_stay_exact_while_buckets_wait_for_compaction(db_url: str) -> None:
    """Writes under a clock in the middle of the data: the events after it reach only the
    finest rollup rows; answers read those until compaction builds the coarse rows."""
    clock = NOW - timedelta(days=2, hours=5, minutes=17)
    store = _store_at(db_url, clock)
    ledger = Ledger(store=store, handle_signals=False, strict=True)
    _generate(ledger, 400, seed=5)
    assert ledger.flush()
    marks = store.marks()
    assert marks == rollups.Marks.due(round(clock.timestamp() * 1e6))
    late = datetime.fromtimestamp(marks.hour / 1e6, UTC)
    with store.engine.connect() as conn:  # only finest rows after the marks
        for spec, table in rollup_tables.items():
            coarse = "h" if spec in rollups.MINUTELY else "d"
            since = late if coarse == "h" else datetime.fromtimestamp(marks.day / 1e6, UTC)
            found = conn.execute(
                select(func.count()).where(table.c.grain == coarse, table.c.bucket >= since)
            ).scalar()
            assert found == 0, spec
    assert any(e.started_at >= late for e in store.events())
    query = Query(store)
    _assert_rollups_agree(query, random.Random(12), 12)
    for step in (timedelta(hours=1), timedelta(hours=7), timedelta(days=1)):
        clock += step
        store.compact(now=clock.timestamp())
        _assert_rollups_agree(query, random.Random(int(step.total_seconds())), 4)
    store.compact(now=(NOW + timedelta(days=2)).timestamp())  # every bucket closed
    compacted = _rollup_rows(store)
    assert store.rebuild_rollups() == 400
    assert _rollup_rows(store) == compacted
    ledger.close()


def test_compaction_and_concurrent_writers_agree_with_a_rebuild(db_url: str) -> None:
    """Writers adding events around the marks while another thread compacts hour after
    hour: no event is lost from, or counted twice in, any grain."""
    import threading

    start = NOW - timedelta(days=5)
    clock = [start]
    stores = [_store_at(db_url, start) for _ in range(3)]
    for store in stores:
        store.clock = lambda: clock[0].timestamp()
    ledgers = [Ledger(store=store, handle_signals=False, strict=True, batch_size=40)
               for store in stores]  # fmt: skip
    compactor = SQLStore(db_url)
    done = threading.Event()

    def compact() -> None:
        while not done.is_set():
            clock[0] = min(clock[0] + timedelta(minutes=97), NOW + timedelta(days=1))
            compactor.compact(now=clock[0].timestamp())

    threads = [threading.Thread(target=_generate, args=(led, 200, seed))
               for seed, led in enumerate(ledgers)]  # fmt: skip
    threads.append(threading.Thread(target=compact))
    for t in threads:
        t.start()
    for t in threads[:-1]:
        t.join()
    for led in ledgers:
        assert led.flush()
    done.set()
    threads[-1].join()
    query = Query(stores[0])
    _assert_rollups_agree(query, random.Random(13), 6)
    compactor.compact(now=(NOW + timedelta(days=2)).timestamp())
    compacted = _rollup_rows(compactor)
    assert compactor.rebuild_rollups() == 600
    assert _rollup_rows(compactor) == compacted
    for led in ledgers:
        led.close()
    compactor.close()


def _rollup_rows(store: object) -> dict[str, list[tuple[object, ...]]]:
    from sqlalchemy import select

    from agentledger.store.schema import rollup_members, rollup_tables

    out = {}
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        for name, table in [*rollup_tables.items(), ("members", rollup_members)]:
            rows = [tuple(r) for r in conn.execute(select(table))]
            out[name] = sorted(
                (tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows),
                key=repr,
            )
    return out


@pytest.mark.parametrize("use_rollups", [True, False])
def test_measures_limit_the_sums_to_the_fields_asked_for(
    loaded: tuple[Query, list[Event]], use_rollups: bool
) -> None:
    """Asked-for fields equal the full answer; the others are zero; calls always come."""
    query, _ = loaded
    query = Query(query.store, use_rollups=use_rollups)
    since = NOW - timedelta(days=3, minutes=17)
    full = {g.key: g.summary for g in query.breakdown(("user_id", "kind"), since=since)}
    light = query.breakdown(("user_id", "kind"), since=since, measures=("cost_usd", "errors"))
    assert {g.key for g in light} == set(full)
    for g in light:
        want = full[g.key]
        assert (g.summary.calls, g.summary.cost_usd, g.summary.errors) == (
            want.calls, want.cost_usd, want.errors)  # fmt: skip
        assert g.summary.input_tokens == g.summary.unpriced_calls == 0
        assert g.summary.duration_ms_total == 0
    total = query.totals(kind="llm", since=since, measures=["input_tokens"])
    assert total.input_tokens == query.totals(kind="llm", since=since).input_tokens
    assert total.cost_usd == 0
    assert total.calls > 0
    days = query.timeseries("day", since=since, measures=())
    assert [g.summary.calls for g in days] == [
        g.summary.calls for g in query.timeseries("day", since=since)
    ]
    with pytest.raises(ConfigError, match="unknown measure"):
        query.totals(measures=("cost",))


def test_a_kind_first_seen_in_the_partial_day_of_the_totals_is_counted(db_url: str) -> None:
    """Today's running totals (to the last closed hour) can hold a kind with no day row yet:
    a per-user question over the totals still finds it."""
    clock = datetime(2026, 6, 10, 9, 30, tzinfo=UTC)
    store = _store_at(db_url, clock)
    with Ledger(store=store, handle_signals=False, strict=True) as ledger:
        for day in range(6, 0, -1):
            ledger.record_llm("gpt-4o", 100, 10, user_id="ann",
                              started_at=clock - timedelta(days=day))  # fmt: skip
        ledger.record_tool("escalate", kind="handoff", user_id="ann",
                           started_at=clock.replace(hour=2))  # fmt: skip
    store = _store_at(db_url, clock)
    marks = store.marks()
    assert marks.totals == to_epoch_us(clock.replace(minute=0)) > marks.day
    query = Query(store)
    since = clock - timedelta(days=5, hours=12)
    ours = query.breakdown(("user_id", "kind"), since=since, until=clock)
    raw = Query(store, use_rollups=False).breakdown(("user_id", "kind"), since=since, until=clock)
    assert sorted(ours, key=repr) == sorted(raw, key=repr)
    assert {g.key for g in ours} == {("ann", "llm"), ("ann", "handoff")}
    store.close()


def test_a_users_breakdown_seeks_each_pair_in_the_running_totals(sqlite_url: str) -> None:
    """The running-totals part must look up each (user, kind) by its whole key: a plan that
    scans the totals by user and tests every row (seen once, when the pairs' row estimate
    changed) answers the same but costs time in proportion to history."""
    import sqlite3

    from sqlalchemy import event

    from agentledger.store.sql import _DecimalSum

    clock = datetime(2026, 6, 10, 9, 30, tzinfo=UTC)
    store = _store_at(sqlite_url, clock)
    with Ledger(store=store, handle_signals=False, strict=True) as ledger:
        for i in range(60):
            ledger.record_llm("gpt-4o", 100, 10, user_id=f"u{i % 7}",
                              started_at=clock - timedelta(hours=3 * i))  # fmt: skip
    store = _store_at(sqlite_url, clock)
    seen: list[tuple[str, object]] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _cur, sql, params, *_: seen.append((sql, params)))  # fmt: skip
    Query(store).breakdown(("user_id", "kind"), since=clock - timedelta(days=6), until=clock)
    sql, params = seen[-1]
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    conn.create_function("agentledger_dneg", 1, rollups.decimal_neg)
    conn.create_function("agentledger_dadd", 2, rollups.decimal_add)
    conn.create_aggregate("agentledger_dsum", 1, _DecimalSum)
    plan = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]  # type: ignore[arg-type]
    conn.close()
    lookups = [p for p in plan if p.startswith("SEARCH e ")]
    assert lookups == ["SEARCH e USING PRIMARY KEY (user_id=? AND kind=? AND bucket=?)"], plan
    store.close()


def test_a_partial_hour_is_not_flipped_when_the_hour_rows_cost_more_than_its_events(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flipping a partial hour reads the hour's rollup rows as well as the rest's events: an
    hour of one event per user has as many ``users`` rows as events, so its 35 minutes are
    read as they are, though the other 25 hold fewer events; a rollup with few rows in the
    hour (per bot) is still flipped. The answers are the events' either way."""
    hour = datetime(2026, 6, 10, 9, tzinfo=UTC)
    now = hour + timedelta(hours=3)  # the hour is closed and compacted
    until = hour + timedelta(minutes=35)
    store = _store_at(db_url, now)
    with Ledger(store=store, handle_signals=False, strict=True) as ledger:
        for i in range(40):  # inside the range: 40 users, one event each
            ledger.record_llm("gpt-4o", 100 + i, 10, bot_id=f"b{i % 2}", user_id=f"in{i}",
                              started_at=hour + timedelta(seconds=50 * i + 1))  # fmt: skip
        for i in range(30):  # the rest of the hour: 30 other users
            ledger.record_llm("gpt-4o", 200 + i, 20, bot_id=f"b{i % 2}", user_id=f"out{i}",
                              started_at=until + timedelta(seconds=45 * i + 1))  # fmt: skip
    store = _store_at(db_url, now)
    flipped: list[rollups.Segment] = []
    real = rollups.flip
    monkeypatch.setattr(rollups, "flip", lambda s: flipped.append(s) or real(s))
    query, raw = Query(store), Query(store, use_rollups=False)
    since = hour - timedelta(hours=2)
    ours = query.breakdown(("user_id", "kind"), since=since, until=until)
    assert sorted(ours, key=repr) == sorted(
        raw.breakdown(("user_id", "kind"), since=since, until=until), key=repr
    )
    assert len(ours) == 40
    assert not flipped  # 25 minutes' 30 events + the hour's 70 users rows > 40 events
    by_bot = query.breakdown("bot_id", since=since, until=until)
    assert sorted(by_bot, key=repr) == sorted(
        raw.breakdown("bot_id", since=since, until=until), key=repr
    )
    assert [s.hi for s in flipped] == [to_epoch_us(until)]  # 30 events + 2 bot rows < 40
    store.close()


def test_a_partial_hour_with_fewer_events_outside_is_read_as_the_hour_less_those(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A range's last partial hour whose rest holds fewer events (a range ending now: none)
    is its hour row less the rest's events, not every event since the hour began."""
    now = datetime(2026, 6, 10, 9, 58, tzinfo=UTC)
    until = now.replace(minute=50)
    store = _store_at(db_url, now)
    with Ledger(store=store, handle_signals=False, strict=True) as ledger:
        for i in range(80):
            ledger.record_llm("gpt-4o", 100 + i, 10, bot_id=f"b{i % 3}", user_id=f"u{i % 5}",
                              started_at=until - timedelta(minutes=7 * i + 1))  # fmt: skip
        ledger.record_llm(
            "gpt-4o", 7, 1, bot_id="b1", user_id="u1", started_at=until + timedelta(minutes=5)
        )  # the rest of the hour
    store = _store_at(db_url, now)
    flipped: list[rollups.Segment] = []
    real = rollups.flip
    monkeypatch.setattr(rollups, "flip", lambda s: flipped.append(s) or real(s))
    query, raw = Query(store), Query(store, use_rollups=False)
    since = until - timedelta(hours=5, minutes=20)
    for by in ("bot_id", ("user_id", "kind")):
        ours = query.breakdown(by, since=since, until=until)
        assert sorted(ours, key=repr) == sorted(raw.breakdown(by, since=since, until=until),
                                                key=repr)  # fmt: skip
    assert query.totals(bot_id="b1", since=since, until=until) == raw.totals(
        bot_id="b1", since=since, until=until
    )
    assert any(s.hi == to_epoch_us(until) for s in flipped)
    store.close()
