"""What the integrations share: patching an SDK, timing a call, recording it, watching a stream.

Each provider integration describes its endpoints with an :class:`Adapter` (how to read usage
from a response, how to watch a stream); :func:`sync_wrapper` / :func:`async_wrapper` turn an
SDK method into one that records one ``llm`` event per call, and a :class:`Patcher` keeps
track of what ``instrument()`` replaced so ``uninstrument()`` can put it back. Recording is
fail-open: a problem in agentledger is logged and never reaches the caller, whose result or
exception is passed through unchanged (the same object).

When a model response asks for tools, the call notes it (:func:`tool_parent`), so that a tool
call made afterwards for one of those tools, in the same context, nests under the model call.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextvars import copy_context
from dataclasses import dataclass
from time import perf_counter
from time import time as wall_time
from typing import Any, Final

from .._default import get_ledger
from ..events import DeferredMetadata
from ..ledger import Ledger
from ..spans import _TOOL_REQUEST, Span, ToolRequest, _current_span, tool_parent
from ._sse import speed_up

__all__ = [
    "Adapter",
    "AsyncStreamProxy",
    "Call",
    "Patcher",
    "StreamWatcher",
    "SyncStreamProxy",
    "ToolRequest",
    "Usage",
    "async_wrapper",
    "attr",
    "finish_stream",
    "handed_out",
    "proxied",
    "sync_wrapper",
    "tool_parent",
]

log = logging.getLogger("agentledger.integrations")

# Set while an instrumented call runs, so a call that passes through two wrappers (a
# wrapped client whose class is also instrumented) is recorded once, by the outer one.
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "agentledger_integration_active", default=False
)

LedgerRef = Callable[[], Ledger | None]
# (SDK class, attribute, a function that makes the replacement from the original)
Patch = tuple[type, str, Callable[[Any], Any]]


class Patcher:
    """What one integration's ``instrument()`` replaced, so ``uninstrument()`` can undo it.

    Instrumenting twice patches once (the latest ``ledger`` is used); uninstrumenting puts
    back the very objects that were in the classes' ``__dict__``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._patched: list[tuple[type, str, Any]] = []  # (class, attribute, the original)
        self.ledger: Ledger | None = None

    def ledger_ref(self) -> Ledger | None:
        """The ledger given to ``instrument()`` (None: the default ledger, at call time)."""
        return self.ledger

    def instrument(self, ledger: Ledger | None, patches: Callable[[], Iterable[Patch]]) -> None:
        """Use ``ledger`` from now on; apply ``patches()`` unless they are applied already."""
        with self._lock:
            self.ledger = ledger
            if self._patched:
                return
            done: list[tuple[type, str, Any]] = []
            try:
                for cls, name, make in patches():
                    original = cls.__dict__[name]
                    setattr(cls, name, make(original))
                    done.append((cls, name, original))
            except BaseException:
                for cls, name, original in reversed(done):
                    setattr(cls, name, original)
                raise
            self._patched.extend(done)

    def uninstrument(self) -> None:
        """Put back the SDK's own attributes exactly as they were."""
        with self._lock:
            for cls, name, original in reversed(self._patched):
                setattr(cls, name, original)
            self._patched.clear()
            self.ledger = None

    def is_instrumented(self) -> bool:
        return bool(self._patched)


# Tool requests (``ToolRequest``, ``tool_parent``) live in agentledger.spans, so that
# ``record_tool`` and tool spans link to the model call that asked for them too.


_MISSING: Any = object()


