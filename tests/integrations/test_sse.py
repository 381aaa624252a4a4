"""agentledger's reader of server-sent events (``integrations/_sse.py``) gives exactly the
events the SDKs' own ``SSEDecoder`` gives, at the same moments, on any bytes cut anywhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic._streaming as anthropic_sse
import openai._streaming as openai_sse
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentledger.integrations import _sse
from agentledger.integrations._sse import FastDecoder

from ._stored import events, only_event

SDKS = [openai_sse, anthropic_sse]

# Pieces streams are made of: the usual events, and every form the SSE format allows that the
# fast path must hand to the SDK's decoder (other fields, CR and CRLF line ends, comments,
# data of several lines, no space after the colon, blank lines, bad UTF-8, a BOM).
PIECES = [
    b'data: {"id":"c1","choices":[{"delta":{"content":"Hi"}}],"usage":null}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n',
    b"data: [DONE]\n\n",
    "data: caf\u00e9 \u2603\n\n".encode(),
    b"data: \n\n",
    b"data: a:b: c\n\n",
    b"data:  two spaces\n\n",
    b"data:x\n\n",
    b"event: error\ndata: {}\n\n",
    b"event: message_start\n",
    b"id: 7\n",
    b"id: a\0b\n",
    b"retry: 30\n",
    b"retry: soon\n",
    b": a comment\n",
    b"data: one\ndata: two\n\n",
    b"data: crlf\r\n\r\n",
    b"data: cr\r\r",
    b"\n",
    b"\r",
    b"data: bad \xff\xfe utf-8\n\n",
    b"\xef\xbb\xbfdata: bom\n\n",
    b"data",
    b": ",
    b"unknown: field\n",
    b"data: " + b"x" * 70_000 + b"\n\n",  # longer than what the fast reader holds
    # Anthropic's form: an event line, then the data line
    b'event: message_start\ndata: {"type":"message_start"}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n',
    b"event: \ndata: no name\n\n",
    b"event: a: b\ndata: colon in the name\n\n",
    b"event:tight\ndata: x\n\n",
    b"event: only\n\n",
    b"event: two\ndata: a\ndata: b\n\n",
    b"data: first\nevent: after\n\n",
    b"event: bad \xff\ndata: x\n\n",
    b"event: x\nid: 3\ndata: y\n\n",
]


def _shape(sse: Any) -> tuple[Any, ...]:
    return (type(sse), sse.event, sse.data, sse.id, sse.retry)


class _Counted:
    """The chunks, counting how many were taken (so that each event's moment is known)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.taken = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.taken += 1
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.taken += 1
            await asyncio.sleep(0)
            yield chunk


def _read(decoder: Any, chunks: list[bytes]) -> tuple[list[tuple[Any, ...]], Any]:
    """Each event with the number of chunks taken when it came, and the error, if any."""
    source = _Counted(chunks)
    out: list[tuple[Any, ...]] = []
    try:
        for sse in decoder.iter_bytes(iter(source)):
            out.append((source.taken, *_shape(sse)))
    except Exception as exc:  # compared by type
        return out, type(exc)
    return out, None


def _aread(decoder: Any, chunks: list[bytes]) -> tuple[list[tuple[Any, ...]], Any]:
    source = _Counted(chunks)
    out: list[tuple[Any, ...]] = []

    async def main() -> Any:
        try:
            async for sse in decoder.aiter_bytes(source.__aiter__()):
                out.append((source.taken, *_shape(sse)))
        except Exception as exc:
            return type(exc)
        return None

    return out, asyncio.run(main())


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _both(sdk: Any, chunks: list[bytes]) -> None:
    fast = FastDecoder(sdk.SSEDecoder(), sdk.ServerSentEvent)
    assert _read(fast, chunks) == _read(sdk.SSEDecoder(), chunks)


streams = st.lists(st.sampled_from(PIECES), max_size=12).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=200_000), max_size=8)


@pytest.mark.parametrize("sdk", SDKS, ids=lambda m: m.__name__.split(".")[0])
@settings(max_examples=300, deadline=None)
@given(data=streams, cut_at=cuts)
@example(data=PIECES[0] * 3 + PIECES[2], cut_at=[])
@example(data=PIECES[0] + PIECES[16] + PIECES[0], cut_at=[5, 80])
@example(data=PIECES[0] + PIECES[17] + PIECES[0], cut_at=[])
@example(data=PIECES[0] + PIECES[18] + PIECES[10] + PIECES[18] + PIECES[0], cut_at=[])
def test_same_events_at_the_same_moments_as_the_sdk(
    sdk: Any, data: bytes, cut_at: list[int]
) -> None:
    _both(sdk, _cut(data, cut_at))


