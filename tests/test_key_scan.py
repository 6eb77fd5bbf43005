"""Every key a realistic workload leaves in Redis is registered, and bounded: a TTL, or a cap the
registry names (tasks/state/keys.py), checked against its size where the cap is a number.

A private stack: its own Redis (broker in db 0, results in db 1, the state in db 2, so each key is
also checked to be in the Redis the registry says), the fake Z-API posting its callbacks to
``zapi-queue webhook`` (worker/webhook.py's app), and one worker. The workload: full status and
payment updates, an order's updates in sequence, an order webhook then short forms naming it
either way, an order message by the shop's key and an update by that key, an idempotency
repeat, a 429, a refused update and a failed delivery (two dead letters), recipient pacing, and
``forget``; then a SCAN of every key of every database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from devtools.zapi_sim import Fault
from tasks.contract.endpoints import Endpoint
from tasks.contract.producer import Producer
from tasks.state.keys import Key, registered
from tasks.state.store import text
from tests.bodies import DOCS_SEND_ORDER_MINIMAL_BODY, unique_body
from tests.cli import run_cli
from tests.faults import WebhookStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

WEBHOOK_SECRET = "whsec-SECRET-3b51a7c0e9d2"
PHONE = "5511977776666"
FORGOTTEN = "5511966665555"
#: The databases the stack uses, and which of the registry's Redis each one is.
ROLES = {0: "broker", 1: "results", 2: "state"}
SIZES = {"hash": "hlen", "zset": "zcard", "set": "scard", "list": "llen"}
#: Key families the workload must leave in the state Redis.
EXPECTED = (
    ":dead:letter:",
    ":dead:type:",
    ":idem:",
    ":order:",
    ":order-message:",
    ":order-key:",
    ":delivery:",
    ":delivery-counts:",
    ":repeat:",
    ":webhook:counts",
    ":instance:",
    ":marker",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookStack]:
    settings = {"zapi_order_wait": "2", "zapi_recipient_interval": "0.05"}
    logs = tmp_path_factory.mktemp("scan")
    with WebhookStack(logs, webhook_secret=WEBHOOK_SECRET, state_db=2, **settings) as running:
        running.worker(zapi_status_poll_interval="1")
        yield running


def send_order_body(phone: str) -> dict[str, object]:
    return {**DOCS_SEND_ORDER_MINIMAL_BODY, "phone": phone}


def workload(stack: WebhookStack, producer: Producer) -> list[str]:
    """Enqueue the workload; returns the job ids (all of them end)."""
    status, payment = Endpoint.ORDER_STATUS_UPDATE, Endpoint.ORDER_PAYMENT_UPDATE
    jobs = [
        producer.enqueue(status, unique_body(phone=PHONE)),
        producer.enqueue(payment, unique_body(phone=PHONE)),
    ]
    order = f"SEQ{time.time_ns()}"
    for n, state in enumerate(["processing", "shipped", "completed"], start=1):
        body = unique_body(phone=PHONE, orderStatus=state)
        body["orderRequestId"] = order
        jobs.append(producer.enqueue(status, body, sequence=n))
    repeated = unique_body(phone=PHONE)
    jobs.append(producer.enqueue(status, repeated, idempotency_key="scan-repeat"))
    refused, throttled = unique_body(phone=PHONE), unique_body(phone=PHONE)
    stack.sim.script(str(refused["messageId"]), Fault(status=400))
    stack.sim.script(str(throttled["messageId"]), Fault(status=429, headers={"Retry-After": "1"}))
    jobs += [producer.enqueue(status, refused), producer.enqueue(status, throttled)]
    for phone in (PHONE, FORGOTTEN):
        webhook_order = stack.sim.post_order(phone=phone)
        short = {"orderRequestId": webhook_order["reviewAndPay"]["orderRequestId"]}
        jobs.append(producer.enqueue(status, {**short, "orderStatus": "shipped"}))
        by_message = {"messageId": webhook_order["messageId"], "paymentStatus": "paid"}
        jobs.append(producer.enqueue(payment, by_message))
    # An order message by the shop's key, and an update by that key (its keyed line and link).
    stack.sim.instance_settings.update(stack.sim.instance_id, notifySentByMe=True)
    jobs.append(producer.enqueue_send_order(send_order_body(PHONE), order_key="scan-1042"))
    jobs.append(producer.enqueue(status, {"orderKey": "scan-1042", "orderStatus": "shipped"}))
    stack.wait_all(jobs, timeout=120)
    # The repeat, once the first has delivered: answered from the record, not sent.
    jobs.append(producer.enqueue(status, repeated, idempotency_key="scan-repeat"))
    # A delivery Z-API reports failed, through the webhook: a DeliveryFailedError letter.
    stack.sim.delivery_failure_rate = 1.0
    jobs.append(producer.enqueue(status, unique_body(phone=PHONE)))
    stack.wait_all(jobs, timeout=120)
    stack.sim.drain_callbacks()
    stack.sim.delivery_failure_rate = 0.0
    return jobs


def unbounded(client: redis.Redis, db: int) -> tuple[list[str], list[str]]:
    """Each key of ``db`` that is not registered, or has neither a TTL nor a registered cap (or
    is larger than its numeric cap); and apart, each key outside the Redis the registry says."""
    problems, misplaced = [], []
    for raw in client.scan_iter(count=1000):
        name = raw.decode(errors="replace")
        entry: Key | None = registered(name)
        if entry is None:
            problems.append(f"db {db}: {name!r} is not registered")
            continue
        if entry.redis not in (ROLES[db], "every"):
            misplaced.append(f"db {db}: {name!r} belongs in the {entry.redis} Redis")
        ttl = int(client.ttl(raw))
        if ttl == -1 and entry.cap is None:
            problems.append(f"db {db}: {name!r} has no TTL and no cap")
        kind = text(client.type(raw))
        if entry.cap is not None and entry.cap.most is not None and kind in SIZES:
            size = int(getattr(client, SIZES[kind])(raw))
            if size > entry.cap.most:
                problems.append(f"db {db}: {name!r} holds {size} > {entry.cap.most}")
    return problems, misplaced


def scan(stack: WebhookStack) -> tuple[list[str], list[str], dict[int, int]]:
    """``unbounded`` over every database the stack uses, and how many keys each holds."""
    problems: list[str] = []
    misplaced: list[str] = []
    seen: dict[int, int] = {}
    for db in ROLES:
        client = stack.redis.client(db=db)
        try:
            seen[db] = int(client.dbsize())
            found, wrong = unbounded(client, db)
        finally:
            client.close()
        problems += found
        misplaced += wrong
    return problems, misplaced, seen


def test_every_key_of_a_workload_is_registered_with_a_ttl_or_a_cap(stack: WebhookStack) -> None:
    producer = Producer(
        broker_url=stack.env["CELERY_BROKER_URL"],
        result_backend=stack.env["CELERY_RESULT_BACKEND"],
        instance_id=stack.sim.instance_id,
        state_redis_url=stack.env["ZAPI_STATE_REDIS_URL"],
    )
    try:
        jobs = workload(stack, producer)
    finally:
        producer.close()
    states = stack.wait_all(jobs, timeout=5)
    assert sorted(set(states.values())) == ["FAILURE", "SUCCESS"], states
    forgotten = run_cli(stack.env, "forget", "--phone", FORGOTTEN, "--json")
    assert forgotten.returncode == 0, forgotten.stderr
    time.sleep(1.5)  # a status poll and a lease renewal: their keys too

    problems, misplaced, seen = scan(stack)
    assert not problems, "\n".join(problems)
    assert not misplaced, "\n".join(misplaced)
    assert all(seen.values()), seen  # every database was used
    state = stack.redis.client(db=2)
    try:
        families = {str(getattr(registered(k.decode()), "pattern", "")) for k in state.scan_iter()}
    finally:
        state.close()
    # The workload reached the families the test is about (a silent workload proves nothing;
    # the rate keys' TTLs are too short to outlive it).
    for expected in EXPECTED:
        assert any(expected in pattern for pattern in families), (expected, sorted(families))
    throttled = [r for r in stack.sim.requests() if r.status == 429]
    assert throttled, "the workload's 429 did not happen"


def test_every_key_is_in_the_redis_the_registry_names(stack: WebhookStack) -> None:
    """Runs after the workload above (same stack): no key outside its Redis (the claim's
    script once put order lines in the broker when the state Redis was another server)."""
    _, misplaced, _ = scan(stack)
    assert not misplaced, "\n".join(misplaced)
