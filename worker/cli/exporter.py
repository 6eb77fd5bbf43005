"""``zapi-queue exporter``: the fleet's gauges for Prometheus (worker/exporter.py)."""

from __future__ import annotations

import contextlib
import threading

import click
from prometheus_client import CollectorRegistry, start_http_server

from worker.cli.common import reachable, settings_or_exit
from worker.cli.main import main


@main.command("exporter")
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 in a container")
@click.option("--port", default=9809, show_default=True, type=int)
def exporter(host: str, port: int) -> None:
    """Serve the fleet's gauges on /metrics: queue depth, oldest queued job's age, dead
    letters, workers alive, instance pause, delivery states, webhook callbacks.

    Run one per fleet (each worker serves its own counters on ZAPI_METRICS_PORT).
    """
    from worker.exporter import FleetCollector

    settings = settings_or_exit()
    reachable(settings.celery_broker_url.get_secret_value()).close()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(settings))
    start_http_server(port, addr=host, registry=registry)
    click.echo(f"zapi-queue exporter serving http://{host}:{port}/metrics")
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
