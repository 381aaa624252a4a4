"""Prometheus metrics computed at scrape time from a ledger's live aggregates or a store.

Nothing is incremented per event: each scrape reads either two live views of the ledger's
aggregates (:class:`LedgerCollector`, this process since it started; see
:meth:`Ledger.aggregates_view`) or the events table (:class:`StoreCollector`, every
process, all history) and turns the totals into metric families. See docs/prometheus.md for
the names, labels and queries.

::

    from agentledger.export.prometheus import register, serve, make_wsgi_app

    register(ledger)                      # into prometheus_client's default registry
    app = make_wsgi_app(ledger)           # mount at /metrics in a WSGI app
    server = serve(ledger, 9464)          # or a standalone port; server.close() stops it
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

try:
    from prometheus_client import CollectorRegistry
    from prometheus_client import make_asgi_app as _make_asgi_app
    from prometheus_client import make_wsgi_app as _make_wsgi_app
    from prometheus_client import start_http_server as _start_http_server
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import REGISTRY
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "agentledger.export.prometheus needs prometheus-client: "
        "pip install 'agentledger[prometheus]'"
    ) from None

from .._aggregates import DIMENSIONS, DURATION_BOUNDS_S, HISTOGRAM
from ..errors import ConfigError
from ..store import rollups

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from ..ledger import Ledger
    from ..store.sql import SQLStore

__all__ = [
    "ATTRIBUTION_LABELS",
    "DEFAULT_LABELS",
    "LedgerCollector",
    "MetricsServer",
    "StoreCollector",
    "make_asgi_app",
    "make_wsgi_app",
    "register",
    "serve",
    "serve_collector",
]

log = logging.getLogger("agentledger.export.prometheus")

#: Attribution labels the ``agentledger_*`` families may carry (``labels=`` chooses).
ATTRIBUTION_LABELS: Final = ("bot_id", "tenant_id", "user_id", "task_id", "session_id")
#: Bounded by default: bots and tenants are few; users, tasks and sessions are unbounded
#: (one series per value per family, kept by Prometheus for its whole retention).
DEFAULT_LABELS: Final = ("bot_id", "tenant_id")
OTHER: Final = "other"
TOKEN_TYPES: Final = ("input", "output", "cache_read", "cache_write", "reasoning")

# Positions in a snapshot key (DIMENSIONS order) and in its values.
_D: Final = {name: i for i, name in enumerate(DIMENSIONS)}
_MODEL, _KIND, _STATUS, _NAME = _D["model"], _D["kind"], _D["status"], _D["name"]
_CALLS, _ERRORS, _TOKENS, _COST, _UNPRICED, _DURATION_MS = 0, 1, 2, 7, 8, 9
_BUCKET_LE: Final = (*(repr(b) for b in DURATION_BOUNDS_S), "+Inf")

Row = tuple[tuple[Any, ...], Sequence[Any]]


class _Cap:
    """Keep at most ``n`` values of one label; the rest become ``"other"``.

    Sticky, so every exposed counter stays monotonic: values are admitted (largest first)
    only while there is room, and once a value has gone to ``"other"`` the set is full and
    admits nothing more, so no value ever leaves ``"other"`` nor a kept series vanishes.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.kept: set[str] = set()

    def update(self, calls: Mapping[str, int]) -> None:
        room = self.n - len(self.kept)
        if room <= 0:
            return
        new = sorted((v for v in calls if v not in self.kept), key=lambda v: (-calls[v], v))
        self.kept.update(new[:room])

    def __call__(self, value: str) -> str:
        return value if value == "" or value in self.kept else OTHER


