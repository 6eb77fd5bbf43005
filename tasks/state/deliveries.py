"""Delivery truth: what became of each message Z-API accepted, from its callbacks.

A 200 from Z-API means "accepted". Its ``DeliveryCallback`` says the message was handed to
WhatsApp, or that it failed (``error``, ``errorCode``); its ``MessageStatusCallback`` says
SENT, RECEIVED, READ or PLAYED. States only move forward:

    accepted -> sent -> received -> read -> played,   or   failed (accepted or sent only)

``failed`` is final. A job whose delivery failed becomes a dead letter (``DeliveryFailedError``),
whose replay sends it again: its recorded reply is dropped, so the idempotency record does not
answer "already delivered".

One hash per message zapi-queue sent, ``zapi-queue:delivery:{instance}:{messageId}`` (the id
escaped: tasks/contract/delivery_record.py ``key_part``), expiring ``ZAPI_DELIVERY_TTL`` (7 days)
after its last change: ``state``, ``rank``, ``updated_at``, ``error``, ``error_code``,
``zaap_id``; and the job that sent it: ``job`` (JSON: its id, task, its order's
``orderRequestId``, kwargs, recorded reply's key, attempts, first attempt's time) and its ``body``
while the message may still fail (until it reached the phone): the update in short form
(``orderRequestId`` and its status, ``message``), so that a replay is completed from the order
book then. Only the worker creates it (``link``, when it records Z-API's reply).

Per instance, ``zapi-queue:delivery-counts:{instance}`` counts the messages that reached each
state (a hash of at most six fields, expiring ``COUNTS_TTL``, 30 days, after its last change),
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

from tasks.contract.delivery_record import Delivery, delivery_key, optional_text, read_delivery
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tasks.state.store import text

FAILED = "failed"
#: Forward order of the states; ``failed`` stands apart (rank 99: nothing moves past it).
RANKS = {"accepted": 0, "sent": 1, "received": 2, "read": 3, "played": 4, FAILED: 99}
#: A failure reported after the message reached the phone is ignored (it did reach it).
FAILS_BELOW_RANK = RANKS["received"]
#: MessageStatusCallback's status -> our state (READ_BY_ME is the account's own read: unused).
STATUS_STATES = {"SENT": "sent", "RECEIVED": "received", "READ": "read", "PLAYED": "played"}
#: The per-instance state counts (``delivery-counts``) expire this long after their last change.
COUNTS_TTL = 30 * 86_400
COUNTS_PREFIX = "zapi-queue:delivery-counts:"
#: Callbacks for messages no job linked (yet): kept this long after their last callback, at
#: most this many per instance (the oldest evicted first).
EARLY_TTL = 300
EARLY_MAX = 10_000
EARLY_PREFIX = "zapi-queue:delivery-early:"
EARLY_AT_PREFIX = "zapi-queue:delivery-early-at:"


def state_counts(client: redis.Redis, instance_id: str) -> dict[str, int]:
    """How many of the instance's messages reached each state (within ``COUNTS_TTL``)."""
    return {text(k): int(v) for k, v in client.hgetall(COUNTS_PREFIX + instance_id).items()}


def lua_library(first_key: int = 1) -> str:
    """The Lua functions of a message's delivery hash, bound to KEYS[first_key]: the worker's
    reply record composes ``link`` with the other stores' functions (tasks/state/turns.py)."""
    return (
        f"local delivery = KEYS[{first_key}]\nlocal KEEPS_BODY_BELOW = {FAILS_BELOW_RANK}\n"
        f"local COUNTS_TTL = {COUNTS_TTL}\nlocal EARLY_TTL = {EARLY_TTL}\n"
        f"local EARLY_MAX = {EARLY_MAX}\n" + _FUNCTIONS
    )


