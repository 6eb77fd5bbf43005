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

from tasks.state.keys import WEBHOOK_COUNTS_KEY, WEBHOOK_COUNTS_TTL, WEBHOOK_MAX_FIELDS
from tasks.state.scripts import Script
from tasks.state.store import text

COUNTS_KEY = WEBHOOK_COUNTS_KEY
COUNTS_TTL = WEBHOOK_COUNTS_TTL
MAX_FIELDS = WEBHOOK_MAX_FIELDS

_COUNT = Script.beside(
    __name__, "count", keys=("counts",), args=("outcome", "kind", "cap", "ttl", "amount")
)


class WebhookStats:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._count = _COUNT.register(client)

    def count(self, outcome: str, kind: str, amount: int = 1) -> None:
        self._count(
            counts=COUNTS_KEY,
            outcome=outcome,
            kind=kind,
            cap=MAX_FIELDS,
            ttl=COUNTS_TTL,
            amount=amount,
        )

    def counts(self) -> dict[str, int]:
        return {text(k): int(v) for k, v in self._redis.hgetall(COUNTS_KEY).items()}
