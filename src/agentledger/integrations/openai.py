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

import contextlib
import functools
import inspect
import json
import re
import time
import types
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from time import perf_counter
from typing import Any, Final

from ..ledger import Ledger
from ._common import (
    _ACTIVE,
    Adapter,
    Call,
    Patch,
    Patcher,
    StreamWatcher,
    Usage,
    as_int,
    async_wrapper,
    attr,
    finish_stream,
    handed_out,
    log,
    original_of,
    raw_response_mode,
    sync_wrapper,
)
from ._sse import speed_up

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
    """Watches a streamed chat call: its typed chunks (behind a proxy), or, where the SDK
    allows (:func:`_watch_events`), its raw server-sent events, the stream being handed out
    as it is.

    Raw watching asks as little as it can of the caller's thread: each event is tested for
    ``"delta"`` (a chunk with choices: kept, with the time it came until the first token is
    known); the others are the usage-only chunk (kept from the SDK and the caller),
    ``[DONE]``, errors. The rest (which event carried the first token, the model, tokens
    seen, tools asked for, the usage) is read when the call is recorded, by the ledger's
    writer when the provider sent its usage and no tools were asked for (:meth:`finish`),
    or every :data:`_READ_EVERY` events of a long stream.
    """

    call: Call | None = None  # set when the raw events are watched (see _watch_events)
    # The last usage-only chunk not read yet (see settle): its JSON, or its raw text when
    # its text alone said what it is (see _usage_text); None once read.
    usage_chunk: dict[str, Any] | str | None = None
    final = False  # a usage-only chunk was read: its usage stands
    usage_events_skipped = 0  # usage-only chunks kept from the SDK (raw watching)
    # The event filter of a raw-watched stream (a weak reference), and whether it started.
    events: weakref.ref[Any] | None = None
    started = False
    is_async = False
    stream: weakref.ref[Any] | None = None  # the raw-watched stream
    response: Any = None  # the raw-watched stream's HTTP response (for the SDK's errors)

    def __init__(self, hide_usage_chunk: bool) -> None:
        self.hide_usage_chunk = hide_usage_chunk
        self._unread: list[str] = []  # raw events not read yet (see settle)
        # When each of them came (perf_counter), while the first token is not known: the
        # one that carries it is found when they are read (see _first_token).
        self._stamps: list[float] = []

    def on_event(self, data: str) -> int:
        """Watch one raw event (its ``data``) of a raw-watched stream: :data:`_PASS` it on
        to the SDK, :data:`_SKIP` it (the usage-only chunk), or :data:`_END` (the call is
        recorded: ``[DONE]`` after the usage; nothing more is to be read). The event
        filters (:func:`_filtered`, :func:`_afiltered`) do the same with the chunks inline;
        this is their reference, which the tests hold them to."""
        try:
            if '"delta"' in data:
                self._keep(data)
                return _PASS
            return self.on_other(data)
        except Exception:
            log.warning("agentledger: could not read a stream event", exc_info=True)
        return _PASS

    def on_other(self, data: str) -> int:
        """A raw event that is not a chunk with choices (no ``"delta"``: a quote inside a
        JSON string is escaped): ``[DONE]``, the usage-only chunk, an error, another chunk
        without choices (Azure's content-filter results). See :meth:`on_event`."""
        if data.startswith("[DONE]"):
            if self.usage_chunk is None:
                return _PASS  # the SDK stops there; the filter records as it is closed
            self.finish()
            return _END
        if data.startswith(_ERROR_EVENT):
            self._error_event(data)
            return _PASS
        # The usage-only chunk is known by its text (decoded when the call is recorded, off
        # the caller's thread), or else by decoding it here.
        chunk = data if _usage_text(data) else _usage_event(data)
        if chunk is None:  # not the usage-only chunk: the SDK's (as an error event is)
            self._keep(data)
            return _PASS
        self.usage_chunk = chunk  # the last one wins, as with typed chunks
        self.usage_events_skipped += 1
        return _SKIP

    def _keep(self, data: str) -> None:
        """Keep a raw event to read later (with the time it came, until the first token)."""
        self._unread.append(data)
        call = self.call
        if call is not None and call.first_token_at is None:
            self._stamps.append(time.perf_counter())
        if len(self._unread) >= _READ_EVERY:
            self.settle()

    def _error_event(self, data: str) -> None:
        """An event that starts as an error does: if the SDK raises on it, the call is
        recorded with the SDK's error now (the event filter never sees the exception, and
        may be closed only when the exception's traceback is freed)."""
        error = _stream_error(data, self.response)
        if error is not None:
            self.finish(error=error)
        else:
            self._keep(data)

    def _first_token(self, unread: list[str], stamps: list[float]) -> None:
        """The time the first token came: that of the first kept event carrying one."""
        call = self.call
        if call is None or call.first_token_at is not None:
            return
        for data, at in zip(unread, stamps, strict=False):  # (stamps: unread's first)
            if _carries_token(data):
                call.first_token_at = at
                return

    def close_stream(self) -> Any:
        """A raw-watched stream's ``close``: records the call, then closes the stream as
        the SDK does. The event filter, if it runs, is closed first: it records the call
        knowing the last event it passed on (the SDK may have raised on it: an error
        event). A call not recorded by then is recorded as closed early."""
        events = self._running()
        if events is not None:
            with contextlib.suppress(ValueError):  # (running in another thread)
                events.close()  # records the call (see the filter's GeneratorExit)
        self.finish(last="")
        stream = self.stream() if self.stream is not None else None
        if stream is not None:
            return type(stream).close(stream)
        return None

    async def aclose_stream(self) -> Any:
        """:meth:`close_stream` of an async stream."""
        events = self._running()
        if events is not None:
            with contextlib.suppress(RuntimeError):  # (running elsewhere)
                await events.aclose()
        self.finish(last="")
        stream = self.stream() if self.stream is not None else None
        if stream is not None:
            return await type(stream).close(stream)
        return None

    def _running(self) -> Any:
        """The event filter (a generator), if it has not ended."""
        ref = self.events
        events = ref() if ref is not None else None
        if events is None or getattr(events, "ag_frame" if self.is_async else "gi_frame") is None:
            return None
        return events

    def __del__(self) -> None:
        # A raw-watched call whose stream was dropped before its end without being closed
        # (never iterated, or left with an exception that still held the filter) is
        # recorded when the watcher is freed, as the proxy's ``__del__`` does. The filter
        # holds the watcher: a filter that started and was freed recorded as it was closed
        # (in a reference cycle freed by the garbage collector, its reference is cleared
        # first, and it records as it is closed).
        call = self.call
        if call is None or call.done:
            return
        with contextlib.suppress(Exception):  # (at interpreter exit, say)
            if self.started:
                if self.is_async:
                    return  # (a filter that started records as its event loop closes it)
                events = self._running()
                if events is None:
                    return
                events.close()  # records, knowing its last event
            if not call.done:
                self.finish(last="", note_tools=False)

    def finish(
        self, *, error: BaseException | None = None, last: str | None = None,
        note_tools: bool = True,
    ) -> None:  # fmt: skip
        """Record the call of a raw-watched stream (once; never raises).

        ``last``: the stream's event filter was closed, the last event it passed on being
        ``last``: the caller left the stream, or the SDK stopped at ``[DONE]``, or the SDK
        raised on an error event (recorded as the SDK's error). ``error``: the events failed.
        """
        call = self.call
        if call is None or call.done:
            return
        closed_early = False
        if last is not None:
            if error is None and '"error"' in last:
                try:
                    error = _stream_error(last, self.response)
                except Exception:
                    log.warning("agentledger: could not read an error event", exc_info=True)
            closed_early = error is None and not last.startswith("[DONE]")
        if (error is None and self.usage_chunk is not None and not self.tool_names
                and not _mention_tool_calls(self._unread)):  # fmt: skip
            # The usage came and no tools were asked for: the rest is read by the ledger's
            # writer (which needs no HTTP response: not kept alive until then).
            self.response = None
            call.finish_later(self._read_all)
            return
        finish_stream(call, self, closed_early=closed_early, error=error, note_tools=note_tools)

    def _read_all(self) -> tuple[str | None, Usage, bool]:
        """Model, usage, estimated: everything kept, read (see :meth:`finish`). Never
        raises: what could not be read makes the usage an estimate, and the call is kept."""
        try:
            self.settle()
        except Exception:
            log.warning("agentledger: could not read a stream's events", exc_info=True)
            self.usage, self.complete_usage = None, False
        usage = self.usage
        if usage is None:
            return self.model, Usage(output_tokens=self.tokens_seen), True
        return self.model, usage, not self.complete_usage

    def settle_kept(self) -> tuple[list[str], list[float], bool]:
        """:meth:`settle` for an event filter every :data:`_READ_EVERY` events kept: the
        new lists to keep events and their times in, and whether the first token is still
        to be found (its events are still stamped)."""
        self.settle()
        call = self.call
        return self._unread, self._stamps, call is not None and call.first_token_at is None

    def settle(self) -> None:
        """Read what was kept: the usage-only chunk (named by the first event that names a
        model), then the raw events (tokens seen, tools asked for)."""
        unread = self._unread
        chunk = self.usage_chunk
        if chunk is not None:
            self.usage_chunk = None
            if isinstance(chunk, str):  # known by its text (see _usage_text): decoded now
                chunk = _usage_event(chunk)
                if chunk is None:  # no JSON: the usage is an estimate
                    log.warning("agentledger: could not read a usage chunk (no JSON)")
            for data in unread:
                if self.model is not None:
                    break
                self.model = _raw_model(data)
            if chunk is not None and self.on_usage_event(chunk):
                self.final = True
        if unread:
            self._unread = []  # (new lists: the event filter takes them again)
            stamps = self._stamps
            if stamps:
                self._stamps = []
                self._first_token(unread, stamps)
            self._read_events(unread)

    def _read_events(self, unread: list[str]) -> None:
        final = self.final
        if final and not _mention_tool_calls(unread):
            # The usage-only chunk was read: its usage stands, and the tokens seen (an
            # estimate, wanted only without it) need not be counted: only the tools asked
            # for are still to read, and there are none.
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

    def _read_usage(self, data: str) -> None:
        """The usage of a raw chunk that also has choices (passed on to the caller)."""
        chunk, _ = _decode(data)
        usage = chunk.get("usage") if type(chunk) is dict else None
        if type(usage) is dict:
            self.usage, self.complete_usage = _dict_usage(usage), True

    def on_usage_event(self, data: dict[str, Any]) -> bool:
        """Read the usage-only chunk's JSON (a dict; see :func:`_usage_event`).

        False if it could not be read (logged; the call's usage is then an estimate).
        """
        try:
            usage = _dict_usage(data["usage"])  # a dict (see _usage_event)
            model = self.model if self.model is not None else _model(data)
        except Exception:
            log.warning("agentledger: could not read a usage chunk", exc_info=True)
            return False
        self.model, self.usage, self.complete_usage = model, usage, True
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
        elif self.hide_usage_chunk:
            # The "usage": null the chunk carries only because we asked for the usage: unset
            # again, as it would be (see _without_null_usage; the raw events are cut instead).
            fields_set = getattr(item, "__pydantic_fields_set__", None)
            if type(fields_set) is set:
                fields_set.discard("usage")
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


