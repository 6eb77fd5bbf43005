"""Keep-alive connections to Z-API handed out one per request, most recently used first.

httpcore's ``ConnectionPool`` walks every connection it holds twice per request (when the
request joins the pool and when its response is closed): an expiry check, which polls each idle
socket, and a count of idle connections that is itself a walk, for each idle connection
(encode/httpcore#1035, open). A worker runs WORKER_CONCURRENCY sends at a time (128 by default),
so it keeps about as many connections to Z-API, and at 200 ms of Z-API latency that bookkeeping
was a third of the CPU a worker spends on a job (860 ``is_idle`` calls and 30 socket polls per
request, measured at 64).

:class:`ConnectionStack` gives each request a pool of its own with at most one connection,
taken from a stack: the pool (and its warm connection) used last is reused first, so a quiet
worker keeps reusing one connection while a busy one holds one per request in flight. A request
then costs httpcore's bookkeeping for one connection, whatever the concurrency, and since a
pool serves one request at a time, a pool's pass cannot close a connection it has just handed to
a waiting request (encode/httpcore#1110, open, seen with hundreds of threads). The stack also
closes the pools that stayed unused for longer than the keep-alive expiry, so a burst's
connections do not linger once the load drops. ``max_connections`` still bounds the
connections, and a request waits for one at most its pool timeout (httpcore's ``PoolTimeout``,
as before).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType

import httpcore


class ConnectionStack:
    """Stands in for ``httpcore.ConnectionPool`` in an httpx transport (``handle_request``,
    ``close``, the context manager), lending each request a one-connection pool."""

    def __init__(
        self,
        make_pool: Callable[[], httpcore.ConnectionPool],
        *,
        max_connections: int | None,
        keepalive_expiry: float | None,
    ) -> None:
        self._make_pool = make_pool
        self._keepalive_expiry = keepalive_expiry
        #: Pools not lent out, with when each came back; the newest last.
        self._idle: deque[tuple[httpcore.ConnectionPool, float]] = deque()
        self._lent: set[httpcore.ConnectionPool] = set()
        self._slots = (
            threading.BoundedSemaphore(max_connections) if max_connections is not None else None
        )
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        pool = self._borrow(request.extensions.get("timeout", {}).get("pool"))
        try:
            response = pool.handle_request(request)
        except BaseException:
            self._give_back(pool)
            raise
        assert isinstance(response.stream, Iterable)  # a sync pool's, as in ConnectionPool
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_GivenBackOnClose(response.stream, lambda: self._give_back(pool)),
            extensions=response.extensions,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pools = [pool for pool, _ in self._idle] + list(self._lent)
            self._idle, self._lent = deque(), set()
        for pool in pools:
            pool.close()

    def __enter__(self) -> ConnectionStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()

    def _borrow(self, timeout: float | None) -> httpcore.ConnectionPool:
        if self._slots is not None and not self._slots.acquire(timeout=timeout):
            raise httpcore.PoolTimeout("no connection to Z-API came free in time")
        pool: httpcore.ConnectionPool | None = None
        with self._lock:
            stale = self._unused_too_long()
            if not self._closed:
                pool = self._idle.pop()[0] if self._idle else self._make_pool()
                self._lent.add(pool)
        for old in stale:
            old.close()
        if pool is None:
            self._release_slot()
            raise RuntimeError("the Z-API client is closed")
        return pool

    def _unused_too_long(self) -> list[httpcore.ConnectionPool]:
        """Take out the idle pools unused for longer than the keep-alive expiry (lock held)."""
        stale: list[httpcore.ConnectionPool] = []
        if self._keepalive_expiry is not None:
            cutoff = time.monotonic() - self._keepalive_expiry
            while self._idle and self._idle[0][1] < cutoff:
                stale.append(self._idle.popleft()[0])
        return stale

    def _give_back(self, pool: httpcore.ConnectionPool) -> None:
        with self._lock:
            if pool not in self._lent:  # the stack was closed meanwhile (and closed it)
                return
            self._lent.discard(pool)
            self._idle.append((pool, time.monotonic()))
        self._release_slot()

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()


class _GivenBackOnClose:
    """A response body that gives its pool back to the stack once closed (read or not)."""

    def __init__(self, stream: Iterable[bytes], give_back: Callable[[], None]) -> None:
        self._stream = stream
        self._give_back: Callable[[], None] | None = give_back

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        finally:
            give_back, self._give_back = self._give_back, None
            if give_back is not None:
                give_back()
