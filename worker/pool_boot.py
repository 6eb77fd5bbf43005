"""Start ``celery -A worker worker`` on the pool ``WORKER_POOL`` names, patched as gevent needs.

Celery monkey-patches for gevent only when the command line says ``-P gevent``: its
``__main__`` reads ``sys.argv`` before it imports anything else, as gevent requires. A pool
chosen in the app's configuration is read far too late for that (Celery, kombu, redis-py and
the logging locks are loaded by then), and an unpatched gevent pool would block on every socket.
So a worker command with no ``-P`` and ``WORKER_POOL=gevent`` replaces its process, before the
app is built, with the same command plus ``--pool gevent``: the same pid, environment and
arguments, so a supervisor, a container runtime or a test that started it sees one process.
Any other command (``flower``, ``inspect``) and any explicit ``-P`` are left alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from config import ConfigurationError, get_settings

#: Celery's own spellings of the pool option (``celery worker --help``).
POOL_FLAGS = ("-P", "--pool")


def pool_flag(argv: Sequence[str]) -> str | None:
    """The pool a command line names, or None: ``-P x``, ``-Px``, ``--pool x``, ``--pool=x``."""
    for index, arg in enumerate(argv):
        if arg in POOL_FLAGS:
            return argv[index + 1] if index + 1 < len(argv) else ""
        if arg.startswith("--pool="):
            return arg.partition("=")[2]
        if arg.startswith("-P") and not arg.startswith("--"):
            return arg[2:]
    return None


def gevent_argv(argv: Sequence[str]) -> list[str]:
    """The command that runs ``argv`` (a ``celery`` command line) on the gevent pool."""
    return [sys.executable, "-m", "celery", *argv[1:], "--pool", "gevent"]


def starting_worker() -> bool:
    """This process is ``celery ... worker`` building its app (Celery loads ``-A`` in its
    group's callback, once click knows the subcommand)."""
    context = click.get_current_context(silent=True)
    return context is not None and context.invoked_subcommand == "worker"


def boot(pool: str, argv: Sequence[str] | None = None) -> None:
    """Re-execute this worker command under ``-P gevent`` when ``pool`` asks for gevent and
    nothing on the command line chose a pool; otherwise return at once."""
    argv = sys.argv if argv is None else argv
    if pool != "gevent" or pool_flag(argv) is not None or not starting_worker():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    command = gevent_argv(argv)
    os.execv(command[0], command)  # noqa: S606 # our own command line again, no shell


def boot_configured() -> None:
    """:func:`boot` with ``WORKER_POOL``. Settings that do not load are left to the app's build,
    which reports them in one line (worker/celery_app.py), not in a traceback from here."""
    try:
        pool = get_settings().worker_pool
    except ConfigurationError:
        return
    boot(pool)
