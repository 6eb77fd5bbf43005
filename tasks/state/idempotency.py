"""Nothing sent twice unknowingly: a key delivered once returns its stored reply.

The key is the producer's ``idempotency_key`` or, without one, a hash of the endpoint and the
validated body. Three Redis keys per idempotency key (prefix ``zapi-queue:idem:{instance}:``):

* ``…:claim``: which execution may send now (``owner``), for a lease: the slot wait at first,
  then, **re-asserted atomically right before the send**, one request's overall deadline plus a
  margin. Owner-checked: an execution only ever renews or drops its own claim.
* ``…:sent``: a hash that survives the claim (TTL ``ZAPI_IDEMPOTENCY_TTL``). ``inflight`` names
  the execution whose request is on its way; ``ambiguous`` counts the sends whose outcome is
  unknown (a timeout or reset after the request was written, or a send abandoned by an
  execution that died or froze past its claim; ``abandoned:<owner>`` names each of those).
  Z-API may have delivered those.
* ``…:reply``: Z-API's reply, with ``ambiguousAttempts`` when some send before it was
  ambiguous, and which job delivered it when (JSON ``{"reply", "job", "at"}``; a bare reply
  from an older version reads as one of unknown origin) (TTL ``ZAPI_IDEMPOTENCY_TTL``).
  Recording it drops ``sent`` and our claim. A reply recorded while another execution's send
  is in flight (it took the job over while ours waited for Redis) counts that send too.

So the same job enqueued twice, re-delivered after a crash or a lease takeover, finds the reply
and sends nothing; two executions at once: one sends, the other is deferred; and a send that may
be a duplicate (Z-API has no idempotency key of its own) is never silent: it is counted as
ambiguous in the attempt log, the result and the dead letter.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis

from tasks.state.sends import SENT_TTL, sent_counter
from tasks.state.store import KEY_PREFIX

#: The reply's extra field when some send before it may have been delivered too.
AMBIGUOUS_FIELD = "ambiguousAttempts"


def lua_library(first_key: int = 1) -> str:
    """The Lua functions of a key's claim, reply and sent record, bound to KEYS[first_key],
    KEYS[first_key + 1], KEYS[first_key + 2] (reply, claim, sent): other stores' scripts
    compose them (tasks/state/turns.py)."""
    keys = ", ".join(f"KEYS[{first_key + i}]" for i in range(3))
    return f"local idem_reply, idem_claim, idem_sent = {keys}\n" + _FUNCTIONS


# A send left "inflight" by another execution whose claim is gone was abandoned (that execution
# died or froze past its lease): its outcome is unknown, so it counts as ambiguous.
_FUNCTIONS = """
local function abandoned_to_ambiguous(owner)
  local inflight = redis.call('HGET', idem_sent, 'inflight')
  if inflight and inflight ~= owner then
    redis.call('HINCRBY', idem_sent, 'ambiguous', 1)
    redis.call('HSET', idem_sent, 'abandoned:' .. inflight, 1)
    redis.call('HDEL', idem_sent, 'inflight')
  end
  return tonumber(redis.call('HGET', idem_sent, 'ambiguous') or '0')
end
-- The outcome when this execution must not send: {1, reply} if the key was delivered, {2, holder}
-- if another execution holds the claim. Otherwise takes (or renews) the claim and returns nil.
local function delivered_or_held(owner, lease_ms)
  local reply = redis.call('GET', idem_reply)
  if reply then return {1, reply} end
  local holder = redis.call('GET', idem_claim)
  if holder and holder ~= owner then return {2, holder} end
  redis.call('SET', idem_claim, owner, 'PX', lease_ms)
  return nil
end
-- Returns {state, data}: 1 delivered (data: the reply), 2 busy (data: the holder), 0 claimed
-- (data: ambiguous sends so far).
local function claim(owner, lease_ms)
  local done = delivered_or_held(owner, lease_ms)
  if done then return done end
  return {0, tostring(abandoned_to_ambiguous(owner))}
end
-- Right before the send: re-takes the claim (it may have lapsed during the slot wait) for the
-- request's deadline and marks the send in flight.
local function before_send(owner, lease_ms, ttl)
  local done = delivered_or_held(owner, lease_ms)
  if done then return done end
  local ambiguous = abandoned_to_ambiguous(owner)
  redis.call('HSET', idem_sent, 'inflight', owner)
  redis.call('EXPIRE', idem_sent, ttl)
  return {0, tostring(ambiguous)}
end
-- before_send, counting a send that goes ahead in the instance's sends (tasks/state/sends.py):
-- HINCRBY counter second, the hash expiring after counter_ttl.
local function mark_sent(owner, lease_ms, ttl, counter, second, counter_ttl)
  local answer = before_send(owner, lease_ms, ttl)
  if answer[1] == 0 then
    redis.call('HINCRBY', counter, second, 1)
    redis.call('EXPIRE', counter, counter_ttl)
  end
  return answer
