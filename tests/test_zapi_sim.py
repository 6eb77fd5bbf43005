"""The fake Z-API answers as Z-API's docs and FACTS.md say, so the other tests mean something."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from devtools.zapi_sim import NOT_FOUND_BODY, ZapiSimulator
from devtools.zapi_sim.routes.instance_settings import NOT_HTTPS
from tests.bodies import unique_body

INSTANCE, TOKEN, CLIENT = "inst-1", "tok-1", "ct-1"
ROUTE = f"/instances/{INSTANCE}/token/{TOKEN}/order-status-update"
HEADERS = {"Client-Token": CLIENT, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def sim() -> Iterator[ZapiSimulator]:
    with ZapiSimulator(instance_id=INSTANCE, instance_token=TOKEN, client_token=CLIENT) as s:
        yield s


@pytest.fixture
def http(sim: ZapiSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url) as client:
        yield client


def test_success_reply_has_zaap_id_message_id_and_id(http: httpx.Client) -> None:
    response = http.post(ROUTE, json=unique_body(), headers=HEADERS)
    assert response.status_code == 200
    reply = response.json()
    assert set(reply) == {"zaapId", "messageId", "id"}
    assert reply["id"] == reply["messageId"]


def test_wrong_route_answers_200_not_found(http: httpx.Client) -> None:
    response = http.post(ROUTE.replace("order-status-update", "order-update"), headers=HEADERS)
    assert (response.status_code, response.json()) == (200, NOT_FOUND_BODY)


def test_wrong_method_is_405(http: httpx.Client) -> None:
    assert http.get(ROUTE, headers=HEADERS).status_code == 405


def test_missing_json_content_type_is_415(http: httpx.Client) -> None:
    response = http.post(ROUTE, content=b"{}", headers={"Client-Token": CLIENT})
    assert response.status_code == 415


def test_missing_client_token_is_400(http: httpx.Client) -> None:
    response = http.post(ROUTE, json=unique_body())
    assert response.status_code == 400
    assert response.json() == {"error": "your client-token is not configured"}


def test_wrong_client_token_is_403_and_echoed(http: httpx.Client) -> None:
    headers = {**HEADERS, "Client-Token": "nope-123"}
    response = http.post(ROUTE, json=unique_body(), headers=headers)
    assert response.status_code == 403
    assert response.json() == {"error": "Client-Token nope-123 not allowed"}


def test_missing_field_is_400(http: httpx.Client) -> None:
    body = unique_body()
    del body["orderRequestId"]
    response = http.post(ROUTE, json=body, headers=HEADERS)
    assert (response.status_code, response.json()) == (400, {"error": "orderRequestId is required"})


def test_rate_limit_answers_429_with_retry_after(sim: ZapiSimulator, http: httpx.Client) -> None:
    sim.rate_limit, sim.rate_burst = 3, 1
    try:
        statuses = [http.post(ROUTE, json=unique_body(), headers=HEADERS) for _ in range(6)]
    finally:
        sim.rate_limit = None
    assert [r.status_code for r in statuses] == [200, 200, 200, 200, 429, 429]
    assert statuses[-1].headers["retry-after"] == "1"


def test_control_routes_script_faults_for_other_processes(http: httpx.Client) -> None:
    body = unique_body()
    script = {"messageId": body["messageId"], "faults": [{"status": 502, "body": "down"}]}
    assert http.post("/__sim__/script", json=script).status_code == 200
    assert http.post(ROUTE, json=body, headers=HEADERS).status_code == 502
    assert http.post(ROUTE, json=body, headers=HEADERS).status_code == 200
    recorded = [r for r in http.get("/__sim__/requests").json() if body["messageId"] in r["body"]]
    assert [r["status"] for r in recorded] == [502, 200]


def settings_route(name: str) -> str:
    return f"/instances/{INSTANCE}/token/{TOKEN}/{name}"


def test_every_webhook_is_set_remembered_and_read_back(
    sim: ZapiSimulator, http: httpx.Client
) -> None:
    sim.reset()
    url = "https://hooks.example.com/webhooks/zapi/s3cret"
    body = {"value": url, "notifySentByMe": True}
    response = http.put(settings_route("update-every-webhooks"), json=body, headers=HEADERS)
    assert (response.status_code, response.json()) == (200, {"value": True})
    assert sim.webhook_settings(INSTANCE) == body
    assert http.get("/__sim__/webhooks").json() == {INSTANCE: body}
    data = http.get(settings_route("me"), headers=HEADERS).json()
    assert data["receivedCallbackUrl"] == data["deliveryCallbackUrl"] == url
    assert (data["receiveCallbackSentByMe"], data["connected"], data["token"]) == (
        True,
        True,
        TOKEN,
    )
    off = http.put(
        settings_route("update-notify-sent-by-me"), json={"notifySentByMe": False}, headers=HEADERS
    )
    assert off.json() == {"value": True}
    assert sim.webhook_settings(INSTANCE) == {"value": url, "notifySentByMe": False}


@pytest.mark.parametrize(
    ("route", "body", "answer"),
    [
        ("update-every-webhooks", {"value": "http://h/x"}, (200, {"error": NOT_HTTPS})),
        ("update-every-webhooks", {"value": "ftp://h/x"}, (200, {"error": NOT_HTTPS})),
        ("update-every-webhooks", {}, (400, {"error": "value is required"})),
        (
            "update-every-webhooks",
            {"value": "https://h/x", "notifySentByMe": "yes"},
            (400, {"error": "notifySentByMe must be a boolean"}),
        ),
        (
            "update-notify-sent-by-me",
            {"notifySentByMe": 1},
            (400, {"error": "notifySentByMe is required (a boolean)"}),
        ),
    ],
)
def test_a_settings_update_z_api_refuses_changes_nothing(
    sim: ZapiSimulator, http: httpx.Client, route: str, body: dict[str, object], answer: object
) -> None:
    sim.reset()
    response = http.put(settings_route(route), json=body, headers=HEADERS)
    assert (response.status_code, response.json()) == answer
    assert sim.webhook_settings(INSTANCE) is None


def test_settings_routes_check_method_and_credentials_like_the_others(
    http: httpx.Client,
) -> None:
    body = {"value": "https://h/x"}
    assert (
        http.post(settings_route("update-every-webhooks"), json=body, headers=HEADERS).status_code
        == 405
    )
    assert http.put(settings_route("me"), headers=HEADERS).status_code == 405
    wrong = {**HEADERS, "Client-Token": "nope-123"}
    for response in (
        http.put(settings_route("update-every-webhooks"), json=body, headers=wrong),
        http.get(settings_route("me"), headers=wrong),
    ):
        assert (response.status_code, response.json()) == (
            403,
            {"error": "Client-Token nope-123 not allowed"},
        )
    missing = http.put(settings_route("update-notify-sent-by-me"), json={"notifySentByMe": True})
    assert missing.status_code == 400
