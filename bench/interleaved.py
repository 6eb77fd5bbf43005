"""Two settings of the zapi-queue worker, measured in alternating rounds, and their ratio.

The machine's drift (another process, a busy hour) then hits both alike: what ``bench.ordering``
(ordering on and off) and ``bench.revisions`` (this checkout and an earlier one) rest on. Each
run is the zapi-queue row of ``bench.throughput``: 2,000 jobs, each of an order of its own,
shipped defaults, one Redis and one fake Z-API for all runs.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

from bench.throughput import CLIENT_TOKEN, INSTANCE, TOKEN, Run, bench_env, measure
from devtools.redis_server import RedisServer
from devtools.remote_sim import RemoteSimulator


def arguments(doc: str | None, *, rounds: int, per: str = "setting") -> argparse.ArgumentParser:
    """The options every interleaved benchmark takes: ``--latency``, ``--rounds`` (runs per
    ``per``), ``--jobs``; described by the first paragraph of ``doc``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--latency", type=float, default=0.0, help="fake Z-API latency, s")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"runs per {per}")
    parser.add_argument("--jobs", type=int, default=2000)
    return parser


#: Extra environment of one setting, given the base environment.
Setting = Callable[[dict[str, str]], dict[str, str]]


def interleaved(
    settings: dict[str, Setting], *, latency: float, rounds: int, jobs: int, logs: Path
) -> dict[str, list[Run]]:
    """Each setting ``rounds`` times, the order reversed every other round; prints each run."""
    names = list(settings)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    with RedisServer() as redis_server:
        sim = RemoteSimulator(
            instance_id=INSTANCE, instance_token=TOKEN, client_token=CLIENT_TOKEN, latency=latency
        )
        with sim:
            for round_ in range(rounds):
                for name in names if round_ % 2 == 0 else names[::-1]:
                    base = bench_env(redis_server.url, sim)
                    env = {**base, **settings[name](base)}
                    run = measure(name, "worker", "zapi.order_status_update", jobs, sim, env, logs)
                    redis_server.client().flushall()
                    runs[name].append(run)
                    print(
                        f"{name:>8}  {run.jobs_per_second:7.1f} jobs/s  "
                        f"{run.cpu_per_1000:5.2f} CPU s/1000 jobs",
                        flush=True,
                    )
    return runs


def report(runs: dict[str, list[Run]], title: str) -> None:
    """Means of each setting, and the last one's ratio to the first (jobs/s, CPU per job)."""
    rate = {n: statistics.mean(r.jobs_per_second for r in rs) for n, rs in runs.items()}
    cpu = {n: statistics.mean(r.cpu_per_1000 for r in rs) for n, rs in runs.items()}
    print()
    print(title)
    for name in runs:
        print(f"{name:>8}  mean {rate[name]:7.1f} jobs/s  {cpu[name]:5.2f} CPU s/1000 jobs")
    names = list(runs)
    first, last = names[0], names[-1]
    print(
        f"{last} / {first}: {rate[last] / rate[first]:.2f}x jobs/s, "
        f"{cpu[last] / cpu[first]:.2f}x CPU per job"
    )
