"""The Z-API endpoints this worker calls, and which body schema each one takes."""

from __future__ import annotations

from enum import StrEnum

from .schemas import (
    OrderPaymentUpdate,
    OrderStatusUpdate,
    OrderUpdate,
    ShortPaymentUpdate,
    ShortStatusUpdate,
    ShortUpdate,
)


class Endpoint(StrEnum):
    """Path suffix under ``/instances/{id}/token/{token}/``."""

    ORDER_STATUS_UPDATE = "order-status-update"
    ORDER_PAYMENT_UPDATE = "order-payment-update"

    @property
    def task_name(self) -> str:
        """The Celery task that sends to this endpoint (the public contract's name)."""
        return TASK_NAMES[self]

    @property
    def schema(self) -> type[OrderUpdate]:
        return _SCHEMAS[self]

    @property
    def short_schema(self) -> type[ShortUpdate]:
        """The two-field form, completed from the order book."""
        return _SHORT_SCHEMAS[self]


_SCHEMAS: dict[Endpoint, type[OrderUpdate]] = {
    Endpoint.ORDER_STATUS_UPDATE: OrderStatusUpdate,
    Endpoint.ORDER_PAYMENT_UPDATE: OrderPaymentUpdate,
}
_SHORT_SCHEMAS: dict[Endpoint, type[ShortUpdate]] = {
    Endpoint.ORDER_STATUS_UPDATE: ShortStatusUpdate,
    Endpoint.ORDER_PAYMENT_UPDATE: ShortPaymentUpdate,
}
#: Task name of each endpoint: producers call the tasks by these names.
TASK_NAMES: dict[Endpoint, str] = {
    Endpoint.ORDER_STATUS_UPDATE: "zapi.order_status_update",
    Endpoint.ORDER_PAYMENT_UPDATE: "zapi.order_payment_update",
}
