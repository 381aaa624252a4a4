"""Seed 001's LLMClient: recorded calls, usage read from the store, limits, task lifecycle."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import openai
import pytest

from agentledger import Ledger
from agentledger.client import LLMClient
from agentledger.errors import ConfigError

USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
HEADERS = {"x-fake-usage": json.dumps(USAGE)}
COST = Decimal("0.0075")  # gpt-4o: 1000 x $2.50/M + 500 x $10/M


@pytest.fixture
def db_ledger(sqlite_url: str) -> Ledger:
    return Ledger(sqlite_url, handle_signals=False)


def _client(fake: Any, ledger: Ledger, **ids: str) -> LLMClient:
    sdk = openai.OpenAI(base_url=fake.openai_url, api_key="test", max_retries=0)
    return LLMClient(client=sdk, ledger=ledger, **ids)


def test_calls_are_recorded_against_task_and_user(fake: Any, db_ledger: Ledger) -> None:
    """chat_completion returns the SDK's response and records tokens, cost, task, user."""
    client = _client(fake, db_ledger, task_id="task-123", user_id="user-456")
    response = client.chat_completion(
        messages=[{"role": "user", "content": "hi"}], model="gpt-4o", temperature=0.7,
        extra_headers=HEADERS,
    )  # fmt: skip
    assert response.usage.prompt_tokens == 1000
    usage = client.get_task_usage()
    assert usage["task_id"] == "task-123"
    assert usage["total_calls"] == 1
    assert usage["prompt_tokens"] == 1000
    assert usage["completion_tokens"] == 500
    assert usage["total_cost_usd"] == COST
    assert client.get_user_usage(days=7)["total_cost_usd"] == COST
    db_ledger.close()


def test_usage_spans_clients_and_limits_decide_from_the_store(fake: Any, db_ledger: Ledger) -> None:
    """Two clients on one task add up; limits compare the stored totals with the caps."""
    for _ in range(2):
        _client(fake, db_ledger, task_id="t", user_id="u").chat_completion(
            messages=[{"role": "user", "content": "x"}], model="gpt-4o", extra_headers=HEADERS
        )
    client = _client(fake, db_ledger, task_id="t", user_id="u")
    within = client.check_usage_limits(max_cost_per_task=0.02, max_cost_per_user=1)
    assert within["within_limits"] is True
    assert within["task_cost_usd"] == 2 * COST
    over = client.check_usage_limits(max_cost_per_task=0.01)
    assert over["within_limits"] is False
    assert over["violations"] == ["task t spent $0.015 of a $0.01 limit"]
    db_ledger.close()


def test_limits_need_the_matching_id(fake: Any, db_ledger: Ledger) -> None:
    """Asking for a user limit without a user is a configuration error, not a silent pass."""
    client = _client(fake, db_ledger, task_id="t")
    with pytest.raises(ConfigError):
        client.check_usage_limits(max_cost_per_user=1.0)
    db_ledger.close()


def test_task_lifecycle_records_duration_and_status(db_ledger: Ledger) -> None:
    """ledger.task() records a 'task' event with the task id, and failures as errors."""
    with db_ledger.task("t-ok"):
        db_ledger.record_llm("gpt-4o", 10, 5)
    with pytest.raises(RuntimeError), db_ledger.task("t-bad"):
        raise RuntimeError("boom")
    assert db_ledger.flush()
    assert db_ledger.store is not None
    events = db_ledger.store.events()
    tasks = {e.task_id: e for e in events if e.name == "task"}
    assert tasks["t-ok"].status == "ok"
    assert tasks["t-bad"].status == "error"
    assert tasks["t-bad"].error_type == "RuntimeError"
    llm = next(e for e in events if e.kind == "llm")
    assert llm.task_id == "t-ok"
    assert llm.parent_id == tasks["t-ok"].span_id
    db_ledger.close()
