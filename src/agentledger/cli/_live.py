"""``agentledger summary``, ``tail`` and ``trace``: seed 003's metrics summary, the newest
events (and new ones as they are written) and one trace's span tree."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import reduce
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ..errors import StoreError, StoreUnavailable
from ..events import KINDS, ROW_FIELDS, STATUSES, Event
from ..query import Query
from ..store.rollups import EXACT
from ..store.schema import events
from ..store.sql import SQLStore
from ..summary import metrics_summary, to_jsonable
from ._app import DbOption, UsageError, _open, app, console, err
from ._report import _money, _parse_when

_COLUMNS = [events.c[name] for name in ROW_FIELDS]
_ORDER = (events.c.started_at, events.c.event_id)


def _safe_url(store: SQLStore) -> str:
    return make_url(store.url).render_as_string(hide_password=True)


@contextmanager
def _store_errors(store: SQLStore) -> Iterator[None]:
    """Database failures while reading become one-line StoreErrors (exit code 2)."""
    try:
        yield
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        kind = StoreUnavailable if isinstance(exc, OperationalError) else StoreError
        raise kind(f"{_safe_url(store)}: {detail}") from None


def _check_format(value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UsageError(f"unknown format {value!r}; choose {' or '.join(allowed)}")


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


# --- summary ---------------------------------------------------------------------------------


@app.command()
def summary(
    days: Annotated[float, typer.Option(min=0.001, help="Look back this many days.")] = 7,
    since: Annotated[str | None, typer.Option(help="Start (YYYY-MM-DD or ISO), UTC.")] = None,
    until: Annotated[str | None, typer.Option(help="End, exclusive (default: now).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    bot: Annotated[str | None, typer.Option(help="Only this bot.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user.")] = None,
    response_kind: Annotated[
        str, typer.Option(help="Event kind whose durations are the response times.")
    ] = "llm",
    format_: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="Nearest-rank percentiles from every duration (slower over millions of "
            "events) instead of the rollups' latency histograms.",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Seed 003's metrics summary: response time percentiles, tokens, exact cost by model,
    hand-off rate and reasons, knowledge-base hit rate and similarity, model distribution.

    Examples: `agentledger summary --days 7`, `agentledger summary --tenant acme -f json`.
    Conventions for conversations, hand-offs and searches: docs/guide.md.
    """
    _check_format(format_, ("table", "json"))
    if response_kind not in KINDS:
        raise UsageError(
            f"unknown --response-kind {response_kind!r}; choose one of {', '.join(sorted(KINDS))}"
        )
    end = _parse_when(until, "--until") or datetime.now(UTC)
    start = _parse_when(since, "--since") or end - timedelta(days=days)
    if start >= end:
        raise UsageError("--since must be before --until")
    store = _open(db)
    try:
        with _store_errors(store):
            doc = metrics_summary(
                Query(store), since=start, until=end, tenant_id=tenant, bot_id=bot,
                user_id=user, response_kind=response_kind, exact_percentiles=exact,
            )  # fmt: skip
    finally:
        store.close()
    if format_ == "json":
        sys.stdout.write(json.dumps(to_jsonable(doc), indent=2) + "\n")
        sys.stdout.flush()
    else:
        _print_summary(doc)


