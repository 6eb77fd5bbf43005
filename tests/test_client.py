"""The Z-API client over real HTTP: URL, headers, and transport failures as transient errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from config import ZapiCredentials
from devtools.ports import free_port
from devtools.zapi_sim import Fault, ZapiSimulator
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import ZapiRejectedError, ZapiTransportError, ZapiUnavailableError
from tasks.zapi.client import ZapiClient
from tasks.zapi.responses import interpret_status
from tasks.zapi.status import InstanceStatus
from tests.bodies import unique_body

CREDENTIALS = ZapiCredentials("inst-9", SecretStr("tok-SECRET-9"), SecretStr("ct-SECRET-9"))


@pytest.fixture(scope="module")
def sim() -> Iterator[ZapiSimulator]:
    with ZapiSimulator(
        instance_id="inst-9", instance_token="tok-SECRET-9", client_token="ct-SECRET-9"
    ) as simulator:
        yield simulator


@pytest.fixture
def client(sim: ZapiSimulator) -> Iterator[ZapiClient]:
    zapi = ZapiClient(sim.base_url + "/", CREDENTIALS, timeout=0.5, connect_timeout=0.5)
    yield zapi
    zapi.close()


def test_sends_to_the_endpoint_with_client_token(sim: ZapiSimulator, client: ZapiClient) -> None:
    body = unique_body()
    reply = client.send(Endpoint.ORDER_PAYMENT_UPDATE, body)
    [request] = sim.requests(body["messageId"])
    assert request.path == "/instances/inst-9/token/tok-SECRET-9/order-payment-update"
    assert request.headers["client-token"] == "ct-SECRET-9"
    assert request.json == body
    assert reply.messageId


def test_timeout_is_transient_and_secret_free(sim: ZapiSimulator, client: ZapiClient) -> None:
    body = unique_body()
    sim.script(body["messageId"], Fault(delay=1.0))
    with pytest.raises(ZapiTransportError, match="no answer from Z-API in time") as caught:
        client.send(Endpoint.ORDER_STATUS_UPDATE, body)
    assert "SECRET" not in str(caught.value)
    assert caught.value.__suppress_context__  # the httpx error (with the URL) is not chained
    assert caught.value.ambiguous  # the request was sent: Z-API may have delivered it


def test_connection_refused_is_transient() -> None:
    zapi = ZapiClient(f"http://127.0.0.1:{free_port()}", CREDENTIALS, connect_timeout=0.5)
    with pytest.raises(ZapiTransportError, match="could not reach Z-API: ConnectError") as caught:
        zapi.send(Endpoint.ORDER_STATUS_UPDATE, unique_body())
    assert "SECRET" not in str(caught.value)
    assert not caught.value.ambiguous  # nothing was sent


def test_echoed_token_in_a_refusal_is_redacted(sim: ZapiSimulator, client: ZapiClient) -> None:
    body = unique_body()
    sim.script(body["messageId"], Fault(status=403, body={"error": "Client-Token ct-SECRET-9 no"}))
    with pytest.raises(ZapiRejectedError, match=r"HTTP 403: Client-Token \*\*\* no"):
        client.send(Endpoint.ORDER_STATUS_UPDATE, body)


def test_repr_shows_no_secret(client: ZapiClient) -> None:
    assert "SECRET" not in repr(client)


def test_status_reads_the_instances_connection(sim: ZapiSimulator, client: ZapiClient) -> None:
    assert client.status() == InstanceStatus(connected=True, error=None, smartphone_connected=True)
    sim.set_connected(False, "inst-9")
    try:
        assert client.status() == InstanceStatus(False, "You are not connected.", False)
    finally:
        sim.set_connected(True, "inst-9")
    [poll, *_] = sim.status_polls()
    assert (poll.method, poll.path) == ("GET", "/instances/inst-9/token/tok-SECRET-9/status")
    assert poll.headers["client-token"] == "ct-SECRET-9"


def test_status_errors_are_classified_and_secret_free(sim: ZapiSimulator) -> None:
    wrong = ZapiCredentials("inst-9", SecretStr("tok-SECRET-9"), SecretStr("ct-WRONG-SECRET"))
    zapi = ZapiClient(sim.base_url, wrong, timeout=0.5, connect_timeout=0.5)
    with pytest.raises(ZapiRejectedError, match=r"HTTP 403: Client-Token \*\*\* not allowed"):
        zapi.status()
    zapi.close()
    sim.set_outage(Fault(status=503))
    try:
        with pytest.raises(ZapiUnavailableError, match="HTTP 503"):
            ZapiClient(sim.base_url, CREDENTIALS).status()
    finally:
        sim.set_outage(None)
    unreachable = ZapiClient(f"http://127.0.0.1:{free_port()}", CREDENTIALS, connect_timeout=0.5)
    with pytest.raises(ZapiTransportError, match="could not ask Z-API") as caught:
        unreachable.status()
    assert not caught.value.ambiguous
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"error": "NOT_FOUND", "message": "Unable to find"}', "NOT_FOUND: Unable to find"),
        (b'{"connected": "yes"}', '{"connected": "yes"}'),
        (b"<html>", "<html>"),
    ],
)
def test_a_status_200_without_a_boolean_connected_is_an_error(body: bytes, said: str) -> None:
    with pytest.raises(ZapiRejectedError, match="without a connected status") as caught:
        interpret_status(200, {}, body)
    assert said in str(caught.value)


def test_every_webhook_is_set_and_read_back_without_the_token(
    sim: ZapiSimulator, client: ZapiClient
) -> None:
    sim.reset()
    url = "https://hooks.example.com/webhooks/zapi/hook-9"
    client.update_every_webhooks(url)
    [put] = [r for r in sim.requests() if r.path.endswith("/update-every-webhooks")]
    assert (put.method, put.path) == (
        "PUT",
        "/instances/inst-9/token/tok-SECRET-9/update-every-webhooks",
    )
    assert put.headers["client-token"] == "ct-SECRET-9"
    assert put.json == {"value": url, "notifySentByMe": True}
    settings = client.instance_settings()
    assert settings.notify_sent_by_me is True
    assert settings.connected is True
    assert settings.webhook_urls["receivedCallbackUrl"] == url
    assert "SECRET" not in repr(settings)


def test_a_webhook_url_z_api_refuses_with_a_200_is_an_error(client: ZapiClient) -> None:
    with pytest.raises(ZapiRejectedError, match=r'HTTP 200 without \{"value": true\}: Only HTTPS'):
        client.update_every_webhooks("http://hooks.example.com/webhooks/zapi/hook-9")


def test_a_settings_call_that_times_out_says_it_may_have_been_applied(
    sim: ZapiSimulator, client: ZapiClient
) -> None:
    sim.set_outage(Fault(delay=1.0), "inst-9")
    try:
        with pytest.raises(
            ZapiTransportError, match=r"ReadTimeout, timeout 0.5s\): Z-API may"
        ) as caught:
            client.update_every_webhooks("https://hooks.example.com/webhooks/zapi/hook-9")
        assert caught.value.ambiguous
        with pytest.raises(
            ZapiTransportError, match="could not ask Z-API for the instance's data"
        ) as read:
            client.instance_settings()
        assert not read.value.ambiguous
    finally:
        sim.set_outage(None, "inst-9")
    assert "SECRET" not in str(caught.value) + str(read.value)
