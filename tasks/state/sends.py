"""Sends per instance and second, for ``zapi-queue health``'s "sends in the last minute" and the
console's chart of the last hour (``/instances``).

Counted in Redis, fleet-wide, in the script that marks each send in flight right before the
request leaves (tasks/state/idempotency.py ``before_send``): one count per request made to
Z-API, whatever its outcome, at no extra round trip. Each worker's own Prometheus counters say
the same per process (``zapi_queue_attempts_total``); this is the view without Prometheus.

``zapi-queue:sent:{instance}:{minute}``: a hash, epoch second -> sends in that second (at most 60
fields), expiring ``SENT_TTL`` (an hour and two minutes) after its last count: at most 62 small
hashes per instance.

Z-API's 429s are counted the same way, ``zapi-queue:refused:{instance}:{minute}``, by the job
that got one (tasks/execution/policy.py ``after_429``: one more round trip, on a refusal only),
for the console's chart of the last hour's 429s. Seconds come from the worker's
clock: containers whose clocks disagree by a second or two blur the edge of the window only.
"""

from __future__ import annotations

import time

import redis

from tasks.state.keys import REFUSED_PREFIX, SENT_PREFIX, SENT_TTL

__all__ = [
    "REFUSED_PREFIX",
    "SENT_PREFIX",
    "SENT_TTL",
    "WINDOW",
    "count_refusal",
    "refusals_per_minute",
    "sends_in_last_minute",
    "sends_per_minute",
    "sent_counter",
]
WINDOW = 60
#: The minutes ``sends_per_minute`` can tell (the hashes outlive their minute by ``SENT_TTL``).
HISTORY_MINUTES = SENT_TTL // 60 - 2


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


def sends_per_minute(
    client: redis.Redis, instance_id: str, minutes: int = 60, now: float | None = None
) -> list[int]:
    """Requests made to Z-API for ``instance_id`` in each of the last ``minutes`` whole clock
    minutes, oldest first, the current (partial) minute last (one pipeline of HGETALLs)."""
    return _per_minute(client, SENT_PREFIX + instance_id, minutes, now)


def count_refusal(client: redis.Redis, instance_id: str, at: float) -> None:
    """Count a 429 Z-API answered ``instance_id`` at ``at`` (one pipelined round trip)."""
    second = int(at)
    key = f"{REFUSED_PREFIX}{instance_id}:{second // 60}"
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(key, str(second), 1)
    pipe.expire(key, SENT_TTL)
    pipe.execute()


def refusals_per_minute(
    client: redis.Redis, instance_id: str, minutes: int = 60, now: float | None = None
) -> list[int]:
    """429s Z-API answered ``instance_id`` in each of the last ``minutes``, as
    :func:`sends_per_minute` counts sends."""
    return _per_minute(client, REFUSED_PREFIX + instance_id, minutes, now)


def _per_minute(client: redis.Redis, prefix: str, minutes: int, now: float | None) -> list[int]:
    if not 1 <= minutes <= HISTORY_MINUTES:
        raise ValueError(f"counts are kept for {HISTORY_MINUTES} minutes, not {minutes}")
    current = int(time.time() if now is None else now) // 60
    pipe = client.pipeline(transaction=False)
    for minute in range(current - minutes + 1, current + 1):
        pipe.hgetall(f"{prefix}:{minute}")
    return [sum(int(count) for count in counts.values()) for counts in pipe.execute()]
