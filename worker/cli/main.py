"""The ``zapi-queue`` command group; the other modules of this package add its commands."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Operate zapi-queue: enqueue updates, look up a job, inspect and replay dead letters.

    Settings come from the environment (CELERY_BROKER_URL, ...), as for the worker.
    """
