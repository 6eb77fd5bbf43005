"""The console's ``/instances`` page: each Z-API instance at a glance.

What ``zapi-queue health`` reports per instance (worker/instance_report.py: connection, pause,
hold, rate, jobs waiting, dead letters, Z-API's queue), and what a glance at its last hour needs:
sends and 429s per minute (tasks/state/sends.py, kept an hour), dead letters per minute and delivery
failures by Z-API's words (from the instance's newest dead letters), and the delivery states
its messages reached (the counts the exporter reads). Charts are inline SVG (charts.py).

The broker is read for the jobs waiting (a bounded census); when it cannot be read the page
says so and shows the rest.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config import Settings
from config.instances import Instance
from tasks.contract.errors import DeliveryFailedError
from tasks.state.deadletter import DeadLetterStore
from tasks.state.deliveries import failure_reason, state_counts
from tasks.state.sends import refusals_per_minute, sends_per_minute
from tasks.state.store import connect
from worker.console.app import render
from worker.console.charts import bar_chart, per_minute
from worker.instance_report import instance_report, watched_instances
from worker.queue_census import Census, take_census

#: The dead letters read per instance to count its last hour and its delivery failures.
LETTERS_READ = 500
#: Census limit per place: the page answers in about a second even behind a huge backlog.
CENSUS_LIMIT = 20_000
#: The delivery states in their forward order, for the table.
STATES = ("accepted", "sent", "received", "read", "played", "withdrawn", "failed")


async def instances_page(request: Request) -> Response:
    view = await run_in_threadpool(instances_view, request)
    return render(request, "instances.html", section="/instances", **view)


def instances_view(request: Request) -> dict[str, Any]:
    """What the page shows (a thread: the state Redis and the broker)."""
    settings: Settings = request.app.state.settings
    client: redis.Redis = request.app.state.redis
    store: DeadLetterStore = request.app.state.dead_letters
    census = _census(request, settings)
    letters = store.count_by_instance()
    now = time.time()
    return {
        "instances": [
            _instance_view(client, store, instance, census, letters.get(instance.alias, 0), now)
            for instance in watched_instances(settings)
        ],
        "census_read": census is not None,
        "census_complete": census.complete if census else True,
        "now": now,
    }


def _census(request: Request, settings: Settings) -> Census | None:
    """Jobs waiting by instance, or None when the broker cannot be read."""
    broker = getattr(request.app.state, "broker", None)
    if broker is None:
        broker = connect(settings.celery_broker_url.get_secret_value(), retries=1)
        request.app.state.broker = broker
    try:
        return take_census(broker, limit=CENSUS_LIMIT)
    except redis.RedisError:
        return None


def _instance_view(
    client: redis.Redis,
    store: DeadLetterStore,
    instance: Instance,
    census: Census | None,
    dead_letters: int,
    now: float,
) -> dict[str, Any]:
    report = instance_report(client, instance, census, dead_letters)
    newest = store.newest_of_instance(instance.alias, limit=LETTERS_READ)
    reasons = Counter(
        failure_reason(letter.error) or letter.error
        for letter in newest
        if letter.error_type == DeliveryFailedError.__name__
    )
    sends = sends_per_minute(client, instance.instance_id, now=now)
    refused = refusals_per_minute(client, instance.instance_id, now=now)
    buried = per_minute([letter.failed_at for letter in newest], now=now)
    counts = state_counts(client, instance.instance_id)
    return {
        **report,
        "alias": instance.alias,
        "instance_id": instance.instance_id,
        "failures_by_error": reasons.most_common(),
        "letters_read": len(newest),
        "letters_partial": len(newest) >= LETTERS_READ,
        "states": [(state, counts.get(state, 0)) for state in STATES],
        "sends_chart": bar_chart(sends, kind="sends", label="sends"),
        "sends_hour": sum(sends),
        "refusals_chart": bar_chart(refused, kind="refusals", label="429s"),
        "refusals_hour": sum(refused),
        "failures_chart": bar_chart(buried, kind="failures", label="dead letters"),
        "failures_hour": sum(buried),
    }


routes = [Route("/instances", instances_page, methods=["GET"])]