def _print_summary(doc: dict[str, Any]) -> None:
    rt, tok, cost = doc["response_time"], doc["token_usage"], doc["cost"]
    hand, kb = doc["handoff"], doc["knowledge_base"]
    where = "".join(f", {k.removesuffix('_id')} {v}" for k, v in doc["filters"].items())
    title = f"Metrics summary, {doc['since']:%Y-%m-%d %H:%M} to {doc['until']:%Y-%m-%d %H:%M}"
    table = Table(title=title + where)
    table.add_column("Section")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    rows: list[tuple[str, list[tuple[str, str]]]] = [
        (f"Response time ({rt['kind']})", [
            ("p50", _ms(rt["p50_ms"])), ("p95", _ms(rt["p95_ms"])), ("p99", _ms(rt["p99_ms"])),
            ("mean", _ms(rt["mean_ms"])), ("min", _ms(rt["min_ms"])), ("max", _ms(rt["max_ms"])),
            ("samples", f"{rt['sample_count']:,}"),
        ]),
        ("Token usage", [
            ("total", f"{tok['total_tokens']:,}"),
            ("per conversation", f"{tok['avg_per_conversation']:,.1f}"),
            ("conversations", f"{tok['conversation_count']:,}"),
            ("prompt / completion", f"{tok['prompt_tokens']:,} / {tok['completion_tokens']:,}"),
            ("cached / reasoning", f"{tok['cached_tokens']:,} / {tok['reasoning_tokens']:,}"),
        ]),
        ("Cost", [
            ("total", _money(cost["total_usd"])),
            ("per conversation", _money(cost["avg_per_conversation_usd"])),
            ("per 1K tokens", _money(cost["avg_per_token_usd"] * 1000)),
            ("unpriced calls", f"{cost['unpriced_calls']:,}"),
        ]),
        ("Hand-offs", [
            ("total", f"{hand['total_handoffs']:,}"),
            ("rate (of conversations)", _pct(hand["handoff_rate"])),
            *((f"reason: {reason}", f"{n:,}") for reason, n in hand["by_reason"].items()),
        ]),
        ("Knowledge base", [
            ("searches", f"{kb['total_searches']:,}"), ("hit rate", _pct(kb["hit_rate"])),
            ("avg similarity", f"{kb['avg_similarity_score']:.3f}"),
            ("avg results", f"{kb['avg_results_per_search']:.2f}"),
        ]),
    ]  # fmt: skip
    for section, metrics in rows:
        for i, (metric, value) in enumerate(metrics):
            table.add_row(section if i == 0 else "", metric, value)
        table.add_section()
    console.print(table)

    models = Table(title="Models")
    for column in ("Model", "Calls", "Share", "Tokens", "Cost"):
        models.add_column(column, justify="left" if column == "Model" else "right")
    for model, info in doc["model_distribution"].items():
        models.add_row(
            model, f"{info['count']:,}", f"{info['percentage']:.1f}%",
            f"{info['total_tokens']:,}", _money(info["cost_usd"]),
        )  # fmt: skip
    if "(none)" in cost["by_model"]:
        models.add_row("(no model)", "", "", "", _money(cost["by_model"]["(none)"]))
    if models.rows:
        console.print(models)
    if not rt["sample_count"] and not tok["conversation_count"]:
        console.print("No events in this period.")


# --- tail ------------------------------------------------------------------------------------

# name, width, right-aligned; printed in this order, dropped from the right of _KEEP first
# when the console is too narrow (fixed widths keep batches printed apart aligned).
_TAIL_COLUMNS = (
    ("time", 14, False), ("kind", 9, False), ("name", 22, False), ("model", 20, False),
    ("bot", 14, False), ("tokens", 9, True), ("cost", 11, True), ("duration", 10, True),
    ("status", 6, False), ("trace", 17, False),
)  # fmt: skip
_KEEP = ("time", "kind", "name", "status", "duration", "cost", "trace", "tokens", "model", "bot")


def _tail_columns(width: int) -> list[tuple[str, int, bool]]:
    chosen = list(_KEEP)
    sizes = {name: size for name, size, _ in _TAIL_COLUMNS}
    while len(chosen) > 3 and sum(sizes[c] + 1 for c in chosen) - 1 > width:
        chosen.pop()
    return [column for column in _TAIL_COLUMNS if column[0] in chosen]


