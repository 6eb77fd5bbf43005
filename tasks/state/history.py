"""Each job's story, step by step, for the operator console's order and job pages.

``zapi-queue:history:{job_id}``: a list of compact JSON steps, oldest first, the newest
:data:`HISTORY_MAX` kept, expiring with the job's result (``CELERY_RESULT_EXPIRES``). A step is
``{"t": epoch s, "k": kind, ...}``:

* ``wait`` (``why``: its turn, a slot, a pause, a hold, its order not in the book yet), written
  when the reason changes, not at each look (a waiting job looks often);
* an attempt's outcome as the attempt log names it (``delivered`` with Z-API's ids, ``retry``,
  ``refused``, ``gave-up``, ``deferred``, ``deduplicated``, ``superseded``, ``stale``, ``dead``)
  with its HTTP ``status``, ``ms`` and a secret-free ``detail``;
* ``delivery`` (``state``: sent, received, read, played, failed with Z-API's ``error``,
  withdrawn), written by the webhook receiver as Z-API's callbacks come (deliveries.lua).

Written in the round trips the job makes anyway where it matters: a delivered job's steps go in
the script that records its reply (tasks/state/turns.lua); the rarer outcomes (a retry, a
refusal, a change of wait) in one pipelined write as the execution ends. No step holds a phone,
a body or a secret: job ids, Z-API ids, states, times, and the attempt log's detail (already
redacted).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from tasks.state.keys import HISTORY_MAX, HISTORY_PREFIX
from tasks.state.store import text


def step(kind: str, **fields: Any) -> str:
    """One step as stored: its time, kind and the fields given (None ones dropped)."""
    data = {"t": round(time.time(), 3), "k": kind}
    data.update({name: value for name, value in fields.items() if value is not None})
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a job's story, read back."""

    at: float
    kind: str
    fields: dict[str, Any]


def history_key(job_id: str) -> str:
    return HISTORY_PREFIX + job_id


class JobHistory:
    """Jobs' steps in the state Redis."""

    def __init__(self, client: redis.Redis, *, ttl: int) -> None:
        self._redis = client
        self.ttl = max(ttl, 1)

    def note(self, job_id: str, steps: list[str], *, pipe: Any = None) -> None:
        """Append ``steps`` (from :func:`step`); on ``pipe`` when given (the caller runs it)."""
        if not steps:
            return
        target = pipe if pipe is not None else self._redis.pipeline(transaction=False)
        key = history_key(job_id)
        target.rpush(key, *steps)
        target.ltrim(key, -HISTORY_MAX, -1)
        target.expire(key, self.ttl)
        if pipe is None:
            target.execute()

    def of(self, job_id: str) -> list[Step]:
        """The job's steps, oldest first (a step that does not read is skipped)."""
        return [s for raw in self._redis.lrange(history_key(job_id), 0, -1) if (s := _read(raw))]

    def of_many(self, job_ids: list[str]) -> dict[str, list[Step]]:
        """Several jobs' steps in one round trip (an order's page)."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.lrange(history_key(job_id), 0, -1)
        answers = pipe.execute()
        return {
            job_id: [s for raw in raws if (s := _read(raw))]
            for job_id, raws in zip(job_ids, answers, strict=True)
        }


def _read(raw: Any) -> Step | None:
    try:
        data = json.loads(text(raw))
        return Step(float(data.pop("t")), str(data.pop("k")), data)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
