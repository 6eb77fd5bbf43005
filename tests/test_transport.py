"""Reliable fetch (worker/transport.py) against a real Redis: a fetched message is always in Redis.

The in-process tests drive the transport through kombu's public API (``SimpleQueue``) and read
Redis directly; the last test SIGKILLs a real worker at the exact moment kombu's stock transport
would lose the message, and checks that another worker still delivers it, once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection
from kombu.simple import SimpleQueue

import worker.transport
from config import Settings
from devtools.ports import free_port
from devtools.redis_server import RedisServer
from tests.bodies import unique_body
from tests.faults import WORKER_LEASE, fault_stack
from worker.celery_app import broker_transport_config, create_app
from worker.fetch_scripts import (
    HOLDERS_KEY,
    LEASES_KEY,
    MAX_TAKE,
    OWNERS_KEY,
    REJECTED_KEY,
    SOURCES_KEY,
)
from worker.transport import Transport, redis_version

DB = 12
QUEUE = "orders"
LEASE = 2


@pytest.fixture
def db(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client(db=DB, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def url(redis_server: RedisServer, db: redis.Redis) -> str:
    return f"{redis_server.url}/{DB}"


def reliable(url: str) -> Connection:
    options = {
        "fetch_lease": LEASE,
        "visibility_timeout": 3600,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    return Connection(url, transport=Transport, transport_options=options)


def publish(url: str, body: dict[str, Any], **options: Any) -> None:
    """Publish the way a producer does: kombu's stock Redis transport."""
    with Connection(url) as producer:
        producer.SimpleQueue(QUEUE).put(body, **options)


def get(connection: Connection, timeout: float = 5) -> Any:
    return connection.SimpleQueue(QUEUE).get(timeout=timeout)


def processing_lists(db: redis.Redis, queue: str | None = None) -> list[str]:
    """The processing lists (of ``queue`` only, if given: a control client's reply queue in
    this process has one too)."""
    lists = [str(key) for key in db.zrange(LEASES_KEY, 0, -1)]
    return [key for key in lists if queue is None or key.startswith(f"{LEASES_KEY}.{queue}.")]


def fetched_not_claimed(url: str, db: redis.Redis, connection: Connection, body: Any) -> str:
    """Put ``body`` in ``connection``'s processing list, as a fetch whose claim never came.

    One message is consumed first, so that the channel has its processing list. Returns it."""
    publish(url, {"n": "first"})
    get(connection).ack()
    [processing] = processing_lists(db)
    publish(url, body)
    db.lmove(QUEUE, processing, "RIGHT", "LEFT")
    return processing


def test_a_fetched_message_is_recorded_unacked_and_leaves_the_processing_list(
    url: str, db: redis.Redis
) -> None:
    publish(url, {"n": 1})
    with reliable(url) as connection:
        message = get(connection)
        assert message.payload == {"n": 1}
        [processing] = processing_lists(db)
        assert db.llen(processing) == 0
        assert db.hkeys("unacked") == [message.delivery_tag]
        message.ack()
        assert db.hlen("unacked") == 0
        assert db.hlen(HOLDERS_KEY) == 0


def test_acks_and_publishes_share_one_client_per_connection_pool(url: str, db: redis.Redis) -> None:
    """Kombu builds a redis.Redis for every ack and publish (as costly as the round trip); the
    channel keeps one per pool, and a new pool (after a fork or a close) gets a new one."""
    with reliable(url) as connection:
        channel: Any = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.connection_pool is channel.pool
        given = redis.Redis()
        with channel.conn_or_acquire(given) as client:
            assert client is given
        for n in range(3):
            publish(url, {"n": n})
            get(connection).ack()
        with channel.conn_or_acquire() as still:
            assert still is first
        channel._disconnect_pools()  # what kombu does after a fork
        with channel.conn_or_acquire() as renewed:
            assert renewed is not first
            assert renewed.connection_pool is channel.pool
            assert renewed.ping()
        given.close()


def test_a_closed_channels_lease_is_forgotten_once_it_runs_out(url: str, db: redis.Redis) -> None:
    """Closing does no I/O of its own when nothing is left to give back: its lease runs out,
    and the next sweep anywhere forgets it."""
    publish(url, {"n": 1})
    with reliable(url) as connection:
        get(connection).ack()
        [closed] = processing_lists(db)
    with reliable(url) as other:
        with pytest.raises(SimpleQueue.Empty):
            get(other, timeout=LEASE * 3)
        assert processing_lists(db) == [f"{LEASES_KEY}.{QUEUE}.{other.default_channel._token}"]  # type: ignore[attr-defined]
    assert closed not in processing_lists(db)
    assert db.hlen(SOURCES_KEY) == len(processing_lists(db))


