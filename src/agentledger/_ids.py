"""Identifiers: time-ordered event ids (UUIDv7) and OpenTelemetry-sized trace/span ids."""

from __future__ import annotations

import os

from uuid_utils import uuid7

__all__ = ["new_ids", "new_span_id", "new_trace_id"]


def new_ids() -> tuple[str, str, str]:
    """Return ``(event_id, trace_id, span_id)`` for an event that starts its own trace.

    The event id is a UUIDv7 (time ordered, so indexes stay append-mostly and a re-sent
    event keeps its identity); the trace id reuses its 128 bits and the span id its random
    low 64 bits, so one random draw serves all three.
    """
    u = uuid7()
    hex_ = u.hex
    return str(u), hex_, hex_[16:]


def new_trace_id() -> str:
    """A random 128-bit trace id as 32 hex characters (W3C / OpenTelemetry format)."""
    return os.urandom(16).hex()


def new_span_id() -> str:
    """A random 64-bit span id as 16 hex characters."""
    return os.urandom(8).hex()


def new_event_id() -> str:
    """A fresh UUIDv7 string."""
    return str(uuid7())
