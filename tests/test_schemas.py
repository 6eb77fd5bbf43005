"""The request schemas accept Z-API's documented bodies unchanged and name every bad field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import InvalidBodyError
from tasks.contract.schemas import (
    PRODUCT_NAME_MAX_LENGTH,
    OrderPaymentUpdate,
    OrderStatusUpdate,
    ZapiReply,
)
from tasks.contract.validation import validate_body
from tests.bodies import DOCS_PAYMENT_BODY, DOCS_STATUS_BODY


def errors_of(body: Any, endpoint: Endpoint = Endpoint.ORDER_STATUS_UPDATE) -> str:
    with pytest.raises(InvalidBodyError) as caught:
        validate_body(endpoint, body)
    return str(caught.value)


@pytest.mark.parametrize(
    ("model", "body"),
    [(OrderStatusUpdate, DOCS_STATUS_BODY), (OrderPaymentUpdate, DOCS_PAYMENT_BODY)],
)
def test_documented_examples_pass_and_go_out_unchanged(model: Any, body: dict[str, Any]) -> None:
    assert model.model_validate(body).to_wire() == body


def test_optional_fields_left_out_stay_out() -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    del body["message"]
    for name in ("discount", "tax", "shipping"):
        del body["order"][name]
    assert OrderStatusUpdate.model_validate(body).to_wire() == body


def test_integer_amounts_stay_integers_and_floats_stay_floats() -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["order"]["products"][0]["value"] = 150.5
    wire = OrderStatusUpdate.model_validate(body).to_wire()
    assert wire["order"]["products"][0]["value"] == 150.5
    assert type(wire["order"]["products"][1]["value"]) is int


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("+55 (44) 99999-9999", "5544999999999"),
        ("55.44.9999.9999", "554499999999"),
        ("5544999999999", "5544999999999"),
    ],
)
def test_phone_formatting_is_stripped(given: str, sent: str) -> None:
    body = {**DOCS_STATUS_BODY, "phone": given}
    assert OrderStatusUpdate.model_validate(body).to_wire()["phone"] == sent


@pytest.mark.parametrize("phone", ["55449999XXXX", "5544*9999999", "123456789", "1" * 16, "", 5544])
def test_bad_phones_are_refused(phone: Any) -> None:
    assert errors_of({**DOCS_STATUS_BODY, "phone": phone}).count("phone:") == 1


def test_a_typo_in_a_field_name_does_not_pass_silently() -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["orderstatus"] = body.pop("orderStatus")
    message = errors_of(body)
    assert "orderstatus: Extra inputs are not permitted" in message
    assert "orderStatus: Field required" in message


def test_snake_case_names_are_refused() -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["order_status"] = body.pop("orderStatus")
    assert "order_status: Extra inputs are not permitted" in errors_of(body)


def test_every_offending_field_is_named_with_its_rule() -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body.update(orderStatus="sent", paymentStatus="refunded", referenceId="", messageId="a b")
    body["order"].update(currency="BRX", discount=-1, shipping="5", total=-1)
    body["order"]["products"][0].update(value=-5, quantity=0, isCustomItem=1, name="")
    body["order"]["products"][1].update(value="150", productId=None)
    del body["orderRequestId"]
    message = errors_of(body)
    expected = {
        "orderStatus": "Input should be 'pending', 'processing', 'shipped', 'completed' or",
        "paymentStatus": "Input should be 'pending' or 'paid'",
        "referenceId": "must be a non-empty id without spaces",
        "messageId": "must be a non-empty id without spaces",
        "orderRequestId": "Field required",
        "order.currency": "must be an ISO 4217 currency code",
        "order.discount": "must be greater than or equal to 0",
        "order.shipping": "must be a number (not a string or boolean)",
        "order.total": "must be greater than or equal to 0",
        "order.products[0].value": "must be greater than or equal to 0",
        "order.products[0].quantity": "Input should be greater than 0",
        "order.products[0].isCustomItem": "Input should be a valid boolean",
        "order.products[0].name": "String should have at least 1 character",
        "order.products[1].value": "must be a number (not a string or boolean)",
        "order.products[1].productId": "Input should be a valid string",
    }
    for field, rule in expected.items():
        assert f"{field}: {rule}" in message, (field, message)
    assert message.startswith(f"invalid order-status-update body ({len(expected)} problems)")


@pytest.mark.parametrize(
    "value", [True, "1", [], {}, float("nan"), float("inf"), -0.01, 2**53, 10**400, 1e300]
)
def test_amounts_must_be_finite_non_negative_numbers(value: Any) -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["order"]["tax"] = value
    assert errors_of(body).count("order.tax: must be") == 1


def test_an_order_needs_at_least_one_product() -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["order"]["products"] = []
    assert "order.products: List should have at least 1 item" in errors_of(body)


def test_a_body_that_is_not_an_object_is_refused() -> None:
    assert "body: Input should be a valid dictionary" in errors_of(["not", "a", "dict"])


def test_payment_update_errors_name_the_payment_endpoint() -> None:
    message = errors_of({}, Endpoint.ORDER_PAYMENT_UPDATE)
    assert message.startswith("invalid order-payment-update body (7 problems)")


def test_reply_fills_id_from_message_id_and_ignores_extras() -> None:
    reply = ZapiReply.model_validate({"zaapId": "Z", "messageId": "M", "extra": 1})
    assert reply.to_result() == {"zaapId": "Z", "messageId": "M", "id": "M"}


@pytest.mark.parametrize(
    "body", [{}, {"zaapId": "Z"}, {"messageId": "M"}, {"zaapId": "", "messageId": "M"}]
)
def test_reply_needs_zaap_id_and_message_id(body: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        ZapiReply.model_validate(body)


def test_null_optional_fields_are_left_out_of_the_wire_form() -> None:
    """Z-API's docs call discount, tax, shipping and message optional: null is absent."""
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["message"] = None
    body["order"].update(discount=None, tax=None, shipping=None)
    wire = OrderStatusUpdate.model_validate(body).to_wire()
    assert "message" not in wire
    assert set(wire["order"]) == {"currency", "products"}


