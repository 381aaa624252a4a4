"""This checkout's streamed chat call against another commit's, in one process (issue 4's
profiling aid).

``python bench/ab_stream.py [--base REV] [--calls N] [--runs R]`` extracts the package at
``REV`` (default ``HEAD``, so uncommitted work is compared with the last commit) into a
temporary directory as ``agentledger_base`` (its absolute imports rewritten), and runs, in
one process per run, four streamed Chat Completions calls call by call in a random order
(``bench/integrations.py``'s paired design, ``httpx.MockTransport`` answering the fake
provider's recorded bytes): the plain SDK, the floor (see ``bench/stream_ablations.py``),
a client wrapped by ``REV``'s ``agentledger.integrations.openai.wrap`` and one wrapped by
this checkout's, each with a SQLite ledger of its own. It prints each one's median added
wall time over plain and the median per-call difference of this checkout's minus ``REV``'s.

Why one process: between processes this machine's speed drifts by more than the few µs a
change to the integration moves (docs/benchmarks.md, session 15), while calls alternating in
one process see the machine at the same moments. Not a target; the target is judged by
``bench/run.py --only integrations``.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASE = "agentledger_base"
_IMPORT = re.compile(r"^(\s*)(from|import) agentledger(?=[.\s])", re.MULTILINE)


def extract_base(rev: str, into: Path) -> Path:
    """The package at ``rev`` as ``agentledger_base`` under ``into`` (imports rewritten; the
    compiled rollup fold of this checkout copied in, if built: streams do not use it)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src/agentledger"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / BASE
    (into / "src" / "agentledger").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text()
        path.write_text(_IMPORT.sub(rf"\1\2 {BASE}", text))
    for built in (ROOT / "src" / "agentledger" / "store").glob("_fold*.so"):
        shutil.copy(built, package / "store" / built.name)
    return package


def _child(base_dir: str, calls: int) -> None:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, base_dir)
    import agentledger
    import integrations as bench
    from agentledger.integrations import openai as current

    base_pkg = __import__(BASE)
    base = __import__(f"{BASE}.integrations.openai", fromlist=["wrap"])
    answers = bench._fake_answers()
    with tempfile.TemporaryDirectory() as tmp:
        ours = agentledger.Ledger(f"sqlite:///{tmp}/current.db", handle_signals=False)
        theirs = base_pkg.Ledger(f"sqlite:///{tmp}/base.db", handle_signals=False)
        for ledger in (ours, theirs):
            ledger.prices.warm()
        plain = bench._mock_client(answers)
        runs = {
            "plain": bench._chat_stream(plain),
            "floor": bench._chat_stream_floor(plain),
            "base": bench._chat_stream(base.wrap(bench._mock_client(answers), theirs)),
            "current": bench._chat_stream(current.wrap(bench._mock_client(answers), ours)),
        }
        samples = bench._paired(runs, calls, 100, random.Random(4))
        for ledger in (ours, theirs):
            assert ledger.flush(timeout=60)
            assert ledger.stats().written == calls + 100, ledger.stats()
            ledger.close()
    wall = {name: s.wall[0] for name, s in samples.items()}

    def added(a: list[float], b: list[float]) -> float:
        return statistics.median(x - y for x, y in zip(a, b, strict=True))

    print(statistics.median(wall["plain"]), added(wall["floor"], wall["plain"]),
          added(wall["base"], wall["plain"]), added(wall["current"], wall["plain"]),
          added(wall["current"], wall["base"]))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the commit to compare with (HEAD)")
    parser.add_argument("--calls", type=int, default=2500, help="paired calls per run (2500)")
    parser.add_argument("--runs", type=int, default=3, help="runs, a process each (3)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.calls)
        return 0
    with tempfile.TemporaryDirectory(prefix="agentledger-ab-") as tmp:
        try:
            extract_base(args.base, Path(tmp))
        except subprocess.CalledProcessError as exc:
            parser.error(f"cannot read {args.base!r} from git: {exc.stderr.decode().strip()}")
        print(f"streamed call, µs added over plain (median of {args.calls} paired calls); "
              f"base = {args.base}")  # fmt: skip
        head = ("run", "plain", "floor", "base", "current", "current-base")
        print("  {:<4} {:>7} {:>7} {:>7} {:>8} {:>13}".format(*head))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
        for run in range(1, args.runs + 1):
            out = subprocess.run(
                [sys.executable, __file__, "--child", tmp, "--calls", str(args.calls)],
                capture_output=True, text=True, check=True, env=env,
            ).stdout.split()  # fmt: skip
            plain, floor, base, current, diff = (float(v) for v in out[-5:])
            print(f"  {run:<4} {plain:>7.0f} {floor:>7.1f} {base:>7.1f} {current:>8.1f} "
                  f"{diff:>13.1f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
