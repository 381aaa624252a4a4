"""Issue 4's speed target: the time ``agentledger.integrations.openai`` adds to an SDK call.

One ``openai.OpenAI`` client calls ``chat.completions.create`` in three configurations:
**plain** (nothing instrumented), **agentledger** (``instrument(ledger)`` with a SQLite ledger
whose writer thread runs as in production) and **OpenLLMetry**
(``OpenAIInstrumentor().instrument(tracer_provider=...)`` with a SimpleSpanProcessor and an
InMemorySpanExporter). Each call is timed on its own; the configurations take turns in short
blocks (ABC, BCA, CAB, ...), so the machine's drift lands on all three. The added time of a
configuration is ``median(its calls) - median(plain calls)``.

Two transports: the local fake provider server of the integration tests (a real HTTP round
trip on 127.0.0.1, ~1 ms and noisy) and an in-process ``httpx.MockTransport`` answering the
same bytes (isolates the instrumentation's own cost). Non-streaming and streaming calls; the
streaming runs add a fourth configuration, the plain SDK asking for the usage chunk that
agentledger requests (the same way: ``extra_body``), to show what that one extra chunk costs
when the SDK builds its model (agentledger reads it from the raw event instead).

Then, in process only, a paired measurement (rows ``... paired [...]``, which judge the 50 µs
bound; the block design judges the comparison with OpenLLMetry): the
same client unwrapped and ``wrap()``-ped by agentledger (a ledger of its own), calls
alternating one by one in a random order; the added time is the median of the per-call
differences. On a machine whose speed drifts from block to block it resolves a few µs where
the block design above moves by tens. Information rows follow the target rows, measured the
same way: with only plain and agentledger in the rotation, the streamed call again (``mock
stream two-way``) and with the async client (``mock stream async``: ``AsyncOpenAI``, each
call run to its end in one event loop); and what agentledger's faster reader of the events
(``integrations/_sse.py``) gives back (``mock stream SDK decoder``: agentledger with that
reader off, beside the plain SDK whose events only that reader reads; ``mock stream
chunked``: each stream's body given one event per chunk, as a connection gives it, where
MockTransport gives it as one chunk); and the calls through the fake server over HTTP
(``http chat``, ``http stream``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter_ns, thread_time_ns
from typing import Any

from _harness import Result

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o"
MESSAGES = [{"role": "user", "content": "Say hello."}]
CONFIGS = ("plain", "agentledger", "openllmetry")
TARGET_US = 50.0
BOOTSTRAP = 500
PEER_NAME = "OpenLLMetry opentelemetry-instrumentation-openai, Simple+InMemory"


def _fake_provider() -> Any:
    """tests/integrations/fake_provider.py, loaded by path (a module of its own here)."""
    name = "agentledger_bench_fake_provider"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "tests" / "integrations" / "fake_provider.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    # The server writes the headers and the body in two send()s; with Nagle's algorithm on,
    # the body then waits for the client's delayed ACK and every call takes ~44 ms instead of
    # ~1 ms. This module instance is ours alone: the tests' copy is not changed.
    module._Handler.disable_nagle_algorithm = True
    return module


# --- the three configurations -------------------------------------------------------------
class _Configs:
    """Switches between the configurations and checks that each switch really happened."""

    def __init__(self, tmp: str) -> None:
        from openai.resources.chat.completions.completions import Completions
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from agentledger import Ledger
        from agentledger.integrations import openai as al_openai

        self.al = al_openai
        self.path = os.path.join(tmp, "bench.db")
        self.ledger = Ledger(f"sqlite:///{self.path}", handle_signals=False)
        self.ledger.prices.warm()
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.instrumentor = OpenAIInstrumentor()
        self.cls = Completions
        self.original = Completions.__dict__["create"]
        self.current = "plain"
        self.left_wrapped = 0  # wrappers OpenLLMetry's uninstrument() did not remove
        self.uninstalls = 0
        self.ledger_calls = 0  # calls made while agentledger was on (all checked below)
        self._events = 0
        self._spans = 0

    def switch(self, name: str) -> None:
        if name == self.current:
            return
        if self.current == "agentledger":
            self.al.uninstrument()
        elif self.current == "openllmetry":
            self.instrumentor.uninstrument()
            self.left_wrapped += _unwrap_wrapt()
            self.uninstalls += 1
        assert self.cls.__dict__["create"] is self.original, "SDK method not restored"
        if name == "agentledger":
            self.al.instrument(self.ledger)
        elif name == "openllmetry":
            self.instrumentor.instrument(tracer_provider=self.provider)
        self.current = name
        assert (self.cls.__dict__["create"] is self.original) == (name == "plain")

    def check(self, calls: int) -> None:
        """After ``calls`` calls in the current configuration: exactly its records appeared."""
        # Accepted rows, read without stats(), which would price and aggregate the buffer on
        # this thread: that work stays on the writer thread, as in production. (The records
        # in the inbox are counted as they are moved into the buffer, unbuilt.)
        ledger = self.ledger
        with ledger._buf_lock:
            ledger._take_inbox()
            events = ledger._accepted
        spans = len(self.exporter.get_finished_spans())
        want_events = calls if self.current == "agentledger" else 0
        want_spans = calls if self.current == "openllmetry" else 0
        got_events, got_spans = events - self._events, spans - self._spans
        assert got_events == want_events, f"{self.current}: {got_events} ledger events"
        assert got_spans == want_spans, f"{self.current}: {got_spans} spans"
        self._events, self._spans = events, spans
        self.ledger_calls += want_events
        if spans > 10_000:
            self.exporter.clear()
            self._spans = 0

    def close(self) -> int:
        """Back to plain; flush and close the ledger; return the rows in its SQLite file."""
        self.switch("plain")
        assert self.ledger.flush(timeout=60), "the ledger could not write its events"
        stats = self.ledger.stats()
        assert stats.dropped == 0
        assert stats.rejected == 0
        self.ledger.close()
        self.provider.shutdown()
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            rows: int = db.execute("SELECT count(*) FROM events").fetchone()[0]
        assert rows == self.ledger_calls, f"{rows} rows written, {self.ledger_calls} calls"
        return rows


def _unwrap_wrapt() -> int:
    """Undo what OpenLLMetry's ``uninstrument()`` leaves behind; return how many methods.

    opentelemetry-instrumentation-openai 0.62.4 calls ``unwrap("openai.resources.chat.
    completions", "Completions.create")``, which opentelemetry-instrumentation 0.66b2 reads
    as module ``openai.resources.chat``, attribute ``completions``, then looks up an
    attribute literally named ``"Completions.create"``: nothing is unwrapped, and a second
    ``instrument()`` would stack a second wrapper on the first.
    """
    import wrapt

    count = 0
    for mod_name, module in list(sys.modules.items()):
        if not mod_name.startswith("openai.") or module is None:
            continue
        for cls in list(vars(module).values()):
            if not isinstance(cls, type) or not cls.__module__.startswith("openai"):
                continue
            for attr_name, value in list(vars(cls).items()):
                if isinstance(value, wrapt.FunctionWrapper):
                    while isinstance(value, wrapt.FunctionWrapper):
                        value = value.__wrapped__
                    setattr(cls, attr_name, value)
                    count += 1
    return count


# --- transports ----------------------------------------------------------------------------
def _recorded_answers(base_url: str) -> dict[str, tuple[dict[str, str], bytes]]:
    """The fake server's answers (headers, body) to the requests the benchmark makes."""
    import httpx

    answers = {}
    with httpx.Client(base_url=base_url) as http:
        for key, extra in (
            ("json", {}),
            ("stream", {"stream": True}),
            ("stream+usage", {"stream": True, "stream_options": {"include_usage": True}}),
        ):
            resp = http.post("/chat/completions", json={"model": MODEL, "messages": MESSAGES,
                                                        **extra})  # fmt: skip
            resp.raise_for_status()
            headers = {k: v for k, v in resp.headers.items() if k in ("content-type",
                                                                       "x-request-id")}  # fmt: skip
            answers[key] = (headers, resp.content)
    return answers


def _mock_transport(answers: dict[str, tuple[dict[str, str], bytes]], chunked: bool = False) -> Any:
    """Answers the recorded bytes in process: the whole body as one chunk, as
    ``httpx.MockTransport`` gives it, or (``chunked``) a stream's body one event per chunk, as
    a connection gives it (the SDK's decoder and agentledger's work per chunk)."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        key = "json"
        if body.get("stream"):
            options = body.get("stream_options") or {}
            key = "stream+usage" if options.get("include_usage") else "stream"
        headers, content = answers[key]
        if chunked and key != "json":
            events = [event + b"\n\n" for event in content.split(b"\n\n") if event]
            return httpx.Response(200, headers=headers, content=iter(events))
        return httpx.Response(200, headers=headers, content=content)

    return httpx.MockTransport(handler)


#: The plain SDK asking for the usage chunk, as agentledger does (same JSON body).
USAGE_EXTRA: dict[str, Any] = {"stream_options": {"include_usage": True}}


def _fake_answers() -> dict[str, tuple[dict[str, str], bytes]]:
    """:func:`_recorded_answers` of a fake provider server started (and stopped) for it."""
    fake = _fake_provider().FakeProvider()
    try:
        return _recorded_answers(fake.openai_url)
    finally:
        fake.stop()


def _mock_async_client(answers: dict[str, tuple[dict[str, str], bytes]]) -> Any:
    """:func:`_mock_client` as an ``openai.AsyncOpenAI`` client."""
    import httpx
    import openai

    answer = _mock_transport(answers).handler  # type: ignore[attr-defined]

    async def handler(request: Any) -> Any:
        return answer(request)

    return openai.AsyncOpenAI(
        base_url="http://fake.invalid/v1", api_key="x", max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )  # fmt: skip


def _mock_client(answers: dict[str, tuple[dict[str, str], bytes]], chunked: bool = False) -> Any:
    """An ``openai.OpenAI`` client answered in process with the recorded ``answers`` (see
    :func:`_mock_transport` for ``chunked``)."""
    import httpx
    import openai

    return openai.OpenAI(
        base_url="http://fake.invalid/v1", api_key="x", max_retries=0,
        http_client=httpx.Client(transport=_mock_transport(answers, chunked)),
    )  # fmt: skip


def _bare_filter(events: Iterator[Any]) -> Iterator[Any]:
    """Server-sent events less the usage-only chunk (the fake server's spacing), none read."""
    for sse in events:
        if '"choices": []' not in sse.data:
            yield sse


def _floor(stream: Any) -> Any:
    """The SDK ``stream`` with :func:`_bare_filter` on its raw events: the least any
    integration that asks for the usage and hides its chunk adds (the floor)."""
    events = type(stream)._iter_events.__get__(stream)

    def iter_events() -> Iterator[Any]:
        vars(stream).pop("_iter_events", None)  # no reference cycle
        return _bare_filter(events())

    stream._iter_events = iter_events
    return stream


# --- measurement ---------------------------------------------------------------------------
@dataclass
class _Samples:
    wall: list[list[float]] = field(default_factory=list)  # per round, per call, µs
    cpu: list[list[float]] = field(default_factory=list)


def _block(call: Callable[[], object], n: int) -> tuple[list[float], list[float]]:
    wall: list[float] = []
    cpu: list[float] = []
    pc, tt = perf_counter_ns, thread_time_ns
    for _ in range(n):
        w0, c0 = pc(), tt()
        call()
        c1, w1 = tt(), pc()
        wall.append((w1 - w0) / 1000.0)
        cpu.append((c1 - c0) / 1000.0)
    return wall, cpu


def _measure(
    configs: _Configs, calls: dict[str, Callable[[], object]], rounds: int, n: int, warmup: int
) -> dict[str, _Samples]:
    """``calls``: configuration name -> the call; names other than ours and OpenLLMetry's
    run with nothing instrumented (``plain+usage``: the plain SDK asked for the usage chunk)."""
    names = list(calls)
    out = {name: _Samples() for name in names}

    def run(name: str, count: int) -> tuple[list[float], list[float]]:
        configs.switch(name if name in CONFIGS else "plain")
        gc.collect()
        sample = _block(calls[name], count)
        configs.check(count)
        return sample

    for name in names:  # warm-up: imports, connection, caches, the price plan
        run(name, warmup)
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:  # ABC, BCA, CAB, ...
            wall, cpu = run(name, n)
            out[name].wall.append(wall)
            out[name].cpu.append(cpu)
    configs.switch("plain")
    return out


@dataclass
class _Added:
    median: float  # µs: median of the config's calls - median of the plain calls
    round_p25: float  # spread of the per-round differences (block medians, same round)
    round_p75: float
    ci_low: float  # 95 % block-bootstrap interval of ``median`` (rounds resampled)
    ci_high: float
    rounds: list[float]


def _pooled_median(rounds: list[list[float]]) -> float:
    return statistics.median(x for r in rounds for x in r)


def _added(config: list[list[float]], plain: list[list[float]], rng: random.Random) -> _Added:
    diffs = [
        statistics.median(c) - statistics.median(p) for c, p in zip(config, plain, strict=True)
    ]
    q = statistics.quantiles(diffs, n=4) if len(diffs) > 1 else [diffs[0]] * 3
    # Resample whole rounds (the config's block and plain's block of the same round stay
    # together), so the interval keeps the round-to-round drift of the machine.
    idx = range(len(config))
    boot = sorted(
        _pooled_median([config[i] for i in pick]) - _pooled_median([plain[i] for i in pick])
        for pick in (rng.choices(idx, k=len(config)) for _ in range(BOOTSTRAP))
    )
    lo, hi = boot[int(0.025 * BOOTSTRAP)], boot[int(0.975 * BOOTSTRAP) - 1]
    return _Added(_pooled_median(config) - _pooled_median(plain), q[0], q[2], lo, hi, diffs)


LABELS = {
    "plain+usage": "plain + include_usage (no instrumentation)",
    "plain+decoder": "plain read by agentledger's decoder",
}


def _print_table(
    title: str, clock: str, samples: dict[str, _Samples], added: dict[str, _Added]
) -> None:
    print(f"   {title} [{clock} µs/call]")
    print(f"   {'configuration':<44} {'median':>9} {'added':>8}   95% CI of added"
          "     added per round p25..p75")  # fmt: skip
    for name, sample in samples.items():
        med = _pooled_median(getattr(sample, clock))
        label = LABELS.get(name, name)
        if name == "plain":
            print(f"   {label:<44} {med:>9,.1f} {'-':>8}")
            continue
        a = added[name]
        print(f"   {label:<44} {med:>9,.1f} {a.median:>8.1f}   "
              f"{a.ci_low:>6.1f} .. {a.ci_high:<7.1f}   "
              f"{a.round_p25:>6.1f} .. {a.round_p75:.1f}")  # fmt: skip
    ours, peer = added["agentledger"].median, added["openllmetry"].median
    ratio = f"{peer / ours:.1f}x" if ours > 0 else "n/a (agentledger adds nothing measurable)"
    print(f"   OpenLLMetry added / agentledger added: {ratio}", flush=True)


def _results(scenario: str, title: str, samples: dict[str, _Samples], rounds: int, n: int,
             note: str) -> list[Result]:  # fmt: skip
    rng = random.Random(4)
    out = []
    for clock in ("wall", "cpu"):
        plain = getattr(samples["plain"], clock)
        added = {
            name: _added(getattr(sample, clock), plain, rng)
            for name, sample in samples.items()
            if name != "plain"
        }
        _print_table(title, clock, samples, added)
        ours, peer = added["agentledger"], added["openllmetry"]
        ratio = peer.median / ours.median if ours.median > 0 else None
        # The target is on time per call (wall); the caller thread's CPU is shown
        # beside it for information (it leaves out waiting for the server and for a core).
        # The block design judges the comparison with OpenLLMetry (measured only here); the
        # 50 µs bound is judged on the paired rows (see _paired_results): on a machine whose
        # speed drifts between blocks, a block-design difference can move by tens of µs.
        passed = None
        if clock == "wall":
            passed = ours.median < peer.median
        extra = ""
        if "plain+usage" in added:
            extra = (f"; of ours, the usage chunk alone (plain SDK asked for it) adds "
                     f"{added['plain+usage'].median:.1f}")  # fmt: skip
        out.append(Result(
            f"integrations {scenario} [{clock}]", f"added {clock} time per call", "µs/call",
            ours.median, peer.median, PEER_NAME, ratio, "peer / ours",
            "< peer" if clock == "wall" else "(info)", passed,
            ours.rounds, peer.rounds,
            f"{title}; {rounds} rounds x {n} calls per configuration; plain median "
            f"{_pooled_median(plain):,.1f} µs; added, 95% CI (rounds resampled): agentledger "
            f"{ours.ci_low:.1f}..{ours.ci_high:.1f}, OpenLLMetry {peer.ci_low:.1f}.."
            f"{peer.ci_high:.1f}; added per round p25..p75: agentledger {ours.round_p25:.1f}.."
            f"{ours.round_p75:.1f}, OpenLLMetry {peer.round_p25:.1f}..{peer.round_p75:.1f}"
            f"{extra}; {note}",
        ))  # fmt: skip
    return out


def _chat(client: Any) -> Callable[[], object]:
    completions = client.chat.completions  # .create is looked up per call: patched on the class

    def call() -> object:
        return completions.create(model=MODEL, messages=MESSAGES)

    return call


def _chat_stream(client: Any, **extra: Any) -> Callable[[], object]:
    completions = client.chat.completions

    def call() -> object:
        for _ in completions.create(model=MODEL, messages=MESSAGES, stream=True, **extra):
            pass
        return None

    return call


def _achat_stream(client: Any, loop: asyncio.AbstractEventLoop) -> Callable[[], object]:
    """:func:`_chat_stream` of an ``AsyncOpenAI`` client, run to its end in ``loop``."""
    completions = client.chat.completions

    async def stream() -> None:
        async for _ in await completions.create(model=MODEL, messages=MESSAGES, stream=True):
            pass

    def call() -> object:
        return loop.run_until_complete(stream())

    return call


def _chat_stream_floor(client: Any) -> Callable[[], object]:
    """A streamed call of the plain SDK asking for the usage chunk, which :func:`_floor`
    drops unread."""
    completions = client.chat.completions

    def call() -> object:
        stream = completions.create(
            model=MODEL, messages=MESSAGES, stream=True, extra_body=USAGE_EXTRA
        )
        for _ in _floor(stream):
            pass
        return None

    return call


def _sdk_decoder(call: Callable[[], object]) -> Callable[[], object]:
    """``call`` with agentledger's faster event reader off (``_sse.ENABLED``): its streams
    read by the SDK's own decoder."""
    from agentledger.integrations import _sse

    def sdk_call() -> object:
        _sse.ENABLED = False
        try:
            return call()
        finally:
            _sse.ENABLED = True

    return sdk_call


def _chat_stream_decoder(client: Any) -> Callable[[], object]:
    """A streamed call of the plain SDK (no usage asked for) whose events agentledger's
    faster reader reads (``_sse.speed_up``), and nothing else of agentledger's."""
    from agentledger.integrations._sse import speed_up

    completions = client.chat.completions

    def call() -> object:
        stream = completions.create(model=MODEL, messages=MESSAGES, stream=True)
        speed_up(stream)
        for _ in stream:
            pass
        return None

    return call


def _scenario_calls(client: Any, stream: bool) -> dict[str, Callable[[], object]]:
    if not stream:
        call = _chat(client)
        return dict.fromkeys(CONFIGS, call)
    call = _chat_stream(client)
    # agentledger asks for stream_options={"include_usage": True} (through extra_body, the
    # same JSON body) for exact usage: the plain SDK asking the same way shows what the one
    # extra chunk costs the SDK (agentledger reads that chunk raw, without its model).
    usage = _chat_stream(client, extra_body=USAGE_EXTRA)
    return {**dict.fromkeys(CONFIGS, call), "plain+usage": usage}


@contextlib.contextmanager
def _setup() -> Iterator[tuple[Any, _Configs, dict[str, tuple[dict[str, str], bytes]]]]:
    fake = _fake_provider().FakeProvider()
    tmp = tempfile.TemporaryDirectory(prefix="agentledger-bench-")
    configs = None
    try:
        configs = _Configs(tmp.name)
        yield fake, configs, _recorded_answers(fake.openai_url)
    finally:
        if configs is not None:  # after a failure: leave nothing patched
            with contextlib.suppress(Exception):
                configs.switch("plain")
        fake.stop()
        tmp.cleanup()


# --- paired: plain and agentledger alternating call by call ---------------------------------
PAIRED_AL = "agentledger (wrap)"


def _paired(
    calls: dict[str, Callable[[], object]], n: int, warmup: int, rng: random.Random
) -> dict[str, _Samples]:
    """``n`` calls of each configuration, alternating call by call in a random order.

    The block design above lets the machine's drift between blocks into the difference; here
    every agentledger call has a plain call next to it, and the added time is the median of
    the per-call differences (``_paired_added``).
    """
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    out = {name: _Samples(wall=[[]], cpu=[[]]) for name in names}
    pc, tt = perf_counter_ns, thread_time_ns
    gc.collect()
    for _ in range(n):
        rng.shuffle(names)
        for name in names:
            w0, c0 = pc(), tt()
            calls[name]()
            c1, w1 = tt(), pc()
            out[name].wall[0].append((w1 - w0) / 1000.0)
            out[name].cpu[0].append((c1 - c0) / 1000.0)
    return out


def _paired_added(
    config: list[float], plain: list[float], rng: random.Random
) -> tuple[float, float, float]:
    """Median of the per-call differences and its 95 % bootstrap interval."""
    diffs = [c - p for c, p in zip(config, plain, strict=True)]
    boot = sorted(statistics.median(rng.choices(diffs, k=len(diffs))) for _ in range(BOOTSTRAP))
    return statistics.median(diffs), boot[int(0.025 * BOOTSTRAP)], boot[int(0.975 * BOOTSTRAP) - 1]


def _paired_results(
    scenario: str, title: str, samples: dict[str, _Samples], n: int, target: bool = True
) -> list[Result]:
    rng = random.Random(4)
    out = []
    for clock in ("wall", "cpu"):
        plain = getattr(samples["plain"], clock)[0]
        print(f"   {title}, calls alternating one by one [{clock} µs/call]")
        print(f"   {'configuration':<44} {'median':>9} {'added':>8}   95% CI of added")
        print(f"   {'plain':<44} {statistics.median(plain):>9,.1f} {'-':>8}")
        added = {}
        for name, sample in samples.items():
            if name == "plain":
                continue
            values = getattr(sample, clock)[0]
            added[name] = _paired_added(values, plain, rng)
            med, lo, hi = added[name]
            label = LABELS.get(name, name)
            print(f"   {label:<44} {statistics.median(values):>9,.1f} {med:>8.1f}   "
                  f"{lo:>6.1f} .. {hi:.1f}", flush=True)  # fmt: skip
        med, lo, hi = added[PAIRED_AL]
        extra = ""
        if "plain+usage" in added:
            extra = f"; the plain SDK asking for the usage chunk adds {added['plain+usage'][0]:.1f}"
        if "plain+decoder" in added:
            extra = (f"; the plain SDK read by agentledger's decoder adds "
                     f"{added['plain+decoder'][0]:.1f}")  # fmt: skip
        out.append(Result(
            f"integrations {scenario} paired [{clock}]", f"added {clock} time per call",
            "µs/call", med, None, "-", None, "",
            f"<= {TARGET_US:g} µs" if clock == "wall" and target else "(info)",
            med <= TARGET_US if clock == "wall" and target else None,
            notes=f"{title}; agentledger.integrations.openai.wrap(client, ledger) against the "
            f"same client unwrapped, {n} calls each alternating one by one (random order); "
            f"median of the per-call differences, 95% CI {lo:.1f}..{hi:.1f}{extra}",
        ))  # fmt: skip
    return out


def bench_integrations(quick: bool) -> list[Result]:
    import httpx
    import openai

    rounds, n, warmup = (12, 20, 30) if quick else (40, 40, 100)
    results: list[Result] = []
    with _setup() as (fake, configs, answers):
        http_client = openai.OpenAI(base_url=fake.openai_url, api_key="x", max_retries=0)
        mock_client = openai.OpenAI(
            base_url="http://fake.invalid/v1", api_key="x", max_retries=0,
            http_client=httpx.Client(transport=_mock_transport(answers)),
        )  # fmt: skip
        # The target first, in the process as it starts (see _measure_paired).
        paired_rows, paired_calls = _measure_paired(configs.path, answers, quick, results,
                                                    fake.openai_url)  # fmt: skip
        for scenario, title, client, stream, note in (
            ("http chat", "fake server over HTTP, non-streaming", http_client, False,
             "real round trip on 127.0.0.1 (the server is a thread of this process)"),
            ("http stream", "fake server over HTTP, streaming", http_client, True,
             "stream read to the end (5 content chunks)"),
            ("mock chat", "httpx.MockTransport, non-streaming", mock_client, False,
             "the fake server's bytes, answered in process"),
            ("mock stream", "httpx.MockTransport, streaming", mock_client, True,
             "the fake server's bytes, answered in process"),
        ):  # fmt: skip
            calls = _scenario_calls(client, stream)
            samples = _measure(configs, calls, rounds, n, warmup)
            results.extend(_results(scenario, title, samples, rounds, n, note))
        rows = configs.close()
        http_client.close()
        mock_client.close()
    print(f"   checked: {rows:,} agentledger events in the SQLite file = calls made with it on; "
          f"spans only in OpenLLMetry's blocks; its uninstrument() left {configs.left_wrapped} "
          f"wrappers in {configs.uninstalls} calls (the benchmark removes them); paired runs: "
          f"{paired_rows:,} events for {paired_calls:,} wrapped calls", flush=True)  # fmt: skip
    return results


def _measure_paired(
    path: str, answers: dict[str, tuple[dict[str, str], bytes]], quick: bool,
    results: list[Result], http_url: str,
) -> tuple[int, int]:  # fmt: skip
    """The in-process scenarios call by call: the target rows (nothing is instrumented
    class-wide: the agentledger client is wrapped on its own, with a SQLite ledger of its
    own). Measured first, in the process as it starts, before the block phase's class-wide
    instrument/uninstrument rounds and OpenLLMetry's in-memory spans (see
    docs/benchmarks.md, session 14)."""
    from agentledger import Ledger
    from agentledger.integrations import openai as al_openai

    n, warmup = (400, 30) if quick else (1500, 100)
    db = path.replace("bench.db", "paired.db")
    ledger = Ledger(f"sqlite:///{db}", handle_signals=False)
    ledger.prices.warm()

    plain, wrapped = _mock_client(answers), al_openai.wrap(_mock_client(answers), ledger)
    rng = random.Random(4)
    made = 0
    for scenario, title, stream in (
        ("mock chat", "httpx.MockTransport, non-streaming", False),
        ("mock stream", "httpx.MockTransport, streaming", True),
    ):
        if stream:
            calls = {"plain": _chat_stream(plain), PAIRED_AL: _chat_stream(wrapped),
                     "plain+usage": _chat_stream(plain, extra_body=USAGE_EXTRA)}  # fmt: skip
        else:
            calls = {"plain": _chat(plain), PAIRED_AL: _chat(wrapped)}
        samples = _paired(calls, n, warmup, rng)
        made += n + warmup
        results.extend(_paired_results(scenario, title, samples, n))

    def information(scenario: str, title: str, calls: dict[str, Callable[[], object]]) -> int:
        """An information row (no target): plain, agentledger and what else ``calls`` has,
        alternating."""
        samples = _paired(calls, n, warmup, rng)
        others = [LABELS.get(name, name) for name in calls if name not in ("plain", PAIRED_AL)]
        names = ["plain", "agentledger", *others]
        rotation = ", ".join(names[:-1]) + f" and {names[-1]}"
        if not others:
            rotation = "only " + rotation
        results.extend(_paired_results(
            scenario, f"{title}, {rotation} in the rotation", samples, n, target=False,
        ))  # fmt: skip
        return n + warmup

    # Information, after the target rows: the same streamed call with nothing else in the
    # rotation. agentledger's own code runs colder the more other code runs between its
    # calls (docs/benchmarks.md, session 17: 36-38 µs added this way where the target's
    # three-way rotation read ~50 on the same machine).
    made += information(
        "mock stream two-way",
        "httpx.MockTransport, streaming",
        {"plain": _chat_stream(plain), PAIRED_AL: _chat_stream(wrapped)},
    )
    # Information: what agentledger's faster reader of the events (integrations/_sse.py)
    # gives back: agentledger with it off (the SDK's decoder reads the events, as before
    # session 23) and the plain SDK with only the reader.
    made += information(
        "mock stream SDK decoder",
        "httpx.MockTransport, streaming, agentledger with the SDK's decoder",
        {"plain": _chat_stream(plain), PAIRED_AL: _sdk_decoder(_chat_stream(wrapped)),
         "plain+decoder": _chat_stream_decoder(plain)},
    )  # fmt: skip
    # Information: the body of each stream given one event per chunk, as a connection gives
    # it, rather than as one chunk (what MockTransport does): agentledger's decoder and the
    # SDK's then both work chunk by chunk.
    cplain, cwrapped = _mock_client(answers, True), al_openai.wrap(_mock_client(answers, True),
                                                                   ledger)  # fmt: skip
    made += information(
        "mock stream chunked",
        "httpx.MockTransport, streaming, one event per chunk",
        {"plain": _chat_stream(cplain), PAIRED_AL: _chat_stream(cwrapped),
         "plain+decoder": _chat_stream_decoder(cplain)},
    )  # fmt: skip
    cplain.close()
    cwrapped.close()
    # Information: the same streamed call with the async client (AsyncOpenAI, awaited in
    # one event loop).
    loop = asyncio.new_event_loop()
    aplain, awrapped = _mock_async_client(answers), al_openai.wrap(_mock_async_client(answers),
                                                                   ledger)  # fmt: skip
    made += information("mock stream async", "httpx.MockTransport, streaming, AsyncOpenAI",
                        {"plain": _achat_stream(aplain, loop),
                         PAIRED_AL: _achat_stream(awrapped, loop)})  # fmt: skip
    # Information: the calls through the fake server over HTTP (a real round trip on
    # 127.0.0.1; the server is a thread of this process), alternating as above.
    import openai

    hplain = openai.OpenAI(base_url=http_url, api_key="x", max_retries=0)
    hwrapped = al_openai.wrap(openai.OpenAI(base_url=http_url, api_key="x", max_retries=0),
                              ledger)  # fmt: skip
    for scenario, title, call in (
        ("http chat", "fake server over HTTP, non-streaming", _chat),
        ("http stream", "fake server over HTTP, streaming", _chat_stream),
    ):
        made += information(scenario, title, {"plain": call(hplain), PAIRED_AL: call(hwrapped)})
    hplain.close()
    hwrapped.close()
    for client in (aplain, awrapped):
        loop.run_until_complete(client.close())
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    assert ledger.flush(timeout=60), "the paired ledger could not write its events"
    assert ledger.stats().rejected == 0
    ledger.close()
    plain.close()
    wrapped.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows: int = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert rows == made, f"{rows} rows written, {made} wrapped calls"
    return rows, made
