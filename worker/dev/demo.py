"""``make demo``: the whole pipeline on one machine, with nothing but Python and pip.

Starts a local Redis, the fake Z-API, one worker and Flower (the same commands production
runs), enqueues sample order updates the way a producer does (by task name, with a plain
Celery client), prints each job's outcome, and stops everything. In a terminal it keeps the
stack up for Flower until Ctrl-C; ``--exit`` (or no terminal) stops right after the results.

The demo only ever talks to the fake Z-API on loopback: Z-API credentials found in the
environment are ignored, so sample data cannot reach a real WhatsApp number.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from celery import Celery

from worker.dev.ports import free_port
from worker.dev.processes import FlowerProcess, WorkerProcess, stack_env
from worker.dev.redis_server import RedisServer, find_redis_server
from worker.dev.samples import DOCS_STATUS_BODY
from worker.dev.zapi_sim import Fault, ZapiSimulator


def sample_jobs() -> list[tuple[str, str, dict[str, Any]]]:
    """(label, task name, body): one order's life, enqueued back to back: shipped, paid,
    completed (Z-API answers 503 first, so the retry goes through the order's line), an update
    arriving too late (it would move the order back), and a bad one."""
    shipped = copy.deepcopy(DOCS_STATUS_BODY) | {
        "messageId": "DEMO0000000000000000001",
        "orderStatus": "shipped",
        "message": "Your order is on its way!",
    }
    paid = copy.deepcopy(DOCS_STATUS_BODY) | {
        "messageId": "DEMO0000000000000000002",
        "orderStatus": "shipped",
        "paymentStatus": "paid",
    }
    flaky = copy.deepcopy(DOCS_STATUS_BODY) | {
        "messageId": "DEMO0000000000000000003",
        "orderStatus": "completed",
        "paymentStatus": "paid",
    }
    late = copy.deepcopy(DOCS_STATUS_BODY) | {
        "messageId": "DEMO0000000000000000005",
        "orderStatus": "processing",
    }
    invalid = copy.deepcopy(DOCS_STATUS_BODY) | {
        "messageId": "DEMO0000000000000000004",
        "phone": "(11) 9999-XXXX",
        "orderStatus": "delivered",
    }
    invalid["order"]["products"][0]["quantity"] = 0
    return [
        ("status: shipped", "zapi.order_status_update", shipped),
        ("payment: paid", "zapi.order_payment_update", paid),
        ("status: completed (Z-API 503 first)", "zapi.order_status_update", flaky),
        ("status: processing (arrives late)", "zapi.order_status_update", late),
        ("status: invalid body", "zapi.order_status_update", invalid),
    ]


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
        )
        worker = stack.enter_context(WorkerProcess(env, log_dir / "worker.log"))
        flower = stack.enter_context(FlowerProcess(env, log_dir / "flower.log", port=free_port()))
        print(f"Redis      {redis_server.url}  ({find_redis_server()})")
        print(f"fake Z-API {simulator.base_url}  (200 ms latency)")
        print(f"worker     celery -A worker worker  (node {worker.nodename})")
        print(f"Flower     {flower.url}")
        print(f"logs       {log_dir}")
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
        if keep_running:
            print(f"Flower is at {flower.url} - press Ctrl-C to stop everything.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while worker.running and flower.running:
                    time.sleep(0.5)
        print("stopping worker, Flower, fake Z-API and Redis")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--exit", action="store_true", help="stop right after the results")
    parser.add_argument(
        "--keep-running", action="store_true", help="wait for Ctrl-C even without a terminal"
    )
    parser.add_argument("--logs", type=Path, default=None, help="where to write process logs")
    args = parser.parse_args(argv)
    keep_running = args.keep_running or (not args.exit and sys.stdin.isatty())
    if args.logs is not None:
        return run(keep_running, args.logs)
    with tempfile.TemporaryDirectory(prefix="zapi-queue-demo-") as logs:
        return run(keep_running, Path(logs))


if __name__ == "__main__":
    sys.exit(main())
