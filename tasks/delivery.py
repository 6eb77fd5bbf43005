"""One execution of an order update task: validate, claim, wait for a slot, send, decide.

An execution ends in exactly one of these ways:

* **delivered**: the result is Z-API's reply (recorded for idempotency);
* **already delivered**: the idempotency key has a recorded reply; it is returned, nothing sent;
* **failed for good**: PermanentError or AttemptsExhaustedError marks the job FAILURE and the
  job is kept as a dead letter;
* **retry**: a transient failure re-schedules the job with backoff (Celery retry);
* **deferred**: its rate slot is far, or another worker is sending the same job, so it is
  re-scheduled (Celery retry, shown as RETRY) without using up an attempt.

Per-job state travels in message headers, because Celery's ``request.retries`` counts
deferrals too: ``zapi-attempts`` (sends so far), ``zapi-slot`` (reserved slot, µs of Redis'
clock), ``zapi-first-attempt`` (epoch seconds).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import redis
from celery import Task
from celery.utils.log import get_task_logger

from config import Settings, get_settings
from tasks.attempt_log import log_attempt
from tasks.backoff import backoff_delay
from tasks.client import get_client
from tasks.deadletter import DeadLetter, DeadLetterStore
from tasks.endpoints import Endpoint
from tasks.errors import (
    AttemptsExhaustedError,
    InvalidBodyError,
    PermanentError,
    TransientError,
    ZapiQueueError,
)
from tasks.idempotency import ClaimState, IdempotencyStore, derive_key, owner_id
from tasks.pacing import Deferral, wait_for_slot
from tasks.per_process import PerProcess
from tasks.ratelimit import get_limiter
from tasks.store import get_redis
from tasks.validation import validate_body

logger = get_task_logger(__name__)

ATTEMPTS_HEADER = "zapi-attempts"
SLOT_HEADER = "zapi-slot"
FIRST_ATTEMPT_HEADER = "zapi-first-attempt"
MAX_IDEMPOTENCY_KEY = 200


class RateLimitWait(ZapiQueueError):  # noqa: N818 - a wait, not an error
    """Stored while a job is re-scheduled for its rate slot (shows as RETRY in Flower)."""


@dataclass(frozen=True, slots=True)
class JobState:
    """What one execution knows of the job's history, read from the message headers."""

    headers: dict[str, Any]
    attempts: int
    slot_us: int | None
    first_attempt_at: float

    @classmethod
    def of(cls, task: Task[Any, Any]) -> JobState:
        headers = dict(task.request.headers or {})
        slot = headers.get(SLOT_HEADER)
        return cls(
            headers=headers,
            attempts=int(headers.get(ATTEMPTS_HEADER, 0)),
            slot_us=int(slot) if slot is not None else None,
            first_attempt_at=float(headers.get(FIRST_ATTEMPT_HEADER, time.time())),
        )

    def next_headers(self, *, attempts: int, slot_us: int | None = None) -> dict[str, Any]:
        headers = {k: v for k, v in self.headers.items() if k != SLOT_HEADER}
        headers[ATTEMPTS_HEADER] = attempts
        headers[FIRST_ATTEMPT_HEADER] = self.first_attempt_at
        if slot_us is not None:
            headers[SLOT_HEADER] = slot_us
        return headers


def _idempotency_store() -> IdempotencyStore:
    settings = get_settings()
    return IdempotencyStore(
        get_redis(),
        instance_id=settings.zapi_credentials().instance_id,
        ttl=settings.zapi_idempotency_ttl,
        # Covers the sleep for a rate slot and the send itself.
        lease=settings.zapi_rate_max_wait
        + settings.zapi_timeout
        + settings.zapi_connect_timeout
        + 5,
    )


_idempotency = PerProcess(_idempotency_store)
_dead_letters = PerProcess(lambda: DeadLetterStore(get_redis()))


def deliver(
    task: Task[Any, Any], endpoint: Endpoint, body: Any, idempotency_key: Any = None
) -> dict[str, str]:
    """Run one execution of ``task`` for ``endpoint``; see the module docstring."""
    state = JobState.of(task)
    try:
        return _deliver(task, endpoint, body, idempotency_key, state)
    except (PermanentError, AttemptsExhaustedError) as exc:
        _bury(task, body, idempotency_key, state, exc)
        raise


