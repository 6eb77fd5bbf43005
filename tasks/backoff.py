"""How long to wait before trying again: exponential backoff with full jitter, in one function.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads the retries of
many callers that failed together, so a Z-API hiccup or a Redis restart is not followed by a
synchronised burst. :func:`backoff` is the one formula: the task retries, a short update's
look for its order, a job put back after a Redis error, the writes that must not be lost, the
state store's reconnections (:class:`RedisBackoff`) and the transport's fetch loop all use it.
A ``Retry-After`` from Z-API is a floor on top of it (:func:`backoff_delay`).

A leaf module: it imports nothing of the app (worker/transport.py, which kombu loads by name,
imports it), only the standard library and redis-py's backoff interface.
"""

from __future__ import annotations

import email.utils
import random
import re
import time

from redis.backoff import AbstractBackoff

#: Doubling stops here: the ceiling has met any sane cap long before (2**1000 is still a float).
_MAX_DOUBLINGS = 1000


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait after failure number ``attempt`` (1 for the first): a uniform draw from
    ``[0, min(cap, base * 2 ** (attempt - 1))]``. A negative base or cap counts as 0."""
    doublings = min(max(attempt, 1) - 1, _MAX_DOUBLINGS)
    ceiling = min(max(cap, 0.0), max(base, 0.0) * 2.0**doublings)
    return random.uniform(0.0, ceiling)  # noqa: S311 - a jitter, not a secret


def backoff_delay(
    attempt: int, *, base: float, cap: float, retry_after: float | None = None
) -> float:
    """The wait before a task's next attempt after failed attempt number ``attempt``:
    :func:`backoff`, raised to at least ``retry_after`` (capped at ``cap`` too): we never come
    back earlier than Z-API asked."""
    jittered = backoff(attempt, base=base, cap=cap)
    if retry_after is None:
        return jittered
    return max(jittered, min(retry_after, cap))


class RedisBackoff(AbstractBackoff):
    """redis-py's retry backoff (``redis.retry.Retry``) as :func:`backoff`: its ``failures``
    count from 1, so the ceilings are ``base * 2 ** failures`` as redis-py's
    ``ExponentialBackoff`` waits them, drawn with full jitter."""

    def __init__(self, *, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap

    def compute(self, failures: int) -> float:
        return backoff(failures + 1, base=self.base, cap=self.cap)


#: delta-seconds: digits (RFC 9110), with an optional fraction some servers send. No sign, no
#: exponent, no "inf": a value such as ``1e15`` is malformed, not a very long wait.
_DELTA_SECONDS = re.compile(r"\d{1,12}(?:\.\d{1,6})?")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), or None if malformed.

    The value is parsed strictly and returned as Z-API sent it: callers cap it (see
    :func:`capped_retry_after`), because an absurd wish must be logged, not obeyed.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def capped_retry_after(retry_after: float, cap: float) -> float:
    """Z-API's wish, at most ``cap`` (ZAPI_RETRY_BACKOFF_MAX): a ``Retry-After: 86400`` (or a
    date in 2099) must not stop an instance for a day, or for ever."""
    return min(retry_after, cap)
