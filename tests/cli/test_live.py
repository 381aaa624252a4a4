"""`agentledger tail` and `agentledger trace` (and `summary`'s argument errors) through the
CLI entry point, on a SQLite file and on PostgreSQL.

Regenerate the snapshots after an intended change with
``AGENTLEDGER_UPDATE_SNAPSHOTS=1 python -m pytest tests/cli/test_live.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from agentledger import Event, Ledger
from agentledger.cli import main
from agentledger.store.sql import SQLStore

from ._runner import Result, run_cli

SNAPSHOTS = Path(__file__).with_name("snapshots")
START = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TWIN = "4bf92f3577b34da6ffffffffffffffff"  # shares TRACE's first 16 digits
ROOT_EVENT = "0195f3a2-0000-7000-8000-000000000001"


def _event(n: int, span: str, parent: str | None, ms: float, kind: str, name: str,
           trace: str = TRACE, **fields: Any) -> Event:  # fmt: skip
    if "model" not in fields:  # as record_tool does: free unless told
        fields.setdefault("cost_usd", Decimal(0))
        fields.setdefault("cost_source", "reported")
    return Event(
        event_id=f"0195f3a2-0000-7000-8000-{n:012d}", trace_id=trace, span_id=span,
        parent_id=parent, started_at=START + timedelta(milliseconds=ms),
        duration_ms=fields.pop("duration_ms", 0.0), kind=kind, name=name,
        bot_id=fields.pop("bot_id", "support-bot"), tenant_id="acme", session_id="conv-1",
        **fields,
    )  # fmt: skip


def _fill(url: str) -> None:
    """One customer-service trace (command span → search, model call, tool span → failed
    model call, hand-off; plus an event whose parent was never recorded), a second trace
    with a similar id, and a sales-bot call."""
    ledger = Ledger(url, handle_signals=False, strict=True)
    root = "00f067aa0ba902b7"
    for event in (
        _event(1, root, None, 0, "command", "/ask", duration_ms=2500.0),
        _event(2, "a1a1a1a1a1a1a1a1", root, 10, "retrieval", "knowledge_search",
               duration_ms=40.0, metadata={"results": 3, "similarity": 0.82}),
        _event(3, "b2b2b2b2b2b2b2b2", root, 60, "llm", "gpt-4o", provider="openai",
               model="gpt-4o", input_tokens=1200, output_tokens=300, cache_read_tokens=1000,
               duration_ms=900.0),
        _event(4, "c3c3c3c3c3c3c3c3", root, 1000, "tool", "get_order", duration_ms=1200.0),
        _event(5, "d4d4d4d4d4d4d4d4", "c3c3c3c3c3c3c3c3", 1100, "llm", "gpt-4o-mini",
               provider="openai", model="gpt-4o-mini", input_tokens=500, output_tokens=80,
               duration_ms=310.0, status="error", error_type="RateLimitError"),
        _event(6, "e5e5e5e5e5e5e5e5", root, 2400, "handoff", "handoff",
               metadata={"reason": "customer_requested_human"}),
        _event(7, "f6f6f6f6f6f6f6f6", "ffffffffffffffff", 3000, "tool", "late_callback",
               duration_ms=15.0),
        _event(8, "0707070707070707", None, 4000, "llm", "claude-3-5-sonnet-latest",
               trace=TWIN, provider="anthropic", model="claude-3-5-sonnet-latest",
               input_tokens=800, output_tokens=200, duration_ms=700.0, bot_id="sales-bot"),
    ):  # fmt: skip
        assert ledger.record(event)
    assert ledger.close()


@pytest.fixture
def filled(db_url: str) -> str:
    _fill(db_url)
    return db_url


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('live')}/live.db"
    _fill(url)
    return url


def _cli(*args: str, tty: bool = False) -> Result:
    return run_cli(*args, tty=tty)


def _snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("AGENTLEDGER_UPDATE_SNAPSHOTS"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def _stored(url: str) -> list[Event]:
    store = SQLStore(url)
    found = store.events()
    store.close()
    return found


# --- trace -----------------------------------------------------------------------------------


def test_trace_tree_matches_snapshot(sqlite_db: str) -> None:
    """The span tree: nesting, per-span figures, the orphan flagged, totals at the root."""
    result = _cli("trace", TRACE, "--db", sqlite_db)
    assert result.returncode == 0, result.stderr
    _snapshot("trace.txt", result.stdout)


def test_trace_json_is_the_nested_tree(filled: str) -> None:
    """--format json: totals at the root, spans nested by parent_id, exact costs."""
    result = _cli("trace", TRACE, "--db", filled, "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    mine = [e for e in _stored(filled) if e.trace_id == TRACE]
    assert doc["trace_id"] == TRACE
    assert doc["events"] == 7
    assert doc["errors"] == 1
    assert doc["total_tokens"] == sum(e.total_tokens for e in mine) == 2080
    assert Decimal(doc["cost_usd"]) == sum((e.cost_usd or Decimal(0) for e in mine), Decimal(0))
    assert doc["started_at"] == START.isoformat()
    assert doc["duration_ms"] == pytest.approx(3015.0)  # first start to last end

    def shape(node: dict[str, Any]) -> Any:
        return (node["name"], [shape(c) for c in node["children"]])

    assert [shape(s) for s in doc["spans"]] == [
        ("/ask", [("knowledge_search", []), ("gpt-4o", []), ("get_order", [("gpt-4o-mini", [])]),
                  ("handoff", [])]),
        ("late_callback", []),
    ]  # fmt: skip
    llm = doc["spans"][0]["children"][1]
    stored = next(e for e in mine if e.name == "gpt-4o")
    assert llm["cost_usd"] == str(stored.cost_usd)
    assert llm["total_tokens"] == 1500
    assert llm["model"] == "gpt-4o"
    assert llm["status"] == "ok"
    assert doc["spans"][0]["children"][2]["children"][0]["error_type"] == "RateLimitError"


@pytest.mark.parametrize(
    "ident",
    [
        pytest.param(ROOT_EVENT, id="event-id"),
        pytest.param("a3ce929d0e0e4736", id="end-as-tail-shows-it"),
        pytest.param("…a3ce929d0e0e4736", id="end-with-ellipsis"),
        pytest.param("4bf92f3577b34da6a3", id="unique-start"),
        pytest.param(TRACE.upper(), id="upper-case"),
    ],
)
def test_trace_found_by_event_id_or_part_of_its_id(filled: str, ident: str) -> None:
    result = _cli("trace", ident, "--db", filled, "-f", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["trace_id"] == TRACE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["0123456789abcdef0123456789abcdef"], "no trace", id="unknown"),
        pytest.param(["4bf92f35"], "more than one trace", id="ambiguous"),
        pytest.param(["deadbeef"], "no trace", id="unknown-part"),
        pytest.param(["not-an-id"], "no trace", id="garbage"),
        pytest.param(["  "], "must not be empty", id="empty"),
        pytest.param([TRACE, "--format", "xml"], "unknown format", id="bad-format"),
        pytest.param([], "Missing argument", id="missing-id"),
    ],
)
def test_trace_mistakes_give_one_line(filled: str, args: list[str], message: str) -> None:
    """An unknown trace is a one-line error with exit code 2, like an unknown model."""
    result = _cli("trace", *args, "--db", filled)
    assert result.returncode == 2
    assert result.stderr.startswith("agentledger: error:")
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr


# --- tail ------------------------------------------------------------------------------------


def _lines(result: Result) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_tail_prints_the_last_events_oldest_first(filled: str) -> None:
    everything = sorted(_stored(filled), key=lambda e: (e.started_at, e.event_id))
    got = _lines(_cli("tail", "--db", filled, "-n", "3", "-f", "json"))
    assert [g["event_id"] for g in got] == [e.event_id for e in everything[-3:]]
    assert got[-1] == json.loads(json.dumps(everything[-1].as_dict()))  # the full event
    got = _lines(_cli("tail", "--db", filled, "-n", "100", "-f", "json"))
    assert [g["event_id"] for g in got] == [e.event_id for e in everything]
    assert _lines(_cli("tail", "--db", filled, "-n", "0", "-f", "json")) == []


@pytest.mark.parametrize(
    ("args", "names"),
    [
        pytest.param(["--kind", "llm"], ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet-latest"],
                     id="kind"),
        pytest.param(["--bot", "sales-bot"], ["claude-3-5-sonnet-latest"], id="bot"),
        pytest.param(["--status", "error"], ["gpt-4o-mini"], id="status"),
        pytest.param(["--kind", "llm", "--bot", "support-bot", "-n", "1"], ["gpt-4o-mini"],
                     id="kind-bot-n"),
        pytest.param(["--tenant", "globex"], [], id="no-match"),
    ],
)  # fmt: skip
def test_tail_filters(filled: str, args: list[str], names: list[str]) -> None:
    got = _lines(_cli("tail", "--db", filled, "-f", "json", *args))
    assert [g["name"] for g in got] == names


def test_tail_table_matches_snapshot(sqlite_db: str) -> None:
    """Fixed-width columns; on a narrow console the least useful columns go first."""
    result = _cli("tail", "--db", sqlite_db)
    assert result.returncode == 0, result.stderr
    _snapshot("tail.txt", result.stdout)
    from agentledger.cli._live import _tail_columns

    assert [c[0] for c in _tail_columns(80)] == ["time", "kind", "name", "cost", "duration",
                                                 "status"]  # fmt: skip
    assert len(_tail_columns(200)) == 10


def test_tail_follows_by_default_only_on_a_terminal(sqlite_db: str) -> None:
    """Piped (the tests' StringIO): print and exit. On a terminal: follow."""
    from agentledger.cli import _live

    with mock.patch.object(_live, "_follow", wraps=_live._follow) as follow:
        assert _cli("tail", "--db", sqlite_db, "-n", "1").returncode == 0
        assert follow.call_count == 0
        result = _cli("tail", "--db", sqlite_db, "-n", "1", "--max-polls", "2",
                      "--interval", "0.01", tty=True)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert follow.call_count == 1
        assert _cli("tail", "--db", sqlite_db, "--no-follow", tty=True).returncode == 0
        assert follow.call_count == 1


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_URL"}
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from agentledger.cli import main; sys.exit(main())",
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=120)  # a hang guard, not a speed check
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_tail_follow_picks_up_new_and_late_written_events(filled: str) -> None:
    """--follow prints events written after it started, matching its filters, including one
    that started before the newest shown (written late, as a span is when it ends)."""
    proc = _spawn("tail", "--db", filled, "--follow", "-f", "json", "-n", "2",
                  "--bot", "support-bot", "--interval", "0.05", "--until-count", "2")  # fmt: skip
    assert proc.stdout is not None
    first = [json.loads(proc.stdout.readline()) for _ in range(2)]
    assert [e["name"] for e in first] == ["handoff", "late_callback"]
    ledger = Ledger(filled, handle_signals=False, strict=True)
    ledger.record_llm("gpt-4o", 10, 5, bot_id="sales-bot")  # filtered out
    ledger.record_llm(
        "gpt-4o", 20, 5, bot_id="support-bot", started_at=START + timedelta(seconds=1)
    )  # late: before those shown
    ledger.record_llm("gpt-4o-mini", 30, 5, bot_id="support-bot")
    assert ledger.close()
    out, err = _finish(proc)
    assert proc.returncode == 0, err
    assert err == ""
    new = [json.loads(line) for line in out.splitlines()]
    assert sorted(e["input_tokens"] for e in new) == [20, 30]
    assert {e["bot_id"] for e in new} == {"support-bot"}


