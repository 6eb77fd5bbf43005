"""The fake Z-API's send-order: it validates like Z-API, replies like a send, and posts the
fromMe ReceivedCallback that carries the order's ids (only with ``notifySentByMe`` on; after the
reply, before it, or never), which the worker's own callback parser must accept."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import assume, given, settings

from devtools.zapi_callbacks import sent_order_message
from devtools.zapi_sim import ZapiSimulator
from tasks.callbacks import ReceivedCallback
from tasks.contract.schemas import NUMBER_MAX, normalized_phone
from tasks.contract.send_order import SendOrder
from tests.bodies import DOCS_SEND_ORDER_BODY
from tests.receiver import Receiver
from tests.test_send_order_schema import send_order_bodies

INSTANCE, TOKEN, CLIENT = "inst-o", "tok-o", "ct-o"
BASE = f"/instances/{INSTANCE}/token/{TOKEN}"
HEADERS = {"Client-Token": CLIENT, "Content-Type": "application/json"}
ZAPI_ID = re.compile(r"[A-Z0-9]{11}")
#: One catalogue product (the docs' example) and one custom item, with cents.
BODY: dict[str, Any] = copy.deepcopy(DOCS_SEND_ORDER_BODY)
BODY["phone"] = "+55 (44) 99999-9999"
BODY["order"]["products"].append({"name": "Gift wrap", "value": 0.1, "quantity": 3})


@pytest.fixture(scope="module")
def sim(receiver: Receiver) -> Iterator[ZapiSimulator]:
    with ZapiSimulator(
        instance_id=INSTANCE, instance_token=TOKEN, client_token=CLIENT, webhook_url=receiver.url
    ) as s:
        yield s


@pytest.fixture
def http(sim: ZapiSimulator, receiver: Receiver) -> Iterator[httpx.Client]:
    """A client of a fake reset to Z-API's way, with notifySentByMe on (set as a client does)."""
    sim.drain_callbacks()
    sim.reset()
    sim.order_callback, sim.order_callback_delay = "after", 0.0
    with receiver.lock:
        receiver.bodies.clear()
    with httpx.Client(base_url=sim.base_url) as client:
        notify = {"notifySentByMe": True}
        client.put(f"{BASE}/update-notify-sent-by-me", json=notify, headers=HEADERS)
        yield client


def send(http: httpx.Client, body: Any = BODY) -> httpx.Response:
    return http.post(f"{BASE}/send-order", json=body, headers=HEADERS)


def echoes(sim: ZapiSimulator, receiver: Receiver) -> list[dict[str, Any]]:
    sim.drain_callbacks()
    return receiver.of_type("ReceivedCallback")


def test_the_reply_is_a_sends_and_the_request_is_recorded(
    sim: ZapiSimulator, http: httpx.Client
) -> None:
    response = send(http)
    assert response.status_code == 200
    reply = response.json()
    assert set(reply) == {"zaapId", "messageId", "id"}
    assert reply["id"] == reply["messageId"]
    recorded = sim.requests()[-1]
    assert (recorded.path, recorded.json, recorded.status) == (f"{BASE}/send-order", BODY, 200)


