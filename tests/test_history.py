"""Each job's story (tasks/state/history.py), written as it happens: in-process executions over a
real Redis (tests/test_execution.py's stack), and Z-API's callbacks applied to its message."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import redis
from celery.exceptions import Retry

from tasks.contract.ordering import order_keys, register_in_line
from tasks.state.deliveries import DeliveryBook
from tasks.state.history import JobHistory, history_key
from tasks.state.keys import HISTORY_MAX
from tests.bodies import unique_body
from tests.test_execution import make_stack, reply, run_until_done, state
from tests.test_supersede import Jobs, job_of, status_body

__all__ = ["state"]

UNAVAILABLE = httpx.Response(503, json={"error": "Service Unavailable"})


def test_a_retried_then_delivered_job_tells_each_attempt_with_zapis_ids(state: redis.Redis) -> None:
    stack = make_stack(state, [UNAVAILABLE, reply(7)])
    body = unique_body()
    _, result = run_until_done(stack, body)
    assert isinstance(result, dict)
    history = JobHistory(state, ttl=60)
    story = history.of(stack.job_id)
    assert (story.task, story.order) == ("zapi.order_status_update", body["orderRequestId"])
    instance_id = stack.at.instance.instance_id
    assert history.jobs_of(instance_id, body["orderRequestId"]) == [stack.job_id]
    steps = story.steps
    assert [s.kind for s in steps] == ["retry", "delivered"]
    retry, delivered = steps
    assert (retry.fields["status"], retry.fields["attempt"]) == (503, 1)
    assert "Z-API is unavailable" in retry.fields["detail"]
    assert delivered.fields["zaapId"] == "Z7"
    assert delivered.fields["messageId"] == "M7"
    assert delivered.fields["attempt"] == 2
    assert delivered.fields["ms"] >= 0
    assert retry.at <= delivered.at
    assert 0 < state.ttl(history_key(stack.job_id)) <= stack.deps.settings.celery_result_expires


def test_a_waiting_job_tells_its_wait_once_however_often_it_looks(state: redis.Redis) -> None:
    stack = make_stack(state, [UNAVAILABLE])
    jobs, order = Jobs(stack), unique_body()
    head, behind = job_of(stack), job_of(stack)
    jobs.run(head, status_body(order, "processing"))
    for _ in range(4):
        assert isinstance(jobs.run(behind, status_body(order, "shipped")), Retry)
    steps = JobHistory(state, ttl=60).of(behind.job_id).steps
    assert [s.kind for s in steps] == ["wait"]
    assert steps[0].fields["why"] == "order_turn"
    assert head.job_id in steps[0].fields["detail"]


def test_callbacks_and_a_failure_are_steps_of_the_sending_job(state: redis.Redis) -> None:
    stack = make_stack(state, [reply(3)])
    _, result = run_until_done(stack, unique_body())
    assert isinstance(result, dict)
    book = DeliveryBook(state, instance_id=stack.at.instance.instance_id, ttl=60, history_ttl=60)
    now = time.time()
    book.apply("M3", "sent", at=now)
    book.apply("M3", "sent", at=now)  # a repeat changes nothing: no step
    book.apply("M3", "read", at=now + 1)
    steps = JobHistory(state, ttl=60).of(stack.job_id).steps
    assert [(s.kind, s.fields.get("state")) for s in steps] == [
        ("delivered", None),
        ("delivery", "sent"),
        ("delivery", "read"),
    ]


def test_an_ended_job_tells_why_and_no_step_holds_the_phone(state: redis.Redis) -> None:
    stack = make_stack(state, [httpx.Response(400, json={"error": "phone 5544999999999 bad"})])
    body = unique_body()
    _, result = run_until_done(stack, body)
    assert isinstance(result, Exception)
    raw: list[Any] = state.lrange(history_key(stack.job_id), 0, -1)
    told = [json.loads(r)["k"] for r in raw]
    assert told == ["job", "refused", "dead"]
    assert all(body["phone"] not in r.decode() for r in raw)


def test_a_job_keeps_its_newest_steps_only(state: redis.Redis) -> None:
    history = JobHistory(state, ttl=60)
    history.note("job-long", [json.dumps({"t": n, "k": "wait"}) for n in range(HISTORY_MAX + 10)])
    story = history.of("job-long")
    assert len(story.steps) == HISTORY_MAX - 1  # and its head, kept first
    assert story.steps[0].at == 11


def test_a_producers_enqueued_step_comes_after_the_head_and_before_the_send(
    state: redis.Redis,
) -> None:
    stack = make_stack(state, [reply(5)])
    body = unique_body()
    instance_id = stack.at.instance.instance_id
    pipe = state.pipeline(transaction=False)
    keys = order_keys(instance_id, body["orderRequestId"])
    register_in_line(pipe, keys, stack.job_id, 42, 3600, history_ttl=3600)
    pipe.execute()
    history = JobHistory(state, ttl=60)
    assert history.jobs_of(instance_id, body["orderRequestId"]) == [stack.job_id]  # not run yet
    assert [s.kind for s in history.of(stack.job_id).steps] == ["enqueued"]
    run_until_done(stack, body, sequence=42)
    raw = [json.loads(r)["k"] for r in state.lrange(history_key(stack.job_id), 0, -1)]
    assert raw == ["job", "enqueued", "delivered"]