def test_null_required_fields_are_still_refused() -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["referenceId"] = None
    body["order"]["products"][0]["productId"] = None
    message = errors_of(body)
    assert "referenceId: Input should be a valid string" in message
    assert "order.products[0].productId: Input should be a valid string" in message


def test_the_webhooks_total_and_sub_total_are_accepted_and_never_sent() -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["order"].update(total=605, subTotal=600.5)
    wire = OrderStatusUpdate.model_validate(body).to_wire()
    assert wire == OrderStatusUpdate.model_validate(DOCS_STATUS_BODY).to_wire()
    body["order"].update(total=None, subTotal=None)
    assert "total" not in OrderStatusUpdate.model_validate(body).to_wire()["order"]


@pytest.mark.parametrize("value", ["605", -1, True, float("inf")])
def test_total_and_sub_total_are_checked_as_amounts(value: Any) -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["order"].update(total=value, subTotal=value)
    message = errors_of(body)
    assert message.count("order.total: must be") == 1
    assert message.count("order.subTotal: must be") == 1


def test_total_is_accepted_only_in_the_order() -> None:
    assert "total: Extra inputs are not permitted" in errors_of({**DOCS_STATUS_BODY, "total": 5})


@pytest.mark.parametrize(
    ("product_id", "is_custom_item"),
    [("23940797548900636", True), ("custom-item-4N8FCTW23N7", False), ("Custom-Item-X", True)],
)
def test_is_custom_item_must_agree_with_the_custom_item_prefix(
    product_id: str, is_custom_item: bool
) -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["order"]["products"][1].update(productId=product_id, isCustomItem=is_custom_item)
    message = errors_of(body, Endpoint.ORDER_PAYMENT_UPDATE)
    assert message.startswith("invalid order-payment-update body (1 problem): ")
    assert "order.products[1].isCustomItem: must be true when productId starts with " in message


def test_a_bad_product_id_is_not_blamed_on_is_custom_item() -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["order"]["products"][0]["productId"] = "custom item"
    message = errors_of(body)
    assert "(1 problem): order.products[0].productId: must be a non-empty id" in message


def test_one_product_name_length_for_the_webhook_and_the_updates() -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["order"]["products"][0]["name"] = "n" * PRODUCT_NAME_MAX_LENGTH
    assert OrderStatusUpdate.model_validate(body).to_wire() == body
    body["order"]["products"][0]["name"] += "n"
    assert (
        f"order.products[0].name: String should have at most {PRODUCT_NAME_MAX_LENGTH} characters"
        in errors_of(body)
    )


def test_a_quantity_is_bounded() -> None:
    body = copy.deepcopy(DOCS_STATUS_BODY)
    body["order"]["products"][0]["quantity"] = 2**53
    assert "order.products[0].quantity: Input should be less than or equal to" in errors_of(body)


def test_unknown_field_names_are_shown_short_and_without_a_phone() -> None:
    body = {**DOCS_STATUS_BODY, "+55 (11) 99999-1234": 1, "k" * 500: 1, "a\nb": 1}
    message = errors_of(body)
    assert "99999-1234" not in message
    assert "5511999991234" not in message
    assert "+55119*****234: Extra inputs are not permitted" in message
    assert "k" * 61 + "...: Extra inputs" in message
    assert "k" * 62 not in message
    assert "a\\nb: Extra inputs" in message


def test_a_body_with_many_problems_lists_the_first_fifty() -> None:
    body = {**DOCS_STATUS_BODY, **{f"extra{i}": i for i in range(10_000)}}
    message = errors_of(body)
    assert message.startswith("invalid order-status-update body (10000 problems): extra0: ")
    assert message.endswith("; extra49: Extra inputs are not permitted; and 9950 more")
    assert len(message) < 3000
