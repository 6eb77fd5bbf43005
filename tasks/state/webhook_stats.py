"""Counts of the callbacks the webhook receiver took, by type and outcome, for ``zapi-queue
health``: an operator sees at a glance whether Z-API's webhooks arrive at all and whether some
are of a type we ignore (a webhook URL pointed at us by mistake).

One hash, ``zapi-queue:webhook:counts``: field ``<outcome>:<type>`` (e.g. ``stored:Delivery
Callback``, ``ignored:PresenceChatCallback``, ``unmatched:DeliveryCallback`` for a message no
job of ours linked, ``foreign:DeliveryCallback`` for an instance not of the fleet,
``evicted:early`` for early entries the cap dropped, tasks/state/deliveries.py); at most
``MAX_FIELDS`` fields (further types count as ``?``); expires ``COUNTS_TTL`` (30 days) after
the last callback.
"""

from __future__ import annotations

import redis

from tasks.state.store import KEY_PREFIX, text

COUNTS_KEY = f"{KEY_PREFIX}:webhook:counts"
COUNTS_TTL = 30 * 86_400
MAX_FIELDS = 200

# KEYS[1]: the counts. ARGV: outcome, type, cap, TTL s, amount.
_COUNT = """
local field = ARGV[1] .. ':' .. ARGV[2]
if redis.call('HEXISTS', KEYS[1], field) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3])
then
  field = ARGV[1] .. ':?'
end
redis.call('HINCRBY', KEYS[1], field, ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


class WebhookStats:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._count = client.register_script(_COUNT)

    def count(self, outcome: str, kind: str, amount: int = 1) -> None:
        self._count(keys=[COUNTS_KEY], args=[outcome, kind, MAX_FIELDS, COUNTS_TTL, amount])

    def counts(self) -> dict[str, int]:
        return {text(k): int(v) for k, v in self._redis.hgetall(COUNTS_KEY).items()}
