"""The per-instance count of waiting jobs reads real Celery messages, queued and fetched, and
says when a limit made it a lower bound."""

from __future__ import annotations

import json

import redis
from celery import Celery

from devtools.redis_server import RedisServer
from tasks.state.keys import LEASES_KEY, PRIORITY_SEP, SOURCES_KEY
from tests.bodies import unique_body
from tests.conftest import empty_db_fixture
from worker.queue_census import QUEUE, UNACKED_KEY, take_census

DB = 13


client = empty_db_fixture(DB)


def test_jobs_are_counted_by_instance_in_the_queue_and_in_the_workers(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    producer = Celery(broker=f"{redis_server.url}/{DB}")
    task = "zapi.order_status_update"
    for alias in (None, "shop-b", "shop-b", 7):  # 7: not an alias, the job's default instance
        kwargs = {} if alias is None else {"instance": alias}
        producer.send_task(task, args=[unique_body()], kwargs=kwargs)
    producer.close()
    # A message a worker fetched sits in kombu's unacked hash as [message, exchange, key].
    fetched = client.rpop(QUEUE)
    assert isinstance(fetched, bytes)
    client.rpush(QUEUE, "not json", json.dumps({"no": "body"}))
    client.hset(UNACKED_KEY, "tag-1", json.dumps([json.loads(fetched), "", "celery"]))

    census = take_census(client)
    assert census.queued + census.in_workers == {"default": 2, "shop-b": 2}
    assert sum(census.in_workers.values()) == 1
    assert census.complete

    partial = take_census(client, limit=2)
    assert sum(partial.queued.values()) <= 2
    assert not partial.complete


def test_priority_and_processing_lists_are_queued_and_an_eta_ahead_is_scheduled(
    redis_server: RedisServer, client: redis.Redis
) -> None:
    producer = Celery(broker=f"{redis_server.url}/{DB}")
    task = "zapi.order_status_update"
    producer.send_task(task, args=[unique_body()], priority=5)  # kombu's priority list
    producer.send_task(task, args=[unique_body()], kwargs={"instance": "shop-b"}, countdown=600)
    producer.send_task(task, args=[unique_body()], kwargs={"instance": "shop-b"}, countdown=-5)
    producer.send_task(task, args=[unique_body()], kwargs={"instance": "shop-c"})
    producer.close()
    assert len(client.keys(f"{QUEUE}{PRIORITY_SEP}*")) == 1
    assert client.llen(QUEUE) == 3
    # Fetched by workers: an eta 10 minutes ahead, an eta past; and one in a processing list.
    ahead, past = client.rpop(QUEUE), client.rpop(QUEUE)
    for tag, message in (("tag-1", ahead), ("tag-2", past)):
        assert isinstance(message, bytes)
        client.hset(UNACKED_KEY, tag, json.dumps([json.loads(message), "", "celery"]))
    processing = f"{LEASES_KEY}.{QUEUE}.host.1.abc"
    client.lmove(QUEUE, processing, "RIGHT", "LEFT")
    client.hset(SOURCES_KEY, processing, QUEUE)

    census = take_census(client, track=10)
    assert census.queued == {"default": 1, "shop-c": 1}
    assert census.scheduled == {"shop-b": 1}
    assert census.in_workers == {"shop-b": 1}
    assert census.fetched == {"shop-b": 2}  # what health calls in workers
    assert list(census.unstamped.values()).count(False) == 1  # the scheduled job's
    assert len(census.unstamped) == 4
    assert census.complete
    assert len(take_census(client, track=2).unstamped) == 2
