"""Forgetting a customer: every record zapi-queue keeps that holds or points to their phone.

Brazil's LGPD (and the GDPR) give a customer the right to have their data erased. What we keep
about a phone, and how ``forget`` finds it:

* **dead letters** whose body is for the phone: removed (tasks/state/deadletter.py);
* **order snapshots** (the order book) of the phone's orders: the ``snapshot`` field dropped
  and the order message's index removed. What the order last showed (its statuses) stays, so
  that a late update still cannot move the order backward: it holds no personal data;
* **delivery states** of the messages sent for those orders (found by the ``order`` each
  record keeps): removed, with the **idempotency records** of the jobs that sent them (their
  reply, claim and send keys): a repeat of such a job would be sent again;
* **recipient pacing** keys, whose name holds the phone: removed.

Job results hold Z-API's reply (ids only) and error texts, never a body. Jobs still queued for
the phone are not touched (they will be sent): ``forget`` counts them, so the operator can run
it again once they are done. Keys are found with SCAN: fine for an occasional request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from tasks.contract.delivery_record import DELIVERY_PREFIX
from tasks.contract.ordering import task_call
from tasks.contract.schemas import normalized_phone
from tasks.state.book import MESSAGE_PREFIX, SNAPSHOT_FIELD
from tasks.state.deadletter import DeadLetterStore
from tasks.state.store import KEY_PREFIX, text

ORDER_STATE_PATTERN = f"{KEY_PREFIX}:order:*:state"
PACING_PATTERN = f"{KEY_PREFIX}:pace:*:"


@dataclass
class Erasure:
    """What ``forget`` removed (or, on a dry run, would remove)."""

    dead_letters: int = 0
    order_snapshots: int = 0
    delivery_states: int = 0
    idempotency_records: int = 0
    pacing_keys: int = 0
    queued_jobs_left: int = 0
    orders: set[tuple[str, str]] = field(default_factory=set)
    """(instance, orderRequestId) of the phone's orders."""

    def as_dict(self) -> dict[str, int]:
        return {
            "dead_letters": self.dead_letters,
            "order_snapshots": self.order_snapshots,
            "delivery_states": self.delivery_states,
            "idempotency_records": self.idempotency_records,
            "pacing_keys": self.pacing_keys,
            "queued_jobs_left": self.queued_jobs_left,
        }


def _phone_of(body: Any) -> str | None:
    phone = body.get("phone") if isinstance(body, dict) else None
    return normalized_phone(phone) if isinstance(phone, str) else None


class Forgetter:
    """Erases one phone's records from the state Redis (and counts its queued jobs)."""

    def __init__(
        self, state: redis.Redis, dead_letters: DeadLetterStore, *, instance_ids: dict[str, str]
    ) -> None:
        """``instance_ids``: the fleet's instance ids by alias (a letter names its alias)."""
        self._redis = state
        self._dead_letters = dead_letters
        self._instance_ids = instance_ids

    def forget(self, phone: str, *, broker: redis.Redis, dry_run: bool = False) -> Erasure:
        target = normalized_phone(phone)
        erasure = Erasure()
        self._dead_letters_of(target, erasure, dry_run)
        self._snapshots_of(target, erasure, dry_run)
        self._deliveries_of(erasure, dry_run)
        self._pacing_of(target, erasure, dry_run)
        erasure.queued_jobs_left = queued_for(broker, target)
        return erasure

    def _dead_letters_of(self, phone: str, erasure: Erasure, dry_run: bool) -> None:
        doomed = []
        for letter in self._dead_letters:
            if _phone_of(letter.body) == phone:
                doomed.append(letter.job_id)
                order = letter.body.get("orderRequestId")
                instance_id = self._instance_ids.get(letter.instance)
                if isinstance(order, str) and instance_id is not None:
                    erasure.orders.add((instance_id, order))
        erasure.dead_letters = len(doomed) if dry_run else self._dead_letters.remove(doomed)

    def _snapshots_of(self, phone: str, erasure: Erasure, dry_run: bool) -> None:
        for key in self._redis.scan_iter(match=ORDER_STATE_PATTERN, count=1000):
            raw = self._redis.hget(key, SNAPSHOT_FIELD)
            snapshot = json.loads(raw) if raw is not None else None
            if _phone_of(snapshot) != phone:
                continue
            assert isinstance(snapshot, dict)
            instance = text(key).removeprefix(f"{KEY_PREFIX}:order:").rsplit(":", 2)[0]
            erasure.orders.add((instance, str(snapshot.get("orderRequestId"))))
            erasure.order_snapshots += 1
            if not dry_run:
                self._redis.hdel(key, SNAPSHOT_FIELD)
                message = snapshot.get("messageId")
                if isinstance(message, str):
                    self._redis.delete(f"{MESSAGE_PREFIX}{instance}:{message}")

    def _deliveries_of(self, erasure: Erasure, dry_run: bool) -> None:
        if not erasure.orders:
            return
        for key in self._redis.scan_iter(match=f"{DELIVERY_PREFIX}*", count=1000):
            raw = self._redis.hget(key, "job")
            job = json.loads(raw) if raw is not None else {}
            instance = text(key).removeprefix(DELIVERY_PREFIX).rsplit(":", 1)[0]
            if (instance, job.get("order")) not in erasure.orders:
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


def queued_for(broker: redis.Redis, phone: str, queue: str = "celery") -> int:
    """Jobs for ``phone`` still waiting in the broker's queue (they will be sent)."""
    count = 0
    for message in broker.lrange(queue, 0, -1):
        try:
            call = task_call(json.loads(message))
        except ValueError:
            continue
        if call is not None and call[0] and _phone_of(call[0][0]) == phone:
            count += 1
    return count
