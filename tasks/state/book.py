"""The order book: each order's snapshot, so that a shop can send two fields, not the whole order.

A snapshot is what the two update endpoints need of an order (phone, the order message's
``messageId``, ``referenceId``, ``orderRequestId``, currency, products, discount, tax,
shipping) and its statuses. It comes from Z-API's order webhook (``ReceivedCallback`` with
``reviewAndPay`` / ``reviewOrder``), or from the first full update delivered for the order.

Keys (an instance's orders; both expire ``ZAPI_ORDER_TTL``, 90 days, after the last write):

* ``zapi-queue:order:{instance}:{orderRequestId}:state``, field ``snapshot``: the snapshot's
  JSON (camelCase, as on the wire). The same hash holds what the order last showed the customer
  (``status``, ``payment``: tasks/state/orders.py), which is the snapshot's current statuses;
* ``zapi-queue:order-message:{instance}:{messageId}`` (the id escaped, as delivery keys'
  are: tasks/contract/delivery_record.py ``key_part``): the ``orderRequestId`` of the order
  whose order message this is, so a short update may name the order either way.

**The first snapshot of an order stays.** A later callback carrying the same ``orderRequestId``
(Z-API's order callbacks come with ``fromMe`` true or false, so that cannot tell the order
message from a later one; a replayed, forged or mistaken callback looks the same) changes
nothing: not the phone later updates go to, not the order message they reply to, and it adds no
order-message index. The order's statuses move with the updates delivered (tasks/state/orders.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from config import get_settings
from config.instances import Instance
from tasks.callbacks import ReceivedCallback
from tasks.contract.delivery_record import key_part
from tasks.contract.ordering import ShopOrderKey, order_keys
from tasks.contract.schemas import normalized_phone
from tasks.instances import default_instance
from tasks.per_process import PerInstance
from tasks.state.keys import ORDER_MESSAGE_PREFIX
from tasks.state.scripts import Script
from tasks.state.store import get_redis, text

MESSAGE_PREFIX = ORDER_MESSAGE_PREFIX
SNAPSHOT_FIELD = "snapshot"

_SAVE_FIRST = Script.of(
    "tasks.state",
    "book.lua",
    "save_first",
    keys=("state", "message_index"),
    args=("snapshot", "order_request_id", "ttl"),
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One order as the book knows it. ``data`` is the stored JSON object; ``order_status`` and
    ``payment_status`` are the current ones (the last delivered update's, else the webhook's)."""

    data: dict[str, Any]
    order_status: str
    payment_status: str
    delivered_at: float | None = None

    @property
    def order_request_id(self) -> str:
        return str(self.data["orderRequestId"])

    @property
    def phone(self) -> str:
        """The customer's phone as an update to this order is sent to it."""
        return normalized_phone(str(self.data["phone"]))

    def full_body(
        self, *, order_status: str, payment_status: str, message: str | None
    ) -> dict[str, Any]:
        """The documented body of both update endpoints, for these statuses."""
        body: dict[str, Any] = {
            "phone": self.data["phone"],
            "messageId": self.data["messageId"],
            "referenceId": self.data["referenceId"],
            "orderRequestId": self.data["orderRequestId"],
            "orderStatus": order_status,
            "paymentStatus": payment_status,
            "order": dict(self.data["order"]),
        }
        if message is not None:
            body["message"] = message
        return body


def snapshot_of_callback(callback: ReceivedCallback, instance_id: str) -> dict[str, Any] | None:
    """The snapshot an order webhook carries, or None when the message is not an order (or
    the order comes without the phone or message id an update needs)."""
    order = callback.order
    if order is None or callback.phone is None or callback.messageId is None:
        return None
    products = [product.model_dump() for product in order.products]
    details = {"discount": order.discount, "tax": order.tax, "shipping": order.shipping}
    return {
        "instanceId": instance_id,
        "phone": callback.phone,
        "messageId": callback.messageId,
        "referenceId": order.referenceId,
        "orderRequestId": order.orderRequestId,
        "orderStatus": order.orderStatus,
        "paymentStatus": order.paymentStatus,
        "order": {
            "currency": order.currency,
            "products": products,
            **{name: value for name, value in details.items() if value is not None},
        },
        "at": callback.at,
        "source": "webhook",
    }


