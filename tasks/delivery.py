"""One execution of an order update task: validate, claim, wait for a slot, send, settle.

Every execution leaves its job in exactly one place:

* **delivered**: SUCCESS; the result is Z-API's reply (recorded for idempotency), with
  ``ambiguousAttempts`` when an earlier send may have reached Z-API too;
* **already delivered**: the key has a recorded reply; it is returned, nothing sent;
* **a dead letter**: FAILURE, kept for replay: an invalid body, Z-API's refusal, a budget spent
  (``ZAPI_MAX_ATTEMPTS`` sends or ``ZAPI_GIVE_UP_AFTER`` seconds), or an unexpected error;
* **re-scheduled** (a Celery retry, RETRY in Flower): after a transient failure (one attempt
  used), or deferred without using an attempt: for a far rate slot, a 429, a key another worker
  is sending, or a Redis error before the send;
* **handed back to the broker** (``Reject(requeue=True)``) when even re-scheduling fails (Celery
  turns a failed publish inside ``Task.retry`` into a reject *without* requeue, which would drop
  the job), or when a dead letter cannot be written: the transport puts it back in the queue, now
  or at its next sweep (worker/transport.py).

No path acks a job that is in none of these. Per-job state travels in message headers, because
Celery's ``request.retries`` counts deferrals too: ``zapi-attempts`` (sends so far),
``zapi-slot`` (reserved slot, µs of Redis' clock), ``zapi-first-attempt`` (epoch seconds),
``zapi-put-backs`` (Redis errors in a row, for their backoff), ``zapi-order-lookups`` (a short
update's looks for its order in the order book), ``zapi-unrecorded`` (a delivered job's reply
Redis would not take: its next execution records it, never sends again).

A short update (``messageId`` or ``orderRequestId`` and a status) is completed from the order
book at the job's turn: the other status is what the order shows then. An order not in the book
yet is looked for again, without using an attempt, for ``ZAPI_ORDER_WAIT``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import redis
from celery import Task
from celery.exceptions import Reject, Retry
from celery.utils.log import get_task_logger

from config import Settings, get_settings
from config.instances import Instance, alias_of
from tasks import metrics
from tasks.attempt_log import log_attempt
from tasks.backoff import backoff_delay, capped_retry_after
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import (
    AttemptsExhaustedError,
    PermanentError,
    StaleUpdateError,
    TransientError,
    UnknownInstanceError,
    UnknownOrderError,
    ZapiQueueError,
    ZapiRateLimitedError,
    ZapiRejectedError,
    ZapiTransportError,
)
from tasks.contract.job_kwargs import Call
from tasks.contract.ordering import Delivered, order_request_id
from tasks.contract.redaction import redact
from tasks.contract.schemas import OrderUpdate, ShortUpdate
from tasks.contract.validation import validate_body, validate_update
from tasks.instance_guard import get_guard
from tasks.instances import instance_named
from tasks.order_line import OrderLine, Turned, Wait
from tasks.per_process import PerInstance, PerProcess
from tasks.request import note_repeat
from tasks.state.book import Snapshot, get_order_book, snapshot_of_update
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tasks.state.deliveries import Burial, DeliveryBook
from tasks.state.idempotency import (
    Claim,
    ClaimState,
    IdempotencyStore,
    derive_key,
    owner_id,
    reply_record,
)
from tasks.state.idempotency import with_ambiguity as result_with_ambiguity
from tasks.state.orders import get_order_lines
from tasks.state.pacing import Deferral, wait_for_slot
from tasks.state.ratelimit import RateLimiter, get_limiter
from tasks.state.repeats import Repeat, RepeatBook
from tasks.state.store import get_redis
from tasks.state.turns import Start, Turns
from tasks.zapi.client import get_client

logger = get_task_logger(__name__)

ATTEMPTS_HEADER = "zapi-attempts"
SLOT_HEADER = "zapi-slot"
FIRST_ATTEMPT_HEADER = "zapi-first-attempt"
PUT_BACKS_HEADER = "zapi-put-backs"
LOOKUPS_HEADER = "zapi-order-lookups"
#: A delivered job whose reply Redis did not take: its key, reply and sent body, so that its
#: next execution records them instead of sending again.
UNRECORDED_HEADER = "zapi-unrecorded"
#: Looking again for a short update's order: backoff base and cap, seconds.
LOOKUP_BACKOFF = (1.0, 30.0)

#: Margin of a claim beyond the wait or the request it covers: Redis round trips, a slow thread.
CLAIM_MARGIN = 5.0
#: Backoff of a job put back after a Redis error: base and cap, seconds.
PUT_BACK_BACKOFF = (1.0, 60.0)
#: Between tries to write what must not be lost (a reply, a dead letter; for
#: ZAPI_PERSIST_PATIENCE): the first wait and the longest, seconds.
PERSIST_FIRST_WAIT = 0.2
PERSIST_MAX_WAIT = 1.0


class RateLimitWait(ZapiQueueError):  # noqa: N818 - a wait, not an error
    """Stored while a job is re-scheduled for its rate slot, a 429 or a busy key (RETRY)."""


class OrderWait(ZapiQueueError):  # noqa: N818 - a wait, not an error
    """Stored while a job waits for an earlier update of its order (RETRY in Flower)."""


class UnknownOrderWait(ZapiQueueError):  # noqa: N818 - a wait, not an error
    """Stored while a short update waits for its order's webhook to reach the order book."""


