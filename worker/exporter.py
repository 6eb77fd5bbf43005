"""The fleet's gauges for Prometheus, read from Redis at each scrape: ``zapi-queue exporter``.

Workers count what they do themselves (tasks/metrics.py, one endpoint per worker); what belongs
to the whole fleet is read here, by one process, so that it is never counted twice:

* ``zapi_queue_queue_depth{queue}``: jobs waiting in the broker's queue.
* ``zapi_queue_oldest_queued_job_age_seconds``: how long the next job to be fetched has been
  waiting: from its ``sequence`` stamp when its producer gave one (``tasks.contract.Producer``
  and ``zapi-queue enqueue`` do), else since this exporter first saw it (a lower bound).
* ``zapi_queue_dead_letters{error_type}``: dead letters kept now, by error class (``unknown``:
  letters of releases that did not index them by class);
  ``zapi_queue_dead_letters_dropped_total``: letters the cap dropped, ever.
* ``zapi_queue_workers_alive``: workers answering a ping.
* ``zapi_queue_instance_paused_seconds{instance}``: seconds until sends resume after a pause
  Z-API asked for (0: not paused).
* ``zapi_queue_delivery_states_total{instance,state}``: messages that reached each delivery state
  (accepted, sent, received, read, played, failed), from Z-API's callbacks.
* ``zapi_queue_webhook_callbacks_total{type,outcome}``: callbacks the webhook receiver took.
* ``zapi_queue_exporter_redis_up``: 1 when the last scrape could read Redis.

No label holds a phone, a body or a secret.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import redis
from celery import Celery
from kombu.exceptions import OperationalError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from config import Settings
from tasks.contract.ordering import task_call
from tasks.state.deadletter import DeadLetterStore
from tasks.state.deliveries import state_counts
from tasks.state.ratelimit import RateLimiter
from tasks.state.store import connect
from tasks.state.webhook_stats import WebhookStats
from worker.queue_census import QUEUE

#: Job ids whose first sighting is remembered (only the queue's tail is ever looked up).
FIRST_SEEN_CAP = 10_000


#: The help texts of the state's families (the module's docstring explains each).
DEAD_LETTERS = "Dead letters kept now, by error class."
DROPPED = "Dead letters dropped by ZAPI_DEAD_LETTER_MAX."
DELIVERY_STATES = "Messages that reached each delivery state, from Z-API's callbacks."
PAUSED = "Seconds until sends resume after a pause Z-API asked for (0: not paused)."
CALLBACKS = "Callbacks the webhook receiver took, by type and outcome."

#: One sample of a family: its label values, its value.
Sample = tuple[list[str], float]
_Family = TypeVar("_Family", GaugeMetricFamily, CounterMetricFamily)


def gauge(name: str, documentation: str, labels: list[str], samples: Iterable[Sample]) -> Metric:
    """A gauge family holding ``samples``, in their order."""
    return _filled(GaugeMetricFamily(name, documentation, labels=labels), samples)


def counter(name: str, documentation: str, labels: list[str], samples: Iterable[Sample]) -> Metric:
    """A counter family holding ``samples`` (its name gains ``_total`` in the exposition)."""
    return _filled(CounterMetricFamily(name, documentation, labels=labels), samples)


def _filled(family: _Family, samples: Iterable[Sample]) -> _Family:
    for values, value in samples:
        family.add_metric(values, value)
    return family


def queued_since(message: bytes | str) -> tuple[str | None, float | None]:
    """A queued Celery message's job id, and its ``sequence`` stamp as epoch seconds if its
    producer gave one (µs since the epoch: ``tasks.contract.Producer``)."""
    try:
        envelope = json.loads(message)
    except ValueError:
        return None, None
    headers = envelope.get("headers") if isinstance(envelope, dict) else None
    job_id = headers.get("id") if isinstance(headers, dict) else None
    call = task_call(envelope)
    sequence = call[1].get("sequence") if call is not None else None
    stamped = sequence / 1e6 if isinstance(sequence, int) and sequence > 1e15 else None
    return (job_id if isinstance(job_id, str) else None), stamped


def watched_instances(settings: Settings) -> list[tuple[str, str, float]]:
    """(label, instance id, rate) of each instance the fleet sends through, tokens or not:
    docker-compose.yml gives the exporter the ids and rates, never a token."""
    found = {
        i.instance_id: (i.label, i.instance_id, i.rate_limit) for i in settings.instances().values()
    }
    if settings.zapi_instance_id and settings.zapi_instance_id not in found:
        found[settings.zapi_instance_id] = (
            settings.instance_alias,
            settings.zapi_instance_id,
            settings.zapi_rate_limit,
        )
    return list(found.values())


class FleetCollector(Collector):
    """Reads the fleet's state at each scrape (a few Redis commands and one worker ping)."""

    def __init__(
        self, settings: Settings, ping_timeout: float = 1.0, app: Celery | None = None
    ) -> None:
        """``app`` pings the workers (default: the worker's Celery app, on the same broker)."""
        self.settings = settings
        self.ping_timeout = ping_timeout
        self._app = app
        self._first_seen: OrderedDict[str, float] = OrderedDict()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "zapi_queue_exporter_redis_up", "1 when the last scrape could read Redis."
        )
        try:
            yield from self._from_broker()
            yield from self._from_state()
            up.add_metric([], 1)
        except redis.RedisError:
            up.add_metric([], 0)
        yield up
        yield self._workers_alive()

    def _from_broker(self) -> Iterator[Metric]:
        client = connect(self.settings.celery_broker_url.get_secret_value(), retries=1)
        try:
            depth = int(client.llen(QUEUE))
            tail = client.lindex(QUEUE, -1) if depth else None
        finally:
            client.close()
        queue = GaugeMetricFamily(
            "zapi_queue_queue_depth", "Jobs waiting in the broker's queue.", labels=["queue"]
        )
        queue.add_metric([QUEUE], depth)
        yield queue
        age = GaugeMetricFamily(
            "zapi_queue_oldest_queued_job_age_seconds",
            "How long the next job to be fetched has waited (0: the queue is empty).",
        )
        age.add_metric([], self._age(tail) if tail is not None else 0.0)
        yield age

    def _age(self, message: bytes | str) -> float:
        now = time.time()
        job_id, stamped = queued_since(message)
        seen = now
        if job_id is not None:
            seen = self._first_seen.setdefault(job_id, now)
            self._first_seen.move_to_end(job_id)
            while len(self._first_seen) > FIRST_SEEN_CAP:
                self._first_seen.popitem(last=False)
        return max(0.0, now - min(seen, stamped if stamped is not None else seen))

    def _from_state(self) -> Iterator[Metric]:
        settings = self.settings
        client = connect(settings.state_redis_url, retries=1)
        try:
            store = DeadLetterStore.from_settings(client, settings)
            letters, by_type, dropped = store.count(), store.count_by_type(), store.dropped()
            instances = watched_instances(settings)
            states = {label: state_counts(client, id_) for label, id_, _ in instances}
            paused = {
                label: RateLimiter(client, instance_id=id_, rate=rate).paused_for()
                for label, id_, rate in instances
            }
            callbacks = WebhookStats(client).counts()
        finally:
            client.close()
        by_class = [([error_type], count) for error_type, count in by_type.items()]
        if (unknown := letters - sum(by_type.values())) > 0:
            by_class.append((["unknown"], unknown))
        yield gauge("zapi_queue_dead_letters", DEAD_LETTERS, ["error_type"], by_class)
        yield counter("zapi_queue_dead_letters_dropped", DROPPED, [], [([], dropped)])
        deliveries = [
            ([label, state], count)
            for label, counts in sorted(states.items())
            for state, count in sorted(counts.items())
        ]
        yield counter(
            "zapi_queue_delivery_states", DELIVERY_STATES, ["instance", "state"], deliveries
        )
        pauses = [([label], seconds) for label, seconds in sorted(paused.items())]
        yield gauge("zapi_queue_instance_paused_seconds", PAUSED, ["instance"], pauses)
        taken = []
        for field, count in sorted(callbacks.items()):
            outcome, _, kind = field.partition(":")
            taken.append(([kind, outcome], count))
        yield counter("zapi_queue_webhook_callbacks", CALLBACKS, ["type", "outcome"], taken)

    def _workers_alive(self) -> Metric:
        if self._app is None:
            from worker.celery_app import app

            self._app = app
        alive = GaugeMetricFamily("zapi_queue_workers_alive", "Workers answering a ping.")
        try:
            replies: list[Any] = self._app.control.ping(timeout=self.ping_timeout) or []
        except (redis.RedisError, OSError, OperationalError):
            replies = []  # the broker is down: Redis' own gauge says so
        alive.add_metric([], sum(len(reply) for reply in replies))
        return alive
