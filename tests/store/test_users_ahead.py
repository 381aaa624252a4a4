"""The open hours' ``users`` groups a PostgreSQL writer keeps in memory for compaction
(:class:`agentledger.store.rollups.UsersAhead`): the same rows as grouping the events, and
the events whenever this process did not see every event of an hour."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentledger.query import Query
from agentledger.store import rollups
from agentledger.store import sql as sql_module
from agentledger.store.rollups import HOUR_US, UsersAhead
from agentledger.store.schema import to_epoch_us
from agentledger.store.sql import SQLStore

from .test_rollups import _users_rows

HOUR0 = to_epoch_us(datetime(2026, 3, 2, 10, tzinfo=UTC))
#: Costs of every form a rollup sums: none, zero, plain, fractions of a nano-dollar (two
#: carry into cost_nano), beyond 21 decimal places, negative, and large enough that a few
#: of them pass NANO_CAP together.
COSTS = (None, "0", "0.5", "0.00000725", "0.0000000007", "0.123456789123456789123",
         "0.0000000000000000000000001", "-0.25", "3.1E+9")  # fmt: skip


def _row(started_us: int, cost: str | None, user: str | None, kind: str = "llm") -> tuple[Any, ...]:
    row: list[Any] = [None] * 28
    row[0], row[1], row[2] = str(uuid.uuid4()), "t" * 32, "s" * 16
    row[4], row[5], row[6], row[7], row[11] = started_us / 1e6, 5.0, kind, "x", user
    row[10], row[13] = "bot", "tenant"
    row[16:25] = [10, 2, 1, 0, 3, cost, "priced" if cost else "unpriced", None, "ok"]
    return tuple(row)


def _hour_rows(rows: list[tuple[Any, ...]], lo: int) -> dict[int, list[tuple[Any, ...]]]:
    """The ``users`` hour rows :func:`rollups.fold` makes of ``rows``, by hour from ``lo``."""
    out: dict[int, list[tuple[Any, ...]]] = {}
    for row in rollups.fold(rollups.group(rows, raw=True))["users"]:
        if row[0] == "h" and row[1] >= lo:
            out.setdefault(row[1], []).append(row)
    return out


_EVENTS = st.lists(
    st.tuples(st.integers(0, 3 * 60 - 1), st.sampled_from(COSTS),
              st.sampled_from(["u1", "u2", None]), st.sampled_from(["llm", "tool"])),
    min_size=1, max_size=60,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(events=_EVENTS, cuts=st.lists(st.integers(0, 60), max_size=5), mark=st.integers(0, 3))
def test_batches_summed_ahead_equal_one_grouping_of_every_event(
    events: list[tuple[int, str | None, str | None, str]], cuts: list[int], mark: int
) -> None:
    """Batches (any split of the events, in time order) summed ahead give, for the hours at
    or after the mark they were written under, exactly the rows of grouping every event of
    those hours at once; earlier hours (written to the database directly) are not kept."""
    rows = [_row(HOUR0 + minute * 60_000_000, cost, user, kind)
            for minute, cost, user, kind in sorted(events, key=lambda e: e[0])]  # fmt: skip
    hour_mark = HOUR0 + mark * HOUR_US
    ahead, python = UsersAhead(), UsersAhead()  # merged compiled (where built), in Python
    bounds = [0, *sorted(c for c in cuts if c < len(rows)), len(rows)]
    for a, b in itertools.pairwise(bounds):
        if a < b:
            groups = rollups.group(rows[a:b], raw=True).users
            ahead.add(groups, hour_mark)
            if b % 2:
                ahead.merge()  # some summed as they come, the rest when taken
            python._merge_py(groups, hour_mark)
    expected = {hour: sorted(r, key=repr) for hour, r in _hour_rows(rows, hour_mark).items()}
    for which in (ahead, python):
        held = which.take(HOUR0 - HOUR_US, HOUR0 + 3 * HOUR_US)
        assert {hour: sorted(r, key=repr) for hour, (_, r) in held.items()} == expected
        for hour, (calls, _) in held.items():
            assert calls == sum(1 for r in rows if 0 <= round(r[4] * 1e6) - hour < HOUR_US)
        assert which.size == 0
        assert not which.hours
        assert not which.pending


@pytest.mark.parametrize("compiled", [True, False])
def test_fractions_of_a_nano_dollar_carry_across_batches(compiled: bool) -> None:
    """Two batches' 0.7 nano-dollars of one user: 1 nano-dollar and 0.4 (in 1e-21 USD)."""
    ahead = UsersAhead()
    for i in range(2):
        groups = rollups.group([_row(HOUR0 + i, "0.0000000007", "u")], raw=True).users
        if compiled:
            ahead.add(groups, 0)
            ahead.merge()
        else:
            ahead._merge_py(groups, 0)
    ((calls, rows),) = ahead.take(HOUR0, HOUR0 + HOUR_US).values()
    nano, frac, extra = rows[0][4 + rollups.COST : 4 + rollups.COST + 3]
    assert (calls, nano, frac, extra) == (2, 1, 4 * 10**11, None)


