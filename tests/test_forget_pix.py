"""``zapi-queue forget --pix-key KEY`` (and ``--phone`` for a PIX key of keyType phone): every
send-order body carrying the key goes (its queued job, its dead letter, the body its delivery
record keeps), no output shows the key, and the other bodies stay. No worker: the jobs wait in
the queue as the producer wrote them, the letters and records are the stores' own."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from devtools.processes import stack_env
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tasks.contract.ordering import task_call
from tasks.contract.producer import Producer
from tasks.contract.redaction import pix_key_of
from tasks.state.deadletter import DeadLetterStore
from tasks.state.deliveries import DeliveryBook
from tasks.state.erasure_pix import carries_pix_key
from tests.bodies import DOCS_SEND_ORDER_BODY
from tests.cli import invoke_cli
from tests.letters import delivery_letter
from tests.test_forget import holds

EMAIL_KEY = "maria.pix@example.com"
PHONE_KEY = "5511988887777"
OTHER_KEY = "loja.outra@example.com"
CUSTOMER = "5544999990000"


def order(key: str, key_type: str, phone: str = CUSTOMER) -> dict[str, Any]:
    body = copy.deepcopy(DOCS_SEND_ORDER_BODY)
    body["phone"] = phone
    body["paymentSettings"]["pix"].update(key=key, keyType=key_type)
    return dict(body)


@pytest.fixture
def env(own_redis: RedisServer, zapi_sim: ZapiSimulator) -> Iterator[dict[str, str]]:
    own_redis.client().flushall()
    yield stack_env(own_redis.url, zapi_sim)
    own_redis.client().flushall()


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    yield made
    made.close()


def keep(env: dict[str, str], client: redis.Redis, bodies: dict[str, dict[str, Any]]) -> None:
    """Each body as a queued send-order job, a dead letter and a delivery record's body."""
    producer = Producer(
        broker_url=env["CELERY_BROKER_URL"], result_backend=env["CELERY_RESULT_BACKEND"]
    )
    letters = DeadLetterStore(client)
    book = DeliveryBook(client, instance_id=env["ZAPI_INSTANCE_ID"], ttl=3600)
    for name, body in bodies.items():
        producer.enqueue_send_order(body, order_key=f"shop-{name}")
        letter = delivery_letter(f"letter-{name}", body, task="zapi.send_order")
        letters.add(letter)
        book.link(f"3EB0{name.upper()}", zaap_id=f"zaap-{name}", letter=letter, reply_key="")
    producer.close()


def queued_keys(client: redis.Redis) -> list[str]:
    """The PIX key of each queued job, oldest first (a message's body is base64 on the wire:
    :func:`holds` cannot read it)."""
    calls = [task_call(json.loads(raw)) for raw in reversed(client.lrange("celery", 0, -1))]
    return [pix_key_of(call[0][0]) for call in calls if call is not None]


def forget(env: dict[str, str], *flags: str) -> dict[str, Any]:
    shown = invoke_cli(env, "forget", "--json", *flags)
    assert shown.exit_code == 0, shown.output
    for secret in (EMAIL_KEY, PHONE_KEY, "98888-7777"):
        assert secret not in shown.output
    answer: dict[str, Any] = json.loads(shown.stdout)
    return answer


