"""An in-memory store: idempotent like the real ones, for tests and for no-database use."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from ..events import Event

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps rows in a dict keyed by event id; optionally fails on demand (for tests)."""

    def __init__(self) -> None:
        self.url = "memory://"
        self._rows: dict[str, tuple[Any, ...]] = {}
        self._lock = threading.Lock()
        self.fail_with: BaseException | None = None  # set to make write() raise it
        self.writes = 0

    def write(self, rows: Sequence[tuple[Any, ...]]) -> int:
        if self.fail_with is not None:
            raise self.fail_with
        with self._lock:
            self.writes += 1
            before = len(self._rows)
            for row in rows:
                self._rows.setdefault(row[0], row)
            return len(self._rows) - before

    def events(self, *, limit: int | None = None) -> list[Event]:
        with self._lock:
            rows = list(self._rows.values())
        # Rows may hold started_at as an epoch float (ledger) or a datetime (Event.to_row).
        events = sorted(map(Event.from_row, rows), key=lambda e: (e.started_at, e.event_id))
        return events[:limit]

    def count(self) -> int:
        return len(self._rows)

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def close(self) -> None:
        pass
