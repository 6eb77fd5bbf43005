"""One send rate per Z-API instance, shared by every worker process, kept in Redis.

Celery's own ``rate_limit`` counts per worker process: four workers at 10/s send 40/s. Here every
send of every worker reserves a slot from one GCRA (generic cell rate algorithm) schedule kept in
Redis under ``zapi-queue:rate:{instance}``:

* A Lua script reserves the next slot atomically, using Redis' clock (``TIME``), so containers
  with skewed clocks agree; slots are ``1 / rate`` apart, with up to ``burst`` sends at once.
* A job whose slot is near (``ZAPI_RATE_MAX_WAIT``) sleeps until it and sends; a job whose slot is
  further away is re-scheduled with a countdown to its slot and carries the slot with it, so it
  keeps its place in line and holds no worker thread meanwhile.
* ``penalize`` pushes the whole schedule back: a 429 (or any Retry-After) slows every worker.
  Jobs already holding a slot inside the pause see it when they ``check`` the slot before
  sending, and take a new one. Consecutive 429s pause for longer and longer (ZAPI_RETRY_BACKOFF,
  doubled at each one, up to ZAPI_RETRY_BACKOFF_MAX), whether or not Z-API says how long.
* Optional per-recipient pacing keeps ``ZAPI_RECIPIENT_INTERVAL`` seconds between two sends to
  the same phone (WhatsApp limits bursts to one recipient).

If Redis restarts and loses the key, the schedule starts afresh: at worst one burst is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import redis

from config import get_settings
from config.instances import Instance
from tasks.instances import default_instance
from tasks.per_process import PerInstance
from tasks.state.keys import HOLD_PREFIX, PACE_PREFIX, PAUSE_PREFIX, RATE_PREFIX, STRIKES_PREFIX
from tasks.state.scripts import Library, Script
from tasks.state.sends import count_refusal
from tasks.state.store import get_redis

#: The Lua function ``reserve_slot`` (ratelimit.lua), bound to the instance's schedule, its hold
#: and the recipient's next send by name, for scripts that reserve a slot in the same round trip
#: as other work (tasks/state/turns.py). It takes Redis' clock (``now``, µs) from its caller, so
#: a composed script reads ``TIME`` once, first.
LIBRARY = Library.of(
    "tasks.state", "ratelimit.lua", keys=("rate_schedule", "rate_hold", "rate_recipient")
)
_LUA = ("tasks.state", "ratelimit.lua")
SCRIPTS = {
    "reserve": Script.of(
        *_LUA,
        "reserve",
        args=LIBRARY.params("reserve_slot", without=["now"]),
        libraries=[LIBRARY],
        now=True,
    ),
    "penalize": Script.of(
        *_LUA,
        "penalize",
        keys=("rate_schedule", "pause_key", "strikes_key"),
        args=("asked_us", "escalate", "base_us", "cap_us", "tolerance"),
        now=True,
    ),
    "pace": Script.of(*_LUA, "pace", keys=("recipient",), args=("interval",), now=True),
    "check": Script.of(*_LUA, "check", keys=("pause_key",)),
}


@dataclass(frozen=True, slots=True)
class Reservation:
    """The outcome of asking for a slot, in Redis' clock (microseconds)."""

    granted: bool
    slot_us: int
    now_us: int
    held: bool = False
    """Not granted: the instance is held (its phone disconnected); look again after ``wait``."""

    @property
    def wait(self) -> float:
        """Seconds from now until the slot (or, if not granted, until the recipient is free, or
        until the hold is looked at again)."""
        return max(0.0, (self.slot_us - self.now_us) / 1_000_000)


@dataclass(frozen=True, slots=True)
class SlotCheck:
    """A reserved slot seen again later: still usable, too late, or cancelled by a pause."""

    slot_us: int
    now_us: int
    paused_until_us: int

    @property
    def cancelled(self) -> bool:
        """Z-API asked for a pause after this slot was reserved and the slot falls inside it."""
        return self.slot_us < self.paused_until_us

    @property
    def wait(self) -> float:
        return (self.slot_us - self.now_us) / 1_000_000


