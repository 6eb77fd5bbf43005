"""What the worker reports about a job (task events, hence Flower) shows no full phone."""

from __future__ import annotations

import pytest
from celery import Celery

from tasks.contract.redaction import describe_body
from tasks.request import shown_args, shown_kwargs
from tests.bodies import unique_body
from tests.events import EventCapture

PHONE = "5511987654321"


@pytest.mark.e2e
@pytest.mark.usefixtures("worker")
def test_task_events_carry_a_masked_phone(producer: Celery) -> None:
    with EventCapture(producer) as events:
        result = producer.send_task("zapi.order_status_update", args=[unique_body(phone=PHONE)])
        result.get(timeout=30)
        events.wait_for(result.id, "task-succeeded")

    ours = [e for e in events.seen if e.get("uuid") == result.id]
    received = next(e for e in ours if e["type"] == "task-received")
    assert "55119*****321" in received["args"]
    assert all(PHONE not in str(event) for event in ours)
    assert {e["type"] for e in ours} >= {"task-received", "task-started", "task-succeeded"}


def test_every_call_shape_is_shown_without_the_phone() -> None:
    body = unique_body(phone=PHONE, orderRequestId="4N8FCTW22W4")  # no run of 8 digits in it
    shown = shown_args([body, {"phone": PHONE}, "x", 4, 5]) + shown_kwargs(
        {"body": body, "customer": {"phone": PHONE}, "idempotency_key": f"k-{PHONE}", "force": 1}
    )
    assert PHONE not in shown
    assert "55119*****321" in shown
    assert f"'orderRequestId': {body['orderRequestId']!r}" in shown
    assert "'orderStatus': 'processing'" in shown
    assert "<2 more>" in shown  # extra positional arguments are counted, not shown
    assert "'customer': <dict>" in shown  # an unknown kwarg by its name only
    assert "'force': '<int>'" in shown  # a kwarg of the wrong type by its type


def test_a_short_update_shows_no_phone() -> None:
    shown = shown_args([{"orderRequestId": "4N8X", "orderStatus": "pending", "message": PHONE}])
    assert shown == "[{'orderRequestId': '4N8X', 'orderStatus': 'pending'}]"
    assert shown_kwargs({}) == "{'instance': 'default'}"


def test_a_huge_or_odd_body_is_shown_short() -> None:
    huge = {"phone": PHONE, "messageId": PHONE * 10_000, "message": "x" * 1_000_000}
    assert len(describe_body(huge)) < 200
    assert PHONE not in describe_body(huge)
    assert describe_body([PHONE]) == "[<list>]"
    assert "12345678" not in describe_body({"phone": "12345678"})  # too short to keep 5 + 3
