"""The two Celery tasks of the public contract, and the delivery they share.

Producers call them by name: ``send_task("zapi.order_status_update", args=[body])``. One task
execution is one send attempt; a transient failure re-schedules the job with Celery's retry
(countdown from :func:`tasks.backoff.backoff_delay`), so a job waiting for its next attempt
holds no worker thread and survives a worker restart.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Task, shared_task
from celery.utils.log import get_task_logger

from config import get_settings
from tasks.backoff import backoff_delay
from tasks.client import get_client
from tasks.endpoints import Endpoint
from tasks.errors import AttemptsExhaustedError, PermanentError, TransientError
from tasks.validation import validate_body

logger = get_task_logger(__name__)

ORDER_STATUS_UPDATE = "zapi.order_status_update"
ORDER_PAYMENT_UPDATE = "zapi.order_payment_update"

# Expected failures: Celery logs them in one line instead of a traceback.
_EXPECTED = (PermanentError, AttemptsExhaustedError)


@shared_task(name=ORDER_STATUS_UPDATE, bind=True, throws=_EXPECTED)
def order_status_update(self: Task[Any, Any], body: Any) -> dict[str, str]:
    """Send an order status update; the result is Z-API's ``{zaapId, messageId, id}``."""
    return deliver(self, Endpoint.ORDER_STATUS_UPDATE, body)


@shared_task(name=ORDER_PAYMENT_UPDATE, bind=True, throws=_EXPECTED)
def order_payment_update(self: Task[Any, Any], body: Any) -> dict[str, str]:
    """Send an order payment update; the result is Z-API's ``{zaapId, messageId, id}``."""
    return deliver(self, Endpoint.ORDER_PAYMENT_UPDATE, body)


def deliver(task: Task[Any, Any], endpoint: Endpoint, body: Any) -> dict[str, str]:
    """Validate, send once, and either return the reply, fail for good, or schedule a retry."""
    settings = get_settings()
    update = validate_body(endpoint, body)
    attempt = task.request.retries + 1
    started = time.perf_counter()
    try:
        reply = get_client(settings).send(endpoint, update.to_wire())
    except TransientError as exc:
        elapsed = time.perf_counter() - started
        if attempt >= settings.zapi_max_attempts:
            raise AttemptsExhaustedError(
                f"gave up on {endpoint.value} after {attempt} attempts; last error: {exc.message}"
            ) from None
        delay = backoff_delay(
            attempt,
            base=settings.zapi_retry_backoff,
            cap=settings.zapi_retry_backoff_max,
            retry_after=exc.retry_after,
        )
        logger.warning(
            "%s attempt %d/%d failed after %.3fs, retrying in %.2fs: %s",
            endpoint.value,
            attempt,
            settings.zapi_max_attempts,
            elapsed,
            delay,
            exc.message,
        )
        raise task.retry(exc=exc, countdown=delay, max_retries=None) from None
    logger.info(
        "%s attempt %d delivered in %.3fs: zaapId=%s",
        endpoint.value,
        attempt,
        time.perf_counter() - started,
        reply.zaapId,
    )
    return reply.to_result()
