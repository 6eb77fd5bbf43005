"""Figures about what the fake Z-API received: achieved rate, busiest second, refusals.

Shared by the rate-limit tests and the benchmarks so both judge a run the same way.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateFigures:
    sends: int
    accepted: int
    refused_429: int
    duration: float
    achieved_rate: float
    busiest_second: int


def busiest_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most timestamps found in any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + window, lo=i) - i)
    return best


def rate_figures(received: Sequence[tuple[float, int]]) -> RateFigures:
    """Figures from (arrival time, HTTP status) pairs of the requests the fake Z-API got."""
    times = [t for t, _ in received]
    accepted = sum(1 for _, status in received if status == 200)
    refused = sum(1 for _, status in received if status == 429)
    duration = (max(times) - min(times)) if len(times) > 1 else 0.0
    # n sends spaced 1/R apart span (n - 1)/R seconds: that is the rate achieved.
    achieved = (len(times) - 1) / duration if duration > 0 else float("nan")
    return RateFigures(
        sends=len(times),
        accepted=accepted,
        refused_429=refused,
        duration=duration,
        achieved_rate=achieved,
        busiest_second=busiest_window(times),
    )