#: Raw events kept before they are read while the stream runs (see _ChatWatcher.on_event).
_READ_EVERY: Final = 64
# What to do with a raw event (see _ChatWatcher.on_event).
_PASS: Final = 0
_SKIP: Final = 1
_END: Final = 2

# How an error event starts, as OpenAI (and Python) write it; one that starts otherwise is
# recognised when the event filter is closed (see _ChatWatcher.finish).
_ERROR_EVENT: Final = '{"error"'


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


_JSON_BLANKS: Final = " \t\r\n"  # JSON's whitespace


def _decode(data: str) -> tuple[Any, int]:
    """The JSON value of a raw event and where it ends, read from its first non-blank
    character (json.loads, as the SDK's ``sse.json()``, allows blanks before it: an event
    written ``data:  {...}`` keeps one of its spaces). Raises as ``scan_once`` does."""
    start = 0 if data[:1] == "{" else len(data) - len(data.lstrip(_JSON_BLANKS))
    return _SCAN_JSON(data, start)


#: The usage-only chunk's "choices" and "usage" as OpenAI and Python's json.dumps write them
#: (found by :func:`_filtered` without :func:`_usage_text`'s regular expression).
_USAGE_TIGHT: Final = '"choices":[],"usage":{'
_USAGE_SPACED: Final = '"choices": [], "usage": {'
# From the "choices" key of a usage-only chunk on: an empty list, then the usage object.
_USAGE_AFTER_CHOICES: Final = re.compile(
    r'"choices"{0}:{0}\[{0}\]{0},{0}"usage"{0}:{0}\{{'.format(f"[{_JSON_BLANKS}]*")
)


