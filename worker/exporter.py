"""The fleet's gauges for Prometheus, read from Redis at each scrape: ``zapi-queue exporter``.

Workers count what they do themselves (tasks/metrics.py, one endpoint per worker); what belongs
to the whole fleet is read here, by one process, so that it is never counted twice:

* ``zapi_queue_queue_depth{queue}``: jobs waiting in the broker's queue.
* ``zapi_queue_oldest_queued_job_age_seconds``: how long the next job to be fetched has been
  waiting: from its ``sequence`` stamp when its producer gave one (``tasks.contract.Producer``
  and ``zapi-queue enqueue`` do), else since this exporter first saw it (a lower bound).
* ``zapi_queue_backlog_jobs{instance,state}``: every job not finished, by instance and state
  (worker/queue_census.py): ``queued`` (the queue, its priority lists, the processing lists),
  ``scheduled`` (held by a worker until an eta still ahead: a countdown, a retry's backoff, a
  wait) and ``in_workers`` (held and due: running or about to run).
  ``zapi_queue_backlog_complete``: 0 when the census stopped at its limit (100,000 messages per
  place): the counts are then lower bounds.
* ``zapi_queue_oldest_job_age_seconds``: how long the oldest job not finished (queued, in
  workers, or scheduled and overdue) has existed, dated as the oldest queued one is.
* ``zapi_queue_backlog_drain_seconds{instance}``: the instance's backlog over its rate limit:
  the time its jobs take to send at best.
* ``zapi_queue_scaling_backlog_jobs{instance}``: what an autoscaler should scale on (KEDA:
  ``sum(zapi_queue_scaling_backlog_jobs)`` over a worker's concurrency): the due jobs capped at
  what the instance's rate limit keeps busy, ``rate x send seconds`` (worker/backlog.py says
  why, and what scheduled jobs count); ``zapi_queue_scaling_send_seconds{instance}``: the mean
  send time it used (the workers' recent mean, else ``ZAPI_SCALING_SEND_SECONDS``).
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
from collections.abc import Generator, Iterable, Iterator
from typing import Any, TypeVar

import redis
from celery import Celery
from kombu.exceptions import OperationalError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from config import Settings
from tasks.state.deadletter import DeadLetterStore
from tasks.state.deliveries import state_counts
from tasks.state.ratelimit import RateLimiter
from tasks.state.send_times import read_send_seconds
from tasks.state.store import connect
from tasks.state.webhook_stats import WebhookStats
from worker import instance_report
from worker.backlog import FIRST_SEEN_CAP, Sightings, backlogs
from worker.queue_census import QUEUE, STATES, Census, JobFacts, take_census

#: The help texts of the state's families (the module's docstring explains each).
DEAD_LETTERS = "Dead letters kept now, by error class."
DROPPED = "Dead letters dropped by ZAPI_DEAD_LETTER_MAX."
DELIVERY_STATES = "Messages that reached each delivery state, from Z-API's callbacks."
PAUSED = "Seconds until sends resume after a pause Z-API asked for (0: not paused)."
CALLBACKS = "Callbacks the webhook receiver took, by type and outcome."
BACKLOG = "Jobs not finished, by instance and state (queued, scheduled, in_workers)."
COMPLETE = "1 when the backlog census read every message (0: its counts are lower bounds)."
OLDEST = "How long the oldest job not finished has existed (scheduled ones not yet due aside)."
DRAIN = "Seconds the instance's backlog takes to send at its rate limit."
SCALING = "Due jobs capped at what the instance's rate limit keeps busy: the scaler's metric."
SEND_SECONDS = "The mean send time the scaling metric assumes for the instance."

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
        facts = JobFacts.of(json.loads(message))
    except ValueError:
        return None, None
    return (None, None) if facts is None else (facts.job_id, facts.stamped)


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
        self._sightings = Sightings()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "zapi_queue_exporter_redis_up", "1 when the last scrape could read Redis."
        )
        try:
            census = yield from self._from_broker()
            yield from self._from_state(census)
            up.add_metric([], 1)
        except redis.RedisError:
            up.add_metric([], 0)
        yield up
        yield self._workers_alive()

    def _from_broker(self) -> Generator[Metric, None, Census]:
        """The queue's gauges and the census' own; returns the census for the backlog."""
        client = connect(self.settings.celery_broker_url.get_secret_value(), retries=1)
        try:
            depth = int(client.llen(QUEUE))
            tail = client.lindex(QUEUE, -1) if depth else None
            census = take_census(client, track=FIRST_SEEN_CAP)
        finally:
            client.close()
        now = time.time()
        queue = GaugeMetricFamily(
            "zapi_queue_queue_depth", "Jobs waiting in the broker's queue.", labels=["queue"]
        )
        queue.add_metric([QUEUE], depth)
        yield queue
        age = GaugeMetricFamily(
            "zapi_queue_oldest_queued_job_age_seconds",
            "How long the next job to be fetched has waited (0: the queue is empty).",
        )
        age.add_metric([], self._age(tail, now) if tail is not None else 0.0)
        yield age
        oldest = self._sightings.oldest_age(census, now)
        yield gauge("zapi_queue_oldest_job_age_seconds", OLDEST, [], [([], oldest)])
        yield gauge("zapi_queue_backlog_complete", COMPLETE, [], [([], float(census.complete))])
        return census

    def _age(self, message: bytes | str, now: float) -> float:
        job_id, stamped = queued_since(message)
        seen = self._sightings.first(job_id, now) if job_id is not None else now
        return max(0.0, now - min(seen, stamped if stamped is not None else seen))

    def _backlog(self, census: Census, send_seconds: dict[str, float]) -> Iterator[Metric]:
        """The backlog by instance and state, its drain time and the scaling metric."""
        settings = self.settings
        found = backlogs(
            census,
            instance_report.watched_instances(settings),
            send_seconds,
            settings.zapi_scaling_send_seconds,
        )
        by_state = [
            ([backlog.label, state], getattr(backlog, state))
            for backlog in found
            for state in STATES
        ]
        yield gauge("zapi_queue_backlog_jobs", BACKLOG, ["instance", "state"], by_state)
        drains = [([b.label], b.drain_seconds) for b in found if b.drain_seconds is not None]
        yield gauge("zapi_queue_backlog_drain_seconds", DRAIN, ["instance"], drains)
        scaling = [([b.label], b.scaling) for b in found]
        yield gauge("zapi_queue_scaling_backlog_jobs", SCALING, ["instance"], scaling)
        means = [([b.label], b.send_seconds) for b in found]
        yield gauge("zapi_queue_scaling_send_seconds", SEND_SECONDS, ["instance"], means)

    def _from_state(self, census: Census) -> Iterator[Metric]:
        settings = self.settings
        client = connect(settings.state_redis_url, retries=1)
        try:
            store = DeadLetterStore.from_settings(client, settings)
            letters, by_type, dropped = store.count(), store.count_by_type(), store.dropped()
            instances = watched_instances(settings)
            send_seconds = read_send_seconds(client, [id_ for _, id_, _ in instances])
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
        yield from self._backlog(census, send_seconds)
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