_FUNCTIONS = """
-- The instance's state counts: the delivery key less its last (messageId) segment.
local function count_state(state)
  local instance = string.match(delivery, '^zapi%-queue:delivery:(.*):[^:]*$')
  if not instance then return end
  local counts = 'zapi-queue:delivery-counts:' .. instance
  redis.call('HINCRBY', counts, state, 1)
  redis.call('EXPIRE', counts, COUNTS_TTL)
end
local function bury_if_due()
  if redis.call('HGET', delivery, 'state') ~= 'failed' then return nil end
  if not redis.call('HGET', delivery, 'job') then return nil end
  if redis.call('HSETNX', delivery, 'buried', '1') == 0 then return nil end
  return redis.call('HMGET', delivery, 'job', 'body', 'error', 'error_code', 'updated_at')
end
-- A callback: the message reached state (forward only; failed is final, and ignored from
-- fails_below on). Returns the burial fields when it reported the failure of a known job.
local function apply(state, rank, err, code, at, ttl, fails_below)
  -- failed is final; a repeat only finishes a burial that an error undid (bury_if_due).
  if redis.call('HGET', delivery, 'state') == 'failed' then return bury_if_due() end
  local current = tonumber(redis.call('HGET', delivery, 'rank') or '-1')
  if state == 'failed' then
    if current >= tonumber(fails_below) then return nil end
    redis.call('HSET', delivery, 'state', 'failed', 'rank', rank, 'error', err,
               'error_code', code, 'updated_at', at)
    count_state('failed')
  elseif tonumber(rank) > current then
    redis.call('HSET', delivery, 'state', state, 'rank', rank, 'updated_at', at)
    if tonumber(rank) >= KEEPS_BODY_BELOW then redis.call('HDEL', delivery, 'body') end
    count_state(state)
  else
    return nil
  end
  redis.call('EXPIRE', delivery, ttl)
  return bury_if_due()
end
-- The instance's early callbacks (a hash and its arrival times) and the message's field.
local function early_keys()
  local instance, message = string.match(delivery, '^zapi%-queue:delivery:(.*):([^:]*)$')
  if not instance then return nil end
  return 'zapi-queue:delivery-early:' .. instance,
         'zapi-queue:delivery-early-at:' .. instance, message
end
-- A callback for a message no job linked: kept in the instance's early entries (the best state
-- so far, by apply's rules), after dropping those past EARLY_TTL and, at the cap, the oldest.
-- Returns how many entries the cap evicted.
local function keep_early(state, rank, err, code, at, now, fails_below)
  local entries, arrivals, message = early_keys()
  if not entries then return 0 end
  now = tonumber(now)
  local stale = redis.call('ZRANGEBYSCORE', arrivals, '-inf', now - EARLY_TTL, 'LIMIT', 0, 1000)
  if #stale > 0 then
    redis.call('HDEL', entries, unpack(stale))
    redis.call('ZREM', arrivals, unpack(stale))
  end
  local kept = redis.call('HGET', entries, message)
  local evicted = 0
  if kept then
    local old = cjson.decode(kept)
    if old.s == 'failed' then return 0 end
    if state == 'failed' then
      if old.r >= tonumber(fails_below) then return 0 end
    elseif tonumber(rank) <= old.r then
      return 0
    end
  else
    local over = redis.call('ZCARD', arrivals) - EARLY_MAX + 1
    if over > 0 then
      local oldest = redis.call('ZPOPMIN', arrivals, over)
      for i = 1, #oldest, 2 do
        redis.call('HDEL', entries, oldest[i])
        evicted = evicted + 1
      end
    end
  end
  redis.call('HSET', entries, message,
             cjson.encode({s = state, r = tonumber(rank), e = err, c = code, a = at}))
  redis.call('ZADD', arrivals, now, message)
  redis.call('EXPIRE', entries, EARLY_TTL)
  redis.call('EXPIRE', arrivals, EARLY_TTL)
  return evicted
end
-- The message's early entry, removed (nil when none, or past EARLY_TTL at now).
local function take_early(now)
  local entries, arrivals, message = early_keys()
  if not entries then return nil end
  local kept = redis.call('HGET', entries, message)
  if not kept then return nil end
  local arrived = tonumber(redis.call('ZSCORE', arrivals, message) or '0')
  redis.call('HDEL', entries, message)
  redis.call('ZREM', arrivals, message)
  if arrived < tonumber(now) - EARLY_TTL then return nil end
  return cjson.decode(kept)
end
-- The job that sent the message (job: JSON of what its dead letter needs); returns the burial
-- fields when its failure came first. The usual case, no callback yet, is one HSET (and a
-- look at the early entries).
local function link(job, body, zaap_id, now, ttl)
  if redis.call('EXISTS', delivery) == 0 then
    redis.call('HSET', delivery, 'job', job, 'body', body, 'zaap_id', zaap_id,
               'state', 'accepted', 'rank', 0, 'updated_at', now)
    redis.call('EXPIRE', delivery, ttl)
    count_state('accepted')
    local early = take_early(now)
    if not early then return nil end
    return apply(early.s, early.r, early.e, early.c, early.a, ttl, KEEPS_BODY_BELOW)
  end
  redis.call('HSET', delivery, 'job', job, 'zaap_id', zaap_id)
  local rank = tonumber(redis.call('HGET', delivery, 'rank') or '0')
  if rank < KEEPS_BODY_BELOW or redis.call('HGET', delivery, 'state') == 'failed' then
    redis.call('HSET', delivery, 'body', body)
  end
  redis.call('EXPIRE', delivery, ttl)
  return bury_if_due()
end
"""

