"""Instructions per streamed chat call, counted by valgrind (issue 4's profiling aid).

``python bench/instructions.py [--calls N]`` runs the benchmark's streamed Chat Completions
call (``httpx.MockTransport``, the fake provider's recorded bytes) under
``valgrind --tool=callgrind`` three ways, in separate processes: the plain SDK, the plain SDK
asking for the usage chunk (``extra_body``), the same with the usage chunk's raw event
dropped before the SDK builds a model of it (``floor``: what any integration that asks for
the usage and hides its chunk must add at least), and a client wrapped by
``agentledger.integrations.openai.wrap``. It prints the instructions per call of each, and
what the usage chunk and agentledger add. Only the calling thread's work inside the timed
loop is counted (``--toggle-collect=starmap_next``: the calls run under
``itertools.starmap``); the ledger's writer thread is not.

Instruction counts do not depend on what else the machine does, so they judge a change to
the integration's own code where wall-clock A/B runs on a shared machine cannot (their noise
is ±7 µs on a ~60 µs difference). They do depend on the process's memory layout: the string
hash seed and address space layout move which attribute lookups collide in CPython's type
cache, by up to ±15K instructions per call (session 16: a change that read -8K under one
seed read +3, +3 and -1K under three others). So each configuration is counted under
``--seeds`` hash seeds (``PYTHONHASHSEED`` 1, 2, ...) with address randomisation off
(``setarch -R``), and the median is printed with the spread; judge a change by the
medians of both versions under the same seeds (``PYTHONPATH=<other checkout>/src``).

They do not give the time: in the runs recorded in docs/benchmarks.md, an added instruction
of agentledger's cost two to three times what the SDK's average instruction costs (its code
runs between the SDK's and finds the CPU's caches and branch predictors cold). The 50 µs
target is judged by ``bench/run.py --only integrations`` in wall time.

``--cache`` also simulates this machine's caches (valgrind's ``--cache-sim``: L1 of 32 KiB
and, as the last level, one core's L2 from ``/sys``) and prints each configuration's L1 and
L2 misses per call, the cold memory a call touches, which the instruction count misses
(session 17: agentledger adds ~80K instructions but ~1,260 L2 misses per call over the
floor, +47 % over the whole SDK call's). Valgrind's simulated caches are shared by all
threads (the ledger's writer's included), and the counts move with the memory layout too.

``--steady`` counts the calls a median sees: the garbage collector off (its passes come
every ~25 calls) and the ledger's writer not woken while counting. Valgrind runs the threads
one at a time on one simulated cache, so a writer that wakes every second (every ~10 calls
under valgrind, against ~300 at full speed) evicts the caller's lines there. Session 21
(collector off, a 512 KiB 8-way L2 simulated, one seed): agentledger's L2 misses over the
floor's +1,630 per call with the writer woken every second as usual, +17 with it not woken,
+3,500 woken every millisecond.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CONFIGS = ("plain", "plain+usage", "floor", "agentledger")
WARMUP = 50


def _child(config: str, calls: int, steady: bool = False) -> None:
    """Make ``calls`` streamed calls the ``config`` way (run under valgrind); ``steady``:
    with the garbage collector off and the ledger's writer not woken while counting."""
    import integrations as bench

    client = bench._mock_client(bench._fake_answers())
    extra = {}
    ledger = None
    if config == "agentledger":
        from agentledger import Ledger
        from agentledger.integrations import openai as al_openai

        tmp = tempfile.mkdtemp(prefix="agentledger-instructions-")
        interval = 1e6 if steady else 1.0  # (steady: the writer never wakes meanwhile)
        ledger = Ledger(f"sqlite:///{tmp}/i.db", handle_signals=False, flush_interval_s=interval)
        ledger.prices.warm()
        client = al_openai.wrap(client, ledger)
    elif config == "plain+usage":
        extra = {"extra_body": bench.USAGE_EXTRA}
    if config == "floor":  # the usage chunk's raw event dropped before the SDK builds a model
        call = bench._chat_stream_floor(client)
    else:
        call = bench._chat_stream(client, **extra)
    for _ in range(WARMUP):
        call()
    if steady:
        gc.collect()
        gc.disable()
    list(itertools.starmap(call, [()] * calls))  # the counted loop
    gc.enable()
    if ledger is not None:
        assert ledger.flush(timeout=60)
        ledger.close()
        shutil.rmtree(tmp, ignore_errors=True)


