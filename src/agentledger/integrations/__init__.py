"""Provider integrations: record every SDK call automatically.

* :mod:`agentledger.integrations.openai` — the ``openai`` SDK (Chat Completions,
  Responses, Embeddings).
* :mod:`agentledger.integrations.anthropic` — the ``anthropic`` SDK (Messages).
* :mod:`agentledger.integrations.mcp` — the ``mcp`` SDK's client tool calls.

Each module has ``instrument(ledger=None)``, ``uninstrument()`` and ``wrap(client, ledger=None)``.
A tool call made in answer to a model's tool request nests under that model call.
The SDKs are optional dependencies (``pip install agentledger[openai]``), imported only when
a module's functions are called.
"""

from __future__ import annotations

__all__: list[str] = []
