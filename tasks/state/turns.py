"""One round trip where several would do: an order's turn with the job's claim, its rate slot
and, when the slot is now, the send marked in flight; and the job's reply with its order's new
state, its snapshot (if the book lacks it) and its delivery record.

Every job would otherwise pay several more Redis round trips; composing the stores' Lua
functions (tasks/state/orders.py first: it reads Redis' clock, then tasks/state/idempotency.py,
then tasks/state/ratelimit.py or tasks/state/deliveries.py) keeps their cost to the work done in
Redis. (A redis-py pipeline with scripts would not do: it checks ``SCRIPT EXISTS`` in a round trip
of its own.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from tasks.state import deliveries, idempotency, orders, ratelimit
from tasks.state.idempotency import Claim, IdempotencyStore, earlier_reply
from tasks.state.orders import Entry, OrderLines, Turn
from tasks.state.ratelimit import RateLimiter, Reservation
from tasks.state.store import LUA_NOW

_LIBRARIES = orders.lua_library(1) + idempotency.lua_library(4) + deliveries.lua_library(8)

# After the claim: reserve the job's rate slot (unless interval is ''), and when the slot is now,
# mark the send in flight and count it (counter: the sends counter's key). A slot that is not
# granted (a held instance, a paced recipient) drops the claim just taken: the job is deferred.
# Returns {claim}, {claim, slot} (the slot to wait for, or not granted) or {claim, slot, marked}.
_START = """
local function start(counter, wait_lease, interval, tolerance, recipient, hold_look,
                     owner, send_lease, sent_ttl, second, counter_ttl)
  local claimed = claim(owner, wait_lease)
  if claimed[1] ~= 0 or interval == '' then return {claimed} end
  local slot = reserve_slot(now, interval, tolerance, recipient, hold_look)
  if slot[1] ~= 1 then
    redis.call('DEL', idem_claim)
    return {claimed, slot}
  end
  if slot[2] > now then return {claimed, slot} end
  return {claimed, slot, mark_sent(owner, send_lease, sent_ttl, counter, second, counter_ttl)}
end
"""

# KEYS: the order's line, jobs, state; the key's reply, claim, sent; the instance's schedule,
# hold, the recipient's pacing; the instance's sends counter.
# ARGV: enter's seven arguments, then start's ten (after its counter): the wait lease ms,
# reserve_slot's four (after now), mark_sent's five (before its counter).
# Returns {entry} when the job must wait or settle, {entry, start's answer} at its turn.
_ENTER_AND_START = (
    orders.lua_library(1)
    + idempotency.lua_library(4)
    + ratelimit.lua_library(7)
    + _START
    + """
local entered = enter(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
if entered[1] ~= 0 then return {entered} end
return {entered, start(KEYS[10], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13],
                       ARGV[14], ARGV[15], ARGV[16], ARGV[17])}
"""
)

# The same without an order's line (ordering off). KEYS: the key's reply, claim, sent; the
# instance's schedule, hold, the recipient's pacing; the sends counter. ARGV: start's ten.
_START_ALONE = (
    LUA_NOW
    + idempotency.lua_library(1)
    + ratelimit.lua_library(4)
    + _START
    + """
return start(KEYS[7], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8],
             ARGV[9], ARGV[10])
"""
)

# KEYS: as above, then the order message's index (7) and the new message's delivery hash (8).
# ARGV: the owner, the reply JSON, its TTL s; delivered's five arguments (the fifth: the order
# TTL); the snapshot JSON ('' when the book has it) and the orderRequestId; link's five arguments.
# Returns {link's answer (the burial fields when the message's failure was reported first; else
# empty), the reply as stored when it is not the one given (idempotency's record), else ''}.
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


@dataclass(frozen=True, slots=True)
class Start:
    """What the round trip that claims a job's key did: the claim; the rate slot it reserved
    (None: none was asked for, or the key is not this execution's to send); and, when that slot
    was now, the send marked in flight (``sending``, as ``IdempotencyStore.before_send`` says it,
    counted ``at``): the request may leave at once."""

    claim: Claim
    reservation: Reservation | None = None
    sending: Claim | None = None
    at: float = 0.0
    #: ``time.monotonic()`` when the answer came: how old the reservation's ``now`` is (None:
    #: unknown, and the reservation is taken as fresh rather than as decades old).
    answered: float | None = None


class Turns:
    """The order lines, the idempotency store and the rate limiter of one instance, in single
    round trips."""

    def __init__(
        self,
        client: redis.Redis,
        lines: OrderLines,
        store: IdempotencyStore,
        limiter: RateLimiter,
    ) -> None:
        self.lines = lines
        self.store = store
        self.limiter = limiter
        self._enter_and_start = client.register_script(_ENTER_AND_START)
        self._start_alone = client.register_script(_START_ALONE)
        self._record_and_delivered = client.register_script(_RECORD_AND_DELIVERED)

    def enter_and_start(
        self, order: str, key: str, owner: str, enter_args: list[Any], phone: str | None
    ) -> tuple[Entry, Start | None]:
        """Enter the order's line (``OrderLines.enter_args``); at the job's turn, also claim
        its idempotency key and, unless ``phone`` is None (the job holds a slot already),
        reserve its rate slot, marking the send in flight when the slot is now."""
        keys, args, at = self._start_keys_and_args(key, owner, phone)
        answer = self._enter_and_start(
            keys=[*self.lines.keys(order), *keys], args=[*enter_args, *args]
        )
        entry = OrderLines.parse_entry(answer[0])
        if entry.turn is not Turn.GO:
            return entry, None
        return entry, self._parse_start(answer[1], at)

    def start(self, key: str, owner: str, phone: str | None) -> Start:
        """``enter_and_start`` without an order's line."""
        keys, args, at = self._start_keys_and_args(key, owner, phone)
        return self._parse_start(self._start_alone(keys=keys, args=args), at)

    def _start_keys_and_args(
        self, key: str, owner: str, phone: str | None
    ) -> tuple[list[str], list[Any], float]:
        at = time.time()
        counter, marking = self.store.before_send_args(owner, at)
        reserving: list[Any] = ["", 0, 0, 0] if phone is None else self.limiter.reserve_args(phone)
        keys = [*self.store.keys(key), *self.limiter.reserve_keys(phone), counter]
        return keys, [self.store.wait_lease_ms, *reserving, *marking], at

    @staticmethod
    def _parse_start(answer: list[Any], at: float) -> Start:
        claim = IdempotencyStore.parse_claim(answer[0])
        reservation = RateLimiter.parse_reservation(answer[1]) if len(answer) > 1 else None
        sending = IdempotencyStore.parse_claim(answer[2]) if len(answer) > 2 else None
        return Start(claim, reservation, sending, at, time.monotonic())

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
