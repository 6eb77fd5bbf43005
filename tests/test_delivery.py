"""End to end: a bare Celery producer, Redis, a real worker process, and the fake Z-API."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult

from devtools.processes import WorkerProcess
from devtools.redis_server import RedisServer
from devtools.zapi_sim import NOT_FOUND_BODY, Fault, ZapiSimulator
from tasks.state.deadletter import DeadLetterStore
from tests.bodies import DOCS_PAYMENT_BODY, DOCS_STATUS_BODY, unique_body
from tests.conftest import CLIENT_TIMEOUT, CLIENT_TOKEN, INSTANCE_ID, MAX_ATTEMPTS, SECRETS

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]

STATUS = "zapi.order_status_update"
PAYMENT = "zapi.order_payment_update"


def run(producer: Celery, task: str, body: Any, timeout: float = 30) -> AsyncResult[Any]:
    result = producer.send_task(task, args=[body])
    result.get(timeout=timeout, propagate=False)
    return result


def run_scripted(
    producer: Celery, zapi_sim: ZapiSimulator, task: str, *faults: Fault
) -> tuple[dict[str, Any], AsyncResult[Any]]:
    """A fresh update, whose sends the fake Z-API answers with ``faults`` first, run to its
    end: the body and its result."""
    body = unique_body()
    zapi_sim.script(body["messageId"], *faults)
    return body, run(producer, task, body)


@pytest.mark.parametrize(
    ("task", "endpoint", "example"),
    [
        (STATUS, "order-status-update", DOCS_STATUS_BODY),
        (PAYMENT, "order-payment-update", DOCS_PAYMENT_BODY),
    ],
)
def test_delivers_the_exact_body_and_stores_the_exact_reply(
    producer: Celery, zapi_sim: ZapiSimulator, task: str, endpoint: str, example: dict[str, Any]
) -> None:
    body = unique_body(example)
    result = run(producer, task, body)

    assert result.state == "SUCCESS", result.result
    [request] = zapi_sim.requests(body["messageId"])
    assert request.method == "POST"
    assert request.path == f"/instances/{INSTANCE_ID}/token/{zapi_sim.instance_token}/{endpoint}"
    assert request.headers["client-token"] == CLIENT_TOKEN
    assert request.headers["content-type"] == "application/json"
    assert request.json == body
    # The stored result is Z-API's reply, readable by any client from the backend.
    reply = result.result
    assert isinstance(reply, dict)
    assert set(reply) == {"zaapId", "messageId", "id"}
    assert reply["id"] == reply["messageId"]
    fresh: AsyncResult[Any] = AsyncResult(result.id, app=producer)
    assert fresh.state == "SUCCESS"
    assert fresh.result == reply


def test_an_invalid_body_fails_at_once_naming_every_field_and_sends_nothing(
    producer: Celery, zapi_sim: ZapiSimulator
) -> None:
    body = unique_body(phone="55 44 9999-XXXX", orderStatus="sent")
    body["order"] = {**body["order"], "currency": "REAL", "products": [{"name": "x"}]}
    result = run(producer, STATUS, body)

    assert result.state == "FAILURE"
    error = str(result.result)
    assert type(result.result).__name__ == "InvalidBodyError"
    for field in (
        "phone:",
        "orderStatus:",
        "order.currency:",
        "order.products[0].value: Field required",
        "order.products[0].quantity: Field required",
        "order.products[0].productId: Field required",
        "order.products[0].isCustomItem: Field required",
    ):
        assert field in error
    assert zapi_sim.requests(body["messageId"]) == []


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(status=400, body={"error": "null not allowed"}), "HTTP 400: null not allowed"),
        (
            Fault(status=403, body={"error": f"Client-Token {CLIENT_TOKEN} not allowed"}),
            "HTTP 403: Client-Token *** not allowed",
        ),
        (Fault(status=404, body={"error": "Not Found"}), "HTTP 404: Not Found"),
        (Fault(status=405, body=""), "HTTP 405: (empty body)"),
        (Fault(status=415, body={"error": "Unsupported"}), "HTTP 415: Unsupported"),
        (Fault(status=422, body={"error": "bad order"}), "HTTP 422: bad order"),
        (
            Fault(status=200, body=NOT_FOUND_BODY),
            "HTTP 200 without zaapId and messageId: NOT_FOUND: Unable to find matching",
        ),
    ],
    ids=["400", "403", "404", "405", "415", "422", "200-with-error"],
)
def test_refusals_fail_at_once_with_status_and_text(
    producer: Celery, zapi_sim: ZapiSimulator, fault: Fault, expected: str
) -> None:
    body, result = run_scripted(producer, zapi_sim, PAYMENT, fault)

    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "ZapiRejectedError"
    assert expected in str(result.result)
    assert not any(secret in str(result.result) for secret in SECRETS)
    assert len(zapi_sim.requests(body["messageId"])) == 1


@pytest.mark.parametrize(
    "faults",
    [
        [Fault(status=503), Fault(status=500, body="oops")],
        [Fault(status=502, body="<html>Bad Gateway</html>"), Fault(status=408)],
        [Fault(delay=CLIENT_TIMEOUT + 1.0)],
        [Fault(drop=True)],
    ],
    ids=["5xx-twice", "502-then-408", "timeout", "dropped-connection"],
)
def test_transient_failures_are_retried_then_delivered(
    producer: Celery, zapi_sim: ZapiSimulator, faults: list[Fault]
) -> None:
    body, result = run_scripted(producer, zapi_sim, STATUS, *faults)

    assert result.state == "SUCCESS", result.result
    requests = zapi_sim.requests(body["messageId"])
    assert len(requests) == len(faults) + 1
    assert all(r.json == body for r in requests)


def test_retry_after_is_honoured(producer: Celery, zapi_sim: ZapiSimulator) -> None:
    limited = Fault(status=429, body={"error": "Too many requests"}, headers={"Retry-After": "2"})
    body, result = run_scripted(producer, zapi_sim, STATUS, limited)

    assert result.state == "SUCCESS", result.result
    first, second = zapi_sim.requests(body["messageId"])
    # The backoff base is 0.05 s in tests: only Retry-After explains a two-second gap.
    assert second.received_at - first.received_at >= 2.0


def test_attempts_are_bounded_by_max_attempts(producer: Celery, zapi_sim: ZapiSimulator) -> None:
    body, result = run_scripted(
        producer, zapi_sim, STATUS, *[Fault(status=503)] * (MAX_ATTEMPTS + 2)
    )

    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "AttemptsExhaustedError"
    assert f"after {MAX_ATTEMPTS} attempts" in str(result.result)
    assert "HTTP 503: Service Unavailable" in str(result.result)
    assert len(zapi_sim.requests(body["messageId"])) == MAX_ATTEMPTS


def test_a_wrong_instance_token_is_refused_without_leaking_it(
    producer: Celery, zapi_sim: ZapiSimulator, worker: WorkerProcess
) -> None:
    """Flip the fake's expected token: the worker's real token is now 'wrong' and refused."""
    body = unique_body()
    original = zapi_sim.instance_token
    zapi_sim.instance_token = "another-token"
    try:
        result = run(producer, STATUS, copy.deepcopy(body))
    finally:
        zapi_sim.instance_token = original
    assert result.state == "FAILURE"
    assert "HTTP 400: Instance not found" in str(result.result)
    assert original not in str(result.result) + str(result.traceback)


@pytest.mark.parametrize(
    ("fault", "ambiguous"),
    [
        (Fault(delay=CLIENT_TIMEOUT + 1.0), 1),  # the request arrived; its answer did not
        (Fault(drop=True), 1),  # read, then the connection closed without an answer
        (Fault(status=503), 0),  # an answer: certainly not delivered
    ],
    ids=["stalled-answer", "dropped-after-request", "503"],
)
def test_a_send_that_may_have_reached_z_api_is_reported_ambiguous(
    producer: Celery, zapi_sim: ZapiSimulator, fault: Fault, ambiguous: int
) -> None:
    body, result = run_scripted(producer, zapi_sim, STATUS, fault)

    assert result.state == "SUCCESS", result.result
    reply = result.result
    assert isinstance(reply, dict)
    assert reply.get("ambiguousAttempts", 0) == ambiguous
    assert len(zapi_sim.requests(body["messageId"])) == 2


def test_429s_defer_without_using_attempts(producer: Celery, zapi_sim: ZapiSimulator) -> None:
    """More 429s in a row than ZAPI_MAX_ATTEMPTS, then an answer: delivered."""
    body, result = run_scripted(
        producer, zapi_sim, STATUS, *[Fault(status=429)] * (MAX_ATTEMPTS + 1)
    )

    assert result.state == "SUCCESS", result.result
    requests = zapi_sim.requests(body["messageId"])
    assert [r.status for r in requests] == [429] * (MAX_ATTEMPTS + 1) + [200]
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(requests)]
    # The instance pauses longer at each 429 in a row (backoff base 0.05 s in tests).
    assert gaps[-1] > gaps[0] * 2, gaps


def send(producer: Celery, body: dict[str, Any], **kwargs: Any) -> AsyncResult[Any]:
    result = producer.send_task(STATUS, args=[body], kwargs=kwargs)
    result.get(timeout=30, propagate=False)
    return result


def test_an_update_behind_its_order_is_refused_not_sent_and_not_a_dead_letter(
    producer: Celery, zapi_sim: ZapiSimulator, redis_server: RedisServer
) -> None:
    shipped = unique_body(orderStatus="shipped")
    assert send(producer, shipped).state == "SUCCESS"
    late = unique_body(orderStatus="processing", orderRequestId=shipped["orderRequestId"])
    result = send(producer, late)

    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "StaleUpdateError"
    error = str(result.result)
    assert f"order {shipped['orderRequestId']}: orderStatus processing is behind shipped" in error
    assert "not sent" in error
    assert zapi_sim.requests(late["messageId"]) == []
    assert DeadLetterStore(redis_server.client()).get(result.id) is None


def test_force_sends_an_update_behind_its_order(producer: Celery, zapi_sim: ZapiSimulator) -> None:
    shipped = unique_body(orderStatus="shipped")
    send(producer, shipped)
    late = unique_body(orderStatus="processing", orderRequestId=shipped["orderRequestId"])

    assert send(producer, late, force=True).state == "SUCCESS"
    assert len(zapi_sim.requests(late["messageId"])) == 1


def test_the_same_state_again_is_sent_and_an_older_sequence_is_not(
    producer: Celery, zapi_sim: ZapiSimulator
) -> None:
    first = unique_body(orderStatus="shipped", message="On its way")
    order = first["orderRequestId"]
    again = unique_body(orderStatus="shipped", message="Now at the depot", orderRequestId=order)
    older = unique_body(orderStatus="shipped", message="Old news", orderRequestId=order)

    assert send(producer, first, sequence=5).state == "SUCCESS"
    assert send(producer, again, sequence=6).state == "SUCCESS"
    result = send(producer, older, sequence=3)
    assert result.state == "FAILURE"
    assert "sequence 3 is older than 6" in str(result.result)
    assert zapi_sim.requests(older["messageId"]) == []


def test_a_bad_sequence_is_refused_naming_the_rule(producer: Celery) -> None:
    result = send(producer, unique_body(), sequence="soon")
    assert result.state == "FAILURE"
    assert "sequence: must be an integer from 0 to 2^53-1" in str(result.result)
