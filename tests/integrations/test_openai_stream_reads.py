"""How an instrumented stream is read, through the real SDK with the body arriving a few
bytes at a time (an event split across network reads at any byte): the caller who did not
ask for usage never sees the usage chunk, the one who did gets the SDK's own chunk, and the
ledger records the same event as the typed-chunk path records (exact usage; none for a
stream closed before the SDK got to the usage event; a connection lost after it).
"""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2 as httpx  # the openai SDK's own HTTP client
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentledger import Event, Ledger
from agentledger.integrations import openai as al_openai
from agentledger.integrations.openai import _ChatWatcher
from agentledger.spans import _TOOL_REQUEST

from ._stored import events, only_event
from .test_openai_fast_paths import MESSAGES, USAGE, no_raw_watching, watcher_of


def test_next_close_and_iteration_through_the_proxy(fake: Any, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    with openai.OpenAI(base_url=fake.openai_url, api_key="test", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True,
            extra_headers={"x-fake-chunks": "4"},
        )  # fmt: skip
        first = next(stream)
        rest = list(stream)
        assert first.choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in rest) == "Hello there, friend"
        e = only_event(ledger)
        assert "usage_estimated" not in e.metadata
        stream = client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, extra_headers={"x-fake-chunks": "4"}
        )
        next(stream)
        stream.close()
    closed = [e for e in events(ledger) if e.metadata.get("stream_closed_early")]
    assert len(closed) == 1
    assert closed[0].metadata["usage_estimated"] is True


# --- through the SDK, the body arriving in small pieces ----------------------------------------
def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "o3-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }  # fmt: skip


def _event(data: Any) -> bytes:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


CONTENT = [
    _chunk({"role": "assistant", "content": ""}),
    {**_chunk({"content": "Hello"}), "obfuscation": "aB3"},  # OpenAI's member after usage
    _chunk({"content": ' "choices":[] '}),  # the marker inside a string: content, not usage
    {**_chunk({}, "stop"), "obfuscation": "x"},
]
HEAD = b"".join(_event(c) for c in CONTENT)
# The same chunks once the usage is asked for: each carries "usage": null, as OpenAI's do,
# before "obfuscation" where there is one.
HEAD_ASKED = b"".join(
    _event({**{k: v for k, v in c.items() if k != "obfuscation"}, "usage": None,
            **{k: v for k, v in c.items() if k == "obfuscation"}})
    for c in CONTENT
)  # fmt: skip
USAGE_EVENT = _event({"id": "c", "object": "chat.completion.chunk", "created": 1,
                      "model": "o3-mini", "choices": [], "usage": USAGE})  # fmt: skip
DONE = b"data: [DONE]\n\n"