def test_lower_priorities_are_fetched_too(url: str, db: redis.Redis) -> None:
    publish(url, {"n": "low"}, priority=6)  # kombu stores it in its own list, "orders\x06\x166"
    assert db.llen(QUEUE) == 0
    publish(url, {"n": "high"})
    with reliable(url) as connection:
        first, second = get(connection), get(connection)
        assert [first.payload, second.payload] == [{"n": "high"}, {"n": "low"}]
        first.ack()
        second.ack()


def test_lower_priorities_are_promoted_at_each_claim_not_once_per_idle_second(
    url: str, db: redis.Redis
) -> None:
    for n in range(3):
        publish(url, {"n": n}, priority=6)
    with reliable(url) as connection:
        get(connection).ack()
        # The claim moved the next one up: the following fetch does not wait for a timeout.
        assert db.llen(QUEUE) == 1
        assert [get(connection, timeout=0.5).payload["n"] for _ in range(2)] == [1, 2]


def test_a_backlog_is_taken_several_at_a_time_and_claimed_together(
    url: str, db: redis.Redis
) -> None:
    with reliable(url) as connection:
        consumer = connection.SimpleQueue(QUEUE)
        # One message first: the scripts are loaded (a fresh Redis answers NOSCRIPT once each).
        publish(url, {"n": "first"})
        consumer.get(timeout=5).ack()
        with Connection(url) as producer:
            queue = producer.SimpleQueue(QUEUE)
            for n in range(40):
                queue.put({"n": n})
        db.config_resetstat()
        messages = [consumer.get(timeout=5) for _ in range(40)]
        calls = {
            name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in db.info("commandstats").items()
        }
        assert [m.payload["n"] for m in messages] == list(range(40))  # in order, once each
        assert db.hlen("unacked") == 40
        assert db.hlen(HOLDERS_KEY) == 40
        [processing] = processing_lists(db)
        assert db.llen(processing) == 0
        # One blocking fetch, then takes of up to MAX_TAKE, each claimed in one script.
        fetches = calls.get("blmove", 0) + calls.get("eval", 0)
        assert fetches <= 40 // MAX_TAKE + 3, calls
        assert calls.get("evalsha", 0) <= 40 // MAX_TAKE + 3, calls
        for message in messages:
            message.ack()
        assert db.hlen("unacked") == 0
        assert db.hlen(HOLDERS_KEY) == 0


def line_of(payload: dict[str, Any]) -> tuple[str, str, str, None, int, bool]:
    """An ``arrival_index`` for the test: every message stands in one line, as its ``job``."""
    return "test-line", "test-line-jobs", payload["headers"]["job"], None, 600, False


def test_messages_claimed_together_stand_in_line_in_the_order_fetched(
    url: str, db: redis.Redis
) -> None:
    jobs = ["c", "b", "a"]  # not in the members' own (lexicographic) order
    with Connection(url) as producer:
        queue = producer.SimpleQueue(QUEUE)
        for job in jobs:
            queue.put({"job": job}, headers={"job": job})
    options = {"fetch_lease": LEASE, "arrival_index": f"{__name__}:line_of"}
    with Connection(url, transport=Transport, transport_options=options) as connection:
        consumer = connection.SimpleQueue(QUEUE)
        messages = [consumer.get(timeout=5) for _ in jobs]
        assert db.zrange("test-line", 0, -1) == jobs
        for message in messages:
            message.ack()


def test_a_take_never_exceeds_the_free_prefetch_slots(url: str, db: redis.Redis) -> None:
    with Connection(url) as producer:
        queue = producer.SimpleQueue(QUEUE)
        for n in range(10):
            queue.put({"n": n})
    with reliable(url) as connection:
        channel: Any = connection.default_channel
        taken: list[int] = []
        consumer = connection.Consumer(
            connection.SimpleQueue(QUEUE).queue, callbacks=[lambda body, m: taken.append(m)]
        )
        consumer.qos(prefetch_count=3)
        with consumer:
            deadline = time.monotonic() + 5
            while len(taken) < 3 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError, socket.timeout):
                    connection.drain_events(timeout=0.2)
            with contextlib.suppress(TimeoutError, socket.timeout):
                connection.drain_events(timeout=0.5)  # full: nothing more may come
            assert len(taken) == 3
            assert db.hlen("unacked") == 3
            assert db.llen(QUEUE) == 7
            assert not channel.qos.can_consume()
            for message in taken:
                message.ack()  # type: ignore[attr-defined]


