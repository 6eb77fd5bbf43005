"""The console's dead-letter pages in process (Starlette's TestClient) against a real Redis: the
filters, the detail, replays and purges by their rules (a preview for bulk and purge, the
second confirmation for sends of unknown outcome, nothing without the CSRF token), the audit
log, and no phone shown whole. Replays here go to a recording sender; tests/test_console_e2e.py
replays through the broker to a real worker and the fake Z-API."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.testclient import TestClient

from config import Settings
from tasks.state.audit import AuditEntry, AuditLog
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tasks.state.keys import CONSOLE_AUDIT_KEY, registered
from tests.conftest import empty_db_fixture
from tests.letters import dead_letter
from worker.console.actions import Action, Actions, Selection

DB = 15
AUTH = ("ops", "console-pass-9")
PHONE = "5511912345678"

state = empty_db_fixture(DB, name="state")


class Sent(list[DeadLetter]):
    """A sender that records what it would enqueue."""

    def __call__(self, letter: DeadLetter) -> str:
        self.append(letter)
        return f"new-{letter.job_id}"


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def store(state: redis.Redis) -> DeadLetterStore:
    return DeadLetterStore(state)


@pytest.fixture
def app(state: redis.Redis, sent: Sent) -> Starlette:
    return build(state, sent)


def build(state: redis.Redis, sent: Sent) -> Starlette:
    from worker.console.app import build_app

    return build_app(Settings(zapi_console_auth=":".join(AUTH)), client=state, send=sent)


@pytest.fixture
def browser(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=True) as client:
        client.auth = AUTH
        yield client


def token(app: Starlette) -> str:
    return str(app.state.csrf.token(AUTH[0]))


def post(browser: TestClient, app: Starlette, **fields: Any) -> Any:
    return browser.post(
        "/dead/act", data={"csrf_token": token(app), **fields}, follow_redirects=False
    )


def finished(browser: TestClient, app: Starlette, answer: Any) -> Action:
    """Follow an action's redirect to its page, and wait until it is over."""
    assert answer.status_code == 303, answer.text
    action_id = answer.headers["location"].rsplit("/", 1)[1]
    action = app.state.actions.get(action_id)
    app.state.actions.wait(action)
    page = browser.get(answer.headers["location"])
    assert page.status_code == 200
    assert 'http-equiv="refresh"' not in page.text  # over: it stops refreshing
    return action  # type: ignore[no-any-return]


def job_ids(html: str) -> list[str]:
    return re.findall(r'name="job_id" value="([^"]+)"', html)


def test_the_list_filters_by_class_instance_window_and_text(
    browser: TestClient, store: DeadLetterStore
) -> None:
    store.add(dead_letter("old-503", age=7200))
    store.add(dead_letter("new-503", age=60, error="HTTP 503 from the gateway"))
    store.add(dead_letter("invalid", error_type="InvalidBodyError", error="phone missing"))
    store.add(dead_letter("on-rj", kwargs={"instance": "store-rj"}))

    def listed(**query: str) -> list[str]:
        page = browser.get("/dead", params=query)
        assert page.status_code == 200
        return job_ids(page.text)

    assert listed() == ["old-503", "new-503", "invalid", "on-rj"]  # oldest failure first
    assert listed(error_type="InvalidBodyError") == ["invalid"]
    assert listed(instance="store-rj") == ["on-rj"]
    assert listed(q="GATEWAY") == ["new-503"]
    hour_ago = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 3600))
    assert "old-503" not in listed(since=hour_ago)
    assert listed(until=hour_ago) == ["old-503"]
    assert browser.get("/dead", params={"since": "yesterday"}).status_code == 400
    page = browser.get("/dead").text
    assert "InvalidBodyError (1)" in page  # the classes to choose from, with their counts
    assert "store-rj (1)" in page


