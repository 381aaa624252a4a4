"""The OpenAI integration's cheaper paths record exactly what the general paths record.

* the usage-only chunk that agentledger asks for on the caller's behalf is read from its raw
  server-sent event (the SDK never builds a model of it) and never reaches the caller; where
  that hook is not available the typed chunk is read and hidden as before, with the same
  stored tokens and cost;
* ``include_usage`` is sent through ``extra_body`` when the caller gave no stream options;
* a typed ``ChatCompletion`` is read in one pass of attribute reads (anything else through
  ``extract``/``tool_names``);
* the event's metadata is handed to the ledger as a dict its writer serialises.
"""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import Iterator
from typing import Any
from unittest import mock

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from agentledger import Event, Ledger
from agentledger.integrations import openai as al_openai
from agentledger.integrations._common import Call
from agentledger.integrations.openai import (
    _CHAT,
    _READ_EVERY,
    _SKIP,
    _ChatWatcher,
    _usage_event,
    _usage_text,
    _watch_events,
    _without_null_usage,
)

from ._stored import events, only_event

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
USAGE = {
    "prompt_tokens": 2000,
    "completion_tokens": 600,
    "total_tokens": 2600,
    "prompt_tokens_details": {"cached_tokens": 1500, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 400, "audio_tokens": 0},
}
# Fields that differ from call to call whatever path recorded them.
VOLATILE = {"event_id", "trace_id", "span_id", "started_at", "duration_ms", "metadata"}


def usage_header(usage: dict[str, Any] = USAGE, **extra: str) -> dict[str, str]:
    return {"x-fake-usage": json.dumps(usage), **{f"x-fake-{k}": v for k, v in extra.items()}}


@pytest.fixture
def client(fake: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.openai_url, api_key="test", max_retries=0) as c:
        yield c


def watcher_of(stream: Any) -> _ChatWatcher:
    """The watcher of a stream handed out as it is (raw events watched) or behind a proxy."""
    try:
        watcher = object.__getattribute__(stream, "_al_watcher")
    except AttributeError:
        watcher = vars(stream)["close"].__self__
    assert isinstance(watcher, _ChatWatcher)
    return watcher


def no_raw_watching(stream: Any, watcher: Any, call: Any) -> bool:
    """In place of ``_watch_events``: the typed chunks are watched, behind a proxy."""
    return False


def stable(event: Event) -> dict[str, Any]:
    """An event without what changes from call to call (ids, times; ttft in metadata)."""
    fields = {name: getattr(event, name) for name in Event.__dataclass_fields__}
    out = {k: v for k, v in fields.items() if k not in VOLATILE}
    out["metadata"] = {k: v for k, v in event.metadata.items() if k != "ttft_ms"}
    return out


def stream_once(client: openai.OpenAI, **options: Any) -> tuple[list[Any], _ChatWatcher]:
    stream = client.chat.completions.create(
        model="o3-mini", messages=MESSAGES, stream=True, extra_headers=usage_header(), **options
    )
    watcher = watcher_of(stream)
    return list(stream), watcher


# --- the usage chunk, read from its raw event ----------------------------------------------
def test_the_injected_usage_chunk_is_read_raw_and_never_reaches_the_caller(
    client: openai.OpenAI, ledger: Ledger, fake: Any
) -> None:
    al_openai.instrument(ledger=ledger)
    chunks, watcher = stream_once(client)
    assert watcher.usage_events_skipped == 1  # the installed SDK has the hook
    assert len(chunks) == 5
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello there,"
    assert fake.requests[-1][1]["stream_options"] == {"include_usage": True}
    e = only_event(ledger)
    assert (e.input_tokens, e.output_tokens) == (2000, 600)
    assert (e.cache_read_tokens, e.reasoning_tokens) == (1500, 400)
    assert e.model == "o3-mini"
    assert e.cost_source == "priced"
    assert e.metadata["stream"] is True
    assert e.metadata["ttft_ms"] >= 0
    assert "usage_estimated" not in e.metadata


