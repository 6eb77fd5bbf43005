"""What an execution's span says of where the job ended (tasks/tracing.py makes the span).

Attributes name the job by what an operator searches for (its instance alias, its order, its
attempt) and the outcome; a re-scheduling is an event with its reason and countdown, because
the wait itself happens between two executions, which the trace shows as the gap between
their spans. Nothing of the body but its order id.
"""

from __future__ import annotations

from tasks import tracing
from tasks.contract.errors import StaleUpdateError
from tasks.execution import outcomes as ended
from tasks.execution.job import Job


def _order_of(job: Job) -> str | None:
    named = job.named_order
    if named is not None:
        return str(named)
    body = job.body
    order = body.get("orderRequestId") if isinstance(body, dict) else None
    return order if isinstance(order, str) else None


def note_outcome(span: tracing.Span, job: Job, outcome: ended.Outcome) -> None:
    """Set the execution span's attributes and its end: an event for a re-scheduling (its
    reason and countdown) or a burial, the error status of a FAILURE. Each attempt's own
    event (delivered, retry, superseded, stale...) comes from its log line (Job.log)."""
    if span is tracing.OFF:
        return
    span.set(
        {
            "zapi.instance": job.label,  # as the metrics and logs name it
            "zapi.instance_alias": job.instance.alias if job.instance else None,
            "zapi.order_id": _order_of(job),
            "zapi.attempt": job.attempt,
            "zapi.outcome": _outcome_name(job, outcome),
        }
    )
    if isinstance(outcome, ended.Deferred):
        reason = ended.DEFERRAL_REASONS.get(type(outcome.wait), "deferred")
        waits_for = tracing.safe_text(outcome.wait)  # a slot, a pause, a hold, the order's turn
        span.event(
            "re-scheduled",
            {"zapi.reason": reason, "zapi.wait": waits_for, "zapi.countdown_s": outcome.countdown},
        )
    elif isinstance(outcome, ended.Retried):
        reason = type(outcome.error).__name__
        span.event("re-scheduled", {"zapi.reason": reason, "zapi.countdown_s": outcome.countdown})
    elif isinstance(outcome, ended.PutBack):
        span.event("re-scheduled", {"zapi.reason": type(outcome.error).__name__})
    elif isinstance(outcome, ended.Buried):
        span.event("dead-lettered", {"error.type": type(outcome.error).__name__})
        span.error(type(outcome.error).__name__, job.redacted(outcome.error))
    elif isinstance(outcome, ended.Failed):  # superseded (its attempt's event says so) or stale
        if isinstance(outcome.error, StaleUpdateError):
            span.event("stale", {"zapi.detail": tracing.safe_text(job.redacted(outcome.error))})
        span.error(type(outcome.error).__name__, job.redacted(outcome.error))


def _outcome_name(job: Job, outcome: ended.Outcome) -> str:
    if isinstance(outcome, ended.Done):
        return "delivered" if job.sent else "already delivered"
    return {
        ended.Deferred: "deferred",
        ended.Retried: "retried",
        ended.PutBack: "put back",
        ended.Buried: "dead-lettered",
        ended.Failed: "failed",
    }[type(outcome)]
