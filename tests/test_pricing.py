"""PriceBook: compiled plans equal genai_prices.calc_price exactly; tiers, prefixes, overrides."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price, data_snapshot
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from agentledger import ConfigError, ModelPrice, PriceBook, PriceInfo, UnknownModel
from agentledger.testing import memory_ledger

_SNAPSHOT = data_snapshot.get_snapshot()
_PROVIDERS = list(_SNAPSHOT.providers)
_BOOK = PriceBook()  # shared: plans are cached per model, as in real use


def _clause_strings(clause: object) -> list[str]:
    out: list[str] = []
    for value in vars(clause).values():
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            for item in value:
                out += _clause_strings(item)
        elif hasattr(value, "__dict__"):
            out += _clause_strings(value)
    return out


def _model_ref(provider: object, model: object) -> str | None:
    """model.id if it resolves to this model, else the first match string that does.

    Some ids do not match their own model's match rule (aws "regional.*", fireworks ids
    whose match is "accounts/fireworks/models/<id>"); their match strings do.
    """
    for ref in [model.id, *_clause_strings(model.match)]:  # type: ignore[attr-defined]
        try:
            _, found = _SNAPSHOT.find_provider_model(ref, None, provider.id, None)  # type: ignore[attr-defined]
        except LookupError:
            continue
        if found is model:
            return ref
    return None


_REFS = {(p.id, m.id): _model_ref(p, m) for p in _PROVIDERS for m in p.models}


def _expected(provider_id: str, model_id: str, usage: tuple[int, ...]) -> Decimal | None:
    """genai-prices' own answer, or None when it cannot price this (model, usage)."""
    i, o, cr, cw, cw1h, rs = usage
    try:
        return calc_price(
            Usage(
                input_tokens=i,
                output_tokens=o,
                cache_read_tokens=cr,
                cache_write_tokens=cw,
                cache_write_1h_tokens=cw1h,
                output_reasoning_tokens=rs,
            ),
            model_ref=model_id,
            provider_id=provider_id,
        ).total_price
    except ValueError:  # genai-prices refuses some usages for some models: skipped
        return None


@st.composite
def usages(draw: st.DrawFn) -> tuple[int, int, int, int, int, int]:
    """(input, output, cache_read, cache_write, cache_write_1h, reasoning), subsets consistent."""
    i = draw(st.integers(0, 2_000_000))
    cr = draw(st.integers(0, i))
    cw = draw(st.integers(0, i - cr))
    cw1h = draw(st.integers(0, cw))
    o = draw(st.integers(0, 2_000_000))
    rs = draw(st.integers(0, o))
    return i, o, cr, cw, cw1h, rs


def _mismatches(provider: object, usage: tuple[int, ...]) -> tuple[int, list[str]]:
    i, o, cr, cw, cw1h, rs = usage
    checked = 0
    bad: list[str] = []
    for model in provider.models:  # type: ignore[attr-defined]
        ref = _REFS[(provider.id, model.id)]  # type: ignore[attr-defined]
        assert ref is not None, f"{provider.id}/{model.id} cannot be resolved"  # type: ignore[attr-defined]
        expected = _expected(provider.id, ref, usage)  # type: ignore[attr-defined]
        if expected is None:
            continue
        got, source, _ = _BOOK.quote(provider.id, ref, i, o, cr, cw, rs, cw1h)  # type: ignore[attr-defined]
        checked += 1
        if source != "priced" or got != expected:
            bad.append(f"{provider.id}/{ref} usage={usage}: {got!r} != {expected!r}")  # type: ignore[attr-defined]
    return checked, bad


@pytest.mark.parametrize("provider", [pytest.param(p, id=p.id) for p in _PROVIDERS])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(usage=usages())
@example(usage=(0, 0, 0, 0, 0, 0))
@example(usage=(200_000, 10, 0, 0, 0, 0))
@example(usage=(200_001, 10, 0, 0, 0, 0))
@example(usage=(272_001, 10, 0, 0, 0, 0))
@example(usage=(128_001, 10, 0, 0, 0, 0))
@example(usage=(2_000_000, 2_000_000, 1_000_000, 1_000_000, 1_000_000, 2_000_000))
@example(usage=(1000, 500, 1000, 0, 0, 500))
@example(usage=(1000, 500, 0, 1000, 1000, 0))
def test_quote_equals_calc_price_for_every_bundled_model(provider, usage):
    """For every model of every provider, quote() == calc_price().total_price exactly."""
    checked, bad = _mismatches(provider, usage)
    assume(checked > 0)
    assert bad == []


