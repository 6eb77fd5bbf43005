"""Forgetting a customer's queued jobs: every place the broker keeps a job not finished yet.

A queued job holds the customer's phone (a full body) or message text (a short one), so
``zapi-queue forget`` removes it: **removed, not sent**. The places, read a page at a time
(``PAGE`` items per LRANGE or HSCAN round trip, so the CLI's memory stays bounded whatever the
backlog):

* the queue (``celery``) and Celery's priority sub-lists (``celery\\x06\\x163``...: kombu keeps
  one list per priority step; worker/transport.py): not fetched yet. A job waiting to be
  retried is republished here by ``Task.retry`` with its eta, so it is one of these or below;
* the reliable fetch's processing lists (worker/fetch_scripts.py): fetched, not claimed yet;
* kombu's ``unacked`` hash: fetched and held by a worker, running or waiting for its
  eta/countdown (a retry, a rate slot, an order's turn). The record is removed with its index
  and holder entries, but the worker has the message in memory: it would still run it at its
  time, so the caller revokes these jobs (Celery skips a revoked job when its time comes) and
  reports them apart. A job already running cannot be stopped short of its send;
* the items set aside as not Celery messages (``REJECTED_KEY``): raw text, searched as text.

A job moving between two places while the sweep runs can be missed: ``forget`` says so, and a
second run finds it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from tasks.contract.ordering import Arrival, arrival_of, task_call
from tasks.state.keys import (
    HOLDERS_KEY,
    PRIORITY_SEP,
    QUEUE,
    REJECTED_KEY,
    SOURCES_KEY,
    UNACKED_INDEX_KEY,
    UNACKED_KEY,
)
from tasks.state.store import text

__all__ = ["PRIORITY_SEP", "QUEUE", "UNACKED_INDEX_KEY", "UNACKED_KEY", "QueueEraser", "QueueSweep"]
#: Celery's priorities run 0-9; 0 is the queue itself.
PRIORITIES = range(1, 10)
PAGE = 500

#: Whether a job's (args, kwargs) is the customer's.
CallMatcher = Callable[[list[Any], dict[str, Any]], bool]


@dataclass
class QueueSweep:
    """What the sweep removed from the broker (or, on a dry run, found)."""

    queued: int = 0
    """Jobs removed from the queue and its priority lists: they will not be sent."""
    held: int = 0
    """Jobs held by workers (unacked, or fetched and not claimed): removed and to be revoked."""
    set_aside: int = 0
    held_ids: list[str] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    """Where the removed order updates stood in their orders' lines: the caller takes them out,
    so that the next update of each order does not wait for a job that will never run."""


def job_id_of(envelope: Any) -> str | None:
    headers = envelope.get("headers") if isinstance(envelope, dict) else None
    job = headers.get("id") if isinstance(headers, dict) else None
    return job if isinstance(job, str) else None


def _loaded(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


class QueueEraser:
    """Sweeps one broker for the jobs ``matches`` accepts; ``raw_needles`` find set-aside
    items (raw text) that hold the phone."""

    def __init__(self, broker: redis.Redis, matches: CallMatcher, raw_needles: list[str]) -> None:
        self._redis = broker
        self._matches = matches
        self._needles = [needle for needle in raw_needles if needle]
        self._arrivals: list[Arrival] = []

    def sweep(self, *, dry_run: bool) -> QueueSweep:
        found = QueueSweep()
        for queue in [QUEUE, *(f"{QUEUE}{PRIORITY_SEP}{p}" for p in PRIORITIES)]:
            found.queued += self._sweep_list(queue, self._is_theirs, dry_run, found.held_ids)
        processing = [text(name) for name in self._redis.hkeys(SOURCES_KEY)]
        for name in processing:
            found.held += self._sweep_list(name, self._is_theirs, dry_run, found.held_ids)
        found.held += self._sweep_unacked(dry_run, found.held_ids)
        found.set_aside = self._sweep_list(REJECTED_KEY, self._holds_needle, dry_run, [])
        found.arrivals, self._arrivals = self._arrivals, []
        return found

    def _is_theirs(self, envelope: Any, raw: Any = b"") -> bool:
        call = task_call(envelope)
        return call is not None and self._matches(*call)

    def _holds_needle(self, envelope: Any, raw: Any = b"") -> bool:
        decoded = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return any(needle in decoded for needle in self._needles)

    def _sweep_list(
        self, key: str, wanted: Callable[[Any, Any], bool], dry_run: bool, job_ids: list[str]
    ) -> int:
        """Remove the wanted items of list ``key``, a page at a time. An item removed before
        the cursor shifts the rest left by one: the next page starts that much earlier."""
        count, start = 0, 0
        while page := self._redis.lrange(key, start, start + PAGE - 1):
            removed = 0
            for raw in page:
                envelope = _loaded(raw)
                if not wanted(envelope, raw):
                    continue
                if not dry_run:
                    if not self._redis.lrem(key, 1, raw):  # type: ignore[arg-type]
                        continue  # taken meanwhile (a worker's fetch): no longer here
                    removed += 1
                count += 1
                if (job := job_id_of(envelope)) is not None:
                    job_ids.append(job)
                if not dry_run:
                    self._note_arrival(envelope)
            if len(page) < PAGE:
                break
            start += len(page) - removed
        return count

    def _sweep_unacked(self, dry_run: bool, job_ids: list[str]) -> int:
        """kombu's unacked records (``[message, exchange, routing_key]`` by delivery tag)."""
        count = 0
        for tag, value in self._hscan(UNACKED_KEY):
            entry = _loaded(value)
            envelope = entry[0] if isinstance(entry, list) and entry else None
            if not self._is_theirs(envelope):
                continue
            count += 1
            if (job := job_id_of(envelope)) is not None:
                job_ids.append(job)
            if not dry_run:
                self._drop_unacked(tag)
                self._note_arrival(envelope)
        return count

    def _note_arrival(self, envelope: Any) -> None:
        arrival = arrival_of(envelope) if isinstance(envelope, dict) else None
        if arrival is not None:
            self._arrivals.append(arrival)

    def _hscan(self, key: str) -> Iterator[tuple[bytes, bytes]]:
        yield from self._redis.hscan_iter(key, count=PAGE)

    def _drop_unacked(self, tag: bytes) -> None:
        """The record, its index entry and its holder, in one transaction; the worker's later
        ack finds nothing to remove, which it takes calmly (worker/fetch_scripts.py)."""
        owned = self._redis.hget(HOLDERS_KEY, tag)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(UNACKED_KEY, tag)
        pipe.zrem(UNACKED_INDEX_KEY, tag)
        pipe.hdel(HOLDERS_KEY, tag)
        if owned is not None:
            pipe.srem(owned, tag)
        pipe.execute()