def attr(obj: Any, *path: str) -> Any:
    """``obj.a.b`` (or ``obj["a"]["b"]``), None when any step is missing.

    SDK responses are pydantic models: a field is read from the instance ``__dict__`` and an
    undeclared one from ``__pydantic_extra__``, because a plain ``getattr`` miss goes through
    pydantic's ``__getattr__`` and an AttributeError (~1.5 µs, many per streamed call).
    """
    for name in path:
        if obj is None:
            return None
        if isinstance(obj, dict):
            obj = obj.get(name)
            continue
        fields = getattr(obj, "__dict__", None)
        if fields is not None:
            value = fields.get(name, _MISSING)
            if value is not _MISSING:
                obj = value
                continue
            extra = getattr(obj, "__pydantic_extra__", None)
            if extra is not None and name in extra:
                obj = extra[name]
                continue
            known = _CLASS_ATTR.get((type(obj), name))
            if known is None:
                known = _CLASS_ATTR[(type(obj), name)] = any(
                    name in klass.__dict__ for klass in type(obj).__mro__
                )
            if not known:  # no field, no extra, no property: a miss without the exception
                return None
        obj = getattr(obj, name, None)
    return obj


# (class, name) -> whether the class (or a base) defines ``name`` (a property, a method).
_CLASS_ATTR: dict[tuple[type, str], bool] = {}


def as_int(value: Any) -> int:
    """A token count from a provider field: ints only; anything else (None, mocks) is 0."""
    return value if type(value) is int and value >= 0 else 0


@dataclass(slots=True)
class Usage:
    """Token usage in the ledger's convention (docs/tokens.md)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0


class StreamWatcher:
    """Watches a stream's items: which to pass on, when the first token came, the usage."""

    model: str | None = None
    usage: Usage | None = None
    complete_usage: bool = False  # True once the provider's final usage has been seen
    # Content-bearing items seen: the output estimate when the usage is missing (a watcher
    # may stop counting once the provider's final usage has come).
    tokens_seen: int = 0
    tool_names: frozenset[str] = frozenset()  # tools the streamed response asks for

    def on_item(self, item: Any) -> tuple[bool, bool]:
        """Return (pass the item to the caller, the item carries generated content)."""
        return True, False

    def settle(self) -> None:
        """Finish reading what was seen so far (a hook: called before the call is recorded)."""


class Adapter:
    """One SDK endpoint: what to record and how to read it."""

    provider: str = ""
    endpoint: str = ""
    # Responses can ask for tools: each finished call replaces the context's tool request.
    requests_tools: bool = False

    def prepare(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], StreamWatcher | None]:
        """The request's kwargs (a new dict if changed: ``kwargs`` itself is left as it is)
        and a watcher if the call streams."""
        return kwargs, None

    def extract(self, result: Any) -> tuple[str | None, Usage | None]:
        """Model and usage from a non-streaming response (None when unknown)."""
        return None, None

    def tool_names(self, result: Any) -> frozenset[str]:
        """The tools a non-streaming response asks the caller to run."""
        return frozenset()

    def read(self, result: Any) -> tuple[str | None, Usage | None, frozenset[str]]:
        """Model, usage and the tools asked for, of a non-streaming response (one pass)."""
        model, usage = self.extract(result)
        try:
            tools = self.tool_names(result) if self.requests_tools else _NO_TOOLS
        except Exception:
            log.warning("agentledger: could not read the tool calls of a %s response",
                        self.endpoint, exc_info=True)  # fmt: skip
            tools = _NO_TOOLS
        return model, usage, tools

    def wrap_result(
        self, result: Any, call: Call, watcher: StreamWatcher | None, parsed: Any
    ) -> Any:
        """Record a finished call or wrap its stream; ``parsed``: the response body."""
        if type(result).__name__ in _API_RESPONSES and _unread_streamed_response(result):
            return _record_on_parse(self, result, call, watcher)
        if watcher is not None:
            proxy = proxied(result, call, watcher)
            if proxy is not None:
                return proxy
            call.finish(usage=None, estimated=True, extra={"usage_unavailable": True})
            return result
        model, usage, tools = self.read(parsed)
        if usage is None:
            call.finish(model=model, usage=None, estimated=True, extra={"usage_unavailable": True},
                        tool_names=tools)  # fmt: skip
        else:
            call.finish(model=model, usage=usage, tool_names=tools)
        return result


