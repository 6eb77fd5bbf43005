"""Memory and CPU of each process the Kubernetes manifests run, for their requests and limits.

One worker (the shipped defaults: 128 sends in flight) sends against the fake Z-API in its own
process at ``--latency`` seconds per send, with a backlog large enough that all of them stay busy
for the whole window; beside it, Flower (receiving the worker's events), the webhook receiver
(the fake Z-API posts it a DeliveryCallback per send), the console (probed only) and the
exporter (scraped every 15 s, as Prometheus would). Every
half second it samples each process tree's RSS and CPU time, then prints, per process: RSS at
the start of the window and its peak, and CPU in millicores (the mean over the window and the
highest of its 5-second slices). docs/kubernetes.md gives the figures and the limits set from
them.

    python -m bench.pod_resources [--seconds 60] [--latency 0.5]
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench.throughput import (
    CLIENT_TOKEN,
    INSTANCE,
    SHIPPED_CONCURRENCY,
    TOKEN,
    bodies,
    cpu_seconds,
    tree,
)
from devtools.ports import free_port
from devtools.processes import (
    ConsoleProcess,
    ExporterProcess,
    FlowerProcess,
    WebhookProcess,
    WorkerProcess,
    stack_env,
)
from devtools.redis_server import RedisServer
from devtools.remote_sim import RemoteSimulator
from tasks.contract.producer import Producer

SLICE = 5.0  # seconds of one CPU slice (the peak is the busiest slice)
SAMPLE = 0.5


@dataclass
class Samples:
    """One process tree's (time, CPU seconds, RSS bytes) samples."""

    name: str
    root: psutil.Process
    points: list[tuple[float, float, float]] = field(default_factory=list)

    def take(self) -> None:
        processes = tree(self.root)
        rss = sum(p.memory_info().rss for p in processes)
        self.points.append((time.monotonic(), cpu_seconds(self.root), float(rss)))

    def report(self) -> str:
        (t0, c0, r0), (t1, c1, _) = self.points[0], self.points[-1]
        mean = (c1 - c0) / (t1 - t0) * 1000
        slices = []
        start = 0
        for index, (t, c, _) in enumerate(self.points):
            if t - self.points[start][0] >= SLICE:
                slices.append((c - self.points[start][1]) / (t - self.points[start][0]) * 1000)
                start = index
        peak_rss = max(r for _, _, r in self.points)
        return (
            f"{self.name:>9} {r0 / 2**20:>10.0f} {peak_rss / 2**20:>10.0f} "
            f"{mean:>10.0f} {max(slices, default=mean):>10.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window")
    parser.add_argument("--latency", type=float, default=0.5, help="fake Z-API seconds per send")
    args = parser.parse_args()
    concurrency = SHIPPED_CONCURRENCY
    jobs = int((args.seconds + 30) * concurrency / args.latency)  # never runs dry

    with contextlib.ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pods-")))
        redis_server = stack.enter_context(RedisServer())
        ports = {name: free_port() for name in ("flower", "webhook", "console", "exporter")}
        webhook_secret = secrets.token_urlsafe(24)
        sim = stack.enter_context(
            RemoteSimulator(
                instance_id=INSTANCE,
                instance_token=TOKEN,
                client_token=CLIENT_TOKEN,
                latency=args.latency,
                webhook_url=f"http://127.0.0.1:{ports['webhook']}/webhooks/zapi/{webhook_secret}",
            )
        )
        env = stack_env(
            redis_server.url,
            sim,
            zapi_rate_limit="10000",  # the limiter runs on every send but never binds
            zapi_rate_burst="1000",
            worker_concurrency=str(concurrency),
            flower_basic_auth=f"bench:{secrets.token_urlsafe(16)}",
            zapi_console_auth=f"bench:{secrets.token_urlsafe(16)}",
            zapi_webhook_secret=webhook_secret,
        )
        worker = stack.enter_context(WorkerProcess(env, logs / "worker.log", loglevel=None))
        others = {
            "flower": FlowerProcess(env, logs / "flower.log", port=ports["flower"]),
            "webhook": WebhookProcess(env, logs / "webhook.log", port=ports["webhook"]),
            "console": ConsoleProcess(env, logs / "console.log", port=ports["console"]),
            "exporter": ExporterProcess(env, logs / "exporter.log", port=ports["exporter"]),
        }
        for process in others.values():
            stack.enter_context(process)
        assert worker.process is not None
        samples = [Samples("worker", psutil.Process(worker.process.pid))]
        for name, process in others.items():
            assert process.process is not None
            samples.append(Samples(name, psutil.Process(process.process.pid)))

        producer = Producer(
            broker_url=env["CELERY_BROKER_URL"], result_backend=env["CELERY_RESULT_BACKEND"]
        )
        producer.send_many("zapi.order_status_update", bodies(jobs, "K"))
        producer.close()
        while sim.stats()["accepted"] < 2 * concurrency:  # warmed up: every thread has sent
            time.sleep(0.2)
        sim.reset()
        started = time.monotonic()
        next_scrape = started
        while (now := time.monotonic()) - started < args.seconds:
            for sample in samples:
                sample.take()
            if now >= next_scrape:
                httpx.get(f"{others['exporter'].url}/metrics", timeout=10)
                for name in ("webhook", "console"):
                    httpx.get(f"{others[name].url}/healthz", timeout=5)
                next_scrape = now + 15
            time.sleep(SAMPLE)
        stats = sim.stats()
        span = time.monotonic() - started

    rate = stats["accepted"] / span
    print(
        f"worker: {concurrency} sends in flight, fake Z-API at {args.latency * 1000:.0f} ms, "
        f"{rate:.0f} sends/s over {span:.0f} s (~{rate * args.latency:.0f} in flight)"
    )
    print(f"{'process':>9} {'RSS0 MiB':>10} {'RSSmax MiB':>10} {'CPU m':>10} {'CPUmax5s m':>10}")
    for sample in samples:
        print(sample.report())


if __name__ == "__main__":
    main()
