"""Noticing a Redis that lost its data: a marker key that only a loss removes.

A Redis restarted without persistence (or flushed, or failed over to an empty server) answers
PING as before, with its queues, idempotency records and dead letters gone. Nothing else in the
fleet would say so: ``zapi-queue health`` counted "0 jobs waiting" and called it healthy. So each
Redis zapi-queue uses (the broker, and the state Redis when it is another) holds a marker
(``MARKER_KEY``: a hash, TTL ``MARKER_TTL``, renewed by every worker):

* a worker writes it at start-up when it is missing (a new Redis, or one nobody watched);
* every ``ZAPI_REDIS_WATCH_INTERVAL`` s each worker renews it (one script): gone since the last
  look means the data went with it; the worker logs an ERROR, counts
  ``zapi_queue_redis_data_lost_total{role}`` and writes a new marker that says when (``lost_at``).
  A marker that survived while the server's ``run_id`` changed is a restart (or failover) that
  kept the data: noted (``restarted_at``), not a problem;
* ``zapi-queue health`` reports a loss as a problem until an operator acknowledges it
  (``--acknowledge-data-loss``), and a missing marker while workers answer as a loss that no
  worker has noticed yet.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

from config import Settings
from tasks.contract.redaction import redact
from tasks.metrics import REDIS_DATA_LOST
from tasks.state.keys import MARKER_KEY, MARKER_TTL
from tasks.state.scripts import BoundScript, Script
from tasks.state.store import connect, text
from worker.background import BackgroundThread
from worker.redis_checks import redis_roles

logger = logging.getLogger("zapi_queue.redis")

__all__ = ["MARKER_KEY", "MARKER_TTL", "Marker", "RedisWatch", "acknowledge_loss", "read_marker"]

#: The marker's renewal (redis_marker.lua).
_WATCH = Script.of(
    "worker",
    "redis_marker.lua",
    "watch",
    keys=("marker",),
    args=("now_s", "run_id", "ttl", "starting"),
)


@dataclass(frozen=True, slots=True)
class Marker:
    """What a Redis' marker says (times in seconds since the epoch)."""

    since: float
    lost_at: float | None = None
    acknowledged_at: float | None = None
    restarted_at: float | None = None

    @property
    def unacknowledged_loss(self) -> float | None:
        """When the data was lost, if no operator has acknowledged it since."""
        if self.lost_at is None:
            return None
        if self.acknowledged_at is not None and self.acknowledged_at >= self.lost_at:
            return None
        return self.lost_at


def run_id(client: redis.Redis) -> str:
    """The server's ``run_id``: new at every start of the process ('' where INFO is refused)."""
    try:
        return str(client.info("server").get("run_id", ""))
    except redis.ResponseError:
        return ""


def watch(client: redis.Redis, *, starting: bool, script: BoundScript | None = None) -> str:
    """Renew the marker (for MARKER_TTL: it outlives any pause of the fleet shorter than that);
    the outcome as ``_WATCH`` names it. ``script``: ``_WATCH`` already registered on ``client``."""
    renew = script if script is not None else _WATCH.register(client)
    answer = renew(
        marker=MARKER_KEY,
        now_s=f"{time.time():.3f}",
        run_id=run_id(client),
        ttl=MARKER_TTL,
        starting=int(starting),
    )
    return text(answer)


def read_marker(client: redis.Redis) -> Marker | None:
    """The marker, or None when the Redis has none."""
    fields = {text(k): text(v) for k, v in client.hgetall(MARKER_KEY).items()}
    if "since" not in fields:
        return None

    def when(name: str) -> float | None:
        return float(fields[name]) if name in fields else None

    return Marker(
        since=float(fields["since"]),
        lost_at=when("lost_at"),
        acknowledged_at=when("acknowledged_at"),
        restarted_at=when("restarted_at"),
    )


def acknowledge_loss(client: redis.Redis) -> None:
    """An operator has dealt with the loss: ``health`` stops reporting it."""
    if client.exists(MARKER_KEY):
        client.hset(MARKER_KEY, "acknowledged_at", f"{time.time():.3f}")


class RedisWatch(BackgroundThread):
    """One worker's looks at each Redis' marker, from a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("zapi-redis-watch")
        self.interval = settings.zapi_redis_watch_interval
        self._roles = redis_roles(settings)
        for role in self._roles:
            REDIS_DATA_LOST.labels(role)  # at 0 from the start: increase() sees the first loss
        self._clients: dict[str, redis.Redis] = {}
        self._scripts: dict[str, BoundScript] = {}  # _WATCH on each role's client, once

    def start(self) -> None:
        """Write missing markers now (never raises), then look every interval (0: never)."""
        self.look(starting=True)
        if self.interval > 0:
            self._start_thread()

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        for client in self._clients.values():
            client.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.look(starting=False)

    def look(self, *, starting: bool) -> dict[str, str]:
        """Renew each Redis' marker; returns the outcome by role (an unreachable one: skipped,
        it is the transport's and health's business)."""
        outcomes: dict[str, str] = {}
        for role, url in self._roles.items():
            client = self._clients.get(role)
            if client is None:
                client = self._clients[role] = connect(url, retries=1)
                self._scripts[role] = _WATCH.register(client)
            try:
                outcomes[role] = outcome = watch(
                    client, starting=starting, script=self._scripts[role]
                )
            except redis.RedisError as exc:
                logger.debug("redis watch: %s Redis unavailable (%s)", role, type(exc).__name__)
                continue
            if outcome == "lost":
                REDIS_DATA_LOST.labels(role).inc()
                logger.error(
                    "the %s Redis %s lost its data (restarted without persistence, flushed, or "
                    "failed over to an empty server): jobs queued and replies recorded before "
                    "now may be gone; see zapi-queue health",
                    role,
                    redact(url),
                )
            elif outcome == "restarted":
                logger.warning("the %s Redis %s restarted; its data was kept", role, redact(url))
        return outcomes
