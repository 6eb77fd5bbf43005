"""One execution of an order update task, split by concern.

Every execution leaves its job in exactly one place:

* **delivered**: SUCCESS; the result is Z-API's reply (recorded for idempotency), with
  ``ambiguousAttempts`` when an earlier send may have reached Z-API too;
* **already delivered**: the key has a recorded reply; it is returned, nothing sent;
* **a dead letter**: FAILURE, kept for replay: an invalid body, Z-API's refusal, a budget spent
  (``ZAPI_MAX_ATTEMPTS`` sends or ``ZAPI_GIVE_UP_AFTER`` seconds), or an unexpected error;
* **re-scheduled** (a Celery retry, RETRY in Flower): after a transient failure (one attempt
  used), or deferred without using an attempt: for a far rate slot, a 429, a key another worker
  is sending, or a Redis error before the send;
* **handed back to the broker** (``Reject(requeue=True)``) when even re-scheduling fails, or
  when a dead letter cannot be written: the transport puts it back in the queue, now or at its
  next sweep (worker/transport.py).

The rooms: ``run`` (the steps in order), ``outcomes`` (where a job can end, as values) and
``route`` (the one place they become Celery's), ``headers`` (the job's history between
executions), ``policy`` (retries, budgets, 429s, the breaker), ``completion`` (short updates),
``recording`` (the reply after a delivery), ``spans`` (what a trace shows of it), ``burial``
(dead letters and writes that must not be lost), ``job`` (one execution's state and its attempt
log line), ``deps`` (the collaborators handed to it).
"""

from __future__ import annotations

from typing import Any

from tasks import tracing
from tasks.contract.endpoints import Endpoint
from tasks.execution import deps as _deps
from tasks.execution.job import JobTask
from tasks.execution.route import finish
from tasks.execution.run import Execution
from tasks.execution.spans import note_outcome


def deliver(
    task: JobTask,
    endpoint: Endpoint,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    deps: _deps.Deps | None = None,
) -> dict[str, Any]:
    """Run one execution of ``task`` for ``endpoint`` with the call's raw ``args`` and
    ``kwargs`` (checked inside, so that a wrong call is buried like any invalid job), with
    ``deps`` (default: the worker process's collaborators)."""
    request = task.request
    with tracing.execution(task.name, request.id or "", request.headers) as span:
        execution = Execution(task, endpoint, args, kwargs, deps or _deps.production())
        outcome = execution.outcome()
        note_outcome(span, execution.job, outcome)
        return finish(execution.job, outcome)
