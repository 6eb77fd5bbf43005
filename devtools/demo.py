"""``make demo``: the whole pipeline on one machine, with nothing but Python and pip.

Starts a local Redis, the fake Z-API, one worker, the webhook receiver and Flower (the same
commands production runs), enqueues sample order updates the way a producer does (by task name,
with a plain Celery client), prints each job's outcome; then plays the whole loop: Z-API's order
webhook in, a two-field update enqueued, sent as the full body, the read receipt back; and an
order's whole life by the shop's own number (send-order with its order_key, shipped and paid by
that key). Then it stops everything. In a terminal it keeps the
stack up for Flower until Ctrl-C; ``--exit`` (or no terminal) stops right after the results.
Each process's log stays afterwards in ``.demo/logs/<time>/`` (gitignored), or ``--logs DIR``.

The demo only ever talks to the fake Z-API on loopback: Z-API credentials found in the
environment are ignored, so sample data cannot reach a real WhatsApp number.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from celery import Celery

from devtools.ports import free_port
from devtools.processes import FlowerProcess, WebhookProcess, WorkerProcess, stack_env
from devtools.redis_server import RedisServer, find_redis_server
from devtools.samples import DOCS_SEND_ORDER_MINIMAL_BODY, DOCS_STATUS_BODY
from devtools.zapi_sim import Fault, ZapiSimulator
from tasks.contract.redaction import mask_phone
from tasks.state.deliveries import DeliveryBook


def _demo_body(number: int, **fields: Any) -> dict[str, Any]:
    """The status example of Z-API's docs as demo message ``number``, with ``fields``."""
    return copy.deepcopy(DOCS_STATUS_BODY) | {"messageId": f"DEMO{number:019d}", **fields}


def sample_jobs() -> list[tuple[str, str, dict[str, Any]]]:
    """(label, task name, body): one order's life, enqueued back to back: shipped, paid,
    completed (Z-API answers 503 first, so the retry goes through the order's line), an update
    arriving too late (it would move the order back), and a bad one."""
    shipped = _demo_body(1, orderStatus="shipped", message="Your order is on its way!")
    paid = _demo_body(2, orderStatus="shipped", paymentStatus="paid")
    flaky = _demo_body(3, orderStatus="completed", paymentStatus="paid")
    late = _demo_body(5, orderStatus="processing")
    invalid = _demo_body(4, phone="(11) 9999-XXXX", orderStatus="delivered")
    invalid["order"]["products"][0]["quantity"] = 0
    return [
        ("status: shipped", "zapi.order_status_update", shipped),
        ("payment: paid", "zapi.order_payment_update", paid),
        ("status: completed (Z-API 503 first)", "zapi.order_status_update", flaky),
        ("status: processing (arrives late)", "zapi.order_status_update", late),
        ("status: invalid body", "zapi.order_status_update", invalid),
    ]


def the_loop(simulator: ZapiSimulator, producer: Celery, redis_server: RedisServer) -> None:
    """Z-API's order webhook in, two fields enqueued, the full body sent, the receipt back."""
    print("The loop: the shop sends two fields, zapi-queue does the rest")
    message = simulator.post_order(phone="5511987654321")
    order = message["reviewAndPay"]
    print(
        f"  1. Z-API's webhook: an order message (ReceivedCallback, reviewAndPay), order "
        f"{order['orderRequestId']}, message {message['messageId']}: stored in the order book"
    )
    short = {"messageId": message["messageId"], "orderStatus": "shipped"}
    result = producer.send_task("zapi.order_status_update", args=[short])
    print(f"  2. the shop enqueues {json.dumps(short)}")
    reply = result.get(timeout=60, propagate=False)
    print(f"  3. job {result.id}: {outcome(result.state, reply)}")
    sent = [r.json for r in simulator.requests() if r.message_id == message["messageId"]][-1]
    sent["phone"] = mask_phone(sent["phone"])
    print(f"     Z-API received the full documented body: {json.dumps(sent)}")
    if result.state != "SUCCESS":
        return
    state = delivery_state(simulator, redis_server, reply["messageId"])
    print(
        f"  4. Z-API's callbacks (DeliveryCallback, then MessageStatusCallback SENT, RECEIVED, "
        f"READ): delivery {state}; `zapi-queue status {result.id} --json` shows it"
    )


def delivery_state(simulator: ZapiSimulator, redis_server: RedisServer, message_id: str) -> str:
    """The message's delivery state once Z-API's callbacks say it was read (or 10 s passed)."""
    client = redis_server.client()
    book = DeliveryBook(client, instance_id=simulator.instance_id, ttl=60)
    deadline = time.monotonic() + 10
    delivery = book.get(message_id)
    while (delivery is None or delivery.state != "read") and time.monotonic() < deadline:
        time.sleep(0.1)
        delivery = book.get(message_id)
    client.close()
    return delivery.state if delivery is not None else "unknown"


