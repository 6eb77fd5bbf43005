"""The `ha` profile on podman as deploy/ha.env says to run it there: `.env` (from .env.example)
plus `set -a; . deploy/ha.env; set +a; podman-compose up -d` (podman-compose keeps one
--env-file only). The fake Z-API's `sim` profile is added so the jobs have somewhere to go.

The primary Redis container is SIGKILLed: the Sentinels promote the replica, the workers follow
them, and jobs enqueued afterwards (on the new primary's published port) are still sent, each
once, as are those sent before.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

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
from tests.containers.stack import FakeZapi, Stack, wait_until

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

PASSWORD = throwaway("redis-")
JOBS = 40


def sourced(env_file: Path) -> dict[str, str]:
    """The variables ``set -a; . FILE; set +a`` exports, as the shell reads them."""
    names = [
        line.split("=", 1)[0]
        for line in env_file.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    ]
    script = 'set -a; . "$1"; set +a; for n in "${@:2}"; do printf "%s=%s\\0" "$n" "${!n}"; done'
    done = subprocess.run(
        ["bash", "-c", script, "bash", str(env_file), *names],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    return dict(item.split("=", 1) for item in done.stdout.split("\0") if item)


@pytest.fixture(scope="module")
def stack(images: BaseImages, phases: Phases, logs: Path) -> Iterator[Stack]:
    made = Stack(
        name="ha",
        workdir=logs / "ha-project",
        log=logs / "ha" / "commands.log",
        dotenv=sim_dotenv(ROOT / ".env.example", PASSWORD),
        environment={**images.variables(), **sourced(ROOT / "deploy" / "ha.env")},
        profiles=("sim",),
        publish=("redis", "redis-replica"),
    )
    with stack_running(
        made,
        phases,
        PASSWORD,
        up="set -a; . deploy/ha.env; set +a; podman-compose up -d",
        ready="Sentinels, both Redis servers and 3 workers answering",
        also_ready=lambda: replica_is_replicating(made),
    ):
        yield made


def replica_is_replicating(stack: Stack) -> None:
    assert role(stack, "redis-replica") == "slave"


def role(stack: Stack, service: str) -> str | None:
    """INFO replication's role of one Redis server, through its published port."""
    client = redis.Redis(port=stack.published[service], password=PASSWORD, socket_timeout=3)
    try:
        return str(client.info("replication")["role"])
    except redis.RedisError:
        return None
    finally:
        client.close()


def test_killing_the_primary_keeps_delivering(stack: Stack, phases: Phases) -> None:
    fake = FakeZapi()
    try:
        with producer(stack.published["redis"], PASSWORD) as jobs:
            with phases(f"ha: {JOBS} jobs sent through the first primary"):
                before = wait_delivered(fake, list(enqueue(jobs, JOBS)), timeout=120)
            assert not once_each(before), once_each(before)

        [primary] = stack.containers("redis")
        stack.kill(primary)
        with phases("ha: failover (the replica promoted after SIGKILL of the primary)"):
            promoted = wait_until(lambda: role(stack, "redis-replica") == "master", 120)
        assert promoted, f"the replica is still {role(stack, 'redis-replica')}"

        started = time.monotonic()
        with producer(stack.published["redis-replica"], PASSWORD) as jobs:
            with phases(f"ha: {JOBS} jobs sent through the new primary"):
                after = wait_delivered(fake, list(enqueue(jobs, JOBS)), timeout=240)
            assert not once_each(after), once_each(after)
        phases.write(f"[containers] ha: sends resumed {time.monotonic() - started:.1f} s after")
        counts = fake.accepted_per_message()
        assert all(counts[m] == 1 for m in [*before, *after])
    finally:
        fake.close()
