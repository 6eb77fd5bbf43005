"""The eviction-policy check: read from INFO (CONFIG GET may be disabled), a problem unless
noeviction, silent when the server hides it; the worker warns at start-up, password masked."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from config import Settings
from devtools.processes import WorkerProcess, stack_env
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tests.conftest import REDIS_PASSWORD
from worker.redis_checks import eviction_problem, maxmemory_policy, warn_if_evicting


def evicting(policy: str) -> RedisServer:
    return RedisServer(password=REDIS_PASSWORD, extra_args=["--maxmemory-policy", policy])


@pytest.fixture(scope="module")
def lru_redis() -> Iterator[RedisServer]:
    with evicting("allkeys-lru") as server:
        yield server


@pytest.fixture(scope="module")
def volatile_redis() -> Iterator[RedisServer]:
    with evicting("volatile-ttl") as server:
        yield server


def test_an_evicting_policy_is_a_problem_named_with_the_fix(lru_redis: RedisServer) -> None:
    client = lru_redis.client()
    assert maxmemory_policy(client) == "allkeys-lru"
    problem = eviction_problem(client, "broker Redis")
    client.close()

    assert problem is not None
    assert problem.startswith("broker Redis has maxmemory-policy allkeys-lru")
    assert "set maxmemory-policy noeviction" in problem
    assert "\n" not in problem


def test_noeviction_is_no_problem(redis_server: RedisServer) -> None:
    client = redis_server.client()
    assert maxmemory_policy(client) == "noeviction"
    assert eviction_problem(client, "broker Redis") is None
    client.close()


def test_a_server_that_hides_its_policy_is_no_problem_but_says_so_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Managed Redis may rename INFO away (CONFIG too); we cannot tell, so we do not cry wolf."""
    with RedisServer(extra_args=["--rename-command", "INFO", ""]) as server:
        client = server.client()
        with caplog.at_level(logging.DEBUG, logger="worker.redis_checks"):
            assert eviction_problem(client, "broker Redis") is None
        client.close()
    assert "maxmemory-policy unknown" in caplog.text


def test_the_warning_names_each_evicting_server_without_its_password(
    lru_redis: RedisServer, volatile_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.model_construct(
        celery_broker_url=SecretStr(f"{lru_redis.url}/0"),
        zapi_state_redis_url=SecretStr(f"{volatile_redis.url}/2"),
    )
    with caplog.at_level(logging.WARNING, logger="worker.redis_checks"):
        warn_if_evicting(settings)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"broker Redis redis://:***@127.0.0.1:{lru_redis.port}/0 ")
    assert "allkeys-lru" in warnings[0]
    assert warnings[1].startswith(f"state Redis redis://:***@127.0.0.1:{volatile_redis.port}/2 ")
    assert "volatile-ttl" in warnings[1]
    assert REDIS_PASSWORD not in caplog.text


@pytest.mark.e2e
def test_a_worker_warns_at_start_up_when_its_redis_evicts(
    lru_redis: RedisServer, volatile_redis: RedisServer, zapi_sim: ZapiSimulator, tmp_path: Path
) -> None:
    env = stack_env(lru_redis.url, zapi_sim, db=4, zapi_state_redis_url=f"{volatile_redis.url}/5")
    log = tmp_path / "worker.log"
    with WorkerProcess(env, log) as worker:
        deadline = time.monotonic() + 15
        while "state Redis" not in worker.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = worker.log_text()
    assert "broker Redis redis://:***@127.0.0.1" in text
    assert "has maxmemory-policy allkeys-lru" in text
    assert "state Redis redis://:***@127.0.0.1" in text
    assert "has maxmemory-policy volatile-ttl" in text
    assert "WARNING/MainProcess] broker Redis" in text
    assert REDIS_PASSWORD not in text
