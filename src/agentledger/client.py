"""Seed 001's tracked LLM client: ``LLMClient(task_id=..., user_id=...)``.

::

    client = LLMClient(task_id="task-123", user_id="user-456")
    response = client.chat_completion(messages=[...], model="gpt-4o", temperature=0.7)
    limits = client.check_usage_limits(max_cost_per_task=10.0, max_cost_per_user=100.0)
    if not limits["within_limits"]:
        ...

Calls go through the official ``openai`` SDK (``pip install 'agentledger[openai]'``) and are
recorded by :mod:`agentledger.integrations.openai` with the client's task and user. Usage
and limits are read from the store, so they cover every process and host writing to it,
not just this object's memory.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ._default import get_ledger
from .errors import ConfigError
from .ledger import Ledger
from .query import Query, Summary
from .scope import scope

__all__ = ["LLMClient"]


class LLMClient:
    """An OpenAI chat client whose every call is recorded against a task and a user."""

    def __init__(
        self,
        task_id: str | None = None,
        user_id: str | None = None,
        *,
        client: Any = None,
        ledger: Ledger | None = None,
        **openai_options: Any,
    ) -> None:
        from .integrations.openai import wrap

        if client is None:
            try:
                import openai
            except ImportError:
                raise ConfigError(
                    "LLMClient needs openai: pip install 'agentledger[openai]'"
                ) from None
            client = openai.OpenAI(**openai_options)
        self.task_id = task_id
        self.user_id = user_id
        self.ledger = ledger if ledger is not None else get_ledger()
        self.client = wrap(client, ledger=self.ledger)

    def chat_completion(self, messages: list[dict[str, Any]], model: str = "gpt-4o-mini",
                        **kwargs: Any) -> Any:  # fmt: skip
        """``client.chat.completions.create(messages=..., model=..., **kwargs)``, recorded."""
        with scope(task_id=self.task_id, user_id=self.user_id):
            return self.client.chat.completions.create(messages=messages, model=model, **kwargs)

    # --- usage, read from the store ----------------------------------------------------------
    def _query(self) -> Query:
        self.ledger.flush()
        store = self.ledger.store
        if store is None or not hasattr(store, "engine"):
            raise ConfigError("usage queries need a ledger with a SQL database")
        return Query(store)  # type: ignore[arg-type]

    def get_task_usage(self) -> dict[str, Any]:
        """This task's LLM usage so far (every process that recorded it)."""
        if self.task_id is None:
            raise ConfigError("this LLMClient has no task_id")
        return {"task_id": self.task_id,
                **_usage(self._query().totals(kind="llm", task_id=self.task_id))}  # fmt: skip

    def get_user_usage(self, days: int = 30) -> dict[str, Any]:
        """This user's LLM usage over the last ``days`` days."""
        if self.user_id is None:
            raise ConfigError("this LLMClient has no user_id")
        since = datetime.now(UTC) - timedelta(days=days)
        totals = self._query().totals(kind="llm", user_id=self.user_id, since=since)
        return {"user_id": self.user_id, "days": days, **_usage(totals)}

    def check_usage_limits(
        self,
        max_cost_per_task: float | Decimal | None = None,
        max_cost_per_user: float | Decimal | None = None,
        *,
        user_days: int = 30,
    ) -> dict[str, Any]:
        """Whether the task and user are within their cost limits, with the deciding figures.

        Returns ``{"within_limits": bool, "task_cost_usd", "max_cost_per_task",
        "user_cost_usd", "max_cost_per_user", "violations": [...]}``; costs are Decimal.
        """
        result: dict[str, Any] = {"within_limits": True, "violations": []}
        checks = (("task", max_cost_per_task, self.task_id),
                  ("user", max_cost_per_user, self.user_id))  # fmt: skip
        for who, limit, ident in checks:
            if limit is None:
                continue
            if ident is None:
                raise ConfigError(f"max_cost_per_{who} given but this LLMClient has no {who}_id")
            usage = self.get_task_usage() if who == "task" else self.get_user_usage(user_days)
            cost: Decimal = usage["total_cost_usd"]
            cap = Decimal(str(limit))
            result[f"{who}_cost_usd"] = cost
            result[f"max_cost_per_{who}"] = cap
            if cost > cap:
                result["within_limits"] = False
                result["violations"].append(
                    f"{who} {ident} spent ${cost.normalize():f} of a ${cap.normalize():f} limit"
                )
        return result


def _usage(s: Summary) -> dict[str, Any]:
    return {
        "total_calls": s.calls, "errors": s.errors, "prompt_tokens": s.input_tokens,
        "completion_tokens": s.output_tokens, "total_tokens": s.total_tokens,
        "cached_tokens": s.cache_read_tokens, "total_cost_usd": s.cost_usd,
        "unpriced_calls": s.unpriced_calls, "avg_latency_ms": s.avg_duration_ms,
    }  # fmt: skip
