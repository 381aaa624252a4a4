"""The public API: __all__ is exactly the documented set; importing is cheap."""

from __future__ import annotations

import json
import subprocess
import sys

import agentledger

DOCUMENTED = [
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

HEAVY = [
    "sqlalchemy",
    "alembic",
    "genai_prices",
    "psycopg",
    "typer",
    "rich",
    "prometheus_client",
    "opentelemetry",
    "openai",
    "anthropic",
    "fastapi",
]


def test_all_is_exactly_the_documented_set_sorted():
    """agentledger.__all__ is exactly the documented names, sorted."""
    assert agentledger.__all__ == DOCUMENTED
    assert agentledger.__all__ == sorted(agentledger.__all__)


def test_every_name_in_all_exists():
    """Every name in __all__ is an attribute of the package."""
    for name in agentledger.__all__:
        assert hasattr(agentledger, name), name


def test_version_is_a_string():
    """__version__ is a version string."""
    assert isinstance(agentledger.__version__, str)
    assert agentledger.__version__.count(".") >= 1


def test_error_hierarchy():
    """Every error derives from AgentledgerError; ValueError/KeyError where documented."""
    assert issubclass(agentledger.InvalidEvent, (agentledger.AgentledgerError, ValueError))
    assert issubclass(agentledger.ConfigError, ValueError)
    assert issubclass(agentledger.UnknownModel, KeyError)
    assert issubclass(agentledger.StoreUnavailable, agentledger.StoreError)
    for name in ("InvalidEvent", "ConfigError", "UnknownModel", "StoreError"):
        assert issubclass(getattr(agentledger, name), agentledger.AgentledgerError)


def test_import_loads_no_heavy_dependency():
    """`import agentledger` in a fresh interpreter loads none of the heavy dependencies."""
    code = (
        "import json, sys\n"
        "import agentledger\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(json.dumps(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_import_metrics_loads_no_heavy_dependency():
    """`from agentledger import metrics` is cheap too."""
    code = (
        "import json, sys\n"
        "from agentledger import metrics\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
