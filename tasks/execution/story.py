"""An execution's steps into its job's history (tasks/state/history.py), as the job ends.

A delivered job's steps went already, in the script that recorded its reply
(tasks/execution/recording.py); every other end writes its steps here in one pipelined write.
A wait is a step only when its reason changed since the job's last one (the header
``zapi-last-wait``): a job waiting for its turn looks about once a second, and its story needs
"waiting for job X" once, not a hundred times.
"""

from __future__ import annotations

import re
from typing import Any

import redis

from tasks.execution.job import DETAIL_MAX, Job, logger
from tasks.execution.outcomes import DEFERRAL_REASONS, Buried, Deferred, Failed, Outcome
from tasks.state.history import JobHistory, Telling, head, step, story_key

LAST_WAIT_HEADER = "zapi-last-wait"
#: Numbers in a wait's text (its countdown) do not make it another wait.
_NUMBERS = re.compile(r"\d+(?:\.\d+)?s?")


def wait_key(wait: Exception) -> str:
    """What makes two waits the same wait: their kind and their text without numbers."""
    return f"{type(wait).__name__}:{_NUMBERS.sub('#', str(wait))}"[:200]


def tell(job: Job, outcome: Outcome) -> dict[str, Any]:
    """Add the outcome's own step to the execution's and write them (a delivery wrote its
    own); returns headers for the next execution (the wait just told, for a Deferred)."""
    carried: dict[str, Any] = {}
    if isinstance(outcome, Deferred):
        key = wait_key(outcome.wait)
        if job.state.headers.get(LAST_WAIT_HEADER) != key:
            reason = DEFERRAL_REASONS.get(type(outcome.wait), "wait")
            detail = str(outcome.wait)[:DETAIL_MAX]
            job.steps.append(step("wait", why=reason, detail=detail))
        carried[LAST_WAIT_HEADER] = key
    elif isinstance(outcome, Buried):
        job.steps.append(step("dead", error=type(outcome.error).__name__))
    elif isinstance(outcome, Failed):
        detail = job.redacted(outcome.error)[:DETAIL_MAX]
        job.steps.append(step("ended", error=type(outcome.error).__name__, detail=detail))
    if job.steps:
        write(job)
    return carried


def telling_of(job: Job, order: str | None) -> Telling:
    """What writing the execution's steps writes: with the job's head and, when it names an
    order (its line's), its place among that order's jobs (its sequence, else its first run)."""
    settings = job.settings
    instance = job.instance
    story = story_key(instance.instance_id, order) if order and instance is not None else ""
    position = (
        job.sequence
        if isinstance(job.sequence, int) and not isinstance(job.sequence, bool)
        else None
    )
    if position is None:
        position = round(job.state.first_attempt_at * 1_000_000)
    return Telling(
        job.job_id,
        list(job.steps),
        head(job.task.name, order),
        story,
        position,
        settings.celery_result_expires,
        settings.zapi_order_ttl,
    )


def write(job: Job) -> None:
    """Write the execution's steps; a Redis error loses them, not the job (its story is for
    people, its outcome is not)."""
    try:
        history = JobHistory(job.deps.redis, ttl=job.settings.celery_result_expires)
        order = job.line.order if job.line is not None else job.named_order
        history.tell(telling_of(job, order))
    except redis.RedisError as exc:
        logger.debug("job %s: history not written (%s)", job.job_id, type(exc).__name__)
    job.steps.clear()
