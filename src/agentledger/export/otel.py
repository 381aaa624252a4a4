"""OpenTelemetry out (spans + GenAI metrics from ledger events) and in (GenAI spans -> ledger).

Out: ``ledger.add_sink(OTelSink(tracer_provider, meter_provider))``. Every event becomes one
span that carries the event's *own* trace id, span id and parent id, and the GenAI client
metrics ``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration``.

How spans are made: the SDK's ``Tracer`` always draws a fresh span id from the provider's
``IdGenerator``; swapping that generator would change ids for the whole application and
needs thread-local hand-offs. Instead each event is built as a finished
:class:`~opentelemetry.sdk.trace.ReadableSpan` (exact ids, exact start/end times from
``started_at``/``duration_ms``, parent ``SpanContext`` from ``parent_id``) and handed to the
provider's span processors (``on_end``), exactly where a span ended by a tracer would go.
The provider's sampler and resource are honoured. This needs an SDK ``TracerProvider``.

The sink runs on the ledger's background writer thread. Handing a span to a
``BatchSpanProcessor`` only enqueues it and recording a histogram only updates memory, so a
slow or unreachable collector never blocks or raises into ``record_*``: export happens on the
SDK's own threads with the exporter's timeout, and failures are logged by the SDK. A sink
exception (e.g. a bad event) is counted in ``ledger.stats().sink_errors``.

In: :class:`AgentledgerSpanProcessor` turns GenAI spans made by other instrumentations into
ledger events (see its docstring).

Needs the ``otel`` extra: ``pip install 'agentledger[otel]'``.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

try:
    from opentelemetry import metrics as metrics_api
    from opentelemetry import trace as trace_api
    from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.sampling import Decision
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
    from opentelemetry.trace.status import Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"agentledger.export.otel needs OpenTelemetry: pip install 'agentledger[otel]' ({exc})"
    ) from exc

from .. import __version__
from ..errors import ConfigError
from ..events import Event
from . import semconv as sc

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from ..ledger import Ledger

__all__ = [
    "AgentledgerSpanProcessor",
    "OTelSink",
    "configure_from_env",
    "genai_views",
]

log = logging.getLogger("agentledger.otel")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_SCOPE: Final = InstrumentationScope("agentledger", __version__)
_OPERATION: Final = {"llm": sc.OP_CHAT, "tool": sc.OP_EXECUTE_TOOL, "handoff": sc.OP_INVOKE_AGENT}


def genai_views() -> list[View]:
    """Views giving the GenAI client histograms the conventions' explicit bucket boundaries.

    Pass them to your own ``MeterProvider(views=...)``; instruments also carry the same
    boundaries as advice, which SDKs >= 1.23 apply when no view matches.
    """
    return [
        View(
            instrument_name=sc.METRIC_TOKEN_USAGE,
            aggregation=ExplicitBucketHistogramAggregation([float(b) for b in sc.TOKEN_BOUNDS]),
        ),
        View(
            instrument_name=sc.METRIC_OPERATION_DURATION,
            aggregation=ExplicitBucketHistogramAggregation(list(sc.DURATION_BOUNDS_S)),
        ),
    ]


def _ns(moment: datetime) -> int:
    """Exact nanoseconds since the epoch (no float rounding of the seconds)."""
    return ((moment - _EPOCH) // timedelta(microseconds=1)) * 1000


def _id(value: str | None, bits: int) -> int:
    """A W3C id from our hex id; anything else is hashed to a stable, valid id."""
    if value is None:
        return 0
    width = bits // 4
    if len(value) == width:
        try:
            parsed = int(value, 16)
        except ValueError:
            parsed = 0
        if parsed:
            return parsed
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=bits // 8).digest(), "big")


def _span_name(event: Event) -> str:
    if event.kind == "llm":
        return f"{sc.OP_CHAT} {event.model}" if event.model else sc.OP_CHAT
    operation = _OPERATION.get(event.kind)
    return f"{operation} {event.name}" if operation else event.name


def span_attributes(event: Event) -> dict[str, Any]:
    """The span attributes for one event: GenAI conventions, seed ``llm.*``, agentledger."""
    attrs: dict[str, Any] = {
        sc.AL_EVENT_ID: event.event_id,
        sc.AL_KIND: event.kind,
        sc.AL_NAME: event.name,
        sc.AL_COST_SOURCE: event.cost_source,
    }
    operation = _OPERATION.get(event.kind)
    if operation:
        attrs[sc.GEN_AI_OPERATION_NAME] = operation
    if event.provider:
        attrs[sc.GEN_AI_PROVIDER_NAME] = event.provider
    if event.kind == "tool":
        attrs[sc.GEN_AI_TOOL_NAME] = event.name
    for field, key in sc.ATTRIBUTION:
        value = getattr(event, field)
        if value is not None:
            attrs[key] = value
    for tag, value in event.tags.items():
        attrs[sc.AL_TAG_PREFIX + tag] = value
    if event.cost_usd is not None:
        attrs[sc.AL_COST_USD] = float(event.cost_usd)
        attrs[sc.AL_COST_USD_DECIMAL] = str(event.cost_usd)
    if event.price_version:
        attrs[sc.AL_PRICE_VERSION] = event.price_version
    if event.status == "error":
        attrs[sc.ERROR_TYPE] = event.error_type or "error"
    if event.kind == "llm":
        if event.model:
            attrs[sc.GEN_AI_REQUEST_MODEL] = event.model
            attrs[sc.GEN_AI_RESPONSE_MODEL] = event.model
            attrs[sc.LLM_MODEL] = event.model
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = event.input_tokens
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = event.output_tokens
        attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = event.cache_read_tokens
        attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = event.cache_write_tokens
        attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = event.reasoning_tokens
        attrs[sc.LLM_PROMPT_TOKENS] = event.input_tokens
        attrs[sc.LLM_COMPLETION_TOKENS] = event.output_tokens
        attrs[sc.LLM_TOTAL_TOKENS] = event.total_tokens
        attrs[sc.LLM_LATENCY_MS] = event.duration_ms
        attrs[sc.LLM_STATUS] = "success" if event.status == "ok" else "error"
        if event.cost_usd is not None:
            attrs[sc.LLM_COST_USD] = float(event.cost_usd)
        if event.task_id is not None:
            attrs[sc.LLM_TASK_ID] = event.task_id
        if event.user_id is not None:
            attrs[sc.LLM_USER_ID] = event.user_id
    return attrs


class OTelSink:
    """A ledger sink exporting each event as an OpenTelemetry span plus GenAI client metrics.

    ``tracer_provider`` must be an SDK ``TracerProvider`` (default: the global one; if that is
    not an SDK provider, no spans are made). ``meter_provider`` may be any ``MeterProvider``
    (default: the global one). Events that :class:`AgentledgerSpanProcessor` imported from
    OpenTelemetry spans are not exported again unless ``export_imported=True``.
    """

    def __init__(
        self,
        tracer_provider: trace_api.TracerProvider | None = None,
        meter_provider: metrics_api.MeterProvider | None = None,
        *,
        export_imported: bool = False,
        _owned: Sequence[SDKTracerProvider | SDKMeterProvider] = (),
    ) -> None:
        explicit = tracer_provider is not None
        provider = tracer_provider if explicit else trace_api.get_tracer_provider()
        if isinstance(provider, SDKTracerProvider):
            self.tracer_provider: SDKTracerProvider | None = provider
        elif explicit:
            raise ConfigError(
                "OTelSink needs an opentelemetry.sdk.trace.TracerProvider, got "
                f"{type(provider).__name__}"
            )
        else:
            log.info("agentledger: no SDK TracerProvider is set; OTelSink exports metrics only")
            self.tracer_provider = None
        self.meter_provider = (
            meter_provider if meter_provider is not None else metrics_api.get_meter_provider()
        )
        meter = self.meter_provider.get_meter("agentledger", __version__)
        self._tokens = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE,
            unit=sc.METRIC_TOKEN_USAGE_UNIT,
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=[float(b) for b in sc.TOKEN_BOUNDS],
        )
        self._duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION,
            unit=sc.METRIC_OPERATION_DURATION_UNIT,
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BOUNDS_S),
        )
        self.export_imported = export_imported
        self._owned = list(_owned)
        self._shut_down = False
        self.exported = 0  # spans handed to the span processors
        self.failed = 0  # events that could not be turned into a span
        self.dropped = 0  # spans a full BatchSpanProcessor queue dropped (endpoint slow/down)

    def __call__(self, events: Sequence[Event]) -> None:
        """Export one batch; raise (so the ledger counts a sink error) if any event failed."""
        errors: list[str] = []
        for event in events:
            if not self.export_imported and sc.META_OTEL_SPAN_ID in event.metadata:
                continue  # it already is an OpenTelemetry span: do not export it twice
            try:
                self._export(event)
            except Exception as exc:
                self.failed += 1
                errors.append(f"{event.event_id}: {type(exc).__name__}: {exc}")
        if errors:
            raise RuntimeError(f"OTelSink: {len(errors)} event(s) not exported; {errors[0]}")

    def _export(self, event: Event) -> None:
        attrs = span_attributes(event)
        if self.tracer_provider is not None:
            self._emit_span(self.tracer_provider, event, attrs)
        self._record_metrics(event)

    def _emit_span(self, provider: SDKTracerProvider, event: Event, attrs: dict[str, Any]) -> None:
        trace_id = _id(event.trace_id, 128)
        span_id = _id(event.span_id, 64)
        parent = None
        parent_ctx: Context | None = None
        if event.parent_id:
            parent = SpanContext(
                trace_id, _id(event.parent_id, 64), is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )  # fmt: skip
            parent_ctx = trace_api.set_span_in_context(trace_api.NonRecordingSpan(parent))
        name = _span_name(event)
        kind = SpanKind.CLIENT if event.kind == "llm" else SpanKind.INTERNAL
        decision = provider.sampler.should_sample(parent_ctx, trace_id, name, kind, attrs)
        if decision.decision is not Decision.RECORD_AND_SAMPLE:
            return
        if decision.attributes:
            attrs.update(decision.attributes)
        context = SpanContext(
            trace_id, span_id, is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=decision.trace_state,
        )  # fmt: skip
        start = _ns(event.started_at)
        status = (
            Status(StatusCode.ERROR, event.error_message or event.error_type)
            if event.status == "error"
            else Status(StatusCode.UNSET)
        )
        span = ReadableSpan(
            name=name,
            context=context,
            parent=parent,
            resource=provider.resource,
            attributes=attrs,
            kind=kind,
            status=status,
            start_time=start,
            end_time=start + round(event.duration_ms * 1_000_000),
            instrumentation_scope=_SCOPE,
        )
        full = _full_batch_queues(provider)
        # The provider's own fan-out to its processors: where Tracer-made spans go on end.
        provider._active_span_processor.on_end(span)
        self.exported += 1
        if full:  # each full queue dropped one span to take this one
            self.dropped += full
            if self.dropped == full or self.dropped % 1000 < full:
                log.warning(
                    "agentledger: the OTLP span queue is full (endpoint slow or down); "
                    "%d span(s) dropped so far", self.dropped,
                )  # fmt: skip

    def _record_metrics(self, event: Event) -> None:
        operation = _OPERATION.get(event.kind)
        if event.kind not in ("llm", "tool") or operation is None:
            return
        attrs: dict[str, str] = {sc.GEN_AI_OPERATION_NAME: operation}
        if event.provider:
            attrs[sc.GEN_AI_PROVIDER_NAME] = event.provider
        if event.model:
            attrs[sc.GEN_AI_REQUEST_MODEL] = event.model
            attrs[sc.GEN_AI_RESPONSE_MODEL] = event.model
        if event.kind == "tool":
            attrs[sc.GEN_AI_TOOL_NAME] = event.name
        if event.kind == "llm":
            self._tokens.record(
                event.input_tokens, {**attrs, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_INPUT}
            )
            self._tokens.record(
                event.output_tokens, {**attrs, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT}
            )
        if event.status == "error":
            attrs[sc.ERROR_TYPE] = event.error_type or "error"
        self._duration.record(event.duration_ms / 1000.0, attrs)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Push out what the providers hold (blocks up to the timeout; not for the hot path)."""
        ok = True
        if self.tracer_provider is not None:
            ok = self.tracer_provider.force_flush(timeout_millis) and ok
        if isinstance(self.meter_provider, SDKMeterProvider):
            ok = self.meter_provider.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        """Shut down the providers this sink created (configure_from_env); others are the app's."""
        self._shut_down = True
        for provider in self._owned:
            try:
                provider.shutdown()
            except Exception as exc:  # never let shutdown raise at exit
                log.warning("agentledger: OpenTelemetry shutdown failed: %s", exc)
        self._owned.clear()

    def __repr__(self) -> str:
        return f"<OTelSink exported={self.exported} failed={self.failed} dropped={self.dropped}>"


