"""One log line per send attempt: what operators grep for, and what JSON logs index.

Every attempt says which job, endpoint, instance (its alias), recipient (masked), attempt
number, HTTP status and duration, and how it ended. The same fields ride on the record as
``record.zapi`` so the JSON formatter (``ZAPI_LOG_FORMAT=json``) emits them as keys.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.redaction import mask_phone

logger = logging.getLogger("zapi_queue.attempts")


def log_attempt(
    *,
    job_id: str,
    endpoint: str,
    instance: str,
    phone: str,
    attempt: int,
    status: int | None,
    duration: float,
    outcome: str,
    detail: str = "",
    level: int = logging.INFO,
) -> None:
    fields: dict[str, Any] = {
        "job_id": job_id,
        "endpoint": endpoint,
        "instance": instance,
        "phone": mask_phone(phone),
        "attempt": attempt,
        "status": status,
        "duration_ms": round(duration * 1000, 1),
        "outcome": outcome,
    }
    text = " ".join(f"{name}={value}" for name, value in fields.items())
    logger.log(level, "%s%s", text, f": {detail}" if detail else "", extra={"zapi": fields})
