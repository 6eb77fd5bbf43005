"""The forward-only rules of an order's timeline, and reading an order update off the wire."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.contract.ordering import (
    Arrival,
    Delivered,
    ShopOrderKey,
    arrival_of,
    order_keys,
    order_of,
    order_status_moves_back,
    payment_status_moves_back,
    stale_reason,
)

FORWARD = [
    (None, "shipped"),
    ("pending", "processing"),
    ("processing", "shipped"),
    ("shipped", "completed"),
    ("pending", "completed"),
    ("shipped", "shipped"),  # the same state again: a new message
    ("pending", "canceled"),
    ("shipped", "canceled"),
    ("canceled", "canceled"),
]
BACKWARD = [
    ("shipped", "processing"),
    ("completed", "shipped"),
    ("completed", "canceled"),  # completed is final
    ("canceled", "pending"),  # and so is canceled
    ("canceled", "completed"),
]


@pytest.mark.parametrize(("delivered", "new"), FORWARD)
def test_order_status_moves_forward(delivered: str | None, new: str) -> None:
    assert not order_status_moves_back(delivered, new)


@pytest.mark.parametrize(("delivered", "new"), BACKWARD)
def test_order_status_never_moves_back(delivered: str, new: str) -> None:
    assert order_status_moves_back(delivered, new)


def test_payment_status_moves_from_pending_to_paid_only() -> None:
    assert not payment_status_moves_back("pending", "paid")
    assert not payment_status_moves_back("paid", "paid")
    assert payment_status_moves_back("paid", "pending")


def test_the_reason_names_what_is_behind_what_and_whom() -> None:
    delivered = Delivered("shipped", "paid", 7, "job-1", 1_700_000_000.0)
    reason = stale_reason(delivered, "processing", "pending", 3)
    assert reason == (
        "orderStatus processing is behind shipped; paymentStatus pending is behind paid; "
        "sequence 3 is older than 7 (delivered 2023-11-14 22:13:20 UTC by job job-1): not sent"
    )
    assert stale_reason(delivered, "shipped", "paid", 7) is None
    assert stale_reason(Delivered(), "pending", "pending", 0) is None


def message(task: str, body: object, kwargs: dict[str, object]) -> dict[str, object]:
    """A Celery protocol 2 message as a producer publishes it on Redis."""
    raw = json.dumps([[body], kwargs, {}]).encode()
    return {
        "body": base64.b64encode(raw).decode(),
        "headers": {"task": task, "id": "job-9"},
        "properties": {"body_encoding": "base64"},
    }


def test_an_order_update_is_read_off_the_wire() -> None:
    body = {"orderRequestId": "ORD-1", "orderStatus": "shipped"}
    found = arrival_of(message("zapi.order_status_update", body, {"sequence": 12}))
    assert found == Arrival("job-9", "ORD-1", 12)
    plain = arrival_of(message("zapi.order_payment_update", body, {}))
    assert plain == Arrival("job-9", "ORD-1", None)


@pytest.mark.parametrize(
    ("task", "body", "kwargs"),
    [
        ("celery.ping", {"orderRequestId": "ORD-1"}, {}),
        ("zapi.order_status_update", {"orderStatus": "shipped"}, {}),
        ("zapi.order_status_update", "not a dict", {}),
    ],
)
def test_other_messages_have_no_order(task: str, body: object, kwargs: dict[str, object]) -> None:
    assert arrival_of(message(task, body, kwargs)) is None
    assert arrival_of({"body": "%%% not base64", "headers": {"task": task, "id": "x"}}) is None


def test_a_bad_sequence_on_the_wire_is_ignored_there() -> None:
    """The task refuses it with InvalidBodyError; the transport just does not use it."""
    body = {"orderRequestId": "ORD-1"}
    found = arrival_of(message("zapi.order_status_update", body, {"sequence": "3"}))
    assert found == Arrival("job-9", "ORD-1", None)


def test_no_two_orders_share_a_key_whatever_their_ids_hold() -> None:
    assert order_keys("i", "a:b") != order_keys("i:a", "b")
    assert order_keys("i", "a%3Ab") != order_keys("i", "a:b")
    assert order_keys("i", "4N8FCTW22W4")[0] == "zapi-queue:order:i:4N8FCTW22W4:line"


def test_a_shop_key_names_its_own_line() -> None:
    """send-order's ``order_key`` and an update's ``orderKey`` name one line, apart from any
    ``orderRequestId``'s; a wrong key names none (the execution refuses it, saying why)."""
    keyed = arrival_of(message("zapi.send_order", {"phone": "5511"}, {"order_key": "shop-1042"}))
    assert keyed is not None
    assert isinstance(keyed.order, ShopOrderKey)
    update = {"orderKey": "shop-1042", "orderStatus": "shipped"}
    found = arrival_of(message("zapi.order_status_update", update, {}))
    assert found is not None
    assert found.order == keyed.order
    assert isinstance(found.order, ShopOrderKey)
    assert order_keys("i", found.order)[2] == "zapi-queue:order-key:i:shop-1042:state"
    for wrong in ("", " shop-1042", "a\nb", "x" * 101, 1042):
        assert order_of("zapi.send_order", {}, {"order_key": wrong}) is None
        assert order_of("zapi.order_status_update", {"orderKey": wrong}, {}) is None
    assert order_of("zapi.send_order", {"orderRequestId": "ORD-1"}, {}) is None


@given(st.text(max_size=30), st.text(max_size=30))
def test_no_shop_key_shares_a_key_with_an_order_request_id(key: str, order: str) -> None:
    keyed = set(order_keys("i", ShopOrderKey(key)))
    assert not keyed & set(order_keys("i", order))
