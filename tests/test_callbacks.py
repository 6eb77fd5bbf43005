"""Z-API's callbacks as FACTS.md shows them, short updates, and the delivery record's rules (the
latter on a real Redis)."""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from devtools.redis_server import RedisServer
from tasks.callbacks import ReceivedCallback, callback_type
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import InvalidBodyError
from tasks.contract.schemas import ShortPaymentUpdate, ShortStatusUpdate, is_short_update
from tasks.contract.validation import validate_body, validate_update
from tasks.state.book import Snapshot, snapshot_of_callback
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tasks.state.deliveries import (
    COUNTS_PREFIX,
    EARLY_MAX,
    EARLY_PREFIX,
    EARLY_TTL,
    DeliveryBook,
    failure_text,
)
from tests.letters import delivery_letter

#: FACTS.md's example, verbatim (the timestamp really is spelled ``momment``).
FACTS_EXAMPLE: dict[str, Any] = {
    "type": "ReceivedCallback",
    "phone": "5544999999999",
    "messageId": "3EB0F91BBA791BB0A787FC",
    "momment": 1632228925000,
    "reviewAndPay": {
        "type": "physical-goods",
        "currency": "BRL",
        "referenceId": "4N9AVI38VOB",
        "orderRequestId": "4N9AVI38VYZ",
        "orderStatus": "pending",
        "paymentStatus": "pending",
        "total": 605,
        "subTotal": 600,
        "discount": 10,
        "shipping": 5,
        "tax": 10,
        "products": [
            {
                "name": "order 1",
                "quantity": 2,
                "isCustomItem": True,
                "productId": "custom-item-4N9AVI38WI1",
                "value": 150,
            }
        ],
    },
}


def test_the_facts_example_becomes_a_snapshot_that_builds_a_valid_full_body() -> None:
    callback = ReceivedCallback.model_validate(FACTS_EXAMPLE)
    assert callback.at == 1632228925.0
    data = snapshot_of_callback(callback, "inst")
    assert data is not None
    snapshot = Snapshot(data, order_status="pending", payment_status="pending")
    body = snapshot.full_body(order_status="shipped", payment_status="pending", message=None)
    update = validate_body(Endpoint.ORDER_STATUS_UPDATE, body)
    assert update.to_wire() == {
        "phone": "5544999999999",
        "messageId": "3EB0F91BBA791BB0A787FC",
        "referenceId": "4N9AVI38VOB",
        "orderRequestId": "4N9AVI38VYZ",
        "orderStatus": "shipped",
        "paymentStatus": "pending",
        "order": {
            "currency": "BRL",
            "products": FACTS_EXAMPLE["reviewAndPay"]["products"],
            "discount": 10,
            "tax": 10,
            "shipping": 5,
        },
    }
    assert isinstance(update.to_wire()["order"]["products"][0]["value"], int)  # as given


def test_review_order_and_the_moment_spelling() -> None:
    payload = copy.deepcopy(FACTS_EXAMPLE)
    order = payload.pop("reviewAndPay")
    del order["type"]
    payload["reviewOrder"] = order
    payload["moment"] = payload.pop("momment")
    callback = ReceivedCallback.model_validate(payload)
    assert callback.order is not None
    assert callback.order.orderRequestId == "4N9AVI38VYZ"
    assert callback.at == 1632228925.0


def test_a_message_without_an_order_has_no_snapshot() -> None:
    payload = {"type": "ReceivedCallback", "phone": "5511", "messageId": "M", "text": {}}
    assert snapshot_of_callback(ReceivedCallback.model_validate(payload), "inst") is None


def test_an_order_without_what_updates_need_is_refused_naming_the_fields() -> None:
    payload = copy.deepcopy(FACTS_EXAMPLE)
    del payload["reviewAndPay"]["products"][0]["productId"]
    payload["reviewAndPay"]["orderStatus"] = "lost"
    with pytest.raises(ValidationError) as caught:
        ReceivedCallback.model_validate(payload)
    where = {".".join(map(str, e["loc"])) for e in caught.value.errors()}
    assert where == {"reviewAndPay.products.0.productId", "reviewAndPay.orderStatus"}


def test_an_order_takes_the_names_and_amounts_its_updates_can_send() -> None:
    """One product-name length and one amount bound for the webhook and the updates: an order
    the book takes is one whose short updates can be completed and sent."""
    payload = copy.deepcopy(FACTS_EXAMPLE)
    payload["reviewAndPay"]["products"][0]["name"] = "n" * 1024
    ReceivedCallback.model_validate(payload)
    payload["reviewAndPay"]["products"][0]["name"] = "n" * 1025
    payload["reviewAndPay"]["products"][0]["value"] = 2**53
    with pytest.raises(ValidationError) as caught:
        ReceivedCallback.model_validate(payload)
    where = {".".join(map(str, e["loc"])) for e in caught.value.errors()}
    assert where == {"reviewAndPay.products.0.name", "reviewAndPay.products.0.value"}