class _Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that arrives ``size`` bytes at a time, optionally cut short."""

    def __init__(self, body: bytes, size: int, fail_at: int | None = None) -> None:
        self.body, self.size, self.fail_at = body, size, fail_at

    def __iter__(self) -> Iterator[bytes]:
        body = self.body if self.fail_at is None else self.body[: self.fail_at]
        for i in range(0, len(body), self.size):
            yield body[i : i + self.size]
        if self.fail_at is not None:
            raise httpx.ReadError("connection lost")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self:
            yield piece


def _answer(request: httpx.Request, size: int, fail_after_usage: bool) -> httpx.Response:
    """What the server sends: the usage chunk when asked for, then ``[DONE]``."""
    options = json.loads(request.content).get("stream_options") or {}
    body = (HEAD_ASKED + USAGE_EVENT if options.get("include_usage") else HEAD) + DONE
    fail_at = len(HEAD_ASKED) + len(USAGE_EVENT) if fail_after_usage else None
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          stream=_Pieces(body, size, fail_at))  # fmt: skip


def sync_client(size: int, fail_after_usage: bool = False) -> openai.OpenAI:
    transport = httpx.MockTransport(lambda request: _answer(request, size, fail_after_usage))
    return openai.OpenAI(base_url="http://fake.invalid/v1", api_key="x", max_retries=0,
                         http_client=httpx.Client(transport=transport))  # fmt: skip


def async_client(size: int) -> openai.AsyncOpenAI:
    async def handler(request: httpx.Request) -> httpx.Response:
        return _answer(request, size, False)

    return openai.AsyncOpenAI(base_url="http://fake.invalid/v1", api_key="x", max_retries=0,
                              http_client=httpx.AsyncClient(
                                  transport=httpx.MockTransport(handler)))  # fmt: skip


def dumps(chunks: list[Any]) -> list[dict[str, Any]]:
    """The chunks as the caller's code sees them: their fields, and which of them the
    server sent (``to_dict()`` leaves out the fields not sent)."""
    return [{"fields": c.model_dump(), "sent": c.to_dict()} for c in chunks]


def assert_exact(e: Event) -> None:
    assert (e.input_tokens, e.output_tokens) == (2000, 600)
    assert (e.cache_read_tokens, e.reasoning_tokens) == (1500, 400)
    assert e.model == "o3-mini"
    assert e.cost_source == "priced"
    assert e.metadata["ttft_ms"] >= 0
    assert "usage_estimated" not in e.metadata


@pytest.mark.parametrize("size", [1, 2, 7, 100, 100_000])
def test_the_caller_who_did_not_ask_for_usage_never_sees_its_chunk(
    ledger: Ledger, size: int
) -> None:
    with sync_client(size) as plain:
        expected = dumps(list(plain.chat.completions.create(
            model="o3-mini", messages=MESSAGES, stream=True)))  # fmt: skip
    with sync_client(size) as client:
        al_openai.wrap(client, ledger)
        stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES, stream=True)
        with stream:
            got = dumps(list(stream))
    assert got == expected  # exactly what the plain SDK gives
    assert len(got) == len(CONTENT)
    assert watcher_of(stream).usage_events_skipped == 1
    assert_exact(only_event(ledger))


@pytest.mark.parametrize("size", [1, 7, 100_000])
def test_the_caller_who_asked_for_usage_gets_the_sdks_own_chunk(ledger: Ledger, size: int) -> None:
    options: Any = {"include_usage": True}
    with sync_client(size) as plain:
        expected = dumps(list(plain.chat.completions.create(
            model="o3-mini", messages=MESSAGES, stream=True, stream_options=options)))  # fmt: skip
    with sync_client(size) as client:
        al_openai.wrap(client, ledger)
        stream = client.chat.completions.create(
            model="o3-mini", messages=MESSAGES, stream=True, stream_options=options
        )
        got = dumps(list(stream))
    assert got == expected
    assert got[-1]["sent"]["choices"] == []
    assert got[-1]["sent"]["usage"]["prompt_tokens"] == 2000
    assert all(chunk["sent"]["usage"] is None for chunk in got[:-1])  # as the server sent
    assert watcher_of(stream).usage_events_skipped == 0
    assert_exact(only_event(ledger))


@pytest.mark.parametrize("size", [1, 7, 100_000])
def test_async_stream_in_small_pieces(ledger: Ledger, size: int) -> None:
    async def main(wrapped: bool) -> tuple[list[Any], int]:
        async with async_client(size) as client:
            if wrapped:
                al_openai.wrap(client, ledger)
            stream = await client.chat.completions.create(
                model="o3-mini", messages=MESSAGES, stream=True
            )
            async with stream:
                chunks = [c async for c in stream]
            return chunks, watcher_of(stream).usage_events_skipped if wrapped else 0

    expected, _ = asyncio.run(main(wrapped=False))
    chunks, skipped = asyncio.run(main(wrapped=True))
    assert dumps(chunks) == dumps(expected)  # exactly what the plain SDK gives
    assert len(chunks) == len(CONTENT)
    assert all(c.choices for c in chunks)
    assert skipped == 1
    assert_exact(only_event(ledger))


@pytest.mark.parametrize("size", [7, 100_000])
def test_the_typed_chunks_behind_the_proxy_are_the_plain_sdks_too(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """Where the raw events cannot be watched, the typed chunks read behind a proxy are
    what the plain SDK gives too: the "usage": null each carries because the usage was
    asked for is unset again."""
    with sync_client(size) as plain:
        expected = dumps(list(plain.chat.completions.create(
            model="o3-mini", messages=MESSAGES, stream=True)))  # fmt: skip
    monkeypatch.setattr(al_openai, "_watch_events", no_raw_watching)
    with sync_client(size) as client:
        al_openai.wrap(client, ledger)
        stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES, stream=True)
        got = dumps(list(stream))
    assert got == expected
    assert_exact(only_event(ledger))


def _stable(e: Event) -> tuple[Any, ...]:
    meta = {k: v for k, v in e.metadata.items() if k != "ttft_ms"}
    return (e.status, e.error_type, e.model, e.input_tokens, e.output_tokens,
            e.cache_read_tokens, e.reasoning_tokens, e.cost_usd, meta)  # fmt: skip


def _raw_and_typed(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, run: Callable[[], None]
) -> Event:
    """``run`` with the usage event read raw, then as the SDK's typed chunk: the two events
    recorded are equal but for what differs from call to call; the first is returned."""
    run()
    with monkeypatch.context() as m:
        m.setattr(al_openai, "_watch_events", no_raw_watching)
        run()
    raw, typed = events(ledger)
    assert _stable(raw) == _stable(typed)
    return raw


@pytest.mark.parametrize("size", [1, 7, 100_000])
@pytest.mark.parametrize("stop_after", [1, len(CONTENT)])
def test_a_stream_closed_early_records_what_the_typed_path_records(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, size: int, stop_after: int
) -> None:
    """Even with the whole body already received, a stream the caller leaves before the SDK
    got to the usage event has no usage: estimated and closed early."""

    def run() -> None:
        with sync_client(size) as client:
            al_openai.wrap(client, ledger)
            stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES, stream=True)
            with stream:
                for i, _ in enumerate(stream, 1):
                    if i == stop_after:
                        break

    raw = _raw_and_typed(ledger, monkeypatch, run)
    assert raw.metadata["usage_estimated"] is True
    assert raw.metadata["stream_closed_early"] is True


@pytest.mark.parametrize("size", [5, 100_000])
def test_a_connection_lost_after_the_usage_event_records_what_the_typed_path_records(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    def run() -> None:
        with sync_client(size, fail_after_usage=True) as client:
            al_openai.wrap(client, ledger)
            stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES, stream=True)
            with pytest.raises(openai.APIConnectionError):
                list(stream)

    raw = _raw_and_typed(ledger, monkeypatch, run)
    assert raw.status == "error"
    assert (raw.input_tokens, raw.output_tokens) == (2000, 600)  # the usage had arrived
    assert raw.metadata["partial"] is True


@pytest.mark.parametrize("size", [3, 100_000])
def test_a_broken_chunk_that_reads_as_the_usage_chunk_is_hidden_and_the_call_estimated(
    ledger: Ledger, caplog: pytest.LogCaptureFixture, size: int
) -> None:
    """The usage-only chunk known by its text is decoded when the call is recorded: one cut
    short (no JSON) is still kept from the caller, who never asked for it (the plain SDK
    would raise on it), and the call is recorded with the tokens seen, as an estimate."""
    broken = b'data: {"id":"c","model":"o3-mini","choices":[],"usage":{"prompt_tokens":2\n\n'

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              stream=_Pieces(HEAD + broken + DONE, size))  # fmt: skip

    transport = httpx.MockTransport(answer)
    with openai.OpenAI(base_url="http://fake.invalid/v1", api_key="x", max_retries=0,
                       http_client=httpx.Client(transport=transport)) as client:  # fmt: skip
        al_openai.wrap(client, ledger)
        stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES, stream=True)
        chunks = list(stream)
        assert watcher_of(stream).usage_events_skipped == 1
    assert len(chunks) == len(CONTENT)
    assert all(c.choices for c in chunks)
    e = only_event(ledger)
    assert e.status == "ok"
    assert (e.input_tokens, e.output_tokens) == (0, 2)  # "Hello" and the quoted marker
    assert e.metadata["usage_estimated"] is True
    assert "could not read a usage chunk" in caplog.text


def test_a_recorded_stream_waiting_for_the_writer_holds_no_http_response() -> None:
    """The call handed to the ledger's writer at ``[DONE]`` keeps what it reads (the raw
    events' text), not the stream's HTTP response: that is freed with the stream, on the
    caller's thread, as without agentledger (not held, with its request and headers, until
    the writer builds the row, up to a flush interval later)."""
    from agentledger.testing import memory_ledger

    led = memory_ledger(flush_interval_s=3600.0)
    try:
        with sync_client(100_000) as client:
            al_openai.wrap(client, led)

            def stream_once() -> weakref.ref[Any]:
                stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES,
                                                        stream=True)  # fmt: skip
                assert len(list(stream)) == len(CONTENT)
                return weakref.ref(stream.response)

            stream_once()
            assert led.flush(timeout=10)  # the writer started, and now sleeps for an hour
            response = stream_once()
            gc.collect()
            # the call waits for the writer, unread (its row not built; see _take_inbox)
            assert len(led._inbox) + len(led._buf) == 1
            assert response() is None
        assert [e.input_tokens for e in events(led)] == [2000, 2000]
    finally:
        led.close()


# --- the wrappers' direct stream path --------------------------------------------------------
def test_a_failing_attach_is_logged_and_the_stream_still_recorded(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(al_openai, "_watch_events", boom)
    with sync_client(7) as client:
        al_openai.wrap(client, ledger)
        stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES, stream=True)
        assert isinstance(stream, openai.Stream)
        chunks = list(stream)
    assert len(chunks) == len(CONTENT)  # the typed usage chunk is hidden instead
    assert watcher_of(stream).usage_events_skipped == 0
    assert_exact(only_event(ledger))
    assert "could not attach to a chat.completions stream" in caplog.text

    async def main() -> list[Any]:
        async with async_client(7) as aclient:
            al_openai.wrap(aclient, ledger)
            astream = await aclient.chat.completions.create(
                model="o3-mini", messages=MESSAGES, stream=True
            )
            assert isinstance(astream, openai.AsyncStream)
            return [c async for c in astream]

    assert len(asyncio.run(main())) == len(CONTENT)
    assert [e.input_tokens for e in events(ledger)] == [2000, 2000]


def test_a_failing_stream_check_is_logged_and_the_sdks_stream_returned(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever goes wrong in agentledger after the SDK answered, the caller gets its result."""

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    from agentledger.integrations import _common

    monkeypatch.setattr(al_openai, "_watch_events", boom)  # no raw watching: a proxy, which
    monkeypatch.setattr(_common.AsyncStreamProxy, "__init__", boom)  # fails too

    async def main() -> Any:
        async with async_client(7) as client:
            al_openai.wrap(client, ledger)
            stream = await client.chat.completions.create(
                model="o3-mini", messages=MESSAGES, stream=True
            )
            assert type(stream) is openai.AsyncStream  # the SDK's own object
            return [c async for c in stream]

    asyncio.run(main())
    assert "could not record a chat.completions call" in caplog.text


