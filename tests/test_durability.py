"""Durability claims, checked against exact totals in the real database.

Threads, processes, SIGKILL after flush, SIGTERM without flush (with and without the
application's own handler), fork, a locked SQLite file, an unreachable or failing store,
queue overflow, sync durability and close().
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agentledger import AgentledgerError, Ledger, StoreUnavailable
from agentledger.store import MemoryStore
from agentledger.store.sql import SQLStore

CHILD_TIMEOUT_S = 60


def db_counts(url: str) -> tuple[int, Counter[str | None], list[Any]]:
    """(count, events per bot, events) read through a fresh store, not the writer's."""
    store = SQLStore(url)
    try:
        events = store.events()
        assert store.count() == len(events)
        return len(events), Counter(e.bot_id for e in events), events
    finally:
        store.close()


def wait_until(predicate: Any, what: str, limit_s: float = 30.0) -> None:
    """Poll ``predicate`` (a liveness guard, not a performance assertion)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def run_child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], expected: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != expected:
        proc.kill()
        _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
        pytest.fail(f"child said {line!r}, expected {expected!r}; stderr:\n{err}")


@pytest.fixture
def ledgers() -> Iterator[list[Ledger]]:
    """Ledgers made by a test, closed afterwards even when it fails."""
    made: list[Ledger] = []
    yield made
    for ledger in made:
        if isinstance(ledger.store, MemoryStore):
            ledger.store.fail_with = None
        ledger.close(timeout=10)


# --- threads -----------------------------------------------------------------------------

THREADS = 16
PER_THREAD = 300


def test_threads_record_exact_totals_into_one_ledger(db_url: str, ledgers: list[Ledger]) -> None:
    """16 threads recording concurrently: every event stored once, costs and counts exact."""
    ledger = Ledger(db_url, flush_interval_s=0.05, batch_size=500, handle_signals=False)
    ledgers.append(ledger)
    ids: list[list[str | None]] = [[] for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def work(t: int) -> None:
        start.wait()
        for i in range(PER_THREAD):
            ids[t].append(
                ledger.record_llm(
                    "gpt-4o",
                    input_tokens=100 + i,
                    output_tokens=7 * t + 1,
                    bot_id=f"bot-{t:02d}",
                    duration_ms=1.5,
                )
            )

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    assert ledger.flush(timeout=60)
    all_ids = [i for per in ids for i in per]
    assert None not in all_ids
    assert len(set(all_ids)) == THREADS * PER_THREAD

    count, per_bot, events = db_counts(db_url)
    assert count == THREADS * PER_THREAD
    assert {e.event_id for e in events} == set(all_ids)
    assert per_bot == {f"bot-{t:02d}": PER_THREAD for t in range(THREADS)}
    db_cost = sum((e.cost_usd for e in events), Decimal(0))
    assert db_cost == ledger.totals().cost_usd
    assert db_cost > 0
    for t in range(THREADS):
        bot = f"bot-{t:02d}"
        live = ledger.totals(bot_id=bot)
        assert live.calls == PER_THREAD
        assert live.cost_usd == sum((e.cost_usd for e in events if e.bot_id == bot), Decimal(0))
    stats = ledger.stats()
    assert stats.recorded == stats.written == THREADS * PER_THREAD
    assert (stats.pending, stats.dropped, stats.rejected) == (0, 0, 0)


# --- processes ---------------------------------------------------------------------------

PROCS = 4
PER_PROC_BATCHES = 5
PER_BATCH = 60

WRITER_CHILD = """
    import sys
    from agentledger import Ledger

    url, k, batches, per_batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ledger = Ledger(url, flush_interval_s=0.05, handle_signals=False)
    for b in range(batches):
        for i in range(per_batch):
            assert ledger.record_llm("gpt-4o", 10 + i, 5, bot_id=f"proc-{k}") is not None
        assert ledger.flush(timeout=30), ledger.stats()
    assert ledger.close(timeout=30)
    s = ledger.stats()
    assert s.written == s.recorded == batches * per_batch, s
    print("done", flush=True)
