"""OpenTelemetry out (OTLP/HTTP to a local receiver) and in (GenAI spans -> ledger events)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.proto")

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agentledger import Ledger
from agentledger.export import semconv as sc
from agentledger.export.otel import AgentledgerSpanProcessor, OTelSink, configure_from_env

from ._otlp import Received, free_port, otlp_receiver
from ._util import drain


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


def _attrs(span: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in span.attributes}


def _providers(url: str, *, timeout: float = 5.0) -> tuple[TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces", timeout=timeout))
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{url}/v1/metrics", timeout=timeout),
        export_interval_millis=3_600_000,  # only on force_flush
    )
    return tracer_provider, MeterProvider(metric_readers=[reader], shutdown_on_exit=False)


def _record_sample(ledger: Ledger) -> dict[str, str | None]:
    scope = ledger.scope(bot_id="bot-1", user_id="u-7", task_id="t-3", tenant_id="acme")
    with scope, ledger.span("custom", "agent turn") as turn:
        llm = ledger.record_llm(
            "gpt-4o", 1000, 500, provider="openai", cache_read_tokens=200,
            duration_ms=1500.0, metadata={"attempt": 1},
        )  # fmt: skip
        tool = ledger.record_tool("search", duration_ms=30.0)
        failed = ledger.record_llm(
            "gpt-4o", 10, 0, provider="openai", error_type="RateLimitError",
            error_message="slow down", duration_ms=5.0,
        )  # fmt: skip
    return {"turn": turn.event_id, "llm": llm, "tool": tool, "failed": failed}


def test_events_export_as_spans_and_genai_metrics_over_otlp_http() -> None:
    with otlp_receiver() as (url, received):
        tracer_provider, meter_provider = _providers(url)
        ledger = Ledger(handle_signals=False)
        sink = OTelSink(tracer_provider, meter_provider)
        ledger.add_sink(sink)
        ids = _record_sample(ledger)
        drain(ledger)
        assert sink.force_flush(10_000)
        ledger.close()
        tracer_provider.shutdown()
        meter_provider.shutdown()

        spans = {_attrs(s)[sc.AL_EVENT_ID]: s for s in received.spans()}
        assert set(spans) == set(ids.values())
        turn, llm, tool, failed = (spans[ids[k]] for k in ("turn", "llm", "tool", "failed"))
        # the event's own ids, and exact parent links
        assert llm.trace_id == turn.trace_id == tool.trace_id
        assert llm.parent_span_id == turn.span_id
        assert tool.parent_span_id == turn.span_id
        assert turn.parent_span_id == b""
        assert len(spans) == 4
        # names and attributes
        assert llm.name == "chat gpt-4o"
        assert tool.name == "execute_tool search"
        assert turn.name == "agent turn"
        a = _attrs(llm)
        assert a[sc.GEN_AI_OPERATION_NAME] == "chat"
        assert a[sc.GEN_AI_PROVIDER_NAME] == "openai"
        assert a[sc.GEN_AI_REQUEST_MODEL] == a[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o"
        assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1000
        assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 500
        assert a[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 200
        assert a[sc.LLM_PROMPT_TOKENS] == 1000
        assert a[sc.LLM_COMPLETION_TOKENS] == 500
        assert a[sc.LLM_TOTAL_TOKENS] == 1500
        assert a[sc.LLM_LATENCY_MS] == 1500.0
        assert a[sc.LLM_TASK_ID] == a[sc.AL_TASK_ID] == "t-3"
        assert a[sc.LLM_USER_ID] == a[sc.AL_USER_ID] == "u-7"
        assert a[sc.AL_BOT_ID] == "bot-1"
        assert a[sc.AL_TENANT_ID] == "acme"
        assert a[sc.LLM_STATUS] == "success"
        assert Decimal(a[sc.AL_COST_USD_DECIMAL]) == Decimal("0.00725")
        assert a[sc.AL_COST_USD] == pytest.approx(0.00725)
        assert a[sc.LLM_COST_USD] == pytest.approx(0.00725)
        assert a[sc.AL_COST_SOURCE] == "priced"
        assert llm.end_time_unix_nano - llm.start_time_unix_nano == 1_500_000_000
        assert _attrs(tool)[sc.GEN_AI_TOOL_NAME] == "search"
        f = _attrs(failed)
        assert f[sc.ERROR_TYPE] == "RateLimitError"
        assert f[sc.LLM_STATUS] == "error"
        assert failed.status.code == 2  # STATUS_CODE_ERROR
        assert failed.status.message == "slow down"

        # metrics: token usage by type, duration in seconds, the conventions' buckets
        tokens = received.metric(sc.METRIC_TOKEN_USAGE)[0]  # first flush (cumulative)
        assert tokens.unit == "{token}"
        points = {_attrs(p)[sc.GEN_AI_TOKEN_TYPE]: p for p in tokens.histogram.data_points}
        assert points["input"].sum == 1010
        assert points["input"].count == 2
        assert points["output"].sum == 500
        assert list(points["input"].explicit_bounds) == [float(b) for b in sc.TOKEN_BOUNDS]
        duration = received.metric(sc.METRIC_OPERATION_DURATION)[0]
        assert duration.unit == "s"
        by_op = {}
        for p in duration.histogram.data_points:
            pa = _attrs(p)
            by_op[(pa[sc.GEN_AI_OPERATION_NAME], pa.get(sc.ERROR_TYPE))] = p
        assert by_op[("chat", None)].sum == pytest.approx(1.5)
        assert by_op[("chat", "RateLimitError")].count == 1
        assert by_op[("execute_tool", None)].sum == pytest.approx(0.03)
        assert list(by_op[("chat", None)].explicit_bounds) == list(sc.DURATION_BOUNDS_S)


def test_configure_from_env_exports_over_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    with otlp_receiver() as (url, received):
        monkeypatch.setenv("ENABLE_OPENTELEMETRY", "true")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "my-bot")
        ledger = Ledger(handle_signals=False)
        sink = configure_from_env(ledger)
        assert sink is not None
        try:
            ledger.record_llm("gpt-4o-mini", 100, 20, provider="openai", duration_ms=250.0)
            drain(ledger)
            assert sink.force_flush(10_000)
        finally:
            ledger.remove_sink(sink)
            sink.shutdown()
            ledger.close()
        (span,) = received.spans()
        assert span.name == "chat gpt-4o-mini"
        resource = received.traces[0].resource_spans[0].resource
        assert _attrs(resource)["service.name"] == "my-bot"
        duration = received.metric(sc.METRIC_OPERATION_DURATION)[0]
        (point,) = duration.histogram.data_points
        assert list(point.explicit_bounds) == list(sc.DURATION_BOUNDS_S)
        assert point.sum == pytest.approx(0.25)


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_configure_from_env_disabled(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("ENABLE_OPENTELEMETRY", raising=False)
    else:
        monkeypatch.setenv("ENABLE_OPENTELEMETRY", value)
    with Ledger(handle_signals=False) as ledger:
        assert configure_from_env(ledger) is None


# --- faults: the collector is down, slow, or the sink raises ------------------------------


@pytest.mark.parametrize("fault", ["down", "slow"])
def test_unreachable_or_slow_collector_never_reaches_record(
    fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    @contextmanager
    def endpoint() -> Iterator[tuple[str, Received | None]]:
        if fault == "down":
            yield f"http://127.0.0.1:{free_port()}", None
        else:
            with otlp_receiver(slow=True) as (url, received):
                yield url, received

    with endpoint() as (url, received), caplog.at_level(logging.WARNING):
        tracer_provider, meter_provider = _providers(url, timeout=0.2)
        ledger = Ledger(handle_signals=False)
        ledger.add_sink(OTelSink(tracer_provider, meter_provider))
        event_ids = [ledger.record_llm("gpt-4o", 10, 5, provider="openai") for _ in range(20)]
        assert all(event_ids)
        drain(ledger)  # the writer handed everything to the sink without waiting
        assert ledger.totals().calls == 20
        assert ledger.stats().sink_errors == 0
        tracer_provider.force_flush(5_000)  # True or not, it must not raise
        meter_provider.force_flush(5_000)
        ledger.close()
        tracer_provider.shutdown()
        meter_provider.shutdown()
        if received is not None:
            assert received.hold is not None
            received.hold.set()
    exporter_logs = [r for r in caplog.records if r.name.startswith("opentelemetry")]
    assert exporter_logs, "the SDK should log the failed export"


def test_spans_dropped_by_a_full_batch_queue_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A down endpoint fills the SDK's span queue; the sink counts what the SDK dropped."""
    url = f"http://127.0.0.1:{free_port()}"
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{url}/v1/traces", timeout=0.2),
            max_queue_size=5, max_export_batch_size=5, schedule_delay_millis=3_600_000,
        )
    )  # fmt: skip
    sink = OTelSink(tracer_provider, MeterProvider(shutdown_on_exit=False))
    ledger = Ledger(handle_signals=False)
    ledger.add_sink(sink)
    with caplog.at_level(logging.WARNING, logger="agentledger.otel"):
        for _ in range(30):
            ledger.record_llm("gpt-4o", 10, 5, provider="openai")
        drain(ledger)
    assert sink.exported == 30
    # The worker may have taken some batches off the queue meanwhile: at most 25 dropped.
    assert 0 < sink.dropped <= 25
    assert "span queue is full" in caplog.text
    assert f"dropped={sink.dropped}" in repr(sink)
    ledger.close()
    tracer_provider.shutdown()