# --- the SDK's own stream, watched on its raw events: errors, leaving, dropping --------------
def body_client(body: bytes, size: int = 100_000) -> openai.OpenAI:
    """A client whose every stream answers ``body`` (``size`` bytes at a time)."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              stream=_Pieces(body, size))  # fmt: skip

    transport = httpx.MockTransport(answer)
    return openai.OpenAI(base_url="http://fake.invalid/v1", api_key="x", max_retries=0,
                         http_client=httpx.Client(transport=transport))  # fmt: skip


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ({"message": "overloaded", "type": "server_error"}, "overloaded"),
        ({"type": "server_error"}, "An error occurred during streaming"),  # the SDK's words
        ("bad", "An error occurred during streaming"),
    ],
)
def test_an_error_event_records_the_error_the_sdk_raises(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, error: Any, message: str
) -> None:
    """The SDK raises ``APIError`` on an event with an ``error``: the raw watcher, which
    sees the event but not the exception, records the same error as the typed path."""
    body = HEAD[: HEAD.index(b"\n\n") + 2] + _event({"error": error}) + USAGE_EVENT + DONE

    def run() -> None:
        with body_client(body) as client:
            al_openai.wrap(client, ledger)
            stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES, stream=True)
            with pytest.raises(openai.APIError) as info:
                list(stream)
            assert type(info.value) is openai.APIError
            assert str(info.value) == message

    raw = _raw_and_typed(ledger, monkeypatch, run)
    assert (raw.status, raw.error_type, raw.error_message) == ("error", "APIError", message)
    assert raw.metadata["partial"] is True
    assert raw.metadata["usage_estimated"] is True
    assert [e.error_message for e in events(ledger)] == [message, message]


def test_a_stream_never_read_is_recorded_when_freed(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's stream holds its own unstarted generator, which holds the stream: dropped
    unread, it is freed by the garbage collector, and the call is recorded then."""

    def run() -> None:
        before = len(events(ledger))
        with sync_client(100_000) as client:
            al_openai.wrap(client, ledger)
            stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES, stream=True)
            assert len(events(ledger)) == before
            del stream
            gc.collect()
            assert len(events(ledger)) == before + 1

    raw = _raw_and_typed(ledger, monkeypatch, run)
    assert raw.metadata["stream_closed_early"] is True
    assert raw.metadata["usage_estimated"] is True
    assert raw.output_tokens == 0