class StateUnavailableWait(ZapiQueueError):  # noqa: N818 - a wait, not an error
    """Stored while a job is re-scheduled because Redis failed before the send (RETRY)."""


@dataclass(frozen=True, slots=True)
class JobState:
    """What one execution knows of the job's history, read from the message headers."""

    headers: dict[str, Any]
    attempts: int
    slot_us: int | None
    first_attempt_at: float
    put_backs: int

    @classmethod
    def of(cls, task: Task[Any, Any]) -> JobState:
        """Read from the headers; a value a producer mangled counts as absent (headers are
        input like any other: a bad one must not fail the job outside its execution)."""
        headers = dict(task.request.headers or {})
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
        headers = {k: v for k, v in self.headers.items() if k not in (SLOT_HEADER,)}
        headers[ATTEMPTS_HEADER] = attempts
        headers[FIRST_ATTEMPT_HEADER] = self.first_attempt_at
        headers[PUT_BACKS_HEADER] = put_backs
        if slot_us is not None:
            headers[SLOT_HEADER] = slot_us
        return headers


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
    """Whether a ``zapi-unrecorded`` header has the shape this worker gives it (another is
    ignored: the job is then sent as if it had none)."""
    return (
        isinstance(carried.get("key"), str)
        and isinstance(carried.get("wire"), dict)
        and isinstance(carried.get("result"), dict)
        and all(isinstance(carried["result"].get(n), str) for n in ("zaapId", "messageId"))
    )


def _idempotency_store(instance: Instance) -> IdempotencyStore:
    settings = get_settings()
    return IdempotencyStore(
        get_redis(),
        instance_id=instance.instance_id,
        ttl=settings.zapi_idempotency_ttl,
        wait_lease=settings.zapi_rate_max_wait + CLAIM_MARGIN,
        send_lease=get_client(instance).deadline + CLAIM_MARGIN,
    )


# Per Z-API instance: its keys carry the instance's id, so each has its own records.
_idempotency = PerInstance(_idempotency_store)
_dead_letters = PerProcess(lambda: DeadLetterStore.from_settings(get_redis(), get_settings()))
_turns = PerInstance(
    lambda instance: Turns(
        get_redis(), get_order_lines(instance), _idempotency.get(instance), get_limiter(instance)
    )
)
_deliveries = PerInstance(
    lambda instance: DeliveryBook(
        get_redis(), instance_id=instance.instance_id, ttl=get_settings().zapi_delivery_ttl
    )
)


