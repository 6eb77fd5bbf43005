"""The baselines of bench/throughput.py: a plain Celery task posting to Z-API with httpx.

No validation, no rate limit, no idempotency, Celery's defaults (prefork, one process per core,
prefetch multiplier 4, no task events: ``celery -A bench.baseline worker`` with no flags):

* ``order_status_update``: what a developer writes first, ``httpx.post`` per job (a new
  connection each time);
* ``order_status_update_pooled``: the careful version, and the one to beat on CPU per job: one
  keep-alive ``httpx.Client`` per process, with ``TCP_NODELAY`` (as ours), so that Nagle's
  algorithm does not delay its small requests.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import httpx
from celery import Celery

app = Celery(
    "baseline",
    broker=os.environ.get("CELERY_BROKER_URL"),
    backend=os.environ.get("CELERY_RESULT_BACKEND"),
)

URL = "{base}/instances/{instance}/token/{token}/order-status-update".format(
    base=os.environ.get("ZAPI_BASE_URL", ""),
    instance=os.environ.get("ZAPI_INSTANCE_ID", ""),
    token=os.environ.get("ZAPI_INSTANCE_TOKEN", ""),
)


HEADERS = {"Client-Token": os.environ.get("ZAPI_CLIENT_TOKEN", "")}


@app.task(name="baseline.order_status_update")
def order_status_update(body: dict[str, Any]) -> Any:
    """The plain version: ``httpx.post``, a new connection (and TLS context) per job."""
    response = httpx.post(URL, json=body, headers=HEADERS)
    response.raise_for_status()
    return response.json()


_client: httpx.Client | None = None


@app.task(name="baseline.order_status_update_pooled")
def order_status_update_pooled(body: dict[str, Any]) -> Any:
    """The careful version: one keep-alive client per worker process, TCP_NODELAY on."""
    global _client
    if _client is None:
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        _client = httpx.Client(
            headers=HEADERS, transport=httpx.HTTPTransport(socket_options=nodelay)
        )
    response = _client.post(URL, json=body)
    response.raise_for_status()
    return response.json()
