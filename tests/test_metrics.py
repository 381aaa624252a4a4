"""agentledger.metrics: seed 000's per-bot metrics API, exactly."""

from __future__ import annotations

import inspect
import math
import threading
from decimal import Decimal
from types import SimpleNamespace

import pytest

from agentledger import InvalidEvent, metrics
from agentledger.testing import capture_events, memory_ledger

M = "claude-3-5-sonnet-latest"
P = "anthropic"

# The seed's signatures: (name, [(parameter, default or EMPTY)]).
EMPTY = inspect.Parameter.empty
SEED_SIGNATURES = {
    "record_tokens": [
        ("input_tokens", EMPTY),
        ("output_tokens", EMPTY),
        ("provider", EMPTY),
        ("model", EMPTY),
        ("cached_tokens", 0),
        ("bot_id", None),
    ],
    "record_cost": [("cost", EMPTY), ("provider", EMPTY), ("model", EMPTY), ("bot_id", None)],
    "record_api_call": [
        ("duration", EMPTY),
        ("provider", EMPTY),
        ("model", EMPTY),
        ("status", "success"),
        ("bot_id", None),
    ],
    "record_tool_execution": [
        ("duration", EMPTY),
        ("tool_name", EMPTY),
        ("success", True),
        ("bot_id", None),
    ],
    "record_message_building": [
        ("duration", EMPTY),
        ("provider", EMPTY),
        ("model", EMPTY),
        ("bot_id", None),
    ],
    "record_response_time": [
        ("duration", EMPTY),
        ("provider", EMPTY),
        ("model", EMPTY),
        ("success", True),
        ("bot_id", None),
    ],
    "record_error": [
        ("error_type", EMPTY),
        ("provider", EMPTY),
        ("operation", EMPTY),
        ("bot_id", None),
    ],
    "record_tool_failure": [("tool_name", EMPTY), ("error_type", EMPTY), ("bot_id", None)],
    "get_bot_tokens": [("bot_id", EMPTY), ("since_timestamp", 0.0)],
    "get_bot_cost": [("bot_id", EMPTY), ("since_timestamp", 0.0)],
    "clear_bot_metrics": [("bot_id", EMPTY)],
    "get_all_bot_ids": [],
    "get_and_clear_last_metrics": [("bot_id", None)],
    "get_total_tokens": [("since_timestamp", 0.0)],
    "get_total_cost": [("since_timestamp", 0.0)],
    "reset_metrics": [],
}


@pytest.mark.parametrize(
    ("name", "params"), [pytest.param(n, p, id=n) for n, p in SEED_SIGNATURES.items()]
)
def test_seed_function_has_exact_signature(name, params):
    """Each seed function exists with the seed's parameter names, order and defaults."""
    fn = getattr(metrics, name)
    assert callable(fn)
    sig = inspect.signature(fn)
    assert [(p.name, p.default) for p in sig.parameters.values()] == params
    for p in sig.parameters.values():
        assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    for pname, default in params:
        if default is not EMPTY:
            assert type(sig.parameters[pname].default) is type(default)


def test_seed_functions_are_exported():
    """metrics.__all__ lists every seed function."""
    assert set(SEED_SIGNATURES) <= set(metrics.__all__)


