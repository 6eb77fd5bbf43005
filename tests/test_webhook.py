"""The webhook receiver over real HTTP (``zapi-queue webhook``, uvicorn) and a real Redis: what
it answers, what it stores, what it never prints."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from devtools.ports import free_port
from devtools.processes import WebhookProcess
from devtools.redis_server import RedisServer
from devtools.zapi_callbacks import delivery_callback, order_message, status_callback
from tasks.contract.redaction import mask_phone
from tasks.state.deadletter import DeadLetter
from tasks.state.deliveries import DeliveryBook
from tasks.state.webhook_stats import COUNTS_KEY, WebhookStats
from tests.cli import run_cli
from tests.conftest import REDIS_PASSWORD
from tests.letters import delivery_letter

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "whsec-SECRET-0d6c41b2a97e"
INSTANCE = "hook-instance"
PHONE = "5544999998765"


@pytest.fixture(scope="module")
def state() -> Iterator[RedisServer]:
    with RedisServer(password=REDIS_PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def webhook(
    state: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookProcess]:
    env = webhook_env(state)
    log = tmp_path_factory.mktemp("webhook") / "webhook.log"
    with WebhookProcess(env, log, port=free_port()) as process:
        yield process


def webhook_env(state: RedisServer) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "CELERY_BROKER_URL": f"{state.url}/0",
        "CELERY_RESULT_BACKEND": f"{state.url}/1",
        "ZAPI_INSTANCE_ID": INSTANCE,
        "ZAPI_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ZAPI_WEBHOOK_BODY_TIMEOUT": "1",
        "ZAPI_WEBHOOK_KEEP_ALIVE": "1",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def client(state: RedisServer) -> Iterator[redis.Redis]:
    connection = state.client(db=0)
    yield connection
    connection.close()


def post(webhook: WebhookProcess, payload: Any, **options: Any) -> httpx.Response:
    return httpx.post(webhook.callback_url(), json=payload, timeout=10, **options)


@pytest.fixture
def book(client: redis.Redis) -> DeliveryBook:
    """The delivery records of the receiver's instance, in its state Redis."""
    return DeliveryBook(client, instance_id=INSTANCE, ttl=3600)


def letter(job: str) -> DeadLetter:
    return delivery_letter(job, {"orderRequestId": "O-1", "orderStatus": "shipped"})


