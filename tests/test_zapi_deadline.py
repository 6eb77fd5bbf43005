"""One send to Z-API: one overall deadline, and whether a failed send may have been delivered.

Real HTTP servers on 127.0.0.1 only: the fake Z-API, a raw socket server that trickles its
answer, a listener whose backlog is full (connect timeout) and a port nobody listens on.
"""

from __future__ import annotations

import contextvars
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpcore
import httpx
import pytest
from pydantic import SecretStr

from config import Settings, ZapiCredentials
from devtools.ports import free_port
from devtools.zapi_sim import Fault, ZapiSimulator
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import TransientError, ZapiTransportError
from tasks.zapi.client import ZapiClient
from tasks.zapi.deadline import (
    DeadlineBackend,
    DeadlineStream,
    DeadlineTransport,
    SendState,
    _current_send,
)
from tests.bodies import unique_body
from tests.conftest import CLIENT_TOKEN, INSTANCE_ID, INSTANCE_TOKEN

CREDENTIALS = ZapiCredentials(INSTANCE_ID, SecretStr(INSTANCE_TOKEN), SecretStr(CLIENT_TOKEN))
# Scheduling on a loaded 2-core machine: generous, but bounded, room above a deadline.
SLACK = 0.75

REPLY = b'{"zaapId":"z-1","messageId":"m-1","id":"m-1"}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + b"Content-Length: %d\r\n\r\n" % len(REPLY)
    + REPLY
)


def make_client(base_url: str, **options: Any) -> ZapiClient:
    return ZapiClient(base_url, CREDENTIALS, **options)


def fail_to_send(
    base_url: str, body: dict[str, Any] | None = None, **options: Any
) -> tuple[Any, float]:
    """:func:`send_failing` through a client of its own to ``base_url``, closed after."""
    client = make_client(base_url, **options)
    try:
        return send_failing(client, body)
    finally:
        client.close()


def send_failing(client: ZapiClient, body: dict[str, Any] | None = None) -> tuple[Any, float]:
    """Send, expect a ZapiTransportError; return it and the seconds the send took."""
    started = time.monotonic()
    with pytest.raises(ZapiTransportError) as caught:
        client.send(Endpoint.ORDER_STATUS_UPDATE, body or unique_body())
    elapsed = time.monotonic() - started
    assert_secret_free(caught.value)
    return caught.value, elapsed


def assert_secret_free(exc: BaseException) -> None:
    texts = [str(exc), repr(exc), *(str(arg) for arg in exc.args)]
    for text in texts:
        assert INSTANCE_TOKEN not in text
        assert CLIENT_TOKEN not in text
        assert "/token/" not in text  # no URL at all
    # The httpx error (its request carries the URL) is neither the cause nor shown as context.
    assert exc.__cause__ is None
    assert exc.__suppress_context__


# -- servers -------------------------------------------------------------------------------------


