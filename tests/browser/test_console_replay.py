"""Replaying dead letters from the console's pages in chromium, through the session worker to
the fake Z-API: one letter from its detail page, then every letter matching a filter after the
preview; the fake receives each once. A screenshot of the dead-letter list for docs/console.md."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from devtools.ports import free_port
from devtools.processes import ConsoleProcess
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tests import letters
from tests.bodies import unique_body
from tests.browser.console_env import LOGIN
from tests.conftest import MAX_ATTEMPTS

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("worker")]


@pytest.fixture(scope="module")
def console(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleProcess]:
    """The console over the session worker's Redis (its replays reach that worker)."""
    env = {**worker_env, "ZAPI_CONSOLE_AUTH": ":".join(LOGIN)}
    log = Path(tmp_path_factory.mktemp("console")) / "console.log"
    with ConsoleProcess(env, log, port=free_port()) as process:
        yield process


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[DeadLetterStore]:
    client = redis_server.client(db=0)  # the session worker's state Redis
    yield DeadLetterStore(client)
    client.close()


def letter(job_id: str, error: str) -> DeadLetter:
    return letters.dead_letter(job_id, body=unique_body(), attempts=MAX_ATTEMPTS, error=error)


def received(zapi_sim: ZapiSimulator, one: DeadLetter, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests := zapi_sim.requests(str(one.body["messageId"])):
            return len(requests)
        time.sleep(0.1)
    return 0


def test_replay_one_then_a_filtered_set_from_the_pages(
    logged_in: Page,
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

    logged_in.goto(f"{console.url}/dead?q={tag}")
    expect(logged_in.locator("main")).to_contain_text(one.job_id)
    assert str(one.body["phone"]) not in logged_in.content()
    screenshot(logged_in, "console-dead")
    logged_in.goto(f"{console.url}/dead/{one.job_id}")
    logged_in.get_by_role("button", name="Replay").click()
    expect(logged_in.locator("main")).to_contain_text("Replay: done", timeout=30_000)
    assert received(zapi_sim, one) == 1

    logged_in.goto(f"{console.url}/dead?q={tag}+batch")
    logged_in.get_by_role("button", name="Replay all matching…").click()
    expect(logged_in.locator("main")).to_contain_text("2")
    assert zapi_sim.requests(str(many[0].body["messageId"])) == []  # a preview sends nothing
    logged_in.get_by_role("button", name="Replay 2").click()
    expect(logged_in.locator("main")).to_contain_text("Replay: done", timeout=30_000)
    for each in many:
        assert received(zapi_sim, each) == 1
        assert store.get(each.job_id) is None
