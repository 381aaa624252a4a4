"""The compiled grouping of rollups (agentledger.store._fold) against its Python definition."""

from __future__ import annotations

import math
import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from agentledger.store import rollups, sql
from agentledger.store.schema import from_epoch_us, rollup_members, rollup_tables
from agentledger.store.sql import SQLStore

_fold = pytest.importorskip(
    "agentledger.store._fold", reason="the compiled part is not built (pure-Python install)"
)
BOUNDS = rollups._BOUNDS_MS
DAY0 = 20_000 * rollups.DAY_US


def test_ci_builds_and_uses_the_compiled_part() -> None:
    """CI installs from the project's files: the extension must be there and in use."""
    if os.environ.get("CI") and not os.environ.get("AGENTLEDGER_PURE_PYTHON"):
        assert rollups.COMPILED


_FIELDS = {
    "duration": 5, "kind": 6, "name": 7, "provider": 8, "model": 9, "bot": 10, "user": 11,
    "tenant": 13, "input": 16, "output": 17, "cache_read": 18, "cache_write": 19,
    "reasoning": 20, "source": 22, "status": 24,
}  # fmt: skip


def _row(started: Any, cost: Any = "0.5", **fields: Any) -> tuple[Any, ...]:
    row: list[Any] = [None] * 28
    row[0], row[1], row[2] = str(uuid.uuid4()), "t" * 32, "s" * 16
    row[4], row[5], row[6], row[7], row[24] = started, 5.0, "llm", "gpt-4o", "ok"
    row[8], row[9], row[10], row[11], row[13] = "openai", "gpt-4o", "bot", "user", "tenant"
    row[16:24] = [10, 2, 0, 0, 0, cost, "priced", None]
    for name, value in fields.items():
        row[_FIELDS[name]] = value
    return tuple(row)


def _same(compiled: tuple[Any, ...], python: rollups.Grouped) -> None:
    """Equal keys in the same order and equal sums; duration sums (floats) up to rounding
    (Python 3.12's sum() compensates its float additions)."""
    for mine, theirs in zip(compiled, python, strict=True):
        assert list(mine) == list(theirs)
        for key, value in mine.items():
            expected = theirs[key]
            if isinstance(value, set):
                assert value == expected
                continue
            assert len(value) == len(expected)
            for i, (a, b) in enumerate(zip(value, expected, strict=True)):
                if i == rollups.COST + 4:  # duration_ms
                    assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9), key
                else:
                    assert a == b, (key, i, a, b)
                    assert type(a) is type(b), (key, i, a, b)


def _cost(digits: int, exponent: int, as_text: bool) -> Any:
    """A cost as the store holds it: decimal text (``str`` of a Decimal: '0.0015', '0E-7',
    '1.5E+3'), or a Decimal (PostgreSQL's rebuild reads them)."""
    value = Decimal(digits).scaleb(exponent)
    return str(value) if as_text else value


_costs = st.one_of(
    st.none(),
    st.just("0"),
    st.builds(_cost, st.integers(0, 10**24), st.integers(-21, 3), st.booleans()).filter(
        lambda cost: Decimal(cost) < 10**9  # beyond: cost_extra (see the give-up cases)
    ),
)
_labels = st.sampled_from(["a", "b", "c"])
_maybe = st.one_of(st.none(), _labels)
_rows = st.builds(
    lambda minute, second, cost, duration, kind, status, name, provider, bot, user, tenant,
    tokens, source: _row(
        DAY0 + minute * rollups.MINUTE_US + second, cost, duration=duration, kind=kind,
        status=status, name=name, provider=provider, model=provider and name, bot=bot,
        user=user, tenant=tenant, input=tokens[0], output=tokens[1], cache_read=tokens[2],
        cache_write=tokens[3], reasoning=tokens[4], source=source,
    ),
    st.integers(0, 180), st.integers(0, rollups.MINUTE_US - 1), _costs,
    st.one_of(st.sampled_from([0.0, *BOUNDS]), st.floats(0, 1e9), st.integers(0, 10**6)),
    st.sampled_from(["llm", "tool", "command"]), st.sampled_from(["ok", "error"]), _labels,
    _maybe, _maybe, _maybe, _maybe,
    st.lists(st.integers(0, 2**40), min_size=5, max_size=5),
    st.sampled_from(["priced", "unpriced", "reported"]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_rows, max_size=60).map(lambda rows: sorted(rows, key=lambda r: r[4])))
