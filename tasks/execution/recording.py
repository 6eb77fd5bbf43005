"""After a delivery: record Z-API's reply, and with it what must change in the same step.

In one round trip that must not be lost (tasks/state/turns.py ``record_and_deliver``): the
reply (idempotency: a repeat is answered from it), the order's new state (the next in line may
go), the order's snapshot from the sent body (unless the book has it), and the message's
delivery record, linked to this job for its callbacks. Until that is written the job is not
done: it is put back carrying its reply (UNRECORDED_HEADER), and its next execution records it
without sending again. Never a SUCCESS without its record (a repeat would be sent).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from tasks import tracing
from tasks.contract.ordering import ShopOrderKey
from tasks.contract.schemas import OrderUpdate
from tasks.contract.send_order import SendOrder
from tasks.contract.validation import validate_full
from tasks.execution.burial import bury_failed_delivery, letter, persist
from tasks.execution.completion import short_form
from tasks.execution.headers import UNRECORDED_HEADER
from tasks.execution.job import Job, logger
from tasks.execution.outcomes import Done, Outcome, PutBack
from tasks.execution.story import telling_of
from tasks.state.book import snapshot_of_update
from tasks.state.deliveries import Burial
from tasks.state.idempotency import reply_record


def settle_delivered(
    job: Job,
    key: str,
    owner: str,
    update: OrderUpdate | SendOrder,
    wire: dict[str, Any],
    sequence: int | None,
    result: dict[str, Any],
    has_snapshot: bool,
) -> Outcome:
    """Record a delivered job's reply: its result, or a put-back carrying the reply."""
    recorded = record(
        job, key, owner, update, sequence, result, wire=None if has_snapshot else wire
    )
    if recorded is None:
        carried = {
            "key": key,
            "owner": owner,  # the send's: its in-flight mark is not another's send
            "result": result,
            "wire": wire,
            "has_snapshot": has_snapshot,
        }
        return PutBack(
            redis.RedisError("the reply could not be recorded"),
            reason="Redis failed to record the delivered reply",
            carried={UNRECORDED_HEADER: carried},
        )
    burial, earlier = recorded
    if burial is not None:
        bury_failed_delivery(job, burial)
    if earlier is not None:
        # The reply as stored: another execution of this job (it took the job over while
        # this one was frozen or waited for Redis) recorded first, or sent meanwhile and
        # made ours ambiguous. Every execution's result is that one, ambiguity included.
        if earlier.get("zaapId") != result.get("zaapId"):
            logger.warning(
                "job %s: another execution recorded its reply first; its result stands",
                job.job_id,
            )
        return Done(earlier)
    return Done(result)


def record_again(job: Job, owner: str, sequence: int | None, carried: dict[str, Any]) -> Outcome:
    """An execution after a delivery whose reply Redis did not take: record it now; the
    update is not sent again."""
    update = validate_full(job.endpoint, carried["wire"])
    job.phone = update.phone
    job.sent, job.attempt = True, job.state.attempts
    logger.warning("job %s: recording its delivered reply again (not sent again)", job.job_id)
    return settle_delivered(
        job,
        str(carried["key"]),
        str(carried.get("owner") or owner),
        update,
        update.to_wire(),
        sequence,
        dict(carried["result"]),
        bool(carried.get("has_snapshot")),
    )


def record(
    job: Job,
    key: str,
    owner: str,
    update: OrderUpdate | SendOrder,
    sequence: int | None,
    result: dict[str, Any],
    *,
    wire: dict[str, Any] | None,
) -> tuple[Burial | None, dict[str, Any] | None] | None:
    """The reply, the order's state, its snapshot from the sent ``wire`` body (None: the book
    has it) or, for an order message, the link from its order's key, and the delivery record,
    in one round trip; None when Redis did not take it within ZAPI_PERSIST_PATIENCE. Returns
    the job's burial if Z-API's failure callback for the message came first, and the reply
    another execution of the job recorded first, if one did."""
    at = job.at()
    turns, deliveries = at.turns, at.deliveries
    message_id = result["messageId"]
    # The order the job names (its line's): a keyed order's state lives under its key.
    order = job.named_order
    feed = None
    if isinstance(update, SendOrder):
        # An order message: the order shows pending, pending; its snapshot comes with its
        # order webhook, found through the link recorded here.
        statuses, order_message, replay = ("pending", "pending"), message_id, update.to_wire()
    else:
        order = order or update.order_request_id
        statuses, order_message = (update.order_status, update.payment_status), None
        replay = short_form(job.endpoint, update)
        if wire is not None and not isinstance(order, ShopOrderKey):
            data = snapshot_of_update(wire, at.book.instance_id)
            feed = (at.book.message_key(update.message_id), json.dumps(data, ensure_ascii=False))
    delivered_args = turns.lines.delivered_args(job.job_id, *statuses, sequence)
    link = deliveries.link_args(
        zaap_id=result["zaapId"],
        letter=letter(job, "DeliveryFailedError", "", body=replay),
        reply_key=turns.store.keys(key)[0],
        line=order,
        trace=tracing.traceparent(),
    )
    answers: list[Any] = []
    persist(
        job,
        "record the reply and the order's state",
        lambda: answers.append(
            turns.record_and_deliver(
                order,
                key,
                owner,
                reply_record(result, job.job_id, time.time()),
                delivered_args,
                snapshot=feed,
                delivery=(deliveries.key(message_id), link),
                order_message=order_message,
                telling=telling_of(job, order),
            )
        ),
    )
    if not answers:
        return None
    job.steps.clear()  # written with the reply
    linked, earlier = answers[-1]
    return deliveries.burial(message_id, linked), earlier
