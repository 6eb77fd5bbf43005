"""Dead letters for tests: one builder, each test naming only the fields it is about."""

from __future__ import annotations

import time
from typing import Any

from tasks.state.deadletter import DeadLetter


def dead_letter(job_id: str, *, age: float = 0.0, **fields: Any) -> DeadLetter:
    """A status update's letter that failed ``age`` seconds ago after three attempts (HTTP 503);
    ``fields`` replace any of that."""
    failed_at = time.time() - age
    record: dict[str, Any] = {
        "job_id": job_id,
        "task": "zapi.order_status_update",
        "body": {"phone": "5511912345678"},
        "error_type": "AttemptsExhaustedError",
        "error": "HTTP 503",
        "attempts": 3,
        "first_attempt_at": failed_at - 1,
        "failed_at": failed_at,
    }
    return DeadLetter(**(record | fields))


def delivery_letter(job_id: str, body: Any, **fields: Any) -> DeadLetter:
    """The letter a send links to its message, buried if Z-API reports the delivery failed: one
    attempt, its error written at the burial (tasks/state/deliveries.py)."""
    return dead_letter(
        job_id, body=body, error_type="DeliveryFailedError", error="", attempts=1, **fields
    )
