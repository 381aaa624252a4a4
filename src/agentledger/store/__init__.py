"""Stores: where events are kept. ``open_store(url)`` picks SQLite or PostgreSQL."""

from __future__ import annotations

from .base import Store
from .memory import MemoryStore

__all__ = ["MemoryStore", "Store", "open_store"]


def open_store(url: str, **options: object) -> Store:
    """Open (and migrate) the store at ``url``; ``memory://`` gives a :class:`MemoryStore`."""
    if url == "memory://":
        return MemoryStore()
    from .sql import SQLStore  # SQLAlchemy loads only when a database is used

    return SQLStore(url, **options)  # type: ignore[arg-type]
