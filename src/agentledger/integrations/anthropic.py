"""Record every call made with the official ``anthropic`` SDK.

::

    from agentledger.integrations import anthropic as al_anthropic

    al_anthropic.instrument()          # every Anthropic / AsyncAnthropic client
    # or: client = al_anthropic.wrap(Anthropic())   # this client only

Messages ``create`` (sync and async, ``stream=True`` or not), ``parse`` and the
``messages.stream()`` helper each record one ``llm`` event with ``provider="anthropic"``.
Anthropic's ``input_tokens`` exclude cache reads and writes; the ledger's include them
(docs/tokens.md): ``input_tokens = input + cache_read + cache_creation``, 1-hour cache
writes go to ``cache_write_1h_tokens``. ``tool_use`` blocks a response asks for are noted so
that an instrumented tool call answering them nests under the model call. See
docs/integrations/anthropic.md.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ..ledger import Ledger
from ._common import (
    _ACTIVE,
    Adapter,
    AsyncStreamProxy,
    Call,
    LedgerRef,
    Patch,
    Patcher,
    StreamWatcher,
    SyncStreamProxy,
    Usage,
    as_int,
    async_wrapper,
    attr,
    log,
    original_of,
    sync_wrapper,
)

__all__ = ["instrument", "is_instrumented", "message_usage", "uninstrument", "wrap"]

PROVIDER = "anthropic"

_patcher = Patcher()
_STREAM = "stream"
# ``parse`` (structured outputs) posts by itself rather than through ``create``.
_METHODS = ("create", "parse")


def message_usage(usage: Any) -> Usage | None:
    """A Messages ``usage`` object in the ledger's convention."""
    if usage is None:
        return None
    fresh = as_int(attr(usage, "input_tokens"))
    read = as_int(attr(usage, "cache_read_input_tokens"))
    write = as_int(attr(usage, "cache_creation_input_tokens"))
    write_1h = as_int(attr(usage, "cache_creation", "ephemeral_1h_input_tokens"))
    return Usage(
        input_tokens=fresh + read + write,
        output_tokens=as_int(attr(usage, "output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=min(write_1h, write),
    )


def _model(obj: Any) -> str | None:
    model = attr(obj, "model")
    return model if isinstance(model, str) and model else None


def _tool_use_name(block: Any) -> frozenset[str]:
    """The tool a ``tool_use`` content block asks the caller to run (server tools run at
    Anthropic and are ``server_tool_use``)."""
    name = attr(block, "name")
    if attr(block, "type") == "tool_use" and isinstance(name, str) and name:
        return frozenset((name,))
    return frozenset()


class _MessagesWatcher(StreamWatcher):
    """Usage comes in ``message_start`` (input side) and ``message_delta`` (cumulative)."""

    def __init__(self) -> None:
        self.raw: dict[str, Any] = {}

    def _merge(self, usage: Any) -> None:
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                    "cache_creation_input_tokens"):  # fmt: skip
            value = attr(usage, key)
            if type(value) is int:
                self.raw[key] = value
        one_hour = attr(usage, "cache_creation", "ephemeral_1h_input_tokens")
        if type(one_hour) is int:
            self.raw["cache_creation"] = {"ephemeral_1h_input_tokens": one_hour}
        self.usage = message_usage(self.raw)

    def on_item(self, item: Any) -> tuple[bool, bool]:
        # Every event of the SDK has its ``type`` (a plain attribute read); anything else
        # (dicts, other shapes) through attr().
        try:
            kind = item.type
        except AttributeError:
            kind = attr(item, "type")
        if kind == "content_block_delta":  # (the usual event first)
            self.tokens_seen += 1
            return True, True
        if kind == "message_start":
            message = attr(item, "message")
            self.model = _model(message) or self.model
            self._merge(attr(message, "usage"))
        elif kind == "message_delta":
            self._merge(attr(item, "usage"))
            self.complete_usage = True
        elif kind == "content_block_start":
            self.tool_names |= _tool_use_name(attr(item, "content_block"))
        return True, False


class _MessagesAdapter(Adapter):
    provider = PROVIDER
    endpoint = "messages"
    requests_tools = True

    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], StreamWatcher | None]:
        if kwargs.get("stream") is True:
            return kwargs, _MessagesWatcher()
        return kwargs, None

    def extract(self, result: Any) -> tuple[str | None, Usage | None]:
        return _model(result), message_usage(attr(result, "usage"))

    def tool_names(self, result: Any) -> frozenset[str]:
        names: frozenset[str] = frozenset()
        for block in attr(result, "content") or ():
            names |= _tool_use_name(block)
        return names


