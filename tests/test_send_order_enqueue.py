"""Enqueueing an order message: the producer's ``enqueue_send_order`` and ``zapi-queue enqueue
order`` validate the body and the order key in the caller's process, then publish
``zapi.send_order(body, order_key=...)``: read back here from a real Redis broker that no worker
consumes."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from devtools.processes import stack_env
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tasks.contract import producer as producer_module
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import InvalidBodyError
from tasks.contract.ordering import task_call
from tasks.contract.producer import Producer
from tests.bodies import DOCS_SEND_ORDER_BODY, DOCS_SEND_ORDER_MINIMAL_BODY, unique_body
from tests.cli import invoke_cli
from tests.conftest import empty_db_fixture

#: The broker's database (results in the next one): no worker consumes it.
DB = 10
QUEUE = "celery"
PIX_KEY = DOCS_SEND_ORDER_BODY["paymentSettings"]["pix"]["key"]

broker = empty_db_fixture(DB, name="broker")


@pytest.fixture
def env(redis_server: RedisServer, zapi_sim: ZapiSimulator, broker: redis.Redis) -> dict[str, str]:
    return stack_env(redis_server.url, zapi_sim, db=DB)


@pytest.fixture
def producer(env: dict[str, str]) -> Iterator[Producer]:
    made = Producer(
        broker_url=env["CELERY_BROKER_URL"], result_backend=env["CELERY_RESULT_BACKEND"]
    )
    yield made
    made.close()


def published(broker: redis.Redis) -> list[tuple[dict[str, Any], list[Any], dict[str, Any]]]:
    """Each queued message's (headers, args, kwargs), oldest first."""
    messages = []
    for raw in reversed(broker.lrange(QUEUE, 0, -1)):
        payload = json.loads(raw)
        call = task_call(payload)
        assert call is not None
        messages.append((payload["headers"], *call))
    return messages


def test_the_producer_publishes_send_order_with_its_key(
    producer: Producer, broker: redis.Redis
) -> None:
    job_id = producer.enqueue_send_order(copy.deepcopy(DOCS_SEND_ORDER_BODY), "shop-1042")
    unkeyed = producer.enqueue_send_order(DOCS_SEND_ORDER_MINIMAL_BODY, idempotency_key="k-1")
    [(headers, args, kwargs), (_, _, unkeyed_kwargs)] = published(broker)
    assert (headers["task"], headers["id"]) == ("zapi.send_order", job_id)
    assert args == [DOCS_SEND_ORDER_BODY]  # as given
    assert kwargs["order_key"] == "shop-1042"
    assert isinstance(kwargs["sequence"], int)
    assert "order_key" not in unkeyed_kwargs
    assert unkeyed_kwargs["idempotency_key"] == "k-1"
    assert headers["argsrepr"] == "[{'phone': '55449****999'}]"  # no PIX key, no phone
    assert unkeyed != job_id


def test_the_module_level_function_uses_the_environments_broker(
    env: dict[str, str], broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "ZAPI_INSTANCE_ID"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setattr(producer_module, "_default", None)
    try:
        job_id = producer_module.enqueue_send_order(DOCS_SEND_ORDER_MINIMAL_BODY, "shop-7")
    finally:
        if producer_module._default is not None:
            producer_module._default.close()
    [(headers, args, kwargs)] = published(broker)
    assert (headers["id"], args, kwargs["order_key"]) == (
        job_id,
        [DOCS_SEND_ORDER_MINIMAL_BODY],
        "shop-7",
    )


@pytest.mark.parametrize(
    ("call", "refusal"),
    [
        (
            lambda p: p.enqueue_send_order({**DOCS_SEND_ORDER_BODY, "phone": "x"}, "shop-1"),
            "invalid send-order body (1 problem): phone: must be 10 to 15 digits",
        ),
        (
            lambda p: p.enqueue_send_order(DOCS_SEND_ORDER_BODY, "shop-1\n"),
            "order_key: must be the shop's own order id",
        ),
        (
            lambda p: p.enqueue_status_update(unique_body(), order_key="shop-1"),
            "order_key: zapi.order_status_update takes no order_key",
        ),
        (
            lambda p: p.enqueue(Endpoint.SEND_ORDER, {"orderKey": "shop-1", "orderStatus": "x"}),
            "invalid send-order body (4 problems)",  # send-order has no short form
        ),
    ],
)
def test_the_producer_refuses_before_anything_is_queued(
    producer: Producer, broker: redis.Redis, call: Any, refusal: str
) -> None:
    with pytest.raises(InvalidBodyError, match=refusal.replace("(", r"\(").replace(")", r"\)")):
        call(producer)
    assert broker.llen(QUEUE) == 0


def test_a_bulk_of_orders_is_validated_and_published(
    producer: Producer, broker: redis.Redis
) -> None:
    bodies = [DOCS_SEND_ORDER_BODY, {"phone": "5511999999999"}, DOCS_SEND_ORDER_MINIMAL_BODY]
    outcome = producer.enqueue_many(Endpoint.SEND_ORDER, bodies)
    assert [index for index, _ in outcome.rejected] == [1]
    assert "order: Field required" in outcome.rejected[0][1]
    assert [args for _, args, _ in published(broker)] == [[bodies[0]], [bodies[2]]]


def test_the_cli_enqueues_an_order_with_its_key(
    env: dict[str, str], broker: redis.Redis, tmp_path: Path
) -> None:
    order = tmp_path / "order.json"
    order.write_text(json.dumps(DOCS_SEND_ORDER_BODY, indent=2))
    result = invoke_cli(env, "enqueue", "order", str(order), "--order-key", "shop-1042")
    assert result.exit_code == 0, result.output
    [(headers, args, kwargs)] = published(broker)
    assert result.stdout.strip() == headers["id"]
    assert headers["task"] == "zapi.send_order"
    assert (args, kwargs["order_key"]) == ([DOCS_SEND_ORDER_BODY], "shop-1042")


def test_the_cli_refuses_a_bad_order_or_key_naming_it(
    env: dict[str, str], broker: redis.Redis, tmp_path: Path
) -> None:
    bad = copy.deepcopy(DOCS_SEND_ORDER_BODY)
    bad["paymentSettings"]["pix"]["keyType"] = "evp"
    refused = invoke_cli(env, "enqueue", "order", stdin=json.dumps(bad))
    assert refused.exit_code == 1
    assert "rejected: invalid send-order body (1 problem): paymentSettings.pix.keyType: " in (
        refused.stderr
    )
    assert PIX_KEY not in refused.output
    bad_key = invoke_cli(
        env, "enqueue", "order", "--order-key", " shop", stdin=json.dumps(DOCS_SEND_ORDER_BODY)
    )
    assert bad_key.exit_code == 1
    assert "rejected: order_key: must be the shop's own order id" in bad_key.stderr
    orders = tmp_path / "orders.jsonl"
    orders.write_text(json.dumps(DOCS_SEND_ORDER_BODY) + "\n")
    for args in (
        ("enqueue", "status", "--order-key", "shop-1"),
        ("enqueue", "order", "--file", str(orders), "--order-key", "shop-1"),
    ):
        misused = invoke_cli(env, *args, stdin=json.dumps(unique_body()))
        assert misused.exit_code == 2, args
        assert "--order-key names one order message" in misused.stderr
    assert broker.llen(QUEUE) == 0
    bulk = invoke_cli(env, "enqueue", "order", "--file", str(orders))
    assert bulk.exit_code == 0, bulk.output
    assert [args for _, args, _ in published(broker)] == [[DOCS_SEND_ORDER_BODY]]
