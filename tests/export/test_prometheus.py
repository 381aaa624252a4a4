"""The Prometheus exporter: exposition parsed back and checked against the recorded events.

Families come from ``Ledger.aggregates_snapshot()`` (LedgerCollector) or from the store
(StoreCollector, SQLite and PostgreSQL); both must agree with what was recorded and with
each other. The last test scrapes both through a real Prometheus server and runs seed 001's
PromQL over its HTTP API.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agentledger import Ledger
from agentledger.errors import ConfigError
from agentledger.export.prometheus import (
    LedgerCollector,
    StoreCollector,
    make_asgi_app,
    make_wsgi_app,
    register,
    serve,
)
from agentledger.testing import memory_ledger

from ._prom_helpers import free_port, read_line, samples_of, scrape

BOUNDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

# (model, input, output, cache_read, duration_ms, cost, status, bot, tenant, task, user)
LLM_CALLS: list[tuple[Any, ...]] = [
    ("gpt-4o", 1000, 200, 400, 120.0, Decimal("0.0123"), "ok", "bot-a", "acme", "t1", "u1"),
    ("gpt-4o", 500, 50, 0, 320.0, Decimal("0.0041"), "ok", "bot-a", "acme", "t1", "u2"),
    ("gpt-4o", 10, 0, 0, 2000.0, Decimal("0.0001"), "error", "bot-b", "globex", "t2", "u1"),
    ("claude-haiku-4-5", 300, 30, 0, 10.0, Decimal("0.0007"), "ok", "bot-b", "acme", "t3", "u3"),
    ("mystery-model", 5, 5, 0, 90000.0, None, "ok", None, None, None, None),
]
# (tool, duration_ms, status, bot)
TOOL_CALLS = [("search", 5.0, "ok", "bot-a"), ("search", 50.0, "error", "bot-a"),
              ("fetch", 700.0, "ok", "bot-b")]  # fmt: skip
# (duration_ms, status)
TASKS = [(1500.0, "ok"), (3000.0, "error")]


def _record(ledger: Ledger) -> None:
    for model, inp, out, cr, ms, cost, status, bot, tenant, task, user in LLM_CALLS:
        ledger.record_llm(
            model, inp, out, cache_read_tokens=cr, duration_ms=ms, cost_usd=cost, status=status,
            bot_id=bot, tenant_id=tenant, task_id=task, user_id=user,
            provider="openai" if model == "gpt-4o" else None,
        )  # fmt: skip
    for tool, ms, status, bot in TOOL_CALLS:
        ledger.record_tool(tool, duration_ms=ms, status=status, bot_id=bot)
    for ms, status in TASKS:
        ledger.record_tool("task", kind="custom", duration_ms=ms, status=status)


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    led = memory_ledger()
    _record(led)
    yield led
    led.close()


def _exposition(collector: Any) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def _cost(model: str) -> Decimal:
    return sum((c[5] or Decimal(0) for c in LLM_CALLS if c[0] == model), Decimal(0))


def test_llm_families_match_the_recorded_calls(ledger: Ledger) -> None:
    """Requests, tokens, cost and unpriced calls per model equal what was recorded."""
    s = samples_of(_exposition(LedgerCollector(ledger)))
    assert s["llm_requests_total"] == {
        (("model", "gpt-4o"), ("status", "success")): 2.0,
        (("model", "gpt-4o"), ("status", "error")): 1.0,
        (("model", "claude-haiku-4-5"), ("status", "success")): 1.0,
        (("model", "mystery-model"), ("status", "success")): 1.0,
    }
    tokens = s["llm_tokens_total"]
    assert tokens[(("model", "gpt-4o"), ("token_type", "input"))] == 1510
    assert tokens[(("model", "gpt-4o"), ("token_type", "output"))] == 250
    assert tokens[(("model", "gpt-4o"), ("token_type", "cache_read"))] == 400
    assert tokens[(("model", "gpt-4o"), ("token_type", "reasoning"))] == 0
    assert len(tokens) == 3 * 5
    cost = s["llm_cost_usd_total"]
    for model in ("gpt-4o", "claude-haiku-4-5"):
        assert cost[(("model", model),)] == float(_cost(model))
    assert cost[(("model", "mystery-model"),)] == 0.0
    assert s["llm_unpriced_calls_total"] == {
        (("model", "gpt-4o"),): 0.0,
        (("model", "claude-haiku-4-5"),): 0.0,
        (("model", "mystery-model"),): 1.0,
    }


def test_latency_histogram_uses_the_ledger_bounds(ledger: Ledger) -> None:
    """Cumulative buckets on DURATION_BOUNDS_S (a bound is inclusive), _sum in seconds."""
    s = samples_of(_exposition(LedgerCollector(ledger)))
    buckets = s["llm_latency_seconds_bucket"]
    durations = [c[4] / 1000 for c in LLM_CALLS if c[0] == "gpt-4o"]
    for bound in BOUNDS:
        le = (("le", str(bound)), ("model", "gpt-4o"))
        assert buckets[le] == sum(1 for d in durations if d <= bound), bound
    assert buckets[(("le", "+Inf"), ("model", "gpt-4o"))] == 3
    assert buckets[(("le", "81.92"), ("model", "mystery-model"))] == 0  # 90 s: +Inf only
    assert buckets[(("le", "+Inf"), ("model", "mystery-model"))] == 1
    assert s["llm_latency_seconds_count"][(("model", "gpt-4o"),)] == 3
    assert s["llm_latency_seconds_sum"][(("model", "gpt-4o"),)] == pytest.approx(2.44)
    # 320 ms is exactly the 0.32 bound: counted there (le is "less than or equal").
    assert buckets[(("le", "0.32"), ("model", "gpt-4o"))] == 2


def test_tool_and_task_families(ledger: Ledger) -> None:
    """Tool calls and failures per tool; tasks are custom events named "task"."""
    s = samples_of(_exposition(LedgerCollector(ledger)))
    assert s["tool_calls_total"] == {
        (("status", "success"), ("tool", "search")): 1.0,
        (("status", "error"), ("tool", "search")): 1.0,
        (("status", "success"), ("tool", "fetch")): 1.0,
    }
    assert s["tool_failures_total"] == {(("tool", "search"),): 1.0, (("tool", "fetch"),): 0.0}
    assert s["tool_duration_seconds_count"][(("tool", "fetch"),)] == 1
    assert s["task_success_total"] == {(("status", "success"),): 1.0, (("status", "error"),): 1.0}
    assert s["task_duration_seconds_sum"] == {
        (("status", "success"),): 1.5,
        (("status", "error"),): 3.0,
    }
    assert s["active_tasks"] == {(): 0.0}  # open `with ledger.task(...)` blocks


def test_attribution_families_by_bot_and_tenant(ledger: Ledger) -> None:
    """agentledger_* families carry bot_id and tenant_id; sums per bot equal the records."""
    s = samples_of(_exposition(LedgerCollector(ledger)))
    by_bot: dict[str, float] = {}
    for labels, value in s["agentledger_cost_usd_total"].items():
        assert dict(labels).keys() == {"bot_id", "tenant_id"}
        by_bot[dict(labels)["bot_id"]] = by_bot.get(dict(labels)["bot_id"], 0.0) + value
    expected_a = sum((c[5] for c in LLM_CALLS if c[7] == "bot-a"), Decimal(0))
    assert by_bot["bot-a"] == float(expected_a)
    requests = s["agentledger_requests_total"]
    key = (("bot_id", "bot-a"), ("kind", "tool"), ("status", "error"), ("tenant_id", ""))
    assert requests[key] == 1
    assert sum(requests.values()) == len(LLM_CALLS) + len(TOOL_CALLS) + len(TASKS)
    tokens = s["agentledger_tokens_total"]
    assert tokens[(("bot_id", "bot-b"), ("tenant_id", "globex"), ("token_type", "input"))] == 10


def test_task_and_user_labels_are_off_by_default(ledger: Ledger) -> None:
    """Unbounded labels are opt-in; when off, llm_requests_total has no task_id label."""
    text = _exposition(LedgerCollector(ledger))
    assert "task_id" not in text
    assert "user_id" not in text
    s = samples_of(_exposition(LedgerCollector(ledger, labels=("bot_id", "user_id", "task_id"))))
    key = (("model", "gpt-4o"), ("status", "success"), ("task_id", "t1"))
    assert s["llm_requests_total"][key] == 2
    users = {dict(k)["user_id"] for k in s["agentledger_cost_usd_total"]}
    assert users == {"u1", "u2", "u3", ""}


def test_top_n_caps_labels_to_the_largest_plus_other(ledger: Ledger) -> None:
    """top_n keeps the N values with the most calls; the rest sum into "other"."""
    s = samples_of(_exposition(LedgerCollector(ledger, top_n={"model": 1})))
    assert s["llm_requests_total"] == {
        (("model", "gpt-4o"), ("status", "success")): 2.0,
        (("model", "gpt-4o"), ("status", "error")): 1.0,
        (("model", "other"), ("status", "success")): 2.0,
    }
    s = samples_of(_exposition(LedgerCollector(ledger, top_n=1)))
    assert {dict(k)["tool"] for k in s["tool_failures_total"]} == {"search", "other"}
    assert {dict(k)["bot_id"] for k in s["agentledger_cost_usd_total"]} == {"bot-a", "other", ""}
    assert sum(s["agentledger_cost_usd_total"].values()) == pytest.approx(
        float(sum((c[5] or 0 for c in LLM_CALLS), Decimal(0)))
    )


def test_top_n_is_sticky_so_counters_stay_monotonic() -> None:
    """A value that went to "other" never leaves it (no counter ever goes down)."""
    led = memory_ledger()
    collector = LedgerCollector(led, top_n={"model": 2})
    led.record_llm("m1", 1, 1, cost_usd=Decimal(1))
    samples_of(_exposition(collector))  # m1 admitted; room for one more
    led.record_llm("m2", 1, 1, cost_usd=Decimal(1))
    led.record_llm("m3", 1, 1, cost_usd=Decimal(1))
    first = samples_of(_exposition(collector))["llm_cost_usd_total"]
    assert first == {(("model", "m1"),): 1.0, (("model", "m2"),): 1.0, (("model", "other"),): 1.0}
    for _ in range(5):  # m3 now outnumbers everyone but stays in "other"
        led.record_llm("m3", 1, 1, cost_usd=Decimal(1))
    second = samples_of(_exposition(collector))["llm_cost_usd_total"]
    assert second == {(("model", "m1"),): 1.0, (("model", "m2"),): 1.0, (("model", "other"),): 6.0}
    led.close()


def test_namespace_prefixes_every_family(ledger: Ledger) -> None:
    """namespace="myapp" gives myapp_llm_requests_total and so on."""
    s = samples_of(_exposition(LedgerCollector(ledger, namespace="myapp")))
    assert all(name.startswith("myapp_") for name in s)
    assert "myapp_llm_cost_usd_total" in s
    assert "myapp_agentledger_cost_usd_total" in s


@pytest.mark.parametrize(
    "options",
    [
        {"labels": ("bot_id", "nope")},
        {"labels": ("bot_id", "bot_id")},
        {"top_n": 0},
        {"top_n": {"kind": 3}},
        {"top_n": True},
        {"namespace": "my-app"},
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any]) -> None:
    """Wrong labels, caps or namespaces raise ConfigError at construction."""
    with pytest.raises(ConfigError):
        LedgerCollector(memory_ledger(), **options)


def test_collector_reads_at_scrape_time_without_incrementing_per_event() -> None:
    """Two scrapes with no new events give identical figures; a new event shows up."""
    led = memory_ledger()
    collector = LedgerCollector(led)
    led.record_llm("gpt-4o", 10, 1, cost_usd=Decimal("0.5"))
    a = samples_of(_exposition(collector))
    assert a == samples_of(_exposition(collector))
    led.record_llm("gpt-4o", 10, 1, cost_usd=Decimal("0.25"))
    b = samples_of(_exposition(collector))
    assert b["llm_cost_usd_total"][(("model", "gpt-4o"),)] == 0.75
    led.close()


class _Broken:
    def aggregates_view(self, dimensions: Any) -> Any:
        raise RuntimeError("snapshot exploded")


def test_a_failing_snapshot_only_skips_this_collector(caplog: pytest.LogCaptureFixture) -> None:
    """The scrape still answers; other collectors are intact; the error is logged and counted."""
    registry = CollectorRegistry()
    other = Counter("unrelated_total", "Another library's counter.", registry=registry)
    other.inc(3)
    collector = LedgerCollector(_Broken())  # type: ignore[arg-type]
    registry.register(collector)
    with caplog.at_level(logging.ERROR, logger="agentledger.export.prometheus"):
        s = samples_of(generate_latest(registry).decode())
        s = samples_of(generate_latest(registry).decode())
    assert s["unrelated_total"] == {(): 3.0}
    assert "llm_requests_total" not in s
    assert s["agentledger_exporter_scrape_errors_total"] == {(): 2.0}
    assert "snapshot exploded" in caplog.text


def test_register_into_a_registry_and_the_default_one(ledger: Ledger) -> None:
    """register() returns the collector; registering does not read the ledger."""
    from prometheus_client import REGISTRY

    registry = CollectorRegistry(auto_describe=True)
    broken = register(_Broken(), registry)  # type: ignore[arg-type]
    assert broken.scrape_errors == 0  # describe() did not touch the snapshot
    collector = register(ledger)
    try:
        text = generate_latest(REGISTRY).decode()
        assert 'llm_requests_total{model="gpt-4o",status="error"} 1.0' in text
    finally:
        REGISTRY.unregister(collector)


def test_wsgi_app_serves_the_ledger(ledger: Ledger) -> None:
    """make_wsgi_app(ledger) answers with this ledger's figures only."""
    app = make_wsgi_app(ledger)
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    assert statuses == ["200 OK"]
    s = samples_of(body.decode())
    assert s["llm_requests_total"][(("model", "gpt-4o"), ("status", "error"))] == 1
    assert "python_gc_objects_collected_total" not in s