def test_return_shapes_when_empty():
    """Empty queries return the seed's shapes with zeros."""
    zero_tokens = {"input": 0, "output": 0, "cached": 0, "total": 0}
    assert metrics.get_bot_tokens("nobody") == zero_tokens
    assert metrics.get_total_tokens() == zero_tokens
    cost = metrics.get_bot_cost("nobody")
    assert cost == 0.0
    assert isinstance(cost, float)
    assert isinstance(metrics.get_total_cost(), float)
    assert metrics.get_all_bot_ids() == []
    last = metrics.get_and_clear_last_metrics()
    assert last == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_tokens": 0,
        "cost": 0.0,
        "duration": 0.0,
    }
    assert metrics.get_and_clear_last_metrics("nobody") == last
    assert metrics.clear_bot_metrics("nobody") is None
    assert metrics.reset_metrics() is None


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: metrics.record_tokens(1, 2, P, M), id="record_tokens"),
        pytest.param(lambda: metrics.record_cost(0.1, P, M), id="record_cost"),
        pytest.param(lambda: metrics.record_api_call(0.5, P, M), id="record_api_call"),
        pytest.param(lambda: metrics.record_tool_execution(0.5, "t"), id="record_tool_execution"),
        pytest.param(lambda: metrics.record_message_building(0.1, P, M), id="message_building"),
        pytest.param(lambda: metrics.record_response_time(1.0, P, M), id="record_response_time"),
        pytest.param(lambda: metrics.record_error("E", P, "respond"), id="record_error"),
        pytest.param(lambda: metrics.record_tool_failure("t", "E"), id="record_tool_failure"),
    ],
)
def test_recorders_return_none_and_count(call):
    """Every recorder returns None and counts one recorded call."""
    assert call() is None
    assert metrics.stats()["recorded"] == 1
    assert metrics.stats()["rejected"] == 0


def test_get_bot_tokens_total_is_input_output_cached():
    """get_bot_tokens: total == input + output + cached."""
    metrics.record_tokens(1000, 500, P, M, cached_tokens=200, bot_id="b")
    metrics.record_tokens(10, 5, P, M, bot_id="b")
    t = metrics.get_bot_tokens("b")
    assert t == {"input": 1010, "output": 505, "cached": 200, "total": 1715}
    assert t["total"] == t["input"] + t["output"] + t["cached"]


def test_seed_basic_example():
    """The seed's basic example: 1000/500 tokens and $0.015 for bot_1."""
    start = metrics.time.time() - 0.001
    metrics.record_tokens(input_tokens=1000, output_tokens=500, provider=P, model=M, bot_id="bot_1")
    metrics.record_cost(cost=0.015, provider=P, model=M, bot_id="bot_1")
    assert metrics.get_bot_tokens("bot_1", start)["total"] == 1500
    assert metrics.get_bot_cost("bot_1", start) == 0.015


@pytest.fixture
def clock(monkeypatch):
    """A controllable metrics clock."""
    now = [1000.0]
    monkeypatch.setattr(metrics, "time", SimpleNamespace(time=lambda: now[0]))
    return now


def test_since_timestamp_is_strictly_greater_than(clock):
    """since_timestamp excludes records made exactly at it (strict >)."""
    clock[0] = 1000.0
    metrics.record_tokens(1, 1, P, M, bot_id="b")
    metrics.record_cost(0.5, P, M, bot_id="b")
    clock[0] = 2000.0
    metrics.record_tokens(10, 10, P, M, bot_id="b")
    metrics.record_cost(0.25, P, M, bot_id="b")
    assert metrics.get_bot_tokens("b", 1000.0)["input"] == 10
    assert metrics.get_bot_cost("b", 1000.0) == 0.25
    assert metrics.get_bot_tokens("b", 999.999)["input"] == 11
    assert metrics.get_bot_cost("b", 999.999) == 0.75
    assert metrics.get_bot_tokens("b", 2000.0)["total"] == 0
    assert metrics.get_bot_cost("b", 2000.0) == 0.0
    assert metrics.get_total_tokens(1000.0)["input"] == 10
    assert metrics.get_total_cost(1000.0) == 0.25
    assert metrics.get_total_cost(0.0) == 0.75


