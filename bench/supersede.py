"""Messages saved by latest-state-wins: the same orders through the same outages, with the
``supersede`` kwarg on and off, in rounds that alternate which goes first.

Each round makes ``--orders`` orders (200) whose updates a shop enqueues over ``--seconds``
(20): every order goes pending -> processing -> shipped -> completed (a random tail of it,
one to four updates, a few 0.1-2 s apart) and, for half of them, payment pending -> paid, while
the fake Z-API (in this process) answers 503 to everything during random outages covering
about ``--outage-share`` of the time (windows of 1-4 s). One worker with the shipped defaults
sends them; the phone (the fake's ``fired``) is what is counted: messages per order, and whether
each order ended where the other setting left it. The same seed drives both settings in a
round, so each sees the same orders and the same outage windows.

    python -m bench.supersede [--rounds 3]      # or: make bench-supersede
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from devtools.processes import WorkerProcess, stack_env
from devtools.redis_server import RedisServer
from devtools.samples import DOCS_PAYMENT_BODY, DOCS_STATUS_BODY
from devtools.zapi_sim import Fault, ZapiSimulator

LIFE = ("pending", "processing", "shipped", "completed")


@dataclass(frozen=True)
class Update:
    at: float
    task: str
    body: dict[str, Any]


@dataclass
class Run:
    setting: str
    messages: int
    orders: int
    ends: dict[str, tuple[str | None, str | None]]
    superseded: int
    seconds: float

    @property
    def per_order(self) -> float:
        return self.messages / self.orders


def plan(
    seed: int, orders: int, seconds: float, outage_share: float
) -> tuple[list[Update], list[tuple[float, float]]]:
    """The round's updates (by time) and outage windows, the same for both settings."""
    rng = random.Random(seed)
    updates = []
    for n in range(orders):
        ids = {"messageId": f"3EB0{seed:04d}{n:06d}", "orderRequestId": f"4N8{seed:04d}{n:06d}"}
        at = rng.uniform(0, seconds * 0.6)
        paid_at = rng.uniform(0, seconds) if rng.random() < 0.5 else None
        payment, so_far = "pending", "pending"
        for status in LIFE[rng.randrange(len(LIFE)) :]:
            if paid_at is not None and paid_at < at:
                # Both endpoints carry the pair: the payment update says the status so far.
                body = {**DOCS_PAYMENT_BODY, **ids, "orderStatus": so_far, "paymentStatus": "paid"}
                updates.append(Update(paid_at, "zapi.order_payment_update", body))
                paid_at, payment = None, "paid"
            body = {**DOCS_STATUS_BODY, **ids, "orderStatus": status, "paymentStatus": payment}
            updates.append(Update(at, "zapi.order_status_update", body))
            at, so_far = at + rng.uniform(0.1, 2.0), status
    windows = []
    at = rng.uniform(0, 2)
    while at < seconds:
        length = rng.uniform(1, 4)
        windows.append((at, at + length))
        at += length / outage_share
    return sorted(updates, key=lambda u: u.at), windows


def play_outages(sim: ZapiSimulator, windows: list[tuple[float, float]], start: float) -> None:
    for begin, end in windows:
        time.sleep(max(0.0, start + begin - time.monotonic()))
        sim.set_outage(Fault(503))
        time.sleep(max(0.0, start + end - time.monotonic()))
        sim.set_outage(None)


def one_run(
    sim: ZapiSimulator,
    producer: Celery,
    setting: str,
    updates: list[Update],
    windows: list[tuple[float, float]],
) -> Run:
    sim.reset()
    supersede = setting == "on"
    start = time.monotonic()
    outages = threading.Thread(target=play_outages, args=(sim, windows, start), daemon=True)
    outages.start()
    jobs = []
    tag = setting.upper()  # the same orders under ids of their own: Redis keeps each order's line
    for update in updates:
        time.sleep(max(0.0, start + update.at - time.monotonic()))
        body = {
            **update.body,
            "messageId": update.body["messageId"] + tag,
            "orderRequestId": update.body["orderRequestId"] + tag,
        }
        kwargs = {"supersede": supersede}
        jobs.append(producer.send_task(update.task, args=[body], kwargs=kwargs))
    outages.join()
    sim.set_outage(None)
    superseded = 0
    for job in jobs:
        outcome = job.get(timeout=600, propagate=False)
        superseded += type(outcome).__name__ == "SupersededError"
    seconds = time.monotonic() - start
    time.sleep(1)
    ends: dict[str, list[str | None]] = defaultdict(lambda: [None, None])
    fired = sim.fired()
    for message in fired:
        order = str(message.body.get("orderRequestId")).removesuffix(tag)
        field = 0 if message.route == "order-status-update" else 1
        ends[order][field] = message.body["orderStatus" if field == 0 else "paymentStatus"]
    orders = len({u.body["orderRequestId"] for u in updates})
    return Run(
        setting, len(fired), orders, {k: (v[0], v[1]) for k, v in ends.items()}, superseded, seconds
    )


def report(n: int, order: tuple[str, str], updates: int, off: Run, on: Run) -> None:
    same = sum(off.ends.get(o) == on.ends.get(o) for o in off.ends)
    print(
        f"round {n + 1} ({'/'.join(order)} first): {updates} updates, {off.orders} orders; "
        f"off {off.messages} messages ({off.per_order:.2f}/order, {off.seconds:.0f} s), "
        f"on {on.messages} ({on.per_order:.2f}/order, {on.superseded} superseded, "
        f"{on.seconds:.0f} s); orders ending alike: {same}/{len(off.ends)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--outage-share", type=float, default=0.3)
    args = parser.parse_args()
    runs: list[tuple[Run, Run]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as logs,
        RedisServer() as redis_server,
        ZapiSimulator() as sim,
    ):
        env = stack_env(
            redis_server.url,
            sim,
            zapi_rate_limit="1000",
            zapi_rate_burst="100",
            zapi_retry_backoff="0.5",
            zapi_retry_backoff_max="4",
            zapi_max_attempts="100",
            zapi_status_poll_interval="0",
        )
        producer = Celery(broker=env["CELERY_BROKER_URL"], backend=env["CELERY_RESULT_BACKEND"])
        with WorkerProcess(env, Path(logs) / "worker.log"):
            for n in range(args.rounds):
                updates, windows = plan(n, args.orders, args.seconds, args.outage_share)
                order = ("on", "off") if n % 2 == 0 else ("off", "on")
                done = {s: one_run(sim, producer, s, updates, windows) for s in order}
                runs.append((done["off"], done["on"]))
                report(n, order, len(updates), done["off"], done["on"])
        producer.close()
    saved = [1 - on.messages / off.messages for off, on in runs]
    per_order = statistics.mean(off.per_order - on.per_order for off, on in runs)
    print(
        f"messages saved per order: {per_order:.2f} (mean over {len(runs)} rounds), "
        f"{statistics.mean(saved):.0%} of the messages (range {min(saved):.0%} to "
        f"{max(saved):.0%})"
    )


if __name__ == "__main__":
    main()