_NO_TOOLS: Final[frozenset[str]] = frozenset()
# The SDKs' raw-response wrappers (``with_raw_response`` / ``with_streaming_response``).
_API_RESPONSES: Final = ("APIResponse", "AsyncAPIResponse")
_RAW_RESPONSES: Final = ("LegacyAPIResponse", "APIResponse", "AsyncAPIResponse")


def proxied(result: Any, call: Call, watcher: StreamWatcher) -> _StreamProxyBase | None:
    """``result`` behind a proxy that reads its items, if it is an SDK stream; else None."""
    if not hasattr(result, "response"):
        return None
    if hasattr(result, "__iter__"):
        return SyncStreamProxy(result, call, watcher)
    if hasattr(result, "__aiter__"):
        return AsyncStreamProxy(result, call, watcher)
    return None


RAW_RESPONSE_HEADER: Final = "X-Stainless-Raw-Response"


def raw_response_mode(kwargs: dict[str, Any]) -> str | None:
    """``"true"`` (with_raw_response) or ``"stream"`` (with_streaming_response), else None."""
    headers = kwargs.get("extra_headers")
    if isinstance(headers, dict):
        mode = headers.get(RAW_RESPONSE_HEADER)
        return mode if isinstance(mode, str) else None
    return None


def _unread_streamed_response(result: Any) -> bool:
    """A ``with_streaming_response`` result: the body is still the caller's to read."""
    if type(result).__name__ not in _API_RESPONSES:
        return False
    headers = attr(result, "http_response", "request", "headers")
    return headers is not None and headers.get(RAW_RESPONSE_HEADER) == "stream"


def _record_on_parse(
    adapter: Adapter, response: Any, call: Call, watcher: StreamWatcher | None
) -> Any:
    """Record a ``with_streaming_response`` call when its body is parsed, else on close.

    ``response.parse()`` gives the usage of a plain response, or a stream that is watched
    like any other; a caller who reads the raw bytes instead gets an event with
    ``usage_unavailable`` when the response closes (the context manager's exit).
    """
    parse, close = response.parse, response.close
    watched: list[_StreamProxyBase] = []

    def parsed(value: Any) -> Any:
        try:
            proxy = None if watcher is None else proxied(value, call, watcher)
            if proxy is not None:
                watched.append(proxy)
                return proxy
            if not call.done:
                adapter.wrap_result(value, call, None, value)
        except Exception:
            log.warning("agentledger: could not record a %s call", adapter.endpoint,
                        exc_info=True)  # fmt: skip
        return value

    def closed() -> None:
        if watched:
            watched[0]._al_finish(closed_early=True)  # no-op once the stream ended
        elif not call.done:
            call.finish(usage=None, estimated=True, extra={"usage_unavailable": True})

    if inspect.iscoroutinefunction(parse):

        async def aparse(*args: Any, **kwargs: Any) -> Any:
            return parsed(await parse(*args, **kwargs))

        async def aclose() -> None:
            try:
                await close()
            finally:
                closed()

        response.parse, response.close = aparse, aclose
    else:

        def sparse(*args: Any, **kwargs: Any) -> Any:
            return parsed(parse(*args, **kwargs))

        def sclose() -> None:
            try:
                close()
            finally:
                closed()

        response.parse, response.close = sparse, sclose
    return response


def _raw_body_read(result: Any) -> bool:
    """A ``with_raw_response`` result whose body was read (not ``with_streaming_response``)."""
    if type(result).__name__ not in _RAW_RESPONSES:
        return False
    http = attr(result, "http_response")
    headers = attr(http, "request", "headers")
    if headers is None or attr(http, "is_closed") is not True:
        return False  # with_streaming_response: the body is the caller's to read
    mode = headers.get("X-Stainless-Raw-Response")
    return mode is not None and mode != "stream"


