"""Polls each Z-API instance's ``GET .../status``: a disconnected instance's sends are held.

Z-API's ``DisconnectedCallback`` and ``ConnectedCallback`` reach us only when the webhook
receiver is configured and reachable, and a lost ``ConnectedCallback`` would hold an instance's
sends until ``ZAPI_DISCONNECTED_HOLD`` runs out. Polling closes both gaps: every
``ZAPI_STATUS_POLL_INTERVAL`` seconds one worker of the fleet (whichever takes the instance's
turn in Redis first, tasks/state/instances.py) asks Z-API, and its answer is noted exactly like
a callback (newest wins): ``connected: false`` holds the sends, ``connected: true`` resumes them.

A poll that gets no answer, or an error, changes nothing: an unreachable Z-API is the breaker's
business (tasks/instance_guard.py), not a disconnected phone. Each worker runs one daemon thread
(started when the worker is ready, stopped at its shutdown); polls are GETs, they send nothing
and use no rate-limit slot.
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
from tasks.metrics import STATUS_POLLS
from tasks.state.instances import InstanceEvents, take_poll_turns
from tasks.state.store import get_redis
from tasks.zapi.client import get_client
from tasks.zapi.status import InstanceStatus
from worker.background import BackgroundThread

logger = logging.getLogger("zapi_queue.status")

#: How often a worker looks for a free turn, as a share of the interval (bounded below): often
#: enough that a turn is taken soon after it frees, whatever the number of workers.
LOOKS_PER_INTERVAL = 4
MIN_LOOK = 0.25
MAX_LOOK = 5.0


class StatusPoller(BackgroundThread):
    """One worker's share of polling the fleet's instances."""

    def __init__(self, settings: Settings, instances: Mapping[str, Instance]) -> None:
        super().__init__("zapi-status-poller")
        self.interval = settings.zapi_status_poll_interval
        self._hold_seconds = settings.zapi_disconnected_hold
        self._by_id = {instance.instance_id: instance for instance in instances.values()}
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self._failing: set[str] = set()

    @property
    def look_every(self) -> float:
        return min(MAX_LOOK, max(MIN_LOOK, self.interval / LOOKS_PER_INTERVAL))

    def start(self) -> None:
        """Poll from now on, unless there is nothing to poll (ZAPI_STATUS_POLL_INTERVAL=0)."""
        if self.interval > 0 and self._by_id:
            self._start_thread()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_due()
            except redis.RedisError as exc:
                logger.warning("status poll: Redis unavailable (%s)", type(exc).__name__)
            self._stop.wait(self.look_every)

    def poll_due(self) -> list[str]:
        """Poll the instances whose turn this worker takes; returns their ids."""
        client = get_redis()
        taken = take_poll_turns(client, list(self._by_id), self.interval, self._owner)
        for instance_id in taken:
            if self._stop.is_set():
                break
            self.poll(client, self._by_id[instance_id])
        return taken

    def poll(self, client: redis.Redis, instance: Instance) -> InstanceStatus | None:
        """Ask Z-API for the instance's status and note it; None when no status came."""
        try:
            status = get_client(instance).status()
        except ZapiQueueError as exc:
            STATUS_POLLS.labels(instance.alias, "failed").inc()
            if instance.instance_id not in self._failing:
                self._failing.add(instance.instance_id)
                logger.warning("instance %s: status poll failed: %s", instance.alias, exc.message)
            return None
        self._failing.discard(instance.instance_id)
        outcome = "connected" if status.connected else "disconnected"
        STATUS_POLLS.labels(instance.alias, outcome).inc()
        events = InstanceEvents(client)
        before = events.get(instance.instance_id)
        events.note(
            instance.instance_id,
            connected=status.connected,
            error=status.error,
            at=time.time(),
            hold_seconds=self._hold_seconds,
        )
        if before is None or before.connected != status.connected:
            if status.connected:
                logger.info("instance %s: Z-API says it is connected", instance.alias)
            else:
                logger.warning(
                    "instance %s: Z-API says it is disconnected (%s): its sends are held",
                    instance.alias,
                    status.error or "no reason given",
                )
        return status