def test_the_order_callback_carries_the_replys_ids_and_the_products(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    reply = send(http).json()
    [echo] = echoes(sim, receiver)
    assert {key: echo[key] for key in ("type", "fromMe", "phone", "messageId", "instanceId")} == {
        "type": "ReceivedCallback",
        "fromMe": True,
        "phone": "5544999999999",
        "messageId": reply["messageId"],
        "instanceId": INSTANCE,
    }
    assert abs(echo["momment"] / 1000 - time.time()) < 60
    order = echo["reviewAndPay"]
    assert (order["type"], order["currency"], order["orderStatus"], order["paymentStatus"]) == (
        "physical-goods",
        "BRL",
        "pending",
        "pending",
    )
    assert ZAPI_ID.fullmatch(order["referenceId"])
    assert ZAPI_ID.fullmatch(order["orderRequestId"])
    catalogue, custom = order["products"]
    assert catalogue == {
        "name": "Nome do produto",
        "quantity": 2,
        "isCustomItem": False,
        "productId": "23940797548900636",
        "value": 10,
    }
    assert custom["isCustomItem"] is True
    assert re.fullmatch(r"custom-item-[A-Z0-9]{11}", custom["productId"])
    # FACTS.md's example: subTotal the lines' sum, total = subTotal - discount + shipping + tax.
    assert (order["subTotal"], order["discount"], order["shipping"], order["tax"]) == (
        20.3,
        10,
        5,
        10,
    )
    assert order["total"] == 25.3
    assert ReceivedCallback.model_validate(echo).order is not None


def test_the_order_message_gets_the_delivery_callbacks_of_any_send(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    message_id = send(http).json()["messageId"]
    sim.drain_callbacks()
    [delivery] = receiver.of_type("DeliveryCallback")
    assert (delivery["messageId"], "error" in delivery) == (message_id, False)
    statuses = receiver.of_type("MessageStatusCallback")
    assert [(s["status"], s["ids"]) for s in statuses] == [
        (status, [message_id]) for status in ("SENT", "RECEIVED", "READ")
    ]
    assert receiver.bodies[0]["type"] == "ReceivedCallback"  # the message's echo comes first


def test_two_orders_get_ids_of_their_own(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    send(http)
    send(http)
    first, second = (echo["reviewAndPay"] for echo in echoes(sim, receiver))
    assert first["orderRequestId"] != second["orderRequestId"]
    assert first["products"][1]["productId"] != second["products"][1]["productId"]


def test_without_notify_sent_by_me_no_order_callback_comes(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    off = {"notifySentByMe": False}
    http.put(f"{BASE}/update-notify-sent-by-me", json=off, headers=HEADERS)
    send(http)
    assert echoes(sim, receiver) == []
    assert len(receiver.of_type("DeliveryCallback")) == 1
    sim.reset()  # an instance never configured: Z-API's default, off
    send(http)
    assert echoes(sim, receiver) == []


def test_the_order_callback_can_come_before_the_reply(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    sim.order_callback = "before"
    response = send(http)
    with receiver.lock:
        arrived = list(receiver.bodies)
    assert [body["messageId"] for body in arrived] == [response.json()["messageId"]]


def test_the_order_callback_can_come_late_or_never(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    sim.order_callback_delay = 0.5
    send(http)
    time.sleep(0.2)
    assert receiver.of_type("ReceivedCallback") == []
    assert len(echoes(sim, receiver)) == 1
    sim.order_callback = "never"
    send(http)
    assert len(echoes(sim, receiver)) == 1
    assert len(receiver.of_type("DeliveryCallback")) == 2


def test_a_failed_delivery_sends_no_order_callback(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    sim.delivery_failure_rate = 1.0
    try:
        send(http)
        assert echoes(sim, receiver) == []
        assert "error" in receiver.of_type("DeliveryCallback")[0]
    finally:
        sim.delivery_failure_rate = 0.0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda body: body.pop("phone"), "phone: Field required"),
        (lambda body: body["order"].update(products=[]), "order.products: "),
        (lambda body: body["order"]["products"][0].update(value=-1), "order.products[0].value: "),
        (
            lambda body: body["paymentSettings"]["pix"].update(keyType="iban"),
            "paymentSettings.pix.keyType: ",
        ),
        (lambda body: body.update(paymentSettings={}), "paymentSettings: "),
        (lambda body: body.update(extra=1), "extra: "),
    ],
)
def test_an_invalid_body_is_400_naming_the_field_and_sends_nothing(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client, change: Any, named: str
) -> None:
    body = copy.deepcopy(BODY)
    change(body)
    response = send(http, body)
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert response.json()["error"].startswith(named)
    sim.drain_callbacks()
    assert receiver.bodies == []


def test_send_order_checks_method_and_credentials_like_the_other_routes(
    http: httpx.Client,
) -> None:
    assert http.get(f"{BASE}/send-order", headers=HEADERS).status_code == 405
    response = http.post(f"{BASE}/send-order", json=BODY, headers={**HEADERS, "Client-Token": "x"})
    assert (response.status_code, response.json()) == (403, {"error": "Client-Token x not allowed"})


def test_the_order_callback_mode_is_a_control_knob(sim: ZapiSimulator, http: httpx.Client) -> None:
    assert http.post("/__sim__/config", json={"order_callback": "never"}).status_code == 200
    assert sim.order_callback == "never"
    refused = http.post("/__sim__/config", json={"order_callback": "sometimes"})
    assert refused.status_code == 400
    assert sim.order_callback == "never"
    assert sim.cli_args()[-4:] == ["--order-callback", "never", "--order-callback-delay", "0.0"]


@settings(max_examples=60, deadline=None)
@given(send_order_bodies())
def test_any_valid_body_comes_back_as_a_callback_the_worker_reads(body: dict[str, Any]) -> None:
    """The route passes the body as the schema puts it on the wire (phone normalised). Sums
    past JSON's exact integers are left out: the callback parser refuses such a total."""
    wire = SendOrder.model_validate(body).to_wire()
    order_sent = wire["order"]
    lines = sum(line["value"] * line["quantity"] for line in order_sent["products"])
    assume(lines + order_sent.get("shipping", 0) + order_sent.get("tax", 0) <= NUMBER_MAX)
    echo = sent_order_message(INSTANCE, wire, "MSG1")
    order = ReceivedCallback.model_validate(echo).order
    assert order is not None
    assert echo["phone"] == normalized_phone(body["phone"])
    sent = wire["order"]["products"]
    assert [(p.name, p.quantity, p.value) for p in order.products] == [
        (p["name"], p["quantity"], p["value"]) for p in sent
    ]
    for product, line in zip(order.products, sent, strict=True):
        assert product.productId == line.get("productId", product.productId)
        assert product.isCustomItem == product.productId.startswith("custom-item-")
