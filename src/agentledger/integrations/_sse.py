"""A faster reader of the server-sent events of the usual provider stream, for the streams
agentledger watches.

The OpenAI and Anthropic SDKs read a stream's events with a decoder in pure Python that
splits the bytes into lines with a regular expression and handles every line with several
Python calls (``SSEDecoder.iter_bytes``): a few µs per event. Asking for the usage chunk,
as agentledger does for every stream whose caller did not, makes the provider send one event
more and a longer text in every chunk, and that is most of what watching a stream costs
(``docs/benchmarks.md``). :class:`FastDecoder` pays it back: every event of the usual form,
one ``data: <text>`` line, after an ``event: <name>`` line or not, closed by a blank line
(no ``\\r`` anywhere), which is all OpenAI and Anthropic send, is cut from the bytes with
``bytes.find`` and decoded at once; at the first byte that is not of that form the SDK's own
decoder reads the rest. The events are the
SDK's own ``ServerSentEvent``, the same ones its decoder would give (tested against it on
random streams cut at random places, ``tests/integrations/test_sse.py``), at the same moments.

It implements the SDKs' ``SSEBytesDecoder`` protocol (what a client's
``_make_sse_decoder`` may give) and is put in place of a watched stream's decoder only where
that decoder is the SDK's stock ``SSEDecoder``, before the stream is read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from itertools import chain
from typing import Any

#: The bytes kept waiting for the end of one event before the SDK's decoder takes over (it
#: keeps a long line in a growing buffer; this reader would copy its bytes once per chunk).
_HOLD_LIMIT = 1 << 16


class FastDecoder:
    """Reads events of the usual form itself and hands anything else, with the rest of the
    stream, to ``sdk`` (the SDK's decoder this one stands in for); ``event`` is the SDK's
    ``ServerSentEvent`` class."""

    __slots__ = ("_event", "_sdk")

    def __init__(self, sdk: Any, event: type) -> None:
        self._sdk = sdk
        self._event = event

    def iter_bytes(self, iterator: Iterable[bytes]) -> Iterator[Any]:
        chunks = iter(iterator)
        event = self._event
        held = b""
        for chunk in chunks:
            if held:
                chunk = held + chunk
            events, start, hold = _usual_events(chunk, event)
            yield from events
            if not hold:
                yield from self._sdk.iter_bytes(chain((chunk[start:],), chunks))
                return
            held = chunk[start:]
        if held:
            yield from self._sdk.iter_bytes((held,))

    async def aiter_bytes(self, iterator: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        chunks = aiter(iterator)
        event = self._event
        held = b""
        async for chunk in chunks:
            if held:
                chunk = held + chunk
            events, start, hold = _usual_events(chunk, event)
            for sse in events:
                yield sse
            if not hold:
                async for sse in self._sdk.aiter_bytes(_prepend(chunk[start:], chunks)):
                    yield sse
                return
            held = chunk[start:]
        if held:
            async for sse in self._sdk.aiter_bytes(_prepend(held, chunks)):
                yield sse


def _usual_events(chunk: bytes, event: type) -> tuple[list[Any], int, bool]:
    """The events of the usual form at the start of ``chunk`` (as ``event`` instances), the
    offset after them, and whether what is left there may be held for more bytes (True) or
    goes, with the rest of the stream, to the SDK's decoder (False: not of the usual form, a
    CR anywhere, or too long held).

    The usual form: an optional ``event: <name>`` line (Anthropic's), then one ``data:
    <text>`` line, then a blank line."""
    out: list[Any] = []
    start = 0
    if b"\r" in chunk:  # (a CR ends a line too: the SDK's decoder reads those)
        return out, start, False
    end = chunk.find(b"\n\n")
    while end >= 0:
        if chunk.startswith(b"data: ", start):
            name = None
            at = start
        elif chunk.startswith(b"event: ", start):
            at = chunk.find(b"\n", start, end) + 1
            if not at or not chunk.startswith(b"data: ", at):  # (no data line next)
                return out, start, False
            try:
                name = chunk[start + 7 : at - 1].decode()
            except UnicodeDecodeError:
                return out, start, False
        else:
            return out, start, False
        line = chunk[at + 6 : end]
        if b"\n" in line:  # an event of several lines
            return out, start, False
        try:
            data = line.decode()
        except UnicodeDecodeError:  # (the SDK's decoder raises its own error)
            return out, start, False
        out.append(event(event=name, data=data))
        start = end + 2
        end = chunk.find(b"\n\n", start)
    return out, start, len(chunk) - start <= _HOLD_LIMIT


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


def speed_up(stream: Any, fields: dict[str, Any] | None = None) -> bool:
    """Put a :class:`FastDecoder` in place of an SDK ``stream``'s decoder (``fields``: its
    ``__dict__``, if at hand) if that is its SDK's stock ``SSEDecoder``, unless
    ``AGENTLEDGER_SDK_SSE`` was set when agentledger was imported; True if put. Never
    raises."""
    try:
        cls = type(stream)
        sdk = _SDKS.get(cls, _UNKNOWN)
        if sdk is _UNKNOWN:
            sdk = _SDKS[cls] = _sdk_classes(cls)
        if sdk is None or not ENABLED:
            return False
        if fields is None:
            fields = getattr(stream, "__dict__", None)
            if type(fields) is not dict:
                return False
        decoder = fields.get("_decoder")
        if type(decoder) is not sdk[0]:
            return False
        fields["_decoder"] = FastDecoder(decoder, sdk[1])
        return True
    except Exception:  # (an object of another shape: read by its own decoder)
        return False


#: Off where ``AGENTLEDGER_SDK_SSE`` is set (to 1, say): watched streams keep the SDK's decoder.
ENABLED = not os.environ.get("AGENTLEDGER_SDK_SSE")
# SDK stream classes -> (their SDK's SSEDecoder, its ServerSentEvent), or None where the
# stream class is not one of an SDK shaped like that.
_SDKS: dict[type, tuple[type, type] | None] = {}
_UNKNOWN: Any = object()


def _sdk_classes(cls: type) -> tuple[type, type] | None:
    """The SDK's ``SSEDecoder`` and ``ServerSentEvent`` beside the stream class ``cls``'s
    ``_iter_events`` (in the module that defines it: the SDKs re-export their stream
    classes under another module's name), if that module has both; else None."""
    iter_events = getattr(cls, "_iter_events", None)
    module = sys.modules.get(getattr(iter_events, "__module__", None) or "")
    decoder = getattr(module, "SSEDecoder", None)
    event = getattr(module, "ServerSentEvent", None)
    if isinstance(decoder, type) and isinstance(event, type):
        return decoder, event
    return None
