"""The one place an outcome becomes Celery's: a result, a retry, a raised error.

* :class:`Done` returns its result (SUCCESS);
* :class:`Deferred`, :class:`Retried` and :class:`PutBack` re-schedule the job with a Celery
  retry (RETRY in Flower), its headers updated; if Celery cannot publish the retry, the job is
  handed back to the broker (``Reject(requeue=True)``): Celery turns a failed publish inside
  ``Task.retry`` into a reject *without* requeue, which would drop the job;
* :class:`Buried` keeps the job as a dead letter, then raises its error (FAILURE); a dead letter
  Redis will not take hands the job back to the broker instead;
* :class:`Failed` raises its error (FAILURE, nothing to replay).

No path acks a job that is in none of these places.
"""

from __future__ import annotations

from typing import Any, NoReturn, assert_never

from celery.exceptions import Reject

from tasks import metrics
from tasks.backoff import backoff
from tasks.execution.burial import bury
from tasks.execution.job import Job, logger
from tasks.execution.outcomes import (
    DEFERRAL_REASONS,
    Buried,
    Deferred,
    Done,
    Failed,
    Outcome,
    PutBack,
    Retried,
    StateUnavailableWait,
)
from tasks.execution.story import tell

#: Backoff of a job put back after a Redis error: base and cap, seconds.
PUT_BACK_BACKOFF = (1.0, 60.0)


def finish(job: Job, outcome: Outcome) -> dict[str, Any]:
    """The job's result, or the raise that re-schedules it or ends it; its steps told first
    (tasks/execution/story.py)."""
    told = tell(job, outcome)
    if isinstance(outcome, Done):
        return outcome.result
    if isinstance(outcome, Deferred):
        reschedule(
            job,
            outcome.wait,
            outcome.countdown,
            attempts=job.state.attempts,
            slot_us=outcome.slot_us,
            extra_headers={**outcome.headers, **told},
            parks=outcome.parks,
        )
    if isinstance(outcome, Retried):
        reschedule(job, outcome.error, outcome.countdown, attempts=job.attempt)
    if isinstance(outcome, PutBack):
        put_back(job, outcome)
    if isinstance(outcome, Buried):
        if not bury(job, outcome.error):
            raise Reject(f"could not keep job {job.job_id} as a dead letter", requeue=True)
        raise outcome.error
    if isinstance(outcome, Failed):
        raise outcome.error
    assert_never(outcome)


def put_back(job: Job, outcome: PutBack) -> NoReturn:
    """Redis failed before the send (or, carrying the reply, after it): re-schedule the job,
    no attempt used, backing off."""
    if outcome.carried is None:
        job.release_quietly()
    put_backs = job.state.put_backs + 1
    countdown = backoff(put_backs, base=PUT_BACK_BACKOFF[0], cap=PUT_BACK_BACKOFF[1])
    exc = outcome.error
    reason = f"{outcome.reason} ({type(exc).__name__}: {job.redacted(exc)})"
    logger.warning(
        "job %s: %s; re-scheduled in %.1fs, no attempt used", job.job_id, reason, countdown
    )
    reschedule(
        job,
        StateUnavailableWait(reason),
        countdown,
        attempts=job.attempt if outcome.carried else job.state.attempts,
        put_backs=put_backs,
        extra_headers=outcome.carried,
    )


def reschedule(
    job: Job,
    exc: Exception,
    countdown: float,
    *,
    attempts: int,
    slot_us: int | None = None,
    put_backs: int = 0,
    extra_headers: dict[str, Any] | None = None,
    parks: bool = True,
) -> NoReturn:
    """A Celery retry; if Celery cannot publish it, hand the job back to the broker.

    ``parks``: the job keeps its turn in its order's line meanwhile (a retry, a deferral),
    and its waiters learn when it comes back."""
    deferred = DEFERRAL_REASONS.get(type(exc))
    if deferred is not None:
        metrics.DEFERRALS.labels(job.label, deferred).inc()
    headers = job.state.next_headers(attempts=attempts, slot_us=slot_us, put_backs=put_backs)
    headers.update(extra_headers or {})
    if parks and job.line is not None:
        job.line.park_quietly(countdown)
    try:
        raise job.task.retry(exc=exc, countdown=countdown, headers=headers)
    except Reject as rejected:
        # Task.retry turns a failed publish into Reject(requeue=False): the job would be gone.
        reason = rejected.args[0] if rejected.args else None
        logger.warning(
            "job %s: could not re-schedule it (%s); handed back to the broker",
            job.job_id,
            reason,
        )
        raise Reject(reason, requeue=True) from None
