"""Delivery truth: what became of each message Z-API accepted, from its callbacks.

A 200 from Z-API means "accepted". Its ``DeliveryCallback`` says the message was handed to
WhatsApp, or that it failed (``error``, ``errorCode``); its ``MessageStatusCallback`` says
SENT, RECEIVED, READ or PLAYED. States only move forward:

    accepted -> sent -> received -> read -> played,   or   failed (accepted or sent only),
    or   withdrawn (accepted only: taken out of Z-API's queue before it fired, tasks/reconcile.py)

``failed`` and ``withdrawn`` are final; a withdrawn message's record names the newer job that
made it unnecessary (``withdrawn_by``) and why (``withdrawn_reason``: stale, superseded). A
job whose delivery failed becomes a dead letter (``DeliveryFailedError``), whose replay sends it
again: its recorded reply is dropped, so the idempotency record does not answer "already
delivered".

One hash per message zapi-queue sent, ``zapi-queue:delivery:{instance}:{messageId}`` (the id
escaped: tasks/contract/delivery_record.py ``key_part``), expiring ``ZAPI_DELIVERY_TTL`` (7 days)
after its last change: ``state``, ``rank``, ``updated_at``, ``error``, ``error_code``,
``zaap_id``; and the job that sent it: ``job`` (JSON: its id, task, its order's
``orderRequestId``, the order whose line it stood in (``line``), kwargs, recorded reply's key,
attempts, first attempt's time) and its ``body`` while the message may still fail (until it
reached the phone): the update in short form (``orderRequestId`` and its status, ``message``),
so that a replay is completed from the order book then. Only the worker creates it (``link``,
when it records Z-API's reply).

Per instance, ``zapi-queue:delivery-counts:{instance}`` counts the messages that reached each
state (a hash of at most seven fields, expiring ``COUNTS_TTL``, 30 days, after its last change),
for the fleet exporter's ``zapi_queue_delivery_states_total`` (worker/exporter.py). Only the
messages zapi-queue sent are counted.

A callback for a message no job has linked is either early (Z-API's callback beat the worker's
record of the reply: a few ms usually, up to the worker's persist retries) or for a message
this fleet never sent (with ``update-every-webhooks`` Z-API posts every message of the number).
The receiver cannot tell which, so it keeps such callbacks per instance, bounded, and no key per
message: ``zapi-queue:delivery-early:{instance}`` (hash: escaped messageId -> the best state
reported so far, JSON) and ``zapi-queue:delivery-early-at:{instance}`` (sorted set: its last
callback's time). An entry lives ``EARLY_TTL`` (300 s: longer than a reply's persist retries);
at most ``EARLY_MAX`` (10,000) entries, the oldest evicted first (counted); both keys expire
``EARLY_TTL`` after the last such callback. When the worker links the message, its entry is
taken and applied as if the callback came then.

Whichever completes the pair "failed + job known" buries the job, exactly once (``buried``):
the webhook (a failure after the link) or the worker's link (an early failure).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from tasks.contract.delivery_record import (
    Delivery,
    delivery_key,
    optional_text,
    read_delivery,
)
from tasks.contract.ordering import ShopOrderKey
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tasks.state.keys import (
    DELIVERY_COUNTS_PREFIX,
    DELIVERY_COUNTS_TTL,
    DELIVERY_EARLY_AT_PREFIX,
    DELIVERY_EARLY_MAX,
    DELIVERY_EARLY_PREFIX,
    DELIVERY_EARLY_TTL,
    DELIVERY_PREFIX,
    HISTORY_MAX,
    HISTORY_PREFIX,
)
from tasks.state.scripts import Library, Script, lua_pattern
from tasks.state.store import text

FAILED = "failed"
WITHDRAWN = "withdrawn"
#: Forward order of the states; ``failed`` and ``withdrawn`` (taken out of Z-API's queue before
#: it fired: tasks/reconcile.py) stand apart: nothing moves past them.
RANKS = {
    "accepted": 0,
    "sent": 1,
    "received": 2,
    "read": 3,
    "played": 4,
    WITHDRAWN: 98,
    FAILED: 99,
}
#: A failure reported after the message reached the phone is ignored (it did reach it).
FAILS_BELOW_RANK = RANKS["received"]
#: MessageStatusCallback's status -> our state (READ_BY_ME is the account's own read: unused).
STATUS_STATES = {"SENT": "sent", "RECEIVED": "received", "READ": "read", "PLAYED": "played"}
#: The per-instance state counts (``delivery-counts``) expire this long after their last change.
COUNTS_TTL = DELIVERY_COUNTS_TTL
COUNTS_PREFIX = DELIVERY_COUNTS_PREFIX
#: Callbacks for messages no job linked (yet): kept this long after their last callback, at
#: most this many per instance (the oldest evicted first).
EARLY_TTL = DELIVERY_EARLY_TTL
EARLY_MAX = DELIVERY_EARLY_MAX
EARLY_PREFIX = DELIVERY_EARLY_PREFIX
EARLY_AT_PREFIX = DELIVERY_EARLY_AT_PREFIX


def state_counts(client: redis.Redis, instance_id: str) -> dict[str, int]:
    """How many of the instance's messages reached each state (within ``COUNTS_TTL``)."""
    return {text(k): int(v) for k, v in client.hgetall(COUNTS_PREFIX + instance_id).items()}