class _Families:
    """Builds every metric family from snapshot-shaped rows (see ``_aggregates``)."""

    def __init__(
        self,
        namespace: str,
        labels: Sequence[str],
        top_n: int | Mapping[str, int] | None,
        task_name: str | None,
    ) -> None:
        if not isinstance(namespace, str) or (namespace and not namespace.isidentifier()):
            raise ConfigError(f"namespace must be a metric-name prefix, got {namespace!r}")
        labels = (labels,) if isinstance(labels, str) else tuple(labels)
        bad = [label for label in labels if label not in ATTRIBUTION_LABELS]
        if bad or len(set(labels)) != len(labels):
            raise ConfigError(f"labels must be distinct names from {ATTRIBUTION_LABELS}: {bad}")
        self.prefix = f"{namespace.rstrip('_')}_" if namespace else ""
        self.labels = labels
        capped = ("model", "tool", *ATTRIBUTION_LABELS)
        if top_n is None:
            limits: dict[str, int] = {}
        elif isinstance(top_n, int) and not isinstance(top_n, bool):
            limits = dict.fromkeys(capped, top_n)
        elif isinstance(top_n, Mapping):
            limits = dict(top_n)
        else:
            raise ConfigError(f"top_n must be an int or a mapping label -> int, got {top_n!r}")
        for label, n in limits.items():
            if label not in capped:
                raise ConfigError(f"top_n: cannot cap {label!r}; use one of {capped}")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"top_n[{label!r}] must be a positive int, got {n!r}")
        self.caps = {label: _Cap(n) for label, n in limits.items()}
        self.task_name = task_name
        self._lock = threading.Lock()

    def _name(self, name: str) -> str:
        return self.prefix + name

    @property
    def detail_dimensions(self) -> tuple[str, ...]:
        """What the seed-001 families are grouped by (model, tool and task families)."""
        return ("model", "kind", "status", "name", *(("task_id",) if self._task_label else ()))

    @property
    def attribution_dimensions(self) -> tuple[str, ...]:
        """What the ``agentledger_*`` families are grouped by."""
        return ("kind", "status", *self.labels)

    @property
    def _task_label(self) -> bool:
        return "task_id" in self.labels

    def _rank(
        self, detail: Sequence[Row], attribution: Sequence[Row]
    ) -> dict[str, Callable[[str], str]]:
        """Update the caps from this scrape's calls per value; return a mapper per label."""
        mappers: dict[str, Callable[[str], str]] = {}
        for label, cap in self.caps.items():
            calls: dict[str, int] = defaultdict(int)
            for key, values in detail if label in ("model", "tool") else attribution:
                if label == "model":
                    value = key[_MODEL] if key[_KIND] == "llm" else None
                elif label == "tool":
                    value = key[_NAME] if key[_KIND] == "tool" else None
                else:
                    value = key[_D[label]]
                if value is not None:
                    calls[str(value)] += int(values[_CALLS])
            cap.update(calls)
            mappers[label] = cap
        return mappers

    def build(self, detail: Sequence[Row], attribution: Sequence[Row]) -> list[Metric]:
        """Every family from rows grouped by :attr:`detail_dimensions` and by
        :attr:`attribution_dimensions` (snapshot-shaped: keys follow DIMENSIONS)."""
        with self._lock:
            mappers = self._rank(detail, attribution)

        def lab(label: str, value: Any) -> str:
            text = "" if value is None else str(value)
            mapper = mappers.get(label)
            return mapper(text) if mapper is not None else text

        task_label = self._task_label
        requests: dict[tuple[str, ...], int] = defaultdict(int)
        tokens: dict[tuple[str, str], int] = defaultdict(int)
        cost: dict[str, Decimal] = defaultdict(Decimal)
        unpriced: dict[str, int] = defaultdict(int)
        latency: dict[str, _Hist] = defaultdict(_Hist)
        tool_calls: dict[tuple[str, str], int] = defaultdict(int)
        tool_failures: dict[str, int] = defaultdict(int)
        tool_latency: dict[str, _Hist] = defaultdict(_Hist)
        task_success: dict[str, int] = defaultdict(int)
        task_duration: dict[str, _Hist] = defaultdict(_Hist)
        by_requests: dict[tuple[str, ...], int] = defaultdict(int)
        by_tokens: dict[tuple[str, ...], int] = defaultdict(int)
        by_cost: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)

        for key, values in detail:
            kind, calls = key[_KIND], int(values[_CALLS])
            status = "error" if key[_STATUS] == "error" else "success"
            if kind == "llm":
                model = lab("model", key[_MODEL])
                task = (lab("task_id", key[_D["task_id"]]),) if task_label else ()
                requests[(model, status, *task)] += calls
                for i, token_type in enumerate(TOKEN_TYPES):
                    tokens[(model, token_type)] += int(values[_TOKENS + i])
                cost[model] += values[_COST]
                unpriced[model] += int(values[_UNPRICED])
                latency[model].add(values)
            elif kind == "tool":
                tool = lab("tool", key[_NAME])
                tool_calls[(tool, status)] += calls
                tool_failures[tool] += int(values[_ERRORS])
                tool_latency[tool].add(values)
            elif kind == "custom" and self.task_name is not None and key[_NAME] == self.task_name:
                task_success[status] += calls
                task_duration[status].add(values)

        positions = [_D[label] for label in self.labels]
        mapped = [mappers.get(label) for label in self.labels]
        for key, values in attribution:
            kind = key[_KIND]
            status = "error" if key[_STATUS] == "error" else "success"
            attribution_key = tuple(
                "" if (v := key[i]) is None else (m(str(v)) if m is not None else str(v))
                for i, m in zip(positions, mapped, strict=True)
            )
            by_requests[(*attribution_key, kind or "", status)] += int(values[_CALLS])
            by_cost[attribution_key] += values[_COST]
            if kind == "llm":
                for i, token_type in enumerate(TOKEN_TYPES):
                    by_tokens[(*attribution_key, token_type)] += int(values[_TOKENS + i])

        n = self._name
        out: list[Metric] = []
        out.append(
            _counter(
                n("llm_requests_total"),
                "LLM calls by model and outcome (status is success or error).",
                ["model", "status", *(["task_id"] if task_label else [])],
                requests,
            )
        )
        out.append(
            _counter(
                n("llm_tokens_total"),
                "LLM tokens by model and type (input includes cache_read and cache_write; "
                "output includes reasoning).",
                ["model", "token_type"],
                tokens,
            )
        )
        out.append(
            _counter(
                n("llm_cost_usd_total"),
                "LLM spend in USD by model (exact Decimal totals, rounded to float here).",
                ["model"],
                {(m,): float(v) for m, v in cost.items()},
            )
        )
        out.append(
            _counter(
                n("llm_unpriced_calls_total"),
                "LLM calls whose model had no known price (their cost is not in the cost).",
                ["model"],
                {(m,): v for m, v in unpriced.items()},
            )
        )
        out.append(
            _histogram(n("llm_latency_seconds"), "LLM call duration in seconds.", "model", latency)
        )
        out.append(
            _counter(
                n("tool_calls_total"),
                "Tool calls by tool and outcome.",
                ["tool", "status"],
                tool_calls,
            )
        )
        out.append(
            _counter(
                n("tool_failures_total"),
                "Failed tool calls by tool.",
                ["tool"],
                {(t,): v for t, v in tool_failures.items()},
            )
        )
        out.append(
            _histogram(
                n("tool_duration_seconds"), "Tool call duration in seconds.", "tool", tool_latency
            )
        )
        if self.task_name is not None:
            out.append(
                _counter(
                    n("task_success_total"),
                    f"Finished tasks (custom events named {self.task_name!r}) by outcome.",
                    ["status"],
                    {(s,): v for s, v in task_success.items()},
                )
            )
            out.append(
                _histogram(
                    n("task_duration_seconds"),
                    f"Duration of tasks (custom events named {self.task_name!r}) in seconds.",
                    "status",
                    task_duration,
                )
            )
        labels = list(self.labels)
        out.append(
            _counter(
                n("agentledger_requests_total"),
                "Recorded events (every kind) by attribution, kind and outcome.",
                [*labels, "kind", "status"],
                by_requests,
            )
        )
        out.append(
            _counter(
                n("agentledger_tokens_total"),
                "LLM tokens by attribution and type.",
                [*labels, "token_type"],
                by_tokens,
            )
        )
        out.append(
            _counter(
                n("agentledger_cost_usd_total"),
                "Spend in USD (every kind) by attribution.",
                labels,
                {k: float(v) for k, v in by_cost.items()},
            )
        )
        return out

    def error_family(self, errors: int) -> Metric:
        return _counter(
            self._name("agentledger_exporter_scrape_errors_total"),
            "Scrapes whose agentledger figures could not be read (see the log).",
            [],
            {(): errors},
        )


