"""One round trip where several would do: an order's turn with the job's claim, its rate slot
and, when the slot is now, the send marked in flight; and the job's reply with its order's new
state, its snapshot (if the book lacks it) and its delivery record.

Every job would otherwise pay several more Redis round trips; composing the stores' Lua
libraries (orders.lua, idempotency.lua, ratelimit.lua, deliveries.lua) in the scripts of
turns.lua keeps their cost to the work done in Redis. Each library's keys, and each function's
arguments (prefixed by the function: ``enter_job``, ``mark_owner``...), are bound by name: the
builder (tasks/state/scripts.py) assigns their positions, and a call that names one wrong, or
hands a function the wrong number of values, fails before Redis runs anything. (A redis-py
pipeline with scripts would not do: it checks ``SCRIPT EXISTS`` in a round trip of its own.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from tasks.state import deliveries, history, idempotency, orders, ratelimit
from tasks.state.idempotency import Claim, IdempotencyStore, earlier_reply
from tasks.state.orders import Entry, OrderLines, Turn
from tasks.state.ratelimit import RateLimiter, Reservation
from tasks.state.scripts import Library, Script

#: ``start`` (turns.lua): the claim, then the rate slot and, when it is now, the send's mark.
START = Library.of("tasks.state", "turns.lua")
_START_KEYS = ("counter",)  # the instance's sends counter (tasks/state/sends.py)
#: start's arguments after its counter: the wait lease ms, reserve_slot's four (after now), and
#: mark_sent's five (all but its counter), each by its function's own parameter names.
_START_ARGS = (
    "wait_lease",
    *ratelimit.LIBRARY.params("reserve_slot", prefix="reserve_", without=["now"]),
    *idempotency.LIBRARY.params("mark_sent", prefix="mark_", without=["counter"]),
)

_ENTER_AND_START = Script.of(
    "tasks.state",
    "turns.lua",
    "enter_and_start",
    keys=_START_KEYS,
    args=(
        *orders.LIBRARY.params("enter", prefix="enter_"),
        "supersede_as",
        "supersede_may",
        *_START_ARGS,
    ),
    libraries=[orders.LIBRARY, idempotency.LIBRARY, ratelimit.LIBRARY, START],
    now=True,
)
_START_ALONE = Script.of(
    "tasks.state",
    "turns.lua",
    "start_alone",
    keys=_START_KEYS,
    args=_START_ARGS,
    libraries=[idempotency.LIBRARY, ratelimit.LIBRARY, START],
    now=True,
)
_RECORD_AND_DELIVERED = Script.of(
    "tasks.state",
    "turns.lua",
    "record_and_delivered",
    keys=("message_index",),
    args=(
        *idempotency.LIBRARY.params("record", prefix="record_"),
        *orders.LIBRARY.params("delivered", prefix="delivered_"),
        "snapshot",
        "order_request_id",
        "order_message",
        *deliveries.LIBRARY.params("link", prefix="link_"),
        *history.LIBRARY.params("tell", prefix="tell_"),
    ),
    libraries=[orders.LIBRARY, idempotency.LIBRARY, deliveries.LIBRARY, history.LIBRARY],
    now=True,
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


@dataclass(frozen=True, slots=True)
class Supersede:
    """A job's part in superseding (orders.lua ``newer_of``): its update ``field`` and
    ``state`` (wire names: ``orderStatus``, ``shipped``) with ``forward``, the states of that
    field that do not move back from it, noted so that it can supersede older ones; whether it
    ``may`` be superseded itself; and whether it carries a ``message`` text (said when it gives
    way: that text is not sent)."""

    field: str = ""
    state: str = ""
    forward: tuple[str, ...] = ()
    may: bool = False
    message: bool = False

    @property
    def noted(self) -> str:
        if not self.field:
            return ""
        return f"{self.field}:{self.state}:," + ",".join(self.forward) + ","


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
        self._enter_and_start = _ENTER_AND_START.register(client)
        self._start_alone = _START_ALONE.register(client)
        self._record_and_delivered = _RECORD_AND_DELIVERED.register(client)

    def enter_and_start(
        self,
        order: str,
        key: str,
        owner: str,
        enter_args: list[Any],
        phone: str | None,
        supersede: Supersede | None = None,
    ) -> tuple[Entry, Start | None]:
        """Enter the order's line (``OrderLines.enter_args``), noting the job's update and
        giving way to a newer one when ``supersede`` says so; at the job's turn, also claim
        its idempotency key and, unless ``phone`` is None (the job holds a slot already),
        reserve its rate slot, marking the send in flight when the slot is now."""
        named, at = self._start_named(key, owner, phone)
        supersede = supersede or Supersede()
        answer = self._enter_and_start(
            **orders.LIBRARY.bind_keys(self.lines.keys(order)),
            **orders.LIBRARY.bind("enter", enter_args, prefix="enter_"),
            supersede_as=supersede.noted,
            supersede_may="1" if supersede.may else "0",
            **named,
        )
        entry = OrderLines.parse_entry(answer[0])
        if entry.turn is not Turn.GO:
            return entry, None
        return entry, self._parse_start(answer[1], at)

    def start(self, key: str, owner: str, phone: str | None) -> Start:
        """``enter_and_start`` without an order's line."""
        named, at = self._start_named(key, owner, phone)
        return self._parse_start(self._start_alone(**named), at)

    def _start_named(self, key: str, owner: str, phone: str | None) -> tuple[dict[str, Any], float]:
        """``start``'s keys (less the order's) and arguments by name, and the time it counts
        the send at."""
        at = time.time()
        counter, marking = self.store.before_send_args(owner, at)
        reserving: list[Any] = ["", 0, 0, 0] if phone is None else self.limiter.reserve_args(phone)
        named = {
            **idempotency.LIBRARY.bind_keys(self.store.keys(key)),
            **ratelimit.LIBRARY.bind_keys(self.limiter.reserve_keys(phone)),
            "counter": counter,
            "wait_lease": self.store.wait_lease_ms,
            **ratelimit.LIBRARY.bind("reserve_slot", reserving, prefix="reserve_", without=["now"]),
            **idempotency.LIBRARY.bind("mark_sent", marking, prefix="mark_", without=["counter"]),
        }
        return named, at

    @staticmethod
    def _parse_start(answer: list[Any], at: float) -> Start:
        claim = IdempotencyStore.parse_claim(answer[0])
        reservation = RateLimiter.parse_reservation(answer[1]) if len(answer) > 1 else None
        sending = IdempotencyStore.parse_claim(answer[2]) if len(answer) > 2 else None
        return Start(claim, reservation, sending, at, time.monotonic())

    def record_and_deliver(
        self,
        order: str | None,
        key: str,
        owner: str,
        reply_json: str,
        delivered_args: list[Any],
        *,
        snapshot: tuple[str, str] | None,
        delivery: tuple[str, list[Any]],
        order_message: str | None = None,
        telling: history.Telling,
    ) -> Any:
        """Record the reply, the order's new state (``OrderLines.delivered_args``; none when
        ``order`` is None), its snapshot (``(message index key, JSON)``, unless the book has
        it) or, for an order message, the link from the order's key to its ``order_message``
        id, the delivery record (``(key, DeliveryBook.link_args)``) and the job's history
        steps (tasks/state/history.py) at once; returns
        ``(link's answer or None, the reply another execution recorded first or None)``."""
        message_key, snapshot_json = snapshot or ("", "")
        delivery_key, link_args = delivery
        order_keys = self.lines.keys(order) if order is not None else ["", "", ""]
        linked, earlier = self._record_and_delivered(
            **orders.LIBRARY.bind_keys(order_keys),
            **idempotency.LIBRARY.bind_keys(self.store.keys(key)),
            message_index=message_key,
            **history.LIBRARY.bind_keys(telling.keys()),
            delivery=delivery_key,
            **idempotency.LIBRARY.bind(
                "record", [owner, reply_json, self.store.ttl], prefix="record_"
            ),
            **orders.LIBRARY.bind("delivered", delivered_args, prefix="delivered_"),
            snapshot=snapshot_json,
            order_request_id=order or "",
            order_message=order_message or "",
            **deliveries.LIBRARY.bind("link", link_args, prefix="link_"),
            **history.LIBRARY.bind("tell", telling.args(), prefix="tell_"),
        )
        return (linked or None), earlier_reply(earlier)
