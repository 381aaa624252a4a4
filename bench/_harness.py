"""Shared pieces of the benchmark suite: results, timing, machine description."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from time import perf_counter_ns, thread_time_ns
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "Result", "interleaved", "machine", "median", "paired_ratio", "rss_kib", "speed_probe",
    "timed",
]  # fmt: skip


@dataclass(slots=True)
class Result:
    """One row of the results table: our figure, the peer's figure from the same run, a target."""

    name: str
    metric: str
    unit: str
    ours: float
    peer: float | None
    peer_name: str
    ratio: float | None  # defined per row in ratio_label
    ratio_label: str
    target: str
    passed: bool | None  # None: informational row, no target
    samples_ours: list[float] = field(default_factory=list)
    samples_peer: list[float] = field(default_factory=list)
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """Run ``fn`` once; return (wall, this thread's CPU) time per call, in nanoseconds.

    Thread CPU time leaves out the time this thread waited for a core, so it stays
    meaningful when other processes oversubscribe the machine; wall time does not.
    """
    w0, c0 = perf_counter_ns(), thread_time_ns()
    fn()
    return (perf_counter_ns() - w0) / calls, (thread_time_ns() - c0) / calls


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median of ``a[i] / b[i]``: each ratio compares two runs made back to back.

    On a shared machine whose speed drifts by 2x within seconds, this is steadier than
    ``median(a) / median(b)``, which can pair a fast stretch with a slow one.
    """
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def interleaved(
    ours: Callable[[], T], peer: Callable[[], T], repeats: int
) -> tuple[list[T], list[T]]:
    """Run ``ours`` and ``peer`` alternately ``repeats`` times each; return both sample lists.

    Alternating (ABAB, swapping which goes first each round) spreads the machine's noise
    over both sides instead of letting a noisy stretch land on one of them.
    """
    a: list[T] = []
    b: list[T] = []
    for i in range(repeats):
        order = ((ours, a), (peer, b)) if i % 2 == 0 else ((peer, b), (ours, a))
        for fn, out in order:
            gc.collect()
            out.append(fn())
    return a, b


def rss_kib(field_name: str = "VmRSS") -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def speed_probe() -> float:
    """ns per ``sum(range(100))``, best of 5 repeats (``python -m timeit``'s figure): how
    fast this machine runs plain Python right now. On the shared machines these benchmarks
    ran on it drifts by 2x within minutes (docs/benchmarks.md), so every run prints it at
    its start and end, to tell a slow machine from a slower change."""
    import timeit

    timer = timeit.Timer("sum(range(100))")
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=number)) / number * 1e9


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        sqlite_version = __import__("sqlite3").sqlite_version
    except ImportError:  # pragma: no cover
        sqlite_version = "?"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "platform": platform.platform(),
        "sqlite": sqlite_version,
        "git": _git_head(),
        "speed_probe_ns": f"{speed_probe():.0f}",
    }


def _git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"
