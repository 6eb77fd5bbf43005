"""The retry policy: what a send that got no reply leads to.

A transient failure (5xx, 408/425, a timeout, a lost connection) uses an attempt and comes back
after a jittered backoff (tasks/backoff.py), never earlier than a ``Retry-After``; a 429 pauses
the whole instance (longer at each one in a row) and comes back without using an attempt;
``ZAPI_BREAKER_FAILURES`` transient failures in a row pause the instance's sends on every
worker (tasks/instance_guard.py). Two budgets bound a job: ``ZAPI_MAX_ATTEMPTS`` sends and
``ZAPI_GIVE_UP_AFTER`` seconds since its first attempt; a spent one buries it. A refusal is
final. Each path returns its outcome; none raises.
"""

from __future__ import annotations

import logging
import time

import redis

from tasks import metrics
from tasks.backoff import backoff_delay, capped_retry_after
from tasks.contract.errors import (
    AttemptsExhaustedError,
    TransientError,
    ZapiQueueError,
    ZapiRateLimitedError,
    ZapiRejectedError,
    ZapiTransportError,
)
from tasks.execution.job import Job, logger
from tasks.execution.outcomes import Buried, Deferred, Outcome, RateLimitWait, Retried
from tasks.state.idempotency import IdempotencyStore
from tasks.state.pacing import Deferral


def after_failed_send(
    job: Job, store: IdempotencyStore, key: str, owner: str, exc: ZapiQueueError
) -> Outcome:
    """Settle a send that raised ``exc`` (in Redis: whether it may have reached Z-API), then
    decide: a pause after a 429, a retry after a transient failure, else a final refusal."""
    maybe_delivered = isinstance(exc, ZapiTransportError) and exc.ambiguous
    job.ambiguous_send = maybe_delivered
    try:
        job.ambiguous = store.after_failed_send(key, owner, ambiguous=maybe_delivered)
    except redis.RedisError:
        logger.warning("job %s: could not settle its send in Redis", job.job_id, exc_info=True)
        job.ambiguous += int(maybe_delivered)
    pace(job)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ZapiRateLimitedError):
        return after_429(job, exc)
    guard = job.at().guard
    if isinstance(exc, TransientError):
        if guard.failed(job.started):
            trip_breaker(job, exc)
        delay = next_delay(job, exc, status)
        if isinstance(delay, Buried):
            return delay
        job.log("retry", status, f"retrying in {delay:.2f}s: {exc.message}", logging.WARNING)
        return Retried(exc, delay)
    guard.succeeded()  # a refusal: Z-API is there and answering
    job.log("refused", status, exc.message, logging.WARNING)
    if job.ambiguous and isinstance(exc, ZapiRejectedError):
        return Buried(
            ZapiRejectedError(f"{exc.message}; {job.ambiguity_note()}", status_code=exc.status_code)
        )
    return Buried(exc)


def after_429(job: Job, exc: ZapiRateLimitedError) -> Outcome:
    """Pause the whole instance (longer at each 429 in a row) and come back after the
    pause, without using an attempt: Z-API refused to look at the request at all."""
    retry_after = capped(job, exc.retry_after)
    pause = penalize(job, retry_after, rate_limited=True)
    count_429(job)
    if time_left(job) <= 0:
        return give_up(job, exc, getattr(exc, "status_code", None), "ZAPI_GIVE_UP_AFTER")
    job.log("deferred", 429, f"instance paused {pause:.2f}s: {exc.message}", logging.WARNING)
    return deferred(job, Deferral(pause, None, "Z-API is rate limiting (HTTP 429)"))


def count_429(job: Job) -> None:
    """Count the 429 for the console's chart of the instance's last hour (best effort: a
    Redis that fails here only leaves the chart short)."""
    try:
        job.at().limiter.count_429(time.time())
    except redis.RedisError as exc:
        logger.warning("job %s: a 429 not counted (%s)", job.job_id, type(exc).__name__)