def _usage_text(data: str) -> bool:
    """True if the raw event ``data`` is, by its text alone, the usage-only chunk: an object
    (its first character) with no ``"error"`` anywhere, whose members before
    ``"choices"`` hold no object, list or escape (so the first ``"choices"`` is its own
    key: in JSON text a quote inside a string is escaped), that key an empty list and the
    next, ``"usage"``, an object. That is how OpenAI and the compatible servers write it.

    Such an event is decoded when the call is recorded (see :meth:`_ChatWatcher.settle`),
    by the ledger's writer: this test costs the caller's thread about a third of decoding
    it. An event it cannot tell is decoded at once (:func:`_usage_event`). One that passes
    it but is no JSON (a broken usage chunk) is hidden all the same, as the caller never
    asked for it; its call's usage is then an estimate. The sync event filter
    (:func:`_filtered`) makes the same test inline for the two usual spellings: a change to
    one is a change to both.
    """
    at = data.find('"choices"')
    if at < 0 or '"error"' in data or data[:1] != "{":
        return False
    head = data[1:at]
    if "{" in head or "[" in head or "\\" in head:
        return False
    return _USAGE_AFTER_CHOICES.match(data, at) is not None


def _usage_event(data: str) -> dict[str, Any] | None:
    """The JSON of a usage-only chunk (no choices, a usage object, no error), else None."""
    try:
        chunk, end = _decode(data)
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


