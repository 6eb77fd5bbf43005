"""The two Celery tasks of the public contract, and the delivery they share.

Producers call them by name: ``send_task("zapi.order_status_update", args=[body])``. What one
execution does is in :mod:`tasks.delivery`.
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


@shared_task(name=ORDER_STATUS_UPDATE, bind=True, throws=_EXPECTED)
def order_status_update(self: Task[Any, Any], body: Any) -> dict[str, str]:
    """Send an order status update; the result is Z-API's ``{zaapId, messageId, id}``."""
    return deliver(self, Endpoint.ORDER_STATUS_UPDATE, body)


@shared_task(name=ORDER_PAYMENT_UPDATE, bind=True, throws=_EXPECTED)
def order_payment_update(self: Task[Any, Any], body: Any) -> dict[str, str]:
    """Send an order payment update; the result is Z-API's ``{zaapId, messageId, id}``."""
    return deliver(self, Endpoint.ORDER_PAYMENT_UPDATE, body)
