"""The Anthropic integration, driving the real ``anthropic`` SDK against the local fake server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import genai_prices
import pytest
from anthropic.resources.messages.messages import AsyncMessages, Messages
from anthropic.types import MessageParam

import agentledger
from agentledger import Event, Ledger
from agentledger.integrations import anthropic as al_anthropic

from ._stored import events, only_event

MODEL = "claude-sonnet-4-6"
MESSAGES: list[MessageParam] = [{"role": "user", "content": "hi"}]
CACHED_USAGE = {
    "input_tokens": 100,
    "cache_read_input_tokens": 2000,
    "cache_creation_input_tokens": 700,
    "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 200},
    "output_tokens": 300,
}


def price(
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read: int = 0,
    cache_write: int = 0,
    cache_write_1h: int = 0,
) -> Decimal:
    usage = genai_prices.Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=cache_write_1h,
        output_tokens=output_tokens,
    )
    total = genai_prices.calc_price(usage, model_ref=model, provider_id="anthropic").total_price
    return Decimal(total)


def cached_price() -> Decimal:
    return price(
        MODEL,
        input_tokens=100 + 2000 + 700,
        output_tokens=300,
        cache_read=2000,
        cache_write=700,
        cache_write_1h=200,
    )


def assert_cached_event(e: Event) -> None:
    assert (e.kind, e.provider, e.model, e.status) == ("llm", "anthropic", MODEL, "ok")
    assert (e.input_tokens, e.output_tokens) == (2800, 300)
    assert (e.cache_read_tokens, e.cache_write_tokens) == (2000, 700)
    assert e.cost_source == "priced"
    assert e.cost_usd == cached_price()
    assert e.metadata["request_model"] == MODEL


def headers(usage: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
    out = {f"x-fake-{k}": v for k, v in extra.items()}
    if usage is not None:
        out["x-fake-usage"] = json.dumps(usage)
    return out


@pytest.fixture
def client(fake: Any) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.anthropic_url, api_key="test", max_retries=0) as c:
        yield c


def async_client(fake: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.anthropic_url, api_key="test", max_retries=0)


def test_non_stream_with_cache_read_and_5m_and_1h_writes(
    client: anthropic.Anthropic, ledger: Ledger
) -> None:
    al_anthropic.instrument(ledger=ledger)
    msg = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=MESSAGES,
        extra_headers=headers(CACHED_USAGE),
    )
    assert msg.content[0].type == "text"
    e = only_event(ledger)
    assert_cached_event(e)
    # the 1h writes are priced at their own rate: the cost differs from all-5m writes
    all_5m = price(MODEL, input_tokens=2800, output_tokens=300, cache_read=2000, cache_write=700)
    assert e.cost_usd != all_5m
    assert e.metadata["endpoint"] == "messages"
    assert "stream" not in e.metadata


def test_dated_response_model_is_recorded(client: anthropic.Anthropic, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)
    client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=MESSAGES,
        extra_headers=headers(model="claude-haiku-4-5-20251001"),
    )
    e = only_event(ledger)
    assert e.model == "claude-haiku-4-5-20251001"
    assert (e.input_tokens, e.output_tokens) == (20, 10)
    assert e.cost_usd == price("claude-haiku-4-5-20251001", input_tokens=20, output_tokens=10)


def test_parse_is_recorded(client: anthropic.Anthropic, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)
    client.messages.parse(
        model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=headers(CACHED_USAGE)
    )
    assert_cached_event(only_event(ledger))


def test_raw_response_sync_and_async(
    client: anthropic.Anthropic, fake: Any, ledger: Ledger
) -> None:
    al_anthropic.instrument(ledger=ledger)
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=headers(CACHED_USAGE)
    )
    assert raw.parse().usage.input_tokens == 100

    async def main() -> None:
        async with async_client(fake) as ac:
            araw = await ac.messages.with_raw_response.create(
                model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=headers(CACHED_USAGE)
            )
            assert (await araw.parse()).usage.output_tokens == 300

    asyncio.run(main())
    evs = events(ledger)
    assert len(evs) == 2
    for e in evs:
        assert_cached_event(e)


def test_with_streaming_response_records_the_parsed_usage(
    client: anthropic.Anthropic, ledger: Ledger
) -> None:
    """Parsed plain and streamed bodies give exact usage (Anthropic streams carry it)."""
    al_anthropic.instrument(ledger=ledger)
    with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=headers(CACHED_USAGE)
    ) as response:
        assert response.parse().usage.input_tokens == 100
    with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=64, messages=MESSAGES, stream=True,
        extra_headers=headers(CACHED_USAGE),
    ) as response:  # fmt: skip
        assert [event.type for event in response.parse()][-1] == "message_stop"
    first, second = sorted(events(ledger), key=lambda e: "stream" in e.metadata)
    assert_cached_event(first)
    assert_cached_event(second)
    assert second.metadata["stream"] is True


def test_stream_true(client: anthropic.Anthropic, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)
    stream = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=MESSAGES,
        stream=True,
        extra_headers=headers(CACHED_USAGE),
    )
    assert isinstance(stream, anthropic.Stream)
    with stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "ping" not in kinds
    e = only_event(ledger)
    assert_cached_event(e)
    assert e.metadata["stream"] is True
    assert e.metadata["ttft_ms"] >= 0
    assert "usage_estimated" not in e.metadata


def test_stream_helper(client: anthropic.Anthropic, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=MESSAGES,
        extra_headers=headers(CACHED_USAGE),
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello there,"
    assert final.usage.output_tokens == 300
    e = only_event(ledger)
    assert_cached_event(e)
    assert e.metadata["ttft_ms"] >= 0
    assert "usage_estimated" not in e.metadata


def test_stream_helper_get_final_text(client: anthropic.Anthropic, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=MESSAGES,
    ) as stream:
        assert stream.get_final_text() == "Hello there,"
    assert only_event(ledger).output_tokens == 10


def test_stream_helper_closed_early(client: anthropic.Anthropic, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=MESSAGES,
        extra_headers=headers(CACHED_USAGE, chunks="9"),
    ) as stream:
        for text in stream.text_stream:
            assert text
            break
    e = only_event(ledger)
    assert e.status == "ok"
    assert e.metadata["usage_estimated"] is True
    assert e.metadata["stream_closed_early"] is True
    # the input side is exact (message_start); output is what was counted so far
    assert (e.input_tokens, e.cache_read_tokens, e.cache_write_tokens) == (2800, 2000, 700)
    assert e.output_tokens == 1


def test_broken_stream_records_an_error(client: anthropic.Anthropic, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)
    stream = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=MESSAGES,
        stream=True,
        extra_headers=headers(CACHED_USAGE, mode="broken", chunks="9"),
    )
    with pytest.raises(Exception) as info, stream:  # noqa: PT011 - the SDK's transport error
        list(stream)
    e = only_event(ledger)
    assert e.status == "error"
    assert e.error_type == type(info.value).__name__
    assert e.metadata["usage_estimated"] is True
    assert e.input_tokens == 2800


def test_rate_limit_error(client: anthropic.Anthropic, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(
            model=MODEL,
            max_tokens=64,
            messages=MESSAGES,
            extra_headers=headers(mode="429"),
        )
    e = only_event(ledger)
    assert (e.status, e.error_type, e.model) == ("error", "RateLimitError", MODEL)
    assert e.error_message == str(info.value)
    assert e.metadata["http_status"] == 429


def test_stream_helper_error(client: anthropic.Anthropic, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)
    with (
        pytest.raises(anthropic.InternalServerError),
        client.messages.stream(
            model=MODEL,
            max_tokens=64,
            messages=MESSAGES,
            extra_headers=headers(mode="500"),
        ),
    ):
        pass
    e = only_event(ledger)
    assert (e.status, e.error_type) == ("error", "InternalServerError")


def test_timeout(fake: Any, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)
    fake.set_slow(2.0)
    with (
        anthropic.Anthropic(
            base_url=fake.anthropic_url, api_key="test", max_retries=0, timeout=0.2
        ) as client,
        pytest.raises(anthropic.APITimeoutError),
    ):
        client.messages.create(
            model=MODEL,
            max_tokens=64,
            messages=MESSAGES,
            extra_headers=headers(mode="slow"),
        )
    assert only_event(ledger).error_type == "APITimeoutError"


def test_async_create_stream_and_helper(fake: Any, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)

    async def main() -> str:
        async with async_client(fake) as client:
            await client.messages.create(
                model=MODEL,
                max_tokens=64,
                messages=MESSAGES,
                extra_headers=headers(CACHED_USAGE),
            )
            stream = await client.messages.create(
                model=MODEL,
                max_tokens=64,
                messages=MESSAGES,
                stream=True,
                extra_headers=headers(CACHED_USAGE),
            )
            assert isinstance(stream, anthropic.AsyncStream)
            async with stream:
                async for _event in stream:
                    pass
            async with client.messages.stream(
                model=MODEL,
                max_tokens=64,
                messages=MESSAGES,
                extra_headers=headers(CACHED_USAGE),
            ) as helper:
                return await helper.get_final_text()

    assert asyncio.run(main()) == "Hello there,"
    evs = events(ledger)
    assert len(evs) == 3
    for e in evs:
        assert_cached_event(e)
    assert sum(1 for e in evs if e.metadata.get("stream")) == 2


def test_threads_and_tasks_land_on_their_own_bot(fake: Any, ledger: Ledger) -> None:
    al_anthropic.instrument(ledger=ledger)

    with anthropic.Anthropic(base_url=fake.anthropic_url, api_key="test", max_retries=0) as c:

        def work(i: int) -> None:
            with agentledger.scope(bot_id=f"t-{i}"):
                c.messages.create(
                    model=MODEL,
                    max_tokens=64,
                    messages=MESSAGES,
                    extra_headers=headers({"input_tokens": 100 + i, "output_tokens": 1}),
                )

        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    async def main() -> None:
        async with async_client(fake) as client:

            async def one(i: int) -> None:
                with agentledger.scope(bot_id=f"a-{i}"):
                    async with client.messages.stream(
                        model=MODEL,
                        max_tokens=64,
                        messages=MESSAGES,
                        extra_headers=headers({"input_tokens": 1000 + i, "output_tokens": 1}),
                    ) as s:
                        await s.until_done()

            await asyncio.gather(*(one(i) for i in range(50)))

    asyncio.run(main())
    evs = events(ledger)
    assert len(evs) == 66
    for e in evs:
        if e.input_tokens >= 1000:
            assert e.bot_id == f"a-{e.input_tokens - 1000}"
        else:
            assert e.bot_id == f"t-{e.input_tokens - 100}"


def test_instrument_twice_and_uninstrument(client: anthropic.Anthropic, ledger: Ledger) -> None:
    originals = {
        (cls, name): cls.__dict__[name]
        for cls in (Messages, AsyncMessages)
        for name in ("create", "parse", "stream")
    }
    al_anthropic.instrument(ledger=ledger)
    patched = {key: key[0].__dict__[key[1]] for key in originals}
    al_anthropic.instrument(ledger=ledger)
    assert all(key[0].__dict__[key[1]] is patched[key] for key in originals)
    assert all(patched[key] is not originals[key] for key in originals)
    client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert len(events(ledger)) == 1
    al_anthropic.uninstrument()
    assert all(key[0].__dict__[key[1]] is originals[key] for key in originals)
    client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    with client.messages.stream(model=MODEL, max_tokens=8, messages=MESSAGES) as s:
        s.until_done()
    assert len(events(ledger)) == 1


def test_wrap_one_client(fake: Any, ledger: Ledger) -> None:
    with (
        anthropic.Anthropic(base_url=fake.anthropic_url, api_key="test", max_retries=0) as w,
        anthropic.Anthropic(base_url=fake.anthropic_url, api_key="test", max_retries=0) as plain,
    ):
        assert al_anthropic.wrap(w, ledger=ledger) is w
        al_anthropic.instrument(ledger=ledger)  # and globally: still one event per call
        w.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
        with w.messages.stream(model=MODEL, max_tokens=8, messages=MESSAGES) as s:
            s.until_done()
        al_anthropic.uninstrument()
        plain.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert len(events(ledger)) == 2


def test_the_stream_watcher_reads_typed_events_and_dicts_alike() -> None:
    """The SDK's typed events are read with plain attribute reads; dicts (or other shapes)
    through attr(): the same usage, model, tokens and tools either way."""
    from anthropic.types import (
        RawContentBlockDeltaEvent,
        RawContentBlockStartEvent,
        RawMessageDeltaEvent,
        RawMessageStartEvent,
    )

    from agentledger.integrations.anthropic import _MessagesWatcher

    raw: list[dict[str, Any]] = [
        {"type": "message_start", "message": {
            "id": "m", "type": "message", "role": "assistant", "model": MODEL, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 100, "cache_read_input_tokens": 2000,
                      "cache_creation_input_tokens": 700, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "t", "name": "lookup", "input": {}}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "ping"},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 300}},
    ]  # fmt: skip
    kinds = [RawMessageStartEvent, RawContentBlockStartEvent, RawContentBlockDeltaEvent, None,
             RawMessageDeltaEvent]  # fmt: skip
    typed = [k.model_validate(r) if k else r for k, r in zip(kinds, raw, strict=True)]
    seen = []
    for items in (typed, raw):
        watcher = _MessagesWatcher()
        tokens = [watcher.on_item(item) for item in items]
        seen.append((tokens, watcher.usage, watcher.model, watcher.tokens_seen,
                     watcher.tool_names, watcher.complete_usage))  # fmt: skip
    assert seen[0] == seen[1]
    tokens, usage, model, count, tools, complete = seen[0]
    assert tokens == [(True, False), (True, False), (True, True), (True, False), (True, False)]
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (2800, 300, 2000)
    assert (model, count, tools, complete) == (MODEL, 1, frozenset({"lookup"}), True)
