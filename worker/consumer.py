"""The worker's consumer: a message no task can take is kept as a dead letter, not logged.

Celery's consumer logs a message it cannot run (an unregistered task name, a body it cannot
decode, a message of no known protocol) at ERROR with the whole body, the customer's phone in
it, and then drops it. A mistyped name (``zapi.order_status_updat``) lost the job and leaked
the phone. Here such a message ends like any job that cannot succeed: FAILURE in the result
backend (``UnknownTaskError`` or ``InvalidMessageError``, the name shown), a dead letter with
what came (so it can be looked at, fixed and replayed with ``zapi-queue dead replay --as-task``),
and one log line without body or headers. Only once the letter is written is the message
acked; if Redis cannot take it, the message stays unacked (restored when its channel closes or
its lease runs out) rather than lost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery.worker.consumer import Consumer as CeleryConsumer

from config import get_settings
from tasks.contract.endpoints import TASK_NAMES
from tasks.contract.errors import InvalidMessageError, UnknownTaskError, ZapiQueueError
from tasks.contract.job_kwargs import OPTIONAL_KWARGS
from tasks.contract.redaction import redact
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tasks.state.store import get_redis

logger = logging.getLogger("zapi_queue.consumer")

#: How a letter names a message that carried no task name.
NO_TASK = "(none)"


class Consumer(CeleryConsumer):
    """Celery's consumer, keeping what it cannot run instead of logging and dropping it; on a
    shutdown it first gives back what it will not run (worker/drain.py)."""

    def on_close(self) -> None:
        drain = getattr(self, "drain", None)  # the Drain step's, once it is built
        if drain is not None:
            drain.begin(self)  # before Celery forgets the jobs it had not started
        super().on_close()

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = _header(message, "task") or NO_TASK
        known = ", ".join(sorted(TASK_NAMES.values()))
        error = UnknownTaskError(
            f"task {_shown(name)} is not registered in this worker (it runs {known}): nothing "
            "was sent; fix the name and replay it (zapi-queue dead replay --as-task NAME)"
        )
        self._keep(message, name, error)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._invalid(message, f"not a task message this worker can run ({type(exc).__name__})")

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        kind = type(exc).__name__
        self._invalid(message, f"its body cannot be decoded ({kind}, {message.content_type!r})")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._invalid(message, "it follows no Celery message protocol")

    def _invalid(self, message: Any, why: str) -> None:
        name = _header(message, "task") or NO_TASK
        error = InvalidMessageError(f"message for task {_shown(name)}: {why}: nothing was sent")
        self._keep(message, name, error)

    def _keep(self, message: Any, name: str, error: ZapiQueueError) -> None:
        """Dead letter, FAILURE and one log line; then the ack. The letter first: a message
        acked before it is written would be lost if Redis failed in between."""
        job_id = _header(message, "id") or str(message.delivery_tag)
        args, kwargs = _call(message)
        now = time.time()
        letter = DeadLetter(
            job_id=job_id,
            task=name,
            body=args[0] if args else kwargs.get("body"),
            error_type=type(error).__name__,
            error=error.message,
            attempts=0,
            first_attempt_at=now,
            failed_at=now,
            kwargs={k: v for k, v in kwargs.items() if k in OPTIONAL_KWARGS},
        )
        try:
            DeadLetterStore.from_settings(get_redis(), get_settings()).add(letter)
        except redis.RedisError as exc:
            logger.error(  # noqa: TRY400 - one line: the cause is known
                "job %s: %s; could not keep it as a dead letter (%s): left unacked",
                job_id,
                error.message,
                _redacted(exc),
            )
            return
        logger.error("job %s: %s; kept as a dead letter", job_id, error.message)
        try:
            self.app.backend.mark_as_failure(job_id, error)
        except Exception as exc:  # noqa: BLE001 - the letter is kept; the ack must still come
            logger.warning("job %s: FAILURE not stored (%s)", job_id, _redacted(exc))
        dispatcher = getattr(self, "event_dispatcher", None)  # set by the Events step
        if dispatcher:
            dispatcher.send(
                "task-failed", uuid=job_id, exception=f"{type(error).__name__}({error.message!r})"
            )
        message.reject_log_error(logger, getattr(self, "connection_errors", ()))


def _header(message: Any, name: str) -> str | None:
    headers = message.headers if isinstance(message.headers, dict) else {}
    value = headers.get(name)
    return value if isinstance(value, str) and value else None


def _call(message: Any) -> tuple[list[Any], dict[str, Any]]:
    """The (args, kwargs) a protocol 2 message carries, or empty ones when it does not."""
    try:
        decoded = message.decode()
        args, kwargs = decoded[0], decoded[1]
    except Exception:  # noqa: BLE001 - anything undecodable is kept without a body
        return [], {}
    return (
        list(args) if isinstance(args, list | tuple) else [],
        kwargs if isinstance(kwargs, dict) else {},
    )


def _shown(name: str) -> str:
    """A task name as a log line may show it: bounded, printable."""
    return repr(name[:200])


def _redacted(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}", get_settings().secret_values())
