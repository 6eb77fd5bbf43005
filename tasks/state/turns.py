"""One round trip where several would do: an order's turn with the job's claim; and the job's
reply with its order's new state, its snapshot (if the book lacks it) and its delivery record.

Every job of an order would otherwise pay several more Redis round trips; composing the stores'
Lua functions (tasks/state/orders.py first: it reads Redis' clock, then tasks/state/idempotency.py,
then tasks/state/deliveries.py) keeps their cost to the work done in Redis. (A redis-py pipeline
with scripts would not do: it checks ``SCRIPT EXISTS`` in a round trip of its own.)
"""

from __future__ import annotations

from typing import Any

import redis

from tasks.state import deliveries, idempotency, orders
from tasks.state.idempotency import Claim, IdempotencyStore, earlier_reply
from tasks.state.orders import Entry, OrderLines, Turn

_LIBRARIES = orders.lua_library(1) + idempotency.lua_library(4) + deliveries.lua_library(8)

# KEYS: the order's line, jobs, state; the key's reply, claim, sent.
# ARGV: enter's seven arguments, then the owner and the claim's lease ms.
# Returns {entry} when the job must wait or settle, {entry, claim} at its turn.
_ENTER_AND_CLAIM = (
    _LIBRARIES
    + """
local entered = enter(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
if entered[1] ~= 0 then return {entered} end
return {entered, claim(ARGV[8], ARGV[9])}
"""
)

# KEYS: as above, then the order message's index (7) and the new message's delivery hash (8).
# ARGV: the owner, the reply JSON, its TTL s; delivered's five arguments (the fifth: the order
# TTL); the snapshot JSON ('' when the book has it) and the orderRequestId; link's five arguments.
# Returns {link's answer (the burial fields when the message's failure was reported first; else
# empty), the reply recorded first by another execution of the key ('' when this one is first)}.
_RECORD_AND_DELIVERED = (
    _LIBRARIES
    + """
local earlier = record(ARGV[1], ARGV[2], ARGV[3])
delivered(ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
if ARGV[9] ~= '' then
  redis.call('HSETNX', state, 'snapshot', ARGV[9])
  redis.call('SET', KEYS[7], ARGV[10], 'NX', 'EX', ARGV[8])
end
return {link(ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15]) or {}, earlier}
"""
)


class Turns:
    """The order lines and the idempotency store of one instance, in single round trips."""

    def __init__(self, client: redis.Redis, lines: OrderLines, store: IdempotencyStore) -> None:
        self.lines = lines
        self.store = store
        self._enter_and_claim = client.register_script(_ENTER_AND_CLAIM)
        self._record_and_delivered = client.register_script(_RECORD_AND_DELIVERED)

    def enter_and_claim(
        self, order: str, key: str, owner: str, enter_args: list[Any]
    ) -> tuple[Entry, Claim | None]:
        """Enter the order's line (``OrderLines.enter_args``); at the job's turn, also claim
        its idempotency key for the wait before the send."""
        answer = self._enter_and_claim(
            keys=[*self.lines.keys(order), *self.store.keys(key)],
            args=[*enter_args, owner, self.store.wait_lease_ms],
        )
        entry = OrderLines.parse_entry(answer[0])
        if entry.turn is not Turn.GO:
            return entry, None
        return entry, IdempotencyStore.parse_claim(answer[1])

    def record_and_deliver(
        self,
        order: str,
        key: str,
        owner: str,
        reply_json: str,
        delivered_args: list[Any],
        *,
        snapshot: tuple[str, str] | None,
        delivery: tuple[str, list[Any]],
    ) -> Any:
        """Record the reply, the order's new state (``OrderLines.delivered_args``), its
        snapshot (``(message index key, JSON)``, unless the book has it) and the delivery
        record (``(key, DeliveryBook.link_args)``) at once; returns ``(link's answer or
        None, the reply another execution recorded first or None)``."""
        message_key, snapshot_json = snapshot or ("", "")
        delivery_key, link_args = delivery
        linked, earlier = self._record_and_delivered(
            keys=[*self.lines.keys(order), *self.store.keys(key), message_key, delivery_key],
            args=[
                *(owner, reply_json, self.store.ttl),
                *delivered_args,
                *(snapshot_json, order),
                *link_args,
            ],
        )
        return (linked or None), earlier_reply(earlier)
