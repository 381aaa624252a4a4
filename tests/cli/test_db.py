"""`agentledger db prune | vacuum | rebuild-rollups` through the entry point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agentledger import Ledger
from agentledger.cli import main
from agentledger.cli._db import parse_age
from agentledger.query import Query
from agentledger.store.sql import SQLStore


def _fill(url: str, days: int = 120, per_day: int = 5) -> None:
    now = datetime.now(UTC)
    with Ledger(url, handle_signals=False, strict=True) as ledger:
        for d in range(days):
            for i in range(per_day):
                ledger.record_llm(
                    "gpt-4o-mini", 1000 + i, 200, bot_id=f"bot-{i % 3}", user_id=f"u{i}",
                    started_at=now - timedelta(days=d, minutes=7 * i + 1),
                    duration_ms=100.0 * (i + 1),
                )  # fmt: skip
            ledger.record_tool("search", kind="command", user_id="u1",
                               started_at=now - timedelta(days=d, hours=1))  # fmt: skip


def test_prune_deletes_old_events_and_keeps_every_total(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Events older than 90 days go; totals over all history and by bot stay the same."""
    _fill(db_url)
    store = SQLStore(db_url)
    query = Query(store)
    before = (query.totals(), query.breakdown("bot_id"), query.percentiles())
    users_before = query.breakdown("name", kind="command", distinct_users=True)
    count = store.count()
    assert main(["db", "prune", "--older-than", "90d", "--db", db_url, "--batch", "100"]) == 0
    out = capsys.readouterr().out
    assert "deleted" in out
    assert "rollups kept" in out
    remaining = store.count()
    assert 0 < remaining < count
    cutoff = datetime.now(UTC) - timedelta(days=90, minutes=5)
    assert all(e.started_at >= cutoff for e in store.events())
    assert (query.totals(), query.breakdown("bot_id"), query.percentiles()) == before
    assert query.breakdown("name", kind="command", distinct_users=True) == users_before
    # The events table alone now knows less: the rollups are what kept the history.
    assert Query(store, use_rollups=False).totals().calls == remaining
    assert query.totals().calls == count
    store.close()


def test_prune_dry_run_and_vacuum(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(sqlite_url, days=10, per_day=2)
    store = SQLStore(sqlite_url)
    count = store.count()
    assert main(["db", "prune", "--older-than", "5d", "--dry-run", "--db", sqlite_url]) == 0
    assert "would delete" in capsys.readouterr().out
    assert store.count() == count
    assert main(["db", "prune", "--older-than", "5d", "--vacuum", "--db", sqlite_url]) == 0
    assert "vacuum" in capsys.readouterr().out
    assert store.count() < count
    assert main(["db", "vacuum", "--db", sqlite_url]) == 0
    store.close()


def test_rebuild_rollups_recomputes_them(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(db_url, days=3, per_day=4)
    store = SQLStore(db_url)
    before = Query(store).totals()
    assert main(["db", "rebuild-rollups", "--db", db_url]) == 0
    assert f"rebuilt from {store.count():,} events" in capsys.readouterr().out
    after = Query(store).totals()
    assert after == before
    assert after.cost_usd > Decimal(0)
    store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["db", "prune", "--older-than", "ninety"], "is not an age"),
        (["db", "prune", "--older-than", "0d"], "is not an age"),
        (["db", "prune", "--older-than", "-5d"], "is not an age"),
        (["db", "prune", "--older-than", "90d", "--db", "mysql://x"], "unsupported database"),
        (["db", "vacuum", "--db", "sqlite:////nonexistent/dir/x.db"], "no database at"),
        (["db", "rebuild-rollups", "--db", "sqlite:////nonexistent/x.db"], "no database at"),
    ],
)
def test_bad_arguments_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_parse_age() -> None:
    assert parse_age("90d") == timedelta(days=90)
    assert parse_age("36h") == timedelta(hours=36)
    assert parse_age(" 2w ") == timedelta(weeks=2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"before": datetime(2026, 1, 1)},  # naive
        {"before": "2026-01-01"},
        {"before": datetime.now(UTC), "batch": 0},
        {"before": datetime.now(UTC), "batch": -5},
        {"before": datetime.now(UTC), "batch": True},
    ],
)
def test_store_prune_rejects_bad_arguments(sqlite_url: str, kwargs: dict[str, object]) -> None:
    from agentledger import ConfigError

    store = SQLStore(sqlite_url)
    with pytest.raises(ConfigError):
        store.prune(**kwargs)  # type: ignore[arg-type]
    store.close()


def test_prune_on_a_locked_database_is_a_store_error_and_deletes_nothing(
    sqlite_url: str,
) -> None:
    """Another writer holds the lock past the busy timeout: one clear error, nothing lost."""
    import sqlite3

    from agentledger import StoreError

    _fill(sqlite_url, days=3, per_day=2)
    store = SQLStore(sqlite_url, timeout_s=0.2)
    count = store.count()
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked"):
            store.prune(datetime.now(UTC))
        with pytest.raises(StoreError):
            store.vacuum()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.count() == count
    store.close()
