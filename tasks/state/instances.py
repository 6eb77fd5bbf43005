"""Instance events: whether each Z-API instance's phone is connected, from its callbacks.

Z-API still accepts sends while the phone is disconnected (it queues up to 1,000 and fires them
on reconnect, FACTS.md), so a disconnection does not fail jobs; it is what an operator must
know first when messages stop arriving. ``zapi-queue health`` shows it.

One hash per instance, ``zapi-queue:instance:{instance}``: ``connected`` (``1``/``0``),
``error``, ``at`` (the event's time); expires ``INSTANCE_TTL`` (30 days) after the last event.
An older event than the stored one (callbacks can arrive out of order) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from tasks.state.store import KEY_PREFIX, text

INSTANCE_PREFIX = f"{KEY_PREFIX}:instance:"
INSTANCE_TTL = 30 * 86_400

# KEYS[1]: the instance's hash. ARGV: connected (1/0), error, at, TTL s.
_RECORD = """
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or '0')
local newest = tonumber(ARGV[3]) >= at
if newest then
  redis.call('HSET', KEYS[1], 'connected', ARGV[1], 'error', ARGV[2], 'at', ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return newest and 1 or 0
"""


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
        self._record = client.register_script(_RECORD)

    def record(self, instance_id: str, *, connected: bool, error: str | None, at: float) -> bool:
        """Keep the event; False when a newer one was already kept (it changes nothing)."""
        return bool(
            self._record(
                keys=[INSTANCE_PREFIX + instance_id],
                args=["1" if connected else "0", error or "", f"{at:.6f}", INSTANCE_TTL],
            )
        )

    def get(self, instance_id: str) -> Connection | None:
        connected, error, at = self._redis.hmget(
            INSTANCE_PREFIX + instance_id, "connected", "error", "at"
        )
        if connected is None:
            return None
        return Connection(text(connected) == "1", text(error) if error else None, float(at or 0))