def test_bots_do_not_steal_each_others_metrics():
    """The seed's stealing scenario: A's get_and_clear never returns B's figures."""
    metrics.record_tokens(100, 0, P, M, bot_id="bot_a")
    metrics.record_cost(0.015, P, M, bot_id="bot_a")
    metrics.record_tokens(200, 0, P, M, bot_id="bot_b")
    metrics.record_cost(0.025, P, M, bot_id="bot_b")
    a = metrics.get_and_clear_last_metrics(bot_id="bot_a")
    assert (a["input_tokens"], a["cost"]) == (100, 0.015)
    b = metrics.get_and_clear_last_metrics(bot_id="bot_b")
    assert (b["input_tokens"], b["cost"]) == (200, 0.025)
    assert metrics.get_bot_cost("bot_a") == 0.015
    assert metrics.get_bot_cost("bot_b") == 0.025


def test_get_and_clear_accumulates_since_previous_clear():
    """get_and_clear returns everything since the previous clear, then nothing."""
    metrics.record_tokens(10, 20, P, M, cached_tokens=3, bot_id="b")
    metrics.record_tokens(1, 2, P, M, bot_id="b")
    metrics.record_cost(0.5, P, M, bot_id="b")
    metrics.record_api_call(1.5, P, M, bot_id="b")
    first = metrics.get_and_clear_last_metrics("b")
    assert first == {
        "input_tokens": 11,
        "output_tokens": 22,
        "cached_tokens": 3,
        "cost": 0.5,
        "duration": 1.5,
    }
    assert metrics.get_and_clear_last_metrics("b")["input_tokens"] == 0
    metrics.record_tokens(7, 0, P, M, bot_id="b")
    assert metrics.get_and_clear_last_metrics("b")["input_tokens"] == 7
    # history is kept: time-filtered queries still see everything
    assert metrics.get_bot_tokens("b")["input"] == 18


def test_sum_of_all_clears_equals_everything_recorded():
    """Interleaved records and clears: the clears add up to exactly what was recorded."""
    got_in = got_cost = 0
    for i in range(50):
        metrics.record_tokens(i, 2 * i, P, M, bot_id="b")
        metrics.record_cost((i + 1) / 64, P, M, bot_id="b")  # dyadic: sums are exact
        if i % 7 == 0:
            last = metrics.get_and_clear_last_metrics("b")
            got_in += last["input_tokens"]
            got_cost += last["cost"]
    last = metrics.get_and_clear_last_metrics("b")
    got_in += last["input_tokens"]
    got_cost += last["cost"]
    assert got_in == sum(range(50))
    assert got_cost == sum(range(1, 51)) / 64


def test_global_clear_does_not_clear_bot_views():
    """The global get_and_clear has its own cursor; bot views keep theirs."""
    metrics.record_tokens(100, 50, P, M, bot_id="a")
    metrics.record_tokens(1, 1, P, M)  # no bot
    g = metrics.get_and_clear_last_metrics()
    assert g["input_tokens"] == 101  # the global view covers every record
    assert metrics.get_and_clear_last_metrics()["input_tokens"] == 0
    assert metrics.get_and_clear_last_metrics("a")["input_tokens"] == 100


def test_bot_clear_does_not_clear_global_view():
    """A bot's get_and_clear leaves the global view untouched."""
    metrics.record_cost(0.25, P, M, bot_id="a")
    assert metrics.get_and_clear_last_metrics("a")["cost"] == 0.25
    assert metrics.get_and_clear_last_metrics()["cost"] == 0.25


def test_clear_bot_metrics_forgets_only_that_bot():
    """clear_bot_metrics(bot) zeroes that bot; others and global totals are kept."""
    metrics.record_cost(0.015, P, M, bot_id="temporary_bot")
    metrics.record_cost(0.5, P, M, bot_id="other")
    assert metrics.get_bot_cost("temporary_bot") == 0.015
    metrics.clear_bot_metrics("temporary_bot")
    assert metrics.get_bot_cost("temporary_bot") == 0.0
    assert metrics.get_bot_tokens("temporary_bot")["total"] == 0
    assert metrics.get_all_bot_ids() == ["other"]
    assert metrics.get_bot_cost("other") == 0.5
    assert metrics.get_total_cost() == 0.515


