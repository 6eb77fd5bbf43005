"""Task events leave the worker in batches (worker/event_batching.py): every event still
arrives, each job's in order, in far fewer publishes than events."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from devtools.redis_server import RedisServer
from tests.bodies import unique_body
from tests.events import EventCapture

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]

JOBS = 40
LIFE = ["task-received", "task-started", "task-succeeded"]
#: A wait (rate limit, a slow fake Z-API on a loaded machine) retries a job: its new message
#: may be received before the old run's ``task-retried`` leaves, and it starts again.
RETRIED = "task-retried"


def in_order(kinds: list[str]) -> bool:
    """One life, retries included: received then started, each start after a receipt not yet
    started, one retry for each run but the last, and one success at the end."""
    received = started = retried = 0
    for kind in kinds[:-1]:
        received += kind == LIFE[0]
        started += kind == LIFE[1]
        retried += kind == RETRIED
        if kind == LIFE[2] or started > received or retried > started:
            return False
    return kinds[-1:] == LIFE[2:] and received == started == retried + 1


def publishes(redis_server: RedisServer) -> int:
    """PUBLISH commands the broker's Redis ran so far (in scripts too)."""
    stats = redis_server.client().info("commandstats").get("cmdstat_publish", {})
    return int(stats.get("calls", 0))


def test_every_event_arrives_in_order_in_fewer_publishes(
    producer: Celery, redis_server: RedisServer
) -> None:
    with EventCapture(producer) as events:
        before = publishes(redis_server)
        results = [
            producer.send_task("zapi.order_status_update", args=[unique_body()])
            for _ in range(JOBS)
        ]
        for result in results:
            result.get(timeout=60)
        for result in results:
            events.wait_for(result.id, "task-succeeded")
        published = publishes(redis_server) - before
    for result in results:
        ours: list[dict[str, Any]] = [e for e in events.seen if e.get("uuid") == result.id]
        kinds = [e["type"] for e in ours if e["type"] in [*LIFE, RETRIED]]
        assert in_order(kinds), f"job {result.id}: {kinds}"
    # One publish per job is its result's; Celery alone publishes events one or two at a time
    # (two or more publishes per job); heartbeats add one every 2 s.
    event_publishes = published - JOBS
    assert 0 < event_publishes <= JOBS // 2, f"{event_publishes} publishes for {3 * JOBS} events"