def test_asgi_app_serves_the_ledger(ledger: Ledger) -> None:
    """make_asgi_app(ledger) answers an ASGI HTTP request."""
    app = make_asgi_app(ledger)
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": "GET", "path": "/metrics", "query_string": b"",
             "headers": []}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    body = b"".join(m.get("body", b"") for m in sent[1:]).decode()
    assert samples_of(body)["llm_cost_usd_total"][(("model", "gpt-4o"),)] == float(_cost("gpt-4o"))


def test_serve_on_a_standalone_port(ledger: Ledger) -> None:
    """serve() listens on localhost; close() releases the port; a busy port raises OSError."""
    with serve(ledger, 0) as server:
        assert server.addr == "127.0.0.1"
        s = samples_of(scrape(server.url))
        assert s["llm_requests_total"][(("model", "gpt-4o"), ("status", "success"))] == 2
        with pytest.raises(OSError, match="in use"):
            serve(ledger, server.port)
    port = server.port
    with socket.create_server(("127.0.0.1", port)):  # released
        pass


# --- the store ---------------------------------------------------------------------------------


def _comparable(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    s = samples_of(text)
    s.pop("agentledger_exporter_scrape_errors_total")
    return s


@pytest.mark.parametrize(
    ("labels", "sources"),
    [
        (("bot_id", "tenant_id"), ["what", "attribution"]),  # the default: rollups only
        (("bot_id", "tenant_id", "task_id", "user_id"), [None, None]),  # events table
    ],
)
def test_store_collector_matches_the_live_figures(
    db_url: str, labels: tuple[str, ...], sources: list[str | None]
) -> None:
    """On SQLite and PostgreSQL the store gives exactly the live aggregates' families."""
    led = Ledger(db_url, handle_signals=False, strict=True)
    _record(led)
    assert led.flush()
    live = _comparable(_exposition(LedgerCollector(led, labels=labels)))
    del live["active_tasks"]  # process state (open tasks), not history: live-only
    store = StoreCollector(db_url, labels=labels)
    try:
        assert store.sources == sources
        assert _comparable(_exposition(store)) == live
    finally:
        store.close()
        led.close()


def test_store_collector_sums_processes_and_survives_restarts(sqlite_url: str) -> None:
    """Two writers, one exporter: exact totals; a restarted exporter reads the same; counters
    only grow as the store does."""
    a = Ledger(sqlite_url, handle_signals=False)
    b = Ledger(sqlite_url, handle_signals=False)
    a.record_llm("gpt-4o", 100, 10, cost_usd=Decimal("0.1"), bot_id="a")
    b.record_llm("gpt-4o", 200, 20, cost_usd=Decimal("0.2"), bot_id="b")
    assert a.close()
    assert b.close()
    first = StoreCollector(sqlite_url)
    s1 = samples_of(_exposition(first))
    assert s1["llm_cost_usd_total"] == {(("model", "gpt-4o"),): float(Decimal("0.3"))}
    assert s1["llm_tokens_total"][(("model", "gpt-4o"), ("token_type", "input"))] == 300
    first.close()
    c = Ledger(sqlite_url, handle_signals=False)
    c.record_llm("gpt-4o", 1, 1, cost_usd=Decimal("0.05"), status="error")
    assert c.close()
    restarted = StoreCollector(sqlite_url)
    s2 = samples_of(_exposition(restarted))
    restarted.close()
    assert s2["llm_cost_usd_total"] == {(("model", "gpt-4o"),): float(Decimal("0.35"))}
    for name, series in s1.items():
        for labels, value in series.items():
            assert s2[name].get(labels, 0.0) >= value, (name, labels)


def test_store_collector_logs_and_skips_when_the_database_fails(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A database error during a scrape is logged and counted, not raised."""
    collector = StoreCollector(sqlite_url)
    collector.store.engine.dispose()
    assert collector.sources == ["what", "attribution"]  # scrapes read the daily rollups
    with collector.store.engine.connect() as conn:
        conn.exec_driver_sql("DROP TABLE rollup_what")
        conn.commit()
    with caplog.at_level(logging.ERROR, logger="agentledger.export.prometheus"):
        s = samples_of(_exposition(collector))
    collector.close()
    assert s == {"agentledger_exporter_scrape_errors_total": {(): 1.0}}
    assert "could not read figures" in caplog.text


# --- the CLI -----------------------------------------------------------------------------------


def _exporter(*args: str) -> subprocess.Popen[str]:
    code = "import sys; from agentledger.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, "exporter", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def test_cli_exporter_serves_the_store_until_ctrl_c(sqlite_url: str) -> None:
    """`agentledger exporter` serves the store's figures and exits 0 on Ctrl-C."""
    led = Ledger(sqlite_url, handle_signals=False)
    led.record_llm("gpt-4o", 7, 3, cost_usd=Decimal("0.07"), bot_id="x")
    assert led.close()
    proc = _exporter("--db", sqlite_url, "--port", "0")
    try:
        line = read_line(proc)
        url = line.split(" on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        s = samples_of(scrape(url))
        assert s["llm_cost_usd_total"] == {(("model", "gpt-4o"),): 0.07}
        assert (
            s["agentledger_requests_total"][
                (("bot_id", "x"), ("kind", "llm"), ("status", "success"), ("tenant_id", ""))
            ]
            == 1
        )
    finally:
        code, out, err = _stop(proc)
    assert code == 0, err
    assert "exporter stopped" in out
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--db", "mysql://x"], "unsupported database", id="unsupported-url"),
        pytest.param(["--db", "not a url"], "not a database URL", id="bad-url"),
        pytest.param(["--db", "sqlite:////nonexistent/x.db"], "no database at", id="missing"),
        pytest.param(["--labels", "bot_id,nope"], "labels must be", id="bad-label"),
    ],
)
def test_cli_exporter_bad_input_is_one_line(
    args: list[str], message: str, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad URLs and options: exit code 2 and one line on stderr."""
    from agentledger.cli import main

    if "--db" not in args:
        Ledger(sqlite_url, handle_signals=False).close()
        args = ["--db", sqlite_url, *args]
    assert main(["exporter", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_cli_exporter_busy_port_is_one_line(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port already in use: exit code 2 and one line naming it."""
    from agentledger.cli import main

    Ledger(sqlite_url, handle_signals=False).close()
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["exporter", "--db", sqlite_url, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert len(err.strip().splitlines()) == 1


def test_free_port_helper() -> None:
    """The helper gives a port nobody listens on."""
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_parser_roundtrip() -> None:
    """The exposition parses with prometheus_client's own parser."""
    text = _exposition(LedgerCollector(memory_ledger()))
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"llm_requests", "llm_latency_seconds", "agentledger_cost_usd"} <= names


# --- a real Prometheus server ------------------------------------------------------------------

_PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["{app}"]
  - job_name: store
    static_configs:
      - targets: ["{store}"]
"""


def _prometheus_binary() -> str:
    import os
    import shutil

    binary = shutil.which("prometheus")
    if binary is None:
        reason = "the prometheus binary is not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Prometheus integration test: {reason}")
        pytest.skip(reason)
    return binary


def _promql(base: str, query: str) -> list[dict[str, Any]]:
    import json
    from urllib.parse import urlencode

    body = json.loads(scrape(f"{base}/api/v1/query?{urlencode({'query': query})}"))
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _poll(check: Any, what: str, deadline_s: float = 90.0) -> Any:
    """Call ``check()`` until it returns something truthy; fail after ``deadline_s``."""
    import time

    deadline = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:  # the server is still starting
            last = exc
        else:
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last answer: {last!r}")


def _check_deploy_queries(base: str) -> None:
    """Every query of deploy/grafana-dashboard.json runs and returns data."""
    import json
    from pathlib import Path

    dashboard = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"
    panels = json.loads(dashboard.read_text())["panels"]
    exprs = [t["expr"] for panel in panels for t in panel["targets"]]
    assert "sum(llm_cost_usd_total)" in exprs
    for expr in exprs:
        assert _promql(base, expr), expr


def test_real_prometheus_scrapes_both_endpoints_and_answers_seed_001_queries(
    sqlite_url: str, tmp_path: Any
) -> None:
    """A real Prometheus scrapes the in-app endpoint and the standalone store exporter;
    seed 001's PromQL gives the recorded cost, request rates and a p95 in the right bucket."""
    binary = _prometheus_binary()
    app_ledger = memory_ledger()
    writer = Ledger(sqlite_url, handle_signals=False, durability="sync")
    costs: list[Decimal] = []

    def call(led: Ledger, cost: str, ms: float) -> None:
        led.record_llm("gpt-4o", 100, 10, cost_usd=Decimal(cost), duration_ms=ms, bot_id="b")
        costs.append(Decimal(cost))

    call(app_ledger, "0.0125", 200.0)
    app_ledger.record_tool("search", duration_ms=20.0)
    app_ledger.record_tool("task", kind="custom", duration_ms=900.0)
    call(writer, "0.0031", 250.0)
    app_server = serve(app_ledger, 0)
    exporter = _exporter("--db", sqlite_url, "--port", "0")
    prometheus: subprocess.Popen[str] | None = None
    try:
        store_url = read_line(exporter).split(" on ", 1)[1].split()[0]
        store_target = store_url.removeprefix("http://").removesuffix("/metrics")
        config = tmp_path / "prometheus.yml"
        config.write_text(
            _PROMETHEUS_CONFIG.format(app=f"127.0.0.1:{app_server.port}", store=store_target)
        )
        port = free_port()
        prometheus = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"

        def targets_up() -> bool:
            import json

            if prometheus is not None and prometheus.poll() is not None:
                raise AssertionError(f"prometheus exited: {prometheus.stderr.read()}")  # type: ignore[union-attr]
            targets = json.loads(scrape(f"{base}/api/v1/targets"))["data"]["activeTargets"]
            return len(targets) == 2 and all(t["health"] == "up" for t in targets)

        _poll(targets_up, "both targets up")

        # sum(llm_cost_usd_total): the recorded cost, as a float (both jobs together).
        def total_cost() -> float | None:
            result = _promql(base, "sum(llm_cost_usd_total)")
            value = float(result[0]["value"][1]) if result else None
            return value if value == pytest.approx(float(sum(costs)), rel=1e-12) else None

        _poll(total_cost, "sum(llm_cost_usd_total) to equal the recorded cost")
        by_job = {
            r["metric"]["job"]: float(r["value"][1])
            for r in _promql(base, "sum by (job) (llm_cost_usd_total)")
        }
        assert by_job == {"app": 0.0125, "store": 0.0031}

        # More calls while Prometheus scrapes, all in the (0.16 s, 0.32 s] bucket, so that
        # rates are non-zero and the p95 is interpolated within that bucket.
        def quantiles() -> list[float]:
            call(app_ledger, "0.001", 300.0)
            call(writer, "0.001", 180.0)
            result = _promql(base, "histogram_quantile(0.95, rate(llm_latency_seconds_bucket[5m]))")
            values = [float(r["value"][1]) for r in result]
            finite = [v for v in values if math.isfinite(v)]
            return finite if len(finite) == 2 else []

        for p95 in _poll(quantiles, "a finite p95 for both jobs"):
            assert 0.16 < p95 <= 0.32

        rates = _poll(lambda: _promql(base, "rate(llm_requests_total[1m])"), "request rates")
        assert {r["metric"]["job"] for r in rates} == {"app", "store"}
        assert all(r["metric"]["status"] == "success" for r in rates)
        assert any(float(r["value"][1]) > 0 for r in rates)
        ratio = _promql(
            base,
            'rate(llm_requests_total{status="success"}[5m]) / rate(llm_requests_total[5m])',
        )
        assert ratio
        assert all(float(r["value"][1]) == 1.0 for r in ratio)
        _check_deploy_queries(base)
    finally:
        if prometheus is not None:
            prometheus.terminate()
            try:
                prometheus.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.communicate()
        _stop(exporter)
        app_server.close()
        app_ledger.close()
        writer.close()


def test_missing_prometheus_client_gives_a_one_line_hint() -> None:
    """Without the extra, importing the exporter says how to install it."""
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "try:\n    import agentledger.export.prometheus\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == (
        "agentledger.export.prometheus needs prometheus-client: "
        "pip install 'agentledger[prometheus]'"
    )


def test_ledger_prometheus_collector_registers_in_an_app_registry() -> None:
    """Ledger.prometheus_collector() is the collector, ready for the app's own registry."""
    from prometheus_client import CollectorRegistry, generate_latest

    from agentledger import Ledger

    ledger = Ledger(handle_signals=False)
    ledger.record_llm("gpt-4o", 1000, 500, bot_id="b")
    registry = CollectorRegistry()
    registry.register(ledger.prometheus_collector())
    text = generate_latest(registry).decode()
    assert 'llm_requests_total{model="gpt-4o",status="success"} 1.0' in text
    ledger.close()


def test_active_tasks_gauge_counts_open_tasks() -> None:
    """active_tasks is the number of `with ledger.task(...)` blocks open at scrape time."""
    from prometheus_client import CollectorRegistry, generate_latest

    from agentledger import Ledger

    ledger = Ledger(handle_signals=False)
    registry = CollectorRegistry()
    registry.register(ledger.prometheus_collector())
    with ledger.task("t-1"), ledger.task("t-2"):
        assert "\nactive_tasks 2.0\n" in generate_latest(registry).decode()
    assert "\nactive_tasks 0.0\n" in generate_latest(registry).decode()
    ledger.close()
