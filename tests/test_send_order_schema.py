"""The send-order body (tasks/contract/send_order.py): Z-API's documented examples pass
unchanged, any generated valid body goes out as given (camelCase, nothing added), and any field
broken alone is named in the error with its rule."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import InvalidBodyError
from tasks.contract.schemas import NUMBER_MAX, normalized_phone
from tasks.contract.send_order import PIX_KEY_MAX_LENGTH, PIX_NAME_MAX_LENGTH, SendOrder
from tasks.contract.validation import field_path, validate_request, validate_send_order
from tests.bodies import DOCS_SEND_ORDER_BODY, DOCS_SEND_ORDER_MINIMAL_BODY
from tests.test_hostile_bodies import (
    MANY,
    _optional,
    amounts,
    catalog_ids,
    checked,
    custom_ids,
    hostile_values,
    json_values,
    mutated,
    names,
    phones,
)
from tests.test_json_schemas import get

KEY_TYPES = ["cpf", "cnpj", "phone", "email", "randomKey"]


def errors_of(body: Any) -> str:
    with pytest.raises(InvalidBodyError) as caught:
        validate_send_order(body)
    return str(caught.value)


@pytest.mark.parametrize("body", [DOCS_SEND_ORDER_BODY, DOCS_SEND_ORDER_MINIMAL_BODY])
def test_the_documented_examples_pass_and_go_out_unchanged(body: dict[str, Any]) -> None:
    assert SendOrder.model_validate(body).to_wire() == body
    assert validate_request(Endpoint.SEND_ORDER, copy.deepcopy(body)).to_wire() == body


# -- generated valid bodies ------------------------------------------------------------------

texts = st.text(min_size=1, max_size=40).filter(str.strip)
pix_keys = {
    "cpf": st.from_regex(r"[0-9]{11}", fullmatch=True),
    "cnpj": st.from_regex(r"[0-9]{14}", fullmatch=True),
    "phone": st.from_regex(r"\+55[0-9]{10,11}", fullmatch=True),
    "email": st.emails().filter(lambda key: len(key) <= PIX_KEY_MAX_LENGTH),
    "randomKey": st.uuids().map(str),
}


@st.composite
def pix(draw: st.DrawFn) -> dict[str, Any]:
    key_type = draw(st.sampled_from(KEY_TYPES))
    key = draw(pix_keys[key_type] | (texts if key_type != "email" else st.nothing()))
    return {"key": key, "keyType": key_type, "name": draw(texts)}


@st.composite
def new_products(draw: st.DrawFn) -> dict[str, Any]:
    product = {
        "name": draw(names),
        "value": draw(amounts),
        "quantity": draw(st.integers(1, NUMBER_MAX)),
    }
    _optional(draw, product, "productId", catalog_ids | custom_ids)
    return product


@st.composite
def send_order_bodies(draw: st.DrawFn) -> dict[str, Any]:
    order: dict[str, Any] = {
        "currency": draw(st.sampled_from(["BRL", "USD", "EUR"])),
        "products": draw(st.lists(new_products(), min_size=1, max_size=4)),
    }
    for name in ("discount", "tax", "shipping"):
        _optional(draw, order, name, amounts)
    body: dict[str, Any] = {"phone": draw(phones()), "order": order}
    if draw(st.booleans()):
        ways = draw(st.sampled_from([("pix",), ("card",), ("pix", "card")]))
        settings: dict[str, Any] = {"pix": draw(pix())} if "pix" in ways else {}
        if "card" in ways:
            settings["card"] = {"enabled": draw(st.booleans())}
        body["paymentSettings"] = settings
    elif draw(st.booleans()):
        body["paymentSettings"] = None
    return body


def without_nulls(value: Any) -> Any:
    """What Z-API should get: every null left out (only an optional field may be null)."""
    if isinstance(value, dict):
        return {key: without_nulls(child) for key, child in value.items() if child is not None}
    if isinstance(value, list):
        return [without_nulls(child) for child in value]
    return value


@MANY
@given(send_order_bodies())
def test_any_valid_body_goes_out_as_given(body: dict[str, Any]) -> None:
    model = checked(Endpoint.SEND_ORDER, copy.deepcopy(body))
    assert isinstance(model, SendOrder), body
    expected = without_nulls({**body, "phone": normalized_phone(body["phone"])})
    assert model.model_dump(mode="json", by_alias=True, exclude_unset=True) == expected
    assert model.to_wire() == expected


# -- any field broken alone is named ---------------------------------------------------------

#: Values each leaf field must refuse, by its name; every one breaks that field's own rule.
INVALID: dict[str, st.SearchStrategy[Any]] = {
    "phone": st.sampled_from(["123", "55449999XXXX", 5544999999999, "", None]),
    "currency": st.sampled_from(["XYZ", "brl", 986, "", None]),
    "name": st.sampled_from(["", "n" * (PIX_NAME_MAX_LENGTH + 1), 5, " ", None]),
    "value": st.sampled_from([-0.01, "150", True, float("inf"), 2**53, None]),
    "quantity": st.sampled_from([0, -1, 1.5, True, "1", 2**53, None]),
    "productId": st.sampled_from(["", "a b", 5, "x" * 257]),
    "discount": st.sampled_from([-1, "5", True, float("nan")]),
    "tax": st.sampled_from([-1, "5", False, float("-inf")]),
    "shipping": st.sampled_from([-1, "5", [], {}]),
    "keyType": st.sampled_from(["evp", "CPF", "random", "", None, 1]),
    "key": st.sampled_from(["", " ", "\t", "k" * (PIX_KEY_MAX_LENGTH + 1), 5, None]),
    "enabled": st.sampled_from([1, "true", None, "yes"]),
}


def leaves(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of the leaf fields (not objects, not lists) of ``value``."""
    found = []
    children = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in children:
        if isinstance(child, dict | list):
            found += leaves(child, (*at, key))
        elif isinstance(key, str):
            found.append((*at, key))
    return found


