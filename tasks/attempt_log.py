"""One log line per send attempt: what operators grep for, and what JSON logs index.

Every attempt says which job, endpoint, instance (its alias), recipient (masked), attempt
number, HTTP status and duration, how it ended (delivered, retry, deferred, refused,
gave-up), and, when sends of this key may have reached Z-API unanswered, how many
(``ambiguous``). The same fields ride on the record as
``record.zapi`` so the JSON formatter (``ZAPI_LOG_FORMAT=json``) emits them as keys.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.contract.redaction import mask_phone

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
    ambiguous: int = 0,
) -> None:
    """Log one attempt; ``ambiguous`` (shown when not zero) counts this key's sends that may
    have reached Z-API without a reply (a timeout or reset after the request was written)."""
    if not logger.isEnabledFor(level):
        return  # nothing to build: the line would be dropped
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
    if ambiguous:
        fields["ambiguous"] = ambiguous
    text = " ".join(f"{name}={value}" for name, value in fields.items())
    logger.log(level, "%s%s", text, f": {detail}" if detail else "", extra={"zapi": fields})
