"""Orders in Redis: each order's line of pending updates, what it last delivered, its snapshot.

Three keys per order, prefix ``zapi-queue:order:{instance}:{orderRequestId}``, each expiring
``ZAPI_ORDER_TTL`` (90 days) after the order's last update:

* ``…:line``: sorted set, the order's pending updates (job ids) by position: the producer's
  ``sequence``, else the time (µs) a worker first saw the job. Only the head may send; a job
  leaves the line when it ends (delivered, refused, stale, given up).
* ``…:jobs``: hash, per job in line: when it was last seen running (µs, field ``<job>``; for
  a job fetched with an ``eta``, when it is due, so a countdown of any length keeps its place),
  when it comes back if it is re-scheduled or due later (``<job>:next``), for a sequenced
  job a worker registered, when (``<job>:settle``), and, once it ran, its update
  (``<job>:as``, ``orderStatus:shipped``: what superseding compares).
* ``…:state``: hash, what the order last showed the customer: ``status``, ``payment``,
  ``seq``, ``job``, ``at``; and the order's ``snapshot`` (tasks/state/book.py).

A job is registered in its line as early as possible: by the producer before it publishes
(exact order), else by the transport as a worker fetches it (worker/transport.py uses the same
layout), else when it starts. A head that has not been seen for longer than any legitimate
absence (a retry countdown, a crash recovery) is skipped by a job that waited as long, so a
lost job cannot block its order for ever.

Superseding (``ZAPI_SUPERSEDE``, tasks/order_line.py): a job that enters its line while a newer
update of the same order and field stands behind it, one that ran (so it was checked) and was
seen lately, leaves the line without sending; the newer one's turn comes in its own place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import redis

from config import get_settings
from config.instances import Instance
from tasks.contract.errors import UnknownInstanceError
from tasks.contract.ordering import Delivered, arrival_of, order_keys, register_in_line
from tasks.instances import default_instance, instance_named
from tasks.per_process import PerInstance
from tasks.state.scripts import Library, Script
from tasks.state.store import get_redis, text

#: The Lua functions of an order's line (orders.lua), bound to its keys by name; they read Redis'
#: clock, so a script composing them starts with it (``now=True``; tasks/state/turns.py).
LIBRARY = Library.of("tasks.state", "orders.lua", keys=("line", "jobs", "state"))


def _script(name: str, args: tuple[str, ...]) -> Script:
    return Script.of("tasks.state", "orders.lua", name, args=args, libraries=[LIBRARY], now=True)


SCRIPTS = {
    "enter": _script("enter", LIBRARY.params("enter")),
    "leave": _script("leave", ("job",)),
    "delivered": _script("delivered", LIBRARY.params("delivered")),
    # The job comes back in ``seconds``: if it is the head, its waiters wait as long.
    "park": _script("park", ("job", "seconds")),
}


class Turn(Enum):
    GO = 0
    WAIT = 1
    SETTLE = 2
    #: A newer update of the same order and field is in line: this one is not sent.
    SUPERSEDED = 3


@dataclass(frozen=True, slots=True)
class Entry:
    """The outcome of entering an order's line: go (with what the order shows), wait for the
    head (and, if known, when it runs again), settle for ``wait`` seconds, or give way to the
    newer update ``head`` carrying ``newer_state`` (superseded)."""

    turn: Turn
    delivered: Delivered = field(default_factory=Delivered)
    head: str | None = None
    newer_state: str | None = None
    wait: float | None = None
    #: At the job's turn: whether the order book has the order's snapshot (tasks/state/book.py).
    has_snapshot: bool = False


class OrderLines:
    """The lines and states of the orders of one Z-API instance."""

    def __init__(
        self, client: redis.Redis, *, instance_id: str, ttl: int, absence: float, settle: float
    ) -> None:
        self._instance_id = instance_id
        self.ttl = ttl
        self.absence_us = round(absence * 1_000_000)
        self.settle_us = round(settle * 1_000_000)
        self._scripts = {name: script.register(client) for name, script in SCRIPTS.items()}

    def keys(self, order: str) -> list[str]:
        """The line, jobs and state keys of ``order`` (an ``orderRequestId``)."""
        return list(order_keys(self._instance_id, order))

    def _run(self, script: str, order: str, **args: Any) -> Any:
        return self._scripts[script](**LIBRARY.bind_keys(self.keys(order)), **args)

    def enter(
        self,
        order: str,
        job: str,
        *,
        sequence: int | None,
        settles: bool,
        waited_long: bool,
    ) -> Entry:
        """Take the job's place in line (if new), and learn whether it may send now."""
        args = self.enter_args(job, sequence=sequence, settles=settles, waited_long=waited_long)
        return self.parse_entry(self._run("enter", order, **LIBRARY.bind("enter", args)))

    def enter_args(
        self, job: str, *, sequence: int | None, settles: bool, waited_long: bool
    ) -> list[Any]:
        """The arguments of the Lua ``enter`` function, in order."""
        return [
            job,
            "" if sequence is None else sequence,
            "1" if settles else "0",
            self.ttl,
            "1" if waited_long else "0",
            self.absence_us,
            self.settle_us,
        ]

    @staticmethod
    def parse_entry(answer: list[Any]) -> Entry:
        """An entry from the Lua ``enter`` function's answer."""
        turn = Turn(int(answer[0]))
        if turn is Turn.WAIT:
            head, next_run = text(answer[1]), text(answer[2])
            wait = int(next_run) / 1e6 - time.time() if next_run else None
            return Entry(turn, head=head, wait=wait)
        if turn is Turn.SETTLE:
            return Entry(turn, wait=int(answer[1]) / 1e6)
        if turn is Turn.SUPERSEDED:
            return Entry(turn, head=text(answer[1]), newer_state=text(answer[2]))
        status, payment, seq, job_id, at = (text(v) for v in answer[1:6])
        delivered = Delivered(
            order_status=status or None,
            payment_status=payment or None,
            sequence=int(seq) if seq else None,
            job_id=job_id or None,
            at=float(at) if at else None,
        )
        has_snapshot = len(answer) > 6 and int(answer[6]) == 1
        return Entry(turn, delivered=delivered, has_snapshot=has_snapshot)

    def leave(self, order: str, job: str) -> None:
        """The job ended without a delivery: the next in line may go."""
        self._run("leave", order, job=job)

    def delivered(
        self, order: str, job: str, *, status: str, payment: str, sequence: int | None
    ) -> None:
        """The job was delivered: the order shows its pair now, and the next in line may go."""
        args = self.delivered_args(job, status, payment, sequence)
        self._run("delivered", order, **LIBRARY.bind("delivered", args))

    def delivered_args(
        self, job: str, status: str, payment: str, sequence: int | None
    ) -> list[Any]:
        """The arguments of the Lua ``delivered`` function, in order."""
        return [job, status, payment, "" if sequence is None else sequence, self.ttl]

    def park(self, order: str, job: str, seconds: float) -> None:
        """The job comes back in ``seconds``: if it is the head, its waiters wait as long."""
        self._run("park", order, job=job, seconds=seconds)

    def register(self, pipe: Any, order: str, job: str, position: int) -> None:
        """Queue a producer's registration on ``pipe`` (before the publish, in the same
        pipeline): the job has its place in line before any worker can see a later one."""
        register_in_line(pipe, order_keys(self._instance_id, order), job, position, self.ttl)