def test_close_records_at_once_and_then_closes_the_sdks_stream(ledger: Ledger) -> None:
    with sync_client(7) as client:
        al_openai.wrap(client, ledger)
        stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES, stream=True)
        assert type(stream) is openai.Stream
        next(iter(stream))
        assert events(ledger) == []
        stream.close()
        e = only_event(ledger)  # recorded by close(), before the stream is dropped
        assert e.metadata["stream_closed_early"] is True
        assert stream.response.is_closed
        stream.close()  # twice: harmless, nothing more recorded
    assert len(events(ledger)) == 1


def test_async_stream_left_early_records_what_the_typed_path_records(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run() -> None:
        async def main() -> None:
            async with async_client(7) as client:
                al_openai.wrap(client, ledger)
                stream = await client.chat.completions.create(
                    model="o3-mini", messages=MESSAGES, stream=True
                )
                async with stream:
                    async for _ in stream:
                        break
                assert stream.response.is_closed

        asyncio.run(main())

    raw = _raw_and_typed(ledger, monkeypatch, run)
    assert raw.metadata["stream_closed_early"] is True
    assert raw.metadata["usage_estimated"] is True


def test_a_sync_durability_ledger_writes_a_raw_watched_stream_at_once(tmp_path: Any) -> None:
    """With ``durability="sync"`` the row is built on the caller's thread when the stream
    ends (the reads the writer would do are done there)."""
    ledger = Ledger(f"sqlite:///{tmp_path}/s.db", durability="sync", handle_signals=False)
    try:
        with sync_client(7) as client:
            al_openai.wrap(client, ledger)
            stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES, stream=True)
            assert len(list(stream)) == len(CONTENT)
            assert ledger.stats().written == 1  # no flush needed
        assert_exact(only_event(ledger))
    finally:
        ledger.close()


