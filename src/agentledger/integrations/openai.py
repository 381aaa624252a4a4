"""Record every call made with the official ``openai`` SDK.

::

    from agentledger.integrations import openai as al_openai

    al_openai.instrument()            # every OpenAI / AsyncOpenAI client in the process
    # or: client = al_openai.wrap(OpenAI())   # this client only

Chat Completions ``create``/``parse``, Responses ``create``/``parse`` and Embeddings
``create`` (sync and async, streaming or not; the ``stream()`` helpers go through
``create``) each record one ``llm`` event with ``provider="openai"``, the response's model,
exact token usage (docs/tokens.md), duration and, for streams, ``ttft_ms``. Errors are
recorded with ``status="error"`` and re-raised unchanged. Tool calls a response asks for
(Chat ``tool_calls``, Responses ``function_call`` items) are noted so that an instrumented
tool call answering them nests under the model call. See docs/integrations/openai.md.
"""

from __future__ import annotations

import functools
import inspect
import json
import time
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final

from ..ledger import Ledger
from ._common import (
    Adapter,
    Call,
    Patch,
    Patcher,
    StreamWatcher,
    Usage,
    as_int,
    async_wrapper,
    attr,
    log,
    original_of,
    raw_response_mode,
    sync_wrapper,
)

__all__ = ["instrument", "is_instrumented", "uninstrument", "wrap"]

PROVIDER = "openai"

_patcher = Patcher()
_CREATE = "create"
# ``parse`` (structured outputs) posts by itself rather than through ``create``.
_METHODS = ("create", "parse")
# Responses output items that ask the caller to run a tool (``mcp_call`` and the built-in
# tools run on OpenAI's side).
_TOOL_ITEMS = ("function_call", "custom_tool_call")


# --- usage -------------------------------------------------------------------------------------
def chat_usage(usage: Any) -> Usage | None:
    """Chat Completions (and Embeddings) ``usage`` in the ledger's convention."""
    if usage is None:
        return None
    if type(usage) is dict:  # the usage chunk read from its raw event (see _usage_event)
        return _dict_usage(usage)
    # The SDK's CompletionUsage: plain attribute reads (its fields are always set); anything
    # else (other shapes) through attr().
    try:
        prompt, details_in = usage.prompt_tokens, usage.prompt_tokens_details
        completion, details_out = usage.completion_tokens, usage.completion_tokens_details
        cached = 0 if details_in is None else details_in.cached_tokens
        reasoning = 0 if details_out is None else details_out.reasoning_tokens
    except AttributeError:
        pass
    else:
        return Usage(as_int(prompt), as_int(completion), as_int(cached), 0, 0,
                     as_int(reasoning))  # fmt: skip
    return Usage(
        input_tokens=as_int(attr(usage, "prompt_tokens")),
        output_tokens=as_int(attr(usage, "completion_tokens")),
        cache_read_tokens=as_int(attr(usage, "prompt_tokens_details", "cached_tokens")),
        reasoning_tokens=as_int(attr(usage, "completion_tokens_details", "reasoning_tokens")),
    )


def _dict_usage(usage: dict[str, Any]) -> Usage:
    """:func:`chat_usage` of a JSON object: ``dict.get`` instead of four ``attr()`` walks."""
    details_in = usage.get("prompt_tokens_details")
    details_out = usage.get("completion_tokens_details")
    cached = details_in.get("cached_tokens") if type(details_in) is dict else None
    reasoning = details_out.get("reasoning_tokens") if type(details_out) is dict else None
    return Usage(as_int(usage.get("prompt_tokens")), as_int(usage.get("completion_tokens")),
                 as_int(cached), 0, 0, as_int(reasoning))  # fmt: skip


def responses_usage(usage: Any) -> Usage | None:
    """Responses API ``usage`` in the ledger's convention."""
    if usage is None:
        return None
    return Usage(
        input_tokens=as_int(attr(usage, "input_tokens")),
        output_tokens=as_int(attr(usage, "output_tokens")),
        cache_read_tokens=as_int(attr(usage, "input_tokens_details", "cached_tokens")),
        reasoning_tokens=as_int(attr(usage, "output_tokens_details", "reasoning_tokens")),
    )


def _model(obj: Any) -> str | None:
    model = attr(obj, "model")
    return model if isinstance(model, str) and model else None