def _tail_cells(e: Event) -> dict[str, str | Text]:
    cost = f"${e.cost_usd:.6f}" if e.cost_usd else ""
    if e.cost_source == "unpriced":
        cost = "unpriced"
    return {
        "time": e.started_at.strftime("%m-%d %H:%M:%S"), "kind": e.kind, "name": e.name,
        "model": e.model or "", "bot": e.bot_id or "",
        "tokens": f"{e.total_tokens:,}" if e.total_tokens else "", "cost": cost,
        "duration": _ms(e.duration_ms),
        "status": Text(e.status, style="red" if e.status == "error" else "green"),
        "trace": "…" + e.trace_id[-16:],
    }  # fmt: skip


def _tail_table(rows: list[Event], header: bool) -> Table:
    """A borderless table of fixed-width columns, so batches printed apart line up."""
    table = Table(box=None, show_header=header, pad_edge=False, padding=(0, 1, 0, 0))
    columns = _tail_columns(console.width)
    for name, width, right in columns:
        table.add_column(
            name.upper(), width=width, no_wrap=True, overflow="ellipsis",
            justify="right" if right else "left",
        )  # fmt: skip
    for e in rows:
        cells = _tail_cells(e)
        table.add_row(*(cells[name] for name, _, _ in columns))
    return table


