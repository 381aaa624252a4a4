"""Seed 000's per-bot metrics API, exactly: ``from agentledger import metrics``.

Every function of the seed, with its signature, defaults and return shape::

    metrics.record_tokens(1000, 500, "anthropic", "claude-3-5-sonnet-latest", bot_id="bot_1")
    metrics.record_cost(0.015, "anthropic", "claude-3-5-sonnet-latest", bot_id="bot_1")
    metrics.get_bot_cost("bot_1", since_timestamp=start)     # 0.015
    metrics.get_and_clear_last_metrics(bot_id="bot_1")        # only bot_1's, since last clear

Design: one lock, an append-only history per bot and globally (the seed keeps history and
filters it by time with a strict ``>``), and a "last cleared" cursor per bot and for the
global view, so ``get_and_clear_last_metrics`` is atomic, never steals another bot's
figures, and the sum of all clears equals everything recorded. Costs are summed with
``math.fsum`` at read time: correctly rounded, so results do not depend on the order in
which threads recorded. Bad input is rejected, logged and counted (``stats()``), never
raised, unless ``set_strict(True)``.

When a ledger is bound (``agentledger.configure()`` does it; or ``metrics.bind(ledger)``),
every record is also sent to it as an event named ``seed000.<function>`` (see
docs/seed-000.md for the mapping); seed 000 reports cost separately from tokens, so token
events carry no cost of their own and cost lives on ``seed000.record_cost`` events.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Optional

from .errors import InvalidEvent
from .events import MAX_TOKENS as _MAX_TOKENS
from .events import check_duration_ms, check_str, check_tokens

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = [
    "bind",
    "clear_bot_metrics",
    "get_all_bot_ids",
    "get_and_clear_last_metrics",
    "get_bot_cost",
    "get_bot_tokens",
    "get_total_cost",
    "get_total_tokens",
    "record_api_call",
    "record_cost",
    "record_error",
    "record_message_building",
    "record_response_time",
    "record_tokens",
    "record_tool_execution",
    "record_tool_failure",
    "reset_metrics",
    "set_strict",
    "stats",
]

log = logging.getLogger("agentledger.metrics")

# A history entry: (timestamp, input_tokens, output_tokens, cached_tokens, cost, duration_s)
_Entry = tuple[float, int, int, int, float, float]


class _Series:
    """One history (a bot's, or the global one) and its last-cleared cursor."""

    __slots__ = ("cursor", "entries")

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.cursor = 0


_lock = threading.Lock()
_global = _Series()
_bots: dict[str, _Series] = {}
_counts = {"recorded": 0, "rejected": 0, "forward_errors": 0}
_other: dict[str, int] = {}  # counts of calls that carry no tokens/cost (errors, tools...)
_strict = False
_ledger: Ledger | None = None


def bind(ledger: Ledger | None) -> None:
    """Also send every record to ``ledger`` (None to stop)."""
    global _ledger
    _ledger = ledger


def set_strict(strict: bool) -> None:
    """Raise :class:`~agentledger.InvalidEvent` on bad input instead of logging it."""
    global _strict
    _strict = bool(strict)


def stats() -> dict[str, int]:
    """How many records were accepted and rejected, and how many failed to forward."""
    with _lock:
        return dict(_counts)


def _add(bot_id: str | None, entry: _Entry) -> None:
    with _lock:
        _global.entries.append(entry)
        if bot_id is not None:
            series = _bots.get(bot_id)
            if series is None:
                series = _bots[bot_id] = _Series()
            series.entries.append(entry)
        _counts["recorded"] += 1


def _reject(exc: Exception) -> None:
    with _lock:
        _counts["rejected"] += 1
    if _strict:
        raise exc
    log.warning("agentledger.metrics: rejected a record: %s", exc)


def _cost(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidEvent("cost", f"must be a number, got {type(value).__name__}")
    number = float(value)
    if not (0.0 <= number <= 1e7):
        raise InvalidEvent("cost", f"must be finite and >= 0, got {value!r}")
    return number


def _seconds(value: Any) -> float:
    return check_duration_ms(value, "duration")  # rejects None, "", False as well


def _forward(kind: str, name: str, **fields: Any) -> None:
    ledger = _ledger
    if ledger is None:
        return
    try:
        if kind == "llm":
            ledger.record_llm(name=f"seed000.{name}", **fields)
        else:
            ledger.record_tool(f"seed000.{name}", kind=kind, **fields)
    except Exception as exc:  # the ledger is fail-open itself; this guards strict ledgers
        with _lock:
            _counts["forward_errors"] += 1
        if _strict:
            raise
        log.warning("agentledger.metrics: could not forward %s: %s", name, exc)


# --- the eight recorders ---------------------------------------------------------------------


def record_tokens(
    input_tokens: int,
    output_tokens: int,
    provider: str,
    model: str,
    cached_tokens: int = 0,
    bot_id: Optional[str] = None,  # noqa: UP045 - the seed's own signature
) -> None:
    """Record token usage (``cached_tokens`` are separate from ``input_tokens`` here)."""
    # Inline guards for the valid case keep this within reach of the seed's bare
    # dict-and-lock design; the named checks run only when a guard fails.
    if not (
        type(input_tokens) is int and 0 <= input_tokens <= _MAX_TOKENS
        and type(output_tokens) is int and 0 <= output_tokens <= _MAX_TOKENS
        and type(cached_tokens) is int and 0 <= cached_tokens <= _MAX_TOKENS
        and type(provider) is str and 0 < len(provider) <= 256
        and type(model) is str and 0 < len(model) <= 256
        and (bot_id is None or (type(bot_id) is str and 0 < len(bot_id) <= 256))
    ):  # fmt: skip
        try:
            input_tokens = check_tokens("input_tokens", input_tokens)
            output_tokens = check_tokens("output_tokens", output_tokens)
            cached_tokens = check_tokens("cached_tokens", cached_tokens)
            check_str("provider", provider, optional=False)
            check_str("model", model, optional=False)
            check_str("bot_id", bot_id)
        except InvalidEvent as exc:
            return _reject(exc)
    entry = (time.time(), input_tokens, output_tokens, cached_tokens, 0.0, 0.0)
    with _lock:  # _add, inlined: this is the seed's hottest call
        _global.entries.append(entry)
        if bot_id is not None:
            series = _bots.get(bot_id)
            if series is None:
                series = _bots[bot_id] = _Series()
            series.entries.append(entry)
        _counts["recorded"] += 1
    inp, out, cached = input_tokens, output_tokens, cached_tokens
    if _ledger is not None:
        _forward(
            "llm", "record_tokens", model=model, provider=provider,
            input_tokens=inp + cached, output_tokens=out, cache_read_tokens=cached,
            cost_usd=Decimal(0), bot_id=bot_id,
        )  # fmt: skip


def record_cost(
    cost: float,
    provider: str,
    model: str,
    bot_id: Optional[str] = None,  # noqa: UP045
) -> None:
    """Record a cost in USD reported by the caller."""
    if (
        type(cost) is float and 0.0 <= cost <= 1e7
        and type(provider) is str and 0 < len(provider) <= 256
        and type(model) is str and 0 < len(model) <= 256
        and (bot_id is None or (type(bot_id) is str and 0 < len(bot_id) <= 256))
    ):  # fmt: skip
        value = cost
    else:
        try:
            value = _cost(cost)
            check_str("provider", provider, optional=False)
            check_str("model", model, optional=False)
            check_str("bot_id", bot_id)
        except InvalidEvent as exc:
            return _reject(exc)
    entry = (time.time(), 0, 0, 0, value, 0.0)
    with _lock:
        _global.entries.append(entry)
        if bot_id is not None:
            series = _bots.get(bot_id)
            if series is None:
                series = _bots[bot_id] = _Series()
            series.entries.append(entry)
        _counts["recorded"] += 1
    if _ledger is not None:
        _forward("llm", "record_cost", model=model, provider=provider, cost_usd=cost,
                 bot_id=bot_id)  # fmt: skip


def record_api_call(
    duration: float,
    provider: str,
    model: str,
    status: str = "success",
    bot_id: Optional[str] = None,  # noqa: UP045
) -> None:
    """Record one API call's duration in seconds and its status."""
    try:
        seconds = _seconds(duration)
        check_str("provider", provider, optional=False)
        check_str("model", model, optional=False)
        check_str("status", status, optional=False)
        check_str("bot_id", bot_id)
    except InvalidEvent as exc:
        return _reject(exc)
    _add(bot_id, (time.time(), 0, 0, 0, 0.0, seconds))
    if _ledger is not None:
        failed = status not in ("success", "ok")
        _forward(
            "llm", "record_api_call", model=model, provider=provider,
            duration_ms=seconds * 1000.0, cost_usd=Decimal(0),
            status="error" if failed else "ok", error_type=status if failed else None,
            bot_id=bot_id,
        )  # fmt: skip


def _record_other(name: str, kind: str, bot_id: Any, **fields: Any) -> None:
    with _lock:
        _counts["recorded"] += 1
        _other[name] = _other.get(name, 0) + 1
    if _ledger is not None:
        _forward(kind, name, bot_id=bot_id, **fields)


def record_tool_execution(
    duration: float,
    tool_name: str,
    success: bool = True,
    bot_id: Optional[str] = None,  # noqa: UP045
) -> None:
    """Record a tool execution's duration in seconds and whether it succeeded."""
    try:
        seconds = _seconds(duration)
        check_str("tool_name", tool_name, optional=False)
        check_str("bot_id", bot_id)
    except InvalidEvent as exc:
        return _reject(exc)
    _record_other(
        "record_tool_execution", "tool", bot_id, duration_ms=seconds * 1000.0,
        status="ok" if success else "error", metadata={"tool_name": tool_name},
    )  # fmt: skip


def record_message_building(
    duration: float,
    provider: str,
    model: str,
    bot_id: Optional[str] = None,  # noqa: UP045
) -> None:
    """Record how long building the prompt messages took, in seconds."""
    try:
        seconds = _seconds(duration)
        check_str("provider", provider, optional=False)
        check_str("model", model, optional=False)
        check_str("bot_id", bot_id)
    except InvalidEvent as exc:
        return _reject(exc)
    _record_other(
        "record_message_building", "custom", bot_id, duration_ms=seconds * 1000.0,
        metadata={"provider": provider, "model": model},
    )  # fmt: skip


def record_response_time(
    duration: float,
    provider: str,
    model: str,
    success: bool = True,
    bot_id: Optional[str] = None,  # noqa: UP045
) -> None:
    """Record the end-to-end response time in seconds."""
    try:
        seconds = _seconds(duration)
        check_str("provider", provider, optional=False)
        check_str("model", model, optional=False)
        check_str("bot_id", bot_id)
    except InvalidEvent as exc:
        return _reject(exc)
    _record_other(
        "record_response_time", "custom", bot_id, duration_ms=seconds * 1000.0,
        status="ok" if success else "error", metadata={"provider": provider, "model": model},
    )  # fmt: skip


def record_error(
    error_type: str,
    provider: str,
    operation: str,
    bot_id: Optional[str] = None,  # noqa: UP045
) -> None:
    """Record an error of ``error_type`` during ``operation``."""
    try:
        check_str("error_type", error_type, optional=False)
        check_str("provider", provider, optional=False)
        check_str("operation", operation, optional=False)
        check_str("bot_id", bot_id)
    except InvalidEvent as exc:
        return _reject(exc)
    _record_other(
        "record_error", "error", bot_id, status="error", error_type=error_type,
        metadata={"provider": provider, "operation": operation},
    )  # fmt: skip


def record_tool_failure(
    tool_name: str,
    error_type: str,
    bot_id: Optional[str] = None,  # noqa: UP045
) -> None:
    """Record that a tool failed with ``error_type``."""
    try:
        check_str("tool_name", tool_name, optional=False)
        check_str("error_type", error_type, optional=False)
        check_str("bot_id", bot_id)
    except InvalidEvent as exc:
        return _reject(exc)
    _record_other(
        "record_tool_failure", "tool", bot_id, status="error", error_type=error_type,
        metadata={"tool_name": tool_name},
    )  # fmt: skip


# --- queries ----------------------------------------------------------------------------------


def _since(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidEvent("since_timestamp", f"must be a number, got {value!r:.40}")
    return float(value)


def _tokens(entries: list[_Entry], since: float) -> dict[str, int]:
    inp = out = cached = 0
    for ts, i, o, c, _, _ in entries:
        if ts > since:
            inp += i
            out += o
            cached += c
    return {"input": inp, "output": out, "cached": cached, "total": inp + out + cached}


def get_bot_tokens(bot_id: str, since_timestamp: float = 0.0) -> dict[str, int]:
    """Token usage of ``bot_id`` recorded strictly after ``since_timestamp``.

    Returns ``{'input', 'output', 'cached', 'total'}`` with total = input + output + cached.
    """
    since = _since(since_timestamp)
    with _lock:
        series = _bots.get(bot_id)
        entries = list(series.entries) if series else []
    return _tokens(entries, since)


def get_bot_cost(bot_id: str, since_timestamp: float = 0.0) -> float:
    """Total cost in USD of ``bot_id`` recorded strictly after ``since_timestamp``."""
    since = _since(since_timestamp)
    with _lock:
        series = _bots.get(bot_id)
        entries = list(series.entries) if series else []
    return float(math.fsum(e[4] for e in entries if e[0] > since))


def get_total_tokens(since_timestamp: float = 0.0) -> dict[str, int]:
    """Token usage of every bot and of records without a bot, since ``since_timestamp``.

    Same shape as :func:`get_bot_tokens`.
    """
    since = _since(since_timestamp)
    with _lock:
        entries = list(_global.entries)
    return _tokens(entries, since)


def get_total_cost(since_timestamp: float = 0.0) -> float:
    """Total cost in USD of everything recorded after ``since_timestamp``."""
    since = _since(since_timestamp)
    with _lock:
        entries = list(_global.entries)
    return math.fsum(e[4] for e in entries if e[0] > since)


def clear_bot_metrics(bot_id: str) -> None:
    """Forget ``bot_id``'s per-bot history (global totals keep its records)."""
    with _lock:
        _bots.pop(bot_id, None)


def get_all_bot_ids() -> list[str]:
    """Every bot id that has recorded metrics (and not been cleared), in first-seen order."""
    with _lock:
        return list(_bots)


def get_and_clear_last_metrics(bot_id: Optional[str] = None) -> dict[str, Any]:  # noqa: UP045
    """Atomically return what was recorded since the previous clear, then clear it.

    With ``bot_id``, only that bot's records; without, the global view (every record).
    The two views have separate cursors, so a global clear never takes a bot's figures.
    History is kept: time-filtered queries still see everything.
    Returns ``{'input_tokens', 'output_tokens', 'cached_tokens', 'cost', 'duration'}``.
    """
    with _lock:
        series = _global if bot_id is None else _bots.get(bot_id)
        if series is None:
            fresh: list[_Entry] = []
        else:
            fresh = series.entries[series.cursor :]
            series.cursor = len(series.entries)
    return {
        "input_tokens": sum(e[1] for e in fresh),
        "output_tokens": sum(e[2] for e in fresh),
        "cached_tokens": sum(e[3] for e in fresh),
        "cost": math.fsum(e[4] for e in fresh),
        "duration": math.fsum(e[5] for e in fresh),
    }


def reset_metrics() -> None:
    """Clear everything (for tests)."""
    global _global
    with _lock:
        _global = _Series()
        _bots.clear()
        _other.clear()
        for key in _counts:
            _counts[key] = 0