def _name(value: Any) -> frozenset[str]:
    return frozenset((value,)) if isinstance(value, str) and value else frozenset()


def _chat_tool_call_names(tool_calls: Any) -> frozenset[str]:
    """Names in a message's (or a stream delta's) ``tool_calls``: functions and custom tools."""
    names: frozenset[str] = frozenset()
    for call in tool_calls or ():
        names |= _name(attr(call, "function", "name") or attr(call, "custom", "name"))
    return names


def _responses_item_name(item: Any) -> frozenset[str]:
    return _name(attr(item, "name")) if attr(item, "type") in _TOOL_ITEMS else frozenset()


# --- adapters ----------------------------------------------------------------------------------
class _ChatWatcher(StreamWatcher):
    call: Call | None = None  # set when the raw events are watched (see attach)

    def __init__(self, hide_usage_chunk: bool) -> None:
        self.hide_usage_chunk = hide_usage_chunk
        self.usage_events_skipped = 0  # usage chunks read from the raw event (see attach)
        self._unread: list[str] = []  # raw events not read yet (see on_event)
        # The server spaces its JSON neither way of _EMPTY_CHOICES (seen on the first
        # event): each event is then also searched for the usage-only chunk exactly.
        self.odd_json = True

    def attach(self, stream: Any, call: Call) -> None:
        # The usage-only chunk we asked for on the caller's behalf is never shown to them:
        # read it from the raw event instead of letting the SDK build a model of it. Where
        # the raw events can be read, the chunks are watched there too (a few substring
        # tests on the event's text instead of attribute reads on each chunk's model); the
        # typed chunks then only pass through.
        if self.hide_usage_chunk and _skip_usage_events(stream, self):
            self.call = call
            self.raw_watched = True

    def on_event(self, sse: Any) -> bool:
        """Watch one raw server-sent event; True if it is the usage-only chunk, now read
        (the SDK never sees it).

        Other events are kept and read in runs (:meth:`settle`): once the first token has
        come, up to :data:`_READ_EVERY` of them at a time and the rest when the stream ends.
        A run of events read in one loop costs a fraction of the same reads spread between
        the SDK's work on each chunk (the reading code stays in the CPU's caches).
        """
        try:
            data = sse.data
            if (_EMPTY_CHOICES in data or _EMPTY_CHOICES_SPACED in data
                    or (self.odd_json and _no_choices(data))):  # fmt: skip
                return self._take_usage(data)
            call = self.call
            if call is None or call.first_token_at is None:
                self._read(data)
                return False
            unread = self._unread
            unread.append(data)
            if len(unread) >= _READ_EVERY:
                self.settle()
        except Exception:
            log.warning("agentledger: could not read a stream event", exc_info=True)
        return False

    def _take_usage(self, data: str) -> bool:
        """Read a raw chunk without choices; True if it is the usage-only chunk (then kept
        from the SDK and the caller even when its usage cannot be read: the call is then
        recorded as estimated). Anything else (an error event, a chunk without a usage
        object, as Azure's content-filter chunk) goes on to the SDK as it would have."""
        chunk = _usage_event(data)
        if chunk is None:
            return False
        self.on_usage_event(chunk)
        return True

    def settle(self) -> None:
        """Read the raw events kept by :meth:`on_event`: tokens seen, tools asked for and
        the first token's time (which is why events are read at once until it came)."""
        unread = self._unread
        if not unread:
            return
        self._unread = []
        final = self.usage_events_skipped > 0  # the usage-only chunk came: its usage stands
        if final:
            # and the tokens seen (an estimate, wanted only without it) need not be counted:
            # only the tools asked for are still to read.
            for data in unread:
                if '"tool_calls"' in data:
                    break
            else:
                return
        for data in unread:
            try:
                self._read(data, final)
            except Exception:
                log.warning("agentledger: could not read a stream event", exc_info=True)

    def _read(self, data: str, final: bool = False) -> None:
        """Read one raw event (not the usage-only chunk); ``final``: that chunk has come."""
        if self.model is None:  # the first event (or until one names the model)
            self.model = _raw_model(data)
            self.odd_json = _EMPTY_CHOICES[:-1] not in data and (
                _EMPTY_CHOICES_SPACED[:-1] not in data
            )
        if not final:  # a usage on a chunk with choices (some compatible servers)
            at = data.find('"usage"')
            if at >= 0 and "null" not in data[at + 7 : at + 14]:  # not "usage": null
                self._read_usage(data)
        start = data.find('"delta"')
        if start < 0:
            return
        token = _has_text(data, start)
        if '"tool_calls"' in data:
            calls, names = _raw_tool_calls(data)
            if calls:  # argument deltas too, as the typed chunks count them
                self.tool_names |= names
                token = True
        if token:
            self.tokens_seen += 1
            call = self.call
            if call is not None and call.first_token_at is None:
                call.first_token_at = time.perf_counter()

    def _read_usage(self, data: str) -> None:
        """The usage of a raw chunk that also has choices (passed on to the caller)."""
        chunk, _ = _SCAN_JSON(data, 0)
        usage = chunk.get("usage") if type(chunk) is dict else None
        if type(usage) is dict:
            self.usage, self.complete_usage = _dict_usage(usage), True

    def on_usage_event(self, data: dict[str, Any]) -> bool:
        """Read the usage-only chunk from its raw event (a dict; see :func:`_skip_usage_events`).

        False if it could not be read (logged; the call's usage is then an estimate).
        """
        try:
            usage = _dict_usage(data["usage"])  # a dict (see _usage_event)
            model = self.model if self.model is not None else _model(data)
        except Exception:
            log.warning("agentledger: could not read a usage chunk", exc_info=True)
            return False
        self.model, self.usage, self.complete_usage = model, usage, True
        self.usage_events_skipped += 1
        return True

    def on_item(self, item: Any) -> tuple[bool, bool]:
        # The SDK's typed chunks are read with plain attribute reads (tens of ns each);
        # anything else (dicts, unexpected shapes) through attr().
        try:
            choices, usage = item.choices, item.usage
            if self.model is None:
                model = item.model
                self.model = model if isinstance(model, str) and model else None
        except AttributeError:
            choices, usage = attr(item, "choices"), attr(item, "usage")
            if self.model is None:
                self.model = _model(item)
        if usage is not None:
            self.usage = chat_usage(usage)
            self.complete_usage = True
        if not choices:
            # The usage-only chunk we asked for on the caller's behalf: not theirs to see.
            return not (usage is not None and self.hide_usage_chunk), False
        token = False
        for choice in choices:
            try:
                delta = choice.delta
                tool_calls = delta.tool_calls
                text = delta.content or delta.refusal
                if not (text or tool_calls):
                    # Not a field of the SDK's ChoiceDelta: an extra (DeepSeek, vLLM) if any.
                    extra = delta.__pydantic_extra__
                    text = extra.get("reasoning_content") if extra else None
            except AttributeError:
                delta = attr(choice, "delta")
                tool_calls = attr(delta, "tool_calls")
                text = (attr(delta, "content") or attr(delta, "refusal")
                        or attr(delta, "reasoning_content"))  # fmt: skip
            if tool_calls:
                self.tool_names |= _chat_tool_call_names(tool_calls)
            if text or tool_calls:
                token = True
        if token:
            self.tokens_seen += 1
        return True, token


