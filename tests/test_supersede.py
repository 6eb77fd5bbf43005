"""Latest state wins, one execution at a time (tests/test_execution.py's in-process stack: a
real Redis, Z-API over ``httpx.MockTransport``): an update still waiting when a newer one of its
order and field is in line gives way to it, and nothing else does.

The end-to-end proof through real workers and the fake is tests/test_supersede_e2e.py.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import httpx
import redis
from celery.exceptions import Retry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import SupersededError
from tasks.contract.ordering import (
    order_status_moves_back,
    payment_status_moves_back,
    superseding_states,
)
from tasks.state.supersedes import SupersedeBook
from tests.bodies import DOCS_PAYMENT_BODY, unique_body, unique_key
from tests.test_execution import Stack, make_stack, reply, state

__all__ = ["state"]

UNAVAILABLE = httpx.Response(503, json={"error": "Service Unavailable"})
STATUS, PAYMENT = Endpoint.ORDER_STATUS_UPDATE, Endpoint.ORDER_PAYMENT_UPDATE


def job_of(stack: Stack, endpoint: Endpoint = STATUS) -> Stack:
    """Another job over the same stack (same instance, Redis, Z-API)."""
    return dataclasses.replace(stack, endpoint=endpoint, job_id=unique_key("job"))


class Jobs:
    """Jobs of one order, each run with the headers of its last retry, as Celery would."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.headers: dict[str, dict[str, Any] | None] = {}

    def run(self, job: Stack, body: dict[str, Any], **kwargs: Any) -> Any:
        task, ended = job.run(body, self.headers.get(job.job_id), **kwargs)
        if isinstance(ended, Retry):
            self.headers[job.job_id] = task.retried[-1]["headers"]
        return ended


def status_body(order: dict[str, Any], status: str, **changes: Any) -> dict[str, Any]:
    return {**order, "orderStatus": status, **changes}


def sent_statuses(stack: Stack) -> list[str]:
    return [body["orderStatus"] for body in stack.zapi.received if body.get("orderStatus")]


def outage_then_three(client: redis.Redis, **overrides: Any) -> tuple[Jobs, list[Any], Stack]:
    """processing, shipped, completed of one order while Z-API answers 503 once: the first
    tries and waits, the other two wait behind it; then each runs again, in line order."""
    stack = make_stack(client, [UNAVAILABLE, reply(1), reply(2), reply(3)], **overrides)
    jobs, order = Jobs(stack), unique_body()
    three = [job_of(stack) for _ in range(3)]
    bodies = [status_body(order, s) for s in ("processing", "shipped", "completed")]
    for job, body in zip(three, bodies, strict=True):
        assert isinstance(jobs.run(job, body), Retry)
    ended = [jobs.run(job, body) for job, body in zip(three, bodies, strict=True)]
    return jobs, ended, stack


def test_with_superseding_on_only_the_newest_status_is_sent(state: redis.Redis) -> None:
    _, ended, stack = outage_then_three(state, zapi_supersede=True)
    newest = stack.zapi.received[-1]
    assert sent_statuses(stack) == ["processing", "completed"]  # the 503'd try, then the newest
    assert newest["orderStatus"] == "completed"
    first, second, third = ended
    assert isinstance(first, SupersededError)
    assert isinstance(second, SupersededError)
    assert "superseded by job" in str(first)
    assert "orderStatus completed" in str(first)
    assert first.newer_state == "completed"
    assert third["zaapId"] == "Z1"


def test_the_newer_job_lists_what_it_superseded(state: redis.Redis) -> None:
    stack = make_stack(state, [UNAVAILABLE, reply(1)], zapi_supersede=True)
    jobs, order = Jobs(stack), unique_body()
    older, newer = job_of(stack), job_of(stack)
    jobs.run(older, status_body(order, "shipped", message="Your order left the store"))
    jobs.run(newer, status_body(order, "completed"))
    refused = jobs.run(older, status_body(order, "shipped", message="Your order left the store"))
    assert isinstance(refused, SupersededError)
    assert "message text was not sent" in str(refused)
    noted = SupersedeBook(state, ttl=60).of(newer.job_id)
    assert [(n.job, n.field, n.state, n.message) for n in noted] == [
        (older.job_id, "orderStatus", "shipped", True)
    ]
    assert "with a message text that was not sent" in noted[0].describe()


def test_with_superseding_off_all_three_go_in_order(state: redis.Redis) -> None:
    _, ended, stack = outage_then_three(state)
    assert sent_statuses(stack) == ["processing", "processing", "shipped", "completed"]
    assert all(isinstance(result, dict) for result in ended)


