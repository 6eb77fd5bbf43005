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
* **Amounts are sent as given.** Integers stay integers (no ``150`` becoming ``150.0``). Every
  number is at most 2**53 - 1 (:data:`NUMBER_MAX`), the largest integer a JSON parser is sure to
  keep exact.
* **Where Z-API's docs speak, they win.** ``null`` for an optional field (``discount``, ``tax``,
  ``shipping``, ``message``, a short form's other id) means the field is absent: it is not sent.
  ``order.total`` and ``order.subTotal`` (in Z-API's order webhook, not in the update endpoints'
  docs) are checked as amounts and dropped, so a producer may echo the webhook's order. A
  product's ``isCustomItem`` must agree with its ``productId``: true exactly when the id has the
  ``custom-item-`` prefix Z-API gives a product sent without an id (Z-API refuses a mismatch
  later, in a DeliveryCallback, after the job succeeded).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

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
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from .currencies import ISO_4217_CODES
from .order_key import OrderKey

_PHONE_FORMATTING = re.compile(r"[\s+\-.()]")
#: A phone as the contract takes it, once formatting is removed (DDI DDD NUMBER).
PHONE_DIGITS = re.compile(r"[0-9]{10,15}")
# The same rules as patterns, for the JSON Schemas (schemas/*.json): formatting characters
# anywhere, 10 to 15 digits in all; an id is non-empty with no whitespace.
_PHONE_PATTERN = r"^[\s+.()-]*(?:[0-9][\s+.()-]*){10,15}$"
_IDENTIFIER_PATTERN = r"^\S+$"
#: The largest number a body may carry: 2**53 - 1, the largest integer a JSON parser is sure to
#: keep exact (JavaScript's Number.MAX_SAFE_INTEGER). Z-API documents no bound.
NUMBER_MAX = 2**53 - 1
#: The longest product name, for the update bodies and the order webhook alike
#: (tasks/callbacks.py): the worker echoes the webhook's names in the updates it completes, so
#: one length must be accepted at both doors. Z-API documents none.
PRODUCT_NAME_MAX_LENGTH = 1024
#: The id prefix Z-API gives a product sent without ``productId`` (``isCustomItem`` true).
CUSTOM_ITEM_PREFIX = "custom-item-"
_AMOUNT_SCHEMA = {"type": "number", "minimum": 0, "maximum": NUMBER_MAX}
_ECHOED = "From Z-API's order webhook: accepted (a number >= 0 or null) and never sent"

OrderStatus = Literal["pending", "processing", "shipped", "completed", "canceled"]
PaymentStatus = Literal["pending", "paid"]


def normalized_phone(phone: str) -> str:
    """The phone as the worker sends it: spaces, +, -, . and () removed."""
    return _PHONE_FORMATTING.sub("", phone)


def _strip_phone_formatting(value: Any) -> Any:
    return normalized_phone(value) if isinstance(value, str) else value


