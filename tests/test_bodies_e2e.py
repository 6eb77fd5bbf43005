"""End to end (issue #26, bodies door): a body echoing Z-API's order webhook (``total``,
``subTotal``, a null ``discount`` and ``message``) is delivered, and the fake Z-API receives the
documented body only; a product whose ``isCustomItem`` contradicts its id is refused before any
send."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from celery import Celery

from devtools.zapi_sim import ZapiSimulator
from tests.bodies import DOCS_PAYMENT_BODY, unique_body

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]


def test_an_echoed_webhook_order_is_delivered_without_totals_or_nulls(
    producer: Celery, zapi_sim: ZapiSimulator
) -> None:
    body = unique_body(DOCS_PAYMENT_BODY, message=None)
    body["order"].update(total=605, subTotal=600, discount=None)
    result = producer.send_task("zapi.order_payment_update", args=[body])
    result.get(timeout=30, propagate=False)

    assert result.state == "SUCCESS", result.result
    [request] = zapi_sim.requests(body["messageId"])
    expected: dict[str, Any] = copy.deepcopy(body)
    del expected["message"]
    for name in ("total", "subTotal", "discount"):
        del expected["order"][name]
    assert request.json == expected
    assert "null" not in request.body.decode()


def test_is_custom_item_against_a_catalog_id_is_refused_before_any_send(
    producer: Celery, zapi_sim: ZapiSimulator
) -> None:
    body = unique_body(DOCS_PAYMENT_BODY)
    body["order"]["products"][1]["isCustomItem"] = True  # productId 23940797548900636
    result = producer.send_task("zapi.order_payment_update", args=[body])
    result.get(timeout=30, propagate=False)

    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "InvalidBodyError"
    assert "order.products[1].isCustomItem: must be true when productId starts with" in str(
        result.result
    )
    assert zapi_sim.requests(body["messageId"]) == []
