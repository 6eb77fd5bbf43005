"""One execution's state, shared by its steps: the job as called, its history, what it learned
so far (its instance, its order's line, its claim, ambiguous sends), and its attempt log line.

The call's arguments are kept as given until :meth:`Execution.run` checks them
(tasks/execution/run.py), read as the transport read them to put the job in its order's line
(tasks/contract/ordering.arrival_of): a wrong call leaves the very line it stands in, and its
dead letter shows what came.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from celery.utils.log import get_task_logger

from config import Settings
from config.instances import Instance, alias_of
from tasks import metrics, tracing
from tasks.attempt_log import log_attempt
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import UnknownInstanceError
from tasks.contract.ordering import order_of
from tasks.contract.redaction import redact
from tasks.execution.deps import Deps, InstanceDeps
from tasks.execution.headers import JobState
from tasks.order_line import OrderLine
from tasks.state.history import step
from tasks.state.idempotency import IdempotencyStore
from tasks.state.send_times import SEND_TIMES

#: The most characters of an attempt's detail a history step keeps.
DETAIL_MAX = 300

#: Every step logs as the one module they were: log configurations and JSON logs name it.
logger = get_task_logger("tasks.delivery")


class TaskRequest(Protocol):
    """What an execution reads of Celery's task request."""

    @property
    def id(self) -> str | None: ...

    @property
    def headers(self) -> dict[str, Any] | None: ...


class JobTask(Protocol):
    """What an execution uses of its Celery task: its name, its request, its retry."""

    name: str

    @property
    def request(self) -> TaskRequest: ...

    def retry(
        self, *, exc: Exception, countdown: float, headers: dict[str, Any]
    ) -> BaseException: ...


@dataclass
class Job:
    """One run of one job; its steps read and update it."""

    task: JobTask
    endpoint: Endpoint
    deps: Deps
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: JobState = field(init=False)
    body: Any = field(init=False)
    idempotency_key: Any = field(init=False)
    sequence: Any = field(init=False)
    force: bool = field(init=False)
    instance_alias: Any = field(init=False)
    #: The shop's own order id (``zapi.send_order``'s ``order_key`` kwarg), as given.
    order_key: Any = field(init=False)
    #: The ``supersede`` kwarg when it is a boolean (else None: the setting decides).
    supersede: bool | None = field(init=False, default=None)
    #: The Z-API instance the job sends through (its ``instance`` kwarg; None: unknown, and
    #: the run fails the job with UnknownInstanceError).
    instance: Instance | None = field(init=False, default=None)
    #: The job's order's line (None: ordering off, or a short update's order not found yet).
    line: OrderLine | None = field(init=False, default=None)
    attempt: int = field(init=False)
    #: Sends of this key whose outcome is unknown (they may have reached Z-API).
    ambiguous: int = field(init=False, default=0)
    #: This execution's send may have reached Z-API unanswered.
    ambiguous_send: bool = field(init=False, default=False)
    sent: bool = field(init=False, default=False)
    claim: tuple[IdempotencyStore, str, str] | None = field(init=False, default=None)
    phone: str = field(init=False, default="?")
    started: float = field(init=False, default_factory=time.perf_counter)
    #: This execution's history steps not written yet (tasks/state/history.py).
    steps: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        args, kwargs = self.args, self.kwargs
        self.body = args[0] if args else kwargs.get("body")
        self.idempotency_key = kwargs.get("idempotency_key")
        self.sequence = kwargs.get("sequence")
        self.force = kwargs.get("force") is True
        self.instance_alias = kwargs.get("instance")
        self.order_key = kwargs.get("order_key")
        supersede = kwargs.get("supersede")
        self.supersede = supersede if isinstance(supersede, bool) else None
        self.state = JobState.of(self.task.request.headers)
        with contextlib.suppress(UnknownInstanceError):
            self.instance = self.deps.instance(alias_of(kwargs))
        if self.instance is not None:
            self.line = self.line_of(self.named_order)
        self.attempt = self.state.attempts + 1

    @property
    def named_order(self) -> str | None:
        """The order the call names (tasks/contract/ordering.order_of): the shop's key of a
        send-order or a keyed update (a ShopOrderKey), else the body's ``orderRequestId``."""
        return order_of(self.task.name, self.body, self.kwargs)

    @property
    def settings(self) -> Settings:
        return self.deps.settings

    @property
    def job_id(self) -> str:
        return self.task.request.id or ""

    @property
    def label(self) -> str:
        """The instance as logs and metrics name it (never a token)."""
        if self.instance is not None:
            return self.instance.label
        return str(self.instance_alias)

    def known_instance(self) -> Instance:
        if self.instance is None:
            return self.deps.instance(self.instance_alias)  # raises UnknownInstanceError
        return self.instance

    def at(self) -> InstanceDeps:
        """The collaborators of the job's instance (UnknownInstanceError if it has none)."""
        return self.deps.of(self.known_instance())

    def line_of(self, order: str | None) -> OrderLine | None:
        """The job's line in ``order``, or None when ordering is off or the order unknown."""
        return OrderLine.of(order, self.job_id, self.state.headers, self.settings, self.at().lines)

    def release_quietly(self) -> None:
        """Give up the job's claim; if Redis fails, the claim expires after its lease."""
        if self.claim is None:
            return
        store, key, owner = self.claim
        with contextlib.suppress(redis.RedisError):
            store.release(key, owner)

    def redacted(self, exc: BaseException) -> str:
        return redact(str(exc), self.settings.secret_values())

    def ambiguity_note(self) -> str:
        return (
            f"{self.ambiguous} earlier send(s) may have reached Z-API (ambiguous: a timeout or "
            "a lost connection after the request was written)"
        )

    def log(
        self,
        outcome: str,
        status: int | None,
        detail: str = "",
        level: int = logging.INFO,
        **ids: str,
    ) -> None:
        """The attempt's log line and metrics (tasks/attempt_log.py), and its step in the job's
        history (tasks/state/history.py; ``ids``: Z-API's, for a delivery)."""
        duration = time.perf_counter() - self.started
        self.steps.append(
            step(
                outcome,
                attempt=self.attempt if self.sent else None,
                status=status,
                ms=round(duration * 1000, 1) if self.sent else None,
                detail=detail[:DETAIL_MAX] or None,
                **ids,
            )
        )
        if tracing.enabled():  # the detail's redaction is not for nothing on every attempt
            tracing.current().event(
                outcome,
                {
                    "zapi.attempt": self.attempt,
                    "http.response.status_code": status,
                    "zapi.detail": tracing.safe_text(detail) if detail else None,
                },
            )
        metrics.count_attempt(
            endpoint=self.endpoint.value,
            instance=self.label,
            outcome=outcome,
            duration=duration,
            ambiguous_send=self.ambiguous_send,
        )
        if self.sent and self.instance is not None and outcome in metrics.SENDING_OUTCOMES:
            SEND_TIMES.observe(self.deps.redis, self.instance.instance_id, duration)
        log_attempt(
            job_id=self.job_id,
            endpoint=self.endpoint.value,
            instance=self.label,
            phone=self.phone,
            attempt=self.attempt,
            status=status,
            duration=duration,
            outcome=outcome,
            detail=detail,
            level=level,
            ambiguous=self.ambiguous,
        )
