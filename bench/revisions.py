"""This checkout's worker against an earlier revision's, head to head, interleaved.

The strongest baseline for "what did this change cost" is the code before it, on the same
machine in the same hour. The earlier revision is checked out in a temporary git worktree and
its worker runs from there (``PYTHONPATH`` puts it before this checkout), with the same
virtualenv, Redis and fake Z-API; the zapi-queue row of ``bench.throughput`` (shipped
defaults, each job an order of its own) is measured in rounds that alternate which goes first.

    python -m bench.revisions --against 54379fa --latency 0 --rounds 4
    make bench-revisions BENCH_ARGS="--against HEAD~1"
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.throughput import CLIENT_TOKEN, INSTANCE, TOKEN, Run, measure
from worker.dev.processes import stack_env
from worker.dev.redis_server import RedisServer
from worker.dev.remote_sim import RemoteSimulator

ROOT = Path(__file__).resolve().parent.parent


def worktree(revision: str, into: Path) -> Path:
    """``revision`` checked out (detached) in a new worktree under ``into``."""
    path = into / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(path), revision],
        cwd=ROOT,
        check=True,
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--against", required=True, help="the earlier revision (git rev)")
    parser.add_argument("--latency", type=float, default=0.0, help="fake Z-API latency, s")
    parser.add_argument("--rounds", type=int, default=4, help="runs per revision")
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()

    runs: dict[str, list[Run]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch, RedisServer() as redis_server:
        base = worktree(args.against, Path(scratch))
        sim = RemoteSimulator(
            instance_id=INSTANCE, instance_token=TOKEN, client_token=CLIENT_TOKEN,
            latency=args.latency,
        )  # fmt: skip
        try:
            with sim:
                for round_ in range(args.rounds):
                    order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
                    for which in order:
                        env = stack_env(
                            redis_server.url, sim, zapi_rate_limit="10000", zapi_rate_burst="1000"
                        )
                        if which == "before":
                            env["PYTHONPATH"] = str(base)
                        run = measure(
                            which, "worker", "zapi.order_status_update", args.jobs, sim, env,
                            Path(scratch),
                        )  # fmt: skip
                        redis_server.client().flushall()
                        runs[which].append(run)
                        print(
                            f"{which:>6}  {run.jobs_per_second:7.1f} jobs/s  "
                            f"{run.cpu_per_1000:5.2f} CPU s/1000 jobs",
                            flush=True,
                        )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False
            )

    rate = {w: statistics.mean(r.jobs_per_second for r in rs) for w, rs in runs.items()}
    cpu = {w: statistics.mean(r.cpu_per_1000 for r in rs) for w, rs in runs.items()}
    print()
    print(
        f"Z-API latency {args.latency * 1000:.0f} ms, {args.rounds} runs each, interleaved; "
        f"before = {args.against}"
    )
    for which in ("before", "after"):
        print(f"{which:>6}  mean {rate[which]:7.1f} jobs/s  {cpu[which]:5.2f} CPU s/1000 jobs")
    print(
        f"after / before: {rate['after'] / rate['before']:.2f}x jobs/s, "
        f"{cpu['after'] / cpu['before']:.2f}x CPU per job"
    )


if __name__ == "__main__":
    main()
