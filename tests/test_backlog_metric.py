"""The backlog the exporter serves for autoscaling, with real workers and a real Prometheus:
every unfinished job counted in its state, and KEDA's replica count from the scaler's query.

The query is :data:`SCALER_QUERY`, the one deploy/kubernetes' ScaledObject runs (threshold 128, a
worker's concurrency); the replica count is computed as KEDA and the HPA do for an
``AverageValue`` target."""

from __future__ import annotations

import contextlib
import math
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from celery import Celery

from devtools.ports import free_port
from devtools.processes import ExporterProcess, stack_env
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from devtools.zapi_sim.switches import Fault
from tasks.contract.endpoints import Endpoint
from tasks.contract.producer import Producer
from tasks.state.keys import PRIORITY_SEP, QUEUE
from tasks.state.send_times import send_seconds_key
from tests.bodies import unique_body
from tests.conftest import SECRETS
from tests.faults import fault_stack
from tests.test_exporter import scrape, value
from tests.test_monitoring import prometheus_tool
from worker.queue_census import take_census

pytestmark = pytest.mark.e2e

#: The ScaledObject the manifests ship: its query, target per replica (a worker's
#: concurrency), activation threshold and bounds are what the test computes with.
SCALED_OBJECT = yaml.safe_load(
    (Path(__file__).parents[1] / "deploy/kubernetes/base/worker-scaledobject.yaml").read_text()
)
_TRIGGER = SCALED_OBJECT["spec"]["triggers"][0]["metadata"]
SCALER_QUERY: str = _TRIGGER["query"]
THRESHOLD = float(_TRIGGER["threshold"])
ACTIVATION_THRESHOLD = float(_TRIGGER["activationThreshold"])
MIN_REPLICAS: int = SCALED_OBJECT["spec"]["minReplicaCount"]
MAX_REPLICAS: int = SCALED_OBJECT["spec"]["maxReplicaCount"]

TASK = "zapi.order_status_update"


def keda_replicas(value: float) -> int:
    """What KEDA makes of the query's value: below or at the activation threshold the scaler
    is inactive (``MIN_REPLICAS``: zero only if the ScaledObject says so); active, the HPA asks
    ``ceil(value / threshold)`` replicas of an AverageValue target, within the bounds (at
    least 1)."""
    if value <= ACTIVATION_THRESHOLD:
        return MIN_REPLICAS
    return min(MAX_REPLICAS, max(MIN_REPLICAS, 1, math.ceil(value / THRESHOLD)))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_queued_scheduled_retrying_and_held_jobs_are_each_counted_in_their_state(
    tmp_path: Path,
) -> None:
    slow = {"zapi_timeout": "60", "celery_worker_lease": "90", "zapi_retry_backoff_max": "150"}
    with fault_stack(tmp_path, **slow) as stack:
        stack.sim.latency = 40.0  # the held jobs' sends last longer than the test needs
        env, broker = stack.env, stack.redis.client()
        label = env["ZAPI_INSTANCE_ID"]
        worker = stack.worker()
        with ExporterProcess(env, tmp_path / "exporter.log", port=free_port()) as exporter:
            producer = Producer(
                broker_url=env["CELERY_BROKER_URL"],
                result_backend=env["CELERY_RESULT_BACKEND"],
                instance_id=label,
            )
            # Held by the worker: two sends in flight, the first stamped by its producer.
            producer.enqueue(Endpoint.ORDER_STATUS_UPDATE, unique_body())
            enqueued = time.time()
            producer.close()
            stack.enqueue([unique_body()], until_requests=2)
            # Scheduled: a countdown, and a retry after Z-API's 500 with a Retry-After.
            stack.producer.send_task(TASK, args=[unique_body()], countdown=60)
            retrying = unique_body()
            stack.sim.script(retrying["messageId"], Fault(500, headers={"Retry-After": "120"}))
            stack.enqueue([retrying], until_requests=3)

            def held() -> bool:
                census = take_census(broker)
                return sum(census.in_workers.values()) == 2 and sum(census.scheduled.values()) == 2

            wait_until(held, 20, "2 jobs running and 2 scheduled in the worker")
            # Queued: the worker paused, 2 jobs in the queue (its blocked fetch may move one
            # into its processing list), one in a priority list, one for another instance.
            worker.freeze()
            stack.enqueue([unique_body(), unique_body()])
            stack.producer.send_task(TASK, args=[unique_body()], priority=5)
            stack.producer.send_task(TASK, args=[unique_body()], kwargs={"instance": "shop-b"})
            assert broker.keys(f"{QUEUE}{PRIORITY_SEP}*"), "no priority list was written"
            time.sleep(0.5)
            scraped_at = time.time()
            scraped, text = scrape(exporter.url)
            worker.thaw()
        broker.close()

    def backlog(state: str, instance: str = label) -> float:
        return value(scraped, "zapi_queue_backlog_jobs", instance=instance, state=state)

    assert (backlog("queued"), backlog("scheduled"), backlog("in_workers")) == (3, 2, 2)
    assert (backlog("queued", "shop-b"), backlog("scheduled", "shop-b")) == (1, 0)
    assert value(scraped, "zapi_queue_backlog_complete") == 1
    oldest = value(scraped, "zapi_queue_oldest_job_age_seconds")
    assert oldest >= scraped_at - enqueued  # the first held job, from its producer's stamp
    assert value(scraped, "zapi_queue_oldest_queued_job_age_seconds") < oldest
    assert value(scraped, "zapi_queue_backlog_drain_seconds", instance=label) == 7 / 1000
    # The retrying job's send (a quick 500) was timed by the worker, not the setting's 1.0 s.
    seconds = value(scraped, "zapi_queue_scaling_send_seconds", instance=label)
    assert 0 < seconds < 1.0
    scaling = value(scraped, "zapi_queue_scaling_backlog_jobs", instance=label)
    assert scaling == min(5, max(1.0, 1000 * seconds))  # due jobs: queued and in workers
    assert value(scraped, "zapi_queue_scaling_backlog_jobs", instance="shop-b") == 1
    assert not any(secret in text for secret in SECRETS)


