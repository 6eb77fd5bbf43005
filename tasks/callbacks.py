"""What Z-API posts to our webhook receiver, as FACTS.md describes it (beside the update
schemas of :mod:`tasks.contract.schemas`, which are what we post to Z-API).

Unlike the update schemas these are lenient: Z-API adds fields over time and we must not refuse
a callback for a field we do not use (extra fields are ignored). The fields we do use are
checked, so a snapshot in the order book is always complete enough to build a full update.

The callbacks we use:

* ``ReceivedCallback`` with ``reviewAndPay`` or ``reviewOrder``: an order message; its data
  becomes the order's snapshot (tasks/state/book.py);
* ``DeliveryCallback``: the message was handed to WhatsApp, or failed (``error``);
* ``MessageStatusCallback``: SENT, RECEIVED, READ, PLAYED for message ``ids``;
* ``ConnectedCallback`` / ``DisconnectedCallback``: the instance's phone connection.

Every other type (and a ``ReceivedCallback`` without an order) is answered 200 and counted.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints

from tasks.contract.schemas import OrderStatus, PaymentStatus

#: Z-API spells the timestamp ``momment`` (ms since the epoch); a few examples say ``moment``.
_MOMENT = Field(default=None, validation_alias=AliasChoices("momment", "moment"))

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Amount = Annotated[int | float, Field(ge=0, allow_inf_nan=False)]


class Callback(BaseModel):
    """Fields every callback carries (``instanceId``, ``momment``); unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=False)

    type: str
    instanceId: NonEmpty | None = None  # noqa: N815 - Z-API's spelling
    momment: int | float | None = _MOMENT

    @property
    def at(self) -> float:
        """When it happened (epoch seconds): Z-API's ``momment``, else now."""
        return self.momment / 1000 if self.momment else time.time()


class OrderProduct(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: NonEmpty
    quantity: Annotated[int, Field(gt=0)]
    isCustomItem: bool  # noqa: N815 - Z-API's spelling
    productId: NonEmpty  # noqa: N815 - Z-API's spelling
    value: Amount


class ReviewedOrder(BaseModel):
    """``reviewAndPay`` / ``reviewOrder``: what the two update endpoints need of the order."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    referenceId: NonEmpty  # noqa: N815 - Z-API's spelling
    orderRequestId: NonEmpty  # noqa: N815 - Z-API's spelling
    orderStatus: OrderStatus  # noqa: N815 - Z-API's spelling
    paymentStatus: PaymentStatus  # noqa: N815 - Z-API's spelling
    products: Annotated[list[OrderProduct], Field(min_length=1)]
    discount: Amount | None = None
    tax: Amount | None = None
    shipping: Amount | None = None
    total: Amount | None = None
    subTotal: Amount | None = None  # noqa: N815 - Z-API's spelling


class ReceivedCallback(Callback):
    """A message the instance received (or sent, with ``notifySentByMe``)."""

    type: Literal["ReceivedCallback"]
    phone: NonEmpty
    messageId: NonEmpty  # noqa: N815 - Z-API's spelling
    reviewAndPay: ReviewedOrder | None = None  # noqa: N815 - Z-API's spelling
    reviewOrder: ReviewedOrder | None = None  # noqa: N815 - Z-API's spelling

    @property
    def order(self) -> ReviewedOrder | None:
        return self.reviewAndPay or self.reviewOrder


class DeliveryCallback(Callback):
    """The message was handed to WhatsApp, or (``error``) it was not."""

    type: Literal["DeliveryCallback"]
    messageId: NonEmpty  # noqa: N815 - Z-API's spelling
    zaapId: str | None = None  # noqa: N815 - Z-API's spelling
    phone: str | None = None
    error: str | None = None
    errorCode: str | None = None  # noqa: N815 - Z-API's spelling


class MessageStatusCallback(Callback):
    """The messages ``ids`` reached ``status`` (READ_BY_ME is the account's own read)."""

    type: Literal["MessageStatusCallback"]
    status: Literal["SENT", "RECEIVED", "READ", "READ_BY_ME", "PLAYED"]
    ids: Annotated[list[NonEmpty], Field(min_length=1, max_length=1000)]
    phone: str | None = None


class ConnectionCallback(Callback):
    """The instance's phone connected or disconnected."""

    type: Literal["ConnectedCallback", "DisconnectedCallback"]
    error: str | None = None

    @property
    def connected(self) -> bool:
        return self.type == "ConnectedCallback"


#: The callback types we act on, by ``type``.
CALLBACK_TYPES: dict[str, type[Callback]] = {
    "ReceivedCallback": ReceivedCallback,
    "DeliveryCallback": DeliveryCallback,
    "MessageStatusCallback": MessageStatusCallback,
    "ConnectedCallback": ConnectionCallback,
    "DisconnectedCallback": ConnectionCallback,
}


def callback_type(payload: dict[str, Any]) -> str:
    """The callback's ``type`` as a short, printable label (``?`` when absent or odd)."""
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind.isascii() or not 0 < len(kind) <= 64:
        return "?"
    return kind if kind.isidentifier() else "?"