#: Raw events kept before they are read, once the first token has come (see on_event).
_READ_EVERY: Final = 64

# The usage-only chunk's raw JSON, as OpenAI writes it and with Python's default spacing:
# a substring test (a quote inside a JSON string is escaped, so no chunk text can match);
# JSON spaced any other way is read exactly (_no_choices; see _ChatWatcher.odd_json).
_EMPTY_CHOICES: Final = '"choices":[]'
_EMPTY_CHOICES_SPACED: Final = '"choices": []'


def _value_at(data: str, key: str, start: int = 0) -> int:
    """Where the value of the first ``key`` (a quoted JSON key) from ``start`` starts in the
    raw JSON ``data``, or -1. For the keys asked here the first is the chunk's own: the
    fields before them hold no such key, and in JSON text a quote inside a string is
    escaped."""
    at = data.find(key, start)
    if at < 0:
        return -1
    at += len(key)
    head = data[at : at + 8]
    value = head.lstrip(_BLANK)
    if not value:  # more blanks than that
        return len(data) - len(data[at:].lstrip(_BLANK))
    return at + len(head) - len(value)


def _no_choices(data: str) -> bool:
    """True if the raw chunk's ``choices`` is an empty list (the usage-only chunk, or a
    chunk like Azure's content-filter results)."""
    at = _value_at(data, '"choices"')
    if at < 0 or not data.startswith("[", at):
        return False
    return data[at + 1 : at + 64].lstrip(_BLANK).startswith("]")


