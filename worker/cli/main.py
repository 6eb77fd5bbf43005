"""The ``zapi-queue`` command group; the other modules of this package add its commands."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zapi-queue", prog_name="zapi-queue")
def main() -> None:
    """Operate zapi-queue: enqueue updates, look up a job and its delivery, inspect and replay
    dead letters, look up an order, receive Z-API's webhooks.

    Settings come from the environment (CELERY_BROKER_URL, ...), as for the worker.

    \b
    Exit codes: 0 done; 1 refused, failed or unhealthy; 2 a usage, configuration or
    connection error (one line on stderr); status also: 3 unknown job (or still queued),
    4 not finished yet (running, or waiting to be retried).
    """