def test_a_no_ack_consumer_leaves_no_unacked_record(url: str, db: redis.Redis) -> None:
    publish(url, {"n": 1})
    with reliable(url) as connection:
        message = connection.SimpleQueue(QUEUE, no_ack=True).get(timeout=5)
        assert message.payload == {"n": 1}
        assert db.hlen("unacked") == 0
        [processing] = processing_lists(db)
        assert db.llen(processing) == 0


def test_an_item_that_is_not_a_message_is_set_aside_not_retried(url: str, db: redis.Redis) -> None:
    publish(url, {"n": "valid"})
    db.rpush(QUEUE, "not json", '{"properties": {}}')  # both ahead of the valid message
    with reliable(url) as connection:
        message = get(connection)
        assert message.payload == {"n": "valid"}
        message.ack()
    assert db.lrange(REJECTED_KEY, 0, -1) == ["not json", '{"properties": {}}']  # newest first
    assert db.llen(QUEUE) == 0


def test_a_message_left_by_a_lost_reply_is_returned_and_fetched(url: str, db: redis.Redis) -> None:
    with reliable(url) as connection:
        # As if the connection dropped with BLMOVE's reply in flight: moved, never received.
        processing = fetched_not_claimed(url, db, connection, {"n": 2})
        message = get(connection)
        assert message.payload == {"n": 2}
        message.ack()
        assert db.llen(processing) == 0


def another_workers_fetch(url: str, db: redis.Redis, body: Any, lease_left: float) -> str:
    """A message another worker fetched into its processing list, with ``lease_left`` seconds of
    lease (negative: expired, the worker is gone). Returns that processing list."""
    publish(url, body)
    processing = f"{LEASES_KEY}.{QUEUE}.other-host.1.abc"
    db.lmove(QUEUE, processing, "RIGHT", "LEFT")
    db.hset(SOURCES_KEY, processing, QUEUE)
    seconds, _ = db.time()
    db.zadd(LEASES_KEY, {processing: seconds + lease_left})
    return processing


def test_a_dead_workers_processing_list_goes_back_after_its_lease(
    url: str, db: redis.Redis
) -> None:
    dead = another_workers_fetch(url, db, {"n": "orphan"}, lease_left=-1)
    with reliable(url) as connection:
        message = get(connection, timeout=8)
        assert message.payload == {"n": "orphan"}
        message.ack()
        assert not db.exists(dead)
        # Tracked for one more lease (its owner may only have stalled), then forgotten.
        seconds, _ = db.time()
        assert float(db.zscore(LEASES_KEY, dead) or 0) > seconds


def test_a_dead_workers_unacked_jobs_are_taken_over_after_its_lease(
    url: str, db: redis.Redis
) -> None:
    """Long before the visibility timeout (an hour here): as soon as the owner's lease ran out."""
    dead = another_workers_fetch(url, db, {"n": "started"}, lease_left=-1)
    raw = db.rpop(dead)  # the dead worker had claimed it: unacked, and in its owned set
    payload = json.loads(str(raw))
    tag = payload["properties"]["delivery_tag"]
    db.hset("unacked", tag, json.dumps([payload, QUEUE, QUEUE]))
    db.zadd("unacked_index", {tag: time.time()})
    db.hset(OWNERS_KEY, dead, "owned-by-the-dead")
    db.sadd("owned-by-the-dead", tag)
    with reliable(url) as connection:
        message = get(connection, timeout=8)
        assert message.payload == {"n": "started"}
        assert message.delivery_info["redelivered"] is True
        message.ack()
    assert db.hlen("unacked") == 0
    assert not db.exists("owned-by-the-dead")


def test_a_live_workers_processing_list_is_left_alone(url: str, db: redis.Redis) -> None:
    alive = another_workers_fetch(url, db, {"n": "in flight"}, lease_left=60)
    with reliable(url) as connection, pytest.raises(SimpleQueue.Empty):
        get(connection, timeout=3)  # several restore sweeps run meanwhile
    assert db.llen(alive) == 1


