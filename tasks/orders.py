"""The Celery tasks of the public contract, one per endpoint of the registry
(tasks/contract/endpoints.py), and the delivery they share.

Producers call them by name: ``send_task("zapi.order_status_update", args=[body])``, optionally
with ``kwargs``: ``idempotency_key`` (a repeat with the same key is not sent again),
``sequence`` (the update's position among its order's updates, e.g. the shop's order version),
``force`` (send it even if it would move its order backward) and ``instance`` (the alias of
the Z-API instance to send through); ``zapi.send_order`` also takes ``order_key`` (the shop's
own order id). The call's shape and each kwarg's type and range are checked inside the
execution (tasks/contract/job_kwargs.py), so a wrong call ends like any other invalid job:
FAILURE at once, a dead letter, its order's line released. What one execution does is in
:mod:`tasks.execution`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task, shared_task

from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import AttemptsExhaustedError, PermanentError
from tasks.execution import deliver
from tasks.request import OrderUpdateTask

# Expected failures: Celery logs them in one line instead of a traceback.
_EXPECTED = (PermanentError, AttemptsExhaustedError)

# Celery's retry limit counts deferrals for a rate slot too; ZAPI_MAX_ATTEMPTS bounds the sends
# (tasks.execution.policy), so Celery's own limit is off. Passing max_retries=None to retry()
# would not do: there None means "the task's default", which is 3.
_OPTIONS: dict[str, Any] = {
    "bind": True,
    "throws": _EXPECTED,
    "max_retries": None,
    # Masks the phone in what the worker reports (events, Flower, inspect), retries included.
    "Request": "tasks.request:OrderUpdateRequest",
    "base": OrderUpdateTask,
}


def _task_for(endpoint: Endpoint) -> Task[Any, Any]:
    """The task that sends to ``endpoint``, under its registry name and description."""

    def send(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        return deliver(self, endpoint, args, kwargs)

    spec = endpoint.spec
    send.__name__ = send.__qualname__ = spec.task_name.rpartition(".")[2]
    send.__doc__ = spec.summary
    register: Callable[[Callable[..., Any]], Task[Any, Any]] = shared_task(
        name=spec.task_name, **_OPTIONS
    )
    return register(send)


#: Every endpoint's task, registered with Celery on import.
TASKS: dict[Endpoint, Task[Any, Any]] = {endpoint: _task_for(endpoint) for endpoint in Endpoint}
order_status_update = TASKS[Endpoint.ORDER_STATUS_UPDATE]
order_payment_update = TASKS[Endpoint.ORDER_PAYMENT_UPDATE]
send_order = TASKS[Endpoint.SEND_ORDER]
