"""One execution's place in its order's line: wait for the earlier updates, never go backward.

:mod:`tasks.execution` asks :meth:`OrderLine.take_turn` (which also claims the job's
idempotency key and its rate slot, in the same round trip) before it sends; a job that is
not at the head of its order's line is re-scheduled (a returned :class:`Wait`, shown as RETRY:
"waiting for job X of order Y") and holds no thread meanwhile; one that would move its order
backward fails with :class:`StaleUpdateError`; one a newer update of its order and field stands
behind, with superseding on (``ZAPI_SUPERSEDE``, the ``supersede`` kwarg; never for ``force``),
fails with :class:`SupersededError` naming it. Whatever way the job ends, it leaves the line,
so the next update of its order may go.

A waiting job sleeps until its head is due back (the head records it when it is re-scheduled),
else polls with a growing interval. The header ``zapi-order-wait`` remembers which head it waits
for since when: after ``Settings.longest_absence`` for a head nobody has seen running, the head
is presumed lost and skipped (tasks/state/orders.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from config import Settings
from tasks.contract.errors import StaleUpdateError, SupersededError
from tasks.contract.ordering import Delivered, stale_reason
from tasks.contract.schemas import OrderUpdate
from tasks.contract.send_order import SendOrder
from tasks.state.idempotency import Claim, ClaimState
from tasks.state.orders import OrderLines, Turn
from tasks.state.turns import Start, Supersede, Turns

WAIT_HEADER = "zapi-order-wait"
#: Polling a head whose return is unknown: first interval, growth, longest (seconds).
POLL = (0.2, 1.5, 1.0)
#: Sleeping for a head due back: never less than this (seconds).
MIN_WAIT = 0.05
#: Settling is short (tasks/state/orders.py): slept in the thread, at most this often.
MAX_SETTLES = 3


@dataclass(frozen=True, slots=True)
class Wait:
    """Re-schedule the job in ``countdown`` seconds, with ``headers`` added: its turn has not
    come yet."""

    countdown: float
    reason: str
    headers: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Turned:
    """The job's turn came: its idempotency claim with what came with it (its rate slot, the
    send marked in flight), the update to send (None when the claim says it was delivered
    already) and whether the order book has the order's snapshot."""

    start: Start
    update: OrderUpdate | SendOrder | None
    has_snapshot: bool

    @property
    def claim(self) -> Claim:
        return self.start.claim


