"""Benchmark 5: resident memory growth of a ledger that records many events into SQLite.

Run by run.py in its own process (``python bench/memory.py --events N``) so nothing else
pollutes the figure; prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import agentledger
from _harness import Result, rss_kib
from agentledger import Ledger

N_BOTS = 1_000
PER_SCOPE = 100  # events recorded per `with scope(...)` block


def measure(events: int) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="agentledger-mem-")
    try:
        return _measure(events, os.path.join(tmp, "usage.db"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(events: int, path: str) -> dict[str, Any]:
    bots = [f"bot-{i}" for i in range(N_BOTS)]
    # Default batching (1 s interval, 5000-row batches, 200k queue); "block" so that
    # recording faster than SQLite can absorb waits instead of dropping events.
    ledger = Ledger(f"sqlite:///{path}", overflow="block", block_timeout_s=60.0)
    ledger.prices.warm()
    _record(ledger, bots, N_BOTS * 10)  # warm-up: every bot's aggregate key exists
    assert ledger.flush(timeout=120)
    gc.collect()
    base_kib = rss_kib()
    t0 = time.perf_counter()
    _record(ledger, bots, events)
    assert ledger.flush(timeout=600)
    elapsed = time.perf_counter() - t0
    gc.collect()
    after_kib = rss_kib()
    peak_kib = rss_kib("VmHWM")
    stats = ledger.stats()
    total = ledger.totals()
    ledger.close()
    return {
        "events": events,
        "base_mib": base_kib / 1024,
        "after_mib": after_kib / 1024,
        "growth_mib": (after_kib - base_kib) / 1024,
        "peak_growth_mib": (peak_kib - base_kib) / 1024,
        "seconds": elapsed,
        "written": stats.written,
        "dropped": stats.dropped,
        "calls_in_totals": total.calls,
        "db_mib": os.path.getsize(path) / 2**20,
    }


def _record(ledger: Ledger, bots: list[str], events: int) -> None:
    record = ledger.record_llm
    for j in range(events // PER_SCOPE):
        bot = bots[j % len(bots)]
        with agentledger.scope(bot_id=bot, user_id=f"user-of-{bot}"):
            for _ in range(PER_SCOPE):
                record("gpt-4o", 1000, 500, duration_ms=800.0)


def bench_memory(quick: bool, full: bool) -> list[Result]:
    """Run :func:`measure` in a subprocess and turn its output into a result row."""
    import subprocess

    events = 10_000_000 if full else 200_000 if quick else 1_000_000
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--events", str(events)],
        capture_output=True,
        text=True,
        timeout=1800 if full else 300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory subprocess failed:\n{proc.stderr[-2000:]}")
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = m["growth_mib"]
    ok = growth < 100 and m["dropped"] == 0 and m["written"] >= events
    return [
        Result(
            "memory_10m", f"RSS growth after {_short(events)} events + flush", "MiB", growth,
            None, "-", None, "-", "< 100 MB", ok, [growth], [],
            f"{events:,} events, {N_BOTS} bots, SQLite; peak growth "
            f"{m['peak_growth_mib']:.0f} MiB; {m['seconds']:.1f} s "
            f"({events / m['seconds']:,.0f} ev/s recorded+written); dropped {m['dropped']}; "
            f"DB {m['db_mib']:.0f} MiB",
        )
    ]  # fmt: skip


def _short(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 else f"{n // 1000}k"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    print(json.dumps(measure(args.events)))