def deliver(
    task: Task[Any, Any], endpoint: Endpoint, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Run one execution of ``task`` for ``endpoint`` with the call's raw ``args`` and
    ``kwargs`` (checked inside, so that a wrong call is buried like any invalid job)."""
    execution = Execution(task, endpoint, args, kwargs)
    try:
        return execution.run()
    except (Retry, Reject):
        raise
    except StaleUpdateError:
        raise  # behind its order: nothing to replay, so no dead letter (it left its line)
    except (PermanentError, AttemptsExhaustedError) as exc:
        execution.bury(exc)
        raise
    except redis.RedisError as exc:
        # The send path settles its own Redis errors: this one came before any send.
        execution.put_back(exc)
    except Exception as exc:
        # A bug must not ack the job into nowhere: keep it as a dead letter, then fail.
        execution.bury(exc)
        raise


class Execution:
    """One run of one job, from validation to the place where it ends."""

    def __init__(
        self,
        task: Task[Any, Any],
        endpoint: Endpoint,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.task = task
        self.endpoint = endpoint
        self._args, self._kwargs = args, kwargs
        # Until run() checks the call: the arguments as given, read as the transport read them
        # to put the job in its order's line (tasks/contract/ordering.arrival_of), so that a
        # wrong call leaves the very line it stands in, and its dead letter shows what came.
        self.body: Any = args[0] if args else kwargs.get("body")
        self.idempotency_key: Any = kwargs.get("idempotency_key")
        self.sequence: Any = kwargs.get("sequence")
        self.force = kwargs.get("force") is True
        self.instance_alias: Any = kwargs.get("instance")
        self.state = JobState.of(task)
        self.settings: Settings = get_settings()
        #: The Z-API instance the job sends through (its ``instance`` kwarg; None: unknown, and
        #: run() fails the job with UnknownInstanceError).
        self.instance: Instance | None = None
        with contextlib.suppress(UnknownInstanceError):
            self.instance = instance_named(alias_of(kwargs))
        #: The job's order's line (None: ordering off, or a short update's order not found yet).
        self.line = (
            OrderLine.of(
                order_request_id(self.body),
                self.job_id,
                self.state.headers,
                self.settings,
                self.instance,
            )
            if self.instance is not None
            else None
        )
        self.attempt = self.state.attempts + 1
        #: Sends of this key whose outcome is unknown (they may have reached Z-API).
        self.ambiguous = 0
        self._ambiguous_send = False  # this execution's send may have reached Z-API unanswered
        self.sent = False
        self._claim: tuple[IdempotencyStore, str, str] | None = None
        self._phone = "?"
        self._started = time.perf_counter()

    @property
    def job_id(self) -> str:
        return self.task.request.id or ""

    # -- the happy path --------------------------------------------------------------------

    @property
    def label(self) -> str:
        """The instance as logs and metrics name it (never a token)."""
        if self.instance is not None:
            return self.instance.label
        return str(self.instance_alias)

    def run(self) -> dict[str, Any]:
        call = Call.of(self.task.name, self._args, self._kwargs)  # InvalidBodyError
        self.body, self.idempotency_key = call.body, call.idempotency_key
        self.sequence, self.force, self.instance_alias = call.sequence, call.force, call.instance
        instance = self._known_instance()  # UnknownInstanceError: the job fails at once
        given = validate_update(self.endpoint, self.body)
        sequence = call.sequence
        store, owner = _idempotency.get(instance), owner_id(self.job_id)
        unrecorded = self.state.headers.get(UNRECORDED_HEADER)
        if isinstance(unrecorded, dict) and _carries_a_reply(unrecorded):
            return self._record_again(owner, sequence, unrecorded)
        if isinstance(given, ShortUpdate):
            snapshot = self._find_order(given)
            complete = self._completion(given, snapshot)
            phone = snapshot.phone
            key_body = {**given.to_wire(), "orderRequestId": snapshot.order_request_id}
            key_body.pop("messageId", None)  # either name of the order gives the same key
            if self.line is None:
                self.line = OrderLine.of(
                    snapshot.order_request_id,
                    self.job_id,
                    self.state.headers,
                    self.settings,
                    instance,
                )
        else:
            full = given
            complete, key_body, phone = (lambda _: full), full.to_wire(), full.phone
        if call.idempotency_key is not None:
            key = "key:" + call.idempotency_key
        else:
            key = derive_key(self.endpoint.value, key_body)

        guard = get_guard(instance)
        if not guard.try_enter():
            self._defer(Deferral(INSTANCE_BUSY_WAIT, None, guard.busy_reason()))
        try:
            # One round trip takes the order's turn, claims the key and, when the slot is now,
            # reserves it and marks the send in flight. A repeat returns at once without a
            # slot. A job that holds a slot from an earlier execution checks that one instead.
            self._claim = (store, key, owner)
            slot_for = phone if self.state.slot_us is None else None
            if self.line is not None:
                turned = self._take_turn(self.line, complete, sequence, key, owner, slot_for)
            else:
                turned = Turned(self._turns().start(key, owner, slot_for), None, False)
            done = self._claimed(turned.claim)
            if done is not None:
                return done
            update = turned.update or complete(Delivered())
            self._phone = update.phone
            sending = turned.start.sending
            if sending is None:
                self._wait_for_slot(store, key, owner, turned.start)
                # The claim may have lapsed during the wait: re-assert it for the deadline.
                sending = store.before_send(key, owner)
            else:
                metrics.SLOT_WAIT.labels(self.label).observe(0.0)
            done = self._claimed(sending)
            if done is not None:
                return done
            return self._send(store, key, owner, update, sequence, has_snapshot=turned.has_snapshot)
        finally:
            guard.leave()

    def _wait_for_slot(self, store: IdempotencyStore, key: str, owner: str, start: Start) -> None:
        """Sleep until the job's rate slot; re-schedule the job when it is far (or withheld)."""
        try:
            waited_from = time.perf_counter()
            wait_for_slot(
                self._limiter(),
                self._phone,
                self.state.slot_us,
                self.settings.zapi_rate_max_wait,
                start.reservation,
                start.answered,
            )
            metrics.SLOT_WAIT.labels(self.label).observe(time.perf_counter() - waited_from)
        except Deferral as deferral:
            store.release(key, owner)
            self._defer(deferral)

    def _find_order(self, short: ShortUpdate) -> Snapshot:  # noqa: RET503 - re-schedules
        """The short update's order from the book; while it may still come (its webhook on its
        way), look again later without using an attempt; then UnknownOrderError."""
        snapshot = get_order_book(self.instance).find(
            order_request_id=short.order_request_id, message_id=short.message_id
        )
        if snapshot is not None:
            return snapshot
        if short.order_request_id is not None:
            named = f"orderRequestId {short.order_request_id}"
        else:
            named = f"messageId {short.message_id}"
        waited = time.time() - self.state.first_attempt_at
        wait = self.settings.zapi_order_wait
        if waited >= wait:
            raise UnknownOrderError(
                f"order {named} is not in the order book after {waited:.0f}s (ZAPI_ORDER_WAIT "
                f"{wait:g}s): no order webhook (ReceivedCallback with reviewAndPay or "
                "reviewOrder) was received for it. Point Z-API's webhooks at `zapi-queue "
                "webhook` (README, 'Webhooks') and replay this job, or send the full body"
            )
        lookups = int(self.state.headers.get(LOOKUPS_HEADER, 0)) + 1
        countdown = backoff_delay(lookups, base=LOOKUP_BACKOFF[0], cap=LOOKUP_BACKOFF[1])
        self._reschedule(
            UnknownOrderWait(f"waiting for the order webhook of {named}"),
            max(0.05, min(countdown, wait - waited, self.settings.max_countdown)),
            attempts=self.state.attempts,
            extra_headers={LOOKUPS_HEADER: lookups},
            parks=False,
        )

    def _completion(
        self, short: ShortUpdate, snapshot: Snapshot
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
            return validate_body(self.endpoint, body)

        return complete

    def _take_turn(
        self,
        line: OrderLine,
        complete: Callable[[Delivered], OrderUpdate],
        sequence: int | None,
        key: str,
        owner: str,
        phone: str | None,
    ) -> Turned:
        """Go on only at the head of the order's line; else wait, holding no thread."""
        try:
            return line.take_turn(
                complete,
                sequence,
                force=self.force,
                turns=self._turns(),
                key=key,
                owner=owner,
                phone=phone,
            )
        except Wait as wait:
            self._reschedule(
                OrderWait(wait.reason),
                wait.countdown,
                attempts=self.state.attempts,
                extra_headers=wait.headers,
                parks=False,
            )

    def _claimed(self, claim: Claim) -> dict[str, Any] | None:
        """The stored reply if the key was delivered; defer if another execution holds it."""
        if claim.state is ClaimState.DELIVERED and claim.reply is not None:
            self._repeat(Repeat(self.job_id, claim.delivered_by, claim.delivered_at))
            if self.line is not None:
                self.line.leave_quietly()
            return claim.reply
        if claim.state is ClaimState.BUSY:
            self._defer(Deferral(1.0, None, "the same job is being sent by another worker"))
        self.ambiguous = claim.ambiguous
        return None

    def _repeat(self, repeat: Repeat) -> None:
        """Say that this job was not sent: in the attempt log, for ``zapi-queue status``, and
        for Flower (tasks/request.py). The result stays the stored reply."""
        note = repeat.describe()
        self._log("deduplicated", None, note)
        note_repeat(self.job_id, note)
        try:
            RepeatBook(get_redis(), ttl=self.settings.celery_result_expires).note(repeat)
        except redis.RedisError as exc:
            logger.warning("job %s: repeat not noted (%s)", self.job_id, type(exc).__name__)

    def _send(
        self,
        store: IdempotencyStore,
        key: str,
        owner: str,
        update: OrderUpdate,
        sequence: int | None,
        *,
        has_snapshot: bool,
    ) -> dict[str, Any]:
        """The one place a request leaves. Every outcome is settled before anything else."""
        self.sent = True
        self._started = time.perf_counter()
        wire = update.to_wire()
        try:
            reply = get_client(self.instance).send(self.endpoint, wire).to_result()
        except ZapiQueueError as exc:
            self._after_failed_send(store, key, owner, exc)
        get_guard(self._known_instance()).succeeded()
        self._pace()
        result = result_with_ambiguity(reply, self.ambiguous)
        self._log("delivered", 200, f"zaapId={reply['zaapId']}")
        return self._settle_delivered(key, owner, update, wire, sequence, result, has_snapshot)

    def _settle_delivered(
        self,
        key: str,
        owner: str,
        update: OrderUpdate,
        wire: dict[str, Any],
        sequence: int | None,
        result: dict[str, Any],
        has_snapshot: bool,
    ) -> dict[str, Any]:
        """Record a delivered job's reply; until that is written, the job is not done: it is
        re-scheduled carrying its reply (UNRECORDED_HEADER), and its next execution records it
        without sending again. Never a SUCCESS without its record (a repeat would be sent)."""
        recorded = self._record(
            key, owner, update, sequence, result, wire=None if has_snapshot else wire
        )
        if recorded is None:
            carried = {
                "key": key,
                "owner": owner,  # the send's: its in-flight mark is not another's send
                "result": result,
                "wire": wire,
                "has_snapshot": has_snapshot,
            }
            self.put_back(
                redis.RedisError("the reply could not be recorded"),
                reason="Redis failed to record the delivered reply",
                extra_headers={UNRECORDED_HEADER: carried},
            )
        burial, earlier = recorded
        if burial is not None:
            self._bury_failed_delivery(burial)
        if earlier is not None:
            # The reply as stored: another execution of this job (it took the job over while
            # this one was frozen or waited for Redis) recorded first, or sent meanwhile and
            # made ours ambiguous. Every execution's result is that one, ambiguity included.
            if earlier.get("zaapId") != result.get("zaapId"):
                logger.warning(
                    "job %s: another execution recorded its reply first; its result stands",
                    self.job_id,
                )
            return earlier
        return result

    def _record_again(
        self, owner: str, sequence: int | None, carried: dict[str, Any]
    ) -> dict[str, Any]:
        """An execution after a delivery whose reply Redis did not take: record it now; the
        update is not sent again."""
        update = validate_body(self.endpoint, carried["wire"])
        self._phone = update.phone
        self.sent, self.attempt = True, self.state.attempts
        logger.warning("job %s: recording its delivered reply again (not sent again)", self.job_id)
        return self._settle_delivered(
            str(carried["key"]),
            str(carried.get("owner") or owner),
            update,
            update.to_wire(),
            sequence,
            dict(carried["result"]),
            bool(carried.get("has_snapshot")),
        )

    def _record(
        self,
        key: str,
        owner: str,
        update: OrderUpdate,
        sequence: int | None,
        result: dict[str, Any],
        *,
        wire: dict[str, Any] | None,
    ) -> tuple[Burial | None, dict[str, Any] | None] | None:
        """None when Redis did not take it within ZAPI_PERSIST_PATIENCE. In one round trip that
        must not be lost: the reply (idempotency), the order's new
        state (the next in line may go), its snapshot from the sent ``wire`` body (None: the
        book has it), and the message's delivery record, linked to this job for its
        callbacks. Returns the job's burial if Z-API's failure callback for the message came
        first, and the reply another execution of the job recorded first, if one did."""
        turns, deliveries = self._turns(), self._deliveries()
        delivered_args = turns.lines.delivered_args(
            self.job_id, update.order_status, update.payment_status, sequence
        )
        feed = None
        if wire is not None:
            book = get_order_book(self.instance)
            data = snapshot_of_update(wire, book.instance_id)
            feed = (book.message_key(update.message_id), json.dumps(data, ensure_ascii=False))
        message_id = result["messageId"]
        link = deliveries.link_args(
            zaap_id=result["zaapId"],
            letter=self._letter("DeliveryFailedError", "", body=self._short_form(update)),
            reply_key=turns.store.keys(key)[0],
        )
        answers: list[Any] = []
        self._persist(
            "record the reply and the order's state",
            lambda: answers.append(
                turns.record_and_deliver(
                    update.order_request_id,
                    key,
                    owner,
                    reply_record(result, self.job_id, time.time()),
                    delivered_args,
                    snapshot=feed,
                    delivery=(deliveries.key(message_id), link),
                )
            ),
        )
        if not answers:
            return None
        linked, earlier = answers[-1]
        return deliveries.burial(message_id, linked), earlier

    def _bury_failed_delivery(self, burial: Burial) -> None:
        """Z-API reported this message's failure before we recorded its reply."""
        logger.warning(
            "job %s: Z-API reported its delivery failed; kept as a dead letter", self.job_id
        )
        self._persist(
            "keep the failed delivery as a dead letter",
            lambda: self._deliveries().bury(burial, _dead_letters.get()),
        )

    # -- after a send that got no reply ----------------------------------------------------

    def _after_failed_send(
        self, store: IdempotencyStore, key: str, owner: str, exc: ZapiQueueError
    ) -> NoReturn:
        maybe_delivered = isinstance(exc, ZapiTransportError) and exc.ambiguous
        self._ambiguous_send = maybe_delivered
        try:
            self.ambiguous = store.after_failed_send(key, owner, ambiguous=maybe_delivered)
        except redis.RedisError:
            logger.warning("job %s: could not settle its send in Redis", self.job_id, exc_info=True)
            self.ambiguous += int(maybe_delivered)
        self._pace()
        status = getattr(exc, "status_code", None)
        if isinstance(exc, ZapiRateLimitedError):
            self._after_429(exc)
        guard = get_guard(self._known_instance())
        if isinstance(exc, TransientError):
            if guard.failed(self._started):
                self._trip_breaker(exc)
            delay = self._next_delay(exc, status)
            self._log("retry", status, f"retrying in {delay:.2f}s: {exc.message}", logging.WARNING)
            self._reschedule(exc, delay, attempts=self.attempt)
        guard.succeeded()  # a refusal: Z-API is there and answering
        self._log("refused", status, exc.message, logging.WARNING)
        if self.ambiguous and isinstance(exc, ZapiRejectedError):
            raise ZapiRejectedError(
                f"{exc.message}; {self._ambiguity_note()}", status_code=exc.status_code
            ) from None
        raise exc

    def _after_429(self, exc: ZapiRateLimitedError) -> NoReturn:
        """Pause the whole instance (longer at each 429 in a row) and come back after the
        pause, without using an attempt: Z-API refused to look at the request at all."""
        retry_after = self._capped(exc.retry_after)
        pause = self._penalize(retry_after, rate_limited=True)
        self._check_time_budget(exc)
        self._log("deferred", 429, f"instance paused {pause:.2f}s: {exc.message}", logging.WARNING)
        self._defer(Deferral(pause, None, "Z-API is rate limiting (HTTP 429)"))

    def _next_delay(self, exc: TransientError, status: int | None) -> float:
        """The backoff before the next attempt, or AttemptsExhaustedError when a budget is spent."""
        retry_after = self._capped(exc.retry_after)
        if retry_after is not None:
            self._penalize(retry_after, rate_limited=False)
        if self.attempt >= self.settings.zapi_max_attempts:
            self._give_up(exc, status, "ZAPI_MAX_ATTEMPTS")
        left = self._check_time_budget(exc)
        delay = backoff_delay(
            self.attempt,
            base=self.settings.zapi_retry_backoff,
            cap=self.settings.zapi_retry_backoff_max,
            retry_after=retry_after,
        )
        # The last attempt comes when the budget ends, not a backoff after it.
        return min(delay, self.settings.max_countdown, left)

    def _check_time_budget(self, exc: ZapiQueueError) -> float:
        """Seconds left of ZAPI_GIVE_UP_AFTER; gives up when none are."""
        left = self.settings.zapi_give_up_after - (time.time() - self.state.first_attempt_at)
        if left <= 0:
            self._give_up(exc, getattr(exc, "status_code", None), "ZAPI_GIVE_UP_AFTER")
        return left

    def _give_up(self, exc: ZapiQueueError, status: int | None, budget: str) -> NoReturn:
        elapsed = time.time() - self.state.first_attempt_at
        message = (
            f"gave up on {self.endpoint.value} after {self.attempt} attempts in {elapsed:.0f}s "
            f"({budget}); last error: {exc.message}"
        )
        if self.ambiguous:
            message += f"; {self._ambiguity_note()}"
        self._log("gave-up", status, exc.message, logging.WARNING)
        raise AttemptsExhaustedError(message) from None

    def _trip_breaker(self, exc: ZapiQueueError) -> None:
        """The instance failed ZAPI_BREAKER_FAILURES times in a row here: pause its sends on
        every worker (growing at each trip), so its jobs wait without using attempts."""
        pause = self._penalize(None, rate_limited=True, reason="outage")
        logger.warning(
            "instance %s: %d failures in a row (last: %s); its sends pause %.1fs",
            self.label,
            self.settings.zapi_breaker_failures,
            exc.message,
            pause,
        )

    def _penalize(
        self, retry_after: float | None, *, rate_limited: bool, reason: str | None = None
    ) -> float:
        """Pause the instance on every worker; if Redis fails, this job still waits."""
        reason = reason or ("rate_limited" if rate_limited else "retry_after")
        metrics.INSTANCE_PAUSES.labels(self.label, reason).inc()
        try:
            return self._limiter().penalize(retry_after, rate_limited=rate_limited)
        except redis.RedisError as exc:
            logger.warning(
                "job %s: instance pause not recorded (%s)", self.job_id, type(exc).__name__
            )
            return retry_after if retry_after is not None else self.settings.zapi_retry_backoff

    def _capped(self, retry_after: float | None) -> float | None:
        """Z-API's Retry-After, at most ZAPI_RETRY_BACKOFF_MAX; a longer wish is logged."""
        if retry_after is None:
            return None
        cap = self.settings.zapi_retry_backoff_max
        if retry_after > cap:
            logger.warning(
                "job %s: Z-API asked to retry after %.0fs; waiting ZAPI_RETRY_BACKOFF_MAX (%gs)",
                self.job_id,
                retry_after,
                cap,
            )
        return capped_retry_after(retry_after, cap)

    def _ambiguity_note(self) -> str:
        return (
            f"{self.ambiguous} earlier send(s) may have reached Z-API (ambiguous: a timeout or "
            "a lost connection after the request was written)"
        )

    # -- re-scheduling -----------------------------------------------------------------------

    def _defer(self, deferral: Deferral) -> NoReturn:
        """Re-schedule without using an attempt (a far slot, a 429, a busy key)."""
        self._reschedule(
            RateLimitWait(str(deferral)),
            min(deferral.countdown, self.settings.max_countdown),
            attempts=self.state.attempts,
            slot_us=deferral.slot_us,
        )

    def put_back(
        self,
        exc: redis.RedisError,
        *,
        reason: str = "Redis failed before the send",
        extra_headers: dict[str, Any] | None = None,
    ) -> NoReturn:
        """Redis failed before the send (or, with ``extra_headers`` carrying the reply, after
        it): re-schedule the job, no attempt used, backing off."""
        if extra_headers is None:
            self._release_quietly()
        put_backs = self.state.put_backs + 1
        countdown = backoff_delay(put_backs, base=PUT_BACK_BACKOFF[0], cap=PUT_BACK_BACKOFF[1])
        reason = f"{reason} ({type(exc).__name__}: {self._redacted(exc)})"
        logger.warning(
            "job %s: %s; re-scheduled in %.1fs, no attempt used", self.job_id, reason, countdown
        )
        self._reschedule(
            StateUnavailableWait(reason),
            countdown,
            attempts=self.attempt if extra_headers else self.state.attempts,
            put_backs=put_backs,
            extra_headers=extra_headers,
        )

    def _reschedule(
        self,
        exc: Exception,
        countdown: float,
        *,
        attempts: int,
        slot_us: int | None = None,
        put_backs: int = 0,
        extra_headers: dict[str, Any] | None = None,
        parks: bool = True,
    ) -> NoReturn:
        """A Celery retry; if Celery cannot publish it, hand the job back to the broker.

        ``parks``: the job keeps its turn in its order's line meanwhile (a retry, a deferral),
        and its waiters learn when it comes back."""
        deferred = DEFERRAL_REASONS.get(type(exc))
        if deferred is not None:
            metrics.DEFERRALS.labels(self.label, deferred).inc()
        headers = self.state.next_headers(attempts=attempts, slot_us=slot_us, put_backs=put_backs)
        headers.update(extra_headers or {})
        if parks and self.line is not None:
            self.line.park_quietly(countdown)
        try:
            raise self.task.retry(exc=exc, countdown=countdown, headers=headers)
        except Reject as rejected:
            # Task.retry turns a failed publish into Reject(requeue=False): the job would be gone.
            reason = rejected.args[0] if rejected.args else None
            logger.warning(
                "job %s: could not re-schedule it (%s); handed back to the broker",
                self.job_id,
                reason,
            )
            raise Reject(reason, requeue=True) from None

    def _release_quietly(self) -> None:
        if self._claim is None:
            return
        store, key, owner = self._claim
        with contextlib.suppress(redis.RedisError):  # else the claim expires after its lease
            store.release(key, owner)

    # -- the end of a job that failed for good ------------------------------------------------

    def bury(self, exc: Exception) -> None:
        """Keep a job that failed for good as a dead letter; if Redis cannot take it, hand the
        job back to the broker instead of letting Celery ack it into nowhere."""
        message = exc.message if isinstance(exc, ZapiQueueError) else self._redacted(exc)
        letter = self._letter(type(exc).__name__, message)
        if not isinstance(exc, ZapiQueueError):
            logger.error(
                "job %s failed unexpectedly; kept as a dead letter", self.job_id, exc_info=True
            )
        if self.line is not None:
            self.line.leave_quietly()
        if self._persist("keep the job as a dead letter", lambda: _dead_letters.get().add(letter)):
            metrics.DEAD_LETTERED.labels(self.endpoint.value, self.label, letter.error_type).inc()
        else:
            raise Reject(
                f"could not keep job {self.job_id} as a dead letter", requeue=True
            ) from None

    def _letter(self, error_type: str, error: str, *, body: Any = None) -> DeadLetter:
        """This job as a dead letter: what a replay needs (its body unless ``body`` is given),
        and why it failed."""
        return DeadLetter(
            job_id=self.job_id,
            task=self.task.name,
            body=self.body if body is None else body,
            error_type=error_type,
            error=error,
            attempts=self.state.attempts + (1 if self.sent else 0),
            first_attempt_at=self.state.first_attempt_at,
            failed_at=time.time(),
            kwargs=self._replay_kwargs(),
            ambiguous_attempts=self.ambiguous,
        )

    def _short_form(self, update: OrderUpdate) -> dict[str, Any]:
        """The update as a short (two-field) one: what a delivery record keeps for a replay,
        completed from the order book when replayed (a tenth of the full body's size)."""
        short: dict[str, Any] = {"orderRequestId": update.order_request_id}
        if self.endpoint is Endpoint.ORDER_STATUS_UPDATE:
            short["orderStatus"] = update.order_status
        else:
            short["paymentStatus"] = update.payment_status
        if update.message is not None:
            short["message"] = update.message
        return short

    def _replay_kwargs(self) -> dict[str, Any]:
        """What a replay of this job passes again: its key, its place in its order, force."""
        given = {
            "idempotency_key": self.idempotency_key,
            "sequence": self.sequence,
            "force": True if self.force else None,
            "instance": self.instance_alias,
        }
        return {name: value for name, value in given.items() if value is not None}

    # -- helpers ---------------------------------------------------------------------------

    def _known_instance(self) -> Instance:
        if self.instance is None:
            return instance_named(self.instance_alias)  # raises UnknownInstanceError
        return self.instance

    def _limiter(self) -> RateLimiter:
        return get_limiter(self._known_instance())

    def _turns(self) -> Turns:
        return _turns.get(self._known_instance())

    def _deliveries(self) -> DeliveryBook:
        return _deliveries.get(self._known_instance())

    def _persist(self, what: str, write: Callable[[], object]) -> bool:
        """Run ``write``, a Redis write that must not be lost (a reply, a dead letter), retrying
        with a growing wait for up to ZAPI_PERSIST_PATIENCE: a Redis out of memory, read-only
        after a failover, or restarting, is usually back within it. The job stays unacked
        meanwhile."""
        deadline = time.monotonic() + self.settings.zapi_persist_patience
        wait = PERSIST_FIRST_WAIT
        while True:
            try:
                write()
            except redis.RedisError as exc:
                if time.monotonic() + wait > deadline:
                    logger.error(  # noqa: TRY400 - one line; the cause is known
                        "job %s: could not %s (%s: %s)",
                        self.job_id,
                        what,
                        type(exc).__name__,
                        self._redacted(exc),
                    )
                    return False
                if wait == PERSIST_FIRST_WAIT:
                    logger.warning("job %s: could not %s yet; retrying", self.job_id, what)
                time.sleep(wait)
                wait = min(wait * 2, PERSIST_MAX_WAIT)
            else:
                return True

    def _pace(self) -> None:
        """Count the recipient's interval from this send. Never hides the send's outcome."""
        try:
            self._limiter().pace(self._phone)
        except redis.RedisError as exc:
            logger.warning(
                "job %s: recipient pacing not recorded (%s)", self.job_id, type(exc).__name__
            )

    def _redacted(self, exc: BaseException) -> str:
        return redact(str(exc), self.settings.secret_values())

    def _log(
        self, outcome: str, status: int | None, detail: str = "", level: int = logging.INFO
    ) -> None:
        duration = time.perf_counter() - self._started
        metrics.count_attempt(
            endpoint=self.endpoint.value,
            instance=self.label,
            outcome=outcome,
            duration=duration,
            ambiguous_send=self._ambiguous_send,
        )
        log_attempt(
            job_id=self.job_id,
            endpoint=self.endpoint.value,
            instance=self.label,
            phone=self._phone,
            attempt=self.attempt,
            status=status,
            duration=duration,
            outcome=outcome,
            detail=detail,
            level=level,
            ambiguous=self.ambiguous,
        )


#: Seconds a job waits when its instance has all its in-flight permits taken in this worker.
INSTANCE_BUSY_WAIT = 0.5

#: Re-schedulings that use no attempt, by the reason the metrics give them.
DEFERRAL_REASONS: dict[type[Exception], str] = {
    RateLimitWait: "rate_limit",
    OrderWait: "order_turn",
    UnknownOrderWait: "order_not_in_book_yet",
    StateUnavailableWait: "redis_unavailable",
}