# ARGV: link's five arguments.
_LINK = lua_library() + "return link(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])\n"
# ARGV: apply's seven arguments, then now (the receiver's clock, epoch s). A message no job
# linked gets an early entry: {0, entries evicted}; a linked one {1} or {1, burial fields}.
_APPLY = lua_library() + (
    """
if redis.call('HEXISTS', delivery, 'job') == 0 then
  return {0, keep_early(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[8], ARGV[7])}
end
local burial = apply(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
if burial then return {1, burial} end
return {1}
"""
)


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

    def __init__(self, client: redis.Redis, *, instance_id: str, ttl: int) -> None:
        self._redis = client
        self.instance_id = instance_id
        self.ttl = ttl
        self._link = client.register_script(_LINK)
        self._apply = client.register_script(_APPLY)

    def key(self, message_id: str) -> str:
        return delivery_key(self.instance_id, message_id)

    def link(
        self,
        message_id: str,
        *,
        zaap_id: str,
        letter: DeadLetter,
        reply_key: str,
    ) -> Burial | None:
        """Link the job that sent ``message_id`` (``letter`` holds what a dead letter of it
        needs). Returns its burial if the message's failure was already reported."""
        answer = self._link(
            keys=[self.key(message_id)],
            args=self.link_args(zaap_id=zaap_id, letter=letter, reply_key=reply_key),
        )
        return self.burial(message_id, answer)

    def link_args(self, *, zaap_id: str, letter: DeadLetter, reply_key: str) -> list[Any]:
        """The arguments of the Lua ``link`` function, in order."""
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
        now = f"{time.time():.6f}"
        args: list[str | int] = [
            state,
            RANKS[state],
            error or "",
            error_code or "",
            f"{at:.6f}",
            self.ttl,
        ]
        pipe = self._redis.pipeline(transaction=False)
        for message_id in message_ids:
            self._apply(
                keys=[self.key(message_id)], args=[*args, FAILS_BELOW_RANK, now], client=pipe
            )
        answers = pipe.execute()
        return [
            Applied(True, self.burial(message_id, answer[1] if len(answer) > 1 else None))
            if int(answer[0]) == 1
            else Applied(False, None, int(answer[1]))
            for message_id, answer in zip(message_ids, answers, strict=True)
        ]

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