def _parsed(result: Any) -> Any:
    """The parsed body of a ``with_raw_response`` result (cached by the SDK), else result."""
    if _raw_body_read(result) and not inspect.iscoroutinefunction(result.parse):
        try:
            return result.parse()
        except Exception:
            return None
    return result


async def _aparsed(result: Any) -> Any:
    """:func:`_parsed` for async clients, whose raw responses parse asynchronously."""
    if _raw_body_read(result) and inspect.iscoroutinefunction(result.parse):
        try:
            return await result.parse()
        except Exception:
            return None
    return _parsed(result)


class Call:
    """One instrumented call: its timing, its context and what it asked for."""

    __slots__ = (
        "_ctx", "_ended", "_ledger_ref", "_read", "_t0", "adapter", "done",
        "first_token_at", "request_model", "started_at", "streaming",
    )  # fmt: skip

    _read: Callable[[], tuple[str | None, Usage, bool]] | None  # (see finish_later)
    _ended: float

    def __init__(self, adapter: Adapter, kwargs: dict[str, Any], ledger_ref: LedgerRef) -> None:
        self.adapter = adapter
        model = kwargs.get("model")
        self.request_model: str | None = model if isinstance(model, str) and model else None
        self._ledger_ref = ledger_ref
        # Attribution and the parent span are taken where the call was made, even when a
        # stream is finished later in another thread or task (the span: see _tool_request).
        self._ctx = copy_context()
        self.started_at = wall_time()
        self._t0 = perf_counter()
        self.first_token_at: float | None = None
        self.streaming = False
        self.done = False

    def __call__(self) -> tuple[Any, ...]:
        """The ledger's row arguments of a call recorded by :meth:`finish_later`, with the
        model, usage and whether it is estimated that its ``read()`` gives (called by the
        ledger's writer: the call itself is the record's arguments, nothing more is made)."""
        read = self._read
        assert read is not None, "a call's row is built once"
        # The reader (the stream watcher's) holds this call: the cycle is broken here, so
        # both are freed by reference counting once the row is built, not by the garbage
        # collector on whatever thread next crosses its threshold.
        self._read = None
        return self._args(*read(), None, None, self._ended)

    def ledger(self) -> Ledger:
        ledger = self._ledger_ref()
        if ledger is None:
            ledger = get_ledger()
        return ledger

    def finish(
        self,
        *,
        model: str | None = None,
        usage: Usage | None,
        estimated: bool = False,
        error: BaseException | None = None,
        extra: dict[str, Any] | None = None,
        tool_names: frozenset[str] = frozenset(),
        note_tools: bool = True,
    ) -> None:
        """Record the call once; never raises.

        For an endpoint that can ask for tools, also note in the current context which
        tools it asked for (``tool_names``; none replaces an older request) unless
        ``note_tools`` is false (a stream finished by the garbage collector, whose context
        is not the caller's).
        """
        if self.done:
            return
        self.done = True
        adapter = self.adapter
        event_id: str | None = None
        try:
            # The event id is needed here only to link the tool calls a response asked for.
            event_id = self._record(model, usage, estimated, error, extra, bool(tool_names))
        except Exception:
            log.warning("agentledger: could not record a %s call", adapter.endpoint,
                        exc_info=True)  # fmt: skip
        if note_tools and adapter.requests_tools:
            try:
                if event_id is not None and tool_names:
                    _TOOL_REQUEST.set(self._tool_request(event_id, tool_names))
                elif _TOOL_REQUEST.get() is not None:  # (setting None over None: no change)
                    _TOOL_REQUEST.set(None)
            except Exception:
                log.warning("agentledger: could not note the tool calls of a %s call",
                            adapter.endpoint, exc_info=True)  # fmt: skip

    def finish_later(self, read: Callable[[], tuple[str | None, Usage, bool]]) -> None:
        """Record the call once, with the model, usage and whether it is estimated that
        ``read()`` gives when the ledger's writer builds the row (off the caller's thread;
        see :meth:`Ledger._record_later`). For a call that asked for no tools (no event id
        is needed to link them); never raises."""
        if self.done:
            return
        self.done = True
        self._ended = perf_counter()
        self._read = read
        try:
            self.ledger()._record_later(self._ctx, self)
        except Exception:
            log.warning("agentledger: could not record a %s call", self.adapter.endpoint,
                        exc_info=True)  # fmt: skip
        if self.adapter.requests_tools and _TOOL_REQUEST.get() is not None:
            _TOOL_REQUEST.set(None)  # this call asked for none

    def _tool_request(self, event_id: str, names: frozenset[str]) -> ToolRequest:
        # The ledger gives an event the ids of its UUIDv7 (see agentledger._ids.new_ids): the
        # span id is its low 64 bits; the trace is the enclosing span's, else the whole UUID.
        hex_ = uuid.UUID(event_id).hex
        outer: Span | None = self._ctx.get(_current_span)  # the span the call was made in
        return ToolRequest(
            span_id=hex_[16:],
            trace_id=outer.trace_id if outer is not None else hex_,
            names=names,
            outer_span_id=outer.span_id if outer is not None else None,
        )

    def _record(
        self,
        model: str | None,
        usage: Usage | None,
        estimated: bool,
        error: BaseException | None,
        extra: dict[str, Any] | None,
        want_id: bool = True,
    ) -> str | None:
        """Record the call; its event id if ``want_id``, else None: the row is then built by
        the ledger's writer (:meth:`Ledger._record_later`), off the caller's thread."""
        args = self._args(model, usage, estimated, error, extra, time.perf_counter())
        ledger = self.ledger()
        if not want_id:
            ledger._record_later(self._ctx, args)
            return None
        return self._ctx.run(ledger._record_args, args)

    def _args(
        self,
        model: str | None,
        usage: Usage | None,
        estimated: bool,
        error: BaseException | None,
        extra: dict[str, Any] | None,
        ended: float,
    ) -> tuple[Any, ...]:
        """The ledger's row arguments (``Ledger._row``) of the call, ended at ``ended``
        (a ``time.perf_counter()``)."""
        duration_ms = (ended - self._t0) * 1000.0
        adapter = self.adapter
        request_model = self.request_model
        # Built here from JSON-safe values, so the ledger's writer serialises it (off this
        # thread); a request model too long to be sure of the size limit goes the usual way.
        if request_model is None:
            metadata: dict[str, Any] = DeferredMetadata()
            metadata["endpoint"] = adapter.endpoint
        else:
            metadata = DeferredMetadata() if len(request_model) <= 10_000 else {}
            metadata["endpoint"] = adapter.endpoint
            metadata["request_model"] = request_model
        if self.streaming:
            metadata["stream"] = True
            if self.first_token_at is not None:
                metadata["ttft_ms"] = round((self.first_token_at - self._t0) * 1000.0, 3)
        if estimated:
            metadata["usage_estimated"] = True
        if extra:
            metadata.update(extra)
        u = _NO_USAGE if usage is None else usage
        if error is None:
            status, error_type, error_message = "ok", None, None
        else:
            status_code = getattr(error, "status_code", None)
            if type(status_code) is int:
                metadata["http_status"] = status_code
            status, error_type = "error", type(error).__name__
            error_message = str(error) or error_type
        model = model or request_model or "unknown"
        return (
            "llm", model, adapter.provider, model, u.input_tokens, u.output_tokens,
            u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens,
            u.cache_write_1h_tokens, duration_ms, None, status, error_type, error_message,
            None, None, None, None, None, None, metadata, self.started_at, None,
        )  # fmt: skip


