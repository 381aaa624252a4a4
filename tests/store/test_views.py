"""The seed-compatible views answer the seeds' own SQL (seed 004 on SQLite, and both seeds'
column sets on SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest
from sqlalchemy import text

from agentledger import Ledger
from agentledger.store.sql import SQLStore


def _fill(url: str) -> Ledger:
    ledger = Ledger(url, handle_signals=False, strict=True)
    for i in range(6):
        ledger.record_llm(
            "gpt-4o", 1000 + i, 200, user_id=f"user{i % 2}", tenant_id="42", task_id="t1",
            duration_ms=100.0 * i,
        )  # fmt: skip
    ledger.record_tool("get_positions", duration_ms=234.0, user_id="user0", tenant_id="42")
    ledger.record_tool("scan", user_id="user1", status="error", error_message="timeout")
    ledger.record_tool("scan", user_id="user1", status="error", error_message="boom")
    ledger.record_tool("analyze", kind="command", user_id="user0", tenant_id="42")
    ledger.record_tool("analyze", kind="command", user_id="user1", tenant_id="42",
                       status="error", error_message="bad input")  # fmt: skip
    assert ledger.flush()
    return ledger


SEED_004_QUERIES = {
    "total_cost_this_month": """
        SELECT SUM(estimated_cost_usd) as total_cost
        FROM metrics
        WHERE event_type = 'llm'
          AND timestamp >= date('now', 'start of month');""",
    "most_expensive_users": """
        SELECT username, SUM(estimated_cost_usd) as total_cost
        FROM metrics
        WHERE event_type = 'llm'
        GROUP BY username
        ORDER BY total_cost DESC
        LIMIT 10;""",
    "command_usage_by_guild": """
        SELECT guild_id, name, COUNT(*) as uses
        FROM metrics
        WHERE event_type = 'command'
          AND timestamp >= datetime('now', '-7 days')
        GROUP BY guild_id, name
        ORDER BY uses DESC;""",
    "mcp_response_times": """
        SELECT name, AVG(response_time_ms) as avg_time, COUNT(*) as calls
        FROM metrics
        WHERE event_type = 'mcp'
        GROUP BY name
        ORDER BY avg_time DESC;""",
    "failed_commands": """
        SELECT name, COUNT(*) as failures,
               GROUP_CONCAT(DISTINCT error_message) as errors
        FROM metrics
        WHERE event_type = 'command' AND success = 0
        GROUP BY name
        ORDER BY failures DESC;""",
}


def test_seed_004_example_queries_run_unchanged(sqlite_url: str) -> None:
    """Each example query of seed 004 runs on the view and gives the expected answer."""
    ledger = _fill(sqlite_url)
    assert ledger.store is not None
    events = ledger.store.events()
    llm_cost = sum((e.cost_usd or Decimal(0)) for e in events if e.kind == "llm")
    ledger.close()
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    got = {name: conn.execute(sql).fetchall() for name, sql in SEED_004_QUERIES.items()}
    conn.close()
    assert got["total_cost_this_month"][0][0] == pytest.approx(float(llm_cost))
    assert {row[0] for row in got["most_expensive_users"]} == {"user0", "user1"}
    assert got["command_usage_by_guild"] == [("42", "analyze", 2)]
    assert {n: c for n, _, c in got["mcp_response_times"]} == {"get_positions": 1, "scan": 2}
    assert got["failed_commands"] == [("analyze", 1, "bad input")]


def test_views_have_the_seeds_columns(db_url: str) -> None:
    """metrics has seed 004's columns; llm_usage and task_metrics have seed 001's."""
    ledger = _fill(db_url)
    ledger.close()
    store = SQLStore(db_url)
    with store.engine.connect() as conn:
        columns = {
            view: list(conn.execute(text(f"SELECT * FROM {view} LIMIT 1")).keys())
            for view in ("metrics", "llm_usage", "task_metrics")
        }
        llm = conn.execute(
            text("SELECT prompt_tokens, completion_tokens, total_tokens, status FROM llm_usage")
        ).fetchall()
        metrics = conn.execute(text("SELECT COUNT(*) FROM metrics")).scalar()
    store.close()
    assert columns["metrics"][:13] == [
        "id", "timestamp", "event_type", "username", "guild_id", "name", "success",
        "error_message", "response_time_ms", "tokens", "estimated_cost_usd", "metadata",
        "parent_id",
    ]  # fmt: skip
    assert columns["llm_usage"][:12] == [
        "id", "task_id", "user_id", "model", "prompt_tokens", "completion_tokens",
        "total_tokens", "cost_usd", "latency_ms", "status", "error_message", "timestamp",
    ]  # fmt: skip
    assert columns["task_metrics"] == ["id", "task_id", "metric_name", "metric_value", "timestamp"]
    assert sorted(llm) == sorted((1000 + i, 200, 1200 + i, "success") for i in range(6))
    assert metrics == 11