def test_compiled_grouping_equals_the_python_definition(rows: list[tuple[Any, ...]]) -> None:
    compiled = _fold.group(rows, BOUNDS)
    assert compiled is not None  # plain costs, tokens and times: C handles every one
    _same(compiled, rollups.group_py(rows))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_rows, max_size=60).map(lambda rows: sorted(rows, key=lambda r: r[4])),
    st.integers(-1, 4).map(lambda h: DAY0 + h * rollups.HOUR_US),
)
def test_users_before_leaves_out_only_the_later_hours_users(
    rows: list[tuple[Any, ...]], cut: int
) -> None:
    """PostgreSQL's writers fold users rows only below the hour mark (lazy users): the
    compiled grouping told so makes no others, and the folded rows are the same."""
    compiled = _fold.group(rows, BOUNDS, False, cut)
    assert compiled is not None
    python = rollups.group_py(rows)
    below = {k: v for k, v in python.users.items() if k[0] < cut}
    _same(compiled, python._replace(users=below))
    marks = rollups.Marks(cut, cut - cut % rollups.DAY_US, cut)
    whole = _fold.group(rows, BOUNDS)  # (the same float sums: compared exactly)
    assert rollups.fold(rollups.Grouped(*compiled), marks, lazy_users=True) == rollups.fold(
        rollups.Grouped(*whole), marks, lazy_users=True
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(_rows, min_size=1, max_size=30))
def test_rows_out_of_time_order_group_the_same(rows: list[tuple[Any, ...]]) -> None:
    compiled = _fold.group(rows, BOUNDS)
    assert compiled is not None
    _same(compiled, rollups.group_py(rows))


@pytest.mark.parametrize(
    "row",
    [
        _row(DAY0, "-0.5"),  # negative: cost_nano below zero
        _row(DAY0, "0." + "0" * 21 + "1"),  # 22 decimal places: cost_extra
        _row(DAY0, Decimal("1E-22")),
        _row(DAY0, "NaN"),
        _row(DAY0, "Infinity"),
        _row(DAY0, "5000000000"),  # $5e9: more nano-dollars than the integers hold
        _row(DAY0, "1E+10"),
        _row(DAY0, 0.5),  # a float cost: not a store-ready value
        _row(DAY0, "1.2.3"),
        _row(DAY0, ""),
        _row(DAY0, input=2**63),  # more than 64 bits
        _row(DAY0, input=None),
        _row(DAY0, input=10.5),  # not an integer
        _row(DAY0, reasoning=True),
        _row(-rollups.MINUTE_US),  # before 1970
        _row(float(DAY0)),
        _row(DAY0, duration=None),
    ],
)
def test_what_the_compiled_part_cannot_sum_exactly_goes_to_python(row: tuple[Any, ...]) -> None:
    assert _fold.group([_row(DAY0), row], BOUNDS) is None
    try:
        expected: Any = rollups.group_py([_row(DAY0), row])
    except Exception as exc:  # values the store never holds: the same error either way
        with pytest.raises(type(exc)):
            rollups.group([_row(DAY0), row])
        return
    _same(tuple(rollups.group([_row(DAY0), row])), expected)


def test_sums_past_64_bits_go_to_python() -> None:
    rows = [_row(DAY0, input=2**62), _row(DAY0 + 1, input=2**62)]
    assert _fold.group(rows, BOUNDS) is None
    assert rollups.group(rows).what[(DAY0, "llm", "ok", "openai", "gpt-4o", "gpt-4o")][2] == 2**63


def test_money_carries_from_fractions_into_nano_dollars() -> None:
    rows = [_row(DAY0 + i, "0.0000000009999999999999") for i in range(3)]  # 22 digits: Python
    assert _fold.group(rows, BOUNDS) is None
    rows = [_row(DAY0 + i, "0.000000000999999999999") for i in range(3)]
    compiled = _fold.group(rows, BOUNDS)
    assert compiled is not None
    (measures,) = compiled[0].values()
    assert measures[rollups.COST : rollups.COST + 3] == (2, 999_999_999_997, None)
    _same(compiled, rollups.group_py(rows))


def _rollup_rows(store: SQLStore) -> dict[str, list[tuple[Any, ...]]]:
    with store.engine.connect() as conn:
        out = {n: sorted(map(tuple, conn.execute(select(t)))) for n, t in rollup_tables.items()}
        out["members"] = sorted(map(tuple, conn.execute(select(rollup_members))))
    return out


def _batches(base: float) -> list[list[tuple[Any, ...]]]:
    """Five batches of 40 events (float seconds, as the ledger writes them), then one the
    compiled part hands back (a cost with 22 decimal places) and one with a datetime."""
    batches = [
        [
            _row(
                base + 7 * i + j,
                f"0.00{i}{j}5",
                user=f"u{j % 3}",
                duration=10.0 ** (j % 5),
                status="error" if j % 4 == 0 else "ok",
            )
            for j in range(40)
        ]
        for i in range(5)
    ]
    batches.append([_row(base + 400, "0." + "0" * 21 + "7"), _row(base + 401, "0.25")])
    batches.append([_row(datetime.fromtimestamp(base + 402.5, UTC), Decimal("0.125"), user="u9")])
    return batches


