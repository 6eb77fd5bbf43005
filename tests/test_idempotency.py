"""The same job enqueued twice is sent once; its reply is returned to both."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery

from devtools.zapi_sim import ZapiSimulator
from tests.bodies import unique_body

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]

STATUS = "zapi.order_status_update"


def test_the_same_body_twice_is_sent_once(producer: Celery, zapi_sim: ZapiSimulator) -> None:
    body = unique_body()
    results = [producer.send_task(STATUS, args=[body]) for _ in range(2)]
    replies = [r.get(timeout=30) for r in results]

    assert replies[0] == replies[1]
    assert len(zapi_sim.requests(body["messageId"])) == 1


def test_a_repeat_after_delivery_returns_the_stored_reply(
    producer: Celery, zapi_sim: ZapiSimulator
) -> None:
    body = unique_body()
    first = producer.send_task(STATUS, args=[body]).get(timeout=30)
    again = producer.send_task(STATUS, args=[body]).get(timeout=30)

    assert again == first
    assert len(zapi_sim.requests(body["messageId"])) == 1


def test_a_repeat_says_it_was_not_sent_in_status_and_the_attempt_log(
    producer: Celery, zapi_sim: ZapiSimulator, worker_env: dict[str, str], worker_log: Path
) -> None:
    body = unique_body()
    first = producer.send_task(STATUS, args=[body], kwargs={"idempotency_key": body["messageId"]})
    reply = first.get(timeout=30)
    before = time.time()
    again = producer.send_task(STATUS, args=[body], kwargs={"idempotency_key": body["messageId"]})

    assert again.get(timeout=30) == reply  # the same keys and values: the result is unchanged
    assert len(zapi_sim.requests(body["messageId"])) == 1
    cli = str(Path(sys.executable).parent / "zapi-queue")
    shown = subprocess.run(
        [cli, "status", again.id, "--json"], env=worker_env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["result"] == reply
    assert status["not_sent"]["delivered_by"] == first.id
    assert status["not_sent"]["delivered_at"] <= before
    assert status["note"].startswith(f"not sent: already delivered by job {first.id} at 20")
    text = subprocess.run([cli, "status", first.id], env=worker_env, capture_output=True, text=True)
    assert "not sent" not in text.stdout  # the first job was sent

    deadline = time.monotonic() + 10
    logged: list[str] = []
    while not logged and time.monotonic() < deadline:
        logged = [
            line
            for line in worker_log.read_text().splitlines()
            if f"job_id={again.id}" in line and "outcome=deduplicated" in line
        ]
        time.sleep(0.1)
    assert logged, "no attempt line for the repeat"
    assert f"not sent: already delivered by job {first.id}" in logged[0]


def test_an_explicit_idempotency_key_wins_over_the_body(
    producer: Celery, zapi_sim: ZapiSimulator
) -> None:
    key = unique_body()["messageId"]
    one, two = unique_body(), unique_body()
    first = producer.send_task(STATUS, args=[one], kwargs={"idempotency_key": key}).get(timeout=30)
    second = producer.send_task(STATUS, args=[two], kwargs={"idempotency_key": key}).get(timeout=30)

    assert second == first
    assert len(zapi_sim.requests(one["messageId"])) == 1
    assert zapi_sim.requests(two["messageId"]) == []


def test_a_changed_body_is_a_new_job(producer: Celery, zapi_sim: ZapiSimulator) -> None:
    body = unique_body()
    producer.send_task(STATUS, args=[body]).get(timeout=30)
    producer.send_task(STATUS, args=[{**body, "orderStatus": "shipped"}]).get(timeout=30)

    assert len(zapi_sim.requests(body["messageId"])) == 2


def test_a_bad_idempotency_key_is_refused(producer: Celery, zapi_sim: ZapiSimulator) -> None:
    body = unique_body()
    result = producer.send_task(STATUS, args=[body], kwargs={"idempotency_key": ""})
    result.get(timeout=30, propagate=False)

    assert result.state == "FAILURE"
    assert "idempotency_key: must be a non-empty string" in str(result.result)
    assert zapi_sim.requests(body["messageId"]) == []