_NO_USAGE: Final = Usage()  # read only


def sync_wrapper(
    original: Callable[..., Any], adapter: Adapter, ledger_ref: LedgerRef
) -> Callable[..., Any]:
    """Wrap a sync SDK method (``self`` first) so each call records one event."""

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _ACTIVE.get():
            return original(self, *args, **kwargs)
        try:
            call = Call(adapter, kwargs, ledger_ref)
            new_kwargs, watcher = adapter.prepare(kwargs)
            call.streaming = watcher is not None
        except Exception:
            log.warning("agentledger: could not instrument a %s call", adapter.endpoint,
                        exc_info=True)  # fmt: skip
            return original(self, *args, **kwargs)
        token = _ACTIVE.set(True)
        try:
            result = original(self, *args, **new_kwargs)
        except Exception as exc:
            call.finish(usage=None, error=exc)
            raise
        finally:
            _ACTIVE.reset(token)
        try:
            if watcher is not None:
                return adapter.wrap_result(result, call, watcher, None)
            if type(result).__name__ in _RAW_RESPONSES:  # with_raw_response: its body
                return adapter.wrap_result(result, call, None, _parsed(result))
            return adapter.wrap_result(result, call, None, result)
        except Exception:
            log.warning("agentledger: could not record a %s call", adapter.endpoint,
                        exc_info=True)  # fmt: skip
            return result

    wrapper.__agentledger_original__ = original  # type: ignore[attr-defined]
    return wrapper