def cli(state: RedisServer, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(webhook_env(state), *args)


def test_a_wrong_secret_is_404_and_stores_nothing(
    webhook: WebhookProcess, client: redis.Redis
) -> None:
    before = client.dbsize()
    payload = order_message(INSTANCE)
    answer = httpx.post(f"{webhook.url}/webhooks/zapi/not-the-secret", json=payload, timeout=10)
    assert answer.status_code == 404
    answer = httpx.post(f"{webhook.url}/webhooks/zapi/{WEBHOOK_SECRET}x", json=payload, timeout=10)
    assert answer.status_code == 404
    assert client.dbsize() == before
    assert "not-the-secret" not in answer.text


@pytest.mark.parametrize(
    ("content", "status", "says"),
    [
        (b"{not json", 400, "not JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'"text"', 400, "JSON object"),
    ],
)
def test_bad_bodies_are_400(
    webhook: WebhookProcess, content: bytes, status: int, says: str
) -> None:
    answer = httpx.post(
        webhook.callback_url(),
        content=content,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == status
    assert says in answer.json()["error"]


def test_a_body_over_one_mebibyte_is_413_with_or_without_its_length(
    webhook: WebhookProcess, client: redis.Redis
) -> None:
    big = json.dumps({"type": "ReceivedCallback", "pad": "x" * (1024 * 1024)}).encode()
    answer = httpx.post(webhook.callback_url(), content=big, timeout=10)
    assert answer.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the stream is counted as it comes
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    answer = httpx.post(webhook.callback_url(), content=chunks(), timeout=10)
    assert answer.status_code == 413


def test_a_type_we_do_not_use_is_200_counted_and_ignored(
    webhook: WebhookProcess, client: redis.Redis
) -> None:
    stats = WebhookStats(client)
    before = stats.counts().get("ignored:PresenceChatCallback", 0)
    keys_before = set(client.keys())
    answer = post(webhook, {"type": "PresenceChatCallback", "phone": PHONE, "status": "AVAILABLE"})
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "ignored"
    assert stats.counts()["ignored:PresenceChatCallback"] == before + 1
    assert set(client.keys()) - {COUNTS_KEY.encode()} == keys_before - {COUNTS_KEY.encode()}

    chat = {
        "type": "ReceivedCallback",
        "phone": PHONE,
        "messageId": "M1",
        "text": {"message": "hi"},
    }
    answer = post(webhook, chat)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "ignored")


def test_an_order_message_with_wrong_fields_is_400_naming_them(webhook: WebhookProcess) -> None:
    payload = order_message(INSTANCE)
    del payload["reviewAndPay"]["orderRequestId"]
    payload["reviewAndPay"]["products"][0]["quantity"] = 0
    answer = post(webhook, payload)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "reviewAndPay.orderRequestId: Field required" in error
    assert "reviewAndPay.products[0].quantity" in error


@pytest.mark.parametrize(
    ("shape", "moment_field"), [("reviewAndPay", "momment"), ("reviewOrder", "moment")]
)
def test_an_order_message_is_stored_and_shown_by_either_id(
    webhook: WebhookProcess, state: RedisServer, shape: str, moment_field: str
) -> None:
    payload = order_message(INSTANCE, phone=PHONE, shape=shape, moment_field=moment_field)
    answer = post(webhook, payload)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "stored")
    order = payload[shape]

    for name in (order["orderRequestId"], payload["messageId"]):
        shown = cli(state, "order", "show", name, "--json")
        assert shown.returncode == 0, shown.stderr
        record = json.loads(shown.stdout)
        assert record["orderRequestId"] == order["orderRequestId"]
        assert record["referenceId"] == order["referenceId"]
        assert record["messageId"] == payload["messageId"]
        assert record["order"]["products"] == order["products"]
        assert record["order"]["currency"] == "BRL"
        assert (record["orderStatus"], record["paymentStatus"]) == ("pending", "pending")
        assert record["at"] == payload[moment_field] / 1000
        assert PHONE not in shown.stdout
        assert record["phone"] == mask_phone(PHONE)

    text = cli(state, "order", "show", order["orderRequestId"])
    assert text.returncode == 0
    assert PHONE not in text.stdout
    assert f"orderRequestId: {order['orderRequestId']}" in text.stdout
    missing = cli(state, "order", "show", "NO-SUCH-ORDER")
    assert missing.returncode == 1
    assert "no order NO-SUCH-ORDER" in missing.stderr


def test_delivery_states_move_forward_only_and_duplicates_change_nothing(
    webhook: WebhookProcess, client: redis.Redis, book: DeliveryBook
) -> None:
    message = "MSG-FORWARD-1"
    book.link(message, zaap_id="ZAAP", letter=letter("job-forward"), reply_key="")
    for status in ("SENT", "READ"):
        assert post(webhook, status_callback(INSTANCE, message, PHONE, status)).status_code == 200
    read = book.get(message)
    assert read is not None
    assert read.state == "read"

    # Late and repeated callbacks: nothing moves back, nothing changes.
    for payload in (
        status_callback(INSTANCE, message, PHONE, "RECEIVED"),
        status_callback(INSTANCE, message, PHONE, "READ"),
        delivery_callback(INSTANCE, message, "ZAAP", PHONE),
        delivery_callback(INSTANCE, message, "ZAAP", PHONE, failure=1),  # after READ: ignored
    ):
        assert post(webhook, payload).status_code == 200
    assert book.get(message) == read
    assert client.ttl(book.key(message)) > 0


def test_a_failure_is_final_and_kept_for_the_job_that_comes_later(
    webhook: WebhookProcess, client: redis.Redis, book: DeliveryBook
) -> None:
    message = "MSG-FAILS-1"
    payload = delivery_callback(INSTANCE, message, "ZAAP", PHONE, failure=3)
    answer = post(webhook, payload)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "unmatched")
    assert post(webhook, payload).status_code == 200  # the same callback twice
    assert post(webhook, status_callback(INSTANCE, message, PHONE, "SENT")).status_code == 200
    assert not client.exists(book.key(message))  # no job linked yet: no key of its own
    burial = book.link(message, zaap_id="ZAAP", letter=letter("job-fails"), reply_key="")
    assert burial is not None  # the job that comes later is buried when it links
    assert burial.letter.job_id == "job-fails"
    failed = book.get(message)
    assert failed is not None
    assert (failed.state, failed.error_code) == ("failed", "SHADOW_BAN")
    assert failed.error == "Account is shadow banned"


