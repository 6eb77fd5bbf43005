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

Each order's jobs, for its page: ``…:order:{instance}:{order}:story`` (beside its line, jobs
and state: tasks/state/orders.py), a sorted set of job ids by position (the producer's sequence,
else the job's first execution, µs), the newest :data:`STORY_MAX` kept, expiring with the order
(``ZAPI_ORDER_TTL``). A job's first step is its head, ``{"k": "job", "task", "order"}``, kept
first whatever the cap drops.

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

from tasks.contract.ordering import order_keys
from tasks.contract.ordering import story_key as order_story_key
from tasks.state.keys import HISTORY_MAX, HISTORY_PREFIX, STORY_MAX
from tasks.state.scripts import Library, Script
from tasks.state.store import text

#: tell (history.lua): a job's steps and its place among its order's jobs, composed into the
#: script that records a delivered job's reply (tasks/state/turns.py).
LIBRARY = Library.of(
    "tasks.state",
    "history.lua",
    keys=("history", "story"),
    constants={"HISTORY_MAX": HISTORY_MAX, "STORY_MAX": STORY_MAX},
)
_TELL = Script.of(
    "tasks.state", "history.lua", "tell", args=LIBRARY.params("tell"), libraries=[LIBRARY]
)


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


def story_key(instance_id: str, order: str) -> str:
    """The order's jobs (an ``orderRequestId`` or a ShopOrderKey: its key family)."""
    return order_story_key(order_keys(instance_id, order))


def head(task: str, order: str | None) -> str:
    """A job's first step: what its order's page lists it by."""
    return json.dumps({"k": "job", "task": task, "order": order}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Telling:
    """What one ``tell`` writes: the job's steps, its head, and where it stands among its
    order's jobs (``story``: '' when it names no order)."""

    job_id: str
    steps: list[str]
    head: str
    story: str
    position: int
    ttl: int
    story_ttl: int

    def keys(self) -> list[str]:
        return [history_key(self.job_id), self.story]

    def args(self) -> list[Any]:
        return [
            json.dumps(self.steps),
            self.head,
            self.job_id,
            self.position,
            max(1, self.ttl),
            max(1, self.story_ttl),
        ]


@dataclass(frozen=True, slots=True)
class JobStory:
    """A job's story as read back: its task and order (its head; '' and None when the head
    is missing) and its steps, oldest first."""

    job_id: str
    task: str
    order: str | None
    steps: list[Step]

    @classmethod
    def of(cls, job_id: str, raws: list[Any]) -> JobStory:
        read = [s for raw in raws if (s := _read(raw)) is not None]
        head_step = next((s for s in read if s.kind == "job"), None)
        fields = head_step.fields if head_step is not None else {}
        order = fields.get("order")
        return cls(
            job_id,
            str(fields.get("task") or ""),
            order if isinstance(order, str) else None,
            [s for s in read if s.kind != "job"],
        )


class JobHistory:
    """Jobs' steps in the state Redis."""

    def __init__(self, client: redis.Redis, *, ttl: int) -> None:
        self._redis = client
        self.ttl = max(ttl, 1)
        self._tell = _TELL.register(client)

    def tell(self, telling: Telling) -> None:
        """Append a job's steps (one round trip)."""
        if telling.steps:
            self._tell(**LIBRARY.bind_keys(telling.keys()), **LIBRARY.bind("tell", telling.args()))

    def note(self, job_id: str, steps: list[str]) -> None:
        """Append ``steps`` to a job that names no order (tests, tools)."""
        self.tell(Telling(job_id, steps, head("", None), "", 0, self.ttl, 1))

    def jobs_of(self, instance_id: str, order: str) -> list[str]:
        """The order's jobs, in their order."""
        return [text(j) for j in self._redis.zrange(story_key(instance_id, order), 0, -1)]

    def of(self, job_id: str) -> JobStory:
        """The job's story (a step that does not read is skipped)."""
        return JobStory.of(job_id, self._redis.lrange(history_key(job_id), 0, -1))

    def of_many(self, job_ids: list[str]) -> list[JobStory]:
        """Several jobs' stories in one round trip (an order's page), in the order given."""
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.lrange(history_key(job_id), 0, -1)
        return [
            JobStory.of(job_id, raws) for job_id, raws in zip(job_ids, pipe.execute(), strict=True)
        ]


def _read(raw: Any) -> Step | None:
    try:
        data = json.loads(text(raw))
        return Step(float(data.pop("t", 0)), str(data.pop("k")), data)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
