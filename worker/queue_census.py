"""How many jobs each instance has waiting, read from the broker: ``zapi-queue health``.

The broker keeps one queue for the whole fleet (the instance is a job's ``instance`` kwarg), so
counting by instance means reading the messages. Two places hold a job that has not finished:

* the queue (``celery``): not fetched yet;
* kombu's ``unacked`` hash: fetched by a worker, running or waiting for its countdown (a job
  re-scheduled for its rate slot, its order's turn or a held instance waits there).

Reading is paged (``PAGE`` messages per round trip) and stops after ``limit`` messages per place,
so a huge backlog costs a bounded time; the census then says it is a lower bound (``complete``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from config.instances import alias_of
from tasks.contract.ordering import task_call

#: The queue Celery sends the tasks to (its default), one for the whole fleet.
QUEUE = "celery"
#: kombu's Redis transport keeps fetched, unacknowledged messages here (its ``unacked_key``).
UNACKED_KEY = "unacked"
PAGE = 1000
#: Messages read at most per place (about a second of JSON parsing each).
DEFAULT_LIMIT = 100_000


@dataclass(slots=True)
class Census:
    """Jobs per instance alias: ``queued`` (not fetched yet) and ``in_workers`` (fetched)."""

    queued: Counter[str] = field(default_factory=Counter)
    in_workers: Counter[str] = field(default_factory=Counter)
    complete: bool = True
    """False when a place held more than the limit: the counts are lower bounds."""


def instance_of(envelope: Any) -> str | None:
    """The instance alias a kombu message's job names (``default`` when none), or None when
    the message carries no job."""
    call = task_call(envelope)
    return None if call is None else alias_of(call[1])


def take_census(client: redis.Redis, limit: int = DEFAULT_LIMIT) -> Census:
    census = Census()
    census.complete &= _count(_queued(client, limit), census.queued, limit)
    census.complete &= _count(_fetched(client, limit), census.in_workers, limit)
    return census


def _count(envelopes: Iterable[Any], counts: Counter[str], limit: int) -> bool:
    """Count ``envelopes`` by instance; False when ``limit`` of them were read (more may be)."""
    read = 0
    for envelope in envelopes:
        read += 1
        alias = instance_of(envelope)
        if alias is not None:
            counts[alias] += 1
    return read < limit


def _queued(client: redis.Redis, limit: int) -> Iterator[Any]:
    for start in range(0, limit, PAGE):
        page = client.lrange(QUEUE, start, min(start + PAGE, limit) - 1)
        yield from (_loaded(message) for message in page)
        if len(page) < PAGE:
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