class TrickleServer:
    """Reads one request per connection, then answers ``response`` one byte every ``interval``.

    Only the first ``trickle`` bytes are trickled (all of them by default); the rest follows
    at once. ``sent`` counts the bytes written, over all connections.
    """

    def __init__(
        self, response: bytes = RESPONSE, *, interval: float = 0.3, trickle: int | None = None
    ) -> None:
        self.response = response
        self.interval = interval
        self.trickle = len(response) if trickle is None else trickle
        self.sent = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> TrickleServer:
        self._start(self._accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._start(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            try:
                for index in range(self.trickle):
                    conn.sendall(self.response[index : index + 1])
                    self.sent += 1
                    if self._stop.wait(self.interval):
                        return
                conn.sendall(self.response[self.trickle :])
            except OSError:
                return  # the client gave up and closed the connection


@pytest.fixture
def full_backlog() -> Iterator[str]:
    """A base URL whose listener never accepts and whose backlog is full: connects time out."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.3)
            try:
                filler.connect(address)
            except TimeoutError:
                filler.close()
                break
            fillers.append(filler)
        else:
            pytest.fail("could not fill the listener's backlog")
        yield f"http://{address[0]}:{address[1]}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.fixture
def sim(zapi_sim: ZapiSimulator) -> ZapiSimulator:
    """The session's fake Z-API, which accepts the credentials of tests/conftest.py."""
    return zapi_sim


# -- the overall deadline ------------------------------------------------------------------------


def test_deadline_is_connect_timeout_plus_timeout() -> None:
    client = make_client("http://127.0.0.1:1", connect_timeout=0.5, timeout=1.0)
    assert client.deadline == 1.5
    client.close()
    settings = Settings(
        zapi_instance_id=INSTANCE_ID,
        zapi_instance_token=SecretStr(INSTANCE_TOKEN),
        zapi_client_token=SecretStr(CLIENT_TOKEN),
        zapi_connect_timeout=2.0,
        zapi_timeout=3.5,
    )
    client = ZapiClient.from_settings(settings)
    assert client.deadline == settings.request_deadline == 5.5
    client.close()


def test_a_trickling_answer_fails_by_the_overall_deadline() -> None:
    with TrickleServer() as server:
        error, elapsed = fail_to_send(server.base_url, connect_timeout=0.5, timeout=1.0)
        sent = server.sent
    # Every single read got a byte within 0.3 s (< the 1 s read timeout): only the overall
    # deadline of 1.5 s can have ended it.
    assert sent >= 3
    assert 1.5 - 0.1 <= elapsed <= 1.5 + SLACK
    assert error.ambiguous is True
    assert "(ReadTimeout, deadline 1.5s)" in error.message
    assert error.message.startswith("no answer from Z-API in time after the request was sent")
    assert error.message.endswith("it may have been delivered")


def test_without_the_deadline_machinery_the_same_trickle_would_succeed_late() -> None:
    """The counterfactual of the test above: httpx's own timeouts let a trickle through."""
    with TrickleServer(trickle=8) as server:  # 8 bytes 0.3 s apart: about 2.4 s
        plain = make_client(
            server.base_url, connect_timeout=0.5, timeout=1.0, transport=httpx.HTTPTransport()
        )
        ours = make_client(server.base_url, connect_timeout=0.5, timeout=1.0)
        try:
            started = time.monotonic()
            reply = plain.send(Endpoint.ORDER_STATUS_UPDATE, unique_body())
            assert reply.zaapId == "z-1"
            assert time.monotonic() - started > 1.5 + 0.3  # well past the deadline
            error, elapsed = send_failing(ours)
        finally:
            plain.close()
            ours.close()
    assert error.ambiguous is True
    assert elapsed <= 1.5 + SLACK


def test_a_stalled_answer_is_an_ambiguous_read_timeout(sim: ZapiSimulator) -> None:
    body = unique_body()
    sim.script(body["messageId"], Fault(delay=2.0))
    error, elapsed = fail_to_send(sim.base_url, body, connect_timeout=0.5, timeout=0.5)
    assert len(sim.requests(body["messageId"])) == 1  # Z-API did get it
    assert error.ambiguous is True
    assert "(ReadTimeout, timeout 0.5s)" in error.message
    assert "it may have been delivered" in error.message
    assert 0.5 - 0.1 <= elapsed <= 0.5 + SLACK


def test_waiting_for_a_pooled_connection_counts_against_the_deadline(sim: ZapiSimulator) -> None:
    """B waits ~0.6 s for the only connection, then has ~0.4 s left for a 0.6 s answer."""
    client = make_client(sim.base_url, connect_timeout=0.1, timeout=0.9, max_connections=1)
    warm, first, second = unique_body(), unique_body(), unique_body()
    for body in (first, second):
        reply = {"zaapId": "z", "messageId": body["messageId"], "id": body["messageId"]}
        sim.script(body["messageId"], Fault(delay=0.6, status=200, body=reply))
    outcome: list[object] = []

    def hold_the_connection() -> None:
        try:
            outcome.append(client.send(Endpoint.ORDER_STATUS_UPDATE, first))
        except ZapiTransportError as exc:  # reported by the assert below
            outcome.append(exc)

    holder = threading.Thread(target=hold_the_connection)
    try:
        client.send(Endpoint.ORDER_STATUS_UPDATE, warm)  # opens the one connection
        holder.start()
        wait_until(lambda: len(sim.requests(first["messageId"])) == 1)
        error, elapsed = send_failing(client, second)
        holder.join(timeout=5)
    finally:
        client.close()
    # The holder's own answer took 0.6 s, within its 0.9 s read timeout and 1 s deadline.
    [held] = outcome
    assert not isinstance(held, Exception), held
    assert error.ambiguous is True
    assert "(ReadTimeout, deadline 1s)" in error.message
    assert 1.0 - 0.1 <= elapsed <= 1.0 + SLACK


def test_the_pool_wait_is_refused_once_the_deadline_has_passed() -> None:
    transport = DeadlineTransport(limits=httpx.Limits(max_connections=1))
    state = SendState(deadline=time.monotonic() - 0.01)
    token = _current_send.set(state)
    try:
        with pytest.raises(httpx.PoolTimeout):
            transport.handle_request(httpx.Request("POST", "http://127.0.0.1:9/x"))
    finally:
        _current_send.reset(token)
        transport.close()
    assert state.expired
    assert not state.written


# -- ambiguous or not ----------------------------------------------------------------------------


def test_a_connection_dropped_after_the_request_is_ambiguous(sim: ZapiSimulator) -> None:
    body = unique_body()
    sim.script(body["messageId"], Fault(drop=True))
    error, _ = fail_to_send(sim.base_url, body, connect_timeout=0.5, timeout=1.0)
    [received] = sim.requests(body["messageId"])
    assert received.status == -1  # read in full, then dropped
    assert error.ambiguous is True
    assert error.message.startswith("lost the connection to Z-API after the request was sent")
    assert "RemoteProtocolError" in error.message
    assert error.message.endswith("it may have been delivered")


def test_connection_refused_is_not_ambiguous() -> None:
    error, elapsed = fail_to_send(
        f"http://127.0.0.1:{free_port()}", connect_timeout=0.5, timeout=1.0
    )
    assert error.ambiguous is False
    assert error.message.startswith("could not reach Z-API: ConnectError")
    assert error.message.endswith("(it was not sent)")
    assert "may have been delivered" not in error.message
    assert elapsed <= 0.5 + SLACK


def test_a_connect_timeout_is_not_ambiguous(full_backlog: str) -> None:
    error, elapsed = fail_to_send(full_backlog, connect_timeout=0.5, timeout=1.0)
    assert error.ambiguous is False
    assert error.message == (
        "could not reach Z-API in time (ConnectTimeout, connect timeout 0.5s): it was not sent"
    )
    assert 0.5 - 0.1 <= elapsed <= 0.5 + SLACK


def test_a_hanging_name_resolution_ends_by_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def hanging(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "zapi.hangs.test":
            release.wait(10)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    client = make_client("http://zapi.hangs.test:8080", connect_timeout=0.4, timeout=1.0)
    try:
        error, elapsed = send_failing(client)
    finally:
        release.set()
        client.close()
    assert error.ambiguous is False
    assert "(ConnectTimeout, connect timeout 0.4s): it was not sent" in error.message
    assert 0.4 - 0.1 <= elapsed <= 0.4 + SLACK


def test_a_failed_name_resolution_is_not_ambiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", failing)
    error, _ = fail_to_send("http://zapi.nowhere.test", connect_timeout=0.5, timeout=1.0)
    assert error.ambiguous is False
    assert "ConnectError" in error.message
    assert "Name or service not known" in error.message


def test_a_custom_transport_infers_ambiguity_from_the_error_type() -> None:
    def raising(error: type[httpx.RequestError]) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            raise error("boom " + str(request.url), request=request)  # the URL has the token

        return httpx.MockTransport(handler)

    for error_type, ambiguous in [
        (httpx.ConnectError, False),
        (httpx.ConnectTimeout, False),
        (httpx.PoolTimeout, False),
        (httpx.ReadTimeout, True),
        (httpx.ReadError, True),
        (httpx.RemoteProtocolError, True),
    ]:
        error, _ = fail_to_send("http://zapi.test", transport=raising(error_type))
        assert error.ambiguous is ambiguous, error_type
        assert error_type.__name__ in error.message
        assert ("may have been delivered" in error.message) is ambiguous


# -- normal sends --------------------------------------------------------------------------------


def test_sends_reuse_one_keep_alive_connection(sim: ZapiSimulator, connects: list[str]) -> None:
    port = sim.base_url.rsplit(":", 1)[1]
    client = make_client(f"http://localhost:{port}", connect_timeout=0.5, timeout=1.0)
    try:
        bodies = [unique_body() for _ in range(3)]
        replies = [client.send(Endpoint.ORDER_PAYMENT_UPDATE, body) for body in bodies]
    finally:
        client.close()
    assert all(reply.zaapId and reply.messageId for reply in replies)
    assert [len(sim.requests(body["messageId"])) for body in bodies] == [1, 1, 1]
    # One connection for three sends, to the address the helper resolved "localhost" to.
    assert len(connects) == 1
    assert connects[0] in {"127.0.0.1", "::1"}
    assert _current_send.get() is None  # send() leaves no deadline behind


def test_concurrent_sends_each_keep_their_own_state(sim: ZapiSimulator) -> None:
    client = make_client(sim.base_url, connect_timeout=0.5, timeout=1.0, max_connections=4)
    slow, bodies = unique_body(), [unique_body() for _ in range(6)]
    sim.script(slow["messageId"], Fault(delay=2.0))
    results: dict[str, Any] = {}

    def send(body: dict[str, Any]) -> None:
        try:
            results[body["messageId"]] = client.send(Endpoint.ORDER_STATUS_UPDATE, body)
        except ZapiTransportError as exc:
            results[body["messageId"]] = exc

    threads = [threading.Thread(target=send, args=(body,)) for body in [slow, *bodies]]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        client.close()
    assert isinstance(results[slow["messageId"]], ZapiTransportError)
    assert results[slow["messageId"]].ambiguous is True
    for body in bodies:  # the slow send's timeout touched none of the others
        assert results[body["messageId"]].zaapId, results[body["messageId"]]


# -- the stream wrapper on its own ---------------------------------------------------------------


class RecordingStream(httpcore.NetworkStream):
    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.calls.append(("read", timeout))
        return b"x"

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.calls.append(("write", timeout))

    def close(self) -> None:
        self.calls.append(("close", None))


def in_send(state: SendState, action: Callable[[], object]) -> None:
    """Run ``action`` as if inside ZapiClient.send with ``state``."""
    context = contextvars.copy_context()
    context.run(lambda: (_current_send.set(state), action()))


def test_no_write_starts_after_the_deadline_and_then_nothing_was_sent() -> None:
    inner = RecordingStream()
    stream = DeadlineStream(inner)
    state = SendState(deadline=time.monotonic() - 0.01)
    with pytest.raises(httpcore.WriteTimeout):
        in_send(state, lambda: stream.write(b"POST / HTTP/1.1\r\n", 5.0))
    assert inner.calls == []
    assert state.written is False
    assert state.expired is True


def test_operations_are_capped_at_the_time_left_and_writes_are_recorded() -> None:
    inner = RecordingStream()
    stream = DeadlineStream(inner)
    state = SendState(deadline=time.monotonic() + 2.0)
    in_send(state, lambda: stream.write(b"", 5.0))
    assert state.written is False  # an empty write sends nothing
    in_send(state, lambda: stream.write(b"POST", 5.0))
    in_send(state, lambda: stream.read(10, 5.0))
    in_send(state, lambda: stream.read(10, 0.5))
    in_send(state, lambda: stream.read(10, None))
    assert state.written is True
    [write, capped_read, short_read, unbounded_read] = inner.calls
    assert write[0] == "write"
    assert 1.5 < (write[1] or 0) <= 2.0  # capped at the time left, not the 5 s asked
    assert 1.5 < (capped_read[1] or 0) <= 2.0
    assert short_read == ("read", 0.5)  # the operation's own timeout when it is shorter
    assert 1.5 < (unbounded_read[1] or 0) <= 2.0  # no timeout of its own: the time left
    # Outside a send, nothing is capped or recorded.
    stream.read(10, 5.0)
    assert inner.calls[-1] == ("read", 5.0)


def test_the_backend_outside_a_send_is_httpcores(sim: ZapiSimulator) -> None:
    host, port = sim.base_url.removeprefix("http://").split(":")
    stream = DeadlineBackend().connect_tcp(host, int(port), timeout=1.0)
    try:
        assert isinstance(stream, DeadlineStream)
        sock = stream.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        stream.close()


# -- the error ------------------------------------------------------------------------------------


def test_transport_error_is_rebuilt_from_its_message_alone() -> None:
    error = ZapiTransportError("no answer: it may have been delivered", ambiguous=True)
    assert isinstance(error, TransientError)
    assert error.ambiguous is True
    rebuilt = type(error)(*error.args)  # how Celery rebuilds a stored exception
    assert rebuilt.message == error.message
    assert rebuilt.ambiguous is False
    assert ZapiTransportError("x").retry_after is None


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    limit = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > limit:
            pytest.fail("condition not met in time")
        time.sleep(0.01)
