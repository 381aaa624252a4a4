"""Benchmarks of the rollups (issue 5): what maintaining them costs the writer, and how fast
the seed-004 reports answer over 1 and 10 million events against the same questions asked of
the raw ``events`` table.

``python bench/run.py --only rollup_write_cost --only reports [--quick | --full]``

Loaded report databases are cached under ``$AGENTLEDGER_BENCH_CACHE`` (default
``/tmp/agentledger-bench-cache/``; on PostgreSQL, databases named
``agentledger_bench_r<N>_g<V>_<rev>``), keyed by the number of events, the generator version
``GEN_VERSION`` and the schema revision: a re-run reuses them instead of loading again.
Delete the directory (and drop the databases) to reload.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import json
import os
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from time import perf_counter, time
from typing import Any

from uuid_utils import uuid7

from _harness import Result, median, paired_ratio
from agentledger._aggregates import DURATION_BOUNDS_S
from agentledger.cli._report import _BUILDERS, Report
from agentledger.pricing import PriceBook
from agentledger.query import Query
from agentledger.store.sql import HEAD_REVISION, SQLStore
from writers import PG_ADMIN, _remove_db, _skipped

#: Bump when the generated data changes: cached databases of another version are not reused.
GEN_VERSION = 1
CACHE_DIR = os.environ.get("AGENTLEDGER_BENCH_CACHE", "/tmp/agentledger-bench-cache")
BATCH = 5_000  # the ledger's default batch size
DAY_S = 86_400.0
HISTORY_DAYS = 30
REPORTS = ("commands", "llm", "mcp", "users", "trends", "errors")
TARGET_MS = 100.0
TARGET_FLAT = 1.5
TARGET_WRITE = 0.70

# --- the realistic mix ---------------------------------------------------------------------------
# 50 bots in 5 tenants, 1,000 users (uniformly random per event), 20 priced models (weights:
# the cheap ones are used most), 20 commands and 20 tools with Zipf-like popularity;
# 60 % llm / 25 % command / 15 % tool events, 3 % errors, log-normal durations.
BOTS = tuple(f"bot-{i:02d}" for i in range(50))
TENANTS = tuple(f"tenant-{i}" for i in range(5))
USERS = tuple(f"user-{i:04d}" for i in range(1_000))
MODELS = (  # (provider, model, relative weight, reasons)
    ("openai", "gpt-4o", 12, False), ("openai", "gpt-4o-mini", 20, False),
    ("openai", "gpt-4.1", 6, False), ("openai", "gpt-4.1-mini", 8, False),
    ("openai", "gpt-4.1-nano", 4, False), ("openai", "o3-mini", 3, True),
    ("openai", "o4-mini", 3, True), ("openai", "o1", 1, True),
    ("openai", "gpt-3.5-turbo", 2, False), ("anthropic", "claude-3-5-sonnet-latest", 8, False),
    ("anthropic", "claude-3-5-haiku-latest", 6, False),
    ("anthropic", "claude-3-7-sonnet-latest", 4, False),
    ("anthropic", "claude-sonnet-4-20250514", 5, False),
    ("anthropic", "claude-opus-4-20250514", 1, False),
    ("google", "gemini-1.5-flash", 3, False), ("google", "gemini-2.0-flash", 4, False),
    ("google", "gemini-2.5-pro", 2, False), ("google", "gemini-2.5-flash", 3, False),
    ("mistral", "mistral-large-latest", 1, False), ("deepseek", "deepseek-chat", 2, False),
)  # fmt: skip
COMMANDS = tuple(f"/{n}" for n in (
    "ask", "summarize", "translate", "search", "help", "remind", "stats", "image", "code",
    "review", "explain", "todo", "poll", "weather", "news", "define", "quiz", "digest",
    "settings", "feedback",
))  # fmt: skip
TOOLS = (
    "web_search", "fetch_url", "read_file", "write_file", "list_dir", "run_sql", "get_weather",
    "send_email", "create_issue", "search_docs", "calendar_lookup", "translate_text",
    "image_generate", "vector_search", "python_exec", "slack_post", "jira_query", "git_diff",
    "summarize_pdf", "currency_convert",
)  # fmt: skip
LLM_ERRORS = (("RateLimitError", "429 rate limited"), ("APITimeoutError", "request timed out"),
              ("APIError", "502 bad gateway"))  # fmt: skip
TOOL_ERRORS = (("ToolError", "tool failed"), ("TimeoutError", "tool timed out"))
_ZERO = Decimal(0)


def _cum(weights: list[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


class Mix:
    """A deterministic stream of store-ready rows (priced like the writer prices them)."""

    def __init__(self, seed: int = 5) -> None:
        self.rng = random.Random(seed)
        self.prices = PriceBook()
        self.prices.warm()
        self._model_cum = _cum([m[2] for m in MODELS])
        self._zipf_cum = _cum([1 / (i + 1) for i in range(20)])

    def rows(self, n: int, start_s: float, end_s: float, batch: int = BATCH) -> Iterator[list[Any]]:
        """``n`` rows spread evenly over ``[start_s, end_s)``, in time order, ``batch`` a list."""
        step = (end_s - start_s) / n
        out: list[Any] = []
        for i in range(n):
            out.append(self.row(start_s + (i + self.rng.random()) * step))
            if len(out) == batch:
                yield out
                out = []
        if out:
            yield out

    def row(self, t: float) -> tuple[Any, ...]:
        rng = self.rng
        u = uuid7(nanoseconds=int(t * 1e9))
        hex_ = u.hex
        b = rng.randrange(50)
        user = USERS[rng.randrange(1000)]
        error = rng.random() < 0.03
        r = rng.random()
        provider = model = error_type = error_message = None
        inp = out = cache_read = reasoning = 0
        if r < 0.60:
            kind = "llm"
            provider, model, _, reasons = MODELS[
                bisect.bisect(self._model_cum, rng.random() * self._model_cum[-1])
            ]
            name = model
            duration = rng.lognormvariate(7.1, 0.7)  # median ~1.2 s
            if error:
                error_type, error_message = LLM_ERRORS[rng.randrange(3)]
                duration = rng.lognormvariate(6.0, 1.2)
            else:
                inp = min(200_000, 1 + int(rng.lognormvariate(7.3, 1.0)))  # median ~1,500
                out = min(16_000, 1 + int(rng.lognormvariate(5.7, 0.8)))  # median ~300
                if rng.random() < 0.3:
                    cache_read = int(inp * rng.random() * 0.8)
                if reasons:
                    reasoning = int(out * rng.random() * 0.7)
            cost, source, version = self.prices.quote(
                provider, model, inp, out, cache_read, 0, reasoning, 0, t
            )
        else:
            which = bisect.bisect(self._zipf_cum, rng.random() * self._zipf_cum[-1])
            if r < 0.85:
                kind, name = "command", COMMANDS[which]
                duration = rng.lognormvariate(7.8, 0.8)  # median ~2.5 s
            else:
                kind, name = "tool", TOOLS[which]
                duration = rng.lognormvariate(5.0, 1.1)  # median ~150 ms
            if error:
                error_type, error_message = TOOL_ERRORS[rng.randrange(2)]
            cost, source, version = _ZERO, "reported", None
        return (
            str(u), hex_, hex_[16:], None, t, round(duration, 1),
            kind, name, provider, model,
            BOTS[b], user, None, TENANTS[b % 5], None, None,
            inp, out, cache_read, 0, reasoning,
            cost, source, version,
            "error" if error else "ok", error_type, error_message, None,
        )  # fmt: skip


# --- 1. what rollup maintenance costs the writer -------------------------------------------------
def _write_batches(quick: bool, span_s: float = 180.0) -> list[list[Any]]:
    """Batches of 5,000 rows, each covering ``span_s`` seconds (3 minutes: the target's
    setup), ending now (like a live writer)."""
    n_batches = 8 if quick else 20
    end = time()
    start = end - n_batches * span_s
    return list(Mix(seed=7).rows(n_batches * BATCH, start, end))


def bench_rollup_write_cost(quick: bool) -> list[Result]:
    batches = _write_batches(quick)
    repeats = 3 if quick else 5
    # Information: the same on PostgreSQL with batches as a saturated writer makes them
    # (5,000 events a second at the default 1 s flush: a batch spans a second, so its
    # minute-grain rollup rows are fewer than in 3 minutes of events).
    saturated = _write_cost_postgres(_write_batches(quick, span_s=1.0), repeats, span_s=1.0)
    return [_write_cost_sqlite(batches, repeats), _write_cost_postgres(batches, repeats),
            saturated]  # fmt: skip


def _timed_pair(on: SQLStore, off: SQLStore, batches: list[list[Any]]) -> tuple[float, float]:
    """Rows per second through ``SQLStore.write`` of ``on`` (rollups maintained) and of
    ``off`` (not), two empty stores of the same kind, each batch written to one then the
    other (which goes first alternates): both sides see the machine at the same moments,
    ~0.1 s apart, where timing one store's whole run and then the other's (~2 s each) let
    this machine's speed drift land on one side (the unchanged SQLite writer read 0.61-0.83
    across runs that way). The stores' clocks follow the events (a live writer writes a
    batch as its last event ends), so the buckets that close are compacted on the way as
    they would be, inside ``on``'s writes; ``on``'s time ends with compacting everything
    written (every hour and day closed), so what the rows will ever cost the writer is in
    it, including the daily compaction of the hours they fill."""
    on.maintain_rollups, off.maintain_rollups = True, False
    now = [0.0]
    on.clock = off.clock = lambda: now[0]
    spent = {True: 0.0, False: 0.0}
    for i, batch in enumerate(batches):
        now[0] = float(batch[-1][4])
        for store in (on, off) if i % 2 == 0 else (off, on):
            t0 = perf_counter()
            assert store.write(batch) == len(batch)
            spent[store is on] += perf_counter() - t0
    t0 = perf_counter()
    on.compact(now=now[0] + DAY_S)
    spent[True] += perf_counter() - t0
    n = sum(len(b) for b in batches)
    assert on.count() == off.count() == n
    calls = Query(on).totals().calls
    assert calls == n, f"rollups hold {calls} calls, events {n}"
    return n / spent[True], n / spent[False]


def _write_cost_result(
    name: str, batches: list[list[Any]], repeats: int, on: list[float], off: list[float],
    span_s: float = 180.0,
) -> Result:  # fmt: skip
    ratio = paired_ratio(on, off)
    n = sum(len(b) for b in batches)
    target = span_s == 180.0  # the target's setup; other spans are information
    span = "3 min" if target else f"{span_s:g} s"
    return Result(
        name, "rows written per second", "rows/s", median(on), median(off),
        "same kind of store, maintain_rollups=False", ratio, "on / off",
        f">= {TARGET_WRITE:.0%} of no rollups" if target else "(info)",
        ratio >= TARGET_WRITE if target else None, on, off,
        f"{len(batches)} batches x {BATCH} rows ({n} rows, {span} of events per batch, "
        f"50 bots, 1,000 users, 20 models), each written to an empty store with rollups "
        f"and to one without in turn, x {repeats} repeats via SQLStore.write",
    )  # fmt: skip


def _paired_runs(
    make: Callable[[], tuple[SQLStore, SQLStore]],
    done: Callable[[SQLStore, SQLStore], None],
    batches: list[list[Any]],
    repeats: int,
) -> tuple[list[float], list[float]]:
    """:func:`_timed_pair` ``repeats`` times (after one warm-up) on stores from ``make``."""
    on_rates: list[float] = []
    off_rates: list[float] = []
    for i in range(repeats + 1):
        gc.collect()
        on, off = make()
        try:
            rates = _timed_pair(on, off, batches)
        finally:
            done(on, off)
        if i:  # the first is a warm-up
            on_rates.append(rates[0])
            off_rates.append(rates[1])
    return on_rates, off_rates


def _write_cost_sqlite(batches: list[list[Any]], repeats: int) -> Result:
    tmp = tempfile.mkdtemp(prefix="agentledger-bench-rollups-")
    counter = iter(range(10**6))

    def make() -> tuple[SQLStore, SQLStore]:
        paths = [os.path.join(tmp, f"w{next(counter)}.db") for _ in range(2)]
        return SQLStore(f"sqlite:///{paths[0]}"), SQLStore(f"sqlite:///{paths[1]}")

    def done(*stores: SQLStore) -> None:
        for store in stores:
            path = store.engine.url.database
            store.close()
            _remove_db(str(path))

    try:
        on, off = _paired_runs(make, done, batches, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _write_cost_result("rollup_write_cost sqlite", batches, repeats, on, off)


def empty_postgres(url: str) -> None:
    """Empty the events and every rollup of the database at ``url``, as new."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename NOT IN ('alembic_version', 'rollup_marks')"
        )]  # fmt: skip
        conn.execute(f"TRUNCATE {', '.join(tables)}")  # events and every rollup
        # As a new database has them (a store whose mark rows were deleted would compact
        # everything from 1970 on every write until it wrote them back).
        conn.execute("UPDATE rollup_marks SET upto = 0")


