"""The console's order and job pages (worker/console/orders.py) over a real Redis: an order's
jobs run in-process (tests/test_execution.py's stack), its page found by each of its names,
its timeline in order, the phone masked, the job page with its state from the result backend."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import redis
from pydantic import SecretStr
from starlette.testclient import TestClient

from config import Settings
from devtools.redis_server import RedisServer
from tasks.state.deliveries import DeliveryBook
from tasks.state.keys import RESULT_PREFIX
from tests.bodies import unique_body
from tests.test_execution import Stack, make_stack, reply, run_until_done, state
from worker.console.app import build_app

__all__ = ["state"]

AUTH = ("ops", "console-pass-9")
RESULTS_DB = 14


@pytest.fixture
def order_run(state: redis.Redis) -> tuple[Stack, dict[str, str]]:
    """An order whose update was retried once, sent, then read by the customer."""
    stack = make_stack(state, [httpx.Response(503, json={"error": "down"}), reply(4)])
    body = unique_body()
    run_until_done(stack, body)
    book = DeliveryBook(state, instance_id=stack.at.instance.instance_id, ttl=60, history_ttl=60)
    book.apply("M4", "read", at=9_999_999_999.0)
    return stack, body


@pytest.fixture
def browser(
    state: redis.Redis, redis_server: RedisServer, order_run: tuple[Stack, dict[str, str]]
) -> Iterator[TestClient]:
    stack, _ = order_run
    settings = Settings(
        zapi_console_auth=":".join(AUTH),
        zapi_instance_id=stack.at.instance.instance_id,
        celery_result_backend=SecretStr(f"{redis_server.url}/{RESULTS_DB}"),
    )
    with TestClient(build_app(settings, client=state)) as client:
        client.auth = AUTH
        yield client


def test_an_order_is_found_by_each_of_its_names_with_its_timeline_in_order(
    browser: TestClient, order_run: tuple[Stack, dict[str, str]]
) -> None:
    stack, body = order_run
    for name in (body["orderRequestId"], body["messageId"]):
        found = browser.get("/orders", params={"q": name}, follow_redirects=True)
        assert found.status_code == 200, found.text
        page = found.text
        assert body["orderRequestId"] in page
        assert body["phone"] not in page  # masked
        retry, sent, read = (
            page.index(t) for t in ("retry, HTTP 503", "sent, HTTP 200", "Z-API: read")
        )
        assert retry < sent < read
        assert f"/jobs/{stack.job_id}" in page


def test_a_job_page_shows_its_state_and_links_to_its_order(
    browser: TestClient, order_run: tuple[Stack, dict[str, str]], redis_server: RedisServer
) -> None:
    stack, body = order_run
    results = redis_server.client(db=RESULTS_DB)
    meta = {"status": "SUCCESS", "result": {"zaapId": "Z4", "messageId": "M4", "id": "M4"}}
    results.set(RESULT_PREFIX + stack.job_id, json.dumps(meta))
    page = browser.get(f"/jobs/{stack.job_id}").text
    assert "SUCCESS" in page
    assert "zaapId Z4" in page
    assert f"/orders/{body['orderRequestId']}" in page
    assert "attempt 2: sent" in page
    results.delete(RESULT_PREFIX + stack.job_id)


def test_unknown_orders_and_jobs_are_404_and_anonymous_is_401(browser: TestClient) -> None:
    assert browser.get("/orders/4N8NOPE").status_code == 404
    assert browser.get("/jobs/nope-job").status_code == 404
    assert browser.get("/orders/4N8NOPE", auth=("ops", "wrong")).status_code == 401
