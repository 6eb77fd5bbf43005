"""Forgetting a PIX key: every send-order body zapi-queue keeps that carries it.

A send-order body's ``paymentSettings.pix.key`` is personal data (a CPF, a phone, an e-mail, a
random key). ``zapi-queue forget --pix-key KEY`` erases each body that carries it, the way
``forget --phone`` erases a phone's (tasks/state/erasure.py), and ``forget --phone`` also
takes the bodies whose key of ``keyType`` phone is that phone. The places a body is kept:

* **dead letters** (a send-order that failed for good, or whose delivery failed): removed;
* **delivery records** (the body kept while the message may still fail, for the letter a
  ``DeliveryCallback`` failure would bury): the ``body`` field dropped, the record kept (its
  state holds no personal data). A failure reported later buries a letter without a body;
* **jobs not finished yet**, wherever the broker keeps them (tasks/state/erasure_queues.py):
  removed, not sent (an order message whose job is removed is never sent).

The order book keeps no send-order body (an order's snapshot comes from Z-API's order webhook,
which carries no PIX key). A key is compared exactly as given; one of ``keyType`` phone is
compared as phones are, normalized (tasks/contract/schemas.py ``normalized_phone``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from config.instances import DEFAULT_ALIAS
from tasks.contract.delivery_record import DELIVERY_PREFIX
from tasks.contract.ordering import Arrival
from tasks.contract.redaction import pix_key_of
from tasks.contract.schemas import normalized_phone
from tasks.state.deadletter import DeadLetterStore
from tasks.state.erasure_queues import QueueEraser, QueueSweep
from tasks.state.orders import OrderLines
from tasks.state.store import text

#: Delivery hashes read per pipeline round trip.
PAGE = 500

#: Whether a body (any JSON value) is one to erase.
BodyMatcher = Callable[[Any], bool]


def pix_phone_of(body: Any) -> str | None:
    """The normalized phone a body's PIX key is, when its ``keyType`` is phone; else None."""
    settings = body.get("paymentSettings") if isinstance(body, dict) else None
    pix = settings.get("pix") if isinstance(settings, dict) else None
    if not isinstance(pix, dict) or pix.get("keyType") != "phone":
        return None
    key = pix.get("key")
    return normalized_phone(key) if isinstance(key, str) else None


def carries_pix_key(body: Any, key: str) -> bool:
    """Whether ``body``'s PIX key is ``key``: exactly, or as the same phone (keyType phone)."""
    found = pix_key_of(body)
    if not isinstance(found, str):
        return False
    return found == key or pix_phone_of(body) == normalized_phone(key)


def release_lines(
    state: redis.Redis, instance_ids: dict[str, str], arrivals: list[Arrival]
) -> None:
    """The removed jobs leave their orders' lines, as a job that ended would: the next job of
    each order does not wait for one that will never run."""
    for arrival in arrivals:
        instance_id = instance_ids.get(arrival.instance or DEFAULT_ALIAS)
        if instance_id is not None:
            lines = OrderLines(state, instance_id=instance_id, ttl=1, absence=0, settle=0)
            lines.leave(arrival.order, arrival.job_id)


def delivery_bodies(state: redis.Redis) -> Iterator[tuple[bytes, str, Any, Any]]:
    """Each delivery record's (key, instance id, job, body), ``job`` and ``body`` as JSON
    values (None when absent or unreadable), read a page of keys at a time."""
    keys = state.scan_iter(match=f"{DELIVERY_PREFIX}*", count=1000)
    while page := [key for _, key in zip(range(PAGE), keys, strict=False)]:
        pipe = state.pipeline(transaction=False)
        for key in page:
            pipe.hmget(key, "job", "body")
        for key, (job, body) in zip(page, pipe.execute(), strict=True):
            instance = text(key).removeprefix(DELIVERY_PREFIX).split(":", 1)[0]
            yield key, instance, _loaded(job), _loaded(body)


def drop_delivery_bodies(state: redis.Redis, matches: BodyMatcher, *, dry_run: bool) -> int:
    """Drop the body of each delivery record ``matches`` takes; returns how many."""
    doomed = [key for key, _, _, body in delivery_bodies(state) if matches(body)]
    if doomed and not dry_run:
        pipe = state.pipeline(transaction=False)
        for key in doomed:
            pipe.hdel(key, "body")
        pipe.execute()
    return len(doomed)


def _loaded(raw: bytes | None) -> Any:
    try:
        return json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):
        return None


@dataclass
class PixErasure:
    """What ``forget --pix-key`` removed (or, on a dry run, would remove)."""

    dead_letters: int = 0
    delivery_bodies: int = 0
    queue: QueueSweep = field(default_factory=QueueSweep)

    def as_dict(self) -> dict[str, int]:
        return {
            "dead_letters": self.dead_letters,
            "delivery_bodies": self.delivery_bodies,
            "queued_jobs": self.queue.queued,
            "held_jobs": self.queue.held,
            "set_aside_items": self.queue.set_aside,
        }


class Eraser:
    """What every ``forget`` reads and erases: the state Redis, its dead letters, and the
    fleet's instance ids by alias (a letter or a job names its alias)."""

    def __init__(
        self, state: redis.Redis, dead_letters: DeadLetterStore, *, instance_ids: dict[str, str]
    ) -> None:
        self._redis = state
        self._dead_letters = dead_letters
        self._instance_ids = instance_ids


class PixForgetter(Eraser):
    """Erases the bodies carrying one PIX key from the state Redis and the broker."""

    def forget(self, key: str, *, broker: redis.Redis, dry_run: bool = False) -> PixErasure:
        def carries(body: Any) -> bool:
            return carries_pix_key(body, key)

        erasure = PixErasure()
        doomed = [
            letter.job_id
            for page in self._dead_letters.pages()
            for letter in page
            if carries(letter.body)
        ]
        erasure.dead_letters = len(doomed) if dry_run else self._dead_letters.remove(doomed)
        erasure.delivery_bodies = drop_delivery_bodies(self._redis, carries, dry_run=dry_run)

        def theirs(args: list[Any], kwargs: dict[str, Any]) -> bool:
            return carries(args[0] if args else kwargs.get("body"))

        needles = list(dict.fromkeys([key, json.dumps(key)[1:-1]]))
        erasure.queue = QueueEraser(broker, theirs, needles).sweep(dry_run=dry_run)
        release_lines(self._redis, self._instance_ids, erasure.queue.arrivals)
        return erasure
