"""Backoff: full jitter under an exponential ceiling; Retry-After as a floor."""

from __future__ import annotations

import email.utils

import pytest

from tasks.backoff import backoff_delay, capped_retry_after, parse_retry_after


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)])
def test_delay_stays_under_the_exponential_ceiling(attempt: int, ceiling: float) -> None:
    delays = [backoff_delay(attempt, base=2.0, cap=60.0) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in delays)
    # Full jitter: the draws spread over the range instead of sitting on the ceiling.
    assert min(delays) < ceiling * 0.2 < ceiling * 0.8 < max(delays)


def test_retry_after_is_a_floor_and_is_capped() -> None:
    assert all(backoff_delay(1, base=0.1, cap=60, retry_after=7) >= 7 for _ in range(100))
    assert backoff_delay(1, base=0.1, cap=30, retry_after=3600) == 30


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), (" 1.5 ", 1.5), ("0", 0.0), ("86400", 86400.0), (None, None)],
)
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 42, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(42.0)


def test_a_past_http_date_means_now() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    "header", ["soon", "nan", "inf", "", "-4", "1e15", "+3", "0x10", "3 s", "Mon, 99 Foo 2099"]
)
def test_malformed_retry_after_is_ignored(header: str) -> None:
    assert parse_retry_after(header) is None


def test_a_far_retry_after_is_capped() -> None:
    far = parse_retry_after("Fri, 01 Jan 2099 00:00:00 GMT")
    assert far is not None
    assert far > 365 * 86400
    assert capped_retry_after(far, 300.0) == 300.0
    assert capped_retry_after(7.0, 300.0) == 7.0
