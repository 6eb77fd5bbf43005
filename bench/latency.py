"""Enqueue → Z-API latency at a light load, zapi-queue against the careful baseline, same run.

Issue #34's third target: at 10 jobs/s, how long a job takes from ``send_task`` to the moment
the fake Z-API (a process of its own) receives its request. Both clocks are this host's
``time.time()``. Each variant (the baseline, ``pooled``, as in ``bench.throughput``; zapi-queue
with the shipped defaults, gevent; optionally ``threads``: ``WORKER_POOL=threads``) is warmed
up, then sent ``--jobs`` jobs ``--interval`` s apart, one at a time, in rounds that alternate
which goes first. p50, p90, p99 and the worst are printed per variant, over all rounds.

    python -m bench.latency [--jobs 300] [--rounds 2] [--variants pooled,zapi-queue]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from celery import Celery

from bench.throughput import CLIENT_TOKEN, INSTANCE, REPO, TOKEN, bench_env, bodies
from devtools.processes import WorkerProcess
from devtools.redis_server import RedisServer
from devtools.remote_sim import RemoteSimulator

#: variant -> (Celery app, task name, worker processes, settings on top of the bench's).
VARIANTS: dict[str, tuple[str, str, int, Mapping[str, str]]] = {
    "pooled": ("bench.baseline", "baseline.order_status_update_pooled", 1, {}),
    "zapi-queue": ("worker", "zapi.order_status_update", 2, {}),
    "threads": ("worker", "zapi.order_status_update", 2, {"WORKER_POOL": "threads"}),
}
WARMUP = 50


def latencies(
    variant: str, env: dict[str, str], sim: RemoteSimulator, jobs: int, interval: float, logs: Path
) -> list[float]:
    """Milliseconds from each send to the fake's receipt of it, for one variant's run."""
    app, task, processes, settings = VARIANTS[variant]
    env = {**env, **settings}
    producer = Celery(broker=env["CELERY_BROKER_URL"], backend=env["CELERY_RESULT_BACKEND"])
    with contextlib.ExitStack() as stack:
        for n in range(processes):
            log = logs / f"{variant}-{n}.log"
            worker = WorkerProcess(env, log, app=app, loglevel="WARNING")
            stack.enter_context(worker)
        for body in bodies(WARMUP, f"W{variant[:2]}"):
            producer.send_task(task, args=[body])
        while sim.stats()["accepted"] < WARMUP:
            time.sleep(0.05)
        sim.reset()
        sent: dict[str, float] = {}
        for body in bodies(jobs, f"L{variant[:2]}"):
            sent[body["messageId"]] = time.time()
            producer.send_task(task, args=[body])
            time.sleep(interval)
        deadline = time.monotonic() + 60
        while sim.stats()["distinct"] < jobs and time.monotonic() < deadline:
            time.sleep(0.1)
        received = {r.message_id: r.received_at for r in sim.requests() if r.status == 200}
    producer.close()
    return [(received[mid] - at) * 1000 for mid, at in sent.items() if mid in received]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=300, help="timed jobs per run")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between sends")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="pooled,zapi-queue")
    args = parser.parse_args()
    names = args.variants.split(",")
    found: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-") as logs, RedisServer() as redis_server:
        sim = RemoteSimulator(instance_id=INSTANCE, instance_token=TOKEN, client_token=CLIENT_TOKEN)
        with sim:
            env = bench_env(redis_server.url, sim, pythonpath=str(REPO))
            for round_ in range(args.rounds):
                for name in names if round_ % 2 == 0 else names[::-1]:
                    found[name] += latencies(name, env, sim, args.jobs, args.interval, Path(logs))
                    redis_server.client().flushall()
    print(f"enqueue -> Z-API latency, 1 job every {args.interval:g} s, {args.rounds} round(s)")
    print(f"{'variant':>10} {'jobs':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    base = statistics.median(found["pooled"]) if found.get("pooled") else None
    for name, values in found.items():
        p50 = percentile(values, 0.5)
        ratio = f"  {p50 / base:.2f}x p50" if base else ""
        print(
            f"{name:>10} {len(values):>5} {p50:>8.1f} {percentile(values, 0.9):>8.1f} "
            f"{percentile(values, 0.99):>8.1f} {max(values):>8.1f}{ratio}"
        )


if __name__ == "__main__":
    main()
