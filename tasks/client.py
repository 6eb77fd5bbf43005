"""The Z-API HTTP client: one pooled ``httpx.Client`` per worker process.

Creating a client per job would pay a TCP and TLS handshake for every send; one shared
client keeps connections alive across jobs and threads (``httpx.Client`` is thread-safe).
The instance token sits in the URL path, so nothing here ever formats the URL into a
message: transport errors are re-raised with their class name and a redacted text only.

Two properties of one send (:meth:`ZapiClient.send`):

* **One overall deadline.** httpx's timeouts apply to each operation (waiting for a pooled
  connection, connecting, each write, each socket read), so a server trickling its answer a
  byte at a time, or a slow connect followed by a slow answer, could hold one request far
  longer than ``connect_timeout + timeout``. The idempotency claim in Redis is sized from that
  sum (:attr:`ZapiClient.deadline`), so a request must not outlive it. ``send()`` records the
  deadline in a context variable (per thread: the worker's threads each run one send);
  :class:`DeadlineTransport` caps the wait for a pooled connection, and
  :class:`DeadlineBackend` caps name resolution, connect, TLS handshake, every write and every
  read at the time left, raising httpcore's timeout exceptions once none is left. No request
  byte is written after the deadline.
* **Ambiguous sends.** The same context records whether any byte of the request was handed
  to the socket. A failure before that (DNS, refused, connect or pool timeout) means Z-API
  certainly did not get the request; a failure after it (no answer in time, connection reset
  or closed, a malformed answer) means Z-API may have delivered it: the
  :class:`~tasks.errors.ZapiTransportError` is then ``ambiguous`` and says so.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from config import Settings, ZapiCredentials, get_settings
from tasks.endpoints import Endpoint
from tasks.errors import ZapiTransportError
from tasks.per_process import PerProcess
from tasks.redaction import redact
from tasks.responses import interpret
from tasks.schemas import ZapiReply

USER_AGENT = "zapi-queue/0.1"

# httpx logs every request URL (with the instance token in it) at INFO. Keep it quiet;
# worker.logging also installs a redacting filter as a second line of defence.
logging.getLogger("httpx").setLevel(logging.WARNING)

# httpx writes a request's headers and body separately; with Nagle's algorithm the body then
# waits for the server's delayed ACK (up to 40 ms) on a reused connection.
_SOCKET_OPTIONS: list[tuple[int, int, int]] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

# Failures that happen before a request can have been written, for a transport whose writes we
# do not see (a custom ``transport=``): every other failure is taken as ambiguous.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)

# httpx's own errors carry no URL, but a custom transport's may: never put one in a message.
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


@dataclass(slots=True)
class SendState:
    """What one :meth:`ZapiClient.send` knows about its request while it is in flight."""

    deadline: float
    """``time.monotonic()`` value after which no operation of this request may run."""
    written: bool = False
    """A byte of the request was handed to the socket: Z-API may have received it."""
    expired: bool = False
    """An operation failed because the overall deadline (not its own timeout) ran out."""

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


_current_send: contextvars.ContextVar[SendState | None] = contextvars.ContextVar(
    "zapi_send", default=None
)


@contextlib.contextmanager
def _within_deadline(
    timeout: float | None, timeout_error: type[httpcore.TimeoutException]
) -> Iterator[float | None]:
    """Yield ``timeout`` capped at the time left for the current send (none: unchanged).

    With no time left, raise ``timeout_error`` before the operation starts. When the cap was
    what the operation ran into, mark the send as expired, so its error names the deadline.
    """
    state = _current_send.get()
    if state is None:
        yield timeout
        return
    left = state.time_left()
    if left <= 0:
        state.expired = True
        raise timeout_error("the request's overall deadline has passed")
    if timeout is not None and timeout <= left:
        yield timeout
        return
    try:
        yield left
    except timeout_error:
        state.expired = True
        raise


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the current send's deadline.

    It also records, in the current send's state, that request bytes were written. A write is
    marked before it is attempted: a write that fails may have sent part of the request.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _within_deadline(timeout, httpcore.ReadTimeout) as capped:
            return self._inner.read(max_bytes, capped)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _within_deadline(timeout, httpcore.WriteTimeout) as capped:
            state = _current_send.get()
            if state is not None:
                state.written = True
            # One socket send() in practice: a request body is a few KB, far below the socket's
            # send buffer, so the cap bounds the whole write.
            self._inner.write(buffer, capped)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        with _within_deadline(timeout, httpcore.ConnectTimeout) as capped:
            return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, capped))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, with each operation capped by the current send's deadline.

    Outside a :meth:`ZapiClient.send` (no deadline in the context) it behaves like ``inner``.
    Within one, it resolves the host name itself, in a helper thread it stops waiting for after
    the connect timeout or at the deadline (``getaddrinfo`` takes no timeout, and the
    resolver's own can exceed ours), then tries each address in turn as
    ``socket.create_connection`` would, each attempt capped at the time left.
    """

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner if inner is not None else httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        state = _current_send.get()
        if state is None:
            return DeadlineStream(
                self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
            )
        options = list(socket_options or ())
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in _resolve(host, port, timeout):
            try:
                with _within_deadline(timeout, httpcore.ConnectTimeout) as capped:
                    stream = self._inner.connect_tcp(address, port, capped, local_address, options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                if state.expired:
                    raise
                error = exc  # try the next address, as socket.create_connection does
                continue
            return DeadlineStream(stream)
        assert error is not None  # _resolve returns at least one address
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        with _within_deadline(timeout, httpcore.ConnectTimeout) as capped:
            return DeadlineStream(self._inner.connect_unix_socket(path, capped, socket_options))

    def sleep(self, seconds: float) -> None:
        state = _current_send.get()
        self._inner.sleep(seconds if state is None else max(0.0, min(seconds, state.time_left())))


def _resolve(host: str, port: int, timeout: float | None) -> list[str]:
    """The addresses of ``host``, in ``getaddrinfo``'s order, within ``timeout`` and the deadline.

    The connect timeout bounds the resolution, then (again) each connection attempt.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]
    found: list[str] = []
    failure: list[OSError] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found.extend(dict.fromkeys(str(info[4][0]) for info in infos))
        except OSError as exc:
            failure.append(exc)
        finally:
            done.set()

    with _within_deadline(timeout, httpcore.ConnectTimeout) as left:
        # A daemon thread: a resolver that hangs must not hold up the worker's exit.
        threading.Thread(target=lookup, name="zapi-resolve", daemon=True).start()
        if not done.wait(left):
            raise httpcore.ConnectTimeout("name resolution did not finish in time")
    if failure:
        raise httpcore.ConnectError(str(failure[0]))
    if not found:
        raise httpcore.ConnectError("name resolution returned no address")
    return found


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport with its connection pool on a :class:`DeadlineBackend`.

    ``httpx.HTTPTransport`` takes no ``network_backend``. Rather than re-implement a transport
    (the request and response conversion, and httpx's private mapping of httpcore's exceptions
    to httpx's), this subclass lets ``HTTPTransport.__init__`` build everything as usual (TLS
    context with certificate verification, limits, socket options), then swaps ``_pool`` for
    an identically configured ``httpcore.ConnectionPool`` that also gets the network backend.
    ``HTTPTransport`` reaches httpcore only through ``_pool`` (``handle_request``, ``close``,
    the context manager), from httpx 0.18 up to 0.28; the constructor checks the attribute is
    there, so an httpx that renames it fails at start-up instead of silently losing deadlines.
    No proxy: like any ``transport=`` given to ``httpx.Client``, environment proxies are not
    used (the client never used them).

    It also caps the wait for a pooled connection at the time left for the current send.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        socket_options: Iterable[tuple[int, int, int]] = _SOCKET_OPTIONS,
        network_backend: httpcore.NetworkBackend | None = None,
    ) -> None:
        ssl_context = httpx.create_ssl_context()  # verify=True: certifi's CAs, or SSL_CERT_FILE
        options = list(socket_options)
        super().__init__(verify=ssl_context, limits=limits, socket_options=options)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            raise TypeError(
                "httpx.HTTPTransport no longer keeps its httpcore.ConnectionPool in _pool: "
                "tasks.client.DeadlineTransport must be adapted to this httpx version"
            )
        self._pool.close()  # holds no connection yet; closed for tidiness
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            socket_options=options,
            network_backend=(network_backend if network_backend is not None else DeadlineBackend()),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        state = _current_send.get()
        if state is None:
            return super().handle_request(request)
        left = state.time_left()
        if left <= 0:
            state.expired = True
            raise httpx.PoolTimeout("the request's overall deadline has passed", request=request)
        timeouts = dict(request.extensions.get("timeout", {}))
        pool = timeouts.get("pool")
        capped = pool is None or pool > left
        if capped:
            timeouts["pool"] = left
            request.extensions = {**request.extensions, "timeout": timeouts}
        try:
            return super().handle_request(request)
        except httpx.PoolTimeout:
            if capped:
                state.expired = True
            raise


class ZapiClient:
    """Sends order updates to one Z-API instance and classifies every answer.

    Each :meth:`send` ends within :attr:`deadline` (``connect_timeout + timeout``) seconds,
    waiting for a pooled connection included, and its transport errors say whether the
    request may have reached Z-API (``ZapiTransportError.ambiguous``).

    ``transport``: a custom httpx transport (tests) replaces :class:`DeadlineTransport`, and
    with it the overall deadline (only httpx's per-operation timeouts apply) and the tracking
    of written bytes: ambiguity is then inferred from the exception type (connect errors, connect
    and pool timeouts are not ambiguous; everything else is).
    """

    def __init__(
        self,
        base_url: str,
        credentials: ZapiCredentials,
        *,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        max_connections: int = 100,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._credentials = credentials
        self._secrets = credentials.secrets()
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._deadline = connect_timeout + timeout
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._tracks_sends = transport is None
        if transport is None:
            transport = DeadlineTransport(limits=limits)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={
                "Client-Token": credentials.client_token.get_secret_value(),
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=limits,
            follow_redirects=False,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ZapiClient:
        return cls(
            settings.zapi_url,
            settings.zapi_credentials(),
            timeout=settings.zapi_timeout,
            connect_timeout=settings.zapi_connect_timeout,
            max_connections=settings.worker_concurrency,
        )

    @property
    def deadline(self) -> float:
        """Seconds one :meth:`send` may last at most: ``connect_timeout + timeout``."""
        return self._deadline

    def __repr__(self) -> str:
        return f"<ZapiClient instance={self._credentials.instance_id!r}>"

    def send(self, endpoint: Endpoint, body: dict[str, Any]) -> ZapiReply:
        """POST ``body`` to ``endpoint``; return Z-API's reply or raise a ZapiQueueError.

        Returns or raises within :attr:`deadline` seconds. A transport failure raises
        :class:`~tasks.errors.ZapiTransportError`, ``ambiguous`` when the request was written.
        """
        token = self._credentials.instance_token.get_secret_value()
        path = f"/instances/{self._credentials.instance_id}/token/{token}/{endpoint.value}"
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        state = SendState(deadline=time.monotonic() + self._deadline)
        context_token = _current_send.set(state)
        try:
            response = self._http.post(path, content=content)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, state) from None
        finally:
            _current_send.reset(context_token)
        return interpret(response.status_code, response.headers, response.content, self._secrets)

    def _transport_error(self, exc: httpx.HTTPError, state: SendState) -> ZapiTransportError:
        """The secret-free error for a failed send: what happened, and whether it was sent."""
        name = type(exc).__name__
        ambiguous = state.written if self._tracks_sends else not isinstance(exc, _NOT_SENT)
        if isinstance(exc, httpx.TimeoutException):
            if state.expired:
                limit = f"deadline {self._deadline:g}s"
            elif isinstance(exc, httpx.ConnectTimeout):
                limit = f"connect timeout {self._connect_timeout:g}s"
            else:
                limit = f"timeout {self._timeout:g}s"
            if ambiguous:
                message = (
                    f"no answer from Z-API in time after the request was sent ({name}, {limit}): "
                    "it may have been delivered"
                )
            else:
                message = f"could not reach Z-API in time ({name}, {limit}): it was not sent"
        else:
            detail = _URL.sub("<url>", redact(str(exc), self._secrets)) or "no detail"
            if ambiguous:
                message = (
                    f"lost the connection to Z-API after the request was sent ({name}: "
                    f"{detail}): it may have been delivered"
                )
            else:
                message = f"could not reach Z-API: {name}: {detail} (it was not sent)"
        return ZapiTransportError(message, ambiguous=ambiguous)

    def close(self) -> None:
        self._http.close()


_client = PerProcess(lambda: ZapiClient.from_settings(get_settings()), ZapiClient.close)


def get_client() -> ZapiClient:
    """The process-wide client, created on first use (after any fork)."""
    return _client.get()


def close_client() -> None:
    """Close the process-wide client (worker shutdown)."""
    _client.close()
