"""How precisely N worker processes share one Z-API rate limit.

For N = 1, 2 and 4 workers (shipped defaults, real processes) at limit R, against a fake Z-API
that answers 429 beyond R + burst requests in any sliding second, enqueue enough jobs for
``--seconds`` of sending and report: the achieved rate (and its ratio to R), the busiest
one-second window, and the 429s. The baseline row is Celery's own per-process ``rate_limit``
idea: what N unshared limiters at R would allow (N x R).

    python -m bench.rate_limit --rate 20 --seconds 10
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from celery import Celery

from devtools.metrics import RateFigures, rate_figures
from devtools.processes import WorkerProcess, stack_env
from devtools.redis_server import RedisServer
from devtools.remote_sim import RemoteSimulator
from devtools.samples import DOCS_STATUS_BODY


def run_once(workers: int, rate: float, burst: int, seconds: float, logs: Path) -> RateFigures:
    jobs = int(rate * seconds) + 1
    with (
        RedisServer() as redis_server,
        RemoteSimulator(rate_limit=rate, rate_burst=burst, latency=0.05) as sim,
        contextlib.ExitStack() as stack,
    ):
        env = stack_env(
            redis_server.url,
            sim,
            zapi_rate_limit=str(rate),
            zapi_rate_burst=str(burst),
        )
        for i in range(workers):
            stack.enter_context(WorkerProcess(env, logs / f"w{workers}-{i}.log"))
        producer = Celery(broker=env["CELERY_BROKER_URL"], backend=env["CELERY_RESULT_BACKEND"])
        # A running fleet: connections open and code warm. (A cold start of many workers
        # taking a backlog at once is the one case that can exceed R + burst; see README.)
        warm = [
            producer.send_task(
                "zapi.order_status_update", args=[{**DOCS_STATUS_BODY, "messageId": f"W{i}"}]
            )
            for i in range(2 * workers)
        ]
        for result in warm:
            result.get(timeout=60, propagate=False)
        time.sleep(1.5)  # out of the fake's one-second window
        sim.reset()
        results = [
            producer.send_task(
                "zapi.order_status_update", args=[{**DOCS_STATUS_BODY, "messageId": f"B{i}"}]
            )
            for i in range(jobs)
        ]
        deadline = time.monotonic() + seconds * 3 + 30
        for result in results:
            result.get(timeout=max(1.0, deadline - time.monotonic()), propagate=False)
        producer.close()
        return rate_figures([(r.received_at, r.status) for r in sim.requests()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="ZAPI_RATE_LIMIT (sends/s)")
    parser.add_argument("--burst", type=int, default=1, help="ZAPI_RATE_BURST")
    parser.add_argument("--seconds", type=float, default=10.0, help="sending time per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    print(f"shared rate limit R = {args.rate:g}/s, burst = {args.burst}")
    print(f"{'workers':>7} {'jobs':>5} {'achieved/s':>10} {'vs R':>6} {'busiest 1s':>10} "
          f"{'limit R+b':>9} {'429s':>5} {'unshared N x R':>14}")  # fmt: skip
    failures = []
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as logs:
        for n in args.workers:
            f = run_once(n, args.rate, args.burst, args.seconds, Path(logs))
            ratio = f.achieved_rate / args.rate
            print(f"{n:>7} {f.accepted:>5} {f.achieved_rate:>10.2f} {ratio:>6.1%} "
                  f"{f.busiest_second:>10} {args.rate + args.burst:>9g} {f.refused_429:>5} "
                  f"{n * args.rate:>14g}")  # fmt: skip
            if ratio < 0.95 or f.busiest_second > args.rate + args.burst or f.refused_429:
                failures.append(n)
    print("targets (>= 95% of R, busiest <= R + burst, no 429):", "missed for N=" + str(failures)
          if failures else "met")  # fmt: skip


if __name__ == "__main__":
    main()