def test_take_forgets_earlier_hours_and_keeps_later_ones() -> None:
    rows = [_row(HOUR0 + h * HOUR_US, "0.5", "u") for h in range(4)]
    ahead = UsersAhead()
    ahead.add(rollups.group(rows, raw=True).users, 0)
    held = ahead.take(HOUR0 + HOUR_US, HOUR0 + 3 * HOUR_US)
    assert sorted(held) == [HOUR0 + HOUR_US, HOUR0 + 2 * HOUR_US]  # HOUR0 dropped, unused
    assert list(ahead.hours) == [HOUR0 + 3 * HOUR_US]
    assert ahead.size == 1


def test_hours_another_process_compacted_are_forgotten_at_the_next_batch() -> None:
    ahead = UsersAhead()
    ahead.add(rollups.group([_row(HOUR0 + h * HOUR_US, "1", "u") for h in range(2)],
                            raw=True).users, HOUR0)  # fmt: skip
    ahead.merge()
    assert sorted(ahead.hours) == [HOUR0, HOUR0 + HOUR_US]
    ahead.add({}, HOUR0 + HOUR_US)  # written after the mark moved on: 10:00 is compacted
    assert sorted(ahead.hours) == [HOUR0 + HOUR_US]
    assert ahead.size == 1


def test_past_its_size_it_starts_again_empty() -> None:
    ahead = UsersAhead(max_groups=3)
    ahead.add(rollups.group([_row(HOUR0, "1", f"u{i}") for i in range(3)], raw=True).users, 0)
    ahead.merge()
    assert ahead.size == 3
    ahead.add(rollups.group([_row(HOUR0, "1", "u9")], raw=True).users, 0)
    ahead.merge()
    assert ahead.size == 0
    assert not ahead.hours


# --- on the real PostgreSQL -----------------------------------------------------------------


def _store(url: str, now: list[int], **ahead: Any) -> SQLStore:
    store = SQLStore(url)
    store.clock = lambda: now[0] / 1e6
    if ahead:
        store._ahead = UsersAhead(**ahead)
    return store


def _assert_rows_are_the_events(store: SQLStore) -> None:
    """The ``users`` hour and day rows equal a rebuild's (the writer's fold of every
    event), and answers by user equal the events'."""
    built = {grain: _users_rows(store, grain) for grain in ("h", "d")}
    assert built["h"]
    store.rebuild_rollups()
    assert {grain: _users_rows(store, grain) for grain in ("h", "d")} == built
    assert Query(store).breakdown(("user_id", "kind")) == Query(store, use_rollups=False).breakdown(
        ("user_id", "kind")
    )


