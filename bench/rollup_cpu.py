"""Where the PostgreSQL writer's time goes with rollups on and off: wall time, this
process's CPU and the database server's CPU, per event (issue 5's profiling aid).

``python bench/rollup_cpu.py [--rounds R] [--batches B]`` writes the ``rollup_write_cost``
batches (5,000 rows of the realistic mix, 3 minutes of events each) through
``SQLStore.write`` into a throwaway database, rollups on and off in turn, R rounds, and
prints the medians. The server's CPU is read from ``/proc/<pid>/stat`` of the backends
connected to that database (the store's pooled connections), so this runs only where the
server runs on the same machine. Not a target: CPU time leaves out the waits that make
wall time noisy on a shared machine, which is what an A/B of two versions of the writer
needs (run it once per checkout with ``PYTHONPATH=<checkout>/src``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psycopg

from agentledger.store.sql import SQLStore
from rollups import DAY_S, _write_batches, empty_postgres
from writers import PG_ADMIN

DB = "agentledger_bench_cpu"


def _server_cpu(admin: Any) -> tuple[float, frozenset[int]]:
    """CPU seconds used so far by the backends connected to :data:`DB`, and their pids."""
    pids = frozenset(r[0] for r in admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s", (DB,)
    ))  # fmt: skip
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK"), pids


def _once(
    store: SQLStore, url: str, admin: Any, batches: list[list[Any]], on: bool
) -> tuple[float, ...]:
    empty_postgres(url)
    store.maintain_rollups = on
    now = [0.0]
    store.clock = lambda: now[0]
    server0, pids0 = _server_cpu(admin)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for batch in batches:
        now[0] = float(batch[-1][4])
        store.write(batch)
    if on:
        store.compact(now=now[0] + DAY_S)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    server1, pids1 = _server_cpu(admin)
    if pids0 != pids1:
        raise RuntimeError("the store's connections changed during a run: run it again")
    n = sum(len(b) for b in batches) / 1e6
    return wall / n, cpu / n, (server1 - server0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds of on and off (4)")
    parser.add_argument("--batches", type=int, default=20, help="batches of 5,000 rows (20)")
    args = parser.parse_args()
    admin = psycopg.connect(PG_ADMIN, autocommit=True)
    admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {DB}")
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + DB
    store = SQLStore(url)
    batches = _write_batches(False)[: args.batches]
    try:
        _once(store, url, admin, batches, True)  # warm-up
        runs: dict[bool, list[tuple[float, ...]]] = {True: [], False: []}
        for _ in range(args.rounds):
            for on in (True, False):
                runs[on].append(_once(store, url, admin, batches, on))
        print(f"µs per event, median of {args.rounds} rounds "
              f"({len(batches)} batches x 5,000 rows)")  # fmt: skip
        print(f"{'rollups':8} {'wall':>7} {'client cpu':>11} {'server cpu':>11}")
        for on in (True, False):
            wall, cpu, server = (statistics.median(x) for x in zip(*runs[on], strict=True))
            print(f"{'on' if on else 'off':8} {wall:7.1f} {cpu:11.1f} {server:11.1f}")
    finally:
        store.close()
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        admin.close()


if __name__ == "__main__":
    main()