def _full_batch_queues(provider: SDKTracerProvider) -> int:
    """How many of the provider's batch span processors have a full queue right now.

    The SDK drops a span (it logs, and counts in its own self-metrics) when its queue is
    full; it tells the caller nothing, so look before handing the span over. Reads SDK
    internals defensively: an SDK that moved them gives 0, never an error.
    """
    full = 0
    try:
        processors = provider._active_span_processor._span_processors
        for processor in processors:
            inner = getattr(processor, "_batch_processor", None)
            queue = getattr(inner, "_queue", None)
            limit = getattr(inner, "_max_queue_size", None)
            if queue is not None and isinstance(limit, int) and len(queue) >= limit:
                full += 1
    except Exception:  # pragma: no cover - only if the SDK's internals change shape
        return 0
    return full


def configure_from_env(ledger: Ledger) -> OTelSink | None:
    """If ``ENABLE_OPENTELEMETRY`` is true, export the ledger's events over OTLP/HTTP.

    Uses the application's global SDK ``TracerProvider`` / ``MeterProvider`` when it has set
    them (with whatever exporters it configured); otherwise creates private ones with
    OTLP/HTTP exporters configured by the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
    ``..._TRACES_ENDPOINT``, ``..._METRICS_ENDPOINT``, ``..._HEADERS``, ``..._TIMEOUT``,
    ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_BSP_*``,
    ``OTEL_METRIC_EXPORT_INTERVAL``). Returns the sink added, or None when disabled.
    """
    if os.environ.get("ENABLE_OPENTELEMETRY", "").strip().lower() not in _TRUE:
        return None
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if endpoint.rstrip("/").endswith(":4317"):
        log.warning(
            "agentledger: OTEL_EXPORTER_OTLP_ENDPOINT=%s is the OTLP/gRPC port; agentledger "
            "exports OTLP/HTTP (usually port 4318)",
            endpoint,
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    owned: list[SDKTracerProvider | SDKMeterProvider] = []
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "agentledger"}))
    tracer_provider = trace_api.get_tracer_provider()
    if not isinstance(tracer_provider, SDKTracerProvider):
        tracer_provider = SDKTracerProvider(resource=resource, shutdown_on_exit=False)
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        owned.append(tracer_provider)
    meter_provider = metrics_api.get_meter_provider()
    if not isinstance(meter_provider, SDKMeterProvider):
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        meter_provider = SDKMeterProvider(
            metric_readers=[reader], resource=resource, views=genai_views(),
            shutdown_on_exit=False,
        )  # fmt: skip
        owned.append(meter_provider)
    sink = OTelSink(tracer_provider, meter_provider, _owned=owned)
    ledger.add_sink(sink)
    # atexit runs last-registered first: flush the ledger into the sink, then shut our
    # providers down (which exports what they hold), before the ledger's own exit hook.
    atexit.register(_flush_at_exit, ledger, sink)
    return sink


