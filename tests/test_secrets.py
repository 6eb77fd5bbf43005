"""No secret reaches a log line, the result backend or any other key in Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from celery import Celery

from devtools.redis_server import RedisServer
from devtools.zapi_sim import Fault, ZapiSimulator
from tests.bodies import unique_body
from tests.conftest import CLIENT_TOKEN, SECRETS

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]


def every_redis_value(server: RedisServer) -> str:
    """All keys and values of databases 0 and 1, whatever their type, as one text."""
    parts: list[str] = []
    for db in (0, 1):
        client = server.client(db=db, decode_responses=True)
        for key in client.scan_iter(count=1000):
            parts.append(str(key))
            kind = client.type(key)
            if kind == "string":
                parts.append(str(client.get(key)))
            elif kind == "list":
                parts.extend(map(str, client.lrange(key, 0, -1)))
            elif kind == "hash":
                parts.extend(map(str, client.hgetall(key).items()))
            elif kind == "set":
                parts.extend(map(str, client.smembers(key)))
            elif kind == "zset":
                parts.extend(map(str, client.zrange(key, 0, -1)))
        client.close()
    return "\n".join(parts)


def test_no_secret_in_worker_logs_or_redis(
    producer: Celery, zapi_sim: ZapiSimulator, redis_server: RedisServer, worker_log: Path
) -> None:
    # Exercise every path that handles URLs, headers and error text: success, an echoed
    # Client-Token in a 403, a retried 5xx, a timeout and an invalid body.
    bodies = [unique_body() for _ in range(4)]
    zapi_sim.script(
        bodies[1]["messageId"],
        Fault(status=403, body={"error": f"Client-Token {CLIENT_TOKEN} not allowed"}),
    )
    zapi_sim.script(bodies[2]["messageId"], Fault(status=503), Fault(delay=2.0))
    results = [producer.send_task("zapi.order_status_update", args=[b]) for b in bodies]
    results.append(producer.send_task("zapi.order_payment_update", args=[{"phone": "x"}]))
    for result in results:
        result.get(timeout=30, propagate=False)
    assert [r.state for r in results] == ["SUCCESS", "FAILURE", "SUCCESS", "SUCCESS", "FAILURE"]
    # A job waiting for its next attempt sits in Redis too: leave one on a Retry-After.
    waiting = unique_body()
    zapi_sim.script(waiting["messageId"], Fault(status=429, headers={"Retry-After": "3"}))
    pending = producer.send_task("zapi.order_status_update", args=[waiting])
    deadline = time.monotonic() + 10
    while pending.state != "RETRY" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pending.state == "RETRY"

    log = worker_log.read_text()
    assert "delivered" in log  # the log is the one the worker writes to
    assert "/token/***/" in log or "order-status-update" in log
    for secret in SECRETS:
        assert secret not in log
    stored = every_redis_value(redis_server)
    assert "celery-task-meta-" in stored  # results are there to be searched
    for secret in SECRETS:
        assert secret not in stored