#: A chunk's ``"usage": null`` as its last member, as OpenAI and json.dumps write it (see
#: :func:`_without_null_usage`; :func:`_filtered` cuts these inline).
_NULL_USAGE_TAILS: Final = (',"usage":null}', ', "usage": null}')
_NULL_USAGE: Final = (',"usage":null', ', "usage": null')
_NESTING: Final = frozenset("{}[]\\")


def _without_null_usage(data: str) -> str | None:
    """The raw chunk ``data`` less its own ``"usage": null`` member, or None where it has
    none that its text alone shows to be its own.

    Once the usage is asked for, every chunk but the usage-only one carries ``"usage":
    null``. A caller who did not ask for the usage would not have had that member: the
    SDK's chunk would leave ``usage`` unset, and its ``to_dict()``, ``to_json()`` and
    ``model_fields_set`` would say so. So it is cut from the event's text before the SDK
    reads it (which also spares the SDK a field per chunk).

    The member (written as OpenAI or json.dumps write it) is cut when it is preceded by a
    comma and followed by nothing but the object's last brace and members with no brace,
    bracket or escape: such a member is a key of the outermost object. (Its quote follows a
    comma or a space, so it opens a string: a string that held the comma would end there and
    leave ``usage"``, no JSON. With no brace or bracket after it, the object that holds it
    is the one whose brace ends the text.) Anything else is left as it is.
    """
    for member in _NULL_USAGE:
        at = data.rfind(member)
        if at > 0:
            rest = data[at + len(member) :]
            if rest[:1] in (",", "}") and rest[-1:] == "}" and _NESTING.isdisjoint(rest[:-1]):
                return data[:at] + rest
    return None


def _keeps_text(sse: Any, data: str) -> bool:
    """True if the raw event ``sse``, whose ``data`` is ``data``, keeps that text in its own
    ``_data`` (the SDK's ServerSentEvent: its ``data`` is a property giving it), which can
    be set: read directly, a Python call less per event, and cut where it must be."""
    if getattr(sse, "_data", None) is not data:
        return False
    try:
        sse._data = data  # (the same text: can it be set?)
    except Exception:
        return False
    return True


def _cut_null_usage(sse: Any, data: str) -> str:
    """``data``, the raw event ``sse``'s text, less its own ``"usage": null`` (see
    :func:`_without_null_usage`), cut in ``sse`` too where the SDK's event keeps its text in
    ``_data`` (else left as it is)."""
    cut = _without_null_usage(data)
    if cut is None or not _keeps_text(sse, data):
        return data
    sse._data = cut
    return cut


