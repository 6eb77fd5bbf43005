"""The floor under zapi-queue's CPU per job: its worker with none of its domain (issue #34).

``celery -A bench.floor worker`` is ``celery -A worker worker`` (the gevent boot, 128 greenlets,
reliable fetch, the guarded result backend, batched task events, late acks) with one more
task, ``bench.floor``: the body sent as it came with zapi-queue's own Z-API client (its
connection stack, deadline and reply check), with no validation, ordering, idempotency claim,
rate slot, delivery record, attempt log or metrics. What a job costs here, every job of this
worker costs at least: zapi-queue's cost above it is its domain's.
"""

from __future__ import annotations

from typing import Any

from tasks.contract.endpoints import Endpoint
from tasks.zapi.client import get_client
from worker import app


@app.task(name="bench.floor")
def floor(body: dict[str, Any]) -> dict[str, Any]:
    """Send ``body`` as it came, and return Z-API's reply."""
    return get_client().send(Endpoint.ORDER_STATUS_UPDATE, body).model_dump()
