"""What Z-API posts to our webhook receiver, as FACTS.md describes it (beside the update
schemas of :mod:`tasks.contract.schemas`, which are what we post to Z-API).

Unlike the update schemas these are lenient: Z-API adds fields over time, and a proxy or a bug
can send anything, but a failure report refused is a dead letter never written. So:

* unknown fields are ignored;
* a field we use with a value of the wrong shape (an object for ``errorCode``, a list for
  ``phone``, an id over 256 characters) is skipped as if absent, and its name noted: the
  receiver logs the names in one line (never the values). A number where Z-API sends text
  (``errorCode: 500``) is taken as its text; a text over ``MAX_TEXT`` characters is cut there;
* a ``MessageStatusCallback`` status we do not know is accepted (and ignored), its ``ids``
  that are not ids skipped;
* only an order (``reviewAndPay`` / ``reviewOrder``) is checked strictly: its snapshot must be
  complete enough to build a full update, so a broken one is refused (400) naming the fields.

``momment`` (ms since the epoch) is **clamped**, not refused: outside [2000-01-01, now + 1 day]
(``1e300``, ``Infinity``, seconds given as ms, a clock years off) it is skipped and the
callback taken as happening when it arrived; within that range but after now (a clock a little
ahead of ours) it is taken as now. A callback cannot have happened after it arrived, and a
later time would win over every real event after it (a disconnection dated next year would
hold the instance for ever); refusing it would lose a failure report.

The callbacks we use:

* ``ReceivedCallback`` with ``reviewAndPay`` or ``reviewOrder``: an order message; its data
  becomes the order's snapshot (tasks/state/book.py), unless the book already has the order;
* ``DeliveryCallback``: the message was handed to WhatsApp, or failed (``error``);
* ``MessageStatusCallback``: SENT, RECEIVED, READ, PLAYED for message ``ids``;
* ``ConnectedCallback`` / ``DisconnectedCallback``: the instance's phone connection.

Every other type (and a ``ReceivedCallback`` without an order) is answered 200 and counted.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)

from tasks.contract.schemas import (
    NUMBER_MAX,
    PRODUCT_NAME_MAX_LENGTH,
    OrderStatus,
    PaymentStatus,
)

#: Longest ``error`` kept (Z-API's are one sentence); longer ones are cut.
MAX_TEXT = 1000
#: Most message ids one MessageStatusCallback may name; later ones are skipped.
MAX_IDS = 1000
#: ``momment`` bounds: not before 2000-01-01 (ms), not more than a day after now.
EARLIEST_MOMENT_MS = 946_684_800_000
LATEST_AHEAD_S = 86_400

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=256)]
# Bounded as an update's amounts are: an order the book takes must be one its updates can send.
Amount = Annotated[int | float, Field(ge=0, le=NUMBER_MAX, allow_inf_nan=False)]


def note_skipped(info: ValidationInfo, name: str) -> None:
    """Note a field skipped for its shape in the validation context's ``skipped`` list."""
    if isinstance(info.context, dict):
        info.context.setdefault("skipped", []).append(name)


def _or_skipped(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    try:
        return handler(value)
    except ValidationError:
        note_skipped(info, info.field_name or "?")
        return None


def _as_text(value: Any) -> Any:
    """Text as Z-API sends it: a number taken as its text, a long text cut at MAX_TEXT."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value[:MAX_TEXT] if isinstance(value, str) else value


#: A field we use, skipped (None) when its value has the wrong shape.
Skippable = WrapValidator(_or_skipped)
Text = Annotated[str, BeforeValidator(_as_text), StringConstraints(strict=True)]
Identifier = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]


class Callback(BaseModel):
    """Fields every callback carries (``instanceId``, ``momment``); unknown fields ignored.
    Validate with ``context={"skipped": []}`` to learn which fields were skipped."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=False)

    type: str
    instanceId: Annotated[Identifier | None, Skippable] = None  # noqa: N815 - Z-API's spelling
    momment: float | None = Field(default=None, validation_alias=AliasChoices("momment", "moment"))

    @field_validator("momment", mode="wrap")
    @classmethod
    def _bounded_moment(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> float | None:
        """Skip a ``momment`` that is not a time, or not one in [2000-01-01, now + 1 day]."""
        moment = _or_skipped(value, handler, info)
        if moment is None:
            return None
        latest = (time.time() + LATEST_AHEAD_S) * 1000
        if not math.isfinite(moment) or not EARLIEST_MOMENT_MS <= moment <= latest:
            note_skipped(info, "momment")
            return None
        return float(moment)

    @property
    def at(self) -> float:
        """When it happened (epoch seconds): Z-API's ``momment``, at most now; else now."""
        now = time.time()
        return min(self.momment / 1000, now) if self.momment is not None else now


class OrderProduct(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=PRODUCT_NAME_MAX_LENGTH)]
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
    """A message the instance received (or sent, with ``notifySentByMe``). ``phone`` and
    ``messageId`` are needed only when it carries an order."""

    type: Literal["ReceivedCallback"]
    phone: Annotated[Identifier | None, Skippable] = None
    messageId: Annotated[Identifier | None, Skippable] = None  # noqa: N815 - Z-API's spelling
    fromMe: Annotated[bool | None, Skippable] = None  # noqa: N815 - Z-API's spelling
    reviewAndPay: ReviewedOrder | None = None  # noqa: N815 - Z-API's spelling
    reviewOrder: ReviewedOrder | None = None  # noqa: N815 - Z-API's spelling

    @property
    def order(self) -> ReviewedOrder | None:
        return self.reviewAndPay or self.reviewOrder


class DeliveryCallback(Callback):
    """The message was handed to WhatsApp, or (``error`` / ``errorCode``) it was not."""

    type: Literal["DeliveryCallback"]
    messageId: Annotated[Identifier | None, Skippable] = None  # noqa: N815 - Z-API's spelling
    zaapId: Annotated[Text | None, Skippable] = None  # noqa: N815 - Z-API's spelling
    error: Annotated[Text | None, Skippable] = None
    errorCode: Annotated[Text | None, Skippable] = None  # noqa: N815 - Z-API's spelling


def _ids(value: Any, info: ValidationInfo) -> Any:
    """The message ids of a status callback: its entries that are ids, MAX_IDS at most."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        note_skipped(info, "ids")
        return []
    kept = [item for item in value if isinstance(item, str) and 0 < len(item) <= 256]
    if len(kept) != len(value) or len(kept) > MAX_IDS:
        note_skipped(info, "ids[]")
    return kept[:MAX_IDS]


class MessageStatusCallback(Callback):
    """The messages ``ids`` reached ``status`` (READ_BY_ME is the account's own read; a
    status we do not know is accepted and ignored)."""

    type: Literal["MessageStatusCallback"]
    status: Annotated[Text | None, Skippable] = None
    ids: Annotated[list[Identifier], BeforeValidator(_ids)] = []


class ConnectionCallback(Callback):
    """The instance's phone connected or disconnected."""

    type: Literal["ConnectedCallback", "DisconnectedCallback"]
    error: Annotated[Text | None, Skippable] = None

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
