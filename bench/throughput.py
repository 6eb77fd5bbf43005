"""Throughput and CPU per job of zapi-queue against plain Celery baselines, same run.

For Z-API latencies of 0 ms and 200 ms, on the same local Redis and the same fake Z-API (a
separate process), it runs:

* **post** (context): ``celery -A bench.baseline worker`` (Celery's defaults: prefork, one
  process per core, prefetch 4, no events), a task that posts the body with ``httpx.post``;
* **pooled**, the baseline: the same task with one keep-alive ``httpx.Client`` per process and
  ``TCP_NODELAY``: what a careful developer writes, and the one to beat on CPU per job;
* **zapi-queue**: ``celery -A worker worker`` with the shipped defaults (gevent pool, validation,
  the shared rate limiter set far above the load, idempotency claims, per-order ordering, result
  and event writes), one worker process per core (``--workers``), as docs/benchmarks.md advises;
  every job of an order of its own;
* **unordered**: the same with ``ZAPI_ORDERING=off``: what per-order ordering costs;
* **floor** (only when named): ``celery -A bench.floor worker``, the same worker sending each
  body as it came, with none of the domain (bench/floor.py): the least a job of it costs;
* **stock-gevent** (only when named): the pooled task on Celery's own ``-P gevent`` and kombu's
  transport, as many processes and greenlets as zapi-queue.

It prints jobs/s, the workers' CPU seconds per 1,000 jobs (all their processes, user and
system), their RSS, and the producer's enqueue rate, with ratios to the pooled baseline. The
variants run in turn, ``--rounds`` times (a shared machine's noise moves one run by 10-20%): the
table gives each figure's median, and the range of the CPU ratio over the rounds.

    python -m bench.throughput [--rounds 3]     # or: make bench
    python -m bench.throughput --variants pooled,zapi-queue,threads --warmup 100
    python -m bench.throughput --variants pooled,floor,zapi-queue
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from celery import Celery

from config import Settings
from devtools.processes import WorkerProcess, stack_env
from devtools.redis_server import RedisServer
from devtools.remote_sim import RemoteSimulator
from devtools.samples import DOCS_STATUS_BODY
from tasks.contract.endpoints import Endpoint
from tasks.contract.producer import Producer

REPO = Path(__file__).resolve().parent.parent
#: The variants ``--variants`` may name (``threads``: the shipped worker with
#: ``WORKER_POOL=threads``, Celery's thread pool instead of the default gevent: issue #34).
VARIANTS = ("post", "pooled", "stock-gevent", "floor", "unordered", "zapi-queue", "threads")
#: ``WORKER_CONCURRENCY``'s default: the sends in flight of a worker on shipped defaults.
SHIPPED_CONCURRENCY: int = Settings.model_fields["worker_concurrency"].default
#: ``stock-gevent``: the pooled task on Celery's own ``-P gevent`` (as many greenlets and
#: processes as zapi-queue) and kombu's stock transport: the pool without zapi-queue's changes.
STOCK_GEVENT_ARGS = ("-P", "gevent", "--concurrency", str(SHIPPED_CONCURRENCY))
INSTANCE, TOKEN, CLIENT_TOKEN = "bench-instance", "bench-token", "bench-client-token"


@dataclass(frozen=True)
class Run:
    variant: str
    latency: float
    jobs: int
    jobs_per_second: float
    cpu_per_1000: float
    rss_mb: float


def bench_env(redis_url: str, sim: RemoteSimulator, **settings: str) -> dict[str, str]:
    """A stack's environment for a benchmark: the rate limiter runs on every send but never
    binds (throughput and cost are measured, not the limit), and ``settings`` on top."""
    env = stack_env(redis_url, sim, zapi_rate_limit="10000", zapi_rate_burst="1000")
    env.update({name.upper(): value for name, value in settings.items()})
    return env


def simulator(latency: float = 0.0) -> RemoteSimulator:
    """The fake Z-API of a benchmark, in a process of its own, answering with the bench's
    credentials after ``latency`` seconds."""
    return RemoteSimulator(
        instance_id=INSTANCE, instance_token=TOKEN, client_token=CLIENT_TOKEN, latency=latency
    )


def tree(process: psutil.Process) -> list[psutil.Process]:
    return [process, *process.children(recursive=True)]


def cpu_seconds(process: psutil.Process) -> float:
    return float(sum(p.cpu_times().user + p.cpu_times().system for p in tree(process)))


def bodies(count: int, prefix: str) -> list[dict[str, Any]]:
    """Distinct jobs of distinct orders: throughput, not one order's line, is measured."""
    return [
        {**DOCS_STATUS_BODY, "messageId": f"{prefix}{i:08d}", "orderRequestId": f"{prefix}{i:08d}"}
        for i in range(count)
    ]


