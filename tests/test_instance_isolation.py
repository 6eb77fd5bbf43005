"""One sick Z-API instance does not starve the others: while instance B answers 503, or hangs
past the client's timeout, the default instance keeps >= 90% of its rate limit; B's jobs wait
(its breaker pauses it instead of burning attempts) and all deliver once B recovers."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from devtools.zapi_sim import Fault, OtherInstance
from tests.bodies import unique_body
from tests.faults import fault_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timing]

B_ID, B_TOKEN, B_CLIENT = "inst-b", "itok-B-SECRET-77ee03", "ctok-B-SECRET-88ff04"
RATE = 10
BREAKER_FAILURES = 5  # the default ZAPI_BREAKER_FAILURES
IN_FLIGHT = 4  # half of the 8 threads, the default share of one instance in a fleet of two
#: The issue's proof: one instance in outage for 60 s.
OUTAGE = 60.0


@pytest.mark.parametrize(
    "fault",
    [Fault(status=503), Fault(status=200, delay=5.0)],  # 5 s > ZAPI_TIMEOUT (3 s): a timeout
    ids=["503s", "hangs"],
)
def test_a_sick_instance_leaves_the_healthy_one_its_rate(tmp_path: Path, fault: Fault) -> None:
    entry = {"instance_id": B_ID, "instance_token": B_TOKEN, "client_token": B_CLIENT}
    with fault_stack(
        tmp_path,
        zapi_instances=json.dumps({"shop-b": entry}),
        zapi_rate_limit=str(RATE),
        zapi_rate_burst="1",
        worker_concurrency="8",
        zapi_retry_backoff="0.5",
        zapi_retry_backoff_max="4",
    ) as stack:
        stack.sim.other_instances[B_ID] = OtherInstance(B_TOKEN, B_CLIENT)
        stack.sim.set_outage(fault, instance_id=B_ID)
        stack.worker()
        task = "zapi.order_status_update"
        b_jobs = [
            stack.producer.send_task(task, args=[unique_body()], kwargs={"instance": "shop-b"}).id
            for _ in range(30)
        ]
        # Enough to keep the healthy instance busy through the outage (and a little after).
        a_count = int(RATE * (OUTAGE + 10))
        a_jobs = [stack.producer.send_task(task, args=[unique_body()]).id for _ in range(a_count)]
        started = time.time()
        time.sleep(OUTAGE)
        stack.sim.set_outage(None, instance_id=B_ID)
        recovered = time.time()
        states = stack.wait_all([*a_jobs, *b_jobs], timeout=180)
        received = stack.sim.requests()

    assert Counter(states.values()) == {"SUCCESS": len(a_jobs) + len(b_jobs)}
    a_times = [r.received_at for r in received if "/fault-instance/" in r.path]
    # The healthy instance, during the outage (its first and last second left out).
    during = [t for t in a_times if started + 1 <= t < recovered - 1]
    assert len(during) >= 0.9 * RATE * (OUTAGE - 2), len(during)
    # The sick one's jobs waited instead of retrying: until the breaker first tripped, at most
    # BREAKER_FAILURES + IN_FLIGHT - 1 sends; then one probe at a time, one per pause (4 s once
    # grown; 0.5, 1, 2 s before: a few more).
    b_during = [r for r in received if B_ID in r.path and r.received_at < recovered]
    assert len(b_during) <= (BREAKER_FAILURES + IN_FLIGHT - 1) + OUTAGE / 4 + 4, len(b_during)
    assert sum(1 for r in received if B_ID in r.path and r.status == 200) >= len(b_jobs)
