"""Pytest plugin for a peer suite's child run (``-p tests.peers.plugin``); not a test module.

* ``ZAPI_PEER_TRANSPORT=ours`` points kombu's ``redis`` and ``rediss`` aliases at our transport,
  as ``worker.celery_app`` does for the worker. The peer tests build their connections from
  plain ``redis://`` URLs (``kombu.Connection(url)``), so the alias table is the one switch that
  reaches every one of them without touching their code. ``kombu`` keeps kombu's transport.
* It registers the markers the peers' own root conftest files would (they are not in the sdists).
* It writes each test's outcome and the run's duration to ``ZAPI_PEER_REPORT`` (JSON), for the
  parent to compare the runs.
"""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import version
from pathlib import Path
from time import monotonic
from typing import Any

import kombu
import kombu.transport
import pytest

#: Untyped: the alias table and its resolution cache are not in celery-types' kombu stubs.
registry: Any = kombu.transport

OURS = "worker.transport:Transport"
TRANSPORTS = ("ours", "kombu")

#: nodeid -> {"outcome": passed|failed|skipped, "detail": failure text or skip reason}.
_outcomes: dict[str, dict[str, str]] = {}
_started = monotonic()


def pytest_configure(config: pytest.Config) -> None:
    transport = os.environ.get("ZAPI_PEER_TRANSPORT", "")
    if transport not in TRANSPORTS:
        raise pytest.UsageError(f"ZAPI_PEER_TRANSPORT must be one of {TRANSPORTS}: {transport!r}")
    if transport == "ours":
        for alias in ("redis", "rediss"):
            registry.TRANSPORT_ALIASES[alias] = OURS
        registry._transport_cache.clear()  # in case a plugin resolved "redis" already
    # kombu's repository conftest declares `env`; its tests mark themselves `flaky` for
    # pytest-rerunfailures, which we do not install: a test must pass at its first run here.
    config.addinivalue_line("markers", "env(name): the service a kombu integration test needs")
    config.addinivalue_line("markers", "flaky(**kwargs): rerun marker (not installed: no reruns)")


def pytest_report_header() -> list[str]:
    """Says which transport ``redis://`` resolves to, and which kombu runs (not the sdist's)."""
    transport_file = sys.modules[registry.resolve_transport("redis").__module__].__file__
    return [
        f"redis:// transport: {resolved_transport()} from {transport_file}",
        f"kombu {version('kombu')} from {kombu.__file__}",
    ]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """The outcome of a test is its worst phase: a failed setup or teardown fails it too."""
    entry = _outcomes.setdefault(report.nodeid, {"outcome": "passed", "detail": ""})
    if report.failed:
        entry["outcome"] = "failed"
        entry["detail"] += f"[{report.when}] {report.longreprtext}\n"
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
        entry["detail"] = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else "")


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("ZAPI_PEER_REPORT")
    if path:
        report = {
            "transport": resolved_transport(),
            "seconds": round(monotonic() - _started, 1),
            "tests": _outcomes,
        }
        Path(path).write_text(json.dumps(report, indent=1))


def resolved_transport() -> str:
    """``module:Class`` of the transport a ``redis://`` URL gets in this process."""
    cls = registry.resolve_transport("redis")
    return f"{cls.__module__}:{cls.__qualname__}"