def test_without_the_hook_the_typed_chunk_gives_the_same_event(
    client: openai.OpenAI, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    al_openai.instrument(ledger=ledger)
    fast_chunks, fast = stream_once(client)
    with monkeypatch.context() as m:
        m.setattr(al_openai, "_watch_events", no_raw_watching)
        slow_chunks, slow = stream_once(client)
    assert (fast.usage_events_skipped, slow.usage_events_skipped) == (1, 0)
    assert [c.model_dump() for c in fast_chunks] == [c.model_dump() for c in slow_chunks]
    first, second = events(ledger)
    assert stable(first) == stable(second)
    assert first.cost_usd == second.cost_usd
    assert first.cost_usd is not None


def test_a_raw_usage_chunk_the_watcher_cannot_read_is_still_hidden(
    client: openai.OpenAI, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk asked for on the caller's behalf never reaches the caller; without its
    usage, the call is recorded with the tokens seen, as an estimate."""
    al_openai.instrument(ledger=ledger)
    monkeypatch.setattr(_ChatWatcher, "on_usage_event", lambda self, data: False)
    chunks, watcher = stream_once(client)
    assert watcher.usage_events_skipped == 1  # kept from the SDK, then not read
    assert len(chunks) == 5
    assert all(c.choices for c in chunks)
    e = only_event(ledger)
    assert (e.input_tokens, e.output_tokens, e.cache_read_tokens) == (0, 3, 0)
    assert e.metadata["usage_estimated"] is True
    assert e.model == "o3-mini"


def test_a_failing_usage_reader_is_logged_and_the_event_goes_to_the_sdk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher = _ChatWatcher(hide_usage_chunk=True)
    assert watcher.on_usage_event({"usage": {"prompt_tokens": 1}}) is True
    assert watcher.usage is not None
    assert watcher.usage.input_tokens == 1
    assert watcher.complete_usage
    with mock.patch.object(al_openai, "_dict_usage", side_effect=RuntimeError("boom")):
        assert _ChatWatcher(hide_usage_chunk=True).on_usage_event({"usage": {}}) is False
    assert "could not read a usage chunk" in caplog.text


def test_the_caller_asking_for_usage_sees_the_chunk_and_nothing_is_skipped(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    al_openai.instrument(ledger=ledger)
    chunks, watcher = stream_once(client, stream_options={"include_usage": True})
    assert watcher.usage_events_skipped == 0
    assert len(chunks) == 6
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 2000
    assert only_event(ledger).input_tokens == 2000


def test_async_stream_reads_the_usage_chunk_raw(fake: Any, ledger: Ledger) -> None:
    al_openai.instrument(ledger=ledger)

    async def main() -> tuple[list[Any], int]:
        async with openai.AsyncOpenAI(
            base_url=fake.openai_url, api_key="test", max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model="o3-mini", messages=MESSAGES, stream=True, extra_headers=usage_header()
            )
            watcher = watcher_of(stream)
            async with stream:
                chunks = [c async for c in stream]
            return chunks, watcher.usage_events_skipped

    chunks, skipped = asyncio.run(main())
    assert skipped == 1
    assert len(chunks) == 5
    assert all(c.choices for c in chunks)
    e = only_event(ledger)
    assert (e.input_tokens, e.output_tokens, e.reasoning_tokens) == (2000, 600, 400)
    assert "usage_estimated" not in e.metadata


def test_a_stream_cut_before_the_usage_chunk_is_still_estimated(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    al_openai.instrument(ledger=ledger)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True,
        extra_headers=usage_header(mode="broken", chunks="6"),
    )  # fmt: skip
    with pytest.raises(openai.APIConnectionError), stream:
        list(stream)
    assert watcher_of(stream).usage_events_skipped == 0
    e = only_event(ledger)
    assert e.status == "error"
    assert e.metadata["usage_estimated"] is True


def test_a_long_stream_closed_early_counts_every_event_it_saw(
    client: openai.OpenAI, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raw events kept unread (see ``_ChatWatcher.on_event``) are read when the caller
    closes the stream: the estimate is the one the typed chunks give."""
    al_openai.instrument(ledger=ledger)
    read = 2 * _READ_EVERY + 7

    def once() -> _ChatWatcher:
        stream = client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True,
            extra_headers=usage_header(chunks=str(4 * _READ_EVERY)),
        )  # fmt: skip
        with stream:
            for i, _ in enumerate(stream, 1):
                if i == read:
                    break
        return watcher_of(stream)

    raw = once()
    with monkeypatch.context() as m:
        m.setattr(al_openai, "_watch_events", no_raw_watching)
        typed = once()
    assert raw.call is not None
    assert typed.call is None
    assert raw.tokens_seen == typed.tokens_seen >= read - 1
    first, second = events(ledger)
    assert first.metadata["stream_closed_early"] is True
    assert first.metadata["usage_estimated"] is True
    assert first.output_tokens == second.output_tokens == raw.tokens_seen


@pytest.mark.parametrize(
    ("data", "no_choices", "usage"),
    [
        pytest.param('{"choices":[],"usage":{"prompt_tokens":1}}', True, True, id="compact"),
        pytest.param('{"choices": [], "usage": {"a": 1}}', True, True, id="spaced"),
        pytest.param('{"choices" : [ ], "usage" : {"a": 1}}', True, True, id="odd-spacing"),
        pytest.param('{"choices":\n[\n],"usage":\n{"a":1}}\n', True, True, id="newlines"),
        pytest.param('{"choices":[],"prompt_filter_results":[]}', True, False, id="azure-filter"),
        pytest.param('{"x":{"a":1},"choices":[],"usage":{"a":1}}', True, True,
                     id="object-before-choices"),
        pytest.param('{"object":"choices","choices":[],"usage":{"a":1}}', True, True,
                     id="choices-as-a-value-first"),
        pytest.param('{"id":"a\\"b","choices": [], "usage": {"a": 1}}', True, True,
                     id="escape-before-choices"),
        pytest.param('{"x":{"choices":[],"usage":{"a":1}},"choices":[]}', True, False,
                     id="usage-shaped-object-inside"),
        pytest.param('{"choices":[{"delta":{}}],"usage":null}', False, False, id="null-usage"),
        pytest.param('{"choices": [{"delta": {}}], "usage": null}', False, False,
                     id="null-usage-spaced"),
        pytest.param('{"choices":[{"delta":{}}],"usage":{"a":1}}', False, True, id="both"),
        pytest.param('{"choices":[ {"delta":{}}],"usage" :  {"a":1}}', False, True,
                     id="both-odd-spacing"),
        pytest.param('{"id":"x"}', False, False, id="neither"),
        pytest.param('{"choices":[{"delta":{"content":"\\"choices\\":[] \\"usage\\":{"}}]}',
                     False, False, id="key-text-in-content"),
    ],
)  # fmt: skip
def test_raw_choices_and_usage_detection(
    data: str, no_choices: bool, usage: bool, ledger: Ledger
) -> None:
    """The usage-only chunk is kept from the SDK and a usage on any chunk is read, by the
    watcher itself and through the SDK-shaped stream's event filter."""
    assert json.loads(data)  # the cases are valid JSON
    watcher = _ChatWatcher(hide_usage_chunk=True)
    taken = watcher.on_event(data) == _SKIP
    watcher.settle()
    passed, filtered = filter_events([data], ledger)
    assert (passed == []) is taken is (no_choices and usage)
    assert (watcher.usage is not None) is (filtered.usage is not None) is usage


class _Events:
    """An SDK-shaped stream: events from ``_iter_events``, read when iteration starts."""

    def __init__(self, data: list[str]) -> None:
        self.data = data
        self.closed = False

    def _iter_events(self) -> Iterator[Any]:
        for text in self.data:
            yield mock.Mock(data=text)

    def close(self) -> None:
        self.closed = True


def raw_call(ledger: Ledger) -> Call:
    return Call(_CHAT, {"model": "m"}, lambda: ledger)


def filter_events(data: list[str], ledger: Ledger) -> tuple[list[str], _ChatWatcher]:
    """The events of an SDK-shaped stream that reach the SDK through the event filter, and
    the watcher once its call is recorded (read by the ledger's writer)."""
    stream = _Events(data)
    watcher = _ChatWatcher(hide_usage_chunk=True)
    assert _watch_events(stream, watcher, raw_call(ledger)) is True
    passed = [sse.data for sse in stream._iter_events()]
    assert ledger.flush()
    return passed, watcher


class _Event:
    """Shaped as the SDK's ServerSentEvent: ``data`` a property giving ``_data``."""

    def __init__(self, data: str) -> None:
        self._data = data

    @property
    def data(self) -> str:
        return self._data


class _FrozenEvent(_Event):
    """The same with a ``_data`` that cannot be set."""

    def __init__(self, data: str) -> None:
        self._text = data

    @property  # type: ignore[override]
    def _data(self) -> str:
        return self._text


@pytest.mark.parametrize("event", [_Event, _FrozenEvent])
def test_the_event_filter_cuts_a_null_usage_only_where_it_can_set_the_text(
    ledger: Ledger, caplog: pytest.LogCaptureFixture, event: type
) -> None:
    """Chunks with choices lose their "usage": null (last, or before other members) where
    the event's text can be set; where it cannot, they pass as they came, without a word."""
    last = '{"model":"m","choices":[{"delta":{"content":"a"}}],"usage":null}'
    spaced = '{"model": "m", "choices": [{"delta": {"content": "b"}}], "usage": null}'
    middle = '{"model":"m","choices":[{"delta":{"content":"c"}}],"usage":null,"obfuscation":"x"}'
    usage_only = '{"model":"m","choices":[],"usage":{"prompt_tokens":8}}'
    texts = [last, spaced, middle, usage_only, "[DONE]"]

    class Stream(_Events):
        def _iter_events(self) -> Iterator[Any]:
            for text in self.data:
                yield event(text)

    stream = Stream(texts)
    watcher = _ChatWatcher(hide_usage_chunk=True)
    assert _watch_events(stream, watcher, raw_call(ledger)) is True
    passed = [sse.data for sse in stream._iter_events()]
    assert ledger.flush()
    if event is _Event:
        assert [json.loads(p) for p in passed] == [
            {k: v for k, v in json.loads(t).items() if k != "usage"} for t in texts[:3]
        ]
    else:
        assert passed == texts[:3]
    assert "could not" not in caplog.text
    assert only_event(ledger).input_tokens == 8


def test_the_event_filter_keeps_only_the_usage_only_event(ledger: Ledger) -> None:
    usage_only = json.dumps({"model": "m", "choices": [], "usage": {"prompt_tokens": 7}})
    compact = '{"model":"m","choices":[],"usage":{"prompt_tokens":8}}'
    content = json.dumps({"model": "m", "choices": [{"delta": {"content": '"choices":[]'}}]})
    passed, watcher = filter_events([content, usage_only, compact, "[DONE]"], ledger)
    assert passed == [content]  # the filter stops at [DONE], as the SDK does
    assert watcher.usage_events_skipped == 2
    assert watcher.usage is not None
    assert watcher.usage.input_tokens == 8  # the last one wins, as with typed chunks
    assert watcher.model == "m"
    e = only_event(ledger)
    assert (e.model, e.input_tokens) == ("m", 8)


def test_the_event_filter_passes_on_a_usage_shaped_chunk_that_has_an_error(
    ledger: Ledger,
) -> None:
    """A chunk that looks like the usage-only one but carries an error is the SDK's to raise
    on: the filter's quick test for the usage chunk (OpenAI's and json.dumps' spacing) does
    not take it."""
    data = [
        '{"error":{"message":"boom"},"choices":[],"usage":{"prompt_tokens":1}}',
        '{"choices":[],"usage":{"prompt_tokens":1},"error":{"message":"boom"}}',
        '{"choices": [], "usage": {"prompt_tokens": 1}, "error": "boom"}',
    ]
    passed, watcher = filter_events([*data, "[DONE]"], ledger)
    assert passed == [*data, "[DONE]"]
    assert watcher.usage_events_skipped == 0


def test_the_event_filter_is_not_installed_where_the_sdk_differs(ledger: Ledger) -> None:
    watcher = _ChatWatcher(hide_usage_chunk=True)
    call = raw_call(ledger)
    assert _watch_events(object(), watcher, call) is False  # no _iter_events

    class NotAGenerator:
        def _iter_events(self) -> list[Any]:
            return []

        def close(self) -> None:
            pass

    assert _watch_events(NotAGenerator(), watcher, call) is False

    class NoClose:
        def _iter_events(self) -> Iterator[Any]:
            yield from ()

    assert _watch_events(NoClose(), watcher, call) is False
    stream = _Events([])
    stream._iter_events = lambda: iter(())  # type: ignore[method-assign]
    assert _watch_events(stream, watcher, call) is False  # already replaced on the instance


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"choices":[],"usage":{"prompt_tokens":1}}', True),
        ('{"choices": [], "usage": {"prompt_tokens": 1}}', True),
        ('{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}', False),
        ('{"choices":[],"usage":null}', False),
        ('{"choices":[],"usage":{"prompt_tokens":1},"error":{"message":"x"}}', False),
        ('{"choices":[],"usage":{"prompt_tokens":1}} trailing', False),
        (' {"choices":[],"usage":{"prompt_tokens":1}}', True),  # as json.loads allows
        ('\n\t {"choices":[],"usage":{"prompt_tokens":1}}', True),
        ('{"choices":[],"usage":{', False),
        ('[{"choices":[],"usage":{}}]', False),
        ("", False),
    ],
)
def test_usage_event_recognises_only_a_clean_usage_only_chunk(data: str, expected: bool) -> None:
    assert (_usage_event(data) is not None) is expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            '{"id":"c","object":"chat.completion.chunk","model":"m","choices":[],'
            '"usage":{"prompt_tokens":1}}',
            True,
        ),  # as OpenAI writes it
        ('{"id": "c", "choices": [ ], "usage": {"prompt_tokens": 1}}', True),
        ('{"choices":\n[]\t,\r"usage" :{}}', True),
        # Left to the JSON decoder (each of these is decoded on the caller's thread):
        ('{"usage":{"prompt_tokens":1},"choices":[]}', False),  # usage first
        ('{"meta":{"choices":[]},"choices":[],"usage":{}}', False),  # an object before
        ('{"ids":["a"],"choices":[],"usage":{}}', False),  # a list before
        ('{"id":"a\\"choices":[],"usage":{","choices":[],"usage":{}}', False),  # escape
        ('{"a\\"choices":[],"usage":{}}', False),  # a key ending in an escaped quote
        ('{"id":"choices","choices":[],"usage":{}}', False),  # the marker as a value first
        (' {"choices":[],"usage":{}}', False),  # blanks before the object
        ('{"choices":[],"usage":{},"error":{"message":"x"}}', False),
        ('{"choices":[],"usage":null}', False),
        ('{"choices":[{"delta":{}}],"usage":{}}', False),
        ('{"choices":[],"x":1,"usage":{}}', False),  # usage not next
        ('[{"choices":[],"usage":{}}]', False),
        ("[DONE]", False),
        ("", False),
    ],
)
def test_usage_text_tells_the_usage_chunk_only_where_its_text_leaves_no_doubt(
    data: str, expected: bool
) -> None:
    """What the text test takes is the usage-only chunk (the decoder agrees wherever it is
    JSON); what it leaves is decoded (and may still be one)."""
    assert _usage_text(data) is expected
    if expected:
        assert _usage_event(data) is not None


