"""Issue 6's speed targets: scrape time at 1,000 bots x 20 models, and record_llm's cost with
the Prometheus and OpenTelemetry sinks enabled (they must stay off the hot path)."""

from __future__ import annotations

import time
from typing import Any

from _harness import Result, interleaved, median, paired_ratio
from agentledger import Ledger, scope

BOTS = [f"bot-{i}" for i in range(1_000)]
MODELS = [f"model-{j}" for j in range(20)]


def bench_prometheus_scrape(quick: bool) -> list[Result]:
    """One scrape (generate_latest) of a registry holding 1,000 bots x 20 models of series."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from agentledger._aggregates import DURATION_BOUNDS_S

    repeats = 5 if quick else 11
    ledger = Ledger(handle_signals=False)
    registry = CollectorRegistry()
    registry.register(ledger.prometheus_collector())
    # The peer: prometheus_client's own metrics with the same series, incremented per event.
    peer = CollectorRegistry()
    requests = Counter("llm_requests", "", ["model", "status", "bot_id"], registry=peer)
    tokens = Counter("llm_tokens", "", ["model", "token_type"], registry=peer)
    cost = Counter("llm_cost_usd", "", ["model"], registry=peer)
    latency = Histogram("llm_latency_seconds", "", ["model"], registry=peer,
                        buckets=DURATION_BOUNDS_S)  # fmt: skip
    by_bot = Counter("agentledger_cost_usd", "", ["bot_id"], registry=peer)
    for bot in BOTS:
        for model in MODELS:
            ledger.record_llm(model, 1000, 500, bot_id=bot, duration_ms=250.0, cost_usd=0.0075)
            requests.labels(model, "success", bot).inc()
            tokens.labels(model, "input").inc(1000)
            tokens.labels(model, "output").inc(500)
            cost.labels(model).inc(0.0075)
            latency.labels(model).observe(0.25)
            by_bot.labels(bot).inc(0.0075)
    ledger.flush()
    size = len(generate_latest(registry))

    def scrape(reg: Any) -> float:
        t0 = time.perf_counter()
        generate_latest(reg)
        return (time.perf_counter() - t0) * 1000.0

    ours, theirs = interleaved(lambda: scrape(registry), lambda: scrape(peer), repeats)
    ledger.close()
    ms = median(ours)
    return [
        Result(
            "prometheus_scrape",
            "one scrape, 20,000 bot x model series",
            "ms",
            ms,
            median(theirs),
            "prometheus_client Counters/Histogram, same series",
            paired_ratio(ours, theirs),
            "ours / native",
            "< 50 ms",
            ms < 50.0,
            ours,
            theirs,
            f"{len(BOTS)} bots x {len(MODELS)} models; exposition {size:,} bytes; "
            f"{repeats} repeats",
        )
    ]


def bench_sinks_record_llm(quick: bool) -> list[Result]:
    """record_llm's caller-thread time with the writer running, sinks on vs off."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import CollectorRegistry

    from agentledger.export.otel import OTelSink

    n, repeats = (10_000, 5) if quick else (20_000, 11)

    def run(with_sinks: bool) -> tuple[float, float]:
        ledger = Ledger(handle_signals=False, flush_interval_s=0.05)
        ledger.prices.warm()
        if with_sinks:
            CollectorRegistry().register(ledger.prometheus_collector())
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
            ledger.add_sink(OTelSink(tracer_provider=provider))
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        with scope(bot_id="bot-1", user_id="user-1"):
            for _ in range(n):
                ledger.record_llm("gpt-4o", 1000, 500, duration_ms=800.0)
        wall, cpu = (
            (time.perf_counter_ns() - w0) / n / 1000,
            (time.thread_time_ns() - c0) / n / 1000,
        )
        assert ledger.close(timeout=120)
        assert ledger.stats().sink_errors == 0
        return wall, cpu

    on, off = interleaved(lambda: run(True), lambda: run(False), repeats)
    out = []
    for k, clock in ((1, "cpu"), (0, "wall")):
        ours, peer = [s[k] for s in on], [s[k] for s in off]
        ratio = paired_ratio(ours, peer)
        out.append(Result(
            f"sinks_record_llm [{clock}]", f"record_llm {clock} time, sinks on", "µs/call",
            median(ours), median(peer), "same ledger, no sinks", ratio, "sinks on / off",
            "<= 2x no sinks", ratio <= 2.0, ours, peer,
            f"{n} calls x {repeats}; Prometheus collector + OTelSink(SimpleSpanProcessor + "
            "InMemorySpanExporter); writer running (flush every 50 ms)",
        ))  # fmt: skip
    return out
