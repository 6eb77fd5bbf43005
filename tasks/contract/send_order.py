"""The body of ``POST .../send-order``: the order message itself, spelled as Z-API's page does.

Z-API's send-order page: ``phone``; ``order{currency, products[{name, value, quantity,
productId?}], discount?, tax?, shipping?}``; ``paymentSettings?{pix{key, keyType, name},
card{enabled}}``. The rules are the update bodies' (tasks/contract/schemas.py: unknown fields
refused, phones normalised, strict types, ``null`` for an optional field is "left out"), and:

* **A product may leave out ``productId``**: it is then a custom item, whose ``custom-item-``
  id Z-API sends back in the order webhook. There is no ``isCustomItem`` here (the updates'
  field, which Z-API sets from that answer).
* **``paymentSettings`` offers at least one way to pay**: ``pix``, ``card`` or both.
* **A PIX key is checked only where its type says so without guessing**: Z-API documents the
  five ``keyType`` values and nothing of the keys' formats, so a key is any text of 1 to
  :data:`PIX_KEY_MAX_LENGTH` characters that is not blank, and an ``email`` key must hold an
  ``@``. A CPF's or CNPJ's digits, a phone's form, a random key's UUID are left to Z-API. The
  key is personal data (a CPF, a phone, an e-mail): tasks/contract/redaction.py masks it
  wherever a body is shown.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .characters import WHITESPACE
from .schemas import Identifier, OrderContents, Phone, ProductLine, ZapiModel

PixKeyType = Literal["cpf", "cnpj", "phone", "email", "randomKey"]
#: The longest PIX key and PIX name the contract takes. Z-API documents none; a key is at most
#: 77 characters in the PIX rules (an e-mail), so this only bounds what is stored and shown.
PIX_KEY_MAX_LENGTH = 256
PIX_NAME_MAX_LENGTH = 256
#: JSON Schema: a character ``str.strip`` keeps (Pix._not_blank).
_NOT_BLANK = f"[^{WHITESPACE}]"


class NewProduct(ProductLine):
    """A product of a new order: from the catalogue (its productId) or a custom item (none)."""

    product_id: Identifier | None = None


class NewOrder(OrderContents[NewProduct]):
    """The order of a new order message: its products, with or without catalogue ids."""


class Pix(ZapiModel):
    """Where the customer pays by PIX: the shop's key, its type, and the name shown."""

    model_config = ConfigDict(
        # _agrees_with_key_type, for the JSON Schema.
        json_schema_extra={
            "if": {"required": ["keyType"], "properties": {"keyType": {"const": "email"}}},
            "then": {"properties": {"key": {"type": "string", "pattern": "@"}}},
        }
    )

    # keyType before key: the key's rule reads its type (field order is validation order).
    key_type: PixKeyType
    key: Annotated[
        str,
        StringConstraints(strict=True, min_length=1, max_length=PIX_KEY_MAX_LENGTH),
        Field(json_schema_extra={"pattern": _NOT_BLANK}),
    ]
    name: Annotated[
        str,
        StringConstraints(strict=True, min_length=1, max_length=PIX_NAME_MAX_LENGTH),
        Field(json_schema_extra={"pattern": _NOT_BLANK}),
    ]

    @field_validator("key", "name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("blank_text", "must not be blank")
        return value

    @field_validator("key")
    @classmethod
    def _agrees_with_key_type(cls, key: str, info: ValidationInfo) -> str:
        # An invalid keyType has its own error and is not in info.data.
        if info.data.get("key_type") == "email" and "@" not in key:
            raise PydanticCustomError(
                "pix_email_key", "must be an e-mail address (with an @) when keyType is email"
            )
        return key


class Card(ZapiModel):
    """Card payment, on or off (it works once set up in the WhatsApp Business app)."""

    enabled: StrictBool


class PaymentSettings(ZapiModel):
    """How the customer may pay: by PIX, by card, or both."""

    model_config = ConfigDict(
        # _offers_a_way_to_pay, for the JSON Schema.
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "object"}}}
                for name in ("pix", "card")
            ]
        }
    )

    pix: Pix | None = None
    card: Card | None = None

    @model_validator(mode="after")
    def _offers_a_way_to_pay(self) -> PaymentSettings:
        if self.pix is None and self.card is None:
            raise PydanticCustomError(
                "payment_way", "pix or card is required: the way the customer may pay"
            )
        return self


class SendOrder(ZapiModel):
    """Body of ``POST .../send-order``: sends the customer the order message, whose reply's
    ``messageId`` and whose order webhook (``referenceId``, ``orderRequestId``, the products'
    ids) the two update endpoints then need."""

    phone: Phone
    order: NewOrder
    payment_settings: PaymentSettings | None = None
