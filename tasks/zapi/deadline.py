"""One overall deadline per request to Z-API, and knowing whether the request left.

httpx's timeouts apply to each operation (waiting for a pooled connection, connecting, each
write, each socket read), so a server trickling its answer a byte at a time, or a slow connect
followed by a slow answer, could hold one request far longer than ``connect_timeout + timeout``.
The idempotency claim in Redis is sized from that sum, so a request must not outlive it.

:func:`deadline_of_send` records the deadline in a context variable (per thread: the worker's
threads each run one send); :class:`DeadlineTransport` caps the wait for a pooled connection,
and :class:`DeadlineBackend` caps name resolution, connect, TLS handshake, every write and every
read at the time left, raising httpcore's timeout exceptions once none is left. No request byte
is written after the deadline. The same state records whether any byte of the request was
handed to the socket (:attr:`SendState.written`): after that, Z-API may have received it.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from tasks.zapi.connections import ConnectionStack

# httpx writes a request's headers and body separately; with Nagle's algorithm the body then
# waits for the server's delayed ACK (up to 40 ms) on a reused connection.
SOCKET_OPTIONS: list[tuple[int, int, int]] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


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
    a :class:`~tasks.zapi.connections.ConnectionStack` of one-connection
    ``httpcore.ConnectionPool`` s with the same TLS context, socket options and keep-alive
    expiry, that also get the network backend (httpcore's own pool costs every request a walk
    over all its connections). ``limits.max_keepalive_connections`` is not used: the idle
    connections are bounded by ``max_connections`` and closed after the keep-alive expiry.
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
        socket_options: Iterable[tuple[int, int, int]] = SOCKET_OPTIONS,
        network_backend: httpcore.NetworkBackend | None = None,
    ) -> None:
        ssl_context = httpx.create_ssl_context()  # verify=True: certifi's CAs, or SSL_CERT_FILE
        options = list(socket_options)
        super().__init__(verify=ssl_context, limits=limits, socket_options=options)
        if not isinstance(getattr(self, "_pool", None), httpcore.ConnectionPool):
            raise TypeError(
                "httpx.HTTPTransport no longer keeps its httpcore.ConnectionPool in _pool: "
                "tasks.zapi.client.DeadlineTransport must be adapted to this httpx version"
            )
        self._pool.close()  # holds no connection yet; closed for tidiness
        backend = network_backend if network_backend is not None else DeadlineBackend()

        def one_connection() -> httpcore.ConnectionPool:
            return httpcore.ConnectionPool(
                ssl_context=ssl_context,
                max_connections=1,
                max_keepalive_connections=1,
                keepalive_expiry=limits.keepalive_expiry,
                socket_options=options,
                network_backend=backend,
            )

        # HTTPTransport uses _pool only through what ConnectionStack offers (see above).
        self._pool = ConnectionStack(  # type: ignore[assignment]
            one_connection,
            max_connections=limits.max_connections,
            keepalive_expiry=limits.keepalive_expiry,
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


@contextlib.contextmanager
def deadline_of_send(seconds: float) -> Iterator[SendState]:
    """Within this block, the current thread's request ends within ``seconds``."""
    state = SendState(deadline=time.monotonic() + seconds)
    token = _current_send.set(state)
    try:
        yield state
    finally:
        _current_send.reset(token)
