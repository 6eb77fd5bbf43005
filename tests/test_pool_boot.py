"""``WORKER_POOL=gevent`` (worker/pool_boot.py): which command lines re-execute as ``-P gevent``,
and a real ``celery -A worker`` that is not a worker left alone. The worker itself, re-executed
and delivering, is tests/test_gevent_pool.py's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tests.cli import run_command
from worker import pool_boot
from worker.pool_boot import boot, gevent_argv, pool_flag

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("argv", "pool"),
    [
        (["celery", "-A", "worker", "worker"], None),
        (["celery", "-A", "worker", "worker", "-P", "threads"], "threads"),
        (["celery", "-A", "worker", "worker", "-Pthreads"], "threads"),
        (["celery", "-A", "worker", "worker", "--pool", "gevent"], "gevent"),
        (["celery", "-A", "worker", "worker", "--pool=solo"], "solo"),
        (["celery", "-A", "worker", "worker", "-P"], ""),
        (["celery", "-A", "worker", "worker", "--prefetch-multiplier", "1"], None),
    ],
)
def test_the_pool_a_command_line_names(argv: list[str], pool: str | None) -> None:
    assert pool_flag(argv) == pool


@given(st.lists(st.text(alphabet="-APaeglnoprstvw=", max_size=12), max_size=8))
def test_a_gevent_command_names_gevent_and_keeps_every_argument(argv: list[str]) -> None:
    command = ["celery", *argv]
    rerun = gevent_argv(command)
    assert rerun[:3] == [sys.executable, "-m", "celery"]
    assert rerun[3:-2] == argv
    if pool_flag(command) is None:
        assert pool_flag(rerun) == "gevent"


def boots(
    monkeypatch: pytest.MonkeyPatch, pool: str, argv: list[str], subcommand: str
) -> list[list[str]]:
    """What :func:`boot` executes, run inside a click group as Celery's ``-A`` loading is."""
    executed: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, args: executed.append([path, *args]))

    @click.group()
    def celery() -> None:
        boot(pool, argv)

    @celery.command(subcommand)
    def _command() -> None:
        pass

    result = CliRunner().invoke(celery, [subcommand])
    assert result.exit_code == 0, result.output
    return executed


def test_a_gevent_worker_without_a_pool_flag_re_executes_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = ["/venv/bin/celery", "-A", "worker", "worker", "--loglevel", "INFO"]
    [executed] = boots(monkeypatch, "gevent", argv, "worker")
    assert executed[0] == sys.executable
    assert executed[1:] == gevent_argv(argv)


@pytest.mark.parametrize(
    ("pool", "argv", "subcommand"),
    [
        ("threads", ["celery", "-A", "worker", "worker"], "worker"),
        ("gevent", ["celery", "-A", "worker", "worker", "-P", "threads"], "worker"),
        ("gevent", ["celery", "-A", "worker", "worker", "--pool=gevent"], "worker"),
        ("gevent", ["celery", "-A", "worker", "flower"], "flower"),
        ("gevent", ["celery", "-A", "worker", "inspect", "ping"], "inspect"),
    ],
)
def test_every_other_command_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, pool: str, argv: list[str], subcommand: str
) -> None:
    assert boots(monkeypatch, pool, argv, subcommand) == []


def test_outside_a_command_line_nothing_is_executed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "execv", lambda *_: pytest.fail("executed"))
    boot("gevent", ["celery", "-A", "worker", "worker"])  # no click context: an import
    assert not pool_boot.starting_worker()


def test_celery_report_of_the_app_runs_as_it_is_under_worker_pool_gevent() -> None:
    """A real ``celery -A worker report`` builds the app and is not re-executed: it would
    otherwise fail on ``--pool``, an option it does not have."""
    env = {**os.environ, "WORKER_POOL": "gevent", "PYTHONPATH": str(REPO)}
    done = run_command([sys.executable, "-m", "celery", "-A", "worker", "report"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "software -> celery" in done.stdout
