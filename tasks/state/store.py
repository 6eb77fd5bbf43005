"""The Redis connection our own state uses: rate schedule, idempotency records, dead letters.

One pooled, thread-safe client per process. It retries connection errors with backoff
(tasks/backoff.py) for about half a minute, so a Redis restart is ridden through instead of
failing the jobs in flight; on a ``sentinel://`` URL each reconnection asks the Sentinels for
the current master, so the same retries ride through a failover.
"""

from __future__ import annotations

import redis
from redis.retry import Retry

from config import Settings, get_settings
from config.redis_url import is_sentinel
from tasks.backoff import RedisBackoff
from tasks.contract.redis_url import SentinelOptions, redis_client
from tasks.per_process import PerProcess
from tasks.state.keys import PREFIX
from tasks.state.scripts import LUA_NOW

#: The prefix of zapi-queue's own keys (tasks/state/keys.py registers every key).
KEY_PREFIX = PREFIX
#: Reconnection backoff: base and cap, seconds. Full jitter halves the mean wait of a plain
#: doubling, so the cap is twice the 2 s it had then: the mean wait stays 2 s, and 20 retries
#: still ride through ~30 s.
RECONNECT_BACKOFF = (0.05, 4.0)

__all__ = [
    "KEY_PREFIX",
    "LUA_NOW",
    "RECONNECT_BACKOFF",
    "close_redis",
    "connect",
    "get_redis",
    "sentinel_of",
    "text",
]


def text(value: object) -> str:
    """A Redis reply as text: redis-py answers bytes unless told to decode."""
    return value.decode() if isinstance(value, bytes) else str(value)


def sentinel_of(settings: Settings) -> SentinelOptions | None:
    """What the settings' ``sentinel://`` URLs need besides themselves (None: no master set)."""
    password = settings.redis_sentinel_password
    return SentinelOptions.given(
        settings.redis_sentinel_master, password.get_secret_value() if password else None
    )


def connect(url: str, *, retries: int = 20, sentinel: SentinelOptions | None = None) -> redis.Redis:
    """A client for ``url``; with the default retries it survives a Redis restart (or a
    Sentinel failover) of ~30 s. A ``sentinel://`` URL's master name and Sentinel password
    come from ``sentinel``, else from the settings (REDIS_SENTINEL_MASTER...)."""
    if sentinel is None and is_sentinel(url):
        sentinel = sentinel_of(get_settings())
    client: redis.Redis = redis_client(
        url,
        sentinel,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=Retry(
            RedisBackoff(base=RECONNECT_BACKOFF[0], cap=RECONNECT_BACKOFF[1]), retries=retries
        ),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    return client


_redis = PerProcess(lambda: connect(get_settings().state_redis_url), redis.Redis.close)


def get_redis() -> redis.Redis:
    """The process-wide client for zapi-queue's own keys."""
    return _redis.get()


def close_redis() -> None:
    _redis.close()
