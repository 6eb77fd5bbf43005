"""One execution of an order update task: validate, wait for a rate slot, send, decide.

A task execution ends in exactly one of four ways:

* **delivered**: the result is Z-API's reply;
* **failed for good**: a PermanentError (or AttemptsExhaustedError) marks the job FAILURE;
* **retry**: a transient failure re-schedules the job with backoff (Celery retry);
* **deferred**: its rate slot is further than ``ZAPI_RATE_MAX_WAIT`` away, so the job is
  re-scheduled to its slot instead of holding a worker thread. A deferral is not an attempt.

Send attempts are counted in a message header (``zapi-attempts``), not with Celery's
``request.retries``, which also counts deferrals. The reserved slot travels in ``zapi-slot``.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn

from celery import Task
from celery.utils.log import get_task_logger

from config import Settings, get_settings
from tasks.backoff import backoff_delay
from tasks.client import get_client
from tasks.endpoints import Endpoint
from tasks.errors import AttemptsExhaustedError, TransientError, ZapiQueueError
from tasks.ratelimit import RateLimiter, SlotCheck, get_limiter
from tasks.schemas import OrderUpdate
from tasks.validation import validate_body

logger = get_task_logger(__name__)

ATTEMPTS_HEADER = "zapi-attempts"
SLOT_HEADER = "zapi-slot"

#: Re-scheduled countdowns stay far below Redis' visibility timeout (1 h), which would
#: otherwise re-deliver the waiting message a second time.
MAX_DEFER_SECONDS = 600.0

#: Slot look-ups in one execution before the job is re-scheduled instead (contention).
MAX_SLOT_ROUNDS = 4


class RateLimitWait(ZapiQueueError):  # noqa: N818 - a wait, not an error
    """Not an error: the job's rate slot is later; it is re-scheduled for it (shows as RETRY)."""


def deliver(task: Task[Any, Any], endpoint: Endpoint, body: Any) -> dict[str, str]:
    """Run one execution of ``task`` for ``endpoint``; see the module docstring."""
    settings = get_settings()
    update = validate_body(endpoint, body)
    headers = dict(task.request.headers or {})
    attempt = int(headers.get(ATTEMPTS_HEADER, 0)) + 1
    limiter = get_limiter()
    _wait_for_slot(task, limiter, settings, update, headers)

    started = time.perf_counter()
    try:
        reply = get_client().send(endpoint, update.to_wire())
    except TransientError as exc:
        _after_transient_failure(task, limiter, settings, endpoint, exc, attempt, started)
    logger.info(
        "%s attempt %d delivered in %.3fs: zaapId=%s",
        endpoint.value,
        attempt,
        time.perf_counter() - started,
        reply.zaapId,
    )
    return reply.to_result()


def _wait_for_slot(
    task: Task[Any, Any],
    limiter: RateLimiter,
    settings: Settings,
    update: OrderUpdate,
    headers: dict[str, Any],
) -> None:
    """Return at this job's slot time, or re-schedule the job (raises Retry) if it is far.

    A slot is given up for a new one when Z-API paused the instance after it was reserved, or
    when the job arrives too late for it (a late send would bunch with the next ones).
    """
    slot = headers.get(SLOT_HEADER)
    check = limiter.check(int(slot)) if slot is not None else None
    for _ in range(MAX_SLOT_ROUNDS):
        if check is not None and (check.cancelled or check.wait < -limiter.late_tolerance):
            logger.debug(
                "rate slot %s by %.1f ms; taking a new one",
                "cancelled by a pause" if check.cancelled else "missed",
                -check.wait * 1000,
            )
        if check is None or check.cancelled or check.wait < -limiter.late_tolerance:
            reservation = limiter.reserve(update.phone)
            if not reservation.granted:
                _defer(task, headers, reservation.wait, slot_us=None, why="recipient pacing")
            check = SlotCheck(reservation.slot_us, reservation.now_us, paused_until_us=0)
        if check.wait <= 0:
            return
        if check.wait > settings.zapi_rate_max_wait:
            # Wake a little early; the remainder is slept, so the slot is met precisely.
            countdown = check.wait - settings.zapi_rate_max_wait / 2
            _defer(task, headers, countdown, check.slot_us, why="rate limit")
        time.sleep(check.wait)
        check = limiter.check(check.slot_us)
    _defer(task, headers, limiter.late_tolerance, slot_us=None, why="rate limit")


def _defer(
    task: Task[Any, Any],
    headers: dict[str, Any],
    countdown: float,
    slot_us: int | None,
    why: str,
) -> NoReturn:
    headers = dict(headers)
    headers.pop(SLOT_HEADER, None)
    if slot_us is not None:
        headers[SLOT_HEADER] = slot_us
    countdown = min(max(countdown, 0.0), MAX_DEFER_SECONDS)
    raise task.retry(
        exc=RateLimitWait(f"waiting {countdown:.2f}s for a send slot ({why})"),
        countdown=countdown,
        max_retries=None,
        headers=headers,
    )


def _after_transient_failure(
    task: Task[Any, Any],
    limiter: RateLimiter,
    settings: Settings,
    endpoint: Endpoint,
    exc: TransientError,
    attempt: int,
    started: float,
) -> NoReturn:
    """Slow the instance down if Z-API asked, then retry with backoff or give up."""
    elapsed = time.perf_counter() - started
    if exc.retry_after is not None or exc.status_code == 429:
        limiter.penalize(exc.retry_after if exc.retry_after is not None else 1.0)
    if attempt >= settings.zapi_max_attempts:
        raise AttemptsExhaustedError(
            f"gave up on {endpoint.value} after {attempt} attempts; last error: {exc.message}"
        ) from None
    delay = backoff_delay(
        attempt,
        base=settings.zapi_retry_backoff,
        cap=settings.zapi_retry_backoff_max,
        retry_after=exc.retry_after,
    )
    logger.warning(
        "%s attempt %d/%d failed after %.3fs, retrying in %.2fs: %s",
        endpoint.value,
        attempt,
        settings.zapi_max_attempts,
        elapsed,
        delay,
        exc.message,
    )
    headers = {k: v for k, v in (task.request.headers or {}).items() if k != SLOT_HEADER}
    headers[ATTEMPTS_HEADER] = attempt
    raise task.retry(exc=exc, countdown=delay, max_retries=None, headers=headers) from None