class _Emitter:
    """Prints events as table rows (header once) or JSON lines, flushing each batch."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.header = True
        self.printed = 0

    def __call__(self, batch: list[Event]) -> None:
        if self.fmt == "json":
            lines = (json.dumps(e.as_dict(), separators=(",", ":")) for e in batch)
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()
        elif batch or self.header:
            console.print(_tail_table(batch, self.header))
            console.file.flush()
            self.header = False
        self.printed += len(batch)


def _tail_where(filters: dict[str, str | None]) -> list[ColumnElement[bool]]:
    return [events.c[name] == value for name, value in filters.items() if value is not None]


def _rows(store: SQLStore, statement: Any) -> list[Any]:
    with _store_errors(store), store.engine.connect() as conn:
        return list(conn.execute(statement))


def _last(store: SQLStore, where: list[ColumnElement[bool]], n: int) -> list[Event]:
    if n <= 0:
        return []
    statement = (
        select(*_COLUMNS).where(and_(True, *where)).order_by(*(c.desc() for c in _ORDER)).limit(n)
    )
    return [Event.from_row(tuple(r)) for r in reversed(_rows(store, statement))]


def _ids_since(
    store: SQLStore, where: list[ColumnElement[bool]], floor: datetime
) -> dict[str, datetime]:
    statement = select(events.c.event_id, events.c.started_at).where(
        and_(True, *where, events.c.started_at >= floor)
    )
    return {r[0]: r[1] for r in _rows(store, statement)}


def _fetch(store: SQLStore, ids: list[str]) -> list[Event]:
    out: list[Event] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        statement = select(*_COLUMNS).where(events.c.event_id.in_(chunk))
        out.extend(Event.from_row(tuple(r)) for r in _rows(store, statement))
    return sorted(out, key=lambda e: (e.started_at, e.event_id))


class _Follower:
    """Finds events written since the last poll.

    Events are written when they end (a span after its children), so a new event can have
    started before events already shown. Each poll therefore looks at every event that
    started within ``window`` of the newest one seen (or of now, if that is earlier) and
    shows the ones not shown yet; the ids seen in that window are remembered.
    """

    def __init__(self, store: SQLStore, where: list[ColumnElement[bool]], window_s: float) -> None:
        self.store = store
        self.where = where
        self.window = timedelta(seconds=window_s)
        self.newest: datetime | None = None
        self.seen: dict[str, datetime] = {}

    def _floor(self) -> datetime:
        now = datetime.now(UTC)
        anchor = now if self.newest is None else min(self.newest, now)
        return anchor - self.window

    def start(self, shown: list[Event]) -> None:
        """Remember what is already there (before ``shown`` was read) as seen."""
        newest = select(func.max(events.c.started_at)).where(and_(True, *self.where))
        self.newest = _rows(self.store, newest)[0][0]
        self.seen = _ids_since(self.store, self.where, self._floor())
        self.note(shown)

    def note(self, batch: list[Event]) -> None:
        for e in batch:
            self.seen[e.event_id] = e.started_at
            if self.newest is None or e.started_at > self.newest:
                self.newest = e.started_at

    def poll(self) -> list[Event]:
        floor = self._floor()
        current = _ids_since(self.store, self.where, floor)
        new = [event_id for event_id in current if event_id not in self.seen]
        batch = _fetch(self.store, new) if new else []
        self.note(batch)
        self.seen = {k: v for k, v in self.seen.items() if v >= floor}
        return batch


@app.command()
def tail(
    kind: Annotated[str | None, typer.Option(help="Only events of this kind.")] = None,
    bot: Annotated[str | None, typer.Option(help="Only this bot.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user.")] = None,
    status: Annotated[str | None, typer.Option(help="Only 'ok' or 'error' events.")] = None,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, max=100_000, help="Show the last N events.")
    ] = 20,
    follow: Annotated[
        bool | None,
        typer.Option(
            "--follow/--no-follow",
            help="Keep printing new events until Ctrl-C. Default: follow when stdout is a "
            "terminal, not when it is piped or redirected.",
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option(min=0.01, max=3600, help="Seconds between polls when following.")
    ] = 1.0,
    window: Annotated[
        float,
        typer.Option(
            min=1, help="Seconds back from the newest event to look for late-written ones."
        ),
    ] = 600,
    format_: Annotated[
        str, typer.Option("--format", "-f", help="table, or json (one object per line).")
    ] = "table",
    max_polls: Annotated[
        int | None, typer.Option(min=0, hidden=True, help="Stop after N polls (tests).")
    ] = None,
    until_count: Annotated[
        int | None,
        typer.Option(min=1, hidden=True, help="Stop after N new events (tests)."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Print the newest events, oldest first, then (with --follow) new ones as they are
    written, until Ctrl-C.

    Examples: `agentledger tail -n 50`,
    `agentledger tail --kind llm --bot support-bot --follow`,
    `agentledger tail --no-follow -f json | jq .cost_usd`.
    """
    _check_format(format_, ("table", "json"))
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown --kind {kind!r}; choose one of {', '.join(sorted(KINDS))}")
    if status is not None and status not in STATUSES:
        raise UsageError(f"unknown --status {status!r}; choose ok or error")
    if follow is None:
        follow = bool(getattr(sys.stdout, "isatty", lambda: False)())
    where = _tail_where(
        {"kind": kind, "bot_id": bot, "tenant_id": tenant, "user_id": user, "status": status}
    )
    store = _open(db)
    emit = _Emitter(format_)
    try:
        follower = _Follower(store, where, window)
        if follow:
            follower.start([])  # before reading the last N: nothing falls in between
        shown = _last(store, where, lines)
        emit(shown)
        if follow:
            follower.note(shown)
            _follow(follower, emit, interval, max_polls, until_count)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --follow ends: exit 0, no traceback
    except BrokenPipeError:
        _quiet_stdout()  # `agentledger tail | head`: the reader left
    finally:
        store.close()


def _follow(
    follower: _Follower,
    emit: Callable[[list[Event]], None],
    interval: float,
    max_polls: int | None,
    until_count: int | None,
) -> None:
    polls = new = 0
    down = False
    while max_polls is None or polls < max_polls:
        if until_count is not None and new >= until_count:
            return
        time.sleep(interval)
        polls += 1
        try:
            batch = follower.poll()
        except StoreError as exc:  # keep following through a database restart
            if not down:
                err.print(f"agentledger: warning: {exc}; retrying", highlight=False, markup=False)
                down = True
            continue
        down = False
        if batch:
            emit(batch)
            new += len(batch)


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the exit flush does not fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (captured in tests)
        pass


# --- trace -----------------------------------------------------------------------------------

