"""Where one execution leaves its job, as values: each step returns one, and only
:func:`tasks.execution.route.finish` turns it into Celery's terms (a result, a retry, a
raised error).

* :class:`Done`: SUCCESS with this result (a delivery, or an earlier one's stored reply);
* :class:`Deferred`: re-scheduled without using an attempt (a rate slot, a 429, a busy key,
  its order's turn, its order's webhook);
* :class:`Retried`: re-scheduled after a transient failure, one attempt used;
* :class:`PutBack`: Redis failed before the send (or would not take a delivered reply):
  re-scheduled with a growing backoff, no attempt used;
* :class:`Buried`: FAILURE, kept as a dead letter for replay;
* :class:`Failed`: FAILURE with nothing to replay (an update behind its order).

The waits are exceptions only because Celery stores a retry's reason as one (RETRY in
Flower); their names are what tasks/request.py and the stored results read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from tasks.contract.errors import TransientError, ZapiQueueError

#: Where the waits were defined before tasks/execution/ existed: Celery stores a retry's
#: exception by module and name, so a stored RETRY reads the same before and after.
_STORED_MODULE = "tasks.delivery"


class RateLimitWait(ZapiQueueError):  # noqa: N818 - a wait, not an error
    """Stored while a job is re-scheduled for its rate slot, a 429 or a busy key (RETRY)."""


class OrderWait(ZapiQueueError):  # noqa: N818 - a wait, not an error
    """Stored while a job waits for an earlier update of its order (RETRY in Flower)."""


class UnknownOrderWait(ZapiQueueError):  # noqa: N818 - a wait, not an error
    """Stored while a short update waits for its order's webhook to reach the order book."""


class StateUnavailableWait(ZapiQueueError):  # noqa: N818 - a wait, not an error
    """Stored while a job is re-scheduled because Redis failed before the send (RETRY)."""


for _wait in (RateLimitWait, OrderWait, UnknownOrderWait, StateUnavailableWait):
    _wait.__module__ = _STORED_MODULE

#: Re-schedulings that use no attempt, by the reason the metrics give them.
DEFERRAL_REASONS: dict[type[Exception], str] = {
    RateLimitWait: "rate_limit",
    OrderWait: "order_turn",
    UnknownOrderWait: "order_not_in_book_yet",
    StateUnavailableWait: "redis_unavailable",
}


@dataclass(frozen=True, slots=True)
class Done:
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Deferred:
    """Come back in ``countdown`` seconds, no attempt used. ``slot_us``: the rate slot the job
    keeps; ``headers``: added to the next execution's; ``parks``: the job keeps its turn in
    its order's line meanwhile, and its waiters learn when it comes back."""

    wait: ZapiQueueError
    countdown: float
    slot_us: int | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    parks: bool = True


@dataclass(frozen=True, slots=True)
class Retried:
    """Try again in ``countdown`` seconds: ``error`` used an attempt."""

    error: TransientError
    countdown: float


@dataclass(frozen=True, slots=True)
class PutBack:
    """Redis failed before the send: re-schedule, no attempt used, backing off. With
    ``carried`` (the delivered reply Redis would not take, UNRECORDED_HEADER), after it: the
    send's attempt counts, and the claim stays."""

    error: redis.RedisError
    reason: str = "Redis failed before the send"
    carried: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Buried:
    """FAILURE with ``error``, the job kept as a dead letter."""

    error: Exception


@dataclass(frozen=True, slots=True)
class Failed:
    """FAILURE with ``error``, nothing to replay (no dead letter)."""

    error: Exception


Outcome = Done | Deferred | Retried | PutBack | Buried | Failed
