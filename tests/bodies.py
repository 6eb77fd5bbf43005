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
from tasks.contract.redaction import mask_digit_runs

__all__ = [
    "DOCS_PAYMENT_BODY",
    "DOCS_SEND_ORDER_BODY",
    "DOCS_SEND_ORDER_MINIMAL_BODY",
    "DOCS_STATUS_BODY",
    "unique_body",
    "unique_id",
    "unique_key",
]


def unique_id(prefix: str, length: int) -> str:
    """``prefix`` and ``length`` random hex characters, with nothing in all that displays mask
    as phone-like (``mask_digit_runs``: 8 digits or more): an assertion on the shown id would
    fail in about one run in 40 (an all-digit key, ``shop-89050207``, failed CI so)."""
    while True:
        value = prefix + uuid.uuid4().hex[:length]
        if mask_digit_runs(value) == value:
            return value


def unique_key(prefix: str = "shop") -> str:
    """A key of its own (an order key ``shop-3f9c0a1e``, a job id ``job-…``), shown unmasked."""
    return unique_id(f"{prefix}-", 8)


def unique_body(base: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` (the status example) with a fresh messageId and orderRequestId
    (an order of its own: per-order ordering keeps tests apart), then ``changes``."""
    body = copy.deepcopy(base if base is not None else DOCS_STATUS_BODY)
    body["messageId"] = unique_id("3EB0", 18).upper()
    body["orderRequestId"] = unique_id("4N8", 10).upper()
    body.update(changes)
    return body
