"""``agentledger report``: seed 004's reports and more, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import reduce
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from ..query import Query, Summary
from ..store.rollups import EXACT
from ._app import DbOption, UsageError, _open, app, console

REPORT_TYPES = (
    "commands", "llm", "mcp", "users", "trends", "errors",
    "bots", "tasks", "tenants", "models", "tools",
)  # fmt: skip


@dataclass
class Report:
    """A titled table: what every output format renders."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    totals: dict[str, Any] = field(default_factory=dict)


def _money(value: Decimal) -> str:
    return f"${value:,.4f}" if value < 1000 else f"${value:,.2f}"


def _commands(q: Query, f: dict[str, Any]) -> Report:
    groups = q.breakdown("name", kind="command", order="calls", distinct_users=True,
                         measures=(), **f)  # fmt: skip
    rows = [[g.key[0], g.summary.calls, g.summary.unique_users] for g in groups]
    return Report("Command usage", ["Command", "Total Uses", "Unique Users"], rows)


def _llm(q: Query, f: dict[str, Any]) -> Report:
    shown = ("cost_usd", "input_tokens", "output_tokens")
    total = q.totals(kind="llm", measures=(*shown, "unpriced_calls"), **f)
    groups = q.breakdown("model", kind="llm", measures=shown, **f)
    rows = [[g.key[0], g.summary.calls, g.summary.cost_usd, g.summary.total_tokens] for g in groups]
    return Report(
        "LLM costs by model", ["Model", "Calls", "Cost", "Tokens"], rows,
        {"Total Cost": total.cost_usd, "Total Tokens": total.total_tokens,
         "Unpriced Calls": total.unpriced_calls},
    )  # fmt: skip


def _tools(q: Query, f: dict[str, Any]) -> Report:
    groups = q.breakdown("name", kind="tool", order="calls",
                         measures=("errors", "duration_ms_total"), **f)  # fmt: skip
    rows = [
        [g.key[0], g.summary.calls, g.summary.errors, round(g.summary.avg_duration_ms)]
        for g in groups
    ]
    return Report("MCP tool performance", ["Tool", "Calls", "Failures", "Avg Time (ms)"], rows)


_NO_CALLS = Summary()


def _users(q: Query, f: dict[str, Any]) -> Report:
    per: dict[Any, dict[str, Summary]] = {}
    for g in q.breakdown(("user_id", "kind"), order=None, measures=("cost_usd",), **f):
        per.setdefault(g.key[0], {})[g.key[1]] = g.summary
    rows = [
        [user, kinds.get("command", _NO_CALLS).calls, kinds.get("llm", _NO_CALLS).calls,
         reduce(EXACT.add, (s.cost_usd for s in kinds.values()), Decimal(0))]
        for user, kinds in per.items()
    ]  # fmt: skip
    rows.sort(key=lambda r: (-(r[1] + r[2]), str(r[0])))
    return Report("User activity", ["User", "Commands", "LLM Calls", "Cost"], rows)


def _trends(q: Query, f: dict[str, Any]) -> Report:
    days: dict[datetime, list[Any]] = {}
    for kind, slot in (("command", 1), ("llm", 2)):
        for g in q.timeseries("day", kind=kind, measures=("cost_usd",), **f):
            row = days.setdefault(g.key[0], [g.key[0].date().isoformat(), 0, 0, Decimal(0)])
            row[slot] = g.summary.calls
            if kind == "llm":
                row[3] = g.summary.cost_usd
    rows = [days[d] for d in sorted(days, reverse=True)]
    return Report("Daily trends", ["Date", "Commands", "LLM Calls", "Cost"], rows)


def _errors(q: Query, f: dict[str, Any]) -> Report:
    names = {"tool": "mcp"}
    groups = q.breakdown(("kind", "name"), status="error", order="calls", measures=(), **f)
    rows = [[names.get(g.key[0], g.key[0]), g.key[1], g.summary.calls] for g in groups]
    return Report("Errors", ["Event Type", "Name", "Error Count"], rows)