def test_get_all_bot_ids_in_first_seen_order():
    """get_all_bot_ids lists every bot that recorded (not records without a bot)."""
    metrics.record_cost(0.1, P, M, bot_id="z")
    metrics.record_tokens(1, 1, P, M, bot_id="a")
    metrics.record_cost(0.1, P, M)
    metrics.record_cost(0.1, P, M, bot_id="z")
    ids = metrics.get_all_bot_ids()
    assert ids == ["z", "a"]
    assert isinstance(ids, list)


def test_reset_metrics_clears_everything():
    """reset_metrics clears bots, global history and counters."""
    metrics.record_tokens(1, 1, P, M, bot_id="a")
    metrics.record_cost("bad", P, M)
    metrics.reset_metrics()
    assert metrics.get_all_bot_ids() == []
    assert metrics.get_total_tokens()["total"] == 0
    assert metrics.get_total_cost() == 0.0
    assert metrics.stats()["recorded"] == 0
    assert metrics.stats()["rejected"] == 0


def test_mixed_global_and_per_bot_tracking():
    """Records without bot_id count globally; get_total_cost includes bot records."""
    metrics.record_cost(0.015, P, "claude", bot_id="bot_1")
    metrics.record_cost(0.025, P, "claude")
    assert metrics.get_bot_cost("bot_1") == 0.015
    assert metrics.get_total_cost(0.0) == 0.04