_HEX_PART = re.compile(r"…?([0-9a-fA-F]{8,31})")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _trace_events(store: SQLStore, trace_id: str) -> list[Event]:
    statement = select(*_COLUMNS).where(events.c.trace_id == trace_id).order_by(*_ORDER)
    return [Event.from_row(tuple(r)) for r in _rows(store, statement)]


def _find_trace(store: SQLStore, ident: str) -> tuple[str, list[Event]]:
    """A trace by its id, by the id of one of its events, or by a unique start or end
    (8+ hex digits) of its id, as `tail` shows it."""
    for candidate in dict.fromkeys((ident, ident.lower())):  # W3C trace ids are lower case
        found = _trace_events(store, candidate)
        if found:
            return candidate, found
    if _UUID.fullmatch(ident):
        rows = _rows(store, select(events.c.trace_id).where(events.c.event_id == ident.lower()))
        if rows:
            return rows[0][0], _trace_events(store, rows[0][0])
    part = _HEX_PART.fullmatch(ident)
    if part:  # a scan, not an index lookup: only when the exact id is not there
        piece = part.group(1).lower()
        pattern = events.c.trace_id.like(piece + "%") | events.c.trace_id.like("%" + piece)
        rows = _rows(store, select(events.c.trace_id).where(pattern).distinct().limit(2))
        if len(rows) > 1:
            raise UsageError(f"{ident!r} matches more than one trace; give more of the id")
        if rows:
            return rows[0][0], _trace_events(store, rows[0][0])
    raise UsageError(f"no trace {ident!r} in {_safe_url(store)}")


class _Node:
    __slots__ = ("children", "event", "orphan")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.children: list[_Node] = []
        self.orphan = False  # has a parent_id that is not in this trace


def span_forest(found: list[Event]) -> list[_Node]:
    """The trace's events as trees by span_id/parent_id, in start order.

    Events whose parent is not recorded (yet) are roots; a cycle in bad data is broken at its
    earliest event, so every event appears exactly once.
    """
    nodes = [_Node(e) for e in found]
    by_span: dict[str, _Node] = {}
    for node in nodes:
        by_span.setdefault(node.event.span_id, node)
    parent: dict[int, _Node | None] = {}
    for node in nodes:
        pid = node.event.parent_id
        up = by_span.get(pid) if pid is not None else None
        if up is node:
            up = None
        node.orphan = pid is not None and up is None
        parent[id(node)] = up
    roots = [n for n in nodes if parent[id(n)] is None]
    reached: set[int] = set()

    def attach(tops: list[_Node]) -> None:
        stack = list(tops)
        while stack:
            node = stack.pop()
            reached.add(id(node))
            for child in kids.get(id(node), []):
                if id(child) not in reached:
                    node.children.append(child)
                    stack.append(child)

    kids: dict[int, list[_Node]] = {}
    for node in nodes:
        up = parent[id(node)]
        if up is not None:
            kids.setdefault(id(up), []).append(node)
    attach(roots)
    for node in nodes:  # only in cyclic data: make its earliest unreached event a root
        if id(node) not in reached:
            roots.append(node)
            attach([node])
    return roots


def _totals(found: list[Event]) -> dict[str, Any]:
    start = min(e.started_at for e in found)
    end = max(e.started_at + timedelta(milliseconds=e.duration_ms) for e in found)
    return {
        "started_at": start.isoformat(),
        "duration_ms": (end - start) / timedelta(milliseconds=1),
        "events": len(found),
        "errors": sum(e.status == "error" for e in found),
        "input_tokens": sum(e.input_tokens for e in found),
        "output_tokens": sum(e.output_tokens for e in found),
        "total_tokens": sum(e.total_tokens for e in found),
        "cost_usd": reduce(EXACT.add, (e.cost_usd or Decimal(0) for e in found), Decimal(0)),
        "unpriced_calls": sum(e.cost_source == "unpriced" for e in found),
    }