def deferred(job: Job, deferral: Deferral) -> Deferred:
    """Re-schedule without using an attempt (a far slot, a 429, a busy key)."""
    return Deferred(
        RateLimitWait(str(deferral)),
        min(deferral.countdown, job.settings.max_countdown),
        slot_us=deferral.slot_us,
    )


def next_delay(job: Job, exc: TransientError, status: int | None) -> float | Buried:
    """The backoff before the next attempt, or the burial when a budget is spent."""
    retry_after = capped(job, exc.retry_after)
    if retry_after is not None:
        penalize(job, retry_after, rate_limited=False)
    if job.attempt >= job.settings.zapi_max_attempts:
        return give_up(job, exc, status, "ZAPI_MAX_ATTEMPTS")
    left = time_left(job)
    if left <= 0:
        return give_up(job, exc, getattr(exc, "status_code", None), "ZAPI_GIVE_UP_AFTER")
    delay = backoff_delay(
        job.attempt,
        base=job.settings.zapi_retry_backoff,
        cap=job.settings.zapi_retry_backoff_max,
        retry_after=retry_after,
    )
    # The last attempt comes when the budget ends, not a backoff after it.
    return min(delay, job.settings.max_countdown, left)


def time_left(job: Job) -> float:
    """Seconds left of ZAPI_GIVE_UP_AFTER (none: the job gives up)."""
    return job.settings.zapi_give_up_after - (time.time() - job.state.first_attempt_at)


def give_up(job: Job, exc: ZapiQueueError, status: int | None, budget: str) -> Buried:
    elapsed = time.time() - job.state.first_attempt_at
    message = (
        f"gave up on {job.endpoint.value} after {job.attempt} attempts in {elapsed:.0f}s "
        f"({budget}); last error: {exc.message}"
    )
    if job.ambiguous:
        message += f"; {job.ambiguity_note()}"
    job.log("gave-up", status, exc.message, logging.WARNING)
    return Buried(AttemptsExhaustedError(message))


def trip_breaker(job: Job, exc: ZapiQueueError) -> None:
    """The instance failed ZAPI_BREAKER_FAILURES times in a row here: pause its sends on
    every worker (growing at each trip), so its jobs wait without using attempts."""
    pause = penalize(job, None, rate_limited=True, reason="outage")
    logger.warning(
        "instance %s: %d failures in a row (last: %s); its sends pause %.1fs",
        job.label,
        job.settings.zapi_breaker_failures,
        exc.message,
        pause,
    )


def penalize(
    job: Job, retry_after: float | None, *, rate_limited: bool, reason: str | None = None
) -> float:
    """Pause the instance on every worker; if Redis fails, this job still waits."""
    reason = reason or ("rate_limited" if rate_limited else "retry_after")
    metrics.INSTANCE_PAUSES.labels(job.label, reason).inc()
    try:
        return job.at().limiter.penalize(retry_after, rate_limited=rate_limited)
    except redis.RedisError as exc:
        logger.warning("job %s: instance pause not recorded (%s)", job.job_id, type(exc).__name__)
        return retry_after if retry_after is not None else job.settings.zapi_retry_backoff


def capped(job: Job, retry_after: float | None) -> float | None:
    """Z-API's Retry-After, at most ZAPI_RETRY_BACKOFF_MAX; a longer wish is logged."""
    if retry_after is None:
        return None
    cap = job.settings.zapi_retry_backoff_max
    if retry_after > cap:
        logger.warning(
            "job %s: Z-API asked to retry after %.0fs; waiting ZAPI_RETRY_BACKOFF_MAX (%gs)",
            job.job_id,
            retry_after,
            cap,
        )
    return capped_retry_after(retry_after, cap)


def pace(job: Job) -> None:
    """Count the recipient's interval from this send. Never hides the send's outcome."""
    try:
        job.at().limiter.pace(job.phone)
    except redis.RedisError as exc:
        logger.warning("job %s: recipient pacing not recorded (%s)", job.job_id, type(exc).__name__)
