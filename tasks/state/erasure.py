"""Forgetting a customer: every record zapi-queue keeps that holds or points to their phone.

Brazil's LGPD (and the GDPR) give a customer the right to have their data erased. What we keep
about a phone, and how ``forget`` finds it:

* **order snapshots** (the order book) of the phone's orders: the ``snapshot`` field dropped
  and the order message's index removed. What the order last showed (its statuses) stays, so
  that a late update still cannot move the order backward: it holds no personal data. The
  snapshots are read first: they are what **links** a short-form update to the phone (its
  instance with the ``orderRequestId``, or with the order message's ``messageId``);
* **dead letters**: in full form, those whose body is for the phone; in short form (every
  ``DeliveryFailedError`` letter, short updates and their ``message`` text), those whose order
  is linked to the phone, by the book or by one of the phone's full-form letters. A short
  letter whose order the book no longer holds (expired, ``ZAPI_ORDER_TTL``) cannot be tied to
  the phone: it names an order, not a customer, and stays until its own TTL;
* **delivery states** of the messages sent for those orders (found by the ``order`` each
  record keeps) or to the phone (an order message's record keeps its body, with the phone),
  with the **idempotency records** of the jobs that sent them (their reply, claim and send
  keys): a repeat of such a job would be sent again;
* **PIX keys**: a send-order body whose key of ``keyType`` phone is the phone, whoever the
  order is for, is erased as ``forget --pix-key`` erases one (tasks/state/erasure_pix.py): its
  letter and its job removed, its delivery record's body dropped;
* **recipient pacing** keys, whose name holds the phone;
* **queued jobs** for the phone or its linked orders, in every place the broker keeps them
  (tasks/state/erasure_queues.py): removed, not sent.

Job results hold Z-API's reply (ids only) and error texts, never a body. Keys are found with
SCAN and lists read in pages: fine for an occasional request, bounded memory. Instance ids hold
no ``:`` (Z-API's are hex), so a key's instance is what precedes the first ``:`` after its
prefix, whatever ``:`` the order or message id holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from config.instances import alias_of
from tasks.contract.delivery_record import key_part
from tasks.contract.ordering import order_keys
from tasks.contract.schemas import normalized_phone
from tasks.state.book import MESSAGE_PREFIX, SNAPSHOT_FIELD
from tasks.state.deadletter import DeadLetter
from tasks.state.erasure_pix import (
    Eraser,
    delivery_bodies,
    drop_delivery_bodies,
    pix_phone_of,
    release_lines,
)
from tasks.state.erasure_queues import QueueEraser, QueueSweep
from tasks.state.keys import ORDER_PREFIX, PACE_PREFIX
from tasks.state.store import text

ORDER_STATE_PATTERN = f"{ORDER_PREFIX}*:state"
PACING_PATTERN = f"{PACE_PREFIX}*:"


@dataclass
class Erasure:
    """What ``forget`` removed (or, on a dry run, would remove)."""

    dead_letters: int = 0
    order_snapshots: int = 0
    delivery_states: int = 0
    idempotency_records: int = 0
    delivery_bodies: int = 0
    """Bodies dropped from other customers' delivery records: the phone is their PIX key."""
    pacing_keys: int = 0
    unlinked_short_letters: int = 0
    """Short-form letters whose order the book no longer holds: nothing ties them to a phone
    (any phone's), so they stay until their TTL; counted so the report can say so."""
    queue: QueueSweep = field(default_factory=QueueSweep)
    orders: set[tuple[str, str]] = field(default_factory=set)
    """(instance id, orderRequestId) of the phone's orders."""
    order_messages: set[tuple[str, str]] = field(default_factory=set)
    """(instance id, messageId) of the phone's order messages."""

    def as_dict(self) -> dict[str, int]:
        return {
            "dead_letters": self.dead_letters,
            "order_snapshots": self.order_snapshots,
            "delivery_states": self.delivery_states,
            "idempotency_records": self.idempotency_records,
            "delivery_bodies": self.delivery_bodies,
            "pacing_keys": self.pacing_keys,
            "queued_jobs": self.queue.queued,
            "held_jobs": self.queue.held,
            "set_aside_items": self.queue.set_aside,
            "unlinked_short_letters": self.unlinked_short_letters,
        }


def _phone_of(body: Any) -> str | None:
    phone = body.get("phone") if isinstance(body, dict) else None
    if not isinstance(phone, str):
        return None
    try:
        return normalized_phone(phone)
    except ValueError:
        return None


def _instance_in(key: str, prefix: str) -> str:
    return key.removeprefix(prefix).split(":", 1)[0]


