"""Jobs enqueued from outside the containers, and what the fake Z-API container received.

The producer is the one users install (tasks/contract/producer.py) on the host, pointed at the
Redis port the test's override publishes on loopback, with the password the stack's settings
file gives Redis.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx

from tasks.contract.endpoints import Endpoint
from tasks.contract.producer import Producer
from tests.bodies import unique_body
from tests.containers.stack import FIXED_PORTS, FakeZapi, Stack, wait_until

SIM_INSTANCE = "sim-instance"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose env file (comments and blank lines skipped, quotes off)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip().strip("\"'")
    return values


def redis_url(port: int, password: str | None, db: int) -> str:
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{port}/{db}"


@contextmanager
def producer(port: int, password: str | None) -> Iterator[Producer]:
    made = Producer(
        broker_url=redis_url(port, password, 0),
        result_backend=redis_url(port, password, 1),
        instance_id=SIM_INSTANCE,
    )
    try:
        yield made
    finally:
        made.close()


def enqueue(made: Producer, count: int) -> dict[str, str]:
    """``count`` status updates of orders of their own: job id by messageId."""
    bodies = [unique_body() for _ in range(count)]
    outcome = made.enqueue_many(Endpoint.ORDER_STATUS_UPDATE, bodies)
    assert not outcome.rejected, outcome.rejected
    return {body["messageId"]: job for body, job in zip(bodies, outcome.job_ids, strict=True)}


def wait_delivered(fake: FakeZapi, message_ids: list[str], timeout: float) -> dict[str, int]:
    """How many times each of ``message_ids`` was accepted, once all were or at ``timeout``."""
    wanted = set(message_ids)

    def all_there() -> dict[str, int] | None:
        counts = fake.accepted_per_message()
        return counts if wanted <= set(counts) else None

    wait_until(all_there, timeout, every=1.0)
    counts = fake.accepted_per_message()
    return {message_id: counts.get(message_id, 0) for message_id in message_ids}


def once_each(counts: dict[str, int]) -> str:
    """'' when every job was sent exactly once, else what went wrong (for the assertion)."""
    missing = [m for m, n in counts.items() if n == 0]
    twice = {m: n for m, n in counts.items() if n > 1}
    if not missing and not twice:
        return ""
    return f"{len(missing)} of {len(counts)} never sent, {len(twice)} sent more than once: {twice}"


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


@contextmanager
def stack_running(
    made: Stack,
    phases: Callable[[str], AbstractContextManager[None]],
    password: str | None,
    *,
    up: str,
    ready: str,
    also_ready: Callable[[], None] = lambda: None,
) -> Iterator[Stack]:
    """``made`` up and answering for one module's tests, each step a timed phase, then down with
    nothing of it left (asserted even when a test failed)."""
    try:
        with phases(f"{made.name}: {up}"):
            made.up()
        with phases(f"{made.name}: {ready}"):
            wait_ready(made, password)
            also_ready()
        yield made
    finally:
        with phases(f"{made.name}: down, every container, volume and network removed"):
            left = made.down()
        assert not left, f"left behind: {left}"


def wait_ready(made: Stack, password: str | None, timeout: float = 180) -> None:
    """Every service doing its job, judged from outside (the healthchecks are a test)."""
    fake = FakeZapi()
    deadline = time.monotonic() + timeout
    try:
        with producer(made.published["redis"], password) as jobs:

            def ready() -> bool:
                try:
                    fake.requests()
                    webhook = httpx.get(f"http://127.0.0.1:{FIXED_PORTS['webhook']}/healthz")
                    nodes = jobs.app.control.ping(timeout=2) or []
                except (httpx.HTTPError, OSError):
                    return False
                return webhook.status_code == 200 and len(nodes) == made.workers

            assert wait_until(ready, deadline - time.monotonic(), every=2), "never ready"
    finally:
        fake.close()


def dotenv_from_example(example: Path, **values: str) -> str:
    """.env.example with ``values`` filled in (a line ``KEY=...`` replaced, else appended), as
    a user makes it: the rest stays as shipped."""
    lines = example.read_text().splitlines()
    for key, value in values.items():
        for index, line in enumerate(lines):
            if line.startswith(f"{key}="):
                lines[index] = f"{key}={value}"
                break
        else:
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def throwaway(prefix: str) -> str:
    """A fresh password of the characters the compose-built URLs carry as they are."""
    return prefix + secrets.token_hex(12)


def sim_dotenv(example: Path, redis_password: str) -> str:
    """A .env from .env.example pointing the stack at the fake Z-API (its `sim` profile, its
    credentials), with the passwords .env.example leaves to fill in."""
    secret = throwaway("whsec-")
    return dotenv_from_example(
        example,
        REDIS_PASSWORD=redis_password,
        FLOWER_BASIC_AUTH=f"admin:{throwaway('flower-')}",
        ZAPI_CONSOLE_AUTH=f"ops:{throwaway('console-')}",
        ZAPI_WEBHOOK_SECRET=secret,
        ZAPI_BASE_URL="http://zapi-sim:8080",
        ZAPI_INSTANCE_ID=SIM_INSTANCE,
        ZAPI_INSTANCE_TOKEN="sim-instance-token",
        ZAPI_CLIENT_TOKEN="sim-client-token",
        COMPOSE_PROFILES="sim",
        ZAPI_SIM_WEBHOOK_URL=f"http://webhook:8000/webhooks/zapi/{secret}",
    )
