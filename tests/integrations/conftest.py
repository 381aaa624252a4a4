"""Fixtures for the provider integrations: the fake provider server and a memory ledger."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentledger import Ledger
from agentledger.testing import memory_ledger


def _load_fake_provider() -> Any:
    # Tests run with --import-mode=importlib (no package here): load the helper by path.
    name = "agentledger_tests_fake_provider"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).with_name("fake_provider.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fake_provider = _load_fake_provider()


@pytest.fixture(scope="session")
def fake() -> Iterator[Any]:
    """The fake OpenAI/Anthropic server (one per test session)."""
    server = fake_provider.FakeProvider()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    """A fresh in-memory ledger (strict: an invalid record fails loudly in the log)."""
    led = memory_ledger()
    try:
        yield led
    finally:
        led.close()


@pytest.fixture(autouse=True)
def _uninstrument() -> Iterator[None]:
    """No test leaves the SDK classes patched."""
    yield
    from agentledger.integrations import anthropic as al_anthropic
    from agentledger.integrations import openai as al_openai

    al_openai.uninstrument()
    al_anthropic.uninstrument()
