"""agentledger: exact token, cost, latency and reliability accounting for LLM agents and bots.

::

    import agentledger

    ledger = agentledger.configure("sqlite:///usage.db")
    with agentledger.scope(bot_id="support-bot", user_id="u-42"):
        ledger.record_llm("gpt-4o", input_tokens=1200, output_tokens=300, duration_ms=840)
    print(ledger.totals(bot_id="support-bot").cost_usd)   # Decimal('0.006')

See docs/guide.md. ``from agentledger import metrics`` gives seed 000's per-bot API.
"""

from __future__ import annotations

from ._aggregates import Totals
from ._default import configure, default_url, get_ledger
from .errors import (
    AgentledgerError,
    ConfigError,
    InvalidEvent,
    StoreError,
    StoreUnavailable,
    UnknownModel,
)
from .events import Event
from .ledger import Ledger, LedgerStats
from .pricing import Cost, ModelPrice, PriceBook, PriceInfo
from .scope import Attribution, ContextThreadPoolExecutor, current_attribution, propagate, scope
from .spans import Span, current_span

__version__ = "0.1.0"

__all__ = [
    "AgentledgerError",
    "Attribution",
    "ConfigError",
    "ContextThreadPoolExecutor",
    "Cost",
    "Event",
    "InvalidEvent",
    "Ledger",
    "LedgerStats",
    "ModelPrice",
    "PriceBook",
    "PriceInfo",
    "Span",
    "StoreError",
    "StoreUnavailable",
    "Totals",
    "UnknownModel",
    "__version__",
    "configure",
    "current_attribution",
    "current_span",
    "default_url",
    "get_ledger",
    "propagate",
    "scope",
    "traced",
]


def traced(kind: str = "custom", name: str | None = None, **attrs: object) -> object:
    """``@agentledger.traced("tool")``: like :meth:`Ledger.traced` on the default ledger.

    The default ledger is looked up at call time, so decorating at import is cheap.
    """
    import functools
    import inspect

    def decorate(fn: object) -> object:
        assert callable(fn)
        span_name = str(name or getattr(fn, "__qualname__", "call"))
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: object, **kwargs: object) -> object:
                with get_ledger().span(kind, span_name, **attrs):
                    return await fn(*args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: object, **kwargs: object) -> object:
            with get_ledger().span(kind, span_name, **attrs):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
