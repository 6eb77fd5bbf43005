"""The console in chromium, as an operator uses it: the login asked for and anonymous requests
refused, the instances page showing an instance's state (its phone's error masked), a form
POST without its CSRF token refused, and screenshots of the pages for docs/console.md."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from starlette.routing import Route

from config import Settings
from devtools.processes import ConsoleProcess
from tasks.state.deadletter import DeadLetterStore
from tests.browser.console_env import LOGIN, ConsoleDbs
from tests.console_fleet import NOT_ON_WHATSAPP, PHONE, Fleet, fleet_settings, seed_fleet
from worker.console.app import build_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def fleet(console_dbs: ConsoleDbs) -> Fleet:
    settings = Settings(celery_broker_url=console_dbs.broker_url, **fleet_settings())  # type: ignore[arg-type]
    return seed_fleet(console_dbs.state, console_dbs.broker_url, settings)


def test_anonymous_requests_get_401_and_the_login_opens_the_console(
    browser: Browser, logged_in: Page, console: ConsoleProcess
) -> None:
    anonymous = browser.new_context()
    try:
        for path in ("/", "/instances", "/static/console.css"):
            answer = anonymous.request.get(f"{console.url}{path}")
            assert answer.status == 401, path
            assert answer.headers["www-authenticate"].startswith("Basic")
        wrong = browser.new_context(http_credentials={"username": LOGIN[0], "password": "nope"})
        assert wrong.request.get(f"{console.url}/instances").status == 401
        wrong.close()
    finally:
        anonymous.close()
    home = logged_in.goto(console.url)
    assert home is not None
    assert home.status == 200
    expect(logged_in.locator("nav .user")).to_have_text(LOGIN[0])
    logged_in.get_by_role("link", name="Instances").first.click()
    expect(logged_in).to_have_url(f"{console.url}/instances")
    expect(logged_in.locator('nav a[aria-current="page"]')).to_have_text("Instances")


def test_the_instances_page_shows_each_instance_state(
    logged_in: Page, console: ConsoleProcess, fleet: Fleet, screenshot: Callable[[Page, str], Path]
) -> None:
    logged_in.goto(f"{console.url}/instances")
    main = logged_in.locator("#instance-default")
    expect(main.get_by_role("heading", level=2)).to_contain_text("main-shop")
    expect(main.locator(".connection")).to_contain_text("DISCONNECTED since")
    expect(main.locator(".sending")).to_contain_text("PAUSED for")
    expect(main.locator(".jobs")).to_have_text("1 queued, 1 in workers")
    expect(main.locator(".zapi-queue")).to_contain_text("4 of ours left of 7")
    expect(main.locator("table.failures")).to_contain_text(NOT_ON_WHATSAPP)
    expect(main.get_by_role("img", name="sends: 5 in the last 60 minutes")).to_be_visible()
    expect(main.locator("svg.chart.sends rect")).to_have_count(3)
    expect(main.get_by_role("img", name="429s: 2 in the last 60 minutes")).to_be_visible()
    expect(logged_in.locator("#instance-shop-b .connection")).to_contain_text("connected since")
    assert PHONE not in logged_in.content()
    assert screenshot(logged_in, "console-instances").stat().st_size > 10_000


def post_routes() -> list[str]:
    """The console's paths that take a form POST (a path parameter filled in: the token is
    checked before anything is looked up), each of which must refuse one without its token."""
    app = build_app(Settings(zapi_console_auth="a:b-long-enough-9"), client=None)
    return sorted(
        re.sub(r"\{[^}]*\}", "none", route.path)
        for route in app.routes
        if isinstance(route, Route) and "POST" in (route.methods or ())
    )


def test_a_form_post_without_its_csrf_token_is_refused(
    logged_in: Page, console: ConsoleProcess, console_dbs: ConsoleDbs, fleet: Fleet
) -> None:
    paths = post_routes()
    if not paths:
        pytest.skip("no page of the console takes a form POST yet")
    logged_in.goto(console.url)  # the login, as a page of the console has it
    # What another site's page could send: a purge of everything, confirmed, without a token.
    form: dict[str, str | float | bool] = {
        "action": "purge",
        "match": "1",
        "confirm": "1",
        "understood": "1",
        "force": "1",
    }
    for path in paths:
        answer = logged_in.request.post(f"{console.url}{path}", form=form)
        assert answer.status == 403, path
        assert "CSRF" in answer.text()
    store = DeadLetterStore(console_dbs.state)
    assert store.count() == fleet.dead_letters  # nothing was done