def test_tail_follow_ends_cleanly_on_ctrl_c(filled: str) -> None:
    """Ctrl-C while following: exit code 0, nothing on stderr, no traceback."""
    proc = _spawn("tail", "--db", filled, "--follow", "-n", "1", "--interval", "0.05")
    assert proc.stdout is not None
    assert "TIME" in proc.stdout.readline()  # the header, then the last event
    assert proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _out, err = _finish(proc)
    assert proc.returncode == 0
    assert err == ""


def test_tail_into_a_closed_pipe_exits_quietly(sqlite_url: str) -> None:
    """`agentledger tail --follow -f json | head -1`: no BrokenPipeError traceback."""
    ledger = Ledger(sqlite_url, handle_signals=False, strict=True)
    ledger.record_tool("first")
    assert ledger.flush()
    proc = _spawn("tail", "--db", sqlite_url, "--follow", "-f", "json", "--interval", "0.05",
                  "--until-count", "200")  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert json.loads(proc.stdout.readline())["name"] == "first"
    proc.stdout.close()  # the reader leaves
    for i in range(200):
        ledger.record_tool(f"t{i}")
        assert ledger.flush()  # each in its own poll, so some write fails
    assert ledger.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    assert err == ""


# --- one-line errors for every command -------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["summary", "--days", "abc"], id="summary-days-text"),
        pytest.param(["summary", "--days", "0"], id="summary-days-zero"),
        pytest.param(["summary", "--days", "-2"], id="summary-days-negative"),
        pytest.param(["summary", "--format", "csv"], id="summary-format"),
        pytest.param(["summary", "--since", "2026-13-01"], id="summary-bad-since"),
        pytest.param(["summary", "--since", "2026-11-24", "--until", "2026-11-20"],
                     id="summary-reversed"),
        pytest.param(["summary", "--response-kind", "nope"], id="summary-response-kind"),
        pytest.param(["tail", "--kind", "nope"], id="tail-kind"),
        pytest.param(["tail", "--status", "maybe"], id="tail-status"),
        pytest.param(["tail", "-n", "-1"], id="tail-negative-n"),
        pytest.param(["tail", "-n", "many"], id="tail-n-text"),
        pytest.param(["tail", "--format", "csv"], id="tail-format"),
        pytest.param(["tail", "--interval", "0"], id="tail-interval"),
        pytest.param(["trace"], id="trace-missing-id"),
        pytest.param(["trace", "x", "--format", "yaml"], id="trace-format"),
    ],
)  # fmt: skip
def test_bad_arguments_fail_in_one_line(sqlite_db: str, args: list[str]) -> None:
    result = _cli(*args, "--db", sqlite_db)
    assert result.returncode == 2
    assert result.stderr.startswith("agentledger: error:")
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["summary"], ["tail"], ["trace", TRACE]])
@pytest.mark.parametrize(
    "db",
    [
        pytest.param("not a url", id="garbage-url"),
        pytest.param("mysql://x/y", id="unsupported"),
        pytest.param("sqlite:////no/such/dir/x.db", id="missing-sqlite"),
        pytest.param("postgresql://postgres@127.0.0.1:1/x", id="pg-down"),
    ],
)
def test_bad_databases_fail_in_one_line(command: list[str], db: str, tmp_path: Path) -> None:
    """Through the real entry point in a fresh process: one line, exit 2, no traceback."""
    proc = _spawn(*command, "--db", db)
    _out, err = _finish(proc)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("agentledger: error:")
    assert not Path("/no/such/dir").exists()


def test_every_new_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("summary", "tail", "trace"):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert "Usage" in out
        assert "--db" in out
        assert "--max-polls" not in out  # test-only options stay hidden
