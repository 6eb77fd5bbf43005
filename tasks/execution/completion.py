"""Short updates (``messageId`` or ``orderRequestId`` and a status), completed from the order
book at the job's turn: the other status is what the order shows then. An order not in the book
yet is looked for again, without using an attempt, for ``ZAPI_ORDER_WAIT``; then the job is
buried with UnknownOrderError. That clock starts once no job of its order is ahead of it: an
update by the shop's key waits first for its order message, however long its sends take. The
reverse, :func:`short_form`, is what a delivery record keeps
of a full update for a replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tasks.backoff import backoff
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import UnknownOrderError
from tasks.contract.ordering import Delivered
from tasks.contract.schemas import OrderUpdate, ShortUpdate
from tasks.contract.validation import validate_body
from tasks.execution.headers import LOOKING_SINCE_HEADER, LOOKUPS_HEADER
from tasks.execution.job import Job
from tasks.execution.outcomes import Buried, Deferred, OrderWait, UnknownOrderWait
from tasks.state.book import Snapshot

#: Looking again for a short update's order: backoff base and cap, seconds.
LOOKUP_BACKOFF = (1.0, 30.0)


def find_order(job: Job, short: ShortUpdate) -> Snapshot | Deferred | Buried:
    """The short update's order from the book; while it may still come (its webhook on its
    way), a look again later without using an attempt; then the burial."""
    snapshot = job.at().book.find(
        order_request_id=short.order_request_id,
        message_id=short.message_id,
        order_key=short.order_key,
    )
    if snapshot is not None:
        return snapshot
    if job.line is not None:  # the order message (or an earlier update) ahead brings it
        ahead = job.line.behind(job.sequence)
        if ahead is not None:
            return Deferred(
                OrderWait(ahead.reason), ahead.countdown, headers=ahead.headers, parks=False
            )
    if short.order_request_id is not None:
        named = f"orderRequestId {short.order_request_id}"
    elif short.message_id is not None:
        named = f"messageId {short.message_id}"
    else:
        named = f"orderKey {short.order_key}"
    now = time.time()
    since = job.state.looking_since(now)
    waited = now - since
    wait = job.settings.zapi_order_wait
    if waited >= wait:
        return Buried(
            UnknownOrderError(
                f"order {named} is not in the order book after {waited:.0f}s (ZAPI_ORDER_WAIT "
                f"{wait:g}s): no order webhook (ReceivedCallback with reviewAndPay or "
                "reviewOrder) was received for it. Point Z-API's webhooks at `zapi-queue "
                "webhook` (README, 'Webhooks') and replay this job, or send the full body"
            )
        )
    lookups = job.state.lookups() + 1
    countdown = backoff(lookups, base=LOOKUP_BACKOFF[0], cap=LOOKUP_BACKOFF[1])
    return Deferred(
        UnknownOrderWait(f"waiting for the order webhook of {named}"),
        max(0.05, min(countdown, wait - waited, job.settings.max_countdown)),
        headers={LOOKUPS_HEADER: lookups, LOOKING_SINCE_HEADER: since},
        parks=False,
    )


def completion(
    endpoint: Endpoint, short: ShortUpdate, snapshot: Snapshot
) -> Callable[[Delivered], OrderUpdate]:
    """Builds the full body at the job's turn: the short update's status, and the other
    one as the order shows it then (the last delivered update's, else the book's)."""

    def complete(delivered: Delivered) -> OrderUpdate:
        data = short.to_wire()
        order_status = data.get("orderStatus") or delivered.order_status
        payment_status = data.get("paymentStatus") or delivered.payment_status
        body = snapshot.full_body(
            order_status=order_status or snapshot.order_status,
            payment_status=payment_status or snapshot.payment_status,
            message=short.message,
        )
        return validate_body(endpoint, body)

    return complete


def key_body(short: ShortUpdate, snapshot: Snapshot) -> dict[str, Any]:
    """What the short update's idempotency key is derived from: either name of the order
    (or the shop's key) gives the same key."""
    body = {**short.to_wire(), "orderRequestId": snapshot.order_request_id}
    body.pop("messageId", None)
    body.pop("orderKey", None)
    return body


def short_form(endpoint: Endpoint, update: OrderUpdate) -> dict[str, Any]:
    """The update as a short (two-field) one: what a delivery record keeps for a replay,
    completed from the order book when replayed (a tenth of the full body's size)."""
    field = endpoint.spec.short_field
    if field is None:
        raise TypeError(f"{endpoint} has no short form")  # only updates are completed
    short: dict[str, Any] = {"orderRequestId": update.order_request_id}
    short[field] = update.to_wire()[field]
    if update.message is not None:
        short["message"] = update.message
    return short
