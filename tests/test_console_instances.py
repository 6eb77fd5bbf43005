"""The console's ``/instances`` page (worker/console/instances.py) over a real Redis: each
instance's connection and its error (phone masked), its pause and why, rate and sends, jobs
queued and in workers, dead letters, Z-API's queue, delivery failures by Z-API's words, and the
charts of its last hour (sends, 429s, dead letters); the broker unreadable is said, not a 500."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from config import Settings
from devtools.redis_server import RedisServer
from tests.conftest import empty_db_fixture
from tests.console_fleet import (
    NOT_ON_WHATSAPP,
    PHONE,
    PHONE_ERROR,
    Fleet,
    fleet_settings,
    seed_fleet,
)
from worker.console.app import build_app
from worker.console.charts import bar_chart, per_minute

AUTH = ("ops", "console-pass-9")
BROKER_DB = 13

state = empty_db_fixture(15, name="state")
broker = empty_db_fixture(BROKER_DB, name="broker")


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    return Settings(
        zapi_console_auth=":".join(AUTH),
        celery_broker_url=f"{redis_server.url}/{BROKER_DB}",
        **fleet_settings(),  # type: ignore[arg-type]
    )


@pytest.fixture
def fleet(
    state: redis.Redis, broker: redis.Redis, redis_server: RedisServer, settings: Settings
) -> Fleet:
    return seed_fleet(state, f"{redis_server.url}/{BROKER_DB}", settings)


@pytest.fixture
def console(state: redis.Redis, settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(settings, client=state)) as client:
        client.auth = AUTH
        yield client


def section(page: str, alias: str) -> str:
    found = re.search(
        rf'<section class="instance" id="instance-{alias}">(.*?)</section>', page, re.S
    )
    assert found, alias
    return " ".join(found.group(1).split())


def test_each_instance_shows_its_state_at_a_glance(console: TestClient, fleet: Fleet) -> None:
    page = console.get("/instances")
    assert page.status_code == 200
    assert PHONE not in page.text
    shown = {
        "default": [
            "main-shop",
            "DISCONNECTED</span> since",
            PHONE_ERROR.split(PHONE)[0],
            "PAUSED</span> for",
            "(429)",
            "2.5/s limit, 3 sends in the last minute",
            "1 queued, 1 in workers",
            '<a href="/dead?instance=default">3</a>',
            "4 of ours left of 7, 2 withdrawn",
            f"<td>{NOT_ON_WHATSAPP} (errorCode 404)</td><td>2</td>",
            "Sends, last hour: 5",
            "429s, last hour: 2",
            "Dead letters, last hour: 3",
            'aria-label="sends: 5 in the last 60 minutes, at most 3 in a minute"',
        ],
        "shop-b": [
            "connected</span> since",
            "sending</span>",
            "0 queued, 0 in workers",
            "None kept.",
        ],
    }
    for alias, phrases in shown.items():
        text = section(page.text, alias)
        missing = [phrase for phrase in phrases if phrase not in text]
        assert not missing, (alias, missing, text)


def test_an_unreadable_broker_is_said_and_the_rest_shown(
    state: redis.Redis, fleet: Fleet, redis_server: RedisServer
) -> None:
    settings = Settings(
        zapi_console_auth=":".join(AUTH),
        celery_broker_url="redis://127.0.0.1:1/0",  # nothing listens on port 1
        **fleet_settings(),  # type: ignore[arg-type]
    )
    with TestClient(build_app(settings, client=state)) as client:
        page = client.get("/instances", auth=AUTH)
    assert page.status_code == 200
    assert "The broker could not be read" in page.text
    assert "unknown (broker unreadable)" in section(page.text, "default")
    assert "DISCONNECTED" in section(page.text, "default")


def test_an_empty_fleet_says_how_to_configure_one(state: redis.Redis) -> None:
    settings = Settings(zapi_console_auth=":".join(AUTH))
    with TestClient(build_app(settings, client=state)) as client:
        page = client.get("/instances", auth=AUTH)
    assert "No instance is configured" in page.text


def test_minutes_are_bucketed_oldest_first_and_the_hour_bounded() -> None:
    now = 1_800_000_030.0
    counts = per_minute([now, now - 30, now - 31, now - 3540, now - 3600, now + 60], now=now)
    assert counts[-1] == 2  # now and now-30 share the current minute
    assert counts[-2] == 1
    assert counts[0] == 1  # 59 minutes ago; an hour ago and the future are outside
    assert sum(counts) == 4


def test_a_chart_draws_a_bar_per_busy_minute_scaled_to_the_peak() -> None:
    svg = str(bar_chart([0, 2, 4], kind="sends", label="<sends>"))
    assert svg.count("<rect") == 2
    assert 'height="47.00"' in svg  # the peak fills the height less the axis
    assert 'height="23.50"' in svg
    assert "&lt;sends&gt;" in svg
    assert "<sends>" not in svg
    assert "4 &lt;sends&gt;, this minute" in svg
    assert str(bar_chart([], kind="sends", label="sends")).count("<rect") == 0
