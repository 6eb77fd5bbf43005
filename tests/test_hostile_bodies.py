"""Hostile bodies at the contract's door (issue #26): whatever JSON a producer sends, validation
either returns a model or raises InvalidBodyError naming fields of that body, never a phone;
what it accepts goes out as Z-API's docs spell it (no null, no total/subTotal) and validates
again unchanged.

Pure and in-process: generated JSON values, generated valid bodies (full and short, both update
endpoints; send-order's are in tests/test_send_order_schema.py) and those bodies mutated at one
place (removed, replaced by a wrong type, a null, a huge, negative, NaN or infinite number, a
deep nesting, a long unicode string, or given an extra field, the phone among its names).
`make fuzz` runs the same properties much longer.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tasks.contract.endpoints import UPDATE_ENDPOINTS, Endpoint
from tasks.contract.errors import InvalidBodyError
from tasks.contract.order_key import ORDER_KEY_MAX_LENGTH
from tasks.contract.schemas import (
    CUSTOM_ITEM_PREFIX,
    NUMBER_MAX,
    PRODUCT_NAME_MAX_LENGTH,
    OrderUpdate,
    ShortUpdate,
    ZapiModel,
    normalized_phone,
)
from tasks.contract.validation import PROBLEMS_SHOWN, field_path, form_of, validate_request
from tests.bodies import DOCS_STATUS_BODY
from tests.test_json_schemas import get, paths

ENDPOINTS = st.sampled_from(UPDATE_ENDPOINTS)
#: Each example costs a few milliseconds: at least 400 (ten times "ci"'s count), and the profile's
#: own when larger ("fuzz": 2,000, within pytest-timeout's 120 s per test).
MANY = settings(max_examples=max(400, settings().max_examples))
#: An error text lists at most PROBLEMS_SHOWN problems, each a short path and a rule.
MESSAGE_MAX = 32_000
#: Fields whose null the contract takes as "left out".
OPTIONAL_ORDER_FIELDS = ("discount", "tax", "shipping", "total", "subTotal")

# -- valid bodies ---------------------------------------------------------------------------

#: Characters an id may hold: no whitespace (str.isspace), no control character, no surrogate.
_ID_CHARACTERS = st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))
identifiers = st.text(_ID_CHARACTERS, min_size=1, max_size=40) | st.integers(1, 256).map(
    lambda n: "é" * n
)
catalog_ids = identifiers.filter(lambda text: not text.startswith(CUSTOM_ITEM_PREFIX))
custom_ids = st.text(_ID_CHARACTERS, min_size=0, max_size=40).map(CUSTOM_ITEM_PREFIX.__add__)
#: The shop's order ids: printable, no whitespace at either end, 1 to 100 characters.
order_keys = st.text(
    st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=ORDER_KEY_MAX_LENGTH
).filter(lambda text: text == text.strip())
amounts = st.integers(0, NUMBER_MAX) | st.floats(0, NUMBER_MAX, allow_nan=False)
names = st.text(min_size=1, max_size=60) | st.integers(1, PRODUCT_NAME_MAX_LENGTH).map(
    lambda n: "ñ" * n
)


@st.composite
def phones(draw: st.DrawFn) -> str:
    """10 to 15 digits, with the formatting a producer may leave in (spaces, +, -, ., ())."""
    digits = draw(st.text("0123456789", min_size=10, max_size=15))
    formatted = ""
    for digit in digits:
        formatted += draw(st.sampled_from(["", "", "", " ", "-", ".", "(", ")", "\u2003"])) + digit
    return draw(st.sampled_from(["", "+", "+ "])) + formatted


@st.composite
def products(draw: st.DrawFn) -> dict[str, Any]:
    custom = draw(st.booleans())
    return {
        "name": draw(names),
        "value": draw(amounts),
        "quantity": draw(st.integers(1, NUMBER_MAX)),
        "productId": draw(custom_ids if custom else catalog_ids),
        "isCustomItem": custom,
    }


def _optional(draw: st.DrawFn, target: dict[str, Any], name: str, values: Any) -> None:
    """Leave ``name`` out, set it to null, or to a drawn value."""
    choice = draw(st.sampled_from(["absent", "null", "value"]))
    if choice != "absent":
        target[name] = None if choice == "null" else draw(values)


@st.composite
def full_bodies(draw: st.DrawFn) -> dict[str, Any]:
    order: dict[str, Any] = {
        "currency": draw(st.sampled_from(["BRL", "USD", "EUR", "JPY"])),
        "products": draw(st.lists(products(), min_size=1, max_size=4)),
    }
    for name in OPTIONAL_ORDER_FIELDS:
        _optional(draw, order, name, amounts)
    body: dict[str, Any] = {
        "phone": draw(phones()),
        "messageId": draw(identifiers),
        "referenceId": draw(identifiers),
        "orderRequestId": draw(identifiers),
        "orderStatus": draw(
            st.sampled_from(["pending", "processing", "shipped", "completed", "canceled"])
        ),
        "paymentStatus": draw(st.sampled_from(["pending", "paid"])),
        "order": order,
    }
    _optional(draw, body, "message", st.text(max_size=4096))
    return body


@st.composite
def short_bodies(draw: st.DrawFn, endpoint: Endpoint) -> dict[str, Any]:
    """A two-field update for ``endpoint``: one of Z-API's ids or both, or the shop's orderKey
    (the other names maybe null), a status."""
    body: dict[str, Any] = {}
    named = draw(st.sampled_from(["messageId", "orderRequestId", "both", "orderKey"]))
    for name in ("messageId", "orderRequestId", "orderKey"):
        if named in (name, "both") and name != "orderKey":
            body[name] = draw(identifiers)
        elif named == name:
            body[name] = draw(order_keys)
        elif draw(st.booleans()):
            body[name] = None
    if endpoint is Endpoint.ORDER_STATUS_UPDATE:
        body["orderStatus"] = draw(st.sampled_from(["pending", "shipped", "canceled"]))
    else:
        body["paymentStatus"] = draw(st.sampled_from(["pending", "paid"]))
    _optional(draw, body, "message", st.text(max_size=200))
    return body


@st.composite
def endpoint_and_body(draw: st.DrawFn) -> tuple[Endpoint, dict[str, Any]]:
    endpoint = draw(ENDPOINTS)
    body = draw(full_bodies() | short_bodies(endpoint))
    return endpoint, body


def expected_wire(body: dict[str, Any]) -> dict[str, Any]:
    """What Z-API should get for a valid ``body``: the phone's digits, no null, no totals."""
    wire = {key: value for key, value in copy.deepcopy(body).items() if value is not None}
    if "phone" in wire:
        wire["phone"] = normalized_phone(wire["phone"])
    if "order" in wire:
        wire["order"] = {
            key: value
            for key, value in wire["order"].items()
            if value is not None and key not in ("total", "subTotal")
        }
    return wire


