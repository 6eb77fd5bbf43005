"""The whole life of an order from the shop's own number, through a real worker, the webhook
receiver and the fake Z-API: send-order by key, its fromMe order webhook, then ``shipped`` and
``paid`` by that key, sent as Z-API's full update bodies with the ids the webhook brought."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.zapi_sim import Fault
from devtools.zapi_sim.config import OrderCallback
from tests.bodies import DOCS_SEND_ORDER_MINIMAL_BODY, unique_key
from tests.faults import WebhookStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SECRET = "whsec-ORDER-SECRET-5e1f"
ORDER_WAIT = 4.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookStack]:
    logs = tmp_path_factory.mktemp("send-order")
    with WebhookStack(logs, webhook_secret=SECRET, zapi_order_wait=str(ORDER_WAIT)) as made:
        made.worker()
        made.sim.instance_settings.update(made.sim.instance_id, notifySentByMe=True)
        yield made


@pytest.fixture(autouse=True)
def after_the_reply(stack: WebhookStack) -> Iterator[None]:
    stack.sim.order_callback = "after"
    yield
    stack.sim.drain_callbacks()


def order(phone: str = "5544999990002") -> dict[str, Any]:
    body = copy.deepcopy(DOCS_SEND_ORDER_MINIMAL_BODY)
    body["phone"] = phone
    return body


def send(stack: WebhookStack, task: str, body: Any, **kwargs: Any) -> str:
    job: str = stack.producer.send_task(task, args=[body], kwargs=kwargs).id
    return job


def result(stack: WebhookStack, job: str) -> Any:
    return stack.producer.AsyncResult(job).get(timeout=60, propagate=False)


def sent_to(stack: WebhookStack, endpoint: str) -> list[dict[str, Any]]:
    return [
        r.json
        for r in stack.sim.requests()
        if r.path.endswith("/" + endpoint) and r.status == 200 and isinstance(r.json, dict)
    ]


def order_callback_of(stack: WebhookStack, message_id: str) -> dict[str, Any]:
    stack.sim.drain_callbacks()
    for posted in stack.sim.callbacks():
        payload = posted.payload
        if payload.get("messageId") == message_id and "reviewAndPay" in payload:
            return payload
    raise AssertionError(f"no order callback for {message_id}")


@pytest.mark.parametrize("when", ["after", "before"])
def test_an_order_from_the_shops_number_to_paid(stack: WebhookStack, when: OrderCallback) -> None:
    """The updates are enqueued right after the order: they wait for it in its line, then
    for its webhook, and go as the full documented bodies."""
    stack.sim.order_callback = when
    key = unique_key()
    ordered = send(stack, "zapi.send_order", order(), order_key=key)
    shipped = send(stack, "zapi.order_status_update", {"orderKey": key, "orderStatus": "shipped"})
    paid = send(stack, "zapi.order_payment_update", {"orderKey": key, "paymentStatus": "paid"})
    reply = result(stack, ordered)
    assert set(reply) >= {"zaapId", "messageId", "id"}
    assert isinstance(result(stack, shipped), dict)
    assert isinstance(result(stack, paid), dict)
    webhook = order_callback_of(stack, reply["messageId"])["reviewAndPay"]
    updates = [
        body
        for body in sent_to(stack, "order-status-update") + sent_to(stack, "order-payment-update")
        if body["messageId"] == reply["messageId"]
    ]
    assert [(u["orderStatus"], u["paymentStatus"]) for u in updates] == [
        ("shipped", "pending"),
        ("shipped", "paid"),
    ]
    for update in updates:
        assert update["orderRequestId"] == webhook["orderRequestId"]
        assert update["referenceId"] == webhook["referenceId"]
        product = update["order"]["products"][0]
        assert product["productId"] == webhook["products"][0]["productId"]
        assert product["productId"].startswith("custom-item-")


def test_the_same_key_twice_sends_one_order_message(stack: WebhookStack) -> None:
    key = unique_key()
    before = len(sent_to(stack, "send-order"))
    first = result(stack, send(stack, "zapi.send_order", order(), order_key=key))
    second = result(stack, send(stack, "zapi.send_order", order(), order_key=key))
    assert first == second
    assert len(sent_to(stack, "send-order")) == before + 1


def test_an_update_by_a_key_whose_order_never_came_fails_naming_it(
    stack: WebhookStack,
) -> None:
    stack.sim.order_callback = "never"
    key = unique_key()
    send(stack, "zapi.send_order", order(), order_key=key)
    job = send(stack, "zapi.order_status_update", {"orderKey": key, "orderStatus": "shipped"})
    ended = result(stack, job)
    assert isinstance(ended, Exception)
    assert f"orderKey {key}" in str(ended)
    assert stack.producer.AsyncResult(job).state == "FAILURE"


def test_an_invalid_order_message_fails_at_once_naming_the_field(stack: WebhookStack) -> None:
    body = order()
    body["paymentSettings"] = {"pix": {"key": "x", "keyType": "iban", "name": "Loja"}}
    before = len(sent_to(stack, "send-order"))
    ended = result(stack, send(stack, "zapi.send_order", body, order_key=unique_key()))
    assert "paymentSettings.pix.keyType" in str(ended)
    assert len(sent_to(stack, "send-order")) == before


def test_an_update_right_after_its_order_waits_for_it_in_its_line(stack: WebhookStack) -> None:
    """The order message takes longer than ZAPI_ORDER_WAIT (Z-API down, then back): the
    update behind it in its order's line waits for its turn, not on the order book's clock,
    and goes once the order message and its webhook are in."""
    key = unique_key()
    short = {"orderKey": key, "orderStatus": "shipped"}
    stack.sim.set_outage(Fault(status=503))
    try:
        ordered = send(stack, "zapi.send_order", order(), order_key=key)
        shipped = send(stack, "zapi.order_status_update", short)
        time.sleep(ORDER_WAIT + 2)
        assert stack.producer.AsyncResult(shipped).state != "FAILURE"
    finally:
        stack.sim.set_outage(None)
    reply = result(stack, ordered)
    assert set(reply) >= {"zaapId", "messageId", "id"}
    assert isinstance(result(stack, shipped), dict), result(stack, shipped)
    sent = sent_to(stack, "order-status-update")
    assert [u["orderStatus"] for u in sent if u["messageId"] == reply["messageId"]] == ["shipped"]
