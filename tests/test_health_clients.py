"""One ``zapi-queue health`` run opens one Redis client per URL, reuses it for every check, and
closes it at the end (worker/cli/common.py's RedisClients); run in this process (click's
runner) against the session's Redis, no worker answering."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from celery.app.control import Control

from devtools.ports import free_port
from devtools.processes import stack_env
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tasks.contract.redis_url import redis_client
from tests.cli import invoke_cli

DB = 7  # tests/test_redis_marker.py's: emptied before and after


@pytest.fixture
def env(redis_server: RedisServer, zapi_sim: ZapiSimulator) -> Iterator[dict[str, str]]:
    def flush() -> None:
        for db in (DB, DB + 1):
            client = redis_server.client(db=db)
            client.flushdb()
            client.close()

    flush()
    yield stack_env(redis_server.url, zapi_sim, db=DB)
    flush()


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The URL of every Redis client opened (``connect`` builds them all) and closed."""
    seen: dict[str, list[str]] = {"opened": [], "closed": []}

    def counting(url: str, *args: Any, **kwargs: Any) -> Any:
        client = redis_client(url, *args, **kwargs)
        seen["opened"].append(url)
        close = client.close

        def closing() -> None:
            seen["closed"].append(url)
            close()

        monkeypatch.setattr(client, "close", closing)
        return client

    monkeypatch.setattr("tasks.state.store.redis_client", counting)  # what connect() calls
    # No worker to wait for (and no broadcast: the Celery app's own connection is not ours).
    monkeypatch.setattr(Control, "ping", lambda self, *args, **kwargs: [])
    return seen


def health(env: dict[str, str]) -> dict[str, Any]:
    args = ("health", "--json", "--acknowledge-data-loss", "--min-workers", "0")
    result = invoke_cli(env, *args)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_one_client_for_a_broker_that_is_also_the_state_redis(
    env: dict[str, str], clients: dict[str, list[str]]
) -> None:
    report = health(env)
    assert report["healthy"] is True
    assert report["redis_data"] == {"broker": {"marker": False}}
    broker = env["CELERY_BROKER_URL"]
    assert clients == {"opened": [broker], "closed": [broker]}


def test_one_client_for_each_of_two_redis(
    env: dict[str, str], clients: dict[str, list[str]], redis_server: RedisServer
) -> None:
    state = f"{redis_server.url}/{DB + 1}"
    report = health({**env, "ZAPI_STATE_REDIS_URL": state})
    assert report["healthy"] is True
    assert set(report["redis_data"]) == {"broker", "state"}
    broker = env["CELERY_BROKER_URL"]
    assert sorted(clients["opened"]) == sorted([broker, state])
    assert sorted(clients["closed"]) == sorted([broker, state])


def test_the_clients_are_closed_when_a_redis_is_unreachable(
    env: dict[str, str], clients: dict[str, list[str]]
) -> None:
    broker = f"redis://127.0.0.1:{free_port()}/0"
    result = invoke_cli({**env, "CELERY_BROKER_URL": broker}, "health", "--json")
    assert result.exit_code == 1, result.output
    assert "broker unreachable (ConnectionError)" in json.loads(result.stdout)["problems"]
    assert clients == {"opened": [broker], "closed": [broker]}