def test_seed_concurrent_example_exact():
    """The seed's 5 threads x 10 calls example: exact per-bot costs and tokens."""

    def bot_worker(bot_id: str, num_calls: int) -> None:
        for i in range(num_calls):
            metrics.record_tokens(
                input_tokens=100 + i, output_tokens=50 + i, provider=P, model=M, bot_id=bot_id
            )
            metrics.record_cost(cost=0.001 * (i + 1), provider=P, model=M, bot_id=bot_id)

    threads = [threading.Thread(target=bot_worker, args=(f"bot_{i}", 10)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected_cost = math.fsum(0.001 * (i + 1) for i in range(10))
    assert expected_cost == 0.055
    for i in range(5):
        assert metrics.get_bot_cost(f"bot_{i}") == 0.055
        assert metrics.get_bot_tokens(f"bot_{i}") == {
            "input": 1045,
            "output": 545,
            "cached": 0,
            "total": 1590,
        }
    assert sorted(metrics.get_all_bot_ids()) == [f"bot_{i}" for i in range(5)]
    assert metrics.get_total_tokens()["total"] == 5 * 1590
    assert metrics.get_total_cost() == 5 * 0.055


def test_sixteen_thread_stress_exact_totals():
    """16 threads record and get_and_clear concurrently; all totals come out exact."""
    n_threads, n_calls = 16, 300
    barrier = threading.Barrier(n_threads)
    cleared: dict[str, list[dict]] = {f"s{t}": [] for t in range(n_threads)}

    def worker(t: int) -> None:
        bot = f"s{t}"
        barrier.wait()
        for i in range(n_calls):
            metrics.record_tokens(i, t, P, M, cached_tokens=1, bot_id=bot)
            metrics.record_cost((t + 1) / 128, P, M, bot_id=bot)
            if i % 37 == 0:
                cleared[bot].append(metrics.get_and_clear_last_metrics(bot))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t in range(n_threads):
        bot = f"s{t}"
        tokens = metrics.get_bot_tokens(bot)
        assert tokens == {
            "input": sum(range(n_calls)),
            "output": t * n_calls,
            "cached": n_calls,
            "total": sum(range(n_calls)) + t * n_calls + n_calls,
        }
        assert metrics.get_bot_cost(bot) == n_calls * (t + 1) / 128
        parts = [*cleared[bot], metrics.get_and_clear_last_metrics(bot)]
        assert sum(p["input_tokens"] for p in parts) == sum(range(n_calls))
        assert sum(p["cached_tokens"] for p in parts) == n_calls
        assert sum(p["cost"] for p in parts) == n_calls * (t + 1) / 128
    total = metrics.get_total_tokens()
    assert total["input"] == n_threads * sum(range(n_calls))
    assert total["cached"] == n_threads * n_calls
    assert metrics.get_total_cost() == sum(n_calls * (t + 1) / 128 for t in range(n_threads))
    assert metrics.stats()["recorded"] == 2 * n_threads * n_calls


BAD_CALLS = [
    pytest.param(lambda: metrics.record_tokens(-1, 1, P, M), "input_tokens", id="tokens-negative"),
    pytest.param(lambda: metrics.record_tokens("5", 1, P, M), "input_tokens", id="tokens-str"),
    pytest.param(lambda: metrics.record_tokens(True, 1, P, M), "input_tokens", id="tokens-bool"),
    pytest.param(
        lambda: metrics.record_tokens(1, math.nan, P, M), "output_tokens", id="tokens-nan"
    ),
    pytest.param(
        lambda: metrics.record_tokens(1, 1, P, M, cached_tokens=-3),
        "cached_tokens",
        id="cached-negative",
    ),
    pytest.param(lambda: metrics.record_tokens(1, 1, "", M), "provider", id="provider-empty"),
    pytest.param(lambda: metrics.record_tokens(1, 1, P, None), "model", id="model-none"),
    pytest.param(lambda: metrics.record_tokens(1, 1, P, M, bot_id=""), "bot_id", id="bot_id-empty"),
    pytest.param(lambda: metrics.record_cost(-0.1, P, M), "cost", id="cost-negative"),
    pytest.param(lambda: metrics.record_cost(math.nan, P, M), "cost", id="cost-nan"),
    pytest.param(lambda: metrics.record_cost(math.inf, P, M), "cost", id="cost-inf"),
    pytest.param(lambda: metrics.record_cost("0.1", P, M), "cost", id="cost-str"),
    pytest.param(lambda: metrics.record_cost(True, P, M), "cost", id="cost-bool"),
    pytest.param(lambda: metrics.record_api_call(-1.0, P, M), "duration", id="api-negative"),
    pytest.param(lambda: metrics.record_api_call(math.nan, P, M), "duration", id="api-nan"),
    pytest.param(lambda: metrics.record_api_call("1", P, M), "duration", id="api-str"),
    pytest.param(lambda: metrics.record_api_call(False, P, M), "duration", id="api-bool-false"),
    pytest.param(lambda: metrics.record_api_call(None, P, M), "duration", id="api-none"),
    pytest.param(lambda: metrics.record_api_call(1.0, P, M, status=""), "status", id="status"),
    pytest.param(lambda: metrics.record_tool_execution(True, "t"), "duration", id="tool-exec-bool"),
    pytest.param(lambda: metrics.record_tool_execution(1.0, ""), "tool_name", id="tool-exec-name"),
    pytest.param(lambda: metrics.record_message_building(math.inf, P, M), "duration", id="msg-inf"),
    pytest.param(lambda: metrics.record_response_time("2", P, M), "duration", id="resp-str"),
    pytest.param(lambda: metrics.record_error("", P, "op"), "error_type", id="error-type"),
    pytest.param(lambda: metrics.record_error("E", P, 5), "operation", id="error-operation"),
    pytest.param(lambda: metrics.record_tool_failure("t", None), "error_type", id="toolfail"),
]


@pytest.mark.parametrize(("call", "field"), BAD_CALLS)
def test_bad_input_rejected_counted_and_nothing_recorded(call, field, caplog):
    """Bad input is rejected (None returned), counted in stats(), logged, never recorded."""
    assert call() is None
    assert metrics.stats() == {"recorded": 0, "rejected": 1, "forward_errors": 0}
    assert metrics.get_total_tokens()["total"] == 0
    assert metrics.get_total_cost() == 0.0
    assert metrics.get_and_clear_last_metrics()["duration"] == 0.0
    assert any(f"{field}:" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("call", "field"), BAD_CALLS)
def test_bad_input_raises_when_strict(call, field):
    """set_strict(True): bad input raises InvalidEvent naming the field (and is counted)."""
    metrics.set_strict(True)
    with pytest.raises(InvalidEvent) as info:
        call()
    assert info.value.field == field
    assert metrics.stats()["rejected"] == 1


@pytest.mark.parametrize(
    "since",
    [
        pytest.param("0", id="str"),
        pytest.param(math.nan, id="nan"),
        pytest.param(True, id="bool"),
    ],
)
def test_bad_since_timestamp_raises(since):
    """A non-numeric since_timestamp is a programming error: InvalidEvent."""
    with pytest.raises(InvalidEvent):
        metrics.get_bot_tokens("b", since)
    with pytest.raises(InvalidEvent):
        metrics.get_total_cost(since)


@pytest.fixture
def bound():
    ledger = memory_ledger()
    metrics.bind(ledger)
    yield ledger
    metrics.bind(None)
    ledger.close()


def test_bind_forwards_tokens_and_cost_as_seed000_events(bound):
    """Bound ledger receives seed000.* events; tokens map input+cached, cost kept exact."""
    with capture_events(bound) as events:
        metrics.record_tokens(1000, 500, P, M, cached_tokens=200, bot_id="bot_1")
        metrics.record_cost(0.015, P, M, bot_id="bot_1")
    tokens, cost = events
    assert tokens.name == "seed000.record_tokens"
    assert (tokens.kind, tokens.model, tokens.provider, tokens.bot_id) == ("llm", M, P, "bot_1")
    assert (tokens.input_tokens, tokens.output_tokens, tokens.cache_read_tokens) == (1200, 500, 200)
    assert tokens.cost_usd == 0
    assert cost.name == "seed000.record_cost"
    assert cost.cost_usd == Decimal("0.015")
    assert cost.cost_source == "reported"
    assert cost.bot_id == "bot_1"
    totals = bound.totals(bot_id="bot_1")
    assert totals.cost_usd == Decimal("0.015")
    assert totals.input_tokens == 1200
    assert metrics.stats()["forward_errors"] == 0


def test_bind_forwards_every_recorder(bound):
    """Every seed recorder is forwarded as an event named seed000.<function>."""
    with capture_events(bound) as events:
        metrics.record_api_call(0.25, P, M, status="timeout", bot_id="b")
        metrics.record_tool_execution(0.5, "search", success=False, bot_id="b")
        metrics.record_message_building(0.125, P, M, bot_id="b")
        metrics.record_response_time(1.0, P, M, bot_id="b")
        metrics.record_error("RateLimit", P, "respond", bot_id="b")
        metrics.record_tool_failure("search", "Timeout", bot_id="b")
    names = [e.name for e in events]
    assert names == [
        "seed000.record_api_call",
        "seed000.record_tool_execution",
        "seed000.record_message_building",
        "seed000.record_response_time",
        "seed000.record_error",
        "seed000.record_tool_failure",
    ]
    api = events[0]
    assert (api.status, api.error_type, api.duration_ms) == ("error", "timeout", 250.0)
    assert events[1].status == "error"
    assert events[1].metadata == {"tool_name": "search"}
    assert events[4].error_type == "RateLimit"
    assert all(e.bot_id == "b" for e in events)
    assert bound.totals().cost_usd == 0


def test_rejected_metrics_record_is_not_forwarded(bound):
    """A rejected record never reaches the bound ledger."""
    with capture_events(bound) as events:
        metrics.record_cost(-1.0, P, M)
    assert len(events) == 0
    assert bound.stats().recorded == 0


def test_bind_none_stops_forwarding(bound):
    """bind(None) stops forwarding."""
    metrics.bind(None)
    with capture_events(bound) as events:
        metrics.record_cost(0.5, P, M)
    assert len(events) == 0
    assert metrics.get_total_cost() == 0.5
