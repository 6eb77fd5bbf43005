"""How many jobs each instance has not finished, read from the broker: ``zapi-queue health``,
the console's instances page and the exporter's backlog (worker/backlog.py).

The broker keeps one queue for the whole fleet (the instance is a job's ``instance`` kwarg), so
counting by instance means reading the messages. A job not finished is in one of three states:

* ``queued``: not fetched yet: in the queue (``celery``), one of kombu's priority lists
  (``celery\\x06\\x16<n>``, which workers take from when the queue is empty) or a worker's
  processing list (reliable fetch holds a message there for the round trip between its fetch
  and its claim, or until the next fetch gives it back: worker/fetch_channel.py);
* ``scheduled``: in kombu's ``unacked`` hash with an ``eta`` still ahead: a countdown, a
  retry's backoff, a wait for its rate slot, its order's turn or a held instance; a worker
  holds it in its timer, no thread runs it;
* ``in_workers``: in ``unacked``, due: running, or waiting for a free thread.

Reading is paged (``PAGE`` messages per round trip), oldest first, and stops after ``limit``
messages per place (the lists, the hash), so a huge backlog costs a bounded time; the census
then says it is a lower bound (``complete``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from config.instances import alias_of
from tasks.contract.ordering import eta_of, task_call
from tasks.state.broker_keys import PRIORITY_SEP, QUEUE, SOURCES_KEY, UNACKED_KEY

__all__ = ["DEFAULT_LIMIT", "PAGE", "QUEUE", "UNACKED_KEY", "Census", "JobFacts", "take_census"]

PAGE = 1000
#: Messages read at most per place (about a second of JSON parsing each).
DEFAULT_LIMIT = 100_000
#: kombu's priority lists: ``celery\x06\x16<n>`` for the steps 1-9 a producer may configure.
PRIORITY_LISTS = tuple(f"{QUEUE}{PRIORITY_SEP}{step}" for step in range(1, 10))

QUEUED, SCHEDULED, IN_WORKERS = "queued", "scheduled", "in_workers"
STATES = (QUEUED, SCHEDULED, IN_WORKERS)


@dataclass(frozen=True, slots=True)
class JobFacts:
    """What a kombu message says of its job: its instance alias, its id, when its producer
    stamped it (``sequence``, epoch seconds) and when it may run (``eta``, epoch seconds)."""

    alias: str
    job_id: str | None = None
    stamped: float | None = None
    eta: float | None = None

    @classmethod
    def of(cls, envelope: Any) -> JobFacts | None:
        """The facts of a decoded kombu message, or None when it carries no job."""
        call = task_call(envelope)
        if call is None:
            return None
        headers = envelope.get("headers")
        headers = headers if isinstance(headers, dict) else {}
        job_id = headers.get("id")
        sequence = call[1].get("sequence")
        # µs since the epoch (tasks.contract.Producer); a smaller integer is no time stamp.
        stamped = sequence / 1e6 if type(sequence) is int and sequence > 1e15 else None
        due = eta_of(headers)  # µs of the epoch, as the transport reads it
        return cls(
            alias_of(call[1]),
            job_id if isinstance(job_id, str) else None,
            stamped,
            due / 1e6 if due is not None else None,
        )

    def state(self, fetched: bool, now: float) -> str:
        """``queued`` when not fetched, else ``scheduled`` while its eta is ahead."""
        if not fetched:
            return QUEUED
        return SCHEDULED if self.eta is not None and self.eta > now else IN_WORKERS


@dataclass(slots=True)
class Census:
    """Jobs per instance alias in each state (the module's docstring), and what the oldest
    unfinished job's age needs: the earliest producer stamp, and the ids of jobs without one."""

    queued: Counter[str] = field(default_factory=Counter)
    scheduled: Counter[str] = field(default_factory=Counter)
    in_workers: Counter[str] = field(default_factory=Counter)
    complete: bool = True
    """False when a place held more than the limit: the counts are lower bounds."""
    oldest_stamp: float | None = None
    """The earliest ``sequence`` stamp of a job not waiting for an eta still ahead."""
    unstamped: dict[str, bool] = field(default_factory=dict)
    """Ids of jobs without a stamp (at most ``track`` of them, oldest first) -> whether the job
    counts for the oldest age (not scheduled): an observer dates them by first sighting."""

    @property
    def fetched(self) -> Counter[str]:
        """Jobs a worker holds, scheduled or not (what ``zapi-queue health`` calls in workers)."""
        return self.scheduled + self.in_workers

    def add(self, facts: JobFacts, state: str, track: int) -> None:
        getattr(self, state)[facts.alias] += 1
        counts = state != SCHEDULED
        if facts.stamped is not None:
            if counts and (self.oldest_stamp is None or facts.stamped < self.oldest_stamp):
                self.oldest_stamp = facts.stamped
        elif facts.job_id is not None and len(self.unstamped) < track:
            self.unstamped[facts.job_id] = counts


def take_census(
    client: redis.Redis, limit: int = DEFAULT_LIMIT, *, track: int = 0, now: float | None = None
) -> Census:
    """Count every unfinished job by instance and state, reading at most ``limit`` messages
    per place; keep at most ``track`` ids of unstamped jobs (:attr:`Census.unstamped`)."""
    census = Census()
    now = time.time() if now is None else now
    for place, fetched in ((_queued(client, limit), False), (_fetched(client, limit), True)):
        read = 0
        for envelope in place:
            read += 1
            facts = JobFacts.of(envelope)
            if facts is not None:
                census.add(facts, facts.state(fetched, now), track)
        census.complete &= read < limit
    return census


def _queued(client: redis.Redis, limit: int) -> Iterator[Any]:
    """The messages of the queue, its priority lists and the processing lists fed from it,
    each list's oldest first, ``limit`` at most in all."""
    sources = client.hgetall(SOURCES_KEY)
    processing = sorted(k for k, queue in sources.items() if _text(queue) == QUEUE)
    lists = [QUEUE, *PRIORITY_LISTS, *processing]
    pipe = client.pipeline(transaction=False)
    for key in lists:
        pipe.llen(key)
    left = limit
    for key, length in zip(lists, pipe.execute(), strict=True):
        if not length:
            continue
        budget = left
        for start in range(0, budget, PAGE):
            stop = min(start + PAGE, budget)
            page = client.lrange(key, -stop, -start - 1)  # the tail end: the oldest
            for message in reversed(page):
                left -= 1
                yield _loaded(message)
            if len(page) < stop - start:
                break
        if left <= 0:
            return


def _fetched(client: redis.Redis, limit: int) -> Iterator[Any]:
    """The messages in ``unacked`` (each stored as ``[message, exchange, routing_key]``)."""
    for read, (_, value) in enumerate(client.hscan_iter(UNACKED_KEY, count=PAGE)):
        if read >= limit:
            return
        entry = _loaded(value)
        yield entry[0] if isinstance(entry, list) and entry else None


def _loaded(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