def _write_cost_postgres(batches: list[list[Any]], repeats: int, span_s: float = 180.0) -> Result:
    import psycopg

    name = "rollup_write_cost postgres" + ("" if span_s == 180.0 else f" ({span_s:g} s batches)")
    names = ("agentledger_bench_rollups", "agentledger_bench_rollups_off")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        return _skipped(name, f"PostgreSQL unavailable: {exc}")
    urls = []
    for db in names:
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {db}")
        urls.append(PG_ADMIN.rsplit("/", 1)[0] + "/" + db)
    stores = [SQLStore(url) for url in urls]

    def make() -> tuple[SQLStore, SQLStore]:
        for url in urls:
            empty_postgres(url)
        return stores[0], stores[1]

    try:
        on, off = _paired_runs(make, lambda *_: None, batches, repeats)
    finally:
        for store in stores:
            store.close()
        for db in names:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()
    return _write_cost_result(name, batches, repeats, on, off, span_s)


# --- 2. reports over 1M / 10M events -------------------------------------------------------------
class Loaded:
    """A loaded (or cached) report database: its store and the end of its data."""

    def __init__(self, store: SQLStore, n: int, end_s: float, load_s: float, reused: bool):
        self.store, self.n, self.end_s, self.load_s, self.reused = store, n, end_s, load_s, reused


