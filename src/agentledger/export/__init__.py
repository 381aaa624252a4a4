"""Exporters of agentledger figures to monitoring systems.

* ``agentledger.export.prometheus`` (extra ``[prometheus]``): the live aggregates of a
  :class:`~agentledger.Ledger`, or the totals of a whole store, as Prometheus metrics.
* ``agentledger.export.semconv``: the pinned OpenTelemetry GenAI attribute and metric names.

Nothing here is imported by the core, and this package imports no exporter: an exporter's
optional dependencies load only when that exporter module is imported.
"""

from __future__ import annotations

__all__: list[str] = []
