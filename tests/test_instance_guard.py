"""The per-process breaker (tasks/instance_guard.py): trips after N failures in a row, and once
tripped, the first failed probe (a send that left after the trip) trips it again at once."""

from __future__ import annotations

import time

from tasks.instance_guard import InstanceGuard


def test_it_trips_after_that_many_failures_in_a_row() -> None:
    guard = InstanceGuard(capacity=4, trip_after=3)
    sent = time.perf_counter()
    assert [guard.failed(sent) for _ in range(3)] == [False, False, True]
    guard.succeeded()
    assert [guard.failed(sent) for _ in range(2)] == [False, False]
    guard.succeeded()  # a success in between: the count starts again
    assert [guard.failed(sent) for _ in range(3)] == [False, False, True]


def test_a_failed_probe_trips_again_at_once() -> None:
    guard = InstanceGuard(capacity=4, trip_after=3)
    before = time.perf_counter()
    assert [guard.failed(before) for _ in range(3)] == [False, False, True]
    # A send already on its way when it tripped is an ordinary failure...
    assert guard.failed(before) is False
    # ...a send that left after the trip is a probe: its failure trips again.
    assert guard.failed(time.perf_counter()) is True
    assert guard.failed(time.perf_counter()) is True
    guard.succeeded()  # a probe that succeeded closes it
    assert guard.failed(time.perf_counter()) is False


def test_zero_turns_the_breaker_off() -> None:
    guard = InstanceGuard(capacity=1, trip_after=0)
    assert not any(guard.failed(time.perf_counter()) for _ in range(100))


def test_in_flight_sends_are_capped_and_one_at_a_time_while_probing() -> None:
    guard = InstanceGuard(capacity=3, trip_after=1)
    assert [guard.try_enter() for _ in range(4)] == [True, True, True, False]
    assert guard.busy_reason() == "3 sends to it in flight here"
    assert guard.failed(time.perf_counter()) is True  # tripped: probing from now on
    for _ in range(3):
        guard.leave()
    assert [guard.try_enter(), guard.try_enter()] == [True, False]
    assert "one probe at a time" in guard.busy_reason()
    guard.leave()
    guard.succeeded()
    assert [guard.try_enter() for _ in range(4)] == [True, True, True, False]