def _raw_model(data: str) -> str | None:
    """The ``model`` of a raw chunk, None when it has none (or not a string)."""
    at = _value_at(data, '"model"')
    if at < 0 or not data.startswith('"', at):
        return None
    try:
        model, _ = _SCAN_JSON(data, at)
    except (StopIteration, ValueError):
        return None
    return model if type(model) is str and model else None


# json.loads without its two regex passes (the SSE decoder strips the data already).
_SCAN_JSON: Callable[[str, int], tuple[Any, int]]
_SCAN_JSON = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _usage_event(data: str) -> dict[str, Any] | None:
    """The JSON of a usage-only chunk (no choices, a usage object, no error), else None."""
    try:
        chunk, end = _SCAN_JSON(data, 0)
    except (StopIteration, ValueError):
        return None
    if end != len(data) and not data[end:].isspace():  # not ours to judge: the SDK's
        return None
    if (
        type(chunk) is dict
        and chunk.get("choices") == []
        and type(chunk.get("usage")) is dict
        and not chunk.get("error")  # the SDK raises on an error event: leave it to the SDK
    ):
        return chunk
    return None


# Delta fields whose non-empty text is generated content (reasoning_content: DeepSeek, vLLM).
_TEXT_KEYS: Final = ('"content"', '"refusal"', '"reasoning_content"')
_BLANK: Final = " \t\r\n:"  # JSON's blanks, and the colon after a key


def _has_text(data: str, start: int) -> bool:
    """True if the raw chunk ``data`` has a non-empty string in a text field of its delta
    (searched from ``start``, where ``"delta"`` is). In JSON text a bare ``"content"`` can
    only be a key or a whole string (quotes inside strings are escaped), and a value that
    is not a string (``null``, the ``logprobs`` list) does not count."""
    for key in _TEXT_KEYS:
        at = _value_at(data, key, start)
        if at >= 0 and data.startswith('"', at) and data[at + 1 : at + 2] not in ('"', ""):
            return True
    return False


def _raw_tool_calls(data: str) -> tuple[bool, frozenset[str]]:
    """Whether a raw chunk's deltas hold tool calls, and the tool names among them (the
    chunk mentions ``tool_calls``; it is decoded, which only tool-calling chunks cost)."""
    try:
        chunk, _ = _SCAN_JSON(data, 0)
    except (StopIteration, ValueError):
        return False, frozenset()
    calls = False
    names: frozenset[str] = frozenset()
    for choice in attr(chunk, "choices") or ():
        tool_calls = attr(choice, "delta", "tool_calls")
        if tool_calls:
            calls = True
            names |= _chat_tool_call_names(tool_calls)
    return calls, names


# SDK event readers (``Stream._iter_events``) -> True (async generator), False (generator)
# or None (neither: not filtered).
_EVENT_READERS: dict[Any, bool | None] = {}
_MISSING: Any = object()


def _skip_usage_events(stream: Any, watcher: _ChatWatcher) -> bool:
    """Make ``stream`` hand its usage-only chunk to ``watcher`` instead of building a model.

    The SDK's ``Stream``/``AsyncStream`` read their server-sent events from
    ``self._iter_events()`` when iteration starts; an instance attribute of that name that
    filters the events is used instead. Building a ``ChatCompletionChunk`` for the usage
    chunk costs tens of µs and the caller never sees it (it is the chunk we asked for). Where
    the SDK is not shaped like that (another version, a stream already started), nothing is
    filtered and the proxy reads and hides the typed chunk as before. True if installed.
    Every event goes through ``watcher.on_event`` (which also watches the other chunks).

    The filter removes itself from the stream when the SDK calls it (once, as iteration
    starts): a stream holding a closure that holds the stream is a reference cycle, and the
    whole finished stream (response, decoder, buffers) would wait for the garbage collector
    instead of being freed when the caller drops it, as the SDK's own streams are.
    """
    original = getattr(type(stream), "_iter_events", None)
    if original is None or "_iter_events" in vars(stream):
        return False
    is_async = _EVENT_READERS.get(original, _MISSING)
    if is_async is _MISSING:
        if inspect.isasyncgenfunction(original):
            is_async = True
        elif inspect.isgeneratorfunction(original):
            is_async = False
        else:
            is_async = None
        _EVENT_READERS[original] = is_async
    if is_async is None:
        return False
    events = original.__get__(stream)
    if is_async:

        async def aiter_events() -> AsyncIterator[Any]:
            vars(stream).pop("_iter_events", None)  # no cycle (see above)
            async for sse in events():
                if not watcher.on_event(sse):
                    yield sse

        stream._iter_events = aiter_events
        return True

    def iter_events() -> Iterator[Any]:
        vars(stream).pop("_iter_events", None)  # no cycle (see above)
        for sse in events():
            if not watcher.on_event(sse):
                yield sse

    stream._iter_events = iter_events
    return True