_MESSAGES = _MessagesAdapter()


# --- the messages.stream() helper -----------------------------------------------------------
def _stream_helper_wrapper(original: Callable[..., Any], ledger_ref: LedgerRef) -> Any:
    """Wrap ``Messages.stream``: the manager's request is timed and its raw stream watched."""

    def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        manager = original(self, *args, **kwargs)
        if _ACTIVE.get():
            return manager
        try:
            _instrument_manager(manager, kwargs, ledger_ref)
        except Exception:
            log.warning("agentledger: could not instrument messages.stream()", exc_info=True)
        return manager

    stream.__wrapped__ = original  # type: ignore[attr-defined]
    stream.__doc__ = original.__doc__
    stream.__name__ = getattr(original, "__name__", "stream")
    stream.__qualname__ = getattr(original, "__qualname__", "stream")
    stream.__agentledger_original__ = original  # type: ignore[attr-defined]
    return stream


def _instrument_manager(manager: Any, kwargs: dict[str, Any], ledger_ref: LedgerRef) -> None:
    for cls in type(manager).__mro__:
        name = f"_{cls.__name__}__api_request"
        if name in vars(manager):
            break
    else:
        log.warning("agentledger: unknown messages.stream() manager %r", type(manager))
        return
    request = vars(manager)[name]

    if callable(request):  # sync: a function that makes the request

        def make_request() -> Any:
            call = Call(_MESSAGES, kwargs, ledger_ref)
            call.streaming = True
            try:
                raw = request()
            except Exception as exc:
                call.finish(usage=None, error=exc)
                raise
            return SyncStreamProxy(raw, call, _MessagesWatcher())

        setattr(manager, name, make_request)
        return

    async def make_request_async(pending: Awaitable[Any] = request) -> Any:
        call = Call(_MESSAGES, kwargs, ledger_ref)
        call.streaming = True
        try:
            raw = await pending
        except Exception as exc:
            call.finish(usage=None, error=exc)
            raise
        return AsyncStreamProxy(raw, call, _MessagesWatcher())

    setattr(manager, name, make_request_async())


def _targets() -> list[tuple[type, bool]]:
    from anthropic.resources.messages.messages import AsyncMessages, Messages

    return [(Messages, False), (AsyncMessages, True)]


def _patches() -> Iterator[Patch]:
    ref = _patcher.ledger_ref
    for cls, is_async in _targets():
        make = async_wrapper if is_async else sync_wrapper
        for name in _METHODS:
            if name in cls.__dict__:  # ``parse`` is missing from older SDKs
                yield cls, name, functools.partial(make, adapter=_MESSAGES, ledger_ref=ref)
        yield cls, _STREAM, functools.partial(_stream_helper_wrapper, ledger_ref=ref)


# --- public API --------------------------------------------------------------------------------
def instrument(ledger: Ledger | None = None) -> None:
    """Record every Messages call of every Anthropic client in this process.

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
    """Record the Messages calls of this one ``Anthropic`` / ``AsyncAnthropic`` client.

    Returns the client. Copies made later with ``client.with_options(...)`` are not wrapped.
    """

    def ledger_ref() -> Ledger | None:
        return ledger

    from anthropic._resource import AsyncAPIResource

    messages = client.messages
    cls = type(messages)
    make = async_wrapper if isinstance(messages, AsyncAPIResource) else sync_wrapper
    for name in _METHODS:
        if name in cls.__dict__:
            wrapper = make(original_of(cls.__dict__[name]), _MESSAGES, ledger_ref)
            setattr(messages, name, types.MethodType(wrapper, messages))
    stream = _stream_helper_wrapper(original_of(cls.__dict__["stream"]), ledger_ref)
    messages.stream = types.MethodType(stream, messages)
    return client
