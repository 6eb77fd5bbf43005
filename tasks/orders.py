"""The two Celery tasks of the public contract, and the delivery they share.

Producers call them by name: ``send_task("zapi.order_status_update", args=[body])``, optionally
with ``kwargs``: ``idempotency_key`` (a repeat with the same key is not sent again),
``sequence`` (the update's position among its order's updates, e.g. the shop's order version),
``force`` (send it even if it would move its order backward) and ``instance`` (the alias of
the Z-API instance to send through). The call's shape and each kwarg's type and range are
checked inside the execution (tasks/contract/job_kwargs.py), so a wrong call ends like any
other invalid job: FAILURE at once, a dead letter, its order's line released. What one
execution does is in :mod:`tasks.execution`.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import AttemptsExhaustedError, PermanentError
from tasks.execution import deliver
from tasks.request import OrderUpdateTask

ORDER_STATUS_UPDATE = Endpoint.ORDER_STATUS_UPDATE.task_name
ORDER_PAYMENT_UPDATE = Endpoint.ORDER_PAYMENT_UPDATE.task_name

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


@shared_task(name=ORDER_STATUS_UPDATE, **_OPTIONS)
def order_status_update(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Send an order status update; the result is Z-API's ``{zaapId, messageId, id}``."""
    return deliver(self, Endpoint.ORDER_STATUS_UPDATE, args, kwargs)


@shared_task(name=ORDER_PAYMENT_UPDATE, **_OPTIONS)
def order_payment_update(self: Task[Any, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Send an order payment update; the result is Z-API's ``{zaapId, messageId, id}``."""
    return deliver(self, Endpoint.ORDER_PAYMENT_UPDATE, args, kwargs)
