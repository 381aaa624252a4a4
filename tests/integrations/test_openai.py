"""The OpenAI integration, driving the real ``openai`` SDK against the local fake server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import genai_prices
import httpx2
import openai
import pytest
from openai.resources.chat.completions.completions import AsyncCompletions, Completions
from openai.resources.embeddings import AsyncEmbeddings, Embeddings
from openai.resources.responses.responses import AsyncResponses, Responses
from openai.types.chat import ChatCompletionMessageParam

import agentledger
from agentledger import Ledger
from agentledger.integrations import openai as al_openai
from agentledger.integrations._common import Adapter, sync_wrapper

from ._stored import events, only_event

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
CLASSES = (Completions, AsyncCompletions, Responses, AsyncResponses, Embeddings, AsyncEmbeddings)


def price(
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read: int = 0,
    reasoning: int = 0,
) -> Decimal:
    usage = genai_prices.Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cache_read,
        output_tokens=output_tokens,
        output_reasoning_tokens=reasoning,
    )
    total = genai_prices.calc_price(usage, model_ref=model, provider_id="openai").total_price
    return Decimal(total)


def headers(usage: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
    out = {f"x-fake-{k}": v for k, v in extra.items()}
    if usage is not None:
        out["x-fake-usage"] = json.dumps(usage)
    return out


def chat_usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
    }


@pytest.fixture
def client(fake: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.openai_url, api_key="test", max_retries=0) as c:
        yield c


def async_client(fake: Any, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.openai_url, api_key="test", max_retries=0, **options)


# --- chat completions ---------------------------------------------------------------------------
def test_chat_non_stream_with_cached_and_reasoning_tokens(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    al_openai.instrument(ledger=ledger)
    usage = chat_usage(2000, 600, cached=1500, reasoning=400)
    resp = client.chat.completions.create(
        model="o3-mini",
        messages=MESSAGES,
        extra_headers=headers(usage, model="o3-mini-2025-01-31"),
    )
    assert resp.choices[0].message.content == "Hello there,"
    e = only_event(ledger)
    assert (e.kind, e.provider, e.status) == ("llm", "openai", "ok")
    assert e.model == "o3-mini-2025-01-31"  # the response's model wins
    assert e.metadata["request_model"] == "o3-mini"
    assert e.metadata["endpoint"] == "chat.completions"
    assert (e.input_tokens, e.output_tokens) == (2000, 600)
    assert (e.cache_read_tokens, e.reasoning_tokens, e.cache_write_tokens) == (1500, 400, 0)
    assert e.cost_source == "priced"
    expected = price(
        "o3-mini-2025-01-31", input_tokens=2000, output_tokens=600, cache_read=1500, reasoning=400
    )
    assert e.cost_usd == expected
    assert e.duration_ms > 0
    assert "usage_estimated" not in e.metadata


def test_chat_stream_without_usage_requested_hides_the_usage_chunk(
    client: openai.OpenAI, ledger: Ledger, fake: Any
) -> None:
    al_openai.instrument(ledger=ledger)
    usage = chat_usage(1000, 50, cached=200)
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        extra_headers=headers(usage),
    )
    assert isinstance(stream, openai.Stream)
    chunks = list(stream)
    # role chunk + 3 words + finish chunk; no usage-only chunk reaches the caller
    assert len(chunks) == 5
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello there,"
    path, body, _ = fake.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["stream_options"] == {"include_usage": True}  # asked on the caller's behalf
    e = only_event(ledger)
    assert (e.input_tokens, e.output_tokens, e.cache_read_tokens) == (1000, 50, 200)
    assert e.cost_usd == price("gpt-4o", input_tokens=1000, output_tokens=50, cache_read=200)
    assert e.metadata["stream"] is True
    assert e.metadata["ttft_ms"] >= 0
    assert "usage_estimated" not in e.metadata


def test_chat_stream_with_usage_requested_keeps_the_usage_chunk(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    al_openai.instrument(ledger=ledger)
    usage = chat_usage(300, 40)
    with client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers(usage),
    ) as stream:
        chunks = list(stream)
    assert len(chunks) == 6
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 300
    e = only_event(ledger)
    assert (e.input_tokens, e.output_tokens) == (300, 40)
    assert e.cost_usd == price("gpt-4o-mini", input_tokens=300, output_tokens=40)


def test_chat_stream_closed_early_is_recorded_as_estimated(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    al_openai.instrument(ledger=ledger)
    with client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        extra_headers=headers(chat_usage(100, 9), chunks="9"),
    ) as stream:
        for i, _chunk in enumerate(stream):
            if i == 2:
                break
    e = only_event(ledger)
    assert e.status == "ok"
    assert e.metadata["usage_estimated"] is True
    assert e.metadata["stream_closed_early"] is True
    assert e.output_tokens == 2  # content chunks seen: an estimate
    assert e.input_tokens == 0  # unknown until the final usage chunk


def test_chat_stream_closed_without_iterating(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
    )
    stream.close()
    e = only_event(ledger)
    assert e.metadata["usage_estimated"] is True
    assert "ttft_ms" not in e.metadata


def test_chat_stream_broken_mid_way_records_an_error(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        extra_headers=headers(mode="broken", chunks="6"),
    )
    seen: list[Any] = []
    with pytest.raises(openai.APIConnectionError), stream:
        seen.extend(stream)
    assert seen  # some chunks arrived before the connection dropped
    e = only_event(ledger)
    assert e.status == "error"
    assert e.error_type == "APIConnectionError"
    assert e.metadata["usage_estimated"] is True
    assert e.metadata["partial"] is True
    assert e.output_tokens >= 1


# --- responses and embeddings -------------------------------------------------------------------
def responses_usage(inp: int, out: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


def test_responses_non_stream(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    resp = client.responses.create(
        model="o3-mini",
        input="hi",
        extra_headers=headers(responses_usage(5000, 900, cached=4000, reasoning=700)),
    )
    assert resp.output_text == "Hello there,"
    e = only_event(ledger)
    assert e.metadata["endpoint"] == "responses"
    assert (e.input_tokens, e.output_tokens) == (5000, 900)
    assert (e.cache_read_tokens, e.reasoning_tokens) == (4000, 700)
    expected = price(
        "o3-mini", input_tokens=5000, output_tokens=900, cache_read=4000, reasoning=700
    )
    assert e.cost_usd == expected


def test_responses_stream(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    with client.responses.create(
        model="gpt-4o",
        input="hi",
        stream=True,
        extra_headers=headers(responses_usage(700, 30, cached=100)),
    ) as stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    e = only_event(ledger)
    assert (e.input_tokens, e.output_tokens, e.cache_read_tokens) == (700, 30, 100)
    assert e.cost_usd == price("gpt-4o", input_tokens=700, output_tokens=30, cache_read=100)
    assert e.metadata["ttft_ms"] >= 0
    assert "usage_estimated" not in e.metadata


@pytest.mark.parametrize("encoding_format", ["float", None])
def test_embeddings(client: openai.OpenAI, ledger: Ledger, encoding_format: str | None) -> None:
    al_openai.instrument(ledger=ledger)
    extra: dict[str, Any] = {} if encoding_format is None else {"encoding_format": encoding_format}
    resp = client.embeddings.create(
        model="text-embedding-3-small",
        input=["a", "b"],
        extra_headers=headers({"prompt_tokens": 1234, "total_tokens": 1234}),
        **extra,
    )
    assert len(resp.data) == 2
    assert list(resp.data[0].embedding) == [0.25, -0.5, 1.0]
    e = only_event(ledger)
    assert e.metadata["endpoint"] == "embeddings"
    assert (e.input_tokens, e.output_tokens) == (1234, 0)
    assert e.cost_usd == price("text-embedding-3-small", input_tokens=1234, output_tokens=0)


def test_with_raw_response_is_recorded(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=MESSAGES,
        extra_headers=headers(chat_usage(10, 5)),
    )
    assert raw.parse().choices[0].message.content == "Hello there,"
    e = only_event(ledger)
    assert (e.input_tokens, e.output_tokens) == (10, 5)


def test_parse_and_stream_helpers_are_recorded(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    parsed = client.chat.completions.parse(
        model="gpt-4o", messages=MESSAGES, extra_headers=headers(chat_usage(11, 1))
    )
    assert parsed.choices[0].message.content == "Hello there,"
    with client.chat.completions.stream(
        model="gpt-4o", messages=MESSAGES, extra_headers=headers(chat_usage(12, 2))
    ) as chat_stream:
        kinds = [event.type for event in chat_stream]
    assert "content.done" in kinds
    client.responses.parse(model="gpt-4o", input="x", extra_headers=headers(responses_usage(13, 3)))
    with client.responses.stream(
        model="gpt-4o", input="x", extra_headers=headers(responses_usage(14, 4))
    ) as resp_stream:
        final = resp_stream.get_final_response()
    assert final.output_text == "Hello there,"
    evs = sorted(events(ledger), key=lambda e: e.input_tokens)
    assert [(e.input_tokens, e.output_tokens) for e in evs] == [(11, 1), (12, 2), (13, 3), (14, 4)]
    assert [e.metadata.get("stream", False) for e in evs] == [False, True, False, True]
    assert not any(e.metadata.get("usage_estimated") for e in evs)


def test_with_streaming_response_records_the_parsed_usage(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    """The body is read when the caller parses it: the event gets its exact usage then."""
    al_openai.instrument(ledger=ledger)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, extra_headers=headers(chat_usage(21, 7))
    ) as response:
        assert response.parse().choices
    e = only_event(ledger)
    assert (e.input_tokens, e.output_tokens) == (21, 7)
    assert "usage_unavailable" not in e.metadata
    assert e.cost_usd == price("gpt-4o", input_tokens=21, output_tokens=7)


def test_with_streaming_response_read_raw_is_recorded_without_usage(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    """A caller who reads the raw bytes gets one event, marked usage_unavailable, on close."""
    al_openai.instrument(ledger=ledger)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, extra_headers=headers(chat_usage(21, 7))
    ) as response:
        assert json.loads(b"".join(response.iter_bytes()))["usage"]["prompt_tokens"] == 21
    e = only_event(ledger)
    assert e.metadata["usage_estimated"] is True
    assert e.metadata["usage_unavailable"] is True


@pytest.mark.parametrize("asked", [False, True])
def test_with_streaming_response_stream_is_watched_when_parsed(
    client: openai.OpenAI, ledger: Ledger, asked: bool
) -> None:
    """parse() of a streamed raw response gives the watched stream; nothing is injected."""
    al_openai.instrument(ledger=ledger)
    options = {"stream_options": {"include_usage": True}} if asked else {}
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True,
        extra_headers=headers(chat_usage(30, 3)), **options,
    ) as response:  # fmt: skip
        chunks = list(response.parse())
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    assert any(c.usage is not None for c in chunks) is asked  # no usage chunk unless asked
    e = only_event(ledger)
    assert e.metadata["stream"] is True
    if asked:
        assert (e.input_tokens, e.output_tokens) == (30, 3)
        assert "usage_estimated" not in e.metadata
    else:
        assert e.metadata["usage_estimated"] is True
        assert e.output_tokens > 0  # estimated from the content chunks seen


def test_with_raw_response_stream_does_not_leak_a_usage_chunk(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    """The caller reads raw server-sent events: no chunk they did not ask for appears."""
    al_openai.instrument(ledger=ledger)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=headers(chat_usage(30, 3))
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    assert lines
    assert all(json.loads(line[6:]).get("usage") is None for line in lines)
    assert only_event(ledger).metadata["usage_unavailable"] is True


def test_async_with_streaming_response_records_the_parsed_usage(fake: Any, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)

    async def main() -> None:
        client = async_client(fake)
        async with (
            client,
            client.chat.completions.with_streaming_response.create(
                model="gpt-4o", messages=MESSAGES, extra_headers=headers(chat_usage(22, 8))
            ) as response,
        ):
            assert (await response.parse()).choices

    asyncio.run(main())
    e = only_event(ledger)
    assert (e.input_tokens, e.output_tokens) == (22, 8)


# --- async ----------------------------------------------------------------------------------------
def test_async_client_non_stream_and_stream(fake: Any, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)

    async def main() -> list[Any]:
        async with async_client(fake) as client:
            resp = await client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                extra_headers=headers(chat_usage(111, 11, cached=11)),
            )
            assert resp.usage is not None
            stream = await client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
                extra_headers=headers(chat_usage(222, 22)),
            )
            assert isinstance(stream, openai.AsyncStream)
            async with stream:
                chunks = [c async for c in stream]
            resp2 = await client.responses.create(
                model="gpt-4o", input="x", extra_headers=headers(responses_usage(333, 33))
            )
            assert resp2.usage is not None
            emb = await client.embeddings.create(
                model="text-embedding-3-small", input="x", encoding_format="float"
            )
            assert emb.usage.prompt_tokens == 8
            return chunks

    chunks = asyncio.run(main())
    assert len(chunks) == 5
    assert all(c.choices for c in chunks)
    evs = sorted(events(ledger), key=lambda e: e.input_tokens)
    assert [(e.input_tokens, e.output_tokens) for e in evs] == [
        (8, 0), (111, 11), (222, 22), (333, 33),
    ]  # fmt: skip
    assert evs[1].cache_read_tokens == 11
    assert evs[1].cost_usd == price("gpt-4o", input_tokens=111, output_tokens=11, cache_read=11)
    assert evs[2].metadata["stream"] is True


def test_async_stream_closed_early(fake: Any, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)

    async def main() -> None:
        async with async_client(fake) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
                extra_headers=headers(chunks="8"),
            )
            async with stream:
                async for _chunk in stream:
                    break

    asyncio.run(main())
    e = only_event(ledger)
    assert e.metadata["usage_estimated"] is True
    assert e.metadata["stream_closed_early"] is True


# --- errors -------------------------------------------------------------------------------------
def test_rate_limit_error_is_recorded_and_reraised(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            extra_headers=headers(mode="429"),
        )
    assert info.value.status_code == 429
    e = only_event(ledger)
    assert (e.status, e.error_type) == ("error", "RateLimitError")
    assert e.error_message == str(info.value)
    assert e.metadata["http_status"] == 429
    assert e.model == "gpt-4o"
    assert (e.input_tokens, e.output_tokens) == (0, 0)
    assert e.cost_usd == Decimal(0)


def test_server_error_on_a_stream_request(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            extra_headers=headers(mode="500"),
        )
    e = only_event(ledger)
    assert (e.status, e.error_type) == ("error", "InternalServerError")


def test_timeout_is_recorded_and_reraised(fake: Any, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    fake.set_slow(2.0)
    with (
        openai.OpenAI(
            base_url=fake.openai_url, api_key="test", max_retries=0, timeout=0.2
        ) as client,
        pytest.raises(openai.APITimeoutError),
    ):
        client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            extra_headers=headers(mode="slow"),
        )
    e = only_event(ledger)
    assert (e.status, e.error_type) == ("error", "APITimeoutError")


def test_connection_error(ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    with (
        openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="test", max_retries=0) as client,
        pytest.raises(openai.APIConnectionError),
    ):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    e = only_event(ledger)
    assert (e.status, e.error_type) == ("error", "APIConnectionError")


def test_the_same_exception_object_is_reraised(ledger: Ledger) -> None:
    boom = openai.APIError("boom", request=httpx2.Request("POST", "http://x/v1"), body=None)

    def create(self: object, **kwargs: Any) -> None:
        raise boom

    class Chat(Adapter):
        provider = "openai"
        endpoint = "chat.completions"

    wrapped = sync_wrapper(create, Chat(), lambda: ledger)
    with pytest.raises(openai.APIError) as info:
        wrapped(object(), model="gpt-4o")
    assert info.value is boom
    assert only_event(ledger).error_type == "APIError"


# --- attribution under concurrency --------------------------------------------------------------
def test_sixteen_threads_land_on_their_own_bot(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with agentledger.scope(bot_id=f"bot-{i}"):
                barrier.wait()
                for _ in range(3):
                    stream = client.chat.completions.create(
                        model="gpt-4o",
                        messages=MESSAGES,
                        stream=True,
                        extra_headers=headers(chat_usage(100 + i, 1)),
                    )
                    for _chunk in stream:
                        pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    evs = events(ledger)
    assert len(evs) == 48
    for e in evs:
        assert e.bot_id == f"bot-{e.input_tokens - 100}"


def test_fifty_asyncio_tasks_land_on_their_own_bot(fake: Any, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)

    async def main() -> None:
        async with async_client(fake) as client:

            async def one(i: int) -> None:
                with agentledger.scope(bot_id=f"bot-{i}"):
                    if i % 2:
                        await client.chat.completions.create(
                            model="gpt-4o",
                            messages=MESSAGES,
                            extra_headers=headers(chat_usage(1000 + i, 1)),
                        )
                    else:
                        stream = await client.chat.completions.create(
                            model="gpt-4o",
                            messages=MESSAGES,
                            stream=True,
                            extra_headers=headers(chat_usage(1000 + i, 1)),
                        )
                        async for _chunk in stream:
                            await asyncio.sleep(0)

            await asyncio.gather(*(one(i) for i in range(50)))

    asyncio.run(main())
    evs = events(ledger)
    assert len(evs) == 50
    assert {e.bot_id for e in evs} == {f"bot-{i}" for i in range(50)}
    for e in evs:
        assert e.bot_id == f"bot-{e.input_tokens - 1000}"


def test_stream_finished_elsewhere_keeps_the_callers_attribution(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    al_openai.instrument(ledger=ledger)
    with agentledger.scope(bot_id="caller"):
        stream = client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
        )
    with agentledger.scope(bot_id="someone-else"):
        list(stream)
    assert only_event(ledger).bot_id == "caller"


# --- instrument / uninstrument / wrap -----------------------------------------------------------
def test_instrument_twice_is_harmless(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    patched = Completions.__dict__["create"]
    al_openai.instrument(ledger=ledger)
    assert Completions.__dict__["create"] is patched
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(events(ledger)) == 1


def test_instrument_again_switches_ledger(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument()
    al_openai.instrument(ledger=ledger)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(events(ledger)) == 1


def test_uninstrument_restores_the_original_methods(client: openai.OpenAI, ledger: Ledger) -> None:
    methods = [(cls, name) for cls in CLASSES for name in ("create", "parse")]
    originals = {(cls, n): cls.__dict__[n] for cls, n in methods if n in cls.__dict__}
    assert len(originals) == 10  # embeddings have no parse
    al_openai.instrument(ledger=ledger)
    assert al_openai.is_instrumented()
    assert all(cls.__dict__[n] is not orig for (cls, n), orig in originals.items())
    al_openai.uninstrument()
    al_openai.uninstrument()  # twice is harmless too
    assert not al_openai.is_instrumented()
    assert all(cls.__dict__[n] is orig for (cls, n), orig in originals.items())
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert events(ledger) == []


def test_default_ledger_is_looked_up_at_call_time(client: openai.OpenAI) -> None:
    al_openai.instrument()
    client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        extra_headers=headers(chat_usage(77, 7)),
    )
    default = agentledger.get_ledger()
    assert default.flush()
    assert default.totals().input_tokens == 77


def test_wrap_instruments_one_client_only(fake: Any, ledger: Ledger) -> None:
    with (
        openai.OpenAI(base_url=fake.openai_url, api_key="test", max_retries=0) as wrapped,
        openai.OpenAI(base_url=fake.openai_url, api_key="test", max_retries=0) as plain,
    ):
        assert al_openai.wrap(wrapped, ledger=ledger) is wrapped
        al_openai.wrap(wrapped, ledger=ledger)  # twice: still one event per call
        wrapped.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        wrapped.embeddings.create(model="text-embedding-3-small", input="x")
        plain.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert not al_openai.is_instrumented()  # the class is untouched
    evs = events(ledger)
    assert sorted(e.metadata["endpoint"] for e in evs) == ["chat.completions", "embeddings"]


def test_wrap_and_instrument_record_once(client: openai.OpenAI, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)
    al_openai.wrap(client, ledger=ledger)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(events(ledger)) == 1


def test_async_wrap(fake: Any, ledger: Ledger) -> None:
    async def main() -> None:
        async with async_client(fake) as client:
            al_openai.wrap(client, ledger=ledger)
            await client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
            )

    asyncio.run(main())
    assert only_event(ledger).input_tokens == 20


def test_recording_failure_never_breaks_the_caller(
    client: openai.OpenAI, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("ledger is broken")

    monkeypatch.setattr(ledger, "record_llm", broken)
    al_openai.instrument(ledger=ledger)
    resp = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert resp.choices[0].message.content == "Hello there,"
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
        )
    )
    assert len(chunks) == 5
