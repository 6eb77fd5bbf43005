"""The fake Z-API's own queue (FACTS.md, "Z-API's own queue"): while a phone is disconnected,
sends are accepted into it and play no callback; on reconnect it fires them by itself, in
order and spaced; ``POST /queue`` pages it and ``DELETE /queue[/{zaapId}]`` edits it. Issue
#30's reconciliation is tested against this, so it must hold."""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devtools.remote_sim import RemoteSimulator
from devtools.zapi_sim import OtherInstance, ZapiSimulator
from devtools.zapi_sim.outbox import QUEUE_CAPACITY
from tests.bodies import DOCS_SEND_ORDER_BODY, unique_body
from tests.receiver import Receiver

INSTANCE, TOKEN, CLIENT = "inst-q", "tok-q", "ct-q"
OTHER, OTHER_TOKEN = "inst-q2", "tok-q2"
BASE = f"/instances/{INSTANCE}/token/{TOKEN}"
HEADERS = {"Client-Token": CLIENT, "Content-Type": "application/json"}
SPACING = 0.05


@pytest.fixture(scope="module")
def sim(receiver: Receiver) -> Iterator[ZapiSimulator]:
    with ZapiSimulator(
        instance_id=INSTANCE,
        instance_token=TOKEN,
        client_token=CLIENT,
        webhook_url=receiver.url,
        queue_spacing=SPACING,
    ) as s:
        s.other_instances[OTHER] = OtherInstance(OTHER_TOKEN, CLIENT)
        yield s


@pytest.fixture
def http(sim: ZapiSimulator, receiver: Receiver) -> Iterator[httpx.Client]:
    """A client of a fake with nothing queued, fired or posted, and its phone connected."""
    sim.drain_callbacks()
    sim.reset()
    sim.queue_spacing = SPACING
    receiver.clear()
    with httpx.Client(base_url=sim.base_url, headers=HEADERS) as client:
        yield client


def send(http: httpx.Client, base: str = BASE, **changes: Any) -> dict[str, str]:
    response = http.post(f"{base}/order-status-update", json=unique_body(**changes))
    assert response.status_code == 200, response.text
    reply: dict[str, str] = response.json()
    return reply


def queue_then_reconnect(
    sim: ZapiSimulator, http: httpx.Client, count: int, spacing: float
) -> list[str]:
    """``count`` sends queued while the phone is disconnected, then the phone back (the
    queue firing every ``spacing`` s); their zaapIds."""
    sim.queue_spacing = spacing
    sim.set_connected(False)
    zaap_ids = [send(http)["zaapId"] for _ in range(count)]
    sim.set_connected(True)
    return zaap_ids


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def delivered(receiver: Receiver) -> list[str]:
    """The zaapIds of the DeliveryCallbacks the receiver heard, in arrival order."""
    return [body["zaapId"] for body in receiver.of_type("DeliveryCallback")]


