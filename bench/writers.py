"""Benchmarks of the background writer: Ledger -> SQLite and Ledger -> PostgreSQL vs raw."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from time import perf_counter
from typing import Any

import agentledger
from _harness import Result, interleaved, median, paired_ratio
from agentledger import Ledger
from agentledger.events import ROW_FIELDS
from agentledger.store.sql import SQLStore, _pg_params, _sqlite_params
from hot_path import BOTS, MODEL, USER

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PG_DB = "agentledger_bench"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
_COLS = ", ".join(ROW_FIELDS)


def _idle_ledger(url: str) -> Ledger:
    # batch_size above N: the writer never wakes during recording, and _drain() writes all
    # N rows in one transaction, like the raw peer.
    return Ledger(
        url, flush_interval_s=3600, batch_size=10**9, max_queue=10**9, handle_signals=False
    )


def _record(ledger: Ledger, n: int) -> None:
    record = ledger.record_llm
    per_bot = 100
    for j in range(n // per_bot):
        with agentledger.scope(bot_id=BOTS[j % len(BOTS)], user_id=USER):
            for _ in range(per_bot):
                record(MODEL, 1000, 500, duration_ms=800.0)


def _timed_drain(ledger: Ledger, n: int) -> float:
    assert len(ledger._buf) == n, "the writer ran while recording"
    t0 = perf_counter()
    assert ledger._drain()
    elapsed = perf_counter() - t0
    stats = ledger.stats()
    assert stats.written == n, stats
    assert stats.pending == 0, stats
    return elapsed


# --- 3. SQLite -----------------------------------------------------------------------------------
def bench_writer_sqlite(quick: bool) -> list[Result]:
    n, repeats = (20_000, 3) if quick else (50_000, 7)
    tmp = tempfile.mkdtemp(prefix="agentledger-bench-")
    counter = iter(range(10**6))
    rows: list[tuple[Any, ...]] = []

    def ours() -> float:
        path = os.path.join(tmp, f"ours-{next(counter)}.db")
        ledger = _idle_ledger(f"sqlite:///{path}")
        ledger.prices.warm()
        _record(ledger, n)
        if not rows:
            rows.extend(ledger._priced(list(ledger._buf)))  # priced, as the writer stores them
        elapsed = _timed_drain(ledger, n)
        ledger.close()
        _remove_db(path)
        return n / elapsed

    def raw() -> float:
        path = os.path.join(tmp, f"raw-{next(counter)}.db")
        SQLStore(f"sqlite:///{path}").close()  # the schema, by the store's own migration
        params = [_sqlite_params(r) for r in rows]  # pre-converted, outside the timing
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")  # the store's own pragmas
        conn.execute("PRAGMA synchronous = NORMAL")
        sql = f"INSERT INTO events ({_COLS}) VALUES ({', '.join('?' * len(ROW_FIELDS))})"
        t0 = perf_counter()
        conn.execute("BEGIN")
        conn.executemany(sql, params)
        conn.execute("COMMIT")
        elapsed = perf_counter() - t0
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == n
        conn.close()
        _remove_db(path)
        return n / elapsed

    ours()  # warm-up, and the rows the raw peer writes
    try:
        a, b = interleaved(ours, raw, repeats)
    finally:
        _rmtree(tmp)
    ratio = paired_ratio(a, b)
    return [
        Result(
            "writer_sqlite", "rows written per second", "rows/s", median(a), median(b),
            "raw sqlite3 executemany", ratio, "ours / raw", ">= 60% of raw", ratio >= 0.6,
            a, b,
            f"{n} rows x {repeats} repeats, one transaction each, fresh WAL file DB; ours "
            "times Ledger._drain() (aggregation + param conversion + INSERT OR IGNORE)",
        )
    ]  # fmt: skip


def _remove_db(path: str) -> None:
    lock = os.path.splitext(path)[0] + ".migrate-lock"
    for name in (path, path + "-wal", path + "-shm", lock):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# --- 4. PostgreSQL -------------------------------------------------------------------------------
def bench_writer_postgres(quick: bool) -> list[Result]:
    import psycopg

    n, repeats = (10_000, 3) if quick else (25_000, 11)
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        return [_skipped("writer_postgres", f"PostgreSQL unavailable: {exc}")]
    admin.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {PG_DB}")
    try:
        SQLStore(PG_URL).close()  # schema by the store's own migration
        return _bench_postgres(n, repeats)
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        admin.close()


def _bench_postgres(n: int, repeats: int) -> list[Result]:
    import psycopg

    rows: list[tuple[Any, ...]] = []
    conn = psycopg.connect(PG_URL)

    def truncate() -> None:
        conn.execute("TRUNCATE events")
        conn.commit()

    def ours() -> float:
        truncate()
        ledger = _idle_ledger(PG_URL)
        ledger.prices.warm()
        _record(ledger, n)
        if not rows:
            rows.extend(ledger._priced(list(ledger._buf)))  # priced, as the writer stores them
        elapsed = _timed_drain(ledger, n)
        ledger.close()
        return n / elapsed

    def raw() -> float:
        truncate()
        params = [_pg_params(r) for r in rows]  # pre-converted, outside the timing
        t0 = perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY events ({_COLS}) FROM STDIN") as copy:
            for p in params:
                copy.write_row(p)
        conn.commit()
        elapsed = perf_counter() - t0
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == n  # type: ignore[index]
        conn.commit()
        return n / elapsed

    ours()  # warm-up, and the rows the raw peer writes
    a, b = interleaved(ours, raw, repeats)
    truncate()
    conn.close()
    ratio = paired_ratio(a, b)
    return [
        Result(
            "writer_postgres", "rows written per second", "rows/s", median(a), median(b),
            "raw psycopg COPY into events", ratio, "ours / raw", ">= 60% of raw",
            ratio >= 0.6, a, b,
            f"{n} rows x {repeats} repeats, one transaction each, table truncated before each; "
            "ours times Ledger._drain() (aggregation + COPY to temp + INSERT..ON CONFLICT)",
        )
    ]  # fmt: skip


def _skipped(name: str, why: str) -> Result:
    return Result(name, "skipped", "-", float("nan"), None, "-", None, "-", "-", None, notes=why)
