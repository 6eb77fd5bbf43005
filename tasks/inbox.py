"""What each Z-API callback changes: the order book, delivery states, instance events.

Every callback is idempotent here (the same one twice changes nothing) and touches Redis only,
so the webhook receiver (worker/webhook.py) answers fast and can run as many replicas as
wanted. The receiver does HTTP; this module decides.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import ValidationError

from config import Settings
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
from tasks.state.deliveries import FAILED, STATUS_STATES, Burial, DeliveryBook
from tasks.state.instances import InstanceEvents
from tasks.state.webhook_stats import WebhookStats

logger = logging.getLogger("zapi_queue.webhook")

#: Instances whose stores one receiver process keeps built (each is a few script handles).
MAX_INSTANCES = 256


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
        self._instances = InstanceEvents(client)
        self._stats = WebhookStats(client)
        self._dead_letters = DeadLetterStore.from_settings(client, settings)

    @functools.lru_cache(maxsize=MAX_INSTANCES)  # noqa: B019 - one Inbox per process
    def _books(self, instance_id: str) -> tuple[OrderBook, DeliveryBook]:
        settings = self._settings
        return (
            OrderBook(self._redis, instance_id=instance_id, ttl=settings.zapi_order_ttl),
            DeliveryBook(self._redis, instance_id=instance_id, ttl=settings.zapi_delivery_ttl),
        )

    def take(self, payload: dict[str, Any]) -> Outcome:
        """Apply one callback; Redis errors propagate (the receiver answers 503)."""
        kind = callback_type(payload)
        model = CALLBACK_TYPES.get(kind)
        if model is None:
            return self._counted(Outcome(200, "ignored", f"type {kind} is not used"), kind)
        try:
            callback = model.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(describe(exc))
            return self._counted(Outcome(400, "rejected", f"invalid {kind}: {problems}"), kind)
        instance = callback.instanceId or self._settings.zapi_instance_id
        if instance is None:
            detail = f"{kind} without instanceId, and ZAPI_INSTANCE_ID is not set"
            return self._counted(Outcome(400, "rejected", detail), kind)
        return self._counted(self._apply(callback, instance), kind)

    def _counted(self, outcome: Outcome, kind: str) -> Outcome:
        self._stats.count(outcome.outcome, kind)
        return outcome

    def _apply(self, callback: Callback, instance: str) -> Outcome:
        books = self._books(instance)
        if isinstance(callback, ReceivedCallback):
            return self._order_message(callback, instance, books[0])
        if isinstance(callback, DeliveryCallback):
            state = FAILED if callback.error or callback.errorCode else "sent"
            burial = books[1].apply(
                callback.messageId,
                state,
                at=callback.at,
                error=callback.error,
                error_code=callback.errorCode,
            )
            self._bury(burial, books[1])
            return Outcome(200, "stored", f"delivery {state}")
        if isinstance(callback, MessageStatusCallback):
            reached = STATUS_STATES.get(callback.status)
            if reached is None:
                return Outcome(200, "ignored", f"status {callback.status} is not used")
            for message_id in callback.ids:
                books[1].apply(message_id, reached, at=callback.at)
            return Outcome(200, "stored", f"delivery {reached}")
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

    def _order_message(self, callback: ReceivedCallback, instance: str, book: OrderBook) -> Outcome:
        snapshot = snapshot_of_callback(callback, instance)
        if snapshot is None:
            return Outcome(200, "ignored", "a message without an order")
        book.save(snapshot)
        return Outcome(200, "stored", f"order {snapshot['orderRequestId']}")

    def _bury(self, burial: Burial | None, deliveries: DeliveryBook) -> None:
        if burial is None:
            return
        deliveries.bury(burial, self._dead_letters)
        logger.warning(
            "job %s: Z-API reported its delivery failed; kept as a dead letter (%s)",
            burial.letter.job_id,
            burial.letter.error,
        )
