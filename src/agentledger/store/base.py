"""What the ledger needs from a store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ..events import Event

__all__ = ["Store"]


@runtime_checkable
class Store(Protocol):
    """Durable, idempotent storage of event rows (see :data:`agentledger.events.ROW_FIELDS`)."""

    url: str

    def write(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert rows in one transaction, ignoring event ids already stored; return new rows."""

    def events(self, *, limit: int | None = None) -> list[Event]:
        """Stored events, oldest first."""

    def count(self) -> int:
        """How many events are stored."""

    def after_fork(self) -> None:
        """Forget connections inherited from a parent process (never use them)."""

    def close(self) -> None:
        """Release connections."""
