"""The shop's own order id (tasks/contract/order_key.py): one rule for ``zapi.send_order``'s
``order_key`` kwarg and the ``orderKey`` that names an order in the updates' short forms, which
take it as a third way to name the order, alone."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.contract.endpoints import UPDATE_ENDPOINTS, Endpoint
from tasks.contract.errors import InvalidBodyError
from tasks.contract.job_kwargs import Call, check_kwargs
from tasks.contract.order_key import ORDER_KEY_MAX_LENGTH, ORDER_KEY_RULE, order_key_problem
from tasks.contract.schemas import ShortUpdate
from tasks.contract.validation import validate_update
from tests.bodies import DOCS_SEND_ORDER_BODY

SEND_ORDER = Endpoint.SEND_ORDER.task_name
STATUS = {
    Endpoint.ORDER_STATUS_UPDATE: "orderStatus",
    Endpoint.ORDER_PAYMENT_UPDATE: "paymentStatus",
}
NEW = {"orderStatus": "shipped", "paymentStatus": "paid"}

#: Keys a shop may use: any characters but controls, none of str.isspace's at either end.
valid_keys = st.text(
    st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=ORDER_KEY_MAX_LENGTH
).filter(lambda key: key == key.strip())
#: Keys the rule refuses, each for one reason.
invalid_keys = st.one_of(
    st.sampled_from(["", " ", "shop-1042 ", " shop-1042", "\u3000shop", "shop\u2028"]),
    st.tuples(valid_keys, st.characters(categories=["Cc"]), valid_keys).map("".join),
    st.text(min_size=ORDER_KEY_MAX_LENGTH + 1, max_size=300).filter(str.isprintable),
)
not_text: st.SearchStrategy[Any] = st.one_of(
    st.integers(), st.booleans(), st.lists(st.text(), max_size=2), st.just({})
)


def short(endpoint: Endpoint, **names: Any) -> dict[str, Any]:
    field = STATUS[endpoint]
    return {**names, field: NEW[field]}


@pytest.mark.parametrize("endpoint", UPDATE_ENDPOINTS, ids=str)
def test_a_short_update_may_name_its_order_by_the_shops_key(endpoint: Endpoint) -> None:
    body = short(endpoint, orderKey="shop-1042", message="On its way")
    update = validate_update(endpoint, body)
    assert isinstance(update, ShortUpdate)
    assert update.order_key == "shop-1042"
    assert update.to_wire() == body
    assert validate_update(endpoint, {**body, "messageId": None}).to_wire() == body


@pytest.mark.parametrize("endpoint", UPDATE_ENDPOINTS, ids=str)
@pytest.mark.parametrize(
    "names",
    [
        {"messageId": "3EB0C7"},
        {"orderRequestId": "4N8F"},
        {"messageId": "M", "orderRequestId": "O"},
    ],
)
def test_the_key_names_the_order_alone(endpoint: Endpoint, names: dict[str, str]) -> None:
    assert validate_update(endpoint, short(endpoint, **names)).to_wire() == short(endpoint, **names)
    with pytest.raises(InvalidBodyError) as caught:
        validate_update(endpoint, short(endpoint, orderKey="shop-1042", **names))
    assert str(caught.value).endswith(
        "(1 problem): body: orderKey names the order alone: give it, or "
        "messageId/orderRequestId, not both"
    )


@pytest.mark.parametrize("endpoint", UPDATE_ENDPOINTS, ids=str)
def test_an_update_naming_no_order_says_the_three_ways(endpoint: Endpoint) -> None:
    with pytest.raises(InvalidBodyError) as caught:
        validate_update(endpoint, short(endpoint, orderKey=None, messageId=None))
    assert "body: messageId, orderRequestId or orderKey is required" in str(caught.value)


@given(key=valid_keys)
def test_any_valid_key_is_taken_at_both_doors(key: str) -> None:
    assert order_key_problem(key) is None
    body = short(Endpoint.ORDER_STATUS_UPDATE, orderKey=key)
    assert validate_update(Endpoint.ORDER_STATUS_UPDATE, body).to_wire() == body
    call = Call.of(SEND_ORDER, [DOCS_SEND_ORDER_BODY], {"order_key": key})
    assert call.order_key == key
    check_kwargs({"order_key": key}, SEND_ORDER)


@given(key=invalid_keys | not_text)
def test_any_invalid_key_is_refused_at_both_doors_with_one_rule(key: Any) -> None:
    assert order_key_problem(key) == ORDER_KEY_RULE
    with pytest.raises(InvalidBodyError) as in_body:
        validate_update(
            Endpoint.ORDER_PAYMENT_UPDATE, short(Endpoint.ORDER_PAYMENT_UPDATE, orderKey=key)
        )
    assert "(1 problem): orderKey: " in str(in_body.value)
    with pytest.raises(InvalidBodyError) as in_kwargs:
        Call.of(SEND_ORDER, [DOCS_SEND_ORDER_BODY], {"order_key": key})
    assert f"; order_key: {ORDER_KEY_RULE}" in str(in_kwargs.value)
    with pytest.raises(InvalidBodyError, match=f"^order_key: {ORDER_KEY_RULE}$"):
        check_kwargs({"order_key": key}, SEND_ORDER)


def test_only_send_order_takes_the_kwarg() -> None:
    assert Call.of(SEND_ORDER, [DOCS_SEND_ORDER_BODY], {}).order_key is None
    for endpoint in UPDATE_ENDPOINTS:
        with pytest.raises(InvalidBodyError, match="got unknown kwargs: order_key"):
            Call.of(endpoint.task_name, [{}], {"order_key": "shop-1042"})
        with pytest.raises(InvalidBodyError, match=f"order_key: {endpoint.task_name} takes no"):
            check_kwargs({"order_key": "shop-1042"}, endpoint.task_name)
    with pytest.raises(InvalidBodyError) as caught:
        Call.of(SEND_ORDER, [], {"order_key": "shop-1042"})
    assert "and optionally the kwargs idempotency_key, sequence, force, instance, order_key" in str(
        caught.value
    )