# Delta fields whose non-empty text is generated content (reasoning_content: DeepSeek, vLLM).
_TEXT_KEYS: Final = ('"content"', '"refusal"', '"reasoning_content"')
_BLANK: Final = _JSON_BLANKS + ":"  # and the colon after a key


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
        chunk, _ = _decode(data)
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


def _mention_tool_calls(events: list[str]) -> bool:
    """True if a raw event of ``events`` mentions ``tool_calls`` (then read exactly): one
    search of their text joined by a newline, which no match can straddle."""
    return '"tool_calls"' in "\n".join(events)


def _carries_token(data: str) -> bool:
    """True if a raw chunk carries generated content: text in its delta, or tool calls."""
    start = data.find('"delta"')
    if start < 0:
        return False
    if _has_text(data, start):
        return True
    return '"tool_calls"' in data and _raw_tool_calls(data)[0]


def _stream_error(data: str, response: Any) -> BaseException | None:
    """The error the SDK raises on the raw event ``data`` of a Chat Completions stream (an
    ``APIError`` with the SDK's message; ``response``: the stream's), or None if it raises
    none on it."""
    try:
        chunk, _ = _decode(data)
    except (StopIteration, ValueError):
        return None
    error = chunk.get("error") if type(chunk) is dict else None
    if not error:
        return None
    import openai

    message = error.get("message") if isinstance(error, dict) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return openai.APIError(message=message, request=response.request, body=error)


# SDK stream classes -> True (their ``_iter_events`` is an async generator), False (a
# generator) or None (neither, or no ``close``: not watched raw). See _events_kind.
_EVENT_READERS: dict[type, bool | None] = {}
_MISSING: Any = object()


def _events_kind(cls: type) -> bool | None:
    original = getattr(cls, "_iter_events", None)
    if original is None or not callable(getattr(cls, "close", None)):
        return None
    if inspect.isasyncgenfunction(original):
        return True
    if inspect.isgeneratorfunction(original):
        return False
    return None


def _watch_events(stream: Any, watcher: _ChatWatcher, call: Call) -> bool:
    """Make ``watcher`` watch ``stream``'s raw server-sent events and record its call.

    The SDK's ``Stream``/``AsyncStream`` read their server-sent events from
    ``self._iter_events()`` when iteration starts; an instance attribute of that name giving
    a filter of those events (:func:`_filtered`, :func:`_afiltered`, made here and started
    by the SDK) is used instead. The filter keeps the usage-only chunk from the SDK
    (building a ``ChatCompletionChunk`` of it costs tens of µs, and the caller never sees
    it: it is the chunk we asked for) and records the call when the events end, fail or
    are left. The stream's ``close`` is replaced on the instance by
    :meth:`_ChatWatcher.close_stream`, which records the call first; the watcher's
    ``__del__`` records a stream dropped unread. The stream's ``_decoder`` is replaced by
    agentledger's faster reader of the same events where it is the SDK's stock one
    (:func:`._sse.speed_up`). The caller gets the SDK's own stream object, with no proxy in
    front of each chunk.

    Where the SDK is not shaped like that (another version, a stream already started),
    nothing is installed and the call is watched through a proxy reading the typed chunks
    (see ``_ChatAdapter.wrap_result``). True if installed.

    Nothing agentledger keeps in the stream's ``__dict__`` holds the stream but weakly once
    the filter starts (it removes itself from there as it starts): a stream that held a
    filter holding the stream would be a reference cycle, and the stream (response, decoder,
    buffers) would wait for the garbage collector instead of being freed when the caller
    drops it, as the SDK's own streams are. (Before it starts, the SDK's own unstarted
    generator holds the stream in such a cycle anyway.)
    """
    cls = type(stream)
    is_async = _EVENT_READERS.get(cls, _MISSING)
    if is_async is _MISSING:
        is_async = _EVENT_READERS[cls] = _events_kind(cls)
    if is_async is None:
        return False
    fields = vars(stream)
    if "_iter_events" in fields:
        return False
    watcher.call = call
    response = fields.get("response")  # (the SDK's instance attribute, read directly)
    watcher.response = response if response is not None else getattr(stream, "response", None)
    watcher.stream = weakref.ref(stream)
    speed_up(stream, fields)  # (the stream's events read faster: see _sse.py)
    events: Any
    if is_async:
        watcher.is_async = True
        events = _afiltered(stream._iter_events(), watcher, fields)
        fields["_iter_events"] = events.__aiter__
        fields["close"] = watcher.aclose_stream
    else:
        events = _filtered(stream._iter_events(), watcher, fields)
        fields["_iter_events"] = events.__iter__
        fields["close"] = watcher.close_stream
    watcher.events = weakref.ref(events)
    return True


