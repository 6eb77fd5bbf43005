"""A Redis that lost its data is noticed (worker/redis_marker.py): by the workers' watch, and by
``zapi-queue health``, against real Redis servers restarted under a real worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from devtools.processes import WorkerProcess, stack_env
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tests.cli import health_report, run_cli
from tests.conftest import REDIS_PASSWORD, empty_db_fixture
from worker.redis_marker import (
    MARKER_KEY,
    MARKER_TTL,
    Marker,
    acknowledge_loss,
    read_marker,
    watch,
)

client = empty_db_fixture(7)


def test_the_marker_tells_a_new_redis_from_one_that_lost_its_data(client: redis.Redis) -> None:
    assert watch(client, starting=True) == "new"  # nobody watched it before: not a loss
    assert watch(client, starting=False) == "kept"
    marker = read_marker(client)
    assert isinstance(marker, Marker)
    assert marker.lost_at is None
    assert 0 < client.ttl(MARKER_KEY) <= MARKER_TTL

    client.flushdb()  # what a restart without persistence does
    assert watch(client, starting=False) == "lost"
    lost = read_marker(client)
    assert isinstance(lost, Marker)
    assert lost.unacknowledged_loss is not None
    assert watch(client, starting=False) == "kept"  # one loss is reported once
    acknowledge_loss(client)
    acknowledged = read_marker(client)
    assert isinstance(acknowledged, Marker)
    assert acknowledged.unacknowledged_loss is None


def wait_for(check: Callable[[], dict[str, Any] | None], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        assert time.monotonic() < deadline, "health never reported what was expected"
        time.sleep(0.5)


def health_when(env: dict[str, str], wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first health report (workers answering) for which ``wanted`` holds."""

    def check() -> dict[str, Any] | None:
        report = health_report(env)
        return report if report.get("workers") and wanted(report) else None

    return wait_for(check)


def loss_problems(report: dict[str, Any]) -> list[str]:
    return [p for p in report["problems"] if "lost its data" in p or "marker" in p]


@pytest.mark.timeout(150)
def test_health_reports_a_redis_restarted_empty_until_acknowledged(
    tmp_path: Path, zapi_sim: ZapiSimulator
) -> None:
    """The issue's case: Redis restarted without persistence under a running worker. Health
    said "healthy, 0 jobs waiting"; now it says the data was lost, until an operator says the
    loss is dealt with."""
    with RedisServer(password=REDIS_PASSWORD) as server:
        env = stack_env(server.url, zapi_sim, zapi_redis_watch_interval="0.5")
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            before = health_when(env, lambda r: True)
            assert before["healthy"], before["problems"]
            assert before["redis_data"]["broker"]["marker"] is True

            server.stop()
            server.start()  # --save "" --appendonly no: nothing comes back
            report = health_when(env, lambda r: bool(r["redis_data"]["broker"].get("lost_at")))
            assert report["healthy"] is False
            [problem] = loss_problems(report)
            assert problem.startswith("the broker Redis lost its data at ")
            assert "zapi-queue health --acknowledge-data-loss" in problem
            shown = run_cli(env, "health", "--timeout", "1").stdout
            assert "LOST its data at" in shown
            assert "(NOT acknowledged)" in shown

            run_cli(env, "health", "--acknowledge-data-loss", "--timeout", "1")
            after = health_when(env, lambda r: not loss_problems(r))
            assert after["healthy"], after["problems"]
            assert after["redis_data"]["broker"]["loss_acknowledged"] is True
            log = worker.log_text()
    [logged] = [line for line in log.splitlines() if "lost its data" in line]
    assert "ERROR" in logged
    assert "redis://:***@127.0.0.1:" in logged
    assert REDIS_PASSWORD not in log + shown


@pytest.mark.timeout(150)
def test_a_restart_that_kept_the_data_is_noted_not_a_problem(
    tmp_path: Path, zapi_sim: ZapiSimulator
) -> None:
    with RedisServer(appendonly=True) as server:
        env = stack_env(server.url, zapi_sim, zapi_redis_watch_interval="0.5")
        with WorkerProcess(env, tmp_path / "worker.log"):
            server.stop()  # SIGTERM: the AOF is written
            server.start()
            report = health_when(
                env, lambda r: r["redis_data"]["broker"].get("restarted_at") is not None
            )
    assert report["healthy"], report["problems"]
    assert report["redis_data"]["broker"]["lost_at"] is None


@pytest.mark.timeout(150)
def test_health_notices_a_loss_before_any_worker_looks(
    tmp_path: Path, zapi_sim: ZapiSimulator
) -> None:
    """With the watch off (interval 0) the marker is only written at start-up: a Redis with
    none while workers answer has lost it."""
    with RedisServer() as server:
        env = stack_env(server.url, zapi_sim, zapi_redis_watch_interval="0")
        with WorkerProcess(env, tmp_path / "worker.log"):
            assert health_report(env)["healthy"] is True
            server.stop()
            server.start()
            report = health_when(env, lambda r: bool(loss_problems(r)))
    [problem] = loss_problems(report)
    assert problem.startswith("the broker Redis holds no zapi-queue marker while 1 worker(s) run")
    assert report["redis_data"]["broker"] == {"marker": False}