@pytest.mark.parametrize("sdk", SDKS, ids=lambda m: m.__name__.split(".")[0])
@settings(max_examples=60, deadline=None)
@given(data=streams, cut_at=cuts)
def test_async_same_events_at_the_same_moments_as_the_sdk(
    sdk: Any, data: bytes, cut_at: list[int]
) -> None:
    chunks = _cut(data, cut_at)
    fast = FastDecoder(sdk.SSEDecoder(), sdk.ServerSentEvent)
    assert _aread(fast, chunks) == _aread(sdk.SSEDecoder(), chunks)


class _Refuses:
    """In place of the SDK's decoder: fails if anything is handed to it."""

    def iter_bytes(self, iterator: Any) -> Iterator[Any]:
        raise AssertionError("handed to the SDK's decoder")


def test_the_usual_stream_is_read_without_the_sdk_decoder() -> None:
    """The pieces the fast path takes are read by it (not handed on), one byte at a time too."""
    usual = PIECES[0] * 4 + PIECES[1] + PIECES[3] + PIECES[4] + PIECES[5]
    usual += PIECES[26] + PIECES[27] * 2 + PIECES[28] + PIECES[29] + PIECES[2]
    fast = FastDecoder(_Refuses(), openai_sse.ServerSentEvent)
    one_by_one = [usual[i : i + 1] for i in range(len(usual))]
    for chunks in ([usual], one_by_one):
        events, error = _read(fast, chunks)
        assert error is None
        assert [e[3] for e in events][-1] == "[DONE]"
        assert len(events) == 14
        assert events[8][2:4] == ("message_start", '{"type":"message_start"}')
        assert events[11][2:4] == (None, "no name")
        assert events[12][2:4] == ("a: b", "colon in the name")


def test_a_cr_anywhere_hands_the_rest_to_the_sdk_at_once() -> None:
    """A CRLF stream is not held until its end waiting for a ``\\n\\n``."""
    chunks = [b"data: a\r\n\r\n", b"data: b\r\n\r\n", b"data: c\r\n\r\n"]
    events, error = _read(FastDecoder(openai_sse.SSEDecoder(), openai_sse.ServerSentEvent), chunks)
    assert error is None
    assert [(e[0], e[3]) for e in events] == [(1, "a"), (2, "b"), (3, "c")]


def test_a_long_event_is_handed_on_not_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sse, "_HOLD_LIMIT", 20)
    chunks = [b"data: " + b"y" * 8, b"y" * 8, b"y" * 8, b"\n\ndata: z\n\n"]
    _both(openai_sse, chunks)
    handed: list[bytes] = []

    class Spy(openai_sse.SSEDecoder):
        def iter_bytes(self, iterator: Any) -> Iterator[Any]:
            return super().iter_bytes(handed.append(chunk) or chunk for chunk in iterator)

    events, _ = _read(FastDecoder(Spy(), openai_sse.ServerSentEvent), chunks)
    assert [e[3] for e in events] == ["y" * 24, "z"]
    assert handed == [b"data: " + b"y" * 16, b"y" * 8, b"\n\ndata: z\n\n"]


def test_the_fake_providers_streams_read_the_same(fake: Any) -> None:
    """The streams of the tests' fake provider, whole and one byte at a time."""
    import httpx

    messages = [{"role": "user", "content": "hi"}]
    with httpx.Client() as http:
        chat = http.post(f"{fake.openai_url}/chat/completions", json={
            "model": "gpt-4o-mini", "messages": messages, "stream": True,
            "stream_options": {"include_usage": True}}).content  # fmt: skip
        messages_ = http.post(f"{fake.anthropic_url}/v1/messages", json={
            "model": "claude-sonnet-4-5", "messages": messages, "max_tokens": 10,
            "stream": True}).content  # fmt: skip
    assert chat.count(b"\n\n") >= 4
    assert messages_.count(b"\n\n") >= 4
    for sdk, data in ((openai_sse, chat), (anthropic_sse, messages_)):
        _both(sdk, [data])
        _both(sdk, [data[i : i + 1] for i in range(len(data))])
        # ... and every event of both is read by the fast path
        events, error = _read(FastDecoder(_Refuses(), sdk.ServerSentEvent), [data])
        assert error is None
        assert len(events) >= 4


# --- in the integrations ---------------------------------------------------------------------
MESSAGES = [{"role": "user", "content": "hi"}]
USAGE_HEADER = {"x-fake-chunks": "5"}


def _openai_chat(client: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=USAGE_HEADER
    )


def _openai_responses(client: Any) -> Any:
    return client.responses.create(
        model="gpt-4o-mini", input="hi", stream=True, extra_headers=USAGE_HEADER
    )


def _anthropic_create(client: Any) -> Any:
    return client.messages.create(
        model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES, stream=True,
        extra_headers=USAGE_HEADER,
    )  # fmt: skip


def _decoder_of(stream: Any) -> Any:
    return stream._decoder  # (through the proxy, where there is one)


def _sync_items(make: Any, client: Any) -> tuple[list[Any], Any]:
    with client:
        stream = make(client)
        decoder = _decoder_of(stream)
        return [item.model_dump() for item in stream], decoder


