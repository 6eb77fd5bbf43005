"""A worker's Prometheus counters, scraped while it delivers, retries, is refused, gives up,
dead-letters and answers a repeat: the figures match what the fake Z-API saw."""

from __future__ import annotations

import copy
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.ports import free_port
from devtools.zapi_sim import Fault
from tests.bodies import DOCS_SEND_ORDER_BODY, unique_body
from tests.conftest import SECRETS
from tests.faults import fault_stack

pytestmark = pytest.mark.e2e

ENDPOINT = "order-status-update"
ALIAS = "shop-br"
PHONE = "5511922223333"


Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(url: str) -> Scrape:
    """Every sample of the scrape: (name, labels) -> value."""
    text = httpx.get(url, timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def test_worker_counters_match_what_zapi_saw(tmp_path: Path) -> None:
    port = free_port()
    with fault_stack(
        tmp_path,
        zapi_max_attempts="2",
        zapi_instance_alias=ALIAS,
        zapi_metrics_port=str(port),
    ) as stack:
        stack.worker()
        delivered = [unique_body(phone=PHONE) for _ in range(4)]
        flaky = unique_body(phone=PHONE)  # 503, then delivered
        refused = unique_body(phone=PHONE)  # 400: refused at once
        hopeless = unique_body(phone=PHONE)  # 503 twice: gives up after ZAPI_MAX_ATTEMPTS
        invalid = unique_body(orderStatus="delivered")  # never sent
        stack.sim.script(str(flaky["messageId"]), Fault(status=503))
        stack.sim.script(
            str(refused["messageId"]), Fault(status=400, body={"error": "invalid phone"})
        )
        stack.sim.script(str(hopeless["messageId"]), Fault(status=503), Fault(status=503))
        jobs = stack.enqueue([*delivered, flaky, refused, hopeless, invalid])
        states = stack.wait_all(jobs, timeout=60)
        repeat = stack.enqueue([delivered[0]])  # the same body again: answered, not sent
        assert stack.wait_all(repeat, timeout=30) == {repeat[0]: "SUCCESS"}
        assert Counter(states.values()) == {"SUCCESS": 5, "FAILURE": 3}

        seen = Counter(request.status for request in stack.sim.requests())
        assert seen == {200: 5, 503: 3, 400: 1}
        scraped: Scrape = {}
        deadline = time.monotonic() + 10  # the last execution's counters land after its result
        while time.monotonic() < deadline:
            scraped = samples(f"http://127.0.0.1:{port}/metrics")
            if value(scraped, "zapi_queue_attempts_total", endpoint=ENDPOINT, instance=ALIAS,
                     outcome="deduplicated") == 1:  # fmt: skip
                break
            time.sleep(0.2)

    def attempts(outcome: str) -> float:
        return value(
            scraped, "zapi_queue_attempts_total", endpoint=ENDPOINT, instance=ALIAS, outcome=outcome
        )

    assert attempts("delivered") == seen[200]
    assert attempts("retry") + attempts("gave-up") == seen[503]
    assert attempts("gave-up") == 1
    assert attempts("refused") == seen[400]
    assert attempts("deduplicated") == 1
    sends = value(
        scraped, "zapi_queue_send_duration_seconds_count", endpoint=ENDPOINT, instance=ALIAS
    )
    assert sends == sum(seen.values())
    for error_type, count in {"InvalidBodyError": 1, "ZapiRejectedError": 1,
                              "AttemptsExhaustedError": 1}.items():  # fmt: skip
        assert (
            value(
                scraped,
                "zapi_queue_dead_lettered_total",
                endpoint=ENDPOINT,
                instance=ALIAS,
                error_type=error_type,
            )
            == count
        ), error_type
    assert value(scraped, "zapi_queue_slot_wait_seconds_count", instance=ALIAS) >= seen.total()
    text = " ".join(f"{name}{sorted(labels)}" for name, labels in scraped)
    assert PHONE not in text
    assert "5511922" not in text
    assert not any(secret in text for secret in SECRETS)


def test_send_order_is_counted_under_its_own_endpoint(tmp_path: Path) -> None:
    """send-order's executions are counted as ``endpoint="send-order"`` (the registry's path),
    apart from the updates, and the scrape holds neither its phone nor its PIX key."""
    port = free_port()
    pix_key = "pix-metrics@loja.example.com"
    body = copy.deepcopy(DOCS_SEND_ORDER_BODY)
    body["phone"] = PHONE
    body["paymentSettings"]["pix"]["key"] = pix_key
    invalid = copy.deepcopy(body)
    invalid["order"]["products"] = []
    with fault_stack(tmp_path, zapi_instance_alias=ALIAS, zapi_metrics_port=str(port)) as stack:
        stack.worker()
        send = stack.producer.send_task
        first = send("zapi.send_order", args=[body], kwargs={"order_key": "shop-metrics"})
        first.get(timeout=30)
        jobs = [
            send("zapi.send_order", args=[body], kwargs={"order_key": "shop-metrics"}).id,
            send("zapi.send_order", args=[invalid], kwargs={"order_key": "shop-bad"}).id,
        ]
        assert stack.wait_all(jobs, timeout=30) == {jobs[0]: "SUCCESS", jobs[1]: "FAILURE"}
        scraped: Scrape = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            scraped = samples(f"http://127.0.0.1:{port}/metrics")
            if value(scraped, "zapi_queue_dead_lettered_total", endpoint="send-order",
                     instance=ALIAS, error_type="InvalidBodyError") == 1:  # fmt: skip
                break
            time.sleep(0.2)

    def attempts(endpoint: str, outcome: str) -> float:
        labels = {"endpoint": endpoint, "instance": ALIAS, "outcome": outcome}
        return value(scraped, "zapi_queue_attempts_total", **labels)

    assert attempts("send-order", "delivered") == 1
    assert attempts("send-order", "deduplicated") == 1
    assert attempts(ENDPOINT, "delivered") == attempts(ENDPOINT, "deduplicated") == 0
    dead = {"endpoint": "send-order", "instance": ALIAS, "error_type": "InvalidBodyError"}
    assert value(scraped, "zapi_queue_dead_lettered_total", **dead) == 1
    sends = value(
        scraped, "zapi_queue_send_duration_seconds_count", endpoint="send-order", instance=ALIAS
    )
    assert sends == 1
    text = " ".join(f"{name}{sorted(labels)}" for name, labels in scraped)
    assert PHONE not in text
    assert pix_key not in text
