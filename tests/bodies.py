"""Request bodies for tests, built from the examples on Z-API's pages."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from devtools.samples import (
    DOCS_PAYMENT_BODY,
    DOCS_SEND_ORDER_BODY,
    DOCS_SEND_ORDER_MINIMAL_BODY,
    DOCS_STATUS_BODY,
)

__all__ = [
    "DOCS_PAYMENT_BODY",
    "DOCS_SEND_ORDER_BODY",
    "DOCS_SEND_ORDER_MINIMAL_BODY",
    "DOCS_STATUS_BODY",
    "unique_body",
]


def unique_body(base: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` (the status example) with a fresh messageId and orderRequestId
    (an order of its own: per-order ordering keeps tests apart), then ``changes``."""
    body = copy.deepcopy(base if base is not None else DOCS_STATUS_BODY)
    body["messageId"] = "3EB0" + uuid.uuid4().hex[:18].upper()
    body["orderRequestId"] = "4N8" + uuid.uuid4().hex[:10].upper()
    body.update(changes)
    return body
