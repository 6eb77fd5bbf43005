"""The two Celery tasks of the public contract, and the delivery they share.

Producers call them by name: ``send_task("zapi.order_status_update", args=[body])``, optionally
with ``kwargs``: ``idempotency_key`` (a repeat with the same key is not sent again),
``sequence`` (the update's position among its order's updates, e.g. the shop's order version)
and ``force`` (send it even if it would move its order backward). What one execution does is
in :mod:`tasks.delivery`.
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from tasks.delivery import deliver
from tasks.endpoints import Endpoint
from tasks.errors import AttemptsExhaustedError, PermanentError

ORDER_STATUS_UPDATE = "zapi.order_status_update"
ORDER_PAYMENT_UPDATE = "zapi.order_payment_update"

# Expected failures: Celery logs them in one line instead of a traceback.
_EXPECTED = (PermanentError, AttemptsExhaustedError)

# Celery's retry limit counts deferrals for a rate slot too; ZAPI_MAX_ATTEMPTS bounds the sends
# (tasks.delivery), so Celery's own limit is off. Passing max_retries=None to retry() would not
# do: there None means "the task's default", which is 3.
_OPTIONS: dict[str, Any] = {
    "bind": True,
    "throws": _EXPECTED,
    "max_retries": None,
    # Masks the phone in what the worker reports (events, Flower, inspect).
    "Request": "tasks.request:OrderUpdateRequest",
}


@shared_task(name=ORDER_STATUS_UPDATE, **_OPTIONS)
def order_status_update(
    self: Task[Any, Any],
    body: Any,
    idempotency_key: str | None = None,
    sequence: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Send an order status update; the result is Z-API's ``{zaapId, messageId, id}``."""
    return deliver(
        self, Endpoint.ORDER_STATUS_UPDATE, body, idempotency_key, sequence=sequence, force=force
    )


@shared_task(name=ORDER_PAYMENT_UPDATE, **_OPTIONS)
def order_payment_update(
    self: Task[Any, Any],
    body: Any,
    idempotency_key: str | None = None,
    sequence: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Send an order payment update; the result is Z-API's ``{zaapId, messageId, id}``."""
    return deliver(
        self, Endpoint.ORDER_PAYMENT_UPDATE, body, idempotency_key, sequence=sequence, force=force
    )