def page(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post(f"{BASE}/queue", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_connected_phone_gets_a_send_at_once(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    reply = send(http)
    [fired] = sim.fired()
    assert (fired.instance_id, fired.route, fired.zaap_id) == (
        INSTANCE,
        "order-status-update",
        reply["zaapId"],
    )
    assert fired.message_id == reply["messageId"]
    assert sim.queued() == []
    sim.drain_callbacks()
    assert delivered(receiver) == [reply["zaapId"]]


def test_a_disconnected_phone_queues_sends_and_nothing_reaches_it(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    sim.set_connected(False)
    replies = [send(http) for _ in range(3)]
    assert len({reply["zaapId"] for reply in replies}) == 3  # each its own fresh ids
    time.sleep(5 * SPACING)
    sim.drain_callbacks()
    assert receiver.bodies == []
    assert sim.fired() == []
    assert [s.zaap_id for s in sim.queued()] == [reply["zaapId"] for reply in replies]
    status = http.get(f"{BASE}/status").json()
    assert status["connected"] is False


def test_reconnecting_fires_the_queue_in_order_and_spaced(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    zaap_ids = queue_then_reconnect(sim, http, 4, 0.1)
    until(lambda: len(sim.fired()) == 4)
    fired = sim.fired()
    assert [f.zaap_id for f in fired] == zaap_ids
    gaps = [later.fired_at - earlier.fired_at for earlier, later in itertools.pairwise(fired)]
    assert min(gaps) >= 0.09
    assert sim.queued() == []
    sim.drain_callbacks()
    assert delivered(receiver) == zaap_ids
    statuses = receiver.of_type("MessageStatusCallback")
    assert len(statuses) == 3 * 4  # SENT, RECEIVED, READ of each, as an immediate send


def test_a_send_during_the_drain_goes_behind_the_queue(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    queued = queue_then_reconnect(sim, http, 3, 0.1)
    until(lambda: len(sim.fired()) == 1)
    later = [send(http)["zaapId"] for _ in range(2)]
    assert [s.zaap_id for s in sim.queued()] == [*queued[1:], *later]
    until(lambda: len(sim.fired()) == 5)
    assert [f.zaap_id for f in sim.fired()] == [*queued, *later]
    sim.drain_callbacks()
    assert delivered(receiver) == [*queued, *later]


def test_disconnecting_again_stops_the_drain(sim: ZapiSimulator, http: httpx.Client) -> None:
    zaap_ids = queue_then_reconnect(sim, http, 4, 0.2)
    until(lambda: len(sim.fired()) == 1)
    sim.set_connected(False)
    time.sleep(0.5)
    assert len(sim.fired()) <= 2  # at most the one whose wait was under way
    rest = [s.zaap_id for s in sim.queued()]
    assert rest == zaap_ids[len(sim.fired()) :]
    sim.set_connected(True)
    until(lambda: len(sim.fired()) == 4)
    assert [f.zaap_id for f in sim.fired()] == zaap_ids


def test_a_send_order_waits_too_and_its_echo_comes_when_it_fires(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    http.put(f"{BASE}/update-notify-sent-by-me", json={"notifySentByMe": True})
    sim.set_connected(False)
    response = http.post(f"{BASE}/send-order", json=DOCS_SEND_ORDER_BODY)
    assert response.status_code == 200
    reply = response.json()
    [queued] = sim.queued()
    assert (queued.route, queued.message_id) == ("send-order", reply["messageId"])
    sim.drain_callbacks()
    assert receiver.bodies == []
    sim.set_connected(True)
    until(lambda: len(sim.fired()) == 1)
    sim.drain_callbacks()
    [echo] = receiver.of_type("ReceivedCallback")
    assert echo["messageId"] == reply["messageId"]
    assert delivered(receiver) == [reply["zaapId"]]


def test_the_queue_pages_by_paging_state(sim: ZapiSimulator, http: httpx.Client) -> None:
    sim.set_connected(False)
    before = time.time()
    replies = [send(http, phone="5544999990000") for _ in range(35)]
    first = page(http, pageSize=30)
    assert (len(first["messages"]), first["hasMore"]) == (30, True)
    assert isinstance(first["pagingState"], str)
    second = page(http, pageSize=30, pagingState=first["pagingState"])
    assert (len(second["messages"]), second["hasMore"], second["pagingState"]) == (5, False, None)
    messages = first["messages"] + second["messages"]
    assert [m["ZaapId"] for m in messages] == [reply["zaapId"] for reply in replies]
    assert [m["MessageId"] for m in messages] == [reply["messageId"] for reply in replies]
    one = messages[0]
    assert set(one) == {
        *("_id", "ZaapId", "MessageId", "Phone", "Message", "InstanceId", "DelayMessage"),
        *("DelayTyping", "Created", "CreatedAt", "IsTrial", "Beta"),
    }
    assert (one["Phone"], one["InstanceId"]) == ("5544999990000", INSTANCE)
    assert isinstance(one["Created"], int)
    assert before * 1000 - 1 <= one["Created"] <= time.time() * 1000
    assert isinstance(one["Message"], str)
    assert one["Message"]


def test_queue_calls_are_kept_apart_from_the_sends(sim: ZapiSimulator, http: httpx.Client) -> None:
    reply = send(http)
    page(http)
    http.delete(f"{BASE}/queue/{reply['zaapId']}")
    assert [r.json["messageId"] for r in sim.requests()] == [sim.fired()[0].body["messageId"]]
    assert [(r.method, r.path) for r in sim.queue_calls()] == [
        ("POST", f"{BASE}/queue"),
        ("DELETE", f"{BASE}/queue/{reply['zaapId']}"),
    ]


def test_a_page_is_20_by_default_and_30_at_most(sim: ZapiSimulator, http: httpx.Client) -> None:
    sim.set_connected(False)
    for _ in range(31):
        send(http)
    assert len(page(http)["messages"]) == 20
    assert len(page(http, pageSize=100)["messages"]) == 30
    assert page(http, pageSize=31)["hasMore"] is True


def test_a_deleted_message_leaves_no_gap_nor_repeat_in_the_pages(
    sim: ZapiSimulator, http: httpx.Client
) -> None:
    sim.set_connected(False)
    zaap_ids = [send(http)["zaapId"] for _ in range(6)]
    first = page(http, pageSize=3)
    http.delete(f"{BASE}/queue/{zaap_ids[1]}")
    http.delete(f"{BASE}/queue/{zaap_ids[4]}")
    second = page(http, pageSize=3, pagingState=first["pagingState"])
    assert [m["ZaapId"] for m in second["messages"]] == [zaap_ids[3], zaap_ids[5]]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"pageSize": 0}, "pageSize must be a positive integer"),
        ({"pageSize": "10"}, "pageSize must be a positive integer"),
        ({"pagingState": "not-ours"}, "Invalid pagingState"),
        ({"pagingState": base64.urlsafe_b64encode(b"[1]").decode()}, "Invalid pagingState"),
        ({"pagingState": 7}, "Invalid pagingState"),
    ],
)
def test_a_page_it_cannot_read_is_400(http: httpx.Client, body: dict[str, Any], error: str) -> None:
    response = http.post(f"{BASE}/queue", json=body)
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_a_deleted_message_never_fires(sim: ZapiSimulator, http: httpx.Client) -> None:
    sim.set_connected(False)
    zaap_ids = [send(http)["zaapId"] for _ in range(3)]
    removed = http.delete(f"{BASE}/queue/{zaap_ids[1]}")
    assert (removed.status_code, removed.json()) == (200, {"value": True})
    again = http.delete(f"{BASE}/queue/{zaap_ids[1]}")
    assert (again.status_code, again.json()) == (200, {"value": False})
    unknown = http.delete(f"{BASE}/queue/NOT-A-ZAAP-ID")
    assert unknown.json() == {"value": False}
    assert http.get(f"{BASE}/queue/count").json() == {"count": 2}
    sim.set_connected(True)
    until(lambda: len(sim.fired()) == 2)
    time.sleep(3 * SPACING)
    assert [f.zaap_id for f in sim.fired()] == [zaap_ids[0], zaap_ids[2]]


def test_a_fired_message_can_no_longer_be_deleted(sim: ZapiSimulator, http: httpx.Client) -> None:
    zaap_id = send(http)["zaapId"]
    assert http.delete(f"{BASE}/queue/{zaap_id}").json() == {"value": False}
    assert [f.zaap_id for f in sim.fired()] == [zaap_id]


def test_deleting_the_queue_removes_everything(sim: ZapiSimulator, http: httpx.Client) -> None:
    sim.set_connected(False)
    for _ in range(3):
        send(http)
    other = send(http, base=f"/instances/{OTHER}/token/{OTHER_TOKEN}")
    cleared = http.delete(f"{BASE}/queue")
    assert (cleared.status_code, cleared.json()) == (200, {"value": True})
    assert page(http) == {"messages": [], "pagingState": None, "hasMore": False}
    sim.set_connected(True)
    time.sleep(3 * SPACING)
    assert sim.fired(INSTANCE) == []
    assert [f.zaap_id for f in sim.fired(OTHER)] == [other["zaapId"]]  # never disconnected


def test_each_instance_has_its_own_queue_and_callbacks(
    sim: ZapiSimulator, receiver: Receiver, http: httpx.Client
) -> None:
    other_base = f"/instances/{OTHER}/token/{OTHER_TOKEN}"
    sim.set_connected(False, OTHER)
    queued = send(http, base=other_base)
    at_once = send(http)
    assert [f.zaap_id for f in sim.fired()] == [at_once["zaapId"]]
    assert [s.zaap_id for s in sim.queued(OTHER)] == [queued["zaapId"]]
    assert sim.queued() == []
    sim.set_connected(True, OTHER)
    until(lambda: len(sim.fired(OTHER)) == 1)
    sim.drain_callbacks()
    by_zaap_id = {body["zaapId"]: body for body in receiver.of_type("DeliveryCallback")}
    assert by_zaap_id[queued["zaapId"]]["instanceId"] == OTHER
    assert by_zaap_id[at_once["zaapId"]]["instanceId"] == INSTANCE


def test_a_full_queue_refuses_further_sends(sim: ZapiSimulator, http: httpx.Client) -> None:
    sim.set_connected(False)
    for _ in range(QUEUE_CAPACITY):
        send(http)
    refused = http.post(f"{BASE}/order-status-update", json=unique_body())
    assert refused.status_code == 400
    assert refused.json()["error"] == "QUEUE_FULL"
    assert len(sim.queued()) == QUEUE_CAPACITY
    http.delete(f"{BASE}/queue/{sim.queued()[0].zaap_id}")
    send(http)  # room again
    sim.reset()


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "queue"), ("DELETE", "queue"), ("DELETE", "queue/ABC"), ("GET", "queue/count")],
)
def test_the_queue_routes_check_credentials(
    sim: ZapiSimulator, http: httpx.Client, method: str, path: str
) -> None:
    sim.set_connected(False)
    queued = send(http)
    path = f"{BASE}/{path}".replace("ABC", queued["zaapId"])
    body: dict[str, Any] | None = {} if method == "POST" else None
    wrong_client = http.request(method, path, json=body, headers={"Client-Token": "nope-1"})
    assert (wrong_client.status_code, wrong_client.json()) == (
        403,
        {"error": "Client-Token nope-1 not allowed"},
    )
    json_only = {"Content-Type": "application/json"}
    missing = httpx.request(method, sim.base_url + path, json=body, headers=json_only)
    assert missing.status_code == 400
    wrong_token = http.request(method, path.replace(TOKEN, "tok-wrong"), json=body)
    assert (wrong_token.status_code, wrong_token.json()) == (400, {"error": "Instance not found"})
    assert [s.zaap_id for s in sim.queued()] == [queued["zaapId"]]