def _by(dimension: str, title: str) -> Callable[[Query, dict[str, Any]], Report]:
    def report(q: Query, f: dict[str, Any]) -> Report:
        rows = [
            [g.key[0], g.summary.calls, g.summary.errors, g.summary.total_tokens,
             g.summary.cost_usd, round(g.summary.avg_duration_ms)]
            for g in q.breakdown(dimension, **f)
        ]  # fmt: skip
        columns = [title, "Calls", "Errors", "Tokens", "Cost", "Avg Time (ms)"]
        return Report(f"Spend by {title.lower()}", columns, rows)

    return report


_BUILDERS: dict[str, Callable[[Query, dict[str, Any]], Report]] = {
    "commands": _commands, "llm": _llm, "mcp": _tools, "tools": _tools, "users": _users,
    "trends": _trends, "errors": _errors, "bots": _by("bot_id", "Bot"),
    "tasks": _by("task_id", "Task"), "tenants": _by("tenant_id", "Tenant"),
    "models": _by("model", "Model"),
}  # fmt: skip
# What --export writes for each type: the underlying events.
_EXPORT_FILTER = {"commands": {"kind": "command"}, "llm": {"kind": "llm"},
                  "mcp": {"kind": "tool"}, "tools": {"kind": "tool"},
                  "errors": {"status": "error"}}  # fmt: skip


def _parse_when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{name} {value!r} is not a date (use YYYY-MM-DD or ISO 8601)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_tags(values: list[str]) -> dict[str, str] | None:
    tags = {}
    for item in values:
        if not re.fullmatch(r"[^=]+=.*", item):
            raise UsageError(f"--tag {item!r} must look like key=value")
        key, value = item.split("=", 1)
        tags[key] = value
    return tags or None


def _cell(value: Any, fmt: str) -> Any:
    if isinstance(value, Decimal):
        return _money(value) if fmt == "table" else str(value)
    if value is None:
        return "(none)" if fmt == "table" else None
    if isinstance(value, int) and fmt == "table":
        return f"{value:,}"
    return value


