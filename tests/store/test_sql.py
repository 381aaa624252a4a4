"""SQLStore on SQLite and on the real PostgreSQL: exact round trips, idempotency, schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

import agentledger.store.sql as sql_module
from agentledger import ConfigError, Event
from agentledger.store.schema import events as events_table
from agentledger.store.schema import metadata as schema_metadata
from agentledger.store.sql import HEAD_REVISION, SQLStore, normalize_url

MIGRATIONS = Path(sql_module.__file__).with_name("migrations")
T0 = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)


def make_event(i: int = 0, **overrides: object) -> Event:
    fields: dict[str, object] = {
        "event_id": str(uuid.uuid4()),
        "trace_id": uuid.uuid4().hex,
        "span_id": uuid.uuid4().hex[:16],
        "parent_id": None,
        "started_at": T0 + timedelta(microseconds=i),
        "duration_ms": 12.5,
        "kind": "llm",
        "name": "gpt-4o",
        "provider": "openai",
        "model": "gpt-4o",
        "bot_id": f"bot-{i % 3}",
        "input_tokens": 100 + i,
        "output_tokens": 50,
        "cost_usd": Decimal("0.000125") * (i + 1),
        "cost_source": "reported",
    }
    fields.update(overrides)
    return Event(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(db_url: str) -> Iterator[SQLStore]:
    s = SQLStore(db_url)
    try:
        yield s
    finally:
        s.close()


def _by_id(store: SQLStore) -> dict[str, Event]:
    return {e.event_id: e for e in store.events()}


# --- round trip --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(
            make_event(
                parent_id="p" * 16,
                user_id="u-42",
                task_id="task-7",
                tenant_id="acme",
                session_id="s-1",
                tags={"env": "prod", "région": "eu-west"},
                cache_read_tokens=40,
                cache_write_tokens=10,
                reasoning_tokens=20,
                cost_usd=Decimal("0.000000123456789012345678901234"),
                cost_source="priced",
                price_version="2026-11-01",
                status="error",
                error_type="RateLimitError",
                error_message="slow down ✋ \n second line",
                metadata={"attempt": 3, "nested": {"ok": True, "xs": [1, "two", None]}},
            ),
            id="every-field-set",
        ),
        pytest.param(
            make_event(
                provider=None,
                model=None,
                bot_id=None,
                cost_usd=None,
                cost_source="unpriced",
                kind="tool",
                name="search",
            ),
            id="none-fields",
        ),
        pytest.param(make_event(cost_usd=Decimal("1.50000")), id="decimal-trailing-zeros"),
        pytest.param(
            make_event(started_at=datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
            id="microsecond-before-2000",
        ),
    ],
)
def test_round_trip_preserves_every_field(store: SQLStore, event: Event) -> None:
    """An event written and read back is equal field by field, cost digits included."""
    assert store.write([event.to_row()]) == 1
    (back,) = store.events()
    assert back == event
    assert str(back.cost_usd) == str(event.cost_usd)
    assert back.started_at.utcoffset() == timedelta(0)
    assert back.started_at.microsecond == event.started_at.microsecond
    assert type(back.cost_usd) is type(event.cost_usd)


def test_round_trip_accepts_ledger_rows_with_float_epoch(store: SQLStore) -> None:
    """Ledger rows carry started_at as float epoch seconds; they store at microsecond precision."""
    row = list(make_event().to_row())
    row[4] = T0.timestamp()
    store.write([tuple(row)])
    (back,) = store.events()
    assert back.started_at == T0


# --- idempotency -------------------------------------------------------------------------

BATCH_SIZES = [
    pytest.param(10, id="executemany-path"),
    pytest.param(sql_module._COPY_MIN_ROWS + 10, id="copy-path"),
]


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_write_returns_rows_inserted(store: SQLStore, n: int) -> None:
    """A fresh batch (below or above the PostgreSQL COPY threshold) inserts every row."""
    rows = [make_event(i).to_row() for i in range(n)]
    assert store.write(rows) == n
    assert store.count() == n
    assert set(_by_id(store)) == {r[0] for r in rows}


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_replayed_batch_inserts_nothing(store: SQLStore, n: int) -> None:
    """Writing the same batch twice inserts nothing the second time and reports 0."""
    rows = [make_event(i).to_row() for i in range(n)]
    store.write(rows)
    before = store.events()
    assert store.write(rows) == 0
    assert store.count() == n
    assert store.events() == before
    if store.dialect == "postgresql":  # the replay's stage table is gone with its commit
        with store.engine.connect() as conn:
            stages = "SELECT count(*) FROM pg_class WHERE relname = 'agentledger_stage'"
            assert conn.exec_driver_sql(stages).scalar() == 0
    assert store.write(rows) == 0  # (made again when needed)


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_mixed_batch_inserts_only_new_rows(store: SQLStore, n: int) -> None:
    """A batch mixing stored and new event ids inserts (and reports) only the new ones."""
    old = [make_event(i).to_row() for i in range(n)]
    store.write(old)
    new = [make_event(n + i).to_row() for i in range(n)]
    mixed = [r for pair in zip(old, new, strict=True) for r in pair]
    assert store.write(mixed) == n
    assert store.count() == 2 * n
    assert set(_by_id(store)) == {r[0] for r in old + new}


def test_duplicate_ids_within_one_batch_keep_the_first(store: SQLStore) -> None:
    """Two rows with one event id in the same batch store one row."""
    event = make_event()
    clash = make_event(event_id=event.event_id, name="other")
    store.write([event.to_row(), clash.to_row()])
    assert store.count() == 1


def test_count_of_empty_store_is_zero(store: SQLStore) -> None:
    """count() is 0 on a freshly migrated database and writing nothing is a no-op."""
    assert store.count() == 0
    assert store.write([]) == 0
    assert store.count() == 0


def test_events_limit_returns_oldest_first(store: SQLStore) -> None:
    """events(limit=k) returns the k oldest events in time order."""
    rows = [make_event(i).to_row() for i in range(5)]
    store.write(list(reversed(rows)))
    got = store.events(limit=3)
    assert [e.event_id for e in got] == [r[0] for r in rows[:3]]


# --- schema and migrations ---------------------------------------------------------------


def test_migrate_twice_is_harmless(store: SQLStore, db_url: str) -> None:
    """migrate() on an up-to-date schema changes nothing and the revision is HEAD_REVISION."""
    store.write([make_event().to_row()])
    store.migrate()
    store.migrate()
    again = SQLStore(db_url)
    try:
        assert again.revision() == HEAD_REVISION
        assert again.count() == 1
    finally:
        again.close()
    assert store.revision() == HEAD_REVISION


def test_unmigrated_database_has_no_revision(db_url: str) -> None:
    """A store opened with migrate=False on an empty database reports revision None."""
    s = SQLStore(db_url, migrate=False)
    try:
        assert s.revision() is None
        s.migrate()
        assert s.revision() == HEAD_REVISION
    finally:
        s.close()


def test_head_revision_matches_migration_scripts() -> None:
    """HEAD_REVISION is the single head of the Alembic scripts shipped in the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    assert script.get_heads() == [HEAD_REVISION]


