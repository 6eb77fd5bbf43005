"""Enqueueing order updates from another Python application.

Needs only ``celery`` and ``pydantic`` (no worker settings, no Z-API credentials)::

    from tasks.producer import Producer

    producer = Producer(broker_url="redis://redis:6379/0", result_backend="redis://redis:6379/1")
    job_id = producer.enqueue_status_update(body)           # InvalidBodyError here, if bad
    reply = producer.get_result(job_id, timeout=60)         # {"zaapId", "messageId", "id"}

Bodies are validated with the worker's own schemas before they are enqueued, so a bad field is
reported in the caller's process, at once, and nothing is queued. The message sent is the
public contract: ``send_task(name, args=[body], kwargs={"idempotency_key": ...})``; the body
goes out exactly as given (the worker normalises it again).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from kombu.utils.uuid import uuid

from tasks.endpoints import Endpoint
from tasks.errors import InvalidBodyError
from tasks.redaction import describe_body
from tasks.validation import validate_body

TASK_NAMES = {
    Endpoint.ORDER_STATUS_UPDATE: "zapi.order_status_update",
    Endpoint.ORDER_PAYMENT_UPDATE: "zapi.order_payment_update",
}
BATCH_SIZE = 1000


@dataclass
class BulkResult:
    """What a bulk enqueue did: job ids of the accepted bodies, reasons for the refused ones."""

    job_ids: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    """(index in the input, error text) of each body refused by validation."""


class Producer:
    """Enqueues order updates onto the broker the workers consume."""

    def __init__(
        self,
        app: Celery | None = None,
        *,
        broker_url: str | None = None,
        result_backend: str | None = None,
    ) -> None:
        self.app = app or Celery(
            "zapi-queue-producer",
            broker=broker_url or os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
            backend=result_backend
            or os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
        )
        self.app.conf.update(task_serializer="json", accept_content=["json"])

    def enqueue(
        self,
        endpoint: Endpoint,
        body: Any,
        *,
        idempotency_key: str | None = None,
        validate: bool = True,
        countdown: float | None = None,
    ) -> str:
        """Validate ``body`` (unless told not to), enqueue it, return the job id."""
        if validate:
            validate_body(endpoint, body)
        kwargs = {"idempotency_key": idempotency_key} if idempotency_key is not None else {}
        result = self.app.send_task(
            TASK_NAMES[endpoint],
            args=[body],
            kwargs=kwargs,
            countdown=countdown,
            argsrepr=describe_body(body),
        )
        return str(result.id)

    def enqueue_status_update(self, body: Any, **options: Any) -> str:
        return self.enqueue(Endpoint.ORDER_STATUS_UPDATE, body, **options)

    def enqueue_payment_update(self, body: Any, **options: Any) -> str:
        return self.enqueue(Endpoint.ORDER_PAYMENT_UPDATE, body, **options)

    def enqueue_many(
        self, endpoint: Endpoint, bodies: Iterable[Any], *, validate: bool = True
    ) -> BulkResult:
        """Enqueue many bodies in one go: invalid ones are reported, the rest are sent through
        one Redis pipeline per ``BATCH_SIZE`` messages (where the transport supports it)."""
        outcome = BulkResult()
        accepted = []
        for index, body in enumerate(bodies):
            if validate:
                try:
                    validate_body(endpoint, body)
                except InvalidBodyError as exc:
                    outcome.rejected.append((index, str(exc)))
                    continue
            accepted.append(body)
        outcome.job_ids = self.send_many(TASK_NAMES[endpoint], accepted)
        return outcome

    def send_many(self, task_name: str, bodies: Iterable[Any]) -> list[str]:
        """Publish ``bodies`` to ``task_name`` as they are (no validation), pipelined."""
        with self._batched_producer() as producer:
            return [self._publish(producer, task_name, body) for body in bodies]

    def _publish(self, producer: Any, name: str, body: Any) -> str:
        """What ``send_task`` does, minus its per-message result subscription and ``saferepr``
        of the whole body: the two costs that dominate a bulk enqueue."""
        amqp = self.app.amqp
        job_id = uuid()
        options = amqp.router.route({}, name, (body,), {}, None)
        message = amqp.create_task_message(
            job_id, name, [body], {}, argsrepr=describe_body(body), kwargsrepr="{}"
        )
        amqp.send_task_message(producer, name, message, **options)
        return job_id

    @contextlib.contextmanager
    def _batched_producer(self) -> Iterator[Any]:
        with self.app.producer_or_acquire() as producer:
            batch = getattr(producer, "batch", None)  # kombu >= 5.7: pipelined publishing
            with batch(max_size=BATCH_SIZE) if batch else contextlib.nullcontext():
                yield producer

    def get_result(self, job_id: str, timeout: float | None = None) -> dict[str, str]:
        """Wait for the job and return Z-API's reply; raise the job's error if it failed."""
        result: AsyncResult[Any] = AsyncResult(job_id, app=self.app)
        reply: dict[str, str] = result.get(timeout=timeout)
        return reply

    def state(self, job_id: str) -> str:
        return str(AsyncResult(job_id, app=self.app).state)

    def close(self) -> None:
        self.app.close()


_default: Producer | None = None


def _default_producer() -> Producer:
    global _default
    if _default is None:
        _default = Producer()
    return _default


def enqueue_status_update(body: Any, **options: Any) -> str:
    """Validate and enqueue an order status update; return the job id.

    Uses ``CELERY_BROKER_URL`` / ``CELERY_RESULT_BACKEND`` from the environment.
    """
    return _default_producer().enqueue_status_update(body, **options)


def enqueue_payment_update(body: Any, **options: Any) -> str:
    """Validate and enqueue an order payment update; return the job id."""
    return _default_producer().enqueue_payment_update(body, **options)


def get_result(job_id: str, timeout: float | None = None) -> dict[str, str]:
    """Wait for a job; return Z-API's reply or raise the job's error."""
    return _default_producer().get_result(job_id, timeout)
