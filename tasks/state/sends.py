"""Sends per instance and second, for ``zapi-queue health``'s "sends in the last minute".

Counted in Redis, fleet-wide, in the script that marks each send in flight right before the
request leaves (tasks/state/idempotency.py ``before_send``): one count per request made to
Z-API, whatever its outcome, at no extra round trip. Each worker's own Prometheus counters say
the same per process (``zapi_queue_attempts_total``); this is the view without Prometheus.

``zapi-queue:sent:{instance}:{minute}``: a hash, epoch second -> sends in that second (at most 60
fields), expiring ``SENT_TTL`` (3 minutes) after its last count. Seconds come from the worker's
clock: containers whose clocks disagree by a second or two blur the edge of the window only.
"""

from __future__ import annotations

import time

import redis

from tasks.state.keys import SENT_PREFIX, SENT_TTL

__all__ = ["SENT_PREFIX", "SENT_TTL", "WINDOW", "sends_in_last_minute", "sent_counter"]
WINDOW = 60


def sent_counter(instance_id: str, at: float) -> tuple[str, int]:
    """The hash and the field that count a send of ``instance_id`` made at ``at``."""
    second = int(at)
    return f"{SENT_PREFIX}{instance_id}:{second // 60}", second


def sends_in_last_minute(client: redis.Redis, instance_id: str, now: float | None = None) -> int:
    """Requests made to Z-API for ``instance_id`` in the last 60 seconds (two HGETALLs)."""
    now = time.time() if now is None else now
    last = int(now)
    first = last - WINDOW + 1
    pipe = client.pipeline(transaction=False)
    for minute in sorted({first // 60, last // 60}):
        pipe.hgetall(f"{SENT_PREFIX}{instance_id}:{minute}")
    return sum(
        int(count)
        for counts in pipe.execute()
        for second, count in counts.items()
        if first <= int(second) <= last
    )