def test_connection_events_are_shown_by_health(webhook: WebhookProcess, state: RedisServer) -> None:
    now_ms = int(time.time() * 1000)
    disconnected = {
        "type": "DisconnectedCallback",
        "instanceId": INSTANCE,
        "momment": now_ms - 60_000,
        "error": "Device has been disconnected",
        "disconnected": True,
    }
    assert post(webhook, disconnected).status_code == 200
    report = json.loads(cli(state, "health", "--json", "--timeout", "0.5").stdout)
    assert report["instance_connection"] == {
        "connected": False,
        "error": "Device has been disconnected",
        "at": (now_ms - 60_000) / 1000,
    }
    older = {"type": "ConnectedCallback", "instanceId": INSTANCE, "momment": now_ms - 120_000}
    assert post(webhook, older).status_code == 200  # out of order: changes nothing
    report = json.loads(cli(state, "health", "--json", "--timeout", "0.5").stdout)
    assert report["instance_connection"]["connected"] is False
    newer = {"type": "ConnectedCallback", "instanceId": INSTANCE, "momment": now_ms - 30_000}
    assert post(webhook, newer).status_code == 200
    report = json.loads(cli(state, "health", "--json", "--timeout", "0.5").stdout)
    assert report["instance_connection"]["connected"] is True
    assert report["webhook_callbacks"]["stored:ConnectedCallback"] >= 2


def test_healthz(webhook: WebhookProcess) -> None:
    answer = httpx.get(f"{webhook.url}/healthz", timeout=5)
    assert (answer.status_code, answer.json()) == (200, {"ok": True})


def test_the_receiver_refuses_to_start_without_its_secret(state: RedisServer) -> None:
    env = webhook_env(state)
    del env["ZAPI_WEBHOOK_SECRET"]
    done = run_cli(env, "webhook", "--port", str(free_port()))
    assert done.returncode == 2
    assert "ZAPI_WEBHOOK_SECRET is required" in done.stderr


def test_no_secret_and_no_full_phone_in_the_log_or_answers(webhook: WebhookProcess) -> None:
    answers = [
        post(webhook, order_message(INSTANCE, phone=PHONE)).text,
        post(webhook, delivery_callback(INSTANCE, "MSG-LOG", "Z", PHONE, failure=2)).text,
        post(webhook, {"type": "ReceivedCallback", "phone": PHONE}).text,
    ]
    log = webhook.log_text()
    assert "webhook ReceivedCallback stored 200" in log  # it does log each callback
    for text in (log, *answers):
        assert WEBHOOK_SECRET not in text
        assert REDIS_PASSWORD not in text
        assert PHONE not in text


def test_600_callbacks_for_foreign_messages_leave_no_per_message_keys(
    webhook: WebhookProcess, client: redis.Redis
) -> None:
    """With update-every-webhooks Z-API posts every message of the number: those no job of ours
    sent get no key each, are not counted as delivery states, and their early entries are
    capped and expire."""
    before = {key for key in client.keys("zapi-queue:delivery:*")}
    counts_before = client.hgetall(f"zapi-queue:delivery-counts:{INSTANCE}")
    with httpx.Client(timeout=10) as http:
        for n in range(300):
            failure = delivery_callback(INSTANCE, f"FOREIGN-{n}", "Z", PHONE, failure=n)
            status = status_callback(INSTANCE, f"FOREIGN-S-{n}", PHONE, "READ")
            for payload in (failure, status):
                answer = http.post(webhook.callback_url(), json=payload)
                assert (answer.status_code, answer.json()["outcome"]) == (200, "unmatched")
    assert {key for key in client.keys("zapi-queue:delivery:*")} == before
    assert client.hgetall(f"zapi-queue:delivery-counts:{INSTANCE}") == counts_before
    for key in client.keys("zapi-queue:delivery-early*"):
        assert 0 < client.ttl(key) <= 300
    assert WebhookStats(client).counts()["unmatched:DeliveryCallback"] >= 300


