"""Benchmarks of the caller's thread: the seed-000 facade and ``Ledger.record_llm``."""

from __future__ import annotations

import time
from typing import Any

import agentledger
import naive_metrics
from _harness import Result, interleaved, median, paired_ratio, timed
from agentledger import Ledger, metrics

N_BOTS = 1_000
BOTS = [f"bot-{i}" for i in range(N_BOTS)]
USER = "user-42"
MODEL = "gpt-4o"
COST = 0.0075  # what the price book says 1000 in + 500 out of gpt-4o costs


# --- 1. metrics.record_tokens vs the seed's naive design ---------------------------------------
def bench_metrics_record_tokens(quick: bool) -> list[Result]:
    n, repeats = (20_000, 7) if quick else (50_000, 21)
    bots = [BOTS[i % N_BOTS] for i in range(n)]
    assert metrics._ledger is None, "the facade must not be bound to a ledger here"

    def run(record: Any, reset: Any) -> tuple[float, float]:
        reset()

        def loop() -> None:
            for bot in bots:
                record(1000, 500, "openai", MODEL, bot_id=bot)

        return timed(loop, n)

    run(metrics.record_tokens, metrics.reset_metrics)  # warm-up
    ours, peer = interleaved(
        lambda: run(metrics.record_tokens, metrics.reset_metrics),
        lambda: run(naive_metrics.record_tokens, naive_metrics.reset_metrics),
        repeats,
    )
    metrics.reset_metrics()
    naive_metrics.reset_metrics()
    note = f"{n} calls x {repeats} repeats over {N_BOTS} bots; facade not bound to a ledger"
    return [
        _vs("metrics_record_tokens", clock, "ns/call", [s[k] for s in ours],
            [s[k] for s in peer], "seed's naive lock+dict+list", "ours / naive",
            "<= 1.5x naive", lambda r: r <= 1.5, note)
        for k, clock in ((1, "cpu"), (0, "wall"))
    ]  # fmt: skip


def _vs(
    name: str, clock: str, unit: str, ours: list[float], peer: list[float], peer_name: str,
    label: str, target: str, ok: Any, notes: str, scale: float = 1.0,
) -> Result:  # fmt: skip
    ours = [x * scale for x in ours]
    peer = [x * scale for x in peer]
    ratio = paired_ratio(ours, peer) if label == "ours / naive" else paired_ratio(peer, ours)
    return Result(
        f"{name} [{clock}]", f"{clock} time per call", unit, median(ours), median(peer),
        peer_name, ratio, label, target, bool(ok(ratio)), ours, peer, notes,
    )  # fmt: skip