#: ``--cache``: what is printed, from callgrind's events (L1 = I1 + D1; L2 = the last level).
CACHE_EVENTS: dict[str, tuple[str, ...]] = {
    "instructions": ("Ir",), "L1 misses": ("I1mr", "D1mr", "D1mw"),
    "L2 misses": ("ILmr", "DLmr", "DLmw"),
}  # fmt: skip


def _l2_size() -> int:
    """One core's L2 cache in bytes (1 MiB where ``/sys`` does not say)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as f:
            text = f.read().strip()
    except OSError:
        return 1 << 20
    scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
    return int(text.rstrip("KM")) * scale


def _count(
    config: str, calls: int, seed: int, cache: bool = False, steady: bool = False
) -> dict[str, int]:
    """Callgrind's totals of ``calls`` calls made the ``config`` way: ``{"Ir": ...}``, and
    with ``cache`` the simulated caches' misses too."""
    # Address randomisation off where setarch can (else the layout varies more).
    fixed = ["setarch", os.uname().machine, "-R"] if shutil.which("setarch") else []
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    sim = []
    if cache:
        sim = ["--cache-sim=yes", "--I1=32768,8,64", "--D1=32768,8,64",
               f"--LL={_l2_size()},16,64"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [*fixed, "valgrind", "--tool=callgrind", "--toggle-collect=starmap_next", *sim,
             f"--callgrind-out-file={tmp}/cg.out", sys.executable, __file__, "--child", config,
             "--calls", str(calls), *(["--steady"] if steady else [])],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        with open(f"{tmp}/cg.out") as f:
            text = f.read()
    events = re.search(r"^events: (.+)$", text, re.MULTILINE)
    totals = re.search(r"^totals: (.+)$", text, re.MULTILINE)
    if events is None or totals is None:
        raise SystemExit(f"valgrind wrote no totals for {config}")
    return dict(zip(events.group(1).split(), map(int, totals.group(1).split()), strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="counted calls per config")
    parser.add_argument("--seeds", type=int, default=3,
                        help="hash seeds per config, the median printed (3)")  # fmt: skip
    parser.add_argument("--cache", action="store_true",
                        help="also simulate the L1 and L2 caches, print their misses")  # fmt: skip
    parser.add_argument("--steady", action="store_true",
                        help="count with the garbage collector off and the ledger's writer "
                        "not woken (the calls a median sees; see above)")  # fmt: skip
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.calls, args.steady)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian package valgrind)", file=sys.stderr)
        return 1
    runs = {
        c: [
            _count(c, args.calls, seed, args.cache, args.steady)
            for seed in range(1, args.seeds + 1)
        ]
        for c in CONFIGS
    }
    shown = CACHE_EVENTS if args.cache else {"instructions": ("Ir",)}
    for title, names in shown.items():
        counts = {c: [sum(r[n] for n in names) / args.calls for r in rs] for c, rs in runs.items()}
        _print(title, counts, args.calls, args.seeds)
    return 0


def _print(title: str, counts: dict[str, list[float]], calls: int, seeds: int) -> None:
    per_call = {c: statistics.median(n) for c, n in counts.items()}
    plain = per_call["plain"]
    print(f"{title} per streamed call ({calls} calls each, calling thread only; "
          f"median over hash seeds 1..{seeds}, min..max)")  # fmt: skip
    for config, n in per_call.items():
        spread = f"({min(counts[config]) / 1000:,.2f}..{max(counts[config]) / 1000:,.2f})"
        added = "" if config == "plain" else f"   {(n - plain) / 1000:+,.2f}K over plain"
        print(f"  {config:<12} {n / 1000:>10,.2f}K {spread:>22}{added}")


if __name__ == "__main__":
    raise SystemExit(main())