class _ChatAdapter(Adapter):
    provider = PROVIDER
    endpoint = "chat.completions"
    requests_tools = True

    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], StreamWatcher | None]:
        if kwargs.get("stream") is not True:
            return kwargs, None
        options = kwargs.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return kwargs, _ChatWatcher(hide_usage_chunk=False)
        if raw_response_mode(kwargs) is not None:
            # with_raw_response / with_streaming_response: the caller may read the raw
            # bytes, where an extra usage chunk could not be hidden. Do not ask for it.
            return kwargs, _ChatWatcher(hide_usage_chunk=False)
        if isinstance(options, dict):
            kwargs = {**kwargs, "stream_options": {**options, "include_usage": True}}
            return kwargs, _ChatWatcher(hide_usage_chunk=True)
        # No options of the caller's (None, or the SDK's "not given"): ask for usage through
        # ``extra_body``, merged into the same JSON body past the SDK's request transform
        # (which costs ~10 µs for this one field), unless the caller's own extra_body has
        # stream_options: theirs is sent as it would have been.
        extra = kwargs.get("extra_body")
        if extra is None:
            extra = {"stream_options": {"include_usage": True}}
        elif type(extra) is dict and "stream_options" not in extra:
            extra = {**extra, "stream_options": {"include_usage": True}}
        else:
            return {**kwargs, "stream_options": {"include_usage": True}}, _ChatWatcher(True)
        return {**kwargs, "extra_body": extra}, _ChatWatcher(hide_usage_chunk=True)

    def extract(self, result: Any) -> tuple[str | None, Usage | None]:
        return _model(result), chat_usage(attr(result, "usage"))

    def tool_names(self, result: Any) -> frozenset[str]:
        names: frozenset[str] = frozenset()
        for choice in attr(result, "choices") or ():
            names |= _chat_tool_call_names(attr(choice, "message", "tool_calls"))
        return names

    def read(self, result: Any) -> tuple[str | None, Usage | None, frozenset[str]]:
        # The SDK's ChatCompletion in one pass of plain attribute reads; anything else
        # (dicts, other shapes) through extract() and tool_names().
        fields: Any = getattr(result, "__dict__", None)
        try:
            model, usage, choices = fields["model"], fields["usage"], fields["choices"]
            tool_calls = [choice.message.tool_calls for choice in choices or ()]
        except (AttributeError, KeyError, TypeError):
            return super().read(result)
        names: frozenset[str] = frozenset()
        if any(tool_calls):
            try:
                for calls in tool_calls:
                    names |= _chat_tool_call_names(calls)
            except Exception:
                log.warning("agentledger: could not read the tool calls of a %s response",
                            self.endpoint, exc_info=True)  # fmt: skip
                names = frozenset()
        return (model if isinstance(model, str) and model else None), chat_usage(usage), names


class _ResponsesWatcher(StreamWatcher):
    def on_item(self, item: Any) -> tuple[bool, bool]:
        kind = attr(item, "type")
        response = attr(item, "response")
        if response is not None:
            model = _model(response)
            if model is not None:
                self.model = model
            usage = attr(response, "usage")
            if usage is not None:
                self.usage = responses_usage(usage)
                self.complete_usage = kind in (
                    "response.completed", "response.incomplete", "response.failed",
                )  # fmt: skip
            for output in attr(response, "output") or ():
                self.tool_names |= _responses_item_name(output)
        elif kind in ("response.output_item.added", "response.output_item.done"):
            self.tool_names |= _responses_item_name(attr(item, "item"))
        token = isinstance(kind, str) and kind.endswith(".delta")
        if token:
            self.tokens_seen += 1
        return True, token