def test_a_far_future_disconnection_then_a_real_connection_leaves_it_connected(
    webhook: WebhookProcess, state: RedisServer
) -> None:
    for moment in (10**300, "Infinity", 4_102_444_800_000):  # 1e300, a text, the year 2100
        far = {"type": "DisconnectedCallback", "instanceId": INSTANCE, "momment": moment}
        assert post(webhook, far).status_code == 200
        real = {
            "type": "ConnectedCallback",
            "instanceId": INSTANCE,
            "momment": int(time.time() * 1000) + 5,
        }
        time.sleep(0.01)
        assert post(webhook, real).status_code == 200
        report = json.loads(cli(state, "health", "--json", "--timeout", "0.5").stdout)
        assert report["instance_connection"]["connected"] is True, moment
        assert report["instance_connection"]["at"] <= time.time()


def test_a_later_order_callback_never_replaces_the_phone_or_order_message(
    webhook: WebhookProcess, state: RedisServer, client: redis.Redis
) -> None:
    first = order_message(INSTANCE, phone=PHONE)
    assert post(webhook, first).json()["outcome"] == "stored"
    order = first["reviewAndPay"]["orderRequestId"]
    for from_me in (True, False):
        later = order_message(
            INSTANCE, phone="5511911112222", order_request_id=order, message_id=f"LATER-{from_me}"
        )
        later["fromMe"] = from_me
        answer = post(webhook, later)
        assert (answer.status_code, answer.json()["outcome"]) == (200, "kept")
        assert not client.exists(f"zapi-queue:order-message:{INSTANCE}:LATER-{from_me}")
    shown = json.loads(cli(state, "order", "show", order, "--json").stdout)
    assert shown["messageId"] == first["messageId"]
    assert shown["phone"] == mask_phone(PHONE)


def test_callbacks_of_an_instance_not_in_the_fleet_are_counted_and_ignored(
    webhook: WebhookProcess, client: redis.Redis
) -> None:
    keys_before = set(client.keys()) - {COUNTS_KEY.encode()}
    for payload in (
        order_message("not-our-instance", phone=PHONE),
        delivery_callback("not-our-instance", "M-X", "Z", PHONE, failure=1),
        {"type": "DisconnectedCallback", "instanceId": "not-our-instance"},
    ):
        answer = post(webhook, payload)
        assert (answer.status_code, answer.json()["outcome"]) == (200, "foreign")
    assert set(client.keys()) - {COUNTS_KEY.encode()} == keys_before
    assert WebhookStats(client).counts()["foreign:DeliveryCallback"] >= 1


def test_failure_reports_are_taken_whatever_the_shape_of_fields_we_do_not_need(
    webhook: WebhookProcess, book: DeliveryBook
) -> None:
    message = "MSG-ODD-SHAPES"
    book.link(message, zaap_id="Z", letter=letter("job-odd"), reply_key="")
    payload = delivery_callback(INSTANCE, message, "Z", PHONE, failure=1)
    payload.update(errorCode=500, zaapId={"odd": True}, phone=["x"], momment="soon")
    answer = post(webhook, payload)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "stored")
    failed = book.get(message)
    assert failed is not None
    assert (failed.state, failed.error_code) == ("failed", "500")
    odd: list[dict[str, Any]] = [
        {
            "type": "MessageStatusCallback",
            "instanceId": INSTANCE,
            "status": "DELETED",
            "ids": ["a"],
        },
        {"type": "ReceivedCallback", "instanceId": INSTANCE, "messageId": "M", "text": {}},
        {"type": "DeliveryCallback", "instanceId": INSTANCE},
    ]
    for each in odd:
        assert post(webhook, each).status_code == 200
    assert "skipped momment, zaapId" in webhook.log_text()


def test_a_slow_body_is_408_and_an_idle_connection_is_closed(webhook: WebhookProcess) -> None:
    """ZAPI_WEBHOOK_BODY_TIMEOUT and ZAPI_WEBHOOK_KEEP_ALIVE (1 s here) reach the app, uvicorn."""
    import socket

    host, port = webhook.url.removeprefix("http://").split(":")
    path = f"/webhooks/zapi/{WEBHOOK_SECRET}"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{"
        sock.sendall(head.encode())  # one byte of a hundred, then nothing
        started = time.monotonic()
        answer = sock.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408"), answer
        assert 0.8 < time.monotonic() - started < 5
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b'{"ok":true}' not in received:  # the answer may come in more than one segment
            received += sock.recv(4096)
        assert received.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(4096) == b""  # closed by the server once idle
        assert time.monotonic() - started < 5