def measure(
    variant: str,
    app: str,
    task: str,
    jobs: int,
    sim: RemoteSimulator,
    env: dict[str, str],
    logs: Path,
    processes: int = 1,
    *,
    extra_args: Sequence[str] = (),
    warmup_per_process: int = 20,
) -> Run:
    """``jobs`` through ``processes`` worker processes of ``app`` (started with ``extra_args``,
    e.g. another pool), after ``warmup_per_process`` jobs each that are not counted."""
    latency = sim.latency
    producer = Producer(
        broker_url=env["CELERY_BROKER_URL"], result_backend=env["CELERY_RESULT_BACKEND"]
    )
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(
                WorkerProcess(
                    env,
                    logs / f"{variant}-{latency}-{n}.log",
                    app=app,
                    loglevel="WARNING",
                    extra_args=extra_args,
                )
            )
            for n in range(processes)
        ]
        roots = [psutil.Process(worker.process.pid) for worker in workers if worker.process]
        warmup = warmup_per_process * processes
        sim.reset()  # the previous variant's requests must not count as this warm-up's
        producer.send_many(task, bodies(warmup, f"W{variant[:2]}{latency}"))
        while sim.stats()["accepted"] < warmup:
            time.sleep(0.05)
        sim.reset()
        cpu_before = sum(cpu_seconds(root) for root in roots)
        producer.send_many(task, bodies(jobs, f"J{variant[:2]}{latency}"))
        deadline = time.monotonic() + 600
        while (stats := sim.stats())["distinct"] < jobs and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # let the last results and acks be written
        cpu = sum(cpu_seconds(root) for root in roots) - cpu_before
        rss = sum(p.memory_info().rss for root in roots for p in tree(root)) / 2**20
    producer.close()
    span = stats["last"] - stats["first"]
    done = stats["distinct"]
    return Run(variant, latency, done, (done - 1) / span, cpu / done * 1000, rss)