#: The Lua functions of a message's delivery hash (deliveries.lua), bound to its key by name: the
#: worker's reply record composes ``link`` with the other stores' functions (tasks/state/turns.py).
LIBRARY = Library.of(
    "tasks.state",
    "deliveries.lua",
    keys=("delivery",),
    constants={
        "KEEPS_BODY_BELOW": FAILS_BELOW_RANK,
        "COUNTS_TTL": COUNTS_TTL,
        "EARLY_TTL": EARLY_TTL,
        "EARLY_MAX": EARLY_MAX,
        "DELIVERY_PATTERN": "^" + lua_pattern(DELIVERY_PREFIX) + "(.*):([^:]*)$",
        "COUNTS_PREFIX": COUNTS_PREFIX,
        "EARLY_PREFIX": EARLY_PREFIX,
        "EARLY_AT_PREFIX": EARLY_AT_PREFIX,
        "HISTORY_PREFIX": HISTORY_PREFIX,
        "HISTORY_MAX": HISTORY_MAX,
    },
)
SCRIPTS = {
    "link": Script.of(
        "tasks.state", "deliveries.lua", "link", args=LIBRARY.params("link"), libraries=[LIBRARY]
    ),
    "withdraw": Script.of(
        "tasks.state",
        "deliveries.lua",
        "withdraw",
        args=("rank", "by", "reason", "at", "ttl", "history_ttl"),
        libraries=[LIBRARY],
    ),
    "apply": Script.of(
        "tasks.state",
        "deliveries.lua",
        "apply",
        args=(*LIBRARY.params("apply"), "received_at", "history_ttl"),
        libraries=[LIBRARY],
    ),
}


@dataclass(frozen=True, slots=True)
class Burial:
    """A job whose delivery failed: its dead letter, and its recorded reply's key (dropped, so
    that the replay is sent rather than answered "already delivered")."""

    message_id: str
    letter: DeadLetter
    reply_key: str


def failure_text(message_id: str, error: str | None, error_code: str | None) -> str:
    """The dead letter's error: Z-API's words, and its code when it gave one."""
    said = f"Z-API could not deliver message {message_id}: {error or 'no reason given'}"
    return said + (f" (errorCode {error_code})" if error_code else "")


def failure_reason(error: str) -> str | None:
    """Z-API's words in a dead letter's error written by :func:`failure_text` (with the code),
    without the message id: what failures are grouped by. None for any other error."""
    prefix, sep, reason = error.partition(": ")
    if not sep or not prefix.startswith("Z-API could not deliver message "):
        return None
    return reason


@dataclass(frozen=True, slots=True)
class Applied:
    """What one callback did to one message: ``linked`` (a job of ours sent it; else it only
    has an early entry), the job's burial when it reported its failure, and how many early
    entries the cap evicted to make room."""

    linked: bool
    burial: Burial | None
    evicted: int = 0


