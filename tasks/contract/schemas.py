"""The Z-API request bodies and reply, spelled exactly as Z-API's pages spell them.

Decisions a producer should know (also in README.md):

* **Unknown fields are refused.** A typo such as ``orderstatus`` would otherwise be dropped
  silently and the customer would get the wrong update; it fails with
  ``orderstatus: Extra inputs are not permitted`` (and ``orderStatus: Field required``).
* **Phone numbers are normalised, not guessed.** Spaces, ``+``, ``-``, ``.`` and parentheses are
  stripped (``+55 (11) 99999-9999`` becomes ``5511999999999``); what remains must be 10 to 15
  digits (DDI DDD NUMBER). Anything else (letters, ``*``, an ``x`` mask) is refused.
* **Types are strict.** ``"150"`` is not a number and ``1`` is not ``true``: a body that only
  looks right is refused, so what reaches Z-API is what the producer meant.
* **Amounts are sent as given.** Integers stay integers (no ``150`` becoming ``150.0``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from .currencies import ISO_4217_CODES

_PHONE_FORMATTING = re.compile(r"[\s+\-.()]")
_PHONE_DIGITS = re.compile(r"[0-9]{10,15}")
# The same rules as patterns, for the JSON Schemas (schemas/*.json): formatting characters
# anywhere, 10 to 15 digits in all; an id is non-empty with no whitespace.
_PHONE_PATTERN = r"^[\s+.()-]*(?:[0-9][\s+.()-]*){10,15}$"
_IDENTIFIER_PATTERN = r"^\S+$"
_AMOUNT_SCHEMA = {"type": "number", "minimum": 0}

OrderStatus = Literal["pending", "processing", "shipped", "completed", "canceled"]
PaymentStatus = Literal["pending", "paid"]


def normalized_phone(phone: str) -> str:
    """The phone as the worker sends it: spaces, +, -, . and () removed."""
    return _PHONE_FORMATTING.sub("", phone)


def _strip_phone_formatting(value: Any) -> Any:
    return normalized_phone(value) if isinstance(value, str) else value


def _digits_phone(phone: str) -> str:
    if not _PHONE_DIGITS.fullmatch(phone):
        raise PydanticCustomError(
            "phone_format",
            "must be 10 to 15 digits, DDI DDD NUMBER (e.g. 5511999999999); spaces, +, -, . "
            "and () are removed first, anything else is refused",
        )
    return phone


#: ``\s`` on a str pattern is ``str.isspace``'s set (CPython's sre uses Py_UNICODE_ISSPACE).
_WHITESPACE = re.compile(r"\s")


def _no_whitespace_id(value: str) -> str:
    if not value or _WHITESPACE.search(value):
        raise PydanticCustomError("identifier_format", "must be a non-empty id without spaces")
    return value


def _amount(value: Any) -> int | float:
    # One rule, one message: a union of StrictInt | StrictFloat would report two errors.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("number_type", "must be a number (not a string or boolean)")
    if not math.isfinite(value):
        raise PydanticCustomError("finite_number", "must be a finite number")
    if value < 0:
        raise PydanticCustomError("greater_than_equal", "must be greater than or equal to 0")
    return value


def _known_currency(code: str) -> str:
    if code not in ISO_4217_CODES:
        raise PydanticCustomError(
            "currency_code", "must be an ISO 4217 currency code such as BRL, USD or EUR"
        )
    return code


Phone = Annotated[
    str,
    BeforeValidator(_strip_phone_formatting),
    StringConstraints(strict=True),
    AfterValidator(_digits_phone),
    Field(
        description="DDI DDD NUMBER, e.g. 5511999999999; spaces, +, -, . and () are removed",
        json_schema_extra={"pattern": _PHONE_PATTERN},
    ),
]
Identifier = Annotated[
    str,
    StringConstraints(strict=True, max_length=256),
    AfterValidator(_no_whitespace_id),
    Field(json_schema_extra={"pattern": _IDENTIFIER_PATTERN}),
]
Amount = Annotated[int | float, PlainValidator(_amount), WithJsonSchema(_AMOUNT_SCHEMA)]
#: An optional amount: may be left out, but not sent as null (Order._no_explicit_null).
OptionalAmount = Annotated[Amount | None, WithJsonSchema(_AMOUNT_SCHEMA)]
Currency = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(_known_currency),
    WithJsonSchema(
        {"type": "string", "enum": sorted(ISO_4217_CODES), "description": "ISO 4217 code"}
    ),
]


class ZapiModel(BaseModel):
    """camelCase on the wire, unknown fields refused, nothing coerced."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        field_title_generator=lambda name, _info: to_camel(name),  # JSON Schema titles
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON body to send: camelCase, only the fields the producer set."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class Product(ZapiModel):
    name: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=1024)]
    value: Amount
    quantity: Annotated[StrictInt, Field(gt=0)]
    product_id: Identifier
    is_custom_item: StrictBool