def _filtered(events: Iterator[Any], w: _ChatWatcher, fields: dict[str, Any]) -> Iterator[Any]:
    """The server-sent ``events`` of a raw-watched sync stream less the usage-only chunk,
    watched by ``w`` (see :meth:`_ChatWatcher.on_event`, inline here for the chunks with
    choices: a call per event costs more than the rest of its work)."""
    fields.pop("_iter_events", None)  # (no reference cycle: see _watch_events)
    w.started = True
    call: Call = w.call  # type: ignore[assignment]  # (set by _watch_events)
    unread, stamps = w._unread, w._stamps
    pending = True  # the first token has not been found (stamp the events kept)
    room = _READ_EVERY
    data = ""
    fast = None  # read the event's text from its attribute (see below)
    try:
        for sse in events:
            try:
                if fast:
                    data = sse._data
                else:
                    data = sse.data
                    if fast is None:
                        # The SDK's ServerSentEvent.data is a property giving its _data: read
                        # directly, a Python call less per event (checked here).
                        fast = _keeps_text(sse, data)
                if '"delta"' in data:  # a chunk with choices (see on_other)
                    if fast:  # its "usage": null cut (see _without_null_usage)
                        if data.endswith(_NULL_USAGE_TAILS):  # (the member last: inline)
                            sse._data = data = data[: data.rindex(",")] + "}"
                        elif '"usage"' in data:
                            data = _cut_null_usage(sse, data)
                    unread.append(data)
                    if pending:
                        stamps.append(perf_counter())
                    room -= 1
                    if not room:
                        unread, stamps, pending = w.settle_kept()
                        room = _READ_EVERY
                elif data.startswith("[DONE]"):  # (w.on_other's end, with fewer calls)
                    if w.usage_chunk is not None:
                        # (_mention_tool_calls, inline: a call less at the stream's end)
                        if w.tool_names or '"tool_calls"' in "\n".join(unread):
                            w.finish()  # (its event id is needed at once: see finish)
                        else:
                            w.response = None  # (see finish)
                            call.finish_later(w._read_all)
                        return  # as the SDK does at [DONE]
                else:
                    # The usage-only chunk as OpenAI and json.dumps space it: _usage_text's
                    # test, inline (a call less per stream; keep the two in step); anything
                    # else through on_other.
                    at = data.find(_USAGE_TIGHT)
                    if at < 0:
                        at = data.find(_USAGE_SPACED)
                    if at > 0 and data[0] == "{" and '"error"' not in data:
                        head = data[1:at]
                        if "{" not in head and "[" not in head and "\\" not in head:
                            w.usage_chunk = data
                            w.usage_events_skipped += 1
                            continue
                    todo = w.on_other(data)
                    unread, stamps = w._unread, w._stamps
                    if todo == _SKIP:
                        continue
                    if '"usage"' in data:  # (a chunk without choices, passed on)
                        _cut_null_usage(sse, data)
            except Exception:
                log.warning("agentledger: could not read a stream event", exc_info=True)
            yield sse
    except GeneratorExit:
        w.finish(last=data)
        raise
    except Exception as exc:
        w.finish(error=exc)
        raise
    except BaseException:  # interrupted: left early
        w.finish(last="")
        raise
    w.finish()