class Forgetter(Eraser):
    """Erases one phone's records from the state Redis and its jobs from the broker."""

    def forget(self, phone: str, *, broker: redis.Redis, dry_run: bool = False) -> Erasure:
        target = normalized_phone(phone)
        erasure = Erasure()
        self._snapshots_of(target, erasure, dry_run)
        self._dead_letters_of(target, erasure, dry_run)
        self._deliveries_of(target, erasure, dry_run)
        erasure.delivery_bodies = drop_delivery_bodies(
            self._redis,  # the phone's own records went whole (a dry run counts them there)
            lambda body: pix_phone_of(body) == target and _phone_of(body) != target,
            dry_run=dry_run,
        )
        self._pacing_of(target, erasure, dry_run)

        def theirs(args: list[Any], kwargs: dict[str, Any]) -> bool:
            body = args[0] if args else kwargs.get("body")
            return self._is_theirs(body, alias_of(kwargs), target, erasure)

        erasure.queue = QueueEraser(broker, theirs, [target]).sweep(dry_run=dry_run)
        release_lines(self._redis, self._instance_ids, erasure.queue.arrivals)
        return erasure

    def _is_theirs(self, body: Any, alias: str, phone: str, erasure: Erasure) -> bool:
        """A body for ``phone``: its own phone, or (short form) an order linked to it; or a
        body whose PIX key is ``phone``."""
        if not isinstance(body, dict):
            return False
        if pix_phone_of(body) == phone:
            return True
        if "phone" in body:
            return _phone_of(body) == phone
        instance_id = self._instance_ids.get(alias)
        order, message = body.get("orderRequestId"), body.get("messageId")
        return instance_id is not None and (
            (instance_id, order) in erasure.orders
            or (instance_id, message) in erasure.order_messages
        )

    def _snapshots_of(self, phone: str, erasure: Erasure, dry_run: bool) -> None:
        for key in self._redis.scan_iter(match=ORDER_STATE_PATTERN, count=1000):
            raw = self._redis.hget(key, SNAPSHOT_FIELD)
            try:
                snapshot = json.loads(raw) if raw is not None else None
            except ValueError:
                continue
            if _phone_of(snapshot) != phone:
                continue
            assert isinstance(snapshot, dict)
            instance = _instance_in(text(key), ORDER_PREFIX)
            erasure.orders.add((instance, str(snapshot.get("orderRequestId"))))
            message = snapshot.get("messageId")
            if isinstance(message, str):
                erasure.order_messages.add((instance, message))
            erasure.order_snapshots += 1
            if not dry_run:
                self._redis.hdel(key, SNAPSHOT_FIELD)
                if isinstance(message, str):
                    self._redis.delete(f"{MESSAGE_PREFIX}{instance}:{key_part(message)}")

    def _dead_letters_of(self, phone: str, erasure: Erasure, dry_run: bool) -> None:
        """Full-form letters first link their orders, so that one pass over the store finds a
        short letter of such an order only if it comes later: a second pass catches the rest
        (both read page by page)."""
        doomed: dict[str, None] = {}  # job ids in the order found
        for _ in range(2):
            before = len(erasure.orders)
            for page in self._dead_letters.pages():
                for letter in page:
                    if letter.job_id not in doomed and self._letter_is_theirs(
                        letter, phone, erasure
                    ):
                        doomed[letter.job_id] = None
            if len(erasure.orders) == before:
                break
        erasure.unlinked_short_letters = self._unlinked_short_letters(set(doomed))
        erasure.dead_letters = len(doomed) if dry_run else self._dead_letters.remove(list(doomed))

    def _unlinked_short_letters(self, doomed: set[str]) -> int:
        """Short-form letters (no phone) not erased whose order has no snapshot left."""
        count = 0
        for page in self._dead_letters.pages():
            short = [
                (self._instance_ids.get(letter.instance), letter.body.get("orderRequestId"))
                for letter in page
                if isinstance(letter.body, dict)
                and "phone" not in letter.body
                and letter.job_id not in doomed
            ]
            pipe = self._redis.pipeline(transaction=False)
            for instance_id, order in short:
                pipe.hexists(order_keys(str(instance_id), str(order))[2], SNAPSHOT_FIELD)
            count += sum(1 for held in pipe.execute() if not held) if short else 0
        return count

    def _letter_is_theirs(self, letter: DeadLetter, phone: str, erasure: Erasure) -> bool:
        if not self._is_theirs(letter.body, letter.instance, phone, erasure):
            return False
        order = letter.body.get("orderRequestId")
        instance_id = self._instance_ids.get(letter.instance)
        if isinstance(order, str) and instance_id is not None:
            erasure.orders.add((instance_id, order))
        return True

    def _deliveries_of(self, phone: str, erasure: Erasure, dry_run: bool) -> None:
        """Records of the phone's orders (by the order the job names) or messages (an order
        message's record names no order: its body names the phone)."""
        for key, instance, job, body in delivery_bodies(self._redis):
            if not isinstance(job, dict):
                continue
            if (instance, job.get("order")) not in erasure.orders and _phone_of(body) != phone:
                continue
            erasure.delivery_states += 1
            reply_key = job.get("reply_key")
            if isinstance(reply_key, str) and reply_key.endswith(":reply"):
                base = reply_key.removesuffix(":reply")
                erasure.idempotency_records += 1
                if not dry_run:
                    self._redis.delete(reply_key, base + ":claim", base + ":sent")
            if not dry_run:
                self._redis.delete(key)

    def _pacing_of(self, phone: str, erasure: Erasure, dry_run: bool) -> None:
        keys = list(self._redis.scan_iter(match=f"{PACING_PATTERN}{phone}", count=1000))
        erasure.pacing_keys = len(keys)
        if keys and not dry_run:
            self._redis.delete(*keys)