class _Hist:
    __slots__ = ("buckets", "count", "sum_ms")

    def __init__(self) -> None:
        self.buckets = [0] * (len(DURATION_BOUNDS_S) + 1)
        self.count = 0
        self.sum_ms = 0.0

    def add(self, values: Sequence[Any]) -> None:
        self.count += int(values[_CALLS])
        self.sum_ms += float(values[_DURATION_MS])
        for i, c in enumerate(values[HISTOGRAM]):
            self.buckets[i] += int(c)


def _counter(name: str, doc: str, labels: list[str], samples: Mapping[Any, float]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key in sorted(samples):
        family.add_metric(list(key), samples[key])
    return family


def _histogram(name: str, doc: str, label: str, hists: Mapping[str, _Hist]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key in sorted(hists):
        h = hists[key]
        cumulative, running = [], 0
        for le, c in zip(_BUCKET_LE, h.buckets, strict=True):
            running += c
            cumulative.append((le, float(running)))
        family.add_metric([key], cumulative, h.sum_ms / 1000.0)
    return family


class _BaseCollector:
    """Shared scrape logic: read rows, build families; a failed read logs and skips."""

    def __init__(
        self,
        *,
        namespace: str = "",
        labels: Sequence[str] = DEFAULT_LABELS,
        top_n: int | Mapping[str, int] | None = None,
        task_name: str | None = "task",
    ) -> None:
        self._families = _Families(namespace, labels, top_n, task_name)
        self.scrape_errors = 0

    def _rows(self) -> tuple[Sequence[Row], Sequence[Row]]:
        """Rows grouped by the families' detail and attribution dimensions."""
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        """Yield every family, computed now; on a read failure, log and yield only the count.

        A failure never propagates: other collectors in the same registry still answer.
        """
        try:
            families = self._families.build(*self._rows())
        except Exception:
            self.scrape_errors += 1
            log.exception("agentledger: could not read figures for Prometheus; skipped")
            families = []
        yield from families
        yield self._families.error_family(self.scrape_errors)

    def describe(self) -> Iterator[Metric]:
        """The families' names without reading anything (used when registering)."""
        yield from self._families.build([], [])
        yield self._families.error_family(0)


class LedgerCollector(_BaseCollector):
    """This process's live totals from two views of the ledger's aggregates, read at scrape time.

    ``labels`` picks the attribution labels of the ``agentledger_*`` families (and adds
    ``task_id`` to ``llm_requests_total`` when it is chosen); ``top_n`` caps label values
    (an int for every label, or ``{"model": 20, "bot_id": 50}``) to the largest plus
    ``"other"``; ``task_name`` is the name of the custom events counted as tasks.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        namespace: str = "",
        labels: Sequence[str] = DEFAULT_LABELS,
        top_n: int | Mapping[str, int] | None = None,
        task_name: str | None = "task",
    ) -> None:
        super().__init__(namespace=namespace, labels=labels, top_n=top_n, task_name=task_name)
        self.ledger = ledger
        self._views: tuple[Any, Any] | None = None

    def _rows(self) -> tuple[Sequence[Row], Sequence[Row]]:
        # Two live views of the ledger's aggregates, kept current as rows are folded in, so
        # a scrape reads a few hundred accumulators rather than every attribution combination.
        if self._views is None:
            f = self._families
            self._views = (
                self.ledger.aggregates_view(f.detail_dimensions),
                self.ledger.aggregates_view(f.attribution_dimensions),
            )
        detail, attribution = self._views
        return detail.snapshot(), attribution.snapshot()

    def collect(self) -> Iterator[Metric]:
        """The families of :class:`_BaseCollector`, plus seed 001's ``active_tasks`` gauge."""
        yield from super().collect()
        try:
            active = self.ledger.active_tasks
        except Exception:  # a broken ledger must not break the scrape (counted above)
            return
        yield GaugeMetricFamily(
            self._families._name("active_tasks"),
            "Tasks open right now in this process (with ledger.task(...)).",
            value=active,
        )


class StoreCollector(_BaseCollector):
    """The same families computed from the store: every process, all history.

    Counters are monotonic because the store only grows (pruning keeps the rollups), and
    they survive restarts of the applications and of the exporter. Each scrape sums the
    daily rollups (``what`` for the model/tool/task families, ``attribution`` for the
    ``agentledger_*`` ones), so its cost grows with days of history, not with events. Label
    choices no rollup holds (``user_id``, ``task_id``, ``session_id``) read the events table.
    """

    def __init__(
        self,
        url: str | SQLStore,
        *,
        namespace: str = "",
        labels: Sequence[str] = DEFAULT_LABELS,
        top_n: int | Mapping[str, int] | None = None,
        task_name: str | None = "task",
    ) -> None:
        super().__init__(namespace=namespace, labels=labels, top_n=top_n, task_name=task_name)
        from ..store.sql import SQLStore

        self.store = url if isinstance(url, SQLStore) else SQLStore(url)
        f = self._families
        #: Per family group: the rollup that answers it, or None (then the events table).
        self.sources: list[str | None] = []
        self._dims = (f.detail_dimensions, f.attribution_dimensions)
        for dims in self._dims:
            self.sources.append(rollups.choose(dims, histogram=True, dialect=self.store.dialect))

    def _rows(self) -> tuple[Sequence[Row], Sequence[Row]]:
        dialect = self.store.dialect
        marks = self.store.marks() if any(self.sources) else None
        queries = [
            _store_query(dialect, dims)
            if spec is None or marks is None
            else _rollup_query(dialect, spec, dims, marks)
            for spec, dims in zip(self.sources, self._dims, strict=True)
        ]
        with self.store.engine.connect() as conn:
            detail, attribution = (
                [_store_row(r, dims, cumulative=spec is None) for r in conn.execute(query)]
                for query, dims, spec in zip(queries, self._dims, self.sources, strict=True)
            )
        return detail, attribution

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()


def _store_query(dialect: str, dimensions: Sequence[str]) -> Any:
    from sqlalchemy import case, func, select

    from ..query import money_sum
    from ..store.schema import events

    c = events.c
    keys = [c[d] for d in dimensions]
    money = func.coalesce(money_sum(c.cost_usd, dialect), 0)
    columns = [
        func.count(),
        func.coalesce(func.sum(case((c.status == "error", 1), else_=0)), 0),
        func.coalesce(func.sum(c.input_tokens), 0),
        func.coalesce(func.sum(c.output_tokens), 0),
        func.coalesce(func.sum(c.cache_read_tokens), 0),
        func.coalesce(func.sum(c.cache_write_tokens), 0),
        func.coalesce(func.sum(c.reasoning_tokens), 0),
        money,
        func.coalesce(func.sum(case((c.cost_usd.is_(None), 1), else_=0)), 0),
        func.coalesce(func.sum(c.duration_ms), 0.0),
        # Cumulative bucket counts, with the live aggregates' rule (duration <= bound).
        *(
            func.coalesce(func.sum(case((c.duration_ms <= b * 1000.0, 1), else_=0)), 0)
            for b in DURATION_BOUNDS_S
        ),
    ]
    return select(*keys, *columns).group_by(*keys)


def _rollup_query(dialect: str, spec: str, dimensions: Sequence[str], marks: rollups.Marks) -> Any:
    """All history from a rollup, summed by ``dimensions``: its daily rows, and the finer
    rows of the buckets not compacted yet (a few rows a day)."""
    from sqlalchemy import and_, func, or_, select

    from ..query import money_sum, rollup_where
    from ..store.schema import rollup_tables

    c = rollup_tables[spec].c
    pieces = rollups.refine([rollups.Segment("d", None, None)], marks, spec in rollups.MINUTELY)
    where = or_(*(and_(*rollup_where(c, s, {})) for s in pieces))
    keys = [c[d] for d in dimensions]
    money = money_sum(c.cost_extra, dialect)
    sums = [money if m == "cost_extra" else func.sum(c[m]) for m in rollups.measures(spec)]
    return select(*keys, *sums).where(where).group_by(*keys)


def _store_row(row: Sequence[Any], dimensions: Sequence[str], *, cumulative: bool = True) -> Row:
    key: list[Any] = [None] * len(DIMENSIONS)
    for i, dimension in enumerate(dimensions):
        key[_D[dimension]] = rollups.key_value(row[i])
    v = row[len(dimensions) :]
    if not cumulative:  # a rollup's sums: money from its integer columns
        v = rollups.measures_of(v)
    calls = int(v[0])
    counts = [int(x) for x in v[HISTOGRAM:]]
    if cumulative:  # from the events query: counts of durations <= each bound
        buckets = [b - a for a, b in zip([0, *counts], [*counts, calls], strict=True)]
    else:  # from a rollup: the buckets themselves, +Inf last
        buckets = counts
    cost = v[_COST]
    values: list[Any] = [
        calls, *(int(x) for x in v[1:_COST]), Decimal(str(cost)) if cost is not None else
        Decimal(0), int(v[_UNPRICED]), float(v[_DURATION_MS]), buckets,
    ]  # fmt: skip
    return tuple(key), values


# --- serving ---------------------------------------------------------------------------------


def register(
    ledger: Ledger, registry: CollectorRegistry | None = None, **options: Any
) -> LedgerCollector:
    """Register a :class:`LedgerCollector` for ``ledger`` (default registry unless given)."""
    collector = LedgerCollector(ledger, **options)
    (REGISTRY if registry is None else registry).register(collector)
    return collector


def _registry(ledger: Ledger, options: dict[str, Any]) -> CollectorRegistry:
    registry = CollectorRegistry()
    register(ledger, registry, **options)
    return registry


def make_wsgi_app(ledger: Ledger, **options: Any) -> Callable[..., Any]:
    """A WSGI app serving only ``ledger``'s metrics (mount it at ``/metrics``)."""
    return _make_wsgi_app(_registry(ledger, options))


def make_asgi_app(ledger: Ledger, **options: Any) -> Callable[..., Any]:
    """An ASGI app serving only ``ledger``'s metrics (``app.mount("/metrics", ...)``)."""
    return _make_asgi_app(_registry(ledger, options))


class MetricsServer:
    """A running standalone metrics endpoint; :meth:`close` stops it."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.addr = str(httpd.server_address[0])
        self.port = int(httpd.server_address[1])

    @property
    def url(self) -> str:
        """The metrics URL, e.g. ``http://127.0.0.1:9464/metrics``."""
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_collector(collector: _BaseCollector, port: int, addr: str = "127.0.0.1") -> MetricsServer:
    """Serve one collector on ``addr:port`` (``port=0`` picks a free one) in a thread."""
    registry = CollectorRegistry()
    registry.register(collector)
    httpd, thread = _start_http_server(port, addr, registry)
    return MetricsServer(httpd, thread)


def serve(ledger: Ledger, port: int, addr: str = "127.0.0.1", **options: Any) -> MetricsServer:
    """Serve ``ledger``'s metrics on ``http://addr:port/metrics`` from a daemon thread.

    Binds to localhost unless told otherwise; raises ``OSError`` if the port is taken.
    """
    return serve_collector(LedgerCollector(ledger, **options), port, addr)