def enqueue_rates(redis_url: str, count: int) -> dict[str, float]:
    """Producer side: one send_task per job vs. Producer.enqueue_many (both validate)."""
    rates = {}
    plain = Celery(broker=f"{redis_url}/5", backend=f"{redis_url}/6")
    jobs = bodies(count, "E")
    started = time.perf_counter()
    for body in jobs[: count // 5]:
        plain.send_task("zapi.order_status_update", args=[body])
    rates["send_task, no validation (baseline)"] = (count // 5) / (time.perf_counter() - started)
    producer = Producer(broker_url=f"{redis_url}/5", result_backend=f"{redis_url}/6")
    started = time.perf_counter()
    for body in jobs[: count // 5]:
        producer.enqueue_status_update(body)
    rates["Producer.enqueue_status_update"] = (count // 5) / (time.perf_counter() - started)
    started = time.perf_counter()
    result = producer.enqueue_many(Endpoint.ORDER_STATUS_UPDATE, jobs)
    rates["Producer.enqueue_many (bulk)"] = len(result.job_ids) / (time.perf_counter() - started)
    producer.close()
    plain.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per zapi-queue run")
    parser.add_argument("--baseline-jobs-slow", type=int, default=100, help="baselines, 200 ms")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="zapi-queue worker processes"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant, in turn")
    parser.add_argument(
        "--variants",
        default="post,pooled,unordered,zapi-queue,threads",
        help=f"comma-separated, of {','.join(VARIANTS)} (threads: WORKER_POOL=threads)",
    )
    parser.add_argument("--warmup", type=int, default=100, help="uncounted jobs per process")
    args = parser.parse_args()
    wanted = args.variants.split(",")
    unknown = set(wanted) - set(VARIANTS)
    if unknown or "pooled" not in wanted:
        parser.error(f"--variants: pooled (the baseline) and only {', '.join(VARIANTS)}")

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as logs, RedisServer() as redis_server:
        for latency in (0.0, 0.2):
            with simulator(latency) as sim:
                # PYTHONPATH: so the worker can import bench.baseline.
                env = bench_env(redis_server.url, sim, pythonpath=str(REPO))
                base_jobs = args.jobs if latency == 0 else args.baseline_jobs_slow
                unordered = {**env, "ZAPI_ORDERING": "off"}
                ours = "zapi.order_status_update"
                baseline = "baseline.order_status_update"
                pooled, stock = f"{baseline}_pooled", STOCK_GEVENT_ARGS
                threads = {**env, "WORKER_POOL": "threads"}
                variants = (
                    ("post", "bench.baseline", baseline, base_jobs, env, 1, ()),
                    ("pooled", "bench.baseline", pooled, base_jobs, env, 1, ()),
                    ("stock-gevent", "bench.baseline", pooled, args.jobs, env, args.workers, stock),
                    ("floor", "bench.floor", "bench.floor", args.jobs, env, args.workers, ()),
                    ("unordered", "worker", ours, args.jobs, unordered, args.workers, ()),
                    ("zapi-queue", "worker", ours, args.jobs, env, args.workers, ()),
                    ("threads", "worker", ours, args.jobs, threads, args.workers, ()),
                )
                chosen = [variant for variant in variants if variant[0] in wanted]
                for _ in range(args.rounds):
                    for variant, app, task, jobs, variant_env, processes, extra in chosen:
                        run = measure(
                            variant,
                            app,
                            task,
                            jobs,
                            sim,
                            variant_env,
                            Path(logs),
                            processes,
                            extra_args=extra,
                            warmup_per_process=args.warmup,
                        )
                        runs.append(run)
                        redis_server.client().flushall()
        rates = enqueue_rates(redis_server.url, 5000)

    print(f"baseline: pooled (one httpx.Client per process, TCP_NODELAY), Celery's prefork "
          f"defaults; zapi-queue: {args.workers} worker process(es); medians of "
          f"{args.rounds} round(s)")  # fmt: skip
    print(f"{'Z-API latency':>13} {'variant':>12} {'jobs':>5} {'jobs/s':>8} {'x pooled':>9} "
          f"{'CPU s/1000 jobs':>15} {'x pooled':>9} {'(range)':>11} {'RSS MB':>7}")  # fmt: skip
    for latency in (0.0, 0.2):
        here = [run for run in runs if run.latency == latency]
        base = [run for run in here if run.variant == "pooled"]
        base_rate = statistics.median(run.jobs_per_second for run in base)
        base_cpu = statistics.median(run.cpu_per_1000 for run in base)
        for variant in dict.fromkeys(run.variant for run in here):
            mine = [run for run in here if run.variant == variant]
            rate = statistics.median(run.jobs_per_second for run in mine)
            cpu = statistics.median(run.cpu_per_1000 for run in mine)
            # Each round's CPU against the same round's baseline: how much the ratio moves.
            pairs = zip(mine, base, strict=True)
            ratios = [run.cpu_per_1000 / ref.cpu_per_1000 for run, ref in pairs]
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
            rss = statistics.median(run.rss_mb for run in mine)
            print(f"{latency * 1000:>10.0f} ms {variant:>12} {mine[0].jobs:>5} {rate:>8.1f} "
                  f"{rate / base_rate:>8.2f}x {cpu:>15.2f} {cpu / base_cpu:>8.2f}x "
                  f"{spread:>11} {rss:>7.1f}")  # fmt: skip
    print()
    base_rate = next(iter(rates.values()))
    for name, rate in rates.items():
        print(f"enqueue {name:<40} {rate:>8.0f} jobs/s {rate / base_rate:>6.2f}x")


if __name__ == "__main__":
    main()