"""


@pytest.mark.slow
def test_processes_write_one_database_concurrently(db_url: str) -> None:
    """4 processes writing the same database (migrating it concurrently): exact total count."""
    procs = [
        run_child(WRITER_CHILD, db_url, str(k), str(PER_PROC_BATCHES), str(PER_BATCH))
        for k in range(PROCS)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    count, per_bot, events = db_counts(db_url)
    per_proc = PER_PROC_BATCHES * PER_BATCH
    assert count == PROCS * per_proc
    assert per_bot == {f"proc-{k}": per_proc for k in range(PROCS)}
    assert len({e.event_id for e in events}) == count


# --- crashes and signals -----------------------------------------------------------------

N_CRASH = 120

KILL_CHILD = """
    import sys, time
    from agentledger import Ledger

    url, n = sys.argv[1], int(sys.argv[2])
    ledger = Ledger(url, flush_interval_s=3600)
    for i in range(n):
        ledger.record_llm("gpt-4o", 10, 5, bot_id="killed")
    assert ledger.flush(timeout=30), ledger.stats()
    print("flushed", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_sigkill_after_flush_keeps_everything_flushed(db_url: str) -> None:
    """A process SIGKILLed after flush() returned True lost none of the flushed events."""
    proc = run_child(KILL_CHILD, db_url, str(N_CRASH))
    wait_for_line(proc, "flushed")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=CHILD_TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL
    count, per_bot, _ = db_counts(db_url)
    assert count == N_CRASH
    assert per_bot == {"killed": N_CRASH}


TERM_CHILD = """
    import os, signal, sys, time
    from agentledger import Ledger

    url, n, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if marker:
        def app_handler(signum, frame):
            # Runs after agentledger's handler: the events must already be stored.
            with open(marker, "w") as fh:
                fh.write(f"{signum} {ledger.store.count()}")
            os._exit(7)

        signal.signal(signal.SIGTERM, app_handler)
    ledger = Ledger(url, flush_interval_s=3600)
    for i in range(n):
        ledger.record_llm("gpt-4o", 10, 5, bot_id="termed")
    assert ledger.stats().pending == n
    print("recorded", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_sigterm_flushes_unflushed_events_and_dies_by_sigterm(db_url: str) -> None:
    """SIGTERM with no app handler: pending events are written, then the process dies by it."""
    proc = run_child(TERM_CHILD, db_url, str(N_CRASH), "")
    wait_for_line(proc, "recorded")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    assert proc.returncode == -signal.SIGTERM, err
    count, per_bot, _ = db_counts(db_url)
    assert count == N_CRASH
    assert per_bot == {"termed": N_CRASH}


@pytest.mark.slow
def test_sigterm_chains_to_the_apps_own_handler(db_url: str, tmp_path: Path) -> None:
    """An app SIGTERM handler installed before the ledger still runs, after the flush."""
    marker = tmp_path / "app-handler-ran"
    proc = run_child(TERM_CHILD, db_url, str(N_CRASH), str(marker))
    wait_for_line(proc, "recorded")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    assert proc.returncode == 7, err
    assert marker.read_text() == f"{int(signal.SIGTERM)} {N_CRASH}"
    count, per_bot, _ = db_counts(db_url)
    assert count == N_CRASH
    assert per_bot == {"termed": N_CRASH}


# --- fork --------------------------------------------------------------------------------


@pytest.mark.slow
def test_forked_child_does_not_resend_parents_queue(db_url: str, ledgers: list[Ledger]) -> None:
    """After fork the child writes only its own events; the parent writes its own once."""
    ledger = Ledger(db_url, flush_interval_s=3600, handle_signals=False)
    ledgers.append(ledger)
    parent_n, child_n = 40, 25
    for i in range(parent_n):
        ledger.record_llm("gpt-4o", 10 + i, 5, bot_id="parent")
    assert ledger.stats().pending == parent_n

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            if ledger.stats().pending == 0:
                for i in range(child_n):
                    ledger.record_llm("gpt-4o", 20 + i, 5, bot_id="child")
                flushed = ledger.flush(timeout=30)
                code = 0 if flushed and ledger.stats().written == child_n else 3
            else:
                code = 2
        finally:
            os._exit(code)

    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ledger.flush(timeout=30)
    count, per_bot, _ = db_counts(db_url)
    assert per_bot == {"parent": parent_n, "child": child_n}
    assert count == parent_n + child_n
    assert ledger.stats().written == parent_n


# --- a store that is locked, down or failing ---------------------------------------------


def test_locked_sqlite_keeps_recording_and_writes_after_release(
    sqlite_url: str, ledgers: list[Ledger]
) -> None:
    """While another connection holds BEGIN EXCLUSIVE, events queue; afterwards all land once."""
    path = sqlite_url.removeprefix("sqlite:///")
    ledger = Ledger(
        store=SQLStore(sqlite_url, timeout_s=0.2), flush_interval_s=0.05, handle_signals=False
    )
    ledgers.append(ledger)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        ids = [ledger.record_llm("gpt-4o", 10, 5, bot_id="locked") for _ in range(30)]
        assert None not in ids
        wait_until(lambda: ledger.stats().write_errors > 0, "a failed write while locked")
        assert not ledger.flush(timeout=0.3)
        stats = ledger.stats()
        assert stats.pending == 30
        assert stats.written == 0
        assert stats.last_error
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    assert ledger.flush(timeout=30)
    stats = ledger.stats()
    assert (stats.recorded, stats.written, stats.pending, stats.dropped) == (30, 30, 0, 0)
    count, _, events = db_counts(sqlite_url)
    assert count == 30
    assert sorted(e.event_id for e in events) == sorted(ids)  # type: ignore[type-var]


UNREACHABLE_PG = "postgresql://postgres:s3cret@127.0.0.1:1/x"


def test_unreachable_postgres_raises_at_construction_when_strict() -> None:
    """strict=True: Ledger(url) on an unreachable server raises StoreUnavailable at once."""
    with pytest.raises(StoreUnavailable) as info:
        Ledger(UNREACHABLE_PG, strict=True, handle_signals=False)
    message = str(info.value)
    assert "\n" not in message
    assert "s3cret" not in message
    assert "127.0.0.1" in message


def test_unreachable_postgres_queues_instead_of_raising() -> None:
    """Default: Ledger(url) on an unreachable server constructs, queues events, counts errors."""
    ledger = Ledger(UNREACHABLE_PG, flush_interval_s=0.05, handle_signals=False)
    try:
        assert ledger.store is None
        event_id = ledger.record_llm("gpt-4o", 10, 5, bot_id="b")
        assert event_id is not None
        assert not ledger.flush(timeout=0.3)
        stats = ledger.stats()
        assert (stats.recorded, stats.written, stats.pending) == (1, 0, 1)
        assert stats.write_errors >= 1
        assert stats.last_error is not None
        assert "s3cret" not in stats.last_error
        assert ledger.totals(bot_id="b").calls == 1
    finally:
        assert not ledger.close(timeout=0.1)


def test_database_created_after_start_receives_queued_events_once(pg_url: str) -> None:
    """A PostgreSQL database missing at start: events queue, then land exactly once."""
    import psycopg

    admin_url = os.environ.get(
        "AGENTLEDGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}"')
        ledger = Ledger(pg_url, flush_interval_s=0.05, handle_signals=False)
        try:
            ids = [ledger.record_llm("gpt-4o", 10, 5, bot_id="late") for _ in range(20)]
            assert None not in ids
            wait_until(lambda: ledger.stats().write_errors > 0, "a failed open")
            assert ledger.stats().pending == 20
            admin.execute(f'CREATE DATABASE "{name}"')
            assert ledger.flush(timeout=30)
            stats = ledger.stats()
            assert (stats.recorded, stats.written, stats.pending) == (20, 20, 0)
        finally:
            ledger.close(timeout=10)
    count, per_bot, events = db_counts(pg_url)
    assert count == 20
    assert per_bot == {"late": 20}
    assert sorted(e.event_id for e in events) == sorted(ids)  # type: ignore[type-var]


class CountingStore(MemoryStore):
    """A MemoryStore that also counts every row it was successfully handed."""

    def __init__(self) -> None:
        super().__init__()
        self.rows_written: list[str] = []

    def write(self, rows: Sequence[tuple[Any, ...]]) -> int:
        inserted = super().write(rows)
        self.rows_written.extend(r[0] for r in rows)
        return inserted


def test_store_failing_midway_keeps_events_and_writes_them_once(ledgers: list[Ledger]) -> None:
    """While the store fails events stay pending; on recovery each is written exactly once."""
    store = CountingStore()
    ledger = Ledger(store=store, flush_interval_s=0.05, handle_signals=False)
    ledgers.append(ledger)
    first = [ledger.record_llm("gpt-4o", 10, 5, bot_id="b") for _ in range(5)]
    assert ledger.flush(timeout=10)
    assert store.count() == 5

    store.fail_with = StoreUnavailable("database is down")
    during = [ledger.record_llm("gpt-4o", 10, 5, bot_id="b") for _ in range(7)]
    assert None not in during
    assert not ledger.flush(timeout=0.3)
    stats = ledger.stats()
    assert stats.pending == 7
    assert stats.write_errors >= 1
    assert stats.last_error == "database is down"
    assert store.count() == 5

    store.fail_with = None
    assert ledger.flush(timeout=10)
    stats = ledger.stats()
    assert (stats.recorded, stats.written, stats.pending) == (12, 12, 0)
    assert store.count() == 12
    assert sorted(store.rows_written) == sorted(first + during)  # type: ignore[type-var]


# --- overflow, sync, close ---------------------------------------------------------------


def test_full_queue_drops_new_events_and_counts_them(ledgers: list[Ledger]) -> None:
    """With the store down and max_queue=10, 15 records keep 10 and count 5 as dropped."""
    store = MemoryStore()
    store.fail_with = StoreUnavailable("down")
    ledger = Ledger(
        store=store, max_queue=10, overflow="drop_new", flush_interval_s=0.05, handle_signals=False
    )
    ledgers.append(ledger)
    ids = [ledger.record_llm("gpt-4o", 10, 5) for _ in range(15)]
    assert [i is not None for i in ids] == [True] * 10 + [False] * 5
    stats = ledger.stats()
    assert (stats.recorded, stats.dropped, stats.pending) == (10, 5, 10)

    store.fail_with = None
    assert ledger.flush(timeout=10)
    assert store.count() == 10


def test_full_queue_raises_when_strict(ledgers: list[Ledger]) -> None:
    """strict=True turns a drop for a full queue into an AgentledgerError."""
    store = MemoryStore()
    store.fail_with = StoreUnavailable("down")
    ledger = Ledger(
        store=store, max_queue=10, strict=True, flush_interval_s=0.05, handle_signals=False
    )
    ledgers.append(ledger)
    for _ in range(10):
        assert ledger.record_llm("gpt-4o", 10, 5) is not None
    with pytest.raises(AgentledgerError, match="queue full"):
        ledger.record_llm("gpt-4o", 10, 5)
    stats = ledger.stats()
    assert (stats.recorded, stats.dropped) == (10, 1)


def test_sync_durability_stores_before_returning(db_url: str, ledgers: list[Ledger]) -> None:
    """With durability='sync' the row is in the store when record_llm returns."""
    ledger = Ledger(db_url, durability="sync", handle_signals=False)
    ledgers.append(ledger)
    event_id = ledger.record_llm("gpt-4o", 1000, 500, bot_id="sync")
    assert event_id is not None
    count, _, events = db_counts(db_url)
    assert count == 1
    assert events[0].event_id == event_id
    assert events[0].cost_usd == ledger.totals(bot_id="sync").cost_usd
    stats = ledger.stats()
    assert (stats.recorded, stats.written, stats.pending) == (1, 1, 0)


def test_close_flushes_and_later_records_are_dropped(db_url: str) -> None:
    """close() writes everything pending; a record after close is dropped and counted."""
    ledger = Ledger(db_url, flush_interval_s=3600, handle_signals=False)
    for _ in range(3):
        ledger.record_llm("gpt-4o", 10, 5, bot_id="c")
    assert ledger.close(timeout=30)
    assert db_counts(db_url)[0] == 3
    assert ledger.record_llm("gpt-4o", 10, 5, bot_id="c") is None
    stats = ledger.stats()
    assert (stats.recorded, stats.written, stats.dropped, stats.pending) == (3, 3, 1, 0)
    assert db_counts(db_url)[0] == 3


def test_record_after_close_raises_when_strict(sqlite_url: str) -> None:
    """strict=True: recording on a closed ledger raises instead of dropping silently."""
    ledger = Ledger(sqlite_url, strict=True, handle_signals=False)
    assert ledger.close()
    with pytest.raises(AgentledgerError, match="closed"):
        ledger.record_llm("gpt-4o", 10, 5)
    assert ledger.stats().dropped == 1


def test_close_on_a_dead_database_stops_the_writer_and_says_what_was_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """close() makes a last attempt, returns False, stops retrying, and logs the loss."""
    ledger = Ledger(
        "postgresql://postgres@127.0.0.1:1/nowhere", handle_signals=False, flush_interval_s=0.05
    )
    assert ledger.record_llm("gpt-4o", 10, 5) is not None
    assert ledger.close(timeout=0.3) is False
    assert ledger._writer is None or not ledger._writer.is_alive()
    assert ledger.stats().pending == 1
    assert any("not written" in r.getMessage() for r in caplog.records)
    assert "postgres@" in repr(ledger)


@pytest.mark.parametrize("n", [3, 120])  # PostgreSQL: the multi-row INSERT and the COPY path
def test_text_the_database_cannot_store_does_not_poison_a_batch(
    db_url: str, ledgers: list[Ledger], n: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A lone surrogate (no UTF-8 exists for it; ``os.fsdecode`` makes them) fails a write
    on both databases, a NUL character on PostgreSQL (neither text nor jsonb holds one):
    such a batch failed on every retry and took every event recorded with it, and after
    it, down too. Now every event is written once, with U+FFFD in the bad character's
    place (SQLite keeps a NUL), and a warning says so."""
    ledger = Ledger(db_url, handle_signals=False, flush_interval_s=3600)
    ledgers.append(ledger)
    for i in range(n):
        ledger.record_llm("gpt-4o", 10, 5, bot_id=f"bot-{i}", duration_ms=1.0)
    ledger.record_tool("t\x00ool", bot_id="a\x00b", duration_ms=1.0, status="error",
                       error_message="bad\x00byte", tags={"k\x00": "v\x00"},
                       metadata={"x": ["y\x00z", {"\x00": 1}]})  # fmt: skip
    ledger.record_tool("file-\udcff", user_id="u\udc80", duration_ms=1.0,
                       metadata={"path": "/tmp/\udce9t\udce9"})  # fmt: skip
    with caplog.at_level("WARNING", logger="agentledger.store"):
        assert ledger.flush(timeout=30)
    assert ledger.stats().write_errors == 0
    count, bots, events = db_counts(db_url)
    assert count == n + 2
    nul = "\ufffd" if db_url.startswith("postgresql") else "\x00"
    (odd,) = [e for e in events if e.name == f"t{nul}ool"]
    assert (odd.bot_id, odd.error_message) == (f"a{nul}b", f"bad{nul}byte")
    assert odd.tags == {f"k{nul}": f"v{nul}"}
    assert odd.metadata == {"x": [f"y{nul}z", {nul: 1}]}
    (path,) = [e for e in events if e.name == "file-\ufffd"]
    assert path.user_id == "u\ufffd"
    assert path.metadata == {"path": "/tmp/\ufffdt\ufffd"}
    assert bots[f"a{nul}b"] == 1
    assert all(bots[f"bot-{i}"] == 1 for i in range(n))
    assert "held text the database cannot store" in caplog.text
    store = SQLStore(db_url)
    try:  # the rollups hold the same events once
        from agentledger.query import Query

        assert Query(store).totals().calls == Query(store, use_rollups=False).totals().calls
        assert Query(store).totals().calls == n + 2
    finally:
        store.close()


def test_billions_in_one_bucket_are_written_and_summed_exactly(
    db_url: str, ledgers: list[Ledger]
) -> None:
    """Rollup money is integers below $4.6e9 per row (``rollups.capped``): a batch, a merge
    or a compaction that sums past it moves the money into ``cost_extra``, so no write
    overflows 64 bits (which failed the batch on every retry, and every batch behind it),
    and a report past 2**63 nano-dollars on SQLite sums in Python. Costs in the wrong unit
    do this: $9,999,999.12 per call, the most one event may cost."""
    from agentledger.query import Query

    start = time.time() // 86_400 * 86_400 - 86_400 + 600.0  # yesterday, 00:10 UTC
    cost = Decimal("9999999.123456789")
    ledger = Ledger(db_url, handle_signals=False, flush_interval_s=3600)
    ledgers.append(ledger)
    assert isinstance(ledger.store, SQLStore)
    ledger.store.clock = lambda: start + 600  # that hour is open: minute rows, compacted later

    def record(n: int, at: float) -> None:
        for i in range(n):
            ledger.record_llm("gpt-4o", 10, 5, cost_usd=cost, duration_ms=1.0, bot_id="b",
                              user_id=f"u{i % 3}", started_at=at + i * 0.01)  # fmt: skip
        assert ledger.flush(timeout=60)

    record(1_000, start)  # one batch: $1e10 in one minute's rows
    record(300, start + 1)  # merged into them
    for minute in (3, 4, 5, 6):  # four minute rows below the cap: $1.2e10 in their hour
        record(300, start + minute * 60)
    assert ledger.stats().write_errors == 0
    store = SQLStore(db_url)
    try:
        expected = 2_500 * cost
        for query in (Query(store), Query(store, use_rollups=False)):
            assert query.totals().cost_usd == expected
            assert query.totals(bot_id="b").cost_usd == expected
            assert sum(g.summary.cost_usd for g in query.breakdown("user_id")) == expected
        store.compact()  # now: that hour and day are closed, built from the finer rows
        assert Query(store).totals().cost_usd == expected
        assert (
            Query(store).totals(user_id="u0").cost_usd
            == Query(store, use_rollups=False).totals(user_id="u0").cost_usd
        )
        for table in ("rollup_kinds", "rollup_users", "rollup_what"):
            with store.engine.connect() as conn:
                nanos = [r[0] for r in conn.exec_driver_sql(f"SELECT cost_nano FROM {table}")]
            assert all(abs(n) < 2**62 for n in nanos), table
    finally:
        store.close()
