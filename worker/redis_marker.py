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

Anyone who can write to the Redis can write anything into the marker. What this module did not
write is **damaged** (:class:`Damaged`): a key of another type, a hash without ``since``, a time
that is not the decimal seconds :func:`watch` writes or not one in [2000-01-01, now + 1 day]
(``nan``, ``inf``, ``-1``, ``1e300``, bytes that are not text). A damaged marker cannot say
since when the data is kept, so ``health`` reports it as a possible loss, workers or not;
acknowledging it replaces it with a new marker that vouches for the data from then on only (a
loss at that moment, acknowledged). The watch itself reads only the key's type, whether it has
``since``, and ``run_id``: a key of another type, or a hash without ``since``, is a marker gone
(a loss), anything else it renews as it is.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import redis

from config import Settings
from tasks.callbacks import EARLIEST_MOMENT_MS, LATEST_AHEAD_S
from tasks.contract.redaction import redact
from tasks.metrics import REDIS_DATA_LOST
from tasks.state.keys import MARKER_KEY, MARKER_TTL
from tasks.state.scripts import BoundScript, Script
from tasks.state.store import connect, text
from worker.background import BackgroundThread
from worker.redis_checks import redis_roles

logger = logging.getLogger("zapi_queue.redis")

__all__ = [
    "MARKER_KEY",
    "MARKER_TTL",
    "Damaged",
    "Marker",
    "RedisWatch",
    "acknowledge_loss",
    "read_marker",
]


def _script(section: str, *args: str) -> Script:
    """A script of redis_marker.lua: each takes the marker as its one key."""
    return Script.beside(__name__, section, keys=("marker",), args=args)


#: The marker's renewal, and an operator's acknowledgement.
_WATCH = _script("watch", "now_s", "run_id", "ttl", "starting")
_ACKNOWLEDGE = _script("acknowledge", "now_s", "run_id", "ttl", "repair")

#: The marker's fields that are times, as read (``since`` first: the one a marker must have).
_TIMES = ("since", "lost_at", "acknowledged_at", "restarted_at")
#: A time as :func:`watch` writes it (``f"{time.time():.3f}"``): ASCII digits, a fraction at
#: most. Not ``float()``'s grammar, which also takes ``nan``, ``1e9``, ``1_0`` and non-ASCII digits.
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
#: No marker time is before 2000-01-01 or more than a day ahead of this clock (the bounds
#: tasks/callbacks.py puts on Z-API's times; a worker's clock is no more trusted).
_EARLIEST_S = EARLIEST_MOMENT_MS / 1000


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


@dataclass(frozen=True, slots=True)
class Damaged:
    """A marker this module did not write: it cannot say since when the data is kept.
    ``reason`` names what is wrong (a field's name, never its value: anyone wrote it)."""

    reason: str


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


def read_marker(client: redis.Redis) -> Marker | Damaged | None:
    """The marker; None when the Redis has none; :class:`Damaged` when what the key holds is
    not a marker :func:`watch` wrote. Whatever it holds, only the connection's errors raise."""
    try:
        values = client.hmget(MARKER_KEY, list(_TIMES))
    except redis.ResponseError as exc:
        if str(exc).startswith("WRONGTYPE"):
            return Damaged("the key is not a hash")
        raise
    raw_since, *rest = values
    if raw_since is None:  # no key, or one the watch takes for a marker gone
        exists = any(value is not None for value in rest) or client.exists(MARKER_KEY)
        return Damaged("since is missing") if exists else None
    since = _time(raw_since)
    if since is None:
        return Damaged("since is not a time")
    times: dict[str, float | None] = {}
    for name, value in zip(_TIMES[1:], rest, strict=True):
        times[name] = None if value is None else _time(value)
        if value is not None and times[name] is None:
            return Damaged(f"{name} is not a time")
    return Marker(since, times["lost_at"], times["acknowledged_at"], times["restarted_at"])


def _time(value: object) -> float | None:
    """A marker's time (epoch s) from its stored text, or None when it is not one :func:`watch`
    could have written."""
    shown = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    if not _DECIMAL.fullmatch(shown):
        return None
    seconds = float(shown)
    return seconds if _EARLIEST_S <= seconds <= time.time() + LATEST_AHEAD_S else None


def acknowledge_loss(client: redis.Redis) -> str:
    """An operator has dealt with the loss: ``health`` stops reporting it. A damaged marker is
    replaced by one that vouches for the data from now on only. Returns the outcome as
    ``_ACKNOWLEDGE`` names it ('acknowledged', 'repaired', 'none': no marker)."""
    marker = read_marker(client)
    now = time.time()
    if isinstance(marker, Marker) and marker.lost_at is not None:
        now = max(now, marker.lost_at)  # dated by a worker whose clock is ahead: dealt with too
    answer = _ACKNOWLEDGE.register(client)(
        marker=MARKER_KEY,
        now_s=f"{now:.3f}",
        run_id=run_id(client),
        ttl=MARKER_TTL,
        repair=int(isinstance(marker, Damaged)),
    )
    return text(answer)


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
