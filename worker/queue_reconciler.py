"""Reconciles each disconnected instance's queue at Z-API (tasks/reconcile.py) from one worker.

Z-API fires its queue by itself the moment the phone reconnects, so the work happens while it is
disconnected: every worker looks about once a second, and a pass is due for an instance whose
phone is known disconnected (its DisconnectedCallback, or the status poll: tasks/state/
instances.py) when none ran since the disconnection, when ``ZAPI_QUEUE_RECONCILE_INTERVAL``
passed since the last one, or at once when a held update wants one (it may supersede a queued
message); and once more when the phone is back (Z-API fires 1-3 s apart: a last pass still
catches the tail). Whichever worker takes the instance's turn in Redis passes; the others skip.

Each pass is one log line per instance and the ``zapi_queue_zapi_queue_*`` counters; ``zapi-queue
health`` shows the last one's count of our messages still queued there.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

import redis

from config import Settings
from config.instances import Instance
from tasks.contract.errors import ZapiQueueError
from tasks.metrics import QUEUE_RECONCILIATIONS, QUEUE_WITHDRAWN
from tasks.reconcile import Reconciliation, reconcile
from tasks.state.deliveries import DeliveryBook
from tasks.state.instances import Connection, InstanceEvents
from tasks.state.store import get_redis
from tasks.state.zapi_queue import LastPass, ZapiQueueBook
from tasks.zapi.client import get_client
from worker.background import BackgroundThread

logger = logging.getLogger("zapi_queue.reconcile")

#: How often a worker looks whether a pass is due (seconds; the interval, when shorter).
LOOK_EVERY = 1.0


def pass_due(
    connection: Connection | None,
    last: LastPass | None,
    *,
    wanted: bool,
    interval: float,
    now: float | None = None,
) -> bool:
    """Whether an instance's queue is due a pass at ``now`` (default: now; the rules in the
    module docstring)."""
    if connection is None:
        return False
    if connection.connected:
        return last is not None and last.disconnected
    if wanted or last is None or last.at < connection.at:
        return True
    return (time.time() if now is None else now) - last.at >= interval


class QueueReconciler(BackgroundThread):
    """One worker's share of reconciling the fleet's instances' queues at Z-API."""

    def __init__(self, settings: Settings, instances: Mapping[str, Instance]) -> None:
        super().__init__("zapi-queue-reconciler")
        self.interval = settings.zapi_queue_reconcile_interval
        self._settings = settings
        self._instances = list(instances.values())
        self._owner = f"{socket.gethostname()}:{os.getpid()}"

    def start(self) -> None:
        """Reconcile from now on, unless turned off (ZAPI_QUEUE_RECONCILE_INTERVAL=0)."""
        if self.interval > 0 and self._instances:
            self._start_thread()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile_due()
            except redis.RedisError as exc:
                logger.warning("queue reconciliation: Redis unavailable (%s)", type(exc).__name__)
            self._stop.wait(min(LOOK_EVERY, self.interval))

    def book(self, client: redis.Redis, instance: Instance) -> ZapiQueueBook:
        return ZapiQueueBook(client, instance.instance_id, self._settings.longest_absence)

    def reconcile_due(self) -> dict[str, Reconciliation]:
        """Pass over each instance whose pass is due and whose turn this worker takes."""
        client = get_redis()
        events = InstanceEvents(client)
        done = {}
        for instance in self._instances:
            if self._stop.is_set():
                break
            book = self.book(client, instance)
            connection = events.get(instance.instance_id)
            wanted = connection is not None and not connection.connected and book.wanted()
            if not pass_due(connection, book.last(), wanted=wanted, interval=self.interval):
                continue
            if not book.take_turn(self._owner):
                continue
            try:
                # Another worker may have passed between the look and the turn.
                before = book.last()
                if wanted or pass_due(connection, before, wanted=False, interval=self.interval):
                    found = self.reconcile(client, instance, book, connection, before)
                    if found is not None:
                        done[instance.alias] = found
            finally:
                book.release_turn(self._owner)
        return done

    def reconcile(
        self,
        client: redis.Redis,
        instance: Instance,
        book: ZapiQueueBook,
        connection: Connection | None,
        before: LastPass | None,
    ) -> Reconciliation | None:
        """One pass, logged and counted (``before``: the last pass, read under the turn); None
        when Z-API could not be read."""
        settings = self._settings
        deliveries = DeliveryBook(
            client,
            instance_id=instance.instance_id,
            ttl=settings.zapi_delivery_ttl,
            history_ttl=settings.celery_result_expires,
        )
        started = time.time()
        try:
            found = reconcile(
                get_client(instance),
                book,
                deliveries,
                pages=settings.zapi_queue_pages,
                supersede=settings.zapi_supersede,
            )
        except ZapiQueueError as exc:
            QUEUE_RECONCILIATIONS.labels(instance.alias, "failed").inc()
            logger.warning("instance %s: Z-API's queue not read: %s", instance.alias, exc.message)
            return None
        withdrawn = sum(found.withdrawn.values())
        disconnected = connection is not None and not connection.connected
        book.record(
            LastPass(
                started, found.total, found.ours - withdrawn, withdrawn, found.partial, disconnected
            )
        )
        QUEUE_RECONCILIATIONS.labels(
            instance.alias, "partial" if found.partial else "complete"
        ).inc()
        for reason, count in found.withdrawn.items():
            if count:
                QUEUE_WITHDRAWN.labels(instance.alias, reason).inc(count)
        # A pass that changed nothing since the last one (every interval while the phone is
        # away) is not news: DEBUG. One that withdrew, missed, or saw a new queue is.
        same = before is not None and before.disconnected and before.ours == found.ours
        quiet = disconnected and same and not withdrawn and not found.missed
        level = logging.WARNING if found.partial else logging.DEBUG if quiet else logging.INFO
        when = "phone disconnected" if disconnected else "phone back"
        logger.log(level, "instance %s (%s): %s", instance.alias, when, found.describe())
        return found
