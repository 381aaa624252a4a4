"""Exact Decimal cost from the bundled ``genai-prices`` data, with user overrides.

``genai_prices.calc_price`` takes ~100 µs per call (it re-resolves units and validates on
every call), too slow for the recording hot path. The :class:`PriceBook` resolves a model
once, compiles its prices into a small plan that applies the same rules as genai-prices
(hierarchical leaf decomposition: cache reads are taken out of input tokens when they have
their own price, 1-hour cache writes out of cache writes, reasoning out of output; tiers
switch on total input tokens) and caches it. A property test checks the plan against
``calc_price`` on every model in the data.
"""

from __future__ import annotations

import logging
import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version as _pkg_version
from pathlib import Path
from typing import Any, Final

from .errors import ConfigError, UnknownModel

__all__ = ["Cost", "ModelPrice", "PriceBook", "PriceInfo"]

log = logging.getLogger("agentledger.pricing")

_ZERO: Final = Decimal(0)
_MTOK: Final = 1_000_000
# The usage keys an event can carry, in genai-prices' names.
_USAGE_KEYS: Final = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "output_reasoning_tokens", "requests",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """A user-supplied price in USD per million tokens (overrides the bundled data)."""

    input_mtok: Decimal
    output_mtok: Decimal
    cache_read_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None
    reasoning_mtok: Decimal | None = None

    @classmethod
    def parse(cls, model: str, raw: Mapping[str, Any]) -> ModelPrice:
        """Build from a mapping of decimal strings/numbers, naming the bad key on error."""
        known = set(cls.__slots__)
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"price for {model!r}: unknown keys {sorted(unknown)}")
        values: dict[str, Decimal | None] = {}
        for key in known:
            value = raw.get(key)
            if value is None:
                if key in ("input_mtok", "output_mtok"):
                    raise ConfigError(f"price for {model!r}: {key} is required")
                values[key] = None
                continue
            try:
                dec = Decimal(str(value))
            except Exception:
                raise ConfigError(f"price for {model!r}: {key}={value!r} is not a number") from None
            if not dec.is_finite() or dec < 0:
                raise ConfigError(f"price for {model!r}: {key}={value!r} must be finite, >= 0")
            values[key] = dec
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Cost:
    """What a call cost and where the figure came from."""

    usd: Decimal | None
    source: str  # "priced" | "unpriced" (a caller's own figure is "reported")
    price_version: str | None


@dataclass(frozen=True, slots=True)
class PriceInfo:
    """The price the book would use for a model, for display (``agentledger prices``)."""

    model: str
    provider: str | None
    resolved_model: str
    source: str  # "genai-prices" | "override"
    price_version: str
    prices_mtok: dict[str, str]


# A compiled plan: per priced unit (usage key index, price or tiers, divisor, descendants).
_Tiers = tuple[Decimal, tuple[tuple[int, Decimal], ...]]  # (base, ((start, price), ...) desc)
_Step = tuple[int, Decimal | _Tiers, tuple[int, ...]]  # (usage index, price per unit, children)
_CostFn = Callable[[int, int, int, int, int, int], Decimal]


