"""Typer app. User mistakes become one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .._default import default_url
from ..errors import AgentledgerError, UnknownModel

app = typer.Typer(
    name="agentledger",
    help="Exact token, cost and latency accounting for LLM agents and bots.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Docstrings are wrapped at 100 columns: their single newlines join, as in Markdown.
    rich_markup_mode="markdown",
)
db_app = typer.Typer(
    help="Manage the database: migrate it, look at it.", no_args_is_help=True,
    rich_markup_mode="markdown",
)  # fmt: skip
app.add_typer(db_app, name="db")
console = Console()
err = Console(stderr=True, soft_wrap=True)  # one-line errors stay one line

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (sqlite:///path.db or postgresql://...). "
        "Default: $AGENTLEDGER_URL, then the embedded SQLite file.",
        show_default=False,
    ),
]


class UsageError(Exception):
    """A mistake in how the command was called: reported in one line, exit code 2."""


def run(argv: list[str]) -> int:
    """Run the app and turn our errors into one-line messages and exit codes."""
    from . import _db, _live, _report  # noqa: F401 - register their commands

    try:
        app(args=argv, prog_name="agentledger", standalone_mode=False)
    except (UsageError, AgentledgerError) as exc:
        err.print(f"agentledger: error: {exc}", highlight=False, markup=False)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err.print("agentledger: aborted")
        return 130
    except KeyboardInterrupt:
        err.print("agentledger: interrupted")
        return 130
    except Exception as exc:
        # Typer vendors its own click: recognise its usage errors by their interface.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            message = " ".join(str(exc.format_message()).split())
            err.print(f"agentledger: error: {message}", highlight=False, markup=False)
            return 2
        raise
    return 0


def _open(url: str | None, *, create: bool = False) -> Any:
    """Open the store; read-only commands refuse a SQLite file that does not exist."""
    from sqlalchemy.engine import make_url

    from ..store.sql import SQLStore, normalize_url

    url = normalize_url(url or default_url())
    parsed = make_url(url)
    if not create and parsed.get_backend_name() == "sqlite":
        from pathlib import Path

        database = parsed.database or ""
        if database and database != ":memory:" and not Path(database).expanduser().exists():
            raise UsageError(
                f"no database at {database} (run `agentledger db upgrade` to create it)"
            )
    return SQLStore(url)


# --- demo ------------------------------------------------------------------------------------

_BOTS = ("support-bot", "research-agent", "triage-bot", "sales-assistant")
_MODELS = (
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-sonnet-latest"),
    ("anthropic", "claude-haiku-4-5"),
)
_TOOLS = ("search_kb", "get_order", "create_ticket", "web_search")
_COMMANDS = ("/ask", "/summarize", "/triage")


@app.command()
def demo(
    db: DbOption = None,
    calls: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Model calls to simulate.")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed, for a repeatable demo.")] = 7,
) -> None:
    """Simulate bots, users and tasks making LLM and tool calls, then report their spend.

    Everything goes through the public API (scopes, spans, record_llm, record_tool) into
    the database (the embedded SQLite file unless --db says otherwise); the summary is read
    back from the database, not from memory.
    """
    from .. import Ledger, scope

    rng = random.Random(seed)
    url = db or default_url()
    ledger = Ledger(url)
    session = f"demo-{uuid.uuid4().hex[:8]}"  # per run, even with the same --seed
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("Recording calls", total=calls)
        for i in range(calls):
            bot = rng.choice(_BOTS)
            provider, model = rng.choice(_MODELS)
            with (
                scope(bot_id=bot, user_id=f"user-{rng.randrange(25)}", task_id=f"task-{i // 8}",
                      tenant_id=rng.choice(("acme", "globex")), session_id=session),
                ledger.span("command", rng.choice(_COMMANDS)),
            ):  # fmt: skip
                prompt = rng.randrange(200, 6000)
                cached = rng.choice((0, 0, prompt // 2))
                output = rng.randrange(20, 900)
                failed = rng.random() < 0.03
                ledger.record_llm(
                    model, prompt, output, provider=provider, cache_read_tokens=cached,
                    duration_ms=rng.uniform(150, 4000),
                    status="error" if failed else "ok",
                    error_type="RateLimitError" if failed else None,
                )  # fmt: skip
                if rng.random() < 0.5:
                    ledger.record_tool(
                        rng.choice(_TOOLS), duration_ms=rng.uniform(5, 400),
                        status="error" if rng.random() < 0.05 else "ok",
                    )  # fmt: skip
            progress.advance(bar)
        progress.update(bar, description="Writing to the database")
        if not ledger.close(timeout=60):
            raise UsageError(f"could not write every event to {url}: {ledger.stats()}")
    _print_demo_summary(url, session, ledger.stats().written)


def _print_demo_summary(url: str, session: str, written: int) -> None:
    from sqlalchemy import select

    from ..store.schema import events
    from ..store.sql import SQLStore

    store = SQLStore(url)
    query = select(events.c.bot_id, events.c.model, events.c.input_tokens,
                   events.c.output_tokens, events.c.cost_usd).where(
        events.c.session_id == session, events.c.kind == "llm"
    )  # fmt: skip
    spend: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0, Decimal(0)])
    with store.engine.connect() as conn:
        for bot, model, inp, out, cost in conn.execute(query):
            acc = spend[(bot, model)]
            acc[0] += 1
            acc[1] += inp + out
            acc[2] += cost or 0
    store.close()
    table = Table(title=f"Spend by bot and model (read back from the database, {session})")
    for column in ("bot", "model", "calls", "tokens", "cost (USD)"):
        table.add_column(
            column, justify="right" if column in ("calls", "tokens", "cost (USD)") else "left"
        )
    total = Decimal(0)
    for (bot, model), (n, tokens, cost) in sorted(spend.items()):
        table.add_row(bot, model, f"{n:,}", f"{tokens:,}", f"{cost:.6f}")
        total += cost
    console.print(table)
    console.print(f"{written:,} events written to {store.url}; total LLM spend ${total:.6f}")


# --- db --------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create the database if needed and migrate it to the current schema."""
    from ..store.sql import HEAD_REVISION

    store = _open(db, create=True)
    console.print(f"{store.url}: schema at revision {store.revision() or HEAD_REVISION}")
    store.close()