def older_after_newer(state: redis.Redis, setting: bool, kwarg: bool) -> Any:
    """What becomes of an older update (its ``supersede`` kwarg given) retried after a newer
    one of its order entered the line, under ``ZAPI_SUPERSEDE`` = ``setting``."""
    stack = make_stack(state, [UNAVAILABLE, reply(1), reply(2)], zapi_supersede=setting)
    jobs, order = Jobs(stack), unique_body()
    older, newer = job_of(stack), job_of(stack)
    jobs.run(older, status_body(order, "processing"), supersede=kwarg)
    jobs.run(newer, status_body(order, "shipped"))
    return jobs.run(older, status_body(order, "processing"), supersede=kwarg)


def test_the_supersede_kwarg_wins_over_the_setting(state: redis.Redis) -> None:
    assert isinstance(older_after_newer(state, setting=True, kwarg=False), dict)  # sent
    assert isinstance(older_after_newer(state, setting=False, kwarg=True), SupersededError)


def test_a_force_job_is_never_superseded(state: redis.Redis) -> None:
    stack = make_stack(state, [UNAVAILABLE, reply(1), reply(2)], zapi_supersede=True)
    jobs, order = Jobs(stack), unique_body()
    older, newer = job_of(stack), job_of(stack)
    jobs.run(older, status_body(order, "processing"), force=True)
    jobs.run(newer, status_body(order, "shipped"))
    assert isinstance(jobs.run(older, status_body(order, "processing"), force=True), dict)
    assert isinstance(jobs.run(newer, status_body(order, "shipped")), dict)


def test_payment_and_status_do_not_supersede_each_other(state: redis.Redis) -> None:
    stack = make_stack(state, [UNAVAILABLE, reply(1), reply(2)], zapi_supersede=True)
    jobs, order = Jobs(stack), unique_body()
    status, payment = job_of(stack), job_of(stack, PAYMENT)
    paid = {**DOCS_PAYMENT_BODY, **order, "orderStatus": "shipped", "paymentStatus": "paid"}
    jobs.run(status, status_body(order, "shipped"))
    jobs.run(payment, paid)
    assert isinstance(jobs.run(status, status_body(order, "shipped")), dict)
    assert isinstance(jobs.run(payment, paid), dict)


def test_a_newer_update_that_would_move_back_supersedes_nothing(state: redis.Redis) -> None:
    stack = make_stack(state, [UNAVAILABLE, reply(1), reply(2)], zapi_supersede=True)
    jobs, order = Jobs(stack), unique_body()
    older, newer = job_of(stack), job_of(stack)
    jobs.run(older, status_body(order, "shipped"))
    jobs.run(newer, status_body(order, "processing"))
    assert isinstance(jobs.run(older, status_body(order, "shipped")), dict)
    assert type(jobs.run(newer, status_body(order, "processing"))).__name__ == "StaleUpdateError"


def test_a_job_whose_send_may_have_arrived_is_not_superseded(state: redis.Redis) -> None:
    lost = httpx.ReadTimeout("no answer")
    stack = make_stack(state, [lost, reply(1), reply(2)], zapi_supersede=True)
    jobs, order = Jobs(stack), unique_body()
    older, newer = job_of(stack), job_of(stack)
    assert isinstance(jobs.run(older, status_body(order, "processing")), Retry)
    jobs.run(newer, status_body(order, "shipped"))
    result = jobs.run(older, status_body(order, "processing"))
    assert isinstance(result, dict)
    assert result.get("ambiguousAttempts") == 1


STATUSES = ("pending", "processing", "shipped", "completed", "canceled")
PAYMENTS = ("pending", "paid")


def test_superseding_states_never_move_back() -> None:
    for state_ in STATUSES:
        allowed = superseding_states("orderStatus", state_)
        assert state_ in allowed
        assert all(not order_status_moves_back(state_, new) for new in allowed)
        assert all(order_status_moves_back(state_, new) for new in set(STATUSES) - set(allowed))
    for state_ in PAYMENTS:
        allowed = superseding_states("paymentStatus", state_)
        assert all(not payment_status_moves_back(state_, new) for new in allowed)
    assert superseding_states("message", "x") == ()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=7))
def test_superseding_ends_where_sending_all_would(state: redis.Redis, statuses: list[str]) -> None:
    """Any run of status updates waiting behind an outage: with superseding on, the order
    ends in the state it ends in with it off, in at most as many messages, and the last
    message is never one the customer would see moving back."""
    outcomes = {}
    for supersede in (False, True):
        stack = make_stack(state, [UNAVAILABLE, *(reply(n) for n in range(1, 9))])
        jobs, order = Jobs(stack), unique_body()
        line = [(job_of(stack), status_body(order, s)) for s in statuses]
        for job, body in line:
            jobs.run(job, body, supersede=supersede)
        for job, body in line:
            jobs.run(job, body, supersede=supersede)
        outcomes[supersede] = sent_statuses(stack)[1:]  # less the 503'd try
    off, on = outcomes[False], outcomes[True]
    assert on[-1:] == off[-1:]
    assert len(on) <= len(off)
    assert all(not order_status_moves_back(a, b) for a, b in itertools.pairwise(on))
