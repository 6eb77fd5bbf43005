"""Instance events: whether each Z-API instance's phone is connected, from its callbacks and
from polling its ``GET .../status`` (worker/status_poller.py).

Z-API still accepts sends while the phone is disconnected (it queues up to 1,000 and fires them
on reconnect, FACTS.md), so a disconnection does not fail jobs; it is what an operator must
know first when messages stop arriving. ``zapi-queue health`` shows it.

One hash per instance, ``zapi-queue:instance:{instance}``: ``connected`` (``1``/``0``),
``error``, ``at`` (the event's time); expires ``INSTANCE_TTL`` (30 days) after the last event.
An older event than the stored one (callbacks can arrive out of order) changes nothing. A
stored time more than ``FUTURE_SLACK`` (a day) after now is no time at all (one kept before
callback times were bounded: tasks/callbacks.py): any event replaces it, or it would win for ever.

``zapi-queue:status-poll:{instance}``: whose turn it is to poll the instance's status; set by
the worker that takes the turn, expiring after ``ZAPI_STATUS_POLL_INTERVAL``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from tasks.state.keys import INSTANCE_PREFIX, INSTANCE_TTL, STATUS_POLL_PREFIX
from tasks.state.ratelimit import hold_sends, resume_sends
from tasks.state.scripts import Script
from tasks.state.store import text

POLL_PREFIX = STATUS_POLL_PREFIX
FUTURE_SLACK = 86_400

_RECORD = Script.beside(
    __name__,
    "record",
    keys=("instance",),
    args=("connected", "err", "at", "ttl", "now_s"),
    constants={"FUTURE_SLACK": FUTURE_SLACK},
)


@dataclass(frozen=True, slots=True)
class Connection:
    connected: bool
    error: str | None
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {"connected": self.connected, "error": self.error, "at": self.at}


class InstanceEvents:
    """The last connection event of each instance."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._record = _RECORD.register(client)

    def record(self, instance_id: str, *, connected: bool, error: str | None, at: float) -> bool:
        """Keep the event; False when a newer one was already kept (it changes nothing)."""
        return bool(
            self._record(
                instance=INSTANCE_PREFIX + instance_id,
                connected="1" if connected else "0",
                err=error or "",
                at=f"{at:.6f}",
                ttl=INSTANCE_TTL,
                now_s=f"{time.time():.6f}",
            )
        )

    def note(
        self,
        instance_id: str,
        *,
        connected: bool,
        error: str | None,
        at: float,
        hold_seconds: int,
    ) -> bool:
        """Keep the event and act on it: a disconnection holds the instance's sends for
        ``hold_seconds`` at most (ratelimit.hold_sends), a connection resumes them. An event
        older than the kept one changes nothing; returns whether this one was the newest."""
        newest = self.record(instance_id, connected=connected, error=error, at=at)
        if newest and connected:
            resume_sends(self._redis, instance_id)
        elif newest:
            hold_sends(self._redis, instance_id, hold_seconds)
        return newest

    def get(self, instance_id: str) -> Connection | None:
        connected, error, at = self._redis.hmget(
            INSTANCE_PREFIX + instance_id, "connected", "error", "at"
        )
        if connected is None:
            return None
        return Connection(text(connected) == "1", text(error) if error else None, float(at or 0))


def take_poll_turns(
    client: redis.Redis, instance_ids: list[str], interval: float, owner: str
) -> list[str]:
    """The instances whose status this worker polls now: those nobody in the fleet polled in
    the last ``interval`` seconds (one round trip for all of them)."""
    pipe = client.pipeline(transaction=False)
    for instance_id in instance_ids:
        pipe.set(POLL_PREFIX + instance_id, owner, nx=True, px=max(1, round(interval * 1000)))
    return [
        instance_id for instance_id, won in zip(instance_ids, pipe.execute(), strict=True) if won
    ]
