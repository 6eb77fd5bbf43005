"""How long to wait before the next attempt: exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads the retries of
many jobs that failed together, so a Z-API hiccup is not followed by a synchronised burst.
A ``Retry-After`` from Z-API is a floor: we never come back earlier than it asked.
"""

from __future__ import annotations

import email.utils
import re
import time

from tenacity import RetryCallState, Retrying, wait_random_exponential


def backoff_delay(
    attempt: int, *, base: float, cap: float, retry_after: float | None = None
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 for the first send).

    The jittered wait is drawn from ``[0, min(cap, base * 2 ** (attempt - 1))]`` by tenacity's
    ``wait_random_exponential``; ``retry_after`` (capped at ``cap`` too) raises it to at least
    what Z-API asked for.
    """
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = max(1, attempt)
    jittered = float(wait_random_exponential(multiplier=base, max=cap)(state))
    if retry_after is None:
        return jittered
    return max(jittered, min(retry_after, cap))


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
