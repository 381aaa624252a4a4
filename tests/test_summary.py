"""Seed 003's metrics summary (library and `agentledger summary`) against an independent
computation over the stored events, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from agentledger import ConfigError, Event, Ledger
from agentledger.store.sql import SQLStore
from agentledger.summary import (
    metrics_summary,
    record_handoff,
    record_knowledge_search,
    to_jsonable,
)

from .cli._runner import Result, run_cli

START = datetime(2026, 11, 10, tzinfo=UTC)
END = datetime(2026, 11, 17, tzinfo=UTC)
MODELS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"),
          ("anthropic", "claude-3-5-sonnet-latest"), ("ollama", "local-llama"))  # fmt: skip
REASONS = ("consecutive_low_confidence", "customer_requested_human", "complex_issue:refund")


def _fill(url: str, seed: int = 3) -> None:
    """Customer-service traffic: conversations (sessions) of model calls, knowledge-base
    searches and hand-offs for two tenants, some events outside any session, some outside
    the window."""
    rng = random.Random(seed)
    ledger = Ledger(url, handle_signals=False, strict=True)
    for c in range(60):
        tenant = ("acme", "globex")[c % 2]
        bot = ("support-bot", "sales-bot")[c % 3 == 0]
        at = START + timedelta(minutes=167 * c + 5)
        if c >= 57:  # the last three conversations fall outside [START, END)
            at = END + timedelta(hours=c)
        who: dict[str, Any] = {"tenant_id": tenant, "bot_id": bot, "session_id": f"conv-{c}"}
        if c % 10 == 9:  # recorded outside any session: one conversation per trace
            who.pop("session_id")
        for turn in range(rng.randint(1, 4)):
            when = at + timedelta(seconds=30 * turn)
            provider, model = rng.choice(MODELS)
            prompt = rng.randrange(200, 4000)
            ledger.record_llm(
                model, prompt, rng.randrange(10, 800), provider=provider,
                cache_read_tokens=rng.choice((0, prompt // 2)), started_at=when,
                duration_ms=round(rng.uniform(150, 6000), 3),
                status="error" if rng.random() < 0.05 else "ok", **who,
            )  # fmt: skip
            roll = rng.random()
            if roll < 0.5:
                record_knowledge_search(
                    ledger, results=rng.randrange(0, 5), similarity=round(rng.random(), 4),
                    started_at=when, duration_ms=rng.uniform(5, 80), **who,
                )  # fmt: skip
            elif roll < 0.6:  # the app only knows hit / miss
                ledger.record_tool("kb", kind="retrieval", started_at=when,
                                   metadata={"hit": rng.random() < 0.5}, **who)  # fmt: skip
            elif roll < 0.7:  # the results themselves, no similarity
                found = ["a"] * rng.randrange(0, 3)
                ledger.record_tool("kb", kind="retrieval", started_at=when,
                                   metadata={"results": found}, **who)  # fmt: skip
            elif roll < 0.75:  # a search that reports nothing: a miss
                ledger.record_tool("kb", kind="retrieval", started_at=when, **who)
        if rng.random() < 0.25 or c == 4:
            record_handoff(ledger, rng.choice(REASONS), started_at=at + timedelta(minutes=3),
                           **who)  # fmt: skip
        if c == 4:  # a second hand-off in one conversation, its reason in the name
            ledger.record_tool("sentiment_negative", kind="handoff",
                               started_at=at + timedelta(minutes=4), **who)  # fmt: skip
    # A tool whose cost was reported, on no model: counted in by_model under "(none)".
    ledger.record_tool("web_search", cost_usd=Decimal("0.0125"), started_at=START,
                       tenant_id="acme", bot_id="support-bot", session_id="conv-0")  # fmt: skip
    assert ledger.close()


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] if ordered else 0.0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def expected(url: str, start: datetime, end: datetime, **filters: str) -> dict[str, Any]:
    """The summary computed in Python from every stored event."""
    store = SQLStore(url)
    rows = [e for e in store.events() if start <= e.started_at < end
            and all(getattr(e, k) == v for k, v in filters.items())]  # fmt: skip
    store.close()

    def conversation(e: Event) -> tuple[str, str]:
        return ("s", e.session_id) if e.session_id is not None else ("t", e.trace_id)

    conversations = {conversation(e) for e in rows}
    n = len(conversations)
    llm = [e.duration_ms for e in rows if e.kind == "llm"]
    tokens = sum(e.total_tokens for e in rows)
    cost = sum((e.cost_usd or Decimal(0) for e in rows), Decimal(0))
    by_model: dict[str, Decimal] = {}
    counts: dict[str, int] = {}
    for e in rows:
        key = e.model if e.model is not None else "(none)"
        by_model[key] = by_model.get(key, Decimal(0)) + (e.cost_usd or Decimal(0))
        if e.model is not None:
            counts[e.model] = counts.get(e.model, 0) + 1
    if not by_model.get("(none)"):
        by_model.pop("(none)", None)
    handoffs = [e for e in rows if e.kind == "handoff"]
    reasons: dict[str, int] = {}
    for e in handoffs:
        reason = str(e.metadata.get("reason", e.name))
        reasons[reason] = reasons.get(reason, 0) + 1
    searches = [e for e in rows if e.kind == "retrieval"]
    hits, results, similarity = 0, [], []
    for e in searches:
        found = e.metadata.get("results")
        count = len(found) if isinstance(found, list) else _number(found)
        if count is not None:
            results.append(count)
        if "hit" in e.metadata:
            hits += bool(e.metadata["hit"])
        else:
            hits += count is not None and count > 0
        if _number(e.metadata.get("similarity")) is not None:
            similarity.append(float(e.metadata["similarity"]))
    return {
        "response_time": {
            "p50_ms": _nearest_rank(llm, 50),
            "p95_ms": _nearest_rank(llm, 95),
            "p99_ms": _nearest_rank(llm, 99),
            "mean_ms": sum(llm) / len(llm),
            "min_ms": min(llm),
            "max_ms": max(llm),
            "sample_count": len(llm),
            "kind": "llm",
        },
        "token_usage": {
            "total_tokens": tokens,
            "avg_per_conversation": tokens / n,
            "conversation_count": n,
            "prompt_tokens": sum(e.input_tokens for e in rows),
            "completion_tokens": sum(e.output_tokens for e in rows),
            "cached_tokens": sum(e.cache_read_tokens for e in rows),
            "reasoning_tokens": sum(e.reasoning_tokens for e in rows),
        },
        "cost": {
            "total_usd": cost,
            "avg_per_conversation_usd": (cost / n).quantize(Decimal("1e-8")),
            "avg_per_token_usd": (cost / tokens).quantize(Decimal("1e-12")),
            "by_model": by_model,
            "unpriced_calls": sum(e.cost_source == "unpriced" for e in rows),
        },
        "handoff": {
            "total_handoffs": len(handoffs),
            "handoff_rate": len({conversation(e) for e in handoffs}) / n,
            "by_reason": reasons,
            "conversations_handed_off": len({conversation(e) for e in handoffs}),
        },
        "knowledge_base": {
            "total_searches": len(searches),
            "hit_rate": hits / len(searches),
            "avg_similarity_score": sum(similarity) / len(similarity),
            "hits": hits,
            "avg_results_per_search": sum(results) / len(results),
        },
        "model_distribution": {
            model: {"count": count, "percentage": 100 * count / sum(counts.values())}
            for model, count in counts.items()
        },
    }


def _bucket(ms: float) -> int:
    """The latency-histogram bucket (OpenTelemetry GenAI bounds) a duration falls in."""
    from bisect import bisect_left

    from agentledger._aggregates import DURATION_BOUNDS_S

    return bisect_left([b * 1000 for b in DURATION_BOUNDS_S], ms)


def _check(doc: dict[str, Any], want: dict[str, Any]) -> None:
    """Integers and money exactly, floats to rounding, dict keys and their order.

    Histogram percentiles (the default) must fall in the bucket of the exact value.
    """
    method = doc["response_time"]["percentiles"]
    assert method in ("exact", "histogram")
    for section in ("response_time", "token_usage", "cost", "handoff", "knowledge_base"):
        assert set(doc[section]) - {"percentiles"} == set(want[section]), section
        for key, value in want[section].items():
            got = doc[section][key]
            if key in ("p50_ms", "p95_ms", "p99_ms") and method == "histogram":
                assert _bucket(got) == _bucket(value), (key, got, value)
            elif isinstance(value, float):
                assert got == pytest.approx(value, rel=1e-9), (section, key)
            else:
                assert got == value, (section, key)
    assert list(doc["cost"]["by_model"].values()) == sorted(
        doc["cost"]["by_model"].values(), reverse=True
    )
    assert list(doc["handoff"]["by_reason"].values()) == sorted(
        doc["handoff"]["by_reason"].values(), reverse=True
    )
    assert set(doc["model_distribution"]) == set(want["model_distribution"])
    for model, info in want["model_distribution"].items():
        assert doc["model_distribution"][model]["count"] == info["count"]
        assert doc["model_distribution"][model]["percentage"] == pytest.approx(info["percentage"])
        assert doc["model_distribution"][model]["cost_usd"] == doc["cost"]["by_model"][model]


@pytest.fixture
def filled(db_url: str) -> str:
    _fill(db_url)
    return db_url


@pytest.mark.parametrize("exact", [True, False])
def test_summary_equals_an_independent_computation(filled: str, exact: bool) -> None:
    """Every figure equals the one computed in Python from the stored events."""
    doc = metrics_summary(filled, since=START, until=END, exact_percentiles=exact)
    assert doc["response_time"]["percentiles"] == ("exact" if exact else "histogram")
    want = expected(filled, START, END)
    _check(doc, want)
    # The data exercises every path: errors, unpriced calls, several reasons, hits and misses.
    assert doc["cost"]["unpriced_calls"] > 0
    assert doc["cost"]["by_model"]["(none)"] == Decimal("0.0125")
    assert sum(doc["cost"]["by_model"].values()) == doc["cost"]["total_usd"]
    assert len(doc["handoff"]["by_reason"]) >= 3
    assert doc["handoff"]["total_handoffs"] > doc["handoff"]["conversations_handed_off"]
    assert 0 < doc["knowledge_base"]["hit_rate"] < 1
    assert doc["since"] == START
    assert doc["until"] == END
    assert doc["filters"] == {}


def test_per_tenant_and_bot(filled: str) -> None:
    """--tenant (and --bot) narrow every figure; tenants add up to the whole."""
    whole = metrics_summary(filled, since=START, until=END)
    parts = []
    for tenant in ("acme", "globex"):
        doc = metrics_summary(filled, since=START, until=END, tenant_id=tenant)
        _check(doc, expected(filled, START, END, tenant_id=tenant))
        assert doc["filters"] == {"tenant_id": tenant}
        parts.append(doc)
    assert sum(p["cost"]["total_usd"] for p in parts) == whole["cost"]["total_usd"]
    assert (
        sum(p["token_usage"]["conversation_count"] for p in parts)
        == (whole["token_usage"]["conversation_count"])
    )
    doc = metrics_summary(filled, since=START, until=END, tenant_id="acme", bot_id="sales-bot")
    _check(doc, expected(filled, START, END, tenant_id="acme", bot_id="sales-bot"))


def test_days_counts_back_from_now(filled: str) -> None:
    """`days` is the window ending now (or at `until`)."""
    doc = metrics_summary(filled, days=3, now=END)
    _check(doc, expected(filled, END - timedelta(days=3), END))
    assert doc["until"] - doc["since"] == timedelta(days=3)


def test_empty_window_is_all_zeros(sqlite_url: str) -> None:
    """No events: zeros, not errors or NaN; and a Query or a store works as the source."""
    from agentledger.query import Query

    store = SQLStore(sqlite_url)
    for source in (store, Query(store)):
        doc = metrics_summary(source, days=1)
        assert doc["response_time"]["sample_count"] == 0
        assert doc["response_time"]["p99_ms"] == 0.0
        assert doc["token_usage"]["avg_per_conversation"] == 0.0
        assert doc["cost"]["total_usd"] == Decimal(0)
        assert doc["handoff"]["handoff_rate"] == 0.0
        assert doc["knowledge_base"]["hit_rate"] == 0.0
        assert doc["model_distribution"] == {}
        assert doc["cost"]["by_model"] == {}
    store.close()


def test_seed_keys_and_json(filled: str) -> None:
    """The seed's example keys are all there; JSON has money as exact strings."""
    doc = to_jsonable(metrics_summary(filled, since=START, until=END))
    seed = {
        "response_time": {"p50_ms", "p95_ms", "p99_ms", "mean_ms", "sample_count"},
        "token_usage": {"total_tokens", "avg_per_conversation", "conversation_count"},
        "cost": {"total_usd", "avg_per_conversation_usd", "by_model"},
        "handoff": {"total_handoffs", "handoff_rate", "by_reason"},
        "knowledge_base": {"total_searches", "hit_rate", "avg_similarity_score"},
    }
    for section, keys in seed.items():
        assert keys <= set(doc[section])
    assert isinstance(doc["cost"]["total_usd"], str)
    assert all(isinstance(v, str) for v in doc["cost"]["by_model"].values())
    assert json.loads(json.dumps(doc)) == doc
    assert doc["since"] == START.isoformat()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"days": 0}, "days", id="zero-days"),
        pytest.param({"days": float("nan")}, "days", id="nan-days"),
        pytest.param({"since": END, "until": START}, "before", id="reversed"),
        pytest.param({"since": datetime(2026, 1, 1)}, "timezone", id="naive"),
        pytest.param({"response_kind": "nope"}, "response_kind", id="bad-kind"),
    ],
)
def test_bad_arguments_raise_config_error(
    sqlite_url: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        metrics_summary(sqlite_url, **kwargs)


# --- through the CLI --------------------------------------------------------------------------


def _cli(*args: str) -> Result:
    return run_cli(*args)


def _decimals(doc: dict[str, Any]) -> dict[str, Any]:
    cost = doc["cost"]
    for key in ("total_usd", "avg_per_conversation_usd", "avg_per_token_usd"):
        cost[key] = Decimal(cost[key])
    cost["by_model"] = {k: Decimal(v) for k, v in cost["by_model"].items()}
    for info in doc["model_distribution"].values():
        info["cost_usd"] = Decimal(info["cost_usd"])
    return doc


def test_cli_summary_json_equals_the_independent_computation(filled: str) -> None:
    """`agentledger summary -f json` gives the same document, per tenant too."""
    window = ["--since", START.isoformat(), "--until", END.isoformat()]
    result = _cli("summary", "--db", filled, "--format", "json", *window)
    assert result.returncode == 0, result.stderr
    _check(_decimals(json.loads(result.stdout)), expected(filled, START, END))
    result = _cli("summary", "--db", filled, "-f", "json", "--tenant", "globex", *window)
    doc = json.loads(result.stdout)
    assert doc["filters"] == {"tenant_id": "globex"}
    _check(_decimals(doc), expected(filled, START, END, tenant_id="globex"))


def test_cli_summary_table(filled: str) -> None:
    """The table shows each section, the exact total to the cent and the models."""
    result = _cli("summary", "--db", filled, "--since", "2026-11-10", "--until", "2026-11-17",
                  "--tenant", "acme")  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = metrics_summary(filled, since=START, until=END, tenant_id="acme")
    out = result.stdout
    assert "Metrics summary, 2026-11-10 00:00 to 2026-11-17 00:00, tenant acme" in out
    for text in ("Response time (llm)", "Token usage", "Cost", "Hand-offs", "Knowledge base",
                 "Models", "gpt-4o-mini", "(no model)"):  # fmt: skip
        assert text in out
    assert f"${doc['cost']['total_usd']:,.4f}" in out
    assert f"{doc['response_time']['sample_count']:,}" in out
    for reason in doc["handoff"]["by_reason"]:
        assert f"reason: {reason}" in out