# --- 2. Ledger.record_llm vs an OpenTelemetry SDK span -----------------------------------------
def _otel(processor: str, n: int) -> tuple[Any, Any, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    if processor == "simple":
        proc: Any = SimpleSpanProcessor(exporter)
    else:  # exporter thread kept idle during the timed loop, like our writer in (a)
        big = 4 * n
        proc = BatchSpanProcessor(
            exporter, max_queue_size=big, max_export_batch_size=big,
            schedule_delay_millis=3_600_000,
        )  # fmt: skip
    provider.add_span_processor(proc)
    return provider, provider.get_tracer("bench"), exporter


def _otel_loop(tracer: Any, n: int) -> None:
    start_span = tracer.start_span
    for _ in range(n):
        span = start_span(
            "chat gpt-4o",
            attributes={
                "gen_ai.request.model": MODEL,
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 500,
                "agentledger.bot_id": "bot-1",
                "agentledger.user_id": USER,
                "agentledger.cost_usd": COST,
            },
        )
        span.end()


def _ledger_loop(ledger: Ledger, n: int) -> None:
    record = ledger.record_llm
    with agentledger.scope(bot_id="bot-1", user_id=USER):
        for _ in range(n):
            record(MODEL, 1000, 500, duration_ms=800.0)


def bench_ledger_record_llm(quick: bool) -> list[Result]:
    n, repeats = (20_000, 5) if quick else (20_000, 15)
    idle = Ledger(
        None, flush_interval_s=3600, batch_size=10**9, max_queue=10**9, handle_signals=False
    )
    idle.prices.warm()
    _ledger_loop(idle, 100)  # warm-up: resolves the price plan, starts the (idle) writer

    def ours() -> tuple[float, float]:
        with idle._buf_lock:
            idle._buf.clear()
        sample = timed(lambda: _ledger_loop(idle, n), n)
        assert len(idle._buf) == n, "the writer ran during the timed loop"
        return sample

    n_peer = n // 5  # an OTel span costs ~10x more: fewer calls keep the run short

    def otel_run(processor: str) -> Any:
        provider, tracer, exporter = _otel(processor, n_peer)
        _otel_loop(tracer, 100)

        def run() -> tuple[float, float]:
            provider.force_flush()
            exporter.clear()
            return timed(lambda: _otel_loop(tracer, n_peer), n_peer)

        return provider, run

    simple_provider, simple = otel_run("simple")
    batch_provider, batch = otel_run("batch")
    ours_s, simple_s = interleaved(ours, simple, repeats)
    ours_b, batch_s = interleaved(ours, batch, repeats)
    with idle._buf_lock:
        idle._buf.clear()
    idle.close()
    batch_provider.shutdown()
    simple_provider.shutdown()

    results = []
    for k, clock in ((1, "cpu"), (0, "wall")):
        mine = [s[k] / 1000 for s in ours_s + ours_b]
        us = median(mine)
        results.append(
            Result(
                f"ledger_record_llm (a) [{clock}]", f"{clock} time per call", "µs/call", us,
                None, "-", None, "-", "<= 5 µs", us <= 5.0, mine, [],
                f"{n} calls x {2 * repeats} repeats, writer idle, in scope(bot_id, user_id); "
                f"fastest repeat {min(mine):.2f} µs",
            )
        )  # fmt: skip
        for short, peer_s, mine_s, peer_name, note in (
            ("OTel simple", simple_s, ours_s, "OTel span, SimpleSpanProcessor+InMemory",
             "span exported synchronously to an in-memory list on the caller thread"),
            ("OTel batch", batch_s, ours_b, "OTel span, BatchSpanProcessor (idle)+InMemory",
             "exporter thread idle during the loop, like our writer"),
        ):  # fmt: skip
            results.append(
                _vs(f"ledger_record_llm (a) vs {short}",
                    clock, "µs/call", [s[k] for s in mine_s], [s[k] for s in peer_s],
                    peer_name, "peer / ours", ">= 5x faster", lambda r: r >= 5.0,
                    f"OTel: {n_peer} spans x {repeats} repeats; {note}", scale=1e-3)
            )  # fmt: skip
    results.append(_end_to_end(quick))
    return results


def _end_to_end(quick: bool) -> Result:
    """(b): CPU of the whole process per event, the writer's aggregation included."""
    n, repeats = (50_000, 3) if quick else (100_000, 7)

    def ours() -> float:
        ledger = Ledger(None, handle_signals=False)  # defaults: 1 s interval, 5000 batches
        ledger.prices.warm()
        _ledger_loop(ledger, 100)
        ledger.flush()
        c0 = time.process_time()
        _ledger_loop(ledger, n)
        assert ledger.flush(timeout=60)
        cpu = time.process_time() - c0
        assert ledger.stats().dropped == 0
        ledger.close()
        return cpu / n * 1e6

    n_peer = n // 5

    def peer() -> float:
        provider, tracer, exporter = _otel("simple", n_peer)
        _otel_loop(tracer, 100)
        c0 = time.process_time()
        _otel_loop(tracer, n_peer)
        cpu = time.process_time() - c0
        assert len(exporter.get_finished_spans()) == n_peer + 100
        provider.shutdown()
        return cpu / n_peer * 1e6

    b_ours, b_peer = interleaved(ours, peer, repeats)
    us = median(b_ours)
    return Result(
        "ledger_record_llm (b)", "end-to-end process CPU per event", "µs/event", us,
        median(b_peer), "OTel span, SimpleSpanProcessor+InMemory", paired_ratio(b_peer, b_ours),
        "peer / ours", "(no target)", None, b_ours, b_peer,
        f"record {n} then flush() (no store: writer aggregates only); "
        "CPU of all threads (time.process_time)",
    )  # fmt: skip
