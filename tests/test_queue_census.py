"""The per-instance count of waiting jobs reads real Celery messages, queued and fetched, and
says when a limit made it a lower bound."""

from __future__ import annotations

import json

import redis
from celery import Celery

from devtools.redis_server import RedisServer
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