def test_a_message_left_in_a_closed_channels_list_is_delivered_after_its_lease(
    url: str, db: redis.Redis
) -> None:
    """Closing does no I/O of its own (a half-open broker would hang it): a message a lost
    reply left in the processing list goes back with the lease."""
    with reliable(url) as connection:
        processing = fetched_not_claimed(url, db, connection, {"n": 2})
    assert db.llen(processing) == 1
    with reliable(url) as other:
        message = get(other, timeout=LEASE * 4)
        assert message.payload == {"n": 2}
        message.ack()
    assert not db.exists(processing)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our transports registered as a worker registers them, for this test only."""
    import kombu.transport

    monkeypatch.setattr(
        kombu.transport, "TRANSPORT_ALIASES", dict(kombu.transport.TRANSPORT_ALIASES)
    )
    monkeypatch.setattr(kombu.transport, "_transport_cache", {})
    worker.transport.register()


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize(
    ("url", "ours"),
    [
        ("redis://127.0.0.1:1/0", worker.transport.Transport),
        ("rediss://redis.example:6380/0", worker.transport.Transport),
        ("sentinel://127.0.0.1:1/0;sentinel://127.0.0.1:2/0", worker.transport.SentinelTransport),
    ],
)
def test_the_app_uses_reliable_fetch_for_every_redis_broker(url: str, ours: type) -> None:
    app = create_app(Settings(celery_broker_url=url, redis_sentinel_master="mymaster"))
    with app.connection_for_write() as connection:
        assert type(connection.transport) is ours
        # The URL keeps its scheme (Flower's broker view reads it), its password hidden.
        assert connection.as_uri().startswith(url.split(":", 1)[0] + "://")
    assert bool(broker_transport_config(url).get("broker_use_ssl")) == url.startswith("rediss")


@pytest.mark.usefixtures("registered")
@pytest.mark.parametrize(
    ("urls", "ours"),
    [
        ("redis://127.0.0.1:1/0;redis://127.0.0.1:2/0", worker.transport.Transport),
        ("sentinel://127.0.0.1:1/0;sentinel://127.0.0.1:2/0", worker.transport.SentinelTransport),
    ],
)
def test_kombus_failover_to_the_next_url_keeps_reliable_fetch(urls: str, ours: type) -> None:
    """kombu re-reads the scheme of the URL it fails over to; the app's transports stay ours."""
    app = create_app(Settings(celery_broker_url=urls, redis_sentinel_master="mymaster"))
    connection = app.connection_for_write()
    assert type(connection.transport) is ours
    connection.switch(urls.split(";")[1])  # what kombu does after a connection error
    assert type(connection.transport) is ours
    connection.close()


