"""Live aggregates and their views: a view always equals the full snapshot regrouped."""

from __future__ import annotations

import gc
import os
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentledger import ConfigError, Ledger
from agentledger._aggregates import DIMENSIONS, HISTOGRAM, Aggregates

BOTS = st.sampled_from(["a", "b", "c", None])
MODELS = st.sampled_from(["gpt-4o", "gpt-4o-mini", "claude-3-5-haiku-latest"])
CALL = st.tuples(
    BOTS,
    st.sampled_from(["t1", "t2", None]),
    MODELS,
    st.sampled_from(["ok", "error"]),
    st.integers(0, 10_000),
    st.integers(0, 5_000),
    st.floats(0, 120_000, allow_nan=False),
    st.sampled_from([None, "0.5", "0.000125"]),
)


def regroup(snapshot: list[tuple[tuple[Any, ...], list[Any]]], dims: tuple[str, ...]) -> dict:
    """The full snapshot summed by ``dims``: what a view must hold."""
    out: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0] * HISTOGRAM + [None])
    for key, values in snapshot:
        acc = out[tuple(key[DIMENSIONS.index(d)] for d in dims)]
        for i in range(HISTOGRAM):
            acc[i] += values[i]
        hist = values[HISTOGRAM]
        acc[HISTOGRAM] = (
            list(hist)
            if acc[HISTOGRAM] is None
            else [x + y for x, y in zip(acc[HISTOGRAM], hist, strict=True)]
        )
    return {key: _rounded(values) for key, values in out.items()}


def _rounded(values: list[Any]) -> list[Any]:
    """Duration sums are floats, added in another order by a view: compare them to 1 ns."""
    return [*values[:9], round(values[9], 6), *values[10:]]


def as_dict(view_snapshot: list[tuple[tuple[Any, ...], list[Any]]], dims: tuple[str, ...]) -> dict:
    return {
        tuple(key[DIMENSIONS.index(d)] for d in dims): _rounded(values)
        for key, values in view_snapshot
    }


def record(ledger: Ledger, calls: list[tuple[Any, ...]]) -> None:
    for bot, tenant, model, status, inp, out, ms, cost in calls:
        ledger.record_llm(
            model,
            inp,
            out,
            bot_id=bot,
            tenant_id=tenant,
            status=status,
            duration_ms=ms,
            cost_usd=None if cost is None else Decimal(cost),
        )


@settings(max_examples=40, deadline=None)
@given(before=st.lists(CALL, max_size=30), after=st.lists(CALL, max_size=30))
def test_views_equal_the_full_snapshot_regrouped(before: list[Any], after: list[Any]) -> None:
    """Made before or after rows arrive, a view holds exactly the regrouped combinations."""
    with Ledger(handle_signals=False) as ledger:
        early = ledger.aggregates_view(("model", "status"))
        early.snapshot()
        record(ledger, before)
        late = ledger.aggregates_view(("bot_id", "tenant_id", "kind"))
        late.snapshot()  # created here, from what was folded in so far
        record(ledger, after)
        full = ledger.aggregates_snapshot()
        assert as_dict(early.snapshot(), ("model", "status")) == regroup(full, ("model", "status"))
        dims = ("bot_id", "tenant_id", "kind")
        assert as_dict(late.snapshot(), dims) == regroup(full, dims)
        assert sum(v[0] for _, v in early.snapshot()) == len(before) + len(after)


def test_a_dropped_view_is_unlinked_and_others_keep_counting() -> None:
    agg = Aggregates()
    keep = agg.view(("model",))
    drop = agg.view(("bot_id",))
    row = _row(bot="a", model="m")
    agg.add_rows([row])
    del drop
    gc.collect()
    agg.add_rows([row, _row(bot="b", model="m")])
    (acc,) = agg._data.values().__iter__().__next__()[11:]  # links of the first combination
    assert len(acc) == 1  # only the live view is still fed
    assert as_dict(keep.snapshot(), ("model",))[("m",)][0] == 3


def test_clear_empties_views_too() -> None:
    agg = Aggregates()
    view = agg.view(("model",))
    agg.add_rows([_row(bot="a", model="m")])
    agg.clear()
    assert view.snapshot() == []


def test_bad_view_dimensions_are_config_errors() -> None:
    with Ledger(handle_signals=False) as ledger:
        for bad in ("model", ("nope",), ("model", "cost_usd"), (), ("model", "model")):
            with pytest.raises(ConfigError):
                ledger.aggregates_view(bad)  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_view_follows_the_fresh_aggregates_of_a_forked_child() -> None:
    """The child starts from zero; its view counts only the child's calls."""
    with Ledger(handle_signals=False) as ledger:
        view = ledger.aggregates_view(("model",))
        ledger.record_llm("gpt-4o", 1, 1, cost_usd=Decimal(1))
        assert view.snapshot()[0][1][0] == 1
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            try:
                ledger.record_llm("gpt-4o", 1, 1, cost_usd=Decimal(1))
                ledger.record_llm("gpt-4o", 1, 1, cost_usd=Decimal(1))
                os.write(write, str(view.snapshot()[0][1][0]).encode())
            finally:
                os._exit(0)
        os.close(write)
        child_calls = os.read(read, 100).decode()
        os.waitpid(pid, 0)
        assert child_calls == "2"
        assert view.snapshot()[0][1][0] == 1


def _row(*, bot: str, model: str) -> tuple[Any, ...]:
    row: list[Any] = [None] * 28
    row[5] = 100.0  # duration_ms
    row[6], row[9], row[10] = "llm", model, bot
    row[16], row[17] = 10, 5
    row[21] = Decimal("0.1")
    row[24] = "ok"
    return tuple(row)


def test_live_cost_sums_do_not_round_at_28_digits() -> None:
    """Decimal's default context keeps 28 significant digits: a sum of a large and a tiny
    cost (31 digits) would come back rounded from the live totals, unlike from the store."""
    big, tiny = Decimal("1000000.000000000000000000000001"), Decimal("2E-24")
    exact = Decimal("1000000.000000000000000000000003")
    with Ledger(None, handle_signals=False, strict=True) as ledger:
        view = ledger.aggregates_view(["bot_id"])
        ledger.record_llm("gpt-4o", 1, 1, cost_usd=big, bot_id="b")
        ledger.record_llm("gpt-4o", 1, 1, cost_usd=tiny, bot_id="b")
        assert ledger.totals().cost_usd == exact
        assert ledger.totals(bot_id="b").cost_usd == exact
        assert ledger.breakdown("bot_id")["b"].cost_usd == exact
        ((_key, values),) = view.snapshot()
        assert values[7] == exact
        late = ledger.aggregates_view(["model"])  # filled from what is there (_merge)
        ((_key, values),) = late.snapshot()
        assert values[7] == exact