def test_a_store_writes_the_same_rollups_either_way(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches through the compiled part and through Python give the same stored rows,
    including a batch the compiled part hands back (a cost with 22 decimal places)."""
    base = DAY0 / 1e6
    batches = _batches(base)
    stores = {}
    for name, compiled in (("c", rollups._group_c), ("py", None)):
        monkeypatch.setattr(rollups, "_group_c", compiled)
        store = stores[name] = SQLStore(f"sqlite:///{tmp_path / name}.db")
        store.clock = lambda: base + 3 * 86_400.0  # every bucket closed: compacted too
        for batch in batches:
            assert store.write(batch) == len(batch)
    try:
        assert _rollup_rows(stores["c"]) == _rollup_rows(stores["py"])
    finally:
        for store in stores.values():
            store.close()


def test_postgresql_writes_the_same_rollups_either_way(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the compiled part also reads the rows as written (float seconds) and
    writes the COPY text of the rollup rows: the same stored rows as the Python path."""
    base = DAY0 / 1e6
    found = {}
    store = SQLStore(pg_url)
    store.clock = lambda: base + 3 * 86_400.0
    try:
        for name, group, copy_text in (
            ("c", rollups._group_c, sql._COPY_TEXT_C),
            ("py", None, None),
        ):
            monkeypatch.setattr(rollups, "_group_c", group)
            monkeypatch.setattr(sql, "_COPY_TEXT_C", copy_text)
            with store.engine.begin() as conn:
                conn.exec_driver_sql(
                    "TRUNCATE events, rollup_members, user_numbers, rollup_user_totals, "
                    + ", ".join(t.name for t in rollup_tables.values())
                    + " RESTART IDENTITY"  # user numbers from 1 again
                )
                conn.exec_driver_sql("UPDATE rollup_marks SET upto = 0")
            store._user_numbers.clear()
            for batch in _batches(base):
                assert store.write(batch) == len(batch)
            found[name] = _rollup_rows(store)
        assert found["c"] == found["py"]
        calls = 2 + len(rollups.SPECS["what"])
        assert sum(r[calls] for r in found["c"]["what"] if r[0] == "d") == 203
        assert not found["c"]["kinds"]  # derived on PostgreSQL: read from what
    finally:
        store.close()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(0, 4e9, allow_nan=False)
        | st.integers(0, 4 * 10**15).map(lambda us: us / 1e6)  # µs-exact and halves
        | st.integers(0, 4 * 10**9).map(lambda s: s + 0.0000005),
        min_size=1,
        max_size=20,
    )
)
def test_float_seconds_are_read_as_the_store_rounds_them(starts: list[float]) -> None:
    """``group(rows, raw=True)`` equals grouping the store-ready rows (``round(s * 1e6)``,
    half to even) that SQLite stores: the same buckets for the same events."""
    rows = [_row(s, user=f"u{i % 3}") for i, s in enumerate(starts)]
    compiled = _fold.group(rows, BOUNDS, True)
    assert compiled is not None
    _same(compiled, rollups.group_py([rollups.store_ready(r) for r in rows]))


@pytest.mark.parametrize(
    "started",
    [-1.0, math.nan, math.inf, 1e19, datetime.fromtimestamp(1_700_000_000, UTC), 1_700_000_000],
)
def test_starts_the_compiled_part_does_not_read_go_to_python(started: Any) -> None:
    """An int (seconds or µs? the raw rows hold floats), a datetime, or a float outside
    1970..2255: the compiled part gives up; ``group(raw=True)`` converts and runs Python."""
    rows = [_row(1_700_000_000.0), _row(started)]
    assert _fold.group(rows, BOUNDS, True) is None
    try:
        expected = rollups.group_py([rollups.store_ready(r) for r in rows])
    except (ValueError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            rollups.group(rows, raw=True)
        return
    _same(tuple(rollups.group(rows, raw=True)), expected)


_texts = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "a\\b", "tab\there", "line\nbreak", "cr\rx", "\\N", "é€😀"]
)
_values = st.one_of(
    st.none(), _texts, st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.decimals(allow_nan=False, allow_infinity=False), st.booleans(),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["m", "h", "d"]), st.integers(0, 4 * 10**15)).flatmap(
            lambda head: st.lists(_values, max_size=8).map(lambda rest: (*head, *rest))
        ),
        max_size=20,
    )
)
def test_compiled_copy_text_writes_every_value_as_copy_reads_it(
    rows: list[tuple[Any, ...]],
) -> None:
    """Strings with COPY's special characters escaped, None as \\N, the bucket through
    the given function (once per bucket), anything else as ``str()`` writes it."""

    def field(i: int, value: Any) -> str:
        if i == 1:
            return from_epoch_us(value).isoformat()
        if value is None:
            return "\\N"
        return sql._copy_escape(value if isinstance(value, str) else str(value))

    expected = "".join("\t".join(field(i, v) for i, v in enumerate(row)) + "\n" for row in rows)
    calls: list[int] = []

    def bucket_text(us: int) -> str:
        calls.append(us)
        return from_epoch_us(us).isoformat()

    assert _fold.copy_text(rows, 2, bucket_text) == expected.encode()
    assert sorted(calls) == sorted({row[1] for row in rows})


