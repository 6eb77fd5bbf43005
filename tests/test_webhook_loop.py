"""The whole loop over real HTTP: Z-API's order webhook into the order book, a two-field update
enqueued by a bare Celery client, sent in full, and Z-API's delivery callbacks back.

A stack of its own: Redis, the fake Z-API (posting its callbacks), ``zapi-queue webhook`` and a
worker, so the fake's webhook settings cannot disturb other tests.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import InvalidBodyError
from tasks.contract.producer import Producer
from tasks.state.deadletter import DeadLetterStore
from tests.bodies import unique_body
from tests.cli import run_cli
from tests.faults import WebhookStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

WEBHOOK_SECRET = "whsec-SECRET-77c0e5f1a2b3"
ORDER_WAIT = 3.0
PHONE = "5511988887777"
STATUS, PAYMENT = "zapi.order_status_update", "zapi.order_payment_update"


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookStack]:
    logs = tmp_path_factory.mktemp("loop")
    with WebhookStack(
        logs, webhook_secret=WEBHOOK_SECRET, zapi_order_wait=str(ORDER_WAIT)
    ) as stack:
        stack.worker()
        yield stack


@pytest.fixture(autouse=True)
def fresh_fake(loop: WebhookStack) -> Iterator[None]:
    loop.sim.delivery_failure_rate = 0.0
    loop.sim.callbacks_before_reply = False
    yield
    loop.sim.drain_callbacks()


def result_of(loop: WebhookStack, job_id: str, timeout: float = 30) -> Any:
    return loop.producer.AsyncResult(job_id).get(timeout=timeout, propagate=False)


def requests_of(loop: WebhookStack, order_request_id: str) -> list[dict[str, Any]]:
    """The bodies Z-API accepted for one order, in arrival order."""
    return [
        r.json
        for r in loop.sim.requests()
        if r.status == 200 and isinstance(r.json, dict)
        if r.json.get("orderRequestId") == order_request_id
    ]


def cli(
    loop: WebhookStack, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(loop.env, *args, stdin=stdin)


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """``check()``'s first truthy answer, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def status_json(loop: WebhookStack, job_id: str) -> dict[str, Any]:
    done = cli(loop, "status", job_id, "--json")
    assert done.returncode == 0, done.stderr  # 0: delivered
    record: dict[str, Any] = json.loads(done.stdout)
    return record


def test_an_order_webhook_then_two_fields_are_sent_as_the_full_documented_body(
    loop: WebhookStack,
) -> None:
    order_message = loop.sim.post_order(phone=PHONE)
    order = order_message["reviewAndPay"]
    message_id = order_message["messageId"]

    job = loop.producer.send_task(
        STATUS, args=[{"messageId": message_id, "orderStatus": "shipped", "message": "on its way"}]
    ).id
    reply = result_of(loop, job)
    assert set(reply) == {"zaapId", "messageId", "id"}, reply

    [sent] = requests_of(loop, order["orderRequestId"])
    assert sent == {
        "phone": PHONE,
        "messageId": message_id,
        "referenceId": order["referenceId"],
        "orderRequestId": order["orderRequestId"],
        "orderStatus": "shipped",
        "paymentStatus": "pending",
        "order": {
            "currency": "BRL",
            "products": order["products"],
            "discount": order["discount"],
            "tax": order["tax"],
            "shipping": order["shipping"],
        },
        "message": "on its way",
    }

    # The payment, naming the order by orderRequestId: the status comes from the book.
    job = loop.producer.send_task(
        PAYMENT, args=[{"orderRequestId": order["orderRequestId"], "paymentStatus": "paid"}]
    ).id
    assert "zaapId" in result_of(loop, job)
    second = requests_of(loop, order["orderRequestId"])[-1]
    assert (second["orderStatus"], second["paymentStatus"]) == ("shipped", "paid")
    assert "message" not in second

    shown = json.loads(cli(loop, "order", "show", message_id, "--json").stdout)
    assert (shown["orderStatus"], shown["paymentStatus"]) == ("shipped", "paid")

    # Z-API's read receipt comes back through the webhook.
    read = eventually(lambda: status_json(loop, job)["delivery"]["state"] == "read")
    assert read, status_json(loop, job)
    delivery = status_json(loop, job)["delivery"]
    assert delivery["error"] is None
    assert delivery["updated_at"] > time.time() - 60


def test_the_producer_takes_the_short_form_and_shows_the_delivery(loop: WebhookStack) -> None:
    order = loop.sim.post_order(phone=PHONE)["reviewAndPay"]
    producer = Producer(
        broker_url=loop.env["CELERY_BROKER_URL"],
        result_backend=loop.env["CELERY_RESULT_BACKEND"],
        instance_id=loop.sim.instance_id,
    )
    try:
        with pytest.raises(InvalidBodyError, match="orderStatus: Field required"):
            producer.enqueue(Endpoint.ORDER_STATUS_UPDATE, {"orderRequestId": "X"})
        job = producer.enqueue_status_update(
            {"orderRequestId": order["orderRequestId"], "orderStatus": "processing"}
        )
        assert "zaapId" in producer.get_result(job, timeout=30)
        state = eventually(lambda: (producer.delivery(job) or {}).get("state") == "read")
        assert state, producer.delivery(job)
    finally:
        producer.close()