def test_a_raising_span_pipeline_is_counted_not_raised() -> None:
    class Broken(SimpleSpanProcessor):
        def on_end(self, span: Any) -> None:
            raise RuntimeError("exporter exploded")

    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(Broken(InMemorySpanExporter()))
    ledger = Ledger(handle_signals=False)
    sink = OTelSink(tracer_provider, MeterProvider(shutdown_on_exit=False))
    ledger.add_sink(sink)
    assert ledger.record_llm("gpt-4o", 10, 5, provider="openai") is not None
    assert ledger.record_tool("search") is not None
    drain(ledger)
    stats = ledger.stats()
    assert stats.recorded == 2
    assert stats.sink_errors == 1  # one failing batch
    assert "exporter exploded" in (stats.last_error or "")
    assert sink.failed == 2
    assert ledger.totals().calls == 2
    ledger.close()


def test_non_sdk_tracer_provider_is_refused() -> None:
    from opentelemetry.trace import NoOpTracerProvider

    from agentledger.errors import ConfigError

    with pytest.raises(ConfigError, match="sdk"):
        OTelSink(NoOpTracerProvider())


def test_unparseable_ids_become_stable_valid_ids() -> None:
    from datetime import UTC, datetime

    from agentledger import Event

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = OTelSink(tracer_provider, MeterProvider(shutdown_on_exit=False))
    event = Event(
        event_id="e1", trace_id="not-hex", span_id="s1", parent_id="p1",
        started_at=datetime(2026, 1, 1, tzinfo=UTC), duration_ms=1.0, kind="custom", name="x",
    )  # fmt: skip
    sink([event])
    sink([event])
    first, second = exporter.get_finished_spans()
    assert first.context is not None
    assert second.context is not None
    assert first.context.trace_id == second.context.trace_id != 0
    assert first.parent is not None
    assert first.parent.span_id != 0