@settings(max_examples=300, deadline=None)
@given(
    before=st.dictionaries(
        st.text(min_size=1, max_size=6),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                       st.integers(), max_size=2),
                  # what the text test looks for, inside a value (an object, a list, a string)
                  st.just({"choices": [], "usage": {}}), st.just([{"choices": [], "usage": {}}]),
                  st.just('"choices":[],"usage":{'), st.just('x"choices": [], "usage": {')),
        max_size=4,
    ),
    choices=st.sampled_from([[], [{"delta": {}}], [{"index": 0}], None, {}]),
    usage=st.sampled_from([{"prompt_tokens": 1}, {}, None, 0, []]),
    after=st.dictionaries(st.sampled_from(["error", "x", "usage", "choices"]),
                          st.one_of(st.none(), st.integers(), st.just({"message": "m"})),
                          max_size=2),
    spaced=st.booleans(),
)  # fmt: skip
def test_usage_text_never_takes_what_the_decoder_would_not(
    before: dict[str, Any], choices: Any, usage: Any, after: dict[str, Any], spaced: bool
) -> None:
    """Any JSON object: where the text test takes it for the usage-only chunk, decoding it
    says so too (it is never a chunk the SDK would have handed to the caller)."""
    chunk = {k: v for k, v in before.items() if k not in ("choices", "usage")}
    chunk["choices"] = choices
    chunk["usage"] = usage
    for key, value in after.items():
        chunk[key] = value
    data = json.dumps(chunk) if spaced else json.dumps(chunk, separators=(",", ":"))
    if _usage_text(data):
        assert _usage_event(data) is not None


