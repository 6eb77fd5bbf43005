"""``zapi-queue probe live|ready``: a container's probes of the worker beside them.

They read the worker's heartbeat file (worker/heartbeat.py) and nothing else: no broker round
trip, and few imports (click, the settings, the standard library), so a probe run every few
seconds under a CPU limit answers in a fraction of a second. One line on stdout; exit 0 when the
worker passes, 1 when it does not, 2 for a configuration error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click

from config import ConfigurationError, Settings, get_settings
from worker import heartbeat
from worker.cli.main import main

#: A judgement of a beat (worker/heartbeat.py): None, or why the worker fails the probe.
Judge = Callable[[heartbeat.Beat | None, float, float], str | None]


@main.group()
def probe() -> None:
    """Liveness and readiness of the worker on this host, from its heartbeat file
    (ZAPI_HEARTBEAT_FILE): for a container's healthcheck or a Kubernetes probe."""


@probe.command("live")
def live() -> None:
    """Exit 1 unless the worker's consumer made progress within ZAPI_LIVENESS_TIMEOUT seconds
    (a worker still starting passes for that long): restart it when this fails."""
    run_probe("live", heartbeat.live_problem)


@probe.command("ready")
def ready() -> None:
    """Exit 1 unless the worker is alive, its heartbeat fresh, connected to the broker and
    fetching (not before its consumer starts, nor once a shutdown began)."""
    run_probe("ready", heartbeat.ready_problem)


def run_probe(name: str, judge: Judge) -> None:
    settings = _settings()
    path = settings.heartbeat_path
    try:
        beat = heartbeat.read(path)
    except (ValueError, OSError) as exc:
        problem: str | None = f"unreadable heartbeat {path} ({type(exc).__name__}: {exc})"
    else:
        problem = judge(beat, time.monotonic(), settings.zapi_liveness_timeout)
    if problem is not None:
        click.echo(f"not {name}: {problem}"[:300])
        sys.exit(1)
    assert beat is not None  # judged fine: there is one
    age = max(0.0, time.monotonic() - beat.progress)
    click.echo(f"{name}: worker pid {beat.pid}, consumer progress {age:.1f} s ago")


def _settings() -> Settings:
    """The settings, or one line and exit 2 (the worker would refuse them too)."""
    try:
        return get_settings()
    except ConfigurationError as exc:
        click.echo(f"zapi-queue: {exc}", err=True)
        sys.exit(2)