def test_a_sentinel_broker_and_backend_know_the_master() -> None:
    settings = Settings(
        celery_broker_url="sentinel://:pw@h1:26379/0;sentinel://h2:26379/0",
        celery_result_backend="sentinel://:pw@h1:26379/1;sentinel://h2:26379/1",
        redis_sentinel_master="mymaster",
        redis_sentinel_password="sentinel-pw",
    )
    app = create_app(settings)
    for options in (app.conf.broker_transport_options, app.conf.result_backend_transport_options):
        assert options["master_name"] == "mymaster"
        assert options["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert type(app.backend).__name__ == "GuardedSentinelBackend"


def test_redis_version_is_read_from_info() -> None:
    assert redis_version({"redis_version": "6.2.14"}) == (6, 2, 14)
    assert redis_version({"redis_version": "6.0.9"}) < (6, 2)
    assert redis_version({}) >= (6, 2)


# Loaded into one worker by PYTHONPATH: it dies right after BLMOVE took a message, before the
# claim recorded it as unacked: with kombu's stock transport (BRPOP), that message is gone.
DIE_BEFORE_CLAIM = """
import os, signal, sys
if "gevent" in sys.argv:  # WORKER_POOL=gevent, re-executed: gevent must patch before kombu loads
    from gevent import monkey
    monkey.patch_all()
import worker.transport

def die_before_claim(self, queue, processing, item):
    os.kill(os.getpid(), signal.SIGKILL)

worker.transport.Channel._claim_and_deliver = die_before_claim
"""


@pytest.mark.e2e
def test_worker_killed_between_fetch_and_claim_loses_nothing(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(DIE_BEFORE_CLAIM)
    with fault_stack(tmp_path) as stack:
        doomed = stack.worker(pythonpath=str(hook))
        body = unique_body()
        [job] = stack.enqueue([body])
        deadline = time.monotonic() + 15
        while doomed.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not doomed.running

        db = stack.redis.client(decode_responses=True)
        [processing] = processing_lists(db, "celery")
        # Killed in the window: the message is neither queued nor unacked, only fetched.
        assert (db.llen("celery"), db.hlen("unacked"), db.llen(processing)) == (0, 0, 1)
        killed_at = time.monotonic()
        stack.worker()
        states = stack.wait_all([job], timeout=WORKER_LEASE + 30)

        assert states[job] == "SUCCESS"
        assert stack.delivered_per_message()[body["messageId"]] == 1
        # Within the lease, one sweep, a worker's start and a send.
        assert stack.finished_at[job] - killed_at < WORKER_LEASE + 15
        assert db.llen(processing) == 0


# -- ownership and Redis errors ------------------------------------------------------------------


def stall(connection: Connection, db: redis.Redis) -> None:
    """As if the worker behind ``connection`` froze (SIGSTOP, a paused VM) past its lease."""
    channel: Any = connection.default_channel
    channel._lease_keeper.stop()
    for processing in processing_lists(db):
        db.zadd(LEASES_KEY, {processing: 0})


def taken_over(url: str, db: redis.Redis, stalled: Connection) -> tuple[Connection, Any]:
    """Another worker takes the stalled one's job over and holds it."""
    stall(stalled, db)
    other = reliable(url)
    message = get(other, timeout=10)
    assert message.delivery_info["redelivered"] is True
    return other, message


@pytest.mark.parametrize("settle", ["ack", "requeue"])
def test_a_stale_settle_cannot_undo_a_job_another_worker_took_over(
    url: str, db: redis.Redis, settle: str
) -> None:
    """The stalled worker resumes and finishes its copy: its ack cannot delete the job, nor its
    re-queue duplicate it, now that another worker holds it."""
    publish(url, {"n": "contested"})
    with reliable(url) as stalled:
        stale = get(stalled)
        other, current = taken_over(url, db, stalled)
        with other:
            getattr(stale, settle)()
            assert db.llen(QUEUE) == 0
            assert db.hkeys("unacked") == [current.delivery_tag]
            current.ack()
            assert db.hlen("unacked") == 0
            assert db.hlen(HOLDERS_KEY) == 0


def test_a_live_workers_job_is_not_restored_by_the_visibility_timeout(
    url: str, db: redis.Redis
) -> None:
    """Leases keep a held job's index fresh: an eta beyond the timeout stays with its worker."""
    options = {"fetch_lease": 3, "visibility_timeout": 2, "unacked_restore_interval": 1}
    publish(url, {"n": "held"})
    with Connection(url, transport=Transport, transport_options=options) as holder:
        message = get(holder)
        other = Connection(url, transport=Transport, transport_options=options)
        with other, pytest.raises(SimpleQueue.Empty):
            get(other, timeout=5)  # several sweeps, each past the visibility timeout
        assert db.hkeys("unacked") == [message.delivery_tag]
        message.ack()


def poll(queue: SimpleQueue, seconds: float) -> Any:
    """The next message, asking once a second (a backing-off fetch sends nothing meanwhile)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return queue.get(timeout=1)
        except SimpleQueue.Empty:
            if time.monotonic() > deadline:
                raise


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of its own: these tests make it refuse writes."""
    with RedisServer() as server:
        yield server


def test_a_fetch_refused_for_lack_of_memory_backs_off_and_resumes(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{private_redis.url}/0"
    admin = private_redis.client()
    publish(url, {"n": "after the pressure"})
    with reliable(url) as connection:
        queue = connection.SimpleQueue(QUEUE)  # declared before: a consumer that is running
        admin.config_set("maxmemory", 1)  # noeviction: every write is refused
        for _ in range(3):
            with pytest.raises(SimpleQueue.Empty):
                queue.get(timeout=1)
        admin.config_set("maxmemory", 0)
        message = poll(queue, seconds=10)  # as Celery's event loop does, a tick at a time
        assert message.payload == {"n": "after the pressure"}
        message.ack()
    refusals = [r for r in caplog.records if "Redis failed" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]  # one line per episode
    assert "(OOM: " in refusals[0].getMessage()  # the protocol's code, on Redis 6.2 and 7
    assert any("fetching resumed" in r.getMessage() for r in caplog.records)


def test_an_ack_redis_refuses_is_kept_and_retried_at_the_next_sweep(
    private_redis: RedisServer,
) -> None:
    url = f"{private_redis.url}/0"
    admin = private_redis.client()
    publish(url, {"n": 1})
    with reliable(url) as connection:
        message = get(connection)
        admin.replicaof("127.0.0.1", free_port())  # READONLY from now on
        try:
            message.ack()  # no exception reaches the task thread
            assert admin.hlen("unacked") == 1
        finally:
            admin.replicaof("NO", "ONE")
        channel: Any = connection.default_channel
        channel.qos.restore_visible()
        assert admin.hlen("unacked") == 0