def _render(report: Report, fmt: str, meta: dict[str, Any]) -> str:
    if fmt == "json":
        doc = {
            **meta, "title": report.title, "columns": report.columns,
            "rows": [dict(zip(report.columns, (_cell(v, fmt) for v in row), strict=True))
                     for row in report.rows],
            "totals": {k: _cell(v, fmt) for k, v in report.totals.items()},
        }  # fmt: skip
        return json.dumps(doc, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(report.columns)
        writer.writerows([[_cell(v, fmt) for v in row] for row in report.rows])
        return out.getvalue()
    raise AssertionError(fmt)


def _print_table(report: Report, meta: dict[str, Any]) -> None:
    for key, value in report.totals.items():
        console.print(f"{key}: {_cell(value, 'table')}")
    table = Table(title=f"{report.title}, {meta['since'][:10]} to {meta['until'][:10]}")
    first = report.rows[0] if report.rows else [None] * len(report.columns)
    for column, sample in zip(report.columns, first, strict=True):
        numeric = isinstance(sample, (int, float, Decimal)) and not isinstance(sample, bool)
        table.add_column(column, justify="right" if numeric else "left")
    for row in report.rows:
        table.add_row(*(str(_cell(v, "table")) for v in row))
    console.print(table)
    if not report.rows:
        console.print("No events in this period.")


_EXPORT_COLUMNS = (
    "timestamp", "event_type", "kind", "name", "provider", "model", "bot_id", "user_id",
    "task_id", "tenant_id", "session_id", "success", "error_type", "error_message",
    "response_time_ms", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "cost_usd", "cost_source", "event_id",
    "trace_id", "parent_id",
)  # fmt: skip


def _export(q: Query, path: Path, where: dict[str, Any]) -> int:
    """Stream matching events to a CSV file with a progress bar; memory stays flat."""
    from sqlalchemy import and_, select

    from ..store.schema import events

    clauses = q._where(where.pop("since"), where.pop("until"), where.pop("tags"), where)
    query = select(events).where(and_(True, *clauses)).order_by(events.c.started_at)
    written = 0
    try:
        handle = path.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    with (
        handle,
        q.store.engine.connect() as conn,
        Progress(console=console, transient=True) as progress,
    ):
        bar = progress.add_task(f"Exporting to {path}", total=None)
        writer = csv.writer(handle)
        writer.writerow(_EXPORT_COLUMNS)
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(query)
        for row in result.mappings():
            writer.writerow(_export_row(row))
            written += 1
            if written % 2000 == 0:
                progress.update(bar, completed=written)
    return written


def _export_row(row: Any) -> list[Any]:
    event_type = {"tool": "mcp"}.get(row["kind"], row["kind"])
    values = {
        **row, "timestamp": row["started_at"].isoformat(), "event_type": event_type,
        "success": row["status"] == "ok", "response_time_ms": round(row["duration_ms"], 3),
        "cost_usd": "" if row["cost_usd"] is None else str(row["cost_usd"]),
    }  # fmt: skip
    return [values.get(c) for c in _EXPORT_COLUMNS]


@app.command()
def report(
    type_: Annotated[
        str, typer.Option("--type", "-t", help=f"One of: {', '.join(REPORT_TYPES)}.")
    ] = "llm",
    days: Annotated[float, typer.Option(min=0.001, help="Look back this many days.")] = 7,
    since: Annotated[str | None, typer.Option(help="Start (YYYY-MM-DD or ISO), UTC.")] = None,
    until: Annotated[str | None, typer.Option(help="End, exclusive (default: now).")] = None,
    bot: Annotated[str | None, typer.Option(help="Only this bot.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only events with tag key=value.")] = None,
    format_: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
    export: Annotated[
        Path | None, typer.Option(help="Also write the underlying events to this CSV file.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Report usage by commands, llm, mcp, users, trends, errors, bots, tasks, tenants, models
    or tools over the last --days (or --since/--until), optionally filtered.

    Examples: `agentledger report --type llm --days 30`, `agentledger report -t bots -f json`,
    `agentledger report -t llm --days 30 --export llm_costs.csv`.
    """
    if type_ not in REPORT_TYPES:
        raise UsageError(f"unknown report type {type_!r}; choose one of {', '.join(REPORT_TYPES)}")
    if format_ not in ("table", "json", "csv"):
        raise UsageError(f"unknown format {format_!r}; choose table, json or csv")
    end = _parse_when(until, "--until") or datetime.now(UTC)
    start = _parse_when(since, "--since") or end - timedelta(days=days)
    if start >= end:
        raise UsageError("--since must be before --until")
    filters = {"bot_id": bot, "user_id": user, "task_id": task, "tenant_id": tenant}
    filters = {k: v for k, v in filters.items() if v is not None}
    tags = _parse_tags(tag or [])
    query = Query(_open(db))
    try:
        result = _BUILDERS[type_](query, {"since": start, "until": end, "tags": tags, **filters})
        meta = {"type": type_, "since": start.isoformat(), "until": end.isoformat(),
                "filters": {**filters, **({"tags": tags} if tags else {})}}  # fmt: skip
        if format_ == "table":
            _print_table(result, meta)
        else:
            sys.stdout.write(_render(result, format_, meta))
            sys.stdout.flush()
        if export is not None:
            where = {"since": start, "until": end, "tags": tags, **filters,
                     **_EXPORT_FILTER.get(type_, {})}  # fmt: skip
            n = _export(query, export, where)
            print(f"Exported {n:,} events to {export}", file=sys.stderr)
    finally:
        query.close()


def _iter_types() -> Iterator[str]:  # used by tests
    yield from REPORT_TYPES
