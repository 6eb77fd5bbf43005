"""The Redis connection our own state uses: rate schedule, idempotency records, dead letters.

One pooled, thread-safe client per process. It retries connection errors with backoff for about
half a minute, so a Redis restart is ridden through instead of failing the jobs in flight.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from config import get_settings
from tasks.per_process import PerProcess

KEY_PREFIX = "zapi-queue"


def text(value: object) -> str:
    """A Redis reply as text: redis-py answers bytes unless told to decode."""
    return value.decode() if isinstance(value, bytes) else str(value)


def connect(url: str, *, retries: int = 20) -> redis.Redis:
    """A client for ``url``; with the default retries it survives a Redis restart of ~30 s."""
    return redis.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


_redis = PerProcess(lambda: connect(get_settings().state_redis_url), redis.Redis.close)


def get_redis() -> redis.Redis:
    """The process-wide client for zapi-queue's own keys."""
    return _redis.get()


def close_redis() -> None:
    _redis.close()