# --- the "usage": null of every chunk, once the usage is asked for ----------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"id":"c","choices":[{"delta":{}}],"usage":null}', '{"id":"c","choices":[{"delta":{}}]}'),
        ('{"id": "c", "choices": [], "usage": null}', '{"id": "c", "choices": []}'),
        ('{"choices":[],"usage":null,"obfuscation":"aB"}', '{"choices":[],"obfuscation":"aB"}'),
        ('{"a":1,"usage":null,"b":true,"c":2.5}', '{"a":1,"b":true,"c":2.5}'),
        # Left as they are: not provably the chunk's own member, or not written this way
        ('{"usage":null}', None),  # first: no comma before it
        ('{"a":{"b":1,"usage":null}}', None),  # nested
        ('{"a":[{"b":1,"usage":null}]}', None),
        ('{"a":1,"usage":null,"b":{"c":1}}', None),  # an object after it
        ('{"a":1,"usage":null,"b":"x}"}', None),  # a brace in a string after it
        ('{"a":1,"usage":null,"b":"\\"}', None),  # an escape after it
        ('{"a":"x,\\"usage\\":null"}', None),  # inside a string
        ('{"a":1,"usage":null} ', None),  # blanks after the object
        ('{"a":1, "usage":null}', None),  # other spacing
        ('{"a":1,"usage":{"prompt_tokens":1}}', None),  # a usage
        ('{"a":1,"usage":nullx}', None),  # no JSON
        ("[DONE]", None),
        ("", None),
    ],
)
def test_a_null_usage_is_cut_only_where_the_text_shows_it_is_the_chunks_own(
    data: str, expected: str | None
) -> None:
    assert _without_null_usage(data) == expected
    if expected is not None:
        chunk = json.loads(data)
        assert chunk.pop("usage") is None
        assert json.loads(expected) == chunk


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(),
              st.sampled_from(["usage", '"usage":null', ',"usage":null}', "}", "x"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["usage", "a", "b"]), inner,
                                            max_size=3)),
    max_leaves=8,
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(chunk=st.dictionaries(st.sampled_from(["id", "choices", "usage", "x", "obfuscation"]),
                             _JSON, max_size=5),
       spaced=st.booleans())  # fmt: skip
def test_a_null_usage_cut_never_changes_anything_else(chunk: dict[str, Any], spaced: bool) -> None:
    """Any JSON object: where a null usage is cut, the rest decodes to the same object less
    its own "usage" member, which was null."""
    data = json.dumps(chunk) if spaced else json.dumps(chunk, separators=(",", ":"))
    cut = _without_null_usage(data)
    if cut is not None:
        assert chunk.get("usage", 0) is None
        assert json.loads(cut) == {k: v for k, v in chunk.items() if k != "usage"}


def test_a_null_usage_last_is_cut_whatever_is_before_it() -> None:
    """The usual shape (OpenAI's, json.dumps's): the member last, after any choices."""
    for choices in ([], [{"delta": {"content": '"usage":null}'}}], [{"x": {"usage": None}}]):
        for spaced in (False, True):
            chunk = {"id": "c", "choices": choices, "usage": None}
            data = json.dumps(chunk) if spaced else json.dumps(chunk, separators=(",", ":"))
            cut = _without_null_usage(data)
            assert cut is not None
            assert json.loads(cut) == {"id": "c", "choices": choices}


