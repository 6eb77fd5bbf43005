"""schemas/*.json: current with the models, valid JSON Schemas, and agreeing with the models on
every body of a corpus built by breaking the documented examples one field at a time."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from tasks.contract.endpoints import UPDATE_ENDPOINTS, Endpoint
from tasks.contract.json_schemas import json_schemas, render
from tests.bodies import (
    DOCS_PAYMENT_BODY,
    DOCS_SEND_ORDER_BODY,
    DOCS_SEND_ORDER_MINIMAL_BODY,
    DOCS_STATUS_BODY,
)

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"

#: What each field is set to in turn: wrong types, empty and blank, edges, too long.
VALUES: list[Any] = [
    None, True, False, 0, -1, 0.5, -0.01, 1000, "", " ", "x", "150", "BRL", "brl", "XYZ",
    "pending", "paid", "shipped", "delivered", "5511999999999", "+55 (11) 99999-9999",
    "55449999XXXX", "123456789", "1" * 16, "a b", "a\tb", "a" * 256, "a" * 257, "a" * 1025,
    "a" * 4097, [], [{}], {}, "shop-1042", " shop-1042", "a" * 100, "a" * 101,
    "cpf", "email", "randomKey", "a@b", {"enabled": True}, {"pix": None},
]  # fmt: skip
#: Fields a body may carry but the examples leave out.
OPTIONAL = {
    (): ["message", "paymentSettings", "orderKey"],
    ("order",): ["discount", "tax", "shipping", "total", "subTotal"],
    ("paymentSettings",): ["pix", "card"],
}


def paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field and item below ``value``, depth first."""
    children = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in children:
        yield (*at, key)
        if isinstance(child, dict | list):
            yield from paths(child, (*at, key))