class PriceBook:
    """Resolves model names to prices and turns token usage into exact Decimal cost.

    Thread-safe; lookups are cached (misses too). ``overrides`` maps a model name (or
    ``provider/model``) to a :class:`ModelPrice` or a mapping of ``*_mtok`` values; they win
    over the bundled data and are recorded with ``price_version="override"``.
    """

    def __init__(
        self,
        *,
        overrides: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None,
        overrides_file: str | Path | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._overrides: dict[str, ModelPrice] = {}
        self._cache: dict[tuple[str | None, str | None], Any] = {}
        self._plans: dict[int, tuple[Any, _CostFn]] = {}
        self._warned: set[str] = set()
        self.unpriced_calls: dict[str, int] = {}
        self.version: Final = f"genai-prices {_pkg_version('genai-prices')}"
        if overrides_file is not None:
            self.load_overrides(overrides_file)
        for model, price in (overrides or {}).items():
            self.set_override(model, price)

    # --- overrides ---------------------------------------------------------------------
    def set_override(self, model: str, price: ModelPrice | Mapping[str, Any]) -> None:
        """Price ``model`` (or ``provider/model``) at ``price`` from now on."""
        if not isinstance(model, str) or not model:
            raise ConfigError("override model name must be a non-empty str")
        parsed = price if isinstance(price, ModelPrice) else ModelPrice.parse(model, price)
        with self._lock:
            self._overrides[model.lower()] = parsed
            self._cache.clear()

    def load_overrides(self, path: str | Path) -> None:
        """Load overrides from a TOML or JSON file: ``[models."name"] input_mtok = "1.0"``."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".json":
                import json

                data = json.loads(text)
            else:
                data = tomllib.loads(text)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read price overrides {path}: {exc}") from None
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, dict):
            raise ConfigError(f"{path}: expected a 'models' table of model -> prices")
        for model, raw in models.items():
            if not isinstance(raw, dict):
                raise ConfigError(f"{path}: price for {model!r} must be a table")
            self.set_override(model, raw)

    # --- cost --------------------------------------------------------------------------
    def cost(
        self,
        provider: str | None,
        model: str | None,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        *,
        cache_write_1h_tokens: int = 0,
        at: datetime | float | None = None,
    ) -> Cost:
        """The cost of one call. Unknown models give ``Cost(None, "unpriced", ...)``."""
        usd, source, version = self.quote(
            provider, model, input_tokens, output_tokens, cache_read_tokens,
            cache_write_tokens, reasoning_tokens, cache_write_1h_tokens, at,
        )  # fmt: skip
        return Cost(usd, source, version)

    def quote(
        self,
        provider: str | None,
        model: str | None,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        at: datetime | float | None = None,
    ) -> tuple[Decimal | None, str, str]:
        """:meth:`cost` as a plain tuple ``(usd, source, price_version)``: the hot-path form."""
        entry = self._cache.get((provider, model))
        if entry is None:
            entry = self._resolve(provider, model or "")
        if entry is _MISS:
            self._count_unpriced(provider, model)
            return None, "unpriced", self.version
        fn, version, conditional = entry
        if conditional is not None:
            fn = self._conditional_plan(conditional, at)
        return (
            fn(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
               cache_write_1h_tokens, reasoning_tokens),
            "priced",
            version,
        )  # fmt: skip

    def price_info(self, model: str, provider: str | None = None) -> PriceInfo:
        """Describe the price that would be used; raise :class:`UnknownModel` if none."""
        override = self._lookup_override(provider, model)
        if override is not None:
            prices = {k: str(v) for k in ModelPrice.__slots__ if (v := getattr(override, k))}
            return PriceInfo(model, provider, model, "override", "override", prices)
        found = self._lookup_genai(provider, model)
        if found is None:
            raise UnknownModel(model, provider)
        prov, info = found
        current = info.get_prices(datetime.now(UTC))
        prices = {
            k: str(v if isinstance(v, Decimal) else f"{v.base} (tiered)")
            for k, v in current.__dict__.items()
            if v is not None and not k.startswith("_")
        }
        return PriceInfo(model, prov.id, info.id, "genai-prices", self.version, prices)

    def warm(self) -> None:
        """Load the bundled price data now (≈0.4 s) instead of on the first priced call."""
        self._resolve("openai", "gpt-4o")

    # --- internals ---------------------------------------------------------------------
    def _count_unpriced(self, provider: str | None, model: str | None) -> None:
        name = f"{provider}/{model}" if provider else str(model)
        with self._lock:
            self.unpriced_calls[name] = self.unpriced_calls.get(name, 0) + 1
            first = name not in self._warned
            self._warned.add(name)
        if first:
            log.warning(
                "agentledger: no price known for model %r; recording its tokens with "
                "cost_source='unpriced' (add an override to price it)",
                name,
            )

    def _resolve(self, provider: str | None, model: str) -> Any:
        """Find the price for (provider, model) and cache (plan, version, conditional)."""
        override = self._lookup_override(provider, model)
        entry: Any
        if override is not None:
            entry = (_codegen(_compile_override(override)), "override", None)
        else:
            found = self._lookup_genai(provider, model) if model else None
            if found is None:
                entry = _MISS
            elif isinstance(found[1].prices, list):
                entry = ((), self.version, found[1])  # prices depend on the request time
            else:
                entry = (_codegen(_compile(found[1].prices)), self.version, None)
        self._cache[(provider, model or None)] = entry
        self._cache[(provider, model)] = entry
        return entry

    def _lookup_override(self, provider: str | None, model: str) -> ModelPrice | None:
        low = model.lower()
        if provider and f"{provider.lower()}/{low}" in self._overrides:
            return self._overrides[f"{provider.lower()}/{low}"]
        return self._overrides.get(low)

    def _lookup_genai(self, provider: str | None, model: str) -> tuple[Any, Any] | None:
        from genai_prices import data_snapshot

        snap = data_snapshot.get_snapshot()
        attempts: list[tuple[str, str | None]] = [(model, provider)]
        if "/" in model:  # "openai/gpt-4o", OpenRouter style "anthropic/claude-3.5-sonnet"
            prefix, rest = model.split("/", 1)
            attempts += [(rest, prefix), (rest, provider)]
        if provider is not None:
            attempts.append((model.split("/", 1)[-1], None))
        for ref, prov in attempts:
            try:
                found: tuple[Any, Any] = snap.find_provider_model(ref, None, prov, None)
            except LookupError:
                continue
            return found
        return None

    def _conditional_plan(self, info: Any, at: datetime | float | None) -> _CostFn:
        # `at` may be epoch seconds (ledger rows): converted only here, for the few models
        # whose price depends on the time of the request.
        if at is None:
            at = datetime.now(UTC)
        elif not isinstance(at, datetime):
            at = datetime.fromtimestamp(at, UTC)
        prices = info.get_prices(at)
        cached = self._plans.get(id(prices))
        if cached is not None and cached[0] is prices:
            return cached[1]
        plan = _codegen(_compile(prices))
        # Without a price context get_prices returns one of the model's own ModelPrice objects,
        # so ids are stable; the tuple keeps `prices` alive so its id cannot be reused.
        self._plans[id(prices)] = (prices, plan)
        return plan


_MISS: Final = object()


def _tier_price(tiers: _Tiers, total_input: int) -> Decimal:
    base, steps = tiers
    for start, price in steps:  # highest threshold first
        if total_input > start:
            return price
    return base


def _compile(model_price: Any) -> tuple[_Step, ...]:
    """Turn a genai-prices ModelPrice into steps over our usage vector (see module doc)."""
    from genai_prices.types import TieredPrices
    from genai_prices.units import _get_registry

    registry = _get_registry()
    units = []
    for key, value in model_price.__dict__.items():
        if value is None or key.startswith("_"):
            continue
        unit = registry.unit_for_price_key(key)
        if unit.usage_key in _USAGE_KEYS:  # audio, images, searches: never on an event, so 0
            units.append((unit.usage_key, unit.dimensions, unit.per, value))
    units.sort(key=lambda u: (-len(u[1]), u[0]))
    steps: list[_Step] = []
    for usage_key, dims, per, value in units:
        descendants = tuple(
            _USAGE_KEYS.index(other_key)
            for other_key, other_dims, _, _ in units
            if other_key != usage_key and dims.items() <= other_dims.items()
        )
        price: Decimal | _Tiers
        if isinstance(value, TieredPrices):  # dividing by a power of ten is exact in Decimal
            tiers = tuple(sorted(((t.start, t.price / per) for t in value.tiers), reverse=True))
            price = (value.base / per, tiers)
        else:
            price = value / per
        steps.append((_USAGE_KEYS.index(usage_key), price, descendants))
    return tuple(steps)


_ARG_NAMES: Final = ("i", "o", "cr", "cw", "cw1h", "rs", "1")


def _codegen(plan: tuple[_Step, ...]) -> _CostFn:
    """Generate ``lambda i, o, cr, cw, cw1h, rs: <sum of price * leaf>`` for a plan.

    A plan is fixed per model, so a generated expression replaces the per-call loop (~3x
    faster). Prices are bound as default arguments (constants), never interpolated as text.
    """
    env: dict[str, Any] = {"_ZERO": _ZERO, "_tier": _tier_price}
    leaves: dict[int, str] = {}
    terms: list[str] = []
    for n, (index, price, descendants) in enumerate(plan):
        leaf = _ARG_NAMES[index]
        if descendants:
            leaf = f"({leaf} - " + " - ".join(leaves[d] for d in descendants) + ")"
        leaves[index] = leaf
        env[f"p{n}"] = price
        factor = f"p{n}" if type(price) is Decimal else f"_tier(p{n}, i)"
        terms.append(f"{factor} * {leaf}")
    body = " + ".join(terms) if terms else "_ZERO"
    source = f"def cost(i, o, cr, cw, cw1h, rs):\n    return _ZERO + {body}\n"
    exec(compile(source, "<agentledger price plan>", "exec"), env)
    fn: _CostFn = env["cost"]
    return fn


def _compile_override(p: ModelPrice) -> tuple[_Step, ...]:
    """An override as plan steps: cached/reasoning tokens leave their parent when priced."""
    idx = _USAGE_KEYS.index
    steps: list[_Step] = []
    in_children: list[int] = []
    out_children: list[int] = []
    for key, price, children in (
        ("cache_read_tokens", p.cache_read_mtok, in_children),
        ("cache_write_tokens", p.cache_write_mtok, in_children),
        ("output_reasoning_tokens", p.reasoning_mtok, out_children),
    ):
        if price is not None:
            steps.append((idx(key), price / _MTOK, ()))
            children.append(idx(key))
    steps.append((idx("input_tokens"), p.input_mtok / _MTOK, tuple(in_children)))
    steps.append((idx("output_tokens"), p.output_mtok / _MTOK, tuple(out_children)))
    return tuple(steps)