@MANY
@given(st.data())
def test_any_field_broken_alone_is_named(data: st.DataObject) -> None:
    body = without_nulls(data.draw(send_order_bodies()))
    path = data.draw(st.sampled_from(leaves(body)))
    field = path[-1]
    if field == "name" and path[0] == "order":
        bad = data.draw(st.sampled_from(["", "n" * 1025, 5, None]))  # a product's name
    else:
        bad = data.draw(INVALID[field])
    get(body, path[:-1])[field] = bad
    if field == "key" and isinstance(bad, str) and bad.strip():
        body["paymentSettings"]["pix"]["keyType"] = "cpf"  # only its length is wrong
    message = errors_of(body)
    assert message.startswith("invalid send-order body (1 problem): "), message
    assert f"{field_path(path)}: " in message, message


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda b: b["order"].update(products=[]), "order.products: List should have at least 1"),
        (lambda b: b["order"].pop("products"), "order.products: Field required"),
        (lambda b: b.pop("phone"), "phone: Field required"),
        (lambda b: b["order"].update(total=600), "order.total: Extra inputs are not permitted"),
        (
            lambda b: b["order"]["products"][0].update(isCustomItem=False),
            "order.products[0].isCustomItem: Extra inputs are not permitted",
        ),
        (
            lambda b: b["paymentSettings"]["pix"].update(keyType="email", key="loja.example.com"),
            "paymentSettings.pix.key: must be an e-mail address (with an @) when keyType is email",
        ),
        (
            lambda b: b["paymentSettings"]["pix"].update(keyType="evp"),
            "paymentSettings.pix.keyType: Input should be 'cpf', 'cnpj', 'phone', 'email' or "
            "'randomKey'",
        ),
        (
            lambda b: b.update(paymentSettings={}),
            "paymentSettings: pix or card is required: the way the customer may pay",
        ),
        (
            lambda b: b.update(paymentSettings={"pix": None, "card": None}),
            "paymentSettings: pix or card is required",
        ),
        (
            lambda b: b["paymentSettings"]["pix"].pop("name"),
            "paymentSettings.pix.name: Field required",
        ),
        (lambda b: b.update(payment_settings={}), "payment_settings: Extra inputs are not"),
        (lambda b: b.update(orderKey="shop-1042"), "orderKey: Extra inputs are not permitted"),
    ],
)
def test_each_rule_names_its_field(change: Any, named: str) -> None:
    body = copy.deepcopy(DOCS_SEND_ORDER_BODY)
    change(body)
    assert named in errors_of(body)


def test_a_pix_key_is_checked_by_its_type_only_where_that_needs_no_guess() -> None:
    """Z-API documents no key format: a CPF with its dots, a phone without +55, pass."""
    for key_type, key in [("cpf", "123.456.789-09"), ("phone", "11999999999"), ("cnpj", "x")]:
        body = copy.deepcopy(DOCS_SEND_ORDER_BODY)
        body["paymentSettings"]["pix"].update(keyType=key_type, key=key)
        assert validate_send_order(body).to_wire() == body


@MANY
@given(mutated(st.tuples(st.just(Endpoint.SEND_ORDER), send_order_bodies())))
def test_a_body_broken_anywhere_fails_cleanly_or_goes_out_clean(case: tuple[Endpoint, Any]) -> None:
    checked(*case)


@MANY
@given(json_values | hostile_values)
def test_any_json_value_is_a_body_or_an_invalid_body_error(body: Any) -> None:
    model = checked(Endpoint.SEND_ORDER, body)
    assert model is None or json.dumps(model.to_wire())
