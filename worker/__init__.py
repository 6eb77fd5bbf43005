"""The zapi-queue Celery app: `celery -A worker worker` and `celery -A worker flower`.

The app is built on first access to ``worker.app`` (Celery's ``-A worker`` asks for it), not on
import of the package: kombu imports ``worker.transport`` by name, and that must not drag the
whole app (tasks, signal handlers, settings) into a process that only wants a transport.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from worker.pool_boot import boot_configured

        boot_configured()  # WORKER_POOL=gevent: re-executes as `-P gevent`
        from worker.celery_app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