def _flush_at_exit(ledger: Ledger, sink: OTelSink) -> None:
    if sink._shut_down:
        return
    try:
        ledger.flush(5.0)
        sink.force_flush(5_000)
    finally:
        sink.shutdown()


# --- OpenTelemetry in -----------------------------------------------------------------------


def _first(attrs: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None and value != "":
            return value
    return None


def _count(attrs: Mapping[str, Any], names: Sequence[str]) -> int:
    value = _first(attrs, names)
    if value is None or isinstance(value, bool):
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 0
    return max(number, 0)


class AgentledgerSpanProcessor(SpanProcessor):
    """Record GenAI spans made by other instrumentations as ledger LLM events.

    ``provider.add_span_processor(AgentledgerSpanProcessor(ledger))``. On each ended span
    that carries a model and token usage (the GenAI conventions' ``gen_ai.*`` as written by
    OpenLLMetry and the official OpenAI instrumentation, older ``gen_ai.usage.prompt_tokens``
    spellings, or OpenInference's ``llm.token_count.*``), it calls ``ledger.record_llm``:

    * tokens follow docs/tokens.md: those conventions count cached tokens inside input
      tokens and reasoning inside output. If a span's cache counts exceed its input (an
      instrumentation that passed Anthropic-style counts through), they are added to input.
    * cost comes from the ledger's price book (a cost attribute on the span is ignored).
    * attribution comes from the agentledger scope active where the span ends, or from
      ``agentledger.*`` attributes on the span.
    * the span's trace id, span id and parent span id are kept in the event's metadata
      (``otel.trace_id``, ``otel.span_id``, ``otel.parent_span_id``); :class:`OTelSink`
      does not export such events again.
    * spans agentledger exported itself (``agentledger.event_id``) are skipped.

    It never raises: failures are counted in ``errors`` and logged.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.recorded = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._last_log = 0.0

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        """Nothing to do until the span ends."""

    def on_end(self, span: ReadableSpan) -> None:
        """Turn a finished GenAI span into a ledger event (never raises)."""
        try:
            self._record(span)
        except Exception as exc:
            with self._lock:
                self.errors += 1
                now = time.monotonic()
                if now - self._last_log >= 10.0:
                    self._last_log = now
                    log.warning("agentledger: could not record span %r: %s", span.name, exc)

    def _record(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        if sc.AL_EVENT_ID in attrs:
            return  # one of ours: already in the ledger
        model = _first(attrs, sc.MODEL_ALIASES)
        if (
            not isinstance(model, str)
            or _first(attrs, sc.INPUT_ALIASES + sc.OUTPUT_ALIASES) is None
        ):
            return  # not a GenAI model call with usage
        inp = _count(attrs, sc.INPUT_ALIASES)
        out = _count(attrs, sc.OUTPUT_ALIASES)
        cache_read = _count(attrs, sc.CACHE_READ_ALIASES)
        cache_write = _count(attrs, sc.CACHE_WRITE_ALIASES)
        reasoning = min(_count(attrs, sc.REASONING_ALIASES), out)
        if cache_read + cache_write > inp:
            inp += cache_read + cache_write  # input excluded the cached tokens
        provider = _first(attrs, sc.PROVIDER_ALIASES)
        provider = provider.lower() if isinstance(provider, str) else None
        start, end = span.start_time, span.end_time
        duration_ms = 0.0 if start is None or end is None else max(end - start, 0) / 1e6
        started_at = None if start is None else _EPOCH + timedelta(microseconds=start // 1000)
        metadata: dict[str, Any] = {sc.META_OTEL_SPAN_NAME: span.name}
        context = span.context
        if context is not None:
            metadata[sc.META_OTEL_TRACE_ID] = format(context.trace_id, "032x")
            metadata[sc.META_OTEL_SPAN_ID] = format(context.span_id, "016x")
        if span.parent is not None:
            metadata[sc.META_OTEL_PARENT_SPAN_ID] = format(span.parent.span_id, "016x")
        if span.instrumentation_scope is not None:
            metadata[sc.META_OTEL_SCOPE] = span.instrumentation_scope.name
        failed = span.status.status_code is StatusCode.ERROR
        error_type = attrs.get(sc.ERROR_TYPE)
        attribution = {
            field: value
            for field, key in sc.ATTRIBUTION
            if isinstance(value := attrs.get(key), str) and value
        }
        event_id = self.ledger.record_llm(
            model,
            inp,
            out,
            provider=provider or None,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            reasoning_tokens=reasoning,
            duration_ms=duration_ms,
            status="error" if failed else "ok",
            error_type=(str(error_type) if error_type else "SpanError") if failed else None,
            error_message=span.status.description if failed else None,
            metadata=metadata,
            started_at=started_at,
            bot_id=attribution.get("bot_id"),
            user_id=attribution.get("user_id"),
            task_id=attribution.get("task_id"),
            tenant_id=attribution.get("tenant_id"),
            session_id=attribution.get("session_id"),
        )
        if event_id is None:
            raise ValueError("the ledger rejected or dropped it (see ledger.stats())")
        with self._lock:
            self.recorded += 1

    def shutdown(self) -> None:
        """Nothing to release (the ledger is closed by its owner)."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Events are already in the ledger's queue."""
        return True
