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

import subprocess
import tempfile
from pathlib import Path

from bench.interleaved import arguments, interleaved, report

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
    parser = arguments(__doc__, rounds=4, per="revision")
    parser.add_argument("--against", required=True, help="the earlier revision (git rev)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        base = worktree(args.against, Path(scratch))
        try:
            runs = interleaved(
                {"before": lambda _: {"PYTHONPATH": str(base)}, "after": lambda _: {}},
                latency=args.latency,
                rounds=args.rounds,
                jobs=args.jobs,
                logs=Path(scratch),
            )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False
            )
    report(
        runs,
        f"Z-API latency {args.latency * 1000:.0f} ms, {args.rounds} runs each, interleaved; "
        f"before = {args.against}",
    )


if __name__ == "__main__":
    main()
