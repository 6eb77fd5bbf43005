"""``zapi-queue console`` as it runs: a real process against the session's Redis, replaying dead
letters through the broker to the session worker, and the fake Z-API receiving them; the door
(401, CSRF) checked on the real server too."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery

from devtools.ports import free_port
from devtools.processes import ConsoleProcess
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tests import letters
from tests.bodies import unique_body
from tests.conftest import MAX_ATTEMPTS, SECRETS

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]

AUTH = ("ops", "console-e2e-pass-5")


@pytest.fixture(scope="module")
def console(
    worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleProcess]:
    env = {**worker_env, "ZAPI_CONSOLE_AUTH": ":".join(AUTH)}
    log = Path(tmp_path_factory.mktemp("console")) / "console.log"
    with ConsoleProcess(env, log, port=free_port()) as process:
        yield process
    assert not any(secret in process.log_text() for secret in (*SECRETS, AUTH[1]))


@pytest.fixture
def browser(console: ConsoleProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console.url, auth=AUTH, timeout=10) as client:
        yield client


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[DeadLetterStore]:
    client = redis_server.client(db=0)  # the session worker's state Redis
    yield DeadLetterStore(client)
    client.close()


def letter(job_id: str, **fields: Any) -> DeadLetter:
    """A letter whose body a replay can send, as the session worker buries it."""
    return letters.dead_letter(job_id, body=unique_body(), attempts=MAX_ATTEMPTS, **fields)


def csrf_token(browser: httpx.Client) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', browser.get("/dead").text)
    assert found is not None
    return found[1]


def act(browser: httpx.Client, **fields: Any) -> httpx.Response:
    return browser.post("/dead/act", data={"csrf_token": csrf_token(browser), **fields})


def followed(browser: httpx.Client, answer: httpx.Response, timeout: float = 30) -> str:
    """The action's page once it stopped refreshing itself (the action is over)."""
    assert answer.status_code == 303, answer.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = browser.get(answer.headers["location"]).text
        if 'http-equiv="refresh"' not in page:
            return page
        time.sleep(0.2)
    raise AssertionError("the action did not end")


def received(zapi_sim: ZapiSimulator, one: DeadLetter, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests := zapi_sim.requests(str(one.body["messageId"])):
            return len(requests)
        time.sleep(0.1)
    return 0


def test_the_door_of_the_real_server(console: ConsoleProcess, store: DeadLetterStore) -> None:
    assert httpx.get(f"{console.url}/dead", timeout=5).status_code == 401
    assert httpx.get(f"{console.url}/healthz", timeout=5).json() == {"ok": True}
    tag = uuid.uuid4().hex
    store.add(letter(f"kept-{tag}"))
    refused = httpx.post(
        f"{console.url}/dead/act",
        data={"action": "replay", "job_id": f"kept-{tag}"},
        auth=AUTH,
        timeout=5,
    )
    assert refused.status_code == 403
    assert store.get(f"kept-{tag}") is not None


def test_replay_one_then_everything_matching_reaches_z_api(
    browser: httpx.Client, store: DeadLetterStore, zapi_sim: ZapiSimulator, producer: Celery
) -> None:
    tag = uuid.uuid4().hex  # only this test's letters match its filter
    one = letter(f"one-{tag}", error=f"HTTP 503 {tag}")
    many = [letter(f"many-{n}-{tag}", error=f"HTTP 503 {tag} batch") for n in range(3)]
    unsure = letter(f"unsure-{tag}", error=f"timeout {tag} batch", ambiguous_attempts=1)
    for each in (one, *many, unsure):
        store.add(each)

    detail = browser.get(f"/dead/{one.job_id}").text
    assert str(one.body["phone"]) not in detail
    page = followed(browser, act(browser, action="replay", job_id=one.job_id))
    assert "Replay: done" in page
    assert received(zapi_sim, one) == 1
    assert store.get(one.job_id) is None

    preview = act(browser, action="replay", match="1", q=f"{tag} batch")
    assert preview.status_code == 200
    assert "<strong>4</strong> now" in preview.text
    assert zapi_sim.requests(str(many[0].body["messageId"])) == []  # a preview sends nothing
    confirmed = {"action": "replay", "match": "1", "q": f"{tag} batch", "confirm": "1"}
    page = followed(browser, act(browser, **confirmed))
    assert re.search(r"Replayed</dt><dd[^>]*>3<", page)
    for each in many:
        assert received(zapi_sim, each) == 1
        assert store.get(each.job_id) is None
    assert zapi_sim.requests(str(unsure.body["messageId"])) == []
    assert store.get(unsure.job_id) is not None  # waits for the second confirmation

    audit = browser.get("/dead/actions").text
    assert "error text contains" in audit
    assert "ops" in audit
