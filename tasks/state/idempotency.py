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

from tasks.state.keys import IDEMPOTENCY_PREFIX
from tasks.state.scripts import Library, Script
from tasks.state.sends import SENT_TTL, sent_counter

#: The reply's extra field when some send before it may have been delivered too.
AMBIGUOUS_FIELD = "ambiguousAttempts"


#: The Lua functions of a key's claim, reply and sent record (idempotency.lua), bound to its keys
#: by name: other stores' scripts compose them (tasks/state/turns.py).
LIBRARY = Library.of(
    "tasks.state", "idempotency.lua", keys=("idem_reply", "idem_claim", "idem_sent")
)


def _script(name: str, *, keys: tuple[str, ...] = (), args: tuple[str, ...]) -> Script:
    return Script.of(
        "tasks.state", "idempotency.lua", name, keys=keys, args=args, libraries=[LIBRARY]
    )


SCRIPTS = {
    "claim": _script("claim", args=LIBRARY.params("claim")),
    "before_send": _script(
        "before_send", keys=("counter",), args=LIBRARY.params("mark_sent", without=["counter"])
    ),
    "record": _script("record", args=LIBRARY.params("record")),
    "after_failed_send": _script("after_failed_send", args=("owner", "may_have_reached", "ttl")),
    "withdraw": _script("withdraw", keys=("counter",), args=("owner", "second")),
    "release": _script("release", args=("owner",)),
}


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
        self._prefix = f"{IDEMPOTENCY_PREFIX}{instance_id}:"
        self._instance_id = instance_id
        self.ttl = ttl
        #: The first claim covers the wait for a rate slot.
        self.wait_lease_ms = max(1000, round(wait_lease * 1000))
        #: The claim re-asserted before the send covers the request's whole deadline.
        self.send_lease_ms = max(1000, round(send_lease * 1000))
        self._scripts = {name: script.register(client) for name, script in SCRIPTS.items()}

    def keys(self, key: str) -> list[str]:
        """The reply, claim and sent keys of ``key``, in ``LIBRARY.keys``' order."""
        return [self._prefix + key + suffix for suffix in (":reply", ":claim", ":sent")]

    def _run(self, script: str, key: str, **named: Any) -> Any:
        return self._scripts[script](**LIBRARY.bind_keys(self.keys(key)), **named)

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
        return self.parse_claim(self._run("claim", key, owner=owner, lease_ms=self.wait_lease_ms))

    def before_send(self, key: str, owner: str) -> Claim:
        """Re-assert our claim for the request's deadline and mark the send in flight, in one
        step; or learn that the key was delivered, or taken, meanwhile (then: do not send).
        A send that goes ahead is counted in the instance's sends (tasks/state/sends.py)."""
        counter, args = self.before_send_args(owner, time.time())
        named = LIBRARY.bind("mark_sent", args, without=["counter"])
        answer = self._run("before_send", key, counter=counter, **named)
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
        self._run("withdraw", key, counter=counter, owner=owner, second=second)

    def record(
        self, key: str, owner: str, reply: dict[str, Any], job_id: str
    ) -> dict[str, Any] | None:
        """Remember the reply (the first one recorded wins, counting the sends of other
        executions that may have reached Z-API), clear the send, drop our claim. Returns the
        reply as stored when it differs from ``reply``: the job's result must be that one."""
        record = reply_record(reply, job_id, time.time())
        answer = self._run("record", key, owner=owner, reply=record, ttl=self.ttl)
        return earlier_reply(answer)

    def after_failed_send(self, key: str, owner: str, *, ambiguous: bool) -> int:
        """A send without a reply: count it if it may have reached Z-API, drop our claim.
        Returns the ambiguous sends of this key so far."""
        reached = "1" if ambiguous else "0"
        return int(
            self._run("after_failed_send", key, owner=owner, may_have_reached=reached, ttl=self.ttl)
        )

    def release(self, key: str, owner: str) -> None:
        """Drop our claim without sending (the job is re-scheduled)."""
        self._run("release", key, owner=owner)