def snapshot_of_update(wire: dict[str, Any], instance_id: str) -> dict[str, Any]:
    """The snapshot a full update carries (its wire body has all the webhook's data)."""
    return {
        "instanceId": instance_id,
        **{name: wire[name] for name in ("phone", "messageId", "referenceId", "orderRequestId")},
        "orderStatus": wire["orderStatus"],
        "paymentStatus": wire["paymentStatus"],
        "order": wire["order"],
        "at": time.time(),
        "source": "update",
    }


class OrderBook:
    """The snapshots of one Z-API instance's orders."""

    def __init__(self, client: redis.Redis, *, instance_id: str, ttl: int) -> None:
        self._redis = client
        self.instance_id = instance_id
        self.ttl = ttl
        self._save_first = _SAVE_FIRST.register(client)

    def state_key(self, order_request_id: str) -> str:
        return order_keys(self.instance_id, order_request_id)[2]

    def message_key(self, message_id: str) -> str:
        return f"{MESSAGE_PREFIX}{self.instance_id}:{key_part(message_id)}"

    def save(self, snapshot: dict[str, Any]) -> bool:
        """Store a webhook's ``snapshot``, findable by ``orderRequestId`` and by ``messageId``,
        unless the book already has the order (False: the first snapshot stays, see above).
        (A full update's snapshot only fills a gap too, in the script that records its reply:
        tasks/state/turns.py.)"""
        encoded = json.dumps(snapshot, separators=(",", ":"), ensure_ascii=False)
        return bool(
            self._save_first(
                state=self.state_key(snapshot["orderRequestId"]),
                message_index=self.message_key(snapshot["messageId"]),
                snapshot=encoded,
                order_request_id=snapshot["orderRequestId"],
                ttl=self.ttl,
            )
        )

    def find(
        self,
        *,
        order_request_id: str | None = None,
        message_id: str | None = None,
        order_key: str | None = None,
    ) -> Snapshot | None:
        """The order named by its ``orderRequestId`` (preferred), its order message's
        ``messageId`` or the shop's ``order_key`` (linked to the order message when the
        send-order reply was recorded); None when the book does not have it (yet)."""
        delivered: list[Any] = [None, None, None]
        if order_request_id is None and message_id is None and order_key is not None:
            keyed = order_keys(self.instance_id, ShopOrderKey(order_key))[2]
            found, *delivered = self._redis.hmget(keyed, "messageId", "status", "payment", "at")
            message_id = text(found) if found is not None else None
        if order_request_id is None and message_id is not None:
            found = self._redis.get(self.message_key(message_id))
            order_request_id = text(found) if found is not None else None
        if order_request_id is None:
            return None
        fields = self._redis.hmget(
            self.state_key(order_request_id), SNAPSHOT_FIELD, "status", "payment", "at"
        )
        raw, *shown = fields
        if raw is None:
            return None
        # A keyed order's updates record what it shows under its key (tasks/state/orders.py).
        status, payment, at = delivered if delivered[0] is not None else shown
        data = json.loads(raw)
        return Snapshot(
            data=data,
            order_status=text(status) if status else data["orderStatus"],
            payment_status=text(payment) if payment else data["paymentStatus"],
            delivered_at=float(at) if at else None,
        )

    def order_message(self, order_key: str) -> dict[str, str]:
        """What the book links to the shop's ``order_key``: the order message's ``messageId``
        and ``zaapId``, the job that sent it and when (empty: no order message recorded)."""
        keyed = order_keys(self.instance_id, ShopOrderKey(order_key))[2]
        names = ("messageId", "zaapId", "orderJob", "orderSentAt")
        values = self._redis.hmget(keyed, *names)
        return {name: text(value) for name, value in zip(names, values, strict=True) if value}


_order_books = PerInstance(
    lambda instance: OrderBook(
        get_redis(), instance_id=instance.instance_id, ttl=get_settings().zapi_order_ttl
    )
)


def get_order_book(instance: Instance | None = None) -> OrderBook:
    """The order book of ``instance`` (default: ``default``)."""
    return _order_books.get(instance or default_instance())
