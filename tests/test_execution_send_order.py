"""send-order in-process (tests/test_execution.py's stack: httpx.MockTransport, a real Redis):
the order message by the shop's key, sent once per key, linked to its order webhook's snapshot,
and the updates by that key completed from it."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
import redis
from celery.exceptions import Retry

from tasks.callbacks import ReceivedCallback
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import InvalidBodyError, UnknownOrderError
from tasks.state.book import snapshot_of_callback
from tests.bodies import DOCS_SEND_ORDER_MINIMAL_BODY
from tests.test_execution import make_stack, reply, run_until_done, state

__all__ = ["state"]

SEND_ORDER = Endpoint.SEND_ORDER


def order_body(phone: str = "5544999990000") -> dict[str, Any]:
    body = copy.deepcopy(DOCS_SEND_ORDER_MINIMAL_BODY)
    body["phone"] = phone
    return body


def order_webhook(message_id: str, phone: str, order_request_id: str) -> ReceivedCallback:
    """What Z-API posts for the order message the number itself sent (notifySentByMe)."""
    return ReceivedCallback.model_validate(
        {
            "type": "ReceivedCallback",
            "fromMe": True,
            "phone": phone,
            "messageId": message_id,
            "momment": 1_700_000_000_000,
            "reviewAndPay": {
                "type": "physical-goods",
                "currency": "BRL",
                "referenceId": "REF" + order_request_id,
                "orderRequestId": order_request_id,
                "orderStatus": "pending",
                "paymentStatus": "pending",
                "total": 150,
                "subTotal": 150,
                "products": [
                    {
                        "name": "Nome do produto",
                        "quantity": 1,
                        "isCustomItem": True,
                        "productId": "custom-item-" + order_request_id,
                        "value": 150,
                    }
                ],
            },
        }
    )


def test_the_same_order_key_sends_one_order_message(state: redis.Redis) -> None:
    stack = make_stack(state, [reply(1), reply(2)])
    stack.endpoint = SEND_ORDER
    key = f"shop-{uuid.uuid4().hex[:6]}"
    _, first = run_until_done(stack, order_body(), order_key=key)
    assert first == {"zaapId": "Z1", "messageId": "M1", "id": "M1"}
    stack.job_id = "job-again"  # another job, the same shop order
    _, second = run_until_done(stack, order_body(), order_key=key)
    assert second == first
    assert len(stack.zapi.received) == 1
    assert stack.at.book.order_message(key)["messageId"] == "M1"
    # force: a second order message, and the key now names it.
    stack.job_id = "job-forced"
    _, forced = run_until_done(stack, order_body(), order_key=key, force=True)
    assert forced == {"zaapId": "Z2", "messageId": "M2", "id": "M2"}
    assert stack.at.book.order_message(key)["messageId"] == "M2"


def test_without_a_key_each_job_is_one_order_message(state: redis.Redis) -> None:
    stack = make_stack(state, [reply(1), reply(2)])
    stack.endpoint = SEND_ORDER
    _, first = run_until_done(stack, order_body())
    _, again = run_until_done(stack, order_body())  # the same job redelivered: not sent again
    stack.job_id = "job-other"
    _, other = run_until_done(stack, order_body())  # another order alike: sent
    assert first == again != other
    assert len(stack.zapi.received) == 2


def test_an_update_by_key_is_sent_in_full_once_the_order_webhook_came(
    state: redis.Redis,
) -> None:
    stack = make_stack(state, [reply(1), reply(2)], zapi_order_wait=60.0)
    stack.endpoint = SEND_ORDER
    key = f"shop-{uuid.uuid4().hex[:6]}"
    phone = "5544999990001"
    run_until_done(stack, order_body(phone), order_key=key)
    stack.endpoint, stack.job_id = Endpoint.ORDER_STATUS_UPDATE, "job-shipped"
    short = {"orderKey": key, "orderStatus": "shipped"}
    task, waiting = stack.run(short)
    assert isinstance(waiting, Retry)  # no order webhook yet: it waits, no attempt used
    assert "waiting for the order webhook of orderKey" in str(task.retried[0]["exc"])
    assert len(stack.zapi.received) == 1
    # The order webhook arrives (Z-API's ReceivedCallback for the order message M1).
    snapshot = snapshot_of_callback(
        order_webhook("M1", phone, "ORQ1"), stack.at.instance.instance_id
    )
    assert snapshot is not None
    assert stack.at.book.save(snapshot)
    _, sent = stack.run(short, task.retried[0]["headers"])
    assert sent == {"zaapId": "Z2", "messageId": "M2", "id": "M2"}
    full = stack.zapi.received[-1]
    assert full["messageId"] == "M1"
    assert full["orderRequestId"] == "ORQ1"
    assert full["referenceId"] == "REFORQ1"
    assert full["orderStatus"] == "shipped"
    assert full["paymentStatus"] == "pending"
    assert full["order"]["products"][0]["productId"] == "custom-item-ORQ1"
    # paid by key: the other status is the one the order now shows (shipped).
    stack.job_id = "job-paid"
    stack.endpoint = Endpoint.ORDER_PAYMENT_UPDATE
    stack.zapi.answers.append(reply(3))
    _, paid = run_until_done(stack, {"orderKey": key, "paymentStatus": "paid"})
    assert isinstance(paid, dict)
    assert stack.zapi.received[-1]["orderStatus"] == "shipped"
    assert stack.zapi.received[-1]["paymentStatus"] == "paid"


def test_an_update_by_key_waits_behind_its_order_message_not_on_the_books_clock(
    state: redis.Redis,
) -> None:
    """The order message is being retried (Z-API down): the update by its key, right behind
    it in the key's line, waits for it however long it takes (ZAPI_ORDER_WAIT 0 here would
    bury an update that waited for the book), then goes in full once the webhook came."""
    down = httpx.Response(503, json={"error": "Service Unavailable"})
    stack = make_stack(state, [down, reply(1), reply(2)], zapi_order_wait=0.0)
    stack.endpoint = SEND_ORDER
    key, phone, ordering = f"shop-{uuid.uuid4().hex[:6]}", "5544999990003", stack.job_id
    order_task, retried = stack.run(order_body(phone), order_key=key)
    assert isinstance(retried, Retry)
    stack.endpoint, stack.job_id = Endpoint.ORDER_STATUS_UPDATE, "job-shipped"
    short = {"orderKey": key, "orderStatus": "shipped"}
    task, waiting = stack.run(short)
    assert isinstance(waiting, Retry), waiting
    assert f"waiting for job {ordering} of order" in str(task.retried[0]["exc"])
    assert len(stack.zapi.received) == 1
    stack.endpoint, stack.job_id = SEND_ORDER, ordering
    _, sent = stack.run(order_body(phone), order_task.retried[0]["headers"], order_key=key)
    assert sent == {"zaapId": "Z1", "messageId": "M1", "id": "M1"}
    snapshot = snapshot_of_callback(
        order_webhook("M1", phone, "ORQ3"), stack.at.instance.instance_id
    )
    assert snapshot is not None
    assert stack.at.book.save(snapshot)
    stack.endpoint, stack.job_id = Endpoint.ORDER_STATUS_UPDATE, "job-shipped"
    _, shipped = stack.run(short, task.retried[0]["headers"])
    assert shipped == {"zaapId": "Z2", "messageId": "M2", "id": "M2"}
    assert stack.zapi.received[-1]["orderRequestId"] == "ORQ3"
    assert stack.zapi.received[-1]["orderStatus"] == "shipped"


def test_an_update_by_a_key_that_never_came_fails_naming_it(state: redis.Redis) -> None:
    stack = make_stack(state, [reply(1)], zapi_order_wait=0.0)
    _, ended = stack.run({"orderKey": "shop-never", "orderStatus": "shipped"})
    assert isinstance(ended, UnknownOrderError)
    assert "orderKey shop-never" in str(ended)
    assert stack.zapi.received == []


def test_an_invalid_order_message_is_refused_naming_the_field(state: redis.Redis) -> None:
    stack = make_stack(state, [reply(1)])
    stack.endpoint = SEND_ORDER
    body = order_body()
    body["order"]["products"] = []
    _, ended = stack.run(body, order_key="shop-bad")
    assert isinstance(ended, InvalidBodyError)
    assert "order.products" in str(ended)
    _, wrong_key = stack.run(order_body(), order_key="x" * 101)
    assert isinstance(wrong_key, InvalidBodyError)
    assert "order_key" in str(wrong_key)
    assert stack.zapi.received == []
