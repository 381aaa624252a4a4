"""The ledger: record events exactly, attribute them, price them, keep them.

Hot path (the caller's thread): validate, take attribution from the scope, price from the
cached plan, build a row tuple, append it to a bounded buffer. Nothing else. A background
writer drains the buffer every ``flush_interval_s`` (or sooner when a batch is full),
folds rows into the live aggregates, hands them to sinks and writes them to the store in
idempotent batches, retrying with backoff while the store is down.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import inspect
import logging
import os
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import FrameType
from typing import Any, Final, Literal, ParamSpec, TypeVar

from ._aggregates import DIMENSIONS, Aggregates, Totals, View
from ._ids import new_ids
from .errors import AgentledgerError, ConfigError, InvalidEvent, StoreError, StoreUnavailable
from .events import (
    KINDS,
    MAX_DURATION_MS,
    MAX_NAME_LEN,
    MAX_TOKENS,
    DeferredMetadata,
    Event,
    Row,
    check_cost,
    check_duration_ms,
    check_started_at,
    check_str,
    check_tags,
    check_tokens,
    check_usage_subsets,
    clip_error_message,
    dump_json,
    encode_deferred,
    validate_event,
)
from .pricing import PriceBook
from .scope import _current, scope
from .spans import _TOOL_REQUEST, Span, _current_span, tool_parent
from .store import Store, open_store

__all__ = ["Ledger", "LedgerStats"]

log = logging.getLogger("agentledger")
P = ParamSpec("P")
R = TypeVar("R")
Durability = Literal["batched", "sync"]
Overflow = Literal["drop_new", "block"]
Sink = Callable[[Sequence[Event]], None]

_LIVE: weakref.WeakSet[Ledger] = weakref.WeakSet()
_SIGTERM_INSTALLED = False
_EXIT_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """Counters that say what happened to every record (nothing is lost silently)."""

    recorded: int  # accepted by record_* (valid, not dropped)
    written: int  # rows committed to the store (new or already present)
    rejected: int  # invalid input, never counted anywhere
    dropped: int  # valid but discarded: queue full, or recorded after close()
    pending: int  # accepted and not yet written
    write_errors: int  # failed write attempts (each retried)
    sink_errors: int
    unpriced: int  # calls whose model had no known price
    last_error: str | None


#: ``Ledger._row``'s arguments, or a function that gives them (read when the row is built).
LaterArgs = tuple[Any, ...] | Callable[[], tuple[Any, ...]]


class _Later(tuple[contextvars.Context, LaterArgs]):
    """A record whose row the writer builds: ``Ledger._row(*args)`` run in ``ctx``, as the
    pair ``(ctx, args)``.

    See :meth:`Ledger._record_later`. It waits in the buffer like a row until the writer (or
    a query, which drains first) builds it. A tuple (rows are plain tuples: ``type(item) is
    _Later`` tells them apart), so that making one runs no Python ``__init__``: it is made
    on the caller's thread for every call the integrations record.
    """

    __slots__ = ()

    def build(self, row: Callable[..., Row]) -> Row:
        ctx, args = self
        if type(args) is not tuple:
            args = args()  # type: ignore[operator]
        return ctx.run(row, *args)


class Ledger:
    """Records events with attribution and exact cost, and keeps them in a store.

    ``Ledger("sqlite:///usage.db")`` or ``Ledger("postgresql://...")``; ``Ledger()`` keeps
    live totals only (nothing durable). Options are keyword-only; see docs/configuration.md.
    """

    _last_error: str | None

    def __init__(
        self,
        url: str | None = None,
        *,
        store: Store | None = None,
        durability: Durability = "batched",
        flush_interval_s: float = 1.0,
        batch_size: int = 5_000,
        max_queue: int = 200_000,
        overflow: Overflow = "drop_new",
        block_timeout_s: float = 1.0,
        strict: bool = False,
        prices: PriceBook | None = None,
        handle_signals: bool = True,
    ) -> None:
        if durability not in ("batched", "sync"):
            raise ConfigError(f"durability must be 'batched' or 'sync', got {durability!r}")
        if overflow not in ("drop_new", "block"):
            raise ConfigError(f"overflow must be 'drop_new' or 'block', got {overflow!r}")
        _positive("flush_interval_s", flush_interval_s)
        _positive("batch_size", batch_size)
        _positive("max_queue", max_queue)
        if url is not None and store is not None:
            raise ConfigError("give either url= or store=, not both")
        self.store: Store | None = store
        self._url = url  # set while the store is still to be opened (see _open_store)
        self.prices = prices if prices is not None else PriceBook()
        self.strict = strict
        self.durability = durability
        self._sync = durability == "sync"
        self._interval = float(flush_interval_s)
        self._batch_size = int(batch_size)
        self._max_queue = int(max_queue)
        self._overflow = overflow
        self._block_timeout = float(block_timeout_s)
        self._sinks: list[Sink] = []
        self._aggregates = Aggregates()
        self._init_state()
        if url is not None:
            self._open_store(raise_unavailable=strict)
        _LIVE.add(self)
        if handle_signals:
            _install_sigterm_handler()

    def _open_store(self, *, raise_unavailable: bool) -> bool:
        """Open ``self._url``; if the database is unreachable, keep queueing and retry later.

        A bad URL is a programming error and raises at once. An unreachable database (a
        server still starting, a network blip) must not stop the host application: events
        queue in memory and the writer retries with backoff (``strict=True`` raises).
        """
        assert self._url is not None
        try:
            self.store = open_store(self._url)
        except StoreUnavailable as exc:
            if raise_unavailable:
                raise
            with self._buf_lock:
                self._write_errors += 1
                self._last_error = str(exc)
            self._log_limited("agentledger: database unavailable (%s); queueing events", exc)
            return False
        self._url = None
        return True

    def _init_state(self) -> None:
        # Everything here is per process: rebuilt in a forked child (see _after_fork).
        self._buf: list[Row | _Later] = []
        self._buf_lock = threading.RLock()  # re-entrant: a SIGTERM handler may interrupt us
        self._cond = threading.Condition(self._buf_lock)
        self._ingest_lock = threading.RLock()  # re-entrant for the SIGTERM handler too
        self._backlog: list[Row] = []
        # _record_later's records, appended without the lock (deque.append is atomic) and
        # moved into the buffer, counted, by whoever takes the lock next (_take_inbox); at
        # most _inbox_room of them (0: none, they take the lock).
        self._inbox: deque[tuple[contextvars.Context, LaterArgs]] = deque()
        self._inbox_room = 0
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._accepted = 0  # rows accepted into the buffer, ever
        self._settled = 0  # of those, written or given up
        self._written = 0
        self._rejected = 0
        self._unbuilt = 0  # _record_later() records that failed to build
        self._dropped = 0
        self._write_errors = 0
        self._sink_errors = 0
        self._last_error: str | None = None
        self._last_log = 0.0
        self._active_tasks = 0

    # --- recording ------------------------------------------------------------------------
    def record_llm(
        self,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        *,
        provider: str | None = None,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        duration_ms: float = 0.0,
        cost_usd: Decimal | float | None = None,
        status: str = "ok",
        error_type: str | None = None,
        error_message: str | None = None,
        name: str | None = None,
        bot_id: str | None = None,
        user_id: str | None = None,
        task_id: str | None = None,
        tenant_id: str | None = None,
        session_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        started_at: Any = None,
        cache_write_1h_tokens: int = 0,
    ) -> str | None:
        """Record one model call; return its event id (None if it was rejected or dropped).

        Tokens follow docs/tokens.md (input includes cached, output includes reasoning).
        Cost is computed from the price book unless ``cost_usd`` is given (kept as
        ``"reported"``); an unknown model is kept with ``cost_source="unpriced"``.
        """
        try:
            row = self._row(
                "llm", name or model, provider, model, input_tokens, output_tokens,
                cache_read_tokens, cache_write_tokens, reasoning_tokens, cache_write_1h_tokens,
                duration_ms, cost_usd, status, error_type, error_message,
                bot_id, user_id, task_id, tenant_id, session_id, tags, metadata, started_at,
                None,
            )  # fmt: skip
        except Exception as exc:
            return self._reject(exc)
        return self._accept(row)

    def record_tool(
        self,
        name: str,
        *,
        duration_ms: float = 0.0,
        status: str = "ok",
        error_type: str | None = None,
        error_message: str | None = None,
        cost_usd: Decimal | float | None = None,
        bot_id: str | None = None,
        user_id: str | None = None,
        task_id: str | None = None,
        tenant_id: str | None = None,
        session_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        started_at: Any = None,
        kind: str = "tool",
    ) -> str | None:
        """Record a tool (or retrieval, hand-off, command, custom) call; return its event id."""
        try:
            if type(kind) is not str or kind not in KINDS:
                raise InvalidEvent("kind", f"must be one of {sorted(KINDS)}, got {kind!r:.40}")
            row = self._row(
                kind, name, None, None, 0, 0, 0, 0, 0, 0, duration_ms, cost_usd, status,
                error_type, error_message, bot_id, user_id, task_id, tenant_id, session_id,
                tags, metadata, started_at, None,
            )  # fmt: skip
        except Exception as exc:
            return self._reject(exc)
        return self._accept(row)

    def record_error(
        self,
        error_type: str,
        error_message: str | None = None,
        *,
        name: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        bot_id: str | None = None,
        user_id: str | None = None,
        task_id: str | None = None,
        tenant_id: str | None = None,
        session_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        started_at: Any = None,
    ) -> str | None:
        """Record an error that is not tied to a measured call; return its event id."""
        try:
            check_str("error_type", error_type, optional=False)  # before name, its default
            row = self._row(
                "error", name or error_type, provider, model, 0, 0, 0, 0, 0, 0, 0.0,
                Decimal(0) if model is None else None, "error", error_type, error_message,
                bot_id, user_id, task_id, tenant_id, session_id, tags, metadata, started_at,
                None,
            )  # fmt: skip
        except Exception as exc:
            return self._reject(exc)
        return self._accept(row)

    def record(self, event: Event) -> str | None:
        """Record a ready-made :class:`Event`.

        Attribution fields left as None are filled from the current scope; a missing cost
        is priced from the price book when the event names a model.
        """
        try:
            row = list(validate_event(event))
            attribution = _current.get()
            for i, value in enumerate(attribution[:5], start=10):
                if row[i] is None:
                    row[i] = value
            if row[15] is None and attribution.tags:
                row[15] = dump_json(dict(attribution.tags), "tags")
            if row[21] is None and row[9] is not None:
                # Priced by the writer like every other row (see _row and _priced): the cost
                # slot carries cache_write_1h_tokens (none here) and the source is pending.
                row[21], row[22], row[23] = 0, None, None
        except Exception as exc:
            return self._reject(exc)
        return self._accept(tuple(row))

    def _row(
        self,
        kind: str,
        name: Any,
        provider: Any,
        model: Any,
        input_tokens: Any,
        output_tokens: Any,
        cache_read: Any,
        cache_write: Any,
        reasoning: Any,
        cache_write_1h: Any,
        duration_ms: Any,
        cost_usd: Any,
        status: Any,
        error_type: Any,
        error_message: Any,
        bot_id: Any,
        user_id: Any,
        task_id: Any,
        tenant_id: Any,
        session_id: Any,
        tags: Any,
        metadata: Any,
        started_at: Any,
        span: Span | None,
    ) -> Row:
        """Validate, attribute and price one event; the single hot path of every recorder.

        Each check is an inline guard for the common valid case; the full check (which
        names the field in its error) runs only when the guard fails.
        """
        if model is not None and (type(model) is not str or not 0 < len(model) <= 256):
            check_str("model", model)  # first: record_llm's name defaults to the model
        if type(name) is not str or not 0 < len(name) <= MAX_NAME_LEN:
            check_str("name", name, MAX_NAME_LEN, optional=False)
        if provider is not None and (type(provider) is not str or not 0 < len(provider) <= 256):
            check_str("provider", provider)
        inp, out = input_tokens, output_tokens
        if type(inp) is not int or not 0 <= inp <= MAX_TOKENS:
            inp = check_tokens("input_tokens", inp)
        if type(out) is not int or not 0 <= out <= MAX_TOKENS:
            out = check_tokens("output_tokens", out)
        cr = (
            0
            if type(cache_read) is int and cache_read == 0
            else check_tokens("cache_read_tokens", cache_read)
        )
        cw = (
            0
            if type(cache_write) is int and cache_write == 0
            else check_tokens("cache_write_tokens", cache_write)
        )
        rs = (
            0
            if type(reasoning) is int and reasoning == 0
            else check_tokens("reasoning_tokens", reasoning)
        )
        if cr or cw or rs:
            check_usage_subsets(inp, out, cr, cw, rs)
        cw1h = 0
        if type(cache_write_1h) is not int or cache_write_1h != 0:
            cw1h = check_tokens("cache_write_1h_tokens", cache_write_1h)
            if cw1h > cw:
                raise InvalidEvent("cache_write_1h_tokens", "exceeds cache_write_tokens")
        if type(duration_ms) is float and 0.0 <= duration_ms <= MAX_DURATION_MS:
            duration = duration_ms
        else:
            duration = check_duration_ms(duration_ms)
        if status != "ok":
            if status != "error":
                raise InvalidEvent("status", f"must be 'ok' or 'error', got {status!r:.40}")
            if error_type is not None:
                check_str("error_type", error_type)
        elif error_type is not None:  # an error type without status means it failed
            check_str("error_type", error_type)
            status = "error"
        if error_message is not None:
            error_message = clip_error_message(error_message)

        attribution = _current.get()
        if bot_id is None:
            bot_id = attribution.bot_id
        else:
            check_str("bot_id", bot_id)
        if user_id is None:
            user_id = attribution.user_id
        else:
            check_str("user_id", user_id)
        if task_id is None:
            task_id = attribution.task_id
        else:
            check_str("task_id", task_id)
        if tenant_id is None:
            tenant_id = attribution.tenant_id
        else:
            check_str("tenant_id", tenant_id)
        if session_id is None:
            session_id = attribution.session_id
        else:
            check_str("session_id", session_id)
        if tags is not None:
            check_tags(dict(tags) if isinstance(tags, Mapping) else tags)
            merged = {**attribution.tags, **tags} if attribution.tags else dict(tags)
            tags_json = dump_json(merged, "tags") if merged else None
        else:
            tags_json = attribution.tags_json
        meta_json: str | DeferredMetadata | None = None
        if metadata is not None:
            if type(metadata) is DeferredMetadata:
                meta_json = metadata  # JSON-safe by construction: serialised by the writer
            elif type(metadata) is not dict and not isinstance(metadata, Mapping):
                raise InvalidEvent("metadata", f"must be a dict, got {type(metadata).__name__}")
            elif metadata:
                meta_json = dump_json(dict(metadata), "metadata")

        if cost_usd is not None:
            cost: Decimal | None = check_cost(cost_usd)
            source, version = "reported", None
        elif model is not None:
            # Priced off the hot path, in _ingest: the row carries cache_write_1h_tokens in
            # the cost slot and None as its source until then (see _priced).
            cost, source, version = cw1h, None, None  # type: ignore[assignment]
        else:
            cost, source, version = Decimal(0), "reported", None  # tools etc.: free unless told

        if started_at is None:
            started = time.time() - duration / 1000.0
        elif type(started_at) is float and 0.0 <= started_at <= 32503680000.0:  # epoch s < 3000
            started = started_at  # (NaN, inf and absurd floats fall through and are rejected)
        else:
            started = check_started_at(started_at).timestamp()

        if span is not None:
            event_id, trace_id, span_id, parent_id = (
                span.event_id, span.trace_id, span.span_id, span.parent_id,
            )  # fmt: skip
        else:
            parent = _current_span.get()
            if parent is None:
                event_id, trace_id, span_id = new_ids()
                parent_id = None
            else:
                event_id, _, span_id = new_ids()
                trace_id, parent_id = parent.trace_id, parent.span_id
            if kind == "tool" and _TOOL_REQUEST.get() is not None:
                link = tool_parent(name)  # answering a model's tool request: nest under it
                if link is not None:
                    trace_id, parent_id = link
        return (
            event_id, trace_id, span_id, parent_id, started, duration, kind, name,
            provider, model, bot_id, user_id, task_id, tenant_id, session_id, tags_json,
            inp, out, cr, cw, rs, cost, source, version, status, error_type, error_message,
            meta_json,
        )  # fmt: skip

    def _accept(self, row: Row) -> str | None:
        if self._sync and self.store is not None and not self._closed:
            return self._write_now(row)
        return row[0] if self._enqueue(row) else None

    def _enqueue(self, item: Row | _Later) -> bool:
        """Put a row (or a record to build, see :meth:`_record_later`) in the buffer."""
        with self._buf_lock:
            if self._closed:
                self._drop("the ledger is closed")
                return False
            queued = len(self._buf) + len(self._backlog) + len(self._inbox)
            if queued >= self._max_queue and (
                self._overflow == "drop_new" or not self._wait_for_space()
            ):
                self._drop(f"queue full ({self._max_queue} pending)")
                return False
            self._buf.append(item)
            self._accepted += 1
            if len(self._buf) >= self._batch_size:
                self._wake.set()
        if self._writer is None:
            self._start_writer()
        return True

    def _record_args(self, args: tuple[Any, ...]) -> str | None:
        """Record the event of ``_row(*args)`` now, as ``record_*`` do (its id, or None)."""
        try:
            row = self._row(*args)
        except Exception as exc:
            return self._reject(exc)
        return self._accept(row)

    def _record_later(self, ctx: contextvars.Context, args: LaterArgs) -> None:
        """Record an event whose row the writer builds: ``_row(*args)`` run in ``ctx``
        (``args`` may be a function giving them, called when the row is built).

        For recorders whose values are known to be well formed (the SDK integrations):
        the caller's thread only appends ``(ctx, args)`` to the inbox, without the lock
        (see :meth:`_take_inbox`; to the buffer, with it, when the inbox has no room), and
        validation, attribution (from ``ctx``, the context the call was made in), ids and
        the row are done off it. A row
        that fails to build is counted as rejected and logged, never raised (even with
        ``strict=True``: the caller has moved on). With ``durability="sync"`` the row is
        built and written at once, as ``record_*`` do (and ``strict=True`` raises a bad
        one, as they do). No event id is returned: callers that need it use ``record_*``.
        """
        inbox = self._inbox
        if len(inbox) < self._inbox_room:  # the usual case: no lock (see _take_inbox)
            inbox.append((ctx, args))
            return
        later = _Later((ctx, args))
        if self._sync:
            try:
                row = later.build(self._row)
            except Exception as exc:
                self._reject(exc)
                return
            self._accept(row)
            return
        self._enqueue(later)

    def _built(self, items: list[Any]) -> list[Row]:
        """``items`` with every :meth:`_record_later` record built into its row (the writer's
        side); one that fails is rejected and settled (it will never be written)."""
        out: list[Row] = []
        failed = 0
        for item in items:
            if type(item) is not _Later:
                out.append(item)
                continue
            try:
                out.append(item.build(self._row))
            except Exception as exc:
                failed += 1
                self._log_limited("agentledger: rejected a record: %s", exc)
        if failed:
            with self._buf_lock:
                self._rejected += failed
                self._unbuilt += failed  # accepted, then rejected: not counted as recorded
                self._settled += failed  # never to be written: flush() does not wait for it
                self._cond.notify_all()
        return out

    def _wait_for_space(self) -> bool:
        deadline = time.monotonic() + self._block_timeout
        self._wake.set()
        while len(self._buf) + len(self._backlog) + len(self._inbox) >= self._max_queue:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._cond.wait(remaining):
                return False
        return True

    def _write_now(self, row: Row) -> str | None:
        assert self.store is not None
        row = self._priced([row])[0]
        try:
            self.store.write([row])
        except Exception as exc:
            # Keep it: the writer retries. Then say so (strict) or log (default).
            with self._buf_lock:
                self._buf.append(row)
                self._accepted += 1
                self._write_errors += 1
                self._last_error = str(exc)
            if self._writer is None:
                self._start_writer()
            if self.strict:
                raise StoreError(f"sync write failed, event queued for retry: {exc}") from exc
            self._log_limited("agentledger: sync write failed (%s); queued for retry", exc)
            return row[0]  # type: ignore[no-any-return]
        with self._ingest_lock:
            self._aggregates.add_rows((row,))
            self._run_sinks([row])
        with self._buf_lock:
            self._accepted += 1
            self._settled += 1
            self._written += 1
        return row[0]  # type: ignore[no-any-return]

    def _drop(self, why: str) -> str | None:
        self._dropped += 1
        self._log_limited("agentledger: dropped an event: %s", why)
        if self.strict:
            raise AgentledgerError(f"event dropped: {why}")
        return None

    def _reject(self, exc: Exception) -> str | None:
        with self._buf_lock:
            self._rejected += 1
        if self.strict:
            if isinstance(exc, AgentledgerError):
                raise exc
            raise InvalidEvent("event", f"{type(exc).__name__}: {exc}") from exc
        log.warning("agentledger: rejected a record: %s", exc)
        return None

    def _log_limited(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log >= 10.0:  # at most one line per 10 s per ledger
            self._last_log = now
            log.warning(message, *args)

    # --- spans ----------------------------------------------------------------------------
    def span(self, kind: str, name: str, **attrs: Any) -> Span:
        """Open a nested span: ``with ledger.span("tool", "search", bot_id="b") as s:``."""
        if kind not in KINDS:
            raise InvalidEvent("kind", f"must be one of {sorted(KINDS)}, got {kind!r:.40}")
        check_str("name", name, MAX_NAME_LEN, optional=False)
        return Span(self, kind, name, attrs)

    def task(self, task_id: str, **attrs: Any) -> Span:
        """A task's lifecycle: ``with ledger.task("t-1"):`` records one ``custom`` event named
        ``task`` with its duration and success, and attributes everything inside to the task
        (seed 001's task metrics, Prometheus ``task_duration_seconds``)."""
        span = self.span("custom", "task", task_id=task_id, **attrs)
        span._is_task = True
        return span

    @property
    def active_tasks(self) -> int:
        """Tasks (``with ledger.task(...)``) open right now in this process."""
        return self._active_tasks

    def _task_delta(self, delta: int) -> None:
        with self._buf_lock:
            self._active_tasks += delta

    def _finish_span(self, span: Span, duration_ms: float) -> None:
        a, u = span.attrs, span.usage
        try:
            row = self._row(
                span.kind, span.name, a.get("provider"), a.get("model"),
                u.get("input_tokens", 0), u.get("output_tokens", 0),
                u.get("cache_read_tokens", 0), u.get("cache_write_tokens", 0),
                u.get("reasoning_tokens", 0), u.get("cache_write_1h_tokens", 0),
                duration_ms, a.get("cost_usd"), span.status or "ok", a.get("error_type"),
                a.get("error_message"), a.get("bot_id"), a.get("user_id"), a.get("task_id"),
                a.get("tenant_id"), a.get("session_id"), a.get("tags"), span.metadata,
                a.get("started_at"), span,
            )  # fmt: skip
        except Exception as exc:
            self._reject(exc)
            return
        self._accept(row)

    def traced(
        self, kind: str = "custom", name: str | None = None, **attrs: Any
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a sync or async function so each call is a span (errors re-raised)."""

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            span_name = name or fn.__qualname__
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    with self.span(kind, span_name, **attrs):
                        return await fn(*args, **kwargs)

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                with self.span(kind, span_name, **attrs):
                    return fn(*args, **kwargs)

            return wrapper

        return decorate

    scope = staticmethod(scope)

    # --- live totals ----------------------------------------------------------------------
    def totals(self, **where: str) -> Totals:
        """Exact live totals for one key, e.g. ``totals(bot_id="a")``; none means everything.

        Covers what this process recorded since the ledger was created (the store holds
        the full history across processes; see the query module).
        """
        if len(where) > 1 or (where and next(iter(where)) not in DIMENSIONS):
            raise ConfigError(f"totals() takes one of {DIMENSIONS}, got {sorted(where)}")
        self._ingest()
        with self._ingest_lock:
            if not where:
                return self._aggregates.get("*", None)
            ((dimension, value),) = where.items()
            return self._aggregates.get(dimension, value)

    def breakdown(self, dimension: str) -> dict[Any, Totals]:
        """Live totals for every value of ``dimension`` (``"bot_id"``, ``"model"``, ...)."""
        if dimension not in DIMENSIONS:
            raise ConfigError(f"dimension must be one of {DIMENSIONS}, got {dimension!r}")
        self._ingest()
        with self._ingest_lock:
            return self._aggregates.breakdown(dimension)

    def aggregates_snapshot(self) -> list[tuple[tuple[Any, ...], list[Any]]]:
        """Every live accumulator as ``(key, values)`` for exporters (see ``_aggregates``).

        ``key`` follows :data:`agentledger._aggregates.DIMENSIONS`; ``values`` are calls,
        errors, the five token sums, cost (Decimal), unpriced calls, duration sum (ms) and
        histogram bucket counts over ``DURATION_BOUNDS_S`` (last bucket is +Inf).
        """
        self._ingest()
        with self._ingest_lock:
            return self._aggregates.snapshot()

    def aggregates_view(self, dimensions: Sequence[str]) -> LiveView:
        """Live totals by a few ``dimensions`` only, kept up to date as rows are folded in.

        ``view.snapshot()`` has the shape of :meth:`aggregates_snapshot` (keys follow
        DIMENSIONS, None where not kept) but costs one item per distinct projected key, not
        per combination. Exporters use it; it stops costing anything once dropped.
        """
        if (
            isinstance(dimensions, str)
            or not dimensions
            or not all(d in DIMENSIONS for d in dimensions)
            or len(set(dimensions)) != len(dimensions)
        ):
            raise ConfigError(f"dimensions must be distinct names from {DIMENSIONS}, got "
                              f"{dimensions!r}")  # fmt: skip
        return LiveView(self, tuple(dimensions))

    def prometheus_collector(self, **options: Any) -> Any:
        """A Prometheus collector over this ledger's live totals (``pip install
        'agentledger[prometheus]'``); register it in your registry. See docs/prometheus.md."""
        from .export.prometheus import LedgerCollector

        return LedgerCollector(self, **options)

    def add_sink(self, sink: Sink) -> None:
        """Call ``sink(events)`` with every batch, off the hot path; its errors are counted."""
        self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        """Stop calling ``sink``."""
        self._sinks.remove(sink)

    # --- the writer -----------------------------------------------------------------------
    def _start_writer(self) -> None:
        with self._buf_lock:
            if self._writer is not None or self._closed:
                return
            self._writer = threading.Thread(
                target=self._run_writer, name="agentledger-writer", daemon=True
            )
            self._writer.start()
            self._take_inbox()  # (its room, now that a writer will take it)

    def _take_inbox(self) -> None:
        """Move the inbox's records into the buffer, counted as accepted, and set how many
        may wait there until the next take: none without a running writer or with
        ``durability="sync"``, else no more than a batch or the queue's room (which
        :meth:`_enqueue` counts the inbox in). With ``_buf_lock`` held."""
        inbox = self._inbox
        if inbox:
            take = inbox.popleft
            n = 0
            while inbox:  # (records appended meanwhile are taken too)
                # (self._buf each time: a signal handler's flush may swap it meanwhile)
                self._buf.append(_Later(take()))
                n += 1
            self._accepted += n
        if self._closed or self._sync or self._writer is None:
            self._inbox_room = 0
        else:
            room = self._max_queue - len(self._buf) - len(self._backlog)
            self._inbox_room = max(0, min(self._batch_size, room))

    def _run_writer(self) -> None:
        self.prices.warm()
        backoff = self._interval
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                ok = self._drain()
            except Exception as exc:  # never let the writer die: log, count, retry
                with self._buf_lock:
                    self._write_errors += 1
                    self._last_error = f"writer: {type(exc).__name__}: {exc}"
                log.exception("agentledger: writer error; will retry")
                ok = False
            backoff = self._interval if ok else min(backoff * 2, 30.0)
            if self._closed:  # close() made its last attempt through flush(); stop here
                return
            if not ok:
                self._wake.wait(backoff)

    def _ingest(self) -> None:
        """Move buffered rows into the aggregates, the sinks and the write backlog."""
        with self._ingest_lock:
            with self._buf_lock:
                self._take_inbox()
                items, self._buf = self._buf, []
                if not items:
                    return
            rows = self._priced(self._built(items))
            durable = self.store is not None or self._url is not None
            if durable:
                with self._buf_lock:
                    self._backlog.extend(rows)
            self._aggregates.add_rows(rows)
            self._run_sinks(rows)
            if not durable:  # nothing to write: settled once counted and seen by the sinks
                with self._buf_lock:
                    self._settled += len(rows)
                    self._cond.notify_all()

    def _priced(self, rows: list[Row]) -> list[Row]:
        """Fill in the cost of rows recorded with a model and no cost (see ``_row``), and
        serialise the metadata the integrations hand over as a dict (``DeferredMetadata``)."""
        quote = self.prices.quote
        out = []
        for row in rows:
            if type(row[27]) is DeferredMetadata:
                row = (*row[:27], encode_deferred(row[27]))
            if row[22] is None:
                started = row[4]
                cost = quote(
                    row[8],
                    row[9],
                    row[16],
                    row[17],
                    row[18],
                    row[19],
                    row[20],
                    row[21],
                    started,  # epoch seconds; converted only for time-dependent prices
                )
                row = (*row[:21], *cost, *row[24:])
            out.append(row)
        return out

    def _run_sinks(self, rows: Sequence[Row]) -> None:
        if not self._sinks:
            return
        batch = [Event.from_row(r) for r in rows]
        for sink in list(self._sinks):
            try:
                sink(batch)
            except Exception as exc:
                self._sink_errors += 1
                self._last_error = f"sink {sink!r}: {exc}"
                self._log_limited("agentledger: a sink failed: %s", exc)

    def _drain(self) -> bool:
        """Ingest and write everything pending; False if the store failed."""
        self._ingest()
        if self._url is not None and not self._open_store(raise_unavailable=False):
            return False
        store = self.store
        if store is None:
            return True
        while True:
            with self._buf_lock:
                batch = self._backlog[: self._batch_size]
            if not batch:
                return True
            try:
                store.write(batch)
            except Exception as exc:
                with self._buf_lock:
                    self._write_errors += 1
                    self._last_error = str(exc)
                self._log_limited(
                    "agentledger: store write failed (%s); %d events kept for retry",
                    exc, len(self._backlog),
                )  # fmt: skip
                return False
            with self._buf_lock:
                del self._backlog[: len(batch)]
                self._written += len(batch)
                self._settled += len(batch)
                self._cond.notify_all()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Write everything recorded so far; True when it is all in the store.

        Returns False if ``timeout`` passed first (e.g. the database is down; the events
        stay queued and are written when it comes back).
        """
        with self._buf_lock:
            self._take_inbox()
            target = self._accepted
        if self._writer is None or not self._writer.is_alive():
            self._drain()  # no writer (closed, or never started): do it here
        else:
            self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._settled < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # One wake-up (above) is enough: the writer clears it before draining, so a
                # wake during a drain makes it go round again at once.
                self._cond.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush, stop the writer and release the store; True if nothing was left unwritten."""
        if self._closed:
            return self.pending == 0
        done = self.flush(timeout)
        with self._buf_lock:
            self._closed = True
            self._inbox_room = 0
        self._wake.set()
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout if timeout is not None else None)
        if self._inbox:  # records that came as it closed: written here
            done = self.flush(timeout) and done
        if not done:
            log.error(
                "agentledger: closed with %d events not written (%s); they are lost",
                self.pending, self._last_error or "timeout",
            )  # fmt: skip
        if self.store is not None:
            self.store.close()
        _LIVE.discard(self)
        return done

    @property
    def pending(self) -> int:
        """Events accepted but not yet written."""
        with self._buf_lock:
            self._take_inbox()
            return self._accepted - self._settled

    def stats(self) -> LedgerStats:
        """What happened to every record so far (this process)."""
        self._ingest()  # price what is buffered, so `unpriced` is current
        with self._buf_lock:
            return LedgerStats(
                recorded=self._accepted - self._unbuilt,
                written=self._written,
                rejected=self._rejected,
                dropped=self._dropped,
                pending=self._accepted - self._settled,
                write_errors=self._write_errors,
                sink_errors=self._sink_errors,
                unpriced=sum(self.prices.unpriced_calls.values()),
                last_error=self._last_error,
            )

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = repr(self.store) if self.store is not None else _redacted(self._url)
        return f"<Ledger {where} pending={self.pending}>"

    def _after_fork(self) -> None:
        # The child must never write the parent's queue (the parent will) nor use its
        # connections or locks (they may be held by threads that do not exist here).
        self._init_state()
        self._aggregates = Aggregates()
        if self.store is not None:
            self.store.after_fork()


class LiveView:
    """A ledger's live totals by a few dimensions (see :meth:`Ledger.aggregates_view`)."""

    def __init__(self, ledger: Ledger, dimensions: tuple[str, ...]) -> None:
        self.ledger = ledger
        self.dimensions = dimensions
        self._aggregates: Aggregates | None = None
        self._view: View | None = None

    def snapshot(self) -> list[tuple[tuple[Any, ...], list[Any]]]:
        """Every view accumulator as ``(key, values)``, after folding in pending rows."""
        ledger = self.ledger
        ledger._ingest()
        with ledger._ingest_lock:
            # A forked child starts with fresh aggregates: follow them.
            if self._view is None or self._aggregates is not ledger._aggregates:
                self._aggregates = ledger._aggregates
                self._view = self._aggregates.view(self.dimensions)
            return self._view.snapshot()


def _redacted(url: str | None) -> str:
    if url is None:
        return "no store"
    from .store.sql import _redact

    return _redact(url)


def _tok(prefix: str, value: Any) -> int:
    return check_tokens(f"{prefix}_tokens", value)


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


# --- process lifecycle: exit, SIGTERM, fork ---------------------------------------------------


def _close_all(timeout: float = _EXIT_TIMEOUT_S) -> None:
    for ledger in list(_LIVE):
        try:
            ledger.close(timeout)
        except Exception as exc:  # never let our exit hook mask the app's own exit
            log.warning("agentledger: could not flush %r at exit: %s", ledger, exc)


def _on_sigterm(previous: Any) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        _close_all()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler


def _install_sigterm_handler() -> None:
    global _SIGTERM_INSTALLED
    if _SIGTERM_INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous == signal.SIG_IGN:
            return
        signal.signal(signal.SIGTERM, _on_sigterm(previous))
    except (ValueError, OSError):  # not the main interpreter, or signals unavailable
        return
    _SIGTERM_INSTALLED = True


def _after_fork_in_child() -> None:
    for ledger in list(_LIVE):
        ledger._after_fork()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