def test_every_bundled_model_is_checked():
    """Coverage: almost every bundled model is priceable by its id and matches calc_price."""
    usage = (250_000, 3_000, 20_000, 10_000, 4_000, 1_000)
    total = checked = 0
    bad: list[str] = []
    for provider in _PROVIDERS:
        total += len(provider.models)
        n, b = _mismatches(provider, usage)
        checked += n
        bad += b
    assert bad == []
    assert total > 1000
    assert checked == total  # every bundled model priced, none skipped for this usage


@pytest.mark.parametrize(
    ("input_tokens", "input_mtok"),
    [
        pytest.param(200_000, Decimal(3), id="at-threshold-base-price"),
        pytest.param(200_001, Decimal(6), id="above-threshold-tier-price"),
    ],
)
def test_claude_sonnet_4_5_tiered_input_price(input_tokens, input_mtok):
    """claude-sonnet-4-5 switches to the long-context tier above 200k input tokens."""
    got = PriceBook().cost("anthropic", "claude-sonnet-4-5", input_tokens, 0)
    assert got.usd == input_mtok * input_tokens / 1_000_000
    assert got.source == "priced"
    assert got.usd == _expected("anthropic", "claude-sonnet-4-5", (input_tokens, 0, 0, 0, 0, 0))


def test_tiered_call_above_200k_matches_calc_price():
    """A 300k-input claude-sonnet-4-5 call costs what genai-prices says (tier applied)."""
    usage = Usage(input_tokens=300_000, output_tokens=1_000)
    expected = calc_price(usage, model_ref="claude-sonnet-4-5", provider_id="anthropic")
    got = PriceBook().quote("anthropic", "claude-sonnet-4-5", 300_000, 1_000)
    assert got[0] == expected.total_price == Decimal("1.8225")


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        pytest.param(None, "openai/gpt-4o", id="prefix-no-provider"),
        pytest.param("openai", "openai/gpt-4o", id="prefix-and-provider"),
        pytest.param("openai", "gpt-4o", id="plain-with-provider"),
    ],
)
def test_provider_prefixed_names_resolve_like_plain(provider, model):
    """'openai/gpt-4o' is priced exactly like gpt-4o at openai."""
    book = PriceBook()
    assert book.quote(provider, model, 1234, 567, 200) == book.quote(
        "openai", "gpt-4o", 1234, 567, 200
    )
    assert book.quote(provider, model, 1234, 567)[1] == "priced"


def test_unknown_model_is_unpriced_and_counted():
    """An unknown model quotes (None, 'unpriced', version) and is counted per call."""
    book = PriceBook()
    for _ in range(3):
        usd, source, _version = book.quote(None, "no-such-model-xyz", 10, 10)
        assert usd is None
        assert source == "unpriced"
    assert book.unpriced_calls == {"no-such-model-xyz": 3}


def test_cost_returns_cost_dataclass():
    """PriceBook.cost() wraps quote() in a Cost."""
    book = PriceBook()
    c = book.cost("openai", "gpt-4o", 1000, 1000)
    assert c.usd == Decimal("0.0125")
    assert c.source == "priced"
    assert c.price_version == book.version


OVERRIDE = {"input_mtok": "1", "output_mtok": "2", "cache_read_mtok": "0.5"}
# 1000 input (200 cached) and 100 output: 800*1e-6 + 200*0.5e-6 + 100*2e-6
OVERRIDE_COST = Decimal("0.0011")


def _check_override(book: PriceBook, model: str = "gpt-4o", provider: str | None = None) -> None:
    usd, source, version = book.quote(provider, model, 1000, 100, 200)
    assert usd == OVERRIDE_COST
    assert source == "priced"
    assert version == "override"


def test_override_dict_wins_over_bundled_price():
    """A dict override replaces gpt-4o's bundled price, version 'override'."""
    _check_override(PriceBook(overrides={"gpt-4o": OVERRIDE}))


def test_override_modelprice_object():
    """A ModelPrice override works like a dict."""
    price = ModelPrice(Decimal(1), Decimal(2), cache_read_mtok=Decimal("0.5"))
    _check_override(PriceBook(overrides={"gpt-4o": price}))