def by_the_shops_number(
    simulator: ZapiSimulator, producer: Celery, redis_server: RedisServer
) -> None:
    """An order's whole life from the shop's own number: the order message, then shipped and
    paid by that number, never touching a Z-API id."""
    print("The shop's own number: an order's whole life, no Z-API id in the shop's hands")
    # What `zapi-queue webhooks configure` sets on Z-API: its order webhook for messages the
    # number itself sends.
    simulator.instance_settings.update(simulator.instance_id, notifySentByMe=True)
    key = "shop-1042"
    order = copy.deepcopy(DOCS_SEND_ORDER_MINIMAL_BODY) | {"phone": "5511987650000"}
    sent = producer.send_task("zapi.send_order", args=[order], kwargs={"order_key": key})
    shipped = {"orderKey": key, "orderStatus": "shipped"}
    paid = {"orderKey": key, "paymentStatus": "paid"}
    updates = [
        producer.send_task("zapi.order_status_update", args=[shipped]),
        producer.send_task("zapi.order_payment_update", args=[paid]),
    ]
    step = itertools.count(1)  # steps that did not happen are not numbered
    print(
        f"  {next(step)}. zapi.send_order, order_key {key!r}, then at once "
        f"{json.dumps(shipped)} and {json.dumps(paid)}"
    )
    reply = sent.get(timeout=60, propagate=False)
    print(f"  {next(step)}. the order message: {outcome(sent.state, reply)}")
    finals = [(update, update.get(timeout=60, propagate=False)) for update in updates]
    if sent.state != "SUCCESS":
        return
    found = [
        c.payload["reviewAndPay"]
        for c in simulator.callbacks()
        if c.payload.get("messageId") == reply["messageId"] and "reviewAndPay" in c.payload
    ]
    if found:
        print(
            f"  {next(step)}. Z-API's order webhook (fromMe ReceivedCallback): order "
            f"{found[0]['orderRequestId']}, custom item {found[0]['products'][0]['productId']}"
        )
    for label, (update, final) in zip(("shipped", "paid"), finals, strict=True):
        print(
            f"  {next(step)}. {label} by orderKey: job {update.id}: {outcome(update.state, final)}"
        )
    bodies = [
        r.json
        for r in simulator.requests()
        if r.message_id == reply["messageId"] and r.path.endswith("-update")
    ]
    if bodies:
        last = dict(bodies[-1], phone=mask_phone(str(bodies[-1]["phone"])))
        print(f"     the last full body Z-API received: {json.dumps(last)}")
    if finals and finals[-1][0].state == "SUCCESS":
        state = delivery_state(simulator, redis_server, finals[-1][1]["messageId"])
        story = f"`zapi-queue order show {key}` tells the order's story"
        print(f"  {next(step)}. delivery {state}; {story}")


def outcome(state: str, result: Any) -> str:
    if state == "SUCCESS":
        return f"SUCCESS  zaapId={result['zaapId']} messageId={result['messageId']}"
    return f"{state}  {type(result).__name__}: {result}"


def run(keep_running: bool, log_dir: Path) -> int:
    ignored = sorted(n for n in os.environ if n.startswith("ZAPI_"))
    if ignored:
        print(f"note: ignoring {', '.join(ignored)}: the demo only talks to the local fake Z-API")
    with contextlib.ExitStack() as stack:
        redis_server = stack.enter_context(RedisServer())
        simulator = stack.enter_context(ZapiSimulator(latency=0.2))
        env = stack_env(
            redis_server.url,
            simulator,
            zapi_retry_backoff="0.5",
            zapi_webhook_secret=secrets.token_urlsafe(24),
        )
        worker = stack.enter_context(WorkerProcess(env, log_dir / "worker.log"))
        webhook_log = log_dir / "webhook.log"
        webhook = stack.enter_context(WebhookProcess(env, webhook_log, port=free_port()))
        simulator.webhook_url = webhook.callback_url()
        flower = stack.enter_context(FlowerProcess(env, log_dir / "flower.log", port=free_port()))
        print(f"Redis      {redis_server.url}  ({find_redis_server()})")
        print(f"fake Z-API {simulator.base_url}  (200 ms latency)")
        print(f"worker     celery -A worker worker  (node {worker.nodename})")
        print(f"webhook    zapi-queue webhook  ({webhook.url}/webhooks/zapi/<secret>)")
        print(f"Flower     {flower.url}")
        print(f"logs       {log_dir}  (kept after the demo)")
        print()

        producer = Celery(
            "demo-producer",
            broker=env["CELERY_BROKER_URL"],
            backend=env["CELERY_RESULT_BACKEND"],
        )
        stack.callback(producer.close)
        jobs = sample_jobs()
        simulator.script(jobs[2][2]["messageId"], Fault(status=503))
        results = [(label, producer.send_task(task, args=[body])) for label, task, body in jobs]
        width = max(len(label) for label, _ in results)
        for label, result in results:
            result.get(timeout=60, propagate=False)
            print(f"{label:<{width}}  job {result.id}  {outcome(result.state, result.result)}")
        print()
        print(
            f"The fake Z-API received {len(simulator.requests())} requests: the order's three "
            "updates, in order, plus the retry after the scripted 503 (the later updates waited "
            "for it); the late one would have moved the order back, and the invalid one was "
            "never sent."
        )
        print()
        the_loop(simulator, producer, redis_server)
        print()
        by_the_shops_number(simulator, producer, redis_server)
        if keep_running:
            print(f"Flower is at {flower.url} - press Ctrl-C to stop everything.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while worker.running and flower.running:
                    time.sleep(0.5)
        print("stopping worker, webhook, Flower, fake Z-API and Redis")
    print(f"their logs are kept in {log_dir}")
    return 0


def default_log_dir() -> Path:
    """A new folder under the checkout's ``.demo/logs`` (gitignored), named by the time."""
    root = Path(__file__).resolve().parents[1] / ".demo" / "logs"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", *(f"-{n}" for n in range(2, 100))):
        folder = root / f"{stamp}{suffix}"
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"no free log folder under {root}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--exit", action="store_true", help="stop right after the results")
    parser.add_argument(
        "--keep-running", action="store_true", help="wait for Ctrl-C even without a terminal"
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="where to write process logs (.demo/logs/<time>)"
    )
    args = parser.parse_args(argv)
    keep_running = args.keep_running or (not args.exit and sys.stdin.isatty())
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
    return run(keep_running, args.logs or default_log_dir())


if __name__ == "__main__":
    sys.exit(main())
