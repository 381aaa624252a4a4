"""Helpers of the exporter tests: parse an exposition, scrape a URL, read a subprocess line."""

from __future__ import annotations

import queue
import socket
import subprocess
import threading
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def samples_of(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted label pairs: value}}`` of a text exposition."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            key = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[key] = sample.value
    return out


def scrape(url: str) -> str:
    """GET ``url`` and return its body."""
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
    return body.decode()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def read_line(proc: subprocess.Popen[Any], timeout: float = 60.0) -> str:
    """The next line of ``proc``'s stdout; fails (with its stderr) if none comes in time."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no output from {proc.args!r} within {timeout} s") from None
    if not line:
        raise AssertionError(f"{proc.args!r} exited: {proc.wait()} {proc.stderr.read()}")  # type: ignore[union-attr]
    return line
