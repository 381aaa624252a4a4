"""The usage mapping itself: every provider usage maps to a valid, correctly priced record."""

from __future__ import annotations

from decimal import Decimal

import genai_prices
from hypothesis import given, settings
from hypothesis import strategies as st

from agentledger.integrations import anthropic as al_anthropic
from agentledger.integrations import openai as al_openai
from agentledger.integrations.openai import _ChatAdapter
from agentledger.testing import memory_ledger

tokens = st.integers(min_value=0, max_value=2_000_000)


@settings(max_examples=60, deadline=None)
@given(fresh=tokens, read=tokens, write_5m=tokens, write_1h=tokens, out=tokens)
def test_anthropic_usage_is_valid_and_priced_like_genai_prices(
    fresh: int, read: int, write_5m: int, write_1h: int, out: int
) -> None:
    usage = al_anthropic.message_usage({
        "input_tokens": fresh,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m,
                           "ephemeral_1h_input_tokens": write_1h},
        "output_tokens": out,
    })  # fmt: skip
    assert usage is not None
    assert usage.input_tokens == fresh + read + write_5m + write_1h
    with memory_ledger() as ledger:
        event_id = ledger.record_llm(
            "claude-sonnet-4-6",
            usage.input_tokens,
            usage.output_tokens,
            provider="anthropic",
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
        )
        assert event_id is not None
        assert ledger.flush()
        assert ledger.store is not None
        (event,) = ledger.store.events()
    expected = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=read,
            cache_write_tokens=write_5m + write_1h,
            cache_write_1h_tokens=write_1h,
            output_tokens=out,
        ),
        model_ref="claude-sonnet-4-6",
        provider_id="anthropic",
    ).total_price
    assert event.cost_usd == Decimal(expected)


@settings(max_examples=60, deadline=None)
@given(prompt=tokens, cached=tokens, completion=tokens, reasoning=tokens)
def test_openai_usage_keeps_cached_and_reasoning_inside(
    prompt: int, cached: int, completion: int, reasoning: int
) -> None:
    usage = al_openai.chat_usage({
        "prompt_tokens": prompt + cached,
        "completion_tokens": completion + reasoning,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    })  # fmt: skip
    assert usage is not None
    assert (usage.input_tokens, usage.cache_read_tokens) == (prompt + cached, cached)
    assert (usage.output_tokens, usage.reasoning_tokens) == (completion + reasoning, reasoning)
    responses = al_openai.responses_usage({
        "input_tokens": prompt + cached,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion + reasoning,
        "output_tokens_details": {"reasoning_tokens": reasoning},
    })  # fmt: skip
    assert responses == usage


def test_missing_or_odd_usage_fields_count_as_zero() -> None:
    assert al_openai.chat_usage(None) is None
    usage = al_openai.chat_usage({"prompt_tokens": 5, "completion_tokens": None})
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (5, 0, 0)
    odd = al_anthropic.message_usage({"input_tokens": 3, "cache_creation": None})
    assert odd is not None
    assert (odd.input_tokens, odd.cache_write_1h_tokens) == (3, 0)


def test_stream_options_are_merged_not_replaced() -> None:
    kwargs, watcher = _ChatAdapter().prepare(
        {"model": "gpt-4o", "stream": True, "stream_options": {"include_obfuscation": False}}
    )
    assert kwargs["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert watcher is not None
    kwargs, watcher = _ChatAdapter().prepare({"model": "gpt-4o", "stream": False})
    assert "stream_options" not in kwargs
    assert watcher is None
