"""Every Z-API answer is classified: success, permanent refusal or transient failure."""

from __future__ import annotations

import json

import pytest

from tasks.contract.errors import (
    PermanentError,
    TransientError,
    ZapiRateLimitedError,
    ZapiRejectedError,
    ZapiUnavailableError,
)
from tasks.zapi.responses import interpret, interpret_instance_data, interpret_value
from tasks.zapi.status import InstanceSettings

SECRET = "client-token-value-123"


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_success_needs_zaap_id_and_message_id() -> None:
    reply = interpret(200, {}, body({"zaapId": "Z1", "messageId": "M1", "id": "M1"}))
    assert reply.to_result() == {"zaapId": "Z1", "messageId": "M1", "id": "M1"}


@pytest.mark.parametrize(
    "payload",
    [
        body({"error": "NOT_FOUND", "message": "Unable to find matching target resource method"}),
        body({"zaapId": "Z1"}),
        b"<html>ok</html>",
        b"",
    ],
)
def test_a_200_without_ids_is_a_permanent_error(payload: bytes) -> None:
    with pytest.raises(ZapiRejectedError, match="HTTP 200 without zaapId and messageId") as caught:
        interpret(200, {}, payload)
    assert caught.value.status_code == 200


def test_the_200_not_found_error_text_is_kept() -> None:
    payload = body({"error": "NOT_FOUND", "message": "Unable to find matching target resource"})
    with pytest.raises(ZapiRejectedError, match="NOT_FOUND: Unable to find matching target"):
        interpret(200, {}, payload)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 415, 422])
def test_client_errors_are_permanent_with_status_and_text(status: int) -> None:
    with pytest.raises(PermanentError) as caught:
        interpret(status, {}, body({"error": "null not allowed"}))
    assert str(caught.value) == f"Z-API refused the request: HTTP {status}: null not allowed"


@pytest.mark.parametrize("status", [408, 425, 500, 502, 503, 504])
def test_server_errors_are_transient(status: int) -> None:
    with pytest.raises(ZapiUnavailableError, match=f"HTTP {status}") as caught:
        interpret(status, {"retry-after": "4"}, b"upstream down")
    assert caught.value.retry_after == 4.0


def test_429_is_transient_and_carries_retry_after() -> None:
    with pytest.raises(ZapiRateLimitedError, match=r"HTTP 429.*Retry-After 2s") as caught:
        interpret(429, {"retry-after": "2"}, body({"error": "Too many requests"}))
    assert isinstance(caught.value, TransientError)
    assert caught.value.retry_after == 2.0


def test_an_echoed_client_token_is_redacted() -> None:
    payload = body({"error": f"Client-Token {SECRET} not allowed"})
    with pytest.raises(ZapiRejectedError) as caught:
        interpret(403, {}, payload, secrets=[SECRET])
    assert SECRET not in str(caught.value)
    assert "HTTP 403: Client-Token *** not allowed" in str(caught.value)


def test_long_error_bodies_are_cut() -> None:
    with pytest.raises(ZapiUnavailableError) as caught:
        interpret(502, {}, b"x" * 10_000)
    assert len(str(caught.value)) < 600


def test_a_malformed_retry_after_is_named_and_ignored() -> None:
    with pytest.raises(ZapiRateLimitedError, match=r"Retry-After '1e15' ignored") as caught:
        interpret(429, {"retry-after": "1e15"}, b'{"error": "slow down"}')
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        (200, body({"value": False}), ZapiRejectedError),
        (200, body({"error": "NOT_FOUND", "message": "Unable to find"}), ZapiRejectedError),
        (200, body({"error": "webhook must be https"}), ZapiRejectedError),
        (200, b"", ZapiRejectedError),
        (400, body({"error": "Invalid URL"}), ZapiRejectedError),
        (503, body({"error": "down"}), ZapiUnavailableError),
    ],
)
def test_a_settings_update_is_done_only_with_value_true(
    status: int, payload: bytes, error: type[Exception]
) -> None:
    interpret_value(200, {}, body({"value": True}))
    with pytest.raises(error):
        interpret_value(status, {}, payload)


def test_an_echoed_token_in_a_settings_refusal_is_redacted() -> None:
    with pytest.raises(ZapiRejectedError, match=r"Client-Token \*\*\* not allowed") as caught:
        interpret_value(403, {}, body({"error": f"Client-Token {SECRET} not allowed"}), [SECRET])
    assert SECRET not in str(caught.value)


def test_instance_data_keeps_the_webhook_settings_and_drops_the_token() -> None:
    data = {
        "id": "3C3F",
        "token": SECRET,
        "connected": True,
        "receivedCallbackUrl": "https://h/webhooks/zapi/s",
        "deliveryCallbackUrl": None,
        "receiveCallbackSentByMe": False,
        "callRejectMessage": "busy",
        "initialDataCallbackUrl": 42,  # not a URL: left out
    }
    settings = interpret_instance_data(200, {}, body(data))
    assert settings == InstanceSettings(
        connected=True,
        notify_sent_by_me=False,
        webhook_urls={
            "deliveryCallbackUrl": None,
            "receivedCallbackUrl": "https://h/webhooks/zapi/s",
        },
    )
    assert SECRET not in repr(settings)


@pytest.mark.parametrize(
    "payload",
    [body({"error": "NOT_FOUND", "message": "Unable"}), body({}), body([1]), b"<html>"],
)
def test_instance_data_without_the_instances_fields_is_an_error(payload: bytes) -> None:
    with pytest.raises(ZapiRejectedError, match="without the instance's data"):
        interpret_instance_data(200, {}, payload)