# --- include_usage through extra_body -------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "body_options", "extra"),
    [
        ({}, {"include_usage": True}, {}),
        ({"stream_options": None}, {"include_usage": True}, {}),
        ({"extra_body": {"user_tag": "a"}}, {"include_usage": True}, {"user_tag": "a"}),
        (
            {"stream_options": {"include_obfuscation": False}},
            {"include_obfuscation": False, "include_usage": True},
            {},
        ),
    ],
)
def test_usage_is_requested_with_the_callers_options_kept(
    client: openai.OpenAI,
    ledger: Ledger,
    fake: Any,
    options: dict[str, Any],
    body_options: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    al_openai.instrument(ledger=ledger)
    before = json.dumps(options, sort_keys=True)
    chunks, watcher = stream_once(client, **options)
    assert json.dumps(options, sort_keys=True) == before  # the caller's dicts are untouched
    body = fake.requests[-1][1]
    assert body["stream_options"] == body_options
    assert {k: body[k] for k in extra} == extra
    assert watcher.usage_events_skipped == 1
    assert len(chunks) == 5
    assert only_event(ledger).input_tokens == 2000


def test_the_callers_own_extra_body_stream_options_win_as_before(
    client: openai.OpenAI, ledger: Ledger, fake: Any
) -> None:
    """extra_body overrides the SDK's arguments: no usage is asked for, usage is estimated."""
    al_openai.instrument(ledger=ledger)
    options = {"extra_body": {"stream_options": {"include_obfuscation": False}}}
    kwargs, watcher = _CHAT.prepare({"stream": True, **options})
    assert kwargs == {"stream": True, **options}  # sent as it is
    assert kwargs["extra_body"] is options["extra_body"]
    assert isinstance(watcher, _ChatWatcher)
    assert not watcher.hide_usage_chunk
    chunks, _ = stream_once(client, **options)
    assert fake.requests[-1][1]["stream_options"] == {"include_obfuscation": False}
    assert len(chunks) == 5
    assert only_event(ledger).metadata["usage_estimated"] is True


def test_a_usage_chunk_asked_for_in_extra_body_is_the_callers(
    client: openai.OpenAI, ledger: Ledger, fake: Any
) -> None:
    """A caller asking for the usage through extra_body (as gateways' examples do) sees the
    usage-only chunk as without agentledger, and the call is recorded exactly."""
    options = {"extra_body": {"stream_options": {"include_usage": True}}}
    plain = list(client.chat.completions.create(
        model="o3-mini", messages=MESSAGES, stream=True, extra_headers=usage_header(),
        **options))  # fmt: skip
    al_openai.instrument(ledger=ledger)
    chunks, _ = stream_once(client, **options)
    assert fake.requests[-1][1]["stream_options"] == {"include_usage": True}
    assert len(chunks) == len(plain) == 6
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert [c.to_dict() for c in chunks] == [c.to_dict() for c in plain]
    e = only_event(ledger)
    assert (e.input_tokens, e.output_tokens) == (2000, 600)
    assert "usage_estimated" not in e.metadata


def test_prepare_leaves_the_callers_kwargs_alone() -> None:
    kwargs = {"stream": True, "model": "m"}
    new, watcher = _CHAT.prepare(kwargs)
    assert kwargs == {"stream": True, "model": "m"}
    assert new == {**kwargs, "extra_body": {"stream_options": {"include_usage": True}}}
    assert watcher is not None
    plain = {"model": "m"}
    assert _CHAT.prepare(plain) == (plain, None)


# --- the inline streamed create (_chat_create_wrapper) ----------------------------------------
def attach(how: str, client: Any, ledger: Ledger) -> None:
    """Instrument the SDK (``how="instrument"``) or wrap ``client`` only (``"wrap"``)."""
    if how == "instrument":
        al_openai.instrument(ledger=ledger)
    else:
        al_openai.wrap(client, ledger=ledger)


def counting_prepare() -> Any:
    """``_ChatAdapter.prepare`` as it is, its calls counted (a context manager)."""
    return mock.patch.object(type(_CHAT), "prepare", autospec=True,
                             side_effect=type(_CHAT).prepare)  # fmt: skip


def assert_inline_as_general(
    fake: Any, inline_request: dict[str, Any], inline: tuple[list[Any], _ChatWatcher],
    general: tuple[list[Any], _ChatWatcher],
) -> None:  # fmt: skip
    """The inline path's request (``inline_request``), hidden usage chunk and chunks are the
    general wrapper's (the fake server's last request)."""
    assert fake.requests[-1][1] == inline_request
    assert inline_request["stream_options"] == {"include_usage": True}
    assert (inline[1].usage_events_skipped, general[1].usage_events_skipped) == (1, 1)
    assert [c.model_dump() for c in inline[0]] == [c.model_dump() for c in general[0]]
    assert [c.to_dict() for c in inline[0]] == [c.to_dict() for c in general[0]]


@pytest.mark.parametrize("how", ["instrument", "wrap"])
def test_the_inline_streamed_create_records_what_the_general_wrapper_records(
    client: openai.OpenAI, ledger: Ledger, fake: Any, how: str
) -> None:
    """A streamed create without options of the caller's takes the inline path (prepare is
    never called); with ``extra_body={}`` (the same request body) the general one. Chunks,
    request and stored event are the same."""
    attach(how, client, ledger)
    with counting_prepare() as prepare:
        inline = stream_once(client)
        assert prepare.call_count == 0
        inline_request = fake.requests[-1][1]
        general = stream_once(client, extra_body={})
        assert prepare.call_count == 1
    assert_inline_as_general(fake, inline_request, inline, general)
    first, second = events(ledger)
    assert stable(first) == stable(second)
    assert first.cost_usd == second.cost_usd is not None
    assert first.metadata["ttft_ms"] >= 0


def test_the_inline_streamed_create_reads_the_typed_chunks_if_it_cannot_attach(
    client: openai.OpenAI, ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Where the raw events cannot be watched (the hook raises), the call is still recorded
    exactly, from the typed chunks behind the proxy, and the caller sees the same chunks."""
    plain = [c.to_dict() for c in client.chat.completions.create(
        model="o3-mini", messages=MESSAGES, stream=True, extra_headers=usage_header())]  # fmt: skip

    def broken(stream: Any, watcher: Any, call: Any) -> bool:
        raise TypeError("no hook")

    monkeypatch.setattr(al_openai, "_watch_events", broken)
    al_openai.instrument(ledger=ledger)
    chunks, watcher = stream_once(client)
    assert watcher.call is None  # watched on the typed chunks
    assert [c.to_dict() for c in chunks] == plain
    assert "could not attach" in caplog.text
    e = only_event(ledger)
    assert (e.input_tokens, e.output_tokens) == (2000, 600)
    assert "usage_estimated" not in e.metadata


def test_the_inline_streamed_create_leaves_the_callers_kwargs_alone(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    al_openai.instrument(ledger=ledger)
    kwargs: dict[str, Any] = {"model": "o3-mini", "messages": MESSAGES, "stream": True,
                              "extra_headers": usage_header()}  # fmt: skip
    before = dict(kwargs)
    assert len(list(client.chat.completions.create(**kwargs))) == 5
    assert kwargs == before  # no extra_body added to the caller's dict
    assert only_event(ledger).input_tokens == 2000


def test_the_inline_streamed_create_inside_an_instrumented_call_is_not_recorded_again(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    """Made while another instrumented call runs (its wrapper set _ACTIVE), a streamed create
    is that call's, as through the general wrapper: nothing of its own is recorded."""
    from agentledger.integrations._common import _ACTIVE

    al_openai.instrument(ledger=ledger)
    token = _ACTIVE.set(True)
    try:
        assert len(list(client.chat.completions.create(
            model="o3-mini", messages=MESSAGES, stream=True, extra_headers=usage_header()
        ))) == 5  # fmt: skip
    finally:
        _ACTIVE.reset(token)
    assert events(ledger) == []


@pytest.mark.parametrize("how", ["instrument", "wrap"])
def test_the_async_inline_streamed_create_records_what_the_general_wrapper_records(
    ledger: Ledger, fake: Any, how: str
) -> None:
    """The async client's usual streamed create takes its inline path too (prepare never
    called), with the same chunks, request and stored event as the general wrapper's; the
    caller's keyword arguments are left alone; a failing call is recorded and re-raised."""

    async def stream_once_async(
        client: openai.AsyncOpenAI, **options: Any
    ) -> tuple[list[Any], _ChatWatcher]:
        stream = await client.chat.completions.create(
            model="o3-mini", messages=MESSAGES, stream=True, extra_headers=usage_header(),
            **options,
        )  # fmt: skip
        watcher = watcher_of(stream)
        return [c async for c in stream], watcher

    async def main() -> None:
        async with openai.AsyncOpenAI(base_url=fake.openai_url, api_key="test",
                                      max_retries=0) as client:  # fmt: skip
            attach(how, client, ledger)
            with counting_prepare() as prepare:
                inline = await stream_once_async(client)
                assert prepare.call_count == 0
                inline_request = fake.requests[-1][1]
                general = await stream_once_async(client, extra_body={})
                assert prepare.call_count == 1
            assert_inline_as_general(fake, inline_request, inline, general)
            kwargs: dict[str, Any] = {"model": "o3-mini", "messages": MESSAGES, "stream": True,
                                      "extra_headers": usage_header()}  # fmt: skip
            before = dict(kwargs)
            assert len([c async for c in await client.chat.completions.create(**kwargs)]) == 5
            assert kwargs == before  # no extra_body added to the caller's dict
            with pytest.raises(openai.APIStatusError):
                await client.chat.completions.create(
                    model="o3-mini", messages=MESSAGES, stream=True,
                    extra_headers={"x-fake-mode": "500"},
                )  # fmt: skip

    asyncio.run(main())
    first, second, third, failed = events(ledger)
    assert stable(first) == stable(second) == stable(third)
    assert first.cost_usd == second.cost_usd is not None
    assert first.metadata["ttft_ms"] >= 0
    assert failed.status == "error"


# --- a typed ChatCompletion in one pass -------------------------------------------------------
COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-2024-08-06",
    "usage": USAGE,
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "1",
                        "type": "function",
                        "function": {"name": "search", "arguments": ""},
                    },
                    {"id": "2", "type": "custom", "custom": {"name": "shell", "input": "ls"}},
                ],
            },
        },
        {"index": 1, "finish_reason": "stop", "message": {"role": "assistant", "content": "x"}},
    ],
}


