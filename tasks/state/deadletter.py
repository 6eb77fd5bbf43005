"""Dead letters: every job that failed for good, kept with what is needed to understand and
replay it (task, body, idempotency key, error, attempts, timestamps).

Redis runs with ``maxmemory-policy noeviction`` (an evicting Redis would drop queued jobs), so
nothing but our own bounds keeps these keys from filling it. Every key has one:

* ``zapi-queue:dead:letter:<job_id>``: string, the JSON record. Expires ``ttl`` seconds after
  the job failed (``ZAPI_DEAD_LETTER_TTL``, 30 days).
* ``zapi-queue:dead:index``: sorted set, job id by failure time (epoch seconds), so listing is
  ordered and paged. Capped: each add removes the entries older than the TTL, then the oldest
  beyond ``max_letters`` (``ZAPI_DEAD_LETTER_MAX``, 100,000) together with their letters. Its
  TTL is pushed to the newest letter's at each add, so it expires with the last letter.
* ``zapi-queue:dead:type:<ErrorType>``: sorted sets like the index, one per error class, so the
  letters of each kind are counted without reading them (the exporter's
  ``zapi_queue_dead_letters{error_type}``); trimmed, capped and expiring with the index. At most
  ``MAX_TYPES`` classes are told apart (an unexpected exception's class is one); further ones
  count as ``other``. ``zapi-queue:dead:types``: the set of their names, expiring likewise.
* ``zapi-queue:dead:instance:<alias>``: sorted sets like the index, one per instance alias, so
  ``zapi-queue health`` counts each instance's letters without reading them; trimmed at each
  add of theirs, capped and expiring with the index. At most ``MAX_INSTANCES`` aliases are told
  apart (a job can name an alias the fleet does not know), and only names of the alias form;
  others count as ``(other)``. ``zapi-queue:dead:instances``: the set of their names, expiring
  likewise.
* ``zapi-queue:dead:trimmed``: integer, how many letters the cap ever dropped, so an operator
  can see that some were (``zapi-queue health``, ``dead list``). One integer: no TTL needed.
* ``zapi-queue:dead``: the hash (job id -> record) of releases that kept letters for ever.
  A store moves its letters into the layout above (each one expiring ``ttl`` after its own
  failure) before its first command, so the first store of each process does; moving the
  last one deletes the hash.

Adding, trimming and migrating run in one Lua script, so concurrent workers never see a
letter without its index entry or a cap overshot. The scripts build letter keys from a prefix
rather than declaring them in KEYS: zapi-queue's Redis is a single server, not a cluster.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import redis

from config import Settings
from config.instances import alias_of
from tasks.state.keys import (
    DEAD_INDEX_KEY,
    DEAD_INSTANCE_PREFIX,
    DEAD_INSTANCES_KEY,
    DEAD_LEGACY_KEY,
    DEAD_LETTER_PREFIX,
    DEAD_MAX_INSTANCES,
    DEAD_MAX_TYPES,
    DEAD_TRIMMED_KEY,
    DEAD_TYPE_PREFIX,
    DEAD_TYPES_KEY,
)
from tasks.state.scripts import Script
from tasks.state.store import text

logger = logging.getLogger(__name__)

LETTER_PREFIX = DEAD_LETTER_PREFIX
INDEX_KEY = DEAD_INDEX_KEY
TRIMMED_KEY = DEAD_TRIMMED_KEY
TYPE_PREFIX = DEAD_TYPE_PREFIX
TYPES_KEY = DEAD_TYPES_KEY
#: Error classes told apart in the per-type counts; more count as OTHER_TYPE.
MAX_TYPES = DEAD_MAX_TYPES
OTHER_TYPE = "other"
INSTANCE_PREFIX = DEAD_INSTANCE_PREFIX
INSTANCES_KEY = DEAD_INSTANCES_KEY
#: Instance aliases told apart in the per-instance counts; more count as OTHER_INSTANCE.
MAX_INSTANCES = DEAD_MAX_INSTANCES
#: Not an alias (config/instances.py allows [a-z0-9_-] only), so no instance's name.
OTHER_INSTANCE = "(other)"
#: The single hash of earlier releases, migrated away (see the module docstring).
LEGACY_KEY = DEAD_LEGACY_KEY

#: The settings' defaults, so a store built without settings keeps the documented bounds.
DEFAULT_TTL: int = Settings.model_fields["zapi_dead_letter_ttl"].default
DEFAULT_MAX_LETTERS: int = Settings.model_fields["zapi_dead_letter_max"].default
#: Letters read per page (one ZRANGE and one MGET).
PAGE_SIZE = 200
#: Records moved per migration script: short enough not to block Redis noticeably.
MIGRATION_CHUNK = 500

_LUA = ("tasks.state", "deadletter.lua")
SCRIPTS = {
    "store": Script.of(
        *_LUA,
        "store",
        keys=("index", "trimmed", "types", "instances", "legacy_key"),
        rest_keys="dropping",
        args=(
            "prefix",
            "ttl_s",
            "max_letters",
            "type_prefix",
            "max_types",
            "instance_prefix",
            "max_instances",
        ),
        rest_args="letters",
    ),
    "count": Script.of(*_LUA, "count", keys=("index",), args=("ttl_s",)),
    "count_by_type": Script.of(
        *_LUA, "count_by_type", keys=("names",), args=("set_prefix", "ttl_s")
    ),
}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    job_id: str
    task: str
    body: Any
    error_type: str
    error: str
    attempts: int
    first_attempt_at: float
    failed_at: float
    kwargs: dict[str, Any] = field(default_factory=dict)
    ambiguous_attempts: int = 0
    """Sends whose outcome is unknown (a timeout or a reset after the request was written):
    Z-API may have delivered them, so a replay may reach the customer twice."""

    @property
    def instance(self) -> str:
        """The alias of the Z-API instance its job was for (``default`` when it named none)."""
        return alias_of(self.kwargs)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str | bytes) -> DeadLetter:
        """Load a record; fields it lacks take their defaults (records of older releases) and
        fields this release does not know are ignored (records of newer ones)."""
        record = json.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in record.items() if name in known})


def cursor(letter: DeadLetter) -> tuple[float, str]:
    """Where a letter stands in the index: :meth:`DeadLetterStore.pages` resumes past it."""
    return (float(letter.failed_at), letter.job_id)


def _failure(record: str | bytes) -> tuple[float, str, str]:
    """A legacy record's failure time, error class and instance alias; a record too damaged to
    tell is kept a full TTL, counted as OTHER_TYPE and OTHER_INSTANCE."""
    try:
        data = json.loads(record)
        return (
            float(data["failed_at"]),
            str(data.get("error_type") or OTHER_TYPE),
            alias_of(data.get("kwargs")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return time.time(), OTHER_TYPE, OTHER_INSTANCE


class DeadLetterStore:
    """Dead letters in Redis, each expiring after ``ttl`` seconds, at most ``max_letters``."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl: int = DEFAULT_TTL,
        max_letters: int = DEFAULT_MAX_LETTERS,
    ) -> None:
        if ttl < 1 or max_letters < 1:
            raise ValueError("a dead letter store needs ttl >= 1 and max_letters >= 1")
        self._redis = client
        self.ttl = ttl
        self.max_letters = max_letters
        self._store = SCRIPTS["store"].register(client)
        self._count = SCRIPTS["count"].register(client)
        self._count_by_type = SCRIPTS["count_by_type"].register(client)
        self._migrated = False

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> DeadLetterStore:
        """A store bounded by ZAPI_DEAD_LETTER_TTL and ZAPI_DEAD_LETTER_MAX."""
        return cls(
            client, ttl=settings.zapi_dead_letter_ttl, max_letters=settings.zapi_dead_letter_max
        )

    def add(self, letter: DeadLetter, *, dropping: tuple[str, ...] = ()) -> None:
        """Keep ``letter`` (replacing one with its job id), then trim to the bounds; delete the
        keys ``dropping`` names in the same atomic step."""
        self._migrate_once()
        self._run_store(
            [
                (
                    letter.job_id,
                    letter.failed_at,
                    letter.error_type,
                    letter.instance,
                    letter.to_json(),
                )
            ],
            dropping=dropping,
        )

    def count(self) -> int:
        """Letters kept now (not expired), whatever their task or error."""
        self._migrate_once()
        return int(self._count(index=INDEX_KEY, ttl_s=self.ttl))

    def count_by_type(self) -> dict[str, int]:
        """Letters kept now, by error class (letters of releases before the per-type sets are
        in none: ``count() - sum(...)`` of them)."""
        self._migrate_once()
        answer = self._count_by_type(names=TYPES_KEY, set_prefix=TYPE_PREFIX, ttl_s=self.ttl)
        counts = {text(answer[i]): int(answer[i + 1]) for i in range(0, len(answer), 2)}
        return {kind: count for kind, count in sorted(counts.items()) if count}

    def count_by_instance(self) -> dict[str, int]:
        """Letters kept now, by instance alias (letters of releases before the per-instance
        sets are in none)."""
        self._migrate_once()
        answer = self._count_by_type(
            names=INSTANCES_KEY, set_prefix=INSTANCE_PREFIX, ttl_s=self.ttl
        )
        counts = {text(answer[i]): int(answer[i + 1]) for i in range(0, len(answer), 2)}
        return {alias: count for alias, count in sorted(counts.items()) if count}

    def dropped(self) -> int:
        """Letters the cap dropped, ever (expired ones are not counted: that is the TTL's job)."""
        self._migrate_once()
        return int(self._redis.get(TRIMMED_KEY) or 0)

    def get(self, job_id: str) -> DeadLetter | None:
        self._migrate_once()
        data = self._redis.get(LETTER_PREFIX + job_id)
        return DeadLetter.from_json(data) if data is not None else None

    def __iter__(self) -> Iterator[DeadLetter]:
        """Every letter, oldest failure first, read in pages."""
        return itertools.chain.from_iterable(self.pages())

    def pages(
        self, page_size: int = PAGE_SIZE, *, after: tuple[float, str] | None = None
    ) -> Iterator[list[DeadLetter]]:
        """Letters, oldest failure first, ``page_size`` index entries (one ZRANGE and one MGET)
        at a time: a reader that stops early reads no further. A page may hold fewer letters
        than entries (a letter that just expired is skipped). Letters removed meanwhile (a
        replay removes each one it sends) do not make the next page skip any. ``after``: start
        past this (failure time, job id), a letter's :func:`cursor` (the console's next page)."""
        self._migrate_once()
        for job_ids in self._index_pages(page_size, after):
            records = self._redis.mget([LETTER_PREFIX + job_id for job_id in job_ids])
            yield [DeadLetter.from_json(record) for record in records if record is not None]

    def newest_of_instance(self, alias: str, limit: int = PAGE_SIZE) -> list[DeadLetter]:
        """The instance's newest letters, newest failure first, at most ``limit`` (one
        ZREVRANGE and one MGET): what the console's instance page counts by minute and error."""
        self._migrate_once()
        job_ids = [text(i) for i in self._redis.zrevrange(INSTANCE_PREFIX + alias, 0, limit - 1)]
        if not job_ids:
            return []
        records = self._redis.mget([LETTER_PREFIX + job_id for job_id in job_ids])
        return [DeadLetter.from_json(record) for record in records if record is not None]

    def remove(self, job_ids: Iterable[str]) -> int:
        """Delete these letters; returns how many existed."""
        self._migrate_once()
        removed = 0
        ids = iter(job_ids)
        while batch := list(itertools.islice(ids, 1000)):
            sets = [TYPE_PREFIX + text(kind) for kind in self._redis.smembers(TYPES_KEY)]
            sets += [INSTANCE_PREFIX + text(alias) for alias in self._redis.smembers(INSTANCES_KEY)]
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(*(LETTER_PREFIX + job_id for job_id in batch))
            pipe.zrem(INDEX_KEY, *batch)
            for counted in sets:
                pipe.zrem(counted, *batch)
            deleted = pipe.execute()[0]
            removed += int(deleted)
        return removed

    def migrate(self) -> int:
        """Move the letters of the legacy hash into this layout; returns how many were moved
        (letters already older than the TTL are dropped). Safe to run concurrently: a letter
        is moved only while it is still in the hash. A letter an older worker writes to the
        hash after this scan passed waits for the next process's migration."""
        moved = expired = dropped = 0
        entries = self._redis.hscan_iter(LEGACY_KEY, count=MIGRATION_CHUNK)
        while chunk := list(itertools.islice(entries, MIGRATION_CHUNK)):
            letters = [(text(job_id), *_failure(record), record) for job_id, record in chunk]
            stored, old, capped = self._run_store(letters, legacy=True)
            moved, expired, dropped = moved + stored, expired + old, dropped + capped
        if moved or expired:
            logger.warning(
                "moved %d dead letters to the expiring layout; %d older than the TTL (%ds) were "
                "dropped; the cap (%d) dropped %d",
                moved,
                expired,
                self.ttl,
                self.max_letters,
                dropped,
            )
        return moved

    def _migrate_once(self) -> None:
        """Migrate the legacy hash before this store's first command (a process keeps one
        store per Redis, so that is once per process: one HSCAN when there is nothing to move).

        Not locked: threads racing here all migrate, which is harmless (see migrate)."""
        if not self._migrated:
            self.migrate()
            self._migrated = True

    def _run_store(
        self,
        letters: list[tuple[str, float, str, str, str | bytes]],
        *,
        legacy: bool = False,
        dropping: tuple[str, ...] = (),
    ) -> tuple[int, int, int]:
        """Store (job id, failed at, error type, instance alias, record) letters, then trim."""
        records: list[Any] = []
        for job_id, failed_at, error_type, alias, record in letters:
            records += [job_id, repr(failed_at), record, error_type, alias[:100]]
        stored, expired, dropped = self._store(
            index=INDEX_KEY,
            trimmed=TRIMMED_KEY,
            types=TYPES_KEY,
            instances=INSTANCES_KEY,
            legacy_key=LEGACY_KEY if legacy else "",
            dropping=list(dropping),
            prefix=LETTER_PREFIX,
            ttl_s=self.ttl,
            max_letters=self.max_letters,
            type_prefix=TYPE_PREFIX,
            max_types=MAX_TYPES,
            instance_prefix=INSTANCE_PREFIX,
            max_instances=MAX_INSTANCES,
            letters=records,
        )
        return int(stored), int(expired), int(dropped)

    def _index_pages(
        self, page_size: int, after: tuple[float, str] | None = None
    ) -> Iterator[list[str]]:
        """Job ids by failure time, in pages, resuming after the last (time, id) seen rather
        than at a rank, so removals behind the cursor shift nothing. Redis orders equal times
        by id, as Python orders these tuples; a page of nothing but equal times already seen
        (more than a page of them) is fetched again, larger, until it gets past them."""
        low: float | str = "-inf" if after is None else after[0]
        last: tuple[float, str] | None = after
        wanted = page_size
        while True:
            raw: list[Any] = list(
                self._redis.zrange(
                    INDEX_KEY, low, "+inf", byscore=True, offset=0, num=wanted, withscores=True
                )
            )
            entries = [(float(score), text(job_id)) for job_id, score in raw]
            fresh = [entry for entry in entries if last is None or entry > last]
            if fresh:
                yield [job_id for _, job_id in fresh]
                last = fresh[-1]
                low = last[0]
            if len(entries) < wanted:
                return
            wanted = page_size if fresh else wanted * 2
