"""Dead letters: every job that failed for good, kept with what is needed to understand and
replay it (task, body, idempotency key, error, attempts, timestamps).

Records live in Redis: a hash ``zapi-queue:dead`` (job id -> JSON record) and a sorted set
``zapi-queue:dead:index`` (job id by failure time), so listing is ordered and cheap. Records
are kept until replayed or purged: nothing is lost silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from tasks.store import KEY_PREFIX

RECORDS_KEY = f"{KEY_PREFIX}:dead"
INDEX_KEY = f"{KEY_PREFIX}:dead:index"


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str | bytes) -> DeadLetter:
        return cls(**json.loads(data))


class DeadLetterStore:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def add(self, letter: DeadLetter) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(RECORDS_KEY, letter.job_id, letter.to_json())
        pipe.zadd(INDEX_KEY, {letter.job_id: letter.failed_at})
        pipe.execute()

    def count(self) -> int:
        return int(self._redis.zcard(INDEX_KEY))

    def get(self, job_id: str) -> DeadLetter | None:
        data = self._redis.hget(RECORDS_KEY, job_id)
        return DeadLetter.from_json(data) if data is not None else None

    def __iter__(self) -> Iterator[DeadLetter]:
        """Every record, oldest failure first, read in pages."""
        start = 0
        while True:
            ids: list[Any] = list(self._redis.zrange(INDEX_KEY, start, start + 499))
            if not ids:
                return
            for data in self._redis.hmget(RECORDS_KEY, ids):
                if data is not None:
                    yield DeadLetter.from_json(data)
            start += len(ids)

    def remove(self, job_ids: Iterable[str]) -> int:
        ids = list(job_ids)
        if not ids:
            return 0
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(RECORDS_KEY, *ids)
        pipe.zrem(INDEX_KEY, *ids)
        removed, _ = pipe.execute()
        return int(removed)
