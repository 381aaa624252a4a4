"""Where a streamed chat call's added time goes: ablations (issue 4's profiling aid).

``python bench/stream_ablations.py [--calls N] [--rounds R] [VARIANT ...]`` runs, in one
process per variant, three clients call by call in a random order (``bench/integrations.py``'s
paired design, ``httpx.MockTransport`` answering the fake provider's recorded bytes): the
plain SDK, the **floor** (the plain SDK asking for the usage chunk, its raw event dropped
before the SDK builds a model of it: what any integration that asks for the usage and hides
its chunk adds at least) and a client wrapped by ``agentledger.integrations.openai.wrap``
with one piece of agentledger replaced by a no-op. It prints the wrapped client's median
added wall time over the floor, per variant.

Not a target and not a correct integration: a variant records wrong or no events. The
differences between variants say what each piece costs in place (between the SDK's own work,
where it costs two to five times its warm micro-timing); docs/benchmarks.md has a run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import integrations as bench


def _passthrough(original: Any, adapter: Any, ledger_ref: Any) -> Any:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return bench._floor(original(self, *args, **kwargs, extra_body=bench.USAGE_EXTRA))

    return wrapper


def _done(self: Any, read: Any) -> None:
    self.done = True


_KEPT: list[Any] = []


def _keeper(limit: int) -> Callable[[Any, Any], None]:
    """A ``Call.finish_later`` that keeps the call and its reader, as the ledger's inbox
    does, and drops them every ``limit`` calls unread (no writer work at all)."""

    def finish_later(self: Any, read: Any) -> None:
        self.done = True
        self._read = read
        _KEPT.append((self._ctx, self))
        if len(_KEPT) >= limit:
            _KEPT.clear()

    return finish_later


#: variant -> what it replaces (``module.Class.attribute`` -> no-op; ``ledger:option`` -> a
#: Ledger option), and what it means.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "full": ("agentledger as it is", {}),
    "nousage": ("the usage-only chunk dropped undecoded (recorded as an estimate)",
                {"openai._usage_event": lambda data: {"usage": {}}}),
    "norecord": ("the call is finished but not recorded (nothing handed to the writer)",
                 {"_common.Call.finish_later": _done}),
    "nofinish": ("the stream's end records nothing (no finish, no record when freed)",
                 {"openai._ChatWatcher.finish": lambda self, **kw: None,
                  "_common.Call.finish_later": _done,
                  "openai._ChatWatcher.__del__": lambda self: None}),
    "keep": ("the call kept unread as the writer's inbox keeps it for ~1 s, then dropped",
             {"_common.Call.finish_later": _keeper(300)}),
    "nowriter": ("agentledger as it is, the writer never woken while measuring",
                 {"ledger:flush_interval_s": 1e6}),
    "setup": ("the call's set-up only (Call, prepare); the SDK's stream, bare filter",
              {"openai._ChatAdapter.wrap_result": lambda self, result, call, watcher, parsed:
               bench._floor(result)}),
    "wrapper": ("a wrapper that only asks for the usage and adds the bare filter",
                {"openai.sync_wrapper": _passthrough}),
}  # fmt: skip


def _child(variant: str, calls: int) -> None:
    from agentledger import Ledger
    from agentledger.integrations import _common
    from agentledger.integrations import openai as al_openai

    modules = {"openai": al_openai, "_common": _common}
    options: dict[str, Any] = {}
    for target, value in VARIANTS[variant][1].items():
        if target.startswith("ledger:"):
            options[target[7:]] = value
            continue
        module, *owner, name = target.split(".")
        setattr(getattr(modules[module], owner[0]) if owner else modules[module], name, value)
    answers = bench._fake_answers()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(f"sqlite:///{tmp}/a.db", handle_signals=False, **options)
        ledger.prices.warm()
        plain = bench._mock_client(answers)
        wrapped = al_openai.wrap(bench._mock_client(answers), ledger)
        runs: dict[str, Callable[[], object]] = {
            "plain": bench._chat_stream(plain), "floor": bench._chat_stream_floor(plain),
            "wrapped": bench._chat_stream(wrapped),
        }  # fmt: skip
        samples = bench._paired(runs, calls, 100, random.Random(4))
        ledger.close()
    wall = {name: s.wall[0] for name, s in samples.items()}
    over_floor = _median_difference(wall["wrapped"], wall["floor"])
    floor_added = _median_difference(wall["floor"], wall["plain"])
    print(f"{over_floor:.2f} {floor_added:.2f} {statistics.median(wall['plain']):.1f}")


def _median_difference(a: list[float], b: list[float]) -> float:
    return statistics.median(x - y for x, y in zip(a, b, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", metavar="VARIANT",
                        help=f"of: {', '.join(VARIANTS)} (default: all)")  # fmt: skip
    parser.add_argument("--calls", type=int, default=3000, help="paired calls per variant")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every variant")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.calls)
        return 0
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
    variants = args.variants or list(VARIANTS)
    print(f"added wall µs over the floor, {args.calls} paired calls, median per run")
    print(f"  {'variant':<10} {'runs':<16} {'floor added':<13} plain   what")
    for variant in variants:
        over, floor, plain = [], [], []
        for _ in range(args.rounds):
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--calls", str(args.calls)],
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            over.append(float(out[0]))
            floor.append(float(out[1]))
            plain.append(float(out[2]))
        runs = ", ".join(f"{v:.1f}" for v in over)
        print(f"  {variant:<10} {runs:<16} {statistics.median(floor):<13.1f} "
              f"{statistics.median(plain):<7.0f} {VARIANTS[variant][0]}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