def async_wrapper(
    original: Callable[..., Awaitable[Any]], adapter: Adapter, ledger_ref: LedgerRef
) -> Callable[..., Awaitable[Any]]:
    """Wrap an async SDK method (``self`` first) so each call records one event."""

    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _ACTIVE.get():
            return await original(self, *args, **kwargs)
        try:
            call = Call(adapter, kwargs, ledger_ref)
            new_kwargs, watcher = adapter.prepare(kwargs)
            call.streaming = watcher is not None
        except Exception:
            log.warning("agentledger: could not instrument a %s call", adapter.endpoint,
                        exc_info=True)  # fmt: skip
            return await original(self, *args, **kwargs)
        token = _ACTIVE.set(True)
        try:
            result = await original(self, *args, **new_kwargs)
        except Exception as exc:
            call.finish(usage=None, error=exc)
            raise
        finally:
            _ACTIVE.reset(token)
        try:
            parsed = await _aparsed(result) if watcher is None else None
        except Exception:
            parsed = None
        return handed_out(adapter, result, call, watcher, parsed)

    wrapper.__agentledger_original__ = original  # type: ignore[attr-defined]
    return wrapper


def handed_out(
    adapter: Adapter, result: Any, call: Call, watcher: StreamWatcher | None, parsed: Any
) -> Any:
    """``adapter.wrap_result(...)``, or ``result`` as it is (the failure logged) if that
    raises: what an instrumented call hands back to its caller."""
    try:
        return adapter.wrap_result(result, call, watcher, parsed)
    except Exception:
        log.warning("agentledger: could not record a %s call", adapter.endpoint,
                    exc_info=True)  # fmt: skip
        return result


def original_of(fn: Any) -> Any:
    """The SDK function under any agentledger wrapper."""
    while hasattr(fn, "__agentledger_original__"):
        fn = fn.__agentledger_original__
    return fn


# --- streams --------------------------------------------------------------------------------
def finish_stream(
    call: Call,
    watcher: StreamWatcher,
    *,
    closed_early: bool = False,
    error: BaseException | None = None,
    note_tools: bool = True,
) -> None:
    """Record a streamed call (once) with what ``watcher`` saw; never raises.

    ``closed_early``: the caller left the stream before its end; ``error``: the stream
    failed (what was read is kept, marked ``partial``). A usage the provider never sent is
    estimated from the content-bearing items seen.
    """
    if call.done:
        return
    try:
        watcher.settle()
        usage = watcher.usage
        estimated = not watcher.complete_usage
        if usage is None:
            usage = Usage(output_tokens=watcher.tokens_seen)
        extra: dict[str, Any] | None = None
        if closed_early and estimated:
            extra = {"stream_closed_early": True}
        if error is not None:
            extra = {**(extra or {}), "partial": True}
        call.finish(
            model=watcher.model, usage=usage, estimated=estimated, error=error, extra=extra,
            tool_names=watcher.tool_names, note_tools=note_tools,
        )  # fmt: skip
    except Exception:
        call.finish(usage=None, estimated=True, note_tools=note_tools)


