"""An order's page and a job's page in chromium: found by each kind of id from the search box,
the timeline showing the retried attempt, the send and the read receipt in order, the phone
masked; screenshots for docs/console.md. The order's story is written by the product's own
execution (tests/test_execution.py's in-process stack) into the console's state database."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from devtools.processes import ConsoleProcess
from tasks.contract.endpoints import Endpoint
from tasks.state.deliveries import DeliveryBook
from tests.bodies import DOCS_SEND_ORDER_MINIMAL_BODY, unique_body
from tests.browser.console_env import ConsoleDbs
from tests.console_fleet import DEFAULT_ID
from tests.test_execution import Stack, make_stack, reply, run_until_done

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def order_run(console_dbs: ConsoleDbs) -> tuple[Stack, dict[str, Any]]:
    """An order whose update Z-API refused once (503), then took, and the customer read."""
    unavailable = httpx.Response(503, json={"error": "Service Unavailable"})
    stack = make_stack(console_dbs.state, [unavailable, reply(4)], instance_id=DEFAULT_ID)
    body = unique_body()
    run_until_done(stack, body)
    deliveries = DeliveryBook(console_dbs.state, instance_id=DEFAULT_ID, ttl=600, history_ttl=600)
    deliveries.apply("M4", "sent", at=time.time())
    deliveries.apply("M4", "read", at=time.time() + 1)
    return stack, body


def test_an_order_is_found_by_each_id_and_tells_its_story_in_order(
    logged_in: Page,
    console: ConsoleProcess,
    order_run: tuple[Stack, dict[str, Any]],
    screenshot: Callable[[Page, str], Path],
) -> None:
    stack, body = order_run
    for name in (body["orderRequestId"], body["messageId"]):
        logged_in.goto(f"{console.url}/orders")
        logged_in.get_by_label("orderRequestId, messageId or orderKey").fill(name)
        logged_in.get_by_role("button", name="Show its story").click()
        expect(logged_in.get_by_role("heading", level=1)).to_contain_text(body["orderRequestId"])
        steps = logged_in.locator("table.timeline tbody tr")
        expect(steps).to_have_count(4)
        expect(steps.nth(0)).to_contain_text("retry, HTTP 503")
        expect(steps.nth(1)).to_contain_text("sent, HTTP 200")
        expect(steps.nth(1)).to_contain_text("zaapId Z4")
        expect(steps.nth(2)).to_contain_text("Z-API: sent")
        expect(steps.nth(3)).to_contain_text("Z-API: read")
        assert body["phone"] not in logged_in.content()
        expect(logged_in.locator("table.facts")).to_contain_text("*")
    screenshot(logged_in, "console-order")
    logged_in.locator("table.timeline a").first.click()
    expect(logged_in.get_by_role("heading", level=1)).to_contain_text(stack.job_id)
    expect(logged_in.get_by_role("link", name=body["orderRequestId"])).to_be_visible()
    screenshot(logged_in, "console-job")


def test_an_unknown_order_says_so(logged_in: Page, console: ConsoleProcess) -> None:
    answer = logged_in.goto(f"{console.url}/orders/4N8NEVER")
    assert answer is not None
    assert answer.status == 404
    expect(logged_in.locator("main")).to_contain_text("nothing is known of order 4N8NEVER")


def test_an_order_is_found_by_the_shops_key(
    logged_in: Page, console: ConsoleProcess, console_dbs: ConsoleDbs
) -> None:
    """Before its order webhook came: the page says the order message went, and shows its job."""
    sent = dataclasses.replace(
        make_stack(console_dbs.state, [reply(8)], instance_id=DEFAULT_ID),
        endpoint=Endpoint.SEND_ORDER,
    )
    key = f"shop-{uuid.uuid4().hex[:8]}"
    run_until_done(sent, dict(DOCS_SEND_ORDER_MINIMAL_BODY), order_key=key)
    logged_in.goto(f"{console.url}/orders")
    logged_in.get_by_label("orderRequestId, messageId or orderKey").fill(key)
    logged_in.get_by_role("button", name="Show its story").click()
    expect(logged_in.get_by_role("heading", level=1)).to_contain_text(f"shop's key {key}")
    expect(logged_in.locator("main")).to_contain_text("its order webhook has not come yet")
    expect(logged_in.locator("table.timeline tbody tr")).to_contain_text("order message")
    assert str(DOCS_SEND_ORDER_MINIMAL_BODY["phone"]) not in logged_in.content()
