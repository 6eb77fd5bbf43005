"""Replaying dead letters from the console's pages in chromium, through the session worker to
the fake Z-API: one letter from its detail page, then every letter matching a filter after the
preview; the fake receives each once. A screenshot of the dead-letter list for docs/console.md."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from devtools.processes import ConsoleProcess
from devtools.zapi_sim import ZapiSimulator
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tests import letters
from tests.bodies import unique_body
from tests.conftest import MAX_ATTEMPTS
from tests.test_console_e2e import AUTH, console, received, store

__all__ = ["console", "store"]

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("worker")]


@pytest.fixture
def operator(new_context: Callable[..., BrowserContext]) -> Page:
    """A page logged in to tests/test_console_e2e.py's console (over the session worker's
    Redis, so its replays reach that worker)."""
    user, password = AUTH
    return new_context(http_credentials={"username": user, "password": password}).new_page()


def letter(job_id: str, error: str) -> DeadLetter:
    return letters.dead_letter(job_id, body=unique_body(), attempts=MAX_ATTEMPTS, error=error)


def test_replay_one_then_a_filtered_set_from_the_pages(
    operator: Page,
    console: ConsoleProcess,
    store: DeadLetterStore,
    zapi_sim: ZapiSimulator,
    screenshot: Callable[[Page, str], Path],
) -> None:
    tag = uuid.uuid4().hex[:12]
    one = letter(f"one-{tag}", f"HTTP 503 {tag}")
    many = [letter(f"many-{n}-{tag}", f"HTTP 503 {tag} batch") for n in range(2)]
    for each in (one, *many):
        store.add(each)

    operator.goto(f"{console.url}/dead?q={tag}")
    expect(operator.locator("main")).to_contain_text(one.job_id)
    assert str(one.body["phone"]) not in operator.content()
    screenshot(operator, "console-dead")
    operator.goto(f"{console.url}/dead/{one.job_id}")
    operator.get_by_role("button", name="Replay").click()
    expect(operator.locator("main")).to_contain_text("Replay: done", timeout=30_000)
    assert received(zapi_sim, one) == 1

    operator.goto(f"{console.url}/dead?q={tag}+batch")
    operator.get_by_role("button", name="Replay all matching…").click()
    expect(operator.locator("main")).to_contain_text("2")
    assert zapi_sim.requests(str(many[0].body["messageId"])) == []  # a preview sends nothing
    operator.get_by_role("button", name="Replay 2").click()
    expect(operator.locator("main")).to_contain_text("Replay: done", timeout=30_000)
    for each in many:
        assert received(zapi_sim, each) == 1
        assert store.get(each.job_id) is None