@pytest.mark.parametrize(
    "result",
    [
        ChatCompletion.model_validate(COMPLETION),
        ChatCompletion.construct(**COMPLETION),  # not validated: nested values stay dicts
        COMPLETION,
        {**COMPLETION, "choices": None, "usage": None},
        mock.MagicMock(),
        None,
    ],
    ids=["typed", "constructed", "dict", "empty", "mock", "none"],
)
def test_read_matches_extract_and_tool_names(result: Any) -> None:
    model, usage = _CHAT.extract(result)
    assert _CHAT.read(result) == (model, usage, _CHAT.tool_names(result))


def test_read_of_a_typed_completion() -> None:
    model, usage, tools = _CHAT.read(ChatCompletion.model_validate(COMPLETION))
    assert model == "gpt-4o-2024-08-06"
    assert usage is not None
    assert (usage.input_tokens, usage.cache_read_tokens) == (2000, 1500)
    assert (usage.output_tokens, usage.reasoning_tokens) == (600, 400)
    assert tools == {"search", "shell"}


# --- metadata serialised by the writer --------------------------------------------------------
@pytest.mark.parametrize("length", [9_000, 70_000])
def test_a_long_request_model_is_checked_as_before(
    client: openai.OpenAI, ledger: Ledger, length: int
) -> None:
    """Metadata too large for the store is rejected on the caller's thread, as it was."""
    al_openai.instrument(ledger=ledger)
    name = "m" * length
    client.chat.completions.create(
        model=name, messages=MESSAGES, extra_headers={"x-fake-model": "gpt-4o"}
    )
    stored = events(ledger)
    if length == 9_000:
        assert [e.metadata["request_model"] for e in stored] == [name]
        assert ledger.stats().rejected == 0
    else:
        assert stored == []
        assert ledger.stats().rejected == 1


# --- session 4: cheaper reads, no reference cycle, the positional record -----------------------
def test_the_filter_leaves_the_stream_once_started_so_no_cycle_keeps_it(ledger: Ledger) -> None:
    """A finished stream is freed by reference counting, as the SDK's own streams are."""
    stream = _Events(['{"choices":[],"usage":{"prompt_tokens":3}}', "[DONE]"])
    watcher = _ChatWatcher(hide_usage_chunk=True)
    assert _watch_events(stream, watcher, raw_call(ledger)) is True
    assert "_iter_events" in vars(stream)  # not started yet: still there
    events_ = stream._iter_events()  # (as the SDK does when iteration starts)
    assert [sse.data for sse in events_] == []  # [DONE] after the usage: the end
    assert "_iter_events" not in vars(stream)  # the filter left as it started
    ref = weakref.ref(stream)
    gc.disable()
    try:
        del stream, events_
        assert ref() is None  # no garbage collection needed
    finally:
        gc.enable()
    assert only_event(ledger).input_tokens == 3
    assert watcher.usage is not None
    assert watcher.usage.input_tokens == 3


def test_the_filtered_sdk_stream_is_freed_without_the_garbage_collector(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    al_openai.instrument(ledger=ledger)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=usage_header()
    )
    assert type(stream) is openai.Stream  # the SDK's own, watched on its raw events
    ref = weakref.ref(stream)
    gc.collect()
    gc.disable()
    try:
        assert len(list(stream)) == 5
        del stream
        assert ref() is None
    finally:
        gc.enable()
    assert only_event(ledger).input_tokens == 2000