@contextlib.contextmanager
def prometheus_scraping(target: str, tmp_path: Path) -> Iterator[str]:
    """The real Prometheus, scraping ``target`` every 3 s (a scrape pings the workers for
    a second); yields its base URL."""
    binary = prometheus_tool("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "3s", "scrape_timeout": "3s"},
                "scrape_configs": [
                    {"job_name": "exporter", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    with (tmp_path / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=20)


def query_value(prometheus: str, query: str, timeout: float = 30) -> float:
    """The query's value once Prometheus has scraped the exporter twice."""
    deadline = time.monotonic() + timeout
    seen: list[float] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5)
            result = answer.json()["data"]["result"] if answer.status_code == 200 else []
            if result:
                seen.append(float(result[0]["value"][1]))
                if len(seen) >= 2 and seen[-1] == seen[-2]:
                    return seen[-1]
        time.sleep(0.5)
    raise AssertionError(f"Prometheus gave no steady value for {query!r} (saw {seen})")


def scaler_replicas(env: dict[str, str], tmp_path: Path) -> tuple[float, int]:
    """The scaler query's value through Prometheus scraping an exporter of ``env``, and the
    replicas KEDA would ask for."""
    tmp_path.mkdir()
    port = free_port()
    with (
        ExporterProcess(env, tmp_path / "exporter.log", port=port),
        prometheus_scraping(f"127.0.0.1:{port}", tmp_path) as prometheus,
    ):
        found = query_value(prometheus, SCALER_QUERY)
    return found, keda_replicas(found)


def test_the_scaler_query_asks_for_what_the_rate_limit_keeps_busy(
    own_redis: RedisServer, zapi_sim: ZapiSimulator, tmp_path: Path
) -> None:
    prometheus_tool("prometheus")
    backlog_db, empty_db = 2, 4
    env = stack_env(own_redis.url, zapi_sim, db=backlog_db, ZAPI_SCALING_SEND_SECONDS="2")
    for db in (backlog_db, empty_db):
        own_redis.client(db=db).flushdb()
    producer = Celery(broker=env["CELERY_BROKER_URL"])
    for _ in range(1000):
        producer.send_task(TASK, args=[unique_body()])
    producer.close()
    state = own_redis.client(db=backlog_db)

    # (a) 1000 jobs, 100 sends/s at 2 s each (the workers' measured mean): 200 in flight
    # keep the limit busy, 2 workers of 128.
    state.set(send_seconds_key(zapi_sim.instance_id), "2.0", ex=600)
    high = scaler_replicas({**env, "ZAPI_RATE_LIMIT": "100"}, tmp_path / "high")
    assert high == (200, 2)
    # (b) The same backlog at 5 sends/s, no mean measured (the setting's 2 s): 10 in flight,
    # one worker; more would only wait for rate slots.
    state.delete(send_seconds_key(zapi_sim.instance_id))
    assert scaler_replicas({**env, "ZAPI_RATE_LIMIT": "5"}, tmp_path / "low") == (10, 1)
    # (c) Nothing to do: the scaler is not active, the fleet goes down to its minimum (zero
    # with minReplicaCount 0).
    empty = stack_env(own_redis.url, zapi_sim, db=empty_db)
    assert scaler_replicas(empty, tmp_path / "empty") == (0, MIN_REPLICAS)
    state.close()
