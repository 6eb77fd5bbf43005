"""A progress report for long commands: count, rate and time left.

On a terminal it redraws one line (a bar, ``done/total``, rate, ETA) at most ten times a second;
elsewhere (CI logs, ``2> file``) it writes a plain line every ``interval`` seconds and a last
one at the end, so a log shows how it went without carriage returns or a wall of updates.
"""

from __future__ import annotations

import time
from typing import TextIO

BAR_WIDTH = 24


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Reports ``advance``-d work out of ``total`` to ``stream`` (stderr, usually)."""

    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO,
        *,
        interval: float = 5.0,
        tty: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._interval = 0.1 if self._tty else interval
        self._started = time.monotonic()
        self._shown_at = self._started

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._shown_at >= self._interval:
            self._shown_at = now
            self._show(now)

    def finish(self) -> None:
        self._show(time.monotonic())
        if self._tty:
            self._stream.write("\n")
        self._stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-6)
        rate = self.done / elapsed
        left = self.total - self.done
        eta = duration(left / rate) if rate > 0 else "?"
        share = self.done / self.total if self.total else 1.0
        figures = f"{self.done:,}/{self.total:,} ({share:.0%}), {rate:,.0f}/s"
        figures += f", ETA {eta}" if left else f", in {duration(elapsed)}"
        if not self._tty:
            return f"{self.label}: {figures}"
        filled = round(share * BAR_WIDTH)
        return f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {figures}"

    def _show(self, now: float) -> None:
        if self._tty:
            self._stream.write("\r\x1b[2K" + self.line(now))
        else:
            self._stream.write(self.line(now) + "\n")
        self._stream.flush()
