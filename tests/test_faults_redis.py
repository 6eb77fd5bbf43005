"""Redis misbehaving under a running fleet: out of memory, connections killed, a worker frozen
past its lease. Each test accounts for every job (tests/faults.py's Ledger): delivered, dead
letter or still queued, never lost; sent twice only when reported ambiguous; no worker exits."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.bodies import unique_body
from tests.faults import WORKER_LEASE, FaultStack, fault_stack

#: Past each test's own waits (wait_all's up to 150 s), so that a job that never ends is
#: reported by the ledger, with the workers' logs, rather than cut short by pytest-timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def bodies_for(count: int) -> list[dict[str, Any]]:
    """Bodies with their own phones, so that recipient pacing never serialises them."""
    return [unique_body(phone=f"5511977{n:06d}") for n in range(count)]


def two_workers_sending(
    stack: FaultStack, count: int, *, latency: float, sent: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """``count`` updates on their way through two workers, to a Z-API answering in ``latency``
    seconds: the bodies and their jobs, once ``sent`` requests have reached it."""
    stack.sim.latency = latency
    stack.worker()
    stack.worker()
    bodies = bodies_for(count)
    return bodies, stack.enqueue(bodies, until_requests=sent)


def test_redis_out_of_memory_for_a_while_loses_nothing_and_stops_no_worker(
    tmp_path: Path,
) -> None:
    """``maxmemory 1`` with ``noeviction``: every write refused (fetch, claim, rate slot,
    idempotency claim, reply, pacing, retry publish, result), for a few seconds, mid-run."""
    with fault_stack(tmp_path, zapi_recipient_interval="0.2") as stack:
        bodies, jobs = two_workers_sending(stack, 40, latency=0.3, sent=8)
        admin = stack.redis.client()
        admin.config_set("maxmemory", 1)
        time.sleep(8)
        admin.config_set("maxmemory", 0)
        stack.wait_all(jobs, timeout=150)
        ledger = stack.ledger(jobs, bodies)
        logs = "".join(worker.log_text() for worker in stack.workers)

    ledger.assert_nothing_lost()
    assert len(ledger.delivered) == len(jobs)
    assert "(OOM: " in logs  # the pressure was felt (the refusal's code), and ridden out


def test_connections_killed_in_a_loop_lose_nothing_and_stop_no_worker(tmp_path: Path) -> None:
    with fault_stack(tmp_path) as stack:
        bodies, jobs = two_workers_sending(stack, 60, latency=0.2, sent=6)
        admin = stack.redis.client()
        stop = threading.Event()

        def kill_connections() -> None:
            while not stop.wait(0.3):
                admin.client_kill_filter(_type="normal", skipme=True)

        killer = threading.Thread(target=kill_connections, daemon=True)
        killer.start()
        time.sleep(10)
        stop.set()
        killer.join()
        stack.wait_all(jobs, timeout=150)
        ledger = stack.ledger(jobs, bodies)

    ledger.assert_nothing_lost()
    assert len(ledger.delivered) == len(jobs)


def test_a_worker_frozen_past_its_lease_then_resumed_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    """SIGSTOP (a paused VM, a stalled host) longer than the lease and than a request's claim:
    the other worker takes the jobs over; the frozen one, resumed, cannot ack or re-queue
    them any more (worker/transport.py) and carries on."""
    with fault_stack(tmp_path) as stack:
        stack.sim.latency = 1.0
        frozen = stack.worker(worker_concurrency="4")
        bodies = bodies_for(24)
        jobs = stack.enqueue(bodies, until_requests=4)
        frozen.freeze()  # with its four sends in flight: nobody else has started yet
        frozen_at = time.monotonic()
        other = stack.worker()
        time.sleep(max(0.0, WORKER_LEASE * 2 + 4 - (time.monotonic() - frozen_at)))
        frozen.thaw()
        stack.wait_all(jobs, timeout=120)
        ledger = stack.ledger(jobs, bodies)
        took_over = "took over" in other.log_text()

    ledger.assert_nothing_lost()
    assert len(ledger.delivered) == len(jobs)
    assert took_over


def test_a_redis_outage_longer_than_the_lease_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    """Redis down for 30 s (many leases, longer than the state client's own retries), jobs in
    flight: workers reconnect by themselves, replies wait to be recorded, and no lease looks
    expired to a worker that has not renewed its own yet."""
    with fault_stack(tmp_path) as stack:
        bodies, jobs = two_workers_sending(stack, 40, latency=0.5, sent=8)
        stack.redis.stop()  # SIGTERM: the AOF is written, as a restart would
        time.sleep(30)
        stack.redis.start()
        stack.wait_all(jobs, timeout=150)
        ledger = stack.ledger(jobs, bodies)

    ledger.assert_nothing_lost()
    assert len(ledger.delivered) == len(jobs)
