"""Keep-alive connections to Z-API, one lent per request (tasks/zapi/connections.py).

Real sends to the session's fake Z-API on 127.0.0.1; connections are counted where they are
opened and closed (httpcore's socket backend, our deadline stream).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx
import pytest
from pydantic import SecretStr

from config import ZapiCredentials
from devtools.zapi_sim import Fault, ZapiSimulator
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import ZapiTransportError
from tasks.zapi.client import ZapiClient
from tasks.zapi.deadline import DeadlineStream, DeadlineTransport
from tests.bodies import unique_body
from tests.conftest import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN

CREDENTIALS = ZapiCredentials(INSTANCE_ID, SecretStr(INSTANCE_TOKEN), SecretStr(CLIENT_TOKEN))


@pytest.fixture
def client(zapi_sim: ZapiSimulator) -> Iterator[ZapiClient]:
    client = ZapiClient(
        zapi_sim.base_url, CREDENTIALS, connect_timeout=1.0, timeout=5.0, max_connections=16
    )
    yield client
    client.close()


def send_together(client: ZapiClient, sim: ZapiSimulator, count: int, hold: float) -> None:
    """``count`` sends at once, each answered after ``hold`` seconds, so none can wait for
    another's connection."""
    bodies = [unique_body() for _ in range(count)]
    for body in bodies:
        reply = {"zaapId": "z", "messageId": body["messageId"], "id": body["messageId"]}
        sim.script(body["messageId"], Fault(delay=hold, status=200, body=reply))
    errors: list[BaseException] = []

    def send(body: dict[str, Any]) -> None:
        try:
            client.send(Endpoint.ORDER_STATUS_UPDATE, body)
        except ZapiTransportError as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors, errors


def test_concurrent_sends_each_get_a_connection_and_later_sends_reuse_them(
    client: ZapiClient, zapi_sim: ZapiSimulator, connects: list[str]
) -> None:
    send_together(client, zapi_sim, 6, hold=0.3)
    assert len(connects) == 6
    bodies = [unique_body() for _ in range(10)]
    replies = [client.send(Endpoint.ORDER_PAYMENT_UPDATE, body) for body in bodies]
    assert all(reply.zaapId for reply in replies)
    assert [len(zapi_sim.requests(body["messageId"])) for body in bodies] == [1] * 10
    assert len(connects) == 6  # one after another, they all went on a warm connection


def test_a_send_checks_one_connection_however_many_are_open(
    client: ZapiClient, zapi_sim: ZapiSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpcore's own pool checked every connection it held, twice per request (polling each
    idle socket): with 12 open, 24 checks a send. Lent one at a time, a send checks its own."""
    send_together(client, zapi_sim, 12, hold=0.3)
    checked: list[object] = []
    real_has_expired = httpcore.HTTPConnection.has_expired

    def counting(self: httpcore.HTTPConnection) -> bool:
        checked.append(self)
        return real_has_expired(self)

    monkeypatch.setattr(httpcore.HTTPConnection, "has_expired", counting)
    client.send(Endpoint.ORDER_STATUS_UPDATE, unique_body())
    assert 1 <= len(checked) <= 2
    assert len(set(map(id, checked))) == 1


def test_connections_unused_past_the_keep_alive_expiry_are_closed(
    zapi_sim: ZapiSimulator, connects: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[DeadlineStream] = []
    real_close = DeadlineStream.close

    def counting(self: DeadlineStream) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(DeadlineStream, "close", counting)
    limits = httpx.Limits(max_connections=8, keepalive_expiry=0.3)
    http = httpx.Client(transport=DeadlineTransport(limits=limits))
    url = f"{zapi_sim.base_url}/instances/{INSTANCE_ID}/token/{INSTANCE_TOKEN}/order-status-update"

    def send(delay: float = 0.0) -> None:
        body = unique_body()
        if delay:
            reply = {"zaapId": "z", "messageId": body["messageId"], "id": body["messageId"]}
            zapi_sim.script(body["messageId"], Fault(delay=delay, status=200, body=reply))
        http.post(url, json=body, headers={"Client-Token": CLIENT_TOKEN}).raise_for_status()

    try:
        holds = [threading.Thread(target=send, args=(0.2,)) for _ in range(4)]
        for thread in holds:
            thread.start()
        for thread in holds:
            thread.join(timeout=5)
        assert len(connects) == 4
        send()
        assert (len(connects), len(closed)) == (4, 0)  # reused within the expiry
        time.sleep(0.5)
        send()
        # All four had been unused too long: closed, and the send opened a fresh one.
        assert (len(connects), len(closed)) == (5, 4)
    finally:
        http.close()
    assert len(closed) == 5


def test_max_connections_bounds_sends_and_a_failed_send_frees_its_connection(
    zapi_sim: ZapiSimulator, connects: list[str]
) -> None:
    client = ZapiClient(
        zapi_sim.base_url, CREDENTIALS, connect_timeout=0.5, timeout=1.0, max_connections=1
    )
    dropped = unique_body()
    zapi_sim.script(dropped["messageId"], Fault(drop=True))
    try:
        with pytest.raises(ZapiTransportError):
            client.send(Endpoint.ORDER_STATUS_UPDATE, dropped)
        started = time.monotonic()
        reply = client.send(Endpoint.ORDER_STATUS_UPDATE, unique_body())
        waited = time.monotonic() - started
    finally:
        client.close()
    assert reply.zaapId
    assert waited < 0.5  # its one connection was free at once, not after a pool timeout
    assert len(connects) == 2  # the dropped one was replaced
