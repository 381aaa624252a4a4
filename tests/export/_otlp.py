"""A tiny OTLP/HTTP receiver for tests: decodes the real protobuf requests it is sent."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass
class Received:
    """What the receiver was sent, decoded."""

    traces: list[ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    hold: threading.Event | None = None  # if set, requests wait on it (a slow collector)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def spans(self) -> list[Any]:
        """Every span received, flattened."""
        with self.cond:
            return [
                span
                for request in self.traces
                for resource_spans in request.resource_spans
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ]

    def metric(self, name: str) -> list[Any]:
        """Every metric message received with this name."""
        with self.cond:
            return [
                metric
                for request in self.metrics
                for resource_metrics in request.resource_metrics
                for scope_metrics in resource_metrics.scope_metrics
                for metric in scope_metrics.metrics
                if metric.name == name
            ]


def free_port() -> int:
    """A TCP port nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def otlp_receiver(*, slow: bool = False) -> Iterator[tuple[str, Received]]:
    """Serve POST /v1/traces and /v1/metrics on 127.0.0.1; yield (base URL, Received)."""
    received = Received(hold=threading.Event() if slow else None)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if received.hold is not None:
                received.hold.wait(30)  # released at teardown: slower than any test timeout
            reply: Any
            if self.path == "/v1/traces":
                trace_request = ExportTraceServiceRequest.FromString(body)
                with received.cond:
                    received.traces.append(trace_request)
                    received.cond.notify_all()
                reply = ExportTraceServiceResponse()
            elif self.path == "/v1/metrics":
                metrics_request = ExportMetricsServiceRequest.FromString(body)
                with received.cond:
                    received.metrics.append(metrics_request)
                    received.cond.notify_all()
                reply = ExportMetricsServiceResponse()
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = reply.SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the exporter gave up (slow-collector test)
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        if received.hold is not None:
            received.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