def test_a_call_recorded_by_the_writer_is_freed_without_the_garbage_collector(
    client: openai.OpenAI, ledger: Ledger
) -> None:
    """The call handed to the ledger at ``[DONE]`` holds its watcher's reader, and the watcher
    holds the call: once the row is built that cycle is broken, so the call, its watcher
    and the raw events they kept are freed by reference counting (in the thread that built
    the row) rather than waiting for the garbage collector on the caller's thread."""
    al_openai.instrument(ledger=ledger)
    gc.collect()
    gc.disable()
    try:
        stream = client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=usage_header()
        )
        watcher = watcher_of(stream)
        ref = weakref.ref(watcher)
        assert len(list(stream)) == 5
        del stream, watcher
        assert ref() is not None  # waiting in the ledger until its row is built
        assert only_event(ledger).input_tokens == 2000  # (the row is built here)
        assert ref() is None
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (USAGE, (2000, 600, 1500, 400)),
        ({"prompt_tokens": 5, "completion_tokens": 2}, (5, 2, 0, 0)),
        ({"prompt_tokens": 5, "prompt_tokens_details": None, "completion_tokens_details": 3},
         (5, 0, 0, 0)),
        ({"prompt_tokens": "5", "completion_tokens": -1, "prompt_tokens_details": {}},
         (0, 0, 0, 0)),
    ],
)  # fmt: skip
def test_a_usage_dict_reads_as_the_typed_usage_does(
    usage: dict[str, Any], expected: tuple[int, int, int, int]
) -> None:
    from agentledger.integrations.openai import chat_usage

    got = chat_usage(usage)
    assert got is not None
    assert (got.input_tokens, got.output_tokens, got.cache_read_tokens,
            got.reasoning_tokens) == expected  # fmt: skip
    if usage is USAGE:
        typed = chat_usage(ChatCompletion.model_validate({**COMPLETION, "usage": USAGE}).usage)
        assert typed == got


def test_reasoning_content_in_a_typed_chunk_counts_as_a_token() -> None:
    from openai.types.chat import ChatCompletionChunk

    def chunk(delta: dict[str, Any]) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-r1",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        })  # fmt: skip

    watcher = _ChatWatcher(hide_usage_chunk=False)
    assert watcher.on_item(chunk({"role": "assistant", "content": ""})) == (True, False)
    assert watcher.on_item(chunk({"reasoning_content": "thinking"})) == (True, True)
    assert watcher.on_item(chunk({"reasoning_content": ""})) == (True, False)
    assert watcher.on_item(chunk({"content": "hi"})) == (True, True)
    assert watcher.on_item({"choices": [{"delta": {"reasoning_content": "x"}}]}) == (True, True)
    assert watcher.tokens_seen == 3
    assert watcher.model == "deepseek-r1"


# --- chunks watched on their raw events ------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param('{"choices":[{"delta":{"content":"Hi"}}]}', True, id="compact"),
        pytest.param('{"choices": [{"delta": {"content" : "Hi"}}]}', True, id="spaced"),
        pytest.param(
            '{"choices":[{"delta":{"role":"assistant","content":""}}]}', False, id="empty"
        ),
        pytest.param('{"choices":[{"delta":{"content":null}}]}', False, id="null"),
        pytest.param('{"choices":[{"delta":{}}]}', False, id="no-fields"),
        pytest.param('{"choices":[{"delta":{"content":"\\"q"}}]}', True, id="escaped-quote"),
        pytest.param('{"choices":[{"delta":{"refusal":"No."}}]}', True, id="refusal"),
        pytest.param('{"choices":[{"delta":{"reasoning_content":"hm"}}]}', True, id="reasoning"),
        pytest.param(
            '{"choices":[{"delta":{"content":""},"logprobs":{"content":[{"token":"x"}]}}]}',
            False,
            id="logprobs-list",
        ),
        pytest.param(
            '{"choices":[{"delta":{"content":"say \\"content\\": \\"\\""}}]}',
            True,
            id="key-text-in-content",
        ),
    ],
)
def test_raw_text_detection(data: str, expected: bool) -> None:
    from agentledger.integrations.openai import _has_text

    assert json.loads(data)  # the cases are valid JSON
    assert _has_text(data, data.find('"delta"')) is expected


_RAW_CASES = [
    pytest.param({}, id="text"),
    pytest.param({"x-fake-tools": json.dumps(["get_weather", "search"])}, id="tool-calls"),
    # More events than are kept unread at a time (read in runs after the first token).
    pytest.param({"x-fake-chunks": str(3 * _READ_EVERY + 5)}, id="long"),
    # A server that sends no usage: the tokens seen are the recorded estimate.
    pytest.param({"x-fake-usage-on": "none"}, id="no-usage"),
    pytest.param(
        {"x-fake-usage-on": "none", "x-fake-chunks": str(_READ_EVERY + 7)}, id="long-no-usage"
    ),
    # A compatible server that puts the usage on its last chunk with choices.
    pytest.param({"x-fake-usage-on": "last"}, id="usage-last"),
    # JSON as OpenAI writes it, and spaced as no known server does: read all the same.
    pytest.param({"x-fake-json": "compact"}, id="compact-json"),
    pytest.param({"x-fake-json": "odd"}, id="odd-json"),
    pytest.param({"x-fake-json": "odd", "x-fake-usage-on": "last"}, id="odd-json-usage-last"),
]


def assert_recorded_alike(
    first: Event, second: Event, raw: _ChatWatcher, raw_chunks: list[Any], usage_on: str | None
) -> None:
    """The raw-watched call's event (``first``) is the typed-watched one's (``second``):
    exact usage, or the tokens seen and ``usage_estimated`` where none came
    (``usage_on="none"``); every kept event read; no usage-only chunk handed out."""
    assert raw._unread == []  # every kept event was read when the call was recorded
    assert stable(first) == stable(second)
    assert first.metadata["ttft_ms"] >= 0
    assert second.metadata["ttft_ms"] >= 0
    if usage_on == "none":
        assert first.output_tokens == raw.tokens_seen
        assert first.metadata["usage_estimated"] is True
    else:
        assert (first.input_tokens, first.output_tokens, first.cache_read_tokens) == (
            2000, 600, 1500,
        )  # fmt: skip
        assert "usage_estimated" not in first.metadata
    assert all(c.choices for c in raw_chunks)  # no usage-only chunk reached the caller