async def _afiltered(
    events: AsyncIterator[Any], w: _ChatWatcher, fields: dict[str, Any]
) -> AsyncIterator[Any]:
    """:func:`_filtered` of an async stream: the chunks with choices watched inline as
    there (a call per event costs more than the rest of its work), every other event
    through ``w.on_other``."""
    fields.pop("_iter_events", None)
    w.started = True
    unread, stamps = w._unread, w._stamps
    pending = True  # the first token has not been found (stamp the events kept)
    room = _READ_EVERY
    data = ""
    fast = None  # the SDK's event keeps its text in _data (see _filtered)
    try:
        async for sse in events:
            data = sse.data
            try:
                if '"delta"' in data:  # a chunk with choices: kept (see _filtered)
                    if data.endswith(_NULL_USAGE_TAILS):  # its "usage": null cut, inline
                        if fast is None:
                            fast = _keeps_text(sse, data)
                        if fast:
                            sse._data = data = data[: data.rindex(",")] + "}"
                    elif '"usage"' in data:
                        data = _cut_null_usage(sse, data)
                    unread.append(data)
                    if pending:
                        stamps.append(perf_counter())
                    room -= 1
                    if not room:
                        unread, stamps, pending = w.settle_kept()
                        room = _READ_EVERY
                    todo = _PASS
                else:
                    todo = w.on_other(data)
                    unread, stamps = w._unread, w._stamps
                    if todo == _PASS and '"usage"' in data:  # (a chunk without choices)
                        _cut_null_usage(sse, data)
            except Exception:
                log.warning("agentledger: could not read a stream event", exc_info=True)
                todo = _PASS
            if todo == _PASS:
                yield sse
            elif todo == _END:
                return  # as the SDK does at [DONE]
    except GeneratorExit:
        w.finish(last=data)
        raise
    except Exception as exc:
        w.finish(error=exc)
        raise
    except BaseException:  # cancelled, interrupted: left early
        w.finish(last="")
        raise
    w.finish()


class _ChatAdapter(Adapter):
    provider = PROVIDER
    endpoint = "chat.completions"
    requests_tools = True

    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], StreamWatcher | None]:
        if kwargs.get("stream") is not True:
            return kwargs, None
        extra = kwargs.get("extra_body")
        if isinstance(extra, Mapping) and "stream_options" in extra:
            # The caller's own stream_options in extra_body are what is sent (the SDK's
            # merge puts them over the argument's): sent as they are, and a usage chunk they
            # ask for there is theirs to see.
            return kwargs, _ChatWatcher(hide_usage_chunk=False)
        options = kwargs.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return kwargs, _ChatWatcher(hide_usage_chunk=False)
        if "extra_headers" in kwargs and raw_response_mode(kwargs) is not None:
            # with_raw_response / with_streaming_response: the caller may read the raw
            # bytes, where an extra usage chunk could not be hidden. Do not ask for it.
            return kwargs, _ChatWatcher(hide_usage_chunk=False)
        if isinstance(options, dict):
            kwargs = {**kwargs, "stream_options": {**options, "include_usage": True}}
            return kwargs, _ChatWatcher(hide_usage_chunk=True)
        # No options of the caller's (None, or the SDK's "not given"): ask for usage through
        # ``extra_body``, merged into the same JSON body past the SDK's request transform
        # (which costs ~10 µs for this one field).
        if extra is None:
            extra = {"stream_options": {"include_usage": True}}
        elif type(extra) is dict:
            extra = {**extra, "stream_options": {"include_usage": True}}
        else:
            return {**kwargs, "stream_options": {"include_usage": True}}, _ChatWatcher(True)
        return {**kwargs, "extra_body": extra}, _ChatWatcher(hide_usage_chunk=True)

    def wrap_result(
        self, result: Any, call: Call, watcher: StreamWatcher | None, parsed: Any
    ) -> Any:
        # The usage-only chunk we asked for on the caller's behalf is never shown to them:
        # it is read from its raw event instead of letting the SDK build a model of it, and
        # the other chunks are watched there too (a few substring tests on the event's text
        # instead of attribute reads on each chunk's model). Else (the SDK is not shaped for
        # it, the caller asked for the usage) the typed chunks are read behind a proxy.
        if type(watcher) is _ChatWatcher and watcher.hide_usage_chunk:
            try:
                if _watch_events(result, watcher, call):
                    return result
            except Exception:
                log.warning("agentledger: could not attach to a %s stream", self.endpoint,
                            exc_info=True)  # fmt: skip
        return super().wrap_result(result, call, watcher, parsed)  # the typed chunks, read

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


