"""Reading what became of a delivered message, for producers.

The worker and the webhook receiver write one hash per message Z-API accepted,
``zapi-queue:delivery:{instance}:{messageId}`` (tasks/state/deliveries.py writes it and documents
its TTL); a producer only reads four of its fields, so the key and the reading live here, where
a producer without the worker installed has them.

The ``messageId`` in a key name is escaped (``%`` as ``%25``, ``:`` as ``%3A``): the last ``:``
of a key then always ends its instance, so no two (instance, id) pairs share a key. Z-API's ids
(hex) never hold either character: their keys are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DELIVERY_PREFIX = "zapi-queue:delivery:"


def key_part(identifier: str) -> str:
    """``identifier`` as one segment of a key name: no ``:`` in it, and one-to-one."""
    return identifier.replace("%", "%25").replace(":", "%3A")


def delivery_key(instance_id: str, message_id: str) -> str:
    return f"{DELIVERY_PREFIX}{instance_id}:{key_part(message_id)}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message's delivery state: accepted, sent, received, read, played, failed or
    withdrawn (taken out of Z-API's queue before it fired: ``withdrawn_by`` names the newer job
    that made it unnecessary, ``withdrawn_reason`` says why: stale, superseded)."""

    state: str
    error: str | None
    error_code: str | None
    updated_at: float | None
    withdrawn_by: str | None = None
    withdrawn_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "state": self.state,
            "error": self.error,
            "error_code": self.error_code,
            "updated_at": self.updated_at,
        }
        if self.withdrawn_by is not None:
            shown |= {"withdrawn_by": self.withdrawn_by, "withdrawn_reason": self.withdrawn_reason}
        return shown


def optional_text(value: Any) -> str | None:
    """A Redis reply as text, None (a missing field) kept."""
    return None if value is None else value.decode() if isinstance(value, bytes) else str(value)


def read_delivery(client: Any, instance_id: str, message_id: str) -> Delivery | None:
    """The message's delivery state, or None when nothing is recorded (or it expired)."""
    state, error, code, at, by, reason = client.hmget(
        delivery_key(instance_id, message_id),
        "state",
        "error",
        "error_code",
        "updated_at",
        "withdrawn_by",
        "withdrawn_reason",
    )
    if state is None:
        return None
    updated = optional_text(at)
    return Delivery(
        state=optional_text(state) or "",
        error=optional_text(error) or None,
        error_code=optional_text(code) or None,
        updated_at=float(updated) if updated else None,
        withdrawn_by=optional_text(by),
        withdrawn_reason=optional_text(reason),
    )
