"""Rollup maintenance: migrations fill them from existing events; the planner splits ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from agentledger import Ledger
from agentledger.query import Query
from agentledger.store import rollups
from agentledger.store.rollups import DAY_US, HOUR_US, Segment, plan
from agentledger.store.schema import rollup_tables
from agentledger.store.sql import _MIGRATIONS, HEAD_REVISION, SQLStore


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
        assert conn.execute(select(rollup_tables["kinds"])).first() is not None
    assert Query(store).totals(distinct_users=True) == expected
    assert Query(store).totals(distinct_users=True).calls == 40
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


def test_fold_keeps_minutes_for_kinds_and_what_only() -> None:
    row = [None] * 28
    row[4], row[5], row[6], row[7], row[11] = 20_000 * DAY_US + 61_000_000, 5.0, "llm", "x", "u"
    row[16:23] = [10, 2, 0, 0, 0, "0.5", "priced"]
    row[24] = "ok"
    out = rollups.fold([tuple(row)])
    for spec in ("kinds", "what"):
        assert sorted({r[0] for r in out[spec]}) == ["d", "h", "m"]
    for spec in ("users", "bots", "tenants", "attribution"):
        assert sorted({r[0] for r in out[spec]}) == ["d", "h"]
    (minute,) = [r for r in out["kinds"] if r[0] == "m"]
    assert minute[1] == 20_000 * DAY_US + 60_000_000


def test_choose_takes_the_smallest_rollup_that_holds_every_dimension() -> None:
    assert rollups.choose(()) == "kinds"
    assert rollups.choose(("bot_id",)) == "bots"
    assert rollups.choose(("bot_id", "status")) == "attribution"
    assert rollups.choose(("model", "kind")) == "what"
    assert rollups.choose(("user_id", "model")) is None
    assert rollups.choose(("task_id",)) is None
