"""One order's story from any of its names (tasks/order_story.py), over a real Redis and
in-process executions (tests/test_execution.py's stack)."""

from __future__ import annotations

import dataclasses
import time

import httpx
import redis

from tasks.contract.endpoints import Endpoint
from tasks.order_story import find_story, job_links, timeline
from tasks.state.deliveries import DeliveryBook
from tests.bodies import DOCS_SEND_ORDER_MINIMAL_BODY, unique_body, unique_key
from tests.test_execution import Stack, make_stack, reply, run_until_done, state

__all__ = ["state"]


def another_job(stack: Stack) -> Stack:
    return dataclasses.replace(stack, job_id=unique_key("job"))


def test_an_orders_jobs_in_order_by_its_request_id_or_its_message(state: redis.Redis) -> None:
    stack = make_stack(state, [reply(1), reply(2)])
    body = unique_body(orderStatus="processing")
    first, second = stack, another_job(stack)
    run_until_done(first, body)
    short = {"orderRequestId": body["orderRequestId"], "orderStatus": "shipped"}
    run_until_done(second, short)
    instance_id = stack.at.instance.instance_id
    for name in (body["orderRequestId"], body["messageId"]):
        story = find_story(state, instance_id, name, order_ttl=3600, result_ttl=3600)
        assert story is not None
        assert story.order == body["orderRequestId"]
        assert story.snapshot is not None
        assert story.snapshot.order_status == "shipped"
        assert [job.job_id for job in story.jobs] == [first.job_id, second.job_id]
        assert [[s.kind for s in job.steps] for job in story.jobs] == [["delivered"], ["delivered"]]
        assert job_links(story.jobs[0]) == {"order": body["orderRequestId"], "dead_letter": None}


def test_an_unknown_name_has_no_story(state: redis.Redis) -> None:
    stack = make_stack(state, [reply(1)])
    instance_id = stack.at.instance.instance_id
    assert find_story(state, instance_id, "4N8NOPE", order_ttl=60, result_ttl=60) is None


def test_the_timeline_tells_a_retry_the_send_and_the_read_receipt_in_order(
    state: redis.Redis,
) -> None:
    unavailable = httpx.Response(503, json={"error": "Service Unavailable"})
    stack = make_stack(state, [unavailable, reply(4)])
    body = unique_body()
    run_until_done(stack, body)
    instance_id = stack.at.instance.instance_id
    book = DeliveryBook(state, instance_id=instance_id, ttl=60, history_ttl=60)
    book.apply("M4", "read", at=time.time() + 1)
    story = find_story(state, instance_id, body["orderRequestId"], order_ttl=60, result_ttl=60)
    assert story is not None
    rows = timeline(story.jobs)
    assert [(row.kind, row.tone) for row in rows] == [
        ("retry", "warn"),
        ("delivered", "ok"),
        ("delivery", "ok"),
    ]
    assert rows[0].text.startswith("attempt 1: retry, HTTP 503")
    assert "zaapId Z4, messageId M4" in rows[1].text
    assert rows[2].text == "Z-API: read"
    assert {row.label for row in rows} == {"status update"}
    assert all(body["phone"] not in row.text for row in rows)


def test_an_order_is_found_by_the_shops_key_before_its_webhook_came(state: redis.Redis) -> None:
    stack = dataclasses.replace(make_stack(state, [reply(9)]), endpoint=Endpoint.SEND_ORDER)
    key = unique_key()
    _, result = run_until_done(stack, dict(DOCS_SEND_ORDER_MINIMAL_BODY), order_key=key)
    assert isinstance(result, dict)
    instance_id = stack.at.instance.instance_id
    story = find_story(state, instance_id, key, order_ttl=60, result_ttl=60)
    assert story is not None
    assert story.key == key
    assert story.snapshot is None  # its order webhook has not come
    assert story.order_message["messageId"] == "M9"
    assert [job.job_id for job in story.jobs] == [stack.job_id]
    assert [row.label for row in timeline(story.jobs)] == ["order message"]
