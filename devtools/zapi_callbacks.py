"""The fake Z-API's webhooks: the callbacks real Z-API posts, in FACTS.md's shapes.

After each accepted send the fake posts a ``DeliveryCallback`` (with an ``error`` for a
configurable share) and, when delivered, ``MessageStatusCallback`` SENT, RECEIVED and READ; it can
also post a ``ReceivedCallback`` with ``reviewAndPay`` for a new order, the one a send-order
comes back as (:func:`sent_order_message`). One thread posts them in order, so that a message's
callbacks arrive in the order Z-API would send them; every post and its answer is recorded for
tests.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import string
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from tasks.contract.schemas import CUSTOM_ITEM_PREFIX

#: Z-API's generated ids (``referenceId``, ``orderRequestId``, a custom item's): 11 characters,
#: upper-case letters and digits, e.g. ``4N9AVI38VOB`` (FACTS.md's example).
ID_ALPHABET = string.ascii_uppercase + string.digits
ID_LENGTH = 11
#: DeliveryCallback errors seen in the wild (FACTS.md), with their errorCode when there is one.
DELIVERY_ERRORS = (
    ("Update order has not been sent because it received invalid request data.", None),
    ("Phone number does not exist", None),
    ("Timeout on send message", None),
    ("Account is shadow banned", "SHADOW_BAN"),
)


def _moment() -> int:
    return int(time.time() * 1000)


def zapi_id() -> str:
    """A fresh id spelled like Z-API's order ids."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def _money(amount: float) -> float:
    """A sum of amounts: an integer stays one, a float is rounded to cents (no 0.30000004)."""
    return round(amount, 2) if isinstance(amount, float) else amount


def order_message(
    instance_id: str,
    *,
    phone: str = "5511999990000",
    products: list[dict[str, Any]] | None = None,
    shape: str = "reviewAndPay",
    moment_field: str = "momment",
    currency: str = "BRL",
    order_request_id: str | None = None,
    message_id: str | None = None,
    discount: float = 10,
    shipping: float = 5,
    tax: float = 10,
) -> dict[str, Any]:
    """A ``ReceivedCallback`` carrying a new order (``reviewAndPay`` or ``reviewOrder``), its
    amounts as in FACTS.md's example: ``subTotal`` the products' value times quantity,
    ``total`` that less ``discount`` plus ``shipping`` and ``tax``, and never below 0 (a
    discount past the rest is the fake's guess: Z-API documents no such case)."""
    items = products or [
        {
            "name": "order 1",
            "quantity": 2,
            "isCustomItem": True,
            "productId": CUSTOM_ITEM_PREFIX + zapi_id(),
            "value": 150,
        }
    ]
    sub_total = _money(sum(item["value"] * item["quantity"] for item in items))
    order: dict[str, Any] = {
        "currency": currency,
        "referenceId": zapi_id(),
        "orderRequestId": order_request_id or zapi_id(),
        "orderStatus": "pending",
        "paymentStatus": "pending",
        "total": _money(max(0, sub_total - discount + shipping + tax)),
        "subTotal": sub_total,
        "discount": discount,
        "shipping": shipping,
        "tax": tax,
        "products": items,
    }
    if shape == "reviewAndPay":
        order = {"type": "physical-goods", **order}
    return {
        "type": "ReceivedCallback",
        "instanceId": instance_id,
        "phone": phone,
        "fromMe": True,
        "messageId": message_id or secrets.token_hex(10).upper(),
        moment_field: _moment(),
        shape: order,
    }


def sent_order_message(instance_id: str, body: dict[str, Any], message_id: str) -> dict[str, Any]:
    """The ``ReceivedCallback`` (``fromMe``, ``reviewAndPay``) Z-API posts for the order message
    a send-order ``body`` (valid, in Z-API's spelling) sent as ``message_id``: the order's ids
    generated, a product sent without ``productId`` a custom item with a ``custom-item-`` id,
    an amount left out 0."""
    order = body["order"]
    products = []
    for product in order["products"]:
        product_id = product.get("productId") or CUSTOM_ITEM_PREFIX + zapi_id()
        products.append(
            {
                "name": product["name"],
                "quantity": product["quantity"],
                "isCustomItem": product_id.startswith(CUSTOM_ITEM_PREFIX),
                "productId": product_id,
                "value": product["value"],
            }
        )
    return order_message(
        instance_id,
        phone=body["phone"],
        products=products,
        currency=order["currency"],
        message_id=message_id,
        discount=order.get("discount", 0),
        shipping=order.get("shipping", 0),
        tax=order.get("tax", 0),
    )


def delivery_callback(
    instance_id: str, message_id: str, zaap_id: str, phone: str, *, failure: int | None = None
) -> dict[str, Any]:
    """A ``DeliveryCallback``; ``failure`` picks one of DELIVERY_ERRORS."""
    payload: dict[str, Any] = {
        "type": "DeliveryCallback",
        "instanceId": instance_id,
        "phone": phone,
        "messageId": message_id,
        "zaapId": zaap_id,
        "momment": _moment(),
    }
    if failure is not None:
        error, code = DELIVERY_ERRORS[failure % len(DELIVERY_ERRORS)]
        payload["error"] = error
        if code is not None:
            payload["errorCode"] = code
    return payload


def status_callback(instance_id: str, message_id: str, phone: str, status: str) -> dict[str, Any]:
    """A ``MessageStatusCallback`` for one message."""
    return {
        "type": "MessageStatusCallback",
        "instanceId": instance_id,
        "status": status,
        "ids": [message_id],
        "momment": _moment(),
        "phone": phone,
        "isGroup": False,
    }


@dataclass
class PostedCallback:
    payload: dict[str, Any]
    status: int
    """The receiver's HTTP status; 0 when it could not be reached."""


class CallbackPoster:
    """Posts callbacks to a webhook URL from one background thread, in order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, dict[str, Any], float] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._posted: list[PostedCallback] = []
        self._http = httpx.Client(timeout=10)
        self._thread = threading.Thread(target=self._run, name="zapi-sim-callbacks", daemon=True)
        self._thread.start()

    def post_later(self, url: str, payload: dict[str, Any], delay: float = 0.0) -> None:
        """Post ``payload`` ``delay`` seconds from now (and after the ones queued before it)."""
        self._queue.put((url, payload, time.monotonic() + delay))

    def post_now(self, url: str, payload: dict[str, Any]) -> int:
        """Post ``payload`` at once, in the caller's thread; returns the HTTP status."""
        try:
            status = self._http.post(url, json=payload).status_code
        except httpx.HTTPError:
            status = 0
        with self._lock:
            self._posted.append(PostedCallback(payload, status))
        return status

    def posted(self) -> list[PostedCallback]:
        with self._lock:
            return list(self._posted)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued callback was posted."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def reset(self) -> None:
        with self._lock:
            self._posted.clear()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._http.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                url, payload, due = item
                time.sleep(max(0.0, due - time.monotonic()))
                with contextlib.suppress(Exception):
                    self.post_now(url, payload)
            finally:
                self._queue.task_done()
