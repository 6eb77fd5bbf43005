"""Backoff: full jitter under an exponential ceiling; Retry-After as a floor. One function,
and each of its users seen drawing from it (the task's own retries, order look-ups and
put-backs: tests/test_execution.py)."""

from __future__ import annotations

import email.utils
import types
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from tasks.backoff import (
    RedisBackoff,
    backoff,
    backoff_delay,
    capped_retry_after,
    parse_retry_after,
)
from tasks.state.store import RECONNECT_BACKOFF, connect
from worker.transport import FETCH_BACKOFF, Channel

seconds = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(attempt=st.integers(min_value=-(2**70), max_value=2**70), base=seconds, cap=seconds)
def test_backoff_stays_within_zero_and_its_ceiling(attempt: int, base: float, cap: float) -> None:
    wait = backoff(attempt, base=base, cap=cap)
    assert 0.0 <= wait <= max(cap, 0.0)
    assert wait <= max(base, 0.0) * 2.0 ** min(max(attempt, 1) - 1, 1000)


def ceilings(base: float, cap: float, n: int) -> list[float]:
    return [min(cap, base * 2**i) for i in range(n)]


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


def test_the_state_stores_reconnections_draw_from_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py's retries of a client from ``connect``: each wait under its doubling ceiling
    (redis-py counts failures from 1), jittered."""
    waits: list[float] = []
    monkeypatch.setattr("redis.retry.sleep", waits.append)
    client = connect("redis://127.0.0.1:1/0", retries=8)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    base, cap = RECONNECT_BACKOFF
    assert len(waits) == 8
    assert all(0 <= w <= c for w, c in zip(waits, ceilings(2 * base, cap, 8), strict=True))
    assert RedisBackoff(base=base, cap=cap).compute(1) <= 2 * base


def test_the_transports_fetch_pause_draws_from_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fetch loop's pause after each Redis error of an episode."""
    now = [100.0]
    monkeypatch.setattr("worker.fetch_errors.monotonic", lambda: now[0])
    pauses: list[float] = []
    for _ in range(200):
        channel: Any = types.SimpleNamespace(_healthy_since=None, _trouble=None)
        for _ in range(6):
            Channel.trouble(channel, "a fetch", redis.ResponseError("OOM"))
            pauses.append(channel._fetch_paused_until - now[0])
    base, cap = FETCH_BACKOFF
    limits = ceilings(base, cap, 6) * 200
    assert all(0 <= p <= c for p, c in zip(pauses, limits, strict=True))
    # Full jitter: the pauses spread under the ceilings instead of sitting on them.
    assert sum(pauses) < 0.7 * sum(limits)
