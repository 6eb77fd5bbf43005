"""One execution of an order update task, in order: check the call, complete a short update,
take its order's turn with its claim and rate slot, wait for the slot, send, settle.

Each step returns the job's :mod:`outcome <tasks.execution.outcomes>` when it ends there (a
wait, a repeat's stored reply, a burial); :meth:`Execution.outcome` also turns what the
contract raises (an invalid body, an unknown instance or order, an update behind its order, a
Redis error before the send, a bug) into one, and :func:`tasks.execution.route.finish` acts
on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from tasks import metrics, tracing
from tasks.contract.endpoints import Endpoint
from tasks.contract.errors import StaleUpdateError, SupersededError, ZapiQueueError
from tasks.contract.job_kwargs import Call
from tasks.contract.ordering import Delivered, superseding_states
from tasks.contract.schemas import OrderUpdate, ShortUpdate
from tasks.contract.send_order import SendOrder
from tasks.contract.validation import validate_update
from tasks.execution import completion, policy
from tasks.execution.deps import Deps
from tasks.execution.job import Job, JobTask, logger
from tasks.execution.outcomes import (
    Buried,
    Deferred,
    Done,
    Failed,
    OrderWait,
    Outcome,
    PutBack,
)
from tasks.execution.recording import record_again, settle_delivered
from tasks.order_line import OrderLine, Turned, Wait
from tasks.request import note_repeat
from tasks.state.idempotency import Claim, ClaimState, IdempotencyStore, derive_key, owner_id
from tasks.state.idempotency import with_ambiguity as result_with_ambiguity
from tasks.state.pacing import Deferral, wait_for_slot
from tasks.state.repeats import Repeat
from tasks.state.supersedes import Superseded
from tasks.state.turns import Start, Supersede
from tasks.state.zapi_queue import ZapiQueueBook

#: Seconds a job waits when its instance has all its in-flight permits taken in this worker.
INSTANCE_BUSY_WAIT = 0.5


def order_message_key(job_id: str, order_key: str | None, *, force: bool) -> str:
    """A send-order's idempotency key: its order's key (the same key sent twice sends one
    order message, unless ``force``), else the job (a redelivered job is not sent twice;
    two orders alike are two orders)."""
    named: dict[str, str] = {"job": job_id}
    if order_key is not None:
        named = {"orderKey": order_key, **(named if force else {})}
    return derive_key(Endpoint.SEND_ORDER.value, named)


#: An update's fields by their wire names (what superseding compares: tasks/state/turns.py).
_FIELDS = {"orderStatus": "order_status", "paymentStatus": "payment_status"}


def _supersede_of(
    job: Job, given: OrderUpdate | ShortUpdate | SendOrder, asked: bool | None
) -> Supersede | None:
    """The job's update, noted in its line, and whether a newer one may supersede it: per job
    (``supersede``), else ``ZAPI_SUPERSEDE``; never a ``force`` job. None for a send-order."""
    field = job.endpoint.spec.short_field
    if field is None or isinstance(given, SendOrder):
        return None
    state = str(getattr(given, _FIELDS[field]))
    wanted = job.settings.zapi_supersede if asked is None else asked
    forward = superseding_states(field, state)
    may = wanted and not job.force
    return Supersede(field, state, forward, may, message=given.message is not None)


class Execution:
    """One run of one job, from validation to the place where it ends."""

    def __init__(
        self,
        task: JobTask,
        endpoint: Endpoint,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deps: Deps,
    ) -> None:
        self.job = Job(task, endpoint, deps, args, kwargs)
        #: The job's part in superseding, once its body is known (None: a send-order).
        self.supersede: Supersede | None = None

    def outcome(self) -> Outcome:
        """Where the job ends, with the contract's raised errors classified."""
        try:
            return self.run()
        except StaleUpdateError as exc:
            return Failed(exc)  # behind its order: nothing to replay (it left its line)
        except SupersededError as exc:
            self._note_superseded(exc)
            return Failed(exc)  # the newer update goes instead: nothing to replay
        except redis.RedisError as exc:
            # The send path settles its own Redis errors: this one came before any send.
            return PutBack(exc)
        except Exception as exc:  # noqa: BLE001 - buried, then raised again (route.finish)
            # A permanent error (an invalid body, an unknown instance or order) is buried; so
            # is a bug, which must not ack the job into nowhere (burial logs its traceback).
            return Buried(exc)

    def run(self) -> Outcome:
        job = self.job
        call = Call.of(job.task.name, job.args, job.kwargs)  # InvalidBodyError
        job.body, job.idempotency_key = call.body, call.idempotency_key
        job.sequence, job.force, job.instance_alias = call.sequence, call.force, call.instance
        job.order_key = call.order_key
        job.known_instance()  # UnknownInstanceError: the job fails at once
        given = validate_update(job.endpoint, job.body)
        self.supersede = _supersede_of(job, given, call.supersede)
        sequence = call.sequence
        at = job.at()
        store, owner = at.store, owner_id(job.job_id)
        unrecorded = job.state.unrecorded()
        if unrecorded is not None:
            return record_again(job, owner, sequence, unrecorded)
        complete: Callable[[Delivered], OrderUpdate | SendOrder]
        if isinstance(given, ShortUpdate):
            snapshot = completion.find_order(job, given)
            if isinstance(snapshot, Deferred | Buried):
                return snapshot
            complete = completion.completion(job.endpoint, given, snapshot)
            phone = snapshot.phone
            key_body = completion.key_body(given, snapshot)
            if job.line is None:
                job.line = job.line_of(snapshot.order_request_id)
        else:
            full = given
            complete, key_body, phone = (lambda _: full), full.to_wire(), full.phone
        if call.idempotency_key is not None:
            key = "key:" + call.idempotency_key
        elif isinstance(given, SendOrder):
            key = order_message_key(job.job_id, call.order_key, force=call.force)
        else:
            key = derive_key(job.endpoint.value, key_body)

        guard = at.guard
        if not guard.try_enter():
            return policy.deferred(job, Deferral(INSTANCE_BUSY_WAIT, None, guard.busy_reason()))
        try:
            # One round trip takes the order's turn, claims the key and, when the slot is now,
            # reserves it and marks the send in flight. A repeat returns at once without a
            # slot. A job that holds a slot from an earlier execution checks that one instead.
            job.claim = (store, key, owner)
            slot_for = phone if job.state.slot_us is None else None
            if job.line is not None:
                turned = self._take_turn(job.line, complete, sequence, key, owner, slot_for)
                if isinstance(turned, Deferred):
                    return turned
            else:
                turned = Turned(at.turns.start(key, owner, slot_for), None, False)
            done = self._claimed(turned.claim)
            if done is not None:
                return done
            update = turned.update or complete(Delivered())
            job.phone = update.phone
            sending = turned.start.sending
            if sending is None:
                waited = self._wait_for_slot(store, key, owner, turned.start)
                if waited is not None:
                    return waited
                # The claim may have lapsed during the wait: re-assert it for the deadline.
                sending = store.before_send(key, owner)
            else:
                metrics.SLOT_WAIT.labels(job.label).observe(0.0)
            done = self._claimed(sending)
            if done is not None:
                return done
            return self._send(store, key, owner, update, sequence, has_snapshot=turned.has_snapshot)
        finally:
            guard.leave()

    def _wait_for_slot(
        self, store: IdempotencyStore, key: str, owner: str, start: Start
    ) -> Deferred | None:
        """Sleep until the job's rate slot; re-schedule the job when it is far (or withheld)."""
        job = self.job
        try:
            waited_from = time.perf_counter()
            with tracing.waiting("a rate slot"):
                wait_for_slot(
                    job.at().limiter,
                    job.phone,
                    job.state.slot_us,
                    job.settings.zapi_rate_max_wait,
                    start.reservation,
                    start.answered,
                )
            metrics.SLOT_WAIT.labels(job.label).observe(time.perf_counter() - waited_from)
        except Deferral as deferral:
            store.release(key, owner)
            if deferral.held and self.supersede is not None:
                # It may supersede one of ours still in Z-API's queue: reconcile soon.
                ZapiQueueBook(job.deps.redis, job.known_instance().instance_id).want()
            return policy.deferred(job, deferral)
        return None

    def _take_turn(
        self,
        line: OrderLine,
        complete: Callable[[Delivered], OrderUpdate | SendOrder],
        sequence: int | None,
        key: str,
        owner: str,
        phone: str | None,
    ) -> Turned | Deferred:
        """Go on only at the head of the order's line; else wait, holding no thread."""
        turned = line.take_turn(
            complete,
            sequence,
            force=self.job.force,
            turns=self.job.at().turns,
            key=key,
            owner=owner,
            phone=phone,
            supersede=self.supersede,
        )
        if isinstance(turned, Wait):
            return Deferred(
                OrderWait(turned.reason), turned.countdown, headers=turned.headers, parks=False
            )
        return turned

    def _note_superseded(self, exc: SupersededError) -> None:
        """List this job under the one that superseded it, for its ``zapi-queue status``."""
        job, supersede = self.job, self.supersede
        if supersede is None:
            return
        noted = Superseded(
            job.job_id, supersede.field, supersede.state, supersede.message, time.time()
        )
        try:
            job.deps.supersedes().note(exc.newer_job, noted)
        except redis.RedisError as error:
            logger.warning("job %s: superseding not noted (%s)", job.job_id, type(error).__name__)
        job.log("superseded", None, str(exc))

    def _claimed(self, claim: Claim) -> Outcome | None:
        """The stored reply if the key was delivered; defer if another execution holds it."""
        job = self.job
        if claim.state is ClaimState.DELIVERED and claim.reply is not None:
            self._repeat(Repeat(job.job_id, claim.delivered_by, claim.delivered_at))
            if job.line is not None:
                job.line.leave_quietly()
            return Done(claim.reply)
        if claim.state is ClaimState.BUSY:
            busy = Deferral(1.0, None, "the same job is being sent by another worker")
            return policy.deferred(job, busy)
        job.ambiguous = claim.ambiguous
        return None

    def _repeat(self, repeat: Repeat) -> None:
        """Say that this job was not sent: in the attempt log, for ``zapi-queue status``, and
        for Flower (tasks/request.py). The result stays the stored reply."""
        job = self.job
        note = repeat.describe()
        job.log("deduplicated", None, note)
        note_repeat(job.job_id, note)
        try:
            job.deps.repeats().note(repeat)
        except redis.RedisError as exc:
            logger.warning("job %s: repeat not noted (%s)", job.job_id, type(exc).__name__)

    def _send(
        self,
        store: IdempotencyStore,
        key: str,
        owner: str,
        update: OrderUpdate | SendOrder,
        sequence: int | None,
        *,
        has_snapshot: bool,
    ) -> Outcome:
        """The one place a request leaves. Every outcome is settled before anything else."""
        job = self.job
        job.sent = True
        job.started = time.perf_counter()
        wire = update.to_wire()
        at = job.at()
        try:
            reply = at.client.send(job.endpoint, wire).to_result()
        except ZapiQueueError as exc:
            return policy.after_failed_send(job, store, key, owner, exc)
        at.guard.succeeded()
        policy.pace(job)
        result = result_with_ambiguity(reply, job.ambiguous)
        job.log(
            "delivered",
            200,
            f"zaapId={reply['zaapId']}",
            zaapId=reply["zaapId"],
            messageId=reply["messageId"],
        )
        return settle_delivered(job, key, owner, update, wire, sequence, result, has_snapshot)
