"""``zapi-queue``: the command line (enqueue, job status, health, dead letters, orders, the
webhook receiver and Z-API's webhook settings, the operator console).

Every command reads the same settings as the worker (environment variables or ``.env``) and
prints no secret: URLs are shown with their password masked. One module per group of commands;
importing this package registers them all on :func:`main`.
"""

from worker.cli import (  # noqa: F401 - registers
    console,
    dead,
    exporter,
    forget,
    health,
    jobs,
    orders,
    webhooks,
)
from worker.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