def test_the_queue_routes_refuse_another_method_and_content_type(http: httpx.Client) -> None:
    assert http.get(f"{BASE}/queue").status_code == 405
    assert http.put(f"{BASE}/queue/ABC", json={}).status_code == 405
    plain = http.delete(f"{BASE}/queue", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415


def test_fired_counts_without_a_webhook_url() -> None:
    with ZapiSimulator(queue_spacing=SPACING) as quiet, httpx.Client() as http:
        base = f"{quiet.base_url}/instances/{quiet.instance_id}/token/{quiet.instance_token}"
        headers = {"Client-Token": quiet.client_token}
        quiet.set_connected(False)
        for _ in range(2):
            http.post(f"{base}/order-status-update", json=unique_body(), headers=headers)
        quiet.set_connected(True)
        until(lambda: len(quiet.fired()) == 2)
        assert quiet.callbacks() == []


def test_the_control_routes_show_the_queue_and_what_fired(
    sim: ZapiSimulator, http: httpx.Client
) -> None:
    control = {"connected": False, "instance_id": INSTANCE}
    assert http.post("/__sim__/connection", json=control).json() == {"ok": True}
    reply = send(http)
    [queued] = http.get("/__sim__/queue", params={"instance_id": INSTANCE}).json()
    assert (queued["ZaapId"], queued["MessageId"]) == (reply["zaapId"], reply["messageId"])
    assert http.get("/__sim__/fired").json() == []
    http.post("/__sim__/connection", json={**control, "connected": True})
    until(lambda: bool(http.get("/__sim__/fired").json()))
    [fired] = http.get("/__sim__/fired", params={"instance_id": INSTANCE}).json()
    assert (fired["zaapId"], fired["route"], fired["body"]["messageId"]) == (
        reply["zaapId"],
        "order-status-update",
        sim.fired()[0].body["messageId"],
    )
    assert http.get("/__sim__/fired", params={"instance_id": OTHER}).json() == []


def test_a_fake_in_its_own_process_queues_and_fires_through_its_controls() -> None:
    """``python -m devtools.zapi_sim`` takes --queue-spacing, and RemoteSimulator drives the
    connection and reads the queue and what fired through the /__sim__/ routes."""
    with RemoteSimulator(queue_spacing=0.02) as remote, httpx.Client() as http:
        base = f"{remote.base_url}/instances/{remote.instance_id}/token/{remote.instance_token}"
        headers = {"Client-Token": remote.client_token}
        remote.set_connected(False)
        replies = [
            http.post(f"{base}/order-status-update", json=unique_body(), headers=headers).json()
            for _ in range(2)
        ]
        assert [q["ZaapId"] for q in remote.queued()] == [r["zaapId"] for r in replies]
        assert remote.fired() == []
        remote.set_connected(True)
        until(lambda: len(remote.fired()) == 2)
        assert [f.zaap_id for f in remote.fired()] == [r["zaapId"] for r in replies]
        assert remote.queued() == []
