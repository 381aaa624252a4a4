"""Record every MCP tool call made with the official ``mcp`` SDK.

::

    from agentledger.integrations import mcp as al_mcp

    al_mcp.instrument()               # every mcp.ClientSession in the process
    # or: al_mcp.wrap(session)        # this session (or mcp.Client) only

Each ``call_tool`` records one ``tool`` event: ``name`` = the tool, ``provider="mcp"``, the
duration, the status (a result with ``is_error`` set is ``status="error"``,
``error_type="ToolError"`` and the result's text as the message; an exception is recorded
with its type and message, then re-raised unchanged), the MCP server's name and the call's
arguments as JSON text, redacted (:func:`redact_secrets` unless you pass ``redact=``) and
capped at ``max_argument_bytes``. A tool call made in answer to an instrumented model
response that asked for that tool nests under the model call. See docs/integrations/mcp.md.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import time
import types
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .._ids import new_ids
from ..errors import ConfigError
from ..events import Event
from ..ledger import Ledger
from ..spans import current_span
from ._common import LedgerRef, Patch, Patcher, attr, log, original_of, tool_parent

__all__ = [
    "DEFAULT_MAX_ARGUMENT_BYTES",
    "MAX_ARGUMENT_BYTES",
    "REDACTED",
    "Redactor",
    "instrument",
    "is_instrumented",
    "redact_secrets",
    "uninstrument",
    "wrap",
]

PROVIDER = "mcp"
DEFAULT_MAX_ARGUMENT_BYTES = 4096
# The ceiling for ``max_argument_bytes``: the arguments travel as a JSON string inside the
# event's metadata (64 KiB at most), where escaping can double their size.
MAX_ARGUMENT_BYTES = 16384
REDACTED = "[redacted]"
TRUNCATED = "…[truncated]"
_TRUNCATED_BYTES = len(TRUNCATED.encode())
# Characters of an error result's text passed on: the ledger clips (and marks) what is longer.
MAX_RESULT_TEXT = 8192

Redactor = Callable[[str, Any], Any]
"""``redact(tool_name, arguments) -> arguments``: what may be recorded (None: nothing)."""

# Keys whose values are secrets, after lower-casing and "-" -> "_": passwords, secrets,
# tokens (not token counts such as max_tokens), API keys, authorization headers, ...
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)|secret|token(?!s)|api_?key|authori[sz]ation|^auth$"
    r"|private_?key|credential|cookie"
)

_patcher = Patcher()
# Set while an instrumented call_tool runs: a wrapped mcp.Client calls its session's
# call_tool, which an instrumented SDK also records; the outer wrapper records it, once.
_IN_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "agentledger_mcp_call_active", default=False
)


@dataclass(frozen=True, slots=True)
class _Options:
    max_argument_bytes: int = DEFAULT_MAX_ARGUMENT_BYTES
    redact: Redactor | None = None  # None: redact_secrets


_options = _Options()


# --- arguments ---------------------------------------------------------------------------------
def _is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and _SECRET_KEY.search(key.lower().replace("-", "_")) is not None


def redact_secrets(tool_name: str, arguments: Any) -> Any:
    """The default redaction: values under secret-looking keys become ``"[redacted]"``.

    Keys are matched case-insensitively at any depth (``password``, ``api_key``,
    ``X-Api-Key``, ``access_token``, ``client_secret``, ``Authorization``, ...; counts such
    as ``max_tokens`` are kept). Returns a new structure; ``arguments`` is not changed.
    """
    if isinstance(arguments, dict):
        return {
            key: REDACTED if _is_secret_key(key) else redact_secrets(tool_name, value)
            for key, value in arguments.items()
        }
    if isinstance(arguments, list | tuple):
        return [redact_secrets(tool_name, value) for value in arguments]
    return arguments


def _arguments(name: str, arguments: Any, options: _Options, metadata: dict[str, Any]) -> None:
    """Put the redacted, size-capped arguments (JSON text) into ``metadata``."""
    cap = options.max_argument_bytes
    if cap == 0 or arguments is None:
        return
    redact = options.redact
    if redact is None:
        redact, plain = redact_secrets, arguments  # builds a new structure: no copy needed
    else:
        try:
            # A private copy: a hook that edits it in place must not change the call's dict.
            plain = json.loads(json.dumps(arguments, default=str))
        except Exception:
            metadata["arguments_dropped"] = "not JSON-serialisable"
            return
    try:
        redacted = redact(name, plain)
        if redacted is None:
            return
        text = json.dumps(redacted, ensure_ascii=False, separators=(",", ":"), default=str)
    except Exception:
        log.warning("agentledger: the redact hook failed on a call of MCP tool %r; its "
                    "arguments are not recorded", name, exc_info=True)  # fmt: skip
        metadata["arguments_dropped"] = "redact hook failed"
        return
    data = text.encode()
    if len(data) > cap:
        keep = max(cap - _TRUNCATED_BYTES, 0)
        text = data[:keep].decode(errors="ignore") + TRUNCATED
        metadata["arguments_truncated"] = True
        metadata["arguments_bytes"] = len(data)
    metadata["arguments"] = text


# --- results -----------------------------------------------------------------------------------
def _is_error(result: Any) -> bool:
    # mcp >= 2 names the field ``is_error``; mcp 1.x ``isError``.
    flag = attr(result, "is_error")
    if flag is None:
        flag = attr(result, "isError")
    return flag is True


def _result_text(result: Any) -> str:
    parts: list[str] = []
    size = 0
    for block in attr(result, "content") or ():
        text = attr(block, "text")
        if isinstance(text, str) and text:
            parts.append(text)
            size += len(text)
            if size > MAX_RESULT_TEXT:
                break
    return "\n".join(parts)[: MAX_RESULT_TEXT + 1]


def _server_info(session: Any) -> Any:
    """The server's ``Implementation`` (name, version) if the session knows it."""
    try:
        info = getattr(session, "server_info", None)  # mcp >= 2 (Client and ClientSession)
        if info is None:
            initialized = getattr(session, "initialize_result", None)
            info = attr(initialized, "server_info") or attr(initialized, "serverInfo")
        return info
    except Exception:  # e.g. an mcp.Client that is not connected
        return None


