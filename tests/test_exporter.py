"""``zapi-queue exporter``: the fleet's gauges, scraped while jobs wait, are delivered and fail,
Z-API's callbacks arrive and the instance is paused."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.ports import free_port
from devtools.processes import ExporterProcess
from tasks.contract.endpoints import Endpoint
from tasks.contract.producer import Producer
from tasks.state.deliveries import DeliveryBook
from tasks.state.ratelimit import RateLimiter
from tests.bodies import unique_body
from tests.conftest import SECRETS
from tests.faults import fault_stack
from worker.exporter import queued_since

pytestmark = pytest.mark.e2e

Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[Scrape, str]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return samples, text


def value(scraped: Scrape, name: str, **labels: str) -> float:
    return scraped[(name, frozenset(labels.items()))]


def test_queued_since_reads_the_job_id_and_a_producers_stamp() -> None:
    import base64
    import json

    body = base64.b64encode(json.dumps([[{}], {"sequence": 1_795_000_000_000_000}, {}]).encode())
    message = json.dumps(
        {
            "body": body.decode(),
            "headers": {"id": "job-1"},
            "properties": {"body_encoding": "base64"},  # as kombu's Redis transport sends it
        }
    )
    assert queued_since(message) == ("job-1", 1_795_000_000.0)
    assert queued_since("not json") == (None, None)


def test_fleet_gauges_follow_the_queue_workers_dead_letters_and_callbacks(tmp_path: Path) -> None:
    with fault_stack(tmp_path) as stack:
        env = stack.env
        producer = Producer(
            broker_url=env["CELERY_BROKER_URL"],
            result_backend=env["CELERY_RESULT_BACKEND"],
            instance_id=env["ZAPI_INSTANCE_ID"],
        )
        # No worker yet: three jobs wait, the first stamped by the producer.
        first = producer.enqueue(Endpoint.ORDER_STATUS_UPDATE, unique_body())
        waiting = [first, *stack.enqueue([unique_body(), unique_body(orderStatus="x")])]
        time.sleep(1.5)
        with ExporterProcess(env, tmp_path / "exporter.log", port=free_port()) as exporter:
            before, _ = scrape(exporter.url)
            assert value(before, "zapi_queue_queue_depth", queue="celery") == 3
            assert value(before, "zapi_queue_oldest_queued_job_age_seconds") >= 1.5
            assert value(before, "zapi_queue_workers_alive") == 0
            assert value(before, "zapi_queue_exporter_redis_up") == 1

            stack.worker()
            states = stack.wait_all(waiting, timeout=30)
            assert sorted(states.values()) == ["FAILURE", "SUCCESS", "SUCCESS"]
            # Z-API's callbacks, as the webhook receiver applies them; and a 429's pause.
            client = stack.redis.client()
            book = DeliveryBook(client, instance_id=env["ZAPI_INSTANCE_ID"], ttl=3600)
            reply = producer.get_result(first, timeout=10)
            book.apply(reply["messageId"], "sent", at=time.time())
            book.apply(reply["messageId"], "read", at=time.time())
            limiter = RateLimiter(client, instance_id=env["ZAPI_INSTANCE_ID"], rate=10)
            limiter.penalize(30, rate_limited=True)

            after, text = scrape(exporter.url)
        producer.close()

    assert value(after, "zapi_queue_queue_depth", queue="celery") == 0
    assert value(after, "zapi_queue_oldest_queued_job_age_seconds") == 0
    assert value(after, "zapi_queue_workers_alive") == 1
    assert value(after, "zapi_queue_dead_letters", error_type="InvalidBodyError") == 1
    alias = env["ZAPI_INSTANCE_ID"]
    delivered = {
        state: value(after, "zapi_queue_delivery_states_total", instance=alias, state=state)
        for state in ("accepted", "sent", "read")
    }
    assert delivered == {"accepted": 2, "sent": 1, "read": 1}
    assert 25 < value(after, "zapi_queue_instance_paused_seconds", instance=alias) <= 30
    assert not any(secret in text for secret in SECRETS)
    assert "554499999999" not in text  # no phone of the bodies
