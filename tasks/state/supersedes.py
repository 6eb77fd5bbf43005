"""What each job superseded (``ZAPI_SUPERSEDE``): the older updates of its order it made
unnecessary, so that ``zapi-queue status`` of the newer job lists them, and a ``message`` the
shop wrote for an older one is found, not silently lost.

One list per superseding job, ``zapi-queue:superseded:{job_id}``: one JSON entry per older job
(``job``, ``field``, ``state``, ``message``: whether it carried a text, ``at``), the newest
:data:`SUPERSEDED_MAX` kept, expiring with the job's result (``CELERY_RESULT_EXPIRES``). The
older job writes it as it gives way (tasks/order_line.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from tasks.state.keys import SUPERSEDED_MAX, SUPERSEDED_PREFIX
from tasks.state.store import text


@dataclass(frozen=True, slots=True)
class Superseded:
    """An older job ``job`` that gave way: its update (``field``, ``state``) and whether it
    carried a ``message`` text, which was not sent either."""

    job: str
    field: str
    state: str
    message: bool
    at: float

    def describe(self) -> str:
        text_note = ", with a message text that was not sent" if self.message else ""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.at))
        return f"job {self.job} ({self.field} {self.state}{text_note}) at {when}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "field": self.field,
            "state": self.state,
            "message": self.message,
            "at": self.at,
        }


class SupersedeBook:
    """Where superseded jobs are noted under the job that superseded them."""

    def __init__(self, client: redis.Redis, *, ttl: int) -> None:
        self._redis = client
        self.ttl = max(ttl, 1)

    def note(self, newer_job: str, superseded: Superseded) -> None:
        key = SUPERSEDED_PREFIX + newer_job
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(superseded.as_dict()))
        pipe.ltrim(key, -SUPERSEDED_MAX, -1)
        pipe.expire(key, self.ttl)
        pipe.execute()

    def of(self, job_id: str) -> list[Superseded]:
        """What ``job_id`` superseded, oldest first (entries that do not read are skipped)."""
        found = []
        for raw in self._redis.lrange(SUPERSEDED_PREFIX + job_id, 0, -1):
            try:
                data = json.loads(text(raw))
                found.append(
                    Superseded(
                        str(data["job"]),
                        str(data["field"]),
                        str(data["state"]),
                        data.get("message") is True,
                        float(data["at"]),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue
        return found