def test_a_failure_reading_the_kept_events_keeps_the_call_as_an_estimate(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer reads a raw-watched stream's events when it builds the row: if that
    fails, the call is still recorded (usage estimated), never lost."""

    def boom(self: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(_ChatWatcher, "settle", boom)
    with sync_client(7) as client:
        al_openai.wrap(client, ledger)
        stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES, stream=True)
        assert len(list(stream)) == len(CONTENT)
    e = only_event(ledger)
    assert e.metadata["usage_estimated"] is True
    assert e.model == "o3-mini"  # the request's model
    assert "could not read a stream's events" in caplog.text
    assert ledger.stats().rejected == 0


# --- session 15: any sequence of chunks, raw-watched and typed, records the same -----------------
_TEXT = st.lists(
    st.sampled_from(["a", " ", '"', "\\", "{", "}", ":", "[", "]", "delta", '"delta"',
                     '"choices":[]', "é"]),
    max_size=4,
).map("".join)  # fmt: skip
_DELTAS = st.one_of(
    st.builds(lambda t: {"role": "assistant", "content": t}, _TEXT),
    st.builds(lambda t: {"content": t}, _TEXT),
    st.builds(lambda t: {"refusal": t}, _TEXT),
    st.builds(lambda t: {"reasoning_content": t}, _TEXT),
    st.just({}),
    st.just({"content": None}),
    st.builds(lambda name, args: {"tool_calls": [{"index": 0, "id": "t", "type": "function",
                                                  "function": {"name": name, "arguments": args}}]},
              st.sampled_from(["lookup", "add"]), _TEXT),
    st.just({"tool_calls": []}),
)  # fmt: skip
_AZURE_FILTER = {"id": "", "object": "", "created": 0, "model": "", "choices": [],
                 "prompt_filter_results": [{"prompt_index": 0}]}  # fmt: skip


def _usage_text_of(shape: str) -> bytes:
    """The usage-only chunk, written the ``shape`` way: as OpenAI writes it (``compact``),
    with spaces (``spaced``), or in shapes the raw filter's text test leaves to the JSON
    decoder: usage before choices, an object or an escaped quote before choices, and
    blanks before the object (see ``_usage_text`` in the integration)."""
    base: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 1,
                            "model": "o3-mini"}  # fmt: skip
    if shape == "nested":
        base["meta"] = {"region": "eu"}
    elif shape == "escaped":
        base["note"] = 'a "quoted" \\ note'
    if shape == "usage_first":
        chunk = {**base, "usage": USAGE, "choices": []}
    else:
        chunk = {**base, "choices": [], "usage": USAGE}
    if shape == "spaced":
        return f"data: {json.dumps(chunk)}\n\n".encode()
    text = json.dumps(chunk, separators=(",", ":"))
    return f"data: {'  ' if shape == 'blanks' else ''}{text}\n\n".encode()


_USAGE_SHAPES = ("compact", "spaced", "usage_first", "nested", "escaped", "blanks")


@pytest.mark.parametrize("usage_shape", _USAGE_SHAPES)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    deltas=st.lists(_DELTAS, max_size=8),
    azure=st.booleans(),
    finish=st.booleans(),
    size=st.sampled_from([3, 100_000]),
)
def test_any_chunk_sequence_records_and_shows_what_the_typed_path_does(
    ledger: Ledger, deltas: list[dict[str, Any]], azure: bool, finish: bool, size: int,
    usage_shape: str,
) -> None:  # fmt: skip
    """The raw event filter's reading (a ``"delta"`` test per event; the first token found
    from the kept events' times; the usage-only chunk known by its text or decoded) against
    the typed chunks' reading, through the real SDK: the caller sees the same chunks, and
    the same event is recorded (tokens, whether a first token came), and the same tools are
    noted for the tool calls that answer it."""
    chunks = [_chunk(d) for d in deltas] + ([_chunk({}, "stop")] if finish else [])
    if azure:
        chunks.insert(0, _AZURE_FILTER)
    head = b"".join(_event(c) for c in chunks)
    # Once the usage is asked for, every chunk carries "usage": null (as OpenAI's do)
    head_asked = b"".join(_event({**c, "usage": None}) for c in chunks)
    usage_event = _usage_text_of(usage_shape)

    def answer(request: httpx.Request) -> httpx.Response:
        options = json.loads(request.content).get("stream_options") or {}
        body = (head_asked + usage_event if options.get("include_usage") else head) + DONE
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              stream=_Pieces(body, size))  # fmt: skip

    with openai.OpenAI(
        base_url="http://fake.invalid/v1",
        api_key="x",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(answer)),
    ) as plain:
        plain_seen = dumps(list(plain.chat.completions.create(
            model="o3-mini", messages=MESSAGES, stream=True)))  # fmt: skip

    def run(raw: bool) -> tuple[list[dict[str, Any]], Event, frozenset[str] | None]:
        before = len(events(ledger))
        _TOOL_REQUEST.set(None)
        client = openai.OpenAI(
            base_url="http://fake.invalid/v1",
            api_key="x",
            max_retries=0,
            http_client=httpx.Client(transport=httpx.MockTransport(answer)),
        )
        with client, pytest.MonkeyPatch.context() as m:
            if not raw:
                m.setattr(al_openai, "_watch_events", no_raw_watching)
            al_openai.wrap(client, ledger)
            stream = client.chat.completions.create(model="o3-mini", messages=MESSAGES,
                                                    stream=True)  # fmt: skip
            with stream:
                seen = dumps(list(stream))
        stored = events(ledger)
        assert len(stored) == before + 1
        asked = _TOOL_REQUEST.get()  # the tools the response asked for, noted for tool calls
        _TOOL_REQUEST.set(None)  # (not left to the tests after this one)
        return seen, stored[-1], None if asked is None else asked.names

    raw_seen, raw_event, raw_tools = run(raw=True)
    typed_seen, typed_event, typed_tools = run(raw=False)
    assert raw_seen == typed_seen == plain_seen  # what the plain SDK shows, either way
    assert raw_tools == typed_tools
    assert all(c["fields"]["choices"] for c in raw_seen if c["fields"]["id"])  # (no usage)
    assert _stable(raw_event) == _stable(typed_event)
    assert ("ttft_ms" in raw_event.metadata) == ("ttft_ms" in typed_event.metadata)
    assert (raw_event.input_tokens, raw_event.output_tokens) == (2000, 600)
