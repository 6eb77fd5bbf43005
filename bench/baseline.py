"""The baseline of bench/throughput.py: a plain Celery task posting to Z-API with httpx.

What a developer writes first: no validation, no rate limit, no idempotency, Celery's defaults
(prefork, one process per core, ``celery -A bench.baseline worker`` with no flags).
"""

from __future__ import annotations

import os
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
    """A careful version: one keep-alive client per worker process (not the target baseline)."""
    global _client
    if _client is None:
        _client = httpx.Client(headers=HEADERS)
    response = _client.post(URL, json=body)
    response.raise_for_status()
    return response.json()
