"""The CLI's progress report: figures a person can act on, on a terminal and in a log."""

from __future__ import annotations

import io
import re

import pytest

from worker.cli.progress import Progress, duration


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (42.4, "42s"), (185, "3m05s"), (3720, "1h02m")]
)
def test_durations_are_short(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_off_a_terminal_it_writes_plain_periodic_lines_with_count_rate_and_eta() -> None:
    stream = io.StringIO()
    progress = Progress("enqueueing", 1000, stream, interval=0.0, tty=False)
    progress.advance(250)
    progress.advance(250)
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"enqueueing: 250/1,000 \(25%\), [\d,]+/s, ETA \d+s", lines[0])
    assert re.fullmatch(r"enqueueing: 500/1,000 \(50%\), [\d,]+/s, ETA \d+s", lines[1])
    assert "\r" not in stream.getvalue()


def test_off_a_terminal_it_stays_quiet_between_intervals() -> None:
    stream = io.StringIO()
    progress = Progress("enqueueing", 100, stream, interval=60.0, tty=False)
    for _ in range(100):
        progress.advance(1)
    assert stream.getvalue() == ""
    progress.finish()
    assert re.fullmatch(r"enqueueing: 100/100 \(100%\), [\d,]+/s, in \d+s\n", stream.getvalue())


def test_on_a_terminal_it_redraws_one_line_with_a_bar() -> None:
    stream = io.StringIO()
    progress = Progress("enqueueing", 4, stream, tty=True)
    progress._interval = 0.0  # every update drawn, for the test
    progress.advance(1)
    progress.finish()
    drawn = stream.getvalue()
    assert drawn.startswith("\r\x1b[2Kenqueueing [######..................] 1/4 (25%)")
    assert re.search(r"1/4 \(25%\), [\d,]+/s, ETA \d+s\n$", drawn)  # the last draw, kept
    assert drawn.count("\r") == 2