@pytest.mark.parametrize("headers", _RAW_CASES)
def test_raw_and_typed_watching_record_the_same(
    client: openai.OpenAI, ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
    headers: dict[str, str],
) -> None:  # fmt: skip
    """Tokens seen, tools asked for, time to first token: the same from raw events as from
    the typed chunks (the hook turned off)."""
    al_openai.instrument(ledger=ledger)

    def once() -> tuple[list[Any], _ChatWatcher]:
        stream = client.chat.completions.create(
            model="o3-mini", messages=MESSAGES, stream=True,
            extra_headers={**usage_header(), **headers},
        )  # fmt: skip
        return list(stream), watcher_of(stream)

    raw_chunks, raw = once()
    with monkeypatch.context() as m:
        m.setattr(al_openai, "_watch_events", no_raw_watching)
        typed_chunks, typed = once()
    first, second = events(ledger)  # (the raw call's events were read by the writer)
    assert raw.call is not None
    assert typed.call is None  # watched on the typed chunks
    assert [c.model_dump() for c in raw_chunks] == [c.model_dump() for c in typed_chunks]
    if headers.get("x-fake-json") != "odd":  # (see the async test below)
        assert [c.to_dict() for c in raw_chunks] == [c.to_dict() for c in typed_chunks]
    assert (raw.tool_names, raw.model) == (typed.tool_names, typed.model)
    usage_on = headers.get("x-fake-usage-on")
    assert raw.usage_events_skipped == (1 if usage_on is None else 0)
    if usage_on == "last":  # on a chunk the caller sees: read there
        assert raw.complete_usage is typed.complete_usage is True
        assert raw_chunks[-1].usage is not None
    elif usage_on == "none":  # no usage came: both count every token
        assert raw.tokens_seen == typed.tokens_seen
        assert raw.complete_usage is typed.complete_usage is False
    else:  # the raw watcher counts no token (an estimate) read after the usage came
        assert raw.tokens_seen <= typed.tokens_seen
    if "x-fake-chunks" in headers:  # runs of events read before the usage came
        assert raw.tokens_seen > _READ_EVERY
    tools = frozenset({"get_weather", "search"}) if "x-fake-tools" in headers else frozenset()
    assert raw.tool_names == tools
    assert_recorded_alike(first, second, raw, raw_chunks, usage_on)


@pytest.mark.parametrize("headers", _RAW_CASES)
def test_async_raw_and_typed_watching_record_the_same(
    fake: Any, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    """The same with the async client (its own inline event filter): the caller's chunks,
    tools, model and the stored event as from the typed chunks."""
    al_openai.instrument(ledger=ledger)

    async def once() -> tuple[list[Any], _ChatWatcher]:
        async with openai.AsyncOpenAI(base_url=fake.openai_url, api_key="test",
                                      max_retries=0) as client:  # fmt: skip
            stream = await client.chat.completions.create(
                model="o3-mini", messages=MESSAGES, stream=True,
                extra_headers={**usage_header(), **headers},
            )  # fmt: skip
            return [c async for c in stream], watcher_of(stream)

    raw_chunks, raw = asyncio.run(once())
    with monkeypatch.context() as m:
        m.setattr(al_openai, "_watch_events", no_raw_watching)
        typed_chunks, typed = asyncio.run(once())
    first, second = events(ledger)
    assert raw.call is not None
    assert typed.call is None
    if headers.get("x-fake-json") == "odd":  # a "usage": null spelt as no server does is
        # left in the raw text (see _without_null_usage): the same fields, one more set
        assert [c.model_dump() for c in raw_chunks] == [c.model_dump() for c in typed_chunks]
    else:
        assert [c.to_dict() for c in raw_chunks] == [c.to_dict() for c in typed_chunks]
    assert (raw.tool_names, raw.model) == (typed.tool_names, typed.model)
    if "x-fake-chunks" in headers:  # runs of events read before the usage came
        assert raw.tokens_seen > _READ_EVERY
    assert_recorded_alike(first, second, raw, raw_chunks, headers.get("x-fake-usage-on"))


# --- session 15: the first token found from the kept events' times -------------------------------
class _Clock:
    """``time.perf_counter`` stand-in: 1.0, 2.0, 3.0, ... one per call (deterministic)."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


def _chunk(delta: dict[str, Any]) -> str:
    return json.dumps({"model": "m", "choices": [{"index": 0, "delta": delta}]})


_ROLE = _chunk({"role": "assistant", "content": ""})  # no token: the text is empty
_USAGE = '{"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}'
_TOOL = _chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                "function": {"name": "f", "arguments": ""}}]})  # fmt: skip


@pytest.mark.parametrize(
    ("before", "token"),
    [
        pytest.param([_ROLE], _chunk({"content": "Hi"}), id="content"),
        pytest.param([_ROLE], _chunk({"refusal": "No"}), id="refusal"),
        pytest.param([_ROLE], _chunk({"reasoning_content": "Hm"}), id="reasoning"),
        pytest.param([_ROLE], _TOOL, id="tool-calls"),
        pytest.param([_ROLE, _chunk({"content": ""}), _chunk({})], _chunk({"content": "Hi"}),
                     id="after-empty-deltas"),
        pytest.param([_ROLE] * (2 * _READ_EVERY + 5), _chunk({"content": "Hi"}),
                     id="past-two-reads"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_first_token_time_is_that_of_the_event_carrying_it(
    before: list[str], token: str, kind: str, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept events are timed as they come until the first token is known; the event that
    carries it is found when they are read (on the writer, or every _READ_EVERY events)."""
    clock = _Clock()
    monkeypatch.setattr(al_openai, "time", clock)  # (the async filter's time.perf_counter)
    monkeypatch.setattr(al_openai, "perf_counter", clock.perf_counter)  # (the sync filter's)
    call = raw_call(ledger)
    call._t0 = 0.0
    call.streaming = True
    data = [*before, token, _chunk({"content": " there"}), _USAGE, "[DONE]"]
    watcher = _ChatWatcher(hide_usage_chunk=True)
    if kind == "sync":
        stream: Any = _Events(data)
        assert _watch_events(stream, watcher, call) is True
        passed = [sse.data for sse in stream._iter_events()]
    else:
        stream = _AsyncEvents(data)
        assert _watch_events(stream, watcher, call) is True

        async def read() -> list[str]:
            return [sse.data async for sse in stream._iter_events()]

        passed = asyncio.run(read())
    assert passed == data[:-2]
    assert ledger.flush()
    # The clock ticks once per event kept until the first token is known: that event's is
    # tick len(before) + 1 (the typed path stamps the same event).
    assert call.first_token_at == float(len(before) + 1)
    e = only_event(ledger)
    assert e.metadata["ttft_ms"] == (len(before) + 1) * 1000.0
    assert (e.input_tokens, e.output_tokens) == (3, 2)


class _AsyncEvents:
    """An SDK-shaped async stream (see _Events)."""

    def __init__(self, data: list[str]) -> None:
        self.data = data

    async def _iter_events(self) -> Any:
        for text in self.data:
            yield mock.Mock(data=text)

    async def close(self) -> None:
        pass


def test_a_stream_without_a_token_records_no_first_token(ledger: Ledger) -> None:
    passed, watcher = filter_events([_ROLE, _chunk({}), _USAGE, "[DONE]"], ledger)
    assert passed == [_ROLE, _chunk({})]
    assert watcher.call is not None
    assert watcher.call.first_token_at is None
    assert "ttft_ms" not in only_event(ledger).metadata