# -- hostile values -------------------------------------------------------------------------


def nested(depth: int) -> Any:
    """``[[[...{}...]]]``, built without recursion."""
    value: Any = {}
    for level in range(depth):
        value = [value] if level % 2 else {"x": value}
    return value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 0.5, -0.0, 2**53, 10**400, -(10**400), 1e308, 1.0]),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(),
    st.floats(),
    st.integers(1, 2000).map(nested),  # deeper: test_deep_nesting_anywhere_fails_cleanly
    st.integers(0, 5000).map(lambda n: "ç" * n),
    st.integers(1020, 1030).map(lambda n: "n" * n),
    st.text(max_size=40),
    st.sampled_from(["", " ", "150", "true", "null", "custom-item-", "custom-item-X", "a b"]),
    json_values,
)
extra_names = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["total", "subTotal", "order_status", "orderstatus", "phone", "message"]),
    st.integers(60, 5000).map(lambda n: "k" * n),
)


@st.composite
def mutated(
    draw: st.DrawFn, cases: st.SearchStrategy[tuple[Endpoint, dict[str, Any]]] | None = None
) -> tuple[Endpoint, Any]:
    """A valid body (of ``cases``, default an update's) broken (or not) at one place: removed,
    replaced, or an extra field."""
    endpoint, body = draw(cases if cases is not None else endpoint_and_body())
    phone = body.get("phone")
    kind = draw(st.sampled_from(["remove", "replace", "replace", "add", "add phone key"]))
    where = list(paths(body))
    path = draw(st.sampled_from(where))
    parent, key = path[:-1], path[-1]
    if kind == "remove":
        del get(body, parent)[key]
    elif kind == "replace":
        get(body, parent)[key] = draw(hostile_values)
    else:
        containers = [(), *(p for p in where if isinstance(get(body, p), dict))]
        target = get(body, draw(st.sampled_from(containers)))
        if kind == "add phone key" and isinstance(phone, str):
            name = draw(st.sampled_from([phone, normalized_phone(phone), f"x{phone}y"]))
        else:
            name = draw(extra_names)
        target[name] = draw(hostile_values)
    return endpoint, body


# -- the properties -------------------------------------------------------------------------


