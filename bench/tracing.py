"""What tracing costs a worker: the same worker with tracing off and on, interleaved.

``on`` exports every span over OTLP/HTTP to a stand-in collector in this process
(devtools/otlp_receiver.py), sampling everything: the most a trace can cost. Each job's CPU
includes the worker's span work and its exporter thread (the whole process tree is measured,
as in ``bench.throughput``); the collector's decoding is this process's, not counted. With
``off`` against an earlier revision, ``bench.revisions`` says what tracing costs when unused.

    python -m bench.tracing [--latency 0] [--rounds 4]      # or: make bench-tracing
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.interleaved import arguments, interleaved, report
from devtools.otlp_receiver import OtlpReceiver


def main() -> None:
    args = arguments(__doc__, rounds=4).parse_args()
    with OtlpReceiver() as collector, tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        traced = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}
        runs = interleaved(
            {"off": lambda _: {}, "on": lambda _: traced},
            latency=args.latency,
            rounds=args.rounds,
            jobs=args.jobs,
            logs=Path(scratch),
        )
        spans = len(collector.spans())
    report(
        runs,
        f"Z-API latency {args.latency * 1000:.0f} ms, {args.rounds} runs each, interleaved; "
        f"{spans} spans exported",
    )


if __name__ == "__main__":
    main()
