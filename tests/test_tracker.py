"""Seed 004's MetricsTracker: the seed's flow, parent links, reports, bad input."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agentledger import Ledger
from agentledger.tracker import MetricsTracker


@pytest.fixture
def tracker(db_url: str) -> MetricsTracker:
    return MetricsTracker(Ledger(db_url, handle_signals=False))


def test_seed_flow_records_linked_events(tracker: MetricsTracker) -> None:
    """command -> LLM call -> MCP call: one trace, each child pointing at its parent."""
    cmd = tracker.track_command("analyze", "sangelovich", guild_id=42, parameters={"t": "AAPL"})
    llm = tracker.track_llm_usage(
        "sangelovich", "claude-sonnet-4-5-20250929", "anthropic", 1200, 300, parent_id=cmd,
        finish_reason="tool_use", tool_calls=1, guild_id=42,
    )  # fmt: skip
    mcp = tracker.track_mcp_call("get_current_positions", "sangelovich", True, 234, parent_id=llm)
    assert tracker.ledger.flush()
    assert tracker.ledger.store is not None
    events = {e.event_id: e for e in tracker.ledger.store.events()}
    command, call, tool = events[str(cmd)], events[str(llm)], events[str(mcp)]
    assert (command.kind, call.kind, tool.kind) == ("command", "llm", "tool")
    assert call.trace_id == tool.trace_id == command.trace_id
    assert call.parent_id == command.span_id
    assert tool.parent_id == call.span_id
    assert command.metadata["parameters"] == {"t": "AAPL"}
    assert command.tenant_id == "42"
    assert call.user_id == "sangelovich"
    assert call.metadata["finish_reason"] == "tool_use"
    assert call.cost_source == "priced"
    assert call.cost_usd == Decimal("0.0081")  # 1200 x $3/M + 300 x $15/M
    assert tool.duration_ms == 234.0


def test_reports_read_back_the_store(tracker: MetricsTracker) -> None:
    """The seed's six reports come from the database with the seed's fields."""
    for user in ("alice", "bob", "alice"):
        tracker.track_command("scan_puts", user)
    tracker.track_llm_usage("alice", "gpt-4o", "openai", 1000, 500, response_time_ms=800)
    tracker.track_llm_usage("bob", "gpt-4o", "openai", 1000, 500, cost_usd=0.5)
    tracker.track_mcp_call("scan_options_chain", "bob", False, 1876, error_message="timeout")
    tracker.track_error("upload", "bob", "file too large")
    assert tracker.get_command_stats() == [
        {"command": "scan_puts", "total_uses": 3, "unique_users": 2}
    ]
    costs = tracker.get_llm_costs()
    assert costs["total_cost"] == Decimal("0.0075") + Decimal("0.5")
    assert costs["total_tokens"] == 3000
    assert tracker.get_mcp_stats() == [
        {"tool": "scan_options_chain", "calls": 1, "failures": 1, "avg_time_ms": 1876.0}
    ]
    assert tracker.get_user_activity() == [
        {"user": "alice", "commands": 2, "llm_calls": 1},
        {"user": "bob", "commands": 1, "llm_calls": 1},
    ]
    trends = tracker.get_daily_trends()
    assert trends[0]["commands"] == 3
    assert trends[0]["llm_calls"] == 2
    assert {(e["event_type"], e["name"]) for e in tracker.get_errors()} == {
        ("mcp", "scan_options_chain"), ("error", "upload"),
    }  # fmt: skip
    tracker.close()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda t: t.track_llm_usage("u", "gpt-4o", "openai", -1, 5), id="negative"),
        pytest.param(lambda t: t.track_llm_usage("u", "gpt-4o", "openai", "5", 5), id="string"),
        pytest.param(
            lambda t: t.track_llm_usage("u", "gpt-4o", "openai", 5, 5, cost_usd="x"), id="bad-cost"
        ),
        pytest.param(lambda t: t.track_command("", "u"), id="empty-command"),
        pytest.param(lambda t: t.track_mcp_call("tool", "u", True, float("nan")), id="nan-time"),
        pytest.param(lambda t: t.track_command("x" * 10_000, "u"), id="giant-name"),
    ],
)
def test_bad_input_is_rejected_not_raised(sqlite_url: str, call: object) -> None:
    """Bad input returns None, is counted, and records nothing."""
    tracker = MetricsTracker(Ledger(sqlite_url, handle_signals=False))
    assert call(tracker) is None  # type: ignore[operator]
    assert tracker.ledger.stats().rejected == 1
    assert tracker.ledger.stats().recorded == 0
    tracker.close()