def _load(store: SQLStore, n: int, end_s: float, label: str) -> float:
    """Stream ``n`` rows into ``store`` in 5,000-row batches; return the seconds it took."""
    mix = Mix(seed=5)
    t0 = perf_counter()
    done = 0
    next_report = n // 10
    for batch in mix.rows(n, end_s - HISTORY_DAYS * DAY_S, end_s):
        store.write(batch)
        done += len(batch)
        if done >= next_report:
            elapsed = perf_counter() - t0
            print(f"   [{label}] loaded {done:,}/{n:,} events in {elapsed:.0f} s "
                  f"({done / elapsed:,.0f}/s)", flush=True)  # fmt: skip
            next_report += n // 10
    return perf_counter() - t0


def _sqlite_db(n: int) -> Loaded:
    os.makedirs(CACHE_DIR, exist_ok=True)
    path = os.path.join(CACHE_DIR, f"sqlite-{n}-g{GEN_VERSION}-{_schema()}.db")
    meta_path = path + ".json"
    if os.path.exists(meta_path) and os.path.exists(path):
        with open(meta_path) as fh:
            meta = json.load(fh)
        print(f"   [sqlite {_size(n)}] reusing cached {path} "
              f"(loaded in {meta['load_s']:.0f} s)", flush=True)  # fmt: skip
        return Loaded(SQLStore(f"sqlite:///{path}"), n, meta["end_s"], meta["load_s"], True)
    loading = path + ".loading"
    _remove_db(loading)
    end_s = time()
    print(f"   [sqlite {_size(n)}] loading {n:,} events into {path} ...", flush=True)
    store = SQLStore(f"sqlite:///{loading}")
    load_s = _load(store, n, end_s, f"sqlite {_size(n)}")
    store.close()
    conn = sqlite3.connect(loading)  # fold the WAL into the file before it is renamed
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    os.replace(loading, path)
    _remove_db(loading)  # the lock file and an empty -wal/-shm, if any
    size_mib = os.path.getsize(path) / 2**20
    with open(meta_path, "w") as fh:
        json.dump({"n": n, "gen": GEN_VERSION, "end_s": end_s, "load_s": load_s,
                   "size_mib": size_mib}, fh)  # fmt: skip
    print(f"   [sqlite {_size(n)}] loaded in {load_s:.0f} s ({n / load_s:,.0f} events/s), "
          f"{size_mib:,.0f} MiB", flush=True)  # fmt: skip
    return Loaded(SQLStore(f"sqlite:///{path}"), n, end_s, load_s, False)


