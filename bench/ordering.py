"""What per-order ordering costs: one worker with ``ZAPI_ORDERING`` on and off, interleaved.

The zapi-queue row of ``bench.throughput`` (2,000 jobs, each of an order of its own, the
shipped defaults), run in rounds that alternate which setting goes first, against one Redis and
one fake Z-API: the machine's drift hits both alike. Prints each run, the means and the ratio.

    python -m bench.ordering --latency 0 --rounds 6      # or: make bench-ordering
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.interleaved import arguments, interleaved, report


def main() -> None:
    args = arguments(__doc__, rounds=6).parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as logs:
        runs = interleaved(
            {
                "off": lambda _: {"ZAPI_ORDERING": "off"},
                "on": lambda _: {"ZAPI_ORDERING": "on"},
            },
            latency=args.latency,
            rounds=args.rounds,
            jobs=args.jobs,
            logs=Path(logs),
        )
    title = f"Z-API latency {args.latency * 1000:.0f} ms, {args.rounds} runs each, interleaved"
    report(runs, title)


if __name__ == "__main__":
    main()
