"""Run by test_otel in a child process: the real OpenAI instrumentation -> ledger events.

opentelemetry-instrumentation-openai's ``uninstrument()`` leaves some of its wrappers on the
openai SDK (its stream proxies), which would leak into other tests; a child process keeps
the patching out of the test process. Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

warnings.simplefilter("error")  # as pytest's filterwarnings = error
# Third-party, unavoidable: opentelemetry-instrumentation-openai 0.62 declares a pydantic
# model with a class-based ``Config`` (responses_wrappers.TracedData) at import time.
warnings.filterwarnings("ignore", message="Support for class-based `config` is deprecated")

CHAT_RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


class FakeOpenAI(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        data = json.dumps(CHAT_RESPONSE).encode()
        self.send_response(200 if self.path == "/v1/chat/completions" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    import openai
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from agentledger import Ledger
    from agentledger.export.otel import AgentledgerSpanProcessor

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ledger = Ledger(handle_signals=False)
    seen: list[Any] = []
    ledger.add_sink(seen.extend)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(AgentledgerSpanProcessor(ledger))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    with ledger.scope(user_id="alice", task_id="t-9"):
        client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
        reply = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
        )
        client.close()
    ledger.close()
    server.shutdown()
    server.server_close()
    spans = exporter.get_finished_spans()
    out = {
        "reply": reply.choices[0].message.content,
        "spans": [
            {
                "name": s.name,
                "trace_id": format(s.context.trace_id, "032x") if s.context else None,
                "span_id": format(s.context.span_id, "016x") if s.context else None,
                "attributes": {k: v for k, v in (s.attributes or {}).items() if "." in k},
            }
            for s in spans
        ],
        "models": {
            str(model): {
                "calls": t.calls,
                "input_tokens": t.input_tokens,
                "output_tokens": t.output_tokens,
                "cache_read_tokens": t.cache_read_tokens,
                "cost_usd": str(t.cost_usd),
            }
            for model, t in ledger.breakdown("model").items()
        },
        "alice_calls": ledger.totals(user_id="alice").calls,
        "task_calls": ledger.totals(task_id="t-9").calls,
        "stats": {"recorded": ledger.stats().recorded, "rejected": ledger.stats().rejected},
        "events": [e.as_dict() for e in seen],
    }
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
