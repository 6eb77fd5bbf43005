"""``zapi-queue probe live|ready`` against real workers: a healthy busy one passes both; a frozen
one (SIGSTOP of the worker, or of its Redis) fails live within the documented time; ready fails
before the consumer runs and once a SIGTERM began the drain (worker/consumer_heartbeat.py)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.ports import free_port
from devtools.processes import WorkerProcess
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tests.bodies import unique_body
from tests.cli import run_cli
from tests.conftest import CLIENT_TOKEN, INSTANCE_TOKEN, producer_for, quick_env
from worker.consumer_heartbeat import BEAT_INTERVAL, FETCH_REPLY_GRACE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

#: Short, so that a frozen worker fails within a test's patience.
LIVENESS_TIMEOUT = 3.0
#: The documented bound (docs/kubernetes.md): the timeout, plus a fetch's own bound
#: (``brpop_timeout``, 1 s) and its grace, plus a beat; and a probe's own run, loaded machine.
FAILS_WITHIN = LIVENESS_TIMEOUT + 1 + FETCH_REPLY_GRACE + BEAT_INTERVAL + 3


@pytest.fixture(scope="module")
def slow_zapi() -> Iterator[ZapiSimulator]:
    """A fake Z-API of this module's own: its latency is changed here, not the session's."""
    with ZapiSimulator(
        instance_id="probe-instance", instance_token=INSTANCE_TOKEN, client_token=CLIENT_TOKEN
    ) as simulator:
        yield simulator


def env_for(redis_url: str, zapi: ZapiSimulator, db: int, heartbeat: Path) -> dict[str, str]:
    return quick_env(
        redis_url,
        zapi,
        db=db,
        zapi_heartbeat_file=str(heartbeat),
        zapi_liveness_timeout=str(LIVENESS_TIMEOUT),
        zapi_timeout="10",  # longer than the slow Z-API's answers
    )


def probe(env: dict[str, str], which: str) -> subprocess.CompletedProcess[str]:
    return run_cli(env, "probe", which)


def wait_for_probe(env: dict[str, str], which: str, code: int, within: float) -> float:
    """Seconds until ``probe which`` exits ``code`` (fails the test after ``within``)."""
    start = time.monotonic()
    while True:
        shown = probe(env, which)
        elapsed = time.monotonic() - start
        if shown.returncode == code:
            return elapsed
        assert elapsed < within, f"probe {which} still {shown.returncode}: {shown.stdout}"
        time.sleep(0.2)


def send(env: dict[str, str], count: int) -> None:
    with producer_for(env) as producer:
        for n in range(count):
            body = unique_body(phone=f"5511966{n:06d}")
            producer.send_task("zapi.order_status_update", args=[body])


def wait_for_requests(zapi: ZapiSimulator, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(zapi.requests()) < count:
        assert time.monotonic() < deadline, "the fake Z-API saw too few requests"
        time.sleep(0.05)


def test_a_healthy_busy_worker_passes_both_probes(
    tmp_path: Path, own_redis: RedisServer, slow_zapi: ZapiSimulator
) -> None:
    """Every thread waiting on a slow Z-API, every prefetch slot taken (no fetch in flight):
    busy, not stuck. Probed for longer than the liveness timeout."""
    env = env_for(own_redis.url, slow_zapi, 0, tmp_path / "beat" / "worker.heartbeat")
    slow_zapi.latency = 2.0
    try:
        with WorkerProcess(env, tmp_path / "worker.log"):
            wait_for_probe(env, "ready", 0, within=10)
            before = len(slow_zapi.requests())
            send(env, 80)  # 16 threads: in flight for five rounds
            wait_for_requests(slow_zapi, before + 16)
            deadline = time.monotonic() + LIVENESS_TIMEOUT + 2
            runs = 0
            while time.monotonic() < deadline:
                for which in ("live", "ready"):
                    shown = probe(env, which)
                    assert shown.returncode == 0, shown.stdout + shown.stderr
                    assert shown.stdout.startswith(f"{which}: worker pid ")
                    runs += 1
            assert len(slow_zapi.requests()) - before < 80, "no longer busy: proves nothing"
    finally:
        slow_zapi.latency = 0.0
    assert runs >= 4
    assert (tmp_path / "beat").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("frozen", ["worker", "redis"])
def test_a_frozen_consumer_fails_live_in_time_and_passes_again_once_resumed(
    tmp_path: Path, slow_zapi: ZapiSimulator, frozen: str
) -> None:
    """SIGSTOP of the worker (a paused VM), or of its Redis (a server that stops answering, its
    sockets open: the worker's loop waits on a fetch that never returns, or blocks in a sweep).
    Either way alive but not consuming, what the probe is for. A Redis of the test's own."""
    with RedisServer() as server:
        env = env_for(server.url, slow_zapi, 0, tmp_path / "worker.heartbeat")
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            wait_for_probe(env, "ready", 0, within=10)
            target = worker if frozen == "worker" else server
            target.freeze()
            try:
                took = wait_for_probe(env, "live", 1, within=FAILS_WITHIN + 5)
                assert "made no progress" in probe(env, "live").stdout
                assert probe(env, "ready").returncode == 1
                assert worker.running
            finally:
                target.thaw()
            wait_for_probe(env, "live", 0, within=60)  # it recovers by itself
    assert took <= FAILS_WITHIN


def test_ready_fails_until_the_consumer_runs_and_live_gives_a_start_up_grace(
    tmp_path: Path, slow_zapi: ZapiSimulator
) -> None:
    """A worker whose broker is not there yet: alive for ZAPI_LIVENESS_TIMEOUT (starting), never
    ready; then the broker comes up and it is both."""
    port = free_port()
    env = env_for(f"redis://127.0.0.1:{port}", slow_zapi, 0, tmp_path / "worker.heartbeat")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker._spawn()  # start() would wait for a ping this worker cannot answer yet
    try:
        wait_for_probe(env, "live", 0, within=20)  # the heartbeat is written as it starts
        shown = probe(env, "ready")
        assert shown.returncode == 1
        assert "not connected" in shown.stdout
        wait_for_probe(env, "live", 1, within=LIVENESS_TIMEOUT + 5)  # the grace ran out
        with RedisServer(port=port):
            wait_for_probe(env, "ready", 0, within=30)
            assert probe(env, "live").returncode == 0
            worker.stop()
    finally:
        worker.close()


def test_ready_fails_as_soon_as_a_sigterm_begins_the_drain(
    tmp_path: Path, own_redis: RedisServer, slow_zapi: ZapiSimulator
) -> None:
    heartbeat = tmp_path / "worker.heartbeat"
    env = env_for(own_redis.url, slow_zapi, 4, heartbeat)
    slow_zapi.latency = 4.0
    try:
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            assert worker.process is not None
            wait_for_probe(env, "ready", 0, within=10)
            before = len(slow_zapi.requests())
            send(env, 4)
            wait_for_requests(slow_zapi, before + 4)
            assert probe(env, "ready").returncode == 0
            worker.process.send_signal(signal.SIGTERM)
            shown = probe(env, "ready")
            still_draining = worker.running
            assert worker.stop(timeout=30) == 0
    finally:
        slow_zapi.latency = 0.0
    assert shown.returncode == 1
    assert "stopping" in shown.stdout
    assert still_draining, "the worker ended before the probe: the drain was not probed"
    assert not heartbeat.exists(), "a stopped worker leaves no heartbeat behind"
