"""JSON log lines for ledger events, through the standard ``logging`` module.

``ledger.add_sink(JsonLogSink())`` logs one JSON object per event on the logger
``agentledger.events``: the line shapes of the structured agent logs this project replaces
(``timestamp``, ``level``, ``event_type`` of ``llm_call``/``tool_call``/``handoff``/
``knowledge_search``/``error``/``request``), plus attribution, tokens, cost and duration.
The record's message is the JSON text; the same dict is attached as ``record.agentledger``
for formatters that build their own output (structlog's ``ProcessorFormatter``, JSON
formatters that merge ``extra``).

Message bodies in metadata (``messages``, ``prompt``, ``completion``, ...) are dropped
unless ``include_messages=True``; secrets (``api_key``, ``authorization``, ``password``,
``token``, ...) are always replaced by ``"[redacted]"``. The sink runs on the ledger's
writer thread: a failing handler never reaches ``record_*``; it is counted in
``JsonLogSink.failed`` and in ``ledger.stats().sink_errors``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..events import Event

__all__ = ["EVENT_TYPES", "JsonLogSink", "event_record"]

# Event kind -> seed log ``event_type``; ``custom`` events use their own name.
EVENT_TYPES: Final = {
    "llm": "llm_call",
    "tool": "tool_call",
    "handoff": "handoff",
    "retrieval": "knowledge_search",
    "error": "error",
    "command": "request",
}
_MESSAGE_KEYS: Final = frozenset({
    "messages", "message", "prompt", "prompts", "completion", "completions", "input",
    "inputs", "output", "outputs", "content", "contents", "response", "responses", "request",
    "system", "system_prompt", "instructions", "query", "text", "body", "arguments", "result",
})  # fmt: skip
_SECRET_PARTS: Final = (
    "api_key", "apikey", "authorization", "password", "passwd", "secret", "cookie",
    "access_token", "refresh_token", "auth_token", "bearer", "credential", "private_key",
)  # fmt: skip
_SECRET_KEYS: Final = frozenset({"token", "auth", "key", "x_api_key"})
REDACTED: Final = "[redacted]"


def _norm(key: str) -> str:
    return key.strip().lower().replace("-", "_").replace(" ", "_")


def _is_secret(key: str) -> bool:
    k = _norm(key)
    return k in _SECRET_KEYS or any(part in k for part in _SECRET_PARTS)


def _clean(value: Any, include_messages: bool) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            skey = str(key)
            if _is_secret(skey):
                out[skey] = REDACTED
            elif not include_messages and _norm(skey) in _MESSAGE_KEYS:
                continue
            else:
                out[skey] = _clean(item, include_messages)
        return out
    if isinstance(value, list):
        return [_clean(item, include_messages) for item in value]
    return value


def _timestamp(event: Event) -> str:
    return event.started_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_record(event: Event, *, include_messages: bool = False) -> dict[str, Any]:
    """The JSON-ready dict logged for one event (``level`` and ``logger`` added by the sink)."""
    event_type = EVENT_TYPES.get(event.kind, event.name)
    out: dict[str, Any] = {
        "timestamp": _timestamp(event),
        "event_type": event_type,
        "kind": event.kind,
        "name": event.name,
        "event_id": event.event_id,
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        "parent_id": event.parent_id,
        "bot_id": event.bot_id,
        "user_id": event.user_id,
        "task_id": event.task_id,
        "tenant_id": event.tenant_id,
        "session_id": event.session_id,
        "provider": event.provider,
        "model": event.model,
        "status": event.status,
        "duration_ms": event.duration_ms,
        "cost_usd": None if event.cost_usd is None else str(event.cost_usd),
        "cost_usd_float": None if event.cost_usd is None else float(event.cost_usd),
        "cost_source": event.cost_source,
        "price_version": event.price_version,
    }
    if event.kind == "llm":
        out.update(
            input_tokens=event.input_tokens,
            output_tokens=event.output_tokens,
            cache_read_tokens=event.cache_read_tokens,
            cache_write_tokens=event.cache_write_tokens,
            reasoning_tokens=event.reasoning_tokens,
            total_tokens=event.total_tokens,
            token_usage={  # the seed's shape
                "prompt_tokens": event.input_tokens,
                "completion_tokens": event.output_tokens,
                "total_tokens": event.total_tokens,
            },
        )
    if event.status == "error":
        out["error_type"] = event.error_type
        out["error_message"] = event.error_message
    if event.tags:
        out["tags"] = dict(event.tags)
    if event.metadata:
        out["metadata"] = _clean(event.metadata, include_messages)
    return out


class JsonLogSink:
    """A ledger sink writing one JSON log line per event through ``logging``.

    ``logger`` is a name or a ``logging.Logger``; ``level`` is used for ordinary events and
    ``ERROR`` for events with ``status="error"``.
    """

    def __init__(
        self,
        logger: str | logging.Logger = "agentledger.events",
        level: int = logging.INFO,
        include_messages: bool = False,
    ) -> None:
        self.logger = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
        self.level = level
        self.include_messages = include_messages
        self.logged = 0
        self.failed = 0

    def __call__(self, events: Sequence[Event]) -> None:
        """Log one batch; raise once at the end (the ledger counts it) if any line failed."""
        errors: list[str] = []
        for event in events:
            level = logging.ERROR if event.status == "error" else self.level
            if not self.logger.isEnabledFor(level):
                continue
            try:
                record = event_record(event, include_messages=self.include_messages)
                line = {"level": logging.getLevelName(level), "logger": self.logger.name}
                line.update(record)
                text = json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)
                self.logger.log(level, text, extra={"agentledger": line})
            except Exception as exc:
                self.failed += 1
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                self.logged += 1
        if errors:
            raise RuntimeError(f"JsonLogSink: {len(errors)} line(s) not logged; {errors[0]}")

    def __repr__(self) -> str:
        return f"<JsonLogSink {self.logger.name} logged={self.logged} failed={self.failed}>"
