"""Nested spans: ``with ledger.span("tool", "search") as span:`` and ``@traced``.

A span is an event with a duration that other events can sit inside. The open span lives in
a ``contextvars`` variable, so children in the same thread or asyncio task find their parent
and trace automatically; exceptions mark the span ``error`` and propagate unchanged.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ._ids import new_ids
from .scope import scope

if TYPE_CHECKING:
    from types import TracebackType

    from .ledger import Ledger

__all__ = ["Span", "current_span"]

_SCOPE_KEYS = ("bot_id", "user_id", "task_id", "tenant_id", "session_id", "tags")

_current_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "agentledger_span", default=None
)


def current_span() -> Span | None:
    """The innermost open span in this context, if any."""
    return _current_span.get()


class Span:
    """An open span; add usage, cost, model or metadata before it closes."""

    __slots__ = (
        "_is_task", "_ledger", "_scope", "_t0", "_token", "attrs", "event_id", "kind",
        "metadata", "name", "parent_id", "span_id", "status", "trace_id", "usage",
    )  # fmt: skip

    def __init__(self, ledger: Ledger, kind: str, name: str, attrs: dict[str, Any]) -> None:
        self._ledger = ledger
        self.kind = kind
        self.name = name
        self.attrs = attrs
        self.usage: dict[str, int] = {}
        self.metadata: dict[str, Any] = dict(attrs.pop("metadata", None) or {})
        self.status: str | None = None
        parent = _current_span.get()
        self.event_id, trace_id, self.span_id = new_ids()
        self.trace_id: str = parent.trace_id if parent is not None else trace_id
        self.parent_id: str | None = parent.span_id if parent is not None else None
        if kind == "tool" and _TOOL_REQUEST.get() is not None:
            link = tool_parent(name)  # answering a model's tool request: nest under it
            if link is not None:
                self.trace_id, self.parent_id = link
        self._token: contextvars.Token[Span | None] | None = None
        self._t0 = 0.0
        self._is_task = False  # set by Ledger.task(): counted in ledger.active_tasks
        # Attribution given to the span (bot_id=..., tags=...) also holds for its children.
        given = {k: attrs[k] for k in _SCOPE_KEYS if attrs.get(k) is not None}
        self._scope = scope(**given) if given else None

    # --- what the caller can add while the span is open --------------------------------
    def set_usage(self, **tokens: int) -> None:
        """Add token counts (``input_tokens=``, ``output_tokens=``, ``cache_read_tokens=``...)."""
        self.usage.update(tokens)

    def set_cost(self, cost_usd: Decimal | float) -> None:
        """Record a cost the caller already knows (stored as ``cost_source="reported"``)."""
        self.attrs["cost_usd"] = cost_usd

    def set_model(self, model: str, provider: str | None = None) -> None:
        """Say which model served this span, so it can be priced."""
        self.attrs["model"] = model
        if provider is not None:
            self.attrs["provider"] = provider

    def set(self, key: str, value: Any) -> None:
        """Attach a metadata value (JSON-serialisable)."""
        self.metadata[key] = value

    def fail(self, error_type: str, message: str | None = None) -> None:
        """Mark the span failed without raising."""
        self.status = "error"
        self.attrs["error_type"] = error_type
        self.attrs["error_message"] = message

    # --- context manager ----------------------------------------------------------------
    def __enter__(self) -> Span:
        if self._is_task:
            self._ledger._task_delta(1)
        if self._scope is not None:
            self._scope.__enter__()
        self._token = _current_span.set(self)
        self._t0 = time.perf_counter()
        self.attrs.setdefault("started_at", time.time())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration_ms = (time.perf_counter() - self._t0) * 1000.0
        if self._token is not None:
            _current_span.reset(self._token)
        if self._scope is not None:
            self._scope.__exit__(None, None, None)
        if exc is not None and not isinstance(exc, GeneratorExit):
            self.status = "error"
            self.attrs.setdefault("error_type", type(exc).__name__)
            self.attrs.setdefault("error_message", str(exc))
        if self._is_task:
            self._ledger._task_delta(-1)
        self._ledger._finish_span(self, duration_ms)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


# --- tool requests -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ToolRequest:
    """A model call whose response asked for tools: where tool calls answering it nest."""

    span_id: str  # the model call's event
    trace_id: str
    names: frozenset[str]  # the tools it asked for
    outer_span_id: str | None  # the span open around the model call, if any


# The last model call in this context that could ask for tools: set when it finishes (None
# when it asked for none), read by tool integrations (:func:`tool_parent`).
_TOOL_REQUEST: contextvars.ContextVar[ToolRequest | None] = contextvars.ContextVar(
    "agentledger_tool_request", default=None
)


def tool_parent(name: str) -> tuple[str, str] | None:
    """``(trace_id, parent span id)`` for a tool call that answers the last model response.

    That is when the last tool-capable model call in this context (thread, or asyncio task
    and the tasks it starts) asked for a tool called ``name``, and no span was opened since
    around the tool call (an explicit span is the more specific parent). Otherwise None.
    """
    request = _TOOL_REQUEST.get()
    if request is None or name not in request.names:
        return None
    span = current_span()
    if (span.span_id if span is not None else None) != request.outer_span_id:
        return None
    return request.trace_id, request.span_id
