"""Waiting for a rate slot without holding a worker thread for long.

:func:`wait_for_slot` returns at the job's slot time, or raises :class:`Deferral` telling the
caller to re-schedule the job (with the slot it reserved, so it keeps its place in line).
"""

from __future__ import annotations

import time

from tasks.state.ratelimit import RateLimiter, Reservation, SlotCheck

#: Slot look-ups in one execution before the job is re-scheduled instead (contention).
MAX_SLOT_ROUNDS = 4


class Deferral(Exception):  # noqa: N818 - an instruction, not an error
    """Re-schedule the job in ``countdown`` seconds, carrying ``slot_us`` if it holds one."""

    def __init__(
        self, countdown: float, slot_us: int | None, reason: str, *, held: bool = False
    ) -> None:
        super().__init__(f"waiting {countdown:.2f}s for a send slot ({reason})")
        self.countdown = max(0.0, countdown)
        self.slot_us = slot_us
        self.reason = reason
        #: The instance is held (its phone disconnected), not merely busy.
        self.held = held


def wait_for_slot(
    limiter: RateLimiter,
    phone: str,
    held_slot_us: int | None,
    max_wait: float,
    reserved: Reservation | None = None,
    reserved_at: float | None = None,
) -> int:
    """Sleep until this job's slot and return it, or raise Deferral if the slot is far.

    The slot is the one the job holds (``held_slot_us``, from an earlier execution), the one
    ``reserved`` for it in the round trip that claimed its key (whose answer came at
    ``reserved_at``, ``time.monotonic()``: the time since is not slept again), or a new one.
    A slot is given up for a new one when Z-API paused the instance after it was reserved, or
    when the job arrives too late for it (a late send would bunch with the next ones).
    """
    check = limiter.check(held_slot_us) if held_slot_us is not None else None
    # A job that was granted a slot before has passed the recipient's pacing, and marked it:
    # taking a new slot (after a pause or a late wake-up) must not trip over its own mark.
    paced = held_slot_us is not None
    if reserved is not None:
        check, paced = _granted(reserved), True
        if reserved_at is not None:
            elapsed_us = round(max(0.0, time.monotonic() - reserved_at) * 1_000_000)
            check = SlotCheck(check.slot_us, check.now_us + elapsed_us, paused_until_us=0)
    for _ in range(MAX_SLOT_ROUNDS):
        if check is None or check.cancelled or check.wait < -limiter.late_tolerance:
            check, paced = _granted(limiter.reserve(None if paced else phone)), True
        if check.wait <= 0:
            return check.slot_us
        if check.wait > max_wait:
            # Wake a little early; the remainder is slept, so the slot is met precisely.
            raise Deferral(check.wait - max_wait / 2, check.slot_us, "rate limit")
        time.sleep(check.wait)
        check = limiter.check(check.slot_us)
    raise Deferral(limiter.late_tolerance, None, "rate limit contention")


def _granted(reservation: Reservation) -> SlotCheck:
    """The reserved slot, to check; Deferral when none was granted."""
    if reservation.held:
        raise Deferral(
            reservation.wait, None, "instance disconnected (Z-API's callback)", held=True
        )
    if not reservation.granted:
        raise Deferral(reservation.wait, None, "recipient pacing")
    return SlotCheck(reservation.slot_us, reservation.now_us, paused_until_us=0)
