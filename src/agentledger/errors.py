"""The one error tree of agentledger.

::

    AgentledgerError                      every error we raise
    ├── InvalidEvent (ValueError)         a record failed validation; ``.field`` names it
    ├── UnknownModel (KeyError)           the price book has no price for ``.model``
    ├── ConfigError (ValueError)          a bad URL, option or environment variable
    └── StoreError                        the database refused or is unreachable
        └── StoreUnavailable              it could not be reached at all

Recording never raises these into the host unless the ledger was built with
``strict=True``; the CLI and server turn them into one-line messages.
"""

from __future__ import annotations

__all__ = [
    "AgentledgerError",
    "ConfigError",
    "InvalidEvent",
    "StoreError",
    "StoreUnavailable",
    "UnknownModel",
]


class AgentledgerError(Exception):
    """Base class of every error agentledger raises."""


class InvalidEvent(AgentledgerError, ValueError):
    """A record was rejected; ``field`` names the offending field."""

    def __init__(self, field: str, message: str, *, event_id: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.event_id = event_id


class UnknownModel(AgentledgerError, KeyError):
    """No price is known for ``model`` (optionally at ``provider``)."""

    def __init__(self, model: str, provider: str | None = None) -> None:
        where = f" at provider {provider!r}" if provider else ""
        super().__init__(f"no price known for model {model!r}{where}")
        self.model = model
        self.provider = provider

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class ConfigError(AgentledgerError, ValueError):
    """A configuration value (URL, option, environment variable) is wrong."""


class StoreError(AgentledgerError):
    """The store failed to read or write."""


class StoreUnavailable(StoreError):
    """The store could not be reached (down, locked past the timeout, bad path)."""
