"""The end of a job that failed for good, and the writes that must not be lost.

A job buried is kept as a dead letter (tasks/state/deadletter.py) with what a replay needs;
if Redis will not take it within ``ZAPI_PERSIST_PATIENCE``, :func:`bury` says so and the job is
handed back to the broker instead of being acked into nowhere. :func:`persist` is that
patience: a Redis out of memory, read-only after a failover, or restarting, is usually back
within it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from tenacity import Retrying, retry_if_exception_type, stop_before_delay

from tasks import metrics
from tasks.backoff import backoff
from tasks.contract.errors import ZapiQueueError
from tasks.execution.job import Job, logger
from tasks.state.deadletter import DeadLetter
from tasks.state.deliveries import Burial

#: Between tries to write what must not be lost (a reply, a dead letter; for
#: ZAPI_PERSIST_PATIENCE): the backoff's base (the first wait's ceiling) and its cap, seconds.
PERSIST_FIRST_WAIT = 0.2
PERSIST_MAX_WAIT = 1.0


def bury(job: Job, exc: Exception) -> bool:
    """Keep a job that failed for good as a dead letter, and let its order's line go on.
    False: Redis did not take the letter (the caller hands the job back to the broker)."""
    message = exc.message if isinstance(exc, ZapiQueueError) else job.redacted(exc)
    dead = letter(job, type(exc).__name__, message)
    if not isinstance(exc, ZapiQueueError):
        logger.error("job %s failed unexpectedly; kept as a dead letter", job.job_id, exc_info=exc)
    if job.line is not None:
        job.line.leave_quietly()
    if not persist(job, "keep the job as a dead letter", lambda: job.deps.dead_letters.add(dead)):
        return False
    metrics.DEAD_LETTERED.labels(job.endpoint.value, job.label, dead.error_type).inc()
    return True


def bury_failed_delivery(job: Job, burial: Burial) -> None:
    """Z-API reported this message's failure before we recorded its reply."""
    logger.warning("job %s: Z-API reported its delivery failed; kept as a dead letter", job.job_id)
    persist(
        job,
        "keep the failed delivery as a dead letter",
        lambda: job.at().deliveries.bury(burial, job.deps.dead_letters),
    )


def letter(job: Job, error_type: str, error: str, *, body: Any = None) -> DeadLetter:
    """This job as a dead letter: what a replay needs (its body unless ``body`` is given),
    and why it failed."""
    return DeadLetter(
        job_id=job.job_id,
        task=job.task.name,
        body=job.body if body is None else body,
        error_type=error_type,
        error=error,
        attempts=job.state.attempts + (1 if job.sent else 0),
        first_attempt_at=job.state.first_attempt_at,
        failed_at=time.time(),
        kwargs=replay_kwargs(job),
        ambiguous_attempts=job.ambiguous,
    )


def replay_kwargs(job: Job) -> dict[str, Any]:
    """What a replay of this job passes again: its key, its place in its order, force, its
    instance, its order's key and whether it may be superseded."""
    given = {
        "idempotency_key": job.idempotency_key,
        "sequence": job.sequence,
        "force": True if job.force else None,
        "instance": job.instance_alias,
        "order_key": job.order_key,
        "supersede": job.supersede,
    }
    return {name: value for name, value in given.items() if value is not None}


def persist(job: Job, what: str, write: Callable[[], object]) -> bool:
    """Run ``write``, a Redis write that must not be lost (a reply, a dead letter), retrying
    (tenacity) with the jittered growing wait of tasks/backoff.py for up to
    ZAPI_PERSIST_PATIENCE. The job stays unacked meanwhile. False when Redis did not take it in
    time.

    The first try runs bare: it nearly always succeeds, and building tenacity's retry state
    for every job was 4% of a worker's CPU (issue #34's profile). Tenacity takes over from the
    second, with the waits and the patience the first failure already started."""
    started = time.monotonic()
    try:
        write()
    except redis.RedisError:
        logger.warning("job %s: could not %s yet; retrying", job.job_id, what)
    else:
        return True
    time.sleep(backoff(1, base=PERSIST_FIRST_WAIT, cap=PERSIST_MAX_WAIT))
    patience = job.settings.zapi_persist_patience - (time.monotonic() - started)
    retrying = Retrying(
        retry=retry_if_exception_type(redis.RedisError),
        wait=lambda state: backoff(
            state.attempt_number + 1, base=PERSIST_FIRST_WAIT, cap=PERSIST_MAX_WAIT
        ),
        stop=stop_before_delay(max(0.0, patience)),
        reraise=True,
    )
    try:
        retrying(write)
    except redis.RedisError as exc:
        logger.error(
            "job %s: could not %s (%s: %s)", job.job_id, what, type(exc).__name__, job.redacted(exc)
        )
        return False
    return True
