"""One round trip where two would do: an order's turn with the job's claim, and the job's reply
with its order's new state.

Every job of an order with ordering on would otherwise pay two more Redis round trips than the
job without it; composing the two stores' Lua functions (tasks/state/orders.py first: it reads
Redis' clock, then tasks/state/idempotency.py) keeps ordering's cost to the work done in Redis.
"""

from __future__ import annotations

from typing import Any

import redis

from tasks.state import idempotency, orders
from tasks.state.idempotency import Claim, IdempotencyStore
from tasks.state.orders import Entry, OrderBook, Turn

_LIBRARIES = orders.lua_library(1) + idempotency.lua_library(4)

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

# ARGV: the owner, the reply JSON, its TTL s; then delivered's five arguments.
_RECORD_AND_DELIVERED = (
    _LIBRARIES
    + """
record(ARGV[1], ARGV[2], ARGV[3])
delivered(ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
return 1
"""
)


class Turns:
    """The order book and the idempotency store of one instance, in single round trips."""

    def __init__(self, client: redis.Redis, book: OrderBook, store: IdempotencyStore) -> None:
        self.book = book
        self.store = store
        self._enter_and_claim = client.register_script(_ENTER_AND_CLAIM)
        self._record_and_delivered = client.register_script(_RECORD_AND_DELIVERED)

    def enter_and_claim(
        self, order: str, key: str, owner: str, enter_args: list[Any]
    ) -> tuple[Entry, Claim | None]:
        """Enter the order's line (``OrderBook.enter_args``); at the job's turn, also claim
        its idempotency key for the wait before the send."""
        answer = self._enter_and_claim(
            keys=[*self.book.keys(order), *self.store.keys(key)],
            args=[*enter_args, owner, self.store.wait_lease_ms],
        )
        entry = OrderBook.parse_entry(answer[0])
        if entry.turn is not Turn.GO:
            return entry, None
        return entry, IdempotencyStore.parse_claim(answer[1])

    def record_and_deliver(
        self, order: str, key: str, owner: str, reply_json: str, delivered_args: list[Any]
    ) -> None:
        """Record the reply and the order's new state (``OrderBook.delivered_args``) at once."""
        self._record_and_delivered(
            keys=[*self.book.keys(order), *self.store.keys(key)],
            args=[owner, reply_json, self.store.ttl, *delivered_args],
        )