def test_forget_pix_key_erases_every_body_carrying_it(
    env: dict[str, str], client: redis.Redis
) -> None:
    keep(
        env,
        client,
        {
            "email": order(EMAIL_KEY, "email"),
            "phone": order("+55 (11) 98888-7777", "phone"),
            "other": order(OTHER_KEY, "email"),
            # The same digits as a CPF-typed key are not a phone: compared exactly.
            "cpf": order("5511988887777 ", "cpf"),
        },
    )
    urls = [env["CELERY_BROKER_URL"]]
    assert holds(urls, EMAIL_KEY)
    dry = forget(env, "--pix-key", EMAIL_KEY, "--dry-run")
    assert holds(urls, EMAIL_KEY), "a dry run erased something"
    report = forget(env, "--pix-key", EMAIL_KEY)
    # Every job removed is revoked too (a queued one as well: it may be fetched meanwhile).
    assert {**dry, "dry_run": False, "revoked": 1} == report
    assert report == {
        "pix_key": "ma*****************om",
        "dry_run": False,
        "dead_letters": 1,
        "delivery_bodies": 1,
        "queued_jobs": 1,
        "held_jobs": 0,
        "set_aside_items": 0,
        "revoked": 1,
    }
    assert holds(urls, EMAIL_KEY) == []
    assert queued_keys(client) == ["+55 (11) 98888-7777", OTHER_KEY, "5511988887777 "]
    assert len(holds(urls, OTHER_KEY)) == 2, "another key's letter and record body must stay"
    assert len(holds(urls, "98888-7777")) == 2

    # A key of keyType phone is found whatever its formatting, the CPF-typed digits are not.
    assert forget(env, "--pix-key", f"+{PHONE_KEY}")["queued_jobs"] == 1
    assert holds(urls, "98888-7777") == []
    assert queued_keys(client) == [OTHER_KEY, "5511988887777 "]
    assert len(holds(urls, f"{PHONE_KEY} ")) == 2
    assert len(holds(urls, OTHER_KEY)) == 2
    assert client.hget(f"zapi-queue:delivery:{env['ZAPI_INSTANCE_ID']}:3EB0EMAIL", "state")


def test_forget_phone_takes_a_pix_key_that_is_the_phone(
    env: dict[str, str], client: redis.Redis
) -> None:
    """Another customer's order message whose PIX key is the phone: its job and letter go,
    its delivery record keeps its state but not the body; orders merely sent to the phone go
    whole, as forget --phone erases them."""
    keep(
        env,
        client,
        {
            "pix": order("+55 11 98888-7777", "phone"),
            "sent": order(OTHER_KEY, "email", phone=PHONE_KEY),
            "other": order(EMAIL_KEY, "email"),
        },
    )
    report = forget(env, "--phone", PHONE_KEY)
    assert report["phone"] == "55119*****777"
    assert report["queued_jobs"] == 2
    assert report["dead_letters"] == 2
    assert report["delivery_states"] == 1  # the order message sent to the phone
    assert report["delivery_bodies"] == 1  # the other customer's, paid to the phone's key
    urls = [env["CELERY_BROKER_URL"]]
    assert holds(urls, "98888-7777") == []
    assert holds(urls, PHONE_KEY) == []
    assert queued_keys(client) == [EMAIL_KEY], "another customer's job must stay queued"
    assert len(holds(urls, EMAIL_KEY)) == 2, "another customer's letter and record must stay"
    assert client.hget(f"zapi-queue:delivery:{env['ZAPI_INSTANCE_ID']}:3EB0PIX", "state")


def test_forget_wants_one_of_phone_and_pix_key(env: dict[str, str]) -> None:
    for flags in ([], ["--phone", PHONE_KEY, "--pix-key", EMAIL_KEY], ["--pix-key", "  "]):
        shown = invoke_cli(env, "forget", *flags)
        assert shown.exit_code != 0, flags


FORMATTING = st.lists(st.sampled_from([" ", "+", "-", ".", "(", ")"]), max_size=3)


@given(st.lists(FORMATTING, min_size=13, max_size=13), st.sampled_from(["cpf", "randomKey"]))
def test_only_a_phone_key_is_normalized(gaps: list[list[str]], other_type: str) -> None:
    written = "".join("".join(gap) + digit for gap, digit in zip(gaps, PHONE_KEY, strict=True))
    assert carries_pix_key(order(written, "phone"), PHONE_KEY)
    assert carries_pix_key(order(PHONE_KEY, "phone"), written)
    assert carries_pix_key(order(written, other_type), PHONE_KEY) == (written == PHONE_KEY)
    assert not carries_pix_key(order(written, "phone"), PHONE_KEY + "0")
