"""SQLite and PostgreSQL through SQLAlchemy Core, one schema, Alembic-migrated on open.

Writes skip the ORM and SQLAlchemy's statement compilation: one prepared
``INSERT OR IGNORE`` executemany on SQLite, and ``COPY`` into a temporary table followed by
``INSERT ... ON CONFLICT DO NOTHING`` on PostgreSQL, so a replayed batch changes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, NamedTuple

from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError

from ..errors import ConfigError, StoreError, StoreUnavailable
from ..events import ROW_FIELDS, Event
from . import rollups
from .schema import events as events_table

__all__ = ["HEAD_REVISION", "SQLStore", "StoreInfo", "normalize_url"]

log = logging.getLogger("agentledger.store")

# A test checks this against the migration scripts.
HEAD_REVISION: Final = "0013_postgres_derived_rollups"
_MIGRATIONS: Final = Path(__file__).with_name("migrations")
_COLS: Final = ", ".join(ROW_FIELDS)
_SQLITE_INSERT: Final = (
    f"INSERT OR IGNORE INTO events ({_COLS}) VALUES ({', '.join('?' * len(ROW_FIELDS))})"
)
_COPY_MIN_ROWS: Final = 50  # below this, executemany beats the COPY + INSERT..SELECT round trips


def normalize_url(url: str) -> str:
    """Accept ``sqlite:///path``, ``postgresql://...`` (psycopg 3 is used) and ``postgres://``."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("database URL must be a non-empty string")
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"not a database URL: {url!r} (try sqlite:///path.db)") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"unsupported database {parsed.get_backend_name()!r} in {url!r}: "
            "use sqlite:///path.db or postgresql://user@host/db"
        )
    return url


@dataclass(frozen=True)
class StoreInfo:
    """What :meth:`SQLStore.describe` finds: for ``agentledger db stats`` and operators."""

    url: str  #: the password hidden
    revision: str | None
    events: int
    first_event: datetime | None
    last_event: datetime | None
    size_bytes: int | None  #: SQLite: the file with its WAL; PostgreSQL: the database
    marks: rollups.Marks  #: how far compaction has gone (epoch µs; 0: not yet)
    rollup_rows: dict[str, int]  #: table -> rows (rollups, member bitmaps, user totals)


