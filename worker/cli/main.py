"""The ``zapi-queue`` command group; the other modules of this package add its commands."""

from __future__ import annotations

from typing import Any

import click
import redis
from kombu.exceptions import OperationalError

from config import ConfigurationError, get_settings
from tasks.contract.redaction import redact
from worker.cli.common import fail

#: What a command meets when Redis (broker, results or state) cannot be reached.
CONNECTION_ERRORS = (redis.RedisError, OperationalError, ConnectionError, TimeoutError)


class Commands(click.Group):
    """The command group; a connection error in any command is one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            cause = connection_error_in(exc)
            if cause is None:
                raise
            try:
                secrets = get_settings().secret_values()
            except ConfigurationError:
                secrets = []
            detail = redact(f"{type(cause).__name__}: {cause}", secrets)
            fail(
                f"cannot reach Redis ({detail}); check CELERY_BROKER_URL, "
                "CELERY_RESULT_BACKEND and ZAPI_STATE_REDIS_URL"
            )


def connection_error_in(exc: BaseException) -> BaseException | None:
    """The connection error behind ``exc``, if any: Celery wraps them (``BackendGetMetaError``,
    a ``RuntimeError`` about its result store), so the whole chain of causes is searched."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, CONNECTION_ERRORS):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