# --- OpenTelemetry in ---------------------------------------------------------------------


def _in_memory_provider(ledger: Ledger) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(AgentledgerSpanProcessor(ledger))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_our_own_spans_are_not_counted_twice() -> None:
    ledger = Ledger(handle_signals=False)
    provider, exporter = _in_memory_provider(ledger)
    ledger.add_sink(OTelSink(provider, MeterProvider(shutdown_on_exit=False)))
    ledger.record_llm("gpt-4o", 100, 10, provider="openai")
    drain(ledger)
    assert len(exporter.get_finished_spans()) == 1  # exported ...
    drain(ledger)
    assert ledger.stats().recorded == 1  # ... and not recorded again
    assert ledger.totals().input_tokens == 100
    ledger.close()


def test_openinference_and_openllmetry_attribute_spellings() -> None:
    ledger = Ledger(handle_signals=False)
    provider, exporter = _in_memory_provider(ledger)
    ledger.add_sink(OTelSink(provider, MeterProvider(shutdown_on_exit=False)))
    tracer = provider.get_tracer("test")
    with ledger.scope(bot_id="support"):
        with tracer.start_as_current_span("ChatCompletion") as span:  # OpenInference
            span.set_attribute("llm.model_name", "gpt-4o")
            span.set_attribute("llm.provider", "openai")
            span.set_attribute("llm.token_count.prompt", 1000)
            span.set_attribute("llm.token_count.completion", 500)
            span.set_attribute("llm.token_count.prompt_details.cache_read", 200)
        with tracer.start_as_current_span("anthropic.chat") as span:  # older OpenLLMetry
            span.set_attribute("gen_ai.system", "Anthropic")
            span.set_attribute("gen_ai.request.model", "claude-3-5-sonnet-latest")
            span.set_attribute("gen_ai.usage.prompt_tokens", 100)  # cache excluded here
            span.set_attribute("gen_ai.usage.completion_tokens", 300)
            span.set_attribute("gen_ai.usage.cache_read_input_tokens", 2000)
            span.set_attribute("gen_ai.usage.cache_creation_input_tokens", 500)
            span.set_status(StatusCode.ERROR, "overloaded")
            span.set_attribute("error.type", "OverloadedError")
        with tracer.start_as_current_span("db query"):
            pass  # not GenAI: ignored
    drain(ledger)
    oi, anthropic = sorted(ledger.breakdown("model").items())
    assert oi[0] == "claude-3-5-sonnet-latest" or anthropic[0] == "claude-3-5-sonnet-latest"
    by_model = dict(ledger.breakdown("model"))
    gpt = by_model["gpt-4o"]
    assert (gpt.input_tokens, gpt.output_tokens, gpt.cache_read_tokens) == (1000, 500, 200)
    assert gpt.cost_usd == Decimal("0.00725")
    claude = by_model["claude-3-5-sonnet-latest"]
    assert claude.input_tokens == 2600
    assert claude.cache_write_tokens == 500
    assert claude.cost_usd == Decimal("0.0072750")
    assert claude.errors == 1
    assert ledger.totals(bot_id="support").calls == 2
    assert ledger.stats().recorded == 2
    # the imported events keep the OTel ids and are not exported a second time
    assert len(exporter.get_finished_spans()) == 3
    ledger.close()