def test_the_command_line_enqueues_the_short_form(loop: WebhookStack) -> None:
    order = loop.sim.post_order(phone=PHONE)["reviewAndPay"]
    short = {"orderRequestId": order["orderRequestId"], "orderStatus": "canceled"}
    done = cli(loop, "enqueue", "status", "--wait", "30", stdin=json.dumps(short))
    assert done.returncode == 0, done.stderr
    assert "zaapId" in done.stdout.splitlines()[-1]
    [sent] = requests_of(loop, order["orderRequestId"])
    assert (sent["orderStatus"], sent["referenceId"]) == ("canceled", order["referenceId"])


def test_an_unknown_order_waits_for_its_webhook_then_fails_naming_the_id(
    loop: WebhookStack,
) -> None:
    started = time.monotonic()
    job = loop.producer.send_task(
        STATUS, args=[{"messageId": "NO-SUCH-ORDER-MSG", "orderStatus": "shipped"}]
    ).id
    outcome = result_of(loop, job, timeout=60)
    assert time.monotonic() - started >= ORDER_WAIT
    assert type(outcome).__name__ == "UnknownOrderError"
    assert "messageId NO-SUCH-ORDER-MSG is not in the order book" in str(outcome)
    assert "ZAPI_ORDER_WAIT" in str(outcome)
    assert not [r for r in loop.sim.requests() if b"NO-SUCH-ORDER-MSG" in r.body]
    letter = DeadLetterStore(loop.redis.client()).get(job)
    assert letter is not None
    assert letter.error_type == "UnknownOrderError"


def test_an_update_that_comes_before_its_order_webhook_waits_for_it(loop: WebhookStack) -> None:
    order_id = f"LATE{time.time_ns()}"
    job = loop.producer.send_task(
        STATUS, args=[{"orderRequestId": order_id, "orderStatus": "processing"}]
    ).id
    time.sleep(1.0)
    assert loop.producer.AsyncResult(job).state in ("PENDING", "RETRY", "STARTED")
    loop.sim.post_order(phone=PHONE, order_request_id=order_id)
    assert "zaapId" in result_of(loop, job)
    [sent] = requests_of(loop, order_id)
    assert sent["orderStatus"] == "processing"


def test_a_full_body_feeds_the_book(loop: WebhookStack) -> None:
    body = unique_body()
    assert "zaapId" in result_of(loop, loop.producer.send_task(STATUS, args=[body]).id)
    short = {"messageId": body["messageId"], "orderStatus": "completed"}
    assert "zaapId" in result_of(loop, loop.producer.send_task(STATUS, args=[short]).id)
    last = requests_of(loop, body["orderRequestId"])[-1]
    expected = {name: value for name, value in body.items() if name != "message"}
    assert last == {**expected, "orderStatus": "completed"}


def dead_letter(loop: WebhookStack, job: str) -> Any:
    return DeadLetterStore(loop.redis.client()).get(job)


@pytest.mark.parametrize("before_reply", [False, True], ids=["after-reply", "before-reply"])
def test_a_failed_delivery_becomes_a_dead_letter_whose_replay_sends_again(
    loop: WebhookStack, before_reply: bool
) -> None:
    loop.sim.delivery_failure_rate = 1.0
    loop.sim.callbacks_before_reply = before_reply
    body = unique_body()
    job = loop.producer.send_task(STATUS, args=[body]).id
    assert "zaapId" in result_of(loop, job)  # Z-API accepted it

    letter = eventually(lambda: dead_letter(loop, job))
    assert letter is not None, "the failed delivery did not become a dead letter"
    assert letter.error_type == "DeliveryFailedError"
    assert "Z-API could not deliver message" in letter.error
    assert letter.body == {  # replayed as a short update, completed from the order book
        "orderRequestId": body["orderRequestId"],
        "orderStatus": body["orderStatus"],
        "message": body["message"],
    }
    assert status_json(loop, job)["delivery"]["state"] == "failed"
    assert status_json(loop, job)["delivery"]["error"]

    loop.sim.delivery_failure_rate = 0.0
    loop.sim.callbacks_before_reply = False
    replayed = cli(loop, "dead", "replay", job)
    assert replayed.returncode == 0, replayed.stderr
    new_job = replayed.stdout.split(" as ")[1].split()[0]
    assert "zaapId" in result_of(loop, new_job)
    assert len(requests_of(loop, body["orderRequestId"])) == 2  # sent again, not "delivered"
    assert dead_letter(loop, job) is None
    assert eventually(lambda: status_json(loop, new_job)["delivery"]["state"] == "read")


def test_no_secret_or_full_phone_in_the_webhook_and_worker_logs(loop: WebhookStack) -> None:
    loop.sim.post_order(phone=PHONE)
    loop.sim.drain_callbacks()
    logs = [loop.webhook.log_text(), *(w.log_text() for w in loop.workers)]
    for log in logs:
        assert WEBHOOK_SECRET not in log
        assert PHONE not in log