class DeliveryBook:
    """The delivery states of one Z-API instance's messages."""

    def __init__(
        self, client: redis.Redis, *, instance_id: str, ttl: int, history_ttl: int = 7 * 86_400
    ) -> None:
        """``history_ttl``: how long the sending jobs' history keeps a callback's step (their
        results' CELERY_RESULT_EXPIRES)."""
        self._redis = client
        self.instance_id = instance_id
        self.ttl = ttl
        self.history_ttl = max(1, history_ttl)
        self._link = SCRIPTS["link"].register(client)
        self._apply = SCRIPTS["apply"].register(client)
        self._withdraw = SCRIPTS["withdraw"].register(client)

    def key(self, message_id: str) -> str:
        return delivery_key(self.instance_id, message_id)

    def link(
        self,
        message_id: str,
        *,
        zaap_id: str,
        letter: DeadLetter,
        reply_key: str,
        trace: str | None = None,
    ) -> Burial | None:
        """Link the job that sent ``message_id`` (``letter`` holds what a dead letter of it
        needs). Returns its burial if the message's failure was already reported."""
        args = self.link_args(zaap_id=zaap_id, letter=letter, reply_key=reply_key, trace=trace)
        answer = self._link(delivery=self.key(message_id), **LIBRARY.bind("link", args))
        return self.burial(message_id, answer)

    def link_args(
        self,
        *,
        zaap_id: str,
        letter: DeadLetter,
        reply_key: str,
        line: str | None = None,
        trace: str | None = None,
    ) -> list[Any]:
        """The arguments of the Lua ``link`` function, in order; ``line``: the order whose line
        the job stood in (an ``orderRequestId`` or a ShopOrderKey), for reconciling Z-API's
        queue with the jobs still in that line; ``trace``: the sending execution's
        ``traceparent``, for the callbacks to join its trace (tasks/tracing.py)."""
        body = letter.body if isinstance(letter.body, dict) else {}
        job = {
            "job": letter.job_id,
            "task": letter.task,
            # Kept after the body is dropped: `zapi-queue forget` finds an order's messages.
            "order": body.get("orderRequestId"),
            "kwargs": letter.kwargs,
            "reply_key": reply_key,
            "attempts": letter.attempts,
            "first_attempt_at": letter.first_attempt_at,
        }
        if line is not None:
            job["line"] = [str(line), isinstance(line, ShopOrderKey)]
        if trace is not None:
            job["trace"] = trace
        return [
            json.dumps(job),
            json.dumps(letter.body, ensure_ascii=False),
            zaap_id,
            f"{time.time():.6f}",
            self.ttl,
        ]

    def apply(
        self,
        message_id: str,
        state: str,
        *,
        at: float,
        error: str | None = None,
        error_code: str | None = None,
    ) -> Burial | None:
        """Move the message to ``state`` if that is forward (a duplicate changes nothing).
        Returns the job's dead letter when this callback reported its failure."""
        return self.apply_all([message_id], state, at=at, error=error, error_code=error_code)[
            0
        ].burial

    def apply_all(
        self,
        message_ids: list[str],
        state: str,
        *,
        at: float,
        error: str | None = None,
        error_code: str | None = None,
    ) -> list[Applied]:
        """``apply`` for each of ``message_ids`` (one round trip): a linked message moves
        forward; one no job linked gets (or improves) its early entry, no key of its own."""
        args = LIBRARY.bind(
            "apply",
            [state, RANKS[state], error or "", error_code or "", f"{at:.6f}", self.ttl],
            without=["fails_below"],
        )
        received_at = f"{time.time():.6f}"
        pipe = self._redis.pipeline(transaction=False)
        for message_id in message_ids:
            self._apply(
                delivery=self.key(message_id),
                **args,
                fails_below=FAILS_BELOW_RANK,
                received_at=received_at,
                history_ttl=self.history_ttl,
                client=pipe,
            )
        answers = pipe.execute()
        return [
            Applied(True, self.burial(message_id, answer[1] if len(answer) > 1 else None))
            if int(answer[0]) == 1
            else Applied(False, None, int(answer[1]))
            for message_id, answer in zip(message_ids, answers, strict=True)
        ]

    def withdraw(self, message_id: str, *, by: str, reason: str) -> bool:
        """The message was taken out of Z-API's queue before it fired, made unnecessary by
        job ``by`` (``reason``: stale, superseded): ``withdrawn``, if it was still accepted."""
        answer = self._withdraw(
            delivery=self.key(message_id),
            rank=RANKS[WITHDRAWN],
            by=by,
            reason=reason,
            at=f"{time.time():.6f}",
            ttl=self.ttl,
            history_ttl=self.history_ttl,
        )
        return int(answer) == 1

    def traces(self, message_ids: list[str]) -> dict[str, str]:
        """The ``traceparent`` each message's sending execution kept (tasks/tracing.py), for
        those that have one (one round trip)."""
        pipe = self._redis.pipeline(transaction=False)
        for message_id in message_ids:
            pipe.hget(self.key(message_id), "job")
        found: dict[str, str] = {}
        for message_id, job in zip(message_ids, pipe.execute(), strict=True):
            with contextlib.suppress(ValueError, TypeError):
                kept = json.loads(job) if job else None
                trace = kept.get("trace") if isinstance(kept, dict) else None
                if isinstance(trace, str):
                    found[message_id] = trace
        return found

    def early_count(self) -> int:
        """How many messages no job linked have an early entry now (bounded by EARLY_MAX)."""
        return int(self._redis.zcard(EARLY_AT_PREFIX + self.instance_id))

    def get(self, message_id: str) -> Delivery | None:
        return read_delivery(self._redis, self.instance_id, message_id)

    def bury(self, burial: Burial, dead_letters: DeadLetterStore) -> None:
        """Keep the failed job as a dead letter and forget its reply (a replay sends again), in
        one atomic step: a replay can never find the letter with the reply still there. If
        Redis refuses it, the burial is undone, so that the next try (the worker's retry,
        Z-API's next callback) buries it again."""
        try:
            dropping = (burial.reply_key,) if burial.reply_key else ()
            dead_letters.add(burial.letter, dropping=dropping)
        except redis.RedisError:
            with contextlib.suppress(redis.RedisError):
                self._redis.hdel(self.key(burial.message_id), "buried")
            raise

    def burial(self, message_id: str, answer: Any) -> Burial | None:
        """The dead letter of a failed message's job, from ``bury_if_due``'s answer."""
        if not answer:
            return None
        job_json, body, error, code, at = (optional_text(value) for value in answer)
        job = json.loads(job_json or "{}")
        letter = DeadLetter(
            job_id=str(job.get("job", "")),
            task=str(job.get("task", "")),
            body=json.loads(body) if body else None,
            error_type="DeliveryFailedError",
            error=failure_text(message_id, error, code),
            attempts=int(job.get("attempts", 1)),
            first_attempt_at=float(job.get("first_attempt_at", 0)),
            failed_at=float(at or time.time()),
            kwargs=dict(job.get("kwargs") or {}),
        )
        return Burial(message_id, letter, str(job.get("reply_key", "")))
