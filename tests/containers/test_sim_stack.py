"""The stack a user tries first, run for real: `podman-compose --env-file deploy/sim.env up -d
--scale worker=3` (Redis, three workers, Flower, the webhook receiver and the fake Z-API).

Jobs come from outside the containers (the producer on the host, through Redis' published
port); what Z-API received is the fake Z-API container's request log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.containers.conftest import Phases
from tests.containers.engine import ROOT
from tests.containers.images import BaseImages
from tests.containers.jobs import (
    enqueue,
    once_each,
    producer,
    read_env_file,
    sleep_until,
    stack_running,
    wait_delivered,
)
from tests.containers.stack import FIXED_PORTS, FakeZapi, Stack, wait_until

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

SETTINGS = read_env_file(ROOT / "deploy" / "sim.env")
PASSWORD = SETTINGS.get("REDIS_PASSWORD") or None
SERVICES = {"redis", "worker", "flower", "webhook", "console", "zapi-sim"}
JOBS = 300
#: CELERY_WORKER_LEASE's default: a killed worker's jobs go back to the queue after it.
LEASE = 60


@pytest.fixture(scope="module")
def stack(images: BaseImages, phases: Phases, logs: Path) -> Iterator[Stack]:
    made = Stack(
        name="sim",
        workdir=logs / "sim-project",
        log=logs / "sim" / "commands.log",
        env_file="deploy/sim.env",
        environment=images.variables(),
    )
    with stack_running(
        made,
        phases,
        PASSWORD,
        up="podman-compose up -d --scale worker=3",
        ready="Redis, fake Z-API, webhook answering and 3 workers pinging",
    ):
        yield made


@pytest.fixture
def fake(stack: Stack) -> Iterator[FakeZapi]:
    client = FakeZapi()
    yield client
    client.close()


def test_every_service_passes_its_own_healthcheck(stack: Stack, phases: Phases) -> None:
    containers = stack.containers()
    services = {stack.service_of(c) for c in containers}
    assert services == SERVICES, containers
    assert len(stack.containers("worker")) == 3
    with phases("sim: every healthcheck command passing"):
        passed = stack.wait_healthy(timeout=90)
    checked = {stack.service_of(c) for c in passed}
    assert checked == SERVICES - {"zapi-sim"}, passed  # the fake has no healthcheck


def test_jobs_from_outside_are_sent_once_each_though_a_worker_is_killed(
    stack: Stack, fake: FakeZapi, phases: Phases
) -> None:
    victim = stack.containers("worker")[1]
    with producer(stack.published["redis"], PASSWORD) as jobs:
        started = time.monotonic()
        enqueued = enqueue(jobs, JOBS)
        message_ids = list(enqueued)
        phases.write(
            f"[containers] sim: {JOBS} jobs enqueued in {time.monotonic() - started:.1f} s"
        )

        def a_third_sent() -> bool:
            return len(set(fake.accepted_per_message()) & set(message_ids)) >= JOBS // 3

        assert wait_until(a_third_sent, 120), "a third of the jobs never arrived"
        stack.kill(victim)
        killed = time.monotonic()
        sent_at_kill = len(set(fake.accepted_per_message()) & set(message_ids))
        phases.write(f"[containers] sim: {victim} SIGKILLed with {sent_at_kill} of {JOBS} sent")
        time.sleep(2)
        assert not stack.running(victim)
        stack.start(victim)  # podman applies no restart policy without systemd

        with phases(f"sim: all {JOBS} jobs sent (the killed worker's after its lease)"):
            counts = wait_delivered(fake, message_ids, timeout=LEASE + 180)
        assert not once_each(counts), once_each(counts)
        # A job the killed worker had taken and sent would come back after its lease: by then
        # it must be known as sent, not sent again.
        with phases("sim: waiting out the killed worker's lease, then counting again"):
            sleep_until(killed + LEASE + 15)
            counts = wait_delivered(fake, message_ids, timeout=5)
        assert not once_each(counts), once_each(counts)
        states = {jobs.state(job) for job in enqueued.values()}
        assert states == {"SUCCESS"}, states
    assert stack.running(victim)


def test_flower_asks_for_its_login(stack: Stack) -> None:
    user, password = SETTINGS["FLOWER_BASIC_AUTH"].split(",")[0].split(":", 1)
    url = f"http://127.0.0.1:{FIXED_PORTS['flower']}/api/workers"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, auth=(user, "wrong-" + password), timeout=10).status_code == 401
    answer = httpx.get(url, auth=(user, password), timeout=30)
    assert answer.status_code == 200, answer.text[:300]


def test_the_webhook_loop_brings_orders_in_and_delivery_states_back(
    stack: Stack, fake: FakeZapi, phases: Phases
) -> None:
    with phases("sim: order webhook in, update out, read receipt back"):
        order_message = fake.post_order(phone="5511987654321")
        with producer(stack.published["redis"], PASSWORD) as jobs:
            job = jobs.enqueue_status_update(
                {"messageId": order_message["messageId"], "orderStatus": "shipped"}
            )
            reply = jobs.get_result(job, timeout=60)
            assert set(reply) == {"zaapId", "messageId", "id"}, reply
            read = wait_until(lambda: (jobs.delivery(job) or {}).get("state") == "read", 60)
            assert read, jobs.delivery(job)
    order = order_message["reviewAndPay"]
    sent = [
        r for r in fake.requests() if r["status"] == 200 and order["orderRequestId"] in r["body"]
    ]
    assert len(sent) == 1, sent
