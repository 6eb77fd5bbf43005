"""``zapi-queue forget --phone P``: after it, no Redis key (name or value, in any database)
holds the phone, another customer's records stay, and the report counts what went."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tasks.state.deliveries import DeliveryBook
from tasks.state.store import text
from tests.bodies import unique_body
from tests.faults import fault_stack

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).parent / "zapi-queue")
PHONE = "5511933334444"
OTHER = "5511955556666"


def every_value(client: redis.Redis) -> list[str]:
    """Every key of the database, and everything it holds, as text."""
    found: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = text(client.type(key))
        values: list[Any]
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = [v for pair in client.hgetall(key).items() for v in pair]
        elif kind == "list":
            values = list(client.lrange(key, 0, -1))
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = list(client.zrange(key, 0, -1))
        else:
            values = []
        found.append(text(key))
        found += [text(value) for value in values if value is not None]
    return found


def holds(client_urls: list[str], phone: str) -> list[str]:
    hits = []
    for url in client_urls:
        client = redis.Redis.from_url(url)
        hits += [text[:120] for text in every_value(client) if phone in text]
        client.close()
    return hits


def test_forget_erases_every_trace_of_a_phone(tmp_path: Path) -> None:
    # Recipient pacing on, so that each phone also has a key named after it.
    with fault_stack(tmp_path, zapi_recipient_interval="120") as stack:
        stack.worker()
        env = stack.env
        delivered = unique_body(phone="+55 (11) 93333-4444")
        invalid = unique_body(phone=PHONE, orderStatus="delivered")  # a dead letter
        other = unique_body(phone=OTHER)
        jobs = stack.enqueue([delivered, invalid, other])
        states = stack.wait_all(jobs, timeout=30)
        assert [states[job] for job in jobs] == ["SUCCESS", "FAILURE", "SUCCESS"]
        # Z-API's callbacks for the delivered message: the record drops its body at "read".
        client = stack.redis.client()
        reply = stack.producer.AsyncResult(jobs[0]).get(timeout=5)
        book = DeliveryBook(client, instance_id=env["ZAPI_INSTANCE_ID"], ttl=3600)
        book.apply(reply["messageId"], "sent", at=time.time())
        book.apply(reply["messageId"], "read", at=time.time())
        urls = [env["CELERY_BROKER_URL"], env["CELERY_RESULT_BACKEND"]]
        assert holds(urls, PHONE), "the scenario left nothing to forget"

        def forget(*flags: str) -> dict[str, object]:
            completed = subprocess.run(
                [CLI, "forget", "--phone", "+55 11 93333-4444", "--json", *flags],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert completed.returncode == 0, completed.stderr
            answer: dict[str, object] = json.loads(completed.stdout)
            return answer

        dry = forget("--dry-run")
        assert holds(urls, PHONE), "a dry run erased something"
        report = forget()
        assert {**dry, "dry_run": False} == report
        left = holds(urls, PHONE)
        others = holds(urls, OTHER)
        client.close()

    assert report == {
        "phone": "55119*****444",
        "dry_run": False,
        "dead_letters": 1,
        "order_snapshots": 1,
        "delivery_states": 1,
        "idempotency_records": 1,
        "pacing_keys": 1,
        "queued_jobs_left": 0,
    }
    assert left == []
    assert others, "another customer's records must stay"
