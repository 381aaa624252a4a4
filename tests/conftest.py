"""Shared fixtures: a fresh SQLite file, or a fresh PostgreSQL database, per test.

PostgreSQL tests use ``AGENTLEDGER_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``) to create a throwaway database per test, and
skip with a visible reason when no server answers. In CI (``CI=true``) an unreachable
server is a failure, not a skip: CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

import agentledger.metrics
from agentledger import _default

PG_ADMIN_URL = os.environ.get(
    "AGENTLEDGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _pg_admin() -> object:
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)


def _pg_available() -> str | None:
    try:
        conn = _pg_admin()
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
    conn.close()  # type: ignore[attr-defined]
    return None


_PG_PROBLEM = _pg_available()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    """A SQLite file URL in a fresh temporary directory."""
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped after the test."""
    if _PG_PROBLEM is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run PostgreSQL tests: {_PG_PROBLEM}")
        pytest.skip(_PG_PROBLEM)
    name = f"agentledger_t_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        from sqlalchemy import create_engine  # noqa: F401 - engines are disposed by tests

        admin.execute(  # type: ignore[attr-defined]
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each store test runs once on SQLite and once on the real PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[None]:
    """No test touches the user's real default database or leaks global state."""
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    monkeypatch.delenv("AGENTLEDGER_URL", raising=False)
    agentledger.metrics.reset_metrics()
    agentledger.metrics.bind(None)
    agentledger.metrics.set_strict(False)
    yield
    _default._reset_default()
    agentledger.metrics.bind(None)
