"""Delivery guarantees under faults, with real processes: nothing lost, duplicates bounded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devtools.zapi_sim import Fault
from tests.bodies import unique_body
from tests.faults import VISIBILITY_TIMEOUT, WORKER_LEASE, fault_stack

pytestmark = pytest.mark.e2e


def test_sigkill_mid_run_loses_no_job(tmp_path: Path) -> None:
    """Every job a SIGKILLed worker had taken, or was taking, is finished by another one,
    once its lease ran out: long before the visibility timeout (worker/transport.py).

    tests/test_transport.py kills a worker at the one moment kombu's own transport loses a job.
    """
    with fault_stack(tmp_path) as stack:
        stack.sim.latency = 0.3
        victim = stack.worker(worker_concurrency="8")
        bodies = [unique_body() for _ in range(40)]
        jobs = stack.enqueue(bodies, until_requests=12)
        victim.kill()
        stack.workers.remove(victim)  # killed on purpose: not an exit to account for
        killed_at = time.monotonic()
        stack.worker()
        states = stack.wait_all(jobs, timeout=WORKER_LEASE + 40)
        ledger = stack.ledger(jobs, bodies)

        assert [job for job in jobs if states.get(job) != "SUCCESS"] == []
        # Only sends cut off between the request and the recorded reply may repeat, and each
        # such job says so (ambiguousAttempts) instead of hiding it.
        ledger.assert_nothing_lost()
        # Bounded: the lease, one sweep, a worker's start, then the sends themselves.
        recovered_in = max(stack.finished_at.values()) - killed_at
        assert recovered_in < WORKER_LEASE + 20 < VISIBILITY_TIMEOUT


def test_redis_restart_mid_run_loses_no_job(tmp_path: Path) -> None:
    with fault_stack(tmp_path) as stack:
        stack.sim.latency = 0.2
        stack.worker(worker_concurrency="4")
        bodies = [unique_body() for _ in range(30)]
        jobs = stack.enqueue(bodies, until_requests=6)
        stack.redis.stop()  # SIGTERM: Redis writes its AOF, as `docker compose restart` does
        time.sleep(1.0)
        stack.redis.start()
        states = stack.wait_all(jobs, timeout=60)

        assert list(states.values()) == ["SUCCESS"] * len(jobs)
        delivered = stack.delivered_per_message()
        assert {b["messageId"] for b in bodies} <= set(delivered)


def test_z_api_outage_backs_off_then_delivers_everything(tmp_path: Path) -> None:
    settings = {"zapi_max_attempts": "10", "zapi_retry_backoff": "0.25"}
    with fault_stack(tmp_path, zapi_retry_backoff_max="3", **settings) as stack:
        stack.worker()
        stack.sim.set_outage(Fault(status=503))
        bodies = [unique_body() for _ in range(10)]
        jobs = stack.enqueue(bodies)
        time.sleep(2.0)
        during_outage = len(stack.sim.requests())
        stack.sim.set_outage(None)
        states = stack.wait_all(jobs, timeout=60)

        assert list(states.values()) == ["SUCCESS"] * len(jobs)
        assert set(stack.delivered_per_message().values()) == {1}
        # Backing off: 2 s of outage cost a handful of attempts per job, not a tight loop (the
        # breaker trips after ZAPI_BREAKER_FAILURES, 5, then probes one send at a time).
        assert 5 <= during_outage <= len(bodies) * 6
        attempts = [len(stack.sim.requests(b["messageId"])) for b in bodies]
        assert max(attempts) <= 10


def test_sigterm_finishes_in_flight_sends_and_leaves_the_rest_queued(tmp_path: Path) -> None:
    with fault_stack(tmp_path) as stack:
        stack.sim.latency = 1.5
        first = stack.worker(worker_concurrency="4")
        bodies = [unique_body() for _ in range(12)]
        jobs = stack.enqueue(bodies, until_requests=4)
        assert first.stop(timeout=30) == 0  # warm shutdown, within the grace period
        sent_before_stop = {r.message_id for r in stack.sim.requests()}
        finished = stack.wait_all(jobs, timeout=0.5)

        assert len(sent_before_stop) == 4
        # Every send in flight at SIGTERM completed and its result was stored.
        assert sum(state == "SUCCESS" for state in finished.values()) == 4
        stack.worker()
        states = stack.wait_all(jobs, timeout=30)
        assert list(states.values()) == ["SUCCESS"] * len(jobs)
        assert set(stack.delivered_per_message().values()) == {1}


def test_a_worker_finishing_a_long_execution_at_shutdown_keeps_its_jobs(tmp_path: Path) -> None:
    """Its event loop has stopped, yet its lease lives on (worker/transport.py's LeaseKeeper):
    no other worker takes over a job still waiting for its slot, two and a half leases long."""
    slow_rate = {"zapi_rate_limit": "0.1", "zapi_rate_burst": "1", "zapi_rate_max_wait": "10"}
    with fault_stack(tmp_path, **slow_rate) as stack:
        leaving = stack.worker(worker_concurrency="2")
        bodies = [unique_body(), unique_body()]
        # The first is sent; the second sleeps 10 s for its slot.
        jobs = stack.enqueue(bodies, until_requests=1)
        staying = stack.worker()
        assert leaving.stop(timeout=60) == 0  # waits for the slot and the send
        states = stack.wait_all(jobs, timeout=10)

        assert list(states.values()) == ["SUCCESS", "SUCCESS"]
        assert set(stack.delivered_per_message().values()) == {1}
        assert "took over" not in staying.log_text()