class Order(ZapiModel):
    currency: Currency
    products: Annotated[list[Product], Field(min_length=1)]
    discount: OptionalAmount = None
    tax: OptionalAmount = None
    shipping: OptionalAmount = None

    @field_validator("discount", "tax", "shipping", mode="before")
    @classmethod
    def _no_explicit_null(cls, value: Any) -> Any:
        # Optional means "may be left out"; an explicit null is most likely a producer bug.
        if value is None:
            raise PydanticCustomError(
                "explicit_null",
                "must be a number >= 0 when given (leave the field out rather than send null)",
            )
        return value


class OrderUpdate(ZapiModel):
    """The body both update endpoints take: all the original order data plus webhook ids."""

    phone: Phone
    message_id: Identifier
    reference_id: Identifier
    order_request_id: Identifier
    order_status: OrderStatus
    payment_status: PaymentStatus
    order: Order
    message: Annotated[str, StringConstraints(strict=True, max_length=4096)] | None = None


class OrderStatusUpdate(OrderUpdate):
    """Body of ``POST .../order-status-update``: tells the customer the order's new status."""


class OrderPaymentUpdate(OrderUpdate):
    """Body of ``POST .../order-payment-update``: tells the customer the payment's new status."""


#: Fields only a full body has: a body with none of them is a short (two-field) update.
FULL_BODY_FIELDS = frozenset({"phone", "referenceId", "order"})


def is_short_update(body: Any) -> bool:
    """True for a two-field update (``messageId`` or ``orderRequestId``, a status, optionally a
    ``message``), which the worker completes from the order book (tasks/order_book.py)."""
    return isinstance(body, dict) and not FULL_BODY_FIELDS.intersection(body)


class ShortUpdate(ZapiModel):
    """A two-field update: the order is named, the rest comes from Z-API's order webhook."""

    model_config = ConfigDict(
        # _names_its_order, for the JSON Schema: at least one of the two ids, as a string.
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("messageId", "orderRequestId")
            ]
        }
    )

    message_id: Identifier | None = None
    order_request_id: Identifier | None = None
    message: Annotated[str, StringConstraints(strict=True, max_length=4096)] | None = None

    @model_validator(mode="after")
    def _names_its_order(self) -> ShortUpdate:
        if self.message_id is None and self.order_request_id is None:
            raise PydanticCustomError(
                "order_named",
                "messageId or orderRequestId is required: the order message's messageId or the "
                "order's orderRequestId, both from Z-API's order webhook",
            )
        return self


class ShortStatusUpdate(ShortUpdate):
    """``{"messageId"|"orderRequestId", "orderStatus", "message"?}`` for order-status-update."""

    order_status: OrderStatus


class ShortPaymentUpdate(ShortUpdate):
    """``{"messageId"|"orderRequestId", "paymentStatus", "message"?}`` for order-payment-update."""

    payment_status: PaymentStatus


class ZapiReply(BaseModel):
    """Z-API's success reply. ``id`` duplicates ``messageId`` (kept for Zapier)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    zaapId: Annotated[str, StringConstraints(min_length=1)]  # noqa: N815 - Z-API's spelling
    messageId: Annotated[str, StringConstraints(min_length=1)]  # noqa: N815 - Z-API's spelling
    id: str | None = None

    def to_result(self) -> dict[str, str]:
        """The job's result: exactly ``{"zaapId", "messageId", "id"}``."""
        return {
            "zaapId": self.zaapId,
            "messageId": self.messageId,
            "id": self.id if self.id is not None else self.messageId,
        }