class RateLimiter:
    """The shared schedule of one Z-API instance."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        instance_id: str,
        rate: float,
        burst: int = 1,
        recipient_interval: float = 0.0,
        penalty_base: float = 1.0,
        penalty_cap: float = 300.0,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._redis = client
        self._instance_id = instance_id
        self.instance_key = f"{RATE_PREFIX}{instance_id}"
        self.pause_key = f"{PAUSE_PREFIX}{instance_id}"
        self.strikes_key = f"{STRIKES_PREFIX}{instance_id}"
        self.hold_key = hold_key(instance_id)
        self._recipient_prefix = f"{PACE_PREFIX}{instance_id}:"
        self.interval_us = max(1, round(1_000_000 / rate))
        self.tolerance_us = (burst - 1) * self.interval_us
        self.recipient_interval_us = round(recipient_interval * 1_000_000)
        self.penalty_base_us = max(1, round(penalty_base * 1_000_000))
        self.penalty_cap_us = max(self.penalty_base_us, round(penalty_cap * 1_000_000))
        self._reserve = SCRIPTS["reserve"].register(client)
        self._penalize = SCRIPTS["penalize"].register(client)
        self._check = SCRIPTS["check"].register(client)
        self._pace = SCRIPTS["pace"].register(client)

    @property
    def late_tolerance(self) -> float:
        """How late (seconds) a send may start after its slot: what the burst allowance absorbs.

        A later send could bunch with the next slots' sends, so the job takes a new slot instead.
        Half the burst allowance is left for the network's own jitter.
        """
        return max((self.tolerance_us + self.interval_us) / 2, 2_000) / 1_000_000

    def reserve(self, phone: str | None = None) -> Reservation:
        """Reserve the instance's next slot (or learn that ``phone`` must wait). One round trip."""
        keys = LIBRARY.bind_keys(self.reserve_keys(phone))
        args = LIBRARY.bind("reserve_slot", self.reserve_args(phone), without=["now"])
        return self.parse_reservation(self._reserve(**keys, **args))

    def reserve_keys(self, phone: str | None) -> list[str]:
        """The keys of the Lua ``reserve_slot`` function (``LIBRARY.keys``' order)."""
        return [self.instance_key, self.hold_key, self._recipient_prefix + (phone or "")]

    def reserve_args(self, phone: str | None) -> list[int]:
        """The arguments of ``reserve_slot`` after ``now``: ``phone`` None (or pacing off)
        skips the recipient's pacing."""
        paced = self.recipient_interval_us if phone else 0
        return [self.interval_us, self.tolerance_us, paced, HOLD_LOOK_US]

    @staticmethod
    def parse_reservation(answer: list[Any]) -> Reservation:
        """A reservation from ``reserve_slot``'s answer."""
        granted, slot, now = (int(value) for value in answer[:3])
        return Reservation(granted == 1, slot, now, held=granted == 2)

    def pace(self, phone: str) -> None:
        """Count the recipient's interval from now, after a send (a no-op when pacing is off).

        The reservation already spaced the slots; this covers a send that left late.
        """
        if self.recipient_interval_us > 0:
            self._pace(
                recipient=self._recipient_prefix + phone, interval=self.recipient_interval_us
            )

    def check(self, slot_us: int) -> SlotCheck:
        """Redis' clock now, and whether a pause started since ``slot_us`` was reserved."""
        now, paused_until = self._check(pause_key=self.pause_key)
        return SlotCheck(slot_us=slot_us, now_us=int(now), paused_until_us=int(paused_until))

    def paused_for(self) -> float:
        """Seconds until sends resume after a pause Z-API asked for (0: not paused)."""
        check = self.check(0)
        return max(0.0, (check.paused_until_us - check.now_us) / 1_000_000)

    def penalize(self, seconds: float | None, *, rate_limited: bool) -> float:
        """Start no new slot for a while: Z-API asked this whole instance to slow down.

        ``seconds`` is what Z-API asked for (Retry-After, already capped), if anything. A 429
        (``rate_limited``) pauses for at least the growing penalty: ``penalty_base`` doubled at
        each 429 that follows a pause, up to ``penalty_cap``. Returns the seconds until sends
        resume, for the caller to re-schedule its job.
        """
        pause_us = max(0, math.ceil((seconds or 0.0) * 1_000_000))
        resume, now = self._penalize(
            rate_schedule=self.instance_key,
            pause_key=self.pause_key,
            strikes_key=self.strikes_key,
            asked_us=pause_us,
            escalate=1 if rate_limited else 0,
            base_us=self.penalty_base_us,
            cap_us=self.penalty_cap_us,
            tolerance=self.tolerance_us,
        )
        return max(0.0, (int(resume) - int(now)) / 1_000_000)

    def count_429(self, at: float) -> None:
        """Count a 429 Z-API answered at ``at``, for the console's chart of the instance's last
        hour (tasks/state/sends.py keeps it beside the sends)."""
        count_refusal(self._redis, self._instance_id, at)


def _limiter_for(instance: Instance) -> RateLimiter:
    settings = get_settings()
    return RateLimiter(
        get_redis(),
        instance_id=instance.instance_id,
        rate=instance.rate_limit,
        burst=instance.rate_burst,
        recipient_interval=settings.zapi_recipient_interval,
        penalty_base=settings.zapi_retry_backoff,
        penalty_cap=settings.zapi_retry_backoff_max,
    )


_limiters = PerInstance(_limiter_for)

#: A held instance's jobs look again this often (µs): soon after its phone reconnects.
HOLD_LOOK_US = 10_000_000


def hold_key(instance_id: str) -> str:
    """``zapi-queue:hold:{instance}``: set while Z-API says the instance's phone is
    disconnected, for ``ZAPI_DISCONNECTED_HOLD`` seconds at most (a lost ConnectedCallback does
    not hold the sends for ever)."""
    return f"{HOLD_PREFIX}{instance_id}"


def hold_sends(client: redis.Redis, instance_id: str, seconds: int) -> None:
    """Hold the instance's new sends (its jobs wait without using attempts)."""
    if seconds > 0:
        client.set(hold_key(instance_id), "disconnected", ex=seconds)


def resume_sends(client: redis.Redis, instance_id: str) -> None:
    client.delete(hold_key(instance_id))


def held_for(client: redis.Redis, instance_id: str) -> float:
    """Seconds the instance's sends stay held (0: not held)."""
    return max(0.0, int(client.pttl(hold_key(instance_id))) / 1000)


def paused_for(client: redis.Redis, instance: Instance) -> float:
    """Seconds until ``instance``'s sends resume after a pause Z-API asked for (0: none), read
    with ``client`` (the CLI's and the exporter's, not the worker's)."""
    limiter = RateLimiter(client, instance_id=instance.instance_id, rate=instance.rate_limit)
    return limiter.paused_for()


def get_limiter(instance: Instance | None = None) -> RateLimiter:
    """The limiter of ``instance`` (default: ``default``): its own shared schedule and pause."""
    return _limiters.get(instance or default_instance())