def _chat_create_wrapper(
    original: Callable[..., Any], adapter: Adapter, ledger_ref: Callable[[], Ledger | None]
) -> Callable[..., Any]:
    """:func:`sync_wrapper` of Chat Completions ``create``, with the usual streamed call
    (``stream=True``, no ``stream_options`` or ``extra_body``, not a raw response; see
    :func:`_usual_stream`) done in fewer steps on the caller's thread than ``sync_wrapper``
    and ``prepare`` take (each costs about a µs in place; docs/benchmarks.md, session 20).
    Every other call goes through ``sync_wrapper`` itself."""
    generic = sync_wrapper(original, adapter, ledger_ref)

    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        usual = _usual_stream(kwargs, adapter, ledger_ref)
        if usual is None:
            return generic(self, *args, **kwargs)
        call, watcher = usual
        # (_ACTIVE is not set: the SDK's create calls no instrumented method, and wrappers
        # never wrap one another (original_of): nothing could record this call twice.)
        try:
            result = original(self, *args, **kwargs)
        except Exception as exc:
            call.finish(usage=None, error=exc)
            raise
        return _watched(result, call, watcher, adapter)

    create.__agentledger_original__ = original  # type: ignore[attr-defined]
    return create


def _chat_acreate_wrapper(
    original: Callable[..., Any], adapter: Adapter, ledger_ref: Callable[[], Ledger | None]
) -> Callable[..., Any]:
    """:func:`_chat_create_wrapper` of the async client's ``create`` (``_ACTIVE`` not set
    either, for the same reason)."""
    generic = async_wrapper(original, adapter, ledger_ref)

    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        usual = _usual_stream(kwargs, adapter, ledger_ref)
        if usual is None:
            return await generic(self, *args, **kwargs)
        call, watcher = usual
        try:
            result = await original(self, *args, **kwargs)
        except Exception as exc:
            call.finish(usage=None, error=exc)
            raise
        return _watched(result, call, watcher, adapter)

    create.__agentledger_original__ = original  # type: ignore[attr-defined]
    return create


def _usual_stream(
    kwargs: dict[str, Any], adapter: Adapter, ledger_ref: Callable[[], Ledger | None]
) -> tuple[Call, _ChatWatcher] | None:
    """For the usual streamed call (``stream=True``, no ``stream_options`` or ``extra_body``
    of the caller's, not a raw response, not inside another instrumented call), its
    ``Call`` and watcher, the usage asked for in ``kwargs`` (the wrapper's own dict, as
    ``prepare`` does); None for any other call (the general wrapper's)."""
    if (
        kwargs.get("stream") is not True
        or "stream_options" in kwargs
        or "extra_body" in kwargs
        or ("extra_headers" in kwargs and raw_response_mode(kwargs) is not None)
        or _ACTIVE.get()
    ):
        return None
    try:
        call = Call(adapter, kwargs, ledger_ref)
        call.streaming = True
        watcher = _ChatWatcher(True)  # (hide_usage_chunk)
    except Exception:
        return None
    kwargs["extra_body"] = {"stream_options": {"include_usage": True}}
    return call, watcher


def _watched(result: Any, call: Call, watcher: _ChatWatcher, adapter: Adapter) -> Any:
    """The stream ``result`` handed out watched (never raises: unwatched if it must). Its
    raw events are watched here directly (``wrap_result``'s first step: a call less)."""
    try:
        if _watch_events(result, watcher, call):
            return result
    except Exception:
        pass  # (wrap_result tries again, says why, and reads the typed chunks instead)
    return handed_out(adapter, result, call, watcher, None)


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


def _maker(adapter: Adapter, name: str, is_async: bool) -> Callable[..., Any]:
    """What wraps the SDK method ``name`` of ``adapter``'s endpoint."""
    if adapter is _CHAT and name == _CREATE:
        return _chat_acreate_wrapper if is_async else _chat_create_wrapper
    if is_async:
        return async_wrapper
    return sync_wrapper


def _patches() -> Iterator[Patch]:
    for cls, name, adapter, is_async in _targets():
        make = _maker(adapter, name, is_async)
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
        is_async = isinstance(resource, AsyncAPIResource)
        for name in methods:
            original = original_of(type(resource).__dict__.get(name))
            if original is None:
                continue
            wrapper = _maker(adapter, name, is_async)(original, adapter, ledger_ref)
            setattr(resource, name, types.MethodType(wrapper, resource))
    return client
