"""Z-API misbehaving: answers that stall past the timeout, absurd Retry-After values, an outage
longer than the old retry budget. Every job is accounted for (tests/faults.py's Ledger)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devtools.zapi_sim import Fault
from tests.bodies import unique_body
from tests.faults import fault_stack

pytestmark = pytest.mark.e2e


def test_answers_stalled_past_the_timeout_are_resent_and_reported_ambiguous(
    tmp_path: Path,
) -> None:
    """Z-API took the request and answered too late: it may have been delivered. The job is
    retried (the customer may get it twice), and says so in its result."""
    with fault_stack(tmp_path, zapi_timeout="1", zapi_connect_timeout="1") as stack:
        stack.worker()
        bodies = [unique_body() for _ in range(12)]
        stalled = bodies[:4]
        for body in stalled:
            stack.sim.script(body["messageId"], Fault(status=200, delay=2.5, body=None))
        jobs = stack.enqueue(bodies)
        stack.wait_all(jobs, timeout=60)
        ledger = stack.ledger(jobs, bodies)

    ledger.assert_nothing_lost()
    assert len(ledger.delivered) == len(jobs)
    assert ledger.ambiguous == {body["messageId"] for body in stalled}


@pytest.mark.parametrize(
    "retry_after", ["86400", "Fri, 01 Jan 2099 00:00:00 GMT", "1e15"], ids=["a-day", "2099", "1e15"]
)
def test_an_absurd_retry_after_is_capped_not_obeyed(tmp_path: Path, retry_after: str) -> None:
    """One 429 asking for a day (or for ever), then a healthy Z-API: everything is delivered
    within ZAPI_RETRY_BACKOFF_MAX, and the capped wish is in the log."""
    with fault_stack(tmp_path, zapi_retry_backoff_max="3") as stack:
        worker = stack.worker()
        bodies = [unique_body() for _ in range(20)]
        stack.sim.script(
            bodies[0]["messageId"], Fault(status=429, headers={"Retry-After": retry_after})
        )
        started = time.monotonic()
        jobs = stack.enqueue(bodies)
        stack.wait_all(jobs, timeout=60)
        took = time.monotonic() - started
        ledger = stack.ledger(jobs, bodies)
        log = worker.log_text()

    ledger.assert_nothing_lost()
    assert len(ledger.delivered) == len(jobs)
    assert took < 20
    if retry_after == "1e15":
        assert "Retry-After '1e15' ignored" in log
    else:
        assert "waiting ZAPI_RETRY_BACKOFF_MAX (3s)" in log


OUTAGE = 75.0


def test_an_outage_longer_than_the_old_budget_is_ridden_out_on_the_defaults(
    tmp_path: Path,
) -> None:
    """75 s of 503s with the backoff cap at 3 s: the default budget (ZAPI_MAX_ATTEMPTS 100,
    ZAPI_GIVE_UP_AFTER 2 h) keeps every job alive; the old one (6 attempts, about 10 s at this
    cap) dead-lettered them all. Jobs back off, then deliver once, when Z-API is back."""
    with fault_stack(tmp_path, zapi_retry_backoff="0.2", zapi_retry_backoff_max="3") as stack:
        for name in ("ZAPI_MAX_ATTEMPTS", "ZAPI_GIVE_UP_AFTER"):
            stack.env.pop(name, None)
        stack.worker()
        stack.sim.set_outage(Fault(status=503))
        bodies = [unique_body() for _ in range(20)]
        jobs = stack.enqueue(bodies)
        time.sleep(OUTAGE)
        during = len(stack.sim.requests())
        stack.sim.set_outage(None)
        stack.wait_all(jobs, timeout=60)
        ledger = stack.ledger(jobs, bodies)

    ledger.assert_nothing_lost()
    assert len(ledger.delivered) == len(jobs)
    assert ledger.duplicates == {}
    # Backing off (mean wait 1.5 s at the cap), not hammering: ~50 attempts per job, not 750.
    assert during < len(jobs) * OUTAGE / 0.5


def test_a_job_still_failing_after_zapi_give_up_after_is_a_dead_letter(tmp_path: Path) -> None:
    with fault_stack(tmp_path, zapi_give_up_after="4") as stack:
        stack.worker()
        stack.sim.set_outage(Fault(status=503))
        bodies = [unique_body() for _ in range(6)]
        jobs = stack.enqueue(bodies)
        stack.wait_all(jobs, timeout=40)
        ledger = stack.ledger(jobs, bodies)
        errors = {str(stack.producer.AsyncResult(job).result) for job in jobs}

    ledger.assert_nothing_lost()
    assert len(ledger.dead) == len(jobs)
    assert all("(ZAPI_GIVE_UP_AFTER)" in error for error in errors), errors
