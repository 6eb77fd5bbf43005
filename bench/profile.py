"""Where a zapi-queue worker's CPU goes per delivered job, measured with yappi over a real run.

One worker (shipped defaults), a local Redis, the fake Z-API at 0 ms in another process: a
backlog of distinct jobs is enqueued while yappi (CPU clock, every thread) profiles the worker.
py-spy cannot attach in every container; yappi runs inside the worker (a ``sitecustomize``
hook on its PYTHONPATH) between two marker files the benchmark writes.

It prints the CPU ms per job of each concern, read as the inclusive CPU time of the functions
that do it (the idempotency claim and reply record, the rate slot, validation, the send, task
events, the result write, the ack...), and the modules where the time is spent (self time).

    python -m bench.profile [--jobs 3000]      # needs yappi (pip install yappi)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.throughput import bench_env, bodies, simulator
from devtools.processes import WorkerProcess
from devtools.redis_server import RedisServer
from tasks.contract.producer import Producer

#: Loaded into the worker by PYTHONPATH: profile every thread (every greenlet under the default
#: gevent pool) on the CPU clock from when the file BENCH_PROFILE_START appears to when
#: BENCH_PROFILE_STOP does; then write the stats to BENCH_PROFILE_OUT.
HOOK = r"""
import os, threading, time
import yappi

def _wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.05)

def _profile():
    _wait_for(os.environ["BENCH_PROFILE_START"])
    if os.environ.get("WORKER_POOL", "gevent") == "gevent":
        yappi.set_context_backend("greenlet")  # a function's time, not its greenlet's switches
    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)
    _wait_for(os.environ["BENCH_PROFILE_STOP"])
    yappi.stop()
    partial = os.environ["BENCH_PROFILE_OUT"] + ".partial"
    with open(partial, "w") as out:
        for stat in yappi.get_func_stats():
            out.write(f"{stat.full_name}\t{stat.ttot}\t{stat.tsub}\t{stat.ncall}\n")
    os.rename(partial, os.environ["BENCH_PROFILE_OUT"])

threading.Thread(target=_profile, daemon=True).start()
"""

#: Concern -> functions whose inclusive CPU time is that concern's (none nested in another).
ENTRY_POINTS: dict[str, tuple[str, str]] = {
    "receive (fetch, claim, Celery's strategy)": ("worker/fetch_channel.py", "_claim_and_deliver"),
    "validation (pydantic)": ("tasks/contract/validation.py", "validate_update"),
    "turn + claim + slot + send mark": ("tasks/state/turns.py", "enter_and_start"),
    "the same, ordering off": ("tasks/state/turns.py", "Turns.start"),
    "rate slot again (after a wait)": ("tasks/state/ratelimit.py", "reserve"),
    "re-claim before the send (after a wait)": ("tasks/state/idempotency.py", "before_send"),
    "the send (ZapiClient.send, httpx)": ("tasks/zapi/client.py", "send"),
    "reply + order state + delivery record": ("tasks/state/turns.py", "record_and_deliver"),
    "attempt log line + metrics": ("tasks/execution/job.py", "Job.log"),
    "result write (backend)": ("celery/backends/redis.py", "_set_with_state"),
    "task events": ("tasks/request.py", "send_event"),
    "ack": ("worker/fetch_acks.py", "QoS.ack"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--top", type=int, default=0, help="also list the N costliest functions")
    parser.add_argument("--latency", type=float, default=0.0, help="the fake Z-API's, in seconds")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="profile-") as tmp,
        RedisServer() as redis_server,
        simulator(args.latency) as sim,
    ):
        hook, out = Path(tmp) / "hook", Path(tmp) / "stats.tsv"
        start, stop = Path(tmp) / "start", Path(tmp) / "stop"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(HOOK)
        env = bench_env(
            redis_server.url,
            sim,
            pythonpath=str(hook),
            bench_profile_start=str(start),
            bench_profile_stop=str(stop),
            bench_profile_out=str(out),
        )
        producer = Producer(
            broker_url=env["CELERY_BROKER_URL"], result_backend=env["CELERY_RESULT_BACKEND"]
        )
        with WorkerProcess(env, Path(tmp) / "worker.log", loglevel="WARNING"):
            producer.send_many("zapi.order_status_update", bodies(50, "warm"))
            while sim.stats()["accepted"] < 50:
                time.sleep(0.05)
            sim.reset()
            start.touch()
            time.sleep(0.5)
            producer.send_many("zapi.order_status_update", bodies(args.jobs, "prof"))
            while sim.stats()["distinct"] < args.jobs:
                time.sleep(0.1)
            time.sleep(0.5)
            stop.touch()
            while not out.exists():
                time.sleep(0.1)
        producer.close()
        rows = [line.split("\t") for line in out.read_text().splitlines()]
    stats = [(name, float(ttot), float(tsub), int(calls)) for name, ttot, tsub, calls in rows]
    total = sum(tsub for _, _, tsub, _ in stats)
    per_job = 1000 / args.jobs
    at = f"{args.jobs} jobs at {args.latency * 1000:.0f} ms, one worker"
    print(f"{at}: {total * per_job:.2f} CPU ms per job in all")
    print(f"\n{'concern (inclusive)':<40} {'CPU ms/job':>10} {'share':>6}")
    for concern, (file_part, function) in ENTRY_POINTS.items():
        spent = sum(
            ttot
            for name, ttot, _, _ in stats
            if file_part in name.split(" ", 1)[0] and name.rsplit(" ", 1)[-1].endswith(function)
        )
        print(f"{concern:<40} {spent * per_job:>10.3f} {spent / total:>6.1%}")
    by_module: dict[str, float] = {}
    for name, _, tsub, _ in stats:
        by_module[_module(name)] = by_module.get(_module(name), 0.0) + tsub
    print(f"\n{'module (self time)':<40} {'CPU ms/job':>10} {'share':>6}")
    for module, spent in sorted(by_module.items(), key=lambda item: -item[1])[:15]:
        print(f"{module:<40} {spent * per_job:>10.3f} {spent / total:>6.1%}")
    if args.top:
        print(f"\n{'function (self time)':<70} {'CPU ms/job':>10} {'calls/job':>9}")
        for name, _, tsub, calls in sorted(stats, key=lambda stat: -stat[2])[: args.top]:
            where = f"{_module(name)} {name.rsplit(' ', 1)[-1]}"
            print(f"{where[:70]:<70} {tsub * per_job:>10.3f} {calls / args.jobs:>9.1f}")


def _module(full_name: str) -> str:
    """``package/module`` of a yappi function name ``path/file.py:line function``."""
    path = full_name.split(" ", 1)[0].rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 1 else parts[0]


if __name__ == "__main__":
    main()
