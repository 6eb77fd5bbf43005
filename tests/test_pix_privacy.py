"""A send-order body's PIX key (a CPF, a CNPJ, a phone, an e-mail, a random key) is personal
data: generated keys never appear where bodies are shown: the summaries of logs, Flower and
``inspect`` (tasks/request.py), error texts, and dead letters shown by ``zapi-queue dead``
(against a real Redis)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.processes import stack_env
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tasks.contract.errors import InvalidBodyError
from tasks.contract.redaction import (
    describe_body,
    mask_pix_key,
    masked_body,
    pix_key_of,
    summarize_body,
)
from tasks.contract.validation import validate_send_order
from tasks.request import shown_args, shown_kwargs
from tasks.state.deadletter import DeadLetterStore
from tests.bodies import DOCS_SEND_ORDER_BODY
from tests.cli import invoke_cli
from tests.letters import dead_letter

#: A database of its own on the session's Redis (results in the next one): no worker reads it.
DB = 10

#: Keys as shops have them, one strategy per keyType.
PIX_KEYS = {
    "cpf": st.from_regex(r"[0-9]{3}\.?[0-9]{3}\.?[0-9]{3}-?[0-9]{2}", fullmatch=True),
    "cnpj": st.from_regex(r"[0-9]{2}\.?[0-9]{3}\.?[0-9]{3}/?[0-9]{4}-?[0-9]{2}", fullmatch=True),
    "phone": st.from_regex(r"\+?55[1-9][0-9]9?[0-9]{8}", fullmatch=True),
    "email": st.emails().filter(lambda key: len(key) <= 256),
    "randomKey": st.uuids().map(str),
}


@st.composite
def bodies_with_keys(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    key_type = draw(st.sampled_from(sorted(PIX_KEYS)))
    key = draw(PIX_KEYS[key_type])
    body = copy.deepcopy(DOCS_SEND_ORDER_BODY)
    body["paymentSettings"]["pix"].update(key=key, keyType=key_type)
    return body, key


def shown_everywhere(body: dict[str, Any]) -> str:
    """Every way the product shows a body to people, in one text."""
    return "\n".join(
        [
            summarize_body(body),
            describe_body(body),
            shown_args([body, body]),
            shown_kwargs({"body": body, "order_key": "shop-1042"}),
            json.dumps(masked_body(body), ensure_ascii=False),
            json.dumps(masked_body(body, show_phone=True), ensure_ascii=False),
        ]
    )


@given(bodies_with_keys())
def test_no_generated_key_is_shown(case: tuple[dict[str, Any], str]) -> None:
    body, key = case
    validate_send_order(body)  # a body the worker would send
    original = copy.deepcopy(body)
    shown = shown_everywhere(body)
    assert key not in shown
    assert body == original  # masking copies, the body to send is untouched
    masked = masked_body(body)
    assert pix_key_of(masked) == mask_pix_key(key)
    assert masked["paymentSettings"]["pix"]["keyType"] == body["paymentSettings"]["pix"]["keyType"]
    assert masked["order"] == body["order"]


@given(bodies_with_keys(), st.sampled_from(["phone", "keyType", "currency"]))
def test_an_error_text_never_holds_the_key(case: tuple[dict[str, Any], str], broken: str) -> None:
    body, key = case
    if broken == "phone":
        body["phone"] = "not a phone"
    elif broken == "keyType":
        body["paymentSettings"]["pix"]["keyType"] = "email" if "@" not in key else "evp"
    else:
        body["order"]["currency"] = key
    with pytest.raises(InvalidBodyError) as caught:
        validate_send_order(body)
    assert key not in str(caught.value)


def test_a_key_shows_at_most_its_ends() -> None:
    assert mask_pix_key("12345678909") == "*" * 11  # a CPF: nothing of it
    assert mask_pix_key("loja@example.com") == "lo************om"
    assert mask_pix_key("k" * 10_000) == "kk" + "*" * 60 + "kk"
    assert mask_pix_key(12345678909) == "<int>"
    assert masked_body([1]) == [1]
    assert masked_body({"paymentSettings": {"pix": {"keyType": "cpf"}}}) == {
        "paymentSettings": {"pix": {"keyType": "cpf"}}
    }
    summary = summarize_body({**DOCS_SEND_ORDER_BODY, "orderKey": "shop-1042"})
    assert summary == "{'phone': '55449****999', 'orderKey': 'shop-1042'}"


@pytest.fixture(scope="module")
def env(redis_server: RedisServer, zapi_sim: ZapiSimulator) -> Iterator[dict[str, str]]:
    environment = stack_env(redis_server.url, zapi_sim, db=DB)
    yield environment
    for db in (DB, DB + 1):
        client = redis.Redis.from_url(f"{redis_server.url}/{db}")
        client.flushdb()
        client.close()


@pytest.mark.e2e
@settings(max_examples=20)
@given(case=bodies_with_keys())
def test_a_dead_letter_is_shown_without_its_key(
    env: dict[str, str], case: tuple[dict[str, Any], str]
) -> None:
    body, key = case
    store = DeadLetterStore(redis.Redis.from_url(env["CELERY_BROKER_URL"]))
    letter = dead_letter("job-pix", task="zapi.send_order", body=body, kwargs={"order_key": "k-1"})
    store.add(letter)
    try:
        for args in (
            ("dead", "show", "job-pix"),
            ("dead", "show", "job-pix", "--show-phones"),
            ("dead", "list", "--json", "--show-phones"),
            ("dead", "list"),
        ):
            result = invoke_cli(env, *args)
            assert result.exit_code == 0, result.output
            assert key not in result.output, args
        shown = json.loads(invoke_cli(env, "dead", "show", "job-pix").stdout)
        assert shown["body"]["paymentSettings"]["pix"]["key"] == mask_pix_key(key)
        assert shown["body"]["phone"] == "55449****999"
        assert store.get("job-pix") == letter  # the stored letter, for a replay, is whole
    finally:
        store.remove(["job-pix"])