def trace_document(trace_id: str, found: list[Event]) -> dict[str, Any]:
    """The nested JSON tree: totals at the root, ``spans`` of events with ``children``."""
    docs: dict[int, dict[str, Any]] = {}
    roots = span_forest(found)
    stack = list(roots)
    while stack:
        node = stack.pop()
        docs[id(node)] = {**node.event.as_dict(), "total_tokens": node.event.total_tokens,
                          "children": []}  # fmt: skip
        stack.extend(node.children)
    stack = list(roots)
    while stack:
        node = stack.pop()
        docs[id(node)]["children"] = [docs[id(c)] for c in node.children]
        stack.extend(node.children)
    totals = _totals(found)
    totals["cost_usd"] = str(totals["cost_usd"])
    return {"trace_id": trace_id, **totals, "spans": [docs[id(r)] for r in roots]}


def _label(node: _Node) -> Text:
    e = node.event
    text = Text()
    text.append(e.kind, style="bold cyan")
    text.append(f" {e.name}", style="bold")
    parts = []
    if e.model and e.model != e.name:
        parts.append(e.model)
    parts.append(_ms(e.duration_ms))
    if e.total_tokens:
        parts.append(f"{e.input_tokens:,} in / {e.output_tokens:,} out tokens")
    if e.cost_source == "unpriced":
        parts.append("unpriced")
    elif e.cost_usd:
        parts.append(_money(e.cost_usd))
    if e.kind == "handoff" and e.metadata.get("reason") not in (None, e.name):
        parts.append(f"reason {e.metadata['reason']}")
    if e.kind == "retrieval" and "results" in e.metadata:
        found = e.metadata["results"]
        parts.append(f"{len(found) if isinstance(found, list) else found} results")
        if "similarity" in e.metadata:
            parts.append(f"similarity {e.metadata['similarity']}")
    text.append("  " + " · ".join(parts))
    text.append("  ")
    text.append(e.status, style="red" if e.status == "error" else "green")
    if e.status == "error" and e.error_type:
        text.append(f" {e.error_type}", style="red")
    if node.orphan:
        text.append(f"  (parent {e.parent_id} not recorded)", style="dim")
    return text


@app.command()
def trace(
    trace_id: Annotated[
        str,
        typer.Argument(
            help="A trace id, a unique start or end of one (8+ hex digits), or an event id."
        ),
    ],
    format_: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    db: DbOption = None,
) -> None:
    """Show one trace as a span tree: kind, name, model, duration, tokens, cost and status of
    every span, with the trace's totals at the root.

    Examples: `agentledger trace 4bf92f3577b34da6a3ce929d0e0e4736`,
    `agentledger trace a3ce929d0e0e4736 -f json` (the end of the id, as `tail` shows it).
    """
    _check_format(format_, ("table", "json"))
    ident = trace_id.strip()
    if not ident:
        raise UsageError("TRACE_ID must not be empty")
    store = _open(db)
    try:
        resolved, found = _find_trace(store, ident)
    finally:
        store.close()
    if format_ == "json":
        sys.stdout.write(json.dumps(trace_document(resolved, found), indent=2) + "\n")
        sys.stdout.flush()
        return
    totals = _totals(found)
    root = Text()
    root.append(f"trace {resolved}", style="bold")
    root.append(
        f"\n{_n(totals['events'], 'event')} · {_n(totals['errors'], 'error')} · "
        f"{_ms(totals['duration_ms'])} · {_n(totals['total_tokens'], 'token')} · "
        f"{_money(totals['cost_usd'])}"
        + (f" · {totals['unpriced_calls']:,} unpriced" if totals["unpriced_calls"] else "")
    )
    tree = Tree(root)
    stack: list[tuple[Tree, _Node]] = [(tree, n) for n in reversed(span_forest(found))]
    while stack:
        branch, node = stack.pop()
        added = branch.add(_label(node))
        stack.extend((added, child) for child in reversed(node.children))
    console.print(tree)
