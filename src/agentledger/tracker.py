"""Seed 004's ``MetricsTracker``: bot commands, LLM calls and MCP tool calls in one ledger.

::

    tracker = MetricsTracker("sqlite:///trades.db")
    cmd = tracker.track_command("analyze", username="sangelovich", guild_id=42,
                                parameters={"ticker": "AAPL"})
    llm = tracker.track_llm_usage("sangelovich", "claude-sonnet-4-5-20250929", "anthropic",
                                  prompt_tokens=1200, completion_tokens=300, parent_id=cmd)
    tracker.track_mcp_call("get_current_positions", "sangelovich", success=True,
                           response_time_ms=234, parent_id=llm)
    tracker.get_llm_costs(days=7)

Every call is a ledger event (``kind`` command / llm / tool / error) with the username as
``user_id``, the guild as ``tenant_id`` and parameters in metadata. ``parent_id`` takes the
event id a previous ``track_*`` returned; the child joins the parent's trace, so the seed's
parent links survive and ``agentledger trace`` can show them. The reports read the store,
so they cover every process writing to it; the ``metrics`` view keeps seed 004's table.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ._ids import new_ids
from .events import Event, check_cost
from .ledger import Ledger
from .query import Query, Summary

__all__ = ["MetricsTracker"]

_TRACE_MEMORY = 10_000


class MetricsTracker:
    """Seed 004's tracker over a :class:`~agentledger.Ledger` (its own, or one you pass)."""

    def __init__(self, db: str | Ledger | None = None) -> None:
        if isinstance(db, Ledger):
            self.ledger = db
        else:
            from ._default import default_url

            self.ledger = Ledger(db if db is not None else default_url())
        # Traces of recent events, so a grandchild joins its root's trace (bounded).
        self._traces: OrderedDict[str, str] = OrderedDict()

    # --- recording ------------------------------------------------------------------------
    def track_command(
        self,
        command_name: str,
        username: str,
        guild_id: int | str | None = None,
        parameters: Mapping[str, Any] | None = None,
        *,
        success: bool = True,
        error_message: str | None = None,
        response_time_ms: float = 0.0,
    ) -> str | None:
        """Record a bot command; return its event id (pass it as children's ``parent_id``)."""
        return self._record(
            "command", command_name, username, guild_id, None, success, error_message,
            response_time_ms, {"parameters": dict(parameters)} if parameters else {},
        )  # fmt: skip

    def track_llm_usage(
        self,
        username: str,
        model: str,
        provider: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        cost_usd: Decimal | float | None = None,
        response_time_ms: float = 0.0,
        success: bool = True,
        error_message: str | None = None,
        tool_calls: int | None = None,
        finish_reason: str | None = None,
        guild_id: int | str | None = None,
        parent_id: str | None = None,
        **metadata: Any,
    ) -> str | None:
        """Record an LLM call (OpenAI-style counts: prompt tokens include cached ones).

        Cost comes from the price book unless ``cost_usd`` is given.
        """
        extra = {k: v for k, v in (("tool_calls", tool_calls), ("finish_reason", finish_reason))
                 if v is not None}  # fmt: skip
        trace_id, parent_span = self._parent(parent_id)
        event_id, own_trace, span_id = new_ids()
        self._remember(event_id, trace_id or own_trace)
        try:
            return self.ledger.record(
                Event(
                    event_id=event_id, trace_id=trace_id or own_trace, span_id=span_id,
                    parent_id=parent_span, started_at=_started(response_time_ms),
                    duration_ms=float(response_time_ms), kind="llm", name=model,
                    provider=provider, model=model, user_id=username,
                    tenant_id=None if guild_id is None else str(guild_id),
                    input_tokens=prompt_tokens, output_tokens=completion_tokens,
                    cache_read_tokens=cached_tokens, reasoning_tokens=reasoning_tokens,
                    cost_usd=None if cost_usd is None else check_cost(cost_usd),
                    cost_source="reported" if cost_usd is not None else "unpriced",
                    status="ok" if success else "error",
                    error_type=None if success else "LLMError", error_message=error_message,
                    metadata={**extra, **metadata, **_parent_meta(parent_id)},
                )
            )  # fmt: skip
        except (TypeError, ValueError) as exc:  # building the Event itself failed
            return self.ledger._reject(exc)

    def track_mcp_call(
        self,
        tool_name: str,
        username: str,
        success: bool,
        response_time_ms: float,
        parent_id: str | None = None,
        *,
        parameters: Mapping[str, Any] | None = None,
        error_message: str | None = None,
        guild_id: int | str | None = None,
    ) -> str | None:
        """Record an MCP tool call, linked to the LLM call that asked for it."""
        return self._record(
            "tool", tool_name, username, guild_id, parent_id, success, error_message,
            response_time_ms, {"parameters": dict(parameters)} if parameters else {},
        )  # fmt: skip

    def track_error(
        self,
        name: str,
        username: str,
        error_message: str,
        *,
        guild_id: int | str | None = None,
        parent_id: str | None = None,
    ) -> str | None:
        """Record an error (seed 004's ``event_type='error'``)."""
        return self._record("error", name, username, guild_id, parent_id, False, error_message,
                            0.0, {})  # fmt: skip

    def _record(
        self,
        kind: str,
        name: str,
        username: str,
        guild_id: int | str | None,
        parent_id: str | None,
        success: bool,
        error_message: str | None,
        response_time_ms: float,
        metadata: dict[str, Any],
    ) -> str | None:
        trace_id, parent_span = self._parent(parent_id)
        event_id, own_trace, span_id = new_ids()
        self._remember(event_id, trace_id or own_trace)
        try:
            event = Event(
                event_id=event_id, trace_id=trace_id or own_trace, span_id=span_id,
                parent_id=parent_span, started_at=_started(response_time_ms),
                duration_ms=response_time_ms, kind=kind, name=name, user_id=username,
                tenant_id=None if guild_id is None else str(guild_id),
                cost_usd=Decimal(0), cost_source="reported",
                status="ok" if success else "error",
                error_type=None if success else f"{kind}_failed", error_message=error_message,
                metadata={**metadata, **_parent_meta(parent_id)},
            )  # fmt: skip
        except (TypeError, ValueError) as exc:
            return self.ledger._reject(exc)
        return self.ledger.record(event)

    def _remember(self, event_id: str, trace_id: str) -> None:
        self._traces[event_id] = trace_id
        if len(self._traces) > _TRACE_MEMORY:
            self._traces.popitem(last=False)

    def _parent(self, parent_id: str | None) -> tuple[str | None, str | None]:
        trace_id, span_id = _parent(parent_id)
        if parent_id is not None and str(parent_id) in self._traces:
            trace_id = self._traces[str(parent_id)]
        return trace_id, span_id

    # --- seed 004's reports -----------------------------------------------------------------
    def _query(self) -> Query:
        self.ledger.flush()
        store = self.ledger.store
        if store is None or not hasattr(store, "engine"):
            raise TypeError("reports need a ledger with a SQL database")
        return Query(store)  # type: ignore[arg-type]

    def get_command_stats(self, days: float = 7) -> list[dict[str, Any]]:
        """Command, total uses and unique users, most used first."""
        groups = self._query().breakdown("name", kind="command", order="calls",
                                         since=_since(days), distinct_users=True)  # fmt: skip
        return [{"command": g.key[0], "total_uses": g.summary.calls,
                 "unique_users": g.summary.unique_users} for g in groups]  # fmt: skip

    def get_llm_costs(self, days: float = 7) -> dict[str, Any]:
        """Total cost and tokens, and cost and tokens by model (exact Decimal cost)."""
        query = self._query()
        total = query.totals(kind="llm", since=_since(days))
        by_model = query.breakdown("model", kind="llm", since=_since(days))
        return {
            "total_cost": total.cost_usd, "total_tokens": total.total_tokens,
            "by_model": [{"model": g.key[0], "cost": g.summary.cost_usd,
                          "tokens": g.summary.total_tokens} for g in by_model],
        }  # fmt: skip

    def get_mcp_stats(self, days: float = 7) -> list[dict[str, Any]]:
        """Tool, calls, failures and average time (ms)."""
        groups = self._query().breakdown("name", kind="tool", order="calls", since=_since(days))
        return [{"tool": g.key[0], "calls": g.summary.calls, "failures": g.summary.errors,
                 "avg_time_ms": g.summary.avg_duration_ms} for g in groups]  # fmt: skip

    def get_user_activity(self, days: float = 7) -> list[dict[str, Any]]:
        """User, commands and LLM calls."""
        per: dict[str, dict[str, Summary]] = {}
        for g in self._query().breakdown(("user_id", "kind"), since=_since(days), order=None,
                                         measures=()):  # fmt: skip
            per.setdefault(g.key[0], {})[g.key[1]] = g.summary
        none = Summary()
        rows = [{"user": user, "commands": k.get("command", none).calls,
                 "llm_calls": k.get("llm", none).calls} for user, k in per.items()]  # fmt: skip
        return sorted(rows, key=lambda r: (-(r["commands"] + r["llm_calls"]), str(r["user"])))

    def get_daily_trends(self, days: float = 30) -> list[dict[str, Any]]:
        """Per UTC day, newest first: commands, LLM calls and LLM cost."""
        query = self._query()
        out: dict[str, dict[str, Any]] = {}
        for kind in ("command", "llm"):
            for g in query.timeseries("day", kind=kind, since=_since(days)):
                day = out.setdefault(g.key[0].date().isoformat(), {
                    "date": g.key[0].date().isoformat(), "commands": 0, "llm_calls": 0,
                    "cost": Decimal(0)})  # fmt: skip
                day["commands" if kind == "command" else "llm_calls"] = g.summary.calls
                if kind == "llm":
                    day["cost"] = g.summary.cost_usd
        return [out[d] for d in sorted(out, reverse=True)]

    def get_errors(self, days: float = 7) -> list[dict[str, Any]]:
        """Event type (command/llm/mcp/error), name and error count."""
        groups = self._query().breakdown(("kind", "name"), status="error", order="calls",
                                         since=_since(days))  # fmt: skip
        return [{"event_type": {"tool": "mcp"}.get(g.key[0], g.key[0]), "name": g.key[1],
                 "error_count": g.summary.calls} for g in groups]  # fmt: skip

    def close(self) -> None:
        """Flush and close the ledger."""
        self.ledger.close()


def _since(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def _started(response_time_ms: float) -> datetime:
    now = datetime.now(UTC)
    try:
        return now - timedelta(milliseconds=float(response_time_ms))
    except (TypeError, ValueError, OverflowError):
        return now  # the duration itself is validated (and rejected) by the ledger


def _parent(parent_id: str | None) -> tuple[str | None, str | None]:
    """The trace and span of the event ``parent_id`` names (ids of standalone events
    embed both: see ``agentledger._ids.new_ids``)."""
    if parent_id is None:
        return None, None
    try:
        hex_ = uuid.UUID(str(parent_id)).hex
    except ValueError:
        return None, None
    return hex_, hex_[16:]


def _parent_meta(parent_id: str | None) -> dict[str, str]:
    return {"parent_event_id": str(parent_id)} if parent_id is not None else {}
