"""The Z-API endpoints this worker calls, and which body schema each one takes."""

from __future__ import annotations

from enum import StrEnum

from tasks.schemas import OrderPaymentUpdate, OrderStatusUpdate, OrderUpdate


class Endpoint(StrEnum):
    """Path suffix under ``/instances/{id}/token/{token}/``."""

    ORDER_STATUS_UPDATE = "order-status-update"
    ORDER_PAYMENT_UPDATE = "order-payment-update"

    @property
    def schema(self) -> type[OrderUpdate]:
        return _SCHEMAS[self]


_SCHEMAS: dict[Endpoint, type[OrderUpdate]] = {
    Endpoint.ORDER_STATUS_UPDATE: OrderStatusUpdate,
    Endpoint.ORDER_PAYMENT_UPDATE: OrderPaymentUpdate,
}