@pytest.mark.parametrize(
    ("payload", "label"),
    [
        ({"type": "DeliveryCallback"}, "DeliveryCallback"),
        ({}, "?"),
        ({"type": 3}, "?"),
        ({"type": "x" * 65}, "?"),
        ({"type": "a b"}, "?"),
    ],
)
def test_callback_types_are_printable_labels(payload: dict[str, Any], label: str) -> None:
    assert callback_type(payload) == label


def test_short_updates_name_their_order_and_one_status() -> None:
    status = Endpoint.ORDER_STATUS_UPDATE
    payment = Endpoint.ORDER_PAYMENT_UPDATE
    assert isinstance(
        validate_update(status, {"messageId": "M", "orderStatus": "shipped"}), ShortStatusUpdate
    )
    assert isinstance(
        validate_update(payment, {"orderRequestId": "O", "paymentStatus": "paid"}),
        ShortPaymentUpdate,
    )
    with pytest.raises(InvalidBodyError, match="messageId, orderRequestId or orderKey is required"):
        validate_update(status, {"orderStatus": "shipped"})
    with pytest.raises(InvalidBodyError, match="paymentStatus: Extra inputs are not permitted"):
        validate_update(status, {"messageId": "M", "orderStatus": "shipped", "paymentStatus": "x"})
    with pytest.raises(InvalidBodyError, match="orderStatus: Input should be 'pending'"):
        validate_update(status, {"messageId": "M", "orderStatus": "sent"})
    # A body with any of the full body's own fields is a full body, checked as one.
    assert not is_short_update({"messageId": "M", "orderStatus": "shipped", "phone": "5511"})
    with pytest.raises(InvalidBodyError, match="referenceId: Field required"):
        validate_update(status, {"messageId": "M", "orderStatus": "shipped", "phone": "5511"})


_messages = itertools.count()


@pytest.fixture
def book(own_redis: RedisServer) -> Iterator[DeliveryBook]:
    client = own_redis.client()
    yield DeliveryBook(client, instance_id="unit", ttl=60)
    client.close()


def letter(job: str = "job-1") -> DeadLetter:
    body = {"messageId": "M", "orderStatus": "shipped"}
    return delivery_letter(job, body, failed_at=100.0, kwargs={"idempotency_key": "k"})


def message() -> str:
    return f"MSG{next(_messages)}"


def test_a_failure_after_the_link_buries_the_job_once(book: DeliveryBook) -> None:
    sent = message()
    assert book.link(sent, zaap_id="Z", letter=letter(), reply_key="r") is None
    burial = book.apply(sent, "failed", at=200.0, error="Phone number does not exist")
    assert burial is not None
    assert burial.reply_key == "r"
    assert burial.letter.job_id == "job-1"
    assert burial.letter.body == {"messageId": "M", "orderStatus": "shipped"}
    assert burial.letter.kwargs == {"idempotency_key": "k"}
    assert burial.letter.error == failure_text(sent, "Phone number does not exist", None)
    assert book.apply(sent, "failed", at=201.0, error="again") is None  # once only


def test_a_failure_before_the_link_buries_the_job_when_it_links(book: DeliveryBook) -> None:
    sent = message()
    assert book.apply(sent, "failed", at=200.0, error="Timeout", error_code="E1") is None
    assert book.get(sent) is None  # kept as an early entry, no key of its own
    burial = book.link(sent, zaap_id="Z", letter=letter("job-2"), reply_key="r2")
    assert burial is not None
    assert burial.letter.job_id == "job-2"
    assert "(errorCode E1)" in burial.letter.error
    assert book.link(sent, zaap_id="Z", letter=letter("job-2"), reply_key="r2") is None


def test_burying_keeps_the_letter_and_drops_the_reply(
    book: DeliveryBook, own_redis: RedisServer
) -> None:
    client = own_redis.client()
    client.set("reply-key", "{}")
    sent = message()
    book.link(sent, zaap_id="Z", letter=letter("job-3"), reply_key="reply-key")
    burial = book.apply(sent, "failed", at=time.time(), error="x")  # kept a TTL from now
    assert burial is not None
    letters = DeadLetterStore(client)
    book.bury(burial, letters)
    stored = letters.get("job-3")
    assert stored is not None
    assert stored.error_type == "DeliveryFailedError"
    assert client.get("reply-key") is None
    client.close()


