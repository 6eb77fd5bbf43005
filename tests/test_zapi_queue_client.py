"""The client's calls to Z-API's own queue: ``queue_page`` and ``delete_queued``.

Parsing and errors over httpx.MockTransport (any answer parses or raises a ZapiQueueError,
secret-free and naming what is wrong), then the calls against the real fake, which models the
queue (tests/test_zapi_sim_queue.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from config import ZapiCredentials
from devtools.zapi_sim import Fault, ZapiSimulator
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import (
    ZapiQueueError,
    ZapiRateLimitedError,
    ZapiRejectedError,
    ZapiTransportError,
    ZapiUnavailableError,
)
from tasks.zapi.client import ZapiClient
from tasks.zapi.queue import QueuedMessage, QueuePage
from tests.bodies import unique_body

INSTANCE, TOKEN, CLIENT = "inst-qc", "tok-SECRET-qc", "ct-SECRET-qc"
CREDENTIALS = ZapiCredentials(INSTANCE, SecretStr(TOKEN), SecretStr(CLIENT))
QUEUE_PATH = f"/instances/{INSTANCE}/token/{TOKEN}/queue"
Handler = Callable[[httpx.Request], httpx.Response]

MESSAGE = {
    "_id": "39BB1684570F00E91090F6BBC7EE7646",
    "ZaapId": "39BB1684570F00E91090F6BBC7EE7646",
    "MessageId": "7AD29EAA5EF34C301F0B",
    "Phone": "5511999999999",
    "Message": "Mensagem da fila 1",
    "InstanceId": INSTANCE,
    "DelayMessage": -1,
    "DelayTyping": -1,
    "Created": 1624977905648,
    "CreatedAt": "2021-06-29T14:45:05.648Z",
    "IsTrial": False,
    "Beta": False,
}


def mocked(handler: Handler) -> ZapiClient:
    return ZapiClient("https://api.z-api.io", CREDENTIALS, transport=httpx.MockTransport(handler))


def answering(status: int, body: Any, headers: dict[str, str] | None = None) -> ZapiClient:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return mocked(lambda _: httpx.Response(status, content=content, headers=headers))


def test_a_page_is_asked_for_with_its_size_and_state() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"messages": [], "pagingState": None, "hasMore": False})

    client = mocked(handler)
    client.queue_page()
    client.queue_page(10, "eyJidWNrZXQiOjI5MzR9")
    first, second = seen
    assert (first.method, first.url.path) == ("POST", QUEUE_PATH)
    assert first.headers["client-token"] == CLIENT
    assert json.loads(first.content) == {"pageSize": 30}
    assert json.loads(second.content) == {"pageSize": 10, "pagingState": "eyJidWNrZXQiOjI5MzR9"}


def test_a_page_reads_zapis_example() -> None:
    second = {**MESSAGE, "ZaapId": "39BB1685172AB008542A7E0B862A54DF", "MessageId": "517AEF"}
    body = {"messages": [MESSAGE, second], "pagingState": "abc", "hasMore": True}
    page = answering(200, body).queue_page()
    assert page == QueuePage(
        (
            QueuedMessage(
                "39BB1684570F00E91090F6BBC7EE7646",
                "7AD29EAA5EF34C301F0B",
                "5511999999999",
                1624977905.648,
            ),
            QueuedMessage(
                "39BB1685172AB008542A7E0B862A54DF", "517AEF", "5511999999999", 1624977905.648
            ),
        ),
        "abc",
        True,
    )


@pytest.mark.parametrize("state", [None, ""])
def test_the_last_page_has_no_paging_state(state: str | None) -> None:
    body = {"messages": [MESSAGE], "pagingState": state, "hasMore": False}
    page = answering(200, body).queue_page()
    assert (page.paging_state, page.has_more, len(page.messages)) == (None, False, 1)
    no_state = answering(200, {"messages": [], "hasMore": False}).queue_page()
    assert no_state.paging_state is None


def test_an_entry_without_a_zaap_id_is_skipped_and_counted() -> None:
    entries = [
        MESSAGE,
        {**MESSAGE, "ZaapId": None},
        {**MESSAGE, "ZaapId": ""},
        {key: value for key, value in MESSAGE.items() if key != "ZaapId"},
        "39BB1684570F00E91090F6BBC7EE7646",
        [MESSAGE],
    ]
    page = answering(200, {"messages": entries, "hasMore": False}).queue_page()
    assert [m.zaap_id for m in page.messages] == [MESSAGE["ZaapId"]]
    assert page.skipped == 5


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"MessageId": 7, "Phone": None, "Created": "1624977905648"}, (None, None, None)),
        (
            {"Phone": 5511999999999, "Created": 1.5e12},
            ("7AD29EAA5EF34C301F0B", "5511999999999", 1.5e9),
        ),
        ({"Created": True, "Phone": True}, ("7AD29EAA5EF34C301F0B", None, None)),
        ({"Created": 10**400}, ("7AD29EAA5EF34C301F0B", "5511999999999", None)),
    ],
)
def test_a_message_s_other_fields_are_none_when_they_are_something_else(
    changes: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    body = {"messages": [{**MESSAGE, **changes}], "hasMore": False}
    [message] = answering(200, body).queue_page().messages
    assert (message.message_id, message.phone, message.created_at) == expected


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"hasMore": False}, "messages is missing, not a list"),
        ({"messages": {"a": 1}, "hasMore": False}, "messages is dict, not a list"),
        ({"messages": []}, "hasMore is missing, not a boolean"),
        ({"messages": [], "hasMore": "false"}, "hasMore is str, not a boolean"),
        ({"messages": [], "hasMore": True}, "hasMore is true without a pagingState"),
        ({"messages": [], "hasMore": True, "pagingState": ""}, "hasMore is true without"),
        ({"messages": [], "hasMore": False, "pagingState": 3}, "pagingState is int, not a str"),
        ([MESSAGE], "the answer is list, not an object"),
        (b"<html>5511999999999</html>", "the answer is not JSON"),
    ],
)
def test_a_malformed_page_is_an_error_naming_what_is_wrong(body: Any, named: str) -> None:
    with pytest.raises(ZapiRejectedError, match="Z-API's queue page is malformed") as caught:
        answering(200, body).queue_page()
    assert named in caught.value.message
    assert "5511999999999" not in caught.value.message  # a page's phones are never shown


def test_a_200_carrying_an_error_is_an_error() -> None:
    body = {"error": "NOT_FOUND", "message": "Unable to find matching target resource method"}
    with pytest.raises(ZapiRejectedError, match="without a queue page: NOT_FOUND: Unable"):
        answering(200, body).queue_page()


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, ZapiRateLimitedError), (503, ZapiUnavailableError), (405, ZapiRejectedError)],
)
def test_other_statuses_are_classified_as_for_a_send(status: int, error: type) -> None:
    with pytest.raises(error):
        answering(status, {"error": "no"}).queue_page()
    with pytest.raises(error):
        answering(status, {"error": "no"}).delete_queued("Z1")


def test_an_echoed_client_token_is_redacted() -> None:
    body = {"error": f"Client-Token {CLIENT} not allowed"}
    client = answering(403, body)
    for call in (client.queue_page, lambda: client.delete_queued("Z1")):
        with pytest.raises(ZapiRejectedError, match="HTTP 403") as caught:
            call()
        assert "SECRET" not in caught.value.message


def test_a_page_size_z_api_does_not_serve_is_refused_before_asking() -> None:
    client = answering(200, {"messages": [], "hasMore": False})
    for size in (0, 31):
        with pytest.raises(ValueError, match="page_size must be 1 to 30"):
            client.queue_page(size)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
#: Answers shaped like a page, their fields anything JSON holds (what a fuzzer of a page finds).
page_like = st.fixed_dictionaries(
    {},
    optional={
        "messages": st.lists(
            st.fixed_dictionaries(
                {},
                optional={k: json_values for k in ("ZaapId", "MessageId", "Phone", "Created")},
            )
            | json_values,
            max_size=4,
        )
        | json_values,
        "pagingState": st.none() | st.text() | json_values,
        "hasMore": st.booleans() | json_values,
        "error": json_values,
    },
)


def outcome(call: Callable[[], Any]) -> Any:
    """What ``call`` returned, or the ZapiQueueError it raised (anything else propagates)."""
    try:
        return call()
    except ZapiQueueError as exc:
        return exc


@given(st.one_of(json_values, page_like), st.sampled_from([200, 200, 200, 400, 404, 500]))
def test_any_json_answer_parses_or_is_a_zapi_queue_error(answer: Any, status: int) -> None:
    client = answering(status, answer)
    page = outcome(client.queue_page)
    if isinstance(page, ZapiQueueError):
        assert "SECRET" not in page.message
    else:
        assert all(isinstance(m.zaap_id, str) and m.zaap_id for m in page.messages)
        assert page.paging_state is None or isinstance(page.paging_state, str)
        assert page.paging_state != ""
        assert not page.has_more or page.paging_state is not None
    removed = outcome(lambda: client.delete_queued("Z1"))
    assert removed in (True, False) or "SECRET" not in removed.message


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_are_a_zapi_queue_error(answer: bytes) -> None:
    client = answering(200, answer)
    assert isinstance(outcome(client.queue_page), QueuePage | ZapiQueueError)
    assert isinstance(outcome(lambda: client.delete_queued("Z1")), bool | ZapiQueueError)


@pytest.mark.parametrize(
    ("status", "body", "removed"),
    [
        (200, {"value": True}, True),
        (200, {"value": False}, False),
        (200, b"", True),  # Z-API's docs: "200: removed", no body described
        (200, {}, True),
        (200, True, True),
        (404, {"error": "Not found"}, False),
    ],
)
def test_a_deletion_says_whether_the_message_was_removed(
    status: int, body: Any, removed: bool
) -> None:
    assert answering(status, body).delete_queued("Z1") is removed


@pytest.mark.parametrize(
    "body",
    [
        {"error": "NOT_FOUND", "message": "Unable to find matching target resource method"},
        {"value": "yes"},
        [1],
        b"removed",
    ],
)
def test_a_deletion_answer_it_cannot_read_is_an_error(body: Any) -> None:
    with pytest.raises(ZapiRejectedError, match="queue deletion"):
        answering(200, body).delete_queued("Z1")


def test_a_deletion_goes_to_the_message_s_url_escaped() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"value": True})

    client = mocked(handler)
    client.delete_queued("39BB1684570F00E9")
    client.delete_queued("a/b?c")
    assert [(r.method, r.url.raw_path.decode()) for r in seen] == [
        ("DELETE", f"{QUEUE_PATH}/39BB1684570F00E9"),
        ("DELETE", f"{QUEUE_PATH}/a%2Fb%3Fc"),
    ]
    with pytest.raises(ValueError, match="zaap_id is empty"):
        client.delete_queued("")


def test_a_lost_deletion_may_have_been_applied_a_lost_page_read_not() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout(f"timed out reading {request.url}")

    client = mocked(handler)
    with pytest.raises(ZapiTransportError, match="could not delete a message") as deleting:
        client.delete_queued("Z1")
    assert deleting.value.ambiguous
    assert "may have applied it" in deleting.value.message
    with pytest.raises(ZapiTransportError, match="could not read Z-API's queue") as reading:
        client.queue_page()
    assert not reading.value.ambiguous
    for caught in (deleting, reading):
        assert "SECRET" not in caught.value.message


# -- against the real fake ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim() -> Iterator[ZapiSimulator]:
    with ZapiSimulator(
        instance_id=INSTANCE, instance_token=TOKEN, client_token=CLIENT, queue_spacing=0.02
    ) as simulator:
        yield simulator


@pytest.fixture
def client(sim: ZapiSimulator) -> Iterator[ZapiClient]:
    sim.reset()
    zapi = ZapiClient(sim.base_url, CREDENTIALS, timeout=2, connect_timeout=2)
    yield zapi
    zapi.close()


def test_the_client_pages_through_the_fakes_queue(sim: ZapiSimulator, client: ZapiClient) -> None:
    sim.set_connected(False)
    replies = [client.send(Endpoint.ORDER_STATUS_UPDATE, unique_body()) for _ in range(35)]
    first = client.queue_page()
    assert (len(first.messages), first.has_more, first.skipped) == (30, True, 0)
    second = client.queue_page(paging_state=first.paging_state)
    assert (len(second.messages), second.has_more, second.paging_state) == (5, False, None)
    seen = [*first.messages, *second.messages]
    assert [m.zaap_id for m in seen] == [reply.zaapId for reply in replies]
    assert [m.message_id for m in seen] == [reply.messageId for reply in replies]
    assert all(m.created_at is not None and abs(m.created_at - time.time()) < 60 for m in seen)


def test_the_client_deletes_from_the_fakes_queue(sim: ZapiSimulator, client: ZapiClient) -> None:
    sim.set_connected(False)
    kept, stale = (client.send(Endpoint.ORDER_STATUS_UPDATE, unique_body()) for _ in range(2))
    assert client.delete_queued(stale.zaapId) is True
    assert client.delete_queued(stale.zaapId) is False
    assert [m.zaap_id for m in client.queue_page().messages] == [kept.zaapId]
    sim.set_connected(True)
    deadline = time.monotonic() + 5
    while not sim.fired() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert [f.zaap_id for f in sim.fired()] == [kept.zaapId]
    assert client.delete_queued(kept.zaapId) is False  # fired: no longer in the queue


def test_an_outage_of_the_fake_is_a_transient_error(sim: ZapiSimulator, client: ZapiClient) -> None:
    sim.set_outage(Fault(status=503))
    try:
        with pytest.raises(ZapiUnavailableError, match="HTTP 503"):
            client.queue_page()
        with pytest.raises(ZapiUnavailableError, match="HTTP 503"):
            client.delete_queued("Z1")
    finally:
        sim.set_outage(None)