def test_migrated_schema_matches_declared_tables(store: SQLStore) -> None:
    """Autogenerate finds no difference between the migrated database and schema.py."""
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, schema_metadata)
    assert diff == []


# --- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("postgres://u@h/db", "postgresql+psycopg://u@h/db", id="postgres"),
        pytest.param("postgresql://u:p@h:5/db", "postgresql+psycopg://u:p@h:5/db", id="postgresql"),
        pytest.param(
            "postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db", id="already-psycopg"
        ),
        pytest.param("  sqlite:///x.db ", "sqlite:///x.db", id="sqlite-stripped"),
        pytest.param("sqlite://", "sqlite://", id="sqlite-memory"),
    ],
)
def test_normalize_url_accepts(url: str, expected: str) -> None:
    """Supported URLs normalise to their SQLAlchemy form (psycopg 3 for PostgreSQL)."""
    assert normalize_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("mysql://u@h/db", id="mysql"),
        pytest.param("http://example.com/", id="http"),
        pytest.param("not a url", id="garbage"),
        pytest.param("::::", id="colons"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param(None, id="none"),
        pytest.param(42, id="int"),
    ],
)
def test_normalize_url_rejects_with_one_line_config_error(url: object) -> None:
    """Unsupported schemes and garbage raise ConfigError with a one-line message."""
    with pytest.raises(ConfigError) as info:
        normalize_url(url)  # type: ignore[arg-type]
    message = str(info.value)
    assert message
    assert "\n" not in message