class SQLStore:
    """Events in SQLite (WAL) or PostgreSQL, migrated to the current schema on open."""

    def __repr__(self) -> str:
        return f"<SQLStore {_redact(self.url)}>"

    def __init__(self, url: str, *, migrate: bool = True, timeout_s: float = 5.0) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        self._timeout_s = timeout_s
        if self.dialect == "sqlite":
            self.engine = self._sqlite_engine(parsed.database)
        else:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "PostgreSQL needs psycopg: pip install 'agentledger[postgres]'"
                ) from None
            self.engine = create_engine(
                self.url,
                pool_pre_ping=True,
                connect_args={"connect_timeout": max(1, int(timeout_s))},
            )
        self._pid = os.getpid()
        self._lock = threading.Lock()
        #: Update the rollups with every write. Only benchmarks turn it off (to measure what
        #: rollups cost); with it off, reports disagree with the events until a rebuild.
        self.maintain_rollups = True
        self._user_numbers: dict[str, int] = {}  # committed user_id -> number (never change)
        #: The open hours' ``users`` groups this process wrote (PostgreSQL; see UsersAhead).
        self._ahead = rollups.UsersAhead() if self.dialect in rollups.LAZY_USERS else None
        #: The time (epoch seconds) that decides which rollup buckets have closed and get
        #: compacted; tests set it to replay a day's writes.
        self.clock: Callable[[], float] = time.time
        if migrate:
            try:
                self.migrate()
            except BaseException:
                self.engine.dispose()  # a retrying caller must not pile up engines
                raise

    # --- setup ----------------------------------------------------------------------------
    def _sqlite_engine(self, database: str | None) -> Engine:
        if database and database != ":memory:":
            path = Path(database).expanduser()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"cannot create {path.parent}: {exc}") from None
        engine = create_engine(
            self.url,
            connect_args={"timeout": self._timeout_s, "check_same_thread": False},
        )
        busy_ms = int(self._timeout_s * 1000)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Take transactions into our own hands: Python's sqlite3 would otherwise run DDL
            # outside any transaction, so a migration killed half-way could leave a table
            # without its version stamp. SQLAlchemy's "begin" below emits BEGIN instead.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if database and database != ":memory:":
                cur.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a committed batch survives a crash of this process (not of the OS).
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.close()
            # SQLite has no decimal type: money is decimal text, summed exactly here.
            dbapi_conn.create_aggregate("agentledger_dsum", 1, _DecimalSum)
            dbapi_conn.create_aggregate("agentledger_isum", 1, _IntegerSum)
            dbapi_conn.create_function(
                "agentledger_dadd", 2, rollups.decimal_add, deterministic=True
            )
            dbapi_conn.create_function(
                "agentledger_dneg", 1, rollups.decimal_neg, deterministic=True
            )
            dbapi_conn.create_function(
                "agentledger_money", 2, rollups.decimal_money, deterministic=True
            )

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine

    def migrate(self) -> None:
        """Bring the schema to the current revision (cheap when it already is)."""
        try:
            if self.revision() == HEAD_REVISION:
                return
            with self._migration_lock():
                if self.revision() != HEAD_REVISION:
                    self._run_alembic()
        except SQLAlchemyError as exc:
            raise _store_error(exc, self.url) from None

    def revision(self) -> str | None:
        """The schema revision stored in the database (None for an empty database)."""
        try:
            with self.engine.connect() as conn:
                version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                return None if version is None else str(version)
        except (OperationalError, DBAPIError) as exc:
            if _is_missing_table(exc):
                return None
            raise

    def _run_alembic(self) -> None:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        log.info("agentledger: migrated %s to %s", self.url, HEAD_REVISION)

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Serialise migrations across processes: a file lock (SQLite) or advisory lock (PG)."""
        if self.dialect == "sqlite":
            database = make_url(self.url).database
            if not database or database == ":memory:":
                yield
                return
            lock_path = Path(database).expanduser().with_suffix(".migrate-lock")
            with open(lock_path, "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
            return
        key = int.from_bytes(hashlib.sha256(b"agentledger-migrate").digest()[:7], "big")
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()

    # --- writes ---------------------------------------------------------------------------
    def write(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert ``rows`` in one transaction, ignoring known event ids; return rows inserted.

        The rollups are updated in the same transaction from the rows actually inserted, so
        events and rollups never disagree and a replayed batch changes neither.
        """
        if not rows:
            return 0
        return int(self._guarded(lambda: self._write(rows)))

    def _write(self, rows: Sequence[tuple[Any, ...]]) -> int:
        with self._lock, self.engine.connect() as conn:
            # The driver connection directly: SQLAlchemy did not begin this transaction,
            # so it is ours to commit or roll back.
            raw: Any = conn.connection.driver_connection
            numbers = _Numbers(self._user_numbers, self.dialect, self._ahead)
            try:
                inserted, numbers = self._write_storable(raw, rows, numbers)
                raw.commit()
            except BaseException:
                raw.rollback()
                _forget_stages(raw, self.dialect)
                raise
            numbers.commit()  # numbers given out in a rolled-back transaction are not kept
        marks = numbers.marks
        # The clock's hours and days only: totals moved back by late events are rebuilt at
        # the next hour, not after every batch of a backfill.
        if marks is not None and rollups.Marks.due(self._now_us())[:2] != marks[:2]:
            self._compact_quietly()
        return inserted

    def _write_storable(
        self, raw: Any, rows: Sequence[tuple[Any, ...]], numbers: _Numbers
    ) -> tuple[int, _Numbers]:
        """Write ``rows`` in the open transaction; if text the database cannot store failed
        them (a lone surrogate, which is no UTF-8; on PostgreSQL a NUL character, which
        neither text nor jsonb holds), write them again with U+FFFD in its place: one such
        string would otherwise fail its whole batch on every retry, and every event behind
        it (a wrong character, not lost events). Returns the rows inserted and the user
        numbers."""
        write = _write_sqlite if self.dialect == "sqlite" else _write_postgres
        try:
            return write(raw, rows, numbers, self.maintain_rollups), numbers
        except Exception as exc:
            clean = _storable(rows, self.dialect) if _is_text_error(exc) else None
            if clean is None:
                raise
        raw.rollback()
        _forget_stages(raw, self.dialect)
        # The numbers (and users groups) of the rolled-back transaction are void.
        numbers = _Numbers(self._user_numbers, self.dialect, self._ahead)
        inserted = write(raw, clean, numbers, self.maintain_rollups)
        log.warning(
            "%d event(s) held text the database cannot store (a lone surrogate, or a NUL "
            "character on PostgreSQL): written with U+FFFD in its place",
            clean.changed,
        )
        return inserted, numbers

    def _transaction(self, work: Any, *, lock_events: bool = True) -> Any:
        """Run ``work(raw_connection)`` in one write transaction (blocking other writers;
        on PostgreSQL, unless ``lock_events`` is false, by locking the events table)."""

        def run() -> Any:
            with self._lock, self.engine.connect() as conn:
                raw: Any = conn.connection.driver_connection
                try:
                    if self.dialect == "sqlite":
                        raw.execute("BEGIN IMMEDIATE")
                    elif lock_events:
                        with raw.cursor() as cur:  # writers wait; readers go on
                            cur.execute("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
                    result = work(raw)
                    raw.commit()
                except BaseException:
                    raw.rollback()
                    _forget_stages(raw, self.dialect)
                    raise
                return result

        return self._guarded(run)

    def compact(self, *, now: float | None = None) -> rollups.Marks:
        """Build the coarse rollup rows of every bucket closed at ``now`` (epoch seconds;
        default: :attr:`clock`) that is not compacted yet; return the marks.

        Every write does this for the buckets that closed since the last one, so calling it
        is only needed in tests and benchmarks, or for a database no longer written to."""
        now_us = self._now_us() if now is None else round(now * 1_000_000)
        return rollups.Marks(*self._transaction(
            lambda raw: compact_on(raw, self.dialect, now_us, ahead=self._ahead),
            lock_events=False,
        ))  # fmt: skip

    def marks(self) -> rollups.Marks:
        """How far the coarse rollup rows are complete (see :class:`rollups.Marks`)."""

        def read() -> rollups.Marks:
            with self.engine.connect() as conn:
                found: dict[str, int] = dict(
                    conn.execute(text("SELECT grain, upto FROM rollup_marks")).all()
                )
            return _marks_of(found)

        return rollups.Marks(*self._guarded(read))

    def _now_us(self) -> int:
        return round(self.clock() * 1_000_000)

    def _compact_quietly(self) -> None:
        """Compact after a write: a failure loses nothing (every answer stays exact from the
        finer rows, and the next write tries again), so it is logged, not raised."""
        try:
            self.compact()
        except Exception as exc:  # the write itself succeeded
            log.warning("agentledger: rollup compaction failed (will retry): %s", exc)

    def rebuild_rollups(self) -> int:
        """Recompute every rollup from the events table; return the events folded.

        One transaction: writers wait until it is done, readers see the old rollups until
        it commits. Rollups of events already pruned are lost by a rebuild (see prune).
        """

        def rebuild(raw: Any) -> int:
            folded = rebuild_rollups_on(raw, self.dialect)  # every grain of every bucket
            marks = rollups.Marks.due(self._now_us())
            cur = raw.cursor()
            try:
                cur.execute("DELETE FROM rollup_user_totals")
                _build_user_totals(cur, self.dialect, 0, marks.totals)
                _write_marks(cur, self.dialect, marks)
            finally:
                cur.close()
            return folded

        return int(self._transaction(rebuild))

    def prune(
        self,
        before: datetime,
        *,
        batch: int = 10_000,
        progress: Any = None,
    ) -> int:
        """Delete events that started before ``before``, ``batch`` rows per transaction.

        Rollups are kept, so reports over the pruned period still add up (from whole hours
        and days; a partial hour at a range's edge needs its events). Each batch is its own
        short transaction, so writers are never blocked for long. ``progress(n)`` is called
        with the rows deleted after each batch. Returns the total deleted.

        On PostgreSQL, whose ``users`` hour rows are built when their hour is compacted
        (:data:`rollups.LAZY_USERS`), the closed hours are compacted first and the events
        of the hours not compacted yet (the current one) are kept.
        """
        if not isinstance(before, datetime) or before.tzinfo is None:
            raise ConfigError(f"prune: 'before' must be a timezone-aware datetime, got {before!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"prune: 'batch' must be a positive int, got {batch!r}")
        if self.dialect in rollups.LAZY_USERS and self.maintain_rollups:
            from .schema import from_epoch_us

            before = min(before, from_epoch_us(self.compact().hour))
        if self.dialect == "sqlite":
            from .schema import to_epoch_us

            sql = ("DELETE FROM events WHERE rowid IN "
                   "(SELECT rowid FROM events WHERE started_at < ? LIMIT ?)")  # fmt: skip
            args: tuple[Any, ...] = (to_epoch_us(before.astimezone(UTC)), batch)
        else:
            sql = ("DELETE FROM events WHERE ctid IN "
                   "(SELECT ctid FROM events WHERE started_at < %s LIMIT %s)")  # fmt: skip
            args = (before, batch)
        total = 0
        while True:
            deleted = int(self._guarded(lambda: self._delete_batch(sql, args)))
            total += deleted
            if progress is not None:
                progress(deleted)
            if deleted < batch:
                return int(total)

    def _delete_batch(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock, self.engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            try:
                cur = raw.cursor()
                if self.dialect == "sqlite":
                    cur.execute("BEGIN IMMEDIATE")
                cur.execute(sql, args)
                deleted = int(cur.rowcount)
                cur.close()
                raw.commit()
            except BaseException:
                raw.rollback()
                raise
        return deleted

    def _guarded(self, work: Any) -> Any:
        """Run ``work()``; database errors become StoreError / StoreUnavailable (one line)."""
        try:
            return work()
        except SQLAlchemyError as exc:
            raise _store_error(exc, self.url) from None
        except StoreError:
            raise
        except Exception as exc:  # driver errors raised outside SQLAlchemy's wrapping
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"{_redact(self.url)}: {type(exc).__name__}: {detail}") from exc

    def vacuum(self) -> None:
        """Give the space of deleted rows back (SQLite ``VACUUM``, PostgreSQL ``VACUUM``)."""
        self._guarded(self._vacuum)

    def _vacuum(self) -> None:
        with self._lock, self.engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            if self.dialect == "sqlite":
                raw.execute("VACUUM")
            else:
                raw.rollback()
                previous = raw.autocommit
                raw.autocommit = True
                try:
                    raw.execute("VACUUM (ANALYZE) events")
                finally:
                    raw.autocommit = previous

    # --- reads ----------------------------------------------------------------------------
    def events(self, *, limit: int | None = None) -> list[Event]:
        query = select(*[events_table.c[name] for name in ROW_FIELDS]).order_by(
            events_table.c.started_at, events_table.c.event_id
        )
        if limit is not None:
            query = query.limit(limit)
        try:
            with self.engine.connect() as conn:
                return [Event.from_row(tuple(r)) for r in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise _store_error(exc, self.url) from None

    def count(self) -> int:
        try:
            with self.engine.connect() as conn:
                total = conn.execute(select(func.count()).select_from(events_table)).scalar()
                return int(total or 0)
        except SQLAlchemyError as exc:
            raise _store_error(exc, self.url) from None

    def describe(self) -> StoreInfo:
        """Size, time span and rollup state of the database (counts every rollup row: a
        second or so at tens of millions of events)."""
        from .schema import rollup_members, rollup_tables, rollup_user_totals

        tables = [*rollup_tables.values(), rollup_members, rollup_user_totals]

        def read() -> StoreInfo:
            with self.engine.connect() as conn:
                count, first, last = conn.execute(
                    select(
                        func.count(),
                        func.min(events_table.c.started_at),
                        func.max(events_table.c.started_at),
                    )
                ).one()
                rows = {
                    t.name: int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
                    for t in tables
                }
                found: dict[str, int] = dict(
                    conn.execute(text("SELECT grain, upto FROM rollup_marks")).all()
                )
                size: Any = None
                if self.dialect == "sqlite":
                    database = make_url(self.url).database
                    if database and database != ":memory:":
                        size = sum(
                            os.path.getsize(f"{database}{suffix}")
                            for suffix in ("", "-wal")
                            if os.path.exists(f"{database}{suffix}")
                        )
                else:
                    size = conn.execute(
                        text("SELECT pg_database_size(current_database())")
                    ).scalar()
            return StoreInfo(
                _redact(self.url), self.revision(), int(count or 0), first, last,
                None if size is None else int(size), _marks_of(found), rows,
            )  # fmt: skip

        return self._guarded(read)  # type: ignore[no-any-return]

    def after_fork(self) -> None:
        # Connections are sockets/file handles shared with the parent: drop them unused.
        self.engine.dispose(close=False)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        if self._ahead is not None:
            self._ahead.forget()

    def close(self) -> None:
        self.engine.dispose()


class _IntegerSum:
    """``agentledger_isum(integer)``: an exact integer sum, as text past 64 bits (queries
    use it for ``cost_nano`` only when SQLite's ``sum()`` overflows)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, value: Any) -> None:
        if value is not None:
            self.total += int(value)

    def finalize(self) -> int | str:
        return self.total if -(2**63) <= self.total < 2**63 else str(self.total)


class _DecimalSum:
    """``agentledger_dsum(text)``: the exact Decimal sum of decimal-text values, as text."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: Any) -> None:
        if value is not None:  # at a precision no sum of money reaches: never rounds
            self.total = rollups.EXACT.add(
                self.total, Decimal(value if isinstance(value, str) else str(value))
            )

    def finalize(self) -> str:
        return str(self.total)


def _write_sqlite(
    raw: Any, rows: Sequence[tuple[Any, ...]], numbers: _Numbers, with_rollups: bool = True
) -> int:
    params = [_sqlite_params(r) for r in rows]
    cur = raw.cursor()
    try:
        # IMMEDIATE takes the write lock up front, where the busy timeout can wait for it;
        # a deferred transaction that must upgrade its lock fails at once instead.
        cur.execute("BEGIN IMMEDIATE")
        marks = _read_marks(cur, "sqlite") if with_rollups else None
        last = cur.execute("SELECT max(rowid) FROM events").fetchone()[0] or 0
        cur.executemany(_SQLITE_INSERT, params)
        inserted = int(cur.rowcount)
        if inserted != len(params) and with_rollups:  # replayed ids: fold only the new rows
            new = {r[0] for r in cur.execute("SELECT event_id FROM events WHERE rowid > ?",
                                             (last,))}  # fmt: skip
            params = [p for p in params if p[0] in new]
        if with_rollups:
            _upsert_rollups(cur, params, "sqlite", numbers, marks=marks)
        numbers.marks = marks
        return inserted
    finally:
        cur.close()


def _upsert_rollups(
    cur: Any,
    params: Sequence[tuple[Any, ...]],
    dialect: str,
    numbers: _Numbers,
    enabled: bool = True,
    marks: rollups.Marks | None = None,
    *,
    again: bool = False,
    raw: bool = False,
    prepared: _Prepared | None = None,
    skip: frozenset[str] | None = None,
) -> None:
    """Add ``params`` (store-ready rows with started_at in epoch µs; with ``raw``, as
    :meth:`SQLStore.write` takes them) to every rollup: the finest grain always, the coarser
    ones below ``marks`` (all of them without marks). ``again``: not the transaction's
    first call (PostgreSQL's stage tables hold rows). ``prepared``: :func:`_prepare` of
    these ``params`` and ``marks``, made already. ``skip``: rollups not written (default:
    those :data:`rollups.DERIVED` on ``dialect``; none below migration 0013)."""
    numbers.users = None
    if not params or not enabled:
        return
    grouped, folded, members = prepared or _prepare(
        params, dialect, marks, raw, numbers=numbers, skip=skip
    )
    if numbers.ahead is not None and marks is not None:
        numbers.users = (grouped.users, marks.hour)  # to the store's ahead once committed
    if marks is not None:  # first: on PostgreSQL, marks are locked before any rollup row
        _lower_totals_mark(cur, dialect, grouped, marks)
    if dialect == "sqlite":  # one writer at a time: no lock order to keep
        member_keys, member_bits = _member_bits(cur, grouped.members, numbers, marks)
        if member_keys:
            _or_members_sqlite(cur, member_keys, member_bits)
        for spec, rows in folded.items():
            if not rows:
                continue
            extra = 2 + len(rollups.SPECS[spec]) + rollups.COST + 2
            cur.executemany(rollups.upsert_sql(spec), [_extra_as_text(r, extra) for r in rows])
        return
    # PostgreSQL: each rollup's rows COPYed into a temporary table, then one INSERT .. SELECT
    # .. ON CONFLICT merge per rollup in key order, so concurrent writers lock rollup rows in
    # one order (psycopg re-parses a long multi-row VALUES statement on every call, and
    # executemany is a round trip per row; arrays through unnest() dump 7x slower than
    # COPY text). The merges and the member bitmaps' upsert go in one pipeline: one round
    # trip for all of them (~0.15 ms each here, a few % of the writer's time).
    stages = _stages(cur, [spec for spec, lines in folded.items() if lines])
    merges = []
    for spec, lines in folded.items():
        if lines:
            if again:  # else empty: emptied by every commit and rollback (TRUNCATE ~1 ms)
                cur.execute(f"TRUNCATE {stages[spec]}")
            with cur.copy(f"COPY {stages[spec]} FROM STDIN") as copy:
                copy.write(lines)
            merges.append(rollups.merge_sql(spec, stages[spec]))
    if members is None and grouped.members:  # users without a number yet: given them now
        members = _members_params(*_member_bits(cur, grouped.members, numbers, marks))
    with cur.connection.pipeline():
        if members is not None:
            _or_members_postgres(cur, members)
        for merge in merges:
            cur.execute(merge)


class _Prepared(NamedTuple):
    """A batch's rollup rows, made before they are written (see :func:`_write_postgres`)."""

    grouped: rollups.Grouped
    #: Rollup name -> its rows: on SQLite as tuples, on PostgreSQL as COPY text.
    folded: dict[str, Any]
    #: PostgreSQL: the member bitmaps' upsert parameters (:func:`_members_params`), made
    #: when every user of the batch had a number already; else None (made when written).
    members: list[Any] | None = None


def _prepare(
    params: Sequence[tuple[Any, ...]],
    dialect: str,
    marks: rollups.Marks | None,
    raw: bool,
    numbers: _Numbers | None = None,
    skip: frozenset[str] | None = None,
) -> _Prepared:
    """The client's share of :func:`_upsert_rollups`, which needs no database: ``params``
    grouped, folded into rollup rows and, for PostgreSQL, formatted as COPY text, and
    (given ``numbers`` that know every user of the batch) the member bitmaps' upsert."""
    lazy = dialect in rollups.LAZY_USERS
    # With lazy users, fold() keeps the users groups of the hours below the mark only; the
    # others are grouped only for a store that keeps them ahead (see rollups.UsersAhead).
    ahead = numbers.ahead if numbers is not None and lazy and marks is not None else None
    users_before = marks.hour if lazy and marks is not None and ahead is None else None
    grouped = rollups.group(params, raw=raw, users_before=users_before)
    if ahead is not None:
        ahead.merge()  # the batches committed before this one, while the server works
    if skip is None:
        skip = rollups.derived(dialect)
    folded: dict[str, Any] = rollups.fold(grouped, marks, lazy_users=lazy, skip=skip)
    if dialect == "sqlite":
        return _Prepared(grouped, folded)
    for spec, rows in folded.items():
        n_keys = len(rollups.SPECS[spec])
        folded[spec] = rows and _rollup_copy_text(rows, n_keys)
    members = None
    if numbers is not None and grouped.members and numbers.knows(grouped.members.values()):
        members = _members_params(*_member_bits(None, grouped.members, numbers, marks))
    return _Prepared(grouped, folded, members)


#: PostgreSQL connection -> the rollups whose transaction-scoped stage tables exist on it
#: (created in a committed transaction or in the open one; a rollback forgets the
#: connection, see :func:`_forget_stages`): one CREATE per table and connection, not one
#: per batch (~0.6 ms each). Each is made when first needed: every commit after a temporary
#: table was touched empties every ``ON COMMIT DELETE ROWS`` table of the session (~0.2 ms
#: each), and a live writer on PostgreSQL stages two rollups (``what``, ``attribution``;
#: ``users`` for late events; the derived ones never), not six.
_STAGED: Final[weakref.WeakKeyDictionary[Any, set[str]]] = weakref.WeakKeyDictionary()
_STAGES: Final = {spec: f"agentledger_stage_{spec}" for spec in rollups.SPECS}


def _stages(cur: Any, specs: Iterable[str]) -> dict[str, str]:
    """Rollup name -> its stage table on ``cur``'s connection; those of ``specs`` created
    if needed."""
    conn = cur.connection
    made = _STAGED.setdefault(conn, set())
    new = [spec for spec in specs if spec not in made]
    if new:
        cur.execute("; ".join(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGES[spec]} "
            f"(LIKE {rollups.table_name(spec)}) ON COMMIT DELETE ROWS" for spec in new
        ))  # fmt: skip
        made.update(new)
    return _STAGES


def _forget_stages(raw: Any, dialect: str) -> None:
    """After a rollback on ``raw``: stage tables it created in that transaction are gone."""
    if dialect != "sqlite":
        _STAGED.pop(raw, None)


def _bucket_text(bucket_us: int) -> str:
    from .schema import from_epoch_us

    return from_epoch_us(bucket_us).isoformat()


_COPY_TEXT_C: Final = rollups.compiled("copy_text")


def _rollup_copy_text(rows: Sequence[tuple[Any, ...]], n_keys: int) -> bytes | str:
    """Rollup rows (:func:`rollups.fold`'s form) as COPY text: compiled where built, else
    :func:`_copy_text`."""
    if _COPY_TEXT_C is None:
        return _copy_text(rows, n_keys)
    text: bytes = _COPY_TEXT_C(rows, n_keys, _bucket_text)
    return text


def _copy_text(rows: Sequence[tuple[Any, ...]], n_keys: int) -> str:
    """Rollup rows as PostgreSQL COPY text: formatting whole lines in Python is ~5x faster
    than psycopg adapting each of a row's 30 values (the compiled ``_fold.copy_text``,
    used where it is built, writes the same bytes ~5x faster again)."""
    from .schema import from_epoch_us

    extra = 2 + n_keys + rollups.COST + 2
    buckets: dict[int, str] = {}
    lines = []
    for r in rows:
        bucket = buckets.get(r[1])
        if bucket is None:
            bucket = buckets[r[1]] = from_epoch_us(r[1]).isoformat()
        keys = [_copy_escape(k) for k in r[2 : 2 + n_keys]]
        value = r[extra]
        lines.append("\t".join([
            r[0], bucket, *keys, *map(str, r[2 + n_keys : extra]),
            "\\N" if value is None else str(value), *map(str, r[extra + 1 :]),
        ]))  # fmt: skip
    return "\n".join(lines) + "\n"


def _copy_escape(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))  # fmt: skip
    return value


def _read_marks(cur: Any, dialect: str, *, lock: str = "SHARE") -> rollups.Marks:
    """The rollup marks. On PostgreSQL writers hold the hour and day marks ``FOR SHARE``
    and a compaction holds every mark ``FOR UPDATE``, until their transactions end; the
    totals mark is read unlocked by writers (one that lowers it locks it by updating)."""
    if dialect == "sqlite":
        cur.execute("SELECT grain, upto FROM rollup_marks")
        return _marks_of(dict(cur.fetchall()))
    # One lock order for all: the day and hour marks (in that order), then the totals mark.
    # Both statements in one round trip (no parameters: the simple query protocol).
    cur.execute(
        f"SELECT grain, upto FROM rollup_marks WHERE grain IN ('d', 'h') ORDER BY grain FOR {lock}"
        "; SELECT grain, upto FROM rollup_marks WHERE grain = 'c'"
        + (" FOR UPDATE" if lock == "UPDATE" else "")
    )
    found: dict[str, int] = dict(cur.fetchall())
    cur.nextset()
    found.update(cur.fetchall())
    return _marks_of(found)


def _marks_of(found: dict[str, int]) -> rollups.Marks:
    return rollups.Marks(int(found.get("h", 0)), int(found.get("d", 0)), int(found.get("c", 0)))


def _lower_totals_mark(
    cur: Any, dialect: str, grouped: rollups.Grouped, marks: rollups.Marks
) -> None:
    """Late events for hours that already have running user totals: those totals (and the
    later ones) are rebuilt by the next compaction, so the mark moves back to their hour."""
    # Every event is in an attribution group (not always in a users one: see _prepare).
    hour = min(key[0] for key in grouped.attribution)
    if hour < marks.totals:  # back to its hour's start: an hour's row is rebuilt whole
        smaller = "min" if dialect == "sqlite" else "least"
        mark = "?" if dialect == "sqlite" else "%s"
        cur.execute(
            f"UPDATE rollup_marks SET upto = {smaller}(upto, {mark}) WHERE grain = 'c'", (hour,)
        )


def compact_on(
    raw: Any,
    dialect: str,
    now_us: int,
    *,
    totals: bool = True,
    skip: frozenset[str] | None = None,
    ahead: rollups.UsersAhead | None = None,
) -> rollups.Marks:
    """Build the coarse rollup rows (and bitmaps) of every bucket closed at ``now_us`` that
    is not compacted yet, and move the marks; on ``raw`` in its open transaction.

    Minute rows make the hours of ``kinds`` and ``what``; then hour rows make the days of
    every rollup; then the user totals follow the days (unless ``totals`` is false: a
    schema from before them). Each row is recomputed from finer rows (which hold every
    event), so running it twice or after a rebuild gives the same rows. ``skip``: rollups
    not stored (default: :func:`rollups.derived`; none below migration 0013). ``ahead``:
    the writing store's users groups of the hours it left to compaction (PostgreSQL).
    """
    if skip is None:
        skip = rollups.derived(dialect)
    cur = raw.cursor()
    try:
        if dialect != "sqlite":  # writers hold the marks FOR SHARE: wait for them, not forever
            cur.execute("SET LOCAL lock_timeout = '10s'")
        marks = _read_marks(cur, dialect, lock="UPDATE")
        due = rollups.Marks.due(now_us)
        steps = []
        if due.hour > marks.hour:
            steps.append(("m", "h", marks.hour, due.hour, rollups.MINUTELY))
        if due.day > marks.day:
            steps.append(("h", "d", marks.day, due.day, frozenset(rollups.SPECS)))
        for fine, coarse, lo, hi, specs in steps:
            width: Any = rollups.HOUR_US if coarse == "h" else rollups.DAY_US
            bounds: tuple[Any, Any] = (lo, hi)
            if dialect != "sqlite":
                from .schema import from_epoch_us

                width = "1 hour" if coarse == "h" else "1 day"
                bounds = (from_epoch_us(lo), from_epoch_us(hi))
            args = {"fine": fine, "coarse": coarse, "width": width, "lo": bounds[0],
                    "hi": bounds[1]}  # fmt: skip
            if coarse == "h" and dialect in rollups.LAZY_USERS:
                _users_hours(cur, lo, hi, ahead)
            for spec in rollups.SPECS:
                if spec in specs and spec not in skip:
                    try:
                        cur.execute(rollups.compact_sql(spec, dialect), args)
                    except Exception as exc:
                        if not sum_overflowed(exc, dialect):
                            raise
                        _compact_in_python(cur, spec, fine, coarse, lo, hi)
            _compact_members(cur, dialect, fine, coarse, lo, hi)
        day, hour = max(marks.day, due.day), max(marks.hour, due.hour)
        if totals and marks.totals < hour:
            _build_user_totals(cur, dialect, marks.totals, hour)
        new = rollups.Marks(hour, day, hour if totals else marks.totals)
        _write_marks(cur, dialect, new)
        return new
    finally:
        cur.close()


_USERS_COLUMNS: Final = ", ".join(
    ("grain", "bucket", *rollups.SPECS["users"], *rollups.measures("users"))
)


def _users_hours(cur: Any, lo: int, hi: int, ahead: rollups.UsersAhead | None) -> None:
    """PostgreSQL: the ``users`` hour rows of the hours in ``[lo, hi)`` (epoch µs): from
    ``ahead`` for each hour whose every event it summed (as many as the hour's
    ``attribution`` rows count), from the events for the others."""
    held = ahead.take(lo, hi) if ahead is not None else None
    if ahead is None or not held:
        _users_from_events(cur, lo, hi)
        return
    from .schema import from_epoch_us

    cur.execute(
        "SELECT (extract(epoch FROM bucket) * 1000000)::bigint, sum(calls) "
        "FROM rollup_attribution WHERE grain = 'h' AND bucket >= %s AND bucket < %s "
        "GROUP BY bucket",
        (from_epoch_us(lo), from_epoch_us(hi)),
    )
    counted = {int(hour): int(calls) for hour, calls in cur.fetchall()}
    whole = sorted(hour for hour, (calls, _) in held.items() if counted.get(hour) == calls)
    rest = sorted(counted.keys() - set(whole))
    ahead.from_memory += len(whole)
    ahead.from_events += len(rest)
    for hour in rest:
        _users_from_events(cur, hour, hour + rollups.HOUR_US)
    if not whole:
        return
    # Replaced whole, as _users_from_events does (a rebuild may have written them).
    cur.execute("DELETE FROM rollup_users WHERE grain = 'h' AND bucket = ANY(%s)",
                ([from_epoch_us(hour) for hour in whole],))  # fmt: skip
    rows = [row for hour in whole for row in held[hour][1]]
    with cur.copy(f"COPY rollup_users ({_USERS_COLUMNS}) FROM STDIN") as copy:
        copy.write(_rollup_copy_text(rows, len(rollups.SPECS["users"])))


def _users_from_events(cur: Any, lo: int, hi: int) -> None:
    """PostgreSQL: the ``users`` hour rows of the hours in ``[lo, hi)`` (epoch µs) from
    their events (see :data:`rollups.LAZY_USERS`), hash-grouped whatever the statistics
    say of the new hours."""
    from .schema import from_epoch_us

    # Not in a finally: after a failure the transaction is aborted (and rolled back).
    cur.execute("SET LOCAL enable_sort = off; SET LOCAL jit = off")
    cur.execute(rollups.users_from_events_sql(),
                {"lo": from_epoch_us(lo), "hi": from_epoch_us(hi)})  # fmt: skip
    cur.execute("RESET enable_sort; RESET jit")  # the compaction's other statements sort


def sum_overflowed(exc: Exception, dialect: str) -> bool:
    """Whether ``exc`` is SQLite's ``sum()`` passing 2**63 (money sums then go to Python:
    see :func:`_compact_in_python` and the query module)."""
    return dialect == "sqlite" and "integer overflow" in str(exc)


def _compact_in_python(cur: Any, spec: str, fine: str, coarse: str, lo: int, hi: int) -> None:
    """SQLite: :func:`rollups.compact_sql` in Python, for buckets whose ``cost_nano`` sum
    passes 2**63 (about $9.2e9), where SQLite's ``sum()`` stops: the same rows, with
    Python's integers and :func:`rollups.add`."""
    table = rollups.table_name(spec)
    keys = rollups.SPECS[spec]
    columns = rollups.measures(spec)
    width = rollups.HOUR_US if coarse == "h" else rollups.DAY_US
    cur.execute(
        f"SELECT bucket, {', '.join(keys)}, {', '.join(columns)} FROM {table} "
        "WHERE grain = ? AND bucket >= ? AND bucket < ?",
        (fine, lo, hi),
    )
    groups: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for bucket, *rest in cur.fetchall():
        key = (bucket - bucket % width, *rest[: len(keys)])
        found = tuple(rest[len(keys) :])
        groups[key] = found if key not in groups else rollups.add(groups[key], found)
    extra = 2 + len(keys) + rollups.COST + 2
    rows = [
        _extra_as_text((coarse, *key, *rollups.capped(found)), extra)
        for key, found in sorted(groups.items())
    ]
    names = ("grain", "bucket", *keys, *columns)
    cur.executemany(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
        f"ON CONFLICT (grain, bucket, {', '.join(keys)}) DO UPDATE SET "
        + ", ".join(f"{m} = excluded.{m}" for m in columns),
        rows,
    )


def _extra_as_text(row: tuple[Any, ...], at: int) -> tuple[Any, ...]:
    """SQLite: ``row`` with its ``cost_extra`` (at ``at``) as decimal text (NULL stays)."""
    if row[at] is None:
        return row
    return (*row[:at], str(row[at]), *row[at + 1 :])


def _compact_members(cur: Any, dialect: str, fine: str, coarse: str, lo: int, hi: int) -> None:
    """The ``coarse`` bitmaps of ``[lo, hi)`` as unions of their ``fine`` ones (replaced)."""
    from .schema import from_epoch_us, to_epoch_us

    sqlite = dialect == "sqlite"
    mark = "?" if sqlite else "%s"
    width = rollups.HOUR_US if coarse == "h" else rollups.DAY_US
    cur.execute(
        "SELECT bucket, kind, name, members FROM rollup_members "
        f"WHERE grain = {mark} AND bucket >= {mark} AND bucket < {mark}",
        (fine, lo, hi) if sqlite else (fine, from_epoch_us(lo), from_epoch_us(hi)),
    )
    unions: dict[tuple[Any, ...], int] = {}
    for bucket, kind, name, blob in cur.fetchall():
        at = bucket if sqlite else to_epoch_us(bucket)
        key = (at - at % width, kind, name)
        unions[key] = unions.get(key, 0) | int.from_bytes(bytes(blob), "little")
    rows = [
        (coarse, at if sqlite else from_epoch_us(at), kind, name, _bitmap(bits))
        for (at, kind, name), bits in sorted(unions.items())
    ]  # fmt: skip
    if rows:
        cur.executemany(
            "INSERT INTO rollup_members (grain, bucket, kind, name, members) "
            f"VALUES ({', '.join([mark] * 5)}) "
            "ON CONFLICT (grain, bucket, kind, name) DO UPDATE SET members = excluded.members",
            rows,
        )


def _write_marks(cur: Any, dialect: str, marks: rollups.Marks) -> None:
    mark = "?" if dialect == "sqlite" else "%s"
    # An upsert: a store whose mark rows were deleted (a hand-made TRUNCATE) gets them back,
    # instead of compacting everything since 1970 on every later write.
    for grain, upto in (("c", marks.totals), ("d", marks.day), ("h", marks.hour)):
        cur.execute(
            f"INSERT INTO rollup_marks (grain, upto) VALUES ({mark}, {mark}) "
            "ON CONFLICT (grain) DO UPDATE SET upto = excluded.upto",
            (grain, upto),
        )


_TOTALS: Final = rollups.MEASURES[: rollups.HIST]  # the users rollup's measures


def _build_user_totals(
    cur: Any, dialect: str, lo: int, hi: int, *, chunk_rows: int = 50_000
) -> None:
    """Bring the running totals per (user, kind) from ``lo`` to ``hi`` (hour bounds): each
    pair's totals as of ``lo`` plus its ``users`` hour rows in ``[lo, hi)``, one totals row
    per pair and hour it was active (replacing any row already there).

    On PostgreSQL one statement on the server (:func:`rollups.user_totals_sql`); on SQLite
    here, reading the hour rows ``chunk_rows`` at a time (a rebuild after a backfill, or of
    a whole database, holds one chunk and one running total per pair, not every row)."""
    if dialect != "sqlite":
        from .schema import from_epoch_us

        cur.execute(rollups.user_totals_sql(one_hour=hi - lo == rollups.HOUR_US),
                    {"lo": from_epoch_us(lo), "hi": from_epoch_us(hi)})  # fmt: skip
        return
    columns = ", ".join(_TOTALS)
    rows_of = "rollup_users WHERE grain = 'h' AND bucket >= ? AND bucket < ?"
    cur.execute(
        f"SELECT t.user_id, t.kind, {', '.join(f't.{m}' for m in _TOTALS)} "
        f"FROM (SELECT DISTINCT user_id, kind FROM {rows_of}) p JOIN rollup_user_totals t "
        "ON t.user_id = p.user_id AND t.kind = p.kind AND t.bucket = (SELECT max(x.bucket) "
        "FROM rollup_user_totals x WHERE x.user_id = p.user_id AND x.kind = p.kind "
        "AND x.bucket < ?)",
        (lo, hi, lo),
    )
    running: dict[tuple[str, str], tuple[Any, ...]] = {
        (user, kind): tuple(m) for user, kind, *m in cur.fetchall()
    }
    extra = rollups.COST + 2
    values = ", ".join(["?"] * (3 + len(_TOTALS)))
    # A row already at a (pair, hour) of [lo, hi) is an older build's (the mark moved back
    # for late events): replaced. None lies beyond: rows are built up to the mark only.
    upsert = (
        f"INSERT INTO rollup_user_totals (user_id, kind, bucket, {columns}) VALUES ({values}) "
        "ON CONFLICT (user_id, kind, bucket) DO UPDATE SET "
        + ", ".join(f"{m} = excluded.{m}" for m in _TOTALS)
    )
    reader = cur.connection.cursor()
    try:
        reader.execute(f"SELECT user_id, kind, bucket, {columns} FROM {rows_of} "
                       "ORDER BY user_id, kind, bucket", (lo, hi))  # fmt: skip
        while chunk := reader.fetchmany(chunk_rows):
            rows = []
            for user, kind, bucket, *measures in chunk:
                before = running.get((user, kind))
                total = tuple(measures) if before is None else rollups.add(before, tuple(measures))
                running[(user, kind)] = total
                rows.append(_extra_as_text((user, kind, bucket, *total), 3 + extra))
            cur.executemany(upsert, rows)
    finally:
        reader.close()


def rebuild_rollups_on(
    raw: Any, dialect: str, *, chunk: int = 50_000, skip: frozenset[str] | None = None
) -> int:
    """Empty the rollups and refold every stored event, on ``raw`` in its open transaction
    (on PostgreSQL, with :data:`BITMAP_OR_SQL` run first: migrations older than the one
    that creates the function rebuild rollups too)."""
    wanted = {4, 5, 6, 7, 8, 9, 10, 11, 13, 16, 17, 18, 19, 20, 21, 22, 24}
    columns = ", ".join(name if i in wanted else "NULL" for i, name in enumerate(ROW_FIELDS[:25]))
    cur = raw.cursor()
    total = 0
    try:
        if dialect != "sqlite":
            cur.execute(BITMAP_OR_SQL)
        for spec in rollups.SPECS:
            cur.execute(f"DELETE FROM {rollups.table_name(spec)}")
        cur.execute("DELETE FROM rollup_members")
        numbers = _Numbers({}, dialect)
        reader = raw.cursor(name="agentledger_rebuild") if dialect != "sqlite" else raw.cursor()
        try:
            reader.execute(f"SELECT {columns} FROM events")
            while batch := reader.fetchmany(chunk):
                if dialect != "sqlite":
                    batch = [rollups.store_ready(r) for r in batch]
                _upsert_rollups(cur, batch, dialect, numbers, again=total > 0, skip=skip)
                total += len(batch)
        finally:
            reader.close()
    finally:
        cur.close()
        _forget_stages(raw, dialect)  # its transaction may yet roll back (a migration's, say)
    return total


class _Numbers:
    """What one write transaction hands to the store only once it has committed: the user
    numbers given out (besides the committed cache), and the batch's ``users`` groups for
    the store's :class:`rollups.UsersAhead`; and the rollup marks it wrote under."""

    def __init__(
        self, cache: dict[str, int], dialect: str, ahead: rollups.UsersAhead | None = None
    ) -> None:
        self.cache = cache
        self.new: dict[str, int] = {}
        self.mark = "?" if dialect == "sqlite" else "%s"
        self.sqlite = dialect == "sqlite"
        #: The rollup marks the transaction wrote under (None: rollups not maintained).
        self.marks: rollups.Marks | None = None
        #: The store's open hours' users groups, and this transaction's batch of them with
        #: its hour mark (handed over when the transaction has committed).
        self.ahead = ahead
        self.users: tuple[dict[tuple[Any, ...], tuple[Any, ...]], int] | None = None

    def get(self, cur: Any, users: set[str]) -> dict[str, int]:
        missing = [u for u in users if u not in self.cache and u not in self.new]
        if missing:
            insert = (
                "INSERT OR IGNORE INTO user_numbers (user_id) VALUES (?)"
                if self.sqlite
                else "INSERT INTO user_numbers (user_id) VALUES (%s) ON CONFLICT DO NOTHING"
            )
            cur.executemany(insert, [(u,) for u in sorted(missing)])
            for i in range(0, len(missing), 500):
                chunk = missing[i : i + 500]
                cur.execute(
                    "SELECT user_id, n FROM user_numbers WHERE user_id IN "
                    f"({', '.join([self.mark] * len(chunk))})",
                    chunk,
                )
                self.new.update((u, int(n)) for u, n in cur.fetchall())
        return {u: self.cache[u] if u in self.cache else self.new[u] for u in users}

    def knows(self, groups: Iterable[set[str]]) -> bool:
        """Whether every user in ``groups`` has a number already (no database needed)."""
        cache, new = self.cache, self.new
        return all(u in cache or u in new for users in groups for u in users)

    def commit(self) -> None:
        self.cache.update(self.new)
        self.new = {}
        if self.ahead is not None and self.users is not None:
            self.ahead.add(*self.users)
        self.users = None


def _member_bits(
    cur: Any,
    minutes: dict[tuple[Any, ...], set[str]],
    numbers: _Numbers,
    marks: rollups.Marks | None = None,
) -> tuple[list[tuple[Any, ...]], dict[tuple[Any, ...], int]]:
    """The users of a batch (``minutes``: ``("m", minute, kind, name)`` -> user ids, see
    :func:`rollups.group`) as bits to OR into the minute, hour and day bitmaps of their
    (kind, name): the bitmaps' keys in order, and each key's bits. A distinct-user count
    over any range reads bitmaps down to its partial minutes. Hour and day bitmaps only
    below ``marks`` (compaction builds the others)."""
    if not minutes:
        return [], {}
    number = numbers.get(cur, set().union(*minutes.values()))
    shift = (1).__lshift__
    # Distinct powers of two: their sum is their OR, computed in C.
    groups = {key: sum(map(shift, [number[u] for u in users])) for key, users in minutes.items()}
    hour_mark, day_mark = (None, None) if marks is None else (marks.hour, marks.day)
    for grain, width, below in (("h", rollups.HOUR_US, hour_mark), ("d", rollups.DAY_US, day_mark)):
        finer = "m" if grain == "h" else "h"
        for (g, bucket, kind, name), bits in list(groups.items()):  # unions of finer ones
            if g == finer and (below is None or bucket < below):
                wide = (grain, bucket - bucket % width, kind, name)
                groups[wide] = groups.get(wide, 0) | bits
    return sorted(groups), groups  # one order for every writer: no deadlocks between them


def _or_members_sqlite(
    cur: Any, keys: list[tuple[Any, ...]], groups: dict[tuple[Any, ...], int]
) -> None:
    """SQLite: OR ``groups`` (see :func:`_member_bits`) into the stored bitmaps (one writer
    at a time: read, OR in Python, write back)."""
    columns = "grain, bucket, kind, name"
    existing: dict[tuple[Any, ...], int] = {}
    for chunk in _chunks(keys, 2_000):
        cur.execute(
            f"SELECT {columns}, members FROM rollup_members WHERE ({columns}) IN "
            f"(VALUES {_values(len(chunk), 4, '?')})",
            [v for a in chunk for v in a],
        )
        for grain, bucket, kind, name, blob in cur.fetchall():
            existing[(grain, bucket, kind, name)] = int.from_bytes(blob, "little")
    rows = [(*key, _bitmap(existing.get(key, 0) | groups[key])) for key in keys]
    cur.executemany(
        f"INSERT INTO rollup_members ({columns}, members) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (grain, bucket, kind, name) DO UPDATE SET members = excluded.members",
        rows,
    )


#: PostgreSQL's ``agentledger_bitmap_or(a, b)`` (migration 0011): two member bitmaps (bit n
#: is bit n % 8 of byte n // 8) ORed, as hex padded with zero bytes to the longer one's
#: length, cast to bit strings; ``varbit_send`` gives a 4-byte bit count, then the bytes.
BITMAP_OR_SQL: Final = """
CREATE OR REPLACE FUNCTION agentledger_bitmap_or(a bytea, b bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT substring(varbit_send(
    ('x' || rpad(encode(a, 'hex'), 2 * greatest(length(a), length(b)), '0'))::varbit
    | ('x' || rpad(encode(b, 'hex'), 2 * greatest(length(a), length(b)), '0'))::varbit
  ) FROM 5)
$$
"""


def _members_params(
    keys: list[tuple[Any, ...]], groups: dict[tuple[Any, ...], int]
) -> list[Any] | None:
    """PostgreSQL: the parameters of :func:`_or_members_postgres` for the bitmaps of
    :func:`_member_bits` (None: no bitmaps)."""
    from .schema import from_epoch_us

    if not keys:
        return None
    grains, buckets, kinds, names = (list(c) for c in zip(*keys, strict=True))
    return [grains, [from_epoch_us(b) for b in buckets], kinds, names,
            [_bitmap(groups[k]) for k in keys]]  # fmt: skip


def _or_members_postgres(cur: Any, params: list[Any]) -> None:
    """PostgreSQL: one upsert, in key order (concurrent writers lock rows in one order),
    ORing the new bits into a stored bitmap with ``agentledger_bitmap_or`` (migration
    0011) on the locked row, so concurrent writers' bits add up. Keys travel as arrays: a
    statement of constant text, whatever the number of rows (psycopg parses a long VALUES
    list anew)."""
    cur.execute(
        "INSERT INTO rollup_members (grain, bucket, kind, name, members) "
        "SELECT * FROM unnest(%b::text[], %b::timestamptz[], %b::text[], %b::text[], "
        "%b::bytea[]) ORDER BY 1, 2, 3, 4 ON CONFLICT (grain, bucket, kind, name) "
        "DO UPDATE SET members = agentledger_bitmap_or(rollup_members.members, excluded.members)",
        params,
    )


def _bitmap(bits: int) -> bytes:
    return bits.to_bytes((bits.bit_length() + 7) // 8, "little")


def _values(rows: int, columns: int, mark: str) -> str:
    """``(?, ?), (?, ?)``: the placeholders of a multi-row VALUES list."""
    row = f"({', '.join([mark] * columns)})"
    return ", ".join([row] * rows)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _sqlite_params(row: tuple[Any, ...]) -> tuple[Any, ...]:
    values = list(row)
    values[4] = rollups.epoch_us(values[4])
    cost = values[21]
    if cost is not None:
        values[21] = str(cost)
    return tuple(values)


def _write_postgres(
    raw: Any, rows: Sequence[tuple[Any, ...]], numbers: _Numbers, with_rollups: bool = True
) -> int:
    with raw.cursor() as cur:
        # A compaction holds the marks FOR UPDATE: a writer never adds only finest rows for
        # a bucket that a running compaction has already summed.
        marks = numbers.marks = _read_marks(cur, "postgresql") if with_rollups else None
        if len(rows) < _COPY_MIN_ROWS:
            # One multi-row INSERT .. RETURNING: it says which ids were new.
            params = [_pg_params(r) for r in rows]
            values = ", ".join([f"({', '.join(['%s'] * len(ROW_FIELDS))})"] * len(params))
            cur.execute(
                f"INSERT INTO events ({_COLS}) VALUES {values} "
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                [v for p in params for v in p],
            )
            new = {r[0] for r in cur.fetchall()}
            _upsert_rollups(cur, [r for r in rows if r[0] in new], "postgresql", numbers,
                            with_rollups, marks, raw=True)  # fmt: skip
            return len(new)
        # Fast path: COPY straight into events. A replayed batch (an id already stored)
        # makes it fail as a whole; then roll back to the savepoint and take the slower
        # idempotent path below.
        from psycopg.copy import LibpqWriter
        from psycopg.errors import UniqueViolation

        cur.execute("SAVEPOINT agentledger_copy")
        prepared = None
        try:
            # Every block of events flushed to the server as it is written, so that the
            # server inserts them while this thread makes the batch's rollup rows (the
            # client's share of the rollups then costs the writer no wall time).
            with cur.copy(f"COPY events ({_COLS}) FROM STDIN",
                          writer=LibpqWriter(cur, flush_threshold=0)) as copy:  # fmt: skip
                _copy_events(copy, rows)
                if with_rollups:
                    prepared = _prepare(rows, "postgresql", marks, raw=True, numbers=numbers)
        except UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT agentledger_copy")
        else:
            cur.execute("RELEASE SAVEPOINT agentledger_copy")
            _upsert_rollups(
                cur, rows, "postgresql", numbers, with_rollups, marks, raw=True, prepared=prepared
            )
            return len(rows)
        # Dropped at commit (replays are rare): kept, as an ON COMMIT DELETE ROWS table it
        # would be emptied by every later commit of the session (see _STAGED).
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS agentledger_stage "
            "(LIKE events INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with cur.copy(f"COPY agentledger_stage ({_COLS}) FROM STDIN") as copy:
            _copy_events(copy, rows)
        cur.execute(
            f"INSERT INTO events ({_COLS}) SELECT {_COLS} FROM agentledger_stage "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        )
        new = {r[0] for r in cur.fetchall()}
        _upsert_rollups(cur, [r for r in rows if r[0] in new], "postgresql", numbers,
                        with_rollups, marks, raw=True)  # fmt: skip
        return len(new)


_EVENTS_COPY_C: Final = rollups.compiled("events_copy_text")


def _copy_events(copy: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """``rows`` into a ``COPY .. FROM STDIN``: as text formatted in C where the compiled
    part is built, else, and for rows it does not take (a datetime start, say), row by row
    through psycopg. The writer's CPU per event without rollups: 4.4-5.4 µs row by row,
    1.3 µs in C (the server's share, ~11 µs, is the same either way)."""
    if _EVENTS_COPY_C is not None:
        try:
            text = _EVENTS_COPY_C(rows if type(rows) is list else list(rows))
        except (TypeError, ValueError):
            pass
        else:
            copy.write(text)
            return
    for row in rows:
        copy.write_row(_pg_params(row))


def _pg_params(row: tuple[Any, ...]) -> tuple[Any, ...]:
    values = list(row)
    started = values[4]
    if not isinstance(started, datetime):
        values[4] = datetime.fromtimestamp(started, UTC)
    return tuple(values)


_JSON_FIELDS: Final = (ROW_FIELDS.index("tags"), ROW_FIELDS.index("metadata"))


def _is_text_error(exc: Exception) -> bool:
    """Whether ``exc`` may come from text the database cannot store."""
    if isinstance(exc, UnicodeEncodeError):
        return True
    try:
        from psycopg import DataError
    except ImportError:  # SQLite without psycopg installed
        return False
    return isinstance(exc, DataError)


class _Cleaned(list[tuple[Any, ...]]):
    """Rows, and how many of them were changed."""

    changed: int = 0


def _storable(rows: Sequence[tuple[Any, ...]], dialect: str) -> _Cleaned | None:
    """``rows`` with what the database cannot store in a string field (or in a string of
    the tags' or metadata's JSON, keys too) replaced by U+FFFD: lone surrogates, and on
    PostgreSQL NUL characters; None if no row holds any."""
    nul = dialect != "sqlite"
    out = _Cleaned()
    for row in rows:
        fixed = list(row)
        for i, value in enumerate(row):
            if type(value) is not str:
                continue
            if i in _JSON_FIELDS:
                if (nul and "\\u0000" in value) or not _encodable(value):
                    from ..events import _ENCODER

                    fixed[i] = _ENCODER.encode(_fixed_json(json.loads(value), nul))
            else:
                fixed[i] = _fixed_text(value, nul)
        if fixed != list(row):
            out.changed += 1
        out.append(tuple(fixed))
    return out if out.changed else None


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fixed_text(value: str, nul: bool) -> str:
    if nul and "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if _encodable(value):
        return value
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)


def _fixed_json(value: Any, nul: bool) -> Any:
    """A JSON value with :func:`_fixed_text` applied to its strings (keys too)."""
    if isinstance(value, str):
        return _fixed_text(value, nul)
    if isinstance(value, list):
        return [_fixed_json(v, nul) for v in value]
    if isinstance(value, dict):
        return {_fixed_json(k, nul): _fixed_json(v, nul) for k, v in value.items()}
    return value


def _is_missing_table(exc: Exception) -> bool:
    message = str(exc).lower()
    return "no such table" in message or "does not exist" in message or "undefined" in message


def _store_error(exc: SQLAlchemyError, url: str) -> StoreError:
    safe = _redact(url)
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    if isinstance(exc, OperationalError):
        return StoreUnavailable(f"{safe}: {detail}")
    return StoreError(f"{safe}: {detail}")


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