def _pg_db(n: int) -> Loaded | None:
    import psycopg

    db = f"agentledger_bench_r{n}_g{GEN_VERSION}_{_schema()}"
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        print(f"   PostgreSQL unavailable: {exc}", flush=True)
        return None
    with admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
            meta = None
            with contextlib.suppress(psycopg.Error), psycopg.connect(url) as conn:
                meta = conn.execute("SELECT end_s, load_s FROM bench_meta").fetchone()
            if meta is not None:
                print(f"   [postgres {_size(n)}] reusing cached database {db} "
                      f"(loaded in {meta[1]:.0f} s)", flush=True)  # fmt: skip
                return Loaded(SQLStore(url), n, meta[0], meta[1], True)
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")  # a half-done load
        admin.execute(f"CREATE DATABASE {db}")
    end_s = time()
    print(f"   [postgres {_size(n)}] loading {n:,} events into database {db} ...", flush=True)
    store = SQLStore(url)
    load_s = _load(store, n, end_s, f"postgres {_size(n)}")
    t0 = perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")  # what autovacuum would have done by now
        conn.execute("CREATE TABLE bench_meta (end_s double precision, load_s double precision)")
        conn.execute("INSERT INTO bench_meta VALUES (%s, %s)", (end_s, load_s))
    print(f"   [postgres {_size(n)}] loaded in {load_s:.0f} s ({n / load_s:,.0f} events/s), "
          f"then VACUUM (ANALYZE) {perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    return Loaded(store, n, end_s, load_s, False)


def _schema() -> str:
    """The schema revision's number: a cache loaded under another schema is not reused."""
    return HEAD_REVISION.split("_", 1)[0]


def _size(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1_000}k"


def _cases(end_s: float) -> list[tuple[str, int, Callable[[Query], Any], Callable[[Query], Any]]]:
    """(name, days, ours, peer): each seed-004 report and the llm p95, over 30 and 7 days."""
    cases = []
    for days in (30, 7):
        f = _days_filters(end_s, days)
        for name in REPORTS:
            build = _BUILDERS[name]
            cases.append((name, days, _bind(build, f), _bind(build, f)))
        window = {"since": f["since"], "until": f["until"], "kind": "llm"}
        cases.append((
            "p95 llm", days,
            lambda q, w=window: q.percentiles((95,), **w),
            lambda q, w=window: q.percentiles((95,), exact=True, **w),
        ))  # fmt: skip
    # The users report's worst end: its edges are read from the running totals (at hour
    # boundaries) and the events of a partial hour, from whichever side of the hour is
    # shorter; a range ending at :30 has half an hour of events either way (the runs above
    # end when the data was loaded, whatever minute that was). Ends at the last 23:30 in
    # the data (with the totals per day of schema 0009, 23:30 also meant 23 hour rows).
    end = datetime.fromtimestamp(end_s, UTC).replace(hour=23, minute=30, second=0, microsecond=0)
    if end.timestamp() > end_s:
        end -= timedelta(days=1)
    late = {"since": end - timedelta(days=30), "until": end, "tags": None}
    build = _BUILDERS["users"]
    cases.append(("users@23:30", 30, _bind(build, late), _bind(build, late)))
    return cases


def _bind(build: Callable[[Query, dict[str, Any]], Report], f: dict[str, Any]) -> Any:
    return lambda q: build(q, dict(f))


def _days_filters(end_s: float, days: int) -> dict[str, Any]:
    until = datetime.fromtimestamp(end_s, UTC)
    return {"since": until - timedelta(days=days), "until": until, "tags": None}


def _bucket(ms: float) -> int:
    return bisect.bisect_left([b * 1000.0 for b in DURATION_BOUNDS_S], ms)


def _agrees(name: str, ours: Any, raw: Any) -> str | None:
    """None if the rollup answer equals the raw one, else what differs."""
    if name.startswith("p95"):
        a, b = ours[95], raw[95]
        if _bucket(a) != _bucket(b):
            return f"p95 {a:.1f} ms (rollups) and {b:.1f} ms (exact) are in different buckets"
        return None
    fields = ("title", "columns", "rows", "totals")
    for field in fields:
        if getattr(ours, field) != getattr(raw, field):
            diff = [(x, y) for x, y in zip(ours.rows, raw.rows, strict=False) if x != y][:3]
            return f"{field} differ (first differing rows: {diff}; {len(ours.rows)} vs " \
                f"{len(raw.rows)} rows)"  # fmt: skip
    return None


def _ms(fn: Callable[[Query], Any], q: Query) -> float:
    t0 = perf_counter()
    fn(q)
    return (perf_counter() - t0) * 1000.0


Timings = dict[tuple[str, int], dict[int, tuple[list[float], list[float]]]]


def _measure(
    stores: list[Loaded], backend: str, r_ours: int, r_peer: int, timings: Timings, bad: list[str]
) -> None:
    """Every case on every loaded database: the answers checked against the raw events, the
    raw events timed on each database (``r_peer`` runs), then the rollups timed on all of
    them in turn (``r_ours`` rounds, the order reversed every round).

    The sizes' rollup runs alternate, as every benchmark here alternates ours and its peer:
    their ratio (the history-flatness target) is then measured at the same moments of the
    machine. Timing all of one size's cases and then all of the other's, minutes apart and
    with multi-second raw scans between them, let the machine's drift land on one size:
    two runs of that design on the same two databases (session 19) failed the 1.5 bound on
    different reports each time (1.67 and 1.89, then 1.52, 1.58 and 1.59), where runs
    alternating the sizes read 0.98-1.22 for the same reports.
    """
    queries = [(Query(db.store), Query(db.store, use_rollups=False)) for db in stores]
    per_db = [_cases(db.end_s) for db in stores]
    for i, (name, days, _, _) in enumerate(per_db[0]):
        raw: list[list[float]] = []
        for db, (ours_q, raw_q), cases in zip(stores, queries, per_db, strict=True):
            _, _, ours, peer = cases[i]
            t0 = perf_counter()
            got, want = ours(ours_q), peer(raw_q)  # warm-up, and the correctness check
            warm_peer_s = perf_counter() - t0
            problem = _agrees(name, got, want)
            if problem:
                bad.append(f"{backend} {_size(db.n)} {name} {days}d: {problem}")
            reps = r_peer if warm_peer_s < 10 else 1  # a raw scan that takes many seconds: once
            raw.append([])
            for _ in range(reps):
                gc.collect()
                raw[-1].append(_ms(peer, raw_q))
            if problem:
                print(f"   [{backend} {_size(db.n)}] {name} {days}d: answers MISMATCH", flush=True)
        for k, (ours_q, _) in enumerate(queries):  # warm again after the raw scans
            per_db[k][i][2](ours_q)
        runs: list[list[float]] = [[] for _ in stores]
        order = list(range(len(stores)))
        for r in range(r_ours):
            for k in order if r % 2 == 0 else order[::-1]:
                ours = per_db[k][i][2]
                gc.collect()
                runs[k].append(_ms(ours, queries[k][0]))
        for db, ours_ms, raw_ms in zip(stores, runs, raw, strict=True):
            timings.setdefault((name, days), {})[db.n] = (ours_ms, raw_ms)
            print(f"   [{backend} {_size(db.n)}] {name:8} {days:2}d: rollups "
                  f"{median(ours_ms):8.1f} ms, raw events {median(raw_ms):9.1f} ms",
                  flush=True)  # fmt: skip


def bench_reports(
    quick: bool, full: bool, backends: tuple[str, ...] = ("sqlite", "postgres")
) -> list[Result]:
    """The reports on ``backends``: SQLite at 1M and 10M events, PostgreSQL at 1M (and 10M
    with ``full``); ``quick``: 100k and 1M, 100k."""
    sqlite_sizes = (100_000, 1_000_000) if quick else (1_000_000, 10_000_000)
    pg_sizes = (100_000,) if quick else (1_000_000, 10_000_000) if full else (1_000_000,)
    r_ours, r_peer = (3, 1) if quick else (9, 3)
    results: list[Result] = []
    bad: list[str] = []
    for backend, sizes in (("sqlite", sqlite_sizes), ("postgres", pg_sizes)):
        if backend not in backends:
            continue
        timings: Timings = {}
        stores: list[Loaded] = []
        try:
            for n in sizes:
                loaded = _sqlite_db(n) if backend == "sqlite" else _pg_db(n)
                if loaded is None:
                    results.append(_skipped(f"reports {backend}", "PostgreSQL unavailable"))
                    break
                stores.append(loaded)
                # The state a live writer leaves at the end of the data: every hour closed by
                # then compacted (a database loaded or upgraded by an older version may have
                # its running user totals a few hours behind until its next write).
                loaded.store.compact(now=loaded.end_s)
            else:
                _measure(stores, backend, r_ours, r_peer, timings, bad)
        finally:
            for loaded in stores:
                loaded.store.close()
        if timings:
            absolute = backend == "sqlite" and not quick
            results += _report_results(backend, sizes, timings, absolute)
            print(_detail_table(backend, sizes, timings, absolute), flush=True)
    assert not bad, "rollup answers differ from the raw events:\n" + "\n".join(bad)
    return results


def _report_results(
    backend: str, sizes: tuple[int, ...], timings: Timings, absolute: bool
) -> list[Result]:
    out = []
    big, small = sizes[-1], sizes[0]
    for (name, days), per_n in timings.items():
        if big not in per_n:
            continue
        a, b = per_n[big]
        ours, peer = median(a), median(b)
        if absolute:
            target, passed = f"<= {TARGET_MS:.0f} ms at {_size(big)}", ours <= TARGET_MS
        else:
            target, passed = "(no target)", None
        peer_name = "exact=True, events" if name.startswith("p95") else "use_rollups=False"
        out.append(Result(
            f"reports {backend} {name} {days}d @{_size(big)}", "report time", "ms", ours, peer,
            peer_name,
            peer / ours, "raw / rollups", target, passed, a, b,
            f"median of {len(a)} (rollups) and {len(b)} (raw) warm runs",
        ))  # fmt: skip
        if small != big and small in per_n:
            s = median(per_n[small][0])
            ratio = ours / s
            out.append(Result(
                f"reports {backend} {name} {days}d {_size(big)}/{_size(small)}", "report time",
                "ms", ours, s,
                f"same at {_size(small)}", ratio, f"{_size(big)} / {_size(small)}",
                f"<= {TARGET_FLAT}", ratio <= TARGET_FLAT, a, per_n[small][0],
            ))  # fmt: skip
    return out


def _detail_table(backend: str, sizes: tuple[int, ...], timings: Timings, absolute: bool) -> str:
    big, small = sizes[-1], sizes[0]
    two = big != small
    head = ["report", "days"]
    if two:
        head += [f"ms @{_size(small)}"]
    head += [f"ms @{_size(big)}"]
    if two:
        head += [f"{_size(big)}/{_size(small)}"]
    head += [f"raw ms @{_size(big)}", "speedup"]
    if absolute:
        head += [f"<= {TARGET_MS:.0f} ms"]
    if two:
        head += [f"<= {TARGET_FLAT}"]
    lines = [f"\n{backend}: rollups vs raw events (median ms, warm)",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for (name, days), per_n in timings.items():
        if big not in per_n:
            continue
        ours, peer = median(per_n[big][0]), median(per_n[big][1])
        cells = [name, str(days)]
        if two:
            cells.append(f"{median(per_n[small][0]):,.1f}")
        cells.append(f"{ours:,.1f}")
        if two:
            ratio = ours / median(per_n[small][0])
            cells.append(f"{ratio:.2f}")
        speedup = peer / ours
        cells += [f"{peer:,.0f}", f"{speedup:,.0f}x" if speedup >= 10 else f"{speedup:.1f}x"]
        if absolute:
            cells.append("PASS" if ours <= TARGET_MS else "FAIL")
        if two:
            cells.append("PASS" if ratio <= TARGET_FLAT else "FAIL")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
