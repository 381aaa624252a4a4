"""Seed 003's metrics summary, read from the store: one function for the CLI and the REST API.

::

    from agentledger.summary import metrics_summary, to_jsonable

    doc = metrics_summary("sqlite:///usage.db", days=7, tenant_id="acme")
    doc["cost"]["total_usd"]            # Decimal("2.5"), exact
    doc["handoff"]["handoff_rate"]      # 0.15
    json.dumps(to_jsonable(doc))        # money as decimal strings

The document has seed 003's keys (``response_time``, ``token_usage``, ``cost``, ``handoff``,
``knowledge_base``) with the fields its example shows, plus the ones its text lists (min and
max latency, tokens by type, cost per token, results per search) and ``model_distribution``.
It is computed from the ``events`` table, so it covers every process writing to the store.

Conventions (see docs/guide.md, "Customer-service metrics"):

* a **conversation** is a ``session_id``; events recorded outside any session count one
  conversation per trace. Seed 003's ``conversation_id`` goes in ``session_id``.
* a **hand-off** is an event of kind ``"handoff"``; its reason is ``metadata["reason"]``,
  else the event's name (:func:`record_handoff`).
* a **knowledge-base search** is an event of kind ``"retrieval"`` with ``metadata["results"]``
  (a count, or the list of results), optionally ``metadata["similarity"]`` (the best match's
  score) and ``metadata["hit"]`` (overrides ``results > 0``) (:func:`record_knowledge_search`).
* **response time** is the duration of ``kind="llm"`` events unless ``response_kind`` says
  otherwise (for example ``"command"`` when each reply is a command span).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import ColumnElement, and_, case, func, select

from .errors import ConfigError
from .events import KINDS
from .query import Query
from .store.schema import events
from .store.sql import SQLStore

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = [
    "HANDOFF_KIND",
    "KNOWLEDGE_KIND",
    "metrics_summary",
    "record_handoff",
    "record_knowledge_search",
    "to_jsonable",
]

HANDOFF_KIND: Final = "handoff"
KNOWLEDGE_KIND: Final = "retrieval"
NO_MODEL: Final = "(none)"  # by_model key for cost recorded on events without a model
_PER_CONVERSATION: Final = Decimal("1e-8")  # the scale of stored costs
_PER_TOKEN: Final = Decimal("1e-12")
_QUANTILES: Final = (50.0, 95.0, 99.0)


def metrics_summary(
    source: Query | SQLStore | str,
    *,
    days: float = 7.0,
    since: datetime | None = None,
    until: datetime | None = None,
    tenant_id: str | None = None,
    bot_id: str | None = None,
    user_id: str | None = None,
    response_kind: str = "llm",
    now: datetime | None = None,
    exact_percentiles: bool = False,
) -> dict[str, Any]:
    """Seed 003's metrics summary over ``[since, until)`` (default: the last ``days`` days).

    Response-time percentiles come from the rollups' latency histograms (interpolated in
    the bucket that holds the rank: the same bucket as the exact value, in milliseconds
    instead of seconds over millions of events); ``exact_percentiles=True`` reads every
    duration for nearest-rank values.

    ``source`` is a :class:`~agentledger.query.Query`, a store or a database URL (opened and
    closed here). Filters narrow every figure (``tenant_id=`` gives seed 003's per-tenant
    summary). Money is exact :class:`~decimal.Decimal`; :func:`to_jsonable` turns it into
    strings. Averages and rates over nothing are 0.
    """
    if response_kind not in KINDS:
        raise ConfigError(f"response_kind must be one of {sorted(KINDS)}, got {response_kind!r}")
    end = _aware(until, "until") if until is not None else (now or datetime.now(UTC))
    if since is not None:
        start = _aware(since, "since")
    else:
        if not (isinstance(days, (int, float)) and math.isfinite(days) and days > 0):
            raise ConfigError(f"days must be a positive number, got {days!r}")
        start = end - timedelta(days=days)
    if start >= end:
        raise ConfigError("since must be before until")
    given = {"tenant_id": tenant_id, "bot_id": bot_id, "user_id": user_id}
    filters = {k: v for k, v in given.items() if v is not None}

    if isinstance(source, str):
        query = Query.open(source)
        try:
            return _summary(query, start, end, filters, response_kind, exact_percentiles)
        finally:
            query.close()
    query = source if isinstance(source, Query) else Query(source)
    return _summary(query, start, end, filters, response_kind, exact_percentiles)


def _summary(
    q: Query,
    start: datetime,
    end: datetime,
    filters: dict[str, str],
    response_kind: str,
    exact: bool,
) -> dict[str, Any]:
    where = _where(start, end, filters)
    window: dict[str, Any] = {"since": start, "until": end, **filters}
    totals = q.totals(**window)
    conversations, handed_off = _conversations(q, where)
    models = q.breakdown("model", **window)

    # --- response time ---------------------------------------------------------------------
    kind_where = [*where, events.c.kind == response_kind]
    count, mean, low, high = _run(q, select(
        func.count(), func.avg(events.c.duration_ms), func.min(events.c.duration_ms),
        func.max(events.c.duration_ms),
    ).where(and_(True, *kind_where)))[0]  # fmt: skip
    if exact:
        ranks = _percentiles(q, kind_where, int(count))
    else:
        ranks = q.percentiles(_QUANTILES, kind=response_kind, **window) if count else {}
    response_time = {
        "p50_ms": ranks.get(50.0, 0.0), "p95_ms": ranks.get(95.0, 0.0),
        "p99_ms": ranks.get(99.0, 0.0), "mean_ms": float(mean or 0.0),
        "min_ms": float(low or 0.0), "max_ms": float(high or 0.0),
        "sample_count": int(count), "kind": response_kind,
        "percentiles": "exact" if exact else "histogram",
    }  # fmt: skip

    # --- tokens and cost -------------------------------------------------------------------
    total_tokens = totals.total_tokens
    cost = totals.cost_usd
    token_usage = {
        "total_tokens": total_tokens,
        "avg_per_conversation": total_tokens / conversations if conversations else 0.0,
        "conversation_count": conversations,
        "prompt_tokens": totals.input_tokens,
        "completion_tokens": totals.output_tokens,
        "cached_tokens": totals.cache_read_tokens,
        "reasoning_tokens": totals.reasoning_tokens,
    }
    by_model: dict[str, Decimal] = {}
    distribution: dict[str, dict[str, Any]] = {}
    model_calls = sum(g.summary.calls for g in models if g.key[0] is not None)
    for group in models:
        model, summary = group.key[0], group.summary
        if model is None:
            if summary.cost_usd:
                by_model[NO_MODEL] = summary.cost_usd
            continue
        by_model[model] = summary.cost_usd
        distribution[model] = {
            "count": summary.calls,
            "percentage": 100.0 * summary.calls / model_calls,
            "cost_usd": summary.cost_usd,
            "total_tokens": summary.total_tokens,
        }
    cost_doc = {
        "total_usd": cost,
        "avg_per_conversation_usd": (
            (cost / conversations).quantize(_PER_CONVERSATION) if conversations else Decimal(0)
        ),
        "avg_per_token_usd": (
            (cost / total_tokens).quantize(_PER_TOKEN) if total_tokens else Decimal(0)
        ),
        "by_model": by_model,
        "unpriced_calls": totals.unpriced_calls,
    }

    # --- hand-offs and knowledge-base searches -------------------------------------------------
    reasons = _handoff_reasons(q, where)
    handoffs = sum(reasons.values())
    handoff = {
        "total_handoffs": handoffs,
        "handoff_rate": handed_off / conversations if conversations else 0.0,
        "by_reason": reasons,
        "conversations_handed_off": handed_off,
    }
    return {
        "since": start,
        "until": end,
        "filters": dict(filters),
        "response_time": response_time,
        "token_usage": token_usage,
        "cost": cost_doc,
        "handoff": handoff,
        "knowledge_base": _knowledge_base(q, where),
        "model_distribution": distribution,
    }


def _where(start: datetime, end: datetime, filters: Mapping[str, str]) -> list[ColumnElement[bool]]:
    clauses = [events.c.started_at >= start, events.c.started_at < end]
    clauses.extend(events.c[name] == value for name, value in filters.items())
    return clauses


def _run(q: Query, statement: Any) -> list[Any]:
    with q.store.engine.connect() as conn:
        return list(conn.execute(statement))


def _percentiles(q: Query, where: list[ColumnElement[bool]], count: int) -> dict[float, float]:
    """Exact nearest-rank percentiles of ``duration_ms``, one row read per quantile.

    (``Query.percentiles`` may answer from latency histograms; the seed's figures are exact.)
    """
    out: dict[float, float] = {}
    if not count:
        return out
    for quantile in _QUANTILES:
        rank = max(1, math.ceil(quantile / 100 * count))  # 1-based, ascending
        ascending = rank - 1 <= count - rank  # read from whichever end is nearer
        order = events.c.duration_ms if ascending else events.c.duration_ms.desc()
        statement = (
            select(events.c.duration_ms)
            .where(and_(True, *where))
            .order_by(order)
            .limit(1)
            .offset(rank - 1 if ascending else count - rank)
        )
        rows = _run(q, statement)
        out[quantile] = float(rows[0][0]) if rows else 0.0
    return out


def _conversation_counts() -> list[Any]:
    """COUNT(DISTINCT session) + COUNT(DISTINCT trace of events outside any session)."""
    c = events.c
    return [
        func.count(func.distinct(c.session_id)),
        func.count(func.distinct(case((c.session_id.is_(None), c.trace_id)))),
    ]


def _conversations(q: Query, where: list[ColumnElement[bool]]) -> tuple[int, int]:
    """Conversations in the window, and how many of them were handed off."""
    every = _run(q, select(*_conversation_counts()).where(and_(True, *where)))[0]
    handed = _run(q, select(*_conversation_counts()).where(
        and_(True, *where, events.c.kind == HANDOFF_KIND)))[0]  # fmt: skip
    return int(every[0]) + int(every[1]), int(handed[0]) + int(handed[1])


def _handoff_reasons(q: Query, where: list[ColumnElement[bool]]) -> dict[str, int]:
    reason = func.coalesce(events.c.metadata["reason"].as_string(), events.c.name).label("r")
    statement = (
        select(reason, func.count())
        .where(and_(True, *where, events.c.kind == HANDOFF_KIND))
        .group_by(reason)
    )
    rows = sorted(_run(q, statement), key=lambda r: (-int(r[1]), str(r[0])))
    return {str(r[0]): int(r[1]) for r in rows}


def _knowledge_base(q: Query, where: list[ColumnElement[bool]]) -> dict[str, Any]:
    """Streamed in Python: metadata values are whatever the app wrote, parsed leniently."""
    meta = events.c.metadata
    statement = select(
        meta["results"].as_string(), meta["similarity"].as_string(), meta["hit"].as_string()
    ).where(and_(True, *where, events.c.kind == KNOWLEDGE_KIND))
    searches = hits = 0
    results_total, results_n = 0.0, 0
    similarity_total, similarity_n = 0.0, 0
    with q.store.engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=5000).execute(statement)
        for raw_results, raw_similarity, raw_hit in rows:
            searches += 1
            results = _count(raw_results)
            similarity = _number(raw_similarity)
            hit = _flag(raw_hit)
            if hit is None:
                hit = results is not None and results > 0
            hits += hit
            if results is not None:
                results_total += results
                results_n += 1
            if similarity is not None:
                similarity_total += similarity
                similarity_n += 1
    return {
        "total_searches": searches,
        "hit_rate": hits / searches if searches else 0.0,
        "avg_similarity_score": similarity_total / similarity_n if similarity_n else 0.0,
        "hits": hits,
        "avg_results_per_search": results_total / results_n if results_n else 0.0,
    }


def _number(raw: Any) -> float | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _count(raw: Any) -> float | None:
    """``results`` as a count: a number, or the length of a JSON list of results."""
    value = _number(raw)
    if value is not None or not isinstance(raw, str):
        return value
    try:
        loaded = json.loads(raw)
    except ValueError:
        return None
    return float(len(loaded)) if isinstance(loaded, list) else None


def _flag(raw: Any) -> bool | None:
    if raw is None:
        return None
    text = str(raw).strip().lower()
    if text in ("true", "1"):  # SQLite's json_extract gives 1/0 for JSON booleans
        return True
    if text in ("false", "0"):
        return False
    return None


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ConfigError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def to_jsonable(doc: Any) -> Any:
    """The summary (or any part of it) ready for ``json.dumps``: Decimal money as exact
    strings, datetimes as ISO 8601."""
    if isinstance(doc, Mapping):
        return {str(k): to_jsonable(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [to_jsonable(v) for v in doc]
    if isinstance(doc, Decimal):
        return str(doc)
    if isinstance(doc, datetime):
        return doc.isoformat()
    return doc


# --- recording helpers: the conventions above, on any Ledger --------------------------------


def record_handoff(
    ledger: Ledger, reason: str, *, name: str = "handoff", **fields: Any
) -> str | None:
    """Record a hand-off to a human (kind ``"handoff"``, ``metadata["reason"]``).

    ``fields`` go to ``ledger.record_tool`` (``session_id=``, ``duration_ms=``,
    ``metadata=`` ...); returns the event id like every recorder.
    """
    metadata = {**dict(fields.pop("metadata", None) or {}), "reason": reason}
    return ledger.record_tool(name, kind=HANDOFF_KIND, metadata=metadata, **fields)


def record_knowledge_search(
    ledger: Ledger,
    *,
    results: int,
    similarity: float | None = None,
    name: str = "knowledge_search",
    **fields: Any,
) -> str | None:
    """Record a knowledge-base search (kind ``"retrieval"``): how many results it returned
    and the best match's similarity score. ``fields`` go to ``ledger.record_tool``."""
    metadata = {**dict(fields.pop("metadata", None) or {}), "results": results}
    if similarity is not None:
        metadata["similarity"] = similarity
    return ledger.record_tool(name, kind=KNOWLEDGE_KIND, metadata=metadata, **fields)