@settings(max_examples=100, deadline=None)
@given(st.lists(_rows, min_size=1, max_size=60))
def test_compiled_copy_text_equals_the_python_definition(rows: list[tuple[Any, ...]]) -> None:
    """For the rollup rows of generated batches: the bytes of ``sql._copy_text``."""
    for spec, folded in rollups.fold(rollups.group_py(rows), None).items():
        n_keys = len(rollups.SPECS[spec])
        expected = sql._copy_text(folded, n_keys).encode() if folded else b""
        assert _fold.copy_text(folded, n_keys, sql._bucket_text) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0, 253_402_300_799.999, allow_nan=False)
    | st.integers(0, 253_402_300_000_000_000).map(lambda us: us / 1e6)
    | st.sampled_from([0.0, 951_782_400.5, 4_102_444_799.9999995, 1e9 + 5e-7, 68_256_000.0])
)
def test_events_copy_text_writes_float_starts_as_the_utc_time_of_their_microsecond(
    started: float,
) -> None:
    """A float start is written as the UTC time of ``round(s * 1e6)`` µs (what SQLite
    stores and the rollups use): leap days, year ends and half microseconds included."""
    text = _fold.events_copy_text([(None, None, None, None, started)])
    expected = from_epoch_us(rollups.epoch_us(started)).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    assert text == f"\\N\t\\N\t\\N\t\\N\t{expected}\n".encode()


@pytest.mark.parametrize(
    ("started", "error"),
    [
        (datetime.fromtimestamp(1_700_000_000, UTC), TypeError),
        (1_700_000_000, TypeError),  # seconds or microseconds? the Python path decides
        (-0.5, ValueError),
        (math.nan, ValueError),
        (253_402_300_800.0, ValueError),  # the year 10000
    ],
)
def test_starts_the_events_copy_text_does_not_write_are_refused(started: Any, error: type) -> None:
    with pytest.raises(error):
        _fold.events_copy_text([_row(1_700_000_000.0), _row(started)])


def test_postgresql_stores_the_same_events_either_way(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events COPYed as text formatted in C are stored as psycopg's row-by-row COPY stores
    them: strings with tabs, newlines, backslashes and non-ASCII text, JSON tags and
    metadata, None, big and zero tokens, decimal costs, float durations; and the start
    times of both ways are those of ``rollups.epoch_us`` for µs-exact floats."""
    base = 1_700_000_000.0
    rows = [
        _row(base + i * 0.25, Decimal(f"0.{i:03d}5") if i % 3 else None, user=f"u\t{i}\\é",
             duration=float(i) * 1.5, input=2**40 + i, status="error" if i % 4 else "ok")
        for i in range(40)
    ]  # fmt: skip
    rows[1] = (*rows[1][:15], '{"a": "b\\nc"}', *rows[1][16:26], "line 1\nline 2\r\\", '{"k": 1}')
    rows[2] = (*rows[2][:21], Decimal("1.5E-7"), *rows[2][22:])
    store = SQLStore(pg_url)
    found = {}
    try:
        for name, copy_text in (("c", sql._EVENTS_COPY_C), ("py", None)):
            monkeypatch.setattr(sql, "_EVENTS_COPY_C", copy_text)
            with store.engine.begin() as conn:
                conn.exec_driver_sql("TRUNCATE events")
            assert store.write(rows) == len(rows)
            found[name] = store.events()
        assert found["c"] == found["py"]
        assert [e.started_at for e in found["c"]] == sorted(
            from_epoch_us(rollups.epoch_us(r[4])) for r in rows
        )
        assert {e.error_message for e in found["c"]} >= {"line 1\nline 2\r\\"}
    finally:
        store.close()
