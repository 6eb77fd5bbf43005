"""The figures the rate tests and benchmarks judge by."""

from __future__ import annotations

from devtools.metrics import busiest_window, rate_figures


def test_busiest_window_counts_half_open_seconds() -> None:
    assert busiest_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert busiest_window([0.0, 1.0, 2.0]) == 1
    assert busiest_window([]) == 0


def test_rate_figures() -> None:
    received = [(i * 0.1, 200) for i in range(11)] + [(1.05, 429)]
    figures = rate_figures(received)
    assert figures.sends == 12
    assert figures.accepted == 11
    assert figures.refused_429 == 1
    assert round(figures.achieved_rate, 1) == 10.5
    assert figures.busiest_second == 11
