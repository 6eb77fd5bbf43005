"""The Z-API endpoints this worker calls: one registry, read by everything that lists them.

Each endpoint is described once, in :data:`REGISTRY`: its route under
``/instances/{id}/token/{token}/``, the Celery task that sends to it (the public contract's name),
the body's schema, its two-field form (completed from the order book) if it has one, the kwargs
its task takes besides the common ones, and the word the CLI uses for it. The tasks
(tasks/orders.py), the producer, ``zapi-queue enqueue``, the fake Z-API and the JSON Schemas
(``make schemas``) all read it, so adding an endpoint means its schema, its entry here and its
tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .schemas import (
    OrderPaymentUpdate,
    OrderStatusUpdate,
    OrderUpdate,
    ShortPaymentUpdate,
    ShortStatusUpdate,
    ShortUpdate,
    ZapiModel,
)
from .send_order import SendOrder


class Endpoint(StrEnum):
    """Path suffix under ``/instances/{id}/token/{token}/``; :data:`REGISTRY` says the rest."""

    ORDER_STATUS_UPDATE = "order-status-update"
    ORDER_PAYMENT_UPDATE = "order-payment-update"
    SEND_ORDER = "send-order"

    @property
    def spec(self) -> EndpointSpec:
        return REGISTRY[self]

    @property
    def task_name(self) -> str:
        """The Celery task that sends to this endpoint (the public contract's name)."""
        return self.spec.task_name

    @property
    def schema(self) -> type[ZapiModel]:
        return self.spec.schema

    @property
    def short_schema(self) -> type[ShortUpdate] | None:
        """The two-field form, completed from the order book; None for an endpoint without
        one (send-order: there is no order to complete it from yet)."""
        return self.spec.short_schema


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """What one endpoint is, for every part that lists endpoints."""

    #: The Celery task producers call by name.
    task_name: str
    #: The body as Z-API's docs spell it.
    schema: type[ZapiModel]
    #: ``zapi-queue enqueue KIND``.
    cli_kind: str
    #: The task's one-line description (its docstring; Flower and ``inspect registered``).
    summary: str
    #: The two-field form (an order's name and the one field this endpoint changes), if any.
    short_schema: type[ShortUpdate] | None = None
    #: That one field, by its wire name: what a short form keeps of a full body.
    short_field: str | None = None
    #: The kwargs this task takes besides the common ones (tasks/contract/job_kwargs.py).
    kwargs: tuple[str, ...] = ()


REGISTRY: dict[Endpoint, EndpointSpec] = {
    Endpoint.ORDER_STATUS_UPDATE: EndpointSpec(
        task_name="zapi.order_status_update",
        schema=OrderStatusUpdate,
        short_schema=ShortStatusUpdate,
        short_field="orderStatus",
        cli_kind="status",
        summary="Send an order status update; the result is Z-API's {zaapId, messageId, id}.",
        kwargs=("supersede",),
    ),
    Endpoint.ORDER_PAYMENT_UPDATE: EndpointSpec(
        task_name="zapi.order_payment_update",
        schema=OrderPaymentUpdate,
        short_schema=ShortPaymentUpdate,
        short_field="paymentStatus",
        cli_kind="payment",
        summary="Send an order payment update; the result is Z-API's {zaapId, messageId, id}.",
        kwargs=("supersede",),
    ),
    Endpoint.SEND_ORDER: EndpointSpec(
        task_name="zapi.send_order",
        schema=SendOrder,
        cli_kind="order",
        summary="Send an order message; the result is Z-API's {zaapId, messageId, id}.",
        kwargs=("order_key",),
    ),
}

#: Task name of each endpoint: producers call the tasks by these names.
TASK_NAMES: dict[Endpoint, str] = {endpoint: spec.task_name for endpoint, spec in REGISTRY.items()}
#: The endpoint of each task name.
BY_TASK_NAME: dict[str, Endpoint] = {name: endpoint for endpoint, name in TASK_NAMES.items()}
#: The endpoint of each ``zapi-queue enqueue`` kind.
BY_CLI_KIND: dict[str, Endpoint] = {spec.cli_kind: e for e, spec in REGISTRY.items()}
#: The endpoints whose bodies are order updates (a full body, or a short form to complete).
UPDATE_ENDPOINTS: tuple[Endpoint, ...] = tuple(
    endpoint for endpoint in Endpoint if issubclass(endpoint.schema, OrderUpdate)
)
