"""``agentledger db prune | vacuum | rebuild-rollups``: retention and maintenance."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from ..store.schema import events
from ._app import DbOption, UsageError, _open, console, db_app

_AGE = re.compile(r"^\s*(\d+)\s*([dhw])\s*$")
_UNITS = {"d": "days", "h": "hours", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """``90d``, ``36h`` or ``2w`` as a timedelta; anything else is a UsageError."""
    match = _AGE.match(text or "")
    if not match or int(match.group(1)) <= 0:
        raise UsageError(f"--older-than {text!r} is not an age (use e.g. 90d, 36h or 2w)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@db_app.command("prune")
def db_prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Delete events that started longer ago than this: 90d, 36h, 2w.",
            show_default=False,
        ),
    ],
    db: DbOption = None,
    batch: Annotated[
        int, typer.Option(min=100, max=1_000_000, help="Events deleted per transaction.")
    ] = 10_000,
    vacuum: Annotated[
        bool, typer.Option("--vacuum/--no-vacuum", help="Reclaim the space afterwards.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted.")
    ] = False,
) -> None:
    """Delete old events in small batches; rollups are kept, so long-range reports stay right.

    Each batch is its own short transaction, so applications keep writing while it runs.
    Reports over the pruned period still add up from the hourly and daily rollups (only a
    partial hour at the very edge of a range needs events). Example:

        agentledger db prune --older-than 90d --vacuum
    """
    cutoff = datetime.now(UTC) - parse_age(older_than)
    store = _open(db)
    try:
        with store.engine.connect() as conn:
            count = int(
                conn.execute(
                    select(func.count()).select_from(events).where(events.c.started_at < cutoff)
                ).scalar()
                or 0
            )
        when = cutoff.isoformat(timespec="seconds")
        if dry_run or count == 0:
            verb = "would delete" if dry_run else "deleted"
            console.print(f"{verb} {count:,} events that started before {when}")
            return
        with Progress(
            TextColumn("pruning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True, disable=not console.is_terminal,
        ) as progress:  # fmt: skip
            task = progress.add_task("prune", total=count)
            deleted = store.prune(cutoff, batch=batch, progress=lambda n: progress.advance(task, n))
        console.print(f"deleted {deleted:,} events that started before {when}; rollups kept")
        if vacuum:
            store.vacuum()
            console.print("space reclaimed (vacuum)")
    finally:
        store.close()


@db_app.command("vacuum")
def db_vacuum(db: DbOption = None) -> None:
    """Give the space of deleted events back to the filesystem (SQLite) or the server."""
    store = _open(db)
    try:
        store.vacuum()
        console.print(f"{store.url}: vacuumed")
    finally:
        store.close()


@db_app.command("rebuild-rollups")
def db_rebuild_rollups(db: DbOption = None) -> None:
    """Recompute the hourly and daily rollups from the events table.

    Needed only after editing events by hand. Writers wait while it runs. Rollups of pruned
    events cannot be rebuilt (their events are gone), so this drops their history.
    """
    store = _open(db)
    try:
        with console.status("rebuilding rollups"):
            folded = store.rebuild_rollups()
        console.print(f"rollups rebuilt from {folded:,} events")
    finally:
        store.close()
