"""Checks of the Redis servers zapi-queue relies on, run at worker start-up and by ``health``.

The eviction policy: under an evicting ``maxmemory-policy`` (``allkeys-lru``, ``volatile-ttl``,
...) a Redis that reaches ``maxmemory`` deletes keys to make room, without an error to anyone:
queued jobs (the broker's lists), idempotency records (a job is then sent twice), rate
schedules, dead letters. Every key zapi-queue writes is bounded (a TTL or a cap), so
``noeviction`` is safe: a full Redis refuses writes loudly instead.

The policy is read from ``INFO memory`` because ``CONFIG GET`` is often disabled on managed
Redis; a server that hides it too is not reported as a problem (it is logged at debug level).
"""

from __future__ import annotations

import logging

import redis

from config import Settings
from tasks.contract.redaction import redact
from tasks.state.store import connect

logger = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"


def maxmemory_policy(client: redis.Redis) -> str | None:
    """The server's ``maxmemory_policy``, or None when it does not say (INFO refused, or no
    such field). Connection errors propagate: an unreachable server is another problem."""
    try:
        info = client.info("memory")
    except redis.ResponseError as exc:  # INFO renamed away or denied by an ACL
        logger.debug("maxmemory-policy unknown: INFO memory refused (%s)", exc)
        return None
    policy = info.get("maxmemory_policy")
    if policy is None:
        logger.debug("maxmemory-policy unknown: INFO memory does not show it")
        return None
    return str(policy)


def policy_problem(policy: str | None, server: str) -> str | None:
    """One line saying why ``policy`` of ``server`` (e.g. "broker Redis") endangers jobs, or
    None when it is safe or unknown."""
    if policy is None or policy == SAFE_POLICY:
        return None
    return (
        f"{server} has maxmemory-policy {policy}: when full it silently evicts keys "
        f"(queued jobs, idempotency records); set maxmemory-policy {SAFE_POLICY}"
    )


def eviction_problem(client: redis.Redis, server: str) -> str | None:
    """:func:`policy_problem` of the server behind ``client``."""
    return policy_problem(maxmemory_policy(client), server)


def redis_roles(settings: Settings) -> dict[str, str]:
    """The Redis URLs to check by role: the broker, and the state Redis if it is another URL."""
    broker = settings.celery_broker_url.get_secret_value()
    roles = {"broker": broker}
    if settings.state_redis_url != broker:
        roles["state"] = settings.state_redis_url
    return roles


def warn_if_evicting(settings: Settings) -> None:
    """Log a WARNING per Redis whose policy evicts (URLs shown without their password).

    Never raises: a worker must start even when a check cannot run (Redis still starting)."""
    for role, url in redis_roles(settings).items():
        client = connect(url, retries=1)
        try:
            problem = eviction_problem(client, f"{role} Redis {redact(url)}")
        except redis.RedisError as exc:
            logger.warning(
                "could not read the maxmemory-policy of the %s Redis (%s): %s",
                role,
                redact(url),
                type(exc).__name__,
            )
            continue
        finally:
            client.close()
        if problem:
            logger.warning(problem)
