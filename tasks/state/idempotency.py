"""Nothing sent twice unknowingly: a key delivered once returns its stored reply.

The key is the producer's ``idempotency_key`` or, without one, a hash of the endpoint and the
validated body. Three Redis keys per idempotency key (prefix ``zapi-queue:idem:{instance}:``):

* ``…:claim``: which execution may send now (``owner``), for a lease: the slot wait at first,
  then, **re-asserted atomically right before the send**, one request's overall deadline plus a
  margin. Owner-checked: an execution only ever renews or drops its own claim.
* ``…:sent``: a hash that survives the claim (TTL ``ZAPI_IDEMPOTENCY_TTL``). ``inflight`` names
  the execution whose request is on its way; ``ambiguous`` counts the sends whose outcome is
  unknown (a timeout or reset after the request was written, or a send abandoned by an
  execution that died or froze past its claim). Z-API may have delivered those.
* ``…:reply``: Z-API's reply, with ``ambiguousAttempts`` when some send before it was
  ambiguous (TTL ``ZAPI_IDEMPOTENCY_TTL``). Recording it drops ``sent`` and our claim.

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
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis

from tasks.state.store import KEY_PREFIX

#: The reply's extra field when some send before it may have been delivered too.
AMBIGUOUS_FIELD = "ambiguousAttempts"

# Every script: KEYS[1] reply, KEYS[2] claim, KEYS[3] sent. ARGV[1]: owner.
# A send left "inflight" by another execution whose claim is gone was abandoned (that execution
# died or froze past its lease): its outcome is unknown, so it counts as ambiguous.
_LIBRARY = """
local function abandoned_to_ambiguous(owner)
  local inflight = redis.call('HGET', KEYS[3], 'inflight')
  if inflight and inflight ~= owner then
    redis.call('HINCRBY', KEYS[3], 'ambiguous', 1)
    redis.call('HDEL', KEYS[3], 'inflight')
  end
  return tonumber(redis.call('HGET', KEYS[3], 'ambiguous') or '0')
end
-- The outcome when this execution must not send: {1, reply} if the key was delivered, {2, holder}
-- if another execution holds the claim. Otherwise takes (or renews) the claim and returns nil.
local function delivered_or_held(owner, lease_ms)
  local reply = redis.call('GET', KEYS[1])
  if reply then return {1, reply} end
  local holder = redis.call('GET', KEYS[2])
  if holder and holder ~= owner then return {2, holder} end
  redis.call('SET', KEYS[2], owner, 'PX', lease_ms)
  return nil
end
"""

# ARGV: owner, lease ms. Returns {state, data}: 1 delivered (data: the reply), 2 busy (data: the
# holder), 0 claimed (data: ambiguous sends so far).
_CLAIM = (
    _LIBRARY
    + """
local done = delivered_or_held(ARGV[1], ARGV[2])
if done then return done end
return {0, tostring(abandoned_to_ambiguous(ARGV[1]))}
"""
)

# Right before the send. ARGV: owner, lease ms (the request's deadline and a margin), sent TTL s.
# Re-takes the claim (it may have lapsed during the slot wait) and marks the send in flight.
_BEFORE_SEND = (
    _LIBRARY
    + """
local done = delivered_or_held(ARGV[1], ARGV[2])
if done then return done end
local ambiguous = abandoned_to_ambiguous(ARGV[1])
redis.call('HSET', KEYS[3], 'inflight', ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return {0, tostring(ambiguous)}
"""
)

# ARGV: owner, reply JSON, TTL s. The first reply recorded stays (a later one is a duplicate's).
_RECORD = """
redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3])
redis.call('DEL', KEYS[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

# A send that got no reply. ARGV: owner, '1' if it may have reached Z-API, sent TTL s.
# Returns the ambiguous sends so far.
_AFTER_FAILED_SEND = """
if redis.call('HGET', KEYS[3], 'inflight') == ARGV[1] then
  redis.call('HDEL', KEYS[3], 'inflight')
  if ARGV[2] == '1' then redis.call('HINCRBY', KEYS[3], 'ambiguous', 1) end
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return tonumber(redis.call('HGET', KEYS[3], 'ambiguous') or '0')
"""

# No send happened (the job is deferred): drop our claim only.
_RELEASE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('DEL', KEYS[2]) end
return 0
"""


class ClaimState(Enum):
    CLAIMED = 0
    DELIVERED = 1
    BUSY = 2


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming a key: ours (with the ambiguous sends so far), already
    delivered (with the stored reply), or held by another execution."""

    state: ClaimState
    reply: dict[str, Any] | None = None
    ambiguous: int = 0


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
            }.items()
        }

    def _run(self, script: str, key: str, *args: Any) -> Any:
        keys = [self._prefix + key + suffix for suffix in (":reply", ":claim", ":sent")]
        return self._scripts[script](keys=keys, args=list(args))

    @staticmethod
    def _claim(answer: list[Any]) -> Claim:
        state, data = ClaimState(int(answer[0])), answer[1]
        if state is ClaimState.DELIVERED:
            return Claim(state, reply=json.loads(data))
        if state is ClaimState.CLAIMED:
            return Claim(state, ambiguous=int(data))
        return Claim(state)

    def claim(self, key: str, owner: str) -> Claim:
        """Claim ``key`` for the wait before a send; or learn it was delivered or is held."""
        return self._claim(self._run("claim", key, owner, self.wait_lease_ms))

    def before_send(self, key: str, owner: str) -> Claim:
        """Re-assert our claim for the request's deadline and mark the send in flight, in one
        step; or learn that the key was delivered, or taken, meanwhile (then: do not send)."""
        return self._claim(self._run("before_send", key, owner, self.send_lease_ms, self.ttl))

    def record(self, key: str, owner: str, reply: dict[str, Any]) -> None:
        """Remember the reply (the first one recorded wins), clear the send, drop our claim."""
        self._run("record", key, owner, json.dumps(reply), self.ttl)

    def after_failed_send(self, key: str, owner: str, *, ambiguous: bool) -> int:
        """A send without a reply: count it if it may have reached Z-API, drop our claim.
        Returns the ambiguous sends of this key so far."""
        return int(self._run("after_failed_send", key, owner, "1" if ambiguous else "0", self.ttl))

    def release(self, key: str, owner: str) -> None:
        """Drop our claim without sending (the job is re-scheduled)."""
        self._run("release", key, owner)