def test_the_list_pages_past_the_last_letter_read(
    browser: TestClient, store: DeadLetterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.console.dead_pages.ROWS", 2)
    for n in range(5):
        store.add(dead_letter(f"job-{n}", age=100 - n))
    seen: list[str] = []
    url = "/dead"
    for _ in range(5):
        page = browser.get(url).text
        seen += job_ids(page)
        found = re.search(r'href="(/dead\?[^"]*after_id[^"]*)">next page', page)
        if found is None:
            break
        url = found[1].replace("&amp;", "&")
    assert seen == [f"job-{n}" for n in range(5)]


def test_a_letter_s_page_shows_it_masked(browser: TestClient, store: DeadLetterStore) -> None:
    pix = "12345678901"
    body = {"phone": PHONE, "messageId": "M-1", "paymentSettings": {"pix": {"key": pix}}}
    store.add(
        dead_letter(
            "job-1",
            body=body,
            error=f"Z-API refused {PHONE}",
            kwargs={"instance": "store-rj", "idempotency_key": "k-1"},
            ambiguous_attempts=2,
        )
    )
    page = browser.get("/dead/job-1")
    assert page.status_code == 200
    for shown in ("M-1", "store-rj", "k-1", "AttemptsExhaustedError", "2 of unknown outcome"):
        assert shown in page.text
    assert PHONE not in page.text
    assert pix not in page.text
    assert browser.get("/dead/nothing-here").status_code == 404


def test_a_post_without_its_csrf_token_changes_nothing(
    browser: TestClient, store: DeadLetterStore, sent: Sent
) -> None:
    store.add(dead_letter("job-1"))
    for data in (
        {"action": "replay", "job_id": "job-1"},
        {"action": "replay", "match": "1", "confirm": "1"},
        {"action": "purge", "job_id": "job-1", "confirm": "1", "csrf_token": "f" * 64},
    ):
        answer = browser.post("/dead/act", data=data)
        assert answer.status_code == 403, data
    assert sent == []
    assert store.get("job-1") is not None


def test_replaying_one_letter_enqueues_it_removes_it_and_records_it(
    browser: TestClient, app: Starlette, store: DeadLetterStore, sent: Sent, state: redis.Redis
) -> None:
    letter = dead_letter("job-1", body={"phone": PHONE, "messageId": "M-1"})
    store.add(letter)
    store.add(dead_letter("job-2"))
    action = finished(browser, app, post(browser, app, action="replay", job_id="job-1"))
    assert (action.state, action.done, action.refused, action.missing) == ("done", 1, 0, 0)
    assert sent == [letter]
    assert store.get("job-1") is None
    assert store.get("job-2") is not None
    [entry] = AuditLog(state).recent()
    assert (entry.user, entry.action, entry.done) == ("ops", "replay", 1)
    assert "job-1" in entry.what
    audit_page = browser.get("/dead/actions").text
    assert "1 chosen dead letter(s): job-1" in audit_page


def test_replaying_everything_matching_shows_a_preview_then_replays_on_confirmation(
    browser: TestClient, app: Starlette, store: DeadLetterStore, sent: Sent
) -> None:
    store.add(dead_letter("gw-1", error="HTTP 503 gateway"))
    store.add(dead_letter("gw-2", error="HTTP 503 gateway"))
    store.add(dead_letter("gw-unsure", error="timeout gateway", ambiguous_attempts=1))
    store.add(dead_letter("other", error="HTTP 400"))

    preview = post(browser, app, action="replay", match="1", q="gateway")
    assert preview.status_code == 200
    assert "<strong>3</strong> now" in preview.text
    assert '<strong class="warn">1</strong> of them' in preview.text
    assert sent == []  # a preview sends nothing

    fields = {"action": "replay", "match": "1", "q": "gateway", "confirm": "1", "expected": "3"}
    action = finished(browser, app, post(browser, app, **fields))
    assert sorted(letter.job_id for letter in sent) == ["gw-1", "gw-2"]
    assert (action.done, action.refused, action.refused_ids) == (2, 1, ["gw-unsure"])
    assert store.get("gw-unsure") is not None  # kept for the second confirmation
    assert store.get("other") is not None


def test_a_letter_of_unknown_outcome_needs_the_second_confirmation(
    browser: TestClient, app: Starlette, store: DeadLetterStore, sent: Sent
) -> None:
    store.add(dead_letter("unsure", ambiguous_attempts=1))
    detail = browser.get("/dead/unsure").text
    assert 'name="understood"' in detail

    refused = finished(browser, app, post(browser, app, action="replay", job_id="unsure"))
    assert (refused.done, refused.refused) == (0, 1)
    page = browser.get(f"/dead/actions/{refused.id}").text
    assert 'name="understood"' in page  # the second confirmation, for the letters kept
    half = post(browser, app, action="replay", job_id="unsure", force="1")
    assert half.status_code == 400  # asked to force, box not ticked
    assert sent == []
    assert store.get("unsure") is not None

    forced = post(browser, app, action="replay", job_id="unsure", force="1", understood="1")
    action = finished(browser, app, forced)
    assert (action.done, action.forced) == (1, True)
    assert [letter.job_id for letter in sent] == ["unsure"]


def test_a_purge_asks_first_then_deletes(
    browser: TestClient, app: Starlette, store: DeadLetterStore
) -> None:
    store.add(dead_letter("a"))
    store.add(dead_letter("b", ambiguous_attempts=1))
    preview = post(browser, app, action="purge", job_id=["a", "b"])
    assert preview.status_code == 200
    assert "deleted for good" in preview.text
    assert store.get("a") is not None
    action = finished(browser, app, post(browser, app, action="purge", job_id="a", confirm="1"))
    assert (action.kind, action.done) == ("purge", 1)
    assert store.get("a") is None
    assert store.get("b") is not None


def test_a_bulk_replay_reads_only_letters_that_failed_before_it_started(
    store: DeadLetterStore,
) -> None:
    from tasks.dead_letters import Filters

    store.add(dead_letter("before", age=10))
    store.add(dead_letter("after"))
    started = time.time() - 5
    chosen = list(Selection(filters=Filters()).letters(store, started))
    assert [letter.job_id for letter in chosen if isinstance(letter, DeadLetter)] == ["before"]


def test_an_action_that_fails_says_so_and_is_recorded(
    store: DeadLetterStore, state: redis.Redis
) -> None:
    def broken(letter: DeadLetter) -> str:
        raise ConnectionError("broker at redis://:hunter2@broker:6379 refused")

    store.add(dead_letter("job-1"))
    actions = Actions(store, broken, AuditLog(state), secrets=["hunter2"])
    action = actions.wait(actions.start("ops", "replay", Selection(("job-1",)), "one"))
    assert action.state == "failed"
    assert "hunter2" not in action.error
    [entry] = AuditLog(state).recent()
    assert entry.outcome.startswith("failed: ConnectionError")
    assert store.get("job-1") is not None


def test_the_audit_log_is_capped_and_expires(state: redis.Redis) -> None:
    audit = AuditLog(state, most=3, ttl=600)
    for n in range(5):
        audit.record(AuditEntry(at=float(n), user="ops", action="purge", what=f"#{n}", done=n))
    assert [entry.what for entry in audit.recent()] == ["#4", "#3", "#2"]
    assert state.llen(CONSOLE_AUDIT_KEY) == 3
    assert 590 < state.ttl(CONSOLE_AUDIT_KEY) <= 600
    entry = registered(CONSOLE_AUDIT_KEY)
    assert entry is not None
    assert entry.cap is not None
    assert entry.cap.most == AuditLog(state).most


def test_a_text_filter_that_is_a_phone_is_masked_in_the_audit_log(
    browser: TestClient, app: Starlette, store: DeadLetterStore, state: redis.Redis
) -> None:
    store.add(dead_letter("job-1", error=f"refused {PHONE}"))
    fields = {"action": "purge", "match": "1", "q": PHONE, "confirm": "1"}
    finished(browser, app, post(browser, app, **fields))
    [entry] = AuditLog(state).recent()
    assert PHONE not in entry.what
    assert PHONE not in browser.get("/dead/actions").text


phones = st.from_regex(r"\+?55[1-9][0-9]{9,10}", fullmatch=True)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(phone=phones)
def test_no_page_shows_a_phone_whole(
    phone: str, browser: TestClient, store: DeadLetterStore, state: redis.Redis
) -> None:
    state.flushdb()
    body = {"phone": phone, "messageId": f"M {phone}", "text": f"call {phone}"}
    store.add(dead_letter("job-1", body=body, error=f"HTTP 400 for {phone}"))
    for path in ("/dead", "/dead/job-1", "/dead/actions", f"/dead?q={phone}"):
        page = browser.get(path)
        assert page.status_code == 200
        # What the operator typed in the search box comes back to it (and its links), as typed.
        shown = re.sub(r'(value|href)="[^"]*"', "", page.text)
        assert phone not in shown, path
        assert phone.lstrip("+") not in shown, path
        if path != "/dead/actions":
            assert "****" in shown, path  # shown, masked


def test_hostile_text_in_a_letter_is_escaped(browser: TestClient, store: DeadLetterStore) -> None:
    hostile = '<script>alert("x")</script>'
    store.add(
        dead_letter(
            f"job-{hostile}",
            task=hostile,
            error_type=hostile,
            error=hostile,
            body={"phone": hostile, "text": hostile},
            kwargs={"instance": hostile},
        )
    )
    for path in ("/dead", f"/dead/job-{hostile}", f"/dead?q={hostile}"):
        page = browser.get(path)
        assert page.status_code == 200, path
        assert "<script>" not in page.text, path
    assert "&lt;script&gt;" in browser.get("/dead").text