@dataclass
class OrderLine:
    """The line of ``order`` in ``lines``, seen by job ``job_id`` with its message ``headers``."""

    lines: OrderLines
    order: str
    job_id: str
    headers: dict[str, Any]
    settings: Settings

    @classmethod
    def of(
        cls,
        order: str | None,
        job_id: str,
        headers: dict[str, Any],
        settings: Settings,
        lines: OrderLines,
    ) -> OrderLine | None:
        """The job's line in ``order`` (an ``orderRequestId``) among its instance's ``lines``,
        or None when ordering is off or the order is not known (yet)."""
        if not settings.zapi_ordering or order is None:
            return None
        return cls(lines, order, job_id, headers, settings)

    def take_turn(
        self,
        complete: Callable[[Delivered], OrderUpdate | SendOrder],
        sequence: int | None,
        *,
        force: bool,
        turns: Turns,
        key: str,
        owner: str,
        phone: str | None,
        supersede: Supersede | None = None,
    ) -> Turned | Wait:
        """At the job's turn, its idempotency claim and rate slot (taken in the same round trip,
        the slot for ``phone`` unless it is None: see ``Turns.enter_and_start``) and the
        update ``complete`` builds from what the order shows then (a short update takes the
        other status from it); a :class:`Wait` before it; ``StaleUpdateError`` (raised: the
        job ends) when the update would move its order backward, ``SupersededError`` when a
        newer one of its field goes instead (``supersede``: tasks/state/turns.py)."""
        for _ in range(MAX_SETTLES):
            args = self.lines.enter_args(
                self.job_id,
                sequence=sequence,
                settles=sequence is not None,
                waited_long=self._waited_long(),
            )
            entry, start = turns.enter_and_start(self.order, key, owner, args, phone, supersede)
            if entry.turn is not Turn.SETTLE:
                break
            time.sleep(entry.wait or 0)
        if entry.turn is Turn.SUPERSEDED:
            raise self._superseded(entry.head or "?", entry.newer_state or "?", supersede)
        if entry.turn is Turn.WAIT:
            return self._wait_for(entry.head or "?", entry.wait)
        if entry.turn is Turn.SETTLE or start is None:
            return Wait(entry.wait or MIN_WAIT, "settling in its order's line", {})
        if start.claim.state is ClaimState.DELIVERED:
            return Turned(start, None, entry.has_snapshot)  # a repeat: it leaves the line
        update = complete(entry.delivered)
        if isinstance(update, SendOrder):
            return Turned(start, update, entry.has_snapshot)  # the order message: no status
        reason = stale_reason(entry.delivered, update.order_status, update.payment_status, sequence)
        if reason is not None and not force:
            if start.sending is not None:
                turns.store.withdraw(key, owner, start.at)  # its slot is spent, unused
            elif start.claim.state is ClaimState.CLAIMED:
                turns.store.release(key, owner)
            self.lines.leave(self.order, self.job_id)
            raise StaleUpdateError(f"order {self.order}: {reason}")
        return Turned(start, update, entry.has_snapshot)

    def _superseded(self, newer: str, state: str, supersede: Supersede | None) -> SupersededError:
        field = supersede.field if supersede is not None else "?"
        lost = supersede is not None and supersede.message
        text = "; its message text was not sent either (the newer job's own is)" if lost else ""
        return SupersededError(
            f"order {self.order}: superseded by job {newer} ({field} {state}), a newer update "
            f"of the same order: not sent{text}",
            newer_job=newer,
            newer_state=state,
        )

    def behind(self, sequence: int | None) -> Wait | None:
        """A :class:`Wait` while another job of the order is ahead of this one (a short update
        whose order is not in the book yet waits for the order message before it, however long
        that takes), else None. Takes the job's place in line if it has none; claims nothing."""
        entry = self.lines.enter(
            self.order,
            self.job_id,
            sequence=sequence,
            settles=sequence is not None,
            waited_long=self._waited_long(),
        )
        if entry.turn is Turn.WAIT:
            return self._wait_for(entry.head or "?", entry.wait)
        return None

    def _marker(self) -> tuple[str, float, int] | None:
        """The ``zapi-order-wait`` header: (head, waiting since, polls), or None when absent or
        not of that shape (a header is input too)."""
        marker = self.headers.get(WAIT_HEADER)
        if not isinstance(marker, list) or len(marker) != 3:
            return None
        head, since, polls = marker
        numbers = all(type(n) in (int, float) and n == n and abs(n) < 2**53 for n in (since, polls))
        if not isinstance(head, str) or not numbers:
            return None
        return head, float(since), max(0, min(int(polls), 64))

    def _waited_long(self) -> bool:
        marker = self._marker()
        return marker is not None and time.time() - marker[1] > self.settings.longest_absence

    def _wait_for(self, head: str, head_due_in: float | None) -> Wait:
        marker = self._marker()
        since, polls = time.time(), 0
        if marker is not None and marker[0] == head:
            _, since, polls = marker
        first, growth, longest = POLL
        if head_due_in is not None and head_due_in > 0:
            countdown = max(MIN_WAIT, head_due_in)  # it comes back then, not before
        else:
            countdown = min(longest, first * growth**polls)  # running, or overdue: poll
        countdown = min(countdown, self.settings.max_countdown)
        reason = f"waiting for job {head} of order {self.order}"
        return Wait(countdown, reason, {WAIT_HEADER: [head, since, polls + 1]})

    def leave_quietly(self) -> None:
        """The job ended without a delivery. If Redis fails, the absence rule frees the line."""
        with contextlib.suppress(redis.RedisError):
            self.lines.leave(self.order, self.job_id)

    def park_quietly(self, seconds: float) -> None:
        """The job is re-scheduled ``seconds`` ahead: its waiters need not poll meanwhile."""
        with contextlib.suppress(redis.RedisError):
            self.lines.park(self.order, self.job_id, seconds)