def test_sqlstore_rejects_bad_url_before_connecting() -> None:
    """SQLStore(url) with an unsupported scheme raises ConfigError."""
    with pytest.raises(ConfigError):
        SQLStore("mysql://u@h/db")


# --- property: event -> store -> event ---------------------------------------------------


@pytest.fixture(scope="module")
def shared_sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLStore]:
    s = SQLStore(f"sqlite:///{tmp_path_factory.mktemp('hyp')}/ledger.db")
    try:
        yield s
    finally:
        s.close()


_label = st.text(min_size=1, max_size=40)
_opt_label = st.none() | _label
_tokens = st.integers(min_value=0, max_value=10**12)
_costs = st.none() | st.builds(
    lambda digits, exp: Decimal(digits).scaleb(-exp),
    st.integers(min_value=0, max_value=10**28 - 1),
    st.integers(min_value=21, max_value=40),
)
_json_scalar = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=30)
_metadata = st.dictionaries(
    st.text(max_size=20),
    _json_scalar | st.lists(_json_scalar, max_size=3),
    max_size=4,
)


@st.composite
def events_strategy(draw: st.DrawFn) -> Event:
    cost = draw(_costs)
    return Event(
        event_id=str(uuid.uuid4()),
        trace_id=draw(st.text(min_size=1, max_size=64)),
        span_id=draw(st.text(min_size=1, max_size=64)),
        parent_id=draw(st.none() | st.text(min_size=1, max_size=64)),
        started_at=draw(
            st.datetimes(
                min_value=datetime(1970, 1, 2),
                max_value=datetime(2200, 1, 1),
                timezones=st.just(UTC),
            )
        ),
        duration_ms=draw(st.floats(min_value=0, max_value=1e10, allow_nan=False)),
        kind=draw(st.sampled_from(["llm", "tool", "retrieval", "handoff", "command", "error"])),
        name=draw(_label),
        provider=draw(_opt_label),
        model=draw(_opt_label),
        bot_id=draw(_opt_label),
        user_id=draw(_opt_label),
        task_id=draw(_opt_label),
        tenant_id=draw(_opt_label),
        session_id=draw(_opt_label),
        tags=draw(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=40))),
        input_tokens=draw(_tokens),
        output_tokens=draw(_tokens),
        cache_read_tokens=draw(_tokens),
        cache_write_tokens=draw(_tokens),
        reasoning_tokens=draw(_tokens),
        cost_usd=cost,
        cost_source="unpriced" if cost is None else draw(st.sampled_from(["priced", "reported"])),
        price_version=draw(_opt_label),
        status=draw(st.sampled_from(["ok", "error"])),
        error_type=draw(_opt_label),
        error_message=draw(st.none() | st.text(max_size=200)),
        metadata=draw(_metadata),
    )


@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(event=events_strategy())
def test_property_sqlite_round_trip_is_exact(shared_sqlite_store: SQLStore, event: Event) -> None:
    """Any valid event (unicode text, many-digit Decimal cost) reads back from SQLite equal."""
    store = shared_sqlite_store
    with store.engine.begin() as conn:
        conn.execute(delete(events_table))
    assert store.write([event.to_row()]) == 1
    assert store.write([event.to_row()]) == 0
    (back,) = store.events()
    assert back == event
    assert str(back.cost_usd) == str(event.cost_usd)
