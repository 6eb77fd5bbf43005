"""The Z-API client over real HTTP: URL, headers, and transport failures as transient errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from config import ZapiCredentials
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import ZapiRejectedError, ZapiTransportError
from tasks.zapi.client import ZapiClient
from tests.bodies import unique_body
from worker.dev.ports import free_port
from worker.dev.zapi_sim import Fault, ZapiSimulator

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