def _openai(fake: Any, is_async: bool = False) -> Any:
    import openai

    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(base_url=fake.openai_url, api_key="test", max_retries=0)


def _anthropic(fake: Any, is_async: bool = False) -> Any:
    import anthropic

    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    return cls(base_url=fake.anthropic_url, api_key="test", max_retries=0)


SYNC_CASES = [
    ("openai", _openai, _openai_chat),
    ("openai", _openai, _openai_responses),
    ("anthropic", _anthropic, _anthropic_create),
]


def _instrument(provider: str, ledger: Any) -> None:
    from agentledger.integrations import anthropic as al_anthropic
    from agentledger.integrations import openai as al_openai

    (al_openai if provider == "openai" else al_anthropic).instrument(ledger=ledger)


@pytest.mark.parametrize(("provider", "client_of", "make"), SYNC_CASES,
                         ids=["chat", "responses", "messages"])  # fmt: skip
def test_watched_streams_read_with_it_and_the_caller_sees_the_sdks_items(
    fake: Any, ledger: Any, provider: str, client_of: Any, make: Any
) -> None:
    plain, plain_decoder = _sync_items(make, client_of(fake))
    _instrument(provider, ledger)
    watched, decoder = _sync_items(make, client_of(fake))
    assert type(plain_decoder).__name__ == "SSEDecoder"
    assert type(decoder) is FastDecoder
    assert watched == plain
    event = only_event(ledger)
    assert event.status == "ok"
    assert event.output_tokens > 0


def test_async_watched_streams_read_with_it(fake: Any, ledger: Any) -> None:
    async def items(client: Any, make: Any) -> tuple[list[Any], Any]:
        async with client:
            stream = await make(client)
            decoder = _decoder_of(stream)
            return [item.model_dump() async for item in stream], decoder

    cases = [("openai", _openai, _openai_chat), ("anthropic", _anthropic, _anthropic_create)]
    plain = [asyncio.run(items(client_of(fake, True), make)) for _, client_of, make in cases]
    for provider, _, _ in cases:
        _instrument(provider, ledger)
    watched = [asyncio.run(items(client_of(fake, True), make)) for _, client_of, make in cases]
    for (plain_items, _), (watched_items, decoder) in zip(plain, watched, strict=True):
        assert type(decoder) is FastDecoder
        assert watched_items == plain_items
    assert [e.provider for e in events(ledger)] == ["openai", "anthropic"]


def test_the_anthropic_stream_helper_reads_with_it(fake: Any, ledger: Any) -> None:
    _instrument("anthropic", ledger)
    with (
        _anthropic(fake) as client,
        client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES, extra_headers=USAGE_HEADER
        ) as stream,
    ):
        assert type(stream._raw_stream._decoder) is FastDecoder
        text = "".join(stream.text_stream)
    assert text
    event = only_event(ledger)
    assert event.output_tokens > 0


def test_turned_off_the_sdks_decoder_reads_and_records_the_same(
    fake: Any, ledger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _instrument("openai", ledger)
    fast, fast_decoder = _sync_items(_openai_chat, _openai(fake))
    monkeypatch.setattr(_sse, "ENABLED", False)
    sdk, sdk_decoder = _sync_items(_openai_chat, _openai(fake))
    assert type(fast_decoder) is FastDecoder
    assert type(sdk_decoder) is openai_sse.SSEDecoder
    assert fast == sdk
    first, second = events(ledger)
    for field in ("model", "input_tokens", "output_tokens", "cost_usd", "status"):
        assert getattr(first, field) == getattr(second, field)


def test_a_clients_own_decoder_is_left_alone(fake: Any, ledger: Any) -> None:
    import openai

    class OwnDecoder(openai_sse.SSEDecoder):
        pass

    class Client(openai.OpenAI):
        def _make_sse_decoder(self) -> Any:
            return OwnDecoder()

    _instrument("openai", ledger)
    client = Client(base_url=fake.openai_url, api_key="test", max_retries=0)
    items, decoder = _sync_items(_openai_chat, client)
    assert type(decoder) is OwnDecoder
    assert items
    only_event(ledger)


def test_speed_up_leaves_what_is_not_an_sdk_stream() -> None:
    class Slotted:
        __slots__ = ()

    class Odd:
        def __getattribute__(self, name: str) -> Any:
            raise RuntimeError(name)

    assert _sse.speed_up(Slotted()) is False
    assert _sse.speed_up(Odd()) is False
    assert _sse.speed_up(object()) is False
    assert _sse.speed_up(type("Stream", (), {"_decoder": None})()) is False


@pytest.mark.parametrize(("value", "enabled"), [(None, True), ("1", False), ("", True)])
def test_agentledger_sdk_sse_turns_the_reader_off_at_import(
    value: str | None, enabled: bool
) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_SDK_SSE"}
    if value is not None:
        env["AGENTLEDGER_SDK_SSE"] = value
    code = "from agentledger.integrations import _sse; print(_sse.ENABLED)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    assert out == str(enabled)