class _StreamProxyBase:
    """Stands in for an SDK stream object: same class (``isinstance`` holds), same attributes."""

    __slots__ = ("_al_call", "_al_inner", "_al_iter", "_al_watcher")

    def __init__(self, inner: Any, call: Call, watcher: StreamWatcher) -> None:
        speed_up(inner)  # (its events read faster: see _sse.py)
        object.__setattr__(self, "_al_inner", inner)
        object.__setattr__(self, "_al_call", call)
        object.__setattr__(self, "_al_watcher", watcher)
        object.__setattr__(self, "_al_iter", None)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(object.__getattribute__(self, "_al_inner"))

    def __getattr__(self, name: str) -> Any:
        # object.__getattribute__: no recursion if the proxy was never initialised (a copy)
        return getattr(object.__getattribute__(self, "_al_inner"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._al_inner, name, value)

    def __repr__(self) -> str:
        return repr(self._al_inner)

    def _al_generator(self) -> Any:
        raise NotImplementedError

    def _al_get_iter(self) -> Any:
        it = self._al_iter
        if it is None:
            it = self._al_generator()
            object.__setattr__(self, "_al_iter", it)
        return it

    def _al_read(self, item: Any) -> bool:
        """Watch one item of the stream (its first token timed); True to pass it on."""
        watcher: StreamWatcher = self._al_watcher
        try:
            passed, token = watcher.on_item(item)
        except Exception:
            log.warning("agentledger: could not read a stream item", exc_info=True)
            return True
        if token:
            call = self._al_call
            if call.first_token_at is None:
                call.first_token_at = time.perf_counter()
        return passed

    def _al_finish(
        self,
        *,
        closed_early: bool = False,
        error: BaseException | None = None,
        note_tools: bool = True,
    ) -> None:
        finish_stream(self._al_call, self._al_watcher, closed_early=closed_early, error=error,
                      note_tools=note_tools)  # fmt: skip

    def __del__(self) -> None:
        try:
            if not self._al_call.done:
                self._al_finish(closed_early=True, note_tools=False)
        except Exception:
            pass


class SyncStreamProxy(_StreamProxyBase):
    """A sync SDK stream that records its call when it ends, fails or is closed."""

    __slots__ = ()

    def _al_generator(self) -> Iterator[Any]:
        read = self._al_read
        try:
            for item in self._al_inner:
                if read(item):
                    yield item
        except GeneratorExit:
            self._al_finish(closed_early=True)
            raise
        except Exception as exc:
            self._al_finish(error=exc)
            raise
        self._al_finish()

    def __iter__(self) -> Iterator[Any]:
        return self._al_get_iter()  # type: ignore[no-any-return]

    def __next__(self) -> Any:
        return next(self._al_get_iter())

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._al_finish(closed_early=True)
        try:
            self._al_inner.close()
        finally:
            it = self._al_iter
            if it is not None:
                it.close()


class AsyncStreamProxy(_StreamProxyBase):
    """An async SDK stream that records its call when it ends, fails or is closed."""

    __slots__ = ()

    async def _al_generator(self) -> AsyncIterator[Any]:
        read = self._al_read
        try:
            async for item in self._al_inner:
                if read(item):
                    yield item
        except GeneratorExit:
            self._al_finish(closed_early=True)
            raise
        except Exception as exc:
            self._al_finish(error=exc)
            raise
        self._al_finish()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._al_get_iter()  # type: ignore[no-any-return]

    async def __anext__(self) -> Any:
        return await self._al_get_iter().__anext__()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._al_finish(closed_early=True)
        try:
            await self._al_inner.close()
        finally:
            it = self._al_iter
            if it is not None:
                await it.aclose()
