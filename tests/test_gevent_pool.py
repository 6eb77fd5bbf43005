"""``WORKER_POOL=gevent``, end to end: ``celery -A worker worker`` becomes ``-P gevent`` in the
same process (worker/pool_boot.py), delivers, keeps working past its prefetch slots without
sleeping out a poll (worker/fetch_wake.py), beats for the probes from the pool's timer
(worker/consumer_heartbeat.py) and drains on SIGTERM (worker/drain.py). It is the default, so
the rest of the suite's end-to-end tests run on it too (``make test-threads`` on threads)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from devtools.processes import WorkerProcess
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tests.bodies import unique_body
from tests.conftest import CLIENT_TOKEN, INSTANCE_TOKEN, producer_for, quick_env
from tests.test_probes import FAILS_WITHIN, LIVENESS_TIMEOUT, probe, wait_for_probe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

#: Two prefetch slots: a batch of 2 ends in milliseconds at 0 ms, then the next is fetched.
SLOTS = 2
#: Jobs through those slots. Each poll waits up to 2 s when nothing wakes it: 15 batches would
#: take 30 s or more; woken, the whole run takes about a second.
JOBS = 30
WITHIN = 15.0


@pytest.fixture(scope="module")
def zapi() -> Iterator[ZapiSimulator]:
    with ZapiSimulator(
        instance_id="green-instance", instance_token=INSTANCE_TOKEN, client_token=CLIENT_TOKEN
    ) as simulator:
        yield simulator


class Green(NamedTuple):
    env: dict[str, str]
    worker: WorkerProcess


@pytest.fixture(scope="module")
def green(zapi: ZapiSimulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Green]:
    """A worker of its own Redis, started as the README says, with ``WORKER_POOL=gevent``."""
    logs = tmp_path_factory.mktemp("gevent")
    with RedisServer() as server:
        env = quick_env(
            server.url,
            zapi,
            worker_pool="gevent",
            worker_concurrency=str(SLOTS),
            zapi_heartbeat_file=str(logs / "heartbeat.json"),
            zapi_liveness_timeout=str(LIVENESS_TIMEOUT),
        )
        with WorkerProcess(env, logs / "worker.log") as worker:
            yield Green(env, worker)


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_the_started_process_runs_on_gevent_and_delivers(green: Green) -> None:
    worker = green.worker
    assert worker.process is not None
    argv = command_line(worker.process.pid)
    assert argv[-2:] == ["--pool", "gevent"], argv  # the same pid, re-executed
    assert f"concurrency: {SLOTS} (gevent)" in worker.log_text()
    with producer_for(green.env) as producer:
        reply = producer.send_task("zapi.order_status_update", args=[unique_body()]).get(60)
    assert set(reply) >= {"zaapId", "messageId", "id"}


def test_jobs_past_the_prefetch_slots_do_not_wait_out_a_poll(green: Green) -> None:
    with producer_for(green.env) as producer:
        started = time.monotonic()
        results = [
            producer.send_task("zapi.order_status_update", args=[unique_body()])
            for _ in range(JOBS)
        ]
        replies = [result.get(timeout=90) for result in results]
        took = time.monotonic() - started
    assert all("zaapId" in reply for reply in replies)
    assert took < WITHIN, f"{JOBS} jobs through {SLOTS} slots took {took:.1f}s"


def test_the_probes_judge_it_from_the_pool_timers_beats(green: Green) -> None:
    env, worker = green.env, green.worker
    assert worker.process is not None
    wait_for_probe(env, "ready", 0, within=15)
    assert probe(env, "live").returncode == 0
    worker.process.send_signal(signal.SIGSTOP)  # no greenlet runs: no beat
    try:
        wait_for_probe(env, "live", 1, within=FAILS_WITHIN)
    finally:
        worker.process.send_signal(signal.SIGCONT)
    wait_for_probe(env, "live", 0, within=15)


def test_sigterm_drains_and_exits_0(green: Green) -> None:
    """Last in this module: it stops the worker."""
    worker = green.worker
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=60) == 0
    log = worker.log_text()
    assert "stopping: fetching stopped" in log
    assert "Traceback" not in log, log[-3000:]