class _ResponsesAdapter(Adapter):
    provider = PROVIDER
    endpoint = "responses"
    requests_tools = True

    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], StreamWatcher | None]:
        if kwargs.get("stream") is True:
            return kwargs, _ResponsesWatcher()
        return kwargs, None

    def extract(self, result: Any) -> tuple[str | None, Usage | None]:
        return _model(result), responses_usage(attr(result, "usage"))

    def tool_names(self, result: Any) -> frozenset[str]:
        names: frozenset[str] = frozenset()
        for item in attr(result, "output") or ():
            names |= _responses_item_name(item)
        return names


class _EmbeddingsAdapter(Adapter):
    provider = PROVIDER
    endpoint = "embeddings"

    def extract(self, result: Any) -> tuple[str | None, Usage | None]:
        usage = attr(result, "usage")
        if usage is None:
            return _model(result), None
        return _model(result), Usage(input_tokens=as_int(attr(usage, "prompt_tokens")))


_CHAT = _ChatAdapter()
_RESPONSES = _ResponsesAdapter()
_EMBEDDINGS = _EmbeddingsAdapter()


def _targets() -> list[tuple[type, str, Adapter, bool]]:
    """(resource class, method, adapter, is_async) for every method we instrument."""
    from openai.resources.chat.completions.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import AsyncEmbeddings, Embeddings
    from openai.resources.responses.responses import AsyncResponses, Responses

    out: list[tuple[type, str, Adapter, bool]] = []
    for sync_cls, async_cls, adapter, methods in (
        (Completions, AsyncCompletions, _CHAT, _METHODS),
        (Responses, AsyncResponses, _RESPONSES, _METHODS),
        (Embeddings, AsyncEmbeddings, _EMBEDDINGS, (_CREATE,)),
    ):
        for name in methods:
            for cls, is_async in ((sync_cls, False), (async_cls, True)):
                if name in cls.__dict__:  # ``parse`` is missing from older SDKs
                    out.append((cls, name, adapter, is_async))
    return out


def _patches() -> Iterator[Patch]:
    for cls, name, adapter, is_async in _targets():
        make = async_wrapper if is_async else sync_wrapper
        yield cls, name, functools.partial(make, adapter=adapter, ledger_ref=_patcher.ledger_ref)


# --- public API --------------------------------------------------------------------------------
def instrument(ledger: Ledger | None = None) -> None:
    """Record every call of every OpenAI client (existing and future) in this process.

    ``ledger`` defaults to :func:`agentledger.get_ledger`, looked up at call time. Calling
    again is harmless: the methods are patched once and the latest ``ledger`` is used.
    """
    _patcher.instrument(ledger, _patches)


def uninstrument() -> None:
    """Put back the SDK's own methods exactly as they were."""
    _patcher.uninstrument()


def is_instrumented() -> bool:
    """True between :func:`instrument` and :func:`uninstrument`."""
    return _patcher.is_instrumented()


def wrap(client: Any, ledger: Ledger | None = None) -> Any:
    """Record the calls of this one ``OpenAI`` / ``AsyncOpenAI`` client; returns the client.

    The client's own resource objects are instrumented, so copies made later with
    ``client.with_options(...)`` are not. Wrapping twice is harmless.
    """

    def ledger_ref() -> Ledger | None:
        return ledger

    resources = [
        (("chat", "completions"), _CHAT, _METHODS),
        (("responses",), _RESPONSES, _METHODS),
        (("embeddings",), _EMBEDDINGS, (_CREATE,)),
    ]
    from openai._resource import AsyncAPIResource

    for path, adapter, methods in resources:
        resource = attr(client, *path)
        if resource is None:  # an older SDK without this API
            continue
        make = async_wrapper if isinstance(resource, AsyncAPIResource) else sync_wrapper
        for name in methods:
            original = original_of(type(resource).__dict__.get(name))
            if original is None:
                continue
            wrapper = make(original, adapter, ledger_ref)
            setattr(resource, name, types.MethodType(wrapper, resource))
    return client