# --- recording ---------------------------------------------------------------------------------
class _ToolCall:
    """One instrumented ``call_tool``: where it sits, when it started, what it was given."""

    __slots__ = ("_t0", "arguments", "name", "parent", "started_at")

    def __init__(self, name: Any, arguments: Any) -> None:
        self.name = name
        self.arguments = arguments
        self.parent = _parent_of(name)
        self.started_at = time.time()
        self._t0 = time.perf_counter()

    def record(
        self,
        session: Any,
        ledger_ref: LedgerRef,
        options: _Options,
        result: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """Record the call; never raises."""
        try:
            self._record(session, ledger_ref, options, result, error)
        except Exception:
            log.warning("agentledger: could not record a call of MCP tool %r", self.name,
                        exc_info=True)  # fmt: skip

    def _record(
        self,
        session: Any,
        ledger_ref: LedgerRef,
        options: _Options,
        result: Any,
        error: BaseException | None,
    ) -> None:
        duration_ms = (time.perf_counter() - self._t0) * 1000.0
        ledger = ledger_ref()
        if ledger is None:
            from .._default import get_ledger

            ledger = get_ledger()
        metadata: dict[str, Any] = {}
        info = _server_info(session)
        server, version = attr(info, "name"), attr(info, "version")
        if isinstance(server, str) and server:
            metadata["mcp_server"] = server
            if isinstance(version, str) and version:
                metadata["mcp_server_version"] = version
        _arguments(self.name, self.arguments, options, metadata)
        status, error_type, message = "ok", None, None
        if error is not None:
            status, error_type = "error", type(error).__name__
            message = str(error) or error_type
            code = getattr(error, "code", None)  # mcp.MCPError: the JSON-RPC error code
            if type(code) is int:
                metadata["mcp_error_code"] = code
        elif _is_error(result):
            status, error_type = "error", "ToolError"
            message = _result_text(result) or "the tool reported an error"
        event_id, trace_id, span_id = new_ids()
        parent_id = None
        if self.parent is not None:
            trace_id, parent_id = self.parent
        ledger.record(
            Event(
                event_id=event_id,
                trace_id=trace_id,
                span_id=span_id,
                parent_id=parent_id,
                started_at=datetime.fromtimestamp(self.started_at, UTC),
                duration_ms=duration_ms,
                kind="tool",
                name=self.name,
                provider=PROVIDER,
                cost_usd=Decimal(0),  # tools are free unless told (as in Ledger.record_tool)
                cost_source="reported",
                status=status,
                error_type=error_type,
                error_message=message,
                metadata=metadata,
            )
        )


def _parent_of(name: Any) -> tuple[str, str] | None:
    """(trace id, parent span id): the model call that asked for this tool, else the open span."""
    try:
        linked = tool_parent(name) if isinstance(name, str) else None
        if linked is not None:
            return linked
        span = current_span()
        return (span.trace_id, span.span_id) if span is not None else None
    except Exception:
        log.warning("agentledger: could not find the parent of an MCP tool call", exc_info=True)
        return None


def _wrapper(
    original: Callable[..., Awaitable[Any]],
    ledger_ref: LedgerRef,
    options_ref: Callable[[], _Options],
) -> Callable[..., Awaitable[Any]]:
    """Wrap an async ``call_tool(self, name, arguments=None, ...)`` to record each call."""

    @functools.wraps(original)
    async def call_tool(
        self: Any, name: Any, arguments: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        if _IN_CALL.get():
            return await original(self, name, arguments, *args, **kwargs)
        try:
            call: _ToolCall | None = _ToolCall(name, arguments)
        except Exception:
            log.warning("agentledger: could not instrument an MCP tool call", exc_info=True)
            call = None
        token = _IN_CALL.set(True)
        try:
            result = await original(self, name, arguments, *args, **kwargs)
        except Exception as exc:
            if call is not None:
                call.record(self, ledger_ref, options_ref(), error=exc)
            raise
        finally:
            _IN_CALL.reset(token)
        if call is not None:
            call.record(self, ledger_ref, options_ref(), result=result)
        return result

    call_tool.__agentledger_original__ = original  # type: ignore[attr-defined]
    return call_tool


def _checked(max_argument_bytes: int, redact: Redactor | None) -> _Options:
    if type(max_argument_bytes) is not int or not 0 <= max_argument_bytes <= MAX_ARGUMENT_BYTES:
        raise ConfigError(
            f"max_argument_bytes must be an int from 0 (record no arguments) to "
            f"{MAX_ARGUMENT_BYTES}, got {max_argument_bytes!r:.40}"
        )
    if redact is not None and not callable(redact):
        raise ConfigError(f"redact must be callable(tool_name, arguments), got {redact!r:.40}")
    return _Options(max_argument_bytes, redact)


def _global_options() -> _Options:
    return _options


def _patches() -> Iterator[Patch]:
    from mcp import ClientSession

    yield (
        ClientSession,
        "call_tool",
        functools.partial(_wrapper, ledger_ref=_patcher.ledger_ref, options_ref=_global_options),
    )


# --- public API --------------------------------------------------------------------------------
def instrument(
    ledger: Ledger | None = None,
    *,
    max_argument_bytes: int = DEFAULT_MAX_ARGUMENT_BYTES,
    redact: Redactor | None = None,
) -> None:
    """Record every ``call_tool`` of every ``mcp.ClientSession`` in this process.

    ``ledger`` defaults to :func:`agentledger.get_ledger`, looked up at call time.
    ``redact(tool_name, arguments)`` returns what may be recorded of a call's arguments (a
    copy; None records none); it defaults to :func:`redact_secrets`. The JSON text is cut at
    ``max_argument_bytes`` (0: arguments are not recorded). Calling again is harmless: the
    method is patched once and the latest ``ledger`` and options are used.
    """
    global _options
    options = _checked(max_argument_bytes, redact)
    _options = options
    _patcher.instrument(ledger, _patches)


def uninstrument() -> None:
    """Put back the SDK's own ``ClientSession.call_tool`` exactly as it was."""
    global _options
    _patcher.uninstrument()
    _options = _Options()


def is_instrumented() -> bool:
    """True between :func:`instrument` and :func:`uninstrument`."""
    return _patcher.is_instrumented()


def wrap(
    session: Any,
    ledger: Ledger | None = None,
    *,
    max_argument_bytes: int = DEFAULT_MAX_ARGUMENT_BYTES,
    redact: Redactor | None = None,
) -> Any:
    """Record the tool calls of this one ``mcp.ClientSession`` (or ``mcp.Client``).

    Returns ``session``. Options as for :func:`instrument`. Wrapping twice is harmless, and
    a call through a wrapped object of an instrumented SDK is recorded once.
    """
    options = _checked(max_argument_bytes, redact)

    def ledger_ref() -> Ledger | None:
        return ledger

    def options_ref() -> _Options:
        return options

    original = original_of(type(session).call_tool)
    wrapper = _wrapper(original, ledger_ref, options_ref)
    session.call_tool = types.MethodType(wrapper, session)
    return session
