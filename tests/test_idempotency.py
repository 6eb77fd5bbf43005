"""The same job enqueued twice is sent once; its reply is returned to both."""

from __future__ import annotations

import pytest
from celery import Celery

from tests.bodies import unique_body
from worker.dev.zapi_sim import ZapiSimulator

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]

STATUS = "zapi.order_status_update"


def test_the_same_body_twice_is_sent_once(producer: Celery, zapi_sim: ZapiSimulator) -> None:
    body = unique_body()
    results = [producer.send_task(STATUS, args=[body]) for _ in range(2)]
    replies = [r.get(timeout=30) for r in results]

    assert replies[0] == replies[1]
    assert len(zapi_sim.requests(body["messageId"])) == 1


def test_a_repeat_after_delivery_returns_the_stored_reply(
    producer: Celery, zapi_sim: ZapiSimulator
) -> None:
    body = unique_body()
    first = producer.send_task(STATUS, args=[body]).get(timeout=30)
    again = producer.send_task(STATUS, args=[body]).get(timeout=30)

    assert again == first
    assert len(zapi_sim.requests(body["messageId"])) == 1


def test_an_explicit_idempotency_key_wins_over_the_body(
    producer: Celery, zapi_sim: ZapiSimulator
) -> None:
    key = unique_body()["messageId"]
    one, two = unique_body(), unique_body()
    first = producer.send_task(STATUS, args=[one], kwargs={"idempotency_key": key}).get(timeout=30)
    second = producer.send_task(STATUS, args=[two], kwargs={"idempotency_key": key}).get(timeout=30)

    assert second == first
    assert len(zapi_sim.requests(one["messageId"])) == 1
    assert zapi_sim.requests(two["messageId"]) == []


def test_a_changed_body_is_a_new_job(producer: Celery, zapi_sim: ZapiSimulator) -> None:
    body = unique_body()
    producer.send_task(STATUS, args=[body]).get(timeout=30)
    producer.send_task(STATUS, args=[{**body, "orderStatus": "shipped"}]).get(timeout=30)

    assert len(zapi_sim.requests(body["messageId"])) == 2


def test_a_bad_idempotency_key_is_refused(producer: Celery, zapi_sim: ZapiSimulator) -> None:
    body = unique_body()
    result = producer.send_task(STATUS, args=[body], kwargs={"idempotency_key": ""})
    result.get(timeout=30, propagate=False)

    assert result.state == "FAILURE"
    assert "idempotency_key: must be a non-empty string" in str(result.result)
    assert zapi_sim.requests(body["messageId"]) == []