end
-- Sends of other executions that may have reached Z-API besides ours: the ones counted (less
-- ours, if another execution counted it as abandoned: its outcome is this reply), and one in
-- flight now (it took the key over while our reply waited for Redis).
local function others_ambiguous(owner)
  local counted = tonumber(redis.call('HGET', idem_sent, 'ambiguous') or '0')
  if redis.call('HEXISTS', idem_sent, 'abandoned:' .. owner) == 1 then counted = counted - 1 end
  local inflight = redis.call('HGET', idem_sent, 'inflight')
  if inflight and inflight ~= owner then counted = counted + 1 end
  return counted
end
-- The first reply recorded stays (a later one is a duplicate's), with at least the ambiguous
-- sends others_ambiguous finds. Returns '' when this one is the first as given, else the record
-- as stored (the first one's, or ours with more ambiguity): the job's result must be that one.
local function record(owner, reply, ttl)
  local others = others_ambiguous(owner)
  local amended = false
  if others > 0 then
    local data = cjson.decode(reply)
    if others > (tonumber(data.reply.ambiguousAttempts) or 0) then
      data.reply.ambiguousAttempts = others
      reply, amended = cjson.encode(data), true
    end
  end
  local first = redis.call('SET', idem_reply, reply, 'NX', 'EX', ttl)
  redis.call('DEL', idem_sent)
  if redis.call('GET', idem_claim) == owner then redis.call('DEL', idem_claim) end
  if first and not amended then return '' end
  return redis.call('GET', idem_reply) or ''
end
"""

_CLAIM = lua_library() + "return claim(ARGV[1], ARGV[2])\n"
# KEYS[4]: the instance's sends counter. ARGV: owner, lease ms (the request's deadline and a
# margin), sent TTL s, the counter's field (second) and TTL.
_BEFORE_SEND = (
    lua_library() + "return mark_sent(ARGV[1], ARGV[2], ARGV[3], KEYS[4], ARGV[4], ARGV[5])\n"
)
# ARGV: owner, reply JSON, TTL s.
_RECORD = lua_library() + "return record(ARGV[1], ARGV[2], ARGV[3])\n"

# A send that got no reply. ARGV: owner, '1' if it may have reached Z-API, sent TTL s.
# Returns the ambiguous sends so far.
_AFTER_FAILED_SEND = (
    lua_library()
    + """
if redis.call('HGET', idem_sent, 'inflight') == ARGV[1] then
  redis.call('HDEL', idem_sent, 'inflight')
  if ARGV[2] == '1' then redis.call('HINCRBY', idem_sent, 'ambiguous', 1) end
end
if redis.call('EXISTS', idem_sent) == 1 then redis.call('EXPIRE', idem_sent, ARGV[3]) end
if redis.call('GET', idem_claim) == ARGV[1] then redis.call('DEL', idem_claim) end
return tonumber(redis.call('HGET', idem_sent, 'ambiguous') or '0')
"""
)

# A send marked in flight that will not happen after all (the update turned out stale). KEYS[4]:
# the sends counter. ARGV: owner, the counter's field. Unmarks it, uncounts it, drops our claim.
_WITHDRAW = (
    lua_library()
    + """
if redis.call('HGET', idem_sent, 'inflight') == ARGV[1] then
  redis.call('HDEL', idem_sent, 'inflight')
  if redis.call('HINCRBY', KEYS[4], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[4], ARGV[2]) end
end
if redis.call('GET', idem_claim) == ARGV[1] then redis.call('DEL', idem_claim) end
"""
)

# No send happened (the job is deferred): drop our claim only.
_RELEASE = (
    lua_library()
    + """
if redis.call('GET', idem_claim) == ARGV[1] then return redis.call('DEL', idem_claim) end
return 0
"""
)


class ClaimState(Enum):
    CLAIMED = 0
    DELIVERED = 1
    BUSY = 2


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming a key: ours (with the ambiguous sends so far), already
    delivered (with the stored reply, and the job that delivered it when), or held by another
    execution."""

    state: ClaimState
    reply: dict[str, Any] | None = None
    ambiguous: int = 0
    delivered_by: str | None = None
    delivered_at: float | None = None


def earlier_reply(record: Any) -> dict[str, Any] | None:
    """``record``'s answer: the reply as stored when it is not the one given (another execution
    recorded first, or others' sends made ours ambiguous), else None."""
    raw = record.decode() if isinstance(record, bytes) else record
    if not raw:
        return None
    return _delivered(raw).reply


def reply_record(reply: dict[str, Any], job_id: str, at: float) -> str:
    """What ``…:reply`` holds: the job's result, and which job delivered it when."""
    return json.dumps({"reply": reply, "job": job_id, "at": round(at, 3)})


def _delivered(data: Any) -> Claim:
    record = json.loads(data)
    if "reply" not in record:  # a bare reply, recorded before the job and time were kept
        return Claim(ClaimState.DELIVERED, reply=record)
    return Claim(
        ClaimState.DELIVERED,
        reply=record["reply"],
        delivered_by=record.get("job"),
        delivered_at=record.get("at"),
    )


def derive_key(endpoint: str, wire_body: dict[str, Any]) -> str:
    """The key of a job that brought none: the endpoint and the canonical JSON of its body."""
    canonical = json.dumps(wire_body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "body:" + hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()


def owner_id(job_id: str) -> str:
    """Who holds a claim: this one execution of the job (host, process, thread, and a nonce,
    so that a later execution in the same thread is another owner)."""
    nonce = uuid.uuid4().hex[:8]
    return f"{job_id}@{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{nonce}"


def with_ambiguity(reply: dict[str, Any], ambiguous: int) -> dict[str, Any]:
    """Z-API's reply as the job's result: ``ambiguousAttempts`` added when it is not zero."""
    return {**reply, AMBIGUOUS_FIELD: ambiguous} if ambiguous else dict(reply)


class IdempotencyStore:
    """Claims, sends in flight and recorded replies of one Z-API instance."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        instance_id: str,
        ttl: int,
        wait_lease: float,
        send_lease: float,
    ) -> None:
        self._prefix = f"{KEY_PREFIX}:idem:{instance_id}:"
        self._instance_id = instance_id
        self.ttl = ttl
        #: The first claim covers the wait for a rate slot.
        self.wait_lease_ms = max(1000, round(wait_lease * 1000))
        #: The claim re-asserted before the send covers the request's whole deadline.
        self.send_lease_ms = max(1000, round(send_lease * 1000))
        self._scripts = {
            name: client.register_script(lua)
            for name, lua in {
                "claim": _CLAIM,
                "before_send": _BEFORE_SEND,
                "record": _RECORD,
                "after_failed_send": _AFTER_FAILED_SEND,
                "release": _RELEASE,
                "withdraw": _WITHDRAW,
            }.items()
        }

    def keys(self, key: str) -> list[str]:
        """The reply, claim and sent keys of ``key``, in :func:`lua_library`'s order."""
        return [self._prefix + key + suffix for suffix in (":reply", ":claim", ":sent")]

    def _run(self, script: str, key: str, *args: Any) -> Any:
        return self._scripts[script](keys=self.keys(key), args=list(args))

    @staticmethod
    def parse_claim(answer: list[Any]) -> Claim:
        """A claim's outcome from the Lua ``claim`` function's answer."""
        state, data = ClaimState(int(answer[0])), answer[1]
        if state is ClaimState.DELIVERED:
            return _delivered(data)
        if state is ClaimState.CLAIMED:
            return Claim(state, ambiguous=int(data))
        return Claim(state)

    def claim(self, key: str, owner: str) -> Claim:
        """Claim ``key`` for the wait before a send; or learn it was delivered or is held."""
        return self.parse_claim(self._run("claim", key, owner, self.wait_lease_ms))

    def before_send(self, key: str, owner: str) -> Claim:
        """Re-assert our claim for the request's deadline and mark the send in flight, in one
        step; or learn that the key was delivered, or taken, meanwhile (then: do not send).
        A send that goes ahead is counted in the instance's sends (tasks/state/sends.py)."""
        counter, args = self.before_send_args(owner, time.time())
        answer = self._scripts["before_send"](keys=[*self.keys(key), counter], args=args)
        return self.parse_claim(answer)

    def before_send_args(self, owner: str, at: float) -> tuple[str, list[Any]]:
        """The sends counter of a send at ``at``, and the arguments of the Lua ``mark_sent``
        function after it: for scripts that mark the send in the same round trip as other work
        (tasks/state/turns.py)."""
        counter, second = sent_counter(self._instance_id, at)
        return counter, [owner, self.send_lease_ms, self.ttl, second, SENT_TTL]

    def withdraw(self, key: str, owner: str, at: float) -> None:
        """A send marked in flight at ``at`` (``before_send``) will not happen: unmark and
        uncount it, and drop our claim."""
        counter, second = sent_counter(self._instance_id, at)
        self._scripts["withdraw"](keys=[*self.keys(key), counter], args=[owner, second])

    def record(
        self, key: str, owner: str, reply: dict[str, Any], job_id: str
    ) -> dict[str, Any] | None:
        """Remember the reply (the first one recorded wins, counting the sends of other
        executions that may have reached Z-API), clear the send, drop our claim. Returns the
        reply as stored when it differs from ``reply``: the job's result must be that one."""
        answer = self._run("record", key, owner, reply_record(reply, job_id, time.time()), self.ttl)
        return earlier_reply(answer)

    def after_failed_send(self, key: str, owner: str, *, ambiguous: bool) -> int:
        """A send without a reply: count it if it may have reached Z-API, drop our claim.
        Returns the ambiguous sends of this key so far."""
        return int(self._run("after_failed_send", key, owner, "1" if ambiguous else "0", self.ttl))

    def release(self, key: str, owner: str) -> None:
        """Drop our claim without sending (the job is re-scheduled)."""
        self._run("release", key, owner)
