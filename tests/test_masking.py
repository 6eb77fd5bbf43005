"""What the worker reports about a job (task events, hence Flower) shows no full phone."""

from __future__ import annotations

import pytest
from celery import Celery

from tests.bodies import unique_body
from tests.events import EventCapture

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]

PHONE = "5511987654321"


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
