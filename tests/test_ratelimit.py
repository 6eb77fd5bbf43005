"""One rate per Z-API instance, shared by every worker process, with Redis as the only clock."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from devtools.metrics import rate_figures
from devtools.processes import WorkerProcess, stack_env
from devtools.redis_server import RedisServer
from devtools.remote_sim import RemoteSimulator
from devtools.zapi_sim import Fault, ZapiSimulator
from tasks.state.ratelimit import RateLimiter
from tests.bodies import unique_body
from tests.conftest import CLIENT_TOKEN, INSTANCE_TOKEN, empty_db_fixture

_instances = itertools.count()


limiter_client = empty_db_fixture(3, name="limiter_client")


def make_limiter(client: object, **options: object) -> RateLimiter:
    return RateLimiter(client, instance_id=f"unit-{next(_instances)}", **options)  # type: ignore[arg-type]


def test_slots_are_spaced_one_interval_apart(limiter_client: object) -> None:
    limiter = make_limiter(limiter_client, rate=10)
    slots = [limiter.reserve().slot_us for _ in range(20)]
    gaps = {b - a for a, b in itertools.pairwise(slots)}
    assert gaps == {100_000}


def test_burst_allows_back_to_back_sends_then_spaces_them(limiter_client: object) -> None:
    limiter = make_limiter(limiter_client, rate=10, burst=3)
    reservations = [limiter.reserve() for _ in range(5)]
    waits = [round(r.wait, 2) for r in reservations]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.05 < waits[3] <= 0.1 < waits[4] <= 0.2


def test_penalize_moves_every_later_slot(limiter_client: object) -> None:
    limiter = make_limiter(limiter_client, rate=100)
    assert 2.9 < limiter.penalize(3.0, rate_limited=False) <= 3.0
    assert 2.9 < limiter.reserve().wait <= 3.0


def test_429s_in_a_row_pause_longer_each_time_up_to_the_cap(limiter_client: object) -> None:
    limiter = make_limiter(limiter_client, rate=100, penalty_base=0.1, penalty_cap=0.5)
    pauses = []
    for _ in range(5):
        pauses.append(limiter.penalize(None, rate_limited=True))
        time.sleep(pauses[-1] + 0.01)  # the next 429 answers a request sent after the pause
    assert [round(p, 1) for p in pauses] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_a_burst_of_429s_during_one_pause_is_one_strike(limiter_client: object) -> None:
    limiter = make_limiter(limiter_client, rate=100, penalty_base=1.0, penalty_cap=60)
    pauses = [limiter.penalize(None, rate_limited=True) for _ in range(20)]
    assert max(pauses) <= 1.0


def test_a_429_with_retry_after_waits_at_least_what_z_api_asked(limiter_client: object) -> None:
    limiter = make_limiter(limiter_client, rate=100, penalty_base=0.1)
    assert 4.9 < limiter.penalize(5.0, rate_limited=True) <= 5.0


def test_recipient_pacing_defers_the_same_phone_only(limiter_client: object) -> None:
    limiter = make_limiter(limiter_client, rate=100, recipient_interval=5.0)
    first = limiter.reserve("5511999999999")
    second = limiter.reserve("5511999999999")
    other = limiter.reserve("5511888888888")
    assert first.granted
    assert other.granted
    assert not second.granted
    assert 4.9 < second.wait <= 5.0


def test_schedule_keys_expire(limiter_client: object) -> None:
    limiter = make_limiter(limiter_client, rate=1)
    limiter.reserve()
    ttl = limiter_client.pttl(limiter.instance_key)  # type: ignore[attr-defined]
    assert 0 < ttl <= 2000


def test_limiter_keeps_working_across_a_redis_restart() -> None:
    with RedisServer() as server:
        client = server.client()
        limiter = make_limiter(client, rate=10)
        assert limiter.reserve().granted
        server.stop()
        server.start()  # same port, empty: the script cache is gone too
        assert limiter.reserve().granted
        assert limiter.reserve().wait > 0.05
        client.close()


# -- end to end: several worker processes against a fake Z-API enforcing the same rate ----------

RATE = 20
BURST = 1
WORKERS = 3


@pytest.fixture(scope="module")
def strict_sim() -> Iterator[RemoteSimulator]:
    # In its own process: its clock stamps arrivals without waiting for this process' GIL.
    with RemoteSimulator(
        instance_id="rate-instance",
        instance_token=INSTANCE_TOKEN,
        client_token=CLIENT_TOKEN,
        rate_limit=RATE,
        rate_burst=BURST,
        latency=0.02,
    ) as sim:
        yield sim


@pytest.fixture(scope="module")
def rate_env(redis_server: RedisServer, strict_sim: RemoteSimulator) -> dict[str, str]:
    return stack_env(
        redis_server.url,
        strict_sim,
        db=4,
        zapi_rate_limit=str(RATE),
        zapi_rate_burst=str(BURST),
        zapi_retry_backoff="0.05",
        worker_concurrency="8",
    )


@pytest.fixture(scope="module")
def rate_workers(
    rate_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    logs = tmp_path_factory.mktemp("rate-workers")
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(WorkerProcess(rate_env, Path(logs) / f"worker-{i}.log"))
            for i in range(WORKERS)
        ]


@pytest.fixture(scope="module")
def rate_producer(rate_env: dict[str, str]) -> Iterator[Celery]:
    app = Celery(broker=rate_env["CELERY_BROKER_URL"], backend=rate_env["CELERY_RESULT_BACKEND"])
    yield app
    app.close()


@pytest.mark.e2e
@pytest.mark.timing
@pytest.mark.usefixtures("rate_workers")
def test_workers_share_one_rate_and_z_api_never_refuses(
    rate_producer: Celery, strict_sim: RemoteSimulator
) -> None:
    # Warm every worker thread's connections and code paths, as a running fleet would be: a
    # thread's first job opens its result-backend connection and loads the scripts there, and
    # that first-use work, racing the sends of warm threads, made a send late enough now and
    # then to put 22 in Z-API's one-second window (3 workers x 8 threads, so 30 warm jobs).
    warm = [
        rate_producer.send_task("zapi.order_status_update", args=[unique_body()]) for _ in range(30)
    ]
    for result in warm:
        result.get(timeout=30)
    time.sleep(1.5)  # let the warm-up sends leave the fake's one-second window
    strict_sim.reset()
    jobs = 100
    results = [
        rate_producer.send_task("zapi.order_status_update", args=[unique_body()])
        for _ in range(jobs)
    ]
    states = [r.get(timeout=60, propagate=False) and r.state for r in results]

    figures = rate_figures([(r.received_at, r.status) for r in strict_sim.requests()])
    assert states == ["SUCCESS"] * jobs
    assert figures.refused_429 == 0
    assert figures.accepted == jobs
    assert figures.busiest_second <= RATE + BURST
    assert figures.achieved_rate >= 0.9 * RATE


@pytest.mark.e2e
@pytest.mark.timing
@pytest.mark.usefixtures("rate_workers")
def test_a_429_pauses_every_worker_for_its_retry_after(
    rate_producer: Celery, strict_sim: RemoteSimulator
) -> None:
    strict_sim.reset()
    throttled = unique_body()
    strict_sim.script(throttled["messageId"], Fault(status=429, headers={"Retry-After": "2"}))
    first = rate_producer.send_task("zapi.order_status_update", args=[throttled])
    first.get(timeout=30, propagate=False)
    others = [
        rate_producer.send_task("zapi.order_status_update", args=[unique_body()]) for _ in range(10)
    ]
    for result in [first, *others]:
        result.get(timeout=30, propagate=False)
        assert result.state == "SUCCESS"

    received = strict_sim.requests()
    refusal = next(r for r in received if r.status == 429)
    later = [r.received_at - refusal.received_at for r in received if r is not refusal]
    assert len(later) == 11
    assert min(later) >= 1.9  # nobody, on any worker, sent during the pause


@pytest.mark.e2e
@pytest.mark.timing
def test_recipient_pacing_spaces_sends_to_one_phone(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    interval = 1.0
    with ZapiSimulator(
        instance_id="pacing-instance", instance_token=INSTANCE_TOKEN, client_token=CLIENT_TOKEN
    ) as sim:
        env = stack_env(
            redis_server.url,
            sim,
            db=6,
            zapi_rate_limit="100",
            zapi_recipient_interval=str(interval),
        )
        app = Celery(broker=env["CELERY_BROKER_URL"], backend=env["CELERY_RESULT_BACKEND"])
        with WorkerProcess(env, tmp_path / "worker.log"):
            same = [unique_body(phone="5511900000001") for _ in range(3)]
            others = [unique_body(phone=f"55119000001{i:02d}") for i in range(3)]
            results = [app.send_task("zapi.order_status_update", args=[b]) for b in same + others]
            for result in results:
                result.get(timeout=30, propagate=False)
                assert result.state == "SUCCESS"
        app.close()
        by_phone: dict[str, list[float]] = {}
        for request in sim.requests():
            by_phone.setdefault(request.json["phone"], []).append(request.received_at)
    paced = sorted(by_phone["5511900000001"])
    assert len(paced) == 3
    assert all(b - a >= interval * 0.95 for a, b in itertools.pairwise(paced)), [
        b - a for a, b in itertools.pairwise(paced)
    ]
    first = min(t for times in by_phone.values() for t in times)
    starts = {p: round(t[0] - first, 3) for p, t in by_phone.items()}
    assert all(s < interval for p, s in starts.items() if p != "5511900000001"), starts


@pytest.mark.e2e
@pytest.mark.timing
def test_a_far_slot_reschedules_the_job_which_keeps_its_place(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Jobs whose slot is beyond ZAPI_RATE_MAX_WAIT are re-scheduled for it, not slept for."""
    with ZapiSimulator(
        instance_id="defer-instance", instance_token=INSTANCE_TOKEN, client_token=CLIENT_TOKEN
    ) as sim:
        env = stack_env(redis_server.url, sim, db=8, zapi_rate_limit="5", zapi_rate_max_wait="0.3")
        app = Celery(broker=env["CELERY_BROKER_URL"], backend=env["CELERY_RESULT_BACKEND"])
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            results = [
                app.send_task("zapi.order_status_update", args=[unique_body()]) for _ in range(6)
            ]
            for result in results:
                result.get(timeout=30)
            log = worker.log_text()
        app.close()
        times = sorted(r.received_at for r in sim.requests())

    assert len(times) == 6
    assert all(b - a >= 0.2 * 0.9 for a, b in itertools.pairwise(times))
    assert "waiting" in log  # some jobs were re-scheduled for their slot (shown as RETRY)
    assert "rate limit" in log