def get(body: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        body = body[key]
    return body


def corpus(base: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``base`` itself, then ``base`` with one field removed, replaced, or added."""
    yield base
    for path in list(paths(base)):
        parent, key = path[:-1], path[-1]
        removed = copy.deepcopy(base)
        del get(removed, parent)[key]
        yield removed
        for value in VALUES:
            changed = copy.deepcopy(base)
            get(changed, parent)[key] = copy.deepcopy(value)
            yield changed
    objects = [(), *(p for p in paths(base) if isinstance(get(base, p), dict))]
    for parent in objects:
        for key in [*OPTIONAL.get(parent, []), "unknownField", "order_status"]:
            for value in VALUES:
                added = copy.deepcopy(base)
                get(added, parent)[key] = copy.deepcopy(value)
                yield added


#: Texts on which ECMAScript's and Python's regexes differ (``\s``, ``$``): the order key's and
#: the PIX key's and name's patterns must not.
EXOTIC_TEXTS = [
    "a\x85b",
    "\x85",
    "\ufeff",
    "a\ufeff",
    "\ufeffa",
    "\u3000a",
    "a\u2028",
    "a\n",
    "\x1f",
]
#: The fields of the new contract whose patterns spell their characters out.
EXOTIC_FIELDS = [
    ("orderKey",),
    ("paymentSettings", "pix", "key"),
    ("paymentSettings", "pix", "name"),
]


def exotic(base: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``base`` with each of its :data:`EXOTIC_FIELDS` set to each of :data:`EXOTIC_TEXTS`."""
    for path in EXOTIC_FIELDS:
        try:
            get(base, path)
        except KeyError:
            continue
        for text in EXOTIC_TEXTS:
            changed = copy.deepcopy(base)
            get(changed, path[:-1])[path[-1]] = text
            yield changed


def accepted_by_model(model: type[BaseModel], body: Any) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


def short_bases(status: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"messageId": "3EB0796DC6B777C0C7CD", **status},
        {"orderRequestId": "4N8FCTW22W4", **status, "message": "Your order is on its way"},
        {"messageId": "3EB0796DC6B777C0C7CD", "orderRequestId": "4N8FCTW22W4", **status},
        {"orderKey": "shop-1042", **status},
    ]


CASES = [
    (Endpoint.ORDER_STATUS_UPDATE, "full", [DOCS_STATUS_BODY]),
    (Endpoint.ORDER_PAYMENT_UPDATE, "full", [DOCS_PAYMENT_BODY]),
    (Endpoint.ORDER_STATUS_UPDATE, "short", short_bases({"orderStatus": "shipped"})),
    (Endpoint.ORDER_PAYMENT_UPDATE, "short", short_bases({"paymentStatus": "paid"})),
    (Endpoint.SEND_ORDER, "full", [DOCS_SEND_ORDER_BODY, DOCS_SEND_ORDER_MINIMAL_BODY]),
]


def test_the_files_are_what_the_models_generate() -> None:
    expected = json_schemas()
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(expected), "make schemas"
    for name, schema in expected.items():
        assert (SCHEMAS / name).read_text(encoding="utf-8") == render(schema), (
            f"schemas/{name} is not what the models generate: run make schemas"
        )


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_each_file_is_a_valid_2020_12_schema(name: str) -> None:
    Draft202012Validator.check_schema(json.loads((SCHEMAS / name).read_text()))


@pytest.mark.parametrize(("endpoint", "form", "bases"), CASES, ids=lambda v: str(v)[:24])
def test_schema_and_model_agree_on_every_body(
    endpoint: Endpoint, form: str, bases: list[dict[str, Any]]
) -> None:
    suffix = ".short.json" if form == "short" else ".json"
    validator = Draft202012Validator(json.loads((SCHEMAS / f"{endpoint}{suffix}").read_text()))
    model = endpoint.short_schema if form == "short" else endpoint.schema
    assert model is not None
    bodies = [json.loads(json.dumps(b)) for base in bases for b in [*corpus(base), *exotic(base)]]
    disagreements = [
        (by_model, body)
        for body in bodies
        if (by_model := accepted_by_model(model, body)) != validator.is_valid(body)
    ]
    accepted = sum(validator.is_valid(body) for body in bodies)
    assert disagreements == [], f"{len(disagreements)} of {len(bodies)}: {disagreements[:3]}"
    # The corpus must exercise both answers, or agreement proves little.
    assert 20 < accepted < len(bodies) - 200, (accepted, len(bodies))


def test_short_form_names_its_order_one_way_as_a_string() -> None:
    schema = json.loads((SCHEMAS / "order-status-update.short.json").read_text())
    validator = Draft202012Validator(schema)
    model = Endpoint.ORDER_STATUS_UPDATE.short_schema
    assert model is not None
    for body in [
        {"orderStatus": "shipped"},
        {"messageId": None, "orderStatus": "shipped"},
        {"messageId": None, "orderRequestId": None, "orderKey": None, "orderStatus": "shipped"},
        {"orderKey": "shop-1042", "messageId": "3EB0C7", "orderStatus": "shipped"},
        {"orderKey": "shop-1042", "orderRequestId": "4N8FCTW22W4", "orderStatus": "shipped"},
    ]:
        assert not validator.is_valid(body), body
        assert not accepted_by_model(model, body), body
    for body in [
        {"messageId": None, "orderRequestId": "4N8FCTW22W4", "orderStatus": "shipped"},
        {"orderKey": "shop-1042", "messageId": None, "orderStatus": "shipped"},
        {"orderKey": None, "messageId": "3EB0C7", "orderStatus": "shipped"},
    ]:
        assert validator.is_valid(body), body
        assert accepted_by_model(model, body), body


def test_a_pix_email_key_needs_an_at_sign_in_both() -> None:
    validator = Draft202012Validator(json.loads((SCHEMAS / "send-order.json").read_text()))
    for key_type, key, valid in [
        ("email", "loja@example.com", True),
        ("email", "loja.example.com", False),
        ("cpf", "loja.example.com", True),  # a CPF's form is Z-API's to judge
        ("randomKey", " ", False),
    ]:
        body = copy.deepcopy(DOCS_SEND_ORDER_BODY)
        body["paymentSettings"]["pix"].update(key=key, keyType=key_type)
        assert validator.is_valid(body) is valid, (key_type, key)
        assert accepted_by_model(Endpoint.SEND_ORDER.schema, body) is valid, (key_type, key)


def test_the_one_known_difference_is_an_integral_float_quantity() -> None:
    """JSON Schema's ``integer`` admits 1.0; the worker refuses a float quantity (documented)."""
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["order"]["products"][0]["quantity"] = 1.0
    validator = Draft202012Validator(json.loads((SCHEMAS / "order-status-update.json").read_text()))
    assert validator.is_valid(body)
    assert not accepted_by_model(Endpoint.ORDER_STATUS_UPDATE.schema, body)


@pytest.mark.parametrize("endpoint", UPDATE_ENDPOINTS)
def test_the_schema_says_what_zapi_documents(endpoint: Endpoint) -> None:
    """Null optional amounts and the webhook's totals pass; a product whose isCustomItem
    contradicts its id's custom-item- prefix does not (the if/then/else on Product)."""
    validator = Draft202012Validator(json.loads((SCHEMAS / f"{endpoint}.json").read_text()))
    echoed = copy.deepcopy(DOCS_STATUS_BODY)
    echoed["message"] = None
    echoed["order"].update(discount=None, tax=None, total=605, subTotal=600)
    assert validator.is_valid(echoed)
    for index, flipped in [(0, False), (1, True)]:
        body = copy.deepcopy(DOCS_STATUS_BODY)
        body["order"]["products"][index]["isCustomItem"] = flipped
        errors = list(validator.iter_errors(body))
        assert [list(error.absolute_path) for error in errors] == [
            ["order", "products", index, "isCustomItem"]
        ]
