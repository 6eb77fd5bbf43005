"""The Z-API HTTP client: one pooled ``httpx.Client`` per worker process.

Creating a client per job would pay a TCP and TLS handshake for every send; one shared
client keeps connections alive across jobs and threads (``httpx.Client`` is thread-safe).
The instance token sits in the URL path, so nothing here ever formats the URL into a
message: transport errors are re-raised with their class name and a redacted text only.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

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


class ZapiClient:
    """Sends order updates to one Z-API instance and classifies every answer."""

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
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        if transport is None:
            # httpx writes a request's headers and body separately; with Nagle's algorithm the
            # body then waits for the server's delayed ACK (up to 40 ms) on a reused connection.
            transport = httpx.HTTPTransport(
                limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            )
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

    def __repr__(self) -> str:
        return f"<ZapiClient instance={self._credentials.instance_id!r}>"

    def send(self, endpoint: Endpoint, body: dict[str, Any]) -> ZapiReply:
        """POST ``body`` to ``endpoint``; return Z-API's reply or raise a ZapiQueueError."""
        token = self._credentials.instance_token.get_secret_value()
        path = f"/instances/{self._credentials.instance_id}/token/{token}/{endpoint.value}"
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = self._http.post(path, content=content)
        except httpx.TimeoutException as exc:
            raise ZapiTransportError(
                f"no answer from Z-API in time ({type(exc).__name__}, timeout {self._timeout:g}s)"
            ) from None
        except httpx.HTTPError as exc:
            detail = redact(str(exc), self._secrets) or "no detail"
            raise ZapiTransportError(
                f"could not reach Z-API: {type(exc).__name__}: {detail}"
            ) from None
        return interpret(response.status_code, response.headers, response.content, self._secrets)

    def close(self) -> None:
        self._http.close()


_client = PerProcess(lambda: ZapiClient.from_settings(get_settings()), ZapiClient.close)


def get_client() -> ZapiClient:
    """The process-wide client, created on first use (after any fork)."""
    return _client.get()


def close_client() -> None:
    """Close the process-wide client (worker shutdown)."""
    _client.close()
