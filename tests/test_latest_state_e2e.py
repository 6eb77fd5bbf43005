"""Latest state wins, through a real worker and the fake Z-API: what the customer's phone gets
(the fake's ``fired``: sent at once, or fired from Z-API's own queue on reconnect).

* an order's ``processing``, ``shipped``, ``completed`` during a Z-API outage: only
  ``completed`` with superseding on (the other two end in SupersededError naming it), all three
  in order with it off;
* a phone that goes offline unnoticed while two updates are accepted into Z-API's queue, then
  its DisconnectedCallback, a third update (held on our side), the reconnect: only the newest
  fires (on), or all three in order (off); never one that moves the order back.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

from config.settings import load_settings
from devtools.zapi_sim import Fault
from tasks.contract.ordering import order_status_moves_back
from tasks.inbox import Inbox
from tasks.state.deliveries import DeliveryBook
from tests.bodies import unique_body
from tests.cli import health_report, run_cli
from tests.faults import FaultStack, fault_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TASK = "zapi.order_status_update"
STATES = ("processing", "shipped", "completed")


def connection(instance_id: str, connected: bool) -> dict[str, object]:
    kind = "ConnectedCallback" if connected else "DisconnectedCallback"
    return {"type": kind, "instanceId": instance_id, "momment": int(time.time() * 1000)}


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultStack]:
    settings = {
        "zapi_max_attempts": "60",
        "zapi_status_poll_interval": "0",  # the phone goes offline unnoticed until its callback
        "zapi_queue_reconcile_interval": "0.5",
    }
    with fault_stack(tmp_path, **settings) as made:
        for name, value in made.env.items():
            monkeypatch.setenv(name, value)
        yield made


def fired_states(stack: FaultStack, order: str) -> list[str]:
    return [
        f.body["orderStatus"] for f in stack.sim.fired() if f.body.get("orderRequestId") == order
    ]


def wait_fired(stack: FaultStack, order: str, count: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(fired_states(stack, order)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # nothing more may fire
    return fired_states(stack, order)


def send(stack: FaultStack, body: dict[str, Any], supersede: bool) -> AsyncResult[Any]:
    return stack.producer.send_task(TASK, args=[body], kwargs={"supersede": supersede})


def never_back(states: list[str]) -> bool:
    return all(not order_status_moves_back(a, b) for a, b in itertools.pairwise(states))


@pytest.mark.parametrize("supersede", [True, False], ids=["on", "off"])
def test_updates_waiting_out_an_outage(stack: FaultStack, supersede: bool) -> None:
    stack.worker()
    stack.sim.set_outage(Fault(503))
    order = unique_body()
    jobs = []
    for state in STATES:
        jobs.append(send(stack, {**order, "orderStatus": state}, supersede))
        time.sleep(0.3)  # each in its turn, as a shop's updates come
    stack.wait_for_requests(2)
    time.sleep(2)  # the later two run and wait in the order's line
    stack.sim.set_outage(None)
    results = [job.get(timeout=60, propagate=False) for job in jobs]

    fired = wait_fired(stack, order["orderRequestId"], 1 if supersede else 3)
    if supersede:
        assert fired == ["completed"]
        # Each gave way as soon as a newer one stood behind it: processing to shipped (or to
        # completed, had it come first), shipped to completed.
        first, second = (str(older) for older in results[:2])
        assert type(results[0]).__name__ == type(results[1]).__name__ == "SupersededError"
        assert f"superseded by job {jobs[1].id} (orderStatus shipped)" in first or (
            f"superseded by job {jobs[2].id} (orderStatus completed)" in first
        )
        assert f"superseded by job {jobs[2].id} (orderStatus completed)" in second
        newest = json.loads(run_cli(stack.env, "status", jobs[2].id, "--json").stdout)
        assert jobs[1].id in {entry["job"] for entry in newest["superseded"]}
        assert results[2]["zaapId"]
    else:
        assert fired == list(STATES)
        assert all(isinstance(result, dict) for result in results)


@pytest.mark.parametrize("supersede", [True, False], ids=["on", "off"])
def test_zapi_queue_of_a_phone_gone_offline(stack: FaultStack, supersede: bool) -> None:
    worker = stack.worker()
    instance = stack.sim.instance_id
    inbox = Inbox(stack.redis.client(), load_settings())
    order = unique_body()
    stack.sim.set_connected(False)  # nobody knows yet
    accepted = [send(stack, {**order, "orderStatus": s}, supersede) for s in STATES[:2]]
    replies = [job.get(timeout=30) for job in accepted]  # both accepted into Z-API's queue
    assert len(stack.sim.queued()) == 2

    assert inbox.take(connection(instance, connected=False)).outcome == "stored"
    held = send(stack, {**order, "orderStatus": STATES[2]}, supersede)
    time.sleep(3)  # held on our side; the reconciler passes
    assert not fired_states(stack, order["orderRequestId"])
    last_pass = health_report(stack.env)["instances"]["default"]["zapi_queue"]
    assert last_pass["ours"] == (0 if supersede else 2)  # what the last pass left there

    stack.sim.set_connected(True)  # Z-API fires what is left of its queue
    assert inbox.take(connection(instance, connected=True)).outcome == "stored"
    assert held.get(timeout=30)["zaapId"]
    fired = wait_fired(stack, order["orderRequestId"], 1 if supersede else 3)

    assert never_back(fired)
    deliveries = DeliveryBook(stack.redis.client(), instance_id=instance, ttl=3600)
    states = [deliveries.get(reply["messageId"]) for reply in replies]
    if supersede:
        assert fired == ["completed"]
        assert [s.state for s in states if s] == ["withdrawn", "withdrawn"]
        assert states[1] is not None
        shown = json.loads(run_cli(stack.env, "status", accepted[1].id, "--json").stdout)
        assert shown["delivery"]["state"] == "withdrawn"
        assert shown["delivery"]["withdrawn_by"] == held.id
        assert states[1].withdrawn_by == held.id
        log = worker.log_text()
        assert "withdrew" in log
        assert "superseded" in log
    else:
        assert fired == list(STATES)
        assert all(s is not None and s.state != "withdrawn" for s in states)
