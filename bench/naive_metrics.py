"""The seed's own naive per-bot metrics design, as the peer for ``metrics_record_tokens``.

Built from seed 000 "Implementation Details": one ``threading.Lock``, a dict of per-bot
dicts whose ``last_metrics`` counters are incremented, and a ``history`` list that gets one
``(timestamp, input_tokens, output_tokens, cached_tokens, cost)`` tuple per call. No input
validation (the seed describes none).
"""

from __future__ import annotations

import threading
import time
from typing import Any

_lock = threading.Lock()
_bot_metrics: dict[str, dict[str, Any]] = {}


def record_tokens(
    input_tokens: int,
    output_tokens: int,
    provider: str,
    model: str,
    cached_tokens: int = 0,
    bot_id: str | None = None,
) -> None:
    with _lock:
        if bot_id is None:
            return
        bot = _bot_metrics.get(bot_id)
        if bot is None:
            bot = _bot_metrics[bot_id] = {
                "last_metrics": {
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cached_tokens": 0,
                    "cost": 0.0,
                    "duration": 0.0,
                },
                "history": [],
            }
        last = bot["last_metrics"]
        last["input_tokens"] += input_tokens
        last["output_tokens"] += output_tokens
        last["cached_tokens"] += cached_tokens
        bot["history"].append((time.time(), input_tokens, output_tokens, cached_tokens, 0.0))


def reset_metrics() -> None:
    with _lock:
        _bot_metrics.clear()
