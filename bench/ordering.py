"""What per-order ordering costs: one worker with ``ZAPI_ORDERING`` on and off, interleaved.

The zapi-queue row of ``bench.throughput`` (2,000 jobs, each of an order of its own, the
shipped defaults), run in rounds that alternate which setting goes first, against one Redis and
one fake Z-API: the machine's drift hits both alike. Prints each run, the means and the ratio.

    python -m bench.ordering --latency 0 --rounds 6      # or: make bench-ordering
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.throughput import CLIENT_TOKEN, INSTANCE, TOKEN, Run, measure
from worker.dev.processes import stack_env
from worker.dev.redis_server import RedisServer
from worker.dev.remote_sim import RemoteSimulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--latency", type=float, default=0.0, help="fake Z-API latency, s")
    parser.add_argument("--rounds", type=int, default=6, help="runs per setting")
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()

    runs: dict[str, list[Run]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="bench-") as logs, RedisServer() as redis_server:
        sim = RemoteSimulator(
            instance_id=INSTANCE, instance_token=TOKEN, client_token=CLIENT_TOKEN,
            latency=args.latency,
        )  # fmt: skip
        with sim:
            for round_ in range(args.rounds):
                for setting in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                    env = stack_env(
                        redis_server.url,
                        sim,
                        zapi_rate_limit="10000",
                        zapi_rate_burst="1000",
                        zapi_ordering=setting,
                    )
                    run = measure(
                        f"o{setting}", "worker", "zapi.order_status_update", args.jobs, sim,
                        env, Path(logs),
                    )  # fmt: skip
                    redis_server.client().flushall()
                    runs[setting].append(run)
                    print(
                        f"ordering {setting:>3}  {run.jobs_per_second:7.1f} jobs/s  "
                        f"{run.cpu_per_1000:5.2f} CPU s/1000 jobs",
                        flush=True,
                    )

    rate = {s: statistics.mean(r.jobs_per_second for r in rs) for s, rs in runs.items()}
    cpu = {s: statistics.mean(r.cpu_per_1000 for r in rs) for s, rs in runs.items()}
    print()
    print(f"Z-API latency {args.latency * 1000:.0f} ms, {args.rounds} runs each, interleaved")
    for setting in ("off", "on"):
        print(f"ordering {setting:>3}  mean {rate[setting]:7.1f} jobs/s  {cpu[setting]:5.2f} CPU s")
    print(
        f"on / off: {rate['on'] / rate['off']:.2f}x jobs/s, {cpu['on'] / cpu['off']:.2f}x CPU "
        "per job"
    )


if __name__ == "__main__":
    main()
