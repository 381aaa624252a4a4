"""The default ledger: ``configure()`` once, ``get_ledger()`` anywhere.

Without ``configure()``, ``get_ledger()`` opens ``AGENTLEDGER_URL`` or, when that is unset,
the embedded SQLite file ``$AGENTLEDGER_HOME/agentledger.db`` (``AGENTLEDGER_HOME``
defaults to ``$XDG_DATA_HOME/agentledger``, i.e. ``~/.local/share/agentledger``).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from .errors import AgentledgerError
from .ledger import Ledger

__all__ = ["configure", "default_url", "get_ledger"]

log = logging.getLogger("agentledger")
_lock = threading.Lock()
_default: Ledger | None = None


def default_url() -> str:
    """``AGENTLEDGER_URL`` if set, else the embedded SQLite file (see module docstring)."""
    url = os.environ.get("AGENTLEDGER_URL", "").strip()
    if url:
        return url
    return f"sqlite:///{default_home() / 'agentledger.db'}"


def default_home() -> Path:
    """Where the embedded database lives."""
    home = os.environ.get("AGENTLEDGER_HOME", "").strip()
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(xdg) / "agentledger"


def configure(url: str | None = None, **options: Any) -> Ledger:
    """Create the default ledger (closing any previous one) and bind seed-000 ``metrics``.

    ``url`` defaults to :func:`default_url`; ``options`` are :class:`Ledger` options.
    """
    global _default
    from . import metrics

    ledger = Ledger(url if url is not None else default_url(), **options)
    with _lock:
        previous, _default = _default, ledger
    if previous is not None:
        previous.close()
    metrics.bind(ledger)
    return ledger


def get_ledger() -> Ledger:
    """The default ledger, created from the environment on first use.

    A bad ``AGENTLEDGER_URL`` is logged and the embedded default is used instead: a
    library must not stop the host application over its configuration.
    """
    global _default
    ledger = _default
    if ledger is not None:
        return ledger
    with _lock:
        if _default is None:
            try:
                _default = Ledger(default_url())
            except AgentledgerError as exc:
                fallback = f"sqlite:///{default_home() / 'agentledger.db'}"
                log.warning("agentledger: AGENTLEDGER_URL unusable (%s); using %s", exc, fallback)
                _default = Ledger(fallback)
        return _default


def _reset_default() -> None:
    """Close and forget the default ledger (tests)."""
    global _default
    with _lock:
        previous, _default = _default, None
    if previous is not None:
        previous.close()