def checked(endpoint: Endpoint, body: Any) -> ZapiModel | None:
    """Validate ``body`` and check every promise of the door; the model, or None if refused."""
    try:
        update = validate_request(endpoint, body)
    except InvalidBodyError as exc:
        check_refusal(endpoint, body, str(exc))
        return None
    check_wire(endpoint, update)
    return update


def check_refusal(endpoint: Endpoint, body: Any, message: str) -> None:
    schema, form = form_of(endpoint, body)
    try:
        schema.model_validate(body)
    except ValidationError as exc:
        locations = [tuple(item["loc"]) for item in exc.errors()]
    else:
        raise AssertionError(f"refused, yet {schema.__name__} accepts it: {message}")
    assert message.startswith(f"invalid {endpoint} {form} ({len(locations)} problem"), message
    assert len(message) < MESSAGE_MAX
    for location in locations[:PROBLEMS_SHOWN]:
        # Each problem is named by its path, which is a place in this body (its parent exists).
        assert f"{field_path(location)}: " in message, (location, message[:500])
        if location:
            container = get(body, location[:-1])
            assert isinstance(container, dict | list), (location, message[:500])
    phone = body.get("phone") if isinstance(body, dict) else None
    if isinstance(phone, str):
        digits = "".join(c for c in phone if c in "0123456789")
        if len(digits) >= 8:
            assert digits not in message
            assert phone not in message


def check_wire(endpoint: Endpoint, update: ZapiModel) -> None:
    wire = update.to_wire()
    text = json.dumps(wire, allow_nan=False)  # JSON as Z-API reads it: no NaN, no Infinity
    assert "null" not in json.dumps(_structure(wire))
    if isinstance(update, OrderUpdate):
        assert not {"total", "subTotal"} & set(wire["order"])
    if not isinstance(update, ShortUpdate):
        assert wire["phone"].isdigit()
    again = validate_request(endpoint, json.loads(text))
    assert type(again) is type(update)
    assert again.to_wire() == wire


def _structure(value: Any) -> Any:
    """``value`` with every string replaced by "s": a "null" inside a text is not a null."""
    if isinstance(value, dict):
        return {"k": [_structure(child) for child in value.values()]}
    if isinstance(value, list):
        return [_structure(child) for child in value]
    return "s" if isinstance(value, str) else value


@MANY
@given(ENDPOINTS, json_values)
def test_any_json_value_is_a_model_or_an_invalid_body_error(endpoint: Endpoint, body: Any) -> None:
    checked(endpoint, body)


#: Every field name of both forms: generated objects made of them reach the fields' own rules.
FIELD_NAMES = sorted(
    {"phone", "messageId", "referenceId", "orderRequestId", "orderKey", "orderStatus"}
    | {"paymentStatus"}
    | {"order", "message", "currency", "products", *OPTIONAL_ORDER_FIELDS}
    | {"name", "value", "quantity", "productId", "isCustomItem"}
)
field_objects = st.recursive(
    st.dictionaries(st.sampled_from(FIELD_NAMES), hostile_values, max_size=8),
    lambda children: st.dictionaries(
        st.sampled_from(FIELD_NAMES), children | st.lists(children, max_size=3), max_size=8
    ),
    max_leaves=6,
)


@MANY
@given(ENDPOINTS, field_objects)
def test_objects_of_the_contracts_field_names_fail_cleanly(
    endpoint: Endpoint, body: dict[str, Any]
) -> None:
    checked(endpoint, body)


@MANY
@given(endpoint_and_body())
def test_valid_bodies_are_accepted_and_go_out_as_zapi_documents(
    case: tuple[Endpoint, dict[str, Any]],
) -> None:
    endpoint, body = case
    update = checked(endpoint, copy.deepcopy(body))
    assert update is not None, body
    assert update.to_wire() == expected_wire(body)


@MANY
@given(mutated())
def test_a_body_broken_anywhere_fails_cleanly_or_goes_out_clean(case: tuple[Endpoint, Any]) -> None:
    checked(*case)


def test_deep_nesting_anywhere_fails_cleanly() -> None:
    """100,000 levels (Python's JSON decoder would stop at its recursion limit long before):
    nothing in validation walks a value it refuses."""
    deep = nested(100_000)
    for endpoint in Endpoint:
        for body in [
            deep,
            {**copy.deepcopy(DOCS_STATUS_BODY), "order": deep},
            {**copy.deepcopy(DOCS_STATUS_BODY), "extra": deep},
            {"messageId": "M", "orderStatus": "shipped", "paymentStatus": "paid", "message": deep},
        ]:
            assert checked(endpoint, body) is None
        body = copy.deepcopy(DOCS_STATUS_BODY)
        body["order"]["products"].append(deep)
        body["order"]["discount"] = deep
        assert checked(endpoint, body) is None
