"""Jobs answered from an idempotency record: which job had delivered the update, and when.

A repeat's result is the stored reply, keys unchanged (a producer may compare it with the first
job's); what tells it apart is kept here for ``zapi-queue status``, and logged as the attempt
(outcome ``deduplicated``). One small string per repeat, ``zapi-queue:repeat:{job_id}``,
expiring with the job's result (``CELERY_RESULT_EXPIRES``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from tasks.state.keys import REPEAT_PREFIX
from tasks.state.store import text


@dataclass(frozen=True, slots=True)
class Repeat:
    """A job that was not sent because ``delivered_by`` had delivered it at ``delivered_at``."""

    job_id: str
    delivered_by: str | None
    delivered_at: float | None

    def describe(self) -> str:
        """``not sent: already delivered by job X at 2026-11-26 12:00:00 UTC``."""
        if self.delivered_by is None:
            by = "an earlier job"
        elif self.delivered_by == self.job_id:
            by = "this job (a re-delivery of it, after a crash or a lease takeover)"
        else:
            by = f"job {self.delivered_by}"
        at = ""
        if self.delivered_at is not None:
            at = time.strftime(" at %Y-%m-%d %H:%M:%S UTC", time.gmtime(self.delivered_at))
        return f"not sent: already delivered by {by}{at}"

    def as_dict(self) -> dict[str, Any]:
        return {"delivered_by": self.delivered_by, "delivered_at": self.delivered_at}


class RepeatBook:
    """Where repeats are noted, for as long as their results live."""

    def __init__(self, client: redis.Redis, *, ttl: int) -> None:
        self._redis = client
        self.ttl = ttl

    def note(self, repeat: Repeat) -> None:
        self._redis.set(
            REPEAT_PREFIX + repeat.job_id, json.dumps(repeat.as_dict()), ex=max(self.ttl, 1)
        )

    def get(self, job_id: str) -> Repeat | None:
        raw = self._redis.get(REPEAT_PREFIX + job_id)
        if raw is None:
            return None
        data = json.loads(text(raw))
        return Repeat(job_id, data.get("delivered_by"), data.get("delivered_at"))
