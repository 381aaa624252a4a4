"""JSON log lines: shape, event types, levels, redaction, failing handlers."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from agentledger import Ledger
from agentledger.export.logs import JsonLogSink

from ._util import drain

LOGGER = "agentledger.events"


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[logging.LogRecord, dict[str, Any]]]:
    return [(r, json.loads(r.getMessage())) for r in caplog.records if r.name == LOGGER]


def test_one_json_line_per_event_with_seed_event_types(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    ledger = Ledger(handle_signals=False)
    ledger.add_sink(JsonLogSink())
    with ledger.scope(bot_id="b1", user_id="u1", task_id="t1", tenant_id="acme", session_id="s1"):
        ledger.record_llm(
            "gpt-4o", 1000, 500, provider="openai", cache_read_tokens=200, duration_ms=1200.0
        )
        ledger.record_tool("web_search", duration_ms=40.0)
        ledger.record_tool("kb", kind="retrieval")
        ledger.record_tool("to_human", kind="handoff")
        ledger.record_tool("/start", kind="command")
        ledger.record_tool("guardrail_check", kind="custom")
        ledger.record_error("TimeoutError", "upstream timed out")
    drain(ledger)
    lines = _lines(caplog)
    assert [line["event_type"] for _, line in lines] == [
        "llm_call", "tool_call", "knowledge_search", "handoff", "request", "guardrail_check",
        "error",
    ]  # fmt: skip
    record, llm = lines[0]
    assert record.levelno == logging.INFO
    assert llm["level"] == "INFO"
    assert llm["timestamp"].endswith("Z")
    datetime.fromisoformat(llm["timestamp"])  # ISO 8601
    assert (llm["bot_id"], llm["user_id"], llm["task_id"], llm["tenant_id"], llm["session_id"]) == (
        "b1", "u1", "t1", "acme", "s1",
    )  # fmt: skip
    assert (llm["input_tokens"], llm["output_tokens"], llm["cache_read_tokens"]) == (1000, 500, 200)
    assert llm["token_usage"] == {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "total_tokens": 1500,
    }
    assert Decimal(llm["cost_usd"]) == Decimal("0.00725")
    assert llm["cost_usd_float"] == pytest.approx(0.00725)
    assert llm["duration_ms"] == 1200.0
    assert llm["model"] == "gpt-4o"
    assert record.agentledger == llm  # type: ignore[attr-defined]  # for structured formatters
    error_record, error = lines[-1]
    assert error_record.levelno == logging.ERROR
    assert error["level"] == "ERROR"
    assert error["error_type"] == "TimeoutError"
    assert error["error_message"] == "upstream timed out"
    ledger.close()


def test_message_bodies_and_secrets_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    metadata = {
        "messages": [{"role": "user", "content": "my card is 4111"}],
        "prompt": "secret plan",
        "api_key": "sk-live-123",
        "headers": {"Authorization": "Bearer abc", "X-Request-Id": "r1"},
        "attempt": 2,
    }
    for include in (False, True):
        caplog.clear()
        ledger = Ledger(handle_signals=False)
        ledger.add_sink(JsonLogSink(include_messages=include))
        ledger.record_llm("gpt-4o", 10, 5, metadata=metadata)
        drain(ledger)
        ((_, line),) = _lines(caplog)
        text = caplog.records[0].getMessage()
        meta = line["metadata"]
        assert "sk-live-123" not in text
        assert "Bearer abc" not in text
        assert meta["api_key"] == "[redacted]"
        assert meta["headers"] == {"Authorization": "[redacted]", "X-Request-Id": "r1"}
        assert meta["attempt"] == 2
        if include:
            assert meta["prompt"] == "secret plan"
            assert meta["messages"][0]["content"] == "my card is 4111"
        else:
            assert "4111" not in text
            assert "secret plan" not in text
            assert "messages" not in meta
            assert "prompt" not in meta
        ledger.close()


def test_level_and_logger_are_configurable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="my.app")
    ledger = Ledger(handle_signals=False)
    ledger.add_sink(JsonLogSink(logger=logging.getLogger("my.app"), level=logging.DEBUG))
    ledger.record_tool("search")
    drain(ledger)
    (record,) = [r for r in caplog.records if r.name == "my.app"]
    assert record.levelno == logging.DEBUG
    assert json.loads(record.getMessage())["logger"] == "my.app"
    ledger.close()


def test_a_failing_handler_is_counted_never_raised() -> None:
    class Exploding(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise OSError("disk full")

        def handle(self, record: logging.LogRecord) -> bool:  # bypass handleError
            self.emit(record)
            return True

    logger = logging.getLogger("agentledger.test.exploding")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = Exploding()
    logger.addHandler(handler)
    try:
        ledger = Ledger(handle_signals=False)
        sink = JsonLogSink(logger=logger)
        ledger.add_sink(sink)
        assert ledger.record_llm("gpt-4o", 10, 5) is not None
        assert ledger.record_tool("search") is not None
        drain(ledger)
        assert sink.failed == 2
        assert ledger.stats().sink_errors == 1
        assert "disk full" in (ledger.stats().last_error or "")
        assert ledger.totals().calls == 2
        ledger.close()
    finally:
        logger.removeHandler(handler)
