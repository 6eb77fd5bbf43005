"""The console's door: every page asks for the login (basic auth, or a trusted proxy's header),
``/healthz`` does not; a start without a usable login is refused in one line; a form POST
without its CSRF token is refused (403) before its handler runs."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

from config import Settings
from tests.cli import invoke_cli
from tests.conftest import empty_db_fixture
from worker.console.app import build_app
from worker.console.auth import Login, LoginRefusedError, login_for
from worker.console.csrf import FIELD, CsrfTokens, checked_form

DB = 15
AUTH = ("ops", "console-pass-9")

state = empty_db_fixture(DB, name="state")


def console(state: redis.Redis, **options: str | None) -> Starlette:
    settings = Settings(zapi_console_auth=":".join(AUTH))
    return build_app(settings, client=state, trust_proxy_header=options.get("proxy"))


@pytest.fixture
def app(state: redis.Redis) -> Starlette:
    return console(state)


@pytest.fixture
def browser(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def test_anonymous_requests_get_401_with_a_basic_challenge(browser: TestClient) -> None:
    for path in ("/", "/dead", "/nowhere", "/static/console.css"):
        answer = browser.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"].startswith("Basic realm=")
        assert answer.headers["cache-control"] == "no-store"
    assert browser.post("/", data={"a": "b"}).status_code == 401


@pytest.mark.parametrize(
    "auth",
    [("ops", "wrong"), ("other", AUTH[1]), ("ops", ""), (AUTH[1], AUTH[0])],
)
def test_a_wrong_login_gets_401(browser: TestClient, auth: tuple[str, str]) -> None:
    assert browser.get("/", auth=auth).status_code == 401


@pytest.mark.parametrize(
    "header", ["Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()]
)
def test_a_malformed_authorization_header_gets_401(browser: TestClient, header: str) -> None:
    assert browser.get("/", headers={"Authorization": header}).status_code == 401


def test_the_login_opens_every_page_and_names_the_user(browser: TestClient) -> None:
    home = browser.get("/", auth=AUTH)
    assert home.status_code == 200
    assert "Dead letters" in home.text
    assert '<span class="user">ops</span>' in home.text
    assert "frame-ancestors 'none'" in home.headers["content-security-policy"]
    assert browser.get("/static/console.css", auth=AUTH).status_code == 200
    missing = browser.get("/nowhere", auth=AUTH)
    assert missing.status_code == 404
    assert "<h1>404</h1>" in missing.text


def test_healthz_needs_no_login(browser: TestClient) -> None:
    answer = browser.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"ok": True})


def test_a_trusted_proxy_header_names_the_user(state: redis.Redis) -> None:
    with TestClient(console(state, proxy="X-Forwarded-User")) as browser:
        assert browser.get("/").status_code == 401
        assert browser.get("/", auth=AUTH).status_code == 401  # basic auth is not the door now
        page = browser.get("/", headers={"X-Forwarded-User": "ana@example.org"})
        assert page.status_code == 200
        assert "ana@example.org" in page.text


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "without a login"),
        ("", "without a login"),
        ("   ", "without a login"),
        ("ops:", "both parts non-empty"),
        (":pw-123456", "both parts non-empty"),
        ("opsonly", "both parts non-empty"),
        ("admin:change-me", "placeholder password"),
        ("admin: Secret ", "placeholder password"),
    ],
)
def test_a_start_without_a_usable_login_is_refused(value: str | None, reason: str) -> None:
    settings = Settings(zapi_console_auth=value)
    with pytest.raises(LoginRefusedError, match=reason):
        login_for(settings)


def test_the_command_refuses_in_one_line_without_quoting_the_password() -> None:
    for value in ("", "admin:change-me", "ops:"):
        env = {"ZAPI_CONSOLE_AUTH": value}
        result = invoke_cli(env, "console", "--port", "1")
        assert result.exit_code == 2, result.output
        [line] = result.stderr.splitlines()
        assert line.startswith("zapi-queue: ")
        assert "ZAPI_CONSOLE_AUTH" in line
        assert "change-me" not in line
    result = invoke_cli({}, "console", "--trust-proxy-header", "X Bad")
    assert result.exit_code == 2
    assert "must be a header name" in result.stderr


def test_the_login_is_a_secret_redacted_like_the_others() -> None:
    settings = Settings(zapi_console_auth="ops:console-pass-9")
    assert {"ops:console-pass-9", "console-pass-9"} <= set(settings.secret_values())
    assert "console-pass-9" not in repr(settings)


@given(user=st.text(max_size=20), password=st.text(max_size=20))
def test_only_the_configured_pair_logs_in(user: str, password: str) -> None:
    login = Login(user=b"ops", password=b"console-pass-9")
    header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    scope = {"type": "http", "headers": [(b"authorization", header.encode())]}
    shown = login.user_of(HTTPConnection(scope))
    assert (shown is not None) == ((user, password) == ("ops", "console-pass-9"))


def test_tokens_are_bound_to_the_user_and_the_process() -> None:
    tokens = CsrfTokens()
    assert tokens.valid("ops", tokens.token("ops"))
    assert not tokens.valid("ana", tokens.token("ops"))
    assert not tokens.valid("ops", CsrfTokens().token("ops"))  # another process' key
    assert not tokens.valid("ops", "")


def test_a_form_without_its_csrf_token_is_refused_before_its_handler(app: Starlette) -> None:
    handled: list[dict[str, list[str]]] = []

    async def act(request: Request) -> PlainTextResponse:
        handled.append(await checked_form(request))
        return PlainTextResponse("done")

    app.add_route("/act", act, methods=["POST"])
    token = app.state.csrf.token("ops")
    with TestClient(app) as browser:
        for data in ({}, {FIELD: ""}, {FIELD: "0" * 64}, {FIELD: app.state.csrf.token("ana")}):
            answer = browser.post("/act", data={**data, "x": "1"}, auth=AUTH)
            assert answer.status_code == 403, data
            assert "CSRF" in answer.text
        as_json = browser.post("/act", json={FIELD: token}, auth=AUTH)
        assert as_json.status_code == 403
        assert handled == []
        assert browser.post("/act", data={FIELD: token, "x": "1"}, auth=AUTH).text == "done"
    assert handled == [{FIELD: [token], "x": ["1"]}]