@pytest.mark.postgres
def test_postgresql_compaction_writes_the_hours_this_writer_saw_whole_from_memory(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hours every event of which this store wrote come from memory, through replayed
    batches (nothing added twice) and a batch whose transaction failed (nothing added);
    the rows are the events' exactly."""
    now = [HOUR0 + 5 * 60_000_000]
    store = _store(pg_url, now)
    store.compact()  # marks at 10:00
    batches = [[_row(HOUR0 + (b * 20 + i) * 60_000_000, COSTS[i % len(COSTS)], f"u{i % 4}",
                     ("llm", "tool")[i % 2]) for i in range(20)] for b in range(5)]  # fmt: skip
    failing = {"left": 1}
    real = sql_module._or_members_postgres

    def fail_once(cur: Any, params: list[Any]) -> None:
        if failing["left"]:
            failing["left"] -= 1
            raise RuntimeError("the connection dropped")
        real(cur, params)

    monkeypatch.setattr(sql_module, "_or_members_postgres", fail_once)
    for batch in batches:
        now[0] = int(batch[-1][4] * 1e6)
        try:
            store.write(batch)
        except Exception:
            assert store.write(batch) == len(batch)  # retried whole
        assert store.write(batch) == 0  # a replay: nothing new
    assert failing["left"] == 0
    assert store._ahead is not None
    assert store._ahead.from_memory == 1
    store.compact(now=now[0] / 1e6 + 86_400)
    assert (store._ahead.from_memory, store._ahead.from_events) == (2, 0)
    _assert_rows_are_the_events(store)
    store.close()


@pytest.mark.postgres
def test_postgresql_hours_another_writer_shared_are_grouped_from_the_events(
    pg_url: str,
) -> None:
    """Two stores (two processes) write the same hour: the one that compacts it did not see
    all of it, so its rows come from the events; an hour only it wrote comes from its
    memory; a store that dropped its groups (past its size) falls back too."""
    now = [HOUR0 + 5 * 60_000_000]
    first, second = _store(pg_url, now), _store(pg_url, now)
    small = _store(pg_url, now, max_groups=2)
    first.compact()  # marks at 10:00
    first.write([_row(HOUR0 + 60_000_000, "0.5", "u1"), _row(HOUR0 + 120_000_000, "1", "u2")])
    second.write([_row(HOUR0 + 180_000_000, "0.25", "u1", "tool")])
    now[0] = HOUR0 + HOUR_US + 30_000_000
    first.compact()  # 10:00, shared
    assert first._ahead is not None
    assert second._ahead is not None
    assert (first._ahead.from_memory, first._ahead.from_events) == (0, 1)
    first.write([_row(now[0] + 60_000_000 * i, "0.5", f"u{i}") for i in range(1, 3)])
    now[0] += HOUR_US
    first.compact()  # 11:00, first's alone
    assert (first._ahead.from_memory, first._ahead.from_events) == (1, 1)
    small.write([_row(now[0] + 60_000_000, "2", f"u{i}") for i in range(3)])
    small.write([_row(now[0] + 120_000_000, "2", "u1")])  # its groups pass 2: dropped
    now[0] += HOUR_US
    small.compact()  # 12:00, small's alone, but it holds one event of the four
    assert small._ahead is not None
    assert (small._ahead.from_memory, small._ahead.from_events) == (0, 1)
    assert second._ahead.from_memory == second._ahead.from_events == 0
    first.compact(now=now[0] / 1e6 + 86_400)
    _assert_rows_are_the_events(first)
    for store in (first, second, small):
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("ahead", [True, False])
def test_postgresql_an_hours_money_past_64_bits_compacts_exactly(pg_url: str, ahead: bool) -> None:
    """One user's hour summing past 2**63 nano-dollars (1,000 events of MAX_COST_USD):
    compaction caps it into cost_extra, from memory or from the events (whose numeric sum
    once overflowed a bigint cast), and the answers stay exact."""
    now = [HOUR0 + 5 * 60_000_000]
    store = _store(pg_url, now)
    if not ahead:
        store._ahead = None
    store.compact()
    cost = "10000000"
    for b in range(2):
        batch = [_row(HOUR0 + (b * 500 + i) * 1_000_000, cost, "whale") for i in range(500)]
        assert store.write(batch) == 500
    store.compact(now=now[0] / 1e6 + 86_400)
    assert store._ahead is None or store._ahead.from_memory == 1
    raw, query = Query(store, use_rollups=False), Query(store)
    assert raw.totals().cost_usd == 10**10
    assert query.breakdown("user_id") == raw.breakdown("user_id")
    assert all(abs(m[rollups.COST]) < rollups.NANO_CAP for m in _users_rows(store).values())
    _assert_rows_are_the_events(store)
    store.close()
