"""One order, one timeline, end to end: 3 workers, a fake Z-API with random latency and 30% of
random 500s, 200 orders whose five updates are enqueued back to back."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tasks.contract.endpoints import Endpoint
from tasks.contract.ordering import order_status_moves_back, payment_status_moves_back
from tasks.contract.producer import Producer
from tests.bodies import unique_body
from tests.faults import FaultStack, fault_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ORDERS = 200
#: Each order's life, as a shop enqueues it: (task, orderStatus, paymentStatus).
LIFE = [
    (Endpoint.ORDER_STATUS_UPDATE, "pending", "pending"),
    (Endpoint.ORDER_STATUS_UPDATE, "processing", "pending"),
    (Endpoint.ORDER_STATUS_UPDATE, "shipped", "pending"),
    (Endpoint.ORDER_STATUS_UPDATE, "completed", "pending"),
    (Endpoint.ORDER_PAYMENT_UPDATE, "completed", "paid"),
]
TASKS = {
    Endpoint.ORDER_STATUS_UPDATE: "zapi.order_status_update",
    Endpoint.ORDER_PAYMENT_UPDATE: "zapi.order_payment_update",
}
SETTINGS = {"zapi_retry_backoff": "0.05", "zapi_retry_backoff_max": "0.5"}


def lives() -> list[tuple[Endpoint, dict[str, Any]]]:
    """Every order's five updates, order after order, each order's back to back."""
    jobs = []
    for n in range(ORDERS):
        order = f"ORDER{n:04d}"
        for endpoint, status, payment in LIFE:
            body = unique_body(orderStatus=status, paymentStatus=payment)
            body["orderRequestId"] = order
            body["phone"] = f"5511988{n:06d}"
            jobs.append((endpoint, body))
    return jobs


def start(stack: FaultStack) -> None:
    stack.sim.latency, stack.sim.latency_jitter, stack.sim.error_rate = 0.0, 0.1, 0.3
    for _ in range(3):
        stack.worker(worker_concurrency="16")


def timelines(stack: FaultStack) -> dict[str, list[tuple[str, str, str]]]:
    """Per order, the (orderStatus, paymentStatus, messageId) Z-API accepted, in time order."""
    accepted = sorted(
        (r for r in stack.sim.requests() if r.status == 200), key=lambda r: r.received_at
    )
    seen: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for request in accepted:
        body = request.json
        seen[body["orderRequestId"]].append(
            (body["orderStatus"], body["paymentStatus"], body["messageId"])
        )
    return seen


def assert_never_backward(timeline: list[tuple[str, str, str]]) -> None:
    for (status, payment, _), (later_status, later_payment, _) in itertools.pairwise(timeline):
        assert not order_status_moves_back(status, later_status), timeline
        assert not payment_status_moves_back(payment, later_payment), timeline


def outcomes(stack: FaultStack, jobs: list[str]) -> dict[str, str]:
    """Each job's end: SUCCESS, or the name of its error."""
    ended = {}
    for job in jobs:
        result = stack.producer.AsyncResult(job)
        ended[job] = "SUCCESS" if result.state == "SUCCESS" else type(result.result).__name__
    return ended


def test_bare_send_task_never_goes_backward_and_ends_at_the_last_update(tmp_path: Path) -> None:
    """Without a sequence, queue order as the workers receive it: an update that would move its
    order back is not sent (StaleUpdateError); the last enqueued always gets through."""
    with fault_stack(tmp_path, **SETTINGS) as stack:
        start(stack)
        work = lives()
        jobs = [stack.producer.send_task(TASKS[e], args=[body]).id for e, body in work]
        states = stack.wait_all(jobs, timeout=300)
        ended = outcomes(stack, jobs)
        seen = timelines(stack)

    assert set(states.values()) <= {"SUCCESS", "FAILURE"}
    assert set(ended.values()) <= {"SUCCESS", "StaleUpdateError"}, set(ended.values())
    accepted = [message for timeline in seen.values() for *_, message in timeline]
    assert len(accepted) == len(set(accepted)), "a request was accepted twice"
    assert len(seen) == ORDERS
    for timeline in seen.values():
        assert_never_backward(timeline)
        assert timeline[-1][:2] == ("completed", "paid")


def run_through_the_producer(stack: FaultStack) -> tuple[list[dict[str, Any]], list[str]]:
    producer = Producer(
        broker_url=stack.env["CELERY_BROKER_URL"],
        result_backend=stack.env["CELERY_RESULT_BACKEND"],
        instance_id=stack.sim.instance_id,
    )
    work = lives()
    try:
        jobs = [producer.enqueue(endpoint, body) for endpoint, body in work]
    finally:
        producer.close()
    return [body for _, body in work], jobs


def assert_exactly_as_enqueued(
    seen: dict[str, list[tuple[str, str, str]]], bodies: list[dict[str, Any]], ambiguous: set[str]
) -> None:
    """Each order's accepted updates are its enqueued ones, in enqueue order; a repeat only of
    a send reported ambiguous (a worker killed mid-send)."""
    enqueued: dict[str, list[str]] = defaultdict(list)
    for body in bodies:
        enqueued[body["orderRequestId"]].append(body["messageId"])
    for order, messages in enqueued.items():
        received = [message for *_, message in seen[order]]
        repeats = [b for a, b in itertools.pairwise(received) if a == b]
        assert set(repeats) <= ambiguous, (order, received)
        assert [m for m, _ in itertools.groupby(received)] == messages, (order, received)


def test_the_producers_sequence_is_kept_exactly(tmp_path: Path) -> None:
    with fault_stack(tmp_path, **SETTINGS) as stack:
        start(stack)
        bodies, jobs = run_through_the_producer(stack)
        stack.wait_all(jobs, timeout=300)
        ledger = stack.ledger(jobs, bodies)
        seen = timelines(stack)

    ledger.assert_nothing_lost()
    assert len(ledger.delivered) == len(jobs)
    assert ledger.duplicates == {}
    assert_exactly_as_enqueued(seen, bodies, set())


def test_the_producers_sequence_is_kept_when_a_worker_is_killed_mid_run(tmp_path: Path) -> None:
    """A killed worker's jobs come back after the lease; the orders they head wait that long,
    no more, and go on in order."""
    with fault_stack(tmp_path, **SETTINGS) as stack:
        start(stack)
        bodies, jobs = run_through_the_producer(stack)
        stack.wait_for_requests(300, timeout=60)
        victim = stack.workers.pop(0)
        victim.kill()
        killed_at = time.monotonic()
        stack.wait_all(jobs, timeout=300)
        ledger = stack.ledger(jobs, bodies)
        seen = timelines(stack)

    ledger.assert_nothing_lost()
    assert len(ledger.delivered) == len(jobs)
    assert_exactly_as_enqueued(seen, bodies, ledger.ambiguous)
    assert max(stack.finished_at.values()) - killed_at < 120
