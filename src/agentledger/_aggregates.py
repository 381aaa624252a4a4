"""Live in-memory totals per bot, user, task, tenant, session, model, kind and overall.

Updated off the hot path: rows are folded in when the writer drains the buffer, or when a
query asks (it drains first), so answers are exact and instant without costing ``record``.
Each row updates one accumulator, keyed by its whole attribution combination; per-dimension
totals are summed from the combinations at query time. Memory grows with the number of
distinct combinations, never with the number of events.

A :class:`View` keeps the same accumulators for a projection (a few dimensions), updated
with the rows as they are folded in: an exporter that needs totals by ``(model, status)``
and by ``bot_id`` reads a few hundred view accumulators at scrape time instead of summing
every combination (20,000 for 1,000 bots x 20 models). Each combination's accumulator links
to its view accumulators, so a row costs one more update per live view and no lookup.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from operator import itemgetter
from typing import Any, Final

__all__ = ["DIMENSIONS", "EXACT", "Aggregates", "Totals", "View"]

DIMENSIONS: Final = (
    "bot_id", "user_id", "task_id", "tenant_id", "session_id", "model", "kind", "status",
    "provider", "name",
)  # fmt: skip
# Row indexes (see events.ROW_FIELDS) of each dimension, in DIMENSIONS order.
_key_of: Final = itemgetter(10, 11, 12, 13, 14, 9, 6, 24, 8, 7)
_ZERO: Final = Decimal(0)
#: Money sums never round at this precision (the default context rounds at 28 digits).
EXACT: Final = Context(prec=120)
# Latency histogram bounds in seconds: OpenTelemetry's GenAI client operation duration
# boundaries, so live histograms, Prometheus and OTLP agree and merge across processes.
DURATION_BOUNDS_S: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
_BOUNDS_MS: Final = tuple(b * 1000.0 for b in DURATION_BOUNDS_S)
# Accumulator slots: 0 calls, 1 errors, 2-6 tokens, 7 cost, 8 unpriced, 9 duration_ms sum,
# 10 histogram bucket counts (len(bounds) + 1, the last is +Inf); a combination's accumulator
# also has 11, the accumulators of the views it feeds.
HISTOGRAM: Final = 10
_LINKS: Final = 11


@dataclass(frozen=True, slots=True)
class Totals:
    """What a bot, user, task, tenant, model (or everything) has used so far."""

    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = _ZERO
    unpriced_calls: int = 0
    duration_ms: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


def _new() -> list[Any]:
    return [0, 0, 0, 0, 0, 0, 0, _ZERO, 0, 0.0, [0] * (len(_BOUNDS_MS) + 1)]


class View:
    """Accumulators of the same rows keyed by ``dimensions`` only (see the module docstring).

    Made by :meth:`Aggregates.view`; it stops being updated once it is garbage-collected.
    """

    def __init__(self, dimensions: Sequence[str]) -> None:
        bad = [d for d in dimensions if d not in DIMENSIONS]
        if bad or not dimensions:
            raise ValueError(f"view dimensions must be some of {DIMENSIONS}, got {dimensions}")
        self.dimensions = tuple(dimensions)
        self._positions = tuple(DIMENSIONS.index(d) for d in self.dimensions)
        self._data: dict[tuple[Any, ...], list[Any]] = {}

    def _acc(self, key: tuple[Any, ...]) -> list[Any]:
        projected = tuple(key[i] for i in self._positions)
        acc = self._data.get(projected)
        if acc is None:
            acc = self._data[projected] = _new()
        return acc

    def snapshot(self) -> list[tuple[tuple[Any, ...], list[Any]]]:
        """Like :meth:`Aggregates.snapshot`: keys follow DIMENSIONS, None where not kept."""
        out = []
        for projected, acc in self._data.items():
            key: list[Any] = [None] * len(DIMENSIONS)
            for i, value in zip(self._positions, projected, strict=True):
                key[i] = value
            out.append((tuple(key), [*acc[:HISTOGRAM], list(acc[HISTOGRAM])]))
        return out


class Aggregates:
    """Accumulators keyed by attribution combination (see module docstring)."""

    def __init__(self) -> None:
        self._data: dict[tuple[Any, ...], list[Any]] = {}
        self._views: list[weakref.ref[View]] = []
        self._relink = False  # set when a view died: drop its links at the next add

    def view(self, dimensions: Sequence[str]) -> View:
        """A :class:`View` by ``dimensions``, filled from everything folded in so far.

        Call it, and read the view, under the same lock as :meth:`add_rows`.
        """
        view = View(dimensions)
        for key, acc in self._data.items():
            target = view._acc(key)
            _merge(target, acc)
            acc[_LINKS] = (*acc[_LINKS], target)
        self._views.append(weakref.ref(view, self._view_died))
        return view

    def _view_died(self, _ref: object) -> None:
        self._relink = True  # may run in any thread (GC): only flag it

    def _do_relink(self) -> None:
        self._relink = False
        views = [v for ref in self._views if (v := ref()) is not None]
        self._views = [weakref.ref(v, self._view_died) for v in views]
        for key, acc in self._data.items():
            acc[_LINKS] = tuple(v._acc(key) for v in views)

    def _create(self, key: tuple[Any, ...]) -> list[Any]:
        acc = _new()
        acc.append(tuple(v._acc(key) for ref in self._views if (v := ref()) is not None))
        self._data[key] = acc
        return acc

    def add_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        if self._relink:
            self._do_relink()
        data = self._data
        with localcontext(EXACT):  # cost sums: exact (one context switch per batch)
            self._add(data, rows)

    def _add(self, data: dict[tuple[Any, ...], list[Any]], rows: Iterable[tuple[Any, ...]]) -> None:
        for row in rows:
            key = _key_of(row)
            acc = data.get(key)
            if acc is None:
                acc = self._create(key)
            error = row[24] == "error"
            cost = row[21]
            bucket = bisect_left(_BOUNDS_MS, row[5])
            for a in (acc, *acc[_LINKS]) if acc[_LINKS] else (acc,):
                a[0] += 1
                if error:
                    a[1] += 1
                a[2] += row[16]
                a[3] += row[17]
                if row[18]:
                    a[4] += row[18]
                if row[19]:
                    a[5] += row[19]
                if row[20]:
                    a[6] += row[20]
                if cost is None:
                    a[8] += 1
                else:
                    a[7] += cost
                a[9] += row[5]
                a[HISTOGRAM][bucket] += 1

    def get(self, dimension: str, value: Any) -> Totals:
        """Totals of one dimension value; ``("*", None)`` for everything."""
        if dimension == "*":
            return _sum(self._data.values())
        i = DIMENSIONS.index(dimension)
        return _sum(acc for key, acc in self._data.items() if key[i] == value)

    def breakdown(self, dimension: str) -> dict[Any, Totals]:
        i = DIMENSIONS.index(dimension)
        groups: dict[Any, list[list[Any]]] = {}
        for key, acc in self._data.items():
            if key[i] is not None:
                groups.setdefault(key[i], []).append(acc)
        return {value: _sum(accs) for value, accs in groups.items()}

    def snapshot(self) -> list[tuple[tuple[Any, ...], list[Any]]]:
        """A copy of every (key, accumulator) for exporters; keys follow DIMENSIONS."""
        return [(key, [*acc[:HISTOGRAM], list(acc[HISTOGRAM])]) for key, acc in self._data.items()]

    def clear(self) -> None:
        self._data.clear()
        for ref in self._views:
            view = ref()
            if view is not None:
                view._data.clear()


def _merge(target: list[Any], acc: list[Any]) -> None:
    with localcontext(EXACT):
        for i in range(HISTOGRAM):
            target[i] += acc[i]
    hist = target[HISTOGRAM]
    for i, count in enumerate(acc[HISTOGRAM]):
        hist[i] += count


def _sum(accs: Iterable[list[Any]]) -> Totals:
    total = _new()
    with localcontext(EXACT):
        for acc in accs:
            for i in range(HISTOGRAM):
                total[i] += acc[i]
    return Totals(*total[:HISTOGRAM])
