"""Nothing sent twice: a job whose idempotency key was delivered returns the stored reply.

The key is the producer's ``idempotency_key`` or, without one, a hash of the endpoint and the
validated body. Before sending, a worker *claims* the key (a lease in Redis); after Z-API's
reply it *records* the reply for ``ZAPI_IDEMPOTENCY_TTL`` and drops the claim, in one round
trip. So:

* the same job enqueued twice, or re-delivered after a crash, finds the reply and sends nothing;
* two workers holding the same key at once: one sends, the other waits for the outcome;
* the one window left is a worker dying after the request left and before the reply was
  recorded (a network round trip plus one Redis write). The claim then expires after its lease
  and the job, re-delivered, sends again. Z-API has no idempotency key of its own, so that
  window cannot be closed from this side; a timeout that hides a delivered request is the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis

from tasks.store import KEY_PREFIX

# KEYS[1]: reply key, KEYS[2]: claim key. ARGV[1]: owner, ARGV[2]: lease ms.
# Returns {state, data}: 1 delivered (data = stored reply), 0 claimed by us, 2 held by another.
_CLAIM = """
local reply = redis.call('GET', KEYS[1])
if reply then return {1, reply} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, ''} end
local owner = redis.call('GET', KEYS[2])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {0, ''}
end
return {2, owner or ''}
"""

# KEYS[1]: claim key. ARGV[1]: owner. Drops the claim only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ClaimState(Enum):
    CLAIMED = 0
    DELIVERED = 1
    BUSY = 2


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    reply: dict[str, str] | None = None


def derive_key(endpoint: str, wire_body: dict[str, Any]) -> str:
    """The key of a job that brought none: the endpoint and the canonical JSON of its body."""
    canonical = json.dumps(wire_body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "body:" + hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()


def owner_id(job_id: str) -> str:
    """Who holds a claim: the job, on this host, process and thread (for the logs)."""
    return f"{job_id}@{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class IdempotencyStore:
    """Claims and recorded replies of one Z-API instance."""

    def __init__(self, client: redis.Redis, *, instance_id: str, ttl: int, lease: float) -> None:
        self._redis = client
        self._prefix = f"{KEY_PREFIX}:idem:{instance_id}:"
        self.ttl = ttl
        self.lease_ms = max(1000, round(lease * 1000))
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)

    def _keys(self, key: str) -> tuple[str, str]:
        return self._prefix + key + ":reply", self._prefix + key + ":claim"

    def claim(self, key: str, owner: str) -> Claim:
        """Claim ``key`` for a send; or learn it was delivered (with the reply) or is in flight."""
        reply_key, claim_key = self._keys(key)
        state, data = self._claim(keys=[reply_key, claim_key], args=[owner, self.lease_ms])
        state = ClaimState(int(state))
        if state is ClaimState.DELIVERED:
            return Claim(state, json.loads(data))
        return Claim(state)

    def record(self, key: str, reply: dict[str, str]) -> None:
        """Remember the reply and drop the claim, atomically, in one round trip."""
        reply_key, claim_key = self._keys(key)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(reply_key, json.dumps(reply), ex=self.ttl)
        pipe.delete(claim_key)
        pipe.execute()

    def release(self, key: str, owner: str) -> None:
        """Drop our claim without a reply (the send failed): a later attempt may claim again."""
        self._release(keys=[self._keys(key)[1]], args=[owner])