#: How long a sequenced job a worker registered waits before it goes, so that an earlier job of
#: its order fetched by another worker at the same moment takes its place first. Jobs from
#: ``tasks.contract.producer`` are registered before they are published and do not wait.
SETTLE_SECONDS = 0.1


def _order_lines_for(instance: Instance) -> OrderLines:
    settings = get_settings()
    return OrderLines(
        get_redis(),
        instance_id=instance.instance_id,
        ttl=settings.zapi_order_ttl,
        absence=settings.longest_absence,
        settle=SETTLE_SECONDS,
    )


_order_lines = PerInstance(_order_lines_for)


def get_order_lines(instance: Instance | None = None) -> OrderLines:
    """The order lines of ``instance`` (default: ``default``)."""
    return _order_lines.get(instance or default_instance())


def arrival_index(
    payload: dict[str, Any],
) -> tuple[str, str, str, int | None, int, bool, int | None] | None:
    """The transport's ``arrival_index`` (worker/transport.py): where a fetched order update
    stands in its order's line, as the fields of the transport's ``Arrival``."""
    found = arrival_of(payload)
    if found is None:
        return None
    try:
        instance = instance_named(found.instance)
    except UnknownInstanceError:
        return None  # its execution fails at once, saying so; it has no line to stand in
    book = get_order_lines(instance)
    line, jobs, _ = book.keys(found.order)
    settles = found.sequence is not None
    return line, jobs, found.job_id, found.sequence, book.ttl, settles, found.due
