"""Enqueueing order messages and order updates from another Python application.

Needs only ``celery`` and ``pydantic`` (no worker settings, no Z-API credentials)::

    from zapi_queue_producer import Producer

    producer = Producer(broker_url="redis://redis:6379/0", result_backend="redis://redis:6379/1")
    job_id = producer.enqueue_status_update(body)           # InvalidBodyError here, if bad
    reply = producer.get_result(job_id, timeout=60)         # {"zaapId", "messageId", "id"}
    producer.enqueue_send_order(order, order_key="shop-1042")  # the order message itself

Bodies are validated with the worker's own schemas before they are enqueued, so a bad field is
reported in the caller's process, at once, and nothing is queued. The message sent is the
public contract: ``send_task(name, args=[body], kwargs={"idempotency_key": ..., "sequence":
...})``; the body goes out exactly as given (the worker normalises it again).

**Order.** Each update is stamped with a ``sequence`` (the enqueue time in µs, strictly
increasing within the process) unless the caller gives one, and, when the producer knows the
Z-API instance (``instance_id``, default ``ZAPI_INSTANCE_ID``), it takes its place in its
order's line in Redis (``state_redis_url``, default ``ZAPI_STATE_REDIS_URL``, else the broker)
in the same round trip, before it is published: the order's updates then go out exactly in the
order they were enqueued, whichever worker fetches which (tasks/state/orders.py).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from kombu.utils.uuid import uuid

from .delivery_record import read_delivery
from .endpoints import TASK_NAMES, Endpoint
from .errors import InvalidBodyError, as_contract_error
from .job_kwargs import check_kwargs
from .ordering import (
    DEFAULT_HISTORY_TTL,
    DEFAULT_ORDER_TTL,
    order_keys,
    order_of,
    register_in_line,
)
from .redaction import describe_body
from .redis_url import SentinelOptions, redis_client
from .trace_context import publishing
from .validation import validate_request

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
        instance_id: str | None = None,
        state_redis_url: str | None = None,
        sentinel_master: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        """``sentinel_master`` (default ``REDIS_SENTINEL_MASTER``) and ``sentinel_password``
        (default ``REDIS_SENTINEL_PASSWORD``): what ``sentinel://`` URLs need (redis_url.py)."""
        broker_url = broker_url or os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
        from_env = SentinelOptions.from_env(os.environ)
        master = sentinel_master or (from_env.master if from_env else None)
        password = sentinel_password or (from_env.password if from_env else None)
        self._sentinel = SentinelOptions.given(master, password)
        self.app = app or Celery(
            "zapi-queue-producer",
            broker=broker_url,
            backend=result_backend
            or os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/1"),
        )
        self.app.conf.update(task_serializer="json", accept_content=["json"])
        if self._sentinel is not None and app is None:
            options = self._sentinel.transport_options()
            self.app.conf.update(
                broker_transport_options=options, result_backend_transport_options=options
            )
        self._instance_id = instance_id or os.environ.get("ZAPI_INSTANCE_ID") or None
        self._state_url = state_redis_url or os.environ.get("ZAPI_STATE_REDIS_URL") or broker_url
        self._state: Any = None  # a redis.Redis, built on first use
        self._stamp_lock = threading.Lock()
        self._last_stamp = 0

    def enqueue(
        self,
        endpoint: Endpoint,
        body: Any,
        *,
        idempotency_key: str | None = None,
        validate: bool = True,
        countdown: float | None = None,
        sequence: int | None = None,
        force: bool = False,
        instance: str | None = None,
        order_key: str | None = None,
        supersede: bool | None = None,
    ) -> str:
        """Validate ``body`` (unless told not to), take its place in its order's line, enqueue
        it, return the job id. ``sequence``: its position among its order's updates (default:
        now); ``force``: send it even if it would move its order backward; ``instance``: the
        alias of the Z-API instance to send through (default: ``default``); ``order_key``: the
        shop's own order id (send-order only); ``supersede``: whether a newer update of its
        order may supersede it while it waits (default: ``ZAPI_SUPERSEDE``; the update tasks
        only). An update for another instance is placed in its
        order's line by the worker that fetches it (this producer knows only the default
        instance's id)."""
        given = {
            "idempotency_key": idempotency_key,
            "sequence": sequence,
            "instance": instance,
            "order_key": order_key,
            "supersede": supersede,
        }
        kwargs: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
        if force:
            kwargs["force"] = force
        # The worker's rules: refused here, before anything is written.
        check_kwargs(kwargs, TASK_NAMES[endpoint])
        if validate:
            validate_request(endpoint, body)
        job_id = uuid()
        in_line = self._in_line(
            [(job_id, body, sequence)], TASK_NAMES[endpoint], kwargs, registers=instance is None
        )
        kwargs["sequence"] = in_line[0]
        with publishing(TASK_NAMES[endpoint], job_id) as trace:
            self.app.send_task(
                TASK_NAMES[endpoint],
                args=[body],
                kwargs=kwargs,
                countdown=countdown,
                task_id=job_id,
                argsrepr=describe_body(body),
                headers=trace,
            )
        return job_id

    def _stamp(self) -> int:
        """Now in µs, strictly increasing within this producer."""
        with self._stamp_lock:
            self._last_stamp = max(self._last_stamp + 1, time.time_ns() // 1000)
            return self._last_stamp

    def _in_line(
        self,
        jobs: list[tuple[str, Any, int | None]],
        task: str,
        kwargs: dict[str, Any],
        *,
        registers: bool = True,
    ) -> list[int]:
        """Stamp each (job id, body, sequence or None) of ``task`` called with ``kwargs`` and,
        if the instance is known, register them in their orders' lines in one round trip.
        Returns the sequences."""
        sequences = [self._stamp() if given is None else given for _, _, given in jobs]
        instance = self._instance_id
        if instance is None or not registers:
            return sequences
        ttl = int(os.environ.get("ZAPI_ORDER_TTL") or DEFAULT_ORDER_TTL)
        kept = int(os.environ.get("CELERY_RESULT_EXPIRES") or DEFAULT_HISTORY_TTL)
        pipe = self._state_redis().pipeline(transaction=False)
        for (job_id, body, _), position in zip(jobs, sequences, strict=True):
            order = order_of(task, body, kwargs)
            if order is not None:
                keys = order_keys(instance, order)
                register_in_line(pipe, keys, job_id, position, ttl, history_ttl=kept)
        pipe.execute()
        return sequences

    def _state_redis(self) -> Any:
        if self._state is None:  # only a producer that registers in lines needs it
            self._state = redis_client(self._state_url, self._sentinel, socket_timeout=10)
        return self._state

    def enqueue_status_update(self, body: Any, **options: Any) -> str:
        return self.enqueue(Endpoint.ORDER_STATUS_UPDATE, body, **options)

    def enqueue_payment_update(self, body: Any, **options: Any) -> str:
        return self.enqueue(Endpoint.ORDER_PAYMENT_UPDATE, body, **options)

    def enqueue_send_order(self, body: Any, order_key: str | None = None, **options: Any) -> str:
        """Enqueue the order message itself (``zapi.send_order``); ``order_key``, the shop's own
        order id, names the order for its later updates (``{"orderKey": ...}``)."""
        return self.enqueue(Endpoint.SEND_ORDER, body, order_key=order_key, **options)

    def enqueue_many(
        self,
        endpoint: Endpoint,
        bodies: Iterable[Any],
        *,
        validate: bool = True,
        instance: str | None = None,
    ) -> BulkResult:
        """Enqueue many bodies in one go: invalid ones are reported, the rest are sent through
        one Redis pipeline per ``BATCH_SIZE`` messages (where the transport supports it)."""
        if instance is not None:
            check_kwargs({"instance": instance})
        outcome = BulkResult()
        accepted = []
        for index, body in enumerate(bodies):
            if validate:
                try:
                    validate_request(endpoint, body)
                except InvalidBodyError as exc:
                    outcome.rejected.append((index, str(exc)))
                    continue
            accepted.append(body)
        jobs: list[tuple[str, Any, int | None]] = [(uuid(), body, None) for body in accepted]
        task_name = TASK_NAMES[endpoint]
        sequences = self._in_line(jobs, task_name, {}, registers=instance is None)
        named = {"instance": instance} if instance is not None else {}
        with self._batched_producer() as producer:
            for (job_id, body, _), sequence in zip(jobs, sequences, strict=True):
                self._publish(producer, task_name, body, job_id, {"sequence": sequence, **named})
        outcome.job_ids = [job_id for job_id, _, _ in jobs]
        return outcome

    def send_many(self, task_name: str, bodies: Iterable[Any]) -> list[str]:
        """Publish ``bodies`` to ``task_name`` as they are (no validation, no sequence: like
        a bare ``send_task`` each), pipelined."""
        with self._batched_producer() as producer:
            return [self._publish(producer, task_name, body, uuid(), {}) for body in bodies]

    def _publish(
        self, producer: Any, name: str, body: Any, job_id: str, kwargs: dict[str, Any]
    ) -> str:
        """What ``send_task`` does, minus its per-message result subscription and ``saferepr``
        of the whole body: the two costs that dominate a bulk enqueue."""
        amqp = self.app.amqp
        options = amqp.router.route({}, name, (body,), kwargs, None)
        message = amqp.create_task_message(
            job_id, name, [body], kwargs, argsrepr=describe_body(body), kwargsrepr=repr(kwargs)
        )
        with publishing(name, job_id) as trace:
            amqp.send_task_message(producer, name, message, headers=trace, **options)
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
        try:
            reply: dict[str, str] = result.get(timeout=timeout)
        except Exception as exc:
            translated = as_contract_error(exc)
            if translated is exc:
                raise
            raise translated from None
        return reply

    def state(self, job_id: str) -> str:
        return str(AsyncResult(job_id, app=self.app).state)

    def delivery(self, job_id: str) -> dict[str, Any] | None:
        """What became of a delivered job's message, from Z-API's callbacks (through the
        webhook receiver): ``{"state", "error", "error_code", "updated_at"}``, the state one of
        accepted, sent, received, read, played, failed. None while the job has no reply (not
        delivered yet, failed, or its result or delivery record expired), or when the instance
        is unknown."""
        result: AsyncResult[Any] = AsyncResult(job_id, app=self.app)
        reply = result.result if result.state == "SUCCESS" else None
        message_id = reply.get("messageId") if isinstance(reply, dict) else None
        if not isinstance(message_id, str) or self._instance_id is None:
            return None
        found = read_delivery(self._state_redis(), self._instance_id, message_id)
        return found.as_dict() if found is not None else None

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
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


def enqueue_send_order(body: Any, order_key: str | None = None, **options: Any) -> str:
    """Validate and enqueue an order message (send-order); return the job id. ``order_key``:
    the shop's own order id, by which its updates may then name the order."""
    return _default_producer().enqueue_send_order(body, order_key, **options)


def get_result(job_id: str, timeout: float | None = None) -> dict[str, str]:
    """Wait for a job; return Z-API's reply or raise the job's error."""
    return _default_producer().get_result(job_id, timeout)
