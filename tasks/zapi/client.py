"""The Z-API HTTP client: one pooled ``httpx.Client`` per worker process.

Creating a client per job would pay a TCP and TLS handshake for every send; one shared
client keeps connections alive across jobs and threads (``httpx.Client`` is thread-safe).
The instance token sits in the URL path, so nothing here ever formats the URL into a
message: transport errors are re-raised with their class name and a redacted text only.

Two properties of one send (:meth:`ZapiClient.send`), from :mod:`tasks.zapi.deadline`:

* **One overall deadline**, ``connect_timeout + timeout`` (:attr:`ZapiClient.deadline`), for
  everything the request does: the idempotency claim in Redis is sized from it.
* **Ambiguous sends.** A failure before any byte of the request was written (DNS, refused,
  connect or pool timeout) means Z-API certainly did not get the request; a failure after it
  (no answer in time, connection reset or closed, a malformed answer) means Z-API may have
  delivered it: the :class:`ZapiTransportError` is then ``ambiguous`` and says so.

Besides sends, the instance's own calls: its connection (``status``), its webhook settings
(``me``) and setting every webhook URL at once (``update-every-webhooks``, for
``zapi-queue webhooks configure``), and its queue at Z-API (a page of it, one message
deleted: issue #30's reconciliation), each within the same deadline and as secret-free.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import quote

import httpx

from config import Settings, ZapiCredentials, get_settings
from config.instances import Instance
from tasks import tracing
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import ZapiQueueError, ZapiTransportError
from tasks.contract.redaction import redact
from tasks.contract.schemas import ZapiReply
from tasks.instances import default_instance
from tasks.per_process import PerInstance
from tasks.zapi.deadline import DeadlineTransport, SendState, deadline_of_send
from tasks.zapi.queue import MAX_PAGE_SIZE, QueuePage
from tasks.zapi.responses import (
    interpret,
    interpret_instance_data,
    interpret_queue_delete,
    interpret_queue_page,
    interpret_status,
    interpret_value,
)
from tasks.zapi.status import InstanceSettings, InstanceStatus

USER_AGENT = "zapi-queue/0.1"

# httpx logs every request URL (with the instance token in it) at INFO. Keep it quiet;
# worker.logging also installs a redacting filter as a second line of defence.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Failures that happen before a request can have been written, for a transport whose writes we
# do not see (a custom ``transport=``): every other failure is taken as ambiguous.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)

# httpx's own errors carry no URL, but a custom transport's may: never put one in a message.
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


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
        self._base_url = base_url.rstrip("/")
        #: Each route's absolute URL, parsed once: httpx would parse base + path at every send.
        self._urls: dict[str, httpx.URL] = {}
        self._tracks_sends = transport is None
        if transport is None:
            transport = DeadlineTransport(limits=limits)
        self._http = httpx.Client(
            base_url=self._base_url,
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
    def from_settings(cls, settings: Settings, instance: Instance | None = None) -> ZapiClient:
        """A client for ``instance`` (default: the single-instance variables)."""
        credentials = (
            settings.zapi_credentials()
            if instance is None
            else ZapiCredentials(
                instance.instance_id, instance.instance_token, instance.client_token
            )
        )
        return cls(
            settings.zapi_url,
            credentials,
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
        :class:`ZapiTransportError`, ``ambiguous`` when the request was written.
        """
        url = self._url(endpoint.value)
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        with tracing.zapi_request("POST", endpoint.value, url) as span:
            with deadline_of_send(self._deadline) as state:
                try:
                    response = self._http.post(url, content=content)
                except httpx.HTTPError as exc:
                    error = self._transport_error(exc, state)
                    span.error(type(exc).__name__, str(error))
                    raise error from None
            span.set({"http.response.status_code": response.status_code})
            try:
                return interpret(
                    response.status_code, response.headers, response.content, self._secrets
                )
            except ZapiQueueError as exc:
                span.error(type(exc).__name__, str(exc))
                raise

    def status(self) -> InstanceStatus:
        """Ask Z-API whether the instance is connected (``GET .../status``). Raises a
        ZapiQueueError like :meth:`send`; nothing is sent, so no error is ambiguous."""
        response = self._exchange("GET", "status", "ask Z-API for the instance's status")
        return interpret_status(
            response.status_code, response.headers, response.content, self._secrets
        )

    def instance_settings(self) -> InstanceSettings:
        """The instance's webhook URLs and ``notifySentByMe`` as Z-API has them (``GET .../me``,
        the instance token it also returns dropped). Raises a ZapiQueueError like
        :meth:`status`."""
        response = self._exchange("GET", "me", "ask Z-API for the instance's data")
        return interpret_instance_data(
            response.status_code, response.headers, response.content, self._secrets
        )

    def update_every_webhooks(self, url: str, *, notify_sent_by_me: bool = True) -> None:
        """Point every webhook of the instance at ``url`` (``PUT .../update-every-webhooks``),
        with the messages the number sends itself reported too (``notifySentByMe``): the order
        message's callback needs it. Done only when Z-API answers ``{"value": true}``; else a
        ZapiQueueError (a transport error ``ambiguous`` when Z-API may have applied it: the
        same call again is harmless)."""
        body = {"value": url, "notifySentByMe": notify_sent_by_me}
        response = self._exchange(
            "PUT", "update-every-webhooks", "set the instance's webhooks", body=body
        )
        interpret_value(response.status_code, response.headers, response.content, self._secrets)

    def queue_page(
        self, page_size: int = MAX_PAGE_SIZE, paging_state: str | None = None
    ) -> QueuePage:
        """One page of the instance's queue at Z-API (``POST .../queue``): the first, or the
        one ``paging_state`` (the last page's) points to. Raises a ZapiQueueError like
        :meth:`status` (a page it cannot trust is a ZapiRejectedError); ValueError for a
        ``page_size`` Z-API does not serve (1 to 30)."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}, not {page_size}")
        body: dict[str, Any] = {"pageSize": page_size}
        if paging_state is not None:
            body["pagingState"] = paging_state
        response = self._exchange("POST", "queue", "read Z-API's queue", body=body, changes=False)
        return interpret_queue_page(
            response.status_code, response.headers, response.content, self._secrets
        )

    def delete_queued(self, zaap_id: str) -> bool:
        """Take one message out of the instance's queue at Z-API (``DELETE .../queue/{zaapId}``)
        so that it never fires: True when removed, False when Z-API says it was not there
        (fired already, or never queued). Raises a ZapiQueueError like :meth:`status`, a
        transport error ``ambiguous`` when Z-API may have removed it (the same call again is
        harmless)."""
        if not zaap_id:
            raise ValueError("zaap_id is empty")
        response = self._exchange(
            "DELETE",
            "queue",
            "delete a message from Z-API's queue",
            item=zaap_id,
            changes=True,
        )
        return interpret_queue_delete(
            response.status_code, response.headers, response.content, self._secrets
        )

    def _exchange(
        self,
        method: str,
        route: str,
        what: str,
        *,
        body: dict[str, Any] | None = None,
        item: str | None = None,
        changes: bool | None = None,
    ) -> httpx.Response:
        """One request other than a send, within :attr:`deadline`, to ``route`` or to one
        ``item`` under it: a transport failure is a secret-free ZapiTransportError saying what
        could not be done (``what``), ambiguous when a change (by default a request with a
        ``body``) may have reached Z-API."""
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        url = self._url(route)
        if item is not None:  # not cached: there is one URL per item
            url = url.join(f"{route}/{quote(item, safe='')}")
        changing = body is not None if changes is None else changes
        with deadline_of_send(self._deadline) as state:
            try:
                return self._http.request(method, url, content=content)
            except httpx.HTTPError as exc:
                ambiguous = changing and self._may_have_arrived(exc, state)
                limit = self._limit_of(exc, state)
                detail = f"{type(exc).__name__}, {limit}" if limit else type(exc).__name__
                maybe = ": Z-API may have applied it" if ambiguous else ""
                raise ZapiTransportError(
                    f"could not {what} ({detail}){maybe}", ambiguous=ambiguous
                ) from None

    def _url(self, route: str) -> httpx.URL:
        """The instance's route: its token sits in the path, so it is never formatted into a
        message (only httpx sees it)."""
        url = self._urls.get(route)
        if url is None:
            token = self._credentials.instance_token.get_secret_value()
            path = f"/instances/{self._credentials.instance_id}/token/{token}/{route}"
            url = self._urls[route] = httpx.URL(self._base_url + path)
        return url

    def _may_have_arrived(self, exc: httpx.HTTPError, state: SendState) -> bool:
        """Whether the failed request may have reached Z-API (bytes written, or for a custom
        transport, an error that can come after writing)."""
        return state.written if self._tracks_sends else not isinstance(exc, _NOT_SENT)

    def _limit_of(self, exc: httpx.HTTPError, state: SendState) -> str | None:
        """The limit a timeout ran into (``deadline 20s``, ``timeout 15s``...); None for an
        error that is not a timeout."""
        if not isinstance(exc, httpx.TimeoutException):
            return None
        if state.expired:
            return f"deadline {self._deadline:g}s"
        if isinstance(exc, httpx.ConnectTimeout):
            return f"connect timeout {self._connect_timeout:g}s"
        return f"timeout {self._timeout:g}s"

    def _transport_error(self, exc: httpx.HTTPError, state: SendState) -> ZapiTransportError:
        """The secret-free error for a failed send: what happened, and whether it was sent."""
        name = type(exc).__name__
        ambiguous = self._may_have_arrived(exc, state)
        limit = self._limit_of(exc, state)
        if limit is not None:
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


_clients = PerInstance(
    lambda instance: ZapiClient.from_settings(get_settings(), instance), ZapiClient.close
)


def get_client(instance: Instance | None = None) -> ZapiClient:
    """The process's client of ``instance`` (default: ``default``), made on first use (after
    any fork): each instance has its own credentials and connection pool."""
    return _clients.get(instance or default_instance())


def close_client() -> None:
    """Close the process-wide client (worker shutdown)."""
    _clients.close()
