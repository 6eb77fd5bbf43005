"""What each Z-API callback changes: the order book, delivery states, instance events.

Every callback is idempotent here (the same one twice changes nothing) and touches Redis only,
so the webhook receiver (worker/webhook.py) answers fast and can run as many replicas as
wanted. The receiver does HTTP; this module decides.

What any callback may change is bounded, whoever sent it: it must name an instance of the fleet
(``instanceId``; without one, ``ZAPI_INSTANCE_ID``'s), else it is counted (``foreign``) and
ignored; a delivery or status callback updates only messages a job of ours linked, the others
get a capped, short-lived early entry and no key of their own (tasks/state/deliveries.py); an
order callback never replaces an order the book has (tasks/state/book.py); a callback time is
bounded (tasks/callbacks.py). Answers are 2xx, except 400 for an order we cannot keep and 503
when Redis is unavailable (Z-API may try again; applying a callback twice changes nothing).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import ValidationError

from config import Settings
from tasks import tracing
from tasks.callbacks import (
    CALLBACK_TYPES,
    Callback,
    ConnectionCallback,
    DeliveryCallback,
    MessageStatusCallback,
    ReceivedCallback,
    callback_type,
)
from tasks.contract.validation import describe
from tasks.state.book import OrderBook, snapshot_of_callback
from tasks.state.deadletter import DeadLetterStore
from tasks.state.deliveries import EARLY_TTL, FAILED, STATUS_STATES, Applied, Burial, DeliveryBook
from tasks.state.instances import InstanceEvents
from tasks.state.webhook_stats import WebhookStats

logger = logging.getLogger("zapi_queue.webhook")

#: Instances whose stores one receiver process keeps built (each is a few script handles).
MAX_INSTANCES = 256
#: Problems named in a 400's answer at most (a list of 1,000 bad products would name 1,000).
MAX_PROBLEMS = 10
UNMATCHED = f"no job of this fleet sent it (yet): kept {EARLY_TTL} s in case one records it"


def fleet_instance_ids(settings: Settings) -> frozenset[str]:
    """The fleet's instance ids: ZAPI_INSTANCE_ID's and ZAPI_INSTANCES' (config/instances.py)."""
    ids = {instance.instance_id for instance in settings.instances().values()}
    if settings.zapi_instance_id:
        ids.add(settings.zapi_instance_id)
    return frozenset(ids)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The HTTP answer to a callback: its status, and a short JSON body (no secret, no phone)."""

    status: int
    outcome: str
    detail: str = ""

    def body(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"outcome": self.outcome}
        if self.detail:
            answer["detail" if self.status < 400 else "error"] = self.detail
        return answer


class Inbox:
    """Applies Z-API callbacks to the state in Redis."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self._settings = settings
        self._fleet = fleet_instance_ids(settings)
        self._instances = InstanceEvents(client)
        self._stats = WebhookStats(client)
        self._dead_letters = DeadLetterStore.from_settings(client, settings)

    @functools.lru_cache(maxsize=MAX_INSTANCES)  # noqa: B019 - one Inbox per process
    def _books(self, instance_id: str) -> tuple[OrderBook, DeliveryBook]:
        settings = self._settings
        return (
            OrderBook(self._redis, instance_id=instance_id, ttl=settings.zapi_order_ttl),
            DeliveryBook(
                self._redis,
                instance_id=instance_id,
                ttl=settings.zapi_delivery_ttl,
                history_ttl=settings.celery_result_expires,
            ),
        )

    def take(self, payload: dict[str, Any]) -> Outcome:
        """Apply one callback; Redis errors propagate (the receiver answers 503)."""
        kind = callback_type(payload)
        model = CALLBACK_TYPES.get(kind)
        if model is None:
            return self._counted(Outcome(200, "ignored", f"type {kind} is not used"), kind)
        context: dict[str, list[str]] = {"skipped": []}
        try:
            callback = model.model_validate(payload, context=context)
        except ValidationError as exc:
            problems = "; ".join(describe(exc)[:MAX_PROBLEMS])
            return self._counted(Outcome(400, "rejected", f"invalid {kind}: {problems}"), kind)
        if context["skipped"]:
            logger.info(
                "webhook %s: skipped %s (not of the shape Z-API documents)",
                kind,
                ", ".join(sorted(set(context["skipped"]))),
            )
        instance = callback.instanceId or self._settings.zapi_instance_id
        if instance is None:
            detail = f"{kind} without instanceId, and ZAPI_INSTANCE_ID is not set"
            return self._counted(Outcome(200, "ignored", detail), kind)
        if instance not in self._fleet:
            outcome = Outcome(200, "foreign", "instanceId is not an instance of this fleet")
            return self._counted(outcome, kind)
        return self._counted(self._apply(callback, instance), kind)

    def _counted(self, outcome: Outcome, kind: str) -> Outcome:
        self._stats.count(outcome.outcome, kind)
        return outcome

    def _apply(self, callback: Callback, instance: str) -> Outcome:
        books = self._books(instance)
        if isinstance(callback, ReceivedCallback):
            return self._order_message(callback, instance, books[0])
        if isinstance(callback, DeliveryCallback):
            if callback.messageId is None:
                return Outcome(200, "ignored", "a DeliveryCallback without messageId")
            state = FAILED if callback.error or callback.errorCode else "sent"
            applied = books[1].apply_all(
                [callback.messageId],
                state,
                at=callback.at,
                error=callback.error,
                error_code=callback.errorCode,
            )
            return self._delivered([callback.messageId], applied, books[1], state, callback)
        if isinstance(callback, MessageStatusCallback):
            reached = STATUS_STATES.get(callback.status or "")
            if reached is None:
                return Outcome(200, "ignored", "a status that is not used")
            if not callback.ids:
                return Outcome(200, "ignored", "a MessageStatusCallback without ids")
            applied = books[1].apply_all(callback.ids, reached, at=callback.at)
            return self._delivered(callback.ids, applied, books[1], reached, callback)
        if isinstance(callback, ConnectionCallback):
            self._instances.note(
                instance,
                connected=callback.connected,
                error=callback.error,
                at=callback.at,
                hold_seconds=self._settings.zapi_disconnected_hold,
            )
            return Outcome(200, "stored", "connected" if callback.connected else "disconnected")
        return Outcome(200, "ignored")  # pragma: no cover - CALLBACK_TYPES lists the above

    def _delivered(
        self,
        message_ids: list[str],
        applied: list[Applied],
        deliveries: DeliveryBook,
        state: str,
        callback: Callback,
    ) -> Outcome:
        """Bury the jobs whose failure was reported; the answer: stored when a message was
        ours, unmatched when none was (its early entry kept; evictions counted)."""
        evicted = sum(each.evicted for each in applied)
        if evicted:
            self._stats.count("evicted", "early", evicted)
        for each in applied:
            self._bury(each.burial, deliveries)
        linked = [mid for mid, each in zip(message_ids, applied, strict=True) if each.linked]
        if tracing.enabled() and linked:
            self._join_traces(linked, deliveries, f"{type(callback).__name__}: {state}")
        if linked:
            return Outcome(200, "stored", f"delivery {state}")
        return Outcome(200, "unmatched", UNMATCHED)

    def _join_traces(self, message_ids: list[str], deliveries: DeliveryBook, name: str) -> None:
        """Each message's callback (``name``: its type and the state it reports) as a span in
        the trace of the job that sent the message."""
        traces = deliveries.traces(message_ids)
        for message_id in message_ids:
            tracing.joined(name, traces.get(message_id), {"zapi.message_id": message_id})

    def _order_message(self, callback: ReceivedCallback, instance: str, book: OrderBook) -> Outcome:
        snapshot = snapshot_of_callback(callback, instance)
        if snapshot is None:
            if callback.order is not None:
                return Outcome(200, "ignored", "an order without phone or messageId")
            return Outcome(200, "ignored", "a message without an order")
        order = snapshot["orderRequestId"]
        if not book.save(snapshot):
            return Outcome(200, "kept", f"order {order} is in the book already: it stays as it is")
        return Outcome(200, "stored", f"order {order}")

    def _bury(self, burial: Burial | None, deliveries: DeliveryBook) -> None:
        if burial is None:
            return
        deliveries.bury(burial, self._dead_letters)
        logger.warning(
            "job %s: Z-API reported its delivery failed; kept as a dead letter (%s)",
            burial.letter.job_id,
            burial.letter.error,
        )