def _digits_phone(phone: str) -> str:
    if not PHONE_DIGITS.fullmatch(phone):
        raise PydanticCustomError(
            "phone_format",
            # No example number here: an error text must not hold anything dialable.
            "must be 10 to 15 digits, DDI DDD NUMBER; spaces, +, -, . and () are removed "
            "first, anything else is refused",
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
    # An int is compared as it is: math.isfinite(10**400) would raise OverflowError.
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "must be a finite number")
    if value < 0:
        raise PydanticCustomError("greater_than_equal", "must be greater than or equal to 0")
    if value > NUMBER_MAX:
        raise PydanticCustomError(
            "less_than_equal", f"must be less than or equal to {NUMBER_MAX} (2**53 - 1)"
        )
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
#: An optional amount: left out or null (ZapiModel._null_is_absent makes both absent).
OptionalAmount = Annotated[
    Amount | None, WithJsonSchema({"anyOf": [_AMOUNT_SCHEMA, {"type": "null"}]})
]
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

    #: Wire names of the fields a body may leave out (set for each model class).
    _optional_aliases: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._optional_aliases = frozenset(
            field.alias or name
            for name, field in cls.model_fields.items()
            if not field.is_required()
        )

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        """An optional field sent as ``null`` is taken as left out, as Z-API's docs call these
        fields optional: it is not set, so :meth:`to_wire` never sends a null. A null for a
        required field is still refused by that field's rule."""
        if isinstance(data, dict) and any(
            data.get(alias, ...) is None for alias in cls._optional_aliases
        ):
            return {
                key: value
                for key, value in data.items()
                if not (value is None and key in cls._optional_aliases)
            }
        return data

    def to_wire(self) -> dict[str, Any]:
        """The JSON body to send: camelCase, only the fields the producer set (never a null,
        never a field marked ``exclude``)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


ProductName = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=PRODUCT_NAME_MAX_LENGTH)
]
ProductQuantity = Annotated[StrictInt, Field(gt=0, le=NUMBER_MAX)]


class ProductLine(ZapiModel):
    """What every product of an order has: its name, unit value and quantity."""

    name: ProductName
    value: Amount
    quantity: ProductQuantity


class Product(ProductLine):
    """One product of the order, as the order webhook gave it: its productId and isCustomItem."""

    model_config = ConfigDict(
        # _agrees_with_product_id, for the JSON Schema.
        json_schema_extra={
            "if": {
                "required": ["productId"],
                "properties": {
                    "productId": {"type": "string", "pattern": f"^{CUSTOM_ITEM_PREFIX}"}
                },
            },
            "then": {"properties": {"isCustomItem": {"const": True}}},
            "else": {"properties": {"isCustomItem": {"const": False}}},
        }
    )

    product_id: Identifier
    is_custom_item: StrictBool

    @field_validator("is_custom_item")
    @classmethod
    def _agrees_with_product_id(cls, value: bool, info: ValidationInfo) -> bool:
        # productId is validated first (field order); when it is invalid, its own error says so.
        product_id = info.data.get("product_id")
        if product_id is not None and value != product_id.startswith(CUSTOM_ITEM_PREFIX):
            raise PydanticCustomError(
                "custom_item_prefix",
                f"must be true when productId starts with '{CUSTOM_ITEM_PREFIX}' (Z-API's id "
                "for a product sent without one) and false otherwise: Z-API refuses an update "
                "where they disagree",
            )
        return value


_P = TypeVar("_P", bound=ProductLine)


class OrderContents(ZapiModel, Generic[_P]):
    """What every order carries: its currency, its products and the charges besides them."""

    currency: Currency
    products: Annotated[list[_P], Field(min_length=1)]
    discount: OptionalAmount = None
    tax: OptionalAmount = None
    shipping: OptionalAmount = None


class Order(OrderContents[Product]):
    # The order as the updates send it back (no docstring: it would change the JSON Schemas).
    # In Z-API's order webhook, not in the update endpoints' docs: checked, never sent.
    total: Annotated[OptionalAmount, Field(exclude=True, description=_ECHOED)] = None
    sub_total: Annotated[OptionalAmount, Field(exclude=True, description=_ECHOED)] = None


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
#: The ways a short update names its order: Z-API's ids (either or both), or the shop's own.
ZAPI_ORDER_NAMES = ("messageId", "orderRequestId")
SHOP_ORDER_NAME = "orderKey"


def is_short_update(body: Any) -> bool:
    """True for a two-field update (``messageId``, ``orderRequestId`` or ``orderKey``, a
    status, optionally a ``message``), which the worker completes from the order book
    (tasks/state/book.py)."""
    return isinstance(body, dict) and not FULL_BODY_FIELDS.intersection(body)


def _named_by(name: str, *others: str) -> dict[str, Any]:
    """JSON Schema: ``name`` given as a string, each of ``others`` absent or null."""
    properties = {name: {"type": "string"}} | {other: {"type": "null"} for other in others}
    return {"required": [name], "properties": properties}


class ShortUpdate(ZapiModel):
    """A two-field update: the order is named, the rest comes from Z-API's order webhook."""

    model_config = ConfigDict(
        # _names_its_order, for the JSON Schema: one of Z-API's ids (or both), or orderKey
        # alone, as a string.
        json_schema_extra={
            "anyOf": [
                *(_named_by(name, SHOP_ORDER_NAME) for name in ZAPI_ORDER_NAMES),
                _named_by(SHOP_ORDER_NAME, *ZAPI_ORDER_NAMES),
            ]
        }
    )

    message_id: Identifier | None = None
    order_request_id: Identifier | None = None
    order_key: OrderKey | None = None
    message: Annotated[str, StringConstraints(strict=True, max_length=4096)] | None = None

    @model_validator(mode="after")
    def _names_its_order(self) -> ShortUpdate:
        by_zapi = self.message_id is not None or self.order_request_id is not None
        if by_zapi and self.order_key is not None:
            raise PydanticCustomError(
                "order_named_once",
                "orderKey names the order alone: give it, or messageId/orderRequestId, not both",
            )
        if not by_zapi and self.order_key is None:
            raise PydanticCustomError(
                "order_named",
                "messageId, orderRequestId or orderKey is required: the order message's "
                "messageId or the order's orderRequestId (both from Z-API's order webhook), or "
                "the shop's own order id given to zapi.send_order as order_key",
            )
        return self


class ShortStatusUpdate(ShortUpdate):
    """``{"messageId"|"orderRequestId"|"orderKey", "orderStatus", "message"?}`` for
    order-status-update."""

    order_status: OrderStatus


class ShortPaymentUpdate(ShortUpdate):
    """``{"messageId"|"orderRequestId"|"orderKey", "paymentStatus", "message"?}`` for
    order-payment-update."""

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
