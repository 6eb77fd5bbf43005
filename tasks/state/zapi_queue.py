"""What a reconciliation of Z-API's own queue reads and keeps in Redis (tasks/reconcile.py).

It reads, for the messages Z-API lists as queued, the delivery record each job wrote when Z-API
accepted it (tasks/state/deliveries.py: the job, its kwargs, its order's line, its update in
short form), and for each of those orders its line: the state the order last showed and the
updates still waiting on our side (orders.lua notes each one's ``:as``).

It keeps, per instance:

* ``zapi-queue:reconcile:{instance}``: hash, the last pass: ``at``, ``total`` (messages in
  Z-API's queue), ``ours``, ``withdrawn``, ``partial`` (``1`` when it stopped at
  ``ZAPI_QUEUE_PAGES``), ``disconnected`` (``1`` when the pass ran while the phone was
  disconnected: one more pass is due once it is back); expires ``RECONCILE_TTL`` (30 days)
  after the last pass, for ``zapi-queue health``;
* ``zapi-queue:reconcile-turn:{instance}``: whose pass it is (one worker of the fleet at a
  time), expiring after ``TURN_SECONDS`` if its worker dies mid-pass;
* ``zapi-queue:reconcile-wanted:{instance}``: set by a job held on our side (its instance
  disconnected) that may supersede a message still in Z-API's queue: the next look passes at
  once instead of at the interval; expires after ``WANTED_SECONDS``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from tasks.contract.delivery_record import delivery_key
from tasks.contract.ordering import ShopOrderKey, order_keys
from tasks.state.keys import (
    RECONCILE_PREFIX,
    RECONCILE_TTL,
    RECONCILE_TURN_PREFIX,
    RECONCILE_WANTED_PREFIX,
)
from tasks.state.store import text
from tasks.zapi.queue import QueuedMessage

TURN_SECONDS = 120
WANTED_SECONDS = 60
#: An update's field by its short form's key (the delivery record's body).
FIELDS = ("orderStatus", "paymentStatus")


@dataclass(frozen=True, slots=True)
class Queued:
    """One of our messages in Z-API's queue: the job that sent it, its order's line (an
    ``orderRequestId`` or a ShopOrderKey), its update (``field`` None: not an update, such as
    an order message, which is never withdrawn) and its superseding kwargs."""

    message: QueuedMessage
    job: str
    line: str | None
    field: str | None
    state: str | None
    supersede: bool | None
    force: bool


@dataclass(frozen=True, slots=True)
class Waiting:
    """An update still in its order's line on our side: its job, field and state, and
    whether it was seen lately (a lost job supersedes nothing)."""

    job: str
    field: str
    state: str
    fresh: bool


@dataclass(frozen=True, slots=True)
class LineView:
    """An order's line as a pass sees it: what the order last showed, by field, with the job
    that showed it, and the updates still waiting, in line order."""

    shown: dict[str, str]
    shown_by: str | None
    waiting: tuple[Waiting, ...]


@dataclass(frozen=True, slots=True)
class LastPass:
    """The last reconciliation of an instance, as ``zapi-queue health`` shows it."""

    at: float
    total: int
    ours: int
    withdrawn: int
    partial: bool
    disconnected: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "total": self.total,
            "ours": self.ours,
            "withdrawn": self.withdrawn,
            "partial": self.partial,
        }


def _json(raw: Any) -> Any:
    try:
        return json.loads(text(raw)) if raw is not None else None
    except (ValueError, RecursionError):
        return None


def queued_of(message: QueuedMessage, job_raw: Any, body_raw: Any) -> Queued | None:
    """Our message from its delivery record's ``job`` and ``body`` fields; None when the
    record is not ours to judge (no job, unreadable)."""
    job = _json(job_raw)
    if not isinstance(job, dict) or not isinstance(job.get("job"), str):
        return None
    body = _json(body_raw)
    body = body if isinstance(body, dict) else {}
    kwargs = job.get("kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    line_of = job.get("line")
    line: str | None = None
    if isinstance(line_of, list) and len(line_of) == 2 and isinstance(line_of[0], str):
        line = ShopOrderKey(line_of[0]) if line_of[1] is True else line_of[0]
    found = next((name for name in FIELDS if isinstance(body.get(name), str)), None)
    supersede = kwargs.get("supersede")
    return Queued(
        message,
        job["job"],
        line,
        found,
        body.get(found) if found else None,
        supersede if isinstance(supersede, bool) else None,
        kwargs.get("force") is True,
    )


@dataclass
class ZapiQueueBook:
    """One instance's side of its reconciliations in the state Redis."""

    client: redis.Redis
    instance_id: str
    #: How long a waiting job may go unseen and still count (Settings.longest_absence; only
    #: :meth:`lines` reads it).
    absence: float = 0.0

    def ours(self, messages: list[QueuedMessage]) -> list[Queued]:
        """The listed messages this fleet sent and Z-API has not handed to WhatsApp yet (their
        record still says ``accepted``), in the queue's order."""
        listed = [m for m in messages if m.message_id]
        pipe = self.client.pipeline(transaction=False)
        for message in listed:
            pipe.hmget(
                delivery_key(self.instance_id, str(message.message_id)), "job", "body", "state"
            )
        found = []
        for message, (job, body, state) in zip(listed, pipe.execute(), strict=True):
            if state is None or text(state) != "accepted":
                continue
            queued = queued_of(message, job, body)
            if queued is not None:
                found.append(queued)
        return found

    def lines(self, orders: set[str]) -> dict[str, LineView]:
        """Each order's line: what it showed and what still waits (two round trips)."""
        names = sorted(orders)
        pipe = self.client.pipeline(transaction=False)
        for order in names:
            line, _, state = order_keys(self.instance_id, order)
            pipe.zrange(line, 0, -1)
            pipe.hmget(state, "status", "payment", "job")
        answers = pipe.execute()
        members = {order: [text(j) for j in answers[2 * i]] for i, order in enumerate(names)}
        pipe = self.client.pipeline(transaction=False)
        for order in names:
            jobs_key = order_keys(self.instance_id, order)[1]
            for job in members[order]:
                pipe.hmget(jobs_key, job, job + ":as")
        notes = iter(pipe.execute())
        now_us = time.time() * 1e6
        views = {}
        for i, order in enumerate(names):
            status, payment, shown_by = answers[2 * i + 1]
            waiting = []
            for job in members[order]:
                seen, noted = next(notes)
                parts = text(noted).split(":", 2) if noted is not None else []
                if len(parts) == 3:
                    fresh = now_us - float(text(seen) or 0) <= self.absence * 1e6
                    waiting.append(Waiting(job, parts[0], parts[1], fresh))
            shown = {"orderStatus": text(status or b""), "paymentStatus": text(payment or b"")}
            views[order] = LineView(
                {name: value for name, value in shown.items() if value},
                text(shown_by) if shown_by else None,
                tuple(waiting),
            )
        return views

    # -- the passes ----------------------------------------------------------------------------
    def last(self) -> LastPass | None:
        raw = self.client.hgetall(RECONCILE_PREFIX + self.instance_id)
        if not raw:
            return None
        data = {text(k): text(v) for k, v in raw.items()}
        try:
            return LastPass(
                float(data["at"]),
                int(data.get("total", 0)),
                int(data.get("ours", 0)),
                int(data.get("withdrawn", 0)),
                data.get("partial") == "1",
                data.get("disconnected") == "1",
            )
        except (KeyError, ValueError):
            return None

    def record(self, done: LastPass) -> None:
        key = RECONCILE_PREFIX + self.instance_id
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "at": f"{done.at:.6f}",
                "total": done.total,
                "ours": done.ours,
                "withdrawn": done.withdrawn,
                "partial": "1" if done.partial else "0",
                "disconnected": "1" if done.disconnected else "0",
            },
        )
        pipe.expire(key, RECONCILE_TTL)
        pipe.execute()

    def take_turn(self, owner: str) -> bool:
        key = RECONCILE_TURN_PREFIX + self.instance_id
        return bool(self.client.set(key, owner, nx=True, ex=TURN_SECONDS))

    def release_turn(self, owner: str) -> None:
        key = RECONCILE_TURN_PREFIX + self.instance_id
        if self.client.get(key) == owner.encode():
            self.client.delete(key)

    def want(self) -> None:
        """A pass soon, not at the interval (a held job may supersede a queued message)."""
        self.client.set(RECONCILE_WANTED_PREFIX + self.instance_id, "1", ex=WANTED_SECONDS)

    def wanted(self) -> bool:
        """Whether a pass was wanted since the last look (the wish is taken)."""
        return self.client.getdel(RECONCILE_WANTED_PREFIX + self.instance_id) is not None
