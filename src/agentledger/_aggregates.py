"""Live in-memory totals per bot, user, task, tenant, session, model, kind and overall.

Updated off the hot path: rows are folded in when the writer drains the buffer, or when a
query asks (it drains first), so answers are exact and instant without costing ``record``.
Each row updates one accumulator, keyed by its whole attribution combination; per-dimension
totals are summed from the combinations at query time. Memory grows with the number of
distinct combinations, never with the number of events.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from typing import Any, Final

__all__ = ["DIMENSIONS", "Aggregates", "Totals"]

DIMENSIONS: Final = (
    "bot_id", "user_id", "task_id", "tenant_id", "session_id", "model", "kind", "status",
    "provider", "name",
)  # fmt: skip
# Row indexes (see events.ROW_FIELDS) of each dimension, in DIMENSIONS order.
_key_of: Final = itemgetter(10, 11, 12, 13, 14, 9, 6, 24, 8, 7)
_ZERO: Final = Decimal(0)
# Latency histogram bounds in seconds: OpenTelemetry's GenAI client operation duration
# boundaries, so live histograms, Prometheus and OTLP agree and merge across processes.
DURATION_BOUNDS_S: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
_BOUNDS_MS: Final = tuple(b * 1000.0 for b in DURATION_BOUNDS_S)
# Accumulator slots: 0 calls, 1 errors, 2-6 tokens, 7 cost, 8 unpriced, 9 duration_ms sum,
# 10 histogram bucket counts (len(bounds) + 1, the last is +Inf).
HISTOGRAM: Final = 10


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


class Aggregates:
    """Accumulators keyed by attribution combination (see module docstring)."""

    def __init__(self) -> None:
        self._data: dict[tuple[Any, ...], list[Any]] = {}

    def add_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        data = self._data
        for row in rows:
            key = _key_of(row)
            acc = data.get(key)
            if acc is None:
                acc = data[key] = _new()
            acc[0] += 1
            if row[24] == "error":
                acc[1] += 1
            acc[2] += row[16]
            acc[3] += row[17]
            if row[18]:
                acc[4] += row[18]
            if row[19]:
                acc[5] += row[19]
            if row[20]:
                acc[6] += row[20]
            cost = row[21]
            if cost is None:
                acc[8] += 1
            else:
                acc[7] += cost
            acc[9] += row[5]
            acc[10][bisect_left(_BOUNDS_MS, row[5])] += 1

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


def _sum(accs: Iterable[list[Any]]) -> Totals:
    total = _new()
    for acc in accs:
        for i in range(HISTOGRAM):
            total[i] += acc[i]
    return Totals(*total[:HISTOGRAM])
