"""``zapi-queue forget --phone P``: after it, no Redis key (name or value, in any database)
holds the phone, another customer's records stay, and the report counts what went."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tasks.contract.ordering import order_keys
from tasks.state.deadletter import DeadLetterStore
from tasks.state.deliveries import DeliveryBook
from tasks.state.store import text
from tests.bodies import unique_body
from tests.cli import run_cli
from tests.faults import fault_stack
from tests.letters import dead_letter

pytestmark = pytest.mark.e2e

PHONE = "5511933334444"
OTHER = "5511955556666"
STATUS_TASK = "zapi.order_status_update"


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
            completed = run_cli(env, "forget", "--phone", "+55 11 93333-4444", "--json", *flags)
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
        "delivery_bodies": 0,
        "pacing_keys": 1,
        "queued_jobs": 0,
        "held_jobs": 0,
        "set_aside_items": 0,
        "unlinked_short_letters": 0,
        "revoked": 0,
    }
    assert left == []
    assert others, "another customer's records must stay"


MARIA = "5511977778888"
GREETING = "Oi Maria, seu pedido saiu"


def run_forget(env: dict[str, str]) -> dict[str, Any]:
    completed = run_cli(env, "forget", "--phone", MARIA, "--json")
    assert completed.returncode == 0, completed.stderr
    assert MARIA not in completed.stdout + completed.stderr
    answer: dict[str, Any] = json.loads(completed.stdout)
    return answer


def test_forget_removes_queued_jobs_in_the_queue_and_its_priority_lists(tmp_path: Path) -> None:
    """No worker yet: the jobs wait in the queue and in a priority sub-list (and a short
    update linked to nothing of hers stays). Erased means removed, not sent."""
    with fault_stack(tmp_path) as stack:
        queued = unique_body(phone=MARIA)
        urgent = unique_body(phone=MARIA, message=GREETING)
        other = unique_body(phone=OTHER)
        stack.producer.send_task(STATUS_TASK, args=[queued])
        stack.producer.send_task(STATUS_TASK, args=[urgent], priority=9)
        stack.producer.send_task(STATUS_TASK, args=[other])
        client = stack.redis.client()
        lists = [text(key) for key in client.scan_iter(match="celery*")]
        assert any("\x06\x16" in name for name in lists), lists  # a priority sub-list
        urls = [stack.env["CELERY_BROKER_URL"]]
        assert holds(urls, MARIA)
        assert holds(urls, GREETING)
        report = run_forget(stack.env)
        assert report["queued_jobs"] == 2
        assert holds(urls, MARIA) == []
        assert holds(urls, GREETING) == []
        assert holds(urls, OTHER), "another customer's job must stay queued"
        client.close()


def test_forget_finds_a_short_form_dead_letter_and_a_job_a_worker_holds(tmp_path: Path) -> None:
    """A delivered update whose delivery then failed leaves a DeliveryFailedError letter in
    short form (no phone: its order, an id with ':', and her message text), found through the
    order book; a job on a countdown sits in kombu's unacked hash, held by a live worker: it is
    removed and revoked, and not sent when its countdown ends."""
    with fault_stack(tmp_path) as stack:
        stack.worker()
        env = stack.env
        delivered = unique_body(phone=MARIA, orderRequestId="4N8:AB:C1", message=GREETING)
        [job] = stack.enqueue([delivered])
        assert stack.wait_all([job], timeout=30)[job] == "SUCCESS"
        reply = stack.producer.AsyncResult(job).get(timeout=5)
        client = stack.redis.client()
        book = DeliveryBook(client, instance_id=env["ZAPI_INSTANCE_ID"], ttl=3600)
        burial = book.apply(reply["messageId"], "failed", at=time.time(), error="no WhatsApp")
        assert burial is not None
        book.bury(burial, DeadLetterStore(client))
        [letter] = [letter for letter in DeadLetterStore(client) if letter.job_id == job]
        assert "phone" not in letter.body
        assert letter.body["message"] == GREETING

        # A short letter of an order the book never had: nothing ties it to any phone.
        orphan = dead_letter(
            "orphan:1",
            body={"orderRequestId": "4N8NOBOOK", "orderStatus": "shipped"},
            error_type="UnknownOrderError",
            error="order 4N8NOBOOK is not in the order book",
            attempts=0,
        )
        DeadLetterStore(client).add(orphan)

        later = unique_body(phone=MARIA)
        # Long enough that a loaded machine runs `forget` before it ends.
        countdown, sent_at = 15, time.monotonic()
        held = stack.producer.send_task(STATUS_TASK, args=[later], countdown=countdown)
        deadline = time.monotonic() + 10
        while not client.hlen("unacked") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.hlen("unacked") == 1, "the countdown job is not held by the worker"
        urls = [env["CELERY_BROKER_URL"], env["CELERY_RESULT_BACKEND"]]
        line = order_keys(env["ZAPI_INSTANCE_ID"], later["orderRequestId"])[0]
        assert client.zscore(line, held.id) is not None  # its place, taken as it was fetched

        report = run_forget(env)
        assert report["dead_letters"] == 1
        assert report["order_snapshots"] == 1
        assert report["unlinked_short_letters"] == 1
        assert DeadLetterStore(client).get("orphan:1") is not None
        assert report["held_jobs"] == 1
        assert report["revoked"] == 1
        assert client.zscore(line, held.id) is None, "the erased job still heads its order"
        assert holds(urls, MARIA) == []
        assert holds(urls, GREETING) == []
        time.sleep(max(0.0, sent_at + countdown + 2 - time.monotonic()))  # past the countdown
        sent = [r for r in stack.sim.requests() if r.message_id == later["messageId"]]
        assert sent == []
        assert str(stack.producer.AsyncResult(held.id).state) == "REVOKED"
        assert run_forget(env)["held_jobs"] == 0  # a second run finds nothing left
        client.close()