def test_the_body_is_kept_only_while_the_message_may_still_fail(
    book: DeliveryBook, own_redis: RedisServer
) -> None:
    client = own_redis.client()
    sent = message()
    book.link(sent, zaap_id="Z", letter=letter(), reply_key="r")
    assert client.hexists(book.key(sent), "body")
    book.apply(sent, "sent", at=1.0)
    burial = book.apply(sent, "failed", at=2.0, error="late")  # sent may still fail
    assert burial is not None
    assert burial.letter.body == letter().body
    received = message()
    book.link(received, zaap_id="Z", letter=letter(), reply_key="r")
    book.apply(received, "received", at=1.0)
    assert not client.hexists(book.key(received), "body")
    assert book.apply(received, "failed", at=2.0, error="late") is None  # it reached the phone
    state = book.get(received)
    assert state is not None
    assert state.state == "received"
    client.close()


def test_every_delivery_key_expires(book: DeliveryBook, own_redis: RedisServer) -> None:
    client: redis.Redis = own_redis.client()
    sent = message()
    book.link(sent, zaap_id="Z", letter=letter(), reply_key="r")
    book.apply(sent, "read", at=1.0)
    book.apply(message(), "read", at=1.0)  # unlinked: an early entry
    for key in client.keys("zapi-queue:delivery*"):
        assert client.ttl(key) > 0, key
    assert 0 < client.ttl(book.key(sent)) <= 60
    client.close()


def test_a_callback_for_a_message_no_job_linked_writes_no_key_of_its_own(
    own_redis: RedisServer,
) -> None:
    client: redis.Redis = own_redis.client()
    book = DeliveryBook(client, instance_id="foreign-unit", ttl=60)
    foreign = [f"FOREIGN-{n}" for n in range(50)]
    applied = book.apply_all(foreign, "failed", at=1.0, error="x")
    assert [each.linked for each in applied] == [False] * 50
    assert not any(client.exists(book.key(m)) for m in foreign)
    assert client.hgetall(f"{COUNTS_PREFIX}foreign-unit") == {}  # not counted
    assert book.early_count() == 50 <= EARLY_MAX
    assert 0 < client.ttl(f"{EARLY_PREFIX}foreign-unit") <= EARLY_TTL
    client.close()


def test_ids_with_colons_or_percents_get_keys_of_their_own(book: DeliveryBook) -> None:
    client = book._redis
    pairs = [("a:b", "c"), ("a", "b:c"), ("a", "b%3Ac")]
    keys = {DeliveryBook(client, instance_id=i, ttl=60).key(m) for i, m in pairs}
    assert len(keys) == 3
    assert book.key("x:y:z").endswith(":unit:x%3Ay%3Az")
    sent = "odd:id%"
    book.link(sent, zaap_id="Z", letter=letter(), reply_key="r")
    book.apply(sent, "sent", at=1.0)
    state = book.get(sent)
    assert state is not None
    assert state.state == "sent"


def test_early_entries_are_capped_oldest_first_and_counted(own_redis: RedisServer) -> None:
    client: redis.Redis = own_redis.client()
    book = DeliveryBook(client, instance_id="capped-unit", ttl=60)
    first = "OLDEST"
    book.apply(first, "failed", at=1.0, error="x")
    evicted = 0
    for start in range(0, EARLY_MAX + 5, 2000):
        ids = [f"M{n}" for n in range(start, min(start + 2000, EARLY_MAX + 5))]
        evicted += sum(each.evicted for each in book.apply_all(ids, "sent", at=1.0))
    assert book.early_count() == EARLY_MAX
    assert evicted == 6  # the oldest, and five more
    # The evicted early failure is gone: its job links as accepted, not buried.
    assert book.link(first, zaap_id="Z", letter=letter(), reply_key="r") is None
    state = book.get(first)
    assert state is not None
    assert state.state == "accepted"
    client.delete(f"{EARLY_PREFIX}capped-unit", "zapi-queue:delivery-early-at:capped-unit")
    client.close()


def test_an_early_entry_past_its_time_is_not_applied(own_redis: RedisServer) -> None:
    client: redis.Redis = own_redis.client()
    book = DeliveryBook(client, instance_id="stale-unit", ttl=60)
    book.apply("LATE", "failed", at=1.0, error="x")
    client.zadd("zapi-queue:delivery-early-at:stale-unit", {"LATE": time.time() - EARLY_TTL - 1})
    assert book.link("LATE", zaap_id="Z", letter=letter(), reply_key="r") is None
    state = book.get("LATE")
    assert state is not None
    assert state.state == "accepted"
    assert book.early_count() == 0
    client.close()
