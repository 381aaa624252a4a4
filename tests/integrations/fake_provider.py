"""A local fake of the OpenAI and Anthropic HTTP APIs, for driving the real SDKs in tests.

Run it with :class:`FakeProvider` (a ``ThreadingHTTPServer`` on ``127.0.0.1``, random port,
served from a daemon thread). Each request can be steered with headers the test sets via
the SDK's ``extra_headers``:

* ``x-fake-usage``: JSON, the provider-native ``usage`` object to answer with;
* ``x-fake-model``: the model name to answer with (default: the requested model);
* ``x-fake-chunks``: how many text chunks a stream sends (default 3; the words repeat);
* ``x-fake-json: compact|odd``: a Chat Completions stream's chunks are written as OpenAI
  writes them (no spaces) or spaced unusually (``" : "``); by default with Python's spacing;
* ``x-fake-usage-on: last``: a Chat Completions stream sends its usage on its last chunk
  with choices (as some OpenAI-compatible servers do), not on a chunk of its own; ``none``:
  it sends no usage at all (a server that ignores ``stream_options``);
* ``x-fake-tools``: JSON list of tool names: the model asks for these tools (Chat
  ``tool_calls``, Responses ``function_call`` items, Anthropic ``tool_use`` blocks, streamed
  or not) instead of answering with text; each call's arguments are ``{"q": "<name>"}``;
* ``x-fake-mode``: ``429`` / ``500`` (error with a JSON body), ``slow`` (answer after
  ``slow_s``, for client timeouts) or ``broken`` (a stream that stops mid-way and closes
  the connection).

Endpoints: ``/v1/chat/completions`` (JSON; SSE ending with a usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``), ``/v1/responses`` (JSON;
SSE ending with ``response.completed`` carrying usage), ``/v1/embeddings`` (float or base64)
and ``/v1/messages`` (Anthropic JSON; SSE ``message_start`` .. ``message_stop``). Every
request body is kept in ``requests`` for assertions.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DEFAULT_ANTHROPIC_USAGE", "DEFAULT_OPENAI_USAGE", "FakeProvider"]

DEFAULT_OPENAI_USAGE: dict[str, Any] = {
    "prompt_tokens": 20,
    "completion_tokens": 10,
    "total_tokens": 30,
}
DEFAULT_ANTHROPIC_USAGE: dict[str, Any] = {"input_tokens": 20, "output_tokens": 10}
WORDS = ["Hello", " there", ",", " friend", "!", " How", " are", " you", "?"]


def words(n: int) -> list[str]:
    """The first ``n`` text pieces of a response: :data:`WORDS`, repeated as needed."""
    return [WORDS[i % len(WORDS)] for i in range(n)]


#: ``x-fake-json`` -> the JSON separators of a Chat Completions stream's chunks.
_SPACING: dict[str | None, tuple[str, str] | None] = {
    None: None, "compact": (",", ":"), "odd": (" , ", " : "),
}  # fmt: skip


def _sse(data: Any, event: str | None = None, separators: tuple[str, str] | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=separators)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle holds the body back until
    # the client's delayed ACK (~40 ms per request).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # --- plumbing ---------------------------------------------------------------------------
    def _send(
        self, status: int, body: bytes, content_type: str, *, length: int | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body) if length is None else length))
        self.send_header("x-request-id", "req_fake")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _stream(self, events: list[bytes], *, broken: bool) -> None:
        if broken:
            # Promise a long body, send a little of it, then drop the connection.
            part = b"".join(events[: max(1, len(events) // 2)])
            self._send(200, part, "text/event-stream", length=len(part) + 10_000)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(200, b"".join(events), "text/event-stream")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.record(self.path, body, dict(self.headers))
        mode = self.headers.get("x-fake-mode", "")
        anthropic = self.path.startswith("/v1/messages")
        if mode in ("429", "500"):
            status = int(mode)
            if anthropic:
                kind = "rate_limit_error" if status == 429 else "api_error"
                self._json(status, {"type": "error", "error": {"type": kind, "message": "fake"}})
            else:
                message = "Rate limit reached" if status == 429 else "Server error"
                error = {"message": message, "type": "rate_limit_error", "code": None}
                self._json(status, {"error": error})
            return
        if mode == "slow":
            time.sleep(self.server.slow_s)
        usage_header = self.headers.get("x-fake-usage")
        usage = json.loads(usage_header) if usage_header else None
        model = self.headers.get("x-fake-model") or body.get("model") or "unknown"
        chunks = int(self.headers.get("x-fake-chunks") or 3)
        broken = mode == "broken"
        tools: list[str] = json.loads(self.headers.get("x-fake-tools") or "[]")
        try:
            if self.path == "/v1/chat/completions":
                if tools:
                    self._chat_tools(body, model, usage or DEFAULT_OPENAI_USAGE, tools)
                else:
                    self._chat(body, model, usage or DEFAULT_OPENAI_USAGE, chunks, broken)
            elif self.path == "/v1/responses":
                if tools:
                    self._responses_tools(body, model, usage or _responses_default(), tools)
                else:
                    self._responses(body, model, usage or _responses_default(), chunks, broken)
            elif self.path == "/v1/embeddings":
                self._embeddings(body, model, usage or {"prompt_tokens": 8, "total_tokens": 8})
            elif anthropic:
                if tools:
                    self._messages_tools(body, model, usage or DEFAULT_ANTHROPIC_USAGE, tools)
                else:
                    self._messages(body, model, usage or DEFAULT_ANTHROPIC_USAGE, chunks, broken)
            else:
                self._json(404, {"error": {"message": f"no route {self.path}", "type": "x"}})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer

    # --- OpenAI -------------------------------------------------------------------------------
    def _chat(self, body: dict[str, Any], model: str, usage: Any, n: int, broken: bool) -> None:
        created = 1_700_000_000
        text = "".join(words(n))
        if not body.get("stream"):
            self._json(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": created,
                "model": model,
                "choices": [{
                    "index": 0, "finish_reason": "stop", "logprobs": None,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                }],
                "usage": usage,
            })  # fmt: skip
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            c: dict[str, Any] = {
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                             "logprobs": None}],
            }  # fmt: skip
            if include_usage:
                c["usage"] = None
            return c

        spacing = _SPACING[self.headers.get("x-fake-json")]

        def sse(data: dict[str, Any]) -> bytes:
            return _sse(data, separators=spacing)

        events = [sse(chunk({"role": "assistant", "content": ""}))]
        events += [sse(chunk({"content": w})) for w in words(n)]
        final = chunk({}, "stop")
        usage_on = self.headers.get("x-fake-usage-on")
        if include_usage and usage_on == "last":
            final["usage"] = usage
        events.append(sse(final))
        if include_usage and usage_on is None:
            events.append(sse({
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [], "usage": usage,
            }))  # fmt: skip
        events.append(b"data: [DONE]\n\n")
        self._stream(events, broken=broken)

    def _chat_tools(self, body: dict[str, Any], model: str, usage: Any, tools: list[str]) -> None:
        created = 1_700_000_000
        calls: list[dict[str, Any]] = [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": name, "arguments": _args(name)}}
            for i, name in enumerate(tools)
        ]  # fmt: skip
        if not body.get("stream"):
            self._json(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": created,
                "model": model,
                "choices": [{
                    "index": 0, "finish_reason": "tool_calls", "logprobs": None,
                    "message": {"role": "assistant", "content": None, "refusal": None,
                                "tool_calls": calls},
                }],
                "usage": usage,
            })  # fmt: skip
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            c: dict[str, Any] = {
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                             "logprobs": None}],
            }  # fmt: skip
            if include_usage:
                c["usage"] = None
            return _sse(c)

        events = [chunk({"role": "assistant", "content": None})]
        for i, call in enumerate(calls):
            # The name comes once, in the call's first delta; the arguments follow in pieces.
            first = {"index": i, "id": call["id"], "type": "function",
                     "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
            events.append(chunk({"tool_calls": [first]}))
            text = call["function"]["arguments"]
            for part in (text[: len(text) // 2], text[len(text) // 2 :]):
                events.append(
                    chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
                )
        events.append(chunk({}, "tool_calls"))
        if include_usage:
            events.append(_sse({
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [], "usage": usage,
            }))  # fmt: skip
        events.append(b"data: [DONE]\n\n")
        self._stream(events, broken=False)

    def _response_obj(
        self, model: str, text: str, usage: Any, status: str, tools: list[str] | None = None
    ) -> dict[str, Any]:
        output = [_function_call(i, name) for i, name in enumerate(tools or [])]
        if text:
            output = [{
                "type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }]  # fmt: skip
        return {
            "id": "resp_fake", "object": "response", "created_at": 1_700_000_000,
            "status": status, "model": model, "output": output, "usage": usage,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "error": None, "incomplete_details": None, "instructions": None, "metadata": {},
            "temperature": 1.0, "top_p": 1.0,
        }  # fmt: skip

    def _responses(
        self, body: dict[str, Any], model: str, usage: Any, n: int, broken: bool
    ) -> None:
        text = "".join(words(n))
        if not body.get("stream"):
            self._json(200, self._response_obj(model, text, usage, "completed"))
            return
        seq = iter(range(1000))
        events = [_sse({"type": "response.created", "sequence_number": next(seq),
                        "response": self._response_obj(model, "", None, "in_progress")},
                       "response.created")]  # fmt: skip
        item = {"type": "message", "id": "msg_fake", "status": "in_progress",
                "role": "assistant", "content": []}  # fmt: skip
        events.append(_sse({"type": "response.output_item.added", "output_index": 0,
                            "item": item, "sequence_number": next(seq)},
                           "response.output_item.added"))  # fmt: skip
        events.append(_sse({"type": "response.content_part.added", "item_id": "msg_fake",
                            "output_index": 0, "content_index": 0, "sequence_number": next(seq),
                            "part": {"type": "output_text", "text": "", "annotations": []}},
                           "response.content_part.added"))  # fmt: skip
        for w in words(n):
            events.append(_sse({
                "type": "response.output_text.delta", "item_id": "msg_fake", "output_index": 0,
                "content_index": 0, "delta": w, "logprobs": [], "sequence_number": next(seq),
            }, "response.output_text.delta"))  # fmt: skip
        events.append(_sse({"type": "response.completed", "sequence_number": next(seq),
                            "response": self._response_obj(model, text, usage, "completed")},
                           "response.completed"))  # fmt: skip
        self._stream(events, broken=broken)

    def _responses_tools(
        self, body: dict[str, Any], model: str, usage: Any, tools: list[str]
    ) -> None:
        if not body.get("stream"):
            self._json(200, self._response_obj(model, "", usage, "completed", tools))
            return
        seq = iter(range(1000))
        events = [_sse({"type": "response.created", "sequence_number": next(seq),
                        "response": self._response_obj(model, "", None, "in_progress")},
                       "response.created")]  # fmt: skip
        for i, name in enumerate(tools):
            item = _function_call(i, name)
            added = {**item, "arguments": "", "status": "in_progress"}
            events.append(_sse({"type": "response.output_item.added", "output_index": i,
                                "item": added, "sequence_number": next(seq)},
                               "response.output_item.added"))  # fmt: skip
            events.append(_sse({"type": "response.function_call_arguments.delta",
                                "item_id": item["id"], "output_index": i,
                                "delta": item["arguments"], "sequence_number": next(seq)},
                               "response.function_call_arguments.delta"))  # fmt: skip
            events.append(_sse({"type": "response.output_item.done", "output_index": i,
                                "item": item, "sequence_number": next(seq)},
                               "response.output_item.done"))  # fmt: skip
        events.append(_sse({"type": "response.completed", "sequence_number": next(seq),
                            "response": self._response_obj(model, "", usage, "completed", tools)},
                           "response.completed"))  # fmt: skip
        self._stream(events, broken=False)

    def _embeddings(self, body: dict[str, Any], model: str, usage: Any) -> None:
        vector = [0.25, -0.5, 1.0]
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        if body.get("encoding_format") == "base64":
            data: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        else:
            data = vector
        self._json(200, {
            "object": "list", "model": model, "usage": usage,
            "data": [{"object": "embedding", "index": i, "embedding": data} for i in range(count)],
        })  # fmt: skip

    # --- Anthropic ----------------------------------------------------------------------------
    def _messages(
        self, body: dict[str, Any], model: str, usage: dict[str, Any], n: int, broken: bool
    ) -> None:
        text = "".join(words(n))
        if not body.get("stream"):
            self._json(200, {
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": usage,
            })  # fmt: skip
            return
        start_usage = {**usage, "output_tokens": 1}
        message: dict[str, Any] = {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage,
        }  # fmt: skip
        events = [
            _sse({"type": "message_start", "message": message}, "message_start"),
            _sse({"type": "content_block_start", "index": 0,
                  "content_block": {"type": "text", "text": ""}}, "content_block_start"),
            _sse({"type": "ping"}, "ping"),
        ]  # fmt: skip
        for w in words(n):
            events.append(_sse({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": w}},
                               "content_block_delta"))  # fmt: skip
        events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        events.append(_sse({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage.get("output_tokens", 0)},
        }, "message_delta"))  # fmt: skip
        events.append(_sse({"type": "message_stop"}, "message_stop"))
        self._stream(events, broken=broken)

    def _messages_tools(
        self, body: dict[str, Any], model: str, usage: dict[str, Any], tools: list[str]
    ) -> None:
        blocks = [_tool_use(i, name) for i, name in enumerate(tools)]
        if not body.get("stream"):
            self._json(200, {
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": blocks, "stop_reason": "tool_use", "stop_sequence": None,
                "usage": usage,
            })  # fmt: skip
            return
        message: dict[str, Any] = {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }  # fmt: skip
        events = [_sse({"type": "message_start", "message": message}, "message_start")]
        for i, block in enumerate(blocks):
            start = {**block, "input": {}}
            events.append(_sse({"type": "content_block_start", "index": i,
                                "content_block": start}, "content_block_start"))  # fmt: skip
            events.append(_sse({"type": "content_block_delta", "index": i,
                                "delta": {"type": "input_json_delta",
                                          "partial_json": json.dumps(block["input"])}},
                               "content_block_delta"))  # fmt: skip
            events.append(_sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
        events.append(_sse({
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": usage.get("output_tokens", 0)},
        }, "message_delta"))  # fmt: skip
        events.append(_sse({"type": "message_stop"}, "message_stop"))
        self._stream(events, broken=False)


def _args(name: str) -> str:
    return json.dumps({"q": name})


def _function_call(i: int, name: str) -> dict[str, Any]:
    return {"type": "function_call", "id": f"fc_{i}", "call_id": f"call_{i}", "name": name,
            "arguments": _args(name), "status": "completed"}  # fmt: skip


def _responses_default() -> dict[str, Any]:
    return {
        "input_tokens": 20, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 30,
    }  # fmt: skip


def _tool_use(i: int, name: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {"q": name}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.slow_s = 2.0

    def record(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append((path, body, headers))

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up is part of the tests, not a failure


class FakeProvider:
    """The fake server, running in a daemon thread until :meth:`stop`."""

    def __init__(self) -> None:
        self._server = _Server()
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
        with self._server.lock:
            return list(self._server.requests)

    def set_slow(self, seconds: float) -> None:
        self._server.slow_s = seconds

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
