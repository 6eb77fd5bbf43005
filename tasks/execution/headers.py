"""The job's history as its message headers carry it from one execution to the next.

Celery's ``request.retries`` counts deferrals too, so what an execution must know of the
earlier ones travels in headers of our own: ``zapi-attempts`` (sends so far), ``zapi-slot``
(reserved slot, µs of Redis' clock), ``zapi-first-attempt`` (epoch seconds),
``zapi-put-backs`` (Redis errors in a row, for their backoff), ``zapi-order-lookups`` (a short
update's looks for its order in the order book) and ``zapi-order-looking-since`` (epoch seconds
of the first: ``ZAPI_ORDER_WAIT`` runs from then, not from a wait in its order's line before),
``zapi-unrecorded`` (a delivered job's reply
Redis would not take: its next execution records it, never sends again). Headers are input
like any other: a value a producer mangled counts as absent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ATTEMPTS_HEADER = "zapi-attempts"
SLOT_HEADER = "zapi-slot"
FIRST_ATTEMPT_HEADER = "zapi-first-attempt"
PUT_BACKS_HEADER = "zapi-put-backs"
LOOKUPS_HEADER = "zapi-order-lookups"
LOOKING_SINCE_HEADER = "zapi-order-looking-since"
#: A delivered job whose reply Redis did not take: its key, reply and sent body, so that its
#: next execution records them instead of sending again.
UNRECORDED_HEADER = "zapi-unrecorded"


@dataclass(frozen=True, slots=True)
class JobState:
    """What one execution knows of the job's history, read from the message headers."""

    headers: dict[str, Any]
    attempts: int
    slot_us: int | None
    first_attempt_at: float
    put_backs: int

    @classmethod
    def of(cls, headers: dict[str, Any] | None) -> JobState:
        """Read from the headers; a value a producer mangled counts as absent (headers are
        input like any other: a bad one must not fail the job outside its execution)."""
        headers = dict(headers or {})
        now = time.time()
        slot = _header_number(headers, SLOT_HEADER, int, None)
        first = _header_number(headers, FIRST_ATTEMPT_HEADER, float, now)
        return cls(
            headers=headers,
            attempts=max(0, _header_number(headers, ATTEMPTS_HEADER, int, 0) or 0),
            slot_us=slot,
            first_attempt_at=first if first is not None and 0 < first <= now + 60 else now,
            put_backs=max(0, min(_header_number(headers, PUT_BACKS_HEADER, int, 0) or 0, 64)),
        )

    def next_headers(
        self, *, attempts: int, slot_us: int | None = None, put_backs: int = 0
    ) -> dict[str, Any]:
        """The headers of the job's next execution (the slot only when it holds one)."""
        headers = {k: v for k, v in self.headers.items() if k not in (SLOT_HEADER,)}
        headers[ATTEMPTS_HEADER] = attempts
        headers[FIRST_ATTEMPT_HEADER] = self.first_attempt_at
        headers[PUT_BACKS_HEADER] = put_backs
        if slot_us is not None:
            headers[SLOT_HEADER] = slot_us
        return headers

    def lookups(self) -> int:
        """A short update's looks for its order so far."""
        return int(self.headers.get(LOOKUPS_HEADER, 0))

    def looking_since(self, now: float) -> float:
        """When the short update first looked for its order in the book: ``now`` if it never
        did; its first attempt if it looked without saying when (a job from a release before
        the header); ``now`` if the header is not a time this worker would give."""
        default = self.first_attempt_at if self.lookups() > 0 else now
        since = _header_number(self.headers, LOOKING_SINCE_HEADER, float, default)
        return since if 0 < since <= now else now

    def unrecorded(self) -> dict[str, Any] | None:
        """The reply an earlier execution delivered and Redis did not take, if the header has
        the shape this worker gives it (another is ignored: the job is then sent as if it had
        none)."""
        carried = self.headers.get(UNRECORDED_HEADER)
        if isinstance(carried, dict) and _carries_a_reply(carried):
            return carried
        return None


def _header_number(
    headers: dict[str, Any], name: str, cast: Callable[[Any], Any], default: Any
) -> Any:
    """``cast`` of a finite number header, else ``default``."""
    value = headers.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return default
    if abs(value) > 2**63:
        return default
    return cast(value)


def _carries_a_reply(carried: dict[str, Any]) -> bool:
    return (
        isinstance(carried.get("key"), str)
        and isinstance(carried.get("wire"), dict)
        and isinstance(carried.get("result"), dict)
        and all(isinstance(carried["result"].get(n), str) for n in ("zaapId", "messageId"))
    )
