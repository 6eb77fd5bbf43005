"""The recent mean time of a request to Z-API, per instance, for the exporter's scaling metric.

Each worker times its sends (``zapi_queue_send_duration_seconds``), but per process, where the
exporter cannot read it. So each worker process keeps an exponentially weighted mean per
instance in memory (updated at every send, no I/O) and writes it to Redis at most once a second
per instance: ``zapi-queue:send-seconds:{instance}``, a string, expiring ``SEND_SECONDS_TTL``
after the last write. Several workers overwrite each other's mean: they send to the same
Z-API, so any recent one will do. The exporter reads it (worker/backlog.py); without one it
assumes ``ZAPI_SCALING_SEND_SECONDS``.

A lost write costs nothing but a staler mean: Redis errors are swallowed here.
"""

from __future__ import annotations

import contextlib
import threading
import time

import redis

from tasks.state.keys import SEND_SECONDS_PREFIX, SEND_SECONDS_TTL

#: The weight of the newest send in the mean: about the last ten sends count.
WEIGHT = 0.2
#: At most one write per instance and process in this many seconds.
WRITE_INTERVAL = 1.0


def send_seconds_key(instance_id: str) -> str:
    return f"{SEND_SECONDS_PREFIX}{instance_id}"


def blended(mean: float | None, sample: float, weight: float = WEIGHT) -> float:
    """The mean after one more sample (the sample itself when there was none)."""
    return sample if mean is None else mean + weight * (sample - mean)


class SendTimes:
    """One process' means, shared by its threads; :meth:`observe` after each send."""

    def __init__(self, interval: float = WRITE_INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._means: dict[str, float] = {}
        self._written_at: dict[str, float] = {}

    def observe(self, client: redis.Redis, instance_id: str, seconds: float) -> None:
        """Count one send of ``instance_id`` that took ``seconds``; write the mean if due."""
        now = time.monotonic()
        with self._lock:
            mean = self._means[instance_id] = blended(self._means.get(instance_id), seconds)
            if now - self._written_at.get(instance_id, -self.interval) < self.interval:
                return
            self._written_at[instance_id] = now
        # A lost write leaves a staler mean: not worth a failed job or a log line.
        with contextlib.suppress(redis.RedisError):
            client.set(send_seconds_key(instance_id), repr(mean), ex=SEND_SECONDS_TTL)


def read_send_seconds(client: redis.Redis, instance_ids: list[str]) -> dict[str, float]:
    """The recent mean send time of each instance that has one (one round trip)."""
    if not instance_ids:
        return {}
    values = client.mget([send_seconds_key(instance_id) for instance_id in instance_ids])
    found = {}
    for instance_id, value in zip(instance_ids, values, strict=True):
        try:
            seconds = float(value) if value is not None else None
        except (TypeError, ValueError):
            seconds = None
        if seconds is not None and 0 < seconds < float("inf"):
            found[instance_id] = seconds
    return found


#: The worker process' means (tasks/execution/job.py observes every send).
SEND_TIMES = SendTimes()
