"""``zapi-queue``: the command line (enqueue, job status, health, dead letters, orders, the
webhook receiver and Z-API's webhook settings, the operator console, the worker's probes).

Every command reads the same settings as the worker (environment variables or ``.env``) and
prints no secret: URLs are shown with their password masked. One module per group of commands,
each imported when one of its commands runs (worker/cli/main.py lists them).
"""

from worker.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