@db_app.command("stats")
def db_stats(
    db: DbOption = None,
    format_: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Show the database: schema revision, events and their time span, size on disk, how
    far the rollups are compacted and how many rows each holds.

    Rollups are exact at every moment: buckets not compacted yet are read from their finer
    rows, so a database not written to for a while simply shows older marks. Example:

        agentledger db stats --format json
    """
    if format_ not in ("table", "json"):
        raise UsageError(f"unknown format {format_!r}; choose table or json")
    store = _open(db)
    try:
        info = store.describe()
    finally:
        store.close()
    document = _stats_document(info)
    if format_ == "json":  # written as is: a console would wrap a long URL
        import json
        import sys

        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    rollups_ = document["rollups"]
    span = ""
    if info.first_event is not None:
        span = f" ({_when(document['first_event'])} to {_when(document['last_event'])})"
    _line(f"database: {document['database']}")
    _line(f"revision: {document['revision']}")
    _line(f"events:   {info.events:,}{span}")
    if info.size_bytes is not None:
        _line(f"size:     {_size(info.size_bytes)}")
    _line(f"rollups:  hours compacted to {_when(rollups_['hours_until'])}")
    _line(f"          days compacted to  {_when(rollups_['days_until'])}")
    _line(f"          user totals up to  {_when(rollups_['user_totals_until'])}")
    width = max(len(name) for name in rollups_["rows"])
    for i, (name, n) in enumerate(rollups_["rows"].items()):
        _line(f"{'rows:' if i == 0 else '':10}{name:<{width}}  {n:>12,}")


def _line(text: str) -> None:
    """One line as it is: not wrapped, no markup (a URL may hold brackets), no colours."""
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def _stats_document(info: Any) -> dict[str, Any]:
    """``db stats --format json`` (a stable shape: docs/cli.md)."""
    from ..store.schema import from_epoch_us

    def mark(us: int) -> str | None:
        return from_epoch_us(us).isoformat() if us else None

    return {
        "database": info.url,
        "revision": info.revision,
        "events": info.events,
        "first_event": info.first_event.isoformat() if info.first_event else None,
        "last_event": info.last_event.isoformat() if info.last_event else None,
        "size_bytes": info.size_bytes,
        "rollups": {
            "hours_until": mark(info.marks.hour),
            "days_until": mark(info.marks.day),
            "user_totals_until": mark(info.marks.totals),
            "rows": {name.removeprefix("rollup_"): n for name, n in info.rollup_rows.items()},
        },
    }


def _when(iso: str | None) -> str:
    """An ISO time as ``2026-11-25 06:00 UTC``; None (nothing compacted yet) as ``-``."""
    return "-" if iso is None else iso[:16].replace("T", " ") + " UTC"


def _size(n: int) -> str:
    """Bytes for people: ``512 B``, ``2.3 MB``."""
    if n < 1024:
        return f"{n:,} B"
    value = n / 1024
    for unit in ("KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{value:,.1f} {unit}"


# --- exporter --------------------------------------------------------------------------------


@app.command()
def exporter(
    db: DbOption = None,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of /metrics (0: any free port).")
    ] = 9464,
    addr: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    labels: Annotated[
        str,
        typer.Option(
            help="Attribution labels, comma-separated, from bot_id, tenant_id, "
            "user_id, task_id, session_id (users and tasks are unbounded)."
        ),
    ] = "bot_id,tenant_id",
    top_n: Annotated[
        int | None, typer.Option(min=1, help="Keep each label's N largest values, plus 'other'.")
    ] = None,
) -> None:
    """Serve Prometheus metrics computed from the database until Ctrl-C.

    Exact across every process that writes to the database, and they survive restarts:
    each scrape reads the totals from the events table (see docs/prometheus.md).
    """
    import signal
    import threading

    from sqlalchemy.engine import make_url

    try:
        from ..export.prometheus import StoreCollector, serve_collector
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    store = _open(db)
    try:
        chosen = [label.strip() for label in labels.split(",") if label.strip()]
        collector = StoreCollector(store, labels=chosen, top_n=top_n)
        try:
            server = serve_collector(collector, port, addr)
        except OSError as exc:
            raise UsageError(f"cannot listen on {addr}:{port}: {exc.strerror or exc}") from None
        where = make_url(store.url).render_as_string(hide_password=True)
        console.print(
            f"serving {where} on {server.url} (Ctrl-C to stop)", highlight=False, soft_wrap=True
        )
        stop = threading.Event()
        try:
            previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        except ValueError:  # not the main thread: Ctrl-C only
            previous = None
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            server.close()
        console.print("exporter stopped")
    finally:
        store.close()


# --- prices ----------------------------------------------------------------------------------


@app.command()
def prices(
    model: Annotated[str, typer.Argument(help="Model name, e.g. gpt-4o or openai/gpt-4o.")],
    provider: Annotated[str | None, typer.Option(help="Provider id, e.g. openai.")] = None,
) -> None:
    """Show the price agentledger uses for MODEL (USD per million tokens) and its source."""
    from ..pricing import PriceBook

    try:
        info = PriceBook().price_info(model, provider)
    except UnknownModel as exc:
        raise UsageError(f"{exc}; record calls to it anyway (they are kept as unpriced)") from None
    table = Table(title=f"{info.resolved_model} at {info.provider} ({info.price_version})")
    table.add_column("price")
    table.add_column("USD", justify="right")
    for key, value in info.prices_mtok.items():
        table.add_row(key, value)
    console.print(table)


@app.command()
def version() -> None:
    """Print the agentledger version."""
    from .. import __version__

    console.print(f"agentledger {__version__}")
