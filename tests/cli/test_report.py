"""`agentledger report`: every --type in every --format against a stored snapshot.

Regenerate the snapshots after an intended change with
``AGENTLEDGER_UPDATE_SNAPSHOTS=1 python -m pytest tests/cli/test_report.py``.
"""

from __future__ import annotations

import csv
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from agentledger import Ledger
from agentledger.cli._report import REPORT_TYPES

from ._runner import Result, run_cli

SNAPSHOTS = Path(__file__).with_name("snapshots")
START = datetime(2026, 11, 20, tzinfo=UTC)
END = datetime(2026, 11, 24, tzinfo=UTC)
RANGE = ["--since", "2026-11-20", "--until", "2026-11-24"]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fixed set of events: commands, model calls (one unpriced), tools, errors."""
    url = f"sqlite:///{tmp_path_factory.mktemp('report')}/r.db"
    ledger = Ledger(url, handle_signals=False, strict=True)
    for i in range(24):
        at = START + timedelta(hours=5 * i)
        who = {"bot_id": f"bot-{i % 2}", "user_id": f"user-{i % 3}", "task_id": f"task-{i // 6}",
               "tenant_id": "acme" if i % 4 else "globex"}  # fmt: skip
        ledger.record_tool("/ask" if i % 2 else "/scan", kind="command", started_at=at,
                           duration_ms=float(100 + i), **who)  # fmt: skip
        ledger.record_llm(
            ("gpt-4o", "claude-3-5-sonnet-latest", "local-llama")[i % 3], 1000 + 10 * i, 200 + i,
            cache_read_tokens=100 * (i % 2), provider=("openai", "anthropic", "ollama")[i % 3],
            started_at=at + timedelta(seconds=1), duration_ms=float(500 + 10 * i),
            status="error" if i % 7 == 0 else "ok",
            error_type="RateLimitError" if i % 7 == 0 else None, **who,
        )  # fmt: skip
        ledger.record_tool(("get_positions", "scan_options_chain")[i % 2],
                           started_at=at + timedelta(seconds=2), duration_ms=float(200 + i),
                           status="error" if i % 5 == 0 else "ok", **who)  # fmt: skip
    assert ledger.close()
    return url


def _cli(*args: str) -> Result:
    return run_cli(*args)


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
@pytest.mark.parametrize("report_type", REPORT_TYPES)
def test_report_matches_snapshot(db: str, report_type: str, fmt: str) -> None:
    """The output for this type and format is exactly the reviewed snapshot."""
    result = _cli("report", "--type", report_type, "--format", fmt, "--db", db, *RANGE)
    assert result.returncode == 0, result.stderr
    snapshot = SNAPSHOTS / f"{report_type}.{'txt' if fmt == 'table' else fmt}"
    if os.environ.get("AGENTLEDGER_UPDATE_SNAPSHOTS"):
        snapshot.write_text(result.stdout, encoding="utf-8")
    assert result.stdout == snapshot.read_text(encoding="utf-8")


def test_llm_report_totals_equal_the_ledger(db: str) -> None:
    """The llm report's total cost equals the sum of the stored events' exact costs."""
    import json

    from agentledger.store.sql import SQLStore

    store = SQLStore(db)
    in_range = [e for e in store.events() if e.kind == "llm" and START <= e.started_at < END]
    store.close()
    doc = json.loads(_cli("report", "-t", "llm", "-f", "json", "--db", db, *RANGE).stdout)
    assert Decimal(doc["totals"]["Total Cost"]) == sum(e.cost_usd or 0 for e in in_range)
    assert doc["totals"]["Unpriced Calls"] == sum(e.cost_source == "unpriced" for e in in_range)
    assert doc["totals"]["Unpriced Calls"] == 6


def test_export_streams_the_underlying_events(db: str, tmp_path: Path) -> None:
    """--export writes one CSV row per matching event with exact costs."""
    out = tmp_path / "llm.csv"
    result = _cli("report", "-t", "llm", "--db", db, *RANGE, "--export", str(out))
    assert result.returncode == 0, result.stderr
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20  # 24 model calls, 20 of them before --until
    assert {r["event_type"] for r in rows} == {"llm"}
    assert sum(r["cost_source"] == "unpriced" for r in rows) == 6


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--type", "nope"], id="unknown-type"),
        pytest.param(["--format", "xml"], id="unknown-format"),
        pytest.param(["--since", "2026-13-01"], id="bad-date"),
        pytest.param(["--since", "2026-11-24", "--until", "2026-11-20"], id="reversed-range"),
        pytest.param(["--tag", "novalue"], id="bad-tag"),
        pytest.param(["--days", "-1"], id="negative-days"),
        pytest.param(["--export", "/no/such/dir/x.csv"], id="unwritable-export"),
    ],
)
def test_bad_report_arguments_fail_in_one_line(db: str, args: list[str]) -> None:
    """Each mistake gives one 'agentledger: error:' line and exit code 2."""
    result = _cli("report", "--db", db, *args)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("agentledger: error:")
