"""A job's I/O under each concurrency model of one worker process, same run (issue #34).

Issue #34 asks for both one-thread models, Celery's gevent pool and an asyncio send path, to be
measured on a prototype before one is kept. An asyncio worker behind Celery's task contract
would be a rewrite of Celery's execution path. What it would change is the cost of each
job's I/O, so that cost alone is measured here, in the job's shape:
* its four Redis scripts (start, reply record, result, ack) with 25 arguments each;
* one keep-alive POST of the docs' body to the fake Z-API, and the JSON reply read back.

64 jobs run at a time in one process (the shipped concurrency), each concurrent worker with one
HTTP connection of its own (as tasks/zapi/connections.py gives each send), in three models:
* **threads**: ``redis.Redis`` and ``httpx.Client`` on 64 OS threads (today's default);
* **gevent**: the same code on 64 greenlets after ``gevent.monkey.patch_all()``;
* **asyncio**: ``redis.asyncio`` and ``httpx.AsyncClient`` on 64 tasks of one event loop.

Each measurement is a fresh child process. It warms up, then waits while its CPU (user and
system, read from /proc) is marked, runs the timed batch, and is marked again. Rounds
alternate the models. It prints the medians, with each model's ratio to threads in the same
round.

    python -m bench.io_models [--jobs 3000] [--rounds 3] [--latency 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

MODELS = ("threads", "gevent", "asyncio")
CONCURRENCY = 64
SCRIPTS_PER_JOB = 4
#: What a job's scripts carry: 25 arguments each, about the 101 of a real job's four.
SCRIPT_ARGS = tuple(f"argument-{n:02d}" for n in range(24))
#: One write with a TTL, as each of the job's scripts makes at least one.
LUA = "redis.call('SET', KEYS[1], ARGV[1], 'EX', 60) return #ARGV"
ROUTE = "/instances/bench-instance/token/bench-token/order-status-update"
HEADERS = {"Client-Token": "bench-client-token", "Content-Type": "application/json"}


def payload(index: int, prefix: str) -> bytes:
    import json

    from devtools.samples import DOCS_STATUS_BODY

    body = {**DOCS_STATUS_BODY, "messageId": f"{prefix}{index:08d}"}
    return json.dumps(body).encode()


def script_args(index: int) -> list[Any]:
    return [index, *SCRIPT_ARGS]


def run_sync(redis_url: str, zapi_url: str, jobs: int, prefix: str) -> float:
    """Runs ``jobs`` on CONCURRENCY threads (greenlets once gevent has patched); the seconds."""
    import itertools
    import threading

    import httpx
    import redis

    client = redis.Redis.from_url(redis_url)
    script = client.register_script(LUA)
    counter = itertools.count()

    def work(http: httpx.Client) -> None:
        while (index := next(counter)) < jobs:
            key = f"io:{prefix}:{index}"
            args = script_args(index)
            script(keys=[key], args=args)
            reply = http.post(ROUTE, content=payload(index, prefix), headers=HEADERS)
            reply.raise_for_status()
            reply.json()
            for _ in range(SCRIPTS_PER_JOB - 1):
                script(keys=[key], args=args)

    def worker() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(base_url=zapi_url, limits=limits, timeout=30) as http:
            work(http)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed


def run_async(redis_url: str, zapi_url: str, jobs: int, prefix: str) -> float:
    """Runs ``jobs`` on CONCURRENCY tasks of one asyncio event loop; the seconds."""
    import asyncio
    import itertools

    import httpx
    import redis.asyncio

    async def main() -> float:
        client = redis.asyncio.Redis.from_url(redis_url)
        script = client.register_script(LUA)
        counter = itertools.count()

        async def worker() -> None:
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            async with httpx.AsyncClient(base_url=zapi_url, limits=limits, timeout=30) as http:
                while (index := next(counter)) < jobs:
                    key = f"io:{prefix}:{index}"
                    args = script_args(index)
                    await script(keys=[key], args=args)
                    content = payload(index, prefix)
                    reply = await http.post(ROUTE, content=content, headers=HEADERS)
                    reply.raise_for_status()
                    reply.json()
                    for _ in range(SCRIPTS_PER_JOB - 1):
                        await script(keys=[key], args=args)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
        await client.aclose()
        return elapsed

    return asyncio.run(main())


def child(model: str, redis_url: str, zapi_url: str, jobs: int, warmup: int) -> None:
    """One measurement: warm up, print ``ready``, wait for a line, run, print the seconds."""
    if model == "gevent":
        import importlib

        importlib.import_module("gevent.monkey").patch_all()
    run = run_async if model == "asyncio" else run_sync
    run(redis_url, zapi_url, warmup, f"W{model[:2]}")
    print("ready", flush=True)
    sys.stdin.readline()
    print(f"{run(redis_url, zapi_url, jobs, f'J{model[:2]}'):.6f}", flush=True)


def measure(model: str, redis_url: str, sim: Any, jobs: int, warmup: int) -> tuple[float, float]:
    """(jobs/s, CPU ms per job) of one child running ``model``."""
    import subprocess

    import psutil

    command = [sys.executable, "-m", "bench.io_models", "--child", model]
    command += ["--redis", redis_url, "--zapi", sim.base_url, "--jobs", str(jobs)]
    command += ["--warmup", str(warmup)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{model}: the child did not warm up")
        sim.reset()
        times = psutil.Process(process.pid).cpu_times()
        before = times.user + times.system
        process.stdin.write("go\n")
        process.stdin.flush()
        elapsed = float(process.stdout.readline())
        times = psutil.Process(process.pid).cpu_times()
        cpu = times.user + times.system - before
        process.stdin.close()
        process.wait(timeout=30)
    if (accepted := sim.stats()["accepted"]) != jobs:
        raise RuntimeError(f"{model}: the fake Z-API accepted {accepted} of {jobs} sends")
    return jobs / elapsed, cpu / jobs * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.0, help="the fake Z-API's, in seconds")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--zapi", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.redis, args.zapi, args.jobs, args.warmup)
        return
    compare(args)


def compare(args: argparse.Namespace) -> None:
    """The rounds, alternating the models, and the table of medians."""
    import statistics

    from bench.throughput import simulator
    from devtools.redis_server import RedisServer

    models = args.models.split(",")
    runs: dict[str, list[tuple[float, float]]] = {model: [] for model in models}
    with (
        RedisServer() as redis_server,
        simulator(args.latency) as sim,
    ):
        for round_number in range(args.rounds):
            order = models[round_number % len(models) :] + models[: round_number % len(models)]
            for model in order:
                runs[model].append(measure(model, redis_server.url, sim, args.jobs, args.warmup))
                rate, cpu = runs[model][-1]
                print(f"round {round_number + 1} {model:<8} {rate:8.1f} jobs/s {cpu:6.3f} ms")
    print(
        f"\n{args.jobs} jobs at {args.latency * 1000:.0f} ms, {CONCURRENCY} at a time, "
        f"one process, medians of {args.rounds} rounds"
    )
    print(f"{'model':<8} {'jobs/s':>8} {'CPU ms/job':>10} {'CPU x threads (range)':>24}")
    for model in models:
        rates, cpus = zip(*runs[model], strict=True)
        line = f"{model:<8} {statistics.median(rates):8.1f} {statistics.median(cpus):10.3f}"
        if "threads" in runs and model != "threads":
            pairs = zip(runs[model], runs["threads"], strict=True)
            ratios = [cpu / base for (_, cpu), (_, base) in pairs]
            line += f" {statistics.median(ratios):9.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        print(line)


if __name__ == "__main__":
    main()
