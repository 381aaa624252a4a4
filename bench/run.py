"""Run agentledger's benchmarks: ``python bench/run.py [--quick] [--only NAME] [--json FILE]``.

Each benchmark measures agentledger and a peer in the same run (alternating repeats) and
reports medians, the ratio and the project's target. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import Result, machine, speed_probe


def _benchmarks(full: bool) -> dict[str, Callable[[bool], list[Result]]]:
    from exporters import bench_prometheus_scrape, bench_sinks_record_llm
    from hot_path import bench_ledger_record_llm, bench_metrics_record_tokens
    from integrations import bench_integrations
    from memory import bench_memory
    from rollups import bench_reports, bench_rollup_write_cost
    from writers import bench_writer_postgres, bench_writer_sqlite

    return {
        "metrics_record_tokens": bench_metrics_record_tokens,
        "ledger_record_llm": bench_ledger_record_llm,
        "writer_sqlite": bench_writer_sqlite,
        "writer_postgres": bench_writer_postgres,
        "memory_10m": lambda quick: bench_memory(quick, full),
        "prometheus_scrape": bench_prometheus_scrape,
        "sinks_record_llm": bench_sinks_record_llm,
        "integrations": bench_integrations,
        "rollup_write_cost": bench_rollup_write_cost,
        "reports": lambda quick: bench_reports(quick, full),
        "reports_postgres": lambda quick: bench_reports(quick, full, ("postgres",)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls and repeats")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only NAME")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--full", action="store_true",
        help="memory_10m records 10,000,000 events; reports load PostgreSQL with 10M too",
    )  # fmt: skip
    args = parser.parse_args(argv)

    benches = _benchmarks(args.full)
    # reports_postgres is part of reports: only on its own, by name.
    selected = args.only or [name for name in benches if name != "reports_postgres"]
    unknown = [name for name in selected if name not in benches]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(benches)}")

    info = machine()
    mode = "full" if args.full else "quick" if args.quick else "default"
    print(f"agentledger benchmarks — {info['date']} — mode: {mode}")
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}; {info['python']}; {info['platform']}")
    print(f"sqlite {info['sqlite']}; git {info['git']}; speed probe {info['speed_probe_ns']} ns "
          "(sum(range(100)), best of 5: lower is faster)", flush=True)  # fmt: skip

    results: list[Result] = []
    for name in selected:
        t0 = time.perf_counter()
        print(f"\n== {name} ...", flush=True)
        out = benches[name](args.quick)
        for r in out:
            print(f"   {_row(r)}", flush=True)
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
        results.extend(out)

    info["speed_probe_end_ns"] = f"{speed_probe():.0f}"
    print(
        f"\nspeed probe: {info['speed_probe_ns']} ns at the start, "
        f"{info['speed_probe_end_ns']} ns at the end"
    )
    print("\n" + _table(results))
    failed = [r.name for r in results if r.passed is False]
    print(f"\n{len(failed)} target(s) failed: {', '.join(failed)}" if failed else "\nall PASS")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"machine": info, "mode": mode, "results": [r.as_dict() for r in results]},
                fh,
                indent=2,
            )
    return 1 if failed else 0


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "rows/s":
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _verdict(r: Result) -> str:
    return "-" if r.passed is None else "PASS" if r.passed else "FAIL"


def _cells(r: Result) -> list[str]:
    ratio = "-" if r.ratio is None else f"{r.ratio:.2f} ({r.ratio_label})"
    return [
        r.name, r.unit, _fmt(r.ours, r.unit), _fmt(r.peer, r.unit), r.peer_name, ratio,
        r.target, _verdict(r),
    ]  # fmt: skip


def _row(r: Result) -> str:
    c = _cells(r)
    return f"{c[0]}: ours {c[2]} {c[1]}, peer {c[3]} ({c[4]}), {c[5]}, {c[6]}: {c[7]}"


HEADER = ["benchmark", "unit", "agentledger", "peer", "peer is", "ratio", "target", "result"]


def _table(results: list[Result]) -> str:
    """A Markdown table (also readable as plain text)."""
    rows = [HEADER] + [_cells(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