def _deliver(
    task: Task[Any, Any], endpoint: Endpoint, body: Any, idempotency_key: Any, state: JobState
) -> dict[str, str]:
    settings = get_settings()
    update = validate_body(endpoint, body)
    wire = update.to_wire()
    key = _checked_key(idempotency_key) or derive_key(endpoint.value, wire)

    # Claim first: a repeat returns at once without taking a rate slot, and nothing runs
    # between the slot and the send (a round trip there would blur the spacing).
    owner = owner_id(task.request.id or "")
    store = _idempotency.get()
    claim = store.claim(key, owner)
    if claim.state is ClaimState.DELIVERED and claim.reply is not None:
        logger.info("%s already delivered (key %s): nothing sent", endpoint.value, key[:24])
        return claim.reply
    if claim.state is ClaimState.BUSY:
        _defer(task, state, Deferral(1.0, None, "same job in flight elsewhere"), settings)
    try:
        wait_for_slot(get_limiter(), update.phone, state.slot_us, settings.zapi_rate_max_wait)
    except Deferral as deferral:
        store.release(key, owner)
        _defer(task, state, deferral, settings)

    attempt = state.attempts + 1
    started = time.perf_counter()

    def log(outcome: str, status: int | None, detail: str = "", level: int = logging.INFO) -> None:
        log_attempt(
            job_id=task.request.id or "",
            endpoint=endpoint.value,
            instance=settings.instance_alias,
            phone=update.phone,
            attempt=attempt,
            status=status,
            duration=time.perf_counter() - started,
            outcome=outcome,
            detail=detail,
            level=level,
        )

    try:
        reply = get_client().send(endpoint, wire).to_result()
    except ZapiQueueError as exc:
        store.release(key, owner)
        status = getattr(exc, "status_code", None)
        if isinstance(exc, TransientError):
            try:
                delay = _after_transient_failure(state, settings, endpoint, exc, attempt)
            except AttemptsExhaustedError:
                log("gave-up", status, exc.message, logging.WARNING)
                raise
            log("retry", status, f"retrying in {delay:.2f}s: {exc.message}", logging.WARNING)
            raise task.retry(
                exc=exc, countdown=delay, headers=state.next_headers(attempts=attempt)
            ) from None
        log("refused", status, exc.message, logging.WARNING)
        raise
    finally:
        # The recipient's interval counts from the send, whatever came of it.
        get_limiter().pace(update.phone)
    _remember(store, key, reply)
    log("delivered", 200, f"zaapId={reply['zaapId']}")
    return reply


def _checked_key(idempotency_key: Any) -> str | None:
    if idempotency_key is None:
        return None
    if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidBodyError(
            f"idempotency_key: must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY} "
            "characters"
        )
    return "key:" + idempotency_key


def _remember(store: IdempotencyStore, key: str, reply: dict[str, str]) -> None:
    """Record the reply; if Redis cannot take it, the job is still delivered: say so."""
    try:
        store.record(key, reply)
    except redis.RedisError:
        logger.exception(
            "delivered, but the reply could not be recorded: a re-delivery of this job "
            "would send it again"
        )


def _defer(
    task: Task[Any, Any], state: JobState, deferral: Deferral, settings: Settings
) -> NoReturn:
    raise task.retry(
        exc=RateLimitWait(str(deferral)),
        countdown=min(deferral.countdown, settings.max_countdown),
        headers=state.next_headers(attempts=state.attempts, slot_us=deferral.slot_us),
    )


def _after_transient_failure(
    state: JobState,
    settings: Settings,
    endpoint: Endpoint,
    exc: TransientError,
    attempt: int,
) -> float:
    """Slow the instance down if Z-API asked; return the backoff, or raise if out of attempts."""
    if exc.retry_after is not None or exc.status_code == 429:
        get_limiter().penalize(exc.retry_after if exc.retry_after is not None else 1.0)
    if attempt >= settings.zapi_max_attempts:
        raise AttemptsExhaustedError(
            f"gave up on {endpoint.value} after {attempt} attempts; last error: {exc.message}"
        ) from None
    return min(
        backoff_delay(
            attempt,
            base=settings.zapi_retry_backoff,
            cap=settings.zapi_retry_backoff_max,
            retry_after=exc.retry_after,
        ),
        settings.max_countdown,
    )


def _bury(
    task: Task[Any, Any],
    body: Any,
    idempotency_key: Any,
    state: JobState,
    exc: ZapiQueueError,
) -> None:
    """Keep a job that failed for good as a dead letter (never lose it silently)."""
    # Every failure but an invalid body (or key) comes from this execution's send.
    sent = state.attempts + (0 if isinstance(exc, InvalidBodyError) else 1)
    letter = DeadLetter(
        job_id=task.request.id or "",
        task=task.name,
        body=body,
        error_type=type(exc).__name__,
        error=exc.message,
        attempts=sent,
        first_attempt_at=state.first_attempt_at,
        failed_at=time.time(),
        kwargs={"idempotency_key": idempotency_key} if idempotency_key is not None else {},
    )
    try:
        _dead_letters.get().add(letter)
    except redis.RedisError:
        logger.exception("could not keep job %s as a dead letter", letter.job_id)
