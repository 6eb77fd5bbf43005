"""The ``zapi-queue`` command group; the other modules of this package add its commands.

No command ends in a traceback: a connection error, a closed output pipe and any unexpected
error are each one line (or, for the pipe, silence), with the exit codes the help lists.

Each command's module is imported when that command runs (:data:`COMMAND_MODULES`; ``--help``
imports them all), and this module imports only click: ``zapi-queue probe live``, run every
few seconds beside a worker, starts in a fraction of the time the whole CLI (Celery, Redis, the
tasks) takes to import.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

#: The module that defines each command (it registers it on :func:`main` when imported).
COMMAND_MODULES = {
    "console": "worker.cli.console",
    "dead": "worker.cli.dead",
    "enqueue": "worker.cli.jobs",
    "exporter": "worker.cli.exporter",
    "forget": "worker.cli.forget",
    "health": "worker.cli.health",
    "order": "worker.cli.orders",
    "probe": "worker.cli.probe",
    "status": "worker.cli.jobs",
    "webhook": "worker.cli.orders",
    "webhooks": "worker.cli.webhooks",
}


def connection_errors() -> tuple[type[BaseException], ...]:
    """What a command meets when Redis (broker, results or state) cannot be reached. A bare
    BrokenPipeError is not among them: redis-py wraps its socket errors, so that one is stdout.
    Imported here, when an error is looked at, not by every command."""
    import redis
    from kombu.exceptions import OperationalError

    return (
        redis.RedisError,
        OperationalError,
        ConnectionRefusedError,
        ConnectionResetError,
        ConnectionAbortedError,
        TimeoutError,
    )


def quiet_exit_on_broken_pipe() -> None:
    """The reader of stdout went away (``| head -1``): stop quietly, as a Unix tool killed by
    SIGPIPE does. stdout is pointed at /dev/null so that the interpreter's last flush does not
    complain on stderr (Python's documented recipe, 'Note on SIGPIPE')."""
    from worker.cli.common import EXIT_BROKEN_PIPE

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test's runner): nothing to flush
        pass
    sys.exit(EXIT_BROKEN_PIPE)


class Commands(click.Group):
    """The command group; errors in any command are one line, not a traceback. Commands are
    found in :data:`COMMAND_MODULES`, imported on first use."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(COMMAND_MODULES[cmd_name])
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in sorted(set(COMMAND_MODULES.values())):
            importlib.import_module(module)
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            quiet_exit_on_broken_pipe()
        except Exception as exc:  # noqa: BLE001 - every error ends as one line
            from worker.cli.common import fail, known_secrets, one_line

            cause = connection_error_in(exc)
            if cause is None:
                fail(
                    f"unexpected error: {type(exc).__name__}: {exc} "
                    "(a bug: please report this line)"
                )
            detail = one_line(f"{type(cause).__name__}: {cause}", known_secrets())
            fail(
                f"cannot reach Redis ({detail}); check CELERY_BROKER_URL, "
                "CELERY_RESULT_BACKEND and ZAPI_STATE_REDIS_URL"
            )

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Click's main, then stdout flushed here, where a closed pipe can still exit quietly."""
        try:
            return super().main(*args, **kwargs)
        finally:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                quiet_exit_on_broken_pipe()


def connection_error_in(exc: BaseException) -> BaseException | None:
    """The connection error behind ``exc``, if any: Celery wraps them (``BackendGetMetaError``,
    a ``RuntimeError`` about its result store), so the whole chain of causes is searched."""
    errors = connection_errors()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, errors):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zapi-queue", prog_name="zapi-queue")
def main() -> None:
    """Operate zapi-queue: enqueue updates, look up a job and its delivery, inspect and replay
    dead letters, look up an order, forget a customer, receive Z-API's webhooks and set
    where Z-API sends them.

    Settings come from the environment (CELERY_BROKER_URL, ...), as for the worker.

    \b
    Exit codes:
      0    done
      1    refused, failed or unhealthy (a failed job: its error class and text)
      2    a usage, configuration or connection error, or an unknown id
           (one line on stderr, with the fix)
      3    status: unknown job (or still queued)
      4    not finished yet: status (running, waiting to be retried) or
           enqueue --wait (not finished after N s, with the job's state)
      141  the output pipe closed early (| head): quiet, as a tool killed by SIGPIPE
    """
