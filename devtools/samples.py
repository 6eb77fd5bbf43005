"""Sample request bodies: Z-API's own examples, for the tests, the demo and the benchmarks."""

from __future__ import annotations

import copy
from typing import Any

#: The discount, tax and shipping of every order example on Z-API's pages.
DOCS_AMOUNTS: dict[str, Any] = {"discount": 10, "tax": 10, "shipping": 5}

# The request body printed on Z-API's order-status-update page, verbatim (its amounts above).
DOCS_STATUS_BODY: dict[str, Any] = {
    "phone": "554499999999",
    "messageId": "3EB0F91BBA791BB0A787FC",
    "message": "Order update text message",
    "referenceId": "4N8FCTW1WM6",
    "orderRequestId": "4N8FCTW22W4",
    "orderStatus": "processing",
    "paymentStatus": "pending",
    "order": {
        "currency": "BRL",
        **DOCS_AMOUNTS,
        "products": [
            {
                "value": 150,
                "quantity": 2,
                "name": "order 1",
                "isCustomItem": True,
                "productId": "custom-item-4N8FCTW23N7",
            },
            {
                "productId": "23940797548900636",
                "value": 150,
                "quantity": 2,
                "name": "order 2",
                "isCustomItem": False,
            },
        ],
    },
}

# The order-payment-update page's example differs only in paymentStatus.
DOCS_PAYMENT_BODY: dict[str, Any] = {**copy.deepcopy(DOCS_STATUS_BODY), "paymentStatus": "paid"}

# The request body on Z-API's send-order page ("including optional parameters"), its PIX
# placeholders ("Chave PIX", "Tipo da chave (cpf | cnpj | ...)") given values of those types.
DOCS_SEND_ORDER_BODY: dict[str, Any] = {
    "phone": "554499999999",
    "order": {
        "currency": "BRL",
        **DOCS_AMOUNTS,
        "products": [
            {
                "productId": "23940797548900636",
                "name": "Nome do produto",
                "value": 10,
                "quantity": 2,
            }
        ],
    },
    "paymentSettings": {
        "pix": {"key": "loja@example.com", "keyType": "email", "name": "Loja Exemplo"},
        "card": {"enabled": True},
    },
}

# The same page's "required parameters only" example: one custom item (no productId).
DOCS_SEND_ORDER_MINIMAL_BODY: dict[str, Any] = {
    "phone": "554499999999",
    "order": {
        "currency": "BRL",
        "products": [{"name": "Nome do produto", "value": 150, "quantity": 1}],
    },
}