# --- the real opentelemetry-instrumentation-openai against a fake OpenAI server -----------


def test_spans_from_the_openai_instrumentation_become_priced_ledger_events() -> None:
    """Run in a child process: the instrumentation's uninstrument() leaves wrappers behind."""
    pytest.importorskip("openai")
    pytest.importorskip("opentelemetry.instrumentation.openai")
    from genai_prices import Usage, calc_price

    child = Path(__file__).with_name("_openai_child.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(child)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["reply"] == "Hi!"
    (span,) = out["spans"]
    assert span["attributes"][sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 1024
    assert out["models"].keys() == {"gpt-4o-2024-08-06"}
    totals = out["models"]["gpt-4o-2024-08-06"]
    assert totals["calls"] == 1
    assert totals["input_tokens"] == 1200  # cached tokens are inside input
    assert totals["cache_read_tokens"] == 1024
    assert totals["output_tokens"] == 300
    expected = calc_price(
        Usage(input_tokens=1200, cache_read_tokens=1024, output_tokens=300),
        model_ref="gpt-4o-2024-08-06",
        provider_id="openai",
    ).total_price
    assert Decimal(totals["cost_usd"]) == expected
    assert out["alice_calls"] == out["task_calls"] == 1
    assert out["stats"] == {"recorded": 1, "rejected": 0}
    (event,) = out["events"]
    assert event["provider"] == "openai"
    assert event["cost_source"] == "priced"
    assert event["metadata"][sc.META_OTEL_TRACE_ID] == span["trace_id"]
    assert event["metadata"][sc.META_OTEL_SPAN_ID] == span["span_id"]
    assert event["metadata"][sc.META_OTEL_SCOPE].startswith("opentelemetry.instrumentation.openai")
