"""Hostile input at the webhook door: generated payloads posted to the real receiver (Starlette's
TestClient, in process) against a real Redis. Whatever the body: a 2xx or 4xx, never a 500 or
a traceback; no phone in the log; every key written expires; a callback for a message no job
linked writes no key of its own."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from starlette.testclient import TestClient

from config import Settings
from devtools.redis_server import RedisServer
from worker.webhook import MAX_BODY, create_app

SECRET = "whsec-HOSTILE-5e1f0c"
INSTANCE = "hostile-instance"
PHONE = "5511977776543"
URL = f"/webhooks/zapi/{SECRET}"

TYPES = [
    "ReceivedCallback",
    "DeliveryCallback",
    "MessageStatusCallback",
    "ConnectedCallback",
    "DisconnectedCallback",
    "PresenceChatCallback",
]
odd_ids = st.one_of(
    st.text(min_size=0, max_size=300),
    st.sampled_from(["a:b", ":", "%3A", " ", "\u00e9:\u4e2d", "x" * 257, "\n"]),
)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**300, 1e300, -1, 0, 4_102_444_800_000]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, odd_ids)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def field(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(values, anything)


order = st.fixed_dictionaries(
    {
        "currency": field(st.just("BRL")),
        "referenceId": field(odd_ids),
        "orderRequestId": field(odd_ids),
        "orderStatus": field(st.sampled_from(["pending", "shipped", "lost"])),
        "paymentStatus": field(st.just("pending")),
        "products": field(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "name": field(odd_ids),
                        "quantity": field(st.integers(-1, 3)),
                        "isCustomItem": field(st.booleans()),
                        "productId": field(odd_ids),
                        "value": field(numbers),
                    }
                ),
                max_size=2,
            )
        ),
    }
)
callbacks = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={
        "instanceId": st.one_of(st.just(INSTANCE), odd_ids, anything),
        "momment": field(numbers),
        "moment": field(numbers),
        "phone": field(st.just(PHONE)),
        "messageId": field(odd_ids),
        "ids": field(st.lists(odd_ids, max_size=5)),
        "status": field(st.sampled_from(["SENT", "RECEIVED", "READ", "READ_BY_ME", "PLAYED", "X"])),
        "error": field(st.text(max_size=40)),
        "errorCode": field(st.one_of(st.text(max_size=10), numbers)),
        "zaapId": field(odd_ids),
        "fromMe": field(st.booleans()),
        "reviewAndPay": field(order),
        "reviewOrder": field(order),
    },
)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def state(own_redis: RedisServer) -> Iterator[redis.Redis]:
    client = own_redis.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def http(own_redis: RedisServer, state: redis.Redis) -> Iterator[TestClient]:
    app_settings = Settings(
        celery_broker_url=SecretStr(own_redis.url + "/0"),
        zapi_instance_id=INSTANCE,
        zapi_webhook_secret=SecretStr(SECRET),
    )
    with TestClient(create_app(app_settings, state), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


def check(http: TestClient, state: redis.Redis, records: Records, content: bytes) -> int:
    """Post ``content``; assert the door's invariants; return the status."""
    records.records.clear()
    state.flushdb()
    answer = http.post(URL, content=content, headers={"Content-Type": "application/json"})
    assert 200 <= answer.status_code < 500, answer.text
    assert PHONE not in answer.text
    for record in records.records:
        text = record.getMessage()
        assert record.exc_info is None, text
        assert "Traceback" not in text
        assert PHONE not in text
    for key in state.scan_iter(count=1000):
        assert state.ttl(key) > 0, key
        assert not key.startswith(b"zapi-queue:delivery:"), key  # no job linked any message
    return int(answer.status_code)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=callbacks)
def test_callback_shaped_payloads_never_harm(
    http: TestClient, state: redis.Redis, records: Records, payload: dict[str, Any]
) -> None:
    check(http, state, records, json.dumps(payload).encode())


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=anything)
def test_any_json_never_harms(
    http: TestClient, state: redis.Redis, records: Records, payload: Any
) -> None:
    check(http, state, records, json.dumps(payload).encode())


@settings(
    max_examples=10,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(depth=st.integers(min_value=1, max_value=200_000), opener=st.sampled_from(["[", '{"a":']))
def test_any_nesting_is_a_4xx_or_2xx(
    http: TestClient, state: redis.Redis, records: Records, depth: int, opener: str
) -> None:
    content = (opener * depth).encode()[: MAX_BODY - 1]
    check(http, state, records, content)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(content=st.binary(max_size=200))
def test_any_bytes_never_harm(
    http: TestClient, state: redis.Redis, records: Records, content: bytes
) -> None:
    check(http, state, records, content)


def test_deeply_nested_json_is_400(http: TestClient, state: redis.Redis, records: Records) -> None:
    assert check(http, state, records, b"[" * 100_000) == 400
    nested = b'{"type":"DeliveryCallback","x":' + b"[" * 900 + b"]" * 900 + b"}"
    assert check(http, state, records, nested) == 200


foreign_callbacks = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("DeliveryCallback"),
            "instanceId": st.just(INSTANCE),
            "messageId": odd_ids,
            "phone": st.just(PHONE),
            "momment": numbers,
        },
        optional={
            "error": st.text(max_size=20),
            "errorCode": st.one_of(st.text(max_size=5), numbers),
        },
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("MessageStatusCallback"),
            "instanceId": st.just(INSTANCE),
            "status": st.sampled_from(["SENT", "RECEIVED", "READ", "PLAYED"]),
            "ids": st.lists(odd_ids, min_size=1, max_size=20),
            "momment": numbers,
        }
    ),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payloads=st.lists(foreign_callbacks, min_size=1, max_size=10))
def test_foreign_message_callbacks_write_no_key_of_their_own(
    http: TestClient, state: redis.Redis, records: Records, payloads: list[dict[str, Any]]
) -> None:
    for payload in payloads:
        assert check(http, state, records, json.dumps(payload).encode()) == 200
        assert state.hlen(f"zapi-queue:delivery-counts:{INSTANCE}") == 0