def test_override_names_are_case_insensitive_and_provider_scoped():
    """'openai/GPT-4o' override applies to provider openai, model gpt-4o."""
    book = PriceBook(overrides={"openai/GPT-4o": OVERRIDE})
    _check_override(book, "gpt-4o", "openai")


def test_override_prices_an_unknown_model():
    """An override makes an otherwise unknown model priced."""
    _check_override(PriceBook(overrides={"my-local-llm": OVERRIDE}), "my-local-llm")


def test_override_toml_file(tmp_path):
    """Overrides load from a TOML file."""
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models."gpt-4o"]\ninput_mtok = "1"\noutput_mtok = "2"\ncache_read_mtok = "0.5"\n'
    )
    _check_override(PriceBook(overrides_file=path))


def test_override_json_file(tmp_path):
    """Overrides load from a JSON file."""
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"gpt-4o": OVERRIDE}}))
    _check_override(PriceBook(overrides_file=str(path)))


def test_override_recorded_on_event_with_version_override():
    """A ledger with an override book records price_version 'override'."""
    ledger = memory_ledger(prices=PriceBook(overrides={"gpt-4o": OVERRIDE}))
    ledger.record_llm("gpt-4o", 1000, 100, cache_read_tokens=200)
    assert ledger.flush()
    (event,) = ledger.store.events()
    assert event.cost_usd == OVERRIDE_COST
    assert event.price_version == "override"
    assert event.cost_source == "priced"
    ledger.close()


@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param("bad.toml", "[models\nx=", id="toml-syntax"),
        pytest.param("bad.json", "{not json", id="json-syntax"),
        pytest.param("nomodels.toml", 'x = "1"\n', id="no-models-table"),
        pytest.param("list.json", "[1, 2]", id="json-not-object"),
        pytest.param("scalar.toml", 'models = { "gpt-4o" = "1" }\n', id="price-not-table"),
        pytest.param("missing.toml", '[models."m"]\noutput_mtok = "1"\n', id="missing-input_mtok"),
        pytest.param(
            "unknown.toml",
            '[models."m"]\ninput_mtok = "1"\noutput_mtok = "1"\nfoo = "1"\n',
            id="unknown-key",
        ),
        pytest.param(
            "nan.toml", '[models."m"]\ninput_mtok = "abc"\noutput_mtok = "1"\n', id="not-number"
        ),
        pytest.param(
            "neg.toml", '[models."m"]\ninput_mtok = "-1"\noutput_mtok = "1"\n', id="negative"
        ),
        pytest.param(
            "inf.json",
            '{"models": {"m": {"input_mtok": "Infinity", "output_mtok": "1"}}}',
            id="infinite",
        ),
    ],
)
def test_bad_override_file_raises_config_error(tmp_path, name, text):
    """A malformed overrides file raises ConfigError (a ValueError)."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError):
        PriceBook(overrides_file=path)


def test_missing_override_file_raises_config_error(tmp_path):
    """A missing overrides file raises ConfigError."""
    with pytest.raises(ConfigError):
        PriceBook(overrides_file=tmp_path / "nope.toml")


def test_price_info_known_model():
    """price_info describes the bundled price of a known model."""
    info = PriceBook().price_info("gpt-4o", "openai")
    assert isinstance(info, PriceInfo)
    assert info.source == "genai-prices"
    assert info.provider == "openai"
    assert info.resolved_model == "gpt-4o"
    assert info.prices_mtok["input_mtok"] == "2.5"
    assert info.prices_mtok["output_mtok"] == "10"


def test_price_info_override():
    """price_info reports an override as such."""
    info = PriceBook(overrides={"gpt-4o": OVERRIDE}).price_info("gpt-4o")
    assert info.source == "override"
    assert info.price_version == "override"
    assert info.prices_mtok == {"input_mtok": "1", "output_mtok": "2", "cache_read_mtok": "0.5"}


def test_price_info_unknown_model_raises_unknown_model():
    """price_info on an unknown model raises UnknownModel, which is a KeyError."""
    with pytest.raises(UnknownModel) as info:
        PriceBook().price_info("no-such-model-xyz", "openai")
    assert isinstance(info.value, KeyError)
    assert info.value.model == "no-such-model-xyz"
    assert info.value.provider == "openai"
    assert "no-such-model-xyz" in str(info.value)
