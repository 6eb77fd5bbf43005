"""The stack as a user's own `.env` runs it: copied from .env.example, REDIS_PASSWORD and the
other values it leaves empty filled in, then `podman-compose up -d --scale worker=3` (no
--env-file: compose reads `.env`). The fake Z-API stands in for Z-API (`sim` profile), so the
jobs have somewhere to go; everything else is as shipped.

Redis requires the password, so every service must send it: issue #27 found none did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.containers.conftest import Phases
from tests.containers.engine import ROOT
from tests.containers.images import BaseImages
from tests.containers.jobs import (
    enqueue,
    once_each,
    producer,
    sim_dotenv,
    stack_running,
    throwaway,
    wait_delivered,
)
from tests.containers.stack import FIXED_PORTS, FakeZapi, Stack

pytestmark = [pytest.mark.containers, pytest.mark.timeout(600)]

PASSWORD = throwaway("redis-")
JOBS = 60
#: Z-API's credentials, which only the worker (and the fake standing in for Z-API) may get.
ZAPI_TOKENS = ("sim-instance-token", "sim-client-token")


@pytest.fixture(scope="module")
def stack(images: BaseImages, phases: Phases, logs: Path) -> Iterator[Stack]:
    made = Stack(
        name="dotenv",
        workdir=logs / "dotenv-project",
        log=logs / "dotenv" / "commands.log",
        dotenv=sim_dotenv(ROOT / ".env.example", PASSWORD),
        environment=images.variables(),
    )
    with stack_running(
        made,
        phases,
        PASSWORD,
        up="podman-compose up -d --scale worker=3 (.env from .env.example)",
        ready="every service answering, with the Redis password",
    ):
        yield made


def test_redis_refuses_a_client_without_the_password(stack: Stack) -> None:
    client = redis.Redis(port=stack.published["redis"], socket_timeout=5)
    try:
        with pytest.raises(redis.AuthenticationError):
            client.ping()
    finally:
        client.close()


def test_every_service_passes_its_own_healthcheck(stack: Stack, phases: Phases) -> None:
    with phases("dotenv: every healthcheck command passing"):
        passed = stack.wait_healthy(timeout=90)
    checked = {stack.service_of(c) for c in passed}
    assert checked == {"redis", "worker", "flower", "webhook", "console"}, passed


def test_jobs_from_outside_are_sent_once_each(stack: Stack, phases: Phases) -> None:
    fake = FakeZapi()
    try:
        with producer(stack.published["redis"], PASSWORD) as jobs:
            with phases(f"dotenv: {JOBS} jobs enqueued and sent"):
                enqueued = enqueue(jobs, JOBS)
                counts = wait_delivered(fake, list(enqueued), timeout=120)
            assert not once_each(counts), once_each(counts)
    finally:
        fake.close()


@pytest.mark.parametrize(
    ("service", "variable", "path"),
    [
        ("flower", "FLOWER_BASIC_AUTH", "/api/workers"),
        ("console", "ZAPI_CONSOLE_AUTH", "/instances"),
    ],
)
def test_a_page_service_asks_for_the_login_of_the_dotenv(
    stack: Stack, service: str, variable: str, path: str
) -> None:
    login = (stack.workdir / ".env").read_text().split(f"{variable}=", 1)[1].split()[0]
    user, password = login.split(":", 1)
    url = f"http://127.0.0.1:{FIXED_PORTS[service]}{path}"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, auth=(user, password), timeout=30).status_code == 200


@pytest.mark.parametrize("service", ["flower", "webhook", "console"])
def test_no_zapi_token_reaches_a_service_that_does_not_send(stack: Stack, service: str) -> None:
    [container] = stack.containers(service)
    environment = stack.exec(container, "env")
    leaked = [token for token in ZAPI_TOKENS if token in environment]
    assert not leaked, f"{service} has Z-API's credentials in its environment"
