"""Redis errors do not stop a worker: the reliable channel's error episodes and fetch backoff.

An error reply to a fetch or a claim (``OOM`` under ``noeviction``, ``READONLY`` after a
failover, ``NOPERM``...) pauses fetching with a growing backoff, logged once per episode,
instead of reaching Celery as an unrecoverable error. An ack or a re-queue that fails is kept
and retried at each sweep (worker/fetch_acks.py); the job stays in Redis meanwhile, unacked and
owned, so the lease hands it on if this worker dies first. A failure also suspends takeovers
until renewals have succeeded again for half a lease (worker/fetch_leases.py).
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import Any

from tasks.backoff import backoff
from worker.fetch_base import ChannelBase
from worker.redis_errors import describe as describe_redis_error

#: One logger for the whole transport, as before its split: "worker.transport".
logger = logging.getLogger("worker.transport")

#: Pause of the fetch loop after an error reply from Redis: backoff base and cap (seconds).
FETCH_BACKOFF = (0.25, 2.0)


class _Episode:
    """One stretch of error replies from Redis: logged when it starts and when it ends."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.failures = 0


class ErrorEpisodes(ChannelBase):
    """The channel's health: the error episode under way, the fetch pause it imposes, and since
    when Redis has answered (renewals set it: worker/fetch_leases.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._healthy_since: float | None = None  # renewals have succeeded since then
        self._fetch_paused_until = 0.0
        self._trouble: _Episode | None = None
        super().__init__(*args, **kwargs)

    def trouble(self, what: str, exc: Exception) -> None:
        """Redis failed an operation (an error reply, a lost connection): back the fetch loop
        off; log once per episode. Takeovers wait until renewals have succeeded again for half
        a lease (see ``Leases._may_take_over``)."""
        self._healthy_since = None
        episode = self._trouble
        if episode is None:
            episode = self._trouble = _Episode(monotonic())
            logger.warning(
                "Redis failed %s (%s); backing off, the worker keeps running",
                what,
                describe_redis_error(exc),  # "OOM: ...", whichever Redis version said it
            )
        episode.failures += 1
        delay = backoff(episode.failures, base=FETCH_BACKOFF[0], cap=FETCH_BACKOFF[1])
        self._fetch_paused_until = monotonic() + delay

    def _recovered(self) -> None:
        episode, self._trouble = self._trouble, None
        if episode is not None:
            logger.warning(
                "Redis answers again: fetching resumed after %.1fs (%d refusals)",
                monotonic() - episode.started,
                episode.failures,
            )
