"""The CLI through its entry point: output, help, and one-line errors with exit code 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentledger.cli import main
from agentledger.store.sql import HEAD_REVISION, SQLStore


def _run(*args: str, env_home: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ)
    if env_home is not None:
        env["AGENTLEDGER_HOME"] = str(env_home)
    env.pop("AGENTLEDGER_URL", None)
    return subprocess.run(
        [sys.executable, "-c", "import sys; from agentledger.cli import main; sys.exit(main())",
         *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_demo_writes_to_the_embedded_default_and_reports_from_it(tmp_path: Path) -> None:
    """`agentledger demo` fills the default SQLite file and prints spend read back from it."""
    result = _run("demo", "--calls", "200", env_home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Spend by bot and model" in result.stdout
    assert "support-bot" in result.stdout
    store = SQLStore(f"sqlite:///{tmp_path}/agentledger.db")
    assert store.count() >= 200  # one llm event per call, plus tool and span events
    store.close()


def test_demo_on_postgresql(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo runs unchanged on PostgreSQL."""
    assert main(["demo", "--calls", "50", "--db", pg_url]) == 0
    assert "Spend by bot and model" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["demo", "--calls", "-3"], id="negative-calls"),
        pytest.param(["demo", "--db", "mysql://x"], id="unsupported-db"),
        pytest.param(["demo", "--db", "not a url"], id="garbage-url"),
        pytest.param(["db", "stats", "--db", "sqlite:////no/such/dir/x.db"], id="missing-db"),
        pytest.param(["db", "stats", "--db", "postgresql://postgres@127.0.0.1:1/x"], id="pg-down"),
        pytest.param(["db", "stats", "--format", "xml"], id="stats-format"),
        pytest.param(["prices", "no-such-model-xyz"], id="unknown-model"),
        pytest.param(["nonsense"], id="unknown-command"),
        pytest.param(["demo", "--bogus"], id="unknown-option"),
    ],
)
def test_mistakes_give_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    """A user mistake prints one line starting with 'agentledger: error:' and exits 2."""
    result = _run(*args, env_home=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agentledger: error:")
    assert "Traceback" not in result.stderr


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Each command explains itself in --help."""
    commands = [["demo"], ["db"], ["db", "upgrade"], ["db", "stats"], ["prices"], ["version"],
                ["report"]]  # fmt: skip
    for args in [[], *commands]:
        assert main([*args, "--help"]) == 0
        out = capsys.readouterr().out
        assert "Usage" in out
        assert len(out) > 100


def test_help_text_flows_to_the_terminal_width() -> None:
    """Docstrings are wrapped at 100 columns in the source; in --help their paragraphs flow
    to the terminal's width instead of breaking where the source line did."""
    import os

    env = {**os.environ, "COLUMNS": "200"}
    env.pop("AGENTLEDGER_URL", None)
    for args, sentence in (
        ([], "tenants, models or tools over the last --days"),  # a command's short help
        (["report"], "tenants, models or tools over the last --days"),
        (["summary"], "exact cost by model, hand-off rate and reasons"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", "import sys; from agentledger.cli import main; sys.exit(main())",
             *args, "--help"],
            capture_output=True, text=True, env=env, timeout=120,
        ).stdout  # fmt: skip
        assert sentence in out, out


def test_db_upgrade_then_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`db upgrade` creates and migrates; `db stats` then reports an empty database."""
    url = f"sqlite:///{tmp_path}/new.db"
    assert main(["db", "upgrade", "--db", url]) == 0
    assert main(["db", "stats", "--db", url]) == 0
    out = capsys.readouterr().out
    assert HEAD_REVISION in out
    assert "events:   0\n" in out  # no time span without events
    assert "hours compacted to -" in out  # nothing compacted yet
    assert "password" not in out


def test_db_stats_describes_events_size_and_rollups(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`db stats` counts what is there, on both databases: the events and their span, the
    compaction marks, and every rollup table's rows (JSON checked against direct counts)."""
    import json
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, select

    from agentledger import Ledger
    from agentledger.store.rollups import Marks
    from agentledger.store.schema import rollup_members, rollup_tables, rollup_user_totals

    start = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    now = start + timedelta(hours=5, minutes=10)
    store = SQLStore(db_url)
    store.clock = lambda: now.timestamp()
    with Ledger(store=store, handle_signals=False, strict=True) as ledger:
        for i in range(24):
            ledger.record_llm("gpt-4o", 100, 10, user_id=f"u{i % 5}", bot_id=f"b{i % 2}",
                              started_at=start + timedelta(minutes=13 * i))  # fmt: skip
    marks = store.marks()
    assert marks == Marks.due(round(now.timestamp() * 1e6))
    with store.engine.connect() as conn:
        counts = {
            t.name.removeprefix("rollup_"): conn.execute(
                select(func.count()).select_from(t)
            ).scalar()
            for t in [*rollup_tables.values(), rollup_members, rollup_user_totals]
        }
    store.close()
    assert main(["db", "stats", "--db", db_url, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["revision"] == HEAD_REVISION
    assert doc["events"] == 24
    assert doc["first_event"] == start.isoformat()
    assert doc["last_event"] == (start + timedelta(minutes=13 * 23)).isoformat()
    assert doc["size_bytes"] > 0
    hour = datetime.fromtimestamp(marks.hour / 1e6, UTC)
    assert doc["rollups"]["hours_until"] == hour.isoformat()
    assert doc["rollups"]["user_totals_until"] == hour.isoformat()
    assert doc["rollups"]["days_until"] == datetime(2026, 3, 1, tzinfo=UTC).isoformat()
    assert doc["rollups"]["rows"] == counts
    assert counts["user_totals"] > 0
    assert main(["db", "stats", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "events:   24 (2026-03-01 09:30 UTC to 2026-03-01 14:29 UTC)" in out
    assert "hours compacted to 2026-03-01 14:00 UTC" in out
    assert re.search(rf"^ +users +{counts['users']:,}$", out, re.MULTILINE), out
    assert f"database: {db_url.split('://')[0]}" in out  # on one line


def test_prices_shows_the_price_and_source(capsys: pytest.CaptureFixture[str]) -> None:
    """`prices gpt-4o` shows input/output prices from genai-prices."""
    assert main(["prices", "gpt-4o"]) == 0
    out = capsys.readouterr().out
    assert "input_mtok" in out
    assert "2.5" in out
    assert "genai-prices" in out


def test_demo_twice_reports_each_run_alone(tmp_path: Path) -> None:
    """Each demo run reports only its own calls, even with the same --seed."""
    first = _run("demo", "--calls", "40", env_home=tmp_path)
    second = _run("demo", "--calls", "40", env_home=tmp_path)
    assert first.returncode == second.returncode == 0
    for result in (first, second):
        calls = sum(int(line.split("│")[3].strip()) for line in result.stdout.splitlines()
                    if line.count("│") == 6)  # fmt: skip
        assert calls == 40
