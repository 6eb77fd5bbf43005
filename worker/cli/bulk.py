"""``zapi-queue enqueue --file``: many bodies, one per line, followed by line and job id.

Each non-blank line gets one JSON Lines record on ``--out`` (default stdout), in line order:
``{"line": 3, "job_id": "..."}`` or ``{"line": 4, "rejected": "<reason>"}``, so a bulk job can
be followed with ``zapi-queue status`` and its refusals fixed by line. stderr gets the progress
and a summary in which identical reasons are told once, with their count and first lines:
20,000 bad lines make a few lines of output, not 20,000.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TextIO

from tasks.contract.endpoints import Endpoint
from tasks.contract.producer import Producer
from worker.cli.progress import Progress

CHUNK = 200
#: Line numbers shown per reason; the records on --out have them all.
FIRST_LINES = 5


@dataclass
class BulkReport:
    """What became of each line: job ids and refusals, by line number."""

    enqueued: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        lines = sorted({*self.enqueued, *self.rejected})
        return [
            {"line": n, "job_id": self.enqueued[n]}
            if n in self.enqueued
            else {"line": n, "rejected": self.rejected[n]}
            for n in lines
        ]

    def reasons(self) -> list[tuple[str, list[int]]]:
        """Each distinct reason with its lines, the most frequent first."""
        grouped: dict[str, list[int]] = {}
        for number in sorted(self.rejected):
            grouped.setdefault(self.rejected[number], []).append(number)
        return sorted(grouped.items(), key=lambda item: (-len(item[1]), item[1][0]))

    def summary(self, took: float) -> list[str]:
        rate = len(self.enqueued) / took if took > 0 else 0.0
        lines = [
            f"enqueued {len(self.enqueued):,}, rejected {len(self.rejected):,} "
            f"in {took:.1f}s ({rate:,.0f} jobs/s)"
        ]
        for reason, numbers in self.reasons():
            shown = ", ".join(str(n) for n in numbers[:FIRST_LINES])
            more = ", ..." if len(numbers) > FIRST_LINES else ""
            times = f"{len(numbers):,} lines" if len(numbers) > 1 else "line"
            lines.append(f"  {times} {shown}{more}: {reason}")
        return lines


def enqueue_lines(
    producer: Producer,
    endpoint: Endpoint,
    source: TextIO,
    progress_stream: TextIO,
    instance: str | None = None,
) -> BulkReport:
    """Validate and enqueue every non-blank line of ``source``, ``CHUNK`` at a time."""
    numbered = [(n, line) for n, line in enumerate(source.read().splitlines(), 1) if line.strip()]
    report = BulkReport()
    progress = Progress("enqueueing", len(numbered), progress_stream)
    for start in range(0, len(numbered), CHUNK):
        chunk = numbered[start : start + CHUNK]
        parsed: list[tuple[int, Any]] = []
        for number, line in chunk:
            try:
                parsed.append((number, json.loads(line)))
            except (ValueError, RecursionError) as exc:
                reason = getattr(exc, "msg", "nested too deeply")
                report.rejected[number] = f"not valid JSON: {reason}"
        outcome = producer.enqueue_many(endpoint, [body for _, body in parsed], instance=instance)
        refused = dict(outcome.rejected)
        for index, (number, _) in enumerate(parsed):
            if index in refused:
                report.rejected[number] = refused[index]
        accepted = [number for index, (number, _) in enumerate(parsed) if index not in refused]
        report.enqueued.update(zip(accepted, outcome.job_ids, strict=True))
        progress.advance(len(chunk))
    progress.finish()
    return report
